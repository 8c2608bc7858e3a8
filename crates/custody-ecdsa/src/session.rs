//! The caller-driven runner shared by every ECDSA ceremony step.
//!
//! A step runs one or more CGGMP21 protocol instances ("lanes": one for auxiliary info or
//! key generation, one per presignature in a presigning batch) as `round_based` state
//! machines. Nothing runs between calls: the caller hands in the messages it has and gets
//! back the messages to deliver. The messages of all lanes for one round travel together,
//! so a batch of presignatures costs as many trips as a single one.

use std::collections::{BTreeMap, VecDeque};

use cggmp21::round_based::state_machine::{ProceedResult, StateMachine};
use cggmp21::round_based::{Incoming, MessageDestination, MessageType, Outgoing};
use custody_threshold::{Identity, ParticipantIndex};
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, RngCore, SeedableRng};
use serde::de::DeserializeOwned;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::codec::{from_cbor, tagged_hash, to_cbor, DecodeError, MAX_CBOR_LEN};
use crate::message::{culprit, EcdsaCeremonyError, EcdsaMessage, BROADCAST};
use crate::plan::{EcdsaPlan, Step, MAX_PRESIGN_BATCH};

/// A boxed CGGMP21 state machine whose error is already rendered as text.
pub(crate) type Machine<M, O> = Box<dyn StateMachine<Output = Result<O, String>, Msg = M>>;

/// Renders an error with its sources, since CGGMP21's top-level errors only say
/// "protocol failed".
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The execution id of lane `lane` of a step.
pub(crate) fn lane_execution_id(execution_id: &[u8; 32], lane: u16) -> [u8; 32] {
    tagged_hash("CoinPort/ecdsa-lane", &[execution_id, &lane.to_be_bytes()])
}

/// An owned random generator for one lane, seeded from the caller's generator, so the
/// state machine can own it across calls.
pub(crate) fn lane_rng<R: RngCore + CryptoRng>(rng: &mut R) -> ChaCha20Rng {
    let mut seed = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(seed.as_mut());
    ChaCha20Rng::from_seed(*seed)
}

struct Lane<M, O> {
    machine: Machine<M, O>,
    pending: VecDeque<Incoming<M>>,
    output: Option<O>,
}

/// Runs the lanes of one step for one participant.
pub(crate) struct Driver<M, O> {
    plan: EcdsaPlan,
    step: Step,
    me: ParticipantIndex,
    /// Plan indexes of the parties of this step; position = CGGMP21 party index.
    parties: Vec<ParticipantIndex>,
    lanes: Vec<Lane<M, O>>,
    next_sequence: u16,
    next_msg_id: u64,
    /// (sender, sequence, broadcast?) → hash of the body, to drop resends and catch
    /// equivocation.
    seen: BTreeMap<(ParticipantIndex, u16, bool), [u8; 32]>,
}

impl<M, O> Driver<M, O>
where
    M: Serialize + DeserializeOwned + 'static,
{
    /// Checks that `identity` is a party of `step` and builds the driver; `make_lane`
    /// builds lane `l`'s machine from its execution id, the party's CGGMP21 index and an
    /// owned rng.
    pub(crate) fn new<R: RngCore + CryptoRng>(
        plan: &EcdsaPlan,
        identity: &Identity,
        step: Step,
        lanes: u16,
        rng: &mut R,
        mut make_lane: impl FnMut([u8; 32], u16, ChaCha20Rng) -> Machine<M, O>,
    ) -> Result<Self, EcdsaCeremonyError> {
        let me = plan
            .position_of(&identity.card())
            .ok_or(EcdsaCeremonyError::NotInPlan)?;
        let parties = plan.parties(step);
        let i = parties
            .iter()
            .position(|p| *p == me)
            .ok_or(EcdsaCeremonyError::NotInPlan)? as u16;
        let execution_id = plan.execution_id(step);
        let lanes = (0..lanes)
            .map(|l| Lane {
                machine: make_lane(lane_execution_id(&execution_id, l), i, lane_rng(rng)),
                pending: VecDeque::new(),
                output: None,
            })
            .collect();
        Ok(Driver {
            plan: plan.clone(),
            step,
            me,
            parties,
            lanes,
            next_sequence: 0,
            next_msg_id: 0,
            seen: BTreeMap::new(),
        })
    }

    /// The plan this step runs under.
    pub(crate) fn plan(&self) -> &EcdsaPlan {
        &self.plan
    }

    /// Whether every lane has produced its output.
    pub(crate) fn is_finished(&self) -> bool {
        self.lanes.iter().all(|l| l.output.is_some())
    }

    /// Runs every lane as far as it can go and seals what they want to send.
    ///
    /// One envelope (per destination) carries one protocol round: a lane that sent in this
    /// pass stops before it consumes messages of the next round, which the next pass takes
    /// up under the next sequence number. Without that, messages that arrived early (a peer
    /// one round ahead) would let a lane send two rounds at once, and receivers refuse an
    /// envelope with two messages of one lane.
    pub(crate) fn pump<R: RngCore + CryptoRng>(
        &mut self,
        identity: &Identity,
        rng: &mut R,
    ) -> Result<Vec<EcdsaMessage>, EcdsaCeremonyError> {
        let mut messages = Vec::new();
        loop {
            let out = self.pass()?;
            if out.is_empty() {
                return Ok(messages);
            }
            let sequence = self.next_sequence;
            self.next_sequence = self.next_sequence.wrapping_add(1);
            for (to, items) in out {
                let body = encode_items(&items);
                messages.push(EcdsaMessage::seal(
                    &self.plan, identity, self.step, to, sequence, &body, rng,
                )?);
            }
        }
    }

    /// One pass over the lanes: each runs until it needs a message it does not have, has
    /// its output, or has sent and would go on to the next round. Returns the items to
    /// send, by destination (BROADCAST or a plan index).
    #[allow(clippy::type_complexity)]
    fn pass(
        &mut self,
    ) -> Result<BTreeMap<ParticipantIndex, Vec<(u16, Vec<u8>)>>, EcdsaCeremonyError> {
        let mut out: BTreeMap<ParticipantIndex, Vec<(u16, Vec<u8>)>> = BTreeMap::new();
        for (l, lane) in self.lanes.iter_mut().enumerate() {
            let lane_no = l as u16;
            if lane.output.is_some() {
                continue;
            }
            let mut sent = false;
            loop {
                match lane.machine.proceed() {
                    ProceedResult::SendMsg(Outgoing { recipient, msg }) => {
                        let to = match recipient {
                            MessageDestination::AllParties => BROADCAST,
                            MessageDestination::OneParty(j) => *self
                                .parties
                                .get(usize::from(j))
                                .ok_or_else(|| protocol(lane_no, "message to an unknown party"))?,
                        };
                        let bytes = to_cbor(&msg).map_err(|e| protocol(lane_no, e))?;
                        out.entry(to).or_default().push((lane_no, bytes));
                        sent = true;
                    }
                    ProceedResult::NeedsOneMoreMessage if sent => break,
                    ProceedResult::NeedsOneMoreMessage => match lane.pending.pop_front() {
                        Some(incoming) => {
                            if lane.machine.received_msg(incoming).is_err() {
                                return Err(protocol(lane_no, "state machine refused a message"));
                            }
                        }
                        None => break,
                    },
                    ProceedResult::Yielded => {}
                    ProceedResult::Output(Ok(o)) => {
                        lane.output = Some(o);
                        break;
                    }
                    ProceedResult::Output(Err(reason)) => {
                        return Err(EcdsaCeremonyError::Protocol {
                            lane: lane_no,
                            reason,
                        })
                    }
                    ProceedResult::Error(e) => return Err(protocol(lane_no, error_chain(&e))),
                }
            }
        }
        Ok(out)
    }

    /// Verifies `messages`, queues their contents for the lanes and pumps.
    ///
    /// Our own messages and point-to-point messages for others are skipped (they may
    /// travel in the same USB directory); an identical resend is ignored.
    pub(crate) fn receive<R: RngCore + CryptoRng>(
        &mut self,
        identity: &Identity,
        messages: &[EcdsaMessage],
        rng: &mut R,
    ) -> Result<Vec<EcdsaMessage>, EcdsaCeremonyError> {
        for msg in messages {
            if msg.sender == self.me || (msg.recipient != BROADCAST && msg.recipient != self.me) {
                continue;
            }
            let Some(from) = self.parties.iter().position(|p| *p == msg.sender) else {
                return Err(match self.plan.participant(msg.sender) {
                    Some(_) => EcdsaCeremonyError::NotAParty {
                        culprit: culprit(&self.plan, msg.sender),
                    },
                    None => EcdsaCeremonyError::UnknownParticipant { index: msg.sender },
                });
            };
            let body = msg.open(&self.plan, identity, self.step)?;
            let broadcast = msg.recipient == BROADCAST;
            let digest = tagged_hash("CoinPort/ecdsa-body", &[&body]);
            match self.seen.get(&(msg.sender, msg.sequence, broadcast)) {
                Some(prev) if *prev == digest => continue,
                Some(_) => {
                    return Err(EcdsaCeremonyError::Equivocation {
                        culprit: culprit(&self.plan, msg.sender),
                    })
                }
                None => {}
            }
            let items = decode_items(&body, self.lanes.len()).map_err(|e| {
                EcdsaCeremonyError::Malformed {
                    culprit: culprit(&self.plan, msg.sender),
                    reason: e.to_string(),
                }
            })?;
            let mut parsed = Vec::with_capacity(items.len());
            for (lane, bytes) in items {
                let m: M = from_cbor("protocol message", bytes).map_err(|e| {
                    EcdsaCeremonyError::Malformed {
                        culprit: culprit(&self.plan, msg.sender),
                        reason: format!("instance {lane}: {e}"),
                    }
                })?;
                parsed.push((lane, m));
            }
            self.seen
                .insert((msg.sender, msg.sequence, broadcast), digest);
            for (lane, m) in parsed {
                let id = self.next_msg_id;
                self.next_msg_id += 1;
                let target = &mut self.lanes[usize::from(lane)];
                if target.output.is_none() {
                    target.pending.push_back(Incoming {
                        id,
                        sender: from as u16,
                        msg_type: if broadcast {
                            MessageType::Broadcast
                        } else {
                            MessageType::P2P
                        },
                        msg: m,
                    });
                }
            }
        }
        self.pump(identity, rng)
    }

    /// Takes the lanes' outputs once every lane has finished.
    pub(crate) fn into_outputs(self) -> Result<Vec<O>, EcdsaCeremonyError> {
        let mut outs = Vec::with_capacity(self.lanes.len());
        for lane in self.lanes {
            outs.push(
                lane.output
                    .ok_or(EcdsaCeremonyError::NotFinished(self.step.name()))?,
            );
        }
        Ok(outs)
    }
}

fn protocol(lane: u16, reason: impl std::fmt::Display) -> EcdsaCeremonyError {
    EcdsaCeremonyError::Protocol {
        lane,
        reason: reason.to_string(),
    }
}

/// Body layout: `u16` item count, then per item `u16` lane and `u32`-length CBOR.
fn encode_items(items: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(items.len() as u16).to_be_bytes());
    for (lane, bytes) in items {
        out.extend_from_slice(&lane.to_be_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// Splits a body into `(lane, CBOR)` items, checking every bound before using it.
pub(crate) fn decode_items(body: &[u8], lanes: usize) -> Result<Vec<(u16, &[u8])>, DecodeError> {
    let mut pos = 0usize;
    let mut take = |n: usize, what: &'static str| -> Result<&[u8], DecodeError> {
        let available = body.len() - pos;
        if n > available {
            return Err(DecodeError::Truncated {
                what,
                needed: n,
                available,
            });
        }
        let s = &body[pos..pos + n];
        pos += n;
        Ok(s)
    };
    let count = u16::from_be_bytes(take(2, "item count")?.try_into().expect("2 bytes")) as usize;
    if count > MAX_PRESIGN_BATCH || count > lanes {
        return Err(DecodeError::TooMany {
            what: "protocol message",
            count,
            max: lanes.min(MAX_PRESIGN_BATCH),
        });
    }
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        let lane = u16::from_be_bytes(take(2, "instance")?.try_into().expect("2 bytes"));
        if usize::from(lane) >= lanes {
            return Err(DecodeError::invalid(
                "instance",
                format!("instance {lane} does not exist; the step has {lanes}"),
            ));
        }
        if items.iter().any(|(l, _)| *l == lane) {
            return Err(DecodeError::invalid(
                "instance",
                format!("instance {lane} appears twice"),
            ));
        }
        let len =
            u32::from_be_bytes(take(4, "protocol message")?.try_into().expect("4 bytes")) as usize;
        if len > MAX_CBOR_LEN {
            return Err(DecodeError::TooLong {
                what: "protocol message",
                len,
                max: MAX_CBOR_LEN,
            });
        }
        items.push((lane, take(len, "protocol message")?));
    }
    if pos != body.len() {
        return Err(DecodeError::TrailingBytes {
            what: "message body",
            count: body.len() - pos,
        });
    }
    Ok(items)
}
