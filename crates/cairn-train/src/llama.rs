//! A Llama-architecture decoder (SmolLM2 and its kin) on candle's autograd,
//! with low-rank adapters (LoRA) on its linear layers: the generator's
//! fine-tuning.
//!
//! The base weights are read from the GGUF file llama.cpp runs (any of its
//! quantisations that candle dequantises), kept frozen in F32, and used in
//! GGUF's layout: the query and key rows are in the order llama.cpp's
//! rotary embedding expects (adjacent pairs), so an adapter trained here
//! applies to the same tensors in llama.cpp without any permutation.
//!
//! A frozen linear layer is a custom op whose backward pass computes the
//! gradient of its input only; candle's matmul would also compute the
//! weight's gradient, a third of the work, only to throw it away.

use crate::TrainError;
use candle_core::quantized::gguf_file;
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor, Var, D};
use std::path::{Path, PathBuf};

/// The linear layers of a block an adapter can sit on, by their GGUF names.
pub const TARGETS: [&str; 7] = [
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
];

/// The shape of a Llama model, from its GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaShape {
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub vocab: usize,
    pub rope_base: f32,
    pub eps: f64,
}

/// A linear layer whose weight does not train.
struct Frozen {
    /// `[out, in]`, as GGUF stores it.
    w: Tensor,
}

impl CustomOp1 for Frozen {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("frozen-linear: input not contiguous".into()))?;
        let data = match storage {
            CpuStorage::F32(v) => &v[start..end],
            _ => return Err(candle_core::Error::Msg("frozen-linear: F32 only".into())),
        };
        let x = Tensor::from_slice(data, layout.shape(), &Device::Cpu)?;
        let y = x.matmul(&self.w.t()?)?;
        let shape = y.shape().clone();
        Ok((CpuStorage::F32(y.flatten_all()?.to_vec1::<f32>()?), shape))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.w)?))
    }
}

/// A low-rank adapter on one linear layer: `y = W x + (alpha / r) B A x`,
/// with `A` `[r, in]` and `B` `[out, r]` (the shapes PEFT and llama.cpp's
/// LoRA GGUF use).
pub struct Lora {
    /// The GGUF tensor it adapts (`blk.N.attn_q.weight`).
    pub tensor: String,
    pub a: Var,
    pub b: Var,
}

struct Linear {
    frozen: Frozen,
    lora: Option<usize>,
}

struct Block {
    attn_norm: Tensor,
    ffn_norm: Tensor,
    /// In [`TARGETS`] order.
    linears: Vec<Linear>,
}

/// The model: frozen base weights and the adapters.
pub struct LlamaLora {
    pub shape: LlamaShape,
    pub arch: String,
    /// The base model file.
    pub base: PathBuf,
    embed: Tensor,
    blocks: Vec<Block>,
    norm: Tensor,
    head: Tensor,
    pub adapters: Vec<Lora>,
    pub rank: usize,
    pub alpha: f32,
}

fn bad(path: &Path, message: impl Into<String>) -> TrainError {
    TrainError::BadModel {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn meta_u(c: &gguf_file::Content, path: &Path, key: &str) -> Result<usize, TrainError> {
    c.metadata
        .get(key)
        .and_then(|v| {
            v.to_u32()
                .ok()
                .map(|x| x as usize)
                .or(v.to_u64().ok().map(|x| x as usize))
        })
        .ok_or_else(|| bad(path, format!("GGUF metadata has no `{key}`")))
}

fn meta_f(c: &gguf_file::Content, key: &str) -> Option<f32> {
    c.metadata.get(key).and_then(|v| v.to_f32().ok())
}

/// A GGUF file opened and its header read.
fn open_gguf(path: &Path) -> Result<(std::fs::File, gguf_file::Content), TrainError> {
    let mut f = std::fs::File::open(path).map_err(|source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let c = gguf_file::Content::read(&mut f)
        .map_err(|e| bad(path, format!("not a readable GGUF file ({e})")))?;
    Ok((f, c))
}

impl LlamaLora {
    /// Load `path` (a GGUF file of architecture `llama`) and put new
    /// adapters of rank `rank` on `targets` of the last `top` blocks (all
    /// of them when `top` is 0 or more than there are): `A` drawn from
    /// a normal of deviation 1/sqrt(in), `B` zero, so the adapted model
    /// starts as the base model.
    pub fn load(
        path: &Path,
        rank: usize,
        alpha: f32,
        targets: &[&str],
        top: usize,
        seed: u64,
    ) -> Result<LlamaLora, TrainError> {
        let (mut f, c) = open_gguf(path)?;
        let arch = c
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_default();
        if arch != "llama" {
            return Err(bad(
                path,
                format!(
                    "its architecture is `{arch}`; the generator can be fine-tuned on Llama-architecture models only (SmolLM2, Llama, TinyLlama and kin)"
                ),
            ));
        }
        for t in targets {
            if !TARGETS.contains(t) {
                return Err(TrainError::Options {
                    field: "targets",
                    message: format!("`{t}` is not one of {}", TARGETS.join(", ")),
                });
            }
        }
        let dev = Device::Cpu;
        let mut get = |name: &str| -> Result<Tensor, TrainError> {
            let q = c
                .tensor(&mut f, name, &dev)
                .map_err(|e| bad(path, format!("tensor `{name}`: {e}")))?;
            q.dequantize(&dev)
                .and_then(|t| t.to_dtype(DType::F32))
                .map_err(|e| bad(path, format!("tensor `{name}` cannot be dequantised: {e}")))
        };
        let layers = meta_u(&c, path, "llama.block_count")?;
        let hidden = meta_u(&c, path, "llama.embedding_length")?;
        let heads = meta_u(&c, path, "llama.attention.head_count")?;
        let kv_heads = meta_u(&c, path, "llama.attention.head_count_kv").unwrap_or(heads);
        let rope_base = meta_f(&c, "llama.rope.freq_base").unwrap_or(10_000.0);
        let eps = meta_f(&c, "llama.attention.layer_norm_rms_epsilon").unwrap_or(1e-5) as f64;
        if heads == 0 || hidden % heads != 0 || kv_heads == 0 || heads % kv_heads != 0 {
            return Err(bad(path, format!("{heads} heads, {kv_heads} key/value heads and width {hidden} do not fit together")));
        }
        let embed = get("token_embd.weight")?;
        let vocab = embed.dims()[0];
        let head = if c.tensor_infos.contains_key("output.weight") {
            get("output.weight")?
        } else {
            embed.clone()
        };
        let norm = get("output_norm.weight")?;
        let mut rng = crate::SplitMix(seed ^ 0x6c6f7261);
        let mut adapters = Vec::new();
        let mut blocks = Vec::with_capacity(layers);
        let first_adapted = if top == 0 {
            0
        } else {
            layers.saturating_sub(top)
        };
        for i in 0..layers {
            let mut linears = Vec::with_capacity(TARGETS.len());
            for t in TARGETS {
                let name = format!("blk.{i}.{t}.weight");
                let w = get(&name)?;
                let lora = if targets.contains(&t) && rank > 0 && i >= first_adapted {
                    let (out, inp) = w.dims2().map_err(TrainError::compute)?;
                    let std = 1.0 / (inp as f32).sqrt();
                    let a: Vec<f32> = (0..rank * inp).map(|_| rng.normal() * std).collect();
                    let a = Var::from_vec(a, (rank, inp), &dev).map_err(TrainError::compute)?;
                    let b =
                        Var::zeros((out, rank), DType::F32, &dev).map_err(TrainError::compute)?;
                    adapters.push(Lora { tensor: name, a, b });
                    Some(adapters.len() - 1)
                } else {
                    None
                };
                linears.push(Linear {
                    frozen: Frozen { w },
                    lora,
                });
            }
            blocks.push(Block {
                attn_norm: get(&format!("blk.{i}.attn_norm.weight"))?,
                ffn_norm: get(&format!("blk.{i}.ffn_norm.weight"))?,
                linears,
            });
        }
        Ok(LlamaLora {
            shape: LlamaShape {
                layers,
                hidden,
                heads,
                kv_heads,
                head_dim: hidden / heads,
                vocab,
                rope_base,
                eps,
            },
            arch,
            base: path.to_path_buf(),
            embed,
            blocks,
            norm,
            head,
            adapters,
            rank,
            alpha,
        })
    }

    /// The trainable tensors.
    pub fn vars(&self) -> Vec<Var> {
        self.adapters
            .iter()
            .flat_map(|l| [l.a.clone(), l.b.clone()])
            .collect()
    }

    fn linear(&self, l: &Linear, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = x.contiguous()?;
        let y = x.apply_op1(Frozen {
            w: l.frozen.w.clone(),
        })?;
        match l.lora {
            None => Ok(y),
            Some(i) => {
                let a = &self.adapters[i];
                let scale = (self.alpha / self.rank as f32) as f64;
                let low = x
                    .matmul(&a.a.as_tensor().t()?)?
                    .matmul(&a.b.as_tensor().t()?)?;
                y + (low * scale)?
            }
        }
    }

    fn rms(&self, x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
        let inv = (x.sqr()?.mean_keepdim(D::Minus1)? + self.shape.eps)?
            .sqrt()?
            .recip()?;
        x.broadcast_mul(&inv)?.broadcast_mul(w)
    }

    /// Rotary embedding on `[heads, T, head_dim]`, llama.cpp's "normal"
    /// mode: dimensions (2i, 2i+1) turn by `pos * base^(-2i/d)`.
    fn rope(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
        let (h, t, d) = x.dims3()?;
        let x = x.reshape((h, t, d / 2, 2))?;
        let x0 = x.narrow(3, 0, 1)?.squeeze(3)?;
        let x1 = x.narrow(3, 1, 1)?.squeeze(3)?;
        let r0 = (x0.broadcast_mul(cos)? - x1.broadcast_mul(sin)?)?;
        let r1 = (x0.broadcast_mul(sin)? + x1.broadcast_mul(cos)?)?;
        Tensor::stack(&[r0, r1], 3)?.reshape((h, t, d))
    }

    /// The index of the first block with an adapter (the blocks before it
    /// are frozen: their output does not change while training).
    pub fn first_adapted(&self) -> usize {
        self.blocks
            .iter()
            .position(|b| b.linears.iter().any(|l| l.lora.is_some()))
            .unwrap_or(self.blocks.len())
    }

    /// The hidden states of `tokens` (one sequence) after the frozen blocks
    /// before the first adapted one, `[T, hidden]`: computed once per
    /// example, they serve every epoch.
    pub fn prefix(&self, tokens: &[u32]) -> candle_core::Result<Tensor> {
        let ids = Tensor::from_slice(tokens, tokens.len(), &Device::Cpu)?;
        let x = self.embed.index_select(&ids, 0)?;
        self.blocks_from(x, 0, self.first_adapted())
    }

    /// The final hidden states of `tokens` (one sequence), `[T, hidden]`.
    pub fn hidden(&self, tokens: &[u32]) -> candle_core::Result<Tensor> {
        let first = self.first_adapted();
        let x = self.prefix(tokens)?;
        self.finish(x, first)
    }

    /// Blocks `from..` and the final norm on `x`.
    fn finish(&self, x: Tensor, from: usize) -> candle_core::Result<Tensor> {
        let x = self.blocks_from(x, from, self.blocks.len())?;
        self.rms(&x, &self.norm)
    }

    /// Blocks `from..to` on the hidden states `x` (`[T, hidden]`).
    fn blocks_from(&self, mut x: Tensor, from: usize, to: usize) -> candle_core::Result<Tensor> {
        let s = &self.shape;
        let dev = Device::Cpu;
        let t = x.dims()[0];
        if from >= to {
            return Ok(x);
        }
        let half = s.head_dim / 2;
        let inv: Vec<f32> = (0..half)
            .map(|i| 1.0 / s.rope_base.powf(2.0 * i as f32 / s.head_dim as f32))
            .collect();
        let ang: Vec<f32> = (0..t)
            .flat_map(|p| inv.iter().map(move |f| p as f32 * f))
            .collect();
        let ang = Tensor::from_vec(ang, (t, half), &dev)?;
        let (cos, sin) = (ang.cos()?, ang.sin()?);
        let mask: Vec<f32> = (0..t)
            .flat_map(|i| (0..t).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
            .collect();
        let mask = Tensor::from_vec(mask, (t, t), &dev)?;
        let group = s.heads / s.kv_heads;
        let scale = 1.0 / (s.head_dim as f64).sqrt();
        for b in &self.blocks[from..to] {
            let h = self.rms(&x, &b.attn_norm)?;
            let q = self.linear(&b.linears[0], &h)?;
            let k = self.linear(&b.linears[1], &h)?;
            let v = self.linear(&b.linears[2], &h)?;
            let q = q
                .reshape((t, s.heads, s.head_dim))?
                .transpose(0, 1)?
                .contiguous()?;
            let k = k
                .reshape((t, s.kv_heads, s.head_dim))?
                .transpose(0, 1)?
                .contiguous()?;
            let v = v
                .reshape((t, s.kv_heads, s.head_dim))?
                .transpose(0, 1)?
                .contiguous()?;
            let q = self.rope(&q, &cos, &sin)?;
            let k = self.rope(&k, &cos, &sin)?;
            // Query head i reads key/value head i / group (ggml's broadcast).
            let expand = |z: Tensor| -> candle_core::Result<Tensor> {
                if group == 1 {
                    return Ok(z);
                }
                z.unsqueeze(1)?
                    .broadcast_as((s.kv_heads, group, t, s.head_dim))?
                    .contiguous()?
                    .reshape((s.heads, t, s.head_dim))
            };
            let (k, v) = (expand(k)?, expand(v)?);
            let att = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&mask)?;
            let max = att.max_keepdim(D::Minus1)?.detach();
            let e = att.broadcast_sub(&max)?.exp()?;
            let p = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
            let o = p
                .matmul(&v)?
                .transpose(0, 1)?
                .contiguous()?
                .reshape((t, s.hidden))?;
            x = (x + self.linear(&b.linears[3], &o)?)?;
            let h = self.rms(&x, &b.ffn_norm)?;
            let g = self.linear(&b.linears[4], &h)?.silu()?;
            let u = self.linear(&b.linears[5], &h)?;
            x = (x + self.linear(&b.linears[6], &(g * u)?)?)?;
        }
        Ok(x)
    }

    /// Logits of the rows `rows` of `hidden`: `[rows, vocab]`.
    pub fn logits(&self, hidden: &Tensor, from: usize, n: usize) -> candle_core::Result<Tensor> {
        hidden.narrow(0, from, n)?.matmul(&self.head.t()?)
    }

    /// Mean negative log-likelihood of `tokens[answer..]`, each predicted
    /// from the tokens before it (the prompt's tokens are context only).
    pub fn loss(&self, tokens: &[u32], answer: usize) -> candle_core::Result<Tensor> {
        self.loss_after(&self.prefix(tokens)?, tokens, answer)
    }

    /// [`loss`](Self::loss) from the example's [`prefix`](Self::prefix).
    pub fn loss_after(
        &self,
        prefix: &Tensor,
        tokens: &[u32],
        answer: usize,
    ) -> candle_core::Result<Tensor> {
        let t = tokens.len();
        if answer == 0 || answer >= t {
            candle_core::bail!("the answer must start after the first token and before the end");
        }
        let h = self.finish(prefix.clone(), self.first_adapted())?;
        let n = t - answer;
        let logits = self.logits(&h, answer - 1, n)?;
        let max = logits.max_keepdim(D::Minus1)?.detach();
        let lse = (logits
            .broadcast_sub(&max)?
            .exp()?
            .sum_keepdim(D::Minus1)?
            .log()?
            + &max)?;
        let ids = Tensor::from_slice(&tokens[answer..], (n, 1), &Device::Cpu)?;
        let picked = logits.gather(&ids, 1)?;
        (lse - picked)?.mean_all()
    }

    /// Greedy continuation of `tokens` by `n` tokens (no cache: for checks
    /// against llama.cpp, not for serving).
    pub fn greedy(&self, tokens: &[u32], n: usize) -> candle_core::Result<Vec<u32>> {
        let mut seq = tokens.to_vec();
        for _ in 0..n {
            let h = self.hidden(&seq)?;
            let l = self.logits(&h, seq.len() - 1, 1)?;
            let next = l.flatten_all()?.argmax(0)?.to_scalar::<u32>()?;
            seq.push(next);
        }
        Ok(seq[tokens.len()..].to_vec())
    }

    /// Write the adapters as a llama.cpp LoRA adapter (GGUF:
    /// `general.type = adapter`, `adapter.type = lora`,
    /// `adapter.lora.alpha`, tensors `<name>.lora_a` `[r, in]` and
    /// `<name>.lora_b` `[out, r]`), with `extra` metadata strings.
    pub fn save_gguf(&self, path: &Path, extra: &[(&str, String)]) -> Result<(), TrainError> {
        use candle_core::quantized::{GgmlDType, QTensor};
        use gguf_file::Value;
        let io = |source| TrainError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut tensors: Vec<(String, QTensor)> = Vec::new();
        for l in &self.adapters {
            let stem = l.tensor.trim_end_matches(".weight");
            for (suffix, v) in [("lora_a", &l.a), ("lora_b", &l.b)] {
                let q = QTensor::quantize(v.as_tensor(), GgmlDType::F32)
                    .map_err(TrainError::compute)?;
                tensors.push((format!("{stem}.weight.{suffix}"), q));
            }
        }
        let mut meta: Vec<(String, Value)> = vec![
            ("general.type".into(), Value::String("adapter".into())),
            (
                "general.architecture".into(),
                Value::String(self.arch.clone()),
            ),
            ("adapter.type".into(), Value::String("lora".into())),
            ("adapter.lora.alpha".into(), Value::F32(self.alpha)),
        ];
        for (k, v) in extra {
            meta.push(((*k).to_string(), Value::String(v.clone())));
        }
        let tmp = path.with_extension("gguf.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let tensor_refs: Vec<(&str, &QTensor)> =
            tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        gguf_file::write(&mut f, &meta_refs, &tensor_refs).map_err(TrainError::compute)?;
        f.sync_all().map_err(io)?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(io)?;
        Ok(())
    }

    /// Load adapters saved by [`save_gguf`](Self::save_gguf) into this
    /// model's (same tensors and rank).
    pub fn load_adapters(&mut self, path: &Path) -> Result<(), TrainError> {
        let (mut f, c) = open_gguf(path)?;
        for l in &self.adapters {
            let stem = l.tensor.trim_end_matches(".weight");
            for (suffix, v) in [("lora_a", &l.a), ("lora_b", &l.b)] {
                let name = format!("{stem}.weight.{suffix}");
                let t = c
                    .tensor(&mut f, &name, &Device::Cpu)
                    .and_then(|q| q.dequantize(&Device::Cpu))
                    .map_err(|e| bad(path, format!("tensor `{name}`: {e}")))?;
                if t.dims() != v.dims() {
                    return Err(bad(
                        path,
                        format!("tensor `{name}` is {:?}, expected {:?}", t.dims(), v.dims()),
                    ));
                }
                v.set(&t).map_err(TrainError::compute)?;
            }
        }
        Ok(())
    }
}
