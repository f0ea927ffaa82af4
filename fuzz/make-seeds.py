#!/usr/bin/env python3
"""Write the fuzz targets' seed inputs under fuzz/seeds/<target>/: small,
valid files of each format (the fuzzer mutates from there). Real documents
from the machine are added at run time by scripts/fuzz.sh. Run once; the
seeds are committed."""
import io, os, zipfile, zlib

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")

def put(target, name, data):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

put("load_text", "notes.txt", "Shopping list\n\n- eggs\n- flour\r\n\tindented line\nUnicode: naïve café — ☃\n")
put("load_text", "latin1.txt", "caf\xe9 cr\xe8me\n".encode("latin-1"))
put("load_markdown", "guide.md", """# Install

Run `pip install x`.

## Options

| flag | meaning |
|------|---------|
| -v   | verbose |

```python
def f(x):
    return x * 2
```

> A quote with *emphasis* and a [link](http://example.com).

Setext heading
--------------

1. one
2. two
   - nested
""")
put("load_html", "page.html", """<!DOCTYPE html><html><head><title>Setup &mdash; Manual</title>
<script>var a = "<div>";</script><style>p{}</style></head><body>
<nav><a href="/">Home</a></nav><div class="related">Prev Next</div>
<h1>Setup<a class="headerlink" href="#s">&para;</a></h1><p>Install it with <code>make</code>.</p>
<h2>Details</h2><pre>  keep
    this</pre><table><tr><td>a</td><td>b</td></tr></table>
<ul><li>one<li>two</ul><div hidden>secret</div><footer>(c)</footer></body></html>""")

def pdf(pages, compress=False):
    objs = ["<< /Type /Catalog /Pages 2 0 R >>",
            "<< /Type /Pages /Kids [%s] /Count %d >>" % (" ".join("%d 0 R" % (4 + 2 * i) for i in range(len(pages))), len(pages)),
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out_objs = [o.encode() for o in objs]
    for text in pages:
        content = ("BT /F1 12 Tf 72 720 Td (%s) Tj ET" % text).encode()
        n = len(out_objs) + 2
        out_objs.append(("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R /Resources << /Font << /F1 3 0 R >> >> >>" % n).encode())
        if compress:
            data = zlib.compress(content)
            out_objs.append(b"<< /Filter /FlateDecode /Length %d >>\nstream\n" % len(data) + data + b"\nendstream")
        else:
            out_objs.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    out = b"%PDF-1.4\n"
    offsets = []
    for i, o in enumerate(out_objs):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % (i + 1) + o + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(out_objs) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(out_objs) + 1, xref)
    return out

put("load_pdf", "one-page.pdf", pdf(["Hello from page one."]))
put("load_pdf", "two-pages-flate.pdf", pdf(["First page text.", "Second (page) text."], compress=True))

def docx(paragraphs):
    body = "".join(
        '<w:p>%s<w:r><w:t xml:space="preserve">%s</w:t></w:r><w:r><w:tab/><w:t>x&amp;y</w:t><w:br/></w:r></w:p>'
        % ('<w:pPr><w:pStyle w:val="%s"/></w:pPr>' % style if style else "", text)
        for style, text in paragraphs)
    xml = ('<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>%s</w:body></w:document>' % body)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>')
        z.writestr("word/document.xml", xml)
    return buf.getvalue()

put("load_docx", "report.docx", docx([("Title", "Report"), ("Heading1", "Intro"), ("", "Body text."), ("Heading2", "More"), ("", "Last.")]))

put("load_code", "main.rs", b"\x00" + b"/// Doc.\nfn main() {\n    let x = vec![1, 2];\n    println!(\"{:?}\", x);\n}\n\nstruct S { a: u8 }\nimpl S { fn f(&self) -> u8 { self.a } }\n")
put("load_code", "app.py", b"\x01" + b"import os\n\nclass A:\n    def f(self):\n        return os.sep\n\n\ndef g():\n    pass\n")
put("load_code", "app.js", b"\x02" + b"function f(a) { return a + 1; }\nclass B { m() { return 2; } }\n")
put("load_code", "main.go", b"\x03" + b"package main\n\nfunc main() {\n\tprintln(1)\n}\n")
put("chunk", "long.md", "# Chapter\n\n" + "\n\n".join("Paragraph %d has several words in it, enough to fill a chunk or two of thirty-two tokens." % i for i in range(12)) + "\n\n## Section\n\nEnd.\n")

# The container and record formats: the loaders' test files (written by
# python-pptx, openpyxl, odfpy, EbookLib, nbformat and Python's email and
# mailbox modules; crates/cairn-ingest/tests/data/formats/make.py), the
# first byte picking the name as in fuzz_targets/load_office.rs and
# load_records.rs.
formats = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "cairn-ingest", "tests", "data", "formats")
for target, files in (
    ("load_office", ["deck.pptx", "releases.xlsx", "policy.odt", "tutorial.epub"]),
    ("load_records", ["debian.csv", "intervals.ipynb", "freeze.eml", "release-team.mbox"]),
):
    for pick, name in enumerate(files):
        with open(os.path.join(formats, name), "rb") as f:
            put(target, name, bytes([pick]) + f.read())

# Images read by OCR (the fuzzer reads their headers; it starts no OCR
# program): the OCR test pages (crates/cairn-ingest/tests/data/ocr/make.py),
# the first byte picking the name as in fuzz_targets/load_image.rs.
ocr = os.path.join(os.path.dirname(formats), "ocr")
for pick, name in enumerate(["venv.png", "errors.jpg", "appetite.tif"]):
    with open(os.path.join(ocr, name), "rb") as f:
        put("load_image", name, bytes([pick]) + f.read())
