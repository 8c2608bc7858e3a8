//! Transactions: known answers, signing with a k256 key and recovery with alloy, low-s
//! normalisation, tampering, summaries and the policy mapping.

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope, TxLegacy};
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{address, hex, keccak256, Address, Bytes, TxKind, U256};
use custody_ethereum::calldata::{erc20_approve, erc20_transfer};
use custody_ethereum::{
    Action, DecodeTxError, Eip1559Fields, EthTransaction, LegacyFields, PolicyMappingError,
    SignatureError, SignedEthTransaction,
};
use k256::ecdsa::SigningKey;

const ETH: u128 = 1_000_000_000_000_000_000;
const GWEI: u128 = 1_000_000_000;

fn key(byte: u8) -> SigningKey {
    SigningKey::from_bytes(&[byte; 32].into()).expect("a valid scalar")
}

fn sign(tx: &EthTransaction, key: &SigningKey) -> SignedEthTransaction {
    let hash = tx.signing_hash();
    let (sig, recid) = key
        .sign_prehash_recoverable(hash.as_slice())
        .expect("signing works");
    let (r, s) = sig.split_bytes();
    tx.with_signature(
        U256::from_be_slice(&r),
        U256::from_be_slice(&s),
        recid.is_y_odd(),
    )
    .expect("a valid signature")
}

fn transfer_fields() -> Eip1559Fields {
    Eip1559Fields {
        chain_id: 1,
        nonce: 7,
        to: address!("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
        value: U256::from(3 * ETH / 2),
        gas_limit: 21_000,
        max_fee_per_gas: 30 * GWEI,
        max_priority_fee_per_gas: 2 * GWEI,
        input: Bytes::new(),
    }
}

/// The worked example of EIP-155: a legacy transaction on chain 1 signed with the key
/// 0x4646…46; the signing payload, its hash and the signed transaction are the EIP's.
#[test]
fn eip155_example_from_the_eip_text() {
    let tx = EthTransaction::legacy(LegacyFields {
        chain_id: 1,
        nonce: 9,
        to: address!("3535353535353535353535353535353535353535"),
        value: U256::from(ETH),
        gas_limit: 21_000,
        gas_price: 20 * GWEI,
        input: Bytes::new(),
    })
    .expect("valid");
    assert_eq!(
        tx.encode_unsigned(),
        hex!("ec098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080018080")
    );
    assert_eq!(
        tx.signing_hash(),
        hex!("daf5a779ae972f972197303d7b574746c7ef83eadac0f2791ad23db92e4c8e53")
    );
    let signed = sign(&tx, &key(0x46));
    assert_eq!(
        signed.encoded(),
        hex!(
            "f86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a76400008025"
            "a028ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276"
            "a067cbe9d8997f761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83"
        )
    );
    assert_eq!(
        signed.recover_sender().expect("recovers"),
        Address::from_private_key(&key(0x46))
    );
    // The unsigned payload decodes back to the same transaction.
    assert_eq!(
        EthTransaction::decode_unsigned(&tx.encode_unsigned()).expect("decodes"),
        tx
    );
}

/// The signing hash and encodings agree with what alloy computes from its own
/// transaction types, and the signed bytes decode and recover with alloy alone.
#[test]
fn eip1559_signed_with_k256_recovers_with_alloy() {
    let fields = transfer_fields();
    let tx = EthTransaction::eip1559(fields.clone()).expect("valid");
    let alloy_tx = TxEip1559 {
        chain_id: fields.chain_id,
        nonce: fields.nonce,
        gas_limit: fields.gas_limit,
        max_fee_per_gas: fields.max_fee_per_gas,
        max_priority_fee_per_gas: fields.max_priority_fee_per_gas,
        to: TxKind::Call(fields.to),
        value: fields.value,
        access_list: Default::default(),
        input: fields.input.clone(),
    };
    assert_eq!(tx.signing_hash(), alloy_tx.signature_hash());
    assert_eq!(tx.signing_hash(), keccak256(tx.encode_unsigned()));
    assert_eq!(tx.encode_unsigned()[0], 0x02, "EIP-2718 type byte");

    let key = key(0x11);
    let sender = Address::from_private_key(&key);
    let signed = sign(&tx, &key);
    signed.check_sender(sender).expect("signed by our key");
    assert!(signed.to_hex().starts_with("0x02f8"));

    // alloy alone: decode the raw transaction, recover the signer, same hash.
    let envelope = TxEnvelope::decode_2718(&mut signed.encoded().as_slice()).expect("decodes");
    use alloy_consensus::transaction::SignerRecoverable;
    assert_eq!(envelope.recover_signer().expect("recovers"), sender);
    assert_eq!(envelope.tx_hash(), &signed.hash());
    assert_eq!(
        SignedEthTransaction::decode(&signed.encoded()).expect("decodes"),
        signed
    );

    // The wrong expected sender is named.
    let other = Address::from_private_key(&self::key(0x12));
    let err = signed.check_sender(other).expect_err("not theirs");
    assert!(matches!(err, SignatureError::WrongSender { recovered, .. } if recovered == sender));
}

/// A pinned EIP-1559 transaction: a format or hashing change shows as a diff here.
#[test]
fn eip1559_known_answer() {
    let tx = EthTransaction::eip1559(transfer_fields()).expect("valid");
    assert_eq!(
        hex::encode(tx.encode_unsigned()),
        "02f0010784773594008506fc23ac00825208945aaeb6053f3e94c9b9a09f33669435e7ef1beaed8814d1120d7b16000080c0"
    );
    let signed = sign(&tx, &key(0x11));
    let again = sign(&tx, &key(0x11));
    assert_eq!(signed, again, "RFC 6979 signing is deterministic");
    let decoded = TxEip1559::decode_unsigned_for_test(&tx.encode_unsigned());
    assert_eq!(decoded.signature_hash(), tx.signing_hash());
}

/// Helper trait: alloy's own decoder of the unsigned EIP-1559 payload.
trait DecodeUnsigned {
    fn decode_unsigned_for_test(bytes: &[u8]) -> Self;
}

impl DecodeUnsigned for TxEip1559 {
    fn decode_unsigned_for_test(bytes: &[u8]) -> Self {
        use alloy_consensus::transaction::RlpEcdsaDecodableTx;
        let mut buf = &bytes[1..];
        TxEip1559::rlp_decode(&mut buf).expect("alloy decodes it")
    }
}

#[test]
fn high_s_is_normalised_and_parity_found_for_the_sender() {
    let tx = EthTransaction::eip1559(transfer_fields()).expect("valid");
    let key = key(0x21);
    let sender = Address::from_private_key(&key);
    let low = sign(&tx, &key);
    let sig = low.signature();
    let n = U256::from_be_bytes(hex!(
        "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"
    ));
    let high = tx
        .with_signature(sig.r(), n - sig.s(), !sig.v())
        .expect("high s accepted and normalised");
    assert_eq!(high, low, "normalised to the same low-s signature");
    assert!(high.signature().s() <= n >> 1);

    let found = tx
        .with_signature_for_sender(sig.r(), n - sig.s(), sender)
        .expect("the parity is determined from the sender");
    assert_eq!(found, low);
    let err = tx
        .with_signature_for_sender(sig.r(), sig.s(), Address::repeat_byte(9))
        .expect_err("not this sender");
    assert!(err.to_string().contains("neither recovery id"), "{err}");
    let err = tx
        .with_signature(U256::ZERO, sig.s(), false)
        .expect_err("r = 0");
    assert!(err.to_string().contains("signature scalar r"), "{err}");
}

/// A signer compares the transaction in a signing request with the approved one: a
/// changed recipient, value or chain id is refused by name, and changes the hash.
#[test]
fn tampered_transactions_are_detected() {
    let requested = EthTransaction::eip1559(transfer_fields()).expect("valid");
    let cases: [(&str, Eip1559Fields); 3] = [
        (
            "recipient",
            Eip1559Fields {
                to: Address::repeat_byte(0x66),
                ..transfer_fields()
            },
        ),
        (
            "value",
            Eip1559Fields {
                value: U256::from(100 * ETH),
                ..transfer_fields()
            },
        ),
        (
            "chain id",
            Eip1559Fields {
                chain_id: 11_155_111,
                ..transfer_fields()
            },
        ),
    ];
    for (field, fields) in cases {
        let tampered = EthTransaction::eip1559(fields).expect("valid");
        let err = tampered.ensure_same_as(&requested).expect_err(field);
        assert_eq!(err.field, field);
        assert!(err.to_string().contains(field), "{err}");
        assert_ne!(tampered.signing_hash(), requested.signing_hash());
        assert_ne!(
            tampered.summary().expect("summary"),
            requested.summary().expect("summary")
        );
    }
    requested
        .ensure_same_as(&requested.clone())
        .expect("the same transaction passes");
}

#[test]
fn summary_shows_eth_amounts_fees_and_worst_case_cost() {
    let tx = EthTransaction::eip1559(transfer_fields()).expect("valid");
    let summary = tx.summary().expect("summary");
    let text = summary.to_string();
    for line in [
        "Ethereum EIP-1559 transaction",
        "chain:           1 (Ethereum mainnet)",
        "nonce:           7",
        "to:              0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "value:           1.5 ETH",
        "max fee:         30 gwei per gas",
        "priority fee:    2 gwei per gas",
        "gas limit:       21000",
        // 1.5 ETH + 21000 × 30 gwei = 1.50063 ETH
        "worst-case cost: 1.50063 ETH",
        "action:          ether transfer",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    let json = summary.to_json();
    assert_eq!(json["chain_name"], "Ethereum mainnet");
    assert_eq!(json["value_eth"], "1.5");
    assert_eq!(json["value_wei"], "1500000000000000000");
    assert_eq!(json["worst_case_cost_wei"], "1500630000000000000");
    assert_eq!(json["max_fee_per_gas_gwei"], "30");
    assert_eq!(json["needs_explicit_rule"], false);

    for (chain_id, name) in [
        (11_155_111, "Sepolia"),
        (17_000, "Holesky"),
        (31_337, "Hardhat"),
        (5, "unknown chain"),
    ] {
        let tx = EthTransaction::eip1559(Eip1559Fields {
            chain_id,
            ..transfer_fields()
        })
        .expect("valid");
        let text = tx.summary().expect("summary").to_string();
        assert!(text.contains(name), "{chain_id}: {text}");
    }
}

#[test]
fn legacy_summary_shows_the_gas_price() {
    let tx = EthTransaction::legacy(LegacyFields {
        chain_id: 31_337,
        nonce: 0,
        to: Address::repeat_byte(1),
        value: U256::from(1u8),
        gas_limit: 21_000,
        gas_price: GWEI + 1,
        input: Bytes::new(),
    })
    .expect("valid");
    let text = tx.summary().expect("summary").to_string();
    assert!(
        text.contains("gas price:       1.000000001 gwei per gas"),
        "{text}"
    );
    assert!(
        text.contains("value:           0.000000000000000001 ETH"),
        "{text}"
    );
    assert!(!text.contains("priority fee"), "{text}");
}

fn token() -> Address {
    address!("A0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48")
}

fn token_call(input: Bytes) -> EthTransaction {
    EthTransaction::eip1559(Eip1559Fields {
        to: token(),
        value: U256::ZERO,
        gas_limit: 65_000,
        input,
        ..transfer_fields()
    })
    .expect("valid")
}

#[test]
fn erc20_transfer_is_decoded_and_mapped_to_the_token_asset() {
    let recipient = address!("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");
    let tx = token_call(erc20_transfer(recipient, U256::from(250_000_000u64)));
    let summary = tx.summary().expect("summary");
    assert_eq!(
        summary.action,
        Action::Erc20Transfer {
            token: token(),
            recipient,
            amount: U256::from(250_000_000u64)
        }
    );
    let text = summary.to_string();
    assert!(text.contains("ERC-20 transfer"), "{text}");
    assert!(
        text.contains("token:         0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"),
        "{text}"
    );
    assert!(
        text.contains("amount:        250000000 (token base units)"),
        "{text}"
    );
    assert_eq!(summary.to_json()["action"]["kind"], "erc20_transfer");
    assert_eq!(summary.to_json()["action"]["amount"], "250000000");

    let withdrawal = tx.policy_withdrawal().expect("maps");
    assert_eq!(
        withdrawal.asset,
        "ERC20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
    );
    assert_eq!(withdrawal.payments.len(), 1);
    assert_eq!(
        withdrawal.payments[0].address,
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    );
    assert_eq!(withdrawal.payments[0].amount, 250_000_000);
    assert_eq!(withdrawal.total(), Some(250_000_000));
}

#[test]
fn plain_transfer_maps_to_eth() {
    let tx = EthTransaction::eip1559(transfer_fields()).expect("valid");
    let withdrawal = tx.policy_withdrawal().expect("maps");
    assert_eq!(withdrawal.asset, "ETH");
    assert_eq!(
        withdrawal.payments[0].address,
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    );
    assert_eq!(withdrawal.payments[0].amount, 3 * ETH / 2);
}

#[test]
fn approve_unknown_calls_and_ether_with_tokens_need_an_explicit_rule() {
    let approve = token_call(erc20_approve(Address::repeat_byte(0x77), U256::MAX));
    let summary = approve.summary().expect("summary");
    assert!(summary.needs_explicit_rule());
    assert!(summary
        .to_string()
        .contains("ERC-20 approve (needs an explicit policy rule)"));
    assert_eq!(summary.to_json()["needs_explicit_rule"], true);
    let err = approve
        .policy_withdrawal()
        .expect_err("approve is not a withdrawal");
    assert!(matches!(err, PolicyMappingError::NeedsExplicitRule { .. }));
    assert!(
        err.to_string()
            .contains("explicit rule for an ERC-20 approve"),
        "{err}"
    );

    let unknown = token_call(Bytes::from_static(&hex!("12345678aabbccdd")));
    let summary = unknown.summary().expect("summary");
    assert_eq!(summary.action, Action::RawCall);
    assert!(summary
        .to_string()
        .contains("calldata:        0x12345678aabbccdd"));
    assert_eq!(summary.to_json()["needs_explicit_rule"], true);
    let err = unknown.policy_withdrawal().expect_err("unknown call");
    assert!(err.to_string().contains("0x12345678aabbccdd"), "{err}");

    let both = EthTransaction::eip1559(Eip1559Fields {
        to: token(),
        value: U256::from(1u8),
        gas_limit: 65_000,
        input: erc20_transfer(Address::repeat_byte(1), U256::from(1u8)),
        ..transfer_fields()
    })
    .expect("valid");
    let err = both.policy_withdrawal().expect_err("ether and tokens");
    assert!(err.to_string().contains("also sends ether"), "{err}");

    // Malformed transfer calldata is an error, not a raw call.
    let mut bad = erc20_transfer(Address::repeat_byte(1), U256::from(1u8)).to_vec();
    bad.truncate(50);
    let err = token_call(bad.into()).summary().expect_err("malformed");
    assert!(
        err.to_string().contains("malformed ERC-20 transfer"),
        "{err}"
    );
}

#[test]
fn invalid_fields_are_refused() {
    let err = EthTransaction::eip1559(Eip1559Fields {
        chain_id: 0,
        ..transfer_fields()
    })
    .expect_err("chain 0");
    assert!(err.to_string().contains("chain id 0"), "{err}");
    let err = EthTransaction::eip1559(Eip1559Fields {
        max_priority_fee_per_gas: 31 * GWEI,
        ..transfer_fields()
    })
    .expect_err("tip above cap");
    assert!(err.to_string().contains("above the max fee"), "{err}");
    let err = EthTransaction::eip1559(Eip1559Fields {
        gas_limit: 20_999,
        ..transfer_fields()
    })
    .expect_err("gas");
    assert!(err.to_string().contains("below the 21000 gas"), "{err}");
}

#[test]
fn decoding_refuses_what_the_signer_must_not_sign() {
    let good = EthTransaction::eip1559(transfer_fields())
        .expect("valid")
        .encode_unsigned();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "empty transaction"),
        (
            "truncated",
            good[..good.len() - 3].to_vec(),
            "malformed EIP-1559",
        ),
        (
            "trailing",
            [good.as_slice(), &[0]].concat(),
            "trailing bytes",
        ),
        (
            "eip2930",
            [&[0x01u8][..], &good[1..]].concat(),
            "unsupported transaction type 0x01",
        ),
        (
            "blob",
            [&[0x03u8][..], &good[1..]].concat(),
            "unsupported transaction type 0x03",
        ),
    ];
    for (name, bytes, expect) in cases {
        let err = EthTransaction::decode_unsigned(&bytes).expect_err(name);
        assert!(err.to_string().contains(expect), "{name}: {err}");
    }

    // A pre-EIP-155 legacy transaction (six fields) is valid on every chain.
    let mut pre155 = Vec::new();
    TxLegacy {
        chain_id: None,
        nonce: 1,
        gas_price: GWEI,
        gas_limit: 21_000,
        to: TxKind::Call(Address::repeat_byte(1)),
        value: U256::from(1u8),
        input: Bytes::new(),
    }
    .encode_for_signing(&mut pre155);
    assert_eq!(
        EthTransaction::decode_unsigned(&pre155).expect_err("pre-155"),
        DecodeTxError::NoChainId
    );

    // A signed legacy transaction is not an unsigned one.
    let signed = hex!(
        "f86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a76400008025"
        "a028ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276"
        "a067cbe9d8997f761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83"
    );
    assert_eq!(
        EthTransaction::decode_unsigned(&signed).expect_err("signed"),
        DecodeTxError::NonZeroEip155Fields
    );
    let decoded = SignedEthTransaction::decode(&signed).expect("a valid signed transaction");
    assert_eq!(decoded.transaction().chain_id(), 1);
}

/// The intent digest approvers sign covers chain, recipient, value and calldata, and
/// nothing the coordinator sets at signing time (nonce, fees, gas limit).
#[test]
fn intent_digest_covers_what_moves_and_not_nonce_or_fees() {
    let base = EthTransaction::eip1559(transfer_fields()).expect("valid");
    let same_intent = EthTransaction::eip1559(Eip1559Fields {
        nonce: 99,
        gas_limit: 60_000,
        max_fee_per_gas: 80 * GWEI,
        max_priority_fee_per_gas: 3 * GWEI,
        ..transfer_fields()
    })
    .expect("valid");
    assert_eq!(base.intent_digest(), same_intent.intent_digest());
    for changed in [
        Eip1559Fields {
            chain_id: 11_155_111,
            ..transfer_fields()
        },
        Eip1559Fields {
            to: Address::repeat_byte(0x66),
            ..transfer_fields()
        },
        Eip1559Fields {
            value: U256::from(3 * ETH / 2 + 1),
            ..transfer_fields()
        },
        Eip1559Fields {
            input: Bytes::from_static(&[0xa9, 0x05, 0x9c, 0xbb]),
            ..transfer_fields()
        },
    ] {
        let tx = EthTransaction::eip1559(changed).expect("valid");
        assert_ne!(base.intent_digest(), tx.intent_digest(), "{tx:?}");
    }
    // Pinned (recomputed independently with Python's hashlib): the digest is what
    // approvers sign; a change breaks their tooling.
    assert_eq!(
        hex::encode(base.intent_digest()),
        "1ad986ee45f3d7b7189de4859c9f1dd90aae22e9510118dd245ea3b0fb5e3344"
    );
}

/// The wallet of the tests below: the sender of `transfer_fields()`-style transactions.
const OWN: Address = address!("1a642f0E3c3aF545E7AcBD38b07251B3990914F1");

fn to_self(value: U256, input: Bytes) -> EthTransaction {
    EthTransaction::eip1559(Eip1559Fields {
        to: OWN,
        value,
        input,
        ..transfer_fields()
    })
    .expect("valid")
}

#[test]
fn a_plain_transfer_to_the_wallet_itself_is_an_internal_transfer() {
    let void = to_self(U256::ZERO, Bytes::new());
    let summary = void.summary_from(OWN).expect("summary");
    assert_eq!(summary.action, Action::InternalTransfer);
    assert!(summary.is_internal_transfer());
    assert!(!summary.needs_explicit_rule());
    let text = summary.to_string();
    for line in [
        "to:              0x1a642f0E3c3aF545E7AcBD38b07251B3990914F1 (this wallet itself)",
        "action:          internal transfer: 0 ETH to this wallet itself (nonce 7)",
        // 21000 × 30 gwei
        "nothing leaves the wallet but the gas (at most 0.00063 ETH)",
        "it voids any other transaction of this wallet with nonce 7 not mined yet",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    let json = summary.to_json();
    assert_eq!(json["internal_transfer"], true);
    assert_eq!(json["action"]["kind"], "internal_transfer");
    assert_eq!(json["action"]["max_gas_cost_wei"], "630000000000000");
    assert_eq!(json["action"]["voids_nonce"], 7);

    let withdrawal = void.policy_withdrawal_from(OWN).expect("maps");
    assert_eq!(withdrawal.asset, "ETH");
    assert!(withdrawal.is_internal());
    assert_eq!(withdrawal.total(), Some(0));

    // Whatever the value: it comes back to the wallet.
    let back = to_self(U256::from(5 * ETH), Bytes::new());
    assert!(back
        .policy_withdrawal_from(OWN)
        .expect("maps")
        .is_internal());
    let text = back.summary_from(OWN).expect("summary").to_string();
    assert!(
        text.contains("internal transfer: 5 ETH to this wallet itself"),
        "{text}"
    );

    // Without knowing the wallet, it is a payment to that address, as before.
    assert_eq!(void.summary().expect("summary").action, Action::EthTransfer);
    let payment = void.policy_withdrawal().expect("maps");
    assert_eq!(payment.payments.len(), 1);
    assert_eq!(payment.payments[0].address, OWN.to_checksum(None));
    assert_eq!(
        void.summary().expect("summary").to_json()["internal_transfer"],
        false
    );
}

#[test]
fn transfers_elsewhere_and_calls_to_the_wallet_are_not_internal() {
    // Another recipient: a payment.
    let tx = EthTransaction::eip1559(transfer_fields()).expect("valid");
    let summary = tx.summary_from(OWN).expect("summary");
    assert_eq!(summary.action, Action::EthTransfer);
    assert_eq!(
        tx.policy_withdrawal_from(OWN).expect("maps"),
        tx.policy_withdrawal().expect("maps")
    );
    // Calldata to the wallet's own address: mapped as the calldata says.
    let erc20 = to_self(
        U256::ZERO,
        erc20_transfer(Address::repeat_byte(1), U256::from(1u8)),
    );
    let w = erc20.policy_withdrawal_from(OWN).expect("maps");
    assert!(!w.is_internal());
    assert_eq!(w.asset, custody_ethereum::erc20_asset(OWN));
    let raw = to_self(U256::ZERO, Bytes::from_static(&hex!("12345678")));
    assert_eq!(
        raw.summary_from(OWN).expect("summary").action,
        Action::RawCall
    );
    assert!(matches!(
        raw.policy_withdrawal_from(OWN),
        Err(PolicyMappingError::NeedsExplicitRule { .. })
    ));
}
