//! Nonce commitments issued ahead of time, and the store that guarantees each nonce is
//! used at most once.
//!
//! A signer issues batches of commitments in advance, so a signing request costs one trip
//! across the air gap. Nothing secret is stored per nonce: nonce `k` is derived from a
//! 32-byte [`NonceSeed`] and its counter, and a [`NonceStore`] records which counters were
//! issued and which consumed. A counter is durably marked consumed *before* a signature
//! share computed with it is released.
//!
//! # Security
//! Reusing a nonce with two different messages reveals the key share. Never restore nonce
//! state from a backup or a VM snapshot: a restored device must draw a new [`NonceSeed`],
//! which invalidates every commitment issued before (their [`CommitmentId::seed_id`] no
//! longer matches).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::OnceLock;

use frost::round1::{NonceCommitment, SigningCommitments, SigningNonces};
use frost_core::Ciphersuite;
use frost_secp256k1_tr as frost;
use k256::elliptic_curve::ops::MulByGenerator;
use k256::elliptic_curve::sec1::ToEncodedPoint;
use k256::{AffinePoint, ProjectivePoint, Scalar};
use rand_core::{CryptoRng, RngCore};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::codec::{canonical_point, tagged_hash, DecodeError, Reader, TypeTag, Writer};
use crate::keys::KeyShare;
use crate::plan::ParticipantIndex;

/// Most commitments in one batch.
pub const MAX_BATCH: usize = 1000;

/// The secret from which a signer's nonces are derived.
///
/// Zeroized on drop; `Debug` prints `<redacted>`; no `Clone`.
pub struct NonceSeed(Zeroizing<[u8; 32]>);

impl fmt::Debug for NonceSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NonceSeed(id={}, <redacted>)", hex::encode(self.id()))
    }
}

impl NonceSeed {
    /// Draws a fresh seed.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        NonceSeed(seed)
    }

    /// Restores a seed from the device keystore.
    ///
    /// # Security
    /// Only the device's own keystore may hold a seed; backups must never carry one.
    pub fn from_secret_bytes(bytes: &[u8; 32]) -> Self {
        NonceSeed(Zeroizing::new(*bytes))
    }

    /// The seed bytes, for the device keystore only.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }

    /// A public 8-byte id of this seed, carried in every commitment id.
    pub fn id(&self) -> [u8; 8] {
        let h = tagged_hash("CoinPort/nonce-seed-id", &[self.0.as_slice()]);
        h[..8].try_into().expect("8 of 32 bytes")
    }

    /// Derives the two nonce scalars for `counter` of `share`'s key.
    fn nonce_scalars(&self, share: &KeyShare, counter: u64) -> [Scalar; 2] {
        let group_key = share.group().public_key();
        let index = share.index().to_be_bytes();
        let ctr = counter.to_be_bytes();
        let derive = |which: u8| {
            // H3 is the ciphersuite's nonce hash (RFC 9591 nonce_generate), used here as a PRF
            // keyed by the secret seed.
            let input = Zeroizing::new(
                [
                    self.0.as_slice(),
                    &group_key[..],
                    &index[..],
                    &ctr[..],
                    &[which][..],
                ]
                .concat(),
            );
            frost::Secp256K1Sha256TR::H3(&input)
        };
        [derive(0), derive(1)]
    }

    /// The public commitments `(d·G, e·G)` to the nonces of `counter`.
    pub(crate) fn commitments(&self, share: &KeyShare, counter: u64) -> SigningCommitments {
        let scalars = Zeroizing::new(self.nonce_scalars(share, counter));
        let [d, e] = &*scalars;
        SigningCommitments::new(
            NonceCommitment::new(ProjectivePoint::mul_by_generator(d)),
            NonceCommitment::new(ProjectivePoint::mul_by_generator(e)),
        )
    }

    /// The nonces of `counter`, if their commitments are `expected`.
    ///
    /// The library's `SigningNonces::from_nonces` recomputes both commitments with a generic
    /// scalar multiplication; here they are computed with the generator table and compared
    /// with `expected`. [`CheckedNonces::assemble`] then builds the library's nonces.
    pub(crate) fn check_nonces(
        &self,
        share: &KeyShare,
        counter: u64,
        expected: &SigningCommitments,
    ) -> Result<CheckedNonces, NonceMatchError> {
        let scalars = Zeroizing::new(self.nonce_scalars(share, counter));
        let points = [
            ProjectivePoint::mul_by_generator(&scalars[0]),
            ProjectivePoint::mul_by_generator(&scalars[1]),
        ];
        if points[0] != expected.hiding().value() || points[1] != expected.binding().value() {
            return Err(NonceMatchError::Mismatch);
        }
        Ok(CheckedNonces {
            scalars,
            points,
            expected: *expected,
        })
    }
}

/// Nonces whose commitments matched the request, before they are handed to the library.
pub(crate) struct CheckedNonces {
    scalars: Zeroizing<[Scalar; 2]>,
    points: [ProjectivePoint; 2],
    expected: SigningCommitments,
}

impl CheckedNonces {
    /// The commitments `d·G` and `e·G`, which the caller encodes (in affine form) together
    /// with its other points under one field inversion.
    pub(crate) fn points(&self) -> [ProjectivePoint; 2] {
        self.points
    }

    /// The library's `SigningNonces`, assembled through its own (versioned) serialization
    /// from our scalars and `affine`, our commitments in affine form.
    pub(crate) fn assemble(
        &self,
        affine: [&AffinePoint; 2],
    ) -> Result<SigningNonces, NonceMatchError> {
        let header = commitments_header();
        // SigningNonces = header ‖ hiding ‖ binding ‖ SigningCommitments, where the
        // commitments' own encoding starts with the same header.
        let (d_bytes, e_bytes) = (
            Zeroizing::new(self.scalars[0].to_bytes()),
            Zeroizing::new(self.scalars[1].to_bytes()),
        );
        let mut bytes = Zeroizing::new(Vec::with_capacity(2 * header.len() + 64 + 66));
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(d_bytes.as_slice());
        bytes.extend_from_slice(e_bytes.as_slice());
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(affine[0].to_encoded_point(true).as_bytes());
        bytes.extend_from_slice(affine[1].to_encoded_point(true).as_bytes());
        let nonces = SigningNonces::deserialize(&bytes).map_err(|_| NonceMatchError::Assemble)?;
        // Should the library's layout ever change, or the caller pass other points, refuse
        // rather than sign with anything but exactly these nonces and the checked commitments.
        if nonces.hiding().serialize()[..] != d_bytes[..]
            || nonces.binding().serialize()[..] != e_bytes[..]
            || nonces.commitments() != &self.expected
        {
            return Err(NonceMatchError::Assemble);
        }
        Ok(nonces)
    }
}

/// The header that starts the library's encoding of `SigningCommitments` (format version
/// and ciphersuite id), taken once from the library itself. Should it ever fail, the header
/// is empty and assembling nonces refuses.
fn commitments_header() -> &'static [u8] {
    static HEADER: OnceLock<Vec<u8>> = OnceLock::new();
    HEADER.get_or_init(|| {
        let g = NonceCommitment::new(ProjectivePoint::GENERATOR);
        SigningCommitments::new(g, g)
            .serialize()
            .ok()
            .and_then(|bytes| bytes.len().checked_sub(66).map(|n| bytes[..n].to_vec()))
            .unwrap_or_default()
    })
}

/// Why [`NonceSeed::check_nonces`] or [`CheckedNonces::assemble`] gave no nonces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NonceMatchError {
    /// The expected commitments are not ours.
    Mismatch,
    /// The library's nonce encoding did not take our nonces (a changed layout).
    Assemble,
}

/// Names one issued commitment: the seed it came from and its counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommitmentId {
    /// [`NonceSeed::id`] of the seed that issued it.
    pub seed_id: [u8; 8],
    /// The counter.
    pub counter: u64,
}

impl fmt::Display for CommitmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", hex::encode(self.seed_id), self.counter)
    }
}

/// Why a counter could not be consumed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConsumeError<E: std::error::Error + 'static> {
    /// The counter was used before. Signing again would reuse a nonce.
    #[error("commitment counter {counter} was already used; refusing to sign with it again")]
    AlreadyConsumed {
        /// The counter.
        counter: u64,
    },
    /// The counter was never issued by this store.
    #[error("commitment counter {counter} was never issued by this device")]
    NeverIssued {
        /// The counter.
        counter: u64,
    },
    /// The store could not persist the change.
    #[error("nonce store failed")]
    Store(#[source] E),
}

/// Durable record of issued and consumed nonce counters.
///
/// # Contract
/// - [`NonceStore::issue`] never returns a counter it returned before, even after a crash.
///   A store may refuse a batch larger than it can recover from after a crash (the file
///   store in `custody-keystore` takes at most [`MAX_BATCH`](crate::limits::MAX_BATCH)).
/// - [`NonceStore::consume`] returns `Ok` only after every listed counter is recorded as
///   consumed on stable storage; it refuses a counter that was consumed before, never
///   issued, or listed twice. Marking some counters and then failing is acceptable (it only loses them);
///   reporting success without a durable record is not.
pub trait NonceStore {
    /// The store's I/O error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Reserves `count` fresh counters and returns the first; they are
    /// `first..first + count`.
    ///
    /// # Errors
    /// The store's error if it cannot persist the reservation.
    fn issue(&mut self, count: u32) -> Result<u64, Self::Error>;

    /// Durably marks `counters` consumed.
    ///
    /// # Errors
    /// See the trait contract.
    fn consume(&mut self, counters: &[u64]) -> Result<(), ConsumeError<Self::Error>>;
}

/// A [`NonceStore`] in memory, for tests and simulations. Not durable.
#[derive(Debug, Default)]
pub struct MemoryNonceStore {
    next: u64,
    consumed: BTreeSet<u64>,
}

impl MemoryNonceStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl NonceStore for MemoryNonceStore {
    type Error = std::convert::Infallible;

    fn issue(&mut self, count: u32) -> Result<u64, Self::Error> {
        let first = self.next;
        self.next += u64::from(count);
        Ok(first)
    }

    fn consume(&mut self, counters: &[u64]) -> Result<(), ConsumeError<Self::Error>> {
        let mut seen = BTreeSet::new();
        for &counter in counters {
            if counter >= self.next {
                return Err(ConsumeError::NeverIssued { counter });
            }
            if self.consumed.contains(&counter) || !seen.insert(counter) {
                return Err(ConsumeError::AlreadyConsumed { counter });
            }
        }
        self.consumed.extend(counters.iter().copied());
        Ok(())
    }
}

/// Why commitments could not be issued.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum IssueError<E: std::error::Error + 'static> {
    /// The requested batch size is 0 or above [`MAX_BATCH`](crate::limits::MAX_BATCH).
    #[error("batch size must be 1 to {MAX_BATCH}, got {0}")]
    BadCount(usize),
    /// The store failed.
    #[error("nonce store failed")]
    Store(#[source] E),
}

/// A batch of public nonce commitments from one signer, for the coordinator's pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitmentBatch {
    /// The group key the commitments are for.
    pub group_key: [u8; 33],
    /// The issuing signer.
    pub signer: ParticipantIndex,
    /// The commitments.
    pub commitments: Vec<(CommitmentId, SigningCommitments)>,
}

/// Issues `count` fresh commitments for `share`.
///
/// The store records the counters as issued before the commitments are returned.
///
/// # Errors
/// [`IssueError::BadCount`] or the store's error.
pub fn issue_commitments<S: NonceStore>(
    share: &KeyShare,
    seed: &NonceSeed,
    store: &mut S,
    count: usize,
) -> Result<CommitmentBatch, IssueError<S::Error>> {
    if count == 0 || count > MAX_BATCH {
        return Err(IssueError::BadCount(count));
    }
    let first = store.issue(count as u32).map_err(IssueError::Store)?;
    let seed_id = seed.id();
    let commitments = (first..first + count as u64)
        .map(|counter| {
            (
                CommitmentId { seed_id, counter },
                seed.commitments(share, counter),
            )
        })
        .collect();
    Ok(CommitmentBatch {
        group_key: share.group().public_key(),
        signer: share.index(),
        commitments,
    })
}

pub(crate) fn write_commitments(w: &mut Writer, c: &SigningCommitments) {
    let hiding = c
        .hiding()
        .serialize()
        .expect("commitments are never the identity");
    let binding = c
        .binding()
        .serialize()
        .expect("commitments are never the identity");
    w.fixed(&hiding).fixed(&binding);
}

pub(crate) fn read_commitments(r: &mut Reader<'_>) -> Result<SigningCommitments, DecodeError> {
    let hiding = r.array::<33>("hiding commitment")?;
    let binding = r.array::<33>("binding commitment")?;
    let hiding_point = NonceCommitment::deserialize(&hiding)
        .map_err(|_| DecodeError::invalid("hiding commitment", "not a valid curve point"))?;
    canonical_point("hiding commitment", &hiding, hiding_point.serialize().ok())?;
    let binding_point = NonceCommitment::deserialize(&binding)
        .map_err(|_| DecodeError::invalid("binding commitment", "not a valid curve point"))?;
    canonical_point(
        "binding commitment",
        &binding,
        binding_point.serialize().ok(),
    )?;
    Ok(SigningCommitments::new(hiding_point, binding_point))
}

impl CommitmentBatch {
    /// Encodes the batch (see `docs/formats/threshold.md`).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(TypeTag::CommitmentBatch);
        w.fixed(&self.group_key).u16(self.signer);
        w.u16(self.commitments.len() as u16);
        for (id, c) in &self.commitments {
            w.fixed(&id.seed_id).u64(id.counter);
            write_commitments(&mut w, c);
        }
        w.finish()
    }

    /// Decodes a batch.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the malformed field.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, TypeTag::CommitmentBatch)?;
        let group_key = r.array("group key")?;
        let signer = r.u16("signer")?;
        if signer == 0 {
            return Err(DecodeError::invalid(
                "signer",
                "participant 0 does not exist",
            ));
        }
        let n = r.count("commitment count", MAX_BATCH)?;
        let mut commitments = Vec::with_capacity(n);
        for _ in 0..n {
            let seed_id = r.array("seed id")?;
            let counter = r.u64("counter")?;
            commitments.push((CommitmentId { seed_id, counter }, read_commitments(&mut r)?));
        }
        r.finish()?;
        Ok(CommitmentBatch {
            group_key,
            signer,
            commitments,
        })
    }
}
