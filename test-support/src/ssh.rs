//! OpenSSH for real: Debian's sshd on 127.0.0.1 inside a [`Sandbox`], and
//! OpenSSH's `ssh` client answering keyboard-interactive prompts through
//! `SSH_ASKPASS`.
//!
//! Why `ssh` + askpass: it is the client admins use, so the prompts, the
//! "(user@host)" prefix and the retry rules are the real ones; with
//! `SSH_ASKPASS_REQUIRE=force`, ssh hands every keyboard-interactive prompt
//! to the askpass program as argv[1] and sends what it prints — no terminal
//! to emulate, no new crate (a Rust SSH crate would pull in an async stack
//! and test its own client, not OpenSSH's). The askpass here is a small
//! shell script that writes each prompt to a file and waits for the test
//! to write the answer, so a test drives the login step by step: it sees a
//! prompt, fetches the code the fake received, answers.
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::pam_harness::write_file;
use crate::sandbox::{ALICE, ALICE_UID, BOB, BOB_UID, Sandbox, die_with_parent, repo_file};

/// The two tested ways to put pam_gateway behind sshd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recipe {
    /// pam.d/sshd + sshd_config.d/pam_gateway.conf: password, then code.
    PasswordAndCode,
    /// pam.d/sshd-publickey + sshd_config.d/pam_gateway-publickey.conf:
    /// SSH key, then code.
    KeyAndCode,
    /// pam.d/sshd-notify + sshd_config.d/pam_gateway-notify.conf: an SSH
    /// key alone; pam_gateway only sends the `[alert]` from the session.
    KeyOnlyNotify,
}

impl Recipe {
    pub fn pam_file(self) -> &'static str {
        match self {
            Recipe::PasswordAndCode => "sshd",
            Recipe::KeyAndCode => "sshd-publickey",
            Recipe::KeyOnlyNotify => "sshd-notify",
        }
    }
    pub fn sshd_conf(self) -> &'static str {
        match self {
            Recipe::PasswordAndCode => "sshd_config.d/pam_gateway.conf",
            Recipe::KeyAndCode => "sshd_config.d/pam_gateway-publickey.conf",
            Recipe::KeyOnlyNotify => "sshd_config.d/pam_gateway-notify.conf",
        }
    }
}

/// Debian 12's /etc/ssh/sshd_config, its uncommented lines. The recipe goes
/// in sshd_config.d, which the first line includes: sshd keeps the first
/// value of each keyword, so the recipe's `KbdInteractiveAuthentication yes`
/// beats Debian's `no` below, as on a real server.
const DEBIAN_SSHD_CONFIG: &str = "\
Include {dir}/sshd_config.d/*.conf
KbdInteractiveAuthentication no
UsePAM yes
X11Forwarding yes
PrintMotd no
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
";

/// The askpass program: one prompt per call, answered through files in
/// $PGW_ASKPASS_DIR (prompt.N from ssh, answer.N from the test). An empty
/// answer file cancels (exit 1). Gives up after 60 s, or as soon as ssh is
/// gone (its parent changed).
const ASKPASS_SH: &str = r#"#!/bin/sh
set -eu
d="$PGW_ASKPASS_DIR"
n=0
while [ -e "$d/prompt.$n" ]; do n=$((n + 1)); done
printf '%s' "$1" > "$d/prompt.$n.tmp"
mv "$d/prompt.$n.tmp" "$d/prompt.$n"
i=0
while [ ! -e "$d/answer.$n" ]; do
    i=$((i + 1))
    [ "$i" -le 1200 ] || exit 1
    read -r _ _ _ ppid _ < /proc/$$/stat
    [ "$ppid" = "$PPID" ] || exit 1
    sleep 0.05
done
[ -s "$d/answer.$n" ] || exit 1
cat "$d/answer.$n"
"#;

/// sshd in its own namespace; killed (with every session) on drop.
pub struct Sshd {
    child: Child,
    pub port: u16,
    stderr: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
    dir: PathBuf,
    pub recipe: Recipe,
}

fn sh(cmd: &mut Command) {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl Sshd {
    /// Installs the recipe's PAM stack as the `sshd` service, generates a
    /// host key and a client key (authorized for ALICE and BOB), and starts
    /// `sshd -D -e` on a free port of 127.0.0.1.
    pub fn start(sandbox: &Sandbox, recipe: Recipe) -> Sshd {
        sandbox.install_service("sshd", recipe.pam_file());
        let dir = sandbox.path().join("ssh");
        fs::create_dir(&dir).expect("mkdir ssh");
        fs::create_dir(dir.join("sshd_config.d")).expect("mkdir");
        for key in ["host_ed25519", "client_ed25519"] {
            sh(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", key, "-f"])
                .arg(dir.join(key)));
        }
        let client_pub = fs::read_to_string(dir.join("client_ed25519.pub")).expect("pub");
        sandbox.authorize_key(ALICE, ALICE_UID, &client_pub);
        sandbox.authorize_key(BOB, BOB_UID, &client_pub);
        write_file(
            &dir.join("sshd_config.d/pam_gateway.conf"),
            &repo_file(recipe.sshd_conf()),
            0o600,
        );
        write_file(&dir.join("askpass"), ASKPASS_SH, 0o700);

        // The port is free when picked; another test may take it before
        // sshd binds, so retry on "Address already in use".
        for _ in 0..5 {
            let port = free_port();
            let config = format!(
                "{}# Test only: loopback, a free port, this test's host key.\n\
                 ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nPidFile none\n",
                DEBIAN_SSHD_CONFIG.replace("{dir}", &dir.display().to_string()),
                dir.join("host_ed25519").display()
            );
            write_file(&dir.join("sshd_config"), &config, 0o600);
            let host_pub = fs::read_to_string(dir.join("host_ed25519.pub")).expect("pub");
            write_file(
                &dir.join("known_hosts"),
                &format!("[127.0.0.1]:{port} {host_pub}"),
                0o600,
            );
            let mut child = sandbox
                .command("/usr/sbin/sshd")
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(dir.join("sshd_config"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn sshd");
            let stderr = Arc::new(Mutex::new(String::new()));
            let mut pipe = child.stderr.take().expect("stderr");
            let sink = Arc::clone(&stderr);
            let reader = std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
            let mut sshd = Sshd {
                child,
                port,
                stderr,
                reader: Some(reader),
                dir: dir.clone(),
                recipe,
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if sshd.log().contains("Server listening on 127.0.0.1") {
                    return sshd;
                }
                if let Ok(Some(_)) = sshd.child.try_wait() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "sshd did not start in 20 s:\n{}",
                    sshd.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            let log = sshd.log();
            drop(sshd);
            assert!(
                log.contains("Address already in use"),
                "sshd exited:\n{log}"
            );
        }
        panic!("no free port for sshd after 5 tries");
    }

    /// What sshd logged (-e: to stderr), its sessions included.
    pub fn log(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Starts `ssh USER@127.0.0.1 COMMAND`. The client authenticates the
    /// way the recipe wants (key for KeyAndCode) and answers prompts
    /// through the test; `extra` are more `-o` options.
    pub fn login(&self, user: &str, extra: &[&str], command: &str) -> SshLogin {
        let n = fs::read_dir(&self.dir)
            .expect("ls")
            .filter(|e| {
                e.as_ref()
                    .map(|e| e.file_name().to_string_lossy().starts_with("client-"))
                    .unwrap_or(false)
            })
            .count();
        let exchange = self.dir.join(format!("client-{n}"));
        fs::create_dir(&exchange).expect("mkdir");
        let mut cmd = Command::new("ssh");
        cmd.args(["-F", "/dev/null", "-T", "-p"])
            .arg(self.port.to_string())
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.dir.join("known_hosts").display()
            ))
            .args([
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "UpdateHostKeys=no",
                "-o",
                "IdentityAgent=none",
                "-o",
                "ConnectTimeout=10",
            ]);
        // ssh keeps the first value of an option: these override the
        // recipe's below.
        for o in extra {
            cmd.arg("-o").arg(o);
        }
        match self.recipe {
            Recipe::PasswordAndCode => {
                cmd.args([
                    "-o",
                    "PubkeyAuthentication=no",
                    "-o",
                    "PreferredAuthentications=keyboard-interactive",
                ]);
            }
            Recipe::KeyAndCode | Recipe::KeyOnlyNotify => {
                cmd.arg("-i").arg(self.dir.join("client_ed25519")).args([
                    "-o",
                    "IdentitiesOnly=yes",
                    "-o",
                    "PreferredAuthentications=publickey,keyboard-interactive",
                ]);
            }
        }
        cmd.arg(format!("{user}@127.0.0.1"))
            .arg("--")
            .arg(command)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", exchange.as_os_str())
            .env("SSH_ASKPASS", self.dir.join("askpass"))
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("PGW_ASKPASS_DIR", &exchange)
            .stdin(Stdio::null())
            .stdout(fs::File::create(exchange.join("stdout")).expect("stdout"))
            .stderr(fs::File::create(exchange.join("stderr")).expect("stderr"));
        die_with_parent(&mut cmd);
        let child = cmd.spawn().expect("spawn ssh");
        SshLogin {
            child,
            exchange,
            next: 0,
            prompts: Vec::new(),
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // unshare --kill-child takes sshd (PID 1 of its namespace) and with
        // it every process of the namespace.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// One `ssh` client run, driven prompt by prompt.
pub struct SshLogin {
    child: Child,
    exchange: PathBuf,
    next: usize,
    /// Every prompt ssh showed so far, "(user@127.0.0.1) " prefix included.
    pub prompts: Vec<String>,
}

/// How an `ssh` run ended.
#[derive(Debug)]
pub struct SshResult {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub prompts: Vec<String>,
}

impl SshResult {
    pub fn dump(&self) -> String {
        format!(
            "status {:?}\n--- prompts\n{:#?}\n--- stdout\n{}\n--- stderr\n{}",
            self.status, self.prompts, self.stdout, self.stderr
        )
    }
}

impl SshLogin {
    /// The next prompt, or None when ssh ended without asking more.
    pub fn next_prompt(&mut self, timeout: Duration) -> Option<String> {
        let path = self.exchange.join(format!("prompt.{}", self.next));
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(text) = fs::read_to_string(&path) {
                self.prompts.push(text.clone());
                return Some(text);
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                // A prompt written just before exit still counts.
                return fs::read_to_string(&path).ok().inspect(|t| {
                    self.prompts.push(t.clone());
                });
            }
            assert!(
                Instant::now() < deadline,
                "no prompt and no exit within {timeout:?}; prompts so far {:?}",
                self.prompts
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Like [`next_prompt`](Self::next_prompt), failing the test unless a
    /// prompt containing `expected` comes.
    pub fn expect_prompt(&mut self, expected: &str, timeout: Duration) -> String {
        match self.next_prompt(timeout) {
            Some(p) if p.contains(expected) => p,
            Some(p) => panic!("expected a prompt with {expected:?}, got {p:?}"),
            None => panic!(
                "expected a prompt with {expected:?}, but ssh ended:\n{}",
                self.output_so_far()
            ),
        }
    }

    /// Answers the prompt returned last.
    pub fn answer(&mut self, text: &str) {
        let tmp = self.exchange.join(format!("answer.{}.tmp", self.next));
        write_file(&tmp, &format!("{text}\n"), 0o600);
        fs::rename(&tmp, self.exchange.join(format!("answer.{}", self.next))).expect("rename");
        self.next += 1;
    }

    fn output_so_far(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.exchange.join(name)).unwrap_or_default();
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            read("stdout"),
            read("stderr")
        )
    }

    /// Waits for ssh to exit (killing it after `timeout`).
    pub fn finish(mut self, timeout: Duration) -> SshResult {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let s = self.child.wait().expect("wait");
                panic!(
                    "ssh still running after {timeout:?} (killed: {s:?}); prompts {:?}\n{}",
                    self.prompts,
                    self.output_so_far()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let read = |name: &str| fs::read_to_string(self.exchange.join(name)).unwrap_or_default();
        SshResult {
            status,
            stdout: read("stdout"),
            stderr: read("stderr"),
            prompts: std::mem::take(&mut self.prompts),
        }
    }
}

impl Drop for SshLogin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sshd_config.d file of a recipe, as the README quotes it.
pub fn recipe_text(recipe: Recipe) -> String {
    repo_file(recipe.sshd_conf())
}
