//! Cluster mode: `cairn node`, and what only a cluster has: `cairn
//! --cluster URL cluster status` and `collection create`. Every other
//! command drives a cluster's collection through the same collection
//! boundary as a local one (`target.rs`). Glue over `cairn_cluster`.

use crate::GenArgs;
use anyhow::{Context, Result};
use cairn_cluster::{Cluster, NodeOptions};
use cairn_core::config::Config;
use cairn_engine::load_embedder;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

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
pub(crate) fn connect(rt: &tokio::runtime::Runtime, cfg: &Config, url: &str) -> Result<Cluster> {
    let mut c = rt.block_on(Cluster::connect(url))?;
    c.shard_timeout = Duration::from_millis(cfg.cluster.shard_timeout_ms);
    c.generation_idle = Duration::from_millis(cfg.cluster.generation_idle_ms);
    Ok(c)
}

/// `cairn node`.
pub fn node(cfg: Config, args: NodeArgs) -> Result<ExitCode> {
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
    // Where each stage runs, as `cairn doctor` shows it.
    let mut placement = BTreeMap::new();
    for p in cairn_engine::plan_stages(&cfg) {
        if p.stage == "generate" && generator.is_none() {
            continue;
        }
        placement.insert(
            p.stage.to_string(),
            format!("{} ({})", p.runs_on, p.backend),
        );
    }
    placement.insert("search".to_string(), "cpu".to_string());
    if let (Some(g), Some(e)) = (&generator, placement.get_mut("generate")) {
        e.push_str(&format!(" {}", g.model_name()));
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
    let rt = crate::target::runtime()?;
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
    // The node takes `cairn improve` rounds on its shard copies.
    let trainer: cairn_cluster::Trainer = Arc::new(|cfg, options| {
        crate::improve::on_node(cfg, options).map_err(|e| format!("{e:#}"))
    });
    rt.block_on(cairn_cluster::run_node(
        cfg,
        opts,
        embedder,
        generator,
        Some(trainer),
        async {
            crate::serve::terminated().await;
            eprintln!("cairn node {}: leaving", args.name);
        },
    ))?;
    eprintln!("cairn node {}: stopped", args.name);
    Ok(ExitCode::SUCCESS)
}

/// `cairn --cluster URL cluster status`.
pub fn status(cfg: &Config, url: &str, json: bool) -> Result<ExitCode> {
    let rt = crate::target::runtime()?;
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
    let rt = crate::target::runtime()?;
    let cluster = connect(&rt, cfg, url)?;
    let info = match rt.block_on(cluster.create_collection(
        name,
        shards,
        replicas,
        embedder.model_id(),
        embedder.dim(),
    )) {
        Ok(i) => i,
        Err(e @ cairn_cluster::ClusterError::CollectionExists { .. }) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    // Ready when it returns: every shard served by a node.
    if !rt.block_on(cluster.wait_served(&info, Duration::from_secs(60)))? {
        eprintln!("warning: not every shard of `{name}` is served by a node yet; `cluster status` shows which");
    }
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
