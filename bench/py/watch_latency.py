"""How soon a change to a watched folder is searchable: `cairn serve --watch`
over a copy of a corpus; each round writes a change (a new file, an edit of
an existing page, a rename, a deletion) and polls `/api/search` (BM25, k=1)
every 20 ms until the change shows. Time from the write's return to the
first answer that shows it; medians over ROUNDS rounds per kind.

    python3 bench/py/watch_latency.py --cairn BIN --corpus DIR --rounds 10 --out F.json
"""

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

WORDS = ["quokka", "heron", "kestrel", "varne", "selby", "orrin", "marram", "tidewrack"]


def search(url, q):
    u = f"{url}/api/search?" + urllib.parse.urlencode({"q": q, "k": 1, "mode": "bm25"})
    with urllib.request.urlopen(u, timeout=30) as r:
        hits = json.load(r)["hits"]
    return hits[0]["doc"] if hits else None


def wait_until(pred, timeout=60.0):
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            return None
        time.sleep(0.02)
    return time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cairn", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    work = tempfile.mkdtemp()
    tree = os.path.join(work, "tree")
    shutil.copytree(a.corpus, tree)
    pages = sorted(p for p in os.listdir(tree) if p.endswith(".html"))
    log = open(os.path.join(work, "serve.log"), "w+")
    env = dict(os.environ)
    env.pop("CAIRN_API_KEY", None)
    srv = subprocess.Popen(
        [a.cairn, "--data-dir", os.path.join(work, "data"), "serve",
         "--addr", "127.0.0.1:0", "--watch", tree],
        stderr=log, env=env)
    try:
        url = None
        t0 = time.monotonic()
        while url is None and time.monotonic() - t0 < 300:
            log.seek(0)
            m = re.search(r"listening on (http://[0-9.:]+)", log.read())
            url = m.group(1) if m else None
            time.sleep(0.1)
        assert url, "cairn serve did not start"
        # The start-up rescan: every page searchable.
        log.seek(0)
        t_scan = wait_until(lambda: "watch: rescan" in (log.seek(0) or log.read()), 600)
        assert t_scan is not None, "the start-up rescan did not finish"
        results = {"new file": [], "edit": [], "rename": [], "delete": []}
        for i in range(a.rounds):
            word = f"{WORDS[i % len(WORDS)]}{i}zq"
            # A new file.
            path = os.path.join(tree, f"note-{i}.md")
            with open(path, "w") as f:
                f.write(f"# Note {i}\n\nThe {word} nests on the estuary.\n")
            results["new file"].append(wait_until(lambda: search(url, word) == f"note-{i}.md"))
            # An edit of a real page: a sentence appended to its body.
            page = os.path.join(tree, pages[i % len(pages)])
            edit = f"edit{i}qz"
            with open(page) as f:
                html = f.read()
            with open(page, "w") as f:
                f.write(html.replace("</body>", f"<p>The {edit} marker.</p></body>", 1))
            results["edit"].append(wait_until(lambda: search(url, edit) == pages[i % len(pages)]))
            # A rename of the new file.
            os.rename(path, os.path.join(tree, f"renamed-{i}.md"))
            results["rename"].append(wait_until(lambda: search(url, word) == f"renamed-{i}.md"))
            # Its deletion.
            os.remove(os.path.join(tree, f"renamed-{i}.md"))
            results["delete"].append(wait_until(lambda: search(url, word) is None))
        out = {
            "bench": "watch_latency",
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "corpus": a.corpus,
            "pages": len(pages),
            "rounds": a.rounds,
            "seconds": {},
        }
        for kind, xs in results.items():
            missed = sum(x is None for x in xs)
            ok = sorted(x for x in xs if x is not None)
            out["seconds"][kind] = {
                "median": round(statistics.median(ok), 3) if ok else None,
                "max": round(max(ok), 3) if ok else None,
                "missed": missed,
                "all": [None if x is None else round(x, 3) for x in xs],
            }
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)
        for kind, s in out["seconds"].items():
            print(f"{kind:9s} median {s['median']} s, max {s['max']} s, missed {s['missed']}")
    finally:
        srv.terminate()
        srv.wait(timeout=120)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
