//! The worked example of `docs/formats/psbt-fields.md`, pinned byte for byte: a 1-input
//! withdrawal from a 2-of-3 wallet carrying a CoinPort signing request and the shares of
//! signers 1 and 3. Any change to the PSBT building, the proprietary fields or the threshold
//! encodings shows up as a diff in `tests/vectors/psbt-fields-example.json`, and the
//! document must quote the pinned bytes.
//!
//! Regenerate after an intended change with
//! `COINPORT_BLESS=1 cargo test -p custody-bitcoin --test pinned`, review the diff and update
//! the document.

mod common;

use bitcoin::psbt::raw::ProprietaryKey;
use bitcoin::{Amount, FeeRate, Network};
use common::*;
use custody_bitcoin::fields::{request_key, shares_key};
use custody_bitcoin::{
    absorb_response, aggregate_psbt, build_psbt, extract_verified, finalize_psbt,
    request_signatures, sign_psbt, Branch, BuildOptions, InspectPolicy, Payment, WalletDescriptor,
};
use custody_threshold::generate_with_dealer;
use serde_json::{json, Value};

const PINNED: &str = "tests/vectors/psbt-fields-example.json";
const DOC: &str = include_str!("../../../docs/formats/psbt-fields.md");

/// The serialized key (`<len><0xFC><compact len><prefix><subtype><key data>`) and value
/// (`<len><value>`) of one proprietary entry, as they appear in the PSBT.
fn entry_hex(key: &ProprietaryKey, value: &[u8]) -> (String, String) {
    use bitcoin::consensus::encode::{serialize, VarInt};
    let mut k = vec![0xfc];
    k.extend(serialize(&VarInt(key.prefix.len() as u64)));
    k.extend(&key.prefix);
    k.push(key.subtype);
    k.extend(&key.key);
    let mut key_bytes = serialize(&VarInt(k.len() as u64));
    key_bytes.extend(k);
    let mut value_bytes = serialize(&VarInt(value.len() as u64));
    value_bytes.extend(value);
    (hex::encode(key_bytes), hex::encode(value_bytes))
}

fn example() -> Value {
    let mut r = rng(2024);
    let (group, shares) = generate_with_dealer(Network::Regtest, 2, 3, &mut r).expect("dealer");
    let wallet = WalletDescriptor::for_group(&group, None).expect("descriptor");
    let (_tx, utxos) = fund(&wallet, &[(Branch::Receive, 0, 100_000)], 1);
    let payment = Payment {
        address: external_address(Network::Regtest, 3),
        amount: Amount::from_sat(60_000),
    };
    let mut psbt = build_psbt(
        &wallet,
        &utxos,
        &[payment],
        &BuildOptions::new(FeeRate::from_sat_per_vb_u32(2), 0),
    )
    .expect("build");
    let unsigned = psbt.serialize();
    let policy = InspectPolicy::default();
    let mut devs = devices(shares, 2025);
    let mut pool = pool(&group, &mut devs, 1);
    request_signatures(
        &wallet,
        &group,
        &mut psbt,
        &[1, 3],
        &mut pool,
        [0xc5; 16],
        &policy,
    )
    .expect("request");
    let request_psbt = psbt.serialize();
    for d in devs.iter_mut().filter(|d| d.share.index() != 2) {
        let mut received = through_air_gap(&psbt);
        sign_psbt(
            &wallet,
            &d.share,
            &d.seed,
            &mut d.store,
            &mut received,
            &policy,
        )
        .expect("sign");
        absorb_response(&mut psbt, &received).expect("absorb");
    }
    let answered = psbt.serialize();
    let (request_key_hex, request_value_hex) =
        entry_hex(&request_key(), &psbt.proprietary[&request_key()]);
    let shares: Vec<Value> = [1u16, 3]
        .iter()
        .map(|i| {
            let (k, v) = entry_hex(&shares_key(*i), &psbt.proprietary[&shares_key(*i)]);
            json!({"signer": i, "key": k, "value": v})
        })
        .collect();
    aggregate_psbt(&wallet, &group, &mut psbt, &policy).expect("aggregate");
    finalize_psbt(&mut psbt).expect("finalize");
    let tx = extract_verified(&psbt).expect("consensus");
    json!({
        "wallet": wallet.to_multipath_string(),
        "unsigned_psbt": hex::encode(unsigned),
        "request_psbt": hex::encode(request_psbt),
        "answered_psbt": hex::encode(answered),
        "request_field": {"key": request_key_hex, "value": request_value_hex},
        "shares_fields": shares,
        "signed_tx": bitcoin::consensus::encode::serialize_hex(&tx),
    })
}

#[test]
fn psbt_fields_example_is_pinned_and_documented() {
    let ours = example();
    let text = serde_json::to_string_pretty(&ours).expect("json") + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(PINNED);
    if std::env::var("COINPORT_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &text).expect("write pinned vector");
    }
    let pinned = std::fs::read_to_string(&path).expect("pinned vector exists");
    assert_eq!(
        text, pinned,
        "the example changed; if intended, re-bless and update the document"
    );
    // The document quotes the pinned fields.
    let fields = [
        &ours["request_field"]["key"],
        &ours["request_field"]["value"],
        &ours["shares_fields"][0]["key"],
        &ours["shares_fields"][0]["value"],
        &ours["shares_fields"][1]["key"],
    ];
    let doc: String = DOC.split_whitespace().collect();
    for f in fields {
        let hex = f.as_str().expect("hex");
        assert!(
            doc.contains(hex),
            "docs/formats/psbt-fields.md quotes {hex}"
        );
    }
}
