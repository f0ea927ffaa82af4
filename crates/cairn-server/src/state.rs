//! What every request shares: the configuration, the collections (local
//! ones sharing one embedding model and generator, or a cluster's), the
//! embedding model (for `/v1/embeddings`), the answer queue, the ingestion
//! jobs and the metrics.

use crate::error::ApiError;
use crate::jobs::Jobs;
use crate::metrics::Metrics;
use cairn_core::config::Config;
use cairn_engine::{Collection, Collections, LocalCollections};
use cairn_generate::Generator;
use cairn_models::SentenceEncoder;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The server's shared state.
pub struct AppState {
    pub cfg: Config,
    pub embedder: Arc<dyn SentenceEncoder>,
    pub collections: Arc<dyn Collections>,
    pub queue: GenQueue,
    pub jobs: Jobs,
    pub metrics: Metrics,
    pub keys: crate::auth::Keys,
    /// Set when shutdown begins: new asks and uploads are refused, jobs stop
    /// at the end of their current round.
    pub stopping: Arc<AtomicBool>,
}

impl AppState {
    /// Serve the collections of the configured data directory, answering
    /// with `generator`.
    pub fn new(
        cfg: Config,
        embedder: Arc<dyn SentenceEncoder>,
        generator: Arc<dyn Generator>,
    ) -> AppState {
        let local = LocalCollections::new(cfg.clone(), embedder.clone(), Some(generator));
        AppState::with_collections(cfg, embedder, Arc::new(local))
    }

    /// Serve `collections` (local, or a cluster's).
    pub fn with_collections(
        cfg: Config,
        embedder: Arc<dyn SentenceEncoder>,
        collections: Arc<dyn Collections>,
    ) -> AppState {
        let stopping = Arc::new(AtomicBool::new(false));
        AppState {
            queue: GenQueue::new(cfg.server.queue),
            keys: crate::auth::Keys::new(&cfg.server.api_keys),
            jobs: Jobs::new(stopping.clone()),
            cfg,
            embedder,
            collections,
            metrics: Metrics::new(),
            stopping,
        }
    }

    /// Collection names (blocking).
    pub fn collection_names(&self) -> Result<Vec<String>, ApiError> {
        Ok(self.collections.names()?)
    }

    /// A collection, opened on first use (blocking: call from a blocking
    /// task). With `create`, a missing collection is created.
    pub fn collection(&self, name: &str, create: bool) -> Result<Arc<dyn Collection>, ApiError> {
        cairn_core::config::validate_collection_name(name)
            .map_err(|e| ApiError::bad("collection", e.to_string()))?;
        Ok(self.collections.open(name, create)?)
    }

    /// Close and delete a collection with its uploads. Refused while an
    /// ingestion job for it is queued or running.
    pub fn delete_collection(&self, name: &str) -> Result<(), ApiError> {
        cairn_core::config::validate_collection_name(name)
            .map_err(|e| ApiError::bad("name", e.to_string()))?;
        if self.jobs.busy(name) {
            return Err(ApiError::Conflict(format!(
                "collection `{name}` has an ingestion job in progress; wait for it to finish"
            )));
        }
        self.collections.delete(name)?;
        let dir = crate::uploads::collection_uploads(&self.cfg.data_dir(), name);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ApiError::Internal(format!(
                "deleting {}: {e}",
                dir.display()
            ))),
        }
    }
}

/// Run blocking work (engine calls, generation) off the async workers.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("worker task failed: {e}")))?
}

/// The generator's bounded queue: one answer is generated at a time, at most
/// `capacity` more wait; beyond that asks get 503 with `Retry-After`.
pub struct GenQueue {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    capacity: usize,
    /// Moving average of an answer's duration, in milliseconds.
    avg_ms: AtomicU64,
}

impl GenQueue {
    pub fn new(capacity: usize) -> GenQueue {
        GenQueue {
            slots: Arc::new(Semaphore::new(1)),
            waiting: AtomicUsize::new(0),
            capacity,
            avg_ms: AtomicU64::new(2000),
        }
    }

    /// Wait for the generator, or refuse at once when the queue is full.
    pub async fn acquire(&self, metrics: &Metrics) -> Result<OwnedSemaphorePermit, ApiError> {
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Ok(p);
        }
        let queued = self.waiting.fetch_add(1, Ordering::SeqCst);
        if queued >= self.capacity {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            metrics.rejected.inc();
            let avg = self.avg_ms.load(Ordering::Relaxed) as f64 / 1000.0;
            return Err(ApiError::Overloaded {
                queued,
                retry_after: ((avg * (queued + 1) as f64).ceil() as u64).clamp(1, 600),
            });
        }
        let permit = self.slots.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        permit.map_err(|_| ApiError::ShuttingDown)
    }

    /// Record how long an answer took (for `Retry-After`).
    pub fn observe(&self, ms: f64) {
        let old = self.avg_ms.load(Ordering::Relaxed) as f64;
        self.avg_ms
            .store((old * 0.8 + ms * 0.2) as u64, Ordering::Relaxed);
    }

    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}
