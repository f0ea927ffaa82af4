//! The engine: one collection's pipeline, ingest → embed → catalog → index →
//! retrieve, behind one façade that the CLI (and later the HTTP server and the
//! cluster node) drive.
//!
//! ```no_run
//! use cairn_core::{config::Config, NoProgress, SearchMode};
//! use cairn_engine::{Engine, IngestOptions};
//! let engine = Engine::open(&Config::default()).unwrap();
//! let report = engine.ingest(&["docs".into()], &IngestOptions::default(), &NoProgress).unwrap();
//! println!("{} files, {} chunks", report.files_seen, report.chunks_added);
//! for hit in engine.search("how do I rotate the WAL?", 5, SearchMode::Hybrid).unwrap() {
//!     println!("{:.3} {} {}", hit.score, hit.doc, hit.heading);
//! }
//! ```
//!
//! **Invariant:** every accepted document is in the catalog before `ingest`
//! returns; indexes are brought up to the catalog's sequence afterwards and
//! are rebuilt from it whenever they are missing or corrupt.
//!
//! **Invariant:** readers never wait for the writer. The catalog has one
//! writer connection (ingest, removals, the feedback log), one connection for
//! index catch-ups, and a pool of read-only connections for searches and
//! answers (SQLite WAL: a reader sees the last commit and is never blocked by
//! a write in progress); the indexes are searched concurrently with a
//! catch-up (see `cairn_index`).

mod adapter;
mod ask;
mod background;
mod cited;
mod collection;
mod devices;
mod feedback;
mod improve;
mod ingest;
mod synth;
mod watch;

pub use adapter::{
    train as train_adapter, AdapterExample, AdapterFigures, AdapterOptions, QueryAdapter,
    ADAPTER_FILE,
};
pub use ask::{
    answer_from_passages, check_question, extractive_from_passages, not_covered, retrieval_query,
    would_generate,
};
pub use ask::{Answer, AskOptions, ClusterAnswer, Extracted, Judged, Retrieved, Strategy, Timings};
pub use ask::{MAX_QUESTION_CHARS, NOT_COVERED};
pub use background::run_in_background;
pub use cairn_store::{AnswerRecord, DocMeta, FeedbackRecord, Rating};
pub use cited::{
    cite_sentence, feedback_cited_examples, score_answers, synthetic_example, AnswerScore,
    CitedExample, CitedOptions, Skipped as NotCited,
};
pub use collection::{
    pick_document, Collection, Collections, DocumentText, LocalCollection, LocalCollections,
    LogReport, PassageSpan, Published, Rejected, Scope, Summary,
};
pub use devices::{plan_stages, StagePlan};
pub use feedback::{
    export_examples, export_feedback, feedback_examples, feedback_stats, new_answer_id,
    ExportFormat, FeedbackStats, ModelStats, RatedAnswer,
};
pub use improve::{
    swap_in, Artefact, Decision, Event, Improvements, Round, Skipped, Unrecorded, IMPROVE_DIR,
};
pub use ingest::{
    remove_targets, IngestOptions, IngestReport, KnownDocument, Preparer, Sink, SkippedFile,
};
pub use synth::{
    clean_generated, heading_question, held_out_documents, synthesize, QuestionKind, Split,
    SynthExample, SynthOptions, SynthReport,
};
pub use watch::{watch, WatchBatch, WatchEvent, WatchOptions, MAX_NAMED};

use cairn_core::config::Config;
use cairn_core::{Hit, Progress, Scored, SearchMode, Seq};
use cairn_generate::Generator;
use cairn_index::{CatchUp, Indexes};
use cairn_models::{Device, SentenceEncoder};
use cairn_store::Catalog;
use std::borrow::Cow;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Errors of the engine, each naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Config(#[from] cairn_core::config::ConfigError),
    #[error(transparent)]
    Model(#[from] cairn_models::ModelError),
    #[error(transparent)]
    Store(#[from] cairn_store::StoreError),
    #[error(transparent)]
    Index(#[from] cairn_index::IndexError),
    #[error(transparent)]
    Ingest(#[from] cairn_ingest::IngestError),
    #[error("{0}")]
    Embed(#[from] cairn_core::EmbedError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("collection `{0}` does not exist (ingest into it first)")]
    NoCollection(String),
    /// Another process holds the collection for writing.
    #[error(
        "collection `{collection}` is in use by {holder}; run this again when it ends, or add --wait to wait for it"
    )]
    Busy { collection: String, holder: String },
    /// A part of the system that the operation needs did not answer (a
    /// cluster's shards, its log): try again when it is back.
    #[error("{0}")]
    Unavailable(String),
    /// A write to a collection opened for reading only.
    #[error("collection `{0}` is open for reading only here (searches and answers); writes go through the process that holds it")]
    ReadOnly(String),
    #[error("nothing in the catalog matches {0}")]
    NotFound(String),
    #[error(transparent)]
    Generate(#[from] cairn_generate::GenerateError),
    #[error(transparent)]
    Critic(#[from] cairn_critic::CriticError),
    /// The question cannot be asked (empty, too long): say so to the user.
    #[error("the question {0}")]
    Question(String),
    /// Another input is wrong (a collection name, an option): the message
    /// names it.
    #[error("{0}")]
    Invalid(String),
    /// Something this kind of collection cannot do (e.g. a cluster's
    /// collection asked to rebuild a local index).
    #[error("{0}")]
    Unsupported(String),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// What a caller can do about an [`EngineError`]: the categories the server
/// maps to HTTP status codes and a CLI to its advice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request or the configuration is wrong: fix it and ask again.
    InvalidInput,
    /// The collection, document or model asked for does not exist.
    NotFound,
    /// It clashes with the collection's state (another embedding model, a
    /// replica's collection, opened read-only).
    Conflict,
    /// Something it needs is busy or did not answer (another process holds
    /// the collection, an LLM server, a cluster's shards): try again later.
    Unavailable,
    /// Anything else: a bug, a corrupt file, a failed disk.
    Internal,
}

impl EngineError {
    /// The category of this error.
    pub fn kind(&self) -> ErrorKind {
        use cairn_generate::GenerateError as G;
        use cairn_store::StoreError as S;
        match self {
            EngineError::Config(_)
            | EngineError::Question(_)
            | EngineError::Invalid(_)
            | EngineError::Unsupported(_)
            | EngineError::Ingest(_) => ErrorKind::InvalidInput,
            EngineError::NoCollection(_) | EngineError::NotFound(_) => ErrorKind::NotFound,
            EngineError::Store(S::ModelMismatch { .. } | S::Origin { .. })
            | EngineError::ReadOnly(_)
            | EngineError::Index(cairn_index::IndexError::ReadOnly(_)) => ErrorKind::Conflict,
            EngineError::Store(S::BadOp { .. }) => ErrorKind::InvalidInput,
            EngineError::Busy { .. }
            | EngineError::Unavailable(_)
            | EngineError::Store(S::SeqGap { .. }) => ErrorKind::Unavailable,
            EngineError::Model(cairn_models::ModelError::NotInstalled { .. }) => {
                ErrorKind::NotFound
            }
            EngineError::Model(
                cairn_models::ModelError::BadDevice(_)
                | cairn_models::ModelError::NotCompiled { .. },
            ) => ErrorKind::InvalidInput,
            EngineError::Model(cairn_models::ModelError::DeviceUnavailable(_)) => {
                ErrorKind::Unavailable
            }
            EngineError::Generate(g) => match g {
                G::Invalid { .. } | G::PromptTooLong { .. } | G::Unsupported(_) => {
                    ErrorKind::InvalidInput
                }
                G::Unreachable { .. } | G::Http { .. } => ErrorKind::Unavailable,
                _ => ErrorKind::Internal,
            },
            _ => ErrorKind::Internal,
        }
    }
}

/// What `cairn index check` found ([`Engine::check`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    pub collection: String,
    /// The catalog's content, digested: equal digests, equal collections.
    pub content: cairn_store::ContentDigest,
    pub indexes: cairn_index::IndexCheck,
    /// The indexes match the catalog ([`cairn_index::IndexCheck::ok`]).
    pub ok: bool,
}

/// Where a collection lives under the data dir.
pub fn collection_dir(data_dir: &Path, collection: &str) -> PathBuf {
    data_dir.join("collections").join(collection)
}

/// The last sequence of the catalog in a collection directory, 0 when it
/// has none; read without opening the collection.
pub fn catalog_seq(dir: &Path) -> Result<Seq> {
    let db = dir.join("catalog.sqlite");
    if !db.is_file() {
        return Ok(0);
    }
    Ok(Catalog::open_reader(&db)?.last_seq()?)
}

/// The collections in a data dir.
pub fn list_collections(data_dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(data_dir.join("collections"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("catalog.sqlite").is_file())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    out.sort();
    out
}

/// Ranked passages for a query: what a local collection and a cluster's
/// collection both answer, so that retrieval evaluation runs on either.
pub trait Searcher {
    /// The top `k` passages for `query`, best first.
    fn search(&self, query: &str, k: usize, mode: SearchMode) -> Result<Vec<Hit>>;
}

impl Searcher for Engine {
    fn search(&self, query: &str, k: usize, mode: SearchMode) -> Result<Vec<Hit>> {
        Engine::search(self, query, k, mode)
    }
}

/// What [`Engine::apply_logged`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Entries that took a sequence number (skipped ones included).
    pub applied: usize,
    /// Entries refused and applied as no-ops: (sequence, why).
    pub skipped: Vec<(Seq, String)>,
}

/// Counts and sizes for `cairn status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub collection: String,
    pub dir: PathBuf,
    pub documents: u64,
    pub chunks: u64,
    pub seq: Seq,
    pub index_seq: Seq,
    pub vectors: usize,
    pub bm25_docs: u64,
    pub hnsw_bytes: usize,
    pub embed_model: String,
    pub dim: usize,
}

/// One collection, open for ingest and search.
pub struct Engine {
    cfg: Config,
    dir: PathBuf,
    /// The writer.
    catalog: Mutex<Catalog>,
    /// Reads for index catch-ups (one catch-up at a time).
    indexer: Mutex<Catalog>,
    /// Read-only connections for searches and answers.
    readers: Vec<Mutex<Catalog>>,
    next_reader: AtomicUsize,
    indexes: Indexes,
    embedder: Arc<dyn SentenceEncoder>,
    critic: Arc<dyn cairn_core::Critic>,
    prep: Preparer,
    /// The feedback log (its own file, written by readers too), opened on
    /// first use.
    feedback_log: Mutex<Option<cairn_store::FeedbackLog>>,
    /// The query adapter in the collection's directory, as last read, and
    /// that file's modification time (re-read when it changes).
    adapter: Mutex<AdapterSlot>,
    /// The reranker installed in the collection's directory, as last read,
    /// and its weights' modification time (re-read when it changes).
    reranker: Mutex<RerankerSlot>,
    /// The collection's lock, held by a writer; `None` when read-only.
    _lock: Option<File>,
}

/// The folder in a collection's directory that holds the reranker
/// `cairn train reranker` installed (a one-label
/// `BertForSequenceClassification` checkpoint with its ONNX graph).
pub const RERANKER_DIR: &str = "reranker";

/// The generator's LoRA adapter in a collection's directory, written by
/// `cairn train generator`, applied to every answer the embedded engine
/// generates for the collection.
pub const GENERATOR_ADAPTER: &str = "generator/lora.gguf";

/// The generator's LoRA adapter installed under `dir`
/// ([`GENERATOR_ADAPTER`]) when it was trained for `model` (the generator's
/// name); one trained for another model is left out with a warning, as is
/// one whose header cannot be read. A cluster's generation replica reads it
/// from where it keeps what a collection learned.
pub fn generator_adapter_in(dir: &Path, model: &str) -> Option<PathBuf> {
    let path = dir.join(GENERATOR_ADAPTER);
    if !path.exists() {
        return None;
    }
    match cairn_generate::gguf::read_info(&path) {
        Ok(info) => {
            let base = info.get_str("cairn.base_model").unwrap_or("");
            if base == model {
                Some(path)
            } else {
                tracing::warn!(
                    path = %path.display(),
                    "the generator's LoRA adapter was trained for `{base}`, not `{model}`: answering without it (train it again, or `cairn train generator --remove`)"
                );
                None
            }
        }
        Err(e) => {
            tracing::warn!("{e}: answering without the generator's LoRA adapter");
            None
        }
    }
}

/// The folder [`GENERATOR_ADAPTER`] is in, with the training report.
pub const GENERATOR_DIR: &str = "generator";

/// See [`Engine::installed_reranker`].
#[derive(Default)]
struct RerankerSlot {
    modified: Option<std::time::SystemTime>,
    critic: Option<Arc<dyn cairn_core::Critic>>,
}

/// See [`Engine::query_adapter`].
#[derive(Default)]
struct AdapterSlot {
    modified: Option<std::time::SystemTime>,
    adapter: Option<Arc<QueryAdapter>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("collection", &self.cfg.collection)
            .field("dir", &self.dir)
            .finish()
    }
}

/// The backend `embed.backend = "auto"` picks for `device`: candle on GPUs
/// (CUDA, Metal), ONNX Runtime everywhere else when it is compiled in (the
/// fastest CPU path, BENCHMARKS.md), else candle.
pub fn auto_backend(device: Device) -> &'static str {
    match device {
        Device::Cuda(_) | Device::Metal(_) => "candle",
        _ if cfg!(feature = "ort") => "onnx",
        _ => "candle",
    }
}

/// The critic the configuration names (`[critic] kind`):
/// - `embedding`: over the collection's embedding model;
/// - `cross-encoder`: the model at `critic.model` (a directory or an
///   installed model's name), on ONNX Runtime;
/// - `llm`: the generator as judge. The engine does not load generators, so
///   until [`Engine::attach_generator`] gives it one, judging fails with an
///   error that says so (never a silent fallback to another critic);
/// - `late-interaction`: the embedding model's token vectors (MaxSim), which
///   only the ONNX Runtime backend gives (another backend is an error here,
///   "late interaction needs the onnx backend").
pub fn load_critic(
    cfg: &Config,
    embedder: Arc<dyn SentenceEncoder>,
) -> Result<Arc<dyn cairn_core::Critic>> {
    let c = &cfg.critic;
    let relevance = c.calibration(cairn_core::Judgement::Relevance);
    let support = c.calibration(cairn_core::Judgement::Support);
    match c.kind.as_str() {
        "cross-encoder" => load_cross_encoder(cfg, relevance, support),
        "llm" => Ok(Arc::new(Unattached)),
        "late-interaction" => {
            if embedder.backend() != "onnx" {
                return Err(EngineError::Invalid(format!(
                    "critic.kind = \"late-interaction\": late interaction needs the onnx backend (the embedding model runs on {}; set embed.backend = \"onnx\")",
                    embedder.backend()
                )));
            }
            Ok(Arc::new(cairn_critic::LateInteractionCritic::new(
                embedder, relevance, support,
            )))
        }
        _ => Ok(Arc::new(cairn_critic::EmbeddingCritic::new(
            embedder, relevance, support,
        ))),
    }
}

/// The generator as judge, calibrated as `[critic]` says.
pub fn llm_critic(cfg: &Config, generator: Arc<dyn Generator>) -> Arc<dyn cairn_core::Critic> {
    Arc::new(cairn_generate::judge::GeneratorCritic::new(
        generator,
        cfg.critic.calibration(cairn_core::Judgement::Relevance),
        cfg.critic.calibration(cairn_core::Judgement::Support),
    ))
}

/// `critic.kind = "llm"` before a generator is attached.
struct Unattached;

impl cairn_core::Critic for Unattached {
    fn name(&self) -> &str {
        "llm"
    }
    fn raw(
        &self,
        _: cairn_core::Judgement,
        _: &[(&str, &str)],
    ) -> std::result::Result<Vec<f32>, cairn_core::CriticError> {
        Err(cairn_core::CriticError {
            critic: "llm".into(),
            reason:
                "critic.kind = \"llm\" judges with the generator, and this command has none loaded"
                    .into(),
        })
    }
    fn calibration(&self, _: cairn_core::Judgement) -> cairn_core::Calibration {
        cairn_core::Calibration { a: 1.0, b: 0.0 }
    }
}

#[cfg(feature = "ort")]
fn load_cross_encoder(
    cfg: &Config,
    relevance: cairn_core::Calibration,
    support: cairn_core::Calibration,
) -> Result<Arc<dyn cairn_core::Critic>> {
    let name = cfg.critic.model.as_deref().unwrap_or_default();
    let dir = cairn_models::registry::resolve(name, &cfg.models_dir())?;
    let opts = cairn_models::OnnxOptions {
        onnx_file: None,
        dylib: onnxruntime_dylib(cfg),
        threads: cfg.embed.threads,
        batch_size: cfg.embed.batch_size,
    };
    let device: Device =
        cfg.critic
            .device
            .parse()
            .map_err(|e| cairn_core::config::ConfigError::Field {
                field: "critic.device".into(),
                message: format!("{e}"),
            })?;
    let model = cairn_models::CrossEncoder::load_on(&dir, device, &opts)?;
    Ok(Arc::new(cairn_models::CrossEncoderCritic::new(
        model, relevance, support,
    )))
}

/// The text of `hit` that `critic` judges for relevance: the passage as it
/// was embedded (heading path, then text) for a critic that reads headings
/// ([`cairn_core::Critic::reads_heading`]), else its text.
pub fn critic_text<'a>(critic: &dyn cairn_core::Critic, hit: &'a Hit) -> Cow<'a, str> {
    if critic.reads_heading() {
        Cow::Owned(cairn_core::embedding_text(&hit.heading, &hit.text))
    } else {
        Cow::Borrowed(hit.text.as_str())
    }
}

/// Whether the configured critic reranks even where the collection has a
/// reranker of its own installed: a critic named for reranking (a
/// cross-encoder, late interaction).
pub fn critic_reranks(cfg: &Config) -> bool {
    matches!(
        cfg.critic.kind.as_str(),
        "cross-encoder" | "late-interaction"
    )
}

/// The critic's order of passages for `query`, best first: each passage's
/// index and relevance probability; equal probabilities keep the given
/// order. What reranking does, here and on a cluster's coordinator.
pub fn rerank_order(
    critic: &dyn cairn_core::Critic,
    query: &str,
    texts: &[&str],
) -> Result<Vec<(usize, f32)>> {
    let pairs: Vec<(&str, &str)> = texts.iter().map(|t| (query, *t)).collect();
    let probs = critic
        .score(cairn_core::Judgement::Relevance, &pairs)
        .map_err(cairn_critic::CriticError::from)?;
    let mut order: Vec<(usize, f32)> = probs.into_iter().enumerate().collect();
    order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(order)
}

/// The reranker in `dir` (see [`Engine::installed_reranker`]): a one-label
/// cross-encoder, its relevance the logistic of its logit.
#[cfg(feature = "ort")]
pub fn load_installed_reranker(cfg: &Config, dir: &Path) -> Result<Arc<dyn cairn_core::Critic>> {
    let opts = cairn_models::OnnxOptions {
        onnx_file: None,
        dylib: onnxruntime_dylib(cfg),
        threads: cfg.embed.threads,
        batch_size: cfg.embed.batch_size,
    };
    let model = cairn_models::CrossEncoder::load_on(dir, Device::Cpu, &opts)?;
    let logistic = cairn_core::Calibration { a: 1.0, b: 0.0 };
    Ok(Arc::new(cairn_models::CrossEncoderCritic::new(
        model, logistic, logistic,
    )))
}

#[cfg(not(feature = "ort"))]
pub fn load_installed_reranker(_cfg: &Config, _dir: &Path) -> Result<Arc<dyn cairn_core::Critic>> {
    Err(cairn_models::ModelError::NotCompiled {
        backend: "ONNX Runtime (the collection's installed reranker)",
        feature: "ort",
    }
    .into())
}

#[cfg(not(feature = "ort"))]
fn load_cross_encoder(
    _cfg: &Config,
    _relevance: cairn_core::Calibration,
    _support: cairn_core::Calibration,
) -> Result<Arc<dyn cairn_core::Critic>> {
    Err(cairn_models::ModelError::NotCompiled {
        backend: "ONNX Runtime (the cross-encoder critic)",
        feature: "ort",
    }
    .into())
}

/// The ONNX Runtime library: `embed.onnxruntime`, `ORT_DYLIB_PATH`, or the
/// one `cairn models fetch` installs (`None` when none is set and that one
/// is missing).
pub fn onnxruntime_dylib(cfg: &Config) -> Option<PathBuf> {
    let installed = cfg
        .models_dir()
        .join("onnxruntime")
        .join("libonnxruntime.so");
    cfg.embed
        .onnxruntime
        .as_ref()
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from))
        .or_else(|| installed.is_file().then_some(installed))
}

/// The generator the configuration names: an OpenAI-compatible server when
/// `generate.url` is set (key: `CAIRN_LLM_API_KEY`), else the embedded GGUF
/// engine (`generate.model`: a name in the models dir, a directory or a
/// `.gguf` file), loaded once; the counterpart of [`load_embedder`].
pub fn load_generator(cfg: &Config) -> Result<Arc<dyn Generator>> {
    use cairn_generate::openai::{OpenAiConfig, OpenAiGenerator};
    use std::time::Duration;
    let g = &cfg.generate;
    if let Some(url) = &g.url {
        let gen = OpenAiGenerator::new(OpenAiConfig {
            base_url: url.clone(),
            model: g.llm_model.clone(),
            api_key: std::env::var("CAIRN_LLM_API_KEY")
                .ok()
                .filter(|k| !k.is_empty()),
            context_window: g.context,
            connect_timeout: Duration::from_secs(g.connect_timeout_secs),
            read_timeout: Duration::from_secs(g.read_timeout_secs),
            max_retries: g.retries,
            ..OpenAiConfig::default()
        })?;
        return Ok(Arc::new(gen));
    }
    load_embedded_generator(cfg)
}

#[cfg(feature = "llama")]
fn load_embedded_generator(cfg: &Config) -> Result<Arc<dyn Generator>> {
    Ok(Arc::new(load_llama(cfg)?))
}

/// The embedded GGUF engine as `generate.*` configures it (`load_generator`
/// without a server URL), as its own type: training reads its tokenizer and
/// chat template.
#[cfg(feature = "llama")]
pub fn load_llama(cfg: &Config) -> Result<cairn_generate::llama::LlamaGenerator> {
    use cairn_generate::llama::{LlamaGenerator, LlamaOptions, Offload};
    use cairn_models::registry;
    let g = &cfg.generate;
    let path = registry::resolve(&g.model, &cfg.models_dir())?;
    let file = registry::gguf_file(&path)?;
    Ok(LlamaGenerator::load(
        &file,
        &LlamaOptions {
            offload: Offload::parse(&g.device)?,
            gpu_layers: g.gpu_layers,
            threads: g.threads,
            context: g.context,
            ..LlamaOptions::default()
        },
    )?)
}

#[cfg(not(feature = "llama"))]
fn load_embedded_generator(_cfg: &Config) -> Result<Arc<dyn Generator>> {
    Err(cairn_generate::GenerateError::NotCompiled(
        "the embedded GGUF generator is not available; use --llm-url".into(),
        "llama",
    )
    .into())
}

/// Load the configured embedding model on the configured backend.
pub fn load_embedder(cfg: &Config) -> Result<Arc<dyn SentenceEncoder>> {
    let dir = cairn_models::registry::resolve(&cfg.embed.model, &cfg.models_dir())?;
    let device: Device = cfg.embed.device.parse()?;
    let backend = match cfg.embed.backend.as_str() {
        "auto" => auto_backend(device),
        other => other,
    };
    match backend {
        "onnx" => load_onnx(cfg, &dir, device),
        _ => load_candle(cfg, &dir, device),
    }
}

#[cfg(feature = "candle")]
fn load_candle(cfg: &Config, dir: &Path, device: Device) -> Result<Arc<dyn SentenceEncoder>> {
    let mut model = cairn_models::BertEmbedder::load(dir, device, cfg.embed.batch_size)?;
    if let Some(p) = &cfg.embed.query_prefix {
        model.set_query_prefix(p.clone());
    }
    Ok(Arc::new(model))
}

#[cfg(not(feature = "candle"))]
fn load_candle(_cfg: &Config, _dir: &Path, _device: Device) -> Result<Arc<dyn SentenceEncoder>> {
    Err(cairn_models::ModelError::NotCompiled {
        backend: "candle (the GPU embedding backend)",
        feature: "candle",
    }
    .into())
}

#[cfg(feature = "ort")]
fn load_onnx(cfg: &Config, dir: &Path, device: Device) -> Result<Arc<dyn SentenceEncoder>> {
    let dylib = onnxruntime_dylib(cfg);
    // A model installed by an older Cairn (or by hand) has only its
    // safetensors: write the fp32 graph beside them once.
    let onnx_file = match &cfg.embed.onnx_file {
        Some(f) => Some(PathBuf::from(f)),
        None => Some(cairn_models::onnx_export::ensure_graph(dir)?),
    };
    let opts = cairn_models::OnnxOptions {
        onnx_file,
        dylib,
        threads: cfg.embed.threads,
        batch_size: cfg.embed.batch_size,
    };
    let mut model = cairn_models::OnnxEmbedder::load(dir, device, &opts)?;
    if let Some(p) = &cfg.embed.query_prefix {
        model.set_query_prefix(p.clone());
    }
    Ok(Arc::new(model))
}

#[cfg(not(feature = "ort"))]
fn load_onnx(_cfg: &Config, _dir: &Path, _device: Device) -> Result<Arc<dyn SentenceEncoder>> {
    Err(cairn_models::ModelError::NotCompiled {
        backend: "ONNX Runtime",
        feature: "ort",
    }
    .into())
}

impl Engine {
    /// Open the configured collection, creating it if needed, with no progress reporting.
    pub fn open(cfg: &Config) -> Result<Engine> {
        Self::open_with(cfg, &cairn_core::NoProgress)
    }

    /// Open the configured collection; rebuilding or catching up indexes reports to `progress`.
    pub fn open_with(cfg: &Config, progress: &dyn Progress) -> Result<Engine> {
        cfg.validate()?;
        let embedder = load_embedder(cfg)?;
        Self::open_with_embedder(cfg, embedder, progress)
    }

    /// Open with an embedder already loaded (tests and servers share one).
    pub fn open_with_embedder(
        cfg: &Config,
        embedder: Arc<dyn SentenceEncoder>,
        progress: &dyn Progress,
    ) -> Result<Engine> {
        Self::open_as(cfg, embedder, Access::Write, progress)
    }

    /// Open the configured collection for reading only, beside a writer
    /// that may be another process: see [`Access::Read`].
    pub fn open_read_only(cfg: &Config, progress: &dyn Progress) -> Result<Engine> {
        cfg.validate()?;
        let embedder = load_embedder(cfg)?;
        Self::open_as(cfg, embedder, Access::Read, progress)
    }

    /// Open the collection as `access` says, with an embedder already loaded.
    pub fn open_as(
        cfg: &Config,
        embedder: Arc<dyn SentenceEncoder>,
        access: Access,
        progress: &dyn Progress,
    ) -> Result<Engine> {
        cfg.validate()?;
        let dir = collection_dir(&cfg.data_dir(), &cfg.collection);
        let db = dir.join("catalog.sqlite");
        let (lock, catalog, indexes) = match access {
            Access::Read => {
                if !db.is_file() {
                    return Err(EngineError::NoCollection(cfg.collection.clone()));
                }
                let catalog = Catalog::open_reader(&db)?;
                catalog.check_embedding_model(
                    &cfg.collection,
                    embedder.model_id(),
                    embedder.dim(),
                )?;
                let indexes = Indexes::open_read_only(
                    &dir.join("index"),
                    embedder.dim(),
                    &cfg.index,
                    &catalog,
                    progress,
                )?;
                (None, catalog, indexes)
            }
            Access::Write | Access::WriteWaiting => {
                std::fs::create_dir_all(&dir).map_err(|source| EngineError::Io {
                    path: dir.clone(),
                    source,
                })?;
                let lock = lock_collection(&dir, &cfg.collection, access == Access::WriteWaiting)?;
                let mut catalog = Catalog::open(&db)?;
                catalog.ensure_embedding_model(
                    &cfg.collection,
                    embedder.model_id(),
                    embedder.dim(),
                )?;
                let indexes = Indexes::open(
                    &dir.join("index"),
                    embedder.dim(),
                    &cfg.index,
                    &catalog,
                    progress,
                )?;
                (Some(lock), catalog, indexes)
            }
        };
        indexes.set_bm25_field_boosts(cfg.search.bm25_title_boost, cfg.search.bm25_doc_boost);
        let prep = Preparer::new(cfg, embedder.clone())?;
        let pool = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(2, 8);
        let readers = (0..pool)
            .map(|_| Catalog::open_reader(&db).map(Mutex::new))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Engine {
            cfg: cfg.clone(),
            dir,
            // Read-only: a reader connection that `catalog()` never lends.
            catalog: Mutex::new(catalog),
            indexer: Mutex::new(Catalog::open_reader(&db)?),
            readers,
            next_reader: AtomicUsize::new(0),
            indexes,
            critic: load_critic(cfg, embedder.clone())?,
            embedder,
            prep,
            feedback_log: Mutex::new(None),
            adapter: Mutex::new(AdapterSlot::default()),
            reranker: Mutex::new(RerankerSlot::default()),
            _lock: lock,
        })
    }

    /// The query adapter installed in the collection's directory
    /// (`adapter.json`, written by `cairn train adapter`), read again
    /// whenever the file changes, so a running server picks up a new one,
    /// or its removal, at its next query. One trained for another embedding
    /// model is an error naming both.
    pub fn query_adapter(&self) -> Result<Option<Arc<QueryAdapter>>> {
        let path = self.dir.join(ADAPTER_FILE);
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let mut slot = self.adapter.lock().unwrap_or_else(|p| p.into_inner());
        // (A file that failed to load leaves the slot as it was, so the
        // next query tries again and reports the same error.)
        if slot.modified != modified {
            let loaded = match modified {
                Some(_) => QueryAdapter::load(&self.dir)?,
                None => None,
            };
            if let Some(a) = &loaded {
                if a.embedding_model != self.embedder.model_id() || a.dim != self.embedder.dim() {
                    return Err(EngineError::Invalid(format!(
                        "{}: the query adapter was trained for {} ({} dimensions), this collection embeds with {} ({}); train it again or delete the file",
                        path.display(),
                        a.embedding_model,
                        a.dim,
                        self.embedder.model_id(),
                        self.embedder.dim()
                    )));
                }
                tracing::info!(path = %path.display(), "query adapter loaded");
            }
            slot.adapter = loaded.map(Arc::new);
            slot.modified = modified;
        }
        Ok(slot.adapter.clone())
    }

    /// The reranker installed in the collection's directory
    /// ([`RERANKER_DIR`], written by `cairn train reranker`), loaded again
    /// whenever its weights change, so a running server picks up a new one,
    /// or its removal, at its next reranked query. Its relevance is the
    /// logistic of the logit it was trained on. `None` when none is
    /// installed, and when the configuration names a reranking critic itself
    /// (`critic.kind = "cross-encoder"` or `"late-interaction"`,
    /// [`critic_reranks`]), which then reranks.
    pub fn installed_reranker(&self) -> Result<Option<Arc<dyn cairn_core::Critic>>> {
        if critic_reranks(&self.cfg) {
            return Ok(None);
        }
        let dir = self.dir.join(RERANKER_DIR);
        let modified = std::fs::metadata(dir.join("model.safetensors"))
            .and_then(|m| m.modified())
            .ok();
        let mut slot = self.reranker.lock().unwrap_or_else(|p| p.into_inner());
        if slot.modified != modified {
            slot.critic = match modified {
                Some(_) => Some(load_installed_reranker(&self.cfg, &dir)?),
                None => None,
            };
            slot.modified = modified;
            if slot.critic.is_some() {
                tracing::info!(path = %dir.display(), "reranker loaded");
            }
        }
        Ok(slot.critic.clone())
    }

    /// What the collection has learned, by content: the installed query
    /// adapter's and reranker's BLAKE3 digests (`adapter:… reranker:…`,
    /// the first 16 hex digits of each), `None` when neither is installed.
    /// Results measured under other ones are not comparable (`cairn eval`
    /// does not resume their run logs).
    pub fn learned(&self) -> Result<Option<String>> {
        let mut parts = Vec::new();
        for (name, path) in [
            ("adapter", self.dir.join(ADAPTER_FILE)),
            (
                "reranker",
                self.dir.join(RERANKER_DIR).join("model.safetensors"),
            ),
            ("generator", self.dir.join(GENERATOR_ADAPTER)),
        ] {
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(EngineError::Io { path, source }),
            };
            let hex = blake3::hash(&bytes).to_hex();
            parts.push(format!("{name}:{}", &hex[..16]));
        }
        Ok((!parts.is_empty()).then(|| parts.join(" ")))
    }

    /// The generator's LoRA adapter installed in the collection
    /// ([`GENERATOR_ADAPTER`]) when it was trained for `model` (the
    /// generator's name, its GGUF file's stem); one trained for another
    /// model is left out with a warning, as is one whose header cannot be
    /// read.
    pub fn generator_adapter(&self, model: &str) -> Option<PathBuf> {
        generator_adapter_in(&self.dir, model)
    }

    /// A query's vector as searches use it: the embedder's, mapped by the
    /// query adapter when one is installed.
    pub fn query_vector(&self, query: &str) -> Result<Vec<f32>> {
        self.adapt_query(&self.embedder.embed_query(query)?)
    }

    /// An embedded query mapped by the query adapter, if one is installed.
    pub fn adapt_query(&self, v: &[f32]) -> Result<Vec<f32>> {
        match self.query_adapter()? {
            Some(a) => a.apply(v),
            None => Ok(v.to_vec()),
        }
    }

    /// The collection's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The embedding model.
    pub fn embedder(&self) -> &Arc<dyn SentenceEncoder> {
        &self.embedder
    }

    /// The critic the configuration names (`[critic]`).
    pub fn critic(&self) -> &dyn cairn_core::Critic {
        self.critic.as_ref()
    }

    /// Give the engine the generator that answers, so that
    /// `critic.kind = "llm"` judges with it (one model in memory, shared);
    /// other kinds keep their critic.
    pub fn attach_generator(mut self, generator: &Arc<dyn Generator>) -> Engine {
        if self.cfg.critic.kind == "llm" {
            self.critic = llm_critic(&self.cfg, generator.clone());
        }
        self
    }

    /// The writer connection; an error when the collection is open
    /// read-only.
    fn catalog(&self) -> Result<MutexGuard<'_, Catalog>> {
        if self.read_only() {
            return Err(EngineError::ReadOnly(self.cfg.collection.clone()));
        }
        Ok(self.catalog.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Opened with [`Engine::open_read_only`]: searches and answers only.
    pub fn read_only(&self) -> bool {
        self._lock.is_none()
    }

    /// A read-only connection: a free one if there is one, else the next in
    /// turn (waiting only for another reader).
    fn reader(&self) -> MutexGuard<'_, Catalog> {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        let n = self.readers.len();
        for i in 0..n {
            if let Ok(g) = self.readers[(start + i) % n].try_lock() {
                return g;
            }
        }
        self.readers[start % n]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn indexer(&self) -> MutexGuard<'_, Catalog> {
        self.indexer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Apply changes that come from a replicated log, each with the log's
    /// sequence number, through the catalog's one apply path. A sequence the
    /// catalog already has is skipped, so redelivery is harmless. An entry
    /// the catalog refuses (a vector of the wrong length) is reported and
    /// applied as [`cairn_store::Op::Noop`], so that one poison entry cannot
    /// wedge the replica. Returns how many were applied and the entries
    /// skipped; the indexes catch up separately ([`Engine::catch_up`]).
    pub fn apply_logged(&self, ops: Vec<(cairn_store::Op, Seq)>) -> Result<Applied> {
        let mut cat = self.catalog()?;
        let mut out = Applied::default();
        for (op, seq) in ops {
            let done = match cat.apply(op, Some(seq)) {
                Err(e @ cairn_store::StoreError::BadOp { .. }) => {
                    tracing::error!(collection = %self.cfg.collection, seq, "skipping log entry: {e}");
                    out.skipped.push((seq, e.to_string()));
                    cat.apply(cairn_store::Op::Noop, Some(seq))?
                }
                r => r?,
            };
            if done.is_some() {
                out.applied += 1;
            }
        }
        Ok(out)
    }

    /// Write a consistent copy of the catalog to `dest` (which must not
    /// exist) and return its sequence: a cluster shard's snapshot.
    pub fn export_catalog(&self, dest: &Path) -> Result<Seq> {
        Ok(self.reader().export(dest)?)
    }

    /// The catalog's last applied sequence number.
    pub fn applied_seq(&self) -> Result<Seq> {
        Ok(self.reader().last_seq()?)
    }

    /// The sequence the indexes (and so searches) have caught up to.
    pub fn index_seq(&self) -> Seq {
        self.indexes.applied_seq()
    }

    /// Bring the indexes up to the catalog. Searches go on meanwhile.
    pub fn catch_up(&self, progress: &dyn Progress) -> Result<CatchUp> {
        if self.read_only() {
            return Err(EngineError::ReadOnly(self.cfg.collection.clone()));
        }
        let caught = {
            let cat = self.indexer();
            self.indexes.catch_up(&cat, progress)?
        };
        // Tombstones the indexes on disk no longer need (a reopen starts
        // from their saved sequences) go: the table stays as small as the
        // changes not yet saved.
        self.catalog()?
            .prune_tombstones(self.indexes.durable_seq())?;
        Ok(caught)
    }

    /// Drop the indexes and rebuild them from the catalog.
    pub fn rebuild_indexes(&self, progress: &dyn Progress) -> Result<CatchUp> {
        if self.read_only() {
            return Err(EngineError::ReadOnly(self.cfg.collection.clone()));
        }
        let cat = self.indexer();
        Ok(self.indexes.rebuild(&cat, progress)?)
    }

    /// Check the collection: a digest of the catalog's content, and both
    /// indexes against it ([`Check`]). Not on a read-only open, whose
    /// indexes may rightly lag the catalog.
    pub fn check(&self) -> Result<Check> {
        if self.read_only() {
            return Err(EngineError::ReadOnly(self.cfg.collection.clone()));
        }
        let cat = self.indexer();
        let indexes = self.indexes.verify(&cat)?;
        let content = cat.content_digest()?;
        Ok(Check {
            collection: self.cfg.collection.clone(),
            ok: indexes.ok() && content.chunks == indexes.chunks,
            content,
            indexes,
        })
    }

    /// Ranked passages for a query.
    pub fn search(&self, query: &str, k: usize, mode: SearchMode) -> Result<Vec<Hit>> {
        let ranked = self.rank(query, k, mode)?;
        self.hits(&ranked)
    }

    /// Ranked chunk ids for a query (the step before loading chunk texts).
    pub fn rank(&self, query: &str, k: usize, mode: SearchMode) -> Result<Vec<Scored>> {
        if query.trim().is_empty() || k == 0 {
            return Ok(vec![]);
        }
        let q = match mode {
            SearchMode::Bm25 => None,
            _ => Some(self.query_vector(query)?),
        };
        self.rank_embedded(query, q.as_deref(), k, mode)
    }

    /// [`Engine::rank`] with the query already embedded (`query_vector` is
    /// needed by the dense and hybrid modes).
    pub fn rank_embedded(
        &self,
        query: &str,
        query_vector: Option<&[f32]>,
        k: usize,
        mode: SearchMode,
    ) -> Result<Vec<Scored>> {
        if query.trim().is_empty() || k == 0 {
            return Ok(vec![]);
        }
        let candidates = self.cfg.search.candidates.max(k);
        let idx = &self.indexes;
        let dense = |n: usize| -> Result<Vec<Scored>> {
            let owned;
            let q = match query_vector {
                Some(q) => q,
                None => {
                    owned = self.query_vector(query)?;
                    &owned
                }
            };
            let cat = self.reader();
            Ok(idx.dense(&cat, q, n)?)
        };
        let cap = self.cfg.search.max_per_document;
        // Reranking reorders more than k fused candidates.
        let rerank = self.cfg.search.rerank;
        let k_final = k;
        let k = if rerank {
            self.cfg.search.rerank_depth.max(k)
        } else {
            k
        };
        let candidates = candidates.max(k);
        // With a per-document cap, more than k passages are ranked, so that
        // other documents can fill the places the cap frees.
        let want = if cap > 0 { candidates } else { k };
        let fusion = cairn_index::fusion::Fusion::from_config(&self.cfg.search);
        let ranked = match mode {
            SearchMode::Dense => fusion.fuse(mode, &dense(want)?, &[], k),
            SearchMode::Bm25 => fusion.fuse(mode, &[], &idx.bm25(query, want)?, k),
            SearchMode::Hybrid => {
                let d = dense(candidates)?;
                let b = idx.bm25(query, candidates)?;
                fusion.fuse(mode, &d, &b, k)
            }
        };
        let ranked: Vec<Scored> = if cap == 0 {
            ranked.into_iter().take(k).collect()
        } else {
            let ids: Vec<u64> = ranked.iter().map(|s| s.id).collect();
            let docs = self.reader().chunk_documents(&ids)?;
            fusion.cap(&ranked, k, |id| docs.get(&id).copied())
        };
        if rerank {
            return self.rerank(query, &ranked, k_final);
        }
        Ok(ranked)
    }

    /// The critic's order of `ranked` for `query`, best first, as relevance
    /// probabilities; the first `k`. Equal probabilities keep the fused
    /// order.
    pub fn rerank(&self, query: &str, ranked: &[Scored], k: usize) -> Result<Vec<Scored>> {
        let hits = self.hits(ranked)?;
        let critic = match self.installed_reranker()? {
            Some(r) => r,
            None => self.critic.clone(),
        };
        let texts: Vec<Cow<'_, str>> = hits
            .iter()
            .map(|h| critic_text(critic.as_ref(), h))
            .collect();
        let texts: Vec<&str> = texts.iter().map(|t| t.as_ref()).collect();
        Ok(rerank_order(critic.as_ref(), query, &texts)?
            .into_iter()
            .take(k)
            .map(|(i, p)| Scored {
                id: hits[i].chunk,
                score: p,
            })
            .collect())
    }

    /// Cosine similarity between a query vector and stored chunks (0 for a
    /// chunk that has no vector).
    pub fn similarities(&self, query_vector: &[f32], chunks: &[u64]) -> Result<Vec<f32>> {
        let cat = self.reader();
        chunks
            .iter()
            .map(|&id| {
                Ok(cat
                    .vector(id)?
                    .map(|v| cairn_core::cosine(query_vector, &v))
                    .unwrap_or(0.0))
            })
            .collect()
    }

    /// The dense list as fusion receives it: the top `n` by cosine, with
    /// no per-document cap and no reranking (what a cluster's shard sends
    /// its coordinator, which fuses every shard's lists).
    pub fn dense_candidates(&self, query_vector: &[f32], n: usize) -> Result<Vec<Scored>> {
        let cat = self.reader();
        Ok(self.indexes.dense(&cat, query_vector, n)?)
    }

    /// The BM25 list as fusion receives it, scored with a whole
    /// collection's term statistics when `stats` is given (see
    /// [`Engine::bm25_stats`]), with this collection's own otherwise.
    pub fn bm25_candidates(
        &self,
        query: &str,
        n: usize,
        stats: Option<&cairn_index::bm25::Bm25Stats>,
    ) -> Result<Vec<Scored>> {
        Ok(self.indexes.bm25_with(query, n, stats)?)
    }

    /// This collection's BM25 term statistics for `query`: a shard's share
    /// of the collection-wide statistics its coordinator sums.
    pub fn bm25_stats(&self, query: &str) -> Result<cairn_index::bm25::Bm25Stats> {
        Ok(self.indexes.bm25_stats(query)?)
    }

    /// Exact dense top-k (the ground truth HNSW is measured against).
    pub fn exact(&self, query_vector: &[f32], k: usize) -> Result<Vec<Scored>> {
        let cat = self.reader();
        Ok(self.indexes.exact(&cat, query_vector, k)?)
    }

    /// HNSW dense top-k with an explicit search breadth.
    pub fn hnsw(
        &self,
        query_vector: &[f32],
        k: usize,
        ef_search: Option<usize>,
    ) -> Result<Vec<Scored>> {
        Ok(self.indexes.hnsw(query_vector, k, ef_search)?)
    }

    /// The stored vectors of these chunks (ids the catalog no longer holds
    /// are left out).
    pub fn chunk_vectors(&self, ids: &[u64]) -> Result<std::collections::HashMap<u64, Vec<f32>>> {
        let cat = self.reader();
        let mut out = std::collections::HashMap::new();
        for &id in ids {
            if let Some(v) = cat.vector(id)? {
                out.insert(id, v);
            }
        }
        Ok(out)
    }

    /// Every live chunk, in id order, without its vector.
    pub fn all_chunks(&self) -> Result<Vec<cairn_core::StoredChunk>> {
        let mut out = Vec::new();
        self.reader()
            .for_each_chunk_since(0, |c, _| -> Result<()> {
                out.push(c);
                Ok(())
            })?;
        Ok(out)
    }

    /// The document of each chunk the catalog holds (chunks it does not
    /// hold are left out): what the per-document cap counts by.
    pub fn chunk_documents(
        &self,
        chunks: &[u64],
    ) -> Result<std::collections::HashMap<u64, cairn_core::DocId>> {
        Ok(self.reader().chunk_documents(chunks)?)
    }

    /// Load the chunks behind ranked ids as hits.
    pub fn hits(&self, ranked: &[Scored]) -> Result<Vec<Hit>> {
        let ids: Vec<u64> = ranked.iter().map(|s| s.id).collect();
        let chunks = self.reader().chunks(&ids)?;
        let by_id: std::collections::HashMap<u64, _> =
            chunks.into_iter().map(|c| (c.id, c)).collect();
        Ok(ranked
            .iter()
            .filter_map(|s| by_id.get(&s.id).map(|c| (s, c)))
            .enumerate()
            .map(|(i, (s, c))| Hit {
                rank: i + 1,
                score: s.score,
                doc: c.doc.clone(),
                chunk: c.id,
                heading: c.heading.clone(),
                start: c.start,
                end: c.end,
                text: c.text.clone(),
                page: cairn_core::page_of(&c.doc, &c.heading),
            })
            .collect())
    }

    /// Remove documents: an exact file path, everything under a directory
    /// path, or documents whose display path equals `target`. Returns the
    /// display paths removed.
    pub fn remove(&self, target: &str, progress: &dyn Progress) -> Result<Vec<String>> {
        let removed = {
            let mut cat = self.catalog()?;
            let known: Vec<KnownDocument> = cat
                .documents()?
                .into_iter()
                .map(KnownDocument::from)
                .collect();
            let victims = ingest::remove_targets(target, &known);
            if victims.is_empty() {
                return Err(EngineError::NotFound(target.to_string()));
            }
            for d in &victims {
                cat.apply(
                    cairn_store::Op::Delete {
                        path: d.path.clone(),
                    },
                    None,
                )?;
            }
            victims.into_iter().map(|d| d.doc.clone()).collect()
        };
        self.catch_up(progress)?;
        Ok(removed)
    }

    /// Counts for `cairn status`.
    pub fn status(&self) -> Result<Status> {
        let stats = self.reader().stats()?;
        let idx = &self.indexes;
        Ok(Status {
            collection: self.cfg.collection.clone(),
            dir: self.dir.clone(),
            documents: stats.documents,
            chunks: stats.chunks,
            seq: stats.seq,
            index_seq: idx.applied_seq(),
            vectors: idx.vectors(),
            bm25_docs: idx.bm25_docs(),
            hnsw_bytes: idx.hnsw_memory(),
            embed_model: self.embedder.model_id().to_string(),
            dim: self.embedder.dim(),
        })
    }

    /// Files the catalog does not hold as they are now: new ones, and ones
    /// whose size or modification time differs (the test `ingest` uses to
    /// skip unchanged files).
    pub fn changed_files(&self, files: &[PathBuf]) -> Result<Vec<PathBuf>> {
        let cat = self.reader();
        let mut out = vec![];
        for f in files {
            let now = std::fs::metadata(f)
                .ok()
                .map(|m| (m.len(), cairn_ingest::mtime_ns(&m)));
            let known = cat
                .document(&f.to_string_lossy())?
                .map(|d| (d.size, d.mtime_ns));
            if now.is_none() || known != now {
                out.push(f.clone());
            }
        }
        Ok(out)
    }

    /// Remove one document by its catalog id; returns what the catalog knew
    /// of it.
    pub fn remove_document(
        &self,
        id: cairn_core::DocId,
        progress: &dyn Progress,
    ) -> Result<cairn_store::DocMeta> {
        let doc = {
            let mut cat = self.catalog()?;
            let d = cat
                .documents()?
                .into_iter()
                .find(|d| d.id == id)
                .ok_or_else(|| EngineError::NotFound(format!("document id {id}")))?;
            cat.apply(
                cairn_store::Op::Delete {
                    path: d.path.clone(),
                },
                None,
            )?;
            d
        };
        self.catch_up(progress)?;
        Ok(doc)
    }

    /// Every document in the catalog.
    pub fn documents(&self) -> Result<Vec<cairn_store::DocMeta>> {
        Ok(self.reader().documents()?)
    }

    /// A document's extracted text and its passages (spans and headings),
    /// by its canonical path or its display path (which must then name one
    /// document only).
    pub fn document_text(&self, doc: &str) -> Result<DocumentText> {
        let cat = self.reader();
        let meta = match cat.document(doc)? {
            Some(m) => m,
            None => collection::pick_document(doc, &cat.documents()?, |d| d)?.clone(),
        };
        let text = cat
            .document_text(meta.id)?
            .ok_or_else(|| EngineError::NotFound(format!("document `{doc}`")))?;
        let passages = cat
            .document_chunks(meta.id)?
            .into_iter()
            .map(|c| PassageSpan {
                chunk: c.id,
                start: c.start,
                end: c.end,
                heading: c.heading,
            })
            .collect();
        Ok(DocumentText {
            doc: meta.doc,
            path: meta.path,
            format: meta.format,
            text,
            passages,
        })
    }
}

/// How a collection is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Ingest, remove and search, holding the collection's lock. When
    /// another process holds it, [`EngineError::Busy`] says which, at once.
    Write,
    /// [`Access::Write`], waiting for the process that holds the lock.
    WriteWaiting,
    /// Search and answer only, without the lock, so never waiting for a
    /// writer: the catalog through SQLite's WAL readers, the indexes as last
    /// saved plus the catalog's newer changes (see
    /// [`cairn_index::Indexes::open_read_only`]), all as of the open.
    Read,
}

/// Hold the collection for this process, writing who holds it (process id
/// and command line) into the lock file, so that another process that
/// wants it can say so.
fn lock_collection(dir: &Path, collection: &str, wait: bool) -> Result<File> {
    use std::io::{Read, Seek, Write};
    let path = dir.join("LOCK");
    let io = |source| EngineError::Io {
        path: path.clone(),
        source,
    };
    let mut file = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "another cairn process".to_string(),
                h => h.to_string(),
            };
            if !wait {
                return Err(EngineError::Busy {
                    collection: collection.to_string(),
                    holder,
                });
            }
            tracing::warn!("collection `{collection}` is in use by {holder}; waiting for it");
            file.lock().map_err(io)?;
        }
        Err(std::fs::TryLockError::Error(source)) => return Err(io(source)),
    }
    let command: Vec<String> = std::env::args().collect();
    let command = match command.first() {
        Some(first) => {
            let name = Path::new(first)
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let rest: Vec<&str> = command[1..].iter().map(String::as_str).collect();
            format!("{name} {}", rest.join(" ")).trim().to_string()
        }
        None => String::new(),
    };
    let me = format!("process {} (`{command}`)", std::process::id());
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(me.as_bytes()))
        .map_err(io)?;
    Ok(file)
}

#[cfg(test)]
mod kind_tests {
    use super::*;

    #[test]
    fn store_errors_have_categories() {
        let mismatch = EngineError::Store(cairn_store::StoreError::ModelMismatch {
            collection: "docs".into(),
            stored: "a (384-dim)".into(),
            requested: "b (768-dim)".into(),
        });
        assert_eq!(mismatch.kind(), ErrorKind::Conflict);
        let origin = EngineError::Store(cairn_store::StoreError::Origin {
            path: "/c".into(),
            kept: "a replicated log's",
            tried: "local",
            hint: "",
        });
        assert_eq!(origin.kind(), ErrorKind::Conflict);
        let bad = EngineError::Store(cairn_store::StoreError::BadOp {
            path: "/c".into(),
            doc: "/d".into(),
            message: "0 dimensions".into(),
        });
        assert_eq!(bad.kind(), ErrorKind::InvalidInput);
        assert_eq!(
            EngineError::Unavailable("shards".into()).kind(),
            ErrorKind::Unavailable
        );
        assert_eq!(
            EngineError::NotFound("x".into()).kind(),
            ErrorKind::NotFound
        );
    }
}
