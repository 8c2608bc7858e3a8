//! Shared helpers for the integration tests: key ceremonies, signer devices, funding.
#![allow(dead_code)]

use bitcoin::absolute::LockTime;
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};
use custody_threshold::{
    drill, issue_commitments, CeremonyKind, CeremonyPlan, CommitmentPool, GroupKey, Identity,
    KeyShare, MemoryNonceStore, Network, NonceSeed,
};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// Runs a certified DKG for `t`-of-`n` on `network` and returns every participant's share.
pub fn dkg(t: u16, n: usize, network: Network, seed: u64) -> Vec<KeyShare> {
    let mut r = rng(seed);
    let ids: Vec<Identity> = (0..n)
        .map(|i| Identity::generate(&format!("holder{i}"), &mut r).expect("valid name"))
        .collect();
    let plan = CeremonyPlan::new(
        [seed as u8; 16],
        CeremonyKind::Dkg,
        network,
        "custody-bitcoin test wallet",
        t,
        ids.iter().map(Identity::card).collect(),
    )
    .expect("valid plan");
    drill::run_keygen(&plan, &ids, None, &mut r)
        .expect("honest DKG succeeds")
        .into_iter()
        .map(|o| o.share)
        .collect()
}

/// A signer's device: its share, nonce seed and nonce store.
pub struct Device {
    pub share: KeyShare,
    pub seed: NonceSeed,
    pub store: MemoryNonceStore,
}

pub fn devices(shares: Vec<KeyShare>, seed: u64) -> Vec<Device> {
    let mut r = rng(seed);
    shares
        .into_iter()
        .map(|share| Device {
            share,
            seed: NonceSeed::generate(&mut r),
            store: MemoryNonceStore::new(),
        })
        .collect()
}

/// Fills a coordinator pool with `count` commitments from each device.
pub fn pool(group: &GroupKey, devices: &mut [Device], count: usize) -> CommitmentPool {
    let mut pool = CommitmentPool::new(group);
    for d in devices.iter_mut() {
        let batch = issue_commitments(&d.share, &d.seed, &mut d.store, count).expect("issue");
        pool.add_batch(&batch).expect("same group");
    }
    pool
}

/// A transaction from outside the wallet paying `outputs`; its single input spends a made-up
/// coin (it is never verified, only its outputs are spent by the tests).
pub fn funding_tx(outputs: Vec<(ScriptBuf, Amount)>, salt: u8) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: Txid::from_raw_hash(bitcoin::hashes::Hash::from_byte_array([salt; 32])),
                vout: 0,
            },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        }],
        output: outputs
            .into_iter()
            .map(|(script_pubkey, value)| TxOut {
                value,
                script_pubkey,
            })
            .collect(),
    }
}

/// A P2WPKH address of someone outside the wallet.
pub fn external_address(network: Network, seed: u8) -> bitcoin::Address {
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let sk = bitcoin::secp256k1::SecretKey::from_slice(&[seed.max(1); 32]).expect("valid key");
    let pk = bitcoin::CompressedPublicKey(sk.public_key(&secp));
    bitcoin::Address::p2wpkh(&pk, network)
}

/// Serializes and parses a PSBT, as crossing the air gap does.
pub fn through_air_gap(psbt: &bitcoin::psbt::Psbt) -> bitcoin::psbt::Psbt {
    bitcoin::psbt::Psbt::deserialize(&psbt.serialize()).expect("a PSBT we wrote parses")
}

/// Funds `addresses` (with `amounts`) from outside and returns the wallet coins created.
pub fn fund(
    wallet: &custody_bitcoin::WalletDescriptor,
    coins: &[(custody_bitcoin::Branch, u32, u64)],
    salt: u8,
) -> (Transaction, Vec<custody_bitcoin::WalletUtxo>) {
    let tx = funding_tx(
        coins
            .iter()
            .map(|(b, i, sat)| {
                (
                    wallet.address(*b, *i).expect("derive").script_pubkey(),
                    Amount::from_sat(*sat),
                )
            })
            .collect(),
        salt,
    );
    let txid = tx.compute_txid();
    let utxos = coins
        .iter()
        .enumerate()
        .map(|(vout, (branch, index, _))| custody_bitcoin::WalletUtxo {
            outpoint: OutPoint {
                txid,
                vout: vout as u32,
            },
            txout: tx.output[vout].clone(),
            branch: *branch,
            index: *index,
            prev_tx: None,
        })
        .collect();
    (tx, utxos)
}

/// Backup holders' BIP32 master keys.
pub fn backup_masters(count: usize, network: Network) -> Vec<bitcoin::bip32::Xpriv> {
    (0..count)
        .map(|i| bitcoin::bip32::Xpriv::new_master(network, &[0x60 + i as u8; 32]).expect("seed"))
        .collect()
}

/// A backup holder's descriptor key: `[fp/48'/1'/0'/2']tpub…/<0;1>/*`.
pub fn backup_descriptor_key(
    master: &bitcoin::bip32::Xpriv,
) -> miniscript::descriptor::DescriptorPublicKey {
    use std::str::FromStr;
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let path = bitcoin::bip32::DerivationPath::from_str("m/48'/1'/0'/2'").expect("path");
    let account =
        bitcoin::bip32::Xpub::from_priv(&secp, &master.derive_priv(&secp, &path).expect("derive"));
    miniscript::descriptor::DescriptorPublicKey::from_str(&format!(
        "[{}/48'/1'/0'/2']{account}/<0;1>/*",
        master.fingerprint(&secp)
    ))
    .expect("key")
}

/// A 3-of-5 group wallet with a 2-of-3 backup leaf after `after` blocks.
pub fn recovery_wallet(
    seed: u64,
    after: u16,
) -> (
    Vec<KeyShare>,
    custody_bitcoin::WalletDescriptor,
    Vec<bitcoin::bip32::Xpriv>,
) {
    let shares = dkg(3, 5, Network::Regtest, seed);
    let backups = backup_masters(3, Network::Regtest);
    let policy = custody_bitcoin::RecoveryPolicy::new(
        2,
        backups.iter().map(backup_descriptor_key).collect(),
        after,
    )
    .expect("policy");
    let wallet = custody_bitcoin::WalletDescriptor::for_group(shares[0].group(), Some(policy))
        .expect("descriptor");
    (shares, wallet, backups)
}
