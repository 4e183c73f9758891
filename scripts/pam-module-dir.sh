#!/bin/sh
# Prints the directory holding this system's PAM modules: where pam_unix.so
# lives (Debian: /lib/<multiarch>/security, Fedora/SUSE: /usr/lib64/security).
#
# On Debian the native architecture decides: a machine with foreign
# architectures added (libpam0g:arm64 for cross builds) also has
# /lib/aarch64-linux-gnu/security, and a Raspberry Pi running a 32-bit
# userland on a 64-bit kernel reports `uname -m` aarch64 but loads armhf
# modules. dpkg knows the native one.
set -eu

multiarch=""
if command -v dpkg-architecture >/dev/null 2>&1; then
    multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || true)
fi
if [ -z "$multiarch" ] && command -v dpkg >/dev/null 2>&1; then
    case "$(dpkg --print-architecture 2>/dev/null || true)" in
        amd64) multiarch=x86_64-linux-gnu ;;
        arm64) multiarch=aarch64-linux-gnu ;;
        armhf) multiarch=arm-linux-gnueabihf ;;
        armel) multiarch=arm-linux-gnueabi ;;
        i386) multiarch=i386-linux-gnu ;;
        ppc64el) multiarch=powerpc64le-linux-gnu ;;
        riscv64) multiarch=riscv64-linux-gnu ;;
        s390x) multiarch=s390x-linux-gnu ;;
    esac
fi
if [ -n "$multiarch" ]; then
    for dir in "/lib/$multiarch/security" "/usr/lib/$multiarch/security"; do
        if [ -e "$dir/pam_unix.so" ]; then
            echo "$dir"
            exit 0
        fi
    done
fi

for dir in /lib64/security /usr/lib64/security /lib/*/security /usr/lib/*/security \
           /lib/security /usr/lib/security; do
    if [ -e "$dir/pam_unix.so" ]; then
        echo "$dir"
        exit 0
    fi
done
echo "cannot find the PAM module directory (no pam_unix.so found)" >&2
exit 1
