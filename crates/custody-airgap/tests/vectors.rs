//! Pinned envelope vectors: exact wire bytes from fixed seeds, so any format change shows
//! as a diff in `test-vectors/envelope/`. Re-bless an intended change with
//! `COINPORT_BLESS=1 cargo test -p custody-airgap --test vectors` and review the diff.

use custody_airgap::envelope::{Envelope, EnvelopeType, MemoryReplayGuard, Receiver, SealParams};
use custody_threshold::Identity;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn vector() -> serde_json::Value {
    let mut rng = ChaCha20Rng::seed_from_u64(2026);
    let sender = Identity::generate("coordinator", &mut rng).expect("id");
    let params = SealParams {
        kind: EnvelopeType::SigningRequest,
        session_id: *b"\x5f\x24\x07\xe8\x64\x87\xca\xfa\xc2\x24\x46\x58\x70\x72\x80\xb0",
        sequence: 1,
        created_at: 1_790_000_000,
        expires_at: 1_790_086_400,
        recipients: &[],
    };
    let payload = b"CoinPort";
    let env = Envelope::seal(&sender, &params, payload, &mut rng).expect("seal");
    let bytes = env.encode();
    // The pinned bytes open.
    let trusted = [sender.card()];
    let mut rx = Receiver::new(
        params.session_id,
        &trusted,
        None,
        MemoryReplayGuard::default(),
    );
    rx.open(&bytes, None, 1_790_000_001).expect("vector opens");
    serde_json::json!({
        "config": { "identity_seed": 2026, "sender_name": "coordinator" },
        "inputs": {
            "sender_identity_card": hex::encode(sender.card().encode()),
            "type": "signing-request",
            "session_id": hex::encode(params.session_id),
            "sequence": params.sequence,
            "created_at": params.created_at,
            "expires_at": params.expires_at,
            "payload": hex::encode(payload),
        },
        "outputs": { "envelope": hex::encode(&bytes) }
    })
}

#[test]
fn plain_envelope_bytes_are_pinned() {
    let path = format!(
        "{}/../../test-vectors/envelope/plain-signing-request.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let actual = vector();
    if std::env::var_os("COINPORT_BLESS").is_some() {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&actual).expect("json") + "\n",
        )
        .expect("write");
    }
    let pinned: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("vector exists"))
            .expect("json");
    assert_eq!(
        actual, pinned,
        "envelope format changed: review and re-bless"
    );
}
