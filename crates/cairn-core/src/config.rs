//! Layered configuration: defaults, then a TOML file, then `CAIRN_*`
//! environment variables, then command-line flags (the binary applies those
//! last). Later layers win.

use crate::{Calibration, SearchMode};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Errors reading or validating configuration. Each names the file or field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for {field}: {message}")]
    Field { field: String, message: String },
}

/// The whole configuration of a Cairn node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where collections live. Default: the platform data dir (`~/.local/share/cairn`).
    pub data_dir: Option<PathBuf>,
    /// The collection used when none is named.
    pub collection: String,
    /// Where models are installed. Default: the platform cache dir (`~/.cache/cairn/models`).
    pub models_dir: Option<PathBuf>,
    pub embed: EmbedConfig,
    pub chunk: ChunkConfig,
    pub ingest: IngestConfig,
    pub index: IndexConfig,
    pub search: SearchConfig,
    pub generate: GenerateConfig,
    pub critic: CriticConfig,
    pub server: ServerConfig,
    pub cluster: ClusterConfig,
}

/// The critic (`[critic]`): what judges retrieved passages and answers, and
/// its calibration. The calibration and thresholds are fitted by
/// `cairn eval --calibrate` on labelled pairs from a QA set; the defaults
/// are the fit on the development sets for the default embedding model
/// (EVALUATION.md, "Critic calibration"), and `calibrated_on` says so.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(from = "CriticToml")]
pub struct CriticConfig {
    /// `embedding`: the collection's embedding model (cosine similarity);
    /// `llm`: the generator as judge (log-odds of Yes against No);
    /// `cross-encoder`: a sequence-classification model (`critic.model`);
    /// `late-interaction`: the embedding model's token vectors (the mean
    /// over the text's tokens of the best cosine with a passage token,
    /// ColBERT's MaxSim; ONNX Runtime backend).
    pub kind: String,
    /// The cross-encoder (`kind = "cross-encoder"`): a directory with
    /// `config.json` (`num_labels` 1 or 2), `tokenizer.json` and
    /// `model.safetensors` or an ONNX graph, or the name of an installed
    /// model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Where the cross-encoder runs: `cpu`, `coreml` (Apple's Neural
    /// Engine, with the `coreml` feature) or `auto`. The `embedding` and
    /// `late-interaction` critics run with the embedding model
    /// (`embed.device`), the `llm` critic with the generator
    /// (`generate.device`).
    pub device: String,
    /// Raw score → probability that a passage answers a question. Unset:
    /// the fit for the default embedding model (`kind = "embedding"` and
    /// `"late-interaction"`), or the model's own probability (`llm`:
    /// P(Yes) / (P(Yes) + P(No)); `cross-encoder`: the sigmoid of its
    /// logit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relevance: Option<Calibration>,
    /// Raw score → probability that a passage supports a sentence (unset:
    /// as for `relevance`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub support: Option<Calibration>,
    /// The grade of a retrieval (corrective retrieval, and the relevance
    /// gate when it runs): the probability that the documents answer the
    /// question, from the best support of the question by a sentence of the
    /// top passages and the share of its keywords they contain.
    pub grade: GradeModel,
    /// A sentence is supported when a source's support probability reaches this.
    pub support_threshold: f32,
    /// Corrective retrieval: the best passage's relevance probability at or
    /// above which retrieval is graded correct.
    pub correct: f32,
    /// ... and below which it is graded incorrect (between: ambiguous).
    pub incorrect: f32,
    /// Refinement keeps a passage's sentences whose relevance probability
    /// reaches this (and always its best sentence).
    pub keep: f32,
    /// How the values above were obtained.
    pub calibrated_on: String,
}

/// The calibrations fitted by `cairn eval --calibrate` for the default
/// embedding model (see [`CriticConfig::default`]).
pub const EMBEDDING_RELEVANCE: Calibration = Calibration {
    a: 9.1173,
    b: -6.0907,
};
/// See [`EMBEDDING_RELEVANCE`].
pub const EMBEDDING_SUPPORT: Calibration = Calibration {
    a: 10.4699,
    b: -6.9192,
};

/// The calibrations fitted by `cairn eval --calibrate --critic
/// late-interaction` for the default embedding model's token vectors (see
/// [`CriticConfig::for_kind`]).
pub const LATE_INTERACTION_RELEVANCE: Calibration = Calibration {
    a: 22.1886,
    b: -14.9902,
};
/// See [`LATE_INTERACTION_RELEVANCE`].
pub const LATE_INTERACTION_SUPPORT: Calibration = Calibration {
    a: 23.7866,
    b: -15.1795,
};

impl CriticConfig {
    /// Switch to another kind of critic. Calibrations, thresholds and the
    /// grade are fitted for one critic, so those set for another kind do
    /// not carry over (the new kind's defaults apply, [`Self::for_kind`]).
    pub fn set_kind(&mut self, kind: &str) {
        if kind != self.kind {
            let d = CriticConfig::for_kind(kind);
            self.relevance = None;
            self.support = None;
            self.grade = d.grade;
            self.support_threshold = d.support_threshold;
            self.correct = d.correct;
            self.incorrect = d.incorrect;
            self.keep = d.keep;
            self.calibrated_on = d.calibrated_on;
            self.kind = kind.to_string();
        }
    }

    /// The defaults for a kind of critic: the late-interaction critic's
    /// own fit (`cairn eval --calibrate --critic late-interaction`, on the
    /// Python docs set with its out-of-corpus questions, the grade on the
    /// SQLite set's too; even-numbered halves fit, odd halves held out, the
    /// Debian Handbook not used: EVALUATION.md, "Late interaction (MaxSim)
    /// reranking"); every other kind has the embedding critic's grade and
    /// thresholds (and its own calibrations, [`Self::calibration`]).
    pub fn for_kind(kind: &str) -> CriticConfig {
        let mut c = CriticConfig {
            kind: kind.to_string(),
            ..CriticConfig::default()
        };
        if kind == "late-interaction" {
            c.grade = GradeModel {
                sentence: 7.0885,
                coverage: 8.0708,
                bias: -9.0424,
            };
            c.support_threshold = 0.561;
            c.correct = 0.681;
            c.incorrect = 0.672;
            c.keep = 0.289;
            c.calibrated_on = "cairn eval --calibrate --critic late-interaction --qa eval/python-docs/qa.jsonl --out-of-corpus eval/python-docs/out-of-corpus.jsonl --pool eval/results/issue15-late-interaction-calibrate-sqlite.json (169 questions + 153 pooled for the grade, hybrid mode; odd-numbered half held out), all-MiniLM-L6-v2|mean|norm".into();
        }
        c
    }

    /// The calibration in force for `judgement`: the configured one, else
    /// the kind's default.
    pub fn calibration(&self, judgement: crate::Judgement) -> Calibration {
        let set = match judgement {
            crate::Judgement::Relevance => self.relevance,
            crate::Judgement::Support => self.support,
        };
        set.unwrap_or(match (self.kind.as_str(), judgement) {
            ("embedding", crate::Judgement::Relevance) => EMBEDDING_RELEVANCE,
            ("embedding", crate::Judgement::Support) => EMBEDDING_SUPPORT,
            ("late-interaction", crate::Judgement::Relevance) => LATE_INTERACTION_RELEVANCE,
            ("late-interaction", crate::Judgement::Support) => LATE_INTERACTION_SUPPORT,
            _ => Calibration { a: 1.0, b: 0.0 },
        })
    }
}

/// `[critic]` as written in a file: what is left out takes the defaults of
/// the kind it names ([`CriticConfig::for_kind`]).
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct CriticToml {
    kind: Option<String>,
    model: Option<String>,
    device: Option<String>,
    relevance: Option<Calibration>,
    support: Option<Calibration>,
    grade: Option<GradeModel>,
    support_threshold: Option<f32>,
    correct: Option<f32>,
    incorrect: Option<f32>,
    keep: Option<f32>,
    calibrated_on: Option<String>,
}

impl From<CriticToml> for CriticConfig {
    fn from(t: CriticToml) -> CriticConfig {
        let d = match &t.kind {
            Some(k) => CriticConfig::for_kind(k),
            None => CriticConfig::default(),
        };
        CriticConfig {
            kind: d.kind,
            model: t.model.or(d.model),
            device: t.device.unwrap_or(d.device),
            relevance: t.relevance,
            support: t.support,
            grade: t.grade.unwrap_or(d.grade),
            support_threshold: t.support_threshold.unwrap_or(d.support_threshold),
            correct: t.correct.unwrap_or(d.correct),
            incorrect: t.incorrect.unwrap_or(d.incorrect),
            keep: t.keep.unwrap_or(d.keep),
            calibrated_on: t.calibrated_on.unwrap_or(d.calibrated_on),
        }
    }
}

/// A logistic model over the two features of a retrieval's grade.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GradeModel {
    pub sentence: f32,
    pub coverage: f32,
    pub bias: f32,
}

impl GradeModel {
    /// The probability that the documents answer the question.
    pub fn probability(&self, sentence: f32, coverage: f32) -> f32 {
        1.0 / (1.0 + (-(self.sentence * sentence + self.coverage * coverage + self.bias)).exp())
    }
}

impl Default for CriticConfig {
    /// Fitted by `cairn eval --calibrate` (EVALUATION.md, "Critic
    /// calibration") for the default embedding model on the Python docs set
    /// with its out-of-corpus questions, the retrieval grade on the SQLite
    /// set's too; even-numbered halves fit, odd halves held out, the Debian
    /// Handbook not used.
    fn default() -> Self {
        CriticConfig {
            kind: "embedding".into(),
            model: None,
            device: "cpu".into(),
            relevance: None,
            support: None,
            grade: GradeModel {
                sentence: 9.2524,
                coverage: 8.3065,
                bias: -10.7422,
            },
            support_threshold: 0.526,
            correct: 0.680,
            incorrect: 0.679,
            keep: 0.204,
            calibrated_on: "cairn eval --calibrate --qa eval/python-docs/qa.jsonl --out-of-corpus eval/python-docs/out-of-corpus.jsonl --pool eval/results/issue16-calibrate-sqlite.json (169 questions + 153 pooled for the grade, hybrid mode; odd-numbered half held out), all-MiniLM-L6-v2|mean|norm".into(),
        }
    }
}

/// Cluster mode (`cairn node`, `cairn --cluster URL …`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// How long a search waits for each shard before retrying once on
    /// another replica and then reporting the shard missing.
    pub shard_timeout_ms: u64,
    /// How long a generation replica may stay silent before the answer is
    /// started again on another replica.
    pub generation_idle_ms: u64,
    /// How long a node may be missing before another node takes over its
    /// shards (a node back within it catches up from its own copy).
    pub takeover_after_secs: u64,
    /// A shard's first replica stores a snapshot of its catalog in
    /// JetStream's object store every this many log entries (0: never). A
    /// new replica starts from the latest snapshot, then the log's tail.
    pub snapshot_every: u64,
    /// Log entries kept below a snapshot's sequence when the log is
    /// trimmed after it (a replica that far behind catches up from the log;
    /// one further behind starts from the snapshot).
    pub log_keep: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            shard_timeout_ms: 2000,
            generation_idle_ms: 10_000,
            takeover_after_secs: 30,
            snapshot_every: 5_000,
            log_keep: 5_000,
        }
    }
}

/// `cairn serve`: the HTTP server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Listen address. Anything but loopback requires an API key.
    pub addr: String,
    /// API keys (bearer tokens). `CAIRN_API_KEY` adds one with access to
    /// every collection.
    pub api_keys: Vec<ApiKeyConfig>,
    /// Largest request body, in bytes (uploads included).
    pub max_body_bytes: usize,
    /// Time limit of a request; streaming answers are limited by
    /// `generate_timeout_secs` instead.
    pub request_timeout_secs: u64,
    /// Time limit of one generated answer (queueing included).
    pub generate_timeout_secs: u64,
    /// Asks allowed to wait for the generator; one more gets 503.
    pub queue: usize,
    /// Origins allowed by CORS. Empty: CORS off (same-origin only).
    pub cors_origins: Vec<String>,
    /// Seconds a connection may take to send a request's headers.
    pub header_timeout_secs: u64,
    /// Ingestion jobs allowed to wait; one more upload gets 503.
    pub max_queued_jobs: usize,
    /// Finished jobs kept for `GET /api/jobs` (the oldest go first).
    pub jobs_kept: usize,
    /// A collection no request has used for this many seconds is closed:
    /// its indexes are saved, its memory freed and its write lock released
    /// (so that `cairn ingest` can write to it meanwhile); the next request
    /// opens it again. 0: never.
    pub idle_close_secs: u64,
}

/// One API key and the collections it may use (empty: all).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    pub key: String,
    #[serde(default)]
    pub collections: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: "127.0.0.1:8080".into(),
            api_keys: vec![],
            max_body_bytes: 32 * 1024 * 1024,
            request_timeout_secs: 60,
            generate_timeout_secs: 300,
            queue: 8,
            cors_origins: vec![],
            header_timeout_secs: 10,
            max_queued_jobs: 32,
            jobs_kept: 200,
            idle_close_secs: 600,
        }
    }
}

/// Answer generation (`cairn ask`, `cairn chat`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GenerateConfig {
    /// The embedded GGUF model: a name in the models dir, a model directory
    /// or a `.gguf` file. Ignored when `url` is set.
    pub model: String,
    /// An OpenAI-compatible server (`http://host:port` or `.../v1`); when set,
    /// generation goes there instead of the embedded engine.
    pub url: Option<String>,
    /// The model name sent to the server (`model` in the request).
    pub llm_model: String,
    /// Device for the embedded engine: cpu, cuda[:N], metal, auto.
    pub device: String,
    /// Layers offloaded to the GPU (default: all, when the device is a GPU).
    pub gpu_layers: Option<u32>,
    /// CPU threads for the embedded engine (default: all cores).
    pub threads: Option<usize>,
    /// Context window in tokens (prompt and answer together).
    pub context: usize,
    /// Longest answer in tokens.
    pub max_tokens: u32,
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u32,
    /// Penalty on recently generated tokens (1 = off; embedded engine only).
    pub repeat_penalty: f32,
    /// Passages retrieved for an answer.
    pub top_k: usize,
    /// Below this cosine similarity between the question and the best
    /// passage, Cairn says the documents do not cover the question instead of
    /// generating.
    pub min_relevance: f32,
    /// Seconds to wait for a connection to the server.
    pub connect_timeout_secs: u64,
    /// Seconds of silence from the server before giving up.
    pub read_timeout_secs: u64,
    /// Attempts after a connection error or a 5xx answer.
    pub retries: u32,
    /// Check every sentence of a generated answer against the sources
    /// (per-sentence support, correcting citation markers) and regenerate
    /// once with stricter instructions when a sentence is unsupported.
    pub check: bool,
    /// Corrective retrieval: grade the passages with the critic; widen the
    /// search when ambiguous, retry with a rewritten query when incorrect,
    /// and give the model only the relevant sentences of each passage.
    pub crag: bool,
    /// Answer extractively (verbatim sentences from the sources, no
    /// generator).
    pub extractive: bool,
    /// What to answer when no generated sentence is supported: `none` (the
    /// generated answer, marked) or `extractive`.
    pub fallback: String,
    /// Sentences in an extractive answer.
    pub extract_sentences: usize,
    /// The strict second attempt of the embedded engine follows a grammar
    /// that puts a source marker `[n]` on every sentence.
    pub grammar: bool,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        GenerateConfig {
            model: DEFAULT_GENERATE_MODEL.into(),
            url: None,
            llm_model: "default".into(),
            device: "cpu".into(),
            gpu_layers: None,
            threads: None,
            context: 4096,
            max_tokens: 384,
            temperature: 0.0,
            top_p: 0.95,
            seed: 42,
            repeat_penalty: 1.1,
            top_k: 5,
            min_relevance: 0.30,
            connect_timeout_secs: 10,
            read_timeout_secs: 120,
            retries: 3,
            check: true,
            crag: false,
            extractive: false,
            fallback: "extractive".into(),
            extract_sentences: 5,
            grammar: true,
        }
    }
}

/// The generator used when none is configured.
pub const DEFAULT_GENERATE_MODEL: &str = "SmolLM2-135M-Instruct";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EmbedConfig {
    /// A model name in the models dir, or a path to a model directory.
    pub model: String,
    /// `cpu`, `cuda`, `cuda:N`, `metal`, or `auto`.
    pub device: String,
    /// Inputs per forward pass.
    pub batch_size: usize,
    /// Overrides the query instruction prefix read from the model files.
    pub query_prefix: Option<String>,
    /// `auto` (the default: `onnx` on CPUs, `candle` on GPUs), `onnx` (an
    /// ONNX graph on ONNX Runtime: CPU, or Core ML with the `coreml`
    /// feature; the fp32 graph is written from the safetensors) or `candle`
    /// (the model's safetensors on candle; built with the `candle`, `cuda`
    /// or `metal` feature).
    pub backend: String,
    /// The ONNX graph for the `onnx` backend; default `onnx/model.onnx` or
    /// `model.onnx` in the model directory.
    pub onnx_file: Option<String>,
    /// ONNX Runtime's library for the `onnx` backend; default
    /// `ORT_DYLIB_PATH`, else the `onnxruntime` entry of the models dir.
    pub onnxruntime: Option<String>,
    /// Threads for the `onnx` backend; 0 means every core.
    pub threads: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ChunkConfig {
    /// Largest chunk in model tokens, heading prefix included; 0 means "fit the model's window".
    pub max_tokens: usize,
    /// Tokens shared between neighbouring chunks.
    pub overlap_tokens: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Files larger than this are skipped with a reason.
    pub max_file_bytes: u64,
    /// Extra ignore file names read like `.gitignore` in every directory.
    pub ignore_files: Vec<String>,
    /// Include hidden files and directories.
    pub hidden: bool,
    /// Cross-document boilerplate: a block of lines found in at least this
    /// many of the collection's documents (and in at least 1% of them) is
    /// left out of chunks, when it is two or more such lines in a row or
    /// stands at the start or end of a document. 0 turns it off.
    pub boilerplate_min_docs: u32,
    /// Load each file in a loader process of its own (the `cairn` program
    /// started again), so that a hostile or broken file costs only itself:
    /// a crash, a hang past `load_timeout_secs` or memory past
    /// `loader_memory_mb` skips that file with the reason. Without it (or
    /// in a program that provides no loader process) files load in the
    /// ingesting process, with the caps below and panics caught.
    pub isolate: bool,
    /// The most seconds one file may take to load (parse and extract).
    pub load_timeout_secs: u64,
    /// The address space one loader process may use, in MiB.
    pub loader_memory_mb: u64,
    /// The most bytes one PDF stream or DOCX part may inflate to, in MiB
    /// (decompression bombs); a larger one is left out with a warning.
    pub max_inflate_mb: u64,
    /// Pages of a PDF whose text is read; later pages are left out with a
    /// warning.
    pub max_pdf_pages: u32,
    /// Read text out of images (PNG, JPEG, TIFF) and out of PDF pages that
    /// have no text layer (scans) with Tesseract (`apt install
    /// tesseract-ocr`; PDF pages are rendered with poppler-utils'
    /// `pdftoppm`). Off: images are skipped as binary files and a PDF
    /// without text is reported as such.
    pub ocr: bool,
    /// Tesseract's languages, `+`-separated (`eng`, `eng+deu`); each needs
    /// its data package (`tesseract-ocr-deu`).
    pub ocr_languages: String,
    /// Tesseract's page segmentation mode (`--psm`, 0-13; 3: automatic).
    pub ocr_psm: u8,
    /// Resolution PDF pages are rendered at for OCR, in dots per inch.
    pub ocr_dpi: u32,
    /// The most pages of one PDF that are read by OCR; later scanned pages
    /// are left out with a warning. (OCR also stops, with a warning, when
    /// three quarters of `load_timeout_secs` are spent, keeping the pages
    /// read.)
    pub ocr_max_pages: u32,
    /// The largest image (or rendered PDF page) OCR reads, in megapixels;
    /// a larger image is refused from its header, before anything decodes
    /// it, and a larger PDF page is rendered at a lower resolution.
    pub ocr_max_megapixels: u32,
    /// The Tesseract program: a name looked up on PATH, or a path.
    pub ocr_tesseract: String,
    /// The program that renders PDF pages (poppler-utils' `pdftoppm`).
    pub ocr_pdftoppm: String,
    /// Background ingestion (uploads and watched folders in `cairn serve`)
    /// runs at this nice value (0 to 19; 0: the same priority as queries),
    /// so that searches and answers keep their latency while it runs; idle
    /// cores still go to it. Linux only; elsewhere it runs at normal
    /// priority.
    pub background_nice: u8,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IndexConfig {
    /// Scalar type of the HNSW index: `f32`, `f16` or `i8`.
    pub quantization: String,
    /// Below this many chunks, dense search scans exactly instead of using HNSW.
    pub exact_threshold: usize,
    /// HNSW graph degree.
    pub hnsw_m: usize,
    pub ef_construction: usize,
    pub ef_search: usize,
    /// BM25 analyzer parts (for ablations; changing one rebuilds the BM25
    /// index from the catalog): English stemming, stopwords, and identifiers
    /// indexed whole with their prefixes and parts.
    pub bm25_stemming: bool,
    pub bm25_stopwords: bool,
    pub bm25_compounds: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SearchConfig {
    pub mode: SearchMode,
    pub top_k: usize,
    /// How the dense and BM25 lists are fused in hybrid mode: `score` (a
    /// weighted sum of max-normalised scores) or `rrf` (reciprocal ranks).
    pub fusion: String,
    /// The `k` of reciprocal-rank fusion: score = Σ w / (k + rank).
    pub rrf_k: f32,
    pub dense_weight: f32,
    pub bm25_weight: f32,
    /// How many candidates each retriever contributes to fusion (at least top_k).
    pub candidates: usize,
    /// BM25: weight of a match in a document's title, relative to a chunk's
    /// body. The title (the heading path of the document's first chunk) is
    /// indexed once per document, with its first chunk; 0 leaves it out of
    /// the query. (`bm25_heading_boost` is accepted as its old name.)
    #[serde(alias = "bm25_heading_boost")]
    pub bm25_title_boost: f32,
    /// BM25: weight of a match in the document's path (0 leaves it out).
    pub bm25_doc_boost: f32,
    /// At most this many passages of one document in a result (more only
    /// when too few other documents match); 0: no cap.
    pub max_per_document: usize,
    /// Reorder the fused candidates by the critic's relevance probability
    /// before they are returned or put in a prompt (`--rerank`).
    pub rerank: bool,
    /// How many fused candidates the critic reorders (at least top_k).
    pub rerank_depth: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: None,
            collection: "default".into(),
            models_dir: None,
            embed: EmbedConfig::default(),
            chunk: ChunkConfig::default(),
            ingest: IngestConfig::default(),
            index: IndexConfig::default(),
            search: SearchConfig::default(),
            generate: GenerateConfig::default(),
            critic: CriticConfig::default(),
            server: ServerConfig::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

impl Default for EmbedConfig {
    fn default() -> Self {
        EmbedConfig {
            model: DEFAULT_EMBED_MODEL.into(),
            device: "cpu".into(),
            batch_size: 32,
            query_prefix: None,
            backend: "auto".into(),
            onnx_file: None,
            onnxruntime: None,
            threads: 0,
        }
    }
}

impl Default for ChunkConfig {
    fn default() -> Self {
        ChunkConfig {
            max_tokens: 0,
            overlap_tokens: 32,
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_file_bytes: 64 * 1024 * 1024,
            ignore_files: vec![".cairnignore".into()],
            hidden: false,
            boilerplate_min_docs: 3,
            isolate: true,
            load_timeout_secs: 60,
            loader_memory_mb: 2048,
            max_inflate_mb: 64,
            max_pdf_pages: 2000,
            ocr: true,
            ocr_languages: "eng".into(),
            ocr_psm: 3,
            ocr_dpi: 300,
            ocr_max_pages: 100,
            ocr_max_megapixels: 40,
            ocr_tesseract: "tesseract".into(),
            ocr_pdftoppm: "pdftoppm".into(),
            background_nice: 10,
        }
    }
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            quantization: "f32".into(),
            exact_threshold: 20_000,
            hnsw_m: 16,
            ef_construction: 128,
            ef_search: 96,
            bm25_stemming: true,
            bm25_stopwords: true,
            bm25_compounds: true,
        }
    }
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            mode: SearchMode::Hybrid,
            fusion: "score".into(),
            top_k: 5,
            rrf_k: 10.0,
            dense_weight: 1.0,
            bm25_weight: 1.0,
            candidates: 50,
            bm25_title_boost: 1.0,
            bm25_doc_boost: 0.5,
            max_per_document: 0,
            rerank: false,
            rerank_depth: 20,
        }
    }
}

/// The embedding model used when none is configured.
pub const DEFAULT_EMBED_MODEL: &str = "all-MiniLM-L6-v2";

impl Config {
    /// Read a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parse TOML text over the defaults.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The config file used when `--config` is not given: `./cairn.toml` if it
    /// exists, else the platform config dir's `cairn.toml` if it exists.
    pub fn default_file() -> Option<PathBuf> {
        let local = PathBuf::from("cairn.toml");
        if local.is_file() {
            return Some(local);
        }
        let p = directories::ProjectDirs::from("", "", "cairn")?
            .config_dir()
            .join("cairn.toml");
        p.is_file().then_some(p)
    }

    /// Apply `CAIRN_*` environment variables, read through `get` so tests can
    /// pass their own environment.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(field: &str, v: &str) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            v.parse::<T>().map_err(|e| ConfigError::Field {
                field: field.into(),
                message: format!("`{v}`: {e}"),
            })
        }
        if let Some(v) = get("CAIRN_OCR") {
            self.ingest.ocr = parse("CAIRN_OCR", &v)?;
        }
        if let Some(v) = get("CAIRN_OCR_LANGUAGES") {
            self.ingest.ocr_languages = v;
        }
        if let Some(v) = get("CAIRN_INGEST_BACKGROUND_NICE") {
            self.ingest.background_nice = parse("CAIRN_INGEST_BACKGROUND_NICE", &v)?;
        }
        if let Some(v) = get("CAIRN_TESSERACT") {
            self.ingest.ocr_tesseract = v;
        }
        if let Some(v) = get("CAIRN_DATA_DIR") {
            self.data_dir = Some(v.into());
        }
        if let Some(v) = get("CAIRN_COLLECTION") {
            self.collection = v;
        }
        if let Some(v) = get("CAIRN_MODELS_DIR") {
            self.models_dir = Some(v.into());
        }
        if let Some(v) = get("CAIRN_EMBED_MODEL") {
            self.embed.model = v;
        }
        if let Some(v) = get("CAIRN_DEVICE") {
            self.embed.device = v;
        }
        if let Some(v) = get("CAIRN_EMBED_BACKEND") {
            self.embed.backend = v;
        }
        if let Some(v) = get("CAIRN_ONNX_FILE") {
            self.embed.onnx_file = Some(v);
        }
        if let Some(v) = get("CAIRN_EMBED_THREADS") {
            self.embed.threads = parse("CAIRN_EMBED_THREADS", &v)?;
        }
        if let Some(v) = get("CAIRN_EMBED_BATCH_SIZE") {
            self.embed.batch_size = parse("CAIRN_EMBED_BATCH_SIZE", &v)?;
        }
        if let Some(v) = get("CAIRN_CHUNK_MAX_TOKENS") {
            self.chunk.max_tokens = parse("CAIRN_CHUNK_MAX_TOKENS", &v)?;
        }
        if let Some(v) = get("CAIRN_CHUNK_OVERLAP_TOKENS") {
            self.chunk.overlap_tokens = parse("CAIRN_CHUNK_OVERLAP_TOKENS", &v)?;
        }
        if let Some(v) = get("CAIRN_SEARCH_MODE") {
            self.search.mode = parse("CAIRN_SEARCH_MODE", &v)?;
        }
        if let Some(v) = get("CAIRN_CRITIC") {
            self.critic.set_kind(&v);
        }
        if let Some(v) = get("CAIRN_CRITIC_DEVICE") {
            self.critic.device = v;
        }
        if let Some(v) = get("CAIRN_CRITIC_MODEL") {
            self.critic.model = Some(v);
        }
        if let Some(v) = get("CAIRN_INDEX_QUANTIZATION") {
            self.index.quantization = v;
        }
        if let Some(v) = get("CAIRN_EXACT_THRESHOLD") {
            self.index.exact_threshold = parse("CAIRN_EXACT_THRESHOLD", &v)?;
        }
        if let Some(v) = get("CAIRN_LLM_MODEL_FILE") {
            self.generate.model = v;
        }
        if let Some(v) = get("CAIRN_LLM_URL") {
            self.generate.url = (!v.is_empty()).then_some(v);
        }
        if let Some(v) = get("CAIRN_LLM_MODEL") {
            self.generate.llm_model = v;
        }
        if let Some(v) = get("CAIRN_LLM_DEVICE") {
            self.generate.device = v;
        }
        if let Some(v) = get("CAIRN_LLM_THREADS") {
            self.generate.threads = Some(parse("CAIRN_LLM_THREADS", &v)?);
        }
        if let Some(v) = get("CAIRN_LLM_CONTEXT") {
            self.generate.context = parse("CAIRN_LLM_CONTEXT", &v)?;
        }
        if let Some(v) = get("CAIRN_MIN_RELEVANCE") {
            self.generate.min_relevance = parse("CAIRN_MIN_RELEVANCE", &v)?;
        }
        if let Some(v) = get("CAIRN_SNAPSHOT_EVERY") {
            self.cluster.snapshot_every = parse("CAIRN_SNAPSHOT_EVERY", &v)?;
        }
        if let Some(v) = get("CAIRN_LOG_KEEP") {
            self.cluster.log_keep = parse("CAIRN_LOG_KEEP", &v)?;
        }
        if let Some(v) = get("CAIRN_SHARD_TIMEOUT_MS") {
            self.cluster.shard_timeout_ms = parse("CAIRN_SHARD_TIMEOUT_MS", &v)?;
        }
        if let Some(v) = get("CAIRN_GENERATION_IDLE_MS") {
            self.cluster.generation_idle_ms = parse("CAIRN_GENERATION_IDLE_MS", &v)?;
        }
        if let Some(v) = get("CAIRN_ADDR") {
            self.server.addr = v;
        }
        if let Some(v) = get("CAIRN_API_KEY").filter(|v| !v.is_empty()) {
            self.server.api_keys.push(ApiKeyConfig {
                key: v,
                collections: vec![],
            });
        }
        Ok(())
    }

    /// Check values that serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, message: String| {
            Err(ConfigError::Field {
                field: field.into(),
                message,
            })
        };
        if !matches!(self.index.quantization.as_str(), "f32" | "f16" | "i8") {
            return bad(
                "index.quantization",
                format!("`{}` (expected f32, f16 or i8)", self.index.quantization),
            );
        }
        if !matches!(self.search.fusion.as_str(), "score" | "rrf") {
            return bad(
                "search.fusion",
                format!("`{}` (expected score or rrf)", self.search.fusion),
            );
        }
        if !matches!(self.embed.backend.as_str(), "auto" | "candle" | "onnx") {
            return bad(
                "embed.backend",
                format!("`{}` (expected auto, onnx or candle)", self.embed.backend),
            );
        }
        for (field, v) in [
            ("search.bm25_title_boost", self.search.bm25_title_boost),
            ("search.bm25_doc_boost", self.search.bm25_doc_boost),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(field, format!("{v} (expected a number >= 0)"));
            }
        }
        if self.embed.batch_size == 0 {
            return bad("embed.batch_size", "must be at least 1".into());
        }
        if self.search.top_k == 0 {
            return bad("search.top_k", "must be at least 1".into());
        }
        if self.search.rerank_depth == 0 {
            return bad("search.rerank_depth", "must be at least 1".into());
        }
        if self.chunk.max_tokens != 0 && self.chunk.overlap_tokens >= self.chunk.max_tokens {
            return bad(
                "chunk.overlap_tokens",
                format!(
                    "{} must be smaller than chunk.max_tokens ({})",
                    self.chunk.overlap_tokens, self.chunk.max_tokens
                ),
            );
        }
        for (field, v) in [
            ("ingest.load_timeout_secs", self.ingest.load_timeout_secs),
            ("ingest.loader_memory_mb", self.ingest.loader_memory_mb),
            ("ingest.max_inflate_mb", self.ingest.max_inflate_mb),
            ("ingest.max_pdf_pages", self.ingest.max_pdf_pages as u64),
            ("ingest.ocr_max_pages", self.ingest.ocr_max_pages as u64),
            (
                "ingest.ocr_max_megapixels",
                self.ingest.ocr_max_megapixels as u64,
            ),
        ] {
            if v == 0 {
                return bad(field, "must be at least 1".into());
            }
        }
        let i = &self.ingest;
        if !(72..=1200).contains(&i.ocr_dpi) {
            return bad(
                "ingest.ocr_dpi",
                format!("{} (expected 72 to 1200)", i.ocr_dpi),
            );
        }
        if i.background_nice > 19 {
            return bad(
                "ingest.background_nice",
                format!("{} (expected 0 to 19)", i.background_nice),
            );
        }
        if i.ocr_psm > 13 {
            return bad(
                "ingest.ocr_psm",
                format!("{} (expected 0 to 13)", i.ocr_psm),
            );
        }
        let language_ok =
            |l: &str| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !i.ocr_languages.split('+').all(language_ok) {
            return bad(
                "ingest.ocr_languages",
                format!(
                    "`{}` (expected Tesseract language codes joined by `+`, such as `eng` or `eng+deu`)",
                    i.ocr_languages
                ),
            );
        }
        for (field, program) in [
            ("ingest.ocr_tesseract", &i.ocr_tesseract),
            ("ingest.ocr_pdftoppm", &i.ocr_pdftoppm),
        ] {
            if program.trim().is_empty() {
                return bad(field, "must name a program".into());
            }
        }
        if self.ingest.loader_memory_mb < 64 {
            return bad(
                "ingest.loader_memory_mb",
                format!(
                    "{} is too little for a loader process to start (at least 64)",
                    self.ingest.loader_memory_mb
                ),
            );
        }
        if self.index.hnsw_m < 2 {
            return bad("index.hnsw_m", "must be at least 2".into());
        }
        let g = &self.generate;
        if !(g.temperature >= 0.0 && g.temperature <= 5.0) {
            return bad(
                "generate.temperature",
                format!("{} (expected 0 to 5)", g.temperature),
            );
        }
        if !(g.top_p > 0.0 && g.top_p <= 1.0) {
            return bad(
                "generate.top_p",
                format!("{} (expected more than 0, at most 1)", g.top_p),
            );
        }
        if !(g.repeat_penalty > 0.0 && g.repeat_penalty <= 10.0) {
            return bad(
                "generate.repeat_penalty",
                format!("{} (expected more than 0, 1 = off)", g.repeat_penalty),
            );
        }
        if g.max_tokens == 0 {
            return bad("generate.max_tokens", "must be at least 1".into());
        }
        if g.context < 256 {
            return bad(
                "generate.context",
                format!("{} (expected at least 256)", g.context),
            );
        }
        if g.max_tokens as usize >= g.context {
            return bad(
                "generate.max_tokens",
                format!(
                    "{} must be smaller than generate.context ({})",
                    g.max_tokens, g.context
                ),
            );
        }
        if g.top_k == 0 {
            return bad("generate.top_k", "must be at least 1".into());
        }
        if !(-1.0..=1.0).contains(&g.min_relevance) {
            return bad(
                "generate.min_relevance",
                format!("{} (expected -1 to 1)", g.min_relevance),
            );
        }
        if !matches!(g.fallback.as_str(), "none" | "extractive") {
            return bad(
                "generate.fallback",
                format!("`{}` (expected none or extractive)", g.fallback),
            );
        }
        if g.extract_sentences == 0 {
            return bad("generate.extract_sentences", "must be at least 1".into());
        }
        let c = &self.critic;
        if !matches!(
            c.kind.as_str(),
            "embedding" | "llm" | "cross-encoder" | "late-interaction"
        ) {
            return bad(
                "critic.kind",
                format!(
                    "`{}` (expected embedding, llm, cross-encoder or late-interaction)",
                    c.kind
                ),
            );
        }
        if c.kind == "cross-encoder" && c.model.as_deref().is_none_or(str::is_empty) {
            return bad(
                "critic.model",
                "is required with critic.kind = \"cross-encoder\": the directory of a sequence-classification model (config.json, tokenizer.json, model.safetensors or model.onnx)".into(),
            );
        }
        for (field, v) in [
            ("critic.support_threshold", c.support_threshold),
            ("critic.correct", c.correct),
            ("critic.incorrect", c.incorrect),
            ("critic.keep", c.keep),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(field, format!("{v} (expected a probability, 0 to 1)"));
            }
        }
        if c.incorrect > c.correct {
            return bad(
                "critic.incorrect",
                format!(
                    "{} must not exceed critic.correct ({})",
                    c.incorrect, c.correct
                ),
            );
        }
        for (field, cal) in [
            (
                "critic.relevance",
                c.calibration(crate::Judgement::Relevance),
            ),
            ("critic.support", c.calibration(crate::Judgement::Support)),
        ] {
            if !(cal.a.is_finite() && cal.b.is_finite() && cal.a > 0.0) {
                return bad(
                    field,
                    format!(
                        "a = {}, b = {} (expected finite numbers, a > 0)",
                        cal.a, cal.b
                    ),
                );
            }
        }
        if let Some(u) = &g.url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return bad(
                    "generate.url",
                    format!("`{u}` (expected http:// or https://)"),
                );
            }
        }
        let s = &self.server;
        if s.max_body_bytes < 1024 {
            return bad("server.max_body_bytes", "must be at least 1024".into());
        }
        if s.request_timeout_secs == 0 || s.generate_timeout_secs == 0 {
            return bad("server.request_timeout_secs", "must be at least 1".into());
        }
        if s.header_timeout_secs == 0 {
            return bad("server.header_timeout_secs", "must be at least 1".into());
        }
        if s.max_queued_jobs == 0 {
            return bad("server.max_queued_jobs", "must be at least 1".into());
        }
        for (i, k) in s.api_keys.iter().enumerate() {
            if k.key.len() < 16 {
                return bad(
                    &format!("server.api_keys[{i}].key"),
                    "must be at least 16 characters".into(),
                );
            }
            for c in &k.collections {
                validate_collection_name(c)?;
            }
        }
        validate_collection_name(&self.collection)
    }

    /// The data dir, resolved to the platform default when unset.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| {
            directories::ProjectDirs::from("", "", "cairn")
                .map(|d| d.data_dir().to_path_buf())
                .unwrap_or_else(|| PathBuf::from(".cairn"))
        })
    }

    /// The models dir, resolved to the platform default when unset.
    pub fn models_dir(&self) -> PathBuf {
        self.models_dir.clone().unwrap_or_else(default_models_dir)
    }
}

/// `~/.cache/cairn/models` (or the platform's equivalent).
pub fn default_models_dir() -> PathBuf {
    directories::ProjectDirs::from("", "", "cairn")
        .map(|d| d.cache_dir().join("models"))
        .unwrap_or_else(|| PathBuf::from(".cairn-models"))
}

/// Collection names become directory names: keep them simple.
pub fn validate_collection_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Field {
            field: "collection".into(),
            message: format!(
                "`{name}`: use 1-64 characters from [A-Za-z0-9._-], not starting with '.'"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn each_critic_kind_has_its_calibration_and_a_cross_encoder_needs_a_model() {
        use crate::Judgement::{Relevance, Support};
        let d = Config::default();
        assert_eq!(d.critic.calibration(Relevance), EMBEDDING_RELEVANCE);
        assert_eq!(d.critic.calibration(Support), EMBEDDING_SUPPORT);
        let llm = Config::from_toml("[critic]\nkind = \"llm\"\n").unwrap();
        llm.validate().unwrap();
        assert_eq!(
            llm.critic.calibration(Support),
            Calibration { a: 1.0, b: 0.0 }
        );
        let set = Config::from_toml("[critic]\nkind = \"llm\"\nsupport = { a = 2.0, b = -1.0 }\n")
            .unwrap();
        assert_eq!(
            set.critic.calibration(Support),
            Calibration { a: 2.0, b: -1.0 }
        );
        assert_eq!(
            set.critic.calibration(Relevance),
            Calibration { a: 1.0, b: 0.0 }
        );
        let e = Config::from_toml("[critic]\nkind = \"cross-encoder\"\n")
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("critic.model"), "{e}");
        let ce = Config::from_toml("[critic]\nkind = \"cross-encoder\"\nmodel = \"/m\"\n").unwrap();
        ce.validate().unwrap();
        let e = Config::from_toml("[critic]\nkind = \"nli\"\n")
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("critic.kind") && e.contains("llm"), "{e}");
        let e = Config::from_toml("[search]\nrerank = true\nrerank_depth = 0\n")
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("search.rerank_depth"), "{e}");
        let mut env = Config::default();
        env.apply_env(|k| match k {
            "CAIRN_CRITIC" => Some("cross-encoder".into()),
            "CAIRN_CRITIC_MODEL" => Some("/models/reranker".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(env.critic.kind, "cross-encoder");
        assert_eq!(env.critic.model.as_deref(), Some("/models/reranker"));
    }

    #[test]
    fn the_late_interaction_critic_is_a_kind_with_its_own_fit() {
        use crate::Judgement::{Relevance, Support};
        let li = Config::from_toml("[critic]\nkind = \"late-interaction\"\n").unwrap();
        li.validate().unwrap();
        let d = CriticConfig::for_kind("late-interaction");
        assert_eq!(li.critic, d);
        assert_eq!(li.critic.calibration(Relevance), LATE_INTERACTION_RELEVANCE);
        assert_eq!(li.critic.calibration(Support), LATE_INTERACTION_SUPPORT);
        assert_ne!(d.grade, CriticConfig::default().grade);
        // What the file sets is kept; what it leaves out is the kind's.
        let set = Config::from_toml(
            "[critic]\nkind = \"late-interaction\"\nkeep = 0.3\nrelevance = { a = 2.0, b = -1.0 }\n",
        )
        .unwrap();
        assert_eq!(set.critic.keep, 0.3);
        assert_eq!(set.critic.support_threshold, d.support_threshold);
        assert_eq!(
            set.critic.calibration(Relevance),
            Calibration { a: 2.0, b: -1.0 }
        );
        // --critic / CAIRN_CRITIC switch to the kind's fit, and back.
        let mut c = Config::default();
        c.critic.set_kind("late-interaction");
        assert_eq!(c.critic, d);
        c.critic.set_kind("embedding");
        assert_eq!(c.critic, CriticConfig::default());
        let mut env = Config::default();
        env.apply_env(|k| (k == "CAIRN_CRITIC").then(|| "late-interaction".into()))
            .unwrap();
        assert_eq!(env.critic, d);
        // A config written out reads back the same.
        let text = toml::to_string(&li).unwrap();
        assert_eq!(Config::from_toml(&text).unwrap(), li);
        // An unknown kind is an error naming the field and the kinds.
        let e = Config::from_toml("[critic]\nkind = \"late\"\n")
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("critic.kind") && e.contains("late-interaction"),
            "{e}"
        );
        // Unknown fields are still refused.
        assert!(Config::from_toml("[critic]\nkinds = \"x\"\n").is_err());
    }

    #[test]
    fn toml_overrides_defaults_and_env_overrides_toml() {
        let mut c =
            Config::from_toml("collection = \"papers\"\n[search]\ntop_k = 9\nmode = \"bm25\"\n")
                .unwrap();
        assert_eq!(c.collection, "papers");
        assert_eq!(c.search.top_k, 9);
        assert_eq!(c.search.mode, SearchMode::Bm25);
        assert_eq!(c.embed.model, DEFAULT_EMBED_MODEL);
        let env: HashMap<&str, &str> = [
            ("CAIRN_COLLECTION", "notes"),
            ("CAIRN_SEARCH_MODE", "dense"),
        ]
        .into();
        c.apply_env(|k| env.get(k).map(|s| s.to_string())).unwrap();
        assert_eq!(c.collection, "notes");
        assert_eq!(c.search.mode, SearchMode::Dense);
        c.validate().unwrap();
    }

    #[test]
    fn ocr_settings_from_toml_and_env_are_checked_by_name() {
        let mut c = Config::from_toml(
            "[ingest]\nocr_languages = \"eng+deu\"\nocr_dpi = 200\nocr_max_pages = 5\n",
        )
        .unwrap();
        assert!(c.ingest.ocr);
        assert_eq!(c.ingest.ocr_languages, "eng+deu");
        assert_eq!((c.ingest.ocr_dpi, c.ingest.ocr_max_pages), (200, 5));
        c.validate().unwrap();
        let env: HashMap<&str, &str> = [
            ("CAIRN_OCR", "false"),
            ("CAIRN_TESSERACT", "/opt/t/tesseract"),
        ]
        .into();
        c.apply_env(|k| env.get(k).map(|s| s.to_string())).unwrap();
        assert!(!c.ingest.ocr);
        assert_eq!(c.ingest.ocr_tesseract, "/opt/t/tesseract");
        let e = c
            .apply_env(|k| (k == "CAIRN_OCR").then(|| "maybe".to_string()))
            .unwrap_err();
        assert!(e.to_string().contains("CAIRN_OCR"), "{e}");
        for (toml, field) in [
            ("ocr_dpi = 20", "ingest.ocr_dpi"),
            ("ocr_psm = 14", "ingest.ocr_psm"),
            ("background_nice = 20", "ingest.background_nice"),
            ("ocr_languages = \"eng+\"", "ingest.ocr_languages"),
            ("ocr_languages = \"eng; rm -rf\"", "ingest.ocr_languages"),
            ("ocr_max_pages = 0", "ingest.ocr_max_pages"),
            ("ocr_max_megapixels = 0", "ingest.ocr_max_megapixels"),
            ("ocr_tesseract = \" \"", "ingest.ocr_tesseract"),
        ] {
            let c = Config::from_toml(&format!("[ingest]\n{toml}\n")).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{toml}: {e}");
        }
    }

    #[test]
    fn unknown_fields_and_bad_values_are_named() {
        let e = Config::from_toml("[search]\ntopk = 3\n").unwrap_err();
        assert!(e.contains("topk"), "{e}");
        let mut c = Config::default();
        let e = c
            .apply_env(|k| (k == "CAIRN_EMBED_BATCH_SIZE").then(|| "lots".to_string()))
            .unwrap_err();
        assert!(e.to_string().contains("CAIRN_EMBED_BATCH_SIZE"), "{e}");
        c.index.quantization = "f8".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("index.quantization"));
        let mut c = Config::default();
        c.search.bm25_title_boost = -1.0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("search.bm25_title_boost"), "{e}");
        let c =
            Config::from_toml("[search]\nbm25_title_boost = 0.0\nbm25_doc_boost = 1.5\n").unwrap();
        assert_eq!(
            (c.search.bm25_title_boost, c.search.bm25_doc_boost),
            (0.0, 1.5)
        );
        assert!(c.validate().is_ok());
        // The old name still reads.
        let c = Config::from_toml("[search]\nbm25_heading_boost = 2.5\n").unwrap();
        assert_eq!(c.search.bm25_title_boost, 2.5);
    }

    #[test]
    fn collection_names_are_checked() {
        assert!(validate_collection_name("my-notes_2").is_ok());
        assert!(validate_collection_name("../etc").is_err());
        assert!(validate_collection_name("").is_err());
        assert!(validate_collection_name(".hidden").is_err());
    }
}
