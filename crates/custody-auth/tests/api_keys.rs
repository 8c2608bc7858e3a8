//! API keys end to end: creation rules, client signing, server verification.

use std::net::IpAddr;

use custody_auth::{
    create_api_key, new_nonce, sign_request, verify_request, ApiKeyRecord, ApiKeySecret,
    CreateApiKeyError, IpAllowlist, MemoryNonceStore, NewApiKey, ReplayWindow, RequestSignature,
    RequestToSign, Scope, ScopeSet, VerifyContext, VerifyRequestError,
};

const NOW: i64 = 1_800_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn withdraw_key() -> (ApiKeyRecord, ApiKeySecret) {
    create_api_key(
        "acct:42",
        NewApiKey {
            label: "treasury bot".into(),
            scopes: ScopeSet::of(&[Scope::Read, Scope::Withdraw]),
            expires_at: Some(NOW + 30 * 86_400),
            ip_allowlist: Some(IpAllowlist::parse("203.0.113.0/24").expect("list")),
        },
        ScopeSet::all(),
        NOW,
    )
    .expect("created")
}

const BODY: &[u8] = br#"{"asset":"BTC","amount_sat":150000,"address":"bcrt1q..."}"#;

fn post() -> RequestToSign<'static> {
    RequestToSign {
        method: "POST",
        path_and_query: "/v1/withdrawals?dry_run=false",
        body: BODY,
    }
}

fn ctx<'a>(request: RequestToSign<'a>, from: &str, required: Scope, now: i64) -> VerifyContext<'a> {
    VerifyContext {
        client_ip: ip(from),
        required,
        window: ReplayWindow::default(),
        now,
        request,
    }
}

/// Signs on the "client", sends the header values as text, parses them on the "server".
fn over_the_wire(sig: &RequestSignature) -> RequestSignature {
    let h = sig.headers();
    RequestSignature::from_headers(&h[0].1, &h[1].1, &h[2].1, &h[3].1).expect("parses")
}

#[test]
fn a_signed_withdrawal_from_the_allowlist_is_accepted_once() {
    let (record, secret) = withdraw_key();
    // The client holds the text form of the secret it was shown once.
    let client_secret = ApiKeySecret::from_text(&secret.to_text()).expect("secret");
    let nonce = new_nonce();
    let sig = sign_request(&record.key_id, &client_secret, &post(), NOW + 3, &nonce).expect("sign");
    let received = over_the_wire(&sig);
    let nonces = MemoryNonceStore::new(1000);
    let c = ctx(post(), "203.0.113.10", Scope::Withdraw, NOW);
    verify_request(&record, &secret, &received, &c, &nonces).expect("accepted");
    assert!(matches!(
        verify_request(&record, &secret, &received, &c, &nonces),
        Err(VerifyRequestError::Replayed)
    ));
}

#[test]
fn any_change_to_the_request_breaks_the_signature() {
    let (record, secret) = withdraw_key();
    let sig = sign_request(&record.key_id, &secret, &post(), NOW, &new_nonce()).expect("sign");
    let nonces = MemoryNonceStore::new(1000);
    let tampered_body = br#"{"asset":"BTC","amount_sat":990000,"address":"bcrt1q..."}"#;
    let variants = [
        RequestToSign {
            body: tampered_body,
            ..post()
        },
        RequestToSign {
            path_and_query: "/v1/withdrawals?dry_run=true",
            ..post()
        },
        RequestToSign {
            method: "PUT",
            ..post()
        },
    ];
    for v in variants {
        let e = verify_request(
            &record,
            &secret,
            &sig,
            &ctx(v, "203.0.113.10", Scope::Withdraw, NOW),
            &nonces,
        )
        .expect_err("refused");
        assert!(matches!(e, VerifyRequestError::BadSignature), "{e}");
    }
    let mut other_nonce = sig.clone();
    other_nonce.nonce = new_nonce();
    assert!(matches!(
        verify_request(
            &record,
            &secret,
            &other_nonce,
            &ctx(post(), "203.0.113.10", Scope::Withdraw, NOW),
            &nonces
        ),
        Err(VerifyRequestError::BadSignature)
    ));
    let wrong_secret = ApiKeySecret::from_bytes([9; 32]);
    assert!(matches!(
        verify_request(
            &record,
            &wrong_secret,
            &sig,
            &ctx(post(), "203.0.113.10", Scope::Withdraw, NOW),
            &nonces
        ),
        Err(VerifyRequestError::BadSignature)
    ));
}

#[test]
fn a_request_from_outside_the_ip_allowlist_is_refused() {
    let (record, secret) = withdraw_key();
    let sig = sign_request(&record.key_id, &secret, &post(), NOW, &new_nonce()).expect("sign");
    let nonces = MemoryNonceStore::new(1000);
    let e = verify_request(
        &record,
        &secret,
        &sig,
        &ctx(post(), "198.51.100.1", Scope::Withdraw, NOW),
        &nonces,
    )
    .expect_err("refused");
    assert!(matches!(e, VerifyRequestError::IpNotAllowed { .. }));
    assert_eq!(
        e.to_string(),
        "requests with this API key are not allowed from 198.51.100.1"
    );
    // The same address through a dual-stack socket is inside.
    verify_request(
        &record,
        &secret,
        &sig,
        &ctx(post(), "::ffff:203.0.113.10", Scope::Withdraw, NOW),
        &nonces,
    )
    .expect("mapped address accepted");
}

#[test]
fn stale_and_future_timestamps_are_refused() {
    let (record, secret) = withdraw_key();
    let nonces = MemoryNonceStore::new(1000);
    for ts in [NOW - 121, NOW + 121] {
        let sig = sign_request(&record.key_id, &secret, &post(), ts, &new_nonce()).expect("sign");
        let e = verify_request(
            &record,
            &secret,
            &sig,
            &ctx(post(), "203.0.113.10", Scope::Withdraw, NOW),
            &nonces,
        )
        .expect_err("refused");
        assert!(
            matches!(e, VerifyRequestError::Stale { max_secs: 120, .. }),
            "{e}"
        );
    }
}

#[test]
fn revoked_and_expired_keys_stop_working() {
    let (mut record, secret) = withdraw_key();
    let nonces = MemoryNonceStore::new(1000);
    let later = NOW + 30 * 86_400;
    let sig = sign_request(&record.key_id, &secret, &post(), later, &new_nonce()).expect("sign");
    assert!(matches!(
        verify_request(
            &record,
            &secret,
            &sig,
            &ctx(post(), "203.0.113.10", Scope::Withdraw, later),
            &nonces
        ),
        Err(VerifyRequestError::Expired { .. })
    ));
    record.revoke(NOW + 5);
    record.revoke(NOW + 9);
    assert_eq!(record.revoked_at, Some(NOW + 5));
    let sig = sign_request(&record.key_id, &secret, &post(), NOW + 6, &new_nonce()).expect("sign");
    assert!(matches!(
        verify_request(
            &record,
            &secret,
            &sig,
            &ctx(post(), "203.0.113.10", Scope::Withdraw, NOW + 6),
            &nonces
        ),
        Err(VerifyRequestError::Revoked)
    ));
}

#[test]
fn a_scope_escalation_is_refused() {
    // An admin key holding only read and admin tries to mint a withdraw key.
    let granter = ScopeSet::of(&[Scope::Read, Scope::Admin]);
    let e = create_api_key(
        "acct:42",
        NewApiKey {
            label: "escalate".into(),
            scopes: ScopeSet::of(&[Scope::Read, Scope::Withdraw]),
            expires_at: None,
            ip_allowlist: Some(IpAllowlist::parse("203.0.113.7").expect("list")),
        },
        granter,
        NOW,
    )
    .expect_err("refused");
    assert_eq!(
        e,
        CreateApiKeyError::ScopeEscalation {
            scope: Scope::Withdraw
        }
    );
    assert_eq!(
        e.to_string(),
        "cannot grant the withdraw scope: the creator does not hold it"
    );

    // A read-only key cannot call a withdraw endpoint.
    let (record, secret) = create_api_key(
        "acct:42",
        NewApiKey {
            label: "reader".into(),
            scopes: ScopeSet::of(&[Scope::Read]),
            expires_at: None,
            ip_allowlist: None,
        },
        granter,
        NOW,
    )
    .expect("read key");
    let sig = sign_request(&record.key_id, &secret, &post(), NOW, &new_nonce()).expect("sign");
    let nonces = MemoryNonceStore::new(10);
    assert!(matches!(
        verify_request(
            &record,
            &secret,
            &sig,
            &ctx(post(), "192.0.2.1", Scope::Withdraw, NOW),
            &nonces
        ),
        Err(VerifyRequestError::ScopeMissing {
            scope: Scope::Withdraw
        })
    ));
    let get = RequestToSign {
        method: "GET",
        path_and_query: "/v1/withdrawals",
        body: b"",
    };
    let sig = sign_request(&record.key_id, &secret, &get, NOW, &new_nonce()).expect("sign");
    verify_request(
        &record,
        &secret,
        &sig,
        &ctx(get, "192.0.2.1", Scope::Read, NOW),
        &nonces,
    )
    .expect("read from anywhere without an allowlist");
}

#[test]
fn a_key_without_an_ip_allowlist_cannot_withdraw() {
    let new = |list: Option<&str>| NewApiKey {
        label: "bot".into(),
        scopes: ScopeSet::of(&[Scope::Withdraw]),
        expires_at: None,
        ip_allowlist: list.map(|l| IpAllowlist::parse(l).expect("list")),
    };
    assert_eq!(
        create_api_key("a", new(None), ScopeSet::all(), NOW).map(|_| ()),
        Err(CreateApiKeyError::WithdrawWithoutAllowlist)
    );
    assert_eq!(
        create_api_key("a", new(Some("0.0.0.0/0")), ScopeSet::all(), NOW).map(|_| ()),
        Err(CreateApiKeyError::AllowlistTooBroad)
    );
    // A record that reached the database some other way is still refused at request time.
    let (mut record, secret) =
        create_api_key("a", new(Some("203.0.113.7")), ScopeSet::all(), NOW).expect("ok");
    record.ip_allowlist = None;
    let sig = sign_request(&record.key_id, &secret, &post(), NOW, &new_nonce()).expect("sign");
    let e = verify_request(
        &record,
        &secret,
        &sig,
        &ctx(post(), "203.0.113.7", Scope::Withdraw, NOW),
        &MemoryNonceStore::new(10),
    )
    .expect_err("refused");
    assert!(matches!(e, VerifyRequestError::WithdrawNeedsAllowlist));
}

#[test]
fn creation_rules_and_secret_handling() {
    let ok = |label: &str, exp: Option<i64>| {
        create_api_key(
            "a",
            NewApiKey {
                label: label.into(),
                scopes: ScopeSet::of(&[Scope::Read]),
                expires_at: exp,
                ip_allowlist: None,
            },
            ScopeSet::all(),
            NOW,
        )
        .map(|_| ())
    };
    assert_eq!(ok("x", Some(NOW)), Err(CreateApiKeyError::Expiry));
    assert_eq!(
        ok("x", Some(NOW + 367 * 86_400)),
        Err(CreateApiKeyError::Expiry)
    );
    assert_eq!(ok("", None), Err(CreateApiKeyError::Label));
    assert_eq!(ok("a\nb", None), Err(CreateApiKeyError::Label));
    let (record, secret) = withdraw_key();
    assert!(record.key_id.as_str().starts_with("cpk_"));
    assert!(secret.to_text().starts_with("cpks_"));
    assert_eq!(format!("{secret:?}"), "ApiKeySecret(<redacted>)");
    let json = serde_json::to_string(&record).expect("json");
    assert!(json.contains(r#""scopes":["read","withdraw"]"#), "{json}");
    assert!(
        json.contains(r#""ip_allowlist":["203.0.113.0/24"]"#),
        "{json}"
    );
    assert_eq!(
        serde_json::from_str::<ApiKeyRecord>(&json).expect("parse"),
        record
    );
    assert!(ApiKeySecret::from_text("cpks_short").is_err());
}

#[test]
fn malformed_headers_are_named() {
    let sig = "a".repeat(64);
    let key = "cpk_0123456789abcdef01234567";
    let nonce = "abcdefghijklmnop";
    assert!(RequestSignature::from_headers(key, "1800000000", nonce, &sig).is_ok());
    let e = RequestSignature::from_headers("cpk_XYZ", "1", nonce, &sig).expect_err("key");
    assert!(e.to_string().starts_with("X-Custody-Key"));
    let e = RequestSignature::from_headers(key, "-5", nonce, &sig).expect_err("ts");
    assert!(e.to_string().starts_with("X-Custody-Timestamp"));
    let e = RequestSignature::from_headers(key, "1", "short", &sig).expect_err("nonce");
    assert!(e.to_string().starts_with("X-Custody-Nonce"));
    let e = RequestSignature::from_headers(key, "1", nonce, &"A".repeat(64)).expect_err("sig");
    assert!(e.to_string().starts_with("X-Custody-Signature"));
}

#[test]
fn the_canonical_form_and_signature_are_pinned() {
    // The worked example in docs/adr/0016-api-key-authentication.md, checked independently
    // with Python's hashlib/hmac.
    let key_id = custody_auth::ApiKeyId::parse("cpk_00112233445566778899aabb").expect("id");
    let secret = ApiKeySecret::from_bytes([0x42; 32]);
    let req = RequestToSign {
        method: "POST",
        path_and_query: "/v1/withdrawals?dry_run=false",
        body: br#"{"amount_sat":150000}"#,
    };
    let nonce = "n0nce-n0nce-n0nce";
    let canonical =
        custody_auth::canonical_request(&key_id, 1_800_000_000, nonce, &req).expect("canonical");
    assert_eq!(
        canonical,
        "CUSTODY-HMAC-SHA256-V1\ncpk_00112233445566778899aabb\n1800000000\nn0nce-n0nce-n0nce\nPOST\n\
         /v1/withdrawals?dry_run=false\n\
         7bbfe5aaecc2cca4530ef20c431f594b2315590241f0b0dee1ae9f8b1550addd"
    );
    let sig = sign_request(&key_id, &secret, &req, 1_800_000_000, nonce).expect("sign");
    assert_eq!(
        sig.headers()[3].1,
        "d3874202724e3d2e484e12560cd435f06524d0ea586bfc54f695d01cf36ce92a"
    );
}

#[test]
fn the_memory_nonce_store_is_bounded_and_never_forgets_a_live_nonce() {
    use custody_auth::NonceStore;
    let (record, _) = withdraw_key();
    let store = MemoryNonceStore::new(2);
    let live = NOW + 120;
    assert!(store
        .remember(&record.key_id, "nonce-aaaaaaaaaaaa", live)
        .expect("ok"));
    assert!(store
        .remember(&record.key_id, "nonce-bbbbbbbbbbbb", live)
        .expect("ok"));
    assert!(
        !store
            .remember(&record.key_id, "nonce-aaaaaaaaaaaa", live)
            .expect("ok"),
        "replay"
    );
    // Full of live nonces: refuse rather than forget one (which would re-open a replay).
    assert!(store
        .remember(&record.key_id, "nonce-cccccccccccc", live)
        .is_err());
    // Much later the old ones are dead and make room.
    assert!(store
        .remember(&record.key_id, "nonce-dddddddddddd", live + 1201)
        .expect("room"));
}
