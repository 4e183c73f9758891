#!/bin/sh
# Makes sure the Debian packages a make target needs are there.
#   scripts/deps.sh build|test|demo
# As root: installs what is missing with apt-get (after apt-get update).
# Otherwise: names the missing packages and fails.
set -eu

want=""
case "${1:-build}" in
    build) want="libpam0g-dev gcc libc6-dev" ;;
    # The real-client tests: sshd and ssh, sudo, login, unshare/setpriv.
    test)  want="libpam0g-dev gcc libc6-dev pamtester bubblewrap openssh-server openssh-client sudo login util-linux" ;;
    demo)  want="libpam0g-dev gcc libc6-dev pamtester bubblewrap" ;;
    *) echo "usage: $0 build|test|demo" >&2; exit 2 ;;
esac

missing=""
for pkg in $want; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done
# A Rust toolchain: rustup's if present, else Debian's rustc-web/cargo-web
# (edition 2024 needs Rust >= 1.85; Debian 12's plain cargo is too old).
if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
    missing="$missing cargo-web rustc-web"
fi

[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
    echo "Missing Debian packages:$missing" >&2
    echo "Install them as root:  apt-get install$missing" >&2
    exit 1
fi
