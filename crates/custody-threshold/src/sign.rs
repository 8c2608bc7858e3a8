//! One-trip signing: the coordinator builds a request from pre-issued commitments, each
//! chosen signer answers with one share per message, and the coordinator aggregates with
//! identifiable abort.
//!
//! This layer signs the messages it is given. Deciding *what* may be signed (recomputing a
//! PSBT's sighashes, checking policy) is the caller's job and happens before
//! [`sign_request`] is called.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use frost::round1::SigningCommitments;
use frost::round2::SignatureShare;
use frost::SigningPackage;
use frost_core::CheaterDetection;
use frost_secp256k1_tr as frost;
use thiserror::Error;

use crate::bip32::DeriveError;
use crate::codec::{tagged_hash, DecodeError, Reader, TypeTag, Writer};
use crate::keys::{identifier, index_of, GroupKey, ItemKeys, KeyShare, TweakMode};
use crate::nonce::{
    read_commitments, write_commitments, CheckedNonces, CommitmentBatch, CommitmentId,
    ConsumeError, NonceSeed, NonceStore,
};
use crate::plan::{ParticipantIndex, MAX_PARTICIPANTS};

/// Longest message one item may carry (a BIP341 sighash is 32 bytes).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// Most messages in one request (one per PSBT input).
pub const MAX_ITEMS: usize = 2000;
/// Deepest derivation path.
pub const MAX_PATH_LEN: usize = 16;

/// What to sign: the message, the BIP32 path of the key, and the Taproot tweak.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemSpec {
    /// The message (for Bitcoin, the BIP341 sighash the signer recomputed itself).
    pub message: Vec<u8>,
    /// Non-hardened BIP32 path below the group key.
    pub path: Vec<u32>,
    /// How the derived key is tweaked.
    pub tweak: TweakMode,
}

/// One message of a request with the commitment assigned to each signer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignItem {
    /// What to sign.
    pub spec: ItemSpec,
    /// The commitment each chosen signer must use, by signer.
    pub commitments: BTreeMap<ParticipantIndex, (CommitmentId, SigningCommitments)>,
}

/// A signing request: which signers, which messages, which commitments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningRequest {
    session_id: [u8; 16],
    group_key: [u8; 33],
    signers: Vec<ParticipantIndex>,
    items: Vec<SignItem>,
    /// Digest of the encoding, computed once (the encoding is canonical).
    digest: [u8; 32],
}

/// Why the coordinator could not build a request.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// Fewer signers than the threshold.
    #[error("{found} signers chosen but the group needs {threshold}")]
    TooFewSigners {
        /// Signers chosen.
        found: usize,
        /// The threshold.
        threshold: u16,
    },
    /// A signer is not in the group or is listed twice.
    #[error("signer #{0} is not in the group or is listed twice")]
    BadSigner(ParticipantIndex),
    /// A signer has no unused commitment left.
    #[error("signer #{signer} has only {available} unused commitments, {needed} needed; ask for a new batch")]
    OutOfCommitments {
        /// The signer.
        signer: ParticipantIndex,
        /// Commitments left.
        available: usize,
        /// Commitments the request needs.
        needed: usize,
    },
    /// A batch is for another group key.
    #[error("commitment batch from signer #{0} is for a different group key")]
    WrongGroup(ParticipantIndex),
    /// The request has no items, too many, or an item is too large.
    #[error("request size is invalid: {0}")]
    BadSize(&'static str),
    /// A path cannot be derived.
    #[error(transparent)]
    Derive(#[from] DeriveError),
}

/// The coordinator's pool of unused commitments, per signer.
#[derive(Debug, Clone)]
pub struct CommitmentPool {
    group_key: [u8; 33],
    available: BTreeMap<ParticipantIndex, VecDeque<(CommitmentId, SigningCommitments)>>,
    known: BTreeSet<(ParticipantIndex, CommitmentId)>,
}

impl CommitmentPool {
    /// An empty pool for `group`.
    pub fn new(group: &GroupKey) -> Self {
        CommitmentPool {
            group_key: group.public_key(),
            available: BTreeMap::new(),
            known: BTreeSet::new(),
        }
    }

    /// Adds a signer's batch. Commitments already seen are ignored, so a batch delivered
    /// twice is harmless.
    ///
    /// # Errors
    /// [`RequestError::WrongGroup`] when the batch is for another group key.
    pub fn add_batch(&mut self, batch: &CommitmentBatch) -> Result<(), RequestError> {
        if batch.group_key != self.group_key {
            return Err(RequestError::WrongGroup(batch.signer));
        }
        let queue = self.available.entry(batch.signer).or_default();
        for (id, c) in &batch.commitments {
            if self.known.insert((batch.signer, *id)) {
                queue.push_back((*id, *c));
            }
        }
        Ok(())
    }

    /// Unused commitments left for `signer`.
    pub fn available(&self, signer: ParticipantIndex) -> usize {
        self.available.get(&signer).map_or(0, VecDeque::len)
    }
}

fn check_spec(spec: &ItemSpec) -> Result<(), RequestError> {
    if spec.message.len() > MAX_MESSAGE_LEN {
        return Err(RequestError::BadSize("message longer than 4096 bytes"));
    }
    if spec.path.len() > MAX_PATH_LEN {
        return Err(RequestError::BadSize("derivation path deeper than 16"));
    }
    Ok(())
}

impl SigningRequest {
    /// Builds a request for `signers` over `items`, taking one commitment per signer per
    /// item from `pool`. Nothing is taken from the pool if building fails.
    ///
    /// # Errors
    /// A [`RequestError`] saying what is missing or invalid.
    pub fn build(
        session_id: [u8; 16],
        group: &GroupKey,
        signers: &[ParticipantIndex],
        items: Vec<ItemSpec>,
        pool: &mut CommitmentPool,
    ) -> Result<Self, RequestError> {
        if pool.group_key != group.public_key() {
            return Err(RequestError::WrongGroup(0));
        }
        if items.is_empty() || items.len() > MAX_ITEMS {
            return Err(RequestError::BadSize("1 to 2000 items per request"));
        }
        if signers.len() < usize::from(group.threshold()) {
            return Err(RequestError::TooFewSigners {
                found: signers.len(),
                threshold: group.threshold(),
            });
        }
        let mut seen = BTreeSet::new();
        for &s in signers {
            let in_group = group
                .public_key_package()
                .verifying_shares()
                .contains_key(&identifier(s.max(1)));
            if s == 0 || !in_group || !seen.insert(s) {
                return Err(RequestError::BadSigner(s));
            }
            let available = pool.available(s);
            if available < items.len() {
                return Err(RequestError::OutOfCommitments {
                    signer: s,
                    available,
                    needed: items.len(),
                });
            }
        }
        let mut keys = ItemKeys::new(group);
        for spec in &items {
            check_spec(spec)?;
            keys.child(&spec.path)?;
        }
        let mut signers = signers.to_vec();
        signers.sort_unstable();
        let items = items
            .into_iter()
            .map(|spec| {
                let commitments = signers
                    .iter()
                    .map(|&s| {
                        let c = pool
                            .available
                            .get_mut(&s)
                            .and_then(VecDeque::pop_front)
                            .expect("availability checked above");
                        (s, c)
                    })
                    .collect();
                SignItem { spec, commitments }
            })
            .collect();
        let mut request = SigningRequest {
            session_id,
            group_key: group.public_key(),
            signers,
            items,
            digest: [0; 32],
        };
        request.digest = request_digest(&request.encode());
        Ok(request)
    }

    /// The signing session id.
    pub fn session_id(&self) -> &[u8; 16] {
        &self.session_id
    }

    /// The group key that signs.
    pub fn group_key(&self) -> &[u8; 33] {
        &self.group_key
    }

    /// The chosen signers, ascending.
    pub fn signers(&self) -> &[ParticipantIndex] {
        &self.signers
    }

    /// The messages and their commitments.
    pub fn items(&self) -> &[SignItem] {
        &self.items
    }

    /// A digest of the whole request; every response is bound to it.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    fn signing_package(&self, item: &SignItem) -> SigningPackage {
        let commitments = item
            .commitments
            .iter()
            .map(|(s, (_, c))| (identifier(*s), *c))
            .collect();
        SigningPackage::new(commitments, &item.spec.message)
    }

    /// Encodes the request (see `docs/formats/threshold.md`).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(TypeTag::SigningRequest);
        w.fixed(&self.session_id).fixed(&self.group_key);
        w.u16(self.signers.len() as u16);
        for s in &self.signers {
            w.u16(*s);
        }
        w.u16(self.items.len() as u16);
        for item in &self.items {
            w.var(&item.spec.message);
            w.u8(item.spec.path.len() as u8);
            for i in &item.spec.path {
                w.u32(*i);
            }
            match item.spec.tweak {
                TweakMode::Untweaked => {
                    w.u8(0);
                }
                TweakMode::KeyPath => {
                    w.u8(1);
                }
                TweakMode::ScriptRoot(root) => {
                    w.u8(2).fixed(&root);
                }
            }
            for s in &self.signers {
                let (id, c) = &item.commitments[s];
                w.fixed(&id.seed_id).u64(id.counter);
                write_commitments(&mut w, c);
            }
        }
        w.finish()
    }

    /// Decodes a request.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the malformed field.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, TypeTag::SigningRequest)?;
        let session_id = r.array("session id")?;
        let group_key = r.array("group key")?;
        let n = r.count("signer count", MAX_PARTICIPANTS)?;
        let signers = (0..n)
            .map(|_| r.u16("signer"))
            .collect::<Result<Vec<_>, _>>()?;
        if signers.is_empty()
            || signers.first() == Some(&0)
            || signers.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(DecodeError::invalid(
                "signers",
                "must be non-empty, ascending, distinct and non-zero",
            ));
        }
        let count = r.count("item count", MAX_ITEMS)?;
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            let message = r.var("message", MAX_MESSAGE_LEN)?.to_vec();
            let depth = usize::from(r.u8("path length")?);
            if depth > MAX_PATH_LEN {
                return Err(DecodeError::TooLong {
                    what: "derivation path",
                    len: depth,
                    max: MAX_PATH_LEN,
                });
            }
            let path = (0..depth)
                .map(|_| r.u32("path step"))
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(step) = path.iter().find(|s| **s >= 0x8000_0000) {
                return Err(DecodeError::invalid(
                    "path step",
                    format!("hardened index {step} cannot be derived from a group key"),
                ));
            }
            let tweak = match r.u8("tweak mode")? {
                0 => TweakMode::Untweaked,
                1 => TweakMode::KeyPath,
                2 => TweakMode::ScriptRoot(r.array("merkle root")?),
                other => {
                    return Err(DecodeError::invalid(
                        "tweak mode",
                        format!("unknown mode {other}"),
                    ))
                }
            };
            let mut commitments = BTreeMap::new();
            for s in &signers {
                let seed_id = r.array("seed id")?;
                let counter = r.u64("counter")?;
                let c = read_commitments(&mut r)?;
                commitments.insert(*s, (CommitmentId { seed_id, counter }, c));
            }
            items.push(SignItem {
                spec: ItemSpec {
                    message,
                    path,
                    tweak,
                },
                commitments,
            });
        }
        r.finish()?;
        Ok(SigningRequest {
            session_id,
            group_key,
            signers,
            items,
            // Decoding accepts only the canonical encoding, so the input is the encoding.
            digest: request_digest(bytes),
        })
    }
}

fn request_digest(encoding: &[u8]) -> [u8; 32] {
    tagged_hash("CoinPort/signing-request", &[encoding])
}

/// Why a signer refused to sign.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SignError<E: std::error::Error + 'static> {
    /// The request is for another group key.
    #[error("the request is for a different group key than this share")]
    WrongGroup,
    /// This share's holder is not among the chosen signers.
    #[error("this signer (#{0}) is not among the request's signers")]
    NotASigner(ParticipantIndex),
    /// Fewer signers than the threshold.
    #[error("the request names {found} signers but the group needs {threshold}")]
    TooFewSigners {
        /// Signers named.
        found: usize,
        /// The threshold.
        threshold: u16,
    },
    /// A commitment was issued under another nonce seed, e.g. before a restore.
    #[error("commitment {0} was not issued by this device's current nonce seed (issued before a restore?); issue new commitments")]
    StaleCommitment(CommitmentId),
    /// The request's commitment for us is not the one we issued under that id.
    #[error("commitment {0} in the request does not match the one this device issued")]
    CommitmentMismatch(CommitmentId),
    /// The same commitment is assigned to two items.
    #[error("commitment {0} is assigned to more than one message; refusing (nonce reuse)")]
    DuplicateCommitment(CommitmentId),
    /// The nonce store refused or failed; nothing was signed.
    #[error(transparent)]
    Nonce(#[from] ConsumeError<E>),
    /// A path cannot be derived.
    #[error(transparent)]
    Derive(#[from] DeriveError),
    /// The FROST library refused.
    #[error("threshold signing failed: {0}")]
    Protocol(String),
}

/// A signer's answer: one signature share per item, bound to the request digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureShares {
    /// The request's session id.
    pub session_id: [u8; 16],
    /// [`SigningRequest::digest`] of the request answered.
    pub request_digest: [u8; 32],
    /// The signer.
    pub signer: ParticipantIndex,
    /// One share per item, in item order.
    pub shares: Vec<[u8; 32]>,
}

/// Signs every item of `request` with `share` in one step.
///
/// All nonce counters are durably consumed in `store` before any share is computed, so a
/// crash can lose commitments but never reuse one.
///
/// # Errors
/// A [`SignError`]; in that case no share left this function.
pub fn sign_request<S: NonceStore>(
    share: &KeyShare,
    seed: &NonceSeed,
    store: &mut S,
    request: &SigningRequest,
) -> Result<SignatureShares, SignError<S::Error>> {
    let group = share.group();
    if request.group_key != group.public_key() {
        return Err(SignError::WrongGroup);
    }
    if request.signers.len() < usize::from(group.threshold()) {
        return Err(SignError::TooFewSigners {
            found: request.signers.len(),
            threshold: group.threshold(),
        });
    }
    let me = share.index();
    if !request.signers.contains(&me) {
        return Err(SignError::NotASigner(me));
    }
    let seed_id = seed.id();
    let mut counters = Vec::with_capacity(request.items.len());
    let mut checked = Vec::with_capacity(request.items.len());
    let mut used = BTreeSet::new();
    for item in &request.items {
        let (id, commitment) = item.commitments.get(&me).ok_or(SignError::NotASigner(me))?;
        if id.seed_id != seed_id {
            return Err(SignError::StaleCommitment(*id));
        }
        if !used.insert(id.counter) {
            return Err(SignError::DuplicateCommitment(*id));
        }
        let c = seed
            .check_nonces(share, id.counter, commitment)
            .map_err(|_| SignError::CommitmentMismatch(*id))?;
        counters.push(id.counter);
        checked.push(c);
    }
    // One field inversion encodes every child key (for its Taproot tweak) and every nonce
    // commitment (for the library's nonce encoding).
    let mut item_keys = ItemKeys::new(group);
    let commitments: Vec<_> = checked.iter().flat_map(CheckedNonces::points).collect();
    let children = item_keys.children(
        request.items.iter().map(|item| item.spec.path.as_slice()),
        &commitments,
    )?;
    let assemble_refused =
        || SignError::Protocol("the FROST library refused our nonce encoding".into());
    let mut nonces = Vec::with_capacity(request.items.len());
    let mut keys = Vec::with_capacity(request.items.len());
    for (k, (item, c)) in request.items.iter().zip(&checked).enumerate() {
        let affine = [&children.extra[2 * k], &children.extra[2 * k + 1]];
        nonces.push(c.assemble(affine).map_err(|_| assemble_refused())?);
        let tweak =
            item_keys.signing_tweak(&item.spec.path, &item.spec.tweak, &children.affine[k])?;
        keys.push(share.signing_key_package(&children.keys[k], &tweak));
    }

    // The point of no return: once consumed, these nonces are never derived again.
    store.consume(&counters)?;

    let mut shares = Vec::with_capacity(request.items.len());
    for ((item, nonces), key_package) in request.items.iter().zip(&nonces).zip(&keys) {
        let package = request.signing_package(item);
        let sig_share = frost::round2::sign(&package, nonces, key_package)
            .map_err(|e| SignError::Protocol(e.to_string()))?;
        shares.push(
            sig_share
                .serialize()
                .try_into()
                .map_err(|_| SignError::Protocol("share is not 32 bytes".into()))?,
        );
    }
    Ok(SignatureShares {
        session_id: request.session_id,
        request_digest: request.digest(),
        signer: me,
        shares,
    })
}

impl SignatureShares {
    /// Encodes the response (see `docs/formats/threshold.md`).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(TypeTag::SignatureShares);
        w.fixed(&self.session_id)
            .fixed(&self.request_digest)
            .u16(self.signer);
        w.u16(self.shares.len() as u16);
        for s in &self.shares {
            w.fixed(s);
        }
        w.finish()
    }

    /// Decodes a response.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the malformed field.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, TypeTag::SignatureShares)?;
        let session_id = r.array("session id")?;
        let request_digest = r.array("request digest")?;
        let signer = r.u16("signer")?;
        if signer == 0 {
            return Err(DecodeError::invalid(
                "signer",
                "participant 0 does not exist",
            ));
        }
        let n = r.count("share count", MAX_ITEMS)?;
        let shares = (0..n)
            .map(|_| r.array("signature share"))
            .collect::<Result<Vec<_>, _>>()?;
        r.finish()?;
        Ok(SignatureShares {
            session_id,
            request_digest,
            signer,
            shares,
        })
    }
}

/// Why aggregation failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AggregateError {
    /// A response answers another request.
    #[error("response from signer #{0} answers a different request")]
    WrongRequest(ParticipantIndex),
    /// A response comes from someone not chosen, or twice.
    #[error("unexpected or duplicate response from signer #{0}")]
    UnexpectedSigner(ParticipantIndex),
    /// Responses are missing.
    #[error("no response yet from signers {0:?}")]
    Missing(Vec<ParticipantIndex>),
    /// A response has the wrong number of shares or an unreadable share.
    #[error("response from signer #{0} is malformed")]
    Malformed(ParticipantIndex),
    /// Shares that do not verify: identifiable abort.
    #[error("invalid signature shares from signers {0:?}")]
    InvalidShares(Vec<ParticipantIndex>),
    /// The aggregate did not verify under the output key (should be impossible once every
    /// share verified).
    #[error("aggregated signature for item {0} does not verify")]
    BadSignature(usize),
    /// A path cannot be derived.
    #[error(transparent)]
    Derive(#[from] DeriveError),
    /// The group key does not match the request.
    #[error("the request is for a different group key")]
    WrongGroup,
}

/// Aggregates the signers' responses into one BIP340 signature per item, each verified
/// against its output key before it is returned.
///
/// # Errors
/// [`AggregateError::InvalidShares`] names every signer whose share does not verify.
pub fn aggregate(
    group: &GroupKey,
    request: &SigningRequest,
    responses: &[SignatureShares],
) -> Result<Vec<[u8; 64]>, AggregateError> {
    if request.group_key != group.public_key() {
        return Err(AggregateError::WrongGroup);
    }
    let digest = request.digest();
    let mut by_signer = BTreeMap::new();
    for r in responses {
        if r.request_digest != digest || r.session_id != request.session_id {
            return Err(AggregateError::WrongRequest(r.signer));
        }
        if !request.signers.contains(&r.signer) || by_signer.insert(r.signer, r).is_some() {
            return Err(AggregateError::UnexpectedSigner(r.signer));
        }
        if r.shares.len() != request.items.len() {
            return Err(AggregateError::Malformed(r.signer));
        }
    }
    let missing: Vec<_> = request
        .signers
        .iter()
        .copied()
        .filter(|s| !by_signer.contains_key(s))
        .collect();
    if !missing.is_empty() {
        return Err(AggregateError::Missing(missing));
    }
    let mut signatures = Vec::with_capacity(request.items.len());
    let mut cheaters = BTreeSet::new();
    let mut item_keys = ItemKeys::new(group);
    let children = item_keys.children(
        request.items.iter().map(|item| item.spec.path.as_slice()),
        &[],
    )?;
    for (k, item) in request.items.iter().enumerate() {
        let tweak =
            item_keys.signing_tweak(&item.spec.path, &item.spec.tweak, &children.affine[k])?;
        let derived = &children.keys[k];
        let mut shares = BTreeMap::new();
        for (signer, r) in &by_signer {
            let share = SignatureShare::deserialize(&r.shares[k])
                .map_err(|_| AggregateError::Malformed(*signer))?;
            shares.insert(identifier(*signer), share);
        }
        let package = request.signing_package(item);
        let pkp = derived.signing_package(&tweak, Some(&request.signers));
        // The library verifies the aggregate under `pkp`'s key before returning it; a
        // Bitcoin caller also checks the whole transaction with libbitcoinconsensus.
        match frost_core::aggregate_custom(&package, &shares, &pkp, CheaterDetection::AllCheaters) {
            Ok(sig) => {
                let bytes: [u8; 64] = sig
                    .serialize()
                    .map_err(|_| AggregateError::BadSignature(k))?
                    .try_into()
                    .map_err(|_| AggregateError::BadSignature(k))?;
                signatures.push(bytes);
            }
            Err(frost_core::Error::InvalidSignatureShare { culprits }) => {
                cheaters.extend(culprits.iter().filter_map(index_of));
            }
            Err(_) => return Err(AggregateError::BadSignature(k)),
        }
    }
    if !cheaters.is_empty() {
        return Err(AggregateError::InvalidShares(
            cheaters.into_iter().collect(),
        ));
    }
    Ok(signatures)
}
