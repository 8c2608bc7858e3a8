//! Evaluation of a withdrawal against a verified policy: offline (what a signer can check)
//! and with history (what the coordinator checks in addition).

use std::fmt;

use crate::document::{Action, TimeWindow, VelocityLimit};
use crate::signed::VerifiedPolicy;

/// One payment of a withdrawal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    /// The destination address as the signer's transaction inspection renders it.
    pub address: String,
    /// The amount, in the asset's smallest unit (satoshis for `BTC`).
    pub amount: u128,
}

/// What a signer knows about a withdrawal from inspecting the transaction itself.
///
/// Build it from the signer's own inspection (for Bitcoin,
/// `custody_bitcoin::inspect::Inspection`: every output not proved change, since change
/// back to the wallet is not a payment), never from the coordinator's request.
///
/// A withdrawal without payments is an *internal transfer* ([`Withdrawal::is_internal`]):
/// a transaction that moves nothing out of the wallet, such as the replacement spend that
/// voids a withdrawal whose signing round was already exported
/// (`docs/adr/0031-voids-replace-a-round-that-must-not-complete.md`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Withdrawal {
    /// The asset identifier, e.g. `"BTC"`.
    pub asset: String,
    /// Every payment leaving the wallet; empty for an internal transfer.
    pub payments: Vec<Payment>,
}

impl Withdrawal {
    /// Whether this is an internal transfer: it pays no one outside the wallet (on Bitcoin
    /// every output is the wallet's proved change, on Ethereum a transfer to the wallet's
    /// own address), so only the network fee leaves the wallet.
    ///
    /// [`VerifiedPolicy::evaluate`] checks it as a withdrawal of amount 0 with no
    /// destinations, and velocity limits neither check nor count it.
    pub fn is_internal(&self) -> bool {
        self.payments.is_empty()
    }

    /// The sum of all payments in the asset's smallest unit, or `None` on overflow.
    pub fn total(&self) -> Option<u128> {
        self.payments
            .iter()
            .try_fold(0u128, |acc, p| acc.checked_add(p.amount))
    }
}

/// A withdrawal of the same wallet that the coordinator already approved or broadcast,
/// as input to the velocity limits.
///
/// Internal transfers ([`Withdrawal::is_internal`]) move nothing out of the wallet; listed
/// here (amount 0) they add nothing to a total and one to a count. The coordinator lists a
/// void as one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PastWithdrawal {
    /// Unix time (seconds) the coordinator records for it (its approval).
    pub time: u64,
    /// The asset identifier.
    pub asset: String,
    /// Its total, in the asset's smallest unit.
    pub amount: u128,
}

/// What the withdrawals of one asset inside one velocity window already used: the input
/// a velocity limit needs, whether it is summed from a list ([`WindowUsage::of`]) or by
/// the database that holds the history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowUsage {
    /// Their total, in the asset's smallest unit (saturating at `u128::MAX`).
    pub total: u128,
    /// How many there were.
    pub count: u64,
}

impl WindowUsage {
    /// What the withdrawals in `history` of `limit`'s asset with `time` in
    /// `(now - limit.window_secs, now]` used.
    pub fn of(history: &[PastWithdrawal], limit: &VelocityLimit, now: u64) -> WindowUsage {
        let mut usage = WindowUsage::default();
        for h in history.iter().filter(|h| {
            h.asset == limit.asset
                && now
                    .checked_sub(h.time)
                    .is_some_and(|age| age < limit.window_secs)
        }) {
            usage.total = usage.total.saturating_add(h.amount);
            usage.count += 1;
        }
        usage
    }
}

/// The policy's answer for a withdrawal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The withdrawal may proceed once `required_approvals` distinct humans approved it.
    Allow {
        /// Distinct approvals required.
        required_approvals: u16,
        /// The position of the rule that matched (0-based).
        rule_index: usize,
    },
    /// The withdrawal must not be signed.
    Deny {
        /// Why.
        reason: DenyReason,
    },
}

/// Why a policy denies a withdrawal. `Display` names the address, amount, window or limit
/// concerned. Amounts are in the asset's smallest unit.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DenyReason {
    /// The policy is not yet in force.
    PolicyNotYetEffective {
        /// When it takes effect.
        effective_from: u64,
        /// The time of evaluation.
        now: u64,
    },
    /// The sum of the payments overflows.
    AmountOverflow,
    /// A destination is not on the whitelist.
    UnknownDestination {
        /// The address.
        address: String,
        /// What would have been sent to it.
        amount: u128,
    },
    /// A destination is whitelisted but its activation time has not come.
    DestinationNotYetActive {
        /// The address.
        address: String,
        /// When the entry becomes active.
        active_from: u64,
        /// The time of evaluation.
        now: u64,
    },
    /// The policy sets no per-transaction limit for the asset, so it may not be withdrawn.
    NoLimitForAsset {
        /// The asset.
        asset: String,
    },
    /// The total exceeds the asset's per-transaction limit.
    OverTransactionLimit {
        /// The asset.
        asset: String,
        /// The withdrawal's total.
        total: u128,
        /// The limit.
        limit: u128,
    },
    /// The first matching rule is a deny rule.
    DeniedByRule {
        /// The rule's position (0-based).
        rule_index: usize,
        /// The asset.
        asset: String,
        /// The withdrawal's total.
        total: u128,
    },
    /// No rule matched now, but an allow rule covers the asset and amount inside its time
    /// window (the first such rule is named).
    OutsideTimeWindow {
        /// The rule's position (0-based).
        rule_index: usize,
        /// Its window.
        window: TimeWindow,
        /// The time of evaluation.
        now: u64,
    },
    /// No rule matched (default deny).
    NoMatchingRule {
        /// The asset.
        asset: String,
        /// The withdrawal's total (0 for an internal transfer).
        total: u128,
        /// Whether the withdrawal is an internal transfer ([`Withdrawal::is_internal`]):
        /// the policy has no rule whose amount range includes 0 for the asset.
        internal_transfer: bool,
    },
    /// The withdrawal would take the total sent within a velocity window over its limit.
    VelocityTotalExceeded {
        /// The asset.
        asset: String,
        /// The window, in seconds.
        window_secs: u64,
        /// The most that may leave within the window.
        max_total: u128,
        /// What already left within the window.
        used: u128,
        /// The withdrawal's total.
        requested: u128,
    },
    /// The withdrawal would exceed the number of withdrawals allowed within a velocity
    /// window.
    VelocityCountExceeded {
        /// The asset.
        asset: String,
        /// The window, in seconds.
        window_secs: u64,
        /// The most withdrawals within the window.
        max_count: u32,
        /// Withdrawals already within the window.
        used: u64,
    },
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenyReason::PolicyNotYetEffective { effective_from, now } => write!(
                f,
                "policy takes effect at {effective_from}, it is now {now}"
            ),
            DenyReason::AmountOverflow => write!(f, "withdrawal total overflows"),
            DenyReason::UnknownDestination { address, amount } => write!(
                f,
                "destination {address} (amount {amount}) is not on the whitelist"
            ),
            DenyReason::DestinationNotYetActive {
                address,
                active_from,
                now,
            } => write!(
                f,
                "destination {address} is whitelisted only from {active_from}, it is now {now}"
            ),
            DenyReason::NoLimitForAsset { asset } => write!(
                f,
                "policy sets no per-transaction limit for {asset}, so it cannot be withdrawn"
            ),
            DenyReason::OverTransactionLimit {
                asset,
                total,
                limit,
            } => write!(
                f,
                "withdrawal total {total} {asset} exceeds the per-transaction limit of {limit} {asset}"
            ),
            DenyReason::DeniedByRule {
                rule_index,
                asset,
                total,
            } => write!(f, "rule {rule_index} denies {total} {asset}"),
            DenyReason::OutsideTimeWindow {
                rule_index,
                window,
                now,
            } => write!(
                f,
                "rule {rule_index} applies only {window}, it is now {now} (outside the window)"
            ),
            DenyReason::NoMatchingRule {
                asset,
                internal_transfer: true,
                ..
            } => write!(
                f,
                "no rule allows an internal transfer of {asset} (amount 0, nothing leaves the \
                 wallet; default deny): the policy needs a rule for {asset} whose amount \
                 range includes 0"
            ),
            DenyReason::NoMatchingRule { asset, total, .. } => write!(
                f,
                "no rule allows {total} {asset} (default deny)"
            ),
            DenyReason::VelocityTotalExceeded {
                asset,
                window_secs,
                max_total,
                used,
                requested,
            } => write!(
                f,
                "velocity limit of {max_total} {asset} per {window_secs} s exceeded: \
                 {used} {asset} already sent in the window, {requested} {asset} requested"
            ),
            DenyReason::VelocityCountExceeded {
                asset,
                window_secs,
                max_count,
                used,
            } => write!(
                f,
                "velocity limit of {max_count} {asset} withdrawals per {window_secs} s exceeded: \
                 {used} already in the window"
            ),
        }
    }
}

impl VerifiedPolicy {
    /// Evaluates `withdrawal` at unix time `now` (seconds) with what a signer can check
    /// offline: the policy must be in force, every destination whitelisted and active, the
    /// total within the asset's per-transaction limit (no limit means deny), and the first
    /// rule matching the asset, total and time must allow it. No rule matching means deny.
    ///
    /// An internal transfer ([`Withdrawal::is_internal`]) has no destinations to check and
    /// a total of 0; the asset still needs a per-transaction limit, and the first rule
    /// matching the asset, amount 0 and time decides as for any withdrawal. Admins thus
    /// choose with a rule whose range includes 0 how many approvals an internal transfer
    /// needs; a policy without one denies internal transfers
    /// ([`DenyReason::NoMatchingRule`] with `internal_transfer` set).
    ///
    /// Velocity limits are not checked here; see [`VerifiedPolicy::evaluate_with_history`].
    pub fn evaluate(&self, withdrawal: &Withdrawal, now: u64) -> Verdict {
        let doc = self.document();
        let deny = |reason| Verdict::Deny { reason };
        if now < doc.effective_from {
            return deny(DenyReason::PolicyNotYetEffective {
                effective_from: doc.effective_from,
                now,
            });
        }
        for p in &withdrawal.payments {
            match doc.whitelist_entry(&p.address) {
                None => {
                    return deny(DenyReason::UnknownDestination {
                        address: p.address.clone(),
                        amount: p.amount,
                    })
                }
                Some(e) if e.active_from > now => {
                    return deny(DenyReason::DestinationNotYetActive {
                        address: p.address.clone(),
                        active_from: e.active_from,
                        now,
                    })
                }
                Some(_) => {}
            }
        }
        let Some(total) = withdrawal.total() else {
            return deny(DenyReason::AmountOverflow);
        };
        let asset = withdrawal.asset.clone();
        let Some(limit) = doc.limit(&asset) else {
            return deny(DenyReason::NoLimitForAsset { asset });
        };
        if total > limit {
            return deny(DenyReason::OverTransactionLimit {
                asset,
                total,
                limit,
            });
        }
        let mut rules = doc.rules.iter().enumerate();
        match rules.find(|(_, r)| r.matches(&asset, total, now)) {
            Some((rule_index, r)) => match r.action {
                Action::Allow { approvals } => Verdict::Allow {
                    required_approvals: approvals,
                    rule_index,
                },
                Action::Deny => deny(DenyReason::DeniedByRule {
                    rule_index,
                    asset,
                    total,
                }),
            },
            None => {
                // Name the window that kept the first covering rule from matching, so the
                // operator knows the withdrawal would pass at another time.
                let closed = doc.rules.iter().enumerate().find_map(|(i, r)| {
                    let allows = matches!(r.action, Action::Allow { .. });
                    r.window
                        .filter(|_| allows && r.covers(&asset, total))
                        .map(|window| (i, window))
                });
                match closed {
                    Some((rule_index, window)) => deny(DenyReason::OutsideTimeWindow {
                        rule_index,
                        window,
                        now,
                    }),
                    None => deny(DenyReason::NoMatchingRule {
                        asset,
                        total,
                        internal_transfer: withdrawal.is_internal(),
                    }),
                }
            }
        }
    }

    /// The coordinator's full check: [`VerifiedPolicy::evaluate`], then every velocity
    /// limit of the withdrawal's asset against `history`.
    ///
    /// `history` holds the withdrawals of the same wallet that were approved or broadcast
    /// (any asset; other assets are ignored). A limit counts those with `time` in
    /// `(now - window_secs, now]`; the new withdrawal must keep both the count and the
    /// total of that window, itself included, within the limit.
    ///
    /// An internal transfer ([`Withdrawal::is_internal`]) moves nothing out of the wallet:
    /// it gets the offline verdict alone, whatever the history. Whether it appears in later
    /// histories is the caller's choice: with amount 0 it adds nothing to a total, only one
    /// to a count (the coordinator leaves internal transfers out of its histories).
    pub fn evaluate_with_history(
        &self,
        withdrawal: &Withdrawal,
        now: u64,
        history: &[PastWithdrawal],
    ) -> Verdict {
        self.evaluate_with_usage(withdrawal, now, |limit| {
            WindowUsage::of(history, limit, now)
        })
    }

    /// [`VerifiedPolicy::evaluate_with_history`] with each velocity limit's usage given
    /// directly: `usage` is asked once for each limit of the withdrawal's asset (only when
    /// the offline check allows it) and answers what the wallet's approved or broadcast
    /// withdrawals inside that limit's window used, as [`WindowUsage::of`] would from
    /// their list. For a coordinator whose database sums the history instead of listing
    /// it. `usage` is never asked for an internal transfer ([`Withdrawal::is_internal`]).
    pub fn evaluate_with_usage(
        &self,
        withdrawal: &Withdrawal,
        now: u64,
        mut usage: impl FnMut(&VelocityLimit) -> WindowUsage,
    ) -> Verdict {
        let verdict = self.evaluate(withdrawal, now);
        let Verdict::Allow { .. } = verdict else {
            return verdict;
        };
        if withdrawal.is_internal() {
            // Velocity limits bound what leaves the wallet; an internal transfer spends only
            // the fee, which the signers cap themselves.
            return verdict;
        }
        // evaluate() allowed it, so the total does not overflow.
        let requested = withdrawal.total().unwrap_or(u128::MAX);
        let asset = &withdrawal.asset;
        for v in self
            .document()
            .velocity
            .iter()
            .filter(|v| &v.asset == asset)
        {
            let WindowUsage {
                total: used_total,
                count: used_count,
            } = usage(v);
            if used_count >= u64::from(v.max_count) {
                return Verdict::Deny {
                    reason: DenyReason::VelocityCountExceeded {
                        asset: asset.clone(),
                        window_secs: v.window_secs,
                        max_count: v.max_count,
                        used: used_count,
                    },
                };
            }
            if used_total
                .checked_add(requested)
                .is_none_or(|sum| sum > v.max_total)
            {
                return Verdict::Deny {
                    reason: DenyReason::VelocityTotalExceeded {
                        asset: asset.clone(),
                        window_secs: v.window_secs,
                        max_total: v.max_total,
                        used: used_total,
                        requested,
                    },
                };
            }
        }
        verdict
    }
}
