#![no_main]
//! cargo +nightly fuzz run pem_and_keys: see `_ferrocorn::fuzzing::pem_and_keys`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| _ferrocorn::fuzzing::pem_and_keys(data));
