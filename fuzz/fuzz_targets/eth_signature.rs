//! libFuzzer target for EIP-4527 eth-signature decoding (`custody_ethereum::fuzzing`): see `custody_fuzz::do_test_eth_signature` and `fuzz/README.md`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| custody_fuzz::do_test_eth_signature(data));
