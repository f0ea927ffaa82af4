//! The catalog: one collection's durable source of truth.
//!
//! A catalog is a SQLite database in WAL mode holding documents (path,
//! content hash, mtime, size, format, extracted text), their chunks (text,
//! span, heading path, vector) and a strictly increasing sequence number per
//! accepted change. Every change goes through [`Catalog::apply`] — the one
//! apply path shared by single-node ingest and cluster replication — in a
//! single transaction, so a crash at any moment leaves either the old or the
//! new state of a document, never a mix.
//!
//! Indexes are derived: they ask for [`Catalog::chunks_since`] and
//! [`Catalog::tombstones_since`] to catch up from the sequence they applied.
//!
//! ```
//! use cairn_store::{Catalog, Op, DocumentRecord, NewChunk};
//! let dir = tempfile::tempdir().unwrap();
//! let mut cat = Catalog::open(&dir.path().join("catalog.sqlite")).unwrap();
//! let doc = DocumentRecord { path: "/notes/a.md".into(), doc: "a.md".into(), root: "/notes".into(),
//!     hash: "h1".into(), mtime_ns: 1, size: 5, format: "markdown".into(), text: "hello".into() };
//! let chunk = NewChunk { ord: 0, text: "hello".into(), start: 0, end: 5, heading: String::new(), vector: vec![1.0, 0.0] };
//! let seq = cat.apply(Op::Upsert { doc, chunks: vec![chunk] }, None).unwrap();
//! assert_eq!(seq, Some(1));
//! assert_eq!(cat.stats().unwrap().chunks, 1);
//! ```

mod error;
mod feedback;

pub use error::StoreError;
pub use feedback::{AnswerRecord, FeedbackLog, FeedbackRecord, Rating, FEEDBACK_FILE};

use cairn_core::{ChunkId, DocId, Seq, StoredChunk};
use rusqlite::{params, types::ValueRef, Connection, OptionalExtension};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

const SCHEMA_VERSION: i64 = 1;

pub use cairn_core::op::{blob_to_vector, vector_to_blob, DocumentRecord, NewChunk, Op};

/// Where a catalog's sequence numbers come from, fixed by its first write:
/// its own counter (`apply(op, None)`) or a replicated log's
/// (`apply(op, Some(seq))`). The two never mix in one catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqOrigin {
    Local,
    Log,
}

impl SeqOrigin {
    fn of(seq: Option<Seq>) -> SeqOrigin {
        match seq {
            None => SeqOrigin::Local,
            Some(_) => SeqOrigin::Log,
        }
    }

    /// `local` or `log`.
    pub fn name(self) -> &'static str {
        match self {
            SeqOrigin::Local => "local",
            SeqOrigin::Log => "log",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            SeqOrigin::Local => "its own (a local collection)",
            SeqOrigin::Log => "a replicated log's",
        }
    }
}

/// A file whose loading failed costly (see [`Catalog::record_failure`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The file's canonical path.
    pub path: String,
    pub size: u64,
    pub mtime_ns: i64,
    /// Why it failed, as the ingest reported it.
    pub reason: String,
}

/// What the catalog knows of a document, without its text.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DocMeta {
    pub id: DocId,
    pub path: String,
    pub doc: String,
    pub root: String,
    pub hash: String,
    pub mtime_ns: i64,
    pub size: u64,
    pub format: String,
    pub seq: Seq,
    pub chunks: u64,
}

/// What a catalog holds, digested ([`Catalog::content_digest`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ContentDigest {
    pub documents: u64,
    pub chunks: u64,
    /// BLAKE3, hex.
    pub blake3: String,
}

/// Counts for `cairn status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub documents: u64,
    pub chunks: u64,
    pub seq: Seq,
}

/// One collection's catalog.
pub struct Catalog {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").field("path", &self.path).finish()
    }
}

/// Add `delta` (1 or -1) to the document count of every distinct line of
/// `text`, inside the caller's transaction; counts that reach 0 are removed.
fn count_lines(tx: &rusqlite::Transaction<'_>, text: &str, delta: i64) -> rusqlite::Result<()> {
    let keys = cairn_core::lines::document_line_keys(text);
    if delta > 0 {
        let mut up = tx.prepare_cached(
            "INSERT INTO line_df(key, docs) VALUES(?1, ?2) ON CONFLICT(key) DO UPDATE SET docs = docs + ?2",
        )?;
        for k in keys {
            up.execute(params![k as i64, delta])?;
        }
    } else {
        let mut down = tx.prepare_cached("UPDATE line_df SET docs = docs + ?2 WHERE key=?1")?;
        let mut gone = tx.prepare_cached("DELETE FROM line_df WHERE key=?1 AND docs <= 0")?;
        for k in keys {
            down.execute(params![k as i64, delta])?;
            gone.execute([k as i64])?;
        }
    }
    Ok(())
}

/// The error mapper for the catalog at `path`, owning its copy of the
/// path: for use while the connection is borrowed mutably (a transaction),
/// where `Catalog::err` cannot borrow the catalog.
fn sqlite_err(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Sqlite {
        path: path.clone(),
        source,
    }
}

impl Catalog {
    /// Open (creating if needed) the catalog at `path`.
    pub fn open(path: &Path) -> Result<Catalog> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(|source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cat = Catalog {
            conn,
            path: path.to_path_buf(),
        };
        cat.init()?;
        Ok(cat)
    }

    /// Open an existing catalog for reading only. In WAL mode a reader never
    /// waits for the writer: it sees the last committed state.
    pub fn open_reader(path: &Path) -> Result<Catalog> {
        use rusqlite::OpenFlags;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(|source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(|source| StoreError::Sqlite {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Catalog {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn init(&mut self) -> Result<()> {
        let e = sqlite_err(&self.path);
        self.conn
            .busy_timeout(std::time::Duration::from_secs(30))
            .map_err(&e)?;
        // WAL: readers never wait for the writer. synchronous=FULL: a committed
        // document survives power loss, not only a process crash.
        self.conn
            .execute_batch(
                "PRAGMA journal_mode=WAL;
                 PRAGMA synchronous=FULL;
                 PRAGMA foreign_keys=ON;
                 CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS documents(
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    path TEXT NOT NULL UNIQUE,
                    doc TEXT NOT NULL,
                    root TEXT NOT NULL,
                    hash TEXT NOT NULL,
                    mtime_ns INTEGER NOT NULL,
                    size INTEGER NOT NULL,
                    format TEXT NOT NULL,
                    text TEXT NOT NULL,
                    seq INTEGER NOT NULL);
                 CREATE TABLE IF NOT EXISTS chunks(
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
                    ord INTEGER NOT NULL,
                    text TEXT NOT NULL,
                    start INTEGER NOT NULL,
                    end INTEGER NOT NULL,
                    heading TEXT NOT NULL,
                    vector BLOB NOT NULL,
                    seq INTEGER NOT NULL);
                 CREATE INDEX IF NOT EXISTS chunks_seq ON chunks(seq);
                 CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
                 CREATE INDEX IF NOT EXISTS documents_hash ON documents(hash);
                 CREATE TABLE IF NOT EXISTS tombstones(seq INTEGER NOT NULL, chunk_id INTEGER NOT NULL);
                 CREATE INDEX IF NOT EXISTS tombstones_seq ON tombstones(seq);
                 CREATE TABLE IF NOT EXISTS line_df(key INTEGER PRIMARY KEY, docs INTEGER NOT NULL);
                 CREATE TABLE IF NOT EXISTS failures(
                    path TEXT PRIMARY KEY,
                    size INTEGER NOT NULL,
                    mtime_ns INTEGER NOT NULL,
                    reason TEXT NOT NULL);",
            )
            .map_err(&e)?;
        // Catalogs written before line counts existed get them once.
        let counted: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key='line_df'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(&e)?;
        if counted.is_none() {
            let tx = self.conn.transaction().map_err(&e)?;
            {
                let mut texts = tx.prepare("SELECT text FROM documents").map_err(&e)?;
                let mut rows = texts.query([]).map_err(&e)?;
                while let Some(row) = rows.next().map_err(&e)? {
                    let text: String = row.get(0).map_err(&e)?;
                    count_lines(&tx, &text, 1).map_err(&e)?;
                }
            }
            tx.execute("INSERT INTO meta(key, value) VALUES('line_df', '1')", [])
                .map_err(&e)?;
            tx.commit().map_err(&e)?;
        }
        let version: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key='schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(&e)?;
        match version {
            None => {
                self.conn
                    .execute(
                        "INSERT INTO meta(key, value) VALUES('schema_version', ?1)",
                        [SCHEMA_VERSION.to_string()],
                    )
                    .map_err(&e)?;
            }
            Some(v) => {
                let found: i64 = v.parse().map_err(|_| StoreError::Invalid {
                    path: self.path.clone(),
                    message: format!("schema_version `{v}` is not a number"),
                })?;
                if found > SCHEMA_VERSION {
                    return Err(StoreError::Schema {
                        path: self.path.clone(),
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
            }
        }
        Ok(())
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key=?1", [key], |r| r.get(0))
            .optional()
            .map_err(self.err())
    }

    /// The embedding model whose vectors this catalog holds, with their dimension.
    pub fn embedding_model(&self) -> Result<Option<(String, usize)>> {
        let model = self.meta("embed_model")?;
        let dim = self.meta("embed_dim")?;
        Ok(match (model, dim) {
            (Some(m), Some(d)) => Some((m, d.parse().unwrap_or(0))),
            _ => None,
        })
    }

    /// Whether the catalog's vectors come from `model_id` (`dim`
    /// dimensions): `true` when they do, `false` when it records no model
    /// yet, [`StoreError::ModelMismatch`] when it records another. Reads
    /// only (a read-only open checks with it).
    pub fn check_embedding_model(
        &self,
        collection: &str,
        model_id: &str,
        dim: usize,
    ) -> Result<bool> {
        match self.embedding_model()? {
            Some((stored, stored_dim)) if stored != model_id || stored_dim != dim => {
                Err(StoreError::ModelMismatch {
                    collection: collection.to_string(),
                    stored: format!("{stored} ({stored_dim}-dim)"),
                    requested: format!("{model_id} ({dim}-dim)"),
                })
            }
            Some(_) => Ok(true),
            None => Ok(false),
        }
    }

    /// Record the embedding model on first use; refuse a different one later.
    pub fn ensure_embedding_model(
        &mut self,
        collection: &str,
        model_id: &str,
        dim: usize,
    ) -> Result<()> {
        match self.check_embedding_model(collection, model_id, dim)? {
            true => Ok(()),
            false => {
                let tx = self
                    .conn
                    .transaction()
                    .map_err(|source| StoreError::Sqlite {
                        path: self.path.clone(),
                        source,
                    })?;
                tx.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES('embed_model', ?1)",
                    [model_id],
                )
                .and_then(|_| {
                    tx.execute(
                        "INSERT OR REPLACE INTO meta(key, value) VALUES('embed_dim', ?1)",
                        [dim.to_string()],
                    )
                })
                .and_then(|_| tx.commit())
                .map_err(|source| StoreError::Sqlite {
                    path: self.path.clone(),
                    source,
                })
            }
        }
    }

    /// The sequence number of the last applied change (0 when empty).
    pub fn last_seq(&self) -> Result<Seq> {
        Ok(self.meta("seq")?.and_then(|s| s.parse().ok()).unwrap_or(0))
    }

    /// Write a consistent copy of the whole catalog to `dest` (SQLite's
    /// `VACUUM INTO`: one read transaction, so concurrent writers neither
    /// wait nor tear it) and return the sequence the copy holds. `dest`
    /// must not exist. A cluster node's snapshot of a shard.
    pub fn export(&self, dest: &Path) -> Result<Seq> {
        let dest_str = dest.to_string_lossy().to_string();
        self.conn
            .execute("VACUUM INTO ?1", [&dest_str])
            .map_err(self.err())?;
        let copy = Catalog::open_reader(dest)?;
        copy.last_seq()
    }

    /// Where this catalog's sequence numbers come from: `None` until its
    /// first write.
    pub fn seq_origin(&self) -> Result<Option<SeqOrigin>> {
        Ok(match self.meta("seq_origin")?.as_deref() {
            Some("log") => Some(SeqOrigin::Log),
            Some("local") => Some(SeqOrigin::Local),
            _ => None,
        })
    }

    /// Apply one change in one transaction and return the sequence number it
    /// got. With `seq = None` the catalog assigns `last_seq + 1`. With
    /// `Some(s)` (replication) the change is applied only if `s > last_seq`;
    /// a replayed, already-applied change returns `Ok(None)` and changes
    /// nothing, which makes replay idempotent. A log entry past
    /// `last_seq + 1` is refused ([`StoreError::SeqGap`]): the entries in
    /// between would be lost. (A copy that starts later, from a snapshot,
    /// starts at the snapshot's sequence.)
    pub fn apply(&mut self, op: Op, seq: Option<Seq>) -> Result<Option<Seq>> {
        let e = sqlite_err(&self.path);
        let last = self.last_seq()?;
        let origin = SeqOrigin::of(seq);
        if let Some(kept) = self.seq_origin()? {
            if kept != origin {
                return Err(StoreError::Origin {
                    path: self.path.clone(),
                    kept: kept.describe(),
                    tried: origin.name(),
                    hint: match kept {
                        SeqOrigin::Log => {
                            " (it is a cluster replica's copy of a shard: write through the cluster, `cairn --cluster URL`)"
                        }
                        SeqOrigin::Local => "",
                    },
                });
            }
        }
        let seq = match seq {
            None => last + 1,
            Some(s) if s <= last => return Ok(None),
            // A log's entries come one after another: an entry past the
            // next one means some were lost (a trimmed log, a skipped
            // message), and applying it would hide that for good.
            Some(s) if s > last + 1 => {
                return Err(StoreError::SeqGap {
                    path: self.path.clone(),
                    last,
                    got: s,
                })
            }
            Some(s) => s,
        };
        if let (Op::Upsert { doc, chunks }, Some((_, dim))) = (&op, self.embedding_model()?) {
            if let Some(c) = chunks.iter().find(|c| c.vector.len() != dim) {
                return Err(StoreError::BadOp {
                    path: self.path.clone(),
                    doc: doc.path.clone(),
                    message: format!(
                        "chunk {} has a vector of {} dimensions; the collection's are {dim}",
                        c.ord,
                        c.vector.len()
                    ),
                });
            }
        }
        let tx = self.conn.transaction().map_err(&e)?;
        let seq_i = seq as i64;
        tx.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES('seq_origin', ?1)",
            [origin.name()],
        )
        .map_err(&e)?;
        match &op {
            Op::Noop => {}
            Op::Upsert { doc, chunks } => {
                let existing: Option<i64> = tx
                    .query_row("SELECT id FROM documents WHERE path=?1", [&doc.path], |r| {
                        r.get(0)
                    })
                    .optional()
                    .map_err(&e)?;
                let doc_id = match existing {
                    Some(id) => {
                        let old: String = tx
                            .query_row("SELECT text FROM documents WHERE id=?1", [id], |r| r.get(0))
                            .map_err(&e)?;
                        count_lines(&tx, &old, -1).map_err(&e)?;
                        tx.execute("INSERT INTO tombstones(seq, chunk_id) SELECT ?1, id FROM chunks WHERE doc_id=?2", params![seq_i, id])
                            .map_err(&e)?;
                        tx.execute("DELETE FROM chunks WHERE doc_id=?1", [id])
                            .map_err(&e)?;
                        tx.execute(
                            "UPDATE documents SET doc=?2, root=?3, hash=?4, mtime_ns=?5, size=?6, format=?7, text=?8, seq=?9 WHERE id=?1",
                            params![id, doc.doc, doc.root, doc.hash, doc.mtime_ns, doc.size as i64, doc.format, doc.text, seq_i],
                        )
                        .map_err(&e)?;
                        id
                    }
                    None => {
                        tx.execute(
                            "INSERT INTO documents(path, doc, root, hash, mtime_ns, size, format, text, seq) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9)",
                            params![doc.path, doc.doc, doc.root, doc.hash, doc.mtime_ns, doc.size as i64, doc.format, doc.text, seq_i],
                        )
                        .map_err(&e)?;
                        tx.last_insert_rowid()
                    }
                };
                count_lines(&tx, &doc.text, 1).map_err(&e)?;
                cairn_core::failpoint::reach("catalog.apply.mid");
                // It loads now: a failure remembered for it is over.
                tx.execute("DELETE FROM failures WHERE path=?1", [&doc.path])
                    .map_err(&e)?;
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT INTO chunks(doc_id, ord, text, start, end, heading, vector, seq) VALUES(?1,?2,?3,?4,?5,?6,?7,?8)",
                    )
                    .map_err(&e)?;
                for c in chunks {
                    stmt.execute(params![
                        doc_id,
                        c.ord,
                        c.text,
                        c.start as i64,
                        c.end as i64,
                        c.heading,
                        vector_to_blob(&c.vector),
                        seq_i
                    ])
                    .map_err(&e)?;
                }
            }
            Op::Delete { path } => {
                tx.execute("DELETE FROM failures WHERE path=?1", [path])
                    .map_err(&e)?;
                let existing: Option<i64> = tx
                    .query_row("SELECT id FROM documents WHERE path=?1", [path], |r| {
                        r.get(0)
                    })
                    .optional()
                    .map_err(&e)?;
                if let Some(id) = existing {
                    let old: String = tx
                        .query_row("SELECT text FROM documents WHERE id=?1", [id], |r| r.get(0))
                        .map_err(&e)?;
                    count_lines(&tx, &old, -1).map_err(&e)?;
                    tx.execute("INSERT INTO tombstones(seq, chunk_id) SELECT ?1, id FROM chunks WHERE doc_id=?2", params![seq_i, id])
                        .map_err(&e)?;
                    tx.execute("DELETE FROM chunks WHERE doc_id=?1", [id])
                        .map_err(&e)?;
                    cairn_core::failpoint::reach("catalog.apply.mid");
                    tx.execute("DELETE FROM documents WHERE id=?1", [id])
                        .map_err(&e)?;
                }
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES('seq', ?1)",
            [seq.to_string()],
        )
        .map_err(&e)?;
        cairn_core::failpoint::reach("catalog.apply.commit");
        tx.commit().map_err(&e)?;
        cairn_core::failpoint::reach("catalog.apply.committed");
        Ok(Some(seq))
    }

    /// Remember that loading the file at `path` (as it was: `size`,
    /// `mtime_ns`) failed in a way that costs much each try (a crash, a
    /// hang), so that an ingest skips it until it changes. Local to this
    /// catalog: no sequence number, not replicated.
    pub fn record_failure(&mut self, f: &Failure) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO failures(path, size, mtime_ns, reason) VALUES(?1,?2,?3,?4)",
                params![f.path, f.size as i64, f.mtime_ns, f.reason],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// The failure recorded for `path`, if any.
    pub fn failure(&self, path: &str) -> Result<Option<Failure>> {
        self.conn
            .query_row(
                "SELECT path, size, mtime_ns, reason FROM failures WHERE path=?1",
                [path],
                |r| {
                    Ok(Failure {
                        path: r.get(0)?,
                        size: r.get::<_, i64>(1)? as u64,
                        mtime_ns: r.get(2)?,
                        reason: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(self.err())
    }

    /// Forget the failure recorded for `path` (the file changed, or was
    /// removed).
    pub fn clear_failure(&mut self, path: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM failures WHERE path=?1", [path])
            .map_err(self.err())?;
        Ok(())
    }

    /// Update a document's mtime and size without a new sequence number (its
    /// content hash is unchanged, so nothing derived changes).
    pub fn touch(&mut self, path: &str, mtime_ns: i64, size: u64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE documents SET mtime_ns=?2, size=?3 WHERE path=?1",
                params![path, mtime_ns, size as i64],
            )
            .map_err(self.err())?;
        Ok(())
    }

    fn doc_meta_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DocMeta> {
        Ok(DocMeta {
            id: r.get::<_, i64>(0)? as u64,
            path: r.get(1)?,
            doc: r.get(2)?,
            root: r.get(3)?,
            hash: r.get(4)?,
            mtime_ns: r.get(5)?,
            size: r.get::<_, i64>(6)? as u64,
            format: r.get(7)?,
            seq: r.get::<_, i64>(8)? as u64,
            chunks: r.get::<_, i64>(9)? as u64,
        })
    }

    const DOC_META_SQL: &'static str =
        "SELECT d.id, d.path, d.doc, d.root, d.hash, d.mtime_ns, d.size, d.format, d.seq,
                (SELECT COUNT(*) FROM chunks c WHERE c.doc_id = d.id) FROM documents d";

    /// A document by canonical path.
    pub fn document(&self, path: &str) -> Result<Option<DocMeta>> {
        let sql = format!("{} WHERE d.path=?1", Self::DOC_META_SQL);
        self.conn
            .query_row(&sql, [path], Self::doc_meta_row)
            .optional()
            .map_err(self.err())
    }

    /// All documents, ordered by path.
    pub fn documents(&self) -> Result<Vec<DocMeta>> {
        let sql = format!("{} ORDER BY d.path", Self::DOC_META_SQL);
        let mut stmt = self.conn.prepare(&sql).map_err(self.err())?;
        let rows = stmt.query_map([], Self::doc_meta_row).map_err(self.err())?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err())
    }

    /// The extracted text of a document.
    pub fn document_text(&self, id: DocId) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT text FROM documents WHERE id=?1", [id as i64], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.err())
    }

    /// The document of each of `ids` that exists.
    pub fn chunk_documents(&self, ids: &[ChunkId]) -> Result<HashMap<ChunkId, DocId>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT doc_id FROM chunks WHERE id=?1")
            .map_err(self.err())?;
        let mut out = HashMap::with_capacity(ids.len());
        for &id in ids {
            let d: Option<i64> = stmt
                .query_row([id as i64], |r| r.get(0))
                .optional()
                .map_err(self.err())?;
            if let Some(d) = d {
                out.insert(id, d as DocId);
            }
        }
        Ok(out)
    }

    /// How many documents contain each of `keys` (line keys from
    /// [`cairn_core::lines`]); keys no document has are left out.
    pub fn line_doc_counts(&self, keys: &[u64]) -> Result<HashMap<u64, u32>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT docs FROM line_df WHERE key=?1")
            .map_err(self.err())?;
        let mut out = HashMap::new();
        for &k in keys {
            let n: Option<i64> = stmt
                .query_row([k as i64], |r| r.get(0))
                .optional()
                .map_err(self.err())?;
            if let Some(n) = n.filter(|&n| n > 0) {
                out.insert(k, n as u32);
            }
        }
        Ok(out)
    }

    /// Counts of documents and chunks, and the last sequence number.
    pub fn stats(&self) -> Result<Stats> {
        let documents: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM documents", [], |r| r.get(0))
            .map_err(self.err())?;
        let chunks: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM chunks", [], |r| r.get(0))
            .map_err(self.err())?;
        Ok(Stats {
            documents: documents as u64,
            chunks: chunks as u64,
            seq: self.last_seq()?,
        })
    }

    fn chunk_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(StoredChunk, Vec<u8>)> {
        Ok((
            StoredChunk {
                id: r.get::<_, i64>(0)? as u64,
                doc_id: r.get::<_, i64>(1)? as u64,
                doc: r.get(2)?,
                ord: r.get(3)?,
                text: r.get(4)?,
                start: r.get::<_, i64>(5)? as u64,
                end: r.get::<_, i64>(6)? as u64,
                heading: r.get(7)?,
                seq: r.get::<_, i64>(8)? as u64,
            },
            r.get(9)?,
        ))
    }

    const CHUNK_SQL: &'static str =
        "SELECT c.id, c.doc_id, d.doc, c.ord, c.text, c.start, c.end, c.heading, c.seq, c.vector
                FROM chunks c JOIN documents d ON d.id = c.doc_id";

    /// Visit live chunks added after `seq`, in id order, with their vectors.
    /// This is how indexes catch up. The visitor may fail; the first error stops the walk.
    pub fn for_each_chunk_since<E: From<StoreError>>(
        &self,
        seq: Seq,
        mut f: impl FnMut(StoredChunk, Vec<f32>) -> Result<(), E>,
    ) -> Result<(), E> {
        let sql = format!("{} WHERE c.seq > ?1 ORDER BY c.id", Self::CHUNK_SQL);
        let mut stmt = self.conn.prepare(&sql).map_err(self.err())?;
        let mut rows = stmt.query([seq as i64]).map_err(self.err())?;
        while let Some(row) = rows.next().map_err(self.err())? {
            let (chunk, blob) = Self::chunk_row(row).map_err(self.err())?;
            f(chunk, blob_to_vector(&blob))?;
        }
        Ok(())
    }

    /// Visit every live chunk's vector, in id order (for exact search).
    pub fn for_each_vector(&self, mut f: impl FnMut(ChunkId, &[f32])) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, vector FROM chunks ORDER BY id")
            .map_err(self.err())?;
        let mut rows = stmt.query([]).map_err(self.err())?;
        let mut buf = Vec::new();
        while let Some(row) = rows.next().map_err(self.err())? {
            let id: i64 = row.get(0).map_err(self.err())?;
            let blob =
                row.get_ref(1)
                    .map_err(self.err())?
                    .as_blob()
                    .map_err(|e| StoreError::Invalid {
                        path: self.path.clone(),
                        message: format!("chunk {id}: vector is not a blob: {e}"),
                    })?;
            buf.clear();
            buf.extend(
                blob.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
            f(id as u64, &buf);
        }
        Ok(())
    }

    /// Number of live chunks added after `seq` (for progress bars).
    pub fn count_chunks_since(&self, seq: Seq) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM chunks WHERE seq > ?1",
                [seq as i64],
                |r| r.get(0),
            )
            .map_err(self.err())?;
        Ok(n as u64)
    }

    /// A digest of what the catalog holds, independent of how it got
    /// there: every document (path, content hash, format, text) and every
    /// chunk (ordinal, span, heading, text, vector), in path and ordinal
    /// order, through BLAKE3; with the counts. Two catalogs with equal
    /// digests answer every search alike. Chunk ids and sequence numbers
    /// are left out: they record history, not content.
    pub fn content_digest(&self) -> Result<ContentDigest> {
        self.snapshot(|c| {
            let e = c.err();
            let mut h = blake3::Hasher::new();
            // Every column of every row, each length-prefixed; the rows counted.
            let mut digest = |sql: &str| -> Result<u64> {
                let mut stmt = c.conn.prepare(sql).map_err(&e)?;
                let columns = stmt.column_count();
                let mut rows = stmt.query([]).map_err(&e)?;
                let mut n = 0u64;
                while let Some(r) = rows.next().map_err(&e)? {
                    n += 1;
                    for i in 0..columns {
                        let bytes: Vec<u8> = match r.get_ref(i).map_err(&e)? {
                            ValueRef::Integer(v) => v.to_le_bytes().to_vec(),
                            ValueRef::Real(v) => v.to_le_bytes().to_vec(),
                            ValueRef::Text(b) | ValueRef::Blob(b) => b.to_vec(),
                            ValueRef::Null => vec![],
                        };
                        h.update(&(bytes.len() as u64).to_le_bytes());
                        h.update(&bytes);
                    }
                }
                Ok(n)
            };
            let documents =
                digest("SELECT path, doc, hash, format, text FROM documents ORDER BY path")?;
            let chunks = digest(
                "SELECT d.path, c.ord, c.start, c.end, c.heading, c.text, c.vector \
                 FROM chunks c JOIN documents d ON d.id = c.doc_id ORDER BY d.path, c.ord",
            )?;
            // The line counts boilerplate detection reads.
            digest("SELECT key, docs FROM line_df ORDER BY key")?;
            Ok(ContentDigest {
                documents,
                chunks,
                blake3: h.finalize().to_hex().to_string(),
            })
        })
    }

    /// Forget the tombstones at sequences up to `upto`: every index built
    /// from this catalog has applied them durably (and a rebuilt index
    /// needs none). Returns how many went.
    pub fn prune_tombstones(&mut self, upto: Seq) -> Result<u64> {
        let e = sqlite_err(&self.path);
        let tx = self.conn.transaction().map_err(&e)?;
        let n = tx
            .execute("DELETE FROM tombstones WHERE seq <= ?1", [upto as i64])
            .map_err(&e)?;
        if n > 0 {
            cairn_core::failpoint::reach("catalog.prune");
        }
        tx.commit().map_err(&e)?;
        Ok(n as u64)
    }

    /// Chunks removed after `seq`.
    pub fn tombstones_since(&self, seq: Seq) -> Result<Vec<ChunkId>> {
        let mut stmt = self
            .conn
            .prepare("SELECT chunk_id FROM tombstones WHERE seq > ?1 ORDER BY seq, chunk_id")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([seq as i64], |r| r.get::<_, i64>(0).map(|v| v as u64))
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err())
    }

    /// Chunks by id, in the order asked; ids no longer in the catalog are left out.
    pub fn chunks(&self, ids: &[ChunkId]) -> Result<Vec<StoredChunk>> {
        let sql = format!("{} WHERE c.id = ?1", Self::CHUNK_SQL);
        let mut stmt = self.conn.prepare_cached(&sql).map_err(self.err())?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some((c, _)) = stmt
                .query_row([*id as i64], Self::chunk_row)
                .optional()
                .map_err(self.err())?
            {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Vectors the catalog already holds for the chunks of documents with
    /// content `hash` or at canonical `path` (a renamed or copied file, or
    /// the earlier version of an edited one), keyed by each chunk's
    /// embedding text (heading path and text): an ingest reuses them
    /// instead of embedding the same text again. The catalog has one
    /// embedding model, so a vector found here is the one the model gives.
    pub fn reusable_vectors(&self, hash: &str, path: &str) -> Result<HashMap<String, Vec<f32>>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT c.heading, c.text, c.vector FROM chunks c JOIN documents d ON c.doc_id = d.id
                 WHERE d.hash = ?1 OR d.path = ?2",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![hash, path], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .map_err(self.err())?;
        let mut out = HashMap::new();
        for row in rows {
            let (heading, text, blob) = row.map_err(self.err())?;
            out.insert(
                cairn_core::embedding_text(&heading, &text),
                blob_to_vector(&blob),
            );
        }
        Ok(out)
    }

    /// A document's chunks in order (without their vectors): where its
    /// passages are, with their headings.
    pub fn document_chunks(&self, id: DocId) -> Result<Vec<StoredChunk>> {
        let sql = format!("{} WHERE c.doc_id = ?1 ORDER BY c.ord", Self::CHUNK_SQL);
        let mut stmt = self.conn.prepare_cached(&sql).map_err(self.err())?;
        let rows = stmt
            .query_map([id as i64], |r| Self::chunk_row(r).map(|(c, _)| c))
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.err())
    }

    /// The stored vector of one chunk.
    pub fn vector(&self, id: ChunkId) -> Result<Option<Vec<f32>>> {
        // Cached: a shard computes the cosines of a search's passages
        // through here, one chunk at a time.
        let blob: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT vector FROM chunks WHERE id=?1")
            .map_err(self.err())?
            .query_row([id as i64], |r| r.get(0))
            .optional()
            .map_err(self.err())?;
        Ok(blob.map(|b| blob_to_vector(&b)))
    }

    /// Run a closure inside one read transaction, so that everything it reads
    /// comes from the same snapshot (e.g. chunks and tombstones up to one seq).
    /// Not reentrant: calling `snapshot` again inside `f` is an error.
    pub fn snapshot<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Catalog) -> Result<T, E>,
    ) -> Result<T, E> {
        self.conn
            .execute_batch("BEGIN DEFERRED")
            .map_err(self.err())?;
        let out = f(self);
        let end = if out.is_ok() { "COMMIT" } else { "ROLLBACK" };
        self.conn.execute_batch(end).map_err(self.err())?;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(path: &str, hash: &str) -> DocumentRecord {
        DocumentRecord {
            path: format!("/root/{path}"),
            doc: path.into(),
            root: "/root".into(),
            hash: hash.into(),
            mtime_ns: 7,
            size: 10,
            format: "text".into(),
            text: format!("text of {path}"),
        }
    }

    fn chunk(ord: u32, v: f32) -> NewChunk {
        NewChunk {
            ord,
            text: format!("chunk {ord}"),
            start: 0,
            end: 5,
            heading: "H".into(),
            vector: vec![v, 1.0 - v],
        }
    }

    fn all_ids(cat: &Catalog, since: Seq) -> Vec<ChunkId> {
        let mut ids = vec![];
        cat.for_each_chunk_since::<StoreError>(since, |c, _| {
            ids.push(c.id);
            Ok(())
        })
        .unwrap();
        ids
    }

    #[test]
    fn line_counts_follow_upserts_replacements_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        let mut cat = Catalog::open(&path).unwrap();
        let with = |name: &str, text: &str| {
            let mut d = doc(name, name);
            d.text = text.into();
            Op::Upsert {
                doc: d,
                chunks: vec![chunk(0, 0.5)],
            }
        };
        let key = |l: &str| cairn_core::lines::line_key(l).unwrap();
        let (nav, a, b) = (key("Prev Up Home"), key("alpha"), key("beta"));
        let counts = |cat: &Catalog| {
            let c = cat.line_doc_counts(&[nav, a, b]).unwrap();
            [nav, a, b].map(|k| c.get(&k).copied().unwrap_or(0))
        };
        cat.apply(with("a", "Prev Up Home\nalpha\nalpha"), None)
            .unwrap();
        cat.apply(with("b", "prev  up home\nbeta"), None).unwrap();
        assert_eq!(counts(&cat), [2, 1, 1], "a line counts once per document");
        cat.apply(with("a", "Prev Up Home\nbeta"), None).unwrap();
        assert_eq!(
            counts(&cat),
            [2, 0, 2],
            "a replaced text's lines are uncounted"
        );
        cat.apply(
            Op::Delete {
                path: "/root/b".into(),
            },
            None,
        )
        .unwrap();
        assert_eq!(counts(&cat), [1, 0, 1]);
        // A catalog from before line counts gets them when opened.
        cat.conn
            .execute_batch("DELETE FROM line_df; DELETE FROM meta WHERE key='line_df';")
            .unwrap();
        drop(cat);
        let cat = Catalog::open(&path).unwrap();
        assert_eq!(counts(&cat), [1, 0, 1]);
    }

    #[test]
    fn upsert_replace_delete_with_sequences_and_tombstones() {
        let dir = tempfile::tempdir().unwrap();
        let mut cat = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        assert_eq!(
            cat.apply(
                Op::Upsert {
                    doc: doc("a", "1"),
                    chunks: vec![chunk(0, 0.1), chunk(1, 0.2)]
                },
                None
            )
            .unwrap(),
            Some(1)
        );
        assert_eq!(
            cat.apply(
                Op::Upsert {
                    doc: doc("b", "1"),
                    chunks: vec![chunk(0, 0.3)]
                },
                None
            )
            .unwrap(),
            Some(2)
        );
        assert_eq!(all_ids(&cat, 0), vec![1, 2, 3]);
        // Replace a's chunks: old ids are tombstoned at seq 3, new ids never reuse old ones.
        assert_eq!(
            cat.apply(
                Op::Upsert {
                    doc: doc("a", "2"),
                    chunks: vec![chunk(0, 0.9)]
                },
                None
            )
            .unwrap(),
            Some(3)
        );
        assert_eq!(all_ids(&cat, 0), vec![3, 4]);
        assert_eq!(all_ids(&cat, 2), vec![4]);
        assert_eq!(cat.tombstones_since(2).unwrap(), vec![1, 2]);
        // Pruned up to a sequence, the later ones stay.
        assert_eq!(cat.prune_tombstones(2).unwrap(), 0);
        assert_eq!(cat.tombstones_since(0).unwrap(), vec![1, 2]);
        assert_eq!(cat.tombstones_since(3).unwrap(), Vec::<u64>::new());
        assert_eq!(cat.document("/root/a").unwrap().unwrap().hash, "2");
        cat.apply(
            Op::Delete {
                path: "/root/b".into(),
            },
            None,
        )
        .unwrap();
        assert!(cat.document("/root/b").unwrap().is_none());
        assert_eq!(cat.tombstones_since(3).unwrap(), vec![3]);
        assert_eq!(cat.prune_tombstones(3).unwrap(), 2);
        assert_eq!(cat.tombstones_since(0).unwrap(), vec![3]);
        let s = cat.stats().unwrap();
        assert_eq!((s.documents, s.chunks, s.seq), (1, 1, 4));
        let v = cat.vector(4).unwrap().unwrap();
        assert!((v[0] - 0.9).abs() < 1e-6);
    }

    #[test]
    fn replicated_sequences_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let mut cat = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        let op = Op::Upsert {
            doc: doc("a", "1"),
            chunks: vec![chunk(0, 0.1)],
        };
        for s in 1..10 {
            cat.apply(Op::Noop, Some(s)).unwrap();
        }
        assert_eq!(cat.apply(op.clone(), Some(10)).unwrap(), Some(10));
        // The same log entry delivered again changes nothing.
        assert_eq!(cat.apply(op, Some(10)).unwrap(), None);
        assert_eq!(
            cat.apply(
                Op::Upsert {
                    doc: doc("b", "1"),
                    chunks: vec![]
                },
                Some(5)
            )
            .unwrap(),
            None
        );
        assert_eq!(cat.stats().unwrap().documents, 1);
        assert_eq!(cat.last_seq().unwrap(), 10);
    }

    #[test]
    fn failures_are_remembered_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        let mut cat = Catalog::open(&path).unwrap();
        assert_eq!(cat.failure("/d/bomb.pdf").unwrap(), None);
        let f = Failure {
            path: "/d/bomb.pdf".into(),
            size: 10,
            mtime_ns: 7,
            reason: "loading took longer than 1 s".into(),
        };
        cat.record_failure(&f).unwrap();
        drop(cat);
        let mut cat = Catalog::open(&path).unwrap();
        assert_eq!(cat.failure("/d/bomb.pdf").unwrap(), Some(f));
        assert_eq!(cat.last_seq().unwrap(), 0, "no sequence taken");
        cat.clear_failure("/d/bomb.pdf").unwrap();
        assert_eq!(cat.failure("/d/bomb.pdf").unwrap(), None);
    }

    #[test]
    fn a_gap_in_a_logs_sequence_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut cat = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        let up = |name: &str| Op::Upsert {
            doc: doc(name, "1"),
            chunks: vec![chunk(0, 0.1)],
        };
        // A log starts at 1.
        let err = cat.apply(up("a"), Some(2)).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::SeqGap {
                    last: 0,
                    got: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(cat.apply(up("a"), Some(1)).unwrap(), Some(1));
        assert_eq!(cat.apply(up("b"), Some(2)).unwrap(), Some(2));
        // Entry 3 never arrived: 4 is refused, nothing written.
        let err = cat.apply(up("d"), Some(4)).unwrap_err();
        assert!(
            err.to_string().contains("entries in between are missing"),
            "{err}"
        );
        assert_eq!(
            (cat.last_seq().unwrap(), cat.stats().unwrap().documents),
            (2, 2)
        );
        // Once 3 comes, 4 applies.
        assert_eq!(cat.apply(up("c"), Some(3)).unwrap(), Some(3));
        assert_eq!(cat.apply(up("d"), Some(4)).unwrap(), Some(4));
        assert_eq!(cat.stats().unwrap().documents, 4);
    }

    #[test]
    fn a_catalog_keeps_one_sequence_origin() {
        let dir = tempfile::tempdir().unwrap();
        let up = |name: &str| Op::Upsert {
            doc: doc(name, "1"),
            chunks: vec![chunk(0, 0.1)],
        };
        // A replica's catalog: log sequences only.
        let mut replica = Catalog::open(&dir.path().join("r.sqlite")).unwrap();
        assert_eq!(replica.seq_origin().unwrap(), None);
        replica.apply(Op::Noop, Some(1)).unwrap();
        replica.apply(Op::Noop, Some(2)).unwrap();
        replica.apply(up("a"), Some(3)).unwrap();
        assert_eq!(replica.seq_origin().unwrap(), Some(SeqOrigin::Log));
        let err = replica.apply(up("b"), None).unwrap_err();
        assert!(matches!(err, StoreError::Origin { .. }), "{err}");
        assert!(err.to_string().contains("--cluster"), "{err}");
        assert_eq!(replica.stats().unwrap().documents, 1, "nothing written");
        // A no-op takes its sequence and changes nothing else.
        assert_eq!(replica.apply(Op::Noop, Some(4)).unwrap(), Some(4));
        assert_eq!(replica.last_seq().unwrap(), 4);
        assert_eq!(replica.stats().unwrap().documents, 1);
        // A local catalog takes no log entries.
        let mut local = Catalog::open(&dir.path().join("l.sqlite")).unwrap();
        local.apply(up("a"), None).unwrap();
        let err = local.apply(up("b"), Some(9)).unwrap_err();
        assert!(matches!(err, StoreError::Origin { .. }), "{err}");
        // The origin survives a reopen.
        drop(replica);
        let mut replica = Catalog::open(&dir.path().join("r.sqlite")).unwrap();
        assert!(replica.apply(up("c"), None).is_err());
    }

    #[test]
    fn a_vector_of_another_dimension_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut cat = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        cat.ensure_embedding_model("c", "m", 2).unwrap();
        let mut bad = chunk(1, 0.5);
        bad.vector = vec![];
        let err = cat
            .apply(
                Op::Upsert {
                    doc: doc("a", "1"),
                    chunks: vec![chunk(0, 0.1), bad],
                },
                None,
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::BadOp { .. }), "{err}");
        assert!(err.to_string().contains("0 dimensions"), "{err}");
        assert_eq!(cat.last_seq().unwrap(), 0, "nothing applied");
        cat.apply(
            Op::Upsert {
                doc: doc("a", "1"),
                chunks: vec![chunk(0, 0.1)],
            },
            None,
        )
        .unwrap();
        assert_eq!(cat.stats().unwrap().chunks, 1);
    }

    #[test]
    fn an_export_is_a_consistent_copy_at_its_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let mut cat = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        for s in 1..10 {
            cat.apply(Op::Noop, Some(s)).unwrap();
        }
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            cat.apply(
                Op::Upsert {
                    doc: doc(name, "1"),
                    chunks: vec![chunk(0, 0.1)],
                },
                Some(10 + i as u64),
            )
            .unwrap();
        }
        let reader = Catalog::open_reader(&dir.path().join("c.sqlite")).unwrap();
        let dest = dir.path().join("snap.sqlite");
        assert_eq!(reader.export(&dest).unwrap(), 12);
        let mut copy = Catalog::open(&dest).unwrap();
        assert_eq!(copy.stats().unwrap().documents, 3);
        assert_eq!(copy.seq_origin().unwrap(), Some(SeqOrigin::Log));
        assert_eq!(all_ids(&copy, 0), all_ids(&cat, 0));
        // The copy goes on from its sequence as the original would.
        assert_eq!(copy.apply(Op::Noop, Some(13)).unwrap(), Some(13));
        // An existing destination is an error, not an overwrite.
        assert!(reader.export(&dest).is_err());
    }

    #[test]
    fn survives_reopen_and_checks_model() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/c.sqlite");
        {
            let mut cat = Catalog::open(&p).unwrap();
            cat.ensure_embedding_model("default", "m1", 2).unwrap();
            cat.apply(
                Op::Upsert {
                    doc: doc("a", "1"),
                    chunks: vec![chunk(0, 0.1)],
                },
                None,
            )
            .unwrap();
        }
        let mut cat = Catalog::open(&p).unwrap();
        assert_eq!(cat.stats().unwrap().chunks, 1);
        cat.ensure_embedding_model("default", "m1", 2).unwrap();
        let err = cat.ensure_embedding_model("default", "m2", 2).unwrap_err();
        assert!(
            err.to_string().contains("m1") && err.to_string().contains("m2"),
            "{err}"
        );
        let c = &cat.chunks(&[1, 99]).unwrap()[..];
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].doc.as_str(), c[0].heading.as_str()), ("a", "H"));
    }

    #[test]
    fn garbage_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.sqlite");
        std::fs::write(
            &p,
            b"this is not a database, just some bytes that are long enough to matter........",
        )
        .unwrap();
        let err = Catalog::open(&p).unwrap_err();
        assert!(err.to_string().contains("c.sqlite"), "{err}");
    }

    #[test]
    fn vector_blobs_round_trip() {
        let v = vec![0.5f32, -1.25, 3.0e-7];
        assert_eq!(blob_to_vector(&vector_to_blob(&v)), v);
    }
}
