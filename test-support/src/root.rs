//! Tests that need root say so here, once.
//!
//! Real libpam (the module trusts root-owned files only), the real clients
//! (sshd, sudo, login in mount namespaces), the command gateway (it runs
//! root-owned programs only), the CLI (it refuses to run without root) and
//! the package test need root. Each such test is marked
//!
//! ```text
//! #[test]
//! #[ignore = "needs root; run as root with --include-ignored (make test does)"]
//! ```
//!
//! with exactly that reason (`make lint` checks it), so that `cargo test`
//! as any user passes and names every test it left out ("N ignored", and
//! the reason on each one's line), and `make test`, as root, runs them all
//! (`cargo test -- --include-ignored`). Their harnesses call [`require`]:
//! run without root anyway, such a test fails at once and says why.

/// The `#[ignore]` reason of every test that needs root (attributes cannot
/// name a constant: this is the text to copy).
pub const IGNORE_REASON: &str = "needs root; run as root with --include-ignored (make test does)";

/// This process runs as root (effective uid 0).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Fails the test unless it runs as root; `what` says what needs it, e.g.
/// "real-libpam tests (the module only trusts root-owned files)".
pub fn require(what: &str) {
    assert!(
        is_root(),
        "{what} need root: such tests are #[ignore = \"{IGNORE_REASON}\"]; \
         run them as root with `cargo test -- --include-ignored` (make test does)"
    );
}
