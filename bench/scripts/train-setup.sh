# Sourced by the training benchmarks (rerank-train.sh, generator-train.sh):
# builds cairn with training, fetches its models, prepares the peers' venv
# and a scratch folder, and sets
#   cairn  the binary        py    the peers' python
#   work   a scratch folder, removed on exit
#   data   `cairn train data`'s folder: $DATA, or heading questions written
#          from the Python tutorial ingested into a scratch data dir
target="${CARGO_TARGET_DIR:-target}/debug"
cargo build -q -p cairn --features train
cairn="$target/cairn"
"$cairn" models fetch >/dev/null
py=$(bash bench/scripts/peers-venv.sh | tail -1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
data="${DATA:-}"
if [ -z "$data" ]; then
  export CAIRN_DATA_DIR="$work/data"
  "$cairn" ingest --json "${CORPUS:-/usr/share/doc/python3.11/html}/tutorial" >/dev/null
  data="$work/train-data"
  "$cairn" train data --out "$data" --no-generate --json >/dev/null
fi
