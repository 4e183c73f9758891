//! The answers typed at the prompt, through the whole flow: whatever the
//! user types (any bytes, any length, any number of lines), the login
//! succeeds only with the sent code, the authenticator code or an unused
//! backup code, and nothing panics.
//!
//! The first byte picks the scenario: bit 0 the user has an authenticator,
//! bit 1 backup codes, bit 2 the gateway is down, bit 3 the code has
//! expired by the first answer. The rest is split into answers at '\n'.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use pam_gateway_core::backup_codes::{self, BackupHash};
use pam_gateway_core::config::Config;
use pam_gateway_core::flow::{Enrolment, Flow, LoginContext, Outcome};
use pam_gateway_core::gateway::DeliveryError;
use pam_gateway_core::log::MemoryLog;
use pam_gateway_core::state::{MemoryStateStore, UserState};
use pam_gateway_core::totp::TotpKey;
use pgw_test_support::flow_fakes::{
    FakeClock, FakeWall, FixedCodes, NoGroups, Outbox, START, ScriptedConv, Step, TOTP_B32,
};

const SENT_CODE: &str = "123456";
const NOW: u64 = START;

fn backup_set() -> &'static (Vec<String>, Vec<BackupHash>) {
    static SET: OnceLock<(Vec<String>, Vec<BackupHash>)> = OnceLock::new();
    SET.get_or_init(|| {
        let (codes, hashes) = backup_codes::generate(3, 1).expect("codes");
        (codes.iter().map(|c| c.expose().to_string()).collect(), hashes)
    })
}

fn config() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(|| {
        Config::parse(
            Path::new("/etc/pam_gateway/gateway.toml"),
            "[telegram]\nbot_token = \"123456789:AAEhBP0av28JzWyPaVHcA1xZl5n7gK9wQ3c\"\n\
             [code]\nattempts = 5\n[limits]\nfailures_before_lockout = 3\n",
        )
        .expect("config")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (has_totp, has_backup, down, expire) =
        (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0, flags & 8 != 0);
    let mut answers: Vec<Vec<u8>> = rest.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    answers.truncate(8);
    let store = MemoryStateStore::default();
    if has_backup {
        let mut s = UserState::new();
        s.backup_codes = backup_set().1.clone();
        store.set("alice", s);
    }
    let totp = TotpKey::from_base32(TOTP_B32).expect("key");
    // The wall clock stays at NOW; the code's clock may jump past its ttl
    // before the first answer.
    let (clock, wall, outbox) = (FakeClock::default(), FakeWall::fixed(), Outbox::default());
    if down {
        outbox.fail_delivery(DeliveryError::Unreachable("down".into()));
    }
    let steps = answers
        .into_iter()
        .enumerate()
        .map(|(i, a)| match i {
            0 if expire => Step::TypeBytesAfter(Duration::from_secs(301), a),
            _ => Step::TypeBytes(a),
        })
        .collect();
    // Whatever the fuzzer typed: answers while they last, then hang up.
    let mut conv = ScriptedConv::new(steps, &clock, &wall, &outbox).until_hang_up();
    let mut log = MemoryLog::default();
    let outcome = Flow {
        config: config(),
        conv: &mut conv,
        clock: &clock,
        codes: &mut FixedCodes(SENT_CODE),
        log: &mut log,
        debug: true,
        state: &store,
        wall: &wall,
        groups: &NoGroups,
        totp: has_totp.then_some(&totp),
        approver: None,
    }
    .authenticate(
        &LoginContext {
            user: "alice".into(),
            ..LoginContext::default()
        },
        Enrolment::Enrolled(vec![outbox.route("1")]),
    );
    let typed = conv.finish().typed;
    let last = typed.last().cloned().unwrap_or_default();
    let last = last.trim_ascii();
    match outcome {
        Outcome::Success { gateway: "telegram" } => {
            assert!(!down && !expire && last == SENT_CODE.as_bytes());
        }
        Outcome::Success { gateway: "totp" } => {
            assert!(has_totp);
            let ok = (-1i64..=1).any(|d| {
                totp.code_at((NOW as i64 + d * 30) as u64).as_bytes() == last
            });
            assert!(ok, "accepted a wrong authenticator code");
        }
        Outcome::Success { gateway: "backup-code" } => {
            assert!(has_backup);
            let typed = backup_codes::normalize(last).expect("backup shape");
            let ok = backup_set().0.iter().any(|c| {
                backup_codes::normalize(c.as_bytes()).expect("shape") == typed
            });
            assert!(ok, "accepted a wrong backup code");
            let left = store.get("alice").expect("state").backup_codes.len();
            assert_eq!(left, 2, "a used backup code must be gone");
        }
        Outcome::Success { gateway } => panic!("success via {gateway}"),
        _ => {}
    }
    let text = log.text();
    assert!(!text.contains(SENT_CODE), "code in the log");
    assert!(!text.contains(TOTP_B32), "secret in the log");
});
