//! A local program chosen by the admin: gammu with a USB modem, signal-cli
//! on the host, `mail`. It runs with the configured arguments, the
//! recipient in the environment variable [`RECIPIENT_VAR`] (and, only with
//! `recipient_arg = true`, also as its last argument), the message on
//! stdin, and:
//!
//! - no shell, an environment holding only [`RECIPIENT_VAR`], `/` as
//!   working directory;
//! - only stdin, stdout and stderr open (every other descriptor of the
//!   calling process — sshd, sudo — is closed on exec);
//! - when this process has effective uid 0, real, effective and saved uid
//!   and gid 0 and no supplementary groups, whatever the real uid: under
//!   su and sudo the real uid is the caller's, who could otherwise signal
//!   the program or read its stdin (the code) and environment through
//!   /proc. Without effective uid 0 (a test run by a user) there is nothing
//!   to switch to and the program keeps this process's ids. A switch that
//!   fails runs nothing and is a local error;
//! - sane resource limits whatever the caller set (no core dumps, 1024
//!   descriptors, no limit on file size, CPU time or processes), umask 077,
//!   every signal at its default action and none blocked (a caller can
//!   exec su with signals ignored or blocked, and both survive exec);
//! - a session of its own (no controlling terminal), whose process group
//!   is killed when the program exits or its timeout passes, and always
//!   reaped: no zombie, nothing left running;
//! - the program (and every directory above it) root-owned and not
//!   writable by group or others, checked before each run;
//! - the exit status decides (sysexits: 69/75 mean "try later", 67/68 "no
//!   such recipient", 77/78/126/127 "misconfigured");
//! - at most [`OUTPUT_CAP`] bytes of stdout/stderr kept, and only a short
//!   excerpt — control characters flattened, digit runs that could be the
//!   code removed — ever reaches an error or the log.
//!
//! The arguments are visible to every local user (`ps`, /proc/PID/cmdline):
//! no secret belongs in `args`; a program that needs one reads it from a
//! root-only file.
//!
//! The system calls behind the new process's setup, the wait and the kill
//! are in [`crate::system::process`].

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::delivery::{DeliveryError, Gateway};
use super::health::{Health, Problem};
use super::spec::{
    GatewayAdmin, GatewayConnect, GatewaySection, GatewaySpec, SectionCheck, read_section_as,
    section_as,
};
use crate::recipient::check_address;
use crate::redact::mask_recipient;
use crate::section::{SectionError, check_range};
use crate::secure_file::Owner;
use crate::system::fs::{memory_file, poll_readable, set_nonblocking};
use crate::system::process::{ChildSetup, SpawnFailure, has_exited, kill_group, spawn_failure};
use crate::toml_errors::{ParseError, TomlItem, toml_struct};

/// The command gateway in the list of gateways: `[command]`; its recipients
/// are whatever its program takes as $PAM_GATEWAY_RECIPIENT. Its section
/// names it (`name`, default "command").
pub struct CommandSpec;

impl GatewaySpec for CommandSpec {
    fn id(&self) -> &'static str {
        "command"
    }

    fn display_name(&self) -> &'static str {
        "command"
    }

    fn read_section(&self, section: TomlItem<'_>) -> Result<SectionCheck, ParseError> {
        read_section_as(section, RawCommand::read, parse_section)
    }

    fn check_recipient(&self, recipient: &str) -> Result<(), String> {
        check_address(recipient)
    }
}

impl GatewayAdmin for CommandSpec {
    fn recipient_noun(&self) -> &'static str {
        "recipient"
    }

    /// A program, not a service: its device or service may be down.
    fn unreachable_advice(&self, name: &str, reason: &str) -> String {
        format!(
            "{name} could not deliver for now: {reason}. Check the program's device or \
             service, then try again"
        )
    }

    /// The checks a login makes of the program, before running it.
    fn health(&self, section: &dyn GatewaySection, owner: Owner) -> Option<Health> {
        let cfg = section_as::<CommandConfig>(section)?;
        Some(match check_program(&cfg.path, owner) {
            Ok(real) => {
                let resolved = if real == cfg.path {
                    String::new()
                } else {
                    format!(" (it is {})", real.display())
                };
                Health::Ok(format!(
                    "{}{resolved} passes the checks a login makes: owned by root, not \
                     writable by group or others, executable",
                    cfg.path.display()
                ))
            }
            Err(m) => Health::Refused(Problem {
                what: m,
                fix: "Every login checks the program the same way and refuses to run it \
                      until this is fixed"
                    .to_string(),
            }),
        })
    }
}

/// Bytes of stdout and of stderr kept from the program.
pub const OUTPUT_CAP: usize = 4096;
/// After the program exits, how long output still in flight is read.
const DRAIN_GRACE: Duration = Duration::from_millis(50);
/// The environment variable that holds the recipient. The environment of
/// a process is readable only by its owner (here root); its arguments by
/// everybody.
pub const RECIPIENT_VAR: &str = "PAM_GATEWAY_RECIPIENT";

toml_struct! {
    #[derive(Debug)]
    pub struct RawCommand {
        name: Option<String>,
        path: String,
        args: Option<Vec<String>>,
        recipient_arg: Option<bool>,
        timeout: Option<u64>,
    }
}

/// `[command]` of `gateway.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandConfig {
    /// Shown in the prompt: "Code sent via {name} to ***xyz".
    pub name: String,
    /// Absolute path of the program (symlinks are resolved and checked).
    pub path: PathBuf,
    /// The program's arguments (visible to every local user).
    pub args: Vec<String>,
    /// Also pass the recipient as the last argument (visible to every
    /// local user in `ps`), for programs that take it nowhere else.
    pub recipient_arg: bool,
    pub timeout: Duration,
}

impl GatewayConnect for CommandSpec {
    fn gateway(&self, section: &dyn GatewaySection) -> Option<Box<dyn Gateway>> {
        section_as::<CommandConfig>(section)
            .map(|c| Box::new(CommandGateway::new(c)) as Box<dyn Gateway>)
    }
}

impl GatewaySection for CommandConfig {
    fn name(&self) -> Option<&str> {
        Some(&self.name)
    }
}

/// Validates `[command]`. The program itself is checked before each run
/// (and by `pam-gateway test`), not here: parsing reads no other file.
pub(crate) fn parse_section(raw: RawCommand, e: SectionError) -> Result<CommandConfig, ParseError> {
    let name = raw
        .name
        .unwrap_or_else(|| CommandSpec.display_name().to_string());
    if name.is_empty() || name.chars().count() > 32 || name.chars().any(char::is_control) {
        return Err(e(
            "name",
            "must be 1 to 32 printable characters".to_string(),
        ));
    }
    let path = PathBuf::from(&raw.path);
    if !path.is_absolute() || raw.path.contains('\0') {
        return Err(e(
            "path",
            "must be an absolute path to the program (no shell, no PATH lookup)".to_string(),
        ));
    }
    let args = raw.args.unwrap_or_default();
    if args.len() > 32 {
        return Err(e("args", "has more than 32 arguments".to_string()));
    }
    if args
        .iter()
        .any(|a| a.len() > 1024 || a.chars().any(|c| c == '\0' || c == '\n' || c == '\r'))
    {
        return Err(e(
            "args",
            "an argument is longer than 1024 bytes or contains NUL or a line break".to_string(),
        ));
    }
    let timeout = check_range(raw.timeout.unwrap_or(20), 1, 120, &|m| e("timeout", m))?;
    Ok(CommandConfig {
        name,
        path,
        args,
        recipient_arg: raw.recipient_arg.unwrap_or(false),
        timeout: Duration::from_secs(timeout),
    })
}

/// What went wrong running the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// The program or a directory above it fails a safety check.
    Unsafe(String),
    /// The program could not be executed (no such file, not executable,
    /// bad interpreter): the admin's to fix.
    Spawn(String),
    /// This machine failed before the program could run: no descriptors,
    /// memory or process slots left (limits the caller may have chosen), or
    /// the switch to root ids in the new process failed. Nothing ran.
    Local(String),
    /// The users file's recipient cannot be passed safely.
    BadRecipient(String),
    /// Still running after the timeout: its process group was killed.
    Timeout(Duration),
    /// It ran, but its exit status could not be read (the calling program
    /// ignores SIGCHLD): whether it delivered is unknown.
    Lost(String),
    /// Exit 69 (EX_UNAVAILABLE) or 75 (EX_TEMPFAIL).
    TempFail { code: i32, output: String },
    /// Exit 67 (EX_NOUSER) or 68 (EX_NOHOST).
    NoSuchRecipient { code: i32, output: String },
    /// Exit 77, 78 (EX_NOPERM, EX_CONFIG), 126 or 127.
    ConfigFail { code: i32, output: String },
    /// Any other non-zero exit status.
    Failed { code: i32, output: String },
    /// Killed by a signal (not ours).
    Killed { signal: i32, output: String },
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use CommandError::*;
        let with = |o: &str| {
            if o.is_empty() {
                String::new()
            } else {
                format!(": {o}")
            }
        };
        match self {
            Unsafe(d) => write!(f, "refusing to run it: {d}"),
            Spawn(d) | Local(d) | Lost(d) => write!(f, "{d}"),
            BadRecipient(d) => write!(f, "the recipient {d}"),
            Timeout(t) => write!(
                f,
                "still running after {} s: killed (raise [command] timeout if it needs longer)",
                t.as_secs()
            ),
            TempFail { code, output } => {
                write!(f, "exit status {code} (temporary failure){}", with(output))
            }
            NoSuchRecipient { code, output } => {
                write!(f, "exit status {code} (no such recipient){}", with(output))
            }
            ConfigFail { code, output } => {
                write!(
                    f,
                    "exit status {code} (configuration problem){}",
                    with(output)
                )
            }
            Failed { code, output } => write!(f, "exit status {code}{}", with(output)),
            Killed { signal, output } => write!(f, "killed by signal {signal}{}", with(output)),
        }
    }
}

impl std::error::Error for CommandError {}

impl From<CommandError> for DeliveryError {
    fn from(e: CommandError) -> DeliveryError {
        use CommandError::*;
        let text = e.to_string();
        match e {
            // It may have delivered: its fate is unknown.
            Timeout(_) | Lost(_) => DeliveryError::Unreachable(text),
            // The program says its service failed ("try later").
            TempFail { .. } => DeliveryError::ServiceFailed(text),
            BadRecipient(_) | NoSuchRecipient { .. } | Failed { .. } | Killed { .. } => {
                DeliveryError::Rejected {
                    reason: text,
                    retry_after: None,
                }
            }
            Unsafe(_) | Spawn(_) | ConfigFail { .. } => DeliveryError::Misconfigured(text),
            Local(_) => DeliveryError::Local(text),
        }
    }
}

/// Checks every directory above `path` (which is not resolved): owned by
/// `owner`, and not writable by group or others unless sticky (the sticky
/// bit keeps others from replacing entries they do not own).
fn check_ancestors(path: &Path, owner: Owner) -> Result<(), String> {
    for dir in path.ancestors().skip(1) {
        let meta = std::fs::symlink_metadata(dir)
            .map_err(|e| format!("{}: cannot be checked: {e}", dir.display()))?;
        if meta.uid() != owner.0 {
            return Err(format!(
                "{}: owned by uid {}, must be owned by uid {}",
                dir.display(),
                meta.uid(),
                owner.0
            ));
        }
        if meta.file_type().is_symlink() {
            // Where it points is checked on the resolved path.
            continue;
        }
        let mode = meta.mode();
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            return Err(format!(
                "{}: directory mode {:04o} is writable by group or others (chmod go-w {})",
                dir.display(),
                mode & 0o7777,
                dir.display()
            ));
        }
    }
    Ok(())
}

/// Checks the program the way secure files are checked and returns its
/// resolved path: absolute; it and every directory above it (before and
/// after resolving symlinks) owned by `owner` and not writable by group or
/// others; a regular, executable file.
pub fn check_program(path: &Path, owner: Owner) -> Result<PathBuf, String> {
    if !path.is_absolute() {
        return Err(format!("{}: path must be absolute", path.display()));
    }
    check_ancestors(path, owner)?;
    let real = std::fs::canonicalize(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{}: no such file", path.display()),
        _ => format!("{}: cannot be resolved: {e}", path.display()),
    })?;
    if real != path {
        check_ancestors(&real, owner)?;
    }
    let meta = std::fs::symlink_metadata(&real)
        .map_err(|e| format!("{}: cannot be checked: {e}", real.display()))?;
    if !meta.file_type().is_file() {
        return Err(format!("{}: not a regular file", real.display()));
    }
    if meta.uid() != owner.0 {
        return Err(format!(
            "{}: owned by uid {}, must be owned by uid {} (chown {} {})",
            real.display(),
            meta.uid(),
            owner.0,
            owner.0,
            real.display()
        ));
    }
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(format!(
            "{}: mode {:04o} is writable by group or others (chmod go-w {})",
            real.display(),
            mode & 0o7777,
            real.display()
        ));
    }
    if mode & 0o111 == 0 {
        return Err(format!(
            "{}: not executable (chmod 755 {})",
            real.display(),
            real.display()
        ));
    }
    Ok(real)
}

/// The program's stdin: an anonymous in-memory file. A file rather than a
/// pipe: no writer to block, and no SIGPIPE in the calling process if the
/// program does not read it. It is created empty; the new process writes
/// the message into it once its limits are reset (a caller's
/// RLIMIT_FSIZE of 0 would fail the write here).
fn message_file() -> std::io::Result<File> {
    memory_file(c"pam_gateway_message")
}

/// What a failed `spawn` means: a step of ours or a shortage of this
/// machine (no process slot, memory or descriptor: limits a caller
/// chooses) is local; anything else is exec refusing the program.
fn spawn_error(program: &Path, e: &std::io::Error) -> CommandError {
    let text = || format!("{}: cannot be started: {e}", program.display());
    match spawn_failure(e) {
        SpawnFailure::Setup { step, error } => CommandError::Local(format!(
            "{}: cannot be started: {step}: {error}",
            program.display()
        )),
        SpawnFailure::Shortage => CommandError::Local(text()),
        SpawnFailure::Exec => CommandError::Spawn(text()),
    }
}

/// Bounded capture of one output stream.
struct Capture {
    pipe: Option<File>,
    kept: Vec<u8>,
}

impl Capture {
    fn new(pipe: Option<impl Into<std::os::fd::OwnedFd>>) -> Capture {
        let pipe = pipe.map(|p| File::from(p.into()));
        if let Some(p) = &pipe {
            // F_GETFL and F_SETFL cannot fail on an open pipe.
            let _ = set_nonblocking(p.as_fd());
        }
        Capture {
            pipe,
            kept: Vec::new(),
        }
    }

    /// Reads what is available now; closes the pipe at EOF.
    fn drain(&mut self) {
        let Some(pipe) = self.pipe.as_mut() else {
            return;
        };
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => {
                    self.pipe = None;
                    return;
                }
                Ok(n) => {
                    let room = OUTPUT_CAP.saturating_sub(self.kept.len());
                    self.kept.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.pipe = None;
                    return;
                }
            }
        }
    }
}

/// Waits up to `wait` for output on the open pipes (or just sleeps).
fn poll_pipes(captures: &[&Capture], wait: Duration) {
    let fds: Vec<_> = captures
        .iter()
        .filter_map(|c| c.pipe.as_ref())
        .map(|p| p.as_fd())
        .collect();
    if fds.is_empty() {
        std::thread::sleep(wait);
        return;
    }
    // An interrupted or failed poll only shortens the wait.
    let _ = poll_readable(&fds, wait.min(Duration::from_secs(1)));
}

/// What the log may see of the program's output: one line, at most 200
/// characters, no control characters, no run of 6 or more digits (that
/// could be the code), the recipient masked.
pub fn output_excerpt(stderr: &[u8], stdout: &[u8], recipient: &str) -> String {
    let raw = if stderr.iter().any(|b| !b.is_ascii_whitespace()) {
        stderr
    } else {
        stdout
    };
    let text = mask_recipient(&String::from_utf8_lossy(raw), recipient);
    let mut out = String::new();
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.len() >= 6 {
            out.push_str("[digits]");
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        flush(&mut digits, &mut out);
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if !(c == ' ' && (out.is_empty() || out.ends_with(' '))) {
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    let out = out.trim_end();
    let mut short: String = out.chars().take(200).collect();
    if out.chars().count() > 200 {
        short.push('…');
    }
    short
}

/// The command as a [`Gateway`].
pub struct CommandGateway {
    cfg: CommandConfig,
    owner: Owner,
}

impl CommandGateway {
    /// A gateway whose program must be root-owned.
    pub fn new(cfg: &CommandConfig) -> CommandGateway {
        CommandGateway::with_owner(cfg, Owner::ROOT)
    }

    /// Same, with another required owner (tests run by another user).
    pub fn with_owner(cfg: &CommandConfig, owner: Owner) -> CommandGateway {
        CommandGateway {
            cfg: cfg.clone(),
            owner,
        }
    }

    /// Runs the program once: `text` on stdin, `recipient` in
    /// [`RECIPIENT_VAR`] (and last in its arguments with `recipient_arg`).
    pub fn run(&self, recipient: &str, text: &str) -> Result<(), CommandError> {
        check_address(recipient).map_err(CommandError::BadRecipient)?;
        let program = check_program(&self.cfg.path, self.owner).map_err(CommandError::Unsafe)?;
        let stdin = message_file()
            .map_err(|e| CommandError::Local(format!("cannot prepare the message: {e}")))?;
        let mut command = Command::new(&program);
        command.args(&self.cfg.args);
        if self.cfg.recipient_arg {
            command.arg(recipient);
        }
        command
            .env_clear()
            .env(RECIPIENT_VAR, recipient)
            .current_dir("/")
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        ChildSetup::new(text).install(&mut command);
        // When the new process fails before exec, std reaps it and panics
        // if it cannot (the calling program ignores SIGCHLD): nothing ran.
        let spawned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| command.spawn()));
        // Our copies of its stdin and of the message go now.
        drop(command);
        let mut child = match spawned {
            Ok(spawned) => spawned.map_err(|e| spawn_error(&program, &e))?,
            Err(_) => {
                return Err(CommandError::Local(format!(
                    "{}: cannot be started, and the failed attempt could not be reaped \
                     (does the calling program ignore SIGCHLD?)",
                    program.display()
                )));
            }
        };
        let mut out = Capture::new(child.stdout.take());
        let mut err = Capture::new(child.stderr.take());
        let deadline = Instant::now() + self.cfg.timeout;
        let outcome = loop {
            let now = Instant::now();
            let wait = deadline
                .saturating_duration_since(now)
                .min(Duration::from_millis(20));
            poll_pipes(&[&out, &err], wait);
            out.drain();
            err.drain();
            match has_exited(&child) {
                Ok(true) => break Ok(()),
                Ok(false) => {}
                Err(e) => break Err(e),
            }
            if Instant::now() >= deadline {
                break Err(std::io::Error::from(std::io::ErrorKind::TimedOut));
            }
        };
        // Whatever happened, nothing of the program's group may live on,
        // and the child is reaped before we return. (When waitid failed the
        // child may already be gone and its pid reused: no kill then.)
        if !matches!(&outcome, Err(e) if e.kind() != std::io::ErrorKind::TimedOut) {
            kill_group(&child);
        }
        let status: std::io::Result<ExitStatus> = child.wait();
        // Output still buffered in the pipes (a grandchild may hold them
        // open: read for a moment only).
        let until = Instant::now() + DRAIN_GRACE;
        while (out.pipe.is_some() || err.pipe.is_some()) && Instant::now() < until {
            poll_pipes(&[&out, &err], Duration::from_millis(10));
            out.drain();
            err.drain();
        }
        let output = || output_excerpt(&err.kept, &out.kept, recipient);
        match outcome {
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(CommandError::Timeout(self.cfg.timeout));
            }
            Err(e) => {
                return Err(CommandError::Lost(format!(
                    "ran, but its exit status cannot be read ({e}); does the calling program \
                     ignore SIGCHLD?"
                )));
            }
            Ok(()) => {}
        }
        let status = status.map_err(|e| {
            CommandError::Lost(format!("ran, but its exit status cannot be read ({e})"))
        })?;
        match (status.code(), status.signal()) {
            (Some(0), _) => Ok(()),
            (Some(code @ (69 | 75)), _) => Err(CommandError::TempFail {
                code,
                output: output(),
            }),
            (Some(code @ (67 | 68)), _) => Err(CommandError::NoSuchRecipient {
                code,
                output: output(),
            }),
            (Some(code @ (77 | 78 | 126 | 127)), _) => Err(CommandError::ConfigFail {
                code,
                output: output(),
            }),
            (Some(code), _) => Err(CommandError::Failed {
                code,
                output: output(),
            }),
            (None, Some(signal)) => Err(CommandError::Killed {
                signal,
                output: output(),
            }),
            (None, None) => Err(CommandError::Lost("ended without a status".to_string())),
        }
    }
}

impl Gateway for CommandGateway {
    fn id(&self) -> &'static str {
        CommandSpec.id()
    }

    fn display_name(&self) -> &str {
        &self.cfg.name
    }

    fn send(&self, recipient: &str, text: &str) -> Result<(), DeliveryError> {
        let path = self.cfg.path.display().to_string();
        self.run(recipient, text)
            .map_err(|e| DeliveryError::from(e).prefixed(&path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::process::SetupStep;

    #[test]
    fn spawn_failures_are_local_unless_the_program_is_at_fault() {
        let program = Path::new("/usr/local/sbin/send-sms");
        let class = |e: std::io::Error| DeliveryError::from(spawn_error(program, &e)).class();
        for errno in [libc::EAGAIN, libc::ENOMEM, libc::EMFILE, libc::ENFILE] {
            assert_eq!(
                class(std::io::Error::from_raw_os_error(errno)),
                "local-error"
            );
        }
        for step in SetupStep::ALL {
            assert_eq!(class(step.error(libc::EPERM)), "local-error", "{step:?}");
        }
        for errno in [libc::ENOENT, libc::EACCES, libc::ENOEXEC, libc::ETXTBSY] {
            assert_eq!(
                class(std::io::Error::from_raw_os_error(errno)),
                "misconfigured"
            );
        }
        let text = spawn_error(program, &SetupStep::Groups.error(libc::EPERM)).to_string();
        assert_eq!(
            text,
            "/usr/local/sbin/send-sms: cannot be started: dropping supplementary groups \
             (setgroups): Operation not permitted (os error 1)"
        );
    }

    #[test]
    fn errors_map_to_delivery_classes() {
        use DeliveryError as D;
        let out = || String::new();
        type Expect = fn(&D) -> bool;
        let cases: [(CommandError, Expect); 11] = [
            (CommandError::Unsafe("x".into()), |d| {
                matches!(d, D::Misconfigured(_))
            }),
            (CommandError::Spawn("x".into()), |d| {
                matches!(d, D::Misconfigured(_))
            }),
            (CommandError::Local("x".into()), |d| {
                matches!(d, D::Local(_))
            }),
            (CommandError::BadRecipient("x".into()), |d| {
                matches!(d, D::Rejected { .. })
            }),
            (CommandError::Timeout(Duration::from_secs(1)), |d| {
                matches!(d, D::Unreachable(_))
            }),
            (CommandError::Lost("x".into()), |d| {
                matches!(d, D::Unreachable(_))
            }),
            (
                CommandError::TempFail {
                    code: 75,
                    output: out(),
                },
                |d| matches!(d, D::ServiceFailed(_)),
            ),
            (
                CommandError::NoSuchRecipient {
                    code: 67,
                    output: out(),
                },
                |d| matches!(d, D::Rejected { .. }),
            ),
            (
                CommandError::ConfigFail {
                    code: 78,
                    output: out(),
                },
                |d| matches!(d, D::Misconfigured(_)),
            ),
            (
                CommandError::Failed {
                    code: 1,
                    output: out(),
                },
                |d| matches!(d, D::Rejected { .. }),
            ),
            (
                CommandError::Killed {
                    signal: 9,
                    output: out(),
                },
                |d| matches!(d, D::Rejected { .. }),
            ),
        ];
        for (e, ok) in cases {
            let d = DeliveryError::from(e.clone());
            assert!(ok(&d), "{e:?} -> {d:?}");
        }
        // A local failure never lets failmode = "safe" skip the code, and
        // gives the send back: nothing ran.
        let local = DeliveryError::from(CommandError::Local("x".into()));
        assert!(!local.is_unreachable() && !local.proven_remote() && local.nothing_delivered());
    }

    #[test]
    fn excerpt_hides_codes_and_controls() {
        let e = output_excerpt(
            b"error: could not send 123456 to +4915112345678\n\x1b[31mred\x07 42\n",
            b"",
            "+4915112345678",
        );
        assert_eq!(e, "error: could not send [digits] to ***678 [31mred 42");
        assert!(!e.contains("123456"));
        assert_eq!(output_excerpt(b"  \n", b"from stdout", "x"), "from stdout");
        assert_eq!(output_excerpt(&[b'a'; 500], b"", "x").chars().count(), 201);
    }
}
