//! A BERT sequence classifier (a cross-encoder) whose every weight is a
//! candle [`Var`], with a forward pass built only from operations that
//! record their backward pass.
//!
//! candle-nn's fused layers do not all record one: `LayerNorm` and
//! `softmax_last_dim` take custom-op fast paths without a gradient, so a
//! model built from them trains its other weights and silently leaves those
//! still. Layer norm and softmax are written here from elementary tensor
//! operations instead (mean, subtraction, square root, exp, sum), each of
//! which candle differentiates; a test checks that every weight gets a
//! non-zero gradient.
//!
//! The weights keep the names of a Hugging Face `BertForSequenceClassification`
//! checkpoint (`bert.embeddings.…`, `bert.encoder.layer.N.…`,
//! `bert.pooler.dense`, `classifier`), so the saved `model.safetensors` is
//! read by transformers, by sentence-transformers' `CrossEncoder`, and by
//! Cairn's ONNX export (`cairn_models::onnx_export::export_bert_classifier`).

use crate::{SplitMix, TrainError};
use candle_core::{DType, Device, Tensor, Var, D};
use std::collections::HashMap;
use std::path::Path;

fn bad(path: &Path, message: impl std::fmt::Display) -> TrainError {
    TrainError::BadModel {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// The sizes a BERT `config.json` gives.
#[derive(Debug, Clone, PartialEq)]
pub struct BertShape {
    pub vocab: usize,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub max_positions: usize,
    pub type_vocab: usize,
    pub eps: f64,
}

impl BertShape {
    /// Read and check `config.json` (a BERT with erf GELU, the activation
    /// of every BERT checkpoint sentence-transformers publishes).
    pub fn read(path: &Path) -> Result<(BertShape, serde_json::Value), TrainError> {
        let text = std::fs::read(path).map_err(|source| TrainError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| bad(path, format!("not JSON: {e}")))?;
        if let Some(t) = cfg.get("model_type").and_then(|v| v.as_str()) {
            if t != "bert" {
                return Err(bad(
                    path,
                    format!("model_type is {t:?}: only BERT models (model_type \"bert\") can be trained as a cross-encoder here"),
                ));
            }
        }
        if let Some(act) = cfg.get("hidden_act").and_then(|v| v.as_str()) {
            if act != "gelu" {
                return Err(bad(
                    path,
                    format!("hidden_act is {act:?}: only \"gelu\" (erf) is supported"),
                ));
            }
        }
        let field = |name: &str| -> Result<usize, TrainError> {
            cfg.get(name)
                .and_then(|v| v.as_u64())
                .map(|v| v as usize)
                .filter(|&v| v > 0)
                .ok_or_else(|| {
                    bad(
                        path,
                        format!("field `{name}` is missing or not a positive integer"),
                    )
                })
        };
        let shape = BertShape {
            vocab: field("vocab_size")?,
            hidden: field("hidden_size")?,
            layers: field("num_hidden_layers")?,
            heads: field("num_attention_heads")?,
            intermediate: field("intermediate_size")?,
            max_positions: field("max_position_embeddings")?,
            type_vocab: cfg
                .get("type_vocab_size")
                .and_then(|v| v.as_u64())
                .unwrap_or(2) as usize,
            eps: cfg
                .get("layer_norm_eps")
                .and_then(|v| v.as_f64())
                .unwrap_or(1e-12),
        };
        if !shape.hidden.is_multiple_of(shape.heads) {
            return Err(bad(
                path,
                format!(
                    "hidden_size {} is not a multiple of num_attention_heads {}",
                    shape.hidden, shape.heads
                ),
            ));
        }
        if shape.type_vocab < 2 {
            return Err(bad(
                path,
                "type_vocab_size is below 2: a cross-encoder needs a second segment for the passage",
            ));
        }
        Ok((shape, cfg))
    }

    /// Every weight's name (without the `bert.` prefix of the encoder's
    /// weights) and shape, in the order the forward pass reads them.
    pub fn weights(&self) -> Vec<(String, Vec<usize>)> {
        let (h, i) = (self.hidden, self.intermediate);
        let mut w = vec![
            (
                "embeddings.word_embeddings.weight".into(),
                vec![self.vocab, h],
            ),
            (
                "embeddings.position_embeddings.weight".into(),
                vec![self.max_positions, h],
            ),
            (
                "embeddings.token_type_embeddings.weight".into(),
                vec![self.type_vocab, h],
            ),
            ("embeddings.LayerNorm.weight".into(), vec![h]),
            ("embeddings.LayerNorm.bias".into(), vec![h]),
        ];
        for l in 0..self.layers {
            let p = format!("encoder.layer.{l}.");
            for (name, shape) in [
                ("attention.self.query.weight", vec![h, h]),
                ("attention.self.query.bias", vec![h]),
                ("attention.self.key.weight", vec![h, h]),
                ("attention.self.key.bias", vec![h]),
                ("attention.self.value.weight", vec![h, h]),
                ("attention.self.value.bias", vec![h]),
                ("attention.output.dense.weight", vec![h, h]),
                ("attention.output.dense.bias", vec![h]),
                ("attention.output.LayerNorm.weight", vec![h]),
                ("attention.output.LayerNorm.bias", vec![h]),
                ("intermediate.dense.weight", vec![i, h]),
                ("intermediate.dense.bias", vec![i]),
                ("output.dense.weight", vec![h, i]),
                ("output.dense.bias", vec![h]),
                ("output.LayerNorm.weight", vec![h]),
                ("output.LayerNorm.bias", vec![h]),
            ] {
                w.push((format!("{p}{name}"), shape));
            }
        }
        w.push(("pooler.dense.weight".into(), vec![h, h]));
        w.push(("pooler.dense.bias".into(), vec![h]));
        w.push(("classifier.weight".into(), vec![1, h]));
        w.push(("classifier.bias".into(), vec![1]));
        w
    }
}

/// The name a weight has in a `BertForSequenceClassification` checkpoint.
fn checkpoint_name(name: &str) -> String {
    if name.starts_with("classifier.") {
        name.to_string()
    } else {
        format!("bert.{name}")
    }
}

/// Whether weight decay applies to it (not to biases and layer norms, as
/// transformers' trainers do).
pub(crate) fn decays(name: &str) -> bool {
    !(name.ends_with(".bias") || name.contains("LayerNorm"))
}

/// A trainable BERT cross-encoder with one output (the relevance logit).
pub struct BertClassifier {
    shape: BertShape,
    config: serde_json::Value,
    names: Vec<String>,
    index: HashMap<String, usize>,
    vars: Vec<Var>,
    /// The weights the checkpoint lacked and that were initialised here.
    initialised: Vec<String>,
}

impl std::fmt::Debug for BertClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertClassifier")
            .field("shape", &self.shape)
            .field("initialised", &self.initialised)
            .finish()
    }
}

impl BertClassifier {
    /// The model in `dir` (`config.json`, `model.safetensors`): a sentence
    /// encoder (weights with or without the `bert.` prefix) or a saved
    /// cross-encoder. The weights it lacks, the pooler and the classifier
    /// of an encoder, start as BERT's do (normal, standard deviation 0.02;
    /// biases 0) from `seed`; any other missing or misshapen weight is an
    /// error naming it.
    pub fn load(dir: &Path, seed: u64) -> Result<BertClassifier, TrainError> {
        let (shape, config) = BertShape::read(&dir.join("config.json"))?;
        let file = dir.join("model.safetensors");
        if !file.is_file() {
            return Err(bad(
                &file,
                "no model.safetensors: training needs the model's weights as safetensors",
            ));
        }
        let stored = candle_core::safetensors::load(&file, &Device::Cpu)
            .map_err(|e| bad(&file, format!("not a safetensors file: {e}")))?;
        let mut rng = SplitMix(seed ^ 0x5EED_CA1B);
        let mut names = Vec::new();
        let mut vars = Vec::new();
        let mut initialised = Vec::new();
        for (name, dims) in shape.weights() {
            let alt = name
                .replace("LayerNorm.weight", "LayerNorm.gamma")
                .replace("LayerNorm.bias", "LayerNorm.beta");
            let found = [
                name.clone(),
                checkpoint_name(&name),
                alt.clone(),
                checkpoint_name(&alt),
            ]
            .iter()
            .find_map(|n| stored.get(n))
            .cloned();
            let tensor = match found {
                Some(t) => {
                    if t.dims() != dims.as_slice() {
                        return Err(bad(
                            &file,
                            format!(
                                "`{name}` has shape {:?}, config.json implies {dims:?}",
                                t.dims()
                            ),
                        ));
                    }
                    t.to_dtype(DType::F32).map_err(TrainError::compute)?
                }
                None if name.starts_with("pooler.") || name.starts_with("classifier.") => {
                    initialised.push(name.clone());
                    let n: usize = dims.iter().product();
                    let data: Vec<f32> = if name.ends_with(".bias") {
                        vec![0.0; n]
                    } else {
                        (0..n).map(|_| 0.02 * rng.normal()).collect()
                    };
                    Tensor::from_vec(data, dims.as_slice(), &Device::Cpu)
                        .map_err(TrainError::compute)?
                }
                None => {
                    return Err(bad(
                        &file,
                        format!("no tensor `{name}` (nor `bert.{name}`): not a BERT checkpoint matching config.json"),
                    ))
                }
            };
            names.push(name);
            vars.push(Var::from_tensor(&tensor).map_err(TrainError::compute)?);
        }
        let index = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        Ok(BertClassifier {
            shape,
            config,
            names,
            index,
            vars,
            initialised,
        })
    }

    pub fn shape(&self) -> &BertShape {
        &self.shape
    }

    /// The weights the checkpoint lacked (initialised at load).
    pub fn initialised(&self) -> &[String] {
        &self.initialised
    }

    /// Every weight's name, in the order of [`BertClassifier::vars`].
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The trainable weights.
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// The number of trainable scalars.
    pub fn parameters(&self) -> usize {
        self.vars.iter().map(|v| v.elem_count()).sum()
    }

    /// The weights as tensors that record operations (for training).
    pub fn tracked(&self) -> Vec<Tensor> {
        self.vars.iter().map(|v| v.as_tensor().clone()).collect()
    }

    /// The weights as tensors that record nothing (for scoring; they share
    /// the weights' storage, so they change as training does).
    pub fn detached(&self) -> Vec<Tensor> {
        self.vars.iter().map(|v| v.as_tensor().detach()).collect()
    }

    /// A copy of every weight's value (its own storage: training does not
    /// change it), for [`BertClassifier::restore`].
    pub fn snapshot(&self) -> Result<Vec<Tensor>, TrainError> {
        self.vars
            .iter()
            .map(|v| v.as_tensor().detach().copy().map_err(TrainError::compute))
            .collect()
    }

    /// Replace every weight's value by `values` (from
    /// [`BertClassifier::snapshot`], e.g. a better epoch's).
    pub fn restore(&self, values: &[Tensor]) -> Result<(), TrainError> {
        for (v, t) in self.vars.iter().zip(values) {
            v.set(t).map_err(TrainError::compute)?;
        }
        Ok(())
    }

    /// The relevance logit of each pair in `batch` (`[batch]`), computed
    /// with the weights `w` (from [`BertClassifier::tracked`] or
    /// [`BertClassifier::detached`]).
    pub fn forward(&self, w: &[Tensor], batch: &Batch) -> candle_core::Result<Tensor> {
        let p = |name: &str| &w[self.index[name]];
        let s = &self.shape;
        let (n, l, h) = (batch.size, batch.len, s.hidden);
        let (heads, dh) = (s.heads, s.hidden / s.heads);

        let ids = batch.ids.flatten_all()?;
        let types = batch.types.flatten_all()?;
        let x = p("embeddings.word_embeddings.weight").index_select(&ids, 0)?;
        let t = p("embeddings.token_type_embeddings.weight").index_select(&types, 0)?;
        let pos = p("embeddings.position_embeddings.weight").narrow(0, 0, l)?;
        let x = (x + t)?.reshape((n, l, h))?.broadcast_add(&pos)?;
        let mut x = layer_norm(
            &x.reshape((n * l, h))?,
            p("embeddings.LayerNorm.weight"),
            p("embeddings.LayerNorm.bias"),
            s.eps,
        )?;
        // 0 where a token is real, a large negative number at padding.
        let mask_bias = ((&batch.mask - 1.0)? * 10_000.0)?.reshape((n, 1, 1, l))?;
        let scale = 1.0 / (dh as f64).sqrt();
        for layer in 0..s.layers {
            let q = |name: &str| p(&format!("encoder.layer.{layer}.{name}"));
            let split = |t: Tensor| -> candle_core::Result<Tensor> {
                t.reshape((n, l, heads, dh))?.transpose(1, 2)?.contiguous()
            };
            let qs = split(linear(
                &x,
                q("attention.self.query.weight"),
                q("attention.self.query.bias"),
            )?)?;
            let ks = split(linear(
                &x,
                q("attention.self.key.weight"),
                q("attention.self.key.bias"),
            )?)?;
            let vs = split(linear(
                &x,
                q("attention.self.value.weight"),
                q("attention.self.value.bias"),
            )?)?;
            let scores = (qs.matmul(&ks.t()?)? * scale)?.broadcast_add(&mask_bias)?;
            let probs = softmax_last(&scores)?;
            let ctx = probs
                .matmul(&vs)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((n * l, h))?;
            let attn = linear(
                &ctx,
                q("attention.output.dense.weight"),
                q("attention.output.dense.bias"),
            )?;
            x = layer_norm(
                &(x + attn)?,
                q("attention.output.LayerNorm.weight"),
                q("attention.output.LayerNorm.bias"),
                s.eps,
            )?;
            let f = linear(
                &x,
                q("intermediate.dense.weight"),
                q("intermediate.dense.bias"),
            )?
            .gelu_erf()?;
            let f = linear(&f, q("output.dense.weight"), q("output.dense.bias"))?;
            x = layer_norm(
                &(x + f)?,
                q("output.LayerNorm.weight"),
                q("output.LayerNorm.bias"),
                s.eps,
            )?;
        }
        let first = x.reshape((n, l, h))?.narrow(1, 0, 1)?.reshape((n, h))?;
        let pooled = linear(&first, p("pooler.dense.weight"), p("pooler.dense.bias"))?.tanh()?;
        linear(&pooled, p("classifier.weight"), p("classifier.bias"))?.reshape(n)
    }

    /// Write the model into `dir` as a `BertForSequenceClassification`
    /// checkpoint with one label: `model.safetensors`, `config.json` (the
    /// encoder's, with the architecture and label added), and the
    /// tokenizer files copied from `tokenizer_dir`.
    pub fn save(&self, dir: &Path, tokenizer_dir: &Path) -> Result<(), TrainError> {
        std::fs::create_dir_all(dir).map_err(|source| TrainError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let tensors: HashMap<String, Tensor> = self
            .names
            .iter()
            .zip(&self.vars)
            .map(|(n, v)| (checkpoint_name(n), v.as_tensor().detach()))
            .collect();
        let file = dir.join("model.safetensors");
        candle_core::safetensors::save(&tensors, &file).map_err(|e| TrainError::Io {
            path: file.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let mut config = self.config.clone();
        config["architectures"] = serde_json::json!(["BertForSequenceClassification"]);
        config["num_labels"] = serde_json::json!(1);
        config["id2label"] = serde_json::json!({"0": "LABEL_0"});
        config["label2id"] = serde_json::json!({"LABEL_0": 0});
        let write = |name: &str, bytes: Vec<u8>| -> Result<(), TrainError> {
            let path = dir.join(name);
            std::fs::write(&path, bytes).map_err(|source| TrainError::Io { path, source })
        };
        write(
            "config.json",
            serde_json::to_vec_pretty(&config).expect("JSON serialises"),
        )?;
        for name in [
            "tokenizer.json",
            "tokenizer_config.json",
            "special_tokens_map.json",
            "vocab.txt",
        ] {
            let from = tokenizer_dir.join(name);
            if from.is_file() {
                std::fs::copy(&from, dir.join(name)).map_err(|source| TrainError::Io {
                    path: from.clone(),
                    source,
                })?;
            }
        }
        Ok(())
    }
}

/// `x · wᵀ + b` for `x` of shape `[rows, in]`.
fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    x.matmul(&w.t()?)?.broadcast_add(b)
}

/// Layer normalisation over the last dimension, from differentiable parts.
pub(crate) fn layer_norm(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    eps: f64,
) -> candle_core::Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    centred
        .broadcast_div(&(var + eps)?.sqrt()?)?
        .broadcast_mul(w)?
        .broadcast_add(b)
}

/// Softmax over the last dimension, from differentiable parts. The row
/// maximum is subtracted for range only: a constant shift, so it is taken
/// out of the graph.
pub(crate) fn softmax_last(x: &Tensor) -> candle_core::Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// Mean binary cross-entropy of logits `z` against labels `y` (0 or 1),
/// in the form that cannot overflow: `max(z, 0) − z·y + log(1 + e^−|z|)`.
pub fn bce_with_logits(z: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
    let soft = (z.abs()?.neg()?.exp()? + 1.0)?.log()?;
    ((z.relu()? - (z * y)?)? + soft)?.mean_all()
}

/// A batch of tokenised pairs, padded to its longest.
#[derive(Debug)]
pub struct Batch {
    /// `[size, len]` token ids (u32).
    pub ids: Tensor,
    /// `[size, len]` segment ids (u32).
    pub types: Tensor,
    /// `[size, len]`: 1 for tokens, 0 for padding (f32).
    pub mask: Tensor,
    pub size: usize,
    pub len: usize,
}

impl Batch {
    /// Pad `(ids, type ids)` rows into one batch.
    pub fn new(rows: &[(&[u32], &[u32])]) -> candle_core::Result<Batch> {
        let size = rows.len();
        let len = rows.iter().map(|r| r.0.len()).max().unwrap_or(1).max(1);
        let mut ids = Vec::with_capacity(size * len);
        let mut types = Vec::with_capacity(size * len);
        let mut mask = Vec::with_capacity(size * len);
        for (i, t) in rows {
            ids.extend_from_slice(i);
            types.extend_from_slice(t);
            mask.extend(std::iter::repeat_n(1f32, i.len()));
            let pad = len - i.len();
            ids.extend(std::iter::repeat_n(0u32, pad));
            types.extend(std::iter::repeat_n(0u32, pad));
            mask.extend(std::iter::repeat_n(0f32, pad));
        }
        let dev = Device::Cpu;
        Ok(Batch {
            ids: Tensor::from_vec(ids, (size, len), &dev)?,
            types: Tensor::from_vec(types, (size, len), &dev)?,
            mask: Tensor::from_vec(mask, (size, len), &dev)?,
            size,
            len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_norm_and_softmax_match_their_definitions() {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[1f32, 2.0, 4.0], [-3.0, 0.0, 3.0]], &dev).unwrap();
        let w = Tensor::new(&[1f32, 2.0, 0.5], &dev).unwrap();
        let b = Tensor::new(&[0f32, 1.0, -1.0], &dev).unwrap();
        let y: Vec<Vec<f32>> = layer_norm(&x, &w, &b, 1e-12).unwrap().to_vec2().unwrap();
        for (row, out) in [[1f32, 2.0, 4.0], [-3.0, 0.0, 3.0]].iter().zip(&y) {
            let mean = row.iter().sum::<f32>() / 3.0;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 3.0;
            for j in 0..3 {
                let want = (row[j] - mean) / var.sqrt() * [1.0, 2.0, 0.5][j] + [0.0, 1.0, -1.0][j];
                assert!((out[j] - want).abs() < 1e-5, "{out:?}");
            }
        }
        let s: Vec<Vec<f32>> = softmax_last(&x).unwrap().to_vec2().unwrap();
        for (row, out) in [[1f32, 2.0, 4.0], [-3.0, 0.0, 3.0]].iter().zip(&s) {
            let z: f32 = row.iter().map(|v| v.exp()).sum();
            for j in 0..3 {
                assert!((out[j] - row[j].exp() / z).abs() < 1e-6, "{out:?}");
            }
        }
    }

    #[test]
    fn binary_cross_entropy_matches_its_definition_and_stays_finite() {
        let dev = Device::Cpu;
        let z = Tensor::new(&[2f32, -1.0, 0.0, 200.0, -200.0], &dev).unwrap();
        let y = Tensor::new(&[1f32, 0.0, 1.0, 0.0, 0.0], &dev).unwrap();
        let got = bce_with_logits(&z, &y).unwrap().to_scalar::<f32>().unwrap();
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let want = (-(sig(2.0)).ln() - (1.0 - sig(-1.0)).ln() - (0.5f64).ln() + 200.0 + 0.0) / 5.0;
        assert!((got as f64 - want).abs() < 1e-4, "{got} vs {want}");
    }

    #[test]
    fn weight_decay_spares_biases_and_layer_norms() {
        assert!(decays("encoder.layer.0.attention.self.query.weight"));
        assert!(!decays("encoder.layer.0.attention.self.query.bias"));
        assert!(!decays("embeddings.LayerNorm.weight"));
        assert!(decays("classifier.weight"));
    }
}
