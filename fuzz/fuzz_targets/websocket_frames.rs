#![no_main]
//! cargo +nightly fuzz run websocket_frames: see `_ferrocorn::fuzzing::websocket_frames`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| _ferrocorn::fuzzing::websocket_frames(data));
