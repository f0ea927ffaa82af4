//! Uploaded files: stored under names the server picks, never under a name
//! or path the client sent.
//!
//! `DATA/uploads/<collection>/files/<id>.<ext>` holds the bytes, where `id`
//! is derived from the sanitised display name (so uploading `notes.md` again
//! replaces it) and `ext` is the lower-cased extension when it is short and
//! alphanumeric (the loaders pick a format by it). `names/<id>` holds the
//! display name. The files stay after ingestion: a job interrupted by a
//! shutdown is resumed from them at the next start.

use crate::error::ApiError;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where a collection's uploads live.
pub fn collection_uploads(data_dir: &Path, collection: &str) -> PathBuf {
    data_dir.join("uploads").join(collection)
}

/// Collections with an uploads directory, sorted.
pub fn collections(data_dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(data_dir.join("uploads"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| cairn_core::config::validate_collection_name(n).is_ok())
        .collect();
    out.sort();
    out
}

/// A client-supplied file name reduced to a safe display name: its last
/// path component, without control characters or leading dots, at most 200
/// bytes.
pub fn sanitize_name(raw: &str) -> Result<String, ApiError> {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        .map(|c| if c.is_control() || c == ':' { '_' } else { c })
        .collect();
    let mut name = cleaned.trim().trim_start_matches('.').trim().to_string();
    while name.len() > 200 {
        name.pop();
    }
    if name.is_empty() {
        return Err(ApiError::bad(
            "name",
            format!("`{}` is not a usable file name", raw.escape_debug()),
        ));
    }
    Ok(name)
}

fn extension(name: &str) -> String {
    match name.rsplit_once('.') {
        Some((_, ext))
            if !ext.is_empty()
                && ext.len() <= 10
                && ext.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            ext.to_ascii_lowercase()
        }
        _ => "txt".into(),
    }
}

/// Where uploads arrive, a part at a time, before they are stored.
pub fn incoming_dir(data_dir: &Path, collection: &str) -> PathBuf {
    collection_uploads(data_dir, collection).join("incoming")
}

/// Files being received: removed when dropped, unless stored since.
#[derive(Default)]
pub struct Incoming {
    pub files: Vec<(String, PathBuf)>,
}

impl Drop for Incoming {
    fn drop(&mut self) {
        for (_, p) in &self.files {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Store a received file (written and synced under [`incoming_dir`]) as an
/// upload: moved into place under its server-chosen name; returns its path
/// (canonical) and display name.
pub fn store_received(
    data_dir: &Path,
    collection: &str,
    raw_name: &str,
    received: &Path,
) -> Result<(PathBuf, String), ApiError> {
    let name = sanitize_name(raw_name)?;
    let (files, names, path, id) = place(data_dir, collection, &name)?;
    let io = |p: &Path, e: std::io::Error| ApiError::Internal(format!("{}: {e}", p.display()));
    write_atomic(&names.join(&id), name.as_bytes()).map_err(|e| io(&names, e))?;
    std::fs::rename(received, &path).map_err(|e| io(&path, e))?;
    if let Ok(d) = std::fs::File::open(&files) {
        let _ = d.sync_all();
    }
    let path = path.canonicalize().map_err(|e| io(&path, e))?;
    Ok((path, name))
}

/// An upload's directories (created) and its file's path and id.
fn place(
    data_dir: &Path,
    collection: &str,
    name: &str,
) -> Result<(PathBuf, PathBuf, PathBuf, String), ApiError> {
    let id = blake3::hash(name.as_bytes()).to_hex()[..20].to_string();
    let base = collection_uploads(data_dir, collection);
    let files = base.join("files");
    let names = base.join("names");
    for d in [&files, &names] {
        std::fs::create_dir_all(d)
            .map_err(|e| ApiError::Internal(format!("{}: {e}", d.display())))?;
    }
    let path = files.join(format!("{id}.{}", extension(name)));
    Ok((files, names, path, id))
}

/// Store one upload; returns its path (canonical) and display name.
pub fn store(
    data_dir: &Path,
    collection: &str,
    raw_name: &str,
    bytes: &[u8],
) -> Result<(PathBuf, String), ApiError> {
    let name = sanitize_name(raw_name)?;
    let (_, names, path, id) = place(data_dir, collection, &name)?;
    let io = |p: &Path, e: std::io::Error| ApiError::Internal(format!("{}: {e}", p.display()));
    write_atomic(&names.join(&id), name.as_bytes()).map_err(|e| io(&names, e))?;
    write_atomic(&path, bytes).map_err(|e| io(&path, e))?;
    let path = path.canonicalize().map_err(|e| io(&path, e))?;
    Ok((path, name))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("part");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    // The rename is durable once the directory is synced.
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Every stored upload of a collection with its display name.
pub fn list(data_dir: &Path, collection: &str) -> Vec<(PathBuf, String)> {
    let base = collection_uploads(data_dir, collection);
    let mut out = vec![];
    for e in std::fs::read_dir(base.join("files"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "part") {
            continue;
        }
        let Some(id) = path.file_stem().map(|s| s.to_string_lossy().to_string()) else {
            continue;
        };
        if let (Ok(name), Ok(abs)) = (
            std::fs::read_to_string(base.join("names").join(&id)),
            path.canonicalize(),
        ) {
            out.push((abs, name));
        }
    }
    out.sort();
    out
}

/// Delete a stored upload (when `path` is one).
pub fn forget(data_dir: &Path, collection: &str, path: &Path) {
    let base = collection_uploads(data_dir, collection);
    let Ok(files) = base.join("files").canonicalize() else {
        return;
    };
    if path.parent() == Some(files.as_path()) {
        let _ = std::fs::remove_file(path);
        if let Some(id) = path.file_stem() {
            let _ = std::fs::remove_file(base.join("names").join(id));
        }
    }
}

/// Display names of a set of stored uploads, keyed by path.
pub fn names(items: &[(PathBuf, String)]) -> HashMap<PathBuf, String> {
    items.iter().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape_the_uploads_dir() {
        assert_eq!(sanitize_name("../../etc/passwd").unwrap(), "passwd");
        assert_eq!(sanitize_name("..\\..\\win.ini").unwrap(), "win.ini");
        assert_eq!(sanitize_name("/abs/notes.md").unwrap(), "notes.md");
        assert_eq!(sanitize_name("a\u{0}b\n.md").unwrap(), "a_b_.md");
        assert_eq!(sanitize_name(".bashrc").unwrap(), "bashrc");
        assert!(sanitize_name("..").is_err());
        assert!(sanitize_name("dir/").is_err());
        assert_eq!(extension("x.tar.GZ"), "gz");
        assert_eq!(extension("x.we!rd"), "txt");
        assert_eq!(extension("README"), "txt");
    }

    #[test]
    fn stored_under_server_chosen_names() {
        let dir = tempfile::tempdir().unwrap();
        let (p, name) = store(dir.path(), "c", "../../evil.md", b"# hi").unwrap();
        assert_eq!(name, "evil.md");
        let files = dir.path().join("uploads/c/files").canonicalize().unwrap();
        assert_eq!(p.parent().unwrap(), files);
        assert!(p.file_name().unwrap().to_string_lossy().ends_with(".md"));
        assert_ne!(p.file_name().unwrap(), "evil.md");
        // The same name again replaces the file.
        let (p2, _) = store(dir.path(), "c", "evil.md", b"# hi again").unwrap();
        assert_eq!(p, p2);
        assert_eq!(
            list(dir.path(), "c"),
            vec![(p.clone(), "evil.md".to_string())]
        );
        forget(dir.path(), "c", &p);
        assert!(list(dir.path(), "c").is_empty());
    }
}
