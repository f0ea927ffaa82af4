//! Running a question set against an engine, one question at a time, with
//! every finished question appended to a run log so that an interrupted run
//! resumes where it stopped.

use crate::metrics::{answer_matches, dedup_docs, ends_with_path, RankScores};
use crate::sets::QaItem;
use crate::{EvalError, Result};
use cairn_core::{Progress, SearchMode};
use cairn_engine::{AskOptions, Engine};
use cairn_generate::Flow;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What a run measures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    pub mode: SearchMode,
    /// Documents considered for recall (hit@1/5/10, MRR@10 and nDCG@10 are fixed).
    pub k: usize,
    pub answers: bool,
    /// The generator, when answers are generated.
    pub model: Option<String>,
    /// The search settings (fusion weights, candidates, BM25 field weights)
    /// and the collection's catalog sequence: a log written against other
    /// weights or another ingest of the collection is not resumed.
    #[serde(default)]
    pub search: Option<cairn_core::config::SearchConfig>,
    #[serde(default)]
    pub catalog_seq: Option<u64>,
    /// How answers were made and checked (`check`, `crag`, `extractive`,
    /// `fallback`), when answers are made.
    #[serde(default)]
    pub policy: Option<String>,
    /// What the collection has learned (its query adapter and reranker, by
    /// content: `cairn train`, `cairn improve`): a log written with other
    /// ones is not resumed.
    #[serde(default)]
    pub learned: Option<String>,
}

/// Scores over the passages (chunks) exactly as `cairn search -k 10` returns
/// them, which is also what the prompt receives (its top `generate.top_k`):
/// an answer cannot be grounded when no passage of a gold page is there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PassageScores {
    /// A passage of a gold document is first / in the top 5 / in the top 10.
    pub hit1: f64,
    pub hit5: f64,
    pub hit10: f64,
    /// A passage in the top 5 contains a gold answer string (None: the
    /// question has no gold answers).
    pub answer5: Option<f64>,
}

impl PassageScores {
    /// Score ranked passages `(document, text)` against gold document
    /// suffixes and gold answer strings.
    pub fn for_gold(
        passages: &[(&str, &str)],
        gold: &[String],
        answers: &[String],
    ) -> PassageScores {
        let relevant = |d: &str| gold.iter().any(|g| ends_with_path(d, g));
        let hit = |n: usize| f64::from(passages.iter().take(n).any(|(d, _)| relevant(d)) as u8);
        PassageScores {
            hit1: hit(1),
            hit5: hit(5),
            hit10: hit(10),
            answer5: (!answers.is_empty()).then(|| {
                f64::from(
                    passages
                        .iter()
                        .take(5)
                        .any(|(_, t)| answer_matches(t, answers)) as u8,
                )
            }),
        }
    }
}

/// The outcome of one question (one line of the run log).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionResult {
    pub id: String,
    pub kind: Option<String>,
    /// The question's wording label (`paraphrased`, `identifier`), if the set has one.
    #[serde(default)]
    pub style: Option<String>,
    /// Document-level scores (each document at the rank of its best passage).
    pub scores: RankScores,
    /// Passage-level scores (absent in run logs written before they existed).
    #[serde(default)]
    pub passages: Option<PassageScores>,
    /// The first 10 distinct documents retrieved.
    pub docs: Vec<String>,
    pub search_ms: f64,
    pub answer: Option<String>,
    pub answer_correct: Option<bool>,
    /// Cited sources from gold documents ÷ cited sources (None: nothing cited).
    pub citation_precision: Option<f64>,
    pub no_answer: Option<bool>,
    pub embed_ms: Option<f64>,
    pub first_token_ms: Option<f64>,
    pub total_ms: Option<f64>,
    /// The corpus is not meant to answer this question: retrieval is not
    /// scored and the right answer is a refusal.
    #[serde(default)]
    pub out_of_corpus: bool,
    /// The answer cites at least one source.
    #[serde(default)]
    pub cited: Option<bool>,
    /// The share of the answer's claims that a source supports.
    #[serde(default)]
    pub supported_share: Option<f64>,
    /// How the answer was made (generated, regenerated, extractive, ...).
    #[serde(default)]
    pub strategy: Option<String>,
    #[serde(default)]
    pub critic_ms: Option<f64>,
    #[serde(default)]
    pub generate_ms: Option<f64>,
}

impl QuestionResult {
    /// The retrieval part of a result (the first ten distinct documents);
    /// the answer fields are filled in when a generator runs.
    fn retrieval(
        q: &QaItem,
        scores: RankScores,
        passages: Option<PassageScores>,
        docs: &[&str],
        search_ms: f64,
    ) -> QuestionResult {
        QuestionResult {
            id: q.id.clone(),
            kind: q.kind.clone(),
            style: q.style.clone(),
            scores,
            passages,
            docs: docs.iter().take(10).map(|d| d.to_string()).collect(),
            search_ms,
            answer: None,
            answer_correct: None,
            citation_precision: None,
            no_answer: None,
            embed_ms: None,
            first_token_ms: None,
            total_ms: None,
            out_of_corpus: q.is_out_of_corpus(),
            cited: None,
            supported_share: None,
            strategy: None,
            critic_ms: None,
            generate_ms: None,
        }
    }
}

/// Means over a set of results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    #[serde(rename = "hit@1")]
    pub hit1: f64,
    /// Passage-level hit@1/5/10 and answer-in-top-5 (means over the
    /// questions that have them).
    #[serde(rename = "passage_hit@1", skip_serializing_if = "Option::is_none")]
    pub p_hit1: Option<f64>,
    #[serde(rename = "passage_hit@5", skip_serializing_if = "Option::is_none")]
    pub p_hit5: Option<f64>,
    #[serde(rename = "passage_hit@10", skip_serializing_if = "Option::is_none")]
    pub p_hit10: Option<f64>,
    #[serde(rename = "answer_in_top5", skip_serializing_if = "Option::is_none")]
    pub answer5: Option<f64>,
    #[serde(rename = "hit@5")]
    pub hit5: f64,
    #[serde(rename = "hit@10")]
    pub hit10: f64,
    #[serde(rename = "mrr@10")]
    pub mrr10: f64,
    #[serde(rename = "ndcg@10")]
    pub ndcg10: f64,
    pub recall: f64,
    pub answer_accuracy: Option<f64>,
    pub citation_precision: Option<f64>,
    pub no_answer_rate: Option<f64>,
    /// Answers (to in-corpus questions) that cite at least one source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cited_rate: Option<f64>,
    /// The mean share of an answer's claims that a source supports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentence_support: Option<f64>,
    /// In-corpus questions answered (not refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_in_corpus: Option<f64>,
    /// Out-of-corpus questions refused, and how many there were.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused_out_of_corpus: Option<f64>,
    #[serde(skip_serializing_if = "is_zero")]
    pub out_of_corpus: usize,
    pub mean_ms: BTreeMap<String, f64>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The share of results for which `f` is true, over those where it is known.
fn share<'a>(
    results: impl Iterator<Item = &'a QuestionResult>,
    f: impl Fn(&QuestionResult) -> Option<bool>,
) -> Option<f64> {
    mean(results.filter_map(|r| f(r).map(|b| f64::from(b as u8))))
}

fn mean(xs: impl Iterator<Item = f64>) -> Option<f64> {
    let (mut s, mut n) = (0.0, 0usize);
    for x in xs {
        s += x;
        n += 1;
    }
    (n > 0).then(|| s / n as f64)
}

impl Summary {
    /// Retrieval and answer figures over the in-corpus questions; refusals
    /// over the out-of-corpus ones.
    pub fn of(all: &[QuestionResult]) -> Summary {
        let ooc: Vec<&QuestionResult> = all.iter().filter(|r| r.out_of_corpus).collect();
        let in_corpus: Vec<QuestionResult> =
            all.iter().filter(|r| !r.out_of_corpus).cloned().collect();
        let results = &in_corpus[..];
        let scores: Vec<RankScores> = results.iter().map(|r| r.scores).collect();
        let m = RankScores::mean(&scores);
        let mut mean_ms = BTreeMap::new();
        mean_ms.insert(
            "search".into(),
            mean(results.iter().map(|r| r.search_ms)).unwrap_or(0.0),
        );
        for (name, f) in [
            (
                "embed",
                (|r: &QuestionResult| r.embed_ms) as fn(&QuestionResult) -> Option<f64>,
            ),
            ("first_token", |r| r.first_token_ms),
            ("critic", |r| r.critic_ms),
            ("generate", |r| r.generate_ms),
            ("answer_total", |r| r.total_ms),
        ] {
            if let Some(v) = mean(results.iter().filter_map(f)) {
                mean_ms.insert(name.into(), v);
            }
        }
        let p = |f: fn(&PassageScores) -> Option<f64>| {
            mean(
                results
                    .iter()
                    .filter_map(|r| r.passages.as_ref().and_then(f)),
            )
        };
        Summary {
            n: results.len(),
            hit1: m.hit1,
            p_hit1: p(|s| Some(s.hit1)),
            p_hit5: p(|s| Some(s.hit5)),
            p_hit10: p(|s| Some(s.hit10)),
            answer5: p(|s| s.answer5),
            hit5: m.hit5,
            hit10: m.hit10,
            mrr10: m.mrr10,
            ndcg10: m.ndcg10,
            recall: m.recall,
            answer_accuracy: share(results.iter(), |r| r.answer_correct),
            citation_precision: mean(results.iter().filter_map(|r| r.citation_precision)),
            no_answer_rate: share(results.iter(), |r| r.no_answer),
            cited_rate: share(results.iter(), |r| r.cited),
            sentence_support: mean(results.iter().filter_map(|r| r.supported_share)),
            answered_in_corpus: share(results.iter(), |r| r.no_answer.map(|c| !c)),
            refused_out_of_corpus: share(ooc.iter().copied(), |r| r.no_answer),
            out_of_corpus: ooc.len(),
            mean_ms,
        }
    }
}

/// The run log: a header line with the settings, then one result per line.
pub struct RunLog {
    path: PathBuf,
    file: std::fs::File,
    pub done: Vec<QuestionResult>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    cairn_eval_run: RunSettings,
}

impl RunLog {
    /// Open (or start) the log at `path`. A log written with other settings
    /// is refused unless `fresh`, which starts over.
    pub fn open(path: &Path, settings: &RunSettings, fresh: bool) -> Result<RunLog> {
        let io = |source| EvalError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut done = Vec::new();
        if path.exists() && !fresh {
            let text = std::fs::read_to_string(path).map_err(io)?;
            let mut lines = text.lines().enumerate();
            if let Some((_, first)) = lines.next() {
                let h: Header = serde_json::from_str(first).map_err(|e| EvalError::Line {
                    path: path.to_path_buf(),
                    line: 1,
                    reason: format!("not a cairn eval run log ({e}); use --fresh to overwrite"),
                })?;
                if &h.cairn_eval_run != settings {
                    return Err(EvalError::Invalid {
                        path: path.to_path_buf(),
                        reason: format!(
                            "this run log was made with other settings ({:?}); use --fresh to start over or another --run file",
                            h.cairn_eval_run
                        ),
                    });
                }
            }
            for (i, line) in lines {
                // A line cut short by an interruption is dropped and redone.
                match serde_json::from_str::<QuestionResult>(line) {
                    Ok(r) => done.push(r),
                    Err(_) if i + 1 == text.lines().count() => {}
                    Err(e) => {
                        return Err(EvalError::Line {
                            path: path.to_path_buf(),
                            line: i + 1,
                            reason: e.to_string(),
                        })
                    }
                }
            }
        }
        // Rewrite what was kept (drops a torn last line), then append.
        let mut file = std::fs::File::create(path).map_err(io)?;
        let mut text = serde_json::to_string(&Header {
            cairn_eval_run: settings.clone(),
        })
        .expect("settings serialise");
        text.push('\n');
        for r in &done {
            text.push_str(&serde_json::to_string(r).expect("results serialise"));
            text.push('\n');
        }
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)?;
        Ok(RunLog {
            path: path.to_path_buf(),
            file,
            done,
        })
    }

    fn append(&mut self, r: QuestionResult) -> Result<()> {
        let mut line = serde_json::to_string(&r).expect("results serialise");
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.sync_data())
            .map_err(|source| EvalError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.done.push(r);
        Ok(())
    }
}

/// Evaluate `items` against `collection` (a local collection, or a
/// cluster's), skipping questions already in `log`. With `answering`,
/// answers are made too, as those options say (generated, checked,
/// extractive...). Out-of-corpus questions are not scored for retrieval;
/// their answer should be a refusal.
pub fn run_qa(
    collection: &dyn cairn_engine::Collection,
    items: &[QaItem],
    settings: &RunSettings,
    answering: Option<&AskOptions>,
    log: &mut RunLog,
    progress: &dyn Progress,
    stop: &dyn Fn() -> bool,
) -> Result<()> {
    let done: HashMap<String, ()> = log.done.iter().map(|r| (r.id.clone(), ())).collect();
    let todo: Vec<&QaItem> = items.iter().filter(|q| !done.contains_key(&q.id)).collect();
    progress.begin("questions", items.len() as u64);
    progress.advance((items.len() - todo.len()) as u64);
    // Enough chunks to find 10 distinct documents in practice.
    let chunks = settings.k.max(10) * 5;
    for q in todo {
        if stop() {
            break;
        }
        let t = Instant::now();
        let hits = collection.search(&q.question, chunks, settings.mode)?;
        let search_ms = t.elapsed().as_secs_f64() * 1000.0;
        let docs: Vec<&str> = dedup_docs(hits.iter().map(|h| h.doc.as_str()));
        let scores = RankScores::for_gold(&docs, &q.gold, settings.k);
        // The passages exactly as `search -k 10` returns them.
        let top = collection.search(&q.question, 10, settings.mode)?;
        let top: Vec<(&str, &str)> = top
            .iter()
            .map(|h| (h.doc.as_str(), h.text.as_str()))
            .collect();
        let passages =
            (!q.is_out_of_corpus()).then(|| PassageScores::for_gold(&top, &q.gold, &q.answers));
        let mut r = QuestionResult::retrieval(q, scores, passages, &docs, search_ms);
        if let Some(opts) = answering {
            let mut sink = |_: &str| if stop() { Flow::Stop } else { Flow::Continue };
            let a = collection.ask(&q.question, &[], opts, &mut sink)?;
            if a.finish == Some(cairn_generate::Finish::Cancelled) {
                break; // interrupted: this question is redone on resume
            }
            r.answer_correct = Some(a.answered && answer_matches(&a.answer, &q.answers));
            r.no_answer = Some(!a.answered);
            if a.answered {
                r.cited = Some(!a.citations.is_empty());
                if !a.sentences.is_empty() {
                    r.supported_share = Some(cairn_critic::support::supported_share(&a.sentences));
                }
            }
            if !a.citations.is_empty() && !q.is_out_of_corpus() {
                let good = a
                    .citations
                    .iter()
                    .filter(|c| q.gold.iter().any(|g| ends_with_path(&c.doc, g)))
                    .count();
                r.citation_precision = Some(good as f64 / a.citations.len() as f64);
            }
            r.embed_ms = Some(a.timings_ms.embed);
            r.first_token_ms = a.timings_ms.first_token;
            r.critic_ms = a.timings_ms.critic;
            r.generate_ms = a.timings_ms.generate;
            r.total_ms = Some(a.timings_ms.total);
            r.strategy = serde_json::to_value(a.strategy)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string));
            r.answer = Some(a.answer);
        }
        log.append(r)?;
        progress.advance(1);
    }
    progress.end();
    Ok(())
}

/// Where a QA run's log goes by default: `<data>/eval/<collection>-<set>-<mode><suffix>.jsonl`,
/// where `suffix` says what kind of run it is (`-cluster`, `-answers`,
/// `-extractive`, together), so that runs of different kinds never resume
/// each other's logs.
pub fn default_run_path(
    data_dir: &Path,
    collection: &str,
    qa_path: &Path,
    settings: &RunSettings,
    extractive: bool,
    cluster: bool,
) -> std::path::PathBuf {
    let set = stem(qa_path);
    let mode = format!("{:?}", settings.mode).to_lowercase();
    let kind = match (settings.answers, extractive) {
        (false, _) => "",
        (true, true) => "-extractive",
        (true, false) => "-answers",
    };
    let place = if cluster { "-cluster" } else { "" };
    data_dir
        .join("eval")
        .join(format!("{collection}-{set}-{mode}{place}{kind}.jsonl"))
}

/// Where and how a QA run is logged.
pub struct LogAt<'a> {
    pub path: &'a Path,
    /// Start over instead of resuming a log of the same settings.
    pub fresh: bool,
    /// Told how many questions a resumed log already holds (when any).
    pub on_resume: &'a dyn Fn(usize),
}

/// A QA set run on a collection (local or a cluster's) with its run log:
/// a log of the same settings is resumed, the questions not yet in it are
/// run, and the log is returned.
pub fn run_logged(
    collection: &dyn cairn_engine::Collection,
    items: &[QaItem],
    settings: &RunSettings,
    answering: Option<&AskOptions>,
    at: LogAt<'_>,
    progress: &dyn Progress,
    stop: &dyn Fn() -> bool,
) -> Result<RunLog> {
    let mut log = RunLog::open(at.path, settings, at.fresh)?;
    if !log.done.is_empty() {
        (at.on_resume)(log.done.len());
    }
    run_qa(
        collection, items, settings, answering, &mut log, progress, stop,
    )?;
    Ok(log)
}

/// A file name's stem as a name part: `[A-Za-z0-9_-]`, anything else `-`.
pub fn stem(p: &Path) -> String {
    p.file_stem()
        .or_else(|| p.file_name())
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "set".into())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Write a BEIR corpus as one text file per document (`<id>.txt`: title,
/// blank line, text) under `dir`, so that the ordinary ingest path indexes it.
/// Ids that are not safe file names are refused.
pub fn materialise_beir(set: &crate::BeirSet, dir: &Path) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EvalError::Io {
            path: path.clone(),
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for (id, (title, text)) in &set.corpus {
        if id.is_empty() || id.contains(['/', '\\', '\0']) || id.starts_with('.') {
            return Err(EvalError::Invalid {
                path: set.dir.join("corpus.jsonl"),
                reason: format!("document id `{id}` cannot be a file name"),
            });
        }
        let p = dir.join(format!("{id}.txt"));
        let body = if title.is_empty() {
            text.clone()
        } else {
            format!("{title}\n\n{text}")
        };
        if std::fs::read_to_string(&p).ok().as_deref() != Some(body.as_str()) {
            std::fs::write(&p, body).map_err(io(&p))?;
        }
    }
    Ok(())
}

/// Evaluate a BEIR set whose corpus was ingested from [`materialise_beir`]'s
/// files: graded nDCG@10 as trec_eval computes it, binary hits and MRR
/// (grade > 0). Returns per-query results and, for cross-checking, the
/// TREC run lines (`qid Q0 docid rank score cairn`).
pub fn run_beir(
    engine: &Engine,
    set: &crate::BeirSet,
    settings: &RunSettings,
    progress: &dyn Progress,
) -> Result<(Vec<QuestionResult>, Vec<String>)> {
    let mut results = Vec::new();
    let mut trec = Vec::new();
    progress.begin("queries", set.queries.len() as u64);
    let chunks = settings.k.max(10) * 5;
    for (qid, text) in &set.queries {
        let t = Instant::now();
        let hits = engine.search(text, chunks, settings.mode)?;
        let search_ms = t.elapsed().as_secs_f64() * 1000.0;
        let mut ids: Vec<&str> = Vec::new();
        for h in &hits {
            let id = h
                .doc
                .rsplit('/')
                .next()
                .and_then(|f| f.strip_suffix(".txt"))
                .unwrap_or(&h.doc);
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        let qrels = &set.qrels[qid];
        let relevant = |d: &str| qrels.get(d).is_some_and(|g| *g > 0);
        let hit = |n: usize| f64::from(ids.iter().take(n).any(|d| relevant(d)) as u8);
        let n_rel = qrels.values().filter(|g| **g > 0).count();
        let found = ids.iter().take(settings.k).filter(|d| relevant(d)).count();
        let s = RankScores {
            hit1: hit(1),
            hit5: hit(5),
            hit10: hit(10),
            mrr10: crate::metrics::reciprocal_rank_at(&ids, relevant, 10),
            ndcg10: crate::metrics::ndcg_at(&ids, qrels, 10),
            recall: if n_rel == 0 {
                0.0
            } else {
                found as f64 / n_rel as f64
            },
        };
        // trec_eval orders by score, not rank: give strictly decreasing
        // scores so that its order is exactly Cairn's.
        for (rank, id) in ids.iter().enumerate() {
            trec.push(format!(
                "{qid} Q0 {id} {} {} cairn",
                rank + 1,
                1.0 / (rank + 1) as f64
            ));
        }
        let item = QaItem {
            id: qid.clone(),
            question: String::new(),
            answers: vec![],
            gold: vec![],
            kind: None,
            style: None,
        };
        results.push(QuestionResult::retrieval(&item, s, None, &ids, search_ms));
        progress.advance(1);
    }
    progress.end();
    Ok((results, trec))
}

#[cfg(test)]
mod passage_tests {
    use super::*;

    #[test]
    fn passage_scores_read_the_ranked_passages_as_given() {
        let gold = vec!["library/os.html".to_string()];
        let answers = vec!["os.walk".to_string()];
        let p = [
            ("d/tutorial/a.html", "nothing here"),
            ("d/library/os.html", "use os.walk() to walk a tree"),
            ("d/library/os.html", "another passage"),
        ];
        let s = PassageScores::for_gold(&p, &gold, &answers);
        assert_eq!((s.hit1, s.hit5, s.hit10), (0.0, 1.0, 1.0));
        assert_eq!(s.answer5, Some(1.0));
        // Past the fifth passage a gold page counts for hit@10 only.
        let mut late = vec![("x.html", "no"); 7];
        late.push(("library/os.html", "os.walk"));
        let s = PassageScores::for_gold(&late, &gold, &answers);
        assert_eq!(
            (s.hit1, s.hit5, s.hit10, s.answer5),
            (0.0, 0.0, 1.0, Some(0.0))
        );
        // No gold answers: no answer score.
        assert_eq!(PassageScores::for_gold(&p, &gold, &[]).answer5, None);
        // The answer in a passage of another page still counts as answered.
        let other = [("tutorial/b.html", "call os.walk")];
        let s = PassageScores::for_gold(&other, &gold, &answers);
        assert_eq!((s.hit1, s.answer5), (0.0, Some(1.0)));
    }
}
