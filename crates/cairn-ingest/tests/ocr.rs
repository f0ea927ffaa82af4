//! OCR of images and scanned PDF pages, on pages rendered from real text
//! whose words are known (`tests/data/ocr/make.py`: paragraphs of the Python
//! tutorial as PNG, JPEG, TIFF, an image-only PDF and a PDF mixing text
//! pages with a scanned one). Needs Tesseract and pdftoppm
//! (`tesseract-ocr`, `tesseract-ocr-eng`, `poppler-utils`: scripts/packages.sh).
//!
//! The word accuracy of each file is printed (`cargo test -p cairn-ingest
//! --test ocr -- --nocapture`).
#![cfg(feature = "ocr")]

use cairn_core::{Document, Format};
use cairn_ingest::{load_with, IngestError, LoadLimits};
use std::path::{Path, PathBuf};
use std::time::Instant;

fn data(name: &str) -> (PathBuf, Vec<u8>) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/ocr")
        .join(name);
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (p, bytes)
}

fn truth(name: &str) -> String {
    String::from_utf8(data(name).1).unwrap()
}

/// Words as compared: lowercased, letters and digits only, empty ones
/// (punctuation alone) left out.
fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Word-level edit distance (insertions, deletions, substitutions).
fn edit_distance(a: &[String], b: &[String]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(x != y))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// 1 − word edit distance / words of the truth.
fn word_accuracy(truth: &str, got: &str) -> f64 {
    let (t, g) = (words(truth), words(got));
    1.0 - edit_distance(&t, &g) as f64 / t.len() as f64
}

#[test]
fn word_accuracy_is_what_it_says() {
    assert_eq!(word_accuracy("The cat sat.", "the CAT sat"), 1.0);
    assert_eq!(word_accuracy("a b c d", "a x c d"), 0.75);
    assert_eq!(word_accuracy("a b c d", "a c d"), 0.75);
    assert_eq!(word_accuracy("a b c d", "a b b c d"), 0.75);
    assert_eq!(word_accuracy("a b c d", ""), 0.0);
}

fn section<'a>(doc: &'a Document, heading: &[&str]) -> &'a str {
    let s = doc
        .sections
        .iter()
        .find(|s| s.headings == heading)
        .unwrap_or_else(|| panic!("no section {heading:?} in {:?}", doc.sections));
    &doc.text[s.start..s.end]
}

#[test]
fn rendered_pages_are_read_with_at_least_95_percent_of_their_words() {
    let limits = LoadLimits::default();
    let mut worst = 1.0f64;
    for (file, format, truth_file, heading) in [
        ("venv.png", Format::Image, "venv.txt", vec!["venv.png"]),
        (
            "errors.jpg",
            Format::Image,
            "errors.txt",
            vec!["errors.jpg"],
        ),
        (
            "appetite.tif",
            Format::Image,
            "appetite.txt",
            vec!["appetite.tif"],
        ),
        ("scanned.pdf", Format::Pdf, "scanned.txt", vec!["Page 1"]),
        ("mixed.pdf", Format::Pdf, "mixed.txt", vec!["Page 2"]),
    ] {
        let (path, bytes) = data(file);
        let started = Instant::now();
        let doc = load_with(&path, &bytes, &limits).unwrap_or_else(|e| panic!("{e}"));
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(doc.format, format, "{file}");
        let heading: Vec<&str> = heading.iter().map(|s| &**s).collect();
        let got = section(&doc, &heading);
        let want = truth(truth_file);
        let acc = word_accuracy(&want, got);
        println!(
            "{file}: word accuracy {acc:.4} ({} words), {secs:.2} s",
            words(&want).len()
        );
        assert!(
            acc >= 0.95,
            "{file}: word accuracy {acc:.4} < 0.95\n--- read:\n{got}\n--- truth:\n{want}"
        );
        assert!(doc.warnings.is_empty(), "{file}: {:?}", doc.warnings);
        worst = worst.min(acc);
    }
    println!("worst word accuracy: {worst:.4}");
}

#[test]
fn image_paragraphs_are_tesseract_blocks() {
    let (path, bytes) = data("venv.png");
    let doc = load_with(&path, &bytes, &LoadLimits::default()).unwrap();
    // Three paragraphs rendered, three blocks read, each one line of text.
    let paras: Vec<&str> = doc.text.split("\n\n").collect();
    assert_eq!(paras.len(), 3, "{}", doc.text);
    for (got, want) in paras.iter().zip(truth("venv.txt").split("\n\n")) {
        assert!(!got.contains('\n'), "{got}");
        assert!(word_accuracy(want, got) >= 0.9, "{got}\n---\n{want}");
    }
    assert_eq!(doc.sections.len(), 1);
    assert_eq!(doc.sections[0].headings, vec!["venv.png".to_string()]);
}

#[test]
fn a_mixed_pdf_keeps_its_pages_in_order() {
    let (path, bytes) = data("mixed.pdf");
    let doc = load_with(&path, &bytes, &LoadLimits::default()).unwrap();
    let headings: Vec<String> = doc
        .sections
        .iter()
        .map(|s| s.headings.join(" > "))
        .collect();
    assert_eq!(headings, ["Page 1", "Page 2", "Page 3"]);
    let starts: Vec<usize> = doc.sections.iter().map(|s| s.start).collect();
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "{starts:?}");
    // The text pages are their text layer, word for word.
    for (page, file) in [("Page 1", "mixed.page1.txt"), ("Page 3", "mixed.page3.txt")] {
        let acc = word_accuracy(&truth(file), section(&doc, &[page]));
        assert_eq!(acc, 1.0, "{page}");
    }
    // The scanned page is between them.
    let ocr = section(&doc, &["Page 2"]);
    assert!(ocr.contains("maintenance"), "{ocr}");
    assert!(word_accuracy(&truth("mixed.txt"), ocr) >= 0.95, "{ocr}");
}

fn without_tesseract() -> LoadLimits {
    let mut l = LoadLimits::default();
    l.ocr.tesseract = "/nonexistent/bin/tesseract".into();
    l
}

#[test]
fn missing_tesseract_is_named_with_what_to_install() {
    let limits = without_tesseract();
    let (path, bytes) = data("venv.png");
    let err = load_with(&path, &bytes, &limits).unwrap_err();
    assert!(matches!(err, IngestError::OcrUnavailable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with(&path.display().to_string()), "{msg}");
    assert!(msg.contains("image not read"), "{msg}");
    assert!(msg.contains("/nonexistent/bin/tesseract"), "{msg}");
    assert!(msg.contains("apt install tesseract-ocr"), "{msg}");
    assert!(!err.is_costly(), "installing Tesseract should let it load");

    // A PDF of scans alone: the same, as a PDF.
    let (path, bytes) = data("scanned.pdf");
    let err = load_with(&path, &bytes, &limits).unwrap_err();
    assert!(
        err.reason()
            .starts_with("PDF has no text layer and was not read by OCR: Tesseract"),
        "{err}"
    );
    assert!(err.reason().contains("apt install tesseract-ocr"), "{err}");

    // A PDF with text pages keeps them, with a warning naming the page.
    let (path, bytes) = data("mixed.pdf");
    let doc = load_with(&path, &bytes, &limits).unwrap();
    let headings: Vec<String> = doc
        .sections
        .iter()
        .map(|s| s.headings.join(" > "))
        .collect();
    assert_eq!(headings, ["Page 1", "Page 3"]);
    assert_eq!(doc.warnings.len(), 1, "{:?}", doc.warnings);
    assert!(
        doc.warnings[0].starts_with("page 2 without a text layer not read by OCR: Tesseract"),
        "{:?}",
        doc.warnings
    );
    assert!(doc.warnings[0].contains("apt install tesseract-ocr"));

    // Without pdftoppm, the same for the renderer's package.
    let mut limits = LoadLimits::default();
    limits.ocr.pdftoppm = "/nonexistent/bin/pdftoppm".into();
    let doc = load_with(&path, &bytes, &limits).unwrap();
    assert!(
        doc.warnings[0].contains("apt install poppler-utils"),
        "{:?}",
        doc.warnings
    );
}

#[test]
fn ocr_off_says_so() {
    let mut limits = LoadLimits::default();
    limits.ocr.enabled = false;
    let (path, bytes) = data("errors.jpg");
    let err = load_with(&path, &bytes, &limits).unwrap_err();
    assert_eq!(
        err.reason(),
        "image not read: OCR is off (ingest.ocr = false)"
    );
    let (path, bytes) = data("scanned.pdf");
    let err = load_with(&path, &bytes, &limits).unwrap_err();
    assert_eq!(
        err.reason(),
        "PDF has no text layer and was not read by OCR: OCR is off (ingest.ocr = false)"
    );
}

#[test]
fn missing_language_data_names_its_package() {
    let mut limits = LoadLimits::default();
    limits.ocr.languages = "eng+qaa".into();
    let (path, bytes) = data("venv.png");
    let err = load_with(&path, &bytes, &limits).unwrap_err();
    assert!(
        err.reason().contains("no data for language `qaa`")
            && err.reason().contains("apt install tesseract-ocr-qaa"),
        "{err}"
    );
}

#[test]
fn images_are_sniffed_without_an_extension() {
    for file in ["venv.png", "errors.jpg", "appetite.tif"] {
        let (_, bytes) = data(file);
        let f = cairn_ingest::detect_format(Path::new("scan"), &bytes).unwrap();
        assert_eq!(f, Format::Image, "{file}");
    }
    let (_, bytes) = data("appetite.tif");
    let doc = load_with(Path::new("scan"), &bytes, &LoadLimits::default()).unwrap();
    assert!(doc.text.contains("automate"), "{}", doc.text);
}

/// A PNG of `w` × `h` pixels, all white, 8-bit grey: its IDAT a deflate
/// stream of rows of zeros (each a filter byte and `w` bytes).
fn png(w: u32, h: u32) -> Vec<u8> {
    use std::io::Write;
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let row = vec![0u8; w as usize + 1];
    for _ in 0..h {
        z.write_all(&row).unwrap();
    }
    let idat = z.finish().unwrap();
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    out
}

#[test]
fn image_bombs_are_refused_from_their_header() {
    // 20 000 × 20 000 pixels (400 MB decoded) in a few hundred kilobytes.
    let bomb = png(20_000, 20_000);
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let started = Instant::now();
    let err = load_with(Path::new("bomb.png"), &bomb, &LoadLimits::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "bomb.png: OCR failed: 20000 × 20000 pixels is more than ingest.ocr_max_megapixels (40)"
    );
    assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
    // A header that claims more than the file holds: the cap first.
    let mut huge = png(1, 1);
    huge[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
    let err = load_with(Path::new("huge.png"), &huge, &LoadLimits::default()).unwrap_err();
    assert!(err.reason().contains("ingest.ocr_max_megapixels"), "{err}");
    // Under the cap, a truncated image is Tesseract's error, for this file.
    let mut cut = png(400, 300);
    cut.truncate(60);
    let err = load_with(Path::new("cut.png"), &cut, &LoadLimits::default()).unwrap_err();
    assert!(
        matches!(err, IngestError::Ocr { .. } | IngestError::Corrupt { .. }),
        "{err:?}"
    );
    // A blank page has no text.
    let err = load_with(
        Path::new("blank.png"),
        &png(400, 300),
        &LoadLimits::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.reason(),
        "OCR failed: no text was recognised in the image"
    );
    // Not an image at all, named as one.
    let err = load_with(Path::new("x.jpg"), b"GIF89a....", &LoadLimits::default()).unwrap_err();
    assert_eq!(err.reason(), "corrupt image: not a PNG, JPEG or TIFF image");
}

/// A stand-in for Tesseract that hangs: a shell script that records its
/// pid and sleeps.
fn hanging_tesseract(dir: &Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("tesseract");
    let pidfile = dir.join("pid");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho $$ > {}\nexec sleep 60\n",
            pidfile.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, pidfile)
}

#[test]
fn ocr_that_outlives_the_file_deadline_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let (script, pidfile) = hanging_tesseract(dir.path());
    let mut limits = LoadLimits {
        timeout_secs: 2,
        ..LoadLimits::default()
    };
    limits.ocr.tesseract = script.display().to_string();
    let (path, bytes) = data("venv.png");
    let started = Instant::now();
    let err = load_with(&path, &bytes, &limits).unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(err, IngestError::Deadline { secs: 2, .. }),
        "{err:?}"
    );
    assert!(err.is_costly());
    assert!(took.as_secs_f64() < 2.0, "{took:?}");
    // The program was killed, not left behind.
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z "),
        "tesseract still running: {stat}"
    );

    // A PDF keeps its text pages and says why the scan is missing.
    let (path, bytes) = data("mixed.pdf");
    let doc = load_with(&path, &bytes, &limits).unwrap();
    assert_eq!(doc.sections.len(), 2);
    assert!(
        doc.warnings
            .iter()
            .any(|w| w.contains("before the file's time ran out")),
        "{:?}",
        doc.warnings
    );
}

#[test]
fn ocr_pages_are_capped_per_file() {
    let (path, bytes) = data("scans.pdf");
    let doc = load_with(&path, &bytes, &LoadLimits::default()).unwrap();
    assert_eq!(doc.sections.len(), 2);
    assert!(doc.warnings.is_empty(), "{:?}", doc.warnings);
    for (page, file) in [("Page 1", "scans.page1.txt"), ("Page 2", "scans.page2.txt")] {
        let acc = word_accuracy(&truth(file), section(&doc, &[page]));
        assert!(acc >= 0.9, "{page}: {acc}");
    }

    let mut limits = LoadLimits::default();
    limits.ocr.max_pages = 1;
    let doc = load_with(&path, &bytes, &limits).unwrap();
    let headings: Vec<String> = doc
        .sections
        .iter()
        .map(|s| s.headings.join(" > "))
        .collect();
    assert_eq!(headings, ["Page 1"]);
    assert_eq!(
        doc.warnings,
        ["OCR read the first 1 of 2 pages without a text layer (ingest.ocr_max_pages)"]
    );

    // A TIFF with more pages than the cap is refused from its directories.
    let mut tiff = b"II*\0\x08\0\0\0".to_vec();
    for next in [38u32, 0] {
        tiff.extend_from_slice(&2u16.to_le_bytes());
        tiff.extend_from_slice(&[0, 1, 3, 0, 1, 0, 0, 0, 8, 0, 0, 0]);
        tiff.extend_from_slice(&[1, 1, 3, 0, 1, 0, 0, 0, 8, 0, 0, 0]);
        tiff.extend_from_slice(&next.to_le_bytes());
    }
    let err = load_with(Path::new("two.tif"), &tiff, &limits).unwrap_err();
    assert_eq!(
        err.reason(),
        "OCR failed: the TIFF holds 2 pages, more than ingest.ocr_max_pages (1)"
    );
}
