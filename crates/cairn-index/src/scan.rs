//! The exact scan's inner loops: row codecs (f32, f16, scalar-quantised i8),
//! a blocked multi-query dot-product kernel, and a bounded top-k.
//!
//! The kernel reads each row once per block of `B` queries: a row chunk of
//! eight components is decoded to f32 once and multiplied into all `B`
//! queries' accumulators, so one pass over the matrix serves `B` queries and
//! the scan stays at the memory bound instead of the arithmetic one. The
//! loops are plain Rust over fixed-size arrays (`chunks_exact(8)`), which
//! LLVM vectorises; on x86-64 the same code is compiled a second time with
//! AVX2, FMA and F16C enabled and chosen at run time.
//!
//! A score depends only on the row, the query and the instruction set, never
//! on the block size or the thread count: every (row, query) pair is
//! computed by the same sequence of operations (eight lanes, summed in
//! order, then the remainder), so a multi-query scan returns exactly what
//! one-query scans do.

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
fn dots<E: Elem, const B: usize, const FMA: bool>(
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
        if has_avx2_fma() {
            // SAFETY: the CPU has AVX2, FMA and F16C (checked just above);
            // the kernels read within the bounds asserted above.
            unsafe { E::scan_avx2::<B>(tile, queries, tops) };
            return;
        }
    }
    scan_block::<E, B>(tile, queries, tops);
}

/// The kernels with AVX2, FMA and F16C intrinsics: per row, each chunk of
/// eight components is loaded (and converted) once and fused-multiply-added
/// into all `B` queries' accumulators, which stay in registers.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Elem, Tile, TopK, F16};
    use std::arch::x86_64::*;

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

    macro_rules! kernel {
        ($name:ident, $E:ty, |$p:ident| $load:expr) => {
            /// # Safety
            /// AVX2, FMA and F16C; `tile` and `queries` as [`super::scan_tile`] asserts.
            #[target_feature(enable = "avx2,fma,f16c")]
            pub(super) unsafe fn $name<const B: usize>(
                tile: Tile<'_, $E>,
                queries: &[f32],
                tops: &mut [TopK],
            ) {
                // Raw pointers with wrapping offsets, and no unchecked
                // indexing: in builds with debug assertions (the dev
                // profile), `add` and `get_unchecked` check their
                // preconditions at every call, which costs this loop 3×.
                let dim = tile.dim;
                let full = dim - dim % 8;
                let mut qrow = [queries.as_ptr(); B];
                for (b, q) in qrow.iter_mut().enumerate() {
                    *q = queries.as_ptr().wrapping_add(b * dim);
                }
                for (r, row) in tile.rows.chunks_exact(dim).enumerate() {
                    let rp = row.as_ptr();
                    let mut acc = [_mm256_setzero_ps(); B];
                    let mut i = 0;
                    while i < full {
                        let x = {
                            let $p = rp.wrapping_add(i);
                            $load
                        };
                        for (a, q) in acc.iter_mut().zip(&qrow) {
                            *a = _mm256_fmadd_ps(x, load(q.wrapping_add(i).cast::<__m256>()), *a);
                        }
                        i += 8;
                    }
                    let at = tile.first + r;
                    let scale = match tile.scales {
                        Some(s) => s[at],
                        None => 1.0,
                    };
                    let id = tile.ids[at];
                    for ((a, q), top) in acc.iter().zip(&qrow).zip(tops.iter_mut()) {
                        let s4 =
                            _mm_add_ps(_mm256_castps256_ps128(*a), _mm256_extractf128_ps::<1>(*a));
                        let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
                        let s1 = _mm_add_ss(s2, _mm_shuffle_ps::<1>(s2, s2));
                        let mut s = _mm_cvtss_f32(s1);
                        for (j, x) in row.iter().enumerate().skip(full) {
                            s += <$E as Elem>::decode(*x) * *q.wrapping_add(j);
                        }
                        top.offer(s * scale, id);
                    }
                }
            }
        };
    }

    kernel!(scan_f32, f32, |p| load(p.cast::<__m256>()));
    kernel!(scan_f16, F16, |p| _mm256_cvtph_ps(load(
        p.cast::<__m128i>()
    )));
    kernel!(scan_i8, i8, |p| _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
        _mm_cvtsi64_si128(load(p.cast::<i64>()))
    )));
}

/// Whether the AVX2 + FMA + F16C build of the kernels runs here (detected
/// once; `std` caches it).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
}

/// The instruction set the kernels run with on this CPU.
pub(crate) fn kernel_name() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() {
            return "avx2+fma";
        }
    }
    "portable"
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

    #[test]
    fn kernel_computes_dot_products() {
        for dim in [1, 7, 8, 9, 24, 29, 384] {
            kernel_case::<1>(dim);
            kernel_case::<3>(dim);
            kernel_case::<8>(dim);
        }
    }
}
