//! `approve`: an approver signs a withdrawal's approval digest with its identity key.
//!
//! The coordinator shows every withdrawal's `approval_digest` (the hash of the policy, the
//! withdrawal id and the txid of the exact transaction, `custody_policy::withdrawal_digest`).
//! The approver checks the withdrawal, then signs that digest in the policy domain
//! ([`SigningDomain::Policy`]), so the signature can serve nothing else: no transaction,
//! no envelope. The identity fingerprint and the digest are printed before the passphrase
//! is asked for, so the approver sees who signs what.

use anyhow::Result;
use custody_threshold::SigningDomain;
use rand_core::OsRng;
use serde_json::json;

use crate::config::Config;
use crate::home::{passphrase, Home};
use crate::output::Output;

/// `approve --digest HEX`.
pub(crate) fn approve(config: &Config, home: &Home, digest: &[u8; 32], out: &Output) -> Result<()> {
    let (_, card) = home.card()?;
    let digest_hex = hex::encode(digest);
    out.record(
        "approval-request",
        json!({
            "name": card.name(),
            "fingerprint": card.fingerprint(),
            "digest": digest_hex,
        }),
        &format!(
            "approver: {} ({})\ndigest: {digest_hex}",
            card.name(),
            card.fingerprint()
        ),
    )?;
    let pass = passphrase(&config.passphrase, false)?;
    let identity = home.unlock_identity(&pass)?;
    if identity.card().signing_key() != card.signing_key() {
        anyhow::bail!(
            "the unlocked identity is not the one on identity.card in {}; restore the signer home",
            home.dir().display()
        );
    }
    let signature = identity.sign_in_domain(SigningDomain::Policy, digest, &mut OsRng);
    let sig_hex = hex::encode(signature);
    out.record(
        "approval",
        json!({
            "fingerprint": card.fingerprint(),
            "digest": digest_hex,
            "signature": sig_hex,
        }),
        &format!("signature: {sig_hex}"),
    )
}
