//! In-process drills: every participant of a ceremony run in one process, messages passed
//! in memory. For rehearsals, examples, tests and benchmarks; real ceremonies move the same
//! messages across the air gap one step at a time.

use rand_core::{CryptoRng, RngCore};

use crate::ceremony::{CeremonyError, CeremonyMessage};
use crate::identity::Identity;
use crate::keygen::{Keygen, KeygenOutput, KeygenRound1};
use crate::keys::{GroupKey, KeyShare};
use crate::plan::CeremonyPlan;
use crate::repair::Repair;

/// Runs a whole DKG (or, with `shares`, a refresh) for `identities`, which must be the
/// plan's participants in plan order.
///
/// # Errors
/// The first participant's [`CeremonyError`].
pub fn run_keygen<R: RngCore + CryptoRng>(
    plan: &CeremonyPlan,
    identities: &[Identity],
    shares: Option<Vec<KeyShare>>,
    rng: &mut R,
) -> Result<Vec<KeygenOutput>, CeremonyError> {
    let mut states: Vec<KeygenRound1> = Vec::with_capacity(identities.len());
    let mut round1 = Vec::with_capacity(identities.len());
    match shares {
        None => {
            for id in identities {
                let (s, m) = Keygen::start_dkg(plan, id, rng)?;
                states.push(s);
                round1.push(m);
            }
        }
        Some(shares) => {
            for (id, share) in identities.iter().zip(shares) {
                let (s, m) = Keygen::start_refresh(plan, id, share, rng)?;
                states.push(s);
                round1.push(m);
            }
        }
    }
    let mut states2 = Vec::with_capacity(identities.len());
    let mut round2: Vec<CeremonyMessage> = Vec::new();
    for (s, id) in states.into_iter().zip(identities) {
        let (s2, msgs) = s.receive_round1(id, &round1, rng)?;
        states2.push(s2);
        round2.extend(msgs);
    }
    let mut states3 = Vec::with_capacity(identities.len());
    let mut certs = Vec::with_capacity(identities.len());
    for (s, id) in states2.into_iter().zip(identities) {
        let (s3, cert) = s.receive_round2(id, &round2, rng)?;
        states3.push(s3);
        certs.push(cert);
    }
    states3
        .into_iter()
        .zip(identities)
        .map(|(s, id)| s.finish(id, &certs))
        .collect()
}

/// Runs a whole repair: `helpers` (identity and share, in the plan's helper order) help
/// `lost` recover its share of `group`.
///
/// # Errors
/// The first [`CeremonyError`].
pub fn run_repair<R: RngCore + CryptoRng>(
    plan: &CeremonyPlan,
    helpers: &[(&Identity, &KeyShare)],
    lost: &Identity,
    group: &GroupKey,
    rng: &mut R,
) -> Result<KeyShare, CeremonyError> {
    let mut states = Vec::with_capacity(helpers.len());
    let mut deltas = Vec::new();
    for (id, share) in helpers {
        let (s, msgs) = Repair::start_helper(plan, id, share, rng)?;
        states.push(s);
        deltas.extend(msgs);
    }
    let mut sigmas = Vec::with_capacity(helpers.len());
    for (s, (id, _)) in states.into_iter().zip(helpers) {
        sigmas.push(s.receive_deltas(id, &deltas, rng)?);
    }
    Repair::recover(plan, lost, group, &sigmas)
}
