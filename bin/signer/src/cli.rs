//! The raw command line, as clap parses it. [`crate::config::Config::resolve`] turns it
//! into a validated configuration before anything is done.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The air-gapped signer of CoinPort Custody.
///
/// Exit codes: 0 success, 1 refused (a check said no), 2 error.
#[derive(Debug, Parser)]
#[command(name = "custody-signer", version)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: CommandArgs,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The signer's state directory [default: $HOME/.custody-signer].
    #[arg(long, global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Print JSON Lines `{"type": …, "data": …}` on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Read the passphrase from the first line of this file instead of prompting on the
    /// terminal. Passphrases are never taken from arguments or environment variables.
    #[arg(long, global = true, value_name = "PATH")]
    pub passphrase_file: Option<PathBuf>,
    /// scrypt work factor (log2 N) for newly encrypted secrets; lower values are for drills
    /// and tests only.
    #[arg(long, global = true, value_name = "LOG_N")]
    pub scrypt_log_n: Option<u8>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum CommandArgs {
    /// This signer's identity.
    #[command(subcommand)]
    Identity(IdentityArgs),
    /// Ceremony plans (made on the coordinator side, or by the ceremony lead).
    #[command(subcommand)]
    Plan(PlanArgs),
    /// Distributed key generation.
    #[command(subcommand)]
    Dkg(DkgArgs),
    /// Nonce commitments for the coordinator.
    #[command(subcommand)]
    Commitments(CommitmentsArgs),
    /// Signs a PSBT signing request from the coordinator, after showing what it spends.
    Sign(SignArgs),
    /// The watch-only wallet of the group key.
    #[command(subcommand)]
    Wallet(WalletArgs),
    /// What this signer holds: identity, key share, group key, nonce counters.
    Status,
}

/// `identity …`
#[derive(Debug, Subcommand)]
pub enum IdentityArgs {
    /// Creates the signer home with a fresh identity, encrypted under a passphrase.
    Create {
        /// The participant's display name, as it appears in plans and file names.
        #[arg(long)]
        name: String,
    },
    /// Prints the identity card path, name and fingerprint.
    Show {
        /// Also print the fingerprint as 8 words from the BIP39 English wordlist, to read
        /// aloud (not a mnemonic; see the `words` module for the mapping).
        #[arg(long)]
        words: bool,
    },
}

/// `plan …`
#[derive(Debug, Subcommand)]
pub enum PlanArgs {
    /// Creates a DKG ceremony plan from the participants' identity cards.
    Create {
        /// Signatures needed to spend (t of n).
        #[arg(long)]
        threshold: u16,
        /// Identity card files, in participant order.
        #[arg(long = "card", value_name = "FILE", required = true, num_args = 1..)]
        cards: Vec<PathBuf>,
        /// bitcoin, testnet, testnet4, signet or regtest.
        #[arg(long)]
        network: String,
        /// What the key is for, as recorded in the plan.
        #[arg(long)]
        purpose: String,
        /// Where to write the plan; never overwritten.
        #[arg(long, value_name = "PLAN")]
        out: PathBuf,
    },
}

/// `dkg …`
#[derive(Debug, Subcommand)]
pub enum DkgArgs {
    /// Runs this signer's side of the DKG over a shared USB directory, from round 1 to the
    /// stored key share, waiting for the other participants' files at every round.
    Join {
        /// The ceremony plan file.
        #[arg(long, value_name = "PLAN")]
        plan: PathBuf,
        /// The directory the participants' envelope files are exchanged in.
        #[arg(long, value_name = "DIR")]
        usb: PathBuf,
        /// Give up after this many seconds without completing.
        #[arg(long, default_value_t = 3600, value_name = "SECS")]
        timeout_secs: u64,
        /// How often to look for new files, in milliseconds.
        #[arg(long, default_value_t = 500, value_name = "MS")]
        poll_ms: u64,
    },
}

/// `wallet …`
#[derive(Debug, Subcommand)]
pub enum WalletArgs {
    /// Prints the wallet descriptor, group xpub and the first receive addresses.
    Show {
        /// How many receive addresses to print.
        #[arg(long, default_value_t = 5)]
        count: u32,
    },
}

/// `commitments …`
#[derive(Debug, Subcommand)]
pub enum CommitmentsArgs {
    /// Issues fresh nonce commitments (recorded in the nonce journal first) and writes them
    /// as a signed commitment-batch envelope file for the coordinator.
    Issue {
        /// How many commitments (one is spent per signed input).
        #[arg(long)]
        count: usize,
        /// The directory to write the envelope file to.
        #[arg(long, value_name = "DIR")]
        usb: PathBuf,
    },
}

/// `sign`
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The request PSBT (binary, base64 or hex) carrying the custody signing request.
    #[arg(long, value_name = "FILE")]
    pub request: PathBuf,
    /// Where to write the answer `…-NAME-part.psbt` [default: the request's directory].
    #[arg(long, value_name = "DIR")]
    pub usb: Option<PathBuf>,
    /// Sign without asking for confirmation on the terminal (after checking the summary
    /// some other way).
    #[arg(long)]
    pub yes: bool,
}
