//! Ceremony records: what a DKG, refresh or repair produced, for the minutes, and
//! `record verify`, which checks a record against this signer's own state.
//!
//! # Format (`coinport-ceremony-record/1`, JSON)
//! - `format`, `kind` (`dkg`, `refresh`, `repair`), `ceremony_id`, `plan_hash` (hex);
//! - `threshold`, `participant_count`, `network`, `purpose`;
//! - `participants`: `index`, `name`, `fingerprint`, `card` (the identity card, hex);
//! - `transcript_hash`: the certified transcript (for a repair: the last transcript the
//!   recovering signer knew, or null);
//! - `certificates`: hex air-gap envelopes. For a DKG or refresh, every participant's
//!   certificate message as it travelled (signed by its author; the payload is the
//!   ceremony message carrying the certificate). For a repair, the recovered holder's
//!   signed confirmation (a group-key envelope in the ceremony's session);
//! - `group_public_key` (hex, 33 bytes), `group_xpub`;
//! - `outcome` (`complete`), `time` (Unix seconds), `written_by` (a participant name).
//!
//! Envelope signatures are checked as of their creation time: a record stays verifiable
//! after its envelopes' transport expiry.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use custody_airgap::envelope::{Envelope, EnvelopeType, MemoryReplayGuard, Receiver};
use custody_airgap::file::{read_bounded, write_new, FileError};
use custody_threshold::{
    CeremonyMessage, CeremonyPlan, DkgCertificate, GroupKey, IdentityCard, MessageKind,
};
use serde_json::{json, Value};

use crate::home::Home;
use crate::output::Output;
use crate::{now, Refused};

/// The record format name.
pub const RECORD_FORMAT: &str = "coinport-ceremony-record/1";

/// Which ceremony a record is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordKind {
    Dkg,
    Refresh,
    Repair,
}

impl RecordKind {
    fn name(self) -> &'static str {
        match self {
            RecordKind::Dkg => "dkg",
            RecordKind::Refresh => "refresh",
            RecordKind::Repair => "repair",
        }
    }
}

/// The file name of the record of `plan`.
pub(crate) fn file_name(plan: &CeremonyPlan, kind: RecordKind) -> String {
    format!(
        "ceremony-{}-{}-record.json",
        hex::encode(plan.ceremony_id()),
        kind.name()
    )
}

/// Writes the record into `usb`, unless another participant already wrote it (records of
/// one ceremony differ only in `time` and `written_by`). Returns its path.
pub(crate) fn write(
    usb: &Path,
    plan: &CeremonyPlan,
    kind: RecordKind,
    transcript: Option<&[u8; 32]>,
    certificates: &[Vec<u8>],
    group: &GroupKey,
    written_by: &str,
) -> Result<PathBuf> {
    let participants: Vec<Value> = plan
        .participants()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({
                "index": i + 1,
                "name": c.name(),
                "fingerprint": c.fingerprint(),
                "card": hex::encode(c.encode()),
            })
        })
        .collect();
    let record = json!({
        "format": RECORD_FORMAT,
        "kind": kind.name(),
        "ceremony_id": hex::encode(plan.ceremony_id()),
        "plan_hash": hex::encode(plan.hash()),
        "threshold": plan.threshold(),
        "participant_count": plan.len(),
        "network": plan.network().to_string(),
        "purpose": plan.purpose(),
        "participants": participants,
        "transcript_hash": transcript.map(hex::encode),
        "certificates": certificates.iter().map(hex::encode).collect::<Vec<_>>(),
        "group_public_key": hex::encode(group.public_key()),
        "group_xpub": group.xpub().to_string(),
        "outcome": "complete",
        "time": now(),
        "written_by": written_by,
    });
    let name = file_name(plan, kind);
    let text = serde_json::to_string_pretty(&record).context("cannot render the record")?;
    match write_new(usb, &name, format!("{text}\n").as_bytes()) {
        Ok(p) => Ok(p),
        Err(FileError::Exists { path }) => Ok(path),
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "cannot write the ceremony record to {}; the ceremony itself completed: check the USB stick",
            usb.display()
        ))),
    }
}

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a str> {
    v[name]
        .as_str()
        .with_context(|| format!("the record has no {name}; it is not a ceremony record"))
}

/// `record verify`.
pub(crate) fn verify(home: &Home, path: &Path, out: &Output) -> Result<()> {
    check(home, path, false, out).map(|_| ())
}

/// After a restore from backup, which carries no ceremony history: checks `path` like
/// `record verify` except that its transcript is taken from the record (its certificates
/// must still all verify and certify it), then adds it to the history.
pub(crate) fn adopt(home: &Home, path: &Path, out: &Output) -> Result<()> {
    let (ceremony_id, kind, transcript) = check(home, path, true, out)?;
    let transcript = transcript
        .and_then(|t| hex::decode(t).ok())
        .and_then(|t| <[u8; 32]>::try_from(t).ok());
    home.append_history(&ceremony_id, kind.name(), transcript.as_ref())
}

/// The checks of `record verify`; `adopting` skips the check that the transcript is in
/// this signer's history. Returns the ceremony id, kind and transcript.
fn check(
    home: &Home,
    path: &Path,
    adopting: bool,
    out: &Output,
) -> Result<([u8; 16], RecordKind, Option<String>)> {
    let bytes = read_bounded(path)
        .with_context(|| format!("cannot read {}; check the path", path.display()))?;
    let record: Value = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{} is not JSON; it is not a ceremony record",
            path.display()
        )
    })?;
    if record["format"] != RECORD_FORMAT {
        anyhow::bail!(
            "{} is not a {RECORD_FORMAT} ceremony record",
            path.display()
        );
    }
    let kind = match field(&record, "kind")? {
        "dkg" => RecordKind::Dkg,
        "refresh" => RecordKind::Refresh,
        "repair" => RecordKind::Repair,
        other => anyhow::bail!("unknown ceremony kind {other:?} in the record"),
    };
    let ceremony_id: [u8; 16] = hex::decode(field(&record, "ceremony_id")?)
        .ok()
        .and_then(|b| b.try_into().ok())
        .context("the record's ceremony_id is not 16 bytes of hex")?;
    let mut problems: Vec<String> = Vec::new();

    // Participants, their cards and fingerprints.
    let mut cards: Vec<IdentityCard> = Vec::new();
    for p in record["participants"].as_array().into_iter().flatten() {
        let card = p["card"]
            .as_str()
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| IdentityCard::decode(&b).ok());
        match card {
            Some(card) if p["fingerprint"] == card.fingerprint() && p["name"] == card.name() => {
                cards.push(card)
            }
            _ => problems.push(format!(
                "participant {} has a card that does not match its name and fingerprint",
                p["name"]
            )),
        }
    }
    let (_, mine) = home.card()?;
    if !cards.iter().any(|c| c.signing_key() == mine.signing_key()) {
        problems.push(format!(
            "this signer ({} {}) is not listed among the participants",
            mine.name(),
            mine.fingerprint()
        ));
    }

    // Group key and transcript against our own state.
    let group = home.group()?;
    if record["group_public_key"] != hex::encode(group.public_key()) {
        problems.push("the group key is not the one this signer holds a share of".into());
    }
    if record["group_xpub"] != group.xpub().to_string() {
        problems.push("the group xpub is not this signer's".into());
    }
    let transcript = record["transcript_hash"].as_str().map(str::to_owned);
    let known = home.known_transcripts();
    match (&transcript, kind) {
        (Some(_), _) if adopting => {}
        (Some(t), _) if known.iter().any(|k| k == t) => {}
        (Some(_), _) => problems
            .push("the transcript hash is not one this signer certified in a ceremony".into()),
        (None, RecordKind::Repair) => {}
        (None, _) => problems.push("the record has no transcript hash".into()),
    }

    // Certificates.
    let certificates: Vec<&str> = record["certificates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut signed_by: Vec<String> = Vec::new();
    for (i, hex_env) in certificates.iter().enumerate() {
        match check_certificate(
            hex_env,
            &ceremony_id,
            &cards,
            kind,
            transcript.as_deref(),
            &group,
        ) {
            Ok(name) => signed_by.push(name),
            Err(e) => problems.push(format!("certificate {}: {e}", i + 1)),
        }
    }
    match kind {
        RecordKind::Dkg | RecordKind::Refresh => {
            let mut unique = signed_by.clone();
            unique.sort();
            unique.dedup();
            if unique.len() != cards.len() || signed_by.len() != cards.len() {
                problems.push(format!(
                    "{} distinct certificates for {} participants; every participant must certify once",
                    unique.len(),
                    cards.len()
                ));
            }
        }
        RecordKind::Repair => {
            if signed_by.is_empty() {
                problems.push("the repair record carries no signed confirmation".into());
            }
        }
    }

    if !problems.is_empty() {
        return Err(Refused(format!(
            "the ceremony record {} does not match this signer: {}",
            path.display(),
            problems.join("; ")
        ))
        .into());
    }
    let verb = if adopting {
        "adopted into this signer's history"
    } else {
        "matches this signer"
    };
    out.record(
        "record-verified",
        json!({
            "file": path.display().to_string(),
            "kind": kind.name(),
            "ceremony_id": hex::encode(ceremony_id),
            "transcript_hash": transcript,
            "certificates": signed_by,
            "group_xpub": group.xpub().to_string(),
            "adopted": adopting,
        }),
        &format!(
            "the {} record {} {verb}: listed as {} {}, same group key and transcript, certificates signed by {}",
            kind.name(),
            path.display(),
            mine.name(),
            mine.fingerprint(),
            signed_by.join(", ")
        ),
    )?;
    Ok((ceremony_id, kind, transcript))
}

/// Checks one certificate envelope; returns the name of its signer.
fn check_certificate(
    hex_env: &str,
    ceremony_id: &[u8; 16],
    cards: &[IdentityCard],
    kind: RecordKind,
    transcript: Option<&str>,
    group: &GroupKey,
) -> Result<String> {
    let bytes = hex::decode(hex_env).context("not hex")?;
    let env = Envelope::decode(&bytes).context("not an envelope")?;
    let created_at = env.header().created_at;
    let mut receiver = Receiver::new(*ceremony_id, cards, None, MemoryReplayGuard::default());
    let expected = match kind {
        RecordKind::Repair => EnvelopeType::GroupKey,
        _ => EnvelopeType::CeremonyMessage,
    };
    let opened = receiver
        .open(&bytes, Some(expected), created_at)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let name = opened.sender.name().to_owned();
    if kind == RecordKind::Repair {
        let g = GroupKey::decode(&opened.payload).context("the confirmation holds no group key")?;
        anyhow::ensure!(
            g.public_key() == group.public_key(),
            "{name} confirmed another group key"
        );
        return Ok(name);
    }
    let msg = CeremonyMessage::decode(&opened.payload).context("not a ceremony message")?;
    let want = if kind == RecordKind::Dkg {
        MessageKind::DkgCertificate
    } else {
        MessageKind::RefreshCertificate
    };
    anyhow::ensure!(
        msg.kind() == want,
        "a {} message, not a {}",
        msg.kind().name(),
        want.name()
    );
    anyhow::ensure!(msg.ceremony_id() == ceremony_id, "from another ceremony");
    let position = cards
        .iter()
        .position(|c| c.signing_key() == opened.sender.signing_key())
        .map(|p| p + 1);
    anyhow::ensure!(
        position == Some(usize::from(msg.sender())),
        "signed by {name} but claims to be from participant #{}",
        msg.sender()
    );
    let cert = DkgCertificate::decode(msg.payload()).context("not a certificate")?;
    anyhow::ensure!(
        Some(hex::encode(cert.transcript_hash).as_str()) == transcript,
        "{name} certified another transcript"
    );
    Ok(name)
}
