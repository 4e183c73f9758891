#!/bin/bash
# make demo: a real PAM authentication through pam_gateway.so, with the code
# delivered by a loopback stand-in for the Telegram Bot API. No account, no
# network, nothing on the host changed: PAM runs in a private mount namespace
# (bwrap) where a temp dir replaces /etc/pam.d.
set -euo pipefail

TARGET=${CARGO_TARGET_DIR:-target}/release
case $TARGET in /*) ;; *) TARGET=$PWD/$TARGET ;; esac
MODULE=$TARGET/pam_gateway.so
FAKE=$TARGET/examples/fake_telegram

if [ "$(id -u)" != 0 ]; then
    echo "make demo needs root: PAM only trusts root-owned config files, and the"
    echo "demo binds a private /etc/pam.d in a mount namespace. Run: sudo make demo"
    exit 1
fi

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

DIR=$(mktemp -d /tmp/pam_gateway-demo.XXXXXX)
chmod 700 "$DIR"
FAKE_PID=""
cleanup() {
    [ -n "$FAKE_PID" ] && kill "$FAKE_PID" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT

mkdir -m 700 "$DIR/etc" "$DIR/pam.d"

bold "Starting a loopback stand-in for the Telegram Bot API"
"$FAKE" --ready-file "$DIR/port" --messages "$DIR/messages.jsonl" --chat 123456977 \
    > "$DIR/fake.log" 2>&1 &
FAKE_PID=$!
for _ in $(seq 100); do [ -s "$DIR/port" ] && break; sleep 0.05; done
PORT=$(cat "$DIR/port")
echo "fake Bot API on http://127.0.0.1:$PORT (bot token 123456789:AAE…, chat 123456977)"

umask 077
cat > "$DIR/etc/gateway.toml" <<TOML
users_file = "$DIR/etc/users.toml"
state_dir = "$DIR/state"

[telegram]
bot_token = "123456789:AAEhBP0av28JzWyPaVHcA1xZl5n7gK9wQ3c"
api_url = "http://127.0.0.1:$PORT"
TOML
cat > "$DIR/etc/users.toml" <<TOML
[users.alice]
telegram = "123456977"
TOML
chmod 644 "$DIR/etc/users.toml"
# The module resolves the user through NSS and denies names it does not
# know: alice exists inside the namespace only (a passwd and group laid over
# the host's).
{ cat /etc/passwd; echo "alice:x:64100:64100:demo user:/nonexistent:/usr/sbin/nologin"; } > "$DIR/passwd"
{ cat /etc/group; echo "alice:x:64100:"; } > "$DIR/group"
chmod 644 "$DIR/passwd" "$DIR/group"
cat > "$DIR/pam.d/demo" <<PAM
auth required $MODULE config=$DIR/etc/gateway.toml
PAM
echo "auth required pam_deny.so" > "$DIR/pam.d/other"

bold "PAM stack /etc/pam.d/demo (inside the namespace)"
cat "$DIR/pam.d/demo"
bold "users.toml"
cat "$DIR/etc/users.toml"

messages() { wc -l < "$DIR/messages.jsonl" 2>/dev/null || echo 0; }

# Plays the user: waits for the bot's message, reads the code off it, types it.
type_code_from_telegram() {
    local before=$1 line code
    for _ in $(seq 200); do
        [ "$(messages)" -gt "$before" ] && break
        sleep 0.05
    done
    line=$(tail -n 1 "$DIR/messages.jsonl" 2>/dev/null || true)
    code=$(printf '%s' "$line" | sed -n 's/.*"text":"\([0-9]\{6,10\}\).*/\1/p')
    printf '\nalice'"'"'s phone shows:\n' >&2
    tail -n +1 "$DIR/fake.log" | sed -n '/to chat/,$p' | tail -n 3 | sed 's/^/    /' >&2
    printf '[user] types the code: %s\n' "$code" >&2
    echo "$code"
}

pam() { bwrap --bind / / --dev /dev --bind "$DIR/pam.d" /etc/pam.d \
    --ro-bind "$DIR/passwd" /etc/passwd --ro-bind "$DIR/group" /etc/group --die-with-parent \
    pamtester -v demo alice authenticate; }

bold "1. alice logs in and types the code Telegram delivered"
before=$(messages)
if type_code_from_telegram "$before" | pam; then
    echo "=> authenticated with the delivered code"
else
    echo "=> DEMO FAILED: the right code was refused" >&2
    exit 1
fi

bold "2. someone with alice's password but not her phone guesses three times"
: > "$DIR/fake.log"
if printf '000000\n111111\n222222\n' | pam; then
    echo "=> DEMO FAILED: a wrong code was accepted" >&2
    exit 1
else
    echo "=> refused: wrong codes do not get in"
fi

bold "Done"
echo "The module, the config and the users file were real; only Telegram was a stand-in."
echo "Next: README.md — install, BotFather, enrolment, sshd/sudo stacks."
