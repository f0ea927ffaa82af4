//! A cluster's collections behind the collection boundary
//! ([`cairn_engine::Collection`]): what `cairn --cluster URL …` and
//! `cairn --cluster URL serve` drive, exactly as they drive a local
//! collection.
//!
//! The coordinator (this process) embeds queries and documents once; the
//! shards' logs are the sink of the one ingest pipeline; searches are
//! scattered to every shard and fused here; answers are generated on a
//! free generation replica from the passages gathered here (extractive
//! answers are made here, with the configured critic). The feedback log is
//! a KV bucket, `cairn-feedback`, so that every coordinator sees it.
//!
//! Calls block on the runtime handle given at connection: call them from a
//! thread that is not one of its workers (the server's blocking threads,
//! the CLI's main thread).

use crate::merge::Fusion;
use crate::node::{bucket, keys, replicas_for};
use crate::wire::CollectionInfo;
use crate::{Cluster, ClusterError};
use async_nats::jetstream::kv;
use cairn_core::config::Config;
use cairn_core::op::Op;
use cairn_core::{Critic, DocId, Hit, Progress, SearchMode};
use cairn_engine::{
    Answer, AnswerRecord, AskOptions, Collection, Collections, DocMeta, EngineError,
    FeedbackRecord, IngestOptions, IngestReport, LogReport, Preparer, Rating, Retrieved, Searcher,
    Sink, Summary,
};
use cairn_generate::{ChatMessage, Flow, TokenSink};
use cairn_models::SentenceEncoder;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;

type Result<T, E = EngineError> = std::result::Result<T, E>;

/// The KV bucket of answers and ratings.
pub const FEEDBACK_BUCKET: &str = "cairn-feedback";

/// What every collection of one connection shares.
struct Shared {
    rt: Handle,
    cluster: Cluster,
    cfg: Config,
    embedder: Arc<dyn SentenceEncoder>,
    prep: Preparer,
    fusion: Fusion,
    feedback: kv::Store,
    /// The critic of extractive answers, loaded when first needed.
    critic: OnceLock<std::result::Result<Arc<dyn Critic>, String>>,
}

impl Shared {
    fn block<T>(
        &self,
        f: impl std::future::Future<Output = crate::Result<T>>,
    ) -> Result<T, EngineError> {
        self.rt.block_on(f).map_err(EngineError::from)
    }

    fn critic(&self) -> Result<Arc<dyn Critic>> {
        self.critic
            .get_or_init(|| {
                if self.cfg.critic.kind == "llm" {
                    return Err("critic.kind = \"llm\" judges with a generator, and a cluster's generators run on its nodes: use the embedding, late-interaction or a cross-encoder critic for extractive answers on a cluster".into());
                }
                cairn_engine::load_critic(&self.cfg, self.embedder.clone())
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(EngineError::Invalid)
    }
}

/// A cluster's collections, reached through one NATS connection.
pub struct ClusterCollections {
    s: Arc<Shared>,
    url: String,
    open: Mutex<HashMap<String, Arc<ClusterCollection>>>,
}

impl ClusterCollections {
    /// Connect to the cluster at `url` (comma-separated URLs) on the runtime
    /// `rt`, with the configuration's timeouts; `embedder` embeds documents
    /// and queries here.
    pub fn connect(
        cfg: &Config,
        url: &str,
        embedder: Arc<dyn SentenceEncoder>,
        rt: Handle,
    ) -> Result<ClusterCollections> {
        let (cluster, feedback) = rt
            .block_on(async {
                let mut c = Cluster::connect(url).await?;
                c.shard_timeout = Duration::from_millis(cfg.cluster.shard_timeout_ms);
                c.generation_idle = Duration::from_millis(cfg.cluster.generation_idle_ms);
                let replicas = replicas_for(&c.client);
                let fb = bucket(c.jetstream(), FEEDBACK_BUCKET, Duration::ZERO, replicas).await?;
                Ok::<_, ClusterError>((c, fb))
            })
            .map_err(EngineError::from)?;
        let prep = Preparer::new(cfg, embedder.clone())?;
        Ok(ClusterCollections {
            s: Arc::new(Shared {
                rt,
                cluster,
                cfg: cfg.clone(),
                embedder,
                prep,
                fusion: Fusion::from_config(&cfg.search),
                feedback,
                critic: OnceLock::new(),
            }),
            url: url.to_string(),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// The cluster connection (for `cluster status` and `collection create`).
    pub fn cluster(&self) -> &Cluster {
        &self.s.cluster
    }

    /// The collection, typed (with what only a cluster's has).
    pub fn collection(&self, name: &str, create: bool) -> Result<Arc<ClusterCollection>> {
        if let Some(c) = self.cached(name) {
            return Ok(c);
        }
        let s = &self.s;
        let info = s.block(s.cluster.open_collection(
            name,
            s.embedder.model_id(),
            s.embedder.dim(),
            create,
        ))?;
        let c = Arc::new(ClusterCollection {
            s: self.s.clone(),
            info,
            reranker: Mutex::default(),
        });
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), c.clone());
        Ok(c)
    }

    fn cached(&self, name: &str) -> Option<Arc<ClusterCollection>> {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }
}

impl Collections for ClusterCollections {
    fn names(&self) -> Result<Vec<String>> {
        let s = &self.s;
        let mut names = s.block(keys(&s.cluster.colls))?;
        names.sort();
        Ok(names)
    }

    fn open(&self, name: &str, create: bool) -> Result<Arc<dyn Collection>> {
        cairn_core::config::validate_collection_name(name)
            .map_err(|e| EngineError::Invalid(format!("collection name: {e}")))?;
        Ok(self.collection(name, create)?)
    }

    fn delete(&self, name: &str) -> Result<()> {
        Err(EngineError::Unsupported(format!(
            "deleting the cluster collection `{name}` is not supported: its shard logs and replicas stay (remove its documents instead)"
        )))
    }

    fn opened(&self) -> Vec<Arc<dyn Collection>> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = open.values().cloned().collect();
        v.sort_by(|a, b| a.info.name.cmp(&b.info.name));
        v.into_iter().map(|c| c as Arc<dyn Collection>).collect()
    }

    fn describe(&self) -> String {
        format!("the cluster at {}", self.url)
    }
}

/// One collection of a cluster.
pub struct ClusterCollection {
    s: Arc<Shared>,
    info: CollectionInfo,
    /// The reranker the collection learned, as last fetched.
    reranker: Mutex<RerankerSlot>,
}

/// See [`ClusterCollection::reranker`].
#[derive(Default)]
struct RerankerSlot {
    checked: Option<Instant>,
    version: u32,
    critic: Option<Arc<dyn Critic>>,
}

/// An answer as the feedback bucket keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AnswerEntry {
    question: String,
    answer: String,
    model: String,
    retrieved: Vec<u64>,
    created_at: String,
}

static FEEDBACK_IDS: AtomicU64 = AtomicU64::new(0);

/// What a replica streams, on its way to the caller's thread.
enum Streamed {
    Piece(String),
    Restart(String),
}

/// The runtime side of an answer's stream: pieces to the caller's thread,
/// stopping once the caller's sink asked to.
struct ToCaller {
    tx: std::sync::mpsc::Sender<Streamed>,
    stop: Arc<AtomicBool>,
}

impl TokenSink for ToCaller {
    fn piece(&mut self, text: &str) -> Flow {
        if self.stop.load(Ordering::SeqCst)
            || self.tx.send(Streamed::Piece(text.to_string())).is_err()
        {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    fn restart(&mut self, why: &str) {
        let _ = self.tx.send(Streamed::Restart(why.to_string()));
    }
}

impl ClusterCollection {
    /// The collection's shape and shard assignment.
    pub fn info(&self) -> &CollectionInfo {
        &self.info
    }

    /// A search with which shards answered (what `search --json` shows on
    /// a cluster).
    pub fn gather(&self, query: &str, k: usize, mode: SearchMode) -> Result<crate::SearchResult> {
        let vector = match mode {
            SearchMode::Bm25 => None,
            _ => Some(self.s.embedder.embed_query(query)?),
        };
        self.ranked(query, vector.as_deref(), k, mode)
    }

    /// The fused top `k` across shards; with `search.rerank`, the top
    /// `search.rerank_depth` fused reordered by [`Self::reranker`] and cut
    /// to `k`, as a local collection ranks.
    fn ranked(
        &self,
        query: &str,
        vector: Option<&[f32]>,
        k: usize,
        mode: SearchMode,
    ) -> Result<crate::SearchResult> {
        let rerank = self.s.cfg.search.rerank;
        let n = if rerank {
            self.s.cfg.search.rerank_depth.max(k)
        } else {
            k
        };
        let mut r = self.s.block(self.s.cluster.search(
            &self.info,
            query,
            vector,
            n,
            mode,
            &self.s.fusion,
        ))?;
        if rerank && !r.hits.is_empty() {
            let critic = self.reranker()?;
            let texts: Vec<std::borrow::Cow<'_, str>> = r
                .hits
                .iter()
                .map(|h| cairn_engine::critic_text(critic.as_ref(), &h.hit))
                .collect();
            let texts: Vec<&str> = texts.iter().map(|t| t.as_ref()).collect();
            let order = cairn_engine::rerank_order(critic.as_ref(), query, &texts)?;
            let mut hits: Vec<Option<crate::merge::ClusterHit>> =
                std::mem::take(&mut r.hits).into_iter().map(Some).collect();
            r.hits = order
                .into_iter()
                .take(k)
                .enumerate()
                .filter_map(|(rank, (i, p))| {
                    let mut h = hits[i].take()?;
                    h.hit.rank = rank + 1;
                    h.hit.score = p;
                    Some(h)
                })
                .collect();
        }
        Ok(r)
    }

    /// What reranks this collection's searches: a reranking critic the
    /// configuration names (`critic.kind = "cross-encoder"` or
    /// `"late-interaction"`, [`cairn_engine::critic_reranks`]); else the
    /// reranker the collection learned on the cluster (`cairn improve`),
    /// fetched into `<data>/learned/<name>/reranker/` and loaded again when
    /// a newer version is published (checked at most every 2 seconds);
    /// else the configured critic. As a local collection chooses.
    fn reranker(&self) -> Result<Arc<dyn Critic>> {
        if cairn_engine::critic_reranks(&self.s.cfg) {
            return self.s.critic();
        }
        let mut slot = self.reranker.lock().unwrap_or_else(|p| p.into_inner());
        if slot
            .checked
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(2))
        {
            let dir = crate::learned::learned_dir(&self.s.cfg.data_dir(), &self.info.name);
            let only = [cairn_engine::RERANKER_DIR];
            let version =
                self.s
                    .block(self.s.cluster.sync_learned(&self.info.name, &dir, &only))?;
            if slot.checked.is_none() || version != slot.version {
                let weights = dir.join(cairn_engine::RERANKER_DIR);
                slot.critic = if version > 0 && weights.join("model.safetensors").is_file() {
                    tracing::info!(path = %weights.display(), version, "reranker loaded");
                    Some(cairn_engine::load_installed_reranker(
                        &self.s.cfg,
                        &weights,
                    )?)
                } else {
                    None
                };
                slot.version = version;
            }
            slot.checked = Some(Instant::now());
        }
        match &slot.critic {
            Some(c) => Ok(c.clone()),
            None => self.s.critic(),
        }
    }

    /// Every document with the shard that holds it, all shards answering.
    fn listed(&self) -> Result<Vec<(u32, DocMeta)>> {
        let listed = self.s.block(self.s.cluster.documents(&self.info))?;
        if !listed.missing_shards.is_empty() {
            return Err(EngineError::Unavailable(format!(
                "no replica of shard(s) {:?} of `{}` answered with its documents; try again when the nodes holding them are back",
                listed.missing_shards, self.info.name
            )));
        }
        Ok(listed.listed)
    }

    /// A shard's document id as the collection's: unique across shards.
    fn global_id(&self, shard: u32, id: DocId) -> DocId {
        id * self.info.shards as u64 + shard as u64
    }

    fn publish(
        &self,
        ops: Vec<Op>,
    ) -> Result<(Vec<cairn_engine::Published>, Vec<cairn_engine::Rejected>)> {
        self.s.block(self.s.cluster.publish(&self.info, ops))
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}.{kind}.{id}", self.info.name)
    }

    /// A logged answer (`None` for an id that names none, or that no
    /// answer id could be).
    fn answer_entry(&self, id: &str) -> Result<Option<AnswerEntry>> {
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Ok(None);
        }
        let key = self.key("answer", id);
        let store = &self.s.feedback;
        self.s.block(async {
            let v = store
                .get(&key)
                .await
                .map_err(|e| ClusterError::js(format!("reading {key}"), e))?;
            Ok(v.and_then(|b| serde_json::from_slice(&b).ok()))
        })
    }

    fn entries<T: for<'de> Deserialize<'de>>(&self, kind: &str) -> Result<Vec<(String, T)>> {
        let prefix = format!("{}.{kind}.", self.info.name);
        let store = &self.s.feedback;
        self.s.block(async {
            let mut out = Vec::new();
            for k in keys(store).await? {
                if !k.starts_with(&prefix) {
                    continue;
                }
                let v = store
                    .get(&k)
                    .await
                    .map_err(|e| ClusterError::js(format!("reading {k}"), e))?;
                if let Some(v) = v.and_then(|b| serde_json::from_slice::<T>(&b).ok()) {
                    out.push((k[prefix.len()..].to_string(), v));
                }
            }
            Ok(out)
        })
    }
}

impl Searcher for ClusterCollection {
    /// A search that misses a shard is an error, not a partial result: no
    /// answer or figure is made from part of a collection.
    fn search(&self, query: &str, k: usize, mode: SearchMode) -> Result<Vec<Hit>> {
        let r = self.gather(query, k, mode)?;
        if r.shards_ok < r.shards_total {
            return Err(EngineError::Unavailable(format!(
                "shard(s) {:?} of `{}` did not answer",
                r.missing_shards, self.info.name
            )));
        }
        Ok(r.hits.into_iter().map(|h| h.hit).collect())
    }
}

impl Collection for ClusterCollection {
    fn name(&self) -> &str {
        &self.info.name
    }

    fn summary(&self) -> Result<Summary> {
        let st = self.s.block(self.s.cluster.status())?;
        let c = st
            .collections
            .into_iter()
            .find(|c| c.name == self.info.name)
            .ok_or_else(|| EngineError::NoCollection(self.info.name.clone()))?;
        // Each shard counted once, at its most advanced live replica.
        let chunks: u64 = c
            .shard_status
            .iter()
            .filter_map(|s| {
                s.replicas
                    .iter()
                    .filter(|r| r.live)
                    .max_by_key(|r| r.applied)
                    .and_then(|r| r.chunks)
            })
            .sum();
        Ok(Summary {
            name: c.name,
            documents: c.documents,
            chunks,
            vectors: chunks,
            embed_model: c.embed_model,
        })
    }

    fn document_text(&self, doc: &str) -> Result<cairn_engine::DocumentText> {
        let listed = self.listed()?;
        let (shard, meta) = cairn_engine::pick_document(doc, &listed, |(_, d)| d)?;
        self.s
            .block(self.s.cluster.document_text(&self.info, *shard, &meta.path))
    }

    fn documents(&self) -> Result<Vec<DocMeta>> {
        let mut docs: Vec<DocMeta> = self
            .listed()?
            .into_iter()
            .map(|(shard, mut d)| {
                d.id = self.global_id(shard, d.id);
                d
            })
            .collect();
        docs.sort_by(|a, b| a.doc.cmp(&b.doc));
        Ok(docs)
    }

    fn ingest(
        &self,
        roots: &[PathBuf],
        opts: &IngestOptions,
        progress: &dyn Progress,
    ) -> Result<IngestReport> {
        let listed = self.s.block(self.s.cluster.documents(&self.info))?;
        if !listed.missing_shards.is_empty() {
            if opts.prune {
                return Err(EngineError::Unavailable(format!(
                    "no replica of shard(s) {:?} of `{}` answered with its documents, so nothing can be pruned safely; try again when the nodes holding them are back",
                    listed.missing_shards, self.info.name
                )));
            }
            tracing::warn!(
                "no replica of shard(s) {:?} answered; their files are published again (the replicas apply the same content idempotently)",
                listed.missing_shards
            );
        }
        let mut log = LogReport {
            collection: self.info.name.clone(),
            shards: self.info.shards,
            replicas: self.info.replicas,
            per_shard: vec![0; self.info.shards as usize],
            ..LogReport::default()
        };
        let mut publish = |ops: Vec<Op>| -> Result<()> {
            log.chunks += ops
                .iter()
                .map(|op| match op {
                    Op::Upsert { chunks, .. } => chunks.len() as u64,
                    _ => 0,
                })
                .sum::<u64>();
            let (p, r) = self.publish(ops)?;
            log.documents.extend(p);
            log.rejected.extend(r);
            Ok(())
        };
        let mut sink = Sink::Publish {
            known: &listed.documents,
            publish: &mut publish,
        };
        let mut report = self.s.prep.ingest(roots, opts, &mut sink, progress)?;
        for p in &log.documents {
            log.per_shard[p.shard as usize] += 1;
        }
        log.published = log.documents.len();
        log.duplicates = log.documents.iter().filter(|p| p.duplicate).count();
        report.log = Some(log);
        Ok(report)
    }

    fn remove(&self, target: &str, _progress: &dyn Progress) -> Result<Vec<String>> {
        let known: Vec<cairn_engine::KnownDocument> = self
            .listed()?
            .into_iter()
            .map(|(_, d)| cairn_engine::KnownDocument::from(d))
            .collect();
        let victims = cairn_engine::remove_targets(target, &known);
        if victims.is_empty() {
            return Err(EngineError::NotFound(format!(
                "{target} in the cluster's collection `{}`",
                self.info.name
            )));
        }
        let ops = victims
            .iter()
            .map(|d| Op::Delete {
                path: d.path.clone(),
            })
            .collect();
        let (_, rejected) = self.publish(ops)?;
        if let Some(r) = rejected.first() {
            return Err(EngineError::Unavailable(format!("{}: {}", r.doc, r.reason)));
        }
        Ok(victims.into_iter().map(|d| d.doc.clone()).collect())
    }

    fn remove_document(&self, id: DocId, _progress: &dyn Progress) -> Result<DocMeta> {
        let shards = self.info.shards as u64;
        let (shard, local) = ((id % shards) as u32, id / shards);
        let mut doc = self
            .listed()?
            .into_iter()
            .find(|(s, d)| *s == shard && d.id == local)
            .map(|(_, d)| d)
            .ok_or_else(|| EngineError::NotFound(format!("document id {id}")))?;
        let (_, rejected) = self.publish(vec![Op::Delete {
            path: doc.path.clone(),
        }])?;
        if let Some(r) = rejected.first() {
            return Err(EngineError::Unavailable(format!("{}: {}", r.doc, r.reason)));
        }
        doc.id = id;
        Ok(doc)
    }

    fn ask(
        &self,
        question: &str,
        history: &[ChatMessage],
        opts: &AskOptions,
        sink: &mut dyn TokenSink,
    ) -> Result<Answer> {
        if opts.crag {
            return Err(EngineError::Unsupported(
                "corrective retrieval (generate.crag, --crag) is not supported on a cluster yet: it needs a local collection".into(),
            ));
        }
        let question = cairn_engine::check_question(question)?;
        let started = Instant::now();
        let query = cairn_engine::retrieval_query(question, history);
        let t = Instant::now();
        let vector = self.s.embedder.embed_query(&query)?;
        let embed_ms = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        let found = self.ranked(&query, Some(&vector), opts.k, opts.mode)?;
        if found.shards_ok < found.shards_total {
            return Err(EngineError::Unavailable(format!(
                "shard(s) {:?} of `{}` did not answer; no answer is made from part of the collection",
                found.missing_shards, self.info.name
            )));
        }
        let retrieved = Retrieved {
            relevance: found.hits.iter().map(|h| h.cosine).collect(),
            hits: found.hits.into_iter().map(|h| h.hit).collect(),
            embed_ms,
            search_ms: t.elapsed().as_secs_f64() * 1000.0,
            started,
            judged: None,
        };
        let shards = (found.shards_ok, found.shards_total);
        if opts.extractive {
            let critic = self.s.critic()?;
            let mut a =
                cairn_engine::extractive_from_passages(question, retrieved, critic.as_ref(), opts)?;
            a.cluster = Some(cairn_engine::ClusterAnswer {
                shards_ok: shards.0,
                shards_total: shards.1,
                node: None,
                failed_replicas: vec![],
            });
            return Ok(a);
        }
        // The answer is generated on the runtime; its pieces come back over
        // a channel and reach `sink` on this thread, outside the runtime
        // (a sink may block: a terminal, an HTTP response's channel).
        let (tx, rx) = std::sync::mpsc::channel::<Streamed>();
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let s = self.s.clone();
            let (question, history, opts) = (question.to_string(), history.to_vec(), opts.clone());
            let name = self.info.name.clone();
            let mut to_caller = ToCaller {
                tx,
                stop: stop.clone(),
            };
            self.s.rt.spawn(async move {
                s.cluster
                    .answer(
                        &name,
                        &question,
                        &history,
                        retrieved,
                        shards,
                        &opts,
                        &mut to_caller,
                    )
                    .await
            })
        };
        for ev in rx {
            match ev {
                Streamed::Piece(t) => {
                    if sink.piece(&t) == Flow::Stop {
                        stop.store(true, Ordering::SeqCst);
                    }
                }
                Streamed::Restart(why) => sink.restart(&why),
            }
        }
        match self.s.rt.block_on(task) {
            Ok(r) => r.map_err(EngineError::from),
            Err(e) => Err(EngineError::Unavailable(format!(
                "the answering task failed: {e}"
            ))),
        }
    }

    fn generator_name(&self) -> Option<String> {
        let nodes = self.s.block(self.s.cluster.nodes()).ok()?;
        let mut llms: Vec<String> = nodes.into_iter().filter_map(|n| n.llm).collect();
        llms.sort();
        llms.dedup();
        (!llms.is_empty()).then(|| llms.join(", "))
    }

    fn record_answer(&self, id: &str, question: &str, answer: &Answer) -> Result<()> {
        let entry = AnswerEntry {
            question: question.to_string(),
            answer: answer.answer.clone(),
            model: answer.model.clone(),
            retrieved: answer.retrieved.iter().map(|h| h.chunk).collect(),
            created_at: cairn_core::time::now_rfc3339(),
        };
        let key = self.key("answer", id);
        let body = serde_json::to_vec(&entry).unwrap_or_default();
        let store = &self.s.feedback;
        self.s.block(async {
            store
                .put(&key, body.into())
                .await
                .map_err(|e| ClusterError::js(format!("logging answer {key}"), e))?;
            Ok(())
        })
    }

    fn has_answer(&self, id: &str) -> Result<bool> {
        Ok(self.answer_entry(id)?.is_some())
    }

    fn add_feedback(
        &self,
        answer_id: &str,
        rating: Rating,
        comment: Option<&str>,
        helpful_citations: &[usize],
    ) -> Result<i64> {
        let answer = self
            .answer_entry(answer_id)?
            .ok_or_else(|| EngineError::NotFound(format!("answer {answer_id}")))?;
        // Ids: milliseconds since the epoch and a counter, so that they
        // sort by time.
        let id = (crate::wire::now_ms() as i64) * 1000
            + (FEEDBACK_IDS.fetch_add(1, Ordering::SeqCst) % 1000) as i64;
        let rec = FeedbackRecord {
            id,
            answer_id: answer_id.to_string(),
            rating,
            comment: comment.map(str::to_string),
            helpful_citations: helpful_citations.to_vec(),
            question: answer.question,
            answer: answer.answer,
            model: answer.model,
            retrieved: answer.retrieved,
            created_at: cairn_core::time::now_rfc3339(),
        };
        let key = self.key("rating", &format!("{id:020}"));
        let body = serde_json::to_vec(&rec).unwrap_or_default();
        let store = &self.s.feedback;
        self.s.block(async {
            store
                .put(&key, body.into())
                .await
                .map_err(|e| ClusterError::js(format!("storing feedback {key}"), e))?;
            Ok(())
        })?;
        Ok(id)
    }

    fn feedback(&self, limit: usize) -> Result<Vec<FeedbackRecord>> {
        let mut all: Vec<FeedbackRecord> = self
            .entries::<FeedbackRecord>("rating")?
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        all.sort_by_key(|r| std::cmp::Reverse(r.id));
        all.truncate(limit);
        Ok(all)
    }

    fn answer(&self, _id: &str) -> Result<Option<AnswerRecord>> {
        Err(EngineError::Unsupported(
            "a cluster's feedback log keeps no citations: `cairn feedback --last/--answer` and `cairn feedback export` work on local collections; rate a cluster's answers through the API or the web UI".into(),
        ))
    }

    fn last_answer(&self) -> Result<Option<AnswerRecord>> {
        self.answer("")
    }

    fn passages(&self, _ids: &[u64]) -> Result<HashMap<u64, String>> {
        Err(EngineError::Unsupported(
            "a cluster does not look passages up by chunk id: `cairn feedback export` works on local collections".into(),
        ))
    }
}
