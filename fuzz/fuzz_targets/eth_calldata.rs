//! libFuzzer target for ERC-20 calldata decoding (`custody_ethereum::fuzzing`): see `custody_fuzz::do_test_eth_calldata` and `fuzz/README.md`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| custody_fuzz::do_test_eth_calldata(data));
