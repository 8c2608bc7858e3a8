//! libFuzzer target for `KeyShare::from_secret_bytes`: see `custody_fuzz::do_test_key_share` and `fuzz/README.md`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| custody_fuzz::do_test_key_share(data));
