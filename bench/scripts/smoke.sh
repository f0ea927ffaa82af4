#!/usr/bin/env bash
# Every side-by-side benchmark at tiny sizes, one round: checks that the
# harness, the peers and `cairn-bench` still run together (CI runs this after
# the tests; no figure from it means anything).
set -euo pipefail
cd "$(dirname "$0")/../.."
py=$(bash bench/scripts/peers-venv.sh | tail -1)
cargo build -p cairn -p cairn-bench
target="${CARGO_TARGET_DIR:-target}/debug"
"$target/cairn" models fetch onnxruntime
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$py" bench/py/run.py all --smoke --workdir "$work" \
  --cairn-bench "$target/cairn-bench" --cairn "$target/cairn"
