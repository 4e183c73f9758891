#!/bin/bash
# make test-arm: the aarch64 build authenticating through Debian's arm64
# libpam under qemu-user, with the loopback Telegram fake on the x86_64 side.
#   1. make cross for aarch64 (module, CLI, arm64 .deb);
#   2. the real-libpam tests (tests/pam_real.rs) with pamtester:arm64 run by
#      qemu-aarch64-static, loading the aarch64 module;
#   3. the package test (tests/deb_package.rs) on the arm64 .deb: dpkg
#      installs it in an overlay namespace and pamtester:arm64 logs in through
#      common-auth with arm64 pam_unix, then upgrade, remove, purge.
# Needs root, like make test; scripts/deps.sh test-arm installs the packages.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
CARGO=${CARGO:-cargo}

T=aarch64-unknown-linux-gnu
OUT=$PWD/target/cross/$T/release
ARM=$PWD/target/arm
t0=$(date +%s)

scripts/cross.sh "$T"
t1=$(date +%s)

# pamtester:arm64 unpacked, not installed: installing it would replace the
# host's pamtester (the package is not Multi-Arch: same).
PAMTESTER=$ARM/root/usr/bin/pamtester
if [ ! -x "$PAMTESTER" ]; then
    rm -rf "$ARM" && mkdir -p "$ARM/root"
    (cd "$ARM" && apt-get download -qq pamtester:arm64)
    dpkg-deb -x "$ARM"/pamtester_*_arm64.deb "$ARM/root"
fi
QEMU=$(command -v qemu-aarch64-static || command -v qemu-aarch64 || true)
[ -n "$QEMU" ] || { echo "test-arm: qemu-aarch64-static missing: apt-get install qemu-user-static" >&2; exit 1; }

# What runs must be what we mean to test.
for f in "$OUT/libpam_gateway.so" "$OUT/pam-gateway" "$PAMTESTER"; do
    LC_ALL=C readelf -h "$f" | grep -q 'Machine:.*AArch64' ||
        { echo "test-arm: $f is not an aarch64 binary" >&2; exit 1; }
done
# The CLI starts on aarch64 (no SIGILL/SIGSEGV): exit codes below 128.
rc=0; "$QEMU" "$OUT/pam-gateway" --help >/dev/null 2>&1 || rc=$?
[ "$rc" -lt 128 ] || { echo "test-arm: pam-gateway died under qemu (status $rc)" >&2; exit 1; }
echo "pam-gateway (aarch64) under qemu: exit status $rc"

export PGW_TEST_PAMTESTER="$QEMU $PAMTESTER"
echo "== real-libpam tests: aarch64 module, arm64 libpam and pamtester, qemu-user"
PGW_TEST_MODULE=$OUT/libpam_gateway.so "$CARGO" test --locked --test pam_real
t2=$(date +%s)
echo "== package test: the arm64 .deb under dpkg, logins through arm64 pam_unix + pam_gateway"
PGW_TEST_DEB_ARCH=arm64 PGW_TEST_DEB_BIN_DIR=$OUT "$CARGO" test --locked --test deb_package
t3=$(date +%s)
echo "test-arm: cross build $((t1 - t0)) s, libpam tests $((t2 - t1)) s, package test $((t3 - t2)) s"
