//! KYC records (issue 7, "Data protection"): a customer's name, date of birth, address,
//! nationality, document number and document images, sealed at rest by the vault.
//!
//! - **At rest:** one row per principal in `kyc_records`; the whole record is one
//!   `custody-vault` blob sealed under a fresh data key, with the row's random UUID as
//!   record id (associated data: a blob copied into another row does not open), the data
//!   key wrapped by the current KEK of the key file ([`crate::vault`]).
//! - **Lookups:** `kyc_blind_index` holds keyed HMACs of the normalised document number
//!   ([`FIELD_DOCUMENT_NUMBER`]) and of the normalised name with the date of birth
//!   ([`FIELD_NAME_DOB`]), never plaintext.
//! - **Access:** a principal writes and reads only their own record, with step-up 2FA for
//!   both (reading shows personal data back). Admins search by blind index and read a
//!   record with the admin role and step-up 2FA; every store, search and read is in the
//!   audit log with ids and counts, never personal data.
//! - **Errors** name fields, limits and record ids, never values; a record that does not
//!   open is a 500 naming the record id.
//!
//! Request bodies of these routes are read here, not by axum's `Json` extractor: a
//! submission may be far larger than axum's default body limit (four images of up to
//! [`MAX_IMAGE_BYTES`] each, base64), and serde's messages can quote input values.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use base64::Engine as _;
use custody_vault::{
    DocumentImage, DocumentType, FieldKind, KycRecord, SealError, VaultKeys, MAX_IMAGES,
    MAX_IMAGE_BYTES, MAX_MEDIA_TYPE_LEN, MAX_TEXT_LEN,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use zeroize::{Zeroize, Zeroizing};

use crate::accounts::{self, Principal, Role};
use crate::api::Auth;
use crate::app::App;
use crate::audit;
use crate::db::{int, text};
use crate::error::{ApiError, ErrorBody};
use crate::vault::OpenSealedError;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The blind-index field of the document number ([`FieldKind::DocumentNumber`]: spaces
/// and `-` removed, upper-cased).
pub const FIELD_DOCUMENT_NUMBER: &str = "document_number";
/// The blind-index field of name and date of birth together: [`FieldKind::Exact`] over
/// `FieldKind::Name.normalise(full_name) ‖ "\n" ‖ date_of_birth`. One combined index
/// rather than one per field: a date of birth alone has so few values that its index
/// would group thousands of people.
pub const FIELD_NAME_DOB: &str = "name_dob";
/// Most matches one search returns.
pub const MAX_MATCHES: usize = 100;

const fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// The largest `PUT /v1/me/kyc` body: [`MAX_IMAGES`] images of [`MAX_IMAGE_BYTES`] in
/// base64 with their media types, the text fields even if every character were a JSON
/// `\uXXXX` escape, and room for names and punctuation.
pub const MAX_SUBMISSION_BYTES: usize = MAX_IMAGES
    * (base64_len(MAX_IMAGE_BYTES) + 6 * MAX_MEDIA_TYPE_LEN + 64)
    + 5 * 6 * MAX_TEXT_LEN
    + 4096;
/// The largest body of the other KYC routes (a 2FA code, a search).
const MAX_SMALL_BODY: usize = 64 * 1024;

/// The kind of identity document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    /// A passport.
    Passport,
    /// A national identity card.
    IdentityCard,
    /// A driving licence.
    DrivingLicence,
    /// A residence permit.
    ResidencePermit,
}

impl From<DocumentKind> for DocumentType {
    fn from(k: DocumentKind) -> Self {
        match k {
            DocumentKind::Passport => DocumentType::Passport,
            DocumentKind::IdentityCard => DocumentType::IdentityCard,
            DocumentKind::DrivingLicence => DocumentType::DrivingLicence,
            DocumentKind::ResidencePermit => DocumentType::ResidencePermit,
        }
    }
}

impl DocumentKind {
    fn of(t: DocumentType) -> Option<Self> {
        Some(match t {
            DocumentType::Passport => DocumentKind::Passport,
            DocumentType::IdentityCard => DocumentKind::IdentityCard,
            DocumentType::DrivingLicence => DocumentKind::DrivingLicence,
            DocumentType::ResidencePermit => DocumentKind::ResidencePermit,
            _ => return None,
        })
    }
}

/// One document image: its media type and its bytes in standard base64.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct KycImage {
    /// Media type, such as `image/jpeg` (at most 64 bytes).
    pub media_type: String,
    /// The image, standard base64 (at most 5 MiB decoded).
    pub data: String,
}

impl Drop for KycImage {
    fn drop(&mut self) {
        self.media_type.zeroize();
        self.data.zeroize();
    }
}

impl std::fmt::Debug for KycImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KycImage(<redacted>)")
    }
}

/// A KYC submission (`PUT /v1/me/kyc`): the record and a current 2FA code. Limits: text
/// fields 1024 bytes, date of birth `YYYY-MM-DD`, at most 4 images of 5 MiB each.
#[derive(Deserialize, ToSchema)]
pub struct KycSubmission {
    /// Second-factor proof (step-up): `totp`, `webauthn`, `email_code` + `sms_code`, or
    /// `recovery_code`.
    #[serde(flatten)]
    pub factors: crate::factors::StepUp,
    /// Full name as on the document.
    pub full_name: String,
    /// Date of birth, `YYYY-MM-DD`.
    pub date_of_birth: String,
    /// Postal address, lines separated by `\n`.
    pub address: String,
    /// Nationality, ISO 3166-1 alpha-2.
    pub nationality: String,
    /// The document's kind.
    pub document_type: DocumentKind,
    /// The document number as printed.
    pub document_number: String,
    /// Scans of the document.
    #[serde(default)]
    pub document_images: Vec<KycImage>,
}

impl Drop for KycSubmission {
    fn drop(&mut self) {
        self.full_name.zeroize();
        self.date_of_birth.zeroize();
        self.address.zeroize();
        self.nationality.zeroize();
        self.document_number.zeroize();
    }
}

impl std::fmt::Debug for KycSubmission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KycSubmission(<redacted>)")
    }
}

impl KycSubmission {
    /// Moves the fields into a [`KycRecord`], decoding the images; checks the rules
    /// ([`KycRecord::validate`]) and that name and document number are present.
    ///
    /// # Errors
    /// 400 naming the field or limit (never the value).
    pub fn into_record(mut self) -> Result<KycRecord, ApiError> {
        let mut images = Vec::with_capacity(self.document_images.len().min(MAX_IMAGES));
        if self.document_images.len() > MAX_IMAGES {
            return Err(ApiError::bad_request(format!(
                "a KYC record holds at most {MAX_IMAGES} document images; {} were sent",
                self.document_images.len()
            )));
        }
        for (index, image) in self.document_images.iter_mut().enumerate() {
            if image.data.len() > base64_len(MAX_IMAGE_BYTES) {
                return Err(ApiError::bad_request(format!(
                    "document image {index} is larger than {MAX_IMAGE_BYTES} bytes, the limit per image"
                )));
            }
            let mut bytes = Zeroizing::new(Vec::with_capacity(base64::decoded_len_estimate(
                image.data.len(),
            )));
            B64.decode_vec(image.data.as_bytes(), &mut bytes)
                .map_err(|_| {
                    ApiError::bad_request(format!("document image {index} is not standard base64"))
                })?;
            images.push(DocumentImage {
                media_type: std::mem::take(&mut image.media_type),
                bytes: std::mem::take(&mut *bytes),
            });
        }
        let record = KycRecord {
            full_name: std::mem::take(&mut self.full_name),
            date_of_birth: std::mem::take(&mut self.date_of_birth),
            address: std::mem::take(&mut self.address),
            nationality: std::mem::take(&mut self.nationality),
            document_type: self.document_type.into(),
            document_number: std::mem::take(&mut self.document_number),
            document_images: images,
        };
        check(&record)?;
        Ok(record)
    }
}

/// Checks what [`save`] needs before anything is written: the library's rules, a name
/// and a document number.
fn check(record: &KycRecord) -> Result<(), ApiError> {
    record
        .validate()
        .map_err(|e| ApiError::bad_request(format!("{e}")))?;
    if record.full_name.trim().is_empty() {
        return Err(ApiError::bad_request("full_name is required"));
    }
    if FieldKind::DocumentNumber
        .normalise(&record.document_number)
        .is_empty()
    {
        return Err(ApiError::bad_request("document_number is required"));
    }
    Ok(())
}

/// Where a record is and which KEK wraps it; no personal data.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct KycStatus {
    /// The record id (a UUID; what the blob is sealed for).
    pub record_id: String,
    /// Whose record it is.
    pub principal_id: String,
    /// The key-encryption key that wraps its data key.
    pub kek_id: i64,
    /// First stored (unix seconds).
    pub created_at: i64,
    /// Last replaced (unix seconds).
    pub updated_at: i64,
}

/// A KYC record shown back, after step-up 2FA.
#[derive(Serialize, ToSchema)]
pub struct KycView {
    /// The record id.
    pub record_id: String,
    /// Whose record it is.
    pub principal_id: String,
    /// Full name.
    pub full_name: String,
    /// Date of birth, `YYYY-MM-DD`.
    pub date_of_birth: String,
    /// Postal address.
    pub address: String,
    /// Nationality.
    pub nationality: String,
    /// The document's kind.
    pub document_type: DocumentKind,
    /// The document number as submitted.
    pub document_number: String,
    /// The document images, base64.
    pub document_images: Vec<KycImage>,
    /// First stored (unix seconds).
    pub created_at: i64,
    /// Last replaced (unix seconds).
    pub updated_at: i64,
}

impl Drop for KycView {
    fn drop(&mut self) {
        self.full_name.zeroize();
        self.date_of_birth.zeroize();
        self.address.zeroize();
        self.nationality.zeroize();
        self.document_number.zeroize();
    }
}

impl std::fmt::Debug for KycView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KycView")
            .field("record_id", &self.record_id)
            .field("principal_id", &self.principal_id)
            .finish_non_exhaustive()
    }
}

impl KycView {
    /// Moves an opened record into the answer (images as base64).
    ///
    /// # Errors
    /// 500 if the record has a document type this build cannot show.
    pub fn new(status: KycStatus, mut record: KycRecord) -> Result<Self, ApiError> {
        let document_type = DocumentKind::of(record.document_type).ok_or_else(|| {
            ApiError::internal(format!(
                "KYC record {} has a document type this coordinator does not know",
                status.record_id
            ))
        })?;
        Ok(KycView {
            document_images: record
                .document_images
                .iter_mut()
                .map(|i| KycImage {
                    media_type: std::mem::take(&mut i.media_type),
                    data: B64.encode(&i.bytes),
                })
                .collect(),
            full_name: std::mem::take(&mut record.full_name),
            date_of_birth: std::mem::take(&mut record.date_of_birth),
            address: std::mem::take(&mut record.address),
            nationality: std::mem::take(&mut record.nationality),
            document_type,
            document_number: std::mem::take(&mut record.document_number),
            record_id: status.record_id,
            principal_id: status.principal_id,
            created_at: status.created_at,
            updated_at: status.updated_at,
        })
    }
}

/// A step-up proof (the request body of the KYC reads).
pub type StepUp = crate::factors::StepUp;

/// An admin search (`POST /v1/admin/kyc/search`): either `document_number`, or
/// `full_name` with `date_of_birth`. The values travel in the body, never in the URL.
#[derive(Deserialize, ToSchema)]
pub struct KycSearch {
    /// The admin's second-factor proof (step-up).
    #[serde(flatten)]
    pub factors: crate::factors::StepUp,
    /// A document number in any formatting (spaces, `-`, case are ignored).
    pub document_number: Option<String>,
    /// A full name (case, Unicode normal form and extra spaces are ignored).
    pub full_name: Option<String>,
    /// Date of birth, `YYYY-MM-DD` (with `full_name`).
    pub date_of_birth: Option<String>,
}

impl Drop for KycSearch {
    fn drop(&mut self) {
        self.document_number.zeroize();
        self.full_name.zeroize();
        self.date_of_birth.zeroize();
    }
}

impl std::fmt::Debug for KycSearch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KycSearch(<redacted>)")
    }
}

/// What to search by.
#[derive(Clone, Copy)]
pub enum SearchBy<'a> {
    /// A document number.
    DocumentNumber(&'a str),
    /// A full name and a date of birth.
    NameAndBirthDate(&'a str, &'a str),
}

impl std::fmt::Debug for SearchBy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SearchBy::DocumentNumber(_) => "DocumentNumber(<redacted>)",
            SearchBy::NameAndBirthDate(..) => "NameAndBirthDate(<redacted>)",
        })
    }
}

/// One search hit: whose record, no personal data (read it with
/// `POST /v1/admin/kyc/{principal_id}/read`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct KycMatch {
    /// The principal.
    pub principal_id: String,
    /// The record id.
    pub record_id: String,
    /// The index that matched: `document_number` or `name_dob`.
    pub matched_on: String,
}

fn name_dob_index(
    keys: &VaultKeys,
    full_name: &str,
    date_of_birth: &str,
) -> Result<custody_vault::BlindIndex, ApiError> {
    let name = FieldKind::Name.normalise(full_name);
    if name.is_empty() {
        return Err(ApiError::bad_request("full_name is required"));
    }
    let mut joined = Zeroizing::new(String::with_capacity(name.len() + 1 + date_of_birth.len()));
    joined.push_str(&name);
    joined.push('\n');
    joined.push_str(date_of_birth);
    keys.blind_index(FieldKind::Exact, &joined)
        .map_err(|e| ApiError::bad_request(format!("full_name and date_of_birth: {e}")))
}

fn indexes(keys: &VaultKeys, record: &KycRecord) -> Result<[(&'static str, String); 2], ApiError> {
    let document = keys
        .blind_index(FieldKind::DocumentNumber, &record.document_number)
        .map_err(|e| ApiError::bad_request(format!("document_number: {e}")))?;
    let name_dob = name_dob_index(keys, &record.full_name, &record.date_of_birth)?;
    Ok([
        (FIELD_DOCUMENT_NUMBER, document.to_hex()),
        (FIELD_NAME_DOB, name_dob.to_hex()),
    ])
}

fn seal_error(e: SealError) -> ApiError {
    match e {
        SealError::Kyc(k) => ApiError::bad_request(format!("{k}")),
        other => ApiError::internal(format!("sealing a KYC record: {other}")),
    }
}

/// Stores `record` as the KYC record of `principal_id` (inserting it, or replacing the
/// sealed blob of the existing row, which keeps its record id): the row, its blind
/// indexes and an audit entry `kyc.stored` (record id, KEK, image count; no personal
/// data) in one transaction. `actor` is who did it.
///
/// # Errors
/// 400 when the record breaks a rule (names the field or limit), 503 `retry` when another
/// write of the same record won three times in a row, or storage failure.
pub async fn save(
    app: &App,
    principal_id: &str,
    actor: &str,
    record: &KycRecord,
) -> Result<KycStatus, ApiError> {
    check(record)?;
    let index_rows = indexes(&app.vault.keys(), record)?;
    for attempt in 1..=3 {
        let now = app.now();
        let existing =
            sqlx::query("SELECT id, created_at FROM kyc_records WHERE principal_id = $1")
                .bind(principal_id)
                .fetch_optional(app.db.pool())
                .await?;
        let (record_id, created_at, replaced) = match existing {
            Some(r) => (text(&r, "id")?, int(&r, "created_at")?, true),
            None => (Uuid::new_v4().to_string(), now, false),
        };
        let (sealed, kek) = app.vault.seal_kyc(&record_id, record).map_err(seal_error)?;
        let kek_id = i64::from(kek.0);
        let mut tx = app.db.begin().await?;
        let written = if replaced {
            sqlx::query(
                "UPDATE kyc_records SET sealed = $1, kek_id = $2, updated_at = $3 \
                 WHERE id = $4 AND principal_id = $5",
            )
            .bind(&sealed)
            .bind(kek_id)
            .bind(now)
            .bind(&record_id)
            .bind(principal_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1
        } else {
            match sqlx::query(
                "INSERT INTO kyc_records (id, principal_id, sealed, kek_id, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $5)",
            )
            .bind(&record_id)
            .bind(principal_id)
            .bind(&sealed)
            .bind(kek_id)
            .bind(now)
            .execute(&mut *tx)
            .await
            {
                Ok(_) => true,
                // A concurrent first submission of the same principal won: replace it.
                Err(sqlx::Error::Database(d)) if d.is_unique_violation() => false,
                Err(e) => return Err(e.into()),
            }
        };
        if !written {
            continue;
        }
        sqlx::query("DELETE FROM kyc_blind_index WHERE record_id = $1")
            .bind(&record_id)
            .execute(&mut *tx)
            .await?;
        for (field, value) in &index_rows {
            sqlx::query(
                "INSERT INTO kyc_blind_index (record_id, field, value) VALUES ($1, $2, $3)",
            )
            .bind(&record_id)
            .bind(*field)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        }
        audit::append(
            &mut tx,
            now,
            "kyc.stored",
            actor,
            principal_id,
            &serde_json::json!({
                "record_id": record_id,
                "kek_id": kek_id,
                "document_images": record.document_images.len(),
                "replaced": replaced,
            }),
        )
        .await?;
        match tx.commit().await {
            Ok(()) => {
                return Ok(KycStatus {
                    record_id,
                    principal_id: principal_id.to_owned(),
                    kek_id,
                    created_at,
                    updated_at: now,
                })
            }
            Err(e) => {
                let e = ApiError::from(e);
                if !(e.is_retryable() && attempt < 3) {
                    return Err(e);
                }
            }
        }
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "retry",
        "the KYC record was being changed by another request at the same time; send it again",
    ))
}

/// Where the KYC record of `principal_id` is, without opening it.
///
/// # Errors
/// Storage failure.
pub async fn status(app: &App, principal_id: &str) -> Result<Option<KycStatus>, ApiError> {
    let row = sqlx::query(
        "SELECT id, kek_id, created_at, updated_at FROM kyc_records WHERE principal_id = $1",
    )
    .bind(principal_id)
    .fetch_optional(app.db.pool())
    .await?;
    row.map(|r| {
        Ok(KycStatus {
            record_id: text(&r, "id")?,
            principal_id: principal_id.to_owned(),
            kek_id: int(&r, "kek_id")?,
            created_at: int(&r, "created_at")?,
            updated_at: int(&r, "updated_at")?,
        })
    })
    .transpose()
}

/// Opens the KYC record of `principal_id` for `actor` and records the read in the audit
/// log (`kyc.read`: who read whose record, the record id) before returning it.
///
/// # Errors
/// 404 when there is none; 500 `kyc_unreadable` naming the record id when it does not
/// open (a row moved or copied from another record, a damaged blob, a KEK no longer in
/// the key file) — then nothing of it is returned and `kyc.unreadable` is audited.
pub async fn read(
    app: &App,
    actor: &str,
    principal_id: &str,
) -> Result<(KycStatus, KycRecord), ApiError> {
    let row = sqlx::query(
        "SELECT id, sealed, kek_id, created_at, updated_at FROM kyc_records WHERE principal_id = $1",
    )
    .bind(principal_id)
    .fetch_optional(app.db.pool())
    .await?
    .ok_or_else(|| ApiError::not_found("KYC record"))?;
    let status = KycStatus {
        record_id: text(&row, "id")?,
        principal_id: principal_id.to_owned(),
        kek_id: int(&row, "kek_id")?,
        created_at: int(&row, "created_at")?,
        updated_at: int(&row, "updated_at")?,
    };
    let sealed = text(&row, "sealed")?;
    let record_id = status.record_id.clone();
    match app.vault.open_kyc(&record_id, &sealed) {
        Ok(record) => {
            let mut tx = app.db.begin().await?;
            audit::append(
                &mut tx,
                app.now(),
                "kyc.read",
                actor,
                principal_id,
                &serde_json::json!({ "record_id": record_id }),
            )
            .await?;
            tx.commit().await?;
            Ok((status, record))
        }
        Err(e) => {
            tracing::error!(record_id = %record_id, principal_id, error = %e, "a KYC record does not open");
            let reason = match &e {
                OpenSealedError::Reload(_) => {
                    "the vault key file could not be re-read (see the coordinator log)".to_owned()
                }
                other => other.to_string(),
            };
            // Best effort: the failure is already logged, and the answer must not wait on it.
            if let Ok(mut tx) = app.db.begin().await {
                let noted = audit::append(
                    &mut tx,
                    app.now(),
                    "kyc.unreadable",
                    actor,
                    principal_id,
                    &serde_json::json!({ "record_id": record_id, "reason": reason }),
                )
                .await;
                if noted.is_ok() {
                    let _ = tx.commit().await;
                }
            }
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "kyc_unreadable",
                format!(
                    "KYC record {record_id} cannot be opened: {reason}; nothing of it was returned. The operator should restore the row from a backup or ask its owner to submit the record again"
                ),
            ))
        }
    }
}

/// Finds KYC records by blind index for `actor` (an admin) and audits the search
/// (`kyc.searched`: which index, how many matches; never the value).
///
/// # Errors
/// 400 for an empty or over-long value or a malformed date of birth; storage failure.
pub async fn search(app: &App, actor: &str, by: SearchBy<'_>) -> Result<Vec<KycMatch>, ApiError> {
    let keys = app.vault.keys();
    let (field, index) = match by {
        SearchBy::DocumentNumber(n) => (
            FIELD_DOCUMENT_NUMBER,
            keys.blind_index(FieldKind::DocumentNumber, n)
                .map_err(|e| ApiError::bad_request(format!("document_number: {e}")))?,
        ),
        SearchBy::NameAndBirthDate(name, dob) => {
            let b = dob.as_bytes();
            let date_like = b.len() == 10
                && b.iter().enumerate().all(|(i, c)| {
                    if i == 4 || i == 7 {
                        *c == b'-'
                    } else {
                        c.is_ascii_digit()
                    }
                });
            if !date_like {
                return Err(ApiError::bad_request("date_of_birth must be YYYY-MM-DD"));
            }
            (FIELD_NAME_DOB, name_dob_index(&keys, name, dob)?)
        }
    };
    let rows = sqlx::query(
        "SELECT r.principal_id AS principal_id, r.id AS id FROM kyc_blind_index i \
         JOIN kyc_records r ON r.id = i.record_id \
         WHERE i.field = $1 AND i.value = $2 ORDER BY r.principal_id LIMIT $3",
    )
    .bind(field)
    .bind(index.to_hex())
    .bind(i64::try_from(MAX_MATCHES).unwrap_or(100))
    .fetch_all(app.db.pool())
    .await?;
    let matches = rows
        .iter()
        .map(|r| {
            Ok(KycMatch {
                principal_id: text(r, "principal_id")?,
                record_id: text(r, "id")?,
                matched_on: field.to_owned(),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let mut tx = app.db.begin().await?;
    audit::append(
        &mut tx,
        app.now(),
        "kyc.searched",
        actor,
        "kyc",
        &serde_json::json!({ "by": field, "matches": matches.len() }),
    )
    .await?;
    tx.commit().await?;
    Ok(matches)
}

/// Reads a JSON body of at most `limit` bytes. Errors name the limit or a missing field,
/// never a value (serde's own messages can quote the input).
async fn json_body<T: DeserializeOwned>(body: Body, limit: usize) -> Result<T, ApiError> {
    let bytes = wiped_body(body, limit).await?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_json(&e))
}

/// Reads a request body that holds personal data into a buffer wiped when dropped. The
/// buffer grows by copying into a new wiped buffer (a reallocation would leave the old
/// bytes behind in freed memory), and each chunk the server handed over is wiped once
/// copied when nothing else holds it. Copies inside the HTTP stack's own read buffers are
/// beyond reach.
///
/// # Errors
/// 400 naming `limit` when the body is larger or cannot be read.
async fn wiped_body(body: Body, limit: usize) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    use futures_util::StreamExt;
    let refused = || {
        ApiError::bad_request(format!(
            "the request body could not be read or is larger than {limit} bytes, the limit of this route"
        ))
    };
    let mut buf = Zeroizing::new(Vec::with_capacity(limit.min(64 * 1024)));
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|_| refused())?;
        let fits = buf
            .len()
            .checked_add(chunk.len())
            .is_some_and(|n| n <= limit);
        if fits && buf.capacity() - buf.len() < chunk.len() {
            let want = (buf.len() + chunk.len()).max(buf.capacity().saturating_mul(2));
            let mut bigger = Zeroizing::new(Vec::with_capacity(want.min(limit)));
            bigger.extend_from_slice(&buf);
            buf = bigger;
        }
        if fits {
            buf.extend_from_slice(&chunk);
        }
        if let Ok(mut own) = chunk.try_into_mut() {
            own.as_mut().zeroize();
        }
        if !fits {
            return Err(refused());
        }
    }
    Ok(buf)
}

async fn step_up(app: &App, p: &Principal, proof: &StepUp) -> Result<(), ApiError> {
    let mut tx = app.db.begin().await?;
    accounts::step_up(
        &mut tx,
        app,
        p,
        proof,
        custody_auth::Action::SensitiveChange,
        &p.client_ip,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn admin_step_up(app: &App, p: &Principal, proof: &StepUp) -> Result<(), ApiError> {
    if p.role != Role::Admin {
        return Err(ApiError::forbidden("this needs the admin role"));
    }
    step_up(app, p, proof).await
}

/// Stores (inserts or replaces) the caller's own KYC record, sealed at rest. Needs a
/// current 2FA code in `totp`. The body may be up to about 27 MiB (four 5 MiB images in
/// base64); a larger body or image is refused with 400 naming the limit.
#[utoipa::path(put, path = "/v1/me/kyc", request_body = KycSubmission,
    responses((status = 200, body = KycStatus), (status = 400, body = ErrorBody, description = "malformed or over a limit; the message names the field or limit, never the data"),
        (status = 401, body = ErrorBody, description = "missing or wrong 2FA code"), (status = 403, body = ErrorBody, description = "2FA not enrolled")))]
pub async fn put_my_kyc(
    State(app): State<App>,
    Auth(p, _t): Auth,
    body: Body,
) -> Result<Json<KycStatus>, ApiError> {
    let mut submission: KycSubmission = json_body(body, MAX_SUBMISSION_BYTES).await?;
    let proof = std::mem::take(&mut submission.factors);
    let record = submission.into_record()?;
    step_up(&app, &p, &proof).await?;
    Ok(Json(save(&app, &p.id, &p.id, &record).await?))
}

/// Whether the caller has a KYC record and which KEK wraps it (no personal data, no 2FA).
#[utoipa::path(get, path = "/v1/me/kyc",
    responses((status = 200, body = KycStatus), (status = 404, body = ErrorBody)))]
pub async fn my_kyc_status(
    State(app): State<App>,
    Auth(p, _t): Auth,
) -> Result<Json<KycStatus>, ApiError> {
    status(&app, &p.id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("KYC record"))
}

/// Shows the caller's own KYC record. A POST because it needs a current 2FA code in the
/// body (`{"totp": "123456"}`): the record is personal data shown back.
#[utoipa::path(post, path = "/v1/me/kyc/read", request_body = StepUp,
    responses((status = 200, body = KycView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 500, body = ErrorBody, description = "`kyc_unreadable`: the stored record does not open; names the record id")))]
pub async fn read_my_kyc(
    State(app): State<App>,
    Auth(p, _t): Auth,
    body: Body,
) -> Result<Json<KycView>, ApiError> {
    let s: StepUp = json_body(body, MAX_SMALL_BODY).await?;
    step_up(&app, &p, &s).await?;
    let (status, record) = read(&app, &p.id, &p.id).await?;
    Ok(Json(KycView::new(status, record)?))
}

/// Finds KYC records by document number, or by full name and date of birth, through the
/// blind index (admin role and a current 2FA code). The values are in the body, never
/// the URL; the answer holds ids only.
#[utoipa::path(post, path = "/v1/admin/kyc/search", request_body = KycSearch,
    responses((status = 200, body = Vec<KycMatch>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn search_kyc(
    State(app): State<App>,
    Auth(p, _t): Auth,
    body: Body,
) -> Result<Json<Vec<KycMatch>>, ApiError> {
    let s: KycSearch = json_body(body, MAX_SMALL_BODY).await?;
    let by = match (&s.document_number, &s.full_name, &s.date_of_birth) {
        (Some(n), None, None) => SearchBy::DocumentNumber(n),
        (None, Some(name), Some(dob)) => SearchBy::NameAndBirthDate(name, dob),
        _ => return Err(ApiError::bad_request(
            "search by `document_number` alone, or by `full_name` together with `date_of_birth`",
        )),
    };
    admin_step_up(&app, &p, &s.factors).await?;
    Ok(Json(search(&app, &p.id, by).await?))
}

/// Shows a principal's KYC record to an admin (admin role and a current 2FA code); the
/// read is audited as `kyc.read` with the admin as actor.
#[utoipa::path(post, path = "/v1/admin/kyc/{principal_id}/read", params(("principal_id" = String, Path)), request_body = StepUp,
    responses((status = 200, body = KycView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 500, body = ErrorBody, description = "`kyc_unreadable`: the stored record does not open; names the record id")))]
pub async fn admin_read_kyc(
    State(app): State<App>,
    Auth(p, _t): Auth,
    Path(principal_id): Path<String>,
    body: Body,
) -> Result<Json<KycView>, ApiError> {
    let s: StepUp = json_body(body, MAX_SMALL_BODY).await?;
    admin_step_up(&app, &p, &s).await?;
    let (status, record) = read(&app, &p.id, &principal_id).await?;
    Ok(Json(KycView::new(status, record)?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::body::{Body, Bytes};

    fn chunked(parts: &[&[u8]]) -> Body {
        let chunks: Vec<Result<Bytes, std::io::Error>> = parts
            .iter()
            .map(|p| Ok(Bytes::copy_from_slice(p)))
            .collect();
        Body::from_stream(futures_util::stream::iter(chunks))
    }

    #[tokio::test]
    async fn a_body_in_many_chunks_is_read_whole_and_a_larger_one_is_refused() {
        // Chunks that outgrow the first buffer several times.
        let parts: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 3000 + usize::from(i)]).collect();
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let total: usize = parts.iter().map(Vec::len).sum();
        let read = super::wiped_body(chunked(&refs), total).await.unwrap();
        assert_eq!(read.as_slice(), parts.concat().as_slice());
        let err = super::wiped_body(chunked(&refs), total - 1)
            .await
            .unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(
            err.message
                .contains(&format!("larger than {} bytes", total - 1)),
            "{}",
            err.message
        );
        assert!(super::wiped_body(chunked(&[]), 10)
            .await
            .unwrap()
            .is_empty());
    }
}
