//! The Debian package's whole life with the real dpkg, pam-auth-update and
//! libpam: install, enable, log in (password, then code), upgrade, remove,
//! purge, reinstall. Everything runs in private mount namespaces whose /etc,
//! /usr and /var are overlays with upper dirs in a temp dir: the host's files
//! and its dpkg database never change (checked at the end).
//!
//! Why overlays rather than `dpkg --root`: with --root, dpkg runs the
//! maintainer scripts chrooted into the scratch root, which would then need
//! a whole Debian system (shell, perl, pam-auth-update, libpam) — minutes of
//! debootstrap. The overlay starts from this machine's own system in
//! milliseconds and lets every step be checked with the real tools.
//!
//! `make test` packages the debug build with scripts/mkdeb.sh (the script
//! `make deb` uses). `make test-arm` runs this same test on the arm64 package
//! from `make cross`, under qemu: PGW_TEST_DEB_ARCH, PGW_TEST_DEB_BIN_DIR and
//! PGW_TEST_PAMTESTER say which.

use pgw_test_support::fake_telegram;
use pgw_test_support::pam_harness;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use fake_telegram::{FakeOptions, FakeTelegram};
use pam_harness::{Answers, PamRun, TempDir, converse, pamtester_command, require_root_tools};

const WAIT: Duration = Duration::from_secs(20);
const USER: &str = "pgwtest";
const PASSWORD: &str = "correct horse battery";
/// dpkg and its maintainer scripts expect the sbin directories in PATH.
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A copy-on-write view of this machine: /etc, /usr and /var are overlays
/// whose changes land in `dir` and persist from one `run` to the next.
struct OverlayRoot {
    dir: TempDir,
}

impl OverlayRoot {
    fn new() -> OverlayRoot {
        let dir = TempDir::new("deb");
        for d in ["etc", "usr", "var"] {
            fs::create_dir_all(dir.path().join(d).join("upper")).expect("mkdir");
            fs::create_dir_all(dir.path().join(d).join("work")).expect("mkdir");
        }
        OverlayRoot { dir }
    }

    /// `sh -ec SCRIPT` inside a fresh private mount namespace over the overlays.
    fn command(&self, script: &str) -> Command {
        let mounts = format!(
            "set -e\n\
             for d in etc usr var; do\n\
               mount -t overlay overlay \
               -o lowerdir=/$d,upperdir={0}/$d/upper,workdir={0}/$d/work /$d\n\
             done\n\
             exec sh -ec \"$1\"\n",
            self.dir.path().display()
        );
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(mounts)
            .arg("sh")
            .arg(script)
            .env("PATH", SYSTEM_PATH)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("LC_ALL", "C");
        cmd
    }

    fn run(&self, script: &str) -> Output {
        self.command(script).output().expect("run unshare")
    }

    /// Runs `script`, fails the test if it fails; returns stdout and stderr.
    fn ok(&self, script: &str) -> (String, String) {
        let out = self.run(script);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "failed: {script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        );
        (stdout, stderr)
    }

    /// One `pamtester pgwdeb USER authenticate` through the overlay's stacks.
    fn login(&self, answers: Answers, fake: &FakeTelegram) -> PamRun {
        let script = format!(
            "exec {} -v pgwdeb {USER} authenticate",
            pamtester_command().join(" ")
        );
        converse(&mut self.command(&script), answers, Some(fake))
    }
}

struct Package {
    arch: String,
    multiarch: String,
    v1: PathBuf,
    v2: PathBuf,
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn require_tools() {
    require_root_tools();
    for (tool, package) in [
        ("dpkg-shlibdeps", "dpkg-dev"),
        ("dpkg-architecture", "dpkg-dev"),
        ("unshare", "util-linux"),
        ("pam-auth-update", "libpam-runtime"),
        ("chpasswd", "passwd"),
    ] {
        let found = std::env::split_paths(SYSTEM_PATH).any(|d| d.join(tool).is_file());
        assert!(found, "{tool} is missing: apt-get install {package}");
    }
}

/// Two versions of the package, built by scripts/mkdeb.sh.
fn build_packages(out: &Path) -> Package {
    let arch = std::env::var("PGW_TEST_DEB_ARCH")
        .unwrap_or_else(|_| stdout_of(Command::new("dpkg").arg("--print-architecture")));
    let bin_dir = match std::env::var_os("PGW_TEST_DEB_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            // The cdylib `make test` builds, and the CLI cargo built for this test.
            let cli = pgw_test_support::cli_harness::bin();
            let dir = cli.parent().expect("bin dir").to_path_buf();
            assert!(
                dir.join("libpam_gateway.so").is_file(),
                "{}/libpam_gateway.so not built: run `cargo build --lib` first (make test does)",
                dir.display()
            );
            dir
        }
    };
    let multiarch = stdout_of(
        Command::new("dpkg-architecture")
            .args(["-a", &arch, "-qDEB_HOST_MULTIARCH"])
            .stderr(std::process::Stdio::null()),
    );
    let build = |version: &str| {
        let deb = stdout_of(
            Command::new(repo().join("scripts/mkdeb.sh"))
                .args(["--arch", &arch, "--bin-dir"])
                .arg(&bin_dir)
                .arg("--out")
                .arg(out)
                .args(["--version", version])
                .env("DEB_COMPRESS", "gzip"),
        );
        PathBuf::from(deb.lines().last().expect("mkdeb prints the .deb"))
    };
    Package {
        v1: build("0.1.0-1~test1"),
        v2: build("0.1.0-1~test2"),
        arch,
        multiarch,
    }
}

/// What an admin would look at, as `key=value` lines.
fn facts(root: &OverlayRoot, pkg: &Package) -> BTreeMap<String, String> {
    let script = format!(
        r#"
st() {{ stat -c '%a %U:%G' "$1" 2>/dev/null || echo missing; }}
echo "status=$(dpkg-query -W -f='${{Status}} ${{Version}}' pam-gateway 2>/dev/null || echo not-installed)"
echo "arch=$(dpkg-query -W -f='${{Architecture}}' pam-gateway 2>/dev/null)"
echo "module=$(st /lib/{ma}/security/pam_gateway.so)"
echo "direct=$(st /lib/{ma}/security/pam_gateway_direct.so)"
echo "cli=$(st /usr/sbin/pam-gateway)"
echo "daemon=$(st /usr/sbin/pam-gatewayd)"
echo "unit=$(st /lib/systemd/system/pam-gatewayd.service)"
echo "unit_enabled=$(ls /etc/systemd/system/*.wants/pam-gatewayd.service 2>/dev/null | wc -l)"
echo "etc_dir=$(st /etc/pam_gateway)"
echo "state_dir=$(st /var/lib/pam_gateway)"
echo "profile=$(st /usr/share/pam-configs/pam_gateway)"
echo "man8=$(st /usr/share/man/man8/pam_gateway.8.gz) $(st /usr/share/man/man8/pam-gateway.8.gz) $(st /usr/share/man/man8/pam-gatewayd.8.gz)"
echo "man5=$(st /usr/share/man/man5/gateway.toml.5.gz)"
echo "doc=$(ls /usr/share/doc/pam-gateway 2>/dev/null | tr '\n' ' ')"
echo "docs=$(ls /usr/share/doc/pam-gateway/docs 2>/dev/null | tr '\n' ' ')"
echo "examples=$(ls /usr/share/doc/pam-gateway/examples 2>/dev/null | tr '\n' ' ')"
echo "config=$(cat /etc/pam_gateway/gateway.toml 2>/dev/null | md5sum | cut -c1-8) $(st /etc/pam_gateway/gateway.toml)"
echo "users=$(cat /etc/pam_gateway/users.toml 2>/dev/null | md5sum | cut -c1-8) $(st /etc/pam_gateway/users.toml)"
echo "common_auth=$(grep -c 'pam_gateway\.so' /etc/pam.d/common-auth || true)"
echo "audit=$(dpkg --audit 2>&1 | tr '\n' ' ')"
"#,
        ma = pkg.multiarch
    );
    let (stdout, _) = root.ok(&script);
    stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// docs/*.md as the package ships them: `NAME.md.gz`, as `ls` lists them.
fn shipped_guides() -> String {
    let mut names: Vec<String> = fs::read_dir(repo().join("docs"))
        .expect("docs/")
        .map(|e| {
            e.expect("docs/ entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("{n}.gz"))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no docs/*.md");
    names.join(" ")
}

fn assert_fact(f: &BTreeMap<String, String>, key: &str, want: &str, when: &str) {
    assert_eq!(
        f.get(key).map(String::as_str),
        Some(want),
        "{when}: {key}\nall facts: {f:#?}"
    );
}

/// dpkg prints warnings on stderr; a clean step has none.
fn assert_no_dpkg_warnings(stderr: &str, when: &str) {
    assert!(
        !stderr.contains("warning") && !stderr.contains("error"),
        "{when}: dpkg complained:\n{stderr}"
    );
}

/// Where a line matching `needle` sits in common-auth.
fn line_of(common_auth: &str, needle: &str) -> usize {
    common_auth
        .lines()
        .position(|l| !l.trim_start().starts_with('#') && l.contains(needle))
        .unwrap_or_else(|| panic!("no {needle} in common-auth:\n{common_auth}"))
}

fn host_state() -> (String, String) {
    let status = Command::new("dpkg-query")
        .args(["-W", "-f=${Status} ${Version}", "pam-gateway"])
        .output()
        .expect("dpkg-query");
    (
        String::from_utf8_lossy(&status.stdout).into_owned(),
        fs::read_to_string("/etc/pam.d/common-auth").unwrap_or_default(),
    )
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn package_installs_upgrades_removes_and_purges_cleanly() {
    require_tools();
    let host_before = host_state();
    let debs = TempDir::new("debs");
    let pkg = build_packages(debs.path());
    let root = OverlayRoot::new();
    let fake = FakeTelegram::start(FakeOptions::default()).expect("fake");
    let v1 = pkg.v1.display().to_string();
    let v2 = pkg.v2.display().to_string();

    // Install: files in place, directories root-only, PAM untouched.
    let (_, stderr) = root.ok(&format!("dpkg -i {v1}"));
    assert_no_dpkg_warnings(&stderr, "install");
    let f = facts(&root, &pkg);
    let guides = shipped_guides();
    for (key, want, when) in [
        ("status", "install ok installed 0.1.0-1~test1", "install"),
        ("module", "644 root:root", "install"),
        ("direct", "644 root:root", "install"),
        ("cli", "755 root:root", "install"),
        ("daemon", "755 root:root", "install"),
        ("unit", "644 root:root", "install"),
        ("unit_enabled", "0", "install: pam-gatewayd is not enabled"),
        ("etc_dir", "700 root:root", "install"),
        ("state_dir", "700 root:root", "install"),
        ("profile", "644 root:root", "install"),
        (
            "man8",
            "644 root:root 644 root:root 644 root:root",
            "install",
        ),
        ("man5", "644 root:root", "install"),
        (
            "doc",
            "README.md.gz changelog.Debian.gz copyright docs examples",
            "install",
        ),
        // Every guide README.md links to under docs/, at the same path.
        ("docs", guides.as_str(), "install"),
        (
            "examples",
            "gateway.toml ldap pam.d sshd_config.d users.toml webhook",
            "install",
        ),
        ("common_auth", "0", "install: the profile is off by default"),
        ("audit", "", "install"),
        ("arch", pkg.arch.as_str(), "install"),
    ] {
        assert_fact(&f, key, want, when);
    }
    root.ok("dpkg --verify pam-gateway");

    // The admin: config and users file, a user with a password, the profile on.
    root.ok(&format!(
        "umask 077\n\
         cat > /etc/pam_gateway/gateway.toml <<EOF\n\
         [telegram]\nbot_token = \"{token}\"\napi_url = \"{url}\"\ntimeout = 5\n\
         EOF\n\
         printf '# enrolled\\n[users.{USER}]\\ntelegram = \"{chat}\"\\n' > /etc/pam_gateway/users.toml\n\
         chmod 644 /etc/pam_gateway/users.toml\n\
         useradd --no-create-home --shell /usr/sbin/nologin {USER}\n\
         echo '{USER}:{PASSWORD}' | chpasswd\n\
         echo '@include common-auth' > /etc/pam.d/pgwdeb\n\
         pam-auth-update --enable pam_gateway",
        token = pam_harness::TOKEN,
        url = fake.url(),
        chat = pam_harness::CHAT,
    ));
    let (common_auth, _) = root.ok("cat /etc/pam.d/common-auth");
    // Additional, after the primary block: pam_unix's success jumps over
    // pam_deny to pam_permit, then the code is asked.
    let unix = line_of(&common_auth, "pam_unix.so");
    let deny = line_of(&common_auth, "pam_deny.so");
    let permit = line_of(&common_auth, "pam_permit.so");
    let gateway = line_of(&common_auth, "pam_gateway.so");
    assert!(
        unix < deny && deny < permit && permit < gateway,
        "order in common-auth:\n{common_auth}"
    );
    assert!(
        common_auth
            .lines()
            .nth(gateway)
            .expect("line")
            .contains("required"),
        "{common_auth}"
    );

    // Right password, then the delivered code: in.
    let run = root.login(Answers::LinesThenCode(vec![PASSWORD.into()], WAIT), &fake);
    assert!(run.success, "password + code\n{}", run.dump());
    assert!(run.stderr.contains("Verification code:"), "{}", run.dump());
    assert_eq!(fake.sent().len(), 1);
    assert_eq!(fake.sent()[0].chat_id, pam_harness::CHAT.to_string());
    // Wrong password: pam_unix fails, pam_deny ends it; no code is sent.
    let run = root.login(
        Answers::Lines(vec!["wrong password".into(), "123456".into()]),
        &fake,
    );
    assert!(!run.success, "wrong password let in\n{}", run.dump());
    assert!(
        !run.stderr.contains("Verification code:"),
        "asked for a code after a wrong password\n{}",
        run.dump()
    );
    assert_eq!(
        fake.sent().len(),
        1,
        "a code was sent after a wrong password"
    );
    // Right password, wrong codes: out.
    let run = root.login(
        Answers::Lines(vec![
            PASSWORD.into(),
            "000000".into(),
            "000000".into(),
            "000000".into(),
        ]),
        &fake,
    );
    assert!(!run.success, "wrong codes let in\n{}", run.dump());
    // (That login's code was sent; take it off the fake's queue.)
    assert!(
        fake.wait_for_message(WAIT).is_some(),
        "no code for the right password"
    );
    let configured = facts(&root, &pkg);

    // Upgrade: the admin's files and choice survive; logins still need the code.
    let (_, stderr) = root.ok(&format!("dpkg -i {v2}"));
    assert_no_dpkg_warnings(&stderr, "upgrade");
    let f = facts(&root, &pkg);
    assert_fact(
        &f,
        "status",
        "install ok installed 0.1.0-1~test2",
        "upgrade",
    );
    for key in ["config", "users", "etc_dir", "state_dir", "module", "cli"] {
        assert_eq!(f.get(key), configured.get(key), "upgrade changed {key}");
    }
    assert_fact(&f, "common_auth", "1", "upgrade keeps the profile on");
    assert_fact(&f, "audit", "", "upgrade");
    root.ok("dpkg --verify pam-gateway");
    let sent_before = fake.sent().len();
    let run = root.login(Answers::LinesThenCode(vec![PASSWORD.into()], WAIT), &fake);
    assert!(run.success, "after upgrade\n{}", run.dump());
    assert_eq!(fake.sent().len(), sent_before + 1);

    // Remove: the module leaves common-auth before its file goes; a stack the
    // admin edited by hand gets a warning; config and state stay.
    root.ok("echo 'auth required pam_gateway.so' > /etc/pam.d/pgwhand");
    let (_, stderr) = root.ok("dpkg -r pam-gateway");
    assert!(
        stderr.contains("/etc/pam.d/pgwhand still uses pam_gateway.so"),
        "no warning about the hand-edited stack:\n{stderr}"
    );
    let f = facts(&root, &pkg);
    assert_fact(
        &f,
        "status",
        "deinstall ok config-files 0.1.0-1~test2",
        "remove",
    );
    assert_fact(&f, "module", "missing", "remove");
    assert_fact(&f, "direct", "missing", "remove");
    assert_fact(&f, "cli", "missing", "remove");
    assert_fact(&f, "daemon", "missing", "remove");
    assert_fact(&f, "unit", "missing", "remove");
    assert_fact(&f, "profile", "missing", "remove");
    assert_fact(&f, "common_auth", "0", "remove");
    for key in ["config", "users", "etc_dir", "state_dir"] {
        assert_eq!(f.get(key), configured.get(key), "remove changed {key}");
    }
    // PAM still works without the module: the password alone.
    let sent_before = fake.sent().len();
    let run = root.login(Answers::Lines(vec![PASSWORD.into()]), &fake);
    assert!(run.success, "password only after remove\n{}", run.dump());
    assert_eq!(fake.sent().len(), sent_before);

    // Purge with a file of the admin's own in /etc/pam_gateway: the
    // package's files go, the admin's file and so the directory stay.
    root.ok("rm /etc/pam.d/pgwhand; echo mine > /etc/pam_gateway/notes.txt");
    let (stdout, stderr) = root.ok("dpkg -P pam-gateway");
    assert!(
        stdout.contains("purged /etc/pam_gateway/gateway.toml /etc/pam_gateway/users.toml"),
        "purge says what it deleted:\n{stdout}"
    );
    assert!(stderr.contains("kept /etc/pam_gateway"), "{stderr}");
    let f = facts(&root, &pkg);
    assert_fact(&f, "status", "not-installed", "purge");
    assert_fact(&f, "config", "d41d8cd9 missing", "purge");
    assert_fact(&f, "users", "d41d8cd9 missing", "purge");
    assert_fact(&f, "state_dir", "missing", "purge");
    let (notes, _) = root.ok("cat /etc/pam_gateway/notes.txt");
    assert_eq!(notes, "mine\n");

    // Reinstall after purge: still off; then purge leaves nothing at all.
    let (_, stderr) = root.ok(&format!("rm /etc/pam_gateway/notes.txt; dpkg -i {v2}"));
    assert_no_dpkg_warnings(&stderr, "reinstall");
    let f = facts(&root, &pkg);
    assert_fact(&f, "common_auth", "0", "reinstall: the profile stays off");
    assert_fact(&f, "etc_dir", "700 root:root", "reinstall");
    let (_, stderr) = root.ok("dpkg -P pam-gateway");
    assert_no_dpkg_warnings(&stderr, "purge");
    let f = facts(&root, &pkg);
    assert_fact(&f, "status", "not-installed", "final purge");
    assert_fact(&f, "etc_dir", "missing", "final purge");
    assert_fact(&f, "state_dir", "missing", "final purge");
    assert_fact(&f, "audit", "", "final purge");
    let (left, _) = root.ok(&format!(
        "ls -d /lib/{0}/security/pam_gateway.so /lib/{0}/security/pam_gateway_direct.so \
         /usr/sbin/pam-gateway /usr/sbin/pam-gatewayd \
         /lib/systemd/system/pam-gatewayd.service /usr/share/doc/pam-gateway \
         /usr/share/pam-configs/pam_gateway /usr/share/man/man8/pam_gateway.8.gz 2>/dev/null || true",
        pkg.multiarch
    ));
    assert_eq!(left, "", "files left after purge");

    assert_eq!(host_state(), host_before, "the host's dpkg or PAM changed");
}

#[test]
fn man_pages_render_without_warnings() {
    for page in [
        "man/pam_gateway.8",
        "man/pam-gateway.8",
        "man/pam-gatewayd.8",
        "man/gateway.toml.5",
    ] {
        let out = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(repo().join(page))
            .output()
            .expect("groff (apt-get install groff-base)");
        assert!(out.status.success(), "{page}");
        assert!(
            out.stderr.is_empty(),
            "{page}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn the_package_depends_on_a_glibc_that_can_load_its_module() {
    require_tools();
    let debs = TempDir::new("debs-depends");
    let pkg = build_packages(debs.path());
    let unpacked = TempDir::new("deb-x");
    stdout_of(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&pkg.v1)
            .arg(unpacked.path()),
    );
    let module = unpacked
        .path()
        .join(format!("lib/{}/security/pam_gateway.so", pkg.multiarch));
    let versions = stdout_of(
        Command::new("readelf")
            .arg("-V")
            .arg(&module)
            .env("LC_ALL", "C"),
    );
    let depends = stdout_of(
        Command::new("dpkg-deb")
            .args(["-f"])
            .arg(&pkg.v1)
            .arg("Depends"),
    );
    let libc_min = depends
        .split(", ")
        .find_map(|d| d.strip_prefix("libc6 (>= ")?.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no versioned libc6 in Depends: {depends}"));
    // Packed relocations (build.rs) need glibc 2.36, a version need that
    // dpkg-shlibdeps does not see: mkdeb.sh adds it.
    if versions.contains("GLIBC_ABI_DT_RELR") {
        let ok = Command::new("dpkg")
            .args(["--compare-versions", libc_min, "ge", "2.36"])
            .status()
            .expect("dpkg")
            .success();
        assert!(ok, "module needs GLIBC_ABI_DT_RELR, package says {depends}");
    }
}
