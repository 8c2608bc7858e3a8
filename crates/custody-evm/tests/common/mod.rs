//! A 2-of-3 threshold-ECDSA group wallet (custody-ecdsa) for the integration tests, and
//! helpers to build and sign EIP-1559 transactions with custody-ethereum.
#![allow(dead_code)]

use std::sync::{Mutex, OnceLock};

use custody_ecdsa::{
    combine, sign_prehash, AuxInfoSession, EcdsaCeremonyError, EcdsaCeremonyKind, EcdsaKeyShare,
    EcdsaMessage, EcdsaPlan, KeygenSession, MemoryPresignatureStore, PaillierPrimes,
    PresignSession, PresignatureId, PresignatureStore,
};
use custody_ethereum::{Eip1559Fields, EthTransaction, SignedEthTransaction};
use custody_evm::{Address, Bytes, EvmBackend, U256};
use custody_threshold::Identity;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// Paillier primes pre-generated for custody-ecdsa's own tests (public test values, read
/// from that crate rather than duplicated): generating them takes minutes per party in a
/// debug build, and these tests are about the chain, not about prime generation.
const PRIMES: &str = include_str!("../../../custody-ecdsa/tests/data/paillier-primes.hex");

/// Presignatures made in one batch; every threshold-signed transaction in a test binary
/// spends one (seven today). Presigning is slow in a debug build, so keep this tight.
const PRESIGNATURES: u16 = 8;
/// The two of three key holders who sign.
const SIGNERS: [u16; 2] = [1, 3];

pub const ETHER: u128 = 1_000_000_000_000_000_000;

/// The group's key shares, identities, presigning plan and each signer's store.
pub struct GroupWallet {
    ids: Vec<Identity>,
    shares: Vec<EcdsaKeyShare>,
    plan: EcdsaPlan,
    stores: Vec<MemoryPresignatureStore>,
    next: u16,
    rng: ChaCha20Rng,
    address: Address,
}

/// Passes every party's output to every party (as a coordinator relaying a shared USB
/// directory does) until all sessions finish; bounded.
fn relay<S>(
    ids: &[&Identity],
    sessions: &mut [S],
    first: Vec<EcdsaMessage>,
    rng: &mut ChaCha20Rng,
    receive: impl Fn(
        &mut S,
        &Identity,
        &[EcdsaMessage],
        &mut ChaCha20Rng,
    ) -> Result<Vec<EcdsaMessage>, EcdsaCeremonyError>,
    finished: impl Fn(&S) -> bool,
) {
    let mut inbox = first;
    for _ in 0..12 {
        if sessions.iter().all(&finished) {
            return;
        }
        let mut outbox = Vec::new();
        for (id, session) in ids.iter().zip(sessions.iter_mut()) {
            outbox.extend(receive(session, id, &inbox, rng).expect("honest ceremony"));
        }
        inbox = outbox;
    }
    assert!(
        sessions.iter().all(finished),
        "ceremony did not finish in 12 trips"
    );
}

impl GroupWallet {
    fn create() -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(0xE7);
        let ids: Vec<Identity> = ["alice", "bob", "carol"]
            .iter()
            .map(|name| Identity::generate(name, &mut rng).expect("identity"))
            .collect();
        let cards = ids.iter().map(Identity::card).collect::<Vec<_>>();
        let key_plan = EcdsaPlan::new(
            [0xE7; 16],
            EcdsaCeremonyKind::Key,
            "test ETH wallet",
            2,
            cards.clone(),
        )
        .expect("key plan");
        let id_refs: Vec<&Identity> = ids.iter().collect();

        let mut first = Vec::new();
        let mut aux = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let line = PRIMES.lines().nth(i).expect("a line of primes per party");
            let primes = PaillierPrimes::from_secret_bytes(&hex::decode(line.trim()).expect("hex"))
                .expect("primes decode");
            let (session, out) =
                AuxInfoSession::start(&key_plan, id, primes, &mut rng).expect("aux start");
            aux.push(session);
            first.extend(out);
        }
        relay(
            &id_refs,
            &mut aux,
            first,
            &mut rng,
            AuxInfoSession::receive,
            AuxInfoSession::is_finished,
        );

        let mut first = Vec::new();
        let mut keygen = Vec::new();
        for id in &ids {
            let (session, out) =
                KeygenSession::start(&key_plan, id, &mut rng).expect("keygen start");
            keygen.push(session);
            first.extend(out);
        }
        relay(
            &id_refs,
            &mut keygen,
            first,
            &mut rng,
            KeygenSession::receive,
            KeygenSession::is_finished,
        );
        let shares: Vec<EcdsaKeyShare> = keygen
            .into_iter()
            .zip(aux)
            .map(|(k, a)| k.finish(a.finish().expect("aux info")).expect("key share"))
            .collect();

        let plan = EcdsaPlan::new(
            [0xE8; 16],
            EcdsaCeremonyKind::Presign {
                group_key: *shares[0].group_key().compressed(),
                signers: SIGNERS.to_vec(),
                count: PRESIGNATURES,
            },
            "withdrawals",
            2,
            cards,
        )
        .expect("presign plan");
        let signer_ids: Vec<&Identity> =
            SIGNERS.iter().map(|&s| &ids[usize::from(s - 1)]).collect();
        let mut first = Vec::new();
        let mut sessions = Vec::new();
        for &s in &SIGNERS {
            let i = usize::from(s - 1);
            let (session, out) =
                PresignSession::start(&plan, &ids[i], &shares[i], &mut rng).expect("presign start");
            sessions.push(session);
            first.extend(out);
        }
        relay(
            &signer_ids,
            &mut sessions,
            first,
            &mut rng,
            PresignSession::receive,
            PresignSession::is_finished,
        );
        let mut stores: Vec<MemoryPresignatureStore> =
            (0..3).map(|_| MemoryPresignatureStore::new()).collect();
        for (&s, session) in SIGNERS.iter().zip(sessions) {
            stores[usize::from(s - 1)]
                .insert(session.finish().expect("presignatures"))
                .expect("fresh store");
        }
        let address = Address::from(shares[0].group_key().address());
        Self {
            ids,
            shares,
            plan,
            stores,
            next: 0,
            rng,
            address,
        }
    }

    /// Signs with two of the three shares: each signer computes the signing hash from the
    /// transaction itself, spends one presignature, and the partials are combined.
    fn sign(&mut self, tx: &EthTransaction) -> SignedEthTransaction {
        assert!(
            self.next < PRESIGNATURES,
            "the test binary ran out of presignatures"
        );
        let id = PresignatureId {
            batch: *self.plan.ceremony_id(),
            index: self.next,
        };
        self.next += 1;
        let partials: Vec<_> = SIGNERS
            .iter()
            .map(|&s| {
                let i = usize::from(s - 1);
                let hash = tx.signing_hash().0;
                sign_prehash(
                    &self.shares[i],
                    &self.ids[i],
                    &mut self.stores[i],
                    &id,
                    &hash,
                    &mut self.rng,
                )
                .expect("partial signature")
            })
            .collect();
        let signature = combine(&self.plan, &tx.signing_hash().0, &partials).expect("combine");
        tx.with_signature_for_sender(
            U256::from_be_bytes(signature.r),
            U256::from_be_bytes(signature.s),
            self.address,
        )
        .expect("the group's signature recovers to the group's address")
    }
}

fn wallet() -> &'static Mutex<GroupWallet> {
    static WALLET: OnceLock<Mutex<GroupWallet>> = OnceLock::new();
    WALLET.get_or_init(|| Mutex::new(GroupWallet::create()))
}

/// The group's Ethereum address (keygen runs on first use).
pub fn group_address() -> Address {
    wallet().lock().expect("wallet lock").address
}

/// Signs `tx` with the 2-of-3 group key.
pub fn threshold_sign(tx: &EthTransaction) -> SignedEthTransaction {
    wallet().lock().expect("wallet lock").sign(tx)
}

/// Builds the EIP-1559 transaction a coordinator would: nonce from `pending_nonce`, fees
/// from `fees`, gas from `estimate_gas`.
pub async fn build_tx(
    chain: &dyn EvmBackend,
    from: Address,
    to: Address,
    value: U256,
    input: Bytes,
) -> EthTransaction {
    let nonce = chain.pending_nonce(from).await.expect("pending nonce");
    let fees = chain.fees().await.expect("fees");
    let gas_limit = chain
        .estimate_gas(from, to, value, &input)
        .await
        .expect("estimate gas");
    EthTransaction::eip1559(Eip1559Fields {
        chain_id: chain.chain_id().await.expect("chain id"),
        nonce,
        to,
        value,
        gas_limit,
        max_fee_per_gas: fees.max_fee_per_gas,
        max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
        input,
    })
    .expect("valid transaction")
}

/// Signs `tx` with a single secp256k1 key (the negative tests' other senders).
pub fn key_sign(key: &[u8; 32], tx: &EthTransaction) -> SignedEthTransaction {
    let key = k256::ecdsa::SigningKey::from_slice(key).expect("valid key");
    let (signature, recovery) = key
        .sign_prehash_recoverable(tx.signing_hash().as_slice())
        .expect("sign");
    let bytes = signature.to_bytes();
    tx.with_signature(
        U256::from_be_slice(&bytes[..32]),
        U256::from_be_slice(&bytes[32..]),
        recovery.is_y_odd(),
    )
    .expect("signature attaches")
}

/// The address of a single key.
pub fn key_address(key: &[u8; 32]) -> Address {
    let key = k256::ecdsa::SigningKey::from_slice(key).expect("valid key");
    Address::from_public_key(key.verifying_key())
}
