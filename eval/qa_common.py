"""Shared helpers for the QA-set validators (eval/*/check_qa.py) and
eval/naive_bm25.py. Standard library only.

What lives here: visible-text extraction from HTML (one extractor, the tags
it drops and the tags that separate words are parameters), normalisation,
pages.txt loading, reading qa.jsonl line by line, the field / id / kind /
gold-page checks every set shares, the failure report, and the
--out-of-corpus option with its checks (the same for every set). What each set
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


# --- Out-of-corpus questions (eval/*/out-of-corpus.jsonl) -------------------
#
# Questions that the subset corpus must not answer (they measure the refusal
# path). Every set's checker takes the same --out-of-corpus [PATH] option and
# applies the same rules; only the visible-text extraction (the set's
# PageText) and the default path (next to the checker) differ.

OOC_FILE = "out-of-corpus.jsonl"
OOC_KIND = "out-of-corpus"
OOC_MIN_TOTAL = 30
OOC_REQUIRED = OrderedDict(
    [("id", str), ("kind", str), ("question", str), ("answers", list), ("gold", list),
     ("absent", list)])


def ooc_help(min_total=OOC_MIN_TOTAL):
    return (
        "also validate an out-of-corpus questions file (default PATH: %s next to "
        "this script): kind 'out-of-corpus', empty answers and gold, ids unique (also "
        "against --qa), >= %d questions, and no 'absent' term in the visible text of "
        "any page of the pages.txt subset" % (OOC_FILE, min_total))


def split_ooc_flag(argv, default_path, min_total=OOC_MIN_TOTAL):
    """Takes --out-of-corpus [PATH] off the command line (the shared parser in
    setup() does not know it). Returns (path or None, remaining argv, the
    small parser, whose help --help appends)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--out-of-corpus", nargs="?", const=default_path, default=None,
                     metavar="PATH", help=ooc_help(min_total))
    ns, rest = pre.parse_known_args(sys.argv[1:] if argv is None else argv)
    return ns.out_of_corpus, rest, pre


def setup_with_ooc(doc, here, argv, root_flags, root_kwargs, strict_help, text):
    """setup() plus the --out-of-corpus [PATH] option (PATH defaults to
    out-of-corpus.jsonl in `here`). Returns (args, checker, code, ooc_path):
    ooc_path is None when the flag is not given. --help also lists the flag."""
    ooc_path, argv, pre = split_ooc_flag(argv, os.path.join(here, OOC_FILE))
    try:
        args, c, code = setup(doc, here, argv, root_flags, root_kwargs, strict_help, text)
    except SystemExit as e:
        if e.code == 0:  # --help: the shared parser does not list this flag
            print("\nout-of-corpus option (handled by this script):")
            print(pre.format_help().split("\n", 2)[-1].rstrip())
        raise
    return args, c, code, ooc_path


def subset_pages(root, files, prefixes):
    """Relative paths of the pages.txt subset under root (a prefix line means
    every .html file below it), and the listed files that are missing."""
    found, missing = set(), []
    for rel in sorted(files):
        if os.path.isfile(os.path.join(root, rel)):
            found.add(rel)
        else:
            missing.append(rel)
    for prefix in prefixes:
        base = os.path.join(root, prefix)
        if not os.path.isdir(base):
            missing.append(prefix)
            continue
        for dirpath, _dirs, names in os.walk(base):
            for name in names:
                if name.endswith(".html"):
                    found.add(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(found), missing


def qa_ids(qa_path):
    """{id: line number} of every parseable record in qa.jsonl."""
    ids = {}
    with open(qa_path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and isinstance(obj.get("id"), str):
                ids.setdefault(obj["id"], lineno)
    return ids


def check_out_of_corpus(path, qa_path, pages_path, c, min_total=OOC_MIN_TOTAL):
    """Validates an out-of-corpus file; `c` is the set's qa.jsonl Checker (its
    PageText, hence its visible-text extraction, and its pages.txt subset are
    reused). Prints a summary and the failures; returns the exit code.

    Rules: every line a JSON object with OOC_REQUIRED; kind == "out-of-corpus";
    a non-empty question; answers == [] and gold == []; absent a non-empty
    list of non-empty, stripped, lowercase strings; ids unique in the file and
    not used in qa_path; >= min_total questions; no absent term (normalised)
    a substring of the visible text of any subset page."""
    print(f"\nout-of-corpus: {path}")
    if not os.path.isfile(path):
        print(f"FAIL: out-of-corpus file not found: {path}")
        print("FAILED: 0 failing lines, 1 global problems")
        return 1
    o = Checker(c.pages, pages_path)
    pages, missing = subset_pages(c.pages.root, c.files, c.prefixes)
    global_problems = [f"pages.txt entry {m!r} not found under {c.pages.root}" for m in missing]
    if not pages:
        global_problems.append("no subset pages to check absent terms against")
    taken = qa_ids(qa_path)
    terms = set()

    for lineno, qid, obj in o.records(path):
        if o.fail(lineno, qid, field_problems(obj, OOC_REQUIRED)):
            continue
        reasons = o.duplicate(qid, lineno)
        if not qid.strip():
            reasons.append("empty id")
        if qid in taken:
            reasons.append(f"id also used in {os.path.basename(qa_path)} (line {taken[qid]})")
        if obj["kind"] != OOC_KIND:
            reasons.append(f"kind {obj['kind']!r} is not {OOC_KIND!r}")
        else:
            o.kinds[OOC_KIND] += 1
        if not obj["question"].strip():
            reasons.append("empty question")
        for key in ("answers", "gold"):
            if obj[key]:
                reasons.append(f"{key!r} must be [] (got {obj[key]!r})")
        absent = obj["absent"]
        bad = [t for t in absent
               if not isinstance(t, str) or not t.strip() or t != t.strip() or t != t.lower()]
        if not absent:
            reasons.append("'absent' is empty")
        elif bad:
            reasons.append(f"'absent' must hold non-empty, stripped, lowercase strings: {bad!r}")
        for term in absent:
            if term not in bad:
                terms.add(term)
                norm = normalise(term)
                hits = [rel for rel in pages if norm in c.pages(rel)]
                if hits:
                    more = f" (+{len(hits) - 3} more)" if len(hits) > 3 else ""
                    reasons.append(f"absent term {term!r} occurs in {hits[:3]!r}{more}")
        o.fail(lineno, qid, reasons)

    if o.total < min_total:
        global_problems.append(f"only {o.total} out-of-corpus questions (need >= {min_total})")
    print(f"questions: {o.total}")
    print(f"  {OOC_KIND:<13} {o.kinds[OOC_KIND]}")
    print(f"distinct absent terms: {len(terms)}, checked against {len(pages)} subset pages")
    return o.report(global_problems)
