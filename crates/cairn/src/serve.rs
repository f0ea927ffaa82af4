//! `cairn serve`: configuration → embedder, generator → the HTTP server,
//! until SIGTERM or Ctrl-C. With `--cluster URL`, the server serves the
//! cluster's collections (answers come from its generation replicas) with
//! the same API and web UI.

use crate::GenArgs;
use anyhow::{Context, Result};
use cairn_core::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Flags of `cairn serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Listen address (default 127.0.0.1:8080; any other needs CAIRN_API_KEY).
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// Asks allowed to wait for the generator before 503s.
    #[arg(long, value_name = "N")]
    pub queue: Option<usize>,
    /// Keep the default collection in step with these files or folders
    /// while serving (see `cairn watch`); repeatable.
    #[arg(long, value_name = "PATH")]
    pub watch: Vec<std::path::PathBuf>,
    #[command(flatten)]
    pub gen: GenArgs,
}

/// `cairn serve`'s flags over the configuration.
pub fn apply(cfg: &mut Config, args: &ServeArgs) {
    crate::ask::apply(cfg, &args.gen);
    if let Some(a) = &args.addr {
        cfg.server.addr = a.clone();
    }
    if let Some(q) = args.queue {
        cfg.server.queue = q;
    }
}

pub fn serve(cfg: Config, cluster: Option<&str>, watch: &[PathBuf]) -> Result<ExitCode> {
    let addr = cairn_server::check_bind(&cfg.server.addr, !cfg.server.api_keys.is_empty())?;
    for p in watch {
        if !p.exists() {
            anyhow::bail!("--watch {}: no such file or folder", p.display());
        }
    }
    let embedder = cairn_engine::load_embedder(&cfg).context("loading the embedding model")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (collections, answers): (Arc<dyn cairn_engine::Collections>, String) = match cluster {
        Some(url) => {
            let c = cairn_cluster::ClusterCollections::connect(
                &cfg,
                url,
                embedder.clone(),
                runtime.handle().clone(),
            )?;
            let what = cairn_engine::Collections::describe(&c);
            (Arc::new(c), what)
        }
        None => {
            let generator: Arc<dyn cairn_generate::Generator> =
                cairn_engine::load_generator(&cfg).context("loading the generator")?;
            let c =
                cairn_engine::LocalCollections::new(cfg.clone(), embedder.clone(), Some(generator));
            let what = cairn_engine::Collections::describe(&c);
            (Arc::new(c), what)
        }
    };
    // Opened here, not inside the runtime: a cluster's collection blocks on
    // its own runtime handle.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = if watch.is_empty() {
        None
    } else {
        let collection = collections.open(&cfg.collection, true)?;
        let opts = crate::watch::options(&cfg, 250);
        Some(crate::watch::spawn(
            collection,
            opts,
            watch.to_vec(),
            stop.clone(),
            cfg.ingest.background_nice,
        ))
    };
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| cairn_server::ServerError::Bind { addr, source })?;
        let local = listener.local_addr()?;
        // Tests and scripts read this line to learn the port (with :0).
        eprintln!(
            "cairn serve: listening on http://{local} (collection `{}`, answers from {answers})",
            cfg.collection,
        );
        let state = cairn_server::AppState::with_collections(cfg, embedder, collections);
        cairn_server::serve(state, listener, shutdown_signal()).await?;
        Ok::<_, anyhow::Error>(())
    });
    stop.store(true, Ordering::SeqCst);
    if let Some(w) = watcher {
        let _ = w.join();
    }
    served?;
    eprintln!("cairn serve: stopped");
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    terminated().await;
    eprintln!(
        "cairn serve: shutting down (finishing in-flight requests and the running ingestion job)"
    );
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn terminated() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
