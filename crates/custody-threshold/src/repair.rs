//! Repairable threshold scheme: a participant who lost its share recovers it with the help
//! of at least `t` others, none of whom learns anything beyond its own share.
//!
//! 1. Each helper runs [`Repair::start_helper`], which returns one encrypted delta message
//!    per other helper.
//! 2. Each helper runs [`RepairHelper::receive_deltas`] with the deltas addressed to it and
//!    sends the resulting encrypted sigma message to the lost participant.
//! 3. The lost participant runs [`Repair::recover`] with all helpers' sigmas and the public
//!    group key; the result is checked against the group's verifying share for it.

use std::fmt;

use frost::keys::repairable::{self, Delta, Sigma};
use frost_secp256k1_tr as frost;
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::ceremony::MessageKind;
use crate::ceremony::{collect, CeremonyError, CeremonyMessage, Culprit};
use crate::identity::Identity;
use crate::keys::{identifier, GroupKey, KeyShare};
use crate::plan::{CeremonyKind, CeremonyPlan, ParticipantIndex};

/// Entry points of the repair ceremony.
#[derive(Debug)]
pub struct Repair;

/// A helper after step 1, waiting for the other helpers' deltas.
pub struct RepairHelper {
    plan: CeremonyPlan,
    me: ParticipantIndex,
    lost: ParticipantIndex,
    helpers: Vec<ParticipantIndex>,
    own_delta: Delta,
}

impl fmt::Debug for RepairHelper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RepairHelper")
            .field("me", &self.me)
            .field("lost", &self.lost)
            .field("delta", &"<redacted>")
            .finish()
    }
}

fn repair_params(
    plan: &CeremonyPlan,
    group: &GroupKey,
) -> Result<(ParticipantIndex, Vec<ParticipantIndex>), CeremonyError> {
    let CeremonyKind::Repair {
        group_key,
        lost,
        helpers,
    } = plan.kind()
    else {
        return Err(CeremonyError::WrongPlanKind("expected a repair plan"));
    };
    if *group_key != group.public_key()
        || plan.threshold() != group.threshold()
        || plan.len() != group.participants()
    {
        return Err(CeremonyError::WrongGroup);
    }
    Ok((*lost, helpers.clone()))
}

impl Repair {
    /// Step 1 for a helper: splits its contribution into one delta per helper and returns
    /// the encrypted deltas for the others.
    ///
    /// # Errors
    /// [`CeremonyError::NotInPlan`] unless `identity` is one of the plan's helpers with
    /// the matching share; [`CeremonyError::WrongGroup`] for a share of another group.
    pub fn start_helper<R: RngCore + CryptoRng>(
        plan: &CeremonyPlan,
        identity: &Identity,
        share: &KeyShare,
        rng: &mut R,
    ) -> Result<(RepairHelper, Vec<CeremonyMessage>), CeremonyError> {
        let (lost, helpers) = repair_params(plan, share.group())?;
        let me = plan
            .position_of(&identity.card())
            .ok_or(CeremonyError::NotInPlan)?;
        if me != share.index() {
            return Err(CeremonyError::WrongGroup);
        }
        if !helpers.contains(&me) {
            return Err(CeremonyError::NotInPlan);
        }
        let ids: Vec<_> = helpers.iter().map(|h| identifier(*h)).collect();
        let mut deltas = repairable::repair_share_part1::<frost::Secp256K1Sha256TR, _>(
            &ids,
            share.key_package(),
            rng,
            identifier(lost),
        )
        .map_err(|e| CeremonyError::Protocol(e.to_string()))?;
        let own_delta = deltas
            .remove(&identifier(me))
            .ok_or_else(|| CeremonyError::Protocol("no delta for ourselves".into()))?;
        let mut messages = Vec::with_capacity(deltas.len());
        for h in helpers.iter().filter(|h| **h != me) {
            let delta = deltas
                .get(&identifier(*h))
                .ok_or_else(|| CeremonyError::Protocol("no delta for a helper".into()))?;
            let body = Zeroizing::new(delta.serialize());
            messages.push(CeremonyMessage::seal(
                plan,
                identity,
                MessageKind::RepairDelta,
                *h,
                &body,
                rng,
            )?);
        }
        Ok((
            RepairHelper {
                plan: plan.clone(),
                me,
                lost,
                helpers,
                own_delta,
            },
            messages,
        ))
    }

    /// Step 3 for the lost participant: combines all helpers' sigmas into its share and
    /// checks the result against the public group key.
    ///
    /// # Errors
    /// [`CeremonyError::Missing`] if a helper's sigma is absent; a
    /// [`CeremonyError::InvalidShare`] naming the helpers when the repaired share does not
    /// match (the sums do not reveal which helper was wrong).
    pub fn recover(
        plan: &CeremonyPlan,
        identity: &Identity,
        group: &GroupKey,
        messages: &[CeremonyMessage],
    ) -> Result<KeyShare, CeremonyError> {
        let (lost, helpers) = repair_params(plan, group)?;
        let me = plan
            .position_of(&identity.card())
            .ok_or(CeremonyError::NotInPlan)?;
        if me != lost {
            return Err(CeremonyError::WrongPlanKind(
                "this plan repairs another participant's share",
            ));
        }
        let plan_hash = plan.hash();
        let bodies = collect(
            plan,
            &plan_hash,
            identity,
            me,
            MessageKind::RepairSigma,
            &helpers,
            messages,
        )?;
        let mut sigmas = Vec::with_capacity(bodies.len());
        for (sender, body) in &bodies {
            sigmas.push(
                Sigma::deserialize(body).map_err(|e| CeremonyError::Malformed {
                    culprit: Culprit::new(plan, *sender),
                    reason: format!("sigma does not decode: {e}"),
                })?,
            );
        }
        let kp =
            repairable::repair_share_part3(&sigmas, identifier(me), group.public_key_package())
                .map_err(|e| CeremonyError::Protocol(e.to_string()))?;
        KeyShare::new(me, kp, group.clone()).map_err(|_| CeremonyError::InvalidShare {
            culprits: helpers.iter().map(|h| Culprit::new(plan, *h)).collect(),
        })
    }
}

impl RepairHelper {
    /// Step 2 for a helper: sums the deltas addressed to it (and its own) into a sigma and
    /// returns it encrypted to the lost participant.
    ///
    /// # Errors
    /// A [`CeremonyError`] naming the sender of a bad or missing delta.
    pub fn receive_deltas<R: RngCore + CryptoRng>(
        self,
        identity: &Identity,
        messages: &[CeremonyMessage],
        rng: &mut R,
    ) -> Result<CeremonyMessage, CeremonyError> {
        let plan_hash = self.plan.hash();
        let bodies = collect(
            &self.plan,
            &plan_hash,
            identity,
            self.me,
            MessageKind::RepairDelta,
            &self.helpers,
            messages,
        )?;
        let mut deltas = vec![self.own_delta];
        for (sender, body) in &bodies {
            deltas.push(
                Delta::deserialize(body).map_err(|e| CeremonyError::Malformed {
                    culprit: Culprit::new(&self.plan, *sender),
                    reason: format!("delta does not decode: {e}"),
                })?,
            );
        }
        let sigma = repairable::repair_share_part2(&deltas);
        let body = Zeroizing::new(sigma.serialize());
        CeremonyMessage::seal(
            &self.plan,
            identity,
            MessageKind::RepairSigma,
            self.lost,
            &body,
            rng,
        )
    }
}
