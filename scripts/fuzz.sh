#!/usr/bin/env bash
# Fuzz every loader and the chunker (cargo-fuzz: libFuzzer, nightly) for a
# bounded time each, starting from the committed seeds (fuzz/seeds/<target>)
# and real documents found on this machine. A crash, a hang (an input past
# -timeout seconds) or an input that needs more than -rss_limit_mb fails the
# run; the input is kept under fuzz/artifacts/<target>/ — commit it under
# fuzz/regressions/<target>/, where `cargo test -p cairn-ingest` loads every
# file on stable, and fix the loader.
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   bash scripts/fuzz.sh --build     # install cargo-fuzz and build only
#
# Prints executions per target; the working corpus is a temporary copy (what
# a run discovers is not kept: the seeds stay small and reviewed).
set -euo pipefail
cd "$(dirname "$0")/.."
build_only=false
if [ "${1:-}" = "--build" ]; then
  build_only=true
  shift
fi
secs=${1:-20}
shift || true
export CARGO_TARGET_DIR="${CAIRN_FUZZ_TARGET_DIR:-$HOME/.cache/cairn-fuzz/target}"
export CARGO_TERM_COLOR=never
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "error: the nightly toolchain is needed (rustup toolchain install nightly)" >&2
  exit 3
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo +stable install cargo-fuzz --locked --quiet
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
cargo +nightly fuzz build
if $build_only; then
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Real documents beside the seeds, where this machine has them.
extra() {
  case $1 in
    load_pdf) find /usr/share/doc -name '*.pdf' -size -300k 2>/dev/null | head -5 ;;
    load_html) find /usr/share/doc/python3.11/html/library -name 'os.path.html' -o -name 'venv.html' 2>/dev/null | head -2 ;;
    load_markdown|chunk) ls README.md ARCHITECTURE.md 2>/dev/null ;;
    load_text) ls /usr/share/common-licenses/MIT /usr/share/common-licenses/Apache-2.0 2>/dev/null ;;
  esac
}
printf '%-14s %12s %8s\n' target executions seconds
status=0
for t in "${targets[@]}"; do
  corpus="$work/$t"
  mkdir -p "$corpus" "fuzz/artifacts/$t"
  cp fuzz/seeds/"$t"/* "$corpus"/ 2>/dev/null || true
  cp fuzz/regressions/"$t"/* "$corpus"/ 2>/dev/null || true
  { extra "$t" || true; } | while read -r f; do [ -f "$f" ] && cp "$f" "$corpus"/ || true; done
  log="$work/$t.log"
  start=$(date +%s)
  if ! cargo +nightly fuzz run "$t" "$corpus" -- \
      -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -max_len=262144 \
      -print_final_stats=1 >"$log" 2>&1; then
    echo "error: fuzz target $t failed:" >&2
    tail -60 "$log" >&2
    status=1
  fi
  runs=$(grep -o "stat::number_of_executed_units: *[0-9]*" "$log" | grep -o "[0-9]*$" | tail -1 || true)
  printf '%-14s %12s %8s\n' "$t" "${runs:-?}" "$(( $(date +%s) - start ))"
done
exit $status
