//! `cairn watch PATH...` and `cairn serve --watch PATH`: the collection
//! (local or a cluster's) kept in step with folders by
//! [`cairn_engine::watch`], until SIGTERM or Ctrl-C.

use anyhow::Result;
use cairn_core::Progress;
use cairn_engine::{Collection, WatchEvent, WatchOptions};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Flags of `cairn watch`.
#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    /// Files or folders to keep the collection in step with.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Milliseconds without a change before a burst of changes is taken in.
    #[arg(long, value_name = "MS", default_value_t = 250)]
    pub debounce_ms: u64,
    /// One JSON object per line: `started`, then a `batch` per rescan.
    #[arg(long)]
    pub json: bool,
}

/// Watch options for the configuration (hidden files as `ingest.hidden`;
/// the data directory's own writes left out).
pub fn options(cfg: &cairn_core::config::Config, debounce_ms: u64) -> WatchOptions {
    WatchOptions {
        debounce: Duration::from_millis(debounce_ms.max(1)),
        max_delay: Duration::from_millis(debounce_ms.max(1)).max(Duration::from_secs(2)),
        ignore: vec![cfg.data_dir()],
        hidden: cfg.ingest.hidden,
    }
}

/// `cairn watch`: runs until SIGTERM or Ctrl-C, then exits 0.
pub fn run(
    collection: &dyn Collection,
    cfg: &cairn_core::config::Config,
    args: &WatchArgs,
    progress: &dyn Progress,
) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let opts = options(cfg, args.debounce_ms);
    let json = args.json;
    cairn_engine::watch(collection, &args.paths, &opts, &stop, progress, &mut |ev| {
        print_event(&ev, json, "")
    })?;
    if json {
        println!("{}", serde_json::json!({"event": "stopped"}));
    } else {
        println!("stopped watching");
    }
    Ok(())
}

/// One event on stdout, as a JSON line or a human line (with `prefix`).
fn print_event(ev: &WatchEvent, json: bool, prefix: &str) {
    use std::io::Write;
    // A closed stdout ends nothing here: the watch goes on.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line(ev, json, prefix));
    let _ = out.flush();
}

/// One event as a JSON object or a human line (each line with `prefix`).
fn line(ev: &WatchEvent, json: bool, prefix: &str) -> String {
    if json {
        let v = match ev {
            WatchEvent::Started { roots } => {
                serde_json::json!({"event": "started", "roots": roots})
            }
            WatchEvent::Batch(b) => {
                let mut v = serde_json::to_value(b).unwrap_or_default();
                v["event"] = "batch".into();
                v
            }
            WatchEvent::Failed { error } => serde_json::json!({"event": "failed", "error": error}),
        };
        v.to_string()
    } else {
        match ev {
            WatchEvent::Started { roots } => format!(
                "{prefix}watching {} (Ctrl-C to stop)",
                roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            WatchEvent::Batch(b) => {
                let r = &b.report;
                let what = if b.initial { "rescan" } else { "changes" };
                let mut s = format!(
                    "{prefix}{what}: {} added, {} updated, {} removed, {} unchanged; {} chunks ({} with stored vectors) in {:.2}s",
                    r.added, r.updated, r.removed, r.unchanged, r.chunks_added, r.chunks_reused, r.seconds
                );
                if !b.initial {
                    s.push_str(&format!(", {:.2}s after the first change", b.latency_s));
                }
                for sk in &r.skipped {
                    s.push_str(&format!("\n{prefix}  skipped {}: {}", sk.path, sk.reason));
                }
                s
            }
            WatchEvent::Failed { error } => {
                format!("{prefix}ingest failed (retried at the next change): {error}")
            }
        }
    }
}

/// `cairn serve --watch`: watch on a thread of its own until `stop` is set,
/// as background work at nice `nice` (`ingest.background_nice`), so that
/// the server's queries keep their latency while it ingests; events go to
/// stderr beside the server's own lines.
pub fn spawn(
    collection: Arc<dyn Collection>,
    opts: WatchOptions,
    paths: Vec<PathBuf>,
    stop: Arc<AtomicBool>,
    nice: u8,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let quiet = crate::progress::Bars::new(true);
        let result = cairn_engine::run_in_background(nice, || {
            cairn_engine::watch(
                collection.as_ref(),
                &paths,
                &opts,
                &stop,
                &quiet,
                &mut |ev| eprintln!("{}", line(&ev, false, "cairn serve: watch: ")),
            )
        });
        if let Err(e) = result {
            eprintln!("cairn serve: watch stopped: {e}");
            stop.store(true, Ordering::SeqCst);
        }
    })
}
