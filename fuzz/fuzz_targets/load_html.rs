#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: cairn_fuzz::init(), |data: &[u8]| {
    cairn_fuzz::load("input.html", data);
});
