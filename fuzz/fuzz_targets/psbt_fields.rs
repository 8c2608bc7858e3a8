//! libFuzzer target for the CoinPort PSBT fields (`custody_bitcoin::fuzzing::do_test_psbt_fields`): see `custody_fuzz::do_test_psbt_fields` and `fuzz/README.md`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| custody_fuzz::do_test_psbt_fields(data));
