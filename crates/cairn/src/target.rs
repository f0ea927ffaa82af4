//! Which collection a command drives: the local one (opened for writing
//! or read-only, see `open.rs`) or, with `--cluster URL`, a cluster's.
//! Either way the command sees one [`Collection`].

use anyhow::{Context, Result};
use cairn_cluster::{ClusterCollection, ClusterCollections};
use cairn_core::config::Config;
use cairn_engine::{Collection, LocalCollection};
use cairn_generate::Generator;
use std::sync::Arc;

/// A collection, with what keeps it reachable.
pub struct Target {
    pub collection: Arc<dyn Collection>,
    /// The cluster's collection, typed (`None` locally).
    pub cluster: Option<Arc<ClusterCollection>>,
    /// A cluster's connection runs on it; dropped last.
    _rt: Option<tokio::runtime::Runtime>,
}

/// The async runtime a cluster connection runs on.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Connect to the cluster at `url` with the configured embedding model.
pub fn connect(
    cfg: &Config,
    url: &str,
    rt: &tokio::runtime::Runtime,
) -> Result<ClusterCollections> {
    let embedder = cairn_engine::load_embedder(cfg).context("loading the embedding model")?;
    Ok(ClusterCollections::connect(
        cfg,
        url,
        embedder,
        rt.handle().clone(),
    )?)
}

impl Target {
    /// A local collection (its engine opened by the caller) answering with
    /// `generator`.
    pub fn local(engine: cairn_engine::Engine, generator: Option<Arc<dyn Generator>>) -> Target {
        Target {
            collection: Arc::new(LocalCollection::new(engine, generator)),
            cluster: None,
            _rt: None,
        }
    }

    /// The configured collection of the cluster at `url`; with `create`, it
    /// is created with the cluster's defaults when missing.
    pub fn cluster(cfg: &Config, url: &str, create: bool) -> Result<Target> {
        let rt = runtime()?;
        let c = connect(cfg, url, &rt)?.collection(&cfg.collection, create)?;
        Ok(Target {
            collection: c.clone(),
            cluster: Some(c),
            _rt: Some(rt),
        })
    }
}
