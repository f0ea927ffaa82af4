#!/usr/bin/env python3
"""Writes chromium.pdf, a PDF as browsers print one ("Save as PDF"), for the
PDF loader's tests: the Python 3.11 tutorial's page on virtual
environments (python3.11-doc) set in two columns, then the alignment table
of the `string` module's page, printed by Debian's Chromium from
chromium.html. Chromium writes its fonts as CID fonts, the monospaced one
with one width for all its glyphs; it writes no bookmarks.

  python3 make.py [/usr/share/doc/python3.11/html]

The outputs are committed; ../../loaders.rs reads them.
"""

import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DOCS = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/doc/python3.11/html"


def body(page):
    with open(os.path.join(DOCS, page), encoding="utf-8") as f:
        html = f.read()
    start = html.index('<div class="body" role="main">') + len('<div class="body" role="main">')
    end = html.index('<div class="sphinxsidebar"', start)
    return re.sub(r"(\s*</div>\s*){1,4}$", "", html[start:end].strip())


def main():
    venv = body("tutorial/venv.html")
    # Up to the third section: two pages in two columns.
    venv = venv[: venv.index('<section id="managing-packages-with-pip">')]
    string = body("library/string.html")
    start = string.index('<table class="docutils align-default">')
    table = string[start : string.index("</table>", start) + len("</table>")]
    html = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Virtual environments</title><style>
body {{ font-family: serif; font-size: 10pt; margin: 0; }}
.columns {{ column-count: 2; column-gap: 2em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #000; padding: 2px 4px; vertical-align: top; }}
</style></head><body><div class="columns">{venv}</div>
<h2>Alignment options</h2>{table}</body></html>
"""
    with open(os.path.join(HERE, "chromium.html"), "w", encoding="utf-8") as f:
        f.write(html)
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
                    "--print-to-pdf=" + os.path.join(HERE, "chromium.pdf"), os.path.join(HERE, "chromium.html")],
                   check=True, capture_output=True, timeout=300)


if __name__ == "__main__":
    main()
