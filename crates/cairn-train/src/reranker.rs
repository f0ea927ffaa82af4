//! Fine-tuning a cross-encoder reranker on (question, passage) pairs.
//!
//! The recipe is sentence-transformers' `CrossEncoder.fit` with one label:
//! every (question, positive) pair is labelled 1 and every (question, hard
//! negative) pair 0; the loss is binary cross-entropy on the logit; AdamW
//! with weight decay 0.01 on all weights but biases and layer norms, a
//! linear warm-up over the first tenth of the steps and a linear decay to
//! 0 after it, and the gradient's norm clipped to 1. Batches hold pairs of
//! similar length, so padding wastes little work. After each epoch the
//! model ranks a validation split (each question's positive against its
//! negatives), and the best epoch is kept.

use crate::bert::{bce_with_logits, decays, Batch, BertClassifier};
use crate::{SplitMix, TrainError};
use cairn_core::Progress;
use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokenizers::{Tokenizer, TruncationParams, TruncationStrategy};

/// One training question: its relevant passages and passages that look
/// relevant but are not.
#[derive(Debug, Clone)]
pub struct RerankExample {
    pub query: String,
    pub positives: Vec<String>,
    pub negatives: Vec<String>,
}

/// How to train.
#[derive(Debug, Clone)]
pub struct RerankOptions {
    /// Passes over the training pairs.
    pub epochs: usize,
    /// Pairs per step.
    pub batch_size: usize,
    /// AdamW's peak step size.
    pub learning_rate: f64,
    /// Share of the steps spent warming the step size up from 0.
    pub warmup: f64,
    pub weight_decay: f64,
    /// The gradient's norm is scaled down to this when above it (0: never).
    pub max_grad_norm: f64,
    /// The most tokens of one pair (special tokens included); the passage
    /// is cut to fit.
    pub max_tokens: usize,
    /// Initialisation of the new weights and the order of the pairs.
    pub seed: u64,
    /// The loss: each pair on its own, or each question's passages together.
    pub loss: Loss,
}

/// What training minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    /// Binary cross-entropy of each (question, passage) pair against its
    /// label, as sentence-transformers' `CrossEncoder.fit` trains.
    #[default]
    Pointwise,
    /// Each question's passages scored together: the negative log of the
    /// softmax mass on its positives (a batch holds whole questions).
    Listwise,
}

impl std::str::FromStr for Loss {
    type Err = String;
    fn from_str(s: &str) -> Result<Loss, String> {
        match s {
            "pointwise" => Ok(Loss::Pointwise),
            "listwise" => Ok(Loss::Listwise),
            other => Err(format!("{other:?}: pointwise or listwise")),
        }
    }
}

impl Default for RerankOptions {
    fn default() -> Self {
        RerankOptions {
            epochs: 1,
            batch_size: 16,
            learning_rate: 2e-5,
            warmup: 0.1,
            weight_decay: 0.01,
            max_grad_norm: 1.0,
            max_tokens: 256,
            seed: 0,
            loss: Loss::Pointwise,
        }
    }
}

impl RerankOptions {
    /// Reject options that cannot train.
    pub fn check(&self) -> Result<(), TrainError> {
        let bad = |field, message: &str| {
            Err(TrainError::Options {
                field,
                message: message.into(),
            })
        };
        if self.epochs == 0 {
            return bad("epochs", "must be at least 1");
        }
        if self.batch_size == 0 {
            return bad("batch size", "must be at least 1");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad("learning rate", "must be a number above 0");
        }
        if !(0.0..1.0).contains(&self.warmup) {
            return bad("warm-up", "must be at least 0 and below 1");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight decay", "must be 0 or more");
        }
        if !(self.max_grad_norm.is_finite() && self.max_grad_norm >= 0.0) {
            return bad("gradient clipping norm", "must be 0 or more");
        }
        if self.max_tokens < 8 {
            return bad("max tokens", "must be at least 8");
        }
        Ok(())
    }
}

/// Tokenises (question, passage) pairs as a BERT cross-encoder reads them:
/// `[CLS] question [SEP] passage [SEP]`, the passage cut to fit (or, for a
/// question too long to leave it room, the longer of the two first), as
/// `cairn_models::CrossEncoder` does at search time.
#[derive(Clone)]
pub struct PairEncoder {
    tokenizer: Tokenizer,
    fallback: Tokenizer,
    max_tokens: usize,
}

impl std::fmt::Debug for PairEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairEncoder")
            .field("max_tokens", &self.max_tokens)
            .finish()
    }
}

impl PairEncoder {
    /// The tokenizer of the model in `dir` (`tokenizer.json`), cutting pairs
    /// to `max_tokens`.
    pub fn load(dir: &Path, max_tokens: usize) -> Result<PairEncoder, TrainError> {
        let path = dir.join("tokenizer.json");
        let bad = |e: tokenizers::Error| TrainError::BadModel {
            path: path.clone(),
            message: e.to_string(),
        };
        if !path.is_file() {
            return Err(TrainError::BadModel {
                path: path.clone(),
                message: "no tokenizer.json (the model's fast-tokenizer file)".into(),
            });
        }
        let mut tokenizer = Tokenizer::from_file(&path).map_err(bad)?;
        tokenizer.with_padding(None);
        let mut fallback = tokenizer.clone();
        for (t, strategy) in [
            (&mut tokenizer, TruncationStrategy::OnlySecond),
            (&mut fallback, TruncationStrategy::LongestFirst),
        ] {
            t.with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                strategy,
                ..Default::default()
            }))
            .map_err(bad)?;
        }
        Ok(PairEncoder {
            tokenizer,
            fallback,
            max_tokens,
        })
    }

    /// Token ids and segment ids of one pair.
    pub fn encode(&self, text: &str, passage: &str) -> Result<(Vec<u32>, Vec<u32>), TrainError> {
        let enc = match self.tokenizer.encode((text, passage), true) {
            Ok(e) => e,
            Err(_) => self
                .fallback
                .encode((text, passage), true)
                .map_err(|e| TrainError::BadData(format!("tokenizing a pair: {e}")))?,
        };
        Ok((enc.get_ids().to_vec(), enc.get_type_ids().to_vec()))
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }
}

/// A model's relevance logits for (question, passage) pairs.
pub struct Scorer<'a> {
    pub model: &'a BertClassifier,
    pub encoder: &'a PairEncoder,
    pub batch_size: usize,
}

impl Scorer<'_> {
    /// One logit per pair, in input order (higher = more relevant).
    pub fn scores(&self, pairs: &[(&str, &str)]) -> Result<Vec<f32>, TrainError> {
        let encoded = pairs
            .iter()
            .map(|(a, b)| self.encoder.encode(a, b))
            .collect::<Result<Vec<_>, _>>()?;
        let mut order: Vec<usize> = (0..pairs.len()).collect();
        order.sort_by_key(|&i| encoded[i].0.len());
        let w = self.model.detached();
        let mut out = vec![0f32; pairs.len()];
        for chunk in order.chunks(self.batch_size.max(1)) {
            let rows: Vec<(&[u32], &[u32])> = chunk
                .iter()
                .map(|&i| (encoded[i].0.as_slice(), encoded[i].1.as_slice()))
                .collect();
            let batch = Batch::new(&rows).map_err(TrainError::compute)?;
            let logits: Vec<f32> = self
                .model
                .forward(&w, &batch)
                .and_then(|t| t.to_vec1())
                .map_err(TrainError::compute)?;
            for (&i, l) in chunk.iter().zip(logits) {
                out[i] = l;
            }
        }
        Ok(out)
    }
}

/// How well a model ranks each question's positive against its negatives.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct GroupMetrics {
    pub questions: usize,
    /// Share of questions whose first-ranked passage is a positive.
    pub hit1: f64,
    /// Mean reciprocal rank of the best-ranked positive.
    pub mrr: f64,
}

impl GroupMetrics {
    /// The metrics of `examples` under `scorer` (ties rank the positive
    /// below: an untrained constant scorer gets no credit).
    pub fn of(scorer: &Scorer<'_>, examples: &[RerankExample]) -> Result<GroupMetrics, TrainError> {
        let mut pairs = Vec::new();
        for e in examples {
            for p in e.positives.iter().chain(&e.negatives) {
                pairs.push((e.query.as_str(), p.as_str()));
            }
        }
        let scores = scorer.scores(&pairs)?;
        let mut at = 0;
        let (mut hit1, mut mrr) = (0.0, 0.0);
        for e in examples {
            let (np, nn) = (e.positives.len(), e.negatives.len());
            let pos = &scores[at..at + np];
            let neg = &scores[at + np..at + np + nn];
            at += np + nn;
            let best = pos.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let rank = 1 + neg.iter().filter(|&&s| s >= best).count();
            mrr += 1.0 / rank as f64;
            if rank == 1 {
                hit1 += 1.0;
            }
        }
        let n = examples.len().max(1) as f64;
        Ok(GroupMetrics {
            questions: examples.len(),
            hit1: hit1 / n,
            mrr: mrr / n,
        })
    }
}

/// What a training run did.
#[derive(Debug, Clone, Serialize)]
pub struct RerankFigures {
    pub base_model: String,
    pub loss: Loss,
    pub parameters: usize,
    /// Weights the base model lacked, initialised before training.
    pub initialised: Vec<String>,
    pub train_questions: usize,
    pub train_pairs: usize,
    pub epochs_run: usize,
    /// The epoch kept (best validation MRR; the last without validation).
    pub best_epoch: usize,
    pub steps: usize,
    pub batch_size: usize,
    pub max_tokens: usize,
    /// Mean number of tokens per pair (after cutting to max_tokens).
    pub mean_tokens: f64,
    pub threads: usize,
    /// Time tokenizing the pairs.
    pub tokenize_seconds: f64,
    /// Time in forward and backward passes and optimizer steps.
    pub train_seconds: f64,
    /// Training pairs (times epochs) per second of tokenizing and training
    /// (validation not counted).
    pub pairs_per_second: f64,
    /// Mean training loss per epoch.
    pub epoch_loss: Vec<f64>,
    /// The validation split's ranking before training (index 0) and after
    /// each epoch.
    pub validation: Vec<GroupMetrics>,
}

/// A trained reranker and the tokenizer it reads with.
pub struct TrainedReranker {
    pub model: BertClassifier,
    pub encoder: PairEncoder,
    pub figures: RerankFigures,
    base: PathBuf,
}

impl std::fmt::Debug for TrainedReranker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainedReranker")
            .field("figures", &self.figures)
            .finish()
    }
}

impl TrainedReranker {
    /// Its scorer.
    pub fn scorer(&self, batch_size: usize) -> Scorer<'_> {
        Scorer {
            model: &self.model,
            encoder: &self.encoder,
            batch_size,
        }
    }

    /// Write it into `dir` as the cross-encoder `cairn_models::CrossEncoder`
    /// loads: see [`install_files`].
    pub fn save(&self, dir: &Path) -> Result<(), TrainError> {
        install_files(&self.model, &self.base, dir)
    }
}

/// Write `model` into `dir`: the `BertForSequenceClassification`
/// checkpoint (safetensors, `config.json`, the tokenizer of `base`) and its
/// ONNX graph (`onnx/model.onnx`), so that loading it does not write into
/// the directory.
pub fn install_files(model: &BertClassifier, base: &Path, dir: &Path) -> Result<(), TrainError> {
    model.save(dir, base)?;
    let graph = dir.join("onnx").join("model.onnx");
    std::fs::create_dir_all(dir.join("onnx")).map_err(|source| TrainError::Io {
        path: dir.join("onnx"),
        source,
    })?;
    cairn_models::onnx_export::export_bert_classifier(dir, &graph)?;
    Ok(())
}

/// Batches of pair indices: shuffled, then sorted by length within windows
/// of 16 batches, so that a batch holds pairs of similar length, and the
/// batches shuffled again.
fn batches(lens: &[usize], batch_size: usize, rng: &mut SplitMix) -> Vec<Vec<usize>> {
    let mut idx: Vec<usize> = (0..lens.len()).collect();
    rng.shuffle(&mut idx);
    for window in idx.chunks_mut(batch_size * 16) {
        window.sort_by_key(|&i| lens[i]);
    }
    let mut out: Vec<Vec<usize>> = idx.chunks(batch_size).map(<[usize]>::to_vec).collect();
    rng.shuffle(&mut out);
    out
}

/// The step size at `step` of `total`: linear warm-up over `warmup` steps,
/// then linear decay to 0.
pub(crate) fn step_size(peak: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        peak * (step + 1) as f64 / warmup as f64
    } else {
        peak * (total - step) as f64 / (total - warmup).max(1) as f64
    }
}

/// Every step allocates and frees the same large activations (tens of MB
/// each). glibc's malloc hands blocks above its mmap threshold (at most
/// 32 MiB) back to the kernel on free, so each step paid page faults to
/// zero them again: about a third of a training run's time was system
/// time (raising them: 1.42 → 2.19 pairs/s). Raising the thresholds keeps
/// freed memory in the process for reuse. (One arena for all threads,
/// `M_ARENA_MAX` 1, was slower: 1.75 pairs/s.)
pub(crate) fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; it is safe to call
    // at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// A question's pairs: the first (in the pairs, or in a batch), the number
/// of positives (first), the number of pairs.
type Span = (usize, usize, usize);

/// `log Σ exp(x)` of a vector, from differentiable parts (the maximum only
/// shifts the range).
fn logsumexp(x: &Tensor) -> candle_core::Result<Tensor> {
    let m = x.max_keepdim(0)?.detach();
    (x.broadcast_sub(&m)?.exp()?.sum_keepdim(0)?.log()? + m)?.squeeze(0)
}

/// The fewest training pairs accepted.
pub const MIN_PAIRS: usize = 16;

/// Fine-tune a cross-encoder initialised from the BERT model in `base` (a
/// sentence encoder such as all-MiniLM-L6-v2: its encoder weights, and a
/// new classifier) on `train`, keeping the epoch that ranks `validation`
/// best.
pub fn train_reranker(
    base: &Path,
    train: &[RerankExample],
    validation: &[RerankExample],
    opts: &RerankOptions,
    progress: &dyn Progress,
) -> Result<TrainedReranker, TrainError> {
    opts.check()?;
    keep_freed_memory();
    let encoder = PairEncoder::load(base, opts.max_tokens)?;
    let model = BertClassifier::load(base, opts.seed)?;
    let tokenizing = Instant::now();
    let mut pairs: Vec<(Vec<u32>, Vec<u32>, f32)> = Vec::new();
    // Per question: its first pair and its numbers of positives and pairs.
    let mut groups: Vec<Span> = Vec::new();
    for e in train {
        if e.query.trim().is_empty() {
            return Err(TrainError::BadData("a training question is empty".into()));
        }
        let first = pairs.len();
        for (texts, label) in [(&e.positives, 1.0), (&e.negatives, 0.0)] {
            for t in texts {
                let (ids, types) = encoder.encode(&e.query, t)?;
                pairs.push((ids, types, label));
            }
        }
        if !e.positives.is_empty() && !e.negatives.is_empty() {
            groups.push((first, e.positives.len(), pairs.len() - first));
        }
    }
    let positives = pairs.iter().filter(|p| p.2 > 0.5).count();
    if pairs.len() < MIN_PAIRS || positives == 0 || positives == pairs.len() {
        return Err(TrainError::TooFew {
            what: "training pairs with both labels",
            have: if positives == 0 || positives == pairs.len() {
                0
            } else {
                pairs.len()
            },
            need: MIN_PAIRS,
            hint: " (questions with a relevant passage and hard negatives, as `cairn train data` writes them)".into(),
        });
    }
    let tokenize_seconds = tokenizing.elapsed().as_secs_f64();
    let lens: Vec<usize> = pairs.iter().map(|p| p.0.len()).collect();
    let mean_tokens = lens.iter().sum::<usize>() as f64 / lens.len() as f64;
    // Listwise: whole questions per batch, about batch_size pairs.
    let per_batch = (opts.batch_size * groups.len())
        .div_ceil(groups.iter().map(|g| g.2).sum::<usize>().max(1))
        .max(1);
    if opts.loss == Loss::Listwise && groups.is_empty() {
        return Err(TrainError::TooFew {
            what: "questions with both a positive and a negative",
            have: 0,
            need: 1,
            hint: String::new(),
        });
    }
    let steps_per_epoch = match opts.loss {
        Loss::Pointwise => pairs.len().div_ceil(opts.batch_size),
        Loss::Listwise => groups.len().div_ceil(per_batch),
    };
    let total = steps_per_epoch * opts.epochs;
    let warmup = ((total as f64) * opts.warmup).ceil() as usize;

    let (decay, no_decay): (Vec<_>, Vec<_>) = model
        .names()
        .iter()
        .zip(model.vars())
        .partition(|(n, _)| decays(n));
    let params = |lr| ParamsAdamW {
        lr,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-6,
        weight_decay: 0.0,
    };
    let mut opt_decay = AdamW::new(
        decay.into_iter().map(|(_, v)| v.clone()).collect(),
        ParamsAdamW {
            weight_decay: opts.weight_decay,
            ..params(opts.learning_rate)
        },
    )
    .map_err(TrainError::compute)?;
    let mut opt_plain = AdamW::new(
        no_decay.into_iter().map(|(_, v)| v.clone()).collect(),
        params(opts.learning_rate),
    )
    .map_err(TrainError::compute)?;

    let eval_batch = opts.batch_size.max(16);
    let scorer = Scorer {
        model: &model,
        encoder: &encoder,
        batch_size: eval_batch,
    };
    let mut validation_metrics = Vec::new();
    if !validation.is_empty() {
        progress.begin("ranking the validation split", 0);
        validation_metrics.push(GroupMetrics::of(&scorer, validation)?);
        progress.end();
    }
    let mut best: Option<(usize, f64, Vec<Tensor>)> = None;
    let mut rng = SplitMix(opts.seed ^ 0x0BA7_C4E5);
    let mut step = 0;
    let mut epoch_loss = Vec::new();
    let mut train_seconds = 0.0;
    for epoch in 1..=opts.epochs {
        progress.begin(
            &format!("training the reranker, epoch {epoch}/{}", opts.epochs),
            pairs.len() as u64,
        );
        let (mut loss_sum, mut loss_n) = (0.0, 0usize);
        let epoch_batches: Vec<(Vec<usize>, Vec<Span>)> = match opts.loss {
            Loss::Pointwise => batches(&lens, opts.batch_size, &mut rng)
                .into_iter()
                .map(|b| (b, vec![]))
                .collect(),
            Loss::Listwise => {
                let mut order: Vec<usize> = (0..groups.len()).collect();
                rng.shuffle(&mut order);
                order
                    .chunks(per_batch)
                    .map(|gs| {
                        let mut idx = Vec::new();
                        let mut spans = Vec::new();
                        for &g in gs {
                            let (first, pos, n) = groups[g];
                            spans.push((idx.len(), pos, n));
                            idx.extend(first..first + n);
                        }
                        (idx, spans)
                    })
                    .collect()
            }
        };
        for (batch, spans) in epoch_batches {
            let started = Instant::now();
            let rows: Vec<(&[u32], &[u32])> = batch
                .iter()
                .map(|&i| (pairs[i].0.as_slice(), pairs[i].1.as_slice()))
                .collect();
            let labels: Vec<f32> = batch.iter().map(|&i| pairs[i].2).collect();
            let lr = step_size(opts.learning_rate, step, warmup, total);
            let loss = (|| -> candle_core::Result<f32> {
                let b = Batch::new(&rows)?;
                let y = Tensor::from_vec(labels, batch.len(), &Device::Cpu)?;
                let z = model.forward(&model.tracked(), &b)?;
                let loss = match opts.loss {
                    Loss::Pointwise => bce_with_logits(&z, &y)?,
                    Loss::Listwise => {
                        let mut losses = Vec::with_capacity(spans.len());
                        for &(at, pos, n) in &spans {
                            let all = logsumexp(&z.narrow(0, at, n)?)?;
                            let positives = logsumexp(&z.narrow(0, at, pos)?)?;
                            losses.push((all - positives)?);
                        }
                        Tensor::stack(&losses, 0)?.mean_all()?
                    }
                };
                let mut grads = loss.backward()?;
                if opts.max_grad_norm > 0.0 {
                    let mut sq = 0f64;
                    for v in model.vars() {
                        if let Some(g) = grads.get(v.as_tensor()) {
                            sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
                        }
                    }
                    let norm = sq.sqrt();
                    if norm > opts.max_grad_norm {
                        let scale = opts.max_grad_norm / (norm + 1e-6);
                        for v in model.vars() {
                            if let Some(g) = grads.remove(v.as_tensor()) {
                                grads.insert(v.as_tensor(), (g * scale)?);
                            }
                        }
                    }
                }
                opt_decay.set_learning_rate(lr);
                opt_plain.set_learning_rate(lr);
                opt_decay.step(&grads)?;
                opt_plain.step(&grads)?;
                loss.to_scalar::<f32>()
            })()
            .map_err(TrainError::compute)?;
            train_seconds += started.elapsed().as_secs_f64();
            if !loss.is_finite() {
                return Err(TrainError::Compute(format!(
                    "the loss became {loss} at step {step}: lower the learning rate"
                )));
            }
            loss_sum += loss as f64 * batch.len() as f64;
            loss_n += batch.len();
            step += 1;
            progress.advance(batch.len() as u64);
        }
        progress.end();
        let mean = loss_sum / loss_n.max(1) as f64;
        epoch_loss.push(mean);
        tracing::info!(epoch, loss = mean, "reranker epoch done");
        if !validation.is_empty() {
            progress.begin("ranking the validation split", 0);
            let m = GroupMetrics::of(&scorer, validation)?;
            progress.end();
            tracing::info!(epoch, hit1 = m.hit1, mrr = m.mrr, "validation");
            validation_metrics.push(m);
            if best.as_ref().is_none_or(|b| m.mrr > b.1) {
                best = Some((epoch, m.mrr, model.snapshot()?));
            }
        }
    }
    let best_epoch = match best {
        Some((epoch, _, weights)) if epoch != opts.epochs => {
            model.restore(&weights)?;
            epoch
        }
        Some((epoch, ..)) => epoch,
        None => opts.epochs,
    };
    let figures = RerankFigures {
        base_model: base.display().to_string(),
        loss: opts.loss,
        parameters: model.parameters(),
        initialised: model.initialised().to_vec(),
        train_questions: train.len(),
        train_pairs: pairs.len(),
        epochs_run: opts.epochs,
        best_epoch,
        steps: step,
        batch_size: opts.batch_size,
        max_tokens: opts.max_tokens,
        mean_tokens,
        threads: candle_core::utils::get_num_threads(),
        tokenize_seconds,
        train_seconds,
        pairs_per_second: (pairs.len() * opts.epochs) as f64
            / (tokenize_seconds + train_seconds).max(1e-9),
        epoch_loss,
        validation: validation_metrics,
    };
    Ok(TrainedReranker {
        model,
        encoder,
        figures,
        base: base.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_size_warms_up_then_decays_to_zero() {
        let s: Vec<f64> = (0..10).map(|i| step_size(1.0, i, 2, 10)).collect();
        assert_eq!(s[0], 0.5);
        assert_eq!(s[1], 1.0);
        assert_eq!(s[2], 1.0);
        assert!(s.windows(2).skip(2).all(|w| w[1] < w[0]), "{s:?}");
        assert!((s[9] - 0.125).abs() < 1e-12, "{s:?}");
    }

    #[test]
    fn batches_cover_every_pair_once_and_group_similar_lengths() {
        let lens: Vec<usize> = (0..1000).map(|i| (i * 7919) % 300).collect();
        let b = batches(&lens, 16, &mut SplitMix(3));
        let mut seen: Vec<usize> = b.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        // Sorted windows: a batch spans a small part of the length range.
        let spread: f64 = b
            .iter()
            .map(|b| {
                let l: Vec<usize> = b.iter().map(|&i| lens[i]).collect();
                (l.iter().max().unwrap() - l.iter().min().unwrap()) as f64
            })
            .sum::<f64>()
            / b.len() as f64;
        assert!(spread < 60.0, "mean spread of lengths in a batch {spread}");
    }

    #[test]
    fn bad_options_are_named() {
        for (o, field) in [
            (
                RerankOptions {
                    epochs: 0,
                    ..Default::default()
                },
                "epochs",
            ),
            (
                RerankOptions {
                    learning_rate: f64::NAN,
                    ..Default::default()
                },
                "learning rate",
            ),
            (
                RerankOptions {
                    warmup: 1.0,
                    ..Default::default()
                },
                "warm-up",
            ),
        ] {
            let e = o.check().unwrap_err().to_string();
            assert!(e.starts_with(field), "{e}");
        }
    }
}
