//! The identity fingerprint as words to read aloud (`identity show --words`).
//!
//! # Mapping
//! The fingerprint's 10 bytes (its 20 hex digits, dashes removed) are read as one 80-bit
//! big-endian number and cut into 11-bit chunks, most significant first: seven full chunks
//! and a last chunk of 3 bits, padded on the right with 8 zero bits. Each chunk (0 to 2047)
//! is an index into the BIP39 English wordlist, giving 8 words. There is no checksum: the
//! words only replace the hex digits when two people compare a fingerprint by voice.
//! These words are not a BIP39 mnemonic and encode no secret.

use anyhow::{Context, Result};

/// How many words a fingerprint reads as.
pub const FINGERPRINT_WORDS: usize = 8;

/// The words for a fingerprint `XXXX-XXXX-XXXX-XXXX-XXXX` (see the module documentation).
///
/// # Errors
/// When `fingerprint` is not 20 hex digits (dashes ignored).
pub fn fingerprint_words(fingerprint: &str) -> Result<[&'static str; FINGERPRINT_WORDS]> {
    let digits: String = fingerprint.chars().filter(|&c| c != '-').collect();
    let bytes: [u8; 10] = hex::decode(&digits)
        .ok()
        .and_then(|b| b.try_into().ok())
        .with_context(|| {
            format!(
                "{fingerprint:?} is not a fingerprint of 20 hex digits; this is a bug, report it"
            )
        })?;
    // 80 bits, then 8 zero bits of padding, as the top 88 bits of a u128.
    let mut value = 0u128;
    for b in bytes {
        value = (value << 8) | u128::from(b);
    }
    value <<= 8;
    let list = bip39::Language::English.word_list();
    let mut words = [""; FINGERPRINT_WORDS];
    for (k, word) in words.iter_mut().enumerate() {
        let shift = 11 * (FINGERPRINT_WORDS - 1 - k);
        let index = usize::try_from((value >> shift) & 0x7ff).unwrap_or(0);
        *word = list[index];
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_zero_and_all_one_fingerprints_map_to_known_words() {
        assert_eq!(
            fingerprint_words("0000-0000-0000-0000-0000").expect("valid"),
            ["abandon"; 8]
        );
        let ones = fingerprint_words("FFFF-FFFF-FFFF-FFFF-FFFF").expect("valid");
        assert_eq!(ones[..7], ["zoo"; 7]);
        // 0b111 then 8 padding zeros: index 1792.
        assert_eq!(ones[7], bip39::Language::English.word_list()[1792]);
    }

    #[test]
    fn the_first_word_is_the_top_11_bits() {
        // 0x0020 = 0b0000_0000_0010_0000: top 11 bits are 0b00000000001 = index 1.
        let w = fingerprint_words("0020-0000-0000-0000-0000").expect("valid");
        assert_eq!(w[0], "ability");
        assert_eq!(w[1..], ["abandon"; 7]);
    }

    #[test]
    fn a_malformed_fingerprint_is_an_error() {
        assert!(fingerprint_words("XYZ").is_err());
        assert!(fingerprint_words("0000-0000").is_err());
    }
}
