//! Authenticated ECDSA ceremony messages and the errors every ECDSA ceremony shares.
//!
//! The same construction as `custody_threshold::CeremonyMessage`: every message is signed
//! by its sender's identity key over the plan hash, the execution id and the header, so
//! it cannot move to another ceremony, step, plan or recipient; point-to-point messages
//! are age-encrypted to the recipient, and the plaintext repeats the header so nobody can
//! re-sign someone else's ciphertext as their own.

use std::fmt;
use std::str::FromStr;

use custody_threshold::{Culprit, Identity, ParticipantIndex, SigningDomain};
use rand_core::{CryptoRng, RngCore};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::codec::{DecodeError, Reader, TypeTag, Writer};
use crate::plan::{EcdsaPlan, Step};

/// Largest payload one message may carry: a presigning round for a full batch of
/// [`crate::limits::MAX_PRESIGN_BATCH`] presignatures, or an auxiliary-info round.
pub const MAX_PAYLOAD_LEN: usize = 16 * 1024 * 1024;

/// Recipient value meaning "every party of the step".
pub const BROADCAST: ParticipantIndex = 0;

/// A signed (and, when point-to-point, encrypted) message of an ECDSA ceremony.
#[derive(Clone, PartialEq, Eq)]
pub struct EcdsaMessage {
    pub(crate) step: Step,
    pub(crate) ceremony_id: [u8; 16],
    pub(crate) execution_id: [u8; 32],
    pub(crate) sender: ParticipantIndex,
    pub(crate) recipient: ParticipantIndex,
    pub(crate) sequence: u16,
    pub(crate) payload: Vec<u8>,
    pub(crate) signature: [u8; 64],
}

impl fmt::Debug for EcdsaMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcdsaMessage")
            .field("step", &self.step)
            .field("ceremony_id", &hex::encode(self.ceremony_id))
            .field("sender", &self.sender)
            .field("recipient", &self.recipient)
            .field("sequence", &self.sequence)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// The bytes the sender's identity signs, in the ECDSA-ceremony signing domain.
///
/// The domain keeps them apart from air-gap envelopes and policy documents signed by the
/// same identity key; the `CPEC` magic and a type byte of their own keep them apart from
/// any other encoding of this crate.
fn signed_bytes(plan_hash: &[u8; 32], m: &EcdsaMessage) -> Vec<u8> {
    let mut w = Writer::new(TypeTag::MessageSigned);
    w.fixed(plan_hash)
        .u8(m.step as u8)
        .fixed(&m.ceremony_id)
        .fixed(&m.execution_id)
        .u16(m.sender)
        .u16(m.recipient)
        .u16(m.sequence)
        .var(&m.payload);
    w.finish()
}

fn inner_header(
    execution_id: &[u8; 32],
    sender: ParticipantIndex,
    recipient: ParticipantIndex,
    sequence: u16,
) -> Vec<u8> {
    let mut h = Vec::with_capacity(38);
    h.extend_from_slice(execution_id);
    h.extend_from_slice(&sender.to_be_bytes());
    h.extend_from_slice(&recipient.to_be_bytes());
    h.extend_from_slice(&sequence.to_be_bytes());
    h
}

pub(crate) fn culprit(plan: &EcdsaPlan, index: ParticipantIndex) -> Culprit {
    Culprit {
        index,
        name: plan
            .participant(index)
            .map(|c| c.name().to_owned())
            .unwrap_or_default(),
    }
}

impl EcdsaMessage {
    /// Signs (and for a point-to-point `recipient`, encrypts) `body` for `step` of `plan`.
    ///
    /// Sessions call this themselves; it is public so tools and tests can build the
    /// messages a misbehaving participant would send.
    ///
    /// # Errors
    /// [`EcdsaCeremonyError::NotInPlan`] if `identity` is not in `plan`;
    /// [`EcdsaCeremonyError::UnknownParticipant`] for a bad recipient;
    /// [`EcdsaCeremonyError::Encrypt`] if encryption fails.
    pub fn seal<R: RngCore + CryptoRng>(
        plan: &EcdsaPlan,
        identity: &Identity,
        step: Step,
        recipient: ParticipantIndex,
        sequence: u16,
        body: &[u8],
        rng: &mut R,
    ) -> Result<Self, EcdsaCeremonyError> {
        let sender = plan
            .position_of(&identity.card())
            .ok_or(EcdsaCeremonyError::NotInPlan)?;
        let execution_id = plan.execution_id(step);
        let payload = if recipient == BROADCAST {
            body.to_vec()
        } else {
            let card = plan
                .participant(recipient)
                .ok_or(EcdsaCeremonyError::UnknownParticipant { index: recipient })?;
            let mut plaintext =
                Zeroizing::new(inner_header(&execution_id, sender, recipient, sequence));
            plaintext.extend_from_slice(body);
            let to = age::x25519::Recipient::from_str(card.age_recipient())
                .map_err(|_| EcdsaCeremonyError::Encrypt { recipient })?;
            age::encrypt(&to, &plaintext).map_err(|_| EcdsaCeremonyError::Encrypt { recipient })?
        };
        let mut msg = EcdsaMessage {
            step,
            ceremony_id: *plan.ceremony_id(),
            execution_id,
            sender,
            recipient,
            sequence,
            payload,
            signature: [0u8; 64],
        };
        let signed = signed_bytes(&plan.hash(), &msg);
        msg.signature = identity.sign_in_domain(SigningDomain::EcdsaCeremony, &signed, rng);
        Ok(msg)
    }

    /// The step this message belongs to.
    pub fn step(&self) -> Step {
        self.step
    }

    /// The ceremony this message belongs to.
    pub fn ceremony_id(&self) -> &[u8; 16] {
        &self.ceremony_id
    }

    /// The execution id the sender ran under ([`EcdsaPlan::execution_id`]).
    pub fn execution_id(&self) -> &[u8; 32] {
        &self.execution_id
    }

    /// The sender's position in the plan.
    pub fn sender(&self) -> ParticipantIndex {
        self.sender
    }

    /// The recipient's position, or [`BROADCAST`].
    pub fn recipient(&self) -> ParticipantIndex {
        self.recipient
    }

    /// The sender's message counter within the step.
    pub fn sequence(&self) -> u16 {
        self.sequence
    }

    /// The payload: the body of a broadcast, the age ciphertext of a point-to-point message.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Checks ceremony, step, execution id, sender, recipient and signature, and returns
    /// the body (decrypted when point-to-point). Does not check that the sender takes part
    /// in `step`; sessions do.
    ///
    /// # Errors
    /// An [`EcdsaCeremonyError`] naming the sender.
    pub fn open(
        &self,
        plan: &EcdsaPlan,
        identity: &Identity,
        expected: Step,
    ) -> Result<Zeroizing<Vec<u8>>, EcdsaCeremonyError> {
        let me = plan
            .position_of(&identity.card())
            .ok_or(EcdsaCeremonyError::NotInPlan)?;
        if &self.ceremony_id != plan.ceremony_id() {
            return Err(EcdsaCeremonyError::WrongCeremony {
                sender: self.sender,
            });
        }
        if self.step != expected {
            return Err(EcdsaCeremonyError::UnexpectedStep {
                expected: expected.name(),
                found: self.step.name(),
                sender: self.sender,
            });
        }
        let card = plan
            .participant(self.sender)
            .ok_or(EcdsaCeremonyError::UnknownParticipant { index: self.sender })?;
        let execution_id = plan.execution_id(expected);
        if self.execution_id != execution_id {
            return Err(EcdsaCeremonyError::WrongExecutionId {
                culprit: culprit(plan, self.sender),
            });
        }
        let signed = signed_bytes(&plan.hash(), self);
        if !card.verify_in_domain(SigningDomain::EcdsaCeremony, &signed, &self.signature) {
            return Err(EcdsaCeremonyError::BadSignature {
                culprit: culprit(plan, self.sender),
            });
        }
        if self.recipient != BROADCAST && self.recipient != me {
            return Err(EcdsaCeremonyError::WrongRecipient {
                sender: self.sender,
                recipient: self.recipient,
            });
        }
        if self.recipient == BROADCAST {
            return Ok(Zeroizing::new(self.payload.clone()));
        }
        let plaintext =
            identity
                .decrypt(&self.payload)
                .map_err(|_| EcdsaCeremonyError::Malformed {
                    culprit: culprit(plan, self.sender),
                    reason: "payload does not decrypt with our identity".into(),
                })?;
        let header = inner_header(&execution_id, self.sender, self.recipient, self.sequence);
        if plaintext.len() < header.len() || plaintext[..header.len()] != header[..] {
            return Err(EcdsaCeremonyError::Malformed {
                culprit: culprit(plan, self.sender),
                reason: "encrypted header does not match the signed header".into(),
            });
        }
        Ok(Zeroizing::new(plaintext[header.len()..].to_vec()))
    }

    /// Encodes the message (see `docs/formats/ecdsa-messages.md`).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(TypeTag::Message);
        w.u8(self.step as u8)
            .fixed(&self.ceremony_id)
            .fixed(&self.execution_id)
            .u16(self.sender)
            .u16(self.recipient)
            .u16(self.sequence)
            .var(&self.payload)
            .fixed(&self.signature);
        w.finish()
    }

    /// Decodes a message. The signature is checked later, against the plan.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the malformed field.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, TypeTag::Message)?;
        let step = Step::from_byte(r.u8("step")?)?;
        let ceremony_id = r.array("ceremony id")?;
        let execution_id = r.array("execution id")?;
        let sender = r.u16("sender")?;
        let recipient = r.u16("recipient")?;
        let sequence = r.u16("sequence")?;
        let payload = r.var("payload", MAX_PAYLOAD_LEN)?.to_vec();
        let signature = r.array("signature")?;
        r.finish()?;
        if sender == 0 {
            return Err(DecodeError::invalid(
                "sender",
                "participant 0 does not exist",
            ));
        }
        if sender == recipient {
            return Err(DecodeError::invalid(
                "recipient",
                "a participant does not send to itself",
            ));
        }
        Ok(EcdsaMessage {
            step,
            ceremony_id,
            execution_id,
            sender,
            recipient,
            sequence,
            payload,
            signature,
        })
    }
}

/// Why an ECDSA ceremony step refused a message or aborted. Every variant with a cause
/// among the participants names it; none leaves a usable key or presignature behind.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EcdsaCeremonyError {
    /// This identity's card is not in the plan (or not among the plan's signers).
    #[error(
        "this identity is not a participant in the ceremony plan; check the plan you were given"
    )]
    NotInPlan,
    /// The plan is of a different kind than the step being run.
    #[error("the ceremony plan is not for this operation: {0}")]
    WrongPlanKind(&'static str),
    /// An index outside the plan.
    #[error("participant #{index} is not in the plan")]
    UnknownParticipant {
        /// The index.
        index: ParticipantIndex,
    },
    /// A plan participant who does not take part in this step (e.g. not one of the
    /// presigning signers) sent a message.
    #[error("{culprit} does not take part in this step; its message is refused")]
    NotAParty {
        /// The sender.
        culprit: Culprit,
    },
    /// A message belongs to another ceremony.
    #[error("message from participant #{sender} belongs to a different ceremony")]
    WrongCeremony {
        /// The claimed sender.
        sender: ParticipantIndex,
    },
    /// A message for another step was supplied.
    #[error("expected a {expected} message but participant #{sender} sent a {found} message")]
    UnexpectedStep {
        /// The step being run.
        expected: &'static str,
        /// The step of the message.
        found: &'static str,
        /// The claimed sender.
        sender: ParticipantIndex,
    },
    /// The message names the right ceremony and step but a different execution id: the
    /// sender runs a plan with other parameters (participants, threshold, key, purpose).
    #[error("message from {culprit} was made for a different execution id; compare ceremony plans with that participant")]
    WrongExecutionId {
        /// The sender.
        culprit: Culprit,
    },
    /// A message is addressed to someone else.
    #[error("message from participant #{sender} is addressed to #{recipient}, not to us")]
    WrongRecipient {
        /// The sender.
        sender: ParticipantIndex,
        /// The recipient it names.
        recipient: ParticipantIndex,
    },
    /// The signature does not verify under the sender's identity key: the message was
    /// forged or altered in transit.
    #[error("message claiming to be from {culprit} has a bad signature (forged or altered)")]
    BadSignature {
        /// The claimed sender.
        culprit: Culprit,
    },
    /// A message could not be decrypted or decoded.
    #[error("message from {culprit} is malformed: {reason}")]
    Malformed {
        /// The sender.
        culprit: Culprit,
        /// What is wrong.
        reason: String,
    },
    /// A participant sent two different messages with the same sequence number.
    #[error("equivocation: {culprit} sent two different messages for the same round")]
    Equivocation {
        /// Who equivocated.
        culprit: Culprit,
    },
    /// Encryption to a recipient failed.
    #[error("cannot encrypt to participant #{recipient}")]
    Encrypt {
        /// The recipient.
        recipient: ParticipantIndex,
    },
    /// The key share does not belong to the key or participant the plan names.
    #[error("the key share does not fit the plan: {0}")]
    KeyShareMismatch(&'static str),
    /// The step has not finished yet.
    #[error("the {0} step has not finished; more messages are needed")]
    NotFinished(&'static str),
    /// CGGMP21 aborted (a proof failed, a message did not fit the round, …). CGGMP21 0.6
    /// does not implement identifiable abort, so the cause is not attributed.
    #[error("threshold ECDSA protocol aborted in instance {lane}: {reason}")]
    Protocol {
        /// The protocol instance (presignature number within a batch; 0 otherwise).
        lane: u16,
        /// The library's error chain.
        reason: String,
    },
}
