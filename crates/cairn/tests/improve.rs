//! `cairn improve` as users run it, in separate processes on the real
//! embedder: a round writes data (synthetic questions and an up-rated
//! answer), trains, and promotes or rejects by its held-out figures; the
//! rounds are listed; rounds killed with SIGKILL at a failpoint leave the
//! installed artefacts as they were (or can be rolled back) and are
//! recorded as interrupted; rollbacks undo the newest promotion first,
//! also under a running server, which picks the change up at its next
//! query.

mod common;
use common::server::Server;
use common::{cairn, json, ok, run, scores, stdout};
use serde_json::Value;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;

/// Run `args`, which must fail, and its standard error.
fn fails(data: &Path, args: &[&str]) -> String {
    let out = run(data, args);
    assert!(!out.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Run a round with `CAIRN_FAILPOINT=point`: it must die of SIGKILL there.
fn killed_at(data: &Path, args: &[&str], point: &str) {
    let mut c = cairn(data);
    c.args(args).env("CAIRN_FAILPOINT", point);
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(9), "not killed: {err}");
    assert!(
        err.contains(&format!("failpoint {point}@1 reached: SIGKILL")),
        "killed elsewhere than {point}: {err}"
    );
}

/// A round of the adapter alone on heading questions (no generator).
fn adapter_round(seed: &str, min_gain: &str) -> Vec<String> {
    [
        "improve",
        "--only",
        "adapter",
        "--no-generate",
        "--per-doc",
        "6",
        "--seed",
        seed,
        "--min-gain",
        min_gain,
        "--json",
    ]
    .map(String::from)
    .to_vec()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The same scores, but for the last digits (the server writes f32s, the
/// CLI their f64 values).
fn assert_close(a: &[f64], b: &[f64]) {
    assert!(
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6),
        "{a:?} vs {b:?}"
    );
}

fn history(data: &Path) -> Value {
    json(stdout(data, &["improve", "history", "--json"]).as_bytes())
}

/// The events of the history as (event, round) pairs.
fn events(data: &Path) -> Vec<(String, u64)> {
    history(data)["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_string(),
                e["round"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn rounds_promote_reject_survive_kills_and_roll_back() {
    let tmp = tempfile::tempdir().unwrap();
    // The tutorial's 17 pages: enough questions for the adapter to learn
    // (on 4 pages no epoch lowers its validation loss).
    let docs = cairn_testkit::python_docs().join("tutorial");
    let data = tmp.path().join("data");
    let err = fails(&data, &["improve", "--no-generate"]);
    assert!(
        err.contains("does not exist (ingest into it first)"),
        "{err}"
    );
    let mut c = cairn(&data);
    c.arg("ingest").arg(&docs);
    ok(c);
    let dir = data.join("collections").join("default");
    let adapter_file = dir.join("adapter.json");

    // Nothing yet: said so.
    let h = stdout(&data, &["improve", "history"]);
    assert!(h.contains("has had no `cairn improve` round"), "{h}");
    let err = fails(&data, &["improve", "rollback"]);
    assert!(err.contains("nothing to roll back"), "{err}");
    // Bad options are named, and no round is recorded for them.
    for (args, want) in [
        (vec!["--held-out", "0"], "--held-out"),
        (vec!["--min-gain", "2"], "--min-gain"),
        (vec!["--per-doc", "0"], "--per-doc"),
        (vec!["--only", "critic"], "not an artefact"),
    ] {
        let mut a = vec!["improve", "--no-generate"];
        a.extend(args);
        let err = fails(&data, &a);
        assert!(err.contains(want), "{want}: {err}");
    }
    assert!(history(&data)["events"].as_array().unwrap().is_empty());

    // A rated answer joins the round's data.
    let probe = "How do I create a virtual environment?";
    let mut c = cairn(&data);
    c.args(["ask", probe, "--extractive", "--json"]);
    let answer = json(&ok(c).stdout);
    assert!(!answer["citations"].as_array().unwrap().is_empty());
    stdout(&data, &["feedback", "--last", "--up"]);
    let dense = |data: &Path| -> Vec<f64> {
        scores(&json(
            stdout(data, &["search", probe, "--mode", "dense", "--json"]).as_bytes(),
        ))
    };
    let plain = dense(&data);

    // Round 1 accepts any held-out change (--min-gain -1): the adapter is
    // promoted unless training left it the identity.
    let r1 = json(stdout(&data, &strs(&adapter_round("0", "-1"))).as_bytes());
    assert_eq!(
        (r1["event"].as_str(), r1["round"].as_u64()),
        (Some("round"), Some(1))
    );
    let d = &r1["data"];
    assert_eq!(d["feedback"], 1, "{r1:#}");
    assert!(d["synthetic"].as_u64().unwrap() >= 4, "{r1:#}");
    let lines = |f: &str| {
        std::fs::read_to_string(dir.join("improve/rounds/0001/data").join(f))
            .unwrap()
            .lines()
            .count() as u64
    };
    assert_eq!(d["train"], lines("train.jsonl"), "{r1:#}");
    assert_eq!(d["held_out"], lines("held_out.jsonl"), "{r1:#}");
    assert_eq!(d["held_out"], lines("held_out.qa.jsonl"), "{r1:#}");
    // (in the part its cited page's document falls in)
    let rated: Vec<Value> = ["train.jsonl", "held_out.jsonl"]
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(dir.join("improve/rounds/0001/data").join(f))
                .unwrap()
                .lines()
                .map(|l| json(l.as_bytes()))
                .collect::<Vec<_>>()
        })
        .filter(|e| e["kind"] == "feedback")
        .collect();
    assert_eq!(rated.len(), 1, "{r1:#}");
    assert_eq!(rated[0]["query"], probe);
    assert!(!rated[0]["negative_chunks"].as_array().unwrap().is_empty());
    let a1 = &r1["decisions"][0];
    assert_eq!(a1["artefact"], "adapter");
    assert_eq!(a1["metric"], "hit5");
    // Nothing installed before: the baseline is dense search without one.
    assert_eq!(a1["before"], a1["report"]["baseline_hit5"], "{a1:#}");
    assert_eq!(a1["after"], a1["report"]["adapted_hit5"], "{a1:#}");
    assert_eq!(a1["promoted"], true, "{a1:#}");
    let installed_1 = std::fs::read(&adapter_file).unwrap();
    // The round's held-out questions are a question set for `cairn eval`;
    // its run log records what the collection had learned.
    let qa = dir.join("improve/rounds/0001/data/held_out.qa.jsonl");
    let qa = qa.to_str().unwrap();
    let ev = json(stdout(&data, &["eval", "--qa", qa, "--json"]).as_bytes());
    assert_eq!(ev["n"], d["held_out"], "{ev:#}");
    let adapted = dense(&data);
    assert_ne!(adapted, plain, "the promoted adapter changed nothing");

    // Round 2 asks for a gain of 1 (from 0 to every question): rejected,
    // and the installed adapter is what it was, compared against.
    let r2 = json(stdout(&data, &strs(&adapter_round("0", "1"))).as_bytes());
    let a2 = &r2["decisions"][0];
    assert_eq!(
        (r2["round"].as_u64(), &a2["promoted"]),
        (Some(2), &Value::Bool(false)),
        "{r2:#}"
    );
    assert!(
        a2["reason"]
            .as_str()
            .unwrap()
            .contains("below the minimum gain +1.000"),
        "{a2:#}"
    );
    assert_eq!(a2["before"], a2["report"]["installed_hit5"], "{a2:#}");
    assert_eq!(std::fs::read(&adapter_file).unwrap(), installed_1);
    // The same data and options again: nothing new, nothing trained.
    let r3 = json(stdout(&data, &strs(&adapter_round("0", "1"))).as_bytes());
    assert_eq!(r3["round"], 3, "{r3:#}");
    assert_eq!(r3["decisions"], serde_json::json!([]), "{r3:#}");
    assert!(
        r3["skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("nothing new since round 2"),
        "{r3:#}"
    );
    assert_eq!(std::fs::read(&adapter_file).unwrap(), installed_1);
    let text = stdout(&data, &["improve", "history"]);
    for want in [
        "round 1 (",
        "round 2 (",
        "promoted",
        "rejected",
        "(1 from feedback)",
        "`cairn improve rollback` would undo round 1 (adapter)",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }

    // Killed after promoting, before recording (round 4, another seed: a
    // different adapter), and after training, before deciding (round 5).
    killed_at(&data, &strs(&adapter_round("1", "-1")), "improve.promoted");
    let installed_4 = std::fs::read(&adapter_file).unwrap();
    assert_ne!(installed_4, installed_1, "round 4 promoted nothing");
    killed_at(&data, &strs(&adapter_round("2", "-1")), "improve.trained");
    assert_eq!(
        std::fs::read(&adapter_file).unwrap(),
        installed_4,
        "a round killed before deciding changed the installed adapter"
    );
    // Round 5 recorded round 4 as interrupted, with the artefact it may
    // have promoted; round 5 itself is not recorded yet.
    let h = history(&data);
    assert_eq!(h["events"][3]["event"], "interrupted", "{h:#}");
    assert_eq!(h["events"][3]["round"], 4, "{h:#}");
    assert_eq!(
        h["unrecorded"],
        serde_json::json!([{"round": 5, "running": false}]),
        "{h:#}"
    );
    // Another round is refused while one runs (holds the lock).
    {
        let lock = std::fs::File::options()
            .write(true)
            .open(dir.join("improve/LOCK"))
            .unwrap();
        lock.try_lock().unwrap();
        let err = fails(&data, &strs(&adapter_round("0", "0")));
        assert!(err.contains("another `cairn improve` is running"), "{err}");
        let h = history(&data);
        assert_eq!(h["unrecorded"][0]["running"], true, "{h:#}");
    }

    // Rollbacks, under a running server: round 4 (interrupted after its
    // promotion) first, then round 1; the server's searches follow.
    let mut server = Server::start(&data, &[], &[]);
    let served = |s: &Server| -> Vec<f64> {
        let (st, v) = s.get(
            "/api/search?q=How%20do%20I%20create%20a%20virtual%20environment%3F&mode=dense&k=5",
        );
        assert_eq!(st, 200, "{v}");
        scores(&v)
    };
    let with_4 = served(&server);
    let err = fails(&data, &["improve", "rollback", "--round", "1"]);
    assert!(err.contains("roll back round 4 first"), "{err}");
    let err = fails(&data, &["improve", "rollback", "--round", "3"]);
    assert!(err.contains("round 3 has no promotion"), "{err}");
    let rb = json(stdout(&data, &["improve", "rollback", "--json"]).as_bytes());
    assert_eq!(
        (rb["event"].as_str(), rb["round"].as_u64()),
        (Some("rollback"), Some(4)),
        "{rb:#}"
    );
    assert_eq!(std::fs::read(&adapter_file).unwrap(), installed_1);
    let with_1 = served(&server);
    assert_ne!(
        with_1, with_4,
        "the server still searches with round 4's adapter"
    );
    assert_close(&with_1, &adapted[..with_1.len()]);
    // Round 1's adapter is back: its eval run log is resumed.
    stdout(&data, &["eval", "--qa", qa, "--json"]);
    let rb = json(stdout(&data, &["improve", "rollback", "--json"]).as_bytes());
    assert_eq!(rb["round"], 1, "{rb:#}");
    assert!(!adapter_file.exists());
    // Without it, the log made with it is not resumed.
    let err = fails(&data, &["eval", "--qa", qa, "--json"]);
    assert!(err.contains("other settings"), "{err}");
    assert_close(&served(&server), &plain[..5.min(plain.len())]);
    server.terminate();
    assert_eq!(dense(&data), plain);
    let err = fails(&data, &["improve", "rollback"]);
    assert!(err.contains("nothing to roll back"), "{err}");
    let pairs: Vec<(String, u64)> = [
        ("round", 1),
        ("round", 2),
        ("round", 3),
        ("interrupted", 4),
        ("interrupted", 5),
        ("rollback", 4),
        ("rollback", 1),
    ]
    .iter()
    .map(|(e, r)| (e.to_string(), *r))
    .collect();
    assert_eq!(events(&data), pairs);
    let h = history(&data);
    assert_eq!(
        h["events"][3]["backed_up"],
        serde_json::json!(["adapter"]),
        "{h:#}"
    );
    assert_eq!(h["events"][4]["backed_up"], serde_json::json!([]), "{h:#}");

    #[cfg(feature = "train")]
    reranker_round(&data, &dir, probe);
}

/// A round of the reranker alone (short pairs: a quick run), promoted
/// whatever its figures; `--rerank` then ranks with it, and a rollback
/// removes it (none was installed before).
#[cfg(feature = "train")]
fn reranker_round(data: &Path, dir: &Path, probe: &str) {
    let reranked = || -> Vec<f64> {
        scores(&json(
            stdout(data, &["search", probe, "--rerank", "-k", "5", "--json"]).as_bytes(),
        ))
    };
    let before = reranked();
    let r = json(
        stdout(
            data,
            &[
                "improve",
                "--only",
                "reranker",
                "--no-generate",
                "--per-doc",
                "6",
                "--reranker-max-tokens",
                "64",
                "--min-gain",
                "-1",
                "--json",
            ],
        )
        .as_bytes(),
    );
    assert_eq!(r["round"], 6, "{r:#}");
    let d = &r["decisions"][0];
    assert_eq!(
        (d["artefact"].as_str(), d["metric"].as_str()),
        (Some("reranker"), Some("hit1"))
    );
    assert_eq!(d["promoted"], true, "{d:#}");
    // Nothing installed before: the baseline is the fused order.
    assert_eq!(
        d["before"], d["report"]["held_out"]["fused"]["hit1"],
        "{d:#}"
    );
    assert_eq!(
        d["after"], d["report"]["held_out"]["reranked"]["hit1"],
        "{d:#}"
    );
    for f in ["model.safetensors", "onnx/model.onnx", "training.json"] {
        assert!(dir.join("reranker").join(f).is_file(), "{f} not installed");
    }
    assert!(
        !dir.join("improve/rounds/0006/candidate/reranker").exists(),
        "the promoted candidate was copied, not moved"
    );
    let with = reranked();
    assert_ne!(with, before, "--rerank does not use the promoted reranker");
    let rb = json(stdout(data, &["improve", "rollback", "--json"]).as_bytes());
    assert_eq!(rb["restored"], serde_json::json!(["reranker"]), "{rb:#}");
    assert!(!dir.join("reranker").exists());
    assert_eq!(reranked(), before);
}
