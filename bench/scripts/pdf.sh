#!/usr/bin/env bash
# PDF text fidelity and speed, side by side with poppler's pdftotext and
# pypdfium2 (issue 20): six manuals Debian ships as PDF and as HTML
# (bash-doc, autoconf-doc, gnu-standards, flex-doc; downloaded with
# `apt-get download`, unpacked, not installed), each extraction scored
# against the HTML's visible text by word-4-gram F1; and pages of the Python
# docs that Chromium printed in two and three columns and with tables
# (bench/py/pdf_layouts.py), scored against the HTML they were printed from.
# Figures go to bench/results/pdf-DATE.json.
#
#   bash bench/scripts/pdf.sh [ROUNDS=3]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds="${1:-3}"
target="${CARGO_TARGET_DIR:-target}/debug"
cargo build -q -p cairn-bench
command -v pdftotext >/dev/null || { echo "pdftotext is missing: apt-get install poppler-utils" >&2; exit 1; }
docs="$HOME/.cache/cairn/pdf-corpus"
if [ ! -f "$docs/.done" ]; then
  mkdir -p "$docs/debs"
  (cd "$docs/debs" && apt-get download bash-doc autoconf-doc gnu-standards flex-doc)
  for d in "$docs"/debs/*.deb; do dpkg -x "$d" "$docs"; done
  touch "$docs/.done"
fi
venv="$HOME/.cache/cairn/pdf-venv"
[ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import pypdfium2" 2>/dev/null || {
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q pypdfium2==4.30.0
}
# Pages of the Python docs printed by Chromium in columns and with tables
# (Debian's chromium and python3.11-doc).
layouts="$HOME/.cache/cairn/pdf-layouts"
layout_args=()
if command -v chromium >/dev/null && [ -d /usr/share/doc/python3.11/html ]; then
  python3 bench/py/pdf_layouts.py --out "$layouts" >/dev/null
  layout_args=(--layouts "$layouts")
else
  echo "chromium or python3.11-doc is missing: the printed layouts are left out" >&2
fi
mkdir -p bench/results
out="bench/results/pdf-$(date +%Y%m%d-%H%M).json"
"$venv/bin/python" bench/py/pdf_fidelity.py --cairn-bench "$target/cairn-bench" \
  --docs "$docs" --rounds "$rounds" --out "$out" "${layout_args[@]}"
echo "figures: $out"
