//! The raw command line of `custody-signer eth …`, as clap parses it. [`crate::eth`]
//! resolves it into [`crate::eth::EthCommand`] before anything is done.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::cli::CeremonyArgs;

/// `eth …`
#[derive(Debug, Subcommand)]
pub enum EthArgs {
    /// Prepares this signer for an Ethereum key ceremony (do it before the ceremony day).
    ///
    /// Finds the two large safe primes of this signer's Paillier key (a few minutes;
    /// progress is shown) and stores them encrypted in the signer home. `eth keygen` uses
    /// them for one ceremony and deletes them, whether the ceremony succeeds or not.
    Primes(EthPrimesArgs),
    /// Ethereum ceremony plans (made by the ceremony lead from the identity cards).
    #[command(subcommand)]
    Plan(EthPlanArgs),
    /// Runs this signer's side of an Ethereum key ceremony over a shared USB directory.
    ///
    /// Auxiliary info and key generation, from the first message to the stored key share.
    /// Keep it running until it says the share is stored: the session cannot be resumed.
    Keygen(CeremonyArgs),
    /// Runs this signer's side of a presigning ceremony over a shared USB directory.
    ///
    /// Stores the batch of presignatures, encrypted. Each later withdrawal spends one
    /// presignature and needs one trip to this signer.
    Presign(CeremonyArgs),
    /// Prints the group's Ethereum address (EIP-55 checksummed), one line.
    Address,
    /// Shows the address and how many unused presignatures this signer holds.
    Status,
    /// Signs an Ethereum transaction from an EIP-4527 eth-sign-request (one trip).
    ///
    /// Decodes the transaction, shows what it does, computes the hash to sign itself,
    /// checks the coordinator's policy decision, asks you to confirm, spends one
    /// presignature and writes this signer's partial signature file. Exit code 1: refused,
    /// nothing was signed (or the presignature was already used).
    Sign(EthSignArgs),
    /// Combines the signers' partial signatures into the signed transaction.
    ///
    /// Writes the raw transaction (0x-hex, one line) and an eth-signature UR text, after
    /// checking that the sender recovers to the group address. Needs no secrets and no
    /// passphrase. A partial signature over another transaction is refused, naming its
    /// signer.
    Combine(EthCombineArgs),
    /// Ethereum key share backups: export, restore. A backup never holds presignatures.
    #[command(subcommand)]
    Backup(EthBackupArgs),
}

/// `eth primes`
#[derive(Debug, Args)]
pub struct EthPrimesArgs {
    /// Import primes from a file of hex lines (one `PaillierPrimes` encoding per line)
    /// instead of generating them. For drills and tests with published test primes: a key
    /// made with them is NOT safe for real funds.
    #[arg(long, value_name = "FILE")]
    pub import: Option<PathBuf>,
    /// With --import: which line of the file to take, from 0 (every participant must take
    /// a different line).
    #[arg(long, default_value_t = 0, requires = "import", value_name = "N")]
    pub line: usize,
}

/// `eth plan …`
#[derive(Debug, Subcommand)]
pub enum EthPlanArgs {
    /// Creates the plan of a key ceremony (auxiliary info and key generation) from the
    /// participants' identity cards.
    Key {
        /// Signatures needed to spend (t of n).
        #[arg(long)]
        threshold: u16,
        /// Identity card files, in participant order.
        #[arg(long = "card", value_name = "FILE", required = true, num_args = 1..)]
        cards: Vec<PathBuf>,
        /// What the key is for, as recorded in the plan.
        #[arg(long)]
        purpose: String,
        /// Where to write the plan; never overwritten.
        #[arg(long, value_name = "PLAN")]
        out: PathBuf,
    },
    /// Creates the plan of a presigning ceremony for an existing key: exactly `threshold`
    /// signers, named, make a batch of presignatures that only they can sign with, together.
    Presign {
        /// The group key file (`eth/group.key` from a signer home).
        #[arg(long, value_name = "FILE")]
        group: PathBuf,
        /// The names of the signers who presign (exactly the threshold).
        #[arg(long = "signer", value_name = "NAME", required = true, num_args = 1..)]
        signers: Vec<String>,
        /// How many presignatures (1 to 100): one is spent per withdrawal.
        #[arg(long, default_value_t = 10)]
        count: u16,
        /// Signatures needed (the key's threshold).
        #[arg(long)]
        threshold: u16,
        /// Identity card files of every key participant, in the key plan's order.
        #[arg(long = "card", value_name = "FILE", required = true, num_args = 1..)]
        cards: Vec<PathBuf>,
        /// What the batch is for, as recorded in the plan.
        #[arg(long)]
        purpose: String,
        /// Where to write the plan; never overwritten.
        #[arg(long, value_name = "PLAN")]
        out: PathBuf,
    },
}

/// `eth sign`
#[derive(Debug, Args)]
pub struct EthSignArgs {
    /// The eth-sign-request: a text file holding the `ur:eth-sign-request/…` line (or
    /// the lines of a multi-part QR).
    #[arg(long, value_name = "FILE", required_unless_present = "qr_lines")]
    pub request: Option<PathBuf>,
    /// Read the `ur:eth-sign-request/…` frames, one per line, from stdin instead: pass `-`
    /// (e.g. from `zbarcam --raw`).
    #[arg(long, value_name = "-", conflicts_with = "request")]
    pub qr_lines: Option<String>,
    /// The coordinator's signed policy decision for this withdrawal (binary or hex), checked
    /// against the installed policy before anything is signed.
    #[arg(long, value_name = "FILE")]
    pub decision: Option<PathBuf>,
    /// Sign without a policy decision. Only allowed while no policy is installed (drills and
    /// tests); never use it for real funds.
    #[arg(long, conflicts_with = "decision")]
    pub insecure_without_policy: bool,
    /// Which presignature to spend, `BATCH/INDEX` as the coordinator names it (every signer
    /// must spend the same one) [default: the first unused one].
    #[arg(long, value_name = "BATCH/INDEX")]
    pub presignature: Option<String>,
    /// Where to write the partial signature `…-NAME-part.ethsig` [default: the request's
    /// directory; required for a request read from stdin].
    #[arg(long, value_name = "DIR")]
    pub usb: Option<PathBuf>,
    /// Sign without asking for confirmation on the terminal (after checking the summary
    /// some other way).
    #[arg(long)]
    pub yes: bool,
}

/// `eth combine`
#[derive(Debug, Args)]
pub struct EthCombineArgs {
    /// The eth-sign-request file the signers were given.
    #[arg(long, value_name = "FILE")]
    pub request: PathBuf,
    /// The presigning plan of the presignature batch the signers used.
    #[arg(long, value_name = "PLAN")]
    pub plan: PathBuf,
    /// The signers' partial signature files (`…-NAME-part.ethsig`), one per signer.
    #[arg(long = "partial", value_name = "FILE", required = true, num_args = 1..)]
    pub partials: Vec<PathBuf>,
    /// Where to write `…-final.txn` and `…-signature.ur` [default: the request's
    /// directory].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// `eth backup …`
#[derive(Debug, Subcommand)]
pub enum EthBackupArgs {
    /// Exports the Ethereum key share, encrypted under a backup passphrase. Presignatures
    /// are never exported.
    Export {
        /// The backup file to write; never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Read the backup passphrase from this file instead of prompting.
        #[arg(long, value_name = "PATH")]
        backup_passphrase_file: Option<PathBuf>,
    },
    /// Restores an Ethereum key share backup into this signer home (which must hold the
    /// same identity and no Ethereum share). The restored signer has no presignatures:
    /// run a new presigning ceremony before signing.
    Restore {
        /// The backup file.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Read the backup passphrase from this file instead of prompting.
        #[arg(long, value_name = "PATH")]
        backup_passphrase_file: Option<PathBuf>,
    },
}
