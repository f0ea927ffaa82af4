#!/usr/bin/env python3
"""Validate eval/python-docs/qa.jsonl against the Python 3.11 HTML docs.

Usage:
    python3 eval/python-docs/check_qa.py [--docs /usr/share/doc/python3.11/html]
                                         [--qa PATH] [--pages PATH]
                                         [--strict] [--dump-text REL_PATH]
                                         [--out-of-corpus [PATH]]

Checks every line of qa.jsonl:
  * valid JSON object with the required fields and types
  * unique ids
  * kind in the allowed set
  * every gold page exists under the docs root and is in the pages.txt subset
  * at least one answer occurs in the visible text of at least one gold page
    (visible text = HTML minus <script>/<style>, tags stripped with html.parser,
    entities unescaped, lowercased, whitespace collapsed)
Also checks the totals: >= 60 questions and >= 12 per kind for
behaviour/default/which-module/version.

With --out-of-corpus (PATH defaults to out-of-corpus.jsonl next to this
script) it also checks the out-of-corpus questions, which the subset corpus
must not answer:
  * valid JSON object; id, kind == "out-of-corpus", non-empty question,
    answers == [], gold == [], absent a non-empty list of non-empty,
    lowercase, stripped strings
  * ids unique within the file and not used by qa.jsonl
  * >= 30 questions
  * no absent term occurs in the visible text of any page of the pages.txt
    subset (same extraction and normalisation as above)

Prints a per-kind summary and every failing line with its reason.
Exits 1 if anything fails (in either file), 0 otherwise. Standard library
only (the shared helpers, the out-of-corpus checks included, are in
eval/qa_common.py).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import qa_common  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DOCS = "/usr/share/doc/python3.11/html"
KINDS = ("behaviour", "default", "which-module", "version", "syntax")
MIN_PER_KIND = {"behaviour": 12, "default": 12, "which-module": 12, "version": 12}
MIN_TOTAL = 60
REQUIRED = qa_common.required_fields(style=False)
# Visible text: <script>/<style> dropped, parts joined with "" so inline markup
# (<code><span class="pre">...) does not insert spurious spaces; Sphinx output
# keeps newlines between blocks.
TEXT = dict(skip=("script", "style"), block=(), sep="")


def main(argv=None):
    args, c, code, ooc_path = qa_common.setup_with_ooc(
        __doc__, HERE, argv, ("--docs",), dict(default=DEFAULT_DOCS, help="HTML docs root"),
        "require every answer (not just one) to occur in some gold page", TEXT)
    if code is not None:
        return code

    for lineno, qid, obj in c.records(args.qa):
        if c.fail(lineno, qid, qa_common.field_problems(obj, REQUIRED)):
            continue
        reasons = qa_common.content_problems(obj) + c.duplicate(qid, lineno)
        if obj["kind"] not in KINDS:
            reasons += qa_common.not_in(obj, "kind", KINDS)
        else:
            c.kinds[obj["kind"]] += 1
        if c.fail(lineno, qid, reasons):
            continue

        good_gold, reasons = c.gold(obj)
        if c.fail(lineno, qid, reasons):
            continue
        c.any_answer(lineno, qid, obj, good_gold, args.strict)

    global_problems = qa_common.minimum_problems(c.total, MIN_TOTAL, c.kinds, MIN_PER_KIND)

    print(f"questions: {c.total}")
    for k in KINDS:
        print(f"  {k:<13} {c.kinds[k]}")
    print(f"gold pages referenced: {len(c.pages)}")
    code = c.report(global_problems)
    if ooc_path is not None:
        code = max(code, qa_common.check_out_of_corpus(ooc_path, args.qa, args.pages, c))
    return code


if __name__ == "__main__":
    sys.exit(main())
