//! Credentials: argon2id passwords, opaque session tokens stored only as hashes, and TOTP
//! (RFC 6238: SHA-1, 6 digits, 30 s step, one step of drift, a code never accepted twice).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;
use totp_rs::TOTP;
use zeroize::Zeroizing;

/// A credential problem. Messages never contain the secret concerned.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AuthError {
    /// argon2 refused the parameters or the stored hash is malformed.
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// The TOTP secret is malformed.
    #[error("stored TOTP secret is not valid")]
    BadTotpSecret,
}

/// argon2id settings.
#[derive(Clone, Debug)]
pub struct PasswordPolicy {
    memory_kib: u32,
    iterations: u32,
    // A hash with these settings, made on first use, that a sign-in for an unknown account
    // is checked against so it costs the same as a real one.
    decoy: std::sync::Arc<std::sync::OnceLock<String>>,
}

impl PasswordPolicy {
    /// From the (validated) configuration.
    pub fn new(memory_kib: u32, iterations: u32) -> Self {
        PasswordPolicy {
            memory_kib,
            iterations,
            decoy: std::sync::Arc::default(),
        }
    }

    fn argon2(&self) -> Result<Argon2<'static>, AuthError> {
        let params = Params::new(self.memory_kib, self.iterations, 1, None)
            .map_err(|e| AuthError::Hash(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    /// Hashes a password into a PHC string (`$argon2id$v=19$m=…`).
    ///
    /// # Errors
    /// [`AuthError::Hash`].
    pub fn hash(&self, password: &str) -> Result<String, AuthError> {
        let salt = SaltString::generate(&mut OsRng);
        self.argon2()?
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AuthError::Hash(e.to_string()))
    }

    /// Spends what checking `password` against a real hash with these settings costs, and
    /// returns false: the answer for an account that does not exist.
    pub fn verify_unknown_account(&self, password: &str) -> bool {
        let decoy = self
            .decoy
            .get_or_init(|| self.hash("decoy for unknown accounts").unwrap_or_default());
        let _ = self.verify(password, decoy);
        false
    }

    /// [`verify`](Self::verify) on the blocking thread pool, so the deliberate cost of
    /// argon2id never stalls the async workers that serve other requests.
    pub async fn verify_off_thread(&self, password: &str, stored: &str) -> bool {
        let (me, password, stored) = (
            self.clone(),
            Zeroizing::new(password.to_owned()),
            stored.to_owned(),
        );
        tokio::task::spawn_blocking(move || me.verify(&password, &stored))
            .await
            .unwrap_or(false)
    }

    /// [`verify_unknown_account`](Self::verify_unknown_account) on the blocking pool.
    pub async fn verify_unknown_account_off_thread(&self, password: &str) -> bool {
        let (me, password) = (self.clone(), Zeroizing::new(password.to_owned()));
        tokio::task::spawn_blocking(move || me.verify_unknown_account(&password))
            .await
            .unwrap_or(false)
    }

    /// [`hash`](Self::hash) on the blocking pool.
    ///
    /// # Errors
    /// [`AuthError::Hash`].
    pub async fn hash_off_thread(&self, password: &str) -> Result<String, AuthError> {
        let (me, password) = (self.clone(), Zeroizing::new(password.to_owned()));
        tokio::task::spawn_blocking(move || me.hash(&password))
            .await
            .map_err(|e| AuthError::Hash(e.to_string()))?
    }

    /// Whether `password` matches the stored PHC string (parameters are read from it).
    pub fn verify(&self, password: &str, stored: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(stored) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    }
}

/// A fresh session token (shown once) and the hash stored in its place.
pub fn new_token() -> (Zeroizing<String>, String) {
    let mut bytes = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(bytes.as_mut());
    let token = Zeroizing::new(format!("cps_{}", hex::encode(&bytes[..])));
    let hash = token_hash(&token);
    (token, hash)
}

/// The stored form of a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Compares two secrets in constant time.
pub fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The TOTP step length in seconds.
pub const TOTP_STEP: u64 = 30;

/// A new random TOTP secret (160 bits, as RFC 4226 recommends), hex-encoded for storage.
pub fn new_totp_secret() -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; 20]);
    OsRng.fill_bytes(bytes.as_mut());
    Zeroizing::new(hex::encode(&bytes[..]))
}

fn totp(secret_hex: &str, account: &str) -> Result<TOTP, AuthError> {
    let secret = Zeroizing::new(hex::decode(secret_hex).map_err(|_| AuthError::BadTotpSecret)?);
    TOTP::new(
        totp_rs::Algorithm::SHA1,
        6,
        1,
        TOTP_STEP,
        secret.to_vec(),
        Some("CoinPort Custody".to_owned()),
        account.to_owned(),
    )
    .map_err(|_| AuthError::BadTotpSecret)
}

/// The `otpauth://` URI and base32 secret an authenticator app enrols from.
///
/// # Errors
/// [`AuthError::BadTotpSecret`].
pub fn totp_provisioning(
    secret_hex: &str,
    account: &str,
) -> Result<(String, Zeroizing<String>), AuthError> {
    let t = totp(secret_hex, account)?;
    Ok((t.get_url(), Zeroizing::new(t.get_secret_base32())))
}

/// The code for unix time `now` (tests and the quickstart's simulated authenticator).
///
/// # Errors
/// [`AuthError::BadTotpSecret`].
pub fn totp_code(secret_hex: &str, now: i64) -> Result<String, AuthError> {
    Ok(totp(secret_hex, "x")?.generate(u64::try_from(now).unwrap_or(0)))
}

/// Checks `code` at `now` against the current step and one step either side, accepting
/// only a step later than `last_step` (so a code is never accepted twice). Returns the
/// step to record.
///
/// # Errors
/// [`AuthError::BadTotpSecret`].
pub fn totp_check(
    secret_hex: &str,
    code: &str,
    now: i64,
    last_step: i64,
) -> Result<Option<i64>, AuthError> {
    let t = totp(secret_hex, "x")?;
    let now = u64::try_from(now).unwrap_or(0);
    let current = now / TOTP_STEP;
    for step in [current.saturating_sub(1), current, current + 1] {
        let step_i = i64::try_from(step).unwrap_or(i64::MAX);
        if step_i <= last_step {
            continue;
        }
        let expected = t.generate(step * TOTP_STEP);
        if secrets_equal(expected.as_bytes(), code.trim().as_bytes()) {
            return Ok(Some(step_i));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_totp_code_is_accepted_once_and_within_one_step() {
        let secret = new_totp_secret();
        let now = 1_800_000_000;
        let code = totp_code(&secret, now).expect("code");
        let step = totp_check(&secret, &code, now, 0)
            .expect("ok")
            .expect("accepted");
        assert_eq!(
            totp_check(&secret, &code, now, step).expect("ok"),
            None,
            "replay"
        );
        // One step late is fine, two is not.
        assert!(totp_check(&secret, &code, now + 30, 0)
            .expect("ok")
            .is_some());
        assert!(totp_check(&secret, &code, now + 61, 0)
            .expect("ok")
            .is_none());
        assert!(totp_check(&secret, "000000", now, 0).expect("ok").is_none() || code == "000000");
    }

    #[test]
    fn passwords_verify_only_with_the_right_password() {
        let p = PasswordPolicy::new(19_456, 2);
        let h = p.hash("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(p.verify("correct horse", &h));
        assert!(!p.verify("correct horse ", &h));
    }

    #[test]
    fn an_unknown_account_costs_a_real_check() {
        let p = PasswordPolicy::new(19_456, 2);
        assert!(!p.verify_unknown_account("correct horse"));
        let decoy = p.decoy.get().expect("made on first use");
        assert!(
            PasswordHash::new(decoy).is_ok(),
            "a parsable hash, so verify does the work"
        );
        assert!(decoy.contains("m=19456,t=2"));
    }

    #[test]
    fn tokens_are_stored_as_hashes() {
        let (t, h) = new_token();
        assert_ne!(t.as_str(), h);
        assert_eq!(token_hash(&t), h);
    }
}
