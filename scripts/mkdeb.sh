#!/bin/bash
# Builds the pam-gateway Debian package from binaries cargo already built.
#   scripts/mkdeb.sh [--arch ARCH] [--bin-dir DIR] [--out DIR] [--version VERSION]
#     --arch     Debian architecture of the binaries (default: this machine's)
#     --bin-dir  directory holding pam_gateway.so and pam_gateway_direct.so (or
#                cargo's lib*.so), pam-gateway and pam-gatewayd (default:
#                target/release)
#     --out      where the .deb goes (default: target/deb)
#     --version  Debian version (default: Cargo.toml's version, revision -1)
# Prints the path of the package. Needs dpkg-dev (dpkg-architecture,
# dpkg-shlibdeps) and, for another architecture, its binutils and libc.
#
# Layout: the module in /lib/<multiarch>/security/pam_gateway.so (and next to
# it pam_gateway_direct.so, which it loads to send itself), the CLI and
# the approval daemon in /usr/sbin, the daemon's systemd unit in
# /lib/systemd/system (never enabled or started by the package), man pages, README.md and the guides it links to (docs/*.md) in
# /usr/share/doc/pam-gateway, example configs in its examples/, the
# pam-auth-update profile in /usr/share/pam-configs/pam_gateway (off until
# enabled). The maintainer scripts live in packaging/deb/.
set -euo pipefail
cd "$(dirname "$0")/.."

arch=$(dpkg --print-architecture)
bin_dir=target/release
out=target/deb
version=""
while [ $# -gt 0 ]; do
    case "$1" in
        --arch) arch=$2; shift 2 ;;
        --bin-dir) bin_dir=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --version) version=$2; shift 2 ;;
        *) echo "usage: $0 [--arch ARCH] [--bin-dir DIR] [--out DIR] [--version VERSION]" >&2; exit 2 ;;
    esac
done
[ -n "$version" ] || version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)-1"

case "$arch" in
    amd64) triple=x86_64-unknown-linux-gnu machine="X86-64" ;;
    arm64) triple=aarch64-unknown-linux-gnu machine="AArch64" ;;
    armhf) triple=armv7-unknown-linux-gnueabihf machine="ARM" ;;
    *) echo "mkdeb: unsupported architecture $arch (amd64, arm64, armhf)" >&2; exit 2 ;;
esac
multiarch=$(dpkg-architecture -a "$arch" -qDEB_HOST_MULTIARCH 2>/dev/null)
gnu=$(dpkg-architecture -a "$arch" -qDEB_HOST_GNU_TYPE 2>/dev/null)
if [ "$arch" = "$(dpkg --print-architecture)" ]; then strip="strip"; else strip="$gnu-strip"; fi

# The module as `make build` names it; a plain cargo build (the package
# test's debug build) has only cargo's libpam_gateway.so.
so=$bin_dir/pam_gateway.so
direct=$bin_dir/pam_gateway_direct.so
if [ ! -f "$so" ] && [ -f "$bin_dir/libpam_gateway.so" ]; then
    so=$bin_dir/libpam_gateway.so
    direct=$bin_dir/libpam_gateway_direct.so
    echo "mkdeb: no $bin_dir/pam_gateway.so; packaging cargo's libpam_gateway.so (make deb packages the release build)" >&2
fi
cli=$bin_dir/pam-gateway
daemon=$bin_dir/pam-gatewayd
for f in "$so" "$direct" "$cli" "$daemon"; do
    [ -f "$f" ] || { echo "mkdeb: $f not built" >&2; exit 1; }
    # A package that says arm64 must hold arm64 code.
    if ! LC_ALL=C readelf -h "$f" | grep -q "Machine:.*$machine"; then
        echo "mkdeb: $f is not a $machine ($arch) binary" >&2
        exit 1
    fi
done

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
maintainer="${DEBFULLNAME:-pam_gateway builder} <${DEBEMAIL:-root@localhost}>"
umask 022
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/debian/pam-gateway   # dpkg-shlibdeps expects debian/<package>/
doc=$root/usr/share/doc/pam-gateway

install -D -m 644 "$so" "$root/lib/$multiarch/security/pam_gateway.so"
install -D -m 644 "$direct" "$root/lib/$multiarch/security/pam_gateway_direct.so"
install -D -m 755 "$cli" "$root/usr/sbin/pam-gateway"
install -D -m 755 "$daemon" "$root/usr/sbin/pam-gatewayd"
# Like dh_strip: no symbols, no .comment/.note (cargo's strip keeps those).
"$strip" --strip-unneeded --remove-section=.comment --remove-section=.note \
    "$root/lib/$multiarch/security/pam_gateway.so" \
    "$root/lib/$multiarch/security/pam_gateway_direct.so" "$root/usr/sbin/pam-gateway" \
    "$root/usr/sbin/pam-gatewayd"
# The daemon's unit: shipped, not enabled (postinst leaves it alone).
install -D -m 644 packaging/pam-gatewayd.service "$root/lib/systemd/system/pam-gatewayd.service"

install -D -m 644 packaging/deb/pam-config "$root/usr/share/pam-configs/pam_gateway"
install -d -m 755 "$root/usr/share/man/man5" "$root/usr/share/man/man8"
gzip -9n -c man/pam_gateway.8 > "$root/usr/share/man/man8/pam_gateway.8.gz"
gzip -9n -c man/pam-gateway.8 > "$root/usr/share/man/man8/pam-gateway.8.gz"
gzip -9n -c man/pam-gatewayd.8 > "$root/usr/share/man/man8/pam-gatewayd.8.gz"
gzip -9n -c man/gateway.toml.5 > "$root/usr/share/man/man5/gateway.toml.5.gz"

install -d -m 755 "$doc/examples/pam.d" "$doc/examples/sshd_config.d" "$doc/examples/webhook" \
    "$doc/examples/ldap"
install -m 644 conf/gateway.toml conf/users.toml "$doc/examples/"
install -m 644 pam.d/* "$doc/examples/pam.d/"
install -m 644 sshd_config.d/* "$doc/examples/sshd_config.d/"
install -m 644 conf/webhook/*.toml "$doc/examples/webhook/"
# pam_gateway's LDAP schema for [directory] (docs/fleet.md).
install -m 644 conf/ldap/* "$doc/examples/ldap/"
gzip -9n -c README.md > "$doc/README.md.gz"
# The guides README.md links to, at the same relative paths (docs/NAME.md).
install -d -m 755 "$doc/docs"
for md in docs/*.md; do
    gzip -9n -c "$md" > "$doc/docs/$(basename "$md").gz"
done
{
    echo "pam-gateway ($version) unstable; urgency=medium"
    echo
    echo "  * Built from the pam_gateway source tree (make deb / make cross)."
    echo
    echo " -- $maintainer  $(date -R -u -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n > "$doc/changelog.Debian.gz"
{
    cat <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: pam_gateway

Files: *
Copyright: $(date -u -d "@$SOURCE_DATE_EPOCH" +%Y) the pam_gateway authors
License: MIT or Apache-2.0
 On Debian systems the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0. The MIT license:
 .
 Permission is hereby granted, free of charge, to any person obtaining a copy
 of this software and associated documentation files (the "Software"), to deal
 in the Software without restriction, including without limitation the rights
 to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
 copies of the Software, and to permit persons to whom the Software is
 furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in
 all copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
 FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
 LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
 OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
 SOFTWARE.

Comment: The binaries statically link these Rust crates from crates.io, each
 under the license named (as its Cargo.toml declares it):
EOF
    if crates=$("${CARGO:-cargo}" tree --locked --offline -e normal --prefix none \
        --format '{p}: {l}' --target "$triple" 2>/dev/null); then
        printf '%s\n' "$crates" | grep -v '(proc-macro)' | sed 's/ (\*)$//' \
            | grep -v '^pam-gateway ' | sort -u | sed 's/^/ /'
    else
        echo " (cargo tree was not available when this package was built)"
    fi
} > "$doc/copyright"

install -d -m 755 "$root/DEBIAN"
install -m 755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$root/DEBIAN/"

# Depends from the ELF files' needs (libc6, libgcc-s1, libpam0g), as
# dh_shlibdeps would; libpam-runtime for pam-auth-update. Recommends
# ca-certificates: https gateways (Telegram's default api_url) are verified
# against its bundle, /etc/ssl/certs/ca-certificates.crt.
shlibs=$(cd "$work" && mkdir -p debian && printf 'Source: pam-gateway\n\nPackage: pam-gateway\nArchitecture: any\n' > debian/control &&
    DEB_HOST_ARCH=$arch dpkg-shlibdeps -O -e "debian/pam-gateway/lib/$multiarch/security/pam_gateway.so" \
        -e "debian/pam-gateway/lib/$multiarch/security/pam_gateway_direct.so" \
        -e debian/pam-gateway/usr/sbin/pam-gateway -e debian/pam-gateway/usr/sbin/pam-gatewayd 2>shlibdeps.err | sed -n 's/^shlibs:Depends=//p')
# (Its "binaries to analyze should already be installed" warning is noise here.)
grep -v 'binaries to analyze' "$work/shlibdeps.err" >&2 || true
rm -f "$work/debian/control"
[ -n "$shlibs" ] || { echo "mkdeb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
# A module linked with packed relocations (build.rs, native builds) needs
# glibc's GLIBC_ABI_DT_RELR (2.36): a version need without a symbol, which
# dpkg-shlibdeps does not see. An older libc6 could not load the module, and
# every login through a stack that requires it would fail.
# (grep reads all of readelf's output: with -q it could stop at the first
# match and readelf die of SIGPIPE, which pipefail makes a "no".)
if LC_ALL=C readelf -V "$root/lib/$multiarch/security/pam_gateway.so" \
    "$root/lib/$multiarch/security/pam_gateway_direct.so" | grep 'GLIBC_ABI_DT_RELR' >/dev/null; then
    libc_min=$(printf '%s' "$shlibs" | sed -n 's/.*libc6 (>= \([^)]*\)).*/\1/p')
    if [ -z "$libc_min" ]; then
        shlibs="libc6 (>= 2.36), $shlibs"
    elif dpkg --compare-versions "$libc_min" lt 2.36; then
        shlibs=$(printf '%s' "$shlibs" | sed "s/libc6 (>= [^)]*)/libc6 (>= 2.36)/")
    fi
fi

cat > "$root/DEBIAN/control" <<EOF
Package: pam-gateway
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: $shlibs, libpam-runtime (>= 1.0.1-6)
Recommends: ca-certificates
Section: admin
Priority: optional
Description: second login factor: one-time codes over Telegram (PAM module)
 After the password or SSH key, pam_gateway.so sends a one-time code to the
 user's Telegram chat through your bot and asks for it through the PAM
 conversation. It fails closed, never logs a code or the bot token, and
 trusts only root-owned configuration files.
 .
 pam-gateway(8) is the admin command. pam-gatewayd(8), off until you enable
 its systemd unit, lets users approve a login with a tap in Telegram.
 The module is off until you enable it:
 in one service's /etc/pam.d file (see pam_gateway(8)), or for every service
 that includes common-auth with "pam-auth-update --enable pam_gateway".
EOF
(cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\n' | LC_ALL=C sort | xargs md5sum) \
    > "$root/DEBIAN/md5sums"
chmod 644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"

mkdir -p "$out"
deb=$out/pam-gateway_${version}_${arch}.deb
# DEB_COMPRESS=gzip: the tests' packages (xz takes seconds on a debug build).
dpkg-deb --root-owner-group -Z"${DEB_COMPRESS:-xz}" --build "$root" "$deb" >/dev/null
echo "$deb"
