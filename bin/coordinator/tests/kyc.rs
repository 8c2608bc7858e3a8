//! KYC records encrypted at rest (issue 7): what is in the database, rows moved between
//! records, blind-index search, who may read what, step-up 2FA, size limits, and key
//! rotation while the daemon serves. Each runs on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use base64::Engine as _;
use common::{Engine, Harness, Session, B64};
use custody_coordinator::accounts::Role;
use custody_coordinator::{kyc, vault};
use custody_vault::{KekId, MAX_IMAGE_BYTES};
use serde_json::{json, Value};

const NAME: &str = "Zebulon Quackenbush-Oyelaran";
const DOB: &str = "1987-06-05";
const ADDRESS: &str = "17 Larkspur Crescent\nWhitby YO21 3XQ";
const DOCUMENT: &str = "XQ-4471 9920 3";

/// Image bytes with a marker that cannot occur by chance.
fn image(marker: &str, len: usize) -> Vec<u8> {
    let mut v = format!("IMAGE-{marker}-").into_bytes();
    while v.len() < len {
        v.push(u8::try_from(v.len() % 251).unwrap());
    }
    v.truncate(len.max(marker.len() + 7));
    v
}

fn submission(name: &str, dob: &str, document: &str, images: &[Vec<u8>], totp: &str) -> Value {
    json!({
        "totp": totp,
        "full_name": name,
        "date_of_birth": dob,
        "address": ADDRESS,
        "nationality": "GB",
        "document_type": "passport",
        "document_number": document,
        "document_images": images
            .iter()
            .map(|i| json!({ "media_type": "image/png", "data": B64.encode(i) }))
            .collect::<Vec<_>>(),
    })
}

async fn put(h: &Harness, s: &Session, body: Value) -> (StatusCode, Value) {
    h.call("PUT", "/v1/me/kyc", Some(&s.token), None, Some(body))
        .await
}

async fn put_ok(h: &Harness, s: &Session, name: &str, document: &str, images: &[Vec<u8>]) -> Value {
    let code = h.totp(s);
    let (st, v) = put(h, s, submission(name, DOB, document, images, &code)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

async fn read_own(h: &Harness, s: &Session) -> (StatusCode, Value) {
    let code = h.totp(s);
    h.call(
        "POST",
        "/v1/me/kyc/read",
        Some(&s.token),
        None,
        Some(json!({ "totp": code })),
    )
    .await
}

async fn admin_read(h: &Harness, admin: &Session, principal: &str) -> (StatusCode, Value) {
    let code = h.totp(admin);
    h.call(
        "POST",
        &format!("/v1/admin/kyc/{principal}/read"),
        Some(&admin.token),
        None,
        Some(json!({ "totp": code })),
    )
    .await
}

/// (record id, sealed text, kek id) straight from the table.
async fn raw_row(h: &Harness, principal: &str) -> (String, String, i64) {
    use sqlx::Row;
    let r = sqlx::query("SELECT id, sealed, kek_id FROM kyc_records WHERE principal_id = $1")
        .bind(principal)
        .fetch_one(h.app.db.pool())
        .await
        .unwrap();
    (
        r.try_get("id").unwrap(),
        r.try_get("sealed").unwrap(),
        r.try_get("kek_id").unwrap(),
    )
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every TEXT column of every KYC row and index row, and every audit entry, as one blob
/// of text per row.
async fn everything_stored(h: &Harness) -> Vec<String> {
    use sqlx::Row;
    let mut out = Vec::new();
    for r in sqlx::query("SELECT id, principal_id, sealed FROM kyc_records")
        .fetch_all(h.app.db.pool())
        .await
        .unwrap()
    {
        for c in ["id", "principal_id", "sealed"] {
            out.push(r.try_get::<String, _>(c).unwrap());
        }
    }
    for r in sqlx::query("SELECT record_id, field, value FROM kyc_blind_index")
        .fetch_all(h.app.db.pool())
        .await
        .unwrap()
    {
        for c in ["record_id", "field", "value"] {
            out.push(r.try_get::<String, _>(c).unwrap());
        }
    }
    custody_coordinator::audit::chain_pending(&h.app.db)
        .await
        .unwrap();
    for e in custody_coordinator::audit::entries(&h.app.db, 0, 100_000)
        .await
        .unwrap()
    {
        out.push(format!("{} {} {} {}", e.kind, e.actor, e.subject, e.data));
    }
    for r in sqlx::query("SELECT response FROM idempotency_keys")
        .fetch_all(h.app.db.pool())
        .await
        .unwrap()
    {
        out.push(r.try_get::<String, _>("response").unwrap());
    }
    out
}

/// Issue 7: "ciphertext in the database that does not contain the plaintext".
async fn ciphertext_in_the_database_does_not_contain_the_plaintext(engine: Engine) {
    let Some(h) = Harness::new(engine).await else {
        return;
    };
    let alice = h.principal("alice@example.com", Role::User, None).await;
    let picture = image("a1b2c3-passport-scan", 40_000);
    let stored = put_ok(&h, &alice, NAME, DOCUMENT, std::slice::from_ref(&picture)).await;
    assert_eq!(stored["principal_id"], json!(alice.id));
    assert_eq!(stored["kek_id"], json!(1));
    let (record_id, sealed, kek) = raw_row(&h, &alice.id).await;
    assert_eq!(stored["record_id"], json!(record_id));
    assert_eq!(kek, 1);
    let plaintexts: [&[u8]; 6] = [
        NAME.as_bytes(),
        DOB.as_bytes(),
        ADDRESS.as_bytes(),
        DOCUMENT.as_bytes(),
        b"XQ447199203",
        &picture[..64],
    ];
    let decoded = B64.decode(&sealed).expect("the column is base64");
    assert!(
        decoded.len() > picture.len(),
        "the whole record is in the blob"
    );
    for p in plaintexts {
        assert!(!contains(sealed.as_bytes(), p), "raw text holds plaintext");
        assert!(!contains(&decoded, p), "decoded blob holds plaintext");
    }
    assert!(!sealed.contains(&B64.encode(&picture)[..64]));
    // Nothing stored anywhere else carries it either: index rows, audit entries.
    for text in everything_stored(&h).await {
        for p in [NAME, DOB, ADDRESS, DOCUMENT, "XQ447199203", "zebulon"] {
            assert!(!text.to_lowercase().contains(&p.to_lowercase()), "{text}");
        }
    }
    // It reads back, whole, with step-up 2FA.
    let (st, v) = read_own(&h, &alice).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["full_name"], json!(NAME));
    assert_eq!(v["date_of_birth"], json!(DOB));
    assert_eq!(v["address"], json!(ADDRESS));
    assert_eq!(v["document_number"], json!(DOCUMENT));
    assert_eq!(v["document_type"], json!("passport"));
    assert_eq!(v["document_images"][0]["data"], json!(B64.encode(&picture)));
    assert_eq!(v["record_id"], json!(record_id));
    // The status route shows where it is, nothing personal, without 2FA.
    let (st, v) = h
        .call("GET", "/v1/me/kyc", Some(&alice.token), None, None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["record_id"], json!(record_id));
    assert!(!v.to_string().contains("Zebulon"));
    // Replacing keeps the record id, seals anew, and keeps one row.
    let before = sealed;
    put_ok(&h, &alice, "Zebulon Q. Oyelaran", DOCUMENT, &[]).await;
    let (id2, sealed2, _) = raw_row(&h, &alice.id).await;
    assert_eq!(id2, record_id);
    assert_ne!(sealed2, before);
    let (_, v) = read_own(&h, &alice).await;
    assert_eq!(v["full_name"], json!("Zebulon Q. Oyelaran"));
    assert_eq!(v["document_images"], json!([]));
    assert_eq!(h.audit_count("kyc.stored").await, 2);
    assert_eq!(h.audit_count("kyc.read").await, 2);
    // A read sent with an Idempotency-Key is not stored for replay: the idempotency table
    // never holds the record.
    let code = h.totp(&alice);
    let (st, _) = h
        .call(
            "POST",
            "/v1/me/kyc/read",
            Some(&alice.token),
            Some(&common::new_key()),
            Some(json!({ "totp": code })),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    for text in everything_stored(&h).await {
        assert!(!text.contains("Zebulon"), "{text}");
    }
    // Every KYC route is in the OpenAPI document.
    let (_, doc) = h.call("GET", "/openapi.json", None, None, None).await;
    for p in [
        "/v1/me/kyc",
        "/v1/me/kyc/read",
        "/v1/admin/kyc/search",
        "/v1/admin/kyc/{principal_id}/read",
    ] {
        assert!(doc["paths"][p].is_object(), "OpenAPI lacks {p}");
    }
}
on_both!(ciphertext_in_the_database_does_not_contain_the_plaintext);

/// Issue 7: "decryption failing when a row is moved to another record id".
async fn a_blob_moved_to_another_record_does_not_open(engine: Engine) {
    let Some(h) = Harness::new(engine).await else {
        return;
    };
    let alice = h.principal("alice@example.com", Role::User, None).await;
    let bob = h.principal("bob@example.com", Role::User, None).await;
    put_ok(&h, &alice, NAME, DOCUMENT, &[image("alice", 1000)]).await;
    put_ok(&h, &bob, "Robert Ordinary", "B-1", &[]).await;
    let (_, alice_sealed, _) = raw_row(&h, &alice.id).await;
    let (bob_record, _, _) = raw_row(&h, &bob.id).await;
    // An insider with database access copies Alice's blob into Bob's row.
    sqlx::query("UPDATE kyc_records SET sealed = $1 WHERE principal_id = $2")
        .bind(&alice_sealed)
        .bind(&bob.id)
        .execute(h.app.db.pool())
        .await
        .unwrap();
    let (st, v) = read_own(&h, &bob).await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
    assert_eq!(v["error"]["code"], json!("kyc_unreadable"));
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains(&bob_record), "names the record: {msg}");
    assert!(msg.contains("another record"), "says why: {msg}");
    for p in [NAME, DOCUMENT, DOB, "Zebulon"] {
        assert!(!v.to_string().contains(p), "{v}");
    }
    // Nor through an admin.
    let admin = h.principal("admin@example.com", Role::Admin, None).await;
    let (st, v) = admin_read(&h, &admin, &bob.id).await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
    assert!(!v.to_string().contains("Zebulon"), "{v}");
    // The library says exactly what happened.
    let e = h
        .app
        .vault
        .open_kyc(&bob_record, &alice_sealed)
        .unwrap_err();
    assert!(
        matches!(
            e,
            vault::OpenSealedError::Open(custody_vault::OpenError::WrongRecord)
        ),
        "{e}"
    );
    assert_eq!(h.audit_count("kyc.unreadable").await, 2);
    assert_eq!(h.audit_count("kyc.read").await, 0);
    // A damaged blob is a clear error too; Alice's own record is untouched.
    sqlx::query("UPDATE kyc_records SET sealed = $1 WHERE principal_id = $2")
        .bind("bm90IGEgYmxvYg==")
        .bind(&bob.id)
        .execute(h.app.db.pool())
        .await
        .unwrap();
    let (st, v) = read_own(&h, &bob).await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("damaged"),
        "{v}"
    );
    let (st, v) = read_own(&h, &alice).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["full_name"], json!(NAME));
}
on_both!(a_blob_moved_to_another_record_does_not_open);

async fn blind_index_search_finds_other_formatting_and_stores_no_plaintext(engine: Engine) {
    let Some(h) = Harness::new(engine).await else {
        return;
    };
    let alice = h.principal("alice@example.com", Role::User, None).await;
    let bob = h.principal("bob@example.com", Role::User, None).await;
    let admin = h.principal("admin@example.com", Role::Admin, None).await;
    put_ok(&h, &alice, "Alice  O'Neil", "ab 123-456 c", &[]).await;
    put_ok(&h, &bob, "Bob Smith", "ZZ999", &[]).await;
    let (alice_record, _, _) = raw_row(&h, &alice.id).await;
    let search = |body: Value| {
        let admin = admin.clone();
        let h = &h;
        async move {
            let code = h.totp(&admin);
            let mut body = body;
            body["totp"] = json!(code);
            h.call(
                "POST",
                "/v1/admin/kyc/search",
                Some(&admin.token),
                None,
                Some(body),
            )
            .await
        }
    };
    let (st, v) = search(json!({ "document_number": "AB123456C" })).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!([{ "principal_id": alice.id, "record_id": alice_record, "matched_on": "document_number" }])
    );
    let (st, v) = search(json!({ "document_number": " Ab-1234 56c " })).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    let (st, v) = search(json!({ "full_name": "alice o'neil", "date_of_birth": DOB })).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v[0]["principal_id"], json!(alice.id), "{v}");
    assert_eq!(v[0]["matched_on"], json!("name_dob"));
    // Same name, other date of birth: no match; unknown number: none.
    let (_, v) =
        search(json!({ "full_name": "Alice O'Neil", "date_of_birth": "1987-06-06" })).await;
    assert_eq!(v, json!([]));
    let (_, v) = search(json!({ "document_number": "AB123456" })).await;
    assert_eq!(v, json!([]));
    // A search must say what it searches by, and never takes half of the name pair.
    let (st, _) = search(json!({ "full_name": "Alice O'Neil" })).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // The index table holds hex HMACs only.
    use sqlx::Row;
    let rows = sqlx::query("SELECT record_id, field, value FROM kyc_blind_index ORDER BY field")
        .fetch_all(h.app.db.pool())
        .await
        .unwrap();
    assert_eq!(rows.len(), 4);
    for r in &rows {
        let value: String = r.try_get("value").unwrap();
        assert_eq!(value.len(), 32);
        assert!(value
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        let field: String = r.try_get("field").unwrap();
        assert!(field == "document_number" || field == "name_dob");
    }
    for text in everything_stored(&h).await {
        for p in [
            "AB123456C",
            "ab 123-456 c",
            "o'neil",
            "alice  o'neil",
            "zz999",
            "bob smith",
        ] {
            assert!(!text.to_lowercase().contains(&p.to_lowercase()), "{text}");
        }
    }
    // Searches are audited without the value.
    assert_eq!(h.audit_count("kyc.searched").await, 5);
    // The admin reads the match; the read is audited as the admin reading Alice's record.
    let (st, v) = admin_read(&h, &admin, &alice.id).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["full_name"], json!("Alice  O'Neil"));
    let reads: Vec<_> = custody_coordinator::audit::entries(&h.app.db, 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "kyc.read")
        .collect();
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0].actor, admin.id);
    assert_eq!(reads[0].subject, alice.id);
    assert!(reads[0].data.contains(&alice_record));
}
on_both!(blind_index_search_finds_other_formatting_and_stores_no_plaintext);

async fn a_user_cannot_read_another_users_record(engine: Engine) {
    let Some(h) = Harness::new(engine).await else {
        return;
    };
    let alice = h.principal("alice@example.com", Role::User, None).await;
    let bob = h.principal("bob@example.com", Role::User, None).await;
    let operator = h.principal("ops@example.com", Role::Operator, None).await;
    put_ok(&h, &alice, NAME, DOCUMENT, &[]).await;
    // Bob has no record: his own read is a 404, not Alice's.
    let (st, v) = read_own(&h, &bob).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    // The admin routes refuse users and other staff, even with a valid 2FA code.
    for s in [&bob, &operator] {
        let (st, v) = admin_read(&h, s, &alice.id).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
        assert!(!v.to_string().contains("Zebulon"));
        let code = h.totp(s);
        let (st, v) = h
            .call(
                "POST",
                "/v1/admin/kyc/search",
                Some(&s.token),
                None,
                Some(json!({ "document_number": DOCUMENT, "totp": code })),
            )
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    }
    // Bob writing "his" record writes his own row, never Alice's.
    put_ok(&h, &bob, "Bob Smith", "B-2", &[]).await;
    let (_, v) = read_own(&h, &alice).await;
    assert_eq!(v["full_name"], json!(NAME));
    let (_, v) = read_own(&h, &bob).await;
    assert_eq!(v["full_name"], json!("Bob Smith"));
    // No session, no record.
    let (st, _) = h
        .call(
            "POST",
            "/v1/me/kyc/read",
            None,
            None,
            Some(json!({ "totp": "000000" })),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(h.audit_count("kyc.read").await, 2);
}
on_both!(a_user_cannot_read_another_users_record);

async fn step_up_is_required_to_write_and_to_read(engine: Engine) {
    let Some(h) = Harness::new(engine).await else {
        return;
    };
    let alice = h.principal("alice@example.com", Role::User, None).await;
    let mut body = submission(NAME, DOB, DOCUMENT, &[], "");
    body.as_object_mut().unwrap().remove("totp");
    let (st, v) = put(&h, &alice, body).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["error"]["code"], json!("bad_2fa"));
    let (st, v) = put(&h, &alice, submission(NAME, DOB, DOCUMENT, &[], "123456")).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    let (st, _) = h
        .call("GET", "/v1/me/kyc", Some(&alice.token), None, None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "nothing was stored");
    put_ok(&h, &alice, NAME, DOCUMENT, &[]).await;
    // A code is single-use: replaying the one just used is refused.
    let code = h.totp(&alice);
    let (st, _) = h
        .call(
            "POST",
            "/v1/me/kyc/read",
            Some(&alice.token),
            None,
            Some(json!({ "totp": code })),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = h
        .call(
            "POST",
            "/v1/me/kyc/read",
            Some(&alice.token),
            None,
            Some(json!({ "totp": code })),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert!(!v.to_string().contains("Zebulon"));
    let (st, v) = h
        .call(
            "POST",
            "/v1/me/kyc/read",
            Some(&alice.token),
            None,
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    // Without TOTP enrolled there is no KYC at all.
    let (st, v) = h
        .call(
            "POST",
            "/v1/users",
            None,
            None,
            Some(json!({ "email": "nofa@example.com", "password": common::PASSWORD })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let nofa = h.login("nofa@example.com", None).await;
    let (st, v) = put(&h, &nofa, submission(NAME, DOB, DOCUMENT, &[], "123456")).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], json!("totp_required"));
    // An admin search needs the admin's code too.
    let admin = h.principal("admin@example.com", Role::Admin, None).await;
    let (st, _) = h
        .call(
            "POST",
            "/v1/admin/kyc/search",
            Some(&admin.token),
            None,
            Some(json!({ "document_number": DOCUMENT })),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/admin/kyc/{}/read", alice.id),
            Some(&admin.token),
            None,
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}
on_both!(step_up_is_required_to_write_and_to_read);

async fn over_limit_input_is_refused_with_400_naming_the_limit(engine: Engine) {
    let Some(h) = Harness::new(engine).await else {
        return;
    };
    let alice = h.principal("alice@example.com", Role::User, None).await;
    let code = h.totp(&alice);
    // One byte over the per-image limit.
    let big = image("too-big", MAX_IMAGE_BYTES + 1);
    let (st, v) = put(&h, &alice, submission(NAME, DOB, DOCUMENT, &[big], &code)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains(&MAX_IMAGE_BYTES.to_string()), "{msg}");
    assert!(!msg.contains("Zebulon") && !msg.contains("XQ"), "{msg}");
    // Exactly at the limit is fine.
    let (st, v) = put(
        &h,
        &alice,
        submission(NAME, DOB, DOCUMENT, &[image("max", MAX_IMAGE_BYTES)], &code),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Five images, an over-long field, a bad date, bad base64: 400 naming the rule.
    let code = h.totp(&alice);
    let five: Vec<Vec<u8>> = (0..5).map(|i| image(&i.to_string(), 100)).collect();
    let (st, v) = put(&h, &alice, submission(NAME, DOB, DOCUMENT, &five, &code)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 4"),
        "{v}"
    );
    let long_name = "Zebulon".repeat(200);
    let (st, v) = put(
        &h,
        &alice,
        submission(&long_name, DOB, DOCUMENT, &[], &code),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("full_name") && msg.contains("1024"), "{msg}");
    assert!(!msg.contains("Zebulon"), "{msg}");
    let (st, v) = put(
        &h,
        &alice,
        submission(NAME, "05/06/1987", DOCUMENT, &[], &code),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(!v.to_string().contains("1987"), "{v}");
    let mut body = submission(NAME, DOB, DOCUMENT, &[], &code);
    body["document_images"] = json!([{ "media_type": "image/png", "data": "not base64!" }]);
    let (st, v) = put(&h, &alice, body).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    // A value of the wrong type is refused without being quoted back.
    let mut body = submission(NAME, DOB, DOCUMENT, &[], &code);
    body["document_number"] = json!(445_566_778_899_u64);
    let (st, v) = put(&h, &alice, body).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(!v.to_string().contains("445566778899"), "{v}");
    // A body over the route's limit is refused before it is parsed.
    let huge = "A".repeat(kyc::MAX_SUBMISSION_BYTES + 1);
    let mut body = submission(NAME, DOB, DOCUMENT, &[], &code);
    body["document_images"] = json!([{ "media_type": "image/png", "data": huge }]);
    let (st, v) = put(&h, &alice, body).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&kyc::MAX_SUBMISSION_BYTES.to_string()),
        "{v}"
    );
    // The record stored at the limit is still the one there.
    let (st, v) = read_own(&h, &alice).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        B64.decode(v["document_images"][0]["data"].as_str().unwrap())
            .unwrap()
            .len(),
        MAX_IMAGE_BYTES
    );
}
on_both!(over_limit_input_is_refused_with_400_naming_the_limit);

/// What a `custody-coordinator vault …` process has: its own connection and its own
/// load of the key file.
async fn cli_side(h: &Harness) -> (custody_coordinator::Db, vault::Vault) {
    let db = custody_coordinator::Db::connect(&h.config.database_url(), 2)
        .await
        .unwrap();
    let v = vault::Vault::load_or_create(&h.config.vault_key_file()).unwrap();
    (db, v)
}

async fn under_kek(h: &Harness, kek: i64) -> i64 {
    vault::status(&h.app.db)
        .await
        .unwrap()
        .iter()
        .filter(|c| c.table == "kyc_records" && c.kek_id == kek)
        .map(|c| c.rows)
        .sum()
}

/// Issue 7: "a key-rotation command that re-wraps without downtime".
async fn rotation_rewraps_every_row_while_the_daemon_serves(engine: Engine) {
    let Some(h) = Harness::new(engine).await else {
        return;
    };
    let alice = h.principal("alice@example.com", Role::User, None).await;
    let bob = h.principal("bob@example.com", Role::User, None).await;
    let carol = h.principal("carol@example.com", Role::User, None).await;
    put_ok(&h, &alice, NAME, DOCUMENT, &[image("alice", 5000)]).await;
    put_ok(&h, &bob, "Bob Smith", "B-1", &[]).await;
    let (_, alice_kek1_blob, _) = raw_row(&h, &alice.id).await;
    // A second daemon on the same files and database that will not read before it writes.
    let daemon2 = custody_coordinator::build_app(h.config.clone(), Arc::new(h.clock.clone()))
        .await
        .unwrap();
    let (db, cli_vault) = cli_side(&h).await;
    let report = vault::rotate(&db, &cli_vault, 1).await.unwrap();
    assert_eq!(report.added, Some(KekId(2)));
    assert_eq!(report.current, Some(KekId(2)));
    // The two KYC records, and the other sealed columns (TOTP secrets, the code-hash key).
    assert!(report.rewrapped >= 2, "{report:?}");
    assert!(
        report.failed.is_empty() && report.remaining.is_empty(),
        "{report:?}"
    );
    assert_eq!(under_kek(&h, 1).await, 0);
    assert_eq!(under_kek(&h, 2).await, 2);
    let (_, alice_blob, kek) = raw_row(&h, &alice.id).await;
    assert_eq!(kek, 2);
    assert_eq!(
        custody_vault::SealedBlob::from_text(&alice_blob)
            .unwrap()
            .kek_id(),
        KekId(2),
        "the kek column follows the blob"
    );
    // The first daemon still has only KEK 1 loaded: it re-reads the key file on meeting
    // KEK 2 and keeps answering.
    assert_eq!(h.app.vault.keys().current_kek_id(), KekId(1));
    let (st, v) = read_own(&h, &alice).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["full_name"], json!(NAME));
    assert_eq!(h.app.vault.keys().current_kek_id(), KekId(2));
    // The second daemon's first act is a write: it notices the new key file and seals
    // under KEK 2.
    let code = h.totp(&carol);
    let (st, v) = common::call(
        &daemon2,
        "PUT",
        "/v1/me/kyc",
        Some(&carol.token),
        None,
        Some(submission("Carol Jones", DOB, "C-3", &[], &code)),
        "10.0.0.1",
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["kek_id"], json!(2));
    assert_eq!(raw_row(&h, &carol.id).await.2, 2);
    // KEK 1 retires now; the current KEK never does.
    let mut keys_before = custody_vault::VaultKeys::load(&h.config.vault_key_file()).unwrap();
    assert_eq!(keys_before.kek_ids(), vec![KekId(1), KekId(2)]);
    // An interrupted run: Alice's row is back under KEK 1 (as if its re-wrap never
    // happened). Retiring KEK 1 is refused; running rotate again resumes without adding a
    // KEK and re-wraps only that row.
    sqlx::query("UPDATE kyc_records SET sealed = $1, kek_id = 1 WHERE principal_id = $2")
        .bind(&alice_kek1_blob)
        .bind(&alice.id)
        .execute(h.app.db.pool())
        .await
        .unwrap();
    let refused = vault::retire(&db, &cli_vault, KekId(1)).await.unwrap();
    match refused {
        vault::RetireOutcome::Refused(why) => {
            assert!(why.contains("1 rows of kyc_records.sealed"), "{why}")
        }
        other => panic!("retire went ahead: {other:?}"),
    }
    let report = vault::rotate(&db, &cli_vault, 100).await.unwrap();
    assert_eq!(report.added, None, "resumed, no new KEK");
    assert_eq!(report.rewrapped, 1, "only the row left behind");
    assert!(report.remaining.is_empty());
    assert_eq!(under_kek(&h, 2).await, 3);
    match vault::retire(&db, &cli_vault, KekId(2)).await.unwrap() {
        vault::RetireOutcome::Refused(why) => assert!(why.contains("current"), "{why}"),
        other => panic!("retired the current KEK: {other:?}"),
    }
    // Links waiting in the outbox are delivered before the old key goes.
    custody_coordinator::notify::deliver_pending(&h.app, 1000)
        .await
        .unwrap();
    assert_eq!(
        vault::retire(&db, &cli_vault, KekId(1)).await.unwrap(),
        vault::RetireOutcome::Retired
    );
    keys_before = custody_vault::VaultKeys::load(&h.config.vault_key_file()).unwrap();
    assert_eq!(keys_before.kek_ids(), vec![KekId(2)]);
    // Everything still reads through both daemons.
    for s in [&alice, &bob, &carol] {
        let (st, v) = read_own(&h, s).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let code = h.totp(&bob);
    let (st, v) = common::call(
        &daemon2,
        "POST",
        "/v1/me/kyc/read",
        Some(&bob.token),
        None,
        Some(json!({ "totp": code })),
        "10.0.0.1",
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["full_name"], json!("Bob Smith"));
    // Running rotate with every row current starts a new rotation (KEK 3).
    let report = vault::rotate(&db, &cli_vault, 100).await.unwrap();
    assert_eq!(report.added, Some(KekId(3)));
    // The three KYC records and the other sealed columns.
    assert!(report.rewrapped >= 3, "{report:?}");
    assert_eq!(under_kek(&h, 3).await, 3);
    daemon2.db.close().await;
    db.close().await;
}
on_both!(rotation_rewraps_every_row_while_the_daemon_serves);

/// Rows the daemon rewrites while a rotation runs are re-read, never overwritten with a
/// stale re-wrap.
async fn rotation_never_overwrites_a_concurrent_write(engine: Engine) {
    let Some(h) = Harness::new(engine).await else {
        return;
    };
    // Principals straight into the table (no password hashing): setup, not the subject.
    for i in 0..40 {
        sqlx::query("INSERT INTO principals (id, email, password_hash, role, created_at) VALUES ($1, $2, 'x', 'user', 0)")
            .bind(format!("p{i:03}"))
            .bind(format!("p{i}@example.com"))
            .execute(h.app.db.pool())
            .await
            .unwrap();
    }
    let record = |name: &str| custody_vault::KycRecord {
        full_name: name.to_owned(),
        date_of_birth: DOB.to_owned(),
        address: ADDRESS.to_owned(),
        nationality: "GB".to_owned(),
        document_type: custody_vault::DocumentType::Passport,
        document_number: "P-1".to_owned(),
        document_images: Vec::new(),
    };
    for i in 0..40 {
        kyc::save(
            &h.app,
            &format!("p{i:03}"),
            "test",
            &record(&format!("Person {i}")),
        )
        .await
        .unwrap();
    }
    let (db, cli_vault) = cli_side(&h).await;
    let app = h.app.clone();
    let writer = tokio::spawn(async move {
        let mut last = String::new();
        for v in 0..30 {
            for i in [0, 13, 39] {
                last = format!("Person {i} version {v}");
                kyc::save(&app, &format!("p{i:03}"), "test", &record(&last))
                    .await
                    .unwrap();
            }
            tokio::task::yield_now().await;
        }
        last
    });
    let report = vault::rotate(&db, &cli_vault, 2).await.unwrap();
    writer.await.unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    // Whatever interleaving happened: finishing the rotation leaves every row current, and
    // each row holds the last version written.
    let report = vault::rotate(&db, &cli_vault, 2).await.unwrap();
    if report.added.is_some() {
        assert_eq!(report.current, Some(KekId(3)));
    }
    let current = i64::from(h.app.vault.sealing_keys().current_kek_id().0);
    assert_eq!(under_kek(&h, current).await, 40);
    for i in [0, 13, 39] {
        let (_, r) = kyc::read(&h.app, "test", &format!("p{i:03}"))
            .await
            .unwrap();
        assert_eq!(r.full_name, format!("Person {i} version 29"));
    }
    let (_, r) = kyc::read(&h.app, "test", "p020").await.unwrap();
    assert_eq!(r.full_name, "Person 20");
    db.close().await;
}
on_both!(rotation_never_overwrites_a_concurrent_write);

/// `custody-coordinator vault status|rotate|retire` as an operator runs them.
async fn vault_commands_on_the_command_line(engine: Engine) {
    let Some(h) = Harness::new(engine).await else {
        return;
    };
    let alice = h.principal("alice@example.com", Role::User, None).await;
    put_ok(&h, &alice, NAME, DOCUMENT, &[]).await;
    let config_path = h.dir.path().join("coordinator.toml");
    std::fs::write(
        &config_path,
        format!(
            "data_dir = {:?}\ndatabase_url = {:?}\nnetwork = \"regtest\"\n",
            h.config.data_dir.display().to_string(),
            h.config.database_url()
        ),
    )
    .unwrap();
    let run = |args: &'static [&'static str]| {
        let config_path = config_path.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let out = assert_cmd::Command::cargo_bin("custody-coordinator")
                    .unwrap()
                    .arg("--config")
                    .arg(&config_path)
                    .args(args)
                    .env("RUST_LOG", "warn")
                    .output()
                    .unwrap();
                (
                    out.status.code(),
                    String::from_utf8(out.stdout).unwrap(),
                    String::from_utf8(out.stderr).unwrap(),
                )
            })
            .await
            .unwrap()
        }
    };
    let (code, out, err) = run(&["vault", "status"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("keks 1 (current 1)"), "{out}");
    assert!(out.contains("kyc_records.sealed: kek 1: 1 rows"), "{out}");
    let (code, out, err) = run(&["vault", "rotate", "--batch", "10"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("added kek 2"), "{out}");
    assert!(
        out.contains("re-wrapped ") && out.contains(" rows under kek 2"),
        "{out}"
    );
    // Links waiting in the outbox are delivered before the old key goes.
    custody_coordinator::notify::deliver_pending(&h.app, 1000)
        .await
        .unwrap();
    let (code, out, _) = run(&["vault", "retire", "--kek", "2"]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("refused") && out.contains("current"), "{out}");
    let (code, out, err) = run(&["vault", "retire", "--kek", "1"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, _) = run(&["vault", "status"]).await;
    assert_eq!(code, Some(0));
    assert!(out.contains("keks 2 (current 2)"), "{out}");
    assert!(out.contains("kyc_records.sealed: kek 2: 1 rows"), "{out}");
    // The daemon, which loaded KEK 1 only, reads the re-wrapped record.
    let (st, v) = read_own(&h, &alice).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // No personal data on the command line's output.
    assert!(!out.contains("Zebulon"));
}
on_both!(vault_commands_on_the_command_line);
