#!/bin/bash
# make lint, the shape checks: the module exports nothing but PAM's hooks,
# nothing the CLI needs reaches the crate that sshd and sudo load, neither
# the core crate nor the CLI crate has an import cycle, and the tests that
# need root are marked the one way.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
TARGET_DIR=${CARGO_TARGET_DIR:-target}

"$CARGO" build --locked -q -p pam-gateway-module
so=$TARGET_DIR/debug/libpam_gateway.so
exported=$(nm -D --defined-only "$so" | awk '{print $NF}' | sort)
others=$(grep -v '^pam_sm_' <<<"$exported" || true)
if [ -n "$others" ] || [ -z "$exported" ]; then
    echo "lint: $so must export only pam_sm_* symbols; it exports:" >&2
    echo "$exported" >&2
    exit 1
fi
echo "lint: the module exports $(wc -l <<<"$exported") symbols, all pam_sm_*"

tree=$("$CARGO" tree --locked -q -p pam-gateway-module -e normal --prefix none)
for crate in clap qrcode toml_edit; do
    if grep -q "^$crate v" <<<"$tree"; then
        echo "lint: $crate is in the module's dependency tree (cargo tree -p pam-gateway-module -i $crate)" >&2
        exit 1
    fi
done
echo "lint: no clap, qrcode or toml_edit in the module's dependencies"

# Tests that need root are #[ignore]d with one reason, the one
# test-support/src/root.rs gives: cargo test as any user passes, and
# make test (root, --include-ignored) runs them.
reason=$(sed -n 's/^pub const IGNORE_REASON: &str = \(".*"\);$/\1/p' test-support/src/root.rs)
[ -n "$reason" ] || { echo "lint: no IGNORE_REASON in test-support/src/root.rs" >&2; exit 1; }
odd=$(grep -rnE '^\s*#\[ignore' --include='*.rs' tests cli/tests daemon/tests daemon/src module src test-support/src examples \
    | grep -vF "#[ignore = $reason]" || true)
if [ -n "$odd" ]; then
    echo "lint: an #[ignore] other than #[ignore = $reason] (test-support/src/root.rs):" >&2
    echo "$odd" >&2
    exit 1
fi
echo "lint: $(grep -rF "#[ignore = $reason]" --include='*.rs' tests cli/tests daemon/tests | wc -l) tests need root, each #[ignore]d the one way"

# The import graphs of src/ and cli/src/ (module → modules it imports):
# `cargo test --test import_graph -- --nocapture` prints them.
if ! cycles=$("$CARGO" test --locked -q -p pam-gateway-core --test import_graph 2>&1); then
    echo "$cycles" >&2
    echo "lint: an import cycle (above); move what both modules need one layer down" >&2
    exit 1
fi
echo "lint: no import cycles in the core crate or the CLI crate"
