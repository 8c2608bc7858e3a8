//! Per-party cost of threshold ECDSA, ours beside raw `cggmp21` doing the same work in
//! the same run: Paillier prime generation, auxiliary info, key generation, one
//! presignature, one partial signature, combination.
//!
//! Ceremonies run every party in this thread; only party 1's own calls are timed (its
//! `start`/`receive` for our sessions, its state machine's `proceed` for raw cggmp21),
//! with the thread's CPU clock so other processes on the machine do not inflate the
//! numbers. Our figures include what the library leaves to us: identity signatures on
//! every message, age encryption of point-to-point messages, CBOR and framing.
//!
//! `cargo bench -p custody-ecdsa --bench ecdsa -- --warm-up-time 1 --measurement-time 5`

// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::Duration;

use cggmp21::round_based::state_machine::{ProceedResult, StateMachine};
use cggmp21::round_based::{Incoming, MessageDestination, MessageType};
use cggmp21::security_level::SecurityLevel128;
use cggmp21::supported_curves::Secp256k1;
use cggmp21::ExecutionId;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use custody_ecdsa::{
    combine, sign_prehash, AuxInfoSession, EcdsaCeremonyKind, EcdsaKeyShare, EcdsaMessage,
    EcdsaPlan, KeygenSession, MemoryPresignatureStore, PaillierPrimes, PresignSession,
    Presignature, PresignatureId, PresignatureStore,
};
use custody_threshold::Identity;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const PRIMES: &str = include_str!("../tests/data/paillier-primes.hex");

fn cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).expect("CPU time is positive"),
        u32::try_from(t.tv_nsec).expect("nanoseconds below 10^9"),
    )
}

fn primes(i: usize) -> PaillierPrimes {
    let line = PRIMES.lines().nth(i).expect("a line per party");
    PaillierPrimes::from_secret_bytes(&hex::decode(line.trim()).expect("hex")).expect("primes")
}

fn raw_primes(i: usize) -> cggmp21::PregeneratedPrimes<SecurityLevel128> {
    // Same primes, through their CBOR form inside our encoding (the bench only needs the
    // raw type, so it goes through serde like any application would).
    let bytes = primes(i).to_secret_bytes();
    let cbor = &bytes[6 + 4..];
    ciborium::from_reader(cbor).expect("primes CBOR")
}

struct Setup {
    ids: Vec<Identity>,
    key_plan: EcdsaPlan,
}

fn setup(n: usize, t: u16) -> Setup {
    let mut rng = ChaCha20Rng::seed_from_u64(n as u64);
    let ids: Vec<Identity> = (0..n)
        .map(|i| Identity::generate(&format!("party{}", i + 1), &mut rng).expect("name"))
        .collect();
    let key_plan = EcdsaPlan::new(
        [n as u8; 16],
        EcdsaCeremonyKind::Key,
        "bench",
        t,
        ids.iter().map(Identity::card).collect(),
    )
    .expect("plan");
    Setup { ids, key_plan }
}

/// Runs one of our sessions for every party; returns the outputs and party 1's CPU time.
fn run_ours<S>(
    ids: &[Identity],
    mut start: impl FnMut(usize, &mut ChaCha20Rng) -> (S, Vec<EcdsaMessage>),
    receive: impl Fn(&mut S, &Identity, &[EcdsaMessage], &mut ChaCha20Rng) -> Vec<EcdsaMessage>,
    finished: impl Fn(&S) -> bool,
) -> (Vec<S>, Duration) {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let mut timed = Duration::ZERO;
    let mut sessions = Vec::new();
    let mut pending = Vec::new();
    for i in 0..ids.len() {
        let t0 = cpu();
        let (s, out) = start(i, &mut rng);
        if i == 0 {
            timed += cpu() - t0;
        }
        sessions.push(s);
        pending.extend(out);
    }
    while !sessions.iter().all(&finished) {
        let mut next = Vec::new();
        for (i, s) in sessions.iter_mut().enumerate() {
            let t0 = cpu();
            let out = receive(s, &ids[i], &pending, &mut rng);
            if i == 0 {
                timed += cpu() - t0;
            }
            next.extend(out);
        }
        pending = next;
    }
    (sessions, timed)
}

type Boxed<M, O> = Box<dyn StateMachine<Output = O, Msg = M>>;

/// Runs raw cggmp21 state machines with in-memory delivery; returns the outputs and
/// party 0's CPU time.
fn run_raw<M: Clone, O>(mut machines: Vec<Boxed<M, O>>) -> (Vec<O>, Duration) {
    let n = machines.len();
    let mut queues: Vec<VecDeque<Incoming<M>>> = (0..n).map(|_| VecDeque::new()).collect();
    let mut outputs: Vec<Option<O>> = (0..n).map(|_| None).collect();
    let mut timed = Duration::ZERO;
    let mut id = 0u64;
    while outputs.iter().any(Option::is_none) {
        for i in 0..n {
            if outputs[i].is_some() {
                continue;
            }
            loop {
                let t0 = cpu();
                let step = machines[i].proceed();
                if i == 0 {
                    timed += cpu() - t0;
                }
                match step {
                    ProceedResult::SendMsg(out) => {
                        let (targets, msg_type): (Vec<usize>, _) = match out.recipient {
                            MessageDestination::AllParties => {
                                ((0..n).filter(|j| *j != i).collect(), MessageType::Broadcast)
                            }
                            MessageDestination::OneParty(j) => {
                                (vec![usize::from(j)], MessageType::P2P)
                            }
                        };
                        for j in targets {
                            id += 1;
                            queues[j].push_back(Incoming {
                                id,
                                sender: i as u16,
                                msg_type,
                                msg: out.msg.clone(),
                            });
                        }
                    }
                    ProceedResult::NeedsOneMoreMessage => match queues[i].pop_front() {
                        Some(m) => {
                            let t0 = cpu();
                            let r = machines[i].received_msg(m);
                            if i == 0 {
                                timed += cpu() - t0;
                            }
                            assert!(r.is_ok(), "message accepted");
                        }
                        None => break,
                    },
                    ProceedResult::Yielded => {}
                    ProceedResult::Output(o) => {
                        outputs[i] = Some(o);
                        break;
                    }
                    ProceedResult::Error(e) => panic!("raw state machine: {e}"),
                }
            }
        }
    }
    (
        outputs.into_iter().map(|o| o.expect("done")).collect(),
        timed,
    )
}

fn eid(tag: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..tag.len()].copy_from_slice(tag.as_bytes());
    out
}

type RawShare = cggmp21::KeyShare<Secp256k1, SecurityLevel128>;

fn raw_aux(n: u16) -> (Vec<cggmp21::key_share::AuxInfo<SecurityLevel128>>, Duration) {
    let machines = (0..n)
        .map(|i| {
            let primes = raw_primes(usize::from(i));
            let mut rng = ChaCha20Rng::seed_from_u64(u64::from(i));
            let id = eid("aux");
            Box::new(cggmp21::round_based::state_machine::wrap_protocol(
                move |party| async move {
                    cggmp21::aux_info_gen(ExecutionId::new(&id), i, n, primes)
                        .start(&mut rng, party)
                        .await
                        .expect("aux")
                },
            )) as Boxed<_, _>
        })
        .collect();
    run_raw(machines)
}

fn raw_keygen(n: u16, t: u16) -> (Vec<cggmp21::IncompleteKeyShare<Secp256k1>>, Duration) {
    let machines = (0..n)
        .map(|i| {
            let mut rng = ChaCha20Rng::seed_from_u64(100 + u64::from(i));
            let id = eid("keygen");
            Box::new(cggmp21::round_based::state_machine::wrap_protocol(
                move |party| async move {
                    cggmp21::keygen::<Secp256k1>(ExecutionId::new(&id), i, n)
                        .set_threshold(t)
                        .set_security_level::<SecurityLevel128>()
                        .start(&mut rng, party)
                        .await
                        .expect("keygen")
                },
            )) as Boxed<_, _>
        })
        .collect();
    run_raw(machines)
}

fn raw_presign(
    shares: &[std::rc::Rc<RawShare>],
    signers: &[u16],
) -> (Vec<cggmp21::Presignature<Secp256k1>>, Duration) {
    let at_keygen = std::rc::Rc::new(signers.iter().map(|s| s - 1).collect::<Vec<u16>>());
    let machines = signers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let share = std::rc::Rc::clone(&shares[usize::from(s - 1)]);
            let at_keygen = std::rc::Rc::clone(&at_keygen);
            let mut rng = ChaCha20Rng::seed_from_u64(200 + i as u64);
            let id = eid("presign");
            Box::new(cggmp21::round_based::state_machine::wrap_protocol(
                move |party| async move {
                    cggmp21::signing(ExecutionId::new(&id), i as u16, &at_keygen, &share)
                        .generate_presignature(&mut rng, party)
                        .await
                        .expect("presign")
                },
            )) as Boxed<_, _>
        })
        .collect();
    run_raw(machines)
}

fn ours_key(s: &Setup) -> (Vec<EcdsaKeyShare>, Duration, Duration) {
    let plan = &s.key_plan;
    let (aux, aux_time) = run_ours(
        &s.ids,
        |i, rng| AuxInfoSession::start(plan, &s.ids[i], primes(i), rng).expect("aux"),
        |x, id, m, rng| x.receive(id, m, rng).expect("aux"),
        AuxInfoSession::is_finished,
    );
    let (keygen, keygen_time) = run_ours(
        &s.ids,
        |i, rng| KeygenSession::start(plan, &s.ids[i], rng).expect("keygen"),
        |x, id, m, rng| x.receive(id, m, rng).expect("keygen"),
        KeygenSession::is_finished,
    );
    let shares = keygen
        .into_iter()
        .zip(aux)
        .map(|(k, a)| k.finish(a.finish().expect("aux")).expect("share"))
        .collect();
    (shares, aux_time, keygen_time)
}

fn presign_plan(s: &Setup, share: &EcdsaKeyShare, signers: &[u16], batch: u8) -> EcdsaPlan {
    EcdsaPlan::new(
        [batch; 16],
        EcdsaCeremonyKind::Presign {
            group_key: *share.group_key().compressed(),
            signers: signers.to_vec(),
            count: 1,
        },
        "bench",
        share.threshold(),
        s.ids.iter().map(Identity::card).collect(),
    )
    .expect("presign plan")
}

fn ours_presign(
    s: &Setup,
    shares: &[EcdsaKeyShare],
    plan: &EcdsaPlan,
    signers: &[u16],
) -> (Vec<Vec<Presignature>>, Duration) {
    let ids: Vec<&Identity> = signers.iter().map(|x| &s.ids[usize::from(x - 1)]).collect();
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let mut timed = Duration::ZERO;
    let mut sessions = Vec::new();
    let mut pending = Vec::new();
    for (k, x) in signers.iter().enumerate() {
        let t0 = cpu();
        let (sess, out) =
            PresignSession::start(plan, ids[k], &shares[usize::from(x - 1)], &mut rng)
                .expect("presign");
        if k == 0 {
            timed += cpu() - t0;
        }
        sessions.push(sess);
        pending.extend(out);
    }
    while !sessions.iter().all(PresignSession::is_finished) {
        let mut next = Vec::new();
        for (k, sess) in sessions.iter_mut().enumerate() {
            let t0 = cpu();
            let out = sess.receive(ids[k], &pending, &mut rng).expect("presign");
            if k == 0 {
                timed += cpu() - t0;
            }
            next.extend(out);
        }
        pending = next;
    }
    let outs = sessions
        .into_iter()
        .map(|x| x.finish().expect("presignatures"))
        .collect();
    (outs, timed)
}

fn bench_config(c: &mut Criterion, n: usize, t: u16, signers: &[u16]) {
    let label = format!("{t}-of-{n}");
    let s = setup(n, t);
    let mut g = c.benchmark_group(format!("ecdsa/{label}"));
    g.sample_size(10);

    g.bench_function(BenchmarkId::new("aux_info", "ours"), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| ours_key(&s).1).sum())
    });
    g.bench_function(BenchmarkId::new("aux_info", "raw cggmp21"), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| raw_aux(n as u16).1).sum())
    });
    g.bench_function(BenchmarkId::new("keygen", "ours"), |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    run_ours(
                        &s.ids,
                        |i, rng| KeygenSession::start(&s.key_plan, &s.ids[i], rng).expect("kg"),
                        |x, id, m, rng| x.receive(id, m, rng).expect("kg"),
                        KeygenSession::is_finished,
                    )
                    .1
                })
                .sum()
        })
    });
    g.bench_function(BenchmarkId::new("keygen", "raw cggmp21"), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| raw_keygen(n as u16, t).1).sum())
    });

    let (shares, _, _) = ours_key(&s);
    let raw_shares: Vec<std::rc::Rc<RawShare>> = {
        let (aux, _) = raw_aux(n as u16);
        let (cores, _) = raw_keygen(n as u16, t);
        cores
            .into_iter()
            .zip(aux)
            .map(|(c, a)| std::rc::Rc::new(cggmp21::KeyShare::from_parts((c, a)).expect("share")))
            .collect()
    };
    let plan = presign_plan(&s, &shares[0], signers, 0xB0);

    g.bench_function(BenchmarkId::new("presignature", "ours"), |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| ours_presign(&s, &shares, &plan, signers).1)
                .sum()
        })
    });
    g.bench_function(BenchmarkId::new("presignature", "raw cggmp21"), |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| raw_presign(&raw_shares, signers).1)
                .sum()
        })
    });

    let (presigs, _) = ours_presign(&s, &shares, &plan, signers);
    let templates: Vec<Vec<u8>> = presigs
        .iter()
        .map(|p| p[0].to_secret_bytes().to_vec())
        .collect();
    let (raw_presigs, _) = raw_presign(&raw_shares, signers);
    let hash = [0x42u8; 32];
    let id = PresignatureId {
        batch: *plan.ceremony_id(),
        index: 0,
    };
    let first = usize::from(signers[0] - 1);
    let mut rng = ChaCha20Rng::seed_from_u64(11);

    g.bench_function(BenchmarkId::new("partial_signature", "ours"), |b| {
        b.iter_batched(
            || {
                let mut store = MemoryPresignatureStore::new();
                store
                    .insert(vec![
                        Presignature::from_secret_bytes(&templates[0]).expect("p")
                    ])
                    .expect("insert");
                store
            },
            |mut store| {
                sign_prehash(
                    &shares[first],
                    &s.ids[first],
                    &mut store,
                    &id,
                    &hash,
                    &mut rng,
                )
                .expect("partial")
            },
            criterion::BatchSize::SmallInput,
        )
    });
    let message = cggmp21::DataToSign::from_scalar(
        cggmp21::generic_ec::Scalar::<Secp256k1>::from_be_bytes_mod_order(hash),
    );
    g.bench_function(BenchmarkId::new("partial_signature", "raw cggmp21"), |b| {
        b.iter_batched(
            || raw_presigs[0].clone(),
            |p| p.issue_partial_signature(black_box(message)),
            criterion::BatchSize::SmallInput,
        )
    });

    let partials: Vec<_> = signers
        .iter()
        .zip(&templates)
        .map(|(x, tpl)| {
            let i = usize::from(x - 1);
            let mut store = MemoryPresignatureStore::new();
            store
                .insert(vec![Presignature::from_secret_bytes(tpl).expect("p")])
                .expect("insert");
            sign_prehash(&shares[i], &s.ids[i], &mut store, &id, &hash, &mut rng).expect("partial")
        })
        .collect();
    g.bench_function(BenchmarkId::new("combine", "ours"), |b| {
        b.iter(|| combine(&plan, &hash, black_box(&partials)).expect("signature"))
    });
    let raw_partials: Vec<_> = raw_presigs
        .iter()
        .map(|p| p.clone().issue_partial_signature(message))
        .collect();
    let raw_pk = raw_shares[0].shared_public_key;
    g.bench_function(BenchmarkId::new("combine", "raw cggmp21"), |b| {
        b.iter(|| {
            let sig = cggmp21::PartialSignature::combine(black_box(&raw_partials)).expect("sig");
            sig.verify(&raw_pk, &message).expect("valid");
            sig
        })
    });
    g.finish();
}

fn prime_generation(c: &mut Criterion) {
    let mut g = c.benchmark_group("ecdsa/per-party");
    g.sample_size(10);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    // Thread CPU time like the ceremonies, so machine load does not inflate it.
    g.bench_function(BenchmarkId::new("prime_generation", "ours"), |b| {
        b.iter_custom(|iters| {
            let t0 = cpu();
            for _ in 0..iters {
                black_box(PaillierPrimes::generate(&mut rng, |_| {}));
            }
            cpu() - t0
        })
    });
    g.bench_function(BenchmarkId::new("prime_generation", "raw cggmp21"), |b| {
        b.iter_custom(|iters| {
            let t0 = cpu();
            for _ in 0..iters {
                black_box(cggmp21::PregeneratedPrimes::<SecurityLevel128>::generate(
                    &mut rng,
                ));
            }
            cpu() - t0
        })
    });
    g.finish();
}

fn two_of_three(c: &mut Criterion) {
    bench_config(c, 3, 2, &[1, 3]);
}

fn three_of_five(c: &mut Criterion) {
    bench_config(c, 5, 3, &[2, 4, 5]);
}

criterion_group!(benches, prime_generation, two_of_three, three_of_five);
criterion_main!(benches);
