//! Turning files into chunks.
//!
//! `cairn-ingest` is the front of Cairn's pipeline:
//!
//! 1. [`walk`] finds the files under the roots a user names, honouring
//!    `.gitignore`/`.ignore` (even outside a git repository), skipping hidden,
//!    binary, empty and oversized files and symlinks that leave the root, and
//!    reporting every skip with a reason.
//! 2. [`read_file`] reads one file with clear errors, [`detect_format`] decides
//!    what it is (extension first, magic bytes when the extension says
//!    nothing), and [`load`] turns the bytes into a [`cairn_core::Document`]:
//!    visible text plus [`cairn_core::Section`]s carrying heading paths. There
//!    is one loader per format: plain text, Markdown, HTML, PDF, DOCX, PPTX,
//!    XLSX, CSV, ODT, EPUB, Jupyter notebooks, e-mail (EML, mbox) and code;
//!    images (PNG, JPEG, TIFF) and PDF pages without a text layer are read
//!    by OCR ([`ocr`], Tesseract, cargo feature `ocr`).
//!    Zip containers share one inflate budget per file ([`LoadLimits`]).
//! 3. [`boilerplate::strip`] cuts out of a document's sections the blocks of
//!    lines that many documents of the collection repeat (navigation,
//!    headers, footers, tables of contents), found by line counts across the
//!    collection, with no rule written for any one site.
//! 4. [`Chunker`] cuts a document into [`cairn_core::ChunkDraft`]s whose
//!    embedding text (heading path + chunk) fits the embedding model's token
//!    window, measured with the model's own tokenizer.
//!
//! ```
//! use cairn_core::Format;
//! let doc = cairn_ingest::load("notes.md".as_ref(), b"# Intro\n\nHello.\n").unwrap();
//! assert_eq!(doc.format, Format::Markdown);
//! assert_eq!(doc.sections[0].headings, vec!["Intro".to_string()]);
//! ```
//!
//! Nothing here panics on bad input: a file that cannot be loaded gives an
//! [`IngestError`] whose message names the file and the reason.

pub mod boilerplate;
mod chunk;
mod code;
mod compose;
mod docx;
mod email;
mod epub;
mod html;
pub mod isolate;
mod markdown;
mod notebook;
pub mod ocr;
mod odt;
mod package;
mod pdf;
mod pdf_batch;
mod pdf_clean;
mod pdf_headings;
mod pdf_runs;
mod pptx;
mod sections;
mod table;
mod text;
mod walk;
mod xlsx;

pub use chunk::Chunker;
pub use ocr::OcrLimits;
pub use walk::{mtime_ns, walk, FoundFile, Skipped, WalkOptions};

use cairn_core::{CodeLang, Document, Format};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Bytes examined when sniffing for binary content.
const SNIFF_BYTES: usize = 8 * 1024;

/// Why a file could not be read or loaded. Every variant that concerns a file
/// names it; [`IngestError::reason`] gives the message without the path.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file was listed but is gone by the time it is read.
    #[error("{}: vanished during ingest", path.display())]
    Vanished { path: PathBuf },
    /// The file (or a directory on its path) is not readable.
    #[error("{}: permission denied", path.display())]
    PermissionDenied { path: PathBuf },
    /// The file exceeds the configured size limit.
    #[error("{}: file too large ({size} bytes > limit {limit})", path.display())]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    /// The file has no content.
    #[error("{}: empty file", path.display())]
    Empty { path: PathBuf },
    /// Any other I/O failure.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The content is not text (NUL bytes) and not a format we parse.
    #[error("{}: binary file", path.display())]
    Binary { path: PathBuf },
    /// The PDF needs a password.
    #[error("{}: encrypted PDF (password protected)", path.display())]
    EncryptedPdf { path: PathBuf },
    /// The PDF has pages but no extractable text (and OCR found none).
    #[error("{}: PDF has no text layer (scanned image?)", path.display())]
    NoTextLayer { path: PathBuf },
    /// The file needs OCR (an image, a PDF of scanned pages) and OCR cannot
    /// run: it is off, this build has none, or Tesseract (or `pdftoppm`, or
    /// a language's data) is not installed; `reason` says which, and what
    /// to install.
    #[error("{}: {reason}", path.display())]
    OcrUnavailable { path: PathBuf, reason: String },
    /// OCR could not read this file: an image larger than
    /// `ingest.ocr_max_megapixels`, Tesseract's own error.
    #[error("{}: OCR failed: {reason}", path.display())]
    Ocr { path: PathBuf, reason: String },
    /// A file whose structure could not be read: a PDF the parser refuses,
    /// a zip container (DOCX, PPTX, XLSX, ODT, EPUB) or a part it needs that
    /// is missing or broken, a notebook that is not JSON, an e-mail without
    /// headers. `format` names the format (`PDF`, `DOCX`, …).
    #[error("{}: corrupt {format}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        format: &'static str,
        reason: String,
    },
    /// The file changed while it was being ingested (its content no longer
    /// matches what was read first); the next ingest takes the new content.
    #[error("{}: changed during ingest", path.display())]
    Changed { path: PathBuf },
    /// The chunker was configured with impossible sizes (no file involved).
    #[error("invalid chunker settings: {reason}")]
    ChunkerConfig { reason: String },
    /// A loader (or the chunker) panicked on this file: a parser bug met by
    /// a malformed or hostile file. Only this file is lost.
    #[error("{}: the {stage} failed on this file ({message})", path.display())]
    Panicked {
        path: PathBuf,
        stage: String,
        message: String,
    },
    /// Loading took longer than the per-file deadline; the loader process
    /// was stopped.
    #[error("{}: loading took longer than {secs} s and was stopped (ingest.load_timeout_secs)", path.display())]
    Deadline { path: PathBuf, secs: u64 },
    /// The loader process died on this file: memory past its limit, or a
    /// crash in a parser.
    #[error("{}: the loader process died on this file ({reason})", path.display())]
    LoaderDied { path: PathBuf, reason: String },
    /// A loader process could not be started or talked to.
    #[error("cannot run a loader process: {reason}")]
    Loader { reason: String },
    /// The reason a loader process gave for a file it could not load;
    /// `costly` as [`IngestError::is_costly`] said there.
    #[error("{}: {reason}", path.display())]
    Failed {
        path: PathBuf,
        reason: String,
        costly: bool,
    },
    /// Loading needed more memory than the loader may use (an allocation
    /// was refused under the loader process's limit).
    #[error("{}: {what} needs more memory than a loader may use (ingest.loader_memory_mb)", path.display())]
    OutOfMemory { path: PathBuf, what: String },
}

impl IngestError {
    /// The file the error is about, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            IngestError::Vanished { path }
            | IngestError::PermissionDenied { path }
            | IngestError::TooLarge { path, .. }
            | IngestError::Empty { path }
            | IngestError::Io { path, .. }
            | IngestError::Binary { path }
            | IngestError::EncryptedPdf { path }
            | IngestError::NoTextLayer { path }
            | IngestError::OcrUnavailable { path, .. }
            | IngestError::Ocr { path, .. }
            | IngestError::Corrupt { path, .. }
            | IngestError::Changed { path }
            | IngestError::Panicked { path, .. }
            | IngestError::Deadline { path, .. }
            | IngestError::LoaderDied { path, .. }
            | IngestError::Failed { path, .. }
            | IngestError::OutOfMemory { path, .. } => Some(path),
            IngestError::ChunkerConfig { .. } | IngestError::Loader { .. } => None,
        }
    }

    /// A failure that says nothing about the file's content being readable
    /// later but costs a lot each time it is tried (a crash, a hang, a
    /// parser bug): worth remembering so that an unchanged file is not
    /// tried again at every ingest.
    pub fn is_costly(&self) -> bool {
        matches!(
            self,
            IngestError::Panicked { .. }
                | IngestError::Deadline { .. }
                | IngestError::LoaderDied { .. }
                | IngestError::OutOfMemory { .. }
                | IngestError::Failed { costly: true, .. }
        )
    }

    /// The message without the leading path, e.g. `"empty file"`; what a
    /// skip report shows next to the file's display path.
    pub fn reason(&self) -> String {
        let full = self.to_string();
        match self.path() {
            Some(p) => {
                let prefix = format!("{}: ", p.display());
                full.strip_prefix(&prefix)
                    .map(str::to_string)
                    .unwrap_or(full)
            }
            None => full,
        }
    }
}

/// Result type of this crate.
pub type Result<T, E = IngestError> = std::result::Result<T, E>;

fn io_error(path: &Path, err: std::io::Error) -> IngestError {
    let path = path.to_path_buf();
    match err.kind() {
        std::io::ErrorKind::NotFound => IngestError::Vanished { path },
        std::io::ErrorKind::PermissionDenied => IngestError::PermissionDenied { path },
        _ => IngestError::Io { path, source: err },
    }
}

/// Read a whole file, refusing files larger than `max_file_bytes` and empty
/// files. Never reads more than `max_file_bytes + 1` bytes, even if the file
/// grows while it is read.
pub fn read_file(path: &Path, max_file_bytes: u64) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let meta = file.metadata().map_err(|e| io_error(path, e))?;
    if meta.is_dir() {
        return Err(IngestError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other("is a directory"),
        });
    }
    let too_large = |size| IngestError::TooLarge {
        path: path.to_path_buf(),
        size,
        limit: max_file_bytes,
    };
    if meta.len() > max_file_bytes {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max_file_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, e))?;
    if bytes.len() as u64 > max_file_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    if bytes.is_empty() {
        return Err(IngestError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

fn has_nul(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(SNIFF_BYTES)].contains(&0)
}

fn looks_like_pdf(bytes: &[u8]) -> bool {
    // The header may be preceded by a little junk; readers accept that.
    let head = &bytes[..bytes.len().min(1024)];
    head.windows(5).any(|w| w == b"%PDF-")
}

fn contains(bytes: &[u8], needle: &[u8]) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle)
}

/// The office or e-book format of a zip archive, from the names of the
/// parts it holds (an OpenDocument or EPUB file starts with its
/// `mimetype` part, stored uncompressed).
fn sniff_zip(bytes: &[u8]) -> Option<Format> {
    if !bytes.starts_with(b"PK\x03\x04") {
        return None;
    }
    let head = &bytes[..bytes.len().min(256)];
    if contains(head, b"mimetypeapplication/epub+zip") {
        Some(Format::Epub)
    } else if contains(head, b"mimetypeapplication/vnd.oasis.opendocument.text") {
        Some(Format::Odt)
    } else if contains(bytes, b"word/document.xml") {
        Some(Format::Docx)
    } else if contains(bytes, b"ppt/presentation.xml") {
        Some(Format::Pptx)
    } else if contains(bytes, b"xl/workbook.xml") {
        Some(Format::Xlsx)
    } else {
        None
    }
}

/// Decide the format of a file from its extension and, when the extension is
/// missing or unknown, from its first bytes.
///
/// Text-like formats (text, Markdown, HTML, code) whose first 8 KiB contain a
/// NUL byte are refused as binary.
pub fn detect_format(path: &Path, bytes: &[u8]) -> Result<Format> {
    let by_ext = path
        .extension()
        .and_then(|e| e.to_str())
        .and_then(Format::from_extension);
    let format = match by_ext {
        Some(f) => f,
        None if looks_like_pdf(bytes) => Format::Pdf,
        None if ocr::sniff(bytes).is_some() => Format::Image,
        None => sniff_zip(bytes).unwrap_or(Format::Text),
    };
    match format {
        Format::Pdf | Format::Image => Ok(format),
        f if f.is_zip() => Ok(format),
        _ if has_nul(bytes) => Err(IngestError::Binary {
            path: path.to_path_buf(),
        }),
        _ => Ok(format),
    }
}

/// What one file may cost a loader: caps against decompression bombs and
/// oversized documents, and (for [`isolate::LoaderPool`]) the deadline and
/// the memory of the loader process.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoadLimits {
    /// The most bytes one PDF stream or one DOCX part may inflate to.
    pub max_inflate_bytes: u64,
    /// Pages of a PDF whose text is read.
    pub max_pdf_pages: u32,
    /// The most seconds one file may take (loader processes only).
    pub timeout_secs: u64,
    /// The address space of one loader process, in bytes.
    pub memory_bytes: u64,
    /// OCR of images and of PDF pages without a text layer.
    pub ocr: OcrLimits,
}

impl Default for LoadLimits {
    fn default() -> Self {
        LoadLimits::from_config(&cairn_core::config::IngestConfig::default())
    }
}

impl LoadLimits {
    /// The limits the `[ingest]` configuration sets.
    pub fn from_config(c: &cairn_core::config::IngestConfig) -> LoadLimits {
        LoadLimits {
            max_inflate_bytes: c.max_inflate_mb.saturating_mul(1 << 20),
            max_pdf_pages: c.max_pdf_pages,
            timeout_secs: c.load_timeout_secs,
            memory_bytes: c.loader_memory_mb.saturating_mul(1 << 20),
            ocr: OcrLimits::from_config(c),
        }
    }
}

/// Load a file's bytes into a [`Document`] with the loader for its format,
/// with the default [`LoadLimits`].
pub fn load(path: &Path, bytes: &[u8]) -> Result<Document> {
    load_with(path, bytes, &LoadLimits::default())
}

/// Load a file's bytes into a [`Document`] with the loader for its format,
/// in this process: PDF streams and DOCX parts inflate up to
/// `limits.max_inflate_bytes`, PDFs are read up to `limits.max_pdf_pages`
/// (pages without a text layer by OCR, up to `limits.ocr`'s caps), images
/// by OCR under a pixel cap read from their header, HTML nesting is bounded, and a panic in any loader becomes
/// [`IngestError::Panicked`] for this file. (Deadlines and memory limits
/// need a loader process: [`isolate::LoaderPool`].)
pub fn load_with(path: &Path, bytes: &[u8], limits: &LoadLimits) -> Result<Document> {
    let format = detect_format(path, bytes)?;
    let run = || -> Result<Document> {
        failpoint(path);
        Ok(match format {
            Format::Text => text::load(bytes),
            Format::Markdown => markdown::load(bytes),
            Format::Html => html::load(bytes),
            Format::Pdf => pdf::load(path, bytes, limits)?,
            Format::Docx => docx::load(path, bytes, limits)?,
            Format::Pptx => pptx::load(path, bytes, limits)?,
            Format::Xlsx => xlsx::load(path, bytes, limits)?,
            Format::Csv => table::load_csv(path, bytes),
            Format::Odt => odt::load(path, bytes, limits)?,
            Format::Epub => epub::load(path, bytes, limits)?,
            Format::Notebook => notebook::load(path, bytes)?,
            Format::Email => email::load_message(path, bytes, limits)?,
            Format::Mbox => email::load_mbox(path, bytes, limits)?,
            Format::Code(lang) => code::load(bytes, lang),
            Format::Image => ocr::load_image(path, bytes, limits)?,
        })
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|payload| {
        Err(IngestError::Panicked {
            path: path.to_path_buf(),
            stage: format!("{} loader", format.name()),
            message: panic_message(payload.as_ref()),
        })
    })
}

/// Fault injection for the tests of what a broken loader costs:
/// `CAIRN_FAILPOINT_LOAD=ACTION:NAME[,ACTION:NAME…]` makes loading the file
/// named `NAME` panic (`panic`), never return (`hang`) or kill the process
/// (`abort`).
/// A failure no real file is known to cause today, which the process
/// isolation and the deadline exist for.
fn failpoint(path: &Path) {
    let Some(spec) = std::env::var_os("CAIRN_FAILPOINT_LOAD") else {
        return;
    };
    let file = path.file_name().map(|n| n.to_string_lossy().into_owned());
    for one in spec.to_string_lossy().split(',') {
        let Some((action, name)) = one.split_once(':') else {
            continue;
        };
        if file.as_deref() != Some(name) {
            continue;
        }
        match action {
            "panic" => panic!("failpoint: panic on {name}"),
            "hang" => loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            },
            "abort" => std::process::abort(),
            _ => {}
        }
    }
}

/// The text of a caught panic.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// BLAKE3 hash of the content, lowercase hex. Used to notice unchanged files.
pub fn content_hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Languages with a tree-sitter grammar available to the code splitter.
pub(crate) fn has_grammar(lang: CodeLang) -> bool {
    matches!(
        lang,
        CodeLang::Rust | CodeLang::Python | CodeLang::JavaScript | CodeLang::Go
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_extension_and_magic() {
        assert_eq!(
            detect_format(Path::new("a.md"), b"# x").unwrap(),
            Format::Markdown
        );
        assert_eq!(
            detect_format(Path::new("a.RS"), b"fn main() {}").unwrap(),
            Format::Code(CodeLang::Rust)
        );
        assert_eq!(
            detect_format(Path::new("README"), b"hello").unwrap(),
            Format::Text
        );
        assert_eq!(
            detect_format(Path::new("report"), b"%PDF-1.7\n...").unwrap(),
            Format::Pdf
        );
        let mut zipish = b"PK\x03\x04".to_vec();
        zipish.extend_from_slice(b"....word/document.xml....");
        assert_eq!(
            detect_format(Path::new("letter.bin2"), &zipish).unwrap(),
            Format::Docx
        );
        // A zip that is not a Word document is not text either.
        let err = detect_format(Path::new("x"), b"PK\x03\x04\0\0junk").unwrap_err();
        assert!(matches!(err, IngestError::Binary { .. }), "{err}");
    }

    #[test]
    fn nul_bytes_are_binary_even_with_text_extension() {
        let err = detect_format(Path::new("data.txt"), b"abc\0def").unwrap_err();
        assert_eq!(err.to_string(), "data.txt: binary file");
        assert_eq!(err.reason(), "binary file");
        let err = load(Path::new("noext"), b"\x7fELF\0\0\0").unwrap_err();
        assert!(matches!(err, IngestError::Binary { .. }));
    }

    #[test]
    fn read_file_reasons() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone.txt");
        let err = read_file(&missing, 100).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("gone.txt: vanished during ingest"),
            "{err}"
        );

        let empty = dir.path().join("empty.txt");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(read_file(&empty, 100).unwrap_err().reason(), "empty file");

        let big = dir.path().join("big.txt");
        std::fs::write(&big, vec![b'a'; 101]).unwrap();
        assert_eq!(
            read_file(&big, 100).unwrap_err().reason(),
            "file too large (101 bytes > limit 100)"
        );
        assert_eq!(read_file(&big, 101).unwrap().len(), 101);
    }

    #[test]
    fn hash_is_blake3_hex() {
        let h = content_hash(b"abc");
        assert_eq!(h.len(), 64);
        assert_eq!(h, blake3::hash(b"abc").to_hex().to_string());
        assert_ne!(h, content_hash(b"abd"));
    }
}
