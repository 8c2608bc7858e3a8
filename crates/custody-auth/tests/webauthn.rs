//! WebAuthn end to end with a software authenticator (`webauthn-authenticator-rs`
//! SoftPasskey): register, authenticate, and every refusal a user would care about.

use custody_auth::webauthn::{
    PublicKeyCredential, RequestChallengeResponse, Url, Uuid, WebauthnError,
};
use custody_auth::{
    AuthenticationCeremony, RegistrationCeremony, StoredCredential, WebAuthn, WebAuthnConfig,
    WebAuthnError, WebAuthnUser,
};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_authenticator_rs::WebauthnAuthenticator;

const NOW: i64 = 1_800_000_000;
const ORIGIN: &str = "https://coinport.example";

fn url(s: &str) -> Url {
    Url::parse(s).expect("url")
}

fn rp() -> WebAuthn {
    WebAuthn::new(&WebAuthnConfig {
        rp_id: "coinport.example".into(),
        rp_name: "CoinPort".into(),
        origins: vec![url(ORIGIN)],
        ceremony_timeout_secs: 300,
    })
    .expect("config")
}

/// A soft authenticator that performs (claims) user verification, like a key with a PIN.
fn authenticator() -> SoftPasskey {
    SoftPasskey::new(true)
}

fn register(
    rp: &WebAuthn,
    auth: &mut SoftPasskey,
    user: Uuid,
    existing: &[StoredCredential],
) -> StoredCredential {
    let who = WebAuthnUser {
        id: user,
        name: "alice@coinport.example",
        display_name: "Alice",
    };
    let (options, ceremony) = rp.start_registration(who, existing, NOW).expect("start");
    // The ceremony goes to the database and comes back.
    let ceremony =
        RegistrationCeremony::from_json(&ceremony.to_json().expect("json")).expect("row");
    let answer = auth
        .do_registration(url(ORIGIN), options)
        .expect("authenticator registers");
    let cred = rp
        .finish_registration(ceremony, &answer, NOW + 5)
        .expect("registered");
    StoredCredential::from_json(&cred.to_json().expect("json")).expect("row")
}

fn challenge(
    rp: &WebAuthn,
    user: Uuid,
    creds: &[StoredCredential],
    now: i64,
) -> (RequestChallengeResponse, AuthenticationCeremony) {
    let (options, ceremony) = rp.start_authentication(user, creds, now).expect("start");
    let ceremony =
        AuthenticationCeremony::from_json(&ceremony.to_json().expect("json")).expect("row");
    (options, ceremony)
}

/// Edits the options as a malicious or broken client would before the authenticator sees them.
fn tamper(
    options: RequestChallengeResponse,
    edit: impl FnOnce(&mut serde_json::Value),
) -> RequestChallengeResponse {
    let mut v = serde_json::to_value(&options).expect("json");
    edit(&mut v["publicKey"]);
    serde_json::from_value(v).expect("still options")
}

fn answer(
    auth: &mut SoftPasskey,
    origin: &str,
    options: RequestChallengeResponse,
) -> PublicKeyCredential {
    auth.do_authentication(url(origin), options)
        .expect("authenticator answers")
}

#[test]
fn register_then_authenticate_updates_the_counter() {
    let rp = rp();
    let mut key = authenticator();
    let alice = Uuid::new_v4();
    let mut creds = vec![register(&rp, &mut key, alice, &[])];
    assert_eq!(creds[0].user_id(), alice);
    assert_eq!(creds[0].counter, 0);

    for round in 1..=2u32 {
        let (options, ceremony) = challenge(&rp, alice, &creds, NOW + 100);
        let response = answer(&mut key, ORIGIN, options);
        let outcome = rp
            .finish_authentication(ceremony, &response, &mut creds, NOW + 110)
            .expect("authenticated");
        assert_eq!(&outcome.credential_id, creds[0].credential_id());
        assert!(outcome.credential_changed, "counter moved: write it back");
        assert!(creds[0].counter >= round);
        assert_eq!(creds[0].last_used_at, Some(NOW + 110));
    }
}

#[test]
fn an_assertion_for_another_origin_is_refused() {
    let rp = rp();
    let mut key = authenticator();
    let alice = Uuid::new_v4();
    let mut creds = vec![register(&rp, &mut key, alice, &[])];
    let (options, ceremony) = challenge(&rp, alice, &creds, NOW);
    // A page on a subdomain we never configured (the browser allows it: the rp id is a
    // suffix of it). We do not.
    let response = answer(&mut key, "https://login.coinport.example", options);
    let e = rp
        .finish_authentication(ceremony, &response, &mut creds, NOW + 1)
        .expect_err("refused");
    assert!(
        matches!(e, WebAuthnError::Rejected(WebauthnError::InvalidRPOrigin)),
        "{e}"
    );
    assert_eq!(creds[0].counter, 0, "nothing written on refusal");
}

#[test]
fn an_assertion_for_another_rp_id_is_refused() {
    let rp = rp();
    let mut key = authenticator();
    let alice = Uuid::new_v4();
    let mut creds = vec![register(&rp, &mut key, alice, &[])];
    let (options, ceremony) = challenge(&rp, alice, &creds, NOW);
    // A look-alike phishing site relays our challenge under its own rp id and origin.
    let options = tamper(options, |pk| pk["rpId"] = "coinp0rt.example".into());
    let response = answer(&mut key, "https://coinp0rt.example", options);
    let e = rp
        .finish_authentication(ceremony, &response, &mut creds, NOW + 1)
        .expect_err("refused");
    assert!(matches!(e, WebAuthnError::Rejected(_)), "{e}");

    // Our own origin, but the client signs for a parent domain as rp id: the rp id hash in
    // the authenticator data does not match ours.
    let (options, ceremony) = challenge(&rp, alice, &creds, NOW);
    let options = tamper(options, |pk| pk["rpId"] = "example".into());
    let response = answer(&mut key, ORIGIN, options);
    let e = rp
        .finish_authentication(ceremony, &response, &mut creds, NOW + 1)
        .expect_err("refused");
    assert!(
        matches!(e, WebAuthnError::Rejected(WebauthnError::InvalidRPIDHash)),
        "{e}"
    );
}

#[test]
fn a_replayed_assertion_is_refused() {
    let rp = rp();
    let mut key = authenticator();
    let alice = Uuid::new_v4();
    let mut creds = vec![register(&rp, &mut key, alice, &[])];
    let (options, ceremony) = challenge(&rp, alice, &creds, NOW);
    let row = ceremony.to_json().expect("json");
    let response = answer(&mut key, ORIGIN, options);
    rp.finish_authentication(ceremony, &response, &mut creds, NOW + 1)
        .expect("first time");

    // Replayed against a fresh challenge: the signed challenge does not match.
    let (_, fresh) = challenge(&rp, alice, &creds, NOW + 2);
    let e = rp
        .finish_authentication(fresh, &response, &mut creds, NOW + 3)
        .expect_err("refused");
    assert!(
        matches!(
            e,
            WebAuthnError::Rejected(WebauthnError::MismatchedChallenge)
        ),
        "{e}"
    );

    // Replayed against the same ceremony row (one the coordinator failed to delete): the
    // counter the credential stored does not move forward.
    let stale = AuthenticationCeremony::from_json(&row).expect("row");
    let e = rp
        .finish_authentication(stale, &response, &mut creds, NOW + 4)
        .expect_err("refused");
    assert!(
        matches!(e, WebAuthnError::CounterNotIncreasing { .. }),
        "{e}"
    );
}

#[test]
fn a_credential_of_another_user_is_refused() {
    let rp = rp();
    let mut alice_key = authenticator();
    let mut mallory_key = authenticator();
    let alice = Uuid::new_v4();
    let mallory = Uuid::new_v4();
    let mut alice_creds = vec![register(&rp, &mut alice_key, alice, &[])];
    let mallory_cred = register(&rp, &mut mallory_key, mallory, &[]);

    // The coordinator mixing up rows is caught before any challenge is issued.
    let mixed = vec![alice_creds[0].clone(), mallory_cred.clone()];
    assert!(matches!(
        rp.start_authentication(alice, &mixed, NOW),
        Err(WebAuthnError::WrongUser)
    ));

    // Mallory answers Alice's challenge with her own key (her client rewrites the allow list).
    let (options, ceremony) = challenge(&rp, alice, &alice_creds, NOW);
    let mallory_id = mallory_cred.credential_id_text();
    let options = tamper(options, |pk| {
        pk["allowCredentials"] = serde_json::json!([{ "type": "public-key", "id": mallory_id }]);
    });
    let response = answer(&mut mallory_key, ORIGIN, options);
    let e = rp
        .finish_authentication(ceremony, &response, &mut alice_creds, NOW + 1)
        .expect_err("refused");
    assert!(
        matches!(e, WebAuthnError::Rejected(_) | WebAuthnError::WrongUser),
        "{e}"
    );
}

#[test]
fn an_authentication_without_user_verification_is_refused() {
    let rp = rp();
    let mut key = authenticator();
    let alice = Uuid::new_v4();
    let mut creds = vec![register(&rp, &mut key, alice, &[])];
    let (options, ceremony) = challenge(&rp, alice, &creds, NOW);
    // The client drops the requirement; the authenticator then only tests presence.
    let options = tamper(options, |pk| pk["userVerification"] = "discouraged".into());
    let response = answer(&mut key, ORIGIN, options);
    let e = rp
        .finish_authentication(ceremony, &response, &mut creds, NOW + 1)
        .expect_err("refused");
    assert!(matches!(e, WebAuthnError::UserNotVerified), "{e}");
    assert!(e.to_string().contains("PIN or biometric"));
}

#[test]
fn a_registration_without_user_verification_is_refused() {
    let rp = rp();
    let mut key = authenticator();
    let who = WebAuthnUser {
        id: Uuid::new_v4(),
        name: "bob",
        display_name: "Bob",
    };
    let (options, ceremony) = rp.start_registration(who, &[], NOW).expect("start");
    let mut v = serde_json::to_value(&options).expect("json");
    v["publicKey"]["authenticatorSelection"]["userVerification"] = "discouraged".into();
    let options = serde_json::from_value(v).expect("options");
    let answer = key.do_registration(url(ORIGIN), options).expect("answers");
    let e = rp
        .finish_registration(ceremony, &answer, NOW + 1)
        .expect_err("refused");
    assert!(matches!(e, WebAuthnError::UserNotVerified), "{e}");
}

#[test]
fn ceremonies_expire() {
    let rp = rp();
    let mut key = authenticator();
    let alice = Uuid::new_v4();
    let who = WebAuthnUser {
        id: alice,
        name: "alice",
        display_name: "Alice",
    };
    let (options, ceremony) = rp.start_registration(who, &[], NOW).expect("start");
    let reg = key.do_registration(url(ORIGIN), options).expect("answers");
    assert!(matches!(
        rp.finish_registration(ceremony, &reg, NOW + 300),
        Err(WebAuthnError::CeremonyExpired { expired_at }) if expired_at == NOW + 300
    ));

    let mut creds = vec![register(&rp, &mut key, alice, &[])];
    let (options, ceremony) = challenge(&rp, alice, &creds, NOW);
    let response = answer(&mut key, ORIGIN, options);
    assert!(matches!(
        rp.finish_authentication(ceremony, &response, &mut creds, NOW + 301),
        Err(WebAuthnError::CeremonyExpired { .. })
    ));
}

#[test]
fn a_second_key_can_be_added_and_either_authenticates() {
    let rp = rp();
    let mut phone = authenticator();
    let mut yubikey = authenticator();
    let alice = Uuid::new_v4();
    let first = register(&rp, &mut phone, alice, &[]);
    let second = register(&rp, &mut yubikey, alice, std::slice::from_ref(&first));
    assert_ne!(first.credential_id(), second.credential_id());
    let mut creds = vec![first, second];
    let (options, ceremony) = challenge(&rp, alice, &creds, NOW);
    let response = answer(&mut yubikey, ORIGIN, options);
    let outcome = rp
        .finish_authentication(ceremony, &response, &mut creds, NOW + 1)
        .expect("ok");
    assert_eq!(&outcome.credential_id, creds[1].credential_id());
    assert_eq!(creds[0].last_used_at, None);
    assert!(matches!(
        rp.start_authentication(alice, &[], NOW),
        Err(WebAuthnError::NoCredentials)
    ));
}

#[test]
fn bad_configuration_is_refused() {
    let mut c = WebAuthnConfig {
        rp_id: "coinport.example".into(),
        rp_name: "CoinPort".into(),
        origins: vec![],
        ceremony_timeout_secs: 300,
    };
    assert!(WebAuthn::new(&c).is_err());
    c.origins = vec![url("https://evil.example")];
    assert!(WebAuthn::new(&c).is_err(), "origin outside the rp id");
    c.origins = vec![url(ORIGIN)];
    c.ceremony_timeout_secs = 0;
    assert!(WebAuthn::new(&c).is_err());
}
