#!/bin/sh
# Makes sure the Debian packages a make target needs are there.
#   scripts/deps.sh build|test|demo|deb
#   scripts/deps.sh cross [TRIPLE...]    (default: both Raspberry Pi targets)
#   scripts/deps.sh test-arm [TRIPLE...]   (default: both Raspberry Pi targets)
#   scripts/deps.sh bench|bench-arm
# As root: installs what is missing with apt-get (after apt-get update).
# Otherwise: names the missing packages and fails.
set -eu

PI_TARGETS="aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf"

want=""
foreign=""          # Debian architectures the wanted packages need
mode=${1:-build}
[ $# -gt 0 ] && shift

# Debian architecture and cross-gcc package of a Rust target triple.
deb_arch() {
    case "$1" in
        aarch64-unknown-linux-gnu) echo arm64 ;;
        armv7-unknown-linux-gnueabihf) echo armhf ;;
        *) echo "deps.sh: unsupported target $1 (supported: $PI_TARGETS)" >&2; exit 2 ;;
    esac
}
cross_gcc() {
    case "$1" in
        arm64) echo gcc-aarch64-linux-gnu ;;
        armhf) echo gcc-arm-linux-gnueabihf ;;
    esac
}

# True when the named rustc already has the standard library for a target
# (rustup's with `rustup target add`, or Debian's with libstd-rust-web-dev:ARCH).
has_std() {
    dir=$("$1" --print target-libdir --target "$2" 2>/dev/null) || return 1
    ls "$dir"/libstd-*.rlib >/dev/null 2>&1
}

# What `make cross` needs for one target: Debian's rustc-web/cargo-web (rustup
# cannot download a target here) with that architecture's standard library,
# the cross gcc (linker, and C compiler for ring), and libpam0g-dev to link -lpam.
want_cross() {
    arch=$(deb_arch "$1")
    foreign="$foreign $arch"
    want="$want $(cross_gcc "$arch") libpam0g-dev:$arch libc6-dev:$arch dpkg-dev"
    if ! { [ -x /usr/bin/rustc ] && has_std /usr/bin/rustc "$1"; } \
        && ! { command -v rustc >/dev/null 2>&1 && has_std rustc "$1"; }; then
        want="$want rustc-web cargo-web libstd-rust-web-dev libstd-rust-web-dev:$arch"
    fi
}

case "$mode" in
    build) want="libpam0g-dev gcc libc6-dev" ;;
    # The real-client tests: sshd and ssh, sudo, login, unshare/setpriv; the
    # package test: dpkg-deb and man pages.
    # ca-certificates: tests/http_client.rs loads the system CA bundle.
    # slapd, ldap-utils: the directory tests run a real OpenLDAP slapd
    # (test-support/src/slapd.rs) on random loopback ports in a temp dir. The
    # package's postinst may start a system slapd on port 389: the tests
    # never use 389/636 or its configuration, so it cannot disturb them.
    test)  want="libpam0g-dev gcc libc6-dev pamtester bubblewrap openssh-server openssh-client sudo login util-linux dpkg-dev groff-base ca-certificates slapd ldap-utils" ;;
    demo)  want="libpam0g-dev gcc libc6-dev pamtester bubblewrap" ;;
    deb)   want="libpam0g-dev gcc libc6-dev dpkg-dev" ;;
    cross)
        want="libpam0g-dev gcc libc6-dev"
        # shellcheck disable=SC2086 # a list of words
        [ $# -gt 0 ] || set -- $PI_TARGETS
        for t in "$@"; do want_cross "$t"; done ;;
    test-arm)
        # The ARM builds under qemu-user with Debian's ARM libpam and PAM
        # modules (pam_deny, pam_permit, pam_unix); the ARM pamtester is
        # unpacked, not installed (it would replace the host's pamtester).
        want="libpam0g-dev gcc libc6-dev pamtester bubblewrap qemu-user-static dpkg-dev"
        # shellcheck disable=SC2086 # a list of words
        [ $# -gt 0 ] || set -- $PI_TARGETS
        for t in "$@"; do
            want_cross "$t"
            want="$want libpam0g:$(deb_arch "$t") libpam-modules:$(deb_arch "$t")"
        done ;;
    # make bench: pam_google_authenticator and oathtool are the comparison,
    # slapd and ldap-utils the directory cases' server,
    # ca-certificates the https case's bundle, binutils strips.
    bench) want="libpam0g-dev gcc libc6-dev pamtester bubblewrap ca-certificates libpam-google-authenticator oathtool binutils slapd ldap-utils" ;;
    # make hot-text: make bench's cases under callgrind.
    hot-text) want="libpam0g-dev gcc libc6-dev pamtester bubblewrap ca-certificates libpam-google-authenticator oathtool binutils slapd ldap-utils valgrind" ;;
    # make bench-arm: the same under qemu-user; the arm64 pamtester and
    # pam_google_authenticator are unpacked by scripts/bench-arm.sh.
    bench-arm)
        want="libpam0g-dev gcc libc6-dev pamtester bubblewrap ca-certificates oathtool binutils qemu-user-static"
        want_cross aarch64-unknown-linux-gnu
        want="$want libpam0g:arm64 libpam-modules:arm64" ;;
    *) echo "usage: $0 build|test|demo|deb|cross [TRIPLE...]|test-arm [TRIPLE...]|bench|bench-arm|hot-text" >&2; exit 2 ;;
esac

missing=""
for pkg in $want; do
    case " $missing " in *" $pkg "*) continue ;; esac
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

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "Missing Debian packages:$missing" >&2
    for arch in $foreign; do
        dpkg --print-foreign-architectures | grep -qx "$arch" ||
            echo "First, as root:  dpkg --add-architecture $arch" >&2
    done
    echo "Install them as root:  apt-get update && apt-get install$missing" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
added=""
for arch in $foreign; do
    if [ "$arch" != "$(dpkg --print-architecture)" ] &&
        ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
        echo "Adding Debian architecture $arch (dpkg --add-architecture $arch)"
        dpkg --add-architecture "$arch"
        added="$added $arch"
    fi
done

# Undoes an --add-architecture that got no package installed, so that a
# failed attempt does not leave `apt-get update` fetching (or failing on)
# that architecture's indexes forever.
undo_added() {
    for arch in $added; do
        if ! dpkg-query -W -f='${Architecture}\n' 2>/dev/null | grep -qx "$arch"; then
            dpkg --remove-architecture "$arch" && echo "Removed Debian architecture $arch again" >&2
        fi
    done
}

echo "Installing Debian packages:$missing"
# A mirror that serves one stale index (seen: bookworm-security armhf) fails
# the whole update; go on with what was fetched and let the install say
# which package it cannot find.
if ! apt-get update -qq -o DPkg::Lock::Timeout=300; then
    echo "deps.sh: apt-get update reported errors (above); trying the install anyway" >&2
fi
# shellcheck disable=SC2086
if ! apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends $missing >/dev/null; then
    undo_added
    echo "deps.sh: could not install:$missing" >&2
    echo "A foreign architecture's package must have exactly the version of the host's" >&2
    echo "(Multi-Arch: same); check: apt-cache policy$missing" >&2
    exit 1
fi
