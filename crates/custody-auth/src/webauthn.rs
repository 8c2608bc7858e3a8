//! WebAuthn (passkeys and security keys) with user verification required, on `webauthn-rs`.
//!
//! Four steps, each a method of [`WebAuthn`]:
//!
//! 1. [`WebAuthn::start_registration`] → options for the browser
//!    (`navigator.credentials.create`) and a [`RegistrationCeremony`] to store;
//! 2. [`WebAuthn::finish_registration`] → a [`StoredCredential`] to store with the account;
//! 3. [`WebAuthn::start_authentication`] → options (`navigator.credentials.get`) and an
//!    [`AuthenticationCeremony`] to store;
//! 4. [`WebAuthn::finish_authentication`] → which credential answered, with its counter and
//!    backup state written back into the matching [`StoredCredential`].
//!
//! Security keys go through the same ceremonies as passkeys: `webauthn-rs`'s passkey
//! ceremony is the one that *requires* user verification (a PIN or biometric on the key),
//! which this project asks of every WebAuthn factor; its security-key ceremony only
//! prefers it.
//!
//! Ceremonies and credentials serialise to JSON (`to_json`/`from_json`) for a database
//! row. A ceremony is single use: the coordinator deletes its row in the transaction that
//! finishes it (`DELETE … RETURNING`), and it expires after the configured timeout (default
//! 5 minutes). As a second line against a replayed assertion, a stored credential keeps the
//! last signature counter, and a counter that does not move forward is refused (an
//! authenticator that always reports 0, like most synced passkeys, relies on the first line).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use webauthn_rs::prelude::{
    AuthenticationResult, Passkey, PasskeyAuthentication, PasskeyRegistration, WebauthnBuilder,
};

pub use webauthn_rs::prelude::{
    CreationChallengeResponse, CredentialID, PublicKeyCredential, RegisterPublicKeyCredential,
    RequestChallengeResponse, Url, Uuid, WebauthnError,
};

/// Default ceremony lifetime in seconds.
pub const DEFAULT_CEREMONY_TIMEOUT_SECS: i64 = 300;

/// The relying party: who we are to the authenticator.
#[derive(Clone, Debug)]
pub struct WebAuthnConfig {
    /// The relying party id, a registrable domain (`coinport.example`). Credentials are
    /// bound to it for good: changing it orphans every registered key.
    pub rp_id: String,
    /// The name authenticators show (`CoinPort`).
    pub rp_name: String,
    /// Every origin the pages run on (`https://coinport.example`), each within `rp_id`.
    pub origins: Vec<Url>,
    /// How long a ceremony may take, in seconds (1 to 600).
    pub ceremony_timeout_secs: i64,
}

/// A configuration `webauthn-rs` refused.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WebAuthnConfigError {
    /// No origin given.
    #[error("at least one origin is needed")]
    NoOrigins,
    /// The timeout is out of range.
    #[error("the ceremony timeout must be 1 to 600 seconds, not {found}")]
    Timeout {
        /// The value given.
        found: i64,
    },
    /// The rp id or an origin is not acceptable (an origin outside the rp id, a bad id).
    #[error("the relying party id or an origin is not valid: {0}")]
    Invalid(#[source] WebauthnError),
}

/// A ceremony or credential could not be completed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WebAuthnError {
    /// The ceremony is older than the timeout.
    #[error("the security key prompt expired at {expired_at}; start again")]
    CeremonyExpired {
        /// When it expired.
        expired_at: i64,
    },
    /// The user has no credential to authenticate with.
    #[error("no security key or passkey is registered for this user")]
    NoCredentials,
    /// A credential of another user was offered or answered.
    #[error("the credential does not belong to this user")]
    WrongUser,
    /// The key registered is already registered.
    #[error("this security key or passkey is already registered")]
    AlreadyRegistered,
    /// The authenticator did not verify the user (no PIN or biometric).
    #[error("the security key or passkey did not verify the user (PIN or biometric required)")]
    UserNotVerified,
    /// The signature counter did not move forward: a replay or a cloned authenticator.
    #[error("the authenticator's signature counter went from {stored} to {presented}; the credential may be cloned")]
    CounterNotIncreasing {
        /// The counter stored.
        stored: u32,
        /// The counter presented.
        presented: u32,
    },
    /// `webauthn-rs` refused the answer (wrong origin or rp id, challenge mismatch, bad
    /// signature, credential not allowed, …).
    #[error("the security key's answer was refused: {0}")]
    Rejected(#[source] WebauthnError),
    /// A stored ceremony or credential could not be read.
    #[error("stored WebAuthn data is not readable: {0}")]
    Stored(#[source] serde_json::Error),
}

fn rejected(e: WebauthnError) -> WebAuthnError {
    match e {
        WebauthnError::UserNotVerified => WebAuthnError::UserNotVerified,
        other => WebAuthnError::Rejected(other),
    }
}

/// The user a credential is registered for.
#[derive(Clone, Copy, Debug)]
pub struct WebAuthnUser<'a> {
    /// The user handle: random, stable, never personal data (authenticators may store
    /// it). Keep one per account.
    pub id: Uuid,
    /// The account name shown by the authenticator (for example the email).
    pub name: &'a str,
    /// The display name shown by the authenticator.
    pub display_name: &'a str,
}

/// A registration in progress; store it until the browser answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RegistrationCeremony {
    user_id: Uuid,
    expires_at: i64,
    excluded: Vec<CredentialID>,
    state: PasskeyRegistration,
}

/// An authentication in progress; store it until the browser answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuthenticationCeremony {
    user_id: Uuid,
    expires_at: i64,
    state: PasskeyAuthentication,
}

macro_rules! json_row {
    ($t:ty) => {
        impl $t {
            /// The JSON to store in a database row.
            ///
            /// # Errors
            /// [`WebAuthnError::Stored`] (not expected for a value made by this crate).
            pub fn to_json(&self) -> Result<String, WebAuthnError> {
                serde_json::to_string(self).map_err(WebAuthnError::Stored)
            }

            /// Reads what [`Self::to_json`] wrote.
            ///
            /// # Errors
            /// [`WebAuthnError::Stored`].
            pub fn from_json(json: &str) -> Result<Self, WebAuthnError> {
                serde_json::from_str(json).map_err(WebAuthnError::Stored)
            }
        }
    };
}

json_row!(RegistrationCeremony);
json_row!(AuthenticationCeremony);
json_row!(StoredCredential);

impl RegistrationCeremony {
    /// Whose registration it is.
    pub fn user_id(&self) -> Uuid {
        self.user_id
    }

    /// When it stops being accepted.
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }
}

impl AuthenticationCeremony {
    /// Whose authentication it is.
    pub fn user_id(&self) -> Uuid {
        self.user_id
    }

    /// When it stops being accepted.
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }
}

/// A registered credential. Columns: `credential_id` (base64url, unique across **all**
/// accounts), `user_id`, `credential` (this value's JSON), `created_at`, `last_used_at`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredCredential {
    user_id: Uuid,
    passkey: Passkey,
    /// When it was registered.
    pub created_at: i64,
    /// When it last authenticated.
    pub last_used_at: Option<i64>,
    /// The last signature counter seen (0 for authenticators without one).
    pub counter: u32,
    /// Whether the credential is backed up (synced passkey), as last reported.
    pub backup_state: bool,
}

impl StoredCredential {
    /// The credential id.
    pub fn credential_id(&self) -> &CredentialID {
        self.passkey.cred_id()
    }

    /// The credential id as base64url text, for a unique column.
    pub fn credential_id_text(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.passkey.cred_id().as_slice())
    }

    /// Whose credential it is.
    pub fn user_id(&self) -> Uuid {
        self.user_id
    }
}

/// What an authentication proved.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthenticationOutcome {
    /// The credential that answered.
    pub credential_id: CredentialID,
    /// Whether its stored value changed (counter, backup state): write it back.
    pub credential_changed: bool,
    /// Whether it is now backed up (a synced passkey).
    pub backup_state: bool,
}

/// The relying party, configured once.
#[derive(Debug)]
pub struct WebAuthn {
    inner: webauthn_rs::Webauthn,
    timeout_secs: i64,
}

impl WebAuthn {
    /// Builds the relying party.
    ///
    /// # Errors
    /// [`WebAuthnConfigError`].
    pub fn new(config: &WebAuthnConfig) -> Result<Self, WebAuthnConfigError> {
        let (first, rest) = config
            .origins
            .split_first()
            .ok_or(WebAuthnConfigError::NoOrigins)?;
        if !(1..=600).contains(&config.ceremony_timeout_secs) {
            return Err(WebAuthnConfigError::Timeout {
                found: config.ceremony_timeout_secs,
            });
        }
        let timeout = Duration::from_secs(config.ceremony_timeout_secs.unsigned_abs());
        let mut builder = WebauthnBuilder::new(&config.rp_id, first)
            .map_err(WebAuthnConfigError::Invalid)?
            .rp_name(&config.rp_name)
            .timeout(timeout);
        for origin in rest {
            builder = builder.append_allowed_origin(origin);
        }
        let inner = builder.build().map_err(WebAuthnConfigError::Invalid)?;
        Ok(WebAuthn {
            inner,
            timeout_secs: config.ceremony_timeout_secs,
        })
    }

    /// Starts registering a new credential for `user`. `existing` are the user's
    /// credentials, which the authenticator is told not to register again.
    ///
    /// # Errors
    /// [`WebAuthnError::WrongUser`] if `existing` holds another user's credential;
    /// [`WebAuthnError::Rejected`].
    pub fn start_registration(
        &self,
        user: WebAuthnUser<'_>,
        existing: &[StoredCredential],
        now: i64,
    ) -> Result<(CreationChallengeResponse, RegistrationCeremony), WebAuthnError> {
        if existing.iter().any(|c| c.user_id != user.id) {
            return Err(WebAuthnError::WrongUser);
        }
        let excluded: Vec<CredentialID> =
            existing.iter().map(|c| c.credential_id().clone()).collect();
        let exclude = (!excluded.is_empty()).then(|| excluded.clone());
        let (options, state) = self
            .inner
            .start_passkey_registration(user.id, user.name, user.display_name, exclude)
            .map_err(rejected)?;
        Ok((
            options,
            RegistrationCeremony {
                user_id: user.id,
                expires_at: now.saturating_add(self.timeout_secs),
                excluded,
                state,
            },
        ))
    }

    /// Finishes a registration with the browser's answer.
    ///
    /// # Errors
    /// [`WebAuthnError::CeremonyExpired`], [`WebAuthnError::UserNotVerified`],
    /// [`WebAuthnError::AlreadyRegistered`], [`WebAuthnError::Rejected`].
    pub fn finish_registration(
        &self,
        ceremony: RegistrationCeremony,
        response: &RegisterPublicKeyCredential,
        now: i64,
    ) -> Result<StoredCredential, WebAuthnError> {
        if now >= ceremony.expires_at {
            return Err(WebAuthnError::CeremonyExpired {
                expired_at: ceremony.expires_at,
            });
        }
        let passkey = self
            .inner
            .finish_passkey_registration(response, &ceremony.state)
            .map_err(rejected)?;
        if ceremony.excluded.contains(passkey.cred_id()) {
            return Err(WebAuthnError::AlreadyRegistered);
        }
        Ok(StoredCredential {
            user_id: ceremony.user_id,
            passkey,
            created_at: now,
            last_used_at: None,
            counter: 0,
            backup_state: false,
        })
    }

    /// Starts authenticating `user_id` with their `credentials`.
    ///
    /// # Errors
    /// [`WebAuthnError::NoCredentials`], [`WebAuthnError::WrongUser`],
    /// [`WebAuthnError::Rejected`].
    pub fn start_authentication(
        &self,
        user_id: Uuid,
        credentials: &[StoredCredential],
        now: i64,
    ) -> Result<(RequestChallengeResponse, AuthenticationCeremony), WebAuthnError> {
        if credentials.is_empty() {
            return Err(WebAuthnError::NoCredentials);
        }
        if credentials.iter().any(|c| c.user_id != user_id) {
            return Err(WebAuthnError::WrongUser);
        }
        let passkeys: Vec<Passkey> = credentials.iter().map(|c| c.passkey.clone()).collect();
        let (options, state) = self
            .inner
            .start_passkey_authentication(&passkeys)
            .map_err(rejected)?;
        Ok((
            options,
            AuthenticationCeremony {
                user_id,
                expires_at: now.saturating_add(self.timeout_secs),
                state,
            },
        ))
    }

    /// Finishes an authentication with the browser's answer and updates the credential
    /// that answered (counter, backup state, last use) inside `credentials`.
    ///
    /// # Errors
    /// [`WebAuthnError::CeremonyExpired`], [`WebAuthnError::WrongUser`],
    /// [`WebAuthnError::UserNotVerified`], [`WebAuthnError::CounterNotIncreasing`],
    /// [`WebAuthnError::Rejected`].
    pub fn finish_authentication(
        &self,
        ceremony: AuthenticationCeremony,
        response: &PublicKeyCredential,
        credentials: &mut [StoredCredential],
        now: i64,
    ) -> Result<AuthenticationOutcome, WebAuthnError> {
        if now >= ceremony.expires_at {
            return Err(WebAuthnError::CeremonyExpired {
                expired_at: ceremony.expires_at,
            });
        }
        let result: AuthenticationResult = self
            .inner
            .finish_passkey_authentication(response, &ceremony.state)
            .map_err(rejected)?;
        if !result.user_verified() {
            return Err(WebAuthnError::UserNotVerified);
        }
        let stored = credentials
            .iter_mut()
            .find(|c| c.credential_id() == result.cred_id())
            .ok_or(WebAuthnError::WrongUser)?;
        if stored.user_id != ceremony.user_id {
            return Err(WebAuthnError::WrongUser);
        }
        let presented = result.counter();
        if (presented > 0 || stored.counter > 0) && presented <= stored.counter {
            return Err(WebAuthnError::CounterNotIncreasing {
                stored: stored.counter,
                presented,
            });
        }
        let library_changed = stored.passkey.update_credential(&result).unwrap_or(false);
        let changed = library_changed
            || stored.counter != presented
            || stored.backup_state != result.backup_state();
        stored.counter = presented;
        stored.backup_state = result.backup_state();
        stored.last_used_at = Some(now);
        Ok(AuthenticationOutcome {
            credential_id: result.cred_id().clone(),
            credential_changed: changed,
            backup_state: result.backup_state(),
        })
    }
}
