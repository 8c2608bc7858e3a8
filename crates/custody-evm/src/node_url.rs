//! Node URLs that may carry credentials, shown only by their origin.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::EvmError;

/// The URL of a JSON-RPC node (`http://` or `https://`).
///
/// Providers put API keys in the path (`/v3/<key>`), the query or the user information,
/// so `Debug`, `Display` and every error show only the origin, `scheme://host:port`. The
/// full URL is reached through [`NodeUrl::expose_secret`].
#[derive(Clone, PartialEq, Eq)]
pub struct NodeUrl(url::Url);

impl NodeUrl {
    /// Parses and checks a node URL.
    ///
    /// # Errors
    /// [`EvmError::Config`] for an unparsable URL or a scheme other than `http`/`https`;
    /// the message never repeats the URL.
    pub fn parse(text: &str) -> Result<Self, EvmError> {
        let url = url::Url::parse(text).map_err(|e| EvmError::Config {
            reason: format!("the node URL does not parse: {e}"),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(EvmError::Config {
                reason: format!(
                    "the node URL must be http:// or https://, not {}://",
                    url.scheme()
                ),
            });
        }
        if url.host_str().is_none() {
            return Err(EvmError::Config {
                reason: "the node URL has no host".into(),
            });
        }
        Ok(Self(url))
    }

    /// The origin, `scheme://host:port`, safe to log.
    pub fn origin(&self) -> String {
        self.0.origin().ascii_serialization()
    }

    /// The full URL, with whatever credentials it carries.
    pub fn expose_secret(&self) -> &url::Url {
        &self.0
    }
}

impl fmt::Display for NodeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin())
    }
}

impl fmt::Debug for NodeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nothing_hidden = self.0.username().is_empty()
            && self.0.password().is_none()
            && self.0.query().is_none()
            && matches!(self.0.path(), "" | "/");
        if nothing_hidden {
            write!(f, "NodeUrl({})", self.origin())
        } else {
            write!(f, "NodeUrl({}/<redacted>)", self.origin())
        }
    }
}

impl std::str::FromStr for NodeUrl {
    type Err = EvmError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for NodeUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for NodeUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}
