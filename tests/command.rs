//! The command gateway with real programs (shell scripts in a private
//! root-owned temp dir): the exact invocation (arguments, stdin, empty
//! environment, no inherited descriptors), exit statuses, timeouts with
//! the whole process group killed and the child reaped, output caps, and
//! the safety checks on the program. Needs root (`make test` runs as root).

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pam_gateway_core::config::Config;
use pam_gateway_core::gateway::command::{CommandConfig, CommandError, CommandGateway};
use pam_gateway_core::gateway::{DeliveryError, Gateway};

const MESSAGE: &str =
    "482913 is your login code for alice@host (sshd from 203.0.113.7).\nIt expires in 5 min.";
const BOB: &str = "+4915112345678";

fn require_root() {
    pgw_test_support::root::require(
        "the command gateway's tests (it only runs root-owned programs)",
    );
}

/// A private directory (root, 0700) under /tmp, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        require_root();
        let mut nonce = [0u8; 6];
        getrandom::fill(&mut nonce).expect("random");
        let name: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        let path = std::env::temp_dir().join(format!("pgw-cmd-{name}"));
        fs::create_dir(&path).expect("mkdir");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).expect("chmod");
        Dir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// Writes an executable `#!/bin/sh` script; `DIR` in it becomes this dir.
    fn script(&self, name: &str, body: &str) -> PathBuf {
        let p = self.0.join(name);
        let text = format!(
            "#!/bin/sh\n{}",
            body.replace("DIR", &self.0.display().to_string())
        );
        write_program(&p, &text);
        p
    }

    fn read(&self, name: &str) -> String {
        fs::read_to_string(self.0.join(name)).unwrap_or_default()
    }
}

/// Writes `text` to `path`, mode 0755, from a child process. Written here,
/// the file would be open for writing in this process for a moment, and a
/// test running beside this one that spawns a program copies every open
/// descriptor into its child until that child's exec: if this test's exec
/// of the file came in between, it would fail with ETXTBSY ("Text file
/// busy"), as it once did in CI. A child's descriptor is its own.
fn write_program(path: &Path, text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("sh")
        .args(["-c", "cat > \"$0\" && chmod 755 \"$0\""])
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("sh");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let status = child.wait().expect("wait");
    assert!(status.success(), "writing {}: {status}", path.display());
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::set_permissions(&self.0, fs::Permissions::from_mode(0o700));
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn config(path: &Path, extra: &str) -> CommandConfig {
    Config::parse(
        Path::new("/t/gateway.toml"),
        &format!("[command]\npath = \"{}\"\n{extra}", path.display()),
    )
    .expect("config")
    .section::<CommandConfig>()
    .cloned()
    .expect("command")
}

fn gateway(path: &Path, extra: &str) -> CommandGateway {
    CommandGateway::new(&config(path, extra))
}

/// Is the process gone (or a zombie nobody of ours will reap)?
fn dead(pid: &str) -> bool {
    let pid = pid.trim();
    assert!(!pid.is_empty(), "no pid recorded");
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn runs_exactly_as_documented() {
    let dir = Dir::new();
    let prog = dir.script(
        "notify",
        "printf '%s\\n' \"$@\" > DIR/args\ncat > DIR/stdin\nenv > DIR/env\npwd > DIR/pwd\n\
         ls /proc/$$/fd > DIR/fds\n",
    );
    // A descriptor without close-on-exec, as sshd or sudo may hold one.
    let file = fs::File::open("/dev/null").expect("open");
    // Numbered 100 or above: dash keeps its own saved descriptors at 10+
    // while it runs a redirection, and those must not be mistaken for ours.
    // SAFETY: F_DUPFD of a valid descriptor; the new one is closed below.
    let leaked = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&file), libc::F_DUPFD, 100) };
    assert!(leaked >= 100);
    let gw = gateway(
        &prog,
        "name = \"SMS\"\nargs = [\"sendsms\", \"TEXT\", \"two words\"]\n",
    );
    assert_eq!((gw.id(), gw.display_name()), ("command", "SMS"));
    gw.send(BOB, MESSAGE).expect("delivered");
    // SAFETY: closing the descriptor dup'ed above.
    unsafe { libc::close(leaked) };
    // The recipient is not among the arguments (everybody may read those).
    assert_eq!(dir.read("args"), "sendsms\nTEXT\ntwo words\n");
    assert_eq!(dir.read("stdin"), MESSAGE);
    // The recipient, and PWD (dash sets it itself): nothing comes from our
    // environment.
    let env = dir.read("env");
    let mut env: Vec<&str> = env.lines().collect();
    env.sort_unstable();
    assert_eq!(
        env,
        [format!("PAM_GATEWAY_RECIPIENT={BOB}").as_str(), "PWD=/"]
    );
    assert_eq!(dir.read("pwd").trim(), "/");
    let fds: Vec<String> = dir
        .read("fds")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    for std_fd in ["0", "1", "2"] {
        assert!(fds.contains(&std_fd.to_string()), "{fds:?}");
    }
    assert!(
        !fds.contains(&leaked.to_string()),
        "fd {leaked} leaked into the program: {fds:?}"
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn recipient_arg_also_passes_the_recipient_last() {
    let dir = Dir::new();
    let prog = dir.script(
        "notify",
        "printf '%s\\n' \"$@\" > DIR/args\nenv > DIR/env\n",
    );
    let gw = gateway(
        &prog,
        "args = [\"sendsms\", \"TEXT\"]\nrecipient_arg = true\n",
    );
    gw.send(BOB, MESSAGE).expect("delivered");
    assert_eq!(dir.read("args"), format!("sendsms\nTEXT\n{BOB}\n"));
    assert!(
        dir.read("env")
            .lines()
            .any(|l| l == format!("PAM_GATEWAY_RECIPIENT={BOB}")),
        "{}",
        dir.read("env")
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn exit_statuses_map_to_delivery_classes() {
    let dir = Dir::new();
    // Exits with its first argument; echoes its stdin (the code!) to stderr.
    let prog = dir.script("exit-with", "cat >&2\nexit \"$1\"\n");
    let cases = [
        ("0", None),
        ("75", Some("unreachable")),
        ("69", Some("unreachable")),
        ("67", Some("rejected")),
        ("68", Some("rejected")),
        ("1", Some("rejected")),
        ("78", Some("misconfigured")),
        ("77", Some("misconfigured")),
        ("127", Some("misconfigured")),
    ];
    for (code, class) in cases {
        let gw = gateway(&prog, &format!("args = [\"{code}\"]\n"));
        match (gw.send(BOB, MESSAGE), class) {
            (Ok(()), None) => {}
            (Err(e), Some(class)) => {
                assert_eq!(e.class(), class, "exit {code}: {e}");
                // "Try later": the program says its service failed.
                if class == "unreachable" {
                    assert!(matches!(e, DeliveryError::ServiceFailed(_)), "{e:?}");
                }
                let text = e.to_string();
                assert!(text.contains(&format!("exit status {code}")), "{text}");
                assert!(text.contains(&prog.display().to_string()), "{text}");
                assert!(!text.contains("482913"), "the code leaked: {text}");
                assert!(text.contains("is your login code"), "excerpt: {text}");
                assert!(!text.contains('\n'), "one line: {text}");
            }
            (r, c) => panic!("exit {code}: {r:?}, expected {c:?}"),
        }
    }
    let prog = dir.script("suicide", "kill -9 $$\n");
    let err = CommandGateway::new(&config(&prog, ""))
        .run(BOB, "x")
        .unwrap_err();
    assert!(
        matches!(err, CommandError::Killed { signal: 9, .. }),
        "{err}"
    );
    assert_eq!(DeliveryError::from(err).class(), "rejected");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn timeout_kills_the_group_and_reaps_the_child() {
    let dir = Dir::new();
    let prog = dir.script(
        "hang",
        "echo $$ > DIR/pid\nsleep 30 &\necho $! > DIR/bg\nsleep 30\n",
    );
    let gw = gateway(&prog, "timeout = 1\n");
    let start = Instant::now();
    let err = gw.run(BOB, MESSAGE).unwrap_err();
    let took = start.elapsed();
    assert_eq!(err, CommandError::Timeout(Duration::from_secs(1)));
    // Its fate is unknown: it may have delivered.
    assert!(matches!(
        DeliveryError::from(err),
        DeliveryError::Unreachable(_)
    ));
    assert!(took < Duration::from_secs(4), "took {took:?}");
    // The child itself is reaped: no /proc entry at all.
    let pid = dir.read("pid");
    assert!(
        fs::metadata(format!("/proc/{}", pid.trim())).is_err(),
        "child {pid} not reaped"
    );
    // The background grandchild died with the group.
    let bg = dir.read("bg");
    let deadline = Instant::now() + Duration::from_secs(2);
    while !dead(&bg) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(dead(&bg), "grandchild {bg} survived");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn nothing_of_the_program_outlives_it() {
    let dir = Dir::new();
    // Exits at once but leaves a child behind that holds stdout open.
    let prog = dir.script("leaves", "sleep 30 &\necho $! > DIR/bg\nexit 0\n");
    let start = Instant::now();
    gateway(&prog, "").run(BOB, MESSAGE).expect("delivered");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    let bg = dir.read("bg");
    let deadline = Instant::now() + Duration::from_secs(2);
    while !dead(&bg) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(dead(&bg), "left-over process {bg} still running");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn floods_of_output_and_unread_stdin_are_fine() {
    let dir = Dir::new();
    let prog = dir.script("flood", "head -c 20000000 /dev/zero\nexit 0\n");
    let start = Instant::now();
    gateway(&prog, "").run(BOB, MESSAGE).expect("delivered");
    assert!(start.elapsed() < Duration::from_secs(10));
    let prog = dir.script(
        "flood-err",
        "i=0\nwhile [ $i -lt 2000 ]; do echo \"error line $i 4915112345678\" >&2; i=$((i+1)); done\nexit 3\n",
    );
    let err = gateway(&prog, "").run(BOB, MESSAGE).unwrap_err();
    let CommandError::Failed { code: 3, output } = &err else {
        panic!("{err:?}");
    };
    assert!(output.chars().count() <= 201, "{output}");
    assert!(output.starts_with("error line 0 [digits]"), "{output}");
    // A program that ignores its stdin (and a long message).
    let prog = dir.script("ignore", "exit 0\n");
    gateway(&prog, "")
        .run(BOB, &"x".repeat(200_000))
        .expect("delivered");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn unsafe_programs_are_refused_before_running() {
    let dir = Dir::new();
    let marker = dir.path().join("ran");
    let body = format!("touch {}\n", marker.display());
    let check = |path: &Path, reason: &str| {
        let err = gateway(path, "").send(BOB, MESSAGE).unwrap_err();
        assert_eq!(err.class(), "misconfigured", "{}: {err}", path.display());
        assert!(err.to_string().contains(reason), "{reason:?} not in {err}");
        assert!(!marker.exists(), "{} was run", path.display());
    };

    let prog = dir.script("group-writable", &body);
    fs::set_permissions(&prog, fs::Permissions::from_mode(0o775)).expect("chmod");
    check(&prog, "writable by group or others (chmod go-w");

    let prog = dir.script("not-root", &body);
    std::os::unix::fs::chown(&prog, Some(65534), None).expect("chown");
    check(&prog, "owned by uid 65534");

    let prog = dir.script("not-exec", &body);
    fs::set_permissions(&prog, fs::Permissions::from_mode(0o644)).expect("chmod");
    check(&prog, "not executable");

    check(&dir.path().join("missing"), "no such file");
    check(dir.path(), "not a regular file");

    // A symlink to a safe program is followed; the program's own checks apply.
    let safe = dir.script("safe", "exit 0\n");
    let link = dir.path().join("link");
    symlink(&safe, &link).expect("ln");
    gateway(&link, "")
        .send(BOB, MESSAGE)
        .expect("a safe target runs");

    // A program in a directory others can write to.
    let open_dir = dir.path().join("open");
    fs::create_dir(&open_dir).expect("mkdir");
    let prog = open_dir.join("prog");
    write_program(&prog, &format!("#!/bin/sh\n{body}"));
    fs::set_permissions(&open_dir, fs::Permissions::from_mode(0o777)).expect("chmod");
    check(&prog, "directory mode 0777");
    // … also when reached through a symlink from a safe place.
    let link = dir.path().join("link-to-open");
    symlink(&prog, &link).expect("ln");
    check(&link, "directory mode 0777");
    // A sticky world-writable directory (like /tmp) is fine for a root-owned
    // entry: others cannot replace it.
    fs::set_permissions(&open_dir, fs::Permissions::from_mode(0o1777)).expect("chmod");
    gateway(&prog, "")
        .send(BOB, MESSAGE)
        .expect("sticky dir is safe");
    assert!(marker.exists());
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn recipients_that_look_like_options_are_refused() {
    let dir = Dir::new();
    let prog = dir.script("p", "touch DIR/ran\n");
    let err = gateway(&prog, "").run("--help", MESSAGE).unwrap_err();
    assert!(matches!(err, CommandError::BadRecipient(_)), "{err}");
    assert_eq!(DeliveryError::from(err).class(), "rejected");
    assert!(!dir.path().join("ran").exists());
}

#[test]
fn section_checks() {
    let parse = |text: &str| {
        Config::parse(
            Path::new("/t/gateway.toml"),
            &format!("[command]\n{text}\n"),
        )
    };
    let c = parse("path = \"/usr/bin/gammu\"")
        .expect("defaults")
        .section::<CommandConfig>()
        .cloned()
        .expect("command");
    assert_eq!(c.timeout, Duration::from_secs(20));
    assert_eq!(c.name, "command");
    assert!(c.args.is_empty());
    assert!(!c.recipient_arg, "the recipient stays out of ps by default");
    let c = parse("path = \"/usr/bin/gammu\"\nrecipient_arg = true")
        .expect("recipient_arg")
        .section::<CommandConfig>()
        .cloned()
        .expect("command");
    assert!(c.recipient_arg);
    for (text, key) in [
        (
            "path = \"/usr/bin/gammu\"\nrecipient_arg = \"yes\"",
            "command.recipient_arg",
        ),
        ("path = \"gammu\"", "command.path"),
        ("path = \"/usr/bin/gammu\"\ntimeout = 0", "command.timeout"),
        (
            "path = \"/usr/bin/gammu\"\ntimeout = 121",
            "command.timeout",
        ),
        (
            "path = \"/usr/bin/gammu\"\nargs = [\"a\\nb\"]",
            "command.args",
        ),
        ("path = \"/usr/bin/gammu\"\nname = \"\"", "command.name"),
        ("path = \"/usr/bin/gammu\"\nshell = true", "command.shell"),
        ("args = []", "command"),
    ] {
        let err = parse(text).unwrap_err();
        assert!(
            err.key.as_deref().is_some_and(|k| k.starts_with(key)),
            "{text}: {err}"
        );
        assert!(err.line.is_some(), "{text}: {err}");
    }
}

// ------------------------------------------------ the caller is an attacker ----
//
// Under su and sudo the module runs in a setuid-root process whose real uid
// is the caller's. These tests fork a copy of the test process, make it look
// like that (real uid and gid 65534, effective and saved uid 0, the caller's
// supplementary groups, a controlling terminal, signals ignored and blocked,
// rlimits of its choosing) and send from there.

/// The unprivileged caller (nobody).
const CALLER: u32 = 65534;
/// A supplementary group of the caller's that must not reach the program.
const CALLER_GROUP: u32 = 4242;

/// A forked copy of this process running a closure; what the closure
/// returns comes back through a pipe.
struct Forked {
    pid: libc::pid_t,
    out: fs::File,
}

/// Runs `f` in a forked child. The child only ever leaves through `_exit`:
/// no destructor of the test's (a `Dir`) runs twice.
fn fork_with(f: impl FnOnce() -> String) -> Forked {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    let mut fds = [0 as libc::c_int; 2];
    assert_eq!(
        // SAFETY: pipe2 writes two descriptors into the array.
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) },
        0,
        "pipe2"
    );
    // SAFETY: the child runs `f` and leaves through _exit; glibc's fork
    // keeps malloc usable in the child.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // Only stdio and our pipe: descriptors of other test threads (a
        // script being written) held here would fail their exec with
        // ETXTBSY.
        let w = fds[1] as libc::c_uint;
        // SAFETY: closing descriptors nothing in this child uses.
        unsafe {
            libc::syscall(libc::SYS_close_range, 3u32, w - 1, 0u32);
            libc::syscall(libc::SYS_close_range, w + 1, u32::MAX, 0u32);
        }
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
                let text = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                format!("PANIC in the forked child: {text}")
            });
        // SAFETY: the write end is ours; _exit runs no destructors.
        unsafe {
            let mut w = fs::File::from_raw_fd(fds[1]);
            let _ = w.write_all(result.as_bytes());
            libc::_exit(0);
        }
    }
    // SAFETY: closing our copy of the write end; the read end becomes a File.
    unsafe { libc::close(fds[1]) };
    Forked {
        pid,
        // SAFETY: the read end is a fresh descriptor owned by nobody else.
        out: unsafe { fs::File::from_raw_fd(fds[0]) },
    }
}

impl Forked {
    /// Waits for the child, then reads what it sent. (Waiting first: a
    /// child forked meanwhile by another test thread holds a copy of the
    /// write end, so EOF may come late; results are far below a pipe's
    /// buffer.)
    fn wait(mut self) -> String {
        use std::io::Read;
        let mut status = 0;
        // SAFETY: waiting for our own child.
        let rc = unsafe { libc::waitpid(self.pid, &mut status, 0) };
        assert_eq!(rc, self.pid, "waitpid");
        // SAFETY: the descriptor is open for the lifetime of `self.out`.
        unsafe {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&self.out);
            let flags = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        let mut out = Vec::new();
        let _ = self.out.read_to_end(&mut out);
        let out = String::from_utf8_lossy(&out).into_owned();
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "forked child ended with status {status:#x}: {out}"
        );
        assert!(!out.starts_with("PANIC"), "{out}");
        out
    }
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// In a forked child: look like `su` run by uid 65534 from a terminal.
/// A session of its own with a pty as controlling terminal; groups
/// [65534, 4242]; real, effective and saved gid 65534; real uid 65534,
/// effective and saved uid 0.
fn become_su_caller() {
    // SAFETY: plain system calls on values we own; ptsname_r writes at most
    // buf.len() bytes.
    unsafe {
        assert!(libc::setsid() > 0, "setsid: {}", last_errno());
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(m >= 0, "posix_openpt");
        assert_eq!(libc::grantpt(m), 0, "grantpt");
        assert_eq!(libc::unlockpt(m), 0, "unlockpt");
        let mut buf = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(m, buf.as_mut_ptr(), buf.len()), 0);
        // Opened without O_NOCTTY by a session leader: our terminal now.
        let s = libc::open(buf.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        assert!(s >= 0, "open the pty slave: {}", last_errno());
        libc::ioctl(s, libc::TIOCSCTTY, 0);
        let groups = [CALLER, CALLER_GROUP];
        assert_eq!(libc::setgroups(2, groups.as_ptr()), 0, "setgroups");
        assert_eq!(libc::setresgid(CALLER, CALLER, CALLER), 0, "setresgid");
        assert_eq!(libc::setresuid(CALLER, 0, 0), 0, "setresuid");
    }
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let tty_nr = stat
        .rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().nth(4))
        .unwrap_or("0");
    assert_ne!(tty_nr, "0", "the caller has no controlling terminal");
}

/// In a forked child: become uid and gid 65534 entirely, without groups.
fn become_nobody() {
    // SAFETY: plain system calls.
    unsafe {
        assert_eq!(libc::setgroups(0, std::ptr::null()), 0, "setgroups");
        assert_eq!(libc::setresgid(CALLER, CALLER, CALLER), 0, "setresgid");
        assert_eq!(libc::setresuid(CALLER, CALLER, CALLER), 0, "setresuid");
    }
}

/// In a forked child: ignore and block signals the way a caller may before
/// it execs su (SIG_IGN survives exec, and so does the mask).
fn ignore_and_block_signals() {
    // SAFETY: sigaction and sigprocmask with valid, initialised arguments.
    unsafe {
        for sig in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGXFSZ,
            libc::SIGUSR1,
            libc::SIGRTMIN() + 3,
        ] {
            assert_ne!(libc::signal(sig, libc::SIG_IGN), libc::SIG_ERR, "{sig}");
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGUSR2, libc::SIGALRM, libc::SIGCHLD] {
            libc::sigaddset(&mut set, sig);
        }
        assert_eq!(
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()),
            0
        );
    }
}

fn set_limit(resource: libc::__rlimit_resource_t, soft: libc::rlim_t, hard: libc::rlim_t) {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    assert_eq!(
        // SAFETY: setrlimit reads a valid rlimit.
        unsafe { libc::setrlimit(resource, &lim) },
        0,
        "setrlimit {resource}: {}",
        last_errno()
    );
}

fn hard_limit(resource: libc::__rlimit_resource_t) -> libc::rlim_t {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes a valid rlimit.
    assert_eq!(unsafe { libc::getrlimit(resource, &mut lim) }, 0);
    lim.rlim_max
}

/// A directory others may enter (0755; still root-owned and writable by
/// root only, so its programs pass the checks), for programs that a
/// process without root may run — or that drop to the caller's uid, as
/// the code before this test did, and should still be able to say so.
fn open_dir() -> Dir {
    let dir = Dir::new();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// An empty file anybody may write, for a program's report.
fn report_file(dir: &Dir, name: &str) -> PathBuf {
    let p = dir.path().join(name);
    fs::write(&p, "").expect("write");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o666)).expect("chmod");
    p
}

/// A program that writes who and how it runs to DIR/report.
/// (Its own status is read with the shell's `read`, first: dash blocks
/// every signal for a moment whenever it forks, and a forked reader could
/// see that.)
const REPORT: &str = "{\n\
    while IFS= read -r line; do case $line in \
    Uid:*|Gid:*|Groups:*|SigIgn:*|SigBlk:*) echo \"$line\";; esac; done < /proc/$$/status\n\
    echo \"ids $(id -u) $(id -ru) $(id -g) $(id -rg)\"\n\
    echo \"groups $(id -G)\"\n\
    echo \"nofile $(ulimit -n)\"\n\
    echo \"fsize $(ulimit -f)\"\n\
    echo \"core $(ulimit -c)\"\n\
    sed -n 's/^Max processes  *\\([^ ]*\\).*/nproc \\1/p' /proc/$$/limits\n\
    echo \"cpu $(ulimit -t)\"\n\
    echo \"umask $(umask)\"\n\
    echo \"pid $$\"\n\
    echo \"stat $(cut -d')' -f2- /proc/$$/stat)\"\n\
    echo \"tty $(ps -o tty= -p $$)\"\n\
    for a in \"$@\"; do echo \"arg $a\"; done\n\
    env | sed 's/^/env /'\n\
    } > DIR/report 2>&1\n\
    cat > DIR/stdin\n\
    echo written > DIR/written\n";

/// The lines of a report starting with `key ` (the rest of each).
fn values<'a>(report: &'a str, key: &str) -> Vec<&'a str> {
    report
        .lines()
        .filter_map(|l| l.strip_prefix(key))
        .filter_map(|l| l.strip_prefix(' ').or_else(|| l.strip_prefix('\t')))
        .map(str::trim)
        .collect()
}

fn value<'a>(report: &'a str, key: &str) -> &'a str {
    values(report, key)
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no {key:?} in the report:\n{report}"))
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn under_su_the_program_runs_as_root_alone() {
    let dir = open_dir();
    for f in ["report", "stdin", "written"] {
        report_file(&dir, f);
    }
    let prog = dir.script("notify", REPORT);
    let gw = gateway(&prog, "args = [\"sendsms\", \"TEXT\"]\n");
    let result = fork_with(|| {
        become_su_caller();
        ignore_and_block_signals();
        format!("{:?}", gw.send(BOB, MESSAGE))
    })
    .wait();
    assert_eq!(result, "Ok(())");
    let r = dir.read("report");
    // Real, effective and saved ids all root; no group of the caller's.
    assert_eq!(value(&r, "ids"), "0 0 0 0", "{r}");
    assert_eq!(value(&r, "groups"), "0", "{r}");
    for key in ["Uid:", "Gid:"] {
        let ids: Vec<&str> = value(&r, key).split_whitespace().collect();
        assert_eq!(ids, ["0", "0", "0", "0"], "{key} {r}");
    }
    let groups = values(&r, "Groups:");
    assert!(
        groups.is_empty() || groups == [""] || groups == ["0"],
        "supplementary groups {groups:?}: {r}"
    );
    // Nothing ignored, nothing blocked.
    assert_eq!(value(&r, "SigIgn:"), "0000000000000000", "{r}");
    assert_eq!(value(&r, "SigBlk:"), "0000000000000000", "{r}");
    assert_eq!(value(&r, "umask"), "0077", "{r}");
    // A session of its own (it leads it and its process group), no
    // controlling terminal.
    let pid = value(&r, "pid");
    let stat: Vec<&str> = value(&r, "stat").split_whitespace().collect();
    assert_eq!(stat[2], pid, "process group: {r}");
    assert_eq!(stat[3], pid, "session: {r}");
    assert_eq!(stat[4], "0", "tty_nr: {r}");
    assert_eq!(value(&r, "tty"), "?", "{r}");
    // The recipient is in the environment (readable by root only), not in
    // the arguments (readable by everybody).
    assert_eq!(values(&r, "arg"), ["sendsms", "TEXT"], "{r}");
    let mut env = values(&r, "env");
    env.sort_unstable();
    assert_eq!(
        env,
        [format!("PAM_GATEWAY_RECIPIENT={BOB}").as_str(), "PWD=/"],
        "{r}"
    );
    assert_eq!(dir.read("stdin"), MESSAGE);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn limits_the_caller_chose_do_not_reach_the_program() {
    let dir = open_dir();
    for f in ["report", "stdin", "written"] {
        report_file(&dir, f);
    }
    let prog = dir.script("notify", REPORT);
    let gw = gateway(&prog, "");
    // Root raises a hard limit only with CAP_SYS_RESOURCE, which a
    // container may withhold: then nothing can undo a hard limit the
    // caller lowered, and the caller lowers soft limits only here.
    let raise_hard = has_effective_capability(CAP_SYS_RESOURCE);
    if !raise_hard {
        eprintln!("no CAP_SYS_RESOURCE: the caller lowers soft limits only");
    }
    let ulimit = |resource, full: &str| {
        let hard = hard_limit(resource);
        if raise_hard || hard == libc::RLIM_INFINITY {
            full.to_string()
        } else {
            hard.to_string()
        }
    };
    let expect_nproc = ulimit(libc::RLIMIT_NPROC, "unlimited");
    let expect_cpu = ulimit(libc::RLIMIT_CPU, "unlimited");
    let expect_fsize = ulimit(libc::RLIMIT_FSIZE, "unlimited");
    let result = fork_with(|| {
        become_su_caller();
        ignore_and_block_signals();
        let tighten = |resource, soft: libc::rlim_t| {
            let hard = if raise_hard {
                soft
            } else {
                hard_limit(resource)
            };
            set_limit(resource, soft, hard);
        };
        // Low, but enough to spawn; no file may grow (and SIGXFSZ is
        // ignored: writes fail with EFBIG instead); no process of the
        // caller's uid may be forked; one second of CPU; core dumps as
        // large as the caller may (the message holds the code).
        tighten(libc::RLIMIT_NOFILE, 64);
        tighten(libc::RLIMIT_FSIZE, 0);
        tighten(libc::RLIMIT_NPROC, 0);
        tighten(libc::RLIMIT_CPU, 1);
        let core = hard_limit(libc::RLIMIT_CORE);
        set_limit(libc::RLIMIT_CORE, core, core);
        format!("{:?}", gw.send(BOB, MESSAGE))
    })
    .wait();
    assert_eq!(result, "Ok(())");
    let r = dir.read("report");
    assert_eq!(value(&r, "nofile"), "1024", "{r}");
    assert_eq!(value(&r, "fsize"), expect_fsize, "{r}");
    assert_eq!(value(&r, "nproc"), expect_nproc, "{r}");
    assert_eq!(value(&r, "cpu"), expect_cpu, "{r}");
    assert_eq!(value(&r, "core"), "0", "{r}");
    assert_eq!(dir.read("written"), "written\n");
    assert_eq!(dir.read("stdin"), MESSAGE);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn the_caller_can_neither_read_nor_signal_the_program() {
    let dir = open_dir();
    let pid_file = report_file(&dir, "pid");
    // Runs until the test says so (at most 10 s). A wrapper that execs
    // the real program: had the shell dropped to the caller's uid, the
    // exec would make the process dumpable, and so readable by the caller.
    let prog = dir.script(
        "waits",
        "echo $$ > DIR/pid\n\
         exec /bin/sh -c 'i=0; while [ ! -e DIR/done ] && [ $i -lt 200 ]; \
         do sleep 0.05; i=$((i+1)); done; cat > /dev/null' waits \"$@\"\n",
    );
    let gw = gateway(&prog, "args = [\"--to-env\"]\n");
    let caller = fork_with(|| {
        become_su_caller();
        format!("{:?}", gw.send(BOB, MESSAGE))
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut pid = String::new();
    while pid.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        pid = fs::read_to_string(&pid_file)
            .unwrap_or_default()
            .trim()
            .to_string();
    }
    assert!(!pid.is_empty(), "the program did not start");
    let attack = fork_with(|| {
        become_nobody();
        let pid: libc::pid_t = pid.parse().unwrap_or(0);
        let errno = |r: std::io::Result<Vec<u8>>| match r {
            Ok(bytes) => format!("read {:?}", String::from_utf8_lossy(&bytes)),
            Err(e) => format!("errno {}", e.raw_os_error().unwrap_or(0)),
        };
        // SAFETY: kill with signal 0 only checks permission.
        let kill = |target: libc::pid_t| unsafe {
            if libc::kill(target, 0) == 0 {
                "allowed".to_string()
            } else {
                format!("errno {}", last_errno())
            }
        };
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        format!(
            "stdin: {}\nenviron: {}\nkill: {}\nkillpg: {}\ncmdline: {}\n",
            errno(fs::read(format!("/proc/{pid}/fd/0"))),
            errno(fs::read(format!("/proc/{pid}/environ"))),
            kill(pid),
            kill(-pid),
            String::from_utf8_lossy(&cmdline).replace('\0', " ")
        )
    })
    .wait();
    fs::write(dir.path().join("done"), "").expect("write");
    let sent = caller.wait();
    assert_eq!(sent, "Ok(())");
    let eacces = format!("errno {}", libc::EACCES);
    let eperm = format!("errno {}", libc::EPERM);
    assert_eq!(value(&attack, "stdin:"), eacces, "{attack}");
    assert_eq!(value(&attack, "environ:"), eacces, "{attack}");
    assert_eq!(value(&attack, "kill:"), eperm, "{attack}");
    assert_eq!(value(&attack, "killpg:"), eperm, "{attack}");
    // Everybody may read the arguments: they hold no recipient.
    let cmdline = value(&attack, "cmdline:");
    assert!(cmdline.contains("--to-env"), "{attack}");
    assert!(!cmdline.contains(BOB), "{attack}");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn a_process_without_descriptors_left_fails_locally() {
    let dir = open_dir();
    let marker = dir.path().join("ran");
    let prog = dir.script("p", "touch DIR/ran\n");
    let gw = gateway(&prog, "");
    let result = fork_with(|| {
        become_su_caller();
        // No descriptor can be opened any more: the lowest free one is at
        // the limit.
        // SAFETY: dup of stdin (or -1) and close of what it returned.
        let lowest = unsafe {
            let fd = libc::fcntl(0, libc::F_DUPFD, 0);
            libc::close(fd);
            fd
        };
        assert!(lowest > 0);
        set_limit(
            libc::RLIMIT_NOFILE,
            lowest as libc::rlim_t,
            lowest as libc::rlim_t,
        );
        match gw.send(BOB, MESSAGE) {
            Err(e @ DeliveryError::Local(_)) => format!("local {e}"),
            other => format!("not local: {other:?}"),
        }
    })
    .wait();
    assert!(result.starts_with("local "), "{result}");
    assert!(
        result.contains("descriptors") || result.contains("Too many open files"),
        "{result}"
    );
    assert!(!marker.exists(), "the program ran");
}

/// Capabilities of this thread (capget/capset, version 3).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_SETGID: u32 = 6;
const CAP_SYS_RESOURCE: u32 = 24;

fn has_effective_capability(cap: u32) -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = value(&status, "CapEff:");
    u64::from_str_radix(eff, 16).is_ok_and(|bits| bits & (1 << cap) != 0)
}

/// Removes a capability from this thread's effective set.
fn drop_effective_capability(cap: u32) {
    let mut header = CapHeader {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget and capset with a version-3 header and two data slots.
    unsafe {
        assert_eq!(
            libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()),
            0,
            "capget"
        );
        data[0].effective &= !(1 << cap);
        assert_eq!(
            libc::syscall(libc::SYS_capset, &header, data.as_ptr()),
            0,
            "capset"
        );
    }
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn a_failing_switch_to_root_runs_nothing_and_is_a_local_error() {
    let dir = open_dir();
    let marker = dir.path().join("ran");
    let prog = dir.script("p", "touch DIR/ran\n");
    let gw = gateway(&prog, "");
    let result = fork_with(|| {
        become_su_caller();
        // Effective uid 0 without CAP_SETGID: the gids cannot become 0.
        drop_effective_capability(CAP_SETGID);
        let local = |r: Result<(), DeliveryError>| match r {
            Err(e @ DeliveryError::Local(_)) => format!("local {e}"),
            other => format!("not local: {other:?}"),
        };
        let first = local(gw.send(BOB, MESSAGE));
        // The same with SIGCHLD ignored: std cannot reap the process that
        // failed before exec (and panics about it).
        // SAFETY: setting a disposition.
        unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
        let second = local(gw.send(BOB, MESSAGE));
        format!("first: {first}\nsecond: {second}\n")
    })
    .wait();
    let first = value(&result, "first:");
    assert!(first.starts_with("local "), "{result}");
    assert!(first.contains("setresgid"), "{result}");
    let second = value(&result, "second:");
    assert!(second.starts_with("local "), "{result}");
    assert!(!marker.exists(), "the program ran with the caller's ids");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn without_root_the_program_keeps_our_ids_and_a_failed_fork_is_local() {
    let dir = open_dir();
    for f in ["report", "stdin", "written"] {
        report_file(&dir, f);
    }
    let prog = dir.script("notify", REPORT);
    let gw = gateway(&prog, "");
    let result = fork_with(|| {
        // The CLI's test command run by a user, say: nothing to switch to.
        become_nobody();
        ignore_and_block_signals();
        let first = format!("{:?}", gw.send(BOB, MESSAGE));
        // No process of this uid may be forked.
        set_limit(libc::RLIMIT_NPROC, 0, 0);
        let second = match gw.send(BOB, MESSAGE) {
            Err(e @ DeliveryError::Local(_)) => format!("local {e}"),
            other => format!("not local: {other:?}"),
        };
        format!("first: {first}\nsecond: {second}\n")
    })
    .wait();
    assert_eq!(value(&result, "first:"), "Ok(())", "{result}");
    let r = dir.read("report");
    assert_eq!(value(&r, "ids"), "65534 65534 65534 65534", "{r}");
    assert_eq!(value(&r, "SigIgn:"), "0000000000000000", "{r}");
    assert_eq!(value(&r, "SigBlk:"), "0000000000000000", "{r}");
    assert_eq!(value(&r, "umask"), "0077", "{r}");
    let pid = value(&r, "pid");
    let stat: Vec<&str> = value(&r, "stat").split_whitespace().collect();
    assert_eq!(stat[3], pid, "session: {r}");
    let second = value(&result, "second:");
    assert!(second.starts_with("local "), "{result}");
    assert!(
        second.contains("Resource temporarily unavailable"),
        "{result}"
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn a_lost_exit_status_counts_as_sent() {
    let dir = Dir::new();
    let prog = dir.script("p", "exit 0\n");
    let gw = gateway(&prog, "");
    let result = fork_with(|| {
        // The caller execs su with SIGCHLD ignored: children are reaped
        // by the kernel and their status is gone.
        // SAFETY: setting a disposition.
        unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
        format!("{:?}", gw.send(BOB, MESSAGE))
    })
    .wait();
    assert!(result.starts_with("Err(Unreachable("), "{result}");
}
