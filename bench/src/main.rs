//! `cairn-bench`: measurements of the retrieval core on a real corpus.
//!
//! ```text
//! cairn-bench embed  --corpus DIR [--limit N]            embedding throughput at the default chunk size, query latency
//! cairn-bench ingest --corpus DIR --cairn BIN            end-to-end `cairn ingest` wall time and peak memory
//! cairn-bench search --data-dir DIR [--queries N]        search latency p50/p99 per mode
//! ```
//! Every command prints one JSON object on stdout; `--smoke` shrinks the work
//! so CI can check the harness still runs.

use anyhow::{bail, Context, Result};
use cairn_core::config::Config;
use cairn_core::{Embedder, NoProgress, SearchMode};
use std::path::PathBuf;
use std::time::Instant;

struct Args {
    cmd: String,
    corpus: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    cairn: Option<PathBuf>,
    limit: usize,
    queries: usize,
    smoke: bool,
}

fn parse() -> Result<Args> {
    let mut it = std::env::args().skip(1);
    let cmd = it
        .next()
        .context("usage: cairn-bench embed|ingest|search [options]")?;
    let mut a = Args {
        cmd,
        corpus: None,
        data_dir: None,
        cairn: None,
        limit: 2000,
        queries: 200,
        smoke: false,
    };
    while let Some(flag) = it.next() {
        let mut val = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--corpus" => a.corpus = Some(val()?.into()),
            "--data-dir" => a.data_dir = Some(val()?.into()),
            "--cairn" => a.cairn = Some(val()?.into()),
            "--limit" => a.limit = val()?.parse()?,
            "--queries" => a.queries = val()?.parse()?,
            "--smoke" => a.smoke = true,
            other => bail!("unknown option {other}"),
        }
    }
    if a.smoke {
        a.limit = a.limit.min(64);
        a.queries = a.queries.min(10);
    }
    Ok(a)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn config(data_dir: Option<PathBuf>) -> Result<Config> {
    let mut c = Config::default();
    c.apply_env(|k| std::env::var(k).ok())?;
    if data_dir.is_some() {
        c.data_dir = data_dir;
    }
    Ok(c)
}

/// Chunks of the corpus at the default chunk size, as the ingest path makes them.
fn corpus_chunks(
    cfg: &Config,
    corpus: &PathBuf,
    model: &cairn_models::BertEmbedder,
    limit: usize,
) -> Result<Vec<String>> {
    let max_tokens = if cfg.chunk.max_tokens == 0 {
        model.max_tokens()
    } else {
        cfg.chunk.max_tokens
    };
    let chunker = cairn_ingest::Chunker::new(
        model.chunking_tokenizer(),
        max_tokens,
        cfg.chunk.overlap_tokens,
    )?;
    let (files, _) = cairn_ingest::walk(
        std::slice::from_ref(corpus),
        &cairn_ingest::WalkOptions {
            max_file_bytes: cfg.ingest.max_file_bytes,
            ignore_files: cfg.ingest.ignore_files.clone(),
            hidden: cfg.ingest.hidden,
        },
    );
    let mut out = vec![];
    for f in files {
        let Ok(bytes) = cairn_ingest::read_file(&f.abs_path, cfg.ingest.max_file_bytes) else {
            continue;
        };
        let Ok(doc) = cairn_ingest::load(&f.abs_path, &bytes) else {
            continue;
        };
        out.extend(chunker.chunk(&doc).into_iter().map(|c| c.embedding_text()));
        if out.len() >= limit {
            out.truncate(limit);
            break;
        }
    }
    Ok(out)
}

fn embed(a: &Args) -> Result<serde_json::Value> {
    let cfg = config(None)?;
    let corpus = a.corpus.clone().context("--corpus DIR is required")?;
    let model = cairn_engine::load_embedder(&cfg)?;
    let chunks = corpus_chunks(&cfg, &corpus, &model, a.limit)?;
    let tokens: usize = chunks
        .iter()
        .map(|c| model.count_tokens(c).min(model.max_tokens()))
        .sum();
    model.embed_passages(&chunks[..chunks.len().min(32)].to_vec())?; // warm-up
    let t = Instant::now();
    let v = model.embed_passages(&chunks)?;
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(v.len(), chunks.len());
    let queries = [
        "how do I create a virtual environment?",
        "os.path.join",
        "read a file line by line",
        "what does json.dumps return?",
    ];
    let mut lat = vec![];
    for i in 0..a.queries.max(20) {
        let t = Instant::now();
        model.embed_query(queries[i % queries.len()])?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    lat.sort_by(f64::total_cmp);
    Ok(serde_json::json!({
        "bench": "embed",
        "model": model.model_id(),
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "chunks": chunks.len(),
        "mean_tokens_per_chunk": tokens as f64 / chunks.len().max(1) as f64,
        "seconds": secs,
        "chunks_per_s": chunks.len() as f64 / secs,
        "tokens_per_s": tokens as f64 / secs,
        "query_ms_p50": percentile(&lat, 0.5),
        "query_ms_p99": percentile(&lat, 0.99),
    }))
}

fn ingest(a: &Args) -> Result<serde_json::Value> {
    let corpus = a.corpus.clone().context("--corpus DIR is required")?;
    let cairn = a
        .cairn
        .clone()
        .context("--cairn PATH_TO_BINARY is required")?;
    let data = a.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("cairn-bench-{}", std::process::id()))
    });
    let _ = std::fs::remove_dir_all(&data);
    let t = Instant::now();
    let out = std::process::Command::new(&cairn)
        .arg("--data-dir")
        .arg(&data)
        .args(["ingest", "--json"])
        .arg(&corpus)
        .output()?;
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "cairn ingest failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    // Peak resident memory of the child, from the kernel's accounting.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    Ok(serde_json::json!({
        "bench": "ingest",
        "corpus": corpus,
        "files": report["files_seen"],
        "chunks": report["chunks_added"],
        "skipped": report["skipped"].as_array().map(|s| s.len()),
        "wall_s": secs,
        "peak_rss_mib": ru.ru_maxrss as f64 / 1024.0,
        "data_dir": data,
    }))
}

fn search(a: &Args) -> Result<serde_json::Value> {
    let cfg = config(a.data_dir.clone())?;
    let engine = cairn_engine::Engine::open_with(&cfg, &NoProgress)?;
    let status = engine.status()?;
    // Realistic questions and identifier lookups, cycled to --queries.
    const QUESTIONS: &[&str] = &[
        "how do I create a virtual environment?",
        "read a file line by line",
        "what does the else clause of a for loop do",
        "difference between a list and a tuple",
        "how to handle exceptions with try and except",
        "define a function with default argument values",
        "keyword arguments",
        "list comprehensions",
        "format strings with f-strings",
        "import a module from a package",
        "what is __init__.py for",
        "class variables versus instance variables",
        "how do generators work",
        "sys.argv",
        "os.path.join",
        "json.dumps",
        "-m venv",
        "floating point arithmetic issues and limitations",
        "dictionary iteration order",
        "lambda expressions",
        "how to use the with statement for files",
        "raise an exception",
        "pip install a package",
        "interactive interpreter tab completion",
        "unpacking argument lists",
    ];
    let queries: Vec<String> = QUESTIONS
        .iter()
        .cycle()
        .take(a.queries.max(QUESTIONS.len()))
        .map(|s| s.to_string())
        .collect();
    let mut result =
        serde_json::json!({"bench": "search", "chunks": status.chunks, "queries": queries.len()});
    for mode in [SearchMode::Dense, SearchMode::Bm25, SearchMode::Hybrid] {
        for q in queries.iter().take(5) {
            engine.search(q, 10, mode)?; // warm-up
        }
        let mut lat = vec![];
        for q in &queries {
            let t = Instant::now();
            engine.search(q, 10, mode)?;
            lat.push(t.elapsed().as_secs_f64() * 1e3);
        }
        lat.sort_by(f64::total_cmp);
        result[format!("{mode}_ms_p50")] = percentile(&lat, 0.5).into();
        result[format!("{mode}_ms_p99")] = percentile(&lat, 0.99).into();
    }
    Ok(result)
}

fn main() -> Result<()> {
    let a = parse()?;
    let v = match a.cmd.as_str() {
        "embed" => embed(&a)?,
        "ingest" => ingest(&a)?,
        "search" => search(&a)?,
        other => bail!("unknown benchmark {other} (embed, ingest, search)"),
    };
    println!("{v}");
    Ok(())
}
