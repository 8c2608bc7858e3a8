//! libFuzzer target for `CommitmentBatch::decode`: see `custody_fuzz::do_test_commitment_batch` and `fuzz/README.md`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| custody_fuzz::do_test_commitment_batch(data));
