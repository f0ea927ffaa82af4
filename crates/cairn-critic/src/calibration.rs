//! Fitting a [`Calibration`]: one-feature logistic regression (Newton's
//! method with a little L2 on the slope) from labelled raw scores, with the
//! figures that say how well it fits.

use crate::{CriticError, Result};
use cairn_core::Calibration;
use serde::Serialize;

/// A fitted calibration and how it did on the samples it was fitted on and,
/// when given, on held-out ones.
#[derive(Debug, Clone, Serialize)]
pub struct Fit {
    pub calibration: Calibration,
    pub samples: usize,
    pub positives: usize,
    /// Mean negative log-likelihood (lower is better).
    pub log_loss: f64,
    /// Mean squared error of the probabilities.
    pub brier: f64,
    /// Area under the ROC curve of the raw scores.
    pub auc: f64,
}

/// Fit `p = sigmoid(a * raw + b)` to `(raw, label)` samples.
pub fn fit(samples: &[(f32, bool)]) -> Result<Fit> {
    let n = samples.len();
    let pos = samples.iter().filter(|s| s.1).count();
    if pos == 0 || pos == n {
        return Err(CriticError::Calibration(format!(
            "{n} samples with {pos} positive: both labels are needed"
        )));
    }
    // Standardise for a well-conditioned Newton step, then map back.
    let mean = samples.iter().map(|s| s.0 as f64).sum::<f64>() / n as f64;
    let var = samples
        .iter()
        .map(|s| (s.0 as f64 - mean).powi(2))
        .sum::<f64>()
        / n as f64;
    let sd = var.sqrt().max(1e-9);
    let xs: Vec<(f64, f64)> = samples
        .iter()
        .map(|&(r, y)| ((r as f64 - mean) / sd, y as u8 as f64))
        .collect();
    let lambda = 1e-3 * n as f64;
    let (mut a, mut b) = (0.0f64, ((pos as f64) / ((n - pos) as f64)).ln());
    for _ in 0..100 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (lambda * a, 0.0, lambda, 0.0, 0.0);
        for &(x, y) in &xs {
            let p = sigmoid(a * x + b);
            let w = (p * (1.0 - p)).max(1e-12);
            ga += (p - y) * x;
            gb += p - y;
            haa += w * x * x;
            hab += w * x;
            hbb += w;
        }
        let det = haa * hbb - hab * hab;
        if det.abs() < 1e-18 {
            break;
        }
        let da = (hbb * ga - hab * gb) / det;
        let db = (haa * gb - hab * ga) / det;
        a -= da;
        b -= db;
        if da.abs() < 1e-10 && db.abs() < 1e-10 {
            break;
        }
    }
    let calibration = Calibration {
        a: (a / sd) as f32,
        b: (b - a * mean / sd) as f32,
    };
    let (log_loss, brier) = losses(&calibration, samples);
    Ok(Fit {
        calibration,
        samples: n,
        positives: pos,
        log_loss,
        brier,
        auc: auc(samples),
    })
}

/// Fit a logistic model on several features: `p = sigmoid(w · x + bias)`,
/// by Newton's method on standardised features with a little L2 on the
/// weights. Returns the weights (in the features' own units) and the bias.
pub fn fit_logistic(xs: &[Vec<f32>], ys: &[bool]) -> Result<(Vec<f32>, f32)> {
    let n = xs.len();
    let pos = ys.iter().filter(|y| **y).count();
    if n == 0 || pos == 0 || pos == n || ys.len() != n {
        return Err(CriticError::Calibration(format!(
            "{n} samples with {pos} positive: both labels are needed"
        )));
    }
    let d = xs[0].len();
    if xs.iter().any(|x| x.len() != d) {
        return Err(CriticError::Calibration(
            "samples have different numbers of features".into(),
        ));
    }
    let mean: Vec<f64> = (0..d)
        .map(|j| xs.iter().map(|x| x[j] as f64).sum::<f64>() / n as f64)
        .collect();
    let sd: Vec<f64> = (0..d)
        .map(|j| {
            (xs.iter()
                .map(|x| (x[j] as f64 - mean[j]).powi(2))
                .sum::<f64>()
                / n as f64)
                .sqrt()
                .max(1e-9)
        })
        .collect();
    let z: Vec<Vec<f64>> = xs
        .iter()
        .map(|x| (0..d).map(|j| (x[j] as f64 - mean[j]) / sd[j]).collect())
        .collect();
    let lambda = 1e-3 * n as f64;
    // w[0..d] weights, w[d] bias.
    let mut w = vec![0.0f64; d + 1];
    w[d] = (pos as f64 / (n - pos) as f64).ln();
    for _ in 0..100 {
        let mut g = vec![0.0f64; d + 1];
        let mut h = vec![vec![0.0f64; d + 1]; d + 1];
        for j in 0..d {
            g[j] += lambda * w[j];
            h[j][j] += lambda;
        }
        for (zi, &y) in z.iter().zip(ys) {
            let t: f64 = (0..d).map(|j| w[j] * zi[j]).sum::<f64>() + w[d];
            let p = sigmoid(t);
            let r = (p * (1.0 - p)).max(1e-12);
            let y = y as u8 as f64;
            // The features with a constant 1 for the bias.
            let f: Vec<f64> = zi.iter().copied().chain([1.0]).collect();
            for (a, (ga, ha)) in g.iter_mut().zip(h.iter_mut()).enumerate() {
                *ga += (p - y) * f[a];
                for (hab, fb) in ha.iter_mut().zip(&f) {
                    *hab += r * f[a] * fb;
                }
            }
        }
        let step = solve(h, g).ok_or_else(|| {
            CriticError::Calibration("the features are collinear; cannot fit".into())
        })?;
        let mut moved = 0.0f64;
        for j in 0..=d {
            w[j] -= step[j];
            moved = moved.max(step[j].abs());
        }
        if moved < 1e-10 {
            break;
        }
    }
    let weights: Vec<f32> = (0..d).map(|j| (w[j] / sd[j]) as f32).collect();
    let bias = w[d] - (0..d).map(|j| w[j] * mean[j] / sd[j]).sum::<f64>();
    Ok((weights, bias as f32))
}

/// Solve `a x = b` by Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let piv = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[piv][col].abs() < 1e-14 {
            return None;
        }
        a.swap(col, piv);
        b.swap(col, piv);
        let (top, rest) = a.split_at_mut(col + 1);
        let pivot = &top[col];
        for (i, r) in rest.iter_mut().enumerate() {
            let f = r[col] / pivot[col];
            for (x, p) in r[col..].iter_mut().zip(&pivot[col..]) {
                *x -= f * p;
            }
            b[col + 1 + i] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    Some(x)
}

/// Mean log loss and Brier score of `c` on `samples`.
pub fn losses(c: &Calibration, samples: &[(f32, bool)]) -> (f64, f64) {
    let n = samples.len().max(1) as f64;
    let mut ll = 0.0;
    let mut brier = 0.0;
    for &(r, y) in samples {
        let p = (c.apply(r) as f64).clamp(1e-7, 1.0 - 1e-7);
        let y = y as u8 as f64;
        ll -= y * p.ln() + (1.0 - y) * (1.0 - p).ln();
        brier += (p - y).powi(2);
    }
    (ll / n, brier / n)
}

/// Area under the ROC curve: the chance that a positive outscores a negative
/// (ties count half).
pub fn auc(samples: &[(f32, bool)]) -> f64 {
    let mut s: Vec<(f32, bool)> = samples.to_vec();
    s.sort_by(|x, y| x.0.total_cmp(&y.0));
    let pos = s.iter().filter(|x| x.1).count() as f64;
    let neg = s.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    // Rank sum of positives, average ranks for ties.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < s.len() {
        let mut j = i;
        while j + 1 < s.len() && s[j + 1].0 == s[i].0 {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += s[i..=j].iter().filter(|x| x.1).count() as f64 * avg;
        i = j + 1;
    }
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// The probability threshold that maximises balanced accuracy (the mean of
/// the true-positive and true-negative rates) of `c` on `samples`: where a
/// decision (relevant or not, supported or not) is cut.
pub fn best_threshold(c: &Calibration, samples: &[(f32, bool)]) -> f32 {
    let probs: Vec<(f32, bool)> = samples.iter().map(|&(r, y)| (c.apply(r), y)).collect();
    balanced_threshold(&probs)
}

/// The cut on `(score, label)` samples (positives at or above it) that
/// maximises balanced accuracy; ties go to the lowest cut, and a cut falls
/// halfway between two neighbouring scores.
pub fn balanced_threshold(samples: &[(f32, bool)]) -> f32 {
    let pos = samples.iter().filter(|s| s.1).count().max(1) as f64;
    let neg = (samples.len() as f64 - samples.iter().filter(|s| s.1).count() as f64).max(1.0);
    let mut scores: Vec<f32> = samples.iter().map(|s| s.0).collect();
    scores.sort_by(f32::total_cmp);
    scores.dedup();
    let mut best = (f64::NEG_INFINITY, 0.5f32);
    for (i, &t) in scores.iter().enumerate() {
        let tp = samples.iter().filter(|s| s.1 && s.0 >= t).count() as f64;
        let tn = samples.iter().filter(|s| !s.1 && s.0 < t).count() as f64;
        let bal = (tp / pos + tn / neg) / 2.0;
        if bal > best.0 {
            let cut = if i == 0 { t } else { (t + scores[i - 1]) / 2.0 };
            best = (bal, cut);
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples drawn from a known logistic model are fitted back to it.
    #[test]
    fn recovers_a_known_logistic_model() {
        let truth = Calibration { a: 12.0, b: -6.0 };
        let mut samples = Vec::new();
        // A deterministic low-discrepancy sequence stands in for random draws.
        let mut u = 0.5f64;
        for i in 0..20_000 {
            let x = (i % 1000) as f32 / 1000.0;
            u = (u + 0.618_033_988_749_895) % 1.0;
            samples.push((x, (u as f32) < truth.apply(x)));
        }
        let f = fit(&samples).unwrap();
        assert!((f.calibration.a - 12.0).abs() < 0.8, "{:?}", f.calibration);
        assert!((f.calibration.b + 6.0).abs() < 0.4, "{:?}", f.calibration);
        assert!(f.auc > 0.8 && f.auc < 1.0);
        // The fitted model predicts better than a constant.
        let constant = Calibration { a: 0.0, b: 0.0 };
        assert!(f.log_loss < losses(&constant, &samples).0);
    }

    #[test]
    fn separable_samples_give_a_steep_finite_slope() {
        let samples: Vec<(f32, bool)> = (0..100).map(|i| (i as f32 / 100.0, i >= 50)).collect();
        let f = fit(&samples).unwrap();
        assert!(f.calibration.a.is_finite() && f.calibration.a > 10.0);
        assert!(f.calibration.apply(0.9) > 0.9 && f.calibration.apply(0.1) < 0.1);
        assert_eq!(f.auc, 1.0);
        let t = best_threshold(&f.calibration, &samples);
        assert!(t > 0.2 && t < 0.8, "{t}");
    }

    #[test]
    fn multi_feature_fit_finds_the_informative_feature() {
        // y depends on x0 only; x1 is noise (a deterministic sequence).
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        let mut u = 0.3f64;
        for i in 0..4000 {
            let x0 = (i % 100) as f32 / 100.0;
            u = (u + 0.618_033_988_749_895) % 1.0;
            let x1 = u as f32;
            let p = Calibration { a: 10.0, b: -5.0 }.apply(x0);
            let v = ((i as f64) * 0.754_877_666) % 1.0;
            xs.push(vec![x0, x1]);
            ys.push((v as f32) < p);
        }
        let (w, b) = fit_logistic(&xs, &ys).unwrap();
        assert!((w[0] - 10.0).abs() < 1.5, "{w:?} {b}");
        assert!(w[1].abs() < 1.0, "{w:?}");
        assert!((b + 5.0).abs() < 1.0, "{b}");
        assert!(fit_logistic(&xs, &vec![true; xs.len()]).is_err());
    }

    #[test]
    fn one_label_only_is_an_error() {
        let e = fit(&[(0.1, true), (0.2, true)]).unwrap_err().to_string();
        assert!(e.contains("both labels"), "{e}");
    }

    #[test]
    fn auc_counts_ties_half() {
        assert_eq!(auc(&[(0.5, true), (0.5, false)]), 0.5);
        assert_eq!(auc(&[(0.1, false), (0.9, true)]), 1.0);
        assert_eq!(auc(&[(0.9, false), (0.1, true)]), 0.0);
    }

    #[test]
    fn raw_at_inverts_apply() {
        let c = Calibration { a: 8.0, b: -3.0 };
        for p in [0.1f32, 0.5, 0.9] {
            assert!((c.apply(c.raw_at(p)) - p).abs() < 1e-5);
        }
    }
}
