//! BIP341 wallet test vectors (`test-vectors/bip341/wallet-test-vectors.json`) through this
//! crate's code paths: the address/output-key computation, the key-path sighash the signer
//! recomputes, the tweak modes the threshold layer signs with, and consensus verification.

use bitcoin::consensus::encode::deserialize;
use bitcoin::hashes::Hash;
use bitcoin::key::{Keypair, TapTweak};
use bitcoin::secp256k1::{schnorr, Message, Secp256k1, SecretKey, XOnlyPublicKey};
use bitcoin::sighash::TapSighashType;
use bitcoin::taproot::TapNodeHash;
use bitcoin::{Amount, Network, ScriptBuf, Transaction, TxOut};
use custody_bitcoin::{key_spend_sighash, taproot_address};
use custody_threshold::TweakMode;
use serde_json::Value;

const BIP341: &str = include_str!("../../../test-vectors/bip341/wallet-test-vectors.json");

fn hex32(v: &Value) -> [u8; 32] {
    hex::decode(v.as_str().expect("hex string"))
        .expect("hex")
        .try_into()
        .expect("32 bytes")
}

fn root(v: &Value) -> Option<TapNodeHash> {
    (!v.is_null()).then(|| TapNodeHash::from_byte_array(hex32(v)))
}

fn tweak_mode(root: Option<TapNodeHash>) -> TweakMode {
    match root {
        None => TweakMode::KeyPath,
        Some(r) => TweakMode::ScriptRoot(r.to_byte_array()),
    }
}

/// The output key the threshold layer signs for with `mode`.
fn threshold_output_key(internal: &XOnlyPublicKey, mode: TweakMode) -> [u8; 32] {
    let root = match mode {
        TweakMode::ScriptRoot(r) => Some(r),
        _ => None,
    };
    custody_threshold::bip32::taproot_output_key(&internal.serialize(), root.as_ref())
        .expect("valid key")
}

#[test]
fn script_pubkey_vectors_give_the_published_output_keys_and_addresses() {
    let v: Value = serde_json::from_str(BIP341).expect("json");
    let cases = v["scriptPubKey"].as_array().expect("array");
    assert_eq!(cases.len(), 7);
    for (k, case) in cases.iter().enumerate() {
        let internal =
            XOnlyPublicKey::from_slice(&hex32(&case["given"]["internalPubkey"])).expect("key");
        let merkle_root = root(&case["intermediary"]["merkleRoot"]);
        assert_eq!(
            merkle_root.is_none(),
            case["given"]["scriptTree"].is_null(),
            "case {k}"
        );
        let address = taproot_address(internal, merkle_root, Network::Bitcoin);
        let expected = &case["expected"];
        assert_eq!(
            address.to_string(),
            expected["bip350Address"].as_str().expect("address"),
            "case {k}"
        );
        assert_eq!(
            address.script_pubkey().to_hex_string(),
            expected["scriptPubKey"].as_str().expect("hex"),
            "case {k}"
        );
        assert_eq!(
            threshold_output_key(&internal, tweak_mode(merkle_root)),
            hex32(&case["intermediary"]["tweakedPubkey"]),
            "case {k}: the key the threshold layer signs for"
        );
    }
}

#[test]
fn key_path_spending_vectors_give_the_published_sighashes_and_signatures_verify() {
    let v: Value = serde_json::from_str(BIP341).expect("json");
    let case = &v["keyPathSpending"][0];
    let tx: Transaction = deserialize(
        &hex::decode(case["given"]["rawUnsignedTx"].as_str().expect("hex")).expect("hex"),
    )
    .expect("tx");
    let spent: Vec<TxOut> = case["given"]["utxosSpent"]
        .as_array()
        .expect("array")
        .iter()
        .map(|u| TxOut {
            value: Amount::from_sat(u["amountSats"].as_u64().expect("amount")),
            script_pubkey: ScriptBuf::from_hex(u["scriptPubKey"].as_str().expect("hex"))
                .expect("script"),
        })
        .collect();
    let secp = Secp256k1::new();
    let inputs = case["inputSpending"].as_array().expect("array");
    assert_eq!(inputs.len(), 7);
    let mut seen_types = Vec::new();
    for input in inputs {
        let given = &input["given"];
        let index = given["txinIndex"].as_u64().expect("index") as usize;
        let hash_type = TapSighashType::from_consensus_u8(
            u8::try_from(given["hashType"].as_u64().expect("type")).expect("u8"),
        )
        .expect("valid type");
        seen_types.push(hash_type);
        let sighash = key_spend_sighash(&tx, &spent, index, hash_type).expect("sighash");
        assert_eq!(
            sighash,
            hex32(&input["intermediary"]["sigHash"]),
            "input {index}"
        );

        let secret = SecretKey::from_slice(&hex32(&given["internalPrivkey"])).expect("key");
        let internal = Keypair::from_secret_key(&secp, &secret)
            .x_only_public_key()
            .0;
        assert_eq!(
            internal.serialize(),
            hex32(&input["intermediary"]["internalPubkey"])
        );
        let merkle_root = root(&given["merkleRoot"]);
        assert_eq!(
            taproot_address(internal, merkle_root, Network::Bitcoin).script_pubkey(),
            spent[index].script_pubkey,
            "input {index}: the spent output is the tweaked internal key"
        );
        let output_key = threshold_output_key(&internal, tweak_mode(merkle_root));
        let (tweaked, _) = internal.tap_tweak(&secp, merkle_root);
        assert_eq!(output_key, tweaked.to_x_only_public_key().serialize());

        // The published witness signature verifies, under that key, for the sighash we
        // computed (and not for another input's).
        let witness =
            hex::decode(input["expected"]["witness"][0].as_str().expect("hex")).expect("hex");
        let sig = schnorr::Signature::from_slice(&witness[..64]).expect("signature");
        let key = XOnlyPublicKey::from_slice(&output_key).expect("key");
        secp.verify_schnorr(&sig, &Message::from_digest(sighash), &key)
            .expect("the published signature verifies for our sighash");
        let mut other = sighash;
        other[0] ^= 1;
        assert!(secp
            .verify_schnorr(&sig, &Message::from_digest(other), &key)
            .is_err());
        // A non-default hash type is appended to the signature.
        assert_eq!(
            witness.len(),
            if hash_type == TapSighashType::Default {
                64
            } else {
                65
            }
        );
    }
    assert!(seen_types.contains(&TapSighashType::Default));
}
