//! A node's part in what collections learn (`crate::learned`): it runs
//! the `cairn improve` rounds sent to it, on its copy of a shard, and
//! publishes what a round promoted; and it installs every collection's
//! newest learned version into the shards it serves and, for its
//! generation replica, into `<data>/learned/<collection>/`.

use super::{lock, replicas_for, Shared};
use crate::learned::{self, Learned, LearnedLog};
use crate::wire::{ImproveEvent, ImproveRequest};
use crate::{shard_collection, ClusterError, Result};
use cairn_core::config::Config;
use futures::StreamExt;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Runs one `cairn improve` round on a local collection (a shard's copy,
/// named by `cfg.collection`) with the options the requester sent, and
/// returns the round's record as `cairn improve --json` prints it. The
/// binary provides it: training is its glue, not the cluster's.
pub type Trainer = Arc<
    dyn Fn(&Config, &serde_json::Value) -> std::result::Result<serde_json::Value, String>
        + Send
        + Sync,
>;

/// Memory available to new work (`MemAvailable` of `/proc/meminfo`), bytes.
pub(crate) fn free_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Whether a round's record promoted anything.
fn promoted(record: &serde_json::Value) -> bool {
    record["decisions"]
        .as_array()
        .is_some_and(|d| d.iter().any(|x| x["promoted"] == true))
}

/// Follow every collection's learned log and install its newest version
/// where this node uses it: each shard it serves (checked every few
/// seconds, so a shard taken over later gets it too), and the learned
/// folder of its generation replica.
pub(super) async fn follow_learned(s: Arc<Shared>) -> Result<()> {
    let replicas = replicas_for(&s.client);
    let logs = learned::logs(&s.js, replicas).await?;
    let store = learned::artefacts(&s.js, replicas).await?;
    let mut watch = logs
        .watch_with_history(">")
        .await
        .map_err(|e| ClusterError::js("watching what collections learned", e))?;
    let mut latest: HashMap<String, Learned> = HashMap::new();
    let mut installed: HashMap<PathBuf, u32> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let data_dir = s.cfg.data_dir();
    loop {
        tokio::select! {
            entry = watch.next() => {
                let Some(entry) = entry else { break };
                let entry = entry.map_err(|e| ClusterError::js("watching what collections learned", e))?;
                match serde_json::from_slice::<LearnedLog>(&entry.value) {
                    Ok(log) => {
                        if let Some(v) = log.current() {
                            latest.insert(log.collection.clone(), v.clone());
                        }
                    }
                    Err(e) => tracing::warn!(key = entry.key, "unreadable learned log: {e}"),
                }
            }
            _ = tick.tick() => {}
        }
        for (coll, v) in &latest {
            let mut dirs: Vec<(PathBuf, &[&str])> = lock(&s.serving)
                .keys()
                .filter(|(c, _)| c == coll)
                .map(|(c, i)| {
                    (
                        cairn_engine::collection_dir(&data_dir, &shard_collection(c, *i)),
                        &[][..],
                    )
                })
                .collect();
            if s.generator.is_some() {
                dirs.push((learned::learned_dir(&data_dir, coll), &["generator/"][..]));
            }
            for (dir, only) in dirs {
                if installed.get(&dir) == Some(&v.version) || lock(&s.training).contains(&dir) {
                    continue;
                }
                match learned::install(&store, coll, v, &dir, only).await {
                    Ok(changed) => {
                        if changed {
                            tracing::info!(
                                collection = coll,
                                version = v.version,
                                dir = %dir.display(),
                                "installed what the collection learned"
                            );
                        }
                        installed.insert(dir, v.version);
                    }
                    Err(e) => tracing::warn!(
                        collection = coll,
                        version = v.version,
                        "installing what the collection learned: {e}"
                    ),
                }
            }
        }
    }
    Ok(())
}

/// Take `cairn improve` rounds on this node's subject, one at a time.
pub(super) async fn serve_improve(s: Arc<Shared>, trainer: Trainer) -> Result<()> {
    let mut sub = s
        .client
        .subscribe(learned::improve_subject(&s.name))
        .await
        .map_err(|e| ClusterError::js("subscribing to improve rounds", e))?;
    let busy = Arc::new(AtomicBool::new(false));
    while let Some(msg) = sub.next().await {
        let Some(reply) = msg.reply.clone() else {
            continue;
        };
        let send = {
            let client = s.client.clone();
            let reply = reply.clone();
            move |ev: ImproveEvent| {
                let client = client.clone();
                let reply = reply.clone();
                async move {
                    let body = serde_json::to_vec(&ev).unwrap_or_default();
                    let _ = client.publish(reply, body.into()).await;
                    let _ = client.flush().await;
                }
            }
        };
        if busy.swap(true, Ordering::SeqCst) {
            send(ImproveEvent::Error {
                node: s.name.clone(),
                message: "this node is running another improve round: try again when it is done"
                    .into(),
            })
            .await;
            continue;
        }
        let (s, trainer, busy) = (s.clone(), trainer.clone(), busy.clone());
        tokio::spawn(async move {
            let ev = match round(&s, trainer, &msg.payload, &send).await {
                Ok(ev) => ev,
                Err(e) => ImproveEvent::Error {
                    node: s.name.clone(),
                    message: e.to_string(),
                },
            };
            send(ev).await;
            busy.store(false, Ordering::SeqCst);
        });
    }
    Ok(())
}

async fn round<F, Fut>(
    s: &Arc<Shared>,
    trainer: Trainer,
    payload: &[u8],
    send: &F,
) -> Result<ImproveEvent>
where
    F: Fn(ImproveEvent) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let req: ImproveRequest = serde_json::from_slice(payload).map_err(|e| ClusterError::Wire {
        subject: learned::improve_subject(&s.name),
        reason: e.to_string(),
    })?;
    // The shard of the collection this node serves with the most
    // documents: the most to learn from.
    let engines: Vec<(u32, Arc<cairn_engine::Engine>)> = lock(&s.serving)
        .iter()
        .filter(|((c, _), _)| *c == req.collection)
        .filter_map(|((_, i), e)| e.upgrade().map(|e| (*i, e)))
        .collect();
    let mut best: Option<(u32, usize)> = None;
    for (i, e) in engines {
        let n = tokio::task::spawn_blocking(move || e.documents().map(|d| d.len()))
            .await
            .map_err(|e| ClusterError::js("join", e))??;
        if best.is_none_or(|(_, m)| n > m) {
            best = Some((i, n));
        }
    }
    let Some((shard, _)) = best else {
        return Err(ClusterError::Unavailable(format!(
            "node {} serves no shard of `{}` now",
            s.name, req.collection
        )));
    };
    send(ImproveEvent::Start {
        node: s.name.clone(),
        shard,
    })
    .await;
    let mut cfg = s.cfg.clone();
    cfg.collection = shard_collection(&req.collection, shard);
    let dir = cairn_engine::collection_dir(&cfg.data_dir(), &cfg.collection);
    // The copy is this round's until it has published.
    struct Training<'a>(&'a Shared, PathBuf);
    impl Drop for Training<'_> {
        fn drop(&mut self) {
            lock(&self.0.training).remove(&self.1);
        }
    }
    lock(&s.training).insert(dir.clone());
    let _training = Training(s, dir.clone());
    let replicas = replicas_for(&s.client);
    let store = learned::artefacts(&s.js, replicas).await?;
    let logs = learned::logs(&s.js, replicas).await?;
    // Before the collection's first round: what this copy has installed
    // is the baseline every node follows from now on. So a round killed
    // before it publishes leaves this copy to be put back to the log when
    // the node is back, as any other copy would be.
    let (log, _) = learned::read_log(&logs, &req.collection).await?;
    if log.versions.is_empty() {
        let files = learned::upload(&store, &req.collection, &dir).await?;
        learned::append(&logs, &req.collection, |log| {
            if !log.versions.is_empty() {
                return Err("another node published a version first".into());
            }
            Ok(Learned {
                version: log.next_version(),
                files: files.clone(),
                node: s.name.clone(),
                shard: Some(shard),
                round: None,
                undoes: None,
                at_ms: crate::wire::now_ms(),
                record: serde_json::Value::Null,
            })
        })
        .await
        .ok();
    }
    let options = req.options.clone();
    let work = tokio::task::spawn_blocking(move || trainer(&cfg, &options));
    tokio::pin!(work);
    let mut alive = tokio::time::interval(Duration::from_secs(2));
    let record = loop {
        tokio::select! {
            r = &mut work => break r.map_err(|e| ClusterError::js("join", e))?,
            _ = alive.tick() => send(ImproveEvent::Alive).await,
        }
    };
    let record = record.map_err(|message| ClusterError::Invalid {
        field: "improve round",
        reason: message,
    })?;
    if !promoted(&record) {
        return Ok(ImproveEvent::Done {
            record,
            version: None,
        });
    }
    // What the shard copy has installed now, for every node.
    let files = learned::upload(&store, &req.collection, &dir).await?;
    let round_no = record["round"].as_u64().map(|r| r as u32);
    let v = learned::append(&logs, &req.collection, |log| {
        Ok(Learned {
            version: log.next_version(),
            files: files.clone(),
            node: s.name.clone(),
            shard: Some(shard),
            round: round_no,
            undoes: None,
            at_ms: crate::wire::now_ms(),
            record: record.clone(),
        })
    })
    .await?;
    tracing::info!(
        collection = req.collection,
        version = v.version,
        "published what the round promoted"
    );
    Ok(ImproveEvent::Done {
        record,
        version: Some(v.version),
    })
}
