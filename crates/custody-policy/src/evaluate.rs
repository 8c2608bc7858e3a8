//! Offline evaluation of a withdrawal against a verified policy.

use std::fmt;

use crate::document::Action;
use crate::signed::VerifiedPolicy;

/// One payment of a withdrawal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    /// The destination address as the signer's PSBT inspection renders it.
    pub address: String,
    /// The amount, in satoshis.
    pub amount_sat: u64,
}

/// What a signer knows about a withdrawal from inspecting the transaction itself.
///
/// Build it from `custody_bitcoin::inspect::Inspection`: the outputs that are not ours
/// (change back to the wallet is not a payment), never from the coordinator's request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Withdrawal {
    /// The asset identifier, e.g. `"BTC"`.
    pub asset: String,
    /// Every payment leaving the wallet.
    pub payments: Vec<Payment>,
}

impl Withdrawal {
    /// The sum of all payments, or `None` on overflow.
    pub fn total_sat(&self) -> Option<u64> {
        self.payments
            .iter()
            .try_fold(0u64, |acc, p| acc.checked_add(p.amount_sat))
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

/// Why a policy denies a withdrawal. `Display` names the address or amount concerned.
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
    /// The withdrawal pays nobody.
    NoPayments,
    /// The sum of the payments overflows.
    AmountOverflow,
    /// A destination is not on the whitelist.
    UnknownDestination {
        /// The address.
        address: String,
        /// What would have been sent to it.
        amount_sat: u64,
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
    /// The total exceeds the per-transaction limit.
    OverTransactionLimit {
        /// The withdrawal's total.
        total_sat: u64,
        /// The limit.
        limit_sat: u64,
    },
    /// The first matching rule is a deny rule.
    DeniedByRule {
        /// The rule's position (0-based).
        rule_index: usize,
        /// The asset.
        asset: String,
        /// The withdrawal's total.
        total_sat: u64,
    },
    /// No rule matched (default deny).
    NoMatchingRule {
        /// The asset.
        asset: String,
        /// The withdrawal's total.
        total_sat: u64,
    },
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenyReason::PolicyNotYetEffective { effective_from, now } => write!(
                f,
                "policy takes effect at {effective_from}, it is now {now}"
            ),
            DenyReason::NoPayments => write!(f, "withdrawal pays no destination"),
            DenyReason::AmountOverflow => write!(f, "withdrawal total overflows"),
            DenyReason::UnknownDestination {
                address,
                amount_sat,
            } => write!(
                f,
                "destination {address} ({amount_sat} sat) is not on the whitelist"
            ),
            DenyReason::DestinationNotYetActive {
                address,
                active_from,
                now,
            } => write!(
                f,
                "destination {address} is whitelisted only from {active_from}, it is now {now}"
            ),
            DenyReason::OverTransactionLimit {
                total_sat,
                limit_sat,
            } => write!(
                f,
                "withdrawal total {total_sat} sat exceeds the per-transaction limit of {limit_sat} sat"
            ),
            DenyReason::DeniedByRule {
                rule_index,
                asset,
                total_sat,
            } => write!(f, "rule {rule_index} denies {total_sat} sat of {asset}"),
            DenyReason::NoMatchingRule { asset, total_sat } => write!(
                f,
                "no rule allows {total_sat} sat of {asset} (default deny)"
            ),
        }
    }
}

impl VerifiedPolicy {
    /// Evaluates `withdrawal` at unix time `now` (seconds): the policy must be in force,
    /// every destination whitelisted and active, the total within the per-transaction
    /// limit, and the first rule matching the asset and total must allow it. No rule
    /// matching means deny.
    pub fn evaluate(&self, withdrawal: &Withdrawal, now: u64) -> Verdict {
        let doc = self.document();
        let deny = |reason| Verdict::Deny { reason };
        if now < doc.effective_from {
            return deny(DenyReason::PolicyNotYetEffective {
                effective_from: doc.effective_from,
                now,
            });
        }
        if withdrawal.payments.is_empty() {
            return deny(DenyReason::NoPayments);
        }
        for p in &withdrawal.payments {
            match doc.whitelist_entry(&p.address) {
                None => {
                    return deny(DenyReason::UnknownDestination {
                        address: p.address.clone(),
                        amount_sat: p.amount_sat,
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
        let Some(total_sat) = withdrawal.total_sat() else {
            return deny(DenyReason::AmountOverflow);
        };
        if total_sat > doc.per_transaction_limit_sat {
            return deny(DenyReason::OverTransactionLimit {
                total_sat,
                limit_sat: doc.per_transaction_limit_sat,
            });
        }
        let asset = withdrawal.asset.clone();
        match doc
            .rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.matches(&withdrawal.asset, total_sat))
        {
            Some((rule_index, r)) => match r.action {
                Action::Allow { approvals } => Verdict::Allow {
                    required_approvals: approvals,
                    rule_index,
                },
                Action::Deny => deny(DenyReason::DeniedByRule {
                    rule_index,
                    asset,
                    total_sat,
                }),
            },
            None => deny(DenyReason::NoMatchingRule { asset, total_sat }),
        }
    }
}
