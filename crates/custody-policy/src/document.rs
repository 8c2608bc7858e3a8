//! The policy document: what an admin quorum signs and every signer pins.

use custody_threshold::IdentityCard;
use thiserror::Error;

use crate::codec::{tagged_hash, DecodeError, Reader, TypeTag, Writer};

/// Most admin cards a quorum may list.
pub const MAX_ADMINS: usize = 32;
/// Most approver cards a document may list.
pub const MAX_APPROVERS: usize = 64;
/// Most per-asset transaction limits a document may hold.
pub const MAX_LIMITS: usize = 256;
/// Most velocity limits a document may hold.
pub const MAX_VELOCITY_LIMITS: usize = 64;
/// Most whitelist entries a document may hold.
pub const MAX_WHITELIST: usize = 4096;
/// Most rules a document may hold.
pub const MAX_RULES: usize = 256;
/// Longest destination address, in bytes.
pub const MAX_ADDRESS_LEN: usize = 128;
/// Longest asset identifier, in bytes (room for `ERC20:0x` and a 40-digit hex address).
pub const MAX_ASSET_LEN: usize = 64;
/// Minutes in a day: time-window minutes are below this (the end may equal it).
pub const MINUTES_PER_DAY: u16 = 1440;
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

/// A per-transaction limit for one asset: the most a single withdrawal of `asset` may send,
/// whatever the rules say. An asset without a limit cannot be withdrawn at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionLimit {
    /// The asset identifier, e.g. `"BTC"` or `"ERC20:0xa0b8…"`.
    pub asset: String,
    /// The largest total (inclusive), in the asset's smallest unit (satoshis for `BTC`,
    /// wei for `ETH`, the token's base unit for an ERC-20).
    pub max_amount: u128,
}

/// A limit on what the wallet may send of one asset over a rolling window: the
/// withdrawals of the last `window_secs` seconds (those at times in `(now - window_secs,
/// now]`) plus the new one must stay within `max_total` and `max_count`.
///
/// Only the coordinator holds the history this needs, so velocity limits are checked by
/// [`VerifiedPolicy::evaluate_with_history`](crate::VerifiedPolicy::evaluate_with_history),
/// not by an offline signer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VelocityLimit {
    /// The asset identifier the limit applies to.
    pub asset: String,
    /// The length of the rolling window, in seconds (at least 1).
    pub window_secs: u64,
    /// The most that may leave within the window, new withdrawal included, in the asset's
    /// smallest unit.
    pub max_total: u128,
    /// The most withdrawals within the window, new withdrawal included.
    pub max_count: u32,
}

/// A recurring UTC time window in which a rule applies.
///
/// The window opens at `start_minute` on each day set in `days` and closes at
/// `end_minute` (exclusive). If `end_minute` is smaller than `start_minute` the window
/// wraps past midnight and closes on the next day; the minutes after midnight then belong
/// to the day the window opened (a Friday 22:00–02:00 window covers Saturday 01:00, not
/// Friday 01:00).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeWindow {
    /// Days on which the window opens: bit 0 Monday, bit 1 Tuesday, … bit 6 Sunday (ISO
    /// 8601 order). At least one bit set; bit 7 clear.
    pub days: u8,
    /// Minute of the UTC day at which the window opens, `0 ..= 1439`.
    pub start_minute: u16,
    /// Minute of the UTC day at which the window closes (exclusive), `1 ..= 1440`, and not
    /// equal to `start_minute`.
    pub end_minute: u16,
}

const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

impl TimeWindow {
    /// The bit of Monday in [`TimeWindow::days`].
    pub const MONDAY: u8 = 1;
    /// The bit of Tuesday.
    pub const TUESDAY: u8 = 1 << 1;
    /// The bit of Wednesday.
    pub const WEDNESDAY: u8 = 1 << 2;
    /// The bit of Thursday.
    pub const THURSDAY: u8 = 1 << 3;
    /// The bit of Friday.
    pub const FRIDAY: u8 = 1 << 4;
    /// The bit of Saturday.
    pub const SATURDAY: u8 = 1 << 5;
    /// The bit of Sunday.
    pub const SUNDAY: u8 = 1 << 6;
    /// Monday to Friday.
    pub const WEEKDAYS: u8 = 0x1f;
    /// Every day of the week.
    pub const EVERY_DAY: u8 = 0x7f;

    fn check(&self) -> Result<(), &'static str> {
        if self.days == 0 || self.days & 0x80 != 0 {
            return Err("time window days must set at least one of bits 0 to 6 and not bit 7");
        }
        if self.start_minute >= MINUTES_PER_DAY {
            return Err("time window start minute must be below 1440");
        }
        if self.end_minute == 0 || self.end_minute > MINUTES_PER_DAY {
            return Err("time window end minute must be 1 to 1440 (use 1440 for midnight)");
        }
        if self.start_minute == self.end_minute {
            return Err("time window start and end minute are equal");
        }
        Ok(())
    }

    fn opens_on(&self, weekday: u64) -> bool {
        self.days & (1u8 << (weekday % 7)) != 0
    }

    /// Whether unix time `now` (seconds, UTC) falls inside the window.
    pub fn contains(&self, now: u64) -> bool {
        let day = now / 86_400;
        // 1970-01-01 was a Thursday, ISO weekday index 3 with Monday = 0.
        let weekday = (day + 3) % 7;
        let minute = (now % 86_400) / 60;
        let (start, end) = (u64::from(self.start_minute), u64::from(self.end_minute));
        if start < end {
            self.opens_on(weekday) && (start..end).contains(&minute)
        } else {
            (minute >= start && self.opens_on(weekday))
                || (minute < end && self.opens_on(weekday + 6))
        }
    }
}

impl std::fmt::Display for TimeWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.days & Self::EVERY_DAY == Self::EVERY_DAY {
            f.write_str("every day")?;
        } else {
            let mut first = true;
            for (bit, name) in DAY_NAMES.iter().enumerate() {
                if self.days & (1 << bit) != 0 {
                    if !first {
                        f.write_str(",")?;
                    }
                    f.write_str(name)?;
                    first = false;
                }
            }
        }
        let hm = |m: u16| (m / 60, m % 60);
        let (sh, sm) = hm(self.start_minute);
        let (eh, em) = hm(self.end_minute);
        write!(f, " {sh:02}:{sm:02}-{eh:02}:{em:02} UTC")
    }
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
/// `min_amount ..= max_amount` and, if it has a window, made while the window is open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The asset identifier, e.g. `"BTC"`, `"ETH"` or `"ERC20:0xa0b8…"` (1 to
    /// [`MAX_ASSET_LEN`] bytes of printable text).
    pub asset: String,
    /// Smallest total (inclusive) this rule applies to, in the asset's smallest unit.
    pub min_amount: u128,
    /// Largest total (inclusive) this rule applies to, in the asset's smallest unit.
    pub max_amount: u128,
    /// When the rule applies; `None` means at any time.
    pub window: Option<TimeWindow>,
    /// What the rule decides.
    pub action: Action,
}

impl Rule {
    /// Whether the rule's asset and amount tier cover a withdrawal of `asset` totalling
    /// `total`, ignoring the time window.
    pub fn covers(&self, asset: &str, total: u128) -> bool {
        self.asset == asset && (self.min_amount..=self.max_amount).contains(&total)
    }

    /// Whether the rule applies to a withdrawal of `asset` totalling `total` at unix time
    /// `now`.
    pub fn matches(&self, asset: &str, total: u128, now: u64) -> bool {
        self.covers(asset, total) && self.window.is_none_or(|w| w.contains(now))
    }
}

/// A versioned withdrawal policy, signed by an admin quorum.
///
/// It names everyone else a signer trusts (the coordinator and the approvers), so a signer
/// pins only the admin quorum. Withdrawals are checked against the whitelist and the
/// per-asset transaction limit, then the rules, first match with default deny; the
/// coordinator also checks the velocity limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyDocument {
    /// Monotonic policy version; a successor must carry a larger one.
    pub version: u64,
    /// The network the policy applies to.
    pub network: Network,
    /// Unix time (seconds) at which the admins signed the policy; not after
    /// `effective_from`.
    pub announced_at: u64,
    /// Unix time (seconds) from which the policy is in force.
    pub effective_from: u64,
    /// The least time, in seconds, between the announcement of a *successor* and the time
    /// it takes effect (see [`verify_successor`](crate::verify_successor)).
    pub change_delay_secs: u64,
    /// The admins who may sign this policy's successor.
    pub admins: AdminQuorum,
    /// The coordinator, whose key signs [`Decision`](crate::Decision)s.
    pub coordinator: IdentityCard,
    /// The humans whose [`Approval`](crate::Approval)s count; signing keys distinct, not
    /// the coordinator's.
    pub approvers: Vec<IdentityCard>,
    /// Destinations funds may go to.
    pub whitelist: Vec<WhitelistEntry>,
    /// Per-asset per-transaction limits, assets distinct; an asset without one is denied.
    pub limits: Vec<TransactionLimit>,
    /// First-match rules; no match means deny.
    pub rules: Vec<Rule>,
    /// Rolling-window limits, checked by the coordinator only.
    pub velocity: Vec<VelocityLimit>,
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
    /// The same approver signing key is listed twice.
    #[error("approver {fingerprint} is listed twice")]
    DuplicateApprover {
        /// The approver's card fingerprint.
        fingerprint: String,
    },
    /// The coordinator is also listed as an approver, so it could approve on its own.
    #[error("coordinator {fingerprint} must not also be an approver")]
    CoordinatorIsApprover {
        /// The coordinator's card fingerprint.
        fingerprint: String,
    },
    /// The policy would take effect before the admins announced it.
    #[error("policy takes effect at {effective_from}, before it was announced at {announced_at}")]
    EffectiveBeforeAnnounced {
        /// The announcement time.
        announced_at: u64,
        /// The effective-from time.
        effective_from: u64,
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
    /// An asset identifier is empty, too long, or contains whitespace or control
    /// characters.
    #[error("{what} {index}: asset {asset:?} is not 1 to {MAX_ASSET_LEN} bytes of printable text")]
    BadAsset {
        /// The list: `"limit"`, `"rule"` or `"velocity limit"`.
        what: &'static str,
        /// The position in the list (0-based).
        index: usize,
        /// The asset identifier.
        asset: String,
    },
    /// Two transaction limits name the same asset.
    #[error("asset {asset} has two transaction limits")]
    DuplicateLimit {
        /// The asset identifier.
        asset: String,
    },
    /// A rule is malformed.
    #[error("rule {index}: {reason}")]
    BadRule {
        /// The rule's position (0-based).
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A velocity limit is malformed.
    #[error("velocity limit {index}: {reason}")]
    BadVelocityLimit {
        /// The limit's position (0-based).
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

fn check_len(what: &'static str, max: usize, found: usize) -> Result<(), InvalidPolicyError> {
    if found > max {
        return Err(InvalidPolicyError::TooMany { what, max, found });
    }
    Ok(())
}

fn check_asset(what: &'static str, index: usize, asset: &str) -> Result<(), InvalidPolicyError> {
    if printable(asset, MAX_ASSET_LEN) {
        Ok(())
    } else {
        Err(InvalidPolicyError::BadAsset {
            what,
            index,
            asset: asset.to_owned(),
        })
    }
}

impl PolicyDocument {
    /// Checks every invariant the encoding relies on.
    ///
    /// # Errors
    /// An [`InvalidPolicyError`] naming the offending quorum, card, entry, limit or rule.
    pub fn validate(&self) -> Result<(), InvalidPolicyError> {
        self.admins.validate()?;
        if self.effective_from < self.announced_at {
            return Err(InvalidPolicyError::EffectiveBeforeAnnounced {
                announced_at: self.announced_at,
                effective_from: self.effective_from,
            });
        }
        check_len("approvers", MAX_APPROVERS, self.approvers.len())?;
        check_len("whitelist", MAX_WHITELIST, self.whitelist.len())?;
        check_len("limits", MAX_LIMITS, self.limits.len())?;
        check_len("rules", MAX_RULES, self.rules.len())?;
        check_len("velocity limits", MAX_VELOCITY_LIMITS, self.velocity.len())?;
        for (i, a) in self.approvers.iter().enumerate() {
            if a.signing_key() == self.coordinator.signing_key() {
                return Err(InvalidPolicyError::CoordinatorIsApprover {
                    fingerprint: a.fingerprint(),
                });
            }
            if self.approvers[..i]
                .iter()
                .any(|b| b.signing_key() == a.signing_key())
            {
                return Err(InvalidPolicyError::DuplicateApprover {
                    fingerprint: a.fingerprint(),
                });
            }
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
        let mut seen = std::collections::BTreeSet::new();
        for (index, l) in self.limits.iter().enumerate() {
            check_asset("limit", index, &l.asset)?;
            if !seen.insert(l.asset.as_str()) {
                return Err(InvalidPolicyError::DuplicateLimit {
                    asset: l.asset.clone(),
                });
            }
        }
        for (index, r) in self.rules.iter().enumerate() {
            check_asset("rule", index, &r.asset)?;
            let bad = |reason| InvalidPolicyError::BadRule { index, reason };
            if r.min_amount > r.max_amount {
                return Err(bad("minimum amount is above maximum amount"));
            }
            if let Some(w) = &r.window {
                w.check().map_err(bad)?;
            }
            if let Action::Allow { approvals } = r.action {
                if usize::from(approvals) > self.approvers.len() {
                    return Err(bad(
                        "requires more approvals than the policy lists approvers",
                    ));
                }
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (index, v) in self.velocity.iter().enumerate() {
            check_asset("velocity limit", index, &v.asset)?;
            let bad = |reason| InvalidPolicyError::BadVelocityLimit { index, reason };
            if v.window_secs == 0 {
                return Err(bad("window must be at least 1 second"));
            }
            if !seen.insert((v.asset.as_str(), v.window_secs)) {
                return Err(bad("another velocity limit has the same asset and window"));
            }
        }
        Ok(())
    }

    /// The whitelist entry for `address`, if any.
    pub fn whitelist_entry(&self, address: &str) -> Option<&WhitelistEntry> {
        self.whitelist.iter().find(|e| e.address == address)
    }

    /// The per-transaction limit of `asset`, if the policy sets one.
    pub fn limit(&self, asset: &str) -> Option<u128> {
        self.limits
            .iter()
            .find(|l| l.asset == asset)
            .map(|l| l.max_amount)
    }

    /// The approver card with this signing key, if listed.
    pub fn approver(&self, signing_key: &[u8; 32]) -> Option<&IdentityCard> {
        self.approvers
            .iter()
            .find(|c| c.signing_key() == signing_key)
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
        w.u64(self.announced_at);
        w.u64(self.effective_from);
        w.u64(self.change_delay_secs);
        w.u16(self.admins.threshold);
        w.count(self.admins.admins.len());
        for card in &self.admins.admins {
            w.var(&card.encode());
        }
        w.var(&self.coordinator.encode());
        w.count(self.approvers.len());
        for card in &self.approvers {
            w.var(&card.encode());
        }
        w.count(self.whitelist.len());
        for e in &self.whitelist {
            w.var(e.address.as_bytes());
            w.u64(e.active_from);
        }
        w.count(self.limits.len());
        for l in &self.limits {
            w.var(l.asset.as_bytes());
            w.u128(l.max_amount);
        }
        w.count(self.rules.len());
        for r in &self.rules {
            w.var(r.asset.as_bytes());
            w.u128(r.min_amount);
            w.u128(r.max_amount);
            match r.window {
                None => w.u8(0),
                Some(t) => {
                    w.u8(1);
                    w.u8(t.days);
                    w.u16(t.start_minute);
                    w.u16(t.end_minute);
                }
            }
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
        w.count(self.velocity.len());
        for v in &self.velocity {
            w.var(v.asset.as_bytes());
            w.u64(v.window_secs);
            w.u128(v.max_total);
            w.u32(v.max_count);
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

    fn read_card(r: &mut Reader<'_>, what: &'static str) -> Result<IdentityCard, DecodeError> {
        IdentityCard::decode(r.var(what, MAX_CARD_LEN)?).map_err(|e| DecodeError::invalid(what, e))
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u64("policy version")?;
        let network_byte = r.u8("network")?;
        let network = Network::from_byte(network_byte).ok_or_else(|| {
            DecodeError::invalid("network", format!("unknown byte {network_byte}"))
        })?;
        let announced_at = r.u64("announced-at time")?;
        let effective_from = r.u64("effective-from time")?;
        let change_delay_secs = r.u64("change delay")?;
        let threshold = r.u16("admin threshold")?;
        let n = r.count("admin count", MAX_ADMINS)?;
        let mut admins = Vec::with_capacity(n);
        for _ in 0..n {
            admins.push(Self::read_card(r, "admin card")?);
        }
        let coordinator = Self::read_card(r, "coordinator card")?;
        let n = r.count("approver count", MAX_APPROVERS)?;
        let mut approvers = Vec::with_capacity(n);
        for _ in 0..n {
            approvers.push(Self::read_card(r, "approver card")?);
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
        let n = r.count("limit count", MAX_LIMITS)?;
        let mut limits = Vec::with_capacity(n);
        for _ in 0..n {
            let asset = r.string("limit asset", MAX_ASSET_LEN)?;
            let max_amount = r.u128("limit amount")?;
            limits.push(TransactionLimit { asset, max_amount });
        }
        let n = r.count("rule count", MAX_RULES)?;
        let mut rules = Vec::with_capacity(n);
        for _ in 0..n {
            let asset = r.string("rule asset", MAX_ASSET_LEN)?;
            let min_amount = r.u128("rule minimum amount")?;
            let max_amount = r.u128("rule maximum amount")?;
            let window = match r.u8("rule window flag")? {
                0 => None,
                1 => Some(TimeWindow {
                    days: r.u8("rule window days")?,
                    start_minute: r.u16("rule window start")?,
                    end_minute: r.u16("rule window end")?,
                }),
                b => {
                    return Err(DecodeError::invalid(
                        "rule window flag",
                        format!("unknown byte {b}"),
                    ))
                }
            };
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
                min_amount,
                max_amount,
                window,
                action,
            });
        }
        let n = r.count("velocity limit count", MAX_VELOCITY_LIMITS)?;
        let mut velocity = Vec::with_capacity(n);
        for _ in 0..n {
            velocity.push(VelocityLimit {
                asset: r.string("velocity asset", MAX_ASSET_LEN)?,
                window_secs: r.u64("velocity window")?,
                max_total: r.u128("velocity maximum total")?,
                max_count: r.u32("velocity maximum count")?,
            });
        }
        let doc = PolicyDocument {
            version,
            network,
            announced_at,
            effective_from,
            change_delay_secs,
            admins: AdminQuorum { threshold, admins },
            coordinator,
            approvers,
            whitelist,
            limits,
            rules,
            velocity,
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
