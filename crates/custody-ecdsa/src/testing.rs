//! Test fixtures for crates that need a threshold-ECDSA key in their tests (the
//! coordinator's Ethereum lifecycle, the signer): **public** Paillier primes and an
//! in-memory ceremony runner. Built only with the `testing` feature, which no shipped
//! binary enables.
//!
//! The primes were generated once with `examples/pregenerate_primes.rs` and committed,
//! because prime generation takes minutes per party in a debug build. Everyone can read
//! them: a key made with them protects nothing. Never use them outside tests.

use custody_threshold::Identity;
use rand_core::{CryptoRng, RngCore};

use crate::{
    AuxInfoSession, EcdsaCeremonyError, EcdsaCeremonyKind, EcdsaKeyShare, EcdsaMessage, EcdsaPlan,
    KeygenSession, MemoryPresignatureStore, PaillierPrimes, PresignSession, PresignatureStore,
};

const PRIMES: &str = include_str!("../tests/data/paillier-primes.hex");

/// How many parties the committed primes cover.
pub fn test_primes_count() -> usize {
    PRIMES.lines().filter(|l| !l.trim().is_empty()).count()
}

/// The committed public test primes of party `i` (0-based).
///
/// # Panics
/// When `i` is beyond [`test_primes_count`] (a test bug).
pub fn test_primes(i: usize) -> PaillierPrimes {
    let line = PRIMES
        .lines()
        .nth(i)
        .expect("tests/data/paillier-primes.hex has a line per party");
    PaillierPrimes::from_secret_bytes(&hex::decode(line.trim()).expect("hex"))
        .expect("committed primes decode")
}

/// A ceremony session the runner can drive.
pub trait Session {
    /// Feeds messages; returns what to send.
    ///
    /// # Errors
    /// The session's refusal.
    fn receive(
        &mut self,
        identity: &Identity,
        messages: &[EcdsaMessage],
        rng: &mut dyn RngCoreCrypto,
    ) -> Result<Vec<EcdsaMessage>, EcdsaCeremonyError>;
    /// Whether the session has its result.
    fn is_finished(&self) -> bool;
}

/// An object-safe cryptographic RNG.
pub trait RngCoreCrypto: RngCore + CryptoRng {}
impl<T: RngCore + CryptoRng> RngCoreCrypto for T {}

macro_rules! session {
    ($t:ty) => {
        impl Session for $t {
            fn receive(
                &mut self,
                identity: &Identity,
                messages: &[EcdsaMessage],
                mut rng: &mut dyn RngCoreCrypto,
            ) -> Result<Vec<EcdsaMessage>, EcdsaCeremonyError> {
                <$t>::receive(self, identity, messages, &mut rng)
            }
            fn is_finished(&self) -> bool {
                <$t>::is_finished(self)
            }
        }
    };
}
session!(AuxInfoSession);
session!(KeygenSession);
session!(PresignSession);

/// Delivers every message to every party (as an operator copying a USB directory would:
/// each party sees everything and skips what is not for it) until all finish. Returns
/// how many trips it took.
///
/// # Panics
/// When a session refuses or the ceremony takes more than 12 trips (a test failure).
pub fn run<S: Session>(
    parties: &mut [(&Identity, &mut S)],
    first: Vec<EcdsaMessage>,
    rng: &mut dyn RngCoreCrypto,
) -> usize {
    let mut pending = first;
    let mut trips = 0;
    while !parties.iter().all(|(_, s)| s.is_finished()) {
        trips += 1;
        assert!(trips <= 12, "ceremony did not finish in 12 trips");
        let mut next = Vec::new();
        for (id, s) in parties.iter_mut() {
            let out = s.receive(id, &pending, rng).expect("honest ceremony");
            next.extend(out);
        }
        pending = next;
    }
    trips
}

/// Runs auxiliary info (with the test primes) and key generation under `plan` (a key
/// plan listing `ids` in order) and returns every key share.
///
/// # Panics
/// On any ceremony failure (a test failure).
pub fn generate_key<R: RngCore + CryptoRng>(
    plan: &EcdsaPlan,
    ids: &[Identity],
    rng: &mut R,
) -> Vec<EcdsaKeyShare> {
    let mut first = Vec::new();
    let mut aux: Vec<AuxInfoSession> = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let (s, out) = AuxInfoSession::start(plan, id, test_primes(i), rng).expect("start aux");
        aux.push(s);
        first.extend(out);
    }
    {
        let mut parties: Vec<_> = ids.iter().zip(aux.iter_mut()).collect();
        run(&mut parties, first, rng);
    }
    let mut first = Vec::new();
    let mut keygen: Vec<KeygenSession> = Vec::new();
    for id in ids {
        let (s, out) = KeygenSession::start(plan, id, rng).expect("start keygen");
        keygen.push(s);
        first.extend(out);
    }
    {
        let mut parties: Vec<_> = ids.iter().zip(keygen.iter_mut()).collect();
        run(&mut parties, first, rng);
    }
    keygen
        .into_iter()
        .zip(aux)
        .map(|(k, a)| k.finish(a.finish().expect("aux done")).expect("key share"))
        .collect()
}

/// A presigning plan for `signers` (plan indexes) making `count` presignatures.
///
/// # Panics
/// On an invalid plan (a test bug).
pub fn presign_plan(
    ids: &[Identity],
    share: &EcdsaKeyShare,
    signers: &[u16],
    count: u16,
    batch: [u8; 16],
) -> EcdsaPlan {
    EcdsaPlan::new(
        batch,
        EcdsaCeremonyKind::Presign {
            group_key: *share.group_key().compressed(),
            signers: signers.to_vec(),
            count,
        },
        "presignatures for withdrawals",
        share.threshold(),
        ids.iter().map(Identity::card).collect(),
    )
    .expect("valid presign plan")
}

/// Runs a presigning ceremony among `plan`'s signers and returns one in-memory store per
/// participant (empty for non-signers).
///
/// # Panics
/// On any ceremony failure (a test failure).
pub fn presign<R: RngCore + CryptoRng>(
    ids: &[Identity],
    shares: &[EcdsaKeyShare],
    plan: &EcdsaPlan,
    rng: &mut R,
) -> Vec<MemoryPresignatureStore> {
    let EcdsaCeremonyKind::Presign { signers, .. } = plan.kind() else {
        panic!("presign needs a presigning plan");
    };
    let mut first = Vec::new();
    let mut sessions = Vec::new();
    for &s in signers {
        let i = usize::from(s - 1);
        let (sess, out) =
            PresignSession::start(plan, &ids[i], &shares[i], rng).expect("start presign");
        sessions.push((i, sess));
        first.extend(out);
    }
    {
        let mut parties: Vec<_> = sessions.iter_mut().map(|(i, s)| (&ids[*i], s)).collect();
        run(&mut parties, first, rng);
    }
    let mut stores: Vec<MemoryPresignatureStore> = (0..ids.len())
        .map(|_| MemoryPresignatureStore::new())
        .collect();
    for (i, s) in sessions {
        stores[i]
            .insert(s.finish().expect("presign done"))
            .expect("fresh presignatures");
    }
    stores
}
