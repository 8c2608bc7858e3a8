//! BIP340 Schnorr signatures, used for identity keys and to check FROST output.
//!
//! Implemented by the `k256` crate; the test suite checks this path against the published
//! BIP340 vectors and against libsecp256k1.
//!
//! Specification: <https://github.com/bitcoin/bips/blob/master/bip-0340.mediawiki>

use k256::schnorr::{Signature, SigningKey, VerifyingKey};
use thiserror::Error;

/// Why a BIP340 signature did not verify.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// The public key is not 32 bytes.
    #[error("public key must be 32 bytes, found {found}")]
    PublicKeyLength {
        /// Length found.
        found: usize,
    },
    /// The public key is not the x coordinate of a curve point.
    #[error("public key is not a valid x-only secp256k1 point")]
    InvalidPublicKey,
    /// The signature is not 64 bytes.
    #[error("signature must be 64 bytes, found {found}")]
    SignatureLength {
        /// Length found.
        found: usize,
    },
    /// The signature is malformed or does not verify.
    #[error("signature does not verify")]
    BadSignature,
}

/// Why signing failed.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignError {
    /// The secret key is zero or not below the curve order.
    #[error("secret key is out of range")]
    InvalidSecretKey,
    /// The derived nonce was zero (probability 2^-256).
    #[error("signing failed")]
    Failed,
}

/// Verifies a BIP340 signature over `message` (any length) by the x-only `public_key`.
///
/// # Errors
/// Returns a [`VerifyError`] saying which input is malformed, or
/// [`VerifyError::BadSignature`].
pub fn verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), VerifyError> {
    if public_key.len() != 32 {
        return Err(VerifyError::PublicKeyLength {
            found: public_key.len(),
        });
    }
    if signature.len() != 64 {
        return Err(VerifyError::SignatureLength {
            found: signature.len(),
        });
    }
    let key = VerifyingKey::from_bytes(public_key).map_err(|_| VerifyError::InvalidPublicKey)?;
    let sig = Signature::try_from(signature).map_err(|_| VerifyError::BadSignature)?;
    key.verify_raw(message, &sig)
        .map_err(|_| VerifyError::BadSignature)
}

/// Signs `message` with `secret_key` and the given auxiliary randomness, exactly as
/// BIP340's reference algorithm does.
///
/// # Errors
/// [`SignError::InvalidSecretKey`] for a zero or out-of-range key.
pub fn sign_with_aux(
    secret_key: &[u8; 32],
    message: &[u8],
    aux_rand: &[u8; 32],
) -> Result<[u8; 64], SignError> {
    let key = SigningKey::from_bytes(secret_key).map_err(|_| SignError::InvalidSecretKey)?;
    sign_with_key(&key, message, aux_rand)
}

pub(crate) fn sign_with_key(
    key: &SigningKey,
    message: &[u8],
    aux_rand: &[u8; 32],
) -> Result<[u8; 64], SignError> {
    let sig = key
        .sign_raw(message, aux_rand)
        .map_err(|_| SignError::Failed)?;
    Ok(sig.to_bytes())
}
