//! The server's hashing key, keyed hashes and random values shared by the modules.

use std::fmt;

use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Length of a [`HashKey`] in bytes.
pub const HASH_KEY_LEN: usize = 32;

/// The server key one-time codes and recovery codes are hashed with (HMAC-SHA256).
///
/// A database dump without this key does not let anyone test guesses offline: with only
/// 6 to 8 digits an unkeyed hash would fall to a brute force in well under a second. The
/// coordinator keeps it outside the database (for example sealed by `custody-vault` or in
/// its own 0600 file) and passes it in.
///
/// # Security
/// Zeroized on drop; `Debug` prints `<redacted>`; no `Display`, `Clone` or `Serialize`.
pub struct HashKey(Zeroizing<[u8; HASH_KEY_LEN]>);

impl HashKey {
    /// Wraps 32 bytes of key material.
    pub fn from_bytes(bytes: [u8; HASH_KEY_LEN]) -> Self {
        HashKey(Zeroizing::new(bytes))
    }

    /// Draws a fresh key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; HASH_KEY_LEN]);
        OsRng.fill_bytes(bytes.as_mut());
        HashKey(bytes)
    }

    /// The key bytes, for sealing them away.
    pub fn expose_secret(&self) -> &[u8; HASH_KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashKey(<redacted>)")
    }
}

/// HMAC-SHA256 over a domain label and length-prefixed fields, so no two different field
/// lists can produce the same input.
pub(crate) fn keyed_hash(key: &[u8], domain: &str, fields: &[&[u8]]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC-SHA256 accepts keys of any length");
    mac.update(domain.as_bytes());
    mac.update(&[0]);
    for field in fields {
        let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
        mac.update(&len.to_be_bytes());
        mac.update(field);
    }
    mac.finalize().into_bytes().into()
}

/// Constant-time equality of two digests.
pub(crate) fn digests_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// `n` random bytes from the operating system's CSPRNG.
pub(crate) fn random_bytes<const N: usize>() -> Zeroizing<[u8; N]> {
    let mut bytes = Zeroizing::new([0u8; N]);
    OsRng.fill_bytes(bytes.as_mut());
    bytes
}

/// A uniformly random index below `bound` (rejection sampling, no modulo bias).
pub(crate) fn random_below(bound: u32) -> u32 {
    debug_assert!(bound > 0);
    let zone = u32::MAX - (u32::MAX % bound);
    loop {
        let v = OsRng.next_u32();
        if v < zone {
            return v % bound;
        }
    }
}

/// Serde helpers for 32-byte digests as lowercase hex.
pub(crate) mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_boundaries_change_the_hash() {
        let k = [7u8; 32];
        assert_ne!(
            keyed_hash(&k, "d", &[b"ab", b"c"]),
            keyed_hash(&k, "d", &[b"a", b"bc"])
        );
        assert_ne!(keyed_hash(&k, "d1", &[b"x"]), keyed_hash(&k, "d2", &[b"x"]));
        assert_ne!(
            keyed_hash(&k, "d", &[b"x"]),
            keyed_hash(&[8u8; 32], "d", &[b"x"])
        );
    }

    #[test]
    fn the_key_is_redacted() {
        assert_eq!(format!("{:?}", HashKey::generate()), "HashKey(<redacted>)");
    }

    #[test]
    fn random_below_stays_in_range_and_covers_it() {
        let mut seen = [false; 10];
        for _ in 0..1000 {
            let v = random_below(10) as usize;
            seen[v] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
