//! The feedback log of a collection: answers given and ratings of them.

use crate::{Answer, Engine, Result};
use cairn_store::{AnswerRecord, FeedbackRecord, Rating};

impl Engine {
    /// Log an answer under `id` so that feedback can refer to it: the
    /// question, the chunks retrieved, the answer, its citations and model.
    pub fn record_answer(&self, id: &str, question: &str, answer: &Answer) -> Result<()> {
        let chunk_of = |c: &cairn_generate::citations::Citation| {
            answer
                .retrieved
                .iter()
                .find(|h| h.doc == c.doc && h.start == c.start && h.end == c.end)
                .map(|h| h.chunk)
                .unwrap_or(0)
        };
        self.catalog()?.record_answer(&AnswerRecord {
            id: id.to_string(),
            question: question.to_string(),
            answer: answer.answer.clone(),
            model: answer.model.clone(),
            retrieved: answer.retrieved.iter().map(|h| h.chunk).collect(),
            citations: answer
                .citations
                .iter()
                .map(|c| (c.n, chunk_of(c)))
                .collect(),
        })?;
        Ok(())
    }

    /// Whether `id` names an answer logged in this collection.
    pub fn has_answer(&self, id: &str) -> Result<bool> {
        Ok(self.reader().has_answer(id)?)
    }

    /// Store a rating of a logged answer; returns the feedback id.
    pub fn add_feedback(
        &self,
        answer_id: &str,
        rating: Rating,
        comment: Option<&str>,
        helpful_citations: &[usize],
    ) -> Result<i64> {
        Ok(self
            .catalog()?
            .add_feedback(answer_id, rating, comment, helpful_citations)?)
    }

    /// Feedback, newest first.
    pub fn feedback(&self, limit: usize) -> Result<Vec<FeedbackRecord>> {
        Ok(self.reader().feedback(limit)?)
    }
}
