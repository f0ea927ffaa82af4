//! The exact scan's inner loops: row codecs (f32, f16, scalar-quantised i8),
//! a blocked multi-query dot-product kernel, and a bounded top-k.
//!
//! The kernel reads each row once per block of `B` queries: a row chunk of
//! eight components is decoded to f32 once and multiplied into all `B`
//! queries' accumulators, so one pass over the matrix serves `B` queries and
//! the scan stays at the memory bound instead of the arithmetic one. The
//! portable loops are plain Rust over fixed-size arrays (`chunks_exact(8)`),
//! which LLVM vectorises; on x86-64, intrinsics kernels for AVX2 + FMA +
//! F16C, and the same code again with AVX-512VL's 32 registers (two rows
//! per step), are chosen at run time. Those prefetch each row's data 64 KiB
//! ahead into L2: with blocks of queries the out-of-order window no longer
//! reaches far enough ahead, and on the machine measured the hardware
//! prefetchers left a blocked scan at half the bandwidth (BENCHMARKS.md,
//! "Exact scan against the read bandwidth").
//!
//! A score depends only on the row, the query and the instruction set
//! family (the intrinsics kernels agree with each other, not with the
//! portable loops), never on the block size, the rows per step or the
//! thread count: every (row, query) pair is computed by the same sequence of
//! operations (eight lanes, summed in order, then the remainder), so a
//! multi-query scan returns exactly what one-query scans do.

use cairn_core::ChunkId;

/// Components per SIMD chunk (one AVX register of f32).
pub(crate) const LANES: usize = 8;

/// A storage type of the exact scan's rows.
pub(crate) trait Elem: Copy + Send + Sync + 'static {
    /// Eight stored components as f32.
    fn decode8(x: &[Self]) -> [f32; LANES];
    /// One stored component as f32.
    fn decode(x: Self) -> f32;
    /// [`scan_block`] with AVX2, FMA and F16C.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn scan_avx2<const B: usize>(tile: Tile<'_, Self>, queries: &[f32], tops: &mut [TopK]);
    /// [`scan_block`] with AVX2, FMA, F16C, AVX-512F and AVX-512VL.
    ///
    /// # Safety
    /// The CPU must have those.
    #[cfg(target_arch = "x86_64")]
    unsafe fn scan_avx512<const B: usize>(tile: Tile<'_, Self>, queries: &[f32], tops: &mut [TopK]);
}

/// Rows of the matrix that one task scans.
#[derive(Clone, Copy)]
pub(crate) struct Tile<'a, E> {
    /// Whole rows, `dim` components each.
    pub(crate) rows: &'a [E],
    pub(crate) dim: usize,
    /// The index of the first row in the matrix.
    pub(crate) first: usize,
    /// Per row of the matrix: the factor its dot products are scaled by
    /// (the i8 rows' quantisation step).
    pub(crate) scales: Option<&'a [f32]>,
    /// Per row of the matrix: its id.
    pub(crate) ids: &'a [ChunkId],
}

impl Elem for f32 {
    #[inline(always)]
    fn decode8(x: &[f32]) -> [f32; LANES] {
        let mut out = [0f32; LANES];
        out.copy_from_slice(&x[..LANES]);
        out
    }
    #[inline(always)]
    fn decode(x: f32) -> f32 {
        x
    }
    #[cfg(target_arch = "x86_64")]
    unsafe fn scan_avx2<const B: usize>(tile: Tile<'_, f32>, queries: &[f32], tops: &mut [TopK]) {
        avx2::scan_f32::<B>(tile, queries, tops)
    }
    #[cfg(target_arch = "x86_64")]
    unsafe fn scan_avx512<const B: usize>(tile: Tile<'_, f32>, queries: &[f32], tops: &mut [TopK]) {
        avx2::scan_f32_512::<B>(tile, queries, tops)
    }
}

/// IEEE 754 half precision, stored as its bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(transparent)]
pub(crate) struct F16(pub(crate) u16);

impl Elem for F16 {
    #[inline(always)]
    fn decode8(x: &[F16]) -> [f32; LANES] {
        let mut out = [0f32; LANES];
        for (o, h) in out.iter_mut().zip(&x[..LANES]) {
            *o = f16_to_f32(h.0);
        }
        out
    }
    #[inline(always)]
    fn decode(x: F16) -> f32 {
        f16_to_f32(x.0)
    }
    #[cfg(target_arch = "x86_64")]
    unsafe fn scan_avx2<const B: usize>(tile: Tile<'_, F16>, queries: &[f32], tops: &mut [TopK]) {
        avx2::scan_f16::<B>(tile, queries, tops)
    }
    #[cfg(target_arch = "x86_64")]
    unsafe fn scan_avx512<const B: usize>(tile: Tile<'_, F16>, queries: &[f32], tops: &mut [TopK]) {
        avx2::scan_f16_512::<B>(tile, queries, tops)
    }
}

impl Elem for i8 {
    #[inline(always)]
    fn decode8(x: &[i8]) -> [f32; LANES] {
        let mut out = [0f32; LANES];
        for (o, v) in out.iter_mut().zip(&x[..LANES]) {
            *o = f32::from(*v);
        }
        out
    }
    #[inline(always)]
    fn decode(x: i8) -> f32 {
        f32::from(x)
    }
    #[cfg(target_arch = "x86_64")]
    unsafe fn scan_avx2<const B: usize>(tile: Tile<'_, i8>, queries: &[f32], tops: &mut [TopK]) {
        avx2::scan_i8::<B>(tile, queries, tops)
    }
    #[cfg(target_arch = "x86_64")]
    unsafe fn scan_avx512<const B: usize>(tile: Tile<'_, i8>, queries: &[f32], tops: &mut [TopK]) {
        avx2::scan_i8_512::<B>(tile, queries, tops)
    }
}

/// Scalar quantisation of a vector to i8: its largest magnitude maps to
/// 127. Returns the step, the factor its dot products are scaled by (1 for
/// a zero vector).
pub(crate) fn quantize_i8(v: &[f32], out: &mut [i8]) -> f32 {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let step = if max > 0.0 { max / 127.0 } else { 1.0 };
    for (o, x) in out.iter_mut().zip(v) {
        *o = (x / step).round().clamp(-127.0, 127.0) as i8;
    }
    step
}

/// f32 to half precision, rounding to nearest, ties to even (overflow gives
/// infinity, underflow signed zero; NaN stays NaN).
pub(crate) fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        // A subnormal half (or zero): value = m16 · 2^-24.
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = m >> shift;
        let rem = m & ((1 << shift) - 1);
        let halfway = 1 << (shift - 1);
        let up = rem > halfway || (rem == halfway && half & 1 == 1);
        return sign | (half + u32::from(up)) as u16;
    }
    let half = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    let up = rem > 0x1000 || (rem == 0x1000 && half & 1 == 1);
    // A carry out of the mantissa rightly bumps the exponent (to infinity
    // at the top).
    sign | (half + u32::from(up)) as u16
}

/// Half precision to f32, for finite values (normal and subnormal), in a
/// form LLVM vectorises: the magnitude's bits moved to f32's place and
/// rescaled by 2^112 (which also normalises subnormals), then the sign.
/// Infinities and NaNs are not decoded (the scan never stores them: its
/// rows are unit vectors).
#[inline(always)]
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let h = u32::from(h);
    let magnitude = f32::from_bits((h & 0x7fff) << 13) * f32::from_bits((127 + 112) << 23);
    f32::from_bits(magnitude.to_bits() | ((h & 0x8000) << 16))
}

/// Dot products of one row with a block of `B` queries (`queries`: `B`
/// rows of `dim` f32, back to back). `FMA` chooses fused multiply-adds (only
/// where the target has them: without, `mul_add` is a library call).
#[inline(always)]
pub(crate) fn dots<E: Elem, const B: usize, const FMA: bool>(
    row: &[E],
    queries: &[f32],
    dim: usize,
) -> [f32; B] {
    let full = dim - dim % LANES;
    let mut acc = [[0f32; LANES]; B];
    for (c, chunk) in row[..full].chunks_exact(LANES).enumerate() {
        let x = E::decode8(chunk);
        for (b, a) in acc.iter_mut().enumerate() {
            let q = &queries[b * dim + c * LANES..b * dim + c * LANES + LANES];
            for l in 0..LANES {
                a[l] = if FMA {
                    x[l].mul_add(q[l], a[l])
                } else {
                    a[l] + x[l] * q[l]
                };
            }
        }
    }
    let mut out = [0f32; B];
    for (b, o) in out.iter_mut().enumerate() {
        let mut s = 0f32;
        for v in acc[b] {
            s += v;
        }
        for (i, &x) in row.iter().enumerate().take(dim).skip(full) {
            s += E::decode(x) * queries[b * dim + i];
        }
        *o = s;
    }
    out
}

/// The portable scan of a tile for a block of `B` queries: every row's dot
/// products, scaled, offered to the block's top-k lists.
#[inline(always)]
fn scan_block<E: Elem, const B: usize>(tile: Tile<'_, E>, queries: &[f32], tops: &mut [TopK]) {
    for (r, row) in tile.rows.chunks_exact(tile.dim).enumerate() {
        let i = tile.first + r;
        let d = dots::<E, B, false>(row, queries, tile.dim);
        let scale = tile.scales.map_or(1.0, |s| s[i]);
        for (top, score) in tops.iter_mut().zip(d) {
            top.offer(score * scale, tile.ids[i]);
        }
    }
}

/// The scan of one tile for a block of `B` queries (`queries`: `B` unit
/// vectors of `dim`, back to back; `tops`: their `B` lists), on the best
/// instruction set this CPU has.
pub(crate) fn scan_tile<E: Elem, const B: usize>(
    tile: Tile<'_, E>,
    queries: &[f32],
    tops: &mut [TopK],
) {
    assert!(tile.dim > 0 && tile.rows.chunks_exact(tile.dim).remainder().is_empty());
    assert!(queries.len() == B * tile.dim && tops.len() == B);
    let rows = tile.rows.len() / tile.dim;
    assert!(tile.first + rows <= tile.ids.len());
    assert!(tile.scales.is_none_or(|s| tile.first + rows <= s.len()));
    #[cfg(target_arch = "x86_64")]
    {
        match simd_level() {
            Simd::Avx512 => {
                // SAFETY: the CPU has AVX2, FMA, F16C, AVX-512F and
                // AVX-512VL (checked by `simd_level`); the kernels read
                // within the bounds asserted above.
                unsafe { E::scan_avx512::<B>(tile, queries, tops) };
                return;
            }
            Simd::Avx2 => {
                // SAFETY: the CPU has AVX2, FMA and F16C (checked by
                // `simd_level`); the kernels read within the bounds
                // asserted above.
                unsafe { E::scan_avx2::<B>(tile, queries, tops) };
                return;
            }
            Simd::Portable => {}
        }
    }
    scan_block::<E, B>(tile, queries, tops);
}

/// The kernels with AVX2, FMA and F16C intrinsics, register-blocked: `R`
/// rows by `B` queries per step. Each chunk of eight components of the `R`
/// rows is loaded (and converted) once, each query's chunk once, and every
/// (row, query) pair gets one fused multiply-add into its own accumulator;
/// the `R × B` accumulators stay in registers. The queries are first laid
/// out chunk by chunk (`[chunk][query][8]`), so one pointer and constant
/// offsets reach all of a step's query chunks.
///
/// The same code is compiled twice: for AVX2 (16 vector registers, so
/// `R × B` ≤ 8) and for AVX-512VL, which gives the same 256-bit
/// instructions 32 registers (`R × B` up to 16). Both compute every pair by
/// the same operations in the same order, so a score does not depend on the
/// kernel, the block size, `R` or the thread count.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Elem, Tile, TopK, F16};
    use std::arch::x86_64::*;

    /// How far ahead of the rows being read their data is prefetched, in
    /// bytes.
    const AHEAD: usize = 65536;

    /// A `T` at any address.
    #[derive(Clone, Copy)]
    #[repr(C, packed)]
    struct Unaligned<T: Copy>(T);

    /// An unaligned load that is a plain move in every build: the
    /// `_mm256_loadu_*` intrinsics go through `copy_nonoverlapping`, whose
    /// precondition checks (on in builds with debug assertions, such as
    /// the dev profile) spill every load to the stack.
    ///
    /// # Safety
    /// `p` must be valid for reading a `T`.
    #[inline(always)]
    unsafe fn load<T: Copy>(p: *const T) -> T {
        (*p.cast::<Unaligned<T>>()).0
    }

    /// `B` queries of `dim` (back to back) laid out chunk by chunk: the
    /// first `full` components as `[chunk][query][8]`.
    fn interleave<const B: usize>(queries: &[f32], dim: usize, full: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(B * full);
        for c in (0..full).step_by(8) {
            for b in 0..B {
                out.extend_from_slice(&queries[b * dim + c..b * dim + c + 8]);
            }
        }
        out
    }

    /// Rows per step for a block of `b` queries with `regs` accumulators
    /// to spare: 2 when twice `b` fit, else 1 (more rows per step only
    /// spread the reads over more streams; see the module's notes).
    pub(super) const fn rows_per_step(b: usize, regs: usize) -> usize {
        let r = regs / b;
        if r >= 2 {
            2
        } else {
            1
        }
    }

    macro_rules! kernel {
        ($name:ident, $step:ident, $features:literal, $regs:literal, $E:ty, |$p:ident| $load:expr) => {
            /// `R` rows from row `r0` of the tile by the block's `B`
            /// queries (`qi`: interleaved), offered to `tops`.
            ///
            /// # Safety
            /// The features named; rows `r0..r0 + R` in the tile; `qi`
            /// holds `B × full` components.
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn $step<const R: usize, const B: usize>(
                tile: &Tile<'_, $E>,
                r0: usize,
                queries: &[f32],
                qi: *const f32,
                tops: &mut [TopK],
            ) {
                // Raw pointers with wrapping offsets, and no unchecked
                // indexing: in builds with debug assertions (the dev
                // profile), `add` and `get_unchecked` check their
                // preconditions at every call, which costs this loop 3×.
                let dim = tile.dim;
                let full = dim - dim % 8;
                let mut rp = [tile.rows.as_ptr(); R];
                for (r, p) in rp.iter_mut().enumerate() {
                    *p = tile.rows.as_ptr().wrapping_add((r0 + r) * dim);
                }
                let mut acc = [[_mm256_setzero_ps(); B]; R];
                let mut q = qi;
                let mut i = 0;
                // Rows are read `R` at a time, interleaved, which the
                // hardware's stream prefetchers do not follow: each row's
                // cache line `AHEAD` bytes on is asked for explicitly.
                let per_line = 64 / std::mem::size_of::<$E>();
                let ahead = AHEAD / std::mem::size_of::<$E>();
                while i < full {
                    if i % per_line == 0 {
                        for p in &rp {
                            _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(i + ahead).cast::<i8>());
                        }
                    }
                    let mut x = [_mm256_setzero_ps(); R];
                    for (xr, p) in x.iter_mut().zip(&rp) {
                        let $p = p.wrapping_add(i);
                        *xr = $load;
                    }
                    for b in 0..B {
                        let qv = load(q.wrapping_add(b * 8).cast::<__m256>());
                        for r in 0..R {
                            acc[r][b] = _mm256_fmadd_ps(x[r], qv, acc[r][b]);
                        }
                    }
                    q = q.wrapping_add(B * 8);
                    i += 8;
                }
                // Each accumulator's eight lanes summed, by constant
                // indices (loops LLVM unrolls), so that the accumulators
                // stay in registers in the loop above instead of being
                // stored at every step for a later read through a pointer.
                let mut sums = [[0f32; B]; R];
                #[allow(clippy::needless_range_loop)]
                for r in 0..R {
                    for b in 0..B {
                        let a = acc[r][b];
                        let s4 =
                            _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
                        let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
                        let s1 = _mm_add_ss(s2, _mm_shuffle_ps::<1>(s2, s2));
                        sums[r][b] = _mm_cvtss_f32(s1);
                    }
                }
                for (r, row_sums) in sums.iter().enumerate() {
                    let at = tile.first + r0 + r;
                    let row = &tile.rows[(r0 + r) * dim..(r0 + r + 1) * dim];
                    let scale = match tile.scales {
                        Some(s) => s[at],
                        None => 1.0,
                    };
                    let id = tile.ids[at];
                    for (b, (s, top)) in row_sums.iter().zip(tops.iter_mut()).enumerate() {
                        let mut s = *s;
                        for (j, x) in row.iter().enumerate().skip(full) {
                            s += <$E as Elem>::decode(*x) * queries[b * dim + j];
                        }
                        top.offer(s * scale, id);
                    }
                }
            }

            /// # Safety
            /// The features named; `tile` and `queries` as
            /// [`super::scan_tile`] asserts.
            #[target_feature(enable = $features)]
            pub(super) unsafe fn $name<const B: usize>(
                tile: Tile<'_, $E>,
                queries: &[f32],
                tops: &mut [TopK],
            ) {
                let dim = tile.dim;
                let full = dim - dim % 8;
                let qi = interleave::<B>(queries, dim, full);
                let n = tile.rows.len() / dim;
                let mut r = 0;
                if rows_per_step(B, $regs) == 2 {
                    while r + 2 <= n {
                        $step::<2, B>(&tile, r, queries, qi.as_ptr(), tops);
                        r += 2;
                    }
                }
                while r < n {
                    $step::<1, B>(&tile, r, queries, qi.as_ptr(), tops);
                    r += 1;
                }
            }
        };
    }

    /// One element type's kernels: for AVX2 (8 accumulators to spare) and
    /// for AVX-512VL (16), with the same load.
    macro_rules! kernels {
        ($avx2:ident, $step2:ident, $avx512:ident, $step512:ident, $E:ty, |$p:ident| $load:expr) => {
            kernel!($avx2, $step2, "avx2,fma,f16c", 8, $E, |$p| $load);
            kernel!(
                $avx512,
                $step512,
                "avx2,fma,f16c,avx512f,avx512vl",
                16,
                $E,
                |$p| $load
            );
        };
    }

    kernels!(scan_f32, step_f32, scan_f32_512, step_f32_512, f32, |p| {
        load(p.cast::<__m256>())
    });
    kernels!(scan_f16, step_f16, scan_f16_512, step_f16_512, F16, |p| {
        _mm256_cvtph_ps(load(p.cast::<__m128i>()))
    });
    kernels!(scan_i8, step_i8, scan_i8_512, step_i8_512, i8, |p| {
        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(load(
            p.cast::<i64>(),
        ))))
    });
}

/// The instruction sets the kernels can run with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Simd {
    /// AVX2, FMA and F16C with AVX-512F and AVX-512VL (32 vector registers).
    Avx512,
    /// AVX2, FMA and F16C.
    Avx2,
    /// Plain Rust.
    Portable,
}

/// The best kernel this CPU runs (detected once). `CAIRN_SCAN_SIMD=avx2` or
/// `portable` caps it, for comparisons and tests.
#[inline]
pub(crate) fn simd_level() -> Simd {
    static LEVEL: std::sync::OnceLock<Simd> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| detect(&std::env::var("CAIRN_SCAN_SIMD").unwrap_or_default()))
}

/// The best kernel this CPU runs, capped at `cap` (`avx2`, `portable`).
fn detect(cap: &str) -> Simd {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c");
        let avx512 = avx2
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl");
        if avx512 && cap != "avx2" && cap != "portable" {
            return Simd::Avx512;
        }
        if avx2 && cap != "portable" {
            return Simd::Avx2;
        }
    }
    let _ = cap;
    Simd::Portable
}

/// The instruction set the kernels run with on this CPU.
pub(crate) fn kernel_name() -> &'static str {
    match simd_level() {
        Simd::Avx512 => "avx2+fma+avx512vl",
        Simd::Avx2 => "avx2+fma",
        Simd::Portable => "portable",
    }
}

/// The `k` best (score, id) pairs seen, best first by score and, among
/// equal scores, by smaller id: the order of [`crate::vector::top_k`].
#[derive(Debug, Clone)]
pub(crate) struct TopK {
    k: usize,
    /// A binary max-heap on "worse": the worst kept pair is at the root.
    heap: Vec<(f32, ChunkId)>,
}

/// Whether `a` ranks below `b`.
#[inline(always)]
fn worse(a: (f32, ChunkId), b: (f32, ChunkId)) -> bool {
    match a.0.total_cmp(&b.0) {
        std::cmp::Ordering::Less => true,
        std::cmp::Ordering::Greater => false,
        std::cmp::Ordering::Equal => a.1 > b.1,
    }
}

impl TopK {
    pub(crate) fn new(k: usize) -> TopK {
        TopK {
            k,
            heap: Vec::with_capacity(k),
        }
    }

    #[inline(always)]
    pub(crate) fn offer(&mut self, score: f32, id: ChunkId) {
        let c = (score, id);
        if self.heap.len() < self.k {
            self.heap.push(c);
            self.sift_up(self.heap.len() - 1);
        } else if self.k > 0 && worse(self.heap[0], c) {
            self.heap[0] = c;
            self.sift_down(0);
        }
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if worse(self.heap[i], self.heap[parent]) {
                self.heap.swap(i, parent);
                i = parent;
            } else {
                break;
            }
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut w = i;
            if l < n && worse(self.heap[l], self.heap[w]) {
                w = l;
            }
            if r < n && worse(self.heap[r], self.heap[w]) {
                w = r;
            }
            if w == i {
                break;
            }
            self.heap.swap(i, w);
            i = w;
        }
    }

    /// Add another list's pairs (from another part of the rows).
    pub(crate) fn merge(mut self, other: TopK) -> TopK {
        for (score, id) in other.heap {
            self.offer(score, id);
        }
        self
    }

    /// The kept pairs, best first.
    pub(crate) fn into_sorted(self) -> Vec<(f32, ChunkId)> {
        let mut v = self.heap;
        v.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_known_values_and_rounding() {
        let cases: [(f32, u16); 10] = [
            (0.0, 0x0000),
            (-0.0, 0x8000),
            (1.0, 0x3c00),
            (0.5, 0x3800),
            (-2.0, 0xc000),
            (65504.0, 0x7bff),
            (1e6, 0x7c00),
            (2f32.powi(-24), 0x0001),
            (2f32.powi(-14), 0x0400),
            (2f32.powi(-26), 0x0000),
        ];
        for (x, h) in cases {
            assert_eq!(f32_to_f16(x), h, "{x}");
        }
        // Halfway between two halves: to the even one.
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00);
        assert_eq!(f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11) + 2f32.powi(-20)), 0x3c01);
        // Halfway between two subnormals: 1.5 · 2^-24 goes up to 2 · 2^-24.
        assert_eq!(f32_to_f16(1.5 * 2f32.powi(-24)), 0x0002);
        assert_eq!(f32_to_f16(2.5 * 2f32.powi(-24)), 0x0002);
        let nan = f32_to_f16(f32::NAN);
        assert!(nan & 0x7c00 == 0x7c00 && nan & 0x3ff != 0, "{nan:#06x}");
    }

    #[test]
    fn every_finite_f16_round_trips() {
        for h in 0u16..=u16::MAX {
            if h & 0x7c00 == 0x7c00 {
                continue; // infinities and NaNs are not decoded
            }
            let x = f16_to_f32(h);
            assert_eq!(f32_to_f16(x), h, "{h:#06x} -> {x}");
            // The decode is exact: compare with the definition.
            let e = i32::from((h >> 10) & 0x1f);
            let m = f32::from(h & 0x3ff);
            let v = if e == 0 {
                m * 2f32.powi(-24)
            } else {
                (1.0 + m / 1024.0) * 2f32.powi(e - 15)
            };
            let v = if h & 0x8000 != 0 { -v } else { v };
            assert_eq!(x.to_bits(), v.to_bits(), "{h:#06x}");
        }
    }

    #[test]
    fn top_k_keeps_the_best_in_order() {
        let scores = [0.3, 0.9, 0.1, 0.9, 0.5, 0.7, 0.5, 0.2];
        let mut t = TopK::new(4);
        for (i, s) in scores.iter().enumerate() {
            t.offer(*s, 10 + i as u64);
        }
        assert_eq!(
            t.clone().into_sorted(),
            vec![(0.9, 11), (0.9, 13), (0.7, 15), (0.5, 14)]
        );
        // Merging two halves equals one list.
        let (mut a, mut b) = (TopK::new(4), TopK::new(4));
        for (i, s) in scores.iter().enumerate() {
            if i % 2 == 0 { &mut a } else { &mut b }.offer(*s, 10 + i as u64);
        }
        assert_eq!(a.merge(b).into_sorted(), t.into_sorted());
        let mut none = TopK::new(0);
        none.offer(1.0, 1);
        assert!(none.into_sorted().is_empty());
    }

    fn kernel_case<const B: usize>(dim: usize) {
        let rows: Vec<f32> = (0..5 * dim)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let queries: Vec<f32> = (0..B * dim)
            .map(|i| ((i * 13 % 29) as f32 - 14.0) / 14.0)
            .collect();
        for (r, row) in rows.chunks_exact(dim).enumerate() {
            let got = dots::<f32, B, false>(row, &queries, dim);
            for (b, g) in got.iter().enumerate() {
                let want: f64 = row
                    .iter()
                    .zip(&queries[b * dim..(b + 1) * dim])
                    .map(|(x, q)| f64::from(*x) * f64::from(*q))
                    .sum();
                assert!(
                    (f64::from(*g) - want).abs() < 1e-3,
                    "row {r} query {b}: {g} vs {want}"
                );
            }
            // One query at a time gives the same bits as the block.
            for b in 0..B {
                let one = dots::<f32, 1, false>(row, &queries[b * dim..(b + 1) * dim], dim);
                assert_eq!(one[0].to_bits(), got[b].to_bits());
            }
        }
    }

    /// Every (row, query) score of a tile of `n` rows, by one kernel.
    #[cfg(target_arch = "x86_64")]
    fn all_scores<E: Elem, const B: usize>(
        rows: &[E],
        dim: usize,
        queries: &[f32],
        avx512: bool,
    ) -> Vec<Vec<(ChunkId, u32)>> {
        let n = rows.len() / dim;
        let ids: Vec<ChunkId> = (0..n as u64).collect();
        let scales: Vec<f32> = (0..n).map(|i| 0.5 + i as f32 / 64.0).collect();
        let tile = Tile {
            rows,
            dim,
            first: 0,
            scales: Some(&scales),
            ids: &ids,
        };
        let mut tops: Vec<TopK> = (0..B).map(|_| TopK::new(n)).collect();
        // SAFETY: the caller checked the features.
        unsafe {
            if avx512 {
                E::scan_avx512::<B>(tile, queries, &mut tops);
            } else {
                E::scan_avx2::<B>(tile, queries, &mut tops);
            }
        }
        tops.into_iter()
            .map(|t| {
                let mut v: Vec<(ChunkId, u32)> = t
                    .into_sorted()
                    .into_iter()
                    .map(|(s, id)| (id, s.to_bits()))
                    .collect();
                v.sort();
                v
            })
            .collect()
    }

    /// The AVX2 and AVX-512VL kernels, with every block size and so every
    /// number of rows per step (and an odd number of rows, so the last
    /// steps take fewer), give each (row, query) pair the same bits.
    #[cfg(target_arch = "x86_64")]
    fn kernels_agree<E: Elem>(rows: &[E], dim: usize) {
        let avx512 = detect("") == Simd::Avx512;
        if detect("") == Simd::Portable {
            return;
        }
        let queries: Vec<f32> = (0..16 * dim)
            .map(|i| ((i * 13 % 29) as f32 - 14.0) / 14.0)
            .collect();
        let one: Vec<Vec<(ChunkId, u32)>> = (0..16)
            .map(|b| {
                all_scores::<E, 1>(rows, dim, &queries[b * dim..(b + 1) * dim], false).remove(0)
            })
            .collect();
        assert_eq!(one[0].len(), rows.len() / dim);
        for use512 in [false, avx512] {
            assert_eq!(
                all_scores::<E, 1>(rows, dim, &queries[..dim], use512)[0],
                one[0]
            );
            assert_eq!(
                all_scores::<E, 2>(rows, dim, &queries[..2 * dim], use512),
                one[..2]
            );
            assert_eq!(
                all_scores::<E, 4>(rows, dim, &queries[..4 * dim], use512),
                one[..4]
            );
            assert_eq!(
                all_scores::<E, 8>(rows, dim, &queries[..8 * dim], use512),
                one[..8]
            );
            assert_eq!(all_scores::<E, 16>(rows, dim, &queries, use512), one);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_kernel_and_step_gives_the_same_bits() {
        for dim in [5, 8, 29, 384] {
            let n = 37;
            let rows: Vec<f32> = (0..n * dim)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
                .collect();
            kernels_agree(&rows, dim);
            let halves: Vec<F16> = rows.iter().map(|x| F16(f32_to_f16(*x))).collect();
            kernels_agree(&halves, dim);
            let bytes: Vec<i8> = rows.iter().map(|x| (x * 127.0) as i8).collect();
            kernels_agree(&bytes, dim);
        }
        assert_eq!(avx2::rows_per_step(1, 16), 2);
        assert_eq!(avx2::rows_per_step(8, 16), 2);
        assert_eq!(avx2::rows_per_step(8, 8), 1);
        assert_eq!(avx2::rows_per_step(16, 8), 1);
    }

    #[test]
    fn the_kernel_can_be_capped() {
        assert_eq!(detect("portable"), Simd::Portable);
        assert_ne!(detect("avx2"), Simd::Avx512);
        let best = detect("");
        assert!(best == Simd::Avx512 || detect("avx2") == best);
    }

    #[test]
    fn kernel_computes_dot_products() {
        for dim in [1, 7, 8, 9, 24, 29, 384] {
            kernel_case::<1>(dim);
            kernel_case::<3>(dim);
            kernel_case::<8>(dim);
        }
    }
}
