//! Shard snapshots: a replica's catalog, exported at a log sequence into
//! JetStream's object store (bucket [`SNAPSHOTS_BUCKET`], one object per
//! shard, the sequence in its metadata). A new replica starts from the
//! latest snapshot and then consumes the log from the sequence after it,
//! which is what lets a shard's log be trimmed below its snapshot.

use crate::{token, ClusterError, Result};
use async_nats::jetstream::{self, object_store::ObjectStore};
use cairn_core::Seq;
use std::path::Path;
use tokio::io::AsyncWriteExt;

/// The object-store bucket of shard snapshots.
pub const SNAPSHOTS_BUCKET: &str = "cairn-snapshots";

/// The object holding one shard's latest snapshot.
pub fn object_name(collection: &str, shard: u32) -> String {
    format!("{}.{shard}", token(collection))
}

/// The snapshot bucket, created when missing.
pub(crate) async fn bucket(js: &jetstream::Context, replicas: usize) -> Result<ObjectStore> {
    object_store(js, SNAPSHOTS_BUCKET, "cairn shard snapshots", replicas).await
}

/// An object store, created when missing (its stream configured as the
/// client would, without the fields nats-server 2.9 does not know).
pub(crate) async fn object_store(
    js: &jetstream::Context,
    name: &str,
    description: &str,
    replicas: usize,
) -> Result<ObjectStore> {
    if let Ok(s) = js.get_object_store(name).await {
        return Ok(s);
    }
    let created = js
        .create_object_store(jetstream::object_store::Config {
            bucket: name.to_string(),
            description: Some(description.into()),
            num_replicas: replicas,
            ..Default::default()
        })
        .await;
    match created {
        Ok(s) => Ok(s),
        // Another node created it meanwhile.
        Err(e) => js
            .get_object_store(name)
            .await
            .map_err(|_| ClusterError::js(format!("creating the object store {name}"), e)),
    }
}

/// The sequence of the shard's latest snapshot, if there is one.
pub(crate) async fn latest(store: &ObjectStore, collection: &str, shard: u32) -> Option<Seq> {
    let info = store.info(object_name(collection, shard)).await.ok()?;
    if info.deleted {
        return None;
    }
    info.metadata.get("seq")?.parse().ok()
}

/// Store `file` (a catalog exported at `seq`) as the shard's snapshot.
pub(crate) async fn put(
    store: &ObjectStore,
    collection: &str,
    shard: u32,
    file: &Path,
    seq: Seq,
    node: &str,
) -> Result<()> {
    let mut f = tokio::fs::File::open(file)
        .await
        .map_err(|e| ClusterError::Shard {
            path: file.to_path_buf(),
            reason: e.to_string(),
        })?;
    let meta = jetstream::object_store::ObjectMetadata {
        name: object_name(collection, shard),
        description: Some(format!("{collection} shard {shard} at sequence {seq}")),
        metadata: [
            ("seq".to_string(), seq.to_string()),
            ("node".to_string(), node.to_string()),
        ]
        .into(),
        ..Default::default()
    };
    store.put(meta, &mut f).await.map_err(|e| {
        ClusterError::js(format!("storing the snapshot of {collection}/{shard}"), e)
    })?;
    Ok(())
}

/// Download the shard's latest snapshot into `dest` (a new file); its
/// sequence.
pub(crate) async fn fetch(
    store: &ObjectStore,
    collection: &str,
    shard: u32,
    dest: &Path,
) -> Result<Seq> {
    let name = object_name(collection, shard);
    let what = format!("reading the snapshot of {collection}/{shard}");
    let mut object = store
        .get(&name)
        .await
        .map_err(|e| ClusterError::js(&what, e))?;
    let seq: Seq = object
        .info()
        .metadata
        .get("seq")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClusterError::js(&what, "no sequence in its metadata"))?;
    let io = |e: std::io::Error| ClusterError::Shard {
        path: dest.to_path_buf(),
        reason: e.to_string(),
    };
    let mut out = tokio::fs::File::create(dest).await.map_err(io)?;
    tokio::io::copy(&mut object, &mut out).await.map_err(io)?;
    out.flush().await.map_err(io)?;
    out.sync_all().await.map_err(io)?;
    Ok(seq)
}
