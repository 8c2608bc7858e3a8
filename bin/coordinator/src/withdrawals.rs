//! The withdrawal lifecycle.
//!
//! ```text
//! requested ─► pending_approval ─► approved ─► signing ─► signed ─► broadcasting ─► broadcast ─► confirmed
//!     │              (holds run alongside; every gate re-checks them)
//!     ├─► rejected (policy or whitelist said no; kept for the record)
//!     └─► cancelled (by its customer, an operator or an admin, before its signing round)
//! ```
//!
//! The PSBT is built when the withdrawal is requested, so approvers sign the exact
//! transaction (its txid is in the digest they sign): changing the destination or amount
//! after approval would need a new transaction and therefore new approvals.
//!
//! Every transition is one database transaction with an audit entry, guarded by a
//! compare-and-set on `(state, version)`: two requests or two coordinator processes racing
//! the same transition cannot both win. Exporting the signing round and broadcasting
//! re-check, at that moment, that no hold is active, nothing is frozen, the policy still
//! allows the withdrawal and the approvals are still valid.

use std::str::FromStr;

use base64::Engine as _;
use bitcoin::psbt::Psbt;
use bitcoin::{Address, Amount, FeeRate, OutPoint, ScriptBuf, TxOut};
use custody_bitcoin::{
    aggregate_psbt, build_psbt, extract_verified, finalize_psbt, request_signatures, BuildOptions,
    InspectPolicy, Payment, WalletUtxo,
};
use custody_policy::{
    verify_decision, Approval, Decision, Outcome, Verdict, VerifiedPolicy, Withdrawal,
};
use custody_threshold::{CommitmentBatch, CommitmentPool, IdentityCard, SigningDomain};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::accounts::{self, ClientInfo, Principal, Role};
use crate::app::App;
use crate::db::{int, opt_int, opt_text, text, Reads, Tx, Writes};
use crate::error::ApiError;
use crate::risk::{self, EventKind, EventSource, Hold};
use crate::velocity;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The asset this lifecycle moves.
pub const ASSET_BTC: &str = "BTC";

/// Parses and normalises a destination: a Bitcoin address of the configured network
/// (bech32 in lower case), or an Ethereum address (`0x…`, EIP-55 checksum checked when
/// mixed case; returned checksummed).
///
/// # Errors
/// 400 naming the problem.
pub fn parse_address(app: &App, address: &str) -> Result<String, ApiError> {
    if address.trim().starts_with("0x") || address.trim().starts_with("0X") {
        return crate::eth::parse_eth_address(address).map(|a| a.to_checksum(None));
    }
    let network = app.config.network.to_bitcoin();
    let a = Address::from_str(address.trim())
        .map_err(|e| ApiError::bad_request(format!("{address} is not a Bitcoin address: {e}")))?
        .require_network(network)
        .map_err(|_| ApiError::bad_request(format!("{address} is not a {network} address")))?;
    Ok(a.to_string())
}

/// A withdrawal request.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct NewWithdrawal {
    /// `BTC`, `ETH`, or an ERC-20 token as `ERC20:0x<contract>`.
    pub asset: String,
    /// The destination; must be on the account's whitelist and active.
    pub address: String,
    /// Amount in the asset's base units (satoshis, wei, token units): a JSON number, or a
    /// decimal string for amounts a JSON number cannot carry exactly.
    pub amount: crate::eth::Units,
    /// Second-factor proof: `totp`, `webauthn`, `email_code` + `sms_code`, or (for
    /// security changes) `recovery_code`.
    #[serde(flatten)]
    pub factors: crate::factors::StepUp,
}

/// The hold on a withdrawal as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HoldView {
    /// Whether a hold is active now.
    pub active: bool,
    /// When the latest hold ends (unix seconds); `None` when there never was one.
    pub until: Option<i64>,
    /// Every active hold, with its reason.
    pub reasons: Vec<Hold>,
}

/// A withdrawal as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WithdrawalView {
    /// Id.
    pub id: String,
    /// Lifecycle state.
    pub state: String,
    /// Asset.
    pub asset: String,
    /// Destination.
    pub address: String,
    /// Amount in satoshis (Bitcoin; 0 for other assets).
    pub amount: u64,
    /// Amount in the asset's base units as a decimal string (every asset).
    pub amount_units: String,
    /// Unix time requested.
    pub created_at: i64,
    /// Hold status now.
    pub hold: HoldView,
    /// The risk score and the rules that fired.
    pub risk: risk::Assessment,
    /// Approvals the policy requires.
    pub required_approvals: i64,
    /// Distinct approvals so far.
    pub approvals: i64,
    /// Hex of the digest approvers sign (`custody_policy::withdrawal_digest`).
    pub approval_digest: Option<String>,
    /// The unsigned transaction id (Bitcoin); the signed transaction's hash once signed
    /// (Ethereum).
    pub txid: Option<String>,
    /// The account nonce of an Ethereum withdrawal, once its signing round chose one.
    pub nonce: Option<u64>,
    /// Hex of the policy hash the request was evaluated under.
    pub policy_hash: String,
    /// Why it was rejected or failed, if it was.
    pub failure: Option<String>,
    /// For a void: the withdrawal it replaces (its coins back to the wallet; ADR 0031).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voids: Option<String>,
    /// The void under way for this withdrawal, if any: once it confirms, this withdrawal
    /// is cancelled; the coordinator does not broadcast this one meanwhile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voided_by: Option<String>,
    /// For an acceleration: the withdrawal whose stuck transaction it pays for (a child
    /// spending its change; ADR 0032).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accelerates: Option<String>,
    /// The acceleration under way for this withdrawal, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accelerated_by: Option<String>,
}

#[derive(Clone)]
pub(crate) struct Row_ {
    pub(crate) id: String,
    pub(crate) principal_id: String,
    pub(crate) state: String,
    pub(crate) version: i64,
    pub(crate) asset: String,
    pub(crate) address: String,
    amount: i64,
    pub(crate) amount_text: Option<String>,
    pub(crate) eth_intent: Option<String>,
    pub(crate) eth_tx: Option<String>,
    pub(crate) eth_nonce: Option<i64>,
    pub(crate) presign_batch: Option<String>,
    pub(crate) presign_index: Option<i64>,
    pub(crate) partials: Option<String>,
    created_at: i64,
    risk_score: i64,
    risk_reasons: String,
    policy_hash: String,
    required_approvals: i64,
    pub(crate) psbt: Option<String>,
    pub(crate) txid: Option<String>,
    pub(crate) signers: Option<String>,
    pub(crate) final_tx: Option<String>,
    failure: Option<String>,
    /// For a void: the withdrawal it replaces (ADR 0031).
    pub(crate) voids: Option<String>,
    /// For an acceleration: the withdrawal it pays for (ADR 0032).
    pub(crate) accelerates: Option<String>,
}

impl Row_ {
    /// The amount in base units.
    pub(crate) fn units(&self) -> u128 {
        match &self.amount_text {
            Some(t) => t.parse().unwrap_or(0),
            None => u128::from(u64::try_from(self.amount).unwrap_or(0)),
        }
    }

    /// Whether a customer asked for it: not a void or an acceleration, which staff start,
    /// which have no customer to tell, and which are internal transfers (in no velocity
    /// total).
    pub(crate) fn has_customer(&self) -> bool {
        self.voids.is_none() && self.accelerates.is_none()
    }

    /// Whether this is an Ethereum withdrawal (ETH or ERC-20).
    pub(crate) fn is_eth(&self) -> bool {
        self.asset != ASSET_BTC
    }
}

pub(crate) async fn load(tx: &mut Tx<'_>, id: &str) -> Result<Row_, ApiError> {
    let r = sqlx::query(
        "SELECT id, principal_id, state, version, asset, address, amount, created_at, risk_score, \
         risk_reasons, policy_hash, required_approvals, psbt, txid, signers, final_tx, failure, \
         amount_text, eth_intent, eth_tx, eth_nonce, presign_batch, presign_index, partials, voids, \
         accelerates FROM withdrawals WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| ApiError::not_found("withdrawal"))?;
    Ok(Row_ {
        id: text(&r, "id")?,
        principal_id: text(&r, "principal_id")?,
        state: text(&r, "state")?,
        version: int(&r, "version")?,
        asset: text(&r, "asset")?,
        address: text(&r, "address")?,
        amount: int(&r, "amount")?,
        amount_text: opt_text(&r, "amount_text")?,
        eth_intent: opt_text(&r, "eth_intent")?,
        eth_tx: opt_text(&r, "eth_tx")?,
        eth_nonce: opt_int(&r, "eth_nonce")?,
        presign_batch: opt_text(&r, "presign_batch")?,
        presign_index: opt_int(&r, "presign_index")?,
        partials: opt_text(&r, "partials")?,
        created_at: int(&r, "created_at")?,
        risk_score: int(&r, "risk_score")?,
        risk_reasons: text(&r, "risk_reasons")?,
        policy_hash: text(&r, "policy_hash")?,
        required_approvals: int(&r, "required_approvals")?,
        psbt: opt_text(&r, "psbt")?,
        txid: opt_text(&r, "txid")?,
        signers: opt_text(&r, "signers")?,
        final_tx: opt_text(&r, "final_tx")?,
        failure: opt_text(&r, "failure")?,
        voids: opt_text(&r, "voids")?,
        accelerates: opt_text(&r, "accelerates")?,
    })
}

/// A value for a column a transition also sets.
pub(crate) enum Val {
    Text(Option<String>),
    Int(i64),
}

/// 409 `concurrent_change`: another request changed the withdrawal after this one read it
/// (its own changes roll back with it).
pub(crate) fn concurrent_change(id: &str) -> ApiError {
    ApiError::conflict(
        "concurrent_change",
        format!("withdrawal {id} changed while this request ran; fetch it and retry"),
    )
}

/// Moves `w` from its loaded `(state, version)` to `to`, or fails with 409 if someone else
/// moved it first. The only way a withdrawal's state changes after it is written: it also
/// moves the withdrawal in or out of the velocity running totals
/// ([`velocity::moved`]), in the same transaction.
pub(crate) async fn transition(
    tx: &mut Tx<'_>,
    w: &Row_,
    to: &str,
    now: i64,
    extra_sql: &str,
    extra: &[Val],
) -> Result<(), ApiError> {
    let mut sql =
        String::from("UPDATE withdrawals SET state = $1, version = version + 1, updated_at = $2");
    let mut n = 2;
    for col in extra_sql
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        n += 1;
        sql.push_str(&format!(", {col} = ${n}"));
    }
    sql.push_str(&format!(
        " WHERE id = ${} AND state = ${} AND version = ${}",
        n + 1,
        n + 2,
        n + 3
    ));
    let mut q = sqlx::query(&sql).bind(to.to_owned()).bind(now);
    for v in extra {
        q = match v {
            Val::Text(t) => q.bind(t.clone()),
            Val::Int(i) => q.bind(*i),
        };
    }
    let done = q
        .bind(w.id.clone())
        .bind(w.state.clone())
        .bind(w.version)
        .execute(&mut **tx)
        .await?;
    if done.rows_affected() != 1 {
        return Err(concurrent_change(&w.id));
    }
    // Internal transfers are in no velocity total (`velocity::NOT_INTERNAL`).
    if let Some(sign) = velocity::moved(&w.state, to).filter(|_| w.has_customer()) {
        let amount = match &w.amount_text {
            Some(t) => t.parse::<u128>().map_err(|_| {
                ApiError::internal(format!("stored amount {t:?} of {} is not a number", w.id))
            })?,
            None => u128::from(u64::try_from(w.amount).map_err(|_| {
                ApiError::internal(format!("stored amount of {} is negative", w.id))
            })?),
        };
        velocity::count(tx, &w.asset, w.created_at, amount, sign).await?;
    }
    metrics::counter!("custody_withdrawal_transitions_total", "to" => to.to_owned()).increment(1);
    Ok(())
}

pub(crate) async fn view(tx: &mut Tx<'_>, app: &App, w: &Row_) -> Result<WithdrawalView, ApiError> {
    let now = app.now();
    let (holds, latest) = risk::holds_for(tx, &w.principal_id, &w.id, now).await?;
    let approvals = distinct_approvals(tx, &w.id).await?;
    let mut v = view_with(w, holds, latest, approvals)?;
    if matches!(w.state.as_str(), "signing" | "signed") {
        v.voided_by = live_void(tx, &w.id).await?;
    }
    if w.state == "broadcast" && !w.is_eth() {
        v.accelerated_by = crate::accelerate::live_children(tx, &w.id)
            .await?
            .into_iter()
            .next()
            .map(|(c, _)| c);
    }
    Ok(v)
}

/// [`view`] given the withdrawal's active holds, the latest end of any hold that has
/// started, and its approvals.
fn view_with(
    w: &Row_,
    holds: Vec<risk::Hold>,
    latest: Option<i64>,
    approvals: i64,
) -> Result<WithdrawalView, ApiError> {
    let approval_digest = match transaction_digest(w)? {
        Some(digest) => Some(hex::encode(approval_digest(
            &w.policy_hash,
            &w.id,
            &digest,
        )?)),
        None => None,
    };
    Ok(WithdrawalView {
        id: w.id.clone(),
        state: w.state.clone(),
        asset: w.asset.clone(),
        address: w.address.clone(),
        amount: u64::try_from(w.amount).unwrap_or(0),
        amount_units: w.units().to_string(),
        created_at: w.created_at,
        hold: HoldView {
            active: !holds.is_empty(),
            until: latest,
            reasons: holds,
        },
        risk: risk::Assessment {
            score: u32::try_from(w.risk_score).unwrap_or(u32::MAX),
            reasons: serde_json::from_str(&w.risk_reasons).unwrap_or_default(),
        },
        required_approvals: w.required_approvals,
        approvals,
        approval_digest,
        txid: w.txid.clone(),
        nonce: w.eth_nonce.and_then(|n| u64::try_from(n).ok()),
        policy_hash: w.policy_hash.clone(),
        failure: w.failure.clone(),
        voids: w.voids.clone(),
        voided_by: None,
        accelerates: w.accelerates.clone(),
        accelerated_by: None,
    })
}

fn txid_bytes(txid: &str) -> Result<Vec<u8>, ApiError> {
    let t = bitcoin::Txid::from_str(txid).map_err(ApiError::internal)?;
    Ok(bitcoin::hashes::Hash::to_byte_array(t).to_vec())
}

/// The transaction digest approvals and decisions bind: the unsigned txid (internal byte
/// order) of a Bitcoin withdrawal, the intent digest of an Ethereum one. `None` before it
/// exists.
pub(crate) fn transaction_digest(w: &Row_) -> Result<Option<Vec<u8>>, ApiError> {
    if w.is_eth() {
        return w
            .eth_intent
            .as_deref()
            .map(|h| hex::decode(h).map_err(ApiError::internal))
            .transpose();
    }
    w.txid.as_deref().map(txid_bytes).transpose()
}

/// The digest approvers sign for this withdrawal: the policy hash, the withdrawal id and
/// the transaction digest, as `custody_policy::withdrawal_digest`.
fn approval_digest(policy_hash: &str, id: &str, digest: &[u8]) -> Result<[u8; 32], ApiError> {
    let policy: [u8; 32] = hex::decode(policy_hash)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| ApiError::internal("bad policy hash in database"))?;
    Ok(custody_policy::withdrawal_digest(&policy, id, digest))
}

async fn distinct_approvals(tx: &mut Tx<'_>, id: &str) -> Result<i64, ApiError> {
    let r = sqlx::query(
        "SELECT COUNT(DISTINCT approver_key) AS n FROM approvals WHERE withdrawal_id = $1",
    )
    .bind(id)
    .fetch_one(&mut **tx)
    .await?;
    Ok(int(&r, "n")?)
}

fn policy_withdrawal(asset: &str, address: &str, amount: u64) -> Withdrawal {
    Withdrawal {
        asset: asset.to_owned(),
        payments: vec![custody_policy::Payment {
            address: address.to_owned(),
            amount: u128::from(amount),
        }],
    }
}

pub(crate) fn now_u64(now: i64) -> u64 {
    u64::try_from(now).unwrap_or(0)
}

/// Requests a withdrawal (the body of `POST /v1/withdrawals`, inside the idempotency
/// transaction). A refusal by the whitelist or the policy is recorded as a `rejected`
/// withdrawal and answered with 422.
///
/// # Errors
/// Frozen (423), 2FA, refusals (422), no funds (409).
pub(crate) async fn request(
    tx: &mut Tx<'_>,
    app: &App,
    principal: &Principal,
    req: &NewWithdrawal,
    client: &ClientInfo,
) -> Result<crate::api::Answer, ApiError> {
    let now = app.now();
    if principal.role != Role::User {
        return Err(ApiError::forbidden(
            "only customer accounts request withdrawals",
        ));
    }
    // What is asked for, per asset: the normalised destination, the amount, and what the
    // policy sees. Ethereum withdrawals get their nonce and fees at signing time, so their
    // transaction here is a template that fixes what moves (its intent digest).
    let amount = req.amount.0;
    let (address, eth) = if req.asset == ASSET_BTC {
        if amount == 0 || i64::try_from(amount).is_err() {
            return Err(ApiError::bad_request(
                "amount must be a positive number of satoshis",
            ));
        }
        let address = parse_address(app, &req.address)?;
        if address.starts_with("0x") {
            return Err(ApiError::bad_request(format!(
                "{address} is an Ethereum address; BTC needs a Bitcoin address"
            )));
        }
        (address, None)
    } else {
        let wallet = app.eth()?;
        let asset = crate::eth::EthAsset::parse(&req.asset)?;
        if amount == 0 {
            return Err(ApiError::bad_request("amount must be positive"));
        }
        let to = crate::eth::parse_eth_address(&req.address)?;
        if to == wallet.address {
            // The signers see ether to their own address as an internal transfer (a void).
            return Err(ApiError::bad_request(format!(
                "{} is this custody wallet's own address; a withdrawal pays someone else",
                to.to_checksum(None)
            )));
        }
        let template = crate::eth::template(wallet, &asset, to, amount)?;
        (to.to_checksum(None), Some((asset, template)))
    };
    let asset_id = match &eth {
        None => ASSET_BTC.to_owned(),
        Some((asset, _)) => asset.policy_asset(),
    };
    let by_key = matches!(principal.via, accounts::Via::ApiKey { .. });
    let whitelist_required = principal.whitelist_only || by_key;
    let id = Uuid::new_v4().to_string();
    let attempt = risk::Attempt {
        address: &address,
        asset: &asset_id,
        amount,
        ip: &client.ip,
    };
    // Every read the checks below need that depends on nothing else: one round trip on
    // SQLite's writer instead of six (ADR 0023). They are evaluated in this order.
    let mut reads = Reads::new();
    let may = risk::may_withdraw_read(&mut reads, principal);
    let security =
        (!by_key).then(|| crate::factors::security_state_read(&mut reads, &principal.id));
    let in_force =
        crate::policy::current_with_whitelist_read(&mut reads, now, &principal.id, &address);
    let (facts, recent) = risk::assessment_reads(&mut reads, &principal.id, &attempt, now);
    let held = risk::holds_read(&mut reads, &principal.id, &id, now);
    // Velocity history with the windows of the policy the last request found in force;
    // read again below only if another one is in force now.
    let guess = app.policies.last_in_force();
    let guessed_usage = guess.as_ref().map(|p| {
        let read = velocity::usage_read(&mut reads, &p.document().velocity, &asset_id, now, None);
        (p.clone(), read)
    });
    let mut rows = reads.run(tx).await?;
    risk::may_withdraw_from(&rows.take(may), principal)?;
    // Everything the request writes after its reads, sent in one round trip; the checks
    // whose statements ride in it (the TOTP step, the coins' reservation) are confirmed
    // after it ran, and a failed one rolls the whole request back (ADR 0025).
    let mut writes = Writes::new();
    let mut checks = Checks::default();
    // A signed API request was checked for the `withdraw` scope and the key's IP binding
    // before it got here; a person steps up with their second factors.
    if let Some(i) = security {
        let state = crate::factors::security_state_from(&rows.take(i))?;
        checks.totp = crate::factors::step_up_with(
            tx,
            app,
            principal,
            &req.factors,
            custody_auth::Action::Withdrawal,
            &client.ip,
            state,
            Some(&mut writes),
        )
        .await?
        .1;
    }
    // The attempt is recorded as a security event at the end of this transaction, on every
    // outcome.
    let (policy, whitelisted_from) =
        crate::policy::current_with_whitelist_from(tx, app, &rows.take(in_force)).await?;
    let policy_hash = hex::encode(policy.hash());
    let whitelisted = match whitelisted_from {
        None => Err(None),
        Some(from) if from <= now => Ok(()),
        Some(from) => Err(Some(from)),
    };
    let mut refusal = match whitelisted {
        Ok(()) => None,
        Err(None) if !whitelist_required => None,
        Err(None) => Some((
            "not_whitelisted",
            if by_key {
                format!("{address} is not on this account's withdrawal whitelist; API keys withdraw only to whitelisted addresses")
            } else {
                format!("{address} is not on this account's withdrawal whitelist")
            },
        )),
        Err(Some(from)) => Some((
            "address_not_yet_active",
            format!(
                "{address} was whitelisted recently and becomes usable at {}",
                crate::clock::rfc3339(from)
            ),
        )),
    };
    let mut required = 0;
    if refusal.is_none() {
        let w = match &eth {
            None => Ok(policy_withdrawal(
                ASSET_BTC,
                &address,
                u64::try_from(amount).unwrap_or(0),
            )),
            Some((_, template)) => template.policy_withdrawal(),
        };
        let usage = match &guessed_usage {
            Some((p, read)) if std::sync::Arc::ptr_eq(p, &policy) => match read {
                Some(read) => velocity::usage_from(read, &mut rows)?,
                None => velocity::Usage::none(),
            },
            _ => velocity::usage(tx, &policy, &asset_id, now, None).await?,
        };
        match w {
            Ok(w) => match policy.evaluate_with_usage(&w, now_u64(now), |limit| usage.of(limit)) {
                Verdict::Allow {
                    required_approvals, ..
                } => required = i64::from(required_approvals),
                Verdict::Deny { reason } => {
                    refusal = Some((
                        "policy_denied",
                        format!("policy denies the withdrawal: {reason}"),
                    ))
                }
            },
            Err(e) => refusal = Some(("policy_denied", format!("policy cannot allow it: {e}"))),
        }
    }
    let (amount_sat, amount_text) = match &eth {
        None => (i64::try_from(amount).unwrap_or(0), None),
        Some(_) => (0, Some(amount.to_string())),
    };
    if let Some((code, message)) = refusal {
        record_attempt(
            &mut writes,
            app,
            &principal.id,
            &id,
            amount,
            &client.ip,
            true,
        )?;
        writes
            .push(
                "INSERT INTO withdrawals (id, principal_id, asset, address, amount, state, version, created_at, \
                 updated_at, hold_until, risk_score, risk_reasons, policy_hash, required_approvals, failure, amount_text) \
                 VALUES ($1, $2, $3, $4, $5, 'rejected', 1, $6, $7, 0, 0, '[]', $8, 0, $9, $10)",
            )
            .bind(id.clone())
            .bind(principal.id.clone())
            .bind(asset_id.clone())
            .bind(address.clone())
            .bind(amount_sat)
            .bind(now)
            .bind(now)
            .bind(policy_hash.clone())
            .bind(message.clone())
            .bind(amount_text.clone());
        crate::audit::append_to(
            &mut writes,
            now,
            "withdrawal.rejected",
            &principal.id,
            &id,
            &serde_json::json!({ "code": code, "reason": message }),
        );
        let body = serde_json::json!({ "error": { "code": code, "message": message, "withdrawal_id": id } });
        return Ok(crate::api::Answer {
            status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            body,
            writes,
            confirm: Some(Box::new(move |changed| {
                checks.confirm(changed)?;
                metrics::counter!("custody_withdrawals_rejected_total").increment(1);
                Ok(())
            })),
        });
    }
    let assessment =
        risk::assess_withdrawal(app, &attempt, now, &rows.take(facts), &rows.take(recent))?;
    let unusual = if assessment.score >= app.config.risk.hold_score {
        let until = now + app.config.risk.unusual_withdrawal_hold();
        let reason = format!(
            "unusual withdrawal (score {} of {}): {}; held until {}",
            assessment.score,
            app.config.risk.hold_score,
            assessment.reasons.join("; "),
            crate::clock::rfc3339(until)
        );
        writes
            .push(
                "INSERT INTO holds (id, principal_id, withdrawal_id, rule, reason, since, until, event_id) \
                 VALUES ($1, $2, $3, 'unusual_withdrawal', $4, $5, $6, NULL)",
            )
            .bind(Uuid::new_v4().to_string())
            .bind(principal.id.clone())
            .bind(id.clone())
            .bind(reason.clone())
            .bind(now)
            .bind(until);
        Some(risk::Hold {
            rule: "unusual_withdrawal".to_owned(),
            reason,
            since: now,
            until,
        })
    } else {
        None
    };
    let (psbt, txid, intent) = match &eth {
        None => {
            let (psbt, txid, reserved) = build_and_reserve(
                tx,
                app,
                &mut writes,
                &id,
                &address,
                u64::try_from(amount).unwrap_or(0),
            )
            .await?;
            checks.coins = Some(reserved);
            (
                Some(B64.encode(psbt.serialize())),
                Some(txid.to_string()),
                None,
            )
        }
        Some((_, template)) => (None, None, Some(hex::encode(template.intent_digest()))),
    };
    // The holds already on the account, and the one this request places (written below).
    let (mut holds, mut latest) = risk::holds_from(&rows.take(held))?;
    if let Some(hold) = unusual {
        latest = latest.max(Some(hold.until));
        holds.push(hold);
        holds.sort_by_key(|h| std::cmp::Reverse(h.until));
    }
    let hold_until = holds.iter().map(|h| h.until).max().unwrap_or(0);
    record_attempt(
        &mut writes,
        app,
        &principal.id,
        &id,
        amount,
        &client.ip,
        false,
    )?;
    let state = if required == 0 {
        "approved"
    } else {
        "pending_approval"
    };
    // The row as stored, kept for the answer (no read back).
    let w = Row_ {
        id: id.clone(),
        principal_id: principal.id.clone(),
        state: state.to_owned(),
        version: 1,
        asset: asset_id.clone(),
        address: address.clone(),
        amount: amount_sat,
        amount_text,
        eth_intent: intent.clone(),
        eth_tx: None,
        eth_nonce: None,
        presign_batch: None,
        presign_index: None,
        partials: None,
        created_at: now,
        risk_score: i64::from(assessment.score),
        risk_reasons: serde_json::to_string(&assessment.reasons).unwrap_or_else(|_| "[]".into()),
        policy_hash: policy_hash.clone(),
        required_approvals: required,
        psbt,
        txid: txid.clone(),
        signers: None,
        final_tx: None,
        failure: None,
        voids: None,
        accelerates: None,
    };
    writes
        .push(
            "INSERT INTO withdrawals (id, principal_id, asset, address, amount, state, version, created_at, \
             updated_at, hold_until, risk_score, risk_reasons, policy_hash, required_approvals, psbt, txid, \
             amount_text, eth_intent) \
             VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        )
        .bind(w.id.clone())
        .bind(w.principal_id.clone())
        .bind(w.asset.clone())
        .bind(w.address.clone())
        .bind(w.amount)
        .bind(w.state.clone())
        .bind(now)
        .bind(now)
        .bind(hold_until)
        .bind(w.risk_score)
        .bind(w.risk_reasons.clone())
        .bind(w.policy_hash.clone())
        .bind(required)
        .bind(w.psbt.clone())
        .bind(w.txid.clone())
        .bind(w.amount_text.clone())
        .bind(w.eth_intent.clone());
    if let Some(sign) = velocity::moved("requested", state) {
        velocity::count_to(&mut writes, app.db.engine(), &w.asset, now, amount, sign);
    }
    crate::audit::append_to(
        &mut writes,
        now,
        "withdrawal.requested",
        &principal.id,
        &id,
        &serde_json::json!({
            "asset": asset_id, "address": address, "amount": crate::eth::amount_json(eth.is_none(), amount), "txid": txid,
            "intent": intent, "policy": policy_hash, "required_approvals": required,
            "risk_score": assessment.score, "hold_until": hold_until,
        }),
    );
    crate::notify::enqueue_to(
        &mut writes,
        app,
        Some(&principal.id),
        if hold_until > now {
            "withdrawal.held"
        } else {
            "withdrawal.requested"
        },
        serde_json::json!({ "withdrawal": id, "asset": asset_id, "amount": crate::eth::amount_json(eth.is_none(), amount), "address": address, "hold_until": hold_until }),
    )?;
    let v = view_with(&w, holds, latest, 0)?;
    // The writes go out with the idempotency record; the request stands only if its
    // checks hold (ADR 0025).
    Ok(crate::api::Answer {
        status: axum::http::StatusCode::CREATED,
        body: serde_json::to_value(v).map_err(ApiError::internal)?,
        writes,
        confirm: Some(Box::new(move |changed| {
            checks.confirm(changed)?;
            metrics::counter!("custody_withdrawals_requested_total").increment(1);
            Ok(())
        })),
    })
}

/// Records the attempt as a security event. A refused attempt alerts the user with
/// `security.withdrawal_attempt`; an accepted one is announced once, by its own
/// `withdrawal.requested` (or `withdrawal.held`) notification.
fn record_attempt(
    writes: &mut Writes,
    app: &App,
    principal_id: &str,
    id: &str,
    amount: u128,
    ip: &str,
    refused: bool,
) -> Result<(), ApiError> {
    risk::record_to(
        writes,
        app,
        principal_id,
        EventKind::WithdrawalAttempt,
        app.now(),
        EventSource::Coordinator,
        Some(ip),
        serde_json::json!({ "withdrawal": id, "amount": crate::eth::amount_json(u64::try_from(amount).is_ok(), amount) }),
        refused,
    )
    .map(drop)
}

/// The checks of a withdrawal request whose statements ride in its write batch.
#[derive(Debug, Default)]
struct Checks {
    /// The TOTP code's compare-and-set.
    totp: Option<crate::factors::Deferred>,
    /// The coins' reservation.
    coins: Option<Reserved>,
}

impl Checks {
    /// Confirms each check from what the batch changed; the first that failed is the
    /// request's answer (the TOTP step before the coins).
    fn confirm(self, changed: &crate::db::Changed) -> Result<(), ApiError> {
        if let Some(totp) = self.totp {
            totp.confirm(changed)?;
        }
        if let Some(coins) = self.coins {
            coins.confirm(changed)?;
        }
        Ok(())
    }
}

/// A reservation of a withdrawal's inputs, added to its write batch.
#[derive(Debug)]
struct Reserved {
    statement: crate::db::Counted,
    inputs: u64,
}

impl Reserved {
    /// Fewer rows than inputs means another request took a coin first: the whole request
    /// is retried.
    fn confirm(self, changed: &crate::db::Changed) -> Result<(), ApiError> {
        if changed.rows(self.statement) == self.inputs {
            Ok(())
        } else {
            Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "retry",
                "a coin was taken by another withdrawal; retry with the same idempotency key",
            ))
        }
    }
}

async fn build_and_reserve(
    tx: &mut Tx<'_>,
    app: &App,
    writes: &mut Writes,
    id: &str,
    address: &str,
    amount: u64,
) -> Result<(Psbt, bitcoin::Txid, Reserved), ApiError> {
    let wallet = app.wallet()?.clone();
    // Coin selection looks at the largest free coins only, so a request costs the same
    // with ten coins or ten thousand; consolidation keeps the set small.
    // On PostgreSQL concurrent requests lock their candidates and skip each other's, so they
    // pick disjoint coins instead of queueing on the same ones (SQLite has one writer).
    let lock = match app.db.engine() {
        crate::db::Engine::Postgres => " FOR UPDATE SKIP LOCKED",
        crate::db::Engine::Sqlite => "",
    };
    let coins = |limit: u32| {
        format!(
            "SELECT outpoint, amount, script, branch, address_index FROM utxos \
             WHERE reserved_by IS NULL AND spent_by IS NULL \
             ORDER BY amount DESC, outpoint DESC LIMIT {limit}{lock}"
        )
    };
    // A few candidates first (locking few rows); more only when they do not cover it. On
    // SQLite the change index is claimed in the same round trip.
    let mut reads = Reads::new();
    let claimed = app.db.side_pool().is_none().then(|| {
        let i = reads.push(CLAIM_CHANGE);
        reads.bind(1i64);
        i
    });
    let first = reads.push(&coins(8));
    let mut found = reads.run(tx).await?;
    let change_index = match claimed {
        Some(i) => claimed_index(found.take(i).first())?.saturating_sub(1),
        None => claim_change_block(app, &wallet).await?,
    };
    let mut rows = found.take(first);
    if !covers(&rows, amount)? {
        rows = sqlx::query(&coins(64))
            .fetch_all(&mut **tx)
            .await?
            .into_iter()
            .map(crate::db::BatchRow::Sql)
            .collect();
    }
    // Of those, as many as cover twice the amount (at least four): coin selection derives
    // every candidate's key, so fewer candidates keep a request cheap.
    let mut covered = 0u64;
    let mut take = 0;
    for r in &rows {
        take += 1;
        covered = covered.saturating_add(u64::try_from(int(r, "amount")?).unwrap_or(0));
        if take >= 4 && covered >= amount.saturating_mul(2).saturating_add(100_000) {
            break;
        }
    }
    let utxos = rows[..take]
        .iter()
        .map(wallet_utxo)
        .collect::<Result<Vec<_>, _>>()?;
    wallet.prepare_change_after(change_index);
    let payment = Payment {
        address: Address::from_str(address)
            .map_err(ApiError::internal)?
            .require_network(app.config.network.to_bitcoin())
            .map_err(ApiError::internal)?,
        amount: Amount::from_sat(amount),
    };
    let fee_rate = FeeRate::from_sat_per_vb(app.config.wallet.fee_rate_sat_vb)
        .unwrap_or(FeeRate::BROADCAST_MIN);
    let psbt = build_psbt(
        &wallet.descriptor,
        &utxos,
        &[payment],
        &BuildOptions::new(fee_rate, change_index),
    )
    .map_err(|e| {
        ApiError::conflict("cannot_build", format!("cannot build the transaction: {e}"))
    })?;
    // Every input reserved in one statement of the request's write batch.
    let inputs = &psbt.unsigned_tx.input;
    let placeholders: Vec<String> = (2..inputs.len() + 2).map(|i| format!("${i}")).collect();
    writes
        .push(&format!(
            "UPDATE utxos SET reserved_by = $1 WHERE reserved_by IS NULL AND outpoint IN ({})",
            placeholders.join(", ")
        ))
        .bind(id.to_owned());
    for input in inputs {
        writes.bind(input.previous_output.to_string());
    }
    let reserved = Reserved {
        statement: writes.count_rows(),
        inputs: u64::try_from(inputs.len()).unwrap_or(u64::MAX),
    };
    let txid = psbt.unsigned_tx.compute_txid();
    Ok((psbt, txid, reserved))
}

/// A coin of the `utxos` table (`outpoint, amount, script, branch, address_index`) as coin
/// selection and PSBT building take it.
pub(crate) fn wallet_utxo<R: crate::db::Columns>(r: &R) -> Result<WalletUtxo, ApiError> {
    Ok(WalletUtxo {
        outpoint: OutPoint::from_str(&text(r, "outpoint")?).map_err(ApiError::internal)?,
        txout: TxOut {
            value: Amount::from_sat(u64::try_from(int(r, "amount")?).unwrap_or(0)),
            script_pubkey: ScriptBuf::from_hex(&text(r, "script")?).map_err(ApiError::internal)?,
        },
        branch: custody_bitcoin::Branch::from_number(u32::try_from(int(r, "branch")?).unwrap_or(9))
            .ok_or_else(|| ApiError::internal("bad branch in utxos"))?,
        index: u32::try_from(int(r, "address_index")?).unwrap_or(0),
        prev_tx: None,
    })
}

/// How many change indexes a coordinator process claims at once on PostgreSQL.
const CHANGE_BLOCK: u32 = 64;

/// Takes change indexes: `$1` of them, the last one taken is `next_change_index - 1`.
const CLAIM_CHANGE: &str = "UPDATE wallet_state SET next_change_index = next_change_index + $1 \
     WHERE id = 1 RETURNING next_change_index";

/// `next_change_index` after a [`CLAIM_CHANGE`].
fn claimed_index<R: crate::db::Columns>(row: Option<&R>) -> Result<u32, ApiError> {
    let row = row.ok_or_else(|| ApiError::internal("the wallet state row is missing"))?;
    u32::try_from(int(row, "next_change_index")?)
        .map_err(|_| ApiError::internal("change index out of range"))
}

/// Whether `rows` (coins, largest first) cover twice `amount` plus a margin for fees.
fn covers(rows: &[crate::db::BatchRow], amount: u64) -> Result<bool, ApiError> {
    let mut sum = 0u64;
    for r in rows {
        sum = sum.saturating_add(u64::try_from(int(r, "amount")?).unwrap_or(0));
    }
    Ok(sum >= amount.saturating_mul(2).saturating_add(100_000))
}

/// A change index no other withdrawal gets, on PostgreSQL.
///
/// (On SQLite, one writer, the index is taken in the request's own transaction, in the
/// round trip that reads the coin candidates.) On PostgreSQL the process claims a block
/// of indexes in a short transaction of its own and hands them out from memory, so that
/// requests do not hold the `wallet_state` row until they commit (which made every commit
/// wait for the one before it). An index whose request fails, or whose transaction needs
/// no change, is skipped; that is harmless because coin sync watches every change index
/// below `next_change_index` plus the gap.
/// A fresh change index, outside the intake path: claimed in `tx` on SQLite, from the
/// process's block on PostgreSQL.
///
/// # Errors
/// Storage failure.
pub(crate) async fn claim_change_index(
    tx: &mut Tx<'_>,
    app: &App,
    wallet: &crate::app::Wallet,
) -> Result<u32, ApiError> {
    match app.db.side_pool() {
        None => {
            let row = sqlx::query(CLAIM_CHANGE)
                .bind(1i64)
                .fetch_one(&mut **tx)
                .await?;
            Ok(claimed_index(Some(&row))?.saturating_sub(1))
        }
        Some(_) => claim_change_block(app, wallet).await,
    }
}

async fn claim_change_block(app: &App, wallet: &crate::app::Wallet) -> Result<u32, ApiError> {
    let side = app
        .db
        .side_pool()
        .ok_or_else(|| ApiError::internal("no side pool for change indexes"))?;
    let mut block = wallet.change_block.lock().await;
    if block.0 >= block.1 {
        let row = sqlx::query(CLAIM_CHANGE)
            .bind(i64::from(CHANGE_BLOCK))
            .fetch_one(side)
            .await?;
        let end = claimed_index(Some(&row))?;
        *block = (end.saturating_sub(CHANGE_BLOCK), end);
    }
    let next = block.0;
    block.0 += 1;
    Ok(next)
}

/// Gets a withdrawal; users see only their own.
///
/// # Errors
/// 404.
pub async fn get(app: &App, principal: &Principal, id: &str) -> Result<WithdrawalView, ApiError> {
    let mut tx = app.db.begin().await?;
    let w = load(&mut tx, id).await?;
    if principal.role == Role::User && w.principal_id != principal.id {
        return Err(ApiError::not_found("withdrawal"));
    }
    let v = view(&mut tx, app, &w).await?;
    tx.commit().await?;
    Ok(v)
}

/// An approval.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct NewApproval {
    /// Hex BIP340 signature by the approver's identity key, in the policy domain, over the
    /// withdrawal's `approval_digest`.
    pub signature: String,
    /// Second-factor proof: `totp`, `webauthn`, `email_code` + `sms_code`, or (for
    /// security changes) `recovery_code`.
    #[serde(flatten)]
    pub factors: crate::factors::StepUp,
}

/// Records an approval (the body of `POST /v1/withdrawals/{id}/approvals`).
///
/// # Errors
/// 403 for non-approvers, self-approval or an approver the policy does not list; 409 when
/// already approved by this approver or not awaiting approval; 422 for a bad signature.
pub async fn approve(
    tx: &mut Tx<'_>,
    app: &App,
    approver: &Principal,
    id: &str,
    req: &NewApproval,
) -> Result<(axum::http::StatusCode, serde_json::Value), ApiError> {
    let now = app.now();
    if approver.role != Role::Approver {
        return Err(ApiError::forbidden("only approvers approve withdrawals"));
    }
    let w = load(tx, id).await?;
    if w.principal_id == approver.id {
        return Err(ApiError::forbidden("nobody approves their own withdrawal"));
    }
    if w.state != "pending_approval" {
        return Err(ApiError::conflict(
            "not_awaiting_approval",
            format!("withdrawal is {}, not pending_approval", w.state),
        ));
    }
    accounts::step_up(
        tx,
        app,
        approver,
        &req.factors,
        custody_auth::Action::Withdrawal,
        &approver.client_ip,
    )
    .await?;
    let card_hex = approver
        .approver_card
        .clone()
        .ok_or_else(|| ApiError::forbidden("this approver has no identity card"))?;
    let card = IdentityCard::decode(&hex::decode(&card_hex).map_err(ApiError::internal)?)
        .map_err(ApiError::internal)?;
    let policy = crate::policy::by_hash(tx, app, &w.policy_hash)
        .await?
        .ok_or_else(|| ApiError::internal("withdrawal names an unknown policy"))?;
    if policy.document().approver(card.signing_key()).is_none() {
        return Err(ApiError::forbidden(format!(
            "approver {} is not listed in policy version {}",
            card.fingerprint(),
            policy.document().version
        )));
    }
    let tx_digest =
        transaction_digest(&w)?.ok_or_else(|| ApiError::internal("withdrawal without txid"))?;
    let digest = approval_digest(&w.policy_hash, &w.id, &tx_digest)?;
    let sig: [u8; 64] = hex::decode(req.signature.trim())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| ApiError::bad_request("signature must be 64 bytes of hex"))?;
    if !card.verify_in_domain(SigningDomain::Policy, &digest, &sig) {
        return Err(ApiError::refused(
            "bad_approval_signature",
            "the signature does not verify against your identity key for this withdrawal's digest",
        ));
    }
    let dup = sqlx::query("SELECT approver_id FROM approvals WHERE withdrawal_id = $1 AND (approver_id = $2 OR approver_key = $3)")
        .bind(&w.id)
        .bind(&approver.id)
        .bind(hex::encode(card.signing_key()))
        .fetch_optional(&mut **tx)
        .await?;
    if dup.is_some() {
        return Err(ApiError::conflict(
            "already_approved",
            "this approver already approved this withdrawal",
        ));
    }
    sqlx::query(
        "INSERT INTO approvals (withdrawal_id, approver_id, approver_key, signature, approved_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&w.id)
    .bind(&approver.id)
    .bind(hex::encode(card.signing_key()))
    .bind(hex::encode(sig))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    let count = distinct_approvals(tx, &w.id).await?;
    crate::audit::append(
        tx,
        now,
        "withdrawal.approval",
        &approver.id,
        &w.id,
        &serde_json::json!({ "approver_key": hex::encode(card.signing_key()), "count": count, "required": w.required_approvals }),
    )
    .await?;
    if count >= w.required_approvals {
        transition(tx, &w, "approved", now, "", &[]).await?;
        crate::audit::append(
            tx,
            now,
            "withdrawal.approved",
            &approver.id,
            &w.id,
            &serde_json::json!({ "approvals": count }),
        )
        .await?;
    }
    if count >= w.required_approvals && w.has_customer() {
        crate::notify::enqueue(
            tx,
            app,
            Some(&w.principal_id),
            "withdrawal.approved",
            serde_json::json!({ "withdrawal": w.id }),
        )
        .await?;
    }
    let w = load(tx, &w.id).await?;
    let v = view(tx, app, &w).await?;
    Ok((
        axum::http::StatusCode::OK,
        serde_json::to_value(v).map_err(ApiError::internal)?,
    ))
}

/// A cancellation (`POST /v1/withdrawals/{id}/cancel`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
pub struct NewCancel {
    /// Why, for the audit log and the customer's notification; required from operators
    /// and admins, at most 500 characters.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The longest cancellation or void reason kept.
const MAX_CANCEL_REASON: usize = 500;

/// A staff member's reason, trimmed: `None` when absent or blank; 400 when longer than
/// [`MAX_CANCEL_REASON`] characters or not one line of printable text.
/// 403 unless `who` is an operator or an admin signed in (not a staff API key): what
/// starts a withdrawal of the staff member's own (a void, an acceleration). `does` and
/// `act` name the action in the messages ("voids", "void").
///
/// # Errors
/// 403 naming what is missing.
pub(crate) fn staff_signed_in(who: &Principal, does: &str, act: &str) -> Result<(), ApiError> {
    if !matches!(who.role, Role::Operator | Role::Admin) {
        return Err(ApiError::forbidden(format!(
            "only an operator or an admin {does} a withdrawal"
        )));
    }
    if matches!(who.via, accounts::Via::ApiKey { .. }) {
        return Err(ApiError::forbidden(format!(
            "staff {act} withdrawals signed in, not with an API key"
        )));
    }
    Ok(())
}

pub(crate) fn one_line_reason(reason: Option<&str>) -> Result<Option<&str>, ApiError> {
    let reason = reason.map(str::trim).filter(|r| !r.is_empty());
    if reason.is_some_and(|r| r.chars().count() > MAX_CANCEL_REASON) {
        return Err(ApiError::bad_request(format!(
            "reason is longer than {MAX_CANCEL_REASON} characters"
        )));
    }
    if reason.is_some_and(|r| r.chars().any(char::is_control)) {
        return Err(ApiError::bad_request(
            "reason must be one line of printable text (it goes into the customer's email)",
        ));
    }
    Ok(reason)
}

/// Cancels a withdrawal before its signing round is exported (the body of
/// `POST /v1/withdrawals/{id}/cancel`): its customer may (signed in, or with a
/// `withdraw`-scoped API key), and so may operators and admins signed in, with a reason.
/// Once a round is exported it is out of the coordinator's hands: the request carries a
/// signed decision the offline signers still accept, and with all their answers anyone
/// can finish the transaction, so its coins (or, on Ethereum, its nonce) stay taken; a
/// freeze keeps it from being broadcast. One transaction: the state, the coins released,
/// the velocity totals (an approved withdrawal stops counting), the audit entry and the
/// customer's notification.
///
/// # Errors
/// 404 for another customer's withdrawal; 403 for approvers, the back office and staff
/// API keys; 400 for a missing, long or unprintable reason; 409 once its round is
/// exported, or when it is finished or already cancelled.
pub async fn cancel(
    tx: &mut Tx<'_>,
    app: &App,
    who: &Principal,
    id: &str,
    req: &NewCancel,
) -> Result<(axum::http::StatusCode, serde_json::Value), ApiError> {
    let now = app.now();
    let w = load(tx, id).await?;
    if who.role != Role::User && matches!(who.via, accounts::Via::ApiKey { .. }) {
        return Err(ApiError::forbidden(
            "staff cancel withdrawals signed in, not with an API key",
        ));
    }
    let by = match who.role {
        Role::User if w.principal_id == who.id => "the customer",
        Role::User => return Err(ApiError::not_found("withdrawal")),
        Role::Operator => "an operator",
        Role::Admin => "an admin",
        Role::Approver | Role::Service => {
            return Err(ApiError::forbidden(
                "only the customer, an operator or an admin cancels a withdrawal",
            ))
        }
    };
    let reason = one_line_reason(req.reason.as_deref())?;
    if who.role != Role::User && reason.is_none() {
        return Err(ApiError::bad_request(
            "an operator's or admin's cancellation needs a reason (it is audited and sent to the customer)",
        ));
    }
    match w.state.as_str() {
        "pending_approval" | "approved" => {}
        "signing" | "signed" => {
            return Err(ApiError::conflict(
                "round_exported",
                format!(
                    "withdrawal is {}: its signing round is out, and the signers can still complete it, so its {} stay taken; freeze the account to keep it from being broadcast",
                    w.state,
                    if w.eth_intent.is_some() { "nonce and presignature" } else { "coins" }
                ),
            ))
        }
        "cancelled" => {
            return Err(ApiError::conflict(
                "already_cancelled",
                "withdrawal is already cancelled",
            ))
        }
        other => {
            return Err(ApiError::conflict(
                "too_late",
                format!("withdrawal is {other}; only one whose signing round is not out yet can be cancelled"),
            ))
        }
    }
    let why = match reason {
        Some(r) => format!("cancelled by {by}: {r}"),
        None => format!("cancelled by {by}"),
    };
    transition(
        tx,
        &w,
        "cancelled",
        now,
        "failure",
        &[Val::Text(Some(why.clone()))],
    )
    .await?;
    crate::accelerate::forget_parent_change(tx, &w).await?;
    let released = sqlx::query(
        "UPDATE utxos SET reserved_by = NULL WHERE reserved_by = $1 AND spent_by IS NULL",
    )
    .bind(&w.id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    crate::audit::append(
        tx,
        now,
        "withdrawal.cancelled",
        &who.id,
        &w.id,
        &serde_json::json!({ "from": w.state, "by": who.role.as_str(), "reason": reason, "coins_released": released }),
    )
    .await?;
    if w.has_customer() {
        crate::notify::enqueue(
            tx,
            app,
            Some(&w.principal_id),
            "withdrawal.cancelled",
            serde_json::json!({ "withdrawal": w.id, "reason": why }),
        )
        .await?;
    }
    let w = load(tx, &w.id).await?;
    let v = view(tx, app, &w).await?;
    Ok((
        axum::http::StatusCode::OK,
        serde_json::to_value(v).map_err(ApiError::internal)?,
    ))
}

/// A void (`POST /v1/withdrawals/{id}/void`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
pub struct NewVoid {
    /// Why, for the audit log (required; one line, at most 500 characters).
    #[serde(default)]
    pub reason: Option<String>,
}

/// What a void pays and how, per chain.
struct VoidTx {
    /// The policy's asset: `BTC`, or `ETH` for any Ethereum withdrawal (its void is a plain
    /// ether transfer).
    asset: String,
    /// The wallet's own address it pays.
    address: String,
    /// Bitcoin: the PSBT (base64) and its txid.
    psbt: Option<String>,
    txid: Option<String>,
    /// Ethereum: the intent digest (hex) of the 0-value transfer to the wallet itself.
    eth_intent: Option<String>,
    /// For the audit entry.
    details: serde_json::Value,
}

/// A Bitcoin void: the original's coins, in its order, to one new change address, at the
/// original's fee plus the relay fee (or the configured rate, if higher).
async fn btc_void(tx: &mut Tx<'_>, app: &App, w: &Row_) -> Result<VoidTx, ApiError> {
    let wallet = app.wallet()?.clone();
    let original = Psbt::deserialize(
        &B64.decode(w.psbt.clone().unwrap_or_default())
            .map_err(ApiError::internal)?,
    )
    .map_err(ApiError::internal)?;
    // The original's coins, in its order, from the coin set (never from the PSBT alone).
    let rows = sqlx::query(
        "SELECT outpoint, amount, script, branch, address_index, spent_by FROM utxos WHERE reserved_by = $1",
    )
    .bind(&w.id)
    .fetch_all(&mut **tx)
    .await?;
    let mut coins = Vec::with_capacity(original.unsigned_tx.input.len());
    let mut spent_in = Amount::ZERO;
    for input in &original.unsigned_tx.input {
        let outpoint = input.previous_output.to_string();
        let mut found = None;
        for r in &rows {
            if text(r, "outpoint")? == outpoint {
                found = Some(r);
            }
        }
        let r = found.ok_or_else(|| {
            ApiError::internal(format!("coin {outpoint} of {} is not reserved by it", w.id))
        })?;
        if let Some(by) = opt_text(r, "spent_by")? {
            return Err(ApiError::conflict(
                "already_spent",
                format!("coin {outpoint} of withdrawal {} is already spent by {by}; there is nothing to void", w.id),
            ));
        }
        let coin = wallet_utxo(r)?;
        spent_in += coin.txout.value;
        coins.push(coin);
    }
    let paid: Amount = original.unsigned_tx.output.iter().map(|o| o.value).sum();
    let replaced_fee = spent_in.checked_sub(paid).ok_or_else(|| {
        ApiError::internal(format!("withdrawal {} pays more than it spends", w.id))
    })?;
    let change_index = claim_change_index(tx, app, &wallet).await?;
    wallet.prepare_change_after(change_index);
    let fee_rate = FeeRate::from_sat_per_vb(app.config.wallet.fee_rate_sat_vb)
        .unwrap_or(FeeRate::BROADCAST_MIN);
    // The original's signed weight, as the signers compute it.
    let replaced_weight =
        custody_bitcoin::inspect_psbt(&wallet.descriptor, &original, &InspectPolicy::default())
            .map(|i| bitcoin::Weight::from_wu(i.weight_wu))
            .map_err(|e| {
                ApiError::internal(format!("withdrawal {} does not inspect: {e}", w.id))
            })?;
    let psbt = custody_bitcoin::build_replacement(
        &wallet.descriptor,
        &coins,
        replaced_fee,
        replaced_weight,
        &BuildOptions::new(fee_rate, change_index),
    )
    .map_err(|e| ApiError::conflict("cannot_build", format!("cannot build the void: {e}")))?;
    let txid = psbt.unsigned_tx.compute_txid().to_string();
    let change = wallet
        .descriptor
        .address(custody_bitcoin::Branch::Change, change_index)
        .map_err(ApiError::internal)?
        .to_string();
    Ok(VoidTx {
        asset: w.asset.clone(),
        address: change.clone(),
        psbt: Some(B64.encode(psbt.serialize())),
        txid: Some(txid.clone()),
        eth_intent: None,
        details: serde_json::json!({
            "txid": txid, "change_address": change, "replaced_fee_sat": replaced_fee.to_sat(),
        }),
    })
}

/// An Ethereum void: 0 ETH to the wallet itself, signed later with the original's nonce
/// (its round sets the nonce and fees above the original's; `eth::export_round`).
fn eth_void(app: &App, w: &Row_) -> Result<VoidTx, ApiError> {
    let wallet = app.eth()?;
    let nonce = w.eth_nonce.ok_or_else(|| {
        ApiError::internal(format!("withdrawal {} has a round but no nonce", w.id))
    })?;
    let template = crate::eth::template(wallet, &crate::eth::EthAsset::Eth, wallet.address, 0)?;
    Ok(VoidTx {
        asset: crate::eth::ASSET_ETH.to_owned(),
        address: wallet.address.to_checksum(None),
        psbt: None,
        txid: None,
        eth_intent: Some(hex::encode(template.intent_digest())),
        details: serde_json::json!({ "nonce": nonce }),
    })
}

/// Starts the void of a withdrawal whose signing round is out but which must never pay
/// (the body of `POST /v1/withdrawals/{id}/void`; operators and admins, signed in, with a
/// reason). The void is a withdrawal of its own (`voids` names the original), requested by
/// the staff member, whose transaction conflicts with the original and moves nothing out
/// of the wallet: on Bitcoin it spends exactly the original's coins to a new change
/// address, paying the original's fee plus the relay fee so it also displaces the original
/// from any mempool; on Ethereum it sends 0 ETH to the wallet itself with the original's
/// nonce, its round choosing fees above the original's. It needs the approvals the policy
/// asks for an internal transfer of the asset (a rule covering amount 0), and then goes
/// through the same round, answers and broadcast gates as any withdrawal (holds are the
/// staff member's, freezes apply). Meanwhile the coordinator never broadcasts the
/// original; once the void confirms, the original is cancelled and its customer told. If
/// the original confirms first (someone with every answer broadcast it), it is recorded
/// as confirmed and the void fails.
///
/// # Errors
/// 403 for anyone but operators and admins signed in; 400 without a one-line reason; 409
/// when the withdrawal's round is not out (cancel it instead), it was sent, it is itself
/// a void, or a void is already under way; 422 when the policy allows no internal
/// transfer.
pub async fn void(
    tx: &mut Tx<'_>,
    app: &App,
    who: &Principal,
    id: &str,
    req: &NewVoid,
) -> Result<(axum::http::StatusCode, serde_json::Value), ApiError> {
    let now = app.now();
    staff_signed_in(who, "voids", "void")?;
    let reason = one_line_reason(req.reason.as_deref())?
        .ok_or_else(|| ApiError::bad_request("a void needs a reason (it is audited)"))?;
    let w = load(tx, id).await?;
    if let Some(original) = &w.voids {
        return Err(ApiError::conflict(
            "is_a_void",
            format!("withdrawal {} is itself the void of {original}; cancel it before its round instead", w.id),
        ));
    }
    match w.state.as_str() {
        "signing" | "signed" => {}
        "pending_approval" | "approved" => {
            return Err(ApiError::conflict(
                "not_exported",
                format!("withdrawal is {}: its signing round is not out, so cancel it instead", w.state),
            ))
        }
        other => {
            return Err(ApiError::conflict(
                "too_late",
                format!("withdrawal is {other}; only one whose signing round is out and that was not sent can be voided"),
            ))
        }
    }
    // Another void only once every live one's round is out (its answers may be lost, or a
    // signer may refuse it): they all conflict with the original, the first mined wins.
    for (v, state, _) in live_voids(tx, &w.id).await? {
        if !matches!(state.as_str(), "signing" | "signed") {
            return Err(ApiError::conflict(
                "void_exists",
                format!("withdrawal {} is already being voided by {v} ({state}); cancel that void before its round, or let it go on", w.id),
            ));
        }
    }
    // The original's version moves, so a broadcast or another void racing this request
    // fails its own compare-and-set (or this one does).
    let bumped = sqlx::query(
        "UPDATE withdrawals SET version = version + 1, updated_at = $1 \
         WHERE id = $2 AND state = $3 AND version = $4",
    )
    .bind(now)
    .bind(&w.id)
    .bind(&w.state)
    .bind(w.version)
    .execute(&mut **tx)
    .await?;
    if bumped.rows_affected() != 1 {
        return Err(concurrent_change(&w.id));
    }
    let made = if w.is_eth() {
        eth_void(app, &w)?
    } else {
        btc_void(tx, app, &w).await?
    };
    let policy = crate::policy::current(tx, app, now).await?;
    let internal = Withdrawal {
        asset: made.asset.clone(),
        payments: Vec::new(),
    };
    let required = match policy.evaluate(&internal, now_u64(now)) {
        Verdict::Allow {
            required_approvals, ..
        } => i64::from(required_approvals),
        Verdict::Deny { reason } => {
            return Err(ApiError::refused(
                "policy_denied",
                format!(
                "the policy in force does not allow the void, an internal transfer of {}: {reason}",
                made.asset
            ),
            ))
        }
    };
    let void_id = Uuid::new_v4().to_string();
    let state = if required == 0 {
        "approved"
    } else {
        "pending_approval"
    };
    sqlx::query(
        "INSERT INTO withdrawals (id, principal_id, asset, address, amount, state, version, created_at, \
         updated_at, hold_until, risk_score, risk_reasons, policy_hash, required_approvals, psbt, txid, \
         amount_text, eth_intent, voids) \
         VALUES ($1, $2, $3, $4, 0, $5, 1, $6, $7, 0, 0, '[]', $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(void_id.clone())
    .bind(who.id.clone())
    .bind(made.asset.clone())
    .bind(made.address.clone())
    .bind(state)
    .bind(now)
    .bind(now)
    .bind(hex::encode(policy.hash()))
    .bind(required)
    .bind(made.psbt.clone())
    .bind(made.txid.clone())
    .bind(made.eth_intent.as_ref().map(|_| "0".to_owned()))
    .bind(made.eth_intent.clone())
    .bind(w.id.clone())
    .execute(&mut **tx)
    .await?;
    crate::audit::append(
        tx,
        now,
        "withdrawal.void_requested",
        &who.id,
        &w.id,
        &serde_json::json!({
            "void": void_id, "by": who.role.as_str(), "reason": reason, "from": w.state,
            "to": made.address, "transaction": made.details,
        }),
    )
    .await?;
    crate::audit::append(
        tx,
        now,
        "withdrawal.void_created",
        &who.id,
        &void_id,
        &serde_json::json!({ "voids": w.id, "required_approvals": required }),
    )
    .await?;
    let v = load(tx, &void_id).await?;
    let view = view(tx, app, &v).await?;
    Ok((
        axum::http::StatusCode::CREATED,
        serde_json::to_value(view).map_err(ApiError::internal)?,
    ))
}

pub(crate) async fn approvals_of(tx: &mut Tx<'_>, id: &str) -> Result<Vec<Approval>, ApiError> {
    let rows = sqlx::query("SELECT approver_key, signature FROM approvals WHERE withdrawal_id = $1 ORDER BY approved_at, approver_key")
        .bind(id)
        .fetch_all(&mut **tx)
        .await?;
    rows.iter()
        .map(|r| {
            let key: [u8; 32] = hex::decode(text(r, "approver_key")?)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| ApiError::internal("bad approver key"))?;
            let signature: [u8; 64] = hex::decode(text(r, "signature")?)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| ApiError::internal("bad approval signature"))?;
            Ok(Approval {
                approver_key: key,
                signature,
            })
        })
        .collect()
}

/// The gates every signing round and broadcast passes at that moment: not frozen, no
/// active hold, the policy the withdrawal was approved under still the one in force and
/// still allowing it, the approvals valid. Returns the signed decision that proves it.
/// What the transaction itself pays, as a signer sees it: the PSBT is inspected against the
/// wallet (change proved by re-derivation is not a payment), and its txid must still be
/// the one the approvers signed. Database columns are never trusted for this.
fn withdrawal_from_psbt(app: &App, w: &Row_) -> Result<Withdrawal, ApiError> {
    let wallet = app.wallet()?.clone();
    let psbt = Psbt::deserialize(
        &B64.decode(w.psbt.clone().unwrap_or_default())
            .map_err(ApiError::internal)?,
    )
    .map_err(ApiError::internal)?;
    let txid = psbt.unsigned_tx.compute_txid().to_string();
    if Some(&txid) != w.txid.as_ref() {
        return Err(ApiError::refused(
            "transaction_changed",
            format!(
                "the stored transaction {txid} is not the one approved ({}); refusing",
                w.txid.as_deref().unwrap_or("none")
            ),
        ));
    }
    if let Some(raw) = &w.final_tx {
        let signed: bitcoin::Transaction =
            bitcoin::consensus::encode::deserialize_hex(raw).map_err(ApiError::internal)?;
        if signed.compute_txid().to_string() != txid {
            return Err(ApiError::refused(
                "transaction_changed",
                format!(
                    "the signed transaction {} is not the one approved ({txid}); refusing",
                    signed.compute_txid()
                ),
            ));
        }
    }
    let inspection =
        custody_bitcoin::inspect_psbt(&wallet.descriptor, &psbt, &InspectPolicy::default())
            .map_err(|e| ApiError::refused("inspection_failed", e.to_string()))?;
    // As the signers count them: every output not proved to be change is a payment (one
    // to a receive address of the wallet too).
    let payments = inspection
        .outputs
        .iter()
        .filter(|o| !matches!(o.ownership, custody_bitcoin::Ownership::Change { .. }))
        .map(|o| custody_policy::Payment {
            address: o
                .address
                .clone()
                .unwrap_or_else(|| format!("script:{}", o.script_hex)),
            amount: u128::from(o.amount_sat),
        })
        .collect();
    Ok(Withdrawal {
        asset: w.asset.clone(),
        payments,
    })
}

/// What an Ethereum transaction pays, for the gates: it must carry the approved intent.
fn withdrawal_from_eth(
    app: &App,
    w: &Row_,
    eth_tx: &custody_ethereum::EthTransaction,
) -> Result<Withdrawal, ApiError> {
    let intent = hex::encode(eth_tx.intent_digest());
    if Some(&intent) != w.eth_intent.as_ref() {
        return Err(ApiError::refused(
            "transaction_changed",
            format!(
                "the transaction's intent {intent} is not the one approved ({}); refusing",
                w.eth_intent.as_deref().unwrap_or("none")
            ),
        ));
    }
    // As the signers map it: 0 ETH to the wallet itself (a void) pays no one.
    eth_tx
        .policy_withdrawal_from(app.eth()?.address)
        .map_err(|e| ApiError::refused("policy_denied", format!("policy cannot allow it: {e}")))
}

/// The gates (see above). `eth_tx` is the Ethereum transaction about to be signed or
/// broadcast; `None` for Bitcoin, whose PSBT is stored.
pub(crate) async fn gates(
    tx: &mut Tx<'_>,
    app: &App,
    w: &Row_,
    eth_tx: Option<&custody_ethereum::EthTransaction>,
) -> Result<(Decision, std::sync::Arc<VerifiedPolicy>), ApiError> {
    let now = app.now();
    risk::ensure_not_frozen(tx, &w.principal_id).await?;
    // A child only while what it pays for can still confirm.
    crate::accelerate::gate(tx, w).await?;
    // A void only while its original can still be voided.
    if let Some(original) = &w.voids {
        let o = load(tx, original).await?;
        if !matches!(o.state.as_str(), "signing" | "signed") {
            return Err(ApiError::conflict(
                "original_moved",
                format!(
                    "the withdrawal this void replaces, {}, is {}: there is nothing to void",
                    o.id, o.state
                ),
            ));
        }
    }
    // The active holds, and the end of the latest hold that applied to this withdrawal
    // (once none is active, all have passed: signers refuse before it by their own clocks).
    let (holds, ended) = risk::holds_for(tx, &w.principal_id, &w.id, now).await?;
    if let Some(latest) = holds.first() {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "hold_active",
            format!(
                "withdrawal is on hold until {}: {}",
                crate::clock::rfc3339(latest.until),
                holds
                    .iter()
                    .map(|h| h.reason.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ));
    }
    let policy = crate::policy::current(tx, app, now).await?;
    if hex::encode(policy.hash()) != w.policy_hash {
        return Err(ApiError::refused(
            "policy_changed",
            format!(
                "the policy changed since this withdrawal was approved (now version {}); cancel and request it again",
                policy.document().version
            ),
        ));
    }
    let tx_digest =
        transaction_digest(w)?.ok_or_else(|| ApiError::internal("withdrawal without txid"))?;
    let hold_until = ended.unwrap_or(0).min(now);
    let mut decision = Decision {
        policy_hash: *policy.hash(),
        withdrawal_id: w.id.clone(),
        transaction_digest: tx_digest,
        outcome: Outcome::Approved,
        hold_until: u64::try_from(hold_until).unwrap_or(0),
        approvals: approvals_of(tx, &w.id).await?,
        coordinator_signature: [0; 64],
    };
    decision.sign(&app.identity, &mut rand_core::OsRng);
    let withdrawal = match eth_tx {
        Some(eth_tx) => withdrawal_from_eth(app, w, eth_tx)?,
        None => withdrawal_from_psbt(app, w)?,
    };
    // An internal transfer is in no total to leave out (and no limit checks it).
    let except = w.has_customer().then(|| velocity::Except {
        id: &w.id,
        state: &w.state,
        created_at: w.created_at,
        amount: w.units(),
    });
    let used = velocity::usage(tx, &policy, &w.asset, now, except).await?;
    if let Verdict::Deny { reason } =
        policy.evaluate_with_usage(&withdrawal, now_u64(now), |limit| used.of(limit))
    {
        return Err(ApiError::refused(
            "policy_denied",
            format!("policy denies the withdrawal now: {reason}"),
        ));
    }
    // The same check every signer makes, so the coordinator never sends what a signer
    // would refuse.
    verify_decision(
        &decision,
        &policy,
        &withdrawal,
        &decision.transaction_digest.clone(),
        now_u64(now),
    )
    .map_err(|e| ApiError::refused("decision_invalid", e.to_string()))?;
    Ok((decision, policy))
}

/// A signing round request.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct NewRound {
    /// The participant indexes (1-based, as in the DKG plan) of the signers who will answer.
    pub signers: Vec<u16>,
}

/// A signing round for the air gap.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RoundView {
    /// The withdrawal.
    pub withdrawal_id: String,
    /// Bitcoin: the request PSBT (base64) with the custody signing request and the signed
    /// decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psbt: Option<String>,
    /// Ethereum: the signing request, decision and presignature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eth: Option<crate::eth::EthRound>,
    /// The chosen signers.
    pub signers: Vec<u16>,
    /// Suggested USB file name.
    pub file_name: String,
}

/// Exports the signing round (the body of `POST /v1/withdrawals/{id}/round`). Repeating
/// it returns the same round.
///
/// # Errors
/// The gates' refusals; 409 when signers have too few commitments.
pub async fn export_round(
    tx: &mut Tx<'_>,
    app: &App,
    operator: &Principal,
    id: &str,
    req: &NewRound,
) -> Result<(axum::http::StatusCode, serde_json::Value), ApiError> {
    let now = app.now();
    if operator.role != Role::Operator {
        return Err(ApiError::forbidden("only operators run signing rounds"));
    }
    let w = load(tx, id).await?;
    if w.is_eth() {
        return crate::eth::export_round(tx, app, operator, w, &req.signers).await;
    }
    let file_name = format!("withdrawal-{}.psbt", &w.id[..8.min(w.id.len())]);
    if w.state == "signing" {
        let psbt = w.psbt.clone().unwrap_or_default();
        let signers: Vec<u16> =
            serde_json::from_str(w.signers.as_deref().unwrap_or("[]")).unwrap_or_default();
        let v = RoundView {
            withdrawal_id: w.id,
            psbt: Some(psbt),
            eth: None,
            signers,
            file_name,
        };
        return Ok((
            axum::http::StatusCode::OK,
            serde_json::to_value(v).map_err(ApiError::internal)?,
        ));
    }
    if w.state != "approved" {
        return Err(ApiError::conflict(
            "not_approved",
            format!("withdrawal is {}, not approved", w.state),
        ));
    }
    let (decision, _policy) = gates(tx, app, &w, None).await?;
    let wallet = app.wallet()?.clone();
    let mut psbt = Psbt::deserialize(
        &B64.decode(w.psbt.clone().unwrap_or_default())
            .map_err(ApiError::internal)?,
    )
    .map_err(ApiError::internal)?;
    let mut signers = req.signers.clone();
    signers.sort_unstable();
    signers.dedup();
    let mut pool = CommitmentPool::new(&wallet.group);
    for &s in &signers {
        let rows = sqlx::query(
            "SELECT commitment FROM commitments WHERE signer = $1 AND used_by IS NULL ORDER BY received_at, commitment_id",
        )
        .bind(i64::from(s))
        .fetch_all(&mut **tx)
        .await?;
        for r in &rows {
            let batch = CommitmentBatch::decode(
                &hex::decode(text(r, "commitment")?).map_err(ApiError::internal)?,
            )
            .map_err(ApiError::internal)?;
            pool.add_batch(&batch).map_err(ApiError::internal)?;
        }
    }
    let mut session = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut session);
    let request = request_signatures(
        &wallet.descriptor,
        &wallet.group,
        &mut psbt,
        &signers,
        &mut pool,
        session,
        &InspectPolicy::default(),
    )
    .map_err(|e| {
        ApiError::conflict(
            "cannot_request",
            format!("cannot build the signing request: {e}"),
        )
    })?;
    for item in request.items() {
        for (signer, (cid, _)) in &item.commitments {
            let done = sqlx::query(
                "UPDATE commitments SET used_by = $1 WHERE signer = $2 AND commitment_id = $3 AND used_by IS NULL",
            )
            .bind(&w.id)
            .bind(i64::from(*signer))
            .bind(cid.to_string())
            .execute(&mut **tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(ApiError::conflict(
                    "commitment_race",
                    "a commitment was taken by another round; retry",
                ));
            }
        }
    }
    custody_bitcoin::fields::set_decision(&mut psbt, &decision.encode());
    let encoded = B64.encode(psbt.serialize());
    transition(
        tx,
        &w,
        "signing",
        now,
        "psbt, session_id, signers",
        &[
            Val::Text(Some(encoded.clone())),
            Val::Text(Some(hex::encode(session))),
            Val::Text(Some(serde_json::to_string(&signers).unwrap_or_default())),
        ],
    )
    .await?;
    crate::audit::append(
        tx,
        now,
        "withdrawal.round_exported",
        &operator.id,
        &w.id,
        &serde_json::json!({ "signers": signers, "session": hex::encode(session), "request_digest": hex::encode(request.digest()) }),
    )
    .await?;
    let v = RoundView {
        withdrawal_id: w.id,
        psbt: Some(encoded),
        eth: None,
        signers,
        file_name,
    };
    Ok((
        axum::http::StatusCode::OK,
        serde_json::to_value(v).map_err(ApiError::internal)?,
    ))
}

/// Signers' answers.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct NewShares {
    /// Bitcoin: a signer's answer PSBT (base64), as `custody-signer sign` wrote it.
    pub psbt: Option<String>,
    /// Ethereum: a signer's partial signature (hex), as `custody-signer eth sign` wrote it.
    pub partial_signature: Option<String>,
}

/// Imports one signer's answer; once every chosen signer answered, aggregates, finalizes
/// and verifies the transaction with libbitcoinconsensus (state `signed`).
///
/// # Errors
/// 400 for an answer to another transaction or malformed shares; 422 naming cheating
/// signers.
pub async fn import_shares(
    tx: &mut Tx<'_>,
    app: &App,
    operator: &Principal,
    id: &str,
    req: &NewShares,
) -> Result<(axum::http::StatusCode, serde_json::Value), ApiError> {
    let now = app.now();
    if operator.role != Role::Operator {
        return Err(ApiError::forbidden(
            "only operators import signature shares",
        ));
    }
    let w = load(tx, id).await?;
    if w.is_eth() {
        let partial = req.partial_signature.as_deref().ok_or_else(|| {
            ApiError::bad_request("an Ethereum withdrawal takes partial_signature, not psbt")
        })?;
        return crate::eth::import_partial(tx, app, operator, w, partial).await;
    }
    if w.state != "signing" {
        return Err(ApiError::conflict(
            "not_signing",
            format!("withdrawal is {}, not signing", w.state),
        ));
    }
    let wallet = app.wallet()?.clone();
    let mut psbt = Psbt::deserialize(
        &B64.decode(w.psbt.clone().unwrap_or_default())
            .map_err(ApiError::internal)?,
    )
    .map_err(ApiError::internal)?;
    let answer_bytes = B64
        .decode(
            req.psbt
                .as_deref()
                .ok_or_else(|| ApiError::bad_request("a Bitcoin withdrawal takes psbt"))?
                .trim(),
        )
        .map_err(|_| ApiError::bad_request("psbt must be base64"))?;
    let answer = Psbt::deserialize(&answer_bytes)
        .map_err(|e| ApiError::bad_request(format!("not a PSBT: {e}")))?;
    custody_bitcoin::absorb_response(&mut psbt, &answer)
        .map_err(|e| ApiError::bad_request(format!("cannot use this answer: {e}")))?;
    let signers: Vec<u16> =
        serde_json::from_str(w.signers.as_deref().unwrap_or("[]")).unwrap_or_default();
    let have = custody_bitcoin::fields::signature_shares(&psbt).map_err(ApiError::internal)?;
    let answered: Vec<u16> = have.iter().map(|s| s.signer).collect();
    let complete = signers.iter().all(|s| answered.contains(s));
    let mut encoded = B64.encode(psbt.serialize());
    if !complete {
        let kept = sqlx::query(
            "UPDATE withdrawals SET psbt = $1, updated_at = $2, version = version + 1 \
             WHERE id = $3 AND version = $4 AND state = 'signing'",
        )
        .bind(&encoded)
        .bind(now)
        .bind(&w.id)
        .bind(w.version)
        .execute(&mut **tx)
        .await?;
        if kept.rows_affected() != 1 {
            return Err(concurrent_change(&w.id));
        }
        crate::audit::append(
            tx,
            now,
            "withdrawal.shares_imported",
            &operator.id,
            &w.id,
            &serde_json::json!({ "answered": answered }),
        )
        .await?;
        let body = serde_json::json!({ "withdrawal_id": w.id, "state": "signing", "answered": answered, "waiting_for": signers.iter().filter(|s| !answered.contains(s)).collect::<Vec<_>>() });
        return Ok((axum::http::StatusCode::ACCEPTED, body));
    }
    aggregate_psbt(
        &wallet.descriptor,
        &wallet.group,
        &mut psbt,
        &InspectPolicy::default(),
    )
    .map_err(|e| ApiError::refused("aggregate_failed", format!("cannot aggregate: {e}")))?;
    finalize_psbt(&mut psbt).map_err(|e| ApiError::refused("finalize_failed", e.to_string()))?;
    let tx_final = extract_verified(&psbt)
        .map_err(|e| ApiError::refused("consensus_failed", e.to_string()))?;
    encoded = B64.encode(psbt.serialize());
    let raw = bitcoin::consensus::encode::serialize_hex(&tx_final);
    transition(
        tx,
        &w,
        "signed",
        now,
        "signed_psbt, final_tx",
        &[Val::Text(Some(encoded)), Val::Text(Some(raw))],
    )
    .await?;
    crate::audit::append(
        tx,
        now,
        "withdrawal.signed",
        &operator.id,
        &w.id,
        &serde_json::json!({ "txid": tx_final.compute_txid().to_string(), "wtxid": tx_final.compute_wtxid().to_string(), "verified": "libbitcoinconsensus" }),
    )
    .await?;
    let body = serde_json::json!({ "withdrawal_id": w.id, "state": "signed", "txid": tx_final.compute_txid().to_string() });
    Ok((axum::http::StatusCode::OK, body))
}

/// Broadcasts a signed withdrawal after the gates pass at this moment. The move to
/// `broadcasting` commits before the transaction leaves, so a second caller or process
/// gets 409; a crash after it is resumed by [`resume`], which re-sends the same
/// transaction (broadcasting the same transaction again is harmless).
///
/// # Errors
/// The gates' refusals; 502 when the chain backend fails (the withdrawal stays
/// `broadcasting` and is retried).
pub async fn broadcast(
    app: &App,
    operator: &Principal,
    id: &str,
) -> Result<serde_json::Value, ApiError> {
    let now = app.now();
    if operator.role != Role::Operator {
        return Err(ApiError::forbidden("only operators broadcast"));
    }
    let mut tx = app.db.begin().await?;
    let w = load(&mut tx, id).await?;
    if let Some(v) = live_void(&mut tx, &w.id).await? {
        return Err(ApiError::conflict(
            "being_voided",
            format!("withdrawal {} is being voided by {v}; it is never broadcast by this coordinator (cancel the void before its round to send this one)", w.id),
        ));
    }
    if w.is_eth() {
        return crate::eth::broadcast(app, operator, tx, w).await;
    }
    let chain = app
        .chain
        .clone()
        .ok_or_else(|| ApiError::conflict("no_chain", "no chain backend is configured"))?;
    if w.state != "signed" {
        return Err(ApiError::conflict(
            "not_signed",
            format!("withdrawal is {}, not signed", w.state),
        ));
    }
    gates(&mut tx, app, &w, None).await?;
    transition(&mut tx, &w, "broadcasting", now, "", &[]).await?;
    crate::audit::append(
        &mut tx,
        now,
        "withdrawal.broadcasting",
        &operator.id,
        &w.id,
        &serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    send(app, &chain, &w.id).await
}

async fn send(
    app: &App,
    chain: &std::sync::Arc<dyn custody_chain::ChainBackend>,
    id: &str,
) -> Result<serde_json::Value, ApiError> {
    let mut tx = app.db.begin().await?;
    let w = load(&mut tx, id).await?;
    let parents = crate::accelerate::parents_to_send(&mut tx, app, &w).await;
    tx.commit().await?;
    // A child's parents first: a node that dropped them would refuse the child. They were
    // sent before; sending one again is harmless, and its refusal shows in the child's.
    for (parent, raw) in parents {
        let Ok(txn) = bitcoin::consensus::encode::deserialize_hex::<bitcoin::Transaction>(&raw)
        else {
            continue;
        };
        if let Err(e) = chain.broadcast(&txn).await {
            tracing::warn!(withdrawal = %parent, child = %id, error = %e, "the chain backend did not take a child's parent again");
        }
    }
    let raw = w
        .final_tx
        .clone()
        .ok_or_else(|| ApiError::internal("signed withdrawal without transaction"))?;
    let txn: bitcoin::Transaction =
        bitcoin::consensus::encode::deserialize_hex(&raw).map_err(ApiError::internal)?;
    match chain.broadcast(&txn).await {
        Ok(txid) => {
            let txid = txid.to_string();
            let audit = serde_json::json!({ "txid": txid, "backend": chain.name() });
            record_broadcast(app, id, &txid, &audit).await
        }
        Err(e) => Err(record_send_failure(app, id, "the chain backend", &e.to_string()).await),
    }
}

/// Records that the chain took a `broadcasting` withdrawal's transaction `txid`, in one
/// transaction: `broadcast`, a Bitcoin withdrawal's coins spent, the audit entry (`audit`)
/// and the customer's notification. When another process recorded it first there is
/// nothing left to do. Returns the answer to the broadcast request.
///
/// # Errors
/// Storage failure.
pub(crate) async fn record_broadcast(
    app: &App,
    id: &str,
    txid: &str,
    audit: &serde_json::Value,
) -> Result<serde_json::Value, ApiError> {
    let now = app.now();
    let mut tx = app.db.begin().await?;
    let w = load(&mut tx, id).await?;
    if w.state == "broadcasting" {
        transition(
            &mut tx,
            &w,
            "broadcast",
            now,
            "broadcast_at, failure",
            &[Val::Int(now), Val::Text(None)],
        )
        .await?;
        if !w.is_eth() {
            // A void spends the coins its original reserved.
            sqlx::query("UPDATE utxos SET spent_by = $1 WHERE reserved_by = $2")
                .bind(&w.id)
                .bind(w.voids.as_deref().unwrap_or(&w.id))
                .execute(&mut *tx)
                .await?;
        }
        crate::audit::append(&mut tx, now, "withdrawal.broadcast", "system", &w.id, audit).await?;
        if w.has_customer() {
            crate::notify::enqueue(
                &mut tx,
                app,
                Some(&w.principal_id),
                "withdrawal.broadcast",
                serde_json::json!({ "withdrawal": w.id, "txid": txid }),
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(serde_json::json!({ "withdrawal_id": id, "state": "broadcast", "txid": txid }))
}

/// Records why `by` (the chain backend, the Ethereum node) did not take a withdrawal's
/// transaction; it stays `broadcasting` and the worker sends it again. Returns the 502 to
/// answer (or the storage failure that kept the reason from being recorded).
pub(crate) async fn record_send_failure(app: &App, id: &str, by: &str, error: &str) -> ApiError {
    let recorded =
        sqlx::query("UPDATE withdrawals SET failure = $1, updated_at = $2 WHERE id = $3")
            .bind(error.to_owned())
            .bind(app.now())
            .bind(id.to_owned())
            .execute(app.db.pool())
            .await;
    match recorded {
        Ok(_) => ApiError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "broadcast_failed",
            format!(
                "{by} did not take the transaction: {error}; it stays broadcasting and is retried"
            ),
        ),
        Err(e) => e.into(),
    }
}

/// Records that a `broadcast` withdrawal is confirmed, with its audit entry (`audit`).
/// Returns false when it was no longer `broadcast` (another process got there first).
///
/// # Errors
/// Storage failure.
pub(crate) async fn record_confirmed(
    app: &App,
    id: &str,
    audit: &serde_json::Value,
) -> Result<bool, ApiError> {
    let now = app.now();
    let mut tx = app.db.begin().await?;
    let w = load(&mut tx, id).await?;
    if w.state != "broadcast" {
        return Ok(false);
    }
    transition(
        &mut tx,
        &w,
        "confirmed",
        now,
        "confirmed_at",
        &[Val::Int(now)],
    )
    .await?;
    crate::audit::append(&mut tx, now, "withdrawal.confirmed", "system", id, audit).await?;
    crate::accelerate::parent_confirmed(&mut tx, app, &w).await?;
    if let Some(original) = &w.voids {
        voided(&mut tx, app, original, &w).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// The void under way for `id`: one that is not cancelled, failed or rejected.
///
/// # Errors
/// Storage failure.
pub(crate) async fn live_void(tx: &mut Tx<'_>, id: &str) -> Result<Option<String>, ApiError> {
    Ok(live_voids(tx, id)
        .await?
        .into_iter()
        .next()
        .map(|(v, _, _)| v))
}

/// The voids of `id` that are not cancelled, failed or rejected, oldest first: id, state
/// and txid (Bitcoin: from the start; Ethereum: once signed).
///
/// # Errors
/// Storage failure.
pub(crate) async fn live_voids(
    tx: &mut Tx<'_>,
    id: &str,
) -> Result<Vec<(String, String, Option<String>)>, ApiError> {
    let rows = sqlx::query(
        "SELECT id, state, txid FROM withdrawals WHERE voids = $1 \
         AND state NOT IN ('cancelled', 'failed', 'rejected') ORDER BY created_at, id",
    )
    .bind(id)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| Ok((text(r, "id")?, text(r, "state")?, opt_text(r, "txid")?)))
        .collect()
}

/// Forgets coins the wallet learnt of from `txid` while it was unconfirmed and that no
/// withdrawal took: the transaction lost to a conflicting one, so they never exist.
async fn forget_outputs_of(tx: &mut Tx<'_>, txid: Option<&str>) -> Result<u64, ApiError> {
    let Some(txid) = txid.filter(|t| !t.starts_with("0x")) else {
        return Ok(0);
    };
    Ok(sqlx::query(
        "DELETE FROM utxos WHERE outpoint LIKE $1 AND reserved_by IS NULL AND spent_by IS NULL",
    )
    .bind(format!("{txid}:%"))
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

/// Fails the live voids of `original` other than `except`, with `why` (another
/// transaction with their coins or nonce was mined). Returns them.
async fn fail_voids(
    tx: &mut Tx<'_>,
    app: &App,
    original: &str,
    except: Option<&str>,
    why: &str,
) -> Result<Vec<String>, ApiError> {
    let now = app.now();
    let mut failed = Vec::new();
    for (id, state, txid) in live_voids(tx, original).await? {
        if Some(id.as_str()) == except || state == "confirmed" {
            continue;
        }
        let v = load(tx, &id).await?;
        transition(
            tx,
            &v,
            "failed",
            now,
            "failure",
            &[Val::Text(Some(why.to_owned()))],
        )
        .await?;
        forget_outputs_of(tx, txid.as_deref()).await?;
        crate::audit::append(
            tx,
            now,
            "withdrawal.void_failed",
            "system",
            &id,
            &serde_json::json!({ "original": original, "from": state, "reason": why }),
        )
        .await?;
        failed.push(id);
    }
    Ok(failed)
}

/// The void `v` confirmed: its original can never confirm now (its coins are spent), so
/// it is cancelled, with the audit entry and the customer's notification.
async fn voided(tx: &mut Tx<'_>, app: &App, original: &str, v: &Row_) -> Result<(), ApiError> {
    let now = app.now();
    let w = load(tx, original).await?;
    if !matches!(w.state.as_str(), "signing" | "signed") {
        // Nothing moves an original while a void of it is live (its version moved when the
        // void was made; it is never broadcast meanwhile). Recording both would contradict
        // the chain: keep the void `broadcast` and say so at every pass.
        tracing::error!(withdrawal = %w.id, state = %w.state, void = %v.id, "a void confirmed for a withdrawal that is no longer signing or signed; check both on chain");
        return Err(ApiError::internal(format!(
            "void {} confirmed but its original {} is {}",
            v.id, w.id, w.state
        )));
    }
    let why = format!(
        "voided: replaced by {} (transaction {}), which spent its coins back to the wallet",
        v.id,
        v.txid.as_deref().unwrap_or("unknown")
    );
    transition(
        tx,
        &w,
        "cancelled",
        now,
        "failure",
        &[Val::Text(Some(why.clone()))],
    )
    .await?;
    let others = fail_voids(
        tx,
        app,
        &w.id,
        Some(&v.id),
        &format!("another void of {}, {}, was mined first", w.id, v.id),
    )
    .await?;
    forget_outputs_of(tx, w.txid.as_deref()).await?;
    crate::audit::append(
        tx,
        now,
        "withdrawal.voided",
        "system",
        &w.id,
        &serde_json::json!({ "void": v.id, "txid": v.txid, "from": w.state, "other_voids_failed": others }),
    )
    .await?;
    if w.has_customer() {
        crate::notify::enqueue(
            tx,
            app,
            Some(&w.principal_id),
            "withdrawal.cancelled",
            serde_json::json!({ "withdrawal": w.id, "reason": why }),
        )
        .await?;
    }
    Ok(())
}

/// A `signed` void whose transaction someone else sent and the chain mined: recorded as
/// if the coordinator had broadcast it (`broadcasting`, `broadcast` with its coins spent,
/// `confirmed`, which cancels its original), each step audited as found on chain. The
/// caller has checked the transaction is mined deep enough. Returns 1 when it changed; a
/// failure (a race lost to another process, storage) is logged and left for the next
/// pass.
pub(crate) async fn adopt_mined_void(app: &App, id: &str, txid: &str) -> usize {
    let found = serde_json::json!({ "txid": txid, "broadcast_by": "not this coordinator" });
    let adopted = async {
        let now = app.now();
        let mut tx = app.db.begin().await?;
        let v = load(&mut tx, id).await?;
        if v.state != "signed" || v.voids.is_none() {
            return Ok::<bool, ApiError>(false);
        }
        transition(&mut tx, &v, "broadcasting", now, "", &[]).await?;
        crate::audit::append(
            &mut tx,
            now,
            "withdrawal.broadcasting",
            "system",
            id,
            &found,
        )
        .await?;
        tx.commit().await?;
        record_broadcast(app, id, txid, &found).await?;
        record_confirmed(app, id, &found).await
    };
    match adopted.await {
        Ok(true) => 1,
        Ok(false) => 0,
        Err(e) => {
            tracing::warn!(withdrawal = %id, error = %e, "could not record a void found on chain");
            0
        }
    }
}

/// What became of the original of live voids on chain.
pub(crate) enum Original<'a> {
    /// Mined and confirmed: its transaction (`None` on Ethereum when the coordinator never
    /// had every answer, so never learnt its hash).
    Confirmed(Option<&'a str>),
    /// Mined and reverted (Ethereum): its nonce and gas are spent, nothing was paid.
    Reverted(&'a str),
}

/// The original of live voids went out instead of them (someone holding every signer's
/// answer broadcast it): it is recorded as confirmed (or failed, if it reverted), every
/// live void of it failed, coins learnt from the voids forgotten, its customer told and
/// operations alerted, in one transaction. Returns false when there was nothing left to
/// record (another process did, or it moved meanwhile).
///
/// # Errors
/// Storage failure.
pub(crate) async fn original_went_out(
    app: &App,
    id: &str,
    outcome: Original<'_>,
) -> Result<bool, ApiError> {
    let now = app.now();
    let mut tx = app.db.begin().await?;
    let w = load(&mut tx, id).await?;
    if !matches!(w.state.as_str(), "signing" | "signed") || live_void(&mut tx, id).await?.is_none()
    {
        return Ok(false);
    }
    let (txid, shown) = match &outcome {
        Original::Confirmed(Some(t)) | Original::Reverted(t) => {
            (Some(*t), format!("transaction {t}"))
        }
        Original::Confirmed(None) => (
            None,
            "a transaction with its nonce that this coordinator never saw".to_owned(),
        ),
    };
    match &outcome {
        Original::Confirmed(_) => {
            transition(
                &mut tx,
                &w,
                "confirmed",
                now,
                "confirmed_at",
                &[Val::Int(now)],
            )
            .await?;
        }
        Original::Reverted(_) => {
            let reason = "the transaction reverted (gas and nonce spent, nothing paid)".to_owned();
            transition(
                &mut tx,
                &w,
                "failed",
                now,
                "failure",
                &[Val::Text(Some(reason))],
            )
            .await?;
        }
    }
    if let Some(t) = txid.filter(|_| w.is_eth()) {
        sqlx::query("UPDATE withdrawals SET txid = $1 WHERE id = $2")
            .bind(t.to_owned())
            .bind(&w.id)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("UPDATE utxos SET spent_by = $1 WHERE reserved_by = $1")
        .bind(&w.id)
        .execute(&mut *tx)
        .await?;
    let failed = fail_voids(
        &mut tx,
        app,
        &w.id,
        None,
        &format!(
            "the withdrawal it was to void, {}, was mined first ({shown})",
            w.id
        ),
    )
    .await?;
    let (kind, customer) = match outcome {
        Original::Confirmed(_) => ("withdrawal.confirmed", "withdrawal.broadcast"),
        Original::Reverted(_) => ("withdrawal.failed", "withdrawal.failed"),
    };
    crate::audit::append(
        &mut tx,
        now,
        kind,
        "system",
        &w.id,
        &serde_json::json!({ "txid": txid, "nonce": w.eth_nonce, "broadcast_by": "not this coordinator", "voids_failed": failed }),
    )
    .await?;
    let mut told = serde_json::json!({ "withdrawal": w.id });
    if let Some(t) = txid {
        told["txid"] = t.into();
    }
    if w.has_customer() {
        crate::notify::enqueue(&mut tx, app, Some(&w.principal_id), customer, told).await?;
    }
    // A void that lost means the original's answers were complete somewhere else: for the
    // security team, not only the log.
    crate::notify::enqueue(
        &mut tx,
        app,
        None,
        "withdrawal.void_failed",
        serde_json::json!({ "withdrawal": w.id, "voids": failed, "txid": txid }),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Resumes work a crash interrupted: re-sends `broadcasting` withdrawals and marks
/// broadcast ones confirmed once the backend reports a confirmation. Returns how many
/// withdrawals changed.
///
/// # Errors
/// Storage failure.
pub async fn resume(app: &App) -> Result<usize, ApiError> {
    let eth_changed = crate::eth::track(app).await?;
    let Some(chain) = app.chain.clone() else {
        return Ok(eth_changed);
    };
    let rows = sqlx::query(
        "SELECT id, state, txid FROM withdrawals WHERE state IN ('broadcasting', 'broadcast') \
         AND eth_intent IS NULL",
    )
    .fetch_all(app.db.pool())
    .await?;
    let mut changed = eth_changed;
    // Voids signed here but sent by someone else.
    let sent_elsewhere = sqlx::query(
        "SELECT id, txid FROM withdrawals WHERE voids IS NOT NULL AND state = 'signed' \
         AND eth_intent IS NULL",
    )
    .fetch_all(app.db.pool())
    .await?;
    for r in &sent_elsewhere {
        let Some(txid) = opt_text(r, "txid")?.and_then(|t| bitcoin::Txid::from_str(&t).ok()) else {
            continue;
        };
        if let Ok(custody_chain::TxStatus::Confirmed { .. }) = chain.tx_status(&txid).await {
            changed += adopt_mined_void(app, &text(r, "id")?, &txid.to_string()).await;
        }
    }
    // The originals of live voids: one mined first went out instead of them.
    let originals = sqlx::query(
        "SELECT DISTINCT w.id AS id, w.txid AS txid FROM withdrawals v \
         JOIN withdrawals w ON w.id = v.voids \
         WHERE v.voids IS NOT NULL AND v.state NOT IN ('cancelled', 'failed', 'rejected', 'confirmed') \
         AND w.state IN ('signing', 'signed') AND w.eth_intent IS NULL",
    )
    .fetch_all(app.db.pool())
    .await?;
    for r in &originals {
        let Some(txid) = opt_text(r, "txid")?.and_then(|t| bitcoin::Txid::from_str(&t).ok()) else {
            continue;
        };
        if let Ok(custody_chain::TxStatus::Confirmed { .. }) = chain.tx_status(&txid).await {
            let (id, txid) = (text(r, "id")?, txid.to_string());
            match original_went_out(app, &id, Original::Confirmed(Some(&txid))).await {
                Ok(true) => changed += 1,
                Ok(false) => {}
                // Another process recorded it meanwhile, or storage failed: next pass.
                Err(e) => {
                    tracing::warn!(withdrawal = %id, error = %e, "could not record the original of a void")
                }
            }
        }
    }
    for r in &rows {
        let id = text(r, "id")?;
        match text(r, "state")?.as_str() {
            "broadcasting" => {
                if send(app, &chain, &id).await.is_ok() {
                    changed += 1;
                }
            }
            _ => {
                let Some(txid) =
                    opt_text(r, "txid")?.and_then(|t| bitcoin::Txid::from_str(&t).ok())
                else {
                    continue;
                };
                if let Ok(custody_chain::TxStatus::Confirmed { .. }) = chain.tx_status(&txid).await
                {
                    let audit = serde_json::json!({ "txid": txid.to_string() });
                    match record_confirmed(app, &id, &audit).await {
                        Ok(true) => changed += 1,
                        Ok(false) => {}
                        // Moved meanwhile (an acceleration of it, another process) or
                        // storage failed: the next pass, without holding up the others.
                        Err(e) => {
                            tracing::warn!(withdrawal = %id, error = %e, "could not record a confirmation")
                        }
                    }
                }
            }
        }
    }
    Ok(changed)
}

/// Tells operations once about each withdrawal sent more than
/// `worker.stuck_after_minutes` ago and still unconfirmed (`withdrawal.stuck`, to the
/// webhook and file sinks: a Bitcoin one is accelerated, ADR 0032), and sets the
/// `custody_withdrawals_stuck` gauge to how many there are. Returns how many were
/// reported now.
///
/// # Errors
/// Storage failure.
pub async fn report_stuck(app: &App) -> Result<usize, ApiError> {
    let after = app.config.worker.stuck_after_minutes;
    if after <= 0 {
        return Ok(0);
    }
    let now = app.now();
    let since = now.saturating_sub(after.saturating_mul(60));
    // The `IN` term is the in-flight partial index's own predicate, which SQLite needs to
    // see to use it (every two seconds, on a table of every withdrawal ever made).
    let rows = sqlx::query(
        "SELECT id, asset, txid, broadcast_at, stuck_alerted_at FROM withdrawals \
         WHERE state IN ('broadcasting', 'broadcast') AND state = 'broadcast' \
         AND broadcast_at <= $1 ORDER BY broadcast_at, id",
    )
    .bind(since)
    .fetch_all(app.db.pool())
    .await?;
    metrics::gauge!("custody_withdrawals_stuck").set(rows.len() as f64);
    let mut reported = 0;
    for r in &rows {
        if opt_int(r, "stuck_alerted_at")?.is_some() {
            continue;
        }
        let id = text(r, "id")?;
        let sent = opt_int(r, "broadcast_at")?.unwrap_or(since);
        let mut tx = app.db.begin().await?;
        // Once, even with several coordinator processes.
        let first = sqlx::query(
            "UPDATE withdrawals SET stuck_alerted_at = $1 WHERE id = $2 AND stuck_alerted_at IS NULL",
        )
        .bind(now)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        if first.rows_affected() != 1 {
            continue;
        }
        crate::notify::enqueue(
            &mut tx,
            app,
            None,
            "withdrawal.stuck",
            serde_json::json!({
                "withdrawal": id, "asset": text(r, "asset")?, "txid": opt_text(r, "txid")?,
                "broadcast_at": sent, "unconfirmed_minutes": (now - sent) / 60,
            }),
        )
        .await?;
        tx.commit().await?;
        tracing::warn!(withdrawal = %id, minutes = (now - sent) / 60, "a withdrawal sent is still unconfirmed");
        reported += 1;
    }
    Ok(reported)
}

/// Adds a signer's commitment batch (encoded `CommitmentBatch`, as carried in the signer's
/// envelope after the envelope's signature was checked). Returns how many were new.
///
/// # Errors
/// 400 for a malformed batch or one for another group key.
pub async fn add_commitments(
    app: &App,
    actor: &str,
    batch: &CommitmentBatch,
) -> Result<usize, ApiError> {
    let now = app.now();
    let wallet = app.wallet()?.clone();
    if batch.group_key != wallet.group.public_key() {
        return Err(ApiError::bad_request(
            "the commitment batch is for another group key",
        ));
    }
    let mut tx = app.db.begin().await?;
    let mut added = 0;
    for (cid, c) in &batch.commitments {
        let single = CommitmentBatch {
            group_key: batch.group_key,
            signer: batch.signer,
            commitments: vec![(*cid, *c)],
        };
        let exists =
            sqlx::query("SELECT used_by FROM commitments WHERE signer = $1 AND commitment_id = $2")
                .bind(i64::from(batch.signer))
                .bind(cid.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_some() {
            continue;
        }
        sqlx::query("INSERT INTO commitments (signer, commitment_id, commitment, received_at) VALUES ($1, $2, $3, $4)")
            .bind(i64::from(batch.signer))
            .bind(cid.to_string())
            .bind(hex::encode(single.encode()))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        added += 1;
    }
    crate::audit::append(
        &mut tx,
        now,
        "commitments.added",
        actor,
        &format!("signer:{}", batch.signer),
        &serde_json::json!({ "added": added }),
    )
    .await?;
    tx.commit().await?;
    Ok(added)
}

/// Removes the coin `outpoint` from the set if it is free (no withdrawal reserved or
/// spent it); returns 1 when it did.
async fn remove_free_coin(tx: &mut Tx<'_>, outpoint: &str) -> Result<usize, ApiError> {
    let done = sqlx::query(
        "DELETE FROM utxos WHERE outpoint = $1 AND reserved_by IS NULL AND spent_by IS NULL",
    )
    .bind(outpoint)
    .execute(&mut **tx)
    .await?;
    Ok(usize::try_from(done.rows_affected()).unwrap_or(0))
}

/// What a coin sync found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoinSync {
    /// Coins known and not spent afterwards (reserved ones included).
    pub utxos: usize,
    /// Coins paying the wallet that wait for `wallet.min_confirmations` before
    /// withdrawals may spend them.
    pub waiting: usize,
    /// Free coins removed from the set: the backend no longer reports them unspent, or
    /// they no longer have their confirmations (a reorganisation).
    pub removed: usize,
}

/// Synchronises the UTXO set from the chain backend over the first `gap` addresses of each
/// branch beyond those used.
///
/// A coin from outside becomes spendable with `wallet.min_confirmations` confirmations:
/// until then its sender can replace the transaction that pays it (every node relays
/// replacements), and a withdrawal built on it would never confirm. The change of the
/// wallet's own transactions — withdrawals the coordinator sent (`broadcasting`,
/// `broadcast`, `confirmed`) — is spendable at once.
/// A free coin that no longer qualifies (its transaction back in the mempool after a
/// reorganisation, a row from before this rule) leaves the set until it does, and so does a
/// free coin of a scanned address the backend does not report at all: spent elsewhere (a
/// database restored from an older backup, a sweep outside the coordinator) or never
/// mined. Reserved and spent coins are never touched.
///
/// # Errors
/// 502 when the backend fails.
pub async fn sync_utxos(app: &App, gap: u32) -> Result<CoinSync, ApiError> {
    let wallet = app.wallet()?.clone();
    let chain = app
        .chain
        .clone()
        .ok_or_else(|| ApiError::conflict("no_chain", "no chain backend is configured"))?;
    let ws =
        sqlx::query("SELECT next_change_index, next_receive_index FROM wallet_state WHERE id = 1")
            .fetch_one(app.db.pool())
            .await?;
    let mut scripts = Vec::new();
    let mut index_of = std::collections::HashMap::new();
    for (branch, used) in [
        (
            custody_bitcoin::Branch::Receive,
            int(&ws, "next_receive_index")?,
        ),
        (
            custody_bitcoin::Branch::Change,
            int(&ws, "next_change_index")?,
        ),
    ] {
        let end = u32::try_from(used).unwrap_or(0).saturating_add(gap);
        for i in 0..end {
            let s = wallet
                .descriptor
                .derive(branch, i)
                .map_err(ApiError::internal)?
                .script_pubkey();
            index_of.insert(s.clone(), (branch, i));
            scripts.push(s);
        }
    }
    let chain_failed = |e: custody_chain::ChainError| {
        ApiError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "chain_failed",
            e.to_string(),
        )
    };
    // The tip first: a coin confirmed after it was read counts as less confirmed, never more.
    let tip = chain.tip_height().await.map_err(chain_failed)?;
    let utxos = chain.utxos(&scripts).await.map_err(chain_failed)?;
    let min = app.config.wallet.min_confirmations.max(1);
    let mut tx = app.db.begin().await?;
    // Of the coins short of their confirmations, those the wallet's own transactions pay:
    // the change of withdrawals the coordinator sent, in flight or confirmed since.
    let young: std::collections::BTreeSet<String> = utxos
        .iter()
        .filter(|u| index_of.contains_key(&u.script_pubkey) && u.confirmations(tip) < min)
        .map(|u| u.outpoint.txid.to_string())
        .collect();
    let young: Vec<String> = young.into_iter().collect();
    let mut own = std::collections::HashSet::new();
    for chunk in young.chunks(200) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT txid FROM withdrawals WHERE state IN ('broadcasting', 'broadcast', 'confirmed') \
             AND txid IN ({})",
            placeholders.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for t in chunk {
            q = q.bind(t.clone());
        }
        for r in q.fetch_all(&mut *tx).await? {
            own.insert(text(&r, "txid")?);
        }
    }
    let (mut waiting, mut removed) = (0usize, 0usize);
    for u in &utxos {
        let Some((branch, i)) = index_of.get(&u.script_pubkey) else {
            continue;
        };
        let outpoint = u.outpoint.to_string();
        if u.confirmations(tip) < min && !own.contains(&u.outpoint.txid.to_string()) {
            waiting += 1;
            // Not spendable yet; a free row for it (a reorganisation) leaves the set.
            removed += remove_free_coin(&mut tx, &outpoint).await?;
            continue;
        }
        // A coin an acceleration added meanwhile (its parent's change) is kept as it is.
        let added = sqlx::query(
            "INSERT INTO utxos (outpoint, amount, script, branch, address_index) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (outpoint) DO NOTHING",
        )
        .bind(&outpoint)
        .bind(i64::try_from(u.value.to_sat()).unwrap_or(0))
        .bind(u.script_pubkey.to_hex_string())
        .bind(i64::from(branch.number()))
        .bind(i64::from(*i))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if added == 1 && *branch == custody_bitcoin::Branch::Receive {
            sqlx::query("UPDATE wallet_state SET next_receive_index = $1 WHERE id = 1 AND next_receive_index < $1")
                .bind(i64::from(*i) + 1)
                .execute(&mut *tx)
                .await?;
        }
    }
    let reported: std::collections::HashSet<String> =
        utxos.iter().map(|u| u.outpoint.to_string()).collect();
    let scanned: std::collections::HashSet<String> =
        scripts.iter().map(|s| s.to_hex_string()).collect();
    let free = sqlx::query(
        "SELECT outpoint, script FROM utxos WHERE reserved_by IS NULL AND spent_by IS NULL",
    )
    .fetch_all(&mut *tx)
    .await?;
    for r in &free {
        let outpoint = text(r, "outpoint")?;
        if scanned.contains(&text(r, "script")?) && !reported.contains(&outpoint) {
            removed += remove_free_coin(&mut tx, &outpoint).await?;
        }
    }
    let n = sqlx::query("SELECT COUNT(*) AS n FROM utxos WHERE spent_by IS NULL")
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    if removed > 0 {
        metrics::counter!("custody_coins_removed_total")
            .increment(u64::try_from(removed).unwrap_or(0));
        tracing::warn!(
            removed,
            "free coins were removed: the chain backend no longer reports them unspent (spent \
             outside the coordinator, or the database was restored from an older backup) or \
             they lost their confirmations (a reorganisation)"
        );
    }
    if waiting > 0 {
        tracing::info!(
            waiting,
            min_confirmations = min,
            "coins paying the wallet wait for confirmations"
        );
    }
    Ok(CoinSync {
        utxos: usize::try_from(int(&n, "n")?).unwrap_or(0),
        waiting,
        removed,
    })
}
