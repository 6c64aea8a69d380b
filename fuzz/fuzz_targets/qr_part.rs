#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| credshift::fuzzing::qr_part(data));
