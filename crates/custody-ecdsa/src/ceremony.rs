//! The three interactive ECDSA ceremonies: auxiliary info, key generation, presigning.
//!
//! Each is a caller-driven state machine: `start` returns the session and the first
//! messages to deliver; `receive` takes whatever messages have arrived (in any order,
//! duplicates allowed, the caller's own and other recipients' skipped) and returns the
//! next messages; `finish` yields the output once `is_finished` is true. The process must
//! keep the session in memory between trips: CGGMP21's rounds cannot be serialized.

use std::rc::Rc;

use cggmp21::security_level::SecurityLevel128;
use cggmp21::supported_curves::Secp256k1;
use cggmp21::ExecutionId;
use custody_threshold::Identity;
use rand_core::{CryptoRng, RngCore};

use crate::keys::{EcdsaAuxInfo, EcdsaKeyShare, PaillierPrimes};
use crate::message::{EcdsaCeremonyError, EcdsaMessage};
use crate::plan::{EcdsaCeremonyKind, EcdsaPlan, Step};
use crate::presign::{Presignature, PresignatureId};
use crate::session::{error_chain, Driver, Machine};

type AuxMsg = cggmp21::key_refresh::msg::aux_only::Msg<sha2::Sha256, SecurityLevel128>;
type KeygenMsg = cggmp21::keygen::ThresholdMsg<Secp256k1, SecurityLevel128, sha2::Sha256>;
type SigningMsg = cggmp21::signing::msg::Msg<Secp256k1, sha2::Sha256>;
type AuxOut = cggmp21::key_share::AuxInfo<SecurityLevel128>;
type KeygenOut = cggmp21::IncompleteKeyShare<Secp256k1>;
type PresignOut = cggmp21::Presignature<Secp256k1>;

fn key_plan(plan: &EcdsaPlan) -> Result<(), EcdsaCeremonyError> {
    match plan.kind() {
        EcdsaCeremonyKind::Key => Ok(()),
        _ => Err(EcdsaCeremonyError::WrongPlanKind(
            "auxiliary info and key generation need a key plan",
        )),
    }
}

/// Auxiliary-info generation (each party's Paillier key and ring-Pedersen parameters,
/// with their proofs), under a key plan. Prime generation, the slow part, happens before
/// with [`PaillierPrimes::generate`].
pub struct AuxInfoSession {
    driver: Driver<AuxMsg, AuxOut>,
}

impl std::fmt::Debug for AuxInfoSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuxInfoSession(<redacted>)")
    }
}

impl AuxInfoSession {
    /// Starts the step and returns the first messages to deliver.
    ///
    /// # Errors
    /// [`EcdsaCeremonyError::WrongPlanKind`] for a presigning plan;
    /// [`EcdsaCeremonyError::NotInPlan`] if `identity` is not a participant.
    pub fn start<R: RngCore + CryptoRng>(
        plan: &EcdsaPlan,
        identity: &Identity,
        primes: PaillierPrimes,
        rng: &mut R,
    ) -> Result<(Self, Vec<EcdsaMessage>), EcdsaCeremonyError> {
        key_plan(plan)?;
        let n = plan.len();
        let mut primes = Some(primes.0);
        let mut driver = Driver::new(plan, identity, Step::AuxInfo, 1, rng, |eid, i, mut lrng| {
            let primes = primes.take().expect("one lane");
            let machine =
                cggmp21::round_based::state_machine::wrap_protocol(move |party| async move {
                    cggmp21::aux_info_gen(ExecutionId::new(&eid), i, n, primes)
                        .start(&mut lrng, party)
                        .await
                        .map_err(|e| error_chain(&e))
                });
            Box::new(machine) as Machine<AuxMsg, AuxOut>
        })?;
        let first = driver.pump(identity, rng)?;
        Ok((AuxInfoSession { driver }, first))
    }

    /// Takes delivered messages and returns the next ones to deliver.
    ///
    /// # Errors
    /// An [`EcdsaCeremonyError`] naming the sender of a refused message, or the protocol
    /// abort; the session is unusable after an error.
    pub fn receive<R: RngCore + CryptoRng>(
        &mut self,
        identity: &Identity,
        messages: &[EcdsaMessage],
        rng: &mut R,
    ) -> Result<Vec<EcdsaMessage>, EcdsaCeremonyError> {
        self.driver.receive(identity, messages, rng)
    }

    /// Whether the auxiliary info is ready.
    pub fn is_finished(&self) -> bool {
        self.driver.is_finished()
    }

    /// The auxiliary info, once finished.
    ///
    /// # Errors
    /// [`EcdsaCeremonyError::NotFinished`] before the step has finished.
    pub fn finish(self) -> Result<EcdsaAuxInfo, EcdsaCeremonyError> {
        let ceremony_id = *self.driver.plan().ceremony_id();
        let inner = self
            .driver
            .into_outputs()?
            .pop()
            .ok_or(EcdsaCeremonyError::NotFinished(Step::AuxInfo.name()))?;
        Ok(EcdsaAuxInfo { inner, ceremony_id })
    }
}

/// Threshold key generation under a key plan. Run it beside (or after)
/// [`AuxInfoSession`] for the same plan and complete the share with both outputs.
pub struct KeygenSession {
    driver: Driver<KeygenMsg, KeygenOut>,
}

impl std::fmt::Debug for KeygenSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeygenSession(<redacted>)")
    }
}

impl KeygenSession {
    /// Starts the step and returns the first messages to deliver.
    ///
    /// # Errors
    /// [`EcdsaCeremonyError::WrongPlanKind`] for a presigning plan;
    /// [`EcdsaCeremonyError::NotInPlan`] if `identity` is not a participant.
    pub fn start<R: RngCore + CryptoRng>(
        plan: &EcdsaPlan,
        identity: &Identity,
        rng: &mut R,
    ) -> Result<(Self, Vec<EcdsaMessage>), EcdsaCeremonyError> {
        key_plan(plan)?;
        let n = plan.len();
        let t = plan.threshold();
        let mut driver = Driver::new(plan, identity, Step::Keygen, 1, rng, |eid, i, mut lrng| {
            let machine =
                cggmp21::round_based::state_machine::wrap_protocol(move |party| async move {
                    cggmp21::keygen::<Secp256k1>(ExecutionId::new(&eid), i, n)
                        .set_threshold(t)
                        .set_security_level::<SecurityLevel128>()
                        .start(&mut lrng, party)
                        .await
                        .map_err(|e| error_chain(&e))
                });
            Box::new(machine) as Machine<KeygenMsg, KeygenOut>
        })?;
        let first = driver.pump(identity, rng)?;
        Ok((KeygenSession { driver }, first))
    }

    /// Takes delivered messages and returns the next ones to deliver.
    ///
    /// # Errors
    /// An [`EcdsaCeremonyError`] naming the sender of a refused message, or the protocol
    /// abort; the session is unusable after an error.
    pub fn receive<R: RngCore + CryptoRng>(
        &mut self,
        identity: &Identity,
        messages: &[EcdsaMessage],
        rng: &mut R,
    ) -> Result<Vec<EcdsaMessage>, EcdsaCeremonyError> {
        self.driver.receive(identity, messages, rng)
    }

    /// Whether the key generation output is ready.
    pub fn is_finished(&self) -> bool {
        self.driver.is_finished()
    }

    /// Completes the key share with the auxiliary info of the same plan.
    ///
    /// # Errors
    /// [`EcdsaCeremonyError::NotFinished`] before the step has finished;
    /// [`EcdsaCeremonyError::KeyShareMismatch`] if `aux` comes from another plan or does
    /// not fit the key.
    pub fn finish(self, aux: EcdsaAuxInfo) -> Result<EcdsaKeyShare, EcdsaCeremonyError> {
        let key_id = *self.driver.plan().ceremony_id();
        if aux.ceremony_id != key_id {
            return Err(EcdsaCeremonyError::KeyShareMismatch(
                "the auxiliary info comes from another ceremony",
            ));
        }
        let core = self
            .driver
            .into_outputs()?
            .pop()
            .ok_or(EcdsaCeremonyError::NotFinished(Step::Keygen.name()))?;
        let share = cggmp21::KeyShare::from_parts((core, aux.inner)).map_err(|_| {
            EcdsaCeremonyError::KeyShareMismatch("auxiliary info and key share are inconsistent")
        })?;
        EcdsaKeyShare::new(share, key_id)
            .map_err(|_| EcdsaCeremonyError::KeyShareMismatch("not a threshold key share"))
    }
}

/// Presigning: a batch of presignatures among the signers a presigning plan names. All
/// presignatures of the batch are generated in parallel, so the batch costs the same
/// number of trips as one presignature.
pub struct PresignSession {
    driver: Driver<SigningMsg, PresignOut>,
    share_index: u16,
    group_key: [u8; 33],
    signers: Vec<u16>,
}

impl std::fmt::Debug for PresignSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PresignSession(<redacted>)")
    }
}

impl PresignSession {
    /// Starts the step for `key_share` and returns the first messages to deliver.
    ///
    /// # Errors
    /// [`EcdsaCeremonyError::WrongPlanKind`] for a key plan;
    /// [`EcdsaCeremonyError::KeyShareMismatch`] if the share is not for the plan's key,
    /// or not this participant's; [`EcdsaCeremonyError::NotInPlan`] if `identity` is not
    /// one of the plan's signers.
    pub fn start<R: RngCore + CryptoRng>(
        plan: &EcdsaPlan,
        identity: &Identity,
        key_share: &EcdsaKeyShare,
        rng: &mut R,
    ) -> Result<(Self, Vec<EcdsaMessage>), EcdsaCeremonyError> {
        let EcdsaCeremonyKind::Presign {
            group_key,
            signers,
            count,
        } = plan.kind()
        else {
            return Err(EcdsaCeremonyError::WrongPlanKind(
                "presigning needs a presigning plan",
            ));
        };
        if key_share.group_key().compressed() != group_key {
            return Err(EcdsaCeremonyError::KeyShareMismatch(
                "the key share is for another group key",
            ));
        }
        if key_share.participants() != plan.len() || key_share.threshold() != plan.threshold() {
            return Err(EcdsaCeremonyError::KeyShareMismatch(
                "threshold or participant count differ from the plan",
            ));
        }
        let me = plan
            .position_of(&identity.card())
            .ok_or(EcdsaCeremonyError::NotInPlan)?;
        if me != key_share.index() {
            return Err(EcdsaCeremonyError::KeyShareMismatch(
                "the key share belongs to another participant",
            ));
        }
        let at_keygen: Rc<Vec<u16>> = Rc::new(signers.iter().map(|s| s - 1).collect());
        let share = Rc::new(key_share.inner.clone());
        let mut driver = Driver::new(
            plan,
            identity,
            Step::Presign,
            *count,
            rng,
            |eid, i, mut lrng| {
                let at_keygen = Rc::clone(&at_keygen);
                let share = Rc::clone(&share);
                let machine =
                    cggmp21::round_based::state_machine::wrap_protocol(move |party| async move {
                        cggmp21::signing(ExecutionId::new(&eid), i, &at_keygen, &share)
                            .generate_presignature(&mut lrng, party)
                            .await
                            .map_err(|e| error_chain(&e))
                    });
                Box::new(machine) as Machine<SigningMsg, PresignOut>
            },
        )?;
        let first = driver.pump(identity, rng)?;
        Ok((
            PresignSession {
                driver,
                share_index: me,
                group_key: *group_key,
                signers: signers.clone(),
            },
            first,
        ))
    }

    /// Takes delivered messages and returns the next ones to deliver.
    ///
    /// # Errors
    /// An [`EcdsaCeremonyError`] naming the sender of a refused message, or the protocol
    /// abort; the session is unusable after an error.
    pub fn receive<R: RngCore + CryptoRng>(
        &mut self,
        identity: &Identity,
        messages: &[EcdsaMessage],
        rng: &mut R,
    ) -> Result<Vec<EcdsaMessage>, EcdsaCeremonyError> {
        self.driver.receive(identity, messages, rng)
    }

    /// Whether every presignature of the batch is ready.
    pub fn is_finished(&self) -> bool {
        self.driver.is_finished()
    }

    /// The batch's presignatures, once finished, in batch order. Put them into the
    /// device's [`crate::PresignatureStore`] straight away.
    ///
    /// # Errors
    /// [`EcdsaCeremonyError::NotFinished`] before the step has finished.
    pub fn finish(self) -> Result<Vec<Presignature>, EcdsaCeremonyError> {
        let batch = *self.driver.plan().ceremony_id();
        let outs = self.driver.into_outputs()?;
        Ok(outs
            .into_iter()
            .enumerate()
            .map(|(index, inner)| Presignature {
                id: PresignatureId {
                    batch,
                    index: index as u16,
                },
                group_key: self.group_key,
                signers: self.signers.clone(),
                signer: self.share_index,
                inner,
            })
            .collect())
    }
}
