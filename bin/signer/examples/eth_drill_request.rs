//! A stand-in for the coordinator in Ethereum drills (`ceremonies/eth-drill.sh`): writes an
//! EIP-4527 eth-sign-request (`ur:eth-sign-request/…`, one line) for an EIP-1559 ether
//! transfer from the group address.
//!
//! DRILLS ONLY: real withdrawals get their requests from the coordinator, which manages
//! nonces and fees against a node.
//!
//! ```text
//! eth_drill_request --from ADDRESS --to ADDRESS --value-wei N [--chain-id N] [--nonce N]
//!                   --out FILE
//! ```

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use custody_ethereum::{
    Address, Bytes, Eip1559Fields, EthSignRequest, EthTransaction, KeyPath, U256,
};
use rand_core::{OsRng, RngCore};

/// Writes an eth-sign-request for a drill.
#[derive(Debug, Parser)]
struct Args {
    /// The group's address (the request names it; the signer checks it).
    #[arg(long)]
    from: String,
    /// The recipient.
    #[arg(long)]
    to: String,
    /// Wei to send.
    #[arg(long)]
    value_wei: u128,
    /// EIP-155 chain id (31337: Hardhat/Anvil local devnet).
    #[arg(long, default_value_t = 31337)]
    chain_id: u64,
    /// The account nonce.
    #[arg(long, default_value_t = 0)]
    nonce: u64,
    /// The request file to write.
    #[arg(long)]
    out: PathBuf,
}

fn main() -> Result<()> {
    let a = Args::parse();
    let from: Address = a.from.parse().context("--from is not an address")?;
    let to: Address = a.to.parse().context("--to is not an address")?;
    let tx = EthTransaction::eip1559(Eip1559Fields {
        chain_id: a.chain_id,
        nonce: a.nonce,
        to,
        value: U256::from(a.value_wei),
        gas_limit: 21_000,
        max_fee_per_gas: 30_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        input: Bytes::new(),
    })
    .context("invalid transaction")?;
    let mut id = [0u8; 16];
    OsRng.fill_bytes(&mut id);
    let request = EthSignRequest::for_transaction(
        &tx,
        id,
        KeyPath::default(),
        Some(from),
        Some("CoinPort drill".into()),
    );
    if a.out.exists() {
        anyhow::bail!("{} exists", a.out.display());
    }
    std::fs::write(&a.out, format!("{}\n", request.to_ur()))
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    Ok(())
}
