//! A coordinator's signing request for a group of test signers.

use std::path::Path;

use bitcoin::psbt::Psbt;
use bitcoin::{Amount, FeeRate};
use custody_airgap::envelope::{Envelope, EnvelopeType, MemoryReplayGuard, Receiver};
use custody_airgap::file::{list_complete, read_bounded};
use custody_bitcoin::{
    build_psbt, request_signatures, Branch, BuildOptions, InspectPolicy, Payment, WalletDescriptor,
    WalletUtxo,
};
use custody_threshold::{CommitmentBatch, CommitmentPool, GroupKey, IdentityCard};

use super::Signer;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

pub fn group_of(s: &Signer) -> GroupKey {
    GroupKey::decode(&std::fs::read(s.home.join("group.key")).expect("group")).expect("group")
}

fn card_of(s: &Signer) -> IdentityCard {
    IdentityCard::decode(&std::fs::read(s.home.join("identity.card")).expect("card")).expect("card")
}

/// A P2WPKH address outside the wallet, from a fixed key byte.
pub fn external_address(key: u8) -> bitcoin::Address {
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let sk = bitcoin::secp256k1::SecretKey::from_slice(&[key; 32]).expect("key");
    bitcoin::Address::p2wpkh(
        &bitcoin::CompressedPublicKey(sk.public_key(&secp)),
        bitcoin::Network::Regtest,
    )
}

/// One coin of 0.8 BTC on receive address 0.
fn fund(wallet: &WalletDescriptor) -> Vec<WalletUtxo> {
    use bitcoin::{absolute::LockTime, transaction::Version, OutPoint, Sequence, TxIn, TxOut};
    let tx = bitcoin::Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: bitcoin::Txid::from_raw_hash(bitcoin::hashes::Hash::from_byte_array([3; 32])),
                vout: 0,
            },
            script_sig: bitcoin::ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: bitcoin::Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(80_000_000),
            script_pubkey: wallet
                .address(Branch::Receive, 0)
                .expect("derive")
                .script_pubkey(),
        }],
    };
    vec![WalletUtxo {
        outpoint: OutPoint {
            txid: tx.compute_txid(),
            vout: 0,
        },
        txout: tx.output[0].clone(),
        branch: Branch::Receive,
        index: 0,
        prev_tx: None,
    }]
}

/// The signers at `chosen` (0-based) issue commitments into `usb`; the coordinator builds a
/// request paying `amount_sat` to `external_address(7)` signed by them.
pub fn request(signers: &[Signer], chosen: &[usize], usb: &Path, amount_sat: u64) -> Psbt {
    request_with(
        signers,
        chosen,
        usb,
        amount_sat,
        &InspectPolicy::default(),
        |_| {},
    )
}

/// An internal transfer (what voids an exported withdrawal): the coin of [`request`] spent
/// to one change output of the wallet, proved change, at about 5 sat/vB plus `extra_fee_sat`.
pub fn void_request(signers: &[Signer], chosen: &[usize], usb: &Path, extra_fee_sat: u64) -> Psbt {
    // The coordinator's own fee check is lifted so that a test can build what a signer
    // must refuse.
    let lax = InspectPolicy {
        max_fee: Amount::MAX,
        max_fee_rate: FeeRate::MAX,
    };
    request_with(signers, chosen, usb, 10_000_000, &lax, |psbt| {
        // build_psbt appends change after the payment: drop the payment, keep its value.
        let payment = psbt.unsigned_tx.output.remove(0);
        psbt.outputs.remove(0);
        assert_eq!(psbt.unsigned_tx.output.len(), 1, "one change output left");
        let change = &mut psbt.unsigned_tx.output[0];
        change.value = change.value + payment.value - Amount::from_sat(extra_fee_sat);
    })
}

/// [`request`] with `edit` applied to the unsigned PSBT before the signatures are
/// requested under the coordinator's fee check `policy`.
fn request_with(
    signers: &[Signer],
    chosen: &[usize],
    usb: &Path,
    amount_sat: u64,
    policy: &InspectPolicy,
    edit: impl FnOnce(&mut Psbt),
) -> Psbt {
    let group = group_of(&signers[0]);
    let usb_s = usb.display().to_string();
    let mut pool = CommitmentPool::new(&group);
    let session = custody_signer::commitments::commitment_session_id(&group);
    for &i in chosen {
        signers[i]
            .cmd(&["commitments", "issue", "--count", "4", "--usb", &usb_s])
            .assert()
            .success();
        let card = card_of(&signers[i]);
        let trusted = [card.clone()];
        let mut receiver = Receiver::new(session, &trusted, None, MemoryReplayGuard::default());
        for path in list_complete(usb).expect("list") {
            let bytes = read_bounded(&path).expect("read");
            let Ok(env) = Envelope::decode(&bytes) else {
                continue;
            };
            if env.header().sender != *card.signing_key()
                || env.header().kind != EnvelopeType::CommitmentBatch
            {
                continue;
            }
            let opened = receiver
                .open(&bytes, Some(EnvelopeType::CommitmentBatch), now())
                .expect("valid");
            let batch = CommitmentBatch::decode(&opened.payload).expect("batch");
            let _ = pool.add_batch(&batch);
        }
    }
    let wallet = WalletDescriptor::for_group(&group, None).expect("descriptor");
    let payment = Payment {
        address: external_address(7),
        amount: Amount::from_sat(amount_sat),
    };
    let options = BuildOptions::new(FeeRate::from_sat_per_vb_u32(5), 0);
    let mut psbt = build_psbt(&wallet, &fund(&wallet), &[payment], &options).expect("build");
    edit(&mut psbt);
    let ids: Vec<u16> = chosen.iter().map(|&i| i as u16 + 1).collect();
    request_signatures(&wallet, &group, &mut psbt, &ids, &mut pool, [9; 16], policy)
        .expect("request");
    psbt
}
