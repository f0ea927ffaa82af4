//! Indexes derived from the catalog.
//!
//! Nothing here is a source of truth: every index records the catalog
//! sequence it has applied, catches up from the catalog on open, and can be
//! deleted and rebuilt from it at any time.
//!
//! - [`vector`]: HNSW (Cairn's own graph, `hnsw`: inner product on unit
//!   vectors; f32/f16/i8) and exact search.
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
//! The writer adds to the HNSW graph in place (adds and searches run
//! concurrently; searches take no lock), stages BM25 changes in tantivy's writer and commits them
//! while searches read the previous commit, and saves the graph while searches
//! go on. A search waits only for the brief moment a reset swaps in a new graph
//! (a pointer).

pub mod analyzer;
pub mod bm25;
mod error;
pub mod fusion;
mod hnsw;
mod indexes;
mod scan;
pub mod vector;

pub use error::{IndexError, Result};
pub use indexes::{CatchUp, IndexCheck, Indexes};
