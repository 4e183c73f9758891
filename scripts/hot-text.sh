#!/bin/bash
# make hot-text: regenerate module/hot-text.ld, the list of the module's
# functions that logins run, which the release link places together at the
# start of the module's code (module/build.rs).
#
# Why: a login touches about a third of the module's code, spread over the
# whole file by default. Each first touch of a 64 KB window of it is a page
# fault in the PAM process (sshd's monitor, sudo, su), and every page it
# maps is resident memory. Placed together, that code spans far fewer such
# windows (figures: BENCHMARKS.md, "Session 10").
#
# How: a release build of the module with its symbols (its own target dir,
# so target/release is left alone) is run through every case of `make bench`
# (scripts/bench.sh: real pamtester, real libpam, the loopback fakes,
# pam-gatewayd, slapd) once, under valgrind's callgrind. Every function of
# the module that ran, in any case, goes into the list, most instructions
# first. Needs root and what `make bench` needs and builds; runs in about
# two minutes.
#
# The list names functions by their mangled symbol names (v0 mangling,
# .cargo/config.toml: a generic function's instances differ in their
# names, so only the instances a login runs are listed) with what changes
# between builds replaced by a wildcard: the crates' disambiguators (Cs..._,
# hashes of the crate's version and build settings), the back-references
# into the name (B..._: offsets, which move when a disambiguator's length
# does) and LLVM's numeric suffixes. So it holds across rebuilds and
# targets (the same file serves the aarch64 and armv7 links); a renamed or
# new function is left where the linker puts it until the next
# regeneration. tests/pam_real.rs checks that the shipped module has its
# section of login code.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "make hot-text needs root (it runs scripts/bench.sh). Run: sudo make hot-text" >&2
    exit 1
fi
command -v valgrind >/dev/null || { echo "hot-text: valgrind is missing (apt-get install valgrind)" >&2; exit 1; }

HOT_TARGET=${HOT_TEXT_TARGET_DIR:-${CARGO_TARGET_DIR:-target}/hot-text}
OUT=module/hot-text.ld

# The module with its symbols: the release profile as it is (a profile
# setting changes the crates' disambiguators, which are in the names), and
# -C strip=none for the module's own link only. Without the current list:
# code in a section other than .text is "???" to valgrind, not the module's.
export PAM_GATEWAY_NO_HOT_TEXT=1
CARGO_TARGET_DIR=$HOT_TARGET cargo build --release --locked -p pam-gateway-direct
CARGO_TARGET_DIR=$HOT_TARGET cargo rustc --release --locked -p pam-gateway-module -- -C strip=none
cp "$HOT_TARGET/release/libpam_gateway.so" "$HOT_TARGET/release/pam_gateway.so"
cp "$HOT_TARGET/release/libpam_gateway_direct.so" "$HOT_TARGET/release/pam_gateway_direct.so"
nm "$HOT_TARGET/release/pam_gateway.so" | grep pam_sm_authenticate > /dev/null ||
    { echo "hot-text: $HOT_TARGET/release/pam_gateway.so has no symbols" >&2; exit 1; }

PROFILES=$(mktemp -d /tmp/pam_gateway-hot-text.XXXXXX)
trap 'rm -rf "$PROFILES"' EXIT
chmod 755 "$PROFILES"
BENCH_MODULE=$HOT_TARGET/release/pam_gateway.so BENCH_STRIP=true \
    BENCH_RUNS=1 BENCH_WARMUP=0 BENCH_CYCLES=0 BENCH_IDLE=0 BENCH_FOCUS_RUNS=0 \
    BENCH_PAMTESTER="valgrind --tool=callgrind --demangle=no --dump-instr=no --callgrind-out-file=$PROFILES/cg.%p pamtester" \
    scripts/bench.sh > "$PROFILES/bench.log" 2>&1 || {
        echo "hot-text: the bench run failed:" >&2
        tail -n 30 "$PROFILES/bench.log" >&2
        exit 1
    }

# callgrind's format: "ob=(N) file" and "fn=(N) name" name an object and a
# function once, then "ob=(N)" / "fn=(N)" refer to them (cob/cfn/cfi in
# call records share the numbering); a cost line is "LINE COST"; the line
# after "calls=" is the callee's inclusive cost, not this function's own;
# "cmd:" is pamtester's command line, with the PAM service of the case.
# Functions a login via pam-gatewayd runs come first (the bench-gw-daemon
# services), then the rest: the via-daemon login's code is the most
# compact, and the direct cases' own code follows it.
# shellcheck disable=SC2016
awk '
    function name(kind, spec,    id, rest) {
        id = spec; sub(/\).*/, "", id); sub(/^\(/, "", id)
        rest = spec; sub(/^\([0-9]+\) ?/, "", rest)
        if (rest != "") names[kind, id] = rest
        return names[kind, id]
    }
    FNR == 1 { delete names; ob = ""; fn = ""; skip = 0; daemon = 0 }
    /^cmd:/ { daemon = ($0 ~ /bench-gw[a-z-]*daemon /); next }
    /^ob=/  { ob = name("ob", substr($0, 4)); next }
    /^cob=/ { name("ob", substr($0, 5)); next }
    /^fn=/  { fn = name("fn", substr($0, 4)); next }
    /^cfn=/ { name("fn", substr($0, 5)); next }
    /^calls=/ { skip = 1; next }
    /^[0-9+*-]/ {
        if (skip) { skip = 0; next }
        if (ob ~ /\/pam_gateway\.so$/ && fn !~ /^0x/ && $2 > 0) {
            cost[fn] += $2
            if (daemon) via[fn] = 1
        }
    }
    END { for (f in cost) print ((f in via) ? 0 : 1), cost[f], f }
' "$PROFILES"/cg.* | sort -k1,1n -k2,2nr -k3 | awk '
    {
        p = $3
        gsub(/Cs[0-9A-Za-z]+_/, "Cs*_", p)
        sub(/\.[0-9]+$/, "", p)
        print p "*"
    }
' | sed -E ':a; s/([^0-9])B[0-9A-Za-z]*_/\1B*_/; ta' | awk '!seen[$0]++' > "$PROFILES/patterns"

count=$(wc -l < "$PROFILES/patterns")
[ "$count" -gt 50 ] || { echo "hot-text: only $count functions found; the bench log:" >&2; tail -n 30 "$PROFILES/bench.log" >&2; exit 1; }
{
    echo "/* The module's login code, placed together at the start of its text."
    echo "   Generated by scripts/hot-text.sh (make hot-text) from callgrind runs of"
    echo "   every case of make bench; do not edit. $count functions. */"
    echo "SECTIONS"
    echo "{"
    echo "  .text.pam_gateway_hot :"
    echo "  {"
    # What ld.so runs at every load (frame_dummy and friends, from the C
    # runtime's crtbeginS.o) beside .init, before the list.
    echo "    *crtbeginS.o(.text .text.*)"
    while read -r p; do
        echo "    *(.text.$p .text.unlikely.$p)"
    done < "$PROFILES/patterns"
    echo "  }"
    echo "}"
    echo "INSERT BEFORE .text;"
} > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "hot-text: $count functions written to $OUT"
