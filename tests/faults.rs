//! Fault injection through real libpam: pamtester loads the module, which
//! talks to the loopback fake gateway while it misbehaves. Every fault ends
//! with the outcome its fail mode promises, within `timeout` + 1 s, without
//! a panic; a user with an authenticator is asked for it instead. Also: 50
//! logins of one user at once, limits and policy through real libpam.

use pgw_test_support::fake_telegram;
use pgw_test_support::pam_harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_telegram::{FakeOptions, FakeTelegram, Mode};
use pam_gateway_core::state::UserState;
use pam_gateway_core::totp::TotpKey;
use pam_harness::*;

/// `timeout = 2` in the harness config; the bound is timeout + 1 s.
const BOUND: Duration = Duration::from_secs(3);
const TOTP_B32: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const WAIT: Duration = Duration::from_secs(10);

fn fake() -> FakeTelegram {
    FakeTelegram::start(FakeOptions::default()).expect("fake")
}

fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    format!("http://127.0.0.1:{}", l.local_addr().expect("addr").port())
}

/// A stack where PAM_IGNORE falls through to pam_permit: success then
/// means "ignored", failure means the module denied.
const IGNORE_THEN_PERMIT: &str = "auth [success=done ignore=ignore default=die] {module} config={config}\n\
                                  auth required pam_permit.so\n";

fn with_totp(env: &PamEnv) {
    write_file(
        &env.users,
        &format!("[users.alice]\ntelegram = \"{CHAT}\"\ntotp_secret = \"{TOTP_B32}\"\n"),
        0o600,
    );
}

fn totp_now() -> String {
    let key = TotpKey::from_base32(TOTP_B32).expect("key");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    key.code_at(now)
}

fn assert_sane(what: &str, run: &PamRun) {
    for text in [&run.stdout, &run.stderr, &run.log] {
        assert!(!text.contains("panicked"), "{what}: panic\n{}", run.dump());
        assert!(
            !text.contains(SECRET_HALF),
            "{what}: token leaked\n{}",
            run.dump()
        );
    }
    assert!(
        !run.stderr.contains("Critical error"),
        "{what}: PAM_ABORT\n{}",
        run.dump()
    );
}

/// A fault, and whether failmode=safe may wave it through (only a service
/// that cannot be reached; a refusal such as 429 denies in both modes).
struct Fault {
    name: &'static str,
    /// Sets up the fake (None: nothing listens) and returns the API URL.
    setup: fn(&FakeTelegram) -> String,
    unreachable: bool,
}

fn faults() -> Vec<Fault> {
    vec![
        Fault {
            name: "connection refused",
            setup: |_| closed_port_url(),
            unreachable: true,
        },
        Fault {
            name: "no answer",
            setup: |f| {
                f.set_mode(Mode::NeverAnswer);
                f.url()
            },
            unreachable: true,
        },
        Fault {
            name: "answer trickles in byte by byte",
            setup: |f| {
                f.set_mode(Mode::Trickle { delay_ms: 100 });
                f.url()
            },
            unreachable: true,
        },
        Fault {
            name: "500",
            setup: |f| {
                f.set_mode(Mode::Status {
                    code: 500,
                    body: "<html>Internal Server Error</html>".into(),
                });
                f.url()
            },
            unreachable: true,
        },
        Fault {
            name: "429 with retry_after",
            setup: |f| {
                f.set_mode(Mode::RateLimited { retry_after: 30 });
                f.url()
            },
            unreachable: false,
        },
        Fault {
            name: "malformed JSON",
            setup: |f| {
                f.set_mode(Mode::Status {
                    code: 200,
                    body: "{\"ok\":true,\"result\":{\"message_id\":".into(),
                });
                f.url()
            },
            unreachable: true,
        },
        Fault {
            name: "HTML instead of JSON",
            setup: |f| {
                f.set_mode(Mode::Garbage);
                f.url()
            },
            unreachable: true,
        },
        Fault {
            name: "connection closed without an answer",
            setup: |f| {
                f.set_mode(Mode::CloseWithoutAnswer);
                f.url()
            },
            unreachable: true,
        },
        Fault {
            name: "TLS spoken to a plain port",
            setup: |f| format!("https://127.0.0.1:{}", f.port()),
            unreachable: true,
        },
    ]
}

#[test]
fn every_fault_ends_as_the_fail_mode_promises_in_time() {
    for fault in faults() {
        for failmode in ["secure", "safe"] {
            let fake = fake();
            let url = (fault.setup)(&fake);
            let env = PamEnv::new(&url, &format!("[policy]\nfailmode = \"{failmode}\"\n"));
            env.set_stack(IGNORE_THEN_PERMIT);
            let what = format!("{} / failmode={failmode}", fault.name);
            let start = Instant::now();
            let run = env.authenticate("alice", Answers::Eof, None);
            let took = start.elapsed();
            assert_sane(&what, &run);
            eprintln!("{what}: {took:?}, success={}", run.success);
            assert!(took < BOUND, "{what}: took {took:?}\n{}", run.dump());
            if failmode == "safe" && fault.unreachable {
                assert!(run.success, "{what}: expected PAM_IGNORE\n{}", run.dump());
                assert!(
                    run.log.contains("result=ignored-delivery-failed"),
                    "{what}\n{}",
                    run.dump()
                );
            } else {
                assert!(!run.success, "{what}: let in\n{}", run.dump());
                assert!(
                    run.log.contains("result=denied-delivery-failed"),
                    "{what}\n{}",
                    run.dump()
                );
            }
            // With the plain stack the code is PAM_AUTHINFO_UNAVAIL when denied.
            if !(failmode == "safe" && fault.unreachable) {
                env.set_stack("auth required {module} config={config}\n");
                let run = env.authenticate("alice", Answers::Eof, None);
                run.assert_failed_with(AUTHINFO_UNAVAIL);
            }
        }
    }
}

#[test]
fn every_fault_falls_back_to_the_authenticator() {
    for fault in faults() {
        let fake = fake();
        let url = (fault.setup)(&fake);
        let env = PamEnv::new(&url, "");
        with_totp(&env);
        let what = fault.name;
        let start = Instant::now();
        let run = env.authenticate("alice", Answers::Computed(Box::new(totp_now)), None);
        let took = start.elapsed();
        assert_sane(what, &run);
        assert!(run.success, "{what}: authenticator refused\n{}", run.dump());
        assert!(
            run.stderr
                .contains("Could not send a code via Telegram. Authenticator code:"),
            "{what}\n{}",
            run.dump()
        );
        assert!(run.log.contains("gateway=totp"), "{what}\n{}", run.dump());
        assert!(took < BOUND, "{what}: took {took:?}");
    }
}

#[test]
fn authenticator_code_is_single_use_across_processes() {
    let fake = fake();
    let env = PamEnv::with_fake(&fake, "[code]\nattempts = 1\n");
    with_totp(&env);
    let code = totp_now();
    let c1 = code.clone();
    let run = env.authenticate("alice", Answers::Computed(Box::new(move || c1)), None);
    assert!(run.success, "{}", run.dump());
    let run = env.authenticate("alice", Answers::Computed(Box::new(move || code)), None);
    run.assert_failed_with(MAXTRIES);
    assert!(run.log.contains("used a second time"), "{}", run.dump());
}

#[test]
fn users_file_with_a_totp_secret_must_be_private() {
    let fake = fake();
    let env = PamEnv::with_fake(&fake, "");
    with_totp(&env);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&env.users, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let run = env.authenticate("alice", Answers::Eof, Some(&fake));
    run.assert_failed_with(SERVICE_ERR);
    assert!(run.log.contains("chmod 600"), "{}", run.dump());
    assert!(!run.log.contains(TOTP_B32), "{}", run.dump());
}

#[test]
fn lockout_and_window_through_libpam_name_the_remote_host() {
    let fake = fake();
    let env = PamEnv::with_fake(
        &fake,
        "[code]\nattempts = 2\n[limits]\ncodes_per_window = 3\nfailures_before_lockout = 3\n",
    );
    let rhost = [("rhost", "203.0.113.9")];
    let wrong = || Answers::Lines(vec!["000000".into(), "000000".into()]);
    let run = env.authenticate_with("alice", &rhost, wrong(), Some(&fake));
    run.assert_failed_with(MAXTRIES);
    let run = env.authenticate_with("alice", &rhost, wrong(), Some(&fake));
    run.assert_failed_with(MAXTRIES);
    assert!(
        run.stderr
            .contains("Too many wrong codes: try again in 15 min."),
        "{}",
        run.dump()
    );
    assert!(run.log.contains("rhost=203.0.113.9"), "{}", run.dump());
    assert!(
        run.log.contains("result=denied-locked-out"),
        "{}",
        run.dump()
    );
    let sent = fake.sent().len();
    let run = env.authenticate_with("alice", &rhost, Answers::Eof, Some(&fake));
    run.assert_failed_with(MAXTRIES);
    assert_eq!(fake.sent().len(), sent, "nothing sent while locked out");
    assert!(run.stderr.contains("Try again in"), "{}", run.dump());
    let text = std::fs::read_to_string(env.state.join("alice.json")).expect("state");
    let state = UserState::parse(&text).expect("valid state");
    assert_eq!(state.lockouts, 1);
}

#[test]
fn policy_exempt_network_is_ignored_not_granted() {
    let fake = fake();
    let env = PamEnv::with_fake(&fake, "[policy]\nexempt_networks = [\"192.0.2.0/24\"]\n");
    env.set_stack(IGNORE_THEN_PERMIT);
    let run = env.authenticate_with(
        "alice",
        &[("rhost", "192.0.2.44")],
        Answers::Eof,
        Some(&fake),
    );
    assert!(run.success, "{}", run.dump());
    assert!(run.log.contains("result=ignored-policy"), "{}", run.dump());
    assert!(fake.sent().is_empty());
    // PAM_IGNORE alone is not success.
    env.set_stack(
        "auth [success=done ignore=ignore default=die] {module} config={config}\n\
         auth required pam_deny.so\n",
    );
    let run = env.authenticate_with(
        "alice",
        &[("rhost", "192.0.2.44")],
        Answers::Eof,
        Some(&fake),
    );
    assert!(!run.success, "{}", run.dump());
    // From elsewhere the code is required.
    env.set_stack("auth required {module} config={config}\n");
    let run = env.authenticate_with(
        "alice",
        &[("rhost", "198.51.100.1")],
        Answers::DeliveredCode(WAIT),
        Some(&fake),
    );
    assert!(run.success, "{}", run.dump());
    assert_eq!(fake.sent().len(), 1);
}

#[test]
fn corrupt_state_file_denies_and_is_kept() {
    let fake = fake();
    let env = PamEnv::with_fake(&fake, "[policy]\nfailmode = \"safe\"\n");
    std::fs::create_dir(&env.state).expect("mkdir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&env.state, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let file = env.state.join("alice.json");
    write_file(&file, "{\"version\":1,\"failures\":", 0o600);
    env.set_stack(IGNORE_THEN_PERMIT);
    let run = env.authenticate("alice", Answers::Eof, Some(&fake));
    assert!(!run.success, "{}", run.dump());
    env.set_stack("auth required {module} config={config}\n");
    let run = env.authenticate("alice", Answers::Eof, Some(&fake));
    run.assert_failed_with(SERVICE_ERR);
    assert!(run.log.contains("is corrupt"), "{}", run.dump());
    assert!(fake.sent().is_empty());
    assert_eq!(
        std::fs::read_to_string(&file).expect("read"),
        "{\"version\":1,\"failures\":"
    );
}

#[test]
fn fifty_logins_at_once_count_exactly() {
    let fake = Arc::new(fake());
    let env = Arc::new(PamEnv::with_fake(&fake, ""));
    let gate = Arc::new(std::sync::Barrier::new(50));
    let handles: Vec<_> = (0..50)
        .map(|_| {
            let (env, fake, gate) = (env.clone(), fake.clone(), gate.clone());
            std::thread::spawn(move || {
                gate.wait();
                // EOF at the prompt: no wrong answers, only sends counted.
                env.authenticate("alice", Answers::Eof, Some(&fake))
            })
        })
        .collect();
    let runs: Vec<PamRun> = handles
        .into_iter()
        .map(|h| h.join().expect("join"))
        .collect();
    for run in &runs {
        assert!(!run.success, "{}", run.dump());
        assert_sane("concurrent", run);
    }
    assert_eq!(fake.sent().len(), 5, "codes_per_window = 5");
    let limited = runs
        .iter()
        .filter(|r| r.stderr.contains("Too many codes requested: no code sent."))
        .count();
    assert_eq!(limited, 45);
    let conv_errors = runs.iter().filter(|r| r.stderr.contains(CONV_ERR)).count();
    assert_eq!(conv_errors, 5);
    let text = std::fs::read_to_string(env.state.join("alice.json")).expect("state");
    let state = UserState::parse(&text).expect("the state file is intact");
    assert_eq!(state.sent.len(), 5);
    let leftovers: Vec<_> = std::fs::read_dir(&env.state)
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
