//! libFuzzer target for the custody-policy decision decoder: see `custody_fuzz::do_test_decision` and `fuzz/README.md`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| custody_fuzz::do_test_decision(data));
