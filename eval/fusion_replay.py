#!/usr/bin/env python3
"""Replay the dense and BM25 candidate lists of every question through
several fusion functions, to compare fusions without re-running searches.

For each question of each set, `cairn search -k 50 --json` is run once in
dense and once in BM25 mode (the collection must already be ingested, named
like the set); the lists are then fused in Python by reciprocal ranks and by
normalised scores, and passage hit@1 / hit@5 are printed per set (a passage
of a gold page first / among the first five, as `cairn eval` counts them).

    python3 eval/fusion_replay.py --cairn ./target/debug/cairn --data-dir D \\
        --set pydocs:eval/python-docs/qa.jsonl --set sqlite:eval/sqlite-docs/qa.jsonl

With `--learn NAME:DIR` (DIR written by `cairn train data` for collection
NAME: train.jsonl and held_out.jsonl, the gold page of a question being its
passage's document), the dense weight of score fusion is also chosen per
collection on its own synthetic questions (the best sum of hit@1 + hit@5
over a grid), and the set's real questions are scored with that weight, with
the default (equal weights) and with the weight that is best on the real
questions themselves (a ceiling no method without the answers can pass).

Standard library only.
"""
import argparse
import json
import statistics
import subprocess


def pull(cairn, data, name, qa, k):
    out = []
    for line in open(qa):
        q = json.loads(line)
        if "query" in q:  # a `cairn train data` line
            q = {"question": q["query"], "gold": [q["doc"]]}
        rec = {"gold": q["gold"]}
        for mode in ("dense", "bm25"):
            r = subprocess.run([cairn, "--data-dir", data, "-c", name, "search", q["question"],
                                "-k", str(k), "--mode", mode, "--json"],
                               capture_output=True, text=True, check=True)
            rec[mode] = [(h["chunk"], h["doc"], h["score"]) for h in json.loads(r.stdout)["hits"]]
        out.append(rec)
    return out


def is_gold(doc, gold):
    return any(doc.endswith(g) for g in gold)


def rrf(q, k):
    acc = {}
    for lst in (q["dense"], q["bm25"]):
        for r, (c, _, _) in enumerate(lst):
            acc[c] = acc.get(c, 0) + 1 / (k + r + 1)
    return sorted(acc, key=lambda c: (-acc[c], c))


def convex(q, alpha, norm):
    def nz(lst):
        if not lst:
            return {}
        sc = [s for _, _, s in lst]
        if norm == "max":
            hi = max(sc)
            return {c: s / hi if hi > 0 else 0.0 for c, _, s in lst}
        if norm == "minmax":
            lo, hi = min(sc), max(sc)
            return {c: (s - lo) / (hi - lo) if hi > lo else 1.0 for c, _, s in lst}
        m, sd = statistics.mean(sc), statistics.pstdev(sc) or 1.0
        return {c: (s - m) / sd for c, _, s in lst}
    d, b = nz(q["dense"]), nz(q["bm25"])
    fd = min(d.values()) if d else 0.0
    fb = min(b.values()) if b else 0.0
    acc = {c: alpha * d.get(c, fd) + (1 - alpha) * b.get(c, fb) for c in set(d) | set(b)}
    return sorted(acc, key=lambda c: (-acc[c], c))


def score(qs, fuse):
    h1 = h5 = 0
    for q in qs:
        docs = {c: d for c, d, _ in q["dense"] + q["bm25"]}
        r = fuse(q)
        h1 += bool(r) and is_gold(docs[r[0]], q["gold"])
        h5 += any(is_gold(docs[c], q["gold"]) for c in r[:5])
    return h1 / len(qs), h5 / len(qs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cairn", default="./target/debug/cairn")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--set", action="append", required=True, help="NAME:QA (collection NAME)")
    ap.add_argument("-k", type=int, default=50)
    ap.add_argument("--learn", action="append", default=[],
                    help="NAME:DIR (`cairn train data --out DIR` of collection NAME)")
    a = ap.parse_args()
    sets = {}
    for spec in a.set:
        name, qa = spec.split(":", 1)
        sets[name] = pull(a.cairn, a.data_dir, name, qa, a.k)
    if a.learn:
        learn(a, sets)
        return
    fusions = {"dense": lambda q: [c for c, _, _ in q["dense"]],
               "bm25": lambda q: [c for c, _, _ in q["bm25"]]}
    for k in (5, 10, 20, 60):
        fusions[f"rrf k={k}"] = lambda q, k=k: rrf(q, k)
    for norm in ("max", "minmax", "z"):
        for alpha in (0.3, 0.4, 0.5, 0.6, 0.7):
            fusions[f"{norm} dense={alpha}"] = lambda q, n=norm, al=alpha: convex(q, al, n)
    print("fusion | " + " | ".join(sets) + " | sum of hit@1 + hit@5")
    for name, fuse in fusions.items():
        row = [score(qs, fuse) for qs in sets.values()]
        cells = " | ".join(f"{h1:.3f} / {h5:.3f}" for h1, h5 in row)
        print(f"{name} | {cells} | {sum(h1 + h5 for h1, h5 in row):.3f}")


def learn(a, sets):
    """Per collection: the dense weight chosen on its synthetic questions,
    against the default and the ceiling, on its real questions."""
    grid = [i / 20 for i in range(4, 17)]  # dense weight 0.20 .. 0.80
    print("set | synthetic questions | weight learned | real: default | real: learned | real: best weight (ceiling)")
    for spec in a.learn:
        name, d = spec.split(":", 1)
        synth = []
        for part in ("train.jsonl", "held_out.jsonl"):
            synth += pull(a.cairn, a.data_dir, name, f"{d}/{part}", a.k)

        def best(qs):
            return max(grid, key=lambda al: (sum(score(qs, lambda q: convex(q, al, "max"))), -abs(al - 0.5)))

        w = best(synth)
        real = sets[name]
        cell = lambda al: "%.3f / %.3f" % score(real, lambda q: convex(q, al, "max"))
        top = best(real)
        print(f"{name} | {len(synth)} | dense {w:.2f} | {cell(0.5)} | {cell(w)} | {cell(top)} (dense {top:.2f})")


if __name__ == "__main__":
    main()
