#!/usr/bin/env bash
# Proves the int8 engine on ARM without an ARM machine: cross-compiles kefu for
# aarch64-unknown-linux-gnu and runs, under qemu-user, the int8 kernel tests and the reference
# cosines of the real default model, once on a CPU with the dot-product extension (QEMU's
# `max`: the `neon-dotprod` kernels) and once on one without it (Cortex-A53: plain `neon`).
#
# Needs Debian's gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user, the Rust target
# (`rustup target add aarch64-unknown-linux-gnu`) and the default model (`kefu model fetch`).
# Speed under emulation says nothing about ARM hardware; only correctness is checked here.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null || missing+=(qemu-user)
if ((${#missing[@]})); then
    echo "missing Debian packages: apt-get install ${missing[*]}" >&2
    exit 1
fi
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu ||
    rustup target add aarch64-unknown-linux-gnu

target=aarch64-unknown-linux-gnu
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
export KEFU_TEST_MODEL="${KEFU_TEST_MODEL:-$PWD/models/multilingual-e5-small}"
if [[ ! -f $KEFU_TEST_MODEL/model.safetensors ]]; then
    echo "the default model is missing at $KEFU_TEST_MODEL: run \`cargo run --release -- model fetch\`" >&2
    exit 1
fi

echo "== cross-compiling for $target"
cargo build --release --locked --target "$target" --bin kefu
file "${CARGO_TARGET_DIR:-target}/$target/release/kefu"

for cpu in max cortex-a53; do
    echo "== qemu-aarch64 -cpu $cpu: int8 kernel tests"
    QEMU_CPU=$cpu cargo test --release --locked --target "$target" --lib embed:: -- --test-threads 2
    echo "== qemu-aarch64 -cpu $cpu: reference cosines of the default model (int8 engine)"
    QEMU_CPU=$cpu cargo test --release --locked --target "$target" --test model reference_cosines_kefu_engine_int8 -- --nocapture
done
