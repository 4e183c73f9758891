//! A process on a pseudo-terminal, driven like a person at a console: wait
//! for a prompt, type a line. Only libc (posix_openpt, poll): `script` would
//! need the same waiting around it, and python or expect are not on every
//! fresh machine.
#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct PtyChild {
    master: File,
    child: Child,
    /// Everything the child wrote to the terminal.
    transcript: Vec<u8>,
    /// `expect` looks after this offset.
    seen: usize,
    eof: bool,
}

impl PtyChild {
    /// Spawns `cmd` with a new pty as its stdin, stdout, stderr and
    /// controlling terminal (in a new session).
    pub fn spawn(mut cmd: Command) -> PtyChild {
        // posix_openpt + open rather than openpty: both descriptors are
        // close-on-exec from the start, so a process another test thread
        // spawns meanwhile cannot inherit them (and keep EOF away).
        // SAFETY: plain calls on a descriptor we own; ptsname_r writes at
        // most buf.len() bytes including the NUL.
        let (master, slave) = unsafe {
            let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            assert!(m >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
            let master = OwnedFd::from_raw_fd(m);
            assert_eq!(libc::grantpt(m), 0, "grantpt");
            assert_eq!(libc::unlockpt(m), 0, "unlockpt");
            let mut buf = [0 as libc::c_char; 128];
            assert_eq!(
                libc::ptsname_r(m, buf.as_mut_ptr(), buf.len()),
                0,
                "ptsname_r"
            );
            let s = libc::open(
                buf.as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            );
            assert!(
                s >= 0,
                "open pty slave: {}",
                std::io::Error::last_os_error()
            );
            (master, OwnedFd::from_raw_fd(s))
        };
        let stdio = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup pty"));
        cmd.stdin(stdio(&slave))
            .stdout(stdio(&slave))
            .stderr(stdio(&slave));
        // SAFETY: setsid and ioctl are async-signal-safe; fd 0 is the pty.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn on pty");
        drop(slave);
        PtyChild {
            master: File::from(master),
            child,
            transcript: Vec::new(),
            seen: 0,
            eof: false,
        }
    }

    /// Reads what is there, waiting at most `wait`. False at EOF.
    fn pump(&mut self, wait: Duration) -> bool {
        if self.eof {
            return false;
        }
        let mut pfd = libc::pollfd {
            fd: self.master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = wait.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n <= 0 {
            return true;
        }
        let mut buf = [0u8; 4096];
        match self.master.read(&mut buf) {
            // EIO: every slave descriptor is closed (the child is gone).
            Ok(0) | Err(_) => {
                self.eof = true;
                false
            }
            Ok(n) => {
                self.transcript.extend_from_slice(&buf[..n]);
                true
            }
        }
    }

    /// Waits until `text` shows up after what earlier calls matched;
    /// returns what came before it.
    pub fn expect(&mut self, text: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let rest = String::from_utf8_lossy(&self.transcript[self.seen..]).into_owned();
            if let Some(i) = rest.find(text) {
                // Offsets in the lossy string match the bytes for the
                // ASCII the tests look for.
                self.seen += rest[..i + text.len()].len();
                return rest[..i].to_string();
            }
            let now = Instant::now();
            assert!(
                now < deadline && !self.eof,
                "no {text:?} on the terminal ({}); transcript:\n{}",
                if self.eof { "it closed" } else { "timed out" },
                self.transcript()
            );
            self.pump((deadline - now).min(Duration::from_millis(100)));
        }
    }

    /// Waits until the terminal no longer echoes (a program reading a
    /// secret has turned echo off), like pexpect's `waitnoecho`: typing
    /// earlier could be flushed by the program's TCSAFLUSH.
    pub fn wait_for_echo_off(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            // SAFETY: termios is plain data; all-zero is a valid value.
            let mut t: libc::termios = unsafe { std::mem::zeroed() };
            // SAFETY: tcgetattr on the master (open while `self` lives)
            // writes the settings of the pty pair into `t`, a live local.
            let rc = unsafe { libc::tcgetattr(self.master.as_raw_fd(), &mut t) };
            assert_eq!(rc, 0, "tcgetattr: {}", std::io::Error::last_os_error());
            if t.c_lflag & libc::ECHO == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline && !self.eof,
                "echo never went off; transcript:\n{}",
                self.transcript()
            );
            self.pump(Duration::from_millis(10));
        }
    }

    /// Types `line` and Enter.
    pub fn send_line(&mut self, line: &str) {
        self.master
            .write_all(format!("{line}\r").as_bytes())
            .expect("write to pty");
    }

    pub fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.transcript).into_owned()
    }

    /// Waits for the process to exit, reading the terminal meanwhile.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            self.pump(Duration::from_millis(20));
            if let Some(s) = self.child.try_wait().expect("wait") {
                // Collect the last output; the namespace's processes are
                // gone with its PID 1, so EOF comes quickly.
                let until = Instant::now() + Duration::from_secs(2);
                while Instant::now() < until && self.pump(Duration::from_millis(20)) {}
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {timeout:?}; transcript:\n{}",
                self.transcript()
            );
        }
    }
}

impl Drop for PtyChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
