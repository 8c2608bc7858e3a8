//! libFuzzer target for the custody-policy signed_policy decoder: see `custody_fuzz::do_test_signed_policy` and `fuzz/README.md`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| custody_fuzz::do_test_signed_policy(data));
