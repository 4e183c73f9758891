//! A running `pam-gatewayd` for the tests that talk to the real daemon
//! (daemon/tests/daemon.rs, tests/approve_real.rs): started with
//! `--config`, its stderr appended to a log file, waited for until its
//! socket answers; killed on drop.

use std::fs;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the daemon may take to listen, or to log a line.
pub const WAIT: Duration = Duration::from_secs(20);

/// `pam-gatewayd` as built by cargo into this target directory (the
/// binary of a test's own package has `CARGO_BIN_EXE_pam-gatewayd`).
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .join("pam-gatewayd");
    assert!(
        bin.is_file(),
        "{} is missing: cargo build -p pam-gateway-daemon",
        bin.display()
    );
    bin
}

/// One `pam-gatewayd` process (none before [`DaemonProcess::spawn`] or
/// after [`DaemonProcess::kill`]).
pub struct DaemonProcess {
    pub bin: PathBuf,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
    /// A command the daemon is run under (`setpriv ...`), if any.
    pub prefix: Vec<String>,
}

impl DaemonProcess {
    /// The daemon `bin` with `config`, listening on `socket`, logging to
    /// `log`; not started yet.
    pub fn new(bin: PathBuf, config: PathBuf, socket: PathBuf, log: PathBuf) -> DaemonProcess {
        DaemonProcess {
            bin,
            config,
            socket,
            log,
            child: None,
            prefix: Vec::new(),
        }
    }

    /// [`DaemonProcess::new`], spawned.
    pub fn start(bin: PathBuf, config: PathBuf, socket: PathBuf, log: PathBuf) -> DaemonProcess {
        let mut d = DaemonProcess::new(bin, config, socket, log);
        d.spawn();
        d
    }

    /// Starts the daemon and waits until its socket takes connections
    /// (panics with the log if it exits or does not listen within
    /// [`WAIT`]).
    pub fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut cmd = match self.prefix.split_first() {
            None => Command::new(&self.bin),
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&self.bin);
                c
            }
        };
        let child = cmd
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start pam-gatewayd");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while UnixStream::connect(&self.socket).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("pam-gatewayd exited with {status}:\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "no socket after {WAIT:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log has a line containing `needle`.
    pub fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.log_text();
            if text.contains(needle) {
                return text;
            }
            assert!(Instant::now() < deadline, "log lacks {needle:?}:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
