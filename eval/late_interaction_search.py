#!/usr/bin/env python3
"""Passage MRR@10 and the time of a search, with and without a rerank by the
late-interaction critic (EVALUATION.md, "Late interaction (MaxSim) reranking
with the embedding model").

For every question of each set, `cairn search QUESTION -k 10 --json --mode
MODE` runs twice back to back, as it is and with `--rerank --critic
late-interaction`; a passage hits when its document ends with one of the
question's gold pages (as `cairn eval` counts it). The time is the wall time
of the search process, model loading included, so the difference of the two
is what the rerank costs.

  python3 eval/late_interaction_search.py --cairn ./target/debug/cairn \
      --data-dir D --set pydocs:eval/python-docs/qa.jsonl \
      --set sqlite:eval/sqlite-docs/qa.jsonl
"""
import argparse
import json
import subprocess
import time


def run_set(a, name, qa):
    qs = [json.loads(line) for line in open(qa) if line.strip()]
    ranks = {"plain": [], "late-interaction": []}
    secs = {"plain": 0.0, "late-interaction": 0.0}
    for q in qs:
        for tag, extra in (("plain", []),
                           ("late-interaction", ["--rerank", "--critic", "late-interaction"])):
            cmd = [a.cairn, "--data-dir", a.data_dir, "-c", name, "search", q["question"],
                   "-k", "10", "--json", "--mode", a.mode] + extra
            t0 = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            secs[tag] += time.perf_counter() - t0
            docs = [h["doc"] for h in json.loads(out)["hits"]]
            ranks[tag].append(next((i + 1 for i, d in enumerate(docs)
                                    if any(d.endswith(g) for g in q["gold"])), None))
    n = len(qs)
    result = {"set": name, "mode": a.mode, "n": n}
    for tag, r in ranks.items():
        result[tag] = {
            "passage_mrr@10": sum(1 / x for x in r if x) / n,
            "passage_hit@1": sum(1 for x in r if x == 1) / n,
            "passage_hit@5": sum(1 for x in r if x and x <= 5) / n,
            "ms_per_search_process": 1000 * secs[tag] / n,
        }
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cairn", default="./target/debug/cairn")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--mode", default="hybrid")
    ap.add_argument("--set", action="append", required=True, help="collection:qa.jsonl")
    a = ap.parse_args()
    for spec in a.set:
        name, qa = spec.split(":", 1)
        print(json.dumps(run_set(a, name, qa)), flush=True)


if __name__ == "__main__":
    main()
