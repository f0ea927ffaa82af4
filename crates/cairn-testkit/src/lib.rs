//! Test support shared by the integration tests: where the real model and
//! the real corpus are, and copying parts of the corpus into a test folder.
//!
//! Nothing here is faked: tests that need the model fail (not skip) with a
//! message saying how to install it, and the corpus is Debian's
//! `python3.11-doc` (the Python 3.11 documentation, HTML).

use std::path::{Path, PathBuf};

/// The models dir the tests use: `CAIRN_MODELS_DIR`, else the default.
pub fn models_dir() -> PathBuf {
    std::env::var_os("CAIRN_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(cairn_core::config::default_models_dir)
}

/// The installed all-MiniLM-L6-v2 directory; panics with instructions if absent.
pub fn minilm_dir() -> PathBuf {
    let dir = models_dir().join("all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "the real all-MiniLM-L6-v2 is needed at {}: run `cairn models fetch` (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// The Python 3.11 HTML documentation; panics with instructions if absent.
pub fn python_docs() -> PathBuf {
    let dir = std::env::var_os("CAIRN_TEST_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/doc/python3.11/html"));
    assert!(
        dir.join("library/os.path.html").is_file(),
        "the Python 3.11 docs are needed at {}: `apt-get install python3.11-doc` (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// Copy the named pages (paths relative to the docs root) into `dest`,
/// keeping their relative paths.
pub fn copy_pages(pages: &[&str], dest: &Path) {
    let root = python_docs();
    for p in pages {
        let to = dest.join(p);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(root.join(p), &to).unwrap_or_else(|e| panic!("copy {p}: {e}"));
    }
}

/// All `.html` pages under a docs subfolder, sorted, relative to the docs root.
pub fn pages_under(sub: &str) -> Vec<String> {
    let root = python_docs();
    let mut out: Vec<String> = std::fs::read_dir(root.join(sub))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".html"))
        .map(|n| format!("{sub}/{n}"))
        .collect();
    out.sort();
    out
}
