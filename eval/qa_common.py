"""Shared helpers for the QA-set validators (eval/*/check_qa.py) and
eval/naive_bm25.py. Standard library only.

What lives here: visible-text extraction from HTML (one extractor, the tags
it drops and the tags that separate words are parameters), normalisation,
pages.txt loading, reading qa.jsonl line by line, the field / id / kind /
gold-page checks every set shares, and the failure report. What each set
checks beyond that (its kinds, minimums, docs root, extra rules) stays in its
own check_qa.py.
"""

import argparse
import html
import json
import os
import re
import sys
from collections import Counter, OrderedDict
from html.parser import HTMLParser

WS = re.compile(r"\s+")

# Dropped by every extractor unless told otherwise.
SCRIPT_STYLE = frozenset({"script", "style"})


class TextExtractor(HTMLParser):
    """Collects text data, dropping the subtrees of the `skip` tags.

    `skip`: tags whose whole content is dropped (an open one is remembered on
    a stack; its end tag pops back to it, which tolerates sloppy nesting).
    `block`: tags that separate words; a space is emitted where one opens or
    closes (outside skipped subtrees) so that adjacent blocks or table cells
    are not glued together. Inline markup emits nothing.
    """

    def __init__(self, skip=SCRIPT_STYLE, block=()):
        # convert_charrefs=True: entities are unescaped in handle_data.
        super().__init__(convert_charrefs=True)
        self.skip = frozenset(skip)
        self.block = frozenset(block)
        self.parts = []
        self._open = []  # stack of open skip tags

    def handle_starttag(self, tag, attrs):
        if tag in self.skip:
            self._open.append(tag)
        elif tag in self.block and not self._open:
            self.parts.append(" ")

    def handle_startendtag(self, tag, attrs):
        # A self-closing skip tag has no content to drop.
        if tag in self.block and not self._open:
            self.parts.append(" ")

    def handle_endtag(self, tag):
        if tag in self.skip:
            if tag in self._open:
                while self._open.pop() != tag:
                    pass
        elif tag in self.block and not self._open:
            self.parts.append(" ")

    def handle_data(self, data):
        if not self._open:
            self.parts.append(data)


def extract_text(raw, skip=SCRIPT_STYLE, block=(), sep=""):
    """The text parts of an HTML string joined with `sep` (not normalised)."""
    p = TextExtractor(skip, block)
    p.feed(raw)
    p.close()
    return sep.join(p.parts)


def collapse(s):
    """Entities unescaped, whitespace collapsed, stripped (case kept)."""
    return WS.sub(" ", html.unescape(s)).strip()


def normalise(s):
    """Entities unescaped, lowercased, whitespace collapsed, stripped."""
    return WS.sub(" ", html.unescape(s).lower()).strip()


def read_text(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def visible_text(path, skip=SCRIPT_STYLE, block=(), sep=""):
    """The normalised visible text of one HTML file."""
    return normalise(extract_text(read_text(path), skip, block, sep))


class PageText:
    """Visible text of pages under a docs root, by relative path, cached."""

    def __init__(self, root, skip=SCRIPT_STYLE, block=(), sep=""):
        self.root = root
        self.opts = (skip, block, sep)
        self._cache = {}

    def path(self, rel):
        return os.path.join(self.root, rel)

    def extract(self, rel):
        """Uncached, for --dump-text."""
        return visible_text(self.path(rel), *self.opts)

    def __call__(self, rel):
        if rel not in self._cache:
            self._cache[rel] = self.extract(rel)
        return self._cache[rel]

    def __len__(self):
        return len(self._cache)


def load_pages(pages_path):
    """pages.txt: one relative path a line; a line ending in / is a prefix."""
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


def add_common_args(ap, here, strict_help):
    """--qa, --pages, --strict, --dump-text (the docs-root flag is per set)."""
    ap.add_argument("--qa", default=os.path.join(here, "qa.jsonl"))
    ap.add_argument("--pages", default=os.path.join(here, "pages.txt"))
    ap.add_argument("--strict", action="store_true", help=strict_help)
    ap.add_argument(
        "--dump-text",
        metavar="REL_PATH",
        help="print the normalised visible text of one page and exit",
    )


def setup(doc, here, argv, root_flags, root_kwargs, strict_help, text):
    """The start of every checker's main(): parses the command line (the
    docs-root flag, whose dest names the attribute, then the common flags),
    handles --dump-text and a missing docs root.

    Returns (args, checker, code): code is an exit code to return at once, or
    None with a Checker to go on with. `text` holds the visible_text options.
    """
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    action = ap.add_argument(*root_flags, **root_kwargs)
    add_common_args(ap, here, strict_help)
    args = ap.parse_args(argv)
    pages = PageText(getattr(args, action.dest), **text)
    if args.dump_text:
        print(pages.extract(args.dump_text))
        return args, None, 0
    if not os.path.isdir(pages.root):
        print(f"error: docs root not found: {pages.root}", file=sys.stderr)
        return args, None, 1
    return args, Checker(pages, args.pages), None


class Checker:
    """The state of one qa.jsonl validation: failures, ids seen, counts."""

    def __init__(self, pages, pages_path):
        self.pages = pages  # a PageText
        self.files, self.prefixes = load_pages(pages_path)
        self.failures = []  # (lineno, id, reason)
        self.seen_ids = {}
        self.total = 0
        self.kinds = Counter()
        self.styles = Counter()
        self.kind_style = Counter()
        self.gold_pages = set()

    def records(self, qa_path):
        """Yields (lineno, id, obj) for every line holding a JSON object;
        blank lines, invalid JSON and non-objects are failures. Every
        non-blank line counts towards total."""
        with open(qa_path, encoding="utf-8") as f:
            lines = f.readlines()
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                self.failures.append((lineno, "?", "blank line"))
                continue
            self.total += 1
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                self.failures.append((lineno, "?", f"invalid JSON: {e}"))
                continue
            if not isinstance(obj, dict):
                self.failures.append((lineno, "?", "not a JSON object"))
                continue
            yield lineno, obj.get("id", "?"), obj

    def fail(self, lineno, qid, reasons):
        """Records the reasons as one failing line; True if there were any."""
        if reasons:
            self.failures.append((lineno, qid, "; ".join(reasons)))
        return bool(reasons)

    def count(self, obj):
        self.kinds[obj["kind"]] += 1
        self.styles[obj["style"]] += 1
        self.kind_style[(obj["kind"], obj["style"])] += 1

    def duplicate(self, qid, lineno):
        if qid in self.seen_ids:
            return [f"duplicate id (first on line {self.seen_ids[qid]})"]
        self.seen_ids[qid] = lineno
        return []

    def gold(self, obj):
        """(good gold pages, reasons) for the record's gold list."""
        good, reasons = [], []
        for rel in obj["gold"]:
            if rel.startswith("/") or ".." in rel.split("/"):
                reasons.append(f"gold {rel!r} must be a relative path")
            elif not os.path.isfile(self.pages.path(rel)):
                reasons.append(f"gold {rel!r} does not exist under {self.pages.root}")
            elif not in_subset(rel, self.files, self.prefixes):
                reasons.append(f"gold {rel!r} not in pages.txt subset")
            else:
                good.append(rel)
                self.gold_pages.add(rel)
        return good, reasons

    def any_answer(self, lineno, qid, obj, good_gold, strict):
        """At least one answer in some gold page; with strict, every one."""
        answers = [normalise(a) for a in obj["answers"]]
        found = any(a in self.pages(rel) for a in answers for rel in good_gold)
        if not found:
            self.failures.append(
                (lineno, qid, f"no answer {obj['answers']!r} found in gold {good_gold!r}")
            )
        elif strict:
            missing = [
                orig
                for orig, a in zip(obj["answers"], answers)
                if not any(a in self.pages(rel) for rel in good_gold)
            ]
            if missing:
                self.failures.append(
                    (lineno, qid, f"--strict: answers {missing!r} not found in gold")
                )

    def paraphrased_share(self):
        counted = sum(self.styles.values())
        return self.styles["paraphrased"] / counted if counted else 0.0

    def report(self, global_problems):
        """Prints every failure and the verdict; returns the exit code."""
        for lineno, qid, reason in self.failures:
            print(f"FAIL line {lineno} ({qid}): {reason}")
        for p in global_problems:
            print(f"FAIL: {p}")
        nfail = len(self.failures) + len(global_problems)
        print(f"{'OK' if nfail == 0 else 'FAILED'}: {len(self.failures)} failing lines, "
              f"{len(global_problems)} global problems")
        return 1 if nfail else 0


def required_fields(style):
    """The fields every record must have, in the order they are checked."""
    fields = [("id", str), ("kind", str)]
    if style:
        fields.append(("style", str))
    fields += [("question", str), ("answers", list), ("gold", list)]
    return OrderedDict(fields)


def field_problems(obj, required, extra_label=None):
    """Missing or mistyped required fields; with extra_label, fields not in
    `required` too ("{extra_label} fields [...]")."""
    reasons = []
    for key, typ in required.items():
        if key not in obj:
            reasons.append(f"missing field {key!r}")
        elif not isinstance(obj[key], typ):
            reasons.append(f"field {key!r} is not {typ.__name__}")
    if extra_label:
        extra = sorted(set(obj) - set(required))
        if extra:
            reasons.append(f"{extra_label} fields {extra!r}")
    return reasons


def content_problems(obj):
    """Empty answers/gold lists, non-string or blank entries, empty question."""
    reasons = []
    for key in ("answers", "gold"):
        if not obj[key]:
            reasons.append(f"{key!r} is empty")
        elif not all(isinstance(x, str) and x.strip() for x in obj[key]):
            reasons.append(f"{key!r} must hold non-empty strings")
    if not obj["question"].strip():
        reasons.append("empty question")
    return reasons


def not_in(obj, key, allowed):
    """["{key} 'x' not in (...)"] when obj[key] is not allowed, else []."""
    if obj[key] not in allowed:
        return [f"{key} {obj[key]!r} not in {allowed}"]
    return []


def minimum_problems(total, min_total, counts, minimums):
    """Too few questions overall, or for any kind in `minimums` ({kind: n})."""
    problems = []
    if total < min_total:
        problems.append(f"only {total} questions (need >= {min_total})")
    for k, n in minimums.items():
        if counts[k] < n:
            problems.append(f"kind {k!r}: {counts[k]} questions (need >= {n})")
    return problems
