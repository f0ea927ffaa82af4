//! [`OpenAiGenerator`]: a [`Generator`] backed by any OpenAI-compatible server
//! (`max serve`, vLLM, llama.cpp's `llama-server`, Ollama, the OpenAI API)
//! through `POST /v1/chat/completions` with server-sent-event streaming.
//!
//! ```no_run
//! use cairn_generate::openai::{OpenAiConfig, OpenAiGenerator};
//! use cairn_generate::{ChatMessage, Flow, Generator, Sampling};
//!
//! let llm = OpenAiGenerator::new(OpenAiConfig {
//!     base_url: "http://127.0.0.1:8080".into(),
//!     model: "qwen2.5-1.5b-instruct".into(),
//!     ..OpenAiConfig::default()
//! })?;
//! let mut print = |piece: &str| {
//!     print!("{piece}");
//!     Flow::Continue
//! };
//! let answer = llm.generate(&[ChatMessage::user("Hi!")], &Sampling::default(), &mut print)?;
//! println!("\n[{:?}, {} tokens]", answer.finish, answer.completion_tokens);
//! # Ok::<_, cairn_generate::GenerateError>(())
//! ```
//!
//! Failure policy:
//!
//! - A request that never reached the server (connection refused, DNS, connect
//!   timeout, a connection dropped before the answer began) and answers 5xx or
//!   429 are retried with capped exponential backoff, `max_retries` times, and
//!   then reported as [`GenerateError::Unreachable`] / [`GenerateError::Http`].
//!   A retry happens only while nothing has reached the sink.
//! - Other 4xx answers are not retried: [`GenerateError::Http`] carries the
//!   server's own message (`{"error":{"message":..}}`).
//! - A server that stays silent for `read_timeout` (before the answer or in the
//!   middle of the stream) is reported as [`GenerateError::Unreachable`]
//!   ("no data for N s") and not retried: it has the request and is busy, and a
//!   second copy would only queue behind the first.
//! - Anything that does not parse as the protocol is
//!   [`GenerateError::Protocol`] with an excerpt of the offending text; an error
//!   object sent in place of a completion is [`GenerateError::Inference`].
//!
//! Stop sequences are sent to the server (the first four, the most the OpenAI
//! API accepts) and also enforced here with a [`StopScanner`], so a stop string
//! never reaches the sink even from a server that ignores `stop`.

use crate::{
    ms_since, ChatMessage, Finish, Flow, GenerateError, Generation, Generator, Result, Sampling,
    StopScanner, TokenSink,
};
use serde_json::{json, Value};
use std::io::{self, BufRead, BufReader, Read};
use std::time::{Duration, Instant};

/// Longest backoff between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// Longest `Retry-After` we honour.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// Most bytes of an error body read and quoted.
const MAX_ERROR_BODY: u64 = 64 * 1024;
/// Characters of an error body kept in [`GenerateError::Http`].
const ERROR_EXCERPT_CHARS: usize = 500;
/// Characters of a malformed line quoted in [`GenerateError::Protocol`].
const PROTOCOL_EXCERPT_CHARS: usize = 120;
/// Longest SSE line accepted.
const MAX_SSE_LINE: usize = 1 << 20;
/// Largest non-streamed JSON completion accepted.
const MAX_JSON_BODY: u64 = 16 << 20;
/// The OpenAI API rejects more than four stop sequences.
const MAX_SERVER_STOPS: usize = 4;
/// Tokens of per-message framing (role markers) in the prompt estimate.
const TOKENS_PER_MESSAGE: usize = 4;
/// Alternatives asked for when the server judges (OpenAI allows up to 20).
const JUDGE_TOP_LOGPROBS: u32 = 20;

/// How to reach an OpenAI-compatible server.
#[derive(Clone)]
pub struct OpenAiConfig {
    /// `http(s)://host:port`, with or without a trailing `/v1`; requests go
    /// to `{base}/v1/chat/completions`.
    pub base_url: String,
    /// The `model` sent with each request and reported by
    /// [`Generator::model_name`].
    pub model: String,
    /// Sent as `Authorization: Bearer <key>` when set and non-empty.
    pub api_key: Option<String>,
    /// Tokens the prompt and the answer share (the server's context size).
    pub context_window: usize,
    /// Longest wait to resolve the host and open the connection.
    pub connect_timeout: Duration,
    /// Longest silence: the wait for the answer to begin, and between any two
    /// reads of it.
    pub read_timeout: Duration,
    /// Retries after the first attempt for connection failures, 5xx and 429.
    pub max_retries: u32,
    /// First backoff; it doubles with each retry, up to 8 s.
    pub backoff_base: Duration,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            base_url: "http://127.0.0.1:8080".into(),
            model: String::new(),
            api_key: None,
            context_window: 8192,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(120),
            max_retries: 3,
            backoff_base: Duration::from_millis(250),
        }
    }
}

impl std::fmt::Debug for OpenAiConfig {
    /// Like a derived `Debug`, without the API key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("context_window", &self.context_window)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("max_retries", &self.max_retries)
            .field("backoff_base", &self.backoff_base)
            .finish()
    }
}

/// A [`Generator`] that streams from an OpenAI-compatible HTTP server.
#[derive(Debug)]
pub struct OpenAiGenerator {
    cfg: OpenAiConfig,
    chat_url: String,
    models_url: String,
    agent: ureq::Agent,
}

impl OpenAiGenerator {
    /// Check the settings and prepare the HTTP client; connects to nothing.
    pub fn new(cfg: OpenAiConfig) -> Result<Self> {
        let base = normalize_base_url(&cfg.base_url)?;
        let chat_url = format!("{base}/v1/chat/completions");
        let models_url = format!("{base}/v1/models");
        let uri: ureq::http::Uri = chat_url.parse().map_err(|e| GenerateError::Invalid {
            field: "llm_url",
            reason: format!("{:?} is not a valid URL: {e}", cfg.base_url),
        })?;
        if cfg.context_window == 0 {
            return Err(invalid("context_window", "must be at least 1"));
        }
        if cfg.connect_timeout.is_zero() {
            return Err(invalid("connect_timeout", "must be more than 0 s"));
        }
        if cfg.read_timeout.is_zero() {
            return Err(invalid("read_timeout", "must be more than 0 s"));
        }
        if let Some(key) = &cfg.api_key {
            if key.chars().any(|c| c.is_control()) {
                return Err(invalid("llm_api_key", "contains control characters"));
            }
        }
        let mut builder = ureq::Agent::config_builder()
            .timeout_resolve(Some(cfg.connect_timeout))
            .timeout_connect(Some(cfg.connect_timeout))
            .timeout_recv_response(Some(cfg.read_timeout))
            .timeout_per_read(Some(cfg.read_timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")));
        if uri.host().is_some_and(is_loopback) {
            // A server on this machine is never behind the HTTP(S)_PROXY.
            builder = builder.proxy(None);
        }
        Ok(OpenAiGenerator {
            agent: ureq::Agent::new_with_config(builder.build()),
            cfg,
            chat_url,
            models_url,
        })
    }

    /// The settings this generator was made with.
    pub fn config(&self) -> &OpenAiConfig {
        &self.cfg
    }

    /// The chat-completions URL requests go to.
    pub fn endpoint(&self) -> &str {
        &self.chat_url
    }

    /// The model ids the server offers (`GET /v1/models`); a connectivity and
    /// authentication check. Retried like [`Generator::generate`].
    pub fn list_models(&self) -> Result<Vec<String>> {
        self.with_retries(|| self.list_models_once())
    }

    fn list_models_once(&self) -> Result<Vec<String>, Failure> {
        let url = &self.models_url;
        let mut req = self
            .agent
            .get(url.as_str())
            .header("accept", "application/json");
        if let Some(auth) = self.authorization() {
            req = req.header("authorization", auth);
        }
        let resp = req.call().map_err(|e| self.send_failure(url, e))?;
        let resp = self.check_status(url, resp)?;
        let mut body = Vec::new();
        resp.into_body()
            .into_reader()
            .take(MAX_JSON_BODY)
            .read_to_end(&mut body)
            .map_err(|e| self.read_failure(url, e, false))?;
        let value: Value = serde_json::from_slice(&body).map_err(|e| {
            Failure::fatal(protocol(
                url,
                format!(
                    "the model list is not JSON ({e}): {}",
                    excerpt(&String::from_utf8_lossy(&body), PROTOCOL_EXCERPT_CHARS)
                ),
            ))
        })?;
        let Some(data) = value.get("data").and_then(Value::as_array) else {
            return Err(Failure::fatal(protocol(
                url,
                format!(
                    "the model list has no `data` array: {}",
                    excerpt(&value.to_string(), PROTOCOL_EXCERPT_CHARS)
                ),
            )));
        };
        Ok(data
            .iter()
            .filter_map(|m| m.get("id").and_then(Value::as_str))
            .map(str::to_string)
            .collect())
    }

    /// Run `attempt` until it succeeds, fails for good, or the retries are
    /// spent.
    /// One non-streamed request for a one-token reply with its top
    /// log-probabilities; the body's `choices[0].logprobs`.
    fn judge_once(&self, body: &[u8]) -> Result<Value, Failure> {
        let url = &self.chat_url;
        let mut req = self
            .agent
            .post(url.as_str())
            .header("content-type", "application/json")
            .header("accept", "application/json");
        if let Some(auth) = self.authorization() {
            req = req.header("authorization", auth);
        }
        let resp = req.send(body).map_err(|e| self.send_failure(url, e))?;
        let resp = self.check_status(url, resp)?;
        let mut raw = Vec::new();
        resp.into_body()
            .into_reader()
            .take(MAX_JSON_BODY + 1)
            .read_to_end(&mut raw)
            .map_err(|e| self.read_failure(url, e, false))?;
        serde_json::from_slice(&raw).map_err(|e| {
            Failure::fatal(protocol(
                url,
                format!(
                    "the completion is not JSON ({e}): {}",
                    excerpt(&String::from_utf8_lossy(&raw), PROTOCOL_EXCERPT_CHARS)
                ),
            ))
        })
    }

    fn with_retries<T>(&self, mut attempt: impl FnMut() -> Result<T, Failure>) -> Result<T> {
        let mut retry = 0;
        loop {
            match attempt() {
                Ok(v) => return Ok(v),
                Err(f) if f.retry && retry < self.cfg.max_retries => {
                    let delay = f
                        .retry_after
                        .map(|d| d.min(MAX_RETRY_AFTER))
                        .unwrap_or_else(|| backoff(self.cfg.backoff_base, retry));
                    tracing::warn!(
                        "{} (retry {} of {} in {:?})",
                        f.error,
                        retry + 1,
                        self.cfg.max_retries,
                        delay
                    );
                    std::thread::sleep(delay);
                    retry += 1;
                }
                Err(f) => return Err(f.error),
            }
        }
    }

    fn authorization(&self) -> Option<String> {
        self.cfg
            .api_key
            .as_deref()
            .filter(|k| !k.is_empty())
            .map(|k| format!("Bearer {k}"))
    }

    fn request_body(&self, messages: &[ChatMessage], sampling: &Sampling) -> Value {
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
            .collect();
        let mut body = json!({
            "model": self.cfg.model,
            "messages": messages,
            "stream": true,
            "stream_options": {"include_usage": true},
            "temperature": json_f32(sampling.temperature),
            "top_p": json_f32(sampling.top_p),
            "seed": sampling.seed,
            "max_tokens": sampling.max_tokens,
        });
        let stops: Vec<&str> = sampling
            .stop
            .iter()
            .filter(|s| !s.is_empty())
            .take(MAX_SERVER_STOPS)
            .map(String::as_str)
            .collect();
        if !stops.is_empty() {
            body["stop"] = json!(stops);
        }
        body
    }

    /// One request: send, then read the stream (or the plain JSON answer).
    fn generate_once(
        &self,
        body: &[u8],
        sampling: &Sampling,
        prompt_estimate: usize,
        sink: &mut dyn TokenSink,
        t0: Instant,
    ) -> Result<Generation, Failure> {
        let url = &self.chat_url;
        let mut req = self
            .agent
            .post(url.as_str())
            .header("content-type", "application/json")
            .header("accept", "text/event-stream, application/json");
        if let Some(auth) = self.authorization() {
            req = req.header("authorization", auth);
        }
        let resp = req.send(body).map_err(|e| self.send_failure(url, e))?;
        let resp = self.check_status(url, resp)?;
        let json_mime = resp.body().mime_type() == Some("application/json");
        let mut reader = BufReader::new(resp.into_body().into_reader());
        let mut stream = Stream::new(&sampling.stop, t0);
        // A server that ignores `stream` answers with one JSON object; some do
        // so without the right content type.
        let is_json = json_mime || {
            let head = reader
                .fill_buf()
                .map_err(|e| self.read_failure(url, e, false))?;
            head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
        };
        let finish = if is_json {
            self.read_json(url, &mut reader, &mut stream, sink)?
        } else {
            self.read_sse(url, &mut reader, &mut stream, sink)?
        };
        // Dropping the reader before the end closes the connection, which
        // tells the server to stop generating.
        drop(reader);
        let text = stream.scanner.emitted().to_string();
        let (prompt_tokens, completion_tokens) = match stream.usage {
            Some(u) => (
                u.prompt_tokens.unwrap_or(prompt_estimate),
                u.completion_tokens
                    .unwrap_or_else(|| estimate_tokens(&text)),
            ),
            None => (prompt_estimate, estimate_tokens(&text)),
        };
        Ok(Generation {
            text,
            prompt_tokens,
            completion_tokens,
            finish,
            first_token_ms: stream.first_token_ms,
            total_ms: ms_since(t0),
        })
    }

    /// Read `data:` events until `[DONE]`, a local stop or a cancel.
    fn read_sse(
        &self,
        url: &str,
        reader: &mut impl BufRead,
        stream: &mut Stream,
        sink: &mut dyn TokenSink,
    ) -> Result<Finish, Failure> {
        let mut line = Vec::new();
        // Data lines of an event not yet dispatched (SSE allows an event to
        // span several `data:` lines, joined with '\n').
        let mut pending = String::new();
        loop {
            line.clear();
            let read = read_line_capped(reader, &mut line, MAX_SSE_LINE)
                .map_err(|e| self.read_failure(url, e, stream.emitted_any))?;
            let dispatch = match read {
                LineRead::TooLong => {
                    return Err(Failure::fatal(protocol(
                        url,
                        format!(
                            "an event-stream line is longer than {MAX_SSE_LINE} bytes: {}",
                            excerpt(&String::from_utf8_lossy(&line), PROTOCOL_EXCERPT_CHARS)
                        ),
                    )))
                }
                LineRead::Eof => {
                    if !pending.is_empty() {
                        let event = parse_event(&std::mem::take(&mut pending))
                            .map_err(|e| self.event_failure(url, e))?;
                        if let Some(end) = stream.on_event(event, sink) {
                            return Ok(end);
                        }
                    }
                    return match stream.finish_reason {
                        Some(finish) => Ok(stream.flush(finish, sink)),
                        None => Err(Failure::fatal(protocol(
                            url,
                            format!(
                                "the stream ended without `data: [DONE]` or a finish_reason \
                                 (after {} bytes of text)",
                                stream.scanner.emitted().len()
                            ),
                        ))),
                    };
                }
                LineRead::Line => {
                    let text = String::from_utf8_lossy(&line);
                    match parse_sse_line(&text) {
                        SseLine::Blank => (!pending.is_empty()).then(|| {
                            parse_event(&std::mem::take(&mut pending))
                                .map_err(|e| self.event_failure(url, e))
                        }),
                        SseLine::Ignored => None,
                        SseLine::Data(data) => {
                            // Servers send one JSON object per line: take it
                            // now rather than waiting for the blank line.
                            match pending.is_empty().then(|| parse_event(data)) {
                                Some(Ok(event)) => Some(Ok(event)),
                                Some(Err(EventError::Server(m))) => {
                                    Some(Err(self.event_failure(url, EventError::Server(m))))
                                }
                                _ => {
                                    if !pending.is_empty() {
                                        pending.push('\n');
                                    }
                                    pending.push_str(data);
                                    None
                                }
                            }
                        }
                    }
                }
            };
            if let Some(event) = dispatch {
                if let Some(end) = stream.on_event(event?, sink) {
                    return Ok(end);
                }
            }
        }
    }

    /// Read a non-streamed completion: one JSON object.
    fn read_json(
        &self,
        url: &str,
        reader: &mut impl BufRead,
        stream: &mut Stream,
        sink: &mut dyn TokenSink,
    ) -> Result<Finish, Failure> {
        let mut body = Vec::new();
        reader
            .take(MAX_JSON_BODY + 1)
            .read_to_end(&mut body)
            .map_err(|e| self.read_failure(url, e, false))?;
        if body.len() as u64 > MAX_JSON_BODY {
            return Err(Failure::fatal(protocol(
                url,
                format!("the completion is larger than {MAX_JSON_BODY} bytes"),
            )));
        }
        let value: Value = serde_json::from_slice(&body).map_err(|e| {
            self.event_failure(
                url,
                EventError::Malformed(format!(
                    "the completion is not JSON ({e}): {}",
                    excerpt(&String::from_utf8_lossy(&body), PROTOCOL_EXCERPT_CHARS)
                )),
            )
        })?;
        let chunk = parse_chunk(&value).map_err(|e| self.event_failure(url, e))?;
        if let Some(end) = stream.on_event(Event::Chunk(chunk), sink) {
            return Ok(end);
        }
        let finish = stream.finish_reason.unwrap_or(Finish::Stop);
        Ok(stream.flush(finish, sink))
    }

    /// Turn a non-2xx answer into a failure; pass a 2xx one through.
    fn check_status(
        &self,
        url: &str,
        resp: ureq::http::Response<ureq::Body>,
    ) -> Result<ureq::http::Response<ureq::Body>, Failure> {
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut raw = Vec::new();
        // A body that cannot be read in full is quoted as far as it got.
        let _ = resp
            .into_body()
            .into_reader()
            .take(MAX_ERROR_BODY)
            .read_to_end(&mut raw);
        let body = error_message(&String::from_utf8_lossy(&raw));
        Err(Failure {
            error: GenerateError::Http {
                url: url.to_string(),
                status,
                body,
            },
            retry: status >= 500 || status == 429,
            retry_after,
        })
    }

    /// A request that got no answer.
    fn send_failure(&self, url: &str, e: ureq::Error) -> Failure {
        use ureq::Timeout as T;
        let (reason, retry) = match e {
            ureq::Error::Timeout(T::Resolve | T::Connect) => (
                format!(
                    "could not connect within {}",
                    secs(self.cfg.connect_timeout)
                ),
                true,
            ),
            ureq::Error::Timeout(_) => (self.silence(), false),
            ureq::Error::HostNotFound => ("host not found".to_string(), true),
            ureq::Error::ConnectionFailed => ("connection failed".to_string(), true),
            // Refused, reset, DNS failure, closed before the answer: the
            // request was not (fully) taken, so sending it again is safe.
            ureq::Error::Io(e) => (e.to_string(), true),
            ureq::Error::Protocol(e) => {
                return Failure::fatal(protocol(url, format!("invalid HTTP: {e}")));
            }
            e => (e.to_string(), false),
        };
        let error = GenerateError::Unreachable {
            url: url.to_string(),
            reason,
        };
        Failure {
            error,
            retry,
            retry_after: None,
        }
    }

    /// A failure while reading the answer's body.
    fn read_failure(&self, url: &str, e: io::Error, emitted_any: bool) -> Failure {
        match ureq::Error::from(e) {
            ureq::Error::Timeout(_) => Failure::fatal(GenerateError::Unreachable {
                url: url.to_string(),
                reason: self.silence(),
            }),
            ureq::Error::Io(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                ) =>
            {
                Failure {
                    error: protocol(
                        url,
                        format!("the connection closed in the middle of the answer ({e})"),
                    ),
                    retry: !emitted_any,
                    retry_after: None,
                }
            }
            e => Failure::fatal(protocol(url, format!("reading the answer failed: {e}"))),
        }
    }

    fn event_failure(&self, url: &str, e: EventError) -> Failure {
        Failure::fatal(match e {
            EventError::Malformed(reason) => protocol(url, reason),
            EventError::Server(message) => {
                GenerateError::Inference(format!("the LLM server at {url} reported: {message}"))
            }
        })
    }

    fn silence(&self) -> String {
        format!("no data for {}", secs(self.cfg.read_timeout))
    }
}

impl Generator for OpenAiGenerator {
    fn model_name(&self) -> &str {
        &self.cfg.model
    }

    fn context_window(&self) -> usize {
        self.cfg.context_window
    }

    /// An upper estimate: no tokenizer is at hand for a remote model, so one
    /// token per 3 bytes of UTF-8 (real tokenizers average 3.5–4.5 bytes per
    /// token on English and code).
    fn count_tokens(&self, text: &str) -> Result<usize> {
        Ok(estimate_tokens(text))
    }

    fn generate(
        &self,
        messages: &[ChatMessage],
        sampling: &Sampling,
        sink: &mut dyn TokenSink,
    ) -> Result<Generation> {
        sampling.validate()?;
        let t0 = Instant::now();
        let body = serde_json::to_vec(&self.request_body(messages, sampling))
            .map_err(|e| GenerateError::Inference(format!("cannot encode the request: {e}")))?;
        let prompt_estimate = messages
            .iter()
            .map(|m| estimate_tokens(&m.content) + TOKENS_PER_MESSAGE)
            .sum();
        tracing::debug!(
            url = %self.chat_url,
            model = %self.cfg.model,
            messages = messages.len(),
            "chat completion"
        );
        self.with_retries(|| self.generate_once(&body, sampling, prompt_estimate, sink, t0))
    }

    /// A one-token completion with `logprobs` and `top_logprobs`: each
    /// option's probability is summed over the listed tokens that spell it
    /// (case and surrounding space aside). An option absent from the list is
    /// given the smallest listed log-probability (an upper bound). A server
    /// that returns no log-probabilities cannot judge, and says so.
    fn judge(&self, messages: &[ChatMessage], options: &[&str]) -> Result<Vec<f32>> {
        let msgs: Vec<Value> = messages
            .iter()
            .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
            .collect();
        let body = json!({
            "model": self.cfg.model,
            "messages": msgs,
            "stream": false,
            "temperature": 0,
            "max_tokens": 1,
            "logprobs": true,
            "top_logprobs": JUDGE_TOP_LOGPROBS,
        });
        let body = serde_json::to_vec(&body)
            .map_err(|e| GenerateError::Inference(format!("cannot encode the request: {e}")))?;
        let value = self.with_retries(|| self.judge_once(&body))?;
        let top = judge_top_logprobs(&value).ok_or_else(|| {
            GenerateError::Unsupported(format!(
                "the LLM server at {} returned no logprobs, so it cannot be the critic; use a server that returns them (llama.cpp's server, vLLM) or set critic.kind = \"embedding\"",
                self.chat_url
            ))
        })?;
        Ok(options_logprobs(&top, options))
    }
}

/// A failed attempt and whether another may follow.
struct Failure {
    error: GenerateError,
    retry: bool,
    retry_after: Option<Duration>,
}

impl Failure {
    fn fatal(error: GenerateError) -> Self {
        Failure {
            error,
            retry: false,
            retry_after: None,
        }
    }
}

/// The state of one streamed answer.
struct Stream {
    scanner: StopScanner,
    t0: Instant,
    first_token_ms: Option<f64>,
    emitted_any: bool,
    finish_reason: Option<Finish>,
    usage: Option<Usage>,
}

impl Stream {
    fn new(stops: &[String], t0: Instant) -> Self {
        Stream {
            scanner: StopScanner::new(stops),
            t0,
            first_token_ms: None,
            emitted_any: false,
            finish_reason: None,
            usage: None,
        }
    }

    /// Take one event; `Some` when reading must end now.
    fn on_event(&mut self, event: Event, sink: &mut dyn TokenSink) -> Option<Finish> {
        let chunk = match event {
            Event::Done => {
                return Some(self.flush(self.finish_reason.unwrap_or(Finish::Stop), sink))
            }
            Event::Chunk(chunk) => chunk,
        };
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        if let Some(reason) = chunk.finish_reason.as_deref() {
            self.finish_reason = Some(match reason {
                "length" => Finish::Length,
                _ => Finish::Stop,
            });
        }
        let content = chunk.content.as_deref().unwrap_or("");
        if content.is_empty() {
            return None;
        }
        let scan = self.scanner.push(content);
        if self.emit(&scan.emit, sink) == Flow::Stop {
            return Some(Finish::Cancelled);
        }
        scan.stopped.then_some(Finish::Stop)
    }

    /// Release held-back text at the natural end of the answer.
    fn flush(&mut self, finish: Finish, sink: &mut dyn TokenSink) -> Finish {
        let rest = self.scanner.finish();
        // The answer is over either way; a Stop here changes nothing.
        let _ = self.emit(&rest, sink);
        finish
    }

    fn emit(&mut self, text: &str, sink: &mut dyn TokenSink) -> Flow {
        if text.is_empty() {
            return Flow::Continue;
        }
        if self.first_token_ms.is_none() {
            self.first_token_ms = Some(ms_since(self.t0));
        }
        self.emitted_any = true;
        sink.piece(text)
    }
}

/// One line of an event stream, classified.
#[derive(Debug, PartialEq, Eq)]
enum SseLine<'a> {
    /// An empty line: the end of an event.
    Blank,
    /// A `data:` field's value.
    Data(&'a str),
    /// A comment (`: keep-alive`) or another field (`event:`, `id:`, `retry:`).
    Ignored,
}

/// Classify one line of an event stream (line terminator optional).
fn parse_sse_line(line: &str) -> SseLine<'_> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() {
        return SseLine::Blank;
    }
    if line.starts_with(':') {
        return SseLine::Ignored;
    }
    let (field, value) = line.split_once(':').unwrap_or((line, ""));
    if field == "data" {
        SseLine::Data(value.strip_prefix(' ').unwrap_or(value))
    } else {
        SseLine::Ignored
    }
}

/// A dispatched event.
#[derive(Debug, PartialEq)]
enum Event {
    /// `data: [DONE]`.
    Done,
    Chunk(Chunk),
}

/// What one streamed chunk (or a whole non-streamed completion) says.
#[derive(Debug, Default, PartialEq)]
struct Chunk {
    content: Option<String>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Usage {
    prompt_tokens: Option<usize>,
    completion_tokens: Option<usize>,
}

#[derive(Debug, PartialEq)]
enum EventError {
    /// Not the protocol; the reason quotes the offending text.
    Malformed(String),
    /// The server sent an error object instead of a completion.
    Server(String),
}

/// Parse an event's data: `[DONE]` or a JSON chunk.
fn parse_event(data: &str) -> Result<Event, EventError> {
    let data = data.trim();
    if data == "[DONE]" {
        return Ok(Event::Done);
    }
    let value: Value = serde_json::from_str(data).map_err(|_| {
        EventError::Malformed(format!(
            "an event is not JSON: {}",
            excerpt(data, PROTOCOL_EXCERPT_CHARS)
        ))
    })?;
    parse_chunk(&value).map(Event::Chunk)
}

/// Read a chat-completion chunk (`choices[0].delta`) or a whole completion
/// (`choices[0].message`).
fn parse_chunk(value: &Value) -> Result<Chunk, EventError> {
    let malformed = |what: &str| {
        EventError::Malformed(format!(
            "{what}: {}",
            excerpt(&value.to_string(), PROTOCOL_EXCERPT_CHARS)
        ))
    };
    let Some(obj) = value.as_object() else {
        return Err(malformed("an event is not a JSON object"));
    };
    if let Some(err) = obj.get("error").filter(|e| !e.is_null()) {
        return Err(EventError::Server(error_value_message(err)));
    }
    let usage = obj.get("usage").and_then(Value::as_object).map(|u| Usage {
        prompt_tokens: u.get("prompt_tokens").and_then(as_usize),
        completion_tokens: u.get("completion_tokens").and_then(as_usize),
    });
    let choices = match obj.get("choices") {
        Some(Value::Array(choices)) => choices,
        // The closing usage chunk of some servers has no `choices` at all.
        None if usage.is_some() => {
            return Ok(Chunk {
                usage,
                ..Chunk::default()
            })
        }
        Some(_) => return Err(malformed("`choices` is not an array")),
        None => return Err(malformed("an event has no `choices`")),
    };
    let Some(choice) = choices.first() else {
        return Ok(Chunk {
            usage,
            ..Chunk::default()
        });
    };
    if !choice.is_object() {
        return Err(malformed("`choices[0]` is not an object"));
    }
    let content = match choice
        .get("delta")
        .or_else(|| choice.get("message"))
        .and_then(|m| m.get("content"))
    {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(malformed("`content` is not a string")),
    };
    let finish_reason = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(Chunk {
        content,
        finish_reason,
        usage,
    })
}

/// The message of an error body, or the body itself, cut to
/// [`ERROR_EXCERPT_CHARS`].
/// `(token, logprob)` of the first generated token's alternatives, from a
/// chat completion (`choices[0].logprobs.content[0].top_logprobs`), or the
/// legacy completions layout (`choices[0].logprobs.top_logprobs[0]`, an
/// object of token → logprob).
fn judge_top_logprobs(value: &Value) -> Option<Vec<(String, f32)>> {
    let lp = value.get("choices")?.get(0)?.get("logprobs")?;
    if let Some(first) = lp.get("content").and_then(|c| c.get(0)) {
        let mut out: Vec<(String, f32)> = first
            .get("top_logprobs")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|t| {
                        Some((
                            t.get("token")?.as_str()?.to_string(),
                            t.get("logprob")?.as_f64()? as f32,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if out.is_empty() {
            // Only the chosen token's own log-probability.
            out.push((
                first.get("token")?.as_str()?.to_string(),
                first.get("logprob")?.as_f64()? as f32,
            ));
        }
        return Some(out);
    }
    let legacy = lp.get("top_logprobs")?.get(0)?.as_object()?;
    let out: Vec<(String, f32)> = legacy
        .iter()
        .filter_map(|(t, v)| Some((t.clone(), v.as_f64()? as f32)))
        .collect();
    (!out.is_empty()).then_some(out)
}

/// Each option's log-probability among the listed alternatives.
fn options_logprobs(top: &[(String, f32)], options: &[&str]) -> Vec<f32> {
    let floor = top
        .iter()
        .map(|(_, l)| *l)
        .fold(f32::INFINITY, f32::min)
        .min(0.0);
    options
        .iter()
        .map(|o| {
            let want = o.trim().to_lowercase();
            let lps: Vec<f32> = top
                .iter()
                .filter(|(t, _)| t.trim().to_lowercase() == want)
                .map(|(_, l)| *l)
                .collect();
            if lps.is_empty() {
                floor
            } else {
                crate::judge::log_sum_exp(&lps)
            }
        })
        .collect()
}

fn error_message(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        return "(empty body)".into();
    }
    let message = serde_json::from_str::<Value>(body).ok().and_then(|v| {
        // OpenAI, vLLM, llama.cpp: {"error":{"message":..}}; Ollama:
        // {"error":".."}; FastAPI-based servers: {"detail":..}.
        v.get("error")
            .filter(|e| !e.is_null())
            .map(error_value_message)
            .or_else(|| v.get("message").and_then(Value::as_str).map(str::to_string))
            .or_else(|| v.get("detail").map(value_text))
    });
    excerpt(message.as_deref().unwrap_or(body), ERROR_EXCERPT_CHARS)
}

/// The message inside an `error` value: an object with `message` or a string.
fn error_value_message(err: &Value) -> String {
    err.get("message")
        .map(value_text)
        .unwrap_or_else(|| value_text(err))
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn as_usize(v: &Value) -> Option<usize> {
    v.as_u64().and_then(|n| usize::try_from(n).ok())
}

/// `s` cut to at most `max` characters, marked with `…` when cut.
fn excerpt(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

/// One token per 3 bytes, rounded up.
fn estimate_tokens(text: &str) -> usize {
    text.len().div_ceil(3)
}

/// The delay before retry `n` (0-based): `base · 2ⁿ`, at most [`MAX_BACKOFF`].
fn backoff(base: Duration, n: u32) -> Duration {
    base.saturating_mul(1u32.checked_shl(n).unwrap_or(u32::MAX))
        .min(MAX_BACKOFF)
}

/// `0.7`, not `0.699999988079071`: an f32 as the decimal it was written as.
fn json_f32(x: f32) -> Value {
    x.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

/// `"120 s"`, `"0.3 s"`.
fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

fn protocol(url: &str, reason: String) -> GenerateError {
    GenerateError::Protocol {
        url: url.to_string(),
        reason,
    }
}

fn invalid(field: &'static str, reason: &str) -> GenerateError {
    GenerateError::Invalid {
        field,
        reason: reason.to_string(),
    }
}

/// Check the scheme and host of `url` and strip a trailing `/` and `/v1`.
fn normalize_base_url(url: &str) -> Result<String> {
    let bad = |why: &str| GenerateError::Invalid {
        field: "llm_url",
        reason: format!("{why}, got {url:?} (expected e.g. http://127.0.0.1:8080)"),
    };
    let trimmed = url.trim().trim_end_matches('/');
    let Some((scheme, rest)) = trimmed.split_once("://") else {
        return Err(bad("the URL needs an http:// or https:// scheme"));
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(bad("only http:// and https:// are supported"));
    }
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() {
        return Err(bad("the URL has no host"));
    }
    if rest.contains(['?', '#']) {
        return Err(bad("the URL must not have a query or fragment"));
    }
    let base = trimmed.strip_suffix("/v1").unwrap_or(trimmed);
    Ok(format!(
        "{}{}",
        scheme.to_ascii_lowercase(),
        &base[scheme.len()..]
    ))
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// How [`read_line_capped`] ended.
#[derive(Debug, PartialEq, Eq)]
enum LineRead {
    /// A line (with its `\n`, unless the stream ended without one).
    Line,
    /// The stream ended before any byte of a line.
    Eof,
    /// The line is longer than the cap; `out` holds its beginning.
    TooLong,
}

/// `BufRead::read_until(b'\n')` that stops at `cap` bytes instead of growing
/// without bound on a server that never sends a newline.
fn read_line_capped(r: &mut impl BufRead, out: &mut Vec<u8>, cap: usize) -> io::Result<LineRead> {
    loop {
        let buf = match r.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(if out.is_empty() {
                LineRead::Eof
            } else {
                LineRead::Line
            });
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if out.len() + take > cap {
            let room = cap - out.len();
            out.extend_from_slice(&buf[..room]);
            return Ok(LineRead::TooLong);
        }
        out.extend_from_slice(&buf[..take]);
        r.consume(take);
        if done {
            return Ok(LineRead::Line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_lines_are_classified() {
        assert_eq!(
            parse_sse_line("data: {\"a\":1}\n"),
            SseLine::Data("{\"a\":1}")
        );
        assert_eq!(
            parse_sse_line("data:{\"a\":1}\r\n"),
            SseLine::Data("{\"a\":1}")
        );
        assert_eq!(
            parse_sse_line("data:  two spaces"),
            SseLine::Data(" two spaces")
        );
        assert_eq!(parse_sse_line("data"), SseLine::Data(""));
        assert_eq!(parse_sse_line("\n"), SseLine::Blank);
        assert_eq!(parse_sse_line("\r\n"), SseLine::Blank);
        assert_eq!(parse_sse_line(": keep-alive\n"), SseLine::Ignored);
        assert_eq!(parse_sse_line("event: message\n"), SseLine::Ignored);
        assert_eq!(parse_sse_line("id: 7\n"), SseLine::Ignored);
        assert_eq!(parse_sse_line("dataset: x\n"), SseLine::Ignored);
    }

    #[test]
    fn chunks_yield_content_finish_and_usage() {
        let ev = parse_event(
            r#"{"choices":[{"index":0,"delta":{"content":"Hel","reasoning_content":"hmm"},"finish_reason":null}]}"#,
        )
        .unwrap();
        assert_eq!(
            ev,
            Event::Chunk(Chunk {
                content: Some("Hel".into()),
                ..Chunk::default()
            })
        );
        let ev =
            parse_event(r#"{"choices":[{"delta":{"content":null},"finish_reason":"length"}]}"#)
                .unwrap();
        assert_eq!(
            ev,
            Event::Chunk(Chunk {
                finish_reason: Some("length".into()),
                ..Chunk::default()
            })
        );
        let ev =
            parse_event(r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3}}"#)
                .unwrap();
        assert_eq!(
            ev,
            Event::Chunk(Chunk {
                usage: Some(Usage {
                    prompt_tokens: Some(12),
                    completion_tokens: Some(3)
                }),
                ..Chunk::default()
            })
        );
        assert_eq!(parse_event(" [DONE] ").unwrap(), Event::Done);
    }

    #[test]
    fn a_whole_completion_reads_like_a_chunk() {
        let v: Value = serde_json::from_str(
            r#"{"choices":[{"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}]}"#,
        )
        .unwrap();
        let c = parse_chunk(&v).unwrap();
        assert_eq!(c.content.as_deref(), Some("Hi"));
        assert_eq!(c.finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn malformed_events_quote_the_offending_text() {
        let Err(EventError::Malformed(r)) = parse_event("{not json") else {
            panic!("expected Malformed")
        };
        assert!(r.contains("{not json"), "{r}");
        let Err(EventError::Malformed(r)) = parse_event(r#"{"id":"x","object":"chunk"}"#) else {
            panic!("expected Malformed")
        };
        assert!(r.contains("no `choices`") && r.contains("\"id\""), "{r}");
        assert!(matches!(
            parse_event("[1,2]"),
            Err(EventError::Malformed(_))
        ));
        assert!(matches!(
            parse_event(r#"{"choices":[{"delta":{"content":[1]}}]}"#),
            Err(EventError::Malformed(_))
        ));
        assert!(matches!(
            parse_event(r#"{"choices":"x"}"#),
            Err(EventError::Malformed(_))
        ));
        let long = format!("{{{}", "x".repeat(1000));
        let Err(EventError::Malformed(r)) = parse_event(&long) else {
            panic!("expected Malformed")
        };
        assert!(r.len() < 300 && r.ends_with('…'), "{r}");
    }

    #[test]
    fn error_objects_in_the_stream_are_server_errors() {
        assert_eq!(
            parse_event(r#"{"error":{"message":"out of memory","type":"server_error"}}"#),
            Err(EventError::Server("out of memory".into()))
        );
    }

    #[test]
    fn error_bodies_yield_their_message() {
        assert_eq!(
            error_message(
                r#"{"error":{"message":"model `x` not found","type":"invalid_request_error"}}"#
            ),
            "model `x` not found"
        );
        assert_eq!(
            error_message(r#"{"error":"no such model"}"#),
            "no such model"
        );
        assert_eq!(error_message(r#"{"detail":"Not Found"}"#), "Not Found");
        assert_eq!(error_message("  Bad Gateway\n"), "Bad Gateway");
        assert_eq!(error_message(""), "(empty body)");
        let long = "é".repeat(2000);
        let cut = error_message(&long);
        assert_eq!(cut.chars().count(), ERROR_EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn base_urls_with_and_without_v1_are_accepted() {
        for (given, want) in [
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
            ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080"),
            ("HTTPS://api.example.com/v1/", "https://api.example.com"),
            ("http://host/prefix/v1", "http://host/prefix"),
        ] {
            assert_eq!(normalize_base_url(given).unwrap(), want, "{given}");
        }
    }

    #[test]
    fn bad_urls_are_rejected_naming_the_setting() {
        for bad in [
            "127.0.0.1:8080",
            "ftp://host",
            "http://",
            "http:///v1",
            "http://h?x=1",
            "",
        ] {
            let e = normalize_base_url(bad).unwrap_err();
            assert!(
                matches!(
                    e,
                    GenerateError::Invalid {
                        field: "llm_url",
                        ..
                    }
                ),
                "{bad}: {e}"
            );
        }
        let e = OpenAiGenerator::new(OpenAiConfig {
            base_url: "http://bad host:80".into(),
            ..OpenAiConfig::default()
        })
        .unwrap_err();
        assert!(
            matches!(
                e,
                GenerateError::Invalid {
                    field: "llm_url",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn request_body_carries_the_sampling_settings() {
        let g = OpenAiGenerator::new(OpenAiConfig {
            model: "m".into(),
            ..OpenAiConfig::default()
        })
        .unwrap();
        let sampling = Sampling {
            temperature: 0.7,
            stop: ["a", "", "b", "c", "d", "e"].map(String::from).to_vec(),
            ..Sampling::default()
        };
        let body = g.request_body(&[ChatMessage::user("hi")], &sampling);
        assert_eq!(body["temperature"], json!(0.7));
        assert_eq!(body["stop"], json!(["a", "b", "c", "d"]));
        assert_eq!(body["messages"], json!([{"role": "user", "content": "hi"}]));
        let body = g.request_body(&[], &Sampling::default());
        assert!(body.get("stop").is_none());
    }

    #[test]
    fn long_lines_are_capped() {
        let mut r = io::Cursor::new(b"short\nlonger line\nend".to_vec());
        let mut out = Vec::new();
        assert_eq!(
            read_line_capped(&mut r, &mut out, 8).unwrap(),
            LineRead::Line
        );
        assert_eq!(out, b"short\n");
        out.clear();
        assert_eq!(
            read_line_capped(&mut r, &mut out, 8).unwrap(),
            LineRead::TooLong
        );
        assert_eq!(out, b"longer l");
        let mut r = io::Cursor::new(b"end".to_vec());
        out.clear();
        assert_eq!(
            read_line_capped(&mut r, &mut out, 8).unwrap(),
            LineRead::Line
        );
        out.clear();
        assert_eq!(
            read_line_capped(&mut r, &mut out, 8).unwrap(),
            LineRead::Eof
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_millis(250);
        assert_eq!(backoff(base, 0), Duration::from_millis(250));
        assert_eq!(backoff(base, 2), Duration::from_secs(1));
        assert_eq!(backoff(base, 10), MAX_BACKOFF);
        assert_eq!(backoff(base, 40), MAX_BACKOFF);
    }

    #[test]
    fn token_estimate_rounds_up_and_debug_hides_the_key() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abcd"), 2);
        let cfg = OpenAiConfig {
            api_key: Some("sk-secret".into()),
            ..OpenAiConfig::default()
        };
        assert!(!format!("{cfg:?}").contains("sk-secret"));
    }
}
