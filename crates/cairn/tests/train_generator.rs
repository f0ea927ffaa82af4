//! `cairn train generator` as users run it, in separate processes with the
//! real models: cited answers built from a small collection train a LoRA
//! adapter on SmolLM2, which is installed in the collection and applied by
//! llama.cpp to the next answers; `--export` writes the same examples for
//! other trainers; `cairn improve --only generator` rejects an adapter
//! trained badly on purpose, promotes a good one and rolls it back; one
//! trained for another model, or a damaged file, is left out with a
//! warning; `--remove` uninstalls it.

#![cfg(feature = "train")]

mod common;
use common::{cairn, json, ok, run, stdout};
use std::path::Path;

fn ask(data: &Path) -> (serde_json::Value, String) {
    let mut c = cairn(data);
    c.args([
        "ask",
        "How do I create a virtual environment?",
        "--max-tokens",
        "24",
        "--no-check",
        "--json",
    ]);
    let out = ok(c);
    (
        json(&out.stdout),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_generator_adapter_trains_installs_applies_and_uninstalls() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    cairn_testkit::copy_pages(
        &[
            "tutorial/venv.html",
            "tutorial/modules.html",
            "tutorial/errors.html",
            "tutorial/inputoutput.html",
            "tutorial/controlflow.html",
            "tutorial/datastructures.html",
            "tutorial/classes.html",
            "tutorial/stdlib.html",
        ],
        &docs,
    );
    let data = tmp.path().join("data");
    let mut c = cairn(&data);
    c.arg("ingest").arg(&docs);
    ok(c);
    let synth = tmp.path().join("synth");
    let synth_s = synth.to_str().unwrap();

    // Missing data is named.
    let out = run(&data, &["train", "generator", "--data", synth_s]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("train.jsonl"), "{err}");

    stdout(
        &data,
        &[
            "train",
            "data",
            "--no-generate",
            "--per-doc",
            "12",
            "--held-out",
            "0.3",
            "--seed",
            "1",
            "--out",
            synth_s,
        ],
    );
    // The examples both runs below build.
    let examples = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "train",
            "generator",
            "--data",
            synth_s,
            "--max-examples",
            "10",
            "--passages",
            "3",
            "--within",
            "10",
            "--json",
        ];
        args.extend(extra);
        json(stdout(&data, &args).as_bytes())
    };
    // The examples, exported for other trainers: the same ones training
    // uses (checked below against its token count).
    let exported = tmp.path().join("examples.jsonl");
    let export = examples(&["--export", exported.to_str().unwrap()]);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&exported)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let split = |name: &str| -> Vec<&serde_json::Value> {
        lines.iter().filter(|l| l["split"] == name).collect()
    };
    assert_eq!(
        split("train").len() as u64,
        export["train"].as_u64().unwrap()
    );
    assert_eq!(
        split("held_out").len() as u64,
        export["held_out"].as_u64().unwrap()
    );
    assert_eq!(
        split("train").len() + split("held_out").len(),
        lines.len(),
        "{export}"
    );
    let mut exported_tokens = 0;
    for l in split("train") {
        let ids = l["input_ids"].as_array().unwrap();
        let start = l["answer_start"].as_u64().unwrap() as usize;
        assert!(0 < start && start < ids.len(), "{l}");
        exported_tokens += ids.len();
        // The prompt is the chat template's, the completion an answer with
        // a marker, ending the turn.
        let (prompt, completion) = (
            l["prompt"].as_str().unwrap(),
            l["completion"].as_str().unwrap(),
        );
        assert!(prompt.contains("<|im_start|>assistant"), "{prompt}");
        assert!(completion.ends_with("<|im_end|>"), "{completion}");
        assert!(completion.contains("]."), "{completion}");
    }

    // Few examples and two adapted blocks keep it quick;
    // --force installs it whatever the held-out loss did.
    let report = examples(&["--layers", "2", "--epochs", "1", "--force"]);
    let train = report["examples"]["train"].as_u64().unwrap();
    assert!(train >= 8, "{report}");
    assert!(report["examples"]["held_out"].as_u64().unwrap() >= 1);
    assert_eq!(report["figures"]["frozen_blocks"], 28);
    assert_eq!(
        report["figures"]["validation_loss"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(report["figures"]["tokens_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(
        report["figures"]["train_tokens"].as_u64().unwrap() as usize,
        exported_tokens
    );
    assert_eq!(report["installed"], true);
    let dir = data.join("collections").join("default").join("generator");
    let lora = dir.join("lora.gguf");
    assert!(lora.is_file());
    // What it learnt from: questions with answers that cite their source.
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let sample = saved["sample"].as_array().unwrap();
    assert!(!sample.is_empty());
    for e in sample {
        let a = e["answer"].as_str().unwrap();
        // Each sentence ends with one marker, of a source of the prompt
        // (3 passages).
        assert!(a.ends_with("]."), "{a}");
        let markers: Vec<&str> = a.split(" [").skip(1).collect();
        assert!(!markers.is_empty(), "{a}");
        for m in markers {
            let n: usize = m[..m.find(']').unwrap()].parse().unwrap();
            assert!((1..=3).contains(&n), "{a}");
        }
    }

    // The next answer is generated with it.
    let (a, _) = ask(&data);
    assert_eq!(a["adapter"].as_str(), Some(lora.to_str().unwrap()), "{a}");

    let good = std::fs::read(&lora).unwrap();
    improve_rounds(&data, tmp.path(), &lora, &good);

    // One trained for another model is left out, with a warning.
    cairn_generate::gguf::write_minimal(
        &lora,
        &[
            ("general.type", "adapter"),
            ("general.architecture", "llama"),
            ("cairn.base_model", "another-model"),
        ],
    )
    .unwrap();
    let (a, err) = ask(&data);
    assert!(a.get("adapter").is_none(), "{a}");
    assert!(err.contains("trained for `another-model`"), "{err}");
    // A damaged one is an error naming the file.
    std::fs::write(&lora, &good[..good.len() / 2]).unwrap();
    let out = run(
        &data,
        &[
            "ask",
            "How do I create a virtual environment?",
            "--max-tokens",
            "8",
            "--no-check",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lora.gguf") && err.contains("corrupt"),
        "{err}"
    );

    // --remove uninstalls it.
    std::fs::write(&lora, &good).unwrap();
    let out = stdout(&data, &["train", "generator", "--remove"]);
    assert!(out.contains("removed the generator adapter"), "{out}");
    assert!(!dir.exists());
    let (a, _) = ask(&data);
    assert!(a.get("adapter").is_none(), "{a}");
}

/// `cairn improve --only generator`: an adapter trained with a step size a
/// hundred times too large is rejected and what was installed stays; a
/// round that trains properly (and accepts any gain) is promoted, listed
/// by `history`, and rolled back to the adapter that was there before.
fn improve_rounds(data: &Path, tmp: &Path, lora: &Path, installed: &[u8]) {
    // Short answers keep the held-out answering quick.
    let config = tmp.join("cairn.toml");
    std::fs::write(&config, "[generate]\nmax_tokens = 48\n").unwrap();
    let round = |extra: &[&str]| -> serde_json::Value {
        let mut c = cairn(data);
        c.arg("--config").arg(&config).args([
            "improve",
            "--only",
            "generator",
            "--no-generate",
            "--per-doc",
            "16",
            "--held-out",
            "0.4",
            "--seed",
            "1",
            "--generator-examples",
            "8",
            "--generator-within",
            "10",
            "--generator-layers",
            "2",
            "--generator-epochs",
            "1",
            "--json",
        ]);
        c.args(extra);
        json(&ok(c).stdout)
    };
    let bad = round(&["--generator-learning-rate", "0.05"]);
    let d = &bad["decisions"][0];
    assert_eq!(d["artefact"], "generator", "{bad}");
    assert_eq!(d["promoted"], false, "{bad}");
    assert_eq!(d["metric"], "cited");
    // A hundred times the step size makes the held-out loss rise.
    let reason = d["reason"].as_str().unwrap();
    assert!(reason.contains("loss did not fall"), "{reason}");
    // Its held-out answers were generated, with what was installed and
    // with the candidate.
    let answers = &d["report"]["held_out_answers"];
    let n = answers["questions"].as_array().unwrap().len();
    assert!(n >= 1, "{bad}");
    assert_eq!(answers["before"]["answers"].as_array().unwrap().len(), n);
    assert_eq!(answers["after"]["answers"].as_array().unwrap().len(), n);
    assert_eq!(
        std::fs::read(lora).unwrap(),
        installed,
        "a rejected adapter was installed"
    );

    let good = round(&["--min-gain", "-1"]);
    let d = &good["decisions"][0];
    assert_eq!(d["promoted"], true, "{good}");
    let promoted = std::fs::read(lora).unwrap();
    assert_ne!(promoted, installed);
    let history = stdout(data, &["improve", "history"]);
    assert!(history.contains("generator"), "{history}");
    assert!(history.contains("promoted"), "{history}");
    stdout(data, &["improve", "rollback"]);
    assert_eq!(
        std::fs::read(lora).unwrap(),
        installed,
        "the rollback did not restore it"
    );
}
