"""Does background ingestion hurt queries? `cairn serve --watch` over a copy
of a small corpus (the Python tutorial, ingested beforehand); in each round
and for each server variant, one closed-loop client searches (`/api/search`,
hybrid, k=5, the real questions of eval/python-docs) for SECONDS while the
server is idle, then pages of the library reference are copied into the
watched folder and the client searches for SECONDS more while the server
ingests them. After each phase's searches, time to first token of a
streamed `/api/ask` is sampled (one at a time; the ingestion is still
running for the second, which the figures confirm: `ingesting_throughout`). Variants are server configurations run in the same invocation,
alternating, on the same files: `normal` (background ingestion at the
queries' priority: `ingest.background_nice = 0`), `low` (the default,
`ingest.background_nice`) and `lowest` (nice 19).

    python3 bench/py/ingest_interference.py --cairn BIN --corpus DIR \
        [--rounds 3] [--seconds 30] [--pages 40] [--variants low,normal] --out F.json
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

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VARIANTS = {
    "low": {},
    "normal": {"CAIRN_INGEST_BACKGROUND_NICE": "0"},
    "lowest": {"CAIRN_INGEST_BACKGROUND_NICE": "19"},
}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def questions():
    qs = []
    with open(os.path.join(ROOT, "eval", "python-docs", "qa.jsonl")) as f:
        for line in f:
            if line.strip():
                qs.append(json.loads(line)["question"])
    return qs


def search(url, q):
    u = f"{url}/api/search?" + urllib.parse.urlencode({"q": q, "k": 5})
    t = time.perf_counter()
    with urllib.request.urlopen(u, timeout=120) as r:
        json.load(r)
    return time.perf_counter() - t


def first_token(url, q):
    """Seconds from sending a streamed ask to its first `token` event."""
    body = json.dumps({"question": q, "stream": True}).encode()
    req = urllib.request.Request(f"{url}/api/ask", data=body,
                                 headers={"Content-Type": "application/json"})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=300) as r:
        for line in r:
            if line.startswith(b"event: token"):
                return time.perf_counter() - t
            if line.startswith(b"event: done") or line.startswith(b"event: error"):
                return None
    return None


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def phase(url, qs, seconds, asks):
    """Closed-loop searches for `seconds`, then `asks` time-to-first-token
    samples, one at a time (nothing else in flight)."""
    lat, ttft = [], []
    stop = time.monotonic() + seconds
    i = 0
    while time.monotonic() < stop:
        lat.append(search(url, qs[i % len(qs)]))
        i += 1
    for j in range(asks):
        v = first_token(url, qs[(7 * j + 3) % len(qs)])
        if v is not None:
            ttft.append(v)
    return lat, ttft


CHANGES = re.compile(r"watch: changes: (\d+) added, \d+ updated, \d+ removed, \d+ unchanged; (\d+) chunks")


def ingested(logpath):
    """Files added and chunks stored by the watcher's change batches so far."""
    files = chunks_ = 0
    with open(logpath, errors="replace") as f:
        for m in CHANGES.finditer(f.read()):
            files += int(m.group(1))
            chunks_ += int(m.group(2))
    return files, chunks_


def summary(lat, ttft):
    ms = [x * 1000 for x in lat]
    return {"searches": len(ms), "p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99),
            "max_ms": max(ms) if ms else None,
            "ttft_s": ttft, "ttft_median_s": statistics.median(ttft) if ttft else None}


def start(cairn, data, tree, env_extra, logpath):
    env = dict(os.environ)
    env.pop("CAIRN_API_KEY", None)
    env.update(env_extra)
    logf = open(logpath, "w+")
    srv = subprocess.Popen([cairn, "--data-dir", data, "serve", "--addr", "127.0.0.1:0", "--watch", tree],
                           stdout=logf, stderr=subprocess.STDOUT, env=env)
    url = None
    for _ in range(1200):
        logf.seek(0)
        m = re.search(r"listening on (http://[0-9.:]+)", logf.read())
        if m:
            url = m.group(1)
            break
        if srv.poll() is not None:
            break
        time.sleep(0.1)
    if not url:
        srv.kill()
        logf.seek(0)
        raise SystemExit("cairn serve did not start:\n" + logf.read()[-3000:])
    return srv, url


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cairn", required=True)
    ap.add_argument("--corpus", required=True, help="the Python docs' HTML directory")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--pages", type=int, default=40, help="library pages ingested in each load phase")
    ap.add_argument("--asks", type=int, default=2, help="time-to-first-token samples per phase")
    ap.add_argument("--variants", default="low,normal")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    variants = a.variants.split(",")
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant `{v}` (expected one of {', '.join(VARIANTS)})")
    qs = questions()
    work = tempfile.mkdtemp(prefix="cairn-interference-")
    # Every run watches the same path (`tree`, made afresh from the
    # tutorial), so the start-up rescan finds the pre-ingested documents
    # unchanged.
    tree = os.path.join(work, "tree")
    shutil.copytree(os.path.join(a.corpus, "tutorial"), tree)
    base_data = os.path.join(work, "base-data")
    log("ingesting the tutorial once ...")
    subprocess.run([a.cairn, "--data-dir", base_data, "ingest", tree, "--json"],
                   check=True, stdout=subprocess.DEVNULL)
    lib = os.path.join(a.corpus, "library")
    pages = sorted(p for p in os.listdir(lib) if p.endswith(".html"))
    # The largest pages first would make the load uneven across runs; take
    # every k-th page so the set is a cross-section of the reference.
    step = max(1, len(pages) // a.pages)
    load = pages[::step][: a.pages]
    runs = []
    for r in range(a.rounds):
        for v in variants:
            d = os.path.join(work, f"r{r}-{v}")
            data = os.path.join(d, "data")
            shutil.rmtree(tree, ignore_errors=True)
            shutil.copytree(os.path.join(a.corpus, "tutorial"), tree)
            shutil.copytree(base_data, data)
            srv, url = start(a.cairn, data, tree, VARIANTS[v], os.path.join(d, "serve.log"))
            files = total = 0
            try:
                # The start-up rescan finds nothing new; wait for it.
                t_start = time.monotonic()
                while "watch: rescan:" not in open(os.path.join(d, "serve.log"), errors="replace").read():
                    if time.monotonic() - t_start > 120:
                        raise SystemExit(f"no start-up rescan within 120 s; see {d}/serve.log")
                    time.sleep(0.2)
                for q in qs[:5]:
                    search(url, q)
                logpath = os.path.join(d, "serve.log")
                idle = phase(url, qs, a.seconds, a.asks)
                os.makedirs(os.path.join(tree, "library"))
                for p in load:
                    shutil.copy(os.path.join(lib, p), os.path.join(tree, "library", p))
                t0 = time.monotonic()
                busy = phase(url, qs, a.seconds, a.asks)
                window = time.monotonic() - t0
                files_in_window, _ = ingested(logpath)
                while ingested(logpath)[0] < len(load) and time.monotonic() - t0 < 3600:
                    time.sleep(0.5)
                ingest_s = time.monotonic() - t0
                files, total = ingested(logpath)
            finally:
                srv.terminate()
                srv.wait(timeout=60)
            if files < len(load):
                raise SystemExit(f"the watcher ingested {files} of {len(load)} files within an hour; see {logpath}")
            row = {"round": r, "variant": v, "idle": summary(*idle), "ingesting": summary(*busy),
                   "window_s": window, "ingest_s": ingest_s, "chunks_ingested": total,
                   # The measured window fell inside the ingestion when it
                   # had not finished by the window's end.
                   "ingesting_throughout": files_in_window < len(load)}
            runs.append(row)
            log(f"round {r} {v}: idle p50 {row['idle']['p50_ms']:.1f} p99 {row['idle']['p99_ms']:.1f} ms; "
                f"ingesting p50 {row['ingesting']['p50_ms']:.1f} p99 {row['ingesting']['p99_ms']:.1f} ms "
                f"(ingest of {total} chunks took {ingest_s:.0f} s, throughout: {row['ingesting_throughout']}); ttft idle {row['idle']['ttft_median_s']} "
                f"ingesting {row['ingesting']['ttft_median_s']}")
            shutil.rmtree(d, ignore_errors=True)
    med = {}
    for v in variants:
        rs = [x for x in runs if x["variant"] == v]

        def m(phase_, key):
            vals = [x[phase_][key] for x in rs if x[phase_][key] is not None]
            return statistics.median(vals) if vals else None

        med[v] = {
            "idle_p50_ms": m("idle", "p50_ms"), "idle_p99_ms": m("idle", "p99_ms"),
            "ingesting_p50_ms": m("ingesting", "p50_ms"), "ingesting_p99_ms": m("ingesting", "p99_ms"),
            "idle_ttft_s": m("idle", "ttft_median_s"), "ingesting_ttft_s": m("ingesting", "ttft_median_s"),
            "ingest_s": statistics.median(x["ingest_s"] for x in rs),
            "ingesting_throughout": all(x["ingesting_throughout"] for x in rs),
        }
        i, b = med[v]["idle_p99_ms"], med[v]["ingesting_p99_ms"]
        med[v]["p99_ratio"] = b / i if i else None
    out = {"bench": "ingest-interference", "date": time.strftime("%Y-%m-%d %H:%M"),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
           "params": vars(a), "load_pages": load, "medians": med, "runs": runs}
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    print("| variant | idle p50 / p99 ms | ingesting p50 / p99 ms | p99 ratio | TTFT idle / ingesting s | ingest s |")
    print("|---|---:|---:|---:|---:|---:|")
    for v, x in med.items():
        f = lambda y: "—" if y is None else f"{y:.1f}"
        print(f"| {v} | {f(x['idle_p50_ms'])} / {f(x['idle_p99_ms'])} | {f(x['ingesting_p50_ms'])} / "
              f"{f(x['ingesting_p99_ms'])} | {f(x['p99_ratio'])} | {f(x['idle_ttft_s'])} / {f(x['ingesting_ttft_s'])} | "
              f"{x['ingest_s']:.0f}{'' if x['ingesting_throughout'] else ' (ended inside the window)'} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
