//! The validated configuration a command runs with.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use custody_keystore::EncryptionParams;
use custody_threshold::limits::MAX_BATCH;
use custody_threshold::Network;

use crate::cli::{
    ApproveArgs, BackupArgs, BackupKeyArgs, CeremonyArgs, Cli, CommandArgs, CommitmentsArgs,
    DkgArgs, IdentityArgs, InspectArgs, PlanArgs, PlanKindArg, PolicyArgs, QrInArgs, QrOutArgs,
    QrProfileArg, RecordArgs, RepairArgs, SignArgs, WalletArgs,
};
use crate::qr::{QrOut, RequestSource};
use custody_airgap::qr::Profile;

/// Most receive addresses `wallet show` prints at once.
pub const MAX_ADDRESSES: u32 = 1000;

/// Where the passphrase comes from.
#[derive(Debug, Clone)]
pub enum PassphraseSource {
    /// Prompt on the terminal.
    Tty,
    /// The first line of a file.
    File(PathBuf),
}

/// A ceremony run over a USB directory.
#[derive(Debug, Clone)]
pub struct Ceremony {
    /// Plan file.
    pub plan: PathBuf,
    /// Exchange directory.
    pub usb: PathBuf,
    /// Overall deadline.
    pub timeout: Duration,
    /// Poll interval.
    pub poll: Duration,
}

/// The plan kind with its extra parameters.
#[derive(Debug, Clone)]
pub enum PlanKind {
    /// A DKG plan.
    Dkg,
    /// A refresh plan of the group in the file.
    Refresh {
        /// Group key file.
        group: PathBuf,
    },
    /// A repair plan.
    Repair {
        /// Group key file.
        group: PathBuf,
        /// Name of the participant who lost its share.
        lost: String,
        /// Names of the helpers.
        helpers: Vec<String>,
    },
}

/// Where a backup key comes from.
#[derive(Debug, Clone)]
pub enum BackupKeySource {
    /// A backup passphrase from the terminal or a file.
    Passphrase(PassphraseSource),
    /// An age identity file.
    AgeIdentity(PathBuf),
}

/// A command with its arguments checked.
#[derive(Debug, Clone)]
pub enum Command {
    /// `identity create`.
    IdentityCreate {
        /// Display name.
        name: String,
    },
    /// `identity show`.
    IdentityShow {
        /// Also print the fingerprint as words.
        words: bool,
    },
    /// `plan create`.
    PlanCreate {
        /// What the plan is for.
        kind: PlanKind,
        /// t.
        threshold: u16,
        /// Card files, in order.
        cards: Vec<PathBuf>,
        /// Network.
        network: Network,
        /// Purpose text.
        purpose: String,
        /// Output file.
        out: PathBuf,
    },
    /// `dkg join`.
    DkgJoin(Ceremony),
    /// `refresh`.
    Refresh(Ceremony),
    /// `repair help`.
    RepairHelp {
        /// Name of the participant who lost its share.
        lost: String,
        /// The ceremony.
        ceremony: Ceremony,
    },
    /// `repair recover`.
    RepairRecover {
        /// Group key file, if not the home's.
        group: Option<PathBuf>,
        /// The ceremony.
        ceremony: Ceremony,
    },
    /// `policy pin-admins`.
    PolicyPinAdmins {
        /// k.
        threshold: u16,
        /// Admin cards.
        cards: Vec<PathBuf>,
        /// Replace an existing pin.
        replace: bool,
    },
    /// `policy install`.
    PolicyInstall {
        /// Signed policy file.
        file: PathBuf,
    },
    /// `policy show`.
    PolicyShow,
    /// `record verify`.
    RecordVerify {
        /// Record file.
        file: PathBuf,
    },
    /// `inspect`.
    Inspect {
        /// Where the request comes from.
        request: RequestSource,
    },
    /// `backup export`.
    BackupExport {
        /// Output file (must not exist).
        out: PathBuf,
        /// Who can decrypt it.
        to: BackupTarget,
    },
    /// `backup verify`.
    BackupVerify {
        /// Backup file.
        file: PathBuf,
        /// Its key.
        key: BackupKeySource,
    },
    /// `backup restore`.
    BackupRestore {
        /// Backup file.
        file: PathBuf,
        /// Ceremony records to adopt.
        records: Vec<PathBuf>,
        /// Its key.
        key: BackupKeySource,
    },
    /// `man`.
    Man,
    /// `completions`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// `commitments issue`.
    CommitmentsIssue {
        /// Number of commitments, 1 to [`MAX_BATCH`].
        count: usize,
        /// Output directory.
        usb: PathBuf,
        /// QR output.
        qr: QrOut,
    },
    /// `sign`.
    Sign {
        /// Where the request comes from.
        request: RequestSource,
        /// QR output of the answer.
        qr: QrOut,
        /// Where the answer goes.
        usb: PathBuf,
        /// No confirmation prompt.
        yes: bool,
    },
    /// `wallet show`.
    WalletShow {
        /// Number of receive addresses.
        count: u32,
    },
    /// `status`.
    Status,
    /// `approve`.
    Approve {
        /// The approval digest.
        digest: [u8; 32],
    },
    /// `eth …`.
    Eth(crate::eth::EthCommand),
}

/// Who a backup is encrypted to.
#[derive(Debug, Clone)]
pub enum BackupTarget {
    /// A backup passphrase.
    Passphrase(PassphraseSource),
    /// An age X25519 recipient (`age1…`).
    Recipient(String),
}

/// Everything a command needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The signer's state directory.
    pub home: PathBuf,
    /// JSON Lines output.
    pub json: bool,
    /// Where the passphrase comes from.
    pub passphrase: PassphraseSource,
    /// Encryption parameters for new secrets.
    pub encryption: EncryptionParams,
    /// The command.
    pub command: Command,
}

pub(crate) fn existing_dir(path: &Path, what: &str) -> Result<PathBuf> {
    if !path.is_dir() {
        bail!(
            "the {what} {} is not a directory; check the path (is the USB stick mounted?)",
            path.display()
        );
    }
    Ok(path.to_owned())
}

pub(crate) fn existing_file(path: &Path, what: &str) -> Result<PathBuf> {
    if !path.is_file() {
        bail!(
            "the {what} {} does not exist or is not a file; check the path",
            path.display()
        );
    }
    Ok(path.to_owned())
}

impl Config {
    /// Checks the raw arguments and resolves defaults. `home_var` is the `HOME`
    /// environment variable, used only for the default home directory.
    ///
    /// # Errors
    /// A message saying which argument is wrong and how to fix it.
    pub fn resolve(cli: Cli, home_var: Option<PathBuf>) -> Result<Config> {
        let g = cli.global;
        let home = match g.home {
            Some(h) => h,
            None => home_var
                .map(|h| h.join(".custody-signer"))
                .context("no signer home: pass --home DIR (HOME is not set)")?,
        };
        let passphrase = match g.passphrase_file {
            Some(p) => PassphraseSource::File(existing_file(&p, "passphrase file")?),
            None => PassphraseSource::Tty,
        };
        let encryption = match g.scrypt_log_n {
            None => EncryptionParams::default(),
            Some(n) => EncryptionParams::with_scrypt_log_n(n).map_err(|e| {
                anyhow::anyhow!(
                    "--scrypt-log-n {n} is not accepted ({e}); leave it out to use the default"
                )
            })?,
        };
        let command = match cli.command {
            CommandArgs::Identity(IdentityArgs::Create { name }) => {
                Command::IdentityCreate { name }
            }
            CommandArgs::Identity(IdentityArgs::Show { words }) => Command::IdentityShow { words },
            CommandArgs::Plan(PlanArgs::Create {
                kind,
                group,
                lost,
                helpers,
                threshold,
                cards,
                network,
                purpose,
                out,
            }) => {
                let network = parse_network(&network)?;
                if threshold < 2 || usize::from(threshold) > cards.len() {
                    bail!(
                        "--threshold {threshold} does not fit {} cards; the threshold must be at least 2 and at most the number of cards",
                        cards.len()
                    );
                }
                let cards = cards
                    .iter()
                    .map(|c| existing_file(c, "identity card"))
                    .collect::<Result<_>>()?;
                if out.exists() {
                    bail!(
                        "{} already exists; choose another --out (plans are never overwritten)",
                        out.display()
                    );
                }
                let kind = match kind {
                    PlanKindArg::Dkg => {
                        if group.is_some() || lost.is_some() || !helpers.is_empty() {
                            bail!("--group, --lost and --helper are for refresh and repair plans; add --kind refresh or --kind repair");
                        }
                        PlanKind::Dkg
                    }
                    PlanKindArg::Refresh => PlanKind::Refresh {
                        group: existing_file(
                            &group.context(
                                "a refresh plan needs --group FILE (group.key from a signer home)",
                            )?,
                            "group key file",
                        )?,
                    },
                    PlanKindArg::Repair => PlanKind::Repair {
                        group: existing_file(
                            &group.context(
                                "a repair plan needs --group FILE (group.key from a signer home)",
                            )?,
                            "group key file",
                        )?,
                        lost: lost.context("a repair plan needs --lost NAME")?,
                        helpers: if helpers.is_empty() {
                            bail!("a repair plan needs --helper NAME for each helping participant");
                        } else {
                            helpers
                        },
                    },
                };
                Command::PlanCreate {
                    kind,
                    threshold,
                    cards,
                    network,
                    purpose,
                    out,
                }
            }
            CommandArgs::Dkg(DkgArgs::Join(c)) => Command::DkgJoin(ceremony(c)?),
            CommandArgs::Refresh(c) => Command::Refresh(ceremony(c)?),
            CommandArgs::Repair(RepairArgs::Help { lost, ceremony: c }) => Command::RepairHelp {
                lost,
                ceremony: ceremony(c)?,
            },
            CommandArgs::Repair(RepairArgs::Recover { group, ceremony: c }) => {
                Command::RepairRecover {
                    group: group
                        .map(|g| existing_file(&g, "group key file"))
                        .transpose()?,
                    ceremony: ceremony(c)?,
                }
            }
            CommandArgs::Policy(PolicyArgs::PinAdmins {
                threshold,
                cards,
                replace,
            }) => Command::PolicyPinAdmins {
                threshold,
                cards: cards
                    .iter()
                    .map(|c| existing_file(c, "admin identity card"))
                    .collect::<Result<_>>()?,
                replace,
            },
            CommandArgs::Policy(PolicyArgs::Install { file }) => Command::PolicyInstall {
                file: existing_file(&file, "signed policy file")?,
            },
            CommandArgs::Policy(PolicyArgs::Show) => Command::PolicyShow,
            CommandArgs::Record(RecordArgs::Verify { file }) => Command::RecordVerify {
                file: existing_file(&file, "ceremony record")?,
            },
            CommandArgs::Inspect(InspectArgs { request, qr_in }) => Command::Inspect {
                request: request_source(request, qr_in)?,
            },
            CommandArgs::Backup(BackupArgs::Export {
                out,
                to_recipient,
                backup_passphrase_file,
            }) => {
                if out.exists() {
                    bail!(
                        "{} already exists; choose another --out (backups are never overwritten)",
                        out.display()
                    );
                }
                let to = match (to_recipient, backup_passphrase_file) {
                    (Some(r), _) => BackupTarget::Recipient(r),
                    (None, Some(p)) => BackupTarget::Passphrase(PassphraseSource::File(
                        existing_file(&p, "backup passphrase file")?,
                    )),
                    (None, None) => BackupTarget::Passphrase(PassphraseSource::Tty),
                };
                Command::BackupExport { out, to }
            }
            CommandArgs::Backup(BackupArgs::Verify { file, key }) => Command::BackupVerify {
                file: existing_file(&file, "backup file")?,
                key: backup_key(key)?,
            },
            CommandArgs::Backup(BackupArgs::Restore { file, records, key }) => {
                Command::BackupRestore {
                    file: existing_file(&file, "backup file")?,
                    records: records
                        .iter()
                        .map(|r| existing_file(r, "ceremony record"))
                        .collect::<Result<_>>()?,
                    key: backup_key(key)?,
                }
            }
            CommandArgs::Man => Command::Man,
            CommandArgs::Completions { shell } => Command::Completions { shell },
            CommandArgs::Commitments(CommitmentsArgs::Issue { count, usb, qr }) => {
                if count == 0 || count > MAX_BATCH {
                    bail!("--count {count} is not accepted; issue 1 to {MAX_BATCH} commitments at a time");
                }
                Command::CommitmentsIssue {
                    count,
                    usb: existing_dir(&usb, "USB directory")?,
                    qr: qr_out(qr)?,
                }
            }
            CommandArgs::Sign(SignArgs {
                request,
                qr_in,
                qr,
                usb,
                yes,
            }) => {
                let request = request_source(request, qr_in)?;
                let usb = match (usb, &request) {
                    (Some(dir), _) => dir,
                    (None, RequestSource::File(path)) => match path.parent() {
                        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                        _ => PathBuf::from("."),
                    },
                    (None, _) => bail!("a request read by QR needs --usb DIR for the answer file"),
                };
                Command::Sign {
                    usb: existing_dir(&usb, "USB directory")?,
                    request,
                    qr: qr_out(qr)?,
                    yes,
                }
            }
            CommandArgs::Wallet(WalletArgs::Show { count }) => {
                if count > MAX_ADDRESSES {
                    bail!("--count {count} is too many; ask for at most {MAX_ADDRESSES} addresses");
                }
                Command::WalletShow { count }
            }
            CommandArgs::Status => Command::Status,
            CommandArgs::Eth(args) => Command::Eth(crate::eth::resolve(args)?),
            CommandArgs::Approve(ApproveArgs { digest }) => Command::Approve {
                digest: hex::decode(digest.trim())
                    .ok()
                    .and_then(|d| <[u8; 32]>::try_from(d).ok())
                    .with_context(|| {
                        format!("--digest {digest} is not 32 bytes of hex; copy the withdrawal's approval_digest")
                    })?,
            },
        };
        Ok(Config {
            home,
            json: g.json,
            passphrase,
            encryption,
            command,
        })
    }
}

pub(crate) fn ceremony(c: CeremonyArgs) -> Result<Ceremony> {
    if c.timeout_secs == 0 || c.poll_ms == 0 {
        bail!("--timeout-secs and --poll-ms must be greater than zero");
    }
    Ok(Ceremony {
        plan: existing_file(&c.plan, "plan file")?,
        usb: existing_dir(&c.usb, "USB directory")?,
        timeout: Duration::from_secs(c.timeout_secs),
        poll: Duration::from_millis(c.poll_ms),
    })
}

fn request_source(request: Option<PathBuf>, qr: QrInArgs) -> Result<RequestSource> {
    if let Some(path) = request {
        return Ok(RequestSource::File(existing_file(&path, "request PSBT")?));
    }
    if !qr.qr_in.is_empty() {
        let images = qr
            .qr_in
            .iter()
            .map(|p| existing_file(p, "QR image"))
            .collect::<Result<_>>()?;
        return Ok(RequestSource::Images(images));
    }
    match qr.qr_lines.as_deref() {
        Some("-") => Ok(RequestSource::StdinLines),
        Some(other) => bail!("--qr-lines {other} is not accepted; pass --qr-lines - to read scanned lines from stdin"),
        None => bail!("pass --request FILE, --qr-in IMAGE… or --qr-lines -"),
    }
}

fn qr_out(q: QrOutArgs) -> Result<QrOut> {
    if let Some(dir) = &q.qr_out {
        crate::qr::check_dir(dir)?;
    }
    Ok(QrOut {
        dir: q.qr_out,
        gif: q.gif,
        show: q.qr_show,
        profile: match q.qr_profile {
            QrProfileArg::Low => Profile::Low,
            QrProfileArg::Normal => Profile::Normal,
            QrProfileArg::High => Profile::High,
        },
    })
}

fn backup_key(k: BackupKeyArgs) -> Result<BackupKeySource> {
    Ok(match (k.age_identity_file, k.backup_passphrase_file) {
        (Some(id), _) => BackupKeySource::AgeIdentity(existing_file(&id, "age identity file")?),
        (None, Some(p)) => BackupKeySource::Passphrase(PassphraseSource::File(existing_file(
            &p,
            "backup passphrase file",
        )?)),
        (None, None) => BackupKeySource::Passphrase(PassphraseSource::Tty),
    })
}

fn parse_network(s: &str) -> Result<Network> {
    let s = s.to_ascii_lowercase();
    let s = if s == "mainnet" {
        "bitcoin"
    } else {
        s.as_str()
    };
    Network::from_str(s).map_err(|_| {
        anyhow::anyhow!("unknown --network {s}; use bitcoin, testnet, testnet4, signet or regtest")
    })
}
