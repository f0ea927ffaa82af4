#!/usr/bin/env python3
"""Peer measurements for Cairn's side-by-side benchmarks.

One subcommand per peer measurement; each prints ONE JSON object on stdout and
logs to stderr. Run with the peers venv (bench/scripts/peers-venv.sh); the
driver is bench/py/run.py, which alternates these with `cairn-bench`.

    embed-st / embed-ort / export-onnx              embedding throughput, query latency
    vectors-faiss / vectors-hnswlib                  HNSW build, recall@10 vs ef, QPS
    make-gt / synth-vectors                          vector data preparation
    bm25-sqlite / bm25-bm25s                         lexical search latency
    chunk-langchain / chunk-semchunk                 token-aware text splitting speed
    ingest-langchain                                 a plain LangChain ingest pipeline
    train-crossencoder / train-lora                  reranker and generator training speed

Heavy libraries are imported inside each subcommand, so a command only pays
for (and needs) what it uses: all but embed-st, export-onnx and
ingest-langchain run without torch (the light venv of peers-venv.sh --smoke).
"""
import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

T_START = time.perf_counter()


# ----------------------------------------------------------------- helpers

def log(*a):
    print(*a, file=sys.stderr, flush=True)


def emit(obj):
    print(json.dumps(obj), flush=True)


def percentile(sorted_vals, p):
    """Same rule as cairn-bench: the value at round((n-1)*p) of the sorted list."""
    if not sorted_vals:
        return 0.0
    return sorted_vals[round((len(sorted_vals) - 1) * p)]


def read_jsonl_texts(path, limit=None):
    """Texts of a JSONL file: the "text" field, else "question" or "query" (qa.jsonl)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            d = json.loads(line)
            out.append(d.get("text") or d.get("question") or d.get("query") or "")
            if limit and len(out) >= limit:
                break
    return out


def tokenizer_file(p):
    """Accept either tokenizer.json or the model directory holding it."""
    p = Path(p)
    return p / "tokenizer.json" if p.is_dir() else p


def load_tokenizer(path, max_len=None):
    """A `tokenizers` Tokenizer with the file's own padding/truncation removed
    (MiniLM's tokenizer.json pads and truncates to a fixed 128)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_file(path)))
    tok.no_padding()
    if max_len:
        tok.enable_truncation(max_len)
    else:
        tok.no_truncation()
    return tok


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def query_latencies(encode_one, queries):
    """Encode queries one at a time (3 warm-up first); p50/p99 in ms."""
    for q in queries[:3]:
        encode_one(q)
    lat = []
    for q in queries:
        t = time.perf_counter()
        encode_one(q)
        lat.append((time.perf_counter() - t) * 1e3)
    lat.sort()
    return percentile(lat, 0.5), percentile(lat, 0.99)


def need_torch(cmd):
    """torch, or a clear exit where this venv has none (the light smoke venv)."""
    try:
        import torch
    except ImportError:
        sys.exit(f"{cmd} needs torch, which this venv lacks (the light one of peers-venv.sh --smoke?): "
                 "use the full venv, `bash bench/scripts/peers-venv.sh`")
    return torch


def write_f32(path, arr):
    import numpy as np

    np.ascontiguousarray(arr, dtype="<f4").tofile(path)


# --------------------------------------------------------------- embedding

def cmd_embed_st(a):
    import numpy as np
    torch = need_torch("embed-st")
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(a.threads)
    model = SentenceTransformer(a.model, device="cpu")
    texts = read_jsonl_texts(a.inputs, a.limit)
    queries = read_jsonl_texts(a.queries)
    max_len = model.max_seq_length
    # Tokens the model actually sees: truncated, with [CLS]/[SEP].
    enc = model.tokenizer(texts, truncation=True, max_length=max_len)
    tokens = sum(len(ids) for ids in enc["input_ids"])
    log(f"sentence-transformers: {len(texts)} inputs, {tokens} tokens, max_seq_length={max_len}, threads={a.threads}")

    model.encode(texts[:32], batch_size=a.batch, normalize_embeddings=True)  # warm-up
    t = time.perf_counter()
    vecs = model.encode(texts, batch_size=a.batch, normalize_embeddings=True, convert_to_numpy=True)
    secs = time.perf_counter() - t
    assert vecs.shape[0] == len(texts)
    if a.out:
        write_f32(a.out, vecs)
    p50, p99 = query_latencies(lambda q: model.encode([q], normalize_embeddings=True), queries)
    emit({
        "peer": "sentence-transformers", "threads": a.threads, "batch": a.batch,
        "n": len(texts), "tokens": tokens, "seconds": secs,
        "chunks_per_s": len(texts) / secs, "tokens_per_s": tokens / secs,
        "query_p50_ms": p50, "query_p99_ms": p99,
    })


class OrtEmbedder:
    """MiniLM through onnxruntime: tokenizers-library tokenisation, mean pooling
    over the attention mask, L2 normalisation (what sentence-transformers does)."""

    def __init__(self, onnx_path, tokenizer_path, threads, max_len=256):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.sess.get_inputs()]
        self.output_name = self.sess.get_outputs()[0].name
        self.tok = load_tokenizer(tokenizer_path, max_len)
        self.pad_id = self.tok.token_to_id("[PAD]") or 0

    def encode_ids(self, encs):
        """One batch of tokenizers Encodings → normalised embeddings [b, dim]."""
        import numpy as np

        b, L = len(encs), max(len(e.ids) for e in encs)
        ids = np.full((b, L), self.pad_id, dtype=np.int64)
        mask = np.zeros((b, L), dtype=np.int64)
        types = np.zeros((b, L), dtype=np.int64)
        for i, e in enumerate(encs):
            n = len(e.ids)
            ids[i, :n] = e.ids
            mask[i, :n] = 1
            types[i, :n] = e.type_ids
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        hidden = self.sess.run([self.output_name], {k: feed[k] for k in self.input_names})[0]
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)

    def encode(self, texts, batch):
        """Tokenise all, sort by length into batches (as sentence-transformers
        does, so padding waste is the same on both sides), restore order."""
        import numpy as np

        encs = self.tok.encode_batch(texts)
        order = sorted(range(len(encs)), key=lambda i: -len(encs[i].ids))
        out = None
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            vecs = self.encode_ids([encs[i] for i in idx])
            if out is None:
                out = np.zeros((len(texts), vecs.shape[1]), dtype=np.float32)
            out[idx] = vecs
        return out


def cmd_embed_ort(a):
    emb = OrtEmbedder(a.onnx, a.tokenizer, a.threads, a.max_len)
    texts = read_jsonl_texts(a.inputs, a.limit)
    queries = read_jsonl_texts(a.queries)
    tokens = sum(len(e.ids) for e in emb.tok.encode_batch(texts))
    log(f"{a.label}: {len(texts)} inputs, {tokens} tokens, inputs={emb.input_names}, threads={a.threads}")
    emb.encode(texts[:32], a.batch)  # warm-up
    t = time.perf_counter()
    vecs = emb.encode(texts, a.batch)
    secs = time.perf_counter() - t
    if a.out:
        write_f32(a.out, vecs)
    p50, p99 = query_latencies(lambda q: emb.encode([q], 1), queries)
    emit({
        "peer": a.label, "threads": a.threads, "batch": a.batch,
        "n": len(texts), "tokens": tokens, "seconds": secs,
        "chunks_per_s": len(texts) / secs, "tokens_per_s": tokens / secs,
        "query_p50_ms": p50, "query_p99_ms": p99,
    })


def cmd_export_onnx(a):
    import numpy as np
    torch = need_torch("export-onnx")
    from transformers import AutoModel

    model = AutoModel.from_pretrained(a.model).eval()
    model.config.return_dict = True
    tok = load_tokenizer(a.model, 256)
    e = tok.encode("a sample sentence for tracing the graph")
    dummy = tuple(torch.tensor([x], dtype=torch.int64) for x in (e.ids, e.attention_mask, e.type_ids))

    class Wrapped(torch.nn.Module):  # only last_hidden_state as output
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state

    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        torch.onnx.export(
            Wrapped(model), dummy, a.out, opset_version=17,
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                          "last_hidden_state": axes},
            do_constant_folding=True,
        )
    log(f"exported {a.out}")

    # Verify against sentence-transformers on 20 sentences of varied length.
    from sentence_transformers import SentenceTransformer

    sents = [
        "The quick brown fox jumps over the lazy dog.",
        "os.path.join ignores previous segments when a later one is absolute.",
        "How do I create a virtual environment?",
        "round() rounds half to even.",
        "A list comprehension provides a concise way to create lists " * 5,
        "def f(x): return x * 2",
        "Exceptions are raised with the raise statement.",
        "json.dumps returns a str.",
        "The with statement simplifies resource management.",
        "Generators produce values lazily with yield.",
        "import this",
        "Floating point numbers are represented in binary fractions, so 0.1 is not exact. " * 8,
        "bisect_right returns an insertion point after any existing entries.",
        "shutil.move uses os.rename on the same filesystem.",
        "x",
        "Unicode strings, bytes and encodings: UTF-8 is the default.",
        "Keyword-only arguments follow a bare * in the parameter list.",
        "asyncio runs coroutines on an event loop.",
        "The GIL serialises bytecode execution in CPython.",
        "dict preserves insertion order since Python 3.7.",
    ]
    st = SentenceTransformer(a.model, device="cpu")
    ref = st.encode(sents, normalize_embeddings=True)
    got = OrtEmbedder(a.out, a.model, 2, st.max_seq_length).encode(sents, 8)
    cos = (ref * got).sum(axis=1)
    ok = bool(cos.min() > 0.9999)
    log(f"ORT fp32 vs sentence-transformers cosine: min {cos.min():.6f}, mean {cos.mean():.6f}")
    emit({"onnx": str(a.out), "bytes": os.path.getsize(a.out), "cos_min": float(cos.min()),
          "cos_mean": float(cos.mean()), "ok": ok})
    if not ok:
        sys.exit(1)


# ----------------------------------------------------------------- vectors

def load_f32(path, dim):
    import numpy as np

    return np.fromfile(path, dtype="<f4").reshape(-1, dim)


def recall_at(found, gt, k):
    """Recall@k by ids: the share of the true top k among the results."""
    hits = sum(len(set(f[:k].tolist()) & set(g[:k].tolist())) for f, g in zip(found, gt))
    return hits / (len(gt) * k)


def recall_ties(found, gt, base, queries, k, tie=1e-6):
    """Recall@k with ties, as ann-benchmarks counts it (and cairn-bench): a
    result is a hit when its inner product with the query is at least the
    k-th true neighbour's (less `tie`), so copies of one vector count alike."""
    import numpy as np

    found = np.asarray(found)[:, :k]
    q = queries[:, None, :]
    got = np.einsum("qkd,qkd->qk", base[np.clip(found, 0, None)], np.broadcast_to(q, found.shape + q.shape[-1:]))
    kth = np.einsum("qd,qd->q", base[gt[:, k - 1]], queries)
    hits = ((got >= (kth - tie)[:, None]) & (found >= 0)).sum()
    return float(hits) / (len(gt) * k)


def vectors_common(a, build, set_ef, search):
    """Shared protocol for the ANN peers: build (timed, RSS delta), then per ef
    recall@10 and single-query / batch QPS."""
    import numpy as np

    base = load_f32(a.base, a.dim)
    queries = load_f32(a.queries, a.dim)
    k = a.k
    gt = np.fromfile(a.gt, dtype="<i4").reshape(len(queries), -1)[:, :k]
    n = len(base)
    log(f"{n} base vectors, {len(queries)} queries, dim {a.dim}, M={a.m}, efc={a.efc}, threads={a.threads}")
    rss0 = rss_bytes()
    t = time.perf_counter()
    index = build(base)
    build_s = time.perf_counter() - t
    bpv = (rss_bytes() - rss0) / n
    log(f"build {build_s:.2f}s, {bpv:.0f} bytes/vector (RSS delta)")
    sweep = []
    for ef in [int(x) for x in a.efs.split(",")]:
        set_ef(index, ef)
        search(index, queries[:min(50, len(queries))], k)  # warm-up
        t = time.perf_counter()
        found = np.vstack([search(index, queries[i:i + 1], k) for i in range(len(queries))])
        qps = len(queries) / (time.perf_counter() - t)
        t = time.perf_counter()
        batch = search(index, queries, k)
        batch_qps = len(queries) / (time.perf_counter() - t)
        rec = recall_ties(found, gt, base, queries, k)
        rec_ids = recall_at(found, gt, k)
        assert abs(rec_ids - recall_at(batch, gt, k)) < 0.02
        log(f"ef={ef}: recall@{k}={rec:.4f} (ids {rec_ids:.4f}) qps={qps:.0f} batch_qps={batch_qps:.0f}")
        sweep.append({"ef": ef, "recall": rec, "recall_ids": rec_ids, "qps": qps, "batch_qps": batch_qps})
    return {"n": n, "nq": len(queries), "dim": a.dim, "m": a.m, "efc": a.efc, "threads": a.threads,
            "build_s": build_s, "bytes_per_vector": bpv, "sweep": sweep}


def cmd_vectors_faiss(a):
    import faiss

    faiss.omp_set_num_threads(a.threads)

    def build(base):
        idx = faiss.IndexHNSWFlat(a.dim, a.m, faiss.METRIC_INNER_PRODUCT)
        idx.hnsw.efConstruction = a.efc
        idx.add(base)
        return idx

    def set_ef(idx, ef):
        idx.hnsw.efSearch = ef

    res = vectors_common(a, build, set_ef, lambda idx, q, k: idx.search(q, k)[1])
    emit({"peer": "faiss-hnsw", **res})


def cmd_vectors_hnswlib(a):
    import hnswlib
    import numpy as np

    def build(base):
        idx = hnswlib.Index(space="ip", dim=a.dim)
        idx.init_index(max_elements=len(base), ef_construction=a.efc, M=a.m, random_seed=100)
        idx.set_num_threads(a.threads)
        idx.add_items(base, np.arange(len(base)))
        return idx

    def set_ef(idx, ef):
        idx.set_ef(max(ef, a.k))  # hnswlib requires ef >= k

    res = vectors_common(a, build, set_ef, lambda idx, q, k: idx.knn_query(q, k=k)[0].astype("int64"))
    emit({"peer": "hnswlib", **res})


def cmd_make_gt(a):
    """Exact top-k by inner product, blockwise (base memory-mapped)."""
    import numpy as np

    base = np.memmap(a.base, dtype="<f4", mode="r").reshape(-1, a.dim)
    queries = load_f32(a.queries, a.dim)
    n, k = len(base), a.k
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), k), dtype=np.int64)
    bs = 65536
    t = time.perf_counter()
    for s in range(0, n, bs):
        blk = np.asarray(base[s:s + bs])
        scores = queries @ blk.T  # [nq, bs]
        kk = min(k, scores.shape[1])
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        cand_s = np.concatenate([best_s, np.take_along_axis(scores, part, 1)], axis=1)
        cand_i = np.concatenate([best_i, part + s], axis=1)
        top = np.argsort(-cand_s, axis=1, kind="stable")[:, :k]
        best_s = np.take_along_axis(cand_s, top, 1)
        best_i = np.take_along_axis(cand_i, top, 1)
        if (s // bs) % 4 == 0:
            log(f"gt: {min(s + bs, n)}/{n}")
    best_i.astype("<i4").tofile(a.out)
    emit({"n": n, "nq": len(queries), "k": k, "seconds": time.perf_counter() - t, "out": a.out})


def cmd_synth_vectors(a):
    """L2-normalised points from a mixture of Gaussian clusters (not uniform on
    the sphere, where HNSW is unrealistically hard/easy); queries drawn the same
    way, never copies of base points. Written in blocks to bound memory."""
    import numpy as np

    rng = np.random.default_rng(a.seed)
    centres = rng.standard_normal((a.clusters, a.dim)).astype(np.float32)

    def draw(out_path, count, rng):
        with open(out_path, "wb") as f:
            for s in range(0, count, 100_000):
                m = min(100_000, count - s)
                pts = centres[rng.integers(0, a.clusters, m)]
                pts += a.spread * rng.standard_normal((m, a.dim), dtype=np.float32)
                pts /= np.linalg.norm(pts, axis=1, keepdims=True)
                f.write(pts.astype("<f4").tobytes())

    draw(a.out_base, a.n, rng)
    draw(a.out_queries, a.nq, np.random.default_rng(a.seed + 1))
    emit({"n": a.n, "nq": a.nq, "dim": a.dim, "clusters": a.clusters, "spread": a.spread,
          "base": a.out_base, "queries": a.out_queries})


# -------------------------------------------------------------------- bm25

def latency_loop(run_one, queries):
    for q in queries[:3]:
        run_one(q)  # warm-up
    lat = []
    t0 = time.perf_counter()
    for q in queries:
        t = time.perf_counter()
        run_one(q)
        lat.append((time.perf_counter() - t) * 1e3)
    total = time.perf_counter() - t0
    lat.sort()
    return {"p50_ms": percentile(lat, 0.5), "p99_ms": percentile(lat, 0.99), "qps": len(queries) / total}


def fts5_query(q):
    """OR of the quoted word tokens (FTS5 string syntax: "" escapes a quote)."""
    words = [w for w in re.findall(r"\w+", q) if w]
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words)


def cmd_bm25_sqlite(a):
    import sqlite3

    passages = read_jsonl_texts(a.passages)
    queries = read_jsonl_texts(a.queries)
    db = sqlite3.connect(":memory:")
    try:
        db.execute("CREATE VIRTUAL TABLE t USING fts5(text, tokenize='porter unicode61')")
    except sqlite3.OperationalError as e:
        sys.exit(f"this Python's sqlite3 has no FTS5: {e}")
    t = time.perf_counter()
    with db:
        db.executemany("INSERT INTO t(rowid, text) VALUES (?, ?)", enumerate(passages))
    db.execute("INSERT INTO t(t) VALUES ('optimize')")  # merge segments, as a built index would be
    build_s = time.perf_counter() - t
    sql = "SELECT rowid, bm25(t) FROM t WHERE t MATCH ? ORDER BY bm25(t) LIMIT ?"

    def run_one(q):
        m = fts5_query(q)
        return db.execute(sql, (m, a.k)).fetchall() if m else []

    res = latency_loop(run_one, queries)
    emit({"peer": "sqlite-fts5", "sqlite": sqlite3.sqlite_version, "n": len(passages),
          "nq": len(queries), "build_s": build_s, **res})


def cmd_bm25_bm25s(a):
    import bm25s

    try:
        import Stemmer

        stemmer = Stemmer.Stemmer("english")
    except ImportError:
        stemmer = None
        log("PyStemmer missing: bm25s runs without stemming")
    passages = read_jsonl_texts(a.passages)
    queries = read_jsonl_texts(a.queries)
    k = min(a.k, len(passages))
    t = time.perf_counter()
    corpus_tokens = bm25s.tokenize(passages, stopwords="en", stemmer=stemmer, show_progress=False)
    retriever = bm25s.BM25()
    retriever.index(corpus_tokens, show_progress=False)
    build_s = time.perf_counter() - t

    def run_one(q):
        qt = bm25s.tokenize([q], stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)
        # One query: retrieve in the calling thread (bm25s's default). With
        # n_threads > 1 it starts a thread pool per call, which measured slower.
        return retriever.retrieve(qt, k=k, show_progress=False)

    res = latency_loop(run_one, queries)
    emit({"peer": "bm25s", "stemmer": stemmer is not None, "retrieve_threads": 1, "n": len(passages), "nq": len(queries),
          "build_s": build_s, **res})


# ---------------------------------------------------------------- chunking

def chunk_timing(split_all, texts, reps, make=None):
    """Median seconds over reps of splitting every text. `make` (if given)
    builds a fresh splitter per rep, outside the timing (drops warm caches)."""
    import statistics

    times, chunks = [], 0
    for _ in range(reps):
        splitter = make() if make else None
        t = time.perf_counter()
        chunks = split_all(splitter)
        times.append(time.perf_counter() - t)
    nbytes = sum(len(s.encode("utf-8")) for s in texts)
    secs = statistics.median(times)
    return {"bytes": nbytes, "chunks": chunks, "seconds": secs, "mb_per_s": nbytes / 1e6 / secs,
            "reps": reps, "texts": len(texts)}


def cmd_chunk_langchain(a):
    from langchain_text_splitters import RecursiveCharacterTextSplitter
    from transformers import PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # "sequence longer than max length" on whole documents
    texts = read_jsonl_texts(a.texts)
    hf_tok = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_file(a.tokenizer)))
    splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
        hf_tok, chunk_size=a.tokens, chunk_overlap=a.overlap)
    res = chunk_timing(lambda _: sum(len(splitter.split_text(t)) for t in texts), texts, a.reps)
    emit({"peer": "langchain-text-splitters", **res})


def cmd_chunk_semchunk(a):
    import semchunk

    texts = read_jsonl_texts(a.texts)
    tok = load_tokenizer(a.tokenizer)

    def count(s):
        return len(tok.encode(s, add_special_tokens=False).ids)

    # A fresh chunker per rep: semchunk memoises the token counter.
    overlap = a.overlap or None  # semchunk takes overlap in tokens (int) per call
    res = chunk_timing(lambda ch: sum(len(ch(t, overlap=overlap)) for t in texts), texts, a.reps,
                       make=lambda: semchunk.chunkerify(count, a.tokens))
    emit({"peer": "semchunk", **res})


# ------------------------------------------------------------------ ingest

def cmd_ingest_langchain(a):
    """The pipeline a LangChain user would write: load HTML, split by tokens,
    embed with sentence-transformers, store in FAISS, save to disk. Wall time
    counts from process start (imports and model load included, as for
    `cairn ingest`)."""
    import resource
    import tempfile

    torch = need_torch("ingest-langchain")
    from langchain_community.document_loaders import BSHTMLLoader
    from langchain_community.vectorstores import FAISS
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter
    from transformers import PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.set_num_threads(a.threads)
    files = sorted(Path(a.corpus).rglob("*.html"))
    if a.limit_files:
        files = files[:a.limit_files]
    stages = {}
    t = time.perf_counter()
    docs = []
    for f in files:
        docs.extend(BSHTMLLoader(str(f), open_encoding="utf-8").load())
    stages["load_s"] = time.perf_counter() - t

    t = time.perf_counter()
    hf_tok = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_file(a.model)))
    splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
        hf_tok, chunk_size=a.tokens, chunk_overlap=a.overlap)
    chunks = splitter.split_documents(docs)
    stages["split_s"] = time.perf_counter() - t

    t = time.perf_counter()
    emb = HuggingFaceEmbeddings(model_name=a.model, model_kwargs={"device": "cpu"},
                                encode_kwargs={"normalize_embeddings": True})
    store = FAISS.from_documents(chunks, emb)
    stages["embed_store_s"] = time.perf_counter() - t

    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cairn-bench-langchain-") as d:
        store.save_local(d)
        saved = sum(p.stat().st_size for p in Path(d).iterdir())
    stages["save_s"] = time.perf_counter() - t
    wall = time.perf_counter() - T_START
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    emit({"peer": "langchain", "docs": len(docs), "chunks": len(chunks), "wall_s": wall,
          "peak_rss_mib": peak, "index_bytes": saved, "threads": a.threads, **stages})


# ------------------------------------------------------ reranker training

def fnv_key(text, seed):
    """The order `cairn train reranker --max-questions` samples questions in
    (FNV-1a of the question, offset by the seed), so both sides train on the
    same questions."""
    h = 0xcbf29ce484222325 ^ seed
    for b in text.encode("utf-8"):
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def cmd_train_crossencoder(a):
    import math
    torch = need_torch("train-crossencoder")
    from sentence_transformers import CrossEncoder, InputExample
    from torch.utils.data import DataLoader

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    lines = []
    with open(a.data, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                lines.append(json.loads(line))
    if a.max_questions and len(lines) > a.max_questions:
        lines.sort(key=lambda d: fnv_key(d["query"], a.seed))
        lines = lines[: a.max_questions]
    examples = []
    for d in lines:
        examples += [InputExample(texts=[d["query"], p], label=1.0) for p in d["positive"]]
        examples += [InputExample(texts=[d["query"], n], label=0.0) for n in d["negatives"]]
    model = CrossEncoder(a.model, num_labels=1, max_length=a.max_length, device="cpu")
    loader = DataLoader(examples, shuffle=True, batch_size=a.batch_size)
    steps = len(loader) * a.epochs
    t0 = time.perf_counter()
    model.fit(train_dataloader=loader, epochs=a.epochs, warmup_steps=math.ceil(0.1 * steps),
              optimizer_params={"lr": a.lr}, weight_decay=0.01, max_grad_norm=1.0,
              show_progress_bar=False)
    wall = time.perf_counter() - t0
    emit({"peer": "sentence-transformers CrossEncoder.fit", "questions": len(lines),
          "pairs": len(examples), "epochs": a.epochs, "steps": steps, "seconds": wall,
          "pairs_per_second": len(examples) * a.epochs / wall, "threads": a.threads,
          "batch_size": a.batch_size, "max_length": a.max_length,
          "torch": torch.__version__})


# ----------------------------------------------------- generator training

def cmd_train_lora(a):
    """PEFT's LoRA on transformers' Llama (PyTorch, CPU, F32) on the examples
    `cairn train generator --export` wrote: the same token ids, the loss on
    the answer tokens only, the same adapters (rank, alpha, the 7 linear
    layers of the last N blocks), AdamW without weight decay, warm-up over a
    tenth of the steps then linear decay, gradients of `accumulate` examples
    per step, clipping at 1. Timed: the training loop alone (forward and
    backward passes and optimiser steps); the held-out answer loss before
    and after each epoch is measured outside it."""
    import math
    import random
    torch = need_torch("train-lora")
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    train, held = [], []
    with open(a.examples, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                (train if d["split"] == "train" else held).append((d["input_ids"], d["answer_start"]))
    gguf = Path(a.gguf)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                 torch_dtype=torch.float32)
    # transformers 4.46 reads no output matrix from a GGUF that ties it to
    # the embeddings (as llama.cpp does): tie them here.
    if model.get_output_embeddings().weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
        model.config.tie_word_embeddings = True
        model.tie_weights()
    layers = model.config.num_hidden_layers
    adapted = list(range(layers - a.layers, layers)) if a.layers else None
    cfg = LoraConfig(r=a.rank, lora_alpha=a.alpha, lora_dropout=0.0, bias="none",
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                     "gate_proj", "up_proj", "down_proj"],
                     layers_to_transform=adapted, task_type="CAUSAL_LM")
    model = get_peft_model(model, cfg)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    def batch(ids, start):
        x = torch.tensor([ids])
        labels = x.clone()
        labels[0, :start] = -100
        return x, labels

    def held_loss():
        model.eval()
        total, n = 0.0, 0
        with torch.no_grad():
            for ids, start in held:
                x, labels = batch(ids, start)
                k = len(ids) - start
                total += model(input_ids=x, labels=labels).loss.item() * k
                n += k
        model.train()
        return total / max(n, 1)

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)
    steps_per_epoch = math.ceil(len(train) / a.accumulate)
    total = steps_per_epoch * a.epochs
    warmup = math.ceil(total * 0.1)

    def step_size(step):  # cairn-train's schedule
        if step < warmup:
            return a.lr * (step + 1) / warmup
        return a.lr * (total - step) / max(total - warmup, 1)

    validation = [held_loss()] if held else []
    rng = random.Random(a.seed)
    order = list(range(len(train)))
    seconds, step, epoch_loss = 0.0, 0, []
    model.train()
    for _ in range(a.epochs):
        rng.shuffle(order)
        loss_sum, loss_n = 0.0, 0
        for c in range(0, len(order), a.accumulate):
            chunk = order[c:c + a.accumulate]
            t0 = time.perf_counter()
            for g in opt.param_groups:
                g["lr"] = step_size(step)
            opt.zero_grad(set_to_none=True)
            losses = []
            for i in chunk:
                x, labels = batch(*train[i])
                loss = model(input_ids=x, labels=labels).loss
                (loss / len(chunk)).backward()
                losses.append(loss.item())
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            seconds += time.perf_counter() - t0
            for i, l in zip(chunk, losses):
                k = len(train[i][0]) - train[i][1]
                loss_sum += l * k
                loss_n += k
            step += 1
        epoch_loss.append(loss_sum / max(loss_n, 1))
        if held:
            validation.append(held_loss())
        log(f"epoch {len(epoch_loss)}: loss {epoch_loss[-1]:.3f}, held-out {validation[-1] if held else '-'}")
    tokens = sum(len(ids) for ids, _ in train)
    emit({"peer": "PEFT LoRA (transformers, PyTorch)", "train_examples": len(train),
          "validation_examples": len(held), "train_tokens": tokens, "epochs": a.epochs,
          "steps": step, "seconds": seconds, "tokens_per_second": tokens * a.epochs / seconds,
          "epoch_loss": epoch_loss, "validation_loss": validation,
          "trainable_parameters": trainable, "threads": a.threads, "rank": a.rank,
          "alpha": a.alpha, "layers": a.layers, "torch": torch.__version__})


# --------------------------------------------------------------------- CLI

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def embed_args(s):
        s.add_argument("--inputs", required=True)
        s.add_argument("--queries", required=True)
        s.add_argument("--threads", type=int, default=2)
        s.add_argument("--batch", type=int, default=32)
        s.add_argument("--limit", type=int)
        s.add_argument("--out", help="write embeddings as raw little-endian f32, row-major")

    s = sub.add_parser("embed-st"); s.add_argument("--model", required=True); embed_args(s)
    s.set_defaults(fn=cmd_embed_st)
    s = sub.add_parser("embed-ort")
    s.add_argument("--onnx", required=True)
    s.add_argument("--tokenizer", required=True, help="tokenizer.json or its directory")
    s.add_argument("--label", default="onnxruntime-int8")
    s.add_argument("--max-len", type=int, default=256)
    embed_args(s)
    s.set_defaults(fn=cmd_embed_ort)
    s = sub.add_parser("export-onnx")
    s.add_argument("--model", required=True); s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_export_onnx)

    def vec_args(s, fn):
        for f in ("--base", "--queries", "--gt"):
            s.add_argument(f, required=True)
        s.add_argument("--dim", type=int, default=384)
        s.add_argument("--m", type=int, default=16)
        s.add_argument("--efc", type=int, default=128)
        s.add_argument("--efs", default="10,16,24,32,48,64,96,128,192,256,384,512")
        s.add_argument("--k", type=int, default=10)
        s.add_argument("--threads", type=int, default=2)
        s.set_defaults(fn=fn)

    vec_args(sub.add_parser("vectors-faiss"), cmd_vectors_faiss)
    vec_args(sub.add_parser("vectors-hnswlib"), cmd_vectors_hnswlib)
    s = sub.add_parser("make-gt")
    s.add_argument("--base", required=True); s.add_argument("--queries", required=True)
    s.add_argument("--dim", type=int, default=384); s.add_argument("--k", type=int, default=10)
    s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_make_gt)
    s = sub.add_parser("synth-vectors")
    s.add_argument("--n", type=int, required=True); s.add_argument("--nq", type=int, required=True)
    s.add_argument("--dim", type=int, default=384); s.add_argument("--seed", type=int, default=42)
    s.add_argument("--clusters", type=int, default=1000); s.add_argument("--spread", type=float, default=0.5)
    s.add_argument("--out-base", required=True); s.add_argument("--out-queries", required=True)
    s.set_defaults(fn=cmd_synth_vectors)

    for name, fn in (("bm25-sqlite", cmd_bm25_sqlite), ("bm25-bm25s", cmd_bm25_bm25s)):
        s = sub.add_parser(name)
        s.add_argument("--passages", required=True); s.add_argument("--queries", required=True)
        s.add_argument("--k", type=int, default=10); s.add_argument("--threads", type=int, default=2)
        s.set_defaults(fn=fn)

    for name, fn in (("chunk-langchain", cmd_chunk_langchain), ("chunk-semchunk", cmd_chunk_semchunk)):
        s = sub.add_parser(name)
        s.add_argument("--texts", required=True)
        s.add_argument("--tokenizer", required=True, help="tokenizer.json or its directory")
        s.add_argument("--tokens", type=int, default=256)
        s.add_argument("--overlap", type=int, default=0)
        s.add_argument("--reps", type=int, default=1)
        s.set_defaults(fn=fn)

    s = sub.add_parser("ingest-langchain")
    s.add_argument("--corpus", required=True); s.add_argument("--model", required=True)
    s.add_argument("--tokens", type=int, default=256); s.add_argument("--overlap", type=int, default=0)
    s.add_argument("--threads", type=int, default=2); s.add_argument("--limit-files", type=int)
    s.set_defaults(fn=cmd_ingest_langchain)

    s = sub.add_parser("train-crossencoder")
    s.add_argument("--model", required=True, help="the base model's directory (all-MiniLM-L6-v2)")
    s.add_argument("--data", required=True, help="train.jsonl of `cairn train data`")
    s.add_argument("--max-questions", type=int, default=0)
    s.add_argument("--epochs", type=int, default=1); s.add_argument("--batch-size", type=int, default=16)
    s.add_argument("--lr", type=float, default=2e-5); s.add_argument("--max-length", type=int, default=256)
    s.add_argument("--threads", type=int, default=2); s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=cmd_train_crossencoder)

    s = sub.add_parser("train-lora")
    s.add_argument("--examples", required=True, help="the JSON lines of `cairn train generator --export`")
    s.add_argument("--gguf", required=True, help="the generator's GGUF file")
    s.add_argument("--rank", type=int, default=8); s.add_argument("--alpha", type=float, default=16.0)
    s.add_argument("--layers", type=int, default=8, help="adapted blocks from the top (0: all)")
    s.add_argument("--epochs", type=int, default=2); s.add_argument("--accumulate", type=int, default=4)
    s.add_argument("--lr", type=float, default=5e-4)
    s.add_argument("--threads", type=int, default=2); s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=cmd_train_lora)

    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
