//! Which second factors there are and which combinations may authorise what.
//!
//! The coordinator checks the password itself; this module is about what comes after it.
//! Rules (see `docs/adr/0017-second-factors.md`):
//!
//! | action | enough |
//! |---|---|
//! | [`Action::SignIn`] | any one factor |
//! | [`Action::SensitiveChange`] | WebAuthn or TOTP; or a recovery code; or email and SMS codes together |
//! | [`Action::Withdrawal`] | WebAuthn or TOTP; or email and SMS codes together |
//!
//! SMS is a restricted authenticator (NIST SP 800-63B-4, 3.1.3.3: it can be redirected
//! by SIM swap or SS7 interception), and an email code proves control of a mailbox, not of a
//! device, so neither alone ever authorises a withdrawal or a sensitive change. A recovery
//! code replaces a lost authenticator: it may authorise the 2FA change that follows (the
//! coordinator then places its 48 h hold), never a withdrawal.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A second factor a user can satisfy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Factor {
    /// A WebAuthn passkey or security key with user verification.
    WebAuthn,
    /// An authenticator app code (RFC 6238).
    Totp,
    /// A one-time code sent by email.
    EmailOtp,
    /// A one-time code sent by SMS (restricted).
    SmsOtp,
    /// A single-use recovery code.
    RecoveryCode,
}

impl Factor {
    /// Every factor, for listings.
    pub const ALL: [Factor; 5] = [
        Factor::WebAuthn,
        Factor::Totp,
        Factor::EmailOtp,
        Factor::SmsOtp,
        Factor::RecoveryCode,
    ];

    /// Whether NIST SP 800-63B-4 calls this a restricted authenticator: allowed, but the
    /// user must be told of the risk and offered an alternative, and it never stands alone
    /// for a withdrawal.
    pub fn is_restricted(self) -> bool {
        matches!(self, Factor::SmsOtp)
    }

    /// Whether the factor resists phishing (the origin is bound into the signature).
    pub fn is_phishing_resistant(self) -> bool {
        matches!(self, Factor::WebAuthn)
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Factor::WebAuthn => "webauthn",
            Factor::Totp => "totp",
            Factor::EmailOtp => "email_otp",
            Factor::SmsOtp => "sms_otp",
            Factor::RecoveryCode => "recovery_code",
        }
    }
}

/// What a set of satisfied factors is asked to authorise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// Completing a sign-in after the password.
    SignIn,
    /// A withdrawal request.
    Withdrawal,
    /// A whitelist change, API key creation, email, password or 2FA change.
    SensitiveChange,
}

/// The satisfied factors are not enough for the action.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("the factors presented ({presented}) do not authorise {action:?}; {need}")]
#[non_exhaustive]
pub struct InsufficientFactorsError {
    /// The action refused.
    pub action: Action,
    /// What was presented, comma-separated (`none` when empty).
    pub presented: String,
    /// What would be enough, as a sentence for the person.
    pub need: &'static str,
}

/// Decides whether the factors satisfied in this step-up may authorise `action`.
/// Duplicates are ignored.
///
/// # Errors
/// [`InsufficientFactorsError`] naming what would be enough.
pub fn authorise(action: Action, satisfied: &[Factor]) -> Result<(), InsufficientFactorsError> {
    let has = |f: Factor| satisfied.contains(&f);
    let strong = has(Factor::WebAuthn) || has(Factor::Totp);
    let email_and_sms = has(Factor::EmailOtp) && has(Factor::SmsOtp);
    let (ok, need) = match action {
        Action::SignIn => (!satisfied.is_empty(), "any one second factor is needed"),
        Action::Withdrawal => (
            strong || email_and_sms,
            "a security key, passkey or authenticator app is needed (or both email and SMS codes)",
        ),
        Action::SensitiveChange => (
            strong || email_and_sms || has(Factor::RecoveryCode),
            "a security key, passkey, authenticator app or recovery code is needed (or both email and SMS codes)",
        ),
    };
    if ok {
        return Ok(());
    }
    let mut names: Vec<&str> = satisfied.iter().map(|f| f.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let presented = if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    };
    Err(InsufficientFactorsError {
        action,
        presented,
        need,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Factor::*;

    #[test]
    fn sms_alone_never_authorises_a_withdrawal_or_a_sensitive_change() {
        assert!(authorise(Action::Withdrawal, &[SmsOtp]).is_err());
        assert!(authorise(Action::Withdrawal, &[SmsOtp, SmsOtp]).is_err());
        assert!(authorise(Action::Withdrawal, &[SmsOtp, RecoveryCode]).is_err());
        assert!(authorise(Action::SensitiveChange, &[SmsOtp]).is_err());
        // It may complete a sign-in, where the coordinator warns about it.
        assert!(authorise(Action::SignIn, &[SmsOtp]).is_ok());
        assert!(SmsOtp.is_restricted());
        assert!(Factor::ALL.iter().filter(|f| f.is_restricted()).count() == 1);
    }

    #[test]
    fn strong_factors_authorise_withdrawals_and_weak_ones_need_company() {
        assert!(authorise(Action::Withdrawal, &[WebAuthn]).is_ok());
        assert!(authorise(Action::Withdrawal, &[Totp]).is_ok());
        assert!(authorise(Action::Withdrawal, &[EmailOtp]).is_err());
        assert!(authorise(Action::Withdrawal, &[EmailOtp, SmsOtp]).is_ok());
        assert!(authorise(Action::Withdrawal, &[RecoveryCode]).is_err());
        assert!(authorise(Action::SensitiveChange, &[RecoveryCode]).is_ok());
        assert!(authorise(Action::SignIn, &[]).is_err());
    }

    #[test]
    fn a_refusal_says_what_was_presented_and_what_is_needed() {
        let e = authorise(Action::Withdrawal, &[SmsOtp, EmailOtp, SmsOtp])
            .err()
            .map(|e| e.to_string());
        assert_eq!(e, None, "email and SMS together are enough");
        let e = authorise(Action::Withdrawal, &[SmsOtp]).expect_err("refused");
        assert_eq!(e.presented, "sms_otp");
        assert!(e.to_string().contains("authenticator app"));
    }
}
