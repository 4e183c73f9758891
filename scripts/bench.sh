#!/bin/bash
# make bench: what one login costs, pam_gateway next to pam_permit (the
# floor) and pam_google_authenticator (the usual local second factor).
# Prepares a private world -- PAM service files, configs, a TOTP secret, the
# loopback fake Bot API over http and https (test CA) -- and hands over to
# examples/pam_bench, which times pamtester runs inside a private mount
# namespace and then runs the long-lived host loop (examples/pam_loop).
# Nothing on the host changes; nothing leaves loopback. Needs root (the
# module trusts only root-owned files; bwrap binds over /etc/pam.d).
#
# Knobs (environment):
#   BENCH_RUNS=100 BENCH_WARMUP=5 BENCH_CYCLES=10000   sizes of the runs
#   BENCH_MODULE=path/pam_gateway.so        module to measure (default: the
#                                           release module of this tree); its
#                                           path/pam_gateway_direct.so with it
#   BENCH_PAMTESTER="CMD ARGS"              pamtester, with any wrapper
#   BENCH_LOOP="CMD ARGS"                   pam_loop built for the same target
#   BENCH_SECURITY_DIR=DIR                  where that target's pam_permit.so and
#                                           pam_deny.so are
#   BENCH_GA_MODULE=path.so                 its pam_google_authenticator.so (default:
#                                           in BENCH_SECURITY_DIR)
#   BENCH_STRIP=strip                       strip for that target
#   BENCH_LABEL=text                        heading for the report
#   BENCH_RTT_MS=50                         round-trip time the delaying proxy adds
#                                           in front of the TLS fake (the
#                                           pam-gatewayd comparison)
#   BENCH_IDLE=60                           seconds pam-gatewayd is watched idle
#                                           (long polling) at the end; 0: not
#   BENCH_FOCUS_RUNS=1000                   rounds of pam_permit, GA and the cases
#                                           through pam-gatewayd alone, after the
#                                           main table (issue 14's CPU target); 0: none
#   BENCH_FOCUS_TYPING_MS=0                 in those rounds, also GA and the daemon
#                                           cases with the answer typed this long
#                                           after it is known
#   BENCH_FOCUS_GAP_MS=0                    idle time before each login of those
#                                           rounds (a server that logs in rarely)
#   BENCH_VARIANTS="name=path.so ..."       more builds of the module to time
#                                           next to it (http fake, state on
#                                           tmpfs; also in the loop), for experiments;
#                                           name=path.so@daemon: the login run by
#                                           pam-gatewayd (socket=); @approvals: the
#                                           daemon sends only, for builds before
#                                           socket= (neither in the loop)
# Another architecture under qemu-user: `make bench-arm` (scripts/bench-arm.sh)
# sets these for the aarch64 build of `make cross`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "make bench needs root: PAM only trusts root-owned config files, and the"
    echo "benchmark binds a private /etc/pam.d in a mount namespace. Run: sudo make bench"
    exit 1
fi

RUNS=${BENCH_RUNS:-100}
WARMUP=${BENCH_WARMUP:-5}
CYCLES=${BENCH_CYCLES:-10000}
REL=${CARGO_TARGET_DIR:-target}/release
MODULE=${BENCH_MODULE:-$REL/pam_gateway.so}
PAMTESTER=${BENCH_PAMTESTER:-pamtester}
LOOP=${BENCH_LOOP:-$PWD/$REL/examples/pam_loop}
SECURITY=${BENCH_SECURITY_DIR:-$(scripts/pam-module-dir.sh)}
GA_MODULE=${BENCH_GA_MODULE:-$SECURITY/pam_google_authenticator.so}
STRIP=${BENCH_STRIP:-strip}
LABEL=${BENCH_LABEL:-$(uname -m)}
RTT_MS=${BENCH_RTT_MS:-50}
IDLE=${BENCH_IDLE:-60}
FOCUS_RUNS=${BENCH_FOCUS_RUNS:-1000}
DAEMON=$REL/pam-gatewayd
TLS=$PWD/tests/data/tls
CHAT=123456977
TOKEN=123456789:AAEhBP0av28JzWyPaVHcA1xZl5n7gK9wQ3c

# The module's direct library (src/direct.rs): its file name with _direct
# before .so.
direct_of() { printf '%s_direct.so' "${1%.so}"; }
for f in "$MODULE" "$(direct_of "$MODULE")" "$SECURITY/pam_permit.so" "$SECURITY/pam_deny.so" "$GA_MODULE"; do
    [ -f "$f" ] || { echo "bench: $f is missing" >&2; exit 1; }
done

DIR=$(mktemp -d /tmp/pam_gateway-bench.XXXXXX)
chmod 700 "$DIR"
PIDS=()
SLAPD_PID=
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    # bench_slapd stops its slapd and removes its directory once this file
    # is gone (a kill would leave slapd running).
    rm -f "$DIR/slapd-run"
    [ -z "$SLAPD_PID" ] || wait "$SLAPD_PID" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT
umask 077
mkdir -m 700 "$DIR/etc" "$DIR/pam.d"

# The module as it would ship: a stripped copy (the release profile strips
# already; this makes sure, and is the file whose size is reported).
# Next to it, its direct library.
cp "$MODULE" "$DIR/pam_gateway.so"
cp "$(direct_of "$MODULE")" "$DIR/pam_gateway_direct.so"
for f in "$DIR/pam_gateway.so" "$DIR/pam_gateway_direct.so"; do
    if ! "$STRIP" --strip-all "$f" 2>/dev/null; then
        echo "bench: $STRIP cannot strip $f; measuring it as built" >&2
    fi
    chmod 644 "$f"
done

# pam_google_authenticator: a fresh TOTP secret in a file of our own.
SECRET=$(head -c 20 /dev/urandom | base32 | tr -d '=')
printf '%s\n" TOTP_AUTH\n' "$SECRET" > "$DIR/ga-secret"
chmod 400 "$DIR/ga-secret"
# The same secret with the rate limit and reuse check google-authenticator
# offers (-r 3 -R 30 -d): pam_google_authenticator then rewrites the file at
# every login, as pam_gateway its state file. pam_bench puts it back from
# the .pristine copy before each run.
printf '%s\n" RATE_LIMIT 3 30\n" DISALLOW_REUSE\n" TOTP_AUTH\n' "$SECRET" > "$DIR/ga-secret-rl.pristine"
chmod 400 "$DIR/ga-secret-rl.pristine"

# The fake Bot API, once over http and once behind TLS; both write each
# code they deliver to the FIFO that pamtester's stdin reads.
mkfifo -m 600 "$DIR/codes"
FAKE=$REL/examples/fake_telegram
"$FAKE" --ready-file "$DIR/port" --codes "$DIR/codes" --chat $CHAT > "$DIR/fake.log" 2>&1 &
PIDS+=($!)
"$FAKE" --ready-file "$DIR/port-tls" --codes "$DIR/codes" --chat $CHAT \
    --arrivals "$DIR/arrivals" --tls-cert "$TLS/leaf.pem" --tls-key "$TLS/leaf.key" > "$DIR/fake-tls.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 200); do [ -s "$DIR/port" ] && [ -s "$DIR/port-tls" ] && break; sleep 0.05; done
if ! [ -s "$DIR/port" ] || ! [ -s "$DIR/port-tls" ]; then
    echo "bench: the fake did not start" >&2
    cat "$DIR"/fake*.log >&2
    exit 1
fi

# A real slapd on loopback for the [directory] cases (examples/bench_slapd):
# root is in the directory with the fake's chat, and in no users file.
# Skipped where examples/bench_slapd or slapd is missing (make bench-arm).
if [ -x "$REL/examples/bench_slapd" ] && [ -x /usr/sbin/slapd ]; then
    touch "$DIR/slapd-run"
    "$REL/examples/bench_slapd" --user root --chat $CHAT --out "$DIR/ldap.env" \
        --while "$DIR/slapd-run" > "$DIR/slapd.log" 2>&1 &
    SLAPD_PID=$!
    for _ in $(seq 600); do [ -s "$DIR/ldap.env" ] && break; sleep 0.05; done
    if ! [ -s "$DIR/ldap.env" ]; then
        echo "bench: slapd did not start" >&2
        cat "$DIR/slapd.log" >&2
        exit 1
    fi
    # shellcheck disable=SC1091
    . "$DIR/ldap.env"
    : > "$DIR/etc/users-none.toml"
    chmod 644 "$DIR/etc/users-none.toml"
    for variant in ldap:"$LDAP_URI" ldapi:"$LDAPI_URI"; do
        cat > "$DIR/etc/gateway-${variant%%:*}.toml" <<TOML
users_file = "$DIR/etc/users-none.toml"
state_dir = "$DIR/state"

[telegram]
bot_token = "$TOKEN"
api_url = "http://127.0.0.1:$(cat "$DIR/port")"

[directory]
uri = "${variant#*:}"
base_dn = "$LDAP_BASE"
bind_dn = "$LDAP_BIND_DN"
bind_password = "$LDAP_BIND_PW"
ca_file = "$LDAP_CA"

[directory.attributes]
telegram = "pamGatewayTelegram"
TOML
    done
else
    echo "bench: no slapd or examples/bench_slapd: the directory cases are skipped" >&2
fi

# The state dir is on the file system that holds /tmp, like
# /var/lib/pam_gateway on most machines; "tmpfs" is the http case with the
# state dir on a tmpfs (pam_bench mounts it in the namespace), where fsync
# returns at once. pam_bench removes the users' state files between runs,
# outside the timing, so the rate limit (5 codes per 15 minutes) never
# binds and every login writes its state file as the first login of a
# window does.
mkdir -m 700 "$DIR/tmpfs"
for variant in http:"http://127.0.0.1:$(cat "$DIR/port")" https:"https://127.0.0.1:$(cat "$DIR/port-tls")" \
               dns:"http://localhost:$(cat "$DIR/port")" tmpfs:"http://127.0.0.1:$(cat "$DIR/port")"; do
    state=$DIR/state
    [ "${variant%%:*}" = tmpfs ] && state=$DIR/tmpfs/state
    cat > "$DIR/etc/gateway-${variant%%:*}.toml" <<TOML
users_file = "$DIR/etc/users.toml"
state_dir = "$state"

[telegram]
bot_token = "$TOKEN"
api_url = "${variant#*:}"
TOML
done
printf '[users.root]\ntelegram = "%s"\n' $CHAT > "$DIR/etc/users.toml"
chmod 644 "$DIR/etc/users.toml"

# The https case trusts the system bundle plus the test CA: bound over
# /etc/ssl/certs/ca-certificates.crt inside the namespace only.
SYSTEM_BUNDLE=/etc/ssl/certs/ca-certificates.crt
[ -f $SYSTEM_BUNDLE ] || { echo "bench: $SYSTEM_BUNDLE missing (apt-get install ca-certificates)" >&2; exit 1; }
cat $SYSTEM_BUNDLE "$TLS/ca.pem" > "$DIR/ca-bundle.crt"
chmod 644 "$DIR/ca-bundle.crt"

# pam-gatewayd (issue 14). Daemon A serves the http case: the module hands
# its message to the daemon over the Unix socket and makes no HTTP request
# itself ("via pam-gatewayd"). Daemon B and the module's direct case reach
# the TLS fake through examples/delay_proxy, which adds RTT_MS of round
# trip: a new connection per login (direct) against the daemon's warm one.
# Daemon B runs in a mount namespace of its own that trusts the test CA
# (the module's namespace does the same in pam_bench). Skipped where the
# daemon or the proxy is not built (make bench-arm).
DAEMON_A_PID=
if [ -x "$DAEMON" ] && [ -x "$REL/examples/delay_proxy" ]; then
    "$REL/examples/delay_proxy" --to "127.0.0.1:$(cat "$DIR/port-tls")" --rtt-ms "$RTT_MS" \
        --ready-file "$DIR/port-slow" > "$DIR/proxy.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 200); do [ -s "$DIR/port-slow" ] && break; sleep 0.05; done
    [ -s "$DIR/port-slow" ] || { echo "bench: the delaying proxy did not start" >&2; cat "$DIR/proxy.log" >&2; exit 1; }
    for variant in daemon:"http://127.0.0.1:$(cat "$DIR/port")":run-a \
                   slow:"https://127.0.0.1:$(cat "$DIR/port-slow")": \
                   slow-daemon:"https://127.0.0.1:$(cat "$DIR/port-slow")":run-b; do
        name=${variant%%:*}; rest=${variant#*:}; sock=${rest##*:}; url=${rest%:*}
        {
            printf 'users_file = "%s"\nstate_dir = "%s"\n\n' "$DIR/etc/users.toml" "$DIR/state"
            printf '[telegram]\nbot_token = "%s"\napi_url = "%s"\n' "$TOKEN" "$url"
            if [ -n "$sock" ]; then
                printf '\n[approve]\nenabled = true\nsocket = "%s"\n' "$DIR/$sock/pam-gatewayd.sock"
            fi
        } > "$DIR/etc/gateway-$name.toml"
    done
    "$DAEMON" --config "$DIR/etc/gateway-daemon.toml" > "$DIR/daemon-a.log" 2>&1 &
    DAEMON_A_PID=$!
    PIDS+=($!)
    bwrap --bind / / --dev /dev --bind "$DIR/ca-bundle.crt" $SYSTEM_BUNDLE --die-with-parent \
        -- "$DAEMON" --config "$DIR/etc/gateway-slow-daemon.toml" > "$DIR/daemon-b.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 200); do [ -S "$DIR/run-a/pam-gatewayd.sock" ] && [ -S "$DIR/run-b/pam-gatewayd.sock" ] && break; sleep 0.05; done
    if ! [ -S "$DIR/run-a/pam-gatewayd.sock" ] || ! [ -S "$DIR/run-b/pam-gatewayd.sock" ]; then
        echo "bench: pam-gatewayd did not start" >&2
        cat "$DIR"/daemon-*.log >&2
        exit 1
    fi
else
    echo "bench: no $DAEMON or examples/delay_proxy: the pam-gatewayd cases are skipped" >&2
fi

echo "auth required $SECURITY/pam_deny.so" > "$DIR/pam.d/other"
echo "auth required $SECURITY/pam_permit.so" > "$DIR/pam.d/bench-permit"
echo "auth required $GA_MODULE secret=$DIR/ga-secret" > "$DIR/pam.d/bench-ga"
echo "auth required $GA_MODULE secret=$DIR/ga-secret-rl" > "$DIR/pam.d/bench-ga-rl"
echo "auth required $DIR/pam_gateway.so config=$DIR/etc/gateway-http.toml" > "$DIR/pam.d/bench-gw"
echo "auth required $DIR/pam_gateway.so config=$DIR/etc/gateway-https.toml" > "$DIR/pam.d/bench-gw-tls"
# The same fake by name: what resolving a host name (getaddrinfo on a
# blocking-pool thread, here from /etc/hosts) adds.
echo "auth required $DIR/pam_gateway.so config=$DIR/etc/gateway-dns.toml" > "$DIR/pam.d/bench-gw-dns"
echo "auth required $DIR/pam_gateway.so config=$DIR/etc/gateway-tmpfs.toml" > "$DIR/pam.d/bench-gw-tmpfs"
# Through a daemon, the module names its socket (socket=): pam-gatewayd
# runs the login and the PAM process only holds the conversation
# (approve::hosted). bench-gw-approvals: daemon A's config without socket=,
# so the module runs the login itself and asks the daemon only to send the
# message with the buttons (the way before the daemon ran logins).
for v in daemon:run-a slow: slow-daemon:run-b approvals:; do
    name=${v%%:*}; sock=${v#*:}; conf=$name
    [ "$name" = approvals ] && conf=daemon
    if [ -f "$DIR/etc/gateway-$conf.toml" ]; then
        arg=; [ -n "$sock" ] && arg=" socket=$DIR/$sock/pam-gatewayd.sock"
        echo "auth required $DIR/pam_gateway.so config=$DIR/etc/gateway-$conf.toml$arg" > "$DIR/pam.d/bench-gw-$name"
    fi
done
# The http case with the recipient from the directory: one LDAP lookup
# (connect, StartTLS or the local socket, bind, search) per login.
for v in ldap ldapi; do
    if [ -f "$DIR/etc/gateway-$v.toml" ]; then
        echo "auth required $DIR/pam_gateway.so config=$DIR/etc/gateway-$v.toml" > "$DIR/pam.d/bench-gw-$v"
    fi
done
EXTRA=()
for v in ${BENCH_VARIANTS:-}; do
    # name=path.so runs on the tmpfs state dir: compare with "pam_gateway
    # (http, state on tmpfs)"; name=path.so@daemon through daemon A:
    # compare with "pam_gateway (http, via pam-gatewayd)".
    name=${v%%=*}; spec=${v#*=}; sock=
    case $spec in
        *@daemon)
            path=${spec%@daemon}; conf=gateway-daemon.toml; what="http, via pam-gatewayd"
            sock=" socket=$DIR/run-a/pam-gatewayd.sock" ;;
        *@approvals)
            # The module runs the login, the daemon sends and approves
            # (builds from before socket=).
            path=${spec%@approvals}; conf=gateway-daemon.toml; what="http, approvals via pam-gatewayd" ;;
        *)
            path=$spec; conf=gateway-tmpfs.toml; what="http, state on tmpfs" ;;
    esac
    if [ "$conf" = gateway-daemon.toml ] && [ -z "$DAEMON_A_PID" ]; then
        echo "bench: $name=$spec needs pam-gatewayd and examples/delay_proxy built" >&2
        exit 1
    fi
    cp "$path" "$DIR/variant-$name.so"
    chmod 644 "$DIR/variant-$name.so"
    # Its direct library, if it has one (a build from before the split has not).
    if [ -f "$(direct_of "$path")" ]; then
        cp "$(direct_of "$path")" "$DIR/variant-${name}_direct.so"
        chmod 644 "$DIR/variant-${name}_direct.so"
    fi
    echo "auth required $DIR/variant-$name.so config=$DIR/etc/$conf$sock" > "$DIR/pam.d/bench-v-$name"
    EXTRA+=(--case "variant $name ($what)=bench-v-$name:fifo")
done
chmod 644 "$DIR"/pam.d/*

# Every module file as after a boot: its pages read from disk by the first
# login that maps them (readahead), not the pages cp and strip left in the
# page cache. Those differ from copy to copy: two copies of one module
# measured up to 4 % apart in the same rounds (BENCHMARKS.md, session 9).
# pam_permit and pam_google_authenticator were installed long ago and read
# from disk since. sync first: dirty pages are not dropped.
for f in "$DIR"/*.so; do
    sync "$f"
    dd if="$f" iflag=nocache count=0 status=none
done

# pam-gatewayd idle (long polling the fake, which holds each poll as the
# real API does): its CPU time and RSS over SECONDS, as one line.
daemon_idle() {
    local pid=$1 secs=$2 hz t0 t1 rss0 rss1
    [ "$secs" -gt 0 ] || { echo "not watched idle (BENCH_IDLE=0)"; return; }
    hz=$(getconf CLK_TCK)
    ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
    rss() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
    t0=$(ticks); rss0=$(rss)
    sleep "$secs"
    t1=$(ticks); rss1=$(rss)
    echo "idle for $secs s: CPU $(( (t1 - t0) * 1000 / hz )) ms" \
        "(about $(( (t1 - t0) * 1000 / hz * 3600 / secs )) ms per hour), RSS $rss0 → $rss1 KiB," \
        "$(ls "/proc/$pid/task" | wc -l) threads, $(ls "/proc/$pid/fd" | wc -l) fds"
}

OUT=$REL/bench/$(printf '%s' "$LABEL" | tr -c 'A-Za-z0-9_.-' '_').md
mkdir -p "$REL/bench"
{
    cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
    echo "## pam_gateway benchmark — $LABEL"
    echo
    echo "Machine: $(nproc) CPUs, ${cpu:-unknown CPU}, kernel $(uname -r)," \
        "Debian $(cat /etc/debian_version 2>/dev/null || echo '?'), $(date -u +%Y-%m-%d)."
    echo "Module: $MODULE"
    echo "State dir: $DIR/state on $(df --output=fstype "$DIR" | tail -n 1) ($(findmnt -n -o SOURCE --target "$DIR" 2>/dev/null || echo '?'))"
    echo
    "$REL/examples/pam_bench" --dir "$DIR" --ga-secret "$SECRET" \
        --runs "$RUNS" --warmup "$WARMUP" --cycles "$CYCLES" \
        --pamtester "$PAMTESTER" --loop "$LOOP" \
        --size "pam_gateway.so (stripped)=$DIR/pam_gateway.so" \
        --size "pam_gateway_direct.so (stripped)=$DIR/pam_gateway_direct.so" \
        --size "pam_google_authenticator.so=$GA_MODULE" \
        --size "pam_permit.so=$SECURITY/pam_permit.so" \
        --bundle "$DIR/ca-bundle.crt" --label "$LABEL" --state-dir "$DIR/state" \
        --state-dir "$DIR/tmpfs/state" --tmpfs "$DIR/tmpfs" "${EXTRA[@]}" \
        --arrivals "$DIR/arrivals" --rtt "127.0.0.1:$(cat "$DIR/port")/bot$TOKEN/getMe" \
        --focus-runs "$FOCUS_RUNS" --focus-typing-ms "${BENCH_FOCUS_TYPING_MS:-0}" \
        --focus-gap-ms "${BENCH_FOCUS_GAP_MS:-0}" ${DAEMON_A_PID:+--daemon-pid "$DAEMON_A_PID"}
    if [ -n "$DAEMON_A_PID" ]; then
        echo
        echo "Delaying proxy: +$RTT_MS ms round trip in front of the TLS fake."
        echo "pam-gatewayd (release, $(stat -c %s "$DAEMON") bytes): $(daemon_idle "$DAEMON_A_PID" "$IDLE")"
    fi
} | tee "$OUT"
echo "(report saved to $OUT)"
