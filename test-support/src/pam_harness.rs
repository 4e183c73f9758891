//! Real libpam in a private mount namespace: `pamtester` loads the built
//! `libpam_gateway.so` through a PAM service file in a temp dir that bwrap
//! binds over `/etc/pam.d`; a datagram socket bound over `/dev/log` collects
//! what the module sends to syslog. The host's `/etc` is never touched.
//!
//! Needs root (the module insists on root-owned files), `pamtester` and
//! `bwrap` (`make test` installs them).
//!
//! `make test-arm` points the same tests at another build: `PGW_TEST_MODULE`
//! names the module to load, `PGW_TEST_PAMTESTER` the pamtester command
//! (words split on spaces, e.g. `qemu-aarch64-static /path/to/pamtester`).
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::fake_telegram::FakeTelegram;

pub const TOKEN: &str = "123456789:AAEhBP0av28JzWyPaVHcA1xZl5n7gK9wQ3c";
pub const SECRET_HALF: &str = "AAEhBP0av28JzWyPaVHcA1xZl5n7gK9wQ3c";
pub const CHAT: i64 = 123_456_977;

/// Fails the test with a clear message when it cannot run here: not root
/// ([`crate::root`]), or a tool missing.
pub fn require_root_tools() {
    crate::root::require(
        "real-libpam tests (the module only trusts root-owned files; pamtester \
         runs in a private mount namespace)",
    );
    let pamtester = pamtester_command();
    for tool in [pamtester[0].as_str(), "bwrap"] {
        let found = Path::new(tool).is_absolute() && Path::new(tool).is_file()
            || std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
                .unwrap_or(false);
        assert!(
            found,
            "{tool} is missing: apt-get install pamtester bubblewrap"
        );
    }
}

/// The pamtester command line: `pamtester`, or `PGW_TEST_PAMTESTER`.
pub fn pamtester_command() -> Vec<String> {
    match std::env::var("PGW_TEST_PAMTESTER") {
        Ok(cmd) if !cmd.trim().is_empty() => cmd.split_whitespace().map(String::from).collect(),
        _ => vec!["pamtester".to_string()],
    }
}

/// The cdylib cargo built next to this test binary, or `PGW_TEST_MODULE`.
pub fn module_path() -> PathBuf {
    if let Some(so) = std::env::var_os("PGW_TEST_MODULE") {
        let so = PathBuf::from(so);
        assert!(
            so.is_file(),
            "PGW_TEST_MODULE={} is not a file",
            so.display()
        );
        return so;
    }
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let so = dir.join("libpam_gateway.so");
    assert!(
        so.is_file(),
        "{} not built: run `cargo build --lib` first (make test does)",
        so.display()
    );
    so
}

/// The direct library the module at [`module_path`] loads to send
/// (`pam_gateway_core::direct`): beside the module's real file, with
/// `_direct` before `.so`.
pub fn direct_library_path() -> PathBuf {
    let real = fs::canonicalize(module_path()).expect("module path");
    let name = real
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".so"))
        .expect("module file name ends in .so")
        .to_string();
    real.with_file_name(format!("{name}_direct.so"))
}

/// A private root-owned directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let mut nonce = [0u8; 6];
        getrandom::fill(&mut nonce).expect("random");
        let name: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        let path = std::env::temp_dir().join(format!("pgw-{tag}-{name}"));
        fs::create_dir(&path).expect("mkdir");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).expect("chmod");
        TempDir(path)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub fn write_file(path: &Path, text: &str, mode: u32) {
    fs::write(path, text).expect("write");
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The accounts the tests log in as, besides the host's own (`daemon`,
/// `root`). The module resolves every login's user through NSS and denies
/// names it does not know, so each [`PamEnv`] lays a passwd and group file
/// holding these over the host's, in the namespace only.
pub const TEST_ACCOUNTS: &[&str] = &["alice", "bob", "mallory", "carol"];
/// `user0` .. `user{N-1}` are test accounts too (the soak's users).
pub const NUMBERED_ACCOUNTS: usize = 20;
/// The first uid of the test accounts.
const FIRST_TEST_UID: u32 = 64100;

/// The host's passwd and group with [`TEST_ACCOUNTS`] and the numbered
/// accounts added, written into `dir`; returns (passwd, group).
pub fn write_account_files(dir: &Path) -> (PathBuf, PathBuf) {
    let mut passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let mut group = fs::read_to_string("/etc/group").unwrap_or_default();
    for s in [&mut passwd, &mut group] {
        if !s.is_empty() && !s.ends_with('\n') {
            s.push('\n');
        }
    }
    let numbered = (0..NUMBERED_ACCOUNTS).map(|i| format!("user{i}"));
    let names = TEST_ACCOUNTS.iter().map(|n| n.to_string()).chain(numbered);
    for (i, name) in names.enumerate() {
        let uid = FIRST_TEST_UID + i as u32;
        passwd.push_str(&format!(
            "{name}:x:{uid}:{uid}:pgw test:/nonexistent:/usr/sbin/nologin\n"
        ));
        group.push_str(&format!("{name}:x:{uid}:\n"));
    }
    let (p, g) = (dir.join("passwd"), dir.join("group"));
    write_file(&p, &passwd, 0o644);
    write_file(&g, &group, 0o644);
    (p, g)
}

/// A stack (for [`PamEnv::set_stack`]) where the module's PAM_IGNORE falls
/// through to pam_permit: success then means "ignored", failure means the
/// module denied (where the module could let someone through, a PAM_IGNORE
/// here is a login).
pub const IGNORE_THEN_PERMIT: &str = "auth [success=done ignore=ignore default=die] {module} \
                                      config={config}\nauth required pam_permit.so\n";

/// One test's world: config dir, PAM service dir, syslog socket.
pub struct PamEnv {
    pub dir: TempDir,
    pub etc: PathBuf,
    pub config: PathBuf,
    pub users: PathBuf,
    /// `state_dir` in the config (created by the module on first use).
    pub state: PathBuf,
    pub pam_d: PathBuf,
    pub log_sock: UnixDatagram,
    pub log_path: PathBuf,
    /// Bind the log socket over /dev/log (false: no syslog at all).
    pub syslog: std::sync::atomic::AtomicBool,
    /// passwd and group with the test accounts ([`write_account_files`]).
    pub passwd: PathBuf,
    pub group: PathBuf,
}

/// How the simulated user answers the prompts.
pub enum Answers {
    /// Wait for the fake to deliver a code, then type it.
    DeliveredCode(Duration),
    /// Type these lines right away.
    Lines(Vec<String>),
    /// Type these lines, then the delivered code.
    LinesThenCode(Vec<String>, Duration),
    /// Close stdin without typing (EOF at the prompt).
    Eof,
    /// Type the code this returns (it waits for whichever fake got it).
    CodeFrom(Box<dyn Fn() -> Option<String>>),
    /// Type what this returns (called when the module runs, e.g. a TOTP code).
    Computed(Box<dyn FnOnce() -> String + Send>),
}

pub struct PamRun {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
    pub log: String,
}

impl PamRun {
    /// pamtester prints `pam_strerror` of the failure; this checks it.
    /// The run succeeded and the module logged `needle`.
    pub fn assert_succeeded_logging(&self, needle: &str) {
        assert!(self.success, "{}", self.dump());
        assert!(self.log.contains(needle), "{}", self.dump());
    }

    pub fn assert_failed_with(&self, pam_message: &str) {
        assert!(
            !self.success,
            "expected failure, got success\n{}",
            self.dump()
        );
        assert!(
            self.stderr.contains(pam_message),
            "expected {pam_message:?}\n{}",
            self.dump()
        );
    }

    pub fn dump(&self) -> String {
        format!(
            "--- stdout\n{}\n--- stderr\n{}\n--- syslog\n{}",
            self.stdout, self.stderr, self.log
        )
    }
}

// pam_strerror texts (Linux-PAM) as pamtester prints them.
pub const AUTH_ERR: &str = "Authentication failure";
pub const MAXTRIES: &str = "Have exhausted maximum number of retries for service";
pub const AUTHINFO_UNAVAIL: &str = "Authentication service cannot retrieve authentication info";
pub const SERVICE_ERR: &str = "Error in service module";
pub const CONV_ERR: &str = "Conversation error";

impl PamEnv {
    /// A config pointing at `api_url`, with `extra` appended, and a users
    /// file enrolling alice at the fake's chat.
    pub fn new(api_url: &str, extra: &str) -> PamEnv {
        PamEnv::with_files(
            &format!(
                "[telegram]\nbot_token = \"{TOKEN}\"\napi_url = \"{api_url}\"\n\
                 timeout = 2\nconnect_timeout = 1\n{extra}"
            ),
            &format!("# enrolled users\n[users.alice]\ntelegram = \"{CHAT}\"\n"),
        )
    }

    /// A config of `config_body` (after a `users_file` line pointing at the
    /// users file) and a users file of `users_body`.
    pub fn with_files(config_body: &str, users_body: &str) -> PamEnv {
        require_root_tools();
        let dir = TempDir::new("pam");
        let etc = dir.path().join("etc");
        fs::create_dir(&etc).expect("mkdir");
        fs::set_permissions(&etc, fs::Permissions::from_mode(0o700)).expect("chmod");
        let pam_d = dir.path().join("pam.d");
        fs::create_dir(&pam_d).expect("mkdir");
        let config = etc.join("gateway.toml");
        let users = etc.join("users.toml");
        let state = dir.path().join("state");
        write_file(
            &config,
            &format!(
                "users_file = \"{}\"\nstate_dir = \"{}\"\n{config_body}",
                users.display(),
                state.display()
            ),
            0o600,
        );
        write_file(&users, users_body, 0o644);
        let log_path = dir.path().join("log.sock");
        let log_sock = UnixDatagram::bind(&log_path).expect("bind log socket");
        log_sock
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let (passwd, group) = write_account_files(dir.path());
        let env = PamEnv {
            passwd,
            group,
            dir,
            etc,
            config,
            users,
            state,
            pam_d,
            log_sock,
            log_path,
            syslog: std::sync::atomic::AtomicBool::new(true),
        };
        // libpam falls back to `other` for anything missing: deny.
        write_file(
            &env.pam_d.join("other"),
            "auth required pam_deny.so\n",
            0o644,
        );
        env.set_stack("auth required {module} config={config} debug\n");
        env
    }

    pub fn with_fake(fake: &FakeTelegram, extra: &str) -> PamEnv {
        PamEnv::new(&fake.url(), extra)
    }

    /// Writes the `pgw` service; `{module}` and `{config}` are filled in.
    pub fn set_stack(&self, stack: &str) {
        let text = stack
            .replace("{module}", &module_path().display().to_string())
            .replace("{config}", &self.config.display().to_string());
        write_file(&self.pam_d.join("pgw"), &text, 0o644);
    }

    /// `bwrap` with the host's root, a fresh /dev, this env's PAM services
    /// over /etc/pam.d and its account files over /etc/passwd and
    /// /etc/group; the program and its arguments follow.
    pub fn bwrap(&self) -> Command {
        let mut cmd = Command::new("bwrap");
        cmd.args(["--bind", "/", "/", "--dev", "/dev", "--bind"])
            .arg(&self.pam_d)
            .arg("/etc/pam.d")
            .arg("--ro-bind")
            .arg(&self.passwd)
            .arg("/etc/passwd")
            .arg("--ro-bind")
            .arg(&self.group)
            .arg("/etc/group");
        cmd
    }

    /// Drains what the module logged so far.
    pub fn read_log(&self) -> String {
        let mut out = String::new();
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = self.log_sock.recv(&mut buf) {
            out.push_str(&String::from_utf8_lossy(&buf[..n]));
            out.push('\n');
        }
        out
    }

    /// Drains the log socket in a thread until the drain is dropped, for
    /// tests that run many logins at once: the socket queues 10 datagrams
    /// (net.unix.max_dgram_qlen), and a module whose log line does not fit
    /// waits until it does. [`LogDrain::text`] is everything read so far;
    /// `read_log` sees nothing while a drain runs.
    pub fn drain_log(&self) -> LogDrain {
        let sock = self.log_sock.try_clone().expect("clone log socket");
        let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (t, st) = (text.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 8192];
            loop {
                match sock.recv(&mut buf) {
                    Ok(n) => {
                        let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
                        t.push_str(&String::from_utf8_lossy(&buf[..n]));
                        t.push('\n');
                    }
                    Err(_) if st.load(std::sync::atomic::Ordering::SeqCst) => return,
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        LogDrain {
            text,
            stop,
            thread: Some(thread),
        }
    }

    /// [`PamEnv::authenticate`] of `user` typing nothing, with the stack
    /// [`IGNORE_THEN_PERMIT`]: a PAM_IGNORE from the module is a login.
    pub fn authenticate_where_ignore_permits(
        &self,
        user: &str,
        fake: Option<&FakeTelegram>,
    ) -> PamRun {
        self.set_stack(IGNORE_THEN_PERMIT);
        self.authenticate(user, Answers::Eof, fake)
    }

    /// Runs `pamtester pgw USER authenticate` in a private mount namespace.
    pub fn authenticate(
        &self,
        user: &str,
        answers: Answers,
        fake: Option<&FakeTelegram>,
    ) -> PamRun {
        self.authenticate_with(user, &[], answers, fake)
    }

    /// [`PamEnv::authenticate`] with PAM items set through pamtester's
    /// `-I` (e.g. `("rhost", "203.0.113.7")`).
    pub fn authenticate_with(
        &self,
        user: &str,
        items: &[(&str, &str)],
        answers: Answers,
        fake: Option<&FakeTelegram>,
    ) -> PamRun {
        let mut args: Vec<std::ffi::OsString> = items
            .iter()
            .map(|(k, v)| format!("-I{k}={v}").into())
            .collect();
        args.extend(["pgw", user, "authenticate"].map(Into::into));
        self.pamtester(&args, answers, fake)
    }

    /// `pamtester -v ARGS` in this env's namespace (the log socket bound
    /// over /dev/log unless `syslog` is off), the user played as `answers`
    /// say; the run with what the module logged.
    pub fn pamtester<S: AsRef<std::ffi::OsStr>>(
        &self,
        args: &[S],
        answers: Answers,
        fake: Option<&FakeTelegram>,
    ) -> PamRun {
        let mut cmd = self.bwrap();
        if self.syslog.load(std::sync::atomic::Ordering::SeqCst) {
            cmd.arg("--bind").arg(&self.log_path).arg("/dev/log");
        }
        cmd.arg("--die-with-parent")
            .args(pamtester_command())
            .arg("-v")
            .args(args);
        let mut run = converse(&mut cmd, answers, fake);
        // Datagrams are queued before pamtester exits; give the socket a beat.
        run.log = self.read_log();
        run
    }
}

/// Runs a PAM client (pamtester, directly or inside a namespace) and plays
/// the user on its stdin as `answers` says; `log` is left empty.
pub fn converse(cmd: &mut Command, answers: Answers, fake: Option<&FakeTelegram>) -> PamRun {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the PAM client");
    let mut stdin = child.stdin.take().expect("stdin");
    let type_code = |stdin: &mut std::process::ChildStdin, wait: Duration| {
        let fake = fake.expect("a fake to read the code from");
        let msg = fake
            .wait_for_message(wait)
            .expect("the fake received no code in time");
        let code = crate::fake_telegram::find_code(&msg.text).expect("code in message");
        let _ = writeln!(stdin, "{code}");
    };
    match answers {
        Answers::DeliveredCode(wait) => type_code(&mut stdin, wait),
        Answers::Lines(lines) => {
            for l in lines {
                let _ = writeln!(stdin, "{l}");
            }
        }
        Answers::LinesThenCode(lines, wait) => {
            for l in lines {
                let _ = writeln!(stdin, "{l}");
            }
            type_code(&mut stdin, wait)
        }
        Answers::Eof => {}
        Answers::CodeFrom(wait) => {
            let code = wait().expect("no gateway delivered a code in time");
            let _ = writeln!(stdin, "{code}");
        }
        Answers::Computed(f) => {
            let _ = writeln!(stdin, "{}", f());
        }
    }
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().expect("wait").is_some() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    PamRun {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        log: String::new(),
    }
}

/// The log socket read by a thread ([`PamEnv::drain_log`]).
pub struct LogDrain {
    text: std::sync::Arc<std::sync::Mutex<String>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LogDrain {
    /// Every line read so far.
    pub fn text(&self) -> String {
        self.text.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for LogDrain {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
