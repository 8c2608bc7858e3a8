//! Shared helpers for the integration tests.
#![allow(dead_code)]

use bitcoin::bip32::{ChildNumber, Xpub};
use bitcoin::key::TapTweak;
use bitcoin::secp256k1::{schnorr, Message, Secp256k1, XOnlyPublicKey};
use bitcoin::taproot::TapNodeHash;
use custody_threshold::{
    aggregate, drill, issue_commitments, sign_request, CeremonyKind, CeremonyPlan, CommitmentPool,
    GroupKey, Identity, ItemSpec, KeyShare, KeygenOutput, MemoryNonceStore, Network, NonceSeed,
    SigningRequest, TweakMode,
};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

pub const NAMES: [&str; 10] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
];

pub fn identities(n: usize, rng: &mut ChaCha20Rng) -> Vec<Identity> {
    (0..n)
        .map(|i| {
            let name = NAMES
                .get(i)
                .map_or_else(|| format!("p{i}"), |s| s.to_string());
            Identity::generate(&name, rng).expect("valid name")
        })
        .collect()
}

pub fn plan(kind: CeremonyKind, t: u16, ids: &[Identity], id_byte: u8) -> CeremonyPlan {
    CeremonyPlan::new(
        [id_byte; 16],
        kind,
        Network::Regtest,
        "integration test wallet",
        t,
        ids.iter().map(Identity::card).collect(),
    )
    .expect("valid plan")
}

pub fn dkg(t: u16, n: usize, seed: u64) -> (Vec<Identity>, Vec<KeygenOutput>) {
    let mut r = rng(seed);
    let ids = identities(n, &mut r);
    let p = plan(CeremonyKind::Dkg, t, &ids, 1);
    let out = drill::run_keygen(&p, &ids, None, &mut r).expect("honest DKG succeeds");
    (ids, out)
}

/// A signer's device: its share, nonce seed and nonce store.
pub struct Device {
    pub share: KeyShare,
    pub seed: NonceSeed,
    pub store: MemoryNonceStore,
}

pub fn devices(shares: Vec<KeyShare>, rng: &mut ChaCha20Rng) -> Vec<Device> {
    shares
        .into_iter()
        .map(|share| Device {
            share,
            seed: NonceSeed::generate(rng),
            store: MemoryNonceStore::new(),
        })
        .collect()
}

/// Fills a pool with `count` commitments from each device.
pub fn pool(group: &GroupKey, devices: &mut [Device], count: usize) -> CommitmentPool {
    let mut pool = CommitmentPool::new(group);
    for d in devices.iter_mut() {
        let batch = issue_commitments(&d.share, &d.seed, &mut d.store, count).expect("issue");
        pool.add_batch(&batch).expect("same group");
    }
    pool
}

/// Signs `items` with the devices whose index is in `signers` and returns the signatures.
pub fn sign_with(
    group: &GroupKey,
    devices: &mut [Device],
    signers: &[u16],
    items: Vec<ItemSpec>,
    session: u8,
) -> Vec<[u8; 64]> {
    let mut pool = pool(group, devices, items.len());
    let request =
        SigningRequest::build([session; 16], group, signers, items, &mut pool).expect("build");
    // The request crosses the air gap as bytes.
    let wire = request.encode();
    let received = SigningRequest::decode(&wire).expect("decode");
    let responses: Vec<_> = devices
        .iter_mut()
        .filter(|d| signers.contains(&d.share.index()))
        .map(|d| sign_request(&d.share, &d.seed, &mut d.store, &received).expect("sign"))
        .collect();
    aggregate(group, &request, &responses).expect("aggregate")
}

/// The output key for `path` and `tweak`, computed only with the `bitcoin` crate (BIP32
/// CKDpub and BIP341 tap tweak by libsecp256k1), independently of our code.
pub fn independent_output_key(group: &GroupKey, path: &[u32], tweak: &TweakMode) -> XOnlyPublicKey {
    let secp = Secp256k1::new();
    let xpub: Xpub = group
        .xpub()
        .to_string()
        .parse()
        .expect("xpub string parses");
    let steps: Vec<ChildNumber> = path
        .iter()
        .map(|i| ChildNumber::from_normal_idx(*i).expect("normal"))
        .collect();
    let child = xpub.derive_pub(&secp, &steps).expect("derive");
    let xonly = child.public_key.x_only_public_key().0;
    match tweak {
        TweakMode::Untweaked => xonly,
        TweakMode::KeyPath => xonly.tap_tweak(&secp, None).0.to_x_only_public_key(),
        TweakMode::ScriptRoot(root) => xonly
            .tap_tweak(&secp, Some(TapNodeHash::assume_hidden(*root)))
            .0
            .to_x_only_public_key(),
        _ => unreachable!("no other modes"),
    }
}

/// Verifies a BIP340 signature with libsecp256k1.
pub fn libsecp_verify(key: &XOnlyPublicKey, message: &[u8; 32], sig: &[u8; 64]) -> bool {
    let secp = Secp256k1::verification_only();
    let sig = schnorr::Signature::from_slice(sig).expect("64 bytes");
    secp.verify_schnorr(&sig, &Message::from_digest(*message), key)
        .is_ok()
}

pub fn msg(i: u8) -> [u8; 32] {
    let mut m = [0u8; 32];
    m[0] = i;
    m[31] = 0xa5;
    m
}
