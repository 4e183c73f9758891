#!/bin/bash
# make lint, the shape checks: the module exports nothing but PAM's hooks
# and links no network client (the direct library has them),
# nothing the CLI needs reaches the crate that sshd and sudo load, neither
# the core crate nor the CLI crate has an import cycle, and the tests that
# need root are marked the one way.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
TARGET_DIR=${CARGO_TARGET_DIR:-target}

"$CARGO" build --locked -q -p pam-gateway-module -p pam-gateway-direct
so=$TARGET_DIR/debug/libpam_gateway.so
exported=$(nm -D --defined-only "$so" | awk '{print $NF}' | sort)
others=$(grep -v '^pam_sm_' <<<"$exported" || true)
if [ -n "$others" ] || [ -z "$exported" ]; then
    echo "lint: $so must export only pam_sm_* symbols; it exports:" >&2
    echo "$exported" >&2
    exit 1
fi
echo "lint: the module exports $(wc -l <<<"$exported") symbols, all pam_sm_*"
direct=$TARGET_DIR/debug/libpam_gateway_direct.so
exported=$(nm -D --defined-only "$direct" | awk '{print $NF}' | sort | tr '\n' ' ')
if [ "$exported" != "pam_gateway_direct_free_v1 pam_gateway_direct_v1 " ]; then
    echo "lint: $direct must export only pam_gateway_direct_v1 and pam_gateway_direct_free_v1; it exports: $exported" >&2
    exit 1
fi
echo "lint: the direct library exports its two entry points and nothing else"

# What a login sends itself lives in the direct library (src/direct.rs):
# the module links no HTTP, TLS or LDAP client, nor the command gateway's
# process code, and loads them only when it must.
linked=$(nm -C "$so" | grep -oE '(\b|<)(reqwest::(blocking|async_impl|connect)|hyper::(client|proto)|hyper_util::|h2::|rustls::|webpki::|ring::|tokio::|ldap3::(conn|ldap)|pam_gateway_core::network::Direct)' | sort -u | tr '\n' ' ' || true)
if [ -n "$linked" ]; then
    echo "lint: $so links what belongs in the direct library: $linked" >&2
    echo "      (something the module calls reaches network::Direct or a gateway's client)" >&2
    exit 1
fi
echo "lint: the module links no HTTP, TLS or LDAP client"

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
