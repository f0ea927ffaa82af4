//! The feedback log of a collection: answers given and ratings of them
//! (`cairn_store::FeedbackLog`, its own file beside the catalog, so that a
//! read-only `cairn ask` logs its answers too), the statistics of the
//! ratings and their export as training data in the shapes TRL and
//! sentence-transformers read.

use crate::{Answer, Collection, Engine, EngineError, Result};
use cairn_store::{AnswerRecord, FeedbackLog, FeedbackRecord, Rating};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::MutexGuard;

impl Engine {
    /// The feedback log, opened on first use (by a reader as well: it is
    /// not the catalog).
    fn feedback_log(&self) -> Result<MutexGuard<'_, Option<FeedbackLog>>> {
        let mut g = self.feedback_log.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            *g = Some(FeedbackLog::open(&self.dir)?);
        }
        Ok(g)
    }

    fn with_log<T>(&self, f: impl FnOnce(&mut FeedbackLog) -> cairn_store::Result<T>) -> Result<T> {
        let mut g = self.feedback_log()?;
        Ok(f(g.as_mut().expect("opened above"))?)
    }

    /// Log an answer under `id` so that feedback can refer to it: the
    /// question, the chunks retrieved with their scores, the answer, its
    /// citations and model.
    pub fn record_answer(&self, id: &str, question: &str, answer: &Answer) -> Result<()> {
        let record = answer_record(id, question, answer);
        self.with_log(|log| log.record_answer(&record))
    }

    /// Whether `id` names an answer logged in this collection.
    pub fn has_answer(&self, id: &str) -> Result<bool> {
        self.with_log(|log| log.has_answer(id))
    }

    /// A logged answer by its id.
    pub fn logged_answer(&self, id: &str) -> Result<Option<AnswerRecord>> {
        self.with_log(|log| log.answer(id))
    }

    /// The newest logged answer.
    pub fn last_answer(&self) -> Result<Option<AnswerRecord>> {
        self.with_log(|log| log.last_answer())
    }

    /// Store a rating of a logged answer; returns the feedback id.
    pub fn add_feedback(
        &self,
        answer_id: &str,
        rating: Rating,
        comment: Option<&str>,
        helpful_citations: &[usize],
    ) -> Result<i64> {
        self.with_log(|log| log.add_feedback(answer_id, rating, comment, helpful_citations))
    }

    /// Feedback, newest first.
    pub fn feedback(&self, limit: usize) -> Result<Vec<FeedbackRecord>> {
        self.with_log(|log| log.feedback(limit))
    }

    /// The texts of the chunks among `ids` that the catalog still holds.
    pub fn passages(&self, ids: &[u64]) -> Result<HashMap<u64, String>> {
        Ok(self
            .reader()
            .chunks(ids)?
            .into_iter()
            .map(|c| (c.id, c.text))
            .collect())
    }
}

/// A fresh answer id for the log (`a-` and hex digits: time, process,
/// a counter), unique across processes that log into one collection.
pub fn new_answer_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!(
        "a-{nanos:016x}{:06x}{:04x}",
        std::process::id() & 0xff_ffff,
        N.fetch_add(1, Ordering::SeqCst) & 0xffff
    )
}

/// What the log keeps of an answer.
pub(crate) fn answer_record(id: &str, question: &str, answer: &Answer) -> AnswerRecord {
    // A citation names its passage by document and span: the retrieved
    // chunk with that span, else (sources merged from overlapping chunks)
    // the first retrieved chunk of that document inside the span.
    let chunk_of = |c: &cairn_generate::citations::Citation| {
        let hits = &answer.retrieved;
        hits.iter()
            .find(|h| h.doc == c.doc && h.start == c.start && h.end == c.end)
            .or_else(|| {
                hits.iter()
                    .find(|h| h.doc == c.doc && h.start >= c.start && h.end <= c.end)
            })
            .map(|h| h.chunk)
            .unwrap_or(0)
    };
    AnswerRecord {
        id: id.to_string(),
        question: question.to_string(),
        answer: answer.answer.clone(),
        model: answer.model.clone(),
        retrieved: answer.retrieved.iter().map(|h| h.chunk).collect(),
        scores: answer.retrieved.iter().map(|h| h.score).collect(),
        citations: answer
            .citations
            .iter()
            .map(|c| (c.n, chunk_of(c)))
            .collect(),
        created_at: String::new(),
    }
}

/// Ratings of one model.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ModelStats {
    pub up: usize,
    pub down: usize,
}

/// `cairn feedback stats`: counts over every rating in the log.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FeedbackStats {
    /// Ratings in the log.
    pub ratings: usize,
    /// Distinct answers rated.
    pub answers_rated: usize,
    pub up: usize,
    pub down: usize,
    /// Ratings with a comment, and their share of all ratings.
    pub with_comment: usize,
    pub comment_share: f64,
    /// Ratings naming helpful citations, and how many citations they named.
    pub with_helpful: usize,
    pub helpful_citations: usize,
    /// Ratings per model that wrote the answer.
    pub per_model: BTreeMap<String, ModelStats>,
}

/// The statistics of `records` (all of a log's ratings).
pub fn feedback_stats(records: &[FeedbackRecord]) -> FeedbackStats {
    let mut s = FeedbackStats {
        ratings: records.len(),
        answers_rated: records
            .iter()
            .map(|r| r.answer_id.as_str())
            .collect::<HashSet<_>>()
            .len(),
        ..FeedbackStats::default()
    };
    for r in records {
        let m = s.per_model.entry(r.model.clone()).or_default();
        match r.rating {
            Rating::Up => {
                s.up += 1;
                m.up += 1;
            }
            Rating::Down => {
                s.down += 1;
                m.down += 1;
            }
        }
        if r.comment.as_deref().is_some_and(|c| !c.trim().is_empty()) {
            s.with_comment += 1;
        }
        if !r.helpful_citations.is_empty() {
            s.with_helpful += 1;
            s.helpful_citations += r.helpful_citations.len();
        }
    }
    if s.ratings > 0 {
        s.comment_share = s.with_comment as f64 / s.ratings as f64;
    }
    s
}

/// The training-data shapes `cairn feedback export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// `{"prompt","completion"}` from thumbs-up answers (TRL `SFTTrainer`).
    Sft,
    /// `{"prompt","chosen","rejected"}`: an up- and a down-rated answer to
    /// the same question (TRL `DPOTrainer`).
    Dpo,
    /// `{"prompt","completion","label"}`, label true for up (TRL
    /// `KTOTrainer`).
    Kto,
    /// `{"query","positive":[..],"negatives":[..]}`: passages of up-rated
    /// answers (sentence-transformers).
    Retrieval,
}

impl ExportFormat {
    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::Sft => "sft",
            ExportFormat::Dpo => "dpo",
            ExportFormat::Kto => "kto",
            ExportFormat::Retrieval => "retrieval",
        }
    }
}

impl std::str::FromStr for ExportFormat {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "sft" => ExportFormat::Sft,
            "dpo" => ExportFormat::Dpo,
            "kto" => ExportFormat::Kto,
            "retrieval" => ExportFormat::Retrieval,
            other => {
                return Err(EngineError::Invalid(format!(
                    "unknown export format `{other}`: use sft, dpo, kto or retrieval"
                )))
            }
        })
    }
}

/// An answer with its latest rating, as export reads it.
#[derive(Debug, Clone)]
pub struct RatedAnswer {
    pub answer: AnswerRecord,
    pub rating: Rating,
    pub helpful_citations: Vec<usize>,
}

/// The prompt of an answer: the question and the passages it cited, under
/// the numbers its `[n]` markers use, so the completion's citations point
/// into the prompt. Passages no longer in the collection are left out.
fn prompt(a: &AnswerRecord, passages: &HashMap<u64, String>) -> String {
    let mut cited: Vec<(usize, u64)> = a.citations.clone();
    cited.sort();
    cited.dedup();
    let sources: Vec<String> = cited
        .iter()
        .filter_map(|(n, id)| passages.get(id).map(|t| format!("[{n}] {t}")))
        .collect();
    if sources.is_empty() {
        format!("Question: {}", a.question)
    } else {
        format!(
            "Answer the question from the sources below, citing them as [n].\n\nSources:\n{}\n\nQuestion: {}",
            sources.join("\n\n"),
            a.question
        )
    }
}

/// The examples of `format` from `rated` (each answer once, with its
/// latest rating), one JSON object per line. None of the asked kind is an
/// [`EngineError::Invalid`] naming what is missing and what is needed.
pub fn export_examples(
    format: ExportFormat,
    rated: &[RatedAnswer],
    passages: &HashMap<u64, String>,
) -> Result<Vec<Value>> {
    let n = rated.len();
    if n == 0 {
        return Err(EngineError::Invalid(format!(
            "the feedback log has no rated answers to export as {}; rate answers first with `cairn feedback --last --up|--down`, the web UI or POST /api/feedback",
            format.name()
        )));
    }
    let ups: Vec<&RatedAnswer> = rated.iter().filter(|r| r.rating == Rating::Up).collect();
    let out: Vec<Value> = match format {
        ExportFormat::Sft => {
            if ups.is_empty() {
                return Err(EngineError::Invalid(format!(
                    "no thumbs-up answers to export as sft; 0 of {n} rated answers are up (sft needs at least 1)"
                )));
            }
            ups.iter()
                .map(|r| json!({"prompt": prompt(&r.answer, passages), "completion": r.answer.answer}))
                .collect()
        }
        ExportFormat::Kto => rated
            .iter()
            .map(|r| {
                json!({
                    "prompt": prompt(&r.answer, passages),
                    "completion": r.answer.answer,
                    "label": r.rating == Rating::Up,
                })
            })
            .collect(),
        ExportFormat::Dpo => {
            let mut by_question: BTreeMap<String, (Vec<&RatedAnswer>, Vec<&RatedAnswer>)> =
                BTreeMap::new();
            for r in rated {
                let e = by_question
                    .entry(r.answer.question.trim().to_string())
                    .or_default();
                match r.rating {
                    Rating::Up => e.0.push(r),
                    Rating::Down => e.1.push(r),
                }
            }
            let out: Vec<Value> = by_question
                .values()
                .flat_map(|(up, down)| {
                    up.iter().zip(down).map(|(c, r)| {
                        json!({
                            "prompt": prompt(&c.answer, passages),
                            "chosen": c.answer.answer,
                            "rejected": r.answer.answer,
                        })
                    })
                })
                .collect();
            if out.is_empty() {
                let both_up = by_question.values().filter(|(u, _)| !u.is_empty()).count();
                let both_down = by_question.values().filter(|(_, d)| !d.is_empty()).count();
                return Err(EngineError::Invalid(format!(
                    "no pairs to export as dpo: 0 of {} rated questions have both an up- and a down-rated answer ({both_up} have an up, {both_down} a down; dpo needs at least 1 question with one of each)",
                    by_question.len()
                )));
            }
            out
        }
        ExportFormat::Retrieval => {
            let out: Vec<Value> = ups
                .iter()
                .filter_map(|r| {
                    let a = &r.answer;
                    let cited: HashSet<u64> = a.citations.iter().map(|(_, id)| *id).collect();
                    let positive_ids = vouched(r);
                    let mut seen: HashSet<u64> = positive_ids.iter().copied().collect();
                    let positive: Vec<&String> = positive_ids
                        .iter()
                        .filter_map(|id| passages.get(id))
                        .collect();
                    if positive.is_empty() {
                        return None;
                    }
                    let negatives: Vec<&String> = a
                        .retrieved
                        .iter()
                        .filter(|id| !cited.contains(id) && seen.insert(**id))
                        .filter_map(|id| passages.get(id))
                        .collect();
                    Some(json!({"query": a.question, "positive": positive, "negatives": negatives}))
                })
                .collect();
            if out.is_empty() {
                return Err(EngineError::Invalid(format!(
                    "no up-rated answer with a cited passage still in the collection to export as retrieval; {} of {n} rated answers are up (retrieval needs at least 1 that cites a passage)",
                    ups.len()
                )));
            }
            out
        }
    };
    Ok(out)
}

/// Every rated answer of the collection's feedback log once, with its
/// latest rating, oldest first.
pub(crate) fn rated_answers(engine: &Engine) -> Result<Vec<RatedAnswer>> {
    latest_ratings(engine.feedback(usize::MAX)?, |id| engine.logged_answer(id))
}

/// Each rated answer once, with its latest rating, oldest first, from the
/// log's ratings (newest first, as the log lists them); answers no longer
/// in the log are left out.
fn latest_ratings(
    records: Vec<FeedbackRecord>,
    answer: impl Fn(&str) -> Result<Option<AnswerRecord>>,
) -> Result<Vec<RatedAnswer>> {
    let mut seen = HashSet::new();
    let mut rated = Vec::new();
    // Newest first: the first rating met is an answer's latest.
    for f in records {
        if !seen.insert(f.answer_id.clone()) {
            continue;
        }
        let Some(answer) = answer(&f.answer_id)? else {
            continue;
        };
        rated.push(RatedAnswer {
            answer,
            rating: f.rating,
            helpful_citations: f.helpful_citations,
        });
    }
    rated.reverse();
    Ok(rated)
}

/// The passages an up-rated answer vouches for: its helpful citations, or
/// every citation when none was marked; each once.
fn vouched(r: &RatedAnswer) -> Vec<u64> {
    let mut seen = HashSet::new();
    r.answer
        .citations
        .iter()
        .filter(|(n, _)| r.helpful_citations.is_empty() || r.helpful_citations.contains(n))
        .map(|(_, id)| *id)
        .filter(|id| seen.insert(*id))
        .collect()
}

/// Training examples from the log's up-rated answers, shaped as
/// [`crate::synthesize`] writes them (kind `feedback`): the question, its
/// first vouched-for passage as the positive (the others too, as extra
/// positives), and the passages it retrieved but did not cite as hard
/// negatives. An example is in the held-out part when its positive's
/// document is among the documents [`crate::held_out_documents`] holds out
/// with `held_out` and `seed` (the same split as `synthesize`'s with the
/// same options), so that the split stays by document.
/// Answers whose cited passages left the collection, or with nothing
/// retrieved besides them, are skipped.
pub fn feedback_examples(
    engine: &Engine,
    held_out: f64,
    seed: u64,
) -> Result<Vec<crate::SynthExample>> {
    let rated = rated_answers(engine)?;
    let ups: Vec<&RatedAnswer> = rated.iter().filter(|r| r.rating == Rating::Up).collect();
    if ups.is_empty() {
        return Ok(vec![]);
    }
    let chunks: HashMap<u64, cairn_core::StoredChunk> = engine
        .all_chunks()?
        .into_iter()
        .map(|c| (c.id, c))
        .collect();
    let docs: Vec<String> = {
        let set: std::collections::BTreeSet<&String> = chunks.values().map(|c| &c.doc).collect();
        set.into_iter().cloned().collect()
    };
    let held_out_docs = crate::held_out_documents(&docs, held_out, seed);
    let mut out = Vec::new();
    for r in ups {
        let positives: Vec<&cairn_core::StoredChunk> =
            vouched(r).iter().filter_map(|id| chunks.get(id)).collect();
        let Some(first) = positives.first() else {
            continue;
        };
        let cited: HashSet<u64> = r.answer.citations.iter().map(|(_, id)| *id).collect();
        let negatives: Vec<&cairn_core::StoredChunk> = r
            .answer
            .retrieved
            .iter()
            .filter(|id| !cited.contains(id))
            .filter_map(|id| chunks.get(id))
            .collect();
        if negatives.is_empty() {
            continue;
        }
        out.push(crate::SynthExample {
            query: r.answer.question.trim().to_string(),
            positive: positives.iter().map(|c| c.text.clone()).collect(),
            negatives: negatives.iter().map(|c| c.text.clone()).collect(),
            kind: crate::QuestionKind::Feedback,
            split: if held_out_docs.contains(&first.doc) {
                crate::Split::HeldOut
            } else {
                crate::Split::Train
            },
            doc: first.doc.clone(),
            chunk: first.id,
            heading: first.heading.clone(),
            rank: r
                .answer
                .retrieved
                .iter()
                .position(|id| *id == first.id)
                .map_or(0, |i| i + 1),
            negative_chunks: negatives.iter().map(|c| c.id).collect(),
            negative_docs: negatives.iter().map(|c| c.doc.clone()).collect(),
        });
    }
    Ok(out)
}

/// Everything `cairn feedback export` writes for `collection`: each rated
/// answer once, with its latest rating.
pub fn export_feedback(collection: &dyn Collection, format: ExportFormat) -> Result<Vec<Value>> {
    let rated = latest_ratings(collection.feedback(usize::MAX)?, |id| collection.answer(id))?;
    let mut ids: Vec<u64> = rated
        .iter()
        .flat_map(|r| {
            r.answer
                .retrieved
                .iter()
                .copied()
                .chain(r.answer.citations.iter().map(|(_, id)| *id))
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let passages = if ids.is_empty() {
        HashMap::new()
    } else {
        collection.passages(&ids)?
    };
    export_examples(format, &rated, &passages)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rated(id: &str, q: &str, rating: Rating, helpful: &[usize]) -> RatedAnswer {
        RatedAnswer {
            answer: AnswerRecord {
                id: id.into(),
                question: q.into(),
                answer: format!("answer {id} [1]."),
                model: "m".into(),
                retrieved: vec![1, 2, 3],
                scores: vec![0.9, 0.8, 0.7],
                citations: vec![(1, 1), (2, 2)],
                created_at: String::new(),
            },
            rating,
            helpful_citations: helpful.to_vec(),
        }
    }

    fn texts() -> HashMap<u64, String> {
        [(1, "one"), (2, "two"), (3, "three")]
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect()
    }

    #[test]
    fn retrieval_takes_helpful_citations_as_positives_and_uncited_hits_as_negatives() {
        let out = export_examples(
            ExportFormat::Retrieval,
            &[rated("a", "q", Rating::Up, &[2])],
            &texts(),
        )
        .unwrap();
        assert_eq!(
            out,
            vec![json!({"query": "q", "positive": ["two"], "negatives": ["three"]})]
        );
        let out = export_examples(
            ExportFormat::Retrieval,
            &[rated("a", "q", Rating::Up, &[])],
            &texts(),
        )
        .unwrap();
        assert_eq!(out[0]["positive"], json!(["one", "two"]));
    }

    #[test]
    fn dpo_pairs_answers_to_one_question_and_says_why_there_are_none() {
        let r = [
            rated("a", "q1", Rating::Up, &[]),
            rated("b", "q1", Rating::Down, &[]),
            rated("c", "q2", Rating::Up, &[]),
        ];
        let out = export_examples(ExportFormat::Dpo, &r, &texts()).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["chosen"], "answer a [1].");
        assert_eq!(out[0]["rejected"], "answer b [1].");
        assert!(out[0]["prompt"].as_str().unwrap().contains("[1] one"));
        let e = export_examples(ExportFormat::Dpo, &r[2..], &texts()).unwrap_err();
        assert!(e.to_string().contains("0 of 1 rated questions"), "{e}");
    }

    #[test]
    fn sft_without_ups_and_an_empty_log_name_what_is_missing() {
        let e = export_examples(
            ExportFormat::Sft,
            &[rated("a", "q", Rating::Down, &[])],
            &texts(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "no thumbs-up answers to export as sft; 0 of 1 rated answers are up (sft needs at least 1)"
        );
        let e = export_examples(ExportFormat::Kto, &[], &texts()).unwrap_err();
        assert!(e.to_string().contains("no rated answers"), "{e}");
    }

    #[test]
    fn stats_count_ratings_comments_helpful_citations_and_models() {
        let rec = |id: i64,
                   answer: &str,
                   rating,
                   comment: Option<&str>,
                   helpful: Vec<usize>,
                   model: &str| FeedbackRecord {
            id,
            answer_id: answer.into(),
            rating,
            comment: comment.map(str::to_string),
            helpful_citations: helpful,
            question: "q".into(),
            answer: "a".into(),
            model: model.into(),
            retrieved: vec![],
            created_at: String::new(),
        };
        let s = feedback_stats(&[
            rec(3, "x", Rating::Up, Some("good"), vec![1, 2], "m1"),
            rec(2, "x", Rating::Down, None, vec![], "m1"),
            rec(1, "y", Rating::Down, Some(" "), vec![], "m2"),
        ]);
        assert_eq!((s.ratings, s.answers_rated, s.up, s.down), (3, 2, 1, 2));
        assert_eq!(
            (s.with_comment, s.with_helpful, s.helpful_citations),
            (1, 1, 2)
        );
        assert!((s.comment_share - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(s.per_model["m1"], ModelStats { up: 1, down: 1 });
        assert_eq!(s.per_model["m2"], ModelStats { up: 0, down: 1 });
    }
}
