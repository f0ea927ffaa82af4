#!/usr/bin/env bash
# Does background ingestion hurt queries? (issue 18's goal: search p99 while
# `cairn serve` ingests at most 2× its p99 when idle.) `cairn serve --watch`
# over the Python tutorial; PAGES library pages are dropped into the watched
# folder and searched against while they are ingested, for each server
# variant (`low`: background ingestion niced, the default; `normal`: at the
# queries' priority), alternating, ROUNDS rounds. Figures go to
# bench/results/interference-DATE.json.
#
#   bash bench/scripts/interference.sh [ROUNDS=3] [SECONDS=30]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds="${1:-3}"
secs="${2:-30}"
target="${CARGO_TARGET_DIR:-target}/debug"
cargo build -q -p cairn
"$target/cairn" models fetch >/dev/null
mkdir -p bench/results
out="bench/results/interference-$(date +%Y%m%d-%H%M).json"
python3 bench/py/ingest_interference.py --cairn "$target/cairn" \
  --corpus "${CORPUS:-/usr/share/doc/python3.11/html}" --rounds "$rounds" --seconds "$secs" \
  --pages "${PAGES:-40}" --asks "${ASKS:-2}" --out "$out"
echo "figures: $out"
