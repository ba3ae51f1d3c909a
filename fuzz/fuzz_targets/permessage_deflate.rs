#![no_main]
//! cargo +nightly fuzz run permessage_deflate: see `_ferrocorn::fuzzing::permessage_deflate`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| _ferrocorn::fuzzing::permessage_deflate(data));
