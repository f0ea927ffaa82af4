//! Indexes derived from the catalog.
//!
//! Nothing here is a source of truth: every index records the catalog
//! sequence it has applied, catches up from the catalog on open, and can be
//! deleted and rebuilt from it at any time.
//!
//! - [`vector`]: HNSW (usearch, cosine; f32/f16/i8) and exact search.
//! - [`analyzer`]: the identifier-friendly analyzer BM25 indexes and queries with.
//! - [`bm25`]: lexical search with tantivy.
//! - [`fusion`]: reciprocal-rank fusion of ranked lists.
//! - [`Indexes`]: the three kept in step with one catalog.
//!
//! # Concurrency
//!
//! Searches never wait for a catch-up. [`Indexes`] (like [`vector::HnswIndex`]
//! and [`bm25::Bm25Index`]) is `Send + Sync` and used through `&self`: one
//! writer at a time catches up (an internal mutex serialises catch-ups and
//! rebuilds, and searches never take it), while any number of threads search.
//! The writer adds to the HNSW graph in place (usearch adds and searches run
//! concurrently), stages BM25 changes in tantivy's writer and commits them
//! while searches read the previous commit, and saves the graph while searches
//! go on. A search waits only for brief moments: while the HNSW graph grows
//! its capacity (at least doubling each time), while the first vector of an
//! empty graph goes in, while a reset swaps in a new graph (a pointer), or
//! for a place among the graph's concurrent searches (other searches, not
//! the writer).

pub mod analyzer;
pub mod bm25;
mod error;
pub mod fusion;
mod indexes;
mod scan;
pub mod vector;

pub use error::{IndexError, Result};
pub use indexes::{CatchUp, IndexCheck, Indexes};
