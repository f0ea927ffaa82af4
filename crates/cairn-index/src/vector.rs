//! Dense retrieval: Cairn's HNSW graph ([`crate::hnsw`]) persisted beside
//! the catalog, and an exact scan used for small collections and as the
//! ground truth that HNSW recall is measured against.
//!
//! [`HnswIndex`] is used through `&self` from any number of threads: searches
//! run while a writer adds, removes or saves, and never wait for it (see the
//! type's documentation).

use crate::hnsw::{shuffle_key, Graph, ReadError};
use crate::scan::{f32_to_f16, kernel_name, quantize_i8, scan_tile, Tile, TopK, F16};
use crate::{IndexError, Result};
use cairn_core::{ChunkId, Scored, Seq};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

/// HNSW parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HnswParams {
    pub dim: usize,
    /// `f32`, `f16` or `i8`.
    pub quantization: String,
    pub m: usize,
    pub ef_construction: usize,
    pub ef_search: usize,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    applied_seq: Seq,
    params: HnswParams,
    count: usize,
    /// The distance the graph was built with. Indexes written before the
    /// switch to inner product on unit vectors have none ("cos") and are
    /// rebuilt from the catalog.
    #[serde(default = "cos")]
    metric: String,
    /// The graph's implementation. Indexes written by usearch (before
    /// Cairn's own graph) have none and are rebuilt from the catalog.
    #[serde(default)]
    graph: String,
    /// Vectors removed from the graph since it was built (their nodes stay
    /// until a rebuild).
    #[serde(default)]
    removed: u64,
}

fn cos() -> String {
    "cos".into()
}

/// Vectors are stored and searched at unit length with the inner product,
/// which ranks exactly as cosine does but costs one multiply-add per
/// dimension instead of three (the product and both norms).
const METRIC: &str = "ip";
/// See [`Manifest::graph`].
const GRAPH: &str = "cairn-hnsw-1";

/// `v` scaled to unit length (zero vectors stay zero).
fn unit(v: &[f32]) -> Vec<f32> {
    let norm = dot(v, v).sqrt();
    if norm > 0.0 && (norm - 1.0).abs() > 1e-6 {
        v.iter().map(|x| x / norm).collect()
    } else {
        v.to_vec()
    }
}

/// [`HnswIndex::add_batch`] adds vectors one at a time until the graph
/// holds this many, in parallel after.
pub const SEQUENTIAL_BELOW: usize = 1024;

/// The graph in the configured storage.
enum Graphs {
    F32(Graph<f32>),
    F16(Graph<F16>),
    I8(Graph<i8>),
}

macro_rules! each {
    ($g:expr, $x:ident => $body:expr) => {
        match $g {
            Graphs::F32($x) => $body,
            Graphs::F16($x) => $body,
            Graphs::I8($x) => $body,
        }
    };
}

/// A persisted HNSW index over chunk vectors.
///
/// Every method takes `&self`, and the value is `Send + Sync`:
///
/// - searches, [`len`](Self::len), [`contains`](Self::contains) and
///   [`memory_usage`](Self::memory_usage) run concurrently with each other
///   and with a writer, and take no lock the writer holds (the graph's
///   neighbour lists are atomics, and its storage never moves: see
///   [`crate::hnsw`]);
/// - writes ([`add_batch`](Self::add_batch), [`remove`](Self::remove),
///   [`save`](Self::save)) are serialised by an internal writer mutex, so a
///   save never overlaps an add.
pub struct HnswIndex {
    dir: PathBuf,
    graph: Graphs,
    params: HnswParams,
    applied_seq: AtomicU64,
    /// The sequence of the graph on disk (≤ `applied_seq`).
    saved_seq: AtomicU64,
    /// Adds and removes since the last save.
    unsaved: AtomicU64,
    /// When it was last saved (or opened).
    last_save: Mutex<std::time::Instant>,
    /// Removes since the graph was built (see [`Manifest::removed`]).
    removed: AtomicU64,
    /// The writer.
    writer: Mutex<()>,
    /// The last measured memory usage.
    memory: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl std::fmt::Debug for HnswIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswIndex")
            .field("dir", &self.dir)
            .field("len", &self.len())
            .finish()
    }
}

fn graphs(params: &HnswParams) -> Result<Graphs> {
    let (d, m, efc) = (params.dim, params.m, params.ef_construction);
    Ok(match params.quantization.as_str() {
        "f32" => Graphs::F32(Graph::new(d, m, efc)),
        "f16" => Graphs::F16(Graph::new(d, m, efc)),
        "i8" => Graphs::I8(Graph::new(d, m, efc)),
        other => {
            return Err(IndexError::Vector(format!(
                "unknown quantization `{other}` (expected f32, f16 or i8)"
            )))
        }
    })
}

const INDEX_FILE: &str = "hnsw.graph";
/// The file usearch wrote, before Cairn's own graph: deleted with the index.
const USEARCH_FILE: &str = "hnsw.usearch";

/// See [`HnswIndex::save_due`].
pub const SAVE_AFTER_CHANGES: u64 = 16_384;
/// See [`HnswIndex::save_due`].
pub const SAVE_AFTER: std::time::Duration = std::time::Duration::from_secs(300);
const MANIFEST_FILE: &str = "hnsw.json";

impl HnswIndex {
    fn new_empty(dir: &Path, params: &HnswParams) -> Result<HnswIndex> {
        Ok(HnswIndex {
            dir: dir.to_path_buf(),
            graph: graphs(params)?,
            params: params.clone(),
            applied_seq: AtomicU64::new(0),
            saved_seq: AtomicU64::new(0),
            unsaved: AtomicU64::new(0),
            last_save: Mutex::new(std::time::Instant::now()),
            removed: AtomicU64::new(0),
            writer: Mutex::new(()),
            memory: AtomicUsize::new(0),
        })
    }

    /// Open the index in `dir`. A missing index, or one built with other
    /// parameters or by usearch, starts empty (applied sequence 0) so the
    /// caller rebuilds it from the catalog; an unreadable one is
    /// [`IndexError::Corrupt`].
    pub fn open(dir: &Path, params: &HnswParams) -> Result<HnswIndex> {
        std::fs::create_dir_all(dir).map_err(|source| IndexError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let manifest_path = dir.join(MANIFEST_FILE);
        let index_path = dir.join(INDEX_FILE);
        let manifest = match std::fs::read(&manifest_path) {
            Ok(bytes) => {
                serde_json::from_slice::<Manifest>(&bytes).map_err(|e| IndexError::Corrupt {
                    path: manifest_path.clone(),
                    message: e.to_string(),
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Self::new_empty(dir, params)
            }
            Err(source) => {
                return Err(IndexError::Io {
                    path: manifest_path,
                    source,
                })
            }
        };
        if manifest.params.dim != params.dim
            || manifest.params.quantization != params.quantization
            || manifest.params.m != params.m
            || manifest.metric != METRIC
            || manifest.graph != GRAPH
        {
            tracing::info!("the HNSW graph's parameters or format changed; it will be rebuilt");
            return Self::new_empty(dir, params);
        }
        let me = Self::new_empty(dir, params)?;
        let corrupt = |message: String| IndexError::Corrupt {
            path: index_path.clone(),
            message,
        };
        let file = std::fs::File::open(&index_path).map_err(|e| corrupt(e.to_string()))?;
        let mut input = std::io::BufReader::with_capacity(1 << 20, file);
        each!(&me.graph, g => g.read_from(&mut input)).map_err(|e| match e {
            ReadError::Io(e) => corrupt(e.to_string()),
            ReadError::Format(m) => corrupt(m),
        })?;
        if me.len() != manifest.count {
            return Err(corrupt(format!(
                "holds {} vectors, its manifest says {}",
                me.len(),
                manifest.count
            )));
        }
        me.applied_seq
            .store(manifest.applied_seq, Ordering::Release);
        me.saved_seq.store(manifest.applied_seq, Ordering::Release);
        me.removed.store(manifest.removed, Ordering::Release);
        me.measure_memory();
        Ok(me)
    }

    /// [`HnswIndex::open`] without creating anything: the index must exist.
    pub fn open_read_only(dir: &Path, params: &HnswParams) -> Result<HnswIndex> {
        if !dir.join(MANIFEST_FILE).is_file() {
            return Err(IndexError::Corrupt {
                path: dir.join(MANIFEST_FILE),
                message: "missing".into(),
            });
        }
        Self::open(dir, params)
    }

    /// An empty graph in memory (never saved).
    pub fn in_memory(params: &HnswParams) -> Result<HnswIndex> {
        Self::new_empty(Path::new(""), params)
    }

    /// Delete the files of the index in `dir`.
    pub fn destroy(dir: &Path) -> Result<()> {
        for f in [INDEX_FILE, USEARCH_FILE, MANIFEST_FILE] {
            match std::fs::remove_file(dir.join(f)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(IndexError::Io {
                        path: dir.join(f),
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// The files of an index in a directory (for copying one whole).
    pub fn files() -> [&'static str; 2] {
        [INDEX_FILE, MANIFEST_FILE]
    }

    /// The catalog sequence this index reflects in memory (what searches
    /// see; see [`advance`](Self::advance)).
    pub fn applied_seq(&self) -> Seq {
        self.applied_seq.load(Ordering::Acquire)
    }

    /// The catalog sequence of the graph on disk: what a reopen starts
    /// from (the catalog's changes after it are applied again, which is
    /// idempotent).
    pub fn saved_seq(&self) -> Seq {
        self.saved_seq.load(Ordering::Acquire)
    }

    /// Record that the graph in memory reflects the catalog up to `seq`,
    /// without writing it: searches see it now, the disk at the next
    /// [`save`](Self::save).
    pub fn advance(&self, seq: Seq) {
        self.applied_seq.store(seq, Ordering::Release);
    }

    /// Whether the graph in memory is newer than the one on disk.
    pub fn dirty(&self) -> bool {
        self.applied_seq() != self.saved_seq() || self.unsaved.load(Ordering::Acquire) > 0
    }

    /// Whether the changes since the last save are worth writing the whole
    /// graph for: at least [`SAVE_AFTER_CHANGES`] adds and removes, or an
    /// eighth of the graph, or any change [`SAVE_AFTER`] after the last
    /// save. Below that a crash costs re-adding those vectors from the
    /// catalog at the next open, and a small batch does not rewrite a large
    /// file.
    pub fn save_due(&self) -> bool {
        let changes = self.unsaved.load(Ordering::Acquire);
        if changes == 0 && !self.dirty() {
            return false;
        }
        changes >= SAVE_AFTER_CHANGES.max(self.len() as u64 / 8)
            || lock(&self.last_save).elapsed() >= SAVE_AFTER
    }

    /// Vectors removed since the graph was built.
    pub fn removed(&self) -> u64 {
        self.removed.load(Ordering::Acquire)
    }

    /// Number of vectors (while a writer adds, the count of the moment).
    pub fn len(&self) -> usize {
        each!(&self.graph, g => g.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the graph holds a vector with this id.
    pub fn contains(&self, id: ChunkId) -> bool {
        each!(&self.graph, g => g.contains(id))
    }

    /// Bytes of memory the index uses: measured when no writer is busy, else
    /// as last measured (at the latest by the last [`save`](Self::save)).
    pub fn memory_usage(&self) -> usize {
        let _writer = match self.writer.try_lock() {
            Ok(writer) => writer,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return self.memory.load(Ordering::Relaxed),
        };
        self.measure_memory()
    }

    fn measure_memory(&self) -> usize {
        let bytes = each!(&self.graph, g => g.memory_usage());
        self.memory.store(bytes, Ordering::Relaxed);
        bytes
    }

    /// Add vectors, in parallel on the current rayon pool. Searches go on
    /// meanwhile and see the vectors as they are added.
    ///
    /// An id the graph already holds is skipped: a chunk id names one
    /// vector for good (the catalog never reuses ids nor re-embeds a
    /// chunk), so replaying a log over a graph that saved part of it adds
    /// nothing twice.
    ///
    /// The batch goes in level by level, the nodes of the highest graph
    /// level first, and within a level in an order spread by a hash of the
    /// ids, not in the order given: a catalog's chunks arrive document by
    /// document, and a graph built from neighbouring passages arriving
    /// together has a lower recall at the same search breadth (on the 100k
    /// real passages of BENCHMARKS.md: 0.889 at ef 64 in document order).
    pub fn add_batch(&self, items: &[(ChunkId, Vec<f32>)]) -> Result<()> {
        let _writer = lock(&self.writer);
        if let Some((_, v)) = items.iter().find(|(_, v)| v.len() != self.params.dim) {
            return Err(IndexError::Dim {
                expected: self.params.dim,
                got: v.len(),
            });
        }
        // Only this writer adds, so what is absent now is absent when added.
        let mut items: Vec<&(ChunkId, Vec<f32>)> =
            items.iter().filter(|(id, _)| !self.contains(*id)).collect();
        if items.is_empty() {
            return Ok(());
        }
        // Highest levels first (FAISS's order): the upper layers are
        // whole before the bulk of level 0 goes in, so every insertion
        // descends through the final hierarchy.
        let level = |id: ChunkId| each!(&self.graph, g => g.level_of(id));
        items.sort_by_cached_key(|(id, _)| (std::cmp::Reverse(level(*id)), shuffle_key(*id)));
        items.dedup_by_key(|(id, _)| *id);
        self.unsaved.fetch_add(items.len() as u64, Ordering::AcqRel);
        // A small graph is built one vector at a time: nodes inserted at
        // once may each prune the other from the lists they update, which
        // now and then leaves a node no search reaches; in a small graph one
        // such node is a visible share of it (and fails `index check`'s
        // 99%). In large graphs the share is what HNSW loses anyway, and
        // parallel adds halve the build.
        let nodes = each!(&self.graph, g => g.nodes());
        let alone = SEQUENTIAL_BELOW.saturating_sub(nodes).min(items.len());
        let (first, rest) = items.split_at(alone);
        each!(&self.graph, g => {
            for (id, v) in first {
                g.insert(*id, &unit(v));
            }
            // One level after the other, each in parallel.
            for same in rest.chunk_by(|a, b| g.level_of(a.0) == g.level_of(b.0)) {
                same.par_iter().for_each(|(id, v)| g.insert(*id, &unit(v)));
            }
        });
        Ok(())
    }

    /// Remove a vector (absent ids are fine).
    pub fn remove(&self, id: ChunkId) -> Result<()> {
        let _writer = lock(&self.writer);
        if each!(&self.graph, g => g.remove(id)) {
            self.removed.fetch_add(1, Ordering::AcqRel);
            self.unsaved.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Approximate top-k by cosine similarity (score = cosine), with a search
    /// breadth of `ef_search` (the parameters' `ef_search` when `None`), at
    /// least `k`.
    pub fn search(&self, query: &[f32], k: usize, ef_search: Option<usize>) -> Result<Vec<Scored>> {
        if query.len() != self.params.dim {
            return Err(IndexError::Dim {
                expected: self.params.dim,
                got: query.len(),
            });
        }
        if k == 0 {
            return Ok(vec![]);
        }
        let query = unit(query);
        let ef = ef_search.unwrap_or(self.params.ef_search).max(k);
        let hits = each!(&self.graph, g => g.search(&query, k, ef));
        Ok(hits
            .into_iter()
            .map(|(id, score)| Scored { id, score })
            .collect())
    }

    /// Persist atomically: the graph first, then the manifest that names the
    /// applied sequence. A crash between the two leaves an older sequence in
    /// the manifest, and re-applying changes is idempotent. Searches go on
    /// meanwhile; adds and removes wait (the graph is read as one state).
    pub fn save(&self, seq: Seq) -> Result<()> {
        let _writer = lock(&self.writer);
        let index_path = self.dir.join(INDEX_FILE);
        let tmp = self.dir.join(format!("{INDEX_FILE}.tmp"));
        let io = |source| IndexError::Io {
            path: tmp.clone(),
            source,
        };
        {
            let file = std::fs::File::create(&tmp).map_err(io)?;
            let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
            each!(&self.graph, g => g.write_to(&mut out)).map_err(io)?;
            use std::io::Write;
            out.flush().map_err(io)?;
        }
        let count = self.len();
        cairn_core::failpoint::reach("hnsw.save.written");
        sync_file(&tmp)?;
        std::fs::rename(&tmp, &index_path).map_err(|source| IndexError::Io {
            path: index_path.clone(),
            source,
        })?;
        let _ = std::fs::remove_file(self.dir.join(USEARCH_FILE));
        sync_dir(&self.dir)?;
        cairn_core::failpoint::reach("hnsw.save.renamed");
        let manifest = Manifest {
            applied_seq: seq,
            params: self.params.clone(),
            count,
            metric: METRIC.into(),
            graph: GRAPH.into(),
            removed: self.removed(),
        };
        write_atomic(
            &self.dir.join(MANIFEST_FILE),
            &serde_json::to_vec_pretty(&manifest).expect("manifest serialises"),
        )?;
        self.applied_seq.store(seq, Ordering::Release);
        self.saved_seq.store(seq, Ordering::Release);
        self.unsaved.store(0, Ordering::Release);
        *lock(&self.last_save) = std::time::Instant::now();
        self.measure_memory();
        Ok(())
    }
}

fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|source| IndexError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// Make a directory's entries (a rename into it) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        std::fs::File::open(dir)
            .and_then(|f| f.sync_all())
            .map_err(|source| IndexError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Write a file so that readers see the old or the new content, never a
/// mix, and so that the new content survives a power loss once this
/// returns (the file, then its directory, synced).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|source| IndexError::Io {
        path: tmp.clone(),
        source,
    })?;
    sync_file(&tmp)?;
    std::fs::rename(&tmp, path).map_err(|source| IndexError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// How the exact scan stores its vectors: `f32` (exact), or `f16` or
/// scalar-quantised `i8` (half and a quarter of the memory read per
/// query, approximate scores).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExactStorage {
    #[default]
    F32,
    /// IEEE half precision, rounded to nearest.
    F16,
    /// One signed byte per component, with one f32 scale per vector (its
    /// largest magnitude maps to 127).
    I8,
}

impl ExactStorage {
    pub const ALL: [ExactStorage; 3] = [ExactStorage::F32, ExactStorage::F16, ExactStorage::I8];

    /// The name [`str::parse`] reads.
    pub fn as_str(self) -> &'static str {
        match self {
            ExactStorage::F32 => "f32",
            ExactStorage::F16 => "f16",
            ExactStorage::I8 => "i8",
        }
    }

    /// Bytes stored per vector of `dim` components (the i8 scale included).
    pub fn bytes_per_vector(self, dim: usize) -> usize {
        match self {
            ExactStorage::F32 => 4 * dim,
            ExactStorage::F16 => 2 * dim,
            ExactStorage::I8 => dim + 4,
        }
    }
}

impl std::fmt::Display for ExactStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ExactStorage {
    type Err = IndexError;

    fn from_str(s: &str) -> Result<ExactStorage> {
        match s {
            "f32" => Ok(ExactStorage::F32),
            "f16" => Ok(ExactStorage::F16),
            "i8" => Ok(ExactStorage::I8),
            other => Err(IndexError::Vector(format!(
                "unknown exact-scan storage `{other}` (expected f32, f16 or i8)"
            ))),
        }
    }
}

/// The rows of an [`ExactIndex`], in its storage type.
#[derive(Debug, Clone)]
enum Rows {
    F32(Vec<f32>),
    F16(Vec<F16>),
    I8 { data: Vec<i8>, scales: Vec<f32> },
}

impl Default for Rows {
    fn default() -> Rows {
        Rows::F32(Vec::new())
    }
}

/// Queries scanned together in one pass over the rows by
/// [`ExactIndex::search_batch`].
pub const EXACT_BLOCK: usize = 8;
/// Block sizes [`ExactIndex::search_batch_blocked`] takes.
pub const EXACT_BLOCKS: [usize; 5] = [1, 2, 4, 8, 16];
/// Rows per parallel task of the scan (with 384 dimensions, 384 KiB of f32:
/// large enough to stream, small enough to balance two cores).
const ROWS_PER_TASK: usize = 256;

/// All vectors in memory, scanned exhaustively. Exact (with the default
/// f32 storage), so it is both the dense retriever for small collections
/// and the ground truth for recall.
///
/// The scan splits the rows over the current rayon pool's threads (the
/// configured thread budget) and runs vectorised, multi-query inner loops
/// ([`ExactIndex::search_batch`] reads the rows once per block of
/// [`EXACT_BLOCK`] queries). Scores do not depend on the block size or the
/// thread count, so a batch returns exactly what one-query searches do.
#[derive(Debug, Default, Clone)]
pub struct ExactIndex {
    dim: usize,
    storage: ExactStorage,
    ids: Vec<ChunkId>,
    /// Row-major, unit-normalised vectors.
    rows: Rows,
    /// The catalog sequence the vectors were read at.
    pub seq: Seq,
}

impl ExactIndex {
    pub fn new(dim: usize) -> ExactIndex {
        ExactIndex::with_storage(dim, ExactStorage::F32)
    }

    /// An empty index that stores its vectors as `storage`.
    pub fn with_storage(dim: usize, storage: ExactStorage) -> ExactIndex {
        let rows = match storage {
            ExactStorage::F32 => Rows::F32(Vec::new()),
            ExactStorage::F16 => Rows::F16(Vec::new()),
            ExactStorage::I8 => Rows::I8 {
                data: Vec::new(),
                scales: Vec::new(),
            },
        };
        ExactIndex {
            dim,
            storage,
            rows,
            ..Default::default()
        }
    }

    pub fn storage(&self) -> ExactStorage {
        self.storage
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Bytes one full pass of the scan reads (the stored rows, and the i8
    /// scales).
    pub fn scan_bytes(&self) -> usize {
        self.storage.bytes_per_vector(self.dim) * self.len()
    }

    /// Add a vector (normalised on the way in, so a dot product is a cosine).
    pub fn push(&mut self, id: ChunkId, v: &[f32]) -> Result<()> {
        if v.len() != self.dim {
            return Err(IndexError::Dim {
                expected: self.dim,
                got: v.len(),
            });
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        let unit = v.iter().map(|x| x / norm);
        match &mut self.rows {
            Rows::F32(data) => data.extend(unit),
            Rows::F16(data) => data.extend(unit.map(|x| F16(f32_to_f16(x)))),
            Rows::I8 { data, scales } => {
                let unit: Vec<f32> = unit.collect();
                let start = data.len();
                data.resize(start + unit.len(), 0);
                scales.push(quantize_i8(&unit, &mut data[start..]));
            }
        }
        self.ids.push(id);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Top-k by cosine similarity (exact with f32 storage).
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Scored>> {
        let mut out = self.search_batch_blocked(&[query], k, 1)?;
        Ok(out.pop().unwrap_or_default())
    }

    /// [`ExactIndex::search`] for many queries, [`EXACT_BLOCK`] of them per
    /// pass over the rows; the same results as one search per query.
    pub fn search_batch(&self, queries: &[&[f32]], k: usize) -> Result<Vec<Vec<Scored>>> {
        self.search_batch_blocked(queries, k, EXACT_BLOCK)
    }

    /// [`ExactIndex::search_batch`] with `block` queries per pass (one of
    /// [`EXACT_BLOCKS`]); for benchmarks that compare block sizes.
    pub fn search_batch_blocked(
        &self,
        queries: &[&[f32]],
        k: usize,
        block: usize,
    ) -> Result<Vec<Vec<Scored>>> {
        if !EXACT_BLOCKS.contains(&block) {
            return Err(IndexError::Vector(format!(
                "exact-scan block of {block} queries (expected one of {EXACT_BLOCKS:?})"
            )));
        }
        if let Some(q) = queries.iter().find(|q| q.len() != self.dim) {
            return Err(IndexError::Dim {
                expected: self.dim,
                got: q.len(),
            });
        }
        let mut out: Vec<Vec<Scored>> = Vec::with_capacity(queries.len());
        for group in queries.chunks(block) {
            // Unit queries, back to back, padded to a whole block with zeros
            // (a short last block costs arithmetic, not memory traffic).
            let b = if group.len() == 1 { 1 } else { block };
            let mut flat = vec![0f32; b * self.dim];
            for (dst, q) in flat.chunks_exact_mut(self.dim.max(1)).zip(group) {
                let norm = q.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                for (d, x) in dst.iter_mut().zip(q.iter()) {
                    *d = x / norm;
                }
            }
            let tops = match b {
                1 => self.scan::<1>(&flat, k),
                2 => self.scan::<2>(&flat, k),
                4 => self.scan::<4>(&flat, k),
                8 => self.scan::<8>(&flat, k),
                _ => self.scan::<16>(&flat, k),
            };
            out.extend(tops.into_iter().take(group.len()).map(|t| {
                t.into_sorted()
                    .into_iter()
                    .map(|(score, id)| Scored { id, score })
                    .collect::<Vec<Scored>>()
            }));
        }
        Ok(out)
    }

    /// One pass over the rows for a block of `B` unit queries.
    fn scan<const B: usize>(&self, queries: &[f32], k: usize) -> Vec<TopK> {
        let k = k.min(self.len());
        if self.dim == 0 || self.is_empty() {
            return vec![TopK::new(0); B];
        }
        match &self.rows {
            Rows::F32(data) => self.scan_rows::<f32, B>(data, None, queries, k),
            Rows::F16(data) => self.scan_rows::<F16, B>(data, None, queries, k),
            Rows::I8 { data, scales } => {
                self.scan_rows::<i8, B>(data, Some(scales.as_slice()), queries, k)
            }
        }
    }

    fn scan_rows<E: crate::scan::Elem, const B: usize>(
        &self,
        data: &[E],
        scales: Option<&[f32]>,
        queries: &[f32],
        k: usize,
    ) -> Vec<TopK> {
        let dim = self.dim;
        let fresh = || (0..B).map(|_| TopK::new(k)).collect::<Vec<_>>();
        data.par_chunks(dim * ROWS_PER_TASK)
            .enumerate()
            .fold(fresh, |mut tops, (t, rows)| {
                let tile = Tile {
                    rows,
                    dim,
                    first: t * ROWS_PER_TASK,
                    scales,
                    ids: &self.ids,
                };
                scan_tile::<E, B>(tile, queries, &mut tops);
                tops
            })
            .reduce(fresh, |a, b| {
                a.into_iter().zip(b).map(|(x, y)| x.merge(y)).collect()
            })
    }
}

/// The instruction set of the exact scan's kernels on this CPU
/// (`avx2+fma` or `portable`).
pub fn exact_kernel() -> &'static str {
    kernel_name()
}

/// Dot product in 8 independent lanes, which the compiler vectorises.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8;
    for i in 0..chunks {
        for l in 0..8 {
            acc[l] += a[i * 8 + l] * b[i * 8 + l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 8..a.len() {
        s += a[i] * b[i];
    }
    s
}

/// The k best (id, score) pairs, best first; ties broken by smaller id so
/// results are deterministic.
pub fn top_k(ids: &[ChunkId], scores: &[f32], k: usize) -> Vec<Scored> {
    let mut idx: Vec<usize> = (0..ids.len()).collect();
    let cmp = |a: &usize, b: &usize| {
        scores[*b]
            .total_cmp(&scores[*a])
            .then(ids[*a].cmp(&ids[*b]))
    };
    if k < idx.len() {
        idx.select_nth_unstable_by(k, cmp);
        idx.truncate(k);
    }
    idx.sort_by(cmp);
    idx.into_iter()
        .map(|i| Scored {
            id: ids[i],
            score: scores[i],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(dim: usize) -> HnswParams {
        HnswParams {
            dim,
            quantization: "f32".into(),
            m: 16,
            ef_construction: 64,
            ef_search: 64,
        }
    }

    fn pseudo_random_vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                (0..dim)
                    .map(|_| {
                        s = s
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn exact_search_orders_by_cosine() {
        let mut e = ExactIndex::new(2);
        e.push(1, &[1.0, 0.0]).unwrap();
        e.push(2, &[0.7, 0.7]).unwrap();
        e.push(3, &[0.0, 5.0]).unwrap();
        let hits = e.search(&[0.0, 1.0], 2).unwrap();
        assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), vec![3, 2]);
        assert!((hits[0].score - 1.0).abs() < 1e-5);
        assert!(e.search(&[1.0], 1).is_err());
    }

    #[test]
    fn hnsw_persists_and_finds_neighbours() {
        let dir = tempfile::tempdir().unwrap();
        let vecs = pseudo_random_vectors(500, 16, 7);
        let items = numbered(&vecs);
        {
            let h = HnswIndex::open(dir.path(), &params(16)).unwrap();
            assert_eq!(h.applied_seq(), 0);
            h.add_batch(&items).unwrap();
            h.remove(5).unwrap();
            h.save(42).unwrap();
        }
        let h = HnswIndex::open(dir.path(), &params(16)).unwrap();
        assert_eq!(h.applied_seq(), 42);
        assert_eq!(h.len(), 499);
        let hits = h.search(&vecs[9], 3, None).unwrap();
        assert_eq!(hits[0].id, 10);
        assert!((hits[0].score - 1.0).abs() < 1e-4);
        assert!(h
            .search(&vecs[4], 10, None)
            .unwrap()
            .iter()
            .all(|s| s.id != 5));
        // Scores are cosines even for vectors that are not unit length.
        let scaled: Vec<f32> = vecs[9].iter().map(|x| x * 7.0).collect();
        let hits = h.search(&scaled, 1, None).unwrap();
        assert_eq!(hits[0].id, 10);
        assert!((hits[0].score - 1.0).abs() < 1e-4, "{}", hits[0].score);
        drop(h);
        // An index written before the inner-product switch (no metric in
        // its manifest) starts empty, to be rebuilt from the catalog.
        let manifest = dir.path().join(MANIFEST_FILE);
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
        m.as_object_mut().unwrap().remove("metric");
        std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(HnswIndex::open(dir.path(), &params(16)).unwrap().len(), 0);
        // Other parameters: starts empty, to be rebuilt.
        let mut p = params(16);
        p.quantization = "i8".into();
        assert_eq!(HnswIndex::open(dir.path(), &p).unwrap().len(), 0);
    }

    #[test]
    fn corrupt_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        {
            let h = HnswIndex::open(dir.path(), &params(4)).unwrap();
            h.add_batch(&[(1, vec![1.0, 0.0, 0.0, 0.0])]).unwrap();
            h.save(1).unwrap();
        }
        std::fs::write(dir.path().join(INDEX_FILE), b"garbage").unwrap();
        let e = HnswIndex::open(dir.path(), &params(4)).unwrap_err();
        assert!(matches!(e, IndexError::Corrupt { .. }), "{e}");
        std::fs::write(dir.path().join(MANIFEST_FILE), b"{").unwrap();
        assert!(matches!(
            HnswIndex::open(dir.path(), &params(4)).unwrap_err(),
            IndexError::Corrupt { .. }
        ));
    }

    /// A small graph (a shard of a few documents) is built so that each of
    /// its vectors is found by its own vector, even from a parallel pool:
    /// one lost node in 40 would fail `index check`. Built in parallel, 17
    /// of 40,000 nodes in 1,000 such graphs were lost (on two threads).
    #[test]
    fn small_graphs_built_from_a_parallel_pool_reach_every_vector() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        let mut checked = 0;
        for seed in 1..400u64 {
            let dir = tempfile::tempdir().unwrap();
            let vecs = clustered(40, 384, 6, seed);
            let items = numbered(&vecs);
            let h = HnswIndex::open(dir.path(), &params(384)).unwrap();
            pool.install(|| {
                h.add_batch(&items[..25])?;
                h.add_batch(&items[25..])
            })
            .unwrap();
            assert_eq!(h.len(), items.len());
            let lost: Vec<u64> = items
                .iter()
                .filter(|(id, v)| !h.search(v, 10, None).unwrap().iter().any(|s| s.id == *id))
                .map(|(id, _)| *id)
                .collect();
            assert!(
                lost.is_empty(),
                "seed {seed}: not found by their own vectors: {lost:?}"
            );
            checked += items.len();
        }
        assert_eq!(checked, 399 * 40);
    }

    /// Adding ids the graph holds (a log replayed over a graph that saved
    /// part of it) adds nothing and removes nothing.
    #[test]
    fn ids_already_in_the_graph_are_not_added_again() {
        let dir = tempfile::tempdir().unwrap();
        let vecs = clustered(40, 32, 4, 3);
        let items = numbered(&vecs);
        let h = HnswIndex::open(dir.path(), &params(32)).unwrap();
        h.add_batch(&items[..30]).unwrap();
        h.save(1).unwrap();
        let removed = h.removed();
        for _ in 0..3 {
            h.add_batch(&items).unwrap();
        }
        assert_eq!(h.len(), 40);
        assert_eq!(h.removed(), removed, "no node replaced");
        for (id, v) in &items {
            assert_eq!(h.search(v, 1, None).unwrap()[0].id, *id);
        }
    }

    #[test]
    fn top_k_is_deterministic() {
        let ids = [5, 3, 9, 1];
        let scores = [0.5, 0.9, 0.5, 0.1];
        let t = top_k(&ids, &scores, 3);
        assert_eq!(t.iter().map(|s| s.id).collect::<Vec<_>>(), vec![3, 5, 9]);
    }

    /// `(id, vector)` pairs with ids from 1.
    fn numbered(vecs: &[Vec<f32>]) -> Vec<(u64, Vec<f32>)> {
        vecs.iter()
            .enumerate()
            .map(|(i, v)| (i as u64 + 1, v.clone()))
            .collect()
    }

    /// Clustered vectors (like embeddings: neighbours are close, not ties).
    fn clustered(n: usize, dim: usize, clusters: usize, seed: u64) -> Vec<Vec<f32>> {
        let centres = pseudo_random_vectors(clusters, dim, seed);
        let noise = pseudo_random_vectors(n, dim, seed + 1);
        noise
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let c = &centres[i % clusters];
                c.iter().zip(e).map(|(c, e)| c + 0.6 * e).collect()
            })
            .collect()
    }

    fn exact_of(vecs: &[Vec<f32>], storage: ExactStorage) -> ExactIndex {
        let mut e = ExactIndex::with_storage(vecs[0].len(), storage);
        for (i, v) in vecs.iter().enumerate() {
            // ids not in row order, so that ties by id are exercised
            e.push(1_000_000 - i as u64 * 7, v).unwrap();
        }
        e
    }

    fn bits(hits: &[Scored]) -> Vec<(ChunkId, u32)> {
        hits.iter().map(|s| (s.id, s.score.to_bits())).collect()
    }

    #[test]
    fn multi_query_scan_equals_single_query_scans() {
        // 1000 rows: several parallel tasks and a partial last one.
        for dim in [29, 384] {
            let mut vecs = clustered(1021, dim, 13, 3);
            let queries = vecs.split_off(1000);
            let qs: Vec<&[f32]> = queries.iter().map(Vec::as_slice).collect();
            for storage in ExactStorage::ALL {
                let e = exact_of(&vecs, storage);
                let single: Vec<Vec<(ChunkId, u32)>> =
                    qs.iter().map(|q| bits(&e.search(q, 10).unwrap())).collect();
                assert!(single.iter().all(|s| s.len() == 10));
                for threads in [1, 2, 3] {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    for block in EXACT_BLOCKS {
                        let batch = pool
                            .install(|| e.search_batch_blocked(&qs, 10, block))
                            .unwrap();
                        let batch: Vec<_> = batch.iter().map(|h| bits(h)).collect();
                        assert_eq!(
                            batch, single,
                            "{storage} dim {dim} block {block} threads {threads}"
                        );
                    }
                }
                assert_eq!(
                    e.search_batch(&qs, 10)
                        .unwrap()
                        .iter()
                        .map(|h| bits(h))
                        .collect::<Vec<_>>(),
                    single
                );
            }
        }
    }

    #[test]
    fn exact_scan_equals_the_straightforward_one() {
        let mut vecs = clustered(712, 384, 9, 5);
        let queries = vecs.split_off(700);
        let e = exact_of(&vecs, ExactStorage::F32);
        let ids: Vec<ChunkId> = (0..vecs.len()).map(|i| 1_000_000 - i as u64 * 7).collect();
        let units: Vec<Vec<f32>> = vecs.iter().map(|v| unit(v)).collect();
        for q in &queries {
            let uq = unit(q);
            let scores: Vec<f32> = units.iter().map(|v| dot(v, &uq)).collect();
            for k in [1, 10, 50, 700, 5000] {
                let want = top_k(&ids, &scores, k);
                let got = e.search(q, k).unwrap();
                assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(&want) {
                    // (fused multiply-adds may swap two scores closer than that)
                    assert!(
                        (g.score - w.score).abs() < 1e-5,
                        "{} vs {}",
                        g.score,
                        w.score
                    );
                    assert!(g.id == w.id || (g.score - w.score).abs() < 1e-6, "k {k}");
                }
            }
        }
        // Ties are broken by the smaller id, as top_k does.
        let mut t = ExactIndex::new(2);
        for id in [9, 4, 7] {
            t.push(id, &[1.0, 1.0]).unwrap();
        }
        t.push(1, &[0.0, 1.0]).unwrap();
        let hits: Vec<ChunkId> = t
            .search(&[1.0, 1.0], 3)
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(hits, [4, 7, 9]);
    }

    #[test]
    fn quantised_scans_keep_recall() {
        let mut vecs = clustered(4050, 384, 40, 11);
        let queries = vecs.split_off(4000);
        let qs: Vec<&[f32]> = queries.iter().map(Vec::as_slice).collect();
        let truth = exact_of(&vecs, ExactStorage::F32)
            .search_batch(&qs, 10)
            .unwrap();
        for (storage, min) in [(ExactStorage::F16, 0.99), (ExactStorage::I8, 0.9)] {
            let e = exact_of(&vecs, storage);
            assert_eq!(e.scan_bytes(), storage.bytes_per_vector(384) * 4000);
            let got = e.search_batch(&qs, 10).unwrap();
            let mut hit = 0;
            for (g, t) in got.iter().zip(&truth) {
                let want: Vec<ChunkId> = t.iter().map(|s| s.id).collect();
                hit += g.iter().filter(|s| want.contains(&s.id)).count();
                // scores stay cosines, close to the exact ones
                assert!((g[0].score - t[0].score).abs() < 0.02, "{storage}");
            }
            let recall = hit as f64 / (10 * qs.len()) as f64;
            assert!(recall >= min, "{storage}: recall@10 {recall} < {min}");
            assert!(recall <= 1.0);
        }
    }

    #[test]
    fn exact_storage_and_block_are_checked() {
        for s in ExactStorage::ALL {
            assert_eq!(s.as_str().parse::<ExactStorage>().unwrap(), s);
        }
        let e = "bf16".parse::<ExactStorage>().unwrap_err();
        assert!(matches!(e, IndexError::Vector(_)));
        assert!(e.to_string().contains("expected f32, f16 or i8"), "{e}");
        let idx = exact_of(&clustered(10, 8, 2, 1), ExactStorage::F16);
        let q = [0.5f32; 8];
        let short = [1.0f32; 7];
        assert!(matches!(
            idx.search_batch_blocked(&[&q[..]], 3, 3),
            Err(IndexError::Vector(_))
        ));
        assert!(matches!(
            idx.search_batch(&[&q[..], &short[..]], 3),
            Err(IndexError::Dim {
                expected: 8,
                got: 7
            })
        ));
        assert!(idx.search(&q, 0).unwrap().is_empty());
        assert_eq!(idx.search(&q, 100).unwrap().len(), 10);
        assert!(ExactIndex::new(4).search(&[1.0; 4], 5).unwrap().is_empty());
        assert!(ExactIndex::new(4).search_batch(&[], 5).unwrap().is_empty());
    }

    #[test]
    fn dot_matches_naive() {
        let a: Vec<f32> = (0..19).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..19).map(|i| 1.0 - i as f32 * 0.1).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-3);
    }
}
