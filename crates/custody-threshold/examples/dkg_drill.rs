//! A 2-of-3 drill, end to end in one process: three key holders create identities, run the
//! certified DKG, derive a Taproot key from the group xpub, pre-issue nonce commitments,
//! sign a message in one trip with two of them, and check the signature with
//! libsecp256k1.
//!
//! Run with `cargo run -p custody-threshold --example dkg_drill`.

#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use bitcoin::bip32::ChildNumber;
use bitcoin::key::TapTweak;
use bitcoin::secp256k1::{schnorr, Message, Secp256k1};
use custody_threshold::{
    aggregate, issue_commitments, sign_request, CeremonyKind, CeremonyMessage, CeremonyPlan,
    CommitmentPool, Identity, ItemSpec, Keygen, MemoryNonceStore, Network, NonceSeed,
    SigningRequest, TweakMode,
};
use rand_core::OsRng;
use sha2::{Digest, Sha256};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("drill FAILED: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = OsRng;
    println!("1. Three key holders create their identities");
    let ids: Vec<Identity> = ["alice", "bob", "carol"]
        .iter()
        .map(|n| Identity::generate(n, &mut rng))
        .collect::<Result<_, _>>()?;
    for id in &ids {
        println!(
            "   {:<6} fingerprint {}",
            id.name(),
            id.card().fingerprint()
        );
    }

    let mut ceremony_id = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rng, &mut ceremony_id);
    let plan = CeremonyPlan::new(
        ceremony_id,
        CeremonyKind::Dkg,
        Network::Regtest,
        "quickstart drill",
        2,
        ids.iter().map(Identity::card).collect(),
    )?;
    println!(
        "2. Ceremony plan {}: 2-of-3 on regtest, plan hash {}",
        hex::encode(plan.ceremony_id()),
        hex::encode(plan.hash())
    );

    println!("3. DKG round 1: each holder broadcasts signed commitments");
    let mut states = Vec::new();
    let mut round1 = Vec::new();
    for id in &ids {
        let (state, msg) = Keygen::start_dkg(&plan, id, &mut rng)?;
        states.push(state);
        round1.push(msg);
    }
    // Every message crosses the "air gap" as bytes.
    let round1 = wire(&round1)?;

    println!("4. DKG round 2: each holder sends an encrypted, signed share to each other holder");
    let mut states2 = Vec::new();
    let mut round2 = Vec::new();
    for (state, id) in states.into_iter().zip(&ids) {
        let (state, msgs) = state.receive_round1(id, &round1, &mut rng)?;
        states2.push(state);
        round2.extend(msgs);
    }
    let round2 = wire(&round2)?;

    println!("5. Each holder certifies the transcript; the key is usable only when all agree");
    let mut states3 = Vec::new();
    let mut certs = Vec::new();
    for (state, id) in states2.into_iter().zip(&ids) {
        let (state, cert) = state.receive_round2(id, &round2, &mut rng)?;
        states3.push(state);
        certs.push(cert);
    }
    let certs = wire(&certs)?;
    let mut shares = Vec::new();
    for (state, id) in states3.into_iter().zip(&ids) {
        let out = state.finish(id, &certs)?;
        println!(
            "   {:<6} certified transcript {}",
            id.name(),
            hex::encode(out.transcript_hash)
        );
        shares.push(out.share);
    }
    let group = shares[0].group().clone();
    println!("   group xpub {}", group.xpub());

    let path = [0u32, 0];
    let output_key = group.output_key(&path, &TweakMode::KeyPath)?;
    println!(
        "6. Receive key at {}/0/0 (BIP86 output key) {}",
        group.fingerprint(),
        hex::encode(output_key)
    );

    println!("7. Every signer pre-issues nonce commitments (one air-gap trip, ahead of time)");
    let mut devices: Vec<_> = shares
        .into_iter()
        .map(|s| (s, NonceSeed::generate(&mut rng), MemoryNonceStore::new()))
        .collect();
    let mut pool = CommitmentPool::new(&group);
    for (share, seed, store) in &mut devices {
        pool.add_batch(&issue_commitments(share, seed, store, 10)?)?;
    }

    let message: [u8; 32] =
        Sha256::digest(b"CoinPort quickstart: move 1 BTC to cold storage").into();
    let request = SigningRequest::build(
        ceremony_id,
        &group,
        &[1, 3],
        vec![ItemSpec {
            message: message.to_vec(),
            path: path.to_vec(),
            tweak: TweakMode::KeyPath,
        }],
        &mut pool,
    )?;
    println!("8. alice and carol each answer the signing request in one step");
    let wire_request = SigningRequest::decode(&request.encode())?;
    let mut responses = Vec::new();
    for (share, seed, store) in devices.iter_mut().filter(|(s, _, _)| s.index() != 2) {
        responses.push(sign_request(share, seed, store, &wire_request)?);
    }
    let signatures = aggregate(&group, &request, &responses)?;

    println!(
        "9. Aggregated BIP340 signature {}",
        hex::encode(signatures[0])
    );
    // Independent check: libsecp256k1, with the key derived by the bitcoin crate.
    let secp = Secp256k1::new();
    let steps: Vec<ChildNumber> = path
        .iter()
        .map(|i| ChildNumber::from_normal_idx(*i))
        .collect::<Result<_, _>>()?;
    let child = group.xpub().derive_pub(&secp, &steps)?;
    let (tweaked, _) = child
        .public_key
        .x_only_public_key()
        .0
        .tap_tweak(&secp, None);
    secp.verify_schnorr(
        &schnorr::Signature::from_slice(&signatures[0])?,
        &Message::from_digest(message),
        &tweaked.to_x_only_public_key(),
    )?;
    println!("   libsecp256k1 verifies it: OK");

    let (share, seed, store) = &mut devices[0];
    let again = sign_request(share, seed, store, &wire_request);
    match again {
        Err(e) => println!("10. Signing the same request again is refused: {e}"),
        Ok(_) => return Err("a commitment was answered twice".into()),
    }
    println!("drill complete");
    Ok(())
}

/// Encodes and decodes each message, as a USB file or QR code would carry it.
fn wire(msgs: &[CeremonyMessage]) -> Result<Vec<CeremonyMessage>, custody_threshold::DecodeError> {
    msgs.iter()
        .map(|m| CeremonyMessage::decode(&m.encode()))
        .collect()
}
