//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use tokenizers::Tokenizer;

/// Where the real embedding tokenizer (all-MiniLM-L6-v2) lives: the
/// `CAIRN_TEST_TOKENIZER` file, else the models directory, else the user cache.
/// Fails the test, rather than skipping it, when none is present.
pub fn tokenizer_path() -> PathBuf {
    let mut tried = Vec::new();
    if let Some(p) = std::env::var_os("CAIRN_TEST_TOKENIZER") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return p;
        }
        tried.push(p);
    }
    if let Some(dir) = std::env::var_os("CAIRN_MODELS_DIR") {
        let p = PathBuf::from(dir).join("all-MiniLM-L6-v2/tokenizer.json");
        if p.is_file() {
            return p;
        }
        tried.push(p);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = PathBuf::from(home).join(".cache/cairn/models/all-MiniLM-L6-v2/tokenizer.json");
        if p.is_file() {
            return p;
        }
        tried.push(p);
    }
    panic!(
        "the all-MiniLM-L6-v2 tokenizer is needed for this test but was not found (tried {tried:?}); \
         run `cairn models fetch` or set CAIRN_TEST_TOKENIZER to a tokenizer.json"
    );
}

/// The real tokenizer, exactly as shipped (truncation/padding as configured).
pub fn real_tokenizer() -> Tokenizer {
    let path = tokenizer_path();
    Tokenizer::from_file(&path).unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()))
}

/// The real tokenizer with truncation and padding off, for honest counting.
pub fn counting_tokenizer() -> Tokenizer {
    let mut t = real_tokenizer();
    t.with_truncation(None).unwrap();
    t.with_padding(None);
    t
}

/// Tokens the model sees for `text`, special tokens included.
pub fn model_tokens(t: &Tokenizer, text: &str) -> usize {
    t.encode(text, true).unwrap().len()
}

/// Characters `[start, end)` of `s`.
pub fn char_slice(s: &str, start: u64, end: u64) -> String {
    s.chars()
        .skip(start as usize)
        .take((end - start) as usize)
        .collect()
}
