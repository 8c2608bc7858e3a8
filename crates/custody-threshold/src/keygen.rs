//! Certified distributed key generation and share refresh, as state machines.
//!
//! The caller moves messages; this module does no I/O. Each participant:
//!
//! 1. [`Keygen::start_dkg`] (or [`Keygen::start_refresh`]) → a round-1 message for everyone;
//! 2. [`KeygenRound1::receive_round1`] with everyone else's round-1 messages → one encrypted
//!    round-2 message per other participant;
//! 3. [`KeygenRound2::receive_round2`] with the round-2 messages addressed to it → its
//!    certificate, a signature over `H(plan ‖ all round-1 packages ‖ public key package)`;
//! 4. [`KeygenCertify::finish`] with everyone else's certificates → the key share, usable
//!    only now that all `n` certificates agree.
//!
//! ZF FROST's DKG assumes a broadcast channel for round 1 and gives no agreement on the
//! result; the certificates provide both. A participant who sent different round-1 packages
//! to different peers is caught when the certificates are compared and is named.

use std::collections::BTreeMap;
use std::fmt;

use frost::keys::dkg::{self, round1, round2};
use frost::keys::{refresh, PublicKeyPackage, SecretShare, VerifiableSecretSharingCommitment};
use frost_core::keys::CoefficientCommitment;
use frost_core::Group;
use frost_secp256k1_tr as frost;
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::ceremony::{collect, CeremonyError, CeremonyMessage, Culprit, MessageKind, BROADCAST};
use crate::codec::{tagged_hash, DecodeError, Reader, TypeTag, Writer};
use crate::identity::Identity;
use crate::keys::{identifier, index_of, GroupKey, KeyShare};
use crate::plan::{CeremonyKind, CeremonyPlan, ParticipantIndex, MAX_PARTICIPANTS};

enum Mode {
    Dkg,
    Refresh(Box<KeyShare>),
}

impl Mode {
    fn kinds(&self) -> (MessageKind, MessageKind, MessageKind) {
        match self {
            Mode::Dkg => (
                MessageKind::DkgRound1,
                MessageKind::DkgRound2,
                MessageKind::DkgCertificate,
            ),
            Mode::Refresh(_) => (
                MessageKind::RefreshRound1,
                MessageKind::RefreshRound2,
                MessageKind::RefreshCertificate,
            ),
        }
    }
}

struct Common {
    plan: CeremonyPlan,
    plan_hash: [u8; 32],
    me: ParticipantIndex,
    mode: Mode,
}

impl Common {
    fn everyone(&self) -> Vec<ParticipantIndex> {
        (1..=self.plan.len()).collect()
    }

    fn culprit(&self, index: ParticipantIndex) -> Culprit {
        Culprit::new(&self.plan, index)
    }

    fn culprits(&self, ids: &[frost::Identifier]) -> Vec<Culprit> {
        ids.iter()
            .filter_map(index_of)
            .map(|i| self.culprit(i))
            .collect()
    }

    /// Maps a FROST error to the ceremony error that names whom it blames.
    fn frost_error(&self, e: frost::Error) -> CeremonyError {
        use frost_core::Error as E;
        let culprits = self.culprits(&e.culprits());
        match e {
            E::InvalidProofOfKnowledge { .. } if !culprits.is_empty() => {
                CeremonyError::InvalidProof { culprits }
            }
            E::InvalidSecretShare { .. } if !culprits.is_empty() => {
                CeremonyError::InvalidShare { culprits }
            }
            other => CeremonyError::Protocol(other.to_string()),
        }
    }
}

impl fmt::Debug for Common {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keygen")
            .field("ceremony", &hex::encode(self.plan.ceremony_id()))
            .field("me", &self.me)
            .field("secrets", &"<redacted>")
            .finish()
    }
}

/// Entry points of the key generation and refresh ceremonies.
#[derive(Debug)]
pub struct Keygen;

/// State after round 1 was sent: waiting for everyone's round-1 messages.
#[derive(Debug)]
pub struct KeygenRound1 {
    common: Common,
    secret: round1::SecretPackage,
    own_package: round1::Package,
}

/// State after round 2 was sent: waiting for the round-2 messages addressed to us.
#[derive(Debug)]
pub struct KeygenRound2 {
    common: Common,
    secret: round2::SecretPackage,
    own_package: round1::Package,
    packages: BTreeMap<frost::Identifier, round1::Package>,
}

/// State after our certificate was sent: waiting for everyone's certificates.
pub struct KeygenCertify {
    common: Common,
    share: KeyShare,
    certificate: DkgCertificate,
}

impl fmt::Debug for KeygenCertify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeygenCertify")
            .field("common", &self.common)
            .field("transcript", &hex::encode(self.certificate.transcript_hash))
            .finish()
    }
}

/// The result of a completed ceremony: the share, and the transcript hash all `n`
/// participants certified.
#[derive(Debug)]
pub struct KeygenOutput {
    /// This participant's new share (and the group key).
    pub share: KeyShare,
    /// The certified transcript hash, to record in the ceremony minutes.
    pub transcript_hash: [u8; 32],
}

fn check_identity(
    plan: &CeremonyPlan,
    identity: &Identity,
) -> Result<ParticipantIndex, CeremonyError> {
    plan.position_of(&identity.card())
        .ok_or(CeremonyError::NotInPlan)
}

impl Keygen {
    /// Starts a distributed key generation for `plan` as `identity`.
    ///
    /// # Errors
    /// [`CeremonyError::NotInPlan`] if the identity is not in the plan, or
    /// [`CeremonyError::WrongPlanKind`] if the plan is not a DKG plan.
    pub fn start_dkg<R: RngCore + CryptoRng>(
        plan: &CeremonyPlan,
        identity: &Identity,
        rng: &mut R,
    ) -> Result<(KeygenRound1, CeremonyMessage), CeremonyError> {
        if *plan.kind() != CeremonyKind::Dkg {
            return Err(CeremonyError::WrongPlanKind("expected a DKG plan"));
        }
        Self::start(plan, identity, Mode::Dkg, rng)
    }

    /// Starts a refresh of `share` (same group key, new shares) for `plan`.
    ///
    /// All participants of the group take part, in the same order as in the original plan.
    ///
    /// # Errors
    /// As [`Keygen::start_dkg`], and [`CeremonyError::WrongGroup`] when the plan names
    /// another group key, threshold or participant count.
    pub fn start_refresh<R: RngCore + CryptoRng>(
        plan: &CeremonyPlan,
        identity: &Identity,
        share: KeyShare,
        rng: &mut R,
    ) -> Result<(KeygenRound1, CeremonyMessage), CeremonyError> {
        let CeremonyKind::Refresh { group_key } = plan.kind() else {
            return Err(CeremonyError::WrongPlanKind("expected a refresh plan"));
        };
        let group = share.group();
        if *group_key != group.public_key()
            || plan.threshold() != group.threshold()
            || plan.len() != group.participants()
        {
            return Err(CeremonyError::WrongGroup);
        }
        let me = check_identity(plan, identity)?;
        if me != share.index() {
            return Err(CeremonyError::WrongGroup);
        }
        Self::start(plan, identity, Mode::Refresh(Box::new(share)), rng)
    }

    fn start<R: RngCore + CryptoRng>(
        plan: &CeremonyPlan,
        identity: &Identity,
        mode: Mode,
        rng: &mut R,
    ) -> Result<(KeygenRound1, CeremonyMessage), CeremonyError> {
        let me = check_identity(plan, identity)?;
        let common = Common {
            plan: plan.clone(),
            plan_hash: plan.hash(),
            me,
            mode,
        };
        let (n, t) = (plan.len(), plan.threshold());
        let (secret, package) = match common.mode {
            Mode::Dkg => dkg::part1(identifier(me), n, t, &mut *rng),
            Mode::Refresh(_) => refresh::refresh_dkg_part1(identifier(me), n, t, &mut *rng),
        }
        .map_err(|e| common.frost_error(e))?;
        let body = package
            .serialize()
            .map_err(|e| CeremonyError::Protocol(e.to_string()))?;
        let (kind1, _, _) = common.mode.kinds();
        let msg = CeremonyMessage::seal(plan, identity, kind1, BROADCAST, &body, rng)?;
        Ok((
            KeygenRound1 {
                common,
                secret,
                own_package: package,
            },
            msg,
        ))
    }
}

impl KeygenRound1 {
    /// Checks everyone else's round-1 messages (signature, proof of knowledge) and returns
    /// our round-2 messages, one encrypted message per other participant.
    ///
    /// # Errors
    /// A [`CeremonyError`] naming the culprit of a bad signature, malformed package,
    /// invalid proof of knowledge or equivocation; [`CeremonyError::Missing`] if someone's
    /// message is absent.
    pub fn receive_round1<R: RngCore + CryptoRng>(
        self,
        identity: &Identity,
        messages: &[CeremonyMessage],
        rng: &mut R,
    ) -> Result<(KeygenRound2, Vec<CeremonyMessage>), CeremonyError> {
        let c = &self.common;
        let (kind1, kind2, _) = c.mode.kinds();
        let bodies = collect(
            &c.plan,
            &c.plan_hash,
            identity,
            c.me,
            kind1,
            &c.everyone(),
            messages,
        )?;
        let expected_coefficients = match c.mode {
            Mode::Dkg => usize::from(c.plan.threshold()),
            Mode::Refresh(_) => usize::from(c.plan.threshold()) - 1,
        };
        let mut packages = BTreeMap::new();
        for (sender, body) in &bodies {
            let package =
                round1::Package::deserialize(body).map_err(|e| CeremonyError::Malformed {
                    culprit: c.culprit(*sender),
                    reason: format!("round-1 package does not decode: {e}"),
                })?;
            let found = package.commitment().coefficients().len();
            if found != expected_coefficients {
                return Err(CeremonyError::Malformed {
                    culprit: c.culprit(*sender),
                    reason: format!(
                        "round-1 package has {found} commitments, expected {expected_coefficients}"
                    ),
                });
            }
            packages.insert(identifier(*sender), package);
        }
        let (secret, outgoing) = match c.mode {
            Mode::Dkg => dkg::part2(self.secret, &packages),
            Mode::Refresh(_) => refresh::refresh_dkg_part2(self.secret, &packages),
        }
        .map_err(|e| c.frost_error(e))?;
        let mut messages = Vec::with_capacity(outgoing.len());
        for (id, package) in outgoing {
            let recipient = index_of(&id).expect("identifiers come from the plan");
            let body = Zeroizing::new(
                package
                    .serialize()
                    .map_err(|e| CeremonyError::Protocol(e.to_string()))?,
            );
            messages.push(CeremonyMessage::seal(
                &c.plan, identity, kind2, recipient, &body, rng,
            )?);
        }
        Ok((
            KeygenRound2 {
                common: self.common,
                secret,
                own_package: self.own_package,
                packages,
            },
            messages,
        ))
    }
}

/// Checks one sender's round-2 share against its round-1 commitments.
fn verify_share(
    me: ParticipantIndex,
    share: &round2::Package,
    package: &round1::Package,
    refresh: bool,
) -> bool {
    let mut coefficients: Vec<CoefficientCommitment<frost::Secp256K1Sha256TR>> = Vec::new();
    if refresh {
        coefficients.push(CoefficientCommitment::new(
            <frost::Secp256K1Sha256TR as frost_core::Ciphersuite>::Group::identity(),
        ));
    }
    coefficients.extend_from_slice(package.commitment().coefficients());
    let commitment = VerifiableSecretSharingCommitment::new(coefficients);
    SecretShare::new(identifier(me), *share.signing_share(), commitment)
        .verify()
        .is_ok()
}

fn round1_digest(package: &round1::Package) -> Result<[u8; 32], CeremonyError> {
    let bytes = package
        .serialize()
        .map_err(|e| CeremonyError::Protocol(e.to_string()))?;
    Ok(tagged_hash("CoinPort/keygen-round1", &[&bytes]))
}

impl KeygenRound2 {
    /// Checks and decrypts the round-2 messages addressed to us, computes our share and
    /// returns our certificate for everyone.
    ///
    /// The share is not usable yet: it is released by [`KeygenCertify::finish`] only when
    /// every participant has certified the same transcript.
    ///
    /// # Errors
    /// A [`CeremonyError`] naming whoever sent a share that does not match their
    /// commitments, a bad signature or an undecryptable message.
    pub fn receive_round2<R: RngCore + CryptoRng>(
        self,
        identity: &Identity,
        messages: &[CeremonyMessage],
        rng: &mut R,
    ) -> Result<(KeygenCertify, CeremonyMessage), CeremonyError> {
        let c = &self.common;
        let (_, kind2, kind3) = c.mode.kinds();
        let bodies = collect(
            &c.plan,
            &c.plan_hash,
            identity,
            c.me,
            kind2,
            &c.everyone(),
            messages,
        )?;
        let refresh = matches!(c.mode, Mode::Refresh(_));
        let mut shares = BTreeMap::new();
        for (sender, body) in &bodies {
            let package =
                round2::Package::deserialize(body).map_err(|e| CeremonyError::Malformed {
                    culprit: c.culprit(*sender),
                    reason: format!("round-2 package does not decode: {e}"),
                })?;
            shares.insert(identifier(*sender), package);
        }

        let result = match &c.mode {
            Mode::Dkg => dkg::part3(&self.secret, &self.packages, &shares).map(|r| (r, None)),
            Mode::Refresh(old) => refresh::refresh_dkg_shares(
                &self.secret,
                &self.packages,
                &shares,
                old.group().public_key_package().clone(),
                old.key_package().clone(),
            )
            .map(|r| (r, Some(old.group()))),
        };
        let ((key_package, public_package), group) = match result {
            Ok(ok) => ok,
            Err(e) => {
                // The library verifies every share but names at most the first bad sender
                // (none for refresh): check each one ourselves to name them all.
                let bad: Vec<Culprit> = shares
                    .iter()
                    .filter(|(id, share)| {
                        let commitments = self
                            .packages
                            .get(id)
                            .expect("round 1 had a package from every participant");
                        !verify_share(c.me, share, commitments, refresh)
                    })
                    .filter_map(|(id, _)| index_of(id))
                    .map(|i| c.culprit(i))
                    .collect();
                if bad.is_empty() {
                    return Err(c.frost_error(e));
                }
                return Err(CeremonyError::InvalidShare { culprits: bad });
            }
        };

        let digests = self.all_digests()?;
        let transcript_hash = transcript_hash(&c.plan_hash, &digests, &public_package)?;
        let (network, chain_code) = match group {
            Some(g) => (g.network(), *g.chain_code()),
            None => (
                c.plan.network(),
                tagged_hash("CoinPort/bip32-chain-code", &[&transcript_hash]),
            ),
        };
        let group = GroupKey::new(network, chain_code, public_package);
        let share = KeyShare::new(c.me, key_package, group)
            .map_err(|e| CeremonyError::Protocol(e.to_string()))?;
        let certificate = DkgCertificate {
            transcript_hash,
            round1_digests: digests,
        };
        let msg = CeremonyMessage::seal(
            &c.plan,
            identity,
            kind3,
            BROADCAST,
            &certificate.encode(),
            rng,
        )?;
        Ok((
            KeygenCertify {
                common: self.common,
                share,
                certificate,
            },
            msg,
        ))
    }

    fn all_digests(&self) -> Result<Vec<[u8; 32]>, CeremonyError> {
        (1..=self.common.plan.len())
            .map(|i| {
                if i == self.common.me {
                    round1_digest(&self.own_package)
                } else {
                    round1_digest(
                        self.packages
                            .get(&identifier(i))
                            .expect("round 1 had a package from every participant"),
                    )
                }
            })
            .collect()
    }
}

fn transcript_hash(
    plan_hash: &[u8; 32],
    digests: &[[u8; 32]],
    public_package: &PublicKeyPackage,
) -> Result<[u8; 32], CeremonyError> {
    let pkp = public_package
        .serialize()
        .map_err(|e| CeremonyError::Protocol(e.to_string()))?;
    let mut parts: Vec<&[u8]> = vec![plan_hash];
    parts.extend(digests.iter().map(|d| &d[..]));
    parts.push(&pkp);
    Ok(tagged_hash("CoinPort/keygen-transcript", &parts))
}

impl KeygenCertify {
    /// Our own certificate's transcript hash.
    pub fn transcript_hash(&self) -> &[u8; 32] {
        &self.certificate.transcript_hash
    }

    /// Verifies everyone else's certificates and, only if all `n` agree, releases the share.
    ///
    /// # Errors
    /// [`CeremonyError::Equivocation`] naming a participant whose round-1 package differed
    /// between peers; [`CeremonyError::CertificateMismatch`] naming participants who
    /// certified a different transcript; [`CeremonyError::Missing`] when certificates are
    /// absent. No share is returned on any error.
    pub fn finish(
        self,
        identity: &Identity,
        certificates: &[CeremonyMessage],
    ) -> Result<KeygenOutput, CeremonyError> {
        let c = &self.common;
        let (_, _, kind3) = c.mode.kinds();
        let bodies = collect(
            &c.plan,
            &c.plan_hash,
            identity,
            c.me,
            kind3,
            &c.everyone(),
            certificates,
        )?;
        let n = usize::from(c.plan.len());
        let mut certs = BTreeMap::new();
        for (sender, body) in &bodies {
            let cert = DkgCertificate::decode(body).map_err(|e| CeremonyError::Malformed {
                culprit: c.culprit(*sender),
                reason: format!("certificate does not decode: {e}"),
            })?;
            if cert.round1_digests.len() != n {
                return Err(CeremonyError::Malformed {
                    culprit: c.culprit(*sender),
                    reason: format!(
                        "certificate lists {} round-1 packages, expected {n}",
                        cert.round1_digests.len()
                    ),
                });
            }
            certs.insert(*sender, cert);
        }
        certs.insert(c.me, self.certificate.clone());

        // A sender whose round-1 package digest differs between certificates sent
        // different packages to different peers.
        let equivocators: Vec<Culprit> = (0..n)
            .filter(|&j| {
                let first = &self.certificate.round1_digests[j];
                certs.values().any(|cert| &cert.round1_digests[j] != first)
            })
            .map(|j| c.culprit(j as u16 + 1))
            .collect();
        if !equivocators.is_empty() {
            return Err(CeremonyError::Equivocation {
                culprits: equivocators,
            });
        }
        let mismatched: Vec<Culprit> = certs
            .iter()
            .filter(|(_, cert)| cert.transcript_hash != self.certificate.transcript_hash)
            .map(|(i, _)| c.culprit(*i))
            .collect();
        if !mismatched.is_empty() {
            return Err(CeremonyError::CertificateMismatch {
                culprits: mismatched,
            });
        }
        Ok(KeygenOutput {
            transcript_hash: self.certificate.transcript_hash,
            share: self.share,
        })
    }
}

/// A participant's certificate of the key generation transcript.
///
/// It travels as the body of a signed [`CeremonyMessage`], so it is signed by its author.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DkgCertificate {
    /// `H(plan ‖ digests of all round-1 packages ‖ public key package)`.
    pub transcript_hash: [u8; 32],
    /// The digest of each participant's round-1 package as this author received it, in plan
    /// order; used to name an equivocating participant.
    pub round1_digests: Vec<[u8; 32]>,
}

impl DkgCertificate {
    /// Encodes the certificate (see `docs/formats/threshold.md`).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(TypeTag::DkgCertificate);
        w.fixed(&self.transcript_hash);
        w.u16(self.round1_digests.len() as u16);
        for d in &self.round1_digests {
            w.fixed(d);
        }
        w.finish()
    }

    /// Decodes a certificate.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the malformed field.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, TypeTag::DkgCertificate)?;
        let transcript_hash = r.array("transcript hash")?;
        let n = r.count("digest count", MAX_PARTICIPANTS)?;
        let round1_digests = (0..n)
            .map(|_| r.array("round-1 digest"))
            .collect::<Result<Vec<_>, _>>()?;
        r.finish()?;
        Ok(DkgCertificate {
            transcript_hash,
            round1_digests,
        })
    }
}
