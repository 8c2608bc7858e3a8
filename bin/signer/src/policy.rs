//! The signer's own copy of the withdrawal policy, and the re-check before signing.
//!
//! - `policy pin-admins` pins the admin quorum once, at setup (`policy-admins.json`:
//!   threshold and the admins' identity cards, hex);
//! - `policy install` adds a signed policy to `policies/`: the first one must be signed by
//!   the pinned quorum, each later one must pass [`verify_successor`] from the last one;
//! - every use re-verifies the whole chain from the pin, so a policy file changed on disk
//!   is refused, and enforces the newest policy already in force.
//!
//! Before `sign` (and in `inspect`), the coordinator's decision carried in the PSBT
//! (proprietary field `custody`/`0x02`) is checked with [`verify_decision`] against the
//! enforced policy, a withdrawal built from this signer's own inspection (payments: every
//! output that is not proved change, asset `BTC`, amounts in satoshis), the transaction
//! digest (the 32 bytes of the unsigned transaction's txid in internal byte order,
//! `Txid::to_byte_array`) and the system clock.
//!
//! A transaction whose every output is proved change pays no one: it is an *internal
//! transfer* ([`Withdrawal::is_internal`]), evaluated with amount 0 and no whitelist check.
//! It is how a withdrawal whose signing round was exported is voided: its coins go back to
//! the wallet in a transaction of their own (ADR 0031). An output to one of the wallet's
//! *receive* addresses stays a payment.

use std::fs;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bitcoin::hashes::Hash;
use bitcoin::psbt::Psbt;
use custody_airgap::file::{read_bounded, write_new};
use custody_bitcoin::{fields, Inspection, Ownership};
use custody_policy::{
    verify_decision, verify_successor, AdminQuorum, Decision, Payment, SignedPolicy,
    VerifiedPolicy, Withdrawal,
};
use custody_threshold::IdentityCard;
use serde_json::{json, Value};

use crate::home::Home;
use crate::output::Output;
use crate::{now, Refused};

/// The pinned admin quorum.
pub const ADMINS_FILE: &str = "policy-admins.json";
/// The installed signed policies, one file per version.
pub const POLICIES_DIR: &str = "policies";
/// The asset a Bitcoin withdrawal is checked as.
pub const ASSET: &str = "BTC";

const HOW_TO_INSTALL: &str = "pin the admin quorum once with `custody-signer policy pin-admins --threshold K --card ADMIN.card …`, then install the admins' signed policy with `custody-signer policy install --file POLICY`";

fn read_pin(home: &Home) -> Result<Option<AdminQuorum>> {
    let path = home.dir().join(ADMINS_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let bytes = read_bounded(&path)
        .with_context(|| format!("cannot read {}; check its permissions", path.display()))?;
    let v: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is damaged; pin the admins again", path.display()))?;
    let threshold = v["threshold"]
        .as_u64()
        .and_then(|t| u16::try_from(t).ok())
        .with_context(|| format!("{} has no threshold", path.display()))?;
    let admins = v["cards"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            c.as_str()
                .and_then(|h| hex::decode(h).ok())
                .and_then(|b| IdentityCard::decode(&b).ok())
                .with_context(|| format!("{} holds a damaged card", path.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(AdminQuorum { threshold, admins }))
}

/// The installed policies, verified from the pin, oldest first. Empty when none is
/// installed.
fn chain(home: &Home) -> Result<Vec<VerifiedPolicy>> {
    let dir = home.dir().join(POLICIES_DIR);
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let Some(pin) = read_pin(home)? else {
        return Err(Refused(format!(
            "policies are installed but no admin quorum is pinned; {HOW_TO_INSTALL}"
        ))
        .into());
    };
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("policy"))
        .collect();
    files.sort();
    let mut verified: Vec<VerifiedPolicy> = Vec::new();
    for f in files {
        let bytes = read_bounded(&f).with_context(|| format!("cannot read {}", f.display()))?;
        let signed = SignedPolicy::decode(&bytes).map_err(|e| {
            Refused(format!(
                "the installed policy {} is damaged: {e}",
                f.display()
            ))
        })?;
        let v = match verified.last() {
            None => signed.verify(&pin).map_err(|e| anyhow::anyhow!("{e}")),
            Some(prev) => verify_successor(prev, &signed).map_err(|e| anyhow::anyhow!("{e}")),
        }
        .map_err(|e| {
            Refused(format!(
                "the installed policy {} no longer verifies: {e}; reinstall the policies from the admins",
                f.display()
            ))
        })?;
        verified.push(v);
    }
    Ok(verified)
}

/// Whether any policy is installed (verified or not).
///
/// # Errors
/// When the installed policies do not verify.
pub(crate) fn installed(home: &Home) -> Result<bool> {
    Ok(!chain(home)?.is_empty())
}

/// The policy in force at `now`: the newest installed one that is effective.
///
/// # Errors
/// [`Refused`] when none is installed or none is in force yet.
pub(crate) fn enforced(home: &Home, at: u64) -> Result<VerifiedPolicy> {
    let chain = chain(home)?;
    if chain.is_empty() {
        return Err(Refused(format!(
            "no withdrawal policy is installed, so nothing can be signed; {HOW_TO_INSTALL}"
        ))
        .into());
    }
    chain
        .into_iter()
        .rev()
        .find(|p| p.is_effective(at))
        .ok_or_else(|| {
            Refused(
                "the installed policy is not in force yet (see `custody-signer policy show`); wait until it is".into(),
            )
            .into()
        })
}

/// The withdrawal as this signer sees it: every output that is not proved change. No
/// payments (every output proved change) is an internal transfer.
pub(crate) fn withdrawal_of(inspection: &Inspection) -> Withdrawal {
    Withdrawal {
        asset: ASSET.to_owned(),
        payments: inspection
            .outputs
            .iter()
            .filter(|o| !matches!(o.ownership, Ownership::Change { .. }))
            .map(|o| Payment {
                address: o
                    .address
                    .clone()
                    .unwrap_or_else(|| format!("script:{}", o.script_hex)),
                amount: u128::from(o.amount_sat),
            })
            .collect(),
    }
}

/// The transaction digest a decision must name: the unsigned txid, internal byte order.
pub(crate) fn transaction_digest(psbt: &Psbt) -> [u8; 32] {
    psbt.unsigned_tx.compute_txid().to_byte_array()
}

/// Checks the decision the PSBT carries against the enforced policy. Returns the summary
/// to show.
///
/// # Errors
/// [`Refused`] with the reason for anything out of policy.
pub(crate) fn check(home: &Home, psbt: &Psbt, inspection: &Inspection) -> Result<(Value, String)> {
    let at = now();
    let policy = enforced(home, at)?;
    let bytes = fields::decision(psbt)
        .map_err(|e| Refused(format!("the request's policy decision is malformed: {e}")))?
        .ok_or_else(|| {
            Refused(
                "the request carries no coordinator decision (PSBT field custody/0x02); ask the coordinator for an approved request".into(),
            )
        })?;
    let decision = Decision::decode(bytes).map_err(|e| {
        Refused(format!(
            "the request's policy decision does not decode: {e}"
        ))
    })?;
    let withdrawal = withdrawal_of(inspection);
    let approvals = verify_decision(
        &decision,
        &policy,
        &withdrawal,
        &transaction_digest(psbt),
        at,
    )
    .map_err(|e| {
        Refused(format!(
            "out of policy: {e}; nothing was signed: do not sign this request, tell the coordinator"
        ))
    })?;
    let doc = policy.document();
    let internal = withdrawal.is_internal();
    let data = json!({
        "withdrawal_id": decision.withdrawal_id,
        "policy_version": doc.version,
        "policy_hash": hex::encode(policy.hash()),
        "approvals": approvals,
        "hold_until": decision.hold_until,
        "internal_transfer": internal,
        "coordinator": doc.coordinator.fingerprint(),
        "verdict": "allowed",
    });
    let text = format!(
        "policy decision: {} {}{} allowed under policy version {} ({}), {approvals} valid approvals, hold passed, signed by coordinator {}",
        if internal { "internal transfer" } else { "withdrawal" },
        decision.withdrawal_id,
        if internal {
            " (nothing leaves the wallet but the fee)"
        } else {
            ""
        },
        doc.version,
        hex::encode(&policy.hash()[..8]),
        doc.coordinator.fingerprint()
    );
    Ok((data, text))
}

/// `policy pin-admins`.
pub(crate) fn pin_admins(
    home: &Home,
    threshold: u16,
    cards: &[PathBuf],
    replace: bool,
    out: &Output,
) -> Result<()> {
    home.card()?;
    let admins = cards
        .iter()
        .map(|p| {
            let bytes = read_bounded(p)
                .with_context(|| format!("cannot read {}; check the path", p.display()))?;
            IdentityCard::decode(&bytes)
                .with_context(|| format!("{} is not an identity card", p.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let quorum = AdminQuorum { threshold, admins };
    quorum
        .validate()
        .map_err(|e| anyhow::anyhow!("the admin quorum is not valid: {e}"))?;
    let path = home.dir().join(ADMINS_FILE);
    let mut note = String::new();
    if path.exists() {
        if !replace {
            return Err(Refused(format!(
                "an admin quorum is already pinned in {}; replacing it is a key-compromise procedure: pass --replace and confirm on the terminal",
                path.display()
            ))
            .into());
        }
        confirm_replace()?;
        let stamp = now();
        fs::rename(
            &path,
            home.dir().join(format!("{ADMINS_FILE}.replaced-{stamp}")),
        )
        .context("cannot move the old pin aside")?;
        let policies = home.dir().join(POLICIES_DIR);
        if policies.exists() {
            fs::rename(
                &policies,
                home.dir().join(format!("{POLICIES_DIR}.replaced-{stamp}")),
            )
            .context("cannot move the old policies aside")?;
            note = "\nthe installed policies were set aside: install the new admins' policy".into();
        }
    }
    let cards_hex: Vec<String> = quorum
        .admins
        .iter()
        .map(|c| hex::encode(c.encode()))
        .collect();
    let text = serde_json::to_string_pretty(&json!({
        "threshold": threshold,
        "cards": cards_hex,
    }))?;
    write_new(home.dir(), ADMINS_FILE, format!("{text}\n").as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    let admins: Vec<Value> = quorum
        .admins
        .iter()
        .map(|c| json!({"name": c.name(), "fingerprint": c.fingerprint()}))
        .collect();
    let mut list = String::new();
    for c in &quorum.admins {
        list.push_str(&format!("\n  {} {}", c.name(), c.fingerprint()));
    }
    out.record(
        "policy-admins",
        json!({"threshold": threshold, "admins": admins}),
        &format!(
            "pinned the admin quorum: {threshold} of {}; compare these fingerprints aloud with the admins:{list}{note}",
            quorum.admins.len()
        ),
    )
}

fn confirm_replace() -> Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!("replacing the pinned admins must be confirmed on a terminal; run this command on the signer's terminal");
    }
    {
        let mut err = std::io::stderr().lock();
        write!(
            err,
            "Replace the pinned admin quorum (the installed policies are set aside)? Type replace: "
        )?;
        err.flush()?;
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if line.trim() != "replace" {
        return Err(Refused("you declined; the pinned admins were kept".into()).into());
    }
    Ok(())
}

/// `policy install`.
pub(crate) fn install(home: &Home, file: &Path, out: &Output) -> Result<()> {
    let bytes = read_bounded(file)
        .with_context(|| format!("cannot read {}; check the path", file.display()))?;
    let signed = SignedPolicy::decode(&bytes)
        .map_err(|e| Refused(format!("{} is not a signed policy: {e}", file.display())))?;
    let Some(pin) = read_pin(home)? else {
        return Err(Refused(format!("no admin quorum is pinned; {HOW_TO_INSTALL}")).into());
    };
    let chain = chain(home)?;
    let verified = match chain.last() {
        None => signed.verify(&pin).map_err(|e| {
            Refused(format!(
                "the policy is not signed by the pinned admin quorum: {e}"
            ))
        })?,
        Some(current) => verify_successor(current, &signed).map_err(|e| {
            Refused(format!(
                "the policy is not a valid successor of installed version {}: {e}",
                current.document().version
            ))
        })?,
    };
    let doc = verified.document();
    if let Ok(group) = home.group() {
        if doc.network.as_str() != group.network().to_string() {
            return Err(Refused(format!(
                "the policy is for {}, this signer's wallet is on {}",
                doc.network.as_str(),
                group.network()
            ))
            .into());
        }
    }
    let dir = home.dir().join(POLICIES_DIR);
    crate::home::create_private_dir(&dir)?;
    let name = format!("{:020}.policy", doc.version);
    write_new(&dir, &name, &signed.encode())
        .with_context(|| format!("cannot install the policy as {}", dir.join(&name).display()))?;
    out.record(
        "policy-installed",
        json!({
            "version": doc.version,
            "hash": hex::encode(verified.hash()),
            "effective_from": doc.effective_from,
            "in_force": verified.is_effective(now()),
        }),
        &format!(
            "installed policy version {} ({}), in force from {}{}",
            doc.version,
            hex::encode(verified.hash()),
            doc.effective_from,
            if verified.is_effective(now()) {
                " (in force now)"
            } else {
                " (not yet in force)"
            }
        ),
    )
}

/// `policy show`.
pub(crate) fn show(home: &Home, out: &Output) -> Result<()> {
    let pin = read_pin(home)?;
    let chain = chain(home)?;
    let at = now();
    let mut text = match &pin {
        Some(q) => format!(
            "admin quorum: {} of {} ({})",
            q.threshold,
            q.admins.len(),
            q.admins
                .iter()
                .map(|c| format!("{} {}", c.name(), c.fingerprint()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => format!("admin quorum: not pinned; {HOW_TO_INSTALL}"),
    };
    let mut policies = Vec::new();
    let in_force = chain
        .iter()
        .rev()
        .find(|p| p.is_effective(at))
        .map(|p| *p.hash());
    for p in &chain {
        let d = p.document();
        let enforced = Some(*p.hash()) == in_force;
        policies.push(json!({
            "version": d.version,
            "hash": hex::encode(p.hash()),
            "network": d.network.as_str(),
            "effective_from": d.effective_from,
            "in_force": enforced,
            "coordinator": d.coordinator.fingerprint(),
            "approvers": d.approvers.iter().map(IdentityCard::fingerprint).collect::<Vec<_>>(),
            "whitelist": d.whitelist.iter().map(|w| json!({"address": w.address, "active_from": w.active_from})).collect::<Vec<_>>(),
            "limits": d.limits.iter().map(|l| json!({"asset": l.asset, "max_amount": l.max_amount.to_string()})).collect::<Vec<_>>(),
            "rules": d.rules.len(),
        }));
        text.push_str(&format!(
            "\npolicy version {} {}{}: coordinator {}, {} approvers, {} whitelisted destinations, {} rules",
            d.version,
            hex::encode(p.hash()),
            if enforced { " [IN FORCE]" } else { "" },
            d.coordinator.fingerprint(),
            d.approvers.len(),
            d.whitelist.len(),
            d.rules.len()
        ));
    }
    if chain.is_empty() {
        text.push_str("\nno policy installed: nothing can be signed");
    }
    out.record(
        "policy",
        json!({
            "admins_pinned": pin.is_some(),
            "policies": policies,
        }),
        &text,
    )
}

#[cfg(test)]
mod tests {
    use custody_bitcoin::inspect::OutputSummary;

    use super::*;

    fn inspection(outputs: &[Ownership]) -> Inspection {
        Inspection {
            network: "regtest".into(),
            txid: "00".repeat(32),
            spend_path: "key path",
            version: 2,
            lock_time: 0,
            inputs: Vec::new(),
            outputs: outputs
                .iter()
                .enumerate()
                .map(|(index, ownership)| OutputSummary {
                    index,
                    amount_sat: 1_000 * (index as u64 + 1),
                    address: Some(format!("bcrt1qoutput{index}")),
                    script_hex: String::new(),
                    ownership: *ownership,
                })
                .collect(),
            total_in_sat: 0,
            total_out_sat: 0,
            sent_sat: 0,
            to_self_sat: 0,
            fee_sat: 0,
            weight_wu: 0,
            vsize: 0,
            fee_rate_sat_vb: 0.0,
        }
    }

    #[test]
    fn only_proved_change_is_left_out_of_the_payments() {
        let all_change = withdrawal_of(&inspection(&[
            Ownership::Change { index: 0 },
            Ownership::Change { index: 3 },
        ]));
        assert!(all_change.is_internal());
        assert_eq!(all_change.asset, ASSET);
        // An output to one of the wallet's receive addresses is a payment, as before.
        let to_receive = withdrawal_of(&inspection(&[
            Ownership::Change { index: 0 },
            Ownership::Receive { index: 5 },
            Ownership::External,
        ]));
        assert!(!to_receive.is_internal());
        assert_eq!(
            to_receive.payments,
            vec![
                Payment {
                    address: "bcrt1qoutput1".into(),
                    amount: 2_000
                },
                Payment {
                    address: "bcrt1qoutput2".into(),
                    amount: 3_000
                },
            ]
        );
    }
}
