//! Generators for the committed seed corpus (`fuzz/corpus/<target>/`), the negative
//! vectors (`test-vectors/negative/`) and the worked examples of
//! `docs/formats/threshold.md`.
//!
//! All three are ignored: they rewrite committed files and are run by hand after a
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

use bitcoin::psbt::Psbt;
use common::*;
use custody_airgap::envelope::{Envelope, EnvelopeType, SealParams};
use custody_airgap::file::{encode_psbt, PsbtEncoding};
use custody_airgap::qr::{encode_bbqr, encode_ur, BbqrFileType, Collector, Profile, UrKind};
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
    out.push(v(
        "identity_card",
        "uppercase_age_recipient",
        "invalid age recipient: not in canonical lower-case form",
        "the same age key spelled in upper case would give the card a second fingerprint",
        uppercase_age_card(f),
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
    // Upper-case age recipient (same key, other spelling): rejected since age recipients
    // must be canonical (also the vector `identity_card-uppercase_age_recipient`), kept as
    // a seed next to the valid cards.
    out.push((
        "identity_card",
        "uppercase-age-recipient".into(),
        uppercase_age_card(f),
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

/// Bob's card with its age recipient spelled in upper case.
fn uppercase_age_card(f: &Fixture) -> Vec<u8> {
    let card = f.identities[1].card();
    let (_, _, age_len, end) = card_offsets(&card, HEADER);
    splice(
        &card.encode(),
        age_len + 4..end,
        card.age_recipient().to_uppercase().as_bytes(),
    )
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

/// The `custody-threshold` targets, whose corpus [`regenerate_corpus`] writes (the
/// `custody-airgap` and `custody-bitcoin` targets have [`regenerate_airgap_bitcoin_corpus`]).
const THRESHOLD_TARGETS: [&str; 10] = [
    "identity_card",
    "ceremony_plan",
    "ceremony_message",
    "dkg_certificate",
    "group_key",
    "commitment_batch",
    "signing_request",
    "signature_shares",
    "key_share",
    "identity",
];

/// The test function of a target.
fn target_fn(target: &str) -> custody_fuzz::TestFn {
    custody_fuzz::TARGETS
        .iter()
        .find(|(t, _)| *t == target)
        .map(|(_, run)| *run)
        .unwrap_or_else(|| panic!("no target {target}"))
}

#[test]
#[ignore = "regenerates the committed corpus; run by hand"]
fn regenerate_corpus() {
    let f = Fixture::build();
    let seeds = valid_seeds(&f);
    let negatives = negative_vectors(&f);
    for target in THRESHOLD_TARGETS {
        let run = target_fn(target);
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

/// Checks every vector against its decoder, then replaces the vector files of the types
/// among `vectors` (and only those: the threshold and the air-gap generators share the
/// directory) with them.
fn write_vectors(vectors: &[Vector]) {
    let mut files = Vec::new();
    for vector in vectors {
        match custody_fuzz::decode(vector.ty, &vector.bytes).expect("known type") {
            Ok(()) => panic!("{} decodes", vector.file_name()),
            Err(e) => assert!(
                e.contains(&vector.expect),
                "{}: error {e:?} does not contain {:?}",
                vector.file_name(),
                vector.expect
            ),
        }
        // The harness takes it without panicking.
        target_fn(vector.ty)(&vector.bytes);
        files.push((vector.file_name(), vector.render().into_bytes()));
    }
    let mut names: Vec<_> = files.iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), files.len(), "vector names are unique");
    let prefixes: Vec<String> = vectors.iter().map(|v| format!("{}-", v.ty)).collect();
    let dir = negative_dir();
    for old in files_in(&dir) {
        let name = old.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if prefixes.iter().any(|p| name.starts_with(p.as_str())) {
            fs::remove_file(&old).expect("remove old vector");
        }
    }
    for (name, bytes) in &files {
        fs::write(dir.join(name), bytes).expect("write vector");
    }
}

#[test]
#[ignore = "regenerates the committed negative vectors; run by hand"]
fn regenerate_negative_vectors() {
    let f = Fixture::build();
    write_vectors(&negative_vectors(&f));
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

// --- custody-airgap and custody-bitcoin targets ---------------------------------------

/// Named corpus files of one target.
type Seeds = Vec<(String, Vec<u8>)>;

/// Seal time of the envelope seeds (Unix seconds) and their session.
const SEAL_TIME: u64 = 1_790_000_000;
const SESSION: [u8; 16] = [0x5f; 16];

/// Offsets inside an envelope (see `crates/custody-airgap/src/envelope.rs`): version, type
/// byte, flags, recipient count (after magic 4, version, type, flags, session 16, sender 32,
/// sequence, created and expiry times 8 each).
const ENV_VERSION: usize = 4;
const ENV_TYPE: usize = 5;
const ENV_FLAGS: usize = 6;
const ENV_RECIPIENT_COUNT: usize = 4 + 1 + 1 + 1 + 16 + 32 + 8 + 8 + 8;

/// Seals `payload` from alice (the first fixture identity), encrypted to `recipients` when
/// there are any. The signature draws from `rng` (fixed seed: reproducible); age draws its
/// own randomness, so encrypted envelopes are not.
fn seal(
    f: &Fixture,
    kind: EnvelopeType,
    sequence: u64,
    payload: &[u8],
    recipients: &[IdentityCard],
    rng: &mut rand_chacha::ChaCha20Rng,
) -> Vec<u8> {
    let params = SealParams {
        kind,
        session_id: SESSION,
        sequence,
        created_at: SEAL_TIME,
        expires_at: SEAL_TIME + 3600,
        recipients,
    };
    Envelope::seal(&f.identities[0], &params, payload, rng)
        .expect("valid parameters")
        .encode()
}

/// The `custody_bitcoin::fuzzing::corpus_seeds()` PSBT called `name`.
fn psbt_seed(name: &str) -> Vec<u8> {
    custody_bitcoin::fuzzing::corpus_seeds()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| bytes)
        .unwrap_or_else(|| panic!("no corpus seed {name}"))
}

/// A plain envelope from alice carrying the one-commitment batch: the base of the envelope
/// negative vectors (small, reproducible).
fn plain_envelope(f: &Fixture) -> Vec<u8> {
    let mut r = rng(0xe1);
    seal(
        f,
        EnvelopeType::CommitmentBatch,
        1,
        &f.small_batch.encode(),
        &[],
        &mut r,
    )
}

fn envelope_seeds(f: &Fixture) -> Seeds {
    let mut r = rng(0xe2);
    let cards = [f.identities[1].card(), f.identities[2].card()];
    let plain = plain_envelope(f);
    let mut out = vec![
        ("valid-plain-commitments".to_owned(), plain.clone()),
        (
            "valid-plain-signing-request".into(),
            seal(
                f,
                EnvelopeType::SigningRequest,
                2,
                &f.request.encode(),
                &[],
                &mut r,
            ),
        ),
        (
            "valid-plain-psbt".into(),
            seal(
                f,
                EnvelopeType::Psbt,
                3,
                &psbt_seed("key_path"),
                &[],
                &mut r,
            ),
        ),
        (
            "valid-plain-empty-payload".into(),
            seal(f, EnvelopeType::IdentityCard, 4, &[], &[], &mut r),
        ),
        (
            "valid-encrypted-share-backup".into(),
            seal(
                f,
                EnvelopeType::ShareBackup,
                5,
                &f.dealer_shares[0].to_secret_bytes(),
                &cards,
                &mut r,
            ),
        ),
        (
            "valid-encrypted-signature-shares".into(),
            seal(
                f,
                EnvelopeType::SignatureShares,
                6,
                &f.responses[0].encode(),
                &cards,
                &mut r,
            ),
        ),
        ("truncated-magic".into(), plain[..3].to_vec()),
        ("truncated-header".into(), plain[..40].to_vec()),
        ("truncated-half".into(), plain[..plain.len() / 2].to_vec()),
        (
            "truncated-last-byte".into(),
            plain[..plain.len() - 1].to_vec(),
        ),
    ];
    let mut trailing = plain;
    trailing.push(0);
    out.push(("trailing-byte".into(), trailing));
    for n in airgap_negative_vectors(f) {
        if n.ty == "envelope"
            && ["recipients_without_encryption", "payload_too_large"].contains(&n.failure)
        {
            out.push((format!("neg-{}", n.failure), n.bytes));
        }
    }
    out
}

/// `text` with a line break (CR LF) after every `width` characters.
fn wrap(text: &[u8], width: usize) -> Vec<u8> {
    let text = text.trim_ascii_end();
    let mut out = Vec::new();
    for line in text.chunks(width) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn psbt_file_seeds() -> Seeds {
    let key_path = psbt_seed("key_path");
    let leaf = psbt_seed("recovery_leaf");
    let base64 = encode_psbt(&key_path, PsbtEncoding::Base64);
    let hex = encode_psbt(&key_path, PsbtEncoding::Hex);
    vec![
        ("valid-binary-key_path".to_owned(), key_path.clone()),
        ("valid-base64-key_path".into(), base64.clone()),
        ("valid-hex-key_path".into(), hex.clone()),
        ("valid-binary-recovery_leaf".into(), leaf.clone()),
        (
            "valid-base64-wrapped-recovery_leaf".into(),
            wrap(&encode_psbt(&leaf, PsbtEncoding::Base64), 64),
        ),
        (
            "valid-hex-uppercase-no-newline".into(),
            encode_psbt(&leaf, PsbtEncoding::Hex)
                .trim_ascii_end()
                .to_ascii_uppercase(),
        ),
        ("truncated-binary-magic".into(), key_path[..4].to_vec()),
        (
            "truncated-base64".into(),
            base64[..base64.len() / 2 + 1].to_vec(),
        ),
        (
            "truncated-hex-odd".into(),
            hex[..hex.len() / 2 + 1].to_vec(),
        ),
        (
            "base64-of-wrong-magic".into(),
            encode_psbt(b"psbt\xfe", PsbtEncoding::Base64),
        ),
        ("not-psbt-text".into(), b"not a psbt\n".to_vec()),
    ]
}

/// The CBOR fountain parts inside multi-part UR frames (bytewords decoded, CRC removed):
/// what `fuzz_ur_lines` frames itself around a line that does not start with `ur:`.
fn raw_cbor_parts(frames: &[String]) -> Vec<Vec<u8>> {
    frames
        .iter()
        .map(|frame| {
            let body = frame.rsplit('/').next().expect("a frame has a body");
            ur::bytewords::decode(&body.to_ascii_lowercase(), ur::bytewords::Style::Minimal)
                .expect("our own frames decode")
        })
        .collect()
}

fn lines(frames: &[String]) -> Vec<u8> {
    frames.join("\n").into_bytes()
}

fn collects(text: &[u8]) -> bool {
    let mut collector = Collector::new();
    for line in text.split(|&b| b == b'\n') {
        let _ = collector.push_line(&String::from_utf8_lossy(line));
    }
    collector.finish().is_ok()
}

fn ur_seeds(f: &Fixture) -> Seeds {
    let key_path = psbt_seed("key_path");
    let leaf = psbt_seed("recovery_leaf");
    let envelope = plain_envelope(f);

    let mut encoder = encode_ur(UrKind::CryptoPsbt, &key_path, Profile::Low).expect("encodes");
    let n = encoder.fragment_count();
    assert!(n >= 3, "the key-path PSBT needs several Low frames");
    let first_pass = encoder.next_parts(n);
    // Fountain parts after the first pass, each mixing several fragments: take as few as
    // complete the message.
    let mut mixed = Vec::new();
    while !collects(&lines(&mixed)) {
        mixed.push(encoder.next_part());
        assert!(mixed.len() < 4 * n, "mixed parts complete the message");
    }

    let mut other = encode_ur(UrKind::CryptoPsbt, &leaf, Profile::Low).expect("encodes");
    let other_frames = other.next_parts(2);
    let mixed_messages = vec![
        first_pass[0].clone(),
        other_frames[0].clone(),
        first_pass[1].clone(),
        other_frames[1].clone(),
    ];

    let mut single = encode_ur(UrKind::Envelope, &envelope, Profile::High).expect("encodes");
    assert!(single.is_single_part());
    let mut env_multi = encode_ur(UrKind::Envelope, &envelope, Profile::Low).expect("encodes");
    let env_frames = env_multi.next_parts(env_multi.fragment_count() + 1);

    let mut alias = encode_ur(UrKind::CryptoPsbt, &key_path, Profile::High).expect("encodes");
    let alias = alias
        .next_part()
        .to_ascii_lowercase()
        .replacen("ur:crypto-psbt/", "ur:psbt/", 1);

    // Repeats, blank lines, a `QR-Code:` prefix (zbarimg without --raw), a foreign line and
    // the frames out of order: what a scanner log looks like.
    let mut noisy = vec![
        format!("QR-Code:{}", first_pass[n - 1]),
        String::new(),
        "hello".to_owned(),
    ];
    noisy.extend(first_pass.iter().rev().cloned());
    noisy.push(first_pass[0].clone());

    // Raw CBOR parts (no `ur:` prefix): the lines fuzz_ur_lines frames itself. A part that
    // contains a line feed would be split, so only the others are kept.
    let raw: Vec<Vec<u8>> = raw_cbor_parts(&first_pass)
        .into_iter()
        .filter(|part| !part.contains(&b'\n') && !part.starts_with(b"ur:"))
        .collect();
    assert!(!raw.is_empty());

    let out = vec![
        ("valid-psbt-first-pass".to_owned(), lines(&first_pass)),
        ("valid-psbt-mixed-parts".into(), lines(&mixed)),
        ("valid-psbt-alias-lowercase".into(), alias.into_bytes()),
        (
            "valid-envelope-single-part".into(),
            single.next_part().into_bytes(),
        ),
        ("valid-envelope-multi-part".into(), lines(&env_frames)),
        ("valid-noisy-scanner-log".into(), lines(&noisy)),
        ("partial-psbt".into(), lines(&first_pass[..n - 1])),
        ("mixed-messages".into(), lines(&mixed_messages)),
        ("raw-cbor-parts".into(), raw.join(&b'\n')),
        (
            "truncated-frame".into(),
            first_pass[0].as_bytes()[..first_pass[0].len() / 2].to_vec(),
        ),
    ];
    for (name, text) in &out {
        assert_eq!(
            collects(text),
            name.starts_with("valid-"),
            "{name}: completes exactly when named valid-"
        );
    }
    out
}

fn bbqr_seeds(f: &Fixture) -> Seeds {
    let key_path = psbt_seed("key_path");
    let psbt = encode_bbqr(BbqrFileType::Psbt, &key_path, Profile::Low).expect("encodes");
    assert!(
        psbt.len() >= 2,
        "the key-path PSBT needs several Low frames"
    );
    let leaf = encode_bbqr(
        BbqrFileType::Psbt,
        &psbt_seed("recovery_leaf"),
        Profile::Low,
    )
    .expect("encodes");
    let shares = encode_bbqr(
        BbqrFileType::Cbor,
        &f.responses[0].encode(),
        Profile::Normal,
    )
    .expect("encodes");
    let json = encode_bbqr(
        BbqrFileType::Json,
        br#"{"session":"5f5f5f5f","step":"dkg-round1","sequence":1}"#,
        Profile::Normal,
    )
    .expect("encodes");
    // BBQr's hex (`H`) and uncompressed base32 (`2`) encodings, which our encoder does not
    // pick for these messages (zlib makes them smaller) but readers must take.
    let hex_frame = format!(
        "B$HU0100{}",
        hex::encode_upper("CoinPort custody: hex-encoded BBQr text")
    );
    let base32_frames = [
        format!("B$2U0200{}", base32(b"CoinPort custody: base32 BBQr ")),
        format!("B$2U0201{}", base32(b"in two parts")),
    ];
    let mut collector = Collector::new();
    for frame in &base32_frames {
        collector.push_line(frame).expect("a valid base32 frame");
    }
    assert_eq!(
        collector.finish().expect("complete").bytes(),
        b"CoinPort custody: base32 BBQr in two parts"
    );
    let mut reordered: Vec<String> = psbt.iter().rev().cloned().collect();
    reordered.push(psbt[0].clone());
    let mixed = vec![psbt[0].clone(), leaf[1].clone()];
    let out = vec![
        ("valid-psbt".to_owned(), lines(&psbt)),
        ("valid-psbt-reordered-repeated".into(), lines(&reordered)),
        ("valid-cbor-signature-shares".into(), lines(&shares)),
        ("valid-base32-two-parts".into(), lines(&base32_frames)),
        ("valid-json".into(), lines(&json)),
        ("valid-hex-text".into(), hex_frame.into_bytes()),
        ("partial-psbt".into(), lines(&psbt[..psbt.len() - 1])),
        ("mixed-messages".into(), lines(&mixed)),
        (
            "truncated-frame".into(),
            psbt[0].as_bytes()[..psbt[0].len() / 2].to_vec(),
        ),
        (
            "valid-lowercase-json".into(),
            json[0].to_ascii_lowercase().into_bytes(),
        ),
    ];
    for (name, text) in &out {
        assert_eq!(
            collects(text),
            name.starts_with("valid-"),
            "{name}: completes exactly when named valid-"
        );
    }
    out
}

/// RFC 4648 base32 without padding, as BBQr's `2` encoding writes it (every part but the
/// last must be a multiple of 5 bytes).
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut acc, mut bits) = (0u32, 0);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

fn psbt_inspect_seeds() -> Seeds {
    let mut out: Vec<(String, Vec<u8>)> = custody_bitcoin::fuzzing::corpus_seeds()
        .into_iter()
        .map(|(name, bytes)| (format!("valid-{name}"), bytes))
        .collect();
    let key_path = psbt_seed("key_path");
    out.push((
        "truncated-half".into(),
        key_path[..key_path.len() / 2].to_vec(),
    ));
    out.push((
        "truncated-last-byte".into(),
        key_path[..key_path.len() - 1].to_vec(),
    ));
    let mut no_utxo = Psbt::deserialize(&key_path).expect("a seed parses");
    no_utxo.inputs[0].witness_utxo = None;
    out.push(("no-witness-utxo".into(), no_utxo.serialize()));
    let mut no_origins = Psbt::deserialize(&key_path).expect("a seed parses");
    no_origins.inputs[1].tap_key_origins.clear();
    no_origins.outputs[0].tap_key_origins.clear();
    out.push(("no-key-origins".into(), no_origins.serialize()));
    let mut big_output = Psbt::deserialize(&key_path).expect("a seed parses");
    big_output.unsigned_tx.output[0].value = bitcoin::Amount::from_sat(200_000);
    out.push(("output-exceeds-inputs".into(), big_output.serialize()));
    out
}

/// The key-path PSBT with `fields` set as CoinPort proprietary fields.
fn psbt_with(fields: &[(u8, &[u8], Vec<u8>)]) -> Vec<u8> {
    let mut psbt = Psbt::deserialize(&psbt_seed("key_path")).expect("a seed parses");
    for (subtype, key, value) in fields {
        psbt.proprietary.insert(
            bitcoin::psbt::raw::ProprietaryKey {
                prefix: custody_bitcoin::fields::PREFIX.to_vec(),
                subtype: *subtype,
                key: key.to_vec(),
            },
            value.clone(),
        );
    }
    psbt.serialize()
}

fn psbt_fields_seeds(f: &Fixture) -> Seeds {
    let request = f.request.encode();
    let shares_1 = f.responses[0].encode();
    let shares_3 = f.responses[1].encode();
    assert_eq!((f.responses[0].signer, f.responses[1].signer), (1, 3));
    let both = psbt_with(&[
        (0, &[], request.clone()),
        (1, &[0, 1], shares_1.clone()),
        (1, &[0, 3], shares_3.clone()),
    ]);
    vec![
        (
            "valid-request".to_owned(),
            psbt_with(&[(0, &[], request.clone())]),
        ),
        ("valid-request-and-shares".into(), both.clone()),
        ("no-fields".into(), psbt_seed("key_path")),
        (
            "shares-signer-mismatch".into(),
            psbt_with(&[(0, &[], request.clone()), (1, &[0, 2], shares_1.clone())]),
        ),
        (
            "request-with-key-data".into(),
            psbt_with(&[(0, &[0], request.clone())]),
        ),
        (
            "shares-key-too-short".into(),
            psbt_with(&[(0, &[], request.clone()), (1, &[1], shares_1)]),
        ),
        (
            "reserved-subtype".into(),
            psbt_with(&[(0, &[], request.clone()), (2, &[], b"policy".to_vec())]),
        ),
        (
            "request-truncated".into(),
            psbt_with(&[(0, &[], request[..request.len() / 2].to_vec())]),
        ),
        ("truncated-half".into(), both[..both.len() / 2].to_vec()),
    ]
}

/// One proprietary-field input in the layout of `do_test_proprietary_field`: subtype, key
/// data length, key data, value.
fn field(subtype: u8, key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![subtype, u8::try_from(key.len()).expect("short key")];
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    out
}

fn proprietary_field_seeds(f: &Fixture) -> Seeds {
    let request = f.request.encode();
    let shares_1 = f.responses[0].encode();
    let shares_3 = f.responses[1].encode();
    vec![
        ("valid-request".to_owned(), field(0, &[], &request)),
        ("valid-shares-signer-1".into(), field(1, &[0, 1], &shares_1)),
        ("valid-shares-signer-3".into(), field(1, &[0, 3], &shares_3)),
        ("request-with-key-data".into(), field(0, &[0], &request)),
        ("shares-key-too-short".into(), field(1, &[1], &shares_1)),
        (
            "shares-signer-mismatch".into(),
            field(1, &[0, 2], &shares_1),
        ),
        ("reserved-subtype".into(), field(2, &[], b"policy")),
        (
            "request-truncated".into(),
            field(0, &[], &request[..request.len() / 2]),
        ),
        ("empty-value".into(), field(0, &[], &[])),
        ("key-length-beyond-input".into(), vec![1, 0xff, 0]),
    ]
}

/// Negative vectors for `custody_fuzz::decode`'s `envelope` and `psbt_file` types.
fn airgap_negative_vectors(f: &Fixture) -> Vec<Vector> {
    let plain = plain_envelope(f);
    let payload_len_at = ENV_RECIPIENT_COUNT + 1;
    let payload_len = f.small_batch.encode().len();
    let mut out = vec![
        v(
            "envelope",
            "truncated",
            "envelope is truncated: signature is incomplete",
            "a plain envelope from alice (a commitment batch) cut 10 bytes into the signature",
            plain[..plain.len() - 54].to_vec(),
        ),
        v(
            "envelope",
            "truncated_header",
            "envelope is truncated: sender is incomplete",
            "the same envelope cut 20 bytes into the sender key",
            plain[..ENV_FLAGS + 1 + 16 + 20].to_vec(),
        ),
        v(
            "envelope",
            "empty",
            "not a CoinPort envelope",
            "no bytes at all",
            Vec::new(),
        ),
        v(
            "envelope",
            "bad_magic",
            "not a CoinPort envelope (the file or frame does not start with \"CPEN\")",
            "magic CPTH (a threshold encoding) instead of CPEN",
            patch(&plain, 0, b"CPTH"),
        ),
        v(
            "envelope",
            "wrong_version",
            "envelope format version 2 is not supported; this build reads version 1",
            "format version byte 2",
            patch(&plain, ENV_VERSION, &[2]),
        ),
        v(
            "envelope",
            "unknown_type",
            "unknown envelope message type 10",
            "message type byte 10 (types are 1 to 9)",
            patch(&plain, ENV_TYPE, &[10]),
        ),
        v(
            "envelope",
            "type_zero",
            "unknown envelope message type 0",
            "message type byte 0",
            patch(&plain, ENV_TYPE, &[0]),
        ),
        v(
            "envelope",
            "unknown_flags",
            "unknown envelope flags 0x03",
            "flags 0x03: bit 1 is not defined (bit 0 is 'encrypted')",
            patch(&plain, ENV_FLAGS, &[3]),
        ),
        v(
            "envelope",
            "encrypted_without_recipients",
            "envelope says it is encrypted but lists 0 recipients",
            "the encrypted flag set on a plain envelope with no recipients",
            patch(&plain, ENV_FLAGS, &[1]),
        ),
        v(
            "envelope",
            "recipients_without_encryption",
            "envelope says it is not encrypted but lists 2 recipients",
            "bob and carol listed as recipients (count 2) but the encrypted flag clear",
            splice(
                &plain,
                ENV_RECIPIENT_COUNT..ENV_RECIPIENT_COUNT + 1,
                &[
                    &[2u8][..],
                    &f.identities[1].card().signing_key()[..],
                    &f.identities[2].card().signing_key()[..],
                ]
                .concat(),
            ),
        ),
        v(
            "envelope",
            "truncated_recipients",
            "envelope is truncated: recipient is incomplete",
            "encrypted flag and recipient count 2, then only one recipient key and the input ends",
            [
                &plain[..ENV_FLAGS],
                &[1u8][..],
                &plain[ENV_FLAGS + 1..ENV_RECIPIENT_COUNT],
                &[2u8][..],
                &f.identities[1].card().signing_key()[..],
            ]
            .concat(),
        ),
        v(
            "envelope",
            "payload_too_large",
            "envelope payload of 8388609 bytes exceeds the maximum of 8388608",
            "payload length 0x00800001, one byte over the 8 MiB limit (checked before reading)",
            patch(&plain, payload_len_at, &0x0080_0001u32.to_be_bytes()),
        ),
        v(
            "envelope",
            "payload_longer_than_input",
            "envelope is truncated: payload is incomplete",
            "payload length 0x00010000, more than the input holds but within the limit",
            patch(&plain, payload_len_at, &0x0001_0000u32.to_be_bytes()),
        ),
        v(
            "envelope",
            "payload_length_short",
            "1 unexpected bytes after the envelope signature",
            format!(
                "payload length {} instead of {payload_len}: the last signature byte is left over",
                payload_len - 1
            ),
            patch(
                &plain,
                payload_len_at,
                &u32::try_from(payload_len - 1).expect("small").to_be_bytes(),
            ),
        ),
        v(
            "envelope",
            "trailing_bytes",
            "2 unexpected bytes after the envelope signature",
            "two zero bytes after the signature",
            [&plain[..], &[0u8, 0][..]].concat(),
        ),
    ];

    let key_path = psbt_seed("key_path");
    let hex = encode_psbt(&key_path, PsbtEncoding::Hex);
    let base64 = encode_psbt(&key_path, PsbtEncoding::Base64);
    out.extend([
        v(
            "psbt_file",
            "not_psbt",
            "not a PSBT: expected binary starting with \"psbt\\xff\", or the same in base64 or hex",
            "a final transaction file (hex of a transaction, not of a PSBT)",
            b"02000000000101".to_vec(),
        ),
        v(
            "psbt_file",
            "empty",
            "not a PSBT",
            "an empty file",
            Vec::new(),
        ),
        v(
            "psbt_file",
            "binary_wrong_separator",
            "not a PSBT",
            "binary magic psbt followed by 0x00 instead of the 0xff separator",
            patch(&key_path, 4, &[0]),
        ),
        v(
            "psbt_file",
            "binary_magic_only_partly",
            "not a PSBT",
            "the first 4 bytes of a binary PSBT (psbt without the separator)",
            key_path[..4].to_vec(),
        ),
        v(
            "psbt_file",
            "bad_hex",
            "PSBT text is not valid hex",
            "a hex PSBT file with one digit replaced by 'g'",
            patch(&hex, 20, b"g"),
        ),
        v(
            "psbt_file",
            "odd_hex",
            "PSBT text is not valid hex",
            "a hex PSBT file with the last digit removed (odd length)",
            [&hex[..hex.len() - 2], &b"\n"[..]].concat(),
        ),
        v(
            "psbt_file",
            "bad_base64",
            "PSBT text is not valid base64",
            "a base64 PSBT file with a '!' in it",
            patch(&base64, 12, b"!"),
        ),
        v(
            "psbt_file",
            "base64_bad_padding",
            "PSBT text is not valid base64",
            format!(
                "a base64 PSBT file without its last character ({:?}), so the final group of four is short",
                char::from(base64.trim_ascii_end()[base64.trim_ascii_end().len() - 1])
            ),
            base64.trim_ascii_end()[..base64.trim_ascii_end().len() - 1].to_vec(),
        ),
        v(
            "psbt_file",
            "base64_not_psbt",
            "PSBT text is not valid base64",
            "valid base64 starting with cHNidP that decodes to psbt 0xfe, not psbt 0xff",
            b"cHNidP4=\n".to_vec(),
        ),
    ]);
    out
}

#[test]
#[ignore = "regenerates the committed corpus; run by hand"]
fn regenerate_airgap_bitcoin_corpus() {
    let f = Fixture::build();
    let targets: [(&str, Seeds); 7] = [
        ("envelope", envelope_seeds(&f)),
        ("psbt_file", psbt_file_seeds()),
        ("ur_lines", ur_seeds(&f)),
        ("bbqr_lines", bbqr_seeds(&f)),
        ("psbt_inspect", psbt_inspect_seeds()),
        ("psbt_fields", psbt_fields_seeds(&f)),
        ("proprietary_field", proprietary_field_seeds(&f)),
    ];
    for (target, files) in &targets {
        assert!(
            (5..=15).contains(&files.len()),
            "{target}: {} seeds",
            files.len()
        );
        let run = target_fn(target);
        for (name, bytes) in files {
            assert!(
                bytes.len() <= 4096,
                "{target}/{name}: {} bytes",
                bytes.len()
            );
            run(bytes);
            if name.starts_with("valid-") {
                if let Some(result) = custody_fuzz::decode(target, bytes) {
                    assert!(result.is_ok(), "{target}/{name}: {result:?}");
                }
            }
        }
        write_dir(&fuzz_dir().join("corpus").join(target), files);
    }
}

#[test]
#[ignore = "regenerates the committed negative vectors; run by hand"]
fn regenerate_airgap_negative_vectors() {
    let f = Fixture::build();
    write_vectors(&airgap_negative_vectors(&f));
}
