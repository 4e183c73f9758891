#!/bin/sh
# Builds the PAM module as it ships, with the release profile's fat LTO,
# and puts it at OUT_DIR/pam_gateway.so (the name it is installed under).
#   scripts/build-module.sh OUT_DIR [CARGO RUSTC ARGS...]
#   e.g. scripts/build-module.sh target/release --release --locked
# CARGO (default cargo) is the cargo to run.
#
# Why not `cargo build --lib`: the library is both a cdylib (the module) and
# an rlib (the CLI, the tests and the examples link it). Cargo runs LTO only
# on a unit whose crate types can all take it, and an rlib cannot, so
# `cargo build` links the cdylib without LTO: 3.45 MB instead of 2.65 MB
# stripped, and slower to load (BENCHMARKS.md). `cargo rustc --crate-type
# cdylib` builds the library as a cdylib alone, which cargo then LTOs.
# Its output lands at the same libpam_gateway.so path that the next
# `cargo build` overwrites with the non-LTO one, so it is copied out at once.
set -eu
[ $# -ge 1 ] || { echo "usage: $0 OUT_DIR [CARGO RUSTC ARGS...]" >&2; exit 2; }
out=$1
shift
${CARGO:-cargo} rustc "$@" --lib --crate-type cdylib
cp "$out/libpam_gateway.so" "$out/pam_gateway.so.tmp"
mv "$out/pam_gateway.so.tmp" "$out/pam_gateway.so"
echo "module: $out/pam_gateway.so, $(stat -c %s "$out/pam_gateway.so") bytes"
