#![no_main]
use libfuzzer_sys::fuzz_target;

/// The first byte picks the format: PNG, JPEG, TIFF. Only the header is
/// read (the fuzz build has no OCR): the size and page count checks.
const NAMES: &[&str] = &["input.png", "input.jpg", "input.tif"];

fuzz_target!(init: cairn_fuzz::init(), |data: &[u8]| {
    if let Some((&pick, rest)) = data.split_first() {
        cairn_fuzz::load(NAMES[pick as usize % NAMES.len()], rest);
    }
});
