#!/usr/bin/env bash
# How soon a change to a watched folder is searchable (issue 20's goal: within
# 2 s on a tutorial-sized collection): `cairn serve --watch` over a copy of
# the Python tutorial; new file, edit, rename and deletion, ROUNDS each.
# Figures go to bench/results/watch-DATE.json.
#
#   bash bench/scripts/watch.sh [ROUNDS=10]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds="${1:-10}"
target="${CARGO_TARGET_DIR:-target}/debug"
cargo build -q -p cairn
"$target/cairn" models fetch >/dev/null
mkdir -p bench/results
out="bench/results/watch-$(date +%Y%m%d-%H%M).json"
python3 bench/py/watch_latency.py --cairn "$target/cairn" \
  --corpus "${CORPUS:-/usr/share/doc/python3.11/html/tutorial}" --rounds "$rounds" --out "$out"
echo "figures: $out"
