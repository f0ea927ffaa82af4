#!/usr/bin/env bash
# The project's test command: installs what the tests need (system packages,
# the real models) and runs every test in the workspace.
#
# On a cold machine most of the time is compiling. What does not need the
# cargo build runs beside it, in the background: llama.cpp's llama-server
# (cmake, at the lowest CPU priority, so that it takes the cores cargo leaves
# idle and then the rest once cargo is done) and the downloads (the Python
# venvs, the web UI test's npm packages). Each is waited for, and its log
# shown if it failed, before the step that needs it.
set -euo pipefail
cd "$(dirname "$0")/.."
export CAIRN_PROFILE=dev
export CAIRN_BUILD_PACKAGES="-p cairn -p cairn-bench"
# System packages in one apt run: setup.sh's (it then finds them installed;
# the llama-server build below needs the compilers at once) and headless
# Chromium and npm for the web UI's end-to-end test.
need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || need_apt+=(libclang-dev)
[ -d /usr/share/doc/python3.11/html/library ] || need_apt+=(python3.11-doc)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
# NATS with JetStream for the cluster tests (three servers on loopback).
command -v nats-server >/dev/null 2>&1 || need_apt+=(nats-server)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing system packages: ${need_apt[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

bg_logs=$(mktemp -d)
declare -A bg_pids=()
# bg NAME CMD...: run CMD in the background, its output in a log.
bg() {
  local name=$1; shift
  ("$@") >"$bg_logs/$name.log" 2>&1 &
  bg_pids[$name]=$!
}
# wait_bg NAME: wait for it; on failure show its log and stop.
wait_bg() {
  local name=$1 pid=${bg_pids[$1]:-}
  [ -n "$pid" ] || return 0
  unset "bg_pids[$name]"
  if ! wait "$pid"; then
    echo "error: $name failed:" >&2
    tail -40 "$bg_logs/$name.log" >&2
    exit 1
  fi
  cat "$bg_logs/$name.log"
}
cleanup_bg() {
  local name
  for name in "${!bg_pids[@]}"; do kill "${bg_pids[$name]}" 2>/dev/null || true; done
  rm -rf "$bg_logs"
}
trap cleanup_bg EXIT

# llama.cpp's own server, the real OpenAI-compatible peer of the client
# tests (llama-bench, which only the generation benchmark uses, is built by
# bench/scripts/generate.sh when it is needed).
bg llama-server env CAIRN_LLAMA_TOOLS_TARGETS=llama-server nice -n 19 bash scripts/build-llama-tools.sh
# pytrec_eval (PyPI), the reference that `cairn eval`'s nDCG is checked against.
venv="$HOME/.cache/cairn/eval-venv"
eval_venv() {
  if ! "$venv/bin/python" -c "import pytrec_eval" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q pytrec_eval-terrier==0.5.11
  fi
}
bg eval-venv eval_venv
# The openai SDK, LangChain, schemathesis and playwright-core for scripts/test-server.sh.
bg client-deps bash scripts/test-server.sh --prepare

bash scripts/setup.sh
target="${CARGO_TARGET_DIR:-target}/debug"
# The Gemma 3 model (the origin design's family) for the generation tests.
"$target/cairn" models fetch gemma-3-270m
# ONNX Runtime (pip's onnxruntime wheel) and the int8 ONNX MiniLM for the
# onnx embedding backend's tests.
"$target/cairn" models fetch onnxruntime
"$target/cairn" models fetch all-MiniLM-L6-v2-int8
export CAIRN_EVAL_PYTHON="$venv/bin/python"
export CAIRN_MODELS_DIR="${CAIRN_MODELS_DIR:-$HOME/.cache/cairn/models}"
export CAIRN_TEST_CORPUS="${CAIRN_TEST_CORPUS:-/usr/share/doc/python3.11/html}"
# The test binaries compile while llama-server may still be building (with
# the cargo options given to this script, not the test binaries' ones).
cargo_args=()
for a in "$@"; do [ "$a" = "--" ] && break; cargo_args+=("$a"); done
cargo test --workspace --no-run "${cargo_args[@]}" 2>&1
wait_bg llama-server
wait_bg eval-venv
cargo test --workspace --no-fail-fast "$@" 2>&1
# The HTTP server against real clients (openai SDK, LangChain), schemathesis
# and the web UI in headless Chromium.
wait_bg client-deps
bash scripts/test-server.sh
