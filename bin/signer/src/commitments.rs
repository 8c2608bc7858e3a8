//! `commitments issue`: fresh nonce commitments for the coordinator's pool.
//!
//! The commitments are issued through the keystore's durable nonce journal (recorded on
//! disk before they are returned), encoded as a [`custody_threshold::CommitmentBatch`] and
//! written as a signed [`EnvelopeType::CommitmentBatch`] envelope file.
//!
//! # Envelope fields
//! - session id: [`commitment_session_id`], the first 16 bytes of SHA-256 of the group's
//!   33-byte compressed public key, so every batch for one wallet shares a session;
//! - sequence: the signer's nonce high-water mark after issuing (last counter + 1), which
//!   only grows, so the receiver's replay guard never sees a sequence twice;
//! - file name: [`envelope_file_name`] with step `commitments`, from the signer's name, to
//!   all.

use std::path::Path;

use anyhow::{Context, Result};
use custody_airgap::envelope::{Envelope, EnvelopeType, SealParams};
use custody_airgap::file::{envelope_file_name, write_new};
use custody_threshold::GroupKey;
use rand_core::OsRng;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::home::{passphrase, Home};
use crate::output::Output;
use crate::qr::QrOut;
use crate::{now, ENVELOPE_LIFETIME_SECS};
use custody_airgap::qr::UrKind;

/// The envelope session id of commitment batches for `group`: the first 16 bytes of
/// SHA-256 of its 33-byte compressed public key ([`GroupKey::public_key`]).
pub fn commitment_session_id(group: &GroupKey) -> [u8; 16] {
    let digest = Sha256::digest(group.public_key());
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

/// `commitments issue`.
pub(crate) fn issue(
    config: &Config,
    home: &Home,
    count: usize,
    usb: &Path,
    qr: &QrOut,
    out: &Output,
) -> Result<()> {
    let group = home.group()?;
    let pass = passphrase(&config.passphrase, false)?;
    let mut ks = home.open_keystore(&pass)?;
    let batch = ks.issue_commitments(count).with_context(|| {
        format!(
            "cannot issue {count} commitments in {}; check the disk (nothing was written to the USB directory)",
            ks.dir().display()
        )
    })?;
    let (Some((first, _)), Some((last, _))) = (batch.commitments.first(), batch.commitments.last())
    else {
        anyhow::bail!("the keystore issued an empty batch; this is a bug, report it");
    };
    let (first, last, seed_id) = (first.counter, last.counter, first.seed_id);
    let identity = ks.identity();
    let created_at = now();
    let session_id = commitment_session_id(&group);
    let env = Envelope::seal(
        identity,
        &SealParams {
            kind: EnvelopeType::CommitmentBatch,
            session_id,
            sequence: last + 1,
            created_at,
            expires_at: created_at + ENVELOPE_LIFETIME_SECS,
            recipients: &[],
        },
        &batch.encode(),
        &mut OsRng,
    )
    .context("cannot seal the commitment batch; this is a bug, report it")?;
    let name = envelope_file_name(
        env.header(),
        EnvelopeType::CommitmentBatch.name(),
        identity.card().name(),
        None,
    );
    let path = write_new(usb, &name, &env.encode()).with_context(|| {
        format!(
            "cannot write {name} to {}; check the USB stick (counters {first} to {last} are now spent: just issue again)",
            usb.display()
        )
    })?;
    let base = path
        .file_stem()
        .and_then(|n| n.to_str())
        .unwrap_or("commitments")
        .to_owned();
    let qr_files = crate::qr::emit(qr, UrKind::Envelope, &env.encode(), &base, out)?;
    out.record(
        "commitments",
        json!({
            "count": batch.commitments.len(),
            "first_counter": first,
            "last_counter": last,
            "seed_id": hex::encode(seed_id),
            "signer": batch.signer,
            "session_id": hex::encode(session_id),
            "file": path.display().to_string(),
            "qr_files": qr_files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        }),
        &format!(
            "issued {} commitments, counters {first} to {last}\nwrote {}",
            batch.commitments.len(),
            path.display()
        ),
    )
}
