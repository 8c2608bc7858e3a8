//! Presignatures, the store that makes each one single-use, and the presignature
//! encoding for that store.
//!
//! # Security
//! Using one presignature for two different messages reveals the key. A presignature is
//! durably marked consumed by the [`PresignatureStore`] *before* a partial signature made
//! with it is returned. Never restore presignatures from a backup or a VM snapshot: key
//! share exports never contain them, and a restored device must run a new presigning
//! ceremony.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use cggmp21::supported_curves::Secp256k1;
use custody_threshold::ParticipantIndex;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::codec::{from_cbor, to_cbor, DecodeError, Reader, TypeTag, Writer};
use crate::keys::check_point;
use crate::plan::{MAX_PARTICIPANTS, MAX_PRESIGN_BATCH};

/// Which presignature: the presigning ceremony id (the batch) and the position in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PresignatureId {
    /// The ceremony id of the presigning plan.
    pub batch: [u8; 16],
    /// Position in the batch, from 0.
    pub index: u16,
}

impl fmt::Display for PresignatureId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", hex::encode(self.batch), self.index)
    }
}

/// One signer's part of a presignature: the nonce share and masked key share CGGMP21
/// produced for one future signature, with the key and signer set it belongs to.
///
/// Secret. The scalars zeroize on drop (CGGMP21's `SecretScalar`); `Debug` prints the id
/// only; no `Clone`. It is used by value: [`crate::sign_prehash`] takes it out of the
/// store and consumes it.
pub struct Presignature {
    pub(crate) id: PresignatureId,
    pub(crate) group_key: [u8; 33],
    pub(crate) signers: Vec<ParticipantIndex>,
    pub(crate) signer: ParticipantIndex,
    pub(crate) inner: cggmp21::Presignature<Secp256k1>,
}

impl fmt::Debug for Presignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Presignature")
            .field("id", &self.id.to_string())
            .field("signer", &self.signer)
            .field("secrets", &"<redacted>")
            .finish()
    }
}

impl Presignature {
    /// Which presignature this is.
    pub fn id(&self) -> PresignatureId {
        self.id
    }

    /// The group key it signs for (compressed SEC1).
    pub fn group_key(&self) -> &[u8; 33] {
        &self.group_key
    }

    /// The signers who generated it together; all of them must sign with it.
    pub fn signers(&self) -> &[ParticipantIndex] {
        &self.signers
    }

    /// The plan index of the signer holding this part.
    pub fn signer(&self) -> ParticipantIndex {
        self.signer
    }

    /// Exports the presignature for the device's own presignature store.
    ///
    /// # Security
    /// Secret. Only the device's store may hold it, encrypted; never a backup.
    pub fn to_secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        let cbor = Zeroizing::new(to_cbor(&self.inner).expect("presignatures always serialize"));
        let mut w = Writer::new(TypeTag::Presignature);
        w.fixed(&self.id.batch)
            .u16(self.id.index)
            .fixed(&self.group_key)
            .u16(self.signer)
            .u16(self.signers.len() as u16);
        for s in &self.signers {
            w.u16(*s);
        }
        w.var(&cbor);
        Zeroizing::new(w.finish())
    }

    /// Restores a presignature exported with [`Presignature::to_secret_bytes`].
    ///
    /// # Errors
    /// A [`DecodeError`] naming the malformed field.
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, TypeTag::Presignature)?;
        let batch = r.array::<16>("batch id")?;
        let index = r.u16("batch index")?;
        if usize::from(index) >= MAX_PRESIGN_BATCH {
            return Err(DecodeError::invalid(
                "batch index",
                "beyond the largest batch",
            ));
        }
        let group_key = r.array::<33>("group key")?;
        check_point("group key", &group_key)?;
        let signer = r.u16("signer")?;
        let n = r.count("signer", MAX_PARTICIPANTS)?;
        let signers = (0..n)
            .map(|_| r.u16("signer"))
            .collect::<Result<Vec<_>, _>>()?;
        if signers.len() < 2
            || signers.windows(2).any(|w| w[0] >= w[1])
            || signers.first() == Some(&0)
            || !signers.contains(&signer)
        {
            return Err(DecodeError::invalid(
                "signers",
                "must be at least two ascending indexes including this signer",
            ));
        }
        let cbor = r.var("CGGMP21 presignature", 1024)?;
        r.finish()?;
        let inner = from_cbor("CGGMP21 presignature", cbor)?;
        Ok(Presignature {
            id: PresignatureId { batch, index },
            group_key,
            signers,
            signer,
            inner,
        })
    }
}

/// Why a presignature could not be stored or taken.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PresignatureStoreError<E: std::error::Error + 'static> {
    /// The presignature was used before. Signing again could reveal the key.
    #[error("presignature {id} was already used; refusing to sign with it again")]
    AlreadyConsumed {
        /// The presignature.
        id: PresignatureId,
    },
    /// The store never held this presignature (or it belongs to another device).
    #[error("presignature {id} is not in this device's store; run a new presigning ceremony")]
    Unknown {
        /// The presignature.
        id: PresignatureId,
    },
    /// A presignature with this id is already stored.
    #[error("presignature {id} is already stored")]
    Duplicate {
        /// The presignature.
        id: PresignatureId,
    },
    /// The store could not persist the change.
    #[error("presignature store failed")]
    Store(#[source] E),
}

/// Durable, single-use storage of a signer's presignatures.
///
/// # Contract
/// - [`PresignatureStore::insert`] refuses an id that is stored or was ever consumed.
/// - [`PresignatureStore::take`] returns a presignature only after it is recorded as
///   consumed on stable storage (and its secret removed); it refuses an id consumed
///   before or never stored. Recording and then failing is acceptable (it only loses the
///   presignature); returning one without a durable record is not.
/// - A store is never restored from a backup or snapshot. `custody-keystore` implements it
///   on files; [`MemoryPresignatureStore`] is for tests.
pub trait PresignatureStore {
    /// The store's I/O error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Stores fresh presignatures, all or none.
    ///
    /// # Errors
    /// See the trait contract.
    fn insert(
        &mut self,
        presignatures: Vec<Presignature>,
    ) -> Result<(), PresignatureStoreError<Self::Error>>;

    /// Durably marks `id` consumed and hands out the presignature.
    ///
    /// # Errors
    /// See the trait contract.
    fn take(
        &mut self,
        id: &PresignatureId,
    ) -> Result<Presignature, PresignatureStoreError<Self::Error>>;

    /// Ids of the presignatures still available, for a status display.
    fn available(&self) -> Vec<PresignatureId>;
}

/// A [`PresignatureStore`] in memory, for tests and simulations. Not durable.
#[derive(Debug, Default)]
pub struct MemoryPresignatureStore {
    fresh: BTreeMap<PresignatureId, Presignature>,
    consumed: BTreeSet<PresignatureId>,
}

impl MemoryPresignatureStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl PresignatureStore for MemoryPresignatureStore {
    type Error = std::convert::Infallible;

    fn insert(
        &mut self,
        presignatures: Vec<Presignature>,
    ) -> Result<(), PresignatureStoreError<Self::Error>> {
        let mut ids = BTreeSet::new();
        for p in &presignatures {
            if self.consumed.contains(&p.id) {
                return Err(PresignatureStoreError::AlreadyConsumed { id: p.id });
            }
            if self.fresh.contains_key(&p.id) || !ids.insert(p.id) {
                return Err(PresignatureStoreError::Duplicate { id: p.id });
            }
        }
        for p in presignatures {
            self.fresh.insert(p.id, p);
        }
        Ok(())
    }

    fn take(
        &mut self,
        id: &PresignatureId,
    ) -> Result<Presignature, PresignatureStoreError<Self::Error>> {
        if self.consumed.contains(id) {
            return Err(PresignatureStoreError::AlreadyConsumed { id: *id });
        }
        let p = self
            .fresh
            .remove(id)
            .ok_or(PresignatureStoreError::Unknown { id: *id })?;
        self.consumed.insert(*id);
        Ok(p)
    }

    fn available(&self) -> Vec<PresignatureId> {
        self.fresh.keys().copied().collect()
    }
}
