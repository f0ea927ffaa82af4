//! Judging retrieval and answers.
//!
//! - [`sentences`]: sentence splitting with exact byte ranges (abbreviations,
//!   identifiers, lists, code blocks);
//! - [`calibration`]: fitting a critic's raw scores to probabilities on
//!   labelled pairs;
//! - [`EmbeddingCritic`]: the embedding model as a [`Critic`];
//! - [`LateInteractionCritic`]: the embedding model's token vectors as a
//!   [`Critic`] (ColBERT-style MaxSim);
//! - [`support`]: per-sentence support of an answer, with marker correction;
//! - [`extract`]: extractive answers (verbatim sentences with spans);
//! - [`crag`]: corrective-retrieval grades, query rewriting and refinement.
//!
//! The [`Critic`] boundary itself is in `cairn-core`, beside the embedder's;
//! this crate knows critics only through it.

pub mod calibration;
pub mod crag;
pub mod embedding;
pub mod extract;
pub mod late;
pub mod sentences;
pub mod support;
#[cfg(test)]
mod testing;

pub use cairn_core::{Calibration, Critic, Judgement};
pub use embedding::EmbeddingCritic;
pub use late::LateInteractionCritic;

/// Errors of judging.
#[derive(Debug, thiserror::Error)]
pub enum CriticError {
    /// The critic itself failed (a model error): retrying will not help.
    #[error(transparent)]
    Critic(#[from] cairn_core::CriticError),
    /// Calibration data cannot be fitted (one label only, too few samples).
    #[error("cannot calibrate: {0}")]
    Calibration(String),
}

pub type Result<T> = std::result::Result<T, CriticError>;
