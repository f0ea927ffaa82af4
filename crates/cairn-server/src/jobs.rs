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
    /// Jobs allowed to wait; more are refused (503).
    max_queued: usize,
    /// Finished jobs kept in the list.
    kept: usize,
    /// Jobs run at this nice value (`ingest.background_nice`).
    nice: u8,
}

fn lock(j: &Shared) -> std::sync::MutexGuard<'_, Job> {
    j.lock().unwrap_or_else(|p| p.into_inner())
}

impl Jobs {
    /// At most `max_queued` jobs wait; the newest `kept` finished ones stay
    /// listed; jobs run at nice `nice` (0: the priority of queries).
    pub fn new(stopping: Arc<AtomicBool>, max_queued: usize, kept: usize, nice: u8) -> Jobs {
        Jobs {
            list: Mutex::new(vec![]),
            next: AtomicU64::new(1),
            runner: Arc::new(Mutex::new(())),
            active: Arc::new(AtomicUsize::new(0)),
            idle: Arc::new(tokio::sync::Notify::new()),
            stopping,
            max_queued,
            kept,
            nice,
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
        let job = self.admit(collection, files.len() as u64)?;
        let snapshot = lock(&job).clone();
        let stopping = self.stopping.clone();
        self.spawn(job, move |job| {
            run(job, target.as_ref(), files, names, stopping, done)
        });
        Ok(snapshot)
    }

    /// A new queued job for `collection`, or 503 when `max_queued` jobs
    /// already wait; finished jobs beyond `kept` leave the list.
    fn admit(&self, collection: &str, files_total: u64) -> Result<Shared, ApiError> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(ApiError::ShuttingDown);
        }
        let mut list = self.list.lock().unwrap_or_else(|p| p.into_inner());
        let queued = list
            .iter()
            .filter(|j| lock(j).state == JobState::Queued)
            .count();
        if queued >= self.max_queued {
            return Err(ApiError::Unavailable(format!(
                "the ingestion queue is full ({queued} jobs waiting, server.max_queued_jobs); retry when they have run"
            )));
        }
        let finished = |j: &Shared| !matches!(lock(j).state, JobState::Queued | JobState::Running);
        let mut extra = list
            .iter()
            .filter(|j| finished(j))
            .count()
            .saturating_sub(self.kept);
        list.retain(|j| {
            if extra > 0 && finished(j) {
                extra -= 1;
                false
            } else {
                true
            }
        });
        let id = format!("j{}", self.next.fetch_add(1, Ordering::SeqCst));
        let job = Arc::new(Mutex::new(Job {
            id,
            collection: collection.to_string(),
            state: JobState::Queued,
            phase: "queued".into(),
            files_total,
            files_done: 0,
            chunks_added: 0,
            documents_added: 0,
            documents_updated: 0,
            skipped: vec![],
            error: None,
            created_at: now_rfc3339(),
            finished_at: None,
        }));
        list.push(job.clone());
        Ok(job)
    }

    /// Run `work` for `job` on a thread of its own, after the jobs before
    /// it, as background work (lowered to `ingest.background_nice`, which is
    /// why the thread is its own and not one of tokio's blocking pool).
    /// The job counts as active until it ends however it ends; one that
    /// panics ends as failed, so that shutdown never waits for it forever.
    fn spawn(&self, job: Shared, work: impl FnOnce(&Shared) + Send + 'static) {
        struct Active(Arc<AtomicUsize>, Arc<tokio::sync::Notify>);
        impl Drop for Active {
            fn drop(&mut self) {
                if self.0.fetch_sub(1, Ordering::SeqCst) == 1 {
                    self.1.notify_waiters();
                }
            }
        }
        self.active.fetch_add(1, Ordering::SeqCst);
        let active = Active(self.active.clone(), self.idle.clone());
        let runner = self.runner.clone();
        let nice = self.nice;
        let failed = |job: &Shared, why: String| {
            let mut j = lock(job);
            j.state = JobState::Failed;
            j.phase = "finished".into();
            j.error = Some(why);
            j.finished_at = Some(now_rfc3339());
        };
        let on_thread = job.clone();
        let spawned = std::thread::Builder::new()
            .name("cairn-ingest-job".into())
            .spawn(move || {
                let job = on_thread;
                let _active = active;
                let _turn = runner.lock().unwrap_or_else(|p| p.into_inner());
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    cairn_engine::run_in_background(nice, || work(&job))
                }));
                if let Err(panic) = r {
                    let why = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown".into());
                    tracing::error!("ingestion job panicked: {why}");
                    failed(
                        &job,
                        format!("the ingestion job failed unexpectedly: {why}"),
                    );
                }
            });
        if let Err(e) = spawned {
            // The closure (and the active count it held) is dropped.
            tracing::error!("no thread for an ingestion job: {e}");
            failed(&job, format!("the ingestion job could not start: {e}"));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_job_ends_failed_and_shutdown_does_not_wait_for_it() {
        let jobs = Jobs::new(Arc::new(AtomicBool::new(false)), 4, 10, 0);
        let job = jobs.admit("docs", 1).unwrap();
        jobs.spawn(job.clone(), |_| panic!("a loader bug"));
        tokio::time::timeout(std::time::Duration::from_secs(10), jobs.wait_idle())
            .await
            .expect("wait_idle returns once the panicked job is accounted for");
        let j = lock(&job).clone();
        assert_eq!(j.state, JobState::Failed);
        assert!(j.error.unwrap().contains("a loader bug"));
        assert!(!jobs.busy("docs"));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn jobs_run_lowered_and_leave_the_server_s_threads_as_they_were() {
        use cairn_core::priority::current_nice;
        let before = current_nice();
        let jobs = Jobs::new(Arc::new(AtomicBool::new(false)), 4, 10, 9);
        let job = jobs.admit("docs", 1).unwrap();
        let seen = Arc::new(Mutex::new(None));
        let s = seen.clone();
        jobs.spawn(job, move |_| {
            *s.lock().unwrap() = Some(current_nice());
        });
        tokio::time::timeout(std::time::Duration::from_secs(10), jobs.wait_idle())
            .await
            .unwrap();
        assert_eq!(*seen.lock().unwrap(), Some(before.max(9)));
        // tokio's blocking pool (searches run there) is untouched.
        let blocking = tokio::task::spawn_blocking(current_nice).await.unwrap();
        assert_eq!(blocking, before);
    }

    #[test]
    fn the_queue_is_bounded_and_finished_jobs_are_pruned() {
        let jobs = Jobs::new(Arc::new(AtomicBool::new(false)), 2, 3, 0);
        let a = jobs.admit("docs", 1).unwrap();
        let _b = jobs.admit("docs", 1).unwrap();
        let e = jobs.admit("docs", 1).unwrap_err();
        assert_eq!(
            e.status(),
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "{e}"
        );
        // One starts running: a place in the queue frees.
        lock(&a).state = JobState::Running;
        let c = jobs.admit("docs", 1).unwrap();
        // Finish them all, then add more: only the newest 3 finished stay.
        for j in jobs.list.lock().unwrap().iter() {
            lock(j).state = JobState::Done;
        }
        for _ in 0..4 {
            let j = jobs.admit("docs", 1).unwrap();
            lock(&j).state = JobState::Done;
        }
        let all = jobs.all();
        assert_eq!(all.len(), 4, "3 finished kept + the newest: {all:?}");
        assert!(
            all.iter().all(|j| j.id != lock(&c).id),
            "the oldest finished went first"
        );
    }
}
