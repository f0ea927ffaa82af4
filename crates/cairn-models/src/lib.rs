//! Models and where they run.
//!
//! - [`Device`]: `cpu`, `cuda[:N]`, `metal[:N]`, `coreml`, `auto`. Backends are
//!   cargo features (`cuda`, `metal`) forwarded to candle; asking for one that
//!   was not compiled in is [`ModelError::NotCompiled`].
//! - [`BertEmbedder`]: BERT-family sentence encoders (all-MiniLM-L6-v2,
//!   bge-small/base-en-v1.5) on candle, implementing [`cairn_core::Embedder`].
//! - [`registry`]: resolving a model name to a directory, listing installed
//!   models, and fetching them from the package index or Hugging Face.
//!
//! ```no_run
//! use cairn_core::Embedder;
//! use cairn_models::{BertEmbedder, Device};
//! let dir = cairn_models::registry::resolve("all-MiniLM-L6-v2", std::path::Path::new("models")).unwrap();
//! let model = BertEmbedder::load(&dir, Device::Cpu, 32).unwrap();
//! let v = model.embed_query("how do I rotate the WAL?").unwrap();
//! assert_eq!(v.len(), 384);
//! ```

mod bert;
mod device;
#[cfg(feature = "ort")]
pub mod onnx;
pub mod registry;

pub use bert::{BertEmbedder, Pooling, SentenceConfig};
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
