//! What every BERT-family sentence encoder shares, whatever runs it.
//!
//! Reads a sentence-transformers model directory (`config.json`,
//! `tokenizer.json`, `model.safetensors`, and when present `modules.json`,
//! `1_Pooling/config.json`, `sentence_bert_config.json`,
//! `config_sentence_transformers.json`) so that pooling, normalisation,
//! window length and query prompts follow the model's own files:
//! all-MiniLM-L6-v2 pools by mean and normalises; bge-*-en-v1.5 pools by CLS,
//! normalises and prefixes queries with an instruction.

use crate::ModelError;
use serde::Deserialize;
use std::path::Path;
use tokenizers::Tokenizer;

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    Mean,
    Cls,
}

/// What the model directory says about using the model.
#[derive(Debug, Clone, PartialEq)]
pub struct SentenceConfig {
    pub pooling: Pooling,
    pub normalize: bool,
    pub max_seq_length: usize,
    pub query_prefix: String,
}

#[derive(Deserialize)]
struct PoolingFile {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
}

#[derive(Deserialize)]
struct ModuleEntry {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    path: String,
}

#[derive(Deserialize)]
struct SbertFile {
    max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct StFile {
    #[serde(default)]
    prompts: std::collections::HashMap<String, String>,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, ModelError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ModelError::BadModel {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ModelError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

impl SentenceConfig {
    /// Read the sentence-transformers files of a model directory, with
    /// defaults for plain Hugging Face BERT directories (mean pooling,
    /// normalised, the model's position limit).
    pub fn read(dir: &Path, max_position: usize) -> Result<SentenceConfig, ModelError> {
        let modules: Option<Vec<ModuleEntry>> = read_json(&dir.join("modules.json"))?;
        let mut pooling_dir = dir.join("1_Pooling");
        let mut normalize = true;
        if let Some(mods) = &modules {
            normalize = mods.iter().any(|m| m.kind.ends_with("Normalize"));
            if let Some(p) = mods.iter().find(|m| m.kind.ends_with("Pooling")) {
                pooling_dir = dir.join(&p.path);
            }
        }
        let pooling = match read_json::<PoolingFile>(&pooling_dir.join("config.json"))? {
            Some(p) if p.pooling_mode_cls_token && !p.pooling_mode_mean_tokens => Pooling::Cls,
            Some(_) => Pooling::Mean,
            None => Pooling::Mean,
        };
        let max_seq_length = read_json::<SbertFile>(&dir.join("sentence_bert_config.json"))?
            .and_then(|s| s.max_seq_length)
            .unwrap_or(max_position)
            .min(max_position);
        let mut query_prefix = read_json::<StFile>(&dir.join("config_sentence_transformers.json"))?
            .and_then(|s| s.prompts.get("query").cloned())
            .unwrap_or_default();
        // bge v1.5 English models document this instruction for short queries;
        // older exports do not carry it in their files.
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if query_prefix.is_empty() && name.contains("bge-") && name.contains("-en") {
            query_prefix = "Represent this sentence for searching relevant passages: ".into();
        }
        Ok(SentenceConfig {
            pooling,
            normalize,
            max_seq_length,
            query_prefix,
        })
    }
}

/// The model's tokenizer twice: truncated to `max_len` for embedding, and
/// untruncated for counting and chunking. Neither pads.
pub(crate) fn load_tokenizers(
    dir: &Path,
    max_len: usize,
) -> Result<(Tokenizer, Tokenizer), ModelError> {
    let tok_path = dir.join("tokenizer.json");
    let bad = |e: tokenizers::Error| ModelError::BadModel {
        path: tok_path.clone(),
        message: e.to_string(),
    };
    let mut tokenizer = Tokenizer::from_file(&tok_path).map_err(bad)?;
    tokenizer.with_padding(None);
    tokenizer.with_truncation(None).map_err(bad)?;
    let untruncated = tokenizer.clone();
    tokenizer
        .with_truncation(Some(tokenizers::TruncationParams {
            max_length: max_len,
            ..Default::default()
        }))
        .map_err(bad)?;
    Ok((tokenizer, untruncated))
}

/// Group inputs into batches of similar length, longest first, so padding
/// wastes little work; each batch is capped at `batch_size` inputs and
/// `batch_size * 128` tokens. Returns indices into `encodings`.
pub(crate) fn length_batches(
    encodings: &[tokenizers::Encoding],
    batch_size: usize,
) -> Vec<Vec<usize>> {
    let batch_size = batch_size.max(1);
    let mut order: Vec<usize> = (0..encodings.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(encodings[i].get_ids().len()));
    let token_budget = batch_size * 128;
    let mut batches = vec![];
    let mut i = 0;
    while i < order.len() {
        let longest = encodings[order[i]].get_ids().len().max(1);
        let n = (token_budget / longest)
            .clamp(1, batch_size)
            .min(order.len() - i);
        batches.push(order[i..i + n].to_vec());
        i += n;
    }
    batches
}

/// Token ids and attention mask of a batch, right-padded with 0 to its
/// longest input: `(inputs, length, ids, mask)`, row-major.
pub(crate) fn pad_batch(batch: &[&tokenizers::Encoding]) -> (usize, usize, Vec<u32>, Vec<u32>) {
    let len = batch
        .iter()
        .map(|enc| enc.get_ids().len())
        .max()
        .unwrap_or(1)
        .max(1);
    let n = batch.len();
    let mut ids = Vec::with_capacity(n * len);
    let mut mask = Vec::with_capacity(n * len);
    for enc in batch {
        let l = enc.get_ids().len();
        ids.extend_from_slice(enc.get_ids());
        ids.extend(std::iter::repeat_n(0u32, len - l));
        mask.extend(std::iter::repeat_n(1u32, l));
        mask.extend(std::iter::repeat_n(0u32, len - l));
    }
    (n, len, ids, mask)
}

/// Pool token vectors `hidden` (`[n, len, dim]`, row-major) into one vector
/// per input, using `mask` (`[n, len]`, 1 for real tokens) for mean pooling,
/// then L2-normalise when asked.
#[cfg_attr(not(feature = "ort"), allow(dead_code))]
pub(crate) fn pool_and_normalize(
    hidden: &[f32],
    mask: &[f32],
    n: usize,
    len: usize,
    dim: usize,
    pooling: Pooling,
    normalize: bool,
) -> Vec<Vec<f32>> {
    (0..n)
        .map(|b| {
            let tokens = &hidden[b * len * dim..(b + 1) * len * dim];
            let mut v = match pooling {
                Pooling::Cls => tokens[..dim].to_vec(),
                Pooling::Mean => {
                    let mut acc = vec![0f32; dim];
                    let mut count = 0f32;
                    for t in 0..len {
                        let m = mask[b * len + t];
                        if m > 0.0 {
                            count += m;
                            for (a, x) in acc.iter_mut().zip(&tokens[t * dim..(t + 1) * dim]) {
                                *a += m * x;
                            }
                        }
                    }
                    let c = count.max(1e-9);
                    acc.iter_mut().for_each(|a| *a /= c);
                    acc
                }
            };
            if normalize {
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                v.iter_mut().for_each(|x| *x /= norm);
            }
            v
        })
        .collect()
}

/// What every backend shares: the tokenizers, the sentence-transformers
/// settings, the model id and length-bucketed batching.
pub(crate) struct TextSide {
    tokenizer: Tokenizer,
    /// The same tokenizer without truncation, for counting and chunking.
    pub(crate) untruncated: Tokenizer,
    pub(crate) config: SentenceConfig,
    pub(crate) model_id: String,
    batch_size: usize,
    /// Tokenizers cut at other lengths than the window, by length (late
    /// interaction's queries and passages), made on first use.
    cut: std::sync::Mutex<Vec<(usize, std::sync::Arc<Tokenizer>)>>,
}

impl TextSide {
    /// Tokenizers and settings of the model in `dir`; `variant` (e.g. the
    /// graph file of a quantised export) is appended to the model id.
    pub(crate) fn load(
        dir: &Path,
        config: SentenceConfig,
        batch_size: usize,
        variant: &str,
    ) -> Result<TextSide, ModelError> {
        let (tokenizer, untruncated) = load_tokenizers(dir, config.max_seq_length)?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "bert".into());
        let model_id = format!(
            "{name}|{}|{}{variant}",
            match config.pooling {
                Pooling::Mean => "mean",
                Pooling::Cls => "cls",
            },
            if config.normalize { "norm" } else { "raw" }
        );
        Ok(TextSide {
            tokenizer,
            untruncated,
            config,
            model_id,
            batch_size: batch_size.max(1),
            cut: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Tokenise `texts`, each cut at `max_tokens` tokens, special tokens
    /// counted (at most the model's window).
    #[cfg_attr(not(feature = "ort"), allow(dead_code))]
    pub(crate) fn encode_cut(
        &self,
        texts: &[String],
        max_tokens: usize,
    ) -> Result<Vec<tokenizers::Encoding>, ModelError> {
        let max = max_tokens.clamp(2, self.config.max_seq_length.max(2));
        let err = |e: tokenizers::Error| ModelError::Inference(format!("tokenizer: {e}"));
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        if max == self.config.max_seq_length {
            return self.tokenizer.encode_batch(inputs, true).map_err(err);
        }
        let tokenizer = {
            let mut cut = self.cut.lock().unwrap_or_else(|p| p.into_inner());
            match cut.iter().find(|(l, _)| *l == max) {
                Some((_, t)) => t.clone(),
                None => {
                    let mut t = self.untruncated.clone();
                    t.with_truncation(Some(tokenizers::TruncationParams {
                        max_length: max,
                        ..Default::default()
                    }))
                    .map_err(err)?;
                    let t = std::sync::Arc::new(t);
                    cut.push((max, t.clone()));
                    t
                }
            }
        };
        tokenizer.encode_batch(inputs, true).map_err(err)
    }

    /// Tokenise `texts`, run `forward` on length-sorted batches, and return
    /// the vectors in input order.
    pub(crate) fn embed(
        &self,
        texts: &[String],
        mut forward: impl FnMut(Vec<&tokenizers::Encoding>) -> Result<Vec<Vec<f32>>, ModelError>,
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        if texts.is_empty() {
            return Ok(vec![]);
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.iter().map(|s| s.as_str()).collect::<Vec<_>>(), true)
            .map_err(|e| ModelError::Inference(format!("tokenizer: {e}")))?;
        let mut out = vec![Vec::new(); texts.len()];
        for batch in length_batches(&encodings, self.batch_size) {
            let vecs = forward(batch.iter().map(|&j| &encodings[j]).collect())?;
            for (&j, v) in batch.iter().zip(vecs) {
                out[j] = v;
            }
        }
        Ok(out)
    }
}

/// The accessors and the [`Embedder`] / [`crate::SentenceEncoder`] impls of
/// an embedder with a `text: TextSide` field, a `dim` field and an
/// `embed(&self, &[String])` method; with `tokens: method`, its
/// `Embedder::embed_tokens` is that method (else the trait's error).
macro_rules! sentence_encoder {
    ($ty:ty, $backend:literal $(, tokens: $tokens:ident)?) => {
        impl $ty {
            /// The sentence-transformers settings in use.
            pub fn sentence_config(&self) -> &$crate::SentenceConfig {
                &self.text.config
            }

            /// Override the query instruction prefix.
            pub fn set_query_prefix(&mut self, prefix: String) {
                self.text.config.query_prefix = prefix;
            }

            /// The tokenizer, without truncation, for chunking.
            pub fn chunking_tokenizer(&self) -> tokenizers::Tokenizer {
                self.text.untruncated.clone()
            }
        }

        impl cairn_core::Embedder for $ty {
            fn dim(&self) -> usize {
                self.dim
            }

            fn model_id(&self) -> &str {
                &self.text.model_id
            }

            fn embed_passages(
                &self,
                texts: &[String],
            ) -> Result<Vec<Vec<f32>>, cairn_core::EmbedError> {
                self.embed(texts)
                    .map_err(|e| cairn_core::EmbedError(e.to_string()))
            }

            fn embed_query(&self, text: &str) -> Result<Vec<f32>, cairn_core::EmbedError> {
                let q = format!("{}{}", self.text.config.query_prefix, text);
                self.embed(&[q])
                    .map_err(|e| cairn_core::EmbedError(e.to_string()))
                    .map(|mut v| v.remove(0))
            }

            fn count_tokens(&self, text: &str) -> usize {
                self.text
                    .untruncated
                    .encode(text, true)
                    .map(|e| e.get_ids().len())
                    .unwrap_or(0)
            }

            fn max_tokens(&self) -> usize {
                self.text.config.max_seq_length
            }

            $(
                fn embed_tokens(
                    &self,
                    texts: &[String],
                    max_tokens: usize,
                ) -> Result<Vec<cairn_core::TokenVectors>, cairn_core::EmbedError> {
                    self.$tokens(texts, max_tokens)
                        .map_err(|e| cairn_core::EmbedError(e.to_string()))
                }
            )?
        }

        impl $crate::SentenceEncoder for $ty {
            fn chunking_tokenizer(&self) -> tokenizers::Tokenizer {
                <$ty>::chunking_tokenizer(self)
            }
            fn backend(&self) -> &'static str {
                $backend
            }
        }
    };
}
pub(crate) use sentence_encoder;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentence_config_reads_cls_pooling_and_prompts() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("bge-small-en-v1.5");
        std::fs::create_dir_all(d.join("1_Pooling")).unwrap();
        std::fs::write(
            d.join("1_Pooling/config.json"),
            r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
        )
        .unwrap();
        std::fs::write(
            d.join("modules.json"),
            r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},{"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},{"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#,
        )
        .unwrap();
        std::fs::write(
            d.join("sentence_bert_config.json"),
            r#"{"max_seq_length": 512, "do_lower_case": true}"#,
        )
        .unwrap();
        let c = SentenceConfig::read(&d, 512).unwrap();
        assert_eq!(c.pooling, Pooling::Cls);
        assert!(c.normalize);
        assert_eq!(c.max_seq_length, 512);
        assert!(c.query_prefix.starts_with("Represent this sentence"));
        std::fs::write(
            d.join("config_sentence_transformers.json"),
            r#"{"prompts": {"query": "query: "}}"#,
        )
        .unwrap();
        assert_eq!(
            SentenceConfig::read(&d, 512).unwrap().query_prefix,
            "query: "
        );
    }

    #[test]
    fn sentence_config_defaults_and_bad_json() {
        let dir = tempfile::tempdir().unwrap();
        let c = SentenceConfig::read(dir.path(), 512).unwrap();
        assert_eq!(
            (c.pooling, c.normalize, c.max_seq_length),
            (Pooling::Mean, true, 512)
        );
        std::fs::write(dir.path().join("modules.json"), "{not json").unwrap();
        let e = SentenceConfig::read(dir.path(), 512)
            .unwrap_err()
            .to_string();
        assert!(e.contains("modules.json"), "{e}");
    }

    #[test]
    fn batches_group_by_length_and_respect_caps() {
        let mut tok =
            tokenizers::Tokenizer::from_file(cairn_testkit::minilm_dir().join("tokenizer.json"))
                .unwrap();
        // The model's file pads and truncates to 128; lengths must be real here.
        tok.with_padding(None);
        tok.with_truncation(None).unwrap();
        let texts: Vec<String> = (0..10).map(|i| "word ".repeat(i * 30 + 1)).collect();
        let enc = tok
            .encode_batch(texts.iter().map(|s| s.as_str()).collect::<Vec<_>>(), true)
            .unwrap();
        let batches = length_batches(&enc, 4);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(
            seen,
            (0..10).collect::<Vec<_>>(),
            "every input exactly once"
        );
        for b in &batches {
            assert!(b.len() <= 4);
            let longest = b.iter().map(|&i| enc[i].get_ids().len()).max().unwrap();
            assert!(b.len() == 1 || b.len() * longest <= 4 * 128, "{b:?}");
        }
        assert_eq!(batches[0][0], 9, "longest first");
    }

    #[test]
    fn mean_pooling_ignores_padding_and_normalises() {
        // two inputs, three positions, dim 2; the second input's last position is padding
        let hidden = [
            1.0, 0.0, 3.0, 0.0, 5.0, 0.0, 0.0, 2.0, 0.0, 4.0, 100.0, 100.0,
        ];
        let mask = [1.0, 1.0, 1.0, 1.0, 1.0, 0.0];
        let raw = pool_and_normalize(&hidden, &mask, 2, 3, 2, Pooling::Mean, false);
        assert_eq!(raw, vec![vec![3.0, 0.0], vec![0.0, 3.0]]);
        let cls = pool_and_normalize(&hidden, &mask, 2, 3, 2, Pooling::Cls, true);
        assert_eq!(cls, vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
    }
}
