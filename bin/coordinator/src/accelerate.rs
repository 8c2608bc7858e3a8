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
use custody_bitcoin::{BuildError, BuildOptions, InspectPolicy, Ownership, WalletUtxo};
use custody_policy::{Verdict, Withdrawal};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::accounts::{self, Principal, Role};
use crate::app::App;
use crate::db::{opt_text, text, Tx};
use crate::error::ApiError;
use crate::velocity;
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

/// A withdrawal sent and not yet confirmed, as the child sees it.
struct Unconfirmed {
    id: String,
    fee: Amount,
    weight: Weight,
}

/// The fee and signed weight (in whole virtual bytes) of a Bitcoin withdrawal's
/// transaction, from its PSBT.
fn fee_and_weight(app: &App, w: &Row_) -> Result<(Amount, Weight, Psbt), ApiError> {
    let wallet = app.wallet()?;
    let psbt = Psbt::deserialize(
        &B64.decode(w.psbt.clone().unwrap_or_default())
            .map_err(ApiError::internal)?,
    )
    .map_err(ApiError::internal)?;
    let shown = custody_bitcoin::inspect_psbt(&wallet.descriptor, &psbt, &InspectPolicy::default())
        .map_err(|e| ApiError::internal(format!("withdrawal {} does not inspect: {e}", w.id)))?;
    // Nodes rate a package over each transaction's whole virtual bytes.
    Ok((
        Amount::from_sat(shown.fee_sat),
        Weight::from_vb(shown.vsize).unwrap_or(Weight::MAX),
        psbt,
    ))
}

/// `w` and the withdrawals it accelerates, in turn, while they are sent and unconfirmed:
/// the transactions a child of `w` pays for.
async fn unconfirmed_chain(
    tx: &mut Tx<'_>,
    app: &App,
    w: &Row_,
) -> Result<Vec<Unconfirmed>, ApiError> {
    let (fee, weight, _) = fee_and_weight(app, w)?;
    let mut chain = vec![Unconfirmed {
        id: w.id.clone(),
        fee,
        weight,
    }];
    let mut next = w.accelerates.clone();
    while let Some(id) = next {
        if chain.iter().any(|u| u.id == id) {
            return Err(ApiError::internal(format!(
                "withdrawal {id} accelerates itself"
            )));
        }
        let p = load(tx, &id).await?;
        if p.state != "broadcast" {
            break;
        }
        let (fee, weight, _) = fee_and_weight(app, &p)?;
        chain.push(Unconfirmed {
            id: p.id.clone(),
            fee,
            weight,
        });
        next = p.accelerates.clone();
    }
    Ok(chain)
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
    if !matches!(who.role, Role::Operator | Role::Admin) {
        return Err(ApiError::forbidden(
            "only an operator or an admin accelerates a withdrawal",
        ));
    }
    if matches!(who.via, accounts::Via::ApiKey { .. }) {
        return Err(ApiError::forbidden(
            "staff accelerate withdrawals signed in, not with an API key",
        ));
    }
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
    let target = FeeRate::from_sat_per_vb(asked)
        .ok_or_else(|| ApiError::bad_request(format!("fee rate {asked} sat/vB is out of range")))?;
    let w = load(tx, id).await?;
    if w.is_eth() {
        return Err(ApiError::conflict(
            "not_bitcoin",
            "an Ethereum transaction has no child to pay for it; void it and request it again instead",
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
    let wallet = app.wallet()?.clone();
    let chain = unconfirmed_chain(tx, app, &w).await?;
    let ancestors_fee = chain.iter().map(|u| u.fee).sum::<Amount>();
    let ancestors_weight = chain.iter().fold(Weight::ZERO, |sum, u| sum + u.weight);
    // What the stuck transactions pay now, for the log.
    let paying = ancestors_fee.to_sat() as f64 * 4.0 / ancestors_weight.to_wu().max(1) as f64;
    // The withdrawal's change output: the largest output proved to be the wallet's change.
    let (_, _, psbt) = fee_and_weight(app, &w)?;
    let shown = custody_bitcoin::inspect_psbt(&wallet.descriptor, &psbt, &InspectPolicy::default())
        .map_err(|e| ApiError::internal(format!("withdrawal {} does not inspect: {e}", w.id)))?;
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
        return Err(ApiError::conflict(
            "change_taken",
            format!(
                "the change output {outpoint} of withdrawal {} is already taken by withdrawal {}; accelerate that one instead (its fee counts for both)",
                w.id,
                by.as_deref().unwrap_or("unknown")
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
    // More coins, largest first, only while the change alone does not cover the fee.
    let extra = sqlx::query(
        "SELECT outpoint, amount, script, branch, address_index FROM utxos \
         WHERE reserved_by IS NULL AND spent_by IS NULL ORDER BY amount DESC, outpoint LIMIT $1",
    )
    .bind(i64::try_from(MAX_EXTRA_COINS).unwrap_or(8))
    .fetch_all(&mut **tx)
    .await?;
    let mut extra = extra.iter();
    let child = loop {
        match custody_bitcoin::build_child(
            &wallet.descriptor,
            &coins,
            ancestors_fee,
            ancestors_weight,
            &options,
        ) {
            Ok(child) => break child,
            Err(BuildError::InsufficientFunds { missing }) => match extra.next() {
                Some(r) => coins.push(withdrawals::wallet_utxo(r)?),
                None => {
                    return Err(ApiError::conflict(
                        "insufficient_funds",
                        format!(
                            "the change output and the wallet's {MAX_EXTRA_COINS} largest free coins are {missing} short of the child's fee"
                        ),
                    ))
                }
            },
            Err(e @ BuildError::PackageAlreadyFaster { .. }) => {
                return Err(ApiError::conflict("not_faster", e.to_string()))
            }
            Err(e) => {
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
    // What the signers will check: a fee no signer accepts is refused here, not there.
    let child_shown =
        custody_bitcoin::inspect_psbt(&wallet.descriptor, &child, &InspectPolicy::default())
            .map_err(|e| {
                ApiError::refused(
                    "fee_too_high",
                    format!("the child would be refused by the signers: {e}"),
                )
            })?;
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
    if velocity::counted(state) {
        velocity::count(tx, withdrawals::ASSET_BTC, now, 0, 1).await?;
    }
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
            "unconfirmed": chain.iter().map(|u| u.id.clone()).collect::<Vec<_>>(),
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

/// The gate of a child: every withdrawal it pays for must still be sent or confirmed (a
/// child of a transaction that will never confirm can never confirm either).
///
/// # Errors
/// 409 `parent_gone`; storage failure.
pub(crate) async fn gate(tx: &mut Tx<'_>, w: &Row_) -> Result<(), ApiError> {
    if let Some(parent) = &w.accelerates {
        let p = load(tx, parent).await?;
        if !matches!(p.state.as_str(), "broadcast" | "confirmed") {
            return Err(ApiError::conflict(
                "parent_gone",
                format!(
                    "the withdrawal this child pays for, {}, is {}: the child can never confirm",
                    p.id, p.state
                ),
            ));
        }
    }
    Ok(())
}

/// The stuck transactions a child pays for, oldest first, as signed: sent again before
/// the child, so a node that dropped them takes the child.
///
/// # Errors
/// Storage failure.
pub(crate) async fn parents_to_send(
    tx: &mut Tx<'_>,
    w: &Row_,
) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    let mut next = w.accelerates.clone();
    while let Some(id) = next {
        if out.len() > 64 {
            break;
        }
        let p = load(tx, &id).await?;
        if p.state != "broadcast" {
            break;
        }
        if let Some(raw) = p.final_tx.clone() {
            out.push((p.id.clone(), raw));
        }
        next = p.accelerates.clone();
    }
    out.reverse();
    Ok(out)
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
