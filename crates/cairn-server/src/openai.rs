//! The OpenAI-compatible surface: `/v1/models`, `/v1/chat/completions`
//! (streaming and not, answers grounded in a collection, with citations) and
//! `/v1/embeddings`. Shapes follow OpenAI's API so that its SDKs, LangChain
//! and chat clients work unchanged.

use crate::api::{self, AnswerOut, CitationOut};
use crate::auth::Access;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Json;
use crate::state::{blocking, AppState};
use crate::time::unix_now;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use base64::Engine as _;
use cairn_engine::AskOptions;
use cairn_generate::{ChatMessage, Role};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;
use tokio_stream::StreamExt;
use utoipa::ToSchema;

type St = State<Arc<AppState>>;

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelOut {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub owned_by: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<ModelOut>,
}

fn model(id: String) -> ModelOut {
    ModelOut {
        id,
        object: "model".into(),
        created: 0,
        owned_by: "cairn".into(),
    }
}

/// The short name of the embedding model (`all-MiniLM-L6-v2`).
fn embed_model_name(state: &AppState) -> String {
    state
        .cfg
        .embed
        .model
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_string()
}

#[utoipa::path(get, path = "/v1/models", tag = "openai",
    responses((status = 200, body = ModelList), (status = 401, body = ErrorBody)))]
pub async fn models(
    State(state): St,
    Extension(access): Extension<Access>,
) -> axum::Json<ModelList> {
    let mut data = vec![model("cairn".into())];
    let st = state.clone();
    // A cluster that does not answer lists no collections, not an error.
    let names = crate::state::blocking(move || st.collection_names())
        .await
        .unwrap_or_default();
    for c in names {
        if access.allows(&c) {
            data.push(model(format!("cairn:{c}")));
        }
    }
    data.push(model(embed_model_name(&state)));
    axum::Json(ModelList {
        object: "list".into(),
        data,
    })
}

/// Content as a string, or as OpenAI's list of parts (text parts are joined).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ContentPart {
    pub r#type: String,
    pub text: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatMessageIn {
    /// system, developer, user, assistant or tool.
    pub role: String,
    pub content: Option<Content>,
}

/// Accepts one string or a list of them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// OpenAI's chat request. Fields Cairn does not use (`n` > 1 excepted) are
/// accepted and ignored, as OpenAI-compatible servers do.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatRequest {
    /// `cairn` (the default collection) or `cairn:<collection>`.
    pub model: String,
    pub messages: Vec<ChatMessageIn>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub seed: Option<i64>,
    pub stop: Option<Stop>,
    pub n: Option<u32>,
}

fn text_of(c: &Option<Content>) -> String {
    match c {
        None => String::new(),
        Some(Content::Text(t)) => t.clone(),
        Some(Content::Parts(p)) => p
            .iter()
            .filter(|p| p.r#type == "text")
            .filter_map(|p| p.text.clone())
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// The collection a `model` names.
fn collection_of(state: &AppState, model: &str) -> Result<String, ApiError> {
    if model == "cairn" {
        return Ok(state.cfg.collection.clone());
    }
    match model.strip_prefix("cairn:") {
        Some(c) if !c.is_empty() => Ok(c.to_string()),
        _ => Err(ApiError::NotFound(format!(
            "model `{model}` does not exist: use `cairn` or `cairn:<collection>` (see GET /v1/models)"
        ))),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChatChoiceMessage {
    pub role: String,
    pub content: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChatChoice {
    pub index: u32,
    pub message: ChatChoiceMessage,
    pub finish_reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChatCompletion {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: Usage,
    /// The passages the answer cites: `[n]` in the text is `citations[i].n`.
    pub citations: Vec<CitationOut>,
    /// Each sentence of the answer with its support (see `/api/ask`).
    pub sentences: Vec<api::SentenceOut>,
    /// Refer to this answer in `POST /api/feedback`.
    pub answer_id: String,
}

fn finish(a: &AnswerOut) -> String {
    match a.finish_reason.as_deref() {
        Some("length") => "length".into(),
        _ => "stop".into(),
    }
}

fn usage(a: &AnswerOut) -> Usage {
    Usage {
        prompt_tokens: a.prompt_tokens,
        completion_tokens: a.completion_tokens,
        total_tokens: a.prompt_tokens + a.completion_tokens,
    }
}

#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai", request_body = ChatRequest,
    responses((status = 200, description = "A chat completion, or with `stream: true` server-sent `chat.completion.chunk`s ending with `data: [DONE]`",
               content((ChatCompletion = "application/json"), (String = "text/event-stream"))),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody),
              (status = 504, body = ErrorBody)))]
pub async fn chat_completions(
    State(state): St,
    Extension(access): Extension<Access>,
    Json(req): Json<ChatRequest>,
) -> Result<Response, ApiError> {
    let collection = collection_of(&state, &req.model)?;
    if req.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad("n", "only n = 1 is supported"));
    }
    // The last user message is the question; what comes before is history.
    let last_user = req
        .messages
        .iter()
        .rposition(|m| m.role == "user")
        .ok_or_else(|| ApiError::bad("messages", "needs at least one message with role `user`"))?;
    let mut history = vec![];
    for (i, m) in req.messages[..last_user].iter().enumerate() {
        let role = match m.role.as_str() {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "system" | "developer" | "tool" | "function" => continue,
            other => {
                return Err(ApiError::bad(
                    &format!("messages[{i}].role"),
                    format!("`{other}` is not a chat role"),
                ))
            }
        };
        history.push(ChatMessage {
            role,
            content: text_of(&m.content),
        });
    }
    let question = text_of(&req.messages[last_user].content);

    let mut opts = AskOptions::from_config(&state.cfg);
    let s = &mut opts.sampling;
    if let Some(m) = req.max_completion_tokens.or(req.max_tokens) {
        if m == 0 {
            return Err(ApiError::bad("max_tokens", "must be at least 1"));
        }
        s.max_tokens = m.min(s.max_tokens);
    }
    if let Some(t) = req.temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(ApiError::bad(
                "temperature",
                format!("{t} (expected 0 to 2)"),
            ));
        }
        s.temperature = t;
    }
    if let Some(p) = req.top_p {
        if !(p > 0.0 && p <= 1.0) {
            return Err(ApiError::bad(
                "top_p",
                format!("{p} (expected more than 0, at most 1)"),
            ));
        }
        s.top_p = p;
    }
    if let Some(seed) = req.seed {
        s.seed = seed as u32;
    }
    match req.stop {
        Some(Stop::One(x)) => s.stop = vec![x],
        Some(Stop::Many(v)) => s.stop = v.into_iter().take(4).collect(),
        None => {}
    }
    s.stop.retain(|x| !x.is_empty());

    let q = api::prepare(&state, &access, Some(collection), question, history, opts).await?;
    let limit = std::time::Duration::from_secs(state.cfg.server.generate_timeout_secs);
    let permit = state
        .queue
        .acquire_until(&state.metrics, q.arrived + limit)
        .await?;
    let id_model = req.model.clone();
    let created = unix_now();
    if !req.stream {
        let a = api::answer(state, q, permit, None).await?;
        let out = ChatCompletion {
            id: format!("chatcmpl-{}", a.answer_id),
            object: "chat.completion".into(),
            created,
            model: id_model,
            choices: vec![ChatChoice {
                index: 0,
                message: ChatChoiceMessage {
                    role: "assistant".into(),
                    content: a.answer.clone(),
                },
                finish_reason: finish(&a),
            }],
            usage: usage(&a),
            citations: a.citations.clone(),
            sentences: a.sentences.clone(),
            answer_id: a.answer_id.clone(),
        };
        return Ok(axum::Json(out).into_response());
    }

    // One id for every chunk of the stream, as OpenAI does; the answer id is
    // known only at the end, so it travels on the final chunk.
    let stream_id = format!(
        "chatcmpl-{}",
        &blake3::hash(format!("{:?}", Instant::now()).as_bytes()).to_hex()[..24]
    );
    let include_usage = req.stream_options.is_some_and(|o| o.include_usage);
    let chunk = {
        let (id, model) = (stream_id.clone(), id_model.clone());
        move |delta: Value, finish: Option<String>, extra: Value| -> Event {
            let mut c = json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}],
            });
            if let (Some(o), Some(e)) = (c.as_object_mut(), extra.as_object()) {
                for (k, v) in e {
                    o.insert(k.clone(), v.clone());
                }
            }
            Event::default().data(c.to_string())
        }
    };
    let first = chunk(json!({"role": "assistant", "content": ""}), None, json!({}));
    let (tok, fin) = (chunk.clone(), chunk);
    let (sid, smodel) = (stream_id, id_model);
    let events = api::stream_answer(
        state,
        q,
        permit,
        move |p| match p {
            api::Piece::Text(t) => tok(json!({ "content": t }), None, json!({})),
            // OpenAI's stream cannot withdraw text: the second attempt
            // follows a note, and the final chunk carries `sentences`.
            api::Piece::Restart(why) => tok(
                json!({ "content": format!("\n\n({why})\n\n") }),
                None,
                json!({}),
            ),
        },
        move |res| match res {
            Ok(a) => {
                let mut evs = vec![fin(
                    json!({}),
                    Some(finish(&a)),
                    json!({"citations": a.citations, "answer_id": a.answer_id, "sentences": a.sentences}),
                )];
                if include_usage {
                    let u = usage(&a);
                    evs.push(
                        Event::default().data(
                            json!({
                                "id": sid, "object": "chat.completion.chunk", "created": created,
                                "model": smodel, "choices": [], "usage": u,
                            })
                            .to_string(),
                        ),
                    );
                }
                evs.push(Event::default().data("[DONE]"));
                evs
            }
            Err(e) => vec![
                Event::default().data(serde_json::to_string(&e.body()).unwrap_or_default()),
                Event::default().data("[DONE]"),
            ],
        },
    );
    let stream = tokio_stream::once(first)
        .chain(events)
        .map(Ok::<Event, Infallible>);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// One string or a list of strings (token-id input is not supported: Cairn
/// embeds text with its own tokenizer).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct EmbeddingRequest {
    pub input: EmbeddingInput,
    /// The embedding model's name (see `GET /v1/models`), or `cairn`.
    pub model: String,
    /// float (default) or base64 (little-endian f32).
    pub encoding_format: Option<String>,
    pub dimensions: Option<usize>,
    pub user: Option<String>,
}

/// An array of floats, or a base64 string of little-endian f32s with
/// `encoding_format: base64`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Embedding {
    Floats(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingData {
    pub object: String,
    pub index: usize,
    pub embedding: Embedding,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingList {
    pub object: String,
    pub data: Vec<EmbeddingData>,
    pub model: String,
    pub usage: EmbeddingUsage,
}

/// Most texts one embeddings request may carry.
const MAX_INPUTS: usize = 2048;

#[utoipa::path(post, path = "/v1/embeddings", tag = "openai", request_body = EmbeddingRequest,
    responses((status = 200, body = EmbeddingList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn embeddings(
    State(state): St,
    Json(req): Json<EmbeddingRequest>,
) -> Result<Response, ApiError> {
    let name = embed_model_name(&state);
    if req.model != name && req.model != "cairn" && req.model != state.embedder.model_id() {
        return Err(ApiError::NotFound(format!(
            "model `{}` does not exist: this server embeds with `{name}`",
            req.model
        )));
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad(
                "encoding_format",
                format!("`{other}` (expected float or base64)"),
            ))
        }
    };
    let texts = match req.input {
        EmbeddingInput::One(s) => vec![s],
        EmbeddingInput::Many(v) => v,
    };
    if texts.is_empty() {
        return Err(ApiError::bad("input", "is empty"));
    }
    if texts.len() > MAX_INPUTS {
        return Err(ApiError::bad(
            "input",
            format!("more than {MAX_INPUTS} texts"),
        ));
    }
    let dim = state.embedder.dim();
    if let Some(d) = req.dimensions {
        if d != dim {
            return Err(ApiError::bad(
                "dimensions",
                format!("{d} (this model gives {dim})"),
            ));
        }
    }
    let st = state.clone();
    let (vectors, tokens) = blocking(move || {
        let t = Instant::now();
        // Passages, not queries: an embeddings API is used to index text,
        // and a model with a query prompt gets it only in search.
        let v = st
            .embedder
            .embed_passages(&texts)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        st.metrics.embed_texts.inc_by(texts.len() as u64);
        st.metrics.embed_seconds.inc_by(t.elapsed().as_secs_f64());
        let tokens = texts
            .iter()
            .map(|t| t.split_whitespace().count())
            .sum::<usize>();
        Ok((v, tokens))
    })
    .await?;
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| EmbeddingData {
            object: "embedding".into(),
            index,
            embedding: if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Embedding::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                Embedding::Floats(v)
            },
        })
        .collect();
    Ok(axum::Json(EmbeddingList {
        object: "list".into(),
        data,
        model: name,
        usage: EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    })
    .into_response())
}
