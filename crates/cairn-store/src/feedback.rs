//! The feedback log: every answer given (question, retrieved chunks with
//! their scores, answer, citations, model) and what users said about it.
//!
//! It is its own SQLite file beside the catalog ([`FEEDBACK_FILE`], WAL),
//! not part of the catalog: answers are logged by whichever process gave
//! them — `cairn ask` and `cairn chat`, which open the collection read-only
//! and hold no lock, as well as the server that holds it — and ratings by
//! `cairn feedback` as well as the API. Any process may write it (SQLite's
//! own locking, a busy timeout); the catalog keeps one writing process.
//! Catalogs from before this file kept the log in their own `answers` and
//! `feedback` tables: the first open of the log copies them in, once.

use crate::{Result, StoreError};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The log's file name in a collection's directory.
pub const FEEDBACK_FILE: &str = "feedback.sqlite";

const SCHEMA: &str = "
    PRAGMA journal_mode=WAL;
    PRAGMA synchronous=FULL;
    CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS answers(
        id TEXT PRIMARY KEY,
        question TEXT NOT NULL,
        answer TEXT NOT NULL,
        model TEXT NOT NULL,
        retrieved TEXT NOT NULL,
        citations TEXT NOT NULL,
        created_at TEXT NOT NULL,
        scores TEXT NOT NULL DEFAULT '[]');
    CREATE TABLE IF NOT EXISTS feedback(
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        answer_id TEXT NOT NULL REFERENCES answers(id),
        rating TEXT NOT NULL CHECK (rating IN ('up', 'down')),
        comment TEXT,
        helpful TEXT NOT NULL,
        created_at TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS feedback_answer ON feedback(answer_id);";

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

/// An answer as it was given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerRecord {
    pub id: String,
    pub question: String,
    pub answer: String,
    pub model: String,
    /// Chunk ids retrieved for the question, best first.
    pub retrieved: Vec<u64>,
    /// The retrieval score of each of `retrieved` (empty for answers logged
    /// before scores were kept).
    #[serde(default)]
    pub scores: Vec<f32>,
    /// Citation numbers and the chunk each resolved to: `(n, chunk id)`.
    pub citations: Vec<(usize, u64)>,
    /// When it was logged (RFC 3339, UTC); set by the log.
    #[serde(default)]
    pub created_at: String,
}

/// A rating of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Rating {
    Up,
    Down,
}

impl Rating {
    pub fn as_str(self) -> &'static str {
        match self {
            Rating::Up => "up",
            Rating::Down => "down",
        }
    }
}

/// Feedback joined with the answer it is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeedbackRecord {
    pub id: i64,
    pub answer_id: String,
    pub rating: Rating,
    pub comment: Option<String>,
    /// Citation numbers the user found helpful.
    pub helpful_citations: Vec<usize>,
    pub question: String,
    pub answer: String,
    pub model: String,
    pub retrieved: Vec<u64>,
    pub created_at: String,
}

/// A collection's feedback log (see the module's documentation).
pub struct FeedbackLog {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for FeedbackLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedbackLog")
            .field("path", &self.path)
            .finish()
    }
}

fn parse_json<T: for<'de> Deserialize<'de> + Default>(s: &str) -> T {
    serde_json::from_str(s).unwrap_or_default()
}

fn answer_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AnswerRecord> {
    let retrieved: String = r.get(4)?;
    let citations: String = r.get(5)?;
    let scores: String = r.get(7)?;
    Ok(AnswerRecord {
        id: r.get(0)?,
        question: r.get(1)?,
        answer: r.get(2)?,
        model: r.get(3)?,
        retrieved: parse_json(&retrieved),
        citations: parse_json(&citations),
        created_at: r.get(6)?,
        scores: parse_json(&scores),
    })
}

const ANSWER_COLUMNS: &str =
    "id, question, answer, model, retrieved, citations, created_at, scores";

impl FeedbackLog {
    /// Open (creating if needed) the log of the collection in `dir`. The
    /// first open copies in the log a catalog from before kept in its own
    /// tables (`catalog.sqlite`'s `answers` and `feedback`), read-only.
    pub fn open(dir: &Path) -> Result<FeedbackLog> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(FEEDBACK_FILE);
        let conn = Connection::open(&path).map_err(|source| StoreError::Sqlite {
            path: path.clone(),
            source,
        })?;
        let mut log = FeedbackLog { conn, path };
        let e = log.err();
        log.conn
            .busy_timeout(std::time::Duration::from_secs(30))
            .map_err(&e)?;
        log.conn.execute_batch(SCHEMA).map_err(&e)?;
        log.import_catalog(&dir.join("catalog.sqlite"))?;
        Ok(log)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError {
        let path = self.path.clone();
        move |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        }
    }

    /// Copy an older catalog's `answers` and `feedback` tables in, once
    /// (`meta.catalog_imported`), in one transaction.
    fn import_catalog(&mut self, catalog: &Path) -> Result<()> {
        let e = self.err();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&e)?;
        let done: Option<String> = tx
            .query_row(
                "SELECT value FROM meta WHERE key='catalog_imported'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(&e)?;
        if done.is_some() {
            return Ok(());
        }
        if catalog.is_file() {
            // A URI (read-only); the characters a URI gives meaning to are
            // escaped in the path.
            let path = catalog
                .to_string_lossy()
                .replace('%', "%25")
                .replace('?', "%3f")
                .replace('#', "%23");
            let uri = format!("file:{path}?mode=ro");
            tx.execute("ATTACH DATABASE ?1 AS old", [uri]).map_err(&e)?;
            let has = |t: &str| -> Result<bool> {
                Ok(tx
                    .query_row(
                        "SELECT 1 FROM old.sqlite_master WHERE type='table' AND name=?1",
                        [t],
                        |_| Ok(()),
                    )
                    .optional()
                    .map_err(&e)?
                    .is_some())
            };
            if has("answers")? {
                tx.execute_batch(
                    "INSERT OR IGNORE INTO answers(id, question, answer, model, retrieved, citations, created_at)
                     SELECT id, question, answer, model, retrieved, citations, created_at FROM old.answers;",
                )
                .map_err(&e)?;
                if has("feedback")? {
                    tx.execute_batch(
                        "INSERT INTO feedback(answer_id, rating, comment, helpful, created_at)
                         SELECT answer_id, rating, comment, helpful, created_at FROM old.feedback ORDER BY id;",
                    )
                    .map_err(&e)?;
                }
            }
        }
        tx.execute(
            &format!("INSERT INTO meta(key, value) VALUES('catalog_imported', {NOW})"),
            [],
        )
        .map_err(&e)?;
        tx.commit().map_err(&e)?;
        if catalog.is_file() {
            self.conn
                .execute("DETACH DATABASE old", [])
                .map_err(self.err())?;
        }
        Ok(())
    }

    /// Log an answer (so feedback can refer to it).
    pub fn record_answer(&mut self, a: &AnswerRecord) -> Result<()> {
        self.conn
            .execute(
                &format!(
                    "INSERT INTO answers(id, question, answer, model, retrieved, citations, scores, created_at)
                     VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, {NOW})"
                ),
                params![
                    a.id,
                    a.question,
                    a.answer,
                    a.model,
                    serde_json::to_string(&a.retrieved).expect("ids serialise"),
                    serde_json::to_string(&a.citations).expect("pairs serialise"),
                    serde_json::to_string(&a.scores).expect("scores serialise"),
                ],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Whether an answer with this id was logged.
    pub fn has_answer(&self, id: &str) -> Result<bool> {
        Ok(self.answer(id)?.is_some())
    }

    /// A logged answer by its id.
    pub fn answer(&self, id: &str) -> Result<Option<AnswerRecord>> {
        self.conn
            .query_row(
                &format!("SELECT {ANSWER_COLUMNS} FROM answers WHERE id=?1"),
                [id],
                answer_row,
            )
            .optional()
            .map_err(self.err())
    }

    /// The newest logged answer.
    pub fn last_answer(&self) -> Result<Option<AnswerRecord>> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {ANSWER_COLUMNS} FROM answers ORDER BY created_at DESC, rowid DESC LIMIT 1"
                ),
                [],
                answer_row,
            )
            .optional()
            .map_err(self.err())
    }

    /// Store a rating of a logged answer; returns the feedback id. An unknown
    /// answer id is [`StoreError::Invalid`] naming `answer_id`.
    pub fn add_feedback(
        &mut self,
        answer_id: &str,
        rating: Rating,
        comment: Option<&str>,
        helpful_citations: &[usize],
    ) -> Result<i64> {
        if !self.has_answer(answer_id)? {
            return Err(StoreError::Invalid {
                path: self.path.clone(),
                message: format!("answer_id `{answer_id}` names no answer in this collection"),
            });
        }
        self.conn
            .execute(
                &format!(
                    "INSERT INTO feedback(answer_id, rating, comment, helpful, created_at)
                     VALUES(?1, ?2, ?3, ?4, {NOW})"
                ),
                params![
                    answer_id,
                    rating.as_str(),
                    comment,
                    serde_json::to_string(helpful_citations).expect("numbers serialise")
                ],
            )
            .map_err(self.err())?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Feedback, newest first, at most `limit` records.
    pub fn feedback(&self, limit: usize) -> Result<Vec<FeedbackRecord>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT f.id, f.answer_id, f.rating, f.comment, f.helpful, a.question, a.answer,
                        a.model, a.retrieved, f.created_at
                 FROM feedback f JOIN answers a ON a.id = f.answer_id
                 ORDER BY f.id DESC LIMIT ?1",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([limit.min(i64::MAX as usize) as i64], |r| {
                let rating: String = r.get(2)?;
                let helpful: String = r.get(4)?;
                let retrieved: String = r.get(8)?;
                Ok(FeedbackRecord {
                    id: r.get(0)?,
                    answer_id: r.get(1)?,
                    rating: if rating == "up" {
                        Rating::Up
                    } else {
                        Rating::Down
                    },
                    comment: r.get(3)?,
                    helpful_citations: parse_json(&helpful),
                    question: r.get(5)?,
                    answer: r.get(6)?,
                    model: r.get(7)?,
                    retrieved: parse_json(&retrieved),
                    created_at: r.get(9)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(self.err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lamp(id: &str) -> AnswerRecord {
        AnswerRecord {
            id: id.into(),
            question: "when is the lamp lit?".into(),
            answer: "At 17:40 [1].".into(),
            model: "SmolLM2".into(),
            retrieved: vec![4, 9],
            scores: vec![0.8, 0.5],
            citations: vec![(1, 4)],
            created_at: String::new(),
        }
    }

    #[test]
    fn feedback_is_stored_with_its_answer_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut log = FeedbackLog::open(dir.path()).unwrap();
            log.record_answer(&lamp("a-1")).unwrap();
            let id = log
                .add_feedback("a-1", Rating::Up, Some("spot on"), &[1])
                .unwrap();
            assert_eq!(id, 1);
            let e = log
                .add_feedback("a-404", Rating::Down, None, &[])
                .unwrap_err();
            assert!(e.to_string().contains("a-404"), "{e}");
        }
        assert!(dir.path().join(FEEDBACK_FILE).is_file());
        let log = FeedbackLog::open(dir.path()).unwrap();
        let f = log.feedback(10).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rating, Rating::Up);
        assert_eq!(f[0].question, "when is the lamp lit?");
        assert_eq!(f[0].retrieved, vec![4, 9]);
        assert_eq!(f[0].helpful_citations, vec![1]);
        assert_eq!(f[0].comment.as_deref(), Some("spot on"));
        assert!(f[0].created_at.ends_with('Z'));
        let a = log.answer("a-1").unwrap().unwrap();
        assert_eq!(a.scores, vec![0.8, 0.5]);
        assert_eq!(a.citations, vec![(1, 4)]);
        assert!(log.answer("a-2").unwrap().is_none());
    }

    #[test]
    fn the_last_answer_is_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = FeedbackLog::open(dir.path()).unwrap();
        assert!(log.last_answer().unwrap().is_none());
        log.record_answer(&lamp("first")).unwrap();
        log.record_answer(&lamp("second")).unwrap();
        assert_eq!(log.last_answer().unwrap().unwrap().id, "second");
    }

    /// A catalog from before the log had its own file kept `answers` (no
    /// scores) and `feedback` tables: the first open copies them, once.
    #[test]
    fn an_old_catalogs_log_is_imported_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("notes #1? 100%");
        {
            std::fs::create_dir_all(&dir).unwrap();
            let old = Connection::open(dir.join("catalog.sqlite")).unwrap();
            old.execute_batch(
                "PRAGMA journal_mode=WAL;
                 CREATE TABLE answers(id TEXT PRIMARY KEY, question TEXT NOT NULL,
                    answer TEXT NOT NULL, model TEXT NOT NULL, retrieved TEXT NOT NULL,
                    citations TEXT NOT NULL, created_at TEXT NOT NULL);
                 CREATE TABLE feedback(id INTEGER PRIMARY KEY AUTOINCREMENT,
                    answer_id TEXT NOT NULL REFERENCES answers(id), rating TEXT NOT NULL,
                    comment TEXT, helpful TEXT NOT NULL, created_at TEXT NOT NULL);
                 INSERT INTO answers VALUES('old-1', 'q?', 'a [1].', 'm', '[3,5]', '[[1,3]]',
                    '2026-01-01T00:00:00.000Z');
                 INSERT INTO feedback(answer_id, rating, comment, helpful, created_at)
                    VALUES('old-1', 'down', 'wrong', '[1]', '2026-01-01T00:00:01.000Z');",
            )
            .unwrap();
        }
        for _ in 0..2 {
            let log = FeedbackLog::open(&dir).unwrap();
            let f = log.feedback(10).unwrap();
            assert_eq!(f.len(), 1, "imported exactly once");
            assert_eq!(f[0].rating, Rating::Down);
            assert_eq!(f[0].comment.as_deref(), Some("wrong"));
            let a = log.answer("old-1").unwrap().unwrap();
            assert_eq!(a.retrieved, vec![3, 5]);
            assert_eq!(a.citations, vec![(1, 3)]);
            assert!(a.scores.is_empty());
        }
    }
}
