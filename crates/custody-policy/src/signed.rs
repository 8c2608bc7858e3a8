//! Admin-signed policies and their verification by a signer.

use custody_threshold::{Identity, SigningDomain};
use rand_core::{CryptoRng, RngCore};
use thiserror::Error;

use crate::codec::{DecodeError, Reader, TypeTag, Writer};
use crate::document::{AdminQuorum, InvalidPolicyError, Network, PolicyDocument};

/// Most signatures a signed policy may carry.
pub const MAX_SIGNATURES: usize = 32;
/// Longest encoded policy document, in bytes.
pub const MAX_DOCUMENT_LEN: usize = 1 << 20;

/// One admin's signature over a policy hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminSignature {
    /// The admin's x-only BIP340 identity key.
    pub signing_key: [u8; 32],
    /// `sign_in_domain(SigningDomain::Policy, policy_hash)`.
    pub signature: [u8; 64],
}

/// A policy document with the admin signatures collected for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedPolicy {
    document: PolicyDocument,
    signatures: Vec<AdminSignature>,
}

/// Why a signed policy was refused.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyPolicyError {
    /// The document itself is malformed.
    #[error("policy document is invalid: {0}")]
    Invalid(#[from] InvalidPolicyError),
    /// The trusted quorum is malformed.
    #[error("trusted admin quorum is invalid: {0}")]
    BadTrustedQuorum(InvalidPolicyError),
    /// Fewer than `required` distinct trusted admins signed validly.
    #[error(
        "policy needs {required} distinct trusted admin signatures, found {found} \
         (ignored {unknown} by non-admins and {invalid} invalid)"
    )]
    NotEnoughSignatures {
        /// The trusted quorum's threshold.
        required: u16,
        /// Distinct trusted admins whose signature verified.
        found: usize,
        /// Signatures by keys not in the trusted quorum.
        unknown: usize,
        /// Signatures by trusted admins that did not verify.
        invalid: usize,
    },
}

/// Why a successor policy was refused.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SuccessorError {
    /// The successor is not signed by the current policy's admin quorum.
    #[error("successor policy is not signed by the current admin quorum: {0}")]
    Signatures(#[from] VerifyPolicyError),
    /// The successor's version does not increase.
    #[error("successor policy version {found} is not above the current version {current}")]
    VersionNotIncreasing {
        /// The current version.
        current: u64,
        /// The successor's version.
        found: u64,
    },
    /// The successor is for another network.
    #[error("successor policy is for {}, the current one for {}", found.as_str(), current.as_str())]
    NetworkChanged {
        /// The current network.
        current: Network,
        /// The successor's network.
        found: Network,
    },
    /// The successor was announced before the current policy was.
    #[error("successor was announced at {found}, before the current policy ({current})")]
    AnnouncedBeforeCurrent {
        /// The current policy's announcement time.
        current: u64,
        /// The successor's announcement time.
        found: u64,
    },
    /// The successor takes effect sooner after its announcement than the current policy's
    /// change delay allows.
    #[error(
        "successor announced at {announced_at} takes effect at {effective_from}, but the \
         current policy requires a change delay of {change_delay_secs} s (not before {earliest})"
    )]
    ChangeDelayTooShort {
        /// The successor's announcement time.
        announced_at: u64,
        /// The successor's effective-from time.
        effective_from: u64,
        /// The current policy's change delay.
        change_delay_secs: u64,
        /// The earliest allowed effective-from time (saturated at `u64::MAX`).
        earliest: u64,
    },
    /// The successor would take effect before the current policy did.
    #[error("successor takes effect at {found}, before the current policy ({current})")]
    EffectiveTimeGoesBack {
        /// The current policy's effective-from time.
        current: u64,
        /// The successor's effective-from time.
        found: u64,
    },
}

impl SignedPolicy {
    /// Starts collecting signatures for `document`.
    ///
    /// # Errors
    /// An [`InvalidPolicyError`] if the document breaks an invariant.
    pub fn new(document: PolicyDocument) -> Result<Self, InvalidPolicyError> {
        document.validate()?;
        Ok(SignedPolicy {
            document,
            signatures: Vec::new(),
        })
    }

    /// Adds `admin`'s signature over the policy hash. Signing twice replaces nothing: the
    /// duplicate counts once at verification.
    pub fn sign<R: RngCore + CryptoRng>(&mut self, admin: &Identity, rng: &mut R) {
        let signature = admin.sign_in_domain(SigningDomain::Policy, &self.document.hash(), rng);
        self.signatures.push(AdminSignature {
            signing_key: *admin.card().signing_key(),
            signature,
        });
    }

    /// Adds a signature made elsewhere (e.g. returned over the air gap).
    pub fn push_signature(&mut self, signature: AdminSignature) {
        self.signatures.push(signature);
    }

    /// The document, not yet verified.
    pub fn document(&self) -> &PolicyDocument {
        &self.document
    }

    /// The signatures collected so far.
    pub fn signatures(&self) -> &[AdminSignature] {
        &self.signatures
    }

    /// Verifies that at least `trusted.threshold` distinct admins of `trusted` signed the
    /// policy hash. `trusted` is the quorum the signer already trusts: the admin cards
    /// pinned at setup, or the current policy's quorum (see [`verify_successor`]), never
    /// the quorum inside the document being verified.
    ///
    /// # Errors
    /// [`VerifyPolicyError`] naming how many signatures were valid, unknown or invalid.
    pub fn verify(&self, trusted: &AdminQuorum) -> Result<VerifiedPolicy, VerifyPolicyError> {
        trusted
            .validate()
            .map_err(VerifyPolicyError::BadTrustedQuorum)?;
        self.document.validate()?;
        let hash = self.document.hash();
        let mut signed_by: Vec<&[u8; 32]> = Vec::new();
        let (mut unknown, mut invalid) = (0, 0);
        for s in &self.signatures {
            let Some(card) = trusted.admin(&s.signing_key) else {
                unknown += 1;
                continue;
            };
            if !card.verify_in_domain(SigningDomain::Policy, &hash, &s.signature) {
                invalid += 1;
                continue;
            }
            if !signed_by.contains(&card.signing_key()) {
                signed_by.push(card.signing_key());
            }
        }
        if signed_by.len() < usize::from(trusted.threshold) {
            return Err(VerifyPolicyError::NotEnoughSignatures {
                required: trusted.threshold,
                found: signed_by.len(),
                unknown,
                invalid,
            });
        }
        Ok(VerifiedPolicy {
            document: self.document.clone(),
            hash,
        })
    }

    /// Encodes the signed policy (see `docs/formats/policy.md`).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(TypeTag::SignedPolicy);
        w.var(&self.document.encode());
        w.count(self.signatures.len());
        for s in &self.signatures {
            w.fixed(&s.signing_key);
            w.fixed(&s.signature);
        }
        w.finish()
    }

    /// Decodes a signed policy. Decoding checks the form only; call
    /// [`SignedPolicy::verify`] before trusting it.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the malformed field.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, TypeTag::SignedPolicy)?;
        let document = PolicyDocument::decode(r.var("policy document", MAX_DOCUMENT_LEN)?)?;
        let n = r.count("signature count", MAX_SIGNATURES)?;
        let mut signatures = Vec::with_capacity(n);
        for _ in 0..n {
            signatures.push(AdminSignature {
                signing_key: r.array("admin signing key")?,
                signature: r.array("admin signature")?,
            });
        }
        r.finish()?;
        Ok(SignedPolicy {
            document,
            signatures,
        })
    }
}

/// A policy whose admin signatures have been checked against a trusted quorum. Only
/// [`SignedPolicy::verify`] and [`verify_successor`] make one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedPolicy {
    document: PolicyDocument,
    hash: [u8; 32],
}

impl VerifiedPolicy {
    /// The verified document.
    pub fn document(&self) -> &PolicyDocument {
        &self.document
    }

    /// The policy hash ([`PolicyDocument::hash`]).
    pub fn hash(&self) -> &[u8; 32] {
        &self.hash
    }

    /// Whether the policy is in force at unix time `now`: `now >= effective_from`.
    ///
    /// A holder keeps enforcing the current policy until its verified successor is
    /// effective, then switches.
    pub fn is_effective(&self, now: u64) -> bool {
        now >= self.document.effective_from
    }
}

/// Verifies `next` as the successor of the policy the holder currently trusts. It must
///
/// 1. be signed by the *current* policy's admin quorum (so a change of admins needs the old
///    admins' consent);
/// 2. carry a larger version and stay on the same network;
/// 3. not be announced before the current policy was (`next.announced_at >=
///    current.announced_at`) and not take effect before it did;
/// 4. respect the current policy's change delay: `next.effective_from >=
///    next.announced_at + current.change_delay_secs`, so everyone watching has that long to
///    notice and object before the change applies.
///
/// The successor is only in force from its `effective_from` ([`VerifiedPolicy::is_effective`]);
/// until then the current policy stays in force.
///
/// # Security
/// `announced_at` is the admins' word for when they signed. The coordinator, which has a
/// clock it trusts, must refuse to install a successor whose `announced_at` is after its
/// own current time: the claim is false, and once installed it would become the floor for
/// every later successor's `announced_at`, blocking changes until then. A back-dated
/// `announced_at` shortens the real notice, so the coordinator should publish a successor
/// as soon as it receives it (and may require the change delay from its own receipt time).
/// An offline signer cannot check either and relies on the coordinator and on people
/// watching announcements.
///
/// # Errors
/// A [`SuccessorError`] saying which condition failed.
pub fn verify_successor(
    current: &VerifiedPolicy,
    next: &SignedPolicy,
) -> Result<VerifiedPolicy, SuccessorError> {
    let cur = current.document();
    let verified = next.verify(&cur.admins)?;
    let new = verified.document();
    if new.version <= cur.version {
        return Err(SuccessorError::VersionNotIncreasing {
            current: cur.version,
            found: new.version,
        });
    }
    if new.network != cur.network {
        return Err(SuccessorError::NetworkChanged {
            current: cur.network,
            found: new.network,
        });
    }
    if new.announced_at < cur.announced_at {
        return Err(SuccessorError::AnnouncedBeforeCurrent {
            current: cur.announced_at,
            found: new.announced_at,
        });
    }
    if new.effective_from < cur.effective_from {
        return Err(SuccessorError::EffectiveTimeGoesBack {
            current: cur.effective_from,
            found: new.effective_from,
        });
    }
    let earliest = new.announced_at.saturating_add(cur.change_delay_secs);
    if new.effective_from < earliest
        || new
            .announced_at
            .checked_add(cur.change_delay_secs)
            .is_none()
    {
        return Err(SuccessorError::ChangeDelayTooShort {
            announced_at: new.announced_at,
            effective_from: new.effective_from,
            change_delay_secs: cur.change_delay_secs,
            earliest,
        });
    }
    Ok(verified)
}
