//! Question sets: Cairn's QA JSONL and the BEIR layout.

use crate::{EvalError, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// One question of a QA set (one JSONL line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QaItem {
    pub id: String,
    pub question: String,
    /// Short gold answers; a generated answer matches when it contains one.
    #[serde(default)]
    pub answers: Vec<String>,
    /// Paths (suffixes) of the documents that answer the question.
    pub gold: Vec<String>,
    /// Optional label (behaviour, default, version, ...), reported per kind.
    #[serde(default)]
    pub kind: Option<String>,
    /// Optional wording label (`paraphrased`: no identifier from the page;
    /// `identifier`), reported per style.
    #[serde(default)]
    pub style: Option<String>,
}

/// The kind of a question that the corpus does not answer: it has no gold
/// documents and no answers, and the right answer is a refusal.
pub const OUT_OF_CORPUS: &str = "out-of-corpus";

impl QaItem {
    /// Whether the corpus is not meant to answer this question.
    pub fn is_out_of_corpus(&self) -> bool {
        self.kind.as_deref() == Some(OUT_OF_CORPUS)
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> EvalError + '_ {
    move |source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn lines(path: &Path) -> Result<impl Iterator<Item = (usize, std::io::Result<String>)>> {
    let f = std::fs::File::open(path).map_err(io(path))?;
    Ok(BufReader::new(f)
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l)))
}

/// Read a QA JSONL file. Blank lines are skipped; a malformed line, a
/// missing field, an empty question or gold list, or a repeated id is an
/// error naming the file and line.
pub fn load_qa(path: &Path) -> Result<Vec<QaItem>> {
    let mut out = Vec::new();
    let mut ids = HashMap::new();
    for (n, line) in lines(path)? {
        let line = line.map_err(io(path))?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| EvalError::Line {
            path: path.to_path_buf(),
            line: n,
            reason,
        };
        let item: QaItem = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
        if item.question.trim().is_empty() {
            return Err(bad("field `question` is empty".into()));
        }
        if item.is_out_of_corpus() {
            if !item.gold.is_empty() || !item.answers.is_empty() {
                return Err(bad(format!(
                    "an `{OUT_OF_CORPUS}` question has no `gold` and no `answers`"
                )));
            }
        } else if item.gold.is_empty() || item.gold.iter().any(|g| g.trim().is_empty()) {
            return Err(bad(format!(
                "field `gold` needs at least one non-empty document path (or `\"kind\": \"{OUT_OF_CORPUS}\"` for a question the documents do not answer)"
            )));
        }
        if let Some(first) = ids.insert(item.id.clone(), n) {
            return Err(bad(format!(
                "id `{}` already used on line {first}",
                item.id
            )));
        }
        out.push(item);
    }
    if out.is_empty() {
        return Err(EvalError::Invalid {
            path: path.to_path_buf(),
            reason: "no questions".into(),
        });
    }
    Ok(out)
}

/// A BEIR dataset: `corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`.
#[derive(Debug, Clone)]
pub struct BeirSet {
    pub dir: PathBuf,
    /// Document id → (title, text).
    pub corpus: BTreeMap<String, (String, String)>,
    /// Query id → text, only the queries that have judgements.
    pub queries: BTreeMap<String, String>,
    /// Query id → document id → grade.
    pub qrels: BTreeMap<String, HashMap<String, u32>>,
    pub split: String,
}

#[derive(Deserialize)]
struct BeirDoc {
    #[serde(rename = "_id")]
    id: String,
    #[serde(default)]
    title: String,
    text: String,
}

#[derive(Deserialize)]
struct BeirQuery {
    #[serde(rename = "_id")]
    id: String,
    text: String,
}

/// Load a BEIR dataset directory. `split` picks `qrels/<split>.tsv`
/// (default `test`, or the only qrels file there is).
pub fn load_beir(dir: &Path, split: Option<&str>) -> Result<BeirSet> {
    let corpus_path = dir.join("corpus.jsonl");
    let mut corpus = BTreeMap::new();
    for (n, line) in lines(&corpus_path)? {
        let line = line.map_err(io(&corpus_path))?;
        if line.trim().is_empty() {
            continue;
        }
        let d: BeirDoc = serde_json::from_str(&line).map_err(|e| EvalError::Line {
            path: corpus_path.clone(),
            line: n,
            reason: e.to_string(),
        })?;
        corpus.insert(d.id, (d.title, d.text));
    }
    let qrels_dir = dir.join("qrels");
    let split = match split {
        Some(s) => s.to_string(),
        None => {
            let mut tsvs: Vec<String> = std::fs::read_dir(&qrels_dir)
                .map_err(io(&qrels_dir))?
                .flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".tsv"))
                        .map(str::to_string)
                })
                .collect();
            tsvs.sort();
            if tsvs.iter().any(|t| t == "test") {
                "test".into()
            } else if tsvs.len() == 1 {
                tsvs.remove(0)
            } else {
                return Err(EvalError::Invalid {
                    path: qrels_dir,
                    reason: format!("no test.tsv; pick a split among {tsvs:?}"),
                });
            }
        }
    };
    let qrels_path = qrels_dir.join(format!("{split}.tsv"));
    let mut qrels: BTreeMap<String, HashMap<String, u32>> = BTreeMap::new();
    for (n, line) in lines(&qrels_path)? {
        let line = line.map_err(io(&qrels_path))?;
        let cols: Vec<&str> = line.split('\t').collect();
        if line.trim().is_empty() || (n == 1 && cols.first() == Some(&"query-id")) {
            continue;
        }
        let bad = |reason: String| EvalError::Line {
            path: qrels_path.clone(),
            line: n,
            reason,
        };
        if cols.len() != 3 {
            return Err(bad(format!(
                "expected query-id, corpus-id, score; got {} columns",
                cols.len()
            )));
        }
        let score: i64 = cols[2]
            .trim()
            .parse()
            .map_err(|_| bad(format!("score `{}` is not an integer", cols[2])))?;
        qrels
            .entry(cols[0].to_string())
            .or_default()
            .insert(cols[1].to_string(), score.max(0) as u32);
    }
    let queries_path = dir.join("queries.jsonl");
    let mut queries = BTreeMap::new();
    for (n, line) in lines(&queries_path)? {
        let line = line.map_err(io(&queries_path))?;
        if line.trim().is_empty() {
            continue;
        }
        let q: BeirQuery = serde_json::from_str(&line).map_err(|e| EvalError::Line {
            path: queries_path.clone(),
            line: n,
            reason: e.to_string(),
        })?;
        if qrels.contains_key(&q.id) {
            queries.insert(q.id, q.text);
        }
    }
    if queries.is_empty() {
        return Err(EvalError::Invalid {
            path: dir.to_path_buf(),
            reason: format!("no query in queries.jsonl has judgements in qrels/{split}.tsv"),
        });
    }
    Ok(BeirSet {
        dir: dir.to_path_buf(),
        corpus,
        queries,
        qrels,
        split,
    })
}

/// A QA set with, optionally, a set of out-of-corpus questions added (each
/// of kind [`OUT_OF_CORPUS`], with ids the first set does not use).
pub fn load_qa_sets(qa: &Path, out_of_corpus: Option<&Path>) -> Result<Vec<QaItem>> {
    let mut items = load_qa(qa)?;
    if let Some(p) = out_of_corpus {
        let extra = load_qa(p)?;
        if let Some(q) = extra.iter().find(|q| !q.is_out_of_corpus()) {
            return Err(EvalError::Invalid {
                path: p.to_path_buf(),
                reason: format!("question `{}` is not of kind `{OUT_OF_CORPUS}`", q.id),
            });
        }
        if let Some(q) = extra.iter().find(|q| items.iter().any(|i| i.id == q.id)) {
            return Err(EvalError::Invalid {
                path: p.to_path_buf(),
                reason: format!("id `{}` is also in {}", q.id, qa.display()),
            });
        }
        items.extend(extra);
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_corpus_sets_join_only_with_their_kind_and_new_ids() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, lines: &[&str]| {
            let p = dir.path().join(name);
            std::fs::write(&p, lines.join("\n")).unwrap();
            p
        };
        let qa = write(
            "qa.jsonl",
            &[r#"{"id":"q1","kind":"howto","question":"How?","answers":["a"],"gold":["a.html"]}"#],
        );
        let ooc = write(
            "ooc.jsonl",
            &[r#"{"id":"o1","kind":"out-of-corpus","question":"Why?","answers":[],"gold":[]}"#],
        );
        let all = load_qa_sets(&qa, Some(&ooc)).unwrap();
        assert_eq!(all.len(), 2);
        assert!(all[1].is_out_of_corpus());
        let wrong_kind = write(
            "wrong.jsonl",
            &[r#"{"id":"o2","kind":"howto","question":"Why?","answers":["b"],"gold":["b.html"]}"#],
        );
        let e = load_qa_sets(&qa, Some(&wrong_kind))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("wrong.jsonl") && e.contains("`o2`") && e.contains(OUT_OF_CORPUS),
            "{e}"
        );
        let same_id = write(
            "same.jsonl",
            &[r#"{"id":"q1","kind":"out-of-corpus","question":"Why?","answers":[],"gold":[]}"#],
        );
        let e = load_qa_sets(&qa, Some(&same_id)).unwrap_err().to_string();
        assert!(
            e.contains("same.jsonl") && e.contains("`q1`") && e.contains("qa.jsonl"),
            "{e}"
        );
    }

    #[test]
    fn qa_errors_name_the_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("qa.jsonl");
        std::fs::write(
            &p,
            "{\"id\":\"a\",\"question\":\"q?\",\"answers\":[\"x\"],\"gold\":[\"a.md\"]}\n\n{\"id\":\"b\",\"question\":\"q\"}\n",
        )
        .unwrap();
        let e = load_qa(&p).unwrap_err().to_string();
        assert!(e.contains("qa.jsonl:3") && e.contains("gold"), "{e}");
        std::fs::write(
            &p,
            "{\"id\":\"a\",\"question\":\"q?\",\"gold\":[\"a.md\"]}\n{\"id\":\"a\",\"question\":\"r?\",\"gold\":[\"b.md\"]}\n",
        )
        .unwrap();
        let e = load_qa(&p).unwrap_err().to_string();
        assert!(
            e.contains(":2") && e.contains("already used on line 1"),
            "{e}"
        );
        std::fs::write(
            &p,
            "{\"id\":\"a\",\"question\":\"q?\",\"gold\":[\"a.md\"],\"kind\":\"default\"}\n",
        )
        .unwrap();
        let q = load_qa(&p).unwrap();
        assert_eq!(q[0].kind.as_deref(), Some("default"));
        let load = |text: &str| {
            std::fs::write(&p, text).unwrap();
            load_qa(&p)
        };
        // A question the corpus does not answer has no gold and no answers.
        let q = load(
            "{\"id\":\"o\",\"question\":\"q?\",\"gold\":[],\"kind\":\"out-of-corpus\",\"absent\":[\"x\"]}\n",
        )
        .unwrap();
        assert!(q[0].is_out_of_corpus());
        let e = load(
            "{\"id\":\"o\",\"question\":\"q?\",\"gold\":[\"a.md\"],\"kind\":\"out-of-corpus\"}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no `gold`"), "{e}");
        let e = load("{\"id\":\"o\",\"question\":\"q?\",\"gold\":[]}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("out-of-corpus"), "{e}");
        assert!(q[0].answers.is_empty());
    }

    #[test]
    fn beir_layout_is_read_with_graded_qrels() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("qrels")).unwrap();
        std::fs::write(
            d.join("corpus.jsonl"),
            "{\"_id\":\"d1\",\"title\":\"T\",\"text\":\"one\"}\n{\"_id\":\"d2\",\"text\":\"two\"}\n",
        )
        .unwrap();
        std::fs::write(
            d.join("queries.jsonl"),
            "{\"_id\":\"q1\",\"text\":\"first?\"}\n{\"_id\":\"q2\",\"text\":\"unjudged\"}\n",
        )
        .unwrap();
        std::fs::write(
            d.join("qrels/test.tsv"),
            "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\n",
        )
        .unwrap();
        let b = load_beir(d, None).unwrap();
        assert_eq!(b.corpus.len(), 2);
        assert_eq!(b.queries.len(), 1, "only judged queries");
        assert_eq!(b.qrels["q1"]["d1"], 2);
        assert_eq!(b.split, "test");
        std::fs::write(d.join("qrels/test.tsv"), "q1\td1\n").unwrap();
        let e = load_beir(d, None).unwrap_err().to_string();
        assert!(e.contains("test.tsv:1") && e.contains("columns"), "{e}");
    }
}
