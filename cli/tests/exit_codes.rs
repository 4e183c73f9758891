//! Library errors map to the exit statuses `--help` documents: a failure
//! of this machine (no randomness, a failed account lookup) is "not done"
//! (1), never a usage error (2).

use pam_gateway_cli::{CliError, Exit};
use pam_gateway_core::backup_codes::IssueError;
use pam_gateway_core::code::CodeError;
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
fn backup_codes_state_errors_keep_their_statuses() {
    let e = CliError::from(IssueError::State(StateError::BadUser("no name".into())));
    assert_eq!((e.exit, e.message.as_str()), (Exit::Usage, "no name"));
    let e = CliError::from(IssueError::State(StateError::Corrupt {
        path: "/var/lib/pam_gateway/alice.json".into(),
        message: "bad".into(),
    }));
    assert_eq!(e.exit, Exit::Files);
    // A store that did not run the update is no fault of the admin's.
    let e = CliError::from(StateError::Skipped);
    assert_eq!(e.exit, Exit::Failed);
}
