//! libFuzzer target for the custody-policy policy_document decoder: see `custody_fuzz::do_test_policy_document` and `fuzz/README.md`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| custody_fuzz::do_test_policy_document(data));
