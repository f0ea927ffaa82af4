//! What a collection has learned, across a cluster.
//!
//! `cairn --cluster URL improve` runs a round on one node (the one with the
//! most free memory among those holding a shard of the collection), on its
//! copy of one shard. When the round promotes something, that node
//! publishes the artefacts the shard then has installed (`adapter.json`,
//! `reranker/`, `generator/`): each file once, by content, into JetStream's
//! object store ([`ARTEFACTS_BUCKET`], object `<collection>/<blake3>`),
//! and then the collection's [`LearnedLog`] gains a version naming every
//! file and its digest (KV bucket [`LEARNED_BUCKET`], compare-and-set).
//! Every node follows the log: it installs the newest version into each
//! shard of the collection it serves (where the shard's engine reads the
//! query adapter and the reranker) and, when it serves generation, the
//! generator's adapter into `<data>/learned/<collection>/`. A rollback is a
//! new version that restores the files of the version before the newest
//! standing one, so the log is append-only and every node converges on its
//! last version.

use crate::wire::{ImproveEvent, ImproveRequest};
use crate::{ClusterError, Result};
use async_nats::jetstream::{self, kv, object_store::ObjectStore};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tokio::io::AsyncReadExt;

/// KV bucket: collection → its [`LearnedLog`].
pub const LEARNED_BUCKET: &str = "cairn-learned";
/// Object-store bucket of learned artefacts' files, by content.
pub const ARTEFACTS_BUCKET: &str = "cairn-artefacts";
/// What a collection directory holds that `cairn improve` installs: the
/// query adapter's file, and the reranker's and the generator's folders.
pub const ARTEFACT_NAMES: [&str; 3] = [
    cairn_engine::ADAPTER_FILE,
    cairn_engine::RERANKER_DIR,
    cairn_engine::GENERATOR_DIR,
];
/// The most versions a log keeps (older ones cannot be rolled back to).
pub const MAX_VERSIONS: usize = 32;

/// The subject a node takes `cairn improve` rounds on.
pub fn improve_subject(node: &str) -> String {
    format!("cairn.improve.{node}")
}

/// Where a node keeps what a collection learned for its generation
/// replica (the generator's adapter), outside any shard.
pub fn learned_dir(data_dir: &Path, collection: &str) -> PathBuf {
    data_dir.join("learned").join(collection)
}

/// The generator's adapter a generation replica answers `collection`
/// with: the one this node installed for it, when trained for `model`.
pub fn replica_adapter(data_dir: &Path, collection: Option<&str>, model: &str) -> Option<PathBuf> {
    let c = collection?;
    cairn_core::config::validate_collection_name(c).ok()?;
    cairn_engine::generator_adapter_in(&learned_dir(data_dir, c), model)
}

/// One state of what a collection learned: every artefact file, by path
/// under the collection directory, with its BLAKE3 digest (hex).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Learned {
    /// 1, 2, … in the log.
    pub version: u32,
    pub files: BTreeMap<String, String>,
    /// The node that trained it (or rolled back).
    pub node: String,
    /// The shard whose copy it was trained on.
    pub shard: Option<u32>,
    /// The round, in that shard copy's own `improve` history.
    pub round: Option<u32>,
    /// The version this one rolls back, for a rollback.
    #[serde(default)]
    pub undoes: Option<u32>,
    pub at_ms: u64,
    /// The round's record (data sizes, each artefact's held-out figures
    /// before and after, the decision).
    #[serde(default)]
    pub record: serde_json::Value,
}

/// A collection's versions, oldest first; the last is what nodes install.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LearnedLog {
    pub collection: String,
    pub versions: Vec<Learned>,
}

impl Learned {
    /// What the shard copies had installed before the collection's first
    /// round on the cluster: published by that round's node before it
    /// trains, never undone by a rollback.
    pub fn is_baseline(&self) -> bool {
        self.round.is_none() && self.undoes.is_none()
    }
}

impl LearnedLog {
    /// The version nodes install now.
    pub fn current(&self) -> Option<&Learned> {
        self.versions.last()
    }

    /// The files before any version: nothing learned.
    fn files_before(&self, index: usize) -> BTreeMap<String, String> {
        match index {
            0 => BTreeMap::new(),
            i => self.versions[i - 1].files.clone(),
        }
    }

    /// The newest version that a rollback would undo: a round's, not
    /// itself a rollback, not undone yet (or the one named).
    fn to_undo(&self, named: Option<u32>) -> std::result::Result<usize, String> {
        let undone: Vec<u32> = self.versions.iter().filter_map(|v| v.undoes).collect();
        let standing =
            |v: &Learned| !v.is_baseline() && v.undoes.is_none() && !undone.contains(&v.version);
        match named {
            Some(n) => {
                let i = self
                    .versions
                    .iter()
                    .position(|v| v.version == n)
                    .ok_or_else(|| format!("version {n} is not in the log"))?;
                if !standing(&self.versions[i]) {
                    return Err(format!(
                        "version {n} is a rollback, the baseline, or was rolled back already"
                    ));
                }
                Ok(i)
            }
            None => self
                .versions
                .iter()
                .rposition(standing)
                .ok_or_else(|| "nothing to roll back: no standing version".to_string()),
        }
    }

    /// A new version that puts back the files as they were before the
    /// newest standing version (or `named`).
    pub fn rollback(&self, named: Option<u32>, node: &str) -> std::result::Result<Learned, String> {
        let i = self.to_undo(named)?;
        Ok(Learned {
            version: self.next_version(),
            files: self.files_before(i),
            node: node.to_string(),
            shard: None,
            round: None,
            undoes: Some(self.versions[i].version),
            at_ms: crate::wire::now_ms(),
            record: serde_json::Value::Null,
        })
    }

    pub fn next_version(&self) -> u32 {
        self.versions.last().map_or(1, |v| v.version + 1)
    }

    /// Append `v`, keeping at most [`MAX_VERSIONS`].
    pub fn push(&mut self, v: Learned) {
        self.versions.push(v);
        let over = self.versions.len().saturating_sub(MAX_VERSIONS);
        self.versions.drain(..over);
    }
}

/// The artefact files installed in a collection directory, by path under
/// it (`/`-separated), regular files only.
pub fn artefact_files(dir: &Path) -> std::io::Result<BTreeMap<String, PathBuf>> {
    fn walk(
        root: &Path,
        p: &Path,
        out: &mut BTreeMap<String, PathBuf>,
        depth: usize,
    ) -> std::io::Result<()> {
        let meta = match std::fs::symlink_metadata(p) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        if meta.is_file() {
            let rel = p.strip_prefix(root).expect("under the root");
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.insert(rel.join("/"), p.to_path_buf());
        } else if meta.is_dir() && depth < 4 {
            for e in std::fs::read_dir(p)? {
                walk(root, &e?.path(), out, depth + 1)?;
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    for name in ARTEFACT_NAMES {
        walk(dir, &dir.join(name), &mut out, 0)?;
    }
    Ok(out)
}

/// A path of the log, checked: relative, under one of [`ARTEFACT_NAMES`],
/// no `..`, so that a log entry cannot write outside an artefact.
fn checked(rel: &str) -> Option<PathBuf> {
    let parts: Vec<&str> = rel.split('/').collect();
    let ok = !parts.is_empty()
        && ARTEFACT_NAMES.contains(&parts[0])
        && parts
            .iter()
            .all(|p| !p.is_empty() && *p != "." && *p != ".." && !p.contains('\\'));
    ok.then(|| parts.iter().collect())
}

fn hex_digest(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

fn object_name(collection: &str, digest: &str) -> String {
    format!("{collection}/{digest}")
}

fn shard_err(path: &Path, e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Shard {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// The artefacts' object store, created when missing.
pub(crate) async fn artefacts(js: &jetstream::Context, replicas: usize) -> Result<ObjectStore> {
    crate::snapshot::object_store(
        js,
        ARTEFACTS_BUCKET,
        "cairn learned artefacts, by content",
        replicas,
    )
    .await
}

/// The collections' logs bucket, created when missing.
pub(crate) async fn logs(js: &jetstream::Context, replicas: usize) -> Result<kv::Store> {
    crate::node::bucket(js, LEARNED_BUCKET, std::time::Duration::ZERO, replicas).await
}

/// A collection's log and its KV revision (0: none yet).
pub(crate) async fn read_log(store: &kv::Store, collection: &str) -> Result<(LearnedLog, u64)> {
    let entry = store
        .entry(collection)
        .await
        .map_err(|e| ClusterError::js("reading what a collection learned", e))?;
    match entry {
        Some(e) if e.operation == kv::Operation::Put => {
            let log = serde_json::from_slice(&e.value).map_err(|err| ClusterError::Wire {
                subject: format!("{LEARNED_BUCKET}/{collection}"),
                reason: err.to_string(),
            })?;
            Ok((log, e.revision))
        }
        _ => Ok((
            LearnedLog {
                collection: collection.to_string(),
                versions: vec![],
            },
            0,
        )),
    }
}

/// Append a version to a collection's log by compare-and-set, retried when
/// another writer got there first; `make` builds it from the log as read.
pub(crate) async fn append(
    store: &kv::Store,
    collection: &str,
    mut make: impl FnMut(&LearnedLog) -> std::result::Result<Learned, String>,
) -> Result<Learned> {
    for _ in 0..10 {
        let (mut log, revision) = read_log(store, collection).await?;
        let v = make(&log).map_err(|reason| ClusterError::Invalid {
            field: "version",
            reason,
        })?;
        log.push(v.clone());
        let body = serde_json::to_vec(&log).unwrap_or_default();
        let key = collection;
        let done = if revision == 0 {
            store.create(key, body.into()).await.is_ok()
        } else {
            store.update(key, body.into(), revision).await.is_ok()
        };
        if done {
            return Ok(v);
        }
    }
    Err(ClusterError::Unavailable(format!(
        "the log of what `{collection}` learned kept changing under this write: try again"
    )))
}

/// Store every artefact file installed in `dir` (each once: objects are
/// named by content) and return them as a version's files.
pub(crate) async fn upload(
    store: &ObjectStore,
    collection: &str,
    dir: &Path,
) -> Result<BTreeMap<String, String>> {
    let files = artefact_files(dir).map_err(|e| shard_err(dir, e))?;
    let mut out = BTreeMap::new();
    for (rel, path) in files {
        let bytes = tokio::task::spawn_blocking({
            let path = path.clone();
            move || std::fs::read(&path)
        })
        .await
        .map_err(|e| shard_err(&path, e))?
        .map_err(|e| shard_err(&path, e))?;
        let digest = hex_digest(&bytes);
        let name = object_name(collection, &digest);
        let present = matches!(store.info(&name).await, Ok(i) if !i.deleted);
        if !present {
            let meta = jetstream::object_store::ObjectMetadata {
                name: name.clone(),
                description: Some(format!("{collection}: {rel}")),
                ..Default::default()
            };
            store
                .put(meta, &mut bytes.as_slice())
                .await
                .map_err(|e| ClusterError::js(format!("storing {rel} of {collection}"), e))?;
        }
        out.insert(rel, digest);
    }
    Ok(out)
}

/// Make `dir` hold exactly the files of `learned` whose paths start with
/// one of `only` (all artefacts when empty): files whose digest differs
/// are fetched, checked and renamed in (a reranker's weights last, since
/// the engine reloads it when they change), artefact files the version
/// does not name are deleted. Whether anything changed.
pub(crate) async fn install(
    store: &ObjectStore,
    collection: &str,
    learned: &Learned,
    dir: &Path,
    only: &[&str],
) -> Result<bool> {
    let wanted = |rel: &str| only.is_empty() || only.iter().any(|p| rel.starts_with(p));
    let mut files: Vec<(&String, &String)> =
        learned.files.iter().filter(|(r, _)| wanted(r)).collect();
    files.sort_by_key(|(r, _)| (r.ends_with("model.safetensors"), r.to_string()));
    let mut changed = false;
    for (rel, digest) in files {
        let Some(relpath) = checked(rel) else {
            tracing::warn!(
                collection,
                rel,
                "left out a learned file with an unsafe path"
            );
            continue;
        };
        let target = dir.join(&relpath);
        let have = {
            let t = target.clone();
            tokio::task::spawn_blocking(move || std::fs::read(&t).ok().map(|b| hex_digest(&b)))
                .await
                .ok()
                .flatten()
        };
        if have.as_deref() == Some(digest.as_str()) {
            continue;
        }
        let name = object_name(collection, digest);
        let mut object = store
            .get(&name)
            .await
            .map_err(|e| ClusterError::js(format!("fetching {rel} of {collection}"), e))?;
        let mut bytes = Vec::new();
        object
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| ClusterError::js(format!("fetching {rel} of {collection}"), e))?;
        if hex_digest(&bytes) != *digest {
            return Err(ClusterError::js(
                format!("fetching {rel} of {collection}"),
                "its content does not match its digest",
            ));
        }
        let t = target.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let parent = t.parent().expect("under the directory");
            std::fs::create_dir_all(parent)?;
            let tmp = parent.join(format!(
                ".{}.learned-tmp",
                t.file_name().unwrap_or_default().to_string_lossy()
            ));
            std::fs::write(&tmp, &bytes)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &t)
        })
        .await
        .map_err(|e| shard_err(&target, e))?
        .map_err(|e| shard_err(&target, e))?;
        changed = true;
    }
    // What the version does not name goes.
    let present = artefact_files(dir).map_err(|e| shard_err(dir, e))?;
    for (rel, path) in present {
        if wanted(&rel) && !learned.files.contains_key(&rel) {
            std::fs::remove_file(&path).map_err(|e| shard_err(&path, e))?;
            changed = true;
        }
    }
    // Folders left without a file go too (an empty `reranker/` is no
    // reranker).
    let left = artefact_files(dir).map_err(|e| shard_err(dir, e))?;
    for name in ARTEFACT_NAMES {
        let p = dir.join(name);
        let prefix = format!("{name}/");
        if p.is_dir() && !left.keys().any(|k| k.starts_with(&prefix)) {
            let _ = std::fs::remove_dir_all(&p);
        }
    }
    Ok(changed)
}

/// Which node trains: among the live nodes serving a shard of the
/// collection, the one with the most free memory (ties: the first name).
pub fn trainer_of(nodes: &[crate::wire::NodeInfo], collection: &str) -> Option<String> {
    let prefix = format!("{collection}/");
    nodes
        .iter()
        .filter(|n| {
            n.shards
                .iter()
                .any(|(k, st)| k.starts_with(&prefix) && st.collection == collection && st.serving)
        })
        .max_by(|a, b| {
            a.free_memory
                .unwrap_or(0)
                .cmp(&b.free_memory.unwrap_or(0))
                .then_with(|| b.name.cmp(&a.name))
        })
        .map(|n| n.name.clone())
}

/// A round run on the cluster: where, and its record.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterRound {
    pub node: String,
    pub shard: u32,
    /// Free memory each candidate node reported when the trainer was
    /// picked (bytes; node → amount).
    pub free_memory: BTreeMap<String, Option<u64>>,
    pub record: serde_json::Value,
    /// The learned version the round published, when it promoted.
    pub version: Option<u32>,
}

impl crate::Cluster {
    /// Run one `cairn improve` round for `collection` on the node that
    /// trains (see [`trainer_of`]), `options` passed to its trainer;
    /// `progress` sees the node's events as they come.
    pub async fn improve(
        &self,
        collection: &str,
        options: serde_json::Value,
        mut progress: impl FnMut(&ImproveEvent),
    ) -> Result<ClusterRound> {
        if self.collection(collection).await?.is_none() {
            return Err(ClusterError::NoCollection(collection.to_string()));
        }
        let nodes = self.nodes().await?;
        let node = trainer_of(&nodes, collection).ok_or_else(|| {
            ClusterError::Unavailable(format!(
                "no live node serves a shard of `{collection}`: nothing can train on it now"
            ))
        })?;
        let prefix = format!("{collection}/");
        let free_memory = nodes
            .iter()
            .filter(|n| n.shards.keys().any(|k| k.starts_with(&prefix)))
            .map(|n| (n.name.clone(), n.free_memory))
            .collect();
        let body = serde_json::to_vec(&ImproveRequest {
            collection: collection.to_string(),
            options,
        })
        .unwrap_or_default();
        let mut sub = self
            .streamed_request(improve_subject(&node), body.into(), "an improve round")
            .await?;
        let mut shard = None;
        loop {
            // The node says it is alive every 2 s while it trains.
            let idle = self.generation_idle.max(std::time::Duration::from_secs(5));
            let msg = tokio::time::timeout(idle, sub.next())
                .await
                .ok()
                .flatten()
                .ok_or_else(|| {
                    ClusterError::Unavailable(format!(
                        "node {node} stopped answering during the improve round: nothing was published (its copy is put back to what the cluster installs, `improve history`, when it is back)"
                    ))
                })?;
            if msg.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                return Err(ClusterError::Unavailable(format!(
                    "node {node} is not taking improve rounds (it has just started or stopped, or runs an older cairn): try again"
                )));
            }
            let ev: ImproveEvent =
                serde_json::from_slice(&msg.payload).map_err(|e| ClusterError::Wire {
                    subject: improve_subject(&node),
                    reason: e.to_string(),
                })?;
            progress(&ev);
            match ev {
                ImproveEvent::Start { shard: s, .. } => shard = Some(s),
                ImproveEvent::Alive => {}
                ImproveEvent::Done { record, version } => {
                    return Ok(ClusterRound {
                        node,
                        shard: shard.unwrap_or(0),
                        free_memory,
                        record,
                        version,
                    })
                }
                ImproveEvent::Error { node, message } => {
                    return Err(ClusterError::Invalid {
                        field: "improve round",
                        reason: format!("on node {node}: {message}"),
                    })
                }
            }
        }
    }

    /// Install the newest version of what `collection` learned into `dir`
    /// (only the paths starting with one of `only`); that version (0: none
    /// yet, and nothing installed).
    pub async fn sync_learned(&self, collection: &str, dir: &Path, only: &[&str]) -> Result<u32> {
        let replicas = crate::node::replicas_for(&self.client);
        let store = logs(self.jetstream(), replicas).await?;
        let (log, _) = read_log(&store, collection).await?;
        let Some(v) = log.current() else {
            return Ok(0);
        };
        let objects = artefacts(self.jetstream(), replicas).await?;
        install(&objects, collection, v, dir, only).await?;
        Ok(v.version)
    }

    /// What `collection` learned: every version, oldest first.
    pub async fn learned(&self, collection: &str) -> Result<LearnedLog> {
        let store = logs(self.jetstream(), crate::node::replicas_for(&self.client)).await?;
        Ok(read_log(&store, collection).await?.0)
    }

    /// Put back what the newest standing version (or `version`) replaced,
    /// as a new version every node installs.
    pub async fn rollback_learned(
        &self,
        collection: &str,
        version: Option<u32>,
    ) -> Result<Learned> {
        let store = logs(self.jetstream(), crate::node::replicas_for(&self.client)).await?;
        append(&store, collection, |log| log.rollback(version, "client")).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(n: u32, files: &[(&str, &str)], undoes: Option<u32>) -> Learned {
        Learned {
            version: n,
            files: files
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            node: "a".into(),
            shard: Some(0),
            round: Some(n),
            undoes,
            at_ms: 0,
            record: serde_json::Value::Null,
        }
    }

    #[test]
    fn rollbacks_undo_the_newest_standing_version_first() {
        let mut log = LearnedLog::default();
        assert!(log.rollback(None, "a").is_err());
        log.push(version(1, &[("adapter.json", "x1")], None));
        log.push(version(
            2,
            &[("adapter.json", "x1"), ("reranker/model.safetensors", "r2")],
            None,
        ));
        // Undo 2: back to 1's files.
        let r = log.rollback(None, "b").unwrap();
        assert_eq!((r.version, r.undoes), (3, Some(2)));
        assert_eq!(r.files, log.versions[0].files);
        log.push(r);
        // Then 1: back to nothing.
        let r = log.rollback(None, "b").unwrap();
        assert_eq!((r.version, r.undoes), (4, Some(1)));
        assert!(r.files.is_empty());
        log.push(r);
        let e = log.rollback(None, "b").unwrap_err();
        assert!(e.contains("nothing to roll back"), "{e}");
        // Named: a rollback or a version undone cannot be.
        assert!(log.rollback(Some(3), "b").is_err());
        assert!(log.rollback(Some(2), "b").is_err());
        assert!(log
            .rollback(Some(9), "b")
            .unwrap_err()
            .contains("not in the log"));
    }

    #[test]
    fn the_baseline_is_never_rolled_back() {
        let mut log = LearnedLog::default();
        let mut base = version(1, &[("reranker/config.json", "c")], None);
        base.round = None;
        assert!(base.is_baseline());
        log.push(base);
        assert!(log.rollback(None, "a").is_err());
        assert!(log.rollback(Some(1), "a").is_err());
        log.push(version(
            2,
            &[("reranker/config.json", "c"), ("adapter.json", "x")],
            None,
        ));
        let r = log.rollback(None, "a").unwrap();
        assert_eq!((r.undoes, &r.files), (Some(2), &log.versions[0].files));
    }

    #[test]
    fn the_log_keeps_its_newest_versions() {
        let mut log = LearnedLog::default();
        for n in 1..=(MAX_VERSIONS as u32 + 5) {
            let v = version(log.next_version(), &[], None);
            assert_eq!(v.version, n);
            log.push(v);
        }
        assert_eq!(log.versions.len(), MAX_VERSIONS);
        assert_eq!(log.current().unwrap().version, MAX_VERSIONS as u32 + 5);
    }

    #[test]
    fn a_replica_answers_with_the_adapter_its_node_installed_for_the_collection() {
        let d = tempfile::tempdir().unwrap();
        let lora = learned_dir(d.path(), "docs").join(cairn_engine::GENERATOR_ADAPTER);
        std::fs::create_dir_all(lora.parent().unwrap()).unwrap();
        cairn_generate::gguf::write_minimal(&lora, &[("cairn.base_model", "SmolLM2")]).unwrap();
        assert_eq!(
            replica_adapter(d.path(), Some("docs"), "SmolLM2"),
            Some(lora.clone())
        );
        // Another model's, another collection's, none asked, a name that
        // is no collection's: none.
        assert_eq!(replica_adapter(d.path(), Some("docs"), "gemma"), None);
        assert_eq!(replica_adapter(d.path(), Some("other"), "SmolLM2"), None);
        assert_eq!(replica_adapter(d.path(), None, "SmolLM2"), None);
        assert_eq!(
            replica_adapter(d.path(), Some("../learned/docs"), "SmolLM2"),
            None
        );
    }

    #[test]
    fn artefact_files_are_listed_and_log_paths_checked() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("adapter.json"), b"{}").unwrap();
        std::fs::create_dir_all(d.path().join("reranker")).unwrap();
        std::fs::write(d.path().join("reranker/config.json"), b"{}").unwrap();
        std::fs::write(d.path().join("catalog.sqlite"), b"").unwrap();
        let f = artefact_files(d.path()).unwrap();
        assert_eq!(
            f.keys().collect::<Vec<_>>(),
            ["adapter.json", "reranker/config.json"]
        );
        assert!(checked("reranker/config.json").is_some());
        for bad in [
            "catalog.sqlite",
            "../adapter.json",
            "reranker/../../x",
            "reranker//x",
            "",
        ] {
            assert!(checked(bad).is_none(), "{bad}");
        }
    }
}
