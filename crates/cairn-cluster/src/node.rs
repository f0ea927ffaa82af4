//! `cairn node`: one member of the cluster. It heartbeats into
//! `cairn-nodes`, takes the shards `cairn-collections` assigns it (and
//! under-replicated ones, after a grace period), applies each shard's log
//! through the engine's one apply path, answers searches for the shards it
//! has caught up on, and serves generation if it has a model.

use crate::wire::{
    self, CollectionInfo, GenEvent, GenerateRequest, NodeInfo, SearchRequest, ShardHit, ShardReply,
    ShardState,
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

type ShardKey = (String, u32);

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

/// Run a node until `shutdown` resolves.
pub async fn run_node(
    cfg: Config,
    opts: NodeOptions,
    embedder: Arc<dyn SentenceEncoder>,
    generator: Option<Arc<dyn Generator>>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    crate::validate_node_name(&opts.name)?;
    let client = connect(&opts.nats_urls, &format!("cairn-node-{}", opts.name)).await?;
    let js = jetstream::new(client.clone());
    let replicas = replicas_for(&client);
    let nodes = bucket(&js, NODES_BUCKET, NODE_TTL, replicas).await?;
    let colls = bucket(&js, COLLECTIONS_BUCKET, Duration::ZERO, replicas).await?;
    if keys(&nodes).await?.contains(&opts.name) {
        tracing::warn!(
            name = opts.name,
            "a node of this name has a live heartbeat: a restart, or two nodes with one name"
        );
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
    // Leave the membership now rather than when the heartbeat expires.
    if let Ok(n) = jetstream::new(client.clone())
        .get_key_value(NODES_BUCKET)
        .await
    {
        let _ = n.delete(&shared.name).await;
    }
    let _ = client.flush().await;
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

fn start_shard(s: &Arc<Shared>, key: ShardKey, info: CollectionInfo) {
    let state = Arc::new(Mutex::new(ShardState {
        collection: key.0.clone(),
        shard: key.1,
        applied: 0,
        documents: 0,
        chunks: 0,
        serving: false,
        error: None,
    }));
    if info.embed_model != s.embedder.model_id() || info.dim != s.embedder.dim() {
        lock(&state).error = Some(format!(
            "the collection holds {} ({}-dim) vectors; this node embeds with {} ({}-dim)",
            info.embed_model,
            info.dim,
            s.embedder.model_id(),
            s.embedder.dim()
        ));
        tracing::error!(
            collection = key.0,
            shard = key.1,
            "{:?}",
            lock(&state).error
        );
        lock(&s.held).insert(
            key,
            Held {
                state,
                tasks: vec![],
            },
        );
        return;
    }
    // The shard's first replica takes its snapshots.
    let snapshots = info
        .assignment
        .get(key.1 as usize)
        .and_then(|a| a.first())
        .is_some_and(|n| *n == s.name);
    let task = {
        let s = s.clone();
        let state = state.clone();
        let key = key.clone();
        tokio::spawn(async move { run_shard(s, key, state, snapshots).await })
    };
    lock(&s.held).insert(
        key,
        Held {
            state,
            tasks: vec![task],
        },
    );
}

/// Open the shard's local collection (first from the latest snapshot, when
/// it has no copy or its copy is older than what the log still holds),
/// then apply its log forever; answer searches once caught up.
async fn run_shard(s: Arc<Shared>, key: ShardKey, state: Arc<Mutex<ShardState>>, snapshots: bool) {
    let (coll, shard) = key.clone();
    let mut cfg = s.cfg.clone();
    cfg.collection = shard_collection(&coll, shard);
    let embedder = s.embedder.clone();
    loop {
        match restore(&s, &coll, shard, &cfg).await {
            Ok(()) => break,
            Err(e) => {
                lock(&state).error = Some(e.to_string());
                tracing::error!(collection = coll, shard, "starting the shard: {e}");
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let engine = loop {
        let (c, e) = (cfg.clone(), embedder.clone());
        match tokio::task::spawn_blocking(move || Engine::open_with_embedder(&c, e, &NoProgress))
            .await
        {
            Ok(Ok(engine)) => break Arc::new(engine),
            Ok(Err(e)) => {
                lock(&state).error = Some(e.to_string());
                tracing::error!(collection = coll, shard, "opening the shard: {e}");
            }
            Err(e) => lock(&state).error = Some(e.to_string()),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let mut search: Option<JoinHandle<()>> = None;
    loop {
        match consume(&s, &coll, shard, &engine, &state, &mut search, snapshots).await {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(collection = coll, shard, "applying the log: {e}");
                lock(&state).error = Some(e.to_string());
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Before the shard's collection opens: when it has no copy of the shard,
/// or its copy is older than the first entry the log still holds, replace
/// it with the latest snapshot (if one covers the gap). A copy the log can
/// bring up to date is left alone.
async fn restore(s: &Arc<Shared>, coll: &str, shard: u32, cfg: &Config) -> Result<()> {
    let dir = cairn_engine::collection_dir(&cfg.data_dir(), &cfg.collection);
    let d = dir.clone();
    let local = tokio::task::spawn_blocking(move || cairn_engine::catalog_seq(&d))
        .await
        .map_err(|e| ClusterError::js("join", e))??;
    let name = stream_name(coll, shard);
    let first = stream_state(&s.js, &name).await?.first_sequence;
    let gap = local + 1 < first;
    if local > 0 && !gap {
        return Ok(());
    }
    let store = snapshot::bucket(&s.js, replicas_for(&s.client)).await?;
    match snapshot::latest(&store, coll, shard).await {
        Some(seq) if seq > local && seq + 1 >= first => {
            let t = Instant::now();
            let tmp = beside(&dir, "snapshot");
            let _ = tokio::fs::remove_file(&tmp).await;
            if let Some(parent) = tmp.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| ClusterError::Shard {
                        path: parent.to_path_buf(),
                        reason: e.to_string(),
                    })?;
            }
            let got = snapshot::fetch(&store, coll, shard, &tmp).await?;
            let io = |e: std::io::Error| ClusterError::Shard {
                path: dir.clone(),
                reason: e.to_string(),
            };
            match tokio::fs::remove_dir_all(&dir).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(e)),
            }
            tokio::fs::create_dir_all(&dir).await.map_err(io)?;
            tokio::fs::rename(&tmp, dir.join("catalog.sqlite"))
                .await
                .map_err(io)?;
            tracing::info!(
                collection = coll,
                shard,
                "restored from the snapshot at sequence {got} in {:.0} ms (the log goes on from {})",
                t.elapsed().as_secs_f64() * 1000.0,
                got + 1
            );
            Ok(())
        }
        _ if gap => Err(ClusterError::Shard {
            path: dir,
            reason: format!(
                "this copy is at sequence {local}, the log {name} now starts at {first}, and no snapshot covers the entries in between"
            ),
        }),
        // No copy and no snapshot: the whole log is replayed.
        _ => Ok(()),
    }
}

/// A file next to a shard's collection directory, named after it:
/// `docs.shard1` → `docs.shard1.snapshot`. (`with_extension` would replace
/// `.shard1`, so that every shard of a collection shared one name.)
fn beside(dir: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    let mut name = dir.as_os_str().to_os_string();
    name.push(".");
    name.push(suffix);
    name.into()
}

/// The shortest time between two snapshots of one shard: each is a copy of
/// the whole catalog, so a small `cluster.snapshot_every` during a large
/// ingest must not turn into a copy per batch.
const SNAPSHOT_MIN_INTERVAL: Duration = Duration::from_secs(30);

/// When the shard's first replica starts consuming and after each batch it
/// applies: store a snapshot once the catalog has grown
/// `cluster.snapshot_every` entries past the last one (at most one per
/// [`SNAPSHOT_MIN_INTERVAL`]), then trim the log below it, keeping
/// `cluster.log_keep` entries.
async fn maybe_snapshot(
    s: &Arc<Shared>,
    coll: &str,
    shard: u32,
    engine: &Arc<Engine>,
    last_snapshot: &mut (Seq, Option<Instant>),
) -> Result<()> {
    let every = s.cfg.cluster.snapshot_every;
    if every == 0
        || last_snapshot
            .1
            .is_some_and(|t| t.elapsed() < SNAPSHOT_MIN_INTERVAL)
    {
        return Ok(());
    }
    let e = engine.clone();
    let applied = tokio::task::spawn_blocking(move || e.applied_seq())
        .await
        .map_err(|e| ClusterError::js("join", e))??;
    if applied < last_snapshot.0 + every {
        return Ok(());
    }
    let dir = cairn_engine::collection_dir(&s.cfg.data_dir(), &shard_collection(coll, shard));
    let file = beside(&dir, &format!("export-{}", std::process::id()));
    let _ = tokio::fs::remove_file(&file).await;
    let (e, f) = (engine.clone(), file.clone());
    let seq = tokio::task::spawn_blocking(move || e.export_catalog(&f))
        .await
        .map_err(|e| ClusterError::js("join", e))??;
    let store = snapshot::bucket(&s.js, replicas_for(&s.client)).await?;
    let put = snapshot::put(&store, coll, shard, &file, seq, &s.name).await;
    let _ = tokio::fs::remove_file(&file).await;
    put?;
    *last_snapshot = (seq, Some(Instant::now()));
    // Entries below the snapshot (less what is kept) are no longer needed:
    // a replica that far behind starts from the snapshot.
    let keep_from = (seq + 1).saturating_sub(s.cfg.cluster.log_keep);
    if keep_from > 1 {
        let name = stream_name(coll, shard);
        let stream =
            s.js.get_stream(&name)
                .await
                .map_err(|e| ClusterError::js(format!("stream {name}"), e))?;
        stream
            .purge()
            .sequence(keep_from)
            .await
            .map_err(|e| ClusterError::js(format!("trimming {name}"), e))?;
    }
    tracing::info!(
        collection = coll,
        shard,
        "stored a snapshot at sequence {seq}; the log keeps entries from {}",
        keep_from.max(1)
    );
    Ok(())
}

/// A guard that aborts the search responder when the shard task ends.
struct AbortOnDrop<'a>(&'a mut Option<JoinHandle<()>>);
impl Drop for AbortOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.abort();
        }
    }
}

async fn consume(
    s: &Arc<Shared>,
    coll: &str,
    shard: u32,
    engine: &Arc<Engine>,
    state: &Arc<Mutex<ShardState>>,
    search: &mut Option<JoinHandle<()>>,
    snapshots: bool,
) -> Result<()> {
    let name = stream_name(coll, shard);
    let mut last_snapshot = if snapshots && s.cfg.cluster.snapshot_every > 0 {
        let store = snapshot::bucket(&s.js, replicas_for(&s.client)).await?;
        (
            snapshot::latest(&store, coll, shard).await.unwrap_or(0),
            None,
        )
    } else {
        (0, None)
    };
    let stream =
        s.js.get_stream(&name)
            .await
            .map_err(|e| ClusterError::js(format!("stream {name}"), e))?;
    let e = engine.clone();
    let applied = tokio::task::spawn_blocking(move || e.applied_seq())
        .await
        .map_err(|e| ClusterError::js("join", e))??;
    set_counts(engine, state).await;
    let durable = s.name.clone();
    // The catalog's sequence is the watermark: a consumer whose ack floor is
    // past it (the local copy was lost) starts again from the catalog.
    if let Ok(mut c) = stream.get_consumer::<pull::Config>(&durable).await {
        if let Ok(info) = c.info().await {
            if info.ack_floor.stream_sequence > applied {
                tracing::warn!(
                    collection = coll,
                    shard,
                    "the log consumer is ahead of the local catalog; replaying from {}",
                    applied + 1
                );
                let _ = stream.delete_consumer(&durable).await;
            }
        }
    }
    let consumer: pull::Stream = stream
        .get_or_create_consumer(
            &durable,
            pull::Config {
                durable_name: Some(durable.clone()),
                deliver_policy: if applied == 0 {
                    DeliverPolicy::All
                } else {
                    DeliverPolicy::ByStartSequence {
                        start_sequence: applied + 1,
                    }
                },
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(60),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| ClusterError::js(format!("consumer {durable} on {name}"), e))?
        .stream()
        .max_messages_per_batch(64)
        .heartbeat(Duration::from_secs(2))
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .map_err(|e| ClusterError::js(format!("consuming {name}"), e))?;
    let _guard = AbortOnDrop(search);
    let mut consumer = consumer.ready_chunks(64);
    let mut serving = false;
    if applied >= stream_last(&s.js, &name).await? {
        *_guard.0 = Some(start_search(s, coll, shard, engine, state));
        serving = true;
    }
    let mut check = tokio::time::interval(Duration::from_millis(500));
    // Snapshots are due as consuming starts (the first tick is at once),
    // after each batch, and, held back by the minimum interval, later even
    // when no more entries arrive.
    let mut snap_check = tokio::time::interval(Duration::from_secs(5));
    loop {
        let msgs = tokio::select! {
            m = consumer.next() => match m {
                Some(m) => m,
                None => return Ok(()),
            },
            _ = snap_check.tick(), if snapshots => {
                if let Err(e) = maybe_snapshot(s, coll, shard, engine, &mut last_snapshot).await {
                    tracing::warn!(collection = coll, shard, "snapshot: {e}");
                }
                continue;
            }
            _ = check.tick(), if !serving => {
                let e = engine.clone();
                let applied = tokio::task::spawn_blocking(move || e.applied_seq()).await.map_err(|e| ClusterError::js("join", e))??;
                if applied >= stream_last(&s.js, &name).await? {
                    *_guard.0 = Some(start_search(s, coll, shard, engine, state));
                    serving = true;
                }
                continue;
            }
        };
        let mut ops = Vec::with_capacity(msgs.len());
        let mut acks = Vec::with_capacity(msgs.len());
        let mut pending = u64::MAX;
        for m in msgs {
            let m = m.map_err(|e| ClusterError::js(format!("reading {name}"), e))?;
            let info = m
                .info()
                .map_err(|e| ClusterError::js(format!("message info on {name}"), e))?;
            let seq = info.stream_sequence;
            pending = info.pending;
            let op = serde_json::from_slice::<wire::WireOp>(&m.payload)
                .map_err(|e| ClusterError::Wire {
                    subject: m.subject.to_string(),
                    reason: e.to_string(),
                })
                .and_then(|w| w.into_op(&m.subject));
            match op {
                Ok(op) => ops.push((op, seq)),
                Err(e) => {
                    // Unreadable entries are skipped, loudly; the sequence
                    // still advances so the replica does not stall.
                    tracing::error!(collection = coll, shard, seq, "skipping log entry: {e}");
                    ops.push((cairn_core::op::Op::Noop, seq));
                }
            }
            acks.push(m);
        }
        let e = engine.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            e.apply_logged(ops)?;
            e.catch_up(&NoProgress)?;
            Ok(())
        })
        .await
        .map_err(|e| ClusterError::js("join", e))??;
        for m in acks {
            m.ack()
                .await
                .map_err(|e| ClusterError::js(format!("ack on {name}"), e))?;
        }
        set_counts(engine, state).await;
        if snapshots {
            if let Err(e) = maybe_snapshot(s, coll, shard, engine, &mut last_snapshot).await {
                tracing::warn!(collection = coll, shard, "snapshot: {e}");
            }
        }
        if pending == 0 && !serving {
            *_guard.0 = Some(start_search(s, coll, shard, engine, state));
            serving = true;
        }
    }
}

/// A stream's state: its first and last sequence, its message count.
async fn stream_state(js: &jetstream::Context, name: &str) -> Result<jetstream::stream::State> {
    let mut stream = js
        .get_stream(name)
        .await
        .map_err(|e| ClusterError::js(format!("stream {name}"), e))?;
    Ok(stream
        .info()
        .await
        .map_err(|e| ClusterError::js(format!("stream {name}"), e))?
        .state
        .clone())
}

async fn stream_last(js: &jetstream::Context, name: &str) -> Result<u64> {
    Ok(stream_state(js, name).await?.last_sequence)
}

async fn set_counts(engine: &Arc<Engine>, state: &Arc<Mutex<ShardState>>) {
    let e = engine.clone();
    if let Ok(Ok(st)) = tokio::task::spawn_blocking(move || e.status()).await {
        let mut g = lock(state);
        g.applied = st.seq;
        g.documents = st.documents;
        g.chunks = st.chunks;
        g.error = None;
    }
}

fn start_search(
    s: &Arc<Shared>,
    coll: &str,
    shard: u32,
    engine: &Arc<Engine>,
    state: &Arc<Mutex<ShardState>>,
) -> JoinHandle<()> {
    lock(state).serving = true;
    let (s, coll, engine, state) = (s.clone(), coll.to_string(), engine.clone(), state.clone());
    tokio::spawn(async move {
        let subject = search_subject(&coll, shard);
        let mut sub = match s
            .client
            .queue_subscribe(subject.clone(), subject.clone())
            .await
        {
            Ok(sub) => sub,
            Err(e) => {
                lock(&state).error = Some(format!("subscribing to {subject}: {e}"));
                return;
            }
        };
        tracing::info!(collection = coll, shard, "serving searches");
        while let Some(msg) = sub.next().await {
            let Some(reply) = msg.reply.clone() else {
                continue;
            };
            let (engine, client, node) = (engine.clone(), s.client.clone(), s.name.clone());
            let subject = subject.clone();
            tokio::spawn(async move {
                let body = tokio::task::spawn_blocking(move || {
                    let t = Instant::now();
                    let r = shard_search(&engine, &msg.payload, &subject);
                    let took_ms = t.elapsed().as_secs_f64() * 1000.0;
                    let reply = match r {
                        Ok(lists) => ShardReply {
                            node,
                            shard,
                            applied: lists.applied,
                            dense: lists.dense,
                            bm25: lists.bm25,
                            error: None,
                            took_ms,
                            bm25_stats: lists.stats,
                            documents: lists.documents,
                        },
                        Err(e) => ShardReply {
                            node,
                            shard,
                            applied: 0,
                            dense: vec![],
                            bm25: vec![],
                            error: Some(e.to_string()),
                            took_ms,
                            bm25_stats: None,
                            documents: None,
                        },
                    };
                    serde_json::to_vec(&reply).unwrap_or_default()
                })
                .await
                .unwrap_or_default();
                let _ = client.publish(reply, body.into()).await;
            });
        }
    })
}

/// A shard's part of one search round.
#[derive(Default)]
struct ShardLists {
    applied: u64,
    dense: Vec<ShardHit>,
    bm25: Vec<ShardHit>,
    stats: Option<cairn_index::bm25::Bm25Stats>,
    documents: Option<Vec<cairn_engine::KnownDocument>>,
}

/// Answer one round of a search from this shard. The lists are the raw
/// candidate lists a single node fuses (no per-document cap, no reranking:
/// the coordinator fuses, caps and cuts after gathering), BM25 scored with
/// the collection-wide statistics the request carries.
fn shard_search(engine: &Engine, payload: &[u8], subject: &str) -> Result<ShardLists> {
    let req: SearchRequest = serde_json::from_slice(payload).map_err(|e| ClusterError::Wire {
        subject: subject.to_string(),
        reason: e.to_string(),
    })?;
    let applied = engine.applied_seq()?;
    match req.want {
        wire::Want::Hits => {}
        wire::Want::Stats => {
            return Ok(ShardLists {
                applied,
                stats: Some(engine.bm25_stats(&req.query)?),
                ..ShardLists::default()
            })
        }
        wire::Want::Documents => {
            let docs = engine
                .documents()?
                .into_iter()
                .map(cairn_engine::KnownDocument::from)
                .collect();
            return Ok(ShardLists {
                applied,
                documents: Some(docs),
                ..ShardLists::default()
            });
        }
    }
    let vector = req
        .vector
        .as_deref()
        .map(|v| wire::decode_vector(v, subject))
        .transpose()?;
    let with_cosines = |ranked: Vec<cairn_core::Scored>| -> Result<Vec<ShardHit>> {
        let hits = engine.hits(&ranked)?;
        let cos = match &vector {
            Some(v) => engine.similarities(v, &hits.iter().map(|h| h.chunk).collect::<Vec<_>>())?,
            None => vec![0.0; hits.len()],
        };
        Ok(hits
            .into_iter()
            .zip(cos)
            .map(|(hit, cosine)| ShardHit { hit, cosine })
            .collect())
    };
    let empty = req.query.trim().is_empty() || req.n == 0;
    let dense = if req.mode != SearchMode::Bm25 && !empty {
        let v = vector.as_deref().ok_or_else(|| ClusterError::Wire {
            subject: subject.to_string(),
            reason: "a dense or hybrid search needs the query vector".into(),
        })?;
        if v.len() != engine.embedder().dim() {
            return Err(ClusterError::Wire {
                subject: subject.to_string(),
                reason: format!(
                    "the query vector has {} dimensions, the collection {}",
                    v.len(),
                    engine.embedder().dim()
                ),
            });
        }
        with_cosines(engine.dense_candidates(v, req.n)?)?
    } else {
        vec![]
    };
    let bm25 = if req.mode != SearchMode::Dense && !empty {
        with_cosines(engine.bm25_candidates(&req.query, req.n, req.bm25_stats.as_ref())?)?
    } else {
        vec![]
    };
    Ok(ShardLists {
        applied,
        dense,
        bm25,
        ..ShardLists::default()
    })
}

/// The generation replica: one answer at a time; a request that arrives
/// while busy is told so, and the coordinator asks another replica.
async fn serve_generation(s: Arc<Shared>, generator: Arc<dyn Generator>) -> Result<()> {
    // The replica checks answers with its own critic (`critic.kind = "llm"`:
    // its own generator).
    let critic = if s.cfg.critic.kind == "llm" {
        cairn_engine::llm_critic(&s.cfg, generator.clone())
    } else {
        cairn_engine::load_critic(&s.cfg, s.embedder.clone())?
    };
    let mut sub = s
        .client
        .queue_subscribe(GENERATE_SUBJECT, GENERATE_SUBJECT.to_string())
        .await
        .map_err(|e| ClusterError::js("subscribing to generation", e))?;
    let busy = Arc::new(AtomicBool::new(false));
    while let Some(msg) = sub.next().await {
        let Some(reply) = msg.reply.clone() else {
            continue;
        };
        let client = s.client.clone();
        let node = s.name.clone();
        if busy.swap(true, Ordering::SeqCst) {
            let ev = serde_json::to_vec(&GenEvent::Busy { node }).unwrap_or_default();
            let _ = client.publish(reply, ev.into()).await;
            continue;
        }
        let (busy, generator, critic) = (busy.clone(), generator.clone(), critic.clone());
        let base = AskOptions::from_config(&s.cfg);
        tokio::spawn(async move {
            generate_one(
                client,
                node,
                reply.to_string(),
                generator,
                critic,
                base,
                &msg.payload,
            )
            .await;
            busy.store(false, Ordering::SeqCst);
        });
    }
    Ok(())
}

async fn generate_one(
    client: async_nats::Client,
    node: String,
    reply: String,
    generator: Arc<dyn Generator>,
    critic: Arc<dyn cairn_core::Critic>,
    base: AskOptions,
    payload: &[u8],
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<GenEvent>();
    let forward = {
        let client = client.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                let body = serde_json::to_vec(&ev).unwrap_or_default();
                if client.publish(reply.clone(), body.into()).await.is_err() {
                    break;
                }
            }
            let _ = client.flush().await;
        })
    };
    let req: GenerateRequest = match serde_json::from_slice(payload) {
        Ok(r) => r,
        Err(e) => {
            let _ = tx.send(GenEvent::Error {
                node,
                message: format!("malformed generation request: {e}"),
            });
            drop(tx);
            let _ = forward.await;
            return;
        }
    };
    let _ = tx.send(GenEvent::Start {
        node: node.clone(),
        model: generator.model_name().to_string(),
    });
    // Keep-alives while the prompt is processed, so the coordinator can
    // tell a slow replica from a dead one.
    let alive = {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(Duration::from_secs(1));
            loop {
                t.tick().await;
                if tx.send(GenEvent::Alive).is_err() {
                    break;
                }
            }
        })
    };
    let tx2 = tx.clone();
    let result = tokio::task::spawn_blocking(move || {
        let opts = AskOptions {
            k: req.k,
            mode: req.mode,
            min_relevance: req.min_relevance,
            sampling: req.sampling.clone(),
            check: req.check,
            support_threshold: req.support_threshold,
            // Corrective retrieval and extractive answers need the
            // coordinator's retrieval; the cluster does not run them yet.
            crag: false,
            extractive: false,
            // The rest (grammar, fallback, calibrations) from this node's
            // configuration.
            ..base
        };
        let mut sink = |t: &str| {
            if tx2
                .send(GenEvent::Token {
                    text: t.to_string(),
                })
                .is_err()
            {
                Flow::Stop
            } else {
                Flow::Continue
            }
        };
        cairn_engine::answer_from_passages(
            &req.question,
            &[],
            Retrieved {
                hits: req.hits,
                relevance: req.relevance,
                embed_ms: req.embed_ms,
                search_ms: req.search_ms,
                started: Instant::now(),
                judged: None,
            },
            generator.as_ref(),
            Some(critic.as_ref()),
            &opts,
            &mut sink,
        )
    })
    .await;
    alive.abort();
    let ev = match result {
        Ok(Ok(answer)) => GenEvent::Done {
            answer: serde_json::to_value(&answer).unwrap_or_default(),
        },
        Ok(Err(e)) => GenEvent::Error {
            node,
            message: e.to_string(),
        },
        Err(e) => GenEvent::Error {
            node,
            message: format!("generation task failed: {e}"),
        },
    };
    let _ = tx.send(ev);
    drop(tx);
    let _ = forward.await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn files_beside_a_shard_are_its_own() {
        let a = super::beside(
            std::path::Path::new("/d/collections/docs.shard0"),
            "snapshot",
        );
        let b = super::beside(
            std::path::Path::new("/d/collections/docs.shard1"),
            "snapshot",
        );
        assert_eq!(
            a,
            std::path::Path::new("/d/collections/docs.shard0.snapshot")
        );
        assert_ne!(a, b);
    }
}
