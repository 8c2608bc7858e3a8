//! The "done when": DKG → descriptor → deposit address → funding transaction →
//! withdrawal PSBT → signers sign in one trip each → aggregate → finalize →
//! libbitcoinconsensus accepts.

mod common;

use bitcoin::{Amount, FeeRate, Network};
use common::*;
use custody_bitcoin::{
    absorb_response, aggregate_psbt, build_psbt, extract_verified, finalize_psbt, inspect_psbt,
    request_signatures, sign_psbt, Branch, BuildOptions, InspectPolicy, Ownership, Payment,
    WalletDescriptor, WalletUtxo,
};

#[test]
fn dkg_2_of_3_deposit_withdraw_sign_in_one_trip_and_libbitcoinconsensus_accepts() {
    // Key ceremony and wallet.
    let shares = dkg(2, 3, Network::Regtest, 1);
    let group = shares[0].group().clone();
    let wallet = WalletDescriptor::for_group(&group, None).expect("descriptor");

    // Deposits to two receive addresses, in one funding transaction made here.
    let (_funding, utxos) = fund(
        &wallet,
        &[
            (Branch::Receive, 0, 50_000_000),
            (Branch::Receive, 1, 30_000_000),
        ],
        7,
    );

    // The coordinator builds the withdrawal.
    let destination = external_address(Network::Regtest, 9);
    let payment = Payment {
        address: destination.clone(),
        amount: Amount::from_sat(60_000_000),
    };
    let options = BuildOptions::new(FeeRate::from_sat_per_vb_u32(10), 0);
    let mut psbt = build_psbt(&wallet, &utxos, &[payment], &options).expect("build");
    assert_eq!(psbt.inputs.len(), 2, "0.6 BTC needs both coins");
    let policy = InspectPolicy::default();
    let shown = inspect_psbt(&wallet, &psbt, &policy).expect("inspect");
    assert_eq!(shown.sent_sat, 60_000_000);
    assert_eq!(shown.outputs.len(), 2);
    assert_eq!(shown.outputs[0].ownership, Ownership::External);
    assert_eq!(
        shown.outputs[0].address.as_deref(),
        Some(destination.to_string().as_str())
    );
    assert_eq!(shown.outputs[1].ownership, Ownership::Change { index: 0 });
    assert_eq!(
        shown.outputs[1].address.as_deref(),
        Some(
            wallet
                .address(Branch::Change, 0)
                .expect("a")
                .to_string()
                .as_str()
        )
    );
    assert_eq!(shown.total_in_sat, shown.total_out_sat + shown.fee_sat);
    // What a human or a script reads.
    let text = shown.to_string();
    assert!(
        text.contains(&format!("to {destination}  [EXTERNAL]")),
        "{text}"
    );
    assert!(text.contains("[ours: change/0 (proved)]"), "{text}");
    assert!(
        text.contains("Sending 0.60000000 BTC out of the wallet"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&shown.to_json()).expect("json");
    assert_eq!(json["outputs"][1]["index"], 1);
    assert_eq!(json["outputs"][1]["owner"], "change");
    assert_eq!(json["outputs"][1]["address_index"], 0);
    assert_eq!(json["outputs"][0]["owner"], "external");
    assert_eq!(json["fee_sat"], shown.fee_sat);
    assert_eq!(json["inputs"][0]["branch"], "receive");
    // The fee pays at least the asked rate and not much more.
    assert!(shown.fee_sat >= 10 * shown.vsize, "{shown}");
    assert!(shown.fee_sat <= 10 * shown.vsize + 10, "{shown}");

    // Signers pre-issued commitments; the coordinator asks signers 1 and 3.
    let mut devs = devices(shares, 100);
    let mut pool = pool(&group, &mut devs, 10);
    request_signatures(
        &wallet,
        &group,
        &mut psbt,
        &[1, 3],
        &mut pool,
        [5; 16],
        &policy,
    )
    .expect("request");

    // One trip each: the PSBT crosses the air gap, the signer answers with a PSBT.
    let mut responses = Vec::new();
    for d in devs
        .iter_mut()
        .filter(|d| [1, 3].contains(&d.share.index()))
    {
        let mut received = through_air_gap(&psbt);
        let signed_what = sign_psbt(
            &wallet,
            &d.share,
            &d.seed,
            &mut d.store,
            &mut received,
            &policy,
        )
        .expect("signer accepts");
        assert_eq!(
            signed_what, shown,
            "the signer saw what the coordinator built"
        );
        responses.push(through_air_gap(&received));
    }
    for r in &responses {
        assert_eq!(absorb_response(&mut psbt, r).expect("absorb"), 1);
    }

    aggregate_psbt(&wallet, &group, &mut psbt, &policy).expect("aggregate");
    finalize_psbt(&mut psbt).expect("finalize");
    let tx = extract_verified(&psbt).expect("libbitcoinconsensus accepts every input");
    assert_eq!(tx.compute_txid().to_string(), shown.txid);
    assert_eq!(tx.output[0].script_pubkey, destination.script_pubkey());
    assert_eq!(tx.output[0].value, Amount::from_sat(60_000_000));
    for input in &tx.input {
        assert_eq!(
            input.witness.len(),
            1,
            "a key-path spend: one 64-byte signature"
        );
        assert_eq!(input.witness[0].len(), 64);
    }
    // The inspection's weight is the real one.
    assert_eq!(tx.weight().to_wu(), shown.weight_wu);
}

#[test]
fn dkg_3_of_5_with_recovery_leaf_key_path_then_recovery_spend_after_timelock() {
    use custody_bitcoin::{
        absorb_recovery_signatures, inspect_recovery_psbt, sign_recovery_psbt, SpendPath,
    };
    const AFTER: u16 = 144;
    let (shares, wallet, backups) = recovery_wallet(2, AFTER);
    let group = shares[0].group().clone();
    let (_funding, utxos) = fund(
        &wallet,
        &[
            (Branch::Receive, 0, 40_000_000),
            (Branch::Receive, 3, 20_000_000),
            (Branch::Change, 2, 10_000_000),
        ],
        8,
    );
    let policy = InspectPolicy::default();

    // Day to day: the FROST key path of an output that also has a script tree.
    let destination = external_address(Network::Regtest, 10);
    let options = BuildOptions::new(FeeRate::from_sat_per_vb_u32(5), 0);
    let payment = Payment {
        address: destination.clone(),
        amount: Amount::from_sat(25_000_000),
    };
    let mut psbt = build_psbt(&wallet, &utxos[..1], &[payment], &options).expect("build");
    let input = &psbt.inputs[0];
    let derived = wallet.derive(Branch::Receive, 0).expect("derive");
    assert_eq!(input.tap_merkle_root, derived.merkle_root);
    assert_eq!(input.tap_internal_key, Some(derived.internal_key));
    assert_eq!(
        input.tap_scripts.len(),
        1,
        "the recovery leaf with its control block"
    );
    assert_eq!(
        input.tap_key_origins.len(),
        4,
        "the group key and the three backup keys"
    );
    let mut devs = devices(shares, 200);
    let mut pool = pool(&group, &mut devs, 4);
    let request = custody_bitcoin::request_signatures(
        &wallet,
        &group,
        &mut psbt,
        &[2, 4, 5],
        &mut pool,
        [6; 16],
        &policy,
    )
    .expect("request");
    assert!(matches!(
        request.items()[0].spec.tweak,
        custody_threshold::TweakMode::ScriptRoot(root)
            if Some(root) == derived.merkle_root.map(bitcoin::hashes::Hash::to_byte_array)
    ));
    for d in devs
        .iter_mut()
        .filter(|d| [2, 4, 5].contains(&d.share.index()))
    {
        let mut received = through_air_gap(&psbt);
        sign_psbt(
            &wallet,
            &d.share,
            &d.seed,
            &mut d.store,
            &mut received,
            &policy,
        )
        .expect("signer accepts");
        absorb_response(&mut psbt, &through_air_gap(&received)).expect("absorb");
    }
    aggregate_psbt(&wallet, &group, &mut psbt, &policy).expect("aggregate");
    finalize_psbt(&mut psbt).expect("finalize");
    let tx = extract_verified(&psbt).expect("libbitcoinconsensus accepts the key path");
    assert_eq!(tx.input[0].witness.len(), 1, "key path, not the leaf");

    // The threshold is lost; after AFTER blocks two of the three backup keys sweep the
    // other coins through the recovery leaf.
    let mut options = BuildOptions::new(FeeRate::from_sat_per_vb_u32(5), 1);
    options.spend_path = SpendPath::Recovery;
    let rescue = external_address(Network::Regtest, 11);
    let payment = Payment {
        address: rescue.clone(),
        amount: Amount::from_sat(29_000_000),
    };
    let mut psbt = build_psbt(&wallet, &utxos[1..], &[payment], &options).expect("build");
    assert_eq!(psbt.inputs.len(), 2);
    for txin in &psbt.unsigned_tx.input {
        assert_eq!(txin.sequence, bitcoin::Sequence::from_height(AFTER));
    }
    let shown = inspect_recovery_psbt(&wallet, &psbt, &policy).expect("inspect");
    assert_eq!(shown.spend_path, "recovery");
    assert!(shown.fee_sat >= 5 * shown.vsize, "{shown}");
    let mut r = rng(300);
    for master in [&backups[0], &backups[2]] {
        let mut received = through_air_gap(&psbt);
        let signed = sign_recovery_psbt(
            &wallet,
            custody_bitcoin::BackupSecret::Master(master),
            &mut received,
            &policy,
            &mut r,
        )
        .expect("backup holder signs");
        assert_eq!(signed.signatures, 2, "one signature per input");
        assert_eq!(signed.inspection, shown);
        assert_eq!(
            absorb_recovery_signatures(&mut psbt, &through_air_gap(&received)).expect("absorb"),
            2
        );
    }
    finalize_psbt(&mut psbt).expect("two of three backup signatures satisfy the leaf");
    let tx = extract_verified(&psbt).expect("libbitcoinconsensus accepts the script path");
    for input in &tx.input {
        // multi_a over three keys (two signatures, one empty), the script, the control block.
        assert_eq!(input.witness.len(), 5);
        assert_eq!(input.witness.iter().filter(|w| w.len() == 64).count(), 2);
    }
    // The real weight is within the estimate the fee was computed for.
    assert!(tx.weight().to_wu() <= shown.weight_wu);
}

#[test]
fn a_replacement_spends_the_same_coins_back_to_the_wallet_and_outbids_the_original() {
    let shares = dkg(2, 3, Network::Regtest, 3);
    let group = shares[0].group().clone();
    let wallet = WalletDescriptor::for_group(&group, None).expect("descriptor");
    let (_funding, utxos) = fund(
        &wallet,
        &[
            (Branch::Receive, 0, 50_000_000),
            (Branch::Change, 4, 30_000_000),
        ],
        11,
    );
    let policy = InspectPolicy::default();
    // The withdrawal that must never confirm.
    let payment = Payment {
        address: external_address(Network::Regtest, 9),
        amount: Amount::from_sat(60_000_000),
    };
    let original = build_psbt(
        &wallet,
        &utxos,
        &[payment],
        &BuildOptions::new(FeeRate::from_sat_per_vb_u32(10), 0),
    )
    .expect("build");
    let first = inspect_psbt(&wallet, &original, &policy).expect("inspect");
    // Its coins, in its order.
    let coins: Vec<_> = original
        .unsigned_tx
        .input
        .iter()
        .map(|i| {
            utxos
                .iter()
                .find(|u| u.outpoint == i.previous_output)
                .expect("one of ours")
                .clone()
        })
        .collect();
    let replaced_fee = Amount::from_sat(first.fee_sat);
    let replaced_weight = bitcoin::Weight::from_wu(first.weight_wu);
    // A lower configured rate still outbids the original.
    let mut psbt = custody_bitcoin::build_replacement(
        &wallet,
        &coins,
        replaced_fee,
        replaced_weight,
        &BuildOptions::new(FeeRate::from_sat_per_vb_u32(2), 7),
    )
    .expect("replacement");
    let shown = inspect_psbt(&wallet, &psbt, &policy).expect("inspect");
    assert_eq!(shown.inputs.len(), first.inputs.len());
    for (a, b) in shown.inputs.iter().zip(&first.inputs) {
        assert_eq!(a.outpoint, b.outpoint, "the same coins");
    }
    assert_eq!(shown.outputs.len(), 1);
    assert_eq!(shown.outputs[0].ownership, Ownership::Change { index: 7 });
    assert_eq!(shown.sent_sat, 0, "nothing leaves the wallet");
    assert!(
        shown.fee_sat >= first.fee_sat + shown.vsize,
        "BIP125: pays the original's fee plus its own relay: {shown}"
    );
    assert!(shown.fee_sat <= first.fee_sat + shown.vsize + 2, "{shown}");
    assert!(shown.fee_rate_sat_vb > first.fee_rate_sat_vb);
    // At a configured rate above that, the rate decides.
    let high = custody_bitcoin::build_replacement(
        &wallet,
        &coins,
        replaced_fee,
        replaced_weight,
        &BuildOptions::new(FeeRate::from_sat_per_vb_u32(50), 7),
    )
    .expect("replacement");
    let high = inspect_psbt(&wallet, &high, &policy).expect("inspect");
    assert!(
        4 * high.fee_sat >= 50 * high.weight_wu && high.fee_sat <= 50 * high.vsize,
        "{high}"
    );

    // Signed in one trip each and accepted by libbitcoinconsensus.
    let mut devs = devices(shares, 300);
    let mut pool = pool(&group, &mut devs, 10);
    request_signatures(
        &wallet,
        &group,
        &mut psbt,
        &[1, 2],
        &mut pool,
        [6; 16],
        &policy,
    )
    .expect("request");
    for d in devs
        .iter_mut()
        .filter(|d| [1, 2].contains(&d.share.index()))
    {
        let mut received = through_air_gap(&psbt);
        sign_psbt(
            &wallet,
            &d.share,
            &d.seed,
            &mut d.store,
            &mut received,
            &policy,
        )
        .expect("signer accepts");
        absorb_response(&mut psbt, &through_air_gap(&received)).expect("absorb");
    }
    aggregate_psbt(&wallet, &group, &mut psbt, &policy).expect("aggregate");
    finalize_psbt(&mut psbt).expect("finalize");
    let tx = extract_verified(&psbt).expect("libbitcoinconsensus accepts every input");
    assert_eq!(tx.weight().to_wu(), shown.weight_wu);

    // Refusals: nothing to spend, a coin that is not the wallet's, too little for the fee.
    let opts = BuildOptions::new(FeeRate::from_sat_per_vb_u32(2), 7);
    assert!(matches!(
        custody_bitcoin::build_replacement(&wallet, &[], replaced_fee, replaced_weight, &opts),
        Err(custody_bitcoin::BuildError::NothingToReplace)
    ));
    let mut foreign = coins[0].clone();
    foreign.index += 1;
    assert!(matches!(
        custody_bitcoin::build_replacement(
            &wallet,
            &[foreign],
            replaced_fee,
            replaced_weight,
            &opts
        ),
        Err(custody_bitcoin::BuildError::ForeignUtxo { .. })
    ));
    let err = custody_bitcoin::build_replacement(
        &wallet,
        &coins,
        Amount::from_sat(79_999_700),
        replaced_weight,
        &opts,
    )
    .expect_err("the fee eats the coins");
    assert!(
        err.to_string().contains("short of the payments plus fee"),
        "{err}"
    );
}

#[test]
fn a_replacement_larger_than_the_original_still_pays_a_higher_rate() {
    let shares = dkg(2, 3, Network::Regtest, 5);
    let group = shares[0].group().clone();
    let wallet = WalletDescriptor::for_group(&group, None).expect("descriptor");
    let (_funding, utxos) = fund(&wallet, &[(Branch::Receive, 0, 1_000_000)], 13);
    let policy = InspectPolicy::default();
    // The whole coin to a P2WPKH address (31-byte output): no change.
    let unsigned = bitcoin::Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn {
            previous_output: utxos[0].outpoint,
            script_sig: bitcoin::ScriptBuf::new(),
            sequence: bitcoin::Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: bitcoin::Witness::new(),
        }],
        output: vec![bitcoin::TxOut {
            value: Amount::from_sat(1_000_000 - 1_100),
            script_pubkey: external_address(Network::Regtest, 9).script_pubkey(),
        }],
    };
    // Its signed weight: one key-path input's witness (66 wu) and the segwit marker.
    let replaced_weight = unsigned.weight() + bitcoin::Weight::from_wu(2 + 66);
    let replaced_fee = Amount::from_sat(1_100);
    let psbt = custody_bitcoin::build_replacement(
        &wallet,
        &utxos,
        replaced_fee,
        replaced_weight,
        &BuildOptions::new(FeeRate::from_sat_per_vb_u32(1), 0),
    )
    .expect("replacement");
    let shown = inspect_psbt(&wallet, &psbt, &policy).expect("inspect");
    assert!(
        shown.weight_wu > replaced_weight.to_wu(),
        "the void is the larger one"
    );
    assert!(shown.fee_sat >= 1_100 + shown.vsize);
    // Strictly higher rate: fee / weight above the original's.
    assert!(
        u128::from(shown.fee_sat) * u128::from(replaced_weight.to_wu())
            > 1_100 * u128::from(shown.weight_wu),
        "{shown}"
    );
}

/// Signs `psbt` on the key path with signers 1 and 2 in one trip each, finalizes it and
/// returns the transaction libbitcoinconsensus accepted.
fn sign_with_1_and_2(
    wallet: &WalletDescriptor,
    group: &custody_threshold::GroupKey,
    devs: &mut [Device],
    pool: &mut custody_threshold::CommitmentPool,
    mut psbt: bitcoin::psbt::Psbt,
    session: u8,
) -> bitcoin::Transaction {
    let policy = InspectPolicy::default();
    request_signatures(
        wallet,
        group,
        &mut psbt,
        &[1, 2],
        pool,
        [session; 16],
        &policy,
    )
    .expect("request");
    for d in devs
        .iter_mut()
        .filter(|d| [1, 2].contains(&d.share.index()))
    {
        let mut received = through_air_gap(&psbt);
        sign_psbt(
            wallet,
            &d.share,
            &d.seed,
            &mut d.store,
            &mut received,
            &policy,
        )
        .expect("signer accepts");
        absorb_response(&mut psbt, &through_air_gap(&received)).expect("absorb");
    }
    aggregate_psbt(wallet, group, &mut psbt, &policy).expect("aggregate");
    finalize_psbt(&mut psbt).expect("finalize");
    extract_verified(&psbt).expect("libbitcoinconsensus accepts every input")
}

/// The parent's change output as a wallet coin.
fn change_coin(parent: &bitcoin::Transaction, wallet: &WalletDescriptor, index: u32) -> WalletUtxo {
    let script = wallet
        .address(Branch::Change, index)
        .expect("derive")
        .script_pubkey();
    let vout = parent
        .output
        .iter()
        .position(|o| o.script_pubkey == script)
        .expect("the parent has change");
    WalletUtxo {
        outpoint: bitcoin::OutPoint {
            txid: parent.compute_txid(),
            vout: vout as u32,
        },
        txout: parent.output[vout].clone(),
        branch: Branch::Change,
        index,
        prev_tx: Some(parent.clone()),
    }
}

#[test]
fn a_child_spends_the_parents_change_back_to_the_wallet_and_lifts_the_package_to_the_asked_rate() {
    let shares = dkg(2, 3, Network::Regtest, 7);
    let group = shares[0].group().clone();
    let wallet = WalletDescriptor::for_group(&group, None).expect("descriptor");
    let (funding, utxos) = fund(&wallet, &[(Branch::Receive, 0, 1_000_000)], 17);
    let policy = InspectPolicy::default();
    let mut devs = devices(shares, 700);
    let mut pool = pool(&group, &mut devs, 10);

    // The parent: a withdrawal at 2 sat/vB with change at index 3, stuck in mempools.
    let payment = Payment {
        address: external_address(Network::Regtest, 9),
        amount: Amount::from_sat(400_000),
    };
    let parent = build_psbt(
        &wallet,
        &utxos,
        &[payment],
        &BuildOptions::new(FeeRate::from_sat_per_vb_u32(2), 3),
    )
    .expect("build");
    let parent_shown = inspect_psbt(&wallet, &parent, &policy).expect("inspect");
    assert!(parent_shown.fee_rate_sat_vb < 3.0, "{parent_shown}");
    let parent_tx = sign_with_1_and_2(&wallet, &group, &mut devs, &mut pool, parent, 1);
    custody_bitcoin::verify_transaction(&parent_tx, &funding.output)
        .expect("the parent verifies against the funding output");
    assert_eq!(parent_tx.weight().to_wu(), parent_shown.weight_wu);

    // The child spends the parent's change back to change index 8 at 20 sat/vB.
    let coin = change_coin(&parent_tx, &wallet, 3);
    let child = custody_bitcoin::build_child(
        &wallet,
        std::slice::from_ref(&coin),
        Amount::from_sat(parent_shown.fee_sat),
        bitcoin::Weight::from_wu(parent_shown.weight_wu),
        &BuildOptions::new(FeeRate::from_sat_per_vb_u32(20), 8),
    )
    .expect("child");
    let shown = inspect_psbt(&wallet, &child, &policy).expect("inspect");
    assert_eq!(shown.inputs.len(), 1);
    assert_eq!(shown.inputs[0].outpoint, coin.outpoint.to_string());
    assert_eq!(
        shown.inputs[0].sequence,
        bitcoin::Sequence::ENABLE_RBF_NO_LOCKTIME.to_consensus_u32()
    );
    assert_eq!(shown.outputs.len(), 1);
    assert_eq!(shown.outputs[0].ownership, Ownership::Change { index: 8 });
    assert_eq!(shown.sent_sat, 0, "nothing leaves the wallet");
    // The package pays 20 sat/vB over both virtual sizes, and not a vbyte more.
    let package_fee = parent_shown.fee_sat + shown.fee_sat;
    let package_vsize = parent_shown.vsize + shown.vsize;
    assert!(package_fee >= 20 * package_vsize, "{shown}");
    assert!(package_fee <= 20 * package_vsize + 2, "{shown}");
    assert!(shown.fee_rate_sat_vb >= 1.0, "{shown}");
    assert!(
        shown.fee_sat > 20 * shown.vsize,
        "the child pays for its parent"
    );

    let child_tx = sign_with_1_and_2(&wallet, &group, &mut devs, &mut pool, child, 2);
    assert_eq!(child_tx.weight().to_wu(), shown.weight_wu);
    custody_bitcoin::verify_transaction(&child_tx, std::slice::from_ref(&coin.txout))
        .expect("the child verifies against the parent's change output");
}

#[test]
fn a_child_adds_a_wallet_coin_after_the_parents_change_when_the_change_cannot_pay() {
    let shares = dkg(2, 3, Network::Regtest, 9);
    let wallet = WalletDescriptor::for_group(shares[0].group(), None).expect("descriptor");
    // An unconfirmed parent (142 vB at 1 sat/vB) whose change is 1000 sat.
    let (_parent, change) = fund(&wallet, &[(Branch::Change, 2, 1_000)], 19);
    let (_funding, extra) = fund(&wallet, &[(Branch::Receive, 5, 100_000)], 21);
    let (ancestors_fee, ancestors_weight) = (
        Amount::from_sat(142),
        bitcoin::Weight::from_vb_unchecked(142),
    );
    let options = BuildOptions::new(FeeRate::from_sat_per_vb_u32(20), 0);
    let policy = InspectPolicy::default();

    let err =
        custody_bitcoin::build_child(&wallet, &change, ancestors_fee, ancestors_weight, &options)
            .expect_err("1000 sat cannot pay for the package");
    // One key-path input to one Taproot output: 111 vB; 20 × (142 + 111) − 142 = 4918 sat,
    // plus the 330 sat the change output must keep.
    assert_eq!(
        err,
        custody_bitcoin::BuildError::InsufficientFunds {
            missing: Amount::from_sat(4_918 + 330 - 1_000)
        }
    );

    let coins = [change[0].clone(), extra[0].clone()];
    let child =
        custody_bitcoin::build_child(&wallet, &coins, ancestors_fee, ancestors_weight, &options)
            .expect("the extra coin pays");
    assert_eq!(
        child.unsigned_tx.input[0].previous_output,
        change[0].outpoint
    );
    assert_eq!(
        child.unsigned_tx.input[1].previous_output,
        extra[0].outpoint
    );
    let shown = inspect_psbt(&wallet, &child, &policy).expect("inspect");
    assert_eq!(shown.outputs.len(), 1);
    assert_eq!(shown.outputs[0].ownership, Ownership::Change { index: 0 });
    assert_eq!(shown.sent_sat, 0);
    assert_eq!(shown.total_in_sat, 101_000);
    // Two key-path inputs weigh 674 wu, 168.5 vB; nodes count 169 vB, and so does the fee
    // (10 sat more than 20 sat/vB over 168.5 vB).
    assert_eq!(shown.weight_wu, 674);
    assert_eq!(shown.vsize, 169);
    assert_eq!(shown.fee_sat, 20 * (142 + 169) - 142);
}

#[test]
fn a_child_refuses_a_rate_not_above_the_parents_no_coins_a_coin_twice_and_a_foreign_coin() {
    let shares = dkg(2, 3, Network::Regtest, 11);
    let wallet = WalletDescriptor::for_group(shares[0].group(), None).expect("descriptor");
    let (_parent, coins) = fund(&wallet, &[(Branch::Change, 2, 100_000)], 23);
    // The ancestors pay 1001 sat for 500 vB: 2.002 sat/vB.
    let fee = Amount::from_sat(1_001);
    let weight = bitcoin::Weight::from_vb_unchecked(500);
    let at = |sat_per_kwu| BuildOptions::new(FeeRate::from_sat_per_kwu(sat_per_kwu), 0);
    use custody_bitcoin::{build_child, BuildError};

    let err = build_child(&wallet, &coins, fee, weight, &at(500)).expect_err("2 sat/vB is lower");
    assert_eq!(
        err,
        BuildError::PackageAlreadyFaster {
            ancestors: FeeRate::from_sat_per_kwu(501),
            asked: FeeRate::from_sat_per_kwu(500),
        }
    );
    assert_eq!(
        err.to_string(),
        "the unconfirmed transactions already pay 2 sat/vB; a child only speeds them up at a \
         higher rate, asked 2 sat/vB"
    );
    // Exactly the ancestors' rate is refused too; a hair above it is not.
    let equal = build_child(&wallet, &coins, Amount::from_sat(1_000), weight, &at(500));
    assert!(
        matches!(equal, Err(BuildError::PackageAlreadyFaster { .. })),
        "{equal:?}"
    );
    build_child(&wallet, &coins, fee, weight, &at(501)).expect("above the ancestors' rate");

    assert_eq!(
        build_child(&wallet, &[], fee, weight, &at(5_000)),
        Err(BuildError::NoParentOutput)
    );
    let twice = [coins[0].clone(), coins[0].clone()];
    assert_eq!(
        build_child(&wallet, &twice, fee, weight, &at(5_000)),
        Err(BuildError::DuplicateUtxo(coins[0].outpoint))
    );
    let mut foreign = coins[0].clone();
    foreign.index += 1;
    assert_eq!(
        build_child(&wallet, &[foreign], fee, weight, &at(5_000)),
        Err(BuildError::ForeignUtxo {
            outpoint: coins[0].outpoint,
            branch: Branch::Change,
            index: 3
        })
    );
    let mut recovery = at(5_000);
    recovery.spend_path = custody_bitcoin::SpendPath::Recovery;
    assert_eq!(
        build_child(&wallet, &coins, fee, weight, &recovery),
        Err(BuildError::NoRecoveryLeaf)
    );
}
