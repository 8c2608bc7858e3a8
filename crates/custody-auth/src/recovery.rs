//! Recovery codes: single-use look-up secrets for a user who lost their authenticator.
//!
//! [`generate_recovery_codes`] makes N codes (default 10) of 16 Crockford base32 characters
//! (80 bits) in four groups, `7K3M-Q9XZ-D4TB-W2HP`, returned once for the user to write down,
//! and a [`RecoveryCodeSet`] holding only their keyed hashes. Regenerating makes a set of the
//! next generation that replaces the old one: the old codes are bound to the old generation
//! and match nothing in the new set. Typing is forgiving: case, spaces and hyphens are
//! ignored, and `O`, `I`, `L` read as `0`, `1`, `1`.

use std::fmt;

use serde::{Deserialize, Serialize};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::keys::{keyed_hash, random_below, HashKey};

const DOMAIN: &str = "custody-auth/recovery/v1";
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters per code (without separators).
pub const RECOVERY_CODE_CHARS: usize = 16;
/// Codes per set unless told otherwise.
pub const DEFAULT_RECOVERY_CODES: usize = 10;
/// Most codes a set may have.
pub const MAX_RECOVERY_CODES: usize = 20;

/// The codes in clear, shown to the user once.
///
/// # Security
/// Zeroized on drop, redacted in `Debug`, no `Display`.
pub struct RecoveryCodes(Vec<Zeroizing<String>>);

impl RecoveryCodes {
    /// The codes, grouped for reading (`XXXX-XXXX-XXXX-XXXX`).
    pub fn expose_secret(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|c| c.as_str())
    }

    /// How many codes there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none (never, for a generated set).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for RecoveryCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecoveryCodes({} codes, <redacted>)", self.0.len())
    }
}

/// One stored code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoverySlot {
    /// HMAC-SHA256 of the normalised code.
    #[serde(with = "crate::keys::hex32")]
    pub hash: [u8; 32],
    /// When it was used, if it was.
    pub used_at: Option<i64>,
}

/// What the coordinator stores per account: one row (JSON) or a row per slot with the
/// generation. Replace the whole set on regeneration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryCodeSet {
    /// Starts at 1 and goes up by one on each regeneration.
    pub generation: u32,
    /// When the set was made.
    pub created_at: i64,
    /// The codes' hashes and use marks.
    pub slots: Vec<RecoverySlot>,
}

/// Why recovery codes could not be made or a code was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// The requested number of codes is out of range.
    #[error("a recovery set has 1 to {MAX_RECOVERY_CODES} codes, not {found}")]
    Count {
        /// The number asked for.
        found: usize,
    },
    /// The code matches nothing in the current set.
    #[error("this recovery code is not valid")]
    NoMatch,
    /// The code was already used.
    #[error("this recovery code was already used")]
    AlreadyUsed,
}

fn normalise(input: &str) -> Zeroizing<String> {
    Zeroizing::new(
        input
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(|c| match c.to_ascii_uppercase() {
                'O' => '0',
                'I' | 'L' => '1',
                other => other,
            })
            .collect(),
    )
}

fn hash(key: &HashKey, context: &str, generation: u32, normalised: &str) -> [u8; 32] {
    keyed_hash(
        key.expose_secret(),
        DOMAIN,
        &[
            context.as_bytes(),
            &generation.to_be_bytes(),
            normalised.as_bytes(),
        ],
    )
}

fn new_code() -> Zeroizing<String> {
    let mut code = Zeroizing::new(String::with_capacity(RECOVERY_CODE_CHARS + 3));
    for i in 0..RECOVERY_CODE_CHARS {
        if i > 0 && i % 4 == 0 {
            code.push('-');
        }
        let idx = usize::try_from(random_below(32)).expect("below 32");
        code.push(char::from(ALPHABET[idx]));
    }
    code
}

/// Makes a new set of `count` codes for the account named by `context`, replacing
/// `previous` (whose codes stop working: the new set has the next generation).
///
/// # Errors
/// [`RecoveryError::Count`] for zero or more than [`MAX_RECOVERY_CODES`].
pub fn generate_recovery_codes(
    key: &HashKey,
    context: &str,
    count: usize,
    previous: Option<&RecoveryCodeSet>,
    now: i64,
) -> Result<(RecoveryCodes, RecoveryCodeSet), RecoveryError> {
    if !(1..=MAX_RECOVERY_CODES).contains(&count) {
        return Err(RecoveryError::Count { found: count });
    }
    let generation = previous.map_or(1, |p| p.generation.saturating_add(1));
    let mut codes = Vec::with_capacity(count);
    let mut slots = Vec::with_capacity(count);
    while codes.len() < count {
        let code = new_code();
        let h = hash(key, context, generation, &normalise(&code));
        // 80-bit codes do not collide in practice; the check keeps "N codes" exact.
        if slots.iter().any(|s: &RecoverySlot| s.hash == h) {
            continue;
        }
        slots.push(RecoverySlot {
            hash: h,
            used_at: None,
        });
        codes.push(code);
    }
    Ok((
        RecoveryCodes(codes),
        RecoveryCodeSet {
            generation,
            created_at: now,
            slots,
        },
    ))
}

impl RecoveryCodeSet {
    /// Uses the code `input`: marks its slot used and returns how many unused codes are
    /// left. Every slot is compared, in constant time, whatever matches.
    ///
    /// # Errors
    /// [`RecoveryError::NoMatch`] or [`RecoveryError::AlreadyUsed`].
    pub fn redeem(
        &mut self,
        key: &HashKey,
        context: &str,
        input: &str,
        now: i64,
    ) -> Result<usize, RecoveryError> {
        let candidate = hash(key, context, self.generation, &normalise(input));
        let mut found = subtle::Choice::from(0);
        let mut index = 0u64;
        for (i, slot) in self.slots.iter().enumerate() {
            let hit = slot.hash.ct_eq(&candidate);
            index.conditional_assign(&u64::try_from(i).unwrap_or(u64::MAX), hit);
            found |= hit;
        }
        if !bool::from(found) {
            return Err(RecoveryError::NoMatch);
        }
        let slot = usize::try_from(index)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
            .ok_or(RecoveryError::NoMatch)?;
        if slot.used_at.is_some() {
            return Err(RecoveryError::AlreadyUsed);
        }
        slot.used_at = Some(now);
        Ok(self.remaining())
    }

    /// Unused codes left.
    pub fn remaining(&self) -> usize {
        self.slots.iter().filter(|s| s.used_at.is_none()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn ten_readable_codes_by_default_each_usable_once() {
        let key = HashKey::generate();
        let (codes, mut set) =
            generate_recovery_codes(&key, "acct:1", DEFAULT_RECOVERY_CODES, None, NOW).expect("ok");
        assert_eq!(codes.len(), 10);
        let list: Vec<String> = codes.expose_secret().map(str::to_owned).collect();
        for c in &list {
            assert_eq!(c.len(), 19, "{c}");
            assert_eq!(c.split('-').count(), 4);
            assert!(c.bytes().all(|b| b == b'-' || ALPHABET.contains(&b)));
        }
        assert_eq!(set.redeem(&key, "acct:1", &list[3], NOW), Ok(9));
        assert_eq!(
            set.redeem(&key, "acct:1", &list[3], NOW),
            Err(RecoveryError::AlreadyUsed)
        );
        // Sloppy typing is forgiven.
        let sloppy = list[4]
            .to_lowercase()
            .replace('-', " ")
            .replace('0', "o")
            .replace('1', "l");
        assert_eq!(set.redeem(&key, "acct:1", &sloppy, NOW), Ok(8));
        assert_eq!(
            set.redeem(&key, "acct:2", &list[5], NOW),
            Err(RecoveryError::NoMatch)
        );
        assert_eq!(
            set.redeem(&key, "acct:1", "0000-0000-0000-0000", NOW),
            Err(RecoveryError::NoMatch)
        );
        assert!(format!("{codes:?}").contains("redacted"));
        let json = serde_json::to_string(&set).expect("json");
        for c in &list {
            assert!(!json.contains(c.as_str()));
        }
    }

    #[test]
    fn regenerating_invalidates_every_old_code() {
        let key = HashKey::generate();
        let (old, old_set) = generate_recovery_codes(&key, "acct:1", 5, None, NOW).expect("ok");
        let (new, mut new_set) =
            generate_recovery_codes(&key, "acct:1", 5, Some(&old_set), NOW + 1).expect("ok");
        assert_eq!(new_set.generation, 2);
        for c in old.expose_secret() {
            assert_eq!(
                new_set.redeem(&key, "acct:1", c, NOW),
                Err(RecoveryError::NoMatch)
            );
        }
        let first = new.expose_secret().next().expect("one").to_owned();
        assert_eq!(new_set.redeem(&key, "acct:1", &first, NOW), Ok(4));
    }

    #[test]
    fn the_count_is_bounded() {
        let key = HashKey::generate();
        assert_eq!(
            generate_recovery_codes(&key, "a", 0, None, NOW).map(|_| ()),
            Err(RecoveryError::Count { found: 0 })
        );
        assert_eq!(
            generate_recovery_codes(&key, "a", 21, None, NOW).map(|_| ()),
            Err(RecoveryError::Count { found: 21 })
        );
    }
}
