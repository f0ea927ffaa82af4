//! A small reader for GGUF headers: enough to check that a file is a GGUF
//! model before handing it to llama.cpp, and to report its architecture,
//! name, context length and chat template (`cairn models list`, errors).

use crate::{GenerateError, Result};
use std::collections::BTreeMap;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"GGUF";

/// A metadata value; arrays are skipped and recorded by length only.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i128),
    Float(f64),
    Bool(bool),
    Str(String),
    Array { len: u64 },
}

/// What a GGUF header says about a model.
#[derive(Debug, Clone)]
pub struct GgufInfo {
    pub path: PathBuf,
    pub version: u32,
    pub tensors: u64,
    pub metadata: BTreeMap<String, Value>,
}

impl GgufInfo {
    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.metadata.get(key) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }
    pub fn get_int(&self, key: &str) -> Option<i128> {
        match self.metadata.get(key) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }
    /// `general.architecture`, e.g. `llama`, `gemma3`, `qwen2`.
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }
    /// `general.name`, when the file has one.
    pub fn name(&self) -> Option<&str> {
        self.get_str("general.name")
    }
    /// The context length the model was trained with.
    pub fn context_length(&self) -> Option<usize> {
        let arch = self.architecture()?;
        self.get_int(&format!("{arch}.context_length"))
            .and_then(|n| usize::try_from(n).ok())
    }
    /// The Jinja chat template embedded in the file.
    pub fn chat_template(&self) -> Option<&str> {
        self.get_str("tokenizer.chat_template")
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> GenerateError {
    GenerateError::BadModel {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

struct Reader<R> {
    r: R,
    path: PathBuf,
}

impl<R: Read + Seek> Reader<R> {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                bad(&self.path, "truncated GGUF file: the header ends early")
            } else {
                GenerateError::Io {
                    path: self.path.clone(),
                    source: e,
                }
            }
        })?;
        Ok(b)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }
    fn string(&mut self) -> Result<String> {
        let len = self.u64()?;
        if len > 64 << 20 {
            return Err(bad(
                &self.path,
                format!("corrupt GGUF header: a {len}-byte string"),
            ));
        }
        let mut b = vec![0u8; len as usize];
        self.r
            .read_exact(&mut b)
            .map_err(|_| bad(&self.path, "truncated GGUF file: the header ends early"))?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }
    fn skip(&mut self, n: u64) -> Result<()> {
        self.r
            .seek(SeekFrom::Current(n as i64))
            .map_err(|e| GenerateError::Io {
                path: self.path.clone(),
                source: e,
            })?;
        Ok(())
    }
    fn scalar_size(t: u32) -> Option<u64> {
        Some(match t {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            10..=12 => 8,
            _ => return None,
        })
    }
    fn value(&mut self, t: u32) -> Result<Value> {
        Ok(match t {
            0 => Value::Int(self.bytes::<1>()?[0] as i128),
            1 => Value::Int(self.bytes::<1>()?[0] as i8 as i128),
            2 => Value::Int(u16::from_le_bytes(self.bytes()?) as i128),
            3 => Value::Int(i16::from_le_bytes(self.bytes()?) as i128),
            4 => Value::Int(self.u32()? as i128),
            5 => Value::Int(i32::from_le_bytes(self.bytes()?) as i128),
            6 => Value::Float(f32::from_le_bytes(self.bytes()?) as f64),
            7 => Value::Bool(self.bytes::<1>()?[0] != 0),
            8 => Value::Str(self.string()?),
            9 => {
                let et = self.u32()?;
                let len = self.u64()?;
                if let Some(sz) = Self::scalar_size(et) {
                    self.skip(sz.saturating_mul(len))?;
                } else if et == 8 {
                    for _ in 0..len {
                        let l = self.u64()?;
                        self.skip(l)?;
                    }
                } else {
                    return Err(bad(
                        &self.path,
                        format!("corrupt GGUF header: array of unknown type {et}"),
                    ));
                }
                Value::Array { len }
            }
            10 => Value::Int(self.u64()? as i128),
            11 => Value::Int(i64::from_le_bytes(self.bytes()?) as i128),
            12 => Value::Float(f64::from_le_bytes(self.bytes()?)),
            other => {
                return Err(bad(
                    &self.path,
                    format!("corrupt GGUF header: unknown value type {other}"),
                ))
            }
        })
    }
}

/// Read a GGUF file's header and metadata. A file that is not GGUF, or
/// whose header is cut short, is a [`GenerateError::BadModel`] naming it.
pub fn read_info(path: &Path) -> Result<GgufInfo> {
    let f = std::fs::File::open(path).map_err(|e| GenerateError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut r = Reader {
        r: BufReader::new(f),
        path: path.to_path_buf(),
    };
    let magic: [u8; 4] = r
        .bytes()
        .map_err(|_| bad(path, format!("not a GGUF model file ({size} bytes)")))?;
    if &magic != MAGIC {
        return Err(bad(
            path,
            format!(
                "not a GGUF model file (it starts with {:?}, not \"GGUF\")",
                String::from_utf8_lossy(&magic)
            ),
        ));
    }
    let version = r.u32()?;
    if !(2..=3).contains(&version) {
        return Err(bad(path, format!("unsupported GGUF version {version}")));
    }
    let tensors = r.u64()?;
    let n_kv = r.u64()?;
    if n_kv > 1_000_000 || tensors > 10_000_000 {
        return Err(bad(path, "corrupt GGUF header: implausible counts"));
    }
    let mut metadata = BTreeMap::new();
    for _ in 0..n_kv {
        let key = r.string()?;
        let t = r.u32()?;
        let v = r.value(t)?;
        metadata.insert(key, v);
    }
    // Skipped arrays seek without reading: check they were really there.
    let pos = r.r.stream_position().map_err(|e| GenerateError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    if pos > size {
        return Err(bad(path, "truncated GGUF file: the header ends early"));
    }
    Ok(GgufInfo {
        path: path.to_path_buf(),
        version,
        tensors,
        metadata,
    })
}

/// Write a minimal GGUF file with string metadata and no tensors (tests
/// and tools use it to exercise the error paths).
pub fn write_minimal(path: &Path, kv: &[(&str, &str)]) -> std::io::Result<()> {
    let mut b = Vec::new();
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&(kv.len() as u64).to_le_bytes());
    for (k, v) in kv {
        b.extend_from_slice(&(k.len() as u64).to_le_bytes());
        b.extend_from_slice(k.as_bytes());
        b.extend_from_slice(&8u32.to_le_bytes());
        b.extend_from_slice(&(v.len() as u64).to_le_bytes());
        b.extend_from_slice(v.as_bytes());
    }
    std::fs::write(path, b)
}

/// The model architectures llama.cpp knows, as of the llama.cpp vendored by
/// llama-cpp-sys-2 0.1.161 (`LLM_ARCH_NAMES` in src/llama-arch.cpp). Used only
/// to explain a load failure: the engine itself is the judge.
pub const LLAMA_CPP_ARCHITECTURES: &[&str] = &[
    "llama",
    "llama4",
    "deci",
    "falcon",
    "grok",
    "gpt2",
    "gptj",
    "gptneox",
    "mpt",
    "baichuan",
    "starcoder",
    "refact",
    "bert",
    "modern-bert",
    "nomic-bert",
    "nomic-bert-moe",
    "neo-bert",
    "jina-bert-v2",
    "jina-bert-v3",
    "eurobert",
    "bloom",
    "stablelm",
    "qwen",
    "qwen2",
    "qwen2moe",
    "qwen2vl",
    "qwen3",
    "qwen3moe",
    "qwen3next",
    "qwen3vl",
    "qwen3vlmoe",
    "qwen35",
    "qwen35moe",
    "clef",
    "qwen4exp",
    "phi2",
    "phi3",
    "phimoe",
    "plamo",
    "plamo2",
    "plamo3",
    "codeshell",
    "orion",
    "internlm2",
    "minicpm",
    "minicpm3",
    "gemma",
    "gemma2",
    "gemma3",
    "gemma3n",
    "gemma4",
    "gemma4-assistant",
    "gemma-embedding",
    "starcoder2",
    "mamba",
    "mamba2",
    "maple",
    "jamba",
    "falcon-h1",
    "xverse",
    "command-r",
    "cohere2",
    "cohere2moe",
    "dbrx",
    "olmo",
    "olmo2",
    "olmoe",
    "muse-glimmer",
    "openelm",
    "arctic",
    "deepseek",
    "deepseek2",
    "deepseek2-ocr",
    "deepseek32",
    "deepseek4",
    "chatglm",
    "glm4",
    "glm4moe",
    "glm-dsa",
    "bitnet",
    "t5",
    "t5encoder",
    "jais",
    "jais2",
    "nemotron",
    "nemotron_h",
    "nemotron_h_moe",
    "exaone",
    "exaone4",
    "exaone-moe",
    "rwkv6",
    "rwkv6qwen2",
    "rwkv7",
    "arwkv7",
    "granite",
    "granitemoe",
    "granitehybrid",
    "graniteswitch",
    "granite_swa",
    "chameleon",
    "wavtokenizer-dec",
    "plm",
    "bailingmoe",
    "bailingmoe2",
    "bailingmoe3",
    "dots1",
    "dots3note",
    "arcee",
    "afmoe",
    "laguna",
    "ernie4_5",
    "ernie4_5-moe",
    "hunyuan-moe",
    "hunyuan-dense",
    "hunyuan_vl",
    "hy_v3",
    "hy_v4",
    "smollm3",
    "gpt-oss",
    "lfm2",
    "lfm2moe",
    "dream",
    "smallthinker",
    "llada",
    "llada-moe",
    "seed_oss",
    "grovemoe",
    "apertus",
    "minimax-01",
    "hrm_text",
    "minimax-m2",
    "minimax-m3",
    "cogvlm",
    "rnd1",
    "pangu-embedded",
    "mistral3",
    "eagle3",
    "dflash",
    "mistral4",
    "paddleocr",
    "mimo2",
    "step35",
    "spark2_5",
    "llama-embed",
    "maincoder",
    "kimi-linear",
    "kimi-k3",
    "glm5-next",
    "talkie",
    "mellum",
    "nanbeige",
    "qwen3tts",
    "pockettts",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_it_writes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.gguf");
        write_minimal(
            &p,
            &[("general.architecture", "llama"), ("general.name", "Tiny")],
        )
        .unwrap();
        let info = read_info(&p).unwrap();
        assert_eq!(info.architecture(), Some("llama"));
        assert_eq!(info.name(), Some("Tiny"));
        assert_eq!(info.tensors, 0);
    }

    #[test]
    fn rejects_other_files_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notes.gguf");
        std::fs::write(&p, "hello world, not a model").unwrap();
        let e = read_info(&p).unwrap_err().to_string();
        assert!(e.contains("notes.gguf") && e.contains("not a GGUF"), "{e}");
        std::fs::write(&p, "GG").unwrap();
        let e = read_info(&p).unwrap_err().to_string();
        assert!(e.contains("not a GGUF"), "{e}");
    }

    #[test]
    fn a_header_cut_short_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.gguf");
        write_minimal(&p, &[("general.architecture", "llama")]).unwrap();
        let full = std::fs::read(&p).unwrap();
        std::fs::write(&p, &full[..full.len() - 3]).unwrap();
        let e = read_info(&p).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
    }
}
