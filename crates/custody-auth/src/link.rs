//! Single-use link tokens: "this wasn't me" (freeze the account), new-device confirmation
//! and email confirmation.
//!
//! A token is 32 random bytes, base64url, with a prefix (`cpl_…`) so it is recognisable in
//! a leak scanner. Only `SHA-256(domain ‖ purpose ‖ token)` is stored, and it doubles as
//! the lookup key: a freeze token presented to the email-confirmation endpoint hashes to a
//! value no row has. A 256-bit random token needs no key or slow hash; a database dump gives
//! no usable link.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::keys::{digests_equal, random_bytes};

const DOMAIN: &[u8] = b"custody-auth/link/v1\0";
const PREFIX: &str = "cpl_";

/// What a link does when followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LinkPurpose {
    /// "This wasn't me": freezes the account at once. In every alert.
    FreezeAccount,
    /// Confirms a new device before it may withdraw.
    ConfirmDevice,
    /// Confirms an email address.
    ConfirmEmail,
}

impl LinkPurpose {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkPurpose::FreezeAccount => "freeze_account",
            LinkPurpose::ConfirmDevice => "confirm_device",
            LinkPurpose::ConfirmEmail => "confirm_email",
        }
    }

    /// How long a link lives unless told otherwise: a freeze link as long as someone may
    /// take to read the alert (7 days), a device confirmation 30 minutes, an email
    /// confirmation 24 hours.
    pub fn default_ttl_secs(self) -> i64 {
        match self {
            LinkPurpose::FreezeAccount => 7 * 86_400,
            LinkPurpose::ConfirmDevice => 30 * 60,
            LinkPurpose::ConfirmEmail => 86_400,
        }
    }
}

/// A link token in clear, for the email; never stored.
///
/// # Security
/// Zeroized on drop, redacted in `Debug`, no `Display`.
pub struct LinkToken(Zeroizing<String>);

impl LinkToken {
    /// The token text to put in the URL.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LinkToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkToken(<redacted>)")
    }
}

/// The hash a token is stored and looked up under, for a given purpose.
pub fn link_token_hash(purpose: LinkPurpose, token: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(purpose.as_str().as_bytes());
    h.update([0]);
    h.update(token.as_bytes());
    h.finalize().into()
}

/// What the coordinator stores. Columns: `token_hash` (hex, unique, the lookup key),
/// `purpose`, `subject` (account, device or address id), `expires_at`, `used_at`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkTokenRecord {
    /// The lookup hash.
    #[serde(with = "crate::keys::hex32")]
    pub token_hash: [u8; 32],
    /// What the link does.
    pub purpose: LinkPurpose,
    /// What it acts on (an account, device or email-change id); never personal data.
    pub subject: String,
    /// When it was issued.
    pub issued_at: i64,
    /// When it stops working (exclusive).
    pub expires_at: i64,
    /// When it was followed, if it was.
    pub used_at: Option<i64>,
}

/// Why a link was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LinkTokenError {
    /// The token is for another purpose or is not this record's.
    #[error("this link is not valid")]
    Invalid,
    /// The link expired.
    #[error("this link expired at {expired_at}")]
    Expired {
        /// When (unix seconds).
        expired_at: i64,
    },
    /// The link was already followed.
    #[error("this link was already used")]
    Used,
}

/// Issues a link token for `purpose` acting on `subject`, living `ttl_secs`.
pub fn issue_link_token(
    purpose: LinkPurpose,
    subject: &str,
    ttl_secs: i64,
    now: i64,
) -> (LinkToken, LinkTokenRecord) {
    let bytes = random_bytes::<32>();
    let token = Zeroizing::new(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(&bytes[..])));
    let record = LinkTokenRecord {
        token_hash: link_token_hash(purpose, &token),
        purpose,
        subject: subject.to_owned(),
        issued_at: now,
        expires_at: now.saturating_add(ttl_secs.max(1)),
        used_at: None,
    };
    (LinkToken(token), record)
}

impl LinkTokenRecord {
    /// Follows the link: checks that `token` belongs to this record and `purpose`, that it
    /// is not expired or used, and marks it used. Returns the subject to act on. Write the
    /// record back in the transaction that acts on it.
    ///
    /// # Errors
    /// [`LinkTokenError`].
    pub fn redeem(
        &mut self,
        purpose: LinkPurpose,
        token: &str,
        now: i64,
    ) -> Result<&str, LinkTokenError> {
        if purpose != self.purpose
            || !digests_equal(&link_token_hash(purpose, token), &self.token_hash)
        {
            return Err(LinkTokenError::Invalid);
        }
        if self.used_at.is_some() {
            return Err(LinkTokenError::Used);
        }
        if now >= self.expires_at {
            return Err(LinkTokenError::Expired {
                expired_at: self.expires_at,
            });
        }
        self.used_at = Some(now);
        Ok(&self.subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_freeze_link_works_once_and_only_for_freezing() {
        let (token, mut rec) = issue_link_token(LinkPurpose::FreezeAccount, "acct:42", 600, NOW);
        let t = token.expose_secret().to_owned();
        assert!(t.starts_with("cpl_") && t.len() == 4 + 43, "{t}");
        assert_eq!(format!("{token:?}"), "LinkToken(<redacted>)");
        // Looked up by hash; the other purposes hash it elsewhere.
        assert_eq!(
            link_token_hash(LinkPurpose::FreezeAccount, &t),
            rec.token_hash
        );
        assert_ne!(
            link_token_hash(LinkPurpose::ConfirmEmail, &t),
            rec.token_hash
        );
        assert_eq!(
            rec.clone().redeem(LinkPurpose::ConfirmDevice, &t, NOW),
            Err(LinkTokenError::Invalid)
        );
        assert_eq!(
            rec.redeem(LinkPurpose::FreezeAccount, &t, NOW + 5),
            Ok("acct:42")
        );
        assert_eq!(
            rec.redeem(LinkPurpose::FreezeAccount, &t, NOW + 6),
            Err(LinkTokenError::Used)
        );
        let json = serde_json::to_string(&rec).expect("json");
        assert!(!json.contains(&t[4..]));
    }

    #[test]
    fn links_expire_and_other_tokens_are_refused() {
        let (token, rec) = issue_link_token(LinkPurpose::ConfirmDevice, "device:7", 1800, NOW);
        let (other, _) = issue_link_token(LinkPurpose::ConfirmDevice, "device:7", 1800, NOW);
        assert_ne!(token.expose_secret(), other.expose_secret());
        assert_eq!(
            rec.clone()
                .redeem(LinkPurpose::ConfirmDevice, other.expose_secret(), NOW),
            Err(LinkTokenError::Invalid)
        );
        assert_eq!(
            rec.clone().redeem(
                LinkPurpose::ConfirmDevice,
                token.expose_secret(),
                NOW + 1800
            ),
            Err(LinkTokenError::Expired {
                expired_at: NOW + 1800
            })
        );
        assert_eq!(LinkPurpose::ConfirmDevice.default_ttl_secs(), 1800);
    }
}
