//! User-level security through the HTTP API: every second factor end to end (WebAuthn
//! with a software authenticator), TOTP replay, lockout, API-key scopes and IP binding,
//! the account IP allowlist, whitelist delay/removal/mode, devices and sessions, and the
//! TOTP secret sealed at rest. Each runs on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{new_key, Engine, Harness, Session, PASSWORD};
use custody_auth::{ApiKeyId, ApiKeySecret, RequestToSign};
use serde_json::{json, Value};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_authenticator_rs::WebauthnAuthenticator;

const ORIGIN: &str = "https://localhost:8750";

/// Delivers the outbox and returns every line of a development sink file.
async fn sink(h: &Harness, file: &str) -> Vec<Value> {
    custody_coordinator::notify::deliver_pending(&h.app, 1000)
        .await
        .expect("deliver");
    let path = h.config.data_dir.join(file);
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// The latest code sent by email to `principal_id` (from the development file sink).
async fn last_email_code(h: &Harness, principal_id: &str) -> String {
    sink(h, "notifications.jsonl")
        .await
        .iter()
        .rev()
        .find(|n| n["kind"] == "otp.email" && n["principal_id"] == principal_id)
        .and_then(|n| n["payload"]["code"].as_str().map(str::to_owned))
        .expect("an email code was sent")
}

/// The latest SMS text sent to `phone`.
async fn last_sms_code(h: &Harness, phone: &str) -> String {
    let text = sink(h, "sms.jsonl")
        .await
        .iter()
        .rev()
        .find(|n| n["to"] == phone)
        .and_then(|n| n["text"].as_str().map(str::to_owned))
        .expect("an SMS was sent");
    text.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .expect("six digits")
        .to_owned()
}

/// Whether a queued one-time code woke the daemon's worker since the last look (takes
/// the wake-up).
fn woke(h: &Harness) -> bool {
    use futures_util::FutureExt as _;
    h.app.outbox_wake.notified().now_or_never().is_some()
}

/// Starts an SMS challenge and returns its answer.
async fn sms_only(h: &Harness, s: &Session, phone: &str) -> Value {
    let (st, ch) = h
        .call(
            "POST",
            "/v1/me/second-factor/challenges",
            Some(&s.token),
            None,
            Some(json!({ "method": "sms" })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{ch}");
    let code = last_sms_code(h, phone).await;
    json!({ "challenge_id": ch["challenge_id"], "code": code })
}

/// Registers a soft security key on `s` (which has TOTP, so registration steps up).
async fn register_key(h: &Harness, s: &Session, key: &mut SoftPasskey) {
    let code = h.totp(s);
    let (st, reg) = h
        .call(
            "POST",
            "/v1/me/webauthn/registrations",
            Some(&s.token),
            None,
            Some(json!({ "totp": code })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{reg}");
    let options = serde_json::from_value(reg["options"].clone()).expect("creation options");
    let credential = key
        .do_registration(url::Url::parse(ORIGIN).expect("url"), options)
        .expect("the authenticator registers");
    let id = reg["registration_id"].as_str().expect("id");
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/me/webauthn/registrations/{id}"),
            Some(&s.token),
            None,
            Some(json!({ "name": "soft key", "credential": credential })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
}

/// Answers a WebAuthn challenge with the soft key.
fn webauthn_answer(key: &mut SoftPasskey, challenge: &Value) -> Value {
    let options = serde_json::from_value(challenge["webauthn_options"].clone()).expect("options");
    let credential = key
        .do_authentication(url::Url::parse(ORIGIN).expect("url"), options)
        .expect("the authenticator answers");
    json!({ "challenge_id": challenge["challenge_id"], "credential": credential })
}

async fn every_factor_signs_in_and_steps_up(engine: Engine) {
    let Some(h) = Harness::new(engine).await else {
        return;
    };
    let mut s = h.customer("factors@example.com").await;

    // A security key: registered with step-up, then used to sign in and to step up.
    let mut key = SoftPasskey::new(true);
    register_key(&h, &s, &mut key).await;
    let (st, creds) = h
        .call(
            "GET",
            "/v1/me/webauthn/credentials",
            Some(&s.token),
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(creds.as_array().expect("list").len(), 1);
    let (st, ch) = h
        .call(
            "POST",
            "/v1/sessions/challenges",
            None,
            None,
            Some(json!({ "email": s.email, "password": PASSWORD, "method": "webauthn" })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{ch}");
    let answer = webauthn_answer(&mut key, &ch);
    let (st, v) = h
        .call(
            "POST",
            "/v1/sessions",
            None,
            None,
            Some(json!({ "email": s.email, "password": PASSWORD, "webauthn": answer.clone() })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "signed in with the key: {v}");
    // The same answer again: the challenge is used up.
    let (st, _) = h
        .call(
            "POST",
            "/v1/sessions",
            None,
            None,
            Some(json!({ "email": s.email, "password": PASSWORD, "webauthn": answer })),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "a WebAuthn answer works once");
    // Without any factor: the password alone is not enough.
    let (st, v) = h
        .call(
            "POST",
            "/v1/sessions",
            None,
            None,
            Some(json!({ "email": s.email, "password": PASSWORD })),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"]["code"], "second_factor_required");

    // Step-up with the key for a sensitive change.
    let (st, ch) = h
        .call(
            "POST",
            "/v1/me/second-factor/challenges",
            Some(&s.token),
            None,
            Some(json!({ "method": "webauthn" })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{ch}");
    assert!(!woke(&h), "a security-key challenge queues no code to send");
    let (st, v) = h
        .call(
            "POST",
            "/v1/me/whitelist",
            Some(&s.token),
            None,
            Some(json!({ "address": common::regtest_address(21), "webauthn": webauthn_answer(&mut key, &ch) })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "stepped up with the key: {v}");

    // Email codes: sign in with one.
    let (st, ch) = h
        .call(
            "POST",
            "/v1/sessions/challenges",
            None,
            None,
            Some(json!({ "email": s.email, "password": PASSWORD, "method": "email" })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{ch}");
    assert!(
        woke(&h),
        "an email code wakes the worker to send it at once"
    );
    let code = last_email_code(&h, &s.id).await;
    let (st, v) = h
        .call(
            "POST",
            "/v1/sessions",
            None,
            None,
            Some(json!({ "email": s.email, "password": PASSWORD,
                "email_code": { "challenge_id": ch["challenge_id"], "code": code } })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "signed in with an email code: {v}");

    // SMS: set the phone (step-up), confirm it with the code sent there.
    let phone = "+4915112345678";
    let code = h.totp(&s);
    let (st, ch) = h
        .call(
            "POST",
            "/v1/me/phone",
            Some(&s.token),
            None,
            Some(json!({ "phone": "+49 151 1234 5678", "totp": code })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{ch}");
    assert!(woke(&h), "an SMS code wakes the worker to send it at once");
    let sms = last_sms_code(&h, phone).await;
    let (st, v) = h
        .call(
            "POST",
            "/v1/me/phone/verify",
            Some(&s.token),
            None,
            Some(json!({ "challenge_id": ch["challenge_id"], "code": sms })),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    // SMS alone never authorises a withdrawal or a security change…
    let answer = sms_only(&h, &s, phone).await;
    let (st, v) = h
        .call(
            "POST",
            "/v1/withdrawals",
            Some(&s.token),
            Some(&new_key()),
            Some(json!({ "asset": "BTC", "address": h.destination, "amount": 10_000, "sms_code": answer })),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "insufficient_factors");
    // …but with an email code it does (both restricted channels together).
    let sms = sms_only(&h, &s, phone).await;
    let (st, ch) = h
        .call(
            "POST",
            "/v1/me/second-factor/challenges",
            Some(&s.token),
            None,
            Some(json!({ "method": "email" })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let email =
        json!({ "challenge_id": ch["challenge_id"], "code": last_email_code(&h, &s.id).await });
    let (st, v) = h
        .call(
            "POST",
            "/v1/me/whitelist",
            Some(&s.token),
            None,
            Some(json!({ "address": common::regtest_address(22), "sms_code": sms, "email_code": email })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "email + SMS step up: {v}");

    // Recovery codes: shown once, each works once, for security changes only.
    let code = h.totp(&s);
    let (st, v) = h
        .call(
            "POST",
            "/v1/me/recovery-codes",
            Some(&s.token),
            None,
            Some(json!({ "totp": code })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let codes: Vec<String> = serde_json::from_value(v["codes"].clone()).expect("codes");
    assert_eq!(codes.len(), 10);
    let (st, v) = h
        .call(
            "POST",
            "/v1/me/whitelist",
            Some(&s.token),
            None,
            Some(json!({ "address": common::regtest_address(23), "recovery_code": codes[0] })),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::CREATED,
        "recovery code steps up a change: {v}"
    );
    let (st, _) = h
        .call(
            "POST",
            "/v1/me/whitelist",
            Some(&s.token),
            None,
            Some(json!({ "address": common::regtest_address(24), "recovery_code": codes[0] })),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "a recovery code works once");
    let (st, v) = h
        .call(
            "POST",
            "/v1/withdrawals",
            Some(&s.token),
            Some(&new_key()),
            Some(json!({ "asset": "BTC", "address": h.destination, "amount": 10_000, "recovery_code": codes[1] })),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "insufficient_factors");
    let (st, v) = h
        .call("GET", "/v1/me/second-factors", Some(&s.token), None, None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["totp"], true);
    assert_eq!(v["webauthn_credentials"], 1);
    assert_eq!(v["sms"], true);
    // One was spent; the one sent with the refused withdrawal was not (the refusal
    // changed nothing).
    assert_eq!(v["recovery_codes_left"], 9, "{v}");
    h.relogin(&mut s).await;
}
on_both!(every_factor_signs_in_and_steps_up);

async fn a_totp_code_is_never_accepted_twice(engine: Engine) {
    let Some(h) = Harness::new(engine).await else {
        return;
    };
    let s = h.customer("replay@example.com").await;
    let code = h.totp(&s);
    let body = |addr: u8| json!({ "address": common::regtest_address(addr), "totp": code });
    let (st, v) = h
        .call(
            "POST",
            "/v1/me/whitelist",
            Some(&s.token),
            None,
            Some(body(31)),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, v) = h
        .call(
            "POST",
            "/v1/me/whitelist",
            Some(&s.token),
            None,
            Some(body(32)),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["error"]["code"], "bad_2fa");
    let (st, _) = h
        .call(
            "POST",
            "/v1/sessions",
            None,
            None,
            Some(json!({ "email": s.email, "password": PASSWORD, "totp": code })),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "nor at sign-in");
}
on_both!(a_totp_code_is_never_accepted_twice);

async fn a_totp_code_sent_by_racing_requests_is_accepted_once(engine: Engine) {
    let Some(h) = Harness::new(engine).await else {
        return;
    };
    let s = h.customer("race@example.com").await;
    let code = h.totp(&s);
    // Four requests with the same code at once (PostgreSQL runs them concurrently); three
    // refusals stay below the lockout.
    let mut tasks = Vec::new();
    for addr in 40..44u8 {
        let (app, token) = (h.app.clone(), s.token.clone());
        let body = json!({ "address": common::regtest_address(addr), "totp": code });
        tasks.push(tokio::spawn(async move {
            common::call(
                &app,
                "POST",
                "/v1/me/whitelist",
                Some(&token),
                None,
                Some(body),
                "10.0.0.1",
            )
            .await
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        let (st, v) = t.await.expect("task");
        if st == StatusCode::CREATED {
            accepted += 1;
        } else {
            assert_eq!(v["error"]["code"], "bad_2fa", "{v}");
        }
    }
    assert_eq!(accepted, 1, "one code, one accepted request");
}
on_both!(a_totp_code_sent_by_racing_requests_is_accepted_once);

async fn repeated_failures_lock_the_account_and_alert(engine: Engine) {
    let Some(h) = Harness::new(engine).await else {
        return;
    };
    let s = h.customer("lockout@example.com").await;
    for _ in 0..5 {
        let (st, _) = h
            .call(
                "POST",
                "/v1/sessions",
                None,
                None,
                Some(json!({ "email": s.email, "password": "wrong password 123" })),
            )
            .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    // Locked: even the right password and code are refused, with when it ends.
    let code = h.totp(&s);
    let (st, v) = h
        .call(
            "POST",
            "/v1/sessions",
            None,
            None,
            Some(json!({ "email": s.email, "password": PASSWORD, "totp": code })),
        )
        .await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["error"]["code"], "locked_out");
    // The owner was told once, as a burst, not per failure.
    let alerts = sink(&h, "notifications.jsonl").await;
    let mine = |kind: &str| {
        alerts
            .iter()
            .filter(|n| n["principal_id"] == s.id.as_str() && n["kind"] == kind)
            .count()
    };
    assert_eq!(mine("security.account_locked"), 1);
    assert_eq!(mine("security.login_failed"), 0);
    // Step-up failures count too, and a locked account cannot step up.
    let (st, v) = h
        .call(
            "POST",
            "/v1/me/whitelist",
            Some(&s.token),
            None,
            Some(json!({ "address": common::regtest_address(41), "totp": "000000" })),
        )
        .await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
    // After the lock (15 minutes) the right credentials work again.
    h.clock.advance(16 * 60);
    let code = h.totp(&s);
    let (st, v) = h
        .call(
            "POST",
            "/v1/sessions",
            None,
            None,
            Some(json!({ "email": s.email, "password": PASSWORD, "totp": code })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    // Wrong codes lock as well.
    for _ in 0..5 {
        let (st, _) = h
            .call(
                "POST",
                "/v1/me/whitelist",
                Some(&s.token),
                None,
                Some(json!({ "address": common::regtest_address(42), "totp": "000000" })),
            )
            .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
        h.clock.advance(61);
    }
    let code = h.totp(&s);
    let (st, v) = h
        .call(
            "POST",
            "/v1/me/whitelist",
            Some(&s.token),
            None,
            Some(json!({ "address": common::regtest_address(42), "totp": code })),
        )
        .await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
}
on_both!(repeated_failures_lock_the_account_and_alert);

/// A request signed with an API key, from `ip`.
async fn signed(
    h: &Harness,
    key: &Value,
    method: &str,
    path: &str,
    body: Option<Value>,
    ip: &str,
    nonce: Option<&str>,
) -> (StatusCode, Value) {
    let id = ApiKeyId::parse(key["key"]["id"].as_str().expect("id")).expect("key id");
    let secret = ApiKeySecret::from_text(key["secret"].as_str().expect("secret")).expect("secret");
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    let now = custody_coordinator::Clock::now(&h.clock);
    let nonce = nonce.map_or_else(custody_auth::new_nonce, str::to_owned);
    let sig = custody_auth::sign_request(
        &id,
        &secret,
        &RequestToSign {
            method,
            path_and_query: path,
            body: bytes.as_bytes(),
        },
        now,
        &nonce,
    )
    .expect("sign");
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .header("x-forwarded-for", ip)
        .header("idempotency-key", new_key());
    for (name, value) in sig.headers() {
        req = req.header(name, value);
    }
    common::send(h.router(), req.body(Body::from(bytes)).expect("request")).await
}

async fn api_keys_keep_to_their_scopes_and_addresses(engine: Engine) {
    let Some(h) = Harness::new(engine).await else {
        return;
    };
    let mut s = h.customer("keys@example.com").await;
    let create = |scopes: Value, allow: Option<&str>, code: String| json!({ "name": "bot", "scopes": scopes, "ip_allowlist": allow, "totp": code });
    let (st, read) = h
        .call(
            "POST",
            "/v1/me/api-keys",
            Some(&s.token),
            None,
            Some(create(json!(["read"]), None, h.totp(&s))),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{read}");
    // Read works; withdrawing is out of scope.
    let (st, v) = signed(&h, &read, "GET", "/v1/withdrawals", None, "10.0.0.1", None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let withdrawal = json!({ "asset": "BTC", "address": h.destination, "amount": 10_000 });
    let (st, v) = signed(
        &h,
        &read,
        "POST",
        "/v1/withdrawals",
        Some(withdrawal.clone()),
        "10.0.0.1",
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "scope_missing");
    // A replayed request (same nonce) is refused.
    let (st, _) = signed(
        &h,
        &read,
        "GET",
        "/v1/withdrawals",
        None,
        "10.0.0.1",
        Some("nonce-0123456789abcdef"),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = signed(
        &h,
        &read,
        "GET",
        "/v1/withdrawals",
        None,
        "10.0.0.1",
        Some("nonce-0123456789abcdef"),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    // A withdraw key needs an IP allowlist.
    let (st, v) = h
        .call(
            "POST",
            "/v1/me/api-keys",
            Some(&s.token),
            None,
            Some(create(json!(["withdraw"]), None, h.totp(&s))),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    // An admin key cannot grant what it lacks.
    let (st, admin) = h
        .call(
            "POST",
            "/v1/me/api-keys",
            Some(&s.token),
            None,
            Some(create(json!(["read", "admin"]), None, h.totp(&s))),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{admin}");
    let (st, v) = signed(
        &h,
        &admin,
        "POST",
        "/v1/me/api-keys",
        Some(json!({ "name": "escalate", "scopes": ["withdraw"], "ip_allowlist": "10.0.0.1" })),
        "10.0.0.1",
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "scope_escalation");
    // Security settings are never changed with a key.
    let (st, v) = signed(
        &h,
        &admin,
        "POST",
        "/v1/me/ip-allowlist",
        Some(json!({ "ip_allowlist": "10.0.0.0/8" })),
        "10.0.0.1",
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "needs_person");
    // A withdraw key bound to one address: refused from elsewhere, accepted from there,
    // and only to whitelisted destinations.
    let (st, wd) = h
        .call(
            "POST",
            "/v1/me/api-keys",
            Some(&s.token),
            None,
            Some(create(json!(["withdraw"]), Some("10.0.0.1"), h.totp(&s))),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{wd}");
    let (st, v) = signed(
        &h,
        &wd,
        "POST",
        "/v1/withdrawals",
        Some(withdrawal.clone()),
        "10.0.0.2",
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "ip_not_allowed");
    // The customer's destination becomes usable after its activation delay; the wallet's
    // coins are known.
    h.clock.advance(25 * 3600);
    custody_coordinator::withdrawals::sync_utxos(&h.app, 20)
        .await
        .expect("sync");
    let elsewhere =
        json!({ "asset": "BTC", "address": common::regtest_address(51), "amount": 10_000 });
    let (st, v) = signed(
        &h,
        &wd,
        "POST",
        "/v1/withdrawals",
        Some(elsewhere),
        "10.0.0.1",
        None,
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "not_whitelisted");
    let (st, v) = signed(
        &h,
        &wd,
        "POST",
        "/v1/withdrawals",
        Some(withdrawal.clone()),
        "10.0.0.1",
        None,
    )
    .await;
    assert!(
        st.is_success(),
        "a bound withdraw key withdraws to the whitelist: {st} {v}"
    );
    // The withdraw key may cancel what it asked for; a read key may not.
    let cancel = format!("/v1/withdrawals/{}/cancel", v["id"].as_str().expect("id"));
    let (st, c) = signed(
        &h,
        &read,
        "POST",
        &cancel,
        Some(json!({})),
        "10.0.0.1",
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{c}");
    assert_eq!(c["error"]["code"], "scope_missing");
    // Staff cancel signed in, never with a key (whatever its scope).
    let ops = h
        .principal(
            "ops-key@example.com",
            custody_coordinator::accounts::Role::Operator,
            None,
        )
        .await;
    let (st, ops_key) = h
        .call(
            "POST",
            "/v1/me/api-keys",
            Some(&ops.token),
            None,
            Some(create(json!(["withdraw"]), Some("10.0.0.1"), h.totp(&ops))),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{ops_key}");
    let reason = json!({ "reason": "by key" });
    let (st, c) = signed(
        &h,
        &ops_key,
        "POST",
        &cancel,
        Some(reason),
        "10.0.0.1",
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{c}");
    let (st, c) = signed(&h, &wd, "POST", &cancel, Some(json!({})), "10.0.0.1", None).await;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert_eq!(c["state"], "cancelled");
    // Revoked: refused at once.
    h.relogin(&mut s).await;
    let id = wd["key"]["id"].as_str().expect("id");
    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/me/api-keys/{id}/revoke"),
            Some(&s.token),
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, v) = signed(&h, &wd, "GET", "/v1/withdrawals", None, "10.0.0.1", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    let (st, keys) = h
        .call("GET", "/v1/me/api-keys", Some(&s.token), None, None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(keys.as_array().expect("list").len(), 3);
    assert!(
        keys.to_string().find("cpks_").is_none(),
        "no secrets in the list"
    );
}
on_both!(api_keys_keep_to_their_scopes_and_addresses);

async fn the_account_ip_allowlist_refuses_other_addresses(engine: Engine) {
    let Some(h) = Harness::new(engine).await else {
        return;
    };
    let s = h.customer("allowlist@example.com").await;
    // A list that would lock the caller out is refused.
    let (st, v) = h
        .call(
            "PUT",
            "/v1/me/ip-allowlist",
            Some(&s.token),
            None,
            Some(json!({ "ip_allowlist": "192.0.2.0/24", "totp": h.totp(&s) })),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = h
        .call(
            "PUT",
            "/v1/me/ip-allowlist",
            Some(&s.token),
            None,
            Some(json!({ "ip_allowlist": "10.0.0.1/32", "totp": h.totp(&s) })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["ip_allowlist"], "10.0.0.1/32");
    let (st, _) = h.call("GET", "/v1/me", Some(&s.token), None, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = common::call(
        &h.app,
        "GET",
        "/v1/me",
        Some(&s.token),
        None,
        None,
        "10.0.0.9",
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "ip_not_allowed");
    let (st, v) = common::call(
        &h.app,
        "POST",
        "/v1/sessions",
        None,
        None,
        Some(json!({ "email": s.email, "password": PASSWORD, "totp": h.totp(&s) })),
        "10.0.0.9",
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let holds = sink(&h, "notifications.jsonl").await;
    assert!(holds
        .iter()
        .any(|n| n["kind"] == "security.ip_allowlist_change"));
}
on_both!(the_account_ip_allowlist_refuses_other_addresses);

async fn whitelist_delay_removal_and_mode(engine: Engine) {
    let Some(h) = Harness::new(engine).await else {
        return;
    };
    let s = h.customer("whitelist@example.com").await;
    let fresh = common::regtest_address(61);
    let (st, v) = h
        .call(
            "POST",
            "/v1/me/whitelist",
            Some(&s.token),
            None,
            Some(json!({ "address": fresh, "totp": h.totp(&s) })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    // Still inside its activation delay: refused, and the refusal says until when.
    let (st, v) = h
        .call(
            "POST",
            "/v1/withdrawals",
            Some(&s.token),
            Some(&new_key()),
            Some(json!({ "asset": "BTC", "address": fresh, "amount": 10_000, "totp": h.totp(&s) })),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "address_not_yet_active");
    // Removal is immediate.
    let (st, v) = h
        .call(
            "POST",
            "/v1/me/whitelist/remove",
            Some(&s.token),
            None,
            Some(json!({ "address": fresh, "totp": h.totp(&s) })),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    let (_, list) = h
        .call("GET", "/v1/me/whitelist", Some(&s.token), None, None)
        .await;
    assert!(!list.to_string().contains(&fresh));
    // Turning whitelist-only off places a hold on withdrawals.
    let (st, v) = h
        .call(
            "PUT",
            "/v1/me/whitelist-mode",
            Some(&s.token),
            None,
            Some(json!({ "whitelist_only": false, "totp": h.totp(&s) })),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    let (st, holds) = h
        .call("GET", "/v1/me/holds", Some(&s.token), None, None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let hold = holds
        .as_array()
        .expect("holds")
        .iter()
        .find(|x| x["rule"] == "whitelist_mode_off")
        .unwrap_or_else(|| panic!("a hold for turning the mode off: {holds}"));
    assert!(
        hold["until"].as_i64().expect("until") - hold["since"].as_i64().expect("since")
            >= 24 * 3600
    );
}
on_both!(whitelist_delay_removal_and_mode);

async fn devices_and_sessions_are_listed_and_revocable(engine: Engine) {
    let Some(h) = Harness::new(engine).await else {
        return;
    };
    let mut s = h.customer("devices@example.com").await;
    let first = s.token.clone();
    h.relogin(&mut s).await;
    let (st, v) = h
        .call("GET", "/v1/me/sessions", Some(&s.token), None, None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let list = v.as_array().expect("sessions");
    assert_eq!(list.len(), 2, "{v}");
    assert_eq!(list.iter().filter(|x| x["current"] == true).count(), 1);
    assert!(list
        .iter()
        .all(|x| x["ip"] == "10.0.0.1" && x["user_agent"] == "coordinator-tests"));
    let (st, v) = h
        .call("GET", "/v1/me/devices", Some(&s.token), None, None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v.as_array().expect("devices").len(), 1);
    assert!(
        v[0]["confirmed_at"].is_i64(),
        "the first device is confirmed: {v}"
    );
    let (st, v) = h
        .call(
            "POST",
            "/v1/me/sessions/revoke-others",
            Some(&s.token),
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["ended"], 1);
    let (st, _) = h.call("GET", "/v1/me", Some(&first), None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "the other session ended");
    let (st, _) = h.call("GET", "/v1/me", Some(&s.token), None, None).await;
    assert_eq!(st, StatusCode::OK, "this one did not");
}
on_both!(devices_and_sessions_are_listed_and_revocable);

/// The stored last use and address of the principal's sessions, newest first.
async fn stored_uses(h: &Harness, principal: &str) -> Vec<(i64, String)> {
    sqlx::query(
        "SELECT last_used_at, ip FROM sessions WHERE principal_id = $1 ORDER BY last_used_at DESC",
    )
    .bind(principal)
    .fetch_all(h.app.db.pool())
    .await
    .expect("sessions")
    .iter()
    .map(|r| {
        (
            sqlx::Row::try_get::<i64, _>(r, "last_used_at").expect("time"),
            sqlx::Row::try_get::<String, _>(r, "ip").expect("ip"),
        )
    })
    .collect()
}

/// `GET path` with `token` from `ip`.
async fn get_from(h: &Harness, token: &str, path: &str, ip: &str) -> (StatusCode, Value) {
    common::call(&h.app, "GET", path, Some(token), None, None, ip).await
}

async fn a_sessions_last_use_is_written_in_the_background_and_listed(engine: Engine) {
    let Some(h) = Harness::new(engine).await else {
        return;
    };
    let s = h.customer("last-use@example.com").await;
    let signed_in = custody_coordinator::Clock::now(&h.clock);
    h.clock.advance(120);
    let used = custody_coordinator::Clock::now(&h.clock);
    let (st, _) = get_from(&h, &s.token, "/v1/me", "10.0.0.9").await;
    assert_eq!(st, StatusCode::OK);
    // The request noted its use and answered without writing it.
    assert_eq!(h.app.last_use.pending(), 1);
    let before = stored_uses(&h, &s.id).await;
    assert!(
        before
            .iter()
            .all(|(at, ip)| *at <= signed_in && ip == "10.0.0.1"),
        "nothing written on the request's path: {before:?}"
    );
    // The session list writes what was noted first, so it shows this use and address.
    let (st, v) = get_from(&h, &s.token, "/v1/me/sessions", "10.0.0.9").await;
    assert_eq!(st, StatusCode::OK);
    let current = v
        .as_array()
        .expect("sessions")
        .iter()
        .find(|x| x["current"] == true)
        .unwrap_or_else(|| panic!("the current session is listed: {v}"));
    assert_eq!(current["last_used_at"], used, "{v}");
    assert_eq!(current["ip"], "10.0.0.9", "{v}");
    assert_eq!(h.app.last_use.pending(), 0);
    // A use within the minute of the stored one is not noted again.
    h.clock.advance(30);
    let (st, _) = get_from(&h, &s.token, "/v1/me", "10.0.0.8").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h.app.last_use.pending(), 0, "used within the minute");
    h.clock.advance(60);
    let (st, _) = get_from(&h, &s.token, "/v1/me", "10.0.0.7").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h.app.last_use.pending(), 1);
    let latest = custody_coordinator::Clock::now(&h.clock);
    assert_eq!(h.app.last_use.flush(&h.app.db).await.expect("flush"), 1);
    let after = stored_uses(&h, &s.id).await;
    assert!(
        after.contains(&(latest, "10.0.0.7".to_owned())),
        "{after:?}"
    );
}
on_both!(a_sessions_last_use_is_written_in_the_background_and_listed);

async fn totp_secrets_are_sealed_at_rest(engine: Engine) {
    let Some(h) = Harness::new(engine).await else {
        return;
    };
    let s = h.customer("sealed@example.com").await;
    let uri = url::Url::parse(s.totp_uri.as_deref().expect("uri")).expect("url");
    let secret_b32 = uri
        .query_pairs()
        .find(|(k, _)| k == "secret")
        .map(|(_, v)| v.into_owned())
        .expect("secret");
    let row = sqlx::query("SELECT totp_secret FROM principals WHERE id = $1")
        .bind(&s.id)
        .fetch_one(h.app.db.pool())
        .await
        .expect("row");
    let stored: String = sqlx::Row::try_get(&row, "totp_secret").expect("text");
    let raw = totp_rs::Secret::Encoded(secret_b32.clone())
        .to_bytes()
        .expect("base32");
    assert!(!stored.contains(&hex::encode(&raw)), "not the hex secret");
    assert!(!stored.contains(&secret_b32), "not the base32 secret");
    // A sealed value moved to another account does not open there.
    let other = h.customer("sealed2@example.com").await;
    sqlx::query("UPDATE principals SET totp_secret = $1 WHERE id = $2")
        .bind(&stored)
        .bind(&other.id)
        .execute(h.app.db.pool())
        .await
        .expect("move");
    let (st, v) = h
        .call(
            "POST",
            "/v1/me/whitelist",
            Some(&other.token),
            None,
            Some(json!({ "address": common::regtest_address(71), "totp": h.totp(&s) })),
        )
        .await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
    assert!(!v.to_string().contains(&secret_b32));
}
on_both!(totp_secrets_are_sealed_at_rest);

async fn sign_in_attempts_are_rate_limited_per_ip(engine: Engine) {
    let Some(h) = Harness::with_config(engine, |c| {
        c.auth.limits.login_burst_per_ip = 3;
        c.auth.limits.login_period_per_ip_secs = 60;
    })
    .await
    else {
        return;
    };
    let login = |email: &'static str| json!({ "email": email, "password": "not the password 1" });
    for email in ["a@example.com", "b@example.com", "c@example.com"] {
        let (st, _) = common::call(
            &h.app,
            "POST",
            "/v1/sessions",
            None,
            None,
            Some(login(email)),
            "10.9.9.9",
        )
        .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    let (st, v) = common::call(
        &h.app,
        "POST",
        "/v1/sessions",
        None,
        None,
        Some(login("d@example.com")),
        "10.9.9.9",
    )
    .await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["error"]["code"], "rate_limited");
    // Another address is not affected; a minute later this one may try again.
    let (st, _) = common::call(
        &h.app,
        "POST",
        "/v1/sessions",
        None,
        None,
        Some(login("d@example.com")),
        "10.9.9.8",
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    h.clock.advance(61);
    let (st, _) = common::call(
        &h.app,
        "POST",
        "/v1/sessions",
        None,
        None,
        Some(login("d@example.com")),
        "10.9.9.9",
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}
on_both!(sign_in_attempts_are_rate_limited_per_ip);

/// A call from another device (its own `X-Device-Id` and user agent).
async fn from_device(
    h: &Harness,
    device: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .header("user-agent", "a new phone")
        .header("x-device-id", device)
        .header("x-forwarded-for", "10.0.0.1")
        .header("idempotency-key", new_key());
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    common::send(
        h.router(),
        req.body(Body::from(body.to_string())).expect("request"),
    )
    .await
}

async fn a_new_device_cannot_withdraw_until_confirmed(engine: Engine) {
    let Some(h) = Harness::new(engine).await else {
        return;
    };
    let s = h.customer("newdevice@example.com").await;
    h.clock.advance(25 * 3600);
    custody_coordinator::withdrawals::sync_utxos(&h.app, 20)
        .await
        .expect("sync");
    let (st, v) = from_device(
        &h,
        "phone-2",
        "POST",
        "/v1/sessions",
        None,
        json!({ "email": s.email, "password": PASSWORD, "totp": h.totp(&s) }),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let token = v["token"].as_str().expect("token").to_owned();
    let withdraw = |code: String| json!({ "asset": "BTC", "address": h.destination, "amount": 10_000, "totp": code });
    let (st, v) = from_device(
        &h,
        "phone-2",
        "POST",
        "/v1/withdrawals",
        Some(&token),
        withdraw(h.totp(&s)),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "device_unconfirmed");
    let (_, devices) = from_device(
        &h,
        "phone-2",
        "GET",
        "/v1/me/devices",
        Some(&token),
        Value::Null,
    )
    .await;
    let mine = devices
        .as_array()
        .expect("devices")
        .iter()
        .find(|d| d["current"] == true)
        .expect("this device is listed");
    assert!(mine["confirmed_at"].is_null(), "{devices}");
    assert_eq!(mine["user_agent"], "a new phone");
    // The account's email got a confirmation link, never the webhook.
    let mail = sink(&h, "notifications.jsonl").await;
    let confirm = mail
        .iter()
        .rev()
        .find(|n| n["kind"] == "device.confirm" && n["principal_id"] == s.id.as_str())
        .expect("a confirmation email");
    let url = confirm["payload"][custody_coordinator::notify::CONFIRM_KEY]
        .as_str()
        .expect("a confirmation link");
    let path = &url[url.find("/v1/links/").expect("link path")..];
    let (st, _) = h.call("POST", path, None, None, None).await;
    assert_eq!(st, StatusCode::OK);
    // Confirmed: the device gate is passed (the new device's 24-hour hold still applies).
    let (st, v) = from_device(
        &h,
        "phone-2",
        "POST",
        "/v1/withdrawals",
        Some(&token),
        withdraw(h.totp(&s)),
    )
    .await;
    assert!(st.is_success(), "{st} {v}");
    assert!(
        v["hold"]["reasons"].to_string().contains("new device")
            || v.to_string().contains("new device"),
        "held for the new device: {v}"
    );
}
on_both!(a_new_device_cannot_withdraw_until_confirmed);

/// The account's email as `GET /v1/me` shows it.
async fn email_of(h: &Harness, s: &Session) -> String {
    let (st, v) = h.call("GET", "/v1/me", Some(&s.token), None, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["email"].as_str().expect("email").to_owned()
}

/// The account's holds with `rule`.
async fn holds_named(h: &Harness, s: &Session, rule: &str) -> Vec<Value> {
    let (st, holds) = h
        .call("GET", "/v1/me/holds", Some(&s.token), None, None)
        .await;
    assert_eq!(st, StatusCode::OK, "{holds}");
    holds
        .as_array()
        .expect("holds")
        .iter()
        .filter(|x| x["rule"] == rule)
        .cloned()
        .collect()
}

/// Asks for an email change to `to` and returns the path of the confirmation link the
/// new address got.
async fn ask_email_change(h: &Harness, s: &Session, to: &str) -> String {
    h.clock.advance(31);
    let (st, v) = h
        .call(
            "POST",
            "/v1/me/email",
            Some(&s.token),
            None,
            Some(json!({ "email": to, "totp": h.totp(s) })),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["new_email"], to.to_lowercase());
    let confirm = sink(h, "notifications.jsonl")
        .await
        .into_iter()
        .rfind(|n| n["kind"] == "email.confirm" && n["principal_id"] == s.id.as_str())
        .expect("a confirmation email");
    assert_eq!(
        confirm["payload"][custody_coordinator::notify::TO_EMAIL_KEY],
        to.to_lowercase()
    );
    let url = confirm["payload"]["confirm_url"]
        .as_str()
        .expect("confirm_url");
    url[url.find("/v1/links/").expect("a link path")..].to_owned()
}

async fn an_email_change_takes_effect_only_through_the_link_sent_to_the_new_address(
    engine: Engine,
) {
    let Some(h) = Harness::new(engine).await else {
        return;
    };
    let s = h.customer("old-address@example.com").await;
    let path = ask_email_change(&h, &s, "New-Address@example.com").await;
    // Asked, not changed: the account keeps its address, no hold yet, and the current
    // address is told, with a "this wasn't me" link. The new address's email has no
    // such link (whoever reads it could freeze the account) and no anti-phishing code.
    assert_eq!(email_of(&h, &s).await, "old-address@example.com");
    assert!(holds_named(&h, &s, "email_change").await.is_empty());
    let notes: Vec<Value> = sink(&h, "notifications.jsonl")
        .await
        .into_iter()
        .filter(|n| n["principal_id"] == s.id.as_str())
        .collect();
    let requested = notes
        .iter()
        .find(|n| n["kind"] == "security.email_change_requested")
        .expect("the current address is told");
    assert!(requested["payload"][custody_coordinator::notify::TO_EMAIL_KEY].is_null());
    assert!(requested["payload"]["this_wasnt_me_url"].is_string());
    let confirm = notes.iter().find(|n| n["kind"] == "email.confirm").unwrap();
    assert!(
        confirm["payload"]["this_wasnt_me_url"].is_null(),
        "{confirm}"
    );
    let (_, text) = custody_coordinator::notify::render("email.confirm", &confirm["payload"]);
    assert!(
        text.contains("/v1/links/") && !text.contains("freeze"),
        "{text}"
    );
    assert!(!notes.iter().any(|n| n["kind"] == "security.email_change"));

    // The link's page names no address and changes nothing; following it changes the
    // email, starts the 48-hour hold and tells both addresses.
    let (st, page) = h.call("GET", &path, None, None, None).await;
    assert_eq!(st, StatusCode::OK);
    let page = page.as_str().expect("html");
    assert!(
        page.contains("Use this address") && !page.contains("new-address"),
        "{page}"
    );
    assert_eq!(email_of(&h, &s).await, "old-address@example.com");
    let (st, v) = h.call("POST", &path, None, None, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["purpose"], "confirm_email");
    assert_eq!(email_of(&h, &s).await, "new-address@example.com");
    let holds = holds_named(&h, &s, "email_change").await;
    assert_eq!(holds.len(), 1, "{holds:?}");
    assert!(holds[0]["until"].as_i64().unwrap() - holds[0]["since"].as_i64().unwrap() >= 48 * 3600);
    let alerts: Vec<Value> = sink(&h, "notifications.jsonl")
        .await
        .into_iter()
        .filter(|n| n["kind"] == "security.email_change" && n["principal_id"] == s.id.as_str())
        .collect();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert!(alerts
        .iter()
        .any(|n| n["payload"][custody_coordinator::notify::TO_EMAIL_KEY]
            == "old-address@example.com"));
    assert!(alerts
        .iter()
        .all(|n| n["payload"]["this_wasnt_me_url"].is_string()));
    assert_eq!(h.audit_count("principal.email_change_requested").await, 1);
    // Once only.
    let (st, v) = h.call("POST", &path, None, None, None).await;
    assert_eq!(st, StatusCode::GONE, "{v}");
}
on_both!(an_email_change_takes_effect_only_through_the_link_sent_to_the_new_address);

async fn an_email_change_link_that_no_longer_applies_changes_nothing(engine: Engine) {
    let Some(h) = Harness::new(engine).await else {
        return;
    };
    let s = h.customer("first@example.com").await;
    // Two changes asked; the second is confirmed first, so the first one's link was
    // sent from an address the account no longer has.
    let to_a = ask_email_change(&h, &s, "a@example.com").await;
    let to_b = ask_email_change(&h, &s, "b@example.com").await;
    let (st, v) = h.call("POST", &to_b, None, None, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = h.call("POST", &to_a, None, None, None).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "email_changed");
    assert_eq!(email_of(&h, &s).await, "b@example.com");
    // An address another account took after the change was asked for.
    let to_c = ask_email_change(&h, &s, "c@example.com").await;
    h.customer("c@example.com").await;
    let (st, v) = h.call("POST", &to_c, None, None, None).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "email_taken");
    assert_eq!(email_of(&h, &s).await, "b@example.com");
    // Asking for an address that is taken, or the current one, is refused at once.
    h.clock.advance(31);
    for (to, st_want) in [
        ("c@example.com", StatusCode::CONFLICT),
        ("B@example.com", StatusCode::BAD_REQUEST),
    ] {
        h.clock.advance(31);
        let (st, v) = h
            .call(
                "POST",
                "/v1/me/email",
                Some(&s.token),
                None,
                Some(json!({ "email": to, "totp": h.totp(&s) })),
            )
            .await;
        assert_eq!(st, st_want, "{to}: {v}");
    }
    // One change happened, so one email-change hold.
    assert_eq!(holds_named(&h, &s, "email_change").await.len(), 1);
}
on_both!(an_email_change_link_that_no_longer_applies_changes_nothing);

async fn key_rotation_covers_totp_secrets_api_keys_and_codes(engine: Engine) {
    let Some(h) = Harness::new(engine).await else {
        return;
    };
    let s = h.customer("rotate@example.com").await;
    let (st, key) = h
        .call(
            "POST",
            "/v1/me/api-keys",
            Some(&s.token),
            None,
            Some(json!({ "name": "reader", "scopes": ["read"], "totp": h.totp(&s) })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{key}");
    let (st, v) = h
        .call(
            "PUT",
            "/v1/me/anti-phishing-code",
            Some(&s.token),
            None,
            Some(json!({ "code": "BLUE HERON 42", "totp": h.totp(&s) })),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    let old = h.app.vault.keys().current_kek_id();
    let report = custody_coordinator::vault::rotate(&h.app.db, &h.app.vault, 100)
        .await
        .expect("rotate");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert!(report.remaining.is_empty(), "{:?}", report.remaining);
    let new = report.current.expect("current");
    assert_ne!(new, old);
    let status = custody_coordinator::vault::status(&h.app.db)
        .await
        .expect("status");
    for column in [
        "principals.totp_secret",
        "principals.email_sealed",
        "principals.anti_phishing_code",
        "api_keys.secret_sealed",
        "coordinator_secrets.sealed",
    ] {
        let under: Vec<_> = status.iter().filter(|c| c.column == column).collect();
        assert!(!under.is_empty(), "{column} is covered");
        assert!(
            under.iter().all(|c| c.kek_id == i64::from(new.0)),
            "{column} re-wrapped: {under:?}"
        );
    }
    // Links waiting in the outbox keep the old key until they are delivered.
    let refused = custody_coordinator::vault::retire(&h.app.db, &h.app.vault, old)
        .await
        .expect("retire");
    assert!(
        matches!(&refused, custody_coordinator::vault::RetireOutcome::Refused(why) if why.contains("outbox")),
        "{refused:?}"
    );
    sink(&h, "notifications.jsonl").await;
    let retired = custody_coordinator::vault::retire(&h.app.db, &h.app.vault, old)
        .await
        .expect("retire");
    assert_eq!(retired, custody_coordinator::vault::RetireOutcome::Retired);
    // Everything still works under the new key alone.
    let (st, v) = h
        .call(
            "POST",
            "/v1/me/whitelist",
            Some(&s.token),
            None,
            Some(json!({ "address": common::regtest_address(81), "totp": h.totp(&s) })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "TOTP opens: {v}");
    let (st, v) = signed(&h, &key, "GET", "/v1/withdrawals", None, "10.0.0.1", None).await;
    assert_eq!(st, StatusCode::OK, "the API key opens: {v}");
}
on_both!(key_rotation_covers_totp_secrets_api_keys_and_codes);

async fn adding_an_authenticator_app_to_a_protected_account_needs_step_up(engine: Engine) {
    let Some(h) = Harness::new(engine).await else {
        return;
    };
    let (st, v) = h
        .call(
            "POST",
            "/v1/users",
            None,
            None,
            Some(json!({ "email": "keyfirst@example.com", "password": PASSWORD })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let s = h.login("keyfirst@example.com", None).await;
    // A security key first: no factor yet, so no step-up.
    let mut key = SoftPasskey::new(true);
    let (st, reg) = h
        .call(
            "POST",
            "/v1/me/webauthn/registrations",
            Some(&s.token),
            None,
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{reg}");
    let options = serde_json::from_value(reg["options"].clone()).expect("options");
    let credential = key
        .do_registration(url::Url::parse(ORIGIN).expect("url"), options)
        .expect("registers");
    let id = reg["registration_id"].as_str().expect("id");
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/me/webauthn/registrations/{id}"),
            Some(&s.token),
            None,
            Some(json!({ "name": "first key", "credential": credential })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    // Then an authenticator app: the key must confirm it.
    let (st, v) = h
        .call("POST", "/v1/me/totp", Some(&s.token), None, None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let totp = totp_rs::TOTP::from_url(v["otpauth_uri"].as_str().expect("uri")).expect("uri");
    let code = |h: &Harness| {
        h.clock.advance(30);
        totp.generate(u64::try_from(custody_coordinator::Clock::now(&h.clock)).expect("time"))
    };
    let (st, v) = h
        .call(
            "POST",
            "/v1/me/totp/confirm",
            Some(&s.token),
            None,
            Some(json!({ "code": code(&h) })),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    let (st, ch) = h
        .call(
            "POST",
            "/v1/me/second-factor/challenges",
            Some(&s.token),
            None,
            Some(json!({ "method": "webauthn" })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{ch}");
    let (st, v) = h
        .call(
            "POST",
            "/v1/me/totp/confirm",
            Some(&s.token),
            None,
            Some(json!({ "code": code(&h), "webauthn": webauthn_answer(&mut key, &ch) })),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
}
on_both!(adding_an_authenticator_app_to_a_protected_account_needs_step_up);

async fn a_wrong_code_counts_against_its_challenge(engine: Engine) {
    let Some(h) = Harness::new(engine).await else {
        return;
    };
    let s = h.customer("wrongcode@example.com").await;
    let (st, ch) = h
        .call(
            "POST",
            "/v1/me/second-factor/challenges",
            Some(&s.token),
            None,
            Some(json!({ "method": "email" })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{ch}");
    let id = ch["challenge_id"].as_str().expect("id").to_owned();
    let code = last_email_code(&h, &s.id).await;
    let wrong = if code.starts_with('0') { "1" } else { "0" }.repeat(code.len());
    let body = |code: &str| {
        json!({ "address": common::regtest_address(91), "totp": h.totp(&s),
            "email_code": { "challenge_id": id, "code": code } })
    };
    let (st, v) = h
        .call(
            "POST",
            "/v1/me/whitelist",
            Some(&s.token),
            None,
            Some(body(&wrong)),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    // The request rolled back, but the attempt stays charged to the code.
    let row = sqlx::query("SELECT state FROM auth_challenges WHERE id = $1")
        .bind(&id)
        .fetch_one(h.app.db.pool())
        .await
        .expect("the challenge is still there");
    let state: Value =
        serde_json::from_str(&sqlx::Row::get::<String, _>(&row, "state")).expect("json");
    assert_eq!(state["attempts"], 1, "{state}");
    let (st, v) = h
        .call(
            "POST",
            "/v1/me/whitelist",
            Some(&s.token),
            None,
            Some(body(&code)),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "the right code still works: {v}");
}
on_both!(a_wrong_code_counts_against_its_challenge);

/// Everything the database holds, as lower-case text: on SQLite the bytes of the database
/// file and its write-ahead log, on PostgreSQL every row of every table as JSON.
async fn database_text(h: &Harness, engine: Engine) -> String {
    match engine {
        Engine::Sqlite => {
            let url = h.config.database_url();
            let path = url
                .trim_start_matches("sqlite://")
                .split('?')
                .next()
                .unwrap()
                .to_owned();
            let mut bytes = std::fs::read(&path).unwrap();
            bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
            String::from_utf8_lossy(&bytes).to_lowercase()
        }
        Engine::Postgres => {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
            )
            .fetch_all(h.app.db.pool())
            .await
            .unwrap();
            assert!(tables.iter().any(|t| t == "principals"), "{tables:?}");
            let mut all = String::new();
            for t in tables {
                let rows: String = sqlx::query_scalar(&format!(
                    "SELECT COALESCE(string_agg(row_to_json(x)::text, ' '), '') FROM \"{t}\" x"
                ))
                .fetch_one(h.app.db.pool())
                .await
                .unwrap();
                all.push_str(&rows);
            }
            all.to_lowercase()
        }
    }
}

/// Sets and verifies the account's phone number with the code sent to it.
async fn verified_phone(h: &Harness, s: &Session, typed: &str, phone: &str) {
    h.clock.advance(31);
    let (st, ch) = h
        .call(
            "POST",
            "/v1/me/phone",
            Some(&s.token),
            None,
            Some(json!({ "phone": typed, "totp": h.totp(s) })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{ch}");
    let sms = last_sms_code(h, phone).await;
    let (st, v) = h
        .call(
            "POST",
            "/v1/me/phone/verify",
            Some(&s.token),
            None,
            Some(json!({ "challenge_id": ch["challenge_id"], "code": sms })),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
}

/// Email addresses and phone numbers are personal data: the database holds them sealed
/// (and the address's keyed lookup index), never in clear — not in the account, not in
/// an email change's link, not in the outbox — while sign-in, codes and alerts still
/// reach them.
async fn contact_details_are_sealed_at_rest(engine: Engine) {
    let Some(h) = Harness::new(engine).await else {
        return;
    };
    let mut s = h.customer("first.holder@example.com").await;
    verified_phone(&h, &s, "+49 151 2345 6789", "+4915123456789").await;
    let path = ask_email_change(&h, &s, "Second.Holder@example.com").await;
    let (st, v) = h.call("POST", &path, None, None, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // A code by SMS, and the alerts, are delivered to the right places.
    let answer = sms_only(&h, &s, "+4915123456789").await;
    assert!(answer["code"].is_string(), "{answer}");
    let alerts: Vec<Value> = sink(&h, "notifications.jsonl")
        .await
        .into_iter()
        .filter(|n| n["kind"] == "security.email_change")
        .collect();
    assert!(alerts
        .iter()
        .any(|n| n["payload"][custody_coordinator::notify::TO_EMAIL_KEY]
            == "first.holder@example.com"));
    assert_eq!(email_of(&h, &s).await, "second.holder@example.com");
    // Signing in by the new address in any case works; the old one is gone.
    let totp = s.totp_uri.clone();
    h.clock.advance(31);
    let code = h.totp(&s);
    let mut again = h.login("SECOND.holder@example.com", Some(code)).await;
    again.totp_uri = totp;
    assert_eq!(again.id, s.id);
    s = again;
    let (st, _) = h
        .call(
            "POST",
            "/v1/sessions",
            None,
            None,
            Some(json!({ "email": "first.holder@example.com", "password": PASSWORD, "totp": h.totp(&s) })),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // Another account cannot take the address, whatever its case.
    let (st, v) = h
        .call(
            "POST",
            "/v1/users",
            None,
            None,
            Some(json!({ "email": "Second.HOLDER@example.com", "password": PASSWORD })),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let stored = database_text(&h, engine).await;
    for clear in ["first.holder", "second.holder", "4915123456789"] {
        assert!(
            !stored.contains(clear),
            "{clear} is in the database in clear"
        );
    }
    assert!(stored.contains(&s.id), "the whole database was read");
}
on_both!(contact_details_are_sealed_at_rest);

/// An account, an email-change link and an outbox row an earlier version wrote in clear
/// are sealed by the start-up, and keep working.
async fn contact_details_in_clear_from_an_earlier_version_are_sealed(engine: Engine) {
    let Some(h) = Harness::new(engine).await else {
        return;
    };
    let s = h.customer("placeholder@example.com").await;
    // A second account whose number this version sealed (through a session) while its
    // address was still in clear, with an older number in clear beside it.
    let s2 = h.customer("placeholder2@example.com").await;
    verified_phone(&h, &s2, "+49 151 5555 0000", "+4915155550000").await;
    let pool = h.app.db.pool();
    sqlx::query(
        "UPDATE principals SET email = 'mixed.holder@example.com', email_sealed = NULL, \
         phone = '+4915100000001' WHERE id = $1",
    )
    .bind(&s2.id)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE principals SET email = 'legacy.holder@example.com', email_sealed = NULL, \
         phone = '+4915199990000', phone_sealed = NULL, phone_verified = 1 WHERE id = $1",
    )
    .bind(&s.id)
    .execute(pool)
    .await
    .unwrap();
    let now = custody_coordinator::Clock::now(&h.clock);
    let (token, record) =
        custody_auth::issue_link_token(custody_auth::LinkPurpose::ConfirmEmail, &s.id, 86_400, now);
    sqlx::query(
        "INSERT INTO link_tokens (token_hash, principal_id, purpose, subject, payload, created_at, expires_at) \
         VALUES ($1, $2, 'confirm_email', $3, $4, $5, $6)",
    )
    .bind(hex::encode(record.token_hash))
    .bind(&s.id)
    .bind(record.subject.clone())
    .bind(json!({ "old_email": "legacy.holder@example.com", "new_email": "renamed.holder@example.com" }).to_string())
    .bind(record.issued_at)
    .bind(record.expires_at)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO outbox (id, created_at, principal_id, channel, kind, payload, next_attempt_at) \
         VALUES ('legacy-note', $1, $2, 'file', 'security.email_change', $3, $1)",
    )
    .bind(now)
    .bind(&s.id)
    .bind(json!({ "at": now, "to_email": "earlier.holder@example.com" }).to_string())
    .execute(pool)
    .await
    .unwrap();

    let sealed =
        custody_coordinator::accounts::seal_legacy_contact_details(&h.app.db, &h.app.vault)
            .await
            .unwrap();
    assert_eq!(sealed, 2);
    let again = custody_coordinator::accounts::seal_legacy_contact_details(&h.app.db, &h.app.vault)
        .await
        .unwrap();
    assert_eq!(again, 0, "once");
    for (table, column) in [
        ("principals", "email"),
        ("principals", "phone"),
        ("link_tokens", "payload"),
        ("outbox", "payload"),
    ] {
        let values: Vec<Option<String>> =
            sqlx::query_scalar(&format!("SELECT {column} FROM {table}"))
                .fetch_all(pool)
                .await
                .unwrap();
        for v in values.into_iter().flatten() {
            assert!(
                !v.contains("holder@")
                    && !v.contains("4915199990000")
                    && !v.contains("4915100000001"),
                "{table}.{column} in clear: {v}"
            );
        }
    }
    // The account signs in by its address, gets SMS codes, and the old alert and the
    // link still do their work.
    h.clock.advance(31);
    let mut legacy = h.login("Legacy.Holder@example.com", Some(h.totp(&s))).await;
    legacy.totp_uri = s.totp_uri.clone();
    assert_eq!(email_of(&h, &legacy).await, "legacy.holder@example.com");
    let answer = sms_only(&h, &legacy, "+4915199990000").await;
    assert!(answer["code"].is_string(), "{answer}");
    let notes = sink(&h, "notifications.jsonl").await;
    let note = notes
        .iter()
        .find(|n| n["id"] == "legacy-note")
        .expect("delivered");
    assert_eq!(
        note["payload"][custody_coordinator::notify::TO_EMAIL_KEY],
        "earlier.holder@example.com"
    );
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/links/{}", token.expose_secret()),
            None,
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(email_of(&h, &legacy).await, "renamed.holder@example.com");
    // The mixed account keeps the number it set last.
    let mut mixed = h.login("mixed.holder@example.com", Some(h.totp(&s2))).await;
    mixed.totp_uri = s2.totp_uri.clone();
    let answer = sms_only(&h, &mixed, "+4915155550000").await;
    assert!(answer["code"].is_string(), "{answer}");
}
on_both!(contact_details_in_clear_from_an_earlier_version_are_sealed);
