//! The command line: `serve`, `migrate`, `init` and the admin commands that run on the
//! coordinator host itself (accounts, freezes, audit, policies, the vault key file).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The online coordinator of CoinPort Custody.
///
/// Exit codes: 0 success, 1 refused (a check said no, e.g. `audit verify` found a break),
/// 2 error.
#[derive(Debug, Parser)]
#[command(name = "custody-coordinator", version)]
pub struct Cli {
    /// The TOML configuration file [default: built-in defaults, SQLite in ./coordinator-data].
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the daemon (HTTPS) until SIGINT/SIGTERM.
    Serve(ServeArgs),
    /// Applies database migrations and exits.
    Migrate,
    /// Creates the data directory and the coordinator identity; prints its fingerprint.
    Init,
    /// Accounts created on the host (the first admin).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Emergency freeze of all signing and broadcasting, or of one account.
    Freeze(FreezeArgs),
    /// Lifts a freeze.
    Unfreeze(FreezeArgs),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Withdrawal policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The vault key file for data at rest: status, key rotation, retiring old keys.
    #[command(subcommand)]
    Vault(VaultCommand),
    /// The running totals velocity limits are read from.
    #[command(subcommand)]
    Velocity(VelocityCommand),
    /// DEVELOPMENT helpers for drills and the quickstart (refused on mainnet).
    #[command(subcommand)]
    Dev(crate::dev::DevCommand),
}

/// `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// DEVELOPMENT ONLY: shift the clock by this many seconds (refused on mainnet). Used by
    /// drills to let a hold pass without waiting a day.
    #[arg(long, value_name = "SECS")]
    pub dev_clock_offset_secs: Option<i64>,
    /// INSECURE, DEVELOPMENT ONLY: serve plain HTTP instead of HTTPS. Refused unless
    /// `bind` is a loopback address. Links in emails then default to `http://<bind>`.
    #[arg(long)]
    pub insecure_plain_http: bool,
}

/// `admin …`
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Creates an account. The password is read from `--password-file` or the terminal.
    Create {
        /// Email.
        #[arg(long)]
        email: String,
        /// admin, approver, operator, service or user.
        #[arg(long)]
        role: String,
        /// A file whose first line is the password.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        /// For approvers: their identity card file.
        #[arg(long, value_name = "FILE")]
        approver_card: Option<PathBuf>,
    },
}

/// `freeze` / `unfreeze`.
#[derive(Debug, Args)]
pub struct FreezeArgs {
    /// One account id; without it, everything.
    #[arg(long)]
    pub account: Option<String>,
    /// Why, for the audit log.
    #[arg(long)]
    pub reason: String,
}

/// `audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recomputes the hash chain; exit 1 naming the first altered, removed or reordered
    /// entry.
    Verify {
        /// Also check a signed checkpoint kept off the box.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
    },
    /// Writes every entry as JSON Lines.
    Export {
        /// Output file [default: stdout].
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Verifies the chain and writes a signed checkpoint of its head.
    Checkpoint {
        /// Output file.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// `velocity …`
#[derive(Debug, Subcommand)]
pub enum VelocityCommand {
    /// Compares every hour's running total with the withdrawals it stands for; exit 1
    /// naming each hour that differs.
    Check,
    /// Recomputes every running total from the withdrawals (after withdrawals were
    /// written around the coordinator, e.g. imported), in one transaction with an audit
    /// entry saying how many hours differed.
    Rebuild,
}

/// `policy …`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Installs a signed policy file.
    Install {
        /// The signed policy (binary `SignedPolicy` encoding).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Bootstrap: accept the first policy on its own admins' signatures. Only on the
        /// coordinator host, once.
        #[arg(long)]
        trust_first: bool,
    },
    /// Lists installed policies.
    List,
}

/// `vault …` (`docs/kyc.md` has the rotation runbook). They run beside a serving daemon:
/// no downtime.
#[derive(Debug, Subcommand)]
pub enum VaultCommand {
    /// Prints the key file's KEKs and, per table of sealed rows, how many rows each KEK
    /// wraps.
    Status,
    /// Adds a key-encryption key (KEK) to the key file and re-wraps every sealed row under
    /// it, in batches, while the daemon keeps serving. Resumes by default: when rows are
    /// still under older KEKs (an interrupted run), it adds no KEK and only finishes
    /// re-wrapping them. Exit 1 if some rows could not be re-wrapped (listed by id).
    Rotate {
        /// Rows per batch.
        #[arg(long, default_value_t = 100, value_name = "ROWS")]
        batch: usize,
    },
    /// Removes a retired KEK from the key file; refused (exit 1) while any row is still
    /// wrapped under it, and for the current KEK.
    Retire {
        /// The KEK id (see `vault status`).
        #[arg(long, value_name = "ID")]
        kek: u32,
    },
}
