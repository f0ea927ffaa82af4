#!/usr/bin/env python3
"""Writes the test files of the loaders for PPTX, XLSX, ODT, EPUB, Jupyter
notebooks, EML and mbox with the writers people's tools use (python-pptx,
openpyxl, odfpy, EbookLib, nbformat, Python's email and mailbox modules),
over real text: Debian's release table (debian.csv, from the distro-info-data
package) and pages of the Python 3.11 tutorial (python3.11-doc).

  python3 -m venv /tmp/fixvenv
  /tmp/fixvenv/bin/pip install python-pptx==1.0.2 openpyxl==3.1.5 odfpy==1.4.1 EbookLib==0.20 nbformat==5.11.1
  /tmp/fixvenv/bin/python make.py [/usr/share/doc/python3.11/html]

The outputs are committed; the tests in ../../formats.rs read them.
"""

import csv
import datetime
import email.message
import email.policy
import email.utils
from html import unescape
import mailbox
import os
import re
import sys
import zipfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
DOCS = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/doc/python3.11/html"
FIXED = datetime.datetime(2026, 12, 3, 12, 0, 0)


def out(name):
    return os.path.join(HERE, name)


def releases():
    with open(out("debian.csv"), newline="") as f:
        return list(csv.reader(f))


def deck():
    from pptx import Presentation
    from pptx.util import Inches

    prs = Presentation()
    s = prs.slides.add_slide(prs.slide_layouts[0])
    s.shapes.title.text = "Debian releases"
    s.placeholders[1].text = "A short history, from Buzz to Trixie"
    s = prs.slides.add_slide(prs.slide_layouts[1])
    s.shapes.title.text = "How a release is named"
    body = s.placeholders[1].text_frame
    body.text = "Every release is named after a character from Toy Story."
    p = body.add_paragraph()
    p.text = "The unstable distribution is always called Sid."
    p.level = 1
    s.notes_slide.notes_text_frame.text = (
        "Mention that Sid is the boy next door who breaks his toys."
    )
    s = prs.slides.add_slide(prs.slide_layouts[5])
    s.shapes.title.text = "The first releases"
    rows = releases()[:4]
    table = s.shapes.add_table(len(rows), 3, Inches(1), Inches(2), Inches(6), Inches(2)).table
    for i, r in enumerate(rows):
        for j, v in enumerate((r[0], r[1], r[4])):
            table.cell(i, j).text = v
    prs.core_properties.created = FIXED
    prs.core_properties.modified = FIXED
    prs.save(out("deck.pptx"))


def workbook():
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "Releases"
    for r in releases():
        ws.append(r)
    n = ws.max_row
    ws.cell(row=n + 2, column=1, value="releases")
    ws.cell(row=n + 2, column=2, value=f"=COUNTA(A2:A{n})")
    notes = wb.create_sheet("Notes")
    notes.append(["topic", "note", "checked"])
    notes.append(["naming", "Releases are named after Toy Story characters", True])
    notes.append(["support", "Security support lasts about three years", False])
    wb.properties.created = FIXED
    wb.properties.modified = FIXED
    wb.save(out("releases.xlsx"))


def odt():
    from odf.opendocument import OpenDocumentText
    from odf.style import Style, TextProperties
    from odf.table import Table, TableColumn, TableRow, TableCell
    from odf.text import H, P, Span, S, Note, NoteCitation, NoteBody

    doc = OpenDocumentText()
    bold = Style(name="Bold", family="text")
    bold.addElement(TextProperties(fontweight="bold"))
    doc.automaticstyles.addElement(bold)
    doc.text.addElement(H(outlinelevel=1, text="Release policy"))
    p = P(text="Debian publishes a stable release roughly every ")
    p.addElement(Span(stylename=bold, text="two years"))
    p.addText(", after a freeze.")
    note = Note(id="n1", noteclass="footnote")
    note.addElement(NoteCitation(text="1"))
    nb = NoteBody()
    nb.addElement(P(text="The freeze lasts about six months."))
    note.addElement(nb)
    p.addElement(note)
    doc.text.addElement(p)
    doc.text.addElement(H(outlinelevel=2, text="Support"))
    q = P(text="Point releases fix")
    q.addElement(S(c=3))
    q.addText("security problems and serious bugs.")
    doc.text.addElement(q)
    doc.text.addElement(H(outlinelevel=1, text="Recent releases"))
    t = Table(name="recent")
    t.addElement(TableColumn(numbercolumnsrepeated=2))
    for r in releases()[-6:-3]:
        row = TableRow()
        for v in (r[1], r[4] if len(r) > 4 and r[4] else "unreleased"):
            c = TableCell()
            c.addElement(P(text=v))
            row.addElement(c)
        t.addElement(row)
    doc.text.addElement(t)
    doc.save(out("policy.odt"))


def body_of(page):
    html = open(os.path.join(DOCS, "tutorial", page), encoding="utf-8").read()
    m = re.search(r'<div class="body" role="main">(.*?)<div class="clearer">', html, re.S)
    body = m.group(1) if m else html
    return re.sub(r'<a class="headerlink"[^>]*>.*?</a>', "", body)


def epub():
    from ebooklib import epub as e

    book = e.EpubBook()
    book.set_identifier("cairn-test-python-tutorial")
    book.set_title("The Python Tutorial (excerpt)")
    book.set_language("en")
    chapters = []
    for i, page in enumerate(["appetite.html", "interpreter.html", "whatnow.html"]):
        html = open(os.path.join(DOCS, "tutorial", page), encoding="utf-8").read()
        title = unescape(re.search(r"<title>(.*?)</title>", html, re.S).group(1)).split(" \u2014 ")[0].strip()
        c = e.EpubHtml(title=title, file_name=f"ch{i + 1}.xhtml", lang="en")
        c.content = body_of(page)
        book.add_item(c)
        chapters.append(c)
    book.toc = chapters
    book.spine = ["nav"] + chapters
    book.add_item(e.EpubNcx())
    book.add_item(e.EpubNav())
    e.write_epub(out("tutorial.epub"), book)


def notebook():
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}})
    nb.cells = [
        new_markdown_cell("# Release intervals\nHow long Debian took between stable releases."),
        new_code_cell(
            "import csv\n# read the table\nrows = list(csv.DictReader(open('debian.csv')))\nlen(rows)",
            execution_count=1,
            outputs=[new_output("execute_result", data={"text/plain": str(len(releases()) - 1)}, execution_count=1)],
        ),
        new_markdown_cell("## The longest gap\nThe gap before Sarge was the longest."),
        new_code_cell(
            "print('woody -> sarge: 1042 days')",
            execution_count=2,
            outputs=[new_output("stream", name="stdout", text="woody -> sarge: 1042 days\n")],
        ),
    ]
    for i, c in enumerate(nb.cells):
        c["id"] = f"cell-{i}"
    nbformat.write(nb, out("intervals.ipynb"))


def message(subject, sender, body, when, attachments=()):
    m = email.message.EmailMessage(policy=email.policy.SMTP)
    m["From"] = sender
    m["To"] = "Release Team <debian-release@lists.debian.org>"
    m["Subject"] = subject
    m["Date"] = email.utils.format_datetime(when)
    m["Message-ID"] = f"<{zlib.crc32(subject.encode())}@example.org>"
    m.set_content(body)
    m.add_alternative(f"<html><body><p>{body}</p></body></html>", subtype="html")
    for name, data, maintype, subtype in attachments:
        m.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return m


def mail():
    import email.utils  # noqa: F401

    when = datetime.datetime(2026, 11, 30, 9, 0, tzinfo=datetime.timezone.utc)
    with open(out("policy.odt"), "rb") as f:
        odt_bytes = f.read()
    png = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000" "1f15c4890000000a49444154789c6300010000050001" "0d0a2db40000000049454e44ae426082")
    m = message(
        "Freeze dates for the next release \u2014 draft",
        "Jos\u00e9 Garc\u00eda <jose@example.org>",
        "The transition freeze starts on 12 January; the soft freeze follows a month later.",
        when,
        [("policy.odt", odt_bytes, "application", "vnd.oasis.opendocument.text"), ("logo.png", png, "image", "png")],
    )
    with open(out("freeze.eml"), "wb") as f:
        f.write(m.as_bytes())
    path = out("release-team.mbox")
    if os.path.exists(path):
        os.remove(path)
    box = mailbox.mbox(path)
    box.add(mailbox.mboxMessage(message("Codename for the release after next", "Ann <ann@example.org>", "From now on the codename will be announced at DebConf.", when)))
    box.add(mailbox.mboxMessage(message("Re: Codename for the release after next", "Bo <bo@example.org>", "Agreed; the announcement is a tradition.", when + datetime.timedelta(hours=2))))
    box.add(mailbox.mboxMessage(message("Point release schedule", "Cy <cy@example.org>", "The next point release is planned for a Saturday in February.", when + datetime.timedelta(days=1))))
    box.flush()
    box.close()


def normalise_zip(name):
    """Fixed timestamps and order inside the zip, so a rerun writes the same bytes."""
    path = out(name)
    with zipfile.ZipFile(path) as z:
        items = [(i, z.read(i.filename)) for i in z.infolist()]
    with zipfile.ZipFile(path, "w") as z:
        for info, data in items:
            fixed = zipfile.ZipInfo(info.filename, date_time=(2026, 12, 3, 12, 0, 0))
            fixed.compress_type = info.compress_type
            fixed.external_attr = info.external_attr
            z.writestr(fixed, data)


if __name__ == "__main__":
    deck()
    workbook()
    odt()
    epub()
    notebook()
    mail()
    for n in ("deck.pptx", "releases.xlsx", "policy.odt", "tutorial.epub"):
        normalise_zip(n)
    for n in sorted(os.listdir(HERE)):
        print(f"{os.path.getsize(out(n)):8d}  {n}")
