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
/// `cairn --data-dir DATA ARGS`, run to its end.
pub fn run(data: &Path, args: &[&str]) -> Output {
    let mut c = cairn(data);
    c.args(args);
    c.output().unwrap()
}

/// The standard output of `cairn --data-dir DATA ARGS`, which must succeed.
pub fn stdout(data: &Path, args: &[&str]) -> String {
    let mut c = cairn(data);
    c.args(args);
    String::from_utf8(ok(c).stdout).unwrap()
}

/// The ranked hits' scores of a search's JSON.
pub fn scores(v: &Value) -> Vec<f64> {
    v["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("no hits: {v}"))
        .iter()
        .map(|h| h["score"].as_f64().unwrap())
        .collect()
}

pub mod server;
