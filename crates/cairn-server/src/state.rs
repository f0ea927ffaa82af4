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
    /// `/mcp`: the MCP handler over the same collections, and its sessions.
    pub mcp: Arc<crate::mcp::Mcp>,
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
            jobs: Jobs::new(
                stopping.clone(),
                cfg.server.max_queued_jobs,
                cfg.server.jobs_kept,
                cfg.ingest.background_nice,
            ),
            mcp: Arc::new(crate::mcp::Mcp::new(&cfg, collections.clone())),
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

/// One ask counted as waiting for as long as this lives.
struct Waiting<'a> {
    count: &'a AtomicUsize,
    /// How many were waiting before it.
    before: usize,
}

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Waiting<'a> {
        let before = count.fetch_add(1, Ordering::SeqCst);
        Waiting { count, before }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
    }
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
        // Counted while waiting, uncounted when the wait ends however it
        // ends: with the permit, or dropped (the client went away).
        let waiting = Waiting::enter(&self.waiting);
        let queued = waiting.before;
        if queued >= self.capacity {
            drop(waiting);
            metrics.rejected.inc();
            let avg = self.avg_ms.load(Ordering::Relaxed) as f64 / 1000.0;
            return Err(ApiError::Overloaded {
                queued,
                retry_after: ((avg * (queued + 1) as f64).ceil() as u64).clamp(1, 600),
            });
        }
        let permit = self.slots.clone().acquire_owned().await;
        drop(waiting);
        permit.map_err(|_| ApiError::ShuttingDown)
    }

    /// [`GenQueue::acquire`], giving up (504) at `deadline`: an ask's
    /// time limit counts from its arrival, queueing included.
    pub async fn acquire_until(
        &self,
        metrics: &Metrics,
        deadline: std::time::Instant,
    ) -> Result<OwnedSemaphorePermit, ApiError> {
        match tokio::time::timeout_at(deadline.into(), self.acquire(metrics)).await {
            Ok(r) => r,
            Err(_) => Err(ApiError::Timeout("waiting for the generator")),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_ask_that_stops_waiting_leaves_the_queue() {
        let q = GenQueue::new(4);
        let m = Metrics::new();
        let held = q.acquire(&m).await.unwrap();
        // A second ask waits; its client goes away (the future is dropped).
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(50), q.acquire(&m)).await;
        assert!(waiting.is_err(), "it had to wait");
        assert_eq!(q.waiting(), 0, "a cancelled wait is no longer counted");
        drop(held);
        assert!(q.acquire(&m).await.is_ok());
        assert_eq!(q.waiting(), 0);
    }

    #[tokio::test]
    async fn the_wait_counts_against_the_time_limit() {
        let q = GenQueue::new(4);
        let m = Metrics::new();
        let _held = q.acquire(&m).await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(50);
        let r = q.acquire_until(&m, deadline).await;
        assert!(matches!(r, Err(ApiError::Timeout(_))), "{r:?}");
        assert_eq!(q.waiting(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_counts_nothing() {
        let q = GenQueue::new(0);
        let m = Metrics::new();
        let _held = q.acquire(&m).await.unwrap();
        assert!(matches!(
            q.acquire(&m).await,
            Err(ApiError::Overloaded { .. })
        ));
        assert_eq!(q.waiting(), 0);
    }
}
