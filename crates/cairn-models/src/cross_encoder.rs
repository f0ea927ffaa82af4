//! A cross-encoder (reranker) on ONNX Runtime (cargo feature `ort`), and the
//! critic built on it.
//!
//! A cross-encoder reads a (question or claim, passage) pair as one input,
//! `[CLS] text [SEP] passage [SEP]`, and scores it with a classification
//! head: a `BertForSequenceClassification` checkpoint such as
//! cross-encoder/ms-marco-MiniLM-L-6-v2 (`num_labels` 1: the logit is the
//! score; 2: the score is `logit[1] - logit[0]`, the log-odds of the positive
//! label). The graph is `onnx/model.onnx` or `model.onnx` in the model
//! directory (output `logits`), else written from `model.safetensors` by
//! [`crate::onnx_export::export_bert_classifier`].

use crate::bert::length_batches;
use crate::{ModelError, OnnxOptions};
use cairn_core::{Calibration, Critic, CriticError, Judgement};
use ort::session::Session;
use ort::value::Tensor;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tokenizers::{Encoding, Tokenizer, TruncationParams, TruncationStrategy};

/// What to give instead of a model that is not a cross-encoder.
const WANTED: &str = "give a cross-encoder / reranker directory (a BertForSequenceClassification \
                      checkpoint such as cross-encoder/ms-marco-MiniLM-L-6-v2)";

fn bad(path: &Path, message: impl std::fmt::Display) -> ModelError {
    ModelError::BadModel {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// A BERT cross-encoder: one relevance score per (text, passage) pair.
pub struct CrossEncoder {
    session: Mutex<Session>,
    inputs: Vec<String>,
    /// Truncates the passage only.
    tokenizer: Tokenizer,
    /// Truncates the longer text first: for a text too long to leave room
    /// for any of the passage.
    fallback: Tokenizer,
    num_labels: usize,
    max_len: usize,
    batch_size: usize,
    onnx_file: PathBuf,
}

impl std::fmt::Debug for CrossEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrossEncoder")
            .field("onnx_file", &self.onnx_file)
            .field("num_labels", &self.num_labels)
            .field("max_len", &self.max_len)
            .finish()
    }
}

/// The number of labels a `config.json` declares (`id2label`, which
/// transformers prefers, else `num_labels`); `None` when it declares neither.
fn declared_labels(cfg: &serde_json::Value) -> Option<usize> {
    cfg.get("id2label")
        .and_then(|m| m.as_object())
        .map(|m| m.len())
        .or_else(|| {
            cfg.get("num_labels")
                .and_then(|n| n.as_u64())
                .map(|n| n as usize)
        })
}

/// The architectures a `config.json` names.
fn architectures(cfg: &serde_json::Value) -> Vec<String> {
    cfg.get("architectures")
        .and_then(|a| a.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl CrossEncoder {
    /// Load the cross-encoder in `dir` (`config.json`, `tokenizer.json`, and
    /// the graph `opts.onnx_file`, else `onnx/model.onnx` or `model.onnx`,
    /// else one written from `model.safetensors`) on the CPU, with
    /// `opts.threads` and `opts.batch_size`.
    pub fn load(dir: &Path, opts: &OnnxOptions) -> Result<CrossEncoder, ModelError> {
        CrossEncoder::load_on(dir, crate::Device::Cpu, opts)
    }

    /// [`CrossEncoder::load`] on `device`: `cpu` (or `auto`), or `coreml`
    /// (Apple's Neural Engine, with the `coreml` feature); a GPU is an error
    /// that says so.
    pub fn load_on(
        dir: &Path,
        device: crate::Device,
        opts: &OnnxOptions,
    ) -> Result<CrossEncoder, ModelError> {
        if !dir.is_dir() {
            return Err(bad(
                dir,
                format!("no such model directory; {WANTED}, or fetch one into the models dir"),
            ));
        }
        let cfg_path = dir.join("config.json");
        let cfg: serde_json::Value = match std::fs::read(&cfg_path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| bad(&cfg_path, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(bad(
                    &cfg_path,
                    format!(
                        "no config.json, so this is not a Hugging Face model directory; {WANTED}"
                    ),
                ))
            }
            Err(source) => {
                return Err(ModelError::Io {
                    path: cfg_path,
                    source,
                })
            }
        };
        let arch = architectures(&cfg);
        let embedding_files = ["modules.json", "sentence_bert_config.json", "1_Pooling"]
            .iter()
            .any(|f| dir.join(f).exists());
        let num_labels = match declared_labels(&cfg) {
            Some(n @ 1..=2) => n,
            Some(n) => {
                return Err(bad(
                    &cfg_path,
                    format!(
                        "num_labels is {n} (id2label / num_labels): not a sequence-classification model \
                         (a cross-encoder / reranker); num_labels must be 1 or 2; {WANTED}"
                    ),
                ))
            }
            None if !arch.iter().any(|a| a.ends_with("ForSequenceClassification"))
                && (embedding_files || arch.iter().any(|a| a == "BertModel")) =>
            {
                return Err(bad(
                    &cfg_path,
                    format!(
                        "this is a sentence-embedding model (architectures {arch:?}, no num_labels / id2label), \
                         not a cross-encoder: set it as the embedding model, and {WANTED}"
                    ),
                ))
            }
            None => {
                return Err(bad(
                    &cfg_path,
                    format!(
                        "no num_labels or id2label: not a sequence-classification model \
                         (a cross-encoder / reranker); num_labels must be 1 or 2; {WANTED}"
                    ),
                ))
            }
        };
        let max_position = cfg
            .get("max_position_embeddings")
            .and_then(|v| v.as_u64())
            .unwrap_or(512) as usize;
        let max_len = max_position.min(512);

        let tok_path = dir.join("tokenizer.json");
        if !tok_path.is_file() {
            return Err(bad(
                &tok_path,
                "no tokenizer.json: put the model's fast-tokenizer file (tokenizer.json, from its \
                 Hugging Face repository) in the model directory",
            ));
        }
        let tok_err = |e: tokenizers::Error| bad(&tok_path, e);
        let mut tokenizer = Tokenizer::from_file(&tok_path).map_err(tok_err)?;
        tokenizer.with_padding(None);
        let mut fallback = tokenizer.clone();
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                strategy: TruncationStrategy::OnlySecond,
                ..Default::default()
            }))
            .map_err(tok_err)?;
        fallback
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                ..Default::default()
            }))
            .map_err(tok_err)?;

        let onnx_file = match &opts.onnx_file {
            Some(f) if f.is_file() => f.clone(),
            Some(f) => return Err(bad(f, "no such ONNX file")),
            None => crate::onnx_export::ensure_classifier_graph(dir)?,
        };
        let session = crate::onnx::new_session(opts, device, &onnx_file)?;
        let inputs = crate::onnx::bert_inputs(&session, &onnx_file, "a BERT cross-encoder")?;
        let outputs: Vec<&str> = session.outputs.iter().map(|o| o.name.as_str()).collect();
        if !outputs.contains(&"logits") {
            let hint = if outputs.contains(&"last_hidden_state") {
                "it is a sentence encoder's graph (an embedding model), not a cross-encoder's; \
                 remove it so that Cairn writes the classifier's graph from model.safetensors, \
                 or give a graph exported from the BertForSequenceClassification checkpoint"
            } else {
                "give a graph exported from the BertForSequenceClassification checkpoint"
            };
            return Err(bad(
                &onnx_file,
                format!("the graph outputs {outputs:?}, not `logits`: {hint}"),
            ));
        }
        Ok(CrossEncoder {
            session: Mutex::new(session),
            inputs,
            tokenizer,
            fallback,
            num_labels,
            max_len,
            batch_size: opts.batch_size.max(1),
            onnx_file,
        })
    }

    /// The graph file in use.
    pub fn onnx_file(&self) -> &Path {
        &self.onnx_file
    }

    /// The model's labels: 1 or 2.
    pub fn num_labels(&self) -> usize {
        self.num_labels
    }

    /// The most tokens of one pair the model reads (special tokens
    /// included); longer passages are truncated.
    pub fn max_tokens(&self) -> usize {
        self.max_len
    }

    /// One raw score per `(text, passage)` pair, higher = more relevant: the
    /// logit when the model has one label, `logit[1] - logit[0]` when two.
    pub fn scores(&self, pairs: &[(&str, &str)]) -> Result<Vec<f32>, ModelError> {
        Ok(self
            .logits(pairs)?
            .into_iter()
            .map(|l| match l.as_slice() {
                [x] => *x,
                [neg, pos] => pos - neg,
                _ => unreachable!("num_labels is 1 or 2"),
            })
            .collect())
    }

    /// The model's logits (`num_labels` of them) per pair, in input order.
    pub fn logits(&self, pairs: &[(&str, &str)]) -> Result<Vec<Vec<f32>>, ModelError> {
        if pairs.is_empty() {
            return Ok(vec![]);
        }
        let encodings = pairs
            .iter()
            .map(|&(a, b)| self.encode(a, b))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = vec![Vec::new(); pairs.len()];
        for batch in length_batches(&encodings, self.batch_size) {
            let logits = self.forward(batch.iter().map(|&j| &encodings[j]).collect())?;
            for (&j, l) in batch.iter().zip(logits) {
                out[j] = l;
            }
        }
        Ok(out)
    }

    /// `[CLS] text [SEP] passage [SEP]`, the passage truncated to fit.
    fn encode(&self, text: &str, passage: &str) -> Result<Encoding, ModelError> {
        let tok_err = |e: tokenizers::Error| ModelError::Inference(format!("tokenizer: {e}"));
        match self.tokenizer.encode((text, passage), true) {
            Ok(e) => Ok(e),
            // The text alone is too long to leave room for the passage.
            Err(_) => self.fallback.encode((text, passage), true).map_err(tok_err),
        }
    }

    fn forward(&self, batch: Vec<&Encoding>) -> Result<Vec<Vec<f32>>, ModelError> {
        let e = |err: ort::Error| ModelError::Inference(err.to_string());
        let n = batch.len();
        let len = batch
            .iter()
            .map(|enc| enc.get_ids().len())
            .max()
            .unwrap_or(1)
            .max(1);
        let mut ids = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        let mut types = Vec::with_capacity(n * len);
        for enc in &batch {
            let l = enc.get_ids().len();
            ids.extend(enc.get_ids().iter().map(|&i| i as i64));
            types.extend(enc.get_type_ids().iter().map(|&i| i as i64));
            mask.extend(std::iter::repeat_n(1i64, l));
            for v in [&mut ids, &mut types, &mut mask] {
                v.extend(std::iter::repeat_n(0i64, len - l));
            }
        }
        let shape = [n, len];
        let mut values: Vec<(&str, ort::session::SessionInputValue<'_>)> = vec![];
        for name in &self.inputs {
            let data = match name.as_str() {
                "input_ids" => ids.clone(),
                "attention_mask" => mask.clone(),
                _ => types.clone(),
            };
            values.push((
                name.as_str(),
                Tensor::from_array((shape, data)).map_err(e)?.into(),
            ));
        }
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session.run(values).map_err(e)?;
        let (out_shape, data) = outputs["logits"].try_extract_tensor::<f32>().map_err(e)?;
        let dims: Vec<i64> = out_shape.iter().copied().collect();
        if dims != [n as i64, self.num_labels as i64] {
            return Err(ModelError::Inference(format!(
                "{}: `logits` has shape {dims:?}, expected [{n}, {}] (num_labels in config.json)",
                self.onnx_file.display(),
                self.num_labels
            )));
        }
        Ok(data
            .chunks_exact(self.num_labels)
            .map(<[f32]>::to_vec)
            .collect())
    }
}

/// The cross-encoder as a [`Critic`]: the same raw score for both
/// judgements (the pair is the question or the claim, then the passage),
/// each with its own calibration.
#[derive(Debug)]
pub struct CrossEncoderCritic {
    model: CrossEncoder,
    relevance: Calibration,
    support: Calibration,
}

impl CrossEncoderCritic {
    /// The critic of `model` with a calibration per judgement.
    pub fn new(model: CrossEncoder, relevance: Calibration, support: Calibration) -> Self {
        CrossEncoderCritic {
            model,
            relevance,
            support,
        }
    }

    /// The cross-encoder it runs.
    pub fn model(&self) -> &CrossEncoder {
        &self.model
    }
}

impl Critic for CrossEncoderCritic {
    fn name(&self) -> &str {
        "cross-encoder"
    }

    fn raw(&self, _judgement: Judgement, pairs: &[(&str, &str)]) -> Result<Vec<f32>, CriticError> {
        self.model.scores(pairs).map_err(|e| CriticError {
            critic: "cross-encoder".into(),
            reason: e.to_string(),
        })
    }

    fn calibration(&self, judgement: Judgement) -> Calibration {
        match judgement {
            Judgement::Relevance => self.relevance,
            Judgement::Support => self.support,
        }
    }
}
