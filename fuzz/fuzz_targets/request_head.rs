#![no_main]
//! cargo +nightly fuzz run request_head: see `_ferrocorn::fuzzing::request_head`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| _ferrocorn::fuzzing::request_head(data));
