//! The loaders of PPTX, XLSX, CSV, ODT, EPUB, Jupyter notebooks, EML and
//! mbox on files written by the tools people use (`tests/data/formats/make.py`:
//! python-pptx, openpyxl, odfpy, EbookLib, nbformat, Python's email and
//! mailbox modules, over Debian's release table and pages of the Python
//! tutorial), and the zip formats' shared inflate budget against bombs.

use cairn_core::{Document, Format};
use cairn_ingest::{load, load_with, LoadLimits};
use std::path::{Path, PathBuf};

fn data(name: &str) -> (PathBuf, Vec<u8>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/formats")
        .join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, bytes)
}

fn load_data(name: &str) -> Document {
    let (path, bytes) = data(name);
    let doc = load(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));
    check_sections(&doc);
    doc
}

/// Sections are in order, inside the text, on character boundaries.
fn check_sections(doc: &Document) {
    let mut last = 0;
    for s in &doc.sections {
        assert!(s.start <= s.end && s.end <= doc.text.len(), "{s:?}");
        assert!(s.start >= last, "sections out of order: {:?}", doc.sections);
        assert!(
            doc.text.get(s.start..s.end).is_some(),
            "{s:?} cuts a character"
        );
        last = s.end;
    }
}

fn paths(doc: &Document) -> Vec<String> {
    doc.sections
        .iter()
        .map(|s| s.headings.join(" > "))
        .collect()
}

/// The text of the first section whose heading path is `path`.
fn section<'a>(doc: &'a Document, path: &str) -> &'a str {
    let s = doc
        .sections
        .iter()
        .find(|s| s.headings.join(" > ") == path)
        .unwrap_or_else(|| panic!("no section {path:?} in {:?}", paths(doc)));
    &doc.text[s.start..s.end]
}

#[test]
fn pptx_slides_titles_tables_and_notes() {
    let doc = load_data("deck.pptx");
    assert_eq!(doc.format, Format::Pptx);
    assert_eq!(
        paths(&doc),
        [
            "Slide 1: Debian releases",
            "Slide 2: How a release is named",
            "Slide 3: The first releases"
        ]
    );
    assert_eq!(
        section(&doc, "Slide 1: Debian releases"),
        "Slide 1: Debian releases\nA short history, from Buzz to Trixie"
    );
    assert_eq!(
        section(&doc, "Slide 2: How a release is named"),
        "Slide 2: How a release is named\nEvery release is named after a character from Toy Story.\nThe unstable distribution is always called Sid.\nNotes:\nMention that Sid is the boy next door who breaks his toys."
    );
    let table = section(&doc, "Slide 3: The first releases");
    assert!(
        table.contains(
            "version | codename | release\n1.1 | Buzz | 1996-06-17\n1.2 | Rex | 1996-12-12"
        ),
        "{table}"
    );
    assert!(doc.warnings.is_empty(), "{:?}", doc.warnings);
}

#[test]
fn xlsx_sheets_rows_with_their_headers() {
    let doc = load_data("releases.xlsx");
    assert_eq!(doc.format, Format::Xlsx);
    assert_eq!(paths(&doc), ["Releases", "Notes"]);
    let releases = section(&doc, "Releases");
    assert!(releases.starts_with("Releases\nversion | codename | series | created | release | eol | eol-lts | eol-elts\n"), "{releases}");
    assert!(releases.contains("\nversion: 1.1; codename: Buzz; series: buzz; created: 1993-08-16; release: 1996-06-17; eol: 1997-06-05\n"), "{releases}");
    assert!(
        releases.contains("\ncodename: Sid; series: sid; created: 1993-08-16\n"),
        "{releases}"
    );
    let notes = section(&doc, "Notes");
    assert!(
        notes.contains(
            "topic: naming; note: Releases are named after Toy Story characters; checked: TRUE"
        ),
        "{notes}"
    );
    assert!(notes.contains("checked: FALSE"), "{notes}");
}

#[test]
fn csv_rows_with_their_headers() {
    let doc = load_data("debian.csv");
    assert_eq!(doc.format, Format::Csv);
    let lines: Vec<&str> = doc.text.lines().collect();
    assert_eq!(
        lines[0],
        "version | codename | series | created | release | eol | eol-lts | eol-elts"
    );
    assert_eq!(lines[1], "version: 1.1; codename: Buzz; series: buzz; created: 1993-08-16; release: 1996-06-17; eol: 1997-06-05");
    assert_eq!(
        lines.len(),
        std::fs::read_to_string(data("debian.csv").0)
            .unwrap()
            .lines()
            .count()
    );
}

#[test]
fn odt_headings_footnotes_spaces_and_tables() {
    let doc = load_data("policy.odt");
    assert_eq!(doc.format, Format::Odt);
    assert_eq!(
        paths(&doc),
        [
            "Release policy",
            "Release policy > Support",
            "Recent releases"
        ]
    );
    assert_eq!(
        section(&doc, "Release policy").trim(),
        "Debian publishes a stable release roughly every two years, after a freeze.\n\nThe freeze lasts about six months."
    );
    assert_eq!(
        section(&doc, "Release policy > Support").trim(),
        "Point releases fix   security problems and serious bugs."
    );
    assert_eq!(
        section(&doc, "Recent releases").trim(),
        "Bookworm | 2023-06-10\n\nTrixie | 2025-08-09\n\nForky | unreleased"
    );
}

#[test]
fn epub_chapters_in_spine_order_under_the_book_title() {
    let doc = load_data("tutorial.epub");
    assert_eq!(doc.format, Format::Epub);
    let p = paths(&doc);
    assert!(
        p.iter()
            .all(|p| p.starts_with("The Python Tutorial (excerpt) > ")),
        "{p:?}"
    );
    let first = |needle: &str| {
        p.iter()
            .position(|p| p.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not in {p:?}"))
    };
    assert!(
        first("Whetting Your Appetite") < first("Using the Python Interpreter"),
        "{p:?}"
    );
    assert!(
        first("Using the Python Interpreter") < first("What Now?"),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|p| p.ends_with("Using the Python Interpreter > 2.1. Invoking the Interpreter")),
        "{p:?}"
    );
    assert!(
        doc.text.contains("If you do much work on computers"),
        "chapter text"
    );
    // The navigation document (the table of contents) is not content.
    assert_eq!(
        doc.text.matches("Whetting Your Appetite").count(),
        1,
        "{}",
        &doc.text[..400]
    );
}

#[test]
fn notebook_cells_outputs_and_headings() {
    let doc = load_data("intervals.ipynb");
    assert_eq!(doc.format, Format::Notebook);
    assert_eq!(
        paths(&doc),
        ["Release intervals", "Release intervals > The longest gap"]
    );
    let first = section(&doc, "Release intervals");
    assert!(
        first.contains("```python\nimport csv\n# read the table\n"),
        "{first}"
    );
    assert!(first.contains("Output:\n\n```text\n22\n```"), "{first}");
    assert!(
        section(&doc, "Release intervals > The longest gap").contains("woody -> sarge: 1042 days")
    );
}

#[test]
fn eml_headers_body_and_attachments_by_their_own_loaders() {
    let doc = load_data("freeze.eml");
    assert_eq!(doc.format, Format::Email);
    let subject = "Freeze dates for the next release \u{2014} draft";
    let p = paths(&doc);
    assert_eq!(p[0], subject);
    let head = section(&doc, subject);
    assert!(
        head.contains("From: Jos\u{e9} Garc\u{ed}a <jose@example.org>"),
        "{head}"
    );
    assert!(
        head.contains("To: Release Team <debian-release@lists.debian.org>"),
        "{head}"
    );
    assert!(head.contains("Date: 2026-11-30T09:00:00Z"), "{head}");
    // The plain-text body once (its HTML alternative is not repeated).
    assert_eq!(
        doc.text
            .matches("The transition freeze starts on 12 January")
            .count(),
        1,
        "{}",
        doc.text
    );
    // The ODT attachment, read by the ODT loader, headings and all.
    assert!(
        p.contains(&format!(
            "{subject} > Attachment: policy.odt > Release policy > Support"
        )),
        "{p:?} {:?}",
        doc.warnings
    );
    assert!(
        doc.text.contains("Point releases fix   security problems"),
        "{}",
        doc.text
    );
    assert_eq!(
        doc.warnings,
        ["attachment logo.png: not a document format, skipped"]
    );
}

#[test]
fn mbox_messages_in_order() {
    let doc = load_data("release-team.mbox");
    assert_eq!(doc.format, Format::Mbox);
    assert_eq!(
        paths(&doc),
        [
            "Codename for the release after next",
            "Re: Codename for the release after next",
            "Point release schedule"
        ]
    );
    assert!(section(&doc, "Point release schedule").contains("planned for a Saturday in February"));
}

#[test]
fn formats_are_sniffed_without_an_extension() {
    for (name, format) in [
        ("deck.pptx", Format::Pptx),
        ("releases.xlsx", Format::Xlsx),
        ("policy.odt", Format::Odt),
        ("tutorial.epub", Format::Epub),
    ] {
        let (_, bytes) = data(name);
        let doc = load(Path::new("upload"), &bytes).unwrap();
        assert_eq!(doc.format, format, "{name}");
    }
}

#[test]
fn corrupt_files_name_the_file_and_what_is_missing() {
    let err = load(Path::new("a.pptx"), b"PK\x03\x04 not really").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("a.pptx: corrupt PPTX: not a zip archive"),
        "{err}"
    );
    let (_, docx) = data("policy.odt");
    let err = load(Path::new("b.xlsx"), &docx).unwrap_err();
    assert_eq!(
        err.to_string(),
        "b.xlsx: corrupt XLSX: no xl/workbook.xml in the archive"
    );
    let err = load(Path::new("c.epub"), &docx).unwrap_err();
    assert_eq!(
        err.to_string(),
        "c.epub: corrupt EPUB: no META-INF/container.xml in the archive"
    );
    let err = load(Path::new("d.ipynb"), b"not json").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("d.ipynb: corrupt notebook: not JSON"),
        "{err}"
    );
}

const MIB: u64 = 1 << 20;

fn limits(mib: u64) -> LoadLimits {
    LoadLimits {
        max_inflate_bytes: mib * MIB,
        ..LoadLimits::default()
    }
}

#[test]
fn an_xlsx_sheet_inflating_to_a_gibibyte_costs_its_budget() {
    let workbook = r#"<workbook xmlns:r="r"><sheets><sheet name="Big" sheetId="1" r:id="rId1"/></sheets></workbook>"#;
    let rels = r#"<Relationships><Relationship Id="rId1" Type="worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#;
    let head = r#"<worksheet><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>name</t></is></c><c r="B1" t="inlineStr"><is><t>note</t></is></c></row><row r="2"><c r="A2" t="inlineStr"><is><t>first</t></is></c><c r="B2" t="inlineStr"><is><t>before the bomb</t></is></c></row>"#;
    let bytes = cairn_testkit::hostile::zip_with_bombs(
        &[
            ("xl/workbook.xml", workbook.as_bytes()),
            ("xl/_rels/workbook.xml.rels", rels.as_bytes()),
        ],
        &[(
            "xl/worksheets/sheet1.xml",
            head,
            "</sheetData></worksheet>",
            1024,
        )],
    );
    assert!(bytes.len() < 2 * MIB as usize, "{} bytes", bytes.len());
    let doc = load_with(Path::new("bomb.xlsx"), &bytes, &limits(16)).unwrap();
    assert!(
        doc.text.contains("name: first; note: before the bomb"),
        "{}",
        doc.text
    );
    assert!(
        doc.warnings
            .iter()
            .any(|w| w.contains("inflate past 16 MiB")),
        "{:?}",
        doc.warnings
    );
}

#[test]
fn many_parts_under_the_cap_share_one_budget() {
    // Three slides of 10 MiB each against a 16 MiB budget: the first is
    // read, the second cut, the third never inflated.
    let pres = r#"<p:presentation xmlns:p="p" xmlns:r="r"><p:sldIdLst><p:sldId id="256" r:id="rId1"/><p:sldId id="257" r:id="rId2"/><p:sldId id="258" r:id="rId3"/></p:sldIdLst></p:presentation>"#;
    let rels = r#"<Relationships><Relationship Id="rId1" Type="slide" Target="slides/slide1.xml"/><Relationship Id="rId2" Type="slide" Target="slides/slide2.xml"/><Relationship Id="rId3" Type="slide" Target="slides/slide3.xml"/></Relationships>"#;
    let heads: Vec<String> = (1..=3)
        .map(|i| format!(r#"<p:sld xmlns:p="p" xmlns:a="a"><p:cSld><p:spTree><p:sp><p:txBody><a:p><a:r><a:t>slide {i} text</a:t></a:r></a:p></p:txBody></p:sp>"#))
        .collect();
    let tail = "</p:spTree></p:cSld></p:sld>";
    let bytes = cairn_testkit::hostile::zip_with_bombs(
        &[
            ("ppt/presentation.xml", pres.as_bytes()),
            ("ppt/_rels/presentation.xml.rels", rels.as_bytes()),
        ],
        &[
            ("ppt/slides/slide1.xml", &heads[0], tail, 10),
            ("ppt/slides/slide2.xml", &heads[1], tail, 10),
            ("ppt/slides/slide3.xml", &heads[2], tail, 10),
        ],
    );
    let doc = load_with(Path::new("many.pptx"), &bytes, &limits(16)).unwrap();
    assert!(doc.text.contains("slide 1 text"), "{}", doc.text);
    assert!(doc.text.contains("slide 2 text"), "{}", doc.text);
    assert!(!doc.text.contains("slide 3 text"), "{}", doc.text);
    assert_eq!(doc.warnings.len(), 1, "{:?}", doc.warnings);
    assert!(
        doc.warnings[0].contains("ppt/slides/slide2.xml was read only that far"),
        "{:?}",
        doc.warnings
    );
}
