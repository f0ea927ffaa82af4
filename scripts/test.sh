#!/usr/bin/env bash
# The project's test command: installs what the tests need (system packages,
# the real models) and runs every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
export CAIRN_PROFILE=dev
export CAIRN_BUILD_PACKAGES="-p cairn -p cairn-bench"
bash scripts/setup.sh
# Headless Chromium and npm for the web UI's end-to-end test.
need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
target="${CARGO_TARGET_DIR:-target}/debug"
# The Gemma 3 model (the origin design's family) for the generation tests.
"$target/cairn" models fetch gemma-3-270m
# ONNX Runtime (pip's onnxruntime wheel) and the int8 ONNX MiniLM for the
# onnx embedding backend's tests.
"$target/cairn" models fetch onnxruntime
"$target/cairn" models fetch all-MiniLM-L6-v2-int8
# llama.cpp's own server, the real OpenAI-compatible peer of the client tests.
bash scripts/build-llama-tools.sh
# pytrec_eval (PyPI), the reference that `cairn eval`'s nDCG is checked against.
venv="$HOME/.cache/cairn/eval-venv"
if ! "$venv/bin/python" -c "import pytrec_eval" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q pytrec_eval-terrier==0.5.11
fi
export CAIRN_EVAL_PYTHON="$venv/bin/python"
export CAIRN_MODELS_DIR="${CAIRN_MODELS_DIR:-$HOME/.cache/cairn/models}"
export CAIRN_TEST_CORPUS="${CAIRN_TEST_CORPUS:-/usr/share/doc/python3.11/html}"
cargo test --workspace --no-fail-fast "$@" 2>&1
# The HTTP server against real clients (openai SDK, LangChain), schemathesis
# and the web UI in headless Chromium.
bash scripts/test-server.sh
