#!/usr/bin/env python3
"""Soak test of `cairn serve`: a closed-loop mix of searches, asks and
uploads for a fixed time, with one SIGKILL and restart of the server in the
middle. Standard library only.

Reports, per minute: requests and errors per kind, p50/p99 latency, the
server's resident memory; then the restart's downtime and whether every
acknowledged upload (its ingest job reported `done`) is still there after
the kill: listed by the API and found first by a search for its unique
token. Exits 1 if an acknowledged upload is missing or an error happened
outside the restart window.

  python3 bench/py/soak.py --cairn target/debug/cairn --data DIR \
      --corpus /usr/share/doc/python3.11/html/tutorial --minutes 30
"""

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

QUESTIONS = [
    "How do I create a virtual environment?",
    "How do I read a file line by line?",
    "What is a list comprehension?",
    "How do I handle an exception?",
    "How do I define a function with default arguments?",
    "What does the break statement do in a loop?",
    "How are dictionaries iterated?",
    "What is the difference between a tuple and a list?",
    "How do I format a string with f-strings?",
    "How do I import a module from a package?",
    "What does the __init__ method of a class do?",
    "How do I write JSON to a file?",
]

WORDS = (
    "harbour lantern granite meadow copper willow falcon cedar quartz river "
    "summit ember basalt orchid thistle glacier marble saffron tundra cobalt"
).split()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class Server:
    def __init__(self, cairn, data, port, log):
        self.cairn, self.data, self.port, self.log = cairn, data, port, log
        self.proc = None

    def start(self):
        logf = open(self.log, "a")
        self.proc = subprocess.Popen(
            [self.cairn, "--data-dir", self.data, "serve", "--addr", f"127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL,
            stderr=logf,
        )
        started = time.time()
        while time.time() - started < 300:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                    if r.status == 200:
                        return time.time() - started
            except (urllib.error.URLError, OSError):
                pass
            if self.proc.poll() is not None:
                sys.exit(f"cairn serve exited with {self.proc.returncode}; see {self.log}")
            time.sleep(0.1)
        sys.exit(f"cairn serve did not answer /healthz within 300 s; see {self.log}")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            sys.exit("cairn serve did not stop within 60 s of SIGTERM")


def request(url, data=None, headers=None, timeout=300):
    req = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, json.loads(r.read() or b"null")


def multipart(name, text):
    boundary = "cairnsoak" + "".join(random.choice("0123456789abcdef") for _ in range(16))
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
        f"Content-Type: text/markdown\r\n\r\n{text}\r\n--{boundary}--\r\n"
    ).encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cairn", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--kill-at", type=float, default=0.5, help="fraction of the run")
    ap.add_argument("--mix", default="search=75,ask=15,upload=10")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    mix = [(k, int(v)) for k, v in (p.split("=") for p in args.mix.split(","))]
    kinds = [k for k, w in mix for _ in range(w)]

    os.makedirs(args.data, exist_ok=True)
    log = os.path.join(args.data, "serve.log")
    t0 = time.time()
    subprocess.run(
        [args.cairn, "--data-dir", args.data, "ingest", args.corpus, "--json"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    print(f"ingested {args.corpus} in {time.time() - t0:.1f} s", flush=True)
    server = Server(args.cairn, args.data, free_port(), log)
    first_start = server.start()
    base = f"http://127.0.0.1:{server.port}"

    duration = args.minutes * 60
    start = time.time()
    kill_at = start + duration * args.kill_at
    lock = threading.Lock()
    records = []  # (t, kind, seconds, ok, detail)
    acknowledged = {}  # name -> token
    in_flight_at_kill = []
    restarting = threading.Event()
    restart_window = [None, None]
    rss = []  # (t, kib)
    uploads = [0]

    def record(kind, began, ok, detail=""):
        with lock:
            records.append((began - start, kind, time.time() - began, ok, detail))

    def do_search(r):
        q = urllib.parse.quote(r.choice(QUESTIONS))
        status, out = request(f"{base}/api/search?q={q}&k=5", timeout=120)
        if not out or not out.get("hits"):
            raise RuntimeError("no hits")

    def do_ask(r):
        body = json.dumps({"question": r.choice(QUESTIONS), "k": 4}).encode()
        status, out = request(f"{base}/api/ask", body, {"Content-Type": "application/json"}, 600)
        if not out or not out.get("answer"):
            raise RuntimeError(f"no answer: {out}")

    def do_upload(r):
        with lock:
            uploads[0] += 1
            n = uploads[0]
        token = f"soaktoken{n}x{r.randrange(10**9)}"
        name = f"soak-{n:05d}.md"
        words = " ".join(r.choice(WORDS) for _ in range(120))
        text = f"# Field note {n}\n\nThe marker of this note is {token}.\n\n{words}\n"
        body, headers = multipart(name, text)
        status, out = request(f"{base}/api/collections/default/documents", body, headers, 120)
        job = out["job"]["id"]
        while True:
            if restarting.is_set():
                with lock:
                    in_flight_at_kill.append(name)
                raise RuntimeError("server killed while the job ran")
            _, j = request(f"{base}/api/jobs/{job}", timeout=60)
            state = j["state"]
            if state == "done":
                with lock:
                    acknowledged[name] = token
                return
            if state in ("failed", "cancelled"):
                raise RuntimeError(f"job {state}: {j.get('error')}")
            time.sleep(0.2)

    ops = {"search": do_search, "ask": do_ask, "upload": do_upload}

    def worker(i):
        r = random.Random(args.seed * 1000 + i)
        while time.time() < start + duration:
            kind = r.choice(kinds)
            began = time.time()
            try:
                ops[kind](r)
                record(kind, began, True)
            except Exception as e:  # noqa: BLE001 - every failure is a figure
                detail = f"{type(e).__name__}: {e}"
                if isinstance(e, urllib.error.HTTPError):
                    detail = f"HTTP {e.code}: {e.read()[:200]!r}"
                record(kind, began, False, detail)
                if restarting.is_set():
                    time.sleep(0.2)

    def sampler():
        while time.time() < start + duration:
            pid = server.proc.pid
            kib = rss_kib(pid)
            if kib:
                with lock:
                    rss.append((time.time() - start, kib))
            time.sleep(5)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.workers)]
    threads.append(threading.Thread(target=sampler))
    for t in threads:
        t.start()
    time.sleep(max(0, kill_at - time.time()))
    restarting.set()
    restart_window[0] = time.time() - start
    server.kill()
    print(f"SIGKILL at {restart_window[0]:.0f} s", flush=True)
    recovery = server.start()
    restart_window[1] = time.time() - start
    restarting.clear()
    print(f"answering again after {recovery:.1f} s", flush=True)
    for t in threads:
        t.join()

    # Nothing acknowledged is lost.
    _, docs = request(f"{base}/api/collections/default/documents", timeout=120)
    names = {d["name"] for d in docs["documents"]}
    missing = sorted(n for n in acknowledged if n not in names)
    not_found = []
    for name, token in sorted(acknowledged.items()):
        _, out = request(f"{base}/api/search?q={token}&k=1&mode=bm25", timeout=120)
        hits = out.get("hits") or []
        if not hits or not hits[0]["doc"].endswith(name):
            not_found.append(name)
    final_rss = rss_kib(server.proc.pid)
    server.stop()

    # Figures per minute.
    minutes = []
    for m in range(int(duration // 60) + 1):
        rows = [r for r in records if m * 60 <= r[0] < (m + 1) * 60]
        if not rows:
            continue
        lat = sorted(r[2] for r in rows if r[3] and r[1] == "search")
        mem = [k for t, k in rss if m * 60 <= t < (m + 1) * 60]
        minutes.append(
            {
                "minute": m,
                "requests": len(rows),
                "errors": sum(1 for r in rows if not r[3]),
                "search_p50_ms": round(1000 * statistics.median(lat), 1) if lat else None,
                "search_p99_ms": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1) if lat else None,
                "asks": sum(1 for r in rows if r[1] == "ask" and r[3]),
                "uploads": sum(1 for r in rows if r[1] == "upload" and r[3]),
                "rss_mib": round(max(mem) / 1024, 1) if mem else None,
            }
        )
    lo, hi = restart_window
    in_window = lambda r: lo - 1 <= r[0] <= hi + 1 or (r[0] < lo and r[0] + r[2] >= lo - 1)  # noqa: E731
    errors_outside = [r for r in records if not r[3] and not in_window(r)]
    by_kind = {}
    for k in ops:
        rows = [r for r in records if r[1] == k]
        lat = sorted(r[2] for r in rows if r[3])
        by_kind[k] = {
            "requests": len(rows),
            "errors": sum(1 for r in rows if not r[3]),
            "p50_ms": round(1000 * statistics.median(lat), 1) if lat else None,
            "p99_ms": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1) if lat else None,
        }
    warm = [k for t, k in rss if t >= 120 and t < lo]
    after = [k for t, k in rss if t > hi + 120]
    summary = {
        "minutes": args.minutes,
        "workers": args.workers,
        "mix": args.mix,
        "first_start_s": round(first_start, 1),
        "killed_at_s": round(lo, 1),
        "recovered_after_s": round(recovery, 1),
        "requests": len(records),
        "errors": sum(1 for r in records if not r[3]),
        "errors_outside_restart": len(errors_outside),
        "error_samples": sorted({r[4] for r in records if not r[3]})[:8],
        "by_kind": by_kind,
        "acknowledged_uploads": len(acknowledged),
        "in_flight_at_kill": in_flight_at_kill,
        "missing_after": missing,
        "not_found_by_search": not_found,
        "rss_mib_start": round(rss[0][1] / 1024, 1) if rss else None,
        "rss_mib_warm_before_kill": [round(min(warm) / 1024, 1), round(max(warm) / 1024, 1)] if warm else None,
        "rss_mib_after_restart": [round(min(after) / 1024, 1), round(max(after) / 1024, 1)] if after else None,
        "rss_mib_end": round(final_rss / 1024, 1) if final_rss else None,
        "per_minute": minutes,
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print("\n| minute | requests | errors | search p50 ms | search p99 ms | asks | uploads | RSS MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m in minutes:
        print(
            f"| {m['minute']} | {m['requests']} | {m['errors']} | {m['search_p50_ms']} | "
            f"{m['search_p99_ms']} | {m['asks']} | {m['uploads']} | {m['rss_mib']} |"
        )
    bad = missing or not_found or errors_outside
    if bad:
        print(
            f"FAILED: {len(missing)} acknowledged uploads missing, {len(not_found)} not found, "
            f"{len(errors_outside)} errors outside the restart window",
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
