//! `cairn-bench`: measurements of the retrieval core on a real corpus.
//!
//! ```text
//! cairn-bench embed  --corpus DIR [--limit N]            embedding throughput at the default chunk size, query latency
//! cairn-bench ingest --corpus DIR --cairn BIN            end-to-end `cairn ingest` wall time and peak memory
//! cairn-bench search --data-dir DIR [--queries N]        search latency p50/p99 per mode
//! cairn-bench cluster-search --url NATS --collection C [--data-dir SINGLE] [--queries N] [--concurrency C] [--rounds R]
//!                                                         scatter-gather latency, QPS and work split,
//!                                                         beside in-process search of the same corpus
//!                                                         (medians of R rounds, each round both sides)
//! cairn-bench generate --model GGUF [--threads N] [-p N] [-n N] [--corpus DIR]
//!                                                         llama-bench's pp/tg through Cairn's engine,
//!                                                         and time to first token for a RAG prompt
//! ```
//! Every command prints one JSON object on stdout; `--smoke` shrinks the work
//! so CI can check the harness still runs.

mod cluster;
mod exact;
mod side;

use anyhow::{bail, Context, Result};
use cairn_core::config::Config;
use cairn_core::{NoProgress, SearchMode};
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
    model: Option<PathBuf>,
    threads: usize,
    n_prompt: usize,
    n_gen: usize,
    rag_tokens: usize,
    url: Option<String>,
    collection: String,
    concurrency: usize,
    rounds: usize,
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
        model: None,
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        n_prompt: 512,
        n_gen: 128,
        rag_tokens: 2000,
        url: None,
        collection: "docs".into(),
        concurrency: 4,
        rounds: 3,
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
            "--model" => a.model = Some(val()?.into()),
            "--threads" => a.threads = val()?.parse()?,
            "-p" => a.n_prompt = val()?.parse()?,
            "-n" => a.n_gen = val()?.parse()?,
            "--rag-tokens" => a.rag_tokens = val()?.parse()?,
            "--url" => a.url = Some(val()?),
            "--collection" => a.collection = val()?,
            "--concurrency" => a.concurrency = val()?.parse()?,
            "--rounds" => a.rounds = val()?.parse()?,
            other => bail!("unknown option {other}"),
        }
    }
    if a.smoke {
        a.limit = a.limit.min(64);
        a.queries = a.queries.min(10);
        a.n_prompt = a.n_prompt.min(32);
        a.n_gen = a.n_gen.min(8);
        a.rag_tokens = a.rag_tokens.min(200);
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
    model: &dyn cairn_models::SentenceEncoder,
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
            // Text documents only, as the peers read: no OCR in these runs.
            images: false,
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
    let chunks = corpus_chunks(&cfg, &corpus, model.as_ref(), a.limit)?;
    let tokens: usize = chunks
        .iter()
        .map(|c| model.count_tokens(c).min(model.max_tokens()))
        .sum();
    model.embed_passages(&chunks[..chunks.len().min(32)])?; // warm-up
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

/// Realistic questions and identifier lookups, cycled to --queries.
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

/// `n` queries (at least one of each), cycling through [`QUESTIONS`].
fn questions(n: usize) -> Vec<String> {
    QUESTIONS
        .iter()
        .cycle()
        .take(n.max(QUESTIONS.len()))
        .map(|s| s.to_string())
        .collect()
}

fn search(a: &Args) -> Result<serde_json::Value> {
    let cfg = config(a.data_dir.clone())?;
    let engine = cairn_engine::Engine::open_with(&cfg, &NoProgress)?;
    let status = engine.status()?;
    let queries = questions(a.queries);
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

/// Prompt processing and decode speed measured the way llama-bench does
/// (pp: one batch of synthetic prompt tokens; tg: one token at a time), then
/// the time to first token of a real RAG prompt built from the corpus.
fn generate(a: &Args) -> Result<serde_json::Value> {
    use cairn_generate::llama::{LlamaGenerator, LlamaOptions};
    use cairn_generate::{ChatMessage, Flow, Generator, Sampling};
    let model = a.model.clone().context("--model GGUF is required")?;
    let g = LlamaGenerator::load(
        &model,
        &LlamaOptions {
            threads: Some(a.threads),
            context: 4096,
            ..LlamaOptions::default()
        },
    )?;
    // One warm-up, as llama-bench does.
    g.bench(a.n_prompt.min(64), 4)?;
    let (pp, tg) = g.bench(a.n_prompt, a.n_gen)?;
    let mut result = serde_json::json!({
        "model": g.model_name(),
        "threads": a.threads,
        "n_prompt": a.n_prompt,
        "n_gen": a.n_gen,
        "pp_tok_s": pp,
        "tg_tok_s": tg,
    });
    // A RAG-shaped prompt of about `rag_tokens` tokens from real passages.
    let corpus = a
        .corpus
        .clone()
        .unwrap_or_else(|| "/usr/share/doc/python3.11/html/tutorial".into());
    let cfg = Config::default();
    let (files, _) = cairn_ingest::walk(
        &[corpus],
        &cairn_ingest::WalkOptions {
            max_file_bytes: cfg.ingest.max_file_bytes,
            ignore_files: cfg.ingest.ignore_files.clone(),
            hidden: cfg.ingest.hidden,
            // Text documents only, as the peers read: no OCR in these runs.
            images: false,
        },
    );
    let mut text = String::new();
    for f in files.iter() {
        if g.count_tokens(&text)? >= a.rag_tokens {
            break;
        }
        let bytes = std::fs::read(&f.abs_path)?;
        if let Ok(doc) = cairn_ingest::load(&f.abs_path, &bytes) {
            text.push_str(&doc.text);
            text.push('\n');
        }
    }
    let mut words: Vec<&str> = text.split_whitespace().collect();
    while g.count_tokens(&words.join(" "))? > a.rag_tokens && words.len() > 10 {
        let keep = words.len() * 95 / 100;
        words.truncate(keep);
    }
    let context = words.join(" ");
    let msgs = [
        ChatMessage::system(cairn_generate::prompt::SYSTEM_PROMPT),
        ChatMessage::user(format!(
            "Sources:\n\n[1] tutorial\n{context}\n\nQuestion: How do I define a function?"
        )),
    ];
    let s = Sampling {
        max_tokens: 1,
        ..Sampling::default()
    };
    let mut ttft = Vec::new();
    let mut prompt_tokens = 0;
    for _ in 0..if a.smoke { 1 } else { 2 } {
        let mut sink = |_: &str| Flow::Continue;
        let out = g.generate(&msgs, &s, &mut sink)?;
        prompt_tokens = out.prompt_tokens;
        ttft.push(out.first_token_ms.unwrap_or(out.total_ms));
    }
    ttft.sort_by(f64::total_cmp);
    result["rag_prompt_tokens"] = prompt_tokens.into();
    result["rag_ttft_ms_median"] = ttft[ttft.len() / 2].into();

    // The strict attempt's decoding with and without the citation grammar,
    // alternately, on the same prompt: the grammar's cost per token.
    let strict = [
        ChatMessage::system(cairn_generate::prompt::STRICT_SYSTEM_PROMPT),
        msgs[1].clone(),
    ];
    let free = Sampling {
        max_tokens: a.n_gen as u32,
        ..Sampling::default()
    };
    let constrained = Sampling {
        grammar: Some(cairn_generate::prompt::citation_grammar(1)),
        ..free.clone()
    };
    let mut per_token = [Vec::new(), Vec::new()];
    for _ in 0..if a.smoke { 1 } else { 3 } {
        for (i, s) in [&free, &constrained].into_iter().enumerate() {
            let mut sink = |_: &str| Flow::Continue;
            let out = g.generate(&strict, s, &mut sink)?;
            let first = out.first_token_ms.unwrap_or(0.0);
            let decode =
                (out.total_ms - first) / out.completion_tokens.saturating_sub(1).max(1) as f64;
            per_token[i].push(decode);
        }
    }
    for v in per_token.iter_mut() {
        v.sort_by(f64::total_cmp);
    }
    let (f, c) = (
        per_token[0][per_token[0].len() / 2],
        per_token[1][per_token[1].len() / 2],
    );
    result["strict_ms_per_token_free"] = f.into();
    result["strict_ms_per_token_grammar"] = c.into();
    result["grammar_cost_ratio"] = (c / f).into();
    Ok(result)
}

fn main() -> Result<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if let Some(cmd) = argv.first() {
        let side: Option<fn(&side::Flags) -> Result<serde_json::Value>> = match cmd.as_str() {
            "export-chunks" => Some(side::export_chunks),
            "embed-file" => Some(side::embed_file),
            "vectors" => Some(side::vectors),
            "exact-scan" => Some(exact::exact_scan),
            "bm25" => Some(side::bm25),
            "chunk" => Some(side::chunk),
            "scale" => Some(side::scale),
            "extract" => Some(side::extract),
            _ => None,
        };
        if let Some(run) = side {
            println!("{}", run(&side::Flags::parse(&argv[1..])?)?);
            return Ok(());
        }
    }
    let a = parse()?;
    let v = match a.cmd.as_str() {
        "embed" => embed(&a)?,
        "ingest" => ingest(&a)?,
        "search" => search(&a)?,
        "generate" => generate(&a)?,
        "cluster-search" => cluster::search(&a)?,
        other => {
            bail!("unknown benchmark {other} (embed, ingest, search, generate, cluster-search)")
        }
    };
    println!("{v}");
    Ok(())
}
