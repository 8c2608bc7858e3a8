//! libFuzzer target for `CeremonyPlan::decode`: see `custody_fuzz::do_test_ceremony_plan` and `fuzz/README.md`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| custody_fuzz::do_test_ceremony_plan(data));
