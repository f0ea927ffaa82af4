//! `cairn-bench cluster-search`: retrieval through a running cluster
//! (scatter-gather over NATS), and the same queries in process on one
//! node's copy of the corpus, for the overhead.
//!
//! Queries are embedded once up front, so both sides measure retrieval
//! only. Latency is measured one query at a time; throughput with
//! `--concurrency` queries in flight. Each of `--rounds` rounds measures
//! both sides, mode after mode; the figures are the medians over the
//! rounds (each round's own are under `rounds`). One at a time, the same
//! queries also go through a second client that asks every shard through
//! its queue group (`Cluster::node_asks` off), as before node subjects.

use crate::{config, percentile, questions, Args};
use anyhow::{Context, Result};
use cairn_cluster::merge::Fusion;
use cairn_cluster::Cluster;
use cairn_core::{NoProgress, SearchMode};
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;

fn summary(lat: &mut [f64], wall_s: f64) -> Value {
    lat.sort_by(f64::total_cmp);
    serde_json::json!({
        "p50_ms": percentile(lat, 0.5),
        "p99_ms": percentile(lat, 0.99),
        "qps": lat.len() as f64 / wall_s,
    })
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// The median over `rounds` of every number in them (the first round's
/// shape; a number missing from some round is the median of the others).
fn medians(rounds: &[Value]) -> Value {
    fn at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
        path.iter().try_fold(v, |v, k| v.get(k))
    }
    fn walk(first: &Value, rounds: &[Value], path: &mut Vec<String>) -> Value {
        match first {
            Value::Object(m) => {
                let mut out = serde_json::Map::new();
                for (k, v) in m {
                    path.push(k.clone());
                    out.insert(k.clone(), walk(v, rounds, path));
                    path.pop();
                }
                Value::Object(out)
            }
            Value::Number(_) => {
                let mut xs: Vec<f64> = rounds
                    .iter()
                    .filter_map(|r| at(r, path).and_then(Value::as_f64))
                    .collect();
                xs.sort_by(f64::total_cmp);
                percentile(&xs, 0.5).into()
            }
            other => other.clone(),
        }
    }
    match rounds.first() {
        Some(first) => walk(first, rounds, &mut Vec::new()),
        None => Value::Null,
    }
}

pub fn search(a: &Args) -> Result<Value> {
    let cfg = config(a.data_dir.clone())?;
    let embedder = cairn_engine::load_embedder(&cfg)?;
    let queries = questions(a.queries);
    let vectors: Vec<Vec<f32>> = queries
        .iter()
        .map(|q| embedder.embed_query(q))
        .collect::<Result<_, _>>()?;
    let fusion = Fusion::from_config(&cfg.search);
    let url = a.url.clone().context("--url NATS_URL is needed")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let cluster = Arc::new(rt.block_on(Cluster::connect(&url))?);
    // The same client asking every shard through its queue group, as
    // before node subjects: the figure the node asks are compared with.
    let mut queue_only = rt.block_on(Cluster::connect(&url))?;
    queue_only.node_asks = false;
    let info = rt.block_on(cluster.open_collection(
        &a.collection,
        embedder.model_id(),
        embedder.dim(),
        false,
    ))?;
    let nodes = rt.block_on(cluster.nodes())?.len();
    // The same queries in process on one node holding the whole corpus.
    let single = match &a.data_dir {
        Some(dir) => {
            let mut c = cfg.clone();
            c.data_dir = Some(dir.clone());
            c.collection = a.collection.clone();
            Some(cairn_engine::Engine::open_with_embedder(
                &c,
                embedder.clone(),
                &NoProgress,
            )?)
        }
        None => None,
    };
    let modes = [SearchMode::Dense, SearchMode::Hybrid];
    // Warm-up.
    for mode in modes {
        for (q, v) in queries.iter().zip(&vectors).take(5) {
            rt.block_on(cluster.search(&info, q, Some(v), 10, mode, &fusion))?;
            rt.block_on(queue_only.search(&info, q, Some(v), 10, mode, &fusion))?;
        }
    }
    let mut rounds = Vec::new();
    for _ in 0..a.rounds.max(1) {
        let mut round = serde_json::json!({});
        for mode in modes {
            // One at a time.
            let mut lat = Vec::new();
            let mut shard_max = Vec::new();
            let mut incomplete = 0;
            let t0 = Instant::now();
            for (q, v) in queries.iter().zip(&vectors) {
                let t = Instant::now();
                let r = rt.block_on(cluster.search(&info, q, Some(v), 10, mode, &fusion))?;
                lat.push(t.elapsed().as_secs_f64() * 1e3);
                shard_max.push(r.shard_ms.iter().copied().fold(0.0, f64::max));
                incomplete += (r.shards_ok < r.shards_total) as u32;
            }
            let serial = summary(&mut lat.clone(), t0.elapsed().as_secs_f64());
            let mut lat_q = Vec::new();
            let tq = Instant::now();
            for (q, v) in queries.iter().zip(&vectors) {
                let t = Instant::now();
                rt.block_on(queue_only.search(&info, q, Some(v), 10, mode, &fusion))?;
                lat_q.push(t.elapsed().as_secs_f64() * 1e3);
            }
            let queue_groups = summary(&mut lat_q, tq.elapsed().as_secs_f64());
            // `concurrency` queries in flight.
            let t0 = Instant::now();
            let lat_c: Vec<f64> = rt.block_on(async {
                let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let mut tasks = Vec::new();
                for _ in 0..a.concurrency.max(1) {
                    let (cluster, info, next) = (cluster.clone(), info.clone(), next.clone());
                    let (queries, vectors) = (queries.clone(), vectors.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut out = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            if i >= queries.len() {
                                break;
                            }
                            let t = Instant::now();
                            if cluster
                                .search(&info, &queries[i], Some(&vectors[i]), 10, mode, &fusion)
                                .await
                                .is_ok()
                            {
                                out.push(t.elapsed().as_secs_f64() * 1e3);
                            }
                        }
                        out
                    }));
                }
                let mut all = Vec::new();
                for t in tasks {
                    all.extend(t.await.unwrap_or_default());
                }
                all
            });
            let concurrent = summary(&mut lat_c.clone(), t0.elapsed().as_secs_f64());
            round[format!("{mode}")] = serde_json::json!({
                "serial": serial,
                "queue_groups_serial": queue_groups,
                "concurrent": concurrent,
                "slowest_shard_ms_mean": mean(&shard_max),
                "coordinator_ms_mean": mean(&lat) - mean(&shard_max),
                "incomplete": incomplete,
            });
            // The peer, right after.
            if let Some(engine) = &single {
                let mut lat = Vec::new();
                let t0 = Instant::now();
                for (q, v) in queries.iter().zip(&vectors) {
                    let t = Instant::now();
                    let ranked = engine.rank_embedded(q, Some(v), 10, mode)?;
                    engine.hits(&ranked)?;
                    lat.push(t.elapsed().as_secs_f64() * 1e3);
                }
                round[format!("single_{mode}")] = summary(&mut lat, t0.elapsed().as_secs_f64());
            }
        }
        rounds.push(round);
    }
    // The two-phase search against the one-round search it replaced, on
    // every query: the same hits (chunk, text, rank, score and cosine bits).
    let mut differ = serde_json::json!({});
    for mode in modes {
        let key = |r: &cairn_cluster::SearchResult| -> Vec<_> {
            r.hits
                .iter()
                .map(|h| {
                    (
                        h.shard,
                        h.hit.chunk,
                        h.hit.rank,
                        h.hit.score.to_bits(),
                        h.cosine.to_bits(),
                        h.hit.text.clone(),
                    )
                })
                .collect()
        };
        let mut n = 0;
        for (q, v) in queries.iter().zip(&vectors) {
            let two = rt.block_on(cluster.search(&info, q, Some(v), 10, mode, &fusion))?;
            let one =
                rt.block_on(cluster.search_one_phase(&info, q, Some(v), 10, mode, &fusion))?;
            n += (key(&two) != key(&one)) as u32;
        }
        differ[format!("{mode}")] = n.into();
    }
    let mut result = medians(&rounds);
    result["queries_whose_hits_differ_from_one_round"] = differ;
    let header = serde_json::json!({
        "bench": "cluster-search",
        "nodes": nodes,
        "shards": info.shards,
        "replicas": info.replicas,
        "queries": queries.len(),
        "concurrency": a.concurrency,
        "rounds_measured": rounds.len(),
        "figures": "medians over the rounds",
    });
    for (k, v) in header.as_object().into_iter().flatten() {
        result[k] = v.clone();
    }
    if let Some(engine) = &single {
        result["single_chunks"] = engine.status()?.chunks.into();
    }
    result["rounds"] = Value::Array(rounds);
    Ok(result)
}
