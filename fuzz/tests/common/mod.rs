//! Real objects built with the library from fixed seeds, shared by the corpus and
//! negative-vector generators and the format-document check.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use custody_threshold::{
    aggregate, generate_with_dealer, issue_commitments, sign_request, CeremonyKind,
    CeremonyMessage, CeremonyPlan, CommitmentBatch, CommitmentPool, DkgCertificate, GroupKey,
    Identity, ItemSpec, KeyShare, Keygen, MemoryNonceStore, Network, NonceSeed, SignatureShares,
    SigningRequest, TweakMode,
};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// The seed every fixture object is drawn from.
pub const FIXTURE_SEED: u64 = 0x00c0_1290_2026;

/// The curve order n of secp256k1, big-endian.
pub const CURVE_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
    0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41,
];

/// Length of the common header: magic `CPTH`, version, type byte.
pub const HEADER: usize = 6;

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

pub fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn workspace_dir() -> PathBuf {
    fuzz_dir()
        .parent()
        .expect("fuzz/ has a parent")
        .to_path_buf()
}

pub fn negative_dir() -> PathBuf {
    workspace_dir().join("test-vectors").join("negative")
}

/// Every object the generators need, from one deterministic run: three identities, a 2-of-3
/// DKG run message by message (so the ceremony messages are kept), commitments, a signing
/// request with one item per tweak mode, its signature shares, and a 3-of-5 dealer key.
///
/// Everything is reproducible from [`FIXTURE_SEED`] except the age ciphertexts inside
/// the DKG round-2 messages (age draws its own randomness).
pub struct Fixture {
    pub identities: Vec<Identity>,
    pub plan: CeremonyPlan,
    pub refresh_plan: CeremonyPlan,
    pub repair_plan: CeremonyPlan,
    pub round1: Vec<CeremonyMessage>,
    pub round2: Vec<CeremonyMessage>,
    pub certificates: Vec<CeremonyMessage>,
    pub certificate: DkgCertificate,
    pub shares: Vec<KeyShare>,
    pub group: GroupKey,
    pub seeds: Vec<NonceSeed>,
    pub batches: Vec<CommitmentBatch>,
    pub request: SigningRequest,
    pub responses: Vec<SignatureShares>,
    /// A one-commitment batch from participant 2, for the worked example.
    pub small_batch: CommitmentBatch,
    pub dealer_group: GroupKey,
    pub dealer_shares: Vec<KeyShare>,
}

pub fn message(i: u8) -> Vec<u8> {
    let mut m = [0u8; 32];
    m[0] = i;
    m[31] = 0xa5;
    m.to_vec()
}

pub fn items() -> Vec<ItemSpec> {
    vec![
        ItemSpec {
            message: message(1),
            path: vec![],
            tweak: TweakMode::Untweaked,
        },
        ItemSpec {
            message: message(2),
            path: vec![0, 5],
            tweak: TweakMode::KeyPath,
        },
        ItemSpec {
            message: message(3),
            path: vec![1, 2],
            tweak: TweakMode::ScriptRoot([7u8; 32]),
        },
    ]
}

impl Fixture {
    pub fn build() -> Self {
        let mut r = rng(FIXTURE_SEED);
        let identities: Vec<Identity> = ["alice", "bob", "carol"]
            .iter()
            .map(|name| Identity::generate(name, &mut r).expect("valid name"))
            .collect();
        let cards: Vec<_> = identities.iter().map(Identity::card).collect();
        let plan = CeremonyPlan::new(
            [0x11; 16],
            CeremonyKind::Dkg,
            Network::Regtest,
            "fuzz corpus wallet",
            2,
            cards.clone(),
        )
        .expect("valid plan");

        // The DKG, step by step as `drill::run_keygen` runs it, keeping every message.
        let mut states = Vec::new();
        let mut round1 = Vec::new();
        for id in &identities {
            let (state, msg) = Keygen::start_dkg(&plan, id, &mut r).expect("round 1");
            states.push(state);
            round1.push(msg);
        }
        let mut states2 = Vec::new();
        let mut round2 = Vec::new();
        for (state, id) in states.into_iter().zip(&identities) {
            let (state, msgs) = state.receive_round1(id, &round1, &mut r).expect("round 2");
            states2.push(state);
            round2.extend(msgs);
        }
        let mut states3 = Vec::new();
        let mut certificates = Vec::new();
        for (state, id) in states2.into_iter().zip(&identities) {
            let (state, cert) = state
                .receive_round2(id, &round2, &mut r)
                .expect("certificate");
            states3.push(state);
            certificates.push(cert);
        }
        let shares: Vec<KeyShare> = states3
            .into_iter()
            .zip(&identities)
            .map(|(state, id)| state.finish(id, &certificates).expect("finish").share)
            .collect();
        let certificate =
            DkgCertificate::decode(certificates[0].payload()).expect("certificate body decodes");
        let group = shares[0].group().clone();

        let refresh_plan = CeremonyPlan::new(
            [0x33; 16],
            CeremonyKind::Refresh {
                group_key: group.public_key(),
            },
            Network::Regtest,
            "yearly refresh",
            2,
            cards.clone(),
        )
        .expect("valid refresh plan");
        let repair_plan = CeremonyPlan::new(
            [0x44; 16],
            CeremonyKind::Repair {
                group_key: group.public_key(),
                lost: 2,
                helpers: vec![1, 3],
            },
            Network::Bitcoin,
            "repair of bob's share",
            2,
            cards,
        )
        .expect("valid repair plan");

        // One-trip signing: batches, request, shares, aggregate.
        let seeds: Vec<NonceSeed> = (0..3).map(|_| NonceSeed::generate(&mut r)).collect();
        let mut stores: Vec<MemoryNonceStore> = (0..3).map(|_| MemoryNonceStore::new()).collect();
        let mut pool = CommitmentPool::new(&group);
        let mut batches = Vec::new();
        for i in 0..3 {
            let batch = issue_commitments(&shares[i], &seeds[i], &mut stores[i], 3).expect("issue");
            pool.add_batch(&batch).expect("same group");
            batches.push(batch);
        }
        let request = SigningRequest::build([0x22; 16], &group, &[1, 3], items(), &mut pool)
            .expect("build request");
        let responses: Vec<SignatureShares> = [0usize, 2]
            .iter()
            .map(|&i| sign_request(&shares[i], &seeds[i], &mut stores[i], &request).expect("sign"))
            .collect();
        aggregate(&group, &request, &responses).expect("the shares are real and aggregate");
        let small_batch =
            issue_commitments(&shares[1], &seeds[1], &mut stores[1], 1).expect("issue");

        let (dealer_group, dealer_shares) =
            generate_with_dealer(Network::Bitcoin, 3, 5, &mut r).expect("dealer");

        Fixture {
            identities,
            plan,
            refresh_plan,
            repair_plan,
            round1,
            round2,
            certificates,
            certificate,
            shares,
            group,
            seeds,
            batches,
            request,
            responses,
            small_batch,
            dealer_group,
            dealer_shares,
        }
    }
}

/// Replaces `bytes[at..at + new.len()]` with `new`.
pub fn patch(bytes: &[u8], at: usize, new: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[at..at + new.len()].copy_from_slice(new);
    out
}

/// Replaces `bytes[range]` with `new` (which may have another length).
pub fn splice(bytes: &[u8], range: std::ops::Range<usize>, new: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out.splice(range, new.iter().copied());
    out
}

/// The smallest x (counting up from 1) that is not the x coordinate of a secp256k1 point,
/// as libsecp256k1 sees it.
pub fn x_not_on_curve() -> [u8; 32] {
    use bitcoin::secp256k1::PublicKey;
    for i in 1u32.. {
        let mut p = [0u8; 33];
        p[0] = 0x02;
        p[29..33].copy_from_slice(&i.to_be_bytes());
        if PublicKey::from_slice(&p).is_err() {
            return p[1..].try_into().expect("32 bytes");
        }
    }
    unreachable!("about half of all x are not on the curve")
}

/// Lists the files in `dir`, sorted, skipping `README.md` and dotfiles.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name != "README.md" && !name.starts_with('.')
        })
        .collect();
    files.sort();
    files
}
