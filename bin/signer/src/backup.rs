//! `backup export`, `backup verify` and `backup restore`.
//!
//! A backup holds the key share and the identity, encrypted to a backup passphrase or an
//! age X25519 recipient, and never the nonce seed: a restore draws a new seed, so
//! commitments issued before can never be answered again.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use custody_airgap::file::{read_bounded, write_new};
use custody_keystore::{
    restore_backup, verify_backup, write_new_private, BackupKey, BackupRecipient, BackupSummary,
    KeystoreError,
};
use rand_core::OsRng;
use serde_json::json;
use zeroize::Zeroizing;

use crate::config::{BackupKeySource, BackupTarget, Config};
use crate::home::{create_private_dir, passphrase, Home, CARD_FILE, GROUP_FILE};
use crate::output::Output;
use crate::Refused;

fn backup_key(source: &BackupKeySource) -> Result<BackupKey> {
    Ok(match source {
        BackupKeySource::Passphrase(p) => BackupKey::Passphrase(
            passphrase(p, false).context("cannot read the backup passphrase")?,
        ),
        BackupKeySource::AgeIdentity(path) => {
            let text = Zeroizing::new(std::fs::read_to_string(path).with_context(|| {
                format!("cannot read the age identity file {}", path.display())
            })?);
            let line = text
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with("AGE-SECRET-KEY-"))
                .with_context(|| {
                    format!(
                        "{} holds no AGE-SECRET-KEY- line; pass the age identity file of the backup recipient",
                        path.display()
                    )
                })?;
            BackupKey::Age(age::x25519::Identity::from_str(line).map_err(|e| {
                anyhow::anyhow!("{} is not a valid age identity: {e}", path.display())
            })?)
        }
    })
}

/// A verification failure means the backup is no good: refused (exit 1).
fn bad_backup(path: &Path, e: KeystoreError) -> anyhow::Error {
    Refused(format!(
        "the backup {} does not verify: {e}; do not rely on it (export a new one)",
        path.display()
    ))
    .into()
}

fn summary_json(path: &Path, s: &BackupSummary) -> serde_json::Value {
    json!({
        "file": path.display().to_string(),
        "group_public_key": hex::encode(s.group_key),
        "participant_index": s.index,
        "identity_name": s.identity_name,
        "identity_fingerprint": s.identity_fingerprint,
    })
}

/// `backup export`.
pub(crate) fn export(
    config: &Config,
    home: &Home,
    out_path: &Path,
    to: &BackupTarget,
    out: &Output,
) -> Result<()> {
    home.group()?;
    let pass = passphrase(&config.passphrase, false)?;
    let ks = home.open_keystore(&pass)?;
    let (recipient, how) = match to {
        BackupTarget::Recipient(r) => (
            BackupRecipient::Age(age::x25519::Recipient::from_str(r).map_err(|e| {
                anyhow::anyhow!("--to-recipient {r} is not an age X25519 recipient (age1…): {e}")
            })?),
            format!("age recipient {r}"),
        ),
        BackupTarget::Passphrase(source) => {
            let backup_pass = passphrase(
                source,
                matches!(source, crate::config::PassphraseSource::Tty),
            )
            .context("cannot read the backup passphrase")?;
            (
                BackupRecipient::Passphrase(backup_pass, config.encryption),
                "the backup passphrase".to_owned(),
            )
        }
    };
    let bytes = ks
        .export_backup(&recipient)
        .context("cannot encrypt the backup; try again")?;
    let dir = match out_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = out_path
        .file_name()
        .and_then(|n| n.to_str())
        .context("--out must name a file")?;
    let written = write_new_private(dir, name, &bytes).with_context(|| {
        format!(
            "cannot write the backup to {}; choose another --out",
            out_path.display()
        )
    })?;
    let share = ks.share();
    out.record(
        "backup-exported",
        json!({
            "file": written.display().to_string(),
            "encrypted_to": how,
            "participant_index": share.index(),
            "group_public_key": hex::encode(share.group().public_key()),
            "contains_nonce_seed": false,
        }),
        &format!(
            "wrote the backup of share #{} to {} (encrypted to {how}; it holds no nonce seed)\nverify it now with `custody-signer backup verify --file {}`",
            share.index(),
            written.display(),
            written.display()
        ),
    )
}

/// `backup verify`.
pub(crate) fn verify(path: &Path, key: &BackupKeySource, home: &Home, out: &Output) -> Result<()> {
    let bytes = read_bounded(path)
        .with_context(|| format!("cannot read {}; check the path", path.display()))?;
    let key = backup_key(key)?;
    let summary = verify_backup(path, &bytes, &key).map_err(|e| bad_backup(path, e))?;
    let mut data = summary_json(path, &summary);
    let mut text = format!(
        "the backup {} is good: share #{} of group key {}, identity {} {}",
        path.display(),
        summary.index,
        hex::encode(summary.group_key),
        summary.identity_name,
        summary.identity_fingerprint
    );
    if let Ok(group) = home.group() {
        let same = group.public_key() == summary.group_key;
        data["matches_this_signer_group"] = json!(same);
        if !same {
            return Err(Refused(format!(
                "the backup {} is readable but belongs to another group key than this signer's",
                path.display()
            ))
            .into());
        }
        text.push_str("\nit belongs to this signer's group key");
    }
    out.record("backup-verified", data, &text)
}

/// `backup restore`.
pub(crate) fn restore(
    config: &Config,
    home: &Home,
    path: &Path,
    key: &BackupKeySource,
    records: &[PathBuf],
    out: &Output,
) -> Result<()> {
    if home.has_share() {
        bail!(
            "{} already holds a key share; restore into a fresh --home (shares are never replaced)",
            home.dir().display()
        );
    }
    let bytes = read_bounded(path)
        .with_context(|| format!("cannot read {}; check the path", path.display()))?;
    let key = backup_key(key)?;
    let summary = verify_backup(path, &bytes, &key).map_err(|e| bad_backup(path, e))?;
    if let Ok((_, card)) = home.card() {
        if card.fingerprint() != summary.identity_fingerprint {
            return Err(Refused(format!(
                "the backup holds identity {} {}, but this signer home is {} {}; restore into a fresh --home",
                summary.identity_name,
                summary.identity_fingerprint,
                card.name(),
                card.fingerprint()
            ))
            .into());
        }
    }
    let pass = passphrase(&config.passphrase, true)?;
    create_private_dir(home.dir())?;
    let dir = home.keystore_dir();
    create_private_dir(&dir)?;
    let ks = restore_backup(
        path,
        &bytes,
        &key,
        &dir,
        &pass,
        config.encryption,
        &mut OsRng,
    )
    .with_context(|| format!("cannot restore the backup into {}", dir.display()))?;
    let card = ks.identity().card();
    if !home.dir().join(CARD_FILE).exists() {
        write_new(home.dir(), CARD_FILE, &card.encode())
            .context("cannot store the identity card in the signer home")?;
    }
    let group = ks.share().group().clone();
    if !home.dir().join(GROUP_FILE).exists() {
        write_new(home.dir(), GROUP_FILE, &group.encode())
            .context("cannot store the group key in the signer home")?;
    }
    let mut data = summary_json(path, &summary);
    data["keystore"] = json!(dir.display().to_string());
    data["new_nonce_seed"] = json!(true);
    data["group_xpub"] = json!(group.xpub().to_string());
    out.record(
        "backup-restored",
        data,
        &format!(
            "restored share #{} of {} ({} {}) into {}\na new nonce seed was drawn: commitments issued before this restore can never be answered; issue new commitments",
            summary.index,
            group.xpub(),
            summary.identity_name,
            summary.identity_fingerprint,
            dir.display()
        ),
    )?;
    for r in records {
        crate::record::adopt(home, r, out)?;
    }
    Ok(())
}
