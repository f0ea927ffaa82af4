//! The `cairn` binary as users run it, in separate processes: the JSON
//! contracts, configuration layering, clear errors and permission problems.
//! (SIGKILL during ingest: `kill.rs`.)

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::ok;

fn cairn(data: &Path) -> Command {
    let mut c = common::cairn(data);
    c.env("CAIRN_CHUNK_MAX_TOKENS", "128")
        .current_dir(data.parent().unwrap());
    c
}

fn json(out: &Output) -> Value {
    common::json(&out.stdout)
}

fn corpus(dir: &Path, pages: &[&str]) -> PathBuf {
    let docs = dir.join("docs");
    cairn_testkit::copy_pages(pages, &docs);
    docs
}

#[test]
fn search_and_ingest_json_contracts() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let docs = corpus(tmp.path(), &["library/os.path.html", "library/venv.html"]);
    std::fs::write(docs.join("broken.pdf"), b"%PDF-1.7 nope").unwrap();
    let mut c = cairn(&data);
    c.args(["ingest", "--json"]).arg(&docs);
    let report = json(&ok(c));
    assert_eq!(report["added"], 2);
    assert_eq!(report["files_seen"], 3);
    assert_eq!(report["skipped"][0]["path"], "broken.pdf");
    assert!(report["skipped"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("PDF"));
    assert!(report["chunks_added"].as_u64().unwrap() > 10);

    for mode in ["dense", "bm25", "hybrid"] {
        let mut c = cairn(&data);
        c.args([
            "search",
            "how do I create a virtual environment?",
            "-k",
            "3",
            "--mode",
            mode,
            "--json",
        ]);
        let v = json(&ok(c));
        let hits = v["hits"].as_array().unwrap();
        assert_eq!(hits.len(), 3, "{mode}");
        for (i, h) in hits.iter().enumerate() {
            assert_eq!(h["rank"], i + 1);
            assert!(h["score"].is_f64());
            assert!(h["chunk"].is_u64());
            assert!(h["heading"].is_string());
            assert!(h["start"].as_u64().unwrap() < h["end"].as_u64().unwrap());
            assert!(!h["text"].as_str().unwrap().is_empty());
        }
        assert_eq!(hits[0]["doc"], "library/venv.html", "{mode}: {v:#}");
    }
    // Human output: rank, score, document, heading.
    let mut c = cairn(&data);
    c.args(["search", "os.path.join", "-k", "2"]);
    let text = String::from_utf8(ok(c).stdout).unwrap();
    assert!(
        text.starts_with(" 1. ") && text.contains("os.path.html"),
        "{text}"
    );
}

#[test]
fn config_file_env_and_flags_layer_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let docs = tmp.path().join("notes");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(
        docs.join("a.txt"),
        "Owls hunt at night using their excellent hearing.\n",
    )
    .unwrap();
    let cfg = tmp.path().join("cairn.toml");
    std::fs::write(&cfg, "collection = \"from-file\"\n[search]\ntop_k = 1\n").unwrap();

    let mut c = cairn(&data);
    c.arg("--config").arg(&cfg).arg("ingest").arg(&docs);
    ok(c);
    let mut c = cairn(&data);
    c.arg("--config")
        .arg(&cfg)
        .env("CAIRN_COLLECTION", "from-env")
        .arg("ingest")
        .arg(&docs);
    ok(c);
    let mut c = cairn(&data);
    c.arg("--config")
        .arg(&cfg)
        .env("CAIRN_COLLECTION", "from-env")
        .args(["--collection", "from-flag", "ingest"])
        .arg(&docs);
    ok(c);
    let mut c = cairn(&data);
    c.args(["collections", "--json"]);
    assert_eq!(
        json(&ok(c))["collections"],
        serde_json::json!(["from-env", "from-file", "from-flag"])
    );
    // top_k from the file applies when -k is not given.
    let mut c = cairn(&data);
    c.arg("--config")
        .arg(&cfg)
        .args(["search", "owls", "--json"]);
    assert_eq!(json(&ok(c))["hits"].as_array().unwrap().len(), 1);
    // A bad config value is named.
    std::fs::write(&cfg, "[index]\nquantization = \"f8\"\n").unwrap();
    let mut c = cairn(&data);
    c.arg("--config").arg(&cfg).args(["search", "owls"]);
    let out = c.output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("index.quantization"));
}

#[test]
fn missing_model_is_a_one_line_error_saying_how_to_get_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = cairn(&tmp.path().join("data"));
    c.env("CAIRN_MODELS_DIR", tmp.path().join("no-models"))
        .args(["search", "anything"]);
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("cairn models fetch"), "{err}");
}

#[test]
fn nothing_ingested_exits_non_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("empty.md"), b"").unwrap();
    let mut c = cairn(&tmp.path().join("data"));
    c.arg("ingest").arg(&docs);
    let out = c.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("empty.md: empty file"));
}

#[test]
fn unreadable_files_and_directories_are_skipped() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(docs.join("private")).unwrap();
    std::fs::write(
        docs.join("ok.txt"),
        "Readable notes about sourdough starters.\n",
    )
    .unwrap();
    std::fs::write(docs.join("secret.txt"), "nobody may read this\n").unwrap();
    std::fs::write(docs.join("private/inner.txt"), "nor this\n").unwrap();
    std::fs::set_permissions(
        docs.join("secret.txt"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    std::fs::set_permissions(docs.join("private"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let data = tmp.path().join("data");
    let mut c = cairn(&data);
    c.args(["ingest", "--json"]).arg(&docs);
    // root reads everything; drop the capabilities that let it, so permissions apply.
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    let out = if is_root {
        let mut s = Command::new("setpriv");
        s.args(["--bounding-set", "-dac_override,-dac_read_search", "--"])
            .arg(c.get_program())
            .args(c.get_args());
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => s.env(k, v),
                None => s.env_remove(k),
            };
        }
        s.output().unwrap()
    } else {
        c.output().unwrap()
    };
    std::fs::set_permissions(docs.join("private"), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = json(&out);
    assert_eq!(r["added"], 1, "{r:#}");
    let skipped = r["skipped"].to_string();
    assert!(
        skipped.contains("secret.txt") && skipped.contains("ermission denied"),
        "{skipped}"
    );
    assert!(skipped.contains("private"), "{skipped}");
}

#[test]
fn onnx_backend_ingests_and_searches_and_names_a_missing_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let docs = corpus(tmp.path(), &["library/os.path.html", "library/venv.html"]);
    let onnx = |c: &mut Command| {
        c.args([
            "--embed-backend",
            "onnx",
            "--embed-model",
            "all-MiniLM-L6-v2-int8",
        ]);
    };
    let mut c = cairn(&data);
    onnx(&mut c);
    c.args(["ingest", "--json"]).arg(&docs);
    let report = json(&ok(c));
    assert_eq!(report["added"], 2, "{report:#}");
    let mut c = cairn(&data);
    onnx(&mut c);
    c.args([
        "search",
        "how do I create a virtual environment?",
        "--mode",
        "dense",
        "--json",
    ]);
    let v = json(&ok(c));
    assert_eq!(v["hits"][0]["doc"], "library/venv.html", "{v:#}");
    let mut c = cairn(&data);
    onnx(&mut c);
    c.args(["status", "--json"]);
    let s = json(&ok(c));
    assert!(
        s.to_string().contains("all-MiniLM-L6-v2-int8"),
        "the collection records the int8 model: {s}"
    );

    // A runtime library that is not there is named, and nothing panics.
    let mut c = cairn(&tmp.path().join("other"));
    onnx(&mut c);
    c.env(
        "ORT_DYLIB_PATH",
        tmp.path().join("no-such-libonnxruntime.so"),
    );
    c.args(["search", "venv"]);
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-libonnxruntime.so") && !err.contains("panicked"),
        "{err}"
    );
    // An unknown backend names the field.
    let mut c = cairn(&data);
    c.args(["--embed-backend", "tensorflow", "search", "venv"]);
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("embed.backend"));
}

/// Every document format the loaders read, through the program's loader
/// processes (the documents travel back over their pipe) into search.
#[test]
fn office_book_notebook_and_mail_files_are_ingested_and_found() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    let formats = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cairn-ingest/tests/data/formats");
    let names = [
        "deck.pptx",
        "releases.xlsx",
        "debian.csv",
        "policy.odt",
        "tutorial.epub",
        "intervals.ipynb",
        "freeze.eml",
        "release-team.mbox",
    ];
    for n in names {
        std::fs::copy(formats.join(n), docs.join(n)).unwrap();
    }
    let mut c = cairn(&data);
    c.args(["ingest", "--json"]).arg(&docs);
    let report = json(&ok(c));
    assert_eq!(report["added"], names.len(), "{report:#}");
    for (query, doc, heading) in [
        (
            "the boy next door who breaks his toys",
            "deck.pptx",
            "Slide 2: How a release is named",
        ),
        (
            "when does the transition freeze start?",
            "freeze.eml",
            "Freeze dates for the next release \u{2014} draft",
        ),
        (
            "Security support lasts about three years",
            "releases.xlsx",
            "Notes",
        ),
        (
            "the gap before Sarge was the longest",
            "intervals.ipynb",
            "Release intervals > The longest gap",
        ),
    ] {
        let mut c = cairn(&data);
        c.args(["search", query, "-k", "1", "--json"]);
        let v = json(&ok(c));
        assert_eq!(v["hits"][0]["doc"], doc, "{query}: {v:#}");
        assert_eq!(v["hits"][0]["heading"], heading, "{query}: {v:#}");
    }
}

#[test]
fn scanned_pages_and_images_are_read_by_ocr_in_loader_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    let ocr = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cairn-ingest/tests/data/ocr");
    for n in ["mixed.pdf", "venv.png", "errors.jpg"] {
        std::fs::copy(ocr.join(n), docs.join(n)).unwrap();
    }
    // Loader processes (the default) with a tight address space, which
    // pdftoppm and tesseract inherit.
    let config = tmp.path().join("cairn.toml");
    std::fs::write(&config, "[ingest]\nloader_memory_mb = 512\n").unwrap();
    let data = tmp.path().join("data");
    let mut c = cairn(&data);
    c.arg("--config")
        .arg(&config)
        .args(["ingest", "--json"])
        .arg(&docs);
    let report = json(&ok(c));
    assert_eq!(report["added"], 3, "{report:#}");
    assert_eq!(report["skipped"], serde_json::json!([]), "{report:#}");
    assert_eq!(report["warnings"], serde_json::json!([]), "{report:#}");
    // "maintenance" is only on the PDF's scanned page; the images' words
    // are only in the images.
    for (query, doc, heading) in [
        ("easier maintenance", "mixed.pdf", "Page 2"),
        ("self-contained directory tree", "venv.png", "venv.png"),
        (
            "Syntax errors, also known as parsing errors",
            "errors.jpg",
            "errors.jpg",
        ),
    ] {
        let mut c = cairn(&data);
        c.args(["search", query, "-k", "1", "--mode", "bm25", "--json"]);
        let v = json(&ok(c));
        assert_eq!(v["hits"][0]["doc"], doc, "{query}: {v:#}");
        assert_eq!(v["hits"][0]["heading"], heading, "{query}: {v:#}");
        // A PDF passage carries its page; an image's has none.
        let page = (doc == "mixed.pdf").then_some(2);
        assert_eq!(v["hits"][0]["page"].as_u64(), page, "{query}: {v:#}");
    }
    // Text output names a PDF passage by its page.
    let mut c = cairn(&data);
    c.args(["search", "easier maintenance", "-k", "1", "--mode", "bm25"]);
    let out = String::from_utf8_lossy(&ok(c).stdout).into_owned();
    assert!(out.contains(" mixed.pdf, page 2\n"), "{out}");
    // So do an answer's citations (extractive: no generator needed).
    let mut c = cairn(&data);
    c.args([
        "ask",
        "Why split a longer program into several files?",
        "--extractive",
        "--mode",
        "bm25",
        "-k",
        "1",
        "--json",
    ]);
    let v = json(&ok(c));
    assert_eq!(v["citations"][0]["doc"], "mixed.pdf", "{v:#}");
    assert_eq!(v["citations"][0]["page"], 2, "{v:#}");

    // Without Tesseract: the images are skipped saying what to install, and
    // the PDF keeps its text pages with a warning naming the scanned one.
    let data = tmp.path().join("data-without");
    let mut c = cairn(&data);
    c.env("CAIRN_TESSERACT", "/nonexistent/tesseract")
        .arg("--config")
        .arg(&config)
        .args(["ingest", "--json"])
        .arg(&docs);
    let report = json(&ok(c));
    assert_eq!(report["added"], 1, "{report:#}");
    let skipped = report["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 2, "{report:#}");
    for s in skipped {
        let why = s["reason"].as_str().unwrap();
        assert!(
            why.starts_with("image not read: Tesseract (`/nonexistent/tesseract`) is not installed (apt install tesseract-ocr"),
            "{report:#}"
        );
    }
    assert_eq!(report["warnings"][0]["path"], "mixed.pdf", "{report:#}");
    let warning = report["warnings"][0]["reason"].as_str().unwrap();
    assert!(
        warning.starts_with("page 2 without a text layer not read by OCR")
            && warning.contains("apt install tesseract-ocr"),
        "{warning}"
    );
    let mut c = cairn(&data);
    c.args([
        "search",
        "maintenance",
        "-k",
        "3",
        "--mode",
        "bm25",
        "--json",
    ]);
    let v = json(&ok(c));
    for h in v["hits"].as_array().unwrap() {
        assert!(
            !h["text"].as_str().unwrap().contains("maintenance"),
            "{v:#}"
        );
    }
    // The human summary prints the warning with the file.
    let mut c = cairn(&tmp.path().join("data-human"));
    c.env("CAIRN_TESSERACT", "/nonexistent/tesseract")
        .arg("ingest")
        .arg(docs.join("mixed.pdf"));
    let out = ok(c);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("warning: mixed.pdf: page 2 without a text layer not read by OCR: Tesseract"),
        "{stderr}"
    );
}

#[test]
fn doctor_shows_where_each_stage_runs_and_fails_on_a_device_this_build_lacks() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = cairn(&data).args(["doctor", "--json"]).output().unwrap();
    let v = json(&out);
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    let stage = |v: &Value, name: &str| {
        v["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stage"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no stage {name}: {v:#}"))
    };
    assert_eq!(stage(&v, "embed")["runs_on"], "cpu");
    assert_eq!(stage(&v, "embed")["backend"], "onnxruntime");
    assert_eq!(stage(&v, "critic")["runs_on"], "with embed");
    assert_eq!(stage(&v, "generate")["backend"], "llama.cpp");
    let checks = v["checks"].as_array().unwrap();
    for what in [
        "embedding model",
        "generator",
        "ONNX Runtime library",
        "data dir",
    ] {
        let c = checks
            .iter()
            .find(|c| c["what"] == what)
            .unwrap_or_else(|| panic!("no check {what}: {v:#}"));
        assert_eq!(c["ok"], true, "{c}");
    }
    assert!(v["cpu"]["logical_cores"].as_u64().unwrap() >= 1);
    assert_eq!(v["problems"].as_array().unwrap().len(), 0);

    // A device map this build cannot run: each stage says why, exit 1.
    let out = cairn(&data)
        .args([
            "--stage-device",
            "generate=cuda:1",
            "--stage-device",
            "embed=metal",
            "doctor",
            "--json",
        ])
        .output()
        .unwrap();
    let v = json(&out);
    assert_eq!(out.status.code(), Some(1), "{v:#}");
    assert_eq!(stage(&v, "generate")["runs_on"], "cuda:1");
    let problems = v["problems"].to_string();
    assert!(
        problems.contains("generate: CUDA is not compiled in"),
        "{problems}"
    );
    // `auto` picks candle for a GPU, which this build lacks too.
    assert!(
        problems.contains("embed: Metal is not compiled in"),
        "{problems}"
    );

    // The text report, and a bad flag named.
    let out = cairn(&data).arg("doctor").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("stages:") && text.contains("background ingestion"),
        "{text}"
    );
    let out = cairn(&data)
        .args(["--stage-device", "gpu=cpu", "doctor"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("unknown stage `gpu`"), "{err}");
}
