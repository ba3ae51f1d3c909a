#![no_main]
//! cargo +nightly fuzz run access_record: see `_ferrocorn::fuzzing::access_record`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| _ferrocorn::fuzzing::access_record(data));
