//! API keys and HMAC-signed requests (decision and canonical form:
//! `docs/adr/0016-api-key-authentication.md`).
//!
//! A key is a public id (`cpk_` + 24 hex digits) and a 32-byte secret (`cpks_` + base64url)
//! shown once; the coordinator seals the secret with `custody-vault` (HMAC verification
//! needs the secret itself) and stores an [`ApiKeyRecord`]. Scopes are `read`, `withdraw`
//! and `admin`; nobody grants a scope they do not hold, and a key may hold `withdraw` only
//! with an IP allowlist narrow enough to bind it to the integrator's servers.
//!
//! A request is signed over the canonical request
//!
//! ```text
//! CUSTODY-HMAC-SHA256-V1 \n key id \n timestamp \n nonce \n METHOD \n path?query \n hex(SHA-256(body))
//! ```
//!
//! and carries `X-Custody-Key`, `X-Custody-Timestamp`, `X-Custody-Nonce` and
//! `X-Custody-Signature` (lowercase hex). [`sign_request`] is the client side;
//! [`verify_request`] the server side: timestamp within the replay window, signature in
//! constant time, key neither revoked nor expired, client IP in the allowlist, scope held,
//! and finally the nonce remembered through a [`NonceStore`] so the same request is
//! accepted once.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::ip::IpAllowlist;
use crate::keys::random_bytes;

/// First line of every canonical request: scheme and version.
pub const SIGNATURE_SCHEME: &str = "CUSTODY-HMAC-SHA256-V1";
/// Header carrying the key id.
pub const HEADER_KEY: &str = "X-Custody-Key";
/// Header carrying the unix timestamp in seconds.
pub const HEADER_TIMESTAMP: &str = "X-Custody-Timestamp";
/// Header carrying the nonce.
pub const HEADER_NONCE: &str = "X-Custody-Nonce";
/// Header carrying the signature (lowercase hex).
pub const HEADER_SIGNATURE: &str = "X-Custody-Signature";
/// Longest `path?query` accepted.
pub const MAX_PATH_AND_QUERY: usize = 8192;
/// Longest lifetime a key may be given (366 days).
pub const MAX_KEY_LIFETIME_SECS: i64 = 366 * 86_400;

const KEY_ID_PREFIX: &str = "cpk_";
const SECRET_PREFIX: &str = "cpks_";

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Scope {
    /// Read balances, withdrawals, history.
    Read,
    /// Request withdrawals.
    Withdraw,
    /// Manage keys and settings.
    Admin,
}

impl Scope {
    const ALL: [Scope; 3] = [Scope::Read, Scope::Withdraw, Scope::Admin];

    fn bit(self) -> u8 {
        match self {
            Scope::Read => 1,
            Scope::Withdraw => 2,
            Scope::Admin => 4,
        }
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Withdraw => "withdraw",
            Scope::Admin => "admin",
        }
    }
}

/// A set of scopes. Scopes are independent: `admin` does not imply `withdraw`.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet(u8);

impl ScopeSet {
    /// The set holding `scopes`.
    pub fn of(scopes: &[Scope]) -> Self {
        ScopeSet(scopes.iter().fold(0, |acc, s| acc | s.bit()))
    }

    /// Every scope (what a signed-in owner may grant, after step-up).
    pub fn all() -> Self {
        Self::of(&Scope::ALL)
    }

    /// Whether `scope` is in the set.
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The scopes, in a fixed order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }
}

impl fmt::Debug for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(Scope::as_str))
            .finish()
    }
}

impl Serialize for ScopeSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for ScopeSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(ScopeSet::of(&Vec::<Scope>::deserialize(d)?))
    }
}

/// The public id of a key (`cpk_` + 24 lowercase hex digits).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ApiKeyId(String);

impl ApiKeyId {
    fn generate() -> Self {
        ApiKeyId(format!(
            "{KEY_ID_PREFIX}{}",
            hex::encode(&random_bytes::<12>()[..])
        ))
    }

    /// Checks the form of a key id.
    ///
    /// # Errors
    /// [`ParseSignatureError::KeyId`].
    pub fn parse(s: &str) -> Result<Self, ParseSignatureError> {
        let ok = s.strip_prefix(KEY_ID_PREFIX).is_some_and(|h| {
            h.len() == 24 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        if ok {
            Ok(ApiKeyId(s.to_owned()))
        } else {
            Err(ParseSignatureError::KeyId)
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ApiKeyId {
    type Error = ParseSignatureError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        ApiKeyId::parse(&s)
    }
}

impl From<ApiKeyId> for String {
    fn from(id: ApiKeyId) -> String {
        id.0
    }
}

impl fmt::Display for ApiKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ApiKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeyId({})", self.0)
    }
}

/// The secret half of a key: 32 random bytes.
///
/// # Security
/// Shown to its owner once ([`ApiKeySecret::to_text`]); the coordinator keeps it only
/// sealed by `custody-vault`. Zeroized on drop, redacted in `Debug`, no `Display`,
/// `Clone` or `Serialize`.
pub struct ApiKeySecret(Zeroizing<[u8; 32]>);

impl ApiKeySecret {
    /// The raw bytes (to seal, or to sign with).
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }

    /// Wraps raw bytes (after unsealing).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        ApiKeySecret(Zeroizing::new(bytes))
    }

    /// The text form handed to the owner (`cpks_` + base64url).
    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{SECRET_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(&self.0[..])
        ))
    }

    /// Reads the text form (client side).
    ///
    /// # Errors
    /// [`ParseSignatureError::Secret`].
    pub fn from_text(text: &str) -> Result<Self, ParseSignatureError> {
        let body = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(ParseSignatureError::Secret)?;
        let bytes = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(body)
                .map_err(|_| ParseSignatureError::Secret)?,
        );
        let arr: [u8; 32] = bytes[..]
            .try_into()
            .map_err(|_| ParseSignatureError::Secret)?;
        Ok(ApiKeySecret::from_bytes(arr))
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeySecret(<redacted>)")
    }
}

/// What the owner asks for.
#[derive(Clone, Debug)]
pub struct NewApiKey {
    /// A name the owner recognises.
    pub label: String,
    /// The scopes wanted.
    pub scopes: ScopeSet,
    /// When the key stops working; at most [`MAX_KEY_LIFETIME_SECS`] ahead.
    pub expires_at: Option<i64>,
    /// Where requests may come from; required for `withdraw`.
    pub ip_allowlist: Option<IpAllowlist>,
}

/// What the coordinator stores (next to the sealed secret). Columns: `key_id` (unique),
/// `owner`, `label`, `scopes` (JSON list), `created_at`, `expires_at`, `revoked_at`,
/// `ip_allowlist` (text, [`IpAllowlist`]'s display form), `secret_sealed` (vault blob).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// The public id.
    pub key_id: ApiKeyId,
    /// The account it acts for.
    pub owner: String,
    /// The owner's name for it.
    pub label: String,
    /// What it may do.
    pub scopes: ScopeSet,
    /// When it was made.
    pub created_at: i64,
    /// When it stops working.
    pub expires_at: Option<i64>,
    /// When it was revoked.
    pub revoked_at: Option<i64>,
    /// Where requests may come from.
    pub ip_allowlist: Option<IpAllowlist>,
}

/// Why a key could not be made.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CreateApiKeyError {
    /// No scope requested.
    #[error("an API key needs at least one scope")]
    NoScopes,
    /// A scope the creator does not hold.
    #[error("cannot grant the {} scope: the creator does not hold it", .scope.as_str())]
    ScopeEscalation {
        /// The first such scope.
        scope: Scope,
    },
    /// `withdraw` without an IP allowlist.
    #[error("a key with the withdraw scope needs an IP allowlist")]
    WithdrawWithoutAllowlist,
    /// `withdraw` with an allowlist that is too broad.
    #[error(
        "a key with the withdraw scope needs an IP allowlist of IPv4 /{} or IPv6 /{} or narrower",
        crate::ip::WITHDRAW_MIN_PREFIX_V4,
        crate::ip::WITHDRAW_MIN_PREFIX_V6
    )]
    AllowlistTooBroad,
    /// The expiry is not in the future or too far ahead.
    #[error("the expiry must be in the future and at most 366 days ahead")]
    Expiry,
    /// The label is empty or longer than 100 characters or holds control characters.
    #[error("the label must be 1 to 100 printable characters")]
    Label,
}

fn check_withdraw_binding(
    scopes: ScopeSet,
    allowlist: Option<&IpAllowlist>,
) -> Result<(), CreateApiKeyError> {
    if !scopes.contains(Scope::Withdraw) {
        return Ok(());
    }
    match allowlist {
        None => Err(CreateApiKeyError::WithdrawWithoutAllowlist),
        Some(l) if !l.is_narrow_enough_to_withdraw() => Err(CreateApiKeyError::AllowlistTooBroad),
        Some(_) => Ok(()),
    }
}

/// Makes a key for `owner`. `granter` is what the creator holds: every scope for the
/// signed-in owner after step-up ([`ScopeSet::all`]), or the scopes of the admin key that
/// asks; nothing outside it can be granted.
///
/// # Errors
/// [`CreateApiKeyError`].
pub fn create_api_key(
    owner: &str,
    request: NewApiKey,
    granter: ScopeSet,
    now: i64,
) -> Result<(ApiKeyRecord, ApiKeySecret), CreateApiKeyError> {
    if request.scopes.is_empty() {
        return Err(CreateApiKeyError::NoScopes);
    }
    if let Some(scope) = request.scopes.iter().find(|s| !granter.contains(*s)) {
        return Err(CreateApiKeyError::ScopeEscalation { scope });
    }
    check_withdraw_binding(request.scopes, request.ip_allowlist.as_ref())?;
    if let Some(exp) = request.expires_at {
        if exp <= now || exp - now > MAX_KEY_LIFETIME_SECS {
            return Err(CreateApiKeyError::Expiry);
        }
    }
    let label_len = request.label.chars().count();
    if !(1..=100).contains(&label_len) || request.label.chars().any(char::is_control) {
        return Err(CreateApiKeyError::Label);
    }
    let secret = ApiKeySecret(random_bytes::<32>());
    let record = ApiKeyRecord {
        key_id: ApiKeyId::generate(),
        owner: owner.to_owned(),
        label: request.label,
        scopes: request.scopes,
        created_at: now,
        expires_at: request.expires_at,
        revoked_at: None,
        ip_allowlist: request.ip_allowlist,
    };
    Ok((record, secret))
}

impl ApiKeyRecord {
    /// Revokes the key at `now` (again is a no-op: the first time stays).
    pub fn revoke(&mut self, now: i64) {
        self.revoked_at.get_or_insert(now);
    }
}

/// The parts of a request that are signed.
#[derive(Clone, Copy, Debug)]
pub struct RequestToSign<'a> {
    /// The method as sent, upper case (`GET`, `POST`).
    pub method: &'a str,
    /// The request target exactly as sent on the wire: path and query, percent-encoding
    /// untouched (`/v1/withdrawals?limit=10`).
    pub path_and_query: &'a str,
    /// The body bytes (empty for none).
    pub body: &'a [u8],
}

/// The four header values of a signed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestSignature {
    /// `X-Custody-Key`.
    pub key_id: ApiKeyId,
    /// `X-Custody-Timestamp`, unix seconds.
    pub timestamp: i64,
    /// `X-Custody-Nonce`.
    pub nonce: String,
    /// `X-Custody-Signature`: HMAC-SHA256 of the canonical request.
    pub signature: [u8; 32],
}

impl RequestSignature {
    /// Header names and values to send.
    pub fn headers(&self) -> [(&'static str, String); 4] {
        [
            (HEADER_KEY, self.key_id.to_string()),
            (HEADER_TIMESTAMP, self.timestamp.to_string()),
            (HEADER_NONCE, self.nonce.clone()),
            (HEADER_SIGNATURE, hex::encode(self.signature)),
        ]
    }

    /// Reads the four header values a request arrived with.
    ///
    /// # Errors
    /// [`ParseSignatureError`] naming the malformed header.
    pub fn from_headers(
        key_id: &str,
        timestamp: &str,
        nonce: &str,
        signature: &str,
    ) -> Result<Self, ParseSignatureError> {
        let key_id = ApiKeyId::parse(key_id)?;
        if timestamp.is_empty()
            || timestamp.len() > 12
            || !timestamp.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ParseSignatureError::Timestamp);
        }
        let timestamp: i64 = timestamp
            .parse()
            .map_err(|_| ParseSignatureError::Timestamp)?;
        check_nonce(nonce)?;
        let mut sig = [0u8; 32];
        if signature.len() != 64 || signature.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ParseSignatureError::Signature);
        }
        hex::decode_to_slice(signature, &mut sig).map_err(|_| ParseSignatureError::Signature)?;
        Ok(RequestSignature {
            key_id,
            timestamp,
            nonce: nonce.to_owned(),
            signature: sig,
        })
    }
}

/// A malformed signature header, key id, secret or request.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseSignatureError {
    /// The key id is not `cpk_` + 24 lowercase hex digits.
    #[error("X-Custody-Key is not a key id (cpk_ followed by 24 hex digits)")]
    KeyId,
    /// The timestamp is not decimal unix seconds.
    #[error("X-Custody-Timestamp must be unix time in whole seconds")]
    Timestamp,
    /// The nonce has the wrong length or characters.
    #[error("X-Custody-Nonce must be 16 to 64 characters of A-Z, a-z, 0-9, '-' and '_'")]
    Nonce,
    /// The signature is not 64 lowercase hex digits.
    #[error("X-Custody-Signature must be 64 lowercase hex digits")]
    Signature,
    /// The secret text is not `cpks_` + 43 base64url characters.
    #[error("the API secret is not in the cpks_… form it was issued in")]
    Secret,
    /// The method is not 1 to 16 upper-case letters.
    #[error("the method must be upper-case letters, as sent")]
    Method,
    /// The request target is empty, does not start with `/`, is too long or holds
    /// characters outside printable ASCII.
    #[error(
        "the request target must start with '/' and hold at most 8192 printable ASCII characters"
    )]
    PathAndQuery,
}

fn check_nonce(nonce: &str) -> Result<(), ParseSignatureError> {
    let ok = (16..=64).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ParseSignatureError::Nonce)
    }
}

/// A fresh nonce: 16 random bytes, base64url (22 characters).
pub fn new_nonce() -> String {
    URL_SAFE_NO_PAD.encode(&random_bytes::<16>()[..])
}

/// The canonical request a signature covers (see the module documentation).
///
/// # Errors
/// [`ParseSignatureError`] for a method, target or nonce outside the rules.
pub fn canonical_request(
    key_id: &ApiKeyId,
    timestamp: i64,
    nonce: &str,
    request: &RequestToSign<'_>,
) -> Result<String, ParseSignatureError> {
    let m = request.method;
    if m.is_empty() || m.len() > 16 || !m.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ParseSignatureError::Method);
    }
    let p = request.path_and_query;
    if !p.starts_with('/')
        || p.len() > MAX_PATH_AND_QUERY
        || !p.bytes().all(|b| (0x21..=0x7e).contains(&b))
    {
        return Err(ParseSignatureError::PathAndQuery);
    }
    check_nonce(nonce)?;
    Ok(format!(
        "{SIGNATURE_SCHEME}\n{key_id}\n{timestamp}\n{nonce}\n{m}\n{p}\n{}",
        hex::encode(Sha256::digest(request.body))
    ))
}

fn mac(secret: &ApiKeySecret, canonical: &str) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose_secret())
        .expect("HMAC-SHA256 accepts 32-byte keys");
    mac.update(canonical.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Signs a request (client side): the header values to send with it.
///
/// # Errors
/// [`ParseSignatureError`] for a method, target or nonce outside the rules.
pub fn sign_request(
    key_id: &ApiKeyId,
    secret: &ApiKeySecret,
    request: &RequestToSign<'_>,
    timestamp: i64,
    nonce: &str,
) -> Result<RequestSignature, ParseSignatureError> {
    let canonical = canonical_request(key_id, timestamp, nonce, request)?;
    Ok(RequestSignature {
        key_id: key_id.clone(),
        timestamp,
        nonce: nonce.to_owned(),
        signature: mac(secret, &canonical),
    })
}

/// A failure of the nonce store (for example the database).
#[derive(Debug, Error)]
#[error("nonce store failed: {0}")]
pub struct NonceStoreError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// Remembers nonces so a signed request is accepted once.
///
/// The coordinator implements it with a table keyed by `(key_id, nonce)` (unique) with an
/// `expires_at` column, deleting rows past it; a nonce need be kept only until its
/// timestamp leaves the replay window.
pub trait NonceStore {
    /// Records `nonce` for `key_id` until `expires_at`; returns false when it was already
    /// there (a replay).
    ///
    /// # Errors
    /// [`NonceStoreError`].
    fn remember(
        &self,
        key_id: &ApiKeyId,
        nonce: &str,
        expires_at: i64,
    ) -> Result<bool, NonceStoreError>;
}

/// An in-memory [`NonceStore`] for one process (tests, a single coordinator), bounded:
/// when full it drops expired entries and, if still full, refuses new requests rather than
/// forgetting live nonces.
#[derive(Debug)]
pub struct MemoryNonceStore {
    capacity: usize,
    seen: Mutex<HashMap<(String, String), i64>>,
}

impl MemoryNonceStore {
    /// A store holding at most `capacity` live nonces.
    pub fn new(capacity: usize) -> Self {
        MemoryNonceStore {
            capacity: capacity.max(1),
            seen: Mutex::new(HashMap::new()),
        }
    }
}

/// The in-memory store is full of live nonces.
#[derive(Debug, Error)]
#[error("too many requests in the replay window")]
struct StoreFull;

impl NonceStore for MemoryNonceStore {
    fn remember(
        &self,
        key_id: &ApiKeyId,
        nonce: &str,
        expires_at: i64,
    ) -> Result<bool, NonceStoreError> {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let k = (key_id.0.clone(), nonce.to_owned());
        if seen.contains_key(&k) {
            return Ok(false);
        }
        if seen.len() >= self.capacity {
            // Entries whose expiry is before this one's replay window started are dead.
            let oldest_live = expires_at.saturating_sub(2 * MAX_REPLAY_WINDOW_SECS);
            seen.retain(|_, exp| *exp > oldest_live);
            if seen.len() >= self.capacity {
                return Err(NonceStoreError(Box::new(StoreFull)));
            }
        }
        seen.insert(k, expires_at);
        Ok(true)
    }
}

/// Widest replay window allowed.
pub const MAX_REPLAY_WINDOW_SECS: i64 = 600;

/// How far a request's timestamp may be from the server's time, either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayWindow {
    max_skew_secs: i64,
}

impl ReplayWindow {
    /// A window of `max_skew_secs` either way, clamped to 1..=[`MAX_REPLAY_WINDOW_SECS`].
    pub fn new(max_skew_secs: i64) -> Self {
        ReplayWindow {
            max_skew_secs: max_skew_secs.clamp(1, MAX_REPLAY_WINDOW_SECS),
        }
    }

    /// The skew allowed either way, in seconds.
    pub fn max_skew_secs(&self) -> i64 {
        self.max_skew_secs
    }
}

impl Default for ReplayWindow {
    /// 120 seconds either way.
    fn default() -> Self {
        ReplayWindow::new(120)
    }
}

/// Why a signed request was refused.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum VerifyRequestError {
    /// The headers name another key than the record.
    #[error("the request names another API key")]
    WrongKey,
    /// Method, target or nonce outside the rules.
    #[error(transparent)]
    Malformed(#[from] ParseSignatureError),
    /// The timestamp is outside the replay window.
    #[error("the request timestamp is {skew_secs} s from the server's time (at most {max_secs} s allowed); check the client clock")]
    Stale {
        /// Request time minus server time.
        skew_secs: i64,
        /// The window.
        max_secs: i64,
    },
    /// The signature does not match.
    #[error("the request signature is not valid")]
    BadSignature,
    /// The key was revoked.
    #[error("the API key was revoked")]
    Revoked,
    /// The key expired.
    #[error("the API key expired at {expired_at}")]
    Expired {
        /// When.
        expired_at: i64,
    },
    /// The client address is not in the key's allowlist.
    #[error("requests with this API key are not allowed from {ip}")]
    IpNotAllowed {
        /// The client address.
        ip: IpAddr,
    },
    /// The key lacks the scope.
    #[error("the API key lacks the {} scope", .scope.as_str())]
    ScopeMissing {
        /// The scope needed.
        scope: Scope,
    },
    /// `withdraw` on a key without a (narrow enough) allowlist.
    #[error("an API key without an IP allowlist cannot withdraw")]
    WithdrawNeedsAllowlist,
    /// The nonce was seen before: a replay.
    #[error("this request was already received (nonce reused)")]
    Replayed,
    /// The nonce store failed.
    #[error(transparent)]
    NonceStore(#[from] NonceStoreError),
}

/// Everything the server knows when a signed request arrives.
#[derive(Clone, Copy, Debug)]
pub struct VerifyContext<'a> {
    /// The client address (from the socket, or from the trusted proxy header).
    pub client_ip: IpAddr,
    /// The scope the endpoint needs.
    pub required: Scope,
    /// The replay window.
    pub window: ReplayWindow,
    /// The server's time.
    pub now: i64,
    /// The request.
    pub request: RequestToSign<'a>,
}

/// Verifies a signed request against the key's record and unsealed secret.
///
/// # Errors
/// [`VerifyRequestError`] for the first check that fails.
pub fn verify_request(
    record: &ApiKeyRecord,
    secret: &ApiKeySecret,
    signature: &RequestSignature,
    ctx: &VerifyContext<'_>,
    nonces: &dyn NonceStore,
) -> Result<(), VerifyRequestError> {
    if signature.key_id != record.key_id {
        return Err(VerifyRequestError::WrongKey);
    }
    let skew = signature.timestamp.saturating_sub(ctx.now);
    if skew.saturating_abs() > ctx.window.max_skew_secs {
        return Err(VerifyRequestError::Stale {
            skew_secs: skew,
            max_secs: ctx.window.max_skew_secs,
        });
    }
    let canonical = canonical_request(
        &record.key_id,
        signature.timestamp,
        &signature.nonce,
        &ctx.request,
    )?;
    let expected = mac(secret, &canonical);
    if !bool::from(expected.ct_eq(&signature.signature)) {
        return Err(VerifyRequestError::BadSignature);
    }
    if record.revoked_at.is_some() {
        return Err(VerifyRequestError::Revoked);
    }
    if let Some(exp) = record.expires_at {
        if ctx.now >= exp {
            return Err(VerifyRequestError::Expired { expired_at: exp });
        }
    }
    if let Some(list) = &record.ip_allowlist {
        if !list.contains(ctx.client_ip) {
            return Err(VerifyRequestError::IpNotAllowed {
                ip: crate::ip::canonical_ip(ctx.client_ip),
            });
        }
    }
    if !record.scopes.contains(ctx.required) {
        return Err(VerifyRequestError::ScopeMissing {
            scope: ctx.required,
        });
    }
    if ctx.required == Scope::Withdraw
        && check_withdraw_binding(record.scopes, record.ip_allowlist.as_ref()).is_err()
    {
        return Err(VerifyRequestError::WithdrawNeedsAllowlist);
    }
    // Last, so only authenticated requests can occupy nonces.
    let keep_until = signature.timestamp.saturating_add(ctx.window.max_skew_secs);
    if !nonces.remember(&record.key_id, &signature.nonce, keep_until)? {
        return Err(VerifyRequestError::Replayed);
    }
    Ok(())
}
