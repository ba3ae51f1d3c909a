#![no_main]
//! cargo +nightly fuzz run forwarded: see `_ferrocorn::fuzzing::forwarded`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| _ferrocorn::fuzzing::forwarded(data));
