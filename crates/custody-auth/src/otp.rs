//! One-time codes sent by email or SMS.
//!
//! [`issue_otp`] draws the digits from the operating system's CSPRNG and returns them once
//! (to hand to the email or SMS adapter) together with an [`OtpRecord`] that holds only a
//! keyed hash (HMAC-SHA256 under the server's [`HashKey`], bound to the channel and to a
//! caller-chosen context such as `"account:42/withdrawal:7f3c…"`). [`OtpRecord::verify`]
//! compares in constant time, counts every attempt, and refuses an expired, used or
//! exhausted record.
//!
//! The coordinator stores the record (or its columns) and writes it back after **every**
//! call to `verify`, whatever the answer, in the same transaction that read it: the attempt
//! counter and the single-use mark live in the record.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::keys::{digests_equal, keyed_hash, random_below, HashKey};

const DOMAIN: &str = "custody-auth/otp/v1";

/// How the code reaches the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OtpChannel {
    /// By email.
    Email,
    /// By SMS (a restricted authenticator, see [`crate::Factor::is_restricted`]).
    Sms,
}

impl OtpChannel {
    fn label(self) -> &'static [u8] {
        match self {
            OtpChannel::Email => b"email",
            OtpChannel::Sms => b"sms",
        }
    }

    /// The factor a verified code of this channel satisfies.
    pub fn factor(self) -> crate::Factor {
        match self {
            OtpChannel::Email => crate::Factor::EmailOtp,
            OtpChannel::Sms => crate::Factor::SmsOtp,
        }
    }
}

/// Fewest digits a code may have.
pub const MIN_OTP_DIGITS: u8 = 6;
/// Most digits a code may have.
pub const MAX_OTP_DIGITS: u8 = 10;
/// Longest lifetime a code may have (one hour).
pub const MAX_OTP_TTL_SECS: i64 = 3600;
/// Most attempts a code may allow.
pub const MAX_OTP_ATTEMPTS: u32 = 10;

/// Length, lifetime and attempt limit of the codes of one channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OtpPolicy {
    digits: u8,
    ttl_secs: i64,
    max_attempts: u32,
}

/// A policy value out of range.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OtpPolicyError {
    /// The number of digits is out of range.
    #[error("a one-time code needs {MIN_OTP_DIGITS} to {MAX_OTP_DIGITS} digits, not {found}")]
    Digits {
        /// The value given.
        found: u8,
    },
    /// The lifetime is out of range.
    #[error("a one-time code must live 1 to {MAX_OTP_TTL_SECS} seconds, not {found}")]
    Ttl {
        /// The value given.
        found: i64,
    },
    /// The attempt limit is out of range.
    #[error("a one-time code allows 1 to {MAX_OTP_ATTEMPTS} attempts, not {found}")]
    Attempts {
        /// The value given.
        found: u32,
    },
}

impl OtpPolicy {
    /// A checked policy.
    ///
    /// # Errors
    /// [`OtpPolicyError`] naming the value out of range.
    pub fn new(digits: u8, ttl_secs: i64, max_attempts: u32) -> Result<Self, OtpPolicyError> {
        if !(MIN_OTP_DIGITS..=MAX_OTP_DIGITS).contains(&digits) {
            return Err(OtpPolicyError::Digits { found: digits });
        }
        if !(1..=MAX_OTP_TTL_SECS).contains(&ttl_secs) {
            return Err(OtpPolicyError::Ttl { found: ttl_secs });
        }
        if !(1..=MAX_OTP_ATTEMPTS).contains(&max_attempts) {
            return Err(OtpPolicyError::Attempts {
                found: max_attempts,
            });
        }
        Ok(OtpPolicy {
            digits,
            ttl_secs,
            max_attempts,
        })
    }

    /// The defaults: SMS 6 digits for 5 minutes, email 8 digits for 15 minutes, 5 attempts.
    pub fn default_for(channel: OtpChannel) -> Self {
        match channel {
            OtpChannel::Sms => OtpPolicy {
                digits: 6,
                ttl_secs: 300,
                max_attempts: 5,
            },
            OtpChannel::Email => OtpPolicy {
                digits: 8,
                ttl_secs: 900,
                max_attempts: 5,
            },
        }
    }

    /// Digits per code.
    pub fn digits(&self) -> u8 {
        self.digits
    }

    /// Lifetime in seconds.
    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// Attempts allowed.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }
}

/// A one-time code in clear: handed once to the email or SMS adapter, never stored.
///
/// # Security
/// Zeroized on drop, redacted in `Debug`, no `Display`.
pub struct OtpCode(Zeroizing<String>);

impl OtpCode {
    /// The digits.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OtpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OtpCode(<redacted>)")
    }
}

/// What the coordinator stores for an issued code.
///
/// Columns: `channel`, `code_hash` (hex), `issued_at`, `expires_at`, `attempts`,
/// `max_attempts`, `used_at`; or the whole record as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtpRecord {
    /// The channel the code went out on.
    pub channel: OtpChannel,
    /// HMAC-SHA256 of the code, bound to channel and context.
    #[serde(with = "crate::keys::hex32")]
    pub code_hash: [u8; 32],
    /// When it was issued (unix seconds).
    pub issued_at: i64,
    /// When it stops being accepted (unix seconds, exclusive).
    pub expires_at: i64,
    /// Attempts made so far, right or wrong.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// When it was accepted, if it was.
    pub used_at: Option<i64>,
}

/// Why a code was refused. The messages never contain the code.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OtpError {
    /// The code was already accepted once.
    #[error("this code was already used; request a new one")]
    Used,
    /// The code's lifetime is over.
    #[error("this code expired at {expired_at}; request a new one")]
    Expired {
        /// When it expired (unix seconds).
        expired_at: i64,
    },
    /// Every attempt was spent.
    #[error("too many wrong attempts ({max}); request a new code")]
    TooManyAttempts {
        /// The limit.
        max: u32,
    },
    /// The code does not match.
    #[error("the code is not correct ({attempts_left} attempts left)")]
    Mismatch {
        /// Attempts left on this code.
        attempts_left: u32,
    },
}

fn code_hash(key: &HashKey, channel: OtpChannel, context: &str, code: &str) -> [u8; 32] {
    keyed_hash(
        key.expose_secret(),
        DOMAIN,
        &[channel.label(), context.as_bytes(), code.as_bytes()],
    )
}

/// Issues a code: the digits to send and the record to store.
///
/// `context` binds the code to what it is for (account and purpose); the same context must
/// be given to [`OtpRecord::verify`].
pub fn issue_otp(
    key: &HashKey,
    channel: OtpChannel,
    policy: &OtpPolicy,
    context: &str,
    now: i64,
) -> (OtpCode, OtpRecord) {
    let mut code = Zeroizing::new(String::with_capacity(usize::from(policy.digits)));
    for _ in 0..policy.digits {
        let digit = u8::try_from(random_below(10)).expect("below 10");
        code.push(char::from(b'0' + digit));
    }
    let record = OtpRecord {
        channel,
        code_hash: code_hash(key, channel, context, &code),
        issued_at: now,
        expires_at: now.saturating_add(policy.ttl_secs),
        attempts: 0,
        max_attempts: policy.max_attempts,
        used_at: None,
    };
    (OtpCode(code), record)
}

/// Spaces and hyphens people type between groups are ignored.
fn normalise(input: &str) -> Zeroizing<String> {
    Zeroizing::new(
        input
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect(),
    )
}

impl OtpRecord {
    /// Checks `code` at `now`. Every call that reaches the comparison counts as an attempt;
    /// a match marks the record used.
    ///
    /// # Errors
    /// [`OtpError`]: used, expired, out of attempts or not matching.
    pub fn verify(
        &mut self,
        key: &HashKey,
        context: &str,
        code: &str,
        now: i64,
    ) -> Result<(), OtpError> {
        if self.used_at.is_some() {
            return Err(OtpError::Used);
        }
        if self.attempts >= self.max_attempts {
            return Err(OtpError::TooManyAttempts {
                max: self.max_attempts,
            });
        }
        if now >= self.expires_at {
            return Err(OtpError::Expired {
                expired_at: self.expires_at,
            });
        }
        self.attempts = self.attempts.saturating_add(1);
        let candidate = code_hash(key, self.channel, context, &normalise(code));
        if digests_equal(&candidate, &self.code_hash) {
            self.used_at = Some(now);
            Ok(())
        } else {
            Err(OtpError::Mismatch {
                attempts_left: self.max_attempts.saturating_sub(self.attempts),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn wrong(code: &OtpCode) -> String {
        let mut s: Vec<u8> = code.expose_secret().bytes().collect();
        s[0] = if s[0] == b'9' { b'0' } else { s[0] + 1 };
        String::from_utf8(s).expect("digits")
    }

    #[test]
    fn codes_have_the_configured_length_and_defaults_per_channel() {
        let key = HashKey::generate();
        let (sms, _) = issue_otp(
            &key,
            OtpChannel::Sms,
            &OtpPolicy::default_for(OtpChannel::Sms),
            "c",
            NOW,
        );
        let (email, rec) = issue_otp(
            &key,
            OtpChannel::Email,
            &OtpPolicy::default_for(OtpChannel::Email),
            "c",
            NOW,
        );
        assert_eq!(sms.expose_secret().len(), 6);
        assert_eq!(email.expose_secret().len(), 8);
        assert!(email.expose_secret().bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(rec.expires_at, NOW + 900);
        let ten = OtpPolicy::new(10, 60, 3).expect("valid");
        let (c, _) = issue_otp(&key, OtpChannel::Email, &ten, "c", NOW);
        assert_eq!(c.expose_secret().len(), 10);
        assert_eq!(format!("{c:?}"), "OtpCode(<redacted>)");
        assert_eq!(
            OtpPolicy::new(4, 60, 3),
            Err(OtpPolicyError::Digits { found: 4 })
        );
        assert_eq!(
            OtpPolicy::new(6, 0, 3),
            Err(OtpPolicyError::Ttl { found: 0 })
        );
        assert_eq!(
            OtpPolicy::new(6, 60, 0),
            Err(OtpPolicyError::Attempts { found: 0 })
        );
    }

    #[test]
    fn a_code_is_accepted_once() {
        let key = HashKey::generate();
        let policy = OtpPolicy::default_for(OtpChannel::Email);
        let (code, mut rec) = issue_otp(&key, OtpChannel::Email, &policy, "acct:1/login", NOW);
        assert!(!String::from_utf8_lossy(&rec.code_hash).contains(code.expose_secret()));
        let spaced = format!(
            "{} {}",
            &code.expose_secret()[..4],
            &code.expose_secret()[4..]
        );
        assert_eq!(rec.verify(&key, "acct:1/login", &spaced, NOW + 10), Ok(()));
        assert_eq!(rec.used_at, Some(NOW + 10));
        assert_eq!(
            rec.verify(&key, "acct:1/login", code.expose_secret(), NOW + 11),
            Err(OtpError::Used)
        );
    }

    #[test]
    fn a_code_expires_and_is_bound_to_context_key_and_channel() {
        let key = HashKey::generate();
        let policy = OtpPolicy::default_for(OtpChannel::Sms);
        let (code, rec) = issue_otp(&key, OtpChannel::Sms, &policy, "acct:1/withdrawal:9", NOW);
        let c = code.expose_secret();
        let mut r = rec.clone();
        assert_eq!(
            r.verify(&key, "acct:1/withdrawal:9", c, NOW + 300),
            Err(OtpError::Expired {
                expired_at: NOW + 300
            })
        );
        let mut r = rec.clone();
        assert!(matches!(
            r.verify(&key, "acct:2/withdrawal:9", c, NOW),
            Err(OtpError::Mismatch { .. })
        ));
        let mut r = rec.clone();
        assert!(matches!(
            r.verify(&HashKey::generate(), "acct:1/withdrawal:9", c, NOW),
            Err(OtpError::Mismatch { .. })
        ));
        let mut r = rec.clone();
        r.channel = OtpChannel::Email;
        assert!(matches!(
            r.verify(&key, "acct:1/withdrawal:9", c, NOW),
            Err(OtpError::Mismatch { .. })
        ));
        let mut r = rec;
        assert_eq!(r.verify(&key, "acct:1/withdrawal:9", c, NOW + 299), Ok(()));
    }

    #[test]
    fn wrong_attempts_run_out_and_then_even_the_right_code_is_refused() {
        let key = HashKey::generate();
        let policy = OtpPolicy::new(6, 300, 3).expect("valid");
        let (code, mut rec) = issue_otp(&key, OtpChannel::Sms, &policy, "c", NOW);
        let bad = wrong(&code);
        assert_eq!(
            rec.verify(&key, "c", &bad, NOW),
            Err(OtpError::Mismatch { attempts_left: 2 })
        );
        assert_eq!(
            rec.verify(&key, "c", "", NOW),
            Err(OtpError::Mismatch { attempts_left: 1 })
        );
        assert_eq!(
            rec.verify(&key, "c", &bad, NOW),
            Err(OtpError::Mismatch { attempts_left: 0 })
        );
        assert_eq!(
            rec.verify(&key, "c", code.expose_secret(), NOW),
            Err(OtpError::TooManyAttempts { max: 3 })
        );
    }

    #[test]
    fn the_record_round_trips_through_json_without_the_code() {
        let key = HashKey::generate();
        let (code, rec) = issue_otp(
            &key,
            OtpChannel::Email,
            &OtpPolicy::default_for(OtpChannel::Email),
            "c",
            NOW,
        );
        let json = serde_json::to_string(&rec).expect("json");
        assert!(!json.contains(code.expose_secret()));
        let mut back: OtpRecord = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, rec);
        assert_eq!(back.verify(&key, "c", code.expose_secret(), NOW), Ok(()));
    }
}
