//! The fuzz targets' inputs on stable, in the normal test run: every seed
//! (`fuzz/seeds/<target>/`) and every input a fuzzing run found to crash,
//! hang or blow up a loader (`fuzz/regressions/<target>/`, kept after the
//! fix) is loaded as its target loads it (`fuzz/src/lib.rs`): no loader
//! panics, and what loads holds its invariants.

use cairn_ingest::{load_with, IngestError, LoadLimits};
use std::path::{Path, PathBuf};

/// The file name each target loads its input as (`load_code`: the first
/// byte picks one of these, as in `fuzz/fuzz_targets/load_code.rs`,
/// `load_office.rs`, `load_records.rs` and `load_image.rs`).
fn names(target: &str) -> &'static [&'static str] {
    match target {
        "load_text" => &["input.txt"],
        "load_markdown" | "chunk" => &["input.md"],
        "load_html" => &["input.html"],
        "load_pdf" => &["input.pdf"],
        "load_docx" => &["input.docx"],
        "load_code" => &[
            "input.rs", "input.py", "input.js", "input.go", "input.c", "input.sh",
        ],
        "load_office" => &["input.pptx", "input.xlsx", "input.odt", "input.epub"],
        "load_records" => &["input.csv", "input.ipynb", "input.eml", "input.mbox"],
        "load_image" => &["input.png", "input.jpg", "input.tif"],
        other => panic!("unknown fuzz target {other}"),
    }
}

fn inputs(kind: &str) -> Vec<(String, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz")
        .join(kind);
    let mut out = Vec::new();
    for t in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        let target = t.file_name().to_string_lossy().to_string();
        for f in std::fs::read_dir(t.path()).into_iter().flatten().flatten() {
            out.push((target.clone(), f.path()));
        }
    }
    out.sort();
    out
}

fn run(target: &str, file: &Path) {
    let data = std::fs::read(file).unwrap();
    let names = names(target);
    let (name, data) = if names.len() > 1 {
        match data.split_first() {
            Some((&pick, rest)) => (names[pick as usize % names.len()], rest.to_vec()),
            None => return,
        }
    } else {
        (names[0], data)
    };
    // As fuzz/src/lib.rs: no OCR program started.
    let d = LoadLimits::default();
    let limits = LoadLimits {
        max_inflate_bytes: 8 << 20,
        max_pdf_pages: 20,
        ocr: cairn_ingest::OcrLimits {
            enabled: false,
            ..d.ocr.clone()
        },
        ..d
    };
    match load_with(Path::new(name), &data, &limits) {
        Ok(doc) => {
            let mut last = 0;
            for s in &doc.sections {
                assert!(
                    s.start <= s.end && s.end <= doc.text.len(),
                    "{}: {s:?}",
                    file.display()
                );
                assert!(
                    doc.text.is_char_boundary(s.start) && doc.text.is_char_boundary(s.end),
                    "{}: {s:?}",
                    file.display()
                );
                assert!(s.start >= last, "{}: sections out of order", file.display());
                last = s.end;
            }
        }
        Err(e @ IngestError::Panicked { .. }) => panic!("{}: {e}", file.display()),
        Err(_) => {}
    }
}

/// Seeds and regressions together: the seeds are always there (so the
/// test runs the loaders on real inputs even before a fuzzing run has found
/// anything), each regression is an input that once failed.
#[test]
fn every_seed_and_fuzzing_regression_loads_without_a_panic() {
    let seeds = inputs("seeds");
    assert!(seeds.len() >= 7, "the seeds are missing: {seeds:?}");
    for (target, file) in seeds.iter().chain(&inputs("regressions")) {
        run(target, file);
    }
}
