//! libFuzzer target for BBQr reassembly (`custody_airgap::qr::fuzz_bbqr_lines`): see `custody_fuzz::do_test_bbqr_lines` and `fuzz/README.md`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| custody_fuzz::do_test_bbqr_lines(data));
