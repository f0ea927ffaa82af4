//! Generation: the [`Generator`] boundary and its two implementations, plus
//! the pieces of retrieval-augmented answering that do not depend on a model:
//! prompt building ([`prompt`]) and citation parsing ([`citations`]).
//!
//! - [`llama::LlamaGenerator`] (feature `llama`, on by default) runs a GGUF
//!   model in process through llama.cpp (`llama-cpp-2`).
//! - [`openai::OpenAiGenerator`] talks to any OpenAI-compatible server
//!   (`max serve`, vLLM, llama.cpp's server, Ollama) over
//!   `/v1/chat/completions` with SSE streaming.
//!
//! Both stream text pieces into a [`TokenSink`], which can stop generation
//! (Ctrl-C, a client that hung up) by returning [`Flow::Stop`].

pub mod citations;
pub mod gguf;
pub mod judge;
#[cfg(feature = "llama")]
pub mod llama;
pub mod openai;
pub mod prompt;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Errors of generation, each naming the model file, server or field at fault.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("{path}: {reason}")]
    BadModel { path: PathBuf, reason: String },
    #[error("{path}: unsupported model architecture `{arch}` ({reason})")]
    UnsupportedArch {
        path: PathBuf,
        arch: String,
        reason: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the prompt is {prompt} tokens but the context window is {window} tokens with {reserved} reserved for the answer; ask a shorter question or raise the context size")]
    PromptTooLong {
        prompt: usize,
        window: usize,
        reserved: usize,
    },
    #[error("generation failed: {0}")]
    Inference(String),
    #[error("cannot reach the LLM server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the LLM server at {url} answered {status}: {body}")]
    Http {
        url: String,
        status: u16,
        body: String,
    },
    #[error("the LLM server at {url} sent a malformed response: {reason}")]
    Protocol { url: String, reason: String },
    #[error("{0} (this build of Cairn was not compiled with the `{1}` feature)")]
    NotCompiled(String, &'static str),
    #[error("invalid generation setting `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The generator cannot do what was asked (a server that returns no
    /// log-probabilities cannot judge); the message names what to change.
    #[error("{0}")]
    Unsupported(String),
}

pub type Result<T, E = GenerateError> = std::result::Result<T, E>;

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn system(s: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::System,
            content: s.into(),
        }
    }
    pub fn user(s: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::User,
            content: s.into(),
        }
    }
    pub fn assistant(s: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::Assistant,
            content: s.into(),
        }
    }
}

/// Sampling settings. `temperature == 0` means greedy decoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u32,
    pub max_tokens: u32,
    /// Generation ends before any of these strings; they are not emitted.
    pub stop: Vec<String>,
    /// Penalty on tokens among the last 64 generated (1 = off). Small models
    /// decoding greedily loop without it. Applied by the embedded engine;
    /// servers use their own settings.
    pub repeat_penalty: f32,
    /// A GBNF grammar the output must follow (the embedded engine; see
    /// [`Generator::supports_grammar`]). `None`: free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grammar: Option<String>,
    /// A LoRA adapter (GGUF, as `cairn train generator` writes it) applied
    /// to the model for this generation: the embedded engine loads it once
    /// and again when the file changes; servers ignore it.
    #[serde(skip)]
    pub adapter: Option<std::path::PathBuf>,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 0.0,
            top_p: 0.95,
            seed: 42,
            max_tokens: 512,
            stop: vec![],
            repeat_penalty: 1.1,
            grammar: None,
            adapter: None,
        }
    }
}

impl Sampling {
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(GenerateError::Invalid {
                field: "temperature",
                reason: format!("must be ≥ 0, got {}", self.temperature),
            });
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(GenerateError::Invalid {
                field: "top_p",
                reason: format!("must be in (0, 1], got {}", self.top_p),
            });
        }
        if !(self.repeat_penalty > 0.0 && self.repeat_penalty.is_finite()) {
            return Err(GenerateError::Invalid {
                field: "repeat_penalty",
                reason: format!("must be > 0 (1 = off), got {}", self.repeat_penalty),
            });
        }
        if self.max_tokens == 0 {
            return Err(GenerateError::Invalid {
                field: "max_tokens",
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// Whether generation should go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// Receives generated text as it is produced.
pub trait TokenSink {
    fn piece(&mut self, text: &str) -> Flow;
    /// What was streamed so far is withdrawn: a new answer follows (a check
    /// found it unsupported and it is generated again). `why` says why, in
    /// a few words for the user.
    fn restart(&mut self, why: &str) {
        let _ = why;
    }
}

impl<F: FnMut(&str) -> Flow> TokenSink for F {
    fn piece(&mut self, text: &str) -> Flow {
        self(text)
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// The model ended its turn or hit a stop sequence.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The sink asked to stop (Ctrl-C, client gone).
    Cancelled,
}

/// The outcome of one generation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generation {
    pub text: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub finish: Finish,
    /// Milliseconds from the call to the first emitted piece.
    pub first_token_ms: Option<f64>,
    pub total_ms: f64,
}

/// The generation boundary: a conversation in, streamed text out.
pub trait Generator: Send + Sync {
    /// The model's name as reported to users (`--json`'s `model`).
    fn model_name(&self) -> &str;
    /// Tokens the prompt and the answer must share.
    fn context_window(&self) -> usize;
    /// Tokens `text` takes (exact for embedded models, an upper estimate for
    /// remote ones).
    fn count_tokens(&self, text: &str) -> Result<usize>;
    /// Generate the assistant's next message.
    fn generate(
        &self,
        messages: &[ChatMessage],
        sampling: &Sampling,
        sink: &mut dyn TokenSink,
    ) -> Result<Generation>;
    /// Whether [`Sampling::grammar`] is enforced (the embedded engine);
    /// others ignore it, and callers report that it was not used.
    fn supports_grammar(&self) -> bool {
        false
    }
    /// The log-probability that the assistant's reply to `messages` starts
    /// with each of `options` (single words such as "Yes" and "No"): the
    /// generator as a judge ([`judge::GeneratorCritic`]). Generators that
    /// cannot expose token probabilities say so with
    /// [`GenerateError::Unsupported`].
    fn judge(&self, messages: &[ChatMessage], options: &[&str]) -> Result<Vec<f32>> {
        let _ = (messages, options);
        Err(GenerateError::Unsupported(format!(
            "the generator `{}` cannot judge (it exposes no token probabilities); set critic.kind = \"embedding\"",
            self.model_name()
        )))
    }
    /// [`Generator::judge`] for many prompts at once (the embedded engine
    /// reuses the evaluation of their shared prefixes).
    fn judge_many(&self, prompts: &[Vec<ChatMessage>], options: &[&str]) -> Result<Vec<Vec<f32>>> {
        prompts.iter().map(|m| self.judge(m, options)).collect()
    }
}

/// Holds back text that might be the start of a stop sequence, so that stop
/// strings are never emitted, even when they arrive split across pieces.
#[derive(Debug, Default)]
pub struct StopScanner {
    stops: Vec<String>,
    pending: String,
    emitted: String,
}

/// What [`StopScanner::push`] decided.
#[derive(Debug, PartialEq, Eq)]
pub struct Scan {
    /// Text safe to emit now.
    pub emit: String,
    /// A stop sequence was found; nothing after it may be emitted.
    pub stopped: bool,
}

impl StopScanner {
    pub fn new(stops: &[String]) -> Self {
        StopScanner {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            ..Default::default()
        }
    }

    /// Feed a piece; get the text that can be emitted.
    pub fn push(&mut self, piece: &str) -> Scan {
        self.pending.push_str(piece);
        if let Some(pos) = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min()
        {
            let emit = self.pending[..pos].to_string();
            self.pending.clear();
            self.emitted.push_str(&emit);
            return Scan {
                emit,
                stopped: true,
            };
        }
        // Keep the longest suffix of `pending` that is a prefix of a stop.
        let mut keep = 0;
        for s in &self.stops {
            for (i, _) in self.pending.char_indices() {
                let tail = &self.pending[i..];
                if tail.len() > keep && s.starts_with(tail) {
                    keep = tail.len();
                }
            }
        }
        let cut = self.pending.len() - keep;
        let emit = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        self.emitted.push_str(&emit);
        Scan {
            emit,
            stopped: false,
        }
    }

    /// The held-back text once the stream has ended without a stop.
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        self.emitted.push_str(&rest);
        rest
    }

    /// Everything emitted so far.
    pub fn emitted(&self) -> &str {
        &self.emitted
    }
}

/// Wall-clock milliseconds since `t`.
pub(crate) fn ms_since(t: std::time::Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_split_across_pieces_is_never_emitted() {
        let mut s = StopScanner::new(&["<|im_end|>".to_string()]);
        let mut out = String::new();
        for p in ["The answer", " is 42.<|im", "_end|> trailing"] {
            let r = s.push(p);
            out.push_str(&r.emit);
            if r.stopped {
                break;
            }
        }
        assert_eq!(out, "The answer is 42.");
    }

    #[test]
    fn held_back_prefix_is_released_when_it_is_not_a_stop() {
        let mut s = StopScanner::new(&["\n\nQuestion:".to_string()]);
        let a = s.push("one\n\n");
        assert_eq!(a.emit, "one");
        let b = s.push("two");
        assert_eq!(b.emit, "\n\ntwo");
        assert!(!b.stopped);
        assert_eq!(s.finish(), "");
        assert_eq!(s.emitted(), "one\n\ntwo");
    }

    #[test]
    fn no_stops_passes_everything_through() {
        let mut s = StopScanner::new(&[]);
        assert_eq!(s.push("abc").emit, "abc");
        assert_eq!(s.finish(), "");
    }

    #[test]
    fn sampling_validation_names_the_field() {
        let bad = Sampling {
            top_p: 0.0,
            ..Sampling::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("top_p"));
        let bad = Sampling {
            temperature: -1.0,
            ..Sampling::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("temperature"));
    }
}
