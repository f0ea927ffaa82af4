//! What a node answers: its shards' searches (once caught up) and, with a
//! model, generation requests from the `cairn.generate` queue group.

use super::*;

pub(super) fn start_search(
    s: &Arc<Shared>,
    coll: &str,
    shard: u32,
    engine: &Arc<Engine>,
    state: &Arc<Mutex<ShardState>>,
) -> JoinHandle<()> {
    lock(state).serving = true;
    // (Weak: a shard dropped from this node stops being answered for
    // through its node subject once its engine is gone.)
    lock(&s.serving).insert((coll.to_string(), shard), Arc::downgrade(engine));
    let (s, coll, engine, state) = (s.clone(), coll.to_string(), engine.clone(), state.clone());
    tokio::spawn(async move {
        let subject = search_subject(&coll, shard);
        let mut sub = match s
            .client
            .queue_subscribe(subject.clone(), subject.clone())
            .await
        {
            Ok(sub) => sub,
            Err(e) => {
                lock(&state).error = Some(format!("subscribing to {subject}: {e}"));
                return;
            }
        };
        tracing::info!(collection = coll, shard, "serving searches");
        while let Some(msg) = sub.next().await {
            let Some(reply) = msg.reply.clone() else {
                continue;
            };
            let (engine, client, node) = (engine.clone(), s.client.clone(), s.name.clone());
            let subject = subject.clone();
            tokio::spawn(async move {
                let body = tokio::task::spawn_blocking(move || {
                    shard_respond(&engine, &node, shard, &msg.payload, &subject)
                })
                .await
                .unwrap_or_default();
                let _ = client.publish(reply, body.into()).await;
            });
        }
    })
}

/// A shard's reply to one request on its search subject: a binary
/// request (first byte [`wire::BINARY`]) gets a binary answer, a JSON one
/// a JSON [`ShardReply`].
pub(crate) fn shard_respond(
    engine: &Engine,
    node: &str,
    shard: u32,
    payload: &[u8],
    subject: &str,
) -> Vec<u8> {
    if payload.first() == Some(&wire::BINARY) {
        return shard_answer(engine, node, payload, subject);
    }
    let t = Instant::now();
    let r = shard_search(engine, payload, subject);
    let took_ms = t.elapsed().as_secs_f64() * 1000.0;
    let node = node.to_string();
    let reply = match r {
        Ok(lists) => ShardReply {
            node,
            shard,
            applied: lists.applied,
            dense: lists.dense,
            bm25: lists.bm25,
            error: None,
            took_ms,
            bm25_stats: lists.stats,
            documents: lists.documents,
            document_text: lists.document_text,
        },
        Err(e) => ShardReply {
            node,
            shard,
            applied: 0,
            dense: vec![],
            bm25: vec![],
            error: Some(e.to_string()),
            took_ms,
            bm25_stats: None,
            documents: None,
            document_text: None,
        },
    };
    serde_json::to_vec(&reply).unwrap_or_default()
}

/// A shard's part of one search round.
#[derive(Default)]
struct ShardLists {
    applied: u64,
    dense: Vec<ShardHit>,
    bm25: Vec<ShardHit>,
    stats: Option<cairn_index::bm25::Bm25Stats>,
    documents: Option<Vec<cairn_engine::DocMeta>>,
    document_text: Option<cairn_engine::DocumentText>,
}

/// Answer one round of a search from this shard (JSON: the one-round
/// search, a document list, a document's text). The lists are the raw
/// candidate lists a single node fuses (no per-document cap, no reranking:
/// the coordinator fuses, caps and cuts after gathering), BM25 scored with
/// the collection-wide statistics the request carries.
fn shard_search(engine: &Engine, payload: &[u8], subject: &str) -> Result<ShardLists> {
    let req: SearchRequest = serde_json::from_slice(payload).map_err(|e| ClusterError::Wire {
        subject: subject.to_string(),
        reason: e.to_string(),
    })?;
    wait_indexed(engine, req.min_applied)?;
    let applied = engine.applied_seq()?;
    match req.want {
        wire::Want::Hits => {}
        wire::Want::Stats => {
            return Ok(ShardLists {
                applied,
                stats: Some(engine.bm25_stats(&req.query)?),
                ..ShardLists::default()
            })
        }
        wire::Want::Documents => {
            let docs = engine.documents()?;
            return Ok(ShardLists {
                applied,
                documents: Some(docs),
                ..ShardLists::default()
            });
        }
        wire::Want::DocumentText => {
            return Ok(ShardLists {
                applied,
                document_text: Some(engine.document_text(&req.query)?),
                ..ShardLists::default()
            });
        }
    }
    let vector = req
        .vector
        .as_deref()
        .map(|v| wire::decode_vector(v, subject))
        .transpose()?;
    let with_cosines = |ranked: Vec<cairn_core::Scored>| -> Result<Vec<ShardHit>> {
        let hits = engine.hits(&ranked)?;
        let cos = match &vector {
            Some(v) => engine.similarities(v, &hits.iter().map(|h| h.chunk).collect::<Vec<_>>())?,
            None => vec![0.0; hits.len()],
        };
        Ok(hits
            .into_iter()
            .zip(cos)
            .map(|(hit, cosine)| ShardHit { hit, cosine })
            .collect())
    };
    let empty = req.query.trim().is_empty() || req.n == 0;
    let dense = if req.mode != SearchMode::Bm25 && !empty {
        let v = vector.as_deref().ok_or_else(|| ClusterError::Wire {
            subject: subject.to_string(),
            reason: "a dense or hybrid search needs the query vector".into(),
        })?;
        check_dim(engine, v, subject)?;
        // Ranked with the query adapter the collection learned, if any;
        // cosines stay the embedder's (as a local engine's).
        with_cosines(engine.dense_candidates(&engine.adapt_query(v)?, req.n)?)?
    } else {
        vec![]
    };
    let bm25 = if req.mode != SearchMode::Dense && !empty {
        with_cosines(engine.bm25_candidates(&req.query, req.n, req.bm25_stats.as_ref())?)?
    } else {
        vec![]
    };
    Ok(ShardLists {
        applied,
        dense,
        bm25,
        ..ShardLists::default()
    })
}

/// Wait (briefly) until the shard's indexes have applied `min`: the entry
/// the client wrote, so that it reads its own writes.
fn wait_indexed(engine: &Engine, min: Option<Seq>) -> Result<()> {
    let Some(min) = min else {
        return Ok(());
    };
    let deadline = Instant::now() + Duration::from_millis(1500);
    while engine.index_seq() < min {
        if Instant::now() > deadline {
            return Err(ClusterError::Behind {
                applied: engine.index_seq(),
                wanted: min,
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Answer a binary request (see [`wire::ShardAsk`]): the encoded
/// [`wire::ShardAnswer`], an error one when it fails.
fn shard_answer(engine: &Engine, node: &str, payload: &[u8], subject: &str) -> Vec<u8> {
    let t = Instant::now();
    let answer = match wire::decode_binary::<ShardAsk>(payload, subject, "shard request") {
        Ok(req) => answer_one(engine, node, req, subject),
        Err(e) => ShardAnswer {
            node: node.to_string(),
            applied: 0,
            took_ms: t.elapsed().as_secs_f64() * 1000.0,
            body: Answer::Error(e.to_string()),
        },
    };
    wire::encode_binary(&answer)
}

/// One shard's answer to one ask (an error answer when it fails).
fn answer_one(engine: &Engine, node: &str, req: ShardAsk, subject: &str) -> ShardAnswer {
    let t = Instant::now();
    let r = answer_ask(engine, req, subject);
    let took_ms = t.elapsed().as_secs_f64() * 1000.0;
    let (applied, body) = match r {
        Ok(x) => x,
        Err(e) => (0, Answer::Error(e.to_string())),
    };
    ShardAnswer {
        node: node.to_string(),
        applied,
        took_ms,
        body,
    }
}

/// Answer a [`wire::NodeAsk`]: each ask by the shard it names, if this
/// node serves it, the shards in parallel; the encoded
/// [`wire::NodeAnswer`] (an empty one when the request cannot be read).
pub(crate) fn node_respond(
    node: &str,
    serving: &Mutex<HashMap<ShardKey, std::sync::Weak<Engine>>>,
    payload: &[u8],
    subject: &str,
) -> Vec<u8> {
    let req: wire::NodeAsk = match wire::decode_binary(payload, subject, "node request") {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("{e}");
            return wire::encode_binary(&wire::NodeAnswer { answers: vec![] });
        }
    };
    let engines: Vec<Option<Arc<Engine>>> = {
        let serving = lock(serving);
        req.asks
            .iter()
            .map(|(shard, _)| {
                serving
                    .get(&(req.collection.clone(), *shard))
                    .and_then(std::sync::Weak::upgrade)
            })
            .collect()
    };
    let mut asks = req.asks;
    if req.pooled_stats {
        match pool_stats(&engines, &mut asks, &req.collection) {
            Ok(()) => {}
            Err(e) => {
                tracing::debug!("pooling BM25 statistics: {e}");
                return wire::encode_binary(&wire::NodeAnswer {
                    answers: vec![None; asks.len()],
                });
            }
        }
    }
    // The shards on threads of their own, not on rayon's pool: the engine
    // holds a reader's lock while its searches use rayon, and a pool thread
    // waiting there could take up another shard's ask that needs the same
    // lock.
    let collection = &req.collection;
    let one = |(shard, ask): (u32, ShardAsk), engine: Option<Arc<Engine>>| {
        let engine = engine?;
        Some(answer_one(
            &engine,
            node,
            ask,
            &search_subject(collection, shard),
        ))
    };
    let mut work: Vec<_> = asks.into_iter().zip(engines).collect();
    let first = if work.is_empty() {
        None
    } else {
        Some(work.remove(0))
    };
    let answers = std::thread::scope(|scope| {
        let rest: Vec<_> = work
            .into_iter()
            .map(|(ask, engine)| scope.spawn(move || one(ask, engine)))
            .collect();
        let mut answers = Vec::new();
        if let Some((ask, engine)) = first {
            answers.push(one(ask, engine));
        }
        answers.extend(rest.into_iter().map(|h| h.join().unwrap_or(None)));
        answers
    });
    wire::encode_binary(&wire::NodeAnswer { answers })
}

/// For a [`wire::NodeAsk::pooled_stats`] request: the sum of the BM25
/// statistics of every asked shard (each once it has indexed what the ask
/// waits for), put into each candidates ask; an error when a shard is not
/// served here or an ask is not for candidates.
fn pool_stats(
    engines: &[Option<Arc<Engine>>],
    asks: &mut [(u32, ShardAsk)],
    collection: &str,
) -> Result<()> {
    let mut sum = cairn_index::bm25::Bm25Stats::default();
    for ((shard, ask), engine) in asks.iter().zip(engines) {
        let engine = engine.as_ref().ok_or_else(|| {
            ClusterError::Unavailable(format!("shard {shard} of {collection} is not served here"))
        })?;
        let Ask::Candidates { query, .. } = &ask.ask else {
            return Err(ClusterError::Wire {
                subject: search_subject(collection, *shard),
                reason: "pooled statistics are for candidates asks".into(),
            });
        };
        wait_indexed(engine, ask.min_applied)?;
        sum.add(&engine.bm25_stats(query)?);
    }
    for (_, ask) in asks.iter_mut() {
        if let Ask::Candidates { bm25_stats, .. } = &mut ask.ask {
            *bm25_stats = Some(sum.clone());
        }
    }
    Ok(())
}

/// Answer [`crate::node_subject`] requests for as long as the node runs.
pub(super) async fn serve_node_asks(s: Arc<Shared>) -> Result<()> {
    let subject = crate::node_subject(&s.name);
    let mut sub = s
        .client
        .subscribe(subject.clone())
        .await
        .map_err(|e| ClusterError::js(format!("subscribing to {subject}"), e))?;
    while let Some(msg) = sub.next().await {
        let Some(reply) = msg.reply.clone() else {
            continue;
        };
        let (s, subject) = (s.clone(), subject.clone());
        tokio::spawn(async move {
            let client = s.client.clone();
            let body = tokio::task::spawn_blocking(move || {
                node_respond(&s.name, &s.serving, &msg.payload, &subject)
            })
            .await
            .unwrap_or_default();
            let _ = client.publish(reply, body.into()).await;
        });
    }
    Ok(())
}

fn answer_ask(engine: &Engine, req: ShardAsk, subject: &str) -> Result<(Seq, Answer)> {
    wait_indexed(engine, req.min_applied)?;
    match req.ask {
        Ask::Stats { query } => {
            let applied = engine.applied_seq()?;
            Ok((applied, Answer::Stats(engine.bm25_stats(&query)?)))
        }
        Ask::Candidates {
            query,
            vector,
            n,
            mode,
            bm25_stats,
            documents,
        } => {
            let applied = engine.applied_seq()?;
            let empty = query.trim().is_empty() || n == 0;
            let n = n as usize;
            let dense = if mode != SearchMode::Bm25 && !empty {
                let v = vector.as_deref().ok_or_else(|| ClusterError::Wire {
                    subject: subject.to_string(),
                    reason: "a dense or hybrid search needs the query vector".into(),
                })?;
                check_dim(engine, v, subject)?;
                engine.dense_candidates(&engine.adapt_query(v)?, n)?
            } else {
                vec![]
            };
            let bm25 = if mode != SearchMode::Dense && !empty {
                engine.bm25_candidates(&query, n, bm25_stats.as_ref())?
            } else {
                vec![]
            };
            let docs = if documents {
                let ids: Vec<u64> = dense.iter().chain(&bm25).map(|s| s.id).collect();
                engine.chunk_documents(&ids)?
            } else {
                HashMap::new()
            };
            let list = |l: Vec<cairn_core::Scored>| -> Vec<Candidate> {
                l.into_iter()
                    .map(|s| Candidate {
                        chunk: s.id,
                        score: s.score,
                        doc: docs.get(&s.id).copied(),
                    })
                    .collect()
            };
            Ok((
                applied,
                Answer::Candidates(Candidates {
                    dense: list(dense),
                    bm25: list(bm25),
                }),
            ))
        }
        Ask::Passages { chunks, vector, at } => {
            // Another replica than phase 1's may not have applied as far yet.
            let deadline = Instant::now() + Duration::from_millis(1500);
            while engine.applied_seq()? < at && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if let Some(v) = &vector {
                check_dim(engine, v, subject)?;
            }
            let ranked: Vec<cairn_core::Scored> = chunks
                .iter()
                .map(|&id| cairn_core::Scored { id, score: 0.0 })
                .collect();
            let hits = engine.hits(&ranked)?;
            let cos = match &vector {
                Some(v) => {
                    engine.similarities(v, &hits.iter().map(|h| h.chunk).collect::<Vec<_>>())?
                }
                None => vec![0.0; hits.len()],
            };
            let mut found: HashMap<u64, Passage> = hits
                .into_iter()
                .zip(cos)
                .map(|(h, cosine)| {
                    (
                        h.chunk,
                        Passage {
                            doc: h.doc,
                            heading: h.heading,
                            start: h.start,
                            end: h.end,
                            text: h.text,
                            cosine,
                        },
                    )
                })
                .collect();
            let passages = chunks.iter().map(|c| found.remove(c)).collect();
            // Read after the passages: equal to phase 1's, nothing was
            // applied in between (the sequence only grows).
            Ok((engine.applied_seq()?, Answer::Passages(passages)))
        }
    }
}

fn check_dim(engine: &Engine, v: &[f32], subject: &str) -> Result<()> {
    if v.len() != engine.embedder().dim() {
        return Err(ClusterError::Wire {
            subject: subject.to_string(),
            reason: format!(
                "the query vector has {} dimensions, the collection {}",
                v.len(),
                engine.embedder().dim()
            ),
        });
    }
    Ok(())
}

/// The generation replica: one answer at a time; a request that arrives
/// while busy is told so, and the coordinator asks another replica.
pub(super) async fn serve_generation(s: Arc<Shared>, generator: Arc<dyn Generator>) -> Result<()> {
    // The replica checks answers with its own critic (`critic.kind = "llm"`:
    // its own generator).
    let critic = if s.cfg.critic.kind == "llm" {
        cairn_engine::llm_critic(&s.cfg, generator.clone())
    } else {
        cairn_engine::load_critic(&s.cfg, s.embedder.clone())?
    };
    let mut sub = s
        .client
        .queue_subscribe(GENERATE_SUBJECT, GENERATE_SUBJECT.to_string())
        .await
        .map_err(|e| ClusterError::js("subscribing to generation", e))?;
    let busy = Arc::new(AtomicBool::new(false));
    while let Some(msg) = sub.next().await {
        let Some(reply) = msg.reply.clone() else {
            continue;
        };
        let client = s.client.clone();
        let node = s.name.clone();
        if busy.swap(true, Ordering::SeqCst) {
            let ev = serde_json::to_vec(&GenEvent::Busy { node }).unwrap_or_default();
            let _ = client.publish(reply, ev.into()).await;
            continue;
        }
        let (busy, generator, critic) = (busy.clone(), generator.clone(), critic.clone());
        let base = AskOptions::from_config(&s.cfg);
        let data_dir = s.cfg.data_dir();
        tokio::spawn(async move {
            generate_one(
                client,
                node,
                reply.to_string(),
                generator,
                critic,
                base,
                &data_dir,
                &msg.payload,
            )
            .await;
            busy.store(false, Ordering::SeqCst);
        });
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn generate_one(
    client: async_nats::Client,
    node: String,
    reply: String,
    generator: Arc<dyn Generator>,
    critic: Arc<dyn cairn_core::Critic>,
    base: AskOptions,
    data_dir: &std::path::Path,
    payload: &[u8],
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<GenEvent>();
    let forward = {
        let client = client.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                let body = serde_json::to_vec(&ev).unwrap_or_default();
                if client.publish(reply.clone(), body.into()).await.is_err() {
                    break;
                }
            }
            let _ = client.flush().await;
        })
    };
    let req: GenerateRequest = match serde_json::from_slice(payload) {
        Ok(r) => r,
        Err(e) => {
            let _ = tx.send(GenEvent::Error {
                node,
                message: format!("malformed generation request: {e}"),
            });
            drop(tx);
            let _ = forward.await;
            return;
        }
    };
    let _ = tx.send(GenEvent::Start {
        node: node.clone(),
        model: generator.model_name().to_string(),
    });
    // Keep-alives while the prompt is processed, so the coordinator can
    // tell a slow replica from a dead one.
    let alive = {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(Duration::from_secs(1));
            loop {
                t.tick().await;
                if tx.send(GenEvent::Alive).is_err() {
                    break;
                }
            }
        })
    };
    let tx2 = tx.clone();
    // The generator's adapter the collection learned (`cairn improve`),
    // as this node installed it; none from the coordinator's disk.
    let adapter = crate::learned::replica_adapter(
        data_dir,
        req.collection.as_deref(),
        generator.model_name(),
    );
    let result = tokio::task::spawn_blocking(move || {
        let sampling = cairn_generate::Sampling {
            adapter,
            ..req.sampling.clone()
        };
        let opts = AskOptions {
            k: req.k,
            mode: req.mode,
            min_relevance: req.min_relevance,
            sampling,
            check: req.check,
            support_threshold: req.support_threshold,
            // Corrective retrieval and extractive answers need the
            // coordinator's retrieval; the cluster does not run them yet.
            crag: false,
            extractive: false,
            // The rest (grammar, fallback, calibrations) from this node's
            // configuration.
            ..base
        };
        let mut sink = Events(tx2);
        cairn_engine::answer_from_passages(
            &req.question,
            &req.history,
            Retrieved {
                hits: req.hits,
                relevance: req.relevance,
                embed_ms: req.embed_ms,
                search_ms: req.search_ms,
                started: Instant::now(),
                judged: None,
            },
            generator.as_ref(),
            Some(critic.as_ref()),
            &opts,
            &mut sink,
        )
    })
    .await;
    alive.abort();
    let ev = match result {
        Ok(Ok(answer)) => GenEvent::Done {
            answer: Box::new(answer),
        },
        Ok(Err(e)) => GenEvent::Error {
            node,
            message: e.to_string(),
        },
        Err(e) => GenEvent::Error {
            node,
            message: format!("generation task failed: {e}"),
        },
    };
    let _ = tx.send(ev);
    drop(tx);
    let _ = forward.await;
}

/// A generation replica's answer as events to the coordinator.
struct Events(tokio::sync::mpsc::UnboundedSender<GenEvent>);

impl cairn_generate::TokenSink for Events {
    fn piece(&mut self, text: &str) -> Flow {
        let ev = GenEvent::Token {
            text: text.to_string(),
        };
        if self.0.send(ev).is_err() {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    fn restart(&mut self, why: &str) {
        let _ = self.0.send(GenEvent::Restart {
            why: why.to_string(),
        });
    }
}
