//! The threshold layer's messages inside a PSBT, as BIP174 proprietary global fields
//! (key type `0xFC`, identifier prefix `custody`), so a signing request stays a standard
//! PSBT that any wallet can open and show.
//!
//! | subtype | key data | value |
//! |---|---|---|
//! | `0x00` | empty | `custody_threshold::SigningRequest` encoding |
//! | `0x01` | signer index, `u16` big-endian | `custody_threshold::SignatureShares` encoding |
//! | `0x02` | empty | the coordinator's signed decision, `custody_policy::Decision::encode` |
//!
//! Other subtypes under our prefix are reserved and ignored by this version. The decision
//! value is carried as opaque bytes here (this crate does not depend on the policy crate);
//! signers decode and verify it themselves. Layouts and a worked hex example:
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
/// Subtype of the global field holding the coordinator's signed policy decision.
pub const SUBTYPE_DECISION: u8 = 0x02;

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

/// The key of the policy-decision field.
pub fn decision_key() -> ProprietaryKey {
    ProprietaryKey {
        prefix: PREFIX.to_vec(),
        subtype: SUBTYPE_DECISION,
        key: Vec::new(),
    }
}

/// Puts the coordinator's encoded signed decision (`custody_policy::Decision::encode`) in
/// `psbt`'s global decision field, replacing any earlier one.
pub fn set_decision(psbt: &mut Psbt, encoded_decision: &[u8]) {
    psbt.proprietary
        .insert(decision_key(), encoded_decision.to_vec());
}

/// Reads the encoded decision from `psbt`, if it carries one. The bytes are not decoded
/// or verified here.
///
/// # Errors
/// [`FieldError::BadKey`] for a decision field with key data.
pub fn decision(psbt: &Psbt) -> Result<Option<&[u8]>, FieldError> {
    let mut found = None;
    for (key, value) in &psbt.proprietary {
        if key.prefix == PREFIX && key.subtype == SUBTYPE_DECISION {
            if !key.key.is_empty() {
                return Err(FieldError::BadKey {
                    subtype: key.subtype,
                    len: key.key.len(),
                });
            }
            found = Some(value.as_slice());
        }
    }
    Ok(found)
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

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::absolute::LockTime;
    use bitcoin::transaction::Version;
    use bitcoin::Transaction;

    fn empty_psbt() -> Psbt {
        Psbt::from_unsigned_tx(Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: Vec::new(),
            output: Vec::new(),
        })
        .expect("an unsigned transaction")
    }

    #[test]
    fn a_decision_round_trips_through_the_serialized_psbt() {
        let mut psbt = empty_psbt();
        assert_eq!(decision(&psbt), Ok(None));
        set_decision(&mut psbt, b"first");
        set_decision(&mut psbt, b"CPPO decision bytes");
        let back = Psbt::deserialize(&psbt.serialize()).expect("parses");
        assert_eq!(decision(&back), Ok(Some(&b"CPPO decision bytes"[..])));
        // The wire key (10 bytes): 0xFC, prefix length 7, "custody", subtype 0x02, no key data.
        let wire = back.serialize();
        let key = [&[0x0au8, 0xfc, 0x07][..], b"custody", &[0x02]].concat();
        assert!(wire.windows(key.len()).any(|w| w == key.as_slice()));
    }

    #[test]
    fn a_decision_field_with_key_data_is_an_error() {
        let mut psbt = empty_psbt();
        psbt.proprietary.insert(
            ProprietaryKey {
                prefix: PREFIX.to_vec(),
                subtype: SUBTYPE_DECISION,
                key: vec![1],
            },
            b"x".to_vec(),
        );
        assert_eq!(
            decision(&psbt),
            Err(FieldError::BadKey {
                subtype: SUBTYPE_DECISION,
                len: 1
            })
        );
    }
}
