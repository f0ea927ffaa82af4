//! Test support shared by the integration tests: where the real model and
//! the real corpus are, and copying parts of the corpus into a test folder.
//!
//! Nothing here is faked: tests that need the model fail (not skip) with a
//! message saying how to install it, and the corpus is Debian's
//! `python3.11-doc` (the Python 3.11 documentation, HTML).

use std::path::{Path, PathBuf};

pub mod cross_encoder;
pub mod hostile;

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

/// The installed int8 ONNX all-MiniLM-L6-v2 directory; panics with instructions if absent.
pub fn minilm_int8_dir() -> PathBuf {
    let dir = models_dir().join("all-MiniLM-L6-v2-int8");
    assert!(
        dir.join("model.onnx").is_file(),
        "the int8 ONNX all-MiniLM-L6-v2 is needed at {}: run `cairn models fetch all-MiniLM-L6-v2-int8` (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// The installed ONNX Runtime library; panics with instructions if absent.
pub fn onnxruntime_lib() -> PathBuf {
    let path = models_dir().join("onnxruntime").join("libonnxruntime.so");
    assert!(
        path.is_file(),
        "ONNX Runtime is needed at {}: run `cairn models fetch onnxruntime` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// The installed SmolLM2-135M-Instruct GGUF file; panics with instructions if absent.
pub fn smollm2_gguf() -> PathBuf {
    gguf("SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// The installed Gemma 3 270M GGUF file; panics with instructions if absent.
pub fn gemma3_gguf() -> PathBuf {
    gguf("gemma-3-270m", "gemma-3-270m-q4_k_m.gguf")
}

fn gguf(name: &str, file: &str) -> PathBuf {
    let path = models_dir().join(name).join(file);
    assert!(
        path.is_file(),
        "the real {name} model is needed at {}: run `cairn models fetch {name}` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// The llama.cpp server built from the llama.cpp source vendored by
/// llama-cpp-sys-2 (`scripts/build-llama-tools.sh`); panics with instructions if absent.
pub fn llama_server() -> PathBuf {
    llama_tool("llama-server")
}

/// llama.cpp's `llama-bench`, built like [`llama_server`].
pub fn llama_tool(name: &str) -> PathBuf {
    let dir = std::env::var_os("CAIRN_LLAMA_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(".cache/cairn/llama-tools/bin")
        });
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "llama.cpp's {name} is needed at {}: run `bash scripts/build-llama-tools.sh` (scripts/test.sh does)",
        path.display()
    );
    path
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

/// Copy a directory tree (files and folders; a collection's data dir once
/// the process that wrote it has exited) to `dest`.
pub fn copy_dir(from: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for e in std::fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display())) {
        let e = e.unwrap();
        let to = dest.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to)
                .unwrap_or_else(|err| panic!("copy {}: {err}", e.path().display()));
        }
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

/// llama.cpp's `llama-server` serving a GGUF model on a free loopback port,
/// killed when dropped.
pub struct LlamaServer {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
}

impl LlamaServer {
    /// Start the server and wait until `/health` answers 200.
    pub fn start(model: &Path) -> LlamaServer {
        use std::time::{Duration, Instant};
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::env::temp_dir().join(format!("cairn-llama-server-{port}.log"));
        let child = std::process::Command::new(llama_server())
            .arg("-m")
            .arg(model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["-c", "4096", "-t", "2", "-np", "1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start llama-server");
        let mut server = LlamaServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(st) = server.child.try_wait().unwrap() {
                panic!(
                    "llama-server exited ({st}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if http_ok(&server.url, "/health") {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "llama-server did not become healthy"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `GET {url}{path}` answers 200 (a plain HTTP/1.1 probe).
pub fn http_ok(url: &str, path: &str) -> bool {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200")
}
