//! What every request shares: the configuration, the open collections (one
//! [`Engine`] each, all sharing one embedding model), the generator and its
//! bounded queue, the ingestion jobs and the metrics.

use crate::error::ApiError;
use crate::jobs::Jobs;
use crate::metrics::Metrics;
use cairn_core::config::Config;
use cairn_engine::Engine;
use cairn_generate::Generator;
use cairn_models::SentenceEncoder;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The server's shared state.
pub struct AppState {
    pub cfg: Config,
    pub embedder: Arc<dyn SentenceEncoder>,
    pub generator: Arc<dyn Generator>,
    engines: Mutex<HashMap<String, Arc<Engine>>>,
    /// Opening a collection (and deleting one) is serialised.
    open_lock: Mutex<()>,
    pub queue: GenQueue,
    pub jobs: Jobs,
    pub metrics: Metrics,
    pub keys: crate::auth::Keys,
    /// Set when shutdown begins: new asks and uploads are refused, jobs stop
    /// at the end of their current round.
    pub stopping: Arc<AtomicBool>,
}

impl AppState {
    pub fn new(
        cfg: Config,
        embedder: Arc<dyn SentenceEncoder>,
        generator: Arc<dyn Generator>,
    ) -> AppState {
        let stopping = Arc::new(AtomicBool::new(false));
        AppState {
            queue: GenQueue::new(cfg.server.queue),
            keys: crate::auth::Keys::new(&cfg.server.api_keys),
            jobs: Jobs::new(stopping.clone()),
            cfg,
            embedder,
            generator,
            engines: Mutex::new(HashMap::new()),
            open_lock: Mutex::new(()),
            metrics: Metrics::new(),
            stopping,
        }
    }

    /// Collections on disk.
    pub fn collection_names(&self) -> Vec<String> {
        cairn_engine::list_collections(&self.cfg.data_dir())
    }

    fn exists(&self, name: &str) -> bool {
        cairn_engine::collection_dir(&self.cfg.data_dir(), name)
            .join("catalog.sqlite")
            .is_file()
    }

    fn open_engine(&self, name: &str) -> Option<Arc<Engine>> {
        self.engines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// The engine of a collection, opened on first use (blocking: call from
    /// a blocking task). With `create`, a missing collection is created.
    pub fn engine(&self, name: &str, create: bool) -> Result<Arc<Engine>, ApiError> {
        cairn_core::config::validate_collection_name(name)
            .map_err(|e| ApiError::bad("collection", e.to_string()))?;
        if let Some(e) = self.open_engine(name) {
            return Ok(e);
        }
        let _open = self.open_lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = self.open_engine(name) {
            return Ok(e);
        }
        if !create && !self.exists(name) {
            return Err(ApiError::NotFound(format!(
                "collection `{name}` does not exist"
            )));
        }
        let mut cfg = self.cfg.clone();
        cfg.collection = name.to_string();
        // `critic.kind = "llm"` judges with the generator that answers.
        let engine = Arc::new(
            Engine::open_with_embedder(&cfg, self.embedder.clone(), &cairn_core::NoProgress)?
                .attach_generator(&self.generator),
        );
        self.engines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), engine.clone());
        Ok(engine)
    }

    /// Close and delete a collection with its uploads. Refused while an
    /// ingestion job for it is queued or running.
    pub fn delete_collection(&self, name: &str) -> Result<(), ApiError> {
        cairn_core::config::validate_collection_name(name)
            .map_err(|e| ApiError::bad("name", e.to_string()))?;
        let _open = self.open_lock.lock().unwrap_or_else(|p| p.into_inner());
        if !self.exists(name) {
            return Err(ApiError::NotFound(format!(
                "collection `{name}` does not exist"
            )));
        }
        if self.jobs.busy(name) {
            return Err(ApiError::Conflict(format!(
                "collection `{name}` has an ingestion job in progress; wait for it to finish"
            )));
        }
        self.engines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        let data = self.cfg.data_dir();
        for dir in [
            cairn_engine::collection_dir(&data, name),
            crate::uploads::collection_uploads(&data, name),
        ] {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(ApiError::Internal(format!(
                        "deleting {}: {e}",
                        dir.display()
                    )))
                }
            }
        }
        Ok(())
    }

    /// Collections open now.
    pub fn open_engines(&self) -> Vec<(String, Arc<Engine>)> {
        self.engines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
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
