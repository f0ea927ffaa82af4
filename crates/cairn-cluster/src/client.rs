//! The client side of the cluster: what `cairn --cluster URL …` runs.
//! It creates collections, publishes embedded documents to the shards'
//! logs, scatter-gathers searches and hands answers to a free generation
//! replica.

use crate::merge::{fuse_candidates, merge, ClusterHit, Fusion};
use crate::node::{bucket, connect, keys, replicas_for};
use crate::wire::{
    self, Answer, Ask, CollectionInfo, GenEvent, GenerateRequest, NodeInfo, Passage, SearchRequest,
    ShardAnswer, ShardAsk, ShardReply, WireOp,
};
use crate::{
    initial_assignment, ops_subject, search_subject, shard_of, stream_name, ClusterError, Result,
    COLLECTIONS_BUCKET, GENERATE_SUBJECT, NODES_BUCKET, NODE_TTL,
};
use async_nats::jetstream::{self, kv, message::PublishMessage};
use cairn_core::op::Op;
use cairn_core::{Hit, SearchMode, Seq};
use cairn_engine::AskOptions;
use cairn_generate::{Flow, TokenSink};
use futures::StreamExt;
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Why a two-phase search starts again (see [`Cluster::search`]).
struct Retry(String);

/// A connection to the cluster.
pub struct Cluster {
    pub(crate) client: async_nats::Client,
    js: jetstream::Context,
    nodes: kv::Store,
    pub(crate) colls: kv::Store,
    /// How long a shard may take to answer a search.
    pub shard_timeout: Duration,
    /// How long a generation replica may go silent before it is given up.
    pub generation_idle: Duration,
    /// The last log sequence this connection wrote, per (collection,
    /// shard): searches wait for a replica that has applied it, so that a
    /// client reads its own writes.
    written: std::sync::Mutex<std::collections::HashMap<(String, u32), Seq>>,
    /// Turns the order in which a search prefers a shard's replicas, so
    /// that replicas share the searches ([`Cluster::route`]).
    rotation: std::sync::atomic::AtomicUsize,
    /// Ask nodes for all their shards at once (the default); false sends
    /// every ask to its shard's queue group, as before node subjects (what
    /// the benchmark compares them with).
    pub node_asks: bool,
}

/// A merged search.
#[derive(Debug, Clone, Serialize)]
pub struct SearchResult {
    pub hits: Vec<ClusterHit>,
    pub shards_ok: u32,
    pub shards_total: u32,
    /// Shards no replica answered for in time.
    pub missing_shards: Vec<u32>,
    /// Milliseconds from sending to the last reply.
    pub gather_ms: f64,
    /// Milliseconds each answering shard spent searching, by shard: over
    /// every round of the search (statistics, candidates, passages).
    pub shard_ms: Vec<f64>,
}

/// A value no other publish (of this process or another) uses.
fn publish_nonce() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    format!("{}-{}-{n}", std::process::id(), wire::now_ms())
}

/// A collection's documents as its shards report them.
#[derive(Debug, Clone, Default)]
pub struct KnownDocuments {
    /// By canonical path.
    pub documents: std::collections::HashMap<String, cairn_engine::KnownDocument>,
    /// What each shard's catalog holds of them, with the shard (ids are the
    /// shard's own).
    pub listed: Vec<(u32, cairn_engine::DocMeta)>,
    /// Shards no replica answered for: their documents are not listed.
    pub missing_shards: Vec<u32>,
}

pub use cairn_engine::{Published, Rejected};

/// One replica of a shard, as `cluster status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaStatus {
    pub node: String,
    pub live: bool,
    pub applied: Option<Seq>,
    /// Log entries not yet applied.
    pub lag: Option<u64>,
    pub serving: bool,
    pub documents: Option<u64>,
    pub chunks: Option<u64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ShardStatus {
    pub shard: u32,
    pub stream: String,
    /// The log's last sequence.
    pub last_seq: Seq,
    /// The first entry the log still holds (entries below it were trimmed
    /// after a snapshot).
    pub first_seq: Seq,
    /// The sequence of the shard's latest snapshot, if any.
    pub snapshot_seq: Option<Seq>,
    pub stream_replicas: usize,
    pub replicas: Vec<ReplicaStatus>,
    pub live_replicas: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct CollectionStatus {
    pub name: String,
    pub shards: u32,
    pub replicas: u32,
    pub embed_model: String,
    pub dim: usize,
    /// Documents across shards (each shard counted once, at its most advanced live replica).
    pub documents: u64,
    pub under_replicated: Vec<u32>,
    pub shard_status: Vec<ShardStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    pub nats_servers: usize,
    pub nodes: Vec<NodeInfo>,
    pub collections: Vec<CollectionStatus>,
}

impl Cluster {
    /// Send `body` to `subject` with a fresh inbox for the replies, any
    /// number of them, read from the subscription returned (subscribed
    /// before the request leaves, so no reply is missed).
    pub(crate) async fn streamed_request(
        &self,
        subject: String,
        body: bytes::Bytes,
        what: &str,
    ) -> Result<async_nats::Subscriber> {
        let inbox = self.client.new_inbox();
        let sub = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| ClusterError::js("subscribing to an inbox", e))?;
        self.client
            .publish_with_reply(subject, inbox, body)
            .await
            .map_err(|e| ClusterError::js(format!("sending {what}"), e))?;
        Ok(sub)
    }

    /// Connect (URLs may be comma-separated) and open the cluster's buckets.
    pub async fn connect(url: &str) -> Result<Cluster> {
        let urls: Vec<String> = url.split(',').map(|u| u.trim().to_string()).collect();
        let client = connect(&urls, "cairn-client").await?;
        let js = jetstream::new(client.clone());
        let replicas = replicas_for(&client);
        let nodes = bucket(&js, NODES_BUCKET, NODE_TTL, replicas).await?;
        let colls = bucket(&js, COLLECTIONS_BUCKET, Duration::ZERO, replicas).await?;
        Ok(Cluster {
            client,
            js,
            nodes,
            colls,
            shard_timeout: Duration::from_secs(2),
            generation_idle: Duration::from_secs(10),
            written: Default::default(),
            rotation: Default::default(),
            node_asks: true,
        })
    }

    /// The JetStream context (for the buckets other parts of the client keep).
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// NATS servers in the cluster this client can reach.
    pub fn nats_servers(&self) -> usize {
        self.client.server_info().connect_urls.len().max(1)
    }

    /// Live nodes (their last heartbeat), by name.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        let mut out = Vec::new();
        for k in keys(&self.nodes).await? {
            if let Ok(Some(v)) = self.nodes.get(&k).await {
                if let Ok(n) = serde_json::from_slice::<NodeInfo>(&v) {
                    out.push(n);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// A collection's shape and assignment.
    pub async fn collection(&self, name: &str) -> Result<Option<CollectionInfo>> {
        match self
            .colls
            .get(name)
            .await
            .map_err(|e| ClusterError::js(format!("reading collection {name}"), e))?
        {
            Some(v) => Ok(Some(serde_json::from_slice(&v).map_err(|e| {
                ClusterError::Wire {
                    subject: format!("{COLLECTIONS_BUCKET}.{name}"),
                    reason: e.to_string(),
                }
            })?)),
            None => Ok(None),
        }
    }

    /// Create a collection of `shards` shards with `replicas` copies each
    /// (defaults: 2 × live nodes, and min(2, live nodes)): its streams, then
    /// its record (created only if absent).
    pub async fn create_collection(
        &self,
        name: &str,
        shards: Option<u32>,
        replicas: Option<u32>,
        embed_model: &str,
        dim: usize,
    ) -> Result<CollectionInfo> {
        crate::validate_cluster_collection(name)?;
        if let Some(c) = self.collection(name).await? {
            return Err(ClusterError::CollectionExists {
                name: name.into(),
                shards: c.shards,
                replicas: c.replicas,
            });
        }
        let live: Vec<String> = self.nodes().await?.into_iter().map(|n| n.name).collect();
        if live.is_empty() {
            return Err(ClusterError::NoNodes);
        }
        let n = live.len() as u32;
        let shards = shards.unwrap_or(2 * n);
        let replicas = replicas.unwrap_or(n.min(2));
        if !(1..=1024).contains(&shards) {
            return Err(ClusterError::Invalid {
                field: "shards",
                reason: format!("{shards}: use 1 to 1024"),
            });
        }
        if replicas == 0 || replicas > n {
            return Err(ClusterError::Invalid {
                field: "replicas",
                reason: format!("{replicas}: use 1 to the number of live nodes ({n})"),
            });
        }
        let stream_replicas = replicas_for(&self.client);
        for shard in 0..shards {
            let cfg = jetstream::stream::Config {
                name: stream_name(name, shard),
                subjects: vec![ops_subject(name, shard)],
                num_replicas: stream_replicas,
                storage: jetstream::stream::StorageType::File,
                duplicate_window: Duration::from_secs(120),
                description: Some(format!("cairn collection {name}, shard {shard}")),
                ..Default::default()
            };
            self.js.get_or_create_stream(cfg).await.map_err(|e| {
                ClusterError::js(format!("creating stream {}", stream_name(name, shard)), e)
            })?;
        }
        let info = CollectionInfo {
            name: name.into(),
            shards,
            replicas,
            embed_model: embed_model.into(),
            dim,
            created_ms: wire::now_ms(),
            assignment: initial_assignment(&live, shards, replicas),
        };
        let body = serde_json::to_vec(&info).unwrap_or_default();
        if let Err(e) = self.colls.create(name, body.into()).await {
            // Lost a race with another creator: report theirs.
            if let Some(c) = self.collection(name).await? {
                return Err(ClusterError::CollectionExists {
                    name: name.into(),
                    shards: c.shards,
                    replicas: c.replicas,
                });
            }
            return Err(ClusterError::js(format!("recording collection {name}"), e));
        }
        Ok(info)
    }

    /// Wait until every shard of `info` has a live replica that serves
    /// searches (a new collection's shards are taken by the nodes within
    /// a few heartbeats), up to `timeout`; false if some never did.
    pub async fn wait_served(&self, info: &CollectionInfo, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            let nodes = self.nodes().await?;
            let served = (0..info.shards).all(|shard| {
                let key = format!("{}/{shard}", info.name);
                nodes
                    .iter()
                    .any(|n| n.shards.get(&key).is_some_and(|s| s.serving))
            });
            if served {
                return Ok(true);
            }
            if Instant::now() > deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The collection, created with the defaults when `create` and absent
    /// (then returned once its shards are served, or after 60 s); its
    /// embedding model must be the client's.
    pub async fn open_collection(
        &self,
        name: &str,
        embed_model: &str,
        dim: usize,
        create: bool,
    ) -> Result<CollectionInfo> {
        let info = match self.collection(name).await? {
            Some(c) => c,
            None if create => match self
                .create_collection(name, None, None, embed_model, dim)
                .await
            {
                Ok(c) => {
                    if !self.wait_served(&c, Duration::from_secs(60)).await? {
                        tracing::warn!(
                            collection = name,
                            "not every shard of the new collection is served yet"
                        );
                    }
                    c
                }
                Err(ClusterError::CollectionExists { .. }) => self
                    .collection(name)
                    .await?
                    .ok_or_else(|| ClusterError::NoCollection(name.into()))?,
                Err(e) => return Err(e),
            },
            None => return Err(ClusterError::NoCollection(name.into())),
        };
        if info.embed_model != embed_model || info.dim != dim {
            return Err(ClusterError::ModelMismatch {
                collection: name.into(),
                have: info.embed_model,
                have_dim: info.dim,
                want: embed_model.into(),
                want_dim: dim,
            });
        }
        Ok(info)
    }

    /// Publish ops to their shards' logs and wait for every acknowledgement
    /// (an acknowledged document is durable in JetStream). Each document
    /// carries a message id from its path and content hash, so a retried
    /// publish is not logged twice.
    pub async fn publish(
        &self,
        info: &CollectionInfo,
        ops: Vec<Op>,
    ) -> Result<(Vec<Published>, Vec<Rejected>)> {
        let max = self.client.server_info().max_payload;
        let nonce = publish_nonce();
        let mut waiting = Vec::new();
        let mut rejected = Vec::new();
        for op in ops {
            let (key, doc, hash) = match &op {
                Op::Upsert { doc, .. } => (doc.path.clone(), doc.doc.clone(), doc.hash.clone()),
                Op::Delete { path } => (path.clone(), path.clone(), "delete".into()),
                // Nothing to publish: a no-op only keeps a replica's place.
                Op::Noop => continue,
            };
            let shard = shard_of(&key, info.shards);
            let body = serde_json::to_vec(&WireOp::from_op(&op)).unwrap_or_default();
            if body.len() + 512 > max {
                rejected.push(Rejected {
                    doc: doc.clone(),
                    reason: ClusterError::TooLarge {
                        doc,
                        bytes: body.len(),
                        max,
                    }
                    .to_string(),
                });
                continue;
            }
            // Unique per publish: retries below reuse it (JetStream drops
            // the copy), while publishing the same content again later (a
            // file removed and added back) is a new entry.
            let id = blake3::hash(format!("{key}\n{hash}\n{nonce}").as_bytes())
                .to_hex()
                .to_string();
            waiting.push((
                doc,
                shard,
                ops_subject(&info.name, shard),
                id,
                bytes::Bytes::from(body),
            ));
        }
        // Publish everything, then collect acknowledgements; what was not
        // acknowledged (a NATS server failing over, a leader election) is
        // sent again with the same message id, which JetStream deduplicates.
        let mut published = Vec::new();
        let mut attempt = 0;
        while !waiting.is_empty() {
            attempt += 1;
            let mut acks = Vec::new();
            for (doc, shard, subject, id, body) in waiting.drain(..) {
                let fut = self
                    .js
                    .send_publish(
                        subject.clone(),
                        PublishMessage::build()
                            .payload(body.clone())
                            .message_id(&id),
                    )
                    .await;
                acks.push(((doc, shard, subject, id, body), fut));
            }
            let mut failed = Vec::new();
            for (item, fut) in acks {
                let res = match fut {
                    Ok(f) => f.await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match res {
                    Ok(a) => {
                        let mut w = self.written.lock().unwrap_or_else(|p| p.into_inner());
                        let last = w.entry((info.name.clone(), item.1)).or_insert(0);
                        *last = (*last).max(a.sequence);
                        published.push(Published {
                            doc: item.0,
                            shard: item.1,
                            seq: a.sequence,
                            duplicate: a.duplicate,
                        })
                    }
                    Err(e) => failed.push((item, e)),
                }
            }
            if failed.is_empty() {
                break;
            }
            if attempt >= 6 {
                for ((doc, ..), e) in failed {
                    rejected.push(Rejected {
                        doc,
                        reason: format!("not acknowledged by JetStream after {attempt} tries: {e}"),
                    });
                }
                break;
            }
            tracing::warn!(
                unacknowledged = failed.len(),
                attempt,
                "publishing again: {}",
                failed[0].1
            );
            tokio::time::sleep(Duration::from_millis(500 * attempt as u64)).await;
            waiting = failed.into_iter().map(|(item, _)| item).collect();
        }
        Ok((published, rejected))
    }

    /// Send the query to every shard's queue group, wait for each up to
    /// `shard_timeout` (one retry on a missing replica), and fuse.
    ///
    /// BM25 and hybrid searches start with a statistics round: each shard
    /// reports its term statistics for the query, and then every shard
    /// scores with their sum, so BM25 scores (and the fused order) equal
    /// those of one node holding the whole collection.
    ///
    /// Then two phases, in the binary protocol (see [`wire::ShardAsk`]):
    /// every shard sends its dense and BM25 candidates as chunk ids and
    /// scores; the lists are fused here; and only the shards holding
    /// passages of the fused top `k` are asked for their texts (one request
    /// each, in parallel), from a replica that has applied exactly what
    /// phase 1 saw. Should a shard's passages not come back so (its replica
    /// died or applied a write in between, or no longer holds a chunk), the
    /// search starts again, twice at most, and then runs in one round
    /// ([`Cluster::search_one_phase`]): hits are never dropped silently.
    pub async fn search(
        &self,
        info: &CollectionInfo,
        query: &str,
        vector: Option<&[f32]>,
        k: usize,
        mode: SearchMode,
        fusion: &Fusion,
    ) -> Result<SearchResult> {
        let started = Instant::now();
        let mut last = String::new();
        for attempt in 1..=3 {
            match self
                .search_two_phase(info, query, vector, k, mode, fusion, started)
                .await
            {
                Ok(r) => return Ok(r),
                Err(Retry(why)) => {
                    tracing::info!(collection = info.name, attempt, "{why}: searching again");
                    last = why;
                }
            }
        }
        tracing::warn!(
            collection = info.name,
            "the two-phase search failed three times ({last}); searching in one round"
        );
        self.search_one_phase(info, query, vector, k, mode, fusion)
            .await
    }

    /// Per shard, the last log sequence this connection wrote to it.
    fn written_to(&self, info: &CollectionInfo) -> HashMap<u32, Seq> {
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|((c, _), _)| c == &info.name)
            .map(|((_, shard), seq)| (*shard, *seq))
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    async fn search_two_phase(
        &self,
        info: &CollectionInfo,
        query: &str,
        vector: Option<&[f32]>,
        k: usize,
        mode: SearchMode,
        fusion: &Fusion,
        started: Instant,
    ) -> std::result::Result<SearchResult, Retry> {
        let n = match mode {
            SearchMode::Hybrid => fusion.candidates.max(k),
            _ => k,
        };
        let written = self.written_to(info);
        let all: Vec<u32> = (0..info.shards).collect();
        let read_your_writes = |shard: u32, ask: Ask| ShardAsk {
            min_applied: written.get(&shard).copied(),
            ask,
        };
        let mut shard_ms = vec![0.0; info.shards as usize];
        let route = self.route(info);
        let vector: Option<Vec<f32>> = vector.map(<[f32]>::to_vec);
        let candidate_asks = |bm25_stats: &Option<cairn_index::bm25::Bm25Stats>| {
            all.iter()
                .map(|&s| {
                    let ask = Ask::Candidates {
                        query: query.to_string(),
                        vector: vector.clone(),
                        n: n as u32,
                        mode,
                        bm25_stats: bm25_stats.clone(),
                        documents: fusion.max_per_document > 0,
                    };
                    (s, read_your_writes(s, ask))
                })
                .collect::<Vec<_>>()
        };
        // Every shard on one node (one node holding the collection, or a
        // replica of all of it): that node sums the BM25 statistics itself,
        // and the statistics round is skipped. Should it not answer for
        // every shard, the rounds below run as usual.
        let one_node = {
            let nodes: std::collections::HashSet<&String> = route.values().collect();
            route.len() == info.shards as usize && nodes.len() == 1
        };
        let mut answers = None;
        if mode != SearchMode::Dense && info.shards > 1 && one_node {
            let got = self.ask(info, candidate_asks(&None), &route, true).await;
            if got.iter().all(|a| {
                matches!(
                    a,
                    Some(ShardAnswer {
                        body: Answer::Candidates(_),
                        ..
                    })
                )
            }) {
                answers = Some(got);
            }
        }
        let answers = match answers {
            Some(a) => a,
            None => {
                let mut bm25_stats = None;
                if mode != SearchMode::Dense && info.shards > 1 {
                    let asks = all
                        .iter()
                        .map(|&s| {
                            let ask = Ask::Stats {
                                query: query.to_string(),
                            };
                            (s, read_your_writes(s, ask))
                        })
                        .collect();
                    let mut sum = cairn_index::bm25::Bm25Stats::default();
                    let mut any = false;
                    for (shard, a) in all.iter().zip(self.ask(info, asks, &route, false).await) {
                        if let Some(a) = a {
                            shard_ms[*shard as usize] += a.took_ms;
                            if let Answer::Stats(stats) = &a.body {
                                sum.add(stats);
                                any = true;
                            }
                        }
                    }
                    // No shard answered the first round: the second finds out
                    // which are missing, and scores with the shards' own figures.
                    bm25_stats = any.then_some(sum);
                }
                // Phase 1: candidates, ids and scores.
                self.ask(info, candidate_asks(&bm25_stats), &route, false)
                    .await
            }
        };
        let mut lists = Vec::new();
        let mut applied = HashMap::new();
        // Phase 2 asks the node that answered phase 1 (it holds what phase 1
        // saw).
        let mut answered_by = HashMap::new();
        let mut missing = Vec::new();
        for (&shard, a) in all.iter().zip(answers) {
            match a {
                Some(ShardAnswer {
                    applied: seq,
                    took_ms,
                    body: Answer::Candidates(c),
                    node,
                }) => {
                    shard_ms[shard as usize] += took_ms;
                    applied.insert(shard, seq);
                    answered_by.insert(shard, node);
                    lists.push((shard, c));
                }
                _ => missing.push(shard),
            }
        }
        let top = fuse_candidates(&lists, k, mode, fusion);
        // Phase 2: the passages of the fused top k, from their shards.
        let mut wanted: Vec<(u32, Vec<u64>)> = Vec::new();
        for &(shard, chunk, _) in &top {
            match wanted.iter_mut().find(|(s, _)| *s == shard) {
                Some((_, chunks)) => chunks.push(chunk),
                None => wanted.push((shard, vec![chunk])),
            }
        }
        let asks = wanted
            .iter()
            .map(|(shard, chunks)| {
                let ask = ShardAsk {
                    min_applied: None,
                    ask: Ask::Passages {
                        chunks: chunks.clone(),
                        vector: vector.clone(),
                        at: applied[shard],
                    },
                };
                (*shard, ask)
            })
            .collect();
        let mut passages: HashMap<(u32, u64), Passage> = HashMap::new();
        for ((shard, chunks), a) in wanted
            .iter()
            .zip(self.ask(info, asks, &answered_by, false).await)
        {
            let subject = search_subject(&info.name, *shard);
            let Some(a) = a else {
                return Err(Retry(format!(
                    "no replica of shard {shard} returned its passages on {subject}"
                )));
            };
            if a.applied != applied[shard] {
                return Err(Retry(format!(
                    "shard {shard} changed between the phases (it had applied {} for the candidates, {} for the passages)",
                    applied[shard], a.applied
                )));
            }
            let Answer::Passages(got) = a.body else {
                return Err(Retry(format!(
                    "{subject}: the answer to a passages request is not passages"
                )));
            };
            if got.len() != chunks.len() {
                return Err(Retry(format!(
                    "{subject}: {} passages for {} chunks",
                    got.len(),
                    chunks.len()
                )));
            }
            for (&chunk, p) in chunks.iter().zip(got) {
                let p =
                    p.ok_or_else(|| Retry(format!("shard {shard} no longer holds chunk {chunk}")))?;
                passages.insert((*shard, chunk), p);
            }
            shard_ms[*shard as usize] += a.took_ms;
        }
        let hits = top
            .into_iter()
            .enumerate()
            .map(|(i, (shard, chunk, score))| {
                let p = passages
                    .remove(&(shard, chunk))
                    .expect("every chunk of the top k was fetched above");
                let page = cairn_core::page_of(&p.doc, &p.heading);
                ClusterHit {
                    hit: Hit {
                        rank: i + 1,
                        score,
                        page,
                        doc: p.doc,
                        chunk,
                        heading: p.heading,
                        start: p.start,
                        end: p.end,
                        text: p.text,
                    },
                    shard,
                    cosine: p.cosine,
                }
            })
            .collect();
        Ok(SearchResult {
            hits,
            shards_ok: lists.len() as u32,
            shards_total: info.shards,
            missing_shards: missing,
            gather_ms: started.elapsed().as_secs_f64() * 1000.0,
            shard_ms: lists
                .iter()
                .map(|(shard, _)| shard_ms[*shard as usize])
                .collect(),
        })
    }

    /// Which node to ask for each shard in one search: of the nodes the
    /// assignment gives the shard, the first in an order of all the
    /// collection's nodes that turns from one search to the next. One node
    /// so takes every shard it holds (one request per node and round), and
    /// replicas share the searches.
    fn route(&self, info: &CollectionInfo) -> HashMap<u32, String> {
        if !self.node_asks {
            return HashMap::new();
        }
        let mut nodes: Vec<&String> = info.assignment.iter().flatten().collect();
        nodes.sort();
        nodes.dedup();
        if nodes.is_empty() {
            return HashMap::new();
        }
        let turn = self
            .rotation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let by = turn % nodes.len();
        nodes.rotate_left(by);
        (0..info.shards)
            .filter_map(|shard| {
                let holders = info.assignment.get(shard as usize)?;
                nodes
                    .iter()
                    .find(|n| holders.contains(n))
                    .map(|n| (shard, n.to_string()))
            })
            .collect()
    }

    /// One binary round: the asks of the shards `route` gives a node go to
    /// that node in one request ([`crate::node_subject`]); what no node
    /// answered (not routed, no such node listening, a shard it does not
    /// serve, an error, no answer in `shard_timeout`) goes to each shard's
    /// queue group ([`Cluster::ask_shards`]). Each ask's answer, or `None`.
    ///
    /// With `pooled` (every shard's candidates ask, all routed to one
    /// node: see [`wire::NodeAsk::pooled_stats`]), nothing goes to the
    /// queue groups: an ask that node did not answer stays `None`.
    async fn ask(
        &self,
        info: &CollectionInfo,
        asks: Vec<(u32, ShardAsk)>,
        route: &HashMap<u32, String>,
        pooled: bool,
    ) -> Vec<Option<ShardAnswer>> {
        let mut out: Vec<Option<ShardAnswer>> = vec![None; asks.len()];
        let mut groups: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
        for (i, (shard, _)) in asks.iter().enumerate() {
            if let Some(node) = route.get(shard) {
                groups.entry(node.as_str()).or_default().push(i);
            }
        }
        let requests =
            groups.into_iter().map(|(node, idx)| {
                let subject = crate::node_subject(node);
                let body = bytes::Bytes::from(wire::encode_binary(&wire::NodeAsk {
                    collection: info.name.clone(),
                    asks: idx.iter().map(|&i| asks[i].clone()).collect(),
                    pooled_stats: pooled,
                }));
                let client = self.client.clone();
                let timeout = self.shard_timeout;
                async move {
                    let answers =
                        match tokio::time::timeout(timeout, client.request(subject.clone(), body))
                            .await
                        {
                            Ok(Ok(msg)) => {
                                match wire::decode_binary::<wire::NodeAnswer>(
                                    &msg.payload,
                                    &subject,
                                    "node answer",
                                ) {
                                    Ok(a) => a.answers,
                                    Err(e) => {
                                        tracing::warn!(node, "{e}");
                                        vec![]
                                    }
                                }
                            }
                            // (No responders: a node without node subjects, or gone.)
                            Ok(Err(e)) => {
                                tracing::debug!(node, "node request: {e}");
                                vec![]
                            }
                            Err(_) => {
                                tracing::warn!(node, "node did not answer in {timeout:?}");
                                vec![]
                            }
                        };
                    (node, idx, answers)
                }
            });
        for (node, idx, answers) in futures::future::join_all(requests).await {
            for (i, a) in idx.into_iter().zip(answers) {
                match a {
                    Some(ShardAnswer {
                        body: Answer::Error(e),
                        ..
                    }) => tracing::debug!(node, shard = asks[i].0, "shard search failed: {e}"),
                    Some(a) => out[i] = Some(a),
                    None => {}
                }
            }
        }
        let rest: Vec<usize> = (0..asks.len()).filter(|&i| out[i].is_none()).collect();
        if !rest.is_empty() && !pooled {
            let again = self
                .ask_shards(info, rest.iter().map(|&i| asks[i].clone()).collect())
                .await;
            for (i, a) in rest.into_iter().zip(again) {
                out[i] = a;
            }
        }
        out
    }

    /// One binary round through the shards' queue groups: each `(shard,
    /// ask)` to the shard's queue group, its answer, or `None` where no
    /// replica answered (or answered with an error) in `shard_timeout`,
    /// after one retry.
    async fn ask_shards(
        &self,
        info: &CollectionInfo,
        asks: Vec<(u32, ShardAsk)>,
    ) -> Vec<Option<ShardAnswer>> {
        let asks = asks.into_iter().map(|(shard, ask)| {
            let subject = search_subject(&info.name, shard);
            let body = bytes::Bytes::from(wire::encode_binary(&ask));
            let client = self.client.clone();
            let timeout = self.shard_timeout;
            async move {
                request_shard(&client, subject.clone(), body, timeout, shard, |payload| {
                    match wire::decode_binary::<ShardAnswer>(payload, &subject, "shard answer") {
                        Ok(ShardAnswer {
                            node,
                            body: Answer::Error(e),
                            ..
                        }) => tracing::warn!(shard, node, "shard search failed: {e}"),
                        Ok(a) => return Some(a),
                        Err(e) => tracing::warn!(shard, "{e}"),
                    }
                    None
                })
                .await
            }
        });
        futures::future::join_all(asks).await
    }

    /// The search in one round after the statistics round (JSON): every
    /// shard sends its whole candidate lists with texts and cosines, and the
    /// coordinator fuses them. What [`Cluster::search`] falls back to, and
    /// what its two phases must equal.
    pub async fn search_one_phase(
        &self,
        info: &CollectionInfo,
        query: &str,
        vector: Option<&[f32]>,
        k: usize,
        mode: SearchMode,
        fusion: &Fusion,
    ) -> Result<SearchResult> {
        let started = Instant::now();
        let n = match mode {
            SearchMode::Hybrid => fusion.candidates.max(k),
            _ => k,
        };
        let mut req = SearchRequest {
            query: query.to_string(),
            vector: None,
            n,
            mode,
            want: wire::Want::Hits,
            bm25_stats: None,
            min_applied: None,
        };
        let mut stats_ms: HashMap<u32, f64> = HashMap::new();
        if mode != SearchMode::Dense && info.shards > 1 {
            let ask = SearchRequest {
                want: wire::Want::Stats,
                ..req.clone()
            };
            let mut sum = cairn_index::bm25::Bm25Stats::default();
            let mut any = false;
            for rep in self.scatter(info, &ask).await.into_iter().flatten() {
                *stats_ms.entry(rep.shard).or_insert(0.0) += rep.took_ms;
                if let Some(stats) = &rep.bm25_stats {
                    sum.add(stats);
                    any = true;
                }
            }
            // No shard answered the first round: the second finds out
            // which are missing, and scores with the shards' own figures.
            req.bm25_stats = any.then_some(sum);
        }
        req.vector = vector.map(wire::encode_vector);
        let replies = self.scatter(info, &req).await;
        let missing: Vec<u32> = replies
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_none())
            .map(|(i, _)| i as u32)
            .collect();
        let ok: Vec<ShardReply> = replies.into_iter().flatten().collect();
        let gather_ms = started.elapsed().as_secs_f64() * 1000.0;
        let hits = merge(&ok, k, mode, fusion);
        Ok(SearchResult {
            hits,
            shards_ok: ok.len() as u32,
            shards_total: info.shards,
            missing_shards: missing,
            gather_ms,
            shard_ms: ok
                .iter()
                .map(|r| r.took_ms + stats_ms.get(&r.shard).copied().unwrap_or(0.0))
                .collect(),
        })
    }

    /// Every document of the collection, from one caught-up replica of each
    /// shard, by canonical path, and the shards whose list is missing (no
    /// replica answered). A shard whose log is empty holds nothing and is
    /// not asked. Without every shard's list, nothing may be pruned or
    /// removed; an ingest that only skips unchanged files can go on.
    pub async fn documents(&self, info: &CollectionInfo) -> Result<KnownDocuments> {
        let mut ask = Vec::new();
        for shard in 0..info.shards {
            let logged = match self.js.get_stream(stream_name(&info.name, shard)).await {
                Ok(mut st) => st
                    .info()
                    .await
                    .map(|i| i.state.messages > 0)
                    .unwrap_or(true),
                Err(_) => false,
            };
            if logged {
                ask.push(shard);
            }
        }
        let req = SearchRequest {
            query: String::new(),
            vector: None,
            n: 0,
            mode: SearchMode::Bm25,
            want: wire::Want::Documents,
            bm25_stats: None,
            min_applied: None,
        };
        let replies = self.scatter_to(info, &ask, &req).await;
        let mut out = KnownDocuments::default();
        for (shard, reply) in ask.into_iter().zip(replies) {
            match reply.and_then(|r| r.documents) {
                Some(docs) => {
                    for d in docs {
                        out.documents
                            .insert(d.path.clone(), cairn_engine::KnownDocument::from(d.clone()));
                        out.listed.push((shard, d));
                    }
                }
                None => out.missing_shards.push(shard),
            }
        }
        Ok(out)
    }

    /// One round of a search: the request to every shard's queue group,
    /// each reply (by shard) or `None` where no replica answered in time
    /// after one retry.
    async fn scatter(&self, info: &CollectionInfo, req: &SearchRequest) -> Vec<Option<ShardReply>> {
        let all: Vec<u32> = (0..info.shards).collect();
        self.scatter_to(info, &all, req).await
    }

    /// [`Cluster::scatter`] to some shards: their replies, in order.
    /// One document's text and passages from a replica of `shard` (its
    /// canonical path: see [`Cluster::documents`]).
    pub async fn document_text(
        &self,
        info: &CollectionInfo,
        shard: u32,
        path: &str,
    ) -> Result<cairn_engine::DocumentText> {
        let req = SearchRequest {
            query: path.to_string(),
            vector: None,
            n: 0,
            mode: SearchMode::Bm25,
            want: wire::Want::DocumentText,
            bm25_stats: None,
            min_applied: None,
        };
        let reply = self.scatter_to(info, &[shard], &req).await;
        match reply.into_iter().next().flatten().and_then(|r| r.document_text) {
            Some(d) => Ok(d),
            None => Err(ClusterError::Engine(cairn_engine::EngineError::Unavailable(format!(
                "no replica of shard {shard} of `{}` answered with the text of `{path}`; try again when the nodes holding it are back",
                info.name
            )))),
        }
    }

    async fn scatter_to(
        &self,
        info: &CollectionInfo,
        shards: &[u32],
        req: &SearchRequest,
    ) -> Vec<Option<ShardReply>> {
        let written = self
            .written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let asks = shards.iter().map(|&shard| {
            let subject = search_subject(&info.name, shard);
            // Read your writes: a replica answers once it has applied what
            // this connection wrote to the shard.
            let mut req = req.clone();
            req.min_applied = written.get(&(info.name.clone(), shard)).copied();
            let body = bytes::Bytes::from(serde_json::to_vec(&req).unwrap_or_default());
            let client = self.client.clone();
            let timeout = self.shard_timeout;
            async move {
                request_shard(&client, subject, body, timeout, shard, |payload| {
                    match serde_json::from_slice::<ShardReply>(payload) {
                        Ok(rep) if rep.error.is_none() => return Some(rep),
                        Ok(rep) => tracing::warn!(
                            shard,
                            node = rep.node,
                            "shard search failed: {:?}",
                            rep.error
                        ),
                        Err(e) => tracing::warn!(shard, "unreadable shard reply: {e}"),
                    }
                    None
                })
                .await
            }
        });
        futures::future::join_all(asks).await
    }

    /// Answer from gathered passages on a free generation replica, sending
    /// the answer to `sink` as it streams. A replica that is busy is
    /// skipped; one that fails or goes silent mid-answer is given up and the
    /// answer starts again on another (the sink is told with a restart),
    /// once. Returns the answer, the replica that wrote it and the ones that
    /// failed.
    pub async fn generate(
        &self,
        req: &GenerateRequest,
        sink: &mut (dyn TokenSink + Send),
    ) -> Result<(cairn_engine::Answer, String, Vec<String>)> {
        let llms: Vec<String> = self
            .nodes()
            .await?
            .into_iter()
            .filter(|n| n.llm.is_some())
            .map(|n| n.name)
            .collect();
        if llms.is_empty() {
            return Err(ClusterError::NoGenerator(
                "no live node serves a generation model".into(),
            ));
        }
        let body = bytes::Bytes::from(serde_json::to_vec(req).unwrap_or_default());
        let mut failed: Vec<String> = Vec::new();
        let deadline_busy = Instant::now() + Duration::from_secs(600);
        loop {
            let mut sub = self
                .streamed_request(
                    GENERATE_SUBJECT.to_string(),
                    body.clone(),
                    "a generation request",
                )
                .await?;
            let first = tokio::time::timeout(Duration::from_secs(5), sub.next()).await;
            let node = match first
                .ok()
                .flatten()
                .map(|m| serde_json::from_slice::<GenEvent>(&m.payload))
            {
                Some(Ok(GenEvent::Start { node, .. })) => node,
                Some(Ok(GenEvent::Busy { .. })) => {
                    if Instant::now() > deadline_busy {
                        return Err(ClusterError::NoGenerator(
                            "every replica stayed busy for 10 minutes".into(),
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    continue;
                }
                other => {
                    failed.push("(none)".into());
                    if failed.len() > 1 {
                        return Err(ClusterError::NoGenerator(format!(
                            "no replica took the request within 5 s ({other:?})"
                        )));
                    }
                    continue;
                }
            };
            tracing::info!(node, "generating on {node}");
            let mut text_seen = false;
            let mut stopped = false;
            let outcome = loop {
                match tokio::time::timeout(self.generation_idle, sub.next()).await {
                    Ok(Some(m)) => match serde_json::from_slice::<GenEvent>(&m.payload) {
                        Ok(GenEvent::Token { text }) => {
                            text_seen = true;
                            if sink.piece(&text) == Flow::Stop {
                                stopped = true;
                                // The caller stopped listening: the replica
                                // notices when its inbox goes.
                                break Err("the caller stopped the answer".into());
                            }
                        }
                        Ok(GenEvent::Restart { why }) => sink.restart(&why),
                        Ok(GenEvent::Alive)
                        | Ok(GenEvent::Start { .. })
                        | Ok(GenEvent::Busy { .. }) => {}
                        Ok(GenEvent::Done { answer }) => break Ok(*answer),
                        Ok(GenEvent::Error { message, .. }) => break Err(message),
                        Err(e) => break Err(format!("unreadable event: {e}")),
                    },
                    Ok(None) => break Err("the inbox closed".into()),
                    Err(_) => break Err(format!("silent for {:?}", self.generation_idle)),
                }
            };
            match outcome {
                Ok(answer) => return Ok((answer, node, failed)),
                Err(message) if stopped => {
                    return Err(ClusterError::Generation { node, message });
                }
                Err(message) => {
                    tracing::warn!(node, text_seen, "generation replica failed: {message}");
                    failed.push(node.clone());
                    if failed.len() > 1 {
                        return Err(ClusterError::Generation { node, message });
                    }
                    sink.restart(&format!(
                        "the generation replica {node} failed mid-answer; answering again on another replica"
                    ));
                }
            }
        }
    }

    /// Generate an answer on a replica from passages already gathered
    /// (`retrieved`, with `shards`: how many answered of how many), or say
    /// that the documents do not cover the question when none is relevant
    /// enough. The answer says which shards and replica served it; the
    /// replica answers with what `collection` learned.
    #[allow(clippy::too_many_arguments)]
    pub async fn answer(
        &self,
        collection: &str,
        question: &str,
        history: &[cairn_generate::ChatMessage],
        retrieved: cairn_engine::Retrieved,
        shards: (u32, u32),
        opts: &AskOptions,
        sink: &mut (dyn TokenSink + Send),
    ) -> Result<cairn_engine::Answer> {
        let served = |node: Option<String>, failed: Vec<String>| cairn_engine::ClusterAnswer {
            shards_ok: shards.0,
            shards_total: shards.1,
            node,
            failed_replicas: failed,
        };
        if !cairn_engine::would_generate(&retrieved.relevance, opts.min_relevance) {
            let mut a = cairn_engine::not_covered(&retrieved, "-");
            a.cluster = Some(served(None, vec![]));
            return Ok(a);
        }
        let req = GenerateRequest {
            question: question.to_string(),
            history: history.to_vec(),
            hits: retrieved.hits,
            relevance: retrieved.relevance,
            embed_ms: retrieved.embed_ms,
            search_ms: retrieved.search_ms,
            k: opts.k,
            mode: opts.mode,
            min_relevance: opts.min_relevance,
            sampling: opts.sampling.clone(),
            check: opts.check,
            support_threshold: opts.support_threshold,
            collection: Some(collection.to_string()),
        };
        let (mut answer, node, failed) = self.generate(&req, sink).await?;
        // Timings from the coordinator's clock: the replica's start when it
        // took the request.
        answer.timings_ms.total = retrieved.started.elapsed().as_secs_f64() * 1000.0;
        answer.cluster = Some(served(Some(node), failed));
        Ok(answer)
    }

    /// Nodes, collections, shards, replicas and their lag.
    pub async fn status(&self) -> Result<ClusterStatus> {
        let nodes = self.nodes().await?;
        let mut collections = Vec::new();
        for name in keys(&self.colls).await? {
            let Some(info) = self.collection(&name).await? else {
                continue;
            };
            let mut shard_status = Vec::new();
            let mut documents = 0;
            let mut under = Vec::new();
            let snapshots = self
                .js
                .get_object_store(crate::snapshot::SNAPSHOTS_BUCKET)
                .await
                .ok();
            for shard in 0..info.shards {
                let sname = stream_name(&info.name, shard);
                let (last_seq, first_seq, stream_replicas) = match self.js.get_stream(&sname).await
                {
                    Ok(mut st) => match st.info().await {
                        Ok(i) => (
                            i.state.last_sequence,
                            i.state.first_sequence,
                            i.config.num_replicas,
                        ),
                        Err(_) => (0, 0, 0),
                    },
                    Err(_) => (0, 0, 0),
                };
                let snapshot_seq = match &snapshots {
                    Some(store) => crate::snapshot::latest(store, &info.name, shard).await,
                    None => None,
                };
                let assigned = info
                    .assignment
                    .get(shard as usize)
                    .cloned()
                    .unwrap_or_default();
                let key = format!("{}/{shard}", info.name);
                let replicas: Vec<ReplicaStatus> = assigned
                    .iter()
                    .map(|n| {
                        let node = nodes.iter().find(|x| &x.name == n);
                        let st = node.and_then(|x| x.shards.get(&key));
                        ReplicaStatus {
                            node: n.clone(),
                            live: node.is_some(),
                            applied: st.map(|s| s.applied),
                            lag: st.map(|s| last_seq.saturating_sub(s.applied)),
                            serving: st.is_some_and(|s| s.serving),
                            documents: st.map(|s| s.documents),
                            chunks: st.map(|s| s.chunks),
                            error: st.and_then(|s| s.error.clone()),
                        }
                    })
                    .collect();
                let live_replicas = replicas.iter().filter(|r| r.live).count();
                if live_replicas < info.replicas as usize {
                    under.push(shard);
                }
                documents += replicas
                    .iter()
                    .filter(|r| r.live)
                    .max_by_key(|r| r.applied)
                    .and_then(|r| r.documents)
                    .unwrap_or(0);
                shard_status.push(ShardStatus {
                    shard,
                    stream: sname,
                    last_seq,
                    first_seq,
                    snapshot_seq,
                    stream_replicas,
                    replicas,
                    live_replicas,
                });
            }
            collections.push(CollectionStatus {
                name: info.name,
                shards: info.shards,
                replicas: info.replicas,
                embed_model: info.embed_model,
                dim: info.dim,
                documents,
                under_replicated: under,
                shard_status,
            });
        }
        Ok(ClusterStatus {
            nats_servers: self.nats_servers(),
            nodes,
            collections,
        })
    }
}

/// Ask one shard's queue group, retrying once (after 100 ms) when no
/// replica answers within `timeout` or `decode` rejects the answer (it logs
/// why); `None` when both attempts fail.
async fn request_shard<T>(
    client: &async_nats::Client,
    subject: String,
    body: bytes::Bytes,
    timeout: Duration,
    shard: u32,
    decode: impl Fn(&[u8]) -> Option<T>,
) -> Option<T> {
    for attempt in 0..2 {
        match tokio::time::timeout(timeout, client.request(subject.clone(), body.clone())).await {
            Ok(Ok(msg)) => {
                if let Some(answer) = decode(&msg.payload) {
                    return Some(answer);
                }
            }
            Ok(Err(e)) => tracing::debug!(shard, attempt, "shard request: {e}"),
            Err(_) => tracing::warn!(shard, attempt, "shard did not answer in {timeout:?}"),
        }
        if attempt == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    None
}
