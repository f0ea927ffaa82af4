//! Cairn's HNSW graph (Malkov & Yashunin), over unit vectors by inner
//! product, stored as f32, f16 or scalar-quantised i8.
//!
//! What it does that a general-purpose library does not:
//!
//! - **Reads take no lock.** Each node's neighbour lists are arrays of
//!   atomics (a count, then the ids), written under that node's mutex and
//!   read with acquire loads, which are plain loads on x86-64 and ARM64. A
//!   reader may see a list half rewritten; every id in it is a node whose
//!   vector was stored before any list named it, so a search is never
//!   wrong, only (for the moment of the write) slightly less thorough.
//! - **Storage never moves.** Nodes live in segments that double in size
//!   (1,024 nodes, then 2,048, ...), each allocated once and never
//!   reallocated, so the graph grows while searches run.
//! - **A node is reachable only once complete.** An insertion first
//!   searches every level for its neighbours, then writes its own lists,
//!   and only then links the neighbours back to it.
//! - **Level 0 keeps 2·M neighbours chosen by the heuristic** for the new
//!   node as well as for the nodes it links to (as FAISS does; hnswlib picks
//!   M and only lets back links fill to 2·M): on real embeddings this
//!   gives a better recall per search breadth.
//! - **A node's level-0 list sits beside its vector** in one record aligned
//!   to cache lines (hnswlib's layout): expanding a node whose distance was
//!   just computed reads lines that are often still in cache. A segment's
//!   records come from `mmap`, and on Linux a segment of 2 MiB or more asks
//!   for transparent huge pages, which cut the TLB misses of a search's
//!   scattered reads.
//! - **The search prefetches** the vectors of a node's unvisited neighbours
//!   before it computes their distances, and computes them four at a time
//!   with AVX2 + FMA intrinsics written for each storage type (portable
//!   Rust on other CPUs).
//!
//! Removal marks a node deleted: it stays in the graph as a way through,
//! and is left out of results.

use crate::scan::{dots, f32_to_f16, quantize_i8, simd_level, Elem, Simd, F16};
use std::cell::RefCell;
use std::collections::{BinaryHeap, HashMap};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError, RwLock};

/// Nodes in the first segment; segment `s` holds `FIRST << s`.
const FIRST: usize = 1024;
/// Segments: enough for more nodes than a `u32` numbers.
const SEGMENTS: usize = 23;
/// The highest level a node is given.
const MAX_LEVEL: u8 = 15;
/// "No node" in the packed entry point.
const EMPTY: u64 = u64::MAX;
/// The graph file's first bytes (then a format version).
const MAGIC: &[u8; 10] = b"CAIRNHNSW\x01";

/// How the graph stores its vectors.
pub(crate) trait Store: Elem + Default {
    /// The kind byte in the graph file.
    const KIND: u8;
    /// Bytes per component in the graph file.
    const BYTES: usize;
    /// Encode a unit vector: its components and the factor their dot
    /// products are scaled by.
    fn encode(v: &[f32], out: &mut [Self]) -> f32;
    fn write(self, out: &mut Vec<u8>);
    fn read(b: &[u8]) -> Self;
    /// A stored vector as it is, when it is already f32 (whose scale is
    /// always 1); `None` for the storages that must be decoded.
    fn as_f32(row: &[Self]) -> Option<&[f32]> {
        let _ = row;
        None
    }
    /// The dot product of `row` with `q` (as many components).
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn dot_avx2(row: &[Self], q: &[f32]) -> f32;
    /// The dot products of four rows with `q`.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn dot4_avx2(rows: [&[Self]; 4], q: &[f32]) -> [f32; 4];
}

impl Store for f32 {
    const KIND: u8 = 0;
    const BYTES: usize = 4;
    fn encode(v: &[f32], out: &mut [f32]) -> f32 {
        out.copy_from_slice(v);
        1.0
    }
    fn write(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn read(b: &[u8]) -> f32 {
        f32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
    #[cfg(target_arch = "x86_64")]
    unsafe fn dot_avx2(row: &[f32], q: &[f32]) -> f32 {
        kernels::dot_f32(row, q)
    }
    #[cfg(target_arch = "x86_64")]
    unsafe fn dot4_avx2(rows: [&[f32]; 4], q: &[f32]) -> [f32; 4] {
        kernels::dot4_f32(rows, q)
    }
    fn as_f32(row: &[f32]) -> Option<&[f32]> {
        Some(row)
    }
}

impl Store for F16 {
    const KIND: u8 = 1;
    const BYTES: usize = 2;
    fn encode(v: &[f32], out: &mut [F16]) -> f32 {
        for (o, x) in out.iter_mut().zip(v) {
            *o = F16(f32_to_f16(*x));
        }
        1.0
    }
    fn write(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0.to_le_bytes());
    }
    fn read(b: &[u8]) -> F16 {
        F16(u16::from_le_bytes([b[0], b[1]]))
    }
    #[cfg(target_arch = "x86_64")]
    unsafe fn dot_avx2(row: &[F16], q: &[f32]) -> f32 {
        kernels::dot_f16(row, q)
    }
    #[cfg(target_arch = "x86_64")]
    unsafe fn dot4_avx2(rows: [&[F16]; 4], q: &[f32]) -> [f32; 4] {
        kernels::dot4_f16(rows, q)
    }
}

impl Store for i8 {
    const KIND: u8 = 2;
    const BYTES: usize = 1;
    fn encode(v: &[f32], out: &mut [i8]) -> f32 {
        quantize_i8(v, out)
    }
    fn write(self, out: &mut Vec<u8>) {
        out.push(self as u8);
    }
    fn read(b: &[u8]) -> i8 {
        b[0] as i8
    }
    #[cfg(target_arch = "x86_64")]
    unsafe fn dot_avx2(row: &[i8], q: &[f32]) -> f32 {
        kernels::dot_i8(row, q)
    }
    #[cfg(target_arch = "x86_64")]
    unsafe fn dot4_avx2(rows: [&[i8]; 4], q: &[f32]) -> [f32; 4] {
        kernels::dot4_i8(rows, q)
    }
}

/// The first node of segment `s`.
fn segment_start(s: usize) -> usize {
    FIRST * ((1 << s) - 1)
}

/// The segment of node `i` and its place in it.
#[inline(always)]
fn locate(i: usize) -> (usize, usize) {
    let x = i / FIRST + 1;
    let s = (usize::BITS - 1 - x.leading_zeros()) as usize;
    (s, i - segment_start(s))
}

/// Zeroed memory for one segment's level-0 records, committed page by page
/// as nodes are written. On Unix it comes straight from `mmap` (aligned to
/// a page, so every record starts a cache line); on Linux a region of 2 MiB
/// or more asks for transparent huge pages, which cut the TLB misses of a
/// search's scattered reads (the kernel's default, `madvise`, gives them
/// only to regions that ask).
struct Region {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: `Region` owns its bytes; what they hold is shared through
// atomics and write-once cells (see `Segment`).
unsafe impl Send for Region {}
unsafe impl Sync for Region {}

impl Region {
    fn zeroed(len: usize) -> Region {
        #[cfg(unix)]
        {
            // SAFETY: an anonymous private mapping of `len` bytes; the
            // result is checked.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len.max(1),
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if ptr == libc::MAP_FAILED {
                std::alloc::handle_alloc_error(
                    std::alloc::Layout::from_size_align(len.max(1), 64).expect("a valid layout"),
                );
            }
            #[cfg(target_os = "linux")]
            if len >= 2 << 20 {
                // SAFETY: advice on a mapping this function owns; a kernel
                // without transparent huge pages refuses it harmlessly.
                unsafe { libc::madvise(ptr, len, libc::MADV_HUGEPAGE) };
            }
            Region {
                ptr: ptr as *mut u8,
                len,
            }
        }
        #[cfg(not(unix))]
        {
            let layout =
                std::alloc::Layout::from_size_align(len.max(1), 64).expect("a valid layout");
            // SAFETY: a non-zero size.
            let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
            if ptr.is_null() {
                std::alloc::handle_alloc_error(layout);
            }
            Region { ptr, len }
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping (or allocation) made by `zeroed`.
        #[cfg(unix)]
        unsafe {
            libc::munmap(self.ptr as *mut libc::c_void, self.len.max(1));
        }
        #[cfg(not(unix))]
        unsafe {
            std::alloc::dealloc(
                self.ptr,
                std::alloc::Layout::from_size_align(self.len.max(1), 64).expect("a valid layout"),
            );
        }
    }
}

/// The layout of a level-0 record: the list (a count, then `m0` ids), padded
/// to whole cache lines, then the vector, padded likewise. A node's list
/// sits beside its vector (hnswlib's layout), so that expanding a node whose
/// distance was just computed reads lines that are often still in cache.
#[derive(Clone, Copy, Debug)]
struct Record {
    /// Bytes of the list part (a multiple of 64).
    links: usize,
    /// Bytes per record (a multiple of 64).
    stride: usize,
}

impl Record {
    fn new<E>(dim: usize, m0: usize) -> Record {
        let links = ((m0 + 1) * 4).div_ceil(64) * 64;
        let vector = (dim * std::mem::size_of::<E>()).div_ceil(64) * 64;
        Record {
            links,
            stride: links + vector,
        }
    }
}

/// A block of nodes, allocated once.
struct Segment<E> {
    /// Per node a [`Record`]: its level-0 list (atomics) and its vector.
    /// The vector is written once by the inserting thread before any list
    /// names the node, and only read after.
    level0: Region,
    /// Per node: the factor its dot products are scaled by (`f32` bits).
    scales: Box<[AtomicU32]>,
    ids: Box<[AtomicU64]>,
    levels: Box<[AtomicU8]>,
    deleted: Box<[AtomicBool]>,
    /// Per node above level 0: `level × (m + 1)` entries.
    upper: Box<[OnceLock<Box<[AtomicU32]>>]>,
    /// Held to change a node's lists.
    locks: Box<[Mutex<()>]>,
    _store: std::marker::PhantomData<E>,
}

// SAFETY: the vectors in `level0` are written once, by the thread that took
// the node's slot, before the node is published (by a release store of a
// list or of the entry point that names it); every other access reads them
// after an acquire load of such a store. The lists there are atomics.
unsafe impl<E: Send> Sync for Segment<E> {}
unsafe impl<E: Send> Send for Segment<E> {}

/// `n` values whose bytes are all zero, from `alloc_zeroed`: the pages of a
/// large segment are committed as nodes are written, not when it is
/// allocated.
///
/// # Safety
/// All-zero bytes must be a valid `T`.
unsafe fn zeroed<T>(n: usize) -> Box<[T]> {
    if n == 0 || std::mem::size_of::<T>() == 0 {
        return (0..n).map(|_| std::mem::zeroed()).collect();
    }
    let layout = std::alloc::Layout::array::<T>(n).expect("an HNSW segment fits in memory");
    let p = std::alloc::alloc_zeroed(layout) as *mut T;
    if p.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, n))
}

impl<E: Store> Segment<E> {
    fn new(nodes: usize, record: Record) -> Segment<E> {
        // SAFETY: the atomics have their contents' layout, for which zero
        // is valid.
        unsafe {
            Segment {
                level0: Region::zeroed(nodes * record.stride),
                scales: zeroed::<AtomicU32>(nodes),
                ids: zeroed::<AtomicU64>(nodes),
                levels: zeroed::<AtomicU8>(nodes),
                deleted: zeroed::<AtomicBool>(nodes),
                upper: (0..nodes).map(|_| OnceLock::new()).collect(),
                locks: (0..nodes).map(|_| Mutex::new(())).collect(),
                _store: std::marker::PhantomData,
            }
        }
    }
}

/// A candidate: distance (1 − inner product) and node.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Near(f32, u32);

impl Eq for Near {}
impl PartialOrd for Near {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Near {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0).then(self.1.cmp(&o.1))
    }
}

/// Nodes seen by the search in progress: a stamp per node, so that
/// starting a search costs nothing.
struct Visited {
    marks: Vec<u16>,
    stamp: u16,
}

impl Visited {
    fn start(&mut self, nodes: usize) {
        if self.marks.len() < nodes {
            self.marks.resize(nodes, 0);
        }
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.marks.fill(0);
            self.stamp = 1;
        }
    }

    /// Whether `n` is new (and mark it).
    #[inline(always)]
    fn first(&mut self, n: u32) -> bool {
        let n = n as usize;
        if n >= self.marks.len() {
            // A node inserted since the search started.
            self.marks.resize(n + 1024, 0);
        }
        let seen = self.marks[n] == self.stamp;
        self.marks[n] = self.stamp;
        !seen
    }
}

thread_local! {
    static VISITED: RefCell<Visited> = const { RefCell::new(Visited { marks: Vec::new(), stamp: 0 }) };
}

/// Errors reading a graph file.
#[derive(Debug)]
pub(crate) enum ReadError {
    Io(std::io::Error),
    Format(String),
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Io(e)
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A position in a graph's insertion order that spreads an id sequence
/// evenly: insertion in document order builds a worse graph than
/// insertion in random order (neighbouring passages all arrive together).
pub(crate) fn shuffle_key(id: u64) -> u64 {
    splitmix(id ^ 0x5ca1_ab1e)
}

/// The HNSW graph.
pub(crate) struct Graph<E: Store> {
    dim: usize,
    m: usize,
    m0: usize,
    record: Record,
    ef_construction: usize,
    ml: f64,
    segments: [OnceLock<Segment<E>>; SEGMENTS],
    /// Slots handed out.
    next: AtomicUsize,
    /// Nodes not deleted.
    live: AtomicUsize,
    /// The entry point: `level << 32 | node`, or [`EMPTY`].
    entry: AtomicU64,
    /// Held by an insertion that may raise the entry point's level.
    entry_lock: Mutex<()>,
    ids: RwLock<HashMap<u64, u32>>,
    /// The distance kernels' instruction set.
    simd: Simd,
}

/// Distances below this are a tie (the kernels' rounding): two vectors
/// this close are copies of one (the same passage ingested twice). The
/// heuristic keeps one copy of a vector in a list, not all of them, so a
/// run of copies does not fill its lists with itself and become an island.
const TIE: f32 = 1e-6;

fn pack(node: u32, level: u8) -> u64 {
    (u64::from(level) << 32) | u64::from(node)
}

fn unpack(e: u64) -> (u32, u8) {
    (e as u32, (e >> 32) as u8)
}

impl<E: Store> Graph<E> {
    pub(crate) fn new(dim: usize, m: usize, ef_construction: usize) -> Graph<E> {
        let m = m.clamp(2, 256);
        Graph {
            dim,
            m,
            m0: 2 * m,
            record: Record::new::<E>(dim, 2 * m),
            ef_construction: ef_construction.max(m),
            ml: 1.0 / (m as f64).ln(),
            segments: std::array::from_fn(|_| OnceLock::new()),
            next: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            entry: AtomicU64::new(EMPTY),
            entry_lock: Mutex::new(()),
            ids: RwLock::new(HashMap::new()),
            simd: simd_level(),
        }
    }

    /// Nodes not deleted.
    pub(crate) fn len(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Nodes in the graph, deleted ones included.
    pub(crate) fn nodes(&self) -> usize {
        self.next.load(Ordering::Acquire)
    }

    pub(crate) fn contains(&self, id: u64) -> bool {
        let ids = self.ids.read().unwrap_or_else(PoisonError::into_inner);
        ids.get(&id).is_some_and(|&n| !self.is_deleted(n))
    }

    /// Bytes allocated for the graph (segments and the id map).
    pub(crate) fn memory_usage(&self) -> usize {
        let per_node = self.record.stride
            + 4
            + 8
            + 2
            + std::mem::size_of::<OnceLock<Box<[AtomicU32]>>>()
            + std::mem::size_of::<Mutex<()>>();
        let mut bytes = 0;
        for (s, seg) in self.segments.iter().enumerate() {
            if seg.get().is_some() {
                bytes += (FIRST << s) * per_node;
            }
        }
        let upper: usize = (0..self.nodes())
            .map(|n| self.level(n as u32) as usize * (self.m + 1) * 4)
            .sum();
        let ids = self
            .ids
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .capacity()
            * 16;
        bytes + upper + ids
    }

    #[inline(always)]
    fn seg(&self, n: u32) -> (&Segment<E>, usize) {
        let (s, i) = locate(n as usize);
        (
            self.segments[s].get().expect("a published node's segment"),
            i,
        )
    }

    /// The start of `n`'s level-0 record.
    #[inline(always)]
    fn record(&self, n: u32) -> *mut u8 {
        let (seg, i) = self.seg(n);
        debug_assert!((i + 1) * self.record.stride <= seg.level0.len);
        // SAFETY: `i` is a slot of this segment, which holds
        // `FIRST << s` records of `stride` bytes.
        unsafe { seg.level0.ptr.add(i * self.record.stride) }
    }

    #[inline(always)]
    fn vector(&self, n: u32) -> &[E] {
        // SAFETY: the vector part of a record holds `dim` values of `E`,
        // aligned (records and their parts start at multiples of 64
        // bytes); the node is published, so its vector is written and no
        // longer changes (see `Segment`).
        unsafe {
            std::slice::from_raw_parts(self.record(n).add(self.record.links) as *const E, self.dim)
        }
    }

    /// Store `v` as node `n`'s vector.
    ///
    /// # Safety
    /// Only the thread that took the slot `n`, before `n` is published (or
    /// while the graph is loaded and nothing reads it).
    unsafe fn set_vector(&self, n: u32, v: &[E]) {
        let p = self.record(n).add(self.record.links) as *mut E;
        std::ptr::copy_nonoverlapping(v.as_ptr(), p, self.dim);
    }

    #[inline(always)]
    fn scale(&self, n: u32) -> f32 {
        let (seg, i) = self.seg(n);
        f32::from_bits(seg.scales[i].load(Ordering::Relaxed))
    }

    fn level(&self, n: u32) -> u8 {
        let (seg, i) = self.seg(n);
        seg.levels[i].load(Ordering::Acquire)
    }

    fn is_deleted(&self, n: u32) -> bool {
        let (seg, i) = self.seg(n);
        seg.deleted[i].load(Ordering::Acquire)
    }

    fn id(&self, n: u32) -> u64 {
        let (seg, i) = self.seg(n);
        seg.ids[i].load(Ordering::Acquire)
    }

    /// The neighbour list of `n` at `level`: the count, then the ids.
    #[inline(always)]
    fn links(&self, n: u32, level: usize) -> &[AtomicU32] {
        if level == 0 {
            // SAFETY: a record starts with `m0 + 1` u32 atomics (zero
            // bytes are a valid empty list), 64-byte aligned.
            return unsafe {
                std::slice::from_raw_parts(self.record(n) as *const AtomicU32, self.m0 + 1)
            };
        }
        let (seg, i) = self.seg(n);
        let upper = seg.upper[i].get().expect("a node above level 0 has lists");
        &upper[(level - 1) * (self.m + 1)..level * (self.m + 1)]
    }

    fn lock(&self, n: u32) -> std::sync::MutexGuard<'_, ()> {
        let (seg, i) = self.seg(n);
        seg.locks[i].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Load the hardware cache with bytes `from..to` of `n`'s vector.
    #[inline(always)]
    fn prefetch(&self, n: u32, from: usize, to: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            let v = self.vector(n);
            let bytes = std::mem::size_of_val(v);
            let p = v.as_ptr() as *const i8;
            let mut off = from;
            while off < bytes.min(to) {
                // SAFETY: prefetching is a hint; the address is in the
                // vector's allocation.
                unsafe {
                    std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                        p.add(off),
                    )
                };
                off += 64;
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (n, from, to);
    }

    /// 1 − the inner product of `q` with node `n`.
    #[inline(always)]
    fn dist(&self, q: &[f32], n: u32) -> f32 {
        let row = self.vector(n);
        let d = match self.simd {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `simd` says the CPU has AVX2, FMA and F16C.
            Simd::Avx2 | Simd::Avx512 => unsafe { E::dot_avx2(row, q) },
            _ => dots::<E, 1, false>(row, q, self.dim)[0],
        };
        1.0 - d * self.scale(n)
    }

    /// [`dist`](Self::dist) of four nodes at once: four independent
    /// streams of loads, so the CPU overlaps their cache misses.
    #[inline(always)]
    fn dist4(&self, q: &[f32], n: [u32; 4]) -> [f32; 4] {
        let rows = n.map(|x| self.vector(x));
        let d = match self.simd {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `simd` says the CPU has AVX2, FMA and F16C.
            Simd::Avx2 | Simd::Avx512 => unsafe { E::dot4_avx2(rows, q) },
            _ => kernels::dot4::<E, false>(rows, q),
        };
        let mut out = [0f32; 4];
        for j in 0..4 {
            out[j] = 1.0 - d[j] * self.scale(n[j]);
        }
        out
    }

    /// Node `n`'s vector as f32, to search with: the stored one itself
    /// when it is f32, else decoded into `buf`.
    fn as_query<'a>(&'a self, n: u32, buf: &'a mut Vec<f32>) -> &'a [f32] {
        match E::as_f32(self.vector(n)) {
            Some(v) => v,
            None => {
                self.decode(n, buf);
                buf
            }
        }
    }

    /// Node `n`'s vector as f32 (what it was inserted as, quantised).
    fn decode(&self, n: u32, out: &mut Vec<f32>) {
        out.clear();
        let s = self.scale(n);
        out.extend(self.vector(n).iter().map(|x| E::decode(*x) * s));
    }

    /// Greedy descent at `level` from `cur` (one of the closest nodes).
    #[inline(always)]
    fn greedy(&self, q: &[f32], mut cur: Near, level: usize) -> Near {
        loop {
            let links = self.links(cur.1, level);
            let count = (links[0].load(Ordering::Acquire) as usize).min(links.len() - 1);
            let mut moved = false;
            for l in &links[1..=count] {
                let n = l.load(Ordering::Acquire);
                let d = self.dist(q, n);
                if d < cur.0 {
                    cur = Near(d, n);
                    moved = true;
                }
            }
            if !moved {
                return cur;
            }
        }
    }

    /// The `ef` nodes nearest `q` at `level` found from `entry`, nearest
    /// first.
    #[inline(always)]
    fn beam(
        &self,
        q: &[f32],
        entry: &[Near],
        ef: usize,
        level: usize,
        visited: &mut Visited,
    ) -> Vec<Near> {
        let mut candidates: BinaryHeap<std::cmp::Reverse<Near>> = BinaryHeap::with_capacity(ef * 2);
        let mut top: BinaryHeap<Near> = BinaryHeap::with_capacity(ef + 1);
        for &e in entry {
            if visited.first(e.1) {
                candidates.push(std::cmp::Reverse(e));
                top.push(e);
            }
        }
        while top.len() > ef {
            top.pop();
        }
        let mut fresh = [0u32; 512];
        while let Some(std::cmp::Reverse(c)) = candidates.pop() {
            if top.len() >= ef && top.peek().is_some_and(|t| c.0 > t.0) {
                break;
            }
            let links = self.links(c.1, level);
            let count = (links[0].load(Ordering::Acquire) as usize).min(links.len() - 1);
            let mut k = 0;
            for l in &links[1..=count] {
                let n = l.load(Ordering::Acquire);
                if visited.first(n) {
                    self.prefetch(n, 0, 128);
                    fresh[k] = n;
                    k += 1;
                }
            }
            let mut offer = |d: f32, n: u32| {
                if top.len() < ef || top.peek().is_some_and(|t| d < t.0) {
                    candidates.push(std::cmp::Reverse(Near(d, n)));
                    top.push(Near(d, n));
                    if top.len() > ef {
                        top.pop();
                    }
                }
            };
            let mut quads = fresh[..k].chunks_exact(4);
            let mut next = 4;
            for quad in &mut quads {
                // The rest of the next four vectors while these four are
                // computed.
                for &n in fresh[next.min(k)..(next + 4).min(k)].iter() {
                    self.prefetch(n, 128, usize::MAX);
                }
                next += 4;
                let quad = [quad[0], quad[1], quad[2], quad[3]];
                let d = self.dist4(q, quad);
                for j in 0..4 {
                    offer(d[j], quad[j]);
                }
            }
            for &n in quads.remainder() {
                offer(self.dist(q, n), n);
            }
        }
        top.into_sorted_vec()
    }

    /// The heuristic choice of at most `m` neighbours among `candidates`
    /// (nearest first): a candidate is kept when it is nearer the base than
    /// to any neighbour kept before it, so the lists reach out in different
    /// directions.
    fn select(&self, candidates: &[Near], m: usize, buf: &mut Vec<f32>) -> Vec<Near> {
        if candidates.len() <= m {
            return candidates.to_vec();
        }
        let mut kept: Vec<Near> = Vec::with_capacity(m);
        for &c in candidates {
            if kept.len() >= m {
                break;
            }
            let q = self.as_query(c.1, buf);
            // A kept copy of the base (at a tie from it) is as far from
            // every candidate as the base is: it leaves out only its own
            // copies.
            let bar = |k: &Near| if k.0 < TIE { TIE } else { c.0 };
            // Nearer a kept neighbour than the base: left out. Four kept
            // neighbours at a time, stopping at the first nearer one.
            let mut quads = kept.chunks_exact(4);
            let mut keep = true;
            for quad in &mut quads {
                let d = self.dist4(q, [quad[0].1, quad[1].1, quad[2].1, quad[3].1]);
                if d.iter().zip(quad).any(|(&d, k)| d < bar(k)) {
                    keep = false;
                    break;
                }
            }
            if keep
                && quads
                    .remainder()
                    .iter()
                    .all(|k| self.dist(q, k.1) >= bar(k))
            {
                kept.push(c);
            }
        }
        kept
    }

    fn new_slot(&self, id: u64, v: &[f32]) -> (u32, u8) {
        let slot = self.next.fetch_add(1, Ordering::AcqRel);
        assert!(
            slot < u32::MAX as usize,
            "an HNSW graph holds fewer than 2^32 nodes"
        );
        let (s, i) = locate(slot);
        let seg = self.segments[s].get_or_init(|| Segment::new(FIRST << s, self.record));
        let mut encoded = vec![E::default(); self.dim];
        let scale = E::encode(v, &mut encoded);
        // SAFETY: this thread owns the fresh slot; nothing reads it before
        // it is published.
        unsafe { self.set_vector(slot as u32, &encoded) };
        seg.scales[i].store(scale.to_bits(), Ordering::Relaxed);
        seg.ids[i].store(id, Ordering::Release);
        let level = self.level_of(id);
        if level > 0 {
            let lists = (0..level as usize * (self.m + 1))
                .map(|_| AtomicU32::new(0))
                .collect();
            let _ = seg.upper[i].set(lists);
        }
        seg.levels[i].store(level, Ordering::Release);
        (slot as u32, level)
    }

    /// The highest level an insertion of `id` reaches: drawn from the
    /// exponential distribution of HNSW (scale 1/ln M) by a hash of the id,
    /// so a batch can be ordered by level before it goes in.
    pub(crate) fn level_of(&self, id: u64) -> u8 {
        let u = (splitmix(id ^ 0x0123_4567_89ab_cdef) >> 11) as f64 / (1u64 << 53) as f64;
        ((-(1.0 - u).ln() * self.ml) as u64).min(u64::from(MAX_LEVEL)) as u8
    }

    /// Write `n`'s list at `level` (its lock held).
    fn write_links(&self, n: u32, level: usize, list: &[Near]) {
        let links = self.links(n, level);
        for (l, x) in links[1..].iter().zip(list) {
            l.store(x.1, Ordering::Release);
        }
        links[0].store(list.len() as u32, Ordering::Release);
    }

    /// Add `v` (unit length, `dim` components) under `id`. Runs alongside
    /// searches and other insertions.
    /// Add `v` (unit length, `dim` components) under `id`. Runs alongside
    /// searches and other insertions.
    pub(crate) fn insert(&self, id: u64, v: &[f32]) {
        let (node, level) = self.new_slot(id, v);
        let mut entry = self.entry.load(Ordering::Acquire);
        let _raising = if entry == EMPTY || level > unpack(entry).1 {
            let guard = self
                .entry_lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            entry = self.entry.load(Ordering::Acquire);
            Some(guard)
        } else {
            None
        };
        let previous = self
            .ids
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, node);
        if let Some(old) = previous {
            self.delete_node(old);
        }
        self.live.fetch_add(1, Ordering::AcqRel);
        if entry == EMPTY {
            self.entry.store(pack(node, level), Ordering::Release);
            return;
        }
        let (ep, top) = unpack(entry);
        let mut cur = Near(self.dist(v, ep), ep);
        for l in (level as usize + 1..=top as usize).rev() {
            cur = self.greedy(v, cur, l);
        }
        // Every level's neighbours first; the node is linked in after.
        let mut buf = Vec::with_capacity(self.dim);
        let mut chosen: Vec<Vec<Near>> = vec![Vec::new(); level.min(top) as usize + 1];
        VISITED.with(|visited| {
            let mut visited = visited.borrow_mut();
            let mut eps = vec![cur];
            for l in (0..=level.min(top) as usize).rev() {
                visited.start(self.nodes());
                let found = self.beam(v, &eps, self.ef_construction, l, &mut visited);
                let cap = if l == 0 { self.m0 } else { self.m };
                chosen[l] = self.select(&found, cap, &mut buf);
                eps = found;
            }
        });
        {
            let _own = self.lock(node);
            for (l, list) in chosen.iter().enumerate() {
                self.write_links(node, l, list);
            }
        }
        for (l, list) in chosen.iter().enumerate() {
            let cap = if l == 0 { self.m0 } else { self.m };
            for nb in list {
                self.link_back(nb.1, node, nb.0, l, cap, &mut buf);
            }
        }
        if level > top {
            self.entry.store(pack(node, level), Ordering::Release);
        }
    }

    /// Add `node` (at distance `d`) to `to`'s list at `level`, choosing
    /// again by the heuristic when the list is full.
    fn link_back(&self, to: u32, node: u32, d: f32, level: usize, cap: usize, buf: &mut Vec<f32>) {
        let _lock = self.lock(to);
        let links = self.links(to, level);
        let count = (links[0].load(Ordering::Acquire) as usize).min(cap);
        if count < cap {
            links[count + 1].store(node, Ordering::Release);
            links[0].store(count as u32 + 1, Ordering::Release);
            return;
        }
        let q = self.as_query(to, buf);
        let mut candidates: Vec<Near> = links[1..=count]
            .iter()
            .map(|l| {
                let n = l.load(Ordering::Acquire);
                Near(self.dist(q, n), n)
            })
            .collect();
        candidates.push(Near(d, node));
        candidates.sort();
        let mut scratch = Vec::with_capacity(self.dim);
        let kept = self.select(&candidates, cap, &mut scratch);
        self.write_links(to, level, &kept);
    }

    fn delete_node(&self, n: u32) {
        let (seg, i) = self.seg(n);
        if !seg.deleted[i].swap(true, Ordering::AcqRel) {
            self.live.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Mark `id` deleted; whether it was there.
    pub(crate) fn remove(&self, id: u64) -> bool {
        let node = self
            .ids
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        match node {
            Some(n) => {
                self.delete_node(n);
                true
            }
            None => false,
        }
    }

    /// The `k` nearest live nodes to `q` (unit length): (id, inner
    /// product), best first, searching with a breadth of `ef` (at least
    /// `k`).
    pub(crate) fn search(&self, q: &[f32], k: usize, ef: usize) -> Vec<(u64, f32)> {
        let entry = self.entry.load(Ordering::Acquire);
        if entry == EMPTY || k == 0 {
            return Vec::new();
        }
        let (ep, top) = unpack(entry);
        let mut cur = Near(self.dist(q, ep), ep);
        for l in (1..=top as usize).rev() {
            cur = self.greedy(q, cur, l);
        }
        let found = VISITED.with(|visited| {
            let mut visited = visited.borrow_mut();
            visited.start(self.nodes());
            self.beam(q, &[cur], ef.max(k), 0, &mut visited)
        });
        found
            .into_iter()
            .filter(|n| !self.is_deleted(n.1))
            .take(k)
            .map(|n| (self.id(n.1), 1.0 - n.0))
            .collect()
    }

    /// Write the graph (no insertion may run meanwhile).
    pub(crate) fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        let nodes = self.nodes();
        let mut head = Vec::with_capacity(64);
        head.extend_from_slice(MAGIC);
        head.push(E::KIND);
        for x in [self.dim, self.m, self.ef_construction] {
            head.extend_from_slice(&(x as u32).to_le_bytes());
        }
        head.extend_from_slice(&(nodes as u64).to_le_bytes());
        head.extend_from_slice(&self.entry.load(Ordering::Acquire).to_le_bytes());
        out.write_all(&head)?;
        let mut buf = Vec::with_capacity(self.dim * E::BYTES + (self.m0 + 1) * 4 + 32);
        for n in 0..nodes as u32 {
            buf.clear();
            let level = self.level(n);
            buf.extend_from_slice(&self.id(n).to_le_bytes());
            buf.push(level);
            buf.push(u8::from(self.is_deleted(n)));
            buf.extend_from_slice(&self.scale(n).to_le_bytes());
            for x in self.vector(n) {
                x.write(&mut buf);
            }
            for l in 0..=level as usize {
                let links = self.links(n, l);
                let count = (links[0].load(Ordering::Acquire) as usize).min(links.len() - 1);
                buf.extend_from_slice(&(count as u32).to_le_bytes());
                for (j, a) in links[1..].iter().enumerate() {
                    // What a shrunk list left past its count is not kept.
                    let x = if j < count {
                        a.load(Ordering::Acquire)
                    } else {
                        0
                    };
                    buf.extend_from_slice(&x.to_le_bytes());
                }
            }
            out.write_all(&buf)?;
        }
        Ok(())
    }

    /// Read a graph [`write_to`](Self::write_to) wrote, checking that it
    /// has this graph's dimension, `m` and storage, and that every list
    /// names nodes it holds.
    pub(crate) fn read_from(&self, input: &mut impl Read) -> Result<(), ReadError> {
        let bad = |m: String| ReadError::Format(m);
        let mut head = [0u8; 10 + 1 + 12 + 16];
        input.read_exact(&mut head)?;
        if &head[..10] != MAGIC {
            return Err(bad("not a Cairn HNSW graph (or another version)".into()));
        }
        let u32_at =
            |o: usize| u32::from_le_bytes([head[o], head[o + 1], head[o + 2], head[o + 3]]);
        let (kind, dim, m) = (head[10], u32_at(11) as usize, u32_at(15) as usize);
        if kind != E::KIND || dim != self.dim || m != self.m {
            return Err(bad(format!(
                "holds storage {kind}, dimension {dim}, m {m}; expected {}, {}, {}",
                E::KIND,
                self.dim,
                self.m
            )));
        }
        let nodes = u64::from_le_bytes(head[23..31].try_into().expect("8 bytes")) as usize;
        let entry = u64::from_le_bytes(head[31..39].try_into().expect("8 bytes"));
        if nodes >= u32::MAX as usize || (nodes == 0) != (entry == EMPTY) {
            return Err(bad(format!("{nodes} nodes with entry point {entry:#x}")));
        }
        if entry != EMPTY && (unpack(entry).0 as usize >= nodes || unpack(entry).1 > MAX_LEVEL) {
            return Err(bad(format!("entry point {entry:#x} out of range")));
        }
        let fixed = 8 + 1 + 1 + 4 + self.dim * E::BYTES;
        let mut rec = vec![0u8; fixed];
        let mut list = vec![0u8; (self.m0 + 1) * 4];
        let mut vector: Vec<E> = Vec::with_capacity(self.dim);
        let mut ids = self.ids.write().unwrap_or_else(PoisonError::into_inner);
        for n in 0..nodes {
            input.read_exact(&mut rec)?;
            let id = u64::from_le_bytes(rec[..8].try_into().expect("8 bytes"));
            let level = rec[8];
            let deleted = rec[9] != 0;
            if level > MAX_LEVEL {
                return Err(bad(format!("node {n} at level {level}")));
            }
            let scale = f32::from_le_bytes(rec[10..14].try_into().expect("4 bytes"));
            let (s, i) = locate(self.next.fetch_add(1, Ordering::AcqRel));
            let seg = self.segments[s].get_or_init(|| Segment::new(FIRST << s, self.record));
            vector.clear();
            vector.extend((0..self.dim).map(|j| E::read(&rec[14 + j * E::BYTES..])));
            // SAFETY: the graph is being loaded; nothing reads it yet.
            unsafe { self.set_vector(n as u32, &vector) };
            seg.scales[i].store(scale.to_bits(), Ordering::Relaxed);
            seg.ids[i].store(id, Ordering::Relaxed);
            seg.levels[i].store(level, Ordering::Relaxed);
            seg.deleted[i].store(deleted, Ordering::Relaxed);
            if level > 0 {
                let lists = (0..level as usize * (self.m + 1))
                    .map(|_| AtomicU32::new(0))
                    .collect();
                let _ = seg.upper[i].set(lists);
            }
            for l in 0..=level as usize {
                let cap = if l == 0 { self.m0 } else { self.m };
                let bytes = &mut list[..(cap + 1) * 4];
                input.read_exact(bytes)?;
                let word = |j: usize| {
                    u32::from_le_bytes(bytes[j * 4..j * 4 + 4].try_into().expect("4 bytes"))
                };
                let count = word(0) as usize;
                if count > cap {
                    return Err(bad(format!("node {n} has {count} neighbours at level {l}")));
                }
                let links = self.links(n as u32, l);
                for (j, link) in links.iter().enumerate() {
                    let x = word(j);
                    if (1..=count).contains(&j) && x as usize >= nodes {
                        return Err(bad(format!("node {n} links to node {x} of {nodes}")));
                    }
                    link.store(if j > count { 0 } else { x }, Ordering::Relaxed);
                }
            }
            if !deleted {
                ids.insert(id, n as u32);
                self.live.fetch_add(1, Ordering::AcqRel);
            }
        }
        // A list at level l names only nodes that have lists at level l (a
        // search there reads the lists of the nodes it reaches).
        for n in 0..nodes as u32 {
            for l in 1..=self.level(n) as usize {
                let links = self.links(n, l);
                let count = links[0].load(Ordering::Relaxed) as usize;
                for link in &links[1..=count] {
                    let x = link.load(Ordering::Relaxed);
                    if (self.level(x) as usize) < l {
                        return Err(bad(format!(
                            "node {n} links at level {l} to node {x}, which has no level {l}"
                        )));
                    }
                }
            }
        }
        // The entry point must have lists up to its level.
        if entry != EMPTY {
            let (ep, top) = unpack(entry);
            if self.level(ep) < top {
                return Err(bad(format!("entry point {ep} is below level {top}")));
            }
        }
        self.entry.store(entry, Ordering::Release);
        Ok(())
    }
}

impl<E: Store> std::fmt::Debug for Graph<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("dim", &self.dim)
            .field("m", &self.m)
            .field("nodes", &self.nodes())
            .field("live", &self.len())
            .finish()
    }
}

/// The distance kernels. Each is a function of its own, compiled for its
/// instruction set and called (not inlined) from the graph's code: a
/// fused multiply-add in code compiled without FMA is a library call.
mod kernels {
    use crate::scan::Elem;

    /// Dot products of four rows with `q`, eight lanes each, summed in
    /// the order [`dots`] sums them (so each equals its `dots`).
    #[inline(always)]
    pub(super) fn dot4<E: Elem, const FMA: bool>(rows: [&[E]; 4], q: &[f32]) -> [f32; 4] {
        let dim = q.len();
        let full = dim - dim % 8;
        let mut acc = [[0f32; 8]; 4];
        let mut c = 0;
        while c < full {
            let qc = &q[c..c + 8];
            for (a, row) in acc.iter_mut().zip(&rows) {
                let x = E::decode8(&row[c..c + 8]);
                for l in 0..8 {
                    a[l] = if FMA {
                        x[l].mul_add(qc[l], a[l])
                    } else {
                        a[l] + x[l] * qc[l]
                    };
                }
            }
            c += 8;
        }
        let mut out = [0f32; 4];
        for (j, o) in out.iter_mut().enumerate() {
            let mut s = 0f32;
            for v in acc[j] {
                s += v;
            }
            for i in full..dim {
                s += E::decode(rows[j][i]) * q[i];
            }
            *o = s;
        }
        out
    }

    #[cfg(target_arch = "x86_64")]
    use std::arch::x86_64::*;

    /// The eight lanes of `a` summed.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn sum8(a: __m256) -> f32 {
        let s4 = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
        let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        let s1 = _mm_add_ss(s2, _mm_shuffle_ps::<1>(s2, s2));
        _mm_cvtss_f32(s1)
    }

    /// The graph's distance kernels for one storage type, written with
    /// the intrinsics (LLVM did not vectorise the portable `dot4` above:
    /// it ran as scalar fused multiply-adds with the accumulators spilled
    /// to the stack). Sixteen components per step, two accumulators per
    /// row, so that eight independent chains of fused multiply-adds hide
    /// their latency.
    macro_rules! graph_kernels {
        ($dot:ident, $dot4:ident, $E:ty, |$p:ident| $load:expr) => {
            /// # Safety
            /// The CPU must have AVX2, FMA and F16C; `row` has `q.len()`
            /// components.
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma,f16c")]
            pub(super) unsafe fn $dot(row: &[$E], q: &[f32]) -> f32 {
                let dim = q.len();
                debug_assert!(row.len() >= dim);
                let (r, qp) = (row.as_ptr(), q.as_ptr());
                let mut a0 = _mm256_setzero_ps();
                let mut a1 = _mm256_setzero_ps();
                let mut i = 0;
                while i + 16 <= dim {
                    let $p = r.add(i);
                    let x0 = $load;
                    let $p = r.add(i + 8);
                    let x1 = $load;
                    a0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(qp.add(i)), a0);
                    a1 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(qp.add(i + 8)), a1);
                    i += 16;
                }
                if i + 8 <= dim {
                    let $p = r.add(i);
                    a0 = _mm256_fmadd_ps($load, _mm256_loadu_ps(qp.add(i)), a0);
                    i += 8;
                }
                let mut s = sum8(_mm256_add_ps(a0, a1));
                while i < dim {
                    s += <$E as Elem>::decode(row[i]) * q[i];
                    i += 1;
                }
                s
            }

            /// # Safety
            /// The CPU must have AVX2, FMA and F16C; every row has
            /// `q.len()` components.
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma,f16c")]
            pub(super) unsafe fn $dot4(rows: [&[$E]; 4], q: &[f32]) -> [f32; 4] {
                let dim = q.len();
                debug_assert!(rows.iter().all(|r| r.len() >= dim));
                let qp = q.as_ptr();
                let rp = rows.map(|r| r.as_ptr());
                let mut lo = [_mm256_setzero_ps(); 4];
                let mut hi = [_mm256_setzero_ps(); 4];
                let mut i = 0;
                while i + 16 <= dim {
                    let q0 = _mm256_loadu_ps(qp.add(i));
                    let q1 = _mm256_loadu_ps(qp.add(i + 8));
                    for j in 0..4 {
                        let $p = rp[j].add(i);
                        lo[j] = _mm256_fmadd_ps($load, q0, lo[j]);
                        let $p = rp[j].add(i + 8);
                        hi[j] = _mm256_fmadd_ps($load, q1, hi[j]);
                    }
                    i += 16;
                }
                if i + 8 <= dim {
                    let q0 = _mm256_loadu_ps(qp.add(i));
                    for j in 0..4 {
                        let $p = rp[j].add(i);
                        lo[j] = _mm256_fmadd_ps($load, q0, lo[j]);
                    }
                    i += 8;
                }
                let mut out = [0f32; 4];
                for j in 0..4 {
                    let mut s = sum8(_mm256_add_ps(lo[j], hi[j]));
                    for c in i..dim {
                        s += <$E as Elem>::decode(rows[j][c]) * q[c];
                    }
                    out[j] = s;
                }
                out
            }
        };
    }

    graph_kernels!(dot_f32, dot4_f32, f32, |p| _mm256_loadu_ps(p));
    graph_kernels!(dot_f16, dot4_f16, crate::scan::F16, |p| _mm256_cvtph_ps(
        _mm_loadu_si128(p as *const __m128i)
    ));
    graph_kernels!(dot_i8, dot4_i8, i8, |p| _mm256_cvtepi32_ps(
        _mm256_cvtepi8_epi32(_mm_loadl_epi64(p as *const __m128i))
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit_vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        (0..n)
            .map(|i| {
                let v: Vec<f32> = (0..dim)
                    .map(|j| {
                        (splitmix(seed ^ (i * dim + j) as u64) >> 40) as f32 / (1u64 << 24) as f32
                            - 0.5
                    })
                    .collect();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.into_iter().map(|x| x / norm).collect()
            })
            .collect()
    }

    fn exact(vs: &[Vec<f32>], q: &[f32], k: usize) -> Vec<u64> {
        let mut s: Vec<(f32, u64)> = vs
            .iter()
            .enumerate()
            .map(|(i, v)| (v.iter().zip(q).map(|(a, b)| a * b).sum(), i as u64))
            .collect();
        s.sort_by(|a, b| b.0.total_cmp(&a.0));
        s.into_iter().take(k).map(|x| x.1).collect()
    }

    fn recall<E: Store>(g: &Graph<E>, vs: &[Vec<f32>], queries: &[Vec<f32>], ef: usize) -> f64 {
        let mut hit = 0;
        for q in queries {
            let want = exact(vs, q, 10);
            let got: Vec<u64> = g.search(q, 10, ef).into_iter().map(|x| x.0).collect();
            hit += want.iter().filter(|w| got.contains(w)).count();
        }
        hit as f64 / (queries.len() * 10) as f64
    }

    /// The intrinsic kernels give the plain sum of products for every
    /// storage type, at lengths that leave each kind of tail (16, 8 and
    /// single components).
    #[test]
    fn the_distance_kernels_match_a_plain_dot_product() {
        fn check<E: Store>() {
            if !matches!(simd_level(), Simd::Avx2 | Simd::Avx512) {
                return;
            }
            for dim in [1usize, 7, 8, 15, 16, 24, 100, 384] {
                let q = &unit_vectors(1, dim, 3)[0];
                let rows: Vec<Vec<E>> = unit_vectors(4, dim, 5)
                    .iter()
                    .map(|v| {
                        let mut e = vec![E::default(); dim];
                        E::encode(v, &mut e);
                        e
                    })
                    .collect();
                let plain =
                    |r: &[E]| -> f32 { r.iter().zip(q).map(|(x, y)| E::decode(*x) * y).sum() };
                #[cfg(target_arch = "x86_64")]
                {
                    // SAFETY: the CPU has AVX2, FMA and F16C (checked above).
                    let one = unsafe { E::dot_avx2(&rows[0], q) };
                    let four = unsafe { E::dot4_avx2([&rows[0], &rows[1], &rows[2], &rows[3]], q) };
                    let tol = |x: f32| 1e-4 * (1.0 + x.abs());
                    assert!((one - plain(&rows[0])).abs() <= tol(one), "dim {dim}");
                    for j in 0..4 {
                        assert!(
                            (four[j] - plain(&rows[j])).abs() <= tol(four[j]),
                            "dim {dim}, row {j}: {} vs {}",
                            four[j],
                            plain(&rows[j])
                        );
                    }
                }
            }
        }
        check::<f32>();
        check::<F16>();
        check::<i8>();
    }

    #[test]
    fn segments_cover_every_node_once() {
        let mut expected = (0, 0);
        for i in 0..200_000usize {
            let got = locate(i);
            if got.0 != expected.0 {
                assert_eq!(got, (expected.0 + 1, 0), "node {i}");
                expected = got;
            } else {
                assert_eq!(got, expected, "node {i}");
            }
            assert!(got.1 < FIRST << got.0);
            expected.1 += 1;
        }
    }

    #[test]
    fn finds_the_nearest_neighbours_in_every_storage() {
        let vs = unit_vectors(3000, 32, 1);
        let queries = unit_vectors(50, 32, 2);
        let f32s: Graph<f32> = Graph::new(32, 16, 64);
        let f16s: Graph<F16> = Graph::new(32, 16, 64);
        let i8s: Graph<i8> = Graph::new(32, 16, 64);
        for (i, v) in vs.iter().enumerate() {
            f32s.insert(i as u64, v);
            f16s.insert(i as u64, v);
            i8s.insert(i as u64, v);
        }
        assert_eq!(f32s.len(), 3000);
        let r = recall(&f32s, &vs, &queries, 64);
        assert!(r > 0.95, "f32 recall {r}");
        let r = recall(&f16s, &vs, &queries, 64);
        assert!(r > 0.93, "f16 recall {r}");
        let r = recall(&i8s, &vs, &queries, 64);
        assert!(r > 0.85, "i8 recall {r}");
        // Each vector finds itself first, with its inner product.
        for (i, v) in vs.iter().enumerate().step_by(97) {
            let top = f32s.search(v, 1, 32);
            assert_eq!(top[0].0, i as u64);
            assert!((top[0].1 - 1.0).abs() < 1e-5);
        }
    }

    /// Copies of one vector (a passage ingested many times) link to one
    /// another only as much as the heuristic allows any direction: left to
    /// fill their lists with each other, they become an island that the
    /// searches for the other vectors neither cross nor leave.
    #[test]
    fn copies_of_one_vector_do_not_fill_each_others_lists() {
        let dim = 16;
        let mut vs = unit_vectors(2000, dim, 11);
        let copy = vs[0].clone();
        let copies = 300;
        vs.extend(std::iter::repeat_n(copy, copies));
        let g: Graph<f32> = Graph::new(dim, 8, 64);
        for i in (0..vs.len()).map(|i| (i * 7919) % vs.len()) {
            g.insert(i as u64, &vs[i]);
        }
        let is_copy = |n: u32| {
            let id = g.id(n) as usize;
            id == 0 || id >= 2000
        };
        let (mut links, mut to_copies) = (0, 0);
        for n in (0..g.nodes() as u32).filter(|&n| is_copy(n)) {
            let list = g.links(n, 0);
            let count = list[0].load(Ordering::Acquire) as usize;
            links += count;
            to_copies += list[1..=count]
                .iter()
                .filter(|l| is_copy(l.load(Ordering::Acquire)))
                .count();
        }
        let share = to_copies as f64 / links as f64;
        assert!(
            share < 0.5,
            "{to_copies} of the copies' {links} links lead to copies"
        );
        assert!(links >= copies * 8, "{links} links from {copies} copies");
        // The other vectors are still found by themselves.
        for (i, v) in vs.iter().enumerate().take(2000).skip(1).step_by(37) {
            let top = g.search(v, 1, 32);
            assert_eq!(top[0].0, i as u64);
        }
    }

    #[test]
    fn parallel_insertions_build_a_searchable_graph() {
        let vs = unit_vectors(4000, 24, 3);
        let queries = unit_vectors(40, 24, 4);
        let g: Graph<f32> = Graph::new(24, 12, 64);
        std::thread::scope(|s| {
            for t in 0..4 {
                let (g, vs) = (&g, &vs);
                s.spawn(move || {
                    for (i, v) in vs.iter().enumerate().skip(t).step_by(4) {
                        g.insert(i as u64, v);
                        // Searches run alongside.
                        if i % 50 == 0 {
                            let _ = g.search(v, 5, 16);
                        }
                    }
                });
            }
        });
        assert_eq!(g.len(), 4000);
        let r = recall(&g, &vs, &queries, 64);
        assert!(r > 0.93, "recall {r}");
    }

    #[test]
    fn deleted_nodes_are_left_out_and_a_reinserted_id_replaces_its_node() {
        let vs = unit_vectors(500, 16, 5);
        let g: Graph<f32> = Graph::new(16, 8, 32);
        for (i, v) in vs.iter().enumerate() {
            g.insert(i as u64, v);
        }
        assert!(g.remove(7));
        assert!(!g.remove(7));
        assert!(!g.contains(7));
        assert_eq!(g.len(), 499);
        let top = g.search(&vs[7], 5, 32);
        assert!(top.iter().all(|x| x.0 != 7));
        g.insert(7, &vs[8]);
        assert!(g.contains(7));
        assert_eq!(g.len(), 500);
        g.insert(9, &vs[9]);
        assert_eq!(g.len(), 500, "the old node of id 9 is deleted");
        assert_eq!(g.search(&vs[9], 1, 32)[0].0, 9);
    }

    #[test]
    fn a_written_graph_reads_back_the_same_and_bad_files_are_refused() {
        let vs = unit_vectors(1500, 16, 6);
        let g: Graph<i8> = Graph::new(16, 8, 32);
        for (i, v) in vs.iter().enumerate() {
            g.insert(i as u64 * 3, v);
        }
        g.remove(3);
        let mut bytes = Vec::new();
        g.write_to(&mut bytes).unwrap();
        let back: Graph<i8> = Graph::new(16, 8, 32);
        back.read_from(&mut bytes.as_slice()).unwrap();
        assert_eq!(back.len(), g.len());
        assert!(!back.contains(3));
        for q in vs.iter().step_by(50) {
            assert_eq!(back.search(q, 10, 32), g.search(q, 10, 32));
        }
        let mut again = Vec::new();
        back.write_to(&mut again).unwrap();
        assert!(again == bytes, "a graph read back writes the same bytes");
        // Another storage, a truncated file, a link out of range.
        let other: Graph<f32> = Graph::new(16, 8, 32);
        assert!(matches!(
            other.read_from(&mut bytes.as_slice()),
            Err(ReadError::Format(_))
        ));
        let cut: Graph<i8> = Graph::new(16, 8, 32);
        assert!(cut.read_from(&mut &bytes[..bytes.len() / 2]).is_err());
        let mut broken = bytes.clone();
        let first_link = 39 + 8 + 1 + 1 + 4 + 16 + 4;
        broken[first_link..first_link + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        broken[first_link - 4..first_link].copy_from_slice(&1u32.to_le_bytes());
        let e = Graph::<i8>::new(16, 8, 32).read_from(&mut broken.as_slice());
        assert!(
            matches!(&e, Err(ReadError::Format(m)) if m.contains("links to")),
            "{e:?}"
        );
        // A list above level 0 that names a node without that level.
        let high = (0..g.nodes() as u32).find(|&n| g.level(n) >= 1).unwrap();
        let low = (0..g.nodes() as u32).find(|&n| g.level(n) == 0).unwrap();
        {
            let links = g.links(high, 1);
            links[1].store(low, Ordering::Release);
            links[0].store(links[0].load(Ordering::Acquire).max(1), Ordering::Release);
        }
        let mut bytes = Vec::new();
        g.write_to(&mut bytes).unwrap();
        let e = Graph::<i8>::new(16, 8, 32).read_from(&mut bytes.as_slice());
        assert!(
            matches!(&e, Err(ReadError::Format(m)) if m.contains("has no level 1")),
            "{e:?}"
        );
    }
}
