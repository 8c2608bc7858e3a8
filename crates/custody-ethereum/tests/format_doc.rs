//! The worked examples of `docs/formats/ethereum.md` are real: the hex and UR text there is
//! what this crate produces for the example transaction, request and signature.

use std::path::PathBuf;

use alloy_primitives::{address, Address, Bytes, U256};
use custody_ethereum::{
    Eip1559Fields, EthSignRequest, EthSignature, EthTransaction, KeyPath, PathComponent,
};
use k256::ecdsa::SigningKey;

fn doc() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/formats/ethereum.md");
    std::fs::read_to_string(path).expect("read docs/formats/ethereum.md")
}

/// Hex in lines of 32 bytes, as the doc shows it.
fn wrapped(bytes: &[u8]) -> String {
    bytes
        .chunks(32)
        .map(alloy_primitives::hex::encode)
        .collect::<Vec<_>>()
        .join("\n")
}

fn example() -> (EthTransaction, EthSignRequest, EthSignature, Address) {
    let tx = EthTransaction::eip1559(Eip1559Fields {
        chain_id: 11_155_111,
        nonce: 0,
        to: address!("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
        value: U256::from(10u64.pow(16)),
        gas_limit: 21_000,
        max_fee_per_gas: 20_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        input: Bytes::new(),
    })
    .expect("valid");
    let key = SigningKey::from_bytes(&[0x01; 32].into()).expect("key");
    let sender = Address::from_private_key(&key);
    let path = KeyPath {
        components: [(44, true), (60, true), (0, true), (0, false), (0, false)]
            .into_iter()
            .map(|(index, hardened)| PathComponent { index, hardened })
            .collect(),
        source_fingerprint: Some(0x1234_5678),
        depth: None,
    };
    let id = [
        0x9b, 0x1d, 0xeb, 0x4d, 0x3b, 0x7d, 0x4b, 0xad, 0x9b, 0xdd, 0x2b, 0x0d, 0x7b, 0x3d, 0xcb,
        0x6d,
    ];
    let request =
        EthSignRequest::for_transaction(&tx, id, path, Some(sender), Some("coinport".into()));
    let (sig, recid) = key
        .sign_prehash_recoverable(tx.signing_hash().as_slice())
        .expect("sign");
    let (r, s) = sig.split_bytes();
    let signed = tx
        .with_signature(
            U256::from_be_slice(&r),
            U256::from_be_slice(&s),
            recid.is_y_odd(),
        )
        .expect("valid");
    let answer = EthSignature::for_transaction(id, &signed, None);
    (tx, request, answer, sender)
}

/// The replacement that voids `tx`: the same nonce and fees, 0 ETH to the wallet itself.
fn void_of(tx: &EthTransaction, wallet: Address) -> EthTransaction {
    EthTransaction::eip1559(Eip1559Fields {
        chain_id: tx.chain_id(),
        nonce: tx.nonce(),
        to: wallet,
        value: U256::ZERO,
        gas_limit: 21_000,
        max_fee_per_gas: 20_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        input: Bytes::new(),
    })
    .expect("valid")
}

#[test]
fn worked_examples_are_real_encodings() {
    let (tx, request, answer, sender) = example();
    let signed = answer.apply_to(&tx).expect("attaches");
    signed.check_sender(sender).expect("our key");
    let doc = doc();
    let expected = [
        ("unsigned transaction", wrapped(&tx.encode_unsigned())),
        ("signing hash", tx.signing_hash().to_string()),
        ("sender", sender.to_checksum(None)),
        ("eth-sign-request CBOR", wrapped(&request.to_cbor())),
        ("eth-sign-request UR", request.to_ur().to_ascii_uppercase()),
        ("eth-signature CBOR", wrapped(&answer.to_cbor())),
        ("eth-signature UR", answer.to_ur().to_ascii_uppercase()),
        ("signed transaction", signed.to_hex()),
        ("summary", tx.summary().expect("summary").to_string()),
        (
            "internal transfer summary",
            void_of(&tx, sender)
                .summary_from(sender)
                .expect("summary")
                .to_string(),
        ),
    ];
    let missing: Vec<String> = expected
        .iter()
        .filter(|(_, text)| !doc.contains(text.as_str()))
        .map(|(name, text)| format!("--- {name}:\n{text}"))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/formats/ethereum.md lacks these worked examples (or they changed):\n{}",
        missing.join("\n")
    );
}
