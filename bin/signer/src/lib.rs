//! The air-gapped signer of CoinPort Custody, as a library the `custody-signer` binary
//! calls: identity, ceremony plans, DKG over a shared USB directory, nonce commitments,
//! PSBT signing, the watch-only wallet and status.
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
//! - `dkg-transcript.txt`: the certified transcript hash, hex.
//!
//! # Security
//! Never copy a signer home (VM snapshot, disk image): a copy restores old nonce state.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cli;
pub mod commitments;
pub mod config;
mod dkg;
mod home;
mod output;
mod plan;
mod sign;
mod status;
pub mod words;

use std::fmt::Write as _;
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
    match &config.command {
        Command::IdentityCreate { name } => home.create_identity(config, name, &out),
        Command::IdentityShow { words } => home.show_identity(*words, &out),
        Command::PlanCreate {
            threshold,
            cards,
            network,
            purpose,
            out: path,
        } => plan::create(*threshold, cards, *network, purpose, path, &out),
        Command::DkgJoin {
            plan,
            usb,
            timeout,
            poll,
        } => dkg::join(config, &home, plan, usb, *timeout, *poll, &out),
        Command::CommitmentsIssue { count, usb } => {
            commitments::issue(config, &home, *count, usb, &out)
        }
        Command::Sign { request, usb, yes } => sign::sign(config, &home, request, usb, *yes, &out),
        Command::WalletShow { count } => status::wallet_show(&home, *count, &out),
        Command::Status => status::status(config, &home, &out),
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
