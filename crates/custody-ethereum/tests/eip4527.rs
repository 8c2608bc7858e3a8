//! EIP-4527: Keystone's published vectors decode and re-encode byte for byte; bad inputs
//! are refused with clear errors; a request carries a transaction to the signer and a
//! signature back.

use std::path::PathBuf;

use alloy_primitives::{hex, Address, Bytes, U256};
use custody_ethereum::eip4527::{MAX_CBOR_LEN, TAG_CRYPTO_KEYPATH, TAG_UUID};

use custody_ethereum::{
    DataType, Eip1559Fields, EthSignRequest, EthSignature, EthTransaction, KeyPath, LegacyFields,
    PathComponent, RequestError,
};
use k256::ecdsa::SigningKey;
use serde_json::Value;

fn vectors() -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../test-vectors/eip4527/keystone-ur-registry-eth.json");
    let text = std::fs::read_to_string(&path).expect("read the vector file");
    let json: Value = serde_json::from_str(&text).expect("JSON");
    json["vectors"].as_array().expect("vectors").clone()
}

fn uuid(text: &str) -> [u8; 16] {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    hex::decode(hex).expect("hex").try_into().expect("16 bytes")
}

fn opt_str(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

#[test]
fn keystone_vectors_decode_and_reencode_byte_for_byte() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 4);
    for v in vectors {
        let name = v["name"].as_str().expect("name");
        let inputs = &v["inputs"];
        let ur = v["outputs"]["ur"].as_str().expect("ur");
        let cbor = hex::decode(v["outputs"]["cbor"].as_str().expect("cbor")).expect("hex");
        match v["ur_type"].as_str().expect("type") {
            "eth-sign-request" => {
                let request = EthSignRequest::from_ur(ur).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(
                    request.request_id,
                    Some(uuid(inputs["request_id"].as_str().expect("id")))
                );
                assert_eq!(
                    hex::encode(&request.sign_data),
                    inputs["sign_data"].as_str().expect("sign data")
                );
                assert_eq!(
                    request.data_type.code(),
                    inputs["data_type"].as_u64().expect("type")
                );
                assert_eq!(request.chain_id, inputs["chain_id"].as_u64());
                assert_eq!(
                    request.derivation_path.to_string(),
                    inputs["derivation_path"].as_str().expect("path")
                );
                assert_eq!(
                    request.derivation_path.source_fingerprint,
                    inputs["source_fingerprint"]
                        .as_str()
                        .map(|fp| u32::from_str_radix(fp, 16).expect("hex fingerprint"))
                );
                assert_eq!(request.address, None);
                assert_eq!(request.origin, opt_str(&inputs["origin"]));
                // Byte for byte, both the CBOR and the UR text.
                assert_eq!(request.to_cbor(), cbor, "{name}: CBOR");
                assert_eq!(request.to_ur(), ur, "{name}: UR");
                assert_eq!(EthSignRequest::from_cbor(&cbor).expect("decodes"), request);
                // Upper case (QR alphanumeric mode) reads the same.
                assert_eq!(
                    EthSignRequest::from_ur(&ur.to_ascii_uppercase()).expect("upper case"),
                    request
                );
            }
            "eth-signature" => {
                let signature = EthSignature::from_ur(ur).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(
                    signature.request_id,
                    uuid(inputs["request_id"].as_str().expect("id"))
                );
                assert_eq!(
                    hex::encode(&signature.signature),
                    inputs["signature"].as_str().expect("signature")
                );
                assert_eq!(signature.origin, None);
                assert_eq!(signature.to_cbor(), cbor, "{name}: CBOR");
                assert_eq!(signature.to_ur(), ur, "{name}: UR");
            }
            other => panic!("unknown type {other}"),
        }
    }
}

/// Keystone's example sign-data is a legacy transaction whose EIP-155 chain id field is
/// 0 while the request says chain 1: the signer refuses to sign it.
#[test]
fn keystone_example_transaction_is_refused_for_its_zero_chain_id() {
    let v = &vectors()[0];
    let request =
        EthSignRequest::from_ur(v["outputs"]["ur"].as_str().expect("ur")).expect("decodes");
    let err = request.transaction().expect_err("chain id 0");
    assert!(err.to_string().contains("chain id 0"), "{err}");
}

fn request_cbor() -> Vec<u8> {
    let v = &vectors()[0];
    hex::decode(v["outputs"]["cbor"].as_str().expect("cbor")).expect("hex")
}

#[test]
fn malformed_requests_are_refused_with_clear_errors() {
    let good = request_cbor();
    let mut wrong_uuid_tag = good.clone();
    // a6 01 d8 25: the UUID tag 37 is at byte 3; d9 01 30 is tag 304.
    assert_eq!(TAG_CRYPTO_KEYPATH, 0x0130);
    assert_eq!(wrong_uuid_tag[3], TAG_UUID as u8);
    wrong_uuid_tag[3] = 38;
    let keypath_tag = good
        .windows(3)
        .position(|w| w == [0xd9, 0x01, 0x30])
        .expect("keypath tag");
    let mut wrong_keypath_tag = good.clone();
    wrong_keypath_tag[keypath_tag + 2] = 0x31;
    // data-type (key 3) as text instead of a uint: 03 01 -> 03 61 31 ("1") breaks
    // the length, so rebuild from fields instead.
    let mut request = EthSignRequest::from_cbor(&good).expect("decodes");
    request.origin = None;
    let base = request.to_cbor();
    let data_type_at = base
        .windows(2)
        .position(|w| w == [0x03, 0x01])
        .expect("data type entry");
    let mut text_data_type = base.clone();
    text_data_type.splice(data_type_at + 1..data_type_at + 2, [0x61, b'1']);
    let mut negative_chain = base.clone();
    let chain_at = base
        .windows(2)
        .position(|w| w == [0x04, 0x01])
        .expect("chain id entry");
    negative_chain[chain_at + 1] = 0x20; // -1
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "eth-sign-request: map"),
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            "eth-sign-request",
        ),
        (
            "trailing",
            [good.as_slice(), &[0]].concat(),
            "1 trailing bytes",
        ),
        (
            "not a map",
            hex!("8101").to_vec(),
            "expected a definite-length map, found array",
        ),
        (
            "wrong uuid tag",
            wrong_uuid_tag,
            "request-id: expected tag 37, found tag 38",
        ),
        (
            "wrong keypath tag",
            wrong_keypath_tag,
            "derivation-path: expected tag 304, found tag 305",
        ),
        (
            "data type as text",
            text_data_type,
            "data-type: expected an unsigned integer, found string",
        ),
        (
            "negative chain id",
            negative_chain,
            "chain-id: expected an unsigned integer, found i8",
        ),
        (
            "missing sign-data",
            hex!("a10301").to_vec(),
            "missing required field 2",
        ),
        ("unknown key", hex!("a10800").to_vec(), "unknown map key 8"),
        (
            "keys out of order",
            hex!("a203010301").to_vec(),
            "map key 3 repeated",
        ),
        (
            "non-minimal integer",
            {
                let mut r = request.clone();
                r.chain_id = Some(1);
                let mut bytes = r.to_cbor();
                let at = bytes
                    .windows(2)
                    .position(|w| w == [0x04, 0x01])
                    .expect("chain");
                bytes.splice(at + 1..at + 2, [0x18, 0x01]);
                bytes
            },
            "non-canonical CBOR",
        ),
        (
            "too long",
            vec![0; MAX_CBOR_LEN + 1],
            "longer than the 262144 bytes accepted",
        ),
    ];
    for (name, bytes, expect) in cases {
        let err = EthSignRequest::from_cbor(&bytes).expect_err(name);
        assert!(err.to_string().contains(expect), "{name}: {err}");
    }
}

#[test]
fn malformed_signatures_are_refused_with_clear_errors() {
    let good = hex::decode(vectors()[3]["outputs"]["cbor"].as_str().expect("cbor")).expect("hex");
    let mut short_sig = EthSignature::from_cbor(&good).expect("decodes");
    short_sig.signature.truncate(64);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            good[..good.len() - 1].to_vec(),
            "eth-signature: signature",
        ),
        (
            "missing request id",
            hex!("a1025841").iter().copied().chain([0u8; 65]).collect(),
            "missing required field 1",
        ),
        (
            "signature of 64 bytes",
            short_sig.to_cbor(),
            "64 bytes, expected r ‖ s ‖ v",
        ),
        (
            "uuid of 15 bytes",
            {
                let mut b = good.clone();
                // a2 01 d8 25 50 <16 bytes>: make the byte string 15 long and drop one byte.
                b[4] = 0x4f;
                b.remove(5);
                b
            },
            "request-id: 15 bytes, a UUID has 16",
        ),
        ("wrong UR type", Vec::new(), ""),
    ];
    for (name, bytes, expect) in cases {
        if name == "wrong UR type" {
            let request_ur = vectors()[0]["outputs"]["ur"]
                .as_str()
                .expect("ur")
                .to_owned();
            let err = EthSignature::from_ur(&request_ur).expect_err(name);
            assert_eq!(
                err.to_string(),
                "expected a ur:eth-signature, found ur:eth-sign-request"
            );
            continue;
        }
        let err = EthSignature::from_cbor(&bytes).expect_err(name);
        assert!(err.to_string().contains(expect), "{name}: {err}");
    }
    // A corrupted UR checksum is caught by the UR layer.
    let ur = vectors()[3]["outputs"]["ur"]
        .as_str()
        .expect("ur")
        .to_owned();
    let mut corrupted = ur.clone();
    corrupted.replace_range(ur.len() - 4.., "aeae");
    let err = EthSignature::from_ur(&corrupted).expect_err("bad checksum");
    assert!(err.to_string().starts_with("invalid UR"), "{err}");
}

fn eth_path() -> KeyPath {
    KeyPath {
        components: [(44, true), (60, true), (0, true), (0, false), (0, false)]
            .into_iter()
            .map(|(index, hardened)| PathComponent { index, hardened })
            .collect(),
        source_fingerprint: Some(0x1234_5678),
        depth: None,
    }
}

/// The whole trip: coordinator builds the request, the signer decodes it, shows and
/// hashes the transaction itself, signs, answers with eth-signature; the coordinator
/// attaches the signature and checks the sender.
#[test]
fn request_and_signature_round_trip_through_urs() {
    let key = SigningKey::from_bytes(&[0x31; 32].into()).expect("key");
    let sender = Address::from_private_key(&key);
    for tx in [
        EthTransaction::eip1559(Eip1559Fields {
            chain_id: 11_155_111,
            nonce: 3,
            to: Address::repeat_byte(0xab),
            value: U256::from(10u64.pow(17)),
            gas_limit: 21_000,
            max_fee_per_gas: 40_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
            input: Bytes::new(),
        })
        .expect("valid"),
        EthTransaction::legacy(LegacyFields {
            chain_id: 31_337,
            nonce: 0,
            to: Address::repeat_byte(0xcd),
            value: U256::from(1u8),
            gas_limit: 21_000,
            gas_price: 1_000_000_000,
            input: Bytes::new(),
        })
        .expect("valid"),
    ] {
        let id = [7u8; 16];
        let request = EthSignRequest::for_transaction(
            &tx,
            id,
            eth_path(),
            Some(sender),
            Some("coinport-coordinator".into()),
        );
        // Multi-part, scanned in reverse order.
        let parts = request.to_ur_parts(40).expect("parts");
        assert!(parts.len() > 1);
        let received = EthSignRequest::from_ur_parts(parts.iter().rev().map(String::as_str))
            .expect("collects");
        assert_eq!(received, request);

        // Signer side.
        received.check_address(sender).expect("our address");
        let shown = received.transaction().expect("a transaction");
        shown.ensure_same_as(&tx).expect("what was requested");
        let (sig, recid) = key
            .sign_prehash_recoverable(shown.signing_hash().as_slice())
            .expect("sign");
        let (r, s) = sig.split_bytes();
        let signed = shown
            .with_signature(
                U256::from_be_slice(&r),
                U256::from_be_slice(&s),
                recid.is_y_odd(),
            )
            .expect("valid");
        let answer = EthSignature::for_transaction(id, &signed, Some("custody-signer".into()));
        let ur = answer.to_ur();

        // Coordinator side.
        let back = EthSignature::from_ur(&ur).expect("decodes");
        back.check_answers(&request).expect("same request id");
        let attached = back.apply_to(&tx).expect("attaches");
        attached.check_sender(sender).expect("signed by the key");
        assert_eq!(attached, signed);
    }
}

#[test]
fn request_checks_refuse_mismatches() {
    let tx = EthTransaction::eip1559(Eip1559Fields {
        chain_id: 1,
        nonce: 0,
        to: Address::repeat_byte(1),
        value: U256::from(1u8),
        gas_limit: 21_000,
        max_fee_per_gas: 2,
        max_priority_fee_per_gas: 1,
        input: Bytes::new(),
    })
    .expect("valid");
    let base = EthSignRequest::for_transaction(
        &tx,
        [1; 16],
        eth_path(),
        Some(Address::repeat_byte(2)),
        None,
    );

    let err = base
        .check_address(Address::repeat_byte(3))
        .expect_err("other address");
    assert!(matches!(err, RequestError::AddressMismatch { .. }), "{err}");

    let mut wrong_chain = base.clone();
    wrong_chain.chain_id = Some(5);
    let err = wrong_chain.transaction().expect_err("chain");
    assert_eq!(
        err.to_string(),
        "the request says chain 5 but the transaction is for chain 1"
    );

    let mut wrong_type = base.clone();
    wrong_type.data_type = DataType::Transaction;
    let err = wrong_type.transaction().expect_err("type");
    assert!(
        err.to_string()
            .contains("does not match the EIP-1559 transaction"),
        "{err}"
    );

    let mut typed_data = base.clone();
    typed_data.data_type = DataType::TypedData;
    let err = typed_data.transaction().expect_err("typed data");
    assert!(err.to_string().contains("signs transactions only"), "{err}");

    let answer = EthSignature {
        request_id: [9; 16],
        signature: vec![1; 65],
        origin: None,
    };
    let err = answer.check_answers(&base).expect_err("other request");
    assert!(err.to_string().contains("not 01010101"), "{err}");
    // A signature that recovers to some other key attaches, and the sender check refuses it.
    let foreign = answer.apply_to(&tx).expect("a well-formed signature");
    let err = foreign
        .check_sender(Address::repeat_byte(2))
        .expect_err("not our key");
    assert!(err.to_string().contains("not the expected sender"), "{err}");
    let bad_v = EthSignature {
        signature: [vec![1u8; 64], vec![5]].concat(),
        ..answer
    };
    let err = bad_v.apply_to(&tx).expect_err("v = 5");
    assert!(
        err.to_string().contains("signature v 5 does not fit"),
        "{err}"
    );
}
