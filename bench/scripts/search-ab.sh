#!/usr/bin/env bash
# Hybrid search latency of two builds of cairn side by side, over the three QA
# sets (EVALUATION.md shows how to make the subsets), in alternating rounds.
# Each build ingests into its own data dir (an index format may differ).
#   bash bench/scripts/search-ab.sh OLD_CAIRN NEW_CAIRN WORKDIR [ROUNDS]
# Prints per set the median over rounds of the per-question p50 `search_ms`.
set -euo pipefail
old=$1 new=$2 work=$3 rounds=${4:-3}
sets="pydocs:/tmp/pydocs-subset:eval/python-docs/qa.jsonl sqlite:/tmp/sqlite-subset:eval/sqlite-docs/qa.jsonl handbook:/tmp/debian-handbook-subset:eval/debian-handbook/qa.jsonl"
mkdir -p "$work"
for spec in $sets; do
  IFS=: read -r n c _ <<<"$spec"
  for b in old new; do
    bin=$old; [ $b = new ] && bin=$new
    "$bin" --data-dir "$work/$b" -c "$n" ingest "$c" >/dev/null
  done
done
for r in $(seq "$rounds"); do
  for spec in $sets; do
    IFS=: read -r n _ q <<<"$spec"
    for b in old new; do
      bin=$old; [ $b = new ] && bin=$new
      "$bin" --data-dir "$work/$b" -c "$n" eval --qa "$q" --mode hybrid --fresh --run "$work/$b-$n-$r.jsonl" --json >/dev/null
    done
  done
done
python3 - "$work" "$rounds" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
for n in ["pydocs", "sqlite", "handbook"]:
    row = []
    for b in ["old", "new"]:
        p50 = [statistics.median(json.loads(l)["search_ms"] for l in list(open(f"{work}/{b}-{n}-{r}.jsonl"))[1:])
               for r in range(1, rounds + 1)]
        row.append(f"{b} {statistics.median(p50):.2f} ms (rounds {', '.join(f'{x:.2f}' for x in p50)})")
    print(f"{n}: " + "; ".join(row))
PY
