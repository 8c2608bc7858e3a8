//! libFuzzer target for `DkgCertificate::decode`: see `custody_fuzz::do_test_dkg_certificate` and `fuzz/README.md`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| custody_fuzz::do_test_dkg_certificate(data));
