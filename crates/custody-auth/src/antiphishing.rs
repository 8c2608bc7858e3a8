//! Anti-phishing codes: a phrase the user picks that every genuine email carries, so a
//! phishing email without it stands out.
//!
//! Rules: 4 to 20 characters; ASCII letters, digits, `-` and `_`, and single spaces
//! between words. Nothing else is allowed, so the code can go into an email header or an
//! HTML body without any escaping and cannot inject a header line.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// Shortest code.
pub const ANTI_PHISHING_MIN_LEN: usize = 4;
/// Longest code.
pub const ANTI_PHISHING_MAX_LEN: usize = 20;
/// The email header that carries the code.
pub const ANTI_PHISHING_HEADER: &str = "X-CoinPort-Anti-Phishing-Code";

/// Why a code was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AntiPhishingCodeError {
    /// Too short or too long.
    #[error("the anti-phishing code must be {ANTI_PHISHING_MIN_LEN} to {ANTI_PHISHING_MAX_LEN} characters, not {found}")]
    Length {
        /// Characters given.
        found: usize,
    },
    /// A character outside the allowed set (a control character, a symbol, a non-ASCII
    /// letter).
    #[error("the anti-phishing code may hold only letters A-Z, digits, '-', '_' and single spaces; character {position} is not allowed")]
    Character {
        /// 1-based position of the first bad character.
        position: usize,
    },
    /// Leading, trailing or doubled spaces.
    #[error("the anti-phishing code may not start or end with a space or hold two in a row")]
    Spaces,
}

/// A validated anti-phishing code.
#[derive(Clone, PartialEq, Eq)]
pub struct AntiPhishingCode(String);

impl AntiPhishingCode {
    /// Checks a code as the user typed it.
    ///
    /// # Errors
    /// [`AntiPhishingCodeError`] naming the rule broken.
    pub fn parse(input: &str) -> Result<Self, AntiPhishingCodeError> {
        let len = input.chars().count();
        if let Some((i, _)) = input
            .chars()
            .enumerate()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ' ')))
        {
            return Err(AntiPhishingCodeError::Character { position: i + 1 });
        }
        if !(ANTI_PHISHING_MIN_LEN..=ANTI_PHISHING_MAX_LEN).contains(&len) {
            return Err(AntiPhishingCodeError::Length { found: len });
        }
        if input.starts_with(' ') || input.ends_with(' ') || input.contains("  ") {
            return Err(AntiPhishingCodeError::Spaces);
        }
        Ok(AntiPhishingCode(input.to_owned()))
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The header name and value to add to every email (`X-CoinPort-Anti-Phishing-Code`).
    pub fn email_header(&self) -> (&'static str, &str) {
        (ANTI_PHISHING_HEADER, &self.0)
    }

    /// The first line of every email body.
    pub fn email_body_line(&self) -> String {
        format!("Your CoinPort anti-phishing code: {}", self.0)
    }
}

impl fmt::Debug for AntiPhishingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not a secret, but whoever learns it can make a phishing email look genuine:
        // keep it out of logs.
        f.write_str("AntiPhishingCode(<redacted>)")
    }
}

impl Serialize for AntiPhishingCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AntiPhishingCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        AntiPhishingCode::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_code_renders_into_header_and_body() {
        let c = AntiPhishingCode::parse("Blue Otter-42").expect("ok");
        assert_eq!(
            c.email_header(),
            ("X-CoinPort-Anti-Phishing-Code", "Blue Otter-42")
        );
        assert_eq!(
            c.email_body_line(),
            "Your CoinPort anti-phishing code: Blue Otter-42"
        );
        assert!(!format!("{c:?}").contains("Otter"));
    }

    #[test]
    fn header_injection_control_characters_and_odd_lengths_are_refused() {
        assert_eq!(
            AntiPhishingCode::parse("abcd\r\nBcc: x@evil.example"),
            Err(AntiPhishingCodeError::Character { position: 5 })
        );
        assert_eq!(
            AntiPhishingCode::parse("tab\there"),
            Err(AntiPhishingCodeError::Character { position: 4 })
        );
        assert_eq!(
            AntiPhishingCode::parse("<b>hi</b>"),
            Err(AntiPhishingCodeError::Character { position: 1 })
        );
        assert_eq!(
            AntiPhishingCode::parse("café"),
            Err(AntiPhishingCodeError::Character { position: 4 })
        );
        assert_eq!(
            AntiPhishingCode::parse("abc"),
            Err(AntiPhishingCodeError::Length { found: 3 })
        );
        assert_eq!(
            AntiPhishingCode::parse(&"a".repeat(21)),
            Err(AntiPhishingCodeError::Length { found: 21 })
        );
        assert_eq!(
            AntiPhishingCode::parse(" abcd"),
            Err(AntiPhishingCodeError::Spaces)
        );
        assert_eq!(
            AntiPhishingCode::parse("ab  cd"),
            Err(AntiPhishingCodeError::Spaces)
        );
        assert!(serde_json::from_str::<AntiPhishingCode>("\"a\\nbcd\"").is_err());
    }
}
