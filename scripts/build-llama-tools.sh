#!/usr/bin/env bash
# Build llama.cpp's own `llama-server` and `llama-bench`, the peers that the
# OpenAI-client test and the generation benchmark run Cairn against.
#
# The llama.cpp that Cairn embeds comes from the llama-cpp-sys-2 crate, which
# vendors only the library (src/, ggml/, common/), not the tools. The tools are
# therefore built from the full llama.cpp tree inside the llama-cpp-python
# source distribution on PyPI (pinned by version and SHA-256 below). The
# benchmark additionally links llama-bench against the very static libraries
# cargo built for Cairn (bench/generate.sh), so that kernels are identical.
#
# Output: $CAIRN_LLAMA_TOOLS (default ~/.cache/cairn/llama-tools/bin). A stamp
# skips the build when the pinned version is already there.
#
# CAIRN_LLAMA_TOOLS_TARGETS (default "llama-server llama-bench") names the
# tools to build: the tests need only llama-server (scripts/test.sh), the
# generation benchmark llama-bench too; a later call with more tools reuses
# the build directory and compiles only what is missing.
set -euo pipefail

PY_VER=0.3.36
PY_SHA=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
ROOT=${CAIRN_LLAMA_TOOLS_ROOT:-$HOME/.cache/cairn/llama-tools}
BIN=${CAIRN_LLAMA_TOOLS:-$ROOT/bin}
# The build's flavour is part of the stamp: tools built before AMX was
# switched off are rebuilt.
STAMP="llama-cpp-python-$PY_VER-no-amx"
read -r -a TARGETS <<< "${CAIRN_LLAMA_TOOLS_TARGETS:-llama-server llama-bench}"

have_all=1
for t in "${TARGETS[@]}"; do [[ -x "$BIN/$t" ]] || have_all=0; done
if [[ -f "$BIN/stamp" && "$(cat "$BIN/stamp")" == "$STAMP" && $have_all == 1 ]]; then
    echo "llama.cpp tools ($STAMP: ${TARGETS[*]}) already built in $BIN"
    exit 0
fi
# Another version's tools must not pass for this one's.
if [[ -f "$BIN/stamp" && "$(cat "$BIN/stamp")" != "$STAMP" ]]; then
    rm -f "$BIN/stamp" "$BIN/llama-server" "$BIN/llama-bench"
fi

for tool in cmake g++; do
    command -v "$tool" >/dev/null || { echo "error: $tool is needed (apt-get install cmake g++)" >&2; exit 1; }
done

mkdir -p "$ROOT" "$BIN"
SDIST="$ROOT/llama_cpp_python-$PY_VER.tar.gz"
if [[ ! -f "$SDIST" ]] || ! echo "$PY_SHA  $SDIST" | sha256sum -c --status; then
    echo "downloading llama-cpp-python $PY_VER source from the package index"
    INDEX=${CAIRN_PYPI_INDEX:-${PIP_INDEX_URL:-https://pypi.org/simple}}
    URL=$(curl -fsSL -H "Accept: application/vnd.pypi.simple.v1+json" "${INDEX%/}/llama-cpp-python/" |
        python3 -c "import json,sys; d=json.load(sys.stdin); print([f['url'] for f in d['files'] if f['filename']=='llama_cpp_python-$PY_VER.tar.gz'][0])")
    curl -fsSL -o "$SDIST.part" "$URL"
    echo "$PY_SHA  $SDIST.part" | sha256sum -c --status || { echo "error: checksum mismatch for $URL" >&2; exit 1; }
    mv "$SDIST.part" "$SDIST"
fi

SRC="$ROOT/src-$PY_VER"
if [[ ! -f "$SRC/vendor/llama.cpp/CMakeLists.txt" ]]; then
    rm -rf "$SRC" && mkdir -p "$SRC"
    tar xzf "$SDIST" -C "$SRC" --strip-components=1
fi

# The CPU's instruction sets, but never AMX: on a CPU that reports AMX
# (Sapphire Rapids and later), -march=native compiles ggml's AMX backend,
# and llama-server then dies with SIGSEGV in ggml_backend_amx_mul_mat on its
# first decode where the kernel or the hypervisor does not enable the AMX
# tile state (seen on a Firecracker VM). So on x86-64 the features are named
# one by one from /proc/cpuinfo instead of -march=native.
ISA=(-DGGML_NATIVE=ON)
if [[ "$(uname -m)" == x86_64 && -r /proc/cpuinfo ]]; then
    flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
    has() { for f in "$@"; do [[ "$flags" == *" $f "* ]] || { echo OFF; return; }; done; echo ON; }
    ISA=(-DGGML_NATIVE=OFF -DGGML_SSE42="$(has sse4_2)" -DGGML_AVX="$(has avx)" -DGGML_AVX2="$(has avx2)"
         -DGGML_FMA="$(has fma)" -DGGML_F16C="$(has f16c)" -DGGML_BMI2="$(has bmi2)"
         -DGGML_AVX_VNNI="$(has avx_vnni)"
         -DGGML_AVX512="$(has avx512f avx512cd avx512vl avx512dq avx512bw)"
         -DGGML_AVX512_VBMI="$(has avx512vbmi)" -DGGML_AVX512_VNNI="$(has avx512_vnni)"
         -DGGML_AVX512_BF16="$(has avx512_bf16)"
         -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF)
fi

BUILD="$ROOT/build-$PY_VER"
JOBS=${CAIRN_BUILD_JOBS:-$(nproc)}
cmake -S "$SRC/vendor/llama.cpp" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
    -DBUILD_SHARED_LIBS=OFF "${ISA[@]}" >"$ROOT/cmake.log" 2>&1 || { tail -30 "$ROOT/cmake.log" >&2; exit 1; }
cmake --build "$BUILD" --target "${TARGETS[@]}" -j "$JOBS" >"$ROOT/build.log" 2>&1 || { tail -40 "$ROOT/build.log" >&2; exit 1; }
for t in "${TARGETS[@]}"; do cp "$BUILD/bin/$t" "$BIN/"; done
echo "$STAMP" > "$BIN/stamp"
echo "built ${TARGETS[*]} ($STAMP) in $BIN"
