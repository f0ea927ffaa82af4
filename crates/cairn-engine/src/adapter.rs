//! A query adapter: a low-rank residual map on query embeddings,
//! `q' = normalise(q + B·(A·q))`, learnt from (question, passage, hard
//! negatives) examples so that a collection's questions land nearer their
//! passages. Passages and the index are untouched: only queries move, so an
//! adapter is installed, replaced or removed without re-embedding anything.
//!
//! Training minimises the InfoNCE loss of each question over its positive,
//! its hard negatives and the other questions' positives (in-batch
//! negatives), with gradients written out by hand (the map is two matrices)
//! and Adam. `B` starts at zero, so an untrained adapter is the identity.

use crate::{EngineError, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The adapter's file in a collection's directory.
pub const ADAPTER_FILE: &str = "adapter.json";

/// What `cairn train adapter` measured when it trained the adapter.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AdapterFigures {
    pub train_examples: usize,
    pub held_out_examples: usize,
    /// Held-out passage hit@5 and MRR@10 of dense search, without and with.
    pub baseline_hit5: f64,
    pub adapted_hit5: f64,
    pub baseline_mrr10: f64,
    pub adapted_mrr10: f64,
    /// The training loss before the first step and at the epoch kept.
    pub loss_start: f64,
    pub loss_end: f64,
    /// The validation loss (examples of training documents set apart)
    /// before training and at the epoch kept; the epoch kept (0: none
    /// helped, the adapter is the identity) and the epochs run.
    #[serde(default)]
    pub validation_examples: usize,
    #[serde(default)]
    pub validation_loss_start: f64,
    #[serde(default)]
    pub validation_loss_end: f64,
    #[serde(default)]
    pub best_epoch: usize,
    #[serde(default)]
    pub epochs_run: usize,
}

/// A trained adapter.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueryAdapter {
    pub dim: usize,
    pub rank: usize,
    /// `rank × dim`, row-major.
    pub a: Vec<f32>,
    /// `dim × rank`, row-major.
    pub b: Vec<f32>,
    /// The embedding model whose query vectors it maps.
    pub embedding_model: String,
    pub figures: AdapterFigures,
}

/// One training example as vectors.
#[derive(Debug, Clone)]
pub struct AdapterExample {
    pub query: Vec<f32>,
    pub positive: Vec<f32>,
    pub negatives: Vec<Vec<f32>>,
}

/// How [`train`] trains.
#[derive(Debug, Clone)]
pub struct AdapterOptions {
    pub rank: usize,
    /// At most this many epochs; training stops earlier once the validation
    /// loss has not improved for `patience` epochs, and keeps the best one.
    pub epochs: usize,
    pub patience: usize,
    pub learning_rate: f32,
    /// Softmax temperature of the cosine logits.
    pub temperature: f32,
    /// Examples per step (each one's positive is a negative of the others).
    pub batch: usize,
    pub seed: u64,
}

impl Default for AdapterOptions {
    fn default() -> Self {
        AdapterOptions {
            rank: 16,
            epochs: 30,
            patience: 3,
            learning_rate: 2e-3,
            temperature: 0.05,
            batch: 16,
            seed: 0,
        }
    }
}

fn unit(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

use cairn_index::vector::dot;

/// One step of xorshift64 (the state must not be 0): initial weights, the
/// epochs' shuffles and the tests' data, the same on every run.
fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// A xorshift value as a float in [-1, 1).
fn signed_unit(x: u64) -> f32 {
    (x >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0
}

impl QueryAdapter {
    /// The identity map for `dim`-dimensional queries with `A` set to small
    /// pseudo-random values (so that `B`'s gradient is not zero).
    pub fn new(dim: usize, rank: usize, embedding_model: &str, seed: u64) -> QueryAdapter {
        let mut s = seed ^ 0x9E3779B97F4A7C15;
        let scale = 1.0 / (dim as f32).sqrt();
        let a = (0..rank * dim)
            .map(|_| signed_unit(xorshift(&mut s)) * scale)
            .collect();
        QueryAdapter {
            dim,
            rank,
            a,
            b: vec![0.0; dim * rank],
            embedding_model: embedding_model.to_string(),
            figures: AdapterFigures::default(),
        }
    }

    /// `A·q` (length `rank`).
    fn down(&self, q: &[f32]) -> Vec<f32> {
        self.a.chunks(self.dim).map(|row| dot(row, q)).collect()
    }

    /// `q + B·(A·q)`, not normalised, and `A·q`.
    fn forward(&self, q: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let h = self.down(q);
        let u = q
            .iter()
            .zip(self.b.chunks(self.rank))
            .map(|(x, row)| x + dot(row, &h))
            .collect();
        (u, h)
    }

    /// The adapted query, at unit length.
    pub fn apply(&self, q: &[f32]) -> Result<Vec<f32>> {
        if q.len() != self.dim {
            return Err(EngineError::Invalid(format!(
                "the query adapter maps {}-dimensional vectors, not {}",
                self.dim,
                q.len()
            )));
        }
        let (mut u, _) = self.forward(q);
        unit(&mut u);
        Ok(u)
    }

    /// The adapter in `dir`, if there is one; a file that cannot be read is
    /// an error naming it.
    pub fn load(dir: &Path) -> Result<Option<QueryAdapter>> {
        let path = dir.join(ADAPTER_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(EngineError::Invalid(format!(
                    "{}: cannot be read: {e}",
                    path.display()
                )))
            }
        };
        let a: QueryAdapter = serde_json::from_slice(&bytes).map_err(|e| {
            EngineError::Invalid(format!("{}: not a query adapter: {e}", path.display()))
        })?;
        if a.a.len() != a.rank * a.dim || a.b.len() != a.rank * a.dim {
            return Err(EngineError::Invalid(format!(
                "{}: matrices of the wrong size for dim {} and rank {}",
                path.display(),
                a.dim,
                a.rank
            )));
        }
        Ok(Some(a))
    }

    /// Write to `dir` atomically (a temporary file renamed over the old).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(ADAPTER_FILE);
        let tmp = dir.join(format!("{ADAPTER_FILE}.tmp"));
        let io = |e: std::io::Error| {
            EngineError::Invalid(format!("{}: cannot be written: {e}", path.display()))
        };
        std::fs::write(&tmp, serde_json::to_vec(self).expect("adapters serialise")).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    /// The loss of one example and, when `grads` is given, its gradient
    /// added to `(dA, dB)`. `pool` holds unit-length passages: the example's
    /// positive at `pos`, then every other candidate.
    fn loss_and_grad(
        &self,
        q: &[f32],
        pool: &[&[f32]],
        pos: usize,
        temperature: f32,
        grads: Option<(&mut [f32], &mut [f32])>,
    ) -> f32 {
        let (u, h) = self.forward(q);
        let n = dot(&u, &u).sqrt().max(1e-12);
        let qh: Vec<f32> = u.iter().map(|x| x / n).collect();
        let logits: Vec<f32> = pool.iter().map(|p| dot(&qh, p) / temperature).collect();
        let max = logits.iter().cloned().fold(f32::MIN, f32::max);
        let exps: Vec<f32> = logits.iter().map(|z| (z - max).exp()).collect();
        let sum: f32 = exps.iter().sum();
        let loss = -(exps[pos] / sum).ln();
        if let Some((da, db)) = grads {
            // dL/dz_j = softmax_j − [j = pos]; dL/dq̂ = Σ_j dL/dz_j · p_j / τ
            let mut g = vec![0.0f32; self.dim];
            for (j, p) in pool.iter().enumerate() {
                let w = exps[j] / sum - if j == pos { 1.0 } else { 0.0 };
                if w != 0.0 {
                    let w = w / temperature;
                    g.iter_mut().zip(*p).for_each(|(gi, pi)| *gi += w * pi);
                }
            }
            // through the normalisation: dL/du = (g − (g·q̂) q̂) / |u|
            let gq = dot(&g, &qh);
            let du: Vec<f32> = g
                .iter()
                .zip(&qh)
                .map(|(gi, qi)| (gi - gq * qi) / n)
                .collect();
            // u = q + B h: dL/dB = du ⊗ h; dL/dh = Bᵀ du; h = A q: dL/dA = dh ⊗ q
            let mut dh = vec![0.0f32; self.rank];
            for (i, dui) in du.iter().enumerate() {
                let row = &self.b[i * self.rank..(i + 1) * self.rank];
                for r in 0..self.rank {
                    db[i * self.rank + r] += dui * h[r];
                    dh[r] += row[r] * dui;
                }
            }
            for r in 0..self.rank {
                if dh[r] != 0.0 {
                    let row = &mut da[r * self.dim..(r + 1) * self.dim];
                    row.iter_mut().zip(q).for_each(|(d, x)| *d += dh[r] * x);
                }
            }
        }
        loss
    }
}

/// Unit-length copies of a batch's candidates: each example's positive and
/// hard negatives, and the other examples' positives.
fn batch_pools(batch: &[&AdapterExample]) -> Vec<(Vec<f32>, Vec<Vec<f32>>, usize)> {
    let positives: Vec<Vec<f32>> = batch
        .iter()
        .map(|e| {
            let mut p = e.positive.clone();
            unit(&mut p);
            p
        })
        .collect();
    batch
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut pool = positives.clone();
            for n in &e.negatives {
                let mut n = n.clone();
                unit(&mut n);
                pool.push(n);
            }
            (e.query.clone(), pool, i)
        })
        .collect()
}

/// The mean loss over `examples`, in batches as training sees them.
pub fn mean_loss(
    adapter: &QueryAdapter,
    examples: &[AdapterExample],
    opts: &AdapterOptions,
) -> f64 {
    let refs: Vec<&AdapterExample> = examples.iter().collect();
    let mut total = 0.0f64;
    for batch in refs.chunks(opts.batch.max(1)) {
        for (q, pool, pos) in batch_pools(batch) {
            let pool: Vec<&[f32]> = pool.iter().map(|p| p.as_slice()).collect();
            total += adapter.loss_and_grad(&q, &pool, pos, opts.temperature, None) as f64;
        }
    }
    total / examples.len().max(1) as f64
}

/// Train an adapter on `examples` (vectors of `dim`), Adam on `A` and `B`,
/// keeping the epoch with the lowest loss on `validation` (examples set
/// apart from training, of other documents; with none, the last epoch);
/// the returned adapter's figures hold the losses before and after.
pub fn train(
    examples: &[AdapterExample],
    validation: &[AdapterExample],
    dim: usize,
    embedding_model: &str,
    opts: &AdapterOptions,
) -> Result<QueryAdapter> {
    if examples.is_empty() {
        return Err(EngineError::Invalid(
            "no training examples for the query adapter".into(),
        ));
    }
    if let Some(e) = examples.iter().chain(validation).find(|e| {
        e.query.len() != dim
            || e.positive.len() != dim
            || e.negatives.iter().any(|n| n.len() != dim)
    }) {
        return Err(EngineError::Invalid(format!(
            "a training example's vectors are not {dim}-dimensional (query {})",
            e.query.len()
        )));
    }
    let mut adapter = QueryAdapter::new(dim, opts.rank.max(1), embedding_model, opts.seed);
    let loss_start = mean_loss(&adapter, examples, opts);
    let validation_loss = |a: &QueryAdapter| {
        if validation.is_empty() {
            0.0
        } else {
            mean_loss(a, validation, opts)
        }
    };
    let validation_loss_start = validation_loss(&adapter);
    let (mut best, mut best_loss, mut best_epoch) = (adapter.clone(), validation_loss_start, 0);
    let mut epochs_run = 0;
    let (beta1, beta2, eps) = (0.9f32, 0.999f32, 1e-8f32);
    let n_params = [adapter.a.len(), adapter.b.len()];
    let mut m = [vec![0.0f32; n_params[0]], vec![0.0f32; n_params[1]]];
    let mut v = m.clone();
    let mut step = 0i32;
    // A fixed shuffle per epoch, from the seed.
    let mut order: Vec<usize> = (0..examples.len()).collect();
    let mut s = opts.seed.wrapping_add(0x2545F4914F6CDD1D);
    for epoch in 1..=opts.epochs {
        for i in (1..order.len()).rev() {
            order.swap(i, (xorshift(&mut s) % (i as u64 + 1)) as usize);
        }
        let shuffled: Vec<&AdapterExample> = order.iter().map(|&i| &examples[i]).collect();
        for batch in shuffled.chunks(opts.batch.max(1)) {
            let mut da = vec![0.0f32; n_params[0]];
            let mut db = vec![0.0f32; n_params[1]];
            for (q, pool, pos) in batch_pools(batch) {
                let pool: Vec<&[f32]> = pool.iter().map(|p| p.as_slice()).collect();
                adapter.loss_and_grad(&q, &pool, pos, opts.temperature, Some((&mut da, &mut db)));
            }
            let scale = 1.0 / batch.len() as f32;
            step += 1;
            let (c1, c2) = (1.0 - beta1.powi(step), 1.0 - beta2.powi(step));
            for (k, (params, grads)) in [(&mut adapter.a, &da), (&mut adapter.b, &db)]
                .into_iter()
                .enumerate()
            {
                for j in 0..params.len() {
                    let g = grads[j] * scale;
                    m[k][j] = beta1 * m[k][j] + (1.0 - beta1) * g;
                    v[k][j] = beta2 * v[k][j] + (1.0 - beta2) * g * g;
                    let mh = m[k][j] / c1;
                    let vh = v[k][j] / c2;
                    params[j] -= opts.learning_rate * mh / (vh.sqrt() + eps);
                }
            }
        }
        epochs_run = epoch;
        if validation.is_empty() {
            best = adapter.clone();
            best_epoch = epoch;
            continue;
        }
        let v = validation_loss(&adapter);
        if v < best_loss {
            (best, best_loss, best_epoch) = (adapter.clone(), v, epoch);
        } else if epoch - best_epoch >= opts.patience.max(1) {
            break;
        }
    }
    let mut adapter = best;
    adapter.figures = AdapterFigures {
        train_examples: examples.len(),
        loss_start,
        loss_end: mean_loss(&adapter, examples, opts),
        validation_examples: validation.len(),
        validation_loss_start,
        validation_loss_end: validation_loss(&adapter),
        best_epoch,
        epochs_run,
        ..AdapterFigures::default()
    };
    Ok(adapter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng(seed: u64) -> impl FnMut() -> f32 {
        let mut s = seed | 1;
        move || signed_unit(xorshift(&mut s))
    }

    fn vec_of(r: &mut impl FnMut() -> f32, dim: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..dim).map(|_| r()).collect();
        unit(&mut v);
        v
    }

    /// The hand-written gradient equals a finite difference, for every
    /// parameter of A and B (none is left without a gradient).
    #[test]
    fn gradients_match_finite_differences_for_every_parameter() {
        let (dim, rank) = (6, 3);
        let mut r = rng(5);
        let mut ad = QueryAdapter::new(dim, rank, "m", 1);
        ad.b.iter_mut().for_each(|x| *x = r() * 0.3);
        let q = vec_of(&mut r, dim);
        let pool: Vec<Vec<f32>> = (0..4).map(|_| vec_of(&mut r, dim)).collect();
        let pool: Vec<&[f32]> = pool.iter().map(|p| p.as_slice()).collect();
        let mut da = vec![0.0; dim * rank];
        let mut db = vec![0.0; dim * rank];
        ad.loss_and_grad(&q, &pool, 1, 0.5, Some((&mut da, &mut db)));
        let h = 1e-3f32;
        for which in 0..2 {
            for j in 0..dim * rank {
                let mut plus = ad.clone();
                let mut minus = ad.clone();
                let (p, m) = if which == 0 {
                    (&mut plus.a[j], &mut minus.a[j])
                } else {
                    (&mut plus.b[j], &mut minus.b[j])
                };
                *p += h;
                *m -= h;
                let numeric = (plus.loss_and_grad(&q, &pool, 1, 0.5, None)
                    - minus.loss_and_grad(&q, &pool, 1, 0.5, None))
                    / (2.0 * h);
                let analytic = if which == 0 { da[j] } else { db[j] };
                assert!(
                    (numeric - analytic).abs() < 2e-3 + 0.02 * analytic.abs(),
                    "{} [{j}]: numeric {numeric}, analytic {analytic}",
                    if which == 0 { "A" } else { "B" }
                );
                assert!(analytic != 0.0, "no gradient for {which} [{j}]");
            }
        }
    }

    /// Questions that are a fixed linear distortion of their passages: the
    /// adapter learns to undo it, on questions it never saw.
    #[test]
    fn training_lowers_the_loss_and_finds_held_out_passages() {
        let dim = 24;
        let mut r = rng(11);
        // distortion: q = normalise(p + M p), M of rank 4, plus noise
        let u: Vec<Vec<f32>> = (0..4).map(|_| vec_of(&mut r, dim)).collect();
        let w: Vec<Vec<f32>> = (0..4).map(|_| vec_of(&mut r, dim)).collect();
        let distort = |p: &[f32], r: &mut dyn FnMut() -> f32| {
            let mut q: Vec<f32> = p.to_vec();
            for (ui, wi) in u.iter().zip(&w) {
                let c = dot(wi, p) * 2.5;
                q.iter_mut().zip(ui).for_each(|(x, y)| *x -= c * y);
            }
            q.iter_mut().for_each(|x| *x += r() * 0.05);
            unit(&mut q);
            q
        };
        let passages: Vec<Vec<f32>> = (0..300).map(|_| vec_of(&mut r, dim)).collect();
        let examples: Vec<AdapterExample> = passages
            .iter()
            .enumerate()
            .map(|(i, p)| AdapterExample {
                query: distort(p, &mut r),
                positive: p.clone(),
                negatives: vec![passages[(i + 1) % passages.len()].clone()],
            })
            .collect();
        let (train_set, held) = examples.split_at(240);
        let opts = AdapterOptions {
            rank: 8,
            epochs: 40,
            learning_rate: 1e-2,
            ..AdapterOptions::default()
        };
        let (train_set, validation) = train_set.split_at(200);
        let ad = train(train_set, validation, dim, "m", &opts).unwrap();
        assert!(ad.figures.best_epoch >= 1, "{:?}", ad.figures);
        assert!(
            ad.figures.validation_loss_end < ad.figures.validation_loss_start,
            "{:?}",
            ad.figures
        );
        assert!(
            ad.figures.loss_end < ad.figures.loss_start * 0.7,
            "{:?}",
            ad.figures
        );
        let hit1 = |f: &dyn Fn(&[f32]) -> Vec<f32>| {
            held.iter()
                .filter(|e| {
                    let q = f(&e.query);
                    let best = passages.iter().map(|p| dot(&q, p)).fold(f32::MIN, f32::max);
                    dot(&q, &e.positive) >= best
                })
                .count()
        };
        let before = hit1(&|q| q.to_vec());
        let after = hit1(&|q| ad.apply(q).unwrap());
        // (measured: 50 of 60 → 60 of 60)
        assert!(
            after >= before + 6 && after >= 57,
            "held-out hit@1: {before} → {after} of {}",
            held.len()
        );
        // An untrained adapter is the identity.
        let id = QueryAdapter::new(dim, 4, "m", 3);
        let q = &held[0].query;
        assert!(id
            .apply(q)
            .unwrap()
            .iter()
            .zip(q)
            .all(|(a, b)| (a - b).abs() < 1e-6));
    }

    #[test]
    fn saved_adapters_load_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(QueryAdapter::load(dir.path()).unwrap().is_none());
        let ad = QueryAdapter::new(8, 2, "all-MiniLM-L6-v2", 4);
        ad.save(dir.path()).unwrap();
        assert_eq!(QueryAdapter::load(dir.path()).unwrap().unwrap(), ad);
        std::fs::write(dir.path().join(ADAPTER_FILE), b"{").unwrap();
        let e = QueryAdapter::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains(ADAPTER_FILE) && e.contains("not a query adapter"),
            "{e}"
        );
        assert!(ad.apply(&[0.0; 3]).is_err());
    }
}
