//! libFuzzer target for the vault's sealed blobs (`custody_vault::fuzzing`): see `custody_fuzz::do_test_vault_blob` and `fuzz/README.md`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| custody_fuzz::do_test_vault_blob(data));
