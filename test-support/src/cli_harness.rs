//! Runs the `pam-gateway` binary the way an admin would, with its config in
//! a private temp dir pointing at the loopback fake Telegram. Standard input
//! is a pipe, so the CLI reads answers from it (no terminal needed).
//!
//! Needs root: the CLI only trusts root-owned files.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::fake_telegram::FakeTelegram;
use crate::pam_harness::{TOKEN, TempDir, write_file};

/// The `pam-gateway` binary cargo built beside the running test (the CLI
/// crate's tests have it as a binary of their own package; the others find
/// it in the same target directory, which `cargo test` of the workspace and
/// `make test` fill).
pub fn bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("pam-gateway");
    assert!(
        bin.is_file(),
        "{} not built: run `cargo build` of the workspace first (make test does)",
        bin.display()
    );
    bin
}
/// Longest any single CLI run may take in these tests.
pub const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Fails the test unless it runs as root ([`crate::root`]).
pub fn require_root() {
    crate::root::require("the CLI tests (the CLI only trusts root-owned files)");
}

/// The outcome of one run.
#[derive(Debug)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn dump(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Asserts the exit status and returns self for more checks.
    pub fn expect_code(&self, code: i32) -> &Out {
        assert_eq!(self.code, Some(code), "{}", self.dump());
        self
    }

    pub fn expect_in_stdout(&self, needle: &str) -> &Out {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n{}",
            self.dump()
        );
        self
    }

    pub fn expect_in_stderr(&self, needle: &str) -> &Out {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n{}",
            self.dump()
        );
        self
    }
}

/// A config dir for one test.
pub struct Setup {
    pub dir: TempDir,
    pub etc: PathBuf,
    pub config: PathBuf,
    pub users: PathBuf,
    /// Extra directories put first on the CLI's PATH (a fake sshd).
    pub path_prefix: Option<PathBuf>,
}

impl Setup {
    /// An empty root-owned 0700 dir; `config` and `users` are not written.
    pub fn empty() -> Setup {
        require_root();
        let dir = TempDir::new("cli");
        let etc = dir.path().join("etc");
        fs::create_dir(&etc).expect("mkdir");
        fs::set_permissions(&etc, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod");
        let config = etc.join("gateway.toml");
        let users = etc.join("users.toml");
        Setup {
            dir,
            etc,
            config,
            users,
            path_prefix: None,
        }
    }

    /// A config for the fake (`timeout = 2`), with `extra` appended; no
    /// users file yet.
    pub fn with_fake(fake: &FakeTelegram, extra: &str) -> Setup {
        Self::with_api(&fake.url(), extra)
    }

    pub fn with_api(api_url: &str, extra: &str) -> Setup {
        let s = Setup::empty();
        write_file(
            &s.config,
            &format!(
                "# test config\nusers_file = \"{}\"\n\n[telegram]\nbot_token = \"{TOKEN}\"\n\
                 api_url = \"{api_url}\"\ntimeout = 2\nconnect_timeout = 1\n{extra}",
                s.users.display()
            ),
            0o600,
        );
        s
    }

    pub fn write_users(&self, text: &str) {
        write_file(&self.users, text, 0o600);
    }

    pub fn users_text(&self) -> Option<String> {
        fs::read_to_string(&self.users).ok()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.arg("--config").arg(&self.config).args(args);
        if let Some(prefix) = &self.path_prefix {
            let path = std::env::var("PATH").unwrap_or_default();
            cmd.env("PATH", format!("{}:{path}", prefix.display()));
        }
        cmd
    }

    /// Runs to the end with `stdin` as standard input.
    pub fn run(&self, args: &[&str], stdin: &str) -> Out {
        let mut r = self.spawn(args);
        r.type_text(stdin);
        r.close_stdin();
        r.finish()
    }

    /// Starts the CLI with piped stdin; stdout and stderr are collected.
    pub fn spawn(&self, args: &[&str]) -> Running {
        Running::start(self.command(args))
    }
}

fn collect(mut from: impl Read + Send + 'static) -> (Arc<Mutex<String>>, JoinHandle<()>) {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    let handle = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => sink
                    .lock()
                    .expect("lock")
                    .push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    });
    (text, handle)
}

/// A CLI process in flight.
pub struct Running {
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Running {
    pub fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pam-gateway");
        let stdin = child.stdin.take();
        let (stdout, h1) = collect(child.stdout.take().expect("stdout"));
        let (stderr, h2) = collect(child.stderr.take().expect("stderr"));
        Running {
            child,
            stdin,
            stdout,
            stderr,
            readers: vec![h1, h2],
        }
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().expect("lock").clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    /// Waits until stdout contains `needle`; returns all stdout so far.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.stdout();
            if out.contains(needle) {
                return out;
            }
            let exited = self.child.try_wait().expect("wait").is_some();
            if exited || Instant::now() > deadline {
                // Let the readers drain what is left before reporting.
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "no {needle:?} on stdout (exited: {exited})\n--- stdout\n{}\n--- stderr\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the deep link and returns its nonce.
    pub fn nonce(&mut self, timeout: Duration) -> String {
        let out = self.wait_for("?start=", timeout);
        let start = out.find("?start=").expect("link") + "?start=".len();
        out[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect()
    }

    pub fn type_text(&mut self, text: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = stdin.write_all(text.as_bytes());
            let _ = stdin.flush();
        }
    }

    pub fn type_line(&mut self, line: &str) {
        self.type_text(&format!("{line}\n"));
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the exit (killing it after [`RUN_LIMIT`]).
    pub fn finish(mut self) -> Out {
        self.close_stdin();
        let deadline = Instant::now() + RUN_LIMIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        for h in self.readers.drain(..) {
            let _ = h.join();
        }
        Out {
            code: status.and_then(|s| s.code()),
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

/// Temp files a writer left beside `path`.
pub fn temp_files(path: &Path) -> Vec<String> {
    let name = path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let prefix = format!(".{name}.tmp-");
    fs::read_dir(path.parent().expect("dir"))
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}
