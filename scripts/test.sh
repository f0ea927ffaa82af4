#!/usr/bin/env bash
# The project's test command: installs what the tests need (system packages,
# the real models) and runs every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
export CAIRN_PROFILE=dev
bash scripts/setup.sh
export CAIRN_MODELS_DIR="${CAIRN_MODELS_DIR:-$HOME/.cache/cairn/models}"
export CAIRN_TEST_CORPUS="${CAIRN_TEST_CORPUS:-/usr/share/doc/python3.11/html}"
cargo test --workspace --no-fail-fast "$@" 2>&1
