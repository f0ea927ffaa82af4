//! Ingest: walk → read → hash → load → chunk → embed → catalog, then indexes.
//!
//! Files are taken in path order and committed one document per catalog
//! transaction, in that order, so an interrupted run followed by a re-run ends
//! in the same catalog (same chunk ids) as one uninterrupted run.

use crate::{Engine, Result};
use cairn_core::{ChunkDraft, Progress, Seq};
use cairn_ingest::{FoundFile, WalkOptions};
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
                .map(|(f, old_hash)| self.prepare(f, old_hash.as_deref()))
                .collect();
            // Embed every chunk of the round in one call, so batches are full.
            let texts: Vec<String> = prepared
                .iter()
                .filter_map(|p| match p {
                    Prepared::Loaded { drafts, .. } => {
                        Some(drafts.iter().map(|d| d.embedding_text()))
                    }
                    _ => None,
                })
                .flatten()
                .collect();
            let mut vectors = self.embedder.embed_passages(&texts)?.into_iter();
            let mut cat = self.catalog();
            for p in prepared {
                match p {
                    Prepared::SameContent {
                        path,
                        mtime_ns,
                        size,
                    } => {
                        cat.touch(&path, mtime_ns, size)?;
                        report.unchanged += 1;
                    }
                    Prepared::Skipped(s) => report.skipped.push(s),
                    Prepared::Loaded {
                        record,
                        drafts,
                        warnings,
                        is_new,
                    } => {
                        let doc = record.doc.clone();
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
                        cat.apply(
                            Op::Upsert {
                                doc: record,
                                chunks,
                            },
                            None,
                        )?;
                        if is_new {
                            report.added += 1;
                        } else {
                            report.updated += 1;
                        }
                        report
                            .warnings
                            .extend(warnings.into_iter().map(|w| SkippedFile {
                                path: doc.clone(),
                                reason: w,
                            }));
                    }
                }
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
