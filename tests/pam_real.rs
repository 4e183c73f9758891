//! Real libpam: pamtester loads the built module from a private PAM dir
//! (bwrap mount namespace) and gets its code from the loopback fake.

use pgw_test_support::fake_telegram;
use pgw_test_support::pam_harness;

use std::os::unix::fs::{PermissionsExt, symlink};
use std::time::Duration;

use fake_telegram::{FakeOptions, FakeTelegram, Mode};
use pam_harness::*;

const WAIT: Duration = Duration::from_secs(10);

fn fake() -> FakeTelegram {
    FakeTelegram::start(FakeOptions::default()).expect("fake")
}

fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    format!("http://127.0.0.1:{}", l.local_addr().expect("addr").port())
}

fn assert_no_secrets(run: &PamRun, code: Option<&str>) {
    for text in [&run.log, &run.stdout, &run.stderr] {
        assert!(!text.contains(SECRET_HALF), "token leaked\n{}", run.dump());
        if let Some(code) = code {
            assert!(!text.contains(code), "code leaked\n{}", run.dump());
        }
    }
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn right_code_logs_in() {
    let fake = fake();
    let env = PamEnv::with_fake(&fake, "");
    let run = env.authenticate("alice", Answers::DeliveredCode(WAIT), Some(&fake));
    assert!(run.success, "{}", run.dump());
    assert!(
        run.stdout.contains("successfully authenticated"),
        "{}",
        run.dump()
    );
    assert!(
        run.stderr
            .contains("Code sent via Telegram to ***977. Verification code:"),
        "{}",
        run.dump()
    );
    let sent = fake.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].chat_id, CHAT.to_string());
    assert!(sent[0].text.contains("alice@"), "{}", sent[0].text);
    assert!(
        sent[0].text.contains("pgw"),
        "service named: {}",
        sent[0].text
    );
    assert!(run.log.contains("pam_gateway"), "ident: {}", run.dump());
    assert!(run.log.contains("result=success"), "{}", run.dump());
    let code = fake_telegram::find_code(&sent[0].text).expect("code");
    assert_no_secrets(&run, Some(&code));
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn logins_work_the_same_without_syslog() {
    let fake = fake();
    let env = PamEnv::with_fake(&fake, "");
    env.syslog.store(false, std::sync::atomic::Ordering::SeqCst);
    let run = env.authenticate("alice", Answers::DeliveredCode(WAIT), Some(&fake));
    assert!(run.success, "{}", run.dump());
    let run = env.authenticate("alice", Answers::Lines(vec!["0".into(); 3]), Some(&fake));
    run.assert_failed_with(MAXTRIES);
    // Proof that syslog really was unavailable for these logins.
    assert!(run.log.is_empty(), "{}", run.dump());
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn syslog_facility_is_authpriv() {
    let fake = fake();
    let env = PamEnv::with_fake(&fake, "");
    let run = env.authenticate("alice", Answers::DeliveredCode(WAIT), Some(&fake));
    assert!(run.success, "{}", run.dump());
    // RFC 3164 priority: facility authpriv (10) * 8 + severity info (6) = 86.
    assert!(run.log.contains("<86>"), "{}", run.dump());
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn wrong_code_is_refused_after_all_attempts() {
    let fake = fake();
    let env = PamEnv::with_fake(&fake, "");
    let lines = vec!["000000".to_string(); 3];
    let run = env.authenticate("alice", Answers::Lines(lines), Some(&fake));
    run.assert_failed_with(MAXTRIES);
    assert!(
        run.stderr.contains("Wrong code. 2 attempts left."),
        "{}",
        run.dump()
    );
    assert!(
        run.log.contains("result=denied-max-tries"),
        "{}",
        run.dump()
    );
    assert_eq!(fake.sent().len(), 1, "one code per login");
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn wrong_then_right_code() {
    let fake = fake();
    let env = PamEnv::with_fake(&fake, "");
    let run = env.authenticate(
        "alice",
        Answers::LinesThenCode(vec!["99999999999999".into()], WAIT),
        Some(&fake),
    );
    assert!(run.success, "{}", run.dump());
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn huge_and_binary_answers_are_wrong_attempts() {
    let fake = fake();
    let env = PamEnv::with_fake(&fake, "");
    let lines = vec!["1".repeat(1 << 20), "abc\u{7f}\u{1b}[2J".into(), "".into()];
    let run = env.authenticate("alice", Answers::Lines(lines), Some(&fake));
    run.assert_failed_with(MAXTRIES);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn eof_at_the_prompt_is_a_conversation_error() {
    let fake = fake();
    let env = PamEnv::with_fake(&fake, "");
    let run = env.authenticate("alice", Answers::Eof, Some(&fake));
    run.assert_failed_with(CONV_ERR);
    assert!(
        run.log.contains("result=conversation-error"),
        "{}",
        run.dump()
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn gateway_down_secure_denies() {
    let env = PamEnv::new(&closed_port_url(), "");
    let run = env.authenticate("alice", Answers::Lines(vec!["123456".into()]), None);
    run.assert_failed_with(AUTHINFO_UNAVAIL);
    assert!(
        run.log.contains("result=denied-delivery-failed"),
        "{}",
        run.dump()
    );
    assert!(run.log.contains("connection refused"), "{}", run.dump());
    assert_no_secrets(&run, None);
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn gateway_down_safe_ignores() {
    let env = PamEnv::new(&closed_port_url(), "[policy]\nfailmode = \"safe\"\n");
    // PAM_IGNORE falls through to the next module: here pam_permit decides.
    env.set_stack(
        "auth [success=done ignore=ignore default=die] {module} config={config}\n\
         auth required pam_permit.so\n",
    );
    let run = env.authenticate("alice", Answers::Eof, None);
    assert!(run.success, "{}", run.dump());
    assert!(
        run.log.contains("result=ignored-delivery-failed"),
        "{}",
        run.dump()
    );
    // And PAM_IGNORE alone is not success: with pam_deny after it, denied.
    env.set_stack(
        "auth [success=done ignore=ignore default=die] {module} config={config}\n\
         auth required pam_deny.so\n",
    );
    let run = env.authenticate("alice", Answers::Eof, None);
    assert!(!run.success, "{}", run.dump());
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn gateway_answering_garbage_or_hanging_denies_in_time() {
    let fake = fake();
    let env = PamEnv::with_fake(&fake, "");
    for mode in [Mode::Garbage, Mode::NeverAnswer] {
        fake.set_mode(mode.clone());
        let start = std::time::Instant::now();
        let run = env.authenticate("alice", Answers::Eof, Some(&fake));
        run.assert_failed_with(AUTHINFO_UNAVAIL);
        // timeout = 2 in the test config.
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "{mode:?} took {:?}",
            start.elapsed()
        );
    }
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn unenrolled_deny_and_ignore() {
    let fake = fake();
    let env = PamEnv::with_fake(&fake, "");
    let lines = vec!["123456".to_string(); 3];
    let run = env.authenticate("mallory", Answers::Lines(lines), Some(&fake));
    run.assert_failed_with(AUTH_ERR);
    assert!(
        run.stderr.contains("Verification code:"),
        "prompted: {}",
        run.dump()
    );
    assert!(
        run.log.contains("result=denied-not-enrolled"),
        "{}",
        run.dump()
    );
    assert!(fake.sent().is_empty());

    let env = PamEnv::with_fake(&fake, "[policy]\nunenrolled = \"ignore\"\n");
    let run = env.authenticate_where_ignore_permits("mallory", Some(&fake));
    run.assert_succeeded_logging("result=ignored-not-enrolled");
    assert!(fake.sent().is_empty());
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn unknown_module_argument_denies() {
    let fake = fake();
    let env = PamEnv::with_fake(&fake, "");
    env.set_stack("auth required {module} config={config} nullok\n");
    let run = env.authenticate("alice", Answers::Eof, Some(&fake));
    run.assert_failed_with(SERVICE_ERR);
    assert!(
        run.log.contains("unknown module argument \"nullok\""),
        "{}",
        run.dump()
    );
    assert!(fake.sent().is_empty());
}

/// The module links gcc's unwinder in (module/build.rs) instead of loading
/// libgcc_s.so.1 into every process that loads it. Runs for the debug
/// module and, in `make test`, for the release one (PGW_TEST_MODULE).
/// `readelf -dW so`: the shared object's dynamic section, as text.
fn dynamic_section(so: &std::path::Path) -> String {
    let out = std::process::Command::new("readelf")
        .arg("-dW")
        .arg(so)
        .output()
        .expect("readelf (binutils, which gcc depends on)");
    assert!(out.status.success(), "readelf -d {}", so.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_module_needs_no_libgcc_s() {
    // Nor does its direct library, loaded into the same processes.
    for so in [module_path(), direct_library_path()] {
        let text = dynamic_section(&so);
        let needed: Vec<&str> = text.lines().filter(|l| l.contains("(NEEDED)")).collect();
        assert!(
            needed.iter().any(|l| l.contains("libc.so")),
            "no NEEDED entries read from {}:\n{text}",
            so.display()
        );
        assert!(
            !needed.iter().any(|l| l.contains("libgcc_s")),
            "{} still needs libgcc_s:\n{}",
            so.display(),
            needed.join("\n")
        );
    }
}

/// libpam dlcloses a module at every pam_end; a long-lived host would set
/// ours up again for every login (module/build.rs). Marked NODELETE, it is
/// loaded once per process.
#[test]
fn the_module_stays_loaded_once_loaded() {
    let so = module_path();
    let text = dynamic_section(&so);
    let flags = text
        .lines()
        .find(|l| l.contains("(FLAGS_1)"))
        .unwrap_or_else(|| panic!("no FLAGS_1 in {}:\n{text}", so.display()));
    assert!(flags.contains("NODELETE"), "{}: {flags}", so.display());
}

/// The release module's login code lies together at the start of its text
/// (module/hot-text.ld, module/build.rs): a section of its own that holds
/// the PAM entry points and most of what a login runs, not all the code.
/// A list gone stale (functions renamed since `make hot-text`) shows as a
/// section that has shrunk. Debug builds have no such section.
#[test]
fn the_release_module_keeps_its_login_code_together() {
    if std::env::var_os("PGW_TEST_MODULE").is_none() {
        eprintln!(
            "skipped: the debug module has no hot-text section (make test runs it on the release one)"
        );
        return;
    }
    let so = module_path();
    let out = std::process::Command::new("readelf")
        .args(["-SW", "--dyn-syms"])
        .arg(&so)
        .output()
        .expect("readelf (binutils, which gcc depends on)");
    assert!(out.status.success(), "readelf -S {}", so.display());
    let text = String::from_utf8_lossy(&out.stdout);
    // "[16] .text.pam_gateway_hot PROGBITS ADDR OFF SIZE ..."
    let section = |name: &str| -> Option<(u64, u64)> {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().any(|w| w == name))?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words.iter().position(|w| *w == name)?;
        let hex = |i: usize| u64::from_str_radix(words.get(at + i)?, 16).ok();
        Some((hex(2)?, hex(4)?))
    };
    let (hot_addr, hot_size) = section(".text.pam_gateway_hot").unwrap_or_else(|| {
        panic!(
            "{} has no .text.pam_gateway_hot section:\n{text}",
            so.display()
        )
    });
    let (_, rest_size) = section(".text").unwrap_or_else(|| panic!("no .text in {}", so.display()));
    // A login runs far more than 128 KiB of the module's code on every
    // target (the sizes measured: BENCHMARKS.md, session 10).
    assert!(
        hot_size >= 128 * 1024,
        "{}: only {hot_size} bytes of login code placed together: regenerate module/hot-text.ld (make hot-text)",
        so.display()
    );
    assert!(
        hot_size < rest_size,
        "{}: {hot_size} bytes placed together, {rest_size} left: the list holds more than logins run",
        so.display()
    );
    // "N: ADDR SIZE FUNC GLOBAL DEFAULT NDX pam_sm_authenticate"
    let entry = text
        .lines()
        .find(|l| l.split_whitespace().last() == Some("pam_sm_authenticate"))
        .and_then(|l| u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok())
        .unwrap_or_else(|| panic!("no pam_sm_authenticate in {}", so.display()));
    assert!(
        (hot_addr..hot_addr + hot_size).contains(&entry),
        "{}: pam_sm_authenticate at {entry:#x}, outside {hot_addr:#x}+{hot_size:#x}",
        so.display()
    );
}

/// ... and a panic still unwinds to pam-bindings' catch_unwind: PAM_ABORT,
/// and the application lives on to print it (a failed unwind would abort
/// pamtester instead). `debug_panic` exists only in debug builds of the
/// module, so this runs against the one next to the test binary.
#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn a_panic_unwinds_to_pam_abort_and_the_application_lives_on() {
    if std::env::var_os("PGW_TEST_MODULE").is_some() {
        eprintln!("skipped: PGW_TEST_MODULE is set (a release module has no debug_panic)");
        return;
    }
    let fake = fake();
    let env = PamEnv::with_fake(&fake, "");
    env.set_stack("auth required {module} config={config} debug_panic\n");
    let run = env.authenticate("alice", Answers::Eof, Some(&fake));
    run.assert_failed_with("Critical error - immediate abort");
    assert!(
        run.stderr
            .contains("debug_panic: a panic the stack line asked for"),
        "the panic happened: {}",
        run.dump()
    );
    assert!(fake.sent().is_empty());
    // Without the argument the same environment logs in.
    env.set_stack("auth required {module} config={config}\n");
    let run = env.authenticate("alice", Answers::DeliveredCode(WAIT), Some(&fake));
    assert!(run.success, "{}", run.dump());
}

/// The module sends through its direct library (src/direct.rs), loaded
/// only from beside the module's own file and only if it passes the
/// checks a config does. Without it nothing is sent and the login is
/// denied -- with `failmode = "safe"` too: a local error never skips the
/// code.
#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn the_direct_library_is_checked_before_it_is_loaded_and_its_absence_denies() {
    let fake = fake();
    let env = PamEnv::with_fake(&fake, "[policy]\nfailmode = \"safe\"\n");
    let lib = env.dir.path().join("lib");
    std::fs::create_dir(&lib).expect("mkdir");
    let module = lib.join("pam_gateway.so");
    std::fs::copy(module_path(), &module).expect("copy module");
    let direct = lib.join("pam_gateway_direct.so");
    env.set_stack(&format!(
        "auth [success=done ignore=ignore default=die] {} config={{config}}\n\
         auth required pam_permit.so\n",
        module.display()
    ));
    let denied = |why: &str| {
        let run = env.authenticate("alice", Answers::Eof, None);
        run.assert_failed_with(AUTHINFO_UNAVAIL);
        assert!(
            run.log.contains("direct library not loaded") && run.log.contains(why),
            "{why}: {}",
            run.dump()
        );
        assert!(
            run.log.contains("result=denied-delivery-failed"),
            "{}",
            run.dump()
        );
        assert_no_secrets(&run, None);
        assert!(fake.sent().is_empty(), "sent without the library");
    };
    denied("no such file");
    std::fs::copy(direct_library_path(), &direct).expect("copy library");
    std::fs::set_permissions(&direct, std::fs::Permissions::from_mode(0o664)).expect("chmod");
    denied("writable by group or others");
    std::fs::remove_file(&direct).expect("rm");
    symlink(direct_library_path(), &direct).expect("symlink");
    denied("symbolic link");
    std::fs::remove_file(&direct).expect("rm");
    std::fs::copy(direct_library_path(), &direct).expect("copy library");
    std::fs::set_permissions(&direct, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let run = env.authenticate("alice", Answers::DeliveredCode(WAIT), Some(&fake));
    assert!(run.success, "{}", run.dump());
    assert_eq!(fake.sent().len(), 1);
}

/// Each unsafe or broken file denies with PAM_SERVICE_ERR and says why.
#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn unsafe_or_broken_files_deny_with_the_reason_logged() {
    let fake = fake();
    type Breaker = fn(&PamEnv);
    let cases: Vec<(&str, Breaker, &str)> = vec![
        (
            "users file group-writable",
            |e| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&e.users, std::fs::Permissions::from_mode(0o664))
                    .expect("chmod")
            },
            "writable by group or others",
        ),
        (
            "config readable by others",
            |e| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&e.config, std::fs::Permissions::from_mode(0o644))
                    .expect("chmod")
            },
            "lets group or others read",
        ),
        (
            "config owned by another user",
            |e| std::os::unix::fs::chown(&e.config, Some(65534), None).expect("chown"),
            "owned by uid 65534",
        ),
        (
            "users file owned by another user",
            |e| std::os::unix::fs::chown(&e.users, Some(65534), None).expect("chown"),
            "owned by uid 65534",
        ),
        (
            "config is a symlink",
            |e| {
                let real = e.etc.join("real.toml");
                std::fs::rename(&e.config, &real).expect("mv");
                symlink(&real, &e.config).expect("ln");
            },
            "symbolic link",
        ),
        (
            "users file is a symlink",
            |e| {
                let real = e.etc.join("real-users.toml");
                std::fs::rename(&e.users, &real).expect("mv");
                symlink(&real, &e.users).expect("ln");
            },
            "symbolic link",
        ),
        (
            "config malformed",
            |e| {
                let text = std::fs::read_to_string(&e.config).expect("read");
                write_file(&e.config, &format!("{text}\n[code\n"), 0o600);
            },
            "gateway.toml:",
        ),
        (
            "config has an unknown key",
            |e| {
                let text = std::fs::read_to_string(&e.config).expect("read");
                write_file(&e.config, &format!("{text}\n[code]\ndigitz = 8\n"), 0o600);
            },
            "unknown field `digitz`",
        ),
        (
            "users file malformed",
            |e| write_file(&e.users, "[users.alice]\ntelegram = \"12x\"\n", 0o644),
            "users.alice.telegram",
        ),
        (
            "config directory writable by others",
            |e| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&e.etc, std::fs::Permissions::from_mode(0o777))
                    .expect("chmod")
            },
            "directory mode 0777",
        ),
        (
            "config missing",
            |e| std::fs::remove_file(&e.config).expect("rm"),
            "no such file",
        ),
    ];
    for (what, breaker, reason) in cases {
        let env = PamEnv::with_fake(
            &fake,
            "[policy]\nfailmode = \"safe\"\nunenrolled = \"ignore\"\n",
        );
        breaker(&env);
        // Even with failmode=safe and a stack that would let PAM_IGNORE through.
        let run = env.authenticate_where_ignore_permits("alice", Some(&fake));
        assert!(!run.success, "{what}: let in\n{}", run.dump());
        env.set_stack("auth required {module} config={config}\n");
        let run = env.authenticate("alice", Answers::Eof, Some(&fake));
        run.assert_failed_with(SERVICE_ERR);
        assert!(
            run.log.contains(reason),
            "{what}: expected {reason:?}\n{}",
            run.dump()
        );
        assert_no_secrets(&run, None);
    }
    assert!(
        fake.sent().is_empty(),
        "no code may be sent with a broken setup"
    );
}

#[test]
#[ignore = "needs root; run as root with --include-ignored (make test does)"]
fn setcred_succeeds() {
    let fake = fake();
    let env = PamEnv::with_fake(&fake, "");
    // pamtester runs the operations in order: authenticate, then setcred.
    env.set_stack("auth required {module} config={config}\n");
    let mut cmd = env.bwrap();
    cmd.args(pamtester_command())
        .args(["pgw", "alice", "setcred"]);
    let out = cmd.output().expect("pamtester");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
