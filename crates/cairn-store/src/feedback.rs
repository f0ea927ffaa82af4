//! The feedback log: every answer given (question, retrieved chunks, answer,
//! citations, model) and what users said about it. It lives in the catalog so
//! that it is as durable as the documents, and it is what later work on
//! improving retrieval and generation learns from.

use crate::{Catalog, Result, StoreError};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

pub(crate) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS answers(
        id TEXT PRIMARY KEY,
        question TEXT NOT NULL,
        answer TEXT NOT NULL,
        model TEXT NOT NULL,
        retrieved TEXT NOT NULL,
        citations TEXT NOT NULL,
        created_at TEXT NOT NULL);
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
    /// Citation numbers and the chunk each resolved to: `(n, chunk id)`.
    pub citations: Vec<(usize, u64)>,
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
    fn as_str(self) -> &'static str {
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

impl Catalog {
    /// Log an answer (so feedback can refer to it).
    pub fn record_answer(&mut self, a: &AnswerRecord) -> Result<()> {
        self.conn
            .execute(
                &format!(
                    "INSERT INTO answers(id, question, answer, model, retrieved, citations, created_at)
                     VALUES(?1, ?2, ?3, ?4, ?5, ?6, {NOW})"
                ),
                params![
                    a.id,
                    a.question,
                    a.answer,
                    a.model,
                    serde_json::to_string(&a.retrieved).expect("ids serialise"),
                    serde_json::to_string(&a.citations).expect("pairs serialise")
                ],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Whether an answer with this id was logged.
    pub fn has_answer(&self, id: &str) -> Result<bool> {
        Ok(self
            .conn
            .query_row("SELECT 1 FROM answers WHERE id=?1", [id], |_| Ok(()))
            .optional()
            .map_err(self.err())?
            .is_some())
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
            .query_map([limit as i64], |r| {
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
                    helpful_citations: serde_json::from_str(&helpful).unwrap_or_default(),
                    question: r.get(5)?,
                    answer: r.get(6)?,
                    model: r.get(7)?,
                    retrieved: serde_json::from_str(&retrieved).unwrap_or_default(),
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

    #[test]
    fn feedback_is_stored_with_its_answer_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        {
            let mut cat = Catalog::open(&path).unwrap();
            cat.record_answer(&AnswerRecord {
                id: "a-1".into(),
                question: "when is the lamp lit?".into(),
                answer: "At 17:40 [1].".into(),
                model: "SmolLM2".into(),
                retrieved: vec![4, 9],
                citations: vec![(1, 4)],
            })
            .unwrap();
            let id = cat
                .add_feedback("a-1", Rating::Up, Some("spot on"), &[1])
                .unwrap();
            assert_eq!(id, 1);
            let e = cat
                .add_feedback("a-404", Rating::Down, None, &[])
                .unwrap_err();
            assert!(e.to_string().contains("a-404"), "{e}");
        }
        let cat = Catalog::open(&path).unwrap();
        let f = cat.feedback(10).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rating, Rating::Up);
        assert_eq!(f[0].question, "when is the lamp lit?");
        assert_eq!(f[0].retrieved, vec![4, 9]);
        assert_eq!(f[0].helpful_citations, vec![1]);
        assert_eq!(f[0].comment.as_deref(), Some("spot on"));
        assert!(f[0].created_at.ends_with('Z'));
    }
}
