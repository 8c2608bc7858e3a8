//! libFuzzer target for `custody_airgap::file::detect_psbt`: see `custody_fuzz::do_test_psbt_file` and `fuzz/README.md`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| custody_fuzz::do_test_psbt_file(data));
