//! The answering service behind `/api/ask` and `/v1/chat/completions`: a
//! question with its collection and options, answered on a blocking thread
//! under the generator queue's permit, logged for feedback, and either
//! returned whole or streamed as server-sent events.

use crate::api::{AnswerOut, AppResult, ClusterOut, MessageIn, TimingsOut};
use crate::auth::{Access, Check};
use crate::error::ApiError;
use crate::state::{blocking, AppState};
use axum::response::sse::Event;
use cairn_engine::{Answer, AskOptions, Collection};
use cairn_generate::{ChatMessage, Flow, Role, TokenSink};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

pub(crate) fn answer_out(id: String, collection: &str, a: &Answer) -> AnswerOut {
    AnswerOut {
        answer_id: id,
        collection: collection.to_string(),
        answer: a.answer.clone(),
        answered: a.answered,
        citations: a.citations.clone(),
        retrieved: a.retrieved.clone(),
        model: a.model.clone(),
        prompt_tokens: a.prompt_tokens,
        completion_tokens: a.completion_tokens,
        finish_reason: a.finish.map(|f| {
            serde_json::to_value(f)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        }),
        timings_ms: TimingsOut {
            embed: a.timings_ms.embed,
            search: a.timings_ms.search,
            critic: a.timings_ms.critic,
            first_token: a.timings_ms.first_token,
            generate: a.timings_ms.generate,
            total: a.timings_ms.total,
        },
        strategy: serde_json::to_value(a.strategy)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        critic: a.critic.clone(),
        grammar: a.grammar,
        sentences: a.sentences.clone(),
        cluster: a.cluster.as_ref().map(|c| ClusterOut {
            shards_ok: c.shards_ok,
            shards_total: c.shards_total,
            node: c.node.clone(),
            failed_replicas: c.failed_replicas.clone(),
        }),
    }
}

/// A question ready to be answered.
pub struct Question {
    pub collection: String,
    pub target: Arc<dyn Collection>,
    pub question: String,
    pub history: Vec<ChatMessage>,
    pub opts: AskOptions,
    /// When the request arrived: the generation time limit counts from it,
    /// queueing included.
    pub arrived: Instant,
}

static ANSWERS: AtomicU64 = AtomicU64::new(0);

fn new_answer_id() -> String {
    let n = ANSWERS.fetch_add(1, Ordering::SeqCst);
    let seed = format!("{:?}{n}{}", Instant::now(), std::process::id());
    format!("a-{}", &blake3::hash(seed.as_bytes()).to_hex()[..24])
}

/// Convert request history into chat turns.
pub fn history(msgs: &[MessageIn]) -> AppResult<Vec<ChatMessage>> {
    msgs.iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.role.as_str() {
                "user" => Role::User,
                "assistant" => Role::Assistant,
                other => {
                    return Err(ApiError::bad(
                        &format!("history[{i}].role"),
                        format!("`{other}` (expected user or assistant)"),
                    ))
                }
            };
            Ok(ChatMessage {
                role,
                content: m.content.clone(),
            })
        })
        .collect()
}

/// Answer a question once the generator is ours: retrieval, generation
/// (tokens go to `tokens` as they come), then the answer is logged for
/// feedback. Runs the engine on a blocking thread.
pub async fn answer(
    state: Arc<AppState>,
    q: Question,
    permit: tokio::sync::OwnedSemaphorePermit,
    tokens: Option<mpsc::Sender<Piece>>,
) -> AppResult<AnswerOut> {
    let limit = Duration::from_secs(state.cfg.server.generate_timeout_secs);
    let st = state.clone();
    let out = blocking(move || {
        let _permit = permit;
        if q.arrived.elapsed() > limit {
            return Err(ApiError::Timeout("waiting for the generator"));
        }
        // Uncounted however the answer ends (an error, a panic).
        let _generating = Generating::enter(&st.metrics.generating);
        let started = q.arrived;
        let timed_out = AtomicBool::new(false);
        let mut sink = Pieces {
            tokens: &tokens,
            started,
            limit,
            timed_out: &timed_out,
        };
        let res = q.target.ask(&q.question, &q.history, &q.opts, &mut sink);
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        st.queue.observe(ms);
        let a = res?;
        st.metrics.generation_seconds.observe(ms / 1000.0);
        st.metrics
            .generated_tokens
            .inc_by(a.completion_tokens as u64);
        if timed_out.load(Ordering::SeqCst) {
            return Err(ApiError::Timeout("generating the answer"));
        }
        let id = new_answer_id();
        q.target.record_answer(&id, &q.question, &a)?;
        Ok(answer_out(id, &q.collection, &a))
    })
    .await;
    out
}

/// One answer counted as being generated for as long as this lives.
struct Generating<'a>(&'a prometheus::IntGauge);

impl<'a> Generating<'a> {
    fn enter(g: &'a prometheus::IntGauge) -> Generating<'a> {
        g.inc();
        Generating(g)
    }
}

impl Drop for Generating<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What the generator streams to a client: text, or the news that what was
/// streamed is withdrawn and a new answer follows (the check found it
/// unsupported).
#[derive(Debug, Clone)]
pub enum Piece {
    Text(String),
    Restart(String),
}

/// The sink of one answer: pieces to the client's channel, stopping on a
/// timeout or when the client has gone.
struct Pieces<'a> {
    tokens: &'a Option<mpsc::Sender<Piece>>,
    started: Instant,
    limit: Duration,
    timed_out: &'a AtomicBool,
}

impl TokenSink for Pieces<'_> {
    fn piece(&mut self, piece: &str) -> Flow {
        if self.started.elapsed() > self.limit {
            self.timed_out.store(true, Ordering::SeqCst);
            return Flow::Stop;
        }
        match self.tokens {
            Some(tx) if tx.blocking_send(Piece::Text(piece.to_string())).is_err() => Flow::Stop,
            _ => Flow::Continue,
        }
    }

    fn restart(&mut self, why: &str) {
        if let Some(tx) = self.tokens {
            let _ = tx.blocking_send(Piece::Restart(why.to_string()));
        }
    }
}

/// Validate an ask and open its collection.
pub async fn prepare(
    state: &Arc<AppState>,
    access: &Access,
    collection: Option<String>,
    question: String,
    history: Vec<ChatMessage>,
    opts: AskOptions,
) -> AppResult<Question> {
    let arrived = Instant::now();
    if state.stopping.load(Ordering::SeqCst) {
        return Err(ApiError::ShuttingDown);
    }
    if question.trim().is_empty() {
        return Err(ApiError::bad("question", "is empty"));
    }
    if question.len() > 16_384 {
        return Err(ApiError::bad("question", "is longer than 16384 bytes"));
    }
    let collection = collection.unwrap_or_else(|| state.cfg.collection.clone());
    access.check(&collection)?;
    let st = state.clone();
    let c = collection.clone();
    let target = blocking(move || st.collection(&c, false)).await?;
    Ok(Question {
        collection,
        target,
        question,
        history,
        opts,
        arrived,
    })
}

/// The SSE event carrying an API error.
pub fn error_event(e: &ApiError) -> Event {
    Event::default()
        .event("error")
        .data(serde_json::to_string(&e.body()).unwrap_or_default())
}

/// Generate in the background and turn the answer into server-sent events:
/// one per piece of text as it comes, then the closing events. If the client
/// goes away, generation stops at the next token (the answer is still logged).
pub fn stream_answer(
    state: Arc<AppState>,
    q: Question,
    permit: tokio::sync::OwnedSemaphorePermit,
    token_event: impl Fn(&Piece) -> Event + Send + 'static,
    final_events: impl FnOnce(AppResult<AnswerOut>) -> Vec<Event> + Send + 'static,
) -> ReceiverStream<Event> {
    let (tx, rx) = mpsc::channel::<Event>(256);
    let (tok_tx, mut tok_rx) = mpsc::channel::<Piece>(256);
    tokio::spawn(async move {
        let fut = answer(state, q, permit, Some(tok_tx));
        tokio::pin!(fut);
        let mut client_gone = false;
        let res = loop {
            tokio::select! {
                biased;
                Some(t) = tok_rx.recv(), if !client_gone => {
                    if tx.send(token_event(&t)).await.is_err() {
                        client_gone = true;
                        tok_rx.close();
                    }
                }
                res = &mut fut => break res,
            }
        };
        // The generator has finished (its sender is dropped): forward what
        // is left in order, then close.
        while let Some(t) = tok_rx.recv().await {
            if client_gone || tx.send(token_event(&t)).await.is_err() {
                client_gone = true;
            }
        }
        if !client_gone {
            for ev in final_events(res) {
                if tx.send(ev).await.is_err() {
                    break;
                }
            }
        }
    });
    ReceiverStream::new(rx)
}
