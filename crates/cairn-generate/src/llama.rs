//! The embedded GGUF engine: llama.cpp in process, through `llama-cpp-2`.
//!
//! The chat template comes from the GGUF metadata (`tokenizer.chat_template`,
//! applied by llama.cpp's built-in template engine: ChatML, Gemma, Llama 3 and
//! others); a model without one gets a plain "User:/Assistant:" transcript.
//! One generation runs at a time per model; each gets a fresh context.

use crate::gguf::{self, GgufInfo};
use crate::judge::log_sum_exp;
use crate::{
    ms_since, ChatMessage, Finish, Flow, GenerateError, Generation, Generator, Result, Sampling,
    StopScanner, TokenSink,
};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaLoraAdapter, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, RwLock, RwLockReadGuard};
use std::time::Instant;
use std::time::SystemTime;

/// Where the model's layers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offload {
    Cpu,
    /// NVIDIA GPU `n` (feature `cuda`).
    Cuda(i32),
    /// Apple GPU (feature `metal`).
    Metal,
}

impl Offload {
    /// Parse a device name: `cpu`, `cuda`, `cuda:N`, `metal`, or `auto` (the
    /// GPU backend compiled in, else the CPU). A backend that was not compiled
    /// in is an error naming its feature.
    pub fn parse(s: &str) -> Result<Offload> {
        let s = s.trim().to_ascii_lowercase();
        let (name, idx) = match s.split_once(':') {
            Some((n, i)) => (
                n.to_string(),
                Some(i.parse::<i32>().map_err(|_| GenerateError::Invalid {
                    field: "generate.device",
                    reason: format!("`{s}`: the device index must be a number"),
                })?),
            ),
            None => (s.clone(), None),
        };
        match name.as_str() {
            "cpu" => Ok(Offload::Cpu),
            "auto" => Ok(if cfg!(feature = "cuda") {
                Offload::Cuda(0)
            } else if cfg!(feature = "metal") {
                Offload::Metal
            } else {
                Offload::Cpu
            }),
            "cuda" if cfg!(feature = "cuda") => Ok(Offload::Cuda(idx.unwrap_or(0))),
            "cuda" => Err(GenerateError::NotCompiled(
                "generation device `cuda` requested".into(),
                "cuda",
            )),
            "metal" if cfg!(feature = "metal") => Ok(Offload::Metal),
            "metal" => Err(GenerateError::NotCompiled(
                "generation device `metal` requested".into(),
                "metal",
            )),
            "coreml" => Err(GenerateError::Invalid {
                field: "generate.device",
                reason: "Core ML runs embedding models only; generate on `cpu`, `metal` or `cuda`"
                    .into(),
            }),
            other => Err(GenerateError::Invalid {
                field: "generate.device",
                reason: format!("unknown device `{other}` (expected cpu, cuda[:N], metal or auto)"),
            }),
        }
    }
}

/// How to load and run a GGUF model.
#[derive(Debug, Clone)]
pub struct LlamaOptions {
    pub offload: Offload,
    /// Layers to put on the GPU; `None` means all of them when offloading.
    pub gpu_layers: Option<u32>,
    /// CPU threads; `None` means all cores.
    pub threads: Option<usize>,
    /// Context window in tokens; clipped to what the model was trained with.
    pub context: usize,
    /// Prompt tokens decoded per batch.
    pub batch: u32,
}

impl Default for LlamaOptions {
    fn default() -> Self {
        LlamaOptions {
            offload: Offload::Cpu,
            gpu_layers: None,
            threads: None,
            context: 4096,
            batch: 512,
        }
    }
}

fn backend() -> Result<&'static LlamaBackend> {
    static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            // llama.cpp logs through tracing (target `llama-cpp-2`), not stderr.
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| GenerateError::Inference(format!("cannot start llama.cpp: {e}")))
}

/// A LoRA adapter as loaded: the file's modification time and length
/// then, and the adapter.
type LoadedAdapter = (Option<SystemTime>, u64, LlamaLoraAdapter);

/// A GGUF model loaded by llama.cpp.
pub struct LlamaGenerator {
    /// Written only to load a LoRA adapter (llama.cpp's call takes the
    /// model mutably); everything else reads.
    model: RwLock<LlamaModel>,
    /// LoRA adapters loaded for generations, by file, with the file's
    /// modification time and length when loaded.
    adapters: Mutex<HashMap<PathBuf, LoadedAdapter>>,
    template: Option<LlamaChatTemplate>,
    info: GgufInfo,
    name: String,
    path: PathBuf,
    n_ctx: u32,
    threads: i32,
    batch: u32,
    /// One generation at a time: the CPU (or GPU) is the bottleneck anyway.
    busy: Mutex<()>,
}

impl std::fmt::Debug for LlamaGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaGenerator")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("n_ctx", &self.n_ctx)
            .finish()
    }
}

impl LlamaGenerator {
    /// Load a GGUF model file. The header is checked first so that a file
    /// that is not GGUF, is truncated, or names an architecture llama.cpp
    /// does not know gets an error that says so.
    pub fn load(path: &Path, opts: &LlamaOptions) -> Result<LlamaGenerator> {
        if path.is_dir() {
            return Err(GenerateError::BadModel {
                path: path.to_path_buf(),
                reason: "is a directory; give the path of a .gguf file".into(),
            });
        }
        let info = gguf::read_info(path)?;
        let arch = info.architecture().unwrap_or("").to_string();
        if arch.is_empty() {
            return Err(GenerateError::BadModel {
                path: path.to_path_buf(),
                reason: "GGUF metadata has no general.architecture".into(),
            });
        }
        if !gguf::LLAMA_CPP_ARCHITECTURES.contains(&arch.as_str()) {
            return Err(GenerateError::UnsupportedArch {
                path: path.to_path_buf(),
                arch,
                reason: "llama.cpp does not know it".into(),
            });
        }
        if info.tensors == 0 {
            return Err(GenerateError::BadModel {
                path: path.to_path_buf(),
                reason: "the GGUF file holds no tensors (a vocabulary-only file?)".into(),
            });
        }
        let backend = backend()?;
        let gpu_layers = match opts.offload {
            Offload::Cpu => 0,
            _ => opts.gpu_layers.unwrap_or(u32::MAX),
        };
        let mut mparams = LlamaModelParams::default().with_n_gpu_layers(gpu_layers);
        if let Offload::Cuda(dev) = opts.offload {
            mparams = mparams.with_main_gpu(dev);
        }
        let model = LlamaModel::load_from_file(backend, path, &mparams).map_err(|e| {
            GenerateError::BadModel {
                path: path.to_path_buf(),
                reason: format!(
                    "llama.cpp could not load this `{arch}` model ({e}); the file may be truncated or corrupt"
                ),
            }
        })?;
        let template = model.chat_template(None).ok();
        let trained = model.n_ctx_train().max(1) as usize;
        let n_ctx = opts.context.clamp(256, trained.max(256)).min(trained) as u32;
        let threads = opts
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(4, |n| n.get()))
            .max(1) as i32;
        // The file name says which model and quantisation; `general.name`
        // is often a training-run label.
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .or_else(|| info.name().map(str::to_string))
            .unwrap_or_default();
        tracing::info!(model = %name, arch = %arch, n_ctx, threads, gpu_layers, "loaded GGUF model");
        Ok(LlamaGenerator {
            model: RwLock::new(model),
            adapters: Mutex::new(HashMap::new()),
            template,
            info,
            name,
            path: path.to_path_buf(),
            n_ctx,
            threads,
            batch: opts.batch.max(32),
            busy: Mutex::new(()),
        })
    }

    /// The GGUF file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The model's GGUF header.
    pub fn info(&self) -> &GgufInfo {
        &self.info
    }

    /// Whether the file carries a chat template llama.cpp applies.
    pub fn has_chat_template(&self) -> bool {
        self.template.is_some()
    }

    /// The exact text the model is given for `messages`.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String> {
        if let Some(t) = &self.template {
            let chat: Vec<LlamaChatMessage> = messages
                .iter()
                .map(|m| LlamaChatMessage::new(m.role.as_str().into(), m.content.clone()))
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| GenerateError::Invalid {
                    field: "messages",
                    reason: format!("a message holds a NUL byte ({e})"),
                })?;
            match self.m().apply_chat_template(t, &chat, true) {
                Ok(s) => return Ok(s),
                Err(e) => tracing::warn!(
                    "{}: the chat template is not one llama.cpp can apply ({e}); using a plain transcript",
                    self.path.display()
                ),
            }
        }
        Ok(plain_transcript(messages))
    }

    fn m(&self) -> RwLockReadGuard<'_, LlamaModel> {
        self.model.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Tokens of `text` (with the model's BOS when it wants one).
    pub fn tokenize(&self, text: &str, add_special: bool) -> Vec<LlamaToken> {
        self.m()
            .vocab()
            .tokenize(text.as_bytes(), add_special, true)
    }

    /// [`tokenize`](Self::tokenize) as token ids.
    pub fn token_ids(&self, text: &str, add_special: bool) -> Vec<u32> {
        self.tokenize(text, add_special)
            .into_iter()
            .map(|t| t.0 as u32)
            .collect()
    }

    /// The text of token ids (special tokens as they are written).
    pub fn detokenize(&self, ids: &[u32]) -> String {
        let model = self.m();
        let vocab = model.vocab();
        let mut utf8 = Utf8Buf::default();
        let mut s = String::new();
        for &id in ids {
            s.push_str(&utf8.push(&vocab.token_to_piece(LlamaToken::new(id as i32), true, None)));
        }
        s
    }

    /// The token that ends the model's turn (its end of generation).
    pub fn end_of_turn(&self) -> u32 {
        self.m().vocab().eos().0 as u32
    }

    /// Load the LoRA adapter at `path` (again when the file changed since),
    /// keeping it for later generations.
    fn ensure_adapter(&self, path: &Path) -> Result<()> {
        let meta = std::fs::metadata(path).map_err(|e| GenerateError::BadModel {
            path: path.to_path_buf(),
            reason: format!("cannot read the LoRA adapter ({e})"),
        })?;
        let stamp = (meta.modified().ok(), meta.len());
        let mut adapters = self.adapters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((m, len, _)) = adapters.get(path) {
            if (*m, *len) == stamp {
                return Ok(());
            }
        }
        let mut model = self.model.write().unwrap_or_else(|p| p.into_inner());
        let adapter = model
            .lora_adapter_init(path)
            .map_err(|e| GenerateError::BadModel {
                path: path.to_path_buf(),
                reason: format!(
                    "llama.cpp cannot load this LoRA adapter for {} ({e}): it is corrupt, or was trained for another model; train it again or remove it",
                    self.name
                ),
            })?;
        tracing::info!(path = %path.display(), model = %self.name, "LoRA adapter loaded");
        // (llama.cpp frees adapters with their model; a replaced one stays
        // allocated until then: a few MB per reload.)
        adapters.insert(path.to_path_buf(), (stamp.0, stamp.1, adapter));
        Ok(())
    }

    /// Prompt processing and decoding speed on synthetic tokens, as
    /// llama-bench measures them: `(prompt tok/s, decode tok/s)`.
    pub fn bench(&self, n_prompt: usize, n_gen: usize) -> Result<(f64, f64)> {
        let _g = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let model = self.m();
        let mut ctx = self.context(&model, (n_prompt + n_gen + 8) as u32)?;
        let vocab = model.vocab();
        let bos = vocab.bos();
        let n_vocab = vocab.n_tokens().max(2);
        // llama-bench feeds BOS then random tokens; the values do not matter.
        let tokens: Vec<LlamaToken> = std::iter::once(bos)
            .chain((1..n_prompt).map(|i| LlamaToken::new(((i * 7919) % n_vocab as usize) as i32)))
            .collect();
        let t = Instant::now();
        self.decode_prompt(&mut ctx, &tokens)?;
        let pp = n_prompt as f64 / t.elapsed().as_secs_f64();
        // Like llama-bench's tg test, decoding starts from an empty context
        // (after one warm-up token), not after the prompt above.
        drop(ctx);
        let mut ctx = self.context(&model, (n_gen + 8) as u32)?;
        let mut batch = LlamaBatch::new(1, 1);
        let mut step = |ctx: &mut llama_cpp_2::context::LlamaContext<'_>, pos: usize| {
            batch.clear();
            batch
                .add(bos, pos as i32, &[0], true)
                .map_err(|e| GenerateError::Inference(e.to_string()))?;
            ctx.decode(&mut batch)
                .map_err(|e| GenerateError::Inference(format!("decode failed: {e}")))
        };
        step(&mut ctx, 0)?;
        drop(ctx);
        let mut ctx = self.context(&model, (n_gen + 8) as u32)?;
        let t = Instant::now();
        for i in 0..n_gen {
            step(&mut ctx, i)?;
        }
        let tg = n_gen as f64 / t.elapsed().as_secs_f64();
        Ok((pp, tg))
    }

    fn context<'a>(
        &self,
        model: &'a LlamaModel,
        n_ctx: u32,
    ) -> Result<llama_cpp_2::context::LlamaContext<'a>> {
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx.max(64)))
            .with_n_batch(self.batch)
            .with_n_ubatch(self.batch)
            .with_n_threads(self.threads)
            .with_n_threads_batch(self.threads);
        model.new_context(backend()?, params).map_err(|e| {
            GenerateError::Inference(format!("cannot create a llama.cpp context: {e}"))
        })
    }

    fn decode_prompt(
        &self,
        ctx: &mut llama_cpp_2::context::LlamaContext<'_>,
        tokens: &[LlamaToken],
    ) -> Result<()> {
        self.decode_from(ctx, tokens, 0)
    }

    /// Decode `tokens` at positions `start..`, after what the context holds
    /// at `0..start`; logits for the last one.
    fn decode_from(
        &self,
        ctx: &mut llama_cpp_2::context::LlamaContext<'_>,
        tokens: &[LlamaToken],
        start: usize,
    ) -> Result<()> {
        let n_batch = self.batch as usize;
        let mut batch = LlamaBatch::new(n_batch, 1);
        for (c, chunk) in tokens.chunks(n_batch).enumerate() {
            batch.clear();
            let last_chunk = (c + 1) * n_batch >= tokens.len();
            for (i, &tok) in chunk.iter().enumerate() {
                let pos = (start + c * n_batch + i) as i32;
                let logits = last_chunk && i == chunk.len() - 1;
                batch
                    .add(tok, pos, &[0], logits)
                    .map_err(|e| GenerateError::Inference(e.to_string()))?;
            }
            ctx.decode(&mut batch)
                .map_err(|e| GenerateError::Inference(format!("prompt decode failed: {e}")))?;
        }
        Ok(())
    }
}

/// A transcript for models without a chat template (base models).
fn plain_transcript(messages: &[ChatMessage]) -> String {
    let mut s = String::new();
    for m in messages {
        let who = match m.role {
            crate::Role::System => "Instructions",
            crate::Role::User => "User",
            crate::Role::Assistant => "Assistant",
        };
        s.push_str(&format!("{who}: {}\n\n", m.content.trim()));
    }
    s.push_str("Assistant:");
    s
}

/// Turns token bytes into text, holding back an incomplete UTF-8 sequence
/// until the rest of it arrives.
#[derive(Default)]
struct Utf8Buf(Vec<u8>);

impl Utf8Buf {
    fn push(&mut self, bytes: &[u8]) -> String {
        self.0.extend_from_slice(bytes);
        match std::str::from_utf8(&self.0) {
            Ok(s) => {
                let s = s.to_string();
                self.0.clear();
                s
            }
            Err(e) if e.error_len().is_none() => {
                // An incomplete sequence at the end: emit what is valid.
                let valid = e.valid_up_to();
                let s = String::from_utf8_lossy(&self.0[..valid]).into_owned();
                self.0.drain(..valid);
                s
            }
            Err(_) => {
                let s = String::from_utf8_lossy(&self.0).into_owned();
                self.0.clear();
                s
            }
        }
    }
}

impl Generator for LlamaGenerator {
    fn model_name(&self) -> &str {
        &self.name
    }

    fn context_window(&self) -> usize {
        self.n_ctx as usize
    }

    fn count_tokens(&self, text: &str) -> Result<usize> {
        Ok(self.tokenize(text, false).len())
    }

    fn generate(
        &self,
        messages: &[ChatMessage],
        sampling: &Sampling,
        sink: &mut dyn TokenSink,
    ) -> Result<Generation> {
        sampling.validate()?;
        let start = Instant::now();
        let _g = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let prompt = self.render(messages)?;
        let tokens = self.tokenize(&prompt, true);
        tracing::debug!(tokens = tokens.len(), "prompt:\n{prompt}");
        let window = self.n_ctx as usize;
        if tokens.len() + 1 >= window {
            return Err(GenerateError::PromptTooLong {
                prompt: tokens.len(),
                window,
                reserved: 1,
            });
        }
        let max_new = (sampling.max_tokens as usize).min(window - tokens.len());
        if let Some(path) = &sampling.adapter {
            self.ensure_adapter(path)?;
        }
        let model = self.m();
        let mut ctx = self.context(&model, self.n_ctx)?;
        if let Some(path) = &sampling.adapter {
            let mut adapters = self.adapters.lock().unwrap_or_else(|p| p.into_inner());
            let (.., adapter) = adapters
                .get_mut(path)
                .expect("ensure_adapter loaded it under the busy lock");
            ctx.lora_adapter_set(adapter, 1.0).map_err(|e| {
                GenerateError::Inference(format!(
                    "cannot apply the LoRA adapter {}: {e}",
                    path.display()
                ))
            })?;
        }
        self.decode_prompt(&mut ctx, &tokens)?;

        let penalties =
            LlamaSampler::penalties(model.n_vocab(), 64, sampling.repeat_penalty, 0.0, 0.0);
        // A grammar is checked on the token the chain picks, and only when
        // it rejects that token is it applied to the whole vocabulary (as
        // llama.cpp's own sampler does): checking every token at every step
        // made a constrained answer several times slower.
        let mut grammar = match sampling.grammar.as_deref() {
            Some(g) => Some(LlamaSampler::grammar(&model, g, "root").map_err(|e| {
                GenerateError::Invalid {
                    field: "grammar",
                    reason: format!("llama.cpp cannot parse the GBNF grammar ({e})"),
                }
            })?),
            None => None,
        };
        let mut chain = vec![penalties];
        if sampling.temperature <= 0.0 {
            chain.push(LlamaSampler::greedy());
        } else {
            chain.extend([
                LlamaSampler::top_p(sampling.top_p, 1),
                LlamaSampler::temp(sampling.temperature),
                LlamaSampler::dist(sampling.seed),
            ]);
        }
        let mut sampler = LlamaSampler::chain_simple(chain);
        let vocab = model.vocab();
        let mut stops = StopScanner::new(&sampling.stop);
        let mut utf8 = Utf8Buf::default();
        let mut batch = LlamaBatch::new(1, 1);
        let mut first_token_ms = None;
        let mut completion = 0usize;
        let mut finish = Finish::Length;
        let mut pos = tokens.len() as i32;
        'gen: while completion < max_new {
            let tok = match grammar.as_mut() {
                None => sampler.sample(&ctx, -1),
                Some(g) => sample_constrained(&ctx, &mut sampler, g)?,
            };
            if first_token_ms.is_none() {
                first_token_ms = Some(ms_since(start));
            }
            if vocab.is_eog(tok) {
                finish = Finish::Stop;
                break;
            }
            completion += 1;
            let piece = utf8.push(&vocab.token_to_piece(tok, false, None));
            if !piece.is_empty() {
                let scan = stops.push(&piece);
                if !scan.emit.is_empty() && sink.piece(&scan.emit) == Flow::Stop {
                    finish = Finish::Cancelled;
                    break 'gen;
                }
                if scan.stopped {
                    finish = Finish::Stop;
                    break;
                }
            }
            batch.clear();
            batch
                .add(tok, pos, &[0], true)
                .map_err(|e| GenerateError::Inference(e.to_string()))?;
            pos += 1;
            ctx.decode(&mut batch)
                .map_err(|e| GenerateError::Inference(format!("decode failed: {e}")))?;
        }
        if finish != Finish::Cancelled {
            let rest = stops.finish();
            if !rest.is_empty() {
                sink.piece(&rest);
            }
        }
        Ok(Generation {
            text: stops.emitted().to_string(),
            prompt_tokens: tokens.len(),
            completion_tokens: completion,
            finish,
            first_token_ms,
            total_ms: ms_since(start),
        })
    }

    fn supports_grammar(&self) -> bool {
        true
    }

    /// The next-token distribution after the rendered prompt, read from the
    /// logits: each option's log-probability is that of its first token,
    /// summed over the spellings a reply can start with ("Yes", " Yes",
    /// "yes").
    fn judge(&self, messages: &[ChatMessage], options: &[&str]) -> Result<Vec<f32>> {
        let mut all = self.judge_many(&[messages.to_vec()], options)?;
        Ok(all.pop().unwrap_or_default())
    }

    /// Many judgements in one context: the prompts are taken in token
    /// order, and each one reuses the KV cache of the longest prefix it
    /// shares with the one before (the system prompt always; the passage
    /// too when several claims are checked against one passage), so only
    /// the rest is evaluated.
    fn judge_many(&self, prompts: &[Vec<ChatMessage>], options: &[&str]) -> Result<Vec<Vec<f32>>> {
        if prompts.is_empty() {
            return Ok(vec![]);
        }
        let _g = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let model = self.m();
        let vocab = model.vocab();
        // The first tokens of each option's spellings.
        let mut firsts: Vec<Vec<LlamaToken>> = Vec::with_capacity(options.len());
        for option in options {
            let mut f: Vec<LlamaToken> = Vec::new();
            for spelling in judge_spellings(option) {
                if let Some(&t) = vocab.tokenize(spelling.as_bytes(), false, false).first() {
                    if !f.contains(&t) {
                        f.push(t);
                    }
                }
            }
            if f.is_empty() {
                return Err(GenerateError::Invalid {
                    field: "options",
                    reason: format!("`{option}` has no tokens"),
                });
            }
            firsts.push(f);
        }
        let window = self.n_ctx as usize;
        let mut tokenized = Vec::with_capacity(prompts.len());
        for messages in prompts {
            let tokens = self.tokenize(&self.render(messages)?, true);
            if tokens.len() + 1 >= window {
                return Err(GenerateError::PromptTooLong {
                    prompt: tokens.len(),
                    window,
                    reserved: 1,
                });
            }
            tokenized.push(tokens);
        }
        let mut order: Vec<usize> = (0..prompts.len()).collect();
        order.sort_by(|&a, &b| tokenized[a].cmp(&tokenized[b]));
        let longest = tokenized.iter().map(Vec::len).max().unwrap_or(0);
        // A context just large enough: creating it is a fixed cost per call.
        let mut ctx = self.context(&model, (longest + 8) as u32)?;
        let mut held: &[LlamaToken] = &[];
        let mut out = vec![Vec::new(); prompts.len()];
        for i in order {
            let tokens = &tokenized[i];
            let mut common = tokens.iter().zip(held).take_while(|(a, b)| a == b).count();
            // The last token is always decoded again: its logits are the
            // judgement.
            common = common.min(tokens.len() - 1);
            if common < held.len() {
                ctx.clear_kv_cache_seq(Some(0), Some(common as u32), None)
                    .map_err(|e| GenerateError::Inference(format!("KV cache: {e}")))?;
            }
            self.decode_from(&mut ctx, &tokens[common..], common)?;
            held = tokens;
            let logits = ctx.get_logits_ith(-1);
            let norm = log_sum_exp(logits);
            out[i] = firsts
                .iter()
                .map(|f| {
                    let lp: Vec<f32> = f.iter().map(|t| logits[t.0 as usize] - norm).collect();
                    log_sum_exp(&lp)
                })
                .collect();
        }
        Ok(out)
    }
}

/// One token from `chain` that `grammar` allows: the chain's own choice
/// when the grammar accepts it, else its choice among the tokens the
/// grammar allows. Both samplers then accept the token.
fn sample_constrained(
    ctx: &llama_cpp_2::context::LlamaContext<'_>,
    chain: &mut LlamaSampler,
    grammar: &mut LlamaSampler,
) -> Result<LlamaToken> {
    let logits = ctx.get_logits_ith(-1);
    let all = || {
        LlamaTokenDataArray::from_iter(
            logits
                .iter()
                .enumerate()
                .map(|(i, &l)| LlamaTokenData::new(LlamaToken(i as i32), l, 0.0)),
            false,
        )
    };
    let none = || GenerateError::Inference("the sampler chose no token".into());
    let mut cands = all();
    chain.apply(&mut cands);
    let mut tok = cands.selected_token().ok_or_else(none)?;
    let mut one = LlamaTokenDataArray::from_iter([LlamaTokenData::new(tok, 0.0, 0.0)], false);
    grammar.apply(&mut one);
    if !one.data[0].logit().is_finite() {
        let mut cands = all();
        grammar.apply(&mut cands);
        chain.apply(&mut cands);
        tok = cands.selected_token().ok_or_else(none)?;
    }
    chain.accept(tok);
    grammar.accept(tok);
    Ok(tok)
}

/// The spellings a one-word reply can start with.
fn judge_spellings(option: &str) -> Vec<String> {
    let lower = option.to_lowercase();
    let mut cap = lower.clone();
    if let Some(f) = cap.get_mut(0..1) {
        f.make_ascii_uppercase();
    }
    let mut v = Vec::new();
    for w in [option.to_string(), cap, lower] {
        for s in [w.clone(), format!(" {w}")] {
            if !v.contains(&s) {
                v.push(s);
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_tokens_is_reassembled() {
        let mut b = Utf8Buf::default();
        let bytes = "é".as_bytes();
        assert_eq!(b.push(&bytes[..1]), "");
        assert_eq!(b.push(&bytes[1..]), "é");
        assert_eq!(b.push(b"ok"), "ok");
    }

    #[test]
    fn devices_not_compiled_in_name_their_feature() {
        assert_eq!(Offload::parse("cpu").unwrap(), Offload::Cpu);
        if !cfg!(feature = "cuda") {
            let e = Offload::parse("cuda:1").unwrap_err().to_string();
            assert!(e.contains("`cuda` feature"), "{e}");
        }
        if !cfg!(feature = "metal") {
            let e = Offload::parse("metal").unwrap_err().to_string();
            assert!(e.contains("`metal` feature"), "{e}");
        }
        assert!(Offload::parse("tpu").is_err());
        assert!(Offload::parse("cuda:x").is_err());
    }

    #[test]
    fn plain_transcript_ends_with_the_assistant_turn() {
        let t = plain_transcript(&[ChatMessage::system("be brief"), ChatMessage::user("hi")]);
        assert!(t.starts_with("Instructions: be brief"));
        assert!(t.ends_with("User: hi\n\nAssistant:"));
    }
}
