#!/usr/bin/env python3
"""Validate eval/python-docs/qa.jsonl against the Python 3.11 HTML docs.

Usage:
    python3 eval/python-docs/check_qa.py [--docs /usr/share/doc/python3.11/html]
                                         [--qa PATH] [--pages PATH]
                                         [--strict] [--dump-text REL_PATH]

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

Prints a per-kind summary and every failing line with its reason.
Exits 1 if anything fails, 0 otherwise. Standard library only.
"""

import argparse
import html
import json
import os
import re
import sys
from collections import Counter, OrderedDict
from html.parser import HTMLParser

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DOCS = "/usr/share/doc/python3.11/html"
KINDS = ("behaviour", "default", "which-module", "version", "syntax")
MIN_PER_KIND = {"behaviour": 12, "default": 12, "which-module": 12, "version": 12}
MIN_TOTAL = 60
REQUIRED = OrderedDict(
    [("id", str), ("kind", str), ("question", str), ("answers", list), ("gold", list)]
)
WS = re.compile(r"\s+")


class _TextExtractor(HTMLParser):
    """Collects text data, skipping the contents of <script> and <style>."""

    def __init__(self):
        # convert_charrefs=True: entities are unescaped in handle_data.
        super().__init__(convert_charrefs=True)
        self.parts = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def normalise(s):
    return WS.sub(" ", html.unescape(s).lower()).strip()


def visible_text(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        raw = f.read()
    p = _TextExtractor()
    p.feed(raw)
    p.close()
    # Joined with "" so inline markup (<code><span class="pre">...) does not
    # insert spurious spaces; Sphinx output keeps newlines between blocks.
    return normalise("".join(p.parts))


def load_pages(pages_path):
    files, prefixes = set(), []
    with open(pages_path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.endswith("/"):
                prefixes.append(line)
            else:
                files.add(line)
    return files, prefixes


def in_subset(rel, files, prefixes):
    return rel in files or any(rel.startswith(p) for p in prefixes)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", default=DEFAULT_DOCS, help="HTML docs root")
    ap.add_argument("--qa", default=os.path.join(HERE, "qa.jsonl"))
    ap.add_argument("--pages", default=os.path.join(HERE, "pages.txt"))
    ap.add_argument(
        "--strict",
        action="store_true",
        help="require every answer (not just one) to occur in some gold page",
    )
    ap.add_argument(
        "--dump-text",
        metavar="REL_PATH",
        help="print the normalised visible text of one page and exit",
    )
    args = ap.parse_args(argv)

    if args.dump_text:
        print(visible_text(os.path.join(args.docs, args.dump_text)))
        return 0

    if not os.path.isdir(args.docs):
        print(f"error: docs root not found: {args.docs}", file=sys.stderr)
        return 1
    files, prefixes = load_pages(args.pages)

    text_cache = {}

    def page_text(rel):
        if rel not in text_cache:
            text_cache[rel] = visible_text(os.path.join(args.docs, rel))
        return text_cache[rel]

    failures = []  # (lineno, id, reason)
    kinds = Counter()
    seen_ids = {}
    total = 0

    with open(args.qa, encoding="utf-8") as f:
        lines = f.readlines()

    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            failures.append((lineno, "?", "blank line"))
            continue
        total += 1
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            failures.append((lineno, "?", f"invalid JSON: {e}"))
            continue
        if not isinstance(obj, dict):
            failures.append((lineno, "?", "not a JSON object"))
            continue
        qid = obj.get("id", "?")
        reasons = []
        for key, typ in REQUIRED.items():
            if key not in obj:
                reasons.append(f"missing field {key!r}")
            elif not isinstance(obj[key], typ):
                reasons.append(f"field {key!r} is not {typ.__name__}")
        if reasons:
            failures.append((lineno, qid, "; ".join(reasons)))
            continue
        for key in ("answers", "gold"):
            if not obj[key]:
                reasons.append(f"{key!r} is empty")
            elif not all(isinstance(x, str) and x.strip() for x in obj[key]):
                reasons.append(f"{key!r} must hold non-empty strings")
        if not obj["question"].strip():
            reasons.append("empty question")
        if qid in seen_ids:
            reasons.append(f"duplicate id (first on line {seen_ids[qid]})")
        else:
            seen_ids[qid] = lineno
        if obj["kind"] not in KINDS:
            reasons.append(f"kind {obj['kind']!r} not in {KINDS}")
        else:
            kinds[obj["kind"]] += 1
        if reasons:
            failures.append((lineno, qid, "; ".join(reasons)))
            continue

        good_gold = []
        for rel in obj["gold"]:
            if rel.startswith("/") or ".." in rel.split("/"):
                reasons.append(f"gold {rel!r} must be a relative path")
            elif not os.path.isfile(os.path.join(args.docs, rel)):
                reasons.append(f"gold {rel!r} does not exist under {args.docs}")
            elif not in_subset(rel, files, prefixes):
                reasons.append(f"gold {rel!r} not in pages.txt subset")
            else:
                good_gold.append(rel)
        if reasons:
            failures.append((lineno, qid, "; ".join(reasons)))
            continue

        answers = [normalise(a) for a in obj["answers"]]
        found = any(a in page_text(rel) for a in answers for rel in good_gold)
        if not found:
            failures.append(
                (lineno, qid, f"no answer {obj['answers']!r} found in gold {good_gold!r}")
            )
        elif args.strict:
            missing = [
                orig
                for orig, a in zip(obj["answers"], answers)
                if not any(a in page_text(rel) for rel in good_gold)
            ]
            if missing:
                failures.append(
                    (lineno, qid, f"--strict: answers {missing!r} not found in gold")
                )

    global_problems = []
    if total < MIN_TOTAL:
        global_problems.append(f"only {total} questions (need >= {MIN_TOTAL})")
    for k, n in MIN_PER_KIND.items():
        if kinds[k] < n:
            global_problems.append(f"kind {k!r}: {kinds[k]} questions (need >= {n})")

    print(f"questions: {total}")
    for k in KINDS:
        print(f"  {k:<13} {kinds[k]}")
    print(f"gold pages referenced: {len(text_cache)}")
    for lineno, qid, reason in failures:
        print(f"FAIL line {lineno} ({qid}): {reason}")
    for p in global_problems:
        print(f"FAIL: {p}")
    nfail = len(failures) + len(global_problems)
    print(f"{'OK' if nfail == 0 else 'FAILED'}: {len(failures)} failing lines, "
          f"{len(global_problems)} global problems")
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
