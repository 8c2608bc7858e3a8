//! A stand-in for the admins and the coordinator in signing drills (`ceremonies/`): it
//! writes a signed withdrawal policy, builds a signing request from the signers'
//! commitment files with a signed, approved decision, and aggregates the answers into a
//! transaction that libbitcoinconsensus accepts.
//!
//! DRILLS ONLY: it keeps the admin, coordinator and approver secrets in a plain file and
//! funds the wallet with a made-up coin. Real ceremonies use the coordinator.
//!
//! ```text
//! drill_coordinator policy  --dir D --network regtest --whitelist ADDR [--limit-sat N]
//! drill_coordinator request --dir D --group group.key --usb USB --card C… --amount-sat N
//!                           --to ADDR --out request.psbt
//! drill_coordinator finalize --group group.key --request request.psbt --answer A…
//! drill_coordinator address --seed N
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use bitcoin::hashes::Hash;
use bitcoin::psbt::Psbt;
use bitcoin::{Amount, FeeRate};
use clap::{Parser, Subcommand};
use custody_airgap::envelope::{Envelope, EnvelopeType, MemoryReplayGuard, Receiver};
use custody_airgap::file::{detect_psbt, list_complete, read_bounded};
use custody_bitcoin::{
    absorb_response, aggregate_psbt, build_psbt, extract_verified, finalize_psbt,
    request_signatures, Branch, BuildOptions, InspectPolicy, Payment, WalletDescriptor, WalletUtxo,
};
use custody_policy::{
    Action, AdminQuorum, Approval, Decision, Network, Outcome, PolicyDocument, Rule, SignedPolicy,
    TransactionLimit, WhitelistEntry,
};
use custody_threshold::{CommitmentBatch, CommitmentPool, GroupKey, Identity, IdentityCard};
use rand_core::OsRng;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Writes admin cards, the signed policy and the drill secrets into DIR.
    Policy {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "regtest")]
        network: String,
        #[arg(long = "whitelist", required = true)]
        whitelist: Vec<String>,
        #[arg(long, default_value_t = 100_000_000)]
        limit_sat: u64,
    },
    /// Builds a request with an approved decision.
    Request {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        group: PathBuf,
        #[arg(long)]
        usb: PathBuf,
        #[arg(long = "card", required = true)]
        cards: Vec<PathBuf>,
        #[arg(long)]
        amount_sat: u64,
        #[arg(long)]
        to: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Prints a P2WPKH address outside any wallet, from a fixed key byte (a destination).
    Address {
        #[arg(long)]
        seed: u8,
        #[arg(long, default_value = "regtest")]
        network: String,
    },
    /// Aggregates the answers and checks the transaction with libbitcoinconsensus.
    Finalize {
        #[arg(long)]
        group: PathBuf,
        #[arg(long)]
        request: PathBuf,
        #[arg(long = "answer", required = true)]
        answers: Vec<PathBuf>,
    },
}

/// Writes a line to stdout (the workspace denies `println!`).
macro_rules! say {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout(), $($arg)*)?
    };
}

const SECRETS: &str = "drill-authority-secrets.hex";

fn read_group(path: &Path) -> Result<GroupKey> {
    GroupKey::decode(&std::fs::read(path)?).context("not a group key")
}

fn read_psbt(path: &Path) -> Result<Psbt> {
    let (raw, _) = detect_psbt(&std::fs::read(path)?).context("not a PSBT")?;
    Ok(Psbt::deserialize(&raw)?)
}

/// Admins 0-1, coordinator 2, approvers 3-4, one hex line each.
fn load_identities(dir: &Path) -> Result<Vec<Identity>> {
    std::fs::read_to_string(dir.join(SECRETS))?
        .lines()
        .map(|l| Identity::from_secret_bytes(&hex::decode(l)?).context("bad identity"))
        .collect()
}

fn document(
    ids: &[Identity],
    network: Network,
    whitelist: &[String],
    limit: u64,
) -> PolicyDocument {
    PolicyDocument {
        version: 1,
        network,
        announced_at: 0,
        effective_from: 0,
        change_delay_secs: 24 * 3600,
        admins: AdminQuorum {
            threshold: 2,
            admins: vec![ids[0].card(), ids[1].card()],
        },
        coordinator: ids[2].card(),
        approvers: vec![ids[3].card(), ids[4].card()],
        whitelist: whitelist
            .iter()
            .map(|a| WhitelistEntry {
                address: a.clone(),
                active_from: 0,
            })
            .collect(),
        limits: vec![TransactionLimit {
            asset: "BTC".into(),
            max_amount: u128::from(limit),
        }],
        rules: vec![Rule {
            asset: "BTC".into(),
            min_amount: 0,
            max_amount: u128::from(limit),
            window: None,
            action: Action::Allow { approvals: 2 },
        }],
        velocity: Vec::new(),
    }
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Policy {
            dir,
            network,
            whitelist,
            limit_sat,
        } => {
            let network = match network.as_str() {
                "regtest" => Network::Regtest,
                "signet" => Network::Signet,
                "testnet" => Network::Testnet,
                other => bail!("drills run on regtest, signet or testnet, not {other}"),
            };
            let names = [
                "admin-1",
                "admin-2",
                "coordinator",
                "approver-1",
                "approver-2",
            ];
            let ids = names
                .iter()
                .map(|n| Identity::generate(n, &mut OsRng).context("identity"))
                .collect::<Result<Vec<_>>>()?;
            let lines: Vec<String> = ids
                .iter()
                .map(|i| hex::encode(i.to_secret_bytes()))
                .collect();
            std::fs::write(dir.join(SECRETS), lines.join("\n") + "\n")?;
            for (i, id) in ids.iter().enumerate().take(2) {
                std::fs::write(
                    dir.join(format!("admin-{}.card", i + 1)),
                    id.card().encode(),
                )?;
            }
            let mut signed = SignedPolicy::new(document(&ids, network, &whitelist, limit_sat))?;
            signed.sign(&ids[0], &mut OsRng);
            signed.sign(&ids[1], &mut OsRng);
            std::fs::write(dir.join("policy-v1.policy"), signed.encode())?;
            say!("{}", dir.join("policy-v1.policy").display());
        }
        Cmd::Request {
            dir,
            group,
            usb,
            cards,
            amount_sat,
            to,
            out,
        } => {
            let ids = load_identities(&dir)?;
            let policy = SignedPolicy::decode(&std::fs::read(dir.join("policy-v1.policy"))?)?;
            let group = read_group(&group)?;
            let cards = cards
                .iter()
                .map(|c| IdentityCard::decode(&std::fs::read(c)?).context("not a card"))
                .collect::<Result<Vec<_>>>()?;
            let mut pool = CommitmentPool::new(&group);
            let session = custody_signer::commitments::commitment_session_id(&group);
            let mut receiver = Receiver::new(session, &cards, None, MemoryReplayGuard::default());
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            let mut signers = Vec::new();
            for path in list_complete(&usb)? {
                let bytes = read_bounded(&path)?;
                let Ok(env) = Envelope::decode(&bytes) else {
                    continue;
                };
                if env.header().kind != EnvelopeType::CommitmentBatch {
                    continue;
                }
                let Ok(opened) = receiver.open(&bytes, Some(EnvelopeType::CommitmentBatch), now)
                else {
                    continue;
                };
                let batch = CommitmentBatch::decode(&opened.payload)?;
                if !signers.contains(&batch.signer) {
                    signers.push(batch.signer);
                }
                pool.add_batch(&batch)?;
            }
            signers.sort_unstable();
            let chosen: Vec<u16> = signers
                .into_iter()
                .take(usize::from(group.threshold()))
                .collect();
            if chosen.len() < usize::from(group.threshold()) {
                bail!(
                    "commitments from {} signers, need {}",
                    chosen.len(),
                    group.threshold()
                );
            }
            let wallet = WalletDescriptor::for_group(&group, None)?;
            let coin = made_up_coin(&wallet, amount_sat.saturating_mul(2).max(100_000))?;
            let payment = Payment {
                address: bitcoin::Address::from_str(&to)?.require_network(group.network())?,
                amount: Amount::from_sat(amount_sat),
            };
            let options = BuildOptions::new(FeeRate::from_sat_per_vb_u32(5), 0);
            let mut psbt = build_psbt(&wallet, &[coin], &[payment], &options)?;
            let mut session_id = [0u8; 16];
            rand_core::RngCore::fill_bytes(&mut OsRng, &mut session_id);
            request_signatures(
                &wallet,
                &group,
                &mut psbt,
                &chosen,
                &mut pool,
                session_id,
                &InspectPolicy::default(),
            )?;
            let mut decision = Decision {
                policy_hash: policy.document().hash(),
                withdrawal_id: format!("drill-{}", hex::encode(&session_id[..4])),
                transaction_digest: psbt.unsigned_tx.compute_txid().to_byte_array().to_vec(),
                outcome: Outcome::Approved,
                hold_until: 0,
                approvals: Vec::new(),
                coordinator_signature: [0; 64],
            };
            let digest = decision.withdrawal_digest();
            decision
                .approvals
                .push(Approval::sign(&ids[3], &digest, &mut OsRng));
            decision
                .approvals
                .push(Approval::sign(&ids[4], &digest, &mut OsRng));
            decision.sign(&ids[2], &mut OsRng);
            custody_bitcoin::fields::set_decision(&mut psbt, &decision.encode());
            std::fs::write(&out, psbt.serialize())?;
            say!(
                "{} signers {:?} txid {}",
                out.display(),
                chosen,
                psbt.unsigned_tx.compute_txid()
            );
        }
        Cmd::Address { seed, network } => {
            let network = bitcoin::Network::from_str(&network)?;
            let secp = bitcoin::secp256k1::Secp256k1::new();
            let sk = bitcoin::secp256k1::SecretKey::from_slice(&[seed.max(1); 32])?;
            let address = bitcoin::Address::p2wpkh(
                &bitcoin::CompressedPublicKey(sk.public_key(&secp)),
                network,
            );
            say!("{address}");
        }
        Cmd::Finalize {
            group,
            request,
            answers,
        } => {
            let group = read_group(&group)?;
            let wallet = WalletDescriptor::for_group(&group, None)?;
            let mut psbt = read_psbt(&request)?;
            for a in &answers {
                absorb_response(&mut psbt, &read_psbt(a)?)?;
            }
            aggregate_psbt(&wallet, &group, &mut psbt, &InspectPolicy::default())?;
            finalize_psbt(&mut psbt)?;
            let tx = extract_verified(&psbt)?;
            say!(
                "final transaction {} verified by libbitcoinconsensus",
                tx.compute_txid()
            );
        }
    }
    Ok(())
}

/// A coin of `sat` on receive address 0, from a made-up funding transaction.
fn made_up_coin(wallet: &WalletDescriptor, sat: u64) -> Result<WalletUtxo> {
    use bitcoin::{absolute::LockTime, transaction::Version, OutPoint, Sequence, TxIn, TxOut};
    let tx = bitcoin::Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: bitcoin::Txid::from_byte_array([0x42; 32]),
                vout: 0,
            },
            script_sig: bitcoin::ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: bitcoin::Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(sat),
            script_pubkey: wallet.address(Branch::Receive, 0)?.script_pubkey(),
        }],
    };
    Ok(WalletUtxo {
        outpoint: OutPoint {
            txid: tx.compute_txid(),
            vout: 0,
        },
        txout: tx.output[0].clone(),
        branch: Branch::Receive,
        index: 0,
        prev_tx: None,
    })
}
