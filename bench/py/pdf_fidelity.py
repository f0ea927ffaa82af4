"""PDF text fidelity, side by side: Cairn's PDF loader, poppler's `pdftotext`
and pypdfium2 on manuals that Debian ships both as PDF and as HTML. Each
extraction is scored against the HTML's visible text by word n-gram F1
(multisets of lower-cased word 4-grams; 1-grams beside): what an extractor
loses (running headers and page numbers, words split at line ends,
ligatures, reading order) shows as 4-grams that the HTML does not have or
that the extraction breaks. Speed: median seconds over ROUNDS rounds.
With --layouts, PDFs that Chromium printed from one-file HTML pages (two
and three columns, tables; bench/py/pdf_layouts.py) are scored the same
way against the HTML they were printed from, and averaged apart.

    python3 bench/py/pdf_fidelity.py --cairn-bench BIN --docs DIR [--layouts DIR] --out F.json
"""

import argparse
import collections
import gzip
import html.parser
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

# name, PDF, HTML page(s) (a directory: every .html in it), under DIR/usr/share/doc.
PAIRS = [
    ("bash (man page, groff)", "bash/bash.pdf", "bash/bash.html"),
    ("bashref (Texinfo)", "bash/bashref.pdf", "bash/bashref.html"),
    ("autoconf (Texinfo)", "autoconf/autoconf.pdf.gz", "autoconf/autoconf.html"),
    ("GNU coding standards", "gnu-standards/standards.pdf.gz", "gnu-standards/standards.html"),
    ("GNU maintainer info", "gnu-standards/maintain.pdf.gz", "gnu-standards/maintain.html"),
    ("flex (Texinfo, split HTML)", "flex-doc/flex.pdf.gz", "flex-doc/html"),
]

WORD = re.compile(r"\w+", re.UNICODE)


class Visible(html.parser.HTMLParser):
    """The text a browser shows: everything but script, style and head."""

    SKIP = {"script", "style", "head", "title"}
    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "dt", "dd", "table"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skip += 1
        elif tag in self.BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.skip:
            self.skip -= 1
        elif tag in self.BLOCK:
            self.out.append("\n")

    def handle_data(self, data):
        if not self.skip:
            self.out.append(data)


def visible_text(paths):
    parts = []
    for p in paths:
        v = Visible()
        with open(p, encoding="utf-8", errors="replace") as f:
            v.feed(f.read())
        parts.append("".join(v.out))
    return "\n".join(parts)


def ngrams(text, n):
    words = WORD.findall(text.lower())
    return collections.Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def f1(cand, ref, n):
    c, r = ngrams(cand, n), ngrams(ref, n)
    overlap = sum((c & r).values())
    if not overlap:
        return 0.0
    p, rec = overlap / sum(c.values()), overlap / sum(r.values())
    return 2 * p * rec / (p + rec)


def median_time(fn, rounds):
    times, out = [], None
    for _ in range(rounds):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cairn-bench", required=True)
    ap.add_argument("--docs", required=True, help="root the Debian packages were unpacked into")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", required=True)
    ap.add_argument("--layouts", help="a folder of PDFs printed from one-file HTML pages "
                    "(bench/py/pdf_layouts.py): scored against the HTML beside each")
    a = ap.parse_args()
    import pypdfium2  # the peer, from the bench venv

    work = tempfile.mkdtemp()
    rows = []
    docs = [(name, "manuals", os.path.join(a.docs, "usr/share/doc", pdf_rel),
             os.path.join(a.docs, "usr/share/doc", html_rel)) for name, pdf_rel, html_rel in PAIRS]
    if a.layouts:
        for f in sorted(os.listdir(a.layouts)):
            if f.endswith(".pdf"):
                html = os.path.join(a.layouts, f[:-4] + ".html")
                with open(html, encoding="utf-8") as h:
                    title = re.search(r"<title>(.*?)</title>", h.read()).group(1)
                docs.append((title, "layouts", os.path.join(a.layouts, f), html))
    try:
        for name, group, pdf, h in docs:
            pdf_rel = os.path.relpath(pdf, os.path.join(a.docs, "usr/share/doc")) if group == "manuals" else os.path.basename(pdf)
            if pdf.endswith(".gz"):
                plain = os.path.join(work, os.path.basename(pdf)[:-3])
                with gzip.open(pdf) as src, open(plain, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                pdf = plain
            pages = sorted(os.path.join(h, p) for p in os.listdir(h) if p.endswith(".html")) if os.path.isdir(h) else [h]
            ref = visible_text(pages)

            def cairn():
                r = subprocess.run([a.cairn_bench, "extract", "--file", pdf, "--rounds", "1"],
                                   check=True, capture_output=True, text=True)
                return json.loads(r.stdout)

            # Cairn's own timing is in-process (the load alone), like pypdfium2's.
            runs = [cairn() for _ in range(a.rounds)]
            t_cairn = statistics.median(r["seconds"] for r in runs)
            text_cairn = runs[-1]["text"]
            t_pdftotext, text_pdftotext = median_time(
                lambda: subprocess.run(["pdftotext", "-enc", "UTF-8", pdf, "-"], check=True,
                                       capture_output=True, text=True).stdout, a.rounds)

            def pdfium():
                doc = pypdfium2.PdfDocument(pdf)
                out = "\n".join(doc[i].get_textpage().get_text_range() for i in range(len(doc)))
                n = len(doc)
                doc.close()
                return out, n

            t_pdfium, (text_pdfium, n_pages) = median_time(pdfium, a.rounds)
            row = {"document": name, "group": group, "pdf": pdf_rel, "pages": n_pages,
                   "reference_words": len(WORD.findall(ref))}
            for key, text, t in [("cairn", text_cairn, t_cairn), ("pdftotext", text_pdftotext, t_pdftotext),
                                 ("pypdfium2", text_pdfium, t_pdfium)]:
                row[key] = {"f1_4": round(f1(text, ref, 4), 4), "f1_1": round(f1(text, ref, 1), 4),
                            "seconds": round(t, 4), "pages_per_s": round(n_pages / t, 1)}
            rows.append(row)
            print(f"{name:30s} {n_pages:4d} pages  4-gram F1: cairn {row['cairn']['f1_4']:.4f}  "
                  f"pdftotext {row['pdftotext']['f1_4']:.4f}  pypdfium2 {row['pypdfium2']['f1_4']:.4f}  "
                  f"pages/s: {row['cairn']['pages_per_s']} / {row['pdftotext']['pages_per_s']} / "
                  f"{row['pypdfium2']['pages_per_s']}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    mean = {k: round(statistics.mean(r[k]["f1_4"] for r in rows if r["group"] == "manuals"), 4)
            for k in ("cairn", "pdftotext", "pypdfium2")}
    layouts = [r for r in rows if r["group"] == "layouts"]
    mean_layouts = {k: round(statistics.mean(r[k]["f1_4"] for r in layouts), 4)
                    for k in ("cairn", "pdftotext", "pypdfium2")} if layouts else None
    out = {
        "bench": "pdf_fidelity",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "pypdfium2": pypdfium2.V_PYPDFIUM2,
        "pdftotext": subprocess.run(["pdftotext", "-v"], capture_output=True, text=True).stderr.split("\n")[0],
        "mean_f1_4": mean,
        "mean_f1_4_layouts": mean_layouts,
        "rows": rows,
    }
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    print("mean 4-gram F1, manuals:", mean)
    if mean_layouts:
        print("mean 4-gram F1, printed layouts:", mean_layouts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
