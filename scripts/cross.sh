#!/bin/bash
# make cross: pam_gateway.so and pam-gateway for Raspberry Pi OS, built on an
# x86_64 Debian machine, then packaged (.deb) for that architecture.
#   scripts/cross.sh [TRIPLE...]
#     aarch64-unknown-linux-gnu       Raspberry Pi OS 64-bit (Pi 3, 4, 5, Zero 2 W)  -> arm64
#     armv7-unknown-linux-gnueabihf   Raspberry Pi OS 32-bit on Pi 2, 3, 4, Zero 2 W -> armhf
# Binaries land in target/cross/<triple>/release (the module as pam_gateway.so),
# packages in target/deb.
#
# Toolchain: Debian's rustc-web/cargo-web (/usr/bin) with libstd-rust-web-dev
# for the target architecture, so nothing has to be downloaded by rustup; a
# rustup toolchain that already has the target is used when Debian's is not
# there. Set CROSS_CARGO and CROSS_RUSTC to choose yourself, CROSS_EXTRA_ARGS
# to build more (make bench-arm: --example pam_loop).
set -euo pipefail
cd "$(dirname "$0")/.."

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)
TARGET_DIR=target/cross
DEB_DIR=${DEB_DIR:-target/deb}

has_std() {
    local dir
    dir=$("$1" --print target-libdir --target "$2" 2>/dev/null) || return 1
    compgen -G "$dir/libstd-*.rlib" >/dev/null
}

# Prints "CARGO RUSTC" for a toolchain that can build for $1.
pick_toolchain() {
    if [ -n "${CROSS_CARGO:-}" ]; then
        echo "$CROSS_CARGO ${CROSS_RUSTC:-rustc}"
    elif [ -x /usr/bin/cargo ] && [ -x /usr/bin/rustc ] && has_std /usr/bin/rustc "$1"; then
        echo "/usr/bin/cargo /usr/bin/rustc"
    elif command -v cargo >/dev/null && command -v rustc >/dev/null && has_std rustc "$1"; then
        echo "$(command -v cargo) $(command -v rustc)"
    else
        return 1
    fi
}

failed=()
for t in "${targets[@]}"; do
    case "$t" in
        aarch64-unknown-linux-gnu) gnu=aarch64-linux-gnu arch=arm64 ;;
        armv7-unknown-linux-gnueabihf) gnu=arm-linux-gnueabihf arch=armhf ;;
        *) echo "cross: unsupported target $t" >&2; exit 2 ;;
    esac
    echo "== $t (Debian $arch)"
    if ! read -r cargo rustc < <(pick_toolchain "$t"); then
        echo "cross: no Rust standard library for $t. On Debian 12, as root:" >&2
        echo "  dpkg --add-architecture $arch && apt-get update" >&2
        echo "  apt-get install rustc-web cargo-web libstd-rust-web-dev:$arch gcc-$gnu libpam0g-dev:$arch" >&2
        echo "(scripts/deps.sh cross $t does it.)" >&2
        failed+=("$t")
        continue
    fi
    if ! command -v "$gnu-gcc" >/dev/null; then
        echo "cross: $gnu-gcc missing: apt-get install gcc-$gnu" >&2
        failed+=("$t")
        continue
    fi
    echo "toolchain: $("$rustc" --version) ($rustc), linker $gnu-gcc"
    upper=${t//-/_}
    upper=${upper^^}
    # The linker, and the C compiler and archiver for ring's C and assembly.
    # RUSTC/RUSTDOC keep a rustup proxy earlier in PATH from being used by
    # Debian's cargo (it would pick rustup's rustc, which lacks the target).
    # The CLI and the module (a cdylib alone: the release profile's LTO
    # applies), and CROSS_EXTRA_ARGS.
    cross_env=("CARGO_TARGET_${upper}_LINKER=$gnu-gcc"
        "CC_${t//-/_}=$gnu-gcc" "AR_${t//-/_}=$gnu-ar"
        "RUSTC=$rustc" "RUSTDOC=$(dirname "$rustc")/rustdoc" "CARGO=$cargo")
    args=(--release --locked --target "$t" --target-dir "$TARGET_DIR")
    out=$TARGET_DIR/$t/release
    # The module and its direct library in a cargo run of their own, as
    # `make build` does: with the CLI's features unified in, the module's
    # code would not be what module/hot-text.ld lists.
    # shellcheck disable=SC2086 # CROSS_EXTRA_ARGS is a list of words
    if ! env "${cross_env[@]}" "$cargo" build "${args[@]}" -p pam-gateway-module -p pam-gateway-direct ||
        ! env "${cross_env[@]}" "$cargo" build "${args[@]}" -p pam-gateway-cli -p pam-gateway-daemon \
            ${CROSS_EXTRA_ARGS:-}; then
        failed+=("$t")
        continue
    fi
    for n in pam_gateway pam_gateway_direct; do
        cp "$out/lib$n.so" "$out/$n.so.tmp"
        mv "$out/$n.so.tmp" "$out/$n.so"
        printf '%-40s %9d bytes\n' "$out/$n.so" "$(stat -c %s "$out/$n.so")"
    done
    printf '%-40s %9d bytes\n' "$out/pam-gateway" "$(stat -c %s "$out/pam-gateway")"
    printf '%-40s %9d bytes\n' "$out/pam-gatewayd" "$(stat -c %s "$out/pam-gatewayd")"
    if ! scripts/mkdeb.sh --arch "$arch" --bin-dir "$out" --out "$DEB_DIR"; then
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "cross: failed for: ${failed[*]}" >&2
    exit 1
fi
