#!/usr/bin/env bash
# Create or update the Python venv holding the benchmark peers (sentence-
# transformers, onnxruntime, faiss, hnswlib, bm25s, LangChain, semchunk, ...)
# from bench/py/requirements.txt.
#
#   bash bench/scripts/peers-venv.sh        # last line of stdout: the venv's python
#
# Idempotent: a stamp file holding the requirements' sha256 skips the install
# when nothing changed. The venv lives at ${CAIRN_BENCH_VENV:-~/.cache/cairn/bench-venv};
# PYTHON picks the interpreter that creates it (default python3, needs 3.11).
set -euo pipefail
cd "$(dirname "$0")/../.."
REQ=bench/py/requirements.txt
VENV=${CAIRN_BENCH_VENV:-$HOME/.cache/cairn/bench-venv}
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
