//! The air-gapped signer of CoinPort Custody, as a library the `custody-signer` binary
//! calls: identity, ceremony plans, DKG, refresh and repair over a shared USB directory
//! with ceremony records, nonce commitments, share backups, the signer's own withdrawal
//! policy, PSBT inspection and signing (by file or QR), the watch-only wallet and status.
//!
//! The signer links no networking code; a test checks the dependency tree.
//!
//! # Files in the signer home
//! - `identity.card`: the public identity card ([`custody_threshold::IdentityCard::encode`]),
//!   to copy to USB for the ceremony lead;
//! - `identity.age`: the identity secret, age-encrypted under the passphrase (0600), kept
//!   until the key share exists;
//! - `keystore/`: the [`custody_keystore::Keystore`] (share, identity, nonce seed, nonce
//!   journal) written when the DKG completes;
//! - `group.key`: the public group key ([`custody_threshold::GroupKey::encode`]);
//! - `dkg-transcript.txt`: the certified transcript hash of the current shares, hex;
//! - `ceremonies.txt`: every ceremony completed (`CEREMONY_ID KIND TRANSCRIPT`), which
//!   `record verify` checks records against;
//! - `policy-admins.json` and `policies/`: the pinned admin quorum and the installed
//!   signed policies ([`policy`]);
//! - `eth/`: the Ethereum (threshold ECDSA) key share, presignatures and group key
//!   ([`eth`]);
//! - `keystore.next/`, `keystore.old/`: only during a share replacement (refresh, repair);
//!   an interrupted replacement is finished on the next start.
//!
//! # Security
//! Never copy a signer home (VM snapshot, disk image): a copy restores old nonce state.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod approve;
mod backup;
pub mod cli;
pub mod commitments;
pub mod config;
mod dkg;
pub mod eth;
pub mod eth_ceremony;
pub mod eth_cli;
mod home;
mod output;
mod plan;
pub mod policy;
pub mod qr;
pub mod record;
mod sign;
mod status;
pub mod words;

use std::fmt::Write as _;

use anyhow::Context as _;
use std::time::{SystemTime, UNIX_EPOCH};

pub use config::{Command, Config};
pub use home::Home;
pub use output::Output;

/// How long the envelopes this signer writes stay valid.
pub(crate) const ENVELOPE_LIFETIME_SECS: u64 = 7 * 24 * 3600;

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A check said no (the plan does not include us, a participant misbehaved): exit code 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Runs the command line: resolves it into a [`Config`], then runs the command.
///
/// # Errors
/// [`Refused`] when a check said no; any other error otherwise. Messages say what to do
/// next.
pub fn run(cli: cli::Cli) -> anyhow::Result<()> {
    let config = Config::resolve(cli, std::env::var_os("HOME").map(Into::into))?;
    run_config(&config)
}

/// Runs an already validated configuration.
///
/// # Errors
/// As [`run`].
pub fn run_config(config: &Config) -> anyhow::Result<()> {
    let out = Output::new(config.json);
    let home = Home::new(&config.home);
    if home.dir().is_dir() {
        home.finish_interrupted_swap()?;
    }
    match &config.command {
        Command::IdentityCreate { name } => home.create_identity(config, name, &out),
        Command::IdentityShow { words } => home.show_identity(*words, &out),
        Command::PlanCreate {
            kind,
            threshold,
            cards,
            network,
            purpose,
            out: path,
        } => plan::create(kind, *threshold, cards, *network, purpose, path, &out),
        Command::DkgJoin(c) => dkg::join(config, &home, c, &out),
        Command::Refresh(c) => dkg::refresh(config, &home, c, &out),
        Command::RepairHelp { lost, ceremony } => {
            dkg::repair_help(config, &home, lost, ceremony, &out)
        }
        Command::RepairRecover { group, ceremony } => {
            dkg::repair_recover(config, &home, group.as_deref(), ceremony, &out)
        }
        Command::PolicyPinAdmins {
            threshold,
            cards,
            replace,
        } => policy::pin_admins(&home, *threshold, cards, *replace, &out),
        Command::PolicyInstall { file } => policy::install(&home, file, &out),
        Command::PolicyShow => policy::show(&home, &out),
        Command::RecordVerify { file } => record::verify(&home, file, &out),
        Command::Inspect { request } => sign::inspect(&home, request, &out),
        Command::BackupExport { out: path, to } => backup::export(config, &home, path, to, &out),
        Command::BackupVerify { file, key } => backup::verify(file, key, &home, &out),
        Command::BackupRestore { file, records, key } => {
            backup::restore(config, &home, file, key, records, &out)
        }
        Command::Man => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(<cli::Cli as clap::CommandFactory>::command())
                .render(&mut buf)
                .context("cannot render the man page")?;
            out.raw(&buf)
        }
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            let mut cmd = <cli::Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cmd, "custody-signer", &mut buf);
            out.raw(&buf)
        }
        Command::CommitmentsIssue { count, usb, qr } => {
            commitments::issue(config, &home, *count, usb, qr, &out)
        }
        Command::Sign {
            request,
            qr,
            usb,
            yes,
        } => sign::sign(config, &home, request, qr, usb, *yes, &out),
        Command::WalletShow { count } => status::wallet_show(&home, *count, &out),
        Command::Status => status::status(config, &home, &out),
        Command::Approve { digest } => approve::approve(config, &home, digest, &out),
        Command::Eth(c) => eth::run(config, &home, c, &out),
    }
}

/// The process exit code for an error: 1 for [`Refused`], 2 for everything else.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<Refused>().is_some() {
        1
    } else {
        2
    }
}

/// Renders an error for a person: the sentence saying what happened and what to do, then
/// the underlying causes.
pub fn render_error(e: &anyhow::Error) -> String {
    let prefix = if e.downcast_ref::<Refused>().is_some() {
        "refused"
    } else {
        "error"
    };
    let mut s = format!("{prefix}: {e}");
    for cause in e.chain().skip(1) {
        let _ = write!(s, "\n  because: {cause}");
    }
    s
}
