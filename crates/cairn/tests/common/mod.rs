//! Helpers shared by the binary's process-level tests.
#![allow(dead_code)]

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

/// `cairn --data-dir DATA` with the real models and no collection, data dir
/// or LLM server inherited from the environment.
pub fn cairn(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
    c.env("CAIRN_MODELS_DIR", cairn_testkit::models_dir())
        .env_remove("CAIRN_COLLECTION")
        .env_remove("CAIRN_DATA_DIR")
        .env_remove("CAIRN_LLM_URL")
        .arg("--data-dir")
        .arg(data);
    c
}

/// Run a command that must succeed; its output.
pub fn ok(mut c: Command) -> Output {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

/// Parse JSON output, showing it when it is not JSON.
pub fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}
pub mod server;
