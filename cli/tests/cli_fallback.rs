//! `pam-gateway totp`, `backup-codes` and `unlock` run as programs against
//! temp config dirs, and what they write, proved through real libpam
//! (pamtester in a private mount namespace): an authenticator code and
//! backup codes with the gateway down, a lockout lifted by `unlock`.

use pgw_test_support::cli_harness;
use pgw_test_support::fake_telegram;
use pgw_test_support::pam_harness;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cli_harness::{Out, Running, bin, require_root};
use fake_telegram::{FakeOptions, FakeTelegram};
use pam_gateway_core::backup_codes;
use pam_gateway_core::secure_file::Owner;
use pam_gateway_core::state::{FileStateStore, UserState, update_with};
use pam_gateway_core::users::Users;
use pam_harness::{Answers, CHAT, MAXTRIES, PamEnv, TOKEN, TempDir, write_file};
use totp_rs::{Algorithm, Secret, TOTP};

const WAIT: Duration = Duration::from_secs(20);

fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    format!("http://127.0.0.1:{}", l.local_addr().expect("addr").port())
}

/// A gateway.toml with its own users file and state_dir in a temp dir,
/// Telegram pointing at a closed port; `users` (mode 0644) if given.
struct Dirs {
    dir: TempDir,
    config: PathBuf,
    users: PathBuf,
    state: PathBuf,
}

fn dirs(users: Option<&str>) -> Dirs {
    require_root();
    let dir = TempDir::new("cli-fallback");
    let etc = dir.path().join("etc");
    fs::create_dir(&etc).expect("mkdir");
    fs::set_permissions(&etc, fs::Permissions::from_mode(0o700)).expect("chmod");
    let config = etc.join("gateway.toml");
    let users_file = etc.join("users.toml");
    let state = dir.path().join("state");
    write_file(
        &config,
        &format!(
            "users_file = \"{}\"\nstate_dir = \"{}\"\n\n[telegram]\nbot_token = \"{TOKEN}\"\n\
             api_url = \"{}\"\ntimeout = 2\nconnect_timeout = 1\n",
            users_file.display(),
            state.display(),
            closed_port_url()
        ),
        0o600,
    );
    if let Some(text) = users {
        write_file(&users_file, text, 0o644);
    }
    Dirs {
        dir,
        config,
        users: users_file,
        state,
    }
}

fn spawn(config: &Path, args: &[&str]) -> Running {
    let mut cmd = Command::new(bin());
    cmd.arg("--config").arg(config).args(args);
    Running::start(cmd)
}

fn run(config: &Path, args: &[&str], stdin: &str) -> Out {
    let mut r = spawn(config, args);
    r.type_text(stdin);
    r.close_stdin();
    r.finish()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("meta").mode() & 0o7777
}

fn state_of(state_dir: &Path, user: &str) -> UserState {
    FileStateStore::new(state_dir, Owner::ROOT)
        .load(user)
        .expect("state")
}

// ------------------------------------------------------------------ totp ----

/// The base32 secret in the otpauth URI the CLI printed.
fn secret_in(stdout: &str) -> String {
    let start = stdout.find("otpauth://totp/").expect("an otpauth URI");
    let uri = stdout[start..].split_whitespace().next().expect("uri");
    let query = uri.split_once('?').expect("query").1;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("secret="))
        .expect("secret=")
        .to_string()
}

/// An authenticator app, as totp-rs computes it: SHA-1, 6 digits, 30 s.
fn app(base32: &str) -> TOTP {
    let bytes = Secret::Encoded(base32.to_string())
        .to_bytes()
        .expect("base32");
    TOTP::new(Algorithm::SHA1, 6, 1, 30, bytes).expect("a 160-bit secret")
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs()
}

/// A six-digit answer that is none of the codes the module would accept now.
fn wrong_code(app: &TOTP) -> String {
    let now = unix_now();
    let valid: Vec<String> = (0..=4).map(|k| app.generate(now - 60 + k * 30)).collect();
    (0..1000)
        .map(|n| format!("{:06}", 314_159 + n * 7))
        .find(|c| !valid.contains(c))
        .expect("a wrong code")
}

/// Starts `totp USER` and waits for its code prompt; returns the run and
/// the printed secret.
fn start_totp(config: &Path, args: &[&str]) -> (Running, String, String) {
    let mut r = spawn(config, args);
    let stdout = r.wait_for("Type the 6-digit code", WAIT);
    let secret = secret_in(&stdout);
    (r, secret, stdout)
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn totp_shows_the_secret_once_and_stores_it_after_a_right_code() {
    let before = format!(
        "# team\n\n[users.bob]\ntelegram = \"{CHAT}\"\n\n# the daemon's phone\n[users.daemon]\n\
         telegram = \"{CHAT}\" # work phone\n"
    );
    let d = dirs(Some(&before));
    let (mut r, secret, stdout) = start_totp(&d.config, &["totp", "daemon"]);
    assert_eq!(secret.len(), 32, "160 bits in base32: {secret}");
    assert!(
        stdout.contains("otpauth://totp/pam_gateway:daemon%40"),
        "{stdout}"
    );
    assert!(stdout.contains('█'), "a QR code:\n{stdout}");
    // The key for typing by hand is the URI's secret in groups of four.
    let grouped: Vec<String> = secret
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    assert!(stdout.contains(&grouped.join(" ")), "{stdout}");
    assert_eq!(stdout.matches(&secret).count(), 1, "only in the URI");
    assert_eq!(
        fs::read_to_string(&d.users).expect("users"),
        before,
        "nothing written before the code"
    );

    let app = app(&secret);
    r.type_line(&wrong_code(&app));
    r.type_line(&app.generate_current().expect("code"));
    let out = r.finish();
    out.expect_code(0)
        .expect_in_stdout("Code confirmed.")
        .expect_in_stdout("Stored daemon's authenticator secret")
        .expect_in_stdout("mode 0600, was 0644")
        .expect_in_stderr("2 tries left");
    assert!(!out.stderr.contains(&secret), "{}", out.dump());

    let text = fs::read_to_string(&d.users).expect("users");
    assert_eq!(
        text,
        before.replace(
            "# work phone\n",
            &format!("# work phone\ntotp_secret = \"{secret}\"\n")
        ),
        "only the secret added"
    );
    assert_eq!(mode(&d.users), 0o600);
    let users = Users::parse(&d.users, &text).expect("valid users file");
    let key = users
        .get("daemon")
        .and_then(|e| e.totp_secret.as_ref())
        .expect("daemon's secret");
    assert!(users.get("bob").is_some_and(|e| e.totp_secret.is_none()));
    // The stored key accepts what the app shows, and the module's file
    // checks accept the file (owner-only now).
    let now = unix_now();
    assert!(
        key.matching_step(app.generate(now).as_bytes(), now)
            .is_some()
    );
    pam_gateway_core::setup::load_users(
        &pam_gateway_core::setup::load_config(&d.config, Owner::ROOT).expect("config"),
        Owner::ROOT,
    )
    .expect("the module reads it");
    // The code typed is marked used.
    let last = state_of(&d.state, "daemon").totp_last_step.expect("step");
    assert!(last.abs_diff(now / 30) <= 1, "{last} vs {}", now / 30);
    assert_eq!(mode(&d.state), 0o700);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn totp_wrong_code_three_times_or_none_writes_nothing() {
    let before = format!("[users.daemon]\ntelegram = \"{CHAT}\"\n");
    let d = dirs(Some(&before));
    let (mut r, secret, _) = start_totp(&d.config, &["totp", "daemon", "--no-qr"]);
    let wrong = wrong_code(&app(&secret));
    for _ in 0..3 {
        r.type_line(&wrong);
    }
    let out = r.finish();
    out.expect_code(1)
        .expect_in_stderr("wrong code 3 times: nothing was written")
        .expect_in_stderr("1 try left");
    assert!(!out.stderr.contains(&secret), "{}", out.dump());
    assert_eq!(fs::read_to_string(&d.users).expect("users"), before);
    assert_eq!(mode(&d.users), 0o644, "mode untouched");
    assert_eq!(state_of(&d.state, "daemon").totp_last_step, None);

    // No answer at all (end of input): the same.
    let out = run(&d.config, &["totp", "daemon", "--no-qr"], "");
    out.expect_code(1).expect_in_stderr("no code entered");
    assert_eq!(fs::read_to_string(&d.users).expect("users"), before);

    // A code of this secret from a phone 5 minutes fast: told so.
    let (mut r, secret, _) = start_totp(&d.config, &["totp", "daemon", "--no-qr"]);
    r.type_line(&app(&secret).generate(unix_now() + 300));
    r.close_stdin();
    let out = r.finish();
    out.expect_code(1)
        .expect_in_stderr("ahead of this machine's clock");
    assert_eq!(fs::read_to_string(&d.users).expect("users"), before);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn totp_refuses_to_replace_a_secret_unless_asked_and_needs_an_account() {
    let d = dirs(None);
    // No users file yet, --no-verify: an authenticator-only entry.
    let out = run(&d.config, &["totp", "daemon", "--no-verify", "--no-qr"], "");
    out.expect_code(0)
        .expect_in_stdout("Not checked with a code (--no-verify).")
        .expect_in_stdout("no gateway: every login");
    let first = secret_in(&out.stdout);
    let text = fs::read_to_string(&d.users).expect("users");
    assert!(
        text.contains(&format!("[users.daemon]\ntotp_secret = \"{first}\"\n")),
        "{text}"
    );
    assert_eq!(mode(&d.users), 0o600);

    let out = run(&d.config, &["totp", "daemon", "--no-verify"], "");
    out.expect_code(2).expect_in_stderr("add --replace");
    assert!(
        !out.stdout.contains("otpauth"),
        "no new secret shown:\n{}",
        out.dump()
    );
    assert_eq!(fs::read_to_string(&d.users).expect("users"), text);

    let out = run(
        &d.config,
        &["totp", "daemon", "--replace", "--no-verify", "--no-qr"],
        "",
    );
    out.expect_code(0)
        .expect_in_stdout("Replaced daemon's authenticator secret")
        .expect_in_stdout("no longer works");
    let second = secret_in(&out.stdout);
    assert_ne!(first, second);
    let now = fs::read_to_string(&d.users).expect("users");
    assert_eq!(now, text.replace(&first, &second));

    let out = run(&d.config, &["totp", "no-such-user-pgw", "--no-verify"], "");
    out.expect_code(2).expect_in_stderr("no account");
    assert_eq!(fs::read_to_string(&d.users).expect("users"), now);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn totp_from_the_cli_logs_in_through_libpam_with_the_gateway_down() {
    let env = PamEnv::with_files(
        &format!(
            "[telegram]\nbot_token = \"{TOKEN}\"\napi_url = \"{}\"\ntimeout = 2\n\
             connect_timeout = 1\n",
            closed_port_url()
        ),
        &format!("[users.daemon]\ntelegram = \"{CHAT}\"\n"),
    );
    let (mut r, secret, _) = start_totp(&env.config, &["totp", "daemon", "--no-qr"]);
    let app = app(&secret);
    r.type_line(&app.generate_current().expect("code"));
    r.finish().expect_code(0);
    assert_eq!(mode(&env.users), 0o600);

    // The code typed at enrolment is used; the next step's code works.
    let step = state_of(&env.state, "daemon")
        .totp_last_step
        .expect("the enrolment code is recorded");
    let used = app.generate(step * 30);
    let next = app.generate((step + 1) * 30);
    let login = env.authenticate("daemon", Answers::Lines(vec![used, next]), None);
    assert!(login.success, "{}", login.dump());
    assert!(
        login
            .stderr
            .contains("Could not send a code via Telegram. Authenticator code:"),
        "{}",
        login.dump()
    );
    assert!(login.log.contains("used a second time"), "{}", login.dump());
    assert!(login.log.contains("gateway=totp"), "{}", login.dump());
    assert!(!login.log.contains(&secret), "{}", login.dump());
}

// ---------------------------------------------------------- backup-codes ----

fn codes_in(out: &Out) -> Vec<String> {
    out.stdout.lines().map(str::to_string).collect()
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn backup_codes_print_ten_each_works_once_through_libpam_and_a_new_set_voids_the_old() {
    let env = PamEnv::with_files(
        &format!(
            "[telegram]\nbot_token = \"{TOKEN}\"\napi_url = \"{}\"\ntimeout = 2\n\
             connect_timeout = 1\n[code]\nattempts = 1\n",
            closed_port_url()
        ),
        &format!("[users.daemon]\ntelegram = \"{CHAT}\"\n"),
    );
    assert!(!env.state.exists());
    let out = run(&env.config, &["backup-codes", "daemon"], "");
    out.expect_code(0)
        .expect_in_stderr("10 new backup codes for daemon")
        .expect_in_stderr("had no unused backup codes before");
    let first = codes_in(&out);
    assert_eq!(first.len(), 10, "{}", out.dump());
    for code in &first {
        let (a, b) = code.split_once('-').expect("xxxxx-xxxxx");
        assert_eq!((a.len(), b.len()), (5, 5), "{code}");
        assert!(
            a.bytes()
                .chain(b.bytes())
                .all(|c| backup_codes::ALPHABET.contains(&c)),
            "{code}"
        );
    }
    let mut distinct = first.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 10);
    assert_eq!(mode(&env.state), 0o700, "state_dir created root-only");
    let file = fs::read_to_string(env.state.join("daemon.json")).expect("state file");
    for code in &first {
        assert!(!file.contains(code.as_str()), "a code in clear");
        assert!(!out.stderr.contains(code.as_str()), "a code on stderr");
    }
    assert_eq!(mode(&env.state.join("daemon.json")), 0o600);

    // One code logs in once, with the gateway down.
    let login = env.authenticate("daemon", Answers::Lines(vec![first[3].clone()]), None);
    assert!(login.success, "{}", login.dump());
    assert!(
        login
            .stdout
            .contains("Backup code accepted. 9 backup codes left."),
        "{}",
        login.dump()
    );
    assert!(
        login.log.contains("backup code accepted; 9 left"),
        "{}",
        login.dump()
    );
    let again = env.authenticate("daemon", Answers::Lines(vec![first[3].clone()]), None);
    again.assert_failed_with(MAXTRIES);

    // A new set: the old codes stop working, the new ones work.
    let out = run(&env.config, &["backup-codes", "daemon"], "");
    out.expect_code(0)
        .expect_in_stderr("The previous set no longer works (9 of its codes were still unused)");
    let second = codes_in(&out);
    assert_eq!(second.len(), 10);
    assert!(second.iter().all(|c| !first.contains(c)));
    let old = env.authenticate("daemon", Answers::Lines(vec![first[0].clone()]), None);
    old.assert_failed_with(MAXTRIES);
    let new = env.authenticate("daemon", Answers::Lines(vec![second[9].clone()]), None);
    assert!(new.success, "{}", new.dump());
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn backup_codes_refuse_unenrolled_users_and_an_unsafe_state_dir() {
    let d = dirs(Some(&format!("[users.daemon]\ntelegram = \"{CHAT}\"\n")));
    let out = run(&d.config, &["backup-codes", "bin"], "");
    out.expect_code(2).expect_in_stderr("bin is not enrolled");
    assert!(out.stdout.is_empty(), "{}", out.dump());
    let out = run(&d.config, &["backup-codes", "no-such-user-pgw"], "");
    out.expect_code(2).expect_in_stderr("no account");

    fs::create_dir(&d.state).expect("mkdir");
    fs::set_permissions(&d.state, fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = run(&d.config, &["backup-codes", "daemon"], "");
    out.expect_code(3).expect_in_stderr("chmod 700");
    assert!(out.stdout.is_empty(), "no codes printed:\n{}", out.dump());
    assert!(!d.state.join("daemon.json").exists());

    fs::remove_dir(&d.state).expect("rmdir");
    let elsewhere = d.dir.path().join("real-state");
    fs::create_dir(&elsewhere).expect("mkdir");
    fs::set_permissions(&elsewhere, fs::Permissions::from_mode(0o700)).expect("chmod");
    std::os::unix::fs::symlink(&elsewhere, &d.state).expect("ln");
    let out = run(&d.config, &["backup-codes", "daemon"], "");
    out.expect_code(3).expect_in_stderr("symbolic link");
    assert!(out.stdout.is_empty(), "{}", out.dump());
}

// ---------------------------------------------------------------- unlock ----

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn unlock_lifts_a_lockout_so_the_next_login_gets_a_code() {
    let fake = FakeTelegram::start(FakeOptions::default()).expect("fake");
    let env = PamEnv::with_fake(
        &fake,
        "[code]\nattempts = 1\n[limits]\nfailures_before_lockout = 1\nlockout = 3600\n",
    );
    // alice has backup codes and a used authenticator step: both must stay.
    let store = FileStateStore::new(&env.state, Owner::ROOT);
    let codes = backup_codes::issue(&store, "alice").expect("codes");
    update_with(&store, "alice", |s| s.totp_last_step = Some(4242)).expect("state");

    let login = env.authenticate("alice", Answers::Lines(vec!["not-a-code".into()]), None);
    login.assert_failed_with(MAXTRIES);
    assert!(
        login.log.contains("locked out for 60 min"),
        "{}",
        login.dump()
    );
    // That login's code, never typed: out of the way of the last login's.
    fake.wait_for_message(WAIT).expect("the first login's code");
    let sent = fake.sent().len();
    // alice has backup codes, so during the lockout she is asked for one
    // (issue 12: the lockout may be an attacker's doing); a wrong one is
    // refused.
    let locked = env.authenticate("alice", Answers::Lines(vec!["not-a-code".into()]), None);
    locked.assert_failed_with(MAXTRIES);
    assert!(
        locked.stderr.contains("Too many wrong codes"),
        "{}",
        locked.dump()
    );
    assert_eq!(fake.sent().len(), sent, "nothing sent while locked out");

    let out = run(&env.config, &["users"], "");
    out.expect_code(0)
        .expect_in_stdout("10 backup codes")
        .expect_in_stdout("LOCKED OUT for another 60 min (pam-gateway unlock alice)");
    let out = run(
        &env.config,
        &["status", "--pam-dir", &env.pam_d.display().to_string()],
        "",
    );
    out.expect_in_stdout("alice is locked out for another 60 min");

    let out = run(&env.config, &["unlock", "alice"], "");
    out.expect_code(0)
        .expect_in_stdout("Unlocked alice: cleared the lockout (another 60 min), 1 lockout on record, 1 code sent in the window.")
        .expect_in_stdout("The next login of alice gets a code again.")
        .expect_in_stdout("Kept: 10 unused backup codes, the authenticator's replay guard.");
    let st = state_of(&env.state, "alice");
    assert_eq!(
        (st.failures, st.lockouts, st.locked_until, st.sent.len()),
        (0, 0, None, 0)
    );
    assert_eq!(st.totp_last_step, Some(4242));
    assert_eq!(st.backup_codes.len(), 10);
    assert!(backup_codes::find_match(&st.backup_codes, codes[0].expose().as_bytes()).is_some());

    let login = env.authenticate("alice", Answers::DeliveredCode(WAIT), Some(&fake));
    assert!(login.success, "{}", login.dump());
    assert_eq!(fake.sent().len(), sent + 1);

    // That login's send counts in the window until cleared; then nothing is left.
    run(&env.config, &["unlock", "alice"], "")
        .expect_code(0)
        .expect_in_stdout("Unlocked alice: cleared 1 code sent in the window.");
    run(&env.config, &["unlock", "alice"], "")
        .expect_code(0)
        .expect_in_stdout("Nothing to unlock");
    run(&env.config, &["unlock", "no-such-user-pgw"], "")
        .expect_code(2)
        .expect_in_stderr("check the spelling");
}

// ---------------------------------------------------------------- status ----

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn status_with_the_gateway_down_warns_for_users_with_a_fallback_factor() {
    // Telegram down (closed port); daemon has an authenticator, bin backup
    // codes, sys neither: only sys's logins stop, the others are asked for
    // their fallback factor (tests above prove that through libpam).
    let d = dirs(None);
    write_file(
        &d.users,
        &format!(
            "[users.daemon]\ntelegram = \"{CHAT}\"\ntotp_secret = \"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\"\n\
             [users.bin]\ntelegram = \"{CHAT}\"\n[users.sys]\ntelegram = \"{CHAT}\"\n"
        ),
        0o600,
    );
    let store = FileStateStore::new(&d.state, Owner::ROOT);
    backup_codes::issue(&store, "bin").expect("backup codes");
    let pam_dir = d.dir.path().join("pam.d");
    fs::create_dir(&pam_dir).expect("mkdir");
    let pam_dir = pam_dir.display().to_string();
    let status = || run(&d.config, &["status", "--pam-dir", &pam_dir], "");

    let out = status();
    out.expect_code(1)
        .expect_in_stdout("FAIL  telegram: ")
        .expect_in_stdout("logins of sys are refused while this lasts (no other working gateway, no authenticator, no backup codes)")
        .expect_in_stdout("bin (10 backup codes), daemon (authenticator) will be asked for their authenticator or backup code instead while this lasts");
    assert!(!out.stdout.contains("logins of bin"), "{}", out.dump());
    assert!(!out.stdout.contains("logins of daemon"), "{}", out.dump());

    // Without sys, nothing stops logins: a warning, exit 0.
    write_file(
        &d.users,
        &format!(
            "[users.daemon]\ntelegram = \"{CHAT}\"\ntotp_secret = \"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\"\n\
             [users.bin]\ntelegram = \"{CHAT}\"\n"
        ),
        0o600,
    );
    let out = status();
    out.expect_code(0)
        .expect_in_stdout("warn  telegram: ")
        .expect_in_stdout("bin (10 backup codes), daemon (authenticator) will be asked");
    assert!(!out.stdout.contains("FAIL"), "{}", out.dump());

    // bin's codes used up: bin's logins stop again.
    update_with(&store, "bin", |s| s.backup_codes.clear()).expect("state");
    let out = status();
    out.expect_code(1)
        .expect_in_stdout("FAIL  telegram: ")
        .expect_in_stdout("logins of bin are refused while this lasts")
        .expect_in_stdout("daemon (authenticator) will be asked");
}

// ------------------------------------------------------------ root, help ----

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn the_new_commands_need_root_and_are_in_the_help() {
    require_root();
    let dir = TempDir::new("cli-fallback-nobody");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let copy = dir.path().join("pam-gateway");
    fs::copy(bin(), &copy).expect("copy");
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).expect("chmod");
    for args in [
        vec!["totp", "daemon"],
        vec!["backup-codes", "daemon"],
        vec!["unlock", "daemon"],
    ] {
        let out = Command::new(&copy)
            .args(&args)
            .uid(65534)
            .gid(65534)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run as nobody");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{args:?}: {stderr}");
        assert!(stderr.contains("needs root"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let help = Command::new(bin()).arg("--help").output().expect("help");
    let help = String::from_utf8_lossy(&help.stdout);
    for word in ["totp", "backup-codes", "unlock"] {
        assert!(help.contains(word), "{word}\n{help}");
    }
    for (command, words) in [
        ("totp", &["--replace", "--no-verify", "0600"][..]),
        ("backup-codes", &["standard output", "stops working"][..]),
        ("unlock", &["lockout", "backup codes stay"][..]),
    ] {
        let out = Command::new(bin())
            .args([command, "--help"])
            .output()
            .expect("help");
        let text = String::from_utf8_lossy(&out.stdout);
        for w in words {
            assert!(text.contains(w), "{command}: {w}\n{text}");
        }
    }
}
