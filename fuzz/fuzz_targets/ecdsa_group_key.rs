//! libFuzzer target for threshold-ECDSA group key decoding (`custody_ecdsa::fuzzing`): see `custody_fuzz::do_test_ecdsa_group_key` and `fuzz/README.md`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| custody_fuzz::do_test_ecdsa_group_key(data));
