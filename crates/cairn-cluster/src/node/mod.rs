//! `cairn node`: one member of the cluster. It heartbeats into
//! `cairn-nodes`, takes the shards `cairn-collections` assigns it (and
//! under-replicated ones, after a grace period), applies each shard's log
//! through the engine's one apply path, answers searches for the shards it
//! has caught up on, and serves generation if it has a model.
//!
//! `mod.rs` holds membership (heartbeats, the assignment's reconciliation)
//! and the NATS helpers; `consumer.rs` a shard's life on this node (restore
//! from a snapshot, consume the log, take snapshots); `responders.rs` what
//! the node answers (shard searches, generation). Where shards go is the
//! pure rule of `crate::placement`.

mod consumer;
mod learning;
mod responders;

pub use learning::Trainer;

use consumer::start_shard;
use responders::serve_generation;
#[cfg(test)]
pub(crate) use responders::{node_respond, shard_respond};

use crate::wire::{
    self, Answer, Ask, Candidate, Candidates, CollectionInfo, GenEvent, GenerateRequest, NodeInfo,
    Passage, SearchRequest, ShardAnswer, ShardAsk, ShardHit, ShardReply, ShardState,
};
use crate::{
    search_subject, shard_collection, snapshot, stream_name, ClusterError, Result,
    COLLECTIONS_BUCKET, GENERATE_SUBJECT, HEARTBEAT, NODES_BUCKET, NODE_TTL,
};
use async_nats::jetstream::{
    self, consumer::pull, consumer::AckPolicy, consumer::DeliverPolicy, kv,
};
use cairn_core::config::Config;
use cairn_core::{NoProgress, SearchMode, Seq};
use cairn_engine::{AskOptions, Engine, Retrieved};
use cairn_generate::{Flow, Generator};
use cairn_models::SentenceEncoder;
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How a node runs.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub name: String,
    /// NATS URLs (several for a NATS cluster; the client also learns the
    /// others from the server).
    pub nats_urls: Vec<String>,
    /// How long a node may be missing before another takes over its shards
    /// (a restart within it resumes from its own catalog).
    pub takeover_after: Duration,
    /// Backends this build can use.
    pub devices: Vec<String>,
    /// Where each stage runs (`embed` → `cpu`, `generate` → `cuda:0`, …).
    pub placement: BTreeMap<String, String>,
}

pub(crate) type ShardKey = (String, u32);

struct Held {
    state: Arc<Mutex<ShardState>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

struct Shared {
    name: String,
    cfg: Config,
    opts: NodeOptions,
    embedder: Arc<dyn SentenceEncoder>,
    generator: Option<Arc<dyn Generator>>,
    client: async_nats::Client,
    js: jetstream::Context,
    started_ms: u64,
    held: Mutex<HashMap<ShardKey, Held>>,
    /// The shards this node answers searches for, as node-subject asks
    /// find them.
    serving: Mutex<HashMap<ShardKey, std::sync::Weak<Engine>>>,
    /// Shard copies an improve round is training on: left alone by
    /// `follow_learned` until the round has published.
    training: Mutex<HashSet<std::path::PathBuf>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Connect to NATS with a client name, failing fast when nothing listens.
pub(crate) async fn connect(urls: &[String], name: &str) -> Result<async_nats::Client> {
    let shown = urls.join(",");
    let opts = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(10)));
    tokio::time::timeout(Duration::from_secs(10), opts.connect(urls))
        .await
        .map_err(|_| ClusterError::Connect {
            url: shown.clone(),
            reason: "timed out".into(),
        })?
        .map_err(|e| ClusterError::Connect {
            url: shown,
            reason: e.to_string(),
        })
}

/// Stream and bucket replicas: one per NATS server, at most three.
pub(crate) fn replicas_for(client: &async_nats::Client) -> usize {
    client.server_info().connect_urls.len().clamp(1, 3)
}

/// Open a KV bucket, creating it when missing.
pub(crate) async fn bucket(
    js: &jetstream::Context,
    name: &str,
    max_age: Duration,
    replicas: usize,
) -> Result<kv::Store> {
    if let Ok(s) = js.get_key_value(name).await {
        return Ok(s);
    }
    // The bucket's stream, configured as `create_key_value` would; that
    // call first reads account fields nats-server 2.9 does not send.
    let cfg = jetstream::stream::Config {
        name: format!("KV_{name}"),
        description: Some(format!("cairn {name}")),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age,
        storage: jetstream::stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        num_replicas: replicas,
        discard: jetstream::stream::DiscardPolicy::New,
        duplicate_window: if max_age.is_zero() || max_age > Duration::from_secs(120) {
            Duration::from_secs(120)
        } else {
            max_age
        },
        ..Default::default()
    };
    if let Err(e) = js.get_or_create_stream(cfg).await {
        tracing::debug!("creating bucket {name}: {e}");
    }
    js.get_key_value(name)
        .await
        .map_err(|e| ClusterError::js(format!("opening bucket {name}"), e))
}

/// Keys of a bucket. (Listing an empty bucket would wait for a message that
/// never comes, so the stream's message count is checked first.)
pub(crate) async fn keys(store: &kv::Store) -> Result<Vec<String>> {
    let mut stream = store.stream.clone();
    let messages = stream
        .info()
        .await
        .map_err(|e| ClusterError::js(format!("bucket {}", store.name), e))?
        .state
        .messages;
    if messages == 0 {
        return Ok(vec![]);
    }
    let list = async {
        let mut out = Vec::new();
        let mut k = store
            .keys()
            .await
            .map_err(|e| ClusterError::js("listing keys", e))?;
        while let Some(key) = k.next().await {
            out.push(key.map_err(|e| ClusterError::js("listing keys", e))?);
        }
        Ok(out)
    };
    tokio::time::timeout(Duration::from_secs(10), list)
        .await
        .map_err(|_| ClusterError::js(format!("listing bucket {}", store.name), "timed out"))?
}

/// How long a starting node keeps trying to join when JetStream does not
/// answer (a NATS server of the cluster down, its streams electing leaders).
const JOIN_RETRY: Duration = Duration::from_secs(60);

/// Run a node until `shutdown` resolves. With a `trainer`, the node takes
/// `cairn improve` rounds (`crate::learned`); every node installs what
/// collections learned.
pub async fn run_node(
    cfg: Config,
    opts: NodeOptions,
    embedder: Arc<dyn SentenceEncoder>,
    generator: Option<Arc<dyn Generator>>,
    trainer: Option<Trainer>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    crate::validate_node_name(&opts.name)?;
    let client = connect(&opts.nats_urls, &format!("cairn-node-{}", opts.name)).await?;
    let js = jetstream::new(client.clone());
    let replicas = replicas_for(&client);
    // JetStream can be unavailable for a while when a NATS server of the
    // cluster has just died (its streams elect new leaders): joining is
    // retried until JOIN_RETRY has passed before the node gives up.
    let deadline = Instant::now() + JOIN_RETRY;
    let (nodes, colls, namesake) = loop {
        let join = async {
            let nodes = bucket(&js, NODES_BUCKET, NODE_TTL, replicas).await?;
            let colls = bucket(&js, COLLECTIONS_BUCKET, Duration::ZERO, replicas).await?;
            let namesake = keys(&nodes).await?.contains(&opts.name);
            Ok::<_, ClusterError>((nodes, colls, namesake))
        };
        match join.await {
            Ok(joined) => break joined,
            Err(e @ ClusterError::JetStream { .. }) if Instant::now() < deadline => {
                tracing::warn!("joining the cluster: {e}; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    };
    if namesake {
        refuse_a_running_namesake(&nodes, &opts.name).await?;
    }
    let shared = Arc::new(Shared {
        name: opts.name.clone(),
        cfg,
        opts,
        embedder,
        generator,
        client: client.clone(),
        js,
        started_ms: wire::now_ms(),
        held: Mutex::new(HashMap::new()),
        serving: Mutex::new(HashMap::new()),
        training: Mutex::new(HashSet::new()),
    });
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    {
        let s = shared.clone();
        let nodes = nodes.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT);
            loop {
                tick.tick().await;
                if let Err(e) = heartbeat(&s, &nodes).await {
                    tracing::warn!("heartbeat: {e}");
                }
            }
        }));
    }
    {
        let s = shared.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT);
            let mut dead_since: HashMap<String, Instant> = HashMap::new();
            loop {
                tick.tick().await;
                if let Err(e) = reconcile(&s, &nodes, &colls, &mut dead_since).await {
                    tracing::warn!("assignment: {e}");
                }
            }
        }));
    }
    {
        let s = shared.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = responders::serve_node_asks(s).await {
                tracing::error!("node asks: {e}");
            }
        }));
    }
    {
        let s = shared.clone();
        tasks.push(tokio::spawn(async move {
            // Watched again after an error (JetStream electing a leader).
            while let Err(e) = learning::follow_learned(s.clone()).await {
                tracing::warn!("following what collections learned: {e}; again in 2 s");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }));
    }
    if let Some(t) = trainer {
        let s = shared.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = learning::serve_improve(s, t).await {
                tracing::error!("improve rounds: {e}");
            }
        }));
    }
    if let Some(g) = shared.generator.clone() {
        let s = shared.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = serve_generation(s, g).await {
                tracing::error!("generation replica stopped: {e}");
            }
        }));
    }
    tracing::info!(name = shared.name, "node started");
    shutdown.await;
    tracing::info!(name = shared.name, "node stopping");
    for t in &tasks {
        t.abort();
    }
    lock(&shared.held).clear();
    // Leave the membership now rather than when the heartbeat expires;
    // with NATS gone too, give up after a few seconds (the entry expires).
    let leave = async {
        if let Ok(n) = jetstream::new(client.clone())
            .get_key_value(NODES_BUCKET)
            .await
        {
            let _ = n.delete(&shared.name).await;
        }
        let _ = client.flush().await;
    };
    if tokio::time::timeout(Duration::from_secs(3), leave)
        .await
        .is_err()
    {
        tracing::warn!(
            name = shared.name,
            "NATS did not answer; leaving without deregistering"
        );
    }
    Ok(())
}

/// A heartbeat under this node's name is either a previous run of this
/// node (it stopped beating: a restart) or another node with the same name
/// (it goes on beating): watched for a few heartbeats, the second is
/// refused, since two nodes with one name would take each other's shards.
async fn refuse_a_running_namesake(nodes: &kv::Store, name: &str) -> Result<()> {
    let read = || async {
        nodes
            .get(name)
            .await
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_slice::<NodeInfo>(&v).ok())
    };
    let Some(first) = read().await else {
        return Ok(());
    };
    let deadline = Instant::now() + HEARTBEAT * 3;
    while Instant::now() < deadline {
        tokio::time::sleep(HEARTBEAT / 2).await;
        match read().await {
            Some(now) if now.heartbeat_ms > first.heartbeat_ms => {
                return Err(ClusterError::Invalid {
                    field: "name",
                    reason: format!(
                        "a node named `{name}` is already running (pid {}, started at {} ms, still sending heartbeats): give this one another --name",
                        now.pid, now.started_ms
                    ),
                });
            }
            Some(_) => {}
            None => return Ok(()),
        }
    }
    tracing::info!(
        name,
        "the previous heartbeat under this name is stale: a restart"
    );
    Ok(())
}

async fn heartbeat(s: &Shared, nodes: &kv::Store) -> Result<()> {
    let shards: BTreeMap<String, ShardState> = lock(&s.held)
        .iter()
        .map(|((c, i), h)| (format!("{c}/{i}"), lock(&h.state).clone()))
        .collect();
    let info = NodeInfo {
        name: s.name.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        started_ms: s.started_ms,
        heartbeat_ms: wire::now_ms(),
        devices: s.opts.devices.clone(),
        placement: s.opts.placement.clone(),
        embed_model: s.embedder.model_id().to_string(),
        embed_dim: s.embedder.dim(),
        llm: s.generator.as_ref().map(|g| g.model_name().to_string()),
        shards,
        free_memory: learning::free_memory(),
    };
    let body = serde_json::to_vec(&info).unwrap_or_default();
    nodes
        .put(&s.name, body.into())
        .await
        .map_err(|e| ClusterError::js("heartbeat", e))?;
    Ok(())
}

/// Read assignments; take over under-replicated shards (compare-and-set,
/// so two nodes never both take the same slot); start and stop shards.
async fn reconcile(
    s: &Arc<Shared>,
    nodes: &kv::Store,
    colls: &kv::Store,
    dead_since: &mut HashMap<String, Instant>,
) -> Result<()> {
    let live: HashSet<String> = keys(nodes).await?.into_iter().collect();
    let mut want: HashMap<ShardKey, CollectionInfo> = HashMap::new();
    let mut infos = Vec::new();
    for key in keys(colls).await? {
        let Some(entry) = colls
            .entry(&key)
            .await
            .map_err(|e| ClusterError::js("reading a collection", e))?
        else {
            continue;
        };
        if entry.operation != kv::Operation::Put {
            continue;
        }
        match serde_json::from_slice::<CollectionInfo>(&entry.value) {
            Ok(info) => infos.push((info, entry.revision)),
            Err(e) => tracing::warn!(key, "unreadable collection record: {e}"),
        }
    }
    // Nodes assigned anywhere but not alive: since when.
    let assigned_anywhere: HashSet<&String> = infos
        .iter()
        .flat_map(|(i, _)| i.assignment.iter().flatten())
        .collect();
    dead_since.retain(|n, _| !live.contains(n));
    for n in assigned_anywhere {
        if !live.contains(n) {
            dead_since.entry(n.clone()).or_insert_with(Instant::now);
        }
    }
    let takeover = s.opts.takeover_after;
    let expired: HashSet<String> = dead_since
        .iter()
        .filter(|(_, t)| t.elapsed() >= takeover)
        .map(|(n, _)| n.clone())
        .collect();
    for (info, revision) in infos {
        let (next, taken) = crate::placement::place(&info, &s.name, &live, &expired);
        for shard in &taken {
            tracing::info!(
                collection = info.name,
                shard,
                "taking over an under-replicated shard"
            );
        }
        let changed = !taken.is_empty();
        let info = if changed {
            let body = serde_json::to_vec(&next).unwrap_or_default();
            match colls.update(&next.name, body.into(), revision).await {
                Ok(_) => next,
                Err(e) => {
                    tracing::debug!("assignment changed under us, next round: {e}");
                    info
                }
            }
        } else {
            info
        };
        for (shard, nodes) in info.assignment.iter().enumerate() {
            if nodes.contains(&s.name) {
                want.insert((info.name.clone(), shard as u32), info.clone());
            }
        }
    }
    // Stop shards no longer assigned here (the local copy stays on disk).
    lock(&s.held).retain(|k, _| want.contains_key(k));
    for (key, info) in want {
        if lock(&s.held).contains_key(&key) {
            continue;
        }
        start_shard(s, key, info);
    }
    Ok(())
}
