//! Regenerates the committed corpus and negative vectors of the `custody-ethereum` targets
//! (`eth_sign_request`, `eth_signature`, `eth_transaction`, `eth_calldata`) from fixed
//! values and Keystone's published EIP-4527 vectors (`test-vectors/eip4527/`).
//!
//! Run by hand after a format change:
//! `cargo test -p custody-fuzz --test generate_ethereum_corpus -- --ignored`.
//!
//! Each negative vector is checked against its decoder before it is written. The size
//! limits are tested in `crates/custody-ethereum` instead: an input over them would break
//! the corpus's 4 KB seed size.

use std::path::PathBuf;

use custody_ethereum::calldata::{erc20_approve, erc20_transfer};
use custody_ethereum::{
    Address, Bytes, Eip1559Fields, EthSignRequest, EthSignature, EthTransaction, KeyPath,
    LegacyFields, PathComponent, U256,
};

const TYPES: [&str; 4] = [
    "eth_sign_request",
    "eth_signature",
    "eth_transaction",
    "eth_calldata",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn keystone(index: usize) -> Vec<u8> {
    let text = std::fs::read_to_string(
        root().join("../test-vectors/eip4527/keystone-ur-registry-eth.json"),
    )
    .expect("read Keystone vectors");
    let json: serde_json_lite::Value = serde_json_lite::parse(&text);
    hex::decode(json.cbor(index)).expect("hex")
}

/// A tiny reader for the one field needed from the vector file, so the fuzz package
/// needs no JSON dependency.
mod serde_json_lite {
    pub struct Value(Vec<String>);
    pub fn parse(text: &str) -> Value {
        Value(
            text.lines()
                .filter_map(|l| l.trim().strip_prefix("\"cbor\": \""))
                .map(|l| l.trim_end_matches('"').to_owned())
                .collect(),
        )
    }
    impl Value {
        pub fn cbor(&self, index: usize) -> &str {
            &self.0[index]
        }
    }
}

fn eip1559(input: Bytes, to: Address, value: u64, gas: u64) -> EthTransaction {
    EthTransaction::eip1559(Eip1559Fields {
        chain_id: 1,
        nonce: 7,
        to,
        value: U256::from(value),
        gas_limit: gas,
        max_fee_per_gas: 30_000_000_000,
        max_priority_fee_per_gas: 2_000_000_000,
        input,
    })
    .expect("valid")
}

fn transfer() -> EthTransaction {
    eip1559(
        Bytes::new(),
        Address::repeat_byte(0x5a),
        1_500_000_000_000_000_000,
        21_000,
    )
}

fn legacy() -> EthTransaction {
    EthTransaction::legacy(LegacyFields {
        chain_id: 1,
        nonce: 9,
        to: Address::repeat_byte(0x35),
        value: U256::from(1_000_000_000_000_000_000u64),
        gas_limit: 21_000,
        gas_price: 20_000_000_000,
        input: Bytes::new(),
    })
    .expect("valid")
}

fn token() -> Address {
    Address::repeat_byte(0xa0)
}

fn path() -> KeyPath {
    KeyPath {
        components: [(44, true), (60, true), (0, true), (0, false), (0, false)]
            .into_iter()
            .map(|(index, hardened)| PathComponent { index, hardened })
            .collect(),
        source_fingerprint: Some(0x1234_5678),
        depth: Some(5),
    }
}

fn request(tx: &EthTransaction) -> EthSignRequest {
    EthSignRequest::for_transaction(
        tx,
        [0x42; 16],
        path(),
        Some(Address::repeat_byte(0x77)),
        Some("coinport".into()),
    )
}

/// A fixed signature for the EIP-1559 and legacy answers (r ‖ s ‖ v); decoding does not
/// verify it.
fn signature(v: &[u8]) -> Vec<u8> {
    [vec![0x11; 32], vec![0x22; 32], v.to_vec()].concat()
}

fn find(bytes: &[u8], pattern: &[u8]) -> usize {
    bytes
        .windows(pattern.len())
        .position(|w| w == pattern)
        .unwrap_or_else(|| panic!("pattern {pattern:02x?} not found"))
}

fn patch(bytes: &[u8], at: usize, new: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[at..at + new.len()].copy_from_slice(new);
    out
}

fn splice(bytes: &[u8], range: std::ops::Range<usize>, new: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out.splice(range, new.iter().copied());
    out
}

fn write_seed(target: &str, name: &str, bytes: &[u8]) {
    let dir = root().join("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

#[derive(Default)]
struct Vectors(Vec<(String, String, String, String, Vec<u8>)>);

impl Vectors {
    fn add(&mut self, ty: &str, failure: &str, expect: &str, comment: &str, bytes: Vec<u8>) {
        match custody_fuzz::decode(ty, &bytes).expect("an Ethereum decoder") {
            Ok(()) => panic!("{ty}-{failure}: the decoder accepted it"),
            Err(e) => assert!(
                e.contains(expect),
                "{ty}-{failure}: error {e:?} does not contain {expect:?}"
            ),
        }
        self.0.push((
            ty.into(),
            failure.into(),
            expect.into(),
            comment.into(),
            bytes,
        ));
    }

    fn write(&self) {
        let dir = root().join("../test-vectors/negative");
        for entry in std::fs::read_dir(&dir).expect("read vector dir") {
            let path = entry.expect("dir entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            if TYPES.iter().any(|t| name.starts_with(&format!("{t}-"))) {
                std::fs::remove_file(&path).expect("remove old vector");
            }
        }
        for (ty, failure, expect, comment, bytes) in &self.0 {
            let hex: Vec<String> = bytes.chunks(32).map(hex::encode).collect();
            std::fs::write(
                dir.join(format!("{ty}-{failure}")),
                format!(
                    "type: {ty}\nexpect: {expect}\ncomment: {comment}\n\n{}\n",
                    hex.join("\n")
                ),
            )
            .expect("write vector");
            write_seed(ty, &format!("neg-{failure}"), bytes);
        }
    }
}

fn sign_request_vectors(v: &mut Vectors) {
    const T: &str = "eth_sign_request";
    let good = request(&transfer()).to_cbor();
    v.add(
        T,
        "truncated",
        "eth-sign-request",
        "the last 10 bytes are missing",
        good[..good.len() - 10].to_vec(),
    );
    v.add(
        T,
        "trailing_bytes",
        "1 trailing bytes after the CBOR item",
        "a zero byte appended",
        [good.as_slice(), &[0]].concat(),
    );
    v.add(
        T,
        "not_a_map",
        "expected a definite-length map, found array",
        "a CBOR array [1]",
        vec![0x81, 0x01],
    );
    v.add(
        T,
        "indefinite_map",
        "expected a definite-length map, found indefinite map",
        "the map header replaced by an indefinite-length map (bf ... ff)",
        [vec![0xbf], good[1..].to_vec(), vec![0xff]].concat(),
    );
    let uuid_tag = find(&good, &[0x01, 0xd8, 0x25]);
    v.add(
        T,
        "wrong_uuid_tag",
        "request-id: expected tag 37, found tag 38",
        "request-id tagged 38 instead of 37 (UUID)",
        patch(&good, uuid_tag + 2, &[0x26]),
    );
    let keypath_tag = find(&good, &[0x05, 0xd9, 0x01, 0x30]);
    v.add(
        T,
        "wrong_keypath_tag",
        "derivation-path: expected tag 304, found tag 305",
        "derivation-path tagged 305 instead of 304 (crypto-keypath)",
        patch(&good, keypath_tag + 3, &[0x31]),
    );
    let data_type = find(&good, &[0x03, 0x04, 0x04]);
    v.add(
        T,
        "data_type_as_text",
        "data-type: expected an unsigned integer, found string",
        "data-type 4 written as the text \"4\"",
        splice(&good, data_type + 1..data_type + 2, &[0x61, b'4']),
    );
    v.add(
        T,
        "unknown_data_type",
        "unknown data type 9 (1 to 4)",
        "data-type 9",
        patch(&good, data_type + 1, &[0x09]),
    );
    v.add(
        T,
        "negative_chain_id",
        "chain-id: expected an unsigned integer, found i8",
        "chain-id -1",
        patch(&good, data_type + 3, &[0x20]),
    );
    v.add(
        T,
        "non_minimal_integer",
        "non-canonical CBOR",
        "chain-id 1 written in two bytes (18 01)",
        splice(&good, data_type + 3..data_type + 4, &[0x18, 0x01]),
    );
    v.add(
        T,
        "missing_sign_data",
        "missing required field 2 (sign-data)",
        "a map holding only data-type",
        vec![0xa1, 0x03, 0x04],
    );
    v.add(
        T,
        "missing_derivation_path",
        "missing required field 5 (derivation-path)",
        "sign-data and data-type only",
        vec![0xa2, 0x02, 0x41, 0x00, 0x03, 0x04],
    );
    v.add(
        T,
        "unknown_key",
        "unknown map key 8",
        "key 8, which EIP-4527 does not define",
        vec![0xa1, 0x08, 0x00],
    );
    v.add(
        T,
        "keys_out_of_order",
        "map key 3 repeated or out of ascending order",
        "data-type given twice",
        vec![0xa2, 0x03, 0x04, 0x03, 0x04],
    );
    let address = find(&good, &[0x06, 0x54]);
    v.add(
        T,
        "address_wrong_length",
        "address: 19 bytes, expected 20",
        "a 19-byte address",
        splice(&good, address + 1..address + 3, &[0x53]),
    );
    let sign_data = find(&good, &[0x02, 0x58]);
    v.add(
        T,
        "sign_data_as_text",
        "sign-data: expected a definite-length byte string, found string",
        "sign-data as a text string (major type 3)",
        patch(&good, sign_data + 1, &[0x78]),
    );
    let components = find(&good, &[0x01, 0x8a]);
    v.add(
        T,
        "keypath_odd_components",
        "components are (index, hardened) pairs",
        "a path array of 9 items",
        patch(&good, components + 1, &[0x89]),
    );
    v.add(
        T,
        "keypath_index_not_uint31",
        "child index 2147483648 is not below 2^31",
        "first index 0x80000000",
        splice(
            &good,
            components + 2..components + 4,
            &[0x1a, 0x80, 0x00, 0x00, 0x00],
        ),
    );
    let request_id = find(&good, &[0xd8, 0x25, 0x50]);
    v.add(
        T,
        "uuid_wrong_length",
        "request-id: 15 bytes, a UUID has 16",
        "a 15-byte request id",
        splice(&good, request_id + 2..request_id + 4, &[0x4f]),
    );
    let origin = find(&good, b"coinport");
    v.add(
        T,
        "origin_not_utf8",
        "origin",
        "origin with an invalid UTF-8 byte",
        patch(&good, origin, &[0xff]),
    );
}

fn signature_vectors(v: &mut Vectors) {
    const T: &str = "eth_signature";
    let good = EthSignature {
        request_id: [0x42; 16],
        signature: signature(&[1]),
        origin: Some("custody-signer".into()),
    }
    .to_cbor();
    v.add(
        T,
        "truncated",
        "eth-signature",
        "the last 10 bytes are missing",
        good[..good.len() - 10].to_vec(),
    );
    v.add(
        T,
        "trailing_bytes",
        "1 trailing bytes after the CBOR item",
        "a zero byte appended",
        [good.as_slice(), &[0]].concat(),
    );
    v.add(
        T,
        "wrong_uuid_tag",
        "request-id: expected tag 37, found tag 38",
        "request-id tagged 38",
        patch(&good, 3, &[0x26]),
    );
    v.add(
        T,
        "missing_request_id",
        "missing required field 1 (request-id)",
        "signature only",
        [vec![0xa1, 0x02, 0x58, 0x41], signature(&[1])].concat(),
    );
    let sig = find(&good, &[0x02, 0x58, 0x41]);
    v.add(
        T,
        "signature_too_short",
        "64 bytes, expected r ‖ s ‖ v (65 to 72)",
        "r and s without v",
        splice(
            &good,
            sig + 1..sig + 3 + 65,
            &[&[0x58, 0x40][..], &signature(&[])].concat(),
        ),
    );
    v.add(
        T,
        "signature_as_array",
        "signature: expected a definite-length byte string, found array",
        "signature header replaced by an empty array",
        splice(&good, sig + 1..sig + 3 + 65, &[0x80]),
    );
    let origin = find(&good, &[0x03, 0x6e]);
    v.add(
        T,
        "origin_as_bytes",
        "origin: expected a definite-length text string, found bytes",
        "origin as a byte string",
        patch(&good, origin + 1, &[0x4e]),
    );
    v.add(
        T,
        "unknown_key",
        "unknown map key 4",
        "key 4 after the origin",
        {
            let mut b = patch(&good, 0, &[0xa4]);
            b.extend_from_slice(&[0x04, 0x00]);
            b
        },
    );
}

fn transaction_vectors(v: &mut Vectors) {
    const T: &str = "eth_transaction";
    let good = transfer().encode_unsigned();
    // 02 f0 01 07 84 77359400 85 06fc23ac00 82 5208 94 <20> 88 <8> 80 c0
    assert_eq!(&good[..4], &[0x02, 0xf0, 0x01, 0x07]);
    v.add(T, "empty", "empty transaction", "no bytes", Vec::new());
    v.add(
        T,
        "truncated",
        "malformed EIP-1559 transaction RLP",
        "the last 10 bytes are missing",
        good[..good.len() - 10].to_vec(),
    );
    v.add(
        T,
        "trailing_bytes",
        "1 trailing bytes after the transaction",
        "a zero byte appended",
        [good.as_slice(), &[0]].concat(),
    );
    v.add(
        T,
        "eip2930_type",
        "unsupported transaction type 0x01",
        "type byte 0x01 (EIP-2930)",
        patch(&good, 0, &[0x01]),
    );
    v.add(
        T,
        "blob_type",
        "unsupported transaction type 0x03",
        "type byte 0x03 (EIP-4844)",
        patch(&good, 0, &[0x03]),
    );
    v.add(
        T,
        "zero_chain_id",
        "chain id 0 is not a chain",
        "chain id 0",
        patch(&good, 2, &[0x80]),
    );
    v.add(
        T,
        "priority_above_max_fee",
        "max priority fee 30000000000 wei per gas is above the max fee 2000000000",
        "priority fee and max fee swapped",
        splice(
            &good,
            4..15,
            &[
                0x85, 0x06, 0xfc, 0x23, 0xac, 0x00, 0x84, 0x77, 0x35, 0x94, 0x00,
            ],
        ),
    );
    v.add(
        T,
        "gas_limit_too_low",
        "gas limit 20999 is below the 21000 gas",
        "gas limit 20999",
        patch(&good, 15, &[0x82, 0x52, 0x07]),
    );
    v.add(
        T,
        "non_canonical_integer",
        "malformed EIP-1559 transaction RLP",
        "nonce 7 written as a one-byte string (81 07)",
        splice(&patch(&good, 1, &[0xf1]), 3..4, &[0x81, 0x07]),
    );
    v.add(
        T,
        "payload_length_short",
        "malformed EIP-1559 transaction RLP",
        "list header one byte short of the fields",
        patch(&good, 1, &[0xef]),
    );
    let legacy = legacy().encode_unsigned();
    // ec 09 85 04a817c800 82 5208 94 <20> 88 <8> 80 01 80 80
    v.add(
        T,
        "pre_eip155_legacy",
        "legacy transaction without an EIP-155 chain id",
        "six fields, no chain id",
        splice(
            &patch(&legacy, 0, &[0xe9]),
            legacy.len() - 3..legacy.len(),
            &[],
        ),
    );
    v.add(T, "signed_legacy", "the EIP-155 fields after the chain id must be 0 and 0", "the signed transaction of EIP-155's example", hex::decode("f86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a76400008025a028ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276a067cbe9d8997f761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83").expect("hex"));
    v.add(
        T,
        "legacy_too_few_fields",
        "malformed legacy transaction RLP",
        "a legacy list holding only the nonce",
        vec![0xc1, 0x80],
    );
}

fn calldata_vectors(v: &mut Vectors) {
    const T: &str = "eth_calldata";
    let transfer = erc20_transfer(Address::repeat_byte(0x5a), U256::from(1_000_000u32)).to_vec();
    let approve = erc20_approve(Address::repeat_byte(0x5a), U256::MAX).to_vec();
    v.add(
        T,
        "transfer_truncated",
        "malformed ERC-20 transfer(address,uint256) calldata",
        "the last 10 bytes are missing",
        transfer[..transfer.len() - 10].to_vec(),
    );
    v.add(
        T,
        "transfer_trailing_byte",
        "69 bytes where the call takes exactly 68",
        "a zero byte appended",
        [transfer.as_slice(), &[0]].concat(),
    );
    v.add(
        T,
        "transfer_dirty_address",
        "malformed ERC-20 transfer(address,uint256) calldata",
        "a non-zero byte in the address word's padding",
        patch(&transfer, 4, &[0x01]),
    );
    v.add(
        T,
        "approve_truncated",
        "malformed ERC-20 approve(address,uint256) calldata",
        "only the selector",
        approve[..4].to_vec(),
    );
}

#[test]
#[ignore = "generator: rewrites fuzz/corpus/eth_* and test-vectors/negative/eth_*"]
fn regenerate_ethereum_corpus() {
    for ty in TYPES {
        let dir = root().join("corpus").join(ty);
        if dir.is_dir() {
            std::fs::remove_dir_all(&dir).expect("clear corpus dir");
        }
    }
    let erc20 = eip1559(
        erc20_transfer(Address::repeat_byte(0x5a), U256::from(250_000_000u64)),
        token(),
        0,
        65_000,
    );
    let approve = eip1559(
        erc20_approve(Address::repeat_byte(0x5b), U256::MAX),
        token(),
        0,
        65_000,
    );
    let raw = eip1559(
        Bytes::from_static(&[0x12, 0x34, 0x56, 0x78, 0xaa]),
        token(),
        0,
        100_000,
    );

    // eth_sign_request: Keystone's vectors and our own requests.
    for (i, name) in ["with-origin", "from-hd-path", "no-fingerprint"]
        .iter()
        .enumerate()
    {
        write_seed(
            "eth_sign_request",
            &format!("valid-keystone-{name}"),
            &keystone(i),
        );
    }
    write_seed(
        "eth_sign_request",
        "valid-eip1559-transfer",
        &request(&transfer()).to_cbor(),
    );
    write_seed(
        "eth_sign_request",
        "valid-eip1559-erc20",
        &request(&erc20).to_cbor(),
    );
    write_seed(
        "eth_sign_request",
        "valid-legacy",
        &request(&legacy()).to_cbor(),
    );

    // eth_signature.
    write_seed("eth_signature", "valid-keystone", &keystone(3));
    let answer = |v: &[u8], origin: Option<&str>| {
        EthSignature {
            request_id: [0x42; 16],
            signature: signature(v),
            origin: origin.map(str::to_owned),
        }
        .to_cbor()
    };
    write_seed(
        "eth_signature",
        "valid-eip1559",
        &answer(&[1], Some("custody-signer")),
    );
    write_seed(
        "eth_signature",
        "valid-legacy-eip155-v",
        &answer(&[0x25], None),
    );
    write_seed(
        "eth_signature",
        "valid-sepolia-legacy-v",
        &answer(&[0x01, 0x4a, 0x34, 0x61], None),
    );

    // eth_transaction.
    write_seed(
        "eth_transaction",
        "valid-eip1559-transfer",
        &transfer().encode_unsigned(),
    );
    write_seed(
        "eth_transaction",
        "valid-eip1559-erc20-transfer",
        &erc20.encode_unsigned(),
    );
    write_seed(
        "eth_transaction",
        "valid-eip1559-erc20-approve",
        &approve.encode_unsigned(),
    );
    write_seed(
        "eth_transaction",
        "valid-eip1559-raw-call",
        &raw.encode_unsigned(),
    );
    write_seed(
        "eth_transaction",
        "valid-legacy",
        &legacy().encode_unsigned(),
    );

    // eth_calldata.
    write_seed("eth_calldata", "valid-empty", &[]);
    write_seed("eth_calldata", "valid-transfer", erc20.input());
    write_seed("eth_calldata", "valid-approve", approve.input());
    write_seed("eth_calldata", "valid-other", raw.input());

    let mut v = Vectors::default();
    sign_request_vectors(&mut v);
    signature_vectors(&mut v);
    transaction_vectors(&mut v);
    calldata_vectors(&mut v);
    v.write();
}
