#!/bin/bash
# make test-arm: the Raspberry Pi builds authenticating through Debian's ARM
# libpam under qemu-user, with the loopback Telegram fake on the x86_64 side.
#   scripts/test-arm.sh [TRIPLE...]
#     aarch64-unknown-linux-gnu       arm64, qemu-aarch64-static
#     armv7-unknown-linux-gnueabihf   armhf, qemu-arm-static
# For each target:
#   1. make cross for it (module, CLI, .deb);
#   2. the real-libpam tests (tests/pam_real.rs) with that architecture's
#      pamtester run by qemu-user, loading the ARM module into ARM libpam;
#   3. the package test (tests/deb_package.rs) on its .deb: dpkg installs it
#      in an overlay namespace and the ARM pamtester logs in through
#      common-auth with ARM pam_unix, then upgrade, remove, purge.
# Needs root, like make test; scripts/deps.sh test-arm installs the packages.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
CARGO=${CARGO:-cargo}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)

summary=()
for T in "${targets[@]}"; do
    case "$T" in
        aarch64-unknown-linux-gnu) arch=arm64 qemu=qemu-aarch64 machine='AArch64' ;;
        armv7-unknown-linux-gnueabihf) arch=armhf qemu=qemu-arm machine='ARM$' ;;
        *) echo "test-arm: unsupported target $T" >&2; exit 2 ;;
    esac
    echo "=== $T (Debian $arch)"
    OUT=$PWD/target/cross/$T/release
    ARM=$PWD/target/arm/$arch
    t0=$(date +%s)

    scripts/cross.sh "$T"
    t1=$(date +%s)

    # pamtester:ARCH unpacked, not installed: installing it would replace the
    # host's pamtester (the package is not Multi-Arch: same).
    PAMTESTER=$ARM/root/usr/bin/pamtester
    if [ ! -x "$PAMTESTER" ]; then
        rm -rf "$ARM" && mkdir -p "$ARM/root"
        (cd "$ARM" && apt-get download -qq "pamtester:$arch")
        dpkg-deb -x "$ARM"/pamtester_*_"$arch".deb "$ARM/root"
    fi
    QEMU=$(command -v "$qemu-static" || command -v "$qemu" || true)
    [ -n "$QEMU" ] || { echo "test-arm: $qemu-static missing: apt-get install qemu-user-static" >&2; exit 1; }

    # What runs must be what we mean to test.
    for f in "$OUT/pam_gateway.so" "$OUT/pam_gateway_direct.so" "$OUT/pam-gateway" "$PAMTESTER"; do
        LC_ALL=C readelf -h "$f" | grep -Eq "Machine: +$machine" ||
            { echo "test-arm: $f is not an $arch binary" >&2; exit 1; }
    done
    # The CLI starts under qemu (no SIGILL/SIGSEGV): exit codes below 128.
    rc=0; "$QEMU" "$OUT/pam-gateway" --help >/dev/null 2>&1 || rc=$?
    [ "$rc" -lt 128 ] || { echo "test-arm: pam-gateway died under qemu (status $rc)" >&2; exit 1; }
    echo "pam-gateway ($T) under qemu: exit status $rc"

    export PGW_TEST_PAMTESTER="$QEMU $PAMTESTER"
    echo "== real-libpam tests: $T module, $arch libpam and pamtester, qemu-user"
    PGW_TEST_MODULE=$OUT/pam_gateway.so "$CARGO" test --locked --test pam_real -- --include-ignored
    t2=$(date +%s)
    echo "== package test: the $arch .deb under dpkg, logins through $arch pam_unix + pam_gateway"
    PGW_TEST_DEB_ARCH=$arch PGW_TEST_DEB_BIN_DIR=$OUT "$CARGO" test --locked --test deb_package -- --include-ignored
    t3=$(date +%s)
    unset PGW_TEST_PAMTESTER
    summary+=("test-arm $T: cross build $((t1 - t0)) s, libpam tests $((t2 - t1)) s, package test $((t3 - t2)) s")
done
printf '%s\n' "${summary[@]}"
