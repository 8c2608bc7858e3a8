//! Wallet descriptors and addresses: BIP86 vectors, cross-checks against the `bitcoin`
//! crate's BIP32/BIP341 code and `custody_threshold`'s own derivation, every network, and the
//! watch-only export formats.

mod common;

use std::str::FromStr;

use bitcoin::bip32::{ChildNumber, DerivationPath, Xpriv, Xpub};
use bitcoin::key::TapTweak;
use bitcoin::secp256k1::Secp256k1;
use bitcoin::{Address, Network};
use common::*;
use custody_bitcoin::{
    Branch, CoreImportOptions, DescriptorError, ImportTimestamp, RecoveryPolicy, WalletDescriptor,
};
use custody_threshold::TweakMode;
use miniscript::descriptor::DescriptorPublicKey;
use miniscript::Descriptor;
use serde_json::Value;

const BIP86: &str = include_str!("../../../test-vectors/bip86/vectors.json");

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("{k} is a string"))
}

#[test]
fn bip86_vectors_give_the_published_addresses() {
    let v: Value = serde_json::from_str(BIP86).expect("json");
    let secp = Secp256k1::new();
    let root = Xpriv::from_str(s(&v, "rootpriv")).expect("xprv");
    let account = &v["account"];
    let account_xpub = Xpub::from_str(s(account, "xpub")).expect("xpub");
    let account_path = DerivationPath::from_str(s(account, "path")).expect("path");
    // The transcription holds: the account xpub is the one the root derives.
    assert_eq!(
        Xpub::from_priv(
            &secp,
            &root.derive_priv(&secp, &account_path).expect("derive")
        ),
        account_xpub
    );
    let wallet = WalletDescriptor::from_xpub(
        Network::Bitcoin,
        account_xpub,
        Some((root.fingerprint(&secp), account_path.clone())),
        None,
    )
    .expect("descriptor");
    assert!(wallet
        .to_multipath_string()
        .starts_with(&format!("tr([73c5da0a/86'/0'/0']{account_xpub}/<0;1>/*)#")));
    let addresses = v["addresses"].as_array().expect("array");
    assert_eq!(addresses.len(), 3);
    for a in addresses {
        let path = DerivationPath::from_str(s(a, "path")).expect("path");
        let steps: Vec<ChildNumber> = path.into_iter().copied().collect();
        let (branch, index) = match steps[3..] {
            [ChildNumber::Normal { index: b }, ChildNumber::Normal { index }] => {
                (Branch::from_number(b).expect("0 or 1"), index)
            }
            _ => panic!("vector paths end in two normal steps"),
        };
        let derived = wallet.derive(branch, index).expect("derive");
        assert_eq!(
            derived.address.to_string(),
            s(a, "address"),
            "{}",
            s(a, "path")
        );
        // Derived again (from the cache, also through a clone): the same keys and address.
        for again in [
            wallet.derive(branch, index).expect("derive"),
            wallet.clone().derive(branch, index).expect("derive"),
        ] {
            assert_eq!(again.address, derived.address);
            assert_eq!(again.internal_key, derived.internal_key);
            assert_eq!(again.output_key, derived.output_key);
            assert_eq!(again.merkle_root, derived.merkle_root);
        }
        assert_eq!(
            derived.script_pubkey().to_hex_string(),
            s(a, "scriptPubKey")
        );
        assert_eq!(
            hex::encode(derived.internal_key.serialize()),
            s(a, "internal_key")
        );
        assert_eq!(
            hex::encode(derived.output_key.serialize()),
            s(a, "output_key")
        );
        assert_eq!(derived.merkle_root, None);
        assert_eq!(derived.tweak_mode(), TweakMode::KeyPath);
        assert_eq!(
            wallet.full_path(branch, index),
            DerivationPath::from_str(s(a, "path")).expect("path")
        );
        assert_eq!(
            wallet.parse_origin(&(root.fingerprint(&secp), wallet.full_path(branch, index))),
            Some((branch, index))
        );
    }
}

/// The address for (branch, index) computed by the `bitcoin` crate alone: BIP32 CKDpub from the
/// xpub string, then `Address::p2tr` (BIP86 tweak by libsecp256k1).
fn independent_address(xpub: &Xpub, branch: u32, index: u32, network: Network) -> Address {
    let secp = Secp256k1::verification_only();
    let xpub = Xpub::from_str(&xpub.to_string()).expect("round trip");
    let child = xpub
        .derive_pub(
            &secp,
            &[
                ChildNumber::from_normal_idx(branch).expect("normal"),
                ChildNumber::from_normal_idx(index).expect("normal"),
            ],
        )
        .expect("derive");
    Address::p2tr(&secp, child.public_key.x_only_public_key().0, None, network)
}

#[test]
fn group_wallet_addresses_match_bitcoin_crate_and_threshold_core_on_every_network() {
    for (k, network) in [
        Network::Bitcoin,
        Network::Testnet,
        Network::Signet,
        Network::Regtest,
    ]
    .into_iter()
    .enumerate()
    {
        let shares = dkg(2, 3, network, 10 + k as u64);
        let group = shares[0].group().clone();
        let wallet = WalletDescriptor::for_group(&group, None).expect("descriptor");
        assert_eq!(wallet.network(), network);
        let prefix = match network {
            Network::Bitcoin => "bc1p",
            Network::Regtest => "bcrt1p",
            _ => "tb1p",
        };
        for branch in [Branch::Receive, Branch::Change] {
            for index in [0u32, 1, 7, 1_000, 0x7fff_ffff] {
                let ours = wallet.derive(branch, index).expect("derive");
                let theirs = independent_address(&group.xpub(), branch.number(), index, network);
                assert_eq!(ours.address, theirs, "{network} {branch} {index}");
                assert!(ours.address.to_string().starts_with(prefix));
                // The threshold core derives the same key and output key.
                let path = ours.relative_path();
                assert_eq!(
                    group
                        .output_key(&path, &TweakMode::KeyPath)
                        .expect("derive"),
                    ours.output_key.serialize()
                );
                assert_eq!(
                    group
                        .output_key(&path, &TweakMode::Untweaked)
                        .expect("derive"),
                    ours.internal_key.serialize()
                );
            }
        }
        // Receive and change addresses differ.
        assert_ne!(
            wallet.address(Branch::Receive, 0).expect("a"),
            wallet.address(Branch::Change, 0).expect("a")
        );
    }
}

#[test]
fn hardened_index_is_refused() {
    let shares = dkg(2, 3, Network::Regtest, 20);
    let wallet = WalletDescriptor::for_group(shares[0].group(), None).expect("descriptor");
    assert_eq!(
        wallet
            .derive(Branch::Receive, 0x8000_0000)
            .expect_err("hardened"),
        DescriptorError::IndexOutOfRange { index: 0x8000_0000 }
    );
}

#[test]
fn exports_parse_back_with_checksums_and_derive_the_same_addresses() {
    let shares = dkg(2, 3, Network::Testnet, 21);
    let group = shares[0].group();
    let wallet = WalletDescriptor::for_group(group, None).expect("descriptor");
    let fp = group.fingerprint();
    let multipath = wallet.to_multipath_string();
    assert!(
        multipath.starts_with(&format!("tr([{fp}]{}/<0;1>/*)#", group.xpub())),
        "{multipath}"
    );
    assert!(group.xpub().to_string().starts_with("tpub"));

    // A corrupted checksum is refused by the parser, so the checksum is really there.
    let (body, checksum) = multipath.split_once('#').expect("checksum");
    assert_eq!(checksum.len(), 8);
    let mut bad = checksum.to_string().into_bytes();
    bad[0] = if bad[0] == b'q' { b'p' } else { b'q' };
    let corrupted = format!("{body}#{}", String::from_utf8(bad).expect("ascii"));
    assert!(Descriptor::<DescriptorPublicKey>::from_str(&corrupted).is_err());

    let json: Value = serde_json::from_str(&wallet.core_import_json(&CoreImportOptions {
        timestamp: ImportTimestamp::Unix(1_700_000_000),
        range_end: 99,
        next_index: Some((5, 2)),
    }))
    .expect("json");
    let requests = json.as_array().expect("array");
    assert_eq!(requests.len(), 2);
    for (req, (branch, internal, next)) in requests
        .iter()
        .zip([(Branch::Receive, false, 5), (Branch::Change, true, 2)])
    {
        assert_eq!(req["active"], true);
        assert_eq!(req["internal"], internal);
        assert_eq!(req["timestamp"], 1_700_000_000u64);
        assert_eq!(req["range"], serde_json::json!([0, 99]));
        assert_eq!(req["next_index"], next);
        let desc = s(req, "desc");
        assert_eq!(desc, wallet.to_branch_string(branch));
        assert!(
            desc.contains(&format!("/{}/*)#", branch.number())),
            "{desc}"
        );
        // What Core would derive from the imported descriptor is what we derive.
        let parsed = Descriptor::<DescriptorPublicKey>::from_str(desc).expect("valid checksum");
        for i in [0u32, 3, 42] {
            let addr = parsed
                .at_derivation_index(i)
                .expect("derive")
                .address(Network::Testnet)
                .expect("address");
            assert_eq!(addr, wallet.address(branch, i).expect("ours"));
        }
    }
    let default = wallet.core_import_json(&CoreImportOptions::default());
    let v: Value = serde_json::from_str(&default).expect("json");
    assert_eq!(v[0]["timestamp"], "now");
    assert!(v[0].get("next_index").is_none());

    // The multipath form parses and splits into the same two descriptors.
    let parsed = Descriptor::<DescriptorPublicKey>::from_str(&multipath).expect("parse");
    let halves = parsed.into_single_descriptors().expect("split");
    assert_eq!(
        halves[0].to_string(),
        wallet.to_branch_string(Branch::Receive)
    );
    assert_eq!(
        halves[1].to_string(),
        wallet.to_branch_string(Branch::Change)
    );
}

fn backup_xprivs(count: usize, network: Network) -> Vec<Xpriv> {
    (0..count)
        .map(|i| Xpriv::new_master(network, &[0x40 + i as u8; 32]).expect("seed"))
        .collect()
}

fn backup_key(x: &Xpriv) -> DescriptorPublicKey {
    let secp = Secp256k1::new();
    let path = DerivationPath::from_str("m/48'/1'/0'/2'").expect("path");
    let account = Xpub::from_priv(&secp, &x.derive_priv(&secp, &path).expect("derive"));
    DescriptorPublicKey::from_str(&format!(
        "[{}/48'/1'/0'/2']{account}/<0;1>/*",
        x.fingerprint(&secp)
    ))
    .expect("key")
}

#[test]
fn recovery_leaf_changes_the_output_key_and_matches_an_independent_tweak() {
    let shares = dkg(3, 5, Network::Regtest, 22);
    let group = shares[0].group();
    let backups = backup_xprivs(3, Network::Regtest);
    let policy =
        RecoveryPolicy::new(2, backups.iter().map(backup_key).collect(), 144).expect("policy");
    let wallet = WalletDescriptor::for_group(group, Some(policy)).expect("descriptor");
    let text = wallet.to_multipath_string();
    assert!(text.contains(",and_v(v:multi_a(2,"), "{text}");
    assert!(text.contains("),older(144)))#"), "{text}");
    let plain = WalletDescriptor::for_group(group, None).expect("descriptor");
    let secp = Secp256k1::verification_only();
    for index in [0u32, 1, 9] {
        let d = wallet.derive(Branch::Receive, index).expect("derive");
        let root = d.merkle_root.expect("a script tree");
        // The key path commits to the recovery leaf: the address differs from the plain one.
        assert_ne!(d.address, plain.address(Branch::Receive, index).expect("a"));
        // Independent computation: tweak the internal key by the root with libsecp256k1.
        let (q, _) = d.internal_key.tap_tweak(&secp, Some(root));
        assert_eq!(q.to_x_only_public_key(), d.output_key);
        assert_eq!(
            group
                .output_key(
                    &d.relative_path(),
                    &TweakMode::ScriptRoot(root.to_byte_array())
                )
                .expect("derive"),
            d.output_key.serialize()
        );
        let (script, leaf_hash) = d.recovery_leaf.clone().expect("leaf");
        // With one leaf the root is the leaf hash.
        assert_eq!(root.to_byte_array(), leaf_hash.to_byte_array());
        // The leaf uses per-address backup keys: indexes give different leaves.
        if index > 0 {
            let first = wallet.derive(Branch::Receive, 0).expect("derive");
            assert_ne!(first.recovery_leaf.expect("leaf").0, script);
        }
    }
}

use bitcoin::hashes::Hash as _;

#[test]
fn bad_recovery_policies_are_refused() {
    let keys: Vec<_> = backup_xprivs(3, Network::Regtest)
        .iter()
        .map(backup_key)
        .collect();
    assert!(matches!(
        RecoveryPolicy::new(0, keys.clone(), 10),
        Err(DescriptorError::BadRecoveryThreshold { .. })
    ));
    assert!(matches!(
        RecoveryPolicy::new(4, keys.clone(), 10),
        Err(DescriptorError::BadRecoveryThreshold {
            threshold: 4,
            keys: 3
        })
    ));
    assert_eq!(
        RecoveryPolicy::new(2, keys.clone(), 0),
        Err(DescriptorError::ZeroTimelock)
    );
    let dup = vec![keys[0].clone(), keys[0].clone()];
    assert!(matches!(
        RecoveryPolicy::new(1, dup, 10),
        Err(DescriptorError::DuplicateKey(_))
    ));
    let hardened_wildcard =
        DescriptorPublicKey::from_str(&keys[0].to_string().replace("<0;1>/*", "0/*'"))
            .expect("parses");
    assert!(matches!(
        RecoveryPolicy::new(1, vec![hardened_wildcard], 10),
        Err(DescriptorError::BadBackupKey { .. })
    ));
    let three_way = DescriptorPublicKey::from_str(&keys[0].to_string().replace("<0;1>", "<0;1;2>"))
        .expect("parses");
    assert!(matches!(
        RecoveryPolicy::new(1, vec![three_way], 10),
        Err(DescriptorError::BadBackupKey { .. })
    ));
    // The group key itself may not double as a backup key.
    let shares = dkg(2, 3, Network::Regtest, 23);
    let group = shares[0].group();
    let own = DescriptorPublicKey::from_str(&format!("{}/<0;1>/*", group.xpub())).expect("key");
    let policy = RecoveryPolicy::new(1, vec![own], 10).expect("valid alone");
    assert!(matches!(
        WalletDescriptor::for_group(group, Some(policy)),
        Err(DescriptorError::DuplicateKey(_))
    ));
}

#[test]
fn xpub_for_the_wrong_network_is_refused() {
    let secp = Secp256k1::new();
    let xpub = Xpub::from_priv(
        &secp,
        &Xpriv::new_master(Network::Bitcoin, &[1; 32]).expect("m"),
    );
    assert!(matches!(
        WalletDescriptor::from_xpub(Network::Testnet, xpub, None, None),
        Err(DescriptorError::NetworkMismatch { .. })
    ));
}
