//! A private view of the machine for real clients (sshd, sudo, login): each
//! command runs in its own mount and PID namespace (`unshare`) where
//!
//! - `/etc` is the host's with this test's files laid over it (overlayfs,
//!   upper layer on a tmpfs): `pam_gateway/` (config, users), `passwd`,
//!   `group`, `shadow` with the test users, `sudoers`;
//! - `/etc/pam.d` is a directory holding the host's `common-*` files, a
//!   deny-all `other` and the repo's `pam.d/` stacks copied verbatim;
//! - the PAM module directory is the host's plus `pam_gateway.so` (the
//!   cdylib cargo built), again through overlayfs;
//! - `/var` is overlaid (wtmp, lastlog, sudo's state stay in the namespace),
//!   `/run` and `/home` are fresh tmpfs, `/dev` is a small tmpfs with the
//!   host's basic nodes and pty, and `/dev/log` is this test's socket.
//!
//! Nothing on the host changes: overlayfs instead of bind mounts because
//! `/etc/pam_gateway` does not exist on the host and must not be created
//! there. The namespace's PID 1 is a shell that runs the command; killing
//! `unshare` kills that shell (`--kill-child`) and with it the whole
//! namespace, and `unshare` itself gets SIGKILL when the test thread that
//! started it ends (PR_SET_PDEATHSIG).
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::pam_harness::{TOKEN, TempDir, module_path, write_file};

/// An enrolled test user (users.toml sends her codes to the fake's chat).
pub const ALICE: &str = "pgwalice";
pub const ALICE_UID: u32 = 64011;
/// A test user with no entry in users.toml.
pub const BOB: &str = "pgwbob";
pub const BOB_UID: u32 = 64012;
/// Both users' password.
pub const PASSWORD: &str = "horse-battery-7";
/// `openssl passwd -6 -salt pgwtestsalt0001 horse-battery-7`
const PASSWORD_HASH: &str = "$6$pgwtestsalt0001$eKxJNaT5FyQ/fqt9UjQ4WpyWI3bQDPg/\
pnSbgiNqw0VzvUPi4RX3UAmd1TpIhJD.IkMdXMxK0bPOeULLnB4or/";

/// The su service of [`Sandbox::install_su_to_root`]: root's password
/// (pam_unix), then the code. pam_rootok first, as Debian's su has it.
/// `nodelay`: pam_unix otherwise asks libpam for a ~2 s delay after any
/// failed login, which would hide the module's own timing.
pub const SU_STACK: &str = "# written by test-support/src/sandbox.rs\n\
auth       sufficient pam_rootok.so\n\
auth       requisite  pam_unix.so nodelay\n\
auth       required   pam_gateway.so\n\
account    required   pam_permit.so\n\
session    required   pam_permit.so\n\
password   required   pam_deny.so\n";

/// Debian packages and the tools from them these tests run.
const TOOLS: &[(&str, &str)] = &[
    ("unshare", "util-linux"),
    ("setpriv", "util-linux"),
    ("sshd", "openssh-server"),
    ("ssh", "openssh-client"),
    ("ssh-keygen", "openssh-client"),
    ("sudo", "sudo"),
    ("su", "util-linux"),
    ("login", "login"),
];

/// The shell script that builds the namespace's view, then execs the command.
/// Arguments: SANDBOX MODULE_DIR MODULE_SO COMMAND [ARG]...
const ENTER_SH: &str = r#"#!/bin/sh
set -eu
T="$1"; MODDIR="$2"; MODULE="$3"; shift 3

# Upper layers live on a tmpfs: overlayfs refuses an upper dir on overlayfs
# (a container's /tmp), and nothing written here outlives the namespace.
mount -t tmpfs -o mode=0700 pgw-layers "$T/layers"
for d in etc var sec; do mkdir -m 0755 "$T/layers/$d" "$T/layers/$d.work"; done
cp -a "$T/stage/etc/." "$T/layers/etc/"
ln -s "$MODULE" "$T/layers/sec/pam_gateway.so"
overlay() { # LAYER DIR
    mount -t overlay "pgw-$1" -o "lowerdir=$2,upperdir=$T/layers/$1,workdir=$T/layers/$1.work" "$2" || {
        echo "pgw sandbox: cannot overlay $2; the tests need overlayfs (modprobe overlay)" >&2
        exit 1
    }
}
overlay etc /etc
overlay var /var
overlay sec "$MODDIR"
mount --bind "$T/pam.d" /etc/pam.d

mount -t tmpfs -o mode=0755 pgw-run /run
mkdir -m 0755 /run/sshd
mount -t tmpfs -o mode=0755 pgw-home /home
cp -a "$T/stage/home/." /home/

mount -t tmpfs -o mode=0755,nosuid pgw-dev "$T/dev"
for n in null zero full random urandom tty ptmx; do
    touch "$T/dev/$n"
    mount --bind "/dev/$n" "$T/dev/$n"
done
mkdir "$T/dev/pts" "$T/dev/shm"
mount --rbind /dev/pts "$T/dev/pts"
mount -t tmpfs -o mode=1777 pgw-shm "$T/dev/shm"
ln -s /proc/self/fd "$T/dev/fd"
ln -s /proc/self/fd/0 "$T/dev/stdin"
ln -s /proc/self/fd/1 "$T/dev/stdout"
ln -s /proc/self/fd/2 "$T/dev/stderr"
touch "$T/dev/log"
mount --bind "$T/log.sock" "$T/dev/log"
mount --move "$T/dev" /dev

# Not exec: this shell stays PID 1 of the namespace. unshare's
# PR_SET_PDEATHSIG reaches it, and dying it takes every process of the
# namespace along. The command itself cannot carry the signal: it is
# cleared when a process changes its effective uid, as pam_keyinit does.
"$@"
exit $?
"#;

/// Fails the test with a clear message when it cannot run here: not root
/// ([`crate::root`]), or a tool missing.
pub fn require_client_tools() {
    crate::root::require("real-client tests (sshd, login and the mount namespaces)");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    for (tool, package) in TOOLS {
        assert!(
            dirs.iter().any(|d| d.join(tool).is_file()),
            "{tool} is missing: apt-get install {package} (make test installs it)"
        );
    }
}

/// This system's PAM module directory, as `make install` finds it.
pub fn module_dir() -> &'static str {
    static DIR: OnceLock<String> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = crate::repo_root().join("scripts/pam-module-dir.sh");
        let out = Command::new(&script)
            .output()
            .expect("run pam-module-dir.sh");
        assert!(
            out.status.success(),
            "{}: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    })
}

/// A file of the repository, e.g. `pam.d/sshd`.
pub fn repo_file(rel: &str) -> String {
    let path = crate::repo_root().join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Kills `cmd`'s process when the thread that spawns it ends: a test that
/// panics leaves no namespace behind.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// `su -c 'id -u > MARK' root`, as the caller types it: MARK (in the
/// sandbox's root-only directory) holds 0 only if su ran the command.
pub fn su_argv(mark: &Path) -> Vec<String> {
    ["su", "-c", mark_command(mark).as_str(), "root"]
        .map(String::from)
        .to_vec()
}

/// `sudo -S -- /bin/sh -c 'id -u > MARK'`: MARK holds 0 only if sudo ran
/// the command.
pub fn sudo_argv(mark: &Path) -> Vec<String> {
    [
        "sudo",
        "-S",
        "--",
        "/bin/sh",
        "-c",
        mark_command(mark).as_str(),
    ]
    .map(String::from)
    .to_vec()
}

fn mark_command(mark: &Path) -> String {
    format!("id -u > {}", mark.display())
}

/// One test's private world; see the module docs.
pub struct Sandbox {
    pub dir: TempDir,
    log_sock: UnixDatagram,
    log: Mutex<String>,
}

impl Sandbox {
    /// A sandbox whose gateway.toml points at `api_url`, with `extra`
    /// (TOML sections) appended; ALICE is enrolled, BOB is not.
    pub fn new(api_url: &str, extra: &str) -> Sandbox {
        require_client_tools();
        let dir = TempDir::new("clients");
        let root = dir.path().to_path_buf();
        for d in [
            "stage",
            "stage/etc",
            "stage/home",
            "pam.d",
            "layers",
            "dev",
            "out",
        ] {
            fs::create_dir(root.join(d)).expect("mkdir");
        }
        fs::set_permissions(root.join("stage/etc"), fs::Permissions::from_mode(0o755))
            .expect("chmod");
        fs::set_permissions(root.join("stage/home"), fs::Permissions::from_mode(0o755))
            .expect("chmod");
        fs::set_permissions(root.join("pam.d"), fs::Permissions::from_mode(0o755)).expect("chmod");

        let log_path = root.join("log.sock");
        let log_sock = UnixDatagram::bind(&log_path).expect("bind log socket");
        log_sock
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let sandbox = Sandbox {
            dir,
            log_sock,
            log: Mutex::new(String::new()),
        };

        // /etc/pam_gateway as `make install` and the README set it up.
        let gw = sandbox.stage_etc("pam_gateway");
        fs::create_dir(&gw).expect("mkdir");
        fs::set_permissions(&gw, fs::Permissions::from_mode(0o700)).expect("chmod");
        write_file(
            &gw.join("gateway.toml"),
            &format!(
                "[telegram]\nbot_token = \"{TOKEN}\"\napi_url = \"{api_url}\"\n\
                 timeout = 2\nconnect_timeout = 1\n{extra}"
            ),
            0o600,
        );
        write_file(
            &gw.join("users.toml"),
            &format!(
                "[users.{ALICE}]\ntelegram = \"{}\"\n",
                crate::pam_harness::CHAT
            ),
            0o644,
        );

        sandbox.stage_accounts();
        sandbox.stage_home(ALICE, ALICE_UID);
        sandbox.stage_home(BOB, BOB_UID);
        write_file(
            &sandbox.stage_etc("sudoers"),
            &format!(
                "Defaults env_reset\n\
                 Defaults secure_path=\"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"\n\
                 Defaults use_pty\n\
                 Defaults lecture=never\n\
                 root ALL=(ALL:ALL) ALL\n\
                 {ALICE} ALL=(ALL:ALL) ALL\n"
            ),
            0o440,
        );

        // The host's common-* stacks, as a real server has them.
        for f in [
            "common-auth",
            "common-account",
            "common-session",
            "common-session-noninteractive",
            "common-password",
        ] {
            let text = fs::read_to_string(Path::new("/etc/pam.d").join(f))
                .unwrap_or_else(|e| panic!("/etc/pam.d/{f}: {e}"));
            write_file(&sandbox.dir.path().join("pam.d").join(f), &text, 0o644);
        }
        write_file(
            &sandbox.dir.path().join("pam.d/other"),
            "auth required pam_deny.so\naccount required pam_deny.so\n\
             password required pam_deny.so\nsession required pam_deny.so\n",
            0o644,
        );
        write_file(&root.join("enter.sh"), ENTER_SH, 0o700);
        sandbox
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where a file for the namespace's /etc is staged.
    pub fn stage_etc(&self, rel: &str) -> PathBuf {
        self.dir.path().join("stage/etc").join(rel)
    }

    /// The test user's home as staged (becomes /home/USER).
    pub fn stage_home_of(&self, user: &str) -> PathBuf {
        self.dir.path().join("stage/home").join(user)
    }

    /// Copies the repository's `pam.d/<repo_name>` verbatim as the PAM
    /// service `service`.
    pub fn install_service(&self, service: &str, repo_name: &str) {
        let text = repo_file(&format!("pam.d/{repo_name}"));
        write_file(&self.dir.path().join("pam.d").join(service), &text, 0o644);
    }

    /// `su` to root as the tests run it (tests/hostile_real.rs,
    /// tests/approve_real.rs): the service is [`SU_STACK`], root's password
    /// is the test users' ([`PASSWORD`]), root is enrolled at the fake's
    /// chat next to ALICE (su's PAM user is the target, root), and su does
    /// not sleep after a failure (`FAIL_DELAY 0`; util-linux su otherwise
    /// waits 1 s, and the time bounds of hostile_real.rs are the module's).
    pub fn install_su_to_root(&self) {
        write_file(&self.dir.path().join("pam.d/su"), SU_STACK, 0o644);
        let users = self.stage_etc("pam_gateway/users.toml");
        let text = fs::read_to_string(&users).expect("staged users.toml");
        write_file(
            &users,
            &format!(
                "{text}\n[users.root]\ntelegram = \"{}\"\n",
                crate::pam_harness::CHAT
            ),
            0o644,
        );
        self.set_root_password();
        let defs = fs::read_to_string("/etc/login.defs").unwrap_or_default();
        write_file(
            &self.stage_etc("login.defs"),
            &format!("{defs}\nFAIL_DELAY 0\n"),
            0o644,
        );
    }

    /// Gives root the test users' password in the staged shadow (owner and
    /// mode kept).
    fn set_root_password(&self) {
        let path = self.stage_etc("shadow");
        let text = fs::read_to_string(&path).expect("staged shadow");
        let out: String = text
            .lines()
            .map(|l| match l.strip_prefix("root:") {
                Some(rest) => {
                    let mut f: Vec<&str> = rest.split(':').collect();
                    f[0] = PASSWORD_HASH;
                    format!("root:{}\n", f.join(":"))
                }
                None => format!("{l}\n"),
            })
            .collect();
        assert!(
            out.contains(&format!("root:{PASSWORD_HASH}:")),
            "no root in shadow"
        );
        let mode = fs::metadata(&path).expect("stat").permissions().mode();
        fs::write(&path, out).expect("write shadow");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// passwd, group and shadow: the host's, minus anything clashing with
    /// the test users, plus the test users. Owner and mode follow the host's.
    fn stage_accounts(&self) {
        let users = [(ALICE, ALICE_UID), (BOB, BOB_UID)];
        // passwd and group carry the id in their third field; shadow has
        // only the name.
        let clashes = |file: &str, line: &str| {
            let fields: Vec<&str> = line.split(':').collect();
            users.iter().any(|(u, uid)| {
                fields[0] == *u || (file != "shadow" && fields.get(2) == Some(&&*uid.to_string()))
            })
        };
        for file in ["passwd", "group", "shadow"] {
            let host = Path::new("/etc").join(file);
            let text = fs::read_to_string(&host).unwrap_or_else(|e| panic!("{file}: {e}"));
            let mut out: String = text
                .lines()
                .filter(|l| !clashes(file, l))
                .map(|l| format!("{l}\n"))
                .collect();
            for (u, uid) in users {
                out.push_str(&match file {
                    "passwd" => format!("{u}:x:{uid}:{uid}:pam_gateway test:/home/{u}:/bin/sh\n"),
                    "group" => format!("{u}:x:{uid}:\n"),
                    _ => format!("{u}:{PASSWORD_HASH}:19000:0:99999:7:::\n"),
                });
            }
            let meta = fs::metadata(&host).expect("stat");
            let staged = self.stage_etc(file);
            write_file(&staged, &out, meta.mode() & 0o7777);
            chown(&staged, Some(meta.uid()), Some(meta.gid())).expect("chown");
        }
    }

    fn stage_home(&self, user: &str, uid: u32) {
        let home = self.stage_home_of(user);
        fs::create_dir(&home).expect("mkdir home");
        fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).expect("chmod");
        chown(&home, Some(uid), Some(uid)).expect("chown");
    }

    /// Puts `key` in the user's ~/.ssh/authorized_keys.
    pub fn authorize_key(&self, user: &str, uid: u32, key: &str) {
        let ssh = self.stage_home_of(user).join(".ssh");
        fs::create_dir(&ssh).expect("mkdir .ssh");
        fs::set_permissions(&ssh, fs::Permissions::from_mode(0o700)).expect("chmod");
        let keys = ssh.join("authorized_keys");
        write_file(&keys, key, 0o600);
        for p in [&ssh, &keys] {
            chown(p, Some(uid), Some(uid)).expect("chown");
        }
    }

    /// `program` with the namespace set up around it; add arguments, stdio.
    /// Each call is a fresh namespace built from the staged files.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
        ])
        .arg(self.dir.path().join("enter.sh"))
        .arg(self.dir.path())
        .arg(module_dir())
        .arg(module_path())
        .arg(program)
        .current_dir("/");
        die_with_parent(&mut cmd);
        cmd
    }

    /// `argv` run by ALICE in the namespace (setpriv: real, effective and
    /// saved uid and gid hers, her groups: the hostile caller) with a clean
    /// environment (PATH, HOME, USER). Not spawned; no stdio set.
    pub fn as_alice<S: AsRef<std::ffi::OsStr>>(&self, argv: &[S]) -> Command {
        let uid = ALICE_UID.to_string();
        let mut cmd = self.command("setpriv");
        cmd.args(["--reuid", &uid, "--regid", &uid, "--init-groups", "--"])
            .args(argv)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", format!("/home/{ALICE}"))
            .env("USER", ALICE);
        cmd
    }

    /// [`sudo_argv`] run by ALICE ([`Sandbox::as_alice`]): MARK holds 0
    /// only if sudo ran its command. Not spawned; no stdio set.
    pub fn sudo_as_alice(&self, mark: &Path) -> Command {
        self.as_alice(&sudo_argv(mark))
    }

    /// [`Sandbox::sudo_as_alice`] with LOGNAME and `LANG=C` too, spawned
    /// with every standard stream piped.
    pub fn spawn_sudo_as_alice(&self, mark: &Path) -> std::process::Child {
        self.sudo_as_alice(mark)
            .env("LOGNAME", ALICE)
            .env("LANG", "C")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn sudo")
    }

    /// Everything logged to the namespace's /dev/log so far (the module,
    /// sudo, su, login; sshd logs to its stderr).
    pub fn log(&self) -> String {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = self.log_sock.recv(&mut buf) {
            log.push_str(&String::from_utf8_lossy(&buf[..n]));
            log.push('\n');
        }
        log.clone()
    }
}

/// A loopback URL where nothing listens: the gateway is down.
pub fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    format!("http://127.0.0.1:{}", l.local_addr().expect("addr").port())
}
