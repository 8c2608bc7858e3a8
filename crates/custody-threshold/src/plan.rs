//! Ceremony plans: who takes part, in which order, for what.

use std::collections::BTreeSet;

use bitcoin::Network;
use thiserror::Error;

use crate::codec::{tagged_hash, DecodeError, Reader, TypeTag, Writer};
use crate::identity::IdentityCard;

/// Most participants a ceremony may have.
pub const MAX_PARTICIPANTS: usize = 255;
/// Longest purpose text, in bytes.
pub const MAX_PURPOSE_LEN: usize = 256;

/// A participant's position in a plan: 1 for the first card, and also its FROST identifier.
pub type ParticipantIndex = u16;

/// What a ceremony does.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CeremonyKind {
    /// Distributed key generation of a new group key.
    Dkg,
    /// New shares for an existing group key (compressed SEC1 encoding of the group key).
    Refresh {
        /// The group key being refreshed.
        group_key: [u8; 33],
    },
    /// Recovery of a lost share with the help of `helpers`.
    Repair {
        /// The group key whose share is repaired.
        group_key: [u8; 33],
        /// The participant who lost its share.
        lost: ParticipantIndex,
        /// The participants who help, at least the threshold.
        helpers: Vec<ParticipantIndex>,
    },
}

/// Why a plan is unusable.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlanError {
    /// Threshold and participant count are inconsistent.
    #[error("threshold {threshold} of {participants} is not allowed: need 2 <= threshold <= participants <= {MAX_PARTICIPANTS}")]
    BadThreshold {
        /// Requested threshold.
        threshold: u16,
        /// Number of participants.
        participants: usize,
    },
    /// Two cards share a signing key or an age recipient.
    #[error("participants {first} and {second} have the same identity key")]
    DuplicateParticipant {
        /// Position of the first card.
        first: ParticipantIndex,
        /// Position of the second card.
        second: ParticipantIndex,
    },
    /// The purpose text is too long or has control characters.
    #[error("purpose must be at most {MAX_PURPOSE_LEN} bytes of printable text")]
    BadPurpose,
    /// A repair plan names an impossible set of helpers.
    #[error("repair plan is inconsistent: {0}")]
    BadRepair(&'static str),
}

/// A ceremony plan: the parameters every participant checks before taking part.
///
/// The plan hash ([`CeremonyPlan::hash`]) is signed into every message of the ceremony, so
/// a message can never be replayed into another ceremony or a different plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CeremonyPlan {
    ceremony_id: [u8; 16],
    kind: CeremonyKind,
    network: Network,
    purpose: String,
    threshold: u16,
    participants: Vec<IdentityCard>,
}

fn network_byte(network: Network) -> u8 {
    match network {
        Network::Bitcoin => 0,
        Network::Testnet => 1,
        Network::Signet => 2,
        Network::Regtest => 3,
        _ => 4,
    }
}

pub(crate) fn network_from_byte(b: u8) -> Result<Network, DecodeError> {
    Ok(match b {
        0 => Network::Bitcoin,
        1 => Network::Testnet,
        2 => Network::Signet,
        3 => Network::Regtest,
        4 => Network::Testnet4,
        _ => {
            return Err(DecodeError::invalid(
                "network",
                format!("unknown network {b}"),
            ))
        }
    })
}

pub(crate) fn write_network(w: &mut Writer, network: Network) {
    w.u8(network_byte(network));
}

impl CeremonyPlan {
    /// Builds and validates a plan. Participants are numbered from 1 in the given order.
    ///
    /// # Errors
    /// A [`PlanError`] saying what is inconsistent.
    pub fn new(
        ceremony_id: [u8; 16],
        kind: CeremonyKind,
        network: Network,
        purpose: &str,
        threshold: u16,
        participants: Vec<IdentityCard>,
    ) -> Result<Self, PlanError> {
        let plan = CeremonyPlan {
            ceremony_id,
            kind,
            network,
            purpose: purpose.to_owned(),
            threshold,
            participants,
        };
        plan.validate()?;
        Ok(plan)
    }

    fn validate(&self) -> Result<(), PlanError> {
        let n = self.participants.len();
        if self.threshold < 2 || usize::from(self.threshold) > n || n > MAX_PARTICIPANTS {
            return Err(PlanError::BadThreshold {
                threshold: self.threshold,
                participants: n,
            });
        }
        if self.purpose.len() > MAX_PURPOSE_LEN || self.purpose.chars().any(char::is_control) {
            return Err(PlanError::BadPurpose);
        }
        for (i, a) in self.participants.iter().enumerate() {
            for (j, b) in self.participants.iter().enumerate().skip(i + 1) {
                if a.signing_key() == b.signing_key() || a.age_recipient() == b.age_recipient() {
                    return Err(PlanError::DuplicateParticipant {
                        first: i as u16 + 1,
                        second: j as u16 + 1,
                    });
                }
            }
        }
        if let CeremonyKind::Repair { lost, helpers, .. } = &self.kind {
            let set: BTreeSet<_> = helpers.iter().copied().collect();
            if set.len() != helpers.len() {
                return Err(PlanError::BadRepair("a helper is named twice"));
            }
            if helpers.len() < usize::from(self.threshold) {
                return Err(PlanError::BadRepair("fewer helpers than the threshold"));
            }
            if set.contains(lost) {
                return Err(PlanError::BadRepair("the lost participant cannot help"));
            }
            if helpers
                .iter()
                .chain(std::iter::once(lost))
                .any(|&i| i == 0 || usize::from(i) > n)
            {
                return Err(PlanError::BadRepair("a participant index is out of range"));
            }
        }
        Ok(())
    }

    /// The ceremony id, unique per run.
    pub fn ceremony_id(&self) -> &[u8; 16] {
        &self.ceremony_id
    }

    /// What the ceremony does.
    pub fn kind(&self) -> &CeremonyKind {
        &self.kind
    }

    /// The Bitcoin network the key is for.
    pub fn network(&self) -> Network {
        self.network
    }

    /// The free-text purpose, e.g. "exchange cold wallet 2026".
    pub fn purpose(&self) -> &str {
        &self.purpose
    }

    /// Signatures needed.
    pub fn threshold(&self) -> u16 {
        self.threshold
    }

    /// Participants in order; participant `i` is `participants()[i - 1]`.
    pub fn participants(&self) -> &[IdentityCard] {
        &self.participants
    }

    /// The number of participants.
    pub fn len(&self) -> u16 {
        self.participants.len() as u16
    }

    /// Always false: a valid plan has at least two participants.
    pub fn is_empty(&self) -> bool {
        self.participants.is_empty()
    }

    /// The card of participant `index`, if it exists.
    pub fn participant(&self, index: ParticipantIndex) -> Option<&IdentityCard> {
        usize::from(index)
            .checked_sub(1)
            .and_then(|i| self.participants.get(i))
    }

    /// The position of `card` in the plan, if it is there.
    pub fn position_of(&self, card: &IdentityCard) -> Option<ParticipantIndex> {
        self.participants
            .iter()
            .position(|c| c == card)
            .map(|i| i as u16 + 1)
    }

    /// The hash every ceremony message and certificate commits to.
    pub fn hash(&self) -> [u8; 32] {
        tagged_hash("CoinPort/ceremony-plan", &[&self.encode()])
    }

    /// Encodes the plan (see `docs/formats/threshold.md`).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(TypeTag::CeremonyPlan);
        w.fixed(&self.ceremony_id);
        match &self.kind {
            CeremonyKind::Dkg => {
                w.u8(1);
            }
            CeremonyKind::Refresh { group_key } => {
                w.u8(2).fixed(group_key);
            }
            CeremonyKind::Repair {
                group_key,
                lost,
                helpers,
            } => {
                w.u8(3).fixed(group_key).u16(*lost);
                w.u16(helpers.len() as u16);
                for h in helpers {
                    w.u16(*h);
                }
            }
        }
        write_network(&mut w, self.network);
        w.var(self.purpose.as_bytes());
        w.u16(self.threshold);
        w.u16(self.participants.len() as u16);
        for card in &self.participants {
            card.write(&mut w);
        }
        w.finish()
    }

    /// Decodes and validates a plan.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the malformed field or the inconsistency.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, TypeTag::CeremonyPlan)?;
        let ceremony_id = r.array::<16>("ceremony id")?;
        let kind = match r.u8("ceremony kind")? {
            1 => CeremonyKind::Dkg,
            2 => CeremonyKind::Refresh {
                group_key: r.array("group key")?,
            },
            3 => {
                let group_key = r.array("group key")?;
                let lost = r.u16("lost participant")?;
                let count = r.count("helper count", MAX_PARTICIPANTS)?;
                let helpers = (0..count)
                    .map(|_| r.u16("helper"))
                    .collect::<Result<Vec<_>, _>>()?;
                CeremonyKind::Repair {
                    group_key,
                    lost,
                    helpers,
                }
            }
            other => {
                return Err(DecodeError::invalid(
                    "ceremony kind",
                    format!("unknown kind {other}"),
                ))
            }
        };
        let network = network_from_byte(r.u8("network")?)?;
        let purpose = r.string("purpose", MAX_PURPOSE_LEN)?;
        let threshold = r.u16("threshold")?;
        let count = r.count("participant count", MAX_PARTICIPANTS)?;
        let participants = (0..count)
            .map(|_| IdentityCard::read(&mut r))
            .collect::<Result<Vec<_>, _>>()?;
        r.finish()?;
        Self::new(
            ceremony_id,
            kind,
            network,
            &purpose,
            threshold,
            participants,
        )
        .map_err(|e| DecodeError::invalid("ceremony plan", e))
    }
}
