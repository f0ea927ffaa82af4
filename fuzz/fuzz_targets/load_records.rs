#![no_main]
use libfuzzer_sys::fuzz_target;

/// The first byte picks the format: tables, notebooks, e-mail.
const NAMES: &[&str] = &["input.csv", "input.ipynb", "input.eml", "input.mbox"];

fuzz_target!(init: cairn_fuzz::init(), |data: &[u8]| {
    if let Some((&pick, rest)) = data.split_first() {
        cairn_fuzz::load(NAMES[pick as usize % NAMES.len()], rest);
    }
});
