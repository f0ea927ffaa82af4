//! A shard's life on this node: restored from a snapshot when its copy is
//! missing or older than the log, then the log consumed in order through
//! the engine's one apply path (acknowledged after the commit), with
//! snapshots taken by the shard's first replica.

use super::responders::start_search;
use super::*;

pub(super) fn start_shard(s: &Arc<Shared>, key: ShardKey, info: CollectionInfo) {
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
            let d = dir.clone();
            tokio::task::spawn_blocking(move || std::fs::File::open(&d)?.sync_all())
                .await
                .map_err(|e| ClusterError::js("join", e))?
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
