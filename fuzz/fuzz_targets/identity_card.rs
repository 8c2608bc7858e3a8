//! libFuzzer target for `IdentityCard::decode`: see `custody_fuzz::do_test_identity_card` and `fuzz/README.md`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| custody_fuzz::do_test_identity_card(data));
