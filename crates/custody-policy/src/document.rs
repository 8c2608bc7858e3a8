//! The policy document: what an admin quorum signs and every signer pins.

use custody_threshold::IdentityCard;
use thiserror::Error;

use crate::codec::{tagged_hash, DecodeError, Reader, TypeTag, Writer};

/// Most admin cards a quorum may list.
pub const MAX_ADMINS: usize = 32;
/// Most whitelist entries a document may hold.
pub const MAX_WHITELIST: usize = 4096;
/// Most rules a document may hold.
pub const MAX_RULES: usize = 256;
/// Longest destination address, in bytes.
pub const MAX_ADDRESS_LEN: usize = 128;
/// Longest asset identifier, in bytes.
pub const MAX_ASSET_LEN: usize = 16;
/// Longest encoded identity card, in bytes.
pub const MAX_CARD_LEN: usize = 512;

/// The BIP340 tag of the policy hash.
pub const POLICY_HASH_TAG: &str = "CoinPort/policy/document";

/// The chain a policy applies to. A policy never carries over between networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Network {
    /// Bitcoin mainnet.
    Bitcoin,
    /// Bitcoin testnet3.
    Testnet,
    /// Bitcoin testnet4.
    Testnet4,
    /// Signet.
    Signet,
    /// Regtest.
    Regtest,
}

impl Network {
    // Same byte values as `custody-threshold`'s network byte.
    fn to_byte(self) -> u8 {
        match self {
            Network::Bitcoin => 0,
            Network::Testnet => 1,
            Network::Signet => 2,
            Network::Regtest => 3,
            Network::Testnet4 => 4,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0 => Network::Bitcoin,
            1 => Network::Testnet,
            2 => Network::Signet,
            3 => Network::Regtest,
            4 => Network::Testnet4,
            _ => return None,
        })
    }

    /// The name `rust-bitcoin` and `custody-bitcoin`'s inspection use (`"bitcoin"`,
    /// `"testnet"`, `"testnet4"`, `"signet"`, `"regtest"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Bitcoin => "bitcoin",
            Network::Testnet => "testnet",
            Network::Testnet4 => "testnet4",
            Network::Signet => "signet",
            Network::Regtest => "regtest",
        }
    }
}

/// The admin quorum: any `threshold` distinct admins among `admins` may sign a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminQuorum {
    /// How many distinct admin signatures a policy needs (1 ..= `admins.len()`).
    pub threshold: u16,
    /// The admins' identity cards; signing keys must be distinct.
    pub admins: Vec<IdentityCard>,
}

impl AdminQuorum {
    /// Checks the threshold and that no signing key is listed twice.
    ///
    /// # Errors
    /// [`InvalidPolicyError::BadQuorum`] or [`InvalidPolicyError::DuplicateAdmin`].
    pub fn validate(&self) -> Result<(), InvalidPolicyError> {
        if self.admins.len() > MAX_ADMINS
            || self.threshold == 0
            || usize::from(self.threshold) > self.admins.len()
        {
            return Err(InvalidPolicyError::BadQuorum {
                threshold: self.threshold,
                admins: self.admins.len(),
            });
        }
        for (i, a) in self.admins.iter().enumerate() {
            if self.admins[..i]
                .iter()
                .any(|b| b.signing_key() == a.signing_key())
            {
                return Err(InvalidPolicyError::DuplicateAdmin {
                    fingerprint: a.fingerprint(),
                });
            }
        }
        Ok(())
    }

    /// The admin card with this signing key, if listed.
    pub fn admin(&self, signing_key: &[u8; 32]) -> Option<&IdentityCard> {
        self.admins.iter().find(|c| c.signing_key() == signing_key)
    }
}

/// A whitelisted destination and the time from which it may receive funds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WhitelistEntry {
    /// The destination address exactly as the signer's PSBT inspection renders it
    /// (bech32 addresses in lower case).
    pub address: String,
    /// Unix time (seconds) from which the entry is active; the activation delay is the
    /// gap between when it was added and this time.
    pub active_from: u64,
}

/// What a matching rule decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Allow once this many distinct human approvals are present (0 means none needed).
    Allow {
        /// Distinct approvals required.
        approvals: u16,
    },
    /// Refuse outright.
    Deny,
}

/// One first-match rule: applies to withdrawals of `asset` whose total is in
/// `min_amount_sat ..= max_amount_sat`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The asset identifier, e.g. `"BTC"`.
    pub asset: String,
    /// Smallest total (inclusive) this rule applies to, in satoshis.
    pub min_amount_sat: u64,
    /// Largest total (inclusive) this rule applies to, in satoshis.
    pub max_amount_sat: u64,
    /// What the rule decides.
    pub action: Action,
}

impl Rule {
    /// Whether the rule applies to a withdrawal of `asset` totalling `total_sat`.
    pub fn matches(&self, asset: &str, total_sat: u64) -> bool {
        self.asset == asset && (self.min_amount_sat..=self.max_amount_sat).contains(&total_sat)
    }
}

/// A versioned withdrawal policy. Rules are evaluated first-match with default deny.
///
/// Velocity limits over rolling windows and time-of-day windows (DESIGN.md) need state a
/// signer does not hold offline and are left to the coordinator; they are not part of
/// format version 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyDocument {
    /// Monotonic policy version; a successor must carry a larger one.
    pub version: u64,
    /// The network the policy applies to.
    pub network: Network,
    /// Unix time (seconds) from which the policy is in force.
    pub effective_from: u64,
    /// Largest total a single withdrawal may send, in satoshis, whatever the rules say.
    pub per_transaction_limit_sat: u64,
    /// The admins who may sign this policy's successor.
    pub admins: AdminQuorum,
    /// Destinations funds may go to.
    pub whitelist: Vec<WhitelistEntry>,
    /// First-match rules; no match means deny.
    pub rules: Vec<Rule>,
}

/// Why a policy document is not acceptable.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidPolicyError {
    /// The threshold is 0, larger than the admin list, or the list is too long.
    #[error(
        "admin quorum {threshold}-of-{admins} is not valid (need 1 <= k <= n <= {MAX_ADMINS})"
    )]
    BadQuorum {
        /// The threshold.
        threshold: u16,
        /// How many admins are listed.
        admins: usize,
    },
    /// The same admin signing key is listed twice.
    #[error("admin {fingerprint} is listed twice")]
    DuplicateAdmin {
        /// The admin's card fingerprint.
        fingerprint: String,
    },
    /// A whitelist address is empty, too long, or contains whitespace or control
    /// characters.
    #[error("whitelist address {address:?} is not 1 to {MAX_ADDRESS_LEN} bytes of printable text")]
    BadAddress {
        /// The address.
        address: String,
    },
    /// The same address is whitelisted twice.
    #[error("whitelist address {address} is listed twice")]
    DuplicateAddress {
        /// The address.
        address: String,
    },
    /// A rule is malformed.
    #[error("rule {index}: {reason}")]
    BadRule {
        /// The rule's position (0-based).
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A list is longer than the format allows.
    #[error("{what} has {found} entries, more than the maximum {max}")]
    TooMany {
        /// The list.
        what: &'static str,
        /// The maximum.
        max: usize,
        /// How many it has.
        found: usize,
    },
}

fn printable(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && !s.chars().any(|c| c.is_control() || c.is_whitespace())
}

impl PolicyDocument {
    /// Checks every invariant the encoding relies on.
    ///
    /// # Errors
    /// An [`InvalidPolicyError`] naming the offending quorum, entry or rule.
    pub fn validate(&self) -> Result<(), InvalidPolicyError> {
        self.admins.validate()?;
        if self.whitelist.len() > MAX_WHITELIST {
            return Err(InvalidPolicyError::TooMany {
                what: "whitelist",
                max: MAX_WHITELIST,
                found: self.whitelist.len(),
            });
        }
        if self.rules.len() > MAX_RULES {
            return Err(InvalidPolicyError::TooMany {
                what: "rules",
                max: MAX_RULES,
                found: self.rules.len(),
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        for e in &self.whitelist {
            if !printable(&e.address, MAX_ADDRESS_LEN) {
                return Err(InvalidPolicyError::BadAddress {
                    address: e.address.clone(),
                });
            }
            if !seen.insert(e.address.as_str()) {
                return Err(InvalidPolicyError::DuplicateAddress {
                    address: e.address.clone(),
                });
            }
        }
        for (index, r) in self.rules.iter().enumerate() {
            if !printable(&r.asset, MAX_ASSET_LEN) {
                return Err(InvalidPolicyError::BadRule {
                    index,
                    reason: "asset must be 1 to 16 bytes of printable text",
                });
            }
            if r.min_amount_sat > r.max_amount_sat {
                return Err(InvalidPolicyError::BadRule {
                    index,
                    reason: "minimum amount is above maximum amount",
                });
            }
        }
        Ok(())
    }

    /// The whitelist entry for `address`, if any.
    pub fn whitelist_entry(&self, address: &str) -> Option<&WhitelistEntry> {
        self.whitelist.iter().find(|e| e.address == address)
    }

    /// Encodes the document (see `docs/formats/policy.md`). The encoding is canonical:
    /// [`PolicyDocument::decode`] accepts exactly one byte string per valid document.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(TypeTag::PolicyDocument);
        self.write(&mut w);
        w.finish()
    }

    fn write(&self, w: &mut Writer) {
        w.u64(self.version);
        w.u8(self.network.to_byte());
        w.u64(self.effective_from);
        w.u64(self.per_transaction_limit_sat);
        w.u16(self.admins.threshold);
        w.count(self.admins.admins.len());
        for card in &self.admins.admins {
            w.var(&card.encode());
        }
        w.count(self.whitelist.len());
        for e in &self.whitelist {
            w.var(e.address.as_bytes());
            w.u64(e.active_from);
        }
        w.count(self.rules.len());
        for r in &self.rules {
            w.var(r.asset.as_bytes());
            w.u64(r.min_amount_sat);
            w.u64(r.max_amount_sat);
            match r.action {
                Action::Deny => {
                    w.u8(0);
                    w.u16(0);
                }
                Action::Allow { approvals } => {
                    w.u8(1);
                    w.u16(approvals);
                }
            }
        }
    }

    /// Decodes and validates a document.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the malformed field; an invalid document is
    /// [`DecodeError::Invalid`] with the [`InvalidPolicyError`] as the reason.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, TypeTag::PolicyDocument)?;
        let doc = Self::read(&mut r)?;
        r.finish()?;
        Ok(doc)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u64("policy version")?;
        let network_byte = r.u8("network")?;
        let network = Network::from_byte(network_byte).ok_or_else(|| {
            DecodeError::invalid("network", format!("unknown byte {network_byte}"))
        })?;
        let effective_from = r.u64("effective-from time")?;
        let per_transaction_limit_sat = r.u64("per-transaction limit")?;
        let threshold = r.u16("admin threshold")?;
        let n = r.count("admin count", MAX_ADMINS)?;
        let mut admins = Vec::with_capacity(n);
        for _ in 0..n {
            let card = IdentityCard::decode(r.var("admin card", MAX_CARD_LEN)?)
                .map_err(|e| DecodeError::invalid("admin card", e))?;
            admins.push(card);
        }
        let n = r.count("whitelist count", MAX_WHITELIST)?;
        let mut whitelist = Vec::with_capacity(n);
        for _ in 0..n {
            let address = r.string("whitelist address", MAX_ADDRESS_LEN)?;
            let active_from = r.u64("whitelist activation time")?;
            whitelist.push(WhitelistEntry {
                address,
                active_from,
            });
        }
        let n = r.count("rule count", MAX_RULES)?;
        let mut rules = Vec::with_capacity(n);
        for _ in 0..n {
            let asset = r.string("rule asset", MAX_ASSET_LEN)?;
            let min_amount_sat = r.u64("rule minimum amount")?;
            let max_amount_sat = r.u64("rule maximum amount")?;
            let action = match (r.u8("rule action")?, r.u16("rule approvals")?) {
                (0, 0) => Action::Deny,
                (1, approvals) => Action::Allow { approvals },
                (0, _) => {
                    return Err(DecodeError::invalid(
                        "rule approvals",
                        "must be 0 for a deny rule",
                    ))
                }
                (b, _) => {
                    return Err(DecodeError::invalid(
                        "rule action",
                        format!("unknown byte {b}"),
                    ))
                }
            };
            rules.push(Rule {
                asset,
                min_amount_sat,
                max_amount_sat,
                action,
            });
        }
        let doc = PolicyDocument {
            version,
            network,
            effective_from,
            per_transaction_limit_sat,
            admins: AdminQuorum { threshold, admins },
            whitelist,
            rules,
        };
        doc.validate()
            .map_err(|e| DecodeError::invalid("policy document", e))?;
        Ok(doc)
    }

    /// The policy hash: `tagged_hash("CoinPort/policy/document", encode())`. Decisions
    /// name the policy they were made under by this hash; admins sign it.
    pub fn hash(&self) -> [u8; 32] {
        tagged_hash(POLICY_HASH_TAG, &[&self.encode()])
    }
}
