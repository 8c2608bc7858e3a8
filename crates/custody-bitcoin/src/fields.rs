//! The threshold layer's messages inside a PSBT, as BIP174 proprietary global fields
//! (key type `0xFC`, identifier prefix `custody`), so a signing request stays a standard
//! PSBT that any wallet can open and show.
//!
//! | subtype | key data | value |
//! |---|---|---|
//! | `0x00` | empty | `custody_threshold::SigningRequest` encoding |
//! | `0x01` | signer index, `u16` big-endian | `custody_threshold::SignatureShares` encoding |
//!
//! Other subtypes under our prefix are reserved and ignored by this version (`0x02` is
//! planned for the coordinator's signed policy decision). Layouts and a worked hex example:
//! `docs/formats/psbt-fields.md`.

use bitcoin::psbt::raw::ProprietaryKey;
use bitcoin::psbt::Psbt;
use custody_threshold::{DecodeError, ParticipantIndex, SignatureShares, SigningRequest};
use thiserror::Error;

/// The proprietary identifier prefix of every CoinPort field.
pub const PREFIX: &[u8] = b"custody";
/// Subtype of the global field holding the signing request.
pub const SUBTYPE_SIGNING_REQUEST: u8 = 0x00;
/// Subtype of the global fields holding signature shares, one per signer.
pub const SUBTYPE_SIGNATURE_SHARES: u8 = 0x01;

/// Why the CoinPort fields of a PSBT could not be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldError {
    /// The PSBT carries no signing request.
    #[error("the PSBT carries no CoinPort signing request (proprietary field custody/0x00)")]
    MissingRequest,
    /// A field's key data has the wrong shape.
    #[error("CoinPort field subtype {subtype:#04x} has malformed key data ({len} bytes)")]
    BadKey {
        /// The subtype.
        subtype: u8,
        /// The key data length found.
        len: usize,
    },
    /// A field's value does not decode.
    #[error("CoinPort field {what} does not decode: {source}")]
    Decode {
        /// Which field.
        what: &'static str,
        /// The decoder's error.
        #[source]
        source: DecodeError,
    },
    /// A shares field is keyed by one signer but holds another's shares.
    #[error("signature shares keyed for signer #{key} hold shares of signer #{found}")]
    SignerMismatch {
        /// The index in the key.
        key: ParticipantIndex,
        /// The index in the value.
        found: ParticipantIndex,
    },
    /// A response PSBT is for a different transaction.
    #[error("the response PSBT is for a different transaction ({found}, expected {expected})")]
    DifferentTransaction {
        /// The txid of the request.
        expected: bitcoin::Txid,
        /// The txid of the response.
        found: bitcoin::Txid,
    },
}

/// The key of the signing-request field.
pub fn request_key() -> ProprietaryKey {
    ProprietaryKey {
        prefix: PREFIX.to_vec(),
        subtype: SUBTYPE_SIGNING_REQUEST,
        key: Vec::new(),
    }
}

/// The key of signer `index`'s shares field.
pub fn shares_key(index: ParticipantIndex) -> ProprietaryKey {
    ProprietaryKey {
        prefix: PREFIX.to_vec(),
        subtype: SUBTYPE_SIGNATURE_SHARES,
        key: index.to_be_bytes().to_vec(),
    }
}

/// Puts `request` in `psbt`'s global signing-request field, replacing any earlier one.
pub fn set_signing_request(psbt: &mut Psbt, request: &SigningRequest) {
    psbt.proprietary.insert(request_key(), request.encode());
}

/// Reads the signing request from `psbt`.
///
/// # Errors
/// [`FieldError::MissingRequest`], or [`FieldError::Decode`] / [`FieldError::BadKey`] for a
/// malformed field.
pub fn signing_request(psbt: &Psbt) -> Result<SigningRequest, FieldError> {
    let mut found = None;
    for (key, value) in &psbt.proprietary {
        if key.prefix == PREFIX && key.subtype == SUBTYPE_SIGNING_REQUEST {
            if !key.key.is_empty() {
                return Err(FieldError::BadKey {
                    subtype: key.subtype,
                    len: key.key.len(),
                });
            }
            found = Some(value);
        }
    }
    let value = found.ok_or(FieldError::MissingRequest)?;
    SigningRequest::decode(value).map_err(|source| FieldError::Decode {
        what: "signing request",
        source,
    })
}

/// Puts a signer's `shares` in its global shares field.
pub fn set_signature_shares(psbt: &mut Psbt, shares: &SignatureShares) {
    psbt.proprietary
        .insert(shares_key(shares.signer), shares.encode());
}

/// Reads every signer's shares from `psbt`, in signer order.
///
/// # Errors
/// A [`FieldError`] for a malformed field or a key/value signer mismatch.
pub fn signature_shares(psbt: &Psbt) -> Result<Vec<SignatureShares>, FieldError> {
    let mut all = Vec::new();
    for (key, value) in &psbt.proprietary {
        if key.prefix != PREFIX || key.subtype != SUBTYPE_SIGNATURE_SHARES {
            continue;
        }
        let index: [u8; 2] = key
            .key
            .as_slice()
            .try_into()
            .map_err(|_| FieldError::BadKey {
                subtype: key.subtype,
                len: key.key.len(),
            })?;
        let index = u16::from_be_bytes(index);
        let shares = SignatureShares::decode(value).map_err(|source| FieldError::Decode {
            what: "signature shares",
            source,
        })?;
        if shares.signer != index {
            return Err(FieldError::SignerMismatch {
                key: index,
                found: shares.signer,
            });
        }
        all.push(shares);
    }
    Ok(all)
}

/// Copies the signature-shares fields of a signer's `response` into the coordinator's
/// `psbt`, and nothing else (a response cannot change prevouts, scripts or any other field).
///
/// # Errors
/// [`FieldError::DifferentTransaction`] when `response` is for another transaction, or a
/// malformed shares field.
pub fn absorb_response(psbt: &mut Psbt, response: &Psbt) -> Result<usize, FieldError> {
    let expected = psbt.unsigned_tx.compute_txid();
    let found = response.unsigned_tx.compute_txid();
    if expected != found {
        return Err(FieldError::DifferentTransaction { expected, found });
    }
    let shares = signature_shares(response)?;
    for s in &shares {
        set_signature_shares(psbt, s);
    }
    Ok(shares.len())
}
