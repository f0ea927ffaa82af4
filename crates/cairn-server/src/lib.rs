//! Cairn's HTTP layer over the engine: an OpenAI-compatible `/v1` API, a REST
//! `/api`, MCP at `/mcp` (streamable HTTP), server-sent-event streaming, the
//! embedded web UI, API keys, Prometheus metrics and an OpenAPI description
//! generated from the code.
//!
//! The server is a layer, not a fork: every request goes through
//! [`cairn_engine::Engine`] exactly as the CLI does. Engine calls and
//! generation run on blocking threads; the async workers only move bytes.
//!
//! ```no_run
//! # async fn run(cfg: cairn_core::config::Config,
//! #              embedder: std::sync::Arc<dyn cairn_models::SentenceEncoder>,
//! #              generator: std::sync::Arc<dyn cairn_generate::Generator>) {
//! let state = cairn_server::AppState::new(cfg, embedder, generator);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await.unwrap();
//! cairn_server::serve(state, listener, async { let _ = tokio::signal::ctrl_c().await; })
//!     .await
//!     .unwrap();
//! # }
//! ```
//!
//! **Invariants.** Only loopback addresses run without an API key
//! ([`check_bind`]). Uploads are stored under names the server picks
//! ([`uploads`]). Readers never wait for an ingestion job. At most
//! `server.queue` asks wait for the generator; more get 503 + `Retry-After`.
//! On shutdown, in-flight requests finish and a running ingestion job stops
//! between two rounds of files, with everything committed kept.

mod answering;
pub mod api;
pub mod auth;
pub mod dto;
pub mod error;
mod extract;
pub mod guard;
pub mod jobs;
pub mod mcp;
pub mod metrics;
pub mod openai;
pub mod state;
pub(crate) use cairn_core::time;
pub mod uploads;

pub use error::ApiError;
pub use state::AppState;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use utoipa::OpenApi;

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("server.addr `{addr}` is not an address (expected e.g. 127.0.0.1:8080): {message}")]
    Addr { addr: String, message: String },
    #[error("refusing to listen on {0} without an API key: set CAIRN_API_KEY (or server.api_keys in the config), or listen on 127.0.0.1")]
    NeedsKey(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// Parse the listen address and refuse a non-loopback one without keys.
pub fn check_bind(addr: &str, has_keys: bool) -> Result<SocketAddr, ServerError> {
    let parsed: SocketAddr =
        addr.parse()
            .map_err(|e: std::net::AddrParseError| ServerError::Addr {
                addr: addr.to_string(),
                message: e.to_string(),
            })?;
    if !parsed.ip().is_loopback() && !has_keys {
        return Err(ServerError::NeedsKey(parsed));
    }
    Ok(parsed)
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Cairn", description = "Private, local-first retrieval-augmented generation: REST and OpenAI-compatible API."),
    paths(
        api::healthz, api::metrics,
        api::list_collections, api::create_collection, api::delete_collection,
        api::list_documents, api::upload_documents, api::delete_document,
        api::list_jobs, api::get_job, api::search, api::ask, api::feedback, api::list_feedback,
        openai::models, openai::chat_completions, openai::embeddings,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        ApiDoc::openapi().to_pretty_json().unwrap_or_default(),
    )
        .into_response()
}

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const STYLE_CSS: &str = include_str!("../assets/style.css");

fn asset(ctype: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, ctype),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route (see /openapi.json)".into())
}

/// Counts and times every request by route.
async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_string();
    let t = Instant::now();
    let resp = next.run(req).await;
    let m = &state.metrics;
    m.latency
        .with_label_values(&[&route, &method])
        .observe(t.elapsed().as_secs_f64());
    m.requests
        .with_label_values(&[&route, &method, resp.status().as_str()])
        .inc();
    resp
}

/// Adds security headers to every response.
async fn headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'"),
    );
    resp
}

/// The whole application.
pub fn router(state: Arc<AppState>) -> Router {
    let cfg = &state.cfg.server;
    let timeout = Duration::from_secs(cfg.request_timeout_secs);
    // Everything but generation gets the request time limit; asks are
    // bounded by `generate_timeout_secs` inside.
    let limited = Router::new()
        .route(
            "/api/collections",
            get(api::list_collections).post(api::create_collection),
        )
        .route("/api/collections/{name}", delete(api::delete_collection))
        .route(
            "/api/collections/{name}/documents",
            get(api::list_documents).post(api::upload_documents),
        )
        .route(
            "/api/collections/{name}/documents/{id}",
            delete(api::delete_document),
        )
        .route("/api/jobs", get(api::list_jobs))
        .route("/api/jobs/{id}", get(api::get_job))
        .route("/api/search", get(api::search))
        .route("/api/feedback", post(api::feedback).get(api::list_feedback))
        .route("/v1/models", get(openai::models))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/metrics", get(api::metrics))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            timeout,
        ));
    let generating = Router::new()
        .route("/api/ask", post(api::ask))
        .route("/v1/chat/completions", post(openai::chat_completions))
        // MCP: asks and ingests run as long as they take (asks bounded by
        // `generate_timeout_secs` inside).
        .route("/mcp", post(mcp::post).delete(mcp::delete).get(mcp::get));
    let public = Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/assets/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route("/healthz", get(api::healthz))
        .route("/openapi.json", get(openapi_json));
    let mut app = limited
        .merge(generating)
        .merge(public)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ))
        .layer(DefaultBodyLimit::max(cfg.max_body_bytes))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            cfg.max_body_bytes,
        ));
    if !cfg.cors_origins.is_empty() {
        let origins: Vec<HeaderValue> = cfg
            .cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        app = app.layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([Method::GET, Method::POST, Method::DELETE])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
        );
    }
    // Outermost (after the security headers): a forged request is refused
    // before authentication, CORS or anything else sees it.
    app.layer(middleware::from_fn_with_state(
        state.clone(),
        guard::same_site,
    ))
    .layer(middleware::from_fn(headers))
    .route_layer(middleware::from_fn_with_state(state.clone(), observe))
    .with_state(state)
}

/// Accept connections until `signal`, each served over HTTP/1.1 with a
/// time limit on reading a request's headers (a client that opens a
/// connection and sends nothing, or its headers a byte at a time, is cut
/// off); then stop accepting and wait for the connections in flight.
async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: Router,
    header_timeout: Duration,
    signal: impl Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    tokio::pin!(signal);
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: pause, go on.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut signal => break,
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Resume ingestion of uploads that a previous run accepted but did not
/// finish (stopped by a shutdown or a crash).
pub fn resume_uploads(state: &Arc<AppState>) {
    let data = state.cfg.data_dir();
    for name in uploads::collections(&data) {
        // Parts of files a crash interrupted mid-upload: never accepted.
        let _ = std::fs::remove_dir_all(uploads::incoming_dir(&data, &name));
        let stored = uploads::list(&data, &name);
        if stored.is_empty() {
            continue;
        }
        let Ok(collection) = state.collection(&name, false) else {
            continue;
        };
        let paths: Vec<_> = stored.iter().map(|(p, _)| p.clone()).collect();
        let changed = match collection.changed_files(&paths) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("cannot check the uploads of {name}: {e}");
                continue;
            }
        };
        let pending: Vec<_> = stored
            .into_iter()
            .filter(|(p, _)| changed.contains(p))
            .collect();
        if !pending.is_empty() {
            tracing::info!(collection = %name, files = pending.len(), "resuming unfinished uploads");
            if let Err(e) = api::start_ingest(state, &name, collection, pending) {
                tracing::warn!("cannot resume uploads of {name}: {e}");
            }
        }
    }
}

/// Serve until `shutdown` resolves; then stop accepting, let in-flight
/// requests finish, stop the ingestion job at a consistent point and wait
/// for it.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let state = Arc::new(state);
    {
        let st = state.clone();
        tokio::task::spawn_blocking(move || resume_uploads(&st))
            .await
            .ok();
    }
    let idle = state.cfg.server.idle_close_secs;
    if idle > 0 {
        // Collections nobody used for `idle` are closed, so that their
        // write lock and memory go back until the next request.
        let st = state.clone();
        tokio::spawn(async move {
            let idle = Duration::from_secs(idle);
            let every = (idle / 4).clamp(Duration::from_millis(250), Duration::from_secs(60));
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if st.stopping.load(Ordering::SeqCst) {
                    return;
                }
                let s = st.clone();
                let _ = tokio::task::spawn_blocking(move || s.collections.close_idle(idle)).await;
            }
        });
    }
    let app = router(state.clone());
    let st = state.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
        st.stopping.store(true, Ordering::SeqCst);
    };
    serve_connections(
        listener,
        app,
        Duration::from_secs(state.cfg.server.header_timeout_secs),
        signal,
    )
    .await;
    state.stopping.store(true, Ordering::SeqCst);
    state.jobs.wait_idle().await;
    tracing::info!("stopped");
    Ok(())
}
