//! libFuzzer target for `SigningRequest::decode`: see `custody_fuzz::do_test_signing_request` and `fuzz/README.md`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| custody_fuzz::do_test_signing_request(data));
