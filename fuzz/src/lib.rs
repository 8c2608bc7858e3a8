//! Fuzzing harness for every `custody-threshold` encoding that crosses the air gap, plus
//! the two secret keystore encodings, and for the `custody-airgap` and `custody-bitcoin`
//! parsers that read what comes back across it (envelopes, PSBT files, UR and BBQr frames,
//! PSBT inspection and the CoinPort PSBT fields).
//!
//! Each threshold `do_test_*` function takes arbitrary bytes and:
//!
//! - decodes them with the type's decoder;
//! - on `Ok`, re-encodes the value, checks the re-encoding against the input (byte for byte
//!   where the encoding is canonical, see each function), decodes the re-encoding again and
//!   checks it yields the same value, and exercises a few accessors that must not panic on
//!   any decoded value;
//! - on `Err`, formats the [`DecodeError`] with `Display` and checks the text is non-empty.
//!
//! [`do_test_envelope`] and [`do_test_psbt_file`] follow the same pattern for
//! `custody-airgap`; the QR and `custody-bitcoin` targets call the entry points those
//! crates provide for fuzzing ([`custody_airgap::qr::fuzz_ur_lines`],
//! [`custody_bitcoin::fuzzing`]), which check their own round trips.
//!
//! The functions never panic on their own account: a panic means a decoder panicked, or a
//! round trip lost or changed information. They are called by the libFuzzer targets in
//! `fuzz_targets/` (built only with the `libfuzzer` feature, see `README.md`) and by the
//! plain `cargo test` replay of the committed corpus in `tests/replay.rs`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fmt::Debug;

use custody_airgap::envelope::Envelope;
use custody_airgap::file::{detect_psbt, encode_psbt};
use custody_threshold::{
    CeremonyMessage, CeremonyPlan, CommitmentBatch, DecodeError, DkgCertificate, GroupKey,
    Identity, IdentityCard, KeyShare, SignatureShares, SigningRequest,
};

/// A fuzz target's test function: takes any bytes, panics only on a bug.
pub type TestFn = fn(&[u8]);

/// Every fuzz target: its name (also the name of its `fuzz_targets/` file, its `[[bin]]`,
/// its `corpus/` directory and the `type:` of a negative vector) and its test function.
pub const TARGETS: [(&str, TestFn); 30] = [
    ("identity_card", do_test_identity_card),
    ("ceremony_plan", do_test_ceremony_plan),
    ("ceremony_message", do_test_ceremony_message),
    ("dkg_certificate", do_test_dkg_certificate),
    ("group_key", do_test_group_key),
    ("commitment_batch", do_test_commitment_batch),
    ("signing_request", do_test_signing_request),
    ("signature_shares", do_test_signature_shares),
    ("key_share", do_test_key_share),
    ("identity", do_test_identity),
    ("envelope", do_test_envelope),
    ("psbt_file", do_test_psbt_file),
    ("ur_lines", do_test_ur_lines),
    ("bbqr_lines", do_test_bbqr_lines),
    ("psbt_inspect", do_test_psbt_inspect),
    ("psbt_fields", do_test_psbt_fields),
    ("proprietary_field", do_test_proprietary_field),
    ("policy_document", do_test_policy_document),
    ("signed_policy", do_test_signed_policy),
    ("decision", do_test_decision),
    ("eth_sign_request", do_test_eth_sign_request),
    ("eth_signature", do_test_eth_signature),
    ("eth_transaction", do_test_eth_transaction),
    ("eth_calldata", do_test_eth_calldata),
    ("vault_blob", do_test_vault_blob),
    ("ecdsa_plan", do_test_ecdsa_plan),
    ("ecdsa_message", do_test_ecdsa_message),
    ("ecdsa_message_body", do_test_ecdsa_message_body),
    ("ecdsa_partial_signature", do_test_ecdsa_partial_signature),
    ("ecdsa_group_key", do_test_ecdsa_group_key),
];

/// Runs only the decoder of `target` (a name from [`TARGETS`]) on `data`.
///
/// Returns `None` for an unknown target name and for the targets that have no single
/// decoder (`ur_lines`, `bbqr_lines`, `psbt_inspect`, `psbt_fields`, `proprietary_field`:
/// their entry points drive a frame collector or a PSBT parser), otherwise the decoder's
/// result with the decoded value dropped and the error replaced by its `Display` text. Used
/// by the negative-vector test, whose `type:` names are the targets this returns `Some` for.
pub fn decode(target: &str, data: &[u8]) -> Option<Result<(), String>> {
    fn text<T, E: std::fmt::Display>(result: Result<T, E>) -> Result<(), String> {
        result.map(drop).map_err(|e| e.to_string())
    }
    let result = match target {
        "identity_card" => text(IdentityCard::decode(data)),
        "ceremony_plan" => text(CeremonyPlan::decode(data)),
        "ceremony_message" => text(CeremonyMessage::decode(data)),
        "dkg_certificate" => text(DkgCertificate::decode(data)),
        "group_key" => text(GroupKey::decode(data)),
        "commitment_batch" => text(CommitmentBatch::decode(data)),
        "signing_request" => text(SigningRequest::decode(data)),
        "signature_shares" => text(SignatureShares::decode(data)),
        "key_share" => text(KeyShare::from_secret_bytes(data)),
        "identity" => text(Identity::from_secret_bytes(data)),
        "envelope" => text(Envelope::decode(data)),
        "psbt_file" => text(detect_psbt(data)),
        "policy_document" => text(custody_policy::PolicyDocument::decode(data)),
        "signed_policy" => text(custody_policy::SignedPolicy::decode(data)),
        "decision" => text(custody_policy::Decision::decode(data)),
        "eth_sign_request" => text(custody_ethereum::EthSignRequest::from_cbor(data)),
        "eth_signature" => text(custody_ethereum::EthSignature::from_cbor(data)),
        "eth_transaction" => text(custody_ethereum::EthTransaction::decode_unsigned(data)),
        "eth_calldata" => text(custody_ethereum::Call::decode(data)),
        "vault_blob" => text(custody_vault::SealedBlob::from_bytes(data)),
        "ecdsa_plan" => text(custody_ecdsa::EcdsaPlan::decode(data)),
        "ecdsa_message" => text(custody_ecdsa::EcdsaMessage::decode(data)),
        "ecdsa_partial_signature" => text(custody_ecdsa::PartialSignature::decode(data)),
        "ecdsa_group_key" => text(custody_ecdsa::GroupPublicKey::decode(data)),
        _ => return None,
    };
    Some(result)
}

/// Checks that a decode error explains itself.
fn check_error(error: &DecodeError) {
    let text = error.to_string();
    assert!(
        !text.is_empty(),
        "DecodeError {error:?} has an empty Display"
    );
}

/// Decode, and on success require an exact round trip: `encode(decode(x)) == x`, and the
/// re-encoding decodes to an equal value. Returns the decoded value for further checks.
fn exact_round_trip<T: PartialEq + Debug>(
    data: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, DecodeError>,
    encode: impl Fn(&T) -> Vec<u8>,
) -> Option<T> {
    match decode(data) {
        Ok(value) => {
            let encoded = encode(&value);
            assert!(
                encoded == data,
                "re-encoding differs from the accepted input\n input: {data:02x?}\noutput: {encoded:02x?}"
            );
            match decode(&encoded) {
                Ok(again) => assert_eq!(again, value, "decode(encode(v)) != v"),
                Err(e) => panic!("the re-encoding of an accepted input is rejected: {e}"),
            }
            Some(value)
        }
        Err(e) => {
            check_error(&e);
            None
        }
    }
}

/// `CeremonyPlan`, `GroupKey` and `KeyShare` all start with the 6-byte header; a group key
/// (alone, or first inside a key share) then has network (1), chain code (32), threshold
/// (2), group public key (33) and the participant count (2) before its entries.
const GROUP_ENTRIES_OFFSET: usize = 6 + 1 + 32 + 2 + 33 + 2;
/// Size of one `(index u16, verifying share [33])` entry of a group key.
const GROUP_ENTRY_LEN: usize = 2 + 33;

/// Length of the common header: magic, version, type byte.
const HEADER_LEN: usize = 6;

/// Round trip of a `GroupKey` found in accepted input `data` (a group key encoding, or a
/// key share encoding that starts with the group key's fields). Returns the length of the
/// group key's own encoding (header included), which is also where the group key's fields
/// end inside `data`.
///
/// The decoder accepts the verifying-share entries in any order and the encoder writes them
/// sorted by index, so the check is exact up to that order: the fields before the entries
/// must match, and the input's entries, sorted by index, must be the re-encoded entries.
/// The re-encoding must then decode to an equal value and be a fixed point.
fn group_round_trip(data: &[u8], group: &GroupKey) -> usize {
    let encoded = group.encode();
    let end = encoded.len();
    let (Some(fields), Some(entries)) = (
        data.get(HEADER_LEN..GROUP_ENTRIES_OFFSET),
        data.get(GROUP_ENTRIES_OFFSET..end),
    ) else {
        panic!("the group key re-encodes longer than the accepted input");
    };
    assert!(
        encoded[HEADER_LEN..GROUP_ENTRIES_OFFSET] == *fields,
        "re-encoding changed the group key's fields\n input: {fields:02x?}\noutput: {:02x?}",
        &encoded[HEADER_LEN..GROUP_ENTRIES_OFFSET]
    );
    let mut sorted: Vec<&[u8]> = entries.chunks(GROUP_ENTRY_LEN).collect();
    sorted.sort_by_key(|entry| u16::from_be_bytes([entry[0], entry[1]]));
    assert!(
        sorted.concat() == encoded[GROUP_ENTRIES_OFFSET..],
        "re-encoding changed a verifying-share entry\n input: {entries:02x?}\noutput: {:02x?}",
        &encoded[GROUP_ENTRIES_OFFSET..]
    );
    match GroupKey::decode(&encoded) {
        Ok(again) => {
            assert_eq!(&again, group, "decode(encode(v)) != v");
            assert_eq!(again.encode(), encoded, "encoding is not a fixed point");
        }
        Err(e) => panic!("the re-encoding of an accepted group key is rejected: {e}"),
    }
    end
}

/// Accessors that must work on every decoded group key.
fn exercise_group(group: &GroupKey) {
    assert!(group.threshold() >= 2);
    assert!(group.threshold() <= group.participants());
    assert_eq!(group.xpub().public_key.serialize(), group.public_key());
    let _ = group.fingerprint();
}

/// Fuzzes [`IdentityCard::decode`]. The encoding is canonical: exact round trip.
pub fn do_test_identity_card(data: &[u8]) {
    if let Some(card) = exact_round_trip(data, IdentityCard::decode, IdentityCard::encode) {
        let fingerprint = card.fingerprint();
        assert_eq!(
            fingerprint.len(),
            24,
            "fingerprint is 5 groups of 4 hex digits"
        );
        assert!(!card.name().is_empty());
    }
}

/// Fuzzes [`CeremonyPlan::decode`]. The encoding is canonical: exact round trip; every
/// participant is found at its own position (cards are distinct).
pub fn do_test_ceremony_plan(data: &[u8]) {
    if let Some(plan) = exact_round_trip(data, CeremonyPlan::decode, CeremonyPlan::encode) {
        let _ = plan.hash();
        assert!(plan.threshold() >= 2 && plan.threshold() <= plan.len());
        for (i, card) in plan.participants().iter().enumerate() {
            let index = u16::try_from(i + 1).expect("at most 255 participants");
            assert_eq!(plan.position_of(card), Some(index));
            assert_eq!(plan.participant(index), Some(card));
        }
        assert_eq!(plan.participant(0), None);
    }
}

/// Fuzzes [`CeremonyMessage::decode`]. The encoding is canonical: exact round trip.
pub fn do_test_ceremony_message(data: &[u8]) {
    if let Some(msg) = exact_round_trip(data, CeremonyMessage::decode, CeremonyMessage::encode) {
        assert_ne!(msg.sender(), 0, "participant 0 does not exist");
        let _ = (msg.kind().name(), msg.kind().is_confidential());
    }
}

/// Fuzzes [`DkgCertificate::decode`]. The encoding is canonical: exact round trip.
pub fn do_test_dkg_certificate(data: &[u8]) {
    exact_round_trip(data, DkgCertificate::decode, DkgCertificate::encode);
}

/// Fuzzes [`GroupKey::decode`]. Exact round trip up to the order of the verifying-share
/// entries, which the encoder sorts by index (so sorted input round-trips exactly).
pub fn do_test_group_key(data: &[u8]) {
    match GroupKey::decode(data) {
        Ok(group) => {
            let end = group_round_trip(data, &group);
            assert_eq!(end, data.len(), "re-encoding changed the length");
            exercise_group(&group);
        }
        Err(e) => check_error(&e),
    }
}

/// Fuzzes [`CommitmentBatch::decode`]. The encoding is canonical: exact round trip.
pub fn do_test_commitment_batch(data: &[u8]) {
    if let Some(batch) = exact_round_trip(data, CommitmentBatch::decode, CommitmentBatch::encode) {
        assert_ne!(batch.signer, 0, "participant 0 does not exist");
    }
}

/// Fuzzes [`SigningRequest::decode`]. The encoding is canonical (signers must be strictly
/// ascending): exact round trip; every item carries one commitment per signer.
pub fn do_test_signing_request(data: &[u8]) {
    if let Some(request) = exact_round_trip(data, SigningRequest::decode, SigningRequest::encode) {
        let _ = request.digest();
        let signers = request.signers();
        assert!(signers.windows(2).all(|w| w[0] < w[1]));
        for item in request.items() {
            assert!(item.commitments.keys().copied().eq(signers.iter().copied()));
        }
    }
}

/// Fuzzes [`SignatureShares::decode`]. The encoding is canonical: exact round trip.
pub fn do_test_signature_shares(data: &[u8]) {
    exact_round_trip(data, SignatureShares::decode, SignatureShares::encode);
}

/// Fuzzes [`KeyShare::from_secret_bytes`]. The embedded group key follows the
/// [`do_test_group_key`] rule (exact up to the order of its entries); the index and the
/// secret share must round-trip exactly.
pub fn do_test_key_share(data: &[u8]) {
    match KeyShare::from_secret_bytes(data) {
        Ok(share) => {
            let group_end = group_round_trip(data, share.group());
            let encoded = share.to_secret_bytes();
            assert_eq!(encoded.len(), data.len(), "re-encoding changed the length");
            // The tail (index and secret share) is canonical whatever the share order.
            assert!(
                encoded[group_end..] == data[group_end..],
                "index or secret share changed"
            );
            match KeyShare::from_secret_bytes(&encoded) {
                Ok(again) => {
                    assert_eq!(again.index(), share.index());
                    assert_eq!(again.group(), share.group());
                    assert!(*again.to_secret_bytes() == *encoded, "not a fixed point");
                }
                Err(e) => panic!("the re-encoding of an accepted key share is rejected: {e}"),
            }
            exercise_group(share.group());
        }
        Err(e) => check_error(&e),
    }
}

/// Fuzzes [`Identity::from_secret_bytes`].
///
/// This encoding is not canonical: the BIP340 signing key is normalised to the scalar whose
/// public point has an even y (its negation is accepted too), and the age secret key is
/// accepted in lower case but written in upper case. So the check is: same length, same
/// name and same public card after the round trip, and the re-encoding is a fixed point.
pub fn do_test_identity(data: &[u8]) {
    match Identity::from_secret_bytes(data) {
        Ok(identity) => {
            let card = identity.card();
            let encoded = identity.to_secret_bytes();
            assert_eq!(encoded.len(), data.len(), "re-encoding changed the length");
            match Identity::from_secret_bytes(&encoded) {
                Ok(again) => {
                    assert_eq!(again.name(), identity.name());
                    assert_eq!(again.card(), card, "the public card changed");
                    assert!(*again.to_secret_bytes() == *encoded, "not a fixed point");
                }
                Err(e) => panic!("the re-encoding of an accepted identity is rejected: {e}"),
            }
            // The card derived from a decoded identity is itself a valid card.
            do_test_identity_card(&card.encode());
        }
        Err(e) => check_error(&e),
    }
}

/// Fuzzes [`Envelope::decode`] (`custody-airgap`). The encoding is canonical (the flags
/// byte must agree with the recipient list, and every length is exact): exact round trip.
/// The signature is not checked: decoding only reads the structure.
pub fn do_test_envelope(data: &[u8]) {
    match Envelope::decode(data) {
        Ok(envelope) => {
            let encoded = envelope.encode();
            assert!(
                encoded == data,
                "re-encoding differs from the accepted input\n input: {data:02x?}\noutput: {encoded:02x?}"
            );
            match Envelope::decode(&encoded) {
                Ok(again) => assert_eq!(again, envelope, "decode(encode(v)) != v"),
                Err(e) => panic!("the re-encoding of an accepted envelope is rejected: {e}"),
            }
            let header = envelope.header();
            assert_eq!(header.is_encrypted(), !header.recipients.is_empty());
            assert!(!header.kind.name().is_empty());
        }
        Err(e) => assert!(
            !e.to_string().is_empty(),
            "envelope DecodeError {e:?} has an empty Display"
        ),
    }
}

/// Fuzzes [`detect_psbt`] (`custody-airgap`): binary, base64 or hex PSBT files. An accepted
/// file gives raw bytes starting with the BIP-174 magic, and writing those bytes back with
/// [`encode_psbt`] in the detected encoding must be detected again as the same bytes and
/// encoding (the file itself need not round-trip: text may be wrapped, upper case or lack
/// the final newline).
pub fn do_test_psbt_file(data: &[u8]) {
    match detect_psbt(data) {
        Ok((raw, encoding)) => {
            assert!(raw.starts_with(b"psbt\xff"), "raw PSBT without the magic");
            let file = encode_psbt(&raw, encoding);
            match detect_psbt(&file) {
                Ok((again, again_encoding)) => {
                    assert!(again == raw, "re-encoding changed the PSBT bytes");
                    assert_eq!(again_encoding, encoding, "re-encoding changed the encoding");
                }
                Err(e) => {
                    panic!("the {encoding:?} re-encoding of an accepted PSBT is rejected: {e}")
                }
            }
        }
        Err(e) => assert!(
            !e.to_string().is_empty(),
            "PsbtFileError {e:?} has an empty Display"
        ),
    }
}

/// Fuzzes UR reassembly: [`custody_airgap::qr::fuzz_ur_lines`] (lines split at `\n`; lines
/// not starting with `ur:` are taken as raw CBOR fountain parts and framed with a valid
/// checksum). A completed message must survive re-encoding and collecting again.
pub fn do_test_ur_lines(data: &[u8]) {
    custody_airgap::qr::fuzz_ur_lines(data);
}

/// Fuzzes BBQr reassembly: [`custody_airgap::qr::fuzz_bbqr_lines`] (lines split at `\n`,
/// each fed to a collector). A completed message must survive re-encoding and collecting
/// again.
pub fn do_test_bbqr_lines(data: &[u8]) {
    custody_airgap::qr::fuzz_bbqr_lines(data);
}

/// Fuzzes PSBT inspection: [`custody_bitcoin::fuzzing::do_test_inspect_psbt`] (parse, then
/// inspect against the two fixed fuzz wallets, key path and recovery leaf).
pub fn do_test_psbt_inspect(data: &[u8]) {
    custody_bitcoin::fuzzing::do_test_inspect_psbt(data);
}

/// Fuzzes the CoinPort proprietary fields of a whole PSBT:
/// [`custody_bitcoin::fuzzing::do_test_psbt_fields`].
pub fn do_test_psbt_fields(data: &[u8]) {
    custody_bitcoin::fuzzing::do_test_psbt_fields(data);
}

/// Fuzzes one CoinPort proprietary field without the PSBT parser in the way:
/// [`custody_bitcoin::fuzzing::do_test_proprietary_field`] (subtype byte, key-data length
/// byte `n`, `n` bytes of key data, then the value).
pub fn do_test_proprietary_field(data: &[u8]) {
    custody_bitcoin::fuzzing::do_test_proprietary_field(data);
}

/// Fuzzes [`custody_policy::PolicyDocument::decode`]: an accepted document re-encodes to
/// the input (one encoding per document) and hashes without panicking.
pub fn do_test_policy_document(data: &[u8]) {
    match custody_policy::PolicyDocument::decode(data) {
        Ok(doc) => {
            assert!(doc.encode() == data, "policy document re-encoding differs");
            let _ = doc.hash();
        }
        Err(e) => assert!(!e.to_string().is_empty(), "empty Display for {e:?}"),
    }
}

/// Fuzzes [`custody_policy::SignedPolicy::decode`]: an accepted signed policy re-encodes to
/// the input.
pub fn do_test_signed_policy(data: &[u8]) {
    match custody_policy::SignedPolicy::decode(data) {
        Ok(signed) => assert!(signed.encode() == data, "signed policy re-encoding differs"),
        Err(e) => assert!(!e.to_string().is_empty(), "empty Display for {e:?}"),
    }
}

/// Fuzzes [`custody_policy::Decision::decode`]: an accepted decision re-encodes to the
/// input and its digests compute without panicking.
pub fn do_test_decision(data: &[u8]) {
    match custody_policy::Decision::decode(data) {
        Ok(decision) => {
            assert!(decision.encode() == data, "decision re-encoding differs");
            let _ = (decision.signing_digest(), decision.withdrawal_digest());
        }
        Err(e) => assert!(!e.to_string().is_empty(), "empty Display for {e:?}"),
    }
}

/// Fuzzes EIP-4527 `eth-sign-request` decoding:
/// [`custody_ethereum::fuzzing::do_test_eth_sign_request`] (exact CBOR round trip, UR round
/// trip, the carried transaction decodes or fails cleanly).
pub fn do_test_eth_sign_request(data: &[u8]) {
    custody_ethereum::fuzzing::do_test_eth_sign_request(data);
}

/// Fuzzes EIP-4527 `eth-signature` decoding:
/// [`custody_ethereum::fuzzing::do_test_eth_signature`] (exact CBOR and UR round trips).
pub fn do_test_eth_signature(data: &[u8]) {
    custody_ethereum::fuzzing::do_test_eth_signature(data);
}

/// Fuzzes unsigned (and signed) Ethereum transaction decoding:
/// [`custody_ethereum::fuzzing::do_test_eth_transaction`] (exact round trip, summary,
/// policy mapping).
pub fn do_test_eth_transaction(data: &[u8]) {
    custody_ethereum::fuzzing::do_test_eth_transaction(data);
}

/// Fuzzes ERC-20 calldata decoding: [`custody_ethereum::fuzzing::do_test_eth_calldata`]
/// (exact round trip).
pub fn do_test_eth_calldata(data: &[u8]) {
    custody_ethereum::fuzzing::do_test_eth_calldata(data);
}

/// Fuzzes the sealed-blob decoder of the data-at-rest vault:
/// [`custody_vault::fuzzing::do_test`] (exact round trip, text form, opening with the
/// fixed fuzz keys).
pub fn do_test_vault_blob(data: &[u8]) {
    custody_vault::fuzzing::do_test(data);
}

/// Fuzzes the threshold-ECDSA ceremony plan decoder:
/// [`custody_ecdsa::fuzzing::plan::do_test`] (exact round trip).
pub fn do_test_ecdsa_plan(data: &[u8]) {
    custody_ecdsa::fuzzing::plan::do_test(data);
}

/// Fuzzes the threshold-ECDSA ceremony message decoder (the authenticated envelope of every
/// round): [`custody_ecdsa::fuzzing::message::do_test`] (exact round trip).
pub fn do_test_ecdsa_message(data: &[u8]) {
    custody_ecdsa::fuzzing::message::do_test(data);
}

/// Fuzzes the split of an opened ceremony message body into protocol messages:
/// [`custody_ecdsa::fuzzing::message_body::do_test`] (must not panic).
pub fn do_test_ecdsa_message_body(data: &[u8]) {
    custody_ecdsa::fuzzing::message_body::do_test(data);
}

/// Fuzzes the partial-signature decoder (what a signer sends back across the air gap):
/// [`custody_ecdsa::fuzzing::partial_signature::do_test`] (exact round trip).
pub fn do_test_ecdsa_partial_signature(data: &[u8]) {
    custody_ecdsa::fuzzing::partial_signature::do_test(data);
}

/// Fuzzes the threshold-ECDSA group key decoder:
/// [`custody_ecdsa::fuzzing::group_key::do_test`] (exact round trip).
pub fn do_test_ecdsa_group_key(data: &[u8]) {
    custody_ecdsa::fuzzing::group_key::do_test(data);
}
