//! The collection boundary: what the CLI and the server drive, whether the
//! collection is local (one [`Engine`] on this machine) or a cluster's
//! (sharded and replicated over NATS; `cairn_cluster::ClusterCollection`).
//!
//! Both give the same types: an [`IngestReport`] (a cluster's also says
//! what its shard logs acknowledged, [`LogReport`]), [`Hit`]s, one
//! [`Answer`] (a cluster's says which shards and which generation replica
//! served it), [`DocMeta`] and the feedback log's records.

use crate::{
    Answer, AskOptions, Engine, EngineError, IngestOptions, IngestReport, Result, Searcher,
};
use cairn_core::config::Config;
use cairn_core::{DocId, Hit, Progress, SearchMode, Seq};
use cairn_generate::{ChatMessage, Generator, TokenSink};
use cairn_models::SentenceEncoder;
use cairn_store::{AnswerRecord, DocMeta, FeedbackRecord, Rating};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Which collections a caller may touch (an API key's scope on the server
/// and on `/mcp`; everything for the CLI and MCP over stdio).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    /// Only these collections.
    Only(Vec<String>),
}

impl Scope {
    pub fn allows(&self, collection: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Only(c) => c.iter().any(|c| c == collection),
        }
    }
}

/// A collection's size, as listings show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub name: String,
    pub documents: u64,
    pub chunks: u64,
    pub vectors: u64,
    pub embed_model: String,
}

/// One document accepted by a shard's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub doc: String,
    pub shard: u32,
    pub seq: Seq,
    /// The log had already accepted this entry (a retry of the same
    /// publish, which JetStream deduplicates).
    pub duplicate: bool,
}

/// A document that could not be published, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub doc: String,
    pub reason: String,
}

/// What a cluster's shard logs acknowledged in an ingest (flattened into
/// the [`IngestReport`]'s JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogReport {
    pub collection: String,
    pub shards: u32,
    pub replicas: u32,
    /// Log entries acknowledged (documents and deletions).
    pub published: usize,
    /// Entries the logs had already seen (same path and content).
    pub duplicates: usize,
    /// Chunks published.
    pub chunks: u64,
    /// Entries per shard.
    pub per_shard: Vec<u64>,
    pub documents: Vec<Published>,
    pub rejected: Vec<Rejected>,
}

/// One passage of a document: its chunk, span and heading path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassageSpan {
    pub chunk: cairn_core::ChunkId,
    /// Character offsets in the document's text.
    pub start: u64,
    pub end: u64,
    pub heading: String,
}

/// A document's extracted text (the text its spans index) and its
/// passages, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentText {
    /// Display path.
    pub doc: String,
    /// Canonical path (the catalog's key).
    pub path: String,
    pub format: String,
    pub text: String,
    pub passages: Vec<PassageSpan>,
}

/// Of `items` (documents, or documents with where they are), the one
/// `doc` names: its canonical path, else its display path when that names
/// one document only.
pub fn pick_document<'a, T>(
    doc: &str,
    items: &'a [T],
    meta: impl Fn(&T) -> &DocMeta,
) -> Result<&'a T> {
    if let Some(d) = items.iter().find(|d| meta(d).path == doc) {
        return Ok(d);
    }
    let same: Vec<&T> = items.iter().filter(|d| meta(d).doc == doc).collect();
    match same[..] {
        [] => Err(EngineError::NotFound(format!("document `{doc}`"))),
        [one] => Ok(one),
        _ => {
            let paths: Vec<&str> = same.iter().map(|d| meta(d).path.as_str()).collect();
            Err(EngineError::Invalid(format!(
                "doc: `{doc}` names {} documents ({}): give its full path",
                same.len(),
                paths.join(", ")
            )))
        }
    }
}

/// One collection, local or clustered: ingest, remove, search, answer,
/// status and the feedback log. Calls block (a cluster's run on its own
/// async runtime): the server calls them on blocking threads.
pub trait Collection: Searcher + Send + Sync {
    fn name(&self) -> &str;

    /// Counts for listings.
    fn summary(&self) -> Result<Summary>;

    /// Every document. A cluster's ids are unique across its shards.
    fn documents(&self) -> Result<Vec<DocMeta>>;

    /// A document's text and passages, by its canonical or display path
    /// (what citations and hits name; see [`pick_document`]).
    fn document_text(&self, doc: &str) -> Result<DocumentText>;

    /// Of `files`, those the collection does not hold as they are now (new,
    /// or another size or modification time).
    fn changed_files(&self, files: &[PathBuf]) -> Result<Vec<PathBuf>> {
        let known: HashMap<String, (u64, i64)> = self
            .documents()?
            .into_iter()
            .map(|d| (d.path, (d.size, d.mtime_ns)))
            .collect();
        Ok(files
            .iter()
            .filter(|f| {
                let now = std::fs::metadata(f)
                    .ok()
                    .map(|m| (m.len(), cairn_ingest::mtime_ns(&m)));
                now.is_none() || known.get(&*f.to_string_lossy()).copied() != now
            })
            .cloned()
            .collect())
    }

    /// The one ingest pipeline (walk → diff against what is known → load →
    /// chunk → embed → the catalog, or the shards' logs), with prune and
    /// cancel.
    fn ingest(
        &self,
        roots: &[PathBuf],
        opts: &IngestOptions,
        progress: &dyn Progress,
    ) -> Result<IngestReport>;

    /// Remove documents: an exact file path, everything under a directory,
    /// or documents whose display path equals `target`. Returns the display
    /// paths removed.
    fn remove(&self, target: &str, progress: &dyn Progress) -> Result<Vec<String>>;

    /// Remove one document by the id [`Collection::documents`] gives.
    fn remove_document(&self, id: DocId, progress: &dyn Progress) -> Result<DocMeta>;

    /// Answer a question (with earlier turns of a conversation), streaming
    /// the text into `sink`. `opts.extractive` answers with the sources'
    /// own sentences, without a generator.
    fn ask(
        &self,
        question: &str,
        history: &[ChatMessage],
        opts: &AskOptions,
        sink: &mut dyn TokenSink,
    ) -> Result<Answer>;

    /// The model that writes answers (`None`: extractive answers only).
    fn generator_name(&self) -> Option<String>;

    /// Log an answer under `id`, so that feedback can refer to it.
    fn record_answer(&self, id: &str, question: &str, answer: &Answer) -> Result<()>;

    /// Whether `id` names an answer logged in this collection.
    fn has_answer(&self, id: &str) -> Result<bool>;

    /// Store a rating of a logged answer; returns the feedback id.
    fn add_feedback(
        &self,
        answer_id: &str,
        rating: Rating,
        comment: Option<&str>,
        helpful_citations: &[usize],
    ) -> Result<i64>;

    /// Feedback, newest first.
    fn feedback(&self, limit: usize) -> Result<Vec<FeedbackRecord>>;

    /// A logged answer by its id, with its citations and retrieval scores.
    fn answer(&self, id: &str) -> Result<Option<AnswerRecord>>;

    /// The newest logged answer (what `cairn feedback --last` rates).
    fn last_answer(&self) -> Result<Option<AnswerRecord>>;

    /// The texts of the chunks among `ids` the collection still holds (what
    /// feedback export puts in prompts and retrieval examples).
    fn passages(&self, ids: &[u64]) -> Result<HashMap<u64, String>>;
}

/// The collections a server (or a command) can reach: the ones in a local
/// data directory, or a cluster's.
pub trait Collections: Send + Sync {
    /// Names, sorted.
    fn names(&self) -> Result<Vec<String>>;

    /// A collection, opened on first use and kept open; with `create`, a
    /// missing one is created. A missing one is [`EngineError::NoCollection`].
    fn open(&self, name: &str, create: bool) -> Result<Arc<dyn Collection>>;

    /// Close and delete a collection with everything in it.
    fn delete(&self, name: &str) -> Result<()>;

    /// The collections open now.
    fn opened(&self) -> Vec<Arc<dyn Collection>>;

    /// Close the collections unused for `idle` or longer that nobody holds
    /// now (no request, no job); their names. Reopened on the next use.
    fn close_idle(&self, idle: std::time::Duration) -> Vec<String> {
        let _ = idle;
        Vec::new()
    }

    /// What answers come from, for listings ("llama.cpp SmolLM2…", or the
    /// cluster's generation replicas).
    fn describe(&self) -> String;
}

/// A collection on this machine: an [`Engine`] and the generator that
/// answers from it (none: extractive answers only).
pub struct LocalCollection {
    engine: Engine,
    generator: Option<Arc<dyn Generator>>,
}

impl LocalCollection {
    /// `critic.kind = "llm"` judges with `generator`, so one model is loaded
    /// once.
    pub fn new(engine: Engine, generator: Option<Arc<dyn Generator>>) -> LocalCollection {
        let engine = match &generator {
            Some(g) => engine.attach_generator(g),
            None => engine,
        };
        LocalCollection { engine, generator }
    }

    /// The engine, for what only a local collection has (index rebuilds,
    /// calibration, BEIR runs, status details).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

impl Searcher for LocalCollection {
    fn search(&self, query: &str, k: usize, mode: SearchMode) -> Result<Vec<Hit>> {
        self.engine.search(query, k, mode)
    }
}

impl Collection for LocalCollection {
    fn name(&self) -> &str {
        &self.engine.config().collection
    }

    fn summary(&self) -> Result<Summary> {
        let s = self.engine.status()?;
        Ok(Summary {
            name: s.collection,
            documents: s.documents,
            chunks: s.chunks,
            vectors: s.vectors as u64,
            embed_model: s.embed_model,
        })
    }

    fn documents(&self) -> Result<Vec<DocMeta>> {
        self.engine.documents()
    }

    fn changed_files(&self, files: &[PathBuf]) -> Result<Vec<PathBuf>> {
        self.engine.changed_files(files)
    }

    fn document_text(&self, doc: &str) -> Result<DocumentText> {
        self.engine.document_text(doc)
    }

    fn ingest(
        &self,
        roots: &[PathBuf],
        opts: &IngestOptions,
        progress: &dyn Progress,
    ) -> Result<IngestReport> {
        self.engine.ingest(roots, opts, progress)
    }

    fn remove(&self, target: &str, progress: &dyn Progress) -> Result<Vec<String>> {
        self.engine.remove(target, progress)
    }

    fn remove_document(&self, id: DocId, progress: &dyn Progress) -> Result<DocMeta> {
        self.engine.remove_document(id, progress)
    }

    fn ask(
        &self,
        question: &str,
        history: &[ChatMessage],
        opts: &AskOptions,
        sink: &mut dyn TokenSink,
    ) -> Result<Answer> {
        match (&self.generator, opts.extractive) {
            (_, true) => self.engine.ask_extractive(question, history, opts),
            (Some(g), false) => self.engine.ask(question, history, g.as_ref(), opts, sink),
            (None, false) => Err(EngineError::Unavailable(
                "no generator is loaded: ask for an extractive answer, or configure generate.model"
                    .into(),
            )),
        }
    }

    fn generator_name(&self) -> Option<String> {
        self.generator.as_ref().map(|g| g.model_name().to_string())
    }

    fn record_answer(&self, id: &str, question: &str, answer: &Answer) -> Result<()> {
        self.engine.record_answer(id, question, answer)
    }

    fn has_answer(&self, id: &str) -> Result<bool> {
        self.engine.has_answer(id)
    }

    fn add_feedback(
        &self,
        answer_id: &str,
        rating: Rating,
        comment: Option<&str>,
        helpful_citations: &[usize],
    ) -> Result<i64> {
        self.engine
            .add_feedback(answer_id, rating, comment, helpful_citations)
    }

    fn feedback(&self, limit: usize) -> Result<Vec<FeedbackRecord>> {
        self.engine.feedback(limit)
    }

    fn answer(&self, id: &str) -> Result<Option<AnswerRecord>> {
        self.engine.logged_answer(id)
    }

    fn last_answer(&self) -> Result<Option<AnswerRecord>> {
        self.engine.last_answer()
    }

    fn passages(&self, ids: &[u64]) -> Result<HashMap<u64, String>> {
        self.engine.passages(ids)
    }
}

/// The collections of a local data directory, opened for writing (each
/// holds its lock while open) with one shared embedding model and
/// generator.
pub struct LocalCollections {
    cfg: Config,
    embedder: Arc<dyn SentenceEncoder>,
    generator: Option<Arc<dyn Generator>>,
    /// The open collections, with when each was last handed out.
    open: Mutex<HashMap<String, (Arc<LocalCollection>, std::time::Instant)>>,
    /// Opening and deleting are serialised.
    opening: Mutex<()>,
}

impl LocalCollections {
    pub fn new(
        cfg: Config,
        embedder: Arc<dyn SentenceEncoder>,
        generator: Option<Arc<dyn Generator>>,
    ) -> LocalCollections {
        LocalCollections {
            cfg,
            embedder,
            generator,
            open: Mutex::new(HashMap::new()),
            opening: Mutex::new(()),
        }
    }

    fn exists(&self, name: &str) -> bool {
        crate::collection_dir(&self.cfg.data_dir(), name)
            .join("catalog.sqlite")
            .is_file()
    }

    fn cached(&self, name: &str) -> Option<Arc<LocalCollection>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (c, used) = open.get_mut(name)?;
        *used = std::time::Instant::now();
        Some(c.clone())
    }
}

fn check_name(name: &str) -> Result<()> {
    cairn_core::config::validate_collection_name(name)
        .map_err(|e| EngineError::Invalid(format!("collection name: {e}")))
}

impl Collections for LocalCollections {
    fn names(&self) -> Result<Vec<String>> {
        Ok(crate::list_collections(&self.cfg.data_dir()))
    }

    fn open(&self, name: &str, create: bool) -> Result<Arc<dyn Collection>> {
        check_name(name)?;
        if let Some(c) = self.cached(name) {
            return Ok(c);
        }
        let _g = self.opening.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = self.cached(name) {
            return Ok(c);
        }
        if !create && !self.exists(name) {
            return Err(EngineError::NoCollection(name.to_string()));
        }
        let mut cfg = self.cfg.clone();
        cfg.collection = name.to_string();
        let engine =
            Engine::open_with_embedder(&cfg, self.embedder.clone(), &cairn_core::NoProgress)?;
        let c = Arc::new(LocalCollection::new(engine, self.generator.clone()));
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), (c.clone(), std::time::Instant::now()));
        Ok(c)
    }

    fn delete(&self, name: &str) -> Result<()> {
        check_name(name)?;
        let _g = self.opening.lock().unwrap_or_else(|p| p.into_inner());
        if !self.exists(name) {
            return Err(EngineError::NoCollection(name.to_string()));
        }
        // Close it (its lock goes with the engine) before deleting.
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        let dir = crate::collection_dir(&self.cfg.data_dir(), name);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(EngineError::Io { path: dir, source }),
        }
    }

    fn opened(&self) -> Vec<Arc<dyn Collection>> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<(String, Arc<dyn Collection>)> = open
            .iter()
            .map(|(k, (c, _))| (k.clone(), c.clone() as Arc<dyn Collection>))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.into_iter().map(|(_, c)| c).collect()
    }

    fn close_idle(&self, idle: std::time::Duration) -> Vec<String> {
        let _g = self.opening.lock().unwrap_or_else(|p| p.into_inner());
        let closing: Vec<(String, Arc<LocalCollection>)> = {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            // Handed out only under this lock (`cached`): a count of one is
            // the map's own reference, and nobody can take another now.
            let names: Vec<String> = open
                .iter()
                .filter(|(_, (c, used))| used.elapsed() >= idle && Arc::strong_count(c) == 1)
                .map(|(n, _)| n.clone())
                .collect();
            names
                .into_iter()
                .filter_map(|n| open.remove(&n).map(|(c, _)| (n, c)))
                .collect()
        };
        // Dropped outside the map's lock: closing saves the indexes.
        closing
            .into_iter()
            .map(|(name, c)| {
                drop(c);
                tracing::info!(collection = %name, "closed (idle)");
                name
            })
            .collect()
    }

    fn describe(&self) -> String {
        match &self.generator {
            Some(g) => format!("generator {}", g.model_name()),
            None => "extractive answers".to_string(),
        }
    }
}
