//! The recovery leaf's refusals: too early, too few backup signatures, a key that is not a
//! backup key; and libbitcoinconsensus enforcing `older(N)` against `nSequence` even for a
//! validly signed spend.

mod common;

use std::collections::BTreeMap;

use bitcoin::bip32::Xpriv;
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::Secp256k1;
use bitcoin::taproot::{ControlBlock, LeafVersion, TapLeafHash};
use bitcoin::{relative, Amount, FeeRate, Network, ScriptBuf, Sequence};
use common::*;
use custody_bitcoin::{
    absorb_recovery_signatures, build_psbt, extract_verified, finalize_psbt, sign_recovery_psbt,
    verify_transaction, BackupSecret, Branch, BuildOptions, ConsensusError, FinalizeError,
    InspectPolicy, Payment, RecoveryError, ScriptFailure, SpendPath, WalletDescriptor,
};
use miniscript::{MiniscriptKey, Satisfier, ToPublicKey};

const AFTER: u16 = 20;

fn recovery_psbt(wallet: &WalletDescriptor, seed: u8) -> Psbt {
    let (_tx, utxos) = fund(wallet, &[(Branch::Receive, 2, 10_000_000)], seed);
    let mut options = BuildOptions::new(FeeRate::from_sat_per_vb_u32(2), 0);
    options.spend_path = SpendPath::Recovery;
    build_psbt(
        wallet,
        &utxos,
        &[Payment {
            address: external_address(Network::Regtest, 12),
            amount: Amount::from_sat(9_000_000),
        }],
        &options,
    )
    .expect("build")
}

fn sign_with(wallet: &WalletDescriptor, psbt: &mut Psbt, masters: &[&Xpriv]) {
    let mut r = rng(1);
    for m in masters {
        let mut answer = psbt.clone();
        sign_recovery_psbt(
            wallet,
            BackupSecret::Master(m),
            &mut answer,
            &InspectPolicy::default(),
            &mut r,
        )
        .expect("sign");
        absorb_recovery_signatures(psbt, &answer).expect("absorb");
    }
}

#[test]
fn backup_signer_refuses_a_spend_before_the_timelock() {
    let (_shares, wallet, backups) = recovery_wallet(30, AFTER);
    let mut psbt = recovery_psbt(&wallet, 1);
    psbt.unsigned_tx.input[0].sequence = Sequence::from_height(AFTER - 1);
    let mut r = rng(2);
    assert_eq!(
        sign_recovery_psbt(
            &wallet,
            BackupSecret::Master(&backups[0]),
            &mut psbt,
            &InspectPolicy::default(),
            &mut r
        ),
        Err(RecoveryError::TimelockNotMet {
            input: 0,
            sequence: u32::from(AFTER - 1),
            needed: AFTER
        })
    );
    // A time-based sequence does not satisfy a block-based older() either.
    psbt.unsigned_tx.input[0].sequence = Sequence::from_512_second_intervals(AFTER);
    assert!(matches!(
        sign_recovery_psbt(
            &wallet,
            BackupSecret::Master(&backups[0]),
            &mut psbt,
            &InspectPolicy::default(),
            &mut r
        ),
        Err(RecoveryError::TimelockNotMet { .. })
    ));
}

#[test]
fn one_backup_signature_does_not_finalize_and_strangers_cannot_sign() {
    let (_shares, wallet, backups) = recovery_wallet(31, AFTER);
    let mut psbt = recovery_psbt(&wallet, 2);
    let stranger = Xpriv::new_master(Network::Regtest, &[0x99; 32]).expect("master");
    let mut r = rng(3);
    assert!(matches!(
        sign_recovery_psbt(
            &wallet,
            BackupSecret::Master(&stranger),
            &mut psbt.clone(),
            &InspectPolicy::default(),
            &mut r
        ),
        Err(RecoveryError::NotABackupKey(_))
    ));
    sign_with(&wallet, &mut psbt, &[&backups[1]]);
    assert!(matches!(
        finalize_psbt(&mut psbt),
        Err(FinalizeError::Finalize(_))
    ));
    sign_with(&wallet, &mut psbt, &[&backups[2]]);
    finalize_psbt(&mut psbt).expect("two of three");
    extract_verified(&psbt).expect("consensus accepts");
}

#[test]
fn a_wallet_without_recovery_leaf_has_no_backup_signers() {
    let shares = dkg(2, 3, Network::Regtest, 32);
    let wallet = WalletDescriptor::for_group(shares[0].group(), None).expect("descriptor");
    let (_tx, utxos) = fund(&wallet, &[(Branch::Receive, 0, 1_000_000)], 3);
    let mut options = BuildOptions::new(FeeRate::from_sat_per_vb_u32(2), 0);
    options.spend_path = SpendPath::Recovery;
    let payment = Payment {
        address: external_address(Network::Regtest, 1),
        amount: Amount::from_sat(500_000),
    };
    assert_eq!(
        build_psbt(&wallet, &utxos, std::slice::from_ref(&payment), &options),
        Err(custody_bitcoin::BuildError::NoRecoveryLeaf)
    );
    options.spend_path = SpendPath::KeyPath;
    let mut psbt = build_psbt(&wallet, &utxos, &[payment], &options).expect("build");
    let master = Xpriv::new_master(Network::Regtest, &[1; 32]).expect("master");
    assert_eq!(
        sign_recovery_psbt(
            &wallet,
            BackupSecret::Master(&master),
            &mut psbt,
            &InspectPolicy::default(),
            &mut rng(4)
        ),
        Err(RecoveryError::NoRecoveryLeaf)
    );
}

/// A satisfier that signs off any relative timelock, to build a witness the finalizer would
/// refuse: the signatures are real, only the timelock is not met.
struct IgnoreTimelock<'a>(&'a bitcoin::psbt::Input);

impl<Pk: MiniscriptKey + ToPublicKey> Satisfier<Pk> for IgnoreTimelock<'_> {
    fn lookup_tap_leaf_script_sig(
        &self,
        pk: &Pk,
        leaf_hash: &TapLeafHash,
    ) -> Option<bitcoin::taproot::Signature> {
        self.0
            .tap_script_sigs
            .get(&(pk.to_x_only_pubkey(), *leaf_hash))
            .copied()
    }

    fn lookup_tap_control_block_map(
        &self,
    ) -> Option<&BTreeMap<ControlBlock, (ScriptBuf, LeafVersion)>> {
        Some(&self.0.tap_scripts)
    }

    fn check_older(&self, _: relative::LockTime) -> bool {
        true
    }
}

#[test]
fn libbitcoinconsensus_refuses_a_validly_signed_script_path_spend_before_the_timelock() {
    let (_shares, wallet, backups) = recovery_wallet(33, AFTER);
    for (sequence, accepted) in [
        (Sequence::from_height(AFTER), true),
        (Sequence::from_height(AFTER - 1), false),
        (Sequence::ENABLE_RBF_NO_LOCKTIME, false),
    ] {
        let mut psbt = recovery_psbt(&wallet, 4);
        psbt.unsigned_tx.input[0].sequence = sequence;
        // Our backup signer would refuse the early ones; sign with the `bitcoin` crate's own
        // PSBT signer instead, so the signatures commit to this nSequence.
        let secp = Secp256k1::new();
        for m in [&backups[0], &backups[1]] {
            psbt.sign(m, &secp).expect("bitcoin signs the script path");
        }
        assert_eq!(psbt.inputs[0].tap_script_sigs.len(), 2);
        let derived = wallet.derive(Branch::Receive, 2).expect("derive");
        let (witness, _) = derived
            .descriptor()
            .get_satisfaction(IgnoreTimelock(&psbt.inputs[0]))
            .expect("two signatures satisfy the keys");
        let mut tx = psbt.unsigned_tx.clone();
        tx.input[0].witness = witness.into();
        let spent = vec![psbt.inputs[0].witness_utxo.clone().expect("present")];
        let result = verify_transaction(&tx, &spent);
        if accepted {
            result.expect("the timelock is met");
        } else {
            assert!(
                matches!(
                    result,
                    Err(ConsensusError::Input {
                        input: 0,
                        reason: ScriptFailure::Script,
                        ..
                    })
                ),
                "{sequence}: {result:?}"
            );
        }
    }
}

#[test]
fn single_backup_keys_sign_with_plain_secret_keys() {
    use bitcoin::secp256k1::SecretKey;
    use miniscript::descriptor::DescriptorPublicKey;
    use std::str::FromStr;
    let secp = Secp256k1::new();
    let shares = dkg(2, 3, Network::Regtest, 34);
    let singles: Vec<SecretKey> = (1..=2u8)
        .map(|b| SecretKey::from_slice(&[0x30 + b; 32]).expect("key"))
        .collect();
    let master = &backup_masters(1, Network::Regtest)[0];
    // Two plain keys (x-only and compressed) and one xpub, 2-of-3.
    let keys = vec![
        DescriptorPublicKey::from_str(&singles[0].x_only_public_key(&secp).0.to_string())
            .expect("x-only key"),
        DescriptorPublicKey::from_str(&singles[1].public_key(&secp).to_string())
            .expect("compressed key"),
        backup_descriptor_key(master),
    ];
    let policy = custody_bitcoin::RecoveryPolicy::new(2, keys, AFTER).expect("policy");
    let wallet = WalletDescriptor::for_group(shares[0].group(), Some(policy)).expect("wallet");
    let mut psbt = recovery_psbt(&wallet, 5);
    let mut r = rng(6);
    let stranger = SecretKey::from_slice(&[0x77; 32]).expect("key");
    assert!(matches!(
        sign_recovery_psbt(
            &wallet,
            BackupSecret::Single(&stranger),
            &mut psbt.clone(),
            &InspectPolicy::default(),
            &mut r
        ),
        Err(RecoveryError::NotABackupKey(_))
    ));
    for secret in [
        BackupSecret::Single(&singles[1]),
        BackupSecret::Master(master),
    ] {
        let mut answer = psbt.clone();
        let signed = sign_recovery_psbt(
            &wallet,
            secret,
            &mut answer,
            &InspectPolicy::default(),
            &mut r,
        )
        .expect("a backup key signs");
        assert_eq!(signed.signatures, 1);
        absorb_recovery_signatures(&mut psbt, &answer).expect("absorb");
    }
    finalize_psbt(&mut psbt).expect("two of three");
    extract_verified(&psbt).expect("consensus accepts");
}

#[test]
fn inputs_carry_what_miniscript_fills_in_also_from_the_address_cache() {
    use miniscript::psbt::PsbtExt as _;
    let (_shares, wallet, _backups) = recovery_wallet(30, AFTER);
    // The second build of a spend from the same address takes its key data from the cache.
    let first = recovery_psbt(&wallet, 1);
    let again = recovery_psbt(&wallet, 1);
    assert_eq!(first, again);
    let derived = wallet.derive(Branch::Receive, 2).expect("derive");
    for (k, input) in first.inputs.iter().enumerate() {
        assert!(input.tap_internal_key.is_some() && !input.tap_scripts.is_empty());
        assert!(!input.tap_key_origins.is_empty());
        // The same input as miniscript's own update fills it, from nothing but the coin.
        let mut fresh = first.clone();
        fresh.inputs[k] = bitcoin::psbt::Input {
            witness_utxo: input.witness_utxo.clone(),
            ..Default::default()
        };
        fresh
            .update_input_with_descriptor(k, derived.descriptor())
            .expect("update");
        assert_eq!(&fresh.inputs[k], input, "input {k}");
    }
}

#[test]
fn the_change_output_carries_what_miniscript_fills_in_also_from_the_address_cache() {
    use miniscript::psbt::PsbtExt as _;
    let (_shares, wallet, _backups) = recovery_wallet(30, AFTER);
    let first = recovery_psbt(&wallet, 1);
    let again = recovery_psbt(&wallet, 2);
    let change = wallet.derive(Branch::Change, 0).expect("derive");
    let k = first
        .unsigned_tx
        .output
        .iter()
        .position(|o| o.script_pubkey == change.script_pubkey())
        .expect("a change output");
    let output = &first.outputs[k];
    // Enough for a signer to prove it is change: the internal key, its origin, the tree.
    assert!(output.tap_internal_key.is_some() && output.tap_tree.is_some());
    assert!(!output.tap_key_origins.is_empty());
    // The second build takes it from the cache; both equal miniscript's own update.
    assert_eq!(&again.outputs[k], output);
    let mut fresh = first.clone();
    fresh.outputs[k] = bitcoin::psbt::Output::default();
    fresh
        .update_output_with_descriptor(k, change.descriptor())
        .expect("update");
    assert_eq!(&fresh.outputs[k], output);
}
