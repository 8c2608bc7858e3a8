//! libFuzzer target for UR reassembly (`custody_airgap::qr::fuzz_ur_lines`): see `custody_fuzz::do_test_ur_lines` and `fuzz/README.md`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| custody_fuzz::do_test_ur_lines(data));
