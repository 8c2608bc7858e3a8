//! libFuzzer target for `custody_airgap::envelope::Envelope::decode`: see `custody_fuzz::do_test_envelope` and `fuzz/README.md`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| custody_fuzz::do_test_envelope(data));
