#!/usr/bin/env bash
# Cairn's exact scan against the read bandwidth measured in the same process
# (`cairn-bench exact-scan`), on synthetic clustered vectors (384 dimensions):
# 100k and 1M vectors, f32 / f16 / i8 storage, one and two threads, blocks
# of 1, 4 and 8 queries; the scan as it was before (one query per pass)
# runs in the same rounds. Raw JSON goes to bench/results/exact-scan-*.json.
#   bash bench/scripts/exact-scan.sh [CAIRN_BENCH] [REPS]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-${CARGO_TARGET_DIR:-$root/target}/debug/cairn-bench}
reps=${2:-3}
threads=${THREADS:-2}
for spec in 100k:100000:64 1m:1000000:32; do
  IFS=: read -r name n nq <<<"$spec"
  out=$root/bench/results/exact-scan-$name.json
  "$bin" exact-scan --n "$n" --nq "$nq" --dim 384 --threads "$threads" --blocks 1,4,8 --reps "$reps" \
    | python3 -m json.tool > "$out"
  python3 - "$out" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"\n{d['n']:,} x {d['dim']} ({d['kernel']}), {d['queries']} queries, reps {d['reps']}: read " +
      ", ".join(f"{t} thr {v['gb_per_s_median']:.1f} GB/s (cpu-time {v['cpu_gb_per_s_median']:.1f})"
                for t, v in d["read_gb_per_s"].items()))
print("| storage | threads | block | GB/s | of read | QPS | GB/s by CPU time | of read |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
def row(name, r, block):
    print(f"| {name} | {r['threads']} | {block} | {r['gb_per_s_median']:.1f} | {r['fraction_of_read']:.0%} | "
          f"{r['qps_median']:.0f} | {r['cpu_gb_per_s_median']:.1f} | {r['cpu_fraction_of_read']:.0%} |")
for r in d["before"]:
    row("before (f32, one query per pass)", r, 1)
for r in d["scans"]:
    row(r["storage"], r, r["block"])
print("recall@k vs f32:", d["recall_at_k_vs_f32"])
PY
done
