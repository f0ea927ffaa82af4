//! How the commands open a collection: the ones that write hold its lock
//! (and with `--wait`, wait for another process that holds it), the ones
//! that only read (search, ask, chat, status, eval) open it read-only and
//! never wait for a writer.

use cairn_core::config::Config;
use cairn_core::Progress;
use cairn_engine::{Access, Engine};
use std::sync::atomic::{AtomicBool, Ordering};

static WAIT: AtomicBool = AtomicBool::new(false);

/// `--wait`: writers wait for the process holding the collection.
pub fn set_wait(wait: bool) {
    WAIT.store(wait, Ordering::Relaxed);
}

/// Open for ingest, remove and rebuilds.
pub fn writer(cfg: &Config, progress: &dyn Progress) -> anyhow::Result<Engine> {
    let embedder = cairn_engine::load_embedder(cfg)?;
    let access = if WAIT.load(Ordering::Relaxed) {
        Access::WriteWaiting
    } else {
        Access::Write
    };
    Ok(Engine::open_as(cfg, embedder, access, progress)?)
}

/// Open for searches and answers.
pub fn reader(cfg: &Config, progress: &dyn Progress) -> anyhow::Result<Engine> {
    Ok(Engine::open_read_only(cfg, progress)?)
}
