//! Cluster mode: `cairn node`, and `cairn --cluster URL` for ingest,
//! search, ask, `cluster status` and `collection create`. Glue over
//! `cairn_cluster`.

use crate::progress::Bars;
use crate::{snippet, GenArgs};
use anyhow::{bail, Context, Result};
use cairn_cluster::merge::Fusion;
use cairn_cluster::{Cluster, ClusterError, NodeOptions};
use cairn_core::config::Config;
use cairn_core::SearchMode;
use cairn_engine::{load_embedder, AskOptions, IngestOptions, Preparer, Sink};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Flags of `cairn node`.
#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    /// NATS server URL(s), comma-separated.
    #[arg(long, value_name = "URL", env = "CAIRN_NATS")]
    pub nats: String,
    /// This node's name (unique in the cluster; [A-Za-z0-9_-]).
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// Seconds a node may be missing before another node takes over its
    /// shards (a node back within it catches up from its own copy);
    /// default `cluster.takeover_after_secs` (30).
    #[arg(long, value_name = "SECS")]
    pub takeover_after: Option<u64>,
    /// Do not load a generation model (the node only holds shards).
    #[arg(long)]
    pub no_llm: bool,
    #[command(flatten)]
    pub gen: GenArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// Nodes (devices, models), collections, shards, replicas and their lag.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum CollectionCommand {
    /// Create a sharded, replicated collection.
    Create {
        name: String,
        /// Shards (default: 2 × live nodes).
        #[arg(long)]
        shards: Option<u32>,
        /// Copies of each shard (default: min(2, live nodes)).
        #[arg(long)]
        replicas: Option<u32>,
        #[arg(long)]
        json: bool,
    },
}

/// Connect with the configured timeouts.
fn connect(rt: &tokio::runtime::Runtime, cfg: &Config, url: &str) -> Result<Cluster> {
    let mut c = rt.block_on(Cluster::connect(url))?;
    c.shard_timeout = Duration::from_millis(cfg.cluster.shard_timeout_ms);
    c.generation_idle = Duration::from_millis(cfg.cluster.generation_idle_ms);
    Ok(c)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn fusion(cfg: &Config) -> Fusion {
    Fusion {
        dense_weight: cfg.search.dense_weight,
        bm25_weight: cfg.search.bm25_weight,
        rrf_k: cfg.search.rrf_k,
        rrf: cfg.search.fusion == "rrf",
        candidates: cfg.search.candidates,
        max_per_document: cfg.search.max_per_document,
    }
}

/// `cairn node`.
pub fn node(mut cfg: Config, args: NodeArgs) -> Result<ExitCode> {
    crate::ask::apply(&mut cfg, &args.gen)?;
    cairn_cluster::validate_node_name(&args.name)?;
    let embedder = load_embedder(&cfg).context("loading the embedding model")?;
    let generator: Option<Arc<dyn cairn_generate::Generator>> =
        if args.no_llm {
            None
        } else {
            Some(cairn_engine::load_generator(&cfg).context(
                "loading the generator (pass --no-llm for a node that only holds shards)",
            )?)
        };
    let mut placement = BTreeMap::new();
    placement.insert(
        "embed".to_string(),
        format!("{} ({})", cfg.embed.device, embedder.backend()),
    );
    placement.insert("search".to_string(), "cpu".to_string());
    if let Some(g) = &generator {
        let where_ = match &cfg.generate.url {
            Some(u) => format!("remote {u}"),
            None => cfg.generate.device.clone(),
        };
        placement.insert(
            "generate".to_string(),
            format!("{where_} ({})", g.model_name()),
        );
    }
    let opts = NodeOptions {
        name: args.name.clone(),
        nats_urls: args.nats.split(',').map(|u| u.trim().to_string()).collect(),
        takeover_after: Duration::from_secs(
            args.takeover_after
                .unwrap_or(cfg.cluster.takeover_after_secs),
        ),
        devices: cairn_models::compiled_backends()
            .iter()
            .map(|s| s.to_string())
            .collect(),
        placement,
    };
    let rt = runtime()?;
    eprintln!(
        "cairn node {}: joining {} (data in {}, generator {})",
        args.name,
        args.nats,
        cfg.data_dir().display(),
        generator
            .as_ref()
            .map(|g| g.model_name().to_string())
            .unwrap_or_else(|| "none".into())
    );
    rt.block_on(cairn_cluster::run_node(
        cfg,
        opts,
        embedder,
        generator,
        async {
            crate::serve::terminated().await;
            eprintln!("cairn node {}: leaving", args.name);
        },
    ))?;
    eprintln!("cairn node {}: stopped", args.name);
    Ok(ExitCode::SUCCESS)
}

/// `cairn --cluster URL ingest PATHS`: the one ingest pipeline, with the
/// shards' logs as its sink. Files the cluster already holds unchanged are
/// skipped; with `--prune`, documents under PATHS that are gone are deleted
/// through the logs.
pub fn ingest(
    cfg: &Config,
    url: &str,
    paths: &[PathBuf],
    prune: bool,
    json: bool,
) -> Result<ExitCode> {
    let bars = Bars::new(json);
    let embedder = load_embedder(cfg).context("loading the embedding model")?;
    let prep = Preparer::new(cfg, embedder.clone())?;
    let rt = runtime()?;
    let cluster = connect(&rt, cfg, url)?;
    let info = rt.block_on(cluster.open_collection(
        &cfg.collection,
        embedder.model_id(),
        embedder.dim(),
        true,
    ))?;
    let listed = rt.block_on(cluster.documents(&info))?;
    if !listed.missing_shards.is_empty() {
        if prune {
            bail!(
                "no replica of shard(s) {:?} of `{}` answered with its documents, so nothing can be pruned safely; try again when the nodes holding them are back",
                listed.missing_shards,
                info.name
            );
        }
        eprintln!(
            "warning: no replica of shard(s) {:?} answered; their files are published again (the replicas apply the same content idempotently)",
            listed.missing_shards
        );
    }
    let known = listed.documents;
    let mut published = Vec::new();
    let mut rejected = Vec::new();
    let mut publish = |ops: Vec<cairn_core::op::Op>| -> cairn_engine::Result<()> {
        let (p, r) = rt
            .block_on(cluster.publish(&info, ops))
            .map_err(|e| cairn_engine::EngineError::Unavailable(e.to_string()))?;
        published.extend(p);
        rejected.extend(r);
        Ok(())
    };
    let opts = IngestOptions {
        prune,
        ..Default::default()
    };
    let mut sink = Sink::Publish {
        known: &known,
        publish: &mut publish,
    };
    let report = prep.ingest(paths, &opts, &mut sink, &bars)?;
    let mut per_shard = vec![0u64; info.shards as usize];
    for p in &published {
        per_shard[p.shard as usize] += 1;
    }
    let duplicates = published.iter().filter(|p| p.duplicate).count();
    if json {
        let mut v = serde_json::to_value(&report)?;
        let extra = serde_json::json!({
            "collection": info.name,
            "shards": info.shards,
            "replicas": info.replicas,
            "published": published.len(),
            "duplicates": duplicates,
            "chunks": report.chunks_added,
            "per_shard": per_shard,
            "documents": published,
            "rejected": rejected,
        });
        if let (Some(v), serde_json::Value::Object(extra)) = (v.as_object_mut(), extra) {
            v.extend(extra);
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        crate::print_ingest_summary(&report);
        println!(
            "{} log entries acknowledged by the cluster ({} already logged); collection `{}`: {} shards × {} replicas",
            published.len(),
            duplicates,
            info.name,
            info.shards,
            info.replicas
        );
        for r in &rejected {
            println!("  not published: {}: {}", r.doc, r.reason);
        }
    }
    if report.nothing_ingested() || (published.is_empty() && !rejected.is_empty()) {
        eprintln!("error: nothing could be ingested");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `cairn --cluster URL remove TARGET`: a file, a directory or a display
/// path, matched against every shard's documents and deleted through the
/// shards' logs.
pub fn remove(cfg: &Config, url: &str, target: &str, json: bool) -> Result<ExitCode> {
    let rt = runtime()?;
    let cluster = connect(&rt, cfg, url)?;
    let info = rt
        .block_on(cluster.collection(&cfg.collection))?
        .ok_or_else(|| ClusterError::NoCollection(cfg.collection.clone()))?;
    let listed = rt.block_on(cluster.documents(&info))?;
    if !listed.missing_shards.is_empty() {
        bail!(
            "no replica of shard(s) {:?} of `{}` answered with its documents; nothing removed (try again when the nodes holding them are back)",
            listed.missing_shards,
            info.name
        );
    }
    let known: Vec<_> = listed.documents.into_values().collect();
    let victims = cairn_engine::remove_targets(target, &known);
    if victims.is_empty() {
        bail!(
            "nothing in the cluster's collection `{}` matches {target}",
            info.name
        );
    }
    let ops = victims
        .iter()
        .map(|d| cairn_core::op::Op::Delete {
            path: d.path.clone(),
        })
        .collect();
    let (published, rejected) = rt.block_on(cluster.publish(&info, ops))?;
    if let Some(r) = rejected.first() {
        bail!("{}: {}", r.doc, r.reason);
    }
    let removed: Vec<&str> = victims.iter().map(|d| d.doc.as_str()).collect();
    if json {
        println!(
            "{}",
            serde_json::json!({ "removed": removed, "log_entries": published.len() })
        );
    } else {
        for r in &removed {
            println!("removed {r}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A cluster's collection as a [`cairn_engine::Searcher`] (what `cairn
/// --cluster URL eval` runs): each query embedded here, then scattered to
/// the shards and fused. A search that misses a shard is an error, not a
/// partial result, so that no figure is measured on part of a collection.
pub struct ClusterSearcher {
    rt: tokio::runtime::Runtime,
    cluster: Cluster,
    info: cairn_cluster::wire::CollectionInfo,
    embedder: Arc<dyn cairn_models::SentenceEncoder>,
    fusion: Fusion,
}

impl ClusterSearcher {
    pub fn connect(cfg: &Config, url: &str) -> Result<ClusterSearcher> {
        let embedder = load_embedder(cfg).context("loading the embedding model")?;
        let rt = runtime()?;
        let cluster = connect(&rt, cfg, url)?;
        let info = rt.block_on(cluster.open_collection(
            &cfg.collection,
            embedder.model_id(),
            embedder.dim(),
            false,
        ))?;
        Ok(ClusterSearcher {
            rt,
            cluster,
            info,
            embedder,
            fusion: fusion(cfg),
        })
    }

    /// The embedding model's id.
    pub fn model_id(&self) -> &str {
        self.embedder.model_id()
    }

    /// The query embedded here (unless BM25 alone), scattered, gathered and
    /// fused: the whole result, with which shards answered.
    pub fn gather(
        &self,
        query: &str,
        k: usize,
        mode: SearchMode,
    ) -> Result<cairn_cluster::SearchResult> {
        let vector = match mode {
            SearchMode::Bm25 => None,
            _ => Some(self.embedder.embed_query(query)?),
        };
        Ok(self.rt.block_on(self.cluster.search(
            &self.info,
            query,
            vector.as_deref(),
            k,
            mode,
            &self.fusion,
        ))?)
    }
}

impl cairn_engine::Searcher for ClusterSearcher {
    fn search(
        &self,
        query: &str,
        k: usize,
        mode: SearchMode,
    ) -> cairn_engine::Result<Vec<cairn_core::Hit>> {
        let unavailable = |e: String| cairn_engine::EngineError::Unavailable(e);
        let r = self
            .gather(query, k, mode)
            .map_err(|e| unavailable(format!("{e:#}")))?;
        if r.shards_ok < r.shards_total {
            return Err(unavailable(format!(
                "shard(s) {:?} of `{}` did not answer",
                r.missing_shards, self.info.name
            )));
        }
        Ok(r.hits.into_iter().map(|h| h.hit).collect())
    }
}

/// `cairn --cluster URL search`.
pub fn search(
    cfg: &Config,
    url: &str,
    query: &str,
    k: usize,
    mode: SearchMode,
    json: bool,
) -> Result<ExitCode> {
    if k == 0 {
        bail!("-k/--top-k must be at least 1");
    }
    let r = ClusterSearcher::connect(cfg, url)?.gather(query, k, mode)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        if r.hits.is_empty() {
            println!("no results");
        }
        for h in &r.hits {
            let heading = if h.hit.heading.is_empty() {
                String::new()
            } else {
                format!(" — {}", h.hit.heading)
            };
            println!(
                "{:>2}. {:.3}  {}{}  (shard {})",
                h.hit.rank, h.hit.score, h.hit.doc, heading, h.shard
            );
            println!("    {}", snippet(&h.hit.text, 220));
        }
        println!("shards {}/{} answered", r.shards_ok, r.shards_total);
    }
    if r.shards_ok < r.shards_total {
        eprintln!(
            "warning: results are incomplete: no replica answered for shard(s) {:?}",
            r.missing_shards
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `cairn --cluster URL ask`.
pub fn ask(
    mut cfg: Config,
    url: &str,
    question: &str,
    args: &GenArgs,
    json: bool,
    quiet: bool,
) -> Result<ExitCode> {
    crate::ask::apply(&mut cfg, args)?;
    let mut opts = AskOptions::from_config(&cfg);
    if let Some(m) = args.mode {
        opts.mode = m;
    }
    opts.sampling.stop = args.stop.clone();
    let embedder = load_embedder(&cfg).context("loading the embedding model")?;
    let rt = runtime()?;
    let cluster = connect(&rt, &cfg, url)?;
    let info = rt.block_on(cluster.open_collection(
        &cfg.collection,
        embedder.model_id(),
        embedder.dim(),
        false,
    ))?;
    let t = Instant::now();
    let vector = embedder.embed_query(question)?;
    let embed_ms = t.elapsed().as_secs_f64() * 1000.0;
    let mut on_token = |piece: &str| {
        if !json {
            let mut out = std::io::stdout();
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
        }
    };
    let mut on_retry = |node: &str| {
        eprintln!("\n[the generation replica {node} failed mid-answer; answering again on another replica]");
    };
    let out = rt.block_on(cluster.ask(
        &info,
        question,
        &vector,
        embed_ms,
        &opts,
        &fusion(&cfg),
        &mut on_token,
        &mut on_retry,
    ))?;
    let a = &out.answer;
    let answered = a["answered"].as_bool().unwrap_or(false);
    if json {
        let mut v = a.clone();
        v["shards_ok"] = out.shards_ok.into();
        v["shards_total"] = out.shards_total.into();
        v["node"] = out.node.clone().into();
        v["failed_replicas"] = out.failed_replicas.clone().into();
        println!("{v}");
    } else if !answered {
        println!("{}", a["answer"].as_str().unwrap_or_default());
        if !quiet {
            println!("Closest passages:");
            let rel = a["relevance"].as_array().cloned().unwrap_or_default();
            for (h, r) in a["retrieved"].as_array().into_iter().flatten().zip(rel) {
                println!(
                    "  {:.2}  {} — {}",
                    r.as_f64().unwrap_or(0.0),
                    h["doc"].as_str().unwrap_or_default(),
                    h["heading"].as_str().unwrap_or_default()
                );
            }
        }
    } else {
        println!();
        if !quiet {
            let cites = a["citations"].as_array().cloned().unwrap_or_default();
            if cites.is_empty() {
                println!("\n(no sources cited)");
            } else {
                println!("\nSources:");
                for c in cites {
                    let heading = c["heading"].as_str().unwrap_or_default();
                    println!(
                        "  [{}] {}{}",
                        c["n"],
                        c["doc"].as_str().unwrap_or_default(),
                        if heading.is_empty() {
                            String::new()
                        } else {
                            format!(" — {heading}")
                        }
                    );
                }
            }
            eprintln!(
                "(shards {}/{}; generated on {})",
                out.shards_ok,
                out.shards_total,
                out.node.as_deref().unwrap_or("-")
            );
        }
    }
    if out.shards_ok < out.shards_total {
        eprintln!(
            "warning: retrieval was incomplete: {}/{} shards answered",
            out.shards_ok, out.shards_total
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `cairn --cluster URL cluster status`.
pub fn status(cfg: &Config, url: &str, json: bool) -> Result<ExitCode> {
    let rt = runtime()?;
    let cluster = connect(&rt, cfg, url)?;
    let st = rt.block_on(cluster.status())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&st)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("NATS servers: {}", st.nats_servers);
    println!("nodes ({} live):", st.nodes.len());
    for n in &st.nodes {
        let placement: Vec<String> = n
            .placement
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!(
            "  {:<12} devices [{}]  embed {}  llm {}  shards {}  {}",
            n.name,
            n.devices.join(", "),
            n.embed_model,
            n.llm.as_deref().unwrap_or("-"),
            n.shards.len(),
            placement.join(" ")
        );
    }
    for c in &st.collections {
        println!(
            "collection {}: {} shards × {} replicas, {} documents, model {} ({}-dim){}",
            c.name,
            c.shards,
            c.replicas,
            c.documents,
            c.embed_model,
            c.dim,
            if c.under_replicated.is_empty() {
                String::new()
            } else {
                format!(", UNDER-REPLICATED shards {:?}", c.under_replicated)
            }
        );
        for s in &c.shard_status {
            let reps: Vec<String> = s
                .replicas
                .iter()
                .map(|r| {
                    if !r.live {
                        format!("{} (down)", r.node)
                    } else {
                        format!(
                            "{} (lag {}, {} docs{})",
                            r.node,
                            r.lag.map(|l| l.to_string()).unwrap_or_else(|| "?".into()),
                            r.documents.unwrap_or(0),
                            if r.serving { "" } else { ", catching up" }
                        )
                    }
                })
                .collect();
            println!(
                "  shard {:>3}: log at {:>6} (stream R{})  {}",
                s.shard,
                s.last_seq,
                s.stream_replicas,
                reps.join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `cairn --cluster URL collection create NAME`.
pub fn create(
    cfg: &Config,
    url: &str,
    name: &str,
    shards: Option<u32>,
    replicas: Option<u32>,
    json: bool,
) -> Result<ExitCode> {
    let embedder = load_embedder(cfg).context("loading the embedding model")?;
    let rt = runtime()?;
    let cluster = connect(&rt, cfg, url)?;
    let info = match rt.block_on(cluster.create_collection(
        name,
        shards,
        replicas,
        embedder.model_id(),
        embedder.dim(),
    )) {
        Ok(i) => i,
        Err(e @ ClusterError::CollectionExists { .. }) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        println!(
            "created collection `{}`: {} shards × {} replicas ({} NATS stream replicas), model {}",
            info.name,
            info.shards,
            info.replicas,
            cluster.nats_servers().min(3),
            info.embed_model
        );
        for (i, nodes) in info.assignment.iter().enumerate() {
            println!("  shard {i}: {}", nodes.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}
