//! The BERT-family sentence encoder on candle (cargo feature `candle`, which
//! `cuda` and `metal` turn on): the GPU path. On CPUs the ONNX Runtime
//! backend is the default and about 4x faster (BENCHMARKS.md), so the default
//! build leaves candle out.

use crate::bert::{pad_batch, sentence_encoder, SentenceConfig, TextSide};
use crate::{Device, ModelError, Pooling};
use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use std::path::{Path, PathBuf};

/// A BERT-family embedding model loaded on a device.
pub struct BertEmbedder {
    model: BertModel,
    text: TextSide,
    device: candle_core::Device,
    dim: usize,
    dir: PathBuf,
}

impl std::fmt::Debug for BertEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertEmbedder")
            .field("dir", &self.dir)
            .field("config", &self.text.config)
            .finish()
    }
}

impl BertEmbedder {
    /// Load the model in `dir` on `device`.
    pub fn load(dir: &Path, device: Device, batch_size: usize) -> Result<BertEmbedder, ModelError> {
        for required in ["config.json", "tokenizer.json", "model.safetensors"] {
            if !dir.join(required).is_file() {
                return Err(ModelError::BadModel {
                    path: dir.to_path_buf(),
                    message: format!("missing {required} (a BERT model directory needs config.json, tokenizer.json and model.safetensors)"),
                });
            }
        }
        let cfg_path = dir.join("config.json");
        let cfg_text = std::fs::read_to_string(&cfg_path).map_err(|source| ModelError::Io {
            path: cfg_path.clone(),
            source,
        })?;
        let bert_cfg: BertConfig =
            serde_json::from_str(&cfg_text).map_err(|e| ModelError::BadModel {
                path: cfg_path.clone(),
                message: format!("not a BERT config: {e}"),
            })?;
        let config = SentenceConfig::read(dir, bert_cfg.max_position_embeddings)?;
        let candle_device = device.to_candle()?;
        let weights = dir.join("model.safetensors");
        // SAFETY: the file is memory-mapped read-only; Cairn never writes model files while they are loaded.
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &candle_device) }
                .map_err(|e| ModelError::BadModel {
                    path: weights.clone(),
                    message: e.to_string(),
                })?;
        let model = BertModel::load(vb, &bert_cfg).map_err(|e| ModelError::BadModel {
            path: weights.clone(),
            message: e.to_string(),
        })?;
        Ok(BertEmbedder {
            model,
            text: TextSide::load(dir, config, batch_size, "")?,
            device: candle_device,
            dim: bert_cfg.hidden_size,
            dir: dir.to_path_buf(),
        })
    }

    /// Embed texts, batching inputs of similar length together so that
    /// padding wastes little work. Results come back in input order.
    pub fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        self.text.embed(texts, |batch| self.forward(batch))
    }

    fn forward(&self, batch: Vec<&tokenizers::Encoding>) -> Result<Vec<Vec<f32>>, ModelError> {
        let e = |err: candle_core::Error| ModelError::Inference(err.to_string());
        let (n, len, ids, mask) = pad_batch(&batch);
        let ids = Tensor::from_vec(ids, (n, len), &self.device).map_err(e)?;
        let mask = Tensor::from_vec(mask, (n, len), &self.device).map_err(e)?;
        let types = ids.zeros_like().map_err(e)?;
        let hidden = self.model.forward(&ids, &types, Some(&mask)).map_err(e)?; // (n, len, dim)
        let pooled = match self.text.config.pooling {
            Pooling::Cls => hidden
                .narrow(1, 0, 1)
                .and_then(|t| t.squeeze(1))
                .map_err(e)?,
            Pooling::Mean => {
                let m = mask
                    .to_dtype(DType::F32)
                    .and_then(|m| m.unsqueeze(2))
                    .map_err(e)?;
                let summed = hidden.broadcast_mul(&m).and_then(|t| t.sum(1)).map_err(e)?;
                let counts = m
                    .sum(1)
                    .and_then(|c| c.clamp(1e-9f32, f32::MAX))
                    .map_err(e)?;
                summed.broadcast_div(&counts).map_err(e)?
            }
        };
        let pooled = if self.text.config.normalize {
            let norm = pooled
                .sqr()
                .and_then(|t| t.sum_keepdim(1))
                .and_then(|t| t.sqrt())
                .map_err(e)?;
            let norm = norm.clamp(1e-12f32, f32::MAX).map_err(e)?;
            pooled.broadcast_div(&norm).map_err(e)?
        } else {
            pooled
        };
        pooled
            .to_dtype(DType::F32)
            .and_then(|t| t.to_vec2::<f32>())
            .map_err(e)
    }
}

sentence_encoder!(BertEmbedder, "candle");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = BertEmbedder::load(dir.path(), Device::Cpu, 8)
            .unwrap_err()
            .to_string();
        assert!(e.contains("config.json"), "{e}");
    }
}
