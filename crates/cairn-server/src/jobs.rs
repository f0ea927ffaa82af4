//! Ingestion jobs: uploads are ingested in the background, one job at a time,
//! with progress that clients poll. On shutdown the running job stops after
//! the round of files in hand (every committed document stays) and the
//! server waits for it.

use crate::error::ApiError;
use crate::time::now_rfc3339;
use cairn_core::Progress;
use cairn_engine::{Collection, IngestOptions, IngestReport};
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use utoipa::ToSchema;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

/// A file that was not ingested, and why.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SkippedOut {
    pub path: String,
    pub reason: String,
}

/// An ingestion job as clients see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Job {
    pub id: String,
    pub collection: String,
    pub state: JobState,
    /// What the job is doing now: queued, ingesting, indexing, finished.
    pub phase: String,
    pub files_total: u64,
    pub files_done: u64,
    pub chunks_added: u64,
    pub documents_added: u64,
    pub documents_updated: u64,
    pub skipped: Vec<SkippedOut>,
    pub error: Option<String>,
    pub created_at: String,
    pub finished_at: Option<String>,
}

type Shared = Arc<Mutex<Job>>;

/// The job list and the one-at-a-time runner.
pub struct Jobs {
    list: Mutex<Vec<Shared>>,
    next: AtomicU64,
    /// Held by the running job: jobs run one after another.
    runner: Arc<Mutex<()>>,
    active: Arc<AtomicUsize>,
    idle: Arc<tokio::sync::Notify>,
    stopping: Arc<AtomicBool>,
}

fn lock(j: &Shared) -> std::sync::MutexGuard<'_, Job> {
    j.lock().unwrap_or_else(|p| p.into_inner())
}

impl Jobs {
    pub fn new(stopping: Arc<AtomicBool>) -> Jobs {
        Jobs {
            list: Mutex::new(vec![]),
            next: AtomicU64::new(1),
            runner: Arc::new(Mutex::new(())),
            active: Arc::new(AtomicUsize::new(0)),
            idle: Arc::new(tokio::sync::Notify::new()),
            stopping,
        }
    }

    /// Every job, newest first.
    pub fn all(&self) -> Vec<Job> {
        let list = self.list.lock().unwrap_or_else(|p| p.into_inner());
        list.iter().rev().map(|j| lock(j).clone()).collect()
    }

    pub fn get(&self, id: &str) -> Option<Job> {
        let list = self.list.lock().unwrap_or_else(|p| p.into_inner());
        list.iter()
            .find(|j| lock(j).id == id)
            .map(|j| lock(j).clone())
    }

    /// Whether a job for `collection` is queued or running.
    pub fn busy(&self, collection: &str) -> bool {
        let list = self.list.lock().unwrap_or_else(|p| p.into_inner());
        list.iter().any(|j| {
            let j = lock(j);
            j.collection == collection && matches!(j.state, JobState::Queued | JobState::Running)
        })
    }

    /// Queue the ingestion of `files` (with their display names) into
    /// `collection`; `done` runs with the report when it ends.
    pub fn start(
        &self,
        collection: &str,
        target: Arc<dyn Collection>,
        files: Vec<PathBuf>,
        names: HashMap<PathBuf, String>,
        done: impl FnOnce(&IngestReport) + Send + 'static,
    ) -> Result<Job, ApiError> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(ApiError::ShuttingDown);
        }
        let id = format!("j{}", self.next.fetch_add(1, Ordering::SeqCst));
        let job = Arc::new(Mutex::new(Job {
            id,
            collection: collection.to_string(),
            state: JobState::Queued,
            phase: "queued".into(),
            files_total: files.len() as u64,
            files_done: 0,
            chunks_added: 0,
            documents_added: 0,
            documents_updated: 0,
            skipped: vec![],
            error: None,
            created_at: now_rfc3339(),
            finished_at: None,
        }));
        self.list
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(job.clone());
        let snapshot = lock(&job).clone();
        let (runner, active, idle, stopping) = (
            self.runner.clone(),
            self.active.clone(),
            self.idle.clone(),
            self.stopping.clone(),
        );
        active.fetch_add(1, Ordering::SeqCst);
        tokio::task::spawn_blocking(move || {
            {
                let _turn = runner.lock().unwrap_or_else(|p| p.into_inner());
                run(&job, target.as_ref(), files, names, stopping, done);
            }
            if active.fetch_sub(1, Ordering::SeqCst) == 1 {
                idle.notify_waiters();
            }
        });
        Ok(snapshot)
    }

    /// Wait until no job is queued or running (call after `stopping` is set,
    /// so that running jobs stop early and queued ones are cancelled).
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.active.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

fn run(
    job: &Shared,
    collection: &dyn Collection,
    files: Vec<PathBuf>,
    names: HashMap<PathBuf, String>,
    stopping: Arc<AtomicBool>,
    done: impl FnOnce(&IngestReport),
) {
    let finish = |state: JobState, error: Option<String>| {
        let mut j = lock(job);
        j.state = state;
        j.phase = "finished".into();
        j.error = error;
        j.finished_at = Some(now_rfc3339());
    };
    if stopping.load(Ordering::SeqCst) {
        // The files stay in the uploads dir; the next start ingests them.
        return finish(
            JobState::Cancelled,
            Some(
                "the server shut down before this job started; it resumes at the next start".into(),
            ),
        );
    }
    {
        let mut j = lock(job);
        j.state = JobState::Running;
        j.phase = "ingesting".into();
    }
    let opts = IngestOptions {
        prune: false,
        display_names: names,
        cancel: Some(stopping),
    };
    let progress = JobProgress { job: job.clone() };
    match collection.ingest(&files, &opts, &progress) {
        Ok(report) => {
            {
                let mut j = lock(job);
                j.chunks_added = report.chunks_added;
                j.documents_added = report.added;
                j.documents_updated = report.updated;
                j.skipped = report
                    .skipped
                    .iter()
                    .map(|s| SkippedOut {
                        path: s.path.clone(),
                        reason: s.reason.clone(),
                    })
                    // On a cluster, documents its logs did not accept.
                    .chain(
                        report
                            .log
                            .iter()
                            .flat_map(|l| &l.rejected)
                            .map(|r| SkippedOut {
                                path: r.doc.clone(),
                                reason: r.reason.clone(),
                            }),
                    )
                    .collect();
            }
            done(&report);
            if report.cancelled {
                finish(
                    JobState::Cancelled,
                    Some("stopped by shutdown; documents committed so far are kept, the rest resume at the next start".into()),
                );
            } else {
                finish(JobState::Done, None);
            }
        }
        Err(e) => {
            tracing::error!("ingestion job failed: {e}");
            finish(JobState::Failed, Some(e.to_string()));
        }
    }
}

/// Engine progress → the job's counters.
struct JobProgress {
    job: Shared,
}

impl Progress for JobProgress {
    fn begin(&self, phase: &str, total: u64) {
        let mut j = lock(&self.job);
        j.phase = phase.to_string();
        if phase == "ingesting" {
            j.files_total = j.files_total.max(total);
        }
    }

    fn advance(&self, n: u64) {
        let mut j = lock(&self.job);
        if j.phase == "ingesting" {
            j.files_done = (j.files_done + n).min(j.files_total);
        }
    }

    fn end(&self) {
        let mut j = lock(&self.job);
        if j.phase == "ingesting" {
            j.files_done = j.files_total;
        }
    }
}
