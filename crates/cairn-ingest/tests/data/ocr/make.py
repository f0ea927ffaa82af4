#!/usr/bin/env python3
"""Writes the OCR test files: paragraphs of the Python 3.11 tutorial
(Debian's python3.11-doc) rendered as images of text, with the words they
show kept beside them as the ground truth (`NAME.txt`).

  apt install python3-pil fonts-dejavu-core
  /usr/bin/python3 make.py [/usr/share/doc/python3.11/html]

Outputs (committed; ../../formats.rs and crates/cairn/tests/cli.rs read them):

  venv.png       three paragraphs of tutorial/venv.html, 1-bit PNG
  errors.jpg     two paragraphs of tutorial/errors.html, greyscale JPEG
  appetite.tif   two paragraphs of tutorial/appetite.html, CCITT G4 TIFF
  scanned.pdf    one page, an image and no text layer (Pillow's PDF writer):
                 two paragraphs of tutorial/floatingpoint.html
  mixed.pdf      three pages written here: a text page (interpreter.html), a
                 page that is only an image (modules.html), a text page
                 (stdlib.html)
  scans.pdf      two pages that are only images, a paragraph of
                 tutorial/whatnow.html each (scans.page1.txt, scans.page2.txt)

The ground truth of mixed.pdf is its scanned page 2 (`mixed.txt`); its text
pages are written from `mixed.page1.txt` and `mixed.page3.txt`.
The images are rendered at 200 pixels per inch, 12 pt DejaVu Serif.
"""

import time
import os
import re
import sys
import zlib
from html import unescape

from PIL import Image, ImageDraw, ImageFont

HERE = os.path.dirname(os.path.abspath(__file__))
DOCS = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/doc/python3.11/html"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf"
DPI = 200
WIDTH = int(8.5 * DPI)
MARGIN = int(0.75 * DPI)
SIZE = round(12 * DPI / 72)


def out(name):
    return os.path.join(HERE, name)


def paragraphs(page, first, count):
    """`count` paragraphs of a tutorial page from the `first`-th on, as
    plain text on one line each (inline markup dropped)."""
    html = open(os.path.join(DOCS, "tutorial", page), encoding="utf-8").read()
    ps = re.findall(r"<p>(.*?)</p>", html, re.S)
    text = [" ".join(unescape(re.sub(r"<[^>]+>", "", p)).split()) for p in ps]
    return [t for t in text if t][first:first + count]


def wrap(draw, font, text, width):
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if draw.textlength(trial, font=font) <= width or not line:
            line = trial
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    return lines


def render(paras):
    """A greyscale page image of the paragraphs, as tall as they need."""
    font = ImageFont.truetype(FONT, SIZE)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    blocks = [wrap(probe, font, p, WIDTH - 2 * MARGIN) for p in paras]
    step = int(SIZE * 1.45)
    height = 2 * MARGIN + sum(len(b) * step for b in blocks) + (len(blocks) - 1) * step
    img = Image.new("L", (WIDTH, height), 255)
    draw = ImageDraw.Draw(img)
    y = MARGIN
    for b in blocks:
        for line in b:
            draw.text((MARGIN, y), line, font=font, fill=0)
            y += step
        y += step
    return img


def truth(name, paras):
    with open(out(name), "w", encoding="utf-8") as f:
        f.write("\n\n".join(paras) + "\n")


def bilevel(img):
    return img.point(lambda v: 255 if v > 140 else 0).convert("1")


def pdf_string(s):
    s = s.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    s = s.replace("\u2014", "-").replace("\u2013", "-")
    s = s.encode("latin-1", "replace").decode("latin-1")
    return "(" + s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def text_page_stream(paras):
    """A content stream setting the paragraphs in Helvetica 11 on a Letter page."""
    font = ImageFont.truetype("/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf", 11)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    ops = ["BT", "/F1 11 Tf", "14 TL", "72 720 Td"]
    for p in paras:
        for line in wrap(probe, font, p, 612 - 144):
            ops.append(f"{pdf_string(line)} Tj T*")
        ops.append("T*")
    ops.append("ET")
    return "\n".join(ops).encode("latin-1")


def write_pdf(name, pages):
    """A PDF of `pages`: ("text", content stream) or ("image", 1-bit image)."""
    objs = []  # index i is object i + 1

    def add(body):
        objs.append(body)
        return len(objs)

    def stream(dict_, data):
        return f"<< {dict_} /Length {len(data)} >>\nstream\n".encode() + data + b"\nendstream"

    catalog = add(None)
    pages_id = add(None)
    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    kids = []
    for kind, content in pages:
        if kind == "text":
            data = zlib.compress(content)
            cs = add(stream("/Filter /FlateDecode", data))
            res = f"<< /Font << /F1 {font} 0 R >> >>"
        else:
            w, h = content.size
            bits = zlib.compress(content.tobytes())
            im = add(stream(f"/Type /XObject /Subtype /Image /Width {w} /Height {h} "
                            "/ColorSpace /DeviceGray /BitsPerComponent 1 /Filter /FlateDecode", bits))
            pw, ph = w * 72 / DPI, h * 72 / DPI
            draw = f"q {pw:.2f} 0 0 {ph:.2f} 0 {792 - ph:.2f} cm /Im1 Do Q".encode()
            cs = add(stream("", draw))
            res = f"<< /XObject << /Im1 {im} 0 R >> >>"
        kids.append(add(f"<< /Type /Page /Parent {pages_id} 0 R /MediaBox [0 0 612 792] "
                        f"/Resources {res} /Contents {cs} 0 R >>".encode()))
    objs[catalog - 1] = f"<< /Type /Catalog /Pages {pages_id} 0 R >>".encode()
    objs[pages_id - 1] = (f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] "
                          f"/Count {len(kids)} >>").encode()
    buf = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(buf))
        buf += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(buf)
    buf += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    for o in offsets:
        buf += f"{o:010d} 00000 n \n".encode()
    buf += f"trailer\n<< /Size {len(objs) + 1} /Root {catalog} 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    with open(out(name), "wb") as f:
        f.write(buf)


def main():
    p = paragraphs("venv.html", 0, 3)
    bilevel(render(p)).save(out("venv.png"), optimize=True)
    truth("venv.txt", p)

    p = paragraphs("errors.html", 0, 2)
    render(p).save(out("errors.jpg"), quality=60, optimize=True)
    truth("errors.txt", p)

    p = paragraphs("appetite.html", 0, 2)
    bilevel(render(p)).save(out("appetite.tif"), compression="group4", dpi=(DPI, DPI))
    truth("appetite.txt", p)

    p = paragraphs("floatingpoint.html", 0, 2)
    fixed = time.gmtime(1796299200)  # 2026-12-03 12:00 UTC
    bilevel(render(p)).save(out("scanned.pdf"), resolution=DPI, creationDate=fixed, modDate=fixed)
    truth("scanned.txt", p)

    one, two, three = paragraphs("interpreter.html", 0, 2), paragraphs("modules.html", 0, 2), \
        paragraphs("stdlib.html", 0, 2)
    write_pdf("mixed.pdf", [("text", text_page_stream(one)), ("image", bilevel(render(two))),
                            ("text", text_page_stream(three))])
    truth("mixed.page1.txt", one)
    truth("mixed.txt", two)
    truth("mixed.page3.txt", three)

    a, b = paragraphs("whatnow.html", 0, 2)
    write_pdf("scans.pdf", [("image", bilevel(render([a]))), ("image", bilevel(render([b])))])
    truth("scans.page1.txt", [a])
    truth("scans.page2.txt", [b])


if __name__ == "__main__":
    main()
