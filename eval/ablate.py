#!/usr/bin/env python3
"""Run `cairn eval` for several configurations on the QA sets, side by side.

Each configuration is a TOML file (or `-` for the defaults). A configuration
whose [ingest]/[chunk] settings differ gets its own data directory, so the
collection is ingested with those settings; search-only settings share one
ingest. Every run is fresh (`--fresh --run`), so no log written with other
settings is resumed.

    python3 eval/ablate.py --cairn ./target/debug/cairn --data /tmp/ablate \\
        --set pydocs:/tmp/pydocs-subset:eval/python-docs/qa.jsonl \\
        --set sqlite:/tmp/sqlite-subset:eval/sqlite-docs/qa.jsonl \\
        --config base=- --config cap2=/tmp/cap2.toml --modes dense,bm25,hybrid [--json OUT]

Prints one markdown row per (set, configuration, mode): passage hit@1 / @5,
document hit@5, MRR@10, answer in top 5, paraphrased passage hit@1 / @5.
Standard library only.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys


def ingest_key(toml_text):
    """The [ingest] and [chunk] sections: what changes the collection."""
    keep, out = False, []
    for line in toml_text.splitlines():
        s = line.strip()
        if s.startswith("["):
            keep = s in ("[ingest]", "[chunk]", "[embed]")
        if keep:
            out.append(s)
    return hashlib.sha1("\n".join(out).encode()).hexdigest()[:10]


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr[-2000:]}")
    return p.stdout


def fmt(x):
    return "—" if x is None else f"{x:.3f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cairn", default="./target/debug/cairn")
    ap.add_argument("--data", required=True)
    ap.add_argument("--set", action="append", required=True, help="NAME:CORPUS:QA")
    ap.add_argument("--config", action="append", required=True, help="NAME=TOML or NAME=-")
    ap.add_argument("--modes", default="dense,bm25,hybrid")
    ap.add_argument("--json", help="write every summary here")
    a = ap.parse_args()

    rows, dump = [], {}
    for spec in a.set:
        name, corpus, qa = spec.split(":")
        for cspec in a.config:
            cname, path = cspec.split("=", 1)
            text = "" if path == "-" else open(path).read()
            data = os.path.join(a.data, ingest_key(text))
            base = [a.cairn, "--data-dir", data, "-c", name]
            if path != "-":
                base[1:1] = ["--config", path]
            ingest = json.loads(run(base + ["ingest", corpus, "--json"]))
            for mode in a.modes.split(","):
                runlog = os.path.join(a.data, f"run-{name}-{cname}-{mode}.jsonl")
                out = run(base + ["eval", "--qa", qa, "--mode", mode, "--json",
                                  "--fresh", "--run", runlog])
                s = json.loads(out)
                s.pop("questions", None)
                dump[f"{name}/{cname}/{mode}"] = s
                para = s.get("by_style", {}).get("paraphrased", {})
                rows.append(
                    f"| {name} | {cname} | {mode} | {fmt(s.get('passage_hit@1'))} | "
                    f"{fmt(s.get('passage_hit@5'))} | {fmt(s.get('hit@5'))} | "
                    f"{fmt(s.get('mrr@10'))} | {fmt(s.get('answer_in_top5'))} | "
                    f"{fmt(para.get('passage_hit@1'))} / {fmt(para.get('passage_hit@5'))} | "
                    f"{ingest.get('boilerplate_lines', 0)} |"
                )
                print(rows[-1], flush=True)
    print()
    print("| set | config | mode | passage hit@1 | passage hit@5 | doc hit@5 | MRR@10 | "
          "answer in top 5 | paraphrased p@1 / p@5 | boilerplate lines (this ingest) |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(r)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dump, f, indent=1)


if __name__ == "__main__":
    main()
