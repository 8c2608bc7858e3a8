//! `custody-signer`: the command an air-gapped key holder runs.
//!
//! Exit codes: 0 success, 1 refused (a check said no), 2 error.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = custody_signer::cli::Cli::parse();
    match custody_signer::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr().lock(),
                "{}",
                custody_signer::render_error(&e)
            );
            ExitCode::from(custody_signer::exit_code(&e))
        }
    }
}
