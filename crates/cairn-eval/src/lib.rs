//! Evaluation: question sets (Cairn's QA JSONL and BEIR), the ranking
//! metrics computed on them, and answer matching.
//!
//! Metrics are computed on the ranked list of *documents*: the chunks a
//! search returns are mapped to their documents and each document counts
//! once, at the rank of its best chunk.

pub mod calibrate;
pub mod metrics;
pub mod run;
pub mod sets;

pub use metrics::{answer_matches, dedup_docs, ndcg_at, reciprocal_rank_at, RankScores};
pub use sets::{load_beir, load_qa, load_qa_sets, BeirSet, QaItem, OUT_OF_CORPUS};

use std::path::PathBuf;

/// Errors reading evaluation data, each naming the file, line and field.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(transparent)]
    Engine(#[from] cairn_engine::EngineError),
}

pub type Result<T, E = EvalError> = std::result::Result<T, E>;
