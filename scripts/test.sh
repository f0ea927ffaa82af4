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
# Every cargo run below builds the binary with training (`cairn train
# reranker`), off in the default build, so that it is built once.
export CAIRN_FEATURES=cairn/train
features=(--features "$CAIRN_FEATURES")
# System packages in one apt run: setup.sh's (it then finds them installed;
# the llama-server build below needs the compilers at once) and the tests'.
. scripts/packages.sh
ensure_packages "${CAIRN_APT_BUILD[@]}" "${CAIRN_APT_TEST[@]}"
# Fails, on any machine, when the build or the tests use a system file that
# no package named in scripts/packages.sh brings in.
python3 scripts/check-packages.py
# ... and the check bites: without libclang-dev in the list it must fail
# here too, although the package is installed on this machine.
if python3 scripts/check-packages.py --without libclang-dev >/dev/null 2>&1; then
  echo "error: scripts/check-packages.py passed without libclang-dev in the list" >&2
  exit 1
fi

# House rules: formatting first (a second), lints after the build below.
cargo fmt --all -- --check

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
# The openai SDK, LangChain, LlamaIndex, schemathesis and playwright-core for scripts/test-server.sh.
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
cargo test --workspace "${features[@]}" --no-run "${cargo_args[@]}" 2>&1
# Lints on every target, warnings as errors (while llama-server may still
# be building).
cargo clippy --workspace "${features[@]}" --all-targets -- -D warnings 2>&1
wait_bg llama-server
wait_bg eval-venv
# The cluster tests (crates/cairn/tests/cluster.rs: NATS servers and nodes
# as processes, one test at a time) spend most of their minutes waiting for
# those processes, so they run beside the rest of the suite: their test
# binary directly (a second cargo would wait for the first's lock), from
# the package's folder as cargo would, and the workspace run skips them by
# their exact names.
test_args=()
seen_dashes=""
for a in "$@"; do
  if [ -n "$seen_dashes" ]; then test_args+=("$a"); elif [ "$a" = "--" ]; then seen_dashes=1; fi
done
if [ ${#test_args[@]} -gt 0 ]; then
  # Test filters given: one run, as cargo would.
  cargo test --workspace "${features[@]}" --no-fail-fast "$@" 2>&1
else
  cluster_bin=$(cargo test -p cairn "${features[@]}" --test cluster --no-run --message-format=json "${cargo_args[@]}" 2>/dev/null |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "cluster" and m.get("executable"):
        print(m["executable"])')
  cluster_skip=()
  for t in $(grep -A1 '^#\[test\]' crates/cairn/tests/cluster.rs | sed -n 's/^fn \([a-z0-9_]*\).*/\1/p'); do
    # An exact skip would also skip a test of that name elsewhere: there is none.
    if grep -rlw --include='*.rs' "fn $t" crates bench | grep -vq '^crates/cairn/tests/cluster.rs$'; then
      echo "error: the cluster test name $t is used outside crates/cairn/tests/cluster.rs" >&2
      exit 1
    fi
    cluster_skip+=(--skip "$t")
  done
  if [ -z "$cluster_bin" ] || [ ${#cluster_skip[@]} -eq 0 ]; then
    echo "error: the cluster tests' binary or names were not found" >&2
    exit 1
  fi
  cluster_log=$(mktemp)
  (cd crates/cairn && "$cluster_bin") >"$cluster_log" 2>&1 &
  cluster_pid=$!
  tests_rc=0
  cargo test --workspace "${features[@]}" --no-fail-fast "${cargo_args[@]}" -- --exact "${cluster_skip[@]}" 2>&1 || tests_rc=$?
  cluster_rc=0
  wait "$cluster_pid" || cluster_rc=$?
  echo "     Running tests/cluster.rs (beside the rest of the suite)"
  cat "$cluster_log"
  if [ "$tests_rc" != 0 ] || [ "$cluster_rc" != 0 ]; then
    echo "error: tests failed (workspace: exit $tests_rc; cluster tests: exit $cluster_rc)" >&2
    exit 1
  fi
fi
# The candle backend (GPU builds) is not in the default build: its own tests,
# and the check that the ONNX graph Cairn writes gives candle's vectors (so
# collections embedded by the old default keep working).
cargo test -p cairn-models --features candle,ort --no-fail-fast "$@" 2>&1
# The HTTP server against real clients (openai SDK, LangChain), schemathesis
# and the web UI in headless Chromium.
wait_bg client-deps
bash scripts/test-server.sh
