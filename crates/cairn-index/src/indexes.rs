//! The derived indexes of one collection, kept in step with its catalog.

use crate::bm25::Bm25Index;
use crate::vector::{ExactIndex, HnswIndex, HnswParams};
use crate::{IndexError, Result};
use cairn_core::config::IndexConfig;
use cairn_core::{ChunkId, Progress, Scored, Seq};
use cairn_store::Catalog;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What a catch-up did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CatchUp {
    pub from: Seq,
    pub to: Seq,
    pub added: u64,
    pub removed: u64,
    /// An index was missing, corrupt or built with other parameters, and was rebuilt.
    pub rebuilt: bool,
}

/// HNSW + exact + BM25 over one catalog.
pub struct Indexes {
    dir: PathBuf,
    cfg: IndexConfig,
    dim: usize,
    hnsw: HnswIndex,
    bm25: Bm25Index,
    exact: Mutex<Option<Arc<ExactIndex>>>,
    rebuilt: bool,
}

impl std::fmt::Debug for Indexes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Indexes")
            .field("dir", &self.dir)
            .field("vectors", &self.hnsw.len())
            .finish()
    }
}

impl Indexes {
    fn params(cfg: &IndexConfig, dim: usize) -> HnswParams {
        HnswParams {
            dim,
            quantization: cfg.quantization.clone(),
            m: cfg.hnsw_m,
            ef_construction: cfg.ef_construction,
            ef_search: cfg.ef_search,
        }
    }

    /// Open the indexes in `dir` and bring them up to the catalog's sequence.
    /// A missing or corrupt index is rebuilt from the catalog.
    pub fn open(
        dir: &Path,
        dim: usize,
        cfg: &IndexConfig,
        catalog: &mut Catalog,
        progress: &dyn Progress,
    ) -> Result<Indexes> {
        let hnsw_dir = dir.join("hnsw");
        let bm25_dir = dir.join("bm25");
        let params = Self::params(cfg, dim);
        let mut rebuilt = false;
        let hnsw = match HnswIndex::open(&hnsw_dir, &params) {
            Ok(h) => h,
            Err(IndexError::Corrupt { path, message }) => {
                tracing::warn!(
                    "vector index {} is corrupt ({message}); rebuilding from the catalog",
                    path.display()
                );
                HnswIndex::destroy(&hnsw_dir)?;
                rebuilt = true;
                HnswIndex::open(&hnsw_dir, &params)?
            }
            Err(e) => return Err(e),
        };
        let bm25 = match Bm25Index::open_or_create(&bm25_dir) {
            Ok(b) => b,
            Err(IndexError::Corrupt { path, message }) => {
                tracing::warn!(
                    "BM25 index {} is corrupt ({message}); rebuilding from the catalog",
                    path.display()
                );
                std::fs::remove_dir_all(&bm25_dir).map_err(|source| IndexError::Io {
                    path: bm25_dir.clone(),
                    source,
                })?;
                rebuilt = true;
                Bm25Index::open_or_create(&bm25_dir)?
            }
            Err(e) => return Err(e),
        };
        let mut me = Indexes {
            dir: dir.to_path_buf(),
            cfg: cfg.clone(),
            dim,
            hnsw,
            bm25,
            exact: Mutex::new(None),
            rebuilt,
        };
        me.catch_up(catalog, progress)?;
        Ok(me)
    }

    /// The sequence both indexes have applied.
    pub fn applied_seq(&self) -> Seq {
        self.hnsw.applied_seq().min(self.bm25.applied_seq())
    }

    /// Number of vectors in the HNSW graph.
    pub fn vectors(&self) -> usize {
        self.hnsw.len()
    }

    /// Number of chunks in the BM25 index.
    pub fn bm25_docs(&self) -> u64 {
        self.bm25.num_docs()
    }

    /// Memory held by the HNSW graph, in bytes.
    pub fn hnsw_memory(&self) -> usize {
        self.hnsw.memory_usage()
    }

    /// Apply every catalog change after the indexes' sequence.
    pub fn catch_up(&mut self, catalog: &mut Catalog, progress: &dyn Progress) -> Result<CatchUp> {
        let catalog_seq = catalog.last_seq()?;
        if self.hnsw.applied_seq() > catalog_seq || self.bm25.applied_seq() > catalog_seq {
            // The catalog is older than the indexes (restored from a backup,
            // or replaced): nothing derived from the newer state can be kept.
            tracing::warn!("indexes are ahead of the catalog; rebuilding");
            self.reset()?;
        }
        let from_h = self.hnsw.applied_seq();
        let from_b = self.bm25.applied_seq();
        let from = from_h.min(from_b);
        let rebuilt = std::mem::take(&mut self.rebuilt) || (from == 0 && catalog_seq > 0);
        if from == catalog_seq {
            return Ok(CatchUp {
                from,
                to: from,
                rebuilt,
                ..Default::default()
            });
        }
        let (hnsw, bm25) = (&mut self.hnsw, &mut self.bm25);
        let (to, added, removed) = catalog.snapshot(|c| -> Result<(Seq, u64, u64)> {
            let to = c.last_seq()?;
            let total = c.count_chunks_since(from)?;
            progress.begin(
                if rebuilt {
                    "rebuilding indexes"
                } else {
                    "indexing"
                },
                total,
            );
            let tombstones = c.tombstones_since(from)?;
            for id in &tombstones {
                hnsw.remove(*id)?;
                bm25.delete(*id)?;
            }
            let mut batch: Vec<(ChunkId, Vec<f32>)> = Vec::with_capacity(1024);
            let mut added = 0u64;
            c.for_each_chunk_since(from, |chunk, vector| -> Result<()> {
                if chunk.seq > from_b {
                    bm25.add(chunk.id, &chunk.doc, &chunk.heading, &chunk.text)?;
                }
                if chunk.seq > from_h {
                    batch.push((chunk.id, vector));
                    if batch.len() == 1024 {
                        hnsw.add_batch(&batch)?;
                        progress.advance(batch.len() as u64);
                        batch.clear();
                    }
                }
                added += 1;
                Ok(())
            })?;
            hnsw.add_batch(&batch)?;
            progress.advance(batch.len() as u64);
            Ok((to, added, tombstones.len() as u64))
        })?;
        self.hnsw.save(to)?;
        self.bm25.commit(to)?;
        progress.end();
        *self.exact.lock().expect("exact lock") = None;
        Ok(CatchUp {
            from,
            to,
            added,
            removed,
            rebuilt,
        })
    }

    fn reset(&mut self) -> Result<()> {
        let hnsw_dir = self.dir.join("hnsw");
        HnswIndex::destroy(&hnsw_dir)?;
        self.hnsw = HnswIndex::open(&hnsw_dir, &Self::params(&self.cfg, self.dim))?;
        self.bm25.clear()?;
        self.rebuilt = true;
        Ok(())
    }

    /// Drop both indexes and rebuild them from the catalog.
    pub fn rebuild(&mut self, catalog: &mut Catalog, progress: &dyn Progress) -> Result<CatchUp> {
        self.reset()?;
        self.catch_up(catalog, progress)
    }

    /// Dense top-k: an exact scan below `exact_threshold` chunks, HNSW above.
    pub fn dense(&self, catalog: &Catalog, query: &[f32], k: usize) -> Result<Vec<Scored>> {
        if self.hnsw.len() < self.cfg.exact_threshold {
            self.exact(catalog, query, k)
        } else {
            self.hnsw.search(query, k, Some(self.cfg.ef_search.max(k)))
        }
    }

    /// Approximate top-k through HNSW only, with an optional search breadth.
    pub fn hnsw(&self, query: &[f32], k: usize, ef_search: Option<usize>) -> Result<Vec<Scored>> {
        self.hnsw.search(query, k, ef_search)
    }

    /// Exact top-k by cosine over every vector in the catalog.
    pub fn exact(&self, catalog: &Catalog, query: &[f32], k: usize) -> Result<Vec<Scored>> {
        let seq = catalog.last_seq()?;
        let exact = {
            let mut guard = self.exact.lock().expect("exact lock");
            match guard.as_ref() {
                Some(e) if e.seq == seq => e.clone(),
                _ => {
                    let mut e = ExactIndex::new(self.dim);
                    e.seq = seq;
                    let mut err = None;
                    catalog.for_each_vector(|id, v| {
                        if err.is_none() {
                            err = e.push(id, v).err();
                        }
                    })?;
                    if let Some(err) = err {
                        return Err(err);
                    }
                    let e = Arc::new(e);
                    *guard = Some(e.clone());
                    e
                }
            }
        };
        exact.search(query, k)
    }

    /// BM25 top-k.
    pub fn bm25(&self, query: &str, k: usize) -> Result<Vec<Scored>> {
        self.bm25.search(query, k)
    }
}
