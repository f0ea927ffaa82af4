//! Watched folders: keep a collection in step with folders as they change.
//!
//! [`watch`] is a loop over any [`Collection`] (local or a cluster's): it
//! starts watching (inotify, FSEvents, … through `notify`) *before* a full
//! rescan, so that nothing changed while it was down, or while it scans, is
//! missed; then every burst of changes, once quiet for the debounce time
//! (or at the latest after `max_delay`), runs the one ingest pipeline over
//! the watched roots with `prune`. So the catalog after each batch is what
//! an ingest of the tree as it is then gives: new and edited files are
//! read (unchanged ones are skipped by size and mtime), deleted ones are
//! removed, and a renamed file keeps its stored vectors (the ingest reuses
//! vectors by content, see [`crate::IngestReport::chunks_reused`]).

use crate::{Collection, EngineError, IngestOptions, IngestReport, Result};
use cairn_core::Progress;
use notify::{EventKind, RecursiveMode, Watcher};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// How to watch.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// A batch runs once no change has come for this long.
    pub debounce: Duration,
    /// … or at the latest this long after its first change, so a folder
    /// that never stops changing is still taken in.
    pub max_delay: Duration,
    /// Changes under these paths are not the user's (the data directory,
    /// when it lies inside a watched folder).
    pub ignore: Vec<PathBuf>,
    /// Changes to hidden files and folders count (`ingest.hidden`).
    pub hidden: bool,
}

impl Default for WatchOptions {
    fn default() -> WatchOptions {
        WatchOptions {
            debounce: Duration::from_millis(250),
            max_delay: Duration::from_secs(2),
            ignore: Vec::new(),
            hidden: false,
        }
    }
}

/// One batch: the start-up rescan, or a burst of changes taken in.
#[derive(Debug, Clone, Serialize)]
pub struct WatchBatch {
    /// The full rescan at start.
    pub initial: bool,
    /// Paths the change events named (at most [`MAX_NAMED`]; the ingest
    /// itself rescans the roots).
    pub changed: Vec<String>,
    /// Seconds from the batch's first change event to the end of its
    /// ingest (0 for the start-up rescan).
    pub latency_s: f64,
    #[serde(flatten)]
    pub report: IngestReport,
}

/// What [`watch`] reports as it runs.
#[derive(Debug)]
pub enum WatchEvent {
    /// Watching has begun (after the watches are set, before the rescan).
    Started {
        roots: Vec<PathBuf>,
    },
    Batch(Box<WatchBatch>),
    /// An ingest failed; watching goes on and the next change retries.
    Failed {
        error: String,
    },
}

/// Changed paths named in a batch, at most.
pub const MAX_NAMED: usize = 64;

/// Watch `roots` and keep `collection` in step until `stop` is set.
/// Errors only when watching cannot start (a root that does not exist, no
/// watch available); a failed ingest is reported through `on_event` and
/// retried at the next change.
pub fn watch(
    collection: &dyn Collection,
    roots: &[PathBuf],
    opts: &WatchOptions,
    stop: &Arc<AtomicBool>,
    progress: &dyn Progress,
    on_event: &mut dyn FnMut(WatchEvent),
) -> Result<()> {
    if roots.is_empty() {
        return Err(EngineError::Invalid(
            "watch needs at least one file or folder".into(),
        ));
    }
    let mut canonical = Vec::with_capacity(roots.len());
    for r in roots {
        let c = r.canonicalize().map_err(|e| EngineError::Io {
            path: r.clone(),
            source: e,
        })?;
        canonical.push(c);
    }
    let ignore: Vec<PathBuf> = opts
        .ignore
        .iter()
        .map(|p| p.canonicalize().unwrap_or_else(|_| p.clone()))
        .collect();

    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |ev| {
        let _ = tx.send(ev);
    })
    .map_err(|e| EngineError::Unavailable(format!("cannot watch for changes: {e}")))?;
    // A file root is watched through its folder: editors replace files by
    // renaming a new one over them, which ends a watch on the file itself.
    let mut files: Vec<PathBuf> = Vec::new();
    for c in &canonical {
        let (target, mode) = if c.is_dir() {
            (c.clone(), RecursiveMode::Recursive)
        } else {
            files.push(c.clone());
            let parent = c.parent().unwrap_or(Path::new("/")).to_path_buf();
            (parent, RecursiveMode::NonRecursive)
        };
        watcher.watch(&target, mode).map_err(|e| {
            EngineError::Unavailable(format!("cannot watch {}: {e}", target.display()))
        })?;
    }
    on_event(WatchEvent::Started {
        roots: canonical.clone(),
    });

    let ingest_opts = IngestOptions {
        prune: true,
        cancel: Some(stop.clone()),
        ..Default::default()
    };
    let run =
        |changed: Vec<String>, first: Option<Instant>, on_event: &mut dyn FnMut(WatchEvent)| {
            match collection.ingest(&canonical, &ingest_opts, progress) {
                Ok(report) => on_event(WatchEvent::Batch(Box::new(WatchBatch {
                    initial: first.is_none(),
                    changed,
                    latency_s: first.map_or(0.0, |t| t.elapsed().as_secs_f64()),
                    report,
                }))),
                Err(e) => {
                    tracing::warn!("watch: ingest failed: {e}");
                    on_event(WatchEvent::Failed {
                        error: e.to_string(),
                    })
                }
            }
        };

    // The rescan at start: what changed while nobody watched.
    run(Vec::new(), None, on_event);

    let relevant = |p: &Path| -> bool {
        if ignore.iter().any(|i| p.starts_with(i)) {
            return false;
        }
        let Some(root) = canonical.iter().find(|r| p.starts_with(r)) else {
            return false;
        };
        if files.contains(root) && p != root {
            return false;
        }
        opts.hidden
            || p.strip_prefix(root).is_ok_and(|rel| {
                !rel.components()
                    .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
            })
    };
    let mut changed: BTreeSet<String> = BTreeSet::new();
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    let tick = Duration::from_millis(50).min(opts.debounce);
    while !stop.load(Ordering::SeqCst) {
        match rx.recv_timeout(tick) {
            Ok(Ok(ev)) => {
                let counts = matches!(
                    ev.kind,
                    EventKind::Any | EventKind::Create(_) | EventKind::Remove(_) | EventKind::Other
                ) || matches!(ev.kind, EventKind::Modify(m)
                    if !matches!(m, notify::event::ModifyKind::Metadata(
                        notify::event::MetadataKind::AccessTime)));
                // An event without paths (a rescan request) counts too.
                let paths: Vec<&PathBuf> = ev.paths.iter().filter(|p| relevant(p)).collect();
                if counts && (ev.paths.is_empty() || !paths.is_empty()) {
                    for p in paths {
                        if changed.len() < MAX_NAMED {
                            changed.insert(p.to_string_lossy().to_string());
                        }
                    }
                    first.get_or_insert_with(Instant::now);
                    last = Instant::now();
                }
            }
            Ok(Err(e)) => {
                // The watch itself lost events (e.g. the kernel's queue
                // overflowed): a rescan takes in whatever they were.
                tracing::warn!("watch: {e}; rescanning");
                first.get_or_insert_with(Instant::now);
                last = Instant::now();
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(EngineError::Unavailable("the file watcher stopped".into()));
            }
        }
        if let Some(t0) = first {
            if last.elapsed() >= opts.debounce || t0.elapsed() >= opts.max_delay {
                let named: Vec<String> = std::mem::take(&mut changed).into_iter().collect();
                first = None;
                run(named, Some(t0), on_event);
            }
        }
    }
    drop(watcher);
    Ok(())
}
