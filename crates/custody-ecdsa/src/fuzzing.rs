//! Entry points for the fuzz targets in `fuzz/`: each decodes arbitrary bytes, must never
//! panic, and checks that whatever decodes re-encodes to the same bytes.

use crate::{EcdsaMessage, EcdsaPlan, GroupPublicKey, PartialSignature};

/// Fuzzes [`EcdsaMessage::decode`].
pub mod message {
    /// Decodes `data`; a decoded message must re-encode to `data`.
    pub fn do_test(data: &[u8]) {
        if let Ok(m) = super::EcdsaMessage::decode(data) {
            assert_eq!(m.encode(), data, "ECDSA message round trip");
        }
    }
}

/// Fuzzes [`EcdsaPlan::decode`].
pub mod plan {
    /// Decodes `data`; a decoded plan must re-encode to `data`.
    pub fn do_test(data: &[u8]) {
        if let Ok(p) = super::EcdsaPlan::decode(data) {
            assert_eq!(p.encode(), data, "ECDSA plan round trip");
        }
    }
}

/// Fuzzes [`PartialSignature::decode`].
pub mod partial_signature {
    /// Decodes `data`; a decoded partial signature must re-encode to `data`.
    pub fn do_test(data: &[u8]) {
        if let Ok(p) = super::PartialSignature::decode(data) {
            assert_eq!(p.encode(), data, "partial signature round trip");
        }
    }
}

/// Fuzzes [`GroupPublicKey::decode`].
pub mod group_key {
    /// Decodes `data`; a decoded key must re-encode to `data`.
    pub fn do_test(data: &[u8]) {
        if let Ok(k) = super::GroupPublicKey::decode(data) {
            assert_eq!(k.encode(), data, "group key round trip");
        }
    }
}

/// Fuzzes the split of a message body into protocol messages (the part of
/// [`EcdsaMessage`] handling that runs on decrypted, authenticated bytes).
pub mod message_body {
    /// Splits `data` as a body of a 3-instance step.
    pub fn do_test(data: &[u8]) {
        let _ = item_count(data);
    }

    /// Splits `data` as a body of a 3-instance step and returns how many protocol
    /// messages it holds (for corpus checks).
    ///
    /// # Errors
    /// The [`crate::DecodeError`] naming the malformed item.
    pub fn item_count(data: &[u8]) -> Result<usize, crate::DecodeError> {
        crate::session::decode_items(data, 3).map(|items| items.len())
    }
}
