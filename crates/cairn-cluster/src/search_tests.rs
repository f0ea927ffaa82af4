//! The two-phase search over NATS against the one-round search, on real
//! shards: a `nats-server` (JetStream on, for the client's buckets), shard
//! replicas answering with the node's own code ([`shard_respond`]) over
//! catalogs embedded with the real int8 all-MiniLM-L6-v2, and the client's
//! [`Cluster::search`]. Replicas that die or change between the two phases
//! are staged here too.

use crate::merge::Fusion;
use crate::node::{node_respond, shard_respond};
use crate::wire::{self, Ask, CollectionInfo, ShardAsk};
use crate::{search_subject, Cluster, SearchResult};
use cairn_core::config::Config;
use cairn_core::{NoProgress, SearchMode};
use cairn_engine::{Engine, IngestOptions};
use cairn_models::SentenceEncoder;
use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const COLLECTION: &str = "docs";

struct NatsServer(Child);

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `nats-server -js` on a free port; its URL.
fn nats(dir: &Path) -> (NatsServer, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server (Debian package `nats-server`) must be installed");
    let server = NatsServer(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, format!("nats://127.0.0.1:{port}"))
}

fn embedder() -> Arc<dyn SentenceEncoder> {
    static MODEL: OnceLock<Arc<cairn_models::OnnxEmbedder>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let opts = cairn_models::OnnxOptions {
                onnx_file: None,
                dylib: Some(cairn_testkit::onnxruntime_lib()),
                threads: 2,
                batch_size: 16,
            };
            Arc::new(
                cairn_models::OnnxEmbedder::load(
                    &cairn_testkit::minilm_int8_dir(),
                    cairn_models::Device::Cpu,
                    &opts,
                )
                .unwrap(),
            )
        })
        .clone()
}

fn engine(data: &Path) -> Engine {
    let cfg = Config {
        data_dir: Some(data.to_path_buf()),
        models_dir: Some(cairn_testkit::models_dir()),
        ..Config::default()
    };
    Engine::open_with_embedder(&cfg, embedder(), &NoProgress).unwrap()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A document of a few sections on `topic`, sharing words with the others.
fn doc(topic: &str, facts: &[&str]) -> String {
    let mut s = format!("# {topic}\n\n");
    for (i, f) in facts.iter().enumerate() {
        s.push_str(&format!(
            "## {topic}, part {i}\n\n{f} This part of the notes on {topic} also mentions paths, files and the garden.\n\n"
        ));
    }
    s
}

/// The documents of shard `shard` (folders `dir/s0`, `dir/s1`).
fn corpus(dir: &Path) -> [PathBuf; 2] {
    let s0 = dir.join("s0");
    write(
        &s0.join("bees.md"),
        &doc(
            "Bees",
            &[
                "Alma keeps bees on the hill behind the orchard.",
                "A hive holds one queen and thousands of workers.",
                "Honey is taken from the hive in late summer.",
                "Bees find flowers by their colour and scent.",
            ],
        ),
    );
    write(
        &s0.join("paths.md"),
        &doc(
            "Paths",
            &[
                "os.path.join joins two path components into one path.",
                "A relative path is resolved against the current directory.",
                "pathlib offers Path objects with a / operator.",
            ],
        ),
    );
    write(
        &s0.join("trains.md"),
        &doc(
            "Trains",
            &[
                "The night train to Vienna leaves at ten.",
                "Sleeper cars have beds for six travellers.",
                "Timetables change every December.",
            ],
        ),
    );
    let s1 = dir.join("s1");
    write(
        &s1.join("garden.md"),
        &doc(
            "Garden",
            &[
                "Tomatoes need sun and water every day.",
                "The garden path is lined with lavender, which bees love.",
                "Compost turns kitchen waste into soil.",
            ],
        ),
    );
    write(
        &s1.join("files.md"),
        &doc(
            "Files",
            &[
                "open() returns a file object; close it when done.",
                "shutil.copy copies a file to another path.",
                "A with block closes the file even on errors.",
            ],
        ),
    );
    write(
        &s1.join("honey.md"),
        &doc(
            "Honey",
            &[
                "Raw honey crystallises in cold rooms.",
                "Heather honey is thick and dark.",
            ],
        ),
    );
    [s0, s1]
}

fn ingest(e: &Engine, dir: &Path) {
    e.ingest(&[dir.to_path_buf()], &IngestOptions::default(), &NoProgress)
        .unwrap();
}

/// How a staged replica behaves.
#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// Answers everything, as a node does.
    Serve,
    /// Answers until the first request for passages (phase 2), then leaves
    /// the queue group without answering it: a replica dying between the
    /// phases. Tells `died` when it does.
    DieOnPassages,
}

/// Binary asks the shards' queue groups received (the node subjects take
/// them all while nodes answer there).
static QUEUE_BINARY_ASKS: AtomicUsize = AtomicUsize::new(0);

/// A node `name` answering its node subject with the node's code for the
/// shards it serves (`serving`), counting the requests; subscribed when
/// this returns.
async fn node_responder(
    url: &str,
    name: &str,
    serving: Vec<(u32, Arc<Engine>)>,
    requests: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    let client = async_nats::connect(url).await.unwrap();
    let subject = crate::node_subject(name);
    let mut sub = client.subscribe(subject.clone()).await.unwrap();
    client.flush().await.unwrap();
    let name = name.to_string();
    let map: std::collections::HashMap<(String, u32), std::sync::Weak<Engine>> = serving
        .iter()
        .map(|(shard, e)| ((COLLECTION.to_string(), *shard), Arc::downgrade(e)))
        .collect();
    let map = Arc::new(std::sync::Mutex::new(map));
    tokio::spawn(async move {
        // (The engines stay alive as long as the responder.)
        let _serving = serving;
        while let Some(msg) = sub.next().await {
            let Some(reply) = msg.reply.clone() else {
                continue;
            };
            requests.fetch_add(1, Ordering::SeqCst);
            let (map, name, subject) = (map.clone(), name.clone(), subject.clone());
            let body = tokio::task::spawn_blocking(move || {
                node_respond(&name, &map, &msg.payload, &subject)
            })
            .await
            .unwrap();
            client.publish(reply, body.into()).await.unwrap();
            client.flush().await.unwrap();
        }
    })
}

/// A replica of `shard` on its own NATS connection, answering with the
/// node's code; it is subscribed when this returns.
async fn replica(
    url: &str,
    shard: u32,
    engine: Arc<Engine>,
    name: &str,
    behaviour: Behaviour,
    died: Option<tokio::sync::oneshot::Sender<()>>,
) -> tokio::task::JoinHandle<()> {
    let client = async_nats::connect(url).await.unwrap();
    let subject = search_subject(COLLECTION, shard);
    let mut sub = client
        .queue_subscribe(subject.clone(), subject.clone())
        .await
        .unwrap();
    client.flush().await.unwrap();
    let name = name.to_string();
    tokio::spawn(async move {
        let mut died = died;
        while let Some(msg) = sub.next().await {
            let Some(reply) = msg.reply.clone() else {
                continue;
            };
            if behaviour == Behaviour::DieOnPassages
                && msg.payload.first() == Some(&wire::BINARY)
                && matches!(
                    wire::decode_binary::<ShardAsk>(&msg.payload, &subject, "ask"),
                    Ok(ShardAsk {
                        ask: Ask::Passages { .. },
                        ..
                    })
                )
            {
                let _ = sub.unsubscribe().await;
                let _ = client.flush().await;
                if let Some(tx) = died.take() {
                    let _ = tx.send(());
                }
                return;
            }
            if msg.payload.first() == Some(&wire::BINARY) {
                QUEUE_BINARY_ASKS.fetch_add(1, Ordering::SeqCst);
            }
            let (engine, name, subject) = (engine.clone(), name.clone(), subject.clone());
            let body = tokio::task::spawn_blocking(move || {
                shard_respond(&engine, &name, shard, &msg.payload, &subject)
            })
            .await
            .unwrap();
            client.publish(reply, body.into()).await.unwrap();
            client.flush().await.unwrap();
        }
    })
}

fn info(dim: usize) -> CollectionInfo {
    CollectionInfo {
        name: COLLECTION.into(),
        shards: 2,
        replicas: 1,
        embed_model: embedder().model_id().into(),
        dim,
        created_ms: 0,
        assignment: vec![vec!["a".into()], vec!["c".into()]],
    }
}

/// Everything a hit carries, floats as their bits.
type Key = (usize, u32, String, u64, String, u64, u64, String, u32, u32);

fn keys(r: &SearchResult) -> Vec<Key> {
    r.hits
        .iter()
        .map(|h| {
            (
                h.hit.rank,
                h.hit.score.to_bits(),
                h.hit.doc.clone(),
                h.hit.chunk,
                h.hit.heading.clone(),
                h.hit.start,
                h.hit.end,
                h.hit.text.clone(),
                h.shard,
                h.cosine.to_bits(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_phase_search_equals_one_round_and_survives_a_replica_dying_or_changing_between_phases()
{
    let tmp = tempfile::tempdir().unwrap();
    let [s0, s1] = corpus(&tmp.path().join("corpus"));
    let (d0, d1) = (tmp.path().join("a"), tmp.path().join("c"));
    let engines = tokio::task::spawn_blocking({
        let (d0, d1, s0, s1) = (d0.clone(), d1.clone(), s0.clone(), s1.clone());
        move || {
            // Shard 0, then two copies of it: what its other replicas
            // would hold after applying the same log.
            {
                let a = engine(&d0);
                ingest(&a, &s0);
            }
            cairn_testkit::copy_dir(&d0, &d0.with_extension("b"));
            cairn_testkit::copy_dir(&d0, &d0.with_extension("b2"));
            let c = engine(&d1);
            ingest(&c, &s1);
            (Arc::new(engine(&d0)), Arc::new(c))
        }
    })
    .await
    .unwrap();
    let (a, c) = engines;
    let (_nats, url) = nats(&tmp.path().join("js"));
    let mut cluster = Cluster::connect(&url).await.unwrap();
    cluster.shard_timeout = Duration::from_millis(600);
    let info = info(embedder().dim());
    let _c = replica(&url, 1, c.clone(), "c", Behaviour::Serve, None).await;
    let a_task = replica(&url, 0, a.clone(), "a", Behaviour::Serve, None).await;
    // The nodes answer for their shards on their node subjects: every
    // binary round is one request per node, none reaches a queue group.
    let node_requests = Arc::new(AtomicUsize::new(0));
    let node_a = node_responder(&url, "a", vec![(0, a.clone())], node_requests.clone()).await;
    let node_c = node_responder(&url, "c", vec![(1, c.clone())], node_requests.clone()).await;

    let queries = [
        "how do I join two path components",
        "bees and honey from the hive",
        "night train sleeper",
        "garden path lavender",
        "close the file on errors",
    ];
    let vectors: Vec<Vec<f32>> = queries
        .iter()
        .map(|q| embedder().embed_query(q).unwrap())
        .collect();
    let plain = Fusion::from_config(&Config::default().search);
    let capped = Fusion {
        max_per_document: 1,
        ..plain
    };
    let mut compared = 0;
    for (q, v) in queries.iter().zip(&vectors) {
        for mode in [SearchMode::Dense, SearchMode::Bm25, SearchMode::Hybrid] {
            for k in [1, 5, 10] {
                for f in [&plain, &capped] {
                    let v = (mode != SearchMode::Bm25).then_some(v.as_slice());
                    let two = cluster.search(&info, q, v, k, mode, f).await.unwrap();
                    let one = cluster
                        .search_one_phase(&info, q, v, k, mode, f)
                        .await
                        .unwrap();
                    assert_eq!(keys(&two), keys(&one), "{q:?} {mode:?} k={k}");
                    assert_eq!((two.shards_ok, two.shards_total), (2, 2));
                    assert!(two.missing_shards.is_empty());
                    if mode != SearchMode::Bm25 {
                        assert_eq!(two.hits.len(), k, "{q:?} {mode:?}");
                    }
                    compared += two.hits.len();
                }
            }
        }
    }
    assert!(compared > 300, "{compared} hits compared");
    // 5 queries × 3 modes × 3 k × 2 fusions = 90 searches, each 2 rounds
    // (dense) or 3 (BM25, hybrid: statistics first) to both nodes, but the
    // passages round, which asks only the nodes holding the top k.
    let asked = node_requests.load(Ordering::SeqCst);
    assert!(
        (90 * 3..=90 * 3 * 2).contains(&asked),
        "{asked} node requests"
    );
    assert_eq!(QUEUE_BINARY_ASKS.load(Ordering::SeqCst), 0);
    // Node c no longer serves shard 1 (its engine is gone, as when the
    // shard moves away): its asks fall back to the queue group, with the
    // same hits.
    node_c.abort();
    let _node_c = node_responder(&url, "c", vec![], node_requests.clone()).await;
    for mode in [SearchMode::Dense, SearchMode::Hybrid] {
        let (q, v) = (queries[0], Some(vectors[0].as_slice()));
        let two = cluster.search(&info, q, v, 5, mode, &plain).await.unwrap();
        let one = cluster
            .search_one_phase(&info, q, v, 5, mode, &plain)
            .await
            .unwrap();
        assert_eq!(keys(&two), keys(&one), "{mode:?}");
    }
    assert!(QUEUE_BINARY_ASKS.load(Ordering::SeqCst) >= 3);
    // One node holding both shards: a BM25 or hybrid search skips the
    // statistics round (the node sums the shards' statistics itself), and
    // the hits are the same.
    let whole = CollectionInfo {
        assignment: vec![vec!["ac".into()], vec!["ac".into()]],
        ..info.clone()
    };
    let pooled_requests = Arc::new(AtomicUsize::new(0));
    let node_ac = node_responder(
        &url,
        "ac",
        vec![(0, a.clone()), (1, c.clone())],
        pooled_requests.clone(),
    )
    .await;
    // Requests are counted exactly below. async-nats' flush does not wait
    // for the server to have taken the new subscription, so on a loaded
    // machine the first pooled ask could find no responder and fall back to
    // the three rounds (a 21st request): one search first, uncounted, makes
    // sure the node is reachable. No answer may be late either.
    cluster.shard_timeout = Duration::from_secs(10);
    cluster
        .search(&whole, queries[0], None, 10, SearchMode::Bm25, &plain)
        .await
        .unwrap();
    let queue_before = QUEUE_BINARY_ASKS.load(Ordering::SeqCst);
    let requests_before = pooled_requests.load(Ordering::SeqCst);
    let mut searches = 0;
    for (q, v) in queries.iter().zip(&vectors) {
        for mode in [SearchMode::Bm25, SearchMode::Hybrid] {
            let v = (mode != SearchMode::Bm25).then_some(v.as_slice());
            let two = cluster
                .search(&whole, q, v, 10, mode, &plain)
                .await
                .unwrap();
            let one = cluster
                .search_one_phase(&whole, q, v, 10, mode, &plain)
                .await
                .unwrap();
            assert_eq!(keys(&two), keys(&one), "{q:?} {mode:?}");
            searches += 1;
        }
    }
    // Two requests each: candidates (statistics pooled), then passages.
    assert_eq!(
        pooled_requests.load(Ordering::SeqCst) - requests_before,
        2 * searches
    );
    assert_eq!(QUEUE_BINARY_ASKS.load(Ordering::SeqCst), queue_before);
    cluster.shard_timeout = Duration::from_millis(600);
    // A node that serves only one of them cannot pool: the search runs its
    // three rounds, the other shard through its queue group.
    node_ac.abort();
    let node_ac = node_responder(&url, "ac", vec![(0, a.clone())], pooled_requests.clone()).await;
    let (q, v) = (queries[2], Some(vectors[2].as_slice()));
    let two = cluster
        .search(&whole, q, v, 10, SearchMode::Hybrid, &plain)
        .await
        .unwrap();
    let one = cluster
        .search_one_phase(&whole, q, v, 10, SearchMode::Hybrid, &plain)
        .await
        .unwrap();
    assert_eq!(keys(&two), keys(&one));
    assert!(QUEUE_BINARY_ASKS.load(Ordering::SeqCst) > queue_before);
    node_ac.abort();

    // Without node responders (nodes that predate them, or gone), the
    // queue groups answer everything, as below.
    node_a.abort();
    _node_c.abort();
    // Hits from both shards, and the cap at work.
    let r = cluster
        .search(
            &info,
            queries[3],
            Some(&vectors[3]),
            5,
            SearchMode::Hybrid,
            &capped,
        )
        .await
        .unwrap();
    let shards: std::collections::HashSet<u32> = r.hits.iter().map(|h| h.shard).collect();
    assert_eq!(shards.len(), 2);
    let docs: std::collections::HashSet<&str> = r.hits.iter().map(|h| h.hit.doc.as_str()).collect();
    // Six documents, so five hits under the cap are five documents.
    assert_eq!((docs.len(), r.hits.len()), (5, 5), "{docs:?}");

    // Shard 0's replica dies between the phases; its twin (same log
    // applied) takes the passages request: the same hits, none dropped.
    let (q, v) = (queries[1], Some(vectors[1].as_slice()));
    let expected = cluster
        .search_one_phase(&info, q, v, 10, SearchMode::Hybrid, &plain)
        .await
        .unwrap();
    a_task.abort();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let _dying = replica(&url, 0, a.clone(), "a", Behaviour::DieOnPassages, Some(tx)).await;
    let twin = Arc::new(engine(&d0.with_extension("b")));
    let search = {
        let (cluster, info, plain) = (Arc::new(cluster), info.clone(), plain);
        let v = v.map(<[f32]>::to_vec);
        let c2 = cluster.clone();
        let h = tokio::spawn(async move {
            c2.search(&info, q, v.as_deref(), 10, SearchMode::Hybrid, &plain)
                .await
        });
        (cluster, h)
    };
    rx.await
        .expect("the dying replica saw the passages request");
    let twin_task = replica(&url, 0, twin, "b", Behaviour::Serve, None).await;
    let (cluster, h) = search;
    let got = h.await.unwrap().unwrap();
    assert_eq!(keys(&got), keys(&expected));
    assert_eq!(got.hits.len(), 10);
    assert_eq!((got.shards_ok, got.shards_total), (2, 2));
    twin_task.abort();

    // Again, and this time the replica that takes over has applied a
    // write the dying one had not: the search starts again and answers
    // from the new state alone (the new document is found).
    let (tx, rx) = tokio::sync::oneshot::channel();
    let _dying = replica(&url, 0, a.clone(), "a", Behaviour::DieOnPassages, Some(tx)).await;
    let ahead = tokio::task::spawn_blocking({
        let (d, extra) = (d0.with_extension("b2"), tmp.path().join("extra"));
        move || {
            write(
                &extra.join("apiary.md"),
                &doc(
                    "Apiary",
                    &["An apiary is where bees and their hives are kept for honey."],
                ),
            );
            let e = engine(&d);
            ingest(&e, &extra);
            Arc::new(e)
        }
    })
    .await
    .unwrap();
    assert!(ahead.applied_seq().unwrap() > a.applied_seq().unwrap());
    let h = {
        let (c2, info) = (cluster.clone(), info.clone());
        let v = v.map(<[f32]>::to_vec);
        tokio::spawn(async move {
            c2.search(&info, q, v.as_deref(), 10, SearchMode::Hybrid, &plain)
                .await
        })
    };
    rx.await
        .expect("the dying replica saw the passages request");
    let _ahead_task = replica(&url, 0, ahead, "b2", Behaviour::Serve, None).await;
    let got = h.await.unwrap().unwrap();
    let now = cluster
        .search_one_phase(&info, q, v, 10, SearchMode::Hybrid, &plain)
        .await
        .unwrap();
    assert_eq!(keys(&got), keys(&now));
    assert!(
        got.hits.iter().any(|h| h.hit.doc.contains("apiary")),
        "{:?}",
        got.hits.iter().map(|h| &h.hit.doc).collect::<Vec<_>>()
    );
}
