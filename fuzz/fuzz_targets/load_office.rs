#![no_main]
use libfuzzer_sys::fuzz_target;

/// The first byte picks the zip container format.
const NAMES: &[&str] = &["input.pptx", "input.xlsx", "input.odt", "input.epub"];

fuzz_target!(init: cairn_fuzz::init(), |data: &[u8]| {
    if let Some((&pick, rest)) = data.split_first() {
        cairn_fuzz::load(NAMES[pick as usize % NAMES.len()], rest);
    }
});
