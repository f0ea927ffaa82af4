//! The Cairn side of the side-by-side benchmarks (`bench/py/run.py` runs
//! these and the Python peers on the same files, alternating).
//!
//! ```text
//! export-chunks --corpus DIR --tokens N [--limit N] [--ext html] --out chunks.jsonl [--texts-out texts.jsonl]
//! embed-file    --model DIR --backend candle|onnx [--onnx FILE] [--ort-dylib LIB] --inputs chunks.jsonl
//!               --queries queries.jsonl [--threads T] [--batch B] [--limit N] [--out vecs.f32] [--label L]
//! vectors       --base base.f32 --queries q.f32 --gt gt.i32 --dim D [--m 16] [--efc 128]
//!               [--efs 10,20,...] [--threads T] [--quantization f32]
//!               [--index-dir D (keep the graph; reuse it when D holds one)]
//! bm25          --passages chunks.jsonl --queries queries.jsonl [--k 10]
//! chunk         --texts texts.jsonl --tokenizer DIR [--tokens 256] [--overlap 0] [--reps R] [--threads T]
//! exact-scan  [--base base.f32 --queries q.f32] [--n 100000] [--dim 384] [--nq 32] [--threads 2]
//!               [--blocks 1,4,8,16] [--reps 3] (see exact.rs)
//! scale         --sizes 10000,100000 --model DIR [--backend onnx] [--onnx FILE] --queries queries.jsonl
//!               [--base base.f32 --passages chunks.jsonl] [--threads T]
//! ```
//! Each prints one JSON object on stdout.

use crate::percentile;
use anyhow::{bail, Context, Result};
use cairn_core::{Document, Format, Scored, Section};
use cairn_index::bm25::Bm25Index;
use cairn_index::vector::{ExactIndex, HnswIndex, HnswParams};
use cairn_models::SentenceEncoder;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// `--flag value` pairs after the subcommand; `--smoke` is a bare flag.
pub struct Flags(HashMap<String, String>);

impl Flags {
    pub fn parse(args: &[String]) -> Result<Flags> {
        let mut m = HashMap::new();
        let mut i = 0;
        while i < args.len() {
            let k = args[i]
                .strip_prefix("--")
                .with_context(|| format!("expected --flag, got {}", args[i]))?;
            if k == "smoke" {
                m.insert(k.to_string(), "1".to_string());
                i += 1;
                continue;
            }
            let v = args
                .get(i + 1)
                .with_context(|| format!("--{k} needs a value"))?;
            m.insert(k.to_string(), v.clone());
            i += 2;
        }
        Ok(Flags(m))
    }
    pub(crate) fn opt(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }
    pub(crate) fn req(&self, k: &str) -> Result<&str> {
        self.opt(k).with_context(|| format!("--{k} is required"))
    }
    pub(crate) fn path(&self, k: &str) -> Result<PathBuf> {
        self.req(k).map(PathBuf::from)
    }
    pub(crate) fn num(&self, k: &str, default: usize) -> Result<usize> {
        match self.opt(k) {
            Some(v) => v
                .parse()
                .with_context(|| format!("--{k}: `{v}` is not a number")),
            None => Ok(default),
        }
    }
    pub(crate) fn list(&self, k: &str, default: &str) -> Result<Vec<usize>> {
        self.opt(k)
            .unwrap_or(default)
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .with_context(|| format!("--{k}: `{s}` is not a number"))
            })
            .collect()
    }
}

/// Read the `text` field of every line of a JSONL file.
fn read_texts(path: &Path, field: &str, limit: usize) -> Result<Vec<String>> {
    let f = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut out = vec![];
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("{} line {}", path.display(), i + 1))?;
        let t = v[field]
            .as_str()
            .with_context(|| format!("{} line {}: no `{field}` string", path.display(), i + 1))?;
        out.push(t.to_string());
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// Queries: the `question` field of a QA set, else `text`.
fn read_queries(path: &Path) -> Result<Vec<String>> {
    read_texts(path, "question", usize::MAX).or_else(|_| read_texts(path, "text", usize::MAX))
}

/// Raw little-endian f32 rows.
pub(crate) fn read_f32(path: &Path, dim: usize) -> Result<Vec<Vec<f32>>> {
    let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    if bytes.len() % (dim * 4) != 0 {
        bail!(
            "{}: {} bytes is not a whole number of {dim}-dim f32 rows",
            path.display(),
            bytes.len()
        );
    }
    Ok(bytes
        .chunks_exact(dim * 4)
        .map(|row| {
            row.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        })
        .collect())
}

fn read_i32(path: &Path, k: usize) -> Result<Vec<Vec<u64>>> {
    let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    if bytes.len() % (k * 4) != 0 {
        bail!(
            "{}: not a whole number of {k}-wide int32 rows",
            path.display()
        );
    }
    Ok(bytes
        .chunks_exact(k * 4)
        .map(|row| {
            row.chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64)
                .collect()
        })
        .collect())
}

fn write_f32(path: &Path, rows: &[Vec<f32>]) -> Result<()> {
    let mut w = BufWriter::new(std::fs::File::create(path)?);
    for r in rows {
        for x in r {
            w.write_all(&x.to_le_bytes())?;
        }
    }
    w.flush()?;
    Ok(())
}

fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<usize>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

pub(crate) fn thread_pool(threads: usize) -> Result<rayon::ThreadPool> {
    Ok(rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()?)
}

fn load_model(f: &Flags, threads: usize) -> Result<Arc<dyn SentenceEncoder>> {
    let dir = f.path("model")?;
    let batch = f.num("batch", 32)?;
    match f.opt("backend").unwrap_or("onnx") {
        #[cfg(feature = "candle")]
        "candle" => Ok(Arc::new(cairn_models::BertEmbedder::load(
            &dir,
            cairn_models::Device::Cpu,
            batch,
        )?)),
        #[cfg(not(feature = "candle"))]
        "candle" => bail!("--backend candle: build cairn-bench with --features candle"),
        "onnx" | "ort" => Ok(Arc::new(cairn_models::OnnxEmbedder::load(
            &dir,
            cairn_models::Device::Cpu,
            &cairn_models::OnnxOptions {
                onnx_file: f.opt("onnx").map(PathBuf::from),
                dylib: f.opt("ort-dylib").map(PathBuf::from).or_else(|| {
                    std::env::var_os("ORT_DYLIB_PATH")
                        .map(PathBuf::from)
                        .or_else(|| {
                            Some(
                                cairn_core::config::default_models_dir()
                                    .join("onnxruntime/libonnxruntime.so"),
                            )
                        })
                }),
                threads,
                batch_size: batch,
            },
        )?)),
        other => bail!("--backend {other}: expected candle or onnx"),
    }
}

/// Chunks of a corpus made by Cairn's own loader and chunker.
pub fn export_chunks(f: &Flags) -> Result<Value> {
    let corpus = f.path("corpus")?;
    let tokens = f.num("tokens", 256)?;
    let limit = f.num("limit", usize::MAX)?;
    let out = f.path("out")?;
    let tok_dir = f
        .opt("tokenizer")
        .map(PathBuf::from)
        .unwrap_or_else(|| cairn_core::config::default_models_dir().join("all-MiniLM-L6-v2"));
    let tokenizer = tokenizers::Tokenizer::from_file(tok_dir.join("tokenizer.json"))
        .map_err(|e| anyhow::anyhow!("{}: {e}", tok_dir.display()))?;
    let chunker = cairn_ingest::Chunker::new(tokenizer, tokens, f.num("overlap", 0)?)?;
    let (files, _) = cairn_ingest::walk(
        std::slice::from_ref(&corpus),
        &cairn_ingest::WalkOptions {
            max_file_bytes: 64 << 20,
            ignore_files: vec![".cairnignore".into()],
            hidden: false,
            images: false,
        },
    );
    let mut w = BufWriter::new(std::fs::File::create(&out)?);
    let mut texts = match f.opt("texts-out") {
        Some(p) => Some(BufWriter::new(std::fs::File::create(p)?)),
        None => None,
    };
    let (mut n, mut docs) = (0usize, 0usize);
    let ext = f.opt("ext");
    for file in files {
        if n >= limit {
            break;
        }
        // `--ext html`: only pages, and nothing under `_sources`, `_static`...
        if let Some(ext) = ext {
            let rel = file
                .abs_path
                .strip_prefix(&corpus)
                .unwrap_or(&file.abs_path);
            let hidden = rel
                .components()
                .any(|c| c.as_os_str().to_string_lossy().starts_with('_'));
            if hidden || file.abs_path.extension().is_none_or(|e| e != ext) {
                continue;
            }
        }
        let Ok(bytes) = cairn_ingest::read_file(&file.abs_path, 64 << 20) else {
            continue;
        };
        let Ok(doc) = cairn_ingest::load(&file.abs_path, &bytes) else {
            continue;
        };
        docs += 1;
        if let Some(t) = texts.as_mut() {
            writeln!(t, "{}", json!({"path": file.abs_path, "text": doc.text}))?;
        }
        for c in chunker.chunk(&doc) {
            if n >= limit {
                break;
            }
            writeln!(w, "{}", json!({"text": c.embedding_text()}))?;
            n += 1;
        }
    }
    w.flush()?;
    if let Some(mut t) = texts {
        t.flush()?;
    }
    Ok(json!({"chunks": n, "docs": docs, "tokens": tokens, "out": out}))
}

/// Embedding throughput on a file of inputs, and single-query latency.
pub fn embed_file(f: &Flags) -> Result<Value> {
    let threads = f.num("threads", 2)?;
    let limit = f.num("limit", usize::MAX)?;
    let inputs = read_texts(&f.path("inputs")?, "text", limit)?;
    let queries = read_queries(&f.path("queries")?)?;
    let pool = thread_pool(threads)?;
    let model = load_model(f, threads)?;
    let label = f
        .opt("label")
        .map(String::from)
        .unwrap_or_else(|| format!("cairn-{}", model.backend()));
    pool.install(|| -> Result<Value> {
        let tokens: usize = inputs
            .iter()
            .map(|c| model.count_tokens(c).min(model.max_tokens()))
            .sum();
        model.embed_passages(&inputs[..inputs.len().min(8)])?; // warm-up
        let t = Instant::now();
        let vecs = model.embed_passages(&inputs)?;
        let secs = t.elapsed().as_secs_f64();
        if let Some(out) = f.opt("out") {
            write_f32(Path::new(out), &vecs)?;
        }
        for q in queries.iter().take(3) {
            model.embed_query(q)?;
        }
        let mut lat = vec![];
        for q in &queries {
            let t = Instant::now();
            model.embed_query(q)?;
            lat.push(t.elapsed().as_secs_f64() * 1e3);
        }
        lat.sort_by(f64::total_cmp);
        Ok(json!({
            "peer": label,
            "model": model.model_id(),
            "threads": threads,
            "n": inputs.len(),
            "tokens": tokens,
            "seconds": secs,
            "chunks_per_s": inputs.len() as f64 / secs,
            "tokens_per_s": tokens as f64 / secs,
            "query_p50_ms": percentile(&lat, 0.5),
            "query_p99_ms": percentile(&lat, 0.99),
        }))
    })
}

/// Memory bandwidth as `memcpy` sees it: copy a 256 MiB buffer a few times.
pub(crate) fn memcpy_gb_per_s() -> f64 {
    let n = 256 << 20;
    let src = vec![1u8; n];
    let mut dst = vec![0u8; n];
    dst.copy_from_slice(&src); // fault the pages in
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        dst.copy_from_slice(&src);
        std::hint::black_box(&dst);
        best = best.min(t.elapsed().as_secs_f64());
    }
    // bytes read + bytes written
    (2 * n) as f64 / best / 1e9
}

/// Recall@k by ids: the share of the true top k among the results.
fn recall(got: &[Scored], truth: &[u64], k: usize) -> f64 {
    let want: std::collections::HashSet<u64> = truth.iter().take(k).copied().collect();
    got.iter().take(k).filter(|s| want.contains(&s.id)).count() as f64 / k as f64
}

/// Recall@k with ties, as ann-benchmarks counts it: a result is a hit when
/// its inner product with the query is at least the k-th true neighbour's
/// (less [`TIE`]), so that copies of one vector count alike (the real set
/// holds 4,460 duplicate rows; with ids alone, which copies the ground
/// truth names is chance). `peers.py` counts the same way.
fn recall_ties(got: &[Scored], truth: &[u64], base: &[Vec<f32>], q: &[f32], k: usize) -> f64 {
    let dot = |id: u64| -> f32 { base[id as usize].iter().zip(q).map(|(a, b)| a * b).sum() };
    let Some(&kth) = truth.get(k.min(truth.len()).wrapping_sub(1)) else {
        return 0.0;
    };
    let bar = dot(kth) - TIE;
    got.iter().take(k).filter(|s| dot(s.id) >= bar).count() as f64 / k as f64
}

/// [`recall_ties`] averaged over the queries answered in `results` (the
/// first `results.len()` of `queries`).
fn mean_recall_ties(
    results: &[Vec<Scored>],
    truth: &[Vec<u64>],
    base: &[Vec<f32>],
    queries: &[Vec<f32>],
    k: usize,
) -> f64 {
    let sum: f64 = results
        .iter()
        .zip(truth)
        .zip(queries)
        .map(|((got, truth), q)| recall_ties(got, truth, base, q, k))
        .sum();
    sum / results.len().max(1) as f64
}

/// Inner products this close are one value (see [`recall_ties`]).
const TIE: f32 = 1e-6;

/// Cairn's HNSW and exact scan on the same vectors the peers get.
pub fn vectors(f: &Flags) -> Result<Value> {
    let dim = f.num("dim", 384)?;
    let threads = f.num("threads", 2)?;
    let k = 10;
    let base = read_f32(&f.path("base")?, dim)?;
    let queries = read_f32(&f.path("queries")?, dim)?;
    let gt = read_i32(&f.path("gt")?, k)?;
    if gt.len() != queries.len() {
        bail!(
            "{} ground-truth rows for {} queries",
            gt.len(),
            queries.len()
        );
    }
    let params = HnswParams {
        dim,
        quantization: f.opt("quantization").unwrap_or("f32").to_string(),
        m: f.num("m", 16)?,
        ef_construction: f.num("efc", 128)?,
        ef_search: 64,
    };
    let pool = thread_pool(threads)?;
    let tmp = tempfile::tempdir()?;
    // `--index-dir D`: build there and keep the graph; a later run with the
    // same directory loads it instead of building (for profiling searches).
    let dir = f.opt("index-dir").map(PathBuf::from);
    let reuse = dir.as_ref().is_some_and(|d| d.join("hnsw.json").is_file());
    let items: Vec<(u64, Vec<f32>)> = base
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, v)| (i as u64, v))
        .collect();
    let rss0 = rss_bytes();
    let t = Instant::now();
    let index = pool.install(|| -> Result<HnswIndex> {
        let index = HnswIndex::open(dir.as_deref().unwrap_or(tmp.path()), &params)?;
        if !reuse {
            for batch in items.chunks(f.num("add-batch", 10_000)?.max(1)) {
                index.add_batch(batch)?;
            }
        }
        Ok(index)
    })?;
    let build_s = t.elapsed().as_secs_f64();
    let rss_delta = rss_bytes().saturating_sub(rss0);
    // Graph quality apart from the queries: base vectors that a search for
    // themselves (top 10, the default breadth) does not find.
    let not_found_by_own_vector = pool.install(|| {
        use rayon::prelude::*;
        items
            .par_iter()
            .map(|(id, v)| {
                index
                    .search(v, k, None)
                    .map(|hits| u64::from(!hits.iter().any(|h| h.id == *id)))
            })
            .sum::<cairn_index::Result<u64>>()
    })?;
    drop(items);
    let mut sweep = vec![];
    for ef in f.list("efs", "10,16,24,32,48,64,96,128,192,256,384,512")? {
        let ef = ef.max(k);
        // one query at a time, on one thread, like a server answering a request
        // (recall is scored after the clock stops, as the peers do)
        let t = Instant::now();
        let results = queries
            .iter()
            .map(|q| index.search(q, k, Some(ef)))
            .collect::<cairn_index::Result<Vec<_>>>()?;
        let secs = t.elapsed().as_secs_f64();
        let r = mean_recall_ties(&results, &gt, &base, &queries, k);
        let r_ids: f64 = results
            .iter()
            .zip(&gt)
            .map(|(got, truth)| recall(got, truth, k))
            .sum();
        // all queries at once, spread over the threads, at the same breadth
        let t = Instant::now();
        pool.install(|| {
            use rayon::prelude::*;
            queries
                .par_iter()
                .map(|q| index.search(q, k, Some(ef)).map(|_| ()))
                .collect::<cairn_index::Result<Vec<()>>>()
        })?;
        let batch_secs = t.elapsed().as_secs_f64();
        sweep.push(json!({
            "ef": ef,
            "recall": r,
            "recall_ids": r_ids / queries.len() as f64,
            "qps": queries.len() as f64 / secs,
            "batch_qps": queries.len() as f64 / batch_secs,
        }));
    }
    let memory = index.memory_usage();
    index.save(1)?;
    // exact scan: one query at a time, one thread
    let mut exact = ExactIndex::new(dim);
    for (i, v) in base.iter().enumerate() {
        exact.push(i as u64, v)?;
    }
    let nq = queries.len().min(50);
    let t = Instant::now();
    let got = queries
        .iter()
        .take(nq)
        .map(|q| exact.search(q, k))
        .collect::<cairn_index::Result<Vec<_>>>()?;
    let per_query = t.elapsed().as_secs_f64() / nq as f64;
    let exact_recall = mean_recall_ties(&got, &gt, &base, &queries, k);
    let scan_bytes = (base.len() * dim * 4) as f64;
    Ok(json!({
        "peer": "cairn-hnsw",
        "n": base.len(),
        "dim": dim,
        "threads": threads,
        "m": params.m,
        "efc": params.ef_construction,
        "build_s": if reuse { Value::Null } else { json!(build_s) },
        "not_found_by_own_vector": not_found_by_own_vector,
        // Measured like the peers' (resident memory before and after the
        // build); `index_bytes_per_vector` is the graph's own accounting.
        "bytes_per_vector": rss_delta as f64 / base.len() as f64,
        "index_bytes_per_vector": memory as f64 / base.len() as f64,
        "sweep": sweep,
        "exact": {
            "qps": 1.0 / per_query,
            "recall": exact_recall,
            "scan_gb_per_s": scan_bytes / per_query / 1e9,
        },
        "memcpy_gb_per_s": memcpy_gb_per_s(),
    }))
}

/// Cairn's BM25 (tantivy, Cairn's analyser) on the same passages and queries.
pub fn bm25(f: &Flags) -> Result<Value> {
    let k = f.num("k", 10)?;
    let passages = read_texts(&f.path("passages")?, "text", f.num("limit", usize::MAX)?)?;
    let queries = read_queries(&f.path("queries")?)?;
    let tmp = tempfile::tempdir()?;
    let t = Instant::now();
    let index = Bm25Index::open_or_create(tmp.path())?;
    for (i, p) in passages.iter().enumerate() {
        index.add(i as u64, "", "", p)?;
    }
    index.commit(1)?;
    let build_s = t.elapsed().as_secs_f64();
    for q in queries.iter().take(5) {
        index.search(q, k)?;
    }
    let mut lat = vec![];
    let reps = f.num("reps", 3)?.max(1);
    let t = Instant::now();
    for _ in 0..reps {
        for q in &queries {
            let t = Instant::now();
            std::hint::black_box(index.search(q, k)?);
            lat.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let secs = t.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    Ok(json!({
        "peer": "cairn-tantivy",
        "n": passages.len(),
        "queries": queries.len(),
        "build_s": build_s,
        "segments": index.segments(),
        "p50_ms": percentile(&lat, 0.5),
        "p99_ms": percentile(&lat, 0.99),
        "qps": lat.len() as f64 / secs,
    }))
}

/// Cairn's token-aware chunker on plain texts.
pub fn chunk(f: &Flags) -> Result<Value> {
    let texts = read_texts(&f.path("texts")?, "text", f.num("limit", usize::MAX)?)?;
    let dir = f.path("tokenizer")?;
    let tok_file = if dir.is_dir() {
        dir.join("tokenizer.json")
    } else {
        dir.clone()
    };
    let tokenizer = tokenizers::Tokenizer::from_file(&tok_file)
        .map_err(|e| anyhow::anyhow!("{}: {e}", tok_file.display()))?;
    let chunker =
        cairn_ingest::Chunker::new(tokenizer, f.num("tokens", 256)?, f.num("overlap", 0)?)?;
    let docs: Vec<Document> = texts
        .into_iter()
        .map(|text| Document {
            format: Format::Text,
            sections: vec![Section {
                start: 0,
                end: text.len(),
                headings: vec![],
            }],
            text,
            warnings: vec![],
        })
        .collect();
    let bytes: usize = docs.iter().map(|d| d.text.len()).sum();
    // Documents are chunked in parallel, as `cairn ingest` does (one rayon
    // task per file); `--threads 1` gives the single-thread figure.
    let threads = f.num("threads", 1)?;
    let pool = thread_pool(threads)?;
    let mut times = vec![];
    let mut chunks = 0;
    for _ in 0..f.num("reps", 3)?.max(1) {
        let t = Instant::now();
        chunks = pool.install(|| {
            use rayon::prelude::*;
            docs.par_iter()
                .map(|d| chunker.chunk(d).len())
                .sum::<usize>()
        });
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let secs = times[times.len() / 2];
    Ok(json!({
        "peer": "cairn",
        "threads": threads,
        "bytes": bytes,
        "chunks": chunks,
        "seconds": secs,
        "mb_per_s": bytes as f64 / secs / 1e6,
    }))
}

/// A tiny deterministic generator for synthetic data (xorshift*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.unit().max(1e-7), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
}

/// End-to-end query cost (embed the query, HNSW + BM25, reciprocal rank
/// fusion; no generation) as the collection grows. Real passages and their
/// vectors first (`--passages`, `--base`); beyond them, synthetic passages
/// (words drawn from the real passages' vocabulary) with vectors near the
/// real ones.
pub fn scale(f: &Flags) -> Result<Value> {
    let dim = f.num("dim", 384)?;
    let threads = f.num("threads", 2)?;
    let sizes = f.list("sizes", "10000,100000,1000000")?;
    let max = sizes.iter().copied().max().unwrap_or(0);
    let queries = read_queries(&f.path("queries")?)?;
    let pool = thread_pool(threads)?;
    let model = load_model(f, threads)?;
    let mut passages = match f.opt("passages") {
        Some(p) => read_texts(Path::new(p), "text", max)?,
        None => vec![],
    };
    let mut vectors = match f.opt("base") {
        Some(p) => read_f32(Path::new(p), dim)?,
        None => vec![],
    };
    vectors.truncate(max);
    passages.truncate(
        vectors
            .len()
            .max(if f.opt("base").is_some() { 0 } else { max }),
    );
    if passages.len() < vectors.len() {
        vectors.truncate(passages.len());
    }
    if passages.is_empty() {
        bail!("--passages with at least one passage is required (the vocabulary of synthetic passages)");
    }
    // Vectors for real passages without one are embedded now.
    if vectors.len() < passages.len() {
        let missing = passages[vectors.len()..].to_vec();
        vectors.extend(pool.install(|| model.embed_passages(&missing))?);
    }
    let vocab: Vec<String> = {
        let mut set = std::collections::BTreeSet::new();
        for p in passages.iter().take(20_000) {
            for w in p.split_whitespace() {
                if w.len() > 2 && w.chars().all(|c| c.is_alphanumeric()) {
                    set.insert(w.to_lowercase());
                }
            }
        }
        set.into_iter().collect()
    };
    let real = passages.len();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut out = vec![];
    let tmp = tempfile::tempdir()?;
    let params = HnswParams {
        dim,
        quantization: "f32".into(),
        m: 16,
        ef_construction: 128,
        ef_search: 64,
    };
    let hnsw = HnswIndex::open(&tmp.path().join("hnsw"), &params)?;
    let bm25 = Bm25Index::open_or_create(&tmp.path().join("bm25"))?;
    let mut have = 0usize;
    let mut sorted_sizes = sizes.clone();
    sorted_sizes.sort();
    for &size in &sorted_sizes {
        let t = Instant::now();
        // Grow the collection to `size`, in batches.
        while have < size {
            let n = (size - have).min(10_000);
            let mut items = Vec::with_capacity(n);
            for i in have..have + n {
                let (text, v) = if i < real {
                    (passages[i].clone(), vectors[i].clone())
                } else {
                    let words = 30 + (rng.next() % 40) as usize;
                    let text = (0..words)
                        .map(|_| vocab[(rng.next() % vocab.len() as u64) as usize].as_str())
                        .collect::<Vec<_>>()
                        .join(" ");
                    let anchor = &vectors[(rng.next() % real as u64) as usize];
                    let mut v: Vec<f32> = anchor.iter().map(|x| x + 0.05 * rng.normal()).collect();
                    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                    v.iter_mut().for_each(|x| *x /= norm);
                    (text, v)
                };
                bm25.add(i as u64, "", "", &text)?;
                items.push((i as u64, v));
            }
            pool.install(|| hnsw.add_batch(&items))?;
            have += n;
        }
        bm25.commit(have as u64)?;
        let build_s = t.elapsed().as_secs_f64();
        let (mut lat, mut embed_ms, mut search_ms) = (vec![], vec![], vec![]);
        let rounds = if queries.len() < 100 { 3 } else { 1 };
        for round in 0..=rounds {
            for q in &queries {
                let t0 = Instant::now();
                let v = pool.install(|| model.embed_query(q))?;
                let t1 = Instant::now();
                let d = hnsw.search(&v, 50, None)?;
                let b = bm25.search(q, 50)?;
                let mut fused =
                    cairn_index::fusion::reciprocal_rank_fusion(&[(1.0, &d), (1.0, &b)], 60.0);
                fused.truncate(10);
                std::hint::black_box(fused);
                let t2 = Instant::now();
                if round > 0 {
                    // round 0 warms caches
                    lat.push((t2 - t0).as_secs_f64() * 1e3);
                    embed_ms.push((t1 - t0).as_secs_f64() * 1e3);
                    search_ms.push((t2 - t1).as_secs_f64() * 1e3);
                }
            }
        }
        for v in [&mut lat, &mut embed_ms, &mut search_ms] {
            v.sort_by(f64::total_cmp);
        }
        out.push(json!({
            "n": size,
            "real_passages": real.min(size),
            "build_s": build_s,
            "p50_ms": percentile(&lat, 0.5),
            "p99_ms": percentile(&lat, 0.99),
            "embed_p50_ms": percentile(&embed_ms, 0.5),
            "search_p50_ms": percentile(&search_ms, 0.5),
            "search_p99_ms": percentile(&search_ms, 0.99),
            "rss_mib": rss_bytes() as f64 / (1 << 20) as f64,
        }));
        eprintln!("scale: {}", out.last().unwrap());
    }
    Ok(json!({"peer": format!("cairn-{}", model.backend()), "threads": threads, "sizes": out}))
}

/// `extract --file F [--rounds N]`: what Cairn's loader reads from one file
/// (the text chunks are cut from), and the median seconds of the load over
/// N rounds, for extraction-fidelity comparisons with other extractors.
pub fn extract(f: &Flags) -> Result<Value> {
    let path = f.path("file")?;
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let rounds = f.num("rounds", 3)?.max(1);
    let mut times = Vec::with_capacity(rounds);
    let mut doc = None;
    for _ in 0..rounds {
        let t = Instant::now();
        let d = cairn_ingest::load(&path, &bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        times.push(t.elapsed().as_secs_f64());
        doc = Some(d);
    }
    times.sort_by(f64::total_cmp);
    let doc = doc.expect("at least one round");
    Ok(serde_json::json!({
        "file": path,
        "seconds": times[times.len() / 2],
        "sections": doc.sections.len(),
        "headings": doc.sections.iter().map(|s| s.headings.join(" > ")).collect::<Vec<_>>(),
        "warnings": doc.warnings,
        "text": doc.text,
    }))
}
