//! The validated configuration a command runs with.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use custody_keystore::EncryptionParams;
use custody_threshold::limits::MAX_BATCH;
use custody_threshold::Network;

use crate::cli::{
    Cli, CommandArgs, CommitmentsArgs, DkgArgs, IdentityArgs, PlanArgs, SignArgs, WalletArgs,
};

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
    DkgJoin {
        /// Plan file.
        plan: PathBuf,
        /// Exchange directory.
        usb: PathBuf,
        /// Overall deadline.
        timeout: Duration,
        /// Poll interval.
        poll: Duration,
    },
    /// `commitments issue`.
    CommitmentsIssue {
        /// Number of commitments, 1 to [`MAX_BATCH`].
        count: usize,
        /// Output directory.
        usb: PathBuf,
    },
    /// `sign`.
    Sign {
        /// The request PSBT file.
        request: PathBuf,
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

fn existing_dir(path: &Path, what: &str) -> Result<PathBuf> {
    if !path.is_dir() {
        bail!(
            "the {what} {} is not a directory; check the path (is the USB stick mounted?)",
            path.display()
        );
    }
    Ok(path.to_owned())
}

fn existing_file(path: &Path, what: &str) -> Result<PathBuf> {
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
                Command::PlanCreate {
                    threshold,
                    cards,
                    network,
                    purpose,
                    out,
                }
            }
            CommandArgs::Dkg(DkgArgs::Join {
                plan,
                usb,
                timeout_secs,
                poll_ms,
            }) => {
                if timeout_secs == 0 || poll_ms == 0 {
                    bail!("--timeout-secs and --poll-ms must be greater than zero");
                }
                Command::DkgJoin {
                    plan: existing_file(&plan, "plan file")?,
                    usb: existing_dir(&usb, "USB directory")?,
                    timeout: Duration::from_secs(timeout_secs),
                    poll: Duration::from_millis(poll_ms),
                }
            }
            CommandArgs::Commitments(CommitmentsArgs::Issue { count, usb }) => {
                if count == 0 || count > MAX_BATCH {
                    bail!("--count {count} is not accepted; issue 1 to {MAX_BATCH} commitments at a time");
                }
                Command::CommitmentsIssue {
                    count,
                    usb: existing_dir(&usb, "USB directory")?,
                }
            }
            CommandArgs::Sign(SignArgs { request, usb, yes }) => {
                let request = existing_file(&request, "request PSBT")?;
                let usb = match usb {
                    Some(dir) => dir,
                    None => match request.parent() {
                        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                        _ => PathBuf::from("."),
                    },
                };
                Command::Sign {
                    usb: existing_dir(&usb, "USB directory")?,
                    request,
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
