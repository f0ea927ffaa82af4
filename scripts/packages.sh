# System packages, in one place. Sourced by scripts/setup.sh (build) and
# scripts/test.sh (build + tests); scripts/check-packages.py proves, on any
# machine, that every file the build runs or loads from the system belongs to
# a package named here (or to one of their dependencies).
#
# Packages are checked with `dpkg-query` by name, never by globbing for files:
# a glob for libclang once matched LLVM's libclang-cpp.so.14 on a machine
# without libclang-dev, and the build died 16 minutes in at bindgen.

# What `cargo build -p cairn` needs: a C/C++ toolchain (llama.cpp,
# tree-sitter, SQLite, ...), cmake (llama.cpp), pkg-config, and libclang for
# llama-cpp-sys-2's bindgen. python3.11-doc is the demo's corpus.
CAIRN_APT_BUILD=(build-essential g++ make pkg-config cmake libclang-dev python3.11-doc)
# What the tests need on top: headless Chromium and Node.js (with npm) for
# the web UI test, nats-server for the cluster tests, curl for the
# server-client script, Tesseract with its English data and poppler-utils'
# pdftoppm for the OCR tests (images, scanned PDF pages). Machine images that
# ship Node.js from elsewhere carry npm inside their `nodejs` package;
# Debian's is a separate package, which ensure_packages adds when there is no
# `npm` command.
CAIRN_APT_TEST=(chromium nodejs nats-server curl tesseract-ocr tesseract-ocr-eng poppler-utils)

# missing_packages PKG...: prints the packages that are not installed.
missing_packages() {
  local p status
  for p in "$@"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || echo "$p"
  done
}

# ensure_packages PKG...: installs those that are missing, in one apt run.
ensure_packages() {
  local missing=()
  mapfile -t missing < <(missing_packages "$@")
  if [[ " $* " == *" nodejs "* ]] && ! command -v npm >/dev/null 2>&1; then
    missing+=(npm)
  fi
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing system packages: ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  mapfile -t missing < <(missing_packages "$@")
  command -v npm >/dev/null 2>&1 || [[ " $* " != *" nodejs "* ]] || missing+=(npm)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "error: apt-get did not install: ${missing[*]}" >&2
    return 1
  fi
}
