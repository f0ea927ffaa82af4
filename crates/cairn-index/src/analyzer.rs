//! The BM25 analyzer: how text and queries become terms.
//!
//! Users search code and technical documentation, so the analyzer (see
//! [`analyze`]) keeps identifiers whole *and* splits them:
//!
//! - text is cut into "compound words": maximal runs of letters, digits and
//!   `_`, joined by `.`, `::`, `:` or `-` when these are followed by more of
//!   the word (so trailing punctuation is dropped). A leading `-` or `--`
//!   followed by a letter or digit is kept when the word starts the text or
//!   follows whitespace or an opening bracket/quote/backtick (CLI flags such
//!   as `-m` or `--prune`);
//! - a compound (one containing `.`, `:`, `-`, `_` or a camelCase hump) is
//!   emitted lowercased and unstemmed (`os.path.join`, `__init__`,
//!   `hashmap`), followed by its dotted prefixes (`os.path`), its
//!   `.`/`::`/`-`-separated segments that are themselves compounds
//!   (`read_to_string`) and finally its parts, split on separators, `_` and
//!   camelCase humps (`os`, `path`, `join`; `camel`, `case`, `name`). Parts are
//!   stemmed like plain words and stopword parts are dropped. Compounds made
//!   only of digits and separators (`3.11`, `2024-01-05`) are kept whole only;
//! - plain words are lowercased, stemmed with the English Snowball stemmer
//!   (when purely alphabetic) and dropped when they are English stopwords;
//! - tokens longer than 64 bytes are skipped.
//!
//! All tokens from one compound word share a position.
//!
//! ```
//! use cairn_index::analyzer::analyze;
//! assert_eq!(analyze("Use os.path.join"), ["use", "os.path.join", "os.path", "os", "path", "join"]);
//! assert_eq!(analyze("Running the tests"), ["run", "test"]);
//! ```

use std::sync::OnceLock;

use rust_stemmers::{Algorithm, Stemmer};
use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

/// Name under which the analyzer is registered on the index. It is part of
/// the schema stored on disk: changing the analyzer's behaviour must change
/// this name, so that existing indexes are reported corrupt and rebuilt.
pub const TOKENIZER_NAME: &str = "cairn_ident_v1";

/// Tokens longer than this (in bytes) are not indexed.
const MAX_TOKEN_BYTES: usize = 64;

/// Stopwords, dropped only when they appear as plain words or identifier parts.
const STOPWORDS: &[&str] = &[
    "a", "an", "the", "of", "to", "in", "is", "and", "or", "for", "on", "with", "as", "by", "at",
    "be", "it", "this", "that", "from",
];

// ---------------------------------------------------------------------------
// Analyzer
// ---------------------------------------------------------------------------

fn stemmer() -> &'static Stemmer {
    static STEMMER: OnceLock<Stemmer> = OnceLock::new();
    STEMMER.get_or_init(|| Stemmer::create(Algorithm::English))
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn is_separator(c: char) -> bool {
    matches!(c, '.' | ':' | '-')
}

/// Whether a `-` at the start of a word may begin a CLI flag, given the
/// character before it.
fn flag_context(prev: Option<char>) -> bool {
    match prev {
        None => true,
        Some(c) => c.is_whitespace() || matches!(c, '`' | '(' | '[' | '{' | '"' | '\''),
    }
}

fn is_stopword(word: &str) -> bool {
    STOPWORDS.contains(&word)
}

/// Byte offsets (within `s`) where camelCase humps start, excluding 0.
/// `camelCase` → `camel|Case`; `HTTPServer` → `HTTP|Server`; `URLs` and
/// `IPv6` are not split.
fn camel_boundaries(s: &str) -> Vec<usize> {
    if !s.chars().skip(1).any(char::is_uppercase) {
        return Vec::new();
    }
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let mut out = Vec::new();
    for i in 1..chars.len() {
        let (at, c) = chars[i];
        if !c.is_uppercase() {
            continue;
        }
        let prev = chars[i - 1].1;
        if prev.is_lowercase() {
            out.push(at);
        } else if i >= 2 && prev.is_uppercase() && chars[i - 2].1.is_uppercase() {
            // An acronym followed by a capitalised word: split before the
            // word's capital, but only when at least two lowercase letters
            // follow (so the plural `URLs` stays whole).
            let lower_run = chars[i + 1..]
                .iter()
                .take_while(|(_, ch)| ch.is_lowercase())
                .count();
            if lower_run >= 2 {
                out.push(at);
            }
        }
    }
    out
}

fn has_camel(s: &str) -> bool {
    !camel_boundaries(s).is_empty()
}

/// The parts of the analyzer, each of which can be switched off for an
/// ablation (`[index] bm25_stemming`, `bm25_stopwords`, `bm25_compounds`; all
/// on by default). Which parts are on is part of the tokenizer's name, so it
/// is part of the schema on disk: an index built with other parts is
/// rebuilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Analyzer {
    /// English Snowball stemming of purely alphabetic words.
    pub stemming: bool,
    /// Dropping a short list of English stopwords.
    pub stopwords: bool,
    /// Identifiers (`os.path.join`, `snake_case`, `camelCase`) indexed
    /// whole, with their dotted prefixes and their parts; off, they are only
    /// split into parts at punctuation, like a plain word tokenizer.
    pub compounds: bool,
}

impl Default for Analyzer {
    fn default() -> Self {
        Analyzer {
            stemming: true,
            stopwords: true,
            compounds: true,
        }
    }
}

impl Analyzer {
    /// The name the analyzer is registered under on an index.
    pub fn tokenizer_name(&self) -> String {
        if *self == Analyzer::default() {
            TOKENIZER_NAME.to_string()
        } else {
            format!(
                "{TOKENIZER_NAME}_stem{}_stop{}_comp{}",
                u8::from(self.stemming),
                u8::from(self.stopwords),
                u8::from(self.compounds)
            )
        }
    }

    /// The terms `text` is indexed under (or searched with), in order.
    pub fn analyze(&self, text: &str) -> Vec<String> {
        let mut tokens = Vec::new();
        analyze_into(text, &mut tokens, *self);
        tokens.into_iter().map(|t| t.text).collect()
    }
}

/// Collects the tokens of one text.
struct Sink<'a> {
    opts: Analyzer,
    out: &'a mut Vec<Token>,
    position: usize,
    /// Index in `out` of the first token of the current word (for dedup).
    word_start: usize,
}

impl Sink<'_> {
    fn push(&mut self, text: String, from: usize, to: usize) {
        if text.is_empty() || text.len() > MAX_TOKEN_BYTES {
            return;
        }
        if self.out[self.word_start..].iter().any(|t| t.text == text) {
            return;
        }
        self.out.push(Token {
            offset_from: from,
            offset_to: to,
            position: self.position,
            text,
            position_length: 1,
        });
    }

    /// A plain word or an identifier part: lowercase, drop stopwords, stem
    /// when purely alphabetic.
    fn push_word(&mut self, word: &str, from: usize) {
        if !word.chars().any(char::is_alphanumeric) || word.len() > 4 * MAX_TOKEN_BYTES {
            return;
        }
        let lower = word.to_lowercase();
        if self.opts.stopwords && is_stopword(&lower) {
            return;
        }
        let text = if self.opts.stemming && lower.chars().all(char::is_alphabetic) {
            stemmer().stem(&lower).into_owned()
        } else {
            lower
        };
        self.push(text, from, from + word.len());
    }

    /// A compound word: the whole, dotted prefixes, sub-compounds and parts.
    fn push_compound(&mut self, run: &str, from: usize) {
        self.push(run.to_lowercase(), from, from + run.len());
        if run
            .chars()
            .all(|c| c.is_ascii_digit() || is_separator(c) || c == '_')
        {
            // Version numbers, dates, decimals: whole only.
            return;
        }
        // Segments between `.`, `:` and `-` separators, with their offsets.
        let mut segments: Vec<(usize, &str)> = Vec::new();
        let mut seg_start = 0;
        for (i, c) in run.char_indices() {
            if is_separator(c) {
                if i > seg_start {
                    segments.push((seg_start, &run[seg_start..i]));
                }
                seg_start = i + c.len_utf8();
            }
        }
        if seg_start < run.len() {
            segments.push((seg_start, &run[seg_start..]));
        }

        // Dotted / path prefixes: `os.path.join` → `os.path`;
        // `std::fs::read_to_string` → `std::fs`.
        if !run.starts_with('-') && segments.len() >= 3 {
            for &(start, seg) in &segments[1..segments.len() - 1] {
                let end = start + seg.len();
                if end > MAX_TOKEN_BYTES {
                    break;
                }
                if matches!(run[end..].chars().next(), Some('.' | ':')) {
                    self.push(run[..end].to_lowercase(), from, from + end);
                }
            }
        }

        for &(start, seg) in &segments {
            if !seg.chars().any(char::is_alphanumeric) {
                continue;
            }
            let is_sub_compound = seg.len() < run.len()
                && (seg.trim_matches('_').contains('_') || seg.starts_with('_') || has_camel(seg));
            if is_sub_compound {
                self.push(seg.to_lowercase(), from + start, from + start + seg.len());
            }
            // Parts: split on `_`, then on camelCase humps.
            let mut piece_start = 0;
            for piece in seg.split('_') {
                let piece_from = start + piece_start;
                piece_start += piece.len() + 1;
                if piece.is_empty() {
                    continue;
                }
                let mut prev = 0;
                for b in camel_boundaries(piece).into_iter().chain([piece.len()]) {
                    self.push_word(&piece[prev..b], from + piece_from + prev);
                    prev = b;
                }
            }
        }
    }

    fn push_run(&mut self, run: &str, from: usize) {
        self.word_start = self.out.len();
        if !run.chars().any(char::is_alphanumeric) {
            return;
        }
        let compound = run.contains(['.', ':', '-', '_']) || has_camel(run);
        if compound && self.opts.compounds {
            self.push_compound(run, from);
        } else if compound {
            // Parts at punctuation only, as a plain word tokenizer does.
            let mut start = 0;
            for piece in run.split(['.', ':', '-', '_']) {
                if !piece.is_empty() {
                    self.push_word(piece, from + start);
                }
                start += piece.len() + 1;
            }
        } else {
            self.push_word(run, from);
        }
        self.position += 1;
    }
}

/// Appends the tokens of `text` to `out`.
fn analyze_into(text: &str, out: &mut Vec<Token>, opts: Analyzer) {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let n = chars.len();
    let char_at = |i: usize| chars.get(i).map(|&(_, c)| c);
    let mut sink = Sink {
        opts,
        out,
        position: 0,
        word_start: 0,
    };
    let mut i = 0;
    while i < n {
        let c = chars[i].1;
        let mut j = if is_word_char(c) {
            i + 1
        } else if c == '-' && flag_context(if i == 0 { None } else { char_at(i - 1) }) {
            let dashes = if char_at(i + 1) == Some('-') { 2 } else { 1 };
            if char_at(i + dashes).is_some_and(char::is_alphanumeric) {
                i + dashes + 1
            } else {
                i += 1;
                continue;
            }
        } else {
            i += 1;
            continue;
        };
        // Extend the run; separators are only taken when the word goes on.
        while j < n {
            let cj = chars[j].1;
            let next = char_at(j + 1);
            if is_word_char(cj) {
                j += 1;
            } else if match cj {
                // `.` and `:` may lead to `_` (`self.__init__`), `-` may not.
                '.' | ':' => next.is_some_and(is_word_char),
                '-' => next.is_some_and(char::is_alphanumeric),
                _ => false,
            } {
                j += 2;
            } else if cj == ':' && next == Some(':') && char_at(j + 2).is_some_and(is_word_char) {
                j += 3;
            } else {
                break;
            }
        }
        let from = chars[i].0;
        let to = chars.get(j).map_or(text.len(), |&(b, _)| b);
        sink.push_run(&text[from..to], from);
        i = j;
    }
}

/// The analyzer used for both indexing and querying: the terms `text` is
/// indexed under (or searched with), in order. See the [module
/// documentation](self) for the rules.
pub fn analyze(text: &str) -> Vec<String> {
    Analyzer::default().analyze(text)
}

/// The identifier-friendly analyzer as a tantivy [`Tokenizer`].
#[derive(Clone, Debug)]
pub struct IdentTokenizer {
    tokens: Vec<Token>,
    opts: Analyzer,
}

impl IdentTokenizer {
    /// The tokenizer with some of its parts switched off.
    pub fn with(opts: Analyzer) -> IdentTokenizer {
        IdentTokenizer {
            tokens: Vec::new(),
            opts,
        }
    }
}

/// Token stream of [`IdentTokenizer`].
pub struct IdentTokenStream<'a> {
    tokens: &'a mut Vec<Token>,
    next: usize,
}

impl Tokenizer for IdentTokenizer {
    type TokenStream<'a> = IdentTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> IdentTokenStream<'a> {
        self.tokens.clear();
        analyze_into(text, &mut self.tokens, self.opts);
        IdentTokenStream {
            tokens: &mut self.tokens,
            next: 0,
        }
    }
}

impl TokenStream for IdentTokenStream<'_> {
    fn advance(&mut self) -> bool {
        if self.next < self.tokens.len() {
            self.next += 1;
            true
        } else {
            false
        }
    }

    fn token(&self) -> &Token {
        &self.tokens[self.next.saturating_sub(1)]
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next.saturating_sub(1)]
    }
}

// ---------------------------------------------------------------------------
// Index
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn a(text: &str) -> Vec<String> {
        analyze(text)
    }

    #[test]
    fn analyze_identifiers() {
        assert_eq!(
            a("os.path.join"),
            ["os.path.join", "os.path", "os", "path", "join"]
        );
        assert_eq!(a("__init__"), ["__init__", "init"]);
        assert_eq!(a("sys.argv"), ["sys.argv", "sys", "argv"]);
        assert_eq!(a("python -m venv"), ["python", "-m", "m", "venv"]);
        assert_eq!(a("-m venv"), ["-m", "m", "venv"]);
        assert_eq!(
            a("std::fs::read_to_string"),
            [
                "std::fs::read_to_string",
                "std::fs",
                "std",
                "fs",
                "read_to_string",
                "read",
                "string"
            ]
        );
        assert_eq!(a("HashMap<K, V>"), ["hashmap", "hash", "map", "k", "v"]);
        assert_eq!(
            a("snake_case_name"),
            ["snake_case_name", "snake", "case", "name"]
        );
        assert_eq!(
            a("camelCaseName"),
            ["camelcasename", "camel", "case", "name"]
        );
        assert_eq!(a("--prune"), ["--prune", "prune"]);
        assert_eq!(
            a("git fetch --prune."),
            ["git", "fetch", "--prune", "prune"]
        );
        assert_eq!(a("Python 3.11"), ["python", "3.11"]);
        assert_eq!(
            a("self.__init__(x)"),
            ["self.__init__", "self", "__init__", "init", "x"]
        );
    }

    #[test]
    fn analyze_prose() {
        // Stemming and stopwords for plain words.
        assert_eq!(a("Running the tests"), ["run", "test"]);
        assert_eq!(a("This is a path to the files."), ["path", "file"]);
        // Trailing punctuation never sticks to a word.
        assert_eq!(
            a("see os.path: it joins."),
            ["see", "os.path", "os", "path", "join"]
        );
        // Compounds are not stemmed, stopwords never drop a compound.
        assert_eq!(a("is_running"), ["is_running", "run"]);
        assert_eq!(a("the-end"), ["the-end", "end"]);
        // Acronyms and plurals.
        assert_eq!(a("URLs"), ["url"]);
        assert_eq!(a("HTTPServer"), ["httpserver", "http", "server"]);
        // Syntax characters are just separators.
        assert_eq!(a("foo:(bar\" -baz"), ["foo", "bar", "-baz", "baz"]);
        // A dash inside a word only joins when followed by a letter or digit;
        // a flag needs a word boundary before it.
        assert_eq!(
            a("well-known x-y a--b"),
            ["well-known", "well", "known", "x-y", "x", "y", "b"]
        );
        assert_eq!(a("'--verbose'"), ["--verbose", "verbos"]);
        assert!(a("the of and ... --- ___ ::").is_empty());
        assert!(a("").is_empty());
        // Over-long tokens are skipped.
        assert!(a(&"z".repeat(65)).is_empty());
        assert_eq!(a(&"z".repeat(64)), ["z".repeat(64)]);
    }

    #[test]
    fn analyzer_parts_switch_off_one_by_one() {
        let text = "Running the os.path.join tests";
        let with = |stemming, stopwords, compounds| {
            Analyzer {
                stemming,
                stopwords,
                compounds,
            }
            .analyze(text)
            .join(" ")
        };
        assert_eq!(
            with(true, true, true),
            "run os.path.join os.path os path join test"
        );
        assert_eq!(
            with(false, true, true),
            "running os.path.join os.path os path join tests"
        );
        assert_eq!(
            with(true, false, true),
            "run the os.path.join os.path os path join test"
        );
        assert_eq!(with(true, true, false), "run os path join test");
        assert_eq!(Analyzer::default().tokenizer_name(), TOKENIZER_NAME);
        assert_ne!(
            Analyzer {
                stemming: false,
                ..Analyzer::default()
            }
            .tokenizer_name(),
            TOKENIZER_NAME
        );
    }

    #[test]
    fn tokenizer_offsets_and_positions() {
        let mut tokenizer = IdentTokenizer::with(Analyzer::default());
        let text = "call os.path.join now";
        let mut stream = tokenizer.token_stream(text);
        let mut seen = Vec::new();
        while stream.advance() {
            let t = stream.token();
            seen.push((
                t.text.clone(),
                &text[t.offset_from..t.offset_to],
                t.position,
            ));
        }
        assert_eq!(
            seen,
            [
                ("call".to_string(), "call", 0),
                ("os.path.join".to_string(), "os.path.join", 1),
                ("os.path".to_string(), "os.path", 1),
                ("os".to_string(), "os", 1),
                ("path".to_string(), "path", 1),
                ("join".to_string(), "join", 1),
                ("now".to_string(), "now", 2),
            ]
        );
    }
}
