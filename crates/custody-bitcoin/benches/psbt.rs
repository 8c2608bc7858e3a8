//! PSBT signing and finishing for 1, 10 and 100 inputs with a 2-of-3 group key.
//!
//! - `signer/inspect+sign`: what one air-gapped signer does with a request PSBT: inspect it
//!   (to show a human) and `sign_psbt` (which inspects again, recomputes every sighash,
//!   compares the request and produces the FROST shares). Each iteration answers a fresh
//!   request: nonces are single-use, so request building is set-up, not measured.
//! - `coordinator/build`: `build_psbt` choosing among 2n coins (n needed, n small decoys):
//!   coin selection, derivation of every candidate's address, BIP371 fields.
//! - `coordinator/aggregate+finalize+verify`: `aggregate_psbt`, `finalize_psbt` and
//!   `extract_verified` (libbitcoinconsensus on every input) on a PSBT holding both
//!   signers' shares.
//! - `floor/bitcoin-single-key-sign`: the `bitcoin` crate's own single-key Taproot signing
//!   (`Psbt::sign` with an `Xpriv`) of a PSBT of the same shape, built by the same code for a
//!   single-key `tr(xpub/<0;1>/*)` wallet: the cost of signing with no threshold at all.
//!
//! The issue's target: a 100-input 2-of-3 request signs on the signer in under 1 s.

// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use bitcoin::bip32::{Xpriv, Xpub};
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::Secp256k1;
use bitcoin::{Amount, FeeRate, Network, OutPoint, TxOut, Txid};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode};
use custody_bitcoin::{
    absorb_response, aggregate_psbt, build_psbt, extract_verified, finalize_psbt, inspect_psbt,
    request_signatures, sign_psbt, Branch, BuildOptions, InspectPolicy, Payment, WalletDescriptor,
    WalletUtxo,
};
use custody_threshold::{
    generate_with_dealer, issue_commitments, CommitmentPool, GroupKey, KeyShare, MemoryNonceStore,
    NonceSeed,
};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const SIZES: [usize; 3] = [1, 10, 100];
const COIN: u64 = 1_000_000;

struct Device {
    share: KeyShare,
    seed: NonceSeed,
    store: MemoryNonceStore,
}

/// The wallet's coins: `n` coins of `COIN` at receive addresses 0.., then `decoys` small
/// coins (0.0005 BTC) at change addresses 0.., so coin selection has choices to make.
fn coins(wallet: &WalletDescriptor, n: usize, decoys: usize) -> Vec<WalletUtxo> {
    (0..n + decoys)
        .map(|i| {
            let (branch, index, value) = if i < n {
                (Branch::Receive, i as u32, COIN)
            } else {
                (Branch::Change, (i - n) as u32, 50_000)
            };
            WalletUtxo {
                outpoint: OutPoint {
                    txid: Txid::from_raw_hash(bitcoin::hashes::Hash::from_byte_array(
                        [(i % 251) as u8 + 1; 32],
                    )),
                    vout: i as u32,
                },
                txout: TxOut {
                    value: Amount::from_sat(value),
                    script_pubkey: wallet
                        .address(branch, index)
                        .expect("derive")
                        .script_pubkey(),
                },
                branch,
                index,
                prev_tx: None,
            }
        })
        .collect()
}

/// A payment just under `n` coins, so every big coin is needed.
fn payment(n: usize) -> Payment {
    let destination = WalletDescriptor::from_xpub(
        Network::Regtest,
        Xpub::from_priv(
            &Secp256k1::new(),
            &Xpriv::new_master(Network::Regtest, &[9; 32]).expect("seed"),
        ),
        None,
        None,
    )
    .expect("descriptor")
    .address(Branch::Receive, 0)
    .expect("derive");
    Payment {
        address: destination,
        amount: Amount::from_sat(n as u64 * COIN - 30_000),
    }
}

fn options() -> BuildOptions {
    BuildOptions::new(FeeRate::from_sat_per_vb_u32(2), 0)
}

/// A withdrawal spending exactly the `n` big coins of `wallet`.
fn withdrawal(wallet: &WalletDescriptor, n: usize) -> Psbt {
    let psbt = build_psbt(wallet, &coins(wallet, n, 0), &[payment(n)], &options()).expect("build");
    assert_eq!(psbt.inputs.len(), n);
    psbt
}

/// Issues one commitment per input from each signer and attaches a request for signers 1, 2.
fn with_request(
    wallet: &WalletDescriptor,
    group: &GroupKey,
    devices: &mut [Device],
    psbt: &Psbt,
    session: u64,
) -> Psbt {
    let n = psbt.inputs.len();
    let mut pool = CommitmentPool::new(group);
    for d in devices.iter_mut().take(2) {
        let batch = issue_commitments(&d.share, &d.seed, &mut d.store, n).expect("issue");
        pool.add_batch(&batch).expect("same group");
    }
    let mut psbt = psbt.clone();
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&session.to_be_bytes());
    request_signatures(
        wallet,
        group,
        &mut psbt,
        &[1, 2],
        &mut pool,
        id,
        &InspectPolicy::default(),
    )
    .expect("request");
    psbt
}

fn benches(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let (group, shares) = generate_with_dealer(Network::Regtest, 2, 3, &mut rng).expect("dealer");
    let wallet = WalletDescriptor::for_group(&group, None).expect("descriptor");
    let mut devices: Vec<Device> = shares
        .into_iter()
        .map(|share| Device {
            share,
            seed: NonceSeed::generate(&mut rng),
            store: MemoryNonceStore::new(),
        })
        .collect();
    let policy = InspectPolicy::default();

    let secp = Secp256k1::new();
    let single_master = Xpriv::new_master(Network::Regtest, &[7; 32]).expect("seed");
    let single_wallet = WalletDescriptor::from_xpub(
        Network::Regtest,
        Xpub::from_priv(&secp, &single_master),
        None,
        None,
    )
    .expect("descriptor");

    let mut session = 0u64;
    for n in SIZES {
        let mut group_bench = c.benchmark_group(format!("psbt-{n}-inputs"));
        group_bench.sample_size(10);
        group_bench.sampling_mode(SamplingMode::Flat);
        group_bench.warm_up_time(Duration::from_millis(500));
        group_bench.measurement_time(Duration::from_secs(if n == 100 { 8 } else { 3 }));

        let unsigned = withdrawal(&wallet, n);

        // Coin selection among the n big coins and as many decoys.
        let utxos = coins(&wallet, n, n);
        let pay = [payment(n)];
        group_bench.bench_function("coordinator/build", |b| {
            b.iter(|| build_psbt(&wallet, &utxos, &pay, &options()).expect("build"))
        });

        group_bench.bench_function("signer/inspect+sign", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    session += 1;
                    let request = with_request(&wallet, &group, &mut devices, &unsigned, session);
                    let d = &mut devices[0];
                    let mut received = request.clone();
                    let start = Instant::now();
                    let shown = inspect_psbt(&wallet, &received, &policy).expect("inspect");
                    sign_psbt(
                        &wallet,
                        &d.share,
                        &d.seed,
                        &mut d.store,
                        &mut received,
                        &policy,
                    )
                    .expect("sign");
                    total += start.elapsed();
                    black_box((shown, received));
                }
                total
            })
        });

        // One fully answered PSBT, finished again and again on clones.
        session += 1;
        let mut answered = with_request(&wallet, &group, &mut devices, &unsigned, session);
        for d in devices.iter_mut().take(2) {
            let mut received = answered.clone();
            sign_psbt(
                &wallet,
                &d.share,
                &d.seed,
                &mut d.store,
                &mut received,
                &policy,
            )
            .expect("sign");
            absorb_response(&mut answered, &received).expect("absorb");
        }
        group_bench.bench_function("coordinator/aggregate+finalize+verify", |b| {
            b.iter_batched(
                || answered.clone(),
                |mut psbt| {
                    aggregate_psbt(&wallet, &group, &mut psbt, &policy).expect("aggregate");
                    finalize_psbt(&mut psbt).expect("finalize");
                    extract_verified(&psbt).expect("consensus")
                },
                BatchSize::LargeInput,
            )
        });

        let single = withdrawal(&single_wallet, n);
        // The floor really signs every input: the result finalizes and verifies.
        let mut check = single.clone();
        check.sign(&single_master, &secp).expect("sign");
        assert!(check.inputs.iter().all(|i| i.tap_key_sig.is_some()));
        finalize_psbt(&mut check).expect("finalize");
        extract_verified(&check).expect("consensus");
        group_bench.bench_function("floor/bitcoin-single-key-sign", |b| {
            b.iter_batched(
                || single.clone(),
                |mut psbt| {
                    psbt.sign(&single_master, &secp).expect("sign");
                    psbt
                },
                BatchSize::LargeInput,
            )
        });
        group_bench.finish();
    }
}

criterion_group!(psbt, benches);
criterion_main!(psbt);
