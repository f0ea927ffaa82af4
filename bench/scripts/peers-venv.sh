#!/usr/bin/env bash
# Create or update the Python venv holding the benchmark peers (sentence-
# transformers, onnxruntime, faiss, hnswlib, bm25s, LangChain, semchunk, ...)
# from bench/py/requirements.txt.
#
#   bash bench/scripts/peers-venv.sh           # last line of stdout: the venv's python
#   bash bench/scripts/peers-venv.sh --smoke   # the light venv `run.py --smoke` needs
#
# --smoke builds a separate venv from bench/py/requirements-smoke.txt: the
# same pins without torch and the peers that need it (a few hundred MB instead
# of ~6 GB), at ${CAIRN_BENCH_SMOKE_VENV:-~/.cache/cairn/bench-venv-smoke}.
#
# Idempotent: a stamp file holding the requirements' sha256 skips the install
# when nothing changed. The venv lives at ${CAIRN_BENCH_VENV:-~/.cache/cairn/bench-venv};
# PYTHON picks the interpreter that creates it (default python3, needs 3.11).
set -euo pipefail
cd "$(dirname "$0")/../.."
case "${1:-}" in
    "")
        REQ=bench/py/requirements.txt
        VENV=${CAIRN_BENCH_VENV:-$HOME/.cache/cairn/bench-venv} ;;
    --smoke)
        REQ=bench/py/requirements-smoke.txt
        VENV=${CAIRN_BENCH_SMOKE_VENV:-$HOME/.cache/cairn/bench-venv-smoke}
        # The light list must pin what it keeps exactly as the full one does.
        pins() { sed 's/#.*//; s/[[:space:]]//g; /^$/d' "$1" | tr '[:upper:]_' '[:lower:]-' | sort; }
        drift=$(comm -23 <(pins "$REQ") <(pins bench/py/requirements.txt))
        if [[ -n "$drift" ]]; then
            echo "$REQ pins differ from bench/py/requirements.txt:" >&2
            echo "$drift" >&2
            exit 1
        fi ;;
    *)
        echo "usage: $0 [--smoke]" >&2
        exit 2 ;;
esac
PY=${PYTHON:-python3}
STAMP="$VENV/.cairn-requirements.sha256"
want=$(sha256sum "$REQ" | cut -d' ' -f1)

if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    echo "peers venv up to date: $VENV" >&2
else
    if [[ ! -x "$VENV/bin/python" ]]; then
        echo "creating peers venv at $VENV" >&2
        "$PY" -m venv "$VENV"
    fi
    # --no-cache-dir: torch and its CUDA wheels would otherwise leave GBs in ~/.cache/pip.
    "$VENV/bin/python" -m pip install -q --no-cache-dir -U pip wheel setuptools >&2
    "$VENV/bin/python" -m pip install --no-cache-dir -r "$REQ" >&2
    echo "$want" > "$STAMP"
fi
echo "$VENV/bin/python"
