//! libFuzzer target for PSBT inspection (`custody_bitcoin::fuzzing::do_test_inspect_psbt`): see `custody_fuzz::do_test_psbt_inspect` and `fuzz/README.md`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| custody_fuzz::do_test_psbt_inspect(data));
