#!/usr/bin/env bash
# Training a cross-encoder reranker: `cairn train reranker` (Rust, candle's
# autograd) against sentence-transformers' `CrossEncoder.fit` (PyTorch), side
# by side in one invocation, on the same pairs (the same questions of one
# `cairn train data` folder), base model (all-MiniLM-L6-v2), threads, batch
# size, step size, warm-up, weight decay, clipping and max length.
#
#   bash bench/scripts/rerank-train.sh [QUESTIONS=60] [THREADS=2]
#   DATA=dir bash bench/scripts/rerank-train.sh   # an existing `cairn train data` folder
#                                                 # (of the collection CAIRN_DATA_DIR holds)
#
# Without DATA it ingests the Python tutorial into a temporary data dir and
# writes heading questions from it (`--no-generate`: quick). Each side is
# timed on training alone (Cairn: tokenizing, forward and backward passes and
# optimizer steps; the peer: its `fit` call). Cairn's run also reranks the
# held-out questions and installs the result in that temporary collection.
# Writes $OUT (default bench/results/rerank-train.json).
set -euo pipefail
cd "$(dirname "$0")/../.."
n="${1:-60}"
threads="${2:-2}"
out="${OUT:-bench/results/rerank-train.json}"
source bench/scripts/train-setup.sh
export CAIRN_EMBED_THREADS="$threads" RAYON_NUM_THREADS="$threads"
echo "cairn train reranker ($n questions, $threads threads)" >&2
"$cairn" train reranker --data "$data" --max-questions "$n" --force --json > "$work/cairn.json"
echo "sentence-transformers CrossEncoder.fit" >&2
base=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["base_model"])' "$work/cairn.json")
"$py" bench/py/peers.py train-crossencoder --model "$base" \
  --data "$data/train.jsonl" --max-questions "$n" --threads "$threads" > "$work/peer.json"
mkdir -p "$(dirname "$out")"
python3 - "$work/cairn.json" "$work/peer.json" "$out" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); p = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
assert c["train_pairs"] == p["pairs"], (c["train_pairs"], p["pairs"])
ratio = c["pairs_per_second"] / p["pairs_per_second"]
res = {"pairs": c["train_pairs"], "threads": c["threads"], "mean_tokens": c["mean_tokens"],
       "cairn": {"seconds": c["train_seconds"] + c["tokenize_seconds"], "pairs_per_second": c["pairs_per_second"],
                 "held_out": c["held_out"]},
       "peer": p, "ratio": ratio}
json.dump(res, open(sys.argv[3], "w"), indent=2)
print(f"{c['train_pairs']} pairs, {c['threads']} threads: cairn {c['pairs_per_second']:.2f} pairs/s, "
      f"{p['peer']} {p['pairs_per_second']:.2f} pairs/s: {ratio:.2f}x")
PY
