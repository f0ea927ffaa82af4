#!/usr/bin/env python3
"""Validate eval/debian-handbook/qa.jsonl against the Debian Administrator's Handbook.

Usage:
    python3 eval/debian-handbook/check_qa.py [--root /usr/share/doc/debian-handbook/html/en-US]
                                             [--qa PATH] [--pages PATH]
                                             [--strict] [--dump-text REL_PATH]
                                             [--out-of-corpus [PATH]]

Checks every line of qa.jsonl:
  * valid JSON object with the required fields and types
  * unique ids
  * kind and style in the allowed sets
  * every gold page exists under the docs root and is in the pages.txt subset
  * at least one answer occurs in the visible text of at least one gold page
    (visible text = HTML minus <head>/<script>/<style>, tags stripped with
    html.parser, a space at block-level tags, entities unescaped, lowercased,
    whitespace collapsed); with --strict, every answer must occur
  * a "paraphrased" question must not contain any of its own answer strings
    and must not contain an absolute path such as /etc/...
Also checks the totals: >= 64 questions, >= 8 per kind, >= 20 distinct gold
pages and a paraphrased share of at least 40%.

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

Prints per-kind and per-style summaries and every failing line with its
reason. Exits 1 if anything fails (in either file), 0 otherwise. Standard
library only (the shared helpers, the out-of-corpus checks included, are in
eval/qa_common.py).
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import qa_common  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ROOT = "/usr/share/doc/debian-handbook/html/en-US"
KINDS = ("how-to", "which-tool", "path", "default", "behaviour", "concept")
STYLES = ("paraphrased", "identifier")
MIN_PER_KIND = 8
MIN_TOTAL = 64
MIN_GOLD_PAGES = 20
MIN_PARAPHRASED_SHARE = 0.40
REQUIRED = qa_common.required_fields(style=True)
ABS_PATH = re.compile(r"(^|[\s(\"'`])~?/[A-Za-z0-9_.-]")
# Block-level tags: a space is inserted where they open or close so that
# table cells, list items and headings do not run into each other. Inline
# markup (<code>, <span>, <em>, <a>) inserts nothing.
BLOCK_TAGS = {
    "address", "article", "aside", "blockquote", "br", "caption", "dd", "div",
    "dl", "dt", "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5",
    "h6", "header", "hr", "li", "ol", "p", "pre", "section", "table", "tbody",
    "td", "tfoot", "th", "thead", "tr", "ul",
}
SKIP_TAGS = ("head", "script", "style")
TEXT = dict(skip=SKIP_TAGS, block=BLOCK_TAGS, sep="")


def main(argv=None):
    args, c, code, ooc_path = qa_common.setup_with_ooc(
        __doc__, HERE, argv, ("--root", "--docs"),
        dict(dest="root", default=DEFAULT_ROOT, help="HTML docs root (default: %(default)s)"),
        "require every answer (not just one) to occur in some gold page", TEXT)
    if code is not None:
        return code

    for lineno, qid, obj in c.records(args.qa):
        if c.fail(lineno, qid, qa_common.field_problems(obj, REQUIRED, "unexpected")):
            continue
        reasons = qa_common.content_problems(obj)
        if not re.fullmatch(r"dhqa-\d{3}", qid):
            reasons.append(f"id {qid!r} does not match dhqa-NNN")
        reasons += c.duplicate(qid, lineno)
        reasons += qa_common.not_in(obj, "kind", KINDS) + qa_common.not_in(obj, "style", STYLES)
        if c.fail(lineno, qid, reasons):
            continue
        c.count(obj)

        if obj["style"] == "paraphrased":
            q = qa_common.normalise(obj["question"])
            leaked = [a for a in obj["answers"] if qa_common.normalise(a) in q]
            if leaked:
                reasons.append(f"paraphrased question contains its answer {leaked!r}")
            if ABS_PATH.search(obj["question"]):
                reasons.append("paraphrased question contains a file path")

        good_gold, gold_reasons = c.gold(obj)
        if c.fail(lineno, qid, reasons + gold_reasons):
            continue
        c.any_answer(lineno, qid, obj, good_gold, args.strict)

    global_problems = qa_common.minimum_problems(
        c.total, MIN_TOTAL, c.kinds, {k: MIN_PER_KIND for k in KINDS})
    share = c.paraphrased_share()
    if share < MIN_PARAPHRASED_SHARE:
        global_problems.append(
            f"paraphrased share {share:.0%} (need >= {MIN_PARAPHRASED_SHARE:.0%})")
    if len(c.gold_pages) < MIN_GOLD_PAGES:
        global_problems.append(
            f"only {len(c.gold_pages)} distinct gold pages (need >= {MIN_GOLD_PAGES})")

    print(f"questions: {c.total}")
    print("by kind:         total  paraphrased  identifier")
    for k in KINDS:
        print(f"  {k:<14} {c.kinds[k]:>5}  {c.kind_style[(k, 'paraphrased')]:>11}"
              f"  {c.kind_style[(k, 'identifier')]:>10}")
    print("by style:")
    for s in STYLES:
        print(f"  {s:<14} {c.styles[s]:>5}")
    print(f"paraphrased share: {share:.1%}")
    print(f"distinct gold pages: {len(c.gold_pages)} "
          f"(pages.txt lists {len(c.files)} pages)")
    code = c.report(global_problems)
    if ooc_path is not None:
        code = max(code, qa_common.check_out_of_corpus(ooc_path, args.qa, args.pages, c))
    return code


if __name__ == "__main__":
    sys.exit(main())
