//! `custody-coordinator dev …`: DEVELOPMENT helpers for drills and the quickstart
//! (`ceremonies/quickstart.sh`). Every one refuses a mainnet configuration; `fund` also
//! refuses any chain backend but the development chain file.
//!
//! - `fund`: a funding transaction into the development chain, mined at once;
//! - `totp`: the current code of an `otpauth://` URI (a simulated authenticator app);
//! - `round-qr`: the request PSBT as upper-case `UR:CRYPTO-PSBT` PNG frames, each decoded
//!   back before it is reported written;
//! - `holds`: every hold the coordinator placed, as JSON;
//! - `policy`: a stand-in for the admins: two admin identities (secrets in a plain file)
//!   and the first signed policy naming this coordinator, the approvers and the whitelist;
//! - `signed`: the finalized PSBT and transaction of a signed withdrawal;
//! - `check-tx`: an independent look at those two files.
//!
//! Nothing here is reachable through the HTTP API, and nothing here is for production.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, Result};
use base64::Engine as _;
use bitcoin::psbt::Psbt;
use bitcoin::{Address, Amount};
use clap::{Subcommand, ValueEnum};
use custody_airgap::file::{detect_psbt, read_bounded, write_new};
use custody_airgap::qr::{
    decode_image, encode_ur, render_png, Collector, Decoded, Profile, UrKind,
};
use custody_policy::{
    Action, AdminQuorum, PolicyDocument, Rule, SignedPolicy, TransactionLimit, WhitelistEntry,
};
use custody_threshold::{Identity, IdentityCard};
use serde::Serialize;

use crate::clock::rfc3339;
use crate::config::{Config, NetworkName};
use crate::db::{int, opt_text, text};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Pixels per QR module in the PNG frames.
const QR_SCALE: u32 = 6;
/// The file `dev policy` keeps the drill admins' secrets in.
pub const ADMIN_SECRETS_FILE: &str = "drill-admin-secrets.hex";
/// The signed policy file `dev policy` writes.
pub const POLICY_FILE: &str = "policy-v1.policy";

/// A development helper said no (mainnet, wrong backend, a check failed): exit code 1.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevError {
    /// Refused, with the reason.
    #[error("refused: {0}")]
    Refused(String),
}

fn refuse(msg: impl Into<String>) -> anyhow::Error {
    DevError::Refused(msg.into()).into()
}

/// QR density of `round-qr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum QrProfileArg {
    /// QR version 8.
    Low,
    /// QR version 16.
    #[default]
    Normal,
    /// QR version 23.
    High,
}

/// `dev …` (DEVELOPMENT ONLY; refused on mainnet).
#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Deposits SAT to ADDR with a funding transaction in the development chain file
    /// (`[chain] kind = "file"` only) and mines a block; prints the outpoint.
    Fund {
        /// The receiving address (of the configured network).
        #[arg(long)]
        address: String,
        /// The amount in satoshis.
        #[arg(long, value_name = "SAT")]
        amount: u64,
    },
    /// Credits WEI to ADDR in the development EVM chain file (`[ethereum.chain] kind =
    /// "file"` only) and mines a block.
    EthFund {
        /// The receiving `0x` address.
        #[arg(long)]
        address: String,
        /// The amount in wei.
        #[arg(long, value_name = "WEI")]
        wei: u128,
    },
    /// Mines N blocks on the development EVM chain file (pending transactions are mined).
    EthMine {
        /// How many blocks.
        #[arg(long, default_value_t = 1)]
        blocks: u64,
    },
    /// Prints the current TOTP code of an `otpauth://` URI (a simulated authenticator).
    Totp {
        /// A file whose first line is the URI `POST /v1/me/totp` returned (it holds the
        /// TOTP secret, so it never goes on the command line).
        #[arg(long, value_name = "FILE")]
        otpauth_uri_file: PathBuf,
        /// The same offset the daemon runs with (`serve --dev-clock-offset-secs`).
        #[arg(
            long,
            value_name = "N",
            default_value_t = 0,
            allow_hyphen_values = true
        )]
        offset_secs: i64,
    },
    /// Renders a request PSBT as upper-case `UR:CRYPTO-PSBT` PNG frames `frame-0001.png`, …
    /// in DIR and checks that every frame decodes and that together they give the PSBT.
    RoundQr {
        /// The request PSBT (binary, base64 or hex).
        #[arg(long, value_name = "FILE")]
        psbt: PathBuf,
        /// The directory for the frames (created; existing frames are never overwritten).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// QR density.
        #[arg(long, value_enum, default_value_t = QrProfileArg::Normal)]
        profile: QrProfileArg,
    },
    /// Writes every hold ever placed (account and withdrawal holds) with its reason,
    /// start and end as a JSON array.
    Holds {
        /// Output file (never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// DRILL ADMINS: creates two admin identities (secrets in a plain file in DIR), their
    /// cards `admin-1.card`, `admin-2.card`, and the first policy signed by both, naming
    /// this coordinator (run `init` first), the approvers and the whitelist.
    Policy {
        /// Where to write the admin cards, secrets and `policy-v1.policy` (created).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// An approver's identity card (`custody-signer identity create` wrote it).
        #[arg(long = "approver-card", value_name = "FILE", required = true)]
        approver_cards: Vec<PathBuf>,
        /// A whitelisted destination (a Bitcoin address, or an Ethereum `0x` address).
        #[arg(long = "whitelist", value_name = "ADDR", required = true)]
        whitelist: Vec<String>,
        /// The per-transaction limit in satoshis.
        #[arg(long, default_value_t = 100_000_000)]
        limit_sat: u64,
        /// Also allow ETH withdrawals up to this many wei per transaction (same approvals).
        #[arg(long, value_name = "WEI")]
        limit_wei: Option<u128>,
        /// Approvals every withdrawal needs.
        #[arg(long, default_value_t = 2)]
        approvals: u16,
    },
    /// Writes the finalized PSBT (binary) and the final transaction (hex, one line) of a
    /// signed withdrawal.
    Signed {
        /// The withdrawal id.
        #[arg(long)]
        id: String,
        /// Where to write the finalized PSBT.
        #[arg(long, value_name = "FILE")]
        psbt_out: PathBuf,
        /// Where to write the transaction hex.
        #[arg(long, value_name = "FILE")]
        tx_out: PathBuf,
    },
    /// Checks a final transaction against the txid the API reported, the finalized PSBT
    /// (witness_utxo and final witness on every input, same transaction) and, with a
    /// development chain file, that the chain holds it.
    CheckTx {
        /// The transaction hex file.
        #[arg(long, value_name = "FILE")]
        tx_hex: PathBuf,
        /// The finalized PSBT.
        #[arg(long, value_name = "FILE")]
        signed_psbt: PathBuf,
        /// The txid the coordinator reported.
        #[arg(long)]
        txid: String,
    },
}

impl DevCommand {
    /// Whether the command needs the database (and so the whole application).
    pub fn needs_app(&self) -> bool {
        matches!(self, DevCommand::Holds { .. } | DevCommand::Signed { .. })
    }
}

/// One hold in `holds.json`.
#[derive(Debug, Serialize)]
pub struct HoldEntry {
    /// The account's email.
    pub account: String,
    /// The account id.
    pub principal_id: String,
    /// The withdrawal it applies to; `null` for an account hold.
    pub withdrawal_id: Option<String>,
    /// The rule that placed it.
    pub rule: String,
    /// The sentence shown to people.
    pub reason: String,
    /// Start, unix seconds.
    pub since: i64,
    /// End, unix seconds.
    pub until: i64,
    /// Start, RFC 3339.
    pub since_utc: String,
    /// End, RFC 3339.
    pub until_utc: String,
}

fn refuse_mainnet(config: &Config) -> Result<()> {
    if config.network == NetworkName::Bitcoin {
        return Err(refuse(
            "dev commands are for development networks; this configuration is mainnet",
        ));
    }
    Ok(())
}

fn now_real() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no file name", path.display()))?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    write_new(&dir, name, bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Runs a dev command and returns the lines to print. Commands that need the database
/// build the application themselves (with the real clock).
///
/// # Errors
/// [`DevError::Refused`] for mainnet, a wrong backend or a failed check; other errors as
/// sentences.
pub async fn run(config: Config, cmd: DevCommand) -> Result<Vec<String>> {
    refuse_mainnet(&config)?;
    match cmd {
        DevCommand::Fund { address, amount } => fund(&config, &address, amount).await,
        DevCommand::EthFund { address, wei } => {
            let chain = dev_evm(&config)?;
            let to = crate::eth::parse_eth_address(&address).map_err(|e| refuse(e.to_string()))?;
            if wei == 0 {
                return Err(refuse("--wei must be at least 1"));
            }
            chain
                .fund(to, custody_evm::U256::from(wei))
                .await
                .context("funding")?;
            let height = chain.mine(1).await.context("mining")?;
            Ok(vec![format!(
                "funded {} with {wei} wei in block {height}",
                to.to_checksum(None)
            )])
        }
        DevCommand::EthMine { blocks } => {
            let height = dev_evm(&config)?.mine(blocks).await.context("mining")?;
            Ok(vec![format!("mined to block {height}")])
        }
        DevCommand::Totp {
            otpauth_uri_file,
            offset_secs,
        } => {
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(&otpauth_uri_file)
                    .with_context(|| format!("reading {}", otpauth_uri_file.display()))?,
            );
            let uri = text.lines().next().unwrap_or_default().trim();
            Ok(vec![totp(uri, now_real().saturating_add(offset_secs))?])
        }
        DevCommand::RoundQr { psbt, out, profile } => round_qr(&psbt, &out, profile),
        DevCommand::Policy {
            dir,
            approver_cards,
            whitelist,
            limit_sat,
            limit_wei,
            approvals,
        } => policy(
            &config,
            &dir,
            &approver_cards,
            &whitelist,
            (limit_sat, limit_wei),
            approvals,
        ),
        DevCommand::CheckTx {
            tx_hex,
            signed_psbt,
            txid,
        } => check_tx(&config, &tx_hex, &signed_psbt, &txid).await,
        DevCommand::Holds { out } => {
            let app = crate::build_app(config, Arc::new(crate::SystemClock::new())).await?;
            let holds = all_holds(&app).await;
            app.db.close().await;
            let holds = holds?;
            let mut body = serde_json::to_vec_pretty(&holds)?;
            body.push(b'\n');
            write_file(&out, &body)?;
            Ok(vec![format!(
                "wrote {} holds to {}",
                holds.len(),
                out.display()
            )])
        }
        DevCommand::Signed {
            id,
            psbt_out,
            tx_out,
        } => {
            let app = crate::build_app(config, Arc::new(crate::SystemClock::new())).await?;
            let r = signed(&app, &id, &psbt_out, &tx_out).await;
            app.db.close().await;
            r
        }
    }
}

/// The development EVM chain file of the configuration.
fn dev_evm(config: &Config) -> Result<custody_evm::FileEvmBackend> {
    let Some(custody_evm::EvmConfig::File(file)) = config.ethereum.as_ref().map(|e| &e.chain)
    else {
        return Err(refuse(
            "this works only with the development EVM chain file ([ethereum.chain] kind = \"file\")",
        ));
    };
    custody_evm::FileEvmBackend::open_or_create(&file.path, file.chain_id)
        .context("opening the development EVM chain")
}

async fn fund(config: &Config, address: &str, amount: u64) -> Result<Vec<String>> {
    let Some(custody_chain::ChainConfig::File(file)) = &config.chain else {
        return Err(refuse(
            "dev fund works only with the development chain file ([chain] kind = \"file\")",
        ));
    };
    let network = config.network.to_bitcoin();
    if file.network != network || file.network == bitcoin::Network::Bitcoin {
        return Err(refuse(format!(
            "the chain file is for {}, the coordinator for {network}",
            file.network
        )));
    }
    if amount == 0 {
        return Err(refuse("--amount must be at least 1 satoshi"));
    }
    let address = Address::from_str(address.trim())
        .with_context(|| format!("{address} is not a Bitcoin address"))?
        .require_network(network)
        .with_context(|| format!("{address} is not a {network} address"))?;
    let chain = custody_chain::FileBackend::open_or_create(&file.path, network)
        .context("opening the development chain")?;
    let outpoint = chain
        .fund(&address.script_pubkey(), Amount::from_sat(amount))
        .await
        .context("funding")?;
    let height = chain.mine(1).await.context("mining")?;
    Ok(vec![
        format!("funded {address} with {amount} sat in block {height}"),
        format!("outpoint: {outpoint}"),
    ])
}

/// The TOTP code of `uri` at unix time `at`.
///
/// # Errors
/// A URI that is not a TOTP `otpauth://` URI.
pub fn totp(uri: &str, at: i64) -> Result<String> {
    let t = totp_rs::TOTP::from_url(uri.trim())
        .map_err(|e| anyhow::anyhow!("not a TOTP otpauth:// URI: {e}"))?;
    let at = u64::try_from(at).context("the time is before 1970")?;
    Ok(t.generate(at))
}

fn round_qr(psbt_path: &Path, out: &Path, profile: QrProfileArg) -> Result<Vec<String>> {
    let bytes =
        read_bounded(psbt_path).with_context(|| format!("reading {}", psbt_path.display()))?;
    let (raw, _) = detect_psbt(&bytes)
        .with_context(|| format!("{} is not a PSBT file", psbt_path.display()))?;
    Psbt::deserialize(&raw).with_context(|| format!("{} is not a PSBT", psbt_path.display()))?;
    let profile = match profile {
        QrProfileArg::Low => Profile::Low,
        QrProfileArg::Normal => Profile::Normal,
        QrProfileArg::High => Profile::High,
    };
    let mut encoder = encode_ur(UrKind::CryptoPsbt, &raw, profile)?;
    let frames = if encoder.is_single_part() {
        vec![encoder.next_part()]
    } else {
        let n = encoder.fragment_count();
        encoder.next_parts(n)
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut collector = Collector::new();
    for (i, frame) in frames.iter().enumerate() {
        if !frame.starts_with("UR:CRYPTO-PSBT/") {
            return Err(refuse(format!(
                "frame {} is not an upper-case UR:CRYPTO-PSBT part",
                i + 1
            )));
        }
        let png = render_png(frame, QR_SCALE)?;
        let name = format!("frame-{:04}.png", i + 1);
        let path = write_new(out, &name, &png).with_context(|| format!("writing {name}"))?;
        let decoded = decode_image(&read_bounded(&path)?)
            .with_context(|| format!("{} does not decode", path.display()))?;
        if decoded.len() != 1 || decoded[0] != *frame {
            return Err(refuse(format!(
                "{} decodes to something else than the frame it should show",
                path.display()
            )));
        }
        collector.push_line(frame)?;
    }
    if !collector.is_complete() {
        return Err(refuse("the frames do not complete the message"));
    }
    match collector.finish()? {
        Decoded::Psbt(back) if back == raw => {}
        _ => {
            return Err(refuse(
                "the frames reassemble to something else than the PSBT",
            ))
        }
    }
    Ok(vec![format!(
        "wrote {} UR:CRYPTO-PSBT frames to {}; every frame decoded back and together they give the {}-byte PSBT",
        frames.len(),
        out.display(),
        raw.len()
    )])
}

/// Every hold in the database, oldest first, with the account's email.
///
/// # Errors
/// Storage failure.
pub async fn all_holds(app: &crate::App) -> Result<Vec<HoldEntry>> {
    let rows = sqlx::query(
        "SELECT h.principal_id, p.email, p.email_sealed, h.withdrawal_id, h.rule, h.reason, h.since, h.until \
         FROM holds h JOIN principals p ON p.id = h.principal_id ORDER BY h.since, h.until",
    )
    .fetch_all(app.db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let since = int(r, "since")?;
            let until = int(r, "until")?;
            let principal_id = text(r, "principal_id")?;
            let account = crate::accounts::open_email(
                &app.vault,
                &principal_id,
                &text(r, "email")?,
                opt_text(r, "email_sealed")?.as_deref(),
            )
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            Ok(HoldEntry {
                account,
                principal_id,
                withdrawal_id: opt_text(r, "withdrawal_id")?,
                rule: text(r, "rule")?,
                reason: text(r, "reason")?,
                since,
                until,
                since_utc: rfc3339(since),
                until_utc: rfc3339(until),
            })
        })
        .collect()
}

fn read_card(path: &Path) -> Result<IdentityCard> {
    let bytes = read_bounded(path).with_context(|| format!("reading {}", path.display()))?;
    IdentityCard::decode(&bytes)
        .with_context(|| format!("{} is not an identity card", path.display()))
}

fn policy(
    config: &Config,
    dir: &Path,
    approver_cards: &[PathBuf],
    whitelist: &[String],
    (limit_sat, limit_wei): (u64, Option<u128>),
    approvals: u16,
) -> Result<Vec<String>> {
    let coordinator_card = config.data_dir.join(crate::CARD_FILE);
    if !coordinator_card.exists() {
        return Err(refuse(format!(
            "{} does not exist; run `custody-coordinator init` first",
            coordinator_card.display()
        )));
    }
    let coordinator = read_card(&coordinator_card)?;
    let approvers = approver_cards
        .iter()
        .map(|p| read_card(p))
        .collect::<Result<Vec<_>>>()?;
    let network = config.network.to_bitcoin();
    let mut entries = Vec::with_capacity(whitelist.len());
    for a in whitelist {
        if a.starts_with("0x") {
            let eth = crate::eth::parse_eth_address(a).map_err(|e| refuse(e.to_string()))?;
            entries.push(eth.to_checksum(None));
            continue;
        }
        Address::from_str(a)
            .with_context(|| format!("{a} is not a Bitcoin address"))?
            .require_network(network)
            .with_context(|| format!("{a} is not a {network} address"))?;
        entries.push(a.clone());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let admins = ["admin-1", "admin-2"]
        .iter()
        .map(|n| Identity::generate(n, &mut rand_core::OsRng).context("generating an admin"))
        .collect::<Result<Vec<_>>>()?;
    let secrets: Vec<String> = admins
        .iter()
        .map(|a| hex::encode(a.to_secret_bytes()))
        .collect();
    crate::write_private(
        &dir.join(ADMIN_SECRETS_FILE),
        (secrets.join("\n") + "\n").as_bytes(),
    )?;
    for (i, a) in admins.iter().enumerate() {
        write_new(dir, &format!("admin-{}.card", i + 1), &a.card().encode())?;
    }
    // A week in the past, so the policy is in force at any development clock offset the
    // quickstart uses, and announced before the coordinator's "now".
    let from = u64::try_from(now_real() - 7 * 86_400).unwrap_or(0);
    let limit = u128::from(limit_sat);
    let doc = PolicyDocument {
        version: 1,
        network: config.network.to_policy(),
        announced_at: from,
        effective_from: from,
        change_delay_secs: 24 * 3600,
        admins: AdminQuorum {
            threshold: 2,
            admins: admins.iter().map(Identity::card).collect(),
        },
        coordinator,
        approvers,
        whitelist: entries
            .iter()
            .map(|a| WhitelistEntry {
                address: a.clone(),
                active_from: 0,
            })
            .collect(),
        limits: [
            (crate::withdrawals::ASSET_BTC, Some(limit)),
            (crate::eth::ASSET_ETH, limit_wei),
        ]
        .into_iter()
        .filter_map(|(asset, max)| {
            max.map(|max_amount| TransactionLimit {
                asset: asset.into(),
                max_amount,
            })
        })
        .collect(),
        rules: [
            (crate::withdrawals::ASSET_BTC, Some(limit)),
            (crate::eth::ASSET_ETH, limit_wei),
        ]
        .into_iter()
        .filter_map(|(asset, max)| {
            max.map(|max_amount| Rule {
                asset: asset.into(),
                min_amount: 1,
                max_amount,
                window: None,
                action: Action::Allow { approvals },
            })
        })
        .collect(),
        velocity: Vec::new(),
    };
    let mut signed = SignedPolicy::new(doc).map_err(|e| anyhow::anyhow!("invalid policy: {e}"))?;
    for a in &admins {
        signed.sign(a, &mut rand_core::OsRng);
    }
    let path = write_new(dir, POLICY_FILE, &signed.encode())?;
    Ok(vec![
        format!(
            "admins: {} and {} (2 of 2; DRILL secrets in {})",
            admins[0].card().fingerprint(),
            admins[1].card().fingerprint(),
            dir.join(ADMIN_SECRETS_FILE).display()
        ),
        format!("policy: {}", path.display()),
    ])
}

async fn signed(app: &crate::App, id: &str, psbt_out: &Path, tx_out: &Path) -> Result<Vec<String>> {
    let row =
        sqlx::query("SELECT state, txid, signed_psbt, final_tx FROM withdrawals WHERE id = $1")
            .bind(id)
            .fetch_optional(app.db.pool())
            .await?
            .ok_or_else(|| refuse(format!("there is no withdrawal {id}")))?;
    let state = text(&row, "state")?;
    let (Some(psbt), Some(tx)) = (opt_text(&row, "signed_psbt")?, opt_text(&row, "final_tx")?)
    else {
        return Err(refuse(format!("withdrawal {id} is {state}, not signed")));
    };
    let psbt = B64
        .decode(psbt.trim())
        .context("the stored PSBT is not base64")?;
    write_file(psbt_out, &psbt)?;
    write_file(tx_out, format!("{}\n", tx.trim()).as_bytes())?;
    Ok(vec![
        format!(
            "withdrawal {id} is {state}, txid {}",
            opt_text(&row, "txid")?.unwrap_or_default()
        ),
        format!("wrote {} and {}", psbt_out.display(), tx_out.display()),
    ])
}

async fn check_tx(
    config: &Config,
    tx_hex: &Path,
    signed_psbt: &Path,
    txid: &str,
) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(tx_hex).with_context(|| format!("reading {}", tx_hex.display()))?;
    let mut lines = text.lines();
    let (Some(line), None) = (lines.next(), lines.next()) else {
        return Err(refuse(format!(
            "{} is not exactly one line",
            tx_hex.display()
        )));
    };
    let tx: bitcoin::Transaction = bitcoin::consensus::encode::deserialize_hex(line.trim())
        .map_err(|e| refuse(format!("{} is not a transaction: {e}", tx_hex.display())))?;
    let computed = tx.compute_txid();
    if computed.to_string() != txid.trim() {
        return Err(refuse(format!(
            "the transaction's txid is {computed}, the coordinator reported {txid}"
        )));
    }
    let bytes = read_bounded(signed_psbt)?;
    let psbt = Psbt::deserialize(&bytes).map_err(|e| {
        refuse(format!(
            "{} is not a binary PSBT: {e}",
            signed_psbt.display()
        ))
    })?;
    for (i, input) in psbt.inputs.iter().enumerate() {
        if input.witness_utxo.is_none() {
            return Err(refuse(format!("input {i} of the PSBT has no witness_utxo")));
        }
        if input.final_script_witness.is_none() {
            return Err(refuse(format!("input {i} of the PSBT is not finalized")));
        }
    }
    let extracted = psbt.extract_tx_unchecked_fee_rate();
    if extracted.compute_txid() != computed || extracted != tx {
        return Err(refuse(
            "the finalized PSBT holds another transaction than tx.hex",
        ));
    }
    let mut out = vec![format!(
        "{}: transaction {computed}, {} inputs, {} outputs, {} vbytes, finalized PSBT agrees",
        tx_hex.display(),
        tx.input.len(),
        tx.output.len(),
        tx.vsize()
    )];
    if let Some(custody_chain::ChainConfig::File(file)) = &config.chain {
        let chain = custody_chain::FileBackend::open(&file.path)?;
        if chain.transaction(&computed).await?.is_none() {
            return Err(refuse(format!(
                "the development chain {} does not hold {computed}",
                file.path.display()
            )));
        }
        out.push(format!(
            "the development chain {} holds it",
            file.path.display()
        ));
    }
    Ok(out)
}
