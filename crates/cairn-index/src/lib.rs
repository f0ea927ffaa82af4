//! Indexes derived from the catalog.
//!
//! Nothing here is a source of truth: every index records the catalog
//! sequence it has applied, catches up from the catalog on open, and can be
//! deleted and rebuilt from it at any time.
//!
//! - [`vector`]: HNSW (usearch, cosine; f32/f16/i8) and exact search.
//! - [`bm25`]: lexical search with tantivy and an identifier-friendly analyzer.
//! - [`fusion`]: reciprocal-rank fusion of ranked lists.
//! - [`Indexes`]: the three kept in step with one catalog.

pub mod bm25;
mod error;
pub mod fusion;
mod indexes;
pub mod vector;

pub use error::{IndexError, Result};
pub use indexes::{CatchUp, Indexes};
