#!/usr/bin/env python3
"""The naive BM25 reference that Cairn's BM25 must beat on every QA set.

What a user could write in an afternoon: the visible text of each page
(tags stripped, <script>/<style> dropped), cut into fixed windows of 1,200
characters (no overlap), lowercased ASCII-alphanumeric tokens, no stemming,
no stopwords, Okapi BM25 with k1 = 1.2, b = 0.75. Each question ranks every
window; the scores are the same as `cairn eval`'s:

  passage hit@k  a window of a gold page among the top k windows
  document hit@k a gold page among the top k distinct pages (each page at
                 the rank of its best window)

Usage (standard library only):

    python3 eval/naive_bm25.py --corpus /tmp/pydocs-subset --qa eval/python-docs/qa.jsonl [--json]

Prints the overall figures and the figures per kind and per style.
"""
import argparse
import json
import math
import os
import re
import sys
from collections import Counter, defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qa_common  # noqa: E402

WINDOW = 1200
TOKEN = re.compile(r"[a-z0-9]+")


def visible_text(path):
    raw = qa_common.read_text(path)
    if not path.endswith((".html", ".htm")):
        return re.sub(r"\s+", " ", raw).strip()
    # <script>/<style> dropped, parts joined with " ", case kept.
    return qa_common.collapse(qa_common.extract_text(raw, skip=("script", "style"), sep=" "))


def tokens(s):
    return TOKEN.findall(s.lower())


def ends_with_path(doc, gold):
    return doc == gold or doc.endswith("/" + gold)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True, help="the folder that was ingested")
    ap.add_argument("--qa", required=True)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    windows = []  # (doc, tokens)
    for root, _, files in os.walk(a.corpus):
        for f in sorted(files):
            if not f.endswith((".html", ".htm", ".md", ".txt")):
                continue
            path = os.path.join(root, f)
            doc = os.path.relpath(path, a.corpus)
            text = visible_text(path)
            for i in range(0, max(len(text), 1), WINDOW):
                windows.append((doc, tokens(text[i:i + WINDOW])))
    if not windows:
        sys.exit(f"no documents under {a.corpus}")
    n = len(windows)
    df = Counter()
    tfs = []
    for _, toks in windows:
        tf = Counter(toks)
        tfs.append(tf)
        df.update(tf.keys())
    avgdl = sum(len(t) for _, t in windows) / n
    idf = {t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}
    postings = defaultdict(list)
    for i, tf in enumerate(tfs):
        for t, c in tf.items():
            postings[t].append((i, c))
    k1, b = 1.2, 0.75
    lens = [len(t) for _, t in windows]

    results = []
    for line in open(a.qa):
        if not line.strip():
            continue
        q = json.loads(line)
        scores = defaultdict(float)
        for t in set(tokens(q["question"])):
            for i, c in postings.get(t, ()):
                scores[i] += idf[t] * c * (k1 + 1) / (c + k1 * (1 - b + b * lens[i] / avgdl))
        ranked = sorted(scores, key=lambda i: (-scores[i], i))
        gold = lambda d: any(ends_with_path(d, g) for g in q["gold"])
        passages = [windows[i][0] for i in ranked[:10]]
        docs = list(dict.fromkeys(windows[i][0] for i in ranked))[:10]
        hit = lambda lst, k: float(any(gold(d) for d in lst[:k]))
        results.append({"id": q["id"], "kind": q.get("kind"), "style": q.get("style"),
                        "passage_hit@1": hit(passages, 1), "passage_hit@5": hit(passages, 5),
                        "hit@1": hit(docs, 1), "hit@5": hit(docs, 5)})

    keys = ["passage_hit@1", "passage_hit@5", "hit@1", "hit@5"]

    def summary(rs):
        return {"n": len(rs), **{k: sum(r[k] for r in rs) / max(len(rs), 1) for k in keys}}

    out = {"windows": n, "docs": len({d for d, _ in windows}), **summary(results),
           "by_kind": {k: summary([r for r in results if r["kind"] == k])
                       for k in sorted({r["kind"] for r in results if r["kind"]})},
           "by_style": {s: summary([r for r in results if r["style"] == s])
                        for s in sorted({r["style"] for r in results if r["style"]})}}
    if a.json:
        print(json.dumps(out))
        return
    print(f"naive BM25 over {out['windows']} windows of {WINDOW} characters from {out['docs']} documents")
    print(f"{'':16} {'n':>4} " + " ".join(f"{k:>14}" for k in keys))
    rows = [("all", out)] + [(f"kind {k}", v) for k, v in out["by_kind"].items()] + \
           [(f"style {k}", v) for k, v in out["by_style"].items()]
    for name, s in rows:
        print(f"{name:16} {s['n']:>4} " + " ".join(f"{s[k]:>14.3f}" for k in keys))


if __name__ == "__main__":
    main()
