//! BIP32 public derivation and BIP341 output keys for the group key.
//!
//! The group key with its chain code is an ordinary extended public key, so watch-only
//! software derives children with plain CKDpub. A signer derives the matching child share
//! by adding the same tweak `t = Σ I_L` to its share: the Lagrange weights of any signing set
//! sum to one, so every signer adding `t` adds exactly `t` to the joint secret.
//!
//! Specifications: BIP32 (<https://github.com/bitcoin/bips/blob/master/bip-0032.mediawiki>),
//! BIP341 (<https://github.com/bitcoin/bips/blob/master/bip-0341.mediawiki>).

use bitcoin::bip32::{ChildNumber, Xpub};
use bitcoin::secp256k1::{Secp256k1, XOnlyPublicKey};
use bitcoin::taproot::TapNodeHash;
use k256::elliptic_curve::PrimeField;
use k256::Scalar;
use thiserror::Error;

/// Why a derivation failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeriveError {
    /// Hardened steps need the private key, which no single party has.
    #[error("cannot derive hardened child {index}' from a threshold group key; use non-hardened steps only")]
    Hardened {
        /// The index without the hardened bit.
        index: u32,
    },
    /// The step produced an invalid key (probability below 2^-127); BIP32 says to skip the
    /// index.
    #[error("derivation step {index} gives an invalid key; use the next index")]
    InvalidChild {
        /// The child index.
        index: u32,
    },
    /// The x-only key is not a point on the curve.
    #[error("invalid x-only public key")]
    InvalidKey,
}

/// Derives `path` (non-hardened steps only) from `parent`.
///
/// Returns the child extended public key and the accumulated tweak `t` (32 bytes,
/// big-endian) such that `child = parent + t·G`.
///
/// # Errors
/// [`DeriveError::Hardened`] for a hardened step; [`DeriveError::InvalidChild`] in the
/// negligible case BIP32 describes.
pub fn derive_public(parent: &Xpub, path: &[ChildNumber]) -> Result<(Xpub, [u8; 32]), DeriveError> {
    let secp = Secp256k1::verification_only();
    let mut current = *parent;
    let mut total = Scalar::ZERO;
    for step in path {
        let index = match *step {
            ChildNumber::Normal { index } => index,
            ChildNumber::Hardened { index } => return Err(DeriveError::Hardened { index }),
        };
        let invalid = || DeriveError::InvalidChild { index };
        // One HMAC per step: `ckd_pub_tweak` gives I_L and the chain code, and the child key
        // is the parent plus I_L·G (what `Xpub::ckd_pub` does after the same HMAC).
        let (tweak, chain_code) = current.ckd_pub_tweak(*step).map_err(|_| invalid())?;
        let public_key = current
            .public_key
            .add_exp_tweak(&secp, &tweak.into())
            .map_err(|_| invalid())?;
        total += Option::<Scalar>::from(Scalar::from_repr(tweak.secret_bytes().into()))
            .ok_or_else(invalid)?;
        current = Xpub {
            network: current.network,
            depth: current.depth.checked_add(1).ok_or_else(invalid)?,
            parent_fingerprint: current.fingerprint(),
            child_number: *step,
            public_key,
            chain_code,
        };
    }
    Ok((current, total.to_bytes().into()))
}

/// Computes the BIP341 output key `Q = P + H_TapTweak(P ‖ merkle_root)·G` for the x-only
/// internal key `P` (BIP86 when there is no script tree).
///
/// # Errors
/// [`DeriveError::InvalidKey`] when `internal_xonly` is not on the curve.
pub fn taproot_output_key(
    internal_xonly: &[u8; 32],
    merkle_root: Option<&[u8; 32]>,
) -> Result<[u8; 32], DeriveError> {
    let secp = Secp256k1::verification_only();
    let internal =
        XOnlyPublicKey::from_slice(internal_xonly).map_err(|_| DeriveError::InvalidKey)?;
    let root = merkle_root.map(|r| TapNodeHash::assume_hidden(*r));
    let (tweaked, _parity) = bitcoin::key::TapTweak::tap_tweak(internal, &secp, root);
    Ok(tweaked.to_x_only_public_key().serialize())
}
