//! Entry points for the fuzz harness (`fuzz/`): each takes arbitrary bytes and panics only
//! on a bug in this crate (a panic in inspection or field decoding, or a field that does
//! not survive a round trip).
//!
//! Inspection runs against two fixed public wallets ([`fuzz_wallet`],
//! [`fuzz_recovery_wallet`]) so that a corpus of PSBTs built for them
//! ([`corpus_seeds`]) reaches the deep checks.

use std::str::FromStr;
use std::sync::OnceLock;

use bitcoin::absolute::LockTime;
use bitcoin::bip32::{Xpriv, Xpub};
use bitcoin::psbt::raw::ProprietaryKey;
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::Secp256k1;
use bitcoin::transaction::Version;
use bitcoin::{Amount, FeeRate, Network, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut};
use miniscript::descriptor::DescriptorPublicKey;

use crate::build::{build_psbt, BuildOptions, Payment, SpendPath, WalletUtxo};
use crate::descriptor::{Branch, RecoveryPolicy, WalletDescriptor};
use crate::fields;
use crate::inspect::{inspect_psbt, inspect_recovery_psbt, InspectPolicy};
use crate::sign::signing_items;

fn master(byte: u8) -> Xpub {
    let secp = Secp256k1::new();
    let xpriv = Xpriv::new_master(Network::Regtest, &[byte; 32]).expect("a 32-byte seed is valid");
    Xpub::from_priv(&secp, &xpriv)
}

/// The fixed regtest wallet `tr([fp]tpub/<0;1>/*)` the inspection target checks against.
pub fn fuzz_wallet() -> WalletDescriptor {
    static WALLET: OnceLock<WalletDescriptor> = OnceLock::new();
    WALLET
        .get_or_init(|| {
            WalletDescriptor::from_xpub(Network::Regtest, master(0x01), None, None)
                .expect("a fixed valid descriptor")
        })
        .clone()
}

/// The fixed regtest wallet with a 2-of-3 recovery leaf after 144 blocks.
pub fn fuzz_recovery_wallet() -> WalletDescriptor {
    static WALLET: OnceLock<WalletDescriptor> = OnceLock::new();
    WALLET.get_or_init(make_recovery_wallet).clone()
}

fn make_recovery_wallet() -> WalletDescriptor {
    let keys = [0x02u8, 0x03, 0x04]
        .iter()
        .map(|b| {
            let x = master(*b);
            DescriptorPublicKey::from_str(&format!("[{}]{x}/<0;1>/*", x.fingerprint()))
                .expect("a fixed valid key")
        })
        .collect();
    let policy = RecoveryPolicy::new(2, keys, 144).expect("a fixed valid policy");
    WalletDescriptor::from_xpub(Network::Regtest, master(0x01), None, Some(policy))
        .expect("a fixed valid descriptor")
}

/// Valid PSBTs for the fuzz wallets: starting points for the corpus.
pub fn corpus_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut seeds = Vec::new();
    for (name, wallet, path) in [
        ("key_path", fuzz_wallet(), SpendPath::KeyPath),
        (
            "recovery_key_path",
            fuzz_recovery_wallet(),
            SpendPath::KeyPath,
        ),
        ("recovery_leaf", fuzz_recovery_wallet(), SpendPath::Recovery),
    ] {
        let coins = [
            (Branch::Receive, 0u32, 50_000u64),
            (Branch::Change, 3, 70_000),
        ];
        let utxos: Vec<WalletUtxo> = coins
            .iter()
            .enumerate()
            .map(|(k, (branch, index, sat))| WalletUtxo {
                outpoint: OutPoint {
                    txid: bitcoin::Txid::from_raw_hash(bitcoin::hashes::Hash::from_byte_array(
                        [k as u8 + 1; 32],
                    )),
                    vout: k as u32,
                },
                txout: TxOut {
                    value: Amount::from_sat(*sat),
                    script_pubkey: wallet
                        .address(*branch, *index)
                        .expect("fixed indexes derive")
                        .script_pubkey(),
                },
                branch: *branch,
                index: *index,
                prev_tx: None,
            })
            .collect();
        let destination = fuzz_wallet()
            .address(Branch::Receive, 99)
            .expect("fixed index derives");
        let mut options = BuildOptions::new(FeeRate::from_sat_per_vb_u32(2), 1);
        options.spend_path = path;
        let psbt = build_psbt(
            &wallet,
            &utxos,
            &[Payment {
                address: destination,
                amount: Amount::from_sat(90_000),
            }],
            &options,
        )
        .expect("fixed inputs build");
        seeds.push((name, psbt.serialize()));
    }
    seeds
}

/// Fuzzes PSBT inspection: parses `data` as a PSBT and inspects it against both fuzz
/// wallets, for the key path and the recovery leaf; an accepted PSBT must render as text
/// and JSON and yield one signing item per input.
pub fn do_test_inspect_psbt(data: &[u8]) {
    let Ok(psbt) = Psbt::deserialize(data) else {
        return;
    };
    let policy = InspectPolicy::default();
    for wallet in [fuzz_wallet(), fuzz_recovery_wallet()] {
        match inspect_psbt(&wallet, &psbt, &policy) {
            Ok(inspection) => {
                assert!(!inspection.to_string().is_empty());
                assert!(inspection.to_json().starts_with('{'));
                assert_eq!(inspection.inputs.len(), psbt.inputs.len());
                let items = signing_items(&wallet, &psbt, &policy)
                    .expect("signing items exist for every accepted PSBT");
                assert_eq!(items.len(), psbt.inputs.len());
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
        match inspect_recovery_psbt(&wallet, &psbt, &policy) {
            Ok(inspection) => assert!(!inspection.to_string().is_empty()),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
}

fn check_fields(psbt: &Psbt) {
    match fields::signing_request(psbt) {
        Ok(request) => {
            let mut copy = psbt.clone();
            fields::set_signing_request(&mut copy, &request);
            assert_eq!(
                fields::signing_request(&copy).expect("a re-encoded request decodes"),
                request
            );
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    match fields::signature_shares(psbt) {
        Ok(all) => {
            let mut copy = psbt.clone();
            copy.proprietary.clear();
            for shares in &all {
                fields::set_signature_shares(&mut copy, shares);
            }
            assert_eq!(
                fields::signature_shares(&copy).expect("re-encoded shares decode"),
                all
            );
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// Fuzzes proprietary-field decoding on a whole PSBT: parses `data` as a PSBT and reads
/// its CoinPort request and shares fields; whatever decodes must survive a re-encoding.
pub fn do_test_psbt_fields(data: &[u8]) {
    if let Ok(psbt) = Psbt::deserialize(data) {
        check_fields(&psbt);
    }
}

/// Fuzzes proprietary-field decoding without the PSBT parser in the way: the first byte is
/// the subtype, the second the key-data length `n`, the next `n` bytes the key data, and the
/// rest the value, put as one CoinPort field into a fixed minimal PSBT.
pub fn do_test_proprietary_field(data: &[u8]) {
    let [subtype, len, rest @ ..] = data else {
        return;
    };
    let len = usize::from(*len).min(rest.len());
    let (key, value) = rest.split_at(len);
    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: bitcoin::Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::ZERO,
            script_pubkey: ScriptBuf::new(),
        }],
    };
    let mut psbt = Psbt::from_unsigned_tx(tx).expect("a transaction without signatures");
    psbt.proprietary.insert(
        ProprietaryKey {
            prefix: fields::PREFIX.to_vec(),
            subtype: *subtype,
            key: key.to_vec(),
        },
        value.to_vec(),
    );
    check_fields(&psbt);
    // The field survives the PSBT's own serialization.
    let parsed = Psbt::deserialize(&psbt.serialize()).expect("a PSBT we wrote parses");
    assert_eq!(parsed.proprietary, psbt.proprietary);
}
