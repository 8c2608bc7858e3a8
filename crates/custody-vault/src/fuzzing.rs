//! Entry point for the fuzz harness (`fuzz/`): [`do_test`] takes arbitrary bytes and
//! panics only on a bug in the blob decoder or in opening.

use std::sync::OnceLock;

use rand_core::{CryptoRng, RngCore};

use crate::blob::{Purpose, SealedBlob};
use crate::keys::VaultKeys;

/// A fixed, non-random byte source so the fuzz key set is the same in every run.
struct Counter(u8);

impl RngCore for Counter {
    fn next_u32(&mut self) -> u32 {
        rand_core::impls::next_u32_via_fill(self)
    }
    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_fill(self)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            self.0 = self.0.wrapping_add(1);
            *b = self.0;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

// Only for the fixed fuzz keys below; never used for real secrets.
impl CryptoRng for Counter {}

/// The fixed key set the fuzz target opens blobs with (KEKs 1 and 2).
pub fn fuzz_keys() -> &'static VaultKeys {
    static KEYS: OnceLock<VaultKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = Counter(0);
        let mut keys = VaultKeys::generate_with_rng(&mut rng);
        keys.add_kek_with_rng(&mut rng)
            .expect("a fresh key set has room for a second kek");
        keys
    })
}

/// Record id the corpus seeds are sealed for.
pub const FUZZ_RECORD_ID: &[u8] = b"fuzz-record-1";

/// A few valid blobs for the fuzz corpus, sealed with [`fuzz_keys`] for
/// [`FUZZ_RECORD_ID`].
pub fn corpus_seeds() -> Vec<Vec<u8>> {
    let keys = fuzz_keys();
    let mut rng = Counter(100);
    [
        (Purpose::Secret, &b""[..]),
        (Purpose::TotpSecret, &b"JBSWY3DPEHPK3PXP"[..]),
        (Purpose::CoordinatorIdentity, &[7u8; 64][..]),
    ]
    .iter()
    .filter_map(|(purpose, plain)| {
        keys.seal_with_rng(&mut rng, *purpose, FUZZ_RECORD_ID, plain)
            .ok()
            .map(|b| b.to_bytes())
    })
    .collect()
}

/// Decodes `data` as a sealed blob; on success checks the re-encoding is byte for byte
/// the input and that the text form round-trips, then opens it as each purpose and
/// opens the KYC form; errors must format to a non-empty message.
pub fn do_test(data: &[u8]) {
    match SealedBlob::from_bytes(data) {
        Ok(blob) => {
            assert_eq!(blob.to_bytes(), data, "blob re-encoding differs from input");
            let again = SealedBlob::from_text(&blob.to_text()).expect("own text form decodes");
            assert_eq!(again, blob, "text round trip changed the blob");
            let keys = fuzz_keys();
            for purpose in [
                Purpose::KycRecord,
                Purpose::TotpSecret,
                Purpose::CoordinatorIdentity,
                Purpose::Secret,
            ] {
                if let Err(e) = keys.open(purpose, FUZZ_RECORD_ID, &blob) {
                    assert!(!e.to_string().is_empty());
                }
                if let Ok(rewrapped) = keys.rewrap(purpose, FUZZ_RECORD_ID, &blob) {
                    assert_eq!(rewrapped.kek_id(), keys.current_kek_id());
                }
            }
            if let Err(e) = keys.open_kyc(FUZZ_RECORD_ID, &blob) {
                assert!(!e.to_string().is_empty());
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = SealedBlob::from_text(text) {
            assert!(!e.to_string().is_empty());
        }
    }
}
