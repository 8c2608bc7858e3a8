//! Verification costs of the sign-in factors and signed API requests, each beside the raw
//! library call it wraps, so the wrapper's overhead is visible in one run:
//!
//! - `webauthn/finish_authentication` vs `webauthn/raw_webauthn_rs` (the same assertion
//!   checked by `webauthn-rs` alone): ECDSA P-256 verification dominates both;
//! - `otp/verify` vs `otp/raw_hmac_sha256` (one HMAC and a constant-time compare);
//! - `api_request/verify` vs `api_request/raw_hmac_sha256` (SHA-256 of the body plus the
//!   HMAC of the canonical request), with a no-op nonce store: in the coordinator the nonce
//!   insert into the database costs more than the cryptography.
//!
//! TOTP is benchmarked in the coordinator, where it lives.

// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use custody_auth::webauthn::{Url, Uuid};
use custody_auth::{
    create_api_key, issue_otp, sign_request, verify_request, ApiKeyId, HashKey, IpAllowlist,
    NewApiKey, NonceStore, NonceStoreError, OtpChannel, OtpPolicy, ReplayWindow, RequestToSign,
    Scope, ScopeSet, VerifyContext, WebAuthn, WebAuthnConfig, WebAuthnUser,
};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_authenticator_rs::WebauthnAuthenticator;

const NOW: i64 = 1_800_000_000;
const ORIGIN: &str = "https://coinport.example";

fn origin() -> Url {
    Url::parse(ORIGIN).expect("url")
}

fn bench_webauthn(c: &mut Criterion) {
    let rp = WebAuthn::new(&WebAuthnConfig {
        rp_id: "coinport.example".into(),
        rp_name: "CoinPort".into(),
        origins: vec![origin()],
        ceremony_timeout_secs: 300,
    })
    .expect("config");
    let mut key = SoftPasskey::new(true);
    let user = Uuid::new_v4();
    let who = WebAuthnUser {
        id: user,
        name: "alice",
        display_name: "Alice",
    };
    let (options, ceremony) = rp.start_registration(who, &[], NOW).expect("start");
    let reg = key.do_registration(origin(), options).expect("register");
    let cred = rp
        .finish_registration(ceremony, &reg, NOW)
        .expect("registered");

    let raw = webauthn_rs::WebauthnBuilder::new("coinport.example", &origin())
        .expect("builder")
        .build()
        .expect("raw");
    let (options, state) = raw
        .start_passkey_registration(user, "alice", "Alice", None)
        .expect("start");
    let reg = key.do_registration(origin(), options).expect("register");
    let raw_passkey = raw
        .finish_passkey_registration(&reg, &state)
        .expect("registered");

    let mut group = c.benchmark_group("webauthn");
    group.bench_function("finish_authentication", |b| {
        b.iter_batched(
            || {
                let creds = vec![cred.clone()];
                let (options, ceremony) =
                    rp.start_authentication(user, &creds, NOW).expect("start");
                let answer = key.do_authentication(origin(), options).expect("answer");
                (creds, ceremony, answer)
            },
            |(mut creds, ceremony, answer)| {
                rp.finish_authentication(ceremony, &answer, &mut creds, NOW)
                    .expect("authenticated")
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("raw_webauthn_rs", |b| {
        b.iter_batched(
            || {
                let (options, state) = raw
                    .start_passkey_authentication(std::slice::from_ref(&raw_passkey))
                    .expect("start");
                let answer = key.do_authentication(origin(), options).expect("answer");
                (state, answer)
            },
            |(state, answer)| {
                raw.finish_passkey_authentication(&answer, &state)
                    .expect("authenticated")
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn bench_otp(c: &mut Criterion) {
    let key = HashKey::generate();
    let policy = OtpPolicy::default_for(OtpChannel::Email);
    let (code, record) = issue_otp(&key, OtpChannel::Email, &policy, "acct:1/login", NOW);
    let code = code.expose_secret().to_owned();
    let raw_key = [7u8; 32];
    let raw_tag: [u8; 32] = {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&raw_key).expect("key");
        m.update(code.as_bytes());
        m.finalize().into_bytes().into()
    };

    let mut group = c.benchmark_group("otp");
    group.bench_function("verify", |b| {
        b.iter_batched(
            || record.clone(),
            |mut r| {
                r.verify(&key, black_box("acct:1/login"), black_box(&code), NOW)
                    .expect("accepted")
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("raw_hmac_sha256", |b| {
        b.iter(|| {
            let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&raw_key).expect("key");
            m.update(black_box(code.as_bytes()));
            let tag: [u8; 32] = m.finalize().into_bytes().into();
            assert!(bool::from(tag.ct_eq(&raw_tag)));
        })
    });
    group.finish();
}

/// Accepts every nonce: isolates verification from storage.
struct NoNonceStore;

impl NonceStore for NoNonceStore {
    fn remember(&self, _: &ApiKeyId, _: &str, _: i64) -> Result<bool, NonceStoreError> {
        Ok(true)
    }
}

fn bench_api_request(c: &mut Criterion) {
    let (record, secret) = create_api_key(
        "acct:1",
        NewApiKey {
            label: "bench".into(),
            scopes: ScopeSet::of(&[Scope::Withdraw]),
            expires_at: None,
            ip_allowlist: Some(IpAllowlist::parse("203.0.113.0/24").expect("list")),
        },
        ScopeSet::all(),
        NOW,
    )
    .expect("key");
    let body = br#"{"asset":"BTC","amount_sat":150000,"address":"bcrt1qexampleexampleexampleexampleexample"}"#;
    let request = RequestToSign {
        method: "POST",
        path_and_query: "/v1/withdrawals",
        body,
    };
    let nonce = "bench-nonce-0123456789";
    let sig = sign_request(&record.key_id, &secret, &request, NOW, nonce).expect("sign");
    let ctx = VerifyContext {
        client_ip: "203.0.113.9".parse().expect("ip"),
        required: Scope::Withdraw,
        window: ReplayWindow::default(),
        now: NOW,
        request,
    };
    let canonical =
        custody_auth::canonical_request(&record.key_id, NOW, nonce, &request).expect("canonical");
    let prefix = &canonical[..canonical.len() - 64];

    let mut group = c.benchmark_group("api_request");
    group.bench_function("verify", |b| {
        b.iter(|| {
            verify_request(&record, &secret, black_box(&sig), &ctx, &NoNonceStore)
                .expect("accepted")
        })
    });
    group.bench_function("raw_hmac_sha256", |b| {
        b.iter(|| {
            let body_hash = hex::encode(Sha256::digest(black_box(body)));
            let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose_secret()).expect("key");
            m.update(prefix.as_bytes());
            m.update(body_hash.as_bytes());
            let tag: [u8; 32] = m.finalize().into_bytes().into();
            assert!(bool::from(tag.ct_eq(&sig.signature)));
        })
    });
    group.finish();
}

criterion_group!(benches, bench_webauthn, bench_otp, bench_api_request);
criterion_main!(benches);
