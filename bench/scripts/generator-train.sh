#!/usr/bin/env bash
# Training the generator's LoRA: `cairn train generator` (Rust, candle's
# autograd, F32) against PEFT's LoRA on transformers' Llama (PyTorch, CPU,
# F32), side by side in one invocation, on the same examples: Cairn writes
# them (`--export`: token ids and where each answer starts) and both sides
# train on exactly those ids, from the same GGUF weights (transformers
# dequantises them), with the same adapters (rank, alpha, the 7 linear
# layers of the last N blocks), loss on the answer tokens only, AdamW
# without weight decay, warm-up then linear decay, 4 examples a step,
# clipping at 1, the same number of epochs and threads.
#
#   bash bench/scripts/generator-train.sh [EXAMPLES=16] [THREADS=2] [EPOCHS=2]
#   DATA=dir bash bench/scripts/generator-train.sh   # an existing `cairn train data` folder
#                                                    # (of the collection CAIRN_DATA_DIR holds)
#
# Without DATA it ingests the Python tutorial into a temporary data dir and
# writes heading questions from it (`--no-generate`: quick). Timed on each
# side: training tokens x epochs over the training (Cairn: the frozen
# blocks' one pass over the training and held-out examples, and the epochs'
# forward and backward passes and optimiser steps; the peer: its forward
# and backward passes and optimiser steps). Held-out losses are measured
# outside the timing on both sides; the untrained one must agree, which
# checks that both run the same model on the same data. Cairn's run is a
# --dry-run: nothing is installed. Writes $OUT (default
# bench/results/generator-train.json).
set -euo pipefail
cd "$(dirname "$0")/../.."
n="${1:-16}"
threads="${2:-2}"
epochs="${3:-2}"
out="${OUT:-bench/results/generator-train.json}"
source bench/scripts/train-setup.sh
export CAIRN_THREADS="$threads" CAIRN_EMBED_THREADS="$threads" RAYON_NUM_THREADS="$threads"
common=(--data "$data" --max-examples "$n" --epochs "$epochs")
"$cairn" train generator "${common[@]}" --export "$work/examples.jsonl" --json > "$work/export.json"
echo "cairn train generator ($n examples, $epochs epochs, $threads threads)" >&2
"$cairn" train generator "${common[@]}" --dry-run --json > "$work/cairn.json"
gguf=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["model_path"])' "$work/export.json")
echo "PEFT LoRA on transformers ($gguf)" >&2
"$py" bench/py/peers.py train-lora --examples "$work/examples.jsonl" --gguf "$gguf" \
  --epochs "$epochs" --threads "$threads" > "$work/peer.json"
mkdir -p "$(dirname "$out")"
python3 - "$work/cairn.json" "$work/peer.json" "$out" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); p = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
f = c["figures"]
assert f["train_tokens"] == p["train_tokens"], (f["train_tokens"], p["train_tokens"])
assert f["trainable_parameters"] == p["trainable_parameters"], (f["trainable_parameters"], p["trainable_parameters"])
v0c, v0p = f["validation_loss"][0], p["validation_loss"][0]
# The same weights and ids: the untrained held-out losses agree up to
# floating-point order (a wrong model or data would differ by far more).
assert abs(v0c - v0p) < 0.02 * v0p, (v0c, v0p)
ratio = f["tokens_per_second"] / p["tokens_per_second"]
res = {"examples": f["train_examples"], "held_out": f["validation_examples"],
       "train_tokens": f["train_tokens"], "epochs": f["epochs"], "threads": p["threads"],
       "trainable_parameters": p["trainable_parameters"],
       "cairn": {"tokens_per_second": f["tokens_per_second"],
                 "seconds": f["train_seconds"] + f["prefix_seconds"],
                 "prefix_seconds": f["prefix_seconds"], "frozen_blocks": f["frozen_blocks"],
                 "epoch_loss": f["epoch_loss"], "validation_loss": f["validation_loss"]},
       "peer": {"name": p["peer"], "torch": p["torch"], "tokens_per_second": p["tokens_per_second"],
                "seconds": p["seconds"], "epoch_loss": p["epoch_loss"],
                "validation_loss": p["validation_loss"]},
       "ratio": ratio}
json.dump(res, open(sys.argv[3], "w"), indent=2)
print(f"cairn {f['tokens_per_second']:.1f} tokens/s ({res['cairn']['seconds']:.0f} s), "
      f"PEFT {p['tokens_per_second']:.1f} tokens/s ({p['seconds']:.0f} s): {ratio:.2f}x; "
      f"held-out loss cairn {' -> '.join(f'{x:.3f}' for x in f['validation_loss'])}, "
      f"PEFT {' -> '.join(f'{x:.3f}' for x in p['validation_loss'])}")
PY
