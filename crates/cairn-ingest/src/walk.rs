//! Finding the files to ingest under a set of roots.

use ignore::WalkBuilder;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

/// What [`walk`] should take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkOptions {
    /// Files larger than this are skipped.
    pub max_file_bytes: u64,
    /// Extra ignore-file names honoured like `.gitignore` (e.g. `.cairnignore`).
    pub ignore_files: Vec<String>,
    /// Include hidden files and directories (names starting with `.`).
    pub hidden: bool,
    /// Include images that OCR reads (`.png .jpg .jpeg .tif .tiff`);
    /// without it they are skipped as binary files.
    pub images: bool,
}

impl Default for WalkOptions {
    fn default() -> Self {
        WalkOptions {
            max_file_bytes: 64 * 1024 * 1024,
            ignore_files: vec![".cairnignore".to_string()],
            hidden: false,
            images: false,
        }
    }
}

/// A file to ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundFile {
    /// Canonical absolute path.
    pub abs_path: PathBuf,
    /// Display path: relative to the root it was found under, `/`-separated;
    /// the file name when the root is the file itself.
    pub doc: String,
    /// The canonical root it was found under.
    pub root: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
}

/// A path that was not ingested, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The path as met (display path when relative to a root is possible).
    pub path: String,
    pub reason: String,
}

fn skipped(path: impl Into<String>, reason: impl Into<String>) -> Skipped {
    Skipped {
        path: path.into(),
        reason: reason.into(),
    }
}

/// `path` relative to `root`, `/`-separated.
fn display_path(root: &Path, path: &Path) -> String {
    match path.strip_prefix(root) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/"),
        _ => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string()),
    }
}

/// The path an `ignore` error is about, if it names one.
fn error_path(err: &ignore::Error) -> Option<PathBuf> {
    match err {
        ignore::Error::WithPath { path, .. } => Some(path.clone()),
        ignore::Error::Loop { child, .. } => Some(child.clone()),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            error_path(err)
        }
        ignore::Error::Partial(errs) => errs.iter().find_map(error_path),
        _ => None,
    }
}

/// Whether an `ignore` error is a symlink loop.
fn is_loop(err: &ignore::Error) -> bool {
    match err {
        ignore::Error::Loop { .. } => true,
        ignore::Error::WithPath { err, .. }
        | ignore::Error::WithDepth { err, .. }
        | ignore::Error::WithLineNumber { err, .. } => is_loop(err),
        _ => false,
    }
}

/// Modification time in nanoseconds since the Unix epoch, as the catalog
/// records it (0 when the platform has none).
pub fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    let Ok(modified) = meta.modified() else {
        return 0;
    };
    match modified.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

/// Walk `roots` and list the files to ingest, sorted by canonical path and
/// without duplicates, together with everything skipped and why.
///
/// `.gitignore`, `.ignore` and each of `opts.ignore_files` are honoured even
/// outside a git repository. Symlinks are followed unless they lead outside
/// their root; symlink loops, unreadable directories and missing roots are
/// reported as skips, never as failures.
pub fn walk(roots: &[PathBuf], opts: &WalkOptions) -> (Vec<FoundFile>, Vec<Skipped>) {
    let mut found: Vec<(FoundFile, bool)> = Vec::new();
    let mut skips: Vec<Skipped> = Vec::new();

    for given in roots {
        let root = match std::fs::canonicalize(given) {
            Ok(r) => r,
            Err(e) => {
                let reason = match e.kind() {
                    std::io::ErrorKind::NotFound => "root does not exist".to_string(),
                    std::io::ErrorKind::PermissionDenied => "root: permission denied".to_string(),
                    _ => format!("cannot open root: {e}"),
                };
                skips.push(skipped(given.display().to_string(), reason));
                continue;
            }
        };
        walk_root(&root, opts, &mut found, &mut skips);
    }

    // Prefer the path reached without going through a symlink.
    found.sort_by(|(a, a_link), (b, b_link)| a.abs_path.cmp(&b.abs_path).then(a_link.cmp(b_link)));
    found.dedup_by(|later, first| later.0.abs_path == first.0.abs_path);
    (found.into_iter().map(|(f, _)| f).collect(), skips)
}

fn walk_root(
    root: &Path,
    opts: &WalkOptions,
    found: &mut Vec<(FoundFile, bool)>,
    skips: &mut Vec<Skipped>,
) {
    let outside: Arc<Mutex<Vec<Skipped>>> = Arc::new(Mutex::new(Vec::new()));
    let mut builder = WalkBuilder::new(root);
    builder
        .follow_links(true)
        .hidden(!opts.hidden)
        .require_git(false)
        .git_ignore(true)
        .ignore(true)
        .parents(true);
    for name in &opts.ignore_files {
        builder.add_custom_ignore_filename(name);
    }
    {
        let root = root.to_path_buf();
        let outside = Arc::clone(&outside);
        builder.filter_entry(move |entry| {
            if !entry.path_is_symlink() {
                return true;
            }
            match std::fs::canonicalize(entry.path()) {
                Ok(target) if target.starts_with(&root) => true,
                Ok(_) => {
                    if let Ok(mut v) = outside.lock() {
                        v.push(skipped(
                            display_path(&root, entry.path()),
                            "symlink points outside the root",
                        ));
                    }
                    false
                }
                // Dangling link: let the walker report it.
                Err(_) => true,
            }
        });
    }

    for result in builder.build() {
        let entry = match result {
            Ok(entry) => entry,
            Err(err) => {
                let path = error_path(&err)
                    .map(|p| display_path(root, &p))
                    .unwrap_or_else(|| root.display().to_string());
                let reason = if is_loop(&err) {
                    "symlink loop".to_string()
                } else {
                    err.to_string()
                };
                skips.push(skipped(path, reason));
                continue;
            }
        };
        let path = entry.path();
        let doc = display_path(root, path);
        // `metadata` follows symlinks.
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                let reason = if entry.path_is_symlink() && e.kind() == std::io::ErrorKind::NotFound
                {
                    "dangling symlink".to_string()
                } else {
                    e.to_string()
                };
                skips.push(skipped(doc, reason));
                continue;
            }
        };
        if !meta.is_file() {
            continue;
        }
        if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
            let image = cairn_core::Format::from_extension(ext) == Some(cairn_core::Format::Image);
            if cairn_core::is_known_binary_extension(ext) && !(image && opts.images) {
                skips.push(skipped(
                    doc,
                    format!("binary file (.{})", ext.to_ascii_lowercase()),
                ));
                continue;
            }
        }
        let size = meta.len();
        if size > opts.max_file_bytes {
            skips.push(skipped(
                doc,
                format!(
                    "file too large ({size} bytes > limit {})",
                    opts.max_file_bytes
                ),
            ));
            continue;
        }
        if size == 0 {
            skips.push(skipped(doc, "empty file"));
            continue;
        }
        let abs_path = match std::fs::canonicalize(path) {
            Ok(p) => p,
            Err(e) => {
                skips.push(skipped(doc, e.to_string()));
                continue;
            }
        };
        if !abs_path.starts_with(root) {
            // A symlinked file whose target leaves the root (the filter
            // catches directories and files; this is a second guard).
            skips.push(skipped(doc, "symlink points outside the root"));
            continue;
        }
        let via_link = abs_path != path;
        found.push((
            FoundFile {
                abs_path,
                doc,
                root: root.to_path_buf(),
                size,
                mtime_ns: mtime_ns(&meta),
            },
            via_link,
        ));
    }
    let mut outside_skips = match outside.lock() {
        Ok(mut v) => std::mem::take(&mut *v),
        Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
    };
    skips.append(&mut outside_skips);
}
