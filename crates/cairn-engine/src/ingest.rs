//! Ingest: walk → read → hash → load → chunk → embed → catalog, then indexes.
//!
//! Files are taken in path order and committed one document per catalog
//! transaction, in that order, so an interrupted run followed by a re-run ends
//! in the same catalog (same chunk ids) as one uninterrupted run.

use crate::{Engine, EngineError, Result};
use cairn_core::config::Config;
use cairn_core::{ChunkDraft, DocId, Document, Progress, Seq};
use cairn_ingest::boilerplate::{self, BoilerplateRule};
use cairn_ingest::Chunker;
use cairn_ingest::{FoundFile, WalkOptions};
use cairn_models::SentenceEncoder;
use cairn_store::{DocumentRecord, NewChunk, Op};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How to ingest.
#[derive(Debug, Clone, Default)]
pub struct IngestOptions {
    /// Delete catalog documents under the given roots that the walk no longer finds.
    pub prune: bool,
    /// Display names for given files (canonical path → name), used instead
    /// of the path relative to the root: the server stores uploads under
    /// names it picks and shows the name the user gave.
    pub display_names: HashMap<PathBuf, String>,
    /// Checked between rounds of files: once set, the ingest stops after
    /// the round in hand (every document committed so far stays, and the
    /// indexes are caught up), and the report says `cancelled`.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// What an ingest's sink knows of a document: enough to tell an unchanged
/// file (size and mtime), a changed file with the same content (hash), and
/// what `--prune` and `remove` match (canonical and display paths).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct KnownDocument {
    /// Canonical absolute path: the document's key.
    pub path: String,
    /// Display path.
    pub doc: String,
    pub hash: String,
    pub mtime_ns: i64,
    pub size: u64,
    /// Its id in the local catalog (not in a cluster's list).
    #[serde(skip)]
    pub id: Option<DocId>,
}

impl From<cairn_store::DocMeta> for KnownDocument {
    fn from(d: cairn_store::DocMeta) -> KnownDocument {
        KnownDocument {
            path: d.path,
            doc: d.doc,
            hash: d.hash,
            mtime_ns: d.mtime_ns,
            size: d.size,
            id: Some(d.id),
        }
    }
}

/// Where the ingest pipeline ([`Preparer::ingest`]) writes.
pub enum Sink<'a> {
    /// The collection's catalog, through its one apply path.
    Catalog(&'a Engine),
    /// A cluster's shard logs: `known` holds the documents the cluster has
    /// (by canonical path), `publish` takes each round's ops (upserts, and
    /// deletes for `--prune`) and returns once they are durable.
    Publish {
        known: &'a HashMap<String, KnownDocument>,
        publish: &'a mut dyn FnMut(Vec<Op>) -> Result<()>,
    },
}

impl Sink<'_> {
    fn known(&self, path: &str) -> Result<Option<KnownDocument>> {
        Ok(match self {
            Sink::Catalog(e) => e.catalog()?.document(path)?.map(KnownDocument::from),
            Sink::Publish { known, .. } => known.get(path).cloned(),
        })
    }

    /// The costly load failure recorded for `path` (a local catalog only).
    fn failure(&self, path: &str) -> Result<Option<cairn_store::Failure>> {
        Ok(match self {
            Sink::Catalog(e) => e.catalog()?.failure(path)?,
            Sink::Publish { .. } => None,
        })
    }

    /// Remember costly load failures (a local catalog only: a cluster
    /// client keeps nothing between runs).
    fn record_failures(&mut self, failures: Vec<cairn_store::Failure>) -> Result<()> {
        if let Sink::Catalog(e) = self {
            if !failures.is_empty() {
                let mut cat = e.catalog()?;
                for f in &failures {
                    cat.record_failure(f)?;
                }
            }
        }
        Ok(())
    }

    /// Vectors already stored for chunks of documents with content `hash`
    /// or at `path` (a local catalog only: a cluster client has no vectors
    /// of its own, so it embeds every chunk it publishes).
    fn reusable_vectors(&self, hash: &str, path: &str) -> Result<HashMap<String, Vec<f32>>> {
        Ok(match self {
            Sink::Catalog(e) => e.catalog()?.reusable_vectors(hash, path)?,
            Sink::Publish { .. } => HashMap::new(),
        })
    }

    fn documents(&self) -> Result<Vec<KnownDocument>> {
        Ok(match self {
            Sink::Catalog(e) => e
                .catalog()?
                .documents()?
                .into_iter()
                .map(KnownDocument::from)
                .collect(),
            Sink::Publish { known, .. } => known.values().cloned().collect(),
        })
    }

    /// Apply one round: documents whose content is unchanged get their new
    /// mtime and size (locally; a cluster has nothing to record), then the
    /// ops.
    fn write(&mut self, ops: Vec<Op>, touches: Vec<(String, i64, u64)>) -> Result<()> {
        match self {
            Sink::Catalog(e) => {
                let mut cat = e.catalog()?;
                for (path, mtime_ns, size) in touches {
                    cat.touch(&path, mtime_ns, size)?;
                }
                for op in ops {
                    cat.apply(op, None)?;
                }
                Ok(())
            }
            Sink::Publish { publish, .. } => {
                if ops.is_empty() {
                    Ok(())
                } else {
                    publish(ops)
                }
            }
        }
    }
}

/// One ingest's loader (in loader processes or here) and the costly load
/// failures met so far, for the sink to remember.
struct Loading {
    loader: cairn_ingest::isolate::Loader,
    failures: Mutex<Vec<cairn_store::Failure>>,
}

impl Loading {
    /// Keep a failure worth remembering.
    fn note(&self, f: &FoundFile, e: &cairn_ingest::IngestError) {
        if e.is_costly() {
            tracing::warn!(file = %f.abs_path.display(), "{e}");
            self.failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(cairn_store::Failure {
                    path: f.abs_path.to_string_lossy().to_string(),
                    size: f.size,
                    mtime_ns: f.mtime_ns,
                    reason: e.reason(),
                });
        }
    }

    fn take_failures(&self) -> Vec<cairn_store::Failure> {
        std::mem::take(&mut *self.failures.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A file to read, with what the sink knows of it.
type Todo = (FoundFile, Option<KnownDocument>);

/// The documents `--prune` deletes: under `roots` (canonical), not found by
/// the walk, and not merely skipped this time.
fn prune_targets(
    roots: &[PathBuf],
    found: &[FoundFile],
    skipped: &[SkippedFile],
    known: &[KnownDocument],
) -> Vec<String> {
    let roots: Vec<String> = roots
        .iter()
        .filter_map(|r| r.canonicalize().ok())
        .map(|r| r.to_string_lossy().to_string())
        .collect();
    let seen: HashSet<String> = found
        .iter()
        .map(|f| f.abs_path.to_string_lossy().to_string())
        .collect();
    let skipped: HashSet<&str> = skipped.iter().map(|s| s.path.as_str()).collect();
    let mut out: Vec<String> = known
        .iter()
        .filter(|d| {
            let under = roots.iter().any(|r| {
                d.path == *r || d.path.starts_with(&format!("{}/", r.trim_end_matches('/')))
            });
            under && !seen.contains(&d.path) && !skipped.contains(d.doc.as_str())
        })
        .map(|d| d.path.clone())
        .collect();
    out.sort();
    out
}

/// The documents `remove TARGET` deletes: the file at `target`, everything
/// under the directory at `target`, or documents whose display path is
/// `target`. Sorted by canonical path.
pub fn remove_targets<'a>(target: &str, known: &'a [KnownDocument]) -> Vec<&'a KnownDocument> {
    let abs = std::path::Path::new(target)
        .canonicalize()
        .or_else(|_| std::path::absolute(target))
        .map(|p| p.to_string_lossy().to_string())
        .unwrap_or_else(|_| target.to_string());
    let dir = format!("{}/", abs.trim_end_matches('/'));
    let mut out: Vec<&KnownDocument> = known
        .iter()
        .filter(|d| d.path == abs || d.path.starts_with(&dir) || d.doc == target)
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// A file that was not ingested, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedFile {
    pub path: String,
    pub reason: String,
}

/// What an ingest did; `cairn ingest --json` prints it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestReport {
    /// Files the walk found (not counting skipped ones).
    pub files_seen: u64,
    /// New documents.
    pub added: u64,
    /// Documents whose content changed.
    pub updated: u64,
    /// Documents whose content is unchanged (nothing re-embedded).
    pub unchanged: u64,
    /// Documents deleted by `--prune`.
    pub removed: u64,
    pub chunks_added: u64,
    /// Of `chunks_added`, those whose vector was reused from the catalog
    /// (same heading path and text in a renamed or copied file, or in the
    /// unchanged part of an edited one) instead of embedded again.
    pub chunks_reused: u64,
    /// Lines left out of chunks as boilerplate repeated across the
    /// collection's documents (navigation, headers, footers, tables of
    /// contents); see `cairn_ingest::boilerplate`.
    pub boilerplate_lines: u64,
    pub skipped: Vec<SkippedFile>,
    /// Non-fatal problems in files that were ingested (e.g. invalid UTF-8).
    pub warnings: Vec<SkippedFile>,
    /// Catalog sequence after the ingest.
    pub seq: Seq,
    /// The ingest was stopped (see [`IngestOptions::cancel`]) before every
    /// file was read; what was committed before the stop is kept.
    pub cancelled: bool,
    pub seconds: f64,
    /// On a cluster: what the shards' logs acknowledged.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub log: Option<crate::LogReport>,
}

impl IngestReport {
    /// True when files were offered but none could be ingested or kept.
    pub fn nothing_ingested(&self) -> bool {
        self.added + self.updated + self.unchanged == 0 && !self.skipped.is_empty()
    }
}

/// A file after the parallel stage.
enum Prepared {
    /// Content identical to the catalog's: only mtime/size changed.
    SameContent {
        path: String,
        mtime_ns: i64,
        size: u64,
    },
    Loaded {
        record: DocumentRecord,
        drafts: Vec<ChunkDraft>,
        warnings: Vec<String>,
        is_new: bool,
        boilerplate_lines: usize,
    },
    Skipped(SkippedFile),
}

/// A file after the first, parallel stage (read, hash, load), which runs
/// over every file of an ingest before any is chunked: boilerplate is found
/// from line counts over the whole collection, this ingest's files included.
enum Read {
    /// Content identical to the catalog's: only mtime/size changed.
    SameContent {
        path: String,
        mtime_ns: i64,
        size: u64,
    },
    Doc(Box<ReadDoc>),
    Skipped(SkippedFile),
    /// Not read (the ingest was cancelled first), or already handed to its round.
    Gone,
}

/// A loaded file waiting to be chunked.
struct ReadDoc {
    file: FoundFile,
    hash: String,
    size: u64,
    /// The loaded document, kept while the stage's memory budget allows
    /// ([`KEEP_TEXT_BYTES`]); `None`: load it again when its round comes.
    doc: Option<Document>,
    /// Distinct line keys of its text.
    keys: Vec<u64>,
    is_new: bool,
}

/// Document text the read stage keeps in memory for the rounds; beyond it,
/// documents are loaded a second time (only their line keys are kept).
const KEEP_TEXT_BYTES: u64 = 512 * 1024 * 1024;

/// Document counts of line keys: what [`boilerplate::strip`] consults.
struct LineCounts {
    docs_with: HashMap<u64, u32>,
    rule: BoilerplateRule,
}

impl LineCounts {
    /// Counts over the read documents alone (no catalog: a cluster client).
    fn of_batch(reads: &[Read], min_docs: u32) -> LineCounts {
        let mut docs_with: HashMap<u64, u32> = HashMap::new();
        let mut docs = 0u64;
        for r in reads {
            if let Read::Doc(d) = r {
                docs += 1;
                for &k in &d.keys {
                    *docs_with.entry(k).or_insert(0) += 1;
                }
            }
        }
        LineCounts {
            docs_with,
            rule: BoilerplateRule {
                min_docs,
                collection_docs: docs,
            },
        }
    }

    fn get(&self, key: u64) -> u32 {
        self.docs_with.get(&key).copied().unwrap_or(0)
    }
}

/// Files per embedding round: large enough to fill batches, small enough
/// that little is lost to an interruption.
const FILES_PER_ROUND: usize = 16;

impl Engine {
    /// Ingest files and directories into the collection: the one pipeline
    /// ([`Preparer::ingest`]) with the catalog as its sink, then the
    /// indexes catch up.
    pub fn ingest(
        &self,
        roots: &[PathBuf],
        opts: &IngestOptions,
        progress: &dyn Progress,
    ) -> Result<IngestReport> {
        let started = Instant::now();
        let mut report = self
            .prep
            .ingest(roots, opts, &mut Sink::Catalog(self), progress)?;
        let caught = self.catch_up(progress)?;
        report.seq = caught.to.max(self.catalog()?.last_seq()?);
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Line counts over the collection as it will be after this ingest: the
    /// catalog's counts, plus the documents read, minus the replaced texts
    /// of the documents they update.
    fn line_counts(&self, reads: &[Read], todo: &[Todo]) -> Result<LineCounts> {
        let min_docs = self.cfg.ingest.boilerplate_min_docs;
        let mut counts = LineCounts::of_batch(reads, min_docs);
        if min_docs == 0 {
            return Ok(counts);
        }
        let cat = self.catalog()?;
        let mut delta: HashMap<u64, i64> = counts
            .docs_with
            .iter()
            .map(|(&k, &n)| (k, i64::from(n)))
            .collect();
        let mut new_docs = 0u64;
        for (r, (_, old)) in reads.iter().zip(todo) {
            let Read::Doc(_) = r else { continue };
            match old {
                None => new_docs += 1,
                Some(known) => {
                    let Some(id) = known.id else { continue };
                    if let Some(text) = cat.document_text(id)? {
                        for k in cairn_core::lines::document_line_keys(&text) {
                            *delta.entry(k).or_insert(0) -= 1;
                        }
                    }
                }
            }
        }
        let keys: Vec<u64> = delta.keys().copied().collect();
        let stored = cat.line_doc_counts(&keys)?;
        counts.docs_with = delta
            .into_iter()
            .map(|(k, d)| {
                let n = i64::from(stored.get(&k).copied().unwrap_or(0)) + d;
                (k, u32::try_from(n.max(0)).unwrap_or(u32::MAX))
            })
            .collect();
        counts.rule.collection_docs = cat.stats()?.documents + new_docs;
        Ok(counts)
    }
}

/// Load → chunk → embed, without a catalog: the part of ingest before
/// `apply`. [`Engine`] uses it, and so does a cluster client, which embeds
/// once and publishes the resulting [`Op`]s to the shards' logs.
pub struct Preparer {
    cfg: Config,
    embedder: Arc<dyn SentenceEncoder>,
    chunker: Chunker,
}

impl std::fmt::Debug for Preparer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preparer")
            .field("model", &self.embedder.model_id())
            .finish()
    }
}

impl Preparer {
    /// A chunker sized for `embedder` (`chunk.max_tokens = 0` means the model's window).
    pub fn new(cfg: &Config, embedder: Arc<dyn SentenceEncoder>) -> Result<Preparer> {
        let max_tokens = if cfg.chunk.max_tokens == 0 {
            embedder.max_tokens()
        } else {
            cfg.chunk.max_tokens
        };
        let overlap = cfg.chunk.overlap_tokens.min(max_tokens / 2);
        let chunker = Chunker::new(embedder.chunking_tokenizer(), max_tokens, overlap)?;
        Ok(Preparer {
            cfg: cfg.clone(),
            embedder,
            chunker,
        })
    }

    /// The embedding model.
    pub fn embedder(&self) -> &Arc<dyn SentenceEncoder> {
        &self.embedder
    }

    /// The one ingest pipeline: walk `roots` → compare each file with what
    /// the sink knows (unchanged size and mtime: skipped; same content:
    /// only its new mtime is recorded) → read, hash and load the rest in
    /// parallel → strip boilerplate → chunk → embed → hand each round's
    /// `Op::Upsert`s to the sink, in path order; with `opts.prune`, then
    /// delete what the sink knows under `roots` that the walk no longer
    /// finds. The report's `seq` is left to the caller.
    pub fn ingest(
        &self,
        roots: &[PathBuf],
        opts: &IngestOptions,
        sink: &mut Sink<'_>,
        progress: &dyn Progress,
    ) -> Result<IngestReport> {
        let started = Instant::now();
        let walk_opts = WalkOptions {
            max_file_bytes: self.cfg.ingest.max_file_bytes,
            ignore_files: self.cfg.ingest.ignore_files.clone(),
            hidden: self.cfg.ingest.hidden,
            // Images are documents when OCR can read them (a build without
            // the `ocr` feature skips them as binary files, as before).
            images: self.cfg.ingest.ocr && cairn_ingest::ocr::COMPILED,
        };
        let (mut found, skipped) = cairn_ingest::walk(roots, &walk_opts);
        for f in found.iter_mut() {
            if let Some(name) = opts.display_names.get(&f.abs_path) {
                f.doc = name.clone();
            }
        }
        // A file given by its own path is reported under its file name; show
        // its display name instead when it has one.
        let display = |path: String| -> String {
            opts.display_names
                .iter()
                .find(|(p, _)| {
                    p.to_string_lossy() == path
                        || p.file_name().is_some_and(|n| n.to_string_lossy() == path)
                })
                .map(|(_, name)| name.clone())
                .unwrap_or(path)
        };
        let mut report = IngestReport {
            files_seen: found.len() as u64,
            skipped: skipped
                .into_iter()
                .map(|s| SkippedFile {
                    path: display(s.path),
                    reason: s.reason,
                })
                .collect(),
            ..Default::default()
        };

        // Unchanged by size and mtime: nothing to read. A file that crashed
        // or hung a loader before is not tried again until it changes.
        let mut todo: Vec<Todo> = Vec::new();
        for f in found.iter() {
            let key = f.abs_path.to_string_lossy().to_string();
            match sink.known(&key)? {
                Some(d) if d.size == f.size && d.mtime_ns == f.mtime_ns => report.unchanged += 1,
                known => match sink.failure(&key)? {
                    Some(failed) if failed.size == f.size && failed.mtime_ns == f.mtime_ns => {
                        report.skipped.push(SkippedFile {
                            path: f.doc.clone(),
                            reason: format!(
                                "{}; not tried again until the file changes",
                                failed.reason
                            ),
                        })
                    }
                    _ => todo.push((f.clone(), known)),
                },
            }
        }
        let loading = Loading {
            loader: cairn_ingest::isolate::Loader::new(
                cairn_ingest::LoadLimits::from_config(&self.cfg.ingest),
                self.cfg.ingest.isolate,
            ),
            failures: Mutex::new(Vec::new()),
        };

        let cancelled = || {
            opts.cancel
                .as_ref()
                .is_some_and(|c| c.load(Ordering::SeqCst))
        };
        let files: Vec<(&FoundFile, Option<&str>)> = todo
            .iter()
            .map(|(f, old)| (f, old.as_ref().map(|k| k.hash.as_str())))
            .collect();
        let mut reads = self.read_all(&loading, files, &cancelled, progress);
        sink.record_failures(loading.take_failures())?;
        let counts = match sink {
            Sink::Catalog(engine) => engine.line_counts(&reads, &todo)?,
            // A cluster client has no catalog: the files of this ingest.
            Sink::Publish { .. } => {
                LineCounts::of_batch(&reads, self.cfg.ingest.boilerplate_min_docs)
            }
        };

        progress.begin("ingesting", todo.len() as u64);
        for round in reads.chunks_mut(FILES_PER_ROUND) {
            if cancelled() {
                report.cancelled = true;
                break;
            }
            let prepared: Vec<Prepared> = round
                .par_iter_mut()
                .filter_map(|r| self.take(&loading, r, &counts))
                .collect();
            sink.record_failures(loading.take_failures())?;
            // Unchanged content only needs its new mtime and size recorded.
            let mut touches = Vec::new();
            let prepared: Vec<Prepared> = prepared
                .into_iter()
                .filter_map(|p| match p {
                    Prepared::SameContent {
                        path,
                        mtime_ns,
                        size,
                    } => {
                        touches.push((path, mtime_ns, size));
                        None
                    }
                    p => Some(p),
                })
                .collect();
            let ops = self.embed_round(prepared, sink, &mut report)?;
            report.unchanged += touches.len() as u64;
            sink.write(ops, touches)?;
            progress.advance(round.len() as u64);
        }
        progress.end();

        if opts.prune && !report.cancelled {
            let victims = prune_targets(roots, &found, &report.skipped, &sink.documents()?);
            report.removed = victims.len() as u64;
            let deletes = victims
                .into_iter()
                .map(|path| Op::Delete { path })
                .collect();
            sink.write(deletes, Vec::new())?;
        }
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Embed one round's chunks in one call (full batches) and turn loaded
    /// documents into upserts; skipped files and warnings go to `report`.
    /// A chunk whose embedding text the sink already holds a vector for (a
    /// renamed or copied file, or an unchanged part of an edited one) keeps
    /// that vector instead of being embedded again.
    fn embed_round(
        &self,
        prepared: Vec<Prepared>,
        sink: &Sink<'_>,
        report: &mut IngestReport,
    ) -> Result<Vec<Op>> {
        let mut reusable: Vec<HashMap<String, Vec<f32>>> = Vec::new();
        let mut texts: Vec<String> = Vec::new();
        for p in &prepared {
            if let Prepared::Loaded { record, drafts, .. } = p {
                let known = sink.reusable_vectors(&record.hash, &record.path)?;
                texts.extend(
                    drafts
                        .iter()
                        .map(|d| d.embedding_text())
                        .filter(|t| !known.contains_key(t)),
                );
                reusable.push(known);
            }
        }
        let vectors = self.embedder.embed_passages(&texts)?;
        check_vectors(
            &vectors,
            texts.len(),
            self.embedder.dim(),
            self.embedder.model_id(),
        )?;
        let mut vectors = vectors.into_iter();
        let mut reusable = reusable.into_iter();
        let mut ops = Vec::new();
        for p in prepared {
            match p {
                Prepared::SameContent { .. } => report.unchanged += 1,
                Prepared::Skipped(s) => report.skipped.push(s),
                Prepared::Loaded {
                    record,
                    drafts,
                    warnings,
                    is_new,
                    boilerplate_lines,
                } => {
                    report.boilerplate_lines += boilerplate_lines as u64;
                    let known = reusable.next().unwrap_or_default();
                    let chunks: Vec<NewChunk> = drafts
                        .into_iter()
                        .map(|d| {
                            let vector = match known.get(&d.embedding_text()) {
                                Some(v) => {
                                    report.chunks_reused += 1;
                                    v.clone()
                                }
                                // Counted by `check_vectors`: one per draft
                                // without a vector to reuse.
                                None => vectors.next().unwrap_or_default(),
                            };
                            NewChunk {
                                ord: d.ord,
                                text: d.text,
                                start: d.start,
                                end: d.end,
                                heading: d.heading,
                                vector,
                            }
                        })
                        .collect();
                    report.chunks_added += chunks.len() as u64;
                    if is_new {
                        report.added += 1;
                    } else {
                        report.updated += 1;
                    }
                    report
                        .warnings
                        .extend(warnings.into_iter().map(|w| SkippedFile {
                            path: record.doc.clone(),
                            reason: w,
                        }));
                    ops.push(Op::Upsert {
                        doc: record,
                        chunks,
                    });
                }
            }
        }
        Ok(ops)
    }

    /// The read stage: read, hash and load `files` (each with the hash of
    /// the content the catalog has, if any) in parallel, before any is
    /// chunked. Once `cancelled` says so, the files not yet read are left.
    fn read_all(
        &self,
        loading: &Loading,
        files: Vec<(&FoundFile, Option<&str>)>,
        cancelled: &(dyn Fn() -> bool + Sync),
        progress: &dyn Progress,
    ) -> Vec<Read> {
        let kept = AtomicU64::new(0);
        progress.begin("reading", files.len() as u64);
        let reads = files
            .into_par_iter()
            .map(|(f, old_hash)| {
                if cancelled() {
                    return Read::Gone;
                }
                let r = self.read(loading, f, old_hash, &kept);
                progress.advance(1);
                r
            })
            .collect();
        progress.end();
        reads
    }

    /// Take a read file out of its slot and make it what its round needs:
    /// loaded files lose their boilerplate and are chunked.
    fn take(&self, loading: &Loading, slot: &mut Read, counts: &LineCounts) -> Option<Prepared> {
        match std::mem::replace(slot, Read::Gone) {
            Read::SameContent {
                path,
                mtime_ns,
                size,
            } => Some(Prepared::SameContent {
                path,
                mtime_ns,
                size,
            }),
            Read::Skipped(s) => Some(Prepared::Skipped(s)),
            Read::Doc(d) => Some(self.finish(loading, *d, counts)),
            Read::Gone => None,
        }
    }

    /// Read, hash and load one file; keep the loaded document while the
    /// budget `kept` allows.
    fn read(
        &self,
        loading: &Loading,
        f: &FoundFile,
        old_hash: Option<&str>,
        kept: &AtomicU64,
    ) -> Read {
        let skip = |reason: String| {
            Read::Skipped(SkippedFile {
                path: f.doc.clone(),
                reason,
            })
        };
        let bytes = match cairn_ingest::read_file(&f.abs_path, self.cfg.ingest.max_file_bytes) {
            Ok(b) => b,
            Err(e) => return skip(e.reason()),
        };
        let hash = cairn_ingest::content_hash(&bytes);
        if old_hash == Some(hash.as_str()) {
            return Read::SameContent {
                path: f.abs_path.to_string_lossy().to_string(),
                mtime_ns: f.mtime_ns,
                size: f.size,
            };
        }
        let doc = match loading.loader.load(&f.abs_path, &bytes) {
            Ok(d) => d,
            Err(e) => {
                loading.note(f, &e);
                return skip(e.reason());
            }
        };
        let keys = cairn_core::lines::document_line_keys(&doc.text);
        let len = doc.text.len() as u64;
        let keep = kept.fetch_add(len, Ordering::Relaxed) + len <= KEEP_TEXT_BYTES;
        Read::Doc(Box::new(ReadDoc {
            file: f.clone(),
            hash,
            size: bytes.len() as u64,
            doc: keep.then_some(doc),
            keys,
            is_new: old_hash.is_none(),
        }))
    }

    /// Leave out boilerplate, then chunk: a loaded file ready to embed.
    fn finish(&self, loading: &Loading, r: ReadDoc, counts: &LineCounts) -> Prepared {
        let f = &r.file;
        let skip = |reason: String| {
            Prepared::Skipped(SkippedFile {
                path: f.doc.clone(),
                reason,
            })
        };
        let mut doc = match r.doc {
            Some(d) => d,
            None => {
                let loaded = cairn_ingest::read_file(&f.abs_path, self.cfg.ingest.max_file_bytes)
                    .and_then(|bytes| {
                        if cairn_ingest::content_hash(&bytes) == r.hash {
                            loading.loader.load(&f.abs_path, &bytes)
                        } else {
                            Err(cairn_ingest::IngestError::Changed {
                                path: f.abs_path.clone(),
                            })
                        }
                    });
                match loaded {
                    Ok(d) => d,
                    Err(e) => {
                        loading.note(f, &e);
                        return skip(e.reason());
                    }
                }
            }
        };
        // The splitter and tokenizer meet hostile text too: a panic there
        // costs this file only.
        let chunked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let lines = boilerplate::strip(&mut doc, counts.rule, |k| counts.get(k));
            (lines, self.chunker.chunk(&doc))
        }));
        let (boilerplate_lines, drafts) = match chunked {
            Ok(c) => c,
            Err(payload) => {
                let e = cairn_ingest::IngestError::Panicked {
                    path: f.abs_path.clone(),
                    stage: "chunker".into(),
                    message: cairn_ingest::panic_message(payload.as_ref()),
                };
                loading.note(f, &e);
                return skip(e.reason());
            }
        };
        if drafts.is_empty() {
            return skip("no text to index".into());
        }
        Prepared::Loaded {
            record: DocumentRecord {
                path: f.abs_path.to_string_lossy().to_string(),
                doc: f.doc.clone(),
                root: f.root.to_string_lossy().to_string(),
                hash: r.hash,
                mtime_ns: f.mtime_ns,
                size: r.size,
                format: doc.format.name(),
                text: doc.text,
            },
            drafts,
            warnings: doc.warnings,
            is_new: r.is_new,
            boilerplate_lines,
        }
    }
}

/// The embedder's answer for one round: one vector per text, each of the
/// model's dimension. A backend that returns fewer vectors, or an empty or
/// short one, fails the ingest here instead of storing a chunk no search
/// can find (the catalog would refuse it too, after the embedding work).
fn check_vectors(vectors: &[Vec<f32>], texts: usize, dim: usize, model: &str) -> Result<()> {
    if vectors.len() != texts {
        return Err(EngineError::Embed(cairn_core::EmbedError(format!(
            "the embedding model `{model}` returned {} vectors for {texts} passages",
            vectors.len()
        ))));
    }
    if let Some((i, v)) = vectors.iter().enumerate().find(|(_, v)| v.len() != dim) {
        return Err(EngineError::Embed(cairn_core::EmbedError(format!(
            "the embedding model `{model}` returned a vector of {} dimensions for passage {i} (its dimension is {dim})",
            v.len()
        ))));
    }
    if let Some(i) = vectors
        .iter()
        .position(|v| v.iter().any(|x| !x.is_finite()))
    {
        return Err(EngineError::Embed(cairn_core::EmbedError(format!(
            "the embedding model `{model}` returned a vector with NaN or infinite values for passage {i}"
        ))));
    }
    Ok(())
}
