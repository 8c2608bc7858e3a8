//! Refusals: what a tampering coordinator, a broken transport or a confused operator can do
//! to a PSBT, and that the signer (or the coordinator's own checks) says no, naming the
//! input or output at fault.

mod common;

use bitcoin::psbt::{Psbt, PsbtSighashType};
use bitcoin::sighash::TapSighashType;
use bitcoin::{Amount, FeeRate, Network, TxOut};
use common::*;
use custody_bitcoin::{
    absorb_response, aggregate_psbt, build_psbt, fields, inspect_psbt, request_signatures,
    sign_psbt, signing_items, AggregatePsbtError, Branch, BuildError, BuildOptions, FieldError,
    InspectError, InspectPolicy, ItemField, Payment, SignPsbtError, WalletDescriptor,
};
use custody_threshold::{
    aggregate, AggregateError, GroupKey, ItemSpec, SignatureShares, SigningRequest, TweakMode,
};

/// A funded 2-of-3 wallet and a withdrawal PSBT carrying a request for signers 1 and 3.
struct Fixture {
    wallet: WalletDescriptor,
    group: GroupKey,
    devs: Vec<Device>,
    psbt: Psbt,
    utxos: Vec<custody_bitcoin::WalletUtxo>,
    policy: InspectPolicy,
}

fn fixture(seed: u64) -> Fixture {
    let shares = dkg(2, 3, Network::Regtest, seed);
    let group = shares[0].group().clone();
    let wallet = WalletDescriptor::for_group(&group, None).expect("descriptor");
    let (_tx, utxos) = fund(
        &wallet,
        &[
            (Branch::Receive, 0, 50_000_000),
            (Branch::Receive, 1, 30_000_000),
        ],
        seed as u8,
    );
    let payment = Payment {
        address: external_address(Network::Regtest, 9),
        amount: Amount::from_sat(60_000_000),
    };
    let mut psbt = build_psbt(
        &wallet,
        &utxos,
        &[payment],
        &BuildOptions::new(FeeRate::from_sat_per_vb_u32(10), 0),
    )
    .expect("build");
    let policy = InspectPolicy::default();
    let mut devs = devices(shares, seed + 1000);
    let mut pool = pool(&group, &mut devs, 20);
    request_signatures(
        &wallet,
        &group,
        &mut psbt,
        &[1, 3],
        &mut pool,
        [1; 16],
        &policy,
    )
    .expect("request");
    Fixture {
        wallet,
        group,
        devs,
        psbt,
        utxos,
        policy,
    }
}

impl Fixture {
    fn signer(&mut self, index: u16) -> &mut Device {
        self.devs
            .iter_mut()
            .find(|d| d.share.index() == index)
            .expect("signer exists")
    }

    /// Has signer `index` sign `psbt` (a copy); returns the signer's answer.
    fn sign(
        &mut self,
        index: u16,
        psbt: &Psbt,
    ) -> Result<Psbt, SignPsbtError<std::convert::Infallible>> {
        let wallet = self.wallet.clone();
        let policy = self.policy;
        let d = self.signer(index);
        let mut received = through_air_gap(psbt);
        sign_psbt(
            &wallet,
            &d.share,
            &d.seed,
            &mut d.store,
            &mut received,
            &policy,
        )?;
        Ok(received)
    }

    /// Signs the untampered PSBT: proves a refusal consumed no nonce.
    fn honest_signing_still_works(&mut self, index: u16) {
        let psbt = self.psbt.clone();
        self.sign(index, &psbt)
            .expect("the untampered request is still signable: nothing was consumed");
    }
}

#[test]
fn changed_output_amount_after_the_request_is_refused_and_consumes_no_nonce() {
    let mut f = fixture(1);
    let mut tampered = f.psbt.clone();
    tampered.unsigned_tx.output[0].value += Amount::from_sat(1_000);
    tampered.unsigned_tx.output[1].value -= Amount::from_sat(1_000);
    match f.sign(1, &tampered) {
        Err(SignPsbtError::RequestMismatch {
            input: 0,
            field: ItemField::Sighash,
        }) => {}
        other => panic!("expected a sighash mismatch, got {other:?}"),
    }
    f.honest_signing_still_works(1);
}

#[test]
fn changed_input_amount_is_refused() {
    let mut f = fixture(2);
    let mut tampered = f.psbt.clone();
    let utxo = tampered.inputs[1].witness_utxo.as_mut().expect("present");
    utxo.value -= Amount::from_sat(500);
    let result = f.sign(3, &tampered);
    assert!(
        matches!(
            result,
            Err(SignPsbtError::RequestMismatch {
                input: 0,
                field: ItemField::Sighash
            })
        ),
        "{result:?}"
    );
    f.honest_signing_still_works(3);
}

#[test]
fn swapped_destination_is_refused() {
    let mut f = fixture(3);
    let mut tampered = f.psbt.clone();
    tampered.unsigned_tx.output[0].script_pubkey =
        external_address(Network::Regtest, 66).script_pubkey();
    assert!(matches!(
        f.sign(1, &tampered),
        Err(SignPsbtError::RequestMismatch {
            field: ItemField::Sighash,
            ..
        })
    ));
    // Swapping the two outputs is refused too (outputs are committed in order).
    let mut swapped = f.psbt.clone();
    swapped.unsigned_tx.output.swap(0, 1);
    swapped.outputs.swap(0, 1);
    assert!(matches!(
        f.sign(1, &swapped),
        Err(SignPsbtError::RequestMismatch {
            field: ItemField::Sighash,
            ..
        })
    ));
}

#[test]
fn dropped_prevout_is_refused() {
    let mut f = fixture(4);
    let mut tampered = f.psbt.clone();
    tampered.inputs[1].witness_utxo = None;
    assert!(matches!(
        f.sign(1, &tampered),
        Err(SignPsbtError::Inspect(InspectError::MissingPrevout {
            input: 1
        }))
    ));
}

#[test]
fn witness_utxo_inconsistent_with_non_witness_utxo_is_refused() {
    let f = fixture(5);
    let (funding, _) = fund(
        &f.wallet,
        &[
            (Branch::Receive, 0, 50_000_000),
            (Branch::Receive, 1, 30_000_000),
        ],
        5,
    );
    let mut psbt = f.psbt.clone();
    // The real previous transaction is accepted...
    for input in &mut psbt.inputs {
        input.non_witness_utxo = Some(funding.clone());
    }
    inspect_psbt(&f.wallet, &psbt, &f.policy).expect("consistent prevouts");
    // ...but a witness_utxo that claims a different amount than it holds is not.
    psbt.inputs[0].witness_utxo.as_mut().expect("present").value += Amount::from_sat(1);
    assert!(matches!(
        inspect_psbt(&f.wallet, &psbt, &f.policy),
        Err(InspectError::PrevoutMismatch { input: 0, .. })
    ));
    // And a previous transaction that is not the one spent is refused.
    let mut psbt = f.psbt.clone();
    let mut other = funding.clone();
    other.lock_time = bitcoin::absolute::LockTime::from_consensus(1);
    psbt.inputs[1].non_witness_utxo = Some(other);
    assert!(matches!(
        inspect_psbt(&f.wallet, &psbt, &f.policy),
        Err(InspectError::PrevoutMismatch { input: 1, .. })
    ));
}

#[test]
fn inputs_not_ours_are_refused() {
    let f = fixture(6);
    // An input whose claimed path derives a different script.
    let mut psbt = f.psbt.clone();
    let origins = &mut psbt.inputs[0].tap_key_origins;
    let (key, (hashes, (fp, _))) = origins.pop_first().expect("one origin");
    origins.insert(key, (hashes, (fp, f.wallet.full_path(Branch::Receive, 5))));
    assert!(matches!(
        inspect_psbt(&f.wallet, &psbt, &f.policy),
        Err(InspectError::ForeignInput { input: 0, .. })
    ));
    // An input with no derivation for our key at all.
    let mut psbt = f.psbt.clone();
    psbt.inputs[1].tap_key_origins.clear();
    assert!(matches!(
        inspect_psbt(&f.wallet, &psbt, &f.policy),
        Err(InspectError::ForeignInput { input: 1, .. })
    ));
    // A coin of another wallet: its script is not ours even with our metadata copied over.
    let other = WalletDescriptor::for_group(dkg(2, 3, Network::Regtest, 60)[0].group(), None)
        .expect("descriptor");
    let mut psbt = f.psbt.clone();
    psbt.inputs[0].witness_utxo = Some(TxOut {
        value: Amount::from_sat(50_000_000),
        script_pubkey: other
            .address(Branch::Receive, 0)
            .expect("address")
            .script_pubkey(),
    });
    assert!(matches!(
        inspect_psbt(&f.wallet, &psbt, &f.policy),
        Err(InspectError::ForeignInput { input: 0, .. })
    ));
    // The builder refuses a coin that is not paid to the address it claims.
    let mut utxos = f.utxos.clone();
    utxos[0].index = 9;
    assert!(matches!(
        build_psbt(
            &f.wallet,
            &utxos,
            &[Payment {
                address: external_address(Network::Regtest, 9),
                amount: Amount::from_sat(1_000_000)
            }],
            &BuildOptions::new(FeeRate::from_sat_per_vb_u32(1), 0)
        ),
        Err(BuildError::ForeignUtxo { index: 9, .. })
    ));
}

#[test]
fn inconsistent_internal_key_is_refused() {
    let f = fixture(7);
    let mut psbt = f.psbt.clone();
    psbt.inputs[0].tap_internal_key = Some(
        f.wallet
            .derive(Branch::Receive, 1)
            .expect("derive")
            .internal_key,
    );
    assert_eq!(
        inspect_psbt(&f.wallet, &psbt, &f.policy),
        Err(InspectError::InconsistentInput {
            input: 0,
            field: "tap_internal_key"
        })
    );
}

#[test]
fn non_default_sighash_types_are_refused() {
    let f = fixture(8);
    for t in [
        TapSighashType::All,
        TapSighashType::None,
        TapSighashType::Single,
        TapSighashType::AllPlusAnyoneCanPay,
        TapSighashType::SinglePlusAnyoneCanPay,
    ] {
        let mut psbt = f.psbt.clone();
        psbt.inputs[1].sighash_type = Some(PsbtSighashType::from(t));
        assert!(
            matches!(
                inspect_psbt(&f.wallet, &psbt, &f.policy),
                Err(InspectError::NonDefaultSighash { input: 1, .. })
            ),
            "{t}"
        );
    }
    let mut psbt = f.psbt.clone();
    psbt.inputs[1].sighash_type = Some(PsbtSighashType::from(TapSighashType::Default));
    inspect_psbt(&f.wallet, &psbt, &f.policy).expect("an explicit SIGHASH_DEFAULT is fine");
}

#[test]
fn fees_above_the_limits_are_refused() {
    let f = fixture(9);
    let shown = inspect_psbt(&f.wallet, &f.psbt, &f.policy).expect("inspect");
    let tight = InspectPolicy {
        max_fee: Amount::from_sat(shown.fee_sat - 1),
        ..f.policy
    };
    assert_eq!(
        inspect_psbt(&f.wallet, &f.psbt, &tight),
        Err(InspectError::FeeTooHigh {
            fee: Amount::from_sat(shown.fee_sat),
            limit: Amount::from_sat(shown.fee_sat - 1)
        })
    );
    let slow = InspectPolicy {
        max_fee_rate: FeeRate::from_sat_per_vb_u32(9),
        ..f.policy
    };
    assert!(matches!(
        inspect_psbt(&f.wallet, &f.psbt, &slow),
        Err(InspectError::FeeRateTooHigh {
            limit_sat_vb: 9,
            ..
        })
    ));
    // A coordinator that quietly shrinks the change to pay a huge fee is caught by the
    // default policy, request or not.
    let mut psbt = f.psbt.clone();
    psbt.unsigned_tx.output[1].value -= Amount::from_sat(5_000_000);
    assert!(matches!(
        inspect_psbt(&f.wallet, &psbt, &f.policy),
        Err(InspectError::FeeTooHigh { .. })
    ));
    // Outputs above inputs.
    let mut psbt = f.psbt.clone();
    psbt.unsigned_tx.output[0].value += Amount::from_sat(50_000_000);
    assert!(matches!(
        inspect_psbt(&f.wallet, &psbt, &f.policy),
        Err(InspectError::Overspend { .. })
    ));
}

#[test]
fn outputs_to_unknown_scripts_disguised_as_change_are_refused() {
    let f = fixture(10);
    // Change metadata copied onto the payment output (an attacker's script).
    let mut psbt = f.psbt.clone();
    psbt.outputs[0] = psbt.outputs[1].clone();
    assert!(matches!(
        inspect_psbt(&f.wallet, &psbt, &f.policy),
        Err(InspectError::DisguisedChange { output: 0, .. })
    ));
    // The change output's script replaced, metadata kept.
    let mut psbt = f.psbt.clone();
    psbt.unsigned_tx.output[1].script_pubkey =
        external_address(Network::Regtest, 77).script_pubkey();
    assert!(matches!(
        inspect_psbt(&f.wallet, &psbt, &f.policy),
        Err(InspectError::DisguisedChange { output: 1, .. })
    ));
    // Metadata that points at another change index than the script pays.
    let mut psbt = f.psbt.clone();
    let origins = &mut psbt.outputs[1].tap_key_origins;
    let (key, (hashes, (fp, _))) = origins.pop_first().expect("one origin");
    origins.insert(key, (hashes, (fp, f.wallet.full_path(Branch::Change, 1))));
    assert!(matches!(
        inspect_psbt(&f.wallet, &psbt, &f.policy),
        Err(InspectError::DisguisedChange { output: 1, .. })
    ));
    // Without any of our metadata, an output is shown as external, never as change.
    let mut psbt = f.psbt.clone();
    psbt.outputs[1] = Default::default();
    let shown = inspect_psbt(&f.wallet, &psbt, &f.policy).expect("inspect");
    assert_eq!(
        shown.outputs[1].ownership,
        custody_bitcoin::Ownership::External
    );
    assert_eq!(shown.sent_sat, shown.total_out_sat);
}

/// Replaces the request in `psbt` with one built from `items` (a coordinator lying about
/// what to sign), using fresh commitments.
fn replace_request(f: &mut Fixture, items: Vec<ItemSpec>) -> Psbt {
    let mut pool = pool(&f.group, &mut f.devs, items.len());
    let request =
        SigningRequest::build([2; 16], &f.group, &[1, 3], items, &mut pool).expect("build");
    let mut psbt = f.psbt.clone();
    fields::set_signing_request(&mut psbt, &request);
    psbt
}

#[test]
fn request_items_that_differ_from_the_psbt_are_refused() {
    let mut f = fixture(11);
    let honest = signing_items(&f.wallet, &f.psbt, &f.policy).expect("items");

    let mut wrong_path = honest.clone();
    wrong_path[1].path = vec![0, 7];
    let psbt = replace_request(&mut f, wrong_path);
    assert!(matches!(
        f.sign(1, &psbt),
        Err(SignPsbtError::RequestMismatch {
            input: 1,
            field: ItemField::Path
        })
    ));

    let mut wrong_tweak = honest.clone();
    wrong_tweak[0].tweak = TweakMode::Untweaked;
    let psbt = replace_request(&mut f, wrong_tweak);
    assert!(matches!(
        f.sign(3, &psbt),
        Err(SignPsbtError::RequestMismatch {
            input: 0,
            field: ItemField::Tweak
        })
    ));

    let mut foreign_message = honest.clone();
    foreign_message[1].message = vec![0x42; 32];
    let psbt = replace_request(&mut f, foreign_message);
    assert!(matches!(
        f.sign(1, &psbt),
        Err(SignPsbtError::RequestMismatch {
            input: 1,
            field: ItemField::Sighash
        })
    ));

    let mut extra = honest.clone();
    extra.push(honest[0].clone());
    let psbt = replace_request(&mut f, extra);
    assert!(matches!(
        f.sign(1, &psbt),
        Err(SignPsbtError::ItemCount {
            expected: 2,
            found: 3
        })
    ));

    let mut psbt = f.psbt.clone();
    psbt.proprietary.clear();
    assert!(matches!(
        f.sign(1, &psbt),
        Err(SignPsbtError::Field(FieldError::MissingRequest))
    ));
    f.honest_signing_still_works(1);
}

#[test]
fn a_share_made_for_one_sighash_never_verifies_for_another() {
    let mut f = fixture(12);
    let request = fields::signing_request(&f.psbt).expect("request");
    let psbt = f.psbt.clone();
    let responses: Vec<SignatureShares> = [1u16, 3]
        .into_iter()
        .map(|i| {
            let answer = f.sign(i, &psbt).expect("sign");
            fields::signature_shares(&answer)
                .expect("fields")
                .pop()
                .expect("one")
        })
        .collect();
    aggregate(&f.group, &request, &responses).expect("the honest shares aggregate");

    // The same request, same commitments, but input 0's message replaced by the sighash of a
    // different transaction (more to the destination).
    let mut other = f.psbt.clone();
    other.unsigned_tx.output[0].value += Amount::from_sat(10_000);
    other.unsigned_tx.output[1].value -= Amount::from_sat(10_000);
    let other_items = signing_items(&f.wallet, &other, &f.policy).expect("items");
    let mut bytes = request.encode();
    let old = &request.items()[0].spec.message;
    let at = bytes
        .windows(32)
        .position(|w| w == old.as_slice())
        .expect("the message is in the encoding");
    bytes[at..at + 32].copy_from_slice(&other_items[0].message);
    let forged = SigningRequest::decode(&bytes).expect("still well-formed");
    assert_eq!(forged.items()[0].spec.message, other_items[0].message);

    // Bound to the request digest, the shares are refused outright...
    assert!(matches!(
        aggregate(&f.group, &forged, &responses),
        Err(AggregateError::WrongRequest(_))
    ));
    // ...and relabelled as answers to the forged request, neither signer's share verifies.
    let relabelled: Vec<_> = responses
        .iter()
        .map(|r| SignatureShares {
            request_digest: forged.digest(),
            ..r.clone()
        })
        .collect();
    assert_eq!(
        aggregate(&f.group, &forged, &relabelled),
        Err(AggregateError::InvalidShares(vec![1, 3]))
    );
}

#[test]
fn a_corrupted_share_is_named_at_aggregation() {
    let mut f = fixture(13);
    let psbt = f.psbt.clone();
    let mut collected = f.psbt.clone();
    for i in [1u16, 3] {
        let answer = f.sign(i, &psbt).expect("sign");
        absorb_response(&mut collected, &answer).expect("absorb");
    }
    let key = fields::shares_key(3);
    let mut shares = SignatureShares::decode(&collected.proprietary[&key]).expect("decode");
    shares.shares[1][31] ^= 1;
    fields::set_signature_shares(&mut collected, &shares);
    assert_eq!(
        aggregate_psbt(&f.wallet, &f.group, &mut collected, &f.policy),
        Err(AggregatePsbtError::Aggregate(
            AggregateError::InvalidShares(vec![3])
        ))
    );
}

#[test]
fn a_response_can_only_add_shares() {
    let mut f = fixture(14);
    let psbt = f.psbt.clone();
    let mut answer = f.sign(1, &psbt).expect("sign");
    // A response that also rewrote a prevout contributes its shares and nothing else.
    answer.inputs[0].witness_utxo = None;
    let mut collected = f.psbt.clone();
    absorb_response(&mut collected, &answer).expect("absorb");
    assert_eq!(collected.inputs, f.psbt.inputs);
    // A response for another transaction is refused.
    let mut other = answer.clone();
    other.unsigned_tx.lock_time = bitcoin::absolute::LockTime::from_consensus(5);
    assert!(matches!(
        absorb_response(&mut collected, &other),
        Err(FieldError::DifferentTransaction { .. })
    ));
}

#[test]
fn a_signer_of_another_wallet_is_refused() {
    let f = fixture(15);
    let other_shares = dkg(2, 3, Network::Regtest, 61);
    let other = WalletDescriptor::for_group(other_shares[0].group(), None).expect("descriptor");
    let mut devs = devices(other_shares, 5);
    let d = &mut devs[0];
    let mut psbt = f.psbt.clone();
    // Our wallet with their share...
    assert!(matches!(
        sign_psbt(
            &f.wallet,
            &d.share,
            &d.seed,
            &mut d.store,
            &mut psbt,
            &f.policy
        ),
        Err(SignPsbtError::WrongWallet(_))
    ));
    // ...and their wallet with our PSBT: the inputs are not theirs.
    assert!(matches!(
        sign_psbt(
            &other,
            &d.share,
            &d.seed,
            &mut d.store,
            &mut psbt,
            &f.policy
        ),
        Err(SignPsbtError::Inspect(InspectError::ForeignInput {
            input: 0,
            ..
        }))
    ));
}

#[test]
fn builder_refusals() {
    let f = fixture(16);
    let opts = BuildOptions::new(FeeRate::from_sat_per_vb_u32(10), 0);
    let pay = |amount: u64, network| Payment {
        address: external_address(network, 9),
        amount: Amount::from_sat(amount),
    };
    assert!(matches!(
        build_psbt(
            &f.wallet,
            &f.utxos,
            &[pay(80_000_000, Network::Regtest)],
            &opts
        ),
        Err(BuildError::InsufficientFunds { .. })
    ));
    assert!(matches!(
        build_psbt(&f.wallet, &f.utxos, &[pay(100, Network::Regtest)], &opts),
        Err(BuildError::Dust { payment: 0, .. })
    ));
    assert!(matches!(
        build_psbt(
            &f.wallet,
            &f.utxos,
            &[pay(1_000_000, Network::Bitcoin)],
            &opts
        ),
        Err(BuildError::WrongNetwork { payment: 0, .. })
    ));
    assert_eq!(
        build_psbt(&f.wallet, &f.utxos, &[], &opts),
        Err(BuildError::NoPayments)
    );
    let mut twice = f.utxos.clone();
    twice.push(f.utxos[0].clone());
    assert_eq!(
        build_psbt(
            &f.wallet,
            &twice,
            &[pay(1_000_000, Network::Regtest)],
            &opts
        ),
        Err(BuildError::DuplicateUtxo(f.utxos[0].outpoint))
    );
}
