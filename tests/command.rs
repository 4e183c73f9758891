//! The command gateway with real programs (shell scripts in a private
//! root-owned temp dir): the exact invocation (arguments, stdin, empty
//! environment, no inherited descriptors), exit statuses, timeouts with
//! the whole process group killed and the child reaped, output caps, and
//! the safety checks on the program. Needs root (`make test` runs as root).

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pam_gateway::config::Config;
use pam_gateway::gateway::command::{CommandConfig, CommandError, CommandGateway};
use pam_gateway::gateway::{DeliveryError, Gateway};

const MESSAGE: &str =
    "482913 is your login code for alice@host (sshd from 203.0.113.7).\nIt expires in 5 min.";
const BOB: &str = "+4915112345678";

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the command gateway only runs root-owned programs: run these tests as root (make test)"
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
        fs::write(&p, text).expect("write");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    fn read(&self, name: &str) -> String {
        fs::read_to_string(self.0.join(name)).unwrap_or_default()
    }
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
    .command
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
    assert_eq!(
        dir.read("args"),
        format!("sendsms\nTEXT\ntwo words\n{BOB}\n")
    );
    assert_eq!(dir.read("stdin"), MESSAGE);
    // dash sets PWD itself; nothing comes from our environment.
    assert_eq!(dir.read("env").trim(), "PWD=/");
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
    assert_eq!(DeliveryError::from(err).class(), "unreachable");
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
    fs::write(&prog, format!("#!/bin/sh\n{body}")).expect("write");
    fs::set_permissions(&prog, fs::Permissions::from_mode(0o755)).expect("chmod");
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
        .command
        .expect("command");
    assert_eq!(c.timeout, Duration::from_secs(20));
    assert_eq!(c.name, "command");
    assert!(c.args.is_empty());
    for (text, key) in [
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
