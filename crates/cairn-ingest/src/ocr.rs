//! OCR: text out of images (PNG, JPEG, TIFF) and out of PDF pages without a
//! text layer, by Tesseract's command-line program (Debian's
//! `tesseract-ocr`), and PDF pages rendered for it by poppler-utils'
//! `pdftoppm`.
//!
//! The programs run as child processes of the loader, so they inherit its
//! address-space limit (`ingest.loader_memory_mb`; Tesseract reads a page in
//! well under 100 MiB), are given what is left of the file's time
//! (`Budget`) and are killed past it, die with the loader
//! (`PR_SET_PDEATHSIG`), and run one OpenMP thread each (`OMP_THREAD_LIMIT=1`:
//! loaders already run one per core, and Tesseract's threads spinning on
//! busy cores made a page eight times slower). An image's size is read from
//! its header and checked against `ingest.ocr_max_megapixels` before any
//! program decodes it; a PDF page is rendered at a resolution that keeps it
//! under that size.
//!
//! Without the `ocr` cargo feature nothing is run: images and scanned pages
//! are reported as needing a build with OCR.

use crate::{IngestError, LoadLimits};
use cairn_core::{Document, Format, Section};
use std::path::Path;
use std::time::{Duration, Instant};

/// The OCR settings a loader gets (from the `[ingest]` configuration).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OcrLimits {
    /// Whether images and scanned PDF pages are read by OCR at all.
    pub enabled: bool,
    /// Tesseract's `-l`: languages joined by `+`.
    pub languages: String,
    /// Tesseract's `--psm`.
    pub psm: u8,
    /// Resolution PDF pages are rendered at.
    pub dpi: u32,
    /// The most PDF pages of one file read by OCR.
    pub max_pages: u32,
    /// The largest image (or rendered page), in pixels.
    pub max_pixels: u64,
    /// The Tesseract program.
    pub tesseract: String,
    /// The PDF page renderer (`pdftoppm`).
    pub pdftoppm: String,
}

impl OcrLimits {
    /// The settings of the `[ingest]` configuration.
    pub fn from_config(c: &cairn_core::config::IngestConfig) -> OcrLimits {
        OcrLimits {
            enabled: c.ocr,
            languages: c.ocr_languages.clone(),
            psm: c.ocr_psm,
            dpi: c.ocr_dpi,
            max_pages: c.ocr_max_pages,
            max_pixels: u64::from(c.ocr_max_megapixels).saturating_mul(1_000_000),
            tesseract: c.ocr_tesseract.clone(),
            pdftoppm: c.ocr_pdftoppm.clone(),
        }
    }
}

/// Whether this build can run OCR (the `ocr` cargo feature).
pub const COMPILED: bool = cfg!(feature = "ocr");

/// The time one file's OCR may take: three quarters of the file's deadline
/// (`ingest.load_timeout_secs`), counted from when its loading started, so
/// that the pages read before it runs out are kept and reported rather than
/// lost with the loader process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    ends: Instant,
}

impl Budget {
    pub(crate) fn start(limits: &LoadLimits) -> Budget {
        let secs = limits.timeout_secs.max(1);
        let now = Instant::now();
        let ends = now
            .checked_add(Duration::from_millis(secs.saturating_mul(750)))
            .unwrap_or_else(|| now + Duration::from_secs(365 * 86_400));
        Budget { ends }
    }

    fn left(&self) -> Duration {
        self.ends.saturating_duration_since(Instant::now())
    }

    pub(crate) fn spent(&self) -> bool {
        self.left().is_zero()
    }
}

/// Why OCR could not give a page's or an image's text.
#[derive(Debug)]
pub(crate) enum OcrError {
    /// OCR cannot run here at all (off, not compiled in, a program
    /// missing): the same for every file, so not worth trying other pages.
    Unavailable(String),
    /// The file's time ran out.
    Timeout,
    /// This image or page failed.
    Failed(String),
}

impl OcrError {
    pub(crate) fn into_ingest(self, path: &Path, limits: &LoadLimits) -> IngestError {
        let path = path.to_path_buf();
        match self {
            OcrError::Unavailable(reason) => IngestError::OcrUnavailable { path, reason },
            OcrError::Timeout => IngestError::Deadline {
                path,
                secs: limits.timeout_secs,
            },
            OcrError::Failed(reason) => IngestError::Ocr { path, reason },
        }
    }
}

/// Why OCR is not run under these settings, if it is not.
pub(crate) fn unavailable(limits: &OcrLimits) -> Option<String> {
    if !COMPILED {
        Some("this build of Cairn has no OCR (cargo feature `ocr`)".into())
    } else if !limits.enabled {
        Some("OCR is off (ingest.ocr = false)".into())
    } else {
        None
    }
}

/// The image formats OCR reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ImageKind {
    Png,
    Jpeg,
    Tiff,
}

impl ImageKind {
    fn name(self) -> &'static str {
        match self {
            ImageKind::Png => "PNG",
            ImageKind::Jpeg => "JPEG",
            ImageKind::Tiff => "TIFF",
        }
    }
}

/// The image format of `bytes`, from its magic bytes.
pub(crate) fn sniff(bytes: &[u8]) -> Option<ImageKind> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageKind::Png)
    } else if bytes.starts_with(b"\xff\xd8\xff") {
        Some(ImageKind::Jpeg)
    } else if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        Some(ImageKind::Tiff)
    } else {
        None
    }
}

/// The width and height of every page of an image (TIFFs may hold several),
/// read from its header without decoding anything.
pub(crate) fn dimensions(kind: ImageKind, bytes: &[u8]) -> Result<Vec<(u64, u64)>, String> {
    let be16 = |b: &[u8], at: usize| -> Option<u64> {
        Some(u64::from(u16::from_be_bytes(
            b.get(at..at + 2)?.try_into().ok()?,
        )))
    };
    match kind {
        ImageKind::Png => {
            // Signature, then the IHDR chunk: length, type, width, height.
            if bytes.get(12..16) != Some(b"IHDR") {
                return Err("no IHDR header".into());
            }
            let be32 = |at: usize| -> Option<u64> {
                Some(u64::from(u32::from_be_bytes(
                    bytes.get(at..at + 4)?.try_into().ok()?,
                )))
            };
            match (be32(16), be32(20)) {
                (Some(w), Some(h)) => Ok(vec![(w, h)]),
                _ => Err("truncated IHDR header".into()),
            }
        }
        ImageKind::Jpeg => {
            let mut at = 2;
            loop {
                // Markers may be padded with 0xFF fill bytes.
                while bytes.get(at) == Some(&0xff) && bytes.get(at + 1) == Some(&0xff) {
                    at += 1;
                }
                if bytes.get(at) != Some(&0xff) {
                    return Err("no frame header (SOF) before the image data".into());
                }
                let marker = *bytes.get(at + 1).ok_or("truncated marker")?;
                at += 2;
                if (0xd0..=0xd9).contains(&marker) || marker == 0x01 {
                    continue;
                }
                let len = be16(bytes, at).ok_or("truncated segment")? as usize;
                let is_sof =
                    (0xc0..=0xcf).contains(&marker) && !matches!(marker, 0xc4 | 0xc8 | 0xcc);
                if is_sof {
                    let (h, w) = (be16(bytes, at + 3), be16(bytes, at + 5));
                    return match (w, h) {
                        (Some(w), Some(h)) => Ok(vec![(w, h)]),
                        _ => Err("truncated frame header".into()),
                    };
                }
                if marker == 0xda || len < 2 {
                    return Err("no frame header (SOF) before the image data".into());
                }
                at += len;
            }
        }
        ImageKind::Tiff => {
            let little = bytes.starts_with(b"II");
            let u16_at = |at: usize| -> Option<u64> {
                let b: [u8; 2] = bytes.get(at..at + 2)?.try_into().ok()?;
                Some(u64::from(if little {
                    u16::from_le_bytes(b)
                } else {
                    u16::from_be_bytes(b)
                }))
            };
            let u32_at = |at: usize| -> Option<u64> {
                let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
                Some(u64::from(if little {
                    u32::from_le_bytes(b)
                } else {
                    u32::from_be_bytes(b)
                }))
            };
            let mut pages = Vec::new();
            let mut seen = std::collections::HashSet::new();
            let mut ifd = u32_at(4).ok_or("truncated header")?;
            while ifd != 0 {
                if !seen.insert(ifd) || pages.len() >= 100_000 {
                    return Err("a loop in the image directory chain".into());
                }
                let at = ifd as usize;
                let n = u16_at(at).ok_or("truncated image directory")? as usize;
                let (mut w, mut h) = (None, None);
                for i in 0..n {
                    let e = at + 2 + 12 * i;
                    let tag = u16_at(e).ok_or("truncated image directory")?;
                    let ty = u16_at(e + 2).ok_or("truncated image directory")?;
                    // SHORT (3) or LONG (4), in the entry's value field.
                    let value = match ty {
                        3 => u16_at(e + 8),
                        4 => u32_at(e + 8),
                        _ => None,
                    };
                    match tag {
                        256 => w = value,
                        257 => h = value,
                        _ => {}
                    }
                }
                match (w, h) {
                    (Some(w), Some(h)) => pages.push((w, h)),
                    _ => return Err("an image directory without width and height".into()),
                }
                ifd = u32_at(at + 2 + 12 * n).ok_or("truncated image directory")?;
            }
            if pages.is_empty() {
                return Err("no image directory".into());
            }
            Ok(pages)
        }
    }
}

/// Tesseract's output as paragraphs: pages split at form feeds, blocks at
/// blank lines, and each block's lines joined by spaces (a line ending in a
/// hyphen after a letter joined without one).
pub(crate) fn paragraphs(page: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut block = String::new();
    let mut flush = |block: &mut String| {
        if !block.trim().is_empty() {
            out.push(std::mem::take(block));
        }
        block.clear();
    };
    for line in page.lines() {
        let line: String = line
            .trim()
            .chars()
            .filter(|c| !c.is_control() || *c == '\t')
            .collect();
        if line.is_empty() {
            flush(&mut block);
            continue;
        }
        let joins = block.ends_with('-')
            && block
                .chars()
                .rev()
                .nth(1)
                .is_some_and(|c| c.is_alphabetic());
        if !block.is_empty() && !joins {
            block.push(' ');
        }
        block.push_str(&line);
    }
    flush(&mut block);
    out
}

/// Load an image by OCR: its pages' paragraphs, one section per page under
/// the file's name.
pub(crate) fn load_image(
    path: &Path,
    bytes: &[u8],
    limits: &LoadLimits,
) -> Result<Document, IngestError> {
    let budget = Budget::start(limits);
    let corrupt = |reason: String| IngestError::Corrupt {
        path: path.to_path_buf(),
        format: "image",
        reason,
    };
    let kind = sniff(bytes).ok_or_else(|| corrupt("not a PNG, JPEG or TIFF image".into()))?;
    let pages = dimensions(kind, bytes).map_err(|r| corrupt(format!("{}: {r}", kind.name())))?;
    let ocr = &limits.ocr;
    if let Some(reason) = unavailable(ocr) {
        return Err(IngestError::OcrUnavailable {
            path: path.to_path_buf(),
            reason: format!("image not read: {reason}"),
        });
    }
    if pages.len() > ocr.max_pages as usize {
        return Err(IngestError::Ocr {
            path: path.to_path_buf(),
            reason: format!(
                "the {} holds {} pages, more than ingest.ocr_max_pages ({})",
                kind.name(),
                pages.len(),
                ocr.max_pages
            ),
        });
    }
    for (i, &(w, h)) in pages.iter().enumerate() {
        if w == 0 || h == 0 {
            return Err(corrupt(format!(
                "{}: an empty image ({w} × {h})",
                kind.name()
            )));
        }
        if w.saturating_mul(h) > ocr.max_pixels {
            let page = if pages.len() > 1 {
                format!("page {} ", i + 1)
            } else {
                String::new()
            };
            return Err(IngestError::Ocr {
                path: path.to_path_buf(),
                reason: format!(
                    "{page}{w} × {h} pixels is more than ingest.ocr_max_megapixels ({})",
                    ocr.max_pixels / 1_000_000
                ),
            });
        }
    }
    let text = recognise(ocr, bytes, &budget).map_err(|e| match e {
        OcrError::Unavailable(reason) => OcrError::Unavailable(format!("image not read: {reason}")),
        e => e,
    });
    let text = text.map_err(|e| e.into_ingest(path, limits))?;
    let title = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    let many = pages.len() > 1;
    let mut doc = Document {
        format: Format::Image,
        text: String::new(),
        sections: Vec::new(),
        warnings: Vec::new(),
    };
    for (i, page) in text.split('\x0c').enumerate() {
        let paras = paragraphs(page);
        if paras.is_empty() {
            continue;
        }
        if !doc.text.is_empty() {
            doc.text.push_str("\n\n");
        }
        let start = doc.text.len();
        doc.text.push_str(&paras.join("\n\n"));
        let mut headings = vec![title.clone()];
        if many {
            headings.push(format!("Page {}", i + 1));
        }
        doc.sections.push(Section {
            start,
            end: doc.text.len(),
            headings,
        });
    }
    if doc.text.is_empty() {
        return Err(IngestError::Ocr {
            path: path.to_path_buf(),
            reason: "no text was recognised in the image".into(),
        });
    }
    Ok(doc)
}

/// PDF pages' text by OCR, in the order of `pages` (page number,
/// resolution): each rendered by `pdftoppm` from a private copy of the
/// file, then read by Tesseract. Stops after the first error that would be
/// the same for the pages after it (OCR unavailable, time spent), which is
/// then the last result.
pub(crate) fn pdf_pages(
    ocr: &OcrLimits,
    pdf: &[u8],
    pages: &[(u32, u32)],
    budget: &Budget,
) -> Vec<Result<String, OcrError>> {
    let mut out = Vec::new();
    if pages.is_empty() {
        return out;
    }
    if let Some(reason) = unavailable(ocr) {
        out.push(Err(OcrError::Unavailable(reason)));
        return out;
    }
    let file = match write_temp(pdf) {
        Ok(f) => f,
        Err(e) => {
            out.push(Err(OcrError::Failed(format!(
                "cannot write the PDF for pdftoppm: {e}"
            ))));
            return out;
        }
    };
    for &(page, dpi) in pages {
        if budget.spent() {
            out.push(Err(OcrError::Timeout));
            break;
        }
        let text = render_page(ocr, file.as_ref(), page, dpi, budget)
            .and_then(|image| recognise(ocr, &image, budget));
        let stop = matches!(text, Err(OcrError::Unavailable(_) | OcrError::Timeout));
        out.push(text);
        if stop {
            break;
        }
    }
    out
}

/// A private temporary copy of a file (removed when dropped).
#[cfg(feature = "ocr")]
fn write_temp(bytes: &[u8]) -> std::io::Result<tempfile::TempPath> {
    use std::io::Write;
    let mut f = tempfile::Builder::new()
        .prefix("cairn-ocr-")
        .suffix(".pdf")
        .tempfile()?;
    f.write_all(bytes)?;
    f.flush()?;
    Ok(f.into_temp_path())
}

#[cfg(not(feature = "ocr"))]
fn write_temp(_bytes: &[u8]) -> std::io::Result<std::path::PathBuf> {
    Err(std::io::Error::other("no OCR in this build"))
}

#[cfg(feature = "ocr")]
fn render_page(
    ocr: &OcrLimits,
    pdf: &Path,
    page: u32,
    dpi: u32,
    budget: &Budget,
) -> Result<Vec<u8>, OcrError> {
    let n = page.to_string();
    let r = dpi.to_string();
    let args: Vec<&std::ffi::OsStr> = vec![
        "-gray".as_ref(),
        "-r".as_ref(),
        r.as_ref(),
        "-f".as_ref(),
        n.as_ref(),
        "-l".as_ref(),
        n.as_ref(),
        pdf.as_os_str(),
    ];
    // A greyscale PGM: one byte a pixel and a short header.
    let cap = ocr.max_pixels.saturating_add(4096) as usize;
    match run::run(&ocr.pdftoppm, &args, None, budget.left(), cap) {
        Ok((out, _)) if out.is_empty() => Err(OcrError::Failed(format!(
            "page {page}: pdftoppm rendered nothing"
        ))),
        Ok((out, _)) => Ok(out),
        Err(run::RunError::Missing) => Err(OcrError::Unavailable(format!(
            "`{}`, which renders PDF pages for OCR, is not installed (apt install poppler-utils, or set ingest.ocr_pdftoppm)",
            ocr.pdftoppm
        ))),
        Err(run::RunError::Timeout) => Err(OcrError::Timeout),
        Err(run::RunError::Failed(why)) => Err(OcrError::Failed(format!(
            "page {page}: pdftoppm: {why}{}",
            memory_hint(&why)
        ))),
    }
}

#[cfg(not(feature = "ocr"))]
fn render_page(
    ocr: &OcrLimits,
    _pdf: &Path,
    _page: u32,
    _dpi: u32,
    _budget: &Budget,
) -> Result<Vec<u8>, OcrError> {
    Err(OcrError::Unavailable(unavailable(ocr).unwrap_or_default()))
}

/// Tesseract's text for an image given whole on its stdin.
#[cfg(feature = "ocr")]
fn recognise(ocr: &OcrLimits, image: &[u8], budget: &Budget) -> Result<String, OcrError> {
    let psm = ocr.psm.to_string();
    let args: Vec<&std::ffi::OsStr> = vec![
        "stdin".as_ref(),
        "stdout".as_ref(),
        "-l".as_ref(),
        ocr.languages.as_ref(),
        "--psm".as_ref(),
        psm.as_ref(),
    ];
    let missing_language = |said: &str| -> Option<OcrError> {
        let lang = said
            .split("Failed loading language '")
            .nth(1)?
            .split('\'')
            .next()?;
        Some(OcrError::Unavailable(format!(
            "Tesseract has no data for language `{lang}` (apt install tesseract-ocr-{lang}, or change ingest.ocr_languages)"
        )))
    };
    match run::run(&ocr.tesseract, &args, Some(image), budget.left(), 64 << 20) {
        // Tesseract goes on with the languages it has; the configuration
        // asked for all of them.
        Ok((_, said)) if missing_language(&said).is_some() => {
            Err(missing_language(&said).expect("checked"))
        }
        Ok((out, _)) => Ok(String::from_utf8_lossy(&out).into_owned()),
        Err(run::RunError::Missing) => Err(OcrError::Unavailable(format!(
            "Tesseract (`{}`) is not installed (apt install tesseract-ocr tesseract-ocr-eng, or set ingest.ocr_tesseract)",
            ocr.tesseract
        ))),
        Err(run::RunError::Timeout) => Err(OcrError::Timeout),
        // A language without its data is the same for every file.
        Err(run::RunError::Failed(why)) => {
            Err(missing_language(&why).unwrap_or_else(|| {
                OcrError::Failed(format!("tesseract: {why}{}", memory_hint(&why)))
            }))
        }
    }
}

#[cfg(not(feature = "ocr"))]
fn recognise(ocr: &OcrLimits, _image: &[u8], _budget: &Budget) -> Result<String, OcrError> {
    Err(OcrError::Unavailable(unavailable(ocr).unwrap_or_default()))
}

/// What to change when a program ran out of memory: it runs under the
/// loader process's address-space limit.
#[cfg(feature = "ocr")]
fn memory_hint(why: &str) -> &'static str {
    let why = why.to_ascii_lowercase();
    if [
        "bad_alloc",
        "out of memory",
        "cannot allocate",
        "memory allocation",
    ]
    .iter()
    .any(|s| why.contains(s))
    {
        " (it runs under the loader's memory limit, ingest.loader_memory_mb)"
    } else {
        ""
    }
}

#[cfg(feature = "ocr")]
mod run {
    //! Running a program with a deadline, its stdin fed and its stdout
    //! captured up to a cap.

    use std::ffi::OsStr;
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    pub(super) enum RunError {
        /// The program is not installed (not found, or not executable).
        Missing,
        /// It ran past the deadline and was killed.
        Timeout,
        /// It failed: its exit status and the end of what it said.
        Failed(String),
    }

    pub(super) fn run(
        program: &str,
        args: &[&OsStr],
        input: Option<&[u8]>,
        time: Duration,
        max_out: usize,
    ) -> Result<(Vec<u8>, String), RunError> {
        if time.is_zero() {
            return Err(RunError::Timeout);
        }
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("OMP_THREAD_LIMIT", "1")
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl is async-signal-safe and only sets this child's
            // parent-death signal, so the program dies with the loader
            // process that is killed at the file's deadline.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                return Err(RunError::Missing)
            }
            Err(e) => return Err(RunError::Failed(format!("cannot start `{program}`: {e}"))),
        };
        let started = Instant::now();
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let outcome = std::thread::scope(|s| {
            if let (Some(mut sink), Some(data)) = (stdin, input) {
                // A program that stops reading early (or dies) closes the
                // pipe; its exit status tells what happened.
                s.spawn(move || {
                    let _ = sink.write_all(data);
                });
            }
            let out = s.spawn(move || {
                let mut kept = Vec::new();
                let mut buf = vec![0u8; 64 << 10];
                let mut over = false;
                loop {
                    match stdout.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) if kept.len() + n <= max_out => kept.extend_from_slice(&buf[..n]),
                        Ok(_) => over = true,
                    }
                }
                (kept, over)
            });
            let err = s.spawn(move || {
                let mut said = Vec::new();
                let _ = (&mut stderr).take(64 << 10).read_to_end(&mut said);
                let _ = std::io::copy(&mut stderr, &mut std::io::sink());
                said
            });
            let status = loop {
                match child.try_wait() {
                    Ok(Some(st)) => break Ok(st),
                    Ok(None) if started.elapsed() >= time => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break Err(RunError::Timeout);
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                    Err(e) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break Err(RunError::Failed(e.to_string()));
                    }
                }
            };
            let (out, over) = out.join().unwrap_or_default();
            let said = err.join().unwrap_or_default();
            (status, out, over, said)
        });
        let (status, out, over, said) = outcome;
        let status = status?;
        if over {
            return Err(RunError::Failed(format!(
                "wrote more than {} MiB",
                max_out >> 20
            )));
        }
        let said = String::from_utf8_lossy(&said).into_owned();
        if !status.success() {
            let last: Vec<&str> = said
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            let tail = last[last.len().saturating_sub(3)..].join("; ");
            return Err(RunError::Failed(if tail.is_empty() {
                status.to_string()
            } else {
                format!("{status}: {tail}")
            }));
        }
        Ok((out, said))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_give_sizes_without_decoding() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&100_000u32.to_be_bytes());
        png.extend_from_slice(&3u32.to_be_bytes());
        assert_eq!(sniff(&png), Some(ImageKind::Png));
        assert_eq!(
            dimensions(ImageKind::Png, &png).unwrap(),
            vec![(100_000, 3)]
        );

        // SOI, an APP0 segment, then SOF0: precision, height 480, width 640.
        let jpeg = b"\xff\xd8\xff\xe0\x00\x04ab\xff\xc0\x00\x11\x08\x01\xe0\x02\x80\x03";
        assert_eq!(sniff(jpeg), Some(ImageKind::Jpeg));
        assert_eq!(dimensions(ImageKind::Jpeg, jpeg).unwrap(), vec![(640, 480)]);
        assert!(dimensions(ImageKind::Jpeg, b"\xff\xd8\xff\xda\x00\x02").is_err());

        // Little-endian TIFF, one directory: width (SHORT) 7, height (LONG) 9.
        let mut tiff = b"II*\0\x08\0\0\0".to_vec();
        tiff.extend_from_slice(&2u16.to_le_bytes());
        tiff.extend_from_slice(&[0, 1, 3, 0, 1, 0, 0, 0, 7, 0, 0, 0]);
        tiff.extend_from_slice(&[1, 1, 4, 0, 1, 0, 0, 0, 9, 0, 0, 0]);
        tiff.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(dimensions(ImageKind::Tiff, &tiff).unwrap(), vec![(7, 9)]);
        // A directory chain that points back at itself.
        let n = tiff.len();
        tiff[n - 4..].copy_from_slice(&8u32.to_le_bytes());
        assert!(dimensions(ImageKind::Tiff, &tiff).is_err());
    }

    #[test]
    fn paragraphs_are_blank_line_blocks() {
        let out = "First line of a\nparagraph, with a hyphen-\nated word.\n\n\nSecond\x0c";
        assert_eq!(
            paragraphs(out),
            vec![
                "First line of a paragraph, with a hyphen-ated word.".to_string(),
                "Second".to_string()
            ]
        );
        assert!(paragraphs(" \n\n").is_empty());
    }
}
