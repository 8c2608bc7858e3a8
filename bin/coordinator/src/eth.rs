//! Ethereum withdrawals (ETH and ERC-20) on the threshold-ECDSA key.
//!
//! They share the withdrawal lifecycle, table, holds, policy, approvals and gates with
//! Bitcoin (`withdrawals`). What differs:
//!
//! - **What approvers sign.** The transaction digest in `withdrawal_digest` and in the
//!   decision is the transaction's *intent* (`EthTransaction::intent_digest`: chain,
//!   recipient, value, calldata), fixed at request time. The nonce and fees are chosen when
//!   the signing round is exported, after holds and approvals, so that a withdrawal held
//!   for 48 hours never blocks the account's nonce sequence.
//! - **Nonces.** A round takes the lowest nonce at or above the node's pending nonce that
//!   no live withdrawal holds (`eth_nonces` has one row per nonce, primary key on the
//!   nonce: two rounds can never take the same one). A nonce is never given back: a
//!   withdrawal keeps its round's nonce (repeating the export returns the same round, and
//!   a signer signs a withdrawal at one nonce only, ADR 0036); a round never answered
//!   leaves its nonce to be filled by a void (ADR 0018, 0031).
//! - **Signing.** The round names one presignature (batch, index) of a batch made by the
//!   chosen signers; every signer returns a partial signature made with it, and the
//!   coordinator combines them (`custody_ecdsa::combine`, which checks each partial's
//!   identity signature and names a bad one), attaches the recovery id found against the
//!   group's address, and checks the sender recovers to it.
//! - **Broadcast** with `eth_sendRawTransaction` through a [`custody_evm::EvmBackend`];
//!   confirmation after the configured number of blocks; a reverted transaction fails
//!   the withdrawal (its nonce is spent).

use std::sync::Arc;

use custody_ecdsa::{
    EcdsaCeremonyKind, EcdsaPlan, GroupPublicKey, PartialSignature, PresignatureId,
};
use custody_ethereum::{
    calldata, Address, Bytes, Eip1559Fields, EthSignRequest, EthTransaction, KeyPath,
    SignedEthTransaction, B256, U256,
};
use custody_evm::EvmBackend;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::{Principal, Role};
use crate::app::App;
use crate::config::EthereumConfig;
use crate::db::{int, text, Tx};
use crate::error::ApiError;
use crate::withdrawals::{load, transition, Row_, Val};

/// The asset id of ether.
pub const ASSET_ETH: &str = "ETH";

/// Gas limit of an ERC-20 transfer when the node cannot estimate one (it failed to answer).
const TOKEN_TRANSFER_GAS_FALLBACK: u64 = 100_000;

/// An amount in base units, from a JSON number or a decimal string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ToSchema)]
#[schema(value_type = String, example = "1500000000000000000")]
pub struct Units(pub u128);

impl Serialize for Units {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match u64::try_from(self.0) {
            Ok(n) => s.serialize_u64(n),
            Err(_) => s.serialize_str(&self.0.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Units {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Units(u128::from(n))),
            Raw::Text(t) => {
                if t.is_empty() || t.len() > 39 || !t.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(serde::de::Error::custom(
                        "amount must be a whole number of base units (digits only)",
                    ));
                }
                t.parse().map(Units).map_err(|_| {
                    serde::de::Error::custom("amount is larger than 2^128 - 1 base units")
                })
            }
        }
    }
}

/// An amount for audit entries and notifications: a number when `as_number`, else a
/// decimal string.
pub(crate) fn amount_json(as_number: bool, amount: u128) -> serde_json::Value {
    match u64::try_from(amount) {
        Ok(n) if as_number => serde_json::json!(n),
        _ => serde_json::json!(amount.to_string()),
    }
}

/// The Ethereum wallet: the threshold-ECDSA group key, its plan, and the chain.
pub struct EthWallet {
    /// The key-generation plan: the participants' identity cards.
    pub key_plan: EcdsaPlan,
    /// The group key.
    pub group: GroupPublicKey,
    /// The group's address.
    pub address: Address,
    /// The chain.
    pub chain: Arc<dyn EvmBackend>,
    /// Its chain id.
    pub chain_id: u64,
    /// Blocks before a broadcast withdrawal counts as confirmed.
    pub confirmations: u64,
    /// The fee cap, wei per gas.
    pub max_fee_wei: u128,
}

impl std::fmt::Debug for EthWallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EthWallet")
            .field("address", &self.address)
            .field("chain_id", &self.chain_id)
            .field("chain", &self.chain.name())
            .finish_non_exhaustive()
    }
}

/// Reads a file holding an encoding as raw bytes or as hex text.
fn read_encoded(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context as _;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if let Ok(text) = std::str::from_utf8(&bytes) {
        if let Ok(decoded) = hex::decode(text.trim()) {
            return Ok(decoded);
        }
    }
    Ok(bytes)
}

impl EthWallet {
    /// Loads the key plan and group key and connects the chain (checking its chain id).
    ///
    /// # Errors
    /// A missing or wrong file, a plan that is not a key plan, or an unreachable chain.
    pub async fn load(config: &EthereumConfig) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let key_plan =
            EcdsaPlan::decode(&read_encoded(&config.key_plan_file)?).with_context(|| {
                format!(
                    "{} is not an ECDSA ceremony plan",
                    config.key_plan_file.display()
                )
            })?;
        if !matches!(key_plan.kind(), EcdsaCeremonyKind::Key) {
            anyhow::bail!(
                "{} is a presigning plan; ethereum.key_plan_file needs the key-generation plan",
                config.key_plan_file.display()
            );
        }
        let group =
            GroupPublicKey::decode(&read_encoded(&config.group_key_file)?).with_context(|| {
                format!(
                    "{} is not an ECDSA group key",
                    config.group_key_file.display()
                )
            })?;
        let chain = custody_evm::connect(&config.chain)
            .await
            .context("connecting the Ethereum chain")?;
        Ok(EthWallet {
            key_plan,
            address: Address::from(group.address()),
            group,
            chain,
            chain_id: config.chain.chain_id(),
            confirmations: config.chain.confirmations(),
            max_fee_wei: config.max_fee_wei(),
        })
    }
}

/// Parses an Ethereum address; a mixed-case one must carry a valid EIP-55 checksum.
///
/// # Errors
/// 400 naming the problem.
pub fn parse_eth_address(s: &str) -> Result<Address, ApiError> {
    let t = s.trim();
    let hex_part = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .ok_or_else(|| ApiError::bad_request(format!("{t} is not an Ethereum address (0x…)")))?;
    if hex_part.len() != 40 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(format!(
            "{t} is not an Ethereum address: it needs 40 hex digits after 0x"
        )));
    }
    let mixed = hex_part.bytes().any(|b| b.is_ascii_lowercase())
        && hex_part.bytes().any(|b| b.is_ascii_uppercase());
    let address = if mixed {
        Address::parse_checksummed(format!("0x{hex_part}"), None).map_err(|_| {
            ApiError::bad_request(format!(
                "{t} has a wrong EIP-55 checksum (a mistyped letter?); check the address"
            ))
        })?
    } else {
        hex_part
            .parse::<Address>()
            .map_err(|e| ApiError::bad_request(format!("{t} is not an Ethereum address: {e}")))?
    };
    if address == Address::ZERO {
        return Err(ApiError::bad_request(
            "the zero address burns what is sent to it; refusing",
        ));
    }
    Ok(address)
}

/// An Ethereum asset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EthAsset {
    /// Ether.
    Eth,
    /// An ERC-20 token by contract.
    Erc20(Address),
}

impl EthAsset {
    /// Parses `ETH` or `ERC20:0x<contract>`.
    ///
    /// # Errors
    /// 400 for anything else.
    pub fn parse(asset: &str) -> Result<Self, ApiError> {
        if asset == ASSET_ETH {
            return Ok(EthAsset::Eth);
        }
        match asset.strip_prefix("ERC20:") {
            Some(contract) => Ok(EthAsset::Erc20(parse_eth_address(contract)?)),
            None => Err(ApiError::bad_request(format!(
                "asset {asset} is not supported; use BTC, ETH or ERC20:0x<token contract>"
            ))),
        }
    }

    /// The policy's asset id (`ETH`, `ERC20:0x<lower case>`).
    pub fn policy_asset(&self) -> String {
        match self {
            EthAsset::Eth => ASSET_ETH.to_owned(),
            EthAsset::Erc20(token) => custody_ethereum::erc20_asset(*token),
        }
    }
}

/// What the coordinator sets when the round is exported.
#[derive(Clone, Copy, Debug)]
struct Sending {
    nonce: u64,
    max_fee: u128,
    priority_fee: u128,
    gas_limit: u64,
}

/// The transaction paying `amount` of `asset` to `to`, with the given nonce, fees and gas.
fn build(
    wallet: &EthWallet,
    asset: &EthAsset,
    to: Address,
    amount: u128,
    sending: Sending,
) -> Result<EthTransaction, ApiError> {
    let (target, value, input) = match asset {
        EthAsset::Eth => (to, U256::from(amount), Bytes::new()),
        EthAsset::Erc20(token) => (
            *token,
            U256::ZERO,
            calldata::erc20_transfer(to, U256::from(amount)),
        ),
    };
    EthTransaction::eip1559(Eip1559Fields {
        chain_id: wallet.chain_id,
        nonce: sending.nonce,
        to: target,
        value,
        gas_limit: sending.gas_limit,
        max_fee_per_gas: sending.max_fee,
        max_priority_fee_per_gas: sending.priority_fee,
        input,
    })
    .map_err(|e| ApiError::bad_request(format!("cannot form the transaction: {e}")))
}

/// The request-time template: what moves (its intent digest and policy mapping are final;
/// its nonce and fees are placeholders).
///
/// # Errors
/// 400 when no transaction can be formed.
pub fn template(
    wallet: &EthWallet,
    asset: &EthAsset,
    to: Address,
    amount: u128,
) -> Result<EthTransaction, ApiError> {
    let placeholder = Sending {
        nonce: 0,
        max_fee: 1,
        priority_fee: 1,
        gas_limit: custody_evm::TRANSFER_GAS,
    };
    build(wallet, asset, to, amount, placeholder)
}

fn asset_and_to(w: &Row_) -> Result<(EthAsset, Address), ApiError> {
    Ok((EthAsset::parse(&w.asset)?, parse_eth_address(&w.address)?))
}

fn backend_error(e: custody_evm::EvmError) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::BAD_GATEWAY,
        "chain_unavailable",
        format!("the Ethereum node failed: {e}"),
    )
}

/// Takes the lowest free nonce at or above the chain's pending nonce for `id`.
async fn take_nonce(tx: &mut Tx<'_>, chain_next: u64, id: &str) -> Result<u64, ApiError> {
    let rows = sqlx::query("SELECT nonce FROM eth_nonces WHERE nonce >= $1 ORDER BY nonce")
        .bind(i64::try_from(chain_next).unwrap_or(i64::MAX))
        .fetch_all(&mut **tx)
        .await?;
    let mut candidate = chain_next;
    for r in &rows {
        if u64::try_from(int(r, "nonce")?).unwrap_or(u64::MAX) == candidate {
            candidate += 1;
        } else {
            break;
        }
    }
    // The primary key refuses a nonce another round took meanwhile; that request then
    // fails whole and is retried with its idempotency key.
    sqlx::query("INSERT INTO eth_nonces (nonce, withdrawal_id) VALUES ($1, $2)")
        .bind(i64::try_from(candidate).map_err(ApiError::internal)?)
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "retry",
                "another signing round took the same nonce; retry with the same idempotency key",
            ),
            // Anything else is a storage failure, reported as one (not as a race).
            _ => ApiError::from(crate::db::DbError::from(e)),
        })?;
    Ok(candidate)
}

/// The round of the withdrawal a void replaces: its nonce and fees.
struct Replaced {
    nonce: u64,
    max_fee: u128,
    priority_fee: u128,
}

/// The nonce and fees of `original`'s round (the gates, which run next in the same
/// transaction, refuse a void whose original is no longer `signing` or `signed`).
async fn replaced_round(tx: &mut Tx<'_>, original: &str) -> Result<Replaced, ApiError> {
    let o = load(tx, original).await?;
    let nonce = o
        .eth_nonce
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| {
            ApiError::internal(format!("withdrawal {} has a round but no nonce", o.id))
        })?;
    let raw = hex::decode(o.eth_tx.as_deref().unwrap_or_default()).map_err(ApiError::internal)?;
    let otx = EthTransaction::decode_unsigned(&raw).map_err(ApiError::internal)?;
    let max_fee = otx.max_fee_per_gas();
    Ok(Replaced {
        nonce,
        max_fee,
        priority_fee: otx.max_priority_fee_per_gas().unwrap_or(max_fee),
    })
}

/// An Ethereum signing round for the air gap.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EthRound {
    /// The EIP-4527 `eth-sign-request` as one UR (`ur:eth-sign-request/…`): the unsigned
    /// transaction the signers decode, show and hash themselves.
    pub sign_request: String,
    /// Hex of the unsigned transaction (EIP-2718 typed encoding), the same bytes.
    pub transaction: String,
    /// Hex of the coordinator's signed decision (`custody_policy::Decision`) over the
    /// transaction's intent digest, with the approvals.
    pub decision: String,
    /// The presigning batch (hex of its ceremony id) every signer spends from.
    pub presignature_batch: String,
    /// The presignature's index in the batch.
    pub presignature_index: u16,
    /// Hex of the presigning plan (public), so a signer can check the batch.
    pub presign_plan: String,
    /// What the signers will be shown.
    pub summary: serde_json::Value,
}

fn round_view(
    w: &Row_,
    wallet: Address,
    plan_hex: &str,
    decision_hex: &str,
) -> Result<serde_json::Value, ApiError> {
    let raw = hex::decode(w.eth_tx.as_deref().unwrap_or_default()).map_err(ApiError::internal)?;
    let eth_tx = EthTransaction::decode_unsigned(&raw).map_err(ApiError::internal)?;
    let request = sign_request(w, &eth_tx)?;
    let summary = eth_tx
        .summary_from(wallet)
        .map(|s| s.to_json())
        .unwrap_or(serde_json::Value::Null);
    let signers: Vec<u16> =
        serde_json::from_str(w.signers.as_deref().unwrap_or("[]")).unwrap_or_default();
    let round = EthRound {
        sign_request: request.to_ur(),
        transaction: hex::encode(&raw),
        decision: decision_hex.to_owned(),
        presignature_batch: w.presign_batch.clone().unwrap_or_default(),
        presignature_index: u16::try_from(w.presign_index.unwrap_or(0)).unwrap_or(0),
        presign_plan: plan_hex.to_owned(),
        summary,
    };
    Ok(serde_json::json!({
        "withdrawal_id": w.id,
        "signers": signers,
        "file_name": format!("withdrawal-{}.eth.json", &w.id[..8.min(w.id.len())]),
        "eth": round,
    }))
}

fn sign_request(w: &Row_, eth_tx: &EthTransaction) -> Result<EthSignRequest, ApiError> {
    let uuid = uuid::Uuid::parse_str(&w.id).map_err(ApiError::internal)?;
    Ok(EthSignRequest::for_transaction(
        eth_tx,
        *uuid.as_bytes(),
        KeyPath::default(),
        None,
        Some("CoinPort Custody coordinator".into()),
    ))
}

async fn presign_plan(tx: &mut Tx<'_>, batch: &str) -> Result<(String, EcdsaPlan), ApiError> {
    let row = sqlx::query("SELECT plan FROM presign_batches WHERE batch = $1")
        .bind(batch)
        .fetch_one(&mut **tx)
        .await?;
    let plan_hex = text(&row, "plan")?;
    let plan = EcdsaPlan::decode(&hex::decode(&plan_hex).map_err(ApiError::internal)?)
        .map_err(ApiError::internal)?;
    Ok((plan_hex, plan))
}

/// Exports the signing round of an approved Ethereum withdrawal: gates, nonce, fees, a
/// presignature of the chosen signers. Repeating it returns the same round.
///
/// # Errors
/// The gates' refusals; 409 when the signers have no unused presignature together or the
/// chain asks more than the fee cap; 502 when the node fails.
pub(crate) async fn export_round(
    tx: &mut Tx<'_>,
    app: &App,
    operator: &Principal,
    w: Row_,
    signers: &[u16],
) -> Result<(axum::http::StatusCode, serde_json::Value), ApiError> {
    let now = app.now();
    let wallet = app.eth()?;
    if w.state == "signing" {
        let (plan_hex, _) =
            presign_plan(tx, w.presign_batch.as_deref().unwrap_or_default()).await?;
        let decision = sqlx::query("SELECT decision FROM withdrawals WHERE id = $1")
            .bind(&w.id)
            .fetch_one(&mut **tx)
            .await?;
        let decision = crate::db::opt_text(&decision, "decision")?.unwrap_or_default();
        return Ok((
            axum::http::StatusCode::OK,
            round_view(&w, wallet.address, &plan_hex, &decision)?,
        ));
    }
    if w.state != "approved" {
        return Err(ApiError::conflict(
            "not_approved",
            format!("withdrawal is {}, not approved", w.state),
        ));
    }
    let (asset, to) = asset_and_to(&w)?;
    let amount = w.units();
    // A void takes its original's nonce and must outbid it.
    let replaced = match &w.voids {
        Some(original) => Some(replaced_round(tx, original).await?),
        None => None,
    };
    // The gates first, on the template (same intent as the final transaction).
    let (decision, _) =
        crate::withdrawals::gates(tx, app, &w, Some(&template(wallet, &asset, to, amount)?))
            .await?;
    let mut chosen = signers.to_vec();
    chosen.sort_unstable();
    chosen.dedup();
    let signers_json = serde_json::to_string(&chosen).unwrap_or_default();
    let presig = sqlx::query(
        "SELECT batch, idx FROM presignatures WHERE signers = $1 AND used_by IS NULL \
         ORDER BY batch, idx LIMIT 1",
    )
    .bind(&signers_json)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| {
        ApiError::conflict(
            "no_presignatures",
            format!(
                "signers {chosen:?} have no unused presignature together; run a presigning ceremony for them"
            ),
        )
    })?;
    let batch = text(&presig, "batch")?;
    let index = int(&presig, "idx")?;
    let taken = sqlx::query(
        "UPDATE presignatures SET used_by = $1 WHERE batch = $2 AND idx = $3 AND used_by IS NULL",
    )
    .bind(&w.id)
    .bind(&batch)
    .bind(index)
    .execute(&mut **tx)
    .await?;
    if taken.rows_affected() != 1 {
        return Err(ApiError::conflict(
            "presignature_race",
            "the presignature was taken by another round; retry",
        ));
    }
    let mut fees = wallet.chain.fees().await.map_err(backend_error)?;
    if let Some(r) = &replaced {
        // Nodes replace a pending transaction only for at least 10% more of both fees.
        let outbid = |fee: u128| fee.saturating_add(fee / 10).saturating_add(1);
        fees.max_fee_per_gas = fees.max_fee_per_gas.max(outbid(r.max_fee));
        fees.max_priority_fee_per_gas = fees.max_priority_fee_per_gas.max(outbid(r.priority_fee));
    }
    if fees.max_fee_per_gas > wallet.max_fee_wei {
        return Err(ApiError::conflict(
            "fees_too_high",
            format!(
                "the chain asks a max fee of {} wei per gas, above the cap of {} (ethereum.max_fee_gwei); wait or raise the cap",
                fees.max_fee_per_gas, wallet.max_fee_wei
            ),
        ));
    }
    let gas = match asset {
        EthAsset::Eth => custody_evm::TRANSFER_GAS,
        EthAsset::Erc20(token) => {
            let data = calldata::erc20_transfer(to, U256::from(amount));
            match wallet
                .chain
                .estimate_gas(wallet.address, token, U256::ZERO, &data)
                .await
            {
                // A margin over the estimate: token contracts' gas use can change with state.
                Ok(g) => g.saturating_add(g / 5),
                // The chain says the transfer would fail now (the wallet holds too few
                // tokens, the token refuses the recipient): signing it would spend a
                // presignature, a nonce and gas for nothing. The round's transaction rolls
                // back, so the presignature and the nonce stay unused.
                Err(custody_evm::EvmError::Reverted { reason, .. }) => {
                    return Err(ApiError::conflict(
                        "would_revert",
                        format!(
                            "the token transfer would fail on chain now ({reason}); nothing was signed"
                        ),
                    ));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "gas estimate failed; using the fallback");
                    TOKEN_TRANSFER_GAS_FALLBACK
                }
            }
        }
    };
    let nonce = match &replaced {
        Some(r) => r.nonce,
        None => {
            let chain_next = wallet
                .chain
                .pending_nonce(wallet.address)
                .await
                .map_err(backend_error)?;
            take_nonce(tx, chain_next, &w.id).await?
        }
    };
    let sending = Sending {
        nonce,
        max_fee: fees.max_fee_per_gas,
        priority_fee: fees.max_priority_fee_per_gas,
        gas_limit: gas,
    };
    let eth_tx = build(wallet, &asset, to, amount, sending)?;
    if Some(hex::encode(eth_tx.intent_digest())) != w.eth_intent {
        return Err(ApiError::internal(
            "the built transaction lost the approved intent",
        ));
    }
    let decision_hex = hex::encode(decision.encode());
    transition(
        tx,
        &w,
        "signing",
        now,
        "eth_tx, eth_nonce, presign_batch, presign_index, signers, decision, partials",
        &[
            Val::Text(Some(hex::encode(eth_tx.encode_unsigned()))),
            Val::Int(i64::try_from(nonce).map_err(ApiError::internal)?),
            Val::Text(Some(batch.clone())),
            Val::Int(index),
            Val::Text(Some(signers_json)),
            Val::Text(Some(decision_hex.clone())),
            Val::Text(Some("[]".into())),
        ],
    )
    .await?;
    crate::audit::append(
        tx,
        now,
        "withdrawal.round_exported",
        &operator.id,
        &w.id,
        &serde_json::json!({
            "signers": chosen, "nonce": nonce, "max_fee_per_gas": fees.max_fee_per_gas.to_string(),
            "gas_limit": gas, "presignature": format!("{batch}/{index}"),
            "signing_hash": hex::encode(eth_tx.signing_hash()),
        }),
    )
    .await?;
    let w = load(tx, &w.id).await?;
    let (plan_hex, _) = presign_plan(tx, &batch).await?;
    Ok((
        axum::http::StatusCode::OK,
        round_view(&w, wallet.address, &plan_hex, &decision_hex)?,
    ))
}

/// Imports one signer's partial signature (hex of its encoding); once every chosen signer
/// answered, combines them, checks the sender, and stores the signed transaction.
///
/// # Errors
/// 400 for a malformed partial or one for another transaction or presignature; 422
/// naming a signer whose partial does not verify.
pub(crate) async fn import_partial(
    tx: &mut Tx<'_>,
    app: &App,
    operator: &Principal,
    w: Row_,
    partial_hex: &str,
) -> Result<(axum::http::StatusCode, serde_json::Value), ApiError> {
    let now = app.now();
    let wallet = app.eth()?;
    if w.state != "signing" {
        return Err(ApiError::conflict(
            "not_signing",
            format!("withdrawal is {}, not signing", w.state),
        ));
    }
    let bytes = hex::decode(partial_hex.trim())
        .map_err(|_| ApiError::bad_request("partial_signature must be hex"))?;
    let partial = PartialSignature::decode(&bytes)
        .map_err(|e| ApiError::bad_request(format!("not a partial signature: {e}")))?;
    let raw = hex::decode(w.eth_tx.as_deref().unwrap_or_default()).map_err(ApiError::internal)?;
    let eth_tx = EthTransaction::decode_unsigned(&raw).map_err(ApiError::internal)?;
    let prehash: [u8; 32] = eth_tx.signing_hash().0;
    if partial.prehash() != &prehash {
        return Err(ApiError::bad_request(
            "this partial signature is over another transaction than this round's",
        ));
    }
    let batch = w.presign_batch.clone().unwrap_or_default();
    let expected = PresignatureId {
        batch: hex::decode(&batch)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| ApiError::internal("bad presignature batch"))?,
        index: u16::try_from(w.presign_index.unwrap_or(-1)).map_err(ApiError::internal)?,
    };
    if partial.presignature() != expected {
        return Err(ApiError::bad_request(format!(
            "this partial signature used presignature {}, not the round's {batch}/{}",
            partial.presignature(),
            expected.index
        )));
    }
    let signers: Vec<u16> =
        serde_json::from_str(w.signers.as_deref().unwrap_or("[]")).unwrap_or_default();
    if !signers.contains(&partial.signer()) {
        return Err(ApiError::bad_request(format!(
            "signer {} is not one of this round's signers {signers:?}",
            partial.signer()
        )));
    }
    let mut have: Vec<String> =
        serde_json::from_str(w.partials.as_deref().unwrap_or("[]")).unwrap_or_default();
    let mut parsed = Vec::new();
    for h in &have {
        parsed.push(
            PartialSignature::decode(&hex::decode(h).map_err(ApiError::internal)?)
                .map_err(ApiError::internal)?,
        );
    }
    if !parsed.iter().any(|p| p.signer() == partial.signer()) {
        have.push(hex::encode(&bytes));
        parsed.push(partial);
    }
    let answered: Vec<u16> = parsed.iter().map(PartialSignature::signer).collect();
    if !signers.iter().all(|s| answered.contains(s)) {
        let kept = sqlx::query(
            "UPDATE withdrawals SET partials = $1, updated_at = $2, version = version + 1 \
             WHERE id = $3 AND version = $4 AND state = 'signing'",
        )
        .bind(serde_json::to_string(&have).unwrap_or_default())
        .bind(now)
        .bind(&w.id)
        .bind(w.version)
        .execute(&mut **tx)
        .await?;
        if kept.rows_affected() != 1 {
            return Err(crate::withdrawals::concurrent_change(&w.id));
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
    let (_, plan) = presign_plan(tx, &batch).await?;
    let sig = custody_ecdsa::combine(&plan, &prehash, &parsed)
        .map_err(|e| ApiError::refused("combine_failed", format!("cannot combine: {e}")))?;
    let signed = eth_tx
        .with_signature_for_sender(
            U256::from_be_bytes(sig.r),
            U256::from_be_bytes(sig.s),
            wallet.address,
        )
        .map_err(|e| ApiError::refused("signature_invalid", e.to_string()))?;
    signed
        .check_sender(wallet.address)
        .map_err(|e| ApiError::refused("signature_invalid", e.to_string()))?;
    let hash = format!("{:#x}", signed.hash());
    transition(
        tx,
        &w,
        "signed",
        now,
        "final_tx, txid, partials",
        &[
            Val::Text(Some(signed.to_hex())),
            Val::Text(Some(hash.clone())),
            Val::Text(Some(serde_json::to_string(&have).unwrap_or_default())),
        ],
    )
    .await?;
    crate::audit::append(
        tx,
        now,
        "withdrawal.signed",
        &operator.id,
        &w.id,
        &serde_json::json!({ "hash": hash, "sender": wallet.address.to_checksum(None), "verified": "sender recovered with k256" }),
    )
    .await?;
    Ok((
        axum::http::StatusCode::OK,
        serde_json::json!({ "withdrawal_id": w.id, "state": "signed", "txid": hash }),
    ))
}

fn signed_tx(w: &Row_) -> Result<SignedEthTransaction, ApiError> {
    let raw = w
        .final_tx
        .as_deref()
        .ok_or_else(|| ApiError::internal("signed withdrawal without transaction"))?;
    let bytes = hex::decode(raw.trim_start_matches("0x")).map_err(ApiError::internal)?;
    SignedEthTransaction::decode(&bytes).map_err(ApiError::internal)
}

/// Broadcasts a signed Ethereum withdrawal after the gates pass at this moment (see
/// `withdrawals::broadcast`).
///
/// # Errors
/// The gates' refusals; 502 when the node fails (the withdrawal stays `broadcasting`).
pub(crate) async fn broadcast(
    app: &App,
    operator: &Principal,
    mut tx: Tx<'static>,
    w: Row_,
) -> Result<serde_json::Value, ApiError> {
    let now = app.now();
    if w.state != "signed" {
        return Err(ApiError::conflict(
            "not_signed",
            format!("withdrawal is {}, not signed", w.state),
        ));
    }
    let signed = signed_tx(&w)?;
    signed
        .check_sender(app.eth()?.address)
        .map_err(|e| ApiError::refused("signature_invalid", e.to_string()))?;
    crate::withdrawals::gates(&mut tx, app, &w, Some(signed.transaction())).await?;
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
    send(app, &w.id).await
}

/// Sends (or re-sends) a `broadcasting` withdrawal's transaction.
///
/// # Errors
/// 502 when the node refuses or fails.
pub async fn send(app: &App, id: &str) -> Result<serde_json::Value, ApiError> {
    let wallet = app.eth()?;
    let mut tx = app.db.begin().await?;
    let w = load(&mut tx, id).await?;
    tx.commit().await?;
    let signed = signed_tx(&w)?;
    match wallet.chain.send_raw(&signed.encoded()).await {
        Ok(hash) => {
            let txid = format!("{hash:#x}");
            let audit = serde_json::json!({ "txid": txid, "backend": wallet.chain.name(), "nonce": w.eth_nonce });
            crate::withdrawals::record_broadcast(app, id, &txid, &audit).await
        }
        Err(e) => Err(crate::withdrawals::record_send_failure(
            app,
            id,
            "the Ethereum node",
            &e.to_string(),
        )
        .await),
    }
}

/// Notices receipts of broadcast Ethereum withdrawals: confirmed after the configured
/// number of blocks, failed when the transaction reverted. Returns how many changed.
///
/// # Errors
/// Storage failure.
pub async fn track(app: &App) -> Result<usize, ApiError> {
    let Some(wallet) = app.eth.clone() else {
        return Ok(0);
    };
    let rows = sqlx::query(
        "SELECT id, state, txid FROM withdrawals WHERE state IN ('broadcasting', 'broadcast') \
         AND eth_intent IS NOT NULL",
    )
    .fetch_all(app.db.pool())
    .await?;
    let mut changed = voids_sent_elsewhere(app, &wallet).await?;
    changed += originals_of_voids(app, &wallet).await?;
    for r in &rows {
        let id = text(r, "id")?;
        if text(r, "state")? == "broadcasting" {
            if send(app, &id).await.is_ok() {
                changed += 1;
            }
            continue;
        }
        let Some(hash) = crate::db::opt_text(r, "txid")?.and_then(|t| t.parse().ok()) else {
            continue;
        };
        let Ok(Some(receipt)) = wallet.chain.receipt(hash).await else {
            continue;
        };
        match receipt.outcome {
            custody_evm::TxOutcome::Success if receipt.confirmations >= wallet.confirmations => {
                let audit = serde_json::json!({ "txid": format!("{hash:#x}"), "block": receipt.block_number, "gas_used": receipt.gas_used });
                if crate::withdrawals::record_confirmed(app, &id, &audit).await? {
                    changed += 1;
                }
            }
            custody_evm::TxOutcome::Reverted => {
                let now = app.now();
                let mut tx = app.db.begin().await?;
                let w = load(&mut tx, &id).await?;
                if w.state != "broadcast" {
                    continue;
                }
                let reason = format!(
                    "the transaction reverted in block {} (gas and nonce spent, nothing paid)",
                    receipt.block_number
                );
                transition(
                    &mut tx,
                    &w,
                    "failed",
                    now,
                    "failure",
                    &[Val::Text(Some(reason.clone()))],
                )
                .await?;
                crate::audit::append(
                    &mut tx,
                    now,
                    "withdrawal.failed",
                    "system",
                    &id,
                    &serde_json::json!({ "txid": format!("{hash:#x}"), "reason": reason }),
                )
                .await?;
                if w.has_customer() {
                    crate::notify::enqueue(
                        &mut tx,
                        app,
                        Some(&w.principal_id),
                        "withdrawal.failed",
                        serde_json::json!({ "withdrawal": id, "reason": reason }),
                    )
                    .await?;
                }
                changed += 1;
                tx.commit().await?;
            }
            custody_evm::TxOutcome::Success => {}
        }
    }
    Ok(changed)
}

/// Watches the originals of live voids: the nonce they share can be used once, so the
/// first of them mined wins. A void mined is its own tracking's business
/// (`withdrawals::record_confirmed` then cancels the original). The original went out
/// instead (someone holding every answer sent it) when its own transaction is mined, or
/// when the chain has used the nonce while neither it nor any void with a known hash is
/// mined and no void's round is out without a hash (the original is the only other
/// transaction the group signed with that nonce). While a void's round is out and its
/// hash unknown nothing can be told apart: the void's answers, once imported, decide. A
/// node that cannot answer now leaves the row for the next pass. Returns how many changed.
async fn originals_of_voids(app: &App, wallet: &EthWallet) -> Result<usize, ApiError> {
    let rows = sqlx::query(
        "SELECT DISTINCT w.id AS id, w.txid AS txid, w.eth_nonce AS nonce \
         FROM withdrawals v JOIN withdrawals w ON w.id = v.voids \
         WHERE v.voids IS NOT NULL AND v.state NOT IN ('cancelled', 'failed', 'rejected', 'confirmed') \
         AND w.state IN ('signing', 'signed') AND w.eth_intent IS NOT NULL",
    )
    .fetch_all(app.db.pool())
    .await?;
    let mut changed = 0;
    for r in &rows {
        let id = text(r, "id")?;
        let Some(nonce) = crate::db::opt_int(r, "nonce")?.and_then(|n| u64::try_from(n).ok())
        else {
            continue;
        };
        let own = crate::db::opt_text(r, "txid")?;
        let hash: Option<B256> = own.as_deref().and_then(|t| t.parse().ok());
        if let Some(h) = hash {
            match wallet.chain.receipt(h).await {
                Err(_) => continue,
                Ok(Some(receipt)) => {
                    let outcome = match receipt.outcome {
                        custody_evm::TxOutcome::Reverted => crate::withdrawals::Original::Reverted(
                            own.as_deref().unwrap_or_default(),
                        ),
                        custody_evm::TxOutcome::Success
                            if receipt.confirmations >= wallet.confirmations =>
                        {
                            crate::withdrawals::Original::Confirmed(own.as_deref())
                        }
                        // Not deep enough yet.
                        custody_evm::TxOutcome::Success => continue,
                    };
                    changed += record_original(app, &id, outcome).await;
                    continue;
                }
                Ok(None) => {}
            }
        }
        let Ok(used) = wallet.chain.latest_nonce(wallet.address).await else {
            continue;
        };
        if used <= nonce {
            continue;
        }
        let mut tx = app.db.begin().await?;
        let voids = crate::withdrawals::live_voids(&mut tx, &id).await?;
        tx.commit().await?;
        let mut undecided = false;
        for (v, state, txid) in &voids {
            match txid.as_deref().and_then(|t| t.parse::<B256>().ok()) {
                Some(h) => match wallet.chain.receipt(h).await {
                    Ok(None) => {}
                    // Mined (its own tracking), or the node cannot say now.
                    Ok(Some(_)) | Err(_) => undecided = true,
                },
                None if state == "signing" => {
                    tracing::warn!(withdrawal = %id, void = %v, nonce, "the nonce of a withdrawal being voided was used, and the void's round is out without all its answers: import them to tell which went out");
                    undecided = true;
                }
                None => {}
            }
        }
        if undecided {
            continue;
        }
        if hash.is_some() {
            // Its own transaction is not mined, nor any void: something else used the nonce.
            tracing::error!(withdrawal = %id, nonce, "the nonce of a withdrawal being voided was used by a transaction that is neither it nor a void of it");
            continue;
        }
        changed += record_original(app, &id, crate::withdrawals::Original::Confirmed(None)).await;
    }
    Ok(changed)
}

/// `signed` voids whose transaction someone else sent and the chain mined (confirmed
/// as deep as the configured confirmations): recorded as broadcast and confirmed, which
/// cancels their originals (`withdrawals::adopt_mined_void`). Returns how many changed.
async fn voids_sent_elsewhere(app: &App, wallet: &EthWallet) -> Result<usize, ApiError> {
    let rows = sqlx::query(
        "SELECT id, txid FROM withdrawals WHERE voids IS NOT NULL AND state = 'signed' \
         AND eth_intent IS NOT NULL",
    )
    .fetch_all(app.db.pool())
    .await?;
    let mut changed = 0;
    for r in &rows {
        let Some(txid) = crate::db::opt_text(r, "txid")? else {
            continue;
        };
        let Ok(hash) = txid.parse::<B256>() else {
            continue;
        };
        if let Ok(Some(receipt)) = wallet.chain.receipt(hash).await {
            if receipt.outcome == custody_evm::TxOutcome::Success
                && receipt.confirmations >= wallet.confirmations
            {
                changed += crate::withdrawals::adopt_mined_void(app, &text(r, "id")?, &txid).await;
            }
        }
    }
    Ok(changed)
}

/// Records what became of the original of voids; 1 when it changed. A failure (a race
/// lost to another process, storage) is logged and left for the next pass.
async fn record_original(app: &App, id: &str, outcome: crate::withdrawals::Original<'_>) -> usize {
    match crate::withdrawals::original_went_out(app, id, outcome).await {
        Ok(true) => 1,
        Ok(false) => 0,
        Err(e) => {
            tracing::warn!(withdrawal = %id, error = %e, "could not record the original of a void");
            0
        }
    }
}

/// A presigning plan an operator registers after the ceremony.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct NewPresignBatch {
    /// Hex of the presigning plan (`EcdsaPlan` of kind presign), as the signers' ceremony
    /// wrote it.
    pub plan: String,
}

/// Registers a presignature batch: its plan must be for this group key and name exactly
/// the key plan's participants. Returns how many presignatures it adds (0 when the batch
/// was registered before).
///
/// # Errors
/// 400 for a plan that is not for this key or its participants.
pub async fn add_presign_batch(
    app: &App,
    operator: &Principal,
    req: &NewPresignBatch,
) -> Result<serde_json::Value, ApiError> {
    let now = app.now();
    if operator.role != Role::Operator {
        return Err(ApiError::forbidden("only operators register presignatures"));
    }
    let wallet = app.eth()?;
    let bytes =
        hex::decode(req.plan.trim()).map_err(|_| ApiError::bad_request("plan must be hex"))?;
    let plan = EcdsaPlan::decode(&bytes)
        .map_err(|e| ApiError::bad_request(format!("not an ECDSA ceremony plan: {e}")))?;
    let EcdsaCeremonyKind::Presign {
        group_key,
        signers,
        count,
    } = plan.kind()
    else {
        return Err(ApiError::bad_request(
            "this is a key-generation plan, not a presigning plan",
        ));
    };
    if group_key != wallet.group.compressed() {
        return Err(ApiError::bad_request(
            "the presigning plan is for another group key",
        ));
    }
    if plan.participants() != wallet.key_plan.participants()
        || plan.threshold() != wallet.key_plan.threshold()
    {
        return Err(ApiError::bad_request(
            "the presigning plan's participants or threshold differ from the key's plan",
        ));
    }
    let batch = hex::encode(plan.ceremony_id());
    let signers_json = serde_json::to_string(signers).unwrap_or_default();
    let mut tx = app.db.begin().await?;
    let exists = sqlx::query("SELECT batch FROM presign_batches WHERE batch = $1")
        .bind(&batch)
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_some() {
        tx.commit().await?;
        return Ok(serde_json::json!({ "batch": batch, "added": 0 }));
    }
    sqlx::query(
        "INSERT INTO presign_batches (batch, plan, signers, count, added_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&batch)
    .bind(hex::encode(&bytes))
    .bind(&signers_json)
    .bind(i64::from(*count))
    .bind(now)
    .execute(&mut *tx)
    .await?;
    for i in 0..*count {
        sqlx::query(
            "INSERT INTO presignatures (batch, idx, signers, used_by) VALUES ($1, $2, $3, NULL)",
        )
        .bind(&batch)
        .bind(i64::from(i))
        .bind(&signers_json)
        .execute(&mut *tx)
        .await?;
    }
    crate::audit::append(
        &mut tx,
        now,
        "ethereum.presignatures_added",
        &operator.id,
        &batch,
        &serde_json::json!({ "signers": signers, "count": count }),
    )
    .await?;
    tx.commit().await?;
    Ok(serde_json::json!({ "batch": batch, "added": count }))
}
