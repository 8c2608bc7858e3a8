//! libFuzzer target for threshold-ECDSA message body split decoding (`custody_ecdsa::fuzzing`): see `custody_fuzz::do_test_ecdsa_message_body` and `fuzz/README.md`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| custody_fuzz::do_test_ecdsa_message_body(data));
