//! The derived indexes of one collection, kept in step with its catalog.

use crate::bm25::Bm25Index;
use crate::vector::{ExactIndex, HnswIndex, HnswParams};
use crate::{IndexError, Result};
use cairn_core::config::IndexConfig;
use cairn_core::{ChunkId, Progress, Scored, Seq};
use cairn_store::Catalog;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

/// What a catch-up did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CatchUp {
    pub from: Seq,
    pub to: Seq,
    pub added: u64,
    pub removed: u64,
    /// An index was missing, corrupt or built with other parameters, and was rebuilt.
    pub rebuilt: bool,
    /// The HNSW graph held more removed vectors than the compaction bound
    /// ([`COMPACT_REMOVED`]) and was rebuilt from the catalog's live ones.
    pub compacted: bool,
    /// The HNSW graph was written to disk (see `HnswIndex::save_due`).
    pub saved: bool,
}

/// What [`Indexes::verify`] found: whether both indexes hold exactly the
/// catalog's live chunks, at its sequence, and whether the graph finds
/// them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct IndexCheck {
    pub catalog_seq: Seq,
    pub hnsw_seq: Seq,
    pub bm25_seq: Seq,
    /// Live chunks in the catalog.
    pub chunks: u64,
    /// Catalog chunks the graph lacks, and graph vectors beyond the ones found.
    pub hnsw_missing: u64,
    pub hnsw_extra: u64,
    /// The same for BM25's last commit.
    pub bm25_missing: u64,
    pub bm25_extra: u64,
    /// Chunks whose own vector was searched for in the graph (up to
    /// [`VERIFY_SAMPLE`], spread over the catalog), and how many came back
    /// among their top 10.
    pub sampled: u64,
    pub found_by_own_vector: u64,
}

/// Chunks searched for by their own vector in [`Indexes::verify`].
pub const VERIFY_SAMPLE: u64 = 256;

impl IndexCheck {
    /// Both indexes at the catalog's sequence, holding exactly its chunks,
    /// and the graph finding at least 99% of the sample by its own vector.
    pub fn ok(&self) -> bool {
        self.hnsw_seq == self.catalog_seq
            && self.bm25_seq == self.catalog_seq
            && self.hnsw_missing + self.hnsw_extra + self.bm25_missing + self.bm25_extra == 0
            && self.found_by_own_vector * 100 >= self.sampled * 99
    }
}

/// The HNSW graph is rebuilt from the catalog once the vectors removed from
/// it (replaced or deleted chunks, whose nodes the graph keeps as ways through) outnumber a
/// quarter of its live ones, and at least this many.
pub const COMPACT_REMOVED: u64 = 1024;

/// Vectors given to the HNSW graph at a time during a catch-up (progress is
/// reported after each batch).
const BATCH: usize = 1024;

/// Give the catalog's chunks newer than an index's sequence to that index:
/// to the HNSW graph those after `hnsw.0`, to the BM25 index those after
/// `bm25.0` (a document's title once, with its first chunk). Returns how
/// many chunks newer than the older of the two were read.
fn feed(
    c: &Catalog,
    hnsw: (Seq, &HnswIndex),
    bm25: (Seq, &Bm25Index),
    progress: &dyn Progress,
) -> Result<u64> {
    let (from_h, graph) = hnsw;
    let (from_b, text) = bm25;
    let mut batch: Vec<(ChunkId, Vec<f32>)> = Vec::with_capacity(BATCH);
    let mut read = 0u64;
    c.for_each_chunk_since(from_h.min(from_b), |chunk, vector| -> Result<()> {
        if chunk.seq > from_b {
            let title = if chunk.ord == 0 {
                chunk.heading.as_str()
            } else {
                ""
            };
            text.add(chunk.id, &chunk.doc, title, &chunk.text)?;
        }
        if chunk.seq > from_h {
            batch.push((chunk.id, vector));
            if batch.len() == BATCH {
                graph.add_batch(&batch)?;
                progress.advance(batch.len() as u64);
                batch.clear();
            }
        }
        read += 1;
        Ok(())
    })?;
    graph.add_batch(&batch)?;
    progress.advance(batch.len() as u64);
    Ok(read)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// HNSW + exact + BM25 over one catalog.
///
/// `Send + Sync`, and used through `&self`: searches ([`dense`](Self::dense),
/// [`hnsw`](Self::hnsw), [`exact`](Self::exact), [`bm25`](Self::bm25)) and
/// the counters run from any number of threads, concurrently with a
/// [`catch_up`](Self::catch_up) or [`rebuild`](Self::rebuild), and never wait
/// for one. Catch-ups are serialised by an internal writer mutex that searches
/// never take. While a catch-up runs, dense search already sees the vectors
/// added so far and BM25 the last commit; [`applied_seq`](Self::applied_seq)
/// moves once both indexes are saved.
pub struct Indexes {
    dir: PathBuf,
    cfg: IndexConfig,
    dim: usize,
    /// Replaced whole on a reset; readers clone the `Arc` and let go at once.
    hnsw: RwLock<Arc<HnswIndex>>,
    bm25: Bm25Index,
    exact: Mutex<Option<Arc<ExactIndex>>>,
    rebuilt: AtomicBool,
    /// One catch-up or rebuild at a time.
    writer: Mutex<()>,
    /// Opened read-only ([`Indexes::open_read_only`]): nothing is written,
    /// and what the files on disk lack is held here.
    overlay: Option<Overlay>,
}

/// What a read-only open adds to the BM25 index on disk: the catalog's
/// chunks newer than its last commit (indexed in memory), and the chunks
/// deleted since (left out of results). The HNSW graph, loaded into
/// memory, takes the newer vectors and the deletions directly.
struct Overlay {
    tail: Bm25Index,
    gone: std::collections::HashSet<ChunkId>,
}

impl Drop for Indexes {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!(
                "saving the vector index in {}: {e} (the next open re-adds the catalog's newer chunks)",
                self.dir.display()
            );
        }
    }
}

impl std::fmt::Debug for Indexes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Indexes")
            .field("dir", &self.dir)
            .field("vectors", &self.vectors())
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
        catalog: &Catalog,
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
        let analyzer = Self::analyzer(cfg);
        let bm25 = match Bm25Index::open_with(&bm25_dir, analyzer) {
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
                Bm25Index::open_with(&bm25_dir, analyzer)?
            }
            Err(e) => return Err(e),
        };
        let me = Indexes {
            dir: dir.to_path_buf(),
            cfg: cfg.clone(),
            dim,
            hnsw: RwLock::new(Arc::new(hnsw)),
            bm25,
            exact: Mutex::new(None),
            rebuilt: AtomicBool::new(rebuilt),
            writer: Mutex::new(()),
            overlay: None,
        };
        me.catch_up(catalog, progress)?;
        Ok(me)
    }

    fn analyzer(cfg: &IndexConfig) -> crate::analyzer::Analyzer {
        crate::analyzer::Analyzer {
            stemming: cfg.bm25_stemming,
            stopwords: cfg.bm25_stopwords,
            compounds: cfg.bm25_compounds,
        }
    }

    /// Open the indexes in `dir` for searching only, while another process
    /// may be writing them: no lock is taken and nothing is written. The
    /// HNSW graph is loaded as last saved and BM25 read at its last commit;
    /// the catalog's changes since (newer chunks, deletions) are added in
    /// memory, so searches see the catalog as of this call. An index that
    /// cannot be read (missing, or caught mid-save) is replaced by an empty
    /// one in memory, and the catalog fills it.
    pub fn open_read_only(
        dir: &Path,
        dim: usize,
        cfg: &IndexConfig,
        catalog: &Catalog,
        progress: &dyn Progress,
    ) -> Result<Indexes> {
        let params = Self::params(cfg, dim);
        let analyzer = Self::analyzer(cfg);
        // A writer replaces the graph, then its manifest: a read between
        // the two sees them disagree. Try again before giving up on it.
        let mut hnsw = None;
        for attempt in 0..3 {
            match HnswIndex::open_read_only(&dir.join("hnsw"), &params) {
                Ok(h) => {
                    hnsw = Some(h);
                    break;
                }
                Err(e) => {
                    tracing::debug!(attempt, "reading the vector index: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
        }
        let hnsw = match hnsw {
            Some(h) => h,
            None => {
                tracing::warn!(
                    "the vector index in {} cannot be read; searching the catalog's vectors instead",
                    dir.display()
                );
                HnswIndex::in_memory(&params)?
            }
        };
        let bm25 = match Bm25Index::open_read_only(&dir.join("bm25"), analyzer) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("{e}; indexing the catalog's chunks in memory instead");
                Bm25Index::in_memory(analyzer)?
            }
        };
        let mut me = Indexes {
            dir: dir.to_path_buf(),
            cfg: cfg.clone(),
            dim,
            hnsw: RwLock::new(Arc::new(hnsw)),
            bm25,
            exact: Mutex::new(None),
            rebuilt: AtomicBool::new(false),
            writer: Mutex::new(()),
            overlay: None,
        };
        me.overlay = Some(me.read_catalog_tail(catalog, analyzer, progress)?);
        Ok(me)
    }

    /// The catalog's changes after the files on disk, for a read-only open.
    fn read_catalog_tail(
        &self,
        catalog: &Catalog,
        analyzer: crate::analyzer::Analyzer,
        progress: &dyn Progress,
    ) -> Result<Overlay> {
        let hnsw = self.graph();
        let (from_h, from_b) = (hnsw.applied_seq(), self.bm25.applied_seq());
        let tail = Bm25Index::in_memory(analyzer)?;
        let (to, gone) = catalog.snapshot(|c| -> Result<_> {
            let to = c.last_seq()?;
            if from_h > to || from_b > to {
                return Err(IndexError::Corrupt {
                    path: self.dir.clone(),
                    message: format!(
                        "the indexes (at sequence {}) are ahead of the catalog (at {to}); \
                         a command that writes (`cairn index rebuild`) rebuilds them",
                        from_h.max(from_b)
                    ),
                });
            }
            let from = from_h.min(from_b);
            if from == to {
                return Ok((to, Default::default()));
            }
            progress.begin(
                "reading changes newer than the indexes",
                c.count_chunks_since(from)?,
            );
            for id in c.tombstones_since(from_h)? {
                hnsw.remove(id)?;
            }
            // Deleted since BM25's commit, and in it (a chunk both added
            // and deleted since is in neither index).
            let mut gone = std::collections::HashSet::new();
            for id in c.tombstones_since(from_b)? {
                if self.bm25.holds(id)? {
                    gone.insert(id);
                }
            }
            feed(c, (from_h, &*hnsw), (from_b, &tail), progress)?;
            progress.end();
            Ok((to, gone))
        })?;
        tail.commit(to)?;
        Ok(Overlay { tail, gone })
    }

    /// Opened with [`Indexes::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.overlay.is_some()
    }

    fn refuse_read_only(&self) -> Result<()> {
        if self.is_read_only() {
            return Err(IndexError::ReadOnly(self.dir.clone()));
        }
        Ok(())
    }

    /// The HNSW graph of the moment (a reset swaps in a new one).
    fn graph(&self) -> Arc<HnswIndex> {
        self.hnsw
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The sequence both indexes hold on disk: a reopen catches up from
    /// here, so the catalog's tombstones up to it are no longer needed.
    pub fn durable_seq(&self) -> Seq {
        self.graph().saved_seq().min(self.bm25.applied_seq())
    }

    /// The sequence both indexes have applied.
    pub fn applied_seq(&self) -> Seq {
        self.graph().applied_seq().min(self.bm25.applied_seq())
    }

    /// Number of vectors in the HNSW graph.
    pub fn vectors(&self) -> usize {
        self.graph().len()
    }

    /// Number of chunks in the BM25 index.
    pub fn bm25_docs(&self) -> u64 {
        match &self.overlay {
            Some(o) => {
                (self.bm25.num_docs() + o.tail.num_docs()).saturating_sub(o.gone.len() as u64)
            }
            None => self.bm25.num_docs(),
        }
    }

    /// Memory held by the HNSW graph, in bytes.
    pub fn hnsw_memory(&self) -> usize {
        self.graph().memory_usage()
    }

    /// Apply every catalog change after the indexes' sequence. One catch-up
    /// runs at a time (others wait for it, then find less or nothing to do);
    /// searches go on meanwhile.
    pub fn catch_up(&self, catalog: &Catalog, progress: &dyn Progress) -> Result<CatchUp> {
        self.refuse_read_only()?;
        let _writer = lock(&self.writer);
        self.catch_up_locked(catalog, progress)
    }

    /// [`catch_up`](Self::catch_up), with the writer mutex held.
    fn catch_up_locked(&self, catalog: &Catalog, progress: &dyn Progress) -> Result<CatchUp> {
        let catalog_seq = catalog.last_seq()?;
        let mut hnsw = self.graph();
        if hnsw.applied_seq() > catalog_seq || self.bm25.applied_seq() > catalog_seq {
            // The catalog is older than the indexes (restored from a backup,
            // or replaced): nothing derived from the newer state can be kept.
            tracing::warn!("indexes are ahead of the catalog; rebuilding");
            self.reset_locked()?;
            hnsw = self.graph();
        }
        let from_h = hnsw.applied_seq();
        let from_b = self.bm25.applied_seq();
        let from = from_h.min(from_b);
        let rebuilt = self.rebuilt.swap(false, Ordering::AcqRel) || (from == 0 && catalog_seq > 0);
        if from == catalog_seq {
            return Ok(CatchUp {
                from,
                to: from,
                rebuilt,
                ..Default::default()
            });
        }
        let bm25 = &self.bm25;
        let applied = catalog
            .snapshot(|c| -> Result<(Seq, u64, u64)> {
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
                let added = feed(c, (from_h, &*hnsw), (from_b, bm25), progress)?;
                cairn_core::failpoint::reach("index.catchup.fed");
                Ok((to, added, tombstones.len() as u64))
            })
            .and_then(|(to, added, removed)| {
                // The graph is written when enough changed (or it was just
                // rebuilt); in between, a crash costs re-adding the
                // catalog's chunks after the saved sequence at the next open.
                hnsw.advance(to);
                let saved = rebuilt || hnsw.save_due();
                if saved {
                    hnsw.save(to)?;
                }
                bm25.commit(to)?;
                Ok((to, added, removed, saved))
            });
        let (to, added, removed, mut saved) = match applied {
            Ok(done) => done,
            Err(e) => {
                // Staged BM25 changes would be staged again by the next
                // catch-up (and indexed twice): drop them. The HNSW graph
                // skips ids it already holds, so it needs nothing.
                if let Err(r) = self.bm25.rollback() {
                    tracing::warn!("discarding staged BM25 changes failed: {r}");
                }
                return Err(e);
            }
        };
        progress.end();
        *lock(&self.exact) = None;
        let graph = self.graph();
        let compacted = !rebuilt && graph.removed() >= COMPACT_REMOVED.max(graph.len() as u64 / 4);
        if compacted {
            self.compact_graph_locked(catalog, progress)?;
            saved = true;
        }
        Ok(CatchUp {
            from,
            to,
            added,
            removed,
            rebuilt,
            compacted,
            saved,
        })
    }

    /// Build a new HNSW graph from the catalog's live vectors beside the
    /// current one (searches go on with it meanwhile), save it, and swap it
    /// in. The writer mutex is held.
    fn compact_graph_locked(&self, catalog: &Catalog, progress: &dyn Progress) -> Result<()> {
        let old = self.graph();
        let hnsw_dir = self.dir.join("hnsw");
        let staging = self.dir.join("hnsw.compacting");
        let _ = std::fs::remove_dir_all(&staging);
        let fresh = HnswIndex::open(&staging, &Self::params(&self.cfg, self.dim))?;
        let to = catalog.snapshot(|c| -> Result<Seq> {
            let to = c.last_seq()?;
            progress.begin("compacting the vector index", c.count_chunks_since(0)?);
            let mut batch: Vec<(ChunkId, Vec<f32>)> = Vec::with_capacity(BATCH);
            let mut err = None;
            c.for_each_vector(|id, v| {
                if err.is_some() {
                    return;
                }
                batch.push((id, v.to_vec()));
                if batch.len() == BATCH {
                    err = fresh.add_batch(&batch).err();
                    progress.advance(batch.len() as u64);
                    batch.clear();
                }
            })?;
            if let Some(e) = err {
                return Err(e);
            }
            fresh.add_batch(&batch)?;
            progress.end();
            Ok(to)
        })?;
        tracing::info!(
            removed = old.removed(),
            live = fresh.len(),
            "compacted the vector index"
        );
        // The new graph holds the catalog as of `to` (one read snapshot);
        // later changes are caught up from there, BM25's from its own
        // sequence.
        fresh.save(to)?;
        // Into place: the graph file, then the manifest (as a save does).
        for f in HnswIndex::files() {
            std::fs::rename(staging.join(f), hnsw_dir.join(f)).map_err(|source| {
                IndexError::Io {
                    path: hnsw_dir.join(f),
                    source,
                }
            })?;
        }
        crate::vector::sync_dir(&hnsw_dir)?;
        let _ = std::fs::remove_dir_all(&staging);
        let fresh = Arc::new(HnswIndex::open(
            &hnsw_dir,
            &Self::params(&self.cfg, self.dim),
        )?);
        let previous = std::mem::replace(
            &mut *self.hnsw.write().unwrap_or_else(PoisonError::into_inner),
            fresh,
        );
        drop(previous);
        Ok(())
    }

    /// Check both indexes against the catalog ([`IndexCheck`]), in one read
    /// snapshot of it, with no catch-up running meanwhile.
    pub fn verify(&self, catalog: &Catalog) -> Result<IndexCheck> {
        let _writer = lock(&self.writer);
        let graph = self.graph();
        catalog.snapshot(|c| -> Result<IndexCheck> {
            let mut check = IndexCheck {
                catalog_seq: c.last_seq()?,
                hnsw_seq: graph.applied_seq(),
                bm25_seq: self.bm25.applied_seq(),
                ..Default::default()
            };
            let total = c.count_chunks_since(0)?;
            let every = total.div_ceil(VERIFY_SAMPLE).max(1);
            let (mut in_graph, mut in_bm25) = (0u64, 0u64);
            let mut sample = Vec::new();
            let mut err = None;
            c.for_each_vector(|id, v| {
                if err.is_some() {
                    return;
                }
                if check.chunks.is_multiple_of(every) {
                    sample.push((id, v.to_vec()));
                }
                check.chunks += 1;
                if graph.contains(id) {
                    in_graph += 1;
                }
                match self.bm25.holds(id) {
                    Ok(true) => in_bm25 += 1,
                    Ok(false) => {}
                    Err(e) => err = Some(e),
                }
            })?;
            if let Some(e) = err {
                return Err(e);
            }
            check.hnsw_missing = check.chunks - in_graph;
            check.hnsw_extra = (graph.len() as u64).saturating_sub(in_graph);
            check.bm25_missing = check.chunks - in_bm25;
            check.bm25_extra = self.bm25.num_docs().saturating_sub(in_bm25);
            for (id, v) in &sample {
                check.sampled += 1;
                if graph.search(v, 10, None)?.iter().any(|s| s.id == *id) {
                    check.found_by_own_vector += 1;
                }
            }
            Ok(check)
        })
    }

    /// Write the HNSW graph if memory holds changes the disk lacks (see
    /// [`catch_up`](Self::catch_up)). Dropping the indexes does it too.
    pub fn flush(&self) -> Result<bool> {
        if self.is_read_only() {
            return Ok(false);
        }
        let _writer = lock(&self.writer);
        let graph = self.graph();
        if !graph.dirty() {
            return Ok(false);
        }
        graph.save(graph.applied_seq())?;
        Ok(true)
    }

    /// Empty both indexes (the writer mutex held): a fresh HNSW graph is
    /// swapped in, and BM25 is cleared.
    fn reset_locked(&self) -> Result<()> {
        let hnsw_dir = self.dir.join("hnsw");
        HnswIndex::destroy(&hnsw_dir)?;
        let fresh = Arc::new(HnswIndex::open(
            &hnsw_dir,
            &Self::params(&self.cfg, self.dim),
        )?);
        let old = std::mem::replace(
            &mut *self.hnsw.write().unwrap_or_else(PoisonError::into_inner),
            fresh,
        );
        // Freed outside the lock (or by the last search still holding it).
        drop(old);
        self.bm25.clear()?;
        self.rebuilt.store(true, Ordering::Release);
        Ok(())
    }

    /// Drop both indexes and rebuild them from the catalog. Searches go on
    /// meanwhile, over what has been rebuilt so far.
    pub fn rebuild(&self, catalog: &Catalog, progress: &dyn Progress) -> Result<CatchUp> {
        self.refuse_read_only()?;
        let _writer = lock(&self.writer);
        self.reset_locked()?;
        cairn_core::failpoint::reach("index.reset");
        self.catch_up_locked(catalog, progress)
    }

    /// Dense top-k: an exact scan below `exact_threshold` chunks, HNSW above.
    pub fn dense(&self, catalog: &Catalog, query: &[f32], k: usize) -> Result<Vec<Scored>> {
        let hnsw = self.graph();
        if hnsw.len() < self.cfg.exact_threshold {
            self.exact(catalog, query, k)
        } else {
            hnsw.search(query, k, Some(self.cfg.ef_search.max(k)))
        }
    }

    /// Approximate top-k through HNSW only, with an optional search breadth.
    pub fn hnsw(&self, query: &[f32], k: usize, ef_search: Option<usize>) -> Result<Vec<Scored>> {
        self.graph().search(query, k, ef_search)
    }

    /// Exact top-k by cosine over every vector in the catalog.
    pub fn exact(&self, catalog: &Catalog, query: &[f32], k: usize) -> Result<Vec<Scored>> {
        let seq = catalog.last_seq()?;
        let exact = {
            let mut guard = lock(&self.exact);
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

    /// Set BM25's query-time field weights (title, document path).
    pub fn set_bm25_field_boosts(&self, title: f32, doc: f32) {
        self.bm25.set_field_boosts(title, doc);
    }

    /// BM25 top-k.
    pub fn bm25(&self, query: &str, k: usize) -> Result<Vec<Scored>> {
        self.bm25_with(query, k, None)
    }

    /// BM25 top-k scored with a whole collection's term statistics
    /// (see [`crate::bm25::Bm25Index::search_with`]).
    pub fn bm25_with(
        &self,
        query: &str,
        k: usize,
        stats: Option<&crate::bm25::Bm25Stats>,
    ) -> Result<Vec<Scored>> {
        let Some(o) = &self.overlay else {
            return self.bm25.search_with(query, k, stats);
        };
        // Read-only: the index on disk and the tail in memory, scored with
        // their summed statistics (as one index holding both), deleted
        // chunks left out.
        let own;
        let stats = match stats {
            Some(s) => s,
            None => {
                own = self.bm25_stats(query)?;
                &own
            }
        };
        let mut all = self
            .bm25
            .search_with(query, k + o.gone.len(), Some(stats))?;
        all.retain(|s| !o.gone.contains(&s.id));
        all.extend(o.tail.search_with(query, k, Some(stats))?);
        all.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
        let mut seen = std::collections::HashSet::new();
        all.retain(|s| seen.insert(s.id));
        all.truncate(k);
        Ok(all)
    }

    /// This index's BM25 statistics for the terms of `query`.
    pub fn bm25_stats(&self, query: &str) -> Result<crate::bm25::Bm25Stats> {
        let mut stats = self.bm25.query_stats(query)?;
        if let Some(o) = &self.overlay {
            stats.add(&o.tail.query_stats(query)?);
        }
        Ok(stats)
    }
}
