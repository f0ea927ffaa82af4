//! Every loader on small real inputs, through the public `load` entry point.

use cairn_core::{CodeLang, Document, Format};
use cairn_ingest::{detect_format, load, read_file, IngestError};
use lopdf::content::{Content, Operation};
use lopdf::{dictionary, Object, Stream};
use std::io::Write;
use std::path::Path;

/// (heading path, trimmed section text) for each section.
fn outline(doc: &Document) -> Vec<(String, String)> {
    doc.sections
        .iter()
        .map(|s| {
            (
                s.headings.join(" > "),
                doc.text[s.start..s.end].trim().to_string(),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

const SPHINX_PAGE: &str = r##"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8" />
  <title>Tutorial &#8212; MyDocs 1.0 documentation</title>
  <script>var leak = "SCRIPT_TEXT";</script>
  <style>body { color: red } /* STYLE_TEXT */</style>
</head>
<body>
<div class="related" role="navigation" aria-label="related navigation">
  <h3>Navigation</h3><ul><li><a href="genindex.html">RELATED_TEXT</a></li></ul>
</div>
<div class="document"><div class="documentwrapper"><div class="bodywrapper">
<div class="body" role="main">
<section id="tutorial">
<h1>Tutorial<a class="headerlink" href="#tutorial" title="Link to this heading">¶</a></h1>
<p>Welcome to the &lt;tutorial&gt;.
   It is   short.</p>
<section id="lists">
<h2>Lists<a class="headerlink" href="#lists" title="Link to this heading">¶</a></h2>
<p>Lists hold <em>items</em>.</p>
<div class="highlight-python notranslate"><div class="highlight"><pre><span></span>xs = [1, 2]
    ys = xs
</pre></div></div>
<section id="sorting">
<h3>Sorting</h3>
<ul><li><p>Use sorted().</p></li><li><p>Or .sort()</p></li></ul>
</section>
</section>
<section id="dicts">
<h2>Dicts</h2>
<p>Maps keys¶ to values.</p>
<table><tr><td>a</td><td>1</td></tr><tr><td>b</td><td>2</td></tr></table>
</section>
</section>
</div></div></div>
<div class="sphinxsidebar" role="navigation" aria-label="main navigation">
  <div class="sphinxsidebarwrapper"><h3>Quick search</h3><p>SIDEBAR_TEXT</p></div>
</div>
<div class="clearer"></div>
</div>
<nav class="bd-links">NAV_TEXT</nav>
<ul class="wy-breadcrumbs"><li>BREADCRUMB_TEXT</li></ul>
<div class="footer" role="contentinfo">FOOTER_TEXT &#169; 2024</div>
<footer>FOOTER_ELEMENT_TEXT</footer>
<noscript>NOSCRIPT_TEXT</noscript>
<template><p>TEMPLATE_TEXT</p></template>
<svg><text>SVG_TEXT</text></svg>
<form><button>BUTTON_TEXT</button><select><option>OPTION_TEXT</option></select></form>
</body>
</html>"##;

#[test]
fn html_sphinx_page_keeps_only_visible_body_text() {
    let doc = load(Path::new("tutorial.html"), SPHINX_PAGE.as_bytes()).unwrap();
    assert_eq!(doc.format, Format::Html);
    for hidden in [
        "SCRIPT_TEXT",
        "STYLE_TEXT",
        "RELATED_TEXT",
        "SIDEBAR_TEXT",
        "NAV_TEXT",
        "BREADCRUMB_TEXT",
        "FOOTER_TEXT",
        "FOOTER_ELEMENT_TEXT",
        "NOSCRIPT_TEXT",
        "TEMPLATE_TEXT",
        "SVG_TEXT",
        "BUTTON_TEXT",
        "OPTION_TEXT",
        "Quick search",
        "¶",
        "MyDocs",
    ] {
        assert!(
            !doc.text.contains(hidden),
            "{hidden:?} leaked into {:?}",
            doc.text
        );
    }
    assert_eq!(
        outline(&doc),
        pairs(&[
            ("Tutorial", "Welcome to the <tutorial>. It is short."),
            (
                "Tutorial > Lists",
                "Lists hold items.\n\nxs = [1, 2]\n    ys = xs"
            ),
            ("Tutorial > Lists > Sorting", "Use sorted().\n\nOr .sort()"),
            ("Tutorial > Dicts", "Maps keys to values.\n\na 1\nb 2"),
        ])
    );
    // Headings are in the text, on their own paragraph, without pilcrows.
    assert!(
        doc.text.starts_with("Tutorial\n\nWelcome"),
        "{:?}",
        doc.text
    );
    assert!(doc.text.contains("\n\nLists\n\n"));
    assert!(doc.warnings.is_empty());
}

#[test]
fn markdown_heading_paths_setext_and_fences() {
    let src = "Intro line.\r\n\r\n# Guide\r\n\r\nStart here.\r\n\r\nSetup\r\n-----\r\n\r\n```bash\r\n# not a heading\r\nmake\r\n```\r\n\r\n### Linux\r\n\r\napt install\r\n\r\n## Usage\r\n\r\nRun it.\r\n\r\nAppendix\r\n========\r\n\r\nExtra.\r\n";
    let doc = load(Path::new("README.md"), src.as_bytes()).unwrap();
    assert_eq!(doc.format, Format::Markdown);
    assert_eq!(doc.text, src.replace("\r\n", "\n"));
    assert_eq!(
        outline(&doc),
        pairs(&[
            ("", "Intro line."),
            ("Guide", "Start here."),
            ("Guide > Setup", "```bash\n# not a heading\nmake\n```"),
            ("Guide > Setup > Linux", "apt install"),
            ("Guide > Usage", "Run it."),
            ("Appendix", "Extra."),
        ])
    );
}

/// A real PDF with one page per entry of `pages`, each showing its text.
fn make_pdf(pages: &[&str]) -> lopdf::Document {
    make_pdf_ops(
        pages
            .iter()
            .map(|text| {
                vec![
                    Operation::new("Td", vec![72.into(), 700.into()]),
                    Operation::new("Tj", vec![Object::string_literal(*text)]),
                ]
            })
            .collect(),
    )
}

/// A real PDF whose pages show text with the given operations (inside
/// `BT`/`ET`, Helvetica 14 as `F1` already set).
fn make_pdf_ops(pages: Vec<Vec<Operation>>) -> lopdf::Document {
    let mut doc = lopdf::Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "Type1",
        "BaseFont" => "Helvetica",
        "Encoding" => "WinAnsiEncoding",
    });
    let resources_id = doc.add_object(dictionary! {
        "Font" => dictionary! { "F1" => font_id },
    });
    let mut kids: Vec<Object> = Vec::new();
    for ops in pages {
        let mut operations = vec![
            Operation::new("BT", vec![]),
            Operation::new("Tf", vec!["F1".into(), 14.into()]),
        ];
        operations.extend(ops);
        operations.push(Operation::new("ET", vec![]));
        let content = Content { operations };
        let content_id = doc.add_object(Stream::new(dictionary! {}, content.encode().unwrap()));
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "Contents" => content_id,
        });
        kids.push(page_id.into());
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => kids,
            "Count" => count,
            "Resources" => resources_id,
            "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
        }),
    );
    let catalog_id = doc.add_object(dictionary! {
        "Type" => "Catalog",
        "Pages" => pages_id,
    });
    doc.trailer.set("Root", catalog_id);
    doc.trailer.set(
        "ID",
        vec![
            Object::string_literal(b"0123456789abcdef".to_vec()),
            Object::string_literal(b"0123456789abcdef".to_vec()),
        ],
    );
    doc
}

fn pdf_bytes(mut doc: lopdf::Document) -> Vec<u8> {
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).unwrap();
    bytes
}

#[test]
fn pdf_two_pages_give_page_sections() {
    let bytes = pdf_bytes(make_pdf(&["Hello from page one", "Greetings on page two"]));
    let doc = load(Path::new("report.pdf"), &bytes).unwrap();
    assert_eq!(doc.format, Format::Pdf);
    let o = outline(&doc);
    assert_eq!(o.len(), 2, "{o:?}");
    assert_eq!(o[0].0, "Page 1");
    assert_eq!(o[1].0, "Page 2");
    assert!(o[0].1.contains("Hello from page one"), "{o:?}");
    assert!(o[1].1.contains("Greetings on page two"), "{o:?}");
    // Also recognised without an extension, by its magic bytes.
    assert_eq!(
        detect_format(Path::new("report"), &bytes).unwrap(),
        Format::Pdf
    );
}

#[test]
fn pdf_layout_is_read_as_text_headers_footers_and_split_words_are_not() {
    // Four pages laid out as typesetters do: a running header, words placed
    // by moving the pen (no space characters between them), a word split
    // by a hyphen at a line's end, and a page number at the foot.
    let tj = |s: &str| Operation::new("Tj", vec![Object::string_literal(s)]);
    let td = |x: i64, y: i64| Operation::new("Td", vec![x.into(), y.into()]);
    let bodies = [
        ["The", "heron", "swallows", "stack", "frames"],
        ["A", "kestrel", "hovers", "over", "estuaries"],
        ["Quokkas", "nest", "under", "coastal", "bridges"],
        ["Ferries", "sail", "late", "in", "fog"],
    ];
    let splits = [
        ("under an inter-", "national standard."),
        ("with docu-", "mentation."),
        ("by con-", "figuration."),
        ("as an ex-", "pression of weather."),
    ];
    let pages: Vec<Vec<Operation>> = bodies
        .iter()
        .enumerate()
        .map(|(n, words)| {
            let mut ops = vec![td(72, 760), tj("GNU Kestrel Manual, chapter 2")];
            // Down to the body: each word 75 points after the last.
            ops.push(td(0, -60));
            for (i, w) in words.iter().enumerate() {
                if i > 0 {
                    ops.push(td(75, 0));
                }
                ops.push(tj(w));
            }
            ops.push(td(-75 * (words.len() as i64 - 1), -17));
            ops.push(tj(splits[n].0));
            ops.push(td(0, -17));
            ops.push(tj(splits[n].1));
            ops.push(td(240, -600));
            ops.push(tj(&format!("{}", n + 1)));
            ops
        })
        .collect();
    let bytes = pdf_bytes(make_pdf_ops(pages));
    let doc = load(Path::new("manual.pdf"), &bytes).unwrap();
    let o = outline(&doc);
    assert_eq!(o.len(), 4, "{o:?}");
    assert_eq!(
        o[0].1,
        "The heron swallows stack frames\nunder an international\nstandard."
    );
    assert_eq!(o[3].0, "Page 4");
    assert_eq!(
        o[3].1,
        "Ferries sail late in fog\nas an expression\nof weather."
    );
    assert!(!doc.text.contains("Kestrel Manual"), "{}", doc.text);
}

#[test]
fn pdf_bookmarks_head_the_pages_they_cover() {
    let mut doc = make_pdf(&[
        "Preface text",
        "Shell syntax begins",
        "Quoting rules",
        "More quoting",
        "Builtins start here",
    ]);
    let pages = doc.get_pages();
    let page = |n: u32| Object::Reference(pages[&n]);
    // Chapter 1 (page 2) > 1.1 Quoting (page 3); Chapter 2 (page 5).
    let outlines_id = doc.new_object_id();
    let ch1 = doc.new_object_id();
    let sec = doc.new_object_id();
    let ch2 = doc.new_object_id();
    let entry = |title: &str, dest: Object| {
        dictionary! {
            "Title" => Object::string_literal(title),
            "Dest" => vec![dest, "Fit".into()],
        }
    };
    let mut d1 = entry("1 Shell Syntax", page(2));
    d1.set("Parent", outlines_id);
    d1.set("Next", ch2);
    d1.set("First", sec);
    d1.set("Last", sec);
    d1.set("Count", 1);
    let mut d11 = entry("1.1  Quoting", page(3));
    d11.set("Parent", ch1);
    let mut d2 = entry("2 Builtins", page(5));
    d2.set("Parent", outlines_id);
    d2.set("Prev", ch1);
    doc.objects.insert(ch1, Object::Dictionary(d1));
    doc.objects.insert(sec, Object::Dictionary(d11));
    doc.objects.insert(ch2, Object::Dictionary(d2));
    doc.objects.insert(
        outlines_id,
        Object::Dictionary(dictionary! {
            "Type" => "Outlines",
            "First" => ch1,
            "Last" => ch2,
            "Count" => 3,
        }),
    );
    let root = doc.trailer.get(b"Root").unwrap().as_reference().unwrap();
    doc.get_object_mut(root)
        .unwrap()
        .as_dict_mut()
        .unwrap()
        .set("Outlines", outlines_id);
    let loaded = load(Path::new("manual.pdf"), &pdf_bytes(doc)).unwrap();
    let heads: Vec<String> = outline(&loaded).into_iter().map(|(h, _)| h).collect();
    assert_eq!(
        heads,
        [
            "Page 1",
            "1 Shell Syntax > Page 2",
            "1 Shell Syntax > 1.1 Quoting > Page 3",
            "1 Shell Syntax > 1.1 Quoting > Page 4",
            "2 Builtins > Page 5",
        ]
    );
}

#[test]
fn pdf_without_bookmarks_is_headed_by_its_larger_lines() {
    // No outline: a title at 24 points, chapters at 18 (one set over two
    // lines), a section at 14, body text at 10; a running header at 10.
    let tf = |size: i64| Operation::new("Tf", vec!["F1".into(), size.into()]);
    let tj = |s: &str| Operation::new("Tj", vec![Object::string_literal(s)]);
    let td = |x: i64, y: i64| Operation::new("Td", vec![x.into(), y.into()]);
    let body = |ops: &mut Vec<Operation>, words: &str| {
        ops.push(tf(10));
        for line in [
            format!("{words} live beside slow rivers and"),
            "shallow lakes in most of the temperate world,".into(),
            "where they hunt fish from the banks.".into(),
        ] {
            ops.push(td(0, -14));
            ops.push(tj(&line));
        }
    };
    let mut p1 = vec![td(72, 760), tf(10), tj("Heron Notes"), td(0, -40)];
    p1.extend([tf(24), tj("A Field Guide to Herons"), td(0, -36)]);
    p1.extend([tf(18), tj("1 Where herons live")]);
    body(&mut p1, "Grey herons");
    p1.extend([td(0, -24), tf(14), tj("1.1 Estuaries")]);
    body(&mut p1, "Little egrets");
    let mut p2 = vec![td(72, 760), tf(10), tj("Heron Notes"), td(0, -40)];
    body(&mut p2, "Night herons");
    p2.extend([
        td(0, -30),
        tf(18),
        tj("2 What herons eat and how"),
        td(0, -22),
    ]);
    p2.push(tj("they catch it"));
    body(&mut p2, "Purple herons");
    let mut p3 = vec![td(72, 760), tf(10), tj("Heron Notes"), td(0, -40)];
    body(&mut p3, "Bitterns");
    let doc = load(
        Path::new("herons.pdf"),
        &pdf_bytes(make_pdf_ops(vec![p1, p2, p3])),
    )
    .unwrap();
    let o = outline(&doc);
    let heads: Vec<&str> = o.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(
        heads,
        [
            "A Field Guide to Herons > Page 1",
            "A Field Guide to Herons > 1 Where herons live > Page 1",
            "A Field Guide to Herons > 1 Where herons live > 1.1 Estuaries > Page 1",
            "A Field Guide to Herons > 1 Where herons live > 1.1 Estuaries > Page 2",
            "A Field Guide to Herons > 2 What herons eat and how they catch it > Page 2",
            "A Field Guide to Herons > 2 What herons eat and how they catch it > Page 3",
        ],
        "{o:#?}"
    );
    // Each section starts with its heading; the running header is gone.
    assert_eq!(o[1].1.lines().next(), Some("1 Where herons live"));
    assert!(
        o[2].1.starts_with("1.1 Estuaries\nLittle egrets live"),
        "{o:#?}"
    );
    assert!(o[3].1.starts_with("Night herons live"), "{o:#?}");
    assert!(o[5].1.starts_with("Bitterns live"), "{o:#?}");
    assert!(!doc.text.contains("Heron Notes"), "{}", doc.text);
}

#[test]
fn pdf_printed_by_a_browser_reads_in_order_with_rows_and_headings() {
    // tests/data/pdf/make.py: a real tutorial page in two columns and a
    // table, printed by Chromium (CID fonts, no bookmarks).
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pdf/chromium.pdf");
    let doc = load(&path, &std::fs::read(&path).unwrap()).unwrap();
    // The monospaced font's one width for all glyphs is read: code words
    // are not spelled out letter by letter ("v e n v").
    assert!(
        doc.text.contains("called\nvenv. venv will usually install"),
        "{}",
        doc.text
    );
    assert!(doc.text.contains("python3 -m venv tutorial-env"));
    assert!(!doc.text.contains("v e n v"));
    // The columns in reading order: the left column's last paragraph,
    // then the right column's first.
    let left = doc.text.find("directory path:").unwrap();
    let right = doc.text.find("python3 -m venv tutorial-env").unwrap();
    let next = doc.text.find("This will create the tutorial-env").unwrap();
    assert!(left < right && right < next);
    // A table row on one line, its cells in order.
    assert!(
        doc.text.contains(
            "'s' String format. This is the default type for strings and may be omitted."
        ),
        "{}",
        doc.text
    );
    // Headings from the sizes of the lines.
    let heads: Vec<String> = outline(&doc).into_iter().map(|(h, _)| h).collect();
    assert_eq!(
        heads,
        [
            "12. Virtual Environments and Packages¶ > Page 1",
            "12. Virtual Environments and Packages¶ > 12.1. Introduction¶ > Page 1",
            "12. Virtual Environments and Packages¶ > 12.2. Creating Virtual Environments¶ > Page 1",
            "12. Virtual Environments and Packages¶ > Alignment options > Page 1",
        ]
    );
}

#[test]
fn pdf_without_text_layer_is_refused() {
    let bytes = pdf_bytes(make_pdf(&["   "]));
    let err = load(Path::new("scan.pdf"), &bytes).unwrap_err();
    assert!(matches!(err, IngestError::NoTextLayer { .. }), "{err}");
    assert_eq!(err.reason(), "PDF has no text layer (scanned image?)");
}

#[test]
fn garbage_named_pdf_is_corrupt() {
    let err = load(Path::new("fake.pdf"), b"GIF89a this is not a PDF \x01\x02").unwrap_err();
    assert!(
        matches!(err, IngestError::Corrupt { format: "PDF", .. }),
        "{err}"
    );
    assert!(
        err.to_string().starts_with("fake.pdf: corrupt PDF: "),
        "{err}"
    );
}

#[test]
fn password_protected_pdf_is_refused() {
    use lopdf::{EncryptionState, EncryptionVersion, Permissions};
    let mut doc = make_pdf(&["Top secret text"]);
    let state = EncryptionState::try_from(EncryptionVersion::V2 {
        document: &doc,
        owner_password: "owner-pw",
        user_password: "user-pw",
        key_length: 128,
        permissions: Permissions::all(),
    })
    .unwrap();
    doc.encrypt(&state).unwrap();
    let bytes = pdf_bytes(doc);
    let err = load(Path::new("locked.pdf"), &bytes).unwrap_err();
    assert!(matches!(err, IngestError::EncryptedPdf { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "locked.pdf: encrypted PDF (password protected)"
    );
}

/// A real DOCX (zip with the parts Word writes) holding these paragraphs:
/// (style id or "", text).
fn make_docx(paragraphs: &[(&str, &str)]) -> Vec<u8> {
    let mut body = String::new();
    for (style, text) in paragraphs {
        body.push_str("<w:p>");
        if !style.is_empty() {
            body.push_str(&format!("<w:pPr><w:pStyle w:val=\"{style}\"/></w:pPr>"));
        }
        // Split the text into two runs to exercise run joining.
        let mid = text
            .char_indices()
            .nth(text.chars().count() / 2)
            .map_or(0, |(i, _)| i);
        let (a, b) = text.split_at(mid);
        let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;");
        body.push_str(&format!(
            "<w:r><w:t xml:space=\"preserve\">{}</w:t></w:r><w:r><w:t xml:space=\"preserve\">{}</w:t></w:r></w:p>",
            esc(a),
            esc(b)
        ));
    }
    let document = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n\
         <w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\">\
         <w:body>{body}<w:sectPr/></w:body></w:document>"
    );
    let content_types = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
        <Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">\
        <Default Extension=\"xml\" ContentType=\"application/xml\"/>\
        <Override PartName=\"/word/document.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml\"/>\
        </Types>";
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    zip.start_file("[Content_Types].xml", opts).unwrap();
    zip.write_all(content_types.as_bytes()).unwrap();
    zip.start_file("word/document.xml", opts).unwrap();
    zip.write_all(document.as_bytes()).unwrap();
    zip.finish().unwrap().into_inner()
}

#[test]
fn docx_heading_styles_give_paths() {
    let bytes = make_docx(&[
        ("Title", "Annual Report"),
        ("", "Summary first."),
        ("Heading1", "Sales"),
        ("", "Sales grew & grew."),
        ("Heading2", "Europe"),
        ("", "Up 5%."),
        ("Heading2", "Asia"),
        ("", "Up 9%."),
        ("Heading1", "Costs"),
        ("", "Flat."),
    ]);
    let doc = load(Path::new("report.docx"), &bytes).unwrap();
    assert_eq!(doc.format, Format::Docx);
    assert_eq!(
        outline(&doc),
        pairs(&[
            ("Annual Report", "Summary first."),
            ("Annual Report > Sales", "Sales grew & grew."),
            ("Annual Report > Sales > Europe", "Up 5%."),
            ("Annual Report > Sales > Asia", "Up 9%."),
            ("Annual Report > Costs", "Flat."),
        ])
    );
    assert!(doc
        .text
        .starts_with("Annual Report\n\nSummary first.\n\nSales\n\n"));
    assert_eq!(
        detect_format(Path::new("noext"), &bytes).unwrap(),
        Format::Docx
    );
}

#[test]
fn corrupt_docx_is_refused() {
    let err = load(Path::new("broken.docx"), b"PK\x03\x04 truncated nonsense").unwrap_err();
    assert!(
        matches!(err, IngestError::Corrupt { format: "DOCX", .. }),
        "{err}"
    );
    assert!(
        err.to_string().starts_with("broken.docx: corrupt DOCX: "),
        "{err}"
    );

    // A valid zip without word/document.xml.
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("hello.txt", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(b"hi").unwrap();
    let bytes = zip.finish().unwrap().into_inner();
    let err = load(Path::new("empty.docx"), &bytes).unwrap_err();
    assert!(err.to_string().contains("word/document.xml"), "{err}");
}

#[test]
fn invalid_utf8_is_replaced_with_a_warning_in_text_formats() {
    for (name, bytes, format) in [
        ("a.txt", &b"caf\xe9\r\nbar"[..], Format::Text),
        ("a.md", &b"# T\xff\n\nbody"[..], Format::Markdown),
        ("a.html", &b"<p>caf\xe9</p>"[..], Format::Html),
        (
            "a.py",
            &b"def f():\n    return '\xe9'\n"[..],
            Format::Code(CodeLang::Python),
        ),
    ] {
        let doc = load(Path::new(name), bytes).unwrap();
        assert_eq!(doc.format, format);
        assert!(doc.text.contains('\u{FFFD}'), "{name}: {:?}", doc.text);
        assert_eq!(
            doc.warnings,
            vec!["invalid UTF-8 replaced with U+FFFD".to_string()],
            "{name}"
        );
    }
    let doc = load(Path::new("a.txt"), b"caf\xe9\r\nbar").unwrap();
    assert_eq!(doc.text, "caf\u{FFFD}\nbar");
}

#[test]
fn nul_bytes_mean_binary() {
    for name in ["data.txt", "mystery", "x.rs", "page.html"] {
        let err = load(Path::new(name), b"hello\0world").unwrap_err();
        assert!(matches!(err, IngestError::Binary { .. }), "{name}: {err}");
        assert_eq!(err.reason(), "binary file");
    }
}

#[test]
fn code_and_plain_text_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let rs = dir.path().join("lib.rs");
    std::fs::write(
        &rs,
        "pub fn add(a: i32, b: i32) -> i32 {\r\n    a + b\r\n}\r\n",
    )
    .unwrap();
    let bytes = read_file(&rs, 1 << 20).unwrap();
    let doc = load(&rs, &bytes).unwrap();
    assert_eq!(doc.format, Format::Code(CodeLang::Rust));
    assert_eq!(
        doc.text,
        "pub fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n"
    );
    assert_eq!(doc.sections.len(), 1);

    let makefile = dir.path().join("Makefile");
    std::fs::write(&makefile, "all:\n\tcc main.c\n").unwrap();
    let doc = load(&makefile, &read_file(&makefile, 1 << 20).unwrap()).unwrap();
    assert_eq!(doc.format, Format::Text);
}
