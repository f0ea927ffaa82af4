//! `cairn-bench exact-scan`: Cairn's exact scan against the memory's read
//! bandwidth measured in the same process, on the same bytes.
//!
//! ```text
//! exact-scan [--base base.f32 --queries q.f32] [--n 100000] [--dim 384] [--nq 32]
//!            [--clusters 1000] [--seed 42] [--threads 2] [--blocks 1,4,8,16] [--reps 3] [--k 10]
//! ```
//! Without `--base`, `n` clustered synthetic vectors (and `nq` queries near
//! them) are generated. Every repetition runs, in turn: a streaming read of
//! the f32 matrix (one thread, then `--threads`), the scan as it was before
//! the blocked kernels (one query at a time, every score collected, then a
//! selection), and the blocked scans of each storage (f32, f16, i8), block
//! size and thread count; medians and bests over the repetitions are
//! reported. Bytes per second count one read of the stored rows per block of
//! queries.

use crate::side::{memcpy_gb_per_s, read_f32, thread_pool, Flags};
use anyhow::{bail, Result};
use cairn_core::{ChunkId, Scored};
use cairn_index::vector::{exact_kernel, top_k, ExactIndex, ExactStorage, EXACT_BLOCKS};
use rayon::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Instant;

/// CPU seconds this process has used (all threads).
fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the struct we own.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Wall and CPU seconds of `f`, and its value.
fn timed<T>(f: impl FnOnce() -> T) -> (f64, f64, T) {
    let (t, c) = (Instant::now(), cpu_seconds());
    let v = f();
    (t.elapsed().as_secs_f64(), cpu_seconds() - c, v)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.unit().max(1e-7), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
}

/// `n` vectors around `clusters` random centres (spread 0.5 per component,
/// as `peers.py synth-vectors` makes them), and `nq` queries the same way.
fn synthetic(n: usize, nq: usize, dim: usize, clusters: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = Rng(seed.max(1));
    let centres: Vec<Vec<f32>> = (0..clusters.max(1))
        .map(|_| (0..dim).map(|_| rng.normal()).collect())
        .collect();
    (0..n + nq)
        .map(|_| {
            let c = &centres[(rng.next() % centres.len() as u64) as usize];
            c.iter().map(|x| x + 0.5 * rng.normal()).collect()
        })
        .collect()
}

/// The sum of a buffer's words, as fast as a core streams them: a reference
/// read that does nothing but read.
#[inline(always)]
fn sum_words(data: &[f32]) -> u32 {
    let mut acc = [0u32; 16];
    let mut chunks = data.chunks_exact(16);
    for c in &mut chunks {
        for l in 0..16 {
            acc[l] = acc[l].wrapping_add(c[l].to_bits());
        }
    }
    let mut s = chunks
        .remainder()
        .iter()
        .fold(0u32, |a, x| a.wrapping_add(x.to_bits()));
    for a in acc {
        s = s.wrapping_add(a);
    }
    s
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sum_words_avx2(data: &[f32]) -> u32 {
    sum_words(data)
}

fn read_sum(data: &[f32]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { sum_words_avx2(data) };
        }
    }
    sum_words(data)
}

/// Read every byte of `words` once, on the current pool's threads (1 MiB
/// per task).
fn read_pass(words: &[f32]) {
    let s = words
        .par_chunks(1 << 18)
        .map(read_sum)
        .reduce(|| 0, u32::wrapping_add);
    std::hint::black_box(s);
}

/// The exact scan as it was before the blocked kernels (kept here as the
/// baseline): one query per pass, every score collected in parallel tasks
/// of 256 rows, then a selection.
fn legacy_search(data: &[f32], ids: &[ChunkId], dim: usize, q: &[f32], k: usize) -> Vec<Scored> {
    let norm = q.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    let q: Vec<f32> = q.iter().map(|x| x / norm).collect();
    let scores: Vec<f32> = data
        .par_chunks(dim * 256)
        .flat_map_iter(|block| {
            block
                .chunks_exact(dim)
                .map(|row| cairn_index::vector::dot(row, &q))
                .collect::<Vec<_>>()
        })
        .collect();
    top_k(ids, &scores, k)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    v[v.len() / 2]
}

fn best(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

/// Rates of one measurement: by the wall clock, and by the CPU time the
/// threads got (other processes shared the cores: CPU seconds over the
/// thread count is the time the measured work actually ran).
#[derive(Default)]
struct Rates {
    gb_s: Vec<f64>,
    qps: Vec<f64>,
    cpu_gb_s: Vec<f64>,
    cpu_qps: Vec<f64>,
}

impl Rates {
    fn push(&mut self, bytes: f64, queries: f64, wall: f64, cpu: f64, threads: usize) {
        let run = (cpu / threads as f64).max(1e-9);
        self.gb_s.push(bytes / wall / 1e9);
        self.qps.push(queries / wall);
        self.cpu_gb_s.push(bytes / run / 1e9);
        self.cpu_qps.push(queries / run);
    }

    fn summary(&mut self) -> Value {
        json!({
            "gb_per_s_median": median(&mut self.gb_s),
            "gb_per_s_best": best(&self.gb_s),
            "qps_median": median(&mut self.qps),
            "qps_best": best(&self.qps),
            "cpu_gb_per_s_median": median(&mut self.cpu_gb_s),
            "cpu_qps_median": median(&mut self.cpu_qps),
        })
    }
}

pub fn exact_scan(f: &Flags) -> Result<Value> {
    let k = f.num("k", 10)?;
    let threads = f.num("threads", 2)?.max(1);
    let reps = f.num("reps", 3)?.max(1);
    let blocks = f.list("blocks", "1,4,8,16")?;
    if blocks.is_empty() {
        bail!("--blocks: no block size");
    }
    if let Some(b) = blocks.iter().find(|b| !EXACT_BLOCKS.contains(b)) {
        bail!("--blocks: {b} is not one of {EXACT_BLOCKS:?}");
    }
    let (base, queries, data) = match f.opt("base") {
        Some(path) => {
            let dim = f.num("dim", 384)?;
            let base = read_f32(std::path::Path::new(path), dim)?;
            let mut queries = read_f32(&f.path("queries")?, dim)?;
            queries.truncate(f.num("nq", 32)?);
            (base, queries, path.to_string())
        }
        None => {
            let (n, nq, dim) = (f.num("n", 100_000)?, f.num("nq", 32)?, f.num("dim", 384)?);
            let clusters = f.num("clusters", 1000)?;
            let mut all = synthetic(n, nq, dim, clusters, f.num("seed", 42)? as u64);
            let queries = all.split_off(n);
            (
                all,
                queries,
                format!(
                    "synthetic: {clusters} clusters, spread 0.5, seed {}",
                    f.num("seed", 42)?
                ),
            )
        }
    };
    if base.is_empty() || queries.is_empty() {
        bail!("no vectors or no queries");
    }
    let dim = base[0].len();
    let n = base.len();
    let nq = queries.len();
    let ids: Vec<ChunkId> = (0..n as u64).collect();
    let qs: Vec<&[f32]> = queries.iter().map(Vec::as_slice).collect();

    let mut indexes = Vec::new();
    for storage in ExactStorage::ALL {
        let mut e = ExactIndex::with_storage(dim, storage);
        for (i, v) in base.iter().enumerate() {
            e.push(ids[i], v)?;
        }
        indexes.push(e);
    }
    // The f32 rows as the scan holds them (unit length), for the read
    // reference and the baseline.
    let flat: Vec<f32> = base
        .iter()
        .flat_map(|v| {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            v.iter().map(move |x| x / norm)
        })
        .collect();
    drop(base);
    let f32_bytes = (flat.len() * 4) as f64;

    let mut counts: Vec<usize> = vec![1, threads];
    counts.dedup();
    let pools: Vec<(usize, rayon::ThreadPool)> = counts
        .iter()
        .map(|&t| thread_pool(t).map(|p| (t, p)))
        .collect::<Result<_>>()?;
    let legacy_nq = nq.min(16);

    let mut read: BTreeMap<usize, Rates> = BTreeMap::new();
    let mut legacy: BTreeMap<usize, Rates> = BTreeMap::new();
    let mut scans: BTreeMap<(usize, usize, usize), Rates> = BTreeMap::new();
    let mut results: Vec<Vec<Vec<Scored>>> = Vec::new();
    for rep in 0..reps {
        for (t, pool) in &pools {
            pool.install(|| {
                read_pass(&flat); // warm
                                  // the best of three passes
                let best = (0..3)
                    .map(|_| timed(|| read_pass(&flat)))
                    .min_by(|a, b| a.0.total_cmp(&b.0))
                    .unwrap_or_default();
                read.entry(*t)
                    .or_default()
                    .push(f32_bytes, 1.0, best.0, best.1, *t);
            });
        }
        for (t, pool) in &pools {
            let (wall, cpu, ()) = pool.install(|| {
                timed(|| {
                    for q in qs.iter().take(legacy_nq) {
                        std::hint::black_box(legacy_search(&flat, &ids, dim, q, k));
                    }
                })
            });
            legacy.entry(*t).or_default().push(
                f32_bytes * legacy_nq as f64,
                legacy_nq as f64,
                wall,
                cpu,
                *t,
            );
        }
        for (s, index) in indexes.iter().enumerate() {
            let bytes = index.scan_bytes() as f64;
            for (t, pool) in &pools {
                for &b in &blocks {
                    let (wall, cpu, out) =
                        pool.install(|| timed(|| index.search_batch_blocked(&qs, k, b)));
                    let out = out?;
                    let passes = nq.div_ceil(b) as f64;
                    scans.entry((s, *t, b)).or_default().push(
                        bytes * passes,
                        nq as f64,
                        wall,
                        cpu,
                        *t,
                    );
                    if rep == 0 && *t == threads && b == *blocks.last().unwrap_or(&1) {
                        results.push(out);
                    }
                }
            }
        }
    }

    let mut read_json = serde_json::Map::new();
    let mut read_median = BTreeMap::new();
    for (t, r) in &mut read {
        let v = r.summary();
        read_median.insert(
            *t,
            (
                v["gb_per_s_median"].as_f64().unwrap_or(0.0),
                v["cpu_gb_per_s_median"].as_f64().unwrap_or(0.0),
            ),
        );
        read_json.insert(t.to_string(), v);
    }
    let fraction = |row: &mut Value, t: usize| {
        let (wall, cpu) = read_median[&t];
        row["fraction_of_read"] = (row["gb_per_s_median"].as_f64().unwrap_or(0.0) / wall).into();
        row["cpu_fraction_of_read"] =
            (row["cpu_gb_per_s_median"].as_f64().unwrap_or(0.0) / cpu).into();
    };
    let mut rows = Vec::new();
    for ((s, t, b), r) in &mut scans {
        let mut row = r.summary();
        row["storage"] = ExactStorage::ALL[*s].as_str().into();
        row["threads"] = (*t).into();
        row["block"] = (*b).into();
        row["bytes_per_vector"] = ExactStorage::ALL[*s].bytes_per_vector(dim).into();
        fraction(&mut row, *t);
        rows.push(row);
    }
    let recall = |got: &[Vec<Scored>]| -> f64 {
        let hit: usize = got
            .iter()
            .zip(&results[0])
            .map(|(g, t)| {
                let want: Vec<ChunkId> = t.iter().map(|s| s.id).collect();
                g.iter().filter(|s| want.contains(&s.id)).count()
            })
            .sum();
        hit as f64 / (k * nq) as f64
    };
    let recall_f32: BTreeMap<&str, f64> = ExactStorage::ALL
        .iter()
        .zip(&results)
        .map(|(s, r)| (s.as_str(), recall(r)))
        .collect();
    // The baseline finds what the new scan finds.
    let legacy_agrees = qs.iter().take(4).zip(&results[0]).all(|(q, r)| {
        legacy_search(&flat, &ids, dim, q, k)
            .iter()
            .map(|s| s.id)
            .eq(r.iter().map(|s| s.id))
    });
    let mut legacy_rows = Vec::new();
    for (t, r) in &mut legacy {
        let mut row = r.summary();
        row["threads"] = (*t).into();
        fraction(&mut row, *t);
        legacy_rows.push(row);
    }
    Ok(json!({
        "bench": "exact-scan",
        "data": data,
        "n": n,
        "dim": dim,
        "queries": nq,
        "k": k,
        "threads": threads,
        "reps": reps,
        "kernel": exact_kernel(),
        "f32_matrix_bytes": f32_bytes,
        "read_gb_per_s": read_json,
        "memcpy_gb_per_s": memcpy_gb_per_s(),
        "before": legacy_rows,
        "before_queries": legacy_nq,
        "before_agrees_with_after": legacy_agrees,
        "scans": rows,
        "recall_at_k_vs_f32": recall_f32,
    }))
}
