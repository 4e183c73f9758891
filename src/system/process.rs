//! The command gateway's new process: what it does between fork and exec
//! ([`ChildSetup`]), what a failed spawn means ([`spawn_failure`]), and how
//! its end is watched ([`has_exited`]) and its process group killed
//! ([`kill_group`]). Why each step is taken: `gateway/command.rs`.

use std::fmt;
use std::os::raw::c_int;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use zeroize::Zeroizing;

/// A step of the new process's setup (between fork and exec) that failed.
/// It comes back from `spawn` inside the error number:
/// `step * STEP_BASE + errno` (exec's own errors are plain errno values,
/// all far below `STEP_BASE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupStep {
    Gid = 1,
    Groups,
    Uid,
    Session,
    Signals,
    Limits,
    Message,
    Descriptors,
}

const STEP_BASE: i32 = 0x1_0000;

impl SetupStep {
    pub(crate) const ALL: [SetupStep; 8] = [
        SetupStep::Gid,
        SetupStep::Groups,
        SetupStep::Uid,
        SetupStep::Session,
        SetupStep::Signals,
        SetupStep::Limits,
        SetupStep::Message,
        SetupStep::Descriptors,
    ];

    /// The error the pre-exec hook returns (no allocation).
    pub(crate) fn error(self, errno: c_int) -> std::io::Error {
        std::io::Error::from_raw_os_error(self as i32 * STEP_BASE + errno)
    }

    /// The step and errno in an error number from `spawn`, if a step of
    /// ours failed.
    fn decode(code: i32) -> Option<(SetupStep, i32)> {
        let step = SetupStep::ALL
            .into_iter()
            .find(|s| *s as i32 == code / STEP_BASE)?;
        Some((step, code % STEP_BASE))
    }
}

impl fmt::Display for SetupStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SetupStep::Gid => "switching to gid 0 (setresgid)",
            SetupStep::Groups => "dropping supplementary groups (setgroups)",
            SetupStep::Uid => "switching to uid 0 (setresuid)",
            SetupStep::Session => "starting a session (setsid)",
            SetupStep::Signals => "resetting signal actions and mask",
            SetupStep::Limits => "resetting resource limits (setrlimit)",
            SetupStep::Message => "writing the message to its stdin",
            SetupStep::Descriptors => "closing inherited descriptors",
        })
    }
}

/// Why `spawn` of a command set up by [`ChildSetup`] failed.
#[derive(Debug)]
pub enum SpawnFailure {
    /// A step of the setup failed (`error` is its errno): nothing ran.
    Setup {
        step: SetupStep,
        error: std::io::Error,
    },
    /// This machine is short of process slots, memory or descriptors
    /// (limits a caller may have chosen): nothing ran.
    Shortage,
    /// exec refused the program (no such file, not executable, bad
    /// interpreter), or anything else.
    Exec,
}

/// What the error of a failed `spawn` means.
pub fn spawn_failure(e: &std::io::Error) -> SpawnFailure {
    let code = e.raw_os_error();
    if let Some((step, errno)) = code.and_then(SetupStep::decode) {
        return SpawnFailure::Setup {
            step,
            error: std::io::Error::from_raw_os_error(errno),
        };
    }
    match code {
        Some(libc::EAGAIN | libc::ENOMEM | libc::EMFILE | libc::ENFILE) => SpawnFailure::Shortage,
        _ => SpawnFailure::Exec,
    }
}

/// errno of the last failed call (async-signal-safe: reads a thread-local).
fn errno() -> c_int {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EINVAL)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
type Resource = c_int;

const UNLIMITED: libc::rlim_t = libc::RLIM_INFINITY;

/// The resource limits the program gets, (soft, hard), whatever the caller
/// set: a caller chooses every limit su starts with, tightened (no file may
/// grow, no descriptor or process left) or loosened (core dumps of a
/// process holding the code). Roughly the kernel's own defaults for init.
/// Applied by [`reset_limits`].
const LIMITS: [(Resource, libc::rlim_t, libc::rlim_t); 16] = [
    (libc::RLIMIT_CPU, UNLIMITED, UNLIMITED),
    (libc::RLIMIT_FSIZE, UNLIMITED, UNLIMITED),
    (libc::RLIMIT_DATA, UNLIMITED, UNLIMITED),
    (libc::RLIMIT_STACK, 8 << 20, UNLIMITED),
    (libc::RLIMIT_CORE, 0, 0),
    (libc::RLIMIT_RSS, UNLIMITED, UNLIMITED),
    (libc::RLIMIT_NPROC, UNLIMITED, UNLIMITED),
    (libc::RLIMIT_NOFILE, 1024, 4096),
    (libc::RLIMIT_MEMLOCK, 8 << 20, 8 << 20),
    (libc::RLIMIT_AS, UNLIMITED, UNLIMITED),
    (libc::RLIMIT_LOCKS, UNLIMITED, UNLIMITED),
    (libc::RLIMIT_SIGPENDING, 16_384, 16_384),
    (libc::RLIMIT_MSGQUEUE, 819_200, 819_200),
    (libc::RLIMIT_NICE, 0, 0),
    (libc::RLIMIT_RTPRIO, 0, 0),
    (libc::RLIMIT_RTTIME, UNLIMITED, UNLIMITED),
];

/// In the new process: [`LIMITS`]. A hard limit above the current one
/// needs CAP_SYS_RESOURCE, which root has on a normal system but not in
/// every container (nor does a process without root): where raising it is
/// refused, the limit goes as high as the current hard limit allows — no
/// process on this machine could do better.
fn reset_limits() -> Result<(), c_int> {
    for (resource, soft, hard) in LIMITS {
        let wanted = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads one valid rlimit structure.
        if unsafe { libc::setrlimit(resource, &wanted) } == 0 {
            continue;
        }
        let e = errno();
        let mut now = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit structure.
        if e != libc::EPERM || unsafe { libc::getrlimit(resource, &mut now) } != 0 {
            return Err(e);
        }
        let hard = hard.min(now.rlim_max);
        let clamped = libc::rlimit {
            rlim_cur: soft.min(hard),
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads one valid rlimit structure.
        if unsafe { libc::setrlimit(resource, &clamped) } != 0 {
            return Err(errno());
        }
    }
    Ok(())
}

/// Signal numbers the kernel knows (1..=KERNEL_NSIG), and the size of its
/// signal set.
#[cfg(any(target_arch = "mips", target_arch = "mips64"))]
const KERNEL_NSIG: c_int = 128;
#[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
const KERNEL_NSIG: c_int = 64;
const KERNEL_SIGSET_BYTES: usize = KERNEL_NSIG as usize / 8;

/// Everything the new process does between fork and exec, prepared before
/// the fork: the hook itself allocates nothing. In order: when this
/// process has effective uid 0, real, effective and saved gid and uid 0 and
/// no supplementary groups; a session of its own; every signal at its
/// default action and none blocked; `LIMITS`; umask 077; the message
/// written into its stdin (an in-memory file, rewound); every descriptor
/// above stderr close-on-exec.
pub struct ChildSetup {
    /// This process has effective uid 0: the program gets uid and gid 0
    /// everywhere (real, effective, saved), whoever the real uid is.
    to_root: bool,
    message: Zeroizing<Vec<u8>>,
}

impl ChildSetup {
    /// The setup for a program that reads `text` on its stdin, which must
    /// be an in-memory file ([`super::fs::memory_file`]) or a regular file.
    pub fn new(text: &str) -> ChildSetup {
        ChildSetup {
            to_root: super::effective_uid() == 0,
            message: Zeroizing::new(text.as_bytes().to_vec()),
        }
    }

    /// Makes `command` run this setup in its new process, after std's own
    /// (stdio, working directory) and before exec. A step that fails fails
    /// the spawn with an error [`spawn_failure`] decodes.
    pub fn install(self, command: &mut Command) {
        // SAFETY: the hook runs in the child of a fork of a possibly
        // multi-threaded process, so it must only make async-signal-safe
        // system calls and never allocate or take a lock: `apply` and
        // everything it calls do exactly that (the message was copied and
        // the limits are a constant, both before the fork).
        unsafe {
            command.pre_exec(move || self.apply());
        }
    }

    /// In the new process, between fork and exec: only async-signal-safe
    /// system calls, no allocation, no panic. The ids first, so that the
    /// caller's real uid is gone as early as possible (until then it may
    /// signal this process).
    fn apply(&self) -> std::io::Result<()> {
        if self.to_root {
            switch_to_root()?;
        }
        // SAFETY: setsid has no memory-safety preconditions. The child of a
        // fork is never a process group leader, so it cannot fail with
        // EPERM; any failure is reported all the same.
        if unsafe { libc::setsid() } < 0 {
            return Err(SetupStep::Session.error(errno()));
        }
        reset_signals().map_err(|e| SetupStep::Signals.error(e))?;
        reset_limits().map_err(|e| SetupStep::Limits.error(e))?;
        // SAFETY: umask cannot fail and touches no memory.
        unsafe { libc::umask(0o077) };
        write_message(&self.message).map_err(|e| SetupStep::Message.error(e))?;
        close_inherited_fds().map_err(|e| SetupStep::Descriptors.error(e))
    }
}

/// In the new process: real, effective and saved gid 0, no supplementary
/// groups, then real, effective and saved uid 0 (gids first, as whenever
/// ids change: setresgid and setgroups need a privilege a uid switch can
/// take away). Every failure fails the spawn: the program never runs with
/// the caller's ids.
fn switch_to_root() -> std::io::Result<()> {
    // SAFETY: setresgid, setgroups, getgroups and setresuid have no
    // memory-safety preconditions; setgroups with size 0 reads nothing and
    // getgroups with size 0 writes nothing. They are the system calls std
    // itself makes in this place for Command::uid and Command::gid.
    unsafe {
        if libc::setresgid(0, 0, 0) != 0 {
            return Err(SetupStep::Gid.error(errno()));
        }
        if libc::setgroups(0, std::ptr::null()) != 0 {
            let err = errno();
            // Where setgroups is denied (a user namespace), a process
            // without supplementary groups has nothing to drop.
            if libc::getgroups(0, std::ptr::null_mut()) != 0 {
                return Err(SetupStep::Groups.error(err));
            }
        }
        if libc::setresuid(0, 0, 0) != 0 {
            return Err(SetupStep::Uid.error(errno()));
        }
    }
    Ok(())
}

/// In the new process: every signal's action back to the default and an
/// empty signal mask. A caller can exec su with signals ignored (SIG_IGN
/// survives exec) or blocked (so does the mask): SIGXFSZ ignored turns a
/// file size limit into silent short writes, SIGTERM blocked makes a
/// program unstoppable. Raw system calls: glibc's wrappers refuse the two
/// real-time signals it keeps for itself, which a caller can ignore all
/// the same.
fn reset_signals() -> Result<(), c_int> {
    let empty = [0u8; KERNEL_SIGSET_BYTES];
    // A kernel `struct sigaction` that is all zeros, on every architecture:
    // handler SIG_DFL (0), no flags, no restorer, an empty mask. 64 bytes
    // are more than any layout needs.
    let default = [0u64; 8];
    // SAFETY: rt_sigprocmask reads one kernel signal set of the size given;
    // rt_sigaction reads one kernel sigaction (64 zero bytes are more than
    // its size) and writes nothing (null old action).
    unsafe {
        if libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK as libc::c_long,
            empty.as_ptr(),
            std::ptr::null_mut::<u8>(),
            KERNEL_SIGSET_BYTES,
        ) != 0
        {
            return Err(errno());
        }
        for sig in 1..=KERNEL_NSIG {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            if libc::syscall(
                libc::SYS_rt_sigaction,
                sig as libc::c_long,
                default.as_ptr(),
                std::ptr::null_mut::<u64>(),
                KERNEL_SIGSET_BYTES,
            ) != 0
            {
                return Err(errno());
            }
        }
    }
    Ok(())
}

/// In the new process: the message into stdin (the in-memory file), which
/// is then rewound for the program to read.
fn write_message(message: &[u8]) -> Result<(), c_int> {
    // A file size limit that could not be raised (no CAP_SYS_RESOURCE)
    // would kill this process with SIGXFSZ, which looks like a program
    // killed by a signal: say what it is instead.
    let mut fsize = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit structure.
    if unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut fsize) } != 0 {
        return Err(errno());
    }
    if fsize.rlim_cur != UNLIMITED && fsize.rlim_cur < message.len() as libc::rlim_t {
        return Err(libc::EFBIG);
    }
    let mut done = 0;
    while done < message.len() {
        let rest = message.get(done..).unwrap_or_default();
        // SAFETY: writes from a valid buffer of rest.len() bytes.
        let n = unsafe { libc::write(libc::STDIN_FILENO, rest.as_ptr().cast(), rest.len()) };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(libc::EIO);
        }
        done += n as usize;
    }
    // SAFETY: lseek has no memory-safety preconditions.
    if unsafe { libc::lseek(libc::STDIN_FILENO, 0, libc::SEEK_SET) } != 0 {
        return Err(errno());
    }
    Ok(())
}

/// In the new process: marks every descriptor above stderr close-on-exec,
/// so the program inherits none of the caller's (std's own error pipe is
/// already close-on-exec and must stay open until exec).
fn close_inherited_fds() -> Result<(), c_int> {
    // SAFETY: close_range and fcntl are async-signal-safe system calls that
    // only change descriptor flags.
    unsafe {
        if libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) == 0
        {
            return Ok(());
        }
        // Kernels before 5.11: one descriptor at a time, up to a fixed
        // bound (the caller may have lowered RLIMIT_NOFILE below
        // descriptors it holds).
        for fd in 3..65_536 {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
    Ok(())
}

/// Has the child exited? Looks without reaping it (WNOWAIT), so its pid —
/// and so its process group id — cannot be reused before
/// [`kill_group`].
pub fn has_exited(child: &Child) -> std::io::Result<bool> {
    // SAFETY: siginfo_t is plain data; all-zero is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid writes one siginfo_t, `info`, a live local; it fills
    // it or leaves si_pid 0.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            child.id(),
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: waitid succeeded, so `info` was written as a SIGCHLD siginfo
    // (or left all zero), in which si_pid is valid.
    Ok(unsafe { info.si_pid() } != 0)
}

/// Sends SIGKILL to the process group of `child`, which leads its own
/// session ([`ChildSetup`]), so its process group id is its pid. Call it
/// before `child` is reaped (`wait`), while that pid cannot name anyone
/// else's group.
pub fn kill_group(child: &Child) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_steps_round_trip_through_the_error_number() {
        for step in SetupStep::ALL {
            for errno in [libc::EPERM, libc::EAGAIN, libc::EFBIG, 4095] {
                let e = step.error(errno);
                assert_eq!(
                    e.raw_os_error().and_then(SetupStep::decode),
                    Some((step, errno))
                );
            }
        }
        // exec's own errors are plain errno values.
        for errno in [0, libc::ENOENT, libc::EACCES, libc::ENOEXEC, 4095] {
            assert_eq!(SetupStep::decode(errno), None);
        }
    }

    #[test]
    fn spawn_failures_are_decoded() {
        let failure = |errno| spawn_failure(&std::io::Error::from_raw_os_error(errno));
        for errno in [libc::EAGAIN, libc::ENOMEM, libc::EMFILE, libc::ENFILE] {
            assert!(matches!(failure(errno), SpawnFailure::Shortage));
        }
        for errno in [libc::ENOENT, libc::EACCES, libc::ENOEXEC, libc::ETXTBSY] {
            assert!(matches!(failure(errno), SpawnFailure::Exec));
        }
        match spawn_failure(&SetupStep::Groups.error(libc::EPERM)) {
            SpawnFailure::Setup { step, error } => {
                assert_eq!(step, SetupStep::Groups);
                assert_eq!(error.raw_os_error(), Some(libc::EPERM));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn limits_cover_every_resource_once() {
        let mut seen: Vec<Resource> = LIMITS.iter().map(|(r, _, _)| *r).collect();
        seen.sort_unstable();
        seen.dedup();
        // Linux numbers its limits 0 (RLIMIT_CPU) to 15 (RLIMIT_RTTIME).
        assert_eq!(seen.len(), 16);
        assert_eq!(seen.first(), Some(&libc::RLIMIT_CPU));
        assert_eq!(seen.last(), Some(&libc::RLIMIT_RTTIME));
        for (_, soft, hard) in LIMITS {
            assert!(soft <= hard);
        }
    }
}
