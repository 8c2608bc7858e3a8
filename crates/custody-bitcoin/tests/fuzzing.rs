//! The fuzz entry points accept their own corpus seeds (so fuzzing reaches the deep checks)
//! and survive truncations and byte mutations of them without panicking.

use bitcoin::psbt::Psbt;
use custody_bitcoin::fuzzing::{
    corpus_seeds, do_test_inspect_psbt, do_test_proprietary_field, do_test_psbt_fields,
    fuzz_recovery_wallet, fuzz_wallet,
};
use custody_bitcoin::{inspect_psbt, inspect_recovery_psbt, InspectPolicy};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

#[test]
fn corpus_seeds_pass_inspection_for_their_wallet() {
    let seeds = corpus_seeds();
    assert_eq!(seeds.len(), 3);
    let policy = InspectPolicy::default();
    for (name, bytes) in &seeds {
        let psbt = Psbt::deserialize(bytes).expect("a seed is a PSBT");
        let ok = match *name {
            "key_path" => inspect_psbt(&fuzz_wallet(), &psbt, &policy).is_ok(),
            "recovery_key_path" => inspect_psbt(&fuzz_recovery_wallet(), &psbt, &policy).is_ok(),
            _ => inspect_recovery_psbt(&fuzz_recovery_wallet(), &psbt, &policy).is_ok(),
        };
        assert!(ok, "seed {name} is accepted by the wallet it was built for");
    }
}

#[test]
fn mutated_seeds_never_panic() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    for (_, seed) in corpus_seeds() {
        for len in (0..seed.len()).step_by(11) {
            do_test_inspect_psbt(&seed[..len]);
            do_test_psbt_fields(&seed[..len]);
        }
        for _ in 0..100 {
            let mut bytes = seed.clone();
            for _ in 0..=(rng.next_u32() % 3) {
                let at = rng.next_u32() as usize % bytes.len();
                bytes[at] = rng.next_u32() as u8;
            }
            do_test_inspect_psbt(&bytes);
            do_test_psbt_fields(&bytes);
        }
    }
}

#[test]
fn proprietary_field_target_handles_any_bytes() {
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    do_test_proprietary_field(&[]);
    do_test_proprietary_field(&[0]);
    do_test_proprietary_field(&[1, 2, 0, 1]);
    for _ in 0..500 {
        let mut bytes = vec![0u8; (rng.next_u32() % 300) as usize];
        rng.fill_bytes(&mut bytes);
        if let Some(b) = bytes.first_mut() {
            *b %= 3;
        }
        do_test_proprietary_field(&bytes);
    }
}
