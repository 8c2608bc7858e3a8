//! The installed policy: bootstrapped once on the box (`custody-coordinator policy
//! install --trust-first`), replaced only by a successor the current admin quorum signed
//! (`POST /v1/admin/policies`), and in force from its `effective_from`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use custody_policy::{verify_successor, SignedPolicy, VerifiedPolicy};

use crate::app::App;
use crate::db::{int, opt_int, opt_text, text, Reads, Tx};
use crate::error::ApiError;

/// Verified policies by hash, so a request does not re-verify admin signatures.
#[derive(Debug, Default)]
pub struct PolicyCache {
    by_hash: Mutex<HashMap<String, Arc<VerifiedPolicy>>>,
    /// The policy the last request found in force: a request reads its velocity history
    /// with this one's windows in the same round trip as the rest, and again only when
    /// another policy turns out to be in force.
    last_in_force: Mutex<Option<Arc<VerifiedPolicy>>>,
}

impl PolicyCache {
    /// The policy the last request found in force (a guess for the next one).
    pub(crate) fn last_in_force(&self) -> Option<Arc<VerifiedPolicy>> {
        self.last_in_force.lock().ok()?.clone()
    }

    fn get(&self, hash: &str) -> Option<Arc<VerifiedPolicy>> {
        self.by_hash.lock().ok()?.get(hash).cloned()
    }
    fn put(&self, hash: String, p: Arc<VerifiedPolicy>) {
        if let Ok(mut m) = self.by_hash.lock() {
            m.insert(hash, p);
        }
    }
}

fn decode_verified(hex_policy: &str) -> Result<VerifiedPolicy, ApiError> {
    let bytes = hex::decode(hex_policy).map_err(ApiError::internal)?;
    let signed = SignedPolicy::decode(&bytes).map_err(ApiError::internal)?;
    let admins = signed.document().admins.clone();
    signed.verify(&admins).map_err(ApiError::internal)
}

/// The policy in force at `now`: the highest version whose `effective_from` has come.
///
/// # Errors
/// 409 `no_policy` when none is installed or in force yet.
pub async fn current(
    tx: &mut Tx<'_>,
    app: &App,
    now: i64,
) -> Result<Arc<VerifiedPolicy>, ApiError> {
    let row = sqlx::query(
        "SELECT hash FROM policies WHERE effective_from <= $1 ORDER BY version DESC LIMIT 1",
    )
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?;
    in_force(tx, app, row.map(|r| text(&r, "hash")).transpose()?).await
}

/// [`current`], and when `address` became (or becomes) usable on `principal_id`'s
/// withdrawal whitelist (`None`: not on it), in one read.
///
/// Its statement is added to a batch of reads here; [`current_with_whitelist_from`] reads
/// the answer from its rows.
pub(crate) fn current_with_whitelist_read(
    reads: &mut Reads,
    now: i64,
    principal_id: &str,
    address: &str,
) -> usize {
    let i = reads.push(
        "SELECT (SELECT hash FROM policies WHERE effective_from <= $1 ORDER BY version DESC LIMIT 1) AS hash, \
         (SELECT active_from FROM address_whitelist WHERE principal_id = $2 AND address = $3) AS active_from",
    );
    reads
        .bind(now)
        .bind(principal_id.to_owned())
        .bind(address.to_owned());
    i
}

/// The policy in force and the address's whitelist entry, from the rows of
/// [`current_with_whitelist_read`] (the signed document is read only when this process
/// has not verified it yet).
///
/// # Errors
/// As [`current`].
pub(crate) async fn current_with_whitelist_from(
    tx: &mut Tx<'_>,
    app: &App,
    rows: &[crate::db::BatchRow],
) -> Result<(Arc<VerifiedPolicy>, Option<i64>), ApiError> {
    let row = rows
        .first()
        .ok_or_else(|| ApiError::internal("the policy and whitelist read returned no row"))?;
    let policy = in_force(tx, app, opt_text(row, "hash")?).await?;
    if let Ok(mut last) = app.policies.last_in_force.lock() {
        if !last.as_ref().is_some_and(|l| Arc::ptr_eq(l, &policy)) {
            *last = Some(policy.clone());
        }
    }
    Ok((policy, opt_int(row, "active_from")?))
}

/// The policy whose hash was found in force (verified once per process, then cached), or
/// the refusal when none is.
async fn in_force(
    tx: &mut Tx<'_>,
    app: &App,
    hash: Option<String>,
) -> Result<Arc<VerifiedPolicy>, ApiError> {
    let none = || {
        ApiError::conflict(
            "no_policy",
            "no withdrawal policy is in force; install one with `custody-coordinator policy install`",
        )
    };
    let hash = hash.ok_or_else(none)?;
    by_hash(tx, app, &hash).await?.ok_or_else(none)
}

/// The policy with `hash`, if installed.
///
/// # Errors
/// Storage failure.
pub async fn by_hash(
    tx: &mut Tx<'_>,
    app: &App,
    hash: &str,
) -> Result<Option<Arc<VerifiedPolicy>>, ApiError> {
    if let Some(p) = app.policies.get(hash) {
        return Ok(Some(p));
    }
    let row = sqlx::query("SELECT signed_policy FROM policies WHERE hash = $1")
        .bind(hash)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let p = Arc::new(decode_verified(&text(&row, "signed_policy")?)?);
    app.policies.put(hash.to_owned(), p.clone());
    Ok(Some(p))
}

/// What was installed.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Installed {
    /// The version.
    pub version: u64,
    /// Hex of the policy hash.
    pub hash: String,
    /// When it takes effect.
    pub effective_from: u64,
}

/// Installs `signed` (encoded `SignedPolicy` bytes). Without an installed policy, only
/// `trust_first` (the on-box bootstrap) accepts it, verified against its own admin list;
/// otherwise it must be a valid successor of the latest installed version, announced no
/// later than now, and name this coordinator's key.
///
/// # Errors
/// 422 with the verification failure.
pub async fn install(
    app: &App,
    actor: &str,
    signed: &[u8],
    trust_first: bool,
) -> Result<Installed, ApiError> {
    let now = app.now();
    let policy = SignedPolicy::decode(signed)
        .map_err(|e| ApiError::bad_request(format!("not a signed policy: {e}")))?;
    let mut tx = app.db.begin().await?;
    let latest = sqlx::query("SELECT signed_policy FROM policies ORDER BY version DESC LIMIT 1")
        .fetch_optional(&mut *tx)
        .await?;
    let verified = match latest {
        None if trust_first => {
            let admins = policy.document().admins.clone();
            policy
                .verify(&admins)
                .map_err(|e| ApiError::refused("policy_invalid", e.to_string()))?
        }
        None => return Err(ApiError::refused(
            "no_trust_root",
            "no policy is installed yet; the first one is installed on the coordinator host with \
                 `custody-coordinator policy install --trust-first`",
        )),
        Some(row) => {
            let current = decode_verified(&text(&row, "signed_policy")?)?;
            verify_successor(&current, &policy)
                .map_err(|e| ApiError::refused("policy_invalid", e.to_string()))?
        }
    };
    let doc = verified.document();
    if i64::try_from(doc.announced_at).unwrap_or(i64::MAX) > now {
        return Err(ApiError::refused(
            "policy_from_the_future",
            format!(
                "policy is announced at {}, after now; check the admins' clocks",
                doc.announced_at
            ),
        ));
    }
    if doc.coordinator.signing_key() != app.identity.card().signing_key() {
        return Err(ApiError::refused(
            "wrong_coordinator",
            format!(
                "policy names coordinator {}, this coordinator is {}",
                doc.coordinator.fingerprint(),
                app.identity.card().fingerprint()
            ),
        ));
    }
    if doc.network != app.config.network.to_policy() {
        return Err(ApiError::refused(
            "wrong_network",
            format!(
                "policy is for {}, this coordinator runs on {:?}",
                doc.network.as_str(),
                app.config.network
            ),
        ));
    }
    let hash = hex::encode(verified.hash());
    let version =
        i64::try_from(doc.version).map_err(|_| ApiError::bad_request("version too large"))?;
    let effective = i64::try_from(doc.effective_from)
        .map_err(|_| ApiError::bad_request("effective_from too large"))?;
    sqlx::query(
        "INSERT INTO policies (version, hash, signed_policy, effective_from, installed_at, installed_by) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(version)
    .bind(&hash)
    .bind(hex::encode(signed))
    .bind(effective)
    .bind(now)
    .bind(actor)
    .execute(&mut *tx)
    .await?;
    crate::audit::append(
        &mut tx,
        now,
        "policy.installed",
        actor,
        &hash,
        &serde_json::json!({ "version": doc.version, "effective_from": doc.effective_from }),
    )
    .await?;
    crate::notify::enqueue(
        &mut tx,
        app,
        None,
        "policy.installed",
        serde_json::json!({ "version": doc.version, "hash": hash, "effective_from": doc.effective_from }),
    )
    .await?;
    tx.commit().await?;
    let out = Installed {
        version: doc.version,
        hash: hash.clone(),
        effective_from: doc.effective_from,
    };
    app.policies.put(hash, Arc::new(verified));
    Ok(out)
}

/// Rows for listing.
///
/// # Errors
/// Storage failure.
pub async fn list(app: &App) -> Result<Vec<Installed>, ApiError> {
    let rows = sqlx::query("SELECT version, hash, effective_from FROM policies ORDER BY version")
        .fetch_all(app.db.pool())
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Installed {
                version: u64::try_from(int(r, "version")?).unwrap_or(0),
                hash: text(r, "hash")?,
                effective_from: u64::try_from(int(r, "effective_from")?).unwrap_or(0),
            })
        })
        .collect()
}
