//! Cairn's shared vocabulary.
//!
//! Every other crate speaks in these types: a loaded [`Document`] is cut into
//! [`ChunkDraft`]s by `cairn-ingest`, embedded by `cairn-models`, stored as
//! [`StoredChunk`]s in the catalog (`cairn-store`), indexed by `cairn-index` and
//! returned to users as [`Hit`]s. The [`config`] module holds the layered
//! configuration (file, then environment, then flags).
//!
//! ```
//! use cairn_core::{SearchMode, Format};
//! assert_eq!("hybrid".parse::<SearchMode>().unwrap(), SearchMode::Hybrid);
//! assert_eq!(Format::from_extension("md"), Some(Format::Markdown));
//! ```
//!
//! This crate knows nothing about IO, models, storage or HTTP.

pub mod config;
pub mod failpoint;
pub mod lines;
pub mod op;
pub mod priority;
pub mod time;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Identifier of a chunk in a collection's catalog. Never reused.
pub type ChunkId = u64;
/// Identifier of a document in a collection's catalog.
pub type DocId = u64;
/// Catalog sequence number: one per accepted change, strictly increasing.
pub type Seq = u64;

/// The input formats Cairn understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Text,
    Markdown,
    Html,
    Pdf,
    Docx,
    /// PowerPoint: slide text, tables and speaker notes.
    Pptx,
    /// Excel workbooks: each sheet's rows with their header row.
    Xlsx,
    /// Comma- (or tab-, semicolon-) separated values: rows with their header.
    Csv,
    /// OpenDocument text.
    Odt,
    /// EPUB books: the spine's chapters in order.
    Epub,
    /// Jupyter notebooks: Markdown cells, code cells and their text outputs.
    Notebook,
    /// One e-mail message (RFC 5322, MIME), attachments included.
    Email,
    /// A mailbox of messages (mbox).
    Mbox,
    /// Source code; the string is the language name (`rust`, `python`, …).
    Code(CodeLang),
    /// An image of text (PNG, JPEG, TIFF), read by OCR.
    Image,
}

/// Source languages recognised by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodeLang {
    Rust,
    Python,
    JavaScript,
    TypeScript,
    Go,
    C,
    Cpp,
    Java,
    Kotlin,
    Swift,
    Ruby,
    Shell,
    Other,
}

impl Format {
    /// Map a file extension (without the dot, any case) to a format.
    pub fn from_extension(ext: &str) -> Option<Format> {
        let ext = ext.to_ascii_lowercase();
        Some(match ext.as_str() {
            "txt" | "text" | "rst" | "log" | "json" | "yaml" | "yml" | "toml" | "ini" | "cfg"
            | "conf" | "tex" | "org" | "adoc" => Format::Text,
            "md" | "markdown" | "mdown" | "mkd" => Format::Markdown,
            "html" | "htm" | "xhtml" => Format::Html,
            "pdf" => Format::Pdf,
            "docx" => Format::Docx,
            "pptx" => Format::Pptx,
            "xlsx" | "xlsm" => Format::Xlsx,
            "csv" | "tsv" | "tab" => Format::Csv,
            "odt" => Format::Odt,
            "epub" => Format::Epub,
            "ipynb" => Format::Notebook,
            "eml" => Format::Email,
            "mbox" | "mbx" => Format::Mbox,
            "png" | "jpg" | "jpeg" | "tif" | "tiff" => Format::Image,
            "rs" => Format::Code(CodeLang::Rust),
            "py" | "pyi" => Format::Code(CodeLang::Python),
            "js" | "mjs" | "cjs" | "jsx" => Format::Code(CodeLang::JavaScript),
            "ts" | "tsx" | "mts" => Format::Code(CodeLang::TypeScript),
            "go" => Format::Code(CodeLang::Go),
            "c" | "h" => Format::Code(CodeLang::C),
            "cc" | "cpp" | "cxx" | "hpp" | "hh" | "hxx" => Format::Code(CodeLang::Cpp),
            "java" => Format::Code(CodeLang::Java),
            "kt" | "kts" => Format::Code(CodeLang::Kotlin),
            "swift" => Format::Code(CodeLang::Swift),
            "rb" => Format::Code(CodeLang::Ruby),
            "sh" | "bash" | "zsh" => Format::Code(CodeLang::Shell),
            "sql" | "lua" | "php" | "scala" | "cs" | "pl" | "r" | "jl" | "zig" | "hs" | "ex"
            | "exs" | "erl" | "clj" | "dart" | "m" | "mm" | "vue" | "svelte" | "css" | "scss" => {
                Format::Code(CodeLang::Other)
            }
            _ => return None,
        })
    }

    /// Formats read from a zip container (never refused for NUL bytes).
    pub fn is_zip(&self) -> bool {
        matches!(
            self,
            Format::Docx | Format::Pptx | Format::Xlsx | Format::Odt | Format::Epub
        )
    }

    /// Short name stored in the catalog and shown to users.
    pub fn name(&self) -> String {
        match self {
            Format::Text => "text".into(),
            Format::Markdown => "markdown".into(),
            Format::Html => "html".into(),
            Format::Pdf => "pdf".into(),
            Format::Docx => "docx".into(),
            Format::Pptx => "pptx".into(),
            Format::Xlsx => "xlsx".into(),
            Format::Csv => "csv".into(),
            Format::Odt => "odt".into(),
            Format::Epub => "epub".into(),
            Format::Notebook => "ipynb".into(),
            Format::Email => "eml".into(),
            Format::Mbox => "mbox".into(),
            Format::Code(l) => format!("code:{}", format!("{l:?}").to_ascii_lowercase()),
            Format::Image => "image".into(),
        }
    }
}

/// Extensions that are never text; skipped without reading.
pub fn is_known_binary_extension(ext: &str) -> bool {
    matches!(
        ext.to_ascii_lowercase().as_str(),
        "png"
            | "jpg"
            | "jpeg"
            | "gif"
            | "bmp"
            | "ico"
            | "webp"
            | "tif"
            | "tiff"
            | "psd"
            | "mp3"
            | "wav"
            | "flac"
            | "ogg"
            | "mp4"
            | "mkv"
            | "mov"
            | "avi"
            | "webm"
            | "zip"
            | "gz"
            | "tgz"
            | "bz2"
            | "xz"
            | "zst"
            | "7z"
            | "rar"
            | "tar"
            | "jar"
            | "so"
            | "dylib"
            | "dll"
            | "exe"
            | "o"
            | "a"
            | "lib"
            | "bin"
            | "class"
            | "pyc"
            | "wasm"
            | "sqlite"
            | "db"
            | "gguf"
            | "safetensors"
            | "onnx"
            | "pt"
            | "npy"
            | "woff"
            | "woff2"
            | "ttf"
            | "otf"
            | "eot"
            | "doc"
            | "xls"
            | "ppt"
            | "iso"
            | "dmg"
            | "deb"
            | "rpm"
    )
}

/// A document after loading: its visible text and the structure found in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub format: Format,
    /// The normalised text; chunk spans are character offsets into it.
    pub text: String,
    /// Sections in document order. Each covers `[start, end)` in `text`
    /// (byte offsets) and carries the heading path that applies to it.
    /// Sections do not overlap and together cover the text that matters.
    pub sections: Vec<Section>,
    /// Non-fatal problems met while loading (e.g. invalid UTF-8 replaced).
    pub warnings: Vec<String>,
}

/// A run of a document's text under one heading path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// Byte offset of the start of the section in `Document::text`.
    pub start: usize,
    /// Byte offset one past the end.
    pub end: usize,
    /// Heading path from the outermost heading in, e.g. `["Tutorial", "Lists"]`.
    pub headings: Vec<String>,
}

/// A chunk as produced by the chunker, before embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkDraft {
    /// Position of the chunk in its document (0-based).
    pub ord: u32,
    /// The chunk's own text (a slice of the document text).
    pub text: String,
    /// Character (Unicode scalar) offsets into the document text.
    pub start: u64,
    pub end: u64,
    /// Heading path joined with " > "; empty when the chunk has none.
    pub heading: String,
}

impl ChunkDraft {
    /// The text given to the embedding model: the heading path, then the chunk.
    pub fn embedding_text(&self) -> String {
        embedding_text(&self.heading, &self.text)
    }
}

/// The heading path is prefixed to the text that is embedded, so a chunk from
/// "Lists" under "Tutorial" carries that context into its vector.
pub fn embedding_text(heading: &str, text: &str) -> String {
    if heading.is_empty() {
        text.to_string()
    } else {
        format!("{heading}\n\n{text}")
    }
}

/// A chunk as stored in the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredChunk {
    pub id: ChunkId,
    pub doc_id: DocId,
    /// The document's display path (relative to the ingest root).
    pub doc: String,
    pub ord: u32,
    pub text: String,
    pub start: u64,
    pub end: u64,
    pub heading: String,
    /// The catalog sequence at which this chunk was added.
    pub seq: Seq,
}

/// How a search ranks passages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Embedding similarity only.
    Dense,
    /// BM25 only.
    Bm25,
    /// Both, fused by reciprocal rank.
    #[default]
    Hybrid,
}

impl FromStr for SearchMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "dense" | "vector" => Ok(SearchMode::Dense),
            "bm25" | "lexical" | "sparse" => Ok(SearchMode::Bm25),
            "hybrid" => Ok(SearchMode::Hybrid),
            other => Err(format!(
                "unknown search mode `{other}` (expected dense, bm25 or hybrid)"
            )),
        }
    }
}

impl fmt::Display for SearchMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SearchMode::Dense => "dense",
            SearchMode::Bm25 => "bm25",
            SearchMode::Hybrid => "hybrid",
        })
    }
}

/// One ranked passage, as printed by `cairn search --json` and returned
/// by the HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Hit {
    /// 1 for the best.
    pub rank: usize,
    /// The fused score (or the one list's score in dense or BM25 mode).
    pub score: f32,
    /// The document's display path.
    pub doc: String,
    /// The chunk's id in its catalog (a shard's, on a cluster).
    pub chunk: ChunkId,
    /// The heading path of the passage (`Title > Section > …`).
    pub heading: String,
    /// Character offsets of the passage in the document's text.
    pub start: u64,
    pub end: u64,
    pub text: String,
    /// The page the passage is on, for a PDF or multi-page TIFF ([`page_of`]);
    /// absent for other formats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
}

/// A scored chunk id, the currency between indexes and fusion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub id: ChunkId,
    pub score: f32,
}

/// The embedding boundary: text in, unit-length vectors out.
pub trait Embedder: Send + Sync {
    /// Dimension of the vectors.
    fn dim(&self) -> usize;
    /// A stable identifier of the model (name and pooling), stored in the
    /// catalog so that vectors from different models are never mixed.
    fn model_id(&self) -> &str;
    /// Embed passages (documents).
    fn embed_passages(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;
    /// Embed one query (models such as bge add an instruction prefix here).
    fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError>;
    /// Number of tokens the model would see for `text` (before truncation).
    fn count_tokens(&self, text: &str) -> usize;
    /// The most tokens the model reads in one input.
    fn max_tokens(&self) -> usize;
    /// Token vectors of each text, for late interaction (ColBERT-style
    /// MaxSim): the encoder's last hidden states, one unit-length row per
    /// token, the special tokens (`[CLS]`, `[SEP]`) left out, each text cut
    /// to `max_tokens` tokens counting them (at most the model's window).
    /// The texts are read as they are (no query prefix), in one forward
    /// pass. What [`Embedder::embed_passages`] returns is unchanged; encoders
    /// that cannot give token vectors say so.
    fn embed_tokens(
        &self,
        _texts: &[String],
        _max_tokens: usize,
    ) -> Result<Vec<TokenVectors>, EmbedError> {
        Err(EmbedError(format!(
            "{}: late interaction needs the onnx backend (embed.backend = \"onnx\")",
            self.model_id()
        )))
    }
}

/// One text's token vectors ([`Embedder::embed_tokens`]): `rows` unit-length
/// vectors of `dim` components, row-major in `data`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TokenVectors {
    pub dim: usize,
    pub data: Vec<f32>,
}

impl TokenVectors {
    /// Rows of `dim` components, each scaled to unit length (a zero row
    /// stays zero).
    pub fn normalized(dim: usize, mut data: Vec<f32>) -> TokenVectors {
        if dim > 0 {
            for row in data.chunks_mut(dim) {
                let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
                if norm > 0.0 {
                    row.iter_mut().for_each(|x| *x /= norm);
                }
            }
        }
        TokenVectors { dim, data }
    }

    /// The number of tokens.
    pub fn rows(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Token `i`'s vector.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// Error crossing the [`Embedder`] boundary.
#[derive(Debug, thiserror::Error)]
#[error("embedding failed: {0}")]
pub struct EmbedError(pub String);

/// What a [`Critic`] judges about a (text, passage) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Judgement {
    /// Does the passage answer the text, a question?
    Relevance,
    /// Does the passage support the text, a claim (a sentence of an answer)?
    Support,
}

impl fmt::Display for Judgement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Judgement::Relevance => "relevance",
            Judgement::Support => "support",
        })
    }
}

/// A logistic map from a critic's raw score to a probability:
/// `p = 1 / (1 + exp(-(a * raw + b)))`, fitted on labelled pairs
/// (`cairn eval --calibrate`), never set by hand.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub a: f32,
    pub b: f32,
}

impl Calibration {
    /// The probability for a raw score.
    pub fn apply(&self, raw: f32) -> f32 {
        1.0 / (1.0 + (-(self.a * raw + self.b)).exp())
    }

    /// The raw score at which the probability is `p` (0 < p < 1).
    pub fn raw_at(&self, p: f32) -> f32 {
        ((p / (1.0 - p)).ln() - self.b) / self.a
    }
}

/// The critic boundary: how well a passage answers a question or supports a
/// claim, as a probability in [0, 1], for many pairs at once. Implementations
/// (the embedding model, the generator as judge, a cross-encoder) are chosen
/// by the configuration, like the embedder.
pub trait Critic: Send + Sync {
    /// What answers report as the critic that judged them ("embedding",
    /// "cross-encoder", "llm").
    fn name(&self) -> &str;
    /// Uncalibrated scores, one per `(text, passage)` pair (higher = better);
    /// what calibration is fitted on.
    fn raw(&self, judgement: Judgement, pairs: &[(&str, &str)]) -> Result<Vec<f32>, CriticError>;
    /// The calibration in force for `judgement`.
    fn calibration(&self, judgement: Judgement) -> Calibration;
    /// Whether a passage's relevance is judged on the passage as it was
    /// embedded, its heading path then its text ([`embedding_text`]),
    /// where the caller has the heading (reranking, calibration); else on
    /// its text alone.
    fn reads_heading(&self) -> bool {
        false
    }
    /// Probabilities, one per pair.
    fn score(&self, judgement: Judgement, pairs: &[(&str, &str)]) -> Result<Vec<f32>, CriticError> {
        let c = self.calibration(judgement);
        Ok(self
            .raw(judgement, pairs)?
            .into_iter()
            .map(|r| c.apply(r))
            .collect())
    }
}

/// Error crossing the [`Critic`] boundary.
#[derive(Debug, thiserror::Error)]
#[error("the {critic} critic failed: {reason}")]
pub struct CriticError {
    pub critic: String,
    pub reason: String,
}

/// Progress of long work (ingest, index rebuilds, downloads). Libraries
/// report through it; the binary draws progress bars.
pub trait Progress: Send + Sync {
    /// A new phase starts with `total` units of work (0 when unknown).
    fn begin(&self, phase: &str, total: u64);
    /// `n` more units are done.
    fn advance(&self, n: u64);
    /// The phase ended.
    fn end(&self);
}

/// Progress that goes nowhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&self, _phase: &str, _total: u64) {}
    fn advance(&self, _n: u64) {}
    fn end(&self) {}
}

/// Cosine similarity of two vectors (any length, not assumed normalised).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    dot / (na.sqrt() * nb.sqrt())
}

/// The page of a passage of a paged document (PDF, multi-page TIFF), from
/// its heading path: those loaders end the heading path of every page's
/// section with `Page N` (1-based, the page's place in the file), and that
/// is the one place a passage's page is kept, so it needs no column of its
/// own and travels wherever the heading does (catalog, cluster replies,
/// prompts). `None` for other formats (by `doc`'s extension, any case) or a
/// heading without it.
pub fn page_of(doc: &str, heading: &str) -> Option<u32> {
    let paged = doc.rsplit_once('.').is_some_and(|(_, ext)| {
        ["pdf", "tif", "tiff"]
            .iter()
            .any(|e| ext.eq_ignore_ascii_case(e))
    });
    if !paged {
        return None;
    }
    split_page(heading).map(|(_, n)| n).filter(|&n| n > 0)
}

/// A heading path ending in `Page N`, split into the path before it (empty
/// when the page is the whole path) and `N`.
fn split_page(heading: &str) -> Option<(&str, u32)> {
    let (rest, last) = heading.rsplit_once(" > ").unwrap_or(("", heading));
    Some((rest, last.strip_prefix("Page ")?.parse().ok()?))
}

/// A heading path without the `Page N` that [`page_of`] reads, for showing
/// beside a page number that is already printed.
pub fn heading_without_page(heading: &str) -> &str {
    split_page(heading).map_or(heading, |(rest, _)| rest)
}

/// How a passage is named to a reader: `doc — heading`, `doc` alone when
/// the heading is empty, and for a passage with a page `doc, page N — heading`
/// without the path's own `Page N`.
pub fn passage_label(doc: &str, heading: &str, page: Option<u32>) -> String {
    let (doc, heading) = match page {
        Some(n) => (format!("{doc}, page {n}"), heading_without_page(heading)),
        None => (doc.to_string(), heading),
    };
    if heading.is_empty() {
        doc
    } else {
        format!("{doc} — {heading}")
    }
}

/// Convert a byte offset in `s` into a character offset.
pub fn byte_to_char(s: &str, byte: usize) -> u64 {
    s[..byte].chars().count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paged_passage_has_the_page_its_heading_ends_with() {
        assert_eq!(
            page_of("docs/bashref.pdf", "Basic Shell Features > Page 42"),
            Some(42)
        );
        assert_eq!(page_of("SCAN.PDF", "Page 3"), Some(3));
        assert_eq!(page_of("scans.tiff", "scans.tiff > Page 2"), Some(2));
        // Not a PDF, or no page at the end of the path.
        assert_eq!(page_of("notes.md", "Plans > Page 3"), None);
        assert_eq!(page_of("a.pdf", "Page 3 > Intro"), None);
        assert_eq!(page_of("a.pdf", "Pages 3"), None);
        assert_eq!(page_of("a.pdf", "Page 0"), None);
        assert_eq!(page_of("a.pdf", ""), None);
        assert_eq!(page_of("pdf", "Page 2"), None);
        assert_eq!(heading_without_page("A > B > Page 42"), "A > B");
        assert_eq!(heading_without_page("Page 42"), "");
        assert_eq!(heading_without_page("A > Page x"), "A > Page x");
        assert_eq!(heading_without_page("A > B"), "A > B");
        assert_eq!(
            passage_label("m.pdf", "Shell > Page 4", Some(4)),
            "m.pdf, page 4 — Shell"
        );
        assert_eq!(passage_label("m.pdf", "Page 4", Some(4)), "m.pdf, page 4");
        assert_eq!(passage_label("a.md", "A > B", None), "a.md — A > B");
        assert_eq!(passage_label("a.md", "", None), "a.md");
    }

    #[test]
    fn formats_by_extension() {
        assert_eq!(Format::from_extension("HTML"), Some(Format::Html));
        assert_eq!(
            Format::from_extension("rs"),
            Some(Format::Code(CodeLang::Rust))
        );
        // Images are a format (read by OCR) and still binary to the walk,
        // which lets them in only when OCR is on.
        assert_eq!(Format::from_extension("PNG"), Some(Format::Image));
        assert_eq!(Format::from_extension("tiff"), Some(Format::Image));
        assert_eq!(Format::from_extension("gif"), None);
        assert!(is_known_binary_extension("PNG"));
        assert_eq!(Format::Image.name(), "image");
        assert_eq!(Format::Code(CodeLang::Python).name(), "code:python");
    }

    #[test]
    fn modes_parse_and_print() {
        for m in [SearchMode::Dense, SearchMode::Bm25, SearchMode::Hybrid] {
            assert_eq!(m.to_string().parse::<SearchMode>().unwrap(), m);
        }
        assert!("fuzzy".parse::<SearchMode>().unwrap_err().contains("fuzzy"));
    }

    #[test]
    fn cosine_of_known_vectors() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 2.0]).abs() < 1e-6);
        assert!((cosine(&[1.0, 1.0], &[-1.0, -1.0]) + 1.0).abs() < 1e-6);
    }

    #[test]
    fn char_offsets() {
        let s = "héllo wörld";
        let b = s.find('w').unwrap();
        assert_eq!(byte_to_char(s, b), 6);
    }

    #[test]
    fn embedding_text_prefixes_heading() {
        assert_eq!(embedding_text("", "x"), "x");
        assert_eq!(embedding_text("A > B", "x"), "A > B\n\nx");
    }
}
