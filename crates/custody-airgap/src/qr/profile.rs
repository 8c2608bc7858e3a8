//! Density profiles: how much data each QR frame carries.

use super::ur_frames::UrKind;
use super::{MAX_MESSAGE_LEN, MAX_UR_PARTS};

/// How dense each QR frame is: a trade-off between frames per message and how easily a
/// camera reads each frame.
///
/// All profiles use error correction level **L** (about 7% of codewords recoverable). The
/// channel is a screen filmed by a camera at arm's length: frames are either read cleanly
/// or not at all, and a missed frame is replaced by the next fountain part, so the extra
/// redundancy of level M would buy little and cost 23% of every frame (a 700-byte signing
/// request would need three Normal frames instead of two). BBQr and Coldcard use L too.
///
/// The fragment size of each profile is computed so that the *worst-case* frame (the
/// longest UR type, a 10-digit sequence number, the largest fragment count and message
/// length) still fits the profile's QR version in alphanumeric mode; see
/// [`Profile::max_fragment_len`] and `docs/formats/qr.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Profile {
    /// QR version 8 (49×49 modules, 279 alphanumeric characters): for poor cameras and
    /// small screens.
    Low,
    /// QR version 16 (81×81 modules, 854 alphanumeric characters): the default, read by a
    /// laptop webcam or phone from a laptop screen.
    #[default]
    Normal,
    /// QR version 23 (109×109 modules, 1588 alphanumeric characters): for good cameras and
    /// large screens.
    High,
}

/// Bytes of CBOR needed for an unsigned integer of this value (major type 0).
const fn cbor_uint_len(value: u64) -> usize {
    if value < 24 {
        1
    } else if value <= 0xff {
        2
    } else if value <= 0xffff {
        3
    } else if value <= 0xffff_ffff {
        5
    } else {
        9
    }
}

/// Decimal digits of a value.
const fn decimal_digits(mut value: u64) -> usize {
    let mut digits = 1;
    while value >= 10 {
        value /= 10;
        digits += 1;
    }
    digits
}

/// Characters of the longest multi-part UR frame of this type carrying `fragment_len`
/// bytes: `UR:<type>/<seq>-<count>/<bytewords>`, where the bytewords encode the CBOR part
/// `[seq, count, message_len, checksum, bytes(fragment)]` plus a 4-byte CRC32, two
/// characters per byte.
pub(crate) const fn worst_case_frame_chars(type_len: usize, fragment_len: usize) -> usize {
    let max_seq = u32::MAX as u64;
    let max_count = MAX_UR_PARTS as u64;
    let max_len = MAX_MESSAGE_LEN as u64;
    let path = 3 + type_len + 1 + decimal_digits(max_seq) + 1 + decimal_digits(max_count) + 1;
    let cbor = 1 // array(5)
        + cbor_uint_len(max_seq)
        + cbor_uint_len(max_count)
        + cbor_uint_len(max_len)
        + cbor_uint_len(u32::MAX as u64) // checksum
        + cbor_uint_len(fragment_len as u64) // byte-string header
        + fragment_len;
    path + 2 * (cbor + 4)
}

impl Profile {
    /// The three profiles, from least to most dense.
    pub const ALL: [Profile; 3] = [Profile::Low, Profile::Normal, Profile::High];

    /// The QR version every frame of this profile fits in (8, 16 or 23).
    #[must_use]
    pub const fn qr_version(self) -> u8 {
        match self {
            Profile::Low => 8,
            Profile::Normal => 16,
            Profile::High => 23,
        }
    }

    /// Alphanumeric characters a QR code of this profile's version holds at error
    /// correction L (ISO/IEC 18004 table 7).
    #[must_use]
    pub const fn frame_capacity(self) -> usize {
        match self {
            Profile::Low => 279,
            Profile::Normal => 854,
            Profile::High => 1588,
        }
    }

    /// Largest fountain fragment, in bytes, such that any frame of a UR of this kind fits
    /// the profile's QR version.
    ///
    /// | profile | `crypto-psbt` | `coinport-envelope` |
    /// |---|---|---|
    /// | Low (v8) | 98 | 95 |
    /// | Normal (v16) | 385 | 382 |
    /// | High (v23) | 752 | 749 |
    #[must_use]
    pub const fn max_fragment_len(self, kind: UrKind) -> usize {
        let type_len = kind.ur_type().len();
        let capacity = self.frame_capacity();
        let mut fragment_len = capacity / 2;
        while fragment_len > 1 && worst_case_frame_chars(type_len, fragment_len) > capacity {
            fragment_len -= 1;
        }
        fragment_len
    }

    /// The profile's name in lower case (`low`, `normal`, `high`).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Profile::Low => "low",
            Profile::Normal => "normal",
            Profile::High => "high",
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Profile {
    type Err = String;

    /// Parses `low`, `normal` or `high` (any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown QR profile `{s}`; expected low, normal or high"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_lengths_match_the_documented_table() {
        let table: Vec<_> = Profile::ALL
            .iter()
            .map(|p| {
                (
                    p.max_fragment_len(UrKind::CryptoPsbt),
                    p.max_fragment_len(UrKind::Envelope),
                )
            })
            .collect();
        assert_eq!(table, [(98, 95), (385, 382), (752, 749)]);
    }

    #[test]
    fn worst_case_frame_fits_exactly() {
        for p in Profile::ALL {
            for kind in [UrKind::CryptoPsbt, UrKind::Envelope] {
                let f = p.max_fragment_len(kind);
                let t = kind.ur_type().len();
                assert!(worst_case_frame_chars(t, f) <= p.frame_capacity());
                assert!(worst_case_frame_chars(t, f + 1) > p.frame_capacity());
            }
        }
    }
}
