//! Envelopes: every refusal a receiver owes a key holder, and nothing recorded on refusal.

use custody_airgap::envelope::{
    DecodeError, Envelope, EnvelopeType, MemoryReplayGuard, OpenError, Receiver, ReplayGuard,
    SealError, SealParams,
};
use custody_threshold::{Identity, IdentityCard, SigningDomain};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const NOW: u64 = 1_790_000_000;
const SESSION: [u8; 16] = [0x5f; 16];

struct World {
    coordinator: Identity,
    alice: Identity,
    bob: Identity,
    rng: ChaCha20Rng,
}

fn world() -> World {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    World {
        coordinator: Identity::generate("coordinator", &mut rng).expect("id"),
        alice: Identity::generate("alice", &mut rng).expect("id"),
        bob: Identity::generate("bob", &mut rng).expect("id"),
        rng,
    }
}

fn params<'a>(kind: EnvelopeType, sequence: u64, recipients: &'a [IdentityCard]) -> SealParams<'a> {
    SealParams {
        kind,
        session_id: SESSION,
        sequence,
        created_at: NOW,
        expires_at: NOW + 3600,
        recipients,
    }
}

fn seal(w: &mut World, kind: EnvelopeType, seq: u64, payload: &[u8]) -> Vec<u8> {
    Envelope::seal(&w.coordinator, &params(kind, seq, &[]), payload, &mut w.rng)
        .expect("seal")
        .encode()
}

#[test]
fn a_valid_envelope_opens_once() {
    let mut w = world();
    let bytes = seal(&mut w, EnvelopeType::SigningRequest, 1, b"request bytes");
    let trusted = [w.coordinator.card()];
    let mut rx = Receiver::new(
        SESSION,
        &trusted,
        Some(&w.alice),
        MemoryReplayGuard::default(),
    );
    let opened = rx
        .open(&bytes, Some(EnvelopeType::SigningRequest), NOW + 1)
        .expect("opens");
    assert_eq!(&*opened.payload, b"request bytes");
    assert_eq!(opened.sender.name(), "coordinator");
    assert_eq!(opened.header.sequence, 1);

    let err = rx.open(&bytes, None, NOW + 2).expect_err("replay");
    assert!(
        matches!(err, OpenError::Replay { sequence: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("already received"));
}

#[test]
fn tampering_anywhere_breaks_the_signature() {
    let mut w = world();
    let bytes = seal(&mut w, EnvelopeType::Psbt, 3, b"psbt\xff fake psbt payload");
    let trusted = [w.coordinator.card()];
    // Every byte after the structural fields: sequence, times, payload, signature.
    for at in [60, 70, 80, 95, bytes.len() - 70, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x20;
        let mut rx = Receiver::new(SESSION, &trusted, None, MemoryReplayGuard::default());
        let err = rx.open(&bad, None, NOW).expect_err("tampered");
        assert!(
            matches!(err, OpenError::BadSignature(_) | OpenError::Decode(_)),
            "byte {at}: {err}"
        );
        assert!(!rx
            .guard()
            .seen(w.coordinator.card().signing_key(), &SESSION, 3)
            .expect("guard"));
    }
}

#[test]
fn refusals_say_what_is_wrong_and_record_nothing() {
    let mut w = world();
    let trusted = [w.coordinator.card()];
    let bytes = seal(&mut w, EnvelopeType::SigningRequest, 9, b"x");
    let key = *w.coordinator.card().signing_key();

    let mut rx = Receiver::new([0; 16], &trusted, None, MemoryReplayGuard::default());
    let err = rx.open(&bytes, None, NOW).expect_err("wrong session");
    assert!(matches!(err, OpenError::WrongSession { .. }), "{err}");

    let strangers = [w.bob.card()];
    let mut rx = Receiver::new(SESSION, &strangers, None, MemoryReplayGuard::default());
    let err = rx.open(&bytes, None, NOW).expect_err("unknown sender");
    assert!(matches!(err, OpenError::UnknownSender(_)), "{err}");

    let mut rx = Receiver::new(SESSION, &trusted, None, MemoryReplayGuard::default());
    let err = rx.open(&bytes, None, NOW + 3600).expect_err("expired");
    assert!(matches!(err, OpenError::Expired { .. }), "{err}");
    let err = rx.open(&bytes, None, NOW - 3600).expect_err("future");
    assert!(
        err.to_string().contains("check this machine's clock"),
        "{err}"
    );
    let err = rx
        .open(&bytes, Some(EnvelopeType::Psbt), NOW)
        .expect_err("wrong type");
    assert!(
        err.to_string().contains("expected a psbt envelope"),
        "{err}"
    );
    assert!(
        !rx.guard().seen(&key, &SESSION, 9).expect("guard"),
        "refusals record nothing"
    );
    rx.open(&bytes, None, NOW)
        .expect("still opens after refusals");

    let mut v2 = bytes.clone();
    v2[4] = 2;
    let err = rx.open(&v2, None, NOW).expect_err("version");
    assert!(matches!(
        err,
        OpenError::Decode(DecodeError::UnsupportedVersion { found: 2 })
    ));
    assert!(err.to_string().contains("update the software"));

    let err = rx
        .open(&bytes[..bytes.len() - 10], None, NOW)
        .expect_err("truncated");
    assert!(err.to_string().contains("truncated"), "{err}");
    let err = rx.open(b"hello", None, NOW).expect_err("not an envelope");
    assert!(matches!(err, OpenError::Decode(DecodeError::BadMagic)));
    let mut long = bytes.clone();
    long.push(0);
    let err = rx.open(&long, None, NOW).expect_err("trailing");
    assert!(matches!(
        err,
        OpenError::Decode(DecodeError::TrailingBytes(1))
    ));
}

#[test]
fn encrypted_envelopes_open_only_for_their_recipients() {
    let mut w = world();
    let recipients = [w.alice.card(), w.bob.card()];
    let env = Envelope::seal(
        &w.coordinator,
        &params(EnvelopeType::ShareBackup, 1, &recipients),
        b"secret share backup",
        &mut w.rng,
    )
    .expect("seal");
    let bytes = env.encode();
    assert!(
        !bytes.windows(6).any(|win| win == b"secret"),
        "the plaintext is not in the envelope"
    );
    let trusted = [w.coordinator.card()];
    for who in [&w.alice, &w.bob] {
        let mut rx = Receiver::new(SESSION, &trusted, Some(who), MemoryReplayGuard::default());
        let opened = rx.open(&bytes, None, NOW).expect("recipient opens");
        assert_eq!(&*opened.payload, b"secret share backup");
    }
    let mut rx = Receiver::new(
        SESSION,
        &trusted,
        Some(&w.coordinator),
        MemoryReplayGuard::default(),
    );
    let err = rx.open(&bytes, None, NOW).expect_err("not a recipient");
    assert!(matches!(err, OpenError::NotForUs(_)), "{err}");

    let err = Envelope::seal(
        &w.coordinator,
        &params(EnvelopeType::ShareBackup, 2, &[]),
        b"oops",
        &mut w.rng,
    )
    .expect_err("backups must be encrypted");
    assert!(matches!(
        err,
        SealError::EncryptionRequired(EnvelopeType::ShareBackup)
    ));
}

#[test]
fn an_envelope_signature_is_no_signature_in_another_domain() {
    let mut w = world();
    let sig = w
        .alice
        .sign_in_domain(SigningDomain::AirgapEnvelope, b"message", &mut w.rng);
    let card = w.alice.card();
    assert!(card.verify_in_domain(SigningDomain::AirgapEnvelope, b"message", &sig));
    assert!(!card.verify_in_domain(SigningDomain::Policy, b"message", &sig));
    assert!(!card.verify(b"message", &sig));
}
