//! Accelerations: a child transaction that pays for a Bitcoin withdrawal sent but stuck
//! unconfirmed (child pays for parent; ADR 0032).
//!
//! The coordinator holds no key, so speeding up a transaction means signing a new one in
//! the signing room. Replacing the stuck transaction (BIP125) would change the txid the
//! customer was told and every approval bound; a *child* leaves the withdrawal as it is:
//! it spends the withdrawal's change output (and more of the wallet's coins when that is
//! too small) back to a new change address of the wallet, paying enough fee that the pair
//! reaches the rate the operator asked for, so miners take both. The child is a
//! withdrawal of its own (`accelerates` names the one it pays for) that moves nothing out
//! of the wallet: the policy sees an internal transfer, and approvals, the signing round,
//! the answers and the broadcast gates apply to it unchanged.

use std::str::FromStr;

use base64::Engine as _;
use bitcoin::psbt::Psbt;
use bitcoin::{Amount, FeeRate, OutPoint, Weight};
use custody_bitcoin::{
    BuildError, BuildOptions, InspectError, InspectPolicy, Ownership, WalletUtxo,
};
use custody_policy::{Verdict, Withdrawal};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::accounts::Principal;
use crate::app::App;
use crate::db::{opt_text, text, Tx};
use crate::error::ApiError;
use crate::withdrawals::{self, load, Row_, Val};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// How many more of the wallet's coins a child may add when the change output alone does
/// not cover its fee.
const MAX_EXTRA_COINS: usize = 8;

/// An acceleration (`POST /v1/withdrawals/{id}/accelerate`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
pub struct NewAcceleration {
    /// The fee rate, in sat/vB, the stuck transaction and its child are to reach together
    /// (required; above what the stuck transactions pay now).
    #[serde(default)]
    pub fee_rate_sat_vb: Option<u64>,
    /// Why, for the audit log (required; one line, at most 500 characters).
    #[serde(default)]
    pub reason: Option<String>,
}

/// How many unconfirmed transactions a child may depend on: nodes refuse a transaction
/// with more than 24 unconfirmed ancestors (`-limitancestorcount`, 25 with itself).
const MAX_ANCESTORS: usize = 24;

/// A Bitcoin withdrawal's PSBT and what it does, as the signers see it.
fn inspected(app: &App, w: &Row_) -> Result<(Psbt, custody_bitcoin::Inspection), ApiError> {
    let wallet = app.wallet()?;
    let psbt = Psbt::deserialize(
        &B64.decode(w.psbt.clone().unwrap_or_default())
            .map_err(ApiError::internal)?,
    )
    .map_err(ApiError::internal)?;
    let shown = custody_bitcoin::inspect_psbt(&wallet.descriptor, &psbt, &InspectPolicy::default())
        .map_err(|e| ApiError::internal(format!("withdrawal {} does not inspect: {e}", w.id)))?;
    Ok((psbt, shown))
}

/// A withdrawal sent and not yet confirmed that a transaction depends on.
pub(crate) struct Unconfirmed {
    /// The withdrawal.
    pub(crate) row: Row_,
    fee: Amount,
    weight: Weight,
    /// The withdrawals among these whose outputs it spends.
    parents: Vec<String>,
}

/// The withdrawals, sent and unconfirmed, whose transactions `w`'s transaction depends on
/// through its inputs, in turn (a coin from an unconfirmed change output, a child's
/// parent), and `w` itself: parents before the transactions that spend them, `w` last.
///
/// # Errors
/// 409 `chain_too_long` when they are more than `limit`; storage failure.
pub(crate) async fn unconfirmed_ancestors(
    tx: &mut Tx<'_>,
    app: &App,
    w: &Row_,
    limit: usize,
) -> Result<Vec<Unconfirmed>, ApiError> {
    // The wallet's sent, unconfirmed transactions, once (the in-flight partial index; the
    // `IN` term lets SQLite use it).
    let in_flight = sqlx::query(
        "SELECT id, txid FROM withdrawals WHERE state IN ('broadcasting', 'broadcast') \
         AND state = 'broadcast' AND eth_intent IS NULL AND txid IS NOT NULL",
    )
    .fetch_all(&mut **tx)
    .await?;
    let mut by_txid = std::collections::HashMap::new();
    for r in &in_flight {
        by_txid.insert(text(r, "txid")?, text(r, "id")?);
    }
    let mut found: Vec<Unconfirmed> = Vec::new();
    let mut queue = vec![w.clone()];
    while let Some(row) = queue.pop() {
        if found.iter().any(|u| u.row.id == row.id) {
            continue;
        }
        if found.len() >= limit {
            return Err(ApiError::conflict(
                "chain_too_long",
                format!(
                    "more than {limit} unconfirmed transactions of this wallet are chained here; nodes relay no child of them"
                ),
            ));
        }
        let (psbt, shown) = inspected(app, &row)?;
        // Nodes rate a package over each transaction's whole virtual bytes.
        let fee = Amount::from_sat(shown.fee_sat);
        let weight = Weight::from_vb(shown.vsize).unwrap_or(Weight::MAX);
        let mut parents: Vec<String> = psbt
            .unsigned_tx
            .input
            .iter()
            .filter_map(|i| by_txid.get(&i.previous_output.txid.to_string()).cloned())
            .collect();
        parents.sort_unstable();
        parents.dedup();
        for p in &parents {
            if !found.iter().any(|u| &u.row.id == p) {
                queue.push(load(tx, p).await?);
            }
        }
        found.push(Unconfirmed {
            row,
            fee,
            weight,
            parents,
        });
    }
    // Parents before the transactions that spend them.
    let mut ordered: Vec<Unconfirmed> = Vec::with_capacity(found.len());
    while !found.is_empty() {
        let ready = found
            .iter()
            .position(|u| {
                u.parents.iter().all(|p| {
                    ordered.iter().any(|o| &o.row.id == p) || !found.iter().any(|f| &f.row.id == p)
                })
            })
            .ok_or_else(|| {
                ApiError::internal("unconfirmed withdrawals spend each other in a cycle")
            })?;
        ordered.push(found.remove(ready));
    }
    Ok(ordered)
}

/// The accelerations of `id` that are not cancelled, failed or rejected: id and state.
///
/// # Errors
/// Storage failure.
pub(crate) async fn live_children(
    tx: &mut Tx<'_>,
    id: &str,
) -> Result<Vec<(String, String)>, ApiError> {
    let rows = sqlx::query(
        "SELECT id, state FROM withdrawals WHERE accelerates = $1 \
         AND state NOT IN ('cancelled', 'failed', 'rejected') ORDER BY created_at, id",
    )
    .bind(id)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| Ok((text(r, "id")?, text(r, "state")?)))
        .collect()
}

/// Starts the acceleration of a Bitcoin withdrawal that was sent and sits unconfirmed (the
/// body of `POST /v1/withdrawals/{id}/accelerate`; operators and admins, signed in, with a
/// fee rate and a reason). The child is a withdrawal of its own, requested by the staff
/// member: it spends the withdrawal's change output, and more of the wallet's coins when
/// that alone is too small, to a new change address, with the fee that brings the
/// withdrawal's transaction (and any unconfirmed acceleration it is itself the child of)
/// and the child together to the asked rate. It needs the approvals the policy asks for
/// an internal transfer of BTC, then goes through the same round, answers and broadcast
/// gates as any withdrawal. Broadcasting it sends the stuck transactions again first.
///
/// # Errors
/// 403 for anyone but operators and admins signed in; 400 without a reason or a fee rate;
/// 409 when the withdrawal is not a Bitcoin one sent and unconfirmed, has no change
/// output, its change is taken, an acceleration of it is under way, the asked rate is not
/// above what it pays, or the wallet's coins do not cover the fee; 422 when the child's
/// fee is beyond what a signer accepts or the policy allows no internal transfer.
pub async fn accelerate(
    tx: &mut Tx<'_>,
    app: &App,
    who: &Principal,
    id: &str,
    req: &NewAcceleration,
) -> Result<(axum::http::StatusCode, serde_json::Value), ApiError> {
    let now = app.now();
    withdrawals::staff_signed_in(who, "accelerates", "accelerate")?;
    let reason = withdrawals::one_line_reason(req.reason.as_deref())?
        .ok_or_else(|| ApiError::bad_request("an acceleration needs a reason (it is audited)"))?;
    let asked = req
        .fee_rate_sat_vb
        .filter(|r| *r > 0)
        .ok_or_else(|| {
            ApiError::bad_request(
                "an acceleration needs fee_rate_sat_vb: the rate, in sat/vB, the stuck transaction and its child are to reach together",
            )
        })?;
    let limit = InspectPolicy::default().max_fee_rate.to_sat_per_vb_floor();
    if asked > limit {
        return Err(ApiError::bad_request(format!(
            "fee rate {asked} sat/vB is above the {limit} sat/vB a signer accepts"
        )));
    }
    let target = FeeRate::from_sat_per_vb(asked)
        .ok_or_else(|| ApiError::bad_request(format!("fee rate {asked} sat/vB is out of range")))?;
    let w = load(tx, id).await?;
    if w.is_eth() {
        return Err(ApiError::conflict(
            "not_bitcoin",
            "an Ethereum transaction has no child to pay for it",
        ));
    }
    if let Some(original) = &w.voids {
        return Err(ApiError::conflict(
            "is_a_void",
            format!(
                "withdrawal {} is the void of {original}; a void is not accelerated (if its original is mined first, a child of it could never confirm)",
                w.id
            ),
        ));
    }
    if w.state != "broadcast" {
        return Err(ApiError::conflict(
            "not_broadcast",
            format!(
                "withdrawal is {}; only one that was sent and is not yet confirmed can be accelerated",
                w.state
            ),
        ));
    }
    if let Some((c, state)) = live_children(tx, &w.id).await?.into_iter().next() {
        return Err(ApiError::conflict(
            "acceleration_exists",
            format!(
                "withdrawal {} is already being accelerated by {c} ({state}); once that one is sent, accelerate it to pay more",
                w.id
            ),
        ));
    }
    // The stuck withdrawal's version moves, so its confirmation recorded meanwhile (which
    // cancels children not yet needed) and this request cannot both pass unseen.
    let bumped = sqlx::query(
        "UPDATE withdrawals SET version = version + 1, updated_at = $1 \
         WHERE id = $2 AND state = 'broadcast' AND version = $3",
    )
    .bind(now)
    .bind(&w.id)
    .bind(w.version)
    .execute(&mut **tx)
    .await?;
    if bumped.rows_affected() != 1 {
        return Err(withdrawals::concurrent_change(&w.id));
    }
    let wallet = app.wallet()?.clone();
    let chain = unconfirmed_ancestors(tx, app, &w, MAX_ANCESTORS).await?;
    let ancestors_fee = chain.iter().map(|u| u.fee).sum::<Amount>();
    let ancestors_weight = chain.iter().fold(Weight::ZERO, |sum, u| sum + u.weight);
    // What the stuck transactions pay now, for the log.
    let paying = ancestors_fee.to_sat() as f64 * 4.0 / ancestors_weight.to_wu().max(1) as f64;
    // The withdrawal's change output: the largest output proved to be the wallet's change.
    let (psbt, shown) = inspected(app, &w)?;
    let change = shown
        .outputs
        .iter()
        .filter_map(|o| match o.ownership {
            Ownership::Change { index } => Some((o.index, index, o.amount_sat)),
            _ => None,
        })
        .max_by_key(|(_, _, amount)| *amount)
        .ok_or_else(|| {
            ApiError::conflict(
                "no_change",
                format!(
                    "withdrawal {} pays out everything it spends: it has no change output a child could spend",
                    w.id
                ),
            )
        })?;
    let (vout, change_index, _) = change;
    let txid = bitcoin::Txid::from_str(w.txid.as_deref().unwrap_or_default())
        .map_err(ApiError::internal)?;
    let outpoint = OutPoint {
        txid,
        vout: u32::try_from(vout).map_err(ApiError::internal)?,
    };
    let txout = psbt
        .unsigned_tx
        .output
        .get(vout)
        .cloned()
        .ok_or_else(|| ApiError::internal("change output out of range"))?;
    let child_id = Uuid::new_v4().to_string();
    // Take the change output for the child, adding it to the coin set if the chain sync
    // has not brought it yet; a withdrawal that took it first keeps it.
    let taken = sqlx::query(
        "INSERT INTO utxos (outpoint, amount, script, branch, address_index, reserved_by) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (outpoint) DO UPDATE SET reserved_by = excluded.reserved_by \
         WHERE utxos.reserved_by IS NULL AND utxos.spent_by IS NULL",
    )
    .bind(outpoint.to_string())
    .bind(i64::try_from(txout.value.to_sat()).map_err(ApiError::internal)?)
    .bind(txout.script_pubkey.to_hex_string())
    .bind(i64::from(custody_bitcoin::Branch::Change.number()))
    .bind(i64::from(change_index))
    .bind(child_id.clone())
    .execute(&mut **tx)
    .await?;
    if taken.rows_affected() != 1 {
        let by = sqlx::query("SELECT reserved_by, spent_by FROM utxos WHERE outpoint = $1")
            .bind(outpoint.to_string())
            .fetch_optional(&mut **tx)
            .await?;
        let by = match &by {
            Some(r) => opt_text(r, "spent_by")?.or(opt_text(r, "reserved_by")?),
            None => None,
        };
        let by = by.as_deref().unwrap_or("unknown");
        return Err(ApiError::conflict(
            "change_taken",
            format!(
                "the change output {outpoint} of withdrawal {} is already taken by withdrawal {by}: accelerate {by} once it is sent (a child of it pays for both)",
                w.id
            ),
        ));
    }
    let mut coins = vec![WalletUtxo {
        outpoint,
        txout,
        branch: custody_bitcoin::Branch::Change,
        index: change_index,
        prev_tx: None,
    }];
    let change_to = withdrawals::claim_change_index(tx, app, &wallet).await?;
    wallet.prepare_change_after(change_to);
    let options = BuildOptions::new(target, change_to);
    // More coins, largest first, only while the change alone does not cover the fee (or
    // leaves the child alone above the rate a signer accepts). Never an output of another
    // of the wallet's transactions that may be unconfirmed — sent, or signed and perhaps
    // sent by whoever holds the answers: the package would be larger than counted. Coins
    // from outside are in the set only once confirmed (`withdrawals::sync_utxos`).
    let unsettled: std::collections::HashSet<String> = sqlx::query(
        // Customers' withdrawals through the velocity index, voids and accelerations
        // through their own (partial) indexes.
        "SELECT txid FROM withdrawals WHERE asset = $1 AND voids IS NULL AND accelerates IS NULL \
         AND state IN ('signing', 'signed', 'broadcasting', 'broadcast') AND txid IS NOT NULL \
         UNION ALL SELECT txid FROM withdrawals WHERE voids IS NOT NULL AND asset = $1 \
         AND state IN ('signing', 'signed', 'broadcasting', 'broadcast') AND txid IS NOT NULL \
         UNION ALL SELECT txid FROM withdrawals WHERE accelerates IS NOT NULL AND voids IS NULL \
         AND asset = $1 AND state IN ('signing', 'signed', 'broadcasting', 'broadcast') \
         AND txid IS NOT NULL",
    )
    .bind(withdrawals::ASSET_BTC)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|r| text(r, "txid"))
    .collect::<Result<_, _>>()?;
    let candidates = sqlx::query(
        "SELECT outpoint, amount, script, branch, address_index FROM utxos \
         WHERE reserved_by IS NULL AND spent_by IS NULL ORDER BY amount DESC, outpoint LIMIT $1",
    )
    .bind(i64::try_from(MAX_EXTRA_COINS * 8).unwrap_or(64))
    .fetch_all(&mut **tx)
    .await?;
    let mut extra = Vec::with_capacity(MAX_EXTRA_COINS);
    for r in &candidates {
        let outpoint = text(r, "outpoint")?;
        let from = outpoint.split(':').next().unwrap_or_default();
        if !unsettled.contains(from) && extra.len() < MAX_EXTRA_COINS {
            extra.push(withdrawals::wallet_utxo(r)?);
        }
    }
    let mut extra = extra.into_iter();
    let inspect = |psbt: &Psbt| {
        custody_bitcoin::inspect_psbt(&wallet.descriptor, psbt, &InspectPolicy::default())
    };
    let (child, child_shown) = loop {
        let built = custody_bitcoin::build_child(
            &wallet.descriptor,
            &coins,
            ancestors_fee,
            ancestors_weight,
            &options,
        );
        let shown = built.as_ref().ok().map(inspect);
        let more = matches!(built, Err(BuildError::InsufficientFunds { .. }))
            || matches!(shown, Some(Err(InspectError::FeeRateTooHigh { .. })));
        if more {
            if let Some(coin) = extra.next() {
                coins.push(coin);
                continue;
            }
        }
        match (built, shown) {
            (Ok(child), Some(Ok(shown))) => break (child, shown),
            // What the signers would refuse is refused here, not in the signing room.
            (Ok(_), Some(Err(e))) => {
                return Err(ApiError::refused(
                    "fee_too_high",
                    format!("the child would be refused by the signers: {e}"),
                ))
            }
            (Ok(_), None) => return Err(ApiError::internal("child built but not inspected")),
            (Err(BuildError::InsufficientFunds { missing }), _) => {
                return Err(ApiError::conflict(
                    "insufficient_funds",
                    format!(
                        "the change output and the wallet's {MAX_EXTRA_COINS} largest free confirmed coins are {missing} short of the child's fee"
                    ),
                ))
            }
            (Err(e @ BuildError::PackageAlreadyFaster { .. }), _) => {
                return Err(ApiError::conflict("not_faster", e.to_string()))
            }
            (Err(e), _) => {
                return Err(ApiError::conflict(
                    "cannot_build",
                    format!("cannot build the child: {e}"),
                ))
            }
        }
    };
    let added: Vec<String> = coins[1..].iter().map(|c| c.outpoint.to_string()).collect();
    if !added.is_empty() {
        let mut sql = String::from("UPDATE utxos SET reserved_by = $1 WHERE reserved_by IS NULL AND spent_by IS NULL AND outpoint IN (");
        for i in 0..added.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", i + 2));
        }
        sql.push(')');
        let mut q = sqlx::query(&sql).bind(child_id.clone());
        for o in &added {
            q = q.bind(o.clone());
        }
        if q.execute(&mut **tx).await?.rows_affected() != added.len() as u64 {
            return Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "retry",
                "a coin was taken by another withdrawal; retry with the same idempotency key",
            ));
        }
    }
    let child_txid = child.unsigned_tx.compute_txid().to_string();
    let to = wallet
        .descriptor
        .address(custody_bitcoin::Branch::Change, change_to)
        .map_err(ApiError::internal)?
        .to_string();
    let policy = crate::policy::current(tx, app, now).await?;
    let internal = Withdrawal {
        asset: withdrawals::ASSET_BTC.to_owned(),
        payments: Vec::new(),
    };
    let required = match policy.evaluate(&internal, withdrawals::now_u64(now)) {
        Verdict::Allow {
            required_approvals, ..
        } => i64::from(required_approvals),
        Verdict::Deny { reason } => {
            return Err(ApiError::refused(
                "policy_denied",
                format!(
                    "the policy in force does not allow the acceleration, an internal transfer of BTC: {reason}"
                ),
            ))
        }
    };
    let state = if required == 0 {
        "approved"
    } else {
        "pending_approval"
    };
    sqlx::query(
        "INSERT INTO withdrawals (id, principal_id, asset, address, amount, state, version, created_at, \
         updated_at, hold_until, risk_score, risk_reasons, policy_hash, required_approvals, psbt, txid, \
         accelerates) \
         VALUES ($1, $2, $3, $4, 0, $5, 1, $6, $7, 0, 0, '[]', $8, $9, $10, $11, $12)",
    )
    .bind(child_id.clone())
    .bind(who.id.clone())
    .bind(withdrawals::ASSET_BTC)
    .bind(to.clone())
    .bind(state)
    .bind(now)
    .bind(now)
    .bind(hex::encode(policy.hash()))
    .bind(required)
    .bind(B64.encode(child.serialize()))
    .bind(child_txid.clone())
    .bind(w.id.clone())
    .execute(&mut **tx)
    .await?;
    let package_vsize = ancestors_weight.to_vbytes_ceil() + child_shown.vsize;
    let package_fee = ancestors_fee.to_sat() + child_shown.fee_sat;
    crate::audit::append(
        tx,
        now,
        "withdrawal.acceleration_requested",
        &who.id,
        &w.id,
        &serde_json::json!({
            "child": child_id, "by": who.role.as_str(), "reason": reason,
            "fee_rate_sat_vb": asked, "paying_sat_vb": (paying * 100.0).round() / 100.0,
            "unconfirmed": chain.iter().map(|u| u.row.id.clone()).collect::<Vec<_>>(),
        }),
    )
    .await?;
    crate::audit::append(
        tx,
        now,
        "withdrawal.acceleration_created",
        &who.id,
        &child_id,
        &serde_json::json!({
            "accelerates": w.id, "txid": child_txid, "to": to, "spends": coins.iter().map(|c| c.outpoint.to_string()).collect::<Vec<_>>(),
            "fee_sat": child_shown.fee_sat, "package_fee_sat": package_fee, "package_vsize": package_vsize,
            "required_approvals": required,
        }),
    )
    .await?;
    let c = load(tx, &child_id).await?;
    let view = withdrawals::view(tx, app, &c).await?;
    Ok((
        axum::http::StatusCode::CREATED,
        serde_json::to_value(view).map_err(ApiError::internal)?,
    ))
}

/// The gate of a child. Its signing round goes out only while what it pays for is still
/// sent and unconfirmed; once signed it may also be broadcast after that confirmed (it is
/// then a transfer to the wallet itself, the cheapest way to free its coins). Never once
/// what it pays for is anything else: a child of a transaction that will never confirm
/// can never confirm either.
///
/// # Errors
/// 409 `not_needed` or `parent_gone`; storage failure.
pub(crate) async fn gate(tx: &mut Tx<'_>, w: &Row_) -> Result<(), ApiError> {
    let Some(parent) = &w.accelerates else {
        return Ok(());
    };
    let p = load(tx, parent).await?;
    match p.state.as_str() {
        "broadcast" => Ok(()),
        "confirmed" if w.state != "approved" => Ok(()),
        "confirmed" => Err(ApiError::conflict(
            "not_needed",
            format!(
                "the withdrawal this child pays for, {}, confirmed without it; cancel the child",
                p.id
            ),
        )),
        other => Err(ApiError::conflict(
            "parent_gone",
            format!(
                "the withdrawal this child pays for, {}, is {other}: the child can never confirm",
                p.id
            ),
        )),
    }
}

/// The stuck transactions a child depends on, parents first, as signed: sent again before
/// the child, so a node that dropped them takes the child. Best effort: what cannot be
/// read is left out (the node decides on the child).
pub(crate) async fn parents_to_send(tx: &mut Tx<'_>, app: &App, w: &Row_) -> Vec<(String, String)> {
    if w.accelerates.is_none() || w.is_eth() {
        return Vec::new();
    }
    match unconfirmed_ancestors(tx, app, w, MAX_ANCESTORS + 1).await {
        Ok(chain) => chain
            .into_iter()
            .filter(|u| u.row.id != w.id)
            .filter_map(|u| u.row.final_tx.clone().map(|raw| (u.row.id.clone(), raw)))
            .collect(),
        Err(e) => {
            tracing::warn!(withdrawal = %w.id, error = %e, "could not read the transactions a child pays for; sending the child alone");
            Vec::new()
        }
    }
}

/// A child is cancelled: the change output it took is forgotten unless what it paid for
/// confirmed (the output exists only while that transaction does; the next coin sync
/// brings it back if it is there). Its other coins are released by the caller.
///
/// # Errors
/// Storage failure.
pub(crate) async fn forget_parent_change(tx: &mut Tx<'_>, w: &Row_) -> Result<(), ApiError> {
    let Some(parent) = &w.accelerates else {
        return Ok(());
    };
    let p = load(tx, parent).await?;
    if p.state == "confirmed" {
        return Ok(());
    }
    if let Some(txid) = &p.txid {
        sqlx::query(
            "DELETE FROM utxos WHERE reserved_by = $1 AND spent_by IS NULL AND outpoint LIKE $2",
        )
        .bind(&w.id)
        .bind(format!("{txid}:%"))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// A withdrawal confirmed: its accelerations whose signing round is not out yet are no
/// longer needed and are cancelled, their coins free again (the change output they were
/// to spend is now an ordinary confirmed coin). One whose round is out stays: its answers
/// may be anywhere, and it is still a valid transfer to the wallet itself. Returns the
/// ones cancelled.
///
/// # Errors
/// Storage failure; 409 when one moved meanwhile.
pub(crate) async fn parent_confirmed(
    tx: &mut Tx<'_>,
    app: &App,
    w: &Row_,
) -> Result<Vec<String>, ApiError> {
    let now = app.now();
    let mut cancelled = Vec::new();
    for (c, state) in live_children(tx, &w.id).await? {
        if !matches!(state.as_str(), "pending_approval" | "approved") {
            continue;
        }
        let child = load(tx, &c).await?;
        let why = format!(
            "not needed: the withdrawal it paid for, {}, confirmed without it",
            w.id
        );
        withdrawals::transition(
            tx,
            &child,
            "cancelled",
            now,
            "failure",
            &[Val::Text(Some(why.clone()))],
        )
        .await?;
        sqlx::query(
            "UPDATE utxos SET reserved_by = NULL WHERE reserved_by = $1 AND spent_by IS NULL",
        )
        .bind(&child.id)
        .execute(&mut **tx)
        .await?;
        crate::audit::append(
            tx,
            now,
            "withdrawal.cancelled",
            "system",
            &child.id,
            &serde_json::json!({ "reason": why, "from": state }),
        )
        .await?;
        cancelled.push(child.id);
    }
    Ok(cancelled)
}
