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
    /// Shows what a PSBT signing request spends, without signing it.
    Inspect(InspectArgs),
    /// Signs a PSBT signing request from the coordinator, after showing what it spends.
    Sign(SignArgs),
    /// Share backups: export, verify, restore. A backup never holds the nonce seed.
    #[command(subcommand)]
    Backup(BackupArgs),
    /// Runs this signer's side of a share refresh (same group key, new shares) over a
    /// shared USB directory; the old share is replaced and the nonce seed renewed.
    Refresh(CeremonyArgs),
    /// Repair of a lost share: helpers help, the holder who lost it recovers.
    #[command(subcommand, disable_help_subcommand = true)]
    Repair(RepairArgs),
    /// The withdrawal policy this signer enforces: admin pin, install, show.
    #[command(subcommand)]
    Policy(PolicyArgs),
    /// Ceremony records written by `dkg join`, `refresh` and `repair recover`.
    #[command(subcommand)]
    Record(RecordArgs),
    /// Prints the man page (roff) on stdout.
    Man,
    /// Prints shell completions on stdout.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// The watch-only wallet of the group key.
    #[command(subcommand)]
    Wallet(WalletArgs),
    /// What this signer holds: identity, key share, group key, nonce counters.
    Status,
    /// Signs a withdrawal's approval digest with this identity (approvers), in the policy
    /// domain; prints the fingerprint and the digest first, then the signature hex.
    Approve(ApproveArgs),
    /// Ethereum (threshold ECDSA): Paillier primes, key ceremony, presignatures, signing
    /// EIP-1559 / EIP-155 transactions from EIP-4527 requests.
    #[command(subcommand)]
    Eth(crate::eth_cli::EthArgs),
}

/// `approve`
#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The withdrawal's `approval_digest` as the coordinator shows it (64 hex digits).
    #[arg(long, value_name = "HEX")]
    pub digest: String,
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

/// What a plan is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanKindArg {
    /// A new group key.
    Dkg,
    /// New shares for an existing group key (needs --group).
    Refresh,
    /// Recovery of one participant's lost share (needs --group, --lost, --helper).
    Repair,
}

/// `plan …`
#[derive(Debug, Subcommand)]
pub enum PlanArgs {
    /// Creates a ceremony plan from the participants' identity cards. Refresh and repair
    /// plans list the group's cards in the order of the original DKG plan.
    Create {
        /// What the ceremony does.
        #[arg(long, value_enum, default_value_t = PlanKindArg::Dkg)]
        kind: PlanKindArg,
        /// The group key file (`group.key` from a signer home), for refresh and repair.
        #[arg(long, value_name = "FILE")]
        group: Option<PathBuf>,
        /// Repair: the name of the participant who lost its share.
        #[arg(long, value_name = "NAME")]
        lost: Option<String>,
        /// Repair: the names of the helping participants (at least the threshold).
        #[arg(long = "helper", value_name = "NAME")]
        helpers: Vec<String>,
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
    Join(CeremonyArgs),
}

/// The arguments of a ceremony run over a shared USB directory.
#[derive(Debug, Args)]
pub struct CeremonyArgs {
    /// The ceremony plan file.
    #[arg(long, value_name = "PLAN")]
    pub plan: PathBuf,
    /// The directory the participants' envelope files are exchanged in.
    #[arg(long, value_name = "DIR")]
    pub usb: PathBuf,
    /// Give up after this many seconds without completing.
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    pub timeout_secs: u64,
    /// How often to look for new files, in milliseconds.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    pub poll_ms: u64,
}

/// `repair …`
#[derive(Debug, Subcommand)]
pub enum RepairArgs {
    /// Helps a participant recover its lost share (run by each helper named in the plan).
    Help {
        /// The name of the participant who lost its share, as a check against the plan.
        #[arg(long, value_name = "NAME")]
        lost: String,
        /// The ceremony.
        #[command(flatten)]
        ceremony: CeremonyArgs,
    },
    /// Recovers this signer's lost share from the helpers' messages (run by the holder
    /// who lost it; the identity in the signer home must have survived).
    Recover {
        /// The group key file, if `group.key` in the signer home was lost too.
        #[arg(long, value_name = "FILE")]
        group: Option<PathBuf>,
        /// The ceremony.
        #[command(flatten)]
        ceremony: CeremonyArgs,
    },
}

/// `policy …`
#[derive(Debug, Subcommand)]
pub enum PolicyArgs {
    /// Pins the admin quorum whose signatures a policy needs (once, at setup).
    PinAdmins {
        /// Admin signatures a policy needs.
        #[arg(long)]
        threshold: u16,
        /// The admins' identity card files.
        #[arg(long = "card", value_name = "FILE", required = true, num_args = 1..)]
        cards: Vec<PathBuf>,
        /// Replace an existing pin (asks for confirmation on the terminal; the installed
        /// policies are set aside).
        #[arg(long)]
        replace: bool,
    },
    /// Installs a signed policy: the first must be signed by the pinned quorum, later
    /// ones must be valid successors of the installed one.
    Install {
        /// The signed policy file.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Shows the pinned admins and the installed policies.
    Show,
}

/// `record …`
#[derive(Debug, Subcommand)]
pub enum RecordArgs {
    /// Checks a ceremony record against this signer's own state: its fingerprint is
    /// listed, the group key and transcript hash match, every certificate verifies.
    Verify {
        /// The record file (JSON).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
}

/// `backup …`
#[derive(Debug, Subcommand)]
pub enum BackupArgs {
    /// Exports an encrypted backup of the key share and identity (never the nonce seed).
    Export {
        /// The backup file to write; never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Encrypt to this age X25519 recipient (`age1…`) instead of a backup passphrase.
        #[arg(long, value_name = "AGE_RECIPIENT")]
        to_recipient: Option<String>,
        /// Read the backup passphrase from this file instead of prompting.
        #[arg(long, value_name = "PATH", conflicts_with = "to_recipient")]
        backup_passphrase_file: Option<PathBuf>,
    },
    /// Decrypts and checks a backup without restoring it.
    Verify {
        /// The backup file.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// The backup key.
        #[command(flatten)]
        key: BackupKeyArgs,
    },
    /// Restores a backup into a signer home without a key share, under the signer
    /// passphrase, with a new nonce seed.
    Restore {
        /// The backup file.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Ceremony records of this group to take into the restored signer's history (a
        /// backup holds no history); each must verify against the restored share.
        #[arg(long = "record", value_name = "FILE")]
        records: Vec<PathBuf>,
        /// The backup key.
        #[command(flatten)]
        key: BackupKeyArgs,
    },
}

/// How to open a backup.
#[derive(Debug, Args)]
pub struct BackupKeyArgs {
    /// Read the backup passphrase from this file instead of prompting.
    #[arg(long, value_name = "PATH")]
    pub backup_passphrase_file: Option<PathBuf>,
    /// The age identity file (`AGE-SECRET-KEY-1…`) of the recipient the backup was
    /// encrypted to.
    #[arg(long, value_name = "PATH", conflicts_with = "backup_passphrase_file")]
    pub age_identity_file: Option<PathBuf>,
}

/// `inspect`
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The request PSBT (binary, base64 or hex) carrying the custody signing request.
    #[arg(long, value_name = "FILE", required_unless_present_any = ["qr_in", "qr_lines"])]
    pub request: Option<PathBuf>,
    /// The request by QR instead.
    #[command(flatten)]
    pub qr_in: QrInArgs,
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
        /// QR output of the envelope.
        #[command(flatten)]
        qr: QrOutArgs,
    },
}

/// QR density.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum QrProfileArg {
    /// QR version 8: poor cameras, small screens.
    Low,
    /// QR version 16.
    #[default]
    Normal,
    /// QR version 23: good cameras, large screens.
    High,
}

/// Where to show or write QR frames of what is sent.
#[derive(Debug, Args, Default)]
pub struct QrOutArgs {
    /// Also write the message as PNG QR frames (`…-qr-001.png`, …) into this directory.
    #[arg(long, value_name = "DIR")]
    pub qr_out: Option<PathBuf>,
    /// With --qr-out, also write an animated GIF of the frames.
    #[arg(long, requires = "qr_out")]
    pub gif: bool,
    /// Show the QR frames on the terminal (animated; each frame once when piped).
    #[arg(long)]
    pub qr_show: bool,
    /// QR frame density.
    #[arg(long, value_enum, default_value_t = QrProfileArg::Normal)]
    pub qr_profile: QrProfileArg,
}

/// Where a request comes from, when not a file.
#[derive(Debug, Args, Default)]
pub struct QrInArgs {
    /// Read the request from QR images (PNG, GIF, JPEG), frames in any order.
    #[arg(long = "qr-in", value_name = "IMAGE", num_args = 1.., conflicts_with_all = ["request", "qr_lines"])]
    pub qr_in: Vec<PathBuf>,
    /// Read UR or BBQr frames, one per line, from stdin: pass `-` (e.g. from
    /// `zbarcam --raw`).
    #[arg(long, value_name = "-", conflicts_with = "request")]
    pub qr_lines: Option<String>,
}

/// `sign`
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The request PSBT (binary, base64 or hex) carrying the custody signing request.
    #[arg(long, value_name = "FILE", required_unless_present_any = ["qr_in", "qr_lines"])]
    pub request: Option<PathBuf>,
    /// The request by QR instead.
    #[command(flatten)]
    pub qr_in: QrInArgs,
    /// QR output of the answer.
    #[command(flatten)]
    pub qr: QrOutArgs,
    /// Where to write the answer `…-NAME-part.psbt` [default: the request's directory;
    /// required for a request read by QR].
    #[arg(long, value_name = "DIR")]
    pub usb: Option<PathBuf>,
    /// Sign without asking for confirmation on the terminal (after checking the summary
    /// some other way).
    #[arg(long)]
    pub yes: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
