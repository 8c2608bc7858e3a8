//! libFuzzer target for one CoinPort proprietary field (`custody_bitcoin::fuzzing::do_test_proprietary_field`): see `custody_fuzz::do_test_proprietary_field` and `fuzz/README.md`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| custody_fuzz::do_test_proprietary_field(data));
