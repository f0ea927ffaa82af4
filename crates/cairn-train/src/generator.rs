//! Fine-tuning the generator: a LoRA on a Llama-architecture GGUF model,
//! trained on (prompt, cited answer) examples with the loss on the answer's
//! tokens only, saved as a LoRA GGUF that llama.cpp applies at load time.
//!
//! The recipe: AdamW without weight decay on the adapters alone, a linear
//! warm-up over the first tenth of the steps and a linear decay to 0 after
//! it, gradients of `accumulate` examples summed into one step and their
//! norm clipped. Before training and after each epoch the answer loss of a
//! validation split is measured; the epoch with the lowest is kept, and
//! when none beats the untrained model the result says so.

use crate::llama::LlamaLora;
use crate::reranker::{keep_freed_memory, step_size};
use crate::{SplitMix, TrainError};
use cairn_core::Progress;
use candle_core::backprop::GradStore;
use candle_core::Tensor;
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use serde::Serialize;
use std::time::Instant;

/// One example: a tokenised prompt followed by its answer.
#[derive(Debug, Clone)]
pub struct GenExample {
    /// Prompt and answer tokens (the answer ends with the end-of-turn token).
    pub tokens: Vec<u32>,
    /// Where the answer starts in `tokens`.
    pub answer: usize,
}

/// How to train.
#[derive(Debug, Clone)]
pub struct LoraOptions {
    pub epochs: usize,
    /// Examples whose gradients make one step.
    pub accumulate: usize,
    pub learning_rate: f64,
    pub warmup: f64,
    pub max_grad_norm: f64,
    pub seed: u64,
}

impl Default for LoraOptions {
    fn default() -> Self {
        LoraOptions {
            epochs: 2,
            accumulate: 4,
            learning_rate: 3e-4,
            warmup: 0.1,
            max_grad_norm: 1.0,
            seed: 42,
        }
    }
}

/// The fewest training examples accepted.
pub const MIN_EXAMPLES: usize = 8;

/// What training did.
#[derive(Debug, Clone, Serialize)]
pub struct LoraFigures {
    pub train_examples: usize,
    pub validation_examples: usize,
    /// Tokens in the training examples (prompts and answers), per epoch.
    pub train_tokens: usize,
    /// Answer tokens (the ones the loss is on), per epoch.
    pub answer_tokens: usize,
    pub epochs: usize,
    pub steps: usize,
    /// Mean answer loss over each epoch's training examples.
    pub epoch_loss: Vec<f64>,
    /// Validation answer loss before training, then after each epoch.
    pub validation_loss: Vec<f64>,
    /// The epoch kept (0: none beat the untrained model).
    pub best_epoch: usize,
    /// Forward and backward passes and optimiser steps.
    pub train_seconds: f64,
    /// The frozen blocks' pass over every example, once.
    pub prefix_seconds: f64,
    /// Blocks below the first adapter (frozen, run once per example).
    pub frozen_blocks: usize,
    /// Training tokens per second (prompt and answer tokens, all epochs,
    /// over the frozen pass and the training steps).
    pub tokens_per_second: f64,
    pub trainable_parameters: usize,
}

fn validate(o: &LoraOptions) -> Result<(), TrainError> {
    let bad = |field: &'static str, message: &str| {
        Err(TrainError::Options {
            field,
            message: message.into(),
        })
    };
    if o.epochs == 0 {
        return bad("epochs", "must be 1 or more");
    }
    if o.accumulate == 0 {
        return bad("accumulate", "must be 1 or more");
    }
    if !(o.learning_rate > 0.0 && o.learning_rate.is_finite()) {
        return bad("learning rate", "must be a positive number");
    }
    if !(0.0..1.0).contains(&o.warmup) {
        return bad("warm-up share", "must be in [0, 1)");
    }
    if o.max_grad_norm.is_nan() || o.max_grad_norm < 0.0 {
        return bad("gradient clipping norm", "must be 0 or more");
    }
    Ok(())
}

/// Mean answer loss of `examples` (no gradients).
pub fn mean_loss(model: &LlamaLora, examples: &[GenExample]) -> Result<f64, TrainError> {
    let prefixes = prefixes(model, examples, &cairn_core::NoProgress)?;
    mean_loss_after(model, examples, &prefixes)
}

/// The frozen blocks' output for each example.
fn prefixes(
    model: &LlamaLora,
    examples: &[GenExample],
    progress: &dyn Progress,
) -> Result<Vec<Tensor>, TrainError> {
    examples
        .iter()
        .map(|e| {
            let p = model.prefix(&e.tokens).map_err(TrainError::compute);
            progress.advance(1);
            p
        })
        .collect()
}

fn mean_loss_after(
    model: &LlamaLora,
    examples: &[GenExample],
    prefixes: &[Tensor],
) -> Result<f64, TrainError> {
    let mut sum = 0f64;
    let mut n = 0usize;
    for (e, p) in examples.iter().zip(prefixes) {
        let l = model
            .loss_after(p, &e.tokens, e.answer)
            .and_then(|l| l.detach().to_scalar::<f32>())
            .map_err(TrainError::compute)?;
        let k = e.tokens.len() - e.answer;
        sum += l as f64 * k as f64;
        n += k;
    }
    Ok(sum / n.max(1) as f64)
}

/// Train `model`'s adapters on `train`, keeping the epoch with the lowest
/// answer loss on `validation` (all of them when `validation` is empty).
pub fn train_lora(
    model: &LlamaLora,
    train: &[GenExample],
    validation: &[GenExample],
    opts: &LoraOptions,
    progress: &dyn Progress,
) -> Result<LoraFigures, TrainError> {
    validate(opts)?;
    if train.len() < MIN_EXAMPLES {
        return Err(TrainError::TooFew {
            what: "generator training examples",
            have: train.len(),
            need: MIN_EXAMPLES,
            hint: " (cited answers built from synthetic questions and up-rated feedback; sample more questions per document)".into(),
        });
    }
    if model.adapters.is_empty() {
        return Err(TrainError::Options {
            field: "rank",
            message: "no adapter to train (rank 0 or no target layers)".into(),
        });
    }
    for (i, e) in train.iter().chain(validation).enumerate() {
        if e.answer == 0 || e.answer >= e.tokens.len() {
            return Err(TrainError::BadData(format!(
                "example {}: its answer is empty or has no prompt before it",
                i + 1
            )));
        }
        if let Some(t) = e.tokens.iter().find(|&&t| t as usize >= model.shape.vocab) {
            return Err(TrainError::BadData(format!(
                "example {}: token {t} is outside the model's vocabulary of {}",
                i + 1,
                model.shape.vocab
            )));
        }
    }
    keep_freed_memory();
    let vars = model.vars();
    let trainable_parameters = vars.iter().map(|v| v.elem_count()).sum();
    let mut opt = AdamW::new(
        vars.clone(),
        ParamsAdamW {
            lr: opts.learning_rate,
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        },
    )
    .map_err(TrainError::compute)?;
    let steps_per_epoch = train.len().div_ceil(opts.accumulate);
    let total = steps_per_epoch * opts.epochs;
    let warmup = ((total as f64) * opts.warmup).ceil() as usize;
    let train_tokens: usize = train.iter().map(|e| e.tokens.len()).sum();
    let answer_tokens: usize = train.iter().map(|e| e.tokens.len() - e.answer).sum();
    let snapshot = || -> Result<Vec<Tensor>, TrainError> {
        vars.iter()
            .map(|v| v.as_tensor().detach().copy().map_err(TrainError::compute))
            .collect()
    };
    // The blocks below the first adapter never change: their output is
    // computed once per example.
    let started = Instant::now();
    progress.begin(
        "running the prompts through the frozen blocks",
        (train.len() + validation.len()) as u64,
    );
    let train_prefix = prefixes(model, train, progress)?;
    let validation_prefix = prefixes(model, validation, progress)?;
    progress.end();
    let prefix_seconds = started.elapsed().as_secs_f64();
    let mut validation_loss = Vec::new();
    let mut best: Option<(usize, f64, Vec<Tensor>)> = None;
    if !validation.is_empty() {
        progress.begin("validation loss, untrained", 0);
        let l = mean_loss_after(model, validation, &validation_prefix)?;
        progress.end();
        tracing::info!(loss = l, "validation answer loss before training");
        validation_loss.push(l);
        best = Some((0, l, snapshot()?));
    }
    let mut rng = SplitMix(opts.seed);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut epoch_loss = Vec::new();
    let mut train_seconds = 0f64;
    let mut step = 0usize;
    for epoch in 1..=opts.epochs {
        rng.shuffle(&mut order);
        progress.begin(
            &format!(
                "training the generator's adapter, epoch {epoch}/{}",
                opts.epochs
            ),
            train.len() as u64,
        );
        let (mut loss_sum, mut loss_n) = (0f64, 0usize);
        for chunk in order.chunks(opts.accumulate) {
            let started = Instant::now();
            let lr = step_size(opts.learning_rate, step, warmup, total);
            let chunk_loss = (|| -> candle_core::Result<Vec<f32>> {
                // Only the adapters' gradients are kept (a store also holds
                // those of constants such as the mask, dropped here).
                let mut grads = GradStore::default();
                let mut losses = Vec::with_capacity(chunk.len());
                for &i in chunk {
                    let e = &train[i];
                    let loss = model.loss_after(&train_prefix[i], &e.tokens, e.answer)?;
                    let mut g = loss.backward()?;
                    losses.push(loss.to_scalar::<f32>()?);
                    for v in &vars {
                        if let Some(x) = g.remove(v.as_tensor()) {
                            let sum = match grads.remove(v.as_tensor()) {
                                Some(y) => (y + x)?,
                                None => x,
                            };
                            grads.insert(v.as_tensor(), sum);
                        }
                    }
                }
                let mean = 1.0 / chunk.len() as f64;
                let mut sq = 0f64;
                for v in &vars {
                    if let Some(g) = grads.remove(v.as_tensor()) {
                        let g = (g * mean)?;
                        sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
                        grads.insert(v.as_tensor(), g);
                    }
                }
                let norm = sq.sqrt();
                if opts.max_grad_norm > 0.0 && norm > opts.max_grad_norm {
                    let scale = opts.max_grad_norm / (norm + 1e-6);
                    for v in &vars {
                        if let Some(g) = grads.remove(v.as_tensor()) {
                            grads.insert(v.as_tensor(), (g * scale)?);
                        }
                    }
                }
                opt.set_learning_rate(lr);
                opt.step(&grads)?;
                Ok(losses)
            })()
            .map_err(TrainError::compute)?;
            train_seconds += started.elapsed().as_secs_f64();
            for (&i, l) in chunk.iter().zip(&chunk_loss) {
                if !l.is_finite() {
                    return Err(TrainError::Compute(format!(
                        "the loss became {l} at step {step}: lower the learning rate"
                    )));
                }
                let k = train[i].tokens.len() - train[i].answer;
                loss_sum += *l as f64 * k as f64;
                loss_n += k;
            }
            step += 1;
            progress.advance(chunk.len() as u64);
        }
        progress.end();
        let mean = loss_sum / loss_n.max(1) as f64;
        tracing::info!(epoch, loss = mean, "generator epoch done");
        epoch_loss.push(mean);
        if !validation.is_empty() {
            progress.begin(&format!("validation loss, epoch {epoch}"), 0);
            let l = mean_loss_after(model, validation, &validation_prefix)?;
            progress.end();
            tracing::info!(epoch, loss = l, "validation answer loss");
            validation_loss.push(l);
            if best.as_ref().is_none_or(|b| l < b.1) {
                best = Some((epoch, l, snapshot()?));
            }
        }
    }
    let best_epoch = match best {
        Some((epoch, _, values)) if epoch != opts.epochs => {
            for (v, t) in vars.iter().zip(&values) {
                v.set(t).map_err(TrainError::compute)?;
            }
            epoch
        }
        Some((epoch, ..)) => epoch,
        None => opts.epochs,
    };
    Ok(LoraFigures {
        train_examples: train.len(),
        validation_examples: validation.len(),
        train_tokens,
        answer_tokens,
        epochs: opts.epochs,
        steps: step,
        epoch_loss,
        validation_loss,
        best_epoch,
        train_seconds,
        prefix_seconds,
        frozen_blocks: model.first_adapted(),
        tokens_per_second: (train_tokens * opts.epochs) as f64
            / (train_seconds + prefix_seconds).max(1e-9),
        trainable_parameters,
    })
}
