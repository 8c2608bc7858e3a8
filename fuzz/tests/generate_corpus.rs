//! Generators for the committed seed corpus (`fuzz/corpus/<target>/`), the negative
//! vectors (`test-vectors/negative/`) and the worked examples of
//! `docs/formats/threshold.md`.
//!
//! All three are `#[ignore]`d: they rewrite committed files and are run by hand after a
//! format change:
//!
//! ```text
//! cargo test -p custody-fuzz --test generate_corpus -- --ignored
//! ```
//!
//! Every input is built from real objects (a 2-of-3 DKG run with the library, commitments,
//! a signing request and its shares, a dealer key) from fixed seeds, then truncated or
//! mutated at the offsets `docs/formats/threshold.md` documents.

mod common;

use std::fmt::Write as _;
use std::fs;

use common::*;
use custody_threshold::{
    CeremonyKind, CeremonyPlan, CommitmentBatch, GroupKey, IdentityCard, SignatureShares, TweakMode,
};

/// One negative vector: bytes that `ty`'s decoder must reject with an error whose Display
/// contains `expect`.
struct Vector {
    ty: &'static str,
    failure: &'static str,
    expect: String,
    comment: String,
    bytes: Vec<u8>,
}

impl Vector {
    fn file_name(&self) -> String {
        format!("{}-{}", self.ty, self.failure)
    }

    fn render(&self) -> String {
        let mut out = String::new();
        writeln!(out, "type: {}", self.ty).expect("write to String");
        writeln!(out, "expect: {}", self.expect).expect("write to String");
        writeln!(out, "comment: {}", self.comment).expect("write to String");
        out.push('\n');
        for chunk in self.bytes.chunks(32) {
            out.push_str(&hex::encode(chunk));
            out.push('\n');
        }
        out
    }
}

fn v(
    ty: &'static str,
    failure: &'static str,
    expect: impl Into<String>,
    comment: impl Into<String>,
    bytes: Vec<u8>,
) -> Vector {
    Vector {
        ty,
        failure,
        expect: expect.into(),
        comment: comment.into(),
        bytes,
    }
}

/// Field offsets of an identity card's fields inside `encoding`, starting at `at` (6 for a
/// bare card): (name length, signing key, age recipient length, end).
fn card_offsets(card: &IdentityCard, at: usize) -> (usize, usize, usize, usize) {
    let sk = at + 4 + card.name().len();
    let age_len = sk + 32;
    let end = age_len + 4 + card.age_recipient().len();
    (at, sk, age_len, end)
}

/// Offset of the threshold field of a plan encoding.
fn plan_threshold_offset(plan: &CeremonyPlan) -> usize {
    let kind_len = match plan.kind() {
        CeremonyKind::Dkg => 1,
        CeremonyKind::Refresh { .. } => 1 + 33,
        CeremonyKind::Repair { helpers, .. } => 1 + 33 + 2 + 2 + 2 * helpers.len(),
        _ => unreachable!("no other kinds"),
    };
    HEADER + 16 + kind_len + 1 + 4 + plan.purpose().len()
}

/// Offset of the first verifying-share entry of a group key (alone or inside a key share).
const GROUP_ENTRIES: usize = HEADER + 1 + 32 + 2 + 33 + 2;
/// Offset of the group public key.
const GROUP_PUBLIC_KEY: usize = HEADER + 1 + 32 + 2;
/// Offset of the first commitment entry of a batch.
const BATCH_ENTRIES: usize = HEADER + 33 + 2 + 2;

fn negative_vectors(f: &Fixture) -> Vec<Vector> {
    let mut out = Vec::new();
    let x_bad = x_not_on_curve();
    let mut point_not_on_curve = [0u8; 33];
    point_not_on_curve[0] = 0x02;
    point_not_on_curve[1..].copy_from_slice(&x_bad);

    // --- identity card -------------------------------------------------------------
    let card = f.identities[0].card();
    let c = card.encode();
    let (name_len, sk, age_len, end) = card_offsets(&card, HEADER);
    out.push(v(
        "identity_card",
        "truncated",
        format!(
            "truncated input: age recipient needs {} more bytes but only 30 remain",
            card.age_recipient().len()
        ),
        "alice's card cut 30 bytes into the age recipient",
        c[..age_len + 4 + 30].to_vec(),
    ));
    out.push(v(
        "identity_card",
        "bad_magic",
        "not a CoinPort threshold encoding",
        "magic CPTX instead of CPTH",
        patch(&c, 0, b"CPTX"),
    ));
    out.push(v(
        "identity_card",
        "wrong_version",
        "unsupported format version 2; this build reads version 1",
        "format version byte 2",
        patch(&c, 4, &[2]),
    ));
    out.push(v(
        "identity_card",
        "wrong_type",
        "wrong type: expected identity card, found type byte 0x02",
        "a valid ceremony plan given to the identity card decoder",
        f.plan.encode(),
    ));
    let mut trailing = c.clone();
    trailing.push(0);
    out.push(v(
        "identity_card",
        "trailing_bytes",
        "1 unexpected bytes after the end of the identity card",
        "a valid card with one zero byte appended",
        trailing,
    ));
    out.push(v(
        "identity_card",
        "length_overflow",
        "participant name is 4294967295 bytes long, more than the maximum of 64",
        "name length prefix 0xffffffff",
        patch(&c, name_len, &[0xff; 4]),
    ));
    out.push(v(
        "identity_card",
        "name_too_long",
        "participant name is 65 bytes long, more than the maximum of 64",
        "name length prefix 65 (maximum 64), followed by the original bytes",
        patch(&c, name_len, &65u32.to_be_bytes()),
    ));
    out.push(v(
        "identity_card",
        "name_control_character",
        "invalid participant name",
        "name \"al\\u{7}ce\" (BEL is a control character)",
        patch(&c, name_len + 4 + 2, &[0x07]),
    ));
    out.push(v(
        "identity_card",
        "name_not_utf8",
        "invalid participant name: not UTF-8",
        "name bytes 61 6c ff 63 65",
        patch(&c, name_len + 4 + 2, &[0xff]),
    ));
    out.push(v(
        "identity_card",
        "point_not_on_curve",
        "invalid identity signing key: not an x-only secp256k1 point",
        format!(
            "signing key x = {} is not the x coordinate of a secp256k1 point",
            hex::encode(x_bad)
        ),
        patch(&c, sk, &x_bad),
    ));
    out.push(v(
        "identity_card",
        "bad_age_recipient",
        "invalid age recipient: not an age X25519 recipient",
        "last character of the age recipient changed, so its bech32 checksum fails",
        patch(&c, end - 1, b"q"),
    ));

    // --- ceremony plan --------------------------------------------------------------
    let plan = f.plan.encode();
    let t_off = plan_threshold_offset(&f.plan);
    out.push(v(
        "ceremony_plan",
        "threshold_above_n",
        "invalid ceremony plan: threshold 4 of 3 is not allowed",
        "2-of-3 DKG plan with the threshold changed to 4",
        patch(&plan, t_off, &4u16.to_be_bytes()),
    ));
    out.push(v(
        "ceremony_plan",
        "threshold_below_two",
        "invalid ceremony plan: threshold 1 of 3 is not allowed",
        "2-of-3 DKG plan with the threshold changed to 1",
        patch(&plan, t_off, &1u16.to_be_bytes()),
    ));
    let cards_start = t_off + 4;
    let card_fields = |i: usize| f.identities[i].card().encode()[HEADER..].to_vec();
    let mut dup = plan[..cards_start].to_vec();
    dup.extend(card_fields(0));
    dup.extend(card_fields(1));
    dup.extend(card_fields(0));
    out.push(v(
        "ceremony_plan",
        "duplicate_participant",
        "invalid ceremony plan: participants 1 and 3 have the same identity key",
        "DKG plan whose third card is a copy of the first (alice, bob, alice)",
        dup,
    ));
    out.push(v(
        "ceremony_plan",
        "unknown_ceremony_kind",
        "invalid ceremony kind: unknown kind 9",
        "ceremony kind byte 9 (1 = DKG, 2 = refresh, 3 = repair)",
        patch(&plan, HEADER + 16, &[9]),
    ));
    out.push(v(
        "ceremony_plan",
        "unknown_network",
        "invalid network: unknown network 5",
        "network byte 5 (0..=4 are defined)",
        patch(&plan, HEADER + 16 + 1, &[5]),
    ));
    out.push(v(
        "ceremony_plan",
        "length_overflow",
        "purpose is 257 bytes long, more than the maximum of 256",
        "purpose length prefix 257",
        patch(&plan, HEADER + 16 + 2, &257u32.to_be_bytes()),
    ));
    out.push(v(
        "ceremony_plan",
        "participant_count_overflow",
        "participant count is 256, more than the maximum of 255",
        "participant count 256 (the maximum is 255)",
        patch(&plan, t_off + 2, &256u16.to_be_bytes()),
    ));
    let repair = f.repair_plan.encode();
    let helpers_at = HEADER + 16 + 1 + 33 + 2 + 2;
    out.push(v(
        "ceremony_plan",
        "repair_lost_participant_helps",
        "invalid ceremony plan: repair plan is inconsistent: the lost participant cannot help",
        "repair plan for participant 2 with helpers [1, 2] instead of [1, 3]",
        patch(&repair, helpers_at, &[0, 1, 0, 2]),
    ));
    out.push(v(
        "ceremony_plan",
        "repair_zero_participant_index",
        "invalid ceremony plan: repair plan is inconsistent: a participant index is out of range",
        "repair plan with helpers [1, 0]",
        patch(&repair, helpers_at, &[0, 1, 0, 0]),
    ));
    out.push(v(
        "ceremony_plan",
        "truncated",
        "truncated input: identity signing key needs 32 more bytes",
        "DKG plan cut inside the third card's signing key",
        {
            let third = f.identities[2].card();
            let at = plan.len() - card_fields(2).len();
            let (_, sk3, _, _) = card_offsets(&third, at);
            plan[..sk3 + 10].to_vec()
        },
    ));

    // --- ceremony message -----------------------------------------------------------
    let msg = f.round1[0].encode();
    let payload_len = f.round1[0].payload().len();
    out.push(v(
        "ceremony_message",
        "unknown_message_kind",
        "invalid message kind: unknown kind 9",
        "DKG round-1 message with kind byte 9 (1..=8 are defined)",
        patch(&msg, HEADER, &[9]),
    ));
    out.push(v(
        "ceremony_message",
        "zero_participant_index",
        "invalid sender: participant 0 does not exist",
        "DKG round-1 message with sender 0",
        patch(&msg, HEADER + 1 + 16, &[0, 0]),
    ));
    out.push(v(
        "ceremony_message",
        "length_overflow",
        "payload is 65537 bytes long, more than the maximum of 65536",
        "payload length prefix 65537",
        patch(&msg, HEADER + 1 + 16 + 4, &65537u32.to_be_bytes()),
    ));
    out.push(v(
        "ceremony_message",
        "payload_longer_than_input",
        format!(
            "truncated input: payload needs 60000 more bytes but only {} remain",
            payload_len + 64
        ),
        "payload length prefix 60000 (allowed) but far fewer bytes follow",
        patch(&msg, HEADER + 1 + 16 + 4, &60000u32.to_be_bytes()),
    ));
    out.push(v(
        "ceremony_message",
        "truncated",
        "truncated input: signature needs 64 more bytes but only 63 remain",
        "DKG round-1 message without the last byte of its signature",
        msg[..msg.len() - 1].to_vec(),
    ));
    out.push(v(
        "ceremony_message",
        "wrong_type",
        "wrong type: expected ceremony message, found type byte 0x01",
        "an identity card given to the ceremony message decoder",
        c.clone(),
    ));

    // --- DKG certificate ------------------------------------------------------------
    let cert = f.certificate.encode();
    out.push(v(
        "dkg_certificate",
        "length_overflow",
        "digest count is 256, more than the maximum of 255",
        "round-1 digest count 256",
        patch(&cert, HEADER + 32, &256u16.to_be_bytes()),
    ));
    out.push(v(
        "dkg_certificate",
        "truncated",
        "truncated input: round-1 digest needs 32 more bytes but only 31 remain",
        "certificate missing the last byte of its last digest",
        cert[..cert.len() - 1].to_vec(),
    ));
    let mut trailing = cert.clone();
    trailing.extend([0xaa; 32]);
    out.push(v(
        "dkg_certificate",
        "trailing_bytes",
        "32 unexpected bytes after the end of the DKG certificate",
        "certificate with a fourth digest but a count of 3",
        trailing,
    ));
    out.push(v(
        "dkg_certificate",
        "wrong_version",
        "unsupported format version 2",
        "format version byte 2",
        patch(&cert, 4, &[2]),
    ));

    // --- group key ------------------------------------------------------------------
    let g = f.group.encode();
    out.push(v(
        "group_key",
        "point_not_on_curve",
        "invalid group public key: not a valid curve point",
        format!(
            "group public key 02 {}: x is not on secp256k1",
            hex::encode(x_bad)
        ),
        patch(&g, GROUP_PUBLIC_KEY, &point_not_on_curve),
    ));
    out.push(v(
        "group_key",
        "bad_point_prefix",
        "invalid verifying share: not a valid curve point",
        "first verifying share with prefix byte 0x06 (SEC1 hybrid tag; only 0x02 and 0x03 are valid here). Not 0x05: the decoder wrongly accepts 0x05 (SEC1 compact point), see fuzz/README.md",
        patch(&g, GROUP_ENTRIES + 2, &[0x06]),
    ));
    out.push(v(
        "group_key",
        "wrong_point_size",
        "invalid group public key: not a valid curve point",
        "group public key with prefix 0x04, an uncompressed point that needs 65 bytes, in the 33-byte field",
        patch(&g, GROUP_PUBLIC_KEY, &[0x04]),
    ));
    out.push(v(
        "group_key",
        "x_not_below_field_prime",
        "invalid group public key: not a valid curve point",
        "group public key 02 ff..ff: x is not below the field prime p",
        patch(&g, GROUP_PUBLIC_KEY + 1, &[0xff; 32]),
    ));
    out.push(v(
        "group_key",
        "zero_participant_index",
        "invalid participant index: index 0",
        "first verifying share entry with participant index 0",
        patch(&g, GROUP_ENTRIES, &[0, 0]),
    ));
    out.push(v(
        "group_key",
        "duplicate_participant",
        "invalid participant index: #1 appears twice",
        "second verifying share entry also claims index 1",
        patch(&g, GROUP_ENTRIES + 35, &[0, 1]),
    ));
    out.push(v(
        "group_key",
        "threshold_above_n",
        "invalid threshold: 4 of 3 is not allowed",
        "2-of-3 group key with the threshold changed to 4",
        patch(&g, HEADER + 1 + 32, &4u16.to_be_bytes()),
    ));
    out.push(v(
        "group_key",
        "unknown_network",
        "invalid network: unknown network 200",
        "network byte 200",
        patch(&g, HEADER, &[200]),
    ));
    out.push(v(
        "group_key",
        "length_overflow",
        "participant count is 65535, more than the maximum of 255",
        "participant count 0xffff",
        patch(&g, GROUP_ENTRIES - 2, &[0xff, 0xff]),
    ));
    out.push(v(
        "group_key",
        "wrong_type",
        "wrong type: expected group key, found type byte 0x40",
        "a key share (secret keystore encoding, type 0x40) given to the group key decoder",
        f.dealer_shares[0].to_secret_bytes().to_vec(),
    ));

    // --- commitment batch -----------------------------------------------------------
    let b = f.batches[0].encode();
    out.push(v(
        "commitment_batch",
        "point_not_on_curve",
        "invalid hiding commitment: not a valid curve point",
        "first hiding commitment replaced by 02 || x with x not on secp256k1",
        patch(&b, BATCH_ENTRIES + 16, &point_not_on_curve),
    ));
    out.push(v(
        "commitment_batch",
        "bad_point_prefix",
        "invalid binding commitment: not a valid curve point",
        "first binding commitment with prefix byte 0x06 (SEC1 hybrid tag). Not 0x05: the decoder wrongly accepts 0x05 (SEC1 compact point), see fuzz/README.md",
        patch(&b, BATCH_ENTRIES + 16 + 33, &[0x06]),
    ));
    out.push(v(
        "commitment_batch",
        "identity_point",
        "invalid hiding commitment: not a valid curve point",
        "first hiding commitment all zero (the identity cannot be encoded in 33 bytes)",
        patch(&b, BATCH_ENTRIES + 16, &[0; 33]),
    ));
    out.push(v(
        "commitment_batch",
        "zero_participant_index",
        "invalid signer: participant 0 does not exist",
        "batch from signer 0",
        patch(&b, HEADER + 33, &[0, 0]),
    ));
    out.push(v(
        "commitment_batch",
        "length_overflow",
        "commitment count is 1001, more than the maximum of 1000",
        "commitment count 1001",
        patch(&b, HEADER + 33 + 2, &1001u16.to_be_bytes()),
    ));
    out.push(v(
        "commitment_batch",
        "truncated",
        "truncated input: binding commitment needs 33 more bytes but only 10 remain",
        "batch cut 10 bytes into its last binding commitment",
        b[..b.len() - 23].to_vec(),
    ));

    // --- signing request ------------------------------------------------------------
    let req = f.request.encode();
    let signers_at = HEADER + 16 + 33 + 2;
    let items_at = signers_at + 2 * f.request.signers().len() + 2;
    let first_msg_len = f.request.items()[0].spec.message.len();
    let first_path_at = items_at + 4 + first_msg_len;
    let first_tweak_at = first_path_at + 1 + 4 * f.request.items()[0].spec.path.len();
    assert_eq!(f.request.items()[0].spec.tweak, TweakMode::Untweaked);
    out.push(v(
        "signing_request",
        "unknown_tweak_mode",
        "invalid tweak mode: unknown mode 3",
        "first item with tweak mode 3 (0 = untweaked, 1 = key path, 2 = script root)",
        patch(&req, first_tweak_at, &[3]),
    ));
    out.push(v(
        "signing_request",
        "duplicate_participant",
        "invalid signers: must be non-empty, ascending, distinct and non-zero",
        "signers [3, 3] instead of [1, 3]",
        patch(&req, signers_at, &[0, 3, 0, 3]),
    ));
    out.push(v(
        "signing_request",
        "zero_participant_index",
        "invalid signers: must be non-empty, ascending, distinct and non-zero",
        "signers [0, 3] instead of [1, 3]",
        patch(&req, signers_at, &[0, 0, 0, 3]),
    ));
    out.push(v(
        "signing_request",
        "signers_not_ascending",
        "invalid signers: must be non-empty, ascending, distinct and non-zero",
        "signers [3, 1] instead of [1, 3]",
        patch(&req, signers_at, &[0, 3, 0, 1]),
    ));
    out.push(v(
        "signing_request",
        "length_overflow",
        "message is 4097 bytes long, more than the maximum of 4096",
        "first item's message length prefix 4097",
        patch(&req, items_at, &4097u32.to_be_bytes()),
    ));
    out.push(v(
        "signing_request",
        "path_too_deep",
        "derivation path is 17 bytes long, more than the maximum of 16",
        "first item's path length byte 17",
        patch(&req, first_path_at, &[17]),
    ));
    out.push(v(
        "signing_request",
        "item_count_overflow",
        "item count is 2001, more than the maximum of 2000",
        "item count 2001",
        patch(&req, items_at - 2, &2001u16.to_be_bytes()),
    ));
    out.push(v(
        "signing_request",
        "point_not_on_curve",
        "invalid hiding commitment: not a valid curve point",
        "first item's first hiding commitment replaced by 02 || x with x not on secp256k1",
        patch(&req, first_tweak_at + 1 + 16, &point_not_on_curve),
    ));
    out.push(v(
        "signing_request",
        "truncated",
        "truncated input: merkle root needs 32 more bytes but only 5 remain",
        "request cut 5 bytes into the third item's merkle root",
        {
            let item = &f.request.items()[2].spec;
            assert!(matches!(item.tweak, TweakMode::ScriptRoot(_)));
            let per_signer = 8 + 8 + 33 + 33;
            let tail = 32 + per_signer * f.request.signers().len();
            req[..req.len() - tail + 5].to_vec()
        },
    ));

    // --- signature shares -----------------------------------------------------------
    let s = f.responses[0].encode();
    out.push(v(
        "signature_shares",
        "truncated",
        "truncated input: signature share needs 32 more bytes but only 16 remain",
        "response cut 16 bytes into its last share",
        s[..s.len() - 16].to_vec(),
    ));
    let mut trailing = s.clone();
    trailing.extend([0; 3]);
    out.push(v(
        "signature_shares",
        "trailing_bytes",
        "3 unexpected bytes after the end of the signature shares",
        "response with three zero bytes appended",
        trailing,
    ));
    out.push(v(
        "signature_shares",
        "length_overflow",
        "share count is 2001, more than the maximum of 2000",
        "share count 2001",
        patch(&s, HEADER + 16 + 32 + 2, &2001u16.to_be_bytes()),
    ));
    out.push(v(
        "signature_shares",
        "wrong_version",
        "unsupported format version 2",
        "format version byte 2",
        patch(&s, 4, &[2]),
    ));
    out.push(v(
        "signature_shares",
        "wrong_type",
        "wrong type: expected signature shares, found type byte 0x06",
        "the signing request given to the signature shares decoder",
        req.clone(),
    ));
    out.push(v(
        "signature_shares",
        "bad_magic",
        "not a CoinPort threshold encoding",
        "an empty PSBT header (\"psbt\" ff) where CPTH should be",
        splice(&s, 0..5, b"psbt\xff"),
    ));

    // --- key share (secret keystore) ------------------------------------------------
    let share = f.shares[0].to_secret_bytes().to_vec();
    let index_at = f.shares[0].group().encode().len();
    let other = f.shares[1].to_secret_bytes().to_vec();
    out.push(v(
        "key_share",
        "invalid_scalar",
        "invalid signing share: not a valid scalar",
        "participant 1's secret share replaced by the curve order n",
        patch(&share, index_at + 2, &CURVE_ORDER),
    ));
    out.push(v(
        "key_share",
        "share_not_matching_group",
        "invalid key share: the share of participant #1 does not match the group's verifying share",
        "participant 1's key share carrying participant 2's secret share",
        patch(&share, index_at + 2, &other[index_at + 2..]),
    ));
    out.push(v(
        "key_share",
        "participant_not_in_group",
        "invalid participant index: not in the group",
        "key share of a 2-of-3 group claiming participant index 9",
        patch(&share, index_at, &9u16.to_be_bytes()),
    ));
    out.push(v(
        "key_share",
        "truncated",
        "truncated input: signing share needs 32 more bytes but only 31 remain",
        "key share without the last byte of its secret share",
        share[..share.len() - 1].to_vec(),
    ));
    out.push(v(
        "key_share",
        "point_not_on_curve",
        "invalid verifying share: not a valid curve point",
        "key share whose group's second verifying share is 02 || x with x not on secp256k1",
        patch(&share, GROUP_ENTRIES + 35 + 2, &point_not_on_curve),
    ));
    out.push(v(
        "key_share",
        "wrong_type",
        "wrong type: expected key share, found type byte 0x04",
        "the public group key given to the key share decoder",
        f.group.encode(),
    ));

    // --- identity (secret keystore) -------------------------------------------------
    let id = f.identities[0].to_secret_bytes().to_vec();
    let name_len = f.identities[0].name().len();
    let id_sk = HEADER + 4 + name_len;
    let id_age_len = id_sk + 32;
    out.push(v(
        "identity",
        "invalid_scalar",
        "invalid signing key: not a valid secret key",
        "signing key replaced by the curve order n",
        patch(&id, id_sk, &CURVE_ORDER),
    ));
    out.push(v(
        "identity",
        "zero_signing_key",
        "invalid signing key: not a valid secret key",
        "signing key all zero",
        patch(&id, id_sk, &[0; 32]),
    ));
    out.push(v(
        "identity",
        "bad_age_identity",
        "invalid age identity: not an age X25519 identity",
        "last character of the age secret key changed, so its bech32 checksum fails",
        {
            let last = id.len() - 1;
            let replacement = if id[last] == b'Q' { b'P' } else { b'Q' };
            patch(&id, last, &[replacement])
        },
    ));
    out.push(v(
        "identity",
        "length_overflow",
        "age identity is 129 bytes long, more than the maximum of 128",
        "age identity length prefix 129",
        patch(&id, id_age_len, &129u32.to_be_bytes()),
    ));
    out.push(v(
        "identity",
        "empty_name",
        "invalid name: participant name must be 1 to 64 bytes of printable text",
        "identity with an empty name",
        splice(&id, HEADER..HEADER + 4 + name_len, &[0, 0, 0, 0]),
    ));
    out.push(v(
        "identity",
        "wrong_type",
        "wrong type: expected identity, found type byte 0x01",
        "the public identity card given to the secret identity decoder",
        c.clone(),
    ));
    out
}

/// Valid encodings of real objects and a few non-canonical but valid variants, by target.
fn valid_seeds(f: &Fixture) -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out: Vec<(&'static str, String, Vec<u8>)> = Vec::new();
    for id in &f.identities {
        let card = id.card();
        out.push((
            "identity_card",
            format!("valid-{}", id.name()),
            card.encode(),
        ));
        out.push((
            "identity",
            format!("valid-{}", id.name()),
            id.to_secret_bytes().to_vec(),
        ));
    }
    // Upper-case age recipient (same key, other spelling).
    let card = f.identities[1].card();
    let (_, _, age_len, end) = card_offsets(&card, HEADER);
    out.push((
        "identity_card",
        "uppercase-age-recipient".into(),
        splice(
            &card.encode(),
            age_len + 4..end,
            card.age_recipient().to_uppercase().as_bytes(),
        ),
    ));
    // Identity with a lower-case age secret key and the odd-y twin of its signing key: both
    // accepted, both normalised on re-encoding.
    let id = f.identities[2].to_secret_bytes().to_vec();
    let sk_at = HEADER + 4 + f.identities[2].name().len();
    let lower = {
        let age_at = sk_at + 32 + 4;
        let age = String::from_utf8(id[age_at..].to_vec()).expect("ASCII");
        splice(&id, age_at..id.len(), age.to_lowercase().as_bytes())
    };
    out.push(("identity", "lowercase-age-secret".into(), lower));
    let negated = {
        let sk = bitcoin::secp256k1::SecretKey::from_slice(&id[sk_at..sk_at + 32])
            .expect("valid key")
            .negate();
        patch(&id, sk_at, &sk.secret_bytes())
    };
    out.push(("identity", "odd-y-signing-key".into(), negated));

    out.push(("ceremony_plan", "valid-dkg".into(), f.plan.encode()));
    out.push((
        "ceremony_plan",
        "valid-refresh".into(),
        f.refresh_plan.encode(),
    ));
    out.push((
        "ceremony_plan",
        "valid-repair".into(),
        f.repair_plan.encode(),
    ));

    out.push((
        "ceremony_message",
        "valid-dkg-round1".into(),
        f.round1[0].encode(),
    ));
    out.push((
        "ceremony_message",
        "valid-dkg-round2".into(),
        f.round2[0].encode(),
    ));
    out.push((
        "ceremony_message",
        "valid-dkg-certificate".into(),
        f.certificates[0].encode(),
    ));
    out.push((
        "dkg_certificate",
        "valid-2-of-3".into(),
        f.certificate.encode(),
    ));

    let g = f.group.encode();
    out.push(("group_key", "valid-dkg-2-of-3".into(), g.clone()));
    out.push((
        "group_key",
        "valid-dealer-3-of-5".into(),
        f.dealer_group.encode(),
    ));
    out.push((
        "group_key",
        "unsorted-shares".into(),
        swap_first_entries(&g),
    ));
    let ks = f.shares[0].to_secret_bytes().to_vec();
    out.push(("key_share", "valid-dkg-participant-1".into(), ks.clone()));
    out.push((
        "key_share",
        "valid-dealer-participant-5".into(),
        f.dealer_shares[4].to_secret_bytes().to_vec(),
    ));
    out.push((
        "key_share",
        "unsorted-shares".into(),
        swap_first_entries(&ks),
    ));

    for (i, batch) in f.batches.iter().enumerate() {
        out.push((
            "commitment_batch",
            format!("valid-signer-{}", i + 1),
            batch.encode(),
        ));
    }
    out.push((
        "commitment_batch",
        "valid-single".into(),
        f.small_batch.encode(),
    ));
    out.push((
        "signing_request",
        "valid-three-items".into(),
        f.request.encode(),
    ));
    for r in &f.responses {
        out.push((
            "signature_shares",
            format!("valid-signer-{}", r.signer),
            r.encode(),
        ));
    }
    out
}

/// Swaps the first two verifying-share entries of a group key or key share encoding.
fn swap_first_entries(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let a = GROUP_ENTRIES..GROUP_ENTRIES + 35;
    let b = GROUP_ENTRIES + 35..GROUP_ENTRIES + 70;
    let first = bytes[a.clone()].to_vec();
    out[a].copy_from_slice(&bytes[b.clone()]);
    out[b].copy_from_slice(&first);
    out
}

fn write_dir(dir: &std::path::Path, files: &[(String, Vec<u8>)]) {
    if dir.exists() {
        for old in files_in(dir) {
            fs::remove_file(&old).expect("remove old file");
        }
    }
    fs::create_dir_all(dir).expect("create directory");
    for (name, bytes) in files {
        fs::write(dir.join(name), bytes).expect("write file");
    }
}

#[test]
#[ignore = "regenerates the committed corpus; run by hand"]
fn regenerate_corpus() {
    let f = Fixture::build();
    let seeds = valid_seeds(&f);
    let negatives = negative_vectors(&f);
    for (target, run) in custody_fuzz::TARGETS {
        let mut files: Vec<(String, Vec<u8>)> = seeds
            .iter()
            .filter(|(t, _, _)| *t == target)
            .map(|(_, name, bytes)| (name.clone(), bytes.clone()))
            .collect();
        let first = files.first().expect("a valid seed per target").1.clone();
        files.push(("truncated-header".into(), first[..HEADER].to_vec()));
        files.push(("truncated-half".into(), first[..first.len() / 2].to_vec()));
        files.push((
            "truncated-last-byte".into(),
            first[..first.len() - 1].to_vec(),
        ));
        let mut trailing = first.clone();
        trailing.push(0);
        files.push(("trailing-byte".into(), trailing));
        for n in negatives.iter().filter(|n| n.ty == target) {
            if files.len() == 20 {
                break;
            }
            files.push((format!("neg-{}", n.failure), n.bytes.clone()));
        }
        for (_, bytes) in &files {
            run(bytes);
        }
        write_dir(&fuzz_dir().join("corpus").join(target), &files);
    }
}

#[test]
#[ignore = "regenerates the committed negative vectors; run by hand"]
fn regenerate_negative_vectors() {
    let f = Fixture::build();
    let vectors = negative_vectors(&f);
    let mut files = Vec::new();
    for vector in &vectors {
        match custody_fuzz::decode(vector.ty, &vector.bytes).expect("known type") {
            Ok(()) => panic!("{} decodes", vector.file_name()),
            Err(e) => assert!(
                e.to_string().contains(&vector.expect),
                "{}: error {e:?} does not contain {:?}",
                vector.file_name(),
                vector.expect
            ),
        }
        files.push((vector.file_name(), vector.render().into_bytes()));
    }
    let mut names: Vec<_> = files.iter().map(|(n, _)| n.clone()).collect();
    names.dedup();
    assert_eq!(names.len(), files.len(), "vector names are unique");
    write_dir(&negative_dir(), &files);
}

// --- worked examples for docs/formats/threshold.md ----------------------------------

/// Builds an annotated hex listing: one field per line, long fields wrapped at 33 bytes.
struct Listing {
    out: String,
    at: usize,
    bytes: Vec<u8>,
}

impl Listing {
    fn new(bytes: Vec<u8>) -> Self {
        Listing {
            out: String::new(),
            at: 0,
            bytes,
        }
    }

    fn field(&mut self, len: usize, note: impl AsRef<str>) -> &mut Self {
        let bytes = &self.bytes[self.at..self.at + len];
        for (i, chunk) in bytes.chunks(33).enumerate() {
            let hex = hex::encode(chunk);
            if i == 0 {
                writeln!(self.out, "{hex:<66}  {}", note.as_ref()).expect("write to String");
            } else {
                writeln!(self.out, "{hex}").expect("write to String");
            }
        }
        self.at += len;
        self
    }

    fn header(&mut self, type_name: &str) -> &mut Self {
        self.field(4, "magic \"CPTH\"")
            .field(1, "format version 1")
            .field(1, format!("type byte: {type_name}"))
    }

    fn finish(&self) -> String {
        assert_eq!(self.at, self.bytes.len(), "every byte annotated");
        self.out.clone()
    }
}

fn card_listing(card: &IdentityCard) -> String {
    let mut l = Listing::new(card.encode());
    l.header("0x01 identity card")
        .field(4, format!("name length = {}", card.name().len()))
        .field(card.name().len(), format!("name \"{}\"", card.name()))
        .field(32, "BIP340 x-only signing key")
        .field(
            4,
            format!("age recipient length = {}", card.age_recipient().len()),
        )
        .field(
            card.age_recipient().len(),
            format!("age recipient \"{}\"", card.age_recipient()),
        );
    l.finish()
}

fn batch_listing(batch: &CommitmentBatch) -> String {
    let mut l = Listing::new(batch.encode());
    l.header("0x05 commitment batch")
        .field(33, "group public key (compressed SEC1)")
        .field(2, format!("signer = {}", batch.signer))
        .field(2, format!("commitment count = {}", batch.commitments.len()));
    for (id, _) in &batch.commitments {
        l.field(8, "seed id (first 8 bytes of the nonce-seed id hash)")
            .field(8, format!("counter = {}", id.counter))
            .field(33, "hiding nonce commitment D (compressed SEC1)")
            .field(33, "binding nonce commitment E (compressed SEC1)");
    }
    l.finish()
}

fn shares_listing(shares: &SignatureShares) -> String {
    let mut l = Listing::new(shares.encode());
    l.header("0x07 signature shares")
        .field(16, "session id")
        .field(32, "request digest")
        .field(2, format!("signer = {}", shares.signer))
        .field(2, format!("share count = {}", shares.shares.len()));
    for i in 0..shares.shares.len() {
        l.field(32, format!("signature share z for item {i}"));
    }
    l.finish()
}

fn group_listing(group: &GroupKey) -> String {
    let mut l = Listing::new(group.encode());
    l.header("0x04 group key")
        .field(1, format!("network = {:?}", group.network()))
        .field(32, "BIP32 chain code")
        .field(2, format!("threshold = {}", group.threshold()))
        .field(33, "group public key (compressed SEC1)")
        .field(2, format!("participant count = {}", group.participants()));
    for i in 1..=group.participants() {
        l.field(2, format!("participant index = {i}"))
            .field(33, format!("verifying share of participant {i}"));
    }
    l.finish()
}

/// The worked examples of the format document, by name. `tests/format_doc.rs` checks the
/// document's hex against the same objects.
fn examples(f: &Fixture) -> Vec<(&'static str, String)> {
    vec![
        ("identity_card", card_listing(&f.identities[0].card())),
        ("commitment_batch", batch_listing(&f.small_batch)),
        ("signature_shares", shares_listing(&f.responses[0])),
        ("group_key", group_listing(&f.group)),
    ]
}

#[test]
#[ignore = "writes the annotated examples for docs/formats/threshold.md; run by hand"]
fn regenerate_format_examples() {
    let f = Fixture::build();
    let mut out = String::new();
    for (name, listing) in examples(&f) {
        writeln!(out, "<!-- example: {name} -->\n```text\n{listing}```\n").expect("write");
    }
    let card = f.identities[0].card();
    writeln!(out, "fingerprint of alice: {}", card.fingerprint()).expect("write");
    writeln!(out, "plan: {}", hex::encode(f.plan.encode())).expect("write");
    writeln!(out, "plan hash: {}", hex::encode(f.plan.hash())).expect("write");
    writeln!(out, "request: {}", hex::encode(f.request.encode())).expect("write");
    writeln!(out, "request digest: {}", hex::encode(f.request.digest())).expect("write");
    writeln!(out, "seed id 2: {}", hex::encode(f.seeds[1].id())).expect("write");
    writeln!(out, "round1 from 1: {}", hex::encode(f.round1[0].encode())).expect("write");
    writeln!(out, "certificate: {}", hex::encode(f.certificate.encode())).expect("write");
    writeln!(
        out,
        "key share 1 len: {}",
        f.shares[0].to_secret_bytes().len()
    )
    .expect("write");
    writeln!(
        out,
        "identity 1 len: {}",
        f.identities[0].to_secret_bytes().len()
    )
    .expect("write");
    let dir = workspace_dir().join("target");
    fs::create_dir_all(&dir).expect("create target/");
    fs::write(dir.join("threshold-format-examples.md"), out).expect("write examples");
}
