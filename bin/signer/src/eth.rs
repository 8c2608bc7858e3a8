//! `custody-signer eth …`: the Ethereum (threshold ECDSA) commands.
//!
//! # Files in the signer home (`eth/`)
//! - `primes.age`: Paillier primes for the next key ceremony, encrypted under the
//!   passphrase; deleted when `eth keygen` has stored the share;
//! - `keystore/`: the [`custody_keystore::EcdsaKeystore`] (ECDSA key share and the
//!   presignature store, see `custody_keystore::ecdsa`);
//! - `group.key`: the public group key (`custody_ecdsa::GroupPublicKey` encoding).
//!
//! # Signing (one trip per signer)
//! `eth sign` reads an EIP-4527 eth-sign-request, decodes the unsigned transaction in it
//! and computes the signing hash itself, shows the summary, checks the coordinator's policy
//! decision (its transaction digest is the transaction's intent digest; the withdrawal is
//! `EthTransaction::policy_withdrawal_from` the group's address, so a plain transfer to the
//! wallet itself is an internal transfer with no payments), asks for confirmation (or
//! `--yes`), spends one presignature and writes `{request base}-{signer}-part.ethsig` (a
//! `custody_ecdsa::PartialSignature` encoding). `eth combine` turns the partial signatures
//! of every signer of the batch into `{request base}-final.txn` (the signed transaction,
//! `0x`-hex, one line) and `{request base}-signature.ur` (`ur:eth-signature/…`).
//!
//! # Security
//! Never copy a signer home: a copy restores presignatures, and signing twice with one
//! presignature reveals the key.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use custody_airgap::file::{read_bounded, write_new};
use custody_ecdsa::{
    combine, EcdsaCeremonyKind, EcdsaPlan, GroupPublicKey, PaillierPrimes, PartialSignature,
    PresignatureId, PresignatureStore, PresignatureStoreError, SignError,
};
use custody_ethereum::{Address, EthSignRequest, EthTransaction, U256};
use custody_keystore::{
    write_new_private, BackupKey, BackupRecipient, EcdsaKeystore, SecretString,
};
use custody_policy::{verify_decision, Decision};
use custody_threshold::IdentityCard;
use rand_core::{OsRng, RngCore};
use serde_json::{json, Value};

use crate::config::{ceremony, existing_dir, existing_file, Ceremony, Config, PassphraseSource};
use crate::eth_cli::{
    EthArgs, EthBackupArgs, EthCombineArgs, EthPlanArgs, EthPrimesArgs, EthSignArgs,
};
use crate::home::{create_private_dir, passphrase, Home};
use crate::output::Output;
use crate::{now, Refused};

/// The Ethereum directory in the signer home.
pub const ETH_DIR: &str = "eth";
/// Paillier primes waiting for the key ceremony.
pub const ETH_PRIMES_FILE: &str = "primes.age";
/// The public group key.
pub const ETH_GROUP_FILE: &str = "group.key";
/// The ECDSA keystore directory.
pub const ETH_KEYSTORE_DIR: &str = "keystore";
/// The extension of partial signature files.
pub const PARTIAL_EXTENSION: &str = "ethsig";

/// Where an eth-sign-request comes from.
#[derive(Debug, Clone)]
pub enum EthRequestSource {
    /// A text file with the UR line(s).
    File(PathBuf),
    /// UR lines on stdin.
    StdinLines,
}

/// An `eth` command with its arguments checked.
#[derive(Debug, Clone)]
pub enum EthCommand {
    /// `eth primes`.
    Primes {
        /// Import line N of this file instead of generating.
        import: Option<(PathBuf, usize)>,
    },
    /// `eth plan key`.
    PlanKey {
        /// t.
        threshold: u16,
        /// Cards in order.
        cards: Vec<PathBuf>,
        /// Purpose.
        purpose: String,
        /// Output file.
        out: PathBuf,
    },
    /// `eth plan presign`.
    PlanPresign {
        /// Group key file.
        group: PathBuf,
        /// Signer names.
        signers: Vec<String>,
        /// Batch size.
        count: u16,
        /// t.
        threshold: u16,
        /// Cards in order.
        cards: Vec<PathBuf>,
        /// Purpose.
        purpose: String,
        /// Output file.
        out: PathBuf,
    },
    /// `eth keygen`.
    Keygen(Ceremony),
    /// `eth presign`.
    Presign(Ceremony),
    /// `eth address`.
    Address,
    /// `eth status`.
    Status,
    /// `eth sign`.
    Sign {
        /// The request.
        request: EthRequestSource,
        /// The policy decision file.
        decision: Option<PathBuf>,
        /// Sign without a decision (no policy installed only).
        insecure_without_policy: bool,
        /// The presignature to spend.
        presignature: Option<PresignatureId>,
        /// Where the partial signature goes.
        usb: PathBuf,
        /// No confirmation prompt.
        yes: bool,
    },
    /// `eth combine`.
    Combine {
        /// The request.
        request: PathBuf,
        /// The presigning plan.
        plan: PathBuf,
        /// Partial signature files.
        partials: Vec<PathBuf>,
        /// Output directory.
        out: PathBuf,
    },
    /// `eth backup export`.
    BackupExport {
        /// Output file.
        out: PathBuf,
        /// Backup passphrase.
        key: PassphraseSource,
    },
    /// `eth backup restore`.
    BackupRestore {
        /// Backup file.
        file: PathBuf,
        /// Backup passphrase.
        key: PassphraseSource,
    },
}

fn parent_or_dot(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn new_out(out: PathBuf, what: &str) -> Result<PathBuf> {
    if out.exists() {
        bail!(
            "{} already exists; choose another --out ({what} are never overwritten)",
            out.display()
        );
    }
    Ok(out)
}

fn cards(cards: &[PathBuf]) -> Result<Vec<PathBuf>> {
    cards
        .iter()
        .map(|c| existing_file(c, "identity card"))
        .collect()
}

fn parse_presignature_id(s: &str) -> Result<PresignatureId> {
    let parsed = s.split_once('/').and_then(|(b, i)| {
        let batch: [u8; 16] = hex::decode(b).ok()?.try_into().ok()?;
        Some(PresignatureId {
            batch,
            index: i.parse().ok()?,
        })
    });
    parsed.with_context(|| {
        format!("--presignature {s} is not BATCH/INDEX (32 hex digits, a slash, a number); copy it from the coordinator")
    })
}

fn backup_passphrase_source(p: Option<PathBuf>) -> Result<PassphraseSource> {
    Ok(match p {
        Some(p) => PassphraseSource::File(existing_file(&p, "backup passphrase file")?),
        None => PassphraseSource::Tty,
    })
}

/// Checks the raw `eth` arguments.
///
/// # Errors
/// A message saying which argument is wrong and how to fix it.
pub fn resolve(args: EthArgs) -> Result<EthCommand> {
    Ok(match args {
        EthArgs::Primes(EthPrimesArgs { import, line }) => EthCommand::Primes {
            import: import
                .map(|p| existing_file(&p, "primes file").map(|p| (p, line)))
                .transpose()?,
        },
        EthArgs::Plan(EthPlanArgs::Key {
            threshold,
            cards: c,
            purpose,
            out,
        }) => EthCommand::PlanKey {
            threshold,
            cards: cards(&c)?,
            purpose,
            out: new_out(out, "plans")?,
        },
        EthArgs::Plan(EthPlanArgs::Presign {
            group,
            signers,
            count,
            threshold,
            cards: c,
            purpose,
            out,
        }) => {
            if count == 0 || usize::from(count) > custody_ecdsa::limits::MAX_PRESIGN_BATCH {
                bail!(
                    "--count {count} is not accepted; a batch holds 1 to {} presignatures",
                    custody_ecdsa::limits::MAX_PRESIGN_BATCH
                );
            }
            EthCommand::PlanPresign {
                group: existing_file(&group, "group key file")?,
                signers,
                count,
                threshold,
                cards: cards(&c)?,
                purpose,
                out: new_out(out, "plans")?,
            }
        }
        EthArgs::Keygen(c) => EthCommand::Keygen(ceremony(c)?),
        EthArgs::Presign(c) => EthCommand::Presign(ceremony(c)?),
        EthArgs::Address => EthCommand::Address,
        EthArgs::Status => EthCommand::Status,
        EthArgs::Sign(EthSignArgs {
            request,
            qr_lines,
            decision,
            insecure_without_policy,
            presignature,
            usb,
            yes,
        }) => {
            let request = match (request, qr_lines.as_deref()) {
                (Some(p), _) => EthRequestSource::File(existing_file(&p, "eth-sign-request file")?),
                (None, Some("-")) => EthRequestSource::StdinLines,
                (None, Some(other)) => bail!("--qr-lines {other} is not accepted; pass --qr-lines - to read scanned lines from stdin"),
                (None, None) => bail!("pass --request FILE or --qr-lines -"),
            };
            let usb = match (usb, &request) {
                (Some(dir), _) => dir,
                (None, EthRequestSource::File(p)) => parent_or_dot(p),
                (None, EthRequestSource::StdinLines) => {
                    bail!("a request read from stdin needs --usb DIR for the answer file")
                }
            };
            EthCommand::Sign {
                request,
                decision: decision
                    .map(|d| existing_file(&d, "policy decision file"))
                    .transpose()?,
                insecure_without_policy,
                presignature: presignature
                    .as_deref()
                    .map(parse_presignature_id)
                    .transpose()?,
                usb: existing_dir(&usb, "USB directory")?,
                yes,
            }
        }
        EthArgs::Combine(EthCombineArgs {
            request,
            plan,
            partials,
            out,
        }) => {
            let request = existing_file(&request, "eth-sign-request file")?;
            let out = out.unwrap_or_else(|| parent_or_dot(&request));
            EthCommand::Combine {
                plan: existing_file(&plan, "presigning plan")?,
                partials: partials
                    .iter()
                    .map(|p| existing_file(p, "partial signature file"))
                    .collect::<Result<_>>()?,
                out: existing_dir(&out, "output directory")?,
                request,
            }
        }
        EthArgs::Backup(EthBackupArgs::Export {
            out,
            backup_passphrase_file,
        }) => EthCommand::BackupExport {
            out: new_out(out, "backups")?,
            key: backup_passphrase_source(backup_passphrase_file)?,
        },
        EthArgs::Backup(EthBackupArgs::Restore {
            file,
            backup_passphrase_file,
        }) => EthCommand::BackupRestore {
            file: existing_file(&file, "backup file")?,
            key: backup_passphrase_source(backup_passphrase_file)?,
        },
    })
}

/// Runs an `eth` command.
///
/// # Errors
/// [`Refused`] when a check said no; any other error otherwise.
pub(crate) fn run(config: &Config, home: &Home, cmd: &EthCommand, out: &Output) -> Result<()> {
    match cmd {
        EthCommand::Primes { import } => primes(config, home, import.as_ref(), out),
        EthCommand::PlanKey {
            threshold,
            cards,
            purpose,
            out: path,
        } => plan_key(*threshold, cards, purpose, path, out),
        EthCommand::PlanPresign {
            group,
            signers,
            count,
            threshold,
            cards,
            purpose,
            out: path,
        } => plan_presign(
            group, signers, *count, *threshold, cards, purpose, path, out,
        ),
        EthCommand::Keygen(c) => crate::eth_ceremony::keygen(config, home, c, out),
        EthCommand::Presign(c) => crate::eth_ceremony::presign(config, home, c, out),
        EthCommand::Address => address(home, out),
        EthCommand::Status => status(home, out),
        EthCommand::Sign {
            request,
            decision,
            insecure_without_policy,
            presignature,
            usb,
            yes,
        } => sign(
            config,
            home,
            request,
            decision.as_deref(),
            *insecure_without_policy,
            presignature.as_ref(),
            usb,
            *yes,
            out,
        ),
        EthCommand::Combine {
            request,
            plan,
            partials,
            out: dir,
        } => combine_cmd(request, plan, partials, dir, out),
        EthCommand::BackupExport { out: path, key } => backup_export(config, home, path, key, out),
        EthCommand::BackupRestore { file, key } => backup_restore(config, home, file, key, out),
    }
}

/// Lower-case letters and digits, anything else a single `-` (as USB file names are).
pub(crate) fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let t: String = out.trim_matches('-').chars().take(32).collect();
    if t.is_empty() {
        "x".into()
    } else {
        t
    }
}

/// The `eth/` directory of a home.
pub(crate) fn eth_dir(home: &Home) -> PathBuf {
    home.dir().join(ETH_DIR)
}

/// The Ethereum side of a signer home.
pub(crate) struct EthHome<'a> {
    home: &'a Home,
}

impl<'a> EthHome<'a> {
    pub(crate) fn new(home: &'a Home) -> Self {
        EthHome { home }
    }

    fn keystore_dir(&self) -> PathBuf {
        eth_dir(self.home).join(ETH_KEYSTORE_DIR)
    }

    pub(crate) fn has_share(&self) -> bool {
        self.keystore_dir()
            .join(custody_keystore::ecdsa::ECDSA_SECRETS_FILE)
            .exists()
    }

    pub(crate) fn group(&self) -> Result<GroupPublicKey> {
        let path = eth_dir(self.home).join(ETH_GROUP_FILE);
        if !path.exists() {
            bail!("this signer holds no Ethereum key share yet; run `custody-signer eth keygen --plan PLAN --usb DIR` first");
        }
        let bytes = read_bounded(&path)
            .with_context(|| format!("cannot read {}; check its permissions", path.display()))?;
        GroupPublicKey::decode(&bytes).with_context(|| {
            format!(
                "{} is not an Ethereum group key; restore it from another signer home",
                path.display()
            )
        })
    }

    pub(crate) fn open_keystore(&self, pass: &SecretString) -> Result<EcdsaKeystore> {
        if !self.has_share() {
            bail!("this signer holds no Ethereum key share; run `custody-signer eth keygen` (or `eth backup restore`) first");
        }
        EcdsaKeystore::open(&self.keystore_dir(), pass).with_context(|| {
            format!(
                "cannot unlock the Ethereum keystore in {}; check the passphrase and that no other custody-signer is running",
                self.keystore_dir().display()
            )
        })
    }

    /// Unused presignatures, counted from file names (no passphrase needed).
    fn available(&self) -> Vec<String> {
        let dir = self
            .keystore_dir()
            .join(custody_keystore::ecdsa::PRESIGN_DIR);
        let mut ids = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(stem) = name.strip_suffix(".age") {
                    if !dir.join(format!("{stem}.used")).exists() {
                        if let Some((b, i)) = stem.split_once('-') {
                            ids.push(format!(
                                "{b}/{}",
                                i.trim_start_matches('0').parse::<u16>().unwrap_or(0)
                            ));
                        }
                    }
                }
            }
        }
        ids.sort();
        ids
    }
}

/// Reads and decodes an ECDSA plan file.
pub(crate) fn read_plan(path: &Path) -> Result<EcdsaPlan> {
    let bytes = read_bounded(path)
        .with_context(|| format!("cannot read the plan {}; check the path", path.display()))?;
    EcdsaPlan::decode(&bytes).with_context(|| {
        format!(
            "{} is not an Ethereum ceremony plan; ask the ceremony lead for the plan file",
            path.display()
        )
    })
}

/// The plan as JSON and as text, printed before every ceremony.
pub(crate) fn plan_summary(plan: &EcdsaPlan) -> (Value, String) {
    let participants: Vec<Value> = plan
        .participants()
        .iter()
        .enumerate()
        .map(|(i, c)| json!({"index": i + 1, "name": c.name(), "fingerprint": c.fingerprint()}))
        .collect();
    let mut text = format!(
        "Ethereum ceremony: {}\nplan hash: {}\nthreshold: {} of {}\npurpose: {}\n",
        hex::encode(plan.ceremony_id()),
        hex::encode(plan.hash()),
        plan.threshold(),
        plan.len(),
        plan.purpose(),
    );
    let mut data = json!({
        "ceremony_id": hex::encode(plan.ceremony_id()),
        "plan_hash": hex::encode(plan.hash()),
        "threshold": plan.threshold(),
        "participants": participants,
        "purpose": plan.purpose(),
    });
    match plan.kind() {
        EcdsaCeremonyKind::Presign {
            group_key,
            signers,
            count,
        } => {
            let address = GroupPublicKey::from_compressed(*group_key)
                .map(|g| g.checksum_address())
                .unwrap_or_default();
            data["kind"] = json!("presign");
            data["address"] = json!(address);
            data["count"] = json!(count);
            data["signers"] = json!(signers);
            text.push_str(&format!(
                "kind: presigning {count} presignatures for {address}, signers {signers:?}\n"
            ));
        }
        _ => {
            data["kind"] = json!("key");
            text.push_str("kind: new key (auxiliary info and key generation)\n");
        }
    }
    text.push_str("participants:");
    for (i, c) in plan.participants().iter().enumerate() {
        text.push_str(&format!("\n  {}. {} {}", i + 1, c.name(), c.fingerprint()));
    }
    (data, text)
}

fn read_cards(paths: &[PathBuf]) -> Result<Vec<IdentityCard>> {
    paths
        .iter()
        .map(|p| {
            let bytes = read_bounded(p)
                .with_context(|| format!("cannot read {}; check the path", p.display()))?;
            IdentityCard::decode(&bytes).with_context(|| {
                format!(
                    "{} is not an identity card; copy `identity.card` from the signer home",
                    p.display()
                )
            })
        })
        .collect()
}

fn write_plan(plan: &EcdsaPlan, path: &Path, out: &Output) -> Result<()> {
    let dir = parent_or_dot(path);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .context("--out must name a file")?;
    let written = write_new(&dir, name, &plan.encode()).with_context(|| {
        format!(
            "cannot write the plan to {}; choose another --out",
            path.display()
        )
    })?;
    let (mut data, text) = plan_summary(plan);
    data["file"] = json!(written.display().to_string());
    out.record(
        "plan",
        data,
        &format!("plan file: {}\n{text}", written.display()),
    )
}

fn new_ceremony_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    OsRng.fill_bytes(&mut id);
    id
}

fn plan_key(
    threshold: u16,
    cards: &[PathBuf],
    purpose: &str,
    path: &Path,
    out: &Output,
) -> Result<()> {
    let cards = read_cards(cards)?;
    let plan = EcdsaPlan::new(new_ceremony_id(), EcdsaCeremonyKind::Key, purpose, threshold, cards)
        .context("the plan is inconsistent; check the threshold (2 to the number of cards, at most 32 cards), the purpose text and that no card is given twice")?;
    write_plan(&plan, path, out)
}

#[allow(clippy::too_many_arguments)]
fn plan_presign(
    group: &Path,
    signer_names: &[String],
    count: u16,
    threshold: u16,
    cards: &[PathBuf],
    purpose: &str,
    path: &Path,
    out: &Output,
) -> Result<()> {
    let cards = read_cards(cards)?;
    let bytes = read_bounded(group)
        .with_context(|| format!("cannot read {}; check the path", group.display()))?;
    let group = GroupPublicKey::decode(&bytes).with_context(|| {
        format!(
            "{} is not an Ethereum group key; copy eth/group.key from a signer home",
            group.display()
        )
    })?;
    let mut signers = signer_names
        .iter()
        .map(|n| {
            cards
                .iter()
                .position(|c| c.name() == n)
                .map(|p| p as u16 + 1)
                .with_context(|| format!("no card is named {n:?}; check --signer"))
        })
        .collect::<Result<Vec<u16>>>()?;
    signers.sort_unstable();
    let plan = EcdsaPlan::new(
        new_ceremony_id(),
        EcdsaCeremonyKind::Presign {
            group_key: *group.compressed(),
            signers,
            count,
        },
        purpose,
        threshold,
        cards,
    )
    .context("the plan is inconsistent; give the key's threshold, every card of the key in the key plan's order, and exactly `threshold` different signers")?;
    write_plan(&plan, path, out)
}

fn primes(
    config: &Config,
    home: &Home,
    import: Option<&(PathBuf, usize)>,
    out: &Output,
) -> Result<()> {
    home.card()?;
    let dir = eth_dir(home);
    let path = dir.join(ETH_PRIMES_FILE);
    if path.exists() {
        bail!(
            "{} already holds primes for the next key ceremony; they are used (and deleted) by `eth keygen`",
            path.display()
        );
    }
    let pass = passphrase(&config.passphrase, false)?;
    // Unlocking proves the passphrase is this signer's before minutes of work.
    home.unlock_identity(&pass)?;
    let (primes, source) = match import {
        Some((file, line)) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}; check the path", file.display()))?;
            let hex_line = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .nth(*line)
                .with_context(|| format!("{} has no line {line}", file.display()))?;
            let bytes = zeroize::Zeroizing::new(
                hex::decode(hex_line.trim())
                    .with_context(|| format!("line {line} of {} is not hex", file.display()))?,
            );
            let primes = PaillierPrimes::from_secret_bytes(&bytes).with_context(|| {
                format!(
                    "line {line} of {} is not a Paillier primes encoding",
                    file.display()
                )
            })?;
            out.note("WARNING: imported Paillier primes. Primes from a file (such as the published test primes) are for drills and tests only: a key made with them is NOT safe for real funds.");
            (
                primes,
                format!("imported from {} line {line}", file.display()),
            )
        }
        None => {
            out.note("finding two 1536-bit safe primes; this takes a few minutes");
            let start = std::time::Instant::now();
            let primes = PaillierPrimes::generate(&mut OsRng, |p| {
                out.note(&format!(
                    "primes: {} of {} found ({} s)",
                    p.done,
                    p.total,
                    start.elapsed().as_secs()
                ));
            });
            (primes, "generated".to_owned())
        }
    };
    create_private_dir(&dir)?;
    custody_keystore::ecdsa::write_encrypted(
        &dir,
        ETH_PRIMES_FILE,
        &primes.to_secret_bytes(),
        &pass,
        config.encryption,
    )
    .with_context(|| format!("cannot store the primes in {}", dir.display()))?;
    out.record(
        "eth-primes",
        json!({"file": path.display().to_string(), "source": source}),
        &format!(
            "Paillier primes {source}, stored encrypted in {}; bring this signer to the key ceremony (`eth keygen`)",
            path.display()
        ),
    )
}

fn address(home: &Home, out: &Output) -> Result<()> {
    let group = EthHome::new(home).group()?;
    let address = group.checksum_address();
    out.record("eth-address", json!({"address": address}), &address)
}

fn status(home: &Home, out: &Output) -> Result<()> {
    let eth = EthHome::new(home);
    let primes = eth_dir(home).join(ETH_PRIMES_FILE).exists();
    let (address, available) = if eth.has_share() {
        (Some(eth.group()?.checksum_address()), eth.available())
    } else {
        (None, Vec::new())
    };
    let text = match &address {
        Some(a) => format!(
            "Ethereum address: {a}\nunused presignatures: {}{}",
            available.len(),
            if available.is_empty() {
                "\nrun a presigning ceremony (`eth presign`) before signing"
            } else {
                ""
            }
        ),
        None => format!(
            "no Ethereum key share yet; primes for the key ceremony: {}",
            if primes {
                "ready"
            } else {
                "not yet (run `eth primes`)"
            }
        ),
    };
    out.record(
        "eth-status",
        json!({
            "address": address,
            "presignatures": available,
            "primes_ready": primes,
        }),
        &text,
    )
}

/// Reads an eth-sign-request from its source. Returns it with the base name for answer
/// files (the request file's name without its extension) if it came from a file.
fn read_request(source: &EthRequestSource) -> Result<(EthSignRequest, Option<String>)> {
    let (text, label, base) = match source {
        EthRequestSource::File(path) => {
            let bytes = read_bounded(path).with_context(|| {
                format!(
                    "cannot read {}; check the path and the USB stick",
                    path.display()
                )
            })?;
            let text = String::from_utf8(bytes).with_context(|| {
                format!(
                    "{} is not a UR text file; ask the coordinator for the eth-sign-request",
                    path.display()
                )
            })?;
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("request");
            let base = match name.rsplit_once('.') {
                Some((b, _)) if !b.is_empty() => b.to_owned(),
                _ => name.to_owned(),
            };
            (text, path.display().to_string(), Some(base))
        }
        EthRequestSource::StdinLines => {
            let mut text = String::new();
            std::io::stdin()
                .lock()
                .take(custody_airgap::file::MAX_FILE_LEN)
                .read_to_string(&mut text)
                .context("cannot read the scanned lines from stdin")?;
            (text, "the scanned request".to_owned(), None)
        }
    };
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return Err(Refused(format!(
            "{label} is empty; ask the coordinator for the eth-sign-request"
        ))
        .into());
    }
    let request = match lines.as_slice() {
        [one] => EthSignRequest::from_ur(one),
        many => EthSignRequest::from_ur_parts(many.iter().copied()),
    };
    let request = request.map_err(|e| {
        Refused(format!(
            "{label} is not a valid eth-sign-request: {e}; nothing was signed: ask the coordinator for a new request"
        ))
    })?;
    Ok((request, base))
}

/// The transaction of a request, checked against the request and the group address.
fn checked_transaction(request: &EthSignRequest, group: &GroupPublicKey) -> Result<EthTransaction> {
    let tx = request.transaction().map_err(|e| {
        Refused(format!(
            "the signing request does not hold: {e}; nothing was signed: do not sign this request, tell the coordinator"
        ))
    })?;
    request
        .check_address(custody_ethereum::Address::from(group.address()))
        .map_err(|e| {
            Refused(format!(
                "the signing request does not hold: {e}; nothing was signed: tell the coordinator"
            ))
        })?;
    Ok(tx)
}

/// The coordinator picks the fees when it asks for signatures and the decision does not
/// bind them, so this signer checks them against its own limits (`FeeLimits`).
fn check_fees(tx: &EthTransaction) -> Result<()> {
    custody_ethereum::FeeLimits::default()
        .check(tx)
        .map_err(|e| {
            Refused(format!(
                "{e}; nothing was signed: do not sign this request, tell the coordinator"
            ))
            .into()
        })
}

/// The summary as this wallet sees it: a plain transfer to `own` is an internal transfer.
fn print_summary(tx: &EthTransaction, own: Address, out: &Output) -> Result<()> {
    let summary = tx.summary_from(own).map_err(|e| {
        Refused(format!(
            "the transaction cannot be summarised: {e}; nothing was signed: tell the coordinator"
        ))
    })?;
    let hash = tx.signing_hash();
    let mut data = summary.to_json();
    data["signing_hash"] = json!(format!("{hash}"));
    let mut text = summary.to_string();
    text.push_str(&format!("  signing hash:    {hash}"));
    out.record("eth-summary", data, text.trim_end())
}

fn read_decision(path: &Path) -> Result<Decision> {
    let bytes = read_bounded(path)
        .with_context(|| format!("cannot read {}; check the path", path.display()))?;
    let raw = match std::str::from_utf8(&bytes) {
        Ok(t) if !t.trim().is_empty() && t.trim().bytes().all(|b| b.is_ascii_hexdigit()) => {
            hex::decode(t.trim()).context("the decision file is not valid hex")?
        }
        _ => bytes,
    };
    Decision::decode(&raw).map_err(|e| {
        Refused(format!(
            "{} is not a policy decision: {e}; ask the coordinator for the approved withdrawal's decision",
            path.display()
        ))
        .into()
    })
}

/// Checks the coordinator's decision against the installed policy, offline. `own` is the
/// group's address: a plain transfer to it is an internal transfer (no payments).
fn check_policy(
    home: &Home,
    tx: &EthTransaction,
    own: Address,
    decision: Option<&Path>,
    insecure_without_policy: bool,
    out: &Output,
) -> Result<Option<String>> {
    let at = now();
    let Some(path) = decision else {
        if !insecure_without_policy {
            return Err(Refused(
                "no policy decision: pass --decision FILE with the coordinator's signed decision for this withdrawal; nothing was signed".into(),
            )
            .into());
        }
        if crate::policy::installed(home)? {
            return Err(Refused(
                "a withdrawal policy is installed, so --insecure-without-policy is refused: pass --decision FILE; nothing was signed".into(),
            )
            .into());
        }
        out.note("WARNING: signing WITHOUT a policy check (--insecure-without-policy, no policy installed): drills and tests only");
        out.record(
            "policy-decision",
            json!({"verdict": "unchecked"}),
            "policy decision: NOT CHECKED (--insecure-without-policy)",
        )?;
        return Ok(None);
    };
    let policy = crate::policy::enforced(home, at)?;
    let decision = read_decision(path)?;
    let withdrawal = tx.policy_withdrawal_from(own).map_err(|e| {
        Refused(format!(
            "out of policy: {e}; nothing was signed: do not sign this request, tell the coordinator"
        ))
    })?;
    // Approvals and the decision bind the transaction's intent (chain, recipient, value,
    // calldata; docs/formats/ethereum.md): the coordinator picks nonce and fees at signing
    // time, and this signer shows them above.
    let intent = tx.intent_digest();
    let approvals = verify_decision(&decision, &policy, &withdrawal, &intent, at)
        .map_err(|e| {
            Refused(format!(
                "out of policy: {e}; nothing was signed: do not sign this request, tell the coordinator"
            ))
        })?;
    let doc = policy.document();
    let internal = withdrawal.is_internal();
    out.record(
        "policy-decision",
        json!({
            "withdrawal_id": decision.withdrawal_id,
            "policy_version": doc.version,
            "policy_hash": hex::encode(policy.hash()),
            "approvals": approvals,
            "hold_until": decision.hold_until,
            "asset": withdrawal.asset,
            "internal_transfer": internal,
            "coordinator": doc.coordinator.fingerprint(),
            "verdict": "allowed",
        }),
        &format!(
            "policy decision: {} {} ({}{}) allowed under policy version {} ({}), {approvals} valid approvals, hold passed, signed by coordinator {}",
            if internal { "internal transfer" } else { "withdrawal" },
            decision.withdrawal_id,
            withdrawal.asset,
            if internal {
                "; nothing leaves the wallet but the gas"
            } else {
                ""
            },
            doc.version,
            hex::encode(&policy.hash()[..8]),
            doc.coordinator.fingerprint()
        ),
    )?;
    Ok(Some(decision.withdrawal_id))
}

/// The directory of the withdrawals this signer has signed, one file each.
const SIGNED_DIR: &str = "signed-withdrawals";

/// Where this signer records that it signed `withdrawal_id`.
fn withdrawal_record(home: &Home, withdrawal_id: &str) -> (PathBuf, String) {
    use sha2::Digest as _;
    let name = format!(
        "{}.json",
        hex::encode(sha2::Sha256::digest(withdrawal_id.as_bytes()))
    );
    (eth_dir(home).join(SIGNED_DIR), name)
}

/// Refuses `tx` when this signer signed withdrawal `withdrawal_id` before at another nonce
/// or chain; reads only. Returns whether it signed it at this one.
///
/// An Ethereum decision and its approvals bind the transaction's intent and the
/// withdrawal id, not the nonce (the coordinator picks it at signing time, ADR 0018), so
/// the same approved withdrawal signed at two nonces would be mined twice and pay twice.
/// Signing it again at the same nonce (a lost answer, higher fees) is allowed: only one of
/// them can be mined. Any two quorums of a `t`-of-`n` key with `2t > n` share a signer, so
/// one signer's record is enough to stop a coordinator that asks twice (ADR 0036).
fn check_withdrawal_nonce(home: &Home, withdrawal_id: &str, tx: &EthTransaction) -> Result<bool> {
    let (dir, name) = withdrawal_record(home, withdrawal_id);
    let path = dir.join(&name);
    if !path.exists() {
        return Ok(false);
    }
    let bytes =
        read_bounded(&path).with_context(|| format!("reading the record {}", path.display()))?;
    let before: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("the record {} is damaged", path.display()))?;
    let (chain, nonce) = (before["chain_id"].as_u64(), before["nonce"].as_u64());
    if chain == Some(tx.chain_id()) && nonce == Some(tx.nonce()) {
        return Ok(true);
    }
    Err(Refused(format!(
        "withdrawal {withdrawal_id} was signed by this signer before, at nonce {} on chain {}: signing it at nonce {} on chain {} would pay it a second time; nothing was signed. Do not sign; tell the security team that the coordinator asked for it again",
        nonce.map_or_else(|| "?".into(), |n| n.to_string()),
        chain.map_or_else(|| "?".into(), |c| c.to_string()),
        tx.nonce(),
        tx.chain_id()
    ))
    .into())
}

/// Records, durably and before the partial signature is made, that this signer signs
/// withdrawal `withdrawal_id` at `tx`'s chain and nonce (see [`check_withdrawal_nonce`],
/// which it runs again: another `eth sign` may have recorded it meanwhile).
fn claim_withdrawal_nonce(home: &Home, withdrawal_id: &str, tx: &EthTransaction) -> Result<()> {
    if check_withdrawal_nonce(home, withdrawal_id, tx)? {
        return Ok(());
    }
    let (dir, name) = withdrawal_record(home, withdrawal_id);
    if !dir.exists() {
        create_private_dir(&dir)?;
        // The new directory's entry in `eth/`, so the first record survives a crash.
        let parent = eth_dir(home);
        std::fs::File::open(&parent)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", parent.display()))?;
    }
    let record = json!({
        "withdrawal_id": withdrawal_id,
        "chain_id": tx.chain_id(),
        "nonce": tx.nonce(),
        "signing_hash": format!("{}", tx.signing_hash()),
        "at": now(),
    });
    if let Err(e) = write_new(&dir, &name, record.to_string().as_bytes()) {
        // Recorded by another run meanwhile: the same nonce is fine, another is refused.
        if dir.join(&name).exists() && check_withdrawal_nonce(home, withdrawal_id, tx)? {
            return Ok(());
        }
        return Err(anyhow::Error::new(e).context(format!(
            "cannot record withdrawal {withdrawal_id} in {}; nothing was signed",
            dir.display()
        )));
    }
    Ok(())
}

/// The partial signature file name: `{base}-{signer}-part.ethsig`.
fn partial_file_name(base: &str, signer: &str) -> String {
    format!("{}-{}-part.{PARTIAL_EXTENSION}", slug(base), slug(signer))
}

#[allow(clippy::too_many_arguments)]
fn sign(
    config: &Config,
    home: &Home,
    source: &EthRequestSource,
    decision: Option<&Path>,
    insecure_without_policy: bool,
    presignature: Option<&PresignatureId>,
    usb: &Path,
    yes: bool,
    out: &Output,
) -> Result<()> {
    let (_, card) = home.card()?;
    let eth = EthHome::new(home);
    let group = eth.group()?;
    let (request, base) = read_request(source)?;
    let tx = checked_transaction(&request, &group)?;
    let own = Address::from(group.address());
    print_summary(&tx, own, out)?;
    check_fees(&tx)?;
    let withdrawal_id = check_policy(home, &tx, own, decision, insecure_without_policy, out)?;
    // Before anyone is asked: a withdrawal signed at another nonce is refused here.
    if let Some(id) = &withdrawal_id {
        check_withdrawal_nonce(home, id, &tx)?;
    }
    if !yes {
        crate::sign::confirm()?;
    }
    let pass = passphrase(&config.passphrase, false)?;
    let identity = home.unlock_identity(&pass)?;
    let mut ks = eth.open_keystore(&pass)?;
    let id = match presignature {
        Some(id) => *id,
        None => *ks.presignatures_ref().available().first().ok_or_else(|| {
            Refused("this signer has no unused presignatures (a restored signer has none); run a presigning ceremony (`eth presign`) first; nothing was signed".into())
        })?,
    };
    let hash: [u8; 32] = tx.signing_hash().0;
    let base = base.unwrap_or_else(|| format!("eth-request-{}", &hex::encode(hash)[..16]));
    let name = partial_file_name(&base, card.name());
    if usb.join(&name).exists() {
        return Err(Refused(format!(
            "{} already exists: this request was answered already; nothing was signed",
            usb.join(&name).display()
        ))
        .into());
    }
    // Recorded only now, by a key holder who unlocked the share, right before signing.
    if let Some(withdrawal_id) = &withdrawal_id {
        claim_withdrawal_nonce(home, withdrawal_id, &tx)?;
    }
    let partial = ks
        .sign(&identity, &id, &hash, &mut OsRng)
        .map_err(|e| match e {
            SignError::Store(PresignatureStoreError::Store(source)) => anyhow::Error::new(source)
                .context("the presignature store could not record the signature; check the disk, then ask the coordinator for a new request"),
            other => Refused(format!("the keystore refused to sign: {other}")).into(),
        })?;
    let path = write_new(usb, &name, &partial.encode()).with_context(|| {
        format!(
            "cannot write the partial signature {name} to {}; presignature {id} is spent: ask the coordinator to sign with another presignature",
            usb.display()
        )
    })?;
    let left = ks.presignatures_ref().available().len();
    // The summary was made above, so it cannot fail here.
    let internal = tx.summary_from(own).is_ok_and(|s| s.is_internal_transfer());
    out.record(
        "eth-signed",
        json!({
            "file": path.display().to_string(),
            "presignature": id.to_string(),
            "signer": partial.signer(),
            "signing_hash": format!("{}", tx.signing_hash()),
            "internal_transfer": internal,
            "presignatures_left": left,
        }),
        &format!(
            "signed {}with presignature {id}\nwrote {}\n{left} unused presignatures left",
            if internal {
                "an internal transfer to this wallet itself (nothing leaves the wallet but the gas) "
            } else {
                ""
            },
            path.display()
        ),
    )
}

fn combine_cmd(
    request_path: &Path,
    plan_path: &Path,
    partial_paths: &[PathBuf],
    dir: &Path,
    out: &Output,
) -> Result<()> {
    let (request, base) = read_request(&EthRequestSource::File(request_path.to_owned()))?;
    let plan = read_plan(plan_path)?;
    let EcdsaCeremonyKind::Presign { group_key, .. } = plan.kind() else {
        return Err(Refused(
            "the plan is not a presigning plan; pass the plan of the presignature batch the signers used".into(),
        )
        .into());
    };
    let group =
        GroupPublicKey::from_compressed(*group_key).context("the plan's group key is damaged")?;
    let tx = checked_transaction(&request, &group)?;
    let mut partials = Vec::with_capacity(partial_paths.len());
    for p in partial_paths {
        let bytes = read_bounded(p).with_context(|| format!("cannot read {}", p.display()))?;
        partials
            .push(PartialSignature::decode(&bytes).map_err(|e| {
                Refused(format!("{} is not a partial signature: {e}", p.display()))
            })?);
    }
    let prehash: [u8; 32] = tx.signing_hash().0;
    let sig = combine(&plan, &prehash, &partials).map_err(|e| {
        Refused(format!(
            "the partial signatures do not combine: {e}; nothing was written"
        ))
    })?;
    let signed = tx
        .with_signature(
            U256::from_be_bytes(sig.r),
            U256::from_be_bytes(sig.s),
            sig.y_parity,
        )
        .and_then(|s| {
            s.check_sender(custody_ethereum::Address::from(group.address()))
                .map(|()| s)
        })
        .map_err(|e| {
            Refused(format!(
                "the signed transaction does not check out: {e}; nothing was written"
            ))
        })?;
    let base = base.unwrap_or_else(|| "eth-request".into());
    let hex_tx = signed.to_hex();
    let tx_name = format!("{}-final.txn", slug(&base));
    let tx_path = write_new(dir, &tx_name, format!("{hex_tx}\n").as_bytes())
        .with_context(|| format!("cannot write {tx_name} to {}", dir.display()))?;
    let ur = request.request_id.map(|id| {
        custody_ethereum::EthSignature::for_transaction(
            id,
            &signed,
            Some("CoinPort Custody".into()),
        )
        .to_ur()
    });
    let ur_path = match &ur {
        Some(ur) => {
            let name = format!("{}-signature.ur", slug(&base));
            Some(
                write_new(dir, &name, format!("{ur}\n").as_bytes())
                    .with_context(|| format!("cannot write {name} to {}", dir.display()))?,
            )
        }
        None => {
            out.note("the request has no request id, so no eth-signature UR was written");
            None
        }
    };
    out.record(
        "eth-combined",
        json!({
            "raw_transaction": hex_tx,
            "transaction_hash": format!("{}", signed.hash()),
            "sender": group.checksum_address(),
            "eth_signature_ur": ur,
            "file": tx_path.display().to_string(),
            "ur_file": ur_path.as_ref().map(|p| p.display().to_string()),
        }),
        &format!(
            "{hex_tx}\nsender: {} (recovered, matches the group address)\ntransaction hash: {}\nwrote {}{}",
            group.checksum_address(),
            signed.hash(),
            tx_path.display(),
            ur_path
                .map(|p| format!("\nwrote {}", p.display()))
                .unwrap_or_default()
        ),
    )
}

fn backup_export(
    config: &Config,
    home: &Home,
    path: &Path,
    key: &PassphraseSource,
    out: &Output,
) -> Result<()> {
    let eth = EthHome::new(home);
    let pass = passphrase(&config.passphrase, false)?;
    let ks = eth.open_keystore(&pass)?;
    let backup_pass = passphrase(key, true)?;
    let ct = ks
        .export_backup(&BackupRecipient::Passphrase(backup_pass, config.encryption))
        .context("cannot encrypt the backup")?;
    let dir = parent_or_dot(path);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .context("--out must name a file")?;
    let written = write_new_private(&dir, name, &ct)
        .with_context(|| format!("cannot write the backup to {}", path.display()))?;
    out.record(
        "eth-backup",
        json!({"file": written.display().to_string(), "address": ks.share().group_key().checksum_address()}),
        &format!(
            "Ethereum key share backup written to {} (no presignatures)",
            written.display()
        ),
    )
}

fn backup_restore(
    config: &Config,
    home: &Home,
    file: &Path,
    key: &PassphraseSource,
    out: &Output,
) -> Result<()> {
    home.card()?;
    let eth = EthHome::new(home);
    if eth.has_share() {
        bail!(
            "{} already holds an Ethereum key share; restore into a home without one",
            home.dir().display()
        );
    }
    let ct = read_bounded(file).with_context(|| format!("cannot read {}", file.display()))?;
    let backup_pass = passphrase(key, false)?;
    let pass = passphrase(&config.passphrase, false)?;
    home.unlock_identity(&pass)?;
    let dir = eth_dir(home);
    let ks_dir = dir.join(ETH_KEYSTORE_DIR);
    if ks_dir.join(custody_keystore::ecdsa::PRESIGN_DIR).exists() {
        bail!(
            "{} holds presignatures of an earlier key share; move the eth directory aside first (presignatures are never restored)",
            ks_dir.display()
        );
    }
    create_private_dir(&ks_dir)?;
    let ks = custody_keystore::restore_ecdsa_backup(
        file,
        &ct,
        &BackupKey::Passphrase(backup_pass),
        &ks_dir,
        &pass,
        config.encryption,
        &mut OsRng,
    )
    .map_err(|e| anyhow::anyhow!("cannot restore the backup: {e}"))?;
    let group = *ks.share().group_key();
    write_new(&dir, ETH_GROUP_FILE, &group.encode())
        .context("cannot store the Ethereum group key; check the disk")?;
    out.record(
        "eth-restored",
        json!({"address": group.checksum_address(), "presignatures": 0}),
        &format!(
            "Ethereum key share restored for {}; it has no presignatures: run a presigning ceremony before signing",
            group.checksum_address()
        ),
    )
}
