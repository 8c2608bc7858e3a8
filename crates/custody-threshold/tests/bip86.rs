//! BIP86 test vectors (`test-vectors/bip86/vectors.json`), plus the BIP341 output-key
//! vectors (`test-vectors/bip341/wallet-test-vectors.json`) for script-tree merkle roots.
//!
//! The chain mnemonic → seed → root → account is re-derived with the `bitcoin` crate (and a
//! BIP39 PBKDF2 written here from `hmac`/`sha2`), proving the transcription. From the account
//! xpub alone, `custody_threshold::bip32::derive_public` must give each address key, and
//! `taproot_output_key` its output key; the `bitcoin` crate's `Address::p2tr` must give the
//! published address and scriptPubKey.

use std::str::FromStr;

use bitcoin::address::KnownHrp;
use bitcoin::bip32::{ChildNumber, DerivationPath, Xpriv, Xpub};
use bitcoin::secp256k1::{Scalar, Secp256k1, XOnlyPublicKey};
use bitcoin::taproot::TapNodeHash;
use bitcoin::{Address, NetworkKind};
use custody_threshold::bip32::{derive_public, taproot_output_key, DeriveError};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha512;

const BIP86: &str = include_str!("../../../test-vectors/bip86/vectors.json");
const BIP341: &str = include_str!("../../../test-vectors/bip341/wallet-test-vectors.json");

fn str_field<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("field {key:?} is a string"))
}

fn hex32(text: &str) -> [u8; 32] {
    hex::decode(text)
        .expect("hex")
        .try_into()
        .expect("32 bytes")
}

/// BIP39 seed: PBKDF2-HMAC-SHA512(mnemonic, "mnemonic" ‖ passphrase, 2048 rounds, 64 bytes).
/// The vector's mnemonic is ASCII, so NFKD normalisation changes nothing.
fn bip39_seed(mnemonic: &str, passphrase: &str) -> [u8; 64] {
    assert!(mnemonic.is_ascii() && passphrase.is_ascii());
    let mac = Hmac::<Sha512>::new_from_slice(mnemonic.as_bytes()).expect("any key length");
    let salt = format!("mnemonic{passphrase}");
    // One output block (64 bytes = SHA-512 length), block index 1.
    let mut u = {
        let mut m = mac.clone();
        m.update(salt.as_bytes());
        m.update(&1u32.to_be_bytes());
        m.finalize().into_bytes()
    };
    let mut out = [0u8; 64];
    out.copy_from_slice(&u);
    for _ in 1..2048 {
        let mut m = mac.clone();
        m.update(&u);
        u = m.finalize().into_bytes();
        for (o, b) in out.iter_mut().zip(u.iter()) {
            *o ^= b;
        }
    }
    out
}

#[test]
fn bip86_vectors() {
    let secp = Secp256k1::new();
    let v: Value = serde_json::from_str(BIP86).expect("bip86 vectors are JSON");

    // Transcription: mnemonic -> root -> account, all re-derived.
    let seed = bip39_seed(str_field(&v, "mnemonic"), str_field(&v, "passphrase"));
    let root = Xpriv::new_master(NetworkKind::Main, &seed).expect("master");
    assert_eq!(root.to_string(), str_field(&v, "rootpriv"), "root xprv");
    assert_eq!(
        Xpub::from_priv(&secp, &root).to_string(),
        str_field(&v, "rootpub"),
        "root xpub"
    );
    let account = &v["account"];
    let account_path = DerivationPath::from_str(str_field(account, "path")).expect("path");
    let account_xprv = root.derive_priv(&secp, &account_path).expect("account");
    assert_eq!(
        account_xprv.to_string(),
        str_field(account, "xprv"),
        "account xprv"
    );
    let account_xpub = Xpub::from_str(str_field(account, "xpub")).expect("account xpub");
    assert_eq!(
        Xpub::from_priv(&secp, &account_xprv),
        account_xpub,
        "account xpub"
    );

    let addresses = v["addresses"].as_array().expect("addresses");
    let mut checked = 0;
    for a in addresses {
        let path_text = str_field(a, "path");
        let path = DerivationPath::from_str(path_text).expect("path");
        let suffix: Vec<ChildNumber> = path.as_ref()[account_path.as_ref().len()..].to_vec();
        assert_eq!(
            suffix.len(),
            2,
            "{path_text}: change/index below the account"
        );

        // The published xprv/xpub pair, re-derived from the account xprv.
        let xprv = account_xprv.derive_priv(&secp, &suffix).expect("child");
        assert_eq!(xprv.to_string(), str_field(a, "xprv"), "{path_text}: xprv");
        assert_eq!(
            Xpub::from_priv(&secp, &xprv).to_string(),
            str_field(a, "xpub"),
            "{path_text}: xpub from xprv"
        );

        // Ours, from the account xpub alone.
        let (child, tweak) = derive_public(&account_xpub, &suffix)
            .unwrap_or_else(|e| panic!("{path_text}: derive_public: {e}"));
        assert_eq!(
            child.to_string(),
            str_field(a, "xpub"),
            "{path_text}: our xpub"
        );
        let expected_key = account_xpub
            .public_key
            .add_exp_tweak(
                &secp,
                &Scalar::from_be_bytes(tweak).expect("tweak in range"),
            )
            .expect("tweak addition");
        assert_eq!(
            child.public_key, expected_key,
            "{path_text}: child = account + t·G"
        );

        let internal: [u8; 32] = child.public_key.x_only_public_key().0.serialize();
        assert_eq!(
            hex::encode(internal),
            str_field(a, "internal_key"),
            "{path_text}: internal key"
        );

        let output = taproot_output_key(&internal, None)
            .unwrap_or_else(|e| panic!("{path_text}: taproot_output_key: {e}"));
        assert_eq!(
            hex::encode(output),
            str_field(a, "output_key"),
            "{path_text}: our output key"
        );
        assert_eq!(
            format!("5120{}", hex::encode(output)),
            str_field(a, "scriptPubKey"),
            "{path_text}: scriptPubKey from our output key"
        );

        let internal_key = XOnlyPublicKey::from_slice(&internal).expect("x-only key");
        let address = Address::p2tr(&secp, internal_key, None, KnownHrp::Mainnet);
        assert_eq!(
            address.to_string(),
            str_field(a, "address"),
            "{path_text}: address"
        );
        assert_eq!(
            hex::encode(address.script_pubkey().as_bytes()),
            str_field(a, "scriptPubKey"),
            "{path_text}: bitcoin scriptPubKey"
        );
        checked += 1;
    }
    assert_eq!(checked, 3);
}

#[test]
fn derive_public_refuses_the_hardened_account_path() {
    let v: Value = serde_json::from_str(BIP86).expect("bip86 vectors are JSON");
    let root = Xpub::from_str(str_field(&v, "rootpub")).expect("root xpub");
    let path = DerivationPath::from_str(str_field(&v["account"], "path")).expect("path");
    assert!(matches!(
        derive_public(&root, path.as_ref()),
        Err(DeriveError::Hardened { index: 86 })
    ));
}

/// BIP341 `scriptPubKey` vectors: internal key and merkle root to output key, with the
/// `bitcoin` crate's address as a second opinion.
#[test]
fn taproot_output_key_matches_bip341_vectors() {
    let secp = Secp256k1::verification_only();
    let v: Value = serde_json::from_str(BIP341).expect("bip341 vectors are JSON");
    let cases = v["scriptPubKey"].as_array().expect("scriptPubKey cases");
    let mut checked = 0;
    for (i, case) in cases.iter().enumerate() {
        let internal = hex32(str_field(&case["given"], "internalPubkey"));
        let merkle_root = case["intermediary"]["merkleRoot"].as_str().map(hex32);
        let expected = str_field(&case["intermediary"], "tweakedPubkey");

        let output = taproot_output_key(&internal, merkle_root.as_ref())
            .unwrap_or_else(|e| panic!("case {i}: {e}"));
        assert_eq!(hex::encode(output), expected, "case {i}: our output key");

        let address = Address::p2tr(
            &secp,
            XOnlyPublicKey::from_slice(&internal).expect("x-only key"),
            merkle_root.map(TapNodeHash::assume_hidden),
            KnownHrp::Mainnet,
        );
        assert_eq!(
            address.to_string(),
            str_field(&case["expected"], "bip350Address"),
            "case {i}: address"
        );
        assert_eq!(
            hex::encode(address.script_pubkey().as_bytes()),
            str_field(&case["expected"], "scriptPubKey"),
            "case {i}: scriptPubKey"
        );
        checked += 1;
    }
    assert_eq!(checked, 7);
    // The key-path spending cases name the same internal keys and merkle roots once more.
    let spends = v["keyPathSpending"][0]["inputSpending"]
        .as_array()
        .expect("inputSpending");
    for (i, spend) in spends.iter().enumerate() {
        let internal = hex32(str_field(&spend["intermediary"], "internalPubkey"));
        let merkle_root = spend["given"]["merkleRoot"].as_str().map(hex32);
        let output = taproot_output_key(&internal, merkle_root.as_ref()).expect("output key");
        let index = spend["given"]["txinIndex"].as_u64().expect("txinIndex") as usize;
        let spent = str_field(
            &v["keyPathSpending"][0]["given"]["utxosSpent"][index],
            "scriptPubKey",
        );
        assert_eq!(format!("5120{}", hex::encode(output)), spent, "spend {i}");
    }
    assert_eq!(spends.len(), 7);
}

#[test]
fn taproot_output_key_rejects_a_point_off_the_curve() {
    // BIP340 test vector 5's public key: not the x coordinate of a curve point.
    let off_curve = hex32("eefdea4cdb677750a420fee807eacf21eb9898ae79b9768766e4faa04a2d4a34");
    assert_eq!(
        taproot_output_key(&off_curve, None),
        Err(DeriveError::InvalidKey)
    );
    // p + 0x30 is not a field element.
    let too_big = hex32("fffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc30");
    assert_eq!(
        taproot_output_key(&too_big, None),
        Err(DeriveError::InvalidKey)
    );
}
