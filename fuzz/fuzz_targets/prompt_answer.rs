//! The answers typed at the prompt, through the whole flow: whatever the
//! user types (any bytes, any length, any number of lines), the login
//! succeeds only with the sent code, the authenticator code or an unused
//! backup code, and nothing panics.
//!
//! The first byte picks the scenario: bit 0 the user has an authenticator,
//! bit 1 backup codes, bit 2 the gateway is down, bit 3 the code has
//! expired by the first answer. The rest is split into answers at '\n'.
#![no_main]

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use pam_gateway_core::backup_codes::{self, BackupHash};
use pam_gateway_core::code::{Code, CodeError, CodeSource};
use pam_gateway_core::config::Config;
use pam_gateway_core::flow::{
    Answer, Clock, ConvError, Conversation, Enrolment, Flow, LoginContext, Outcome, Route,
};
use pam_gateway_core::gateway::{DeliveryError, Gateway};
use pam_gateway_core::log::MemoryLog;
use pam_gateway_core::policy::{Groups, LookupError};
use pam_gateway_core::state::{MemoryStateStore, UserState, WallClock};
use pam_gateway_core::totp::TotpKey;

const SENT_CODE: &str = "123456";
const NOW: u64 = 1_700_000_000;
const TOTP_B32: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

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

struct Script {
    answers: Vec<Vec<u8>>,
    clock: Rc<RefCell<Duration>>,
    expire_first: bool,
    typed: Rc<RefCell<Vec<Vec<u8>>>>,
}

impl Conversation for Script {
    fn prompt_hidden(&mut self, _: &str) -> Result<Option<Answer>, ConvError> {
        if self.expire_first {
            *self.clock.borrow_mut() += Duration::from_secs(301);
            self.expire_first = false;
        }
        match self.answers.pop() {
            Some(a) => {
                self.typed.borrow_mut().push(a.clone());
                Ok(Some(Answer::new(a)))
            }
            None => Err(ConvError("out of answers".into())),
        }
    }
    fn error(&mut self, _: &str) -> Result<(), ConvError> {
        Ok(())
    }
}

struct Mono(Rc<RefCell<Duration>>);
impl Clock for Mono {
    fn now(&self) -> Duration {
        *self.0.borrow()
    }
}

struct Wall;
impl WallClock for Wall {
    fn unix_now(&self) -> u64 {
        NOW
    }
}

struct NoGroups;
impl Groups for NoGroups {
    fn user_gids(&self, _: &str) -> Result<Option<Vec<u32>>, LookupError> {
        Ok(None)
    }
    fn group_gid(&self, _: &str) -> Result<Option<u32>, LookupError> {
        Ok(None)
    }
}

struct Fixed;
impl CodeSource for Fixed {
    fn generate(&mut self, _: u32) -> Result<Code, CodeError> {
        Ok(Code::from_digits(SENT_CODE))
    }
}

struct Gw(bool);
impl Gateway for Gw {
    fn id(&self) -> &'static str {
        "telegram"
    }
    fn display_name(&self) -> &'static str {
        "Telegram"
    }
    fn send(&self, _: &str, _: &str) -> Result<(), DeliveryError> {
        if self.0 {
            Err(DeliveryError::Unreachable("down".into()))
        } else {
            Ok(())
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (has_totp, has_backup, down, expire) =
        (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0, flags & 8 != 0);
    let mut answers: Vec<Vec<u8>> = rest.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    answers.truncate(8);
    answers.reverse();
    let store = MemoryStateStore::default();
    if has_backup {
        let mut s = UserState::new();
        s.backup_codes = backup_set().1.clone();
        store.set("alice", s);
    }
    let totp = TotpKey::from_base32(TOTP_B32).expect("key");
    let clock = Rc::new(RefCell::new(Duration::ZERO));
    let typed = Rc::new(RefCell::new(Vec::new()));
    let mut conv = Script {
        answers,
        clock: clock.clone(),
        expire_first: expire,
        typed: typed.clone(),
    };
    let mut log = MemoryLog::default();
    let outcome = Flow {
        config: config(),
        conv: &mut conv,
        clock: &Mono(clock),
        codes: &mut Fixed,
        log: &mut log,
        debug: true,
        state: &store,
        wall: &Wall,
        groups: &NoGroups,
        totp: has_totp.then_some(&totp),
    }
    .authenticate(
        &LoginContext {
            user: "alice".into(),
            ..LoginContext::default()
        },
        Enrolment::Enrolled(vec![Route {
            gateway: Box::new(Gw(down)),
            recipient: "1".into(),
        }]),
    );
    let last = typed.borrow().last().cloned().unwrap_or_default();
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
