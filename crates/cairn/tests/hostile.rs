//! Hostile files through the `cairn` binary, as a user's folder would hold
//! them: decompression bombs (an image's pixels too), HTML nested 200,000
//! deep, and loaders that
//! panic, hang or die (fault injection: `CAIRN_FAILPOINT_LOAD`). Each costs
//! only its own file: the good file beside them is committed and found, and
//! a file that crashed or hung a loader is not tried again until it
//! changes. Its own test binary, so that the peak memory of the processes
//! it runs is its own.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::ok;

fn cairn(data: &Path, config: &Path) -> Command {
    let mut c = common::cairn(data);
    c.env("CAIRN_CHUNK_MAX_TOKENS", "128")
        .arg("--config")
        .arg(config);
    c
}

fn ingest(data: &Path, config: &Path, docs: &Path, failpoints: &str) -> Value {
    let mut c = cairn(data, config);
    c.env("CAIRN_FAILPOINT_LOAD", failpoints)
        .args(["ingest", "--json"])
        .arg(docs);
    common::json(&ok(c).stdout)
}

fn reason<'a>(report: &'a Value, list: &str, file: &str) -> &'a str {
    report[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["path"] == file)
        .unwrap_or_else(|| panic!("{file} not in {list}: {report:#}"))["reason"]
        .as_str()
        .unwrap()
}

const GOOD: &str = "# Owls\n\nThe snowy owl hunts lemmings across the open tundra.\n";

fn write_good(docs: &Path) {
    std::fs::create_dir_all(docs).unwrap();
    std::fs::write(docs.join("good.md"), GOOD).unwrap();
}

/// The largest resident set of any process this test binary has waited
/// for (and of their waited-for children: the loader processes), in bytes.
fn peak_child_rss() -> u64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    assert_eq!(rc, 0);
    u.ru_maxrss as u64 * 1024
}

#[test]
fn hostile_files_cost_only_themselves() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let docs: PathBuf = tmp.path().join("docs");
    write_good(&docs);
    let hostile = cairn_testkit::hostile::pdf_bomb("The bomb's first page is read.", 1024);
    std::fs::write(docs.join("bomb.pdf"), hostile).unwrap();
    let docx = cairn_testkit::hostile::docx_bomb("Before the bomb.", 1024);
    std::fs::write(docs.join("bomb.docx"), docx).unwrap();
    let deep = cairn_testkit::hostile::nested_html(200_000, "The innermost sentence.");
    std::fs::write(docs.join("deep.html"), deep).unwrap();
    for name in ["hang.md", "abort.md", "panic.md"] {
        std::fs::write(docs.join(name), format!("# {name}\n\nSome text.\n")).unwrap();
    }
    let config = tmp.path().join("cairn.toml");
    std::fs::write(&config, "[ingest]\nload_timeout_secs = 3\n").unwrap();
    let failpoints = "hang:hang.md,abort:abort.md,panic:panic.md";

    let report = ingest(&data, &config, &docs, failpoints);
    assert_eq!(report["added"], 4, "{report:#}");
    assert!(
        reason(&report, "warnings", "bomb.pdf").contains("inflating past 64 MiB"),
        "{report:#}"
    );
    assert!(
        reason(&report, "warnings", "bomb.docx").contains("only its first 64 MiB were read"),
        "{report:#}"
    );
    assert!(
        reason(&report, "warnings", "deep.html").contains("flattened"),
        "{report:#}"
    );
    let hang = reason(&report, "skipped", "hang.md");
    assert!(hang.contains("longer than 3 s"), "{hang}");
    let abort = reason(&report, "skipped", "abort.md");
    assert!(abort.contains("loader process died"), "{abort}");
    assert!(abort.contains("aborted"), "{abort}");
    let panic = reason(&report, "skipped", "panic.md");
    assert!(
        panic.contains("the markdown loader failed on this file (failpoint"),
        "{panic}"
    );
    // 1 GiB bombs, and nothing came near it: the bombs cost their caps.
    let peak = peak_child_rss();
    eprintln!("peak resident set of a process run: {} MiB", peak >> 20);
    assert!(peak < 1536 << 20, "peak resident set {} MiB", peak >> 20);

    // What the bombs held beside them, and the good file, are found.
    let mut c = cairn(&data, &config);
    c.args(["search", "what do snowy owls hunt?", "-k", "1", "--json"]);
    let hits = common::json(&ok(c).stdout);
    assert_eq!(hits["hits"][0]["doc"], "good.md", "{hits:#}");
    let mut c = cairn(&data, &config);
    c.args(["search", "innermost sentence", "-k", "1", "--json"]);
    let hits = common::json(&ok(c).stdout);
    assert_eq!(hits["hits"][0]["doc"], "deep.html", "{hits:#}");

    // The next ingest does not try the files that crashed or hung a loader
    // again (the failpoints still stand: a try would fail otherwise).
    let again = ingest(&data, &config, &docs, failpoints);
    assert_eq!(
        (again["added"].as_u64(), again["unchanged"].as_u64()),
        (Some(0), Some(4))
    );
    for name in ["hang.md", "abort.md", "panic.md"] {
        let r = reason(&again, "skipped", name);
        assert!(r.contains("not tried again until the file changes"), "{r}");
    }
    // Once it changes, it is tried, and it loads.
    std::fs::write(docs.join("hang.md"), "# Hang\n\nNow it loads.\n").unwrap();
    let changed = ingest(&data, &config, &docs, "");
    assert_eq!(changed["added"], 1, "{changed:#}");
    assert_eq!(
        changed["skipped"].as_array().unwrap().len(),
        2,
        "{changed:#}"
    );
}

#[test]
fn a_loader_past_its_memory_limit_costs_only_its_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let docs = tmp.path().join("docs");
    write_good(&docs);
    let docx = cairn_testkit::hostile::docx_bomb("Before the bomb.", 1024);
    std::fs::write(docs.join("bomb.docx"), docx).unwrap();
    // No inflate cap to speak of: only the loader's memory limit stands.
    let config = tmp.path().join("cairn.toml");
    std::fs::write(
        &config,
        "[ingest]\nmax_inflate_mb = 4096\nloader_memory_mb = 256\n",
    )
    .unwrap();
    let report = ingest(&data, &config, &docs, "");
    assert_eq!(report["added"], 1, "{report:#}");
    // The allocation past the limit is refused: the loader says so (or,
    // where an allocation aborts, dies of it).
    let why = reason(&report, "skipped", "bomb.docx");
    assert!(
        why.contains("needs more memory than a loader may use")
            || (why.contains("loader process died") && why.contains("256 MiB")),
        "{why}"
    );
    // It is remembered: the next ingest does not inflate it again.
    let again = ingest(&data, &config, &docs, "");
    let r = reason(&again, "skipped", "bomb.docx");
    assert!(r.contains("not tried again until the file changes"), "{r}");
}

#[test]
fn without_loader_processes_a_panicking_loader_costs_only_its_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let docs = tmp.path().join("docs");
    write_good(&docs);
    std::fs::write(docs.join("panic.md"), "# P\n\nText.\n").unwrap();
    let config = tmp.path().join("cairn.toml");
    std::fs::write(&config, "[ingest]\nisolate = false\n").unwrap();
    let report = ingest(&data, &config, &docs, "panic:panic.md");
    assert_eq!(report["added"], 1, "{report:#}");
    let r = reason(&report, "skipped", "panic.md");
    assert!(r.contains("the markdown loader failed"), "{r}");
}

#[test]
fn an_image_bomb_costs_only_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    write_good(&docs);
    // 16 383 × 25 600 pixels: 400 MiB of pixels in about 400 KB.
    let bomb = cairn_testkit::hostile::png_bomb(400);
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    std::fs::write(docs.join("bomb.png"), bomb).unwrap();
    let ocr = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cairn-ingest/tests/data/ocr");
    std::fs::copy(ocr.join("venv.png"), docs.join("venv.png")).unwrap();

    // Refused from its header, before anything decodes it.
    let config = tmp.path().join("cairn.toml");
    std::fs::write(&config, "[ingest]\nloader_memory_mb = 256\n").unwrap();
    let report = ingest(&tmp.path().join("data"), &config, &docs, "");
    assert_eq!(report["added"], 2, "{report:#}");
    assert_eq!(
        reason(&report, "skipped", "bomb.png"),
        "OCR failed: 16383 × 25600 pixels is more than ingest.ocr_max_megapixels (40)"
    );

    // With the pixel cap lifted, Tesseract decodes it under the loader's
    // memory limit, which it inherits: it fails, and only this file is lost.
    std::fs::write(
        &config,
        "[ingest]\nloader_memory_mb = 256\nocr_max_megapixels = 1000\n",
    )
    .unwrap();
    let report = ingest(&tmp.path().join("data2"), &config, &docs, "");
    assert_eq!(report["added"], 2, "{report:#}");
    let why = reason(&report, "skipped", "bomb.png");
    assert!(why.starts_with("OCR failed: tesseract"), "{why}");
    assert!(
        peak_child_rss() < 600 << 20,
        "peak child RSS {} MiB",
        peak_child_rss() >> 20
    );
}
