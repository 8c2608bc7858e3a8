//! Authenticated ceremony messages and the errors every ceremony shares.
//!
//! Each message is signed by its sender's identity key over the plan hash and the message
//! header, so it cannot be moved to another ceremony, another step, or another recipient.
//! Confidential messages are age-encrypted to the recipient, and the plaintext repeats the
//! header so a participant cannot re-sign someone else's ciphertext as its own.

use std::collections::BTreeMap;
use std::fmt;

use rand_core::{CryptoRng, RngCore};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::codec::{tagged_hash, DecodeError, Reader, TypeTag, Writer};
use crate::identity::Identity;
use crate::plan::{CeremonyPlan, ParticipantIndex};

/// Largest payload a ceremony message may carry (a 67-of-100 round-1 package is ~2.3 KiB;
/// this leaves room for 255 participants and age overhead).
pub const MAX_PAYLOAD_LEN: usize = 64 * 1024;

/// The step a message belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum MessageKind {
    /// DKG round 1: commitments and proof of knowledge, to everyone.
    DkgRound1 = 1,
    /// DKG round 2: a secret share, encrypted to one recipient.
    DkgRound2 = 2,
    /// DKG certificate over the transcript, to everyone.
    DkgCertificate = 3,
    /// Refresh round 1, to everyone.
    RefreshRound1 = 4,
    /// Refresh round 2, encrypted to one recipient.
    RefreshRound2 = 5,
    /// Refresh certificate, to everyone.
    RefreshCertificate = 6,
    /// Repair step 1: a helper's delta for another helper, encrypted.
    RepairDelta = 7,
    /// Repair step 2: a helper's sigma for the lost participant, encrypted.
    RepairSigma = 8,
}

impl MessageKind {
    fn from_byte(b: u8) -> Result<Self, DecodeError> {
        Ok(match b {
            1 => Self::DkgRound1,
            2 => Self::DkgRound2,
            3 => Self::DkgCertificate,
            4 => Self::RefreshRound1,
            5 => Self::RefreshRound2,
            6 => Self::RefreshCertificate,
            7 => Self::RepairDelta,
            8 => Self::RepairSigma,
            _ => {
                return Err(DecodeError::invalid(
                    "message kind",
                    format!("unknown kind {b}"),
                ))
            }
        })
    }

    /// Whether the payload is encrypted to a single recipient.
    pub fn is_confidential(self) -> bool {
        matches!(
            self,
            Self::DkgRound2 | Self::RefreshRound2 | Self::RepairDelta | Self::RepairSigma
        )
    }

    /// A human name for messages and errors.
    pub fn name(self) -> &'static str {
        match self {
            Self::DkgRound1 => "DKG round 1",
            Self::DkgRound2 => "DKG round 2",
            Self::DkgCertificate => "DKG certificate",
            Self::RefreshRound1 => "refresh round 1",
            Self::RefreshRound2 => "refresh round 2",
            Self::RefreshCertificate => "refresh certificate",
            Self::RepairDelta => "repair delta",
            Self::RepairSigma => "repair sigma",
        }
    }
}

/// Recipient value meaning "every participant".
pub const BROADCAST: ParticipantIndex = 0;

/// A signed (and, where confidential, encrypted) message between ceremony participants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CeremonyMessage {
    kind: MessageKind,
    ceremony_id: [u8; 16],
    sender: ParticipantIndex,
    recipient: ParticipantIndex,
    payload: Vec<u8>,
    signature: [u8; 64],
}

fn signed_digest(
    plan_hash: &[u8; 32],
    kind: MessageKind,
    sender: ParticipantIndex,
    recipient: ParticipantIndex,
    payload: &[u8],
) -> [u8; 32] {
    tagged_hash(
        "CoinPort/ceremony-message",
        &[
            plan_hash,
            &[kind as u8],
            &sender.to_be_bytes(),
            &recipient.to_be_bytes(),
            payload,
        ],
    )
}

fn inner_header(
    plan_hash: &[u8; 32],
    kind: MessageKind,
    sender: ParticipantIndex,
    recipient: ParticipantIndex,
) -> Vec<u8> {
    let mut h = Vec::with_capacity(37);
    h.extend_from_slice(plan_hash);
    h.push(kind as u8);
    h.extend_from_slice(&sender.to_be_bytes());
    h.extend_from_slice(&recipient.to_be_bytes());
    h
}

impl CeremonyMessage {
    /// Signs (and for confidential kinds, encrypts) `body` from `identity` to `recipient`.
    ///
    /// Ceremony state machines call this themselves; it is public so tools and tests can
    /// build messages a misbehaving participant would send.
    ///
    /// # Errors
    /// [`CeremonyError::NotInPlan`] if `identity` is not in `plan`;
    /// [`CeremonyError::UnknownParticipant`] for a bad recipient.
    pub fn seal<R: RngCore + CryptoRng>(
        plan: &CeremonyPlan,
        identity: &Identity,
        kind: MessageKind,
        recipient: ParticipantIndex,
        body: &[u8],
        rng: &mut R,
    ) -> Result<Self, CeremonyError> {
        let plan_hash = plan.hash();
        let sender = plan
            .position_of(&identity.card())
            .ok_or(CeremonyError::NotInPlan)?;
        let payload = if kind.is_confidential() {
            let card = plan
                .participant(recipient)
                .ok_or(CeremonyError::UnknownParticipant { index: recipient })?;
            let mut plaintext = Zeroizing::new(inner_header(&plan_hash, kind, sender, recipient));
            plaintext.extend_from_slice(body);
            card.encrypt(&plaintext)
                .map_err(|_| CeremonyError::Encrypt { recipient })?
        } else {
            body.to_vec()
        };
        let digest = signed_digest(&plan_hash, kind, sender, recipient, &payload);
        let signature = identity.sign(&digest, rng);
        Ok(CeremonyMessage {
            kind,
            ceremony_id: *plan.ceremony_id(),
            sender,
            recipient,
            payload,
            signature,
        })
    }

    /// The step this message belongs to.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// The sender's position in the plan.
    pub fn sender(&self) -> ParticipantIndex {
        self.sender
    }

    /// The recipient's position, or [`BROADCAST`].
    pub fn recipient(&self) -> ParticipantIndex {
        self.recipient
    }

    /// The payload: the body of a broadcast message, the age ciphertext of a confidential
    /// one.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The ceremony this message belongs to.
    pub fn ceremony_id(&self) -> &[u8; 16] {
        &self.ceremony_id
    }

    /// Checks ceremony, step, sender and signature, and decrypts a confidential payload
    /// addressed to `me`.
    pub(crate) fn open(
        &self,
        plan: &CeremonyPlan,
        plan_hash: &[u8; 32],
        identity: &Identity,
        me: ParticipantIndex,
        expected: MessageKind,
    ) -> Result<Zeroizing<Vec<u8>>, CeremonyError> {
        if &self.ceremony_id != plan.ceremony_id() {
            return Err(CeremonyError::WrongCeremony {
                sender: self.sender,
            });
        }
        if self.kind != expected {
            return Err(CeremonyError::UnexpectedMessage {
                expected: expected.name(),
                found: self.kind.name(),
                sender: self.sender,
            });
        }
        let card = plan
            .participant(self.sender)
            .ok_or(CeremonyError::UnknownParticipant { index: self.sender })?;
        let digest = signed_digest(
            plan_hash,
            self.kind,
            self.sender,
            self.recipient,
            &self.payload,
        );
        if !card.verify(&digest, &self.signature) {
            return Err(CeremonyError::BadSignature {
                culprit: Culprit::new(plan, self.sender),
            });
        }
        let expected_recipient = if expected.is_confidential() {
            me
        } else {
            BROADCAST
        };
        if self.recipient != expected_recipient {
            return Err(CeremonyError::WrongRecipient {
                sender: self.sender,
                recipient: self.recipient,
            });
        }
        if !expected.is_confidential() {
            return Ok(Zeroizing::new(self.payload.clone()));
        }
        let plaintext = identity
            .decrypt(&self.payload)
            .map_err(|_| CeremonyError::Malformed {
                culprit: Culprit::new(plan, self.sender),
                reason: "payload does not decrypt with our identity".into(),
            })?;
        let header = inner_header(plan_hash, self.kind, self.sender, self.recipient);
        if plaintext.len() < header.len() || plaintext[..header.len()] != header[..] {
            return Err(CeremonyError::Malformed {
                culprit: Culprit::new(plan, self.sender),
                reason: "encrypted header does not match the signed header".into(),
            });
        }
        Ok(Zeroizing::new(plaintext[header.len()..].to_vec()))
    }

    /// Encodes the message (see `docs/formats/threshold.md`).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(TypeTag::CeremonyMessage);
        w.u8(self.kind as u8)
            .fixed(&self.ceremony_id)
            .u16(self.sender)
            .u16(self.recipient)
            .var(&self.payload)
            .fixed(&self.signature);
        w.finish()
    }

    /// Decodes a message. The signature is checked later, against the plan.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the malformed field.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, TypeTag::CeremonyMessage)?;
        let kind = MessageKind::from_byte(r.u8("message kind")?)?;
        let ceremony_id = r.array("ceremony id")?;
        let sender = r.u16("sender")?;
        let recipient = r.u16("recipient")?;
        let payload = r.var("payload", MAX_PAYLOAD_LEN)?.to_vec();
        let signature = r.array("signature")?;
        r.finish()?;
        if sender == 0 {
            return Err(DecodeError::invalid(
                "sender",
                "participant 0 does not exist",
            ));
        }
        Ok(CeremonyMessage {
            kind,
            ceremony_id,
            sender,
            recipient,
            payload,
            signature,
        })
    }
}

/// A participant named as the cause of an abort.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Culprit {
    /// Position in the plan.
    pub index: ParticipantIndex,
    /// Display name from the identity card.
    pub name: String,
}

impl Culprit {
    pub(crate) fn new(plan: &CeremonyPlan, index: ParticipantIndex) -> Self {
        Culprit {
            index,
            name: plan
                .participant(index)
                .map(|c| c.name().to_owned())
                .unwrap_or_default(),
        }
    }
}

impl fmt::Display for Culprit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} ({})", self.index, self.name)
    }
}

struct Culprits<'a>(&'a [Culprit]);

impl fmt::Display for Culprits<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// Why a DKG, refresh or repair ceremony aborted. Every variant that has a cause among
/// the participants names it; none leaves a usable key behind.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CeremonyError {
    /// This identity's card is not in the plan.
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
    /// A message belongs to another ceremony.
    #[error("message from participant #{sender} belongs to a different ceremony")]
    WrongCeremony {
        /// The claimed sender.
        sender: ParticipantIndex,
    },
    /// A message for another step was supplied.
    #[error("expected a {expected} message but participant #{sender} sent a {found} message")]
    UnexpectedMessage {
        /// The step being run.
        expected: &'static str,
        /// The step of the message.
        found: &'static str,
        /// The claimed sender.
        sender: ParticipantIndex,
    },
    /// A message is addressed to someone else.
    #[error("message from participant #{sender} is addressed to #{recipient}, not to us")]
    WrongRecipient {
        /// The sender.
        sender: ParticipantIndex,
        /// The recipient it names.
        recipient: ParticipantIndex,
    },
    /// The signature does not verify under the sender's identity key.
    #[error("message claiming to be from {culprit} has a bad signature")]
    BadSignature {
        /// The claimed sender.
        culprit: Culprit,
    },
    /// A message could not be decoded or decrypted.
    #[error("message from {culprit} is malformed: {reason}")]
    Malformed {
        /// The sender.
        culprit: Culprit,
        /// What is wrong.
        reason: String,
    },
    /// Messages are missing from some participants.
    #[error("missing messages from participants {missing:?}; wait for them or abort the ceremony")]
    Missing {
        /// Who has not sent.
        missing: Vec<ParticipantIndex>,
    },
    /// A participant sent two different messages for the same step.
    #[error("equivocation: {} sent different messages for the same step", Culprits(.culprits))]
    Equivocation {
        /// Who equivocated.
        culprits: Vec<Culprit>,
    },
    /// A proof of knowledge of the secret coefficient failed.
    #[error("invalid proof of knowledge from {}", Culprits(.culprits))]
    InvalidProof {
        /// Who sent it.
        culprits: Vec<Culprit>,
    },
    /// A secret share does not match its sender's commitments.
    #[error("invalid secret share from {}", Culprits(.culprits))]
    InvalidShare {
        /// Who sent it.
        culprits: Vec<Culprit>,
    },
    /// Certificates disagree on the transcript.
    #[error("certificate mismatch: {} certified a different transcript", Culprits(.culprits))]
    CertificateMismatch {
        /// Whose certificate differs.
        culprits: Vec<Culprit>,
    },
    /// Encryption to a recipient failed.
    #[error("cannot encrypt to participant #{recipient}")]
    Encrypt {
        /// The recipient.
        recipient: ParticipantIndex,
    },
    /// The existing share does not belong to the group named by the plan.
    #[error("the key share does not belong to the group key named in the plan")]
    WrongGroup,
    /// The FROST library refused for a reason not attributable to a participant.
    #[error("threshold protocol error: {0}")]
    Protocol(String),
}

/// Checks and opens one message per other participant (or per listed sender) and returns
/// the bodies by sender.
///
/// Identical duplicates are ignored (a message may arrive on several channels); two
/// different validly signed messages from one sender for the same step are equivocation.
pub(crate) fn collect(
    plan: &CeremonyPlan,
    plan_hash: &[u8; 32],
    identity: &Identity,
    me: ParticipantIndex,
    expected: MessageKind,
    senders: &[ParticipantIndex],
    messages: &[CeremonyMessage],
) -> Result<BTreeMap<ParticipantIndex, Zeroizing<Vec<u8>>>, CeremonyError> {
    let mut out: BTreeMap<ParticipantIndex, Zeroizing<Vec<u8>>> = BTreeMap::new();
    let mut equivocators = Vec::new();
    for msg in messages {
        // Our own messages and confidential messages for others may travel in the same
        // batch (one USB directory); they are not for us.
        if msg.sender == me || (expected.is_confidential() && msg.recipient != me) {
            continue;
        }
        if !senders.contains(&msg.sender) {
            return Err(CeremonyError::UnknownParticipant { index: msg.sender });
        }
        let body = msg.open(plan, plan_hash, identity, me, expected)?;
        if let Some(prev) = out.get(&msg.sender) {
            // Both are validly signed by the sender, so two different bodies prove
            // equivocation. The same body twice (or re-encrypted) is only a resend.
            if **prev != *body {
                equivocators.push(Culprit::new(plan, msg.sender));
            }
            continue;
        }
        out.insert(msg.sender, body);
    }
    if !equivocators.is_empty() {
        equivocators.dedup();
        return Err(CeremonyError::Equivocation {
            culprits: equivocators,
        });
    }
    let missing: Vec<_> = senders
        .iter()
        .copied()
        .filter(|s| *s != me && !out.contains_key(s))
        .collect();
    if !missing.is_empty() {
        return Err(CeremonyError::Missing { missing });
    }
    Ok(out)
}
