#!/usr/bin/env bash
# Generation speed, Cairn's embedded engine vs llama.cpp's own llama-bench,
# side by side on this machine: same GGUF, same threads, runs alternated.
#
#   bash bench/scripts/generate.sh [MODEL.gguf ...]     (default: SmolLM2 and Gemma 3 270M)
#
# Two llama-bench builds are run:
#   - llama-bench(cairn libs): llama-bench.cpp linked against the very static
#     llama.cpp libraries cargo built for Cairn (llama-cpp-sys-2's vendored
#     source), so both sides run identical kernels;
#   - llama-bench(release): the Release build from scripts/build-llama-tools.sh
#     (llama-cpp-python's vendored llama.cpp, built with cmake's defaults).
# Prints one JSON line per run and a summary table with the ratios.
set -euo pipefail
cd "$(dirname "$0")/../.."
THREADS=${THREADS:-$(nproc)}
REPS=${REPS:-3}
P=${P:-512}
N=${N:-128}
MODELS=("$@")
if [[ ${#MODELS[@]} -eq 0 ]]; then
    M=${CAIRN_MODELS_DIR:-$HOME/.cache/cairn/models}
    MODELS=("$M/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf" "$M/gemma-3-270m/gemma-3-270m-q4_k_m.gguf")
fi
TARGET=${CARGO_TARGET_DIR:-target}
cargo build -q -p cairn-bench
bash scripts/build-llama-tools.sh >/dev/null
TOOLS=${CAIRN_LLAMA_TOOLS:-$HOME/.cache/cairn/llama-tools/bin}

# llama-bench linked against Cairn's own llama.cpp libraries.
OUT=$(dirname "$(ls -t "$TARGET"/debug/build/llama-cpp-sys-2-*/out/build/src/libllama.a | head -1)")/..
SYS=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/llama-cpp-sys-2-*/llama.cpp | tail -1)
LB_SRC=$(ls -d "$HOME"/.cache/cairn/llama-tools/src-*/vendor/llama.cpp/tools/llama-bench | tail -1)
LB_CAIRN="$TARGET/llama-bench-cairn"
if [[ ! -x "$LB_CAIRN" || "$OUT/src/libllama.a" -nt "$LB_CAIRN" ]]; then
    g++ -O3 -std=c++17 -I"$OUT/../include" -I"$SYS/include" -I"$SYS/ggml/include" -I"$SYS/common" -I"$SYS/vendor" -I"$LB_SRC" \
        "$LB_SRC/llama-bench.cpp" "$LB_SRC/main.cpp" -o "$LB_CAIRN" \
        -Wl,--start-group "$OUT"/common/libllama-common.a "$OUT"/common/libllama-common-base.a "$OUT"/src/libllama.a \
        "$OUT"/ggml/src/libggml.a "$OUT"/ggml/src/libggml-cpu.a "$OUT"/ggml/src/libggml-base.a \
        "$OUT"/vendor/cpp-httplib/libcpp-httplib.a "$OUT"/vendor/hash/libvendor-hash.a -Wl,--end-group \
        -fopenmp -lpthread -lssl -lcrypto
fi

results=$(mktemp)
for model in "${MODELS[@]}"; do
    for rep in $(seq "$REPS"); do
        "$TARGET"/debug/cairn-bench generate --model "$model" --threads "$THREADS" -p "$P" -n "$N" 2>/dev/null |
            python3 -c "import json,sys; d=json.load(sys.stdin); print(json.dumps({'who':'cairn','model':'$(basename "$model")','pp':d['pp_tok_s'],'tg':d['tg_tok_s'],'ttft_ms':d['rag_ttft_ms_median'],'rag_tokens':d['rag_prompt_tokens']}))" | tee -a "$results"
        for lb in "$LB_CAIRN:llama-bench(cairn libs)" "$TOOLS/llama-bench:llama-bench(release)"; do
            bin=${lb%%:*}; who=${lb#*:}
            "$bin" -m "$model" -t "$THREADS" -p "$P" -n "$N" -r 1 -o json 2>/dev/null |
                python3 -c "
import json,sys
rows=json.load(sys.stdin); r={x['n_prompt']>0 and 'pp' or 'tg': x['avg_ts'] for x in rows}
print(json.dumps({'who':'$who','model':'$(basename "$model")','pp':r['pp'],'tg':r['tg']}))" | tee -a "$results"
        done
    done
done
python3 - "$results" "$THREADS" "$P" "$N" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
threads, p, n = sys.argv[2:5]
print(f"\nmedians over runs, {threads} threads, pp{p} / tg{n} (tokens/s):")
print(f"{'model':40} {'who':26} {'pp':>9} {'tg':>9}")
for model in dict.fromkeys(r['model'] for r in rows):
    med = {}
    for who in dict.fromkeys(r['who'] for r in rows):
        rs = [r for r in rows if r['model'] == model and r['who'] == who]
        med[who] = (statistics.median(r['pp'] for r in rs), statistics.median(r['tg'] for r in rs))
        print(f"{model:40} {who:26} {med[who][0]:9.1f} {med[who][1]:9.1f}")
    c = med['cairn']
    for who, (pp, tg) in med.items():
        if who != 'cairn':
            print(f"{'':40} cairn / {who:18} {c[0]/pp:8.2f}x {c[1]/tg:8.2f}x")
    ttft = statistics.median(r['ttft_ms'] for r in rows if r['model'] == model and r['who'] == 'cairn')
    toks = [r['rag_tokens'] for r in rows if r['model'] == model and r['who'] == 'cairn'][0]
    print(f"{'':40} cairn time to first token, {toks}-token RAG prompt: {ttft:.0f} ms")
PY
