//! REST: collections, documents, jobs, search, ask, feedback, health.

pub use crate::answering::{answer, error_event, history, prepare, stream_answer, Piece, Question};
use crate::auth::{Access, Check};
pub use crate::dto::*;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::jobs::Job;
use crate::state::{blocking, AppState};
use crate::uploads;
use axum::extract::{FromRequest, Multipart, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use cairn_core::SearchMode;
use cairn_engine::{AskOptions, Collection};
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio_stream::StreamExt;

pub(crate) type AppResult<T> = Result<T, ApiError>;
type St = State<Arc<AppState>>;

#[utoipa::path(get, path = "/healthz", tag = "service",
    responses((status = 200, description = "The server is up", body = Health)))]
pub async fn healthz() -> axum::Json<Health> {
    axum::Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
              (status = 401, body = ErrorBody), (status = 403, description = "A key limited to some collections", body = ErrorBody)))]
pub async fn metrics(State(state): St, Extension(access): Extension<Access>) -> Response {
    // Every collection's name and size: not for a key limited to some.
    if !matches!(access, Access::All) {
        return ApiError::Refused(
            "/metrics needs an API key that is not limited to some collections".into(),
        )
        .into_response();
    }
    state.metrics.queue_depth.set(state.queue.waiting() as i64);
    let opened = state.collections.opened();
    let sums = blocking(move || {
        Ok(opened
            .iter()
            .filter_map(|c| c.summary().ok())
            .collect::<Vec<_>>())
    })
    .await
    .unwrap_or_default();
    for s in sums {
        let name = s.name.clone();
        {
            state
                .metrics
                .index_documents
                .with_label_values(&[&name])
                .set(s.documents as i64);
            state
                .metrics
                .index_chunks
                .with_label_values(&[&name])
                .set(s.chunks as i64);
            state
                .metrics
                .index_vectors
                .with_label_values(&[&name])
                .set(s.vectors as i64);
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

// ---------------------------------------------------------------- collections

fn collection_out(name: &str, c: &dyn Collection) -> AppResult<CollectionOut> {
    let s = c.summary()?;
    Ok(CollectionOut {
        name: name.to_string(),
        documents: s.documents,
        chunks: s.chunks,
        embed_model: s.embed_model,
    })
}

#[utoipa::path(get, path = "/api/collections", tag = "collections",
    responses((status = 200, body = CollectionsOut), (status = 401, body = ErrorBody)))]
pub async fn list_collections(
    State(state): St,
    Extension(access): Extension<Access>,
) -> AppResult<axum::Json<CollectionsOut>> {
    blocking(move || {
        let mut out = vec![];
        for name in state.collection_names()? {
            if !access.allows(&name) {
                continue;
            }
            let c = state.collection(&name, false)?;
            out.push(collection_out(&name, c.as_ref())?);
        }
        Ok(axum::Json(CollectionsOut { collections: out }))
    })
    .await
}

#[utoipa::path(post, path = "/api/collections", tag = "collections", request_body = CreateCollection,
    responses((status = 201, body = CollectionOut), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn create_collection(
    State(state): St,
    Extension(access): Extension<Access>,
    Json(req): Json<CreateCollection>,
) -> AppResult<(StatusCode, axum::Json<CollectionOut>)> {
    cairn_core::config::validate_collection_name(&req.name)
        .map_err(|e| ApiError::bad("name", e.to_string()))?;
    access.check(&req.name)?;
    blocking(move || {
        let c = state.collection(&req.name, true)?;
        Ok((
            StatusCode::CREATED,
            axum::Json(collection_out(&req.name, c.as_ref())?),
        ))
    })
    .await
}

#[utoipa::path(delete, path = "/api/collections/{name}", tag = "collections",
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_collection(
    State(state): St,
    Extension(access): Extension<Access>,
    Path(name): Path<String>,
) -> AppResult<StatusCode> {
    access.check(&name)?;
    blocking(move || state.delete_collection(&name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ documents

/// Open a collection the key may use (blocking).
fn open(
    state: &AppState,
    access: &Access,
    name: &str,
    create: bool,
) -> AppResult<Arc<dyn Collection>> {
    access.check(name)?;
    state.collection(name, create)
}

#[utoipa::path(get, path = "/api/collections/{name}/documents", tag = "documents",
    params(("name" = String, Path, description = "Collection name")),
    responses((status = 200, body = DocumentsOut), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_documents(
    State(state): St,
    Extension(access): Extension<Access>,
    Path(name): Path<String>,
) -> AppResult<axum::Json<DocumentsOut>> {
    blocking(move || {
        let engine = open(&state, &access, &name, false)?;
        let documents = engine
            .documents()?
            .into_iter()
            .map(|d| DocumentOut {
                id: d.id,
                name: d.doc,
                format: d.format,
                size: d.size,
                chunks: d.chunks,
                seq: d.seq,
            })
            .collect();
        Ok(axum::Json(DocumentsOut { documents }))
    })
    .await
}

#[utoipa::path(post, path = "/api/collections/{name}/documents", tag = "documents",
    params(("name" = String, Path, description = "Collection name (created if missing)")),
    request_body(content(
        (TextDocument = "application/json"),
        (UploadForm = "multipart/form-data"))),
    responses((status = 202, description = "Ingestion job queued", body = JobResponse), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub async fn upload_documents(
    State(state): St,
    Extension(access): Extension<Access>,
    Path(name): Path<String>,
    req: axum::extract::Request,
) -> AppResult<(StatusCode, axum::Json<JobResponse>)> {
    cairn_core::config::validate_collection_name(&name)
        .map_err(|e| ApiError::bad("name", e.to_string()))?;
    access.check(&name)?;
    if state.stopping.load(Ordering::SeqCst) {
        return Err(ApiError::ShuttingDown);
    }
    let ctype = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let data = state.cfg.data_dir();
    // Multipart files are written to disk as their parts arrive (never
    // whole in memory); a JSON document is small enough to hold.
    let mut received = uploads::Incoming::default();
    let mut texts: Vec<(String, Vec<u8>)> = vec![];
    if ctype.starts_with("multipart/form-data") {
        let mut mp = Multipart::from_request(req, &())
            .await
            .map_err(|e| ApiError::BadRequest {
                field: None,
                message: e.body_text(),
            })?;
        let too_large = |e: axum::extract::multipart::MultipartError| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge
            } else {
                ApiError::bad("file", e.body_text())
            }
        };
        loop {
            let mut field = match mp.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return Err(too_large(e)),
            };
            if field.name() != Some("file") {
                continue;
            }
            let fname = field
                .file_name()
                .map(str::to_string)
                .ok_or_else(|| ApiError::bad("file", "each `file` part needs a filename"))?;
            uploads::sanitize_name(&fname)?;
            let dir = uploads::incoming_dir(&data, &name);
            let io = |e: std::io::Error| ApiError::Internal(format!("{}: {e}", dir.display()));
            tokio::fs::create_dir_all(&dir).await.map_err(io)?;
            let n = received.files.len();
            let tmp = dir.join(format!("{}-{n}.part", new_upload_id()));
            let mut out = tokio::fs::File::create(&tmp).await.map_err(io)?;
            received.files.push((fname, tmp));
            while let Some(chunk) = field.chunk().await.map_err(too_large)? {
                tokio::io::AsyncWriteExt::write_all(&mut out, &chunk)
                    .await
                    .map_err(io)?;
            }
            out.sync_all().await.map_err(io)?;
        }
        if received.files.is_empty() {
            return Err(ApiError::bad("file", "no `file` part in the form"));
        }
    } else {
        let Json(doc) = Json::<TextDocument>::from_request(req, &()).await?;
        texts.push((doc.name, doc.text.into_bytes()));
    }
    let job = blocking(move || {
        let c = state.collection(&name, true)?;
        let mut stored = vec![];
        for (fname, bytes) in &texts {
            stored.push(uploads::store(&data, &name, fname, bytes)?);
        }
        let mut rest = std::mem::take(&mut received.files).into_iter();
        while let Some((fname, tmp)) = rest.next() {
            match uploads::store_received(&data, &name, &fname, &tmp) {
                Ok(s) => stored.push(s),
                Err(e) => {
                    for (_, t) in std::iter::once((fname, tmp)).chain(rest) {
                        let _ = std::fs::remove_file(t);
                    }
                    return Err(e);
                }
            }
        }
        start_ingest(&state, &name, c, stored)
    })
    .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(JobResponse { job })))
}

/// A name for a file being received, unique in this process.
fn new_upload_id() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    format!("{}-{n}", std::process::id())
}

/// Queue the ingestion of stored uploads.
pub fn start_ingest(
    state: &Arc<AppState>,
    collection: &str,
    target: Arc<dyn Collection>,
    stored: Vec<(PathBuf, String)>,
) -> AppResult<Job> {
    let names = uploads::names(&stored);
    let paths = stored.into_iter().map(|(p, _)| p).collect();
    let st = state.clone();
    let started = Instant::now();
    state
        .jobs
        .start(collection, target, paths, names, move |report| {
            st.metrics
                .ingest_documents
                .inc_by(report.added + report.updated);
            st.metrics.ingest_chunks.inc_by(report.chunks_added);
            st.metrics
                .ingest_seconds
                .inc_by(started.elapsed().as_secs_f64());
        })
}

#[utoipa::path(delete, path = "/api/collections/{name}/documents/{id}", tag = "documents",
    params(("name" = String, Path, description = "Collection name"), ("id" = u64, Path, description = "Document id")),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_document(
    State(state): St,
    Extension(access): Extension<Access>,
    Path((name, id)): Path<(String, u64)>,
) -> AppResult<StatusCode> {
    blocking(move || {
        let c = open(&state, &access, &name, false)?;
        let meta = c.remove_document(id, &cairn_core::NoProgress)?;
        uploads::forget(
            &state.cfg.data_dir(),
            &name,
            std::path::Path::new(&meta.path),
        );
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

#[utoipa::path(get, path = "/api/jobs", tag = "jobs",
    responses((status = 200, body = JobsOut), (status = 401, body = ErrorBody)))]
pub async fn list_jobs(
    State(state): St,
    Extension(access): Extension<Access>,
) -> axum::Json<JobsOut> {
    let jobs = state
        .jobs
        .all()
        .into_iter()
        .filter(|j| access.allows(&j.collection))
        .collect();
    axum::Json(JobsOut { jobs })
}

#[utoipa::path(get, path = "/api/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = Job), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_job(
    State(state): St,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
) -> AppResult<axum::Json<Job>> {
    match state.jobs.get(&id) {
        Some(j) if access.allows(&j.collection) => Ok(axum::Json(j)),
        _ => Err(ApiError::NotFound(format!("no job `{id}`"))),
    }
}

// --------------------------------------------------------------------- search

fn parse_mode(mode: Option<&str>, default: SearchMode) -> AppResult<SearchMode> {
    match mode {
        None => Ok(default),
        Some(m) => m
            .parse()
            .map_err(|_| ApiError::bad("mode", format!("`{m}` (expected hybrid, dense or bm25)"))),
    }
}

fn check_k(k: Option<usize>, default: usize) -> AppResult<usize> {
    match k {
        None => Ok(default),
        Some(k) if (1..=100).contains(&k) => Ok(k),
        Some(k) => Err(ApiError::bad("k", format!("{k} (expected 1 to 100)"))),
    }
}

#[utoipa::path(get, path = "/api/search", tag = "search", params(SearchParams),
    responses((status = 200, body = SearchOut), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn search(
    State(state): St,
    Extension(access): Extension<Access>,
    Query(p): Query<SearchParams>,
) -> AppResult<axum::Json<SearchOut>> {
    let collection = p
        .collection
        .clone()
        .unwrap_or_else(|| state.cfg.collection.clone());
    let k = check_k(p.k, state.cfg.search.top_k)?;
    let mode = parse_mode(p.mode.as_deref(), state.cfg.search.mode)?;
    if p.q.trim().is_empty() {
        return Err(ApiError::bad("q", "is empty"));
    }
    if p.q.len() > 4096 {
        return Err(ApiError::bad("q", "is longer than 4096 bytes"));
    }
    blocking(move || {
        let engine = open(&state, &access, &collection, false)?;
        let t = Instant::now();
        let hits = engine.search(&p.q, k, mode)?;
        Ok(axum::Json(SearchOut {
            collection,
            hits,
            took_ms: t.elapsed().as_secs_f64() * 1000.0,
        }))
    })
    .await
}

// ------------------------------------------------------------------------ ask

#[utoipa::path(post, path = "/api/ask", tag = "ask", request_body = AskRequest,
    responses((status = 200, description = "The answer (JSON), or with `stream: true` server-sent events: `token` {text}, `restart` {reason} when the streamed text is withdrawn and generated again (the check found it unsupported), then `done` with the answer (its `sentences` say which are supported)",
               content((AnswerOut = "application/json"), (String = "text/event-stream"))),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody),
              (status = 504, body = ErrorBody)))]
pub async fn ask(
    State(state): St,
    Extension(access): Extension<Access>,
    Json(req): Json<AskRequest>,
) -> AppResult<Response> {
    let mut opts = AskOptions::from_config(&state.cfg);
    opts.k = check_k(req.k, opts.k)?;
    opts.mode = parse_mode(req.mode.as_deref(), opts.mode)?;
    let hist = history(&req.history)?;
    let q = prepare(&state, &access, req.collection, req.question, hist, opts).await?;
    let limit = std::time::Duration::from_secs(state.cfg.server.generate_timeout_secs);
    let permit = state
        .queue
        .acquire_until(&state.metrics, q.arrived + limit)
        .await?;
    if !req.stream {
        let out = answer(state, q, permit, None).await?;
        return Ok(axum::Json(out).into_response());
    }
    let events = stream_answer(
        state,
        q,
        permit,
        |p| match p {
            Piece::Text(t) => Event::default()
                .event("token")
                .data(serde_json::json!({ "text": t }).to_string()),
            Piece::Restart(why) => Event::default()
                .event("restart")
                .data(serde_json::json!({ "reason": why }).to_string()),
        },
        |res| {
            vec![match res {
                Ok(a) => Event::default()
                    .event("done")
                    .data(serde_json::to_string(&a).unwrap_or_default()),
                Err(e) => error_event(&e),
            }]
        },
    );
    Ok(Sse::new(events.map(Ok::<Event, Infallible>))
        .keep_alive(KeepAlive::default())
        .into_response())
}

// ------------------------------------------------------------------- feedback

#[utoipa::path(post, path = "/api/feedback", tag = "feedback", request_body = FeedbackIn,
    responses((status = 201, body = FeedbackCreated), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn feedback(
    State(state): St,
    Extension(access): Extension<Access>,
    Json(req): Json<FeedbackIn>,
) -> AppResult<(StatusCode, axum::Json<FeedbackCreated>)> {
    if req.comment.as_ref().is_some_and(|c| c.len() > 8192) {
        return Err(ApiError::bad("comment", "is longer than 8192 bytes"));
    }
    blocking(move || {
        // The answer id is looked up in every collection the key may use.
        for name in state.collection_names()? {
            if !access.allows(&name) {
                continue;
            }
            let c = state.collection(&name, false)?;
            if c.has_answer(&req.answer_id)? {
                let id = c.add_feedback(
                    &req.answer_id,
                    req.rating,
                    req.comment.as_deref(),
                    &req.helpful_citations,
                )?;
                return Ok((
                    StatusCode::CREATED,
                    axum::Json(FeedbackCreated {
                        id,
                        collection: name,
                    }),
                ));
            }
        }
        Err(ApiError::NotFound(format!(
            "answer_id `{}` names no answer",
            req.answer_id
        )))
    })
    .await
}

#[utoipa::path(get, path = "/api/feedback", tag = "feedback", params(FeedbackParams),
    responses((status = 200, body = FeedbackList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_feedback(
    State(state): St,
    Extension(access): Extension<Access>,
    Query(p): Query<FeedbackParams>,
) -> AppResult<axum::Json<FeedbackList>> {
    let limit = match p.limit {
        None => 100,
        Some(l) if (1..=1000).contains(&l) => l,
        Some(l) => return Err(ApiError::bad("limit", format!("{l} (expected 1 to 1000)"))),
    };
    let collection = p.collection.unwrap_or_else(|| state.cfg.collection.clone());
    blocking(move || {
        let engine = open(&state, &access, &collection, false)?;
        let feedback = engine
            .feedback(limit)?
            .into_iter()
            .map(|record| FeedbackOut {
                collection: collection.clone(),
                record,
            })
            .collect();
        Ok(axum::Json(FeedbackList { feedback }))
    })
    .await
}
