//! `cairn eval` as users run it: a QA set (metrics, JSON contract, an
//! interrupted `--answers` run that resumes) and a BEIR set whose nDCG@10 is
//! cross-checked against `pytrec_eval` (PyPI) on the same run.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod common;
use common::{json, ok};

fn cairn(data: &Path) -> Command {
    let mut c = common::cairn(data);
    c.env("CAIRN_LLM_THREADS", "2");
    c
}

const PAGES: &[&str] = &[
    "library/os.path.html",
    "library/venv.html",
    "library/json.html",
    "library/shutil.html",
    "tutorial/inputoutput.html",
    "tutorial/controlflow.html",
];

/// The QA set's collection, ingested once per test binary (the ingest is the
/// same for every test) and copied into each test's own data dir.
fn qa_corpus(tmp: &Path) -> (PathBuf, PathBuf) {
    static FIXTURE: OnceLock<tempfile::TempDir> = OnceLock::new();
    let fixture = FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let docs = dir.path().join("docs");
        cairn_testkit::copy_pages(PAGES, &docs);
        let mut c = cairn(&dir.path().join("data"));
        c.arg("ingest").arg(&docs);
        ok(c);
        dir
    });
    let data = tmp.join("data");
    cairn_testkit::copy_dir(&fixture.path().join("data"), &data);
    let qa = tmp.join("qa.jsonl");
    std::fs::write(
        &qa,
        [
            r#"{"id":"q1","kind":"which-module","question":"How do I create a virtual environment?","answers":["python -m venv"],"gold":["library/venv.html"]}"#,
            r#"{"id":"q2","kind":"behaviour","question":"How do I serialize a Python object to a JSON string?","answers":["json.dumps"],"gold":["library/json.html"]}"#,
            r#"{"id":"q3","kind":"behaviour","question":"How do I copy a whole directory tree?","answers":["copytree"],"gold":["library/shutil.html"]}"#,
            r#"{"id":"q4","kind":"syntax","question":"How do I read a file line by line?","answers":["for line in f"],"gold":["tutorial/inputoutput.html"]}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    (data, qa)
}

#[test]
fn qa_metrics_agree_with_search_and_the_json_contract_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, qa) = qa_corpus(tmp.path());
    for mode in ["dense", "bm25", "hybrid"] {
        let mut c = cairn(&data);
        c.args(["eval", "--json", "--mode", mode, "--qa"]).arg(&qa);
        let v = json(&ok(c).stdout);
        assert_eq!(v["n"], 4, "{mode}");
        for key in ["hit@1", "hit@5", "hit@10", "mrr@10", "ndcg@10"] {
            let x = v[key].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&x), "{mode} {key}={x}");
        }
        assert!(v["answer_accuracy"].is_null() && v["citation_precision"].is_null());
        assert!(v["hit@1"].as_f64() <= v["hit@5"].as_f64());
        assert!(v["hit@5"].as_f64() <= v["hit@10"].as_f64());
        // Each question's hit@1 is what `cairn search` ranks first.
        for q in v["questions"].as_array().unwrap() {
            let gold = match q["id"].as_str().unwrap() {
                "q1" => "library/venv.html",
                "q2" => "library/json.html",
                "q3" => "library/shutil.html",
                _ => "tutorial/inputoutput.html",
            };
            let question = std::fs::read_to_string(&qa)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .find(|x| x["id"] == q["id"])
                .unwrap()["question"]
                .as_str()
                .unwrap()
                .to_string();
            let mut c = cairn(&data);
            c.args(["search", &question, "-k", "5", "--json", "--mode", mode]);
            let hits = json(&ok(c).stdout)["hits"].as_array().unwrap().clone();
            let doc = |h: &Value| h["doc"].as_str().unwrap().to_string();
            assert_eq!(
                q["scores"]["hit1"].as_f64().unwrap() == 1.0,
                doc(&hits[0]).ends_with(gold),
                "{mode} {q}"
            );
            // Passage-level scores are over `search -k`'s own list.
            assert_eq!(
                q["passages"]["hit1"].as_f64().unwrap() == 1.0,
                doc(&hits[0]).ends_with(gold),
                "{mode} {q}"
            );
            assert_eq!(
                q["passages"]["hit5"].as_f64().unwrap() == 1.0,
                hits.iter().any(|h| doc(h).ends_with(gold)),
                "{mode} {q}"
            );
        }
        assert!(v["passage_hit@1"].as_f64() <= v["passage_hit@5"].as_f64());
        assert!(v["passage_hit@5"].as_f64() <= v["hit@5"].as_f64(), "{v}");
        assert!((0.0..=1.0).contains(&v["answer_in_top5"].as_f64().unwrap()));
        assert!(v["by_kind"]["behaviour"]["n"] == 2);
    }
    // A malformed set names the file and line.
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"id\":\"x\",\"question\":\"q\",\"gold\":[]}\n").unwrap();
    let mut c = cairn(&data);
    c.args(["eval", "--qa"]).arg(&bad);
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.jsonl:1") && err.contains("gold"), "{err}");
}

#[test]
fn an_interrupted_answers_run_resumes_where_it_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, qa) = qa_corpus(tmp.path());
    let run = tmp.path().join("run.jsonl");
    // Short answers: what is tested is the run log (interrupt, resume,
    // refusal), not the answers' length; both runs read the same settings.
    let cfg = tmp.path().join("cairn.toml");
    std::fs::write(&cfg, "[generate]\nmax_tokens = 48\n").unwrap();
    let cairn = |data: &Path| {
        let mut c = cairn(data);
        c.arg("--config").arg(&cfg);
        c
    };
    let mut c = cairn(&data);
    c.args(["eval", "--answers", "--qa"])
        .arg(&qa)
        .arg("--run")
        .arg(&run)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    // Interrupt once the first question's result is on disk.
    let deadline = Instant::now() + Duration::from_secs(300);
    while std::fs::read_to_string(&run).map_or(0, |t| t.lines().count()) < 2 {
        assert!(Instant::now() < deadline, "no result written");
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    let mut err = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .lines()
        .for_each(|l| err.push_str(&(l.unwrap() + "\n")));
    assert_eq!(status.code(), Some(130), "{err}");
    let done_before = std::fs::read_to_string(&run).unwrap().lines().count() - 1;
    assert!(
        (1..4).contains(&done_before),
        "{done_before} done before the interrupt"
    );

    let mut c = cairn(&data);
    c.args(["eval", "--answers", "--json", "--qa"])
        .arg(&qa)
        .arg("--run")
        .arg(&run);
    let out = ok(c);
    let v = json(&out.stdout);
    assert_eq!(v["n"], 4);
    assert_eq!(v["complete"], true);
    let acc = v["answer_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    assert!(v["no_answer_rate"].as_f64().is_some());
    // The log holds the header and each question exactly once.
    let lines: Vec<Value> = std::fs::read_to_string(&run)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    let mut ids: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["q1", "q2", "q3", "q4"]);

    // The same log with other settings is refused rather than mixed.
    let refused = |args: &[&str]| {
        let mut c = cairn(&data);
        c.arg("eval")
            .args(args)
            .arg("--qa")
            .arg(&qa)
            .arg("--run")
            .arg(&run);
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("other settings"), "{err}");
    };
    refused(&["--mode", "bm25"]);
    // So is the same mode under other search weights.
    std::fs::write(
        &cfg,
        "[generate]\nmax_tokens = 48\n[search]\nrrf_k = 33.0\n",
    )
    .unwrap();
    refused(&["--answers"]);
}

/// The Python with pytrec_eval (scripts/test.sh installs it).
fn pytrec_python() -> PathBuf {
    let p = std::env::var_os("CAIRN_EVAL_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap())
                .join(".cache/cairn/eval-venv/bin/python")
        });
    let ok = Command::new(&p)
        .args(["-c", "import pytrec_eval"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "pytrec_eval is needed at {}: run scripts/test.sh",
        p.display()
    );
    p
}

#[test]
fn beir_ndcg_matches_pytrec_eval_on_the_same_run() {
    let python = pytrec_python();
    let tmp = tempfile::tempdir().unwrap();
    let set = tmp.path().join("pydocs-beir");
    std::fs::create_dir_all(set.join("qrels")).unwrap();
    // A corpus from real pages: each section of a few pages is a document.
    let root = cairn_testkit::python_docs();
    let mut corpus = String::new();
    let mut n_docs = 0;
    for page in PAGES {
        let bytes = std::fs::read(root.join(page)).unwrap();
        let doc = cairn_ingest::load(&root.join(page), &bytes).unwrap();
        for (i, s) in doc.sections.iter().enumerate().take(8) {
            let text = doc.text[s.start..s.end].to_string();
            if text.split_whitespace().count() < 20 {
                continue;
            }
            let id = format!("{}-{i}", page.replace(['/', '.'], "_"));
            corpus.push_str(
                &serde_json::json!({"_id": id, "title": s.headings.join(" > "), "text": text})
                    .to_string(),
            );
            corpus.push('\n');
            n_docs += 1;
        }
    }
    assert!(n_docs >= 20, "{n_docs}");
    std::fs::write(set.join("corpus.jsonl"), &corpus).unwrap();
    let ids: Vec<String> = corpus
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    // Queries judged against every document of their page: grade 2 for the
    // page's first section, 1 for the rest, so the metric is graded.
    let queries = [
        ("q1", "create a virtual environment", "library_venv_html"),
        ("q2", "encode python objects as JSON", "library_json_html"),
        (
            "q3",
            "copy files and directory trees",
            "library_shutil_html",
        ),
        (
            "q4",
            "format strings and read files",
            "tutorial_inputoutput_html",
        ),
        (
            "q5",
            "if statements and for loops",
            "tutorial_controlflow_html",
        ),
        (
            "q6",
            "split a pathname into directory and file",
            "library_os_path_html",
        ),
    ];
    let mut qtext = String::new();
    let mut qrels = String::from("query-id\tcorpus-id\tscore\n");
    for (qid, text, page) in queries {
        qtext.push_str(&serde_json::json!({"_id": qid, "text": text}).to_string());
        qtext.push('\n');
        for (j, id) in ids.iter().filter(|d| d.starts_with(page)).enumerate() {
            qrels.push_str(&format!("{qid}\t{id}\t{}\n", if j == 0 { 2 } else { 1 }));
        }
    }
    std::fs::write(set.join("queries.jsonl"), qtext).unwrap();
    std::fs::write(set.join("qrels/test.tsv"), &qrels).unwrap();

    let data = tmp.path().join("data");
    let run = tmp.path().join("run.trec");
    let mut c = cairn(&data);
    c.args(["eval", "--json", "--beir"])
        .arg(&set)
        .arg("--trec-run")
        .arg(&run);
    let v = json(&ok(c).stdout);
    assert_eq!(v["n"], 6);
    let ours = v["ndcg@10"].as_f64().unwrap();
    assert!(ours > 0.2, "retrieval should find these pages: {ours}");

    let script = r#"
import json, sys, pytrec_eval
qrels = {}
for line in open(sys.argv[1]):
    q, d, s = line.rstrip("\n").split("\t")
    if q == "query-id": continue
    qrels.setdefault(q, {})[d] = int(s)
run = {}
for line in open(sys.argv[2]):
    q, _, d, rank, score, _ = line.split()
    run.setdefault(q, {})[d] = float(score)
ev = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recip_rank"})
res = ev.evaluate(run)
print(json.dumps({q: r["ndcg_cut_10"] for q, r in res.items()}))
"#;
    let out = Command::new(&python)
        .args(["-c", script])
        .arg(set.join("qrels/test.tsv"))
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Value = json(&out.stdout);
    let mut sum = 0.0;
    for q in v["questions"].as_array().unwrap() {
        let id = q["id"].as_str().unwrap();
        let mine = q["scores"]["ndcg10"].as_f64().unwrap();
        // pytrec_eval omits queries with no retrieved documents; Cairn always retrieves.
        let t = theirs[id]
            .as_f64()
            .unwrap_or_else(|| panic!("pytrec_eval has no {id}"));
        assert!(
            (mine - t).abs() < 1e-9,
            "{id}: cairn {mine} vs pytrec_eval {t}"
        );
        sum += t;
    }
    assert!((ours - sum / 6.0).abs() < 1e-9);
}

/// Questions the six pages do not answer.
const OUT_OF_CORPUS: &[&str] = &[
    r#"{"id":"o1","kind":"out-of-corpus","question":"How do I define a goroutine and wait for it with a WaitGroup?","answers":[],"gold":[]}"#,
    r#"{"id":"o2","kind":"out-of-corpus","question":"What is the melting point of tungsten in kelvin?","answers":[],"gold":[]}"#,
    r#"{"id":"o3","kind":"out-of-corpus","question":"How do I pivot a pandas DataFrame with a MultiIndex?","answers":[],"gold":[]}"#,
    r#"{"id":"o4","kind":"out-of-corpus","question":"Which Kubernetes resource schedules a pod on every node?","answers":[],"gold":[]}"#,
];

#[test]
fn extractive_answers_and_refusals_are_measured() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, qa) = qa_corpus(tmp.path());
    let ooc = tmp.path().join("ooc.jsonl");
    std::fs::write(&ooc, OUT_OF_CORPUS.join("\n")).unwrap();
    let mut c = cairn(&data);
    c.arg("eval")
        .arg("--qa")
        .arg(&qa)
        .arg("--out-of-corpus")
        .arg(&ooc);
    c.args(["--extractive", "--crag", "--json"]);
    let v = json(&ok(c).stdout);
    // Retrieval is scored on the in-corpus questions only.
    assert_eq!(v["n"], 4, "{v:#}");
    assert_eq!(v["out_of_corpus"], 4);
    // Every question ran: 8 results, answers made extractively.
    let qs = v["questions"].as_array().unwrap();
    assert_eq!(qs.len(), 8);
    for q in qs {
        let answered = q["no_answer"] == false;
        if answered {
            assert_eq!(q["strategy"], "extractive", "{q}");
            assert_eq!(q["cited"], true, "{q}");
        }
        assert!(q["critic_ms"].as_f64().unwrap() >= 0.0, "{q}");
    }
    // The out-of-corpus ones are refused, the covered ones answered; the
    // figures are the shares of the per-question outcomes.
    let refused = qs
        .iter()
        .filter(|q| q["out_of_corpus"] == true && q["no_answer"] == true)
        .count();
    assert_eq!(
        v["refused_out_of_corpus"].as_f64().unwrap(),
        refused as f64 / 4.0
    );
    assert!(refused >= 3, "{v:#}");
    let answered = qs
        .iter()
        .filter(|q| q["out_of_corpus"] == false && q["no_answer"] == false)
        .count();
    assert_eq!(
        v["answered_in_corpus"].as_f64().unwrap(),
        answered as f64 / 4.0
    );
    assert!(answered >= 3, "{v:#}");
    assert!(v["answer_accuracy"].as_f64().is_some());
    assert_eq!(v["cited_rate"], 1.0);
}

#[test]
fn calibrate_fits_on_one_half_and_reports_the_other() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, qa) = qa_corpus(tmp.path());
    let ooc = tmp.path().join("ooc.jsonl");
    std::fs::write(&ooc, OUT_OF_CORPUS.join("\n")).unwrap();
    // Broader questions too, whose top passages span several pages (pairs
    // of both labels in each half).
    let mut lines = std::fs::read_to_string(&qa).unwrap();
    for l in [
        r#"{"id":"q5","question":"Which function gives the last component of a path?","answers":["basename"],"gold":["library/os.path.html"]}"#,
        r#"{"id":"q6","question":"How do I write a value to a file as text?","answers":["write"],"gold":["tutorial/inputoutput.html"]}"#,
        r#"{"id":"q7","question":"What does the else clause of a loop do?","answers":["else"],"gold":["tutorial/controlflow.html"]}"#,
        r#"{"id":"q8","question":"How do I remove a directory and everything in it?","answers":["rmtree"],"gold":["library/shutil.html"]}"#,
    ] {
        lines.push('\n');
        lines.push_str(l);
    }
    std::fs::write(&qa, lines).unwrap();
    let mut c = cairn(&data);
    c.arg("eval")
        .arg("--qa")
        .arg(&qa)
        .arg("--out-of-corpus")
        .arg(&ooc);
    c.args(["--calibrate", "--json"]);
    let v = json(&ok(c).stdout);
    for j in ["relevance", "support"] {
        let fit = &v[j]["fit"];
        assert!(fit["calibration"]["a"].as_f64().unwrap() > 0.0, "{v:#}");
        assert!(fit["samples"].as_u64().unwrap() > 0);
        assert!(v[j]["held_out"]["samples"].as_u64().unwrap() > 0);
    }
    // Every question's features, in two halves.
    let qs = v["questions"].as_array().unwrap();
    assert_eq!(qs.len(), 12);
    assert_eq!(qs.iter().filter(|q| q["held_out"] == true).count(), 6);
    assert!(v["grade"]["incorrect"].as_f64().is_some(), "{v:#}");
    // The [critic] table is a configuration the binary accepts.
    let toml = v["toml"].as_str().unwrap();
    assert!(
        toml.contains("[critic]") && toml.contains("calibrated_on"),
        "{toml}"
    );
    let cfg = tmp.path().join("critic.toml");
    std::fs::write(&cfg, toml).unwrap();
    let mut c = cairn(&data);
    c.arg("--config").arg(&cfg);
    c.args([
        "ask",
        "How do I copy a whole directory tree?",
        "--extractive",
        "--crag",
        "--json",
    ]);
    let a = json(&ok(c).stdout);
    assert!(a["grade_probability"].as_f64().is_some(), "{a:#}");
}
