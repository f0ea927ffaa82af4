//! Ingest: walk → read → hash → load → chunk → embed → catalog, then indexes.
//!
//! Files are taken in path order and committed one document per catalog
//! transaction, in that order, so an interrupted run followed by a re-run ends
//! in the same catalog (same chunk ids) as one uninterrupted run.

use crate::{Engine, Result};
use cairn_core::config::Config;
use cairn_core::{ChunkDraft, Progress, Seq};
use cairn_ingest::Chunker;
use cairn_ingest::{FoundFile, WalkOptions};
use cairn_models::SentenceEncoder;
use cairn_store::{DocumentRecord, NewChunk, Op};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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
    pub skipped: Vec<SkippedFile>,
    /// Non-fatal problems in files that were ingested (e.g. invalid UTF-8).
    pub warnings: Vec<SkippedFile>,
    /// Catalog sequence after the ingest.
    pub seq: Seq,
    /// The ingest was stopped (see [`IngestOptions::cancel`]) before every
    /// file was read; what was committed before the stop is kept.
    pub cancelled: bool,
    pub seconds: f64,
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
    },
    Skipped(SkippedFile),
}

/// Files per embedding round: large enough to fill batches, small enough
/// that little is lost to an interruption.
const FILES_PER_ROUND: usize = 16;

impl Engine {
    /// Ingest files and directories into the collection.
    pub fn ingest(
        &self,
        roots: &[PathBuf],
        opts: &IngestOptions,
        progress: &dyn Progress,
    ) -> Result<IngestReport> {
        let started = Instant::now();
        let walk_opts = WalkOptions {
            max_file_bytes: self.cfg.ingest.max_file_bytes,
            ignore_files: self.cfg.ingest.ignore_files.clone(),
            hidden: self.cfg.ingest.hidden,
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

        // Unchanged by size and mtime: nothing to read.
        let mut todo: Vec<(FoundFile, Option<String>)> = Vec::new();
        {
            let cat = self.catalog();
            for f in found.iter() {
                let key = f.abs_path.to_string_lossy().to_string();
                match cat.document(&key)? {
                    Some(d) if d.size == f.size && d.mtime_ns == f.mtime_ns => {
                        report.unchanged += 1
                    }
                    Some(d) => todo.push((f.clone(), Some(d.hash))),
                    None => todo.push((f.clone(), None)),
                }
            }
        }

        progress.begin("ingesting", todo.len() as u64);
        for round in todo.chunks(FILES_PER_ROUND) {
            if opts
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(Ordering::SeqCst))
            {
                report.cancelled = true;
                break;
            }
            let prepared: Vec<Prepared> = round
                .par_iter()
                .map(|(f, old_hash)| self.prep.prepare(f, old_hash.as_deref()))
                .collect();
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
            let ops = self.prep.embed_round(prepared, &mut report)?;
            let mut cat = self.catalog();
            for (path, mtime_ns, size) in touches {
                cat.touch(&path, mtime_ns, size)?;
                report.unchanged += 1;
            }
            for op in ops {
                cat.apply(op, None)?;
            }
            drop(cat);
            progress.advance(round.len() as u64);
        }
        progress.end();

        if opts.prune && !report.cancelled {
            report.removed = self.prune(roots, &found, &report.skipped)?;
        }
        let caught = self.catch_up(progress)?;
        report.seq = caught.to.max(self.catalog().last_seq()?);
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Delete documents under `roots` that the walk did not find (and that
    /// were not merely skipped this time).
    fn prune(
        &self,
        roots: &[PathBuf],
        found: &[FoundFile],
        skipped: &[SkippedFile],
    ) -> Result<u64> {
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
        let mut cat = self.catalog();
        let mut removed = 0;
        for d in cat.documents()? {
            let under = roots.iter().any(|r| {
                d.path == *r || d.path.starts_with(&format!("{}/", r.trim_end_matches('/')))
            });
            if under && !seen.contains(&d.path) && !skipped.contains(d.doc.as_str()) {
                cat.apply(
                    Op::Delete {
                        path: d.path.clone(),
                    },
                    None,
                )?;
                removed += 1;
            }
        }
        Ok(removed)
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

    /// Walk `roots`, then load, chunk and embed every file, handing each
    /// round's documents to `sink` as `Op::Upsert`s in path order. Nothing is
    /// compared with a catalog (every file found is prepared). The report
    /// counts every prepared document as `added`.
    pub fn prepare_ops<E: From<crate::EngineError>>(
        &self,
        roots: &[PathBuf],
        progress: &dyn Progress,
        sink: &mut dyn FnMut(Vec<Op>) -> std::result::Result<(), E>,
    ) -> std::result::Result<IngestReport, E> {
        let started = Instant::now();
        let walk_opts = WalkOptions {
            max_file_bytes: self.cfg.ingest.max_file_bytes,
            ignore_files: self.cfg.ingest.ignore_files.clone(),
            hidden: self.cfg.ingest.hidden,
        };
        let (found, skipped) = cairn_ingest::walk(roots, &walk_opts);
        let mut report = IngestReport {
            files_seen: found.len() as u64,
            skipped: skipped
                .into_iter()
                .map(|s| SkippedFile {
                    path: s.path,
                    reason: s.reason,
                })
                .collect(),
            ..Default::default()
        };
        progress.begin("embedding", found.len() as u64);
        for round in found.chunks(FILES_PER_ROUND) {
            let prepared: Vec<Prepared> = round.par_iter().map(|f| self.prepare(f, None)).collect();
            let ops = self.embed_round(prepared, &mut report)?;
            sink(ops)?;
            progress.advance(round.len() as u64);
        }
        progress.end();
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Embed one round's chunks in one call (full batches) and turn loaded
    /// documents into upserts; skipped files and warnings go to `report`.
    fn embed_round(&self, prepared: Vec<Prepared>, report: &mut IngestReport) -> Result<Vec<Op>> {
        let texts: Vec<String> = prepared
            .iter()
            .filter_map(|p| match p {
                Prepared::Loaded { drafts, .. } => Some(drafts.iter().map(|d| d.embedding_text())),
                _ => None,
            })
            .flatten()
            .collect();
        let mut vectors = self.embedder.embed_passages(&texts)?.into_iter();
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
                } => {
                    let chunks: Vec<NewChunk> = drafts
                        .into_iter()
                        .map(|d| NewChunk {
                            ord: d.ord,
                            text: d.text,
                            start: d.start,
                            end: d.end,
                            heading: d.heading,
                            vector: vectors.next().unwrap_or_default(),
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

    fn prepare(&self, f: &FoundFile, old_hash: Option<&str>) -> Prepared {
        let skip = |reason: String| {
            Prepared::Skipped(SkippedFile {
                path: f.doc.clone(),
                reason,
            })
        };
        let bytes = match cairn_ingest::read_file(&f.abs_path, self.cfg.ingest.max_file_bytes) {
            Ok(b) => b,
            Err(e) => return skip(e.reason()),
        };
        let hash = cairn_ingest::content_hash(&bytes);
        let path = f.abs_path.to_string_lossy().to_string();
        if old_hash == Some(hash.as_str()) {
            return Prepared::SameContent {
                path,
                mtime_ns: f.mtime_ns,
                size: f.size,
            };
        }
        let doc = match cairn_ingest::load(&f.abs_path, &bytes) {
            Ok(d) => d,
            Err(e) => return skip(e.reason()),
        };
        let drafts = self.chunker.chunk(&doc);
        if drafts.is_empty() {
            return skip("no text to index".into());
        }
        Prepared::Loaded {
            record: DocumentRecord {
                path,
                doc: f.doc.clone(),
                root: f.root.to_string_lossy().to_string(),
                hash,
                mtime_ns: f.mtime_ns,
                size: bytes.len() as u64,
                format: doc.format.name(),
                text: doc.text,
            },
            drafts,
            warnings: doc.warnings,
            is_new: old_hash.is_none(),
        }
    }
}
