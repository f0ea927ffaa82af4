"""PDFs whose layout is known, printed by Chromium from real pages of the
Python documentation (Debian's python3.11-doc), for the PDF fidelity
benchmark's second half: the page's main text set in two or three
columns, pages whose tables are printed with borders, and two pages with
the header and footer a browser prints by default. Each PDF is
written beside the one-file HTML it was printed from, so that the HTML's
visible text is the reference for exactly what the PDF shows.

    python3 bench/py/pdf_layouts.py --out DIR [--chromium chromium]

Prints one line per PDF; a PDF already in DIR is kept.
"""

import argparse
import os
import re
import subprocess
import sys

DOCS = "/usr/share/doc/python3.11/html"

# name, page, columns, whether the browser prints its header (date and
# title) and footer (address and page number) on every page, as "Save as
# PDF" does by default. Prose in columns; pages with tables in one column
# and in two.
LAYOUTS = [
    ("classes, 2 columns", "tutorial/classes.html", 2, False),
    ("controlflow, 2 columns", "tutorial/controlflow.html", 2, False),
    ("datastructures, 3 columns", "tutorial/datastructures.html", 3, False),
    ("venv tutorial, 2 columns", "tutorial/venv.html", 2, False),
    ("string (tables), 1 column", "library/string.html", 1, False),
    ("datetime (tables), 1 column", "library/datetime.html", 1, False),
    ("time (tables), 2 columns", "library/time.html", 2, False),
    ("modules, 1 column, browser header and footer", "tutorial/modules.html", 1, True),
    ("inputoutput, 2 columns, browser header and footer", "tutorial/inputoutput.html", 2, True),
]

STYLE = """<style>
body { font-family: serif; font-size: 10pt; margin: 0; }
main { column-count: %d; column-gap: 2em; }
table { border-collapse: collapse; }
td, th { border: 1px solid #000; padding: 2px 4px; vertical-align: top; }
pre { white-space: pre-wrap; }
</style>"""


def main_text(html):
    """The page's main text: Sphinx's `div.body`, without the navigation,
    sidebar and footer around it."""
    start = html.index('<div class="body" role="main">') + len('<div class="body" role="main">')
    end = html.index('<div class="sphinxsidebar"', start)
    body = html[start:end]
    # The closing tags of the wrappers the cut left open at the end.
    return re.sub(r"(\s*</div>\s*){1,4}$", "", body.strip())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--chromium", default="chromium")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for name, page, columns, margins in LAYOUTS:
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        html_path = os.path.join(a.out, slug + ".html")
        pdf_path = os.path.join(a.out, slug + ".pdf")
        if not os.path.exists(pdf_path):
            with open(os.path.join(DOCS, page), encoding="utf-8") as f:
                body = main_text(f.read())
            with open(html_path, "w", encoding="utf-8") as f:
                f.write("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>%s</title>%s</head>"
                        "<body><main>%s</main></body></html>\n" % (name, STYLE % columns, body))
            flags = [] if margins else ["--no-pdf-header-footer"]
            subprocess.run([a.chromium, "--headless", "--no-sandbox", "--disable-gpu", *flags,
                            "--print-to-pdf=" + pdf_path, html_path],
                           check=True, capture_output=True, timeout=300)
        print(f"{name}\t{pdf_path}\t{html_path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
