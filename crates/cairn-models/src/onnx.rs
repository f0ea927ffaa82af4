//! A BERT-family sentence encoder on ONNX Runtime (cargo feature `ort`).
//!
//! ONNX Runtime is loaded at run time (`ort`'s `load-dynamic`), so building
//! Cairn downloads nothing: the library comes from `cairn models fetch
//! onnxruntime` (pip's `onnxruntime` wheel), `--ort-dylib`, or
//! `ORT_DYLIB_PATH`. The model directory is the same sentence-transformers
//! directory the candle backend reads (tokenizer, pooling, window length);
//! the graph is `onnx/model.onnx` or `model.onnx` in it, or any `.onnx` file
//! given explicitly (for example an int8-quantised export). Graphs that output
//! token vectors (`last_hidden_state`, `[batch, seq, dim]`) are pooled here as
//! the model's pooling config says; graphs that already output one vector per
//! input (`[batch, dim]`) are only normalised.
//!
//! Execution providers: CPU always; Apple's Neural Engine through Core ML with
//! the `coreml` feature.

use crate::bert::{pad_batch, pool_and_normalize, sentence_encoder, TextSide};
use crate::{Device, ModelError, Pooling, SentenceConfig};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// How to run an ONNX embedding model.
#[derive(Debug, Clone, Default)]
pub struct OnnxOptions {
    /// The `.onnx` graph; `None` looks for `onnx/model.onnx`, then `model.onnx`.
    pub onnx_file: Option<PathBuf>,
    /// `libonnxruntime.so` / `.dylib`; `None` uses `ORT_DYLIB_PATH`.
    pub dylib: Option<PathBuf>,
    /// Intra-op threads; 0 lets ONNX Runtime use every core.
    pub threads: usize,
    /// Inputs per forward pass.
    pub batch_size: usize,
}

/// The ONNX Runtime library once loaded: one per process.
static RUNTIME: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// Load ONNX Runtime from `dylib` (or `ORT_DYLIB_PATH`) once per process.
pub fn init_runtime(dylib: Option<&Path>) -> Result<PathBuf, ModelError> {
    let result = RUNTIME.get_or_init(|| {
        let path = match dylib
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from))
        {
            Some(p) => p,
            None => {
                return Err(
                    "no ONNX Runtime library: run `cairn models fetch onnxruntime`, or set \
                            embed.onnxruntime / ORT_DYLIB_PATH to libonnxruntime"
                        .to_string(),
                )
            }
        };
        if !path.is_file() {
            return Err(format!(
                "ONNX Runtime library {} does not exist",
                path.display()
            ));
        }
        // `ort` panics inside `init_from` on a library it cannot load or whose
        // API is too old; turn that into an error naming the file.
        let p = path.clone();
        let committed = std::panic::catch_unwind(move || {
            ort::init_from(p.to_string_lossy().to_string())
                .with_name("cairn")
                .commit()
        });
        match committed {
            Ok(Ok(_)) => Ok(path),
            Ok(Err(e)) => Err(format!("{}: {e}", path.display())),
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "could not be loaded".into());
                Err(format!("{}: {msg}", path.display()))
            }
        }
    });
    match result {
        Ok(p) => {
            if let Some(wanted) = dylib {
                if wanted != p {
                    tracing::warn!(loaded = %p.display(), wanted = %wanted.display(), "ONNX Runtime is already loaded from another file; using it");
                }
            }
            Ok(p.clone())
        }
        Err(message) => Err(ModelError::Runtime(message.clone())),
    }
}

/// A sentence encoder running an ONNX graph.
///
/// Two lanes, by the caller's priority ([`cairn_core::priority`]): threads
/// at the priority of the thread that loaded the model (queries, the
/// critic, a command-line ingest) share the session made while loading;
/// threads running lowered (a server's background ingestion) get a session
/// of their own, made on their first call, so its intra-op thread pool
/// inherits their lowered priority and a query never waits behind a batch
/// of passages. A process that never embeds in the background holds one
/// session.
pub struct OnnxEmbedder {
    foreground: Mutex<Session>,
    /// The nice value of the thread that loaded the model.
    foreground_nice: i32,
    background: Mutex<Option<Session>>,
    device: Device,
    opts: OnnxOptions,
    inputs: Vec<String>,
    text: TextSide,
    dim: usize,
    onnx_file: PathBuf,
}

impl std::fmt::Debug for OnnxEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxEmbedder")
            .field("onnx_file", &self.onnx_file)
            .field("config", &self.text.config)
            .finish()
    }
}

fn bad(path: &Path, message: impl std::fmt::Display) -> ModelError {
    ModelError::BadModel {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// A session builder for `onnx_file` with ONNX Runtime loaded (from
/// `opts.dylib`), full graph optimisation, one inter-op thread and
/// `opts.threads` intra-op threads (0: ONNX Runtime's choice).
pub(crate) fn session_builder(
    opts: &OnnxOptions,
    onnx_file: &Path,
) -> Result<ort::session::builder::SessionBuilder, ModelError> {
    init_runtime(opts.dylib.as_deref())?;
    let ort_err = |e: ort::Error| bad(onnx_file, e);
    let mut builder = Session::builder()
        .map_err(ort_err)?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(ort_err)?
        .with_inter_threads(1)
        .map_err(ort_err)?;
    if opts.threads > 0 {
        builder = builder.with_intra_threads(opts.threads).map_err(ort_err)?;
    }
    Ok(builder)
}

/// The input names of a BERT graph, checked: `input_ids`, and optionally
/// `attention_mask` and `token_type_ids`, nothing else (`what` names the
/// model in the error).
pub(crate) fn bert_inputs(
    session: &ort::session::Session,
    onnx_file: &Path,
    what: &str,
) -> Result<Vec<String>, ModelError> {
    let inputs: Vec<String> = session.inputs.iter().map(|i| i.name.clone()).collect();
    for name in &inputs {
        if !matches!(
            name.as_str(),
            "input_ids" | "attention_mask" | "token_type_ids"
        ) {
            return Err(bad(
                onnx_file,
                format!("unexpected graph input `{name}` ({what} takes input_ids, attention_mask, token_type_ids)"),
            ));
        }
    }
    if !inputs.iter().any(|i| i == "input_ids") {
        return Err(bad(onnx_file, "the graph has no `input_ids` input"));
    }
    Ok(inputs)
}

pub use crate::onnx_export::find_onnx;

/// A session for `onnx_file` on `device` (cpu, or coreml with its feature).
pub(crate) fn new_session(
    opts: &OnnxOptions,
    device: Device,
    onnx_file: &Path,
) -> Result<Session, ModelError> {
    let builder = session_builder(opts, onnx_file)?;
    let builder = match device {
        Device::Cpu | Device::Auto => builder,
        Device::CoreMl => coreml(builder, onnx_file)?,
        other => {
            return Err(ModelError::DeviceUnavailable(format!(
                "{other} for ONNX Runtime (it runs on cpu, or coreml with the `coreml` feature); embedding models run on GPUs with the candle backend"
            )))
        }
    };
    builder
        .commit_from_file(onnx_file)
        .map_err(|e| bad(onnx_file, e))
}

impl OnnxEmbedder {
    /// Load the model in `dir` (tokenizer and sentence-transformers files)
    /// with the graph `opts.onnx_file` on `device`.
    pub fn load(
        dir: &Path,
        device: Device,
        opts: &OnnxOptions,
    ) -> Result<OnnxEmbedder, ModelError> {
        let onnx_file = match &opts.onnx_file {
            Some(f) => f.clone(),
            None => find_onnx(dir).ok_or_else(|| {
                bad(
                    dir,
                    "no ONNX graph (looked for onnx/model.onnx and model.onnx); give embed.onnx_file",
                )
            })?,
        };
        if !onnx_file.is_file() {
            return Err(bad(&onnx_file, "no such ONNX file"));
        }
        let cfg_path = dir.join("config.json");
        let cfg: serde_json::Value = match std::fs::read(&cfg_path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| bad(&cfg_path, e))?,
            Err(source) => {
                return Err(ModelError::Io {
                    path: cfg_path,
                    source,
                })
            }
        };
        let dim = cfg["hidden_size"]
            .as_u64()
            .ok_or_else(|| bad(&cfg_path, "no hidden_size"))? as usize;
        let max_position = cfg["max_position_embeddings"].as_u64().unwrap_or(512) as usize;
        let config = SentenceConfig::read(dir, max_position)?;
        let session = new_session(opts, device, &onnx_file)?;
        let inputs = bert_inputs(&session, &onnx_file, "a BERT encoder")?;
        // The same id as the candle backend for the same weights in fp32, so a
        // collection can switch backends; a quantised graph is another model.
        let file_tag = onnx_file
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let variant = if file_tag == "model" {
            String::new()
        } else {
            format!("|{file_tag}")
        };
        Ok(OnnxEmbedder {
            foreground: Mutex::new(session),
            foreground_nice: cairn_core::priority::current_nice(),
            background: Mutex::new(None),
            device,
            opts: opts.clone(),
            inputs,
            text: TextSide::load(dir, config, opts.batch_size, &variant)?,
            dim,
            onnx_file,
        })
    }

    /// The graph file in use.
    pub fn onnx_file(&self) -> &Path {
        &self.onnx_file
    }

    /// Embed texts in length-sorted batches; results in input order.
    pub fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        self.text.embed(texts, |batch| self.forward(batch))
    }

    /// Whether the background lane's session exists (it holds a second copy
    /// of the weights).
    pub fn has_background_session(&self) -> bool {
        self.background
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Token vectors of `texts` for late interaction (see
    /// [`cairn_core::Embedder::embed_tokens`]): each text cut at
    /// `max_tokens` tokens (special tokens counted, at most the window),
    /// all of them in one forward pass of the session `embed` uses, the
    /// graph's last hidden states with `[CLS]`/`[SEP]` (the tokenizer's
    /// special tokens) left out, each row scaled to unit length. A graph
    /// that outputs pooled vectors has no token vectors: an error.
    pub fn token_vectors(
        &self,
        texts: &[String],
        max_tokens: usize,
    ) -> Result<Vec<cairn_core::TokenVectors>, ModelError> {
        if texts.is_empty() {
            return Ok(vec![]);
        }
        let encodings = self.text.encode_cut(texts, max_tokens)?;
        let batch: Vec<&tokenizers::Encoding> = encodings.iter().collect();
        let dim = self.dim;
        self.run(&batch, |dims, data, n, len, _mask| match dims {
            [b, s, d] if *b as usize == n && *s as usize == len && *d as usize == dim => Ok(batch
                .iter()
                .enumerate()
                .map(|(i, enc)| {
                    let special = enc.get_special_tokens_mask();
                    let mut rows = Vec::with_capacity(enc.get_ids().len() * dim);
                    for (t, &sp) in special.iter().enumerate() {
                        if sp == 0 {
                            let at = (i * len + t) * dim;
                            rows.extend_from_slice(&data[at..at + dim]);
                        }
                    }
                    cairn_core::TokenVectors::normalized(dim, rows)
                })
                .collect()),
            other => Err(ModelError::Inference(format!(
                "{}: first output has shape {other:?}; late interaction needs token vectors \
                 (last_hidden_state, [{n}, {len}, {dim}]), not pooled ones",
                self.onnx_file.display(),
            ))),
        })
    }

    fn forward(&self, batch: Vec<&tokenizers::Encoding>) -> Result<Vec<Vec<f32>>, ModelError> {
        let dim = self.dim;
        self.run(&batch, |dims, data, n, len, mask| match dims {
            [b, s, d] if *b as usize == n && *s as usize == len && *d as usize == dim => {
                let mask_f: Vec<f32> = mask.iter().map(|&m| m as f32).collect();
                Ok(pool_and_normalize(
                    data,
                    &mask_f,
                    n,
                    len,
                    dim,
                    self.text.config.pooling,
                    self.text.config.normalize,
                ))
            }
            [b, d] if *b as usize == n && *d as usize == dim => Ok(pool_and_normalize(
                data,
                &vec![1.0; n],
                n,
                1,
                dim,
                Pooling::Cls,
                self.text.config.normalize,
            )),
            other => Err(ModelError::Inference(format!(
                "{}: first output has shape {other:?}, expected [{n}, {len}, {dim}] or [{n}, {dim}]",
                self.onnx_file.display(),
            ))),
        })
    }

    /// One forward pass over `batch` (right-padded) on the caller's lane's
    /// session; `read` gets the first output's shape and data, the batch
    /// size, the padded length and the attention mask.
    fn run<T>(
        &self,
        batch: &[&tokenizers::Encoding],
        read: impl FnOnce(&[i64], &[f32], usize, usize, &[i64]) -> Result<T, ModelError>,
    ) -> Result<T, ModelError> {
        let e = |err: ort::Error| ModelError::Inference(err.to_string());
        let (n, len, ids, mask) = pad_batch(batch);
        let ids: Vec<i64> = ids.into_iter().map(i64::from).collect();
        let mask: Vec<i64> = mask.into_iter().map(i64::from).collect();
        let shape = [n, len];
        let mut values: Vec<(&str, ort::session::SessionInputValue<'_>)> = vec![];
        for name in &self.inputs {
            let data = match name.as_str() {
                "input_ids" => ids.clone(),
                "attention_mask" => mask.clone(),
                _ => vec![0i64; n * len],
            };
            values.push((
                name.as_str(),
                Tensor::from_array((shape, data)).map_err(e)?.into(),
            ));
        }
        let mut foreground;
        let mut background;
        let session: &mut Session = if cairn_core::priority::current_nice() > self.foreground_nice {
            background = self.background.lock().unwrap_or_else(|p| p.into_inner());
            if background.is_none() {
                tracing::debug!(file = %self.onnx_file.display(), "an ONNX Runtime session for background work");
                *background = Some(new_session(&self.opts, self.device, &self.onnx_file)?);
            }
            background.as_mut().expect("made above")
        } else {
            foreground = self.foreground.lock().unwrap_or_else(|p| p.into_inner());
            &mut foreground
        };
        let outputs = session.run(values).map_err(e)?;
        let (out_shape, data) = outputs[0].try_extract_tensor::<f32>().map_err(e)?;
        let dims: Vec<i64> = out_shape.iter().copied().collect();
        read(&dims, data, n, len, &mask)
    }
}

#[cfg(feature = "coreml")]
fn coreml(
    b: ort::session::builder::SessionBuilder,
    onnx_file: &Path,
) -> Result<ort::session::builder::SessionBuilder, ModelError> {
    b.with_execution_providers(
        [ort::execution_providers::CoreMLExecutionProvider::default()
            .build()
            .error_on_failure()],
    )
    .map_err(|e| bad(onnx_file, e))
}

#[cfg(not(feature = "coreml"))]
fn coreml(
    _b: ort::session::builder::SessionBuilder,
    _onnx_file: &Path,
) -> Result<ort::session::builder::SessionBuilder, ModelError> {
    Err(ModelError::NotCompiled {
        backend: "Core ML",
        feature: "coreml",
    })
}

sentence_encoder!(OnnxEmbedder, "onnx", tokens: token_vectors);
