//! `cairn feedback` as users run it, in separate processes on the real
//! embedder: `ask --extractive` logs its answer (a read-only process: the
//! log is its own file), `feedback --last --up` rates it, `list` and
//! `stats` show it, `--helpful` is checked against the answer's citations,
//! and `export` writes each format's fields; an empty log is a clear error.

mod common;
use common::{cairn, json, ok, run, stdout};
use serde_json::Value;
use std::path::{Path, PathBuf};

const BRIDGE: &str = "# Kestrel Bridge\n\n## History\n\n\
The Kestrel Bridge over the Varne estuary opened to traffic in 1987. \
It is 412 metres long and carries the coastal railway between Harrow Point and Selby.\n\n\
## Maintenance\n\nThe bridge is repainted every nine years by the Varne Harbour Trust.\n";

const LIGHTHOUSE: &str = "# Orrin Lighthouse\n\n\
The Orrin lighthouse stands on the north cape of Tavel island. \
Its lamp is lit every evening at 17:40 by the keeper, Mara Quist.\n";

fn collection() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("bridge.md"), BRIDGE).unwrap();
    std::fs::write(docs.join("lighthouse.md"), LIGHTHOUSE).unwrap();
    let data = tmp.path().join("data");
    let mut c = cairn(&data);
    c.arg("ingest").arg(&docs);
    ok(c);
    (tmp, data)
}

fn ask(data: &Path, q: &str) -> Value {
    let mut c = cairn(data);
    c.args(["ask", q, "--extractive", "--json"]);
    json(&ok(c).stdout)
}

fn jsonl(text: &str) -> Vec<Value> {
    text.lines().map(|l| json(l.as_bytes())).collect()
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(|s| s.as_str()).collect();
    k.sort();
    k
}

#[test]
fn rate_list_stats_and_export_every_format() {
    let (_tmp, data) = collection();

    // Nothing logged yet: each command says what is missing.
    let out = run(&data, &["feedback", "--last", "--up"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no answer is logged"), "{err}");
    for format in ["sft", "dpo", "kto", "retrieval"] {
        let out = run(&data, &["feedback", "export", "--format", format]);
        assert!(!out.status.success(), "{format}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("no rated answers to export as {format}")),
            "{err}"
        );
        assert!(out.stdout.is_empty());
    }

    // The question, rated down with a comment.
    let a1 = ask(&data, "How long is the Kestrel Bridge?");
    let id1 = a1["answer_id"].as_str().unwrap().to_string();
    assert!(id1.starts_with("a-"), "{a1:#}");
    let cited: Vec<u64> = a1["citations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["n"].as_u64().unwrap())
        .collect();
    assert!(!cited.is_empty(), "{a1:#}");
    let mut c = cairn(&data);
    c.args([
        "feedback",
        "--last",
        "--down",
        "--comment",
        "too long",
        "--json",
    ]);
    let f = json(&ok(c).stdout);
    assert_eq!(f["answer_id"], id1.as_str());
    assert_eq!(f["rating"], "down");

    // Only up-rated answers make sft examples; one down is not a dpo pair.
    let out = run(&data, &["feedback", "export", "--format", "sft"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no thumbs-up answers to export as sft; 0 of 1 rated answers are up"),
        "{err}"
    );
    let out = run(&data, &["feedback", "export", "--format", "dpo"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("0 of 1 rated questions"), "{err}");

    // The same question again, rated up: a --helpful number the answer
    // does not cite is refused, naming it; one it cites is kept.
    let a2 = ask(&data, "How long is the Kestrel Bridge?");
    let id2 = a2["answer_id"].as_str().unwrap().to_string();
    assert_ne!(id1, id2);
    let out = run(&data, &["feedback", "--last", "--up", "--helpful", "1,42"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--helpful 42") && err.contains("[1]"), "{err}");
    let first = cited[0].to_string();
    let mut c = cairn(&data);
    c.args([
        "feedback",
        "--answer",
        &id2,
        "--up",
        "--helpful",
        &first,
        "--json",
    ]);
    let f = json(&ok(c).stdout);
    assert_eq!(f["answer_id"], id2.as_str());
    assert_eq!(f["helpful_citations"], serde_json::json!([cited[0]]));
    let out = run(&data, &["feedback", "--answer", "a-nope", "--up"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("a-nope"));

    // list: newest first, with the comment; --limit.
    let l = json(stdout(&data, &["feedback", "list", "--json"]).as_bytes());
    let l = l.as_array().unwrap();
    assert_eq!(l.len(), 2);
    assert_eq!(l[0]["answer_id"], id2.as_str());
    assert_eq!(l[0]["rating"], "up");
    assert_eq!(l[1]["answer_id"], id1.as_str());
    assert_eq!(l[1]["comment"], "too long");
    assert_eq!(l[1]["question"], "How long is the Kestrel Bridge?");
    let l = json(stdout(&data, &["feedback", "list", "--json", "--limit", "1"]).as_bytes());
    assert_eq!(l.as_array().unwrap().len(), 1);
    let text = stdout(&data, &["feedback", "list"]);
    assert!(text.contains(&id1) && text.contains("too long"), "{text}");

    // stats.
    let s = json(stdout(&data, &["feedback", "stats", "--json"]).as_bytes());
    assert_eq!(s["ratings"], 2);
    assert_eq!(s["answers_rated"], 2);
    assert_eq!(s["up"], 1);
    assert_eq!(s["down"], 1);
    assert_eq!(s["with_comment"], 1);
    assert_eq!(s["with_helpful"], 1);
    assert_eq!(s["helpful_citations"], 1);
    let models = s["per_model"].as_object().unwrap();
    assert_eq!(models.len(), 1, "{s:#}");
    let m = models.values().next().unwrap();
    assert_eq!((m["up"].as_u64(), m["down"].as_u64()), (Some(1), Some(1)));

    // sft: the up answer, its prompt the question with its cited passages.
    let sft = jsonl(&stdout(&data, &["feedback", "export", "--format", "sft"]));
    assert_eq!(sft.len(), 1);
    assert_eq!(keys(&sft[0]), ["completion", "prompt"]);
    assert_eq!(sft[0]["completion"], a2["answer"]);
    let prompt = sft[0]["prompt"].as_str().unwrap();
    assert!(
        prompt.ends_with("Question: How long is the Kestrel Bridge?"),
        "{prompt}"
    );
    assert!(prompt.contains(&format!("[{first}] ")), "{prompt}");
    assert!(prompt.contains("412 metres"), "{prompt}");

    // kto: both, labelled.
    let kto = jsonl(&stdout(&data, &["feedback", "export", "--format", "kto"]));
    assert_eq!(kto.len(), 2);
    for k in &kto {
        assert_eq!(keys(k), ["completion", "label", "prompt"]);
        assert!(k["prompt"].as_str().unwrap().contains("Kestrel"));
    }
    assert_eq!(kto.iter().filter(|k| k["label"] == true).count(), 1);
    assert_eq!(kto.iter().filter(|k| k["label"] == false).count(), 1);

    // dpo: one pair for the one question rated both ways.
    let dpo = jsonl(&stdout(&data, &["feedback", "export", "--format", "dpo"]));
    assert_eq!(dpo.len(), 1);
    assert_eq!(keys(&dpo[0]), ["chosen", "prompt", "rejected"]);
    assert_eq!(dpo[0]["chosen"], a2["answer"]);
    assert_eq!(dpo[0]["rejected"], a1["answer"]);

    // retrieval, to a file: the helpful passage positive, retrieved but
    // uncited passages negative.
    let out_file = data.parent().unwrap().join("retrieval.jsonl");
    let mut c = cairn(&data);
    c.args(["feedback", "export", "--format", "retrieval", "--out"]);
    c.arg(&out_file);
    let o = ok(c);
    assert!(o.stdout.is_empty());
    let r = jsonl(&std::fs::read_to_string(&out_file).unwrap());
    assert_eq!(r.len(), 1);
    assert_eq!(keys(&r[0]), ["negatives", "positive", "query"]);
    assert_eq!(r[0]["query"], "How long is the Kestrel Bridge?");
    let positive = r[0]["positive"].as_array().unwrap();
    assert_eq!(positive.len(), 1);
    assert!(
        positive[0].as_str().unwrap().contains("412 metres"),
        "{r:#?}"
    );
    // A citation names its passage by document and span.
    let citations = a2["citations"].as_array().unwrap();
    let is_cited = |h: &Value| {
        citations
            .iter()
            .any(|c| c["doc"] == h["doc"] && c["start"] == h["start"] && c["end"] == h["end"])
    };
    let expected_negatives: Vec<&Value> = a2["retrieved"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| !is_cited(h))
        .map(|h| &h["text"])
        .collect();
    let negatives: Vec<&Value> = r[0]["negatives"].as_array().unwrap().iter().collect();
    assert_eq!(negatives, expected_negatives);
    assert!(!negatives.contains(&&positive[0]));
}

#[test]
fn chat_turns_are_logged_and_the_last_is_rated() {
    use std::io::Write;
    use std::process::Stdio;
    let (_tmp, data) = collection();
    let mut c = cairn(&data);
    c.args(["chat", "--extractive", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"How long is the Kestrel Bridge?\nWhen is the Orrin lamp lit?\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let turns = jsonl(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(turns.len(), 2);
    let id = turns[1]["answer_id"].as_str().unwrap();
    let mut c = cairn(&data);
    c.args(["feedback", "--last", "--up", "--json"]);
    let f = json(&ok(c).stdout);
    assert_eq!(f["answer_id"], id);
    assert_eq!(f["question"], "When is the Orrin lamp lit?");
}

/// `cairn train data` on four tutorial pages with the real embedder and
/// generator: every kept question finds its passage again (checked here by
/// a separate `cairn search`), negatives come from other documents, no
/// document is in both parts, the held-out questions run in `cairn eval`,
/// the same seed writes the same files, and bad options are named.
#[test]
fn training_data_from_the_collection_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    cairn_testkit::copy_pages(
        &[
            "tutorial/venv.html",
            "tutorial/errors.html",
            "tutorial/inputoutput.html",
            "tutorial/modules.html",
        ],
        &docs,
    );
    let data = tmp.path().join("data");

    // Nothing ingested yet: said so.
    let out = run(&data, &["train", "data", "--out", "x", "--no-generate"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not exist (ingest into it first)"),
        "{err}"
    );

    let mut c = cairn(&data);
    c.arg("ingest").arg(&docs);
    ok(c);

    let out_dir = tmp.path().join("synth");
    let out_arg = out_dir.to_str().unwrap();
    let args = [
        "train",
        "data",
        "--out",
        out_arg,
        "--no-generate",
        "--seed",
        "3",
        "--json",
    ];
    let report = json(stdout(&data, &args).as_bytes());
    let read = |name: &str| std::fs::read_to_string(out_dir.join(name)).unwrap();
    let train = jsonl(&read("train.jsonl"));
    let held = jsonl(&read("held_out.jsonl"));
    let qa = jsonl(&read("held_out.qa.jsonl"));
    assert_eq!(report["documents"], 4, "{report:#}");
    assert_eq!(report["held_out_documents"], 1, "{report:#}");
    assert_eq!(
        report["sampled"], 8,
        "two passages of each page: {report:#}"
    );
    assert_eq!(report["train"], train.len(), "{report:#}");
    assert_eq!(report["held_out"], held.len(), "{report:#}");
    assert!(train.len() >= 2 && !held.is_empty(), "{report:#}");
    let questions = report["heading_questions"].as_u64().unwrap();
    let dropped = ["duplicates", "not_found_again", "no_negatives"]
        .iter()
        .map(|k| report[k].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(report["kept"].as_u64().unwrap() + dropped, questions);

    // By document: no page in both parts.
    let docs_of = |v: &[Value]| -> std::collections::BTreeSet<String> {
        v.iter()
            .map(|e| e["doc"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(docs_of(&train).is_disjoint(&docs_of(&held)));
    for e in train.iter().chain(&held) {
        assert_eq!(e["kind"], "heading");
        assert_eq!(e["positive"].as_array().unwrap().len(), 1);
        let negatives = e["negatives"].as_array().unwrap();
        assert!(!negatives.is_empty() && negatives.len() <= 4, "{e:#}");
        for d in e["negative_docs"].as_array().unwrap() {
            assert_ne!(
                d, &e["doc"],
                "a negative from the positive's own page: {e:#}"
            );
        }
        let rank = e["rank"].as_u64().unwrap();
        assert!((1..=10).contains(&rank), "{e:#}");
    }
    // The round trip, seen from another process: the question's search has
    // the positive passage (same chunk, same text) within the top 10.
    for e in train.iter().chain(&held).take(3) {
        let hits = json(
            stdout(
                &data,
                &["search", e["query"].as_str().unwrap(), "-k", "10", "--json"],
            )
            .as_bytes(),
        );
        let hit = hits["hits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["chunk"] == e["chunk"])
            .unwrap_or_else(|| panic!("{e:#} not found again: {hits:#}"));
        assert_eq!(hit["text"], e["positive"][0]);
    }
    // The held-out questions are a question set for `cairn eval`.
    assert_eq!(qa.len(), held.len());
    for (q, e) in qa.iter().zip(&held) {
        assert_eq!(q["question"], e["query"]);
        assert_eq!(q["gold"][0], e["doc"]);
    }
    let eval = json(
        stdout(
            &data,
            &[
                "eval",
                "--qa",
                out_dir.join("held_out.qa.jsonl").to_str().unwrap(),
                "--json",
            ],
        )
        .as_bytes(),
    );
    assert_eq!(eval["n"], held.len(), "{eval:#}");
    assert!(eval["hit@5"].as_f64().unwrap() > 0.0, "{eval:#}");

    // The same seed, the same files.
    let before = read("train.jsonl") + &read("held_out.jsonl");
    stdout(&data, &args);
    assert_eq!(read("train.jsonl") + &read("held_out.jsonl"), before);

    // With the generator (the default model): one more question per passage.
    let gen_dir = tmp.path().join("generated");
    let report = json(
        stdout(
            &data,
            &[
                "train",
                "data",
                "--out",
                gen_dir.to_str().unwrap(),
                "--per-doc",
                "1",
                "--json",
            ],
        )
        .as_bytes(),
    );
    assert_eq!(report["sampled"], 4, "{report:#}");
    assert_eq!(
        report["generated_questions"].as_u64().unwrap()
            + report["generated_unusable"].as_u64().unwrap(),
        4,
        "{report:#}"
    );
    assert!(
        report["generator"].as_str().unwrap().contains("SmolLM2"),
        "{report:#}"
    );
    let all: Vec<Value> = ["train.jsonl", "held_out.jsonl"]
        .iter()
        .flat_map(|f| jsonl(&std::fs::read_to_string(gen_dir.join(f)).unwrap()))
        .collect();
    let generated: Vec<&Value> = all.iter().filter(|e| e["kind"] == "generated").collect();
    assert_eq!(
        generated.len() as u64,
        report["kept_generated"].as_u64().unwrap()
    );
    assert!(
        !generated.is_empty(),
        "no generated question kept: {report:#}"
    );
    for e in generated {
        let q = e["query"].as_str().unwrap();
        assert!(q.ends_with('?') && q.split_whitespace().count() >= 4, "{q}");
    }

    // A query adapter trained on the heading questions: checked on the
    // held-out part and installed only if held-out hit@5 did not get worse.
    let dense = |q: &str| -> Vec<(u64, f64)> {
        let v = json(
            stdout(
                &data,
                &["search", q, "--mode", "dense", "-k", "5", "--json"],
            )
            .as_bytes(),
        );
        v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["chunk"].as_u64().unwrap(), h["score"].as_f64().unwrap()))
            .collect()
    };
    let probe = "How do I create a virtual environment?";
    let plain = dense(probe);
    let adapter_file = data
        .join("collections")
        .join("default")
        .join("adapter.json");
    let r = json(stdout(&data, &["train", "adapter", "--data", out_arg, "--json"]).as_bytes());
    // A fifth of the training pages picks the epoch; the rest trains.
    assert_eq!(
        r["train_examples"].as_u64().unwrap() + r["validation_examples"].as_u64().unwrap(),
        train.len() as u64,
        "{r:#}"
    );
    assert!(r["epochs_run"].as_u64().unwrap() >= 1, "{r:#}");
    assert_eq!(r["held_out_examples"], held.len(), "{r:#}");
    assert!(
        r["loss_end"].as_f64().unwrap() < r["loss_start"].as_f64().unwrap(),
        "{r:#}"
    );
    let worse = r["adapted_hit5"].as_f64().unwrap() < r["baseline_hit5"].as_f64().unwrap();
    assert_eq!(r["worse"], worse, "{r:#}");
    let untrained = r["best_epoch"] == 0;
    assert_eq!(r["untrained"], untrained, "{r:#}");
    assert_eq!(r["installed"], !worse && !untrained, "{r:#}");
    assert_eq!(adapter_file.is_file(), !worse && !untrained, "{r:#}");
    // Installed (--force): every search maps its query, so dense scores move;
    // removed: they are what they were, exactly.
    let r = json(
        stdout(
            &data,
            &["train", "adapter", "--data", out_arg, "--force", "--json"],
        )
        .as_bytes(),
    );
    assert_eq!(r["installed"], true, "{r:#}");
    assert!(adapter_file.is_file());
    let adapted = dense(probe);
    assert_ne!(adapted, plain, "the installed adapter changed nothing");
    // One trained for another model is refused, naming the file.
    let mut a: Value = json(&std::fs::read(&adapter_file).unwrap());
    a["embedding_model"] = "some-other-model".into();
    std::fs::write(&adapter_file, serde_json::to_vec(&a).unwrap()).unwrap();
    let out = run(&data, &["search", probe, "--json"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("adapter.json") && err.contains("some-other-model"),
        "{err}"
    );
    let r = json(stdout(&data, &["train", "adapter", "--remove", "--json"]).as_bytes());
    assert_eq!(r["removed"], true);
    assert!(!adapter_file.exists());
    assert_eq!(dense(probe), plain);

    // (The binary's `train` feature: scripts/test.sh builds with it.)
    #[cfg(feature = "train")]
    reranker_from_the_same_collection(&data, tmp.path(), probe);

    // Bad options and places are named.
    for (args, want) in [
        (vec!["--held-out", "1"], "--held-out"),
        (vec!["--per-doc", "0"], "--per-doc"),
        (vec!["--negatives", "0"], "--negatives"),
    ] {
        let mut a = vec!["train", "data", "--out", out_arg, "--no-generate"];
        a.extend(args);
        let out = run(&data, &a);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{want}: {err}");
    }
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let out = run(
        &data,
        &[
            "train",
            "data",
            "--out",
            file.to_str().unwrap(),
            "--no-generate",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("a-file") && err.contains("not a folder"),
        "{err}"
    );
}

/// `cairn train reranker` on `cairn train data`'s heading questions (short
/// pairs: a quick run): checked on the held-out part and installed only if
/// held-out hit@1 did not get worse; then `--rerank` ranks with it.
#[cfg(feature = "train")]
fn reranker_from_the_same_collection(data: &Path, tmp: &Path, probe: &str) {
    let out_dir = tmp.join("synth-reranker");
    let out_arg = out_dir.to_str().unwrap();
    stdout(
        data,
        &[
            "train",
            "data",
            "--out",
            out_arg,
            "--no-generate",
            "--per-doc",
            "6",
            "--seed",
            "3",
        ],
    );
    let lines = |f: &str| jsonl(&std::fs::read_to_string(out_dir.join(f)).unwrap()).len();
    let (train, held) = (lines("train.jsonl"), lines("held_out.jsonl"));
    // Too little to train on: said so, with how much is needed.
    let out = run(
        data,
        &[
            "train",
            "reranker",
            "--data",
            out_arg,
            "--max-questions",
            "2",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("too few training pairs") && err.contains("at least 16"),
        "{err}"
    );
    let reranker_dir = data.join("collections").join("default").join("reranker");
    let base_args = [
        "train",
        "reranker",
        "--data",
        out_arg,
        "--max-tokens",
        "64",
        "--batch-size",
        "8",
        "--json",
    ];
    let r = json(stdout(data, &base_args).as_bytes());
    assert_eq!(r["train_questions"], train, "{r:#}");
    assert_eq!(
        r["validation"],
        Value::Array(vec![]),
        "one epoch: no validation split"
    );
    assert!(r["pairs_per_second"].as_f64().unwrap() > 0.0, "{r:#}");
    assert_eq!(r["held_out"]["fused"]["questions"], held, "{r:#}");
    let hit1 = |side: &str| r["held_out"][side]["hit1"].as_f64().unwrap();
    let worse = hit1("reranked") < hit1("fused");
    assert_eq!(r["worse"], worse, "{r:#}");
    assert_eq!(r["installed"], !worse, "{r:#}");
    assert_eq!(reranker_dir.is_dir(), !worse, "{r:#}");
    if worse {
        let mut forced = base_args.to_vec();
        forced.push("--force");
        let r = json(stdout(data, &forced).as_bytes());
        assert_eq!(r["installed"], true, "{r:#}");
    }
    for f in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "onnx/model.onnx",
        "training.json",
    ] {
        assert!(reranker_dir.join(f).is_file(), "{f} not installed");
    }
    let reranked = |q: &str| -> Vec<(String, f64)> {
        let v = json(stdout(data, &["search", q, "--rerank", "-k", "5", "--json"]).as_bytes());
        v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["text"].as_str().unwrap().to_string(),
                    h["score"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    // The scores `--rerank` gives are the installed model's: the logistic
    // of its logit for (question, passage), best first.
    let ce = cairn_models::CrossEncoder::load(
        &reranker_dir,
        &cairn_models::OnnxOptions {
            onnx_file: None,
            dylib: Some(cairn_testkit::onnxruntime_lib()),
            threads: 1,
            batch_size: 8,
        },
    )
    .unwrap();
    let with_reranker = reranked(probe);
    assert_eq!(with_reranker.len(), 5);
    let pairs: Vec<(&str, &str)> = with_reranker
        .iter()
        .map(|(t, _)| (probe, t.as_str()))
        .collect();
    let logits = ce.scores(&pairs).unwrap();
    for ((_, got), logit) in with_reranker.iter().zip(&logits) {
        let want = 1.0 / (1.0 + (-(*logit as f64)).exp());
        assert!(
            (got - want).abs() < 1e-4,
            "{with_reranker:?} vs logits {logits:?}"
        );
    }
    assert!(
        with_reranker.windows(2).all(|w| w[0].1 >= w[1].1),
        "{with_reranker:?}"
    );
    let r = json(stdout(data, &["train", "reranker", "--remove", "--json"]).as_bytes());
    assert_eq!(r["removed"], true);
    assert!(!reranker_dir.exists());
    assert_ne!(
        reranked(probe),
        with_reranker,
        "removed, yet the same scores"
    );
}
