#!/bin/sh
# Prints the directory holding this system's PAM modules: where pam_unix.so
# lives (Debian: /lib/<multiarch>/security, Fedora/SUSE: /usr/lib64/security).
set -eu
for dir in /lib/*/security /usr/lib/*/security /lib64/security /usr/lib64/security \
           /lib/security /usr/lib/security; do
    if [ -e "$dir/pam_unix.so" ]; then
        echo "$dir"
        exit 0
    fi
done
echo "cannot find the PAM module directory (no pam_unix.so found)" >&2
exit 1
