//! Our threshold operations side by side with raw `frost-secp256k1-tr` doing the same work.
//!
//! For 2-of-3, 7-of-10 and 67-of-100, each criterion group holds `custody` (this crate) and
//! `raw-frost` (the ZF FROST calls underneath, with everything that is ours precomputed).
//! Results and how to read them: `docs/benchmarks.md`.
//!
//! The raw side does not just do *similar* work, it does *the same* work: setup checks
//! that raw FROST, fed the inputs our code uses (same DKG randomness, same key shares, the
//! same BIP32-derived key packages, nonces derived exactly as `NonceSeed` derives them,
//! the same signing package), produces byte-identical key shares, signature shares and
//! signatures. The difference between the two functions is therefore our wrapper alone:
//!
//! - DKG: message signatures and their checks, age encryption and decryption of round-2
//!   shares, our own share check before `part3`, certificates, encodings.
//! - commitments: counter-derived nonces and the store instead of random nonces.
//! - signing: nonce re-derivation and commitment check, the nonce store, BIP32 derivation
//!   of the key package.
//! - aggregation: response checks, BIP32 derivation of the public key package, encoding
//!   the signature.
//!
//! `raw-frost` is handed, in memory and for free, two things no one-trip HD signer has: the
//! key package already derived for the request's path, and its nonces as live
//! `SigningNonces`. So the sign, aggregate and end-to-end groups also hold `raw-frost-hd`,
//! the least that a one-trip HD signer and coordinator built on raw FROST must do for the
//! same request (setup checks it gives the same shares and signature):
//!
//! - the signer loads the nonces it stored when it issued the commitment: they must
//!   survive the air-gap trip, so by then they are bytes (`SigningNonces::deserialize`);
//! - the signer derives the key package for the path: BIP32 CKDpub with the `bitcoin`
//!   crate (one HMAC-SHA512 and one libsecp256k1 tweak-add per step), the share plus the
//!   tweak, the verifying parts moved by child key minus root key (no multiplication);
//! - the coordinator derives the public key package the same way and encodes the
//!   signature (64 bytes for the witness).
//!
//! Neither side counts decoding the request, nor persisting nonce state (the durable
//! store's fsync for us; deleting used nonces for raw FROST).
//!
//! Slow groups use 10 samples and flat sampling; see [`configure`].
//!
//! Times are the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall-clock
//! time: on a shared 2-core machine other processes preempt the benchmark thread, which
//! inflates wall-clock samples by tens of percent at random. Every measured function is
//! single-threaded, so on an idle machine the two agree. `BENCH_CLOCK=wall` measures
//! wall-clock time instead.

// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bitcoin::bip32::{ChildNumber, Xpub};
use bitcoin::secp256k1::{Secp256k1, VerifyOnly};
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::SamplingMode;
use criterion::{criterion_group, BatchSize, BenchmarkGroup, Criterion};
use custody_threshold::{
    aggregate, bip32, generate_with_dealer, issue_commitments, sign_request, CeremonyKind,
    CeremonyMessage, CeremonyPlan, CommitmentPool, GroupKey, Identity, ItemSpec, KeyShare, Keygen,
    KeygenOutput, MemoryNonceStore, MessageKind, Network, NonceSeed, NonceStore, SignatureShares,
    SigningRequest, TweakMode, BROADCAST,
};
use frost::keys::dkg::{self, round1, round2};
use frost::keys::{KeyPackage, PublicKeyPackage, SigningShare, VerifyingShare};
use frost::round1::{SigningCommitments, SigningNonces};
use frost::round2::SignatureShare;
use frost::{Identifier, SigningPackage, VerifyingKey};
use frost_core::Ciphersuite;
use frost_secp256k1_tr as frost;
use k256::elliptic_curve::PrimeField;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// The scheme sizes measured: (threshold, participants).
const SIZES: [(u16, u16); 3] = [(2, 3), (7, 10), (67, 100)];
/// Commitments per batch.
const BATCH: usize = 100;
/// The message every benchmark signs (a stand-in for a BIP341 sighash).
const MESSAGE: [u8; 32] = [0x5a; 32];
/// The derivation path every benchmark signs for.
const PATH: [u32; 2] = [0, 0];
/// Signing session id.
const SESSION: [u8; 16] = [0x42; 16];

/// Thread CPU time, or wall-clock time with `BENCH_CLOCK=wall`.
struct BenchClock {
    wall_clock: bool,
    wall: WallTime,
}

enum Start {
    Cpu(Duration),
    Wall(Instant),
}

fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).expect("CPU time is positive"),
        u32::try_from(t.tv_nsec).expect("nanoseconds below 10^9"),
    )
}

impl BenchClock {
    fn from_env() -> Self {
        BenchClock {
            wall_clock: std::env::var("BENCH_CLOCK").is_ok_and(|v| v == "wall"),
            wall: WallTime,
        }
    }
}

impl Measurement for BenchClock {
    type Intermediate = Start;
    type Value = Duration;

    fn start(&self) -> Start {
        if self.wall_clock {
            Start::Wall(Instant::now())
        } else {
            Start::Cpu(thread_cpu_time())
        }
    }

    fn end(&self, start: Start) -> Duration {
        match start {
            Start::Wall(t) => t.elapsed(),
            Start::Cpu(t) => thread_cpu_time().saturating_sub(t),
        }
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        // Values are nanoseconds, as for wall-clock time.
        self.wall.formatter()
    }
}

type Group<'a> = BenchmarkGroup<'a, BenchClock>;
type Bench = Criterion<BenchClock>;

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn id(index: u16) -> Identifier {
    Identifier::try_from(index).expect("indexes start at 1")
}

fn label(t: u16, n: u16) -> String {
    format!("{t}-of-{n}")
}

/// Slow groups: 10 samples, each one or a few iterations (flat sampling), so the run
/// stays within the measurement time given on the command line where possible.
fn configure(group: &mut Group<'_>, samples: usize, flat: bool) {
    group.sample_size(samples);
    if flat {
        group.sampling_mode(SamplingMode::Flat);
    }
}

// ---------------------------------------------------------------------------------------
// DKG
// ---------------------------------------------------------------------------------------

/// Everything participant #1 receives from the others in a DKG, precomputed.
struct DkgFixture {
    t: u16,
    n: u16,
    plan: CeremonyPlan,
    me: Identity,
    /// The others' round-1 messages.
    round1: Vec<CeremonyMessage>,
    /// The others' round-2 messages addressed to #1.
    round2: Vec<CeremonyMessage>,
    /// The others' certificates.
    certificates: Vec<CeremonyMessage>,
    /// The others' raw round-1 packages (identical to the bodies of `round1`).
    raw_round1: BTreeMap<Identifier, round1::Package>,
    /// The others' raw round-2 packages for #1 (identical to the plaintexts of `round2`).
    raw_round2: BTreeMap<Identifier, round2::Package>,
}

/// Participant `i`'s DKG randomness. Both sides draw `part1` from it, so both compute the
/// same polynomials and the others' messages fit every timed run of #1.
fn dkg_seed(t: u16, n: u16, i: u16) -> u64 {
    (u64::from(t) << 40) | (u64::from(n) << 20) | u64::from(i)
}

fn secret_share_bytes(share: &KeyShare) -> [u8; 32] {
    // `to_secret_bytes` ends with the 32-byte signing share.
    let bytes = share.to_secret_bytes();
    bytes[bytes.len() - 32..]
        .try_into()
        .expect("a share encoding ends with 32 bytes")
}

impl DkgFixture {
    fn new(t: u16, n: u16) -> Self {
        let mut id_rng = rng(0x1d);
        let ids: Vec<Identity> = (1..=n)
            .map(|i| Identity::generate(&format!("p{i}"), &mut id_rng).expect("valid name"))
            .collect();
        let plan = CeremonyPlan::new(
            [0xb5; 16],
            CeremonyKind::Dkg,
            Network::Regtest,
            "benchmark wallet",
            t,
            ids.iter().map(Identity::card).collect(),
        )
        .expect("valid plan");
        let mut rngs: Vec<ChaCha20Rng> = (1..=n).map(|i| rng(dkg_seed(t, n, i))).collect();

        // Round 1 for everyone.
        let mut states = Vec::new();
        let mut round1_all = Vec::new();
        for (identity, r) in ids.iter().zip(rngs.iter_mut()) {
            let (s, m) = Keygen::start_dkg(&plan, identity, r).expect("round 1");
            states.push(s);
            round1_all.push(m);
        }
        // Round 2 for everyone.
        let mut states2 = Vec::new();
        let mut round2_all = Vec::new();
        for ((s, identity), r) in states.into_iter().zip(&ids).zip(rngs.iter_mut()) {
            let (s2, msgs) = s.receive_round1(identity, &round1_all, r).expect("round 2");
            states2.push(s2);
            round2_all.extend(msgs);
        }
        let for_recipient = |i: u16| -> Vec<CeremonyMessage> {
            round2_all
                .iter()
                .filter(|m| m.recipient() == i)
                .cloned()
                .collect()
        };
        let round2_to_me = for_recipient(1);

        // Certificates. #1's own run gives the transcript every honest participant
        // certifies. For the small sizes everyone else computes theirs honestly and we check
        // they are identical; for 67-of-100 (99 more full DKG computations, minutes of
        // setup) each other participant signs that same body, which is byte for byte what
        // it would have sent.
        let mut states2 = states2.into_iter();
        let me_state = states2.next().expect("participant #1");
        let (me_certify, my_certificate) = me_state
            .receive_round2(&ids[0], &round2_to_me, &mut rngs[0])
            .expect("certificate");
        let mut certificates = Vec::new();
        for (j, s) in states2.enumerate() {
            let i = j as u16 + 2;
            let r = &mut rngs[usize::from(i) - 1];
            let identity = &ids[usize::from(i) - 1];
            let cert = if n <= 10 {
                let (_, cert) = s
                    .receive_round2(identity, &for_recipient(i), r)
                    .expect("certificate");
                assert_eq!(cert.payload(), my_certificate.payload(), "same transcript");
                cert
            } else {
                CeremonyMessage::seal(
                    &plan,
                    identity,
                    MessageKind::DkgCertificate,
                    BROADCAST,
                    my_certificate.payload(),
                    r,
                )
                .expect("seal certificate")
            };
            certificates.push(cert);
        }
        let expected = me_certify
            .finish(&ids[0], &certificates)
            .expect("all certificates agree");

        // Raw FROST with the same randomness: the same round-1 packages.
        let mut raw_secrets = Vec::new();
        let mut raw_packages = BTreeMap::new();
        for i in 1..=n {
            let (secret, package) =
                dkg::part1(id(i), n, t, rng(dkg_seed(t, n, i))).expect("raw part1");
            assert_eq!(
                package.serialize().expect("serialize"),
                round1_all[usize::from(i) - 1].payload(),
                "raw and ours compute the same round-1 package"
            );
            raw_secrets.push(secret);
            raw_packages.insert(id(i), package);
        }
        let others_of = |i: u16| -> BTreeMap<Identifier, round1::Package> {
            raw_packages
                .iter()
                .filter(|(k, _)| **k != id(i))
                .map(|(k, v)| (*k, v.clone()))
                .collect()
        };
        let mut raw_round2 = BTreeMap::new();
        for (j, secret) in raw_secrets.into_iter().enumerate().skip(1) {
            let i = j as u16 + 1;
            let (_, mut outgoing) = dkg::part2(secret, &others_of(i)).expect("raw part2");
            raw_round2.insert(
                id(i),
                outgoing.remove(&id(1)).expect("a share for participant #1"),
            );
        }

        let me = ids.into_iter().next().expect("participant #1");
        let fixture = DkgFixture {
            t,
            n,
            plan,
            me,
            round1: round1_all.into_iter().skip(1).collect(),
            round2: round2_to_me,
            certificates,
            raw_round1: others_of(1),
            raw_round2,
        };

        // The timed runs reproduce the setup run exactly, and raw FROST computes the same
        // share and group key.
        let ours = fixture.run_ours();
        assert_eq!(ours.transcript_hash, expected.transcript_hash);
        let (raw_key, raw_public) = fixture.run_raw();
        assert_eq!(
            secret_share_bytes(&ours.share),
            secret_share_bytes(&expected.share)
        );
        assert_eq!(
            &secret_share_bytes(&ours.share)[..],
            &raw_key.signing_share().serialize()[..],
            "raw and ours compute the same key share"
        );
        assert_eq!(
            &ours.share.group().public_key()[..],
            &raw_public.verifying_key().serialize().expect("key")[..],
            "raw and ours compute the same group key"
        );
        fixture
    }

    /// Participant #1's whole DKG: round 1, round 2, certificate, finish.
    fn run_ours(&self) -> KeygenOutput {
        let mut r = rng(dkg_seed(self.t, self.n, 1));
        let (s1, m1) = Keygen::start_dkg(&self.plan, &self.me, &mut r).expect("round 1");
        black_box(m1);
        let (s2, m2) = s1
            .receive_round1(&self.me, &self.round1, &mut r)
            .expect("round 2");
        black_box(m2);
        let (s3, m3) = s2
            .receive_round2(&self.me, &self.round2, &mut r)
            .expect("certificate");
        black_box(m3);
        s3.finish(&self.me, &self.certificates).expect("finish")
    }

    /// Raw FROST part 1, 2 and 3 for participant #1.
    fn run_raw(&self) -> (KeyPackage, PublicKeyPackage) {
        let (s1, p1) =
            dkg::part1(id(1), self.n, self.t, rng(dkg_seed(self.t, self.n, 1))).expect("raw part1");
        black_box(p1);
        let (s2, p2) = dkg::part2(s1, &self.raw_round1).expect("raw part2");
        black_box(p2);
        dkg::part3(&s2, &self.raw_round1, &self.raw_round2).expect("raw part3")
    }
}

fn bench_dkg(c: &mut Bench, t: u16, n: u16) {
    let fixture = OnceCell::new();
    let get = || fixture.get_or_init(|| DkgFixture::new(t, n));
    let mut group = c.benchmark_group(format!("dkg/{}", label(t, n)));
    configure(&mut group, 10, true);
    group.bench_function("custody", |b| {
        let f = get();
        b.iter(|| f.run_ours());
    });
    group.bench_function("raw-frost", |b| {
        let f = get();
        b.iter(|| f.run_raw());
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------
// Signing
// ---------------------------------------------------------------------------------------

/// A dealer key, signers 1..=t with one issued commitment each, the request, and the
/// same inputs in raw FROST form.
struct SignFixture {
    group: GroupKey,
    signers: Vec<u16>,
    shares: Vec<KeyShare>,
    seeds: Vec<NonceSeed>,
    /// The coordinator's pool before the request was built.
    pool: CommitmentPool,
    request: SigningRequest,
    responses: Vec<SignatureShares>,
    // Raw FROST.
    raw_signing_share: SigningShare,
    raw_commitments: BTreeMap<Identifier, SigningCommitments>,
    raw_package: SigningPackage,
    raw_nonces: Vec<SigningNonces>,
    raw_key_packages: Vec<KeyPackage>,
    raw_public: PublicKeyPackage,
    raw_shares: BTreeMap<Identifier, SignatureShare>,
    // Raw FROST as an HD one-trip signer and coordinator must run it (`raw-frost-hd`).
    secp: Secp256k1<VerifyOnly>,
    root_xpub: Xpub,
    steps: Vec<ChildNumber>,
    /// The signers' root (underived) key packages.
    raw_root_key_packages: Vec<KeyPackage>,
    /// The group's root public key package.
    raw_root_public: PublicKeyPackage,
    /// Each signer's nonces as it stored them when it issued the commitment.
    raw_stored_nonces: Vec<Vec<u8>>,
}

fn item() -> ItemSpec {
    ItemSpec {
        message: MESSAGE.to_vec(),
        path: PATH.to_vec(),
        tweak: TweakMode::KeyPath,
    }
}

/// A nonce store in the state a device is in after issuing counter 0 and before signing.
fn store_with_counter_zero() -> MemoryNonceStore {
    let mut store = MemoryNonceStore::new();
    store.issue(1).expect("memory store");
    store
}

/// The nonces `NonceSeed` derives for `counter` (H3 of seed, group key, index, counter and
/// a 0/1 byte); setup checks the result against the commitments our code issued.
fn derive_nonces(seed: &NonceSeed, share: &KeyShare, counter: u64) -> SigningNonces {
    let group_key = share.group().public_key();
    let index = share.index().to_be_bytes();
    let ctr = counter.to_be_bytes();
    let derive = |which: u8| {
        let input = [
            seed.expose_secret().as_slice(),
            &group_key[..],
            &index[..],
            &ctr[..],
            &[which][..],
        ]
        .concat();
        frost_core::round1::Nonce::<frost::Secp256K1Sha256TR>::from_scalar(
            frost::Secp256K1Sha256TR::H3(&input),
        )
    };
    SigningNonces::from_nonces(derive(0), derive(1))
}

/// BIP32 CKDpub along `steps` with the `bitcoin` crate, as an HD signer or coordinator built
/// on raw FROST derives: one HMAC-SHA512 (`ckd_pub_tweak`) and one libsecp256k1 tweak-add
/// per step. Returns the child key as a FROST verifying key and the summed tweak `Σ I_L`.
fn raw_derive(
    secp: &Secp256k1<VerifyOnly>,
    root: &Xpub,
    steps: &[ChildNumber],
) -> (VerifyingKey, k256::Scalar) {
    let mut xpub = *root;
    let mut tweak = k256::Scalar::ZERO;
    for step in steps {
        let (i_l, chain_code) = xpub.ckd_pub_tweak(*step).expect("normal step");
        xpub.public_key = xpub
            .public_key
            .add_exp_tweak(secp, &i_l.into())
            .expect("valid child");
        xpub.chain_code = chain_code;
        tweak += Option::<k256::Scalar>::from(k256::Scalar::from_repr(i_l.secret_bytes().into()))
            .expect("I_L below the order");
    }
    let key = VerifyingKey::deserialize(&xpub.public_key.serialize()).expect("valid child key");
    (key, tweak)
}

/// Raw FROST's key package for the child: the share plus the tweak; the verifying parts
/// moved by the child key minus the root key (no further multiplication).
fn raw_child_key_package(
    root: &KeyPackage,
    child: VerifyingKey,
    tweak: k256::Scalar,
) -> KeyPackage {
    let shift = child.to_element() - root.verifying_key().to_element();
    KeyPackage::new(
        *root.identifier(),
        SigningShare::new(root.signing_share().to_scalar() + tweak),
        VerifyingShare::new(root.verifying_share().to_element() + shift),
        child,
        *root.min_signers(),
    )
}

/// Raw FROST's public key package for the child, built the same way.
fn raw_child_public(root: &PublicKeyPackage, child: VerifyingKey) -> PublicKeyPackage {
    let shift = child.to_element() - root.verifying_key().to_element();
    let shares = root
        .verifying_shares()
        .iter()
        .map(|(i, vs)| (*i, VerifyingShare::new(vs.to_element() + shift)))
        .collect();
    PublicKeyPackage::new(shares, child, root.min_signers())
}

impl SignFixture {
    fn new(t: u16, n: u16) -> Self {
        let mut r = rng(0x5167 + u64::from(n));
        let (group, all_shares) =
            generate_with_dealer(Network::Regtest, t, n, &mut r).expect("dealer");
        let signers: Vec<u16> = (1..=t).collect();
        let shares: Vec<KeyShare> = all_shares
            .into_iter()
            .filter(|s| signers.contains(&s.index()))
            .collect();
        let seeds: Vec<NonceSeed> = shares.iter().map(|_| NonceSeed::generate(&mut r)).collect();
        let mut pool = CommitmentPool::new(&group);
        for (share, seed) in shares.iter().zip(&seeds) {
            let mut store = MemoryNonceStore::new();
            let batch = issue_commitments(share, seed, &mut store, 1).expect("issue");
            pool.add_batch(&batch).expect("same group");
        }
        let request =
            SigningRequest::build(SESSION, &group, &signers, vec![item()], &mut pool.clone())
                .expect("request");
        let responses: Vec<SignatureShares> = shares
            .iter()
            .zip(&seeds)
            .map(|(share, seed)| {
                sign_request(share, seed, &mut store_with_counter_zero(), &request).expect("sign")
            })
            .collect();
        let signature = aggregate(&group, &request, &responses).expect("aggregate");

        // Raw FROST: the BIP32-derived key packages (share + tweak, as `KeyShare::derive`
        // does), the same nonces, the same signing package.
        let steps: Vec<ChildNumber> = PATH
            .iter()
            .map(|i| ChildNumber::from_normal_idx(*i).expect("normal index"))
            .collect();
        let (_, tweak) = bip32::derive_public(&group.xpub(), &steps).expect("derive");
        let tweak = SigningShare::deserialize(&tweak).expect("tweak is a scalar");
        let derived = group.derive(&PATH).expect("derive");
        let raw_public = derived.public_key_package().clone();
        let raw_commitments: BTreeMap<Identifier, SigningCommitments> = request.items()[0]
            .commitments
            .iter()
            .map(|(s, (_, c))| (id(*s), *c))
            .collect();
        let raw_package = SigningPackage::new(raw_commitments.clone(), &MESSAGE);
        let mut raw_nonces = Vec::new();
        let mut raw_key_packages = Vec::new();
        let mut raw_shares = BTreeMap::new();
        for ((share, seed), response) in shares.iter().zip(&seeds).zip(&responses) {
            let nonces = derive_nonces(seed, share, 0);
            assert_eq!(
                nonces.commitments(),
                &raw_commitments[&id(share.index())],
                "nonce derivation matches NonceSeed"
            );
            let secret = SigningShare::deserialize(&secret_share_bytes(share)).expect("share");
            let derived_secret = SigningShare::new(secret.to_scalar() + tweak.to_scalar());
            let verifying = raw_public.verifying_shares()[&id(share.index())];
            assert_eq!(VerifyingShare::from(derived_secret), verifying);
            let key_package = KeyPackage::new(
                id(share.index()),
                derived_secret,
                verifying,
                *raw_public.verifying_key(),
                t,
            );
            let sig_share =
                frost::round2::sign_with_tweak(&raw_package, &nonces, &key_package, None)
                    .expect("raw sign");
            assert_eq!(
                &sig_share.serialize()[..],
                &response.shares[0][..],
                "raw and ours compute the same signature share"
            );
            raw_shares.insert(id(share.index()), sig_share);
            raw_nonces.push(nonces);
            raw_key_packages.push(key_package);
        }
        let raw_signature =
            frost::aggregate_with_tweak(&raw_package, &raw_shares, &raw_public, None)
                .expect("raw aggregate");
        assert_eq!(
            &raw_signature.serialize().expect("signature")[..],
            &signature[0][..],
            "raw and ours compute the same signature"
        );
        let raw_signing_share =
            SigningShare::deserialize(&secret_share_bytes(&shares[0])).expect("share");

        // Raw FROST as an HD one-trip signer and coordinator: nonces stored as bytes, keys
        // derived per request from the root.
        let secp = Secp256k1::verification_only();
        let root_xpub = group.xpub();
        let raw_root_public = group.public_key_package().clone();
        let raw_root_key_packages: Vec<KeyPackage> = shares
            .iter()
            .map(|share| {
                let secret = SigningShare::deserialize(&secret_share_bytes(share)).expect("share");
                KeyPackage::new(
                    id(share.index()),
                    secret,
                    raw_root_public.verifying_shares()[&id(share.index())],
                    *raw_root_public.verifying_key(),
                    t,
                )
            })
            .collect();
        let raw_stored_nonces: Vec<Vec<u8>> = raw_nonces
            .iter()
            .map(|n| n.serialize().expect("nonces serialize"))
            .collect();
        let (child, child_tweak) = raw_derive(&secp, &group.xpub(), &steps);
        assert_eq!(&child, raw_public.verifying_key(), "same child key");
        for (k, root) in raw_root_key_packages.iter().enumerate() {
            let kp = raw_child_key_package(root, child, child_tweak);
            assert_eq!(kp, raw_key_packages[k], "same child key package");
        }
        assert_eq!(
            raw_child_public(&raw_root_public, child),
            raw_public,
            "same child public key package"
        );

        let fixture = SignFixture {
            group,
            signers,
            shares,
            seeds,
            pool,
            request,
            responses,
            raw_signing_share,
            raw_commitments,
            raw_package,
            raw_nonces,
            raw_key_packages,
            raw_public,
            raw_shares,
            secp,
            root_xpub,
            steps,
            raw_root_key_packages,
            raw_root_public,
            raw_stored_nonces,
        };
        for (k, response) in fixture.responses.iter().enumerate() {
            assert_eq!(
                &fixture.raw_hd_sign(k).serialize()[..],
                &response.shares[0][..],
                "raw HD and ours compute the same signature share"
            );
        }
        assert_eq!(
            fixture.raw_hd_aggregate(&fixture.raw_package, &fixture.raw_shares),
            signature[0],
            "raw HD and ours compute the same signature"
        );
        fixture
    }

    /// Raw FROST as a one-trip HD signer must sign: load the nonces it stored when it issued
    /// the commitment, derive the key package for the request's path, sign.
    fn raw_hd_sign(&self, signer: usize) -> SignatureShare {
        let nonces =
            SigningNonces::deserialize(&self.raw_stored_nonces[signer]).expect("stored nonces");
        let (child, tweak) = raw_derive(&self.secp, &self.root_xpub, &self.steps);
        let key_package = raw_child_key_package(&self.raw_root_key_packages[signer], child, tweak);
        frost::round2::sign_with_tweak(&self.raw_package, &nonces, &key_package, None)
            .expect("sign")
    }

    /// Raw FROST as an HD coordinator must aggregate: derive the public key package for the
    /// path, aggregate, encode the signature for the witness.
    fn raw_hd_aggregate(
        &self,
        package: &SigningPackage,
        shares: &BTreeMap<Identifier, SignatureShare>,
    ) -> [u8; 64] {
        let (child, _) = raw_derive(&self.secp, &self.root_xpub, &self.steps);
        let public = raw_child_public(&self.raw_root_public, child);
        frost::aggregate_with_tweak(package, shares, &public, None)
            .expect("aggregate")
            .serialize()
            .expect("signature")
            .try_into()
            .expect("64 bytes")
    }

    /// Raw HD, end to end from issued commitments: build the signing package, every signer
    /// loads its nonces, derives and signs, the coordinator derives and aggregates.
    fn end_to_end_raw_hd(&self) -> [u8; 64] {
        let package = SigningPackage::new(self.raw_commitments.clone(), &MESSAGE);
        let shares: BTreeMap<Identifier, SignatureShare> = (0..self.raw_root_key_packages.len())
            .map(|k| {
                let nonces =
                    SigningNonces::deserialize(&self.raw_stored_nonces[k]).expect("stored nonces");
                let (child, tweak) = raw_derive(&self.secp, &self.root_xpub, &self.steps);
                let root = &self.raw_root_key_packages[k];
                let key_package = raw_child_key_package(root, child, tweak);
                let share = frost::round2::sign_with_tweak(&package, &nonces, &key_package, None)
                    .expect("sign");
                (*root.identifier(), share)
            })
            .collect();
        self.raw_hd_aggregate(&package, &shares)
    }

    /// Ours, end to end from issued commitments: build the request from the pool, every
    /// signer signs, the coordinator aggregates.
    fn end_to_end_ours(
        &self,
        mut pool: CommitmentPool,
        mut stores: Vec<MemoryNonceStore>,
    ) -> [u8; 64] {
        let request =
            SigningRequest::build(SESSION, &self.group, &self.signers, vec![item()], &mut pool)
                .expect("request");
        let responses: Vec<SignatureShares> = self
            .shares
            .iter()
            .zip(&self.seeds)
            .zip(stores.iter_mut())
            .map(|((share, seed), store)| sign_request(share, seed, store, &request).expect("sign"))
            .collect();
        aggregate(&self.group, &request, &responses).expect("aggregate")[0]
    }

    /// Raw, end to end from issued commitments: build the signing package, every signer
    /// signs, the coordinator aggregates.
    fn end_to_end_raw(&self) -> frost::Signature {
        let package = SigningPackage::new(self.raw_commitments.clone(), &MESSAGE);
        let shares: BTreeMap<Identifier, SignatureShare> = self
            .raw_nonces
            .iter()
            .zip(&self.raw_key_packages)
            .map(|(nonces, kp)| {
                let share =
                    frost::round2::sign_with_tweak(&package, nonces, kp, None).expect("sign");
                (*kp.identifier(), share)
            })
            .collect();
        frost::aggregate_with_tweak(&package, &shares, &self.raw_public, None).expect("aggregate")
    }
}

fn bench_signing(c: &mut Bench, t: u16, n: u16) {
    let fixture = OnceCell::new();
    let get = || fixture.get_or_init(|| SignFixture::new(t, n));
    let large = t > 10;

    let mut group = c.benchmark_group(format!("commitments-x{BATCH}/{}", label(t, n)));
    configure(&mut group, 20, false);
    group.bench_function("custody", |b| {
        let f = get();
        b.iter(|| {
            let mut store = MemoryNonceStore::new();
            issue_commitments(&f.shares[0], &f.seeds[0], &mut store, BATCH).expect("issue")
        });
    });
    group.bench_function("raw-frost", |b| {
        let f = get();
        let mut r = rng(0xc0);
        b.iter(|| {
            (0..BATCH)
                .map(|_| frost::round1::commit(&f.raw_signing_share, &mut r))
                .collect::<Vec<_>>()
        });
    });
    group.finish();

    let mut group = c.benchmark_group(format!("sign/{}", label(t, n)));
    configure(&mut group, if large { 20 } else { 50 }, false);
    group.bench_function("custody", |b| {
        let f = get();
        b.iter_batched(
            store_with_counter_zero,
            |mut store| {
                sign_request(&f.shares[0], &f.seeds[0], &mut store, &f.request).expect("sign")
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("raw-frost", |b| {
        let f = get();
        b.iter(|| {
            frost::round2::sign_with_tweak(
                &f.raw_package,
                &f.raw_nonces[0],
                &f.raw_key_packages[0],
                None,
            )
            .expect("sign")
        });
    });
    group.bench_function("raw-frost-hd", |b| {
        let f = get();
        b.iter(|| f.raw_hd_sign(0));
    });
    group.finish();

    let mut group = c.benchmark_group(format!("aggregate/{}", label(t, n)));
    configure(&mut group, if large { 20 } else { 50 }, false);
    group.bench_function("custody", |b| {
        let f = get();
        b.iter(|| aggregate(&f.group, &f.request, &f.responses).expect("aggregate"));
    });
    group.bench_function("raw-frost", |b| {
        let f = get();
        b.iter(|| {
            frost::aggregate_with_tweak(&f.raw_package, &f.raw_shares, &f.raw_public, None)
                .expect("aggregate")
        });
    });
    group.bench_function("raw-frost-hd", |b| {
        let f = get();
        b.iter(|| f.raw_hd_aggregate(&f.raw_package, &f.raw_shares));
    });
    group.finish();

    let mut group = c.benchmark_group(format!("end-to-end/{}", label(t, n)));
    if large {
        configure(&mut group, 10, true);
    } else {
        configure(&mut group, 20, false);
    }
    group.bench_function("custody", |b| {
        let f = get();
        b.iter_batched(
            || {
                (
                    f.pool.clone(),
                    f.signers
                        .iter()
                        .map(|_| store_with_counter_zero())
                        .collect(),
                )
            },
            |(pool, stores)| f.end_to_end_ours(pool, stores),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("raw-frost", |b| {
        let f = get();
        b.iter(|| f.end_to_end_raw());
    });
    group.bench_function("raw-frost-hd", |b| {
        let f = get();
        b.iter(|| f.end_to_end_raw_hd());
    });
    group.finish();

    // The end-to-end functions agree with each other (checked once, after timing).
    if let Some(f) = fixture.get() {
        let stores = f
            .signers
            .iter()
            .map(|_| store_with_counter_zero())
            .collect();
        let ours = f.end_to_end_ours(f.pool.clone(), stores);
        let raw = f.end_to_end_raw();
        assert_eq!(&ours[..], &raw.serialize().expect("signature")[..]);
        assert_eq!(ours, f.end_to_end_raw_hd());
    }
}

fn benches(c: &mut Bench) {
    for (t, n) in SIZES {
        bench_dkg(c, t, n);
        bench_signing(c, t, n);
    }
}

fn config() -> Bench {
    Criterion::default()
        .with_measurement(BenchClock::from_env())
        .warm_up_time(Duration::from_secs(1))
}

criterion_group! {
    name = threshold;
    config = config();
    targets = benches
}

// ---------------------------------------------------------------------------------------
// Interleaved overhead
// ---------------------------------------------------------------------------------------

/// Median and quartiles of `values` (sorted in place).
fn quartiles(values: &mut [f64]) -> [f64; 3] {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    [at(0.25), at(0.5), at(0.75)]
}

/// `BENCH_INTERLEAVED=<rounds>`: the overhead of `sign` and `aggregate` at every size,
/// measured so that load from other processes cannot favour either side. Each round runs a
/// short burst of every function in turn (thread CPU time; 10 rounds of warm-up first), and
/// each overhead is the median over rounds of that round's ratio. Separate criterion
/// groups run seconds apart, so a build starting between them moves their ratio by tens of
/// points; here both sides of a ratio see the same load.
#[allow(clippy::print_stdout)] // The report is this mode's output.
fn interleaved(rounds: usize) {
    let clock = BenchClock {
        wall_clock: false,
        wall: WallTime,
    };
    for (t, n) in SIZES {
        let f = SignFixture::new(t, n);
        let burst = match t {
            2 => 40,
            7 => 20,
            _ => 4,
        };
        type Timed<'a> = (&'static str, Box<dyn FnMut() + 'a>);
        let mut functions: Vec<Timed<'_>> = vec![
            (
                "sign/custody",
                Box::new(|| {
                    let mut stores: Vec<_> =
                        (0..burst).map(|_| store_with_counter_zero()).collect();
                    let start = clock.start();
                    for store in &mut stores {
                        black_box(
                            sign_request(&f.shares[0], &f.seeds[0], store, &f.request)
                                .expect("sign"),
                        );
                    }
                    SPENT.set(clock.end(start));
                }),
            ),
            (
                "sign/raw-frost",
                Box::new(|| {
                    let start = clock.start();
                    for _ in 0..burst {
                        black_box(
                            frost::round2::sign_with_tweak(
                                &f.raw_package,
                                &f.raw_nonces[0],
                                &f.raw_key_packages[0],
                                None,
                            )
                            .expect("sign"),
                        );
                    }
                    SPENT.set(clock.end(start));
                }),
            ),
            (
                "sign/raw-frost-hd",
                Box::new(|| {
                    let start = clock.start();
                    for _ in 0..burst {
                        black_box(f.raw_hd_sign(0));
                    }
                    SPENT.set(clock.end(start));
                }),
            ),
            (
                "aggregate/custody",
                Box::new(|| {
                    let start = clock.start();
                    for _ in 0..burst {
                        black_box(
                            aggregate(&f.group, &f.request, &f.responses).expect("aggregate"),
                        );
                    }
                    SPENT.set(clock.end(start));
                }),
            ),
            (
                "aggregate/raw-frost",
                Box::new(|| {
                    let start = clock.start();
                    for _ in 0..burst {
                        black_box(
                            frost::aggregate_with_tweak(
                                &f.raw_package,
                                &f.raw_shares,
                                &f.raw_public,
                                None,
                            )
                            .expect("aggregate"),
                        );
                    }
                    SPENT.set(clock.end(start));
                }),
            ),
            (
                "aggregate/raw-frost-hd",
                Box::new(|| {
                    let start = clock.start();
                    for _ in 0..burst {
                        black_box(f.raw_hd_aggregate(&f.raw_package, &f.raw_shares));
                    }
                    SPENT.set(clock.end(start));
                }),
            ),
        ];
        let mut times = vec![Vec::with_capacity(rounds); functions.len()];
        for round in 0..rounds + 10 {
            for (k, (_, run)) in functions.iter_mut().enumerate() {
                run();
                if round >= 10 {
                    times[k].push(SPENT.get().as_secs_f64() * 1e6 / f64::from(burst));
                }
            }
        }
        for base in [0, 3] {
            let (name, _) = functions[base];
            let op = name.split('/').next().unwrap_or(name);
            let [_, ours, _] = quartiles(&mut times[base].clone());
            let mut line = format!("interleaved/{op}/{}: custody {ours:.1} µs", label(t, n));
            for raw in [base + 1, base + 2] {
                let mut ratios: Vec<f64> = times[base]
                    .iter()
                    .zip(&times[raw])
                    .map(|(a, b)| (a / b - 1.0) * 100.0)
                    .collect();
                let [q1, median, q3] = quartiles(&mut ratios);
                let [_, theirs, _] = quartiles(&mut times[raw].clone());
                let raw_name = functions[raw].0.split('/').nth(1).unwrap_or("raw");
                line += &format!(
                    "; {raw_name} {theirs:.1} µs, overhead {median:+.1}% (quartiles {q1:+.1}% to {q3:+.1}%)"
                );
            }
            println!("{line} [{rounds} rounds of {burst}]");
        }
    }
}

thread_local! {
    /// The time the last burst took.
    static SPENT: std::cell::Cell<Duration> = const { std::cell::Cell::new(Duration::ZERO) };
}

fn main() {
    match std::env::var("BENCH_INTERLEAVED") {
        Ok(rounds) => interleaved(
            rounds
                .parse()
                .expect("BENCH_INTERLEAVED is a number of rounds"),
        ),
        Err(_) => {
            threshold();
            Criterion::default().configure_from_args().final_summary();
        }
    }
}
