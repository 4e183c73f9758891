//! Errors map to the exit statuses `--help` documents ([`EXIT_CODES`]): a
//! failure of this machine (no randomness, a failed account lookup, no
//! resources to reach a gateway, standard input that cannot be read) is
//! "not done" (1), never a usage (2) or gateway (4) error.

use super::configure::input_error;
use super::explain;
use super::terminal::InputError;
use super::{CliError, EXIT_CODES, Exit};
use pam_gateway_core::backup_codes::IssueError;
use pam_gateway_core::code::CodeError;
use pam_gateway_core::gateway::telegram::TelegramError;
use pam_gateway_core::gateway::{DeliveryError, GatewayKind};
use pam_gateway_core::random::RandomError;
use pam_gateway_core::state::StateError;

#[test]
fn no_randomness_is_not_done_and_says_so() {
    for e in [
        CliError::from(RandomError::Skewed),
        CliError::from(CodeError::Random(RandomError::Skewed)),
        CliError::from(IssueError::Random(RandomError::Skewed)),
    ] {
        assert_eq!(e.exit, Exit::Failed, "{e}");
        assert_eq!(
            e.message,
            "OS random source returned too many out-of-range values"
        );
    }
}

#[test]
fn state_errors_keep_their_statuses_except_a_store_that_did_not_run() {
    let e = CliError::from(IssueError::State(StateError::BadUser("no name".into())));
    assert_eq!((e.exit, e.message.as_str()), (Exit::Usage, "no name"));
    let e = CliError::from(IssueError::State(StateError::Corrupt {
        path: "/var/lib/pam_gateway/alice.json".into(),
        message: "bad".into(),
    }));
    assert_eq!(e.exit, Exit::Files);
    let e = CliError::from(StateError::Skipped);
    assert_eq!(e.exit, Exit::Failed);
}

#[test]
fn a_local_failure_to_send_is_not_the_gateways_fault() {
    let local = DeliveryError::Local("Too many open files".into());
    let e = explain::delivery_failure(&local, GatewayKind::Sms, "SMS", "alice");
    assert_eq!(e.exit, Exit::Failed, "{e}");
    assert!(e.message.contains("this machine could not send"), "{e}");
    let e = explain::gateway(&TelegramError::Local("cannot start a thread".into()));
    assert_eq!(e.exit, Exit::Failed, "{e}");
    // The service itself: still the gateway status.
    let down = DeliveryError::Unreachable("timed out".into());
    let e = explain::delivery_failure(&down, GatewayKind::Sms, "SMS", "alice");
    assert_eq!(e.exit, Exit::Gateway);
    assert_eq!(
        explain::gateway(&TelegramError::Timeout).exit,
        Exit::Gateway
    );
}

#[test]
fn unreadable_input_is_not_done_bad_input_is_usage() {
    let e = input_error(InputError::Read(std::io::Error::from_raw_os_error(5)));
    assert_eq!(e.exit, Exit::Failed);
    assert!(e.message.starts_with("cannot read standard input: "), "{e}");
    assert_eq!(input_error(InputError::TooLong).exit, Exit::Usage);
    assert_eq!(input_error(InputError::NotUtf8).exit, Exit::Usage);
}

#[test]
fn help_documents_local_failures_as_not_done() {
    let one = EXIT_CODES
        .split("\n  2 ")
        .next()
        .and_then(|t| t.split("\n  1 ").nth(1))
        .expect("status 1 in EXIT_CODES");
    let one = one.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(one.contains("this machine failed"), "{one}");
}
