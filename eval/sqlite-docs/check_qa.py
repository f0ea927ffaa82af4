#!/usr/bin/env python3
"""Validate eval/sqlite-docs/qa.jsonl against the SQLite HTML docs (sqlite3-doc).

Usage:
    python3 eval/sqlite-docs/check_qa.py [--root /usr/share/doc/sqlite3]
                                         [--qa PATH] [--pages PATH]
                                         [--strict] [--dump-text REL_PATH]
                                         [--out-of-corpus [PATH]]

Checks every line of qa.jsonl:
  * valid JSON object with the required fields and types
  * unique ids
  * kind and style in the allowed sets
  * every gold page exists under the docs root and is in the pages.txt subset
  * every answer occurs in the visible text of at least one gold page, and
    every gold page contains at least one of the answers
    (with --strict as well; --strict additionally fails on answers that are
    too generic: shorter than 3 characters)
Also checks the totals: >= 64 questions, >= 25 distinct gold pages,
>= 4 kinds in use, and a paraphrased share of >= 40%.

Visible text = the HTML minus <head>, <script>, <style>, <svg> (the syntax
diagrams), <nav>, <noscript>, <template>, <form>; tags stripped with
html.parser, a space at every block-level tag, entities unescaped, lowercased,
whitespace collapsed. This mirrors what Cairn's HTML loader keeps.

With --out-of-corpus (PATH defaults to out-of-corpus.jsonl next to this
script) it also checks the out-of-corpus questions, which the subset corpus
must not answer (the same rules as eval/python-docs/check_qa.py):
  * valid JSON object; id, kind == "out-of-corpus", non-empty question,
    answers == [], gold == [], absent a non-empty list of non-empty,
    lowercase, stripped strings
  * ids unique within the file and not used by qa.jsonl
  * >= 30 questions
  * no absent term occurs in the visible text of any page of the pages.txt
    subset (same extraction and normalisation as above)

Prints counts per kind and style and every failing line with its reason.
Exits 1 if anything fails (in either file), 0 otherwise. Standard library
only (the shared helpers, the out-of-corpus checks included, are in
eval/qa_common.py).
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import qa_common  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ROOT = "/usr/share/doc/sqlite3"
KINDS = ("behaviour", "default", "limit", "which-feature", "syntax", "version")
STYLES = ("paraphrased", "identifier")
MIN_TOTAL = 64
MIN_GOLD_PAGES = 25
MIN_KINDS_USED = 4
MIN_PARAPHRASED_SHARE = 0.40
REQUIRED = qa_common.required_fields(style=True)
ID_RE = re.compile(r"^sqlqa-\d{3}$")

# Subtrees that are not visible prose (Cairn's loader drops these too).
SKIP = {"head", "script", "style", "svg", "nav", "noscript", "template", "form"}
# Tags that separate words; a space is emitted at their start and end so that
# text in adjacent blocks or table cells is not glued together.
BLOCK = {
    "p", "div", "br", "li", "ul", "ol", "dl", "dt", "dd", "table", "tr", "td",
    "th", "thead", "tbody", "tfoot", "caption", "pre", "blockquote", "hr",
    "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "header",
    "footer", "main", "aside", "figure", "figcaption", "center", "body", "html",
}
# Joined with "" so inline markup (<a>, <b>, <i>, <tt>) adds no spaces.
TEXT = dict(skip=SKIP, block=BLOCK, sep="")


def main(argv=None):
    args, c, code, ooc_path = qa_common.setup_with_ooc(
        __doc__, HERE, argv, ("--root", "--docs"),
        dict(dest="root", default=DEFAULT_ROOT, help=f"HTML docs root (default {DEFAULT_ROOT})"),
        "also fail on answers shorter than 3 characters", TEXT)
    if code is not None:
        return code
    pages = c.pages

    global_problems = []
    for rel in sorted(c.files):
        if not os.path.isfile(pages.path(rel)):
            global_problems.append(f"pages.txt lists {rel!r}, missing under {args.root}")

    for lineno, qid, obj in c.records(args.qa):
        if c.fail(lineno, qid, qa_common.field_problems(obj, REQUIRED, "unknown")):
            continue
        reasons = []
        if not ID_RE.match(qid):
            reasons.append(f"id {qid!r} does not match sqlqa-NNN")
        reasons += qa_common.content_problems(obj) + c.duplicate(qid, lineno)
        reasons += qa_common.not_in(obj, "kind", KINDS) + qa_common.not_in(obj, "style", STYLES)
        if c.fail(lineno, qid, reasons):
            continue
        c.count(obj)

        good_gold, reasons = c.gold(obj)
        if c.fail(lineno, qid, reasons):
            continue

        missing = [
            orig
            for orig in obj["answers"]
            if not any(qa_common.normalise(orig) in pages(rel) for rel in good_gold)
        ]
        if missing:
            c.fail(lineno, qid, [f"answers {missing!r} not found in gold {good_gold!r}"])
        idle = [
            rel
            for rel in good_gold
            if not any(qa_common.normalise(a) in pages(rel) for a in obj["answers"])
        ]
        if idle:
            c.fail(lineno, qid, [f"gold pages {idle!r} contain none of the answers"])
        if args.strict:
            short = [a for a in obj["answers"] if len(qa_common.normalise(a)) < 3]
            if short:
                c.fail(lineno, qid, [f"--strict: answers too short {short!r}"])

    global_problems += qa_common.minimum_problems(c.total, MIN_TOTAL, c.kinds, {})
    if len(c.gold_pages) < MIN_GOLD_PAGES:
        global_problems.append(
            f"only {len(c.gold_pages)} distinct gold pages (need >= {MIN_GOLD_PAGES})"
        )
    used = sum(1 for k in KINDS if c.kinds[k])
    if used < MIN_KINDS_USED:
        global_problems.append(f"only {used} kinds in use (need >= {MIN_KINDS_USED})")
    share = c.paraphrased_share()
    if share < MIN_PARAPHRASED_SHARE:
        global_problems.append(
            f"paraphrased share {share:.1%} (need >= {MIN_PARAPHRASED_SHARE:.0%})"
        )

    print(f"questions: {c.total}")
    print(f"  {'kind':<14} {'total':>5} {'paraphrased':>11} {'identifier':>10}")
    for k in KINDS:
        print(f"  {k:<14} {c.kinds[k]:>5} {c.kind_style[(k, 'paraphrased')]:>11} "
              f"{c.kind_style[(k, 'identifier')]:>10}")
    print(f"styles: paraphrased {c.styles['paraphrased']}, identifier "
          f"{c.styles['identifier']} (paraphrased share {share:.1%})")
    print(f"subset pages in pages.txt: {len(c.files)}")
    print(f"distinct gold pages: {len(c.gold_pages)}")
    code = c.report(global_problems)
    if ooc_path is not None:
        code = max(code, qa_common.check_out_of_corpus(ooc_path, args.qa, args.pages, c))
    return code


if __name__ == "__main__":
    sys.exit(main())
