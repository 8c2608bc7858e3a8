//! Sign-in factors and access-control primitives for the CoinPort Custody coordinator.
//!
//! Pure building blocks: no database, no HTTP server, and no clock of its own — every
//! function that needs the time takes `now` (unix seconds), and the attempt limiters take
//! a [`TimeSource`]. The only I/O is [`load_tls`] reading (and, for development, creating)
//! certificate files. Nothing is printed.
//!
//! | module | what | the coordinator stores |
//! |---|---|---|
//! | [`webauthn`] | passkeys and security keys, user verification required | [`StoredCredential`] JSON per credential (unique credential id); ceremony JSON per pending prompt, deleted when finished |
//! | [`issue_otp`] | email and SMS codes, keyed hashes | [`OtpRecord`] per code |
//! | [`authorise`] | which [`Factor`]s may authorise what; SMS is restricted | — |
//! | [`generate_recovery_codes`] | single-use recovery codes | [`RecoveryCodeSet`] per account |
//! | [`AttemptLimiter`], [`LockoutState`] | rate limits per account and IP; lockout with an alert event | [`LockoutState`] per account |
//! | [`IpAllowlist`] | CIDR allowlists | its text form per account and per key |
//! | [`create_api_key`], [`sign_request`], [`verify_request`] | API keys and HMAC-signed requests | [`ApiKeyRecord`] plus the sealed secret; nonces until the replay window passes |
//! | [`issue_link_token`] | "this wasn't me", device and email confirmation links | [`LinkTokenRecord`] per link |
//! | [`AntiPhishingCode`] | the user's anti-phishing code in every email | the code per account |
//! | [`load_tls`] | `rustls` server configuration, self-signed for development | — (files) |
//!
//! Secrets the coordinator must keep (the [`HashKey`] for codes, API key secrets) are
//! meant to be sealed with `custody-vault`. Decisions: `docs/adr/0016-api-key-authentication.md`
//! and `docs/adr/0017-second-factors.md`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod antiphishing;
mod apikey;
mod clock;
mod factors;
mod fsutil;
mod ip;
mod keys;
mod limits;
mod link;
mod otp;
mod recovery;
mod tls;
pub mod webauthn;

/// The `rustls` this crate builds its configuration with.
pub use rustls;

pub use antiphishing::{
    AntiPhishingCode, AntiPhishingCodeError, ANTI_PHISHING_HEADER, ANTI_PHISHING_MAX_LEN,
    ANTI_PHISHING_MIN_LEN,
};
pub use apikey::{
    canonical_request, create_api_key, new_nonce, sign_request, verify_request, ApiKeyId,
    ApiKeyRecord, ApiKeySecret, CreateApiKeyError, MemoryNonceStore, NewApiKey, NonceStore,
    NonceStoreError, ParseSignatureError, ReplayWindow, RequestSignature, RequestToSign, Scope,
    ScopeSet, VerifyContext, VerifyRequestError, HEADER_KEY, HEADER_NONCE, HEADER_SIGNATURE,
    HEADER_TIMESTAMP, MAX_KEY_LIFETIME_SECS, MAX_PATH_AND_QUERY, MAX_REPLAY_WINDOW_SECS,
    SIGNATURE_SCHEME,
};
pub use clock::{ManualTime, TimeSource};
pub use factors::{authorise, Action, Factor, InsufficientFactorsError};
pub use ip::{
    canonical_ip, IpAllowlist, IpAllowlistError, MAX_ALLOWLIST_ENTRIES, WITHDRAW_MIN_PREFIX_V4,
    WITHDRAW_MIN_PREFIX_V6,
};
pub use keys::{HashKey, HASH_KEY_LEN};
pub use limits::{
    limit_key, AttemptKind, AttemptLimiter, AttemptLimits, AttemptRate, LimitScope, LockedOutError,
    LockoutEvent, LockoutPolicy, LockoutState, RateLimitedError,
};
pub use link::{
    issue_link_token, link_token_hash, LinkPurpose, LinkToken, LinkTokenError, LinkTokenRecord,
};
pub use otp::{
    issue_otp, OtpChannel, OtpCode, OtpError, OtpPolicy, OtpPolicyError, OtpRecord,
    MAX_OTP_ATTEMPTS, MAX_OTP_DIGITS, MAX_OTP_TTL_SECS, MIN_OTP_DIGITS,
};
pub use recovery::{
    generate_recovery_codes, RecoveryCodeSet, RecoveryCodes, RecoveryError, RecoverySlot,
    DEFAULT_RECOVERY_CODES, MAX_RECOVERY_CODES, RECOVERY_CODE_CHARS,
};
pub use tls::{
    fingerprint_text, load_tls, server_config, TlsError, TlsSetup, TlsSource, DEV_CERT_FILE,
    DEV_KEY_FILE,
};
pub use webauthn::{
    AuthenticationCeremony, AuthenticationOutcome, RegistrationCeremony, StoredCredential,
    WebAuthn, WebAuthnConfig, WebAuthnConfigError, WebAuthnError, WebAuthnUser,
    DEFAULT_CEREMONY_TIMEOUT_SECS,
};
