//! libFuzzer target for `Identity::from_secret_bytes`: see `custody_fuzz::do_test_identity` and `fuzz/README.md`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| custody_fuzz::do_test_identity(data));
