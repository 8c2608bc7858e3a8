//! Shared test fixtures: identities, plans, pre-generated primes and an in-memory
//! message router that plays the coordinator's role.
#![allow(dead_code)]

use custody_ecdsa::{
    AuxInfoSession, EcdsaCeremonyError, EcdsaCeremonyKind, EcdsaKeyShare, EcdsaMessage, EcdsaPlan,
    KeygenSession, MemoryPresignatureStore, PaillierPrimes, PresignSession, PresignatureStore,
};
use custody_threshold::Identity;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// Test-only Paillier primes, generated once with `examples/pregenerate_primes.rs`
/// (release build) and committed, because prime generation takes minutes per party in a
/// debug build. They are public: never use them for a real key.
const PRIMES: &str = include_str!("../data/paillier-primes.hex");

pub fn primes(i: usize) -> PaillierPrimes {
    let line = PRIMES
        .lines()
        .nth(i)
        .expect("tests/data/paillier-primes.hex has a line per party");
    PaillierPrimes::from_secret_bytes(&hex::decode(line.trim()).expect("hex"))
        .expect("committed primes decode")
}

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

pub const NAMES: [&str; 6] = ["alice", "bob", "carol", "dave", "erin", "mallory"];

pub fn identities(n: usize, rng: &mut ChaCha20Rng) -> Vec<Identity> {
    (0..n)
        .map(|i| Identity::generate(NAMES[i], rng).expect("valid name"))
        .collect()
}

pub fn key_plan(ids: &[Identity], t: u16, ceremony_id: [u8; 16], purpose: &str) -> EcdsaPlan {
    EcdsaPlan::new(
        ceremony_id,
        EcdsaCeremonyKind::Key,
        purpose,
        t,
        ids.iter().map(Identity::card).collect(),
    )
    .expect("valid plan")
}

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

/// What the router needs from a session.
pub trait Session {
    fn receive(
        &mut self,
        identity: &Identity,
        messages: &[EcdsaMessage],
        rng: &mut ChaCha20Rng,
    ) -> Result<Vec<EcdsaMessage>, EcdsaCeremonyError>;
    fn is_finished(&self) -> bool;
}

macro_rules! session {
    ($t:ty) => {
        impl Session for $t {
            fn receive(
                &mut self,
                identity: &Identity,
                messages: &[EcdsaMessage],
                rng: &mut ChaCha20Rng,
            ) -> Result<Vec<EcdsaMessage>, EcdsaCeremonyError> {
                <$t>::receive(self, identity, messages, rng)
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

/// Delivers every message to every party (as a coordinator copying a USB directory
/// would: each party sees everything and skips what is not for it) until all finish.
/// `parties` pairs a party's identity with its session; `first` holds the messages the
/// sessions returned from `start`. Returns how many trips it took.
pub fn run<S: Session>(
    parties: &mut [(&Identity, &mut S)],
    first: Vec<EcdsaMessage>,
    rng: &mut ChaCha20Rng,
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

/// Runs auxiliary info and key generation for `ids` and returns every key share.
pub fn generate_key(ids: &[Identity], t: u16, seed: u64) -> Vec<EcdsaKeyShare> {
    let mut rng = rng(seed);
    let plan = key_plan(ids, t, [seed as u8; 16], "cold wallet ETH");

    let mut first = Vec::new();
    let mut aux: Vec<AuxInfoSession> = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let (s, out) = AuxInfoSession::start(&plan, id, primes(i), &mut rng).expect("start aux");
        aux.push(s);
        first.extend(out);
    }
    {
        let mut parties: Vec<_> = ids.iter().zip(aux.iter_mut()).collect();
        run(&mut parties, first, &mut rng);
    }

    let mut first = Vec::new();
    let mut keygen: Vec<KeygenSession> = Vec::new();
    for id in ids {
        let (s, out) = KeygenSession::start(&plan, id, &mut rng).expect("start keygen");
        keygen.push(s);
        first.extend(out);
    }
    {
        let mut parties: Vec<_> = ids.iter().zip(keygen.iter_mut()).collect();
        run(&mut parties, first, &mut rng);
    }

    keygen
        .into_iter()
        .zip(aux)
        .map(|(k, a)| k.finish(a.finish().expect("aux done")).expect("key share"))
        .collect()
}

/// Runs a presigning ceremony among `signers` and returns one store per participant
/// (empty for non-signers).
pub fn presign(
    ids: &[Identity],
    shares: &[EcdsaKeyShare],
    plan: &EcdsaPlan,
    signers: &[u16],
    seed: u64,
) -> Vec<MemoryPresignatureStore> {
    let mut rng = rng(seed);
    let mut first = Vec::new();
    let mut sessions = Vec::new();
    for &s in signers {
        let i = usize::from(s - 1);
        let (sess, out) =
            PresignSession::start(plan, &ids[i], &shares[i], &mut rng).expect("start presign");
        sessions.push((i, sess));
        first.extend(out);
    }
    {
        let mut parties: Vec<_> = sessions.iter_mut().map(|(i, s)| (&ids[*i], s)).collect();
        run(&mut parties, first, &mut rng);
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
