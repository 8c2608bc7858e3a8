//! Trusted-dealer key generation.
//!
//! # Security
//! The dealer holds the whole key while it splits it. This is the weaker option, meant for
//! drills, tests and simulations; real wallets are created with the certified DKG
//! ([`crate::Keygen`]), where no machine ever sees the key.

use frost::keys::{IdentifierList, KeyPackage};
use frost_secp256k1_tr as frost;
use rand_core::{CryptoRng, RngCore};
use thiserror::Error;

use crate::keys::{index_of, GroupKey, KeyShare};
use crate::plan::MAX_PARTICIPANTS;

/// Why dealer key generation failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DealerError {
    /// Threshold and participant count are inconsistent.
    #[error("threshold {threshold} of {participants} is not allowed: need 2 <= threshold <= participants <= {MAX_PARTICIPANTS}")]
    BadThreshold {
        /// Requested threshold.
        threshold: u16,
        /// Requested participants.
        participants: u16,
    },
    /// The FROST library refused.
    #[error("dealer key generation failed: {0}")]
    Protocol(String),
}

/// Generates a `threshold`-of-`participants` key with a trusted dealer.
///
/// Participants are numbered from 1. The chain code is drawn at random. Unlike DKG output,
/// the dealer's group key carries no Taproot tweak of its own.
///
/// # Errors
/// [`DealerError::BadThreshold`] for impossible parameters.
pub fn generate_with_dealer<R: RngCore + CryptoRng>(
    network: bitcoin::Network,
    threshold: u16,
    participants: u16,
    rng: &mut R,
) -> Result<(GroupKey, Vec<KeyShare>), DealerError> {
    if threshold < 2 || threshold > participants || usize::from(participants) > MAX_PARTICIPANTS {
        return Err(DealerError::BadThreshold {
            threshold,
            participants,
        });
    }
    let (shares, package) = frost::keys::generate_with_dealer(
        participants,
        threshold,
        IdentifierList::Default,
        &mut *rng,
    )
    .map_err(|e| DealerError::Protocol(e.to_string()))?;
    let mut chain_code = [0u8; 32];
    rng.fill_bytes(&mut chain_code);
    let group = GroupKey::new(network, chain_code, package);
    let mut out = Vec::with_capacity(shares.len());
    for (id, secret) in shares {
        let index = index_of(&id).expect("default identifiers are 1..=n");
        let kp = KeyPackage::try_from(secret).map_err(|e| DealerError::Protocol(e.to_string()))?;
        out.push(
            KeyShare::new(index, kp, group.clone())
                .map_err(|e| DealerError::Protocol(e.to_string()))?,
        );
    }
    Ok((group, out))
}
