//! `cairn mcp`: Cairn as an MCP server over stdio, for MCP hosts (Claude
//! Desktop, VS Code, Cursor) that start it as a child process. JSON-RPC on
//! stdin and stdout, logs on stderr only.
//!
//! The collections are the data directory's (or, with `--cluster URL`, the
//! cluster's); the models load on the first call that needs them, so
//! `initialize` and `tools/list` are answered at once. A local collection
//! is held for writing only while it is used: one unused for
//! [`IDLE_CLOSE`] is closed, so `cairn ingest` and others can take it.

use crate::GenArgs;
use anyhow::{Context, Result};
use cairn_core::config::Config;
use cairn_engine::{Collection, Collections, EngineError};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A local collection unused this long is closed (its lock released).
const IDLE_CLOSE: Duration = Duration::from_secs(30);

/// Flags of `cairn mcp`.
#[derive(clap::Args, Debug)]
pub struct McpArgs {
    #[command(flatten)]
    pub gen: GenArgs,
}

/// `cairn mcp`'s flags over the configuration.
pub fn apply(cfg: &mut Config, args: &McpArgs) {
    crate::ask::apply(cfg, &args.gen);
}

/// What the first call loads.
struct Loaded {
    collections: Arc<dyn Collections>,
    /// A cluster's connection runs on it.
    _rt: Option<tokio::runtime::Runtime>,
}

/// The collections, loaded (models and all) on first use; a failed load
/// is an error for that call and tried again on the next.
struct LazyCollections {
    cfg: Config,
    cluster: Option<String>,
    loaded: Mutex<Option<Arc<Loaded>>>,
}

impl LazyCollections {
    fn load(&self) -> Result<Arc<Loaded>> {
        let cfg = &self.cfg;
        let embedder = cairn_engine::load_embedder(cfg).context("loading the embedding model")?;
        Ok(Arc::new(match &self.cluster {
            Some(url) => {
                let rt = crate::target::runtime()?;
                let c = cairn_cluster::ClusterCollections::connect(
                    cfg,
                    url,
                    embedder,
                    rt.handle().clone(),
                )?;
                Loaded {
                    collections: Arc::new(c),
                    _rt: Some(rt),
                }
            }
            None => {
                // Extractive answers need no generator: none is loaded.
                let generator = if cfg.generate.extractive {
                    None
                } else {
                    Some(cairn_engine::load_generator(cfg).context("loading the generator")?)
                };
                Loaded {
                    collections: Arc::new(cairn_engine::LocalCollections::new(
                        cfg.clone(),
                        embedder,
                        generator,
                    )),
                    _rt: None,
                }
            }
        }))
    }

    fn get(&self) -> cairn_engine::Result<Arc<Loaded>> {
        let mut slot = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = slot.as_ref() {
            return Ok(l.clone());
        }
        let started = std::time::Instant::now();
        let l = self.load().map_err(|e| {
            tracing::error!("{e:#}");
            EngineError::Unavailable(format!("{e:#}"))
        })?;
        tracing::info!(
            seconds = started.elapsed().as_secs_f64(),
            "loaded the models"
        );
        *slot = Some(l.clone());
        Ok(l)
    }

    /// The loaded collections, without loading them.
    fn loaded(&self) -> Option<Arc<Loaded>> {
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Collections for LazyCollections {
    fn names(&self) -> cairn_engine::Result<Vec<String>> {
        match &self.cluster {
            Some(_) => self.get()?.collections.names(),
            // Listing a data directory needs no model.
            None => Ok(cairn_engine::list_collections(&self.cfg.data_dir())),
        }
    }

    fn open(&self, name: &str, create: bool) -> cairn_engine::Result<Arc<dyn Collection>> {
        self.get()?.collections.open(name, create)
    }

    fn delete(&self, name: &str) -> cairn_engine::Result<()> {
        self.get()?.collections.delete(name)
    }

    fn opened(&self) -> Vec<Arc<dyn Collection>> {
        self.loaded()
            .map(|l| l.collections.opened())
            .unwrap_or_default()
    }

    fn close_idle(&self, idle: Duration) -> Vec<String> {
        self.loaded()
            .map(|l| l.collections.close_idle(idle))
            .unwrap_or_default()
    }

    fn describe(&self) -> String {
        match self.loaded() {
            Some(l) => l.collections.describe(),
            None => "not loaded yet".into(),
        }
    }
}

pub fn run(cfg: Config, cluster: Option<&str>) -> Result<ExitCode> {
    let collections = Arc::new(LazyCollections {
        cfg: cfg.clone(),
        cluster: cluster.map(str::to_string),
        loaded: Mutex::new(None),
    });
    let opts = cairn_mcp::Options::from_config(&cfg, cairn_mcp::IngestFrom::Paths);
    let server = Arc::new(cairn_mcp::McpServer::new(collections.clone(), opts));
    {
        let c = collections.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(IDLE_CLOSE / 4);
            c.close_idle(IDLE_CLOSE);
        });
    }
    eprintln!(
        "cairn mcp: serving MCP on stdin/stdout (default collection `{}`{})",
        cfg.collection,
        cluster
            .map(|u| format!(", cluster {u}"))
            .unwrap_or_default()
    );
    cairn_mcp::stdio::serve(server, std::io::stdin().lock(), std::io::stdout())?;
    Ok(ExitCode::SUCCESS)
}
