#![no_main]
//! cargo +nightly fuzz run cipher_string: see `_ferrocorn::fuzzing::cipher_string`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| _ferrocorn::fuzzing::cipher_string(data));
