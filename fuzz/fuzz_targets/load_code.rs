#![no_main]
use libfuzzer_sys::fuzz_target;

/// The first byte picks the language (each has its own splitter grammar).
const NAMES: &[&str] = &["input.rs", "input.py", "input.js", "input.go", "input.c", "input.sh"];

fuzz_target!(init: cairn_fuzz::init(), |data: &[u8]| {
    if let Some((&pick, rest)) = data.split_first() {
        cairn_fuzz::load(NAMES[pick as usize % NAMES.len()], rest);
    }
});
