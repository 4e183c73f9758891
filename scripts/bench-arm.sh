#!/bin/bash
# make bench-arm: `make bench` for the aarch64 build of `make cross`, under
# qemu-user on this x86_64 machine. Relative figures only: qemu translates
# every code page on first use, which weighs on a module of a few MB far
# more than real hardware does (BENCHMARKS.md). The fake Bot API and the measuring program run
# natively; pamtester, pam_google_authenticator, libpam and pam_gateway are
# aarch64. The arm64 pamtester and pam_google_authenticator are unpacked
# into target/arm-bench, not installed (they would replace the host's).
# Root, like make bench. BENCH_RUNS (default 40) and BENCH_CYCLES (default
# 1000) as there.
set -euo pipefail
cd "$(dirname "$0")/.."

T=aarch64-unknown-linux-gnu
OUT=$PWD/target/cross/$T/release
ARM=$PWD/target/arm-bench

# The module as `make cross` builds it, and the long-lived host for aarch64.
CROSS_EXTRA_ARGS="--example pam_loop" scripts/cross.sh "$T"

if [ ! -x "$ARM/root/usr/bin/pamtester" ] ||
    [ ! -f "$ARM/root/lib/aarch64-linux-gnu/security/pam_google_authenticator.so" ]; then
    rm -rf "$ARM" && mkdir -p "$ARM/root"
    (cd "$ARM" && apt-get download -qq pamtester:arm64 libpam-google-authenticator:arm64)
    for deb in "$ARM"/*.deb; do dpkg-deb -x "$deb" "$ARM/root"; done
fi
QEMU=$(command -v qemu-aarch64-static || command -v qemu-aarch64 || true)
[ -n "$QEMU" ] || { echo "bench-arm: qemu-aarch64-static missing: apt-get install qemu-user-static" >&2; exit 1; }
GA=$ARM/root/lib/aarch64-linux-gnu/security/pam_google_authenticator.so
for f in "$OUT/pam_gateway.so" "$OUT/pam_gateway_direct.so" "$OUT/examples/pam_loop" "$ARM/root/usr/bin/pamtester" "$GA"; do
    LC_ALL=C readelf -h "$f" | grep -q 'Machine:.*AArch64' ||
        { echo "bench-arm: $f is not an aarch64 binary" >&2; exit 1; }
done

BENCH_MODULE=$OUT/pam_gateway.so \
BENCH_PAMTESTER="$QEMU $ARM/root/usr/bin/pamtester" \
BENCH_LOOP="$QEMU $OUT/examples/pam_loop" \
BENCH_SECURITY_DIR=/lib/aarch64-linux-gnu/security \
BENCH_GA_MODULE=$GA \
BENCH_STRIP=aarch64-linux-gnu-strip \
BENCH_LABEL="aarch64 under qemu-user" \
BENCH_RUNS=${BENCH_RUNS:-40} BENCH_CYCLES=${BENCH_CYCLES:-1000} \
    scripts/bench.sh
