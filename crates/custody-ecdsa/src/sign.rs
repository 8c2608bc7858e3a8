//! One-trip signing from a presignature, and combining partial signatures into an
//! Ethereum-ready (low-s, y-parity) ECDSA signature.

use cggmp21::generic_ec::Scalar;
use cggmp21::supported_curves::Secp256k1;
use custody_threshold::{Culprit, Identity, ParticipantIndex, SigningDomain};
use k256::ecdsa::signature::hazmat::PrehashVerifier;
use k256::ecdsa::{RecoveryId, VerifyingKey};
use rand_core::{CryptoRng, RngCore};
use thiserror::Error;

use crate::codec::{DecodeError, Reader, TypeTag, Writer};
use crate::keys::{address_of, check_point, EcdsaKeyShare, GroupPublicKey};
use crate::message::culprit;
use crate::plan::{EcdsaCeremonyKind, EcdsaPlan, MAX_PRESIGN_BATCH};
use crate::presign::{PresignatureId, PresignatureStore, PresignatureStoreError};

/// A signer's partial signature: one message from each signer per withdrawal.
///
/// Public (it reveals nothing about the key share), signed by the signer's identity key
/// so the combiner can name whoever sent a forged or altered one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartialSignature {
    id: PresignatureId,
    group_key: [u8; 33],
    signer: ParticipantIndex,
    prehash: [u8; 32],
    r: [u8; 32],
    sigma: [u8; 32],
    signature: [u8; 64],
}

impl PartialSignature {
    fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new(TypeTag::PartialSigned);
        w.fixed(&self.id.batch)
            .u16(self.id.index)
            .fixed(&self.group_key)
            .u16(self.signer)
            .fixed(&self.prehash)
            .fixed(&self.r)
            .fixed(&self.sigma);
        w.finish()
    }

    /// The presignature it was made with.
    pub fn presignature(&self) -> PresignatureId {
        self.id
    }

    /// The signer's plan index.
    pub fn signer(&self) -> ParticipantIndex {
        self.signer
    }

    /// The 32-byte message hash the signer signed.
    pub fn prehash(&self) -> &[u8; 32] {
        &self.prehash
    }

    /// Encodes the partial signature (see `docs/formats/ecdsa-messages.md`).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(TypeTag::PartialSignature);
        w.fixed(&self.id.batch)
            .u16(self.id.index)
            .fixed(&self.group_key)
            .u16(self.signer)
            .fixed(&self.prehash)
            .fixed(&self.r)
            .fixed(&self.sigma)
            .fixed(&self.signature);
        w.finish()
    }

    /// Decodes a partial signature. The identity signature is checked by [`combine`].
    ///
    /// # Errors
    /// A [`DecodeError`] naming the malformed field.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, TypeTag::PartialSignature)?;
        let batch = r.array::<16>("batch id")?;
        let index = r.u16("batch index")?;
        let group_key = r.array::<33>("group key")?;
        let signer = r.u16("signer")?;
        let prehash = r.array::<32>("prehash")?;
        let rr = r.array::<32>("r")?;
        let sigma = r.array::<32>("sigma")?;
        let signature = r.array::<64>("signature")?;
        r.finish()?;
        if usize::from(index) >= MAX_PRESIGN_BATCH {
            return Err(DecodeError::invalid(
                "batch index",
                "beyond the largest batch",
            ));
        }
        check_point("group key", &group_key)?;
        if signer == 0 {
            return Err(DecodeError::invalid(
                "signer",
                "participant 0 does not exist",
            ));
        }
        for (what, s) in [("r", &rr), ("sigma", &sigma)] {
            Scalar::<Secp256k1>::from_be_bytes(s)
                .map_err(|_| DecodeError::invalid(what, "not below the curve order"))?;
        }
        Ok(PartialSignature {
            id: PresignatureId { batch, index },
            group_key,
            signer,
            prehash,
            r: rr,
            sigma,
            signature,
        })
    }
}

/// Why a signer refused to issue a partial signature.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SignError<E: std::error::Error + 'static> {
    /// The presignature store refused (already used, unknown) or failed.
    #[error(transparent)]
    Store(PresignatureStoreError<E>),
    /// The presignature belongs to another key or another signer. It has been consumed
    /// and is lost.
    #[error("presignature {id} does not belong to this key share; it has been discarded")]
    WrongKey {
        /// The presignature.
        id: PresignatureId,
    },
}

/// Issues this signer's partial signature over `prehash` with presignature `id`.
///
/// `prehash` is the 32-byte message hash that ECDSA signs — for Ethereum, the keccak256
/// signing hash of the transaction. **The caller must compute it itself from the
/// transaction it shows to the key holder** (e.g. `custody-ethereum`'s summary and
/// signing-hash functions), never take it from the coordinator: a signer that signs a
/// hash it did not compute can be made to sign anything.
///
/// The presignature is taken out of `store`, which records it consumed durably before
/// this function computes anything, so it can never be used twice, even after a crash.
///
/// # Errors
/// [`SignError::Store`] when the presignature was already used, is unknown, or the store
/// fails; [`SignError::WrongKey`] when it belongs to another key share.
pub fn sign_prehash<S: PresignatureStore, R: RngCore + CryptoRng>(
    key_share: &EcdsaKeyShare,
    identity: &Identity,
    store: &mut S,
    id: &PresignatureId,
    prehash: &[u8; 32],
    rng: &mut R,
) -> Result<PartialSignature, SignError<S::Error>> {
    let presig = store.take(id).map_err(SignError::Store)?;
    if presig.group_key != *key_share.group_key().compressed() || presig.signer != key_share.index()
    {
        return Err(SignError::WrongKey { id: *id });
    }
    let group_key = presig.group_key;
    let signer = presig.signer;
    let message =
        cggmp21::DataToSign::from_scalar(Scalar::<Secp256k1>::from_be_bytes_mod_order(prehash));
    let partial = presig.inner.issue_partial_signature(message);
    let mut out = PartialSignature {
        id: *id,
        group_key,
        signer,
        prehash: *prehash,
        r: scalar_bytes(&partial.r),
        sigma: scalar_bytes(&partial.sigma),
        signature: [0u8; 64],
    };
    out.signature = identity.sign_in_domain(SigningDomain::EcdsaCeremony, &out.signed_bytes(), rng);
    Ok(out)
}

fn scalar_bytes(s: &Scalar<Secp256k1>) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&s.to_be_bytes());
    out
}

/// An ECDSA signature as Ethereum wants it: low-s (EIP-2), with the y parity of R
/// (`yParity` of typed transactions, `v - 27` of legacy signatures without EIP-155).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthSignature {
    /// r, big-endian.
    pub r: [u8; 32],
    /// s, big-endian, at most n/2.
    pub s: [u8; 32],
    /// Whether R's y coordinate is odd.
    pub y_parity: bool,
}

impl EthSignature {
    /// `r ‖ s ‖ v` with v = 0 or 1 (the recovery id).
    pub fn to_bytes(&self) -> [u8; 65] {
        let mut out = [0u8; 65];
        out[..32].copy_from_slice(&self.r);
        out[32..64].copy_from_slice(&self.s);
        out[64] = u8::from(self.y_parity);
        out
    }

    /// The Ethereum address that signed `prehash`, recovered from the signature alone.
    ///
    /// # Errors
    /// [`CombineError::InvalidSignature`] if no key recovers.
    pub fn recover_address(&self, prehash: &[u8; 32]) -> Result<[u8; 20], CombineError> {
        let sig = k256::ecdsa::Signature::from_scalars(self.r, self.s)
            .map_err(|_| CombineError::InvalidSignature)?;
        let recid = RecoveryId::new(self.y_parity, false);
        let key = VerifyingKey::recover_from_prehash(prehash, &sig, recid)
            .map_err(|_| CombineError::InvalidSignature)?;
        Ok(address_of(&key))
    }
}

/// Why partial signatures could not be combined.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CombineError {
    /// The plan is not a presigning plan.
    #[error("partial signatures combine under the presigning plan that made the presignature")]
    WrongPlanKind,
    /// A partial signature's identity signature does not verify: forged or altered.
    #[error(
        "partial signature claiming to be from {culprit} has a bad signature (forged or altered)"
    )]
    BadSignature {
        /// The claimed signer.
        culprit: Culprit,
    },
    /// A partial signature comes from someone outside the plan's signer set.
    #[error("participant #{index} is not one of the signers of this presignature batch")]
    NotASigner {
        /// The claimed signer.
        index: ParticipantIndex,
    },
    /// A partial signature was made with another presignature, batch or key.
    #[error("{culprit} signed with presignature {found}, expected {expected}")]
    WrongPresignature {
        /// The signer.
        culprit: Culprit,
        /// The presignature the others used.
        expected: PresignatureId,
        /// The one this signer used.
        found: PresignatureId,
    },
    /// A signer signed a different message hash.
    #[error("{culprit} signed a different message hash; its transaction view differs — compare what each signer was shown")]
    WrongPrehash {
        /// The signer.
        culprit: Culprit,
    },
    /// Two partial signatures from the same signer.
    #[error("{culprit} sent two partial signatures")]
    Duplicate {
        /// The signer.
        culprit: Culprit,
    },
    /// Some signers of the batch have not answered.
    #[error("missing partial signatures from participants {missing:?}")]
    Missing {
        /// Who has not answered.
        missing: Vec<ParticipantIndex>,
    },
    /// The combined signature does not verify under the group key. A signer cheated;
    /// CGGMP21 0.6 cannot tell which (no identifiable abort).
    #[error("the combined signature does not verify under the group key; a signer misbehaved and the presignature batch must be abandoned")]
    InvalidSignature,
    /// The recovered address is not the group's (never expected; checked defensively).
    #[error("the signature recovers to {found}, not the group address {expected}")]
    AddressMismatch {
        /// The group address.
        expected: String,
        /// The recovered address.
        found: String,
    },
}

/// Combines one partial signature from every signer of a presignature into a low-s
/// signature with its y parity, and checks it independently with `k256`: it verifies
/// under the group key and recovers to the group's Ethereum address.
///
/// `plan` is the presigning plan of the presignature's batch; `prehash` is the hash the
/// combiner computed itself from the transaction it will broadcast.
///
/// # Errors
/// A [`CombineError`] naming the signer at fault where one can be named.
pub fn combine(
    plan: &EcdsaPlan,
    prehash: &[u8; 32],
    partials: &[PartialSignature],
) -> Result<EthSignature, CombineError> {
    let EcdsaCeremonyKind::Presign {
        group_key, signers, ..
    } = plan.kind()
    else {
        return Err(CombineError::WrongPlanKind);
    };
    let group =
        GroupPublicKey::from_compressed(*group_key).map_err(|_| CombineError::WrongPlanKind)?;
    let mut expected: Option<PresignatureId> = None;
    let mut seen: Vec<ParticipantIndex> = Vec::new();
    let mut parts = Vec::with_capacity(partials.len());
    for p in partials {
        if !signers.contains(&p.signer) {
            return Err(CombineError::NotASigner { index: p.signer });
        }
        let card = plan
            .participant(p.signer)
            .ok_or(CombineError::NotASigner { index: p.signer })?;
        if !card.verify_in_domain(
            SigningDomain::EcdsaCeremony,
            &p.signed_bytes(),
            &p.signature,
        ) {
            return Err(CombineError::BadSignature {
                culprit: culprit(plan, p.signer),
            });
        }
        let want = *expected.get_or_insert(p.id);
        if p.id != want || p.id.batch != *plan.ceremony_id() || p.group_key != *group_key {
            return Err(CombineError::WrongPresignature {
                culprit: culprit(plan, p.signer),
                expected: PresignatureId {
                    batch: *plan.ceremony_id(),
                    index: want.index,
                },
                found: p.id,
            });
        }
        if &p.prehash != prehash {
            return Err(CombineError::WrongPrehash {
                culprit: culprit(plan, p.signer),
            });
        }
        if seen.contains(&p.signer) {
            return Err(CombineError::Duplicate {
                culprit: culprit(plan, p.signer),
            });
        }
        seen.push(p.signer);
        let r =
            Scalar::<Secp256k1>::from_be_bytes(p.r).map_err(|_| CombineError::InvalidSignature)?;
        let sigma = Scalar::<Secp256k1>::from_be_bytes(p.sigma)
            .map_err(|_| CombineError::InvalidSignature)?;
        parts.push(cggmp21::PartialSignature { r, sigma });
    }
    let missing: Vec<_> = signers
        .iter()
        .copied()
        .filter(|s| !seen.contains(s))
        .collect();
    if !missing.is_empty() {
        return Err(CombineError::Missing { missing });
    }
    let combined =
        cggmp21::PartialSignature::combine(&parts).ok_or(CombineError::InvalidSignature)?;
    let r = scalar_bytes(&combined.r);
    let s = scalar_bytes(&combined.s);
    let sig =
        k256::ecdsa::Signature::from_scalars(r, s).map_err(|_| CombineError::InvalidSignature)?;
    // CGGMP21 already normalises; doing it again here keeps the guarantee independent of
    // the library.
    let sig = sig.normalize_s().unwrap_or(sig);
    let vk = group.verifying_key();
    vk.verify_prehash(prehash, &sig)
        .map_err(|_| CombineError::InvalidSignature)?;
    let recid = RecoveryId::trial_recovery_from_prehash(&vk, prehash, &sig)
        .map_err(|_| CombineError::InvalidSignature)?;
    let (r, s) = sig.split_bytes();
    let out = EthSignature {
        r: r.into(),
        s: s.into(),
        y_parity: recid.is_y_odd(),
    };
    let recovered = out.recover_address(prehash)?;
    if recovered != group.address() {
        return Err(CombineError::AddressMismatch {
            expected: group.checksum_address(),
            found: crate::keys::checksum_address(&recovered),
        });
    }
    Ok(out)
}
