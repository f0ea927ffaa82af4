//! Hostile files loaded in this process, with the default limits: a PDF
//! and a DOCX that inflate to 1 GiB from a few kilobytes, and HTML nested
//! 200,000 deep. Each costs its cap, not the machine: the document loads
//! with what it holds before or beside the bomb, and a warning says what
//! was left out. (Loader processes, deadlines and memory limits are tested
//! through the `cairn` binary, in `crates/cairn/tests/hostile.rs`.)

use cairn_ingest::{load, load_with, LoadLimits};
use cairn_testkit::hostile;
use std::path::Path;

#[test]
fn a_pdf_stream_inflating_to_a_gibibyte_is_left_out() {
    let pdf = hostile::pdf_bomb("Page one survives the bomb.", 1024);
    assert!(pdf.len() < 2_000_000, "{} bytes", pdf.len());
    let doc = load(Path::new("bomb.pdf"), &pdf).unwrap();
    assert!(
        doc.text.contains("Page one survives the bomb."),
        "{}",
        doc.text
    );
    assert!(
        doc.warnings
            .iter()
            .any(|w| w.contains("inflating past 64 MiB")),
        "{:?}",
        doc.warnings
    );
    assert!(doc.text.len() < 1000, "{}", doc.text.len());
}

#[test]
fn a_pdf_is_read_up_to_its_page_limit() {
    let pdf = hostile::pdf_bomb("First page.", 1);
    let limits = LoadLimits {
        max_pdf_pages: 1,
        ..LoadLimits::default()
    };
    let doc = load_with(Path::new("two.pdf"), &pdf, &limits).unwrap();
    assert_eq!(doc.text, "First page.");
    assert!(
        doc.warnings
            .iter()
            .any(|w| w.contains("first 1 of 2 pages")),
        "{:?}",
        doc.warnings
    );
    // Under the caps a stream is read as it is: nothing left out.
    let doc = load(Path::new("two.pdf"), &pdf).unwrap();
    assert!(doc.warnings.is_empty(), "{:?}", doc.warnings);
}

#[test]
fn a_docx_part_inflating_to_a_gibibyte_is_read_up_to_the_cap() {
    let docx = hostile::docx_bomb("Before the bomb.", 1024);
    assert!(docx.len() < 2_000_000, "{} bytes", docx.len());
    let doc = load(Path::new("bomb.docx"), &docx).unwrap();
    assert_eq!(doc.text, "Before the bomb.");
    assert!(
        doc.warnings
            .iter()
            .any(|w| w.contains("only its first 64 MiB were read")),
        "{:?}",
        doc.warnings
    );
    // A part under the cap is read whole, with no warning.
    let small = hostile::docx_bomb("Small.", 1);
    let doc = load(Path::new("small.docx"), &small).unwrap();
    assert_eq!((doc.text.as_str(), doc.warnings.len()), ("Small.", 0));
}

#[test]
fn html_nested_two_hundred_thousand_deep_is_flattened() {
    let page = hostile::nested_html(200_000, "The innermost sentence.");
    let doc = load(Path::new("deep.html"), page.as_bytes()).unwrap();
    assert!(doc.text.contains("The innermost sentence."), "{}", doc.text);
    assert!(
        doc.warnings.iter().any(|w| w.contains("flattened")),
        "{:?}",
        doc.warnings
    );
}
