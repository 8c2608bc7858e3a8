//! Ethereum scenarios with the real binary: a 2-of-3 threshold-ECDSA key from imported
//! test primes, a presignature batch, withdrawals signed in one trip per signer and
//! combined into a raw EIP-1559 transaction that alloy and k256 (not our code) check, and
//! the refusals a key holder must see: a tampered transaction, a reused presignature, a
//! message from another execution id, a restored backup without presignatures.
//!
//! The key ceremony takes about a minute in a debug build, so the tests share one key
//! (built once, behind a mutex); every test spends its own presignature.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use alloy_consensus::transaction::SignerRecoverable;
use alloy_consensus::TxEnvelope;
use alloy_primitives::Address as AlloyAddress;
use common::policy::{Authority, Terms};
use common::{assert_all_succeeded, lines, record, run_all, Signer};
use custody_ecdsa::EcdsaPlan;
use custody_ethereum::{
    Address, Bytes, Eip1559Fields, EthSignRequest, EthTransaction, KeyPath, U256,
};
use custody_policy::{Action, Approval, Decision, Outcome, Rule, TransactionLimit};
use rand_core::OsRng;
use sha3::Digest;

const PRIMES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../crates/custody-ecdsa/tests/data/paillier-primes.hex"
);
const CHAIN: u64 = 31_337;
const RECIPIENT: &str = "0x000000000000000000000000000000000000dEaD";
const OTHER: &str = "0x1111111111111111111111111111111111111111";

struct Fixture {
    _root: tempfile::TempDir,
    root: PathBuf,
    signers: Vec<Signer>,
    presign_plan: PathBuf,
    batch: String,
    address: String,
}

fn fixture() -> MutexGuard<'static, Fixture> {
    static FIXTURE: OnceLock<Mutex<Fixture>> = OnceLock::new();
    FIXTURE
        .get_or_init(|| Mutex::new(build_fixture()))
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

fn build_fixture() -> Fixture {
    // A static is never dropped: keep the shared homes under target/ rather than leak
    // them into the system temporary directory.
    let dir = tempfile::Builder::new()
        .prefix("eth-fixture-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("tempdir");
    let root = dir.path().to_owned();
    let signers: Vec<Signer> = ["alice", "bob", "carol"]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let s = Signer::new(&root, n);
            s.cmd(&["identity", "create", "--name", n])
                .assert()
                .success();
            s.cmd(&[
                "eth",
                "primes",
                "--import",
                PRIMES,
                "--line",
                &i.to_string(),
            ])
            .assert()
            .success()
            .stderr(predicates::str::contains("NOT safe for real funds"));
            s
        })
        .collect();
    let usb = root.join("usb-key");
    std::fs::create_dir(&usb).expect("usb");
    let key_plan = usb.join("key-plan.bin");
    let mut args = strings(&[
        "eth",
        "plan",
        "key",
        "--threshold",
        "2",
        "--purpose",
        "test ETH",
    ]);
    for s in &signers {
        args.extend(["--card".into(), s.card()]);
    }
    args.extend(["--out".into(), key_plan.display().to_string()]);
    signers[0]
        .cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .assert()
        .success();
    let jobs: Vec<(&Signer, Vec<String>)> = signers
        .iter()
        .map(|s| {
            (
                s,
                strings(&["eth", "keygen", "--plan", &key_plan.display().to_string()]),
            )
        })
        .collect();
    let outs = run_all(&jobs, &usb);
    assert_all_succeeded(&outs);
    let addresses: Vec<String> = outs
        .iter()
        .map(|o| {
            record(&lines(&o.stdout), "eth-keygen-complete")["address"]
                .as_str()
                .expect("address")
                .to_owned()
        })
        .collect();
    assert!(
        addresses.iter().all(|a| *a == addresses[0]),
        "{addresses:?}"
    );
    // No primes are left for a second ceremony.
    assert!(!signers[0].home.join("eth/primes.age").exists());

    let presign_plan = presign_plan(&root, &signers, "presign-plan.bin", 10);
    let usb = root.join("usb-presign");
    std::fs::create_dir(&usb).expect("usb");
    let outs = run_presign(&signers[..2], &presign_plan, &usb);
    assert_all_succeeded(&outs);
    let batch = record(&lines(&outs[0].stdout), "eth-presign-complete")["batch"]
        .as_str()
        .expect("batch")
        .to_owned();
    Fixture {
        _root: dir,
        root,
        signers,
        presign_plan,
        batch,
        address: addresses[0].clone(),
    }
}

fn presign_plan(root: &Path, signers: &[Signer], name: &str, count: u16) -> PathBuf {
    let plan = root.join(name);
    let group = signers[0].home.join("eth/group.key").display().to_string();
    let mut args = strings(&[
        "eth",
        "plan",
        "presign",
        "--group",
        &group,
        "--threshold",
        "2",
        "--signer",
        "alice",
        "--signer",
        "bob",
        "--count",
        &count.to_string(),
        "--purpose",
        "withdrawals",
    ]);
    for s in signers {
        args.extend(["--card".into(), s.card()]);
    }
    args.extend(["--out".into(), plan.display().to_string()]);
    signers[0]
        .cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .assert()
        .success();
    plan
}

fn run_presign(signers: &[Signer], plan: &Path, usb: &Path) -> Vec<std::process::Output> {
    let jobs: Vec<(&Signer, Vec<String>)> = signers
        .iter()
        .map(|s| {
            (
                s,
                strings(&["eth", "presign", "--plan", &plan.display().to_string()]),
            )
        })
        .collect();
    run_all(&jobs, usb)
}

fn transaction(to: &str, wei: u128, nonce: u64) -> EthTransaction {
    EthTransaction::eip1559(Eip1559Fields {
        chain_id: CHAIN,
        nonce,
        to: to.parse().expect("address"),
        value: U256::from(wei),
        gas_limit: 21_000,
        max_fee_per_gas: 20_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        input: Bytes::new(),
    })
    .expect("valid transaction")
}

/// Writes `request` as a UR text file `dir/NAME.ur`.
fn write_request(dir: &Path, name: &str, request: &EthSignRequest) -> PathBuf {
    std::fs::create_dir_all(dir).expect("dir");
    let path = dir.join(format!("{name}.ur"));
    std::fs::write(&path, format!("{}\n", request.to_ur())).expect("write request");
    path
}

fn request_for(tx: &EthTransaction, address: &str) -> EthSignRequest {
    EthSignRequest::for_transaction(
        tx,
        [7; 16],
        KeyPath::default(),
        Some(address.parse::<Address>().expect("address")),
        Some("test coordinator".into()),
    )
}

fn sign(s: &Signer, request: &Path, presignature: &str) -> assert_cmd::assert::Assert {
    s.cmd(&[
        "eth",
        "sign",
        "--request",
        &request.display().to_string(),
        "--presignature",
        presignature,
        "--insecure-without-policy",
        "--yes",
    ])
    .assert()
}

fn combine(f: &Fixture, request: &Path, partials: &[PathBuf]) -> assert_cmd::assert::Assert {
    let mut args = strings(&[
        "eth",
        "combine",
        "--request",
        &request.display().to_string(),
        "--plan",
        &f.presign_plan.display().to_string(),
    ]);
    for p in partials {
        args.extend(["--partial".into(), p.display().to_string()]);
    }
    f.signers[2]
        .cmd(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .assert()
}

fn unused_presignatures(s: &Signer) -> usize {
    record(&s.json(&["eth", "status"]), "eth-status")["presignatures"]
        .as_array()
        .expect("list")
        .len()
}

fn stderr(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

#[test]
fn a_two_of_three_withdrawal_is_signed_in_one_trip_and_recovers_to_the_group_address() {
    let f = fixture();
    // The address is keccak256 of the group key, computed here with k256 and sha3.
    let group = std::fs::read(f.signers[1].home.join("eth/group.key")).expect("group key");
    let key = k256::PublicKey::from_sec1_bytes(&group[6..]).expect("a secp256k1 point");
    let uncompressed = k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&key, false);
    let digest = sha3::Keccak256::digest(&uncompressed.as_bytes()[1..]);
    let expected = AlloyAddress::from_slice(&digest[12..]);
    assert_eq!(expected.to_checksum(None), f.address);
    let printed = f.signers[2].cmd(&["eth", "address"]).assert().success();
    assert_eq!(
        String::from_utf8_lossy(&printed.get_output().stdout).trim(),
        f.address
    );

    let dir = f.root.join("usb-w1");
    let tx = transaction(RECIPIENT, 250_000_000_000_000_000, 0);
    let request = write_request(&dir, "withdrawal-1", &request_for(&tx, &f.address));
    let id = format!("{}/0", f.batch);
    let before = unused_presignatures(&f.signers[0]);
    for s in &f.signers[..2] {
        sign(s, &request, &id)
            .success()
            .stdout(predicates::str::contains("0.25 ETH"))
            .stdout(predicates::str::contains(
                "0x000000000000000000000000000000000000dEaD",
            ));
    }
    assert_eq!(unused_presignatures(&f.signers[0]), before - 1);
    let partials: Vec<PathBuf> = ["alice", "bob"]
        .iter()
        .map(|n| dir.join(format!("withdrawal-1-{n}-part.ethsig")))
        .collect();
    combine(&f, &request, &partials).success();

    let raw = std::fs::read_to_string(dir.join("withdrawal-1-final.txn")).expect("final.txn");
    assert_eq!(raw.lines().count(), 1);
    let raw = raw.trim();
    assert!(raw.starts_with("0x02"), "an EIP-1559 transaction: {raw}");
    let bytes = hex::decode(&raw[2..]).expect("hex");
    let envelope = alloy_eips_decode(&bytes);
    assert_eq!(envelope.recover_signer().expect("recovers"), expected);
    let TxEnvelope::Eip1559(signed) = &envelope else {
        panic!("not EIP-1559")
    };
    assert_eq!(signed.tx().chain_id, CHAIN);
    assert_eq!(signed.tx().value, U256::from(250_000_000_000_000_000u128));
    // Independently with k256: the signature verifies under the group key and is low-s.
    let sig = k256::ecdsa::Signature::from_scalars(
        signed.signature().r().to_be_bytes::<32>(),
        signed.signature().s().to_be_bytes::<32>(),
    )
    .expect("scalars");
    assert!(sig.normalize_s().is_none(), "s is low");
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&group[6..]).expect("key");
    k256::ecdsa::signature::hazmat::PrehashVerifier::verify_prehash(
        &vk,
        signed.signature_hash().as_slice(),
        &sig,
    )
    .expect("verifies under the group key");
    let ur = std::fs::read_to_string(dir.join("withdrawal-1-signature.ur")).expect("ur");
    let answer = custody_ethereum::EthSignature::from_ur(ur.trim()).expect("eth-signature");
    assert_eq!(answer.request_id, [7; 16]);
}

fn alloy_eips_decode(bytes: &[u8]) -> TxEnvelope {
    let mut buf = bytes;
    <TxEnvelope as alloy_eips::eip2718::Decodable2718>::decode_2718(&mut buf).expect("decodes")
}

#[test]
fn a_reused_presignature_is_refused_and_nothing_is_written() {
    let f = fixture();
    let dir = f.root.join("usb-reuse");
    let id = format!("{}/1", f.batch);
    let first = write_request(
        &dir,
        "first",
        &request_for(&transaction(RECIPIENT, 1, 1), &f.address),
    );
    sign(&f.signers[0], &first, &id).success();
    let second = write_request(
        &dir,
        "second",
        &request_for(&transaction(OTHER, 2, 1), &f.address),
    );
    let refused = sign(&f.signers[0], &second, &id).code(1);
    assert!(
        stderr(&refused).contains("was already used; refusing to sign with it again"),
        "{}",
        stderr(&refused)
    );
    assert!(!dir.join("second-alice-part.ethsig").exists());
}

#[test]
fn fees_above_the_signers_limits_are_refused_and_no_presignature_is_spent() {
    let f = fixture();
    let carol = &f.signers[2];
    let dir = f.root.join("usb-fees");
    let before = unused_presignatures(carol);
    let greedy = EthTransaction::eip1559(Eip1559Fields {
        chain_id: CHAIN,
        nonce: 9,
        to: RECIPIENT.parse().expect("address"),
        value: U256::from(1u64),
        gas_limit: 21_000,
        max_fee_per_gas: 5_000_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        input: Bytes::new(),
    })
    .expect("valid transaction");
    let path = write_request(&dir, "greedy", &request_for(&greedy, &f.address));
    let refused = sign(carol, &path, &format!("{}/0", f.batch)).code(1);
    let err = stderr(&refused);
    assert!(
        err.contains("the fee per gas of 5000 gwei is above the limit of 1000 gwei"),
        "{err}"
    );
    assert!(err.contains("nothing was signed"), "{err}");
    let written: Vec<_> = std::fs::read_dir(&dir)
        .expect("usb")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| n.to_string_lossy().ends_with(".ethsig"))
        .collect();
    assert!(written.is_empty(), "no partial signature: {written:?}");
    assert_eq!(unused_presignatures(carol), before, "no presignature spent");
}

#[test]
fn a_request_whose_chain_id_differs_from_its_transaction_is_refused() {
    let f = fixture();
    let dir = f.root.join("usb-chain");
    let mut request = request_for(&transaction(RECIPIENT, 5, 2), &f.address);
    request.chain_id = Some(1);
    let path = write_request(&dir, "chain", &request);
    let before = unused_presignatures(&f.signers[0]);
    let refused = sign(&f.signers[0], &path, &format!("{}/2", f.batch)).code(1);
    assert!(
        stderr(&refused)
            .contains("the request says chain 1 but the transaction is for chain 31337"),
        "{}",
        stderr(&refused)
    );
    assert!(!dir.join("chain-alice-part.ethsig").exists());
    assert_eq!(
        unused_presignatures(&f.signers[0]),
        before,
        "no presignature spent"
    );
}

#[test]
fn a_signer_shown_another_recipient_and_value_is_named_when_combining() {
    let f = fixture();
    let dir = f.root.join("usb-tamper");
    let id = format!("{}/3", f.batch);
    let honest = request_for(&transaction(RECIPIENT, 1_000, 3), &f.address);
    let tampered = request_for(&transaction(OTHER, 9_000, 3), &f.address);
    let honest_path = write_request(&dir, "w", &honest);
    let tampered_dir = dir.join("bob");
    let tampered_path = write_request(&tampered_dir, "w", &tampered);
    sign(&f.signers[0], &honest_path, &id).success();
    sign(&f.signers[1], &tampered_path, &id).success();
    let partials = [
        dir.join("w-alice-part.ethsig"),
        tampered_dir.join("w-bob-part.ethsig"),
    ];
    let refused = combine(&f, &honest_path, &partials).code(1);
    let err = stderr(&refused);
    assert!(
        err.contains("#2 (bob) signed a different message hash"),
        "{err}"
    );
    assert!(!dir.join("w-final.txn").exists());
}

#[test]
fn a_message_from_another_execution_id_is_refused_naming_the_sender() {
    let f = fixture();
    let plan_a = presign_plan(&f.root, &f.signers, "exec-plan.bin", 1);
    // Same ceremony id, another purpose: every execution id differs.
    let plan = EcdsaPlan::decode(&std::fs::read(&plan_a).expect("plan")).expect("plan");
    let other = EcdsaPlan::new(
        *plan.ceremony_id(),
        plan.kind().clone(),
        "a different purpose",
        plan.threshold(),
        plan.participants().to_vec(),
    )
    .expect("plan");
    let plan_b = f.root.join("exec-plan-b.bin");
    std::fs::write(&plan_b, other.encode()).expect("write");
    let before = unused_presignatures(&f.signers[0]);
    let usb = f.root.join("usb-exec");
    std::fs::create_dir(&usb).expect("usb");
    let jobs = vec![
        (
            &f.signers[0],
            strings(&["eth", "presign", "--plan", &plan_a.display().to_string()]),
        ),
        (
            &f.signers[1],
            strings(&["eth", "presign", "--plan", &plan_b.display().to_string()]),
        ),
    ];
    let outs = run_all(&jobs, &usb);
    let alice_err = String::from_utf8_lossy(&outs[0].stderr);
    assert_eq!(outs[0].status.code(), Some(1), "{alice_err}");
    assert!(
        alice_err.contains("#2 (bob) was made for a different execution id"),
        "{alice_err}"
    );
    assert_eq!(
        unused_presignatures(&f.signers[0]),
        before,
        "nothing stored"
    );
}

#[test]
fn a_restored_backup_has_no_presignatures_and_must_presign_again() {
    let f = fixture();
    let alice = &f.signers[0];
    let backup = f.root.join("alice-eth.backup");
    let bpass = f.root.join("backup.pass");
    std::fs::write(&bpass, "backup passphrase\n").expect("write");
    alice
        .cmd(&[
            "eth",
            "backup",
            "export",
            "--out",
            &backup.display().to_string(),
            "--backup-passphrase-file",
            &bpass.display().to_string(),
        ])
        .assert()
        .success();
    assert!(unused_presignatures(alice) > 0);
    // A new laptop: the identity comes back (from the FROST share backup or identity.age),
    // the Ethereum share from its backup.
    let restored = Signer::new(&f.root, "alice-restored");
    std::fs::create_dir(&restored.home).expect("home");
    for file in ["identity.card", "identity.age"] {
        std::fs::copy(alice.home.join(file), restored.home.join(file)).expect("copy");
    }
    std::fs::copy(&alice.pass, &restored.pass).expect("pass");
    restored
        .cmd(&[
            "eth",
            "backup",
            "restore",
            "--file",
            &backup.display().to_string(),
            "--backup-passphrase-file",
            &bpass.display().to_string(),
        ])
        .assert()
        .success()
        .stdout(predicates::str::contains("no presignatures"));
    let shown = restored.cmd(&["eth", "address"]).assert().success();
    assert_eq!(
        String::from_utf8_lossy(&shown.get_output().stdout).trim(),
        f.address
    );
    assert_eq!(unused_presignatures(&restored), 0);
    let dir = f.root.join("usb-restored");
    let request = write_request(
        &dir,
        "r",
        &request_for(&transaction(RECIPIENT, 1, 4), &f.address),
    );
    let refused = restored
        .cmd(&[
            "eth",
            "sign",
            "--request",
            &request.display().to_string(),
            "--insecure-without-policy",
            "--yes",
        ])
        .assert()
        .code(1);
    assert!(
        stderr(&refused).contains("no unused presignatures"),
        "{}",
        stderr(&refused)
    );
    // Naming a presignature the original still holds does not help either.
    let refused = sign(&restored, &request, &format!("{}/5", f.batch)).code(1);
    assert!(
        stderr(&refused).contains("is not in this device's store"),
        "{}",
        stderr(&refused)
    );
    assert!(!dir.join("r-alice-part.ethsig").exists());
}

/// The other tests sign as bob without a policy: a test that installs one on bob
/// uninstalls it whatever happens.
struct Uninstall<'a>(&'a Path);

impl Drop for Uninstall<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.join("policies"));
        let _ = std::fs::remove_file(self.0.join("policy-admins.json"));
    }
}

/// A policy that allows up to 1 ETH to `RECIPIENT` with one approval, signed by the
/// authority and installed on `signer` (through a home named `name`); removed again when
/// the guard drops.
fn eth_policy_on<'a>(
    f: &Fixture,
    authority: &Authority,
    signer: &'a Signer,
    name: &str,
) -> (custody_policy::SignedPolicy, Uninstall<'a>) {
    let mut doc = authority.document(
        1,
        &Terms {
            whitelist: vec![RECIPIENT.into()],
            limit_sat: 0,
            approvals: 1,
        },
    );
    doc.limits = vec![TransactionLimit {
        asset: "ETH".into(),
        max_amount: 10u128.pow(18),
    }];
    doc.rules = vec![Rule {
        asset: "ETH".into(),
        min_amount: 0,
        max_amount: 10u128.pow(18),
        window: None,
        action: Action::Allow { approvals: 1 },
    }];
    let policy = authority.sign(doc, &[0, 1]);
    let home = f.root.join(name);
    std::fs::create_dir_all(&home).expect("dir");
    let guard = Uninstall(&signer.home);
    authority.install(&signer.args(), &home, &policy);
    (policy, guard)
}

/// A decision for `tx` approved by the first approver, written to `dir/name`.
fn approved_decision(
    authority: &Authority,
    policy: &custody_policy::SignedPolicy,
    tx: &EthTransaction,
    dir: &Path,
    name: &str,
) -> PathBuf {
    let mut d = Decision {
        policy_hash: policy.document().hash(),
        withdrawal_id: "void-1".into(),
        transaction_digest: tx.intent_digest().to_vec(),
        outcome: Outcome::Approved,
        hold_until: 0,
        approvals: Vec::new(),
        coordinator_signature: [0; 64],
    };
    let digest = d.withdrawal_digest();
    d.approvals
        .push(Approval::sign(&authority.approvers[0], &digest, &mut OsRng));
    d.sign(&authority.coordinator, &mut OsRng);
    std::fs::create_dir_all(dir).expect("dir");
    let path = dir.join(name);
    std::fs::write(&path, d.encode()).expect("write decision");
    path
}

/// A void (ADR 0031): 0 ETH to the wallet's own address with the nonce of the withdrawal it
/// replaces is an internal transfer and needs no whitelist entry; the same to another
/// address is a payment that does.
#[test]
fn a_zero_value_transfer_to_the_wallet_itself_is_signed_as_an_internal_transfer() {
    let f = fixture();
    let authority = Authority::new();
    let bob = &f.signers[1];
    let (policy, _uninstall) = eth_policy_on(&f, &authority, bob, "void-policy-home");
    let dir = f.root.join("usb-void");
    let sign_with = |request: &Path, decision: &Path, presignature: &str| {
        bob.cmd(&[
            "eth",
            "sign",
            "--request",
            &request.display().to_string(),
            "--presignature",
            presignature,
            "--decision",
            &decision.display().to_string(),
            "--yes",
        ])
        .assert()
    };

    // 0 ETH to an address that is not whitelisted: a payment, refused.
    let elsewhere = transaction(OTHER, 0, 6);
    let request = write_request(&dir, "elsewhere", &request_for(&elsewhere, &f.address));
    let decision = approved_decision(&authority, &policy, &elsewhere, &dir, "elsewhere.decision");
    let before = unused_presignatures(bob);
    let refused = sign_with(&request, &decision, &format!("{}/6", f.batch)).code(1);
    assert!(
        stderr(&refused).contains("is not on the whitelist"),
        "{}",
        stderr(&refused)
    );
    assert!(!dir.join("elsewhere-bob-part.ethsig").exists());
    assert_eq!(unused_presignatures(bob), before, "no presignature spent");

    // 0 ETH to the wallet itself: an internal transfer, signed.
    let void = transaction(&f.address, 0, 6);
    let request = write_request(&dir, "void", &request_for(&void, &f.address));
    let decision = approved_decision(&authority, &policy, &void, &dir, "void.decision");
    sign_with(&request, &decision, &format!("{}/6", f.batch))
        .success()
        .stdout(predicates::str::contains(format!(
            "to:              {} (this wallet itself)",
            f.address
        )))
        .stdout(predicates::str::contains(
            "action:          internal transfer: 0 ETH to this wallet itself (nonce 6)",
        ))
        .stdout(predicates::str::contains(
            "policy decision: internal transfer void-1 (ETH; nothing leaves the wallet but the gas) allowed under policy version 1",
        ))
        .stdout(predicates::str::contains("signed an internal transfer"));
    assert!(dir.join("void-bob-part.ethsig").exists());

    // In JSON too (the decision check runs before any presignature is touched).
    let refused = bob
        .cmd(&[
            "--json",
            "eth",
            "sign",
            "--request",
            &request.display().to_string(),
            "--presignature",
            &format!("{}/6", f.batch),
            "--decision",
            &decision.display().to_string(),
            "--yes",
        ])
        .assert()
        .code(1);
    let records = lines(&refused.get_output().stdout);
    assert_eq!(record(&records, "eth-summary")["internal_transfer"], true);
    assert_eq!(
        record(&records, "eth-summary")["action"]["kind"],
        "internal_transfer"
    );
    assert_eq!(
        record(&records, "policy-decision")["internal_transfer"],
        true
    );
    assert!(
        stderr(&refused).contains("already exists: this request was answered already"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn a_policy_decision_is_checked_against_the_transaction_shown() {
    let f = fixture();
    let authority = Authority::new();
    let bob = &f.signers[1];
    let (policy, _uninstall) = eth_policy_on(&f, &authority, bob, "policy-home");

    let dir = f.root.join("usb-policy");
    let tx = transaction(RECIPIENT, 1_000, 5);
    let request = write_request(&dir, "p", &request_for(&tx, &f.address));
    let decision_for = |tx: &EthTransaction, name: &str| {
        let mut d = Decision {
            policy_hash: policy.document().hash(),
            withdrawal_id: "eth-1".into(),
            transaction_digest: tx.intent_digest().to_vec(),
            outcome: Outcome::Approved,
            hold_until: 0,
            approvals: Vec::new(),
            coordinator_signature: [0; 64],
        };
        let digest = d.withdrawal_digest();
        d.approvals
            .push(Approval::sign(&authority.approvers[0], &digest, &mut OsRng));
        d.sign(&authority.coordinator, &mut OsRng);
        let path = dir.join(name);
        std::fs::write(&path, d.encode()).expect("write decision");
        path
    };
    let id = format!("{}/4", f.batch);
    let sign_with = |decision: &Path| {
        bob.cmd(&[
            "eth",
            "sign",
            "--request",
            &request.display().to_string(),
            "--presignature",
            &id,
            "--decision",
            &decision.display().to_string(),
            "--yes",
        ])
        .assert()
    };
    // With a policy installed, the insecure switch is refused.
    let refused = sign(bob, &request, &id).code(1);
    assert!(
        stderr(&refused).contains("a withdrawal policy is installed"),
        "{}",
        stderr(&refused)
    );
    // A decision for another transaction (the coordinator approved something else).
    let wrong = decision_for(&transaction(RECIPIENT, 2_000, 5), "wrong.decision");
    let refused = sign_with(&wrong).code(1);
    assert!(
        stderr(&refused).contains("out of policy"),
        "{}",
        stderr(&refused)
    );
    assert!(!dir.join("p-bob-part.ethsig").exists());
    // The right one.
    let right = decision_for(&tx, "right.decision");
    sign_with(&right)
        .success()
        .stdout(predicates::str::contains("allowed under policy version 1"));
    assert!(dir.join("p-bob-part.ethsig").exists());
}

/// The same approved withdrawal is signed at one nonce only: the coordinator picks the
/// nonce at signing time and the approvals bind the intent, so a second round at another
/// nonce would pay twice. Another round at the same nonce (higher fees) is signed.
#[test]
fn an_approved_withdrawal_is_signed_at_one_nonce_only() {
    let f = fixture();
    let authority = Authority::new();
    let bob = &f.signers[1];
    let (policy, _uninstall) = eth_policy_on(&f, &authority, bob, "twice-policy-home");
    let dir = f.root.join("usb-twice");
    std::fs::create_dir_all(&dir).expect("dir");
    // One approved withdrawal (its decision binds the intent: recipient and value).
    let first = transaction(RECIPIENT, 5_000, 9);
    let mut d = Decision {
        policy_hash: policy.document().hash(),
        withdrawal_id: "eth-twice".into(),
        transaction_digest: first.intent_digest().to_vec(),
        outcome: Outcome::Approved,
        hold_until: 0,
        approvals: Vec::new(),
        coordinator_signature: [0; 64],
    };
    let digest = d.withdrawal_digest();
    d.approvals
        .push(Approval::sign(&authority.approvers[0], &digest, &mut OsRng));
    d.sign(&authority.coordinator, &mut OsRng);
    let decision = dir.join("twice.decision");
    std::fs::write(&decision, d.encode()).expect("write decision");
    let sign_with = |request: &Path, presignature: u16| {
        bob.cmd(&[
            "eth",
            "sign",
            "--request",
            &request.display().to_string(),
            "--presignature",
            &format!("{}/{presignature}", f.batch),
            "--decision",
            &decision.display().to_string(),
            "--yes",
        ])
        .assert()
    };
    let request = write_request(&dir, "first", &request_for(&first, &f.address));
    sign_with(&request, 8).success();
    assert!(dir.join("first-bob-part.ethsig").exists());

    // The same withdrawal at the next nonce: refused before any presignature is spent.
    let again = transaction(RECIPIENT, 5_000, 10);
    assert_eq!(again.intent_digest(), first.intent_digest(), "same intent");
    let request = write_request(&dir, "again", &request_for(&again, &f.address));
    let before = unused_presignatures(bob);
    let refused = sign_with(&request, 9).code(1);
    let why = stderr(&refused);
    assert!(
        why.contains("withdrawal eth-twice was signed by this signer before, at nonce 9")
            && why.contains("would pay it a second time"),
        "{why}"
    );
    assert!(!dir.join("again-bob-part.ethsig").exists());
    assert_eq!(unused_presignatures(bob), before, "no presignature spent");

    // At the same nonce with higher fees (only one of the two can be mined): signed.
    let bumped = EthTransaction::eip1559(custody_ethereum::Eip1559Fields {
        chain_id: CHAIN,
        nonce: 9,
        to: RECIPIENT.parse().expect("address"),
        value: U256::from(5_000u64),
        gas_limit: 21_000,
        max_fee_per_gas: 30_000_000_000,
        max_priority_fee_per_gas: 2_000_000_000,
        input: Bytes::new(),
    })
    .expect("valid transaction");
    let request = write_request(&dir, "bumped", &request_for(&bumped, &f.address));
    sign_with(&request, 9).success();
    assert!(dir.join("bumped-bob-part.ethsig").exists());
}
