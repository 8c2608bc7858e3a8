//! libFuzzer target for threshold-ECDSA ceremony plan decoding (`custody_ecdsa::fuzzing`): see `custody_fuzz::do_test_ecdsa_plan` and `fuzz/README.md`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| custody_fuzz::do_test_ecdsa_plan(data));
