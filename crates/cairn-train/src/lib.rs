//! Training in Rust, on candle's autograd (CPU).
//!
//! - [`BertClassifier`]: a BERT cross-encoder whose forward pass records its
//!   backward pass for every weight (candle-nn's fused layer norm and
//!   softmax do not), loaded from a sentence encoder's or a cross-encoder's
//!   safetensors, saved as a `BertForSequenceClassification` checkpoint.
//! - [`train_reranker`]: fine-tunes it on (question, passage, relevant or
//!   not) pairs with binary cross-entropy and AdamW (linear warm-up and
//!   decay, gradient clipping), the recipe of sentence-transformers'
//!   `CrossEncoder.fit`; keeps the epoch that ranks a validation split best.
//! - [`Scorer`]: the trained model's scores for (question, passage) pairs,
//!   for checking it before it is installed.
//!
//! - [`LlamaLora`] and [`train_lora`]: the generator's low-rank adapter,
//!   trained on cited answers, saved as a LoRA GGUF llama.cpp applies.
//!
//! The saved directory is what `cairn_models::CrossEncoder` (the reranker
//! and critic on ONNX Runtime) loads, with its ONNX graph written by
//! [`install_files`].

mod bert;
mod generator;
mod llama;
mod reranker;

pub use bert::{bce_with_logits, Batch, BertClassifier, BertShape};
pub use generator::{mean_loss, train_lora, GenExample, LoraFigures, LoraOptions, MIN_EXAMPLES};
pub use llama::{LlamaLora, LlamaShape, Lora, TARGETS};
pub use reranker::{
    install_files, train_reranker, GroupMetrics, Loss, PairEncoder, RerankExample, RerankFigures,
    RerankOptions, Scorer, TrainedReranker, MIN_PAIRS,
};

use std::path::PathBuf;

/// Errors of training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The base model cannot be trained (missing file, wrong layout).
    #[error("{path}: {message}")]
    BadModel { path: PathBuf, message: String },
    /// The training data is unusable.
    #[error("training data: {0}")]
    BadData(String),
    /// Too little data to train on.
    #[error("too few {what} to train on: {have}, at least {need} are needed{hint}")]
    TooFew {
        what: &'static str,
        have: usize,
        need: usize,
        hint: String,
    },
    /// Bad options.
    #[error("{field}: {message}")]
    Options {
        field: &'static str,
        message: String,
    },
    /// The tensor library failed (shapes, memory).
    #[error("training computation failed: {0}")]
    Compute(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Writing the ONNX graph of the result failed.
    #[error(transparent)]
    Model(#[from] cairn_models::ModelError),
}

impl TrainError {
    pub(crate) fn compute(e: candle_core::Error) -> TrainError {
        TrainError::Compute(e.to_string())
    }
}

/// SplitMix64: the deterministic generator for new weights and the order of
/// the training pairs.
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    /// Box–Muller.
    pub(crate) fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }
    /// Fisher–Yates.
    pub(crate) fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}
