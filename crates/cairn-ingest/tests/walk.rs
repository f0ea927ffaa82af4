//! Directory walking on real trees in temporary directories.

use cairn_ingest::{walk, FoundFile, Skipped, WalkOptions};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

fn opts() -> WalkOptions {
    WalkOptions {
        max_file_bytes: 1000,
        ignore_files: vec![".cairnignore".to_string()],
        hidden: false,
        images: false,
    }
}

fn write(root: &Path, rel: &str, content: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

fn docs(found: &[FoundFile]) -> Vec<&str> {
    let mut v: Vec<&str> = found.iter().map(|f| f.doc.as_str()).collect();
    v.sort();
    v
}

fn reason_for<'a>(skipped: &'a [Skipped], path: &str) -> Option<&'a str> {
    skipped
        .iter()
        .find(|s| s.path == path)
        .map(|s| s.reason.as_str())
}

#[test]
fn ignore_files_are_honoured_without_a_git_repo() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    assert!(!root.join(".git").exists());
    write(root, ".gitignore", b"*.log\nbuild/\n");
    write(root, "keep.txt", b"keep");
    write(root, "debug.log", b"noise");
    write(root, "build/out.txt", b"generated");
    write(root, "sub/.ignore", b"secret.md\n");
    write(root, "sub/secret.md", b"# hidden by .ignore");
    write(root, "sub/open.md", b"# open");
    write(root, ".cairnignore", b"drafts/\n");
    write(root, "drafts/wip.md", b"wip");

    let (found, _) = walk(&[root.to_path_buf()], &opts());
    assert_eq!(docs(&found), ["keep.txt", "sub/open.md"]);

    // Without the custom name, drafts/ is walked.
    let (found, _) = walk(
        &[root.to_path_buf()],
        &WalkOptions {
            ignore_files: vec![],
            ..opts()
        },
    );
    assert_eq!(docs(&found), ["drafts/wip.md", "keep.txt", "sub/open.md"]);
}

#[test]
fn hidden_files_are_skipped_unless_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "visible.txt", b"v");
    write(root, ".env", b"SECRET=1");
    write(root, ".config/app.toml", b"a = 1");

    let (found, _) = walk(&[root.to_path_buf()], &opts());
    assert_eq!(docs(&found), ["visible.txt"]);

    let (found, _) = walk(
        &[root.to_path_buf()],
        &WalkOptions {
            hidden: true,
            ..opts()
        },
    );
    assert_eq!(docs(&found), [".config/app.toml", ".env", "visible.txt"]);
}

#[test]
fn symlinks_inside_followed_outside_skipped_loops_reported() {
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "private.txt", b"do not ingest");
    write(outside.path(), "dir/more.txt", b"nor this");

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "real/a.txt", b"alpha");
    write(root, "b.txt", b"beta");
    symlink(root.join("real"), root.join("linked")).unwrap(); // dir inside root
    symlink(root.join("b.txt"), root.join("alias.txt")).unwrap(); // file inside root
    symlink(outside.path().join("private.txt"), root.join("leak.txt")).unwrap();
    symlink(outside.path().join("dir"), root.join("leakdir")).unwrap();
    symlink(root, root.join("real/loop")).unwrap(); // loop back to the root
    symlink(root.join("nowhere"), root.join("dangling.txt")).unwrap();

    let (found, skipped) = walk(&[root.to_path_buf()], &opts());
    let canon_root = fs::canonicalize(root).unwrap();
    // Each real file once, under its own (non-link) path.
    assert_eq!(docs(&found), ["b.txt", "real/a.txt"], "{found:?}");
    for f in &found {
        assert!(f.abs_path.starts_with(&canon_root));
        assert_eq!(f.root, canon_root);
    }
    assert_eq!(
        reason_for(&skipped, "leak.txt"),
        Some("symlink points outside the root"),
        "{skipped:?}"
    );
    assert_eq!(
        reason_for(&skipped, "leakdir"),
        Some("symlink points outside the root"),
        "{skipped:?}"
    );
    assert!(
        skipped
            .iter()
            .any(|s| s.path.ends_with("loop") && s.reason.contains("loop")),
        "{skipped:?}"
    );
    assert!(
        skipped.iter().any(|s| s.path == "dangling.txt"),
        "{skipped:?}"
    );
    assert!(!skipped
        .iter()
        .any(|s| s.path.contains("private") || s.path.contains("more.txt")));
}

#[test]
fn empty_large_binary_and_missing_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "ok.md", b"# fine");
    write(root, "empty.txt", b"");
    write(root, "huge.txt", &[b'x'; 1001]);
    write(root, "limit.txt", &[b'x'; 1000]);
    write(root, "photo.PNG", b"\x89PNG....");
    write(root, "lib.so", b"\x7fELF");

    let missing = root.join("no/such/dir");
    let (found, skipped) = walk(&[root.to_path_buf(), missing.clone()], &opts());
    assert_eq!(docs(&found), ["limit.txt", "ok.md"]);
    assert_eq!(reason_for(&skipped, "empty.txt"), Some("empty file"));
    assert_eq!(
        reason_for(&skipped, "huge.txt"),
        Some("file too large (1001 bytes > limit 1000)")
    );
    assert_eq!(
        reason_for(&skipped, "photo.PNG"),
        Some("binary file (.png)")
    );
    assert_eq!(reason_for(&skipped, "lib.so"), Some("binary file (.so)"));
    // With OCR, images are documents; other binaries are still skipped.
    let (with_images, skips) = walk(
        &[root.to_path_buf()],
        &WalkOptions {
            images: true,
            ..opts()
        },
    );
    assert_eq!(docs(&with_images), ["limit.txt", "ok.md", "photo.PNG"]);
    assert_eq!(reason_for(&skips, "lib.so"), Some("binary file (.so)"));
    let missing_skip = skipped
        .iter()
        .find(|s| s.path == missing.display().to_string())
        .expect("missing root reported");
    assert!(
        missing_skip.reason.contains("does not exist"),
        "{missing_skip:?}"
    );

    let ok = found.iter().find(|f| f.doc == "ok.md").unwrap();
    assert_eq!(ok.size, 6);
    let mtime = fs::metadata(root.join("ok.md"))
        .unwrap()
        .modified()
        .unwrap();
    let expect = mtime
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    assert_eq!(ok.mtime_ns, expect);
}

#[test]
fn results_sorted_and_deduplicated_across_roots() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "z.txt", b"z");
    write(root, "a.txt", b"a");
    write(root, "m/n.txt", b"n");

    let roots: Vec<PathBuf> = vec![
        root.to_path_buf(),
        root.join("m"),
        root.join("m/../z.txt"),
        root.to_path_buf(),
    ];
    let (found, skipped) = walk(&roots, &opts());
    assert!(skipped.is_empty(), "{skipped:?}");
    let paths: Vec<_> = found.iter().map(|f| f.abs_path.clone()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(paths, sorted);
    assert_eq!(paths.len(), 3);
    // First root wins: display paths relative to it.
    assert_eq!(docs(&found), ["a.txt", "m/n.txt", "z.txt"]);
}

#[test]
fn a_file_root_is_its_own_doc() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "notes/today.md", b"# today");
    let file = dir.path().join("notes/today.md");
    let (found, skipped) = walk(std::slice::from_ref(&file), &opts());
    assert!(skipped.is_empty());
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].doc, "today.md");
    assert_eq!(found[0].abs_path, fs::canonicalize(&file).unwrap());
}

#[test]
fn unreadable_directory_is_reported_not_fatal() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "ok.txt", b"ok");
    write(root, "locked/inside.txt", b"x");
    fs::set_permissions(root.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
    let readable = fs::read_dir(root.join("locked")).is_ok(); // true when running as root
    let (found, skipped) = walk(&[root.to_path_buf()], &opts());
    fs::set_permissions(root.join("locked"), fs::Permissions::from_mode(0o755)).unwrap();
    if readable {
        assert_eq!(docs(&found), ["locked/inside.txt", "ok.txt"]);
    } else {
        assert_eq!(docs(&found), ["ok.txt"]);
        assert!(
            skipped
                .iter()
                .any(|s| s.reason.to_lowercase().contains("permission denied")),
            "{skipped:?}"
        );
    }
}
