//! Group public keys (with their Ethereum address), key shares, auxiliary info and
//! pre-generated Paillier primes.

use std::fmt;

use cggmp21::generic_ec::{NonZero, Point};
use cggmp21::security_level::{KeygenSecurityLevel, SecurityLevel128};
use cggmp21::supported_curves::Secp256k1;
use custody_threshold::ParticipantIndex;
use rand_core::RngCore;
use sha3::{Digest, Keccak256};
use zeroize::Zeroizing;

use crate::codec::{from_cbor, to_cbor, DecodeError, Reader, TypeTag, Writer, MAX_CBOR_LEN};

/// Checks that `bytes` is a compressed SEC1 secp256k1 point (prefix `02`/`03`, on the curve).
pub(crate) fn check_point(what: &'static str, bytes: &[u8; 33]) -> Result<(), DecodeError> {
    if bytes[0] != 2 && bytes[0] != 3 {
        return Err(DecodeError::invalid(
            what,
            "not a compressed point (prefix must be 02 or 03)",
        ));
    }
    k256::PublicKey::from_sec1_bytes(bytes)
        .map(|_| ())
        .map_err(|_| DecodeError::invalid(what, "not a point on secp256k1"))
}

pub(crate) fn point_bytes(point: &NonZero<Point<Secp256k1>>) -> [u8; 33] {
    let encoded = point.to_bytes(true);
    let mut out = [0u8; 33];
    out.copy_from_slice(&encoded);
    out
}

/// The public key of a threshold ECDSA group, with the Ethereum address it controls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupPublicKey {
    key: [u8; 33],
}

impl GroupPublicKey {
    /// Wraps a compressed SEC1 public key.
    ///
    /// # Errors
    /// [`DecodeError::Invalid`] if the bytes are not a compressed secp256k1 point.
    pub fn from_compressed(key: [u8; 33]) -> Result<Self, DecodeError> {
        check_point("group key", &key)?;
        Ok(GroupPublicKey { key })
    }

    /// The compressed SEC1 encoding (33 bytes).
    pub fn compressed(&self) -> &[u8; 33] {
        &self.key
    }

    /// The uncompressed SEC1 encoding (65 bytes, `04 ‖ x ‖ y`).
    pub fn uncompressed(&self) -> [u8; 65] {
        let pk = self.verifying_key();
        let encoded = pk.to_encoded_point(false);
        let mut out = [0u8; 65];
        out.copy_from_slice(encoded.as_bytes());
        out
    }

    /// The key as a `k256` verifying key, for independent signature checks.
    pub fn verifying_key(&self) -> k256::ecdsa::VerifyingKey {
        k256::ecdsa::VerifyingKey::from_sec1_bytes(&self.key)
            .expect("validated when the group key was constructed")
    }

    /// The Ethereum address: the last 20 bytes of keccak256 of the uncompressed key
    /// without its `04` prefix (Ethereum Yellow Paper, appendix F).
    pub fn address(&self) -> [u8; 20] {
        address_of(&self.verifying_key())
    }

    /// The address in EIP-55 mixed-case checksum form, `0x`-prefixed.
    pub fn checksum_address(&self) -> String {
        checksum_address(&self.address())
    }

    /// Encodes the key (see `docs/formats/ecdsa-messages.md`).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(TypeTag::GroupKey);
        w.fixed(&self.key);
        w.finish()
    }

    /// Decodes a group key.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the malformed field.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, TypeTag::GroupKey)?;
        let key = r.array::<33>("group key")?;
        r.finish()?;
        Self::from_compressed(key)
    }
}

/// The Ethereum address of a `k256` public key.
pub(crate) fn address_of(key: &k256::ecdsa::VerifyingKey) -> [u8; 20] {
    let encoded = key.to_encoded_point(false);
    let digest = Keccak256::digest(&encoded.as_bytes()[1..]);
    let mut out = [0u8; 20];
    out.copy_from_slice(&digest[12..]);
    out
}

/// EIP-55: a hex letter is upper case when the matching nibble of keccak256(lower-case
/// hex address) is 8 or more.
pub fn checksum_address(address: &[u8; 20]) -> String {
    let lower = hex::encode(address);
    let digest = Keccak256::digest(lower.as_bytes());
    let mut out = String::with_capacity(42);
    out.push_str("0x");
    for (i, c) in lower.chars().enumerate() {
        let nibble = (digest[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
        if c.is_ascii_alphabetic() && nibble >= 8 {
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Two safe primes for a participant's Paillier key, generated ahead of an
/// auxiliary-info ceremony (it is the slow part: seconds to minutes per prime).
///
/// # Security
/// The primes are the participant's Paillier secret key. Store them encrypted, use them
/// for one ceremony only and delete them afterwards. `Debug` prints `<redacted>`; there
/// is no `Clone`. The big integers live in GMP memory that `cggmp21`/`rug` do not zeroize
/// on drop; the encoded bytes this type hands out are zeroized.
pub struct PaillierPrimes(pub(crate) cggmp21::PregeneratedPrimes<SecurityLevel128>);

impl fmt::Debug for PaillierPrimes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PaillierPrimes(<redacted>)")
    }
}

/// Progress of [`PaillierPrimes::generate`]: `done` of `total` safe primes found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrimeProgress {
    /// Primes found so far.
    pub done: u8,
    /// Primes needed.
    pub total: u8,
}

impl PaillierPrimes {
    /// Bits of each safe prime (4 × the 384-bit security parameter of CGGMP21's
    /// `SecurityLevel128`; the Paillier modulus has 3072 bits).
    pub const PRIME_BITS: u32 = 4 * <SecurityLevel128 as KeygenSecurityLevel>::SECURITY_BITS;

    /// Generates the two safe primes, calling `progress` after each one.
    ///
    /// This is the slow part of auxiliary-info generation; run it before the ceremony
    /// (and show `progress`), then hand the result to [`crate::AuxInfoSession::start`].
    pub fn generate<R: RngCore + rand_core::CryptoRng>(
        rng: &mut R,
        mut progress: impl FnMut(PrimeProgress),
    ) -> Self {
        progress(PrimeProgress { done: 0, total: 2 });
        let p = cggmp21::fast_paillier::utils::generate_safe_prime(rng, Self::PRIME_BITS);
        progress(PrimeProgress { done: 1, total: 2 });
        let q = cggmp21::fast_paillier::utils::generate_safe_prime(rng, Self::PRIME_BITS);
        progress(PrimeProgress { done: 2, total: 2 });
        PaillierPrimes(
            cggmp21::PregeneratedPrimes::new(p, q)
                .expect("generated primes have exactly PRIME_BITS bits"),
        )
    }

    /// Exports the primes for the encrypted keystore.
    ///
    /// # Security
    /// The result is a Paillier secret key in the clear. Encrypt it before it touches a disk.
    pub fn to_secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        let cbor = Zeroizing::new(to_cbor(&self.0).expect("primes always serialize"));
        let mut w = Writer::new(TypeTag::PaillierPrimes);
        w.var(&cbor);
        Zeroizing::new(w.finish())
    }

    /// Restores primes exported with [`PaillierPrimes::to_secret_bytes`].
    ///
    /// # Errors
    /// A [`DecodeError`] naming the malformed field; primes of the wrong size are refused.
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, TypeTag::PaillierPrimes)?;
        let cbor = r.var("primes", 4096)?;
        r.finish()?;
        let primes: cggmp21::PregeneratedPrimes<SecurityLevel128> = from_cbor("primes", cbor)?;
        let (p, q) = primes.split();
        cggmp21::PregeneratedPrimes::new(p, q)
            .map(PaillierPrimes)
            .ok_or_else(|| DecodeError::invalid("primes", "primes are too small"))
    }
}

/// A participant's auxiliary info (its Paillier secret key and every party's public
/// Paillier and ring-Pedersen parameters), the output of [`crate::AuxInfoSession`].
///
/// Secret; `Debug` prints `<redacted>`; no `Clone`. Combine it with the key generation
/// output through [`crate::KeygenSession::finish`].
pub struct EcdsaAuxInfo {
    pub(crate) inner: cggmp21::key_share::AuxInfo<SecurityLevel128>,
    pub(crate) ceremony_id: [u8; 16],
}

impl fmt::Debug for EcdsaAuxInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EcdsaAuxInfo(<redacted>)")
    }
}

/// Longest CBOR-encoded CGGMP21 key share a [`EcdsaKeyShare`] encoding may carry.
const MAX_KEY_SHARE_CBOR: usize = MAX_CBOR_LEN;

/// One participant's share of a threshold ECDSA key: the CGGMP21 key share (secret share,
/// Paillier secret key, every party's public data) plus the plan index and key id.
///
/// Zeroized where the library allows (the secret share scalar zeroizes on drop; the
/// Paillier primes live in GMP memory that is not); `Debug` prints `<redacted>`; no
/// `Clone`. The only export is [`EcdsaKeyShare::to_secret_bytes`].
///
/// # Security
/// A key share and its backups never carry presignatures: they live in the device's
/// [`crate::PresignatureStore`], and a device restored from a backup must generate new
/// ones (presignatures from before the backup are lost, never reused).
pub struct EcdsaKeyShare {
    pub(crate) inner: cggmp21::KeyShare<Secp256k1, SecurityLevel128>,
    pub(crate) key_id: [u8; 16],
    pub(crate) index: ParticipantIndex,
    pub(crate) group: GroupPublicKey,
}

impl fmt::Debug for EcdsaKeyShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcdsaKeyShare")
            .field("key_id", &hex::encode(self.key_id))
            .field("index", &self.index)
            .field("address", &self.group.checksum_address())
            .field("secrets", &"<redacted>")
            .finish()
    }
}

impl EcdsaKeyShare {
    pub(crate) fn new(
        inner: cggmp21::KeyShare<Secp256k1, SecurityLevel128>,
        key_id: [u8; 16],
    ) -> Result<Self, DecodeError> {
        let group = GroupPublicKey::from_compressed(point_bytes(&inner.shared_public_key))?;
        let index = inner
            .i
            .checked_add(1)
            .ok_or_else(|| DecodeError::invalid("key share", "index out of range"))?;
        if inner.vss_setup.is_none() {
            return Err(DecodeError::invalid(
                "key share",
                "not a threshold (VSS) key share",
            ));
        }
        Ok(EcdsaKeyShare {
            inner,
            key_id,
            index,
            group,
        })
    }

    /// The id of the key: the ceremony id of the plan that generated it.
    pub fn key_id(&self) -> &[u8; 16] {
        &self.key_id
    }

    /// This participant's index in the key plan (from 1).
    pub fn index(&self) -> ParticipantIndex {
        self.index
    }

    /// Signers needed.
    pub fn threshold(&self) -> u16 {
        self.inner
            .vss_setup
            .as_ref()
            .map(|v| v.min_signers)
            .unwrap_or(0)
    }

    /// Participants sharing the key.
    pub fn participants(&self) -> u16 {
        self.inner.public_shares.len() as u16
    }

    /// The group public key.
    pub fn group_key(&self) -> &GroupPublicKey {
        &self.group
    }

    /// Exports the share for the encrypted keystore or an encrypted backup.
    ///
    /// The export never contains presignatures (see the type's security note).
    ///
    /// # Security
    /// The result is the key share in the clear. Encrypt it before it touches a disk.
    pub fn to_secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        let cbor = Zeroizing::new(to_cbor(&self.inner).expect("key shares always serialize"));
        let mut w = Writer::new(TypeTag::KeyShare);
        w.fixed(&self.key_id)
            .u16(self.index)
            .fixed(self.group.compressed())
            .var(&cbor);
        Zeroizing::new(w.finish())
    }

    /// Restores a share exported with [`EcdsaKeyShare::to_secret_bytes`], re-validating
    /// it (CGGMP21's consistency checks, and that index and group key match).
    ///
    /// # Errors
    /// A [`DecodeError`] naming the malformed or inconsistent field.
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, TypeTag::KeyShare)?;
        let key_id = r.array::<16>("key id")?;
        let index = r.u16("participant index")?;
        let group = r.array::<33>("group key")?;
        check_point("group key", &group)?;
        let cbor = r.var("CGGMP21 key share", MAX_KEY_SHARE_CBOR)?;
        r.finish()?;
        let inner: cggmp21::KeyShare<Secp256k1, SecurityLevel128> =
            from_cbor("CGGMP21 key share", cbor)?;
        let share = Self::new(inner, key_id)?;
        if share.index != index {
            return Err(DecodeError::invalid(
                "participant index",
                format!(
                    "header says {index} but the key share is for {}",
                    share.index
                ),
            ));
        }
        if share.group.compressed() != &group {
            return Err(DecodeError::invalid(
                "group key",
                "header does not match the key share",
            ));
        }
        Ok(share)
    }
}
