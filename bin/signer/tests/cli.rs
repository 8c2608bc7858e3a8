//! The signer as a user runs it: scenarios checking stdout, stderr and exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use assert_cmd::Command;
use bitcoin::psbt::Psbt;
use bitcoin::{Amount, FeeRate};
use custody_airgap::envelope::{Envelope, EnvelopeType, MemoryReplayGuard, Receiver};
use custody_airgap::file::{detect_psbt, encode_psbt, list_complete, read_bounded, PsbtEncoding};
use custody_bitcoin::{
    absorb_response, aggregate_psbt, build_psbt, extract_verified, finalize_psbt,
    request_signatures, Branch, BuildOptions, InspectPolicy, Payment, WalletDescriptor, WalletUtxo,
};
use custody_threshold::{CommitmentBatch, CommitmentPool, GroupKey, IdentityCard};
use predicates::prelude::*;
use serde_json::Value;

mod common;
use common::policy::{Authority, Terms};

const PASS: &str = "correct horse battery staple\n";

struct Signer {
    home: PathBuf,
    pass: PathBuf,
}

impl Signer {
    fn new(root: &Path, name: &str) -> Self {
        let pass = root.join(format!("{name}.pass"));
        std::fs::write(&pass, PASS).expect("write passphrase");
        Signer {
            home: root.join(name),
            pass,
        }
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--home".into(),
            self.home.display().to_string(),
            "--passphrase-file".into(),
            self.pass.display().to_string(),
            "--scrypt-log-n".into(),
            "10".into(),
        ]
    }

    fn cmd(&self, extra: &[&str]) -> Command {
        let mut c = Command::cargo_bin("custody-signer").expect("binary");
        c.args(self.args()).args(extra);
        c
    }

    fn json(&self, extra: &[&str]) -> Vec<Value> {
        let out = self.cmd(&[&["--json"], extra].concat()).assert().success();
        lines(&out.get_output().stdout)
    }
}

fn lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("every stdout line is JSON"))
        .collect()
}

fn record<'a>(records: &'a [Value], kind: &str) -> &'a Value {
    &records
        .iter()
        .find(|r| r["type"] == kind)
        .unwrap_or_else(|| panic!("a {kind} record in {records:?}"))["data"]
}

#[test]
fn identity_create_then_show_prints_the_card_and_fingerprint() {
    let dir = tempfile::tempdir().expect("dir");
    let alice = Signer::new(dir.path(), "alice");
    let created = alice.json(&["identity", "create", "--name", "alice"]);
    let data = record(&created, "identity");
    let fp = data["fingerprint"].as_str().expect("fingerprint");
    assert_eq!(fp.len(), 24, "XXXX-XXXX-XXXX-XXXX-XXXX");
    assert!(alice.home.join("identity.card").is_file());
    assert_eq!(
        data["card"],
        alice.home.join("identity.card").display().to_string()
    );

    alice
        .cmd(&["identity", "show"])
        .assert()
        .success()
        .stdout(predicate::str::contains(fp).and(predicate::str::contains("identity.card")))
        .stderr("");
}

#[test]
fn a_second_identity_in_the_same_home_is_an_error() {
    let dir = tempfile::tempdir().expect("dir");
    let alice = Signer::new(dir.path(), "alice");
    alice
        .cmd(&["identity", "create", "--name", "alice"])
        .assert()
        .success();
    alice
        .cmd(&["identity", "create", "--name", "mallory"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains(
            "already holds an identity; use another --home",
        ));
}

#[test]
fn identity_show_without_an_identity_says_how_to_create_one() {
    let dir = tempfile::tempdir().expect("dir");
    let nobody = Signer::new(dir.path(), "nobody");
    nobody
        .cmd(&["identity", "show"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(
            predicate::str::starts_with("error: ")
                .and(predicate::str::contains("identity create --name NAME")),
        );
}

#[test]
fn a_passphrase_is_never_read_from_a_pipe_without_a_file() {
    let dir = tempfile::tempdir().expect("dir");
    Command::cargo_bin("custody-signer")
        .expect("binary")
        .args([
            "--home",
            &dir.path().join("x").display().to_string(),
            "identity",
            "create",
            "--name",
            "x",
        ])
        .write_stdin("secret\n")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--passphrase-file"));
    assert!(!dir.path().join("x").join("identity.card").exists());
}

fn three_signers(root: &Path) -> (Vec<Signer>, PathBuf) {
    let signers: Vec<Signer> = ["alice", "bob", "carol"]
        .iter()
        .map(|n| {
            let s = Signer::new(root, n);
            s.cmd(&["identity", "create", "--name", n])
                .assert()
                .success();
            s
        })
        .collect();
    let plan = root.join("plan.bin");
    let mut args = vec![
        "plan",
        "create",
        "--threshold",
        "2",
        "--network",
        "regtest",
        "--purpose",
        "test cold wallet",
    ];
    let cards: Vec<String> = signers
        .iter()
        .map(|s| s.home.join("identity.card").display().to_string())
        .collect();
    for c in &cards {
        args.extend(["--card", c.as_str()]);
    }
    let plan_s = plan.display().to_string();
    args.extend(["--out", plan_s.as_str()]);
    let records = signers[0].json(&args);
    let data = record(&records, "plan");
    assert_eq!(data["threshold"], 2);
    assert_eq!(data["network"], "regtest");
    assert_eq!(data["participants"].as_array().map(Vec::len), Some(3));
    (signers, plan)
}

/// Runs `dkg join` for every signer at once, each in its own process.
fn join_all(signers: &[Signer], plan: &Path, usb: &Path) -> Vec<std::process::Output> {
    let bin = assert_cmd::cargo::cargo_bin("custody-signer");
    let children: Vec<_> = signers
        .iter()
        .map(|s| {
            Process::new(&bin)
                .args(s.args())
                .args(["--json", "dkg", "join", "--plan"])
                .arg(plan)
                .arg("--usb")
                .arg(usb)
                .args(["--timeout-secs", "120", "--poll-ms", "50"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait"))
        .collect()
}

/// Three signers after a successful 2-of-3 DKG, and the USB directory it ran in.
fn after_dkg(root: &Path) -> (Vec<Signer>, PathBuf) {
    let (signers, plan) = three_signers(root);
    let usb = root.join("usb");
    std::fs::create_dir(&usb).expect("usb");
    for out in join_all(&signers, &plan, &usb) {
        assert_eq!(
            out.status.code(),
            Some(0),
            "stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (signers, usb)
}

#[test]
fn three_signers_run_a_2_of_3_dkg_over_one_usb_directory_and_agree_on_the_wallet() {
    let dir = tempfile::tempdir().expect("dir");
    let (signers, plan) = three_signers(dir.path());
    let usb = dir.path().join("usb");
    std::fs::create_dir(&usb).expect("usb");
    let outputs = join_all(&signers, &plan, &usb);
    let mut xpubs = Vec::new();
    let mut transcripts = Vec::new();
    for out in outputs {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
        let records = lines(&out.stdout);
        assert_eq!(record(&records, "plan")["purpose"], "test cold wallet");
        let done = record(&records, "dkg-complete");
        xpubs.push(done["group_xpub"].as_str().expect("xpub").to_owned());
        transcripts.push(done["transcript_hash"].as_str().expect("hash").to_owned());
        assert!(
            stderr.contains("DKG certificate: received from everyone"),
            "{stderr}"
        );
    }
    assert!(xpubs.iter().all(|x| x == &xpubs[0]), "{xpubs:?}");
    assert!(
        transcripts.iter().all(|t| t == &transcripts[0]),
        "{transcripts:?}"
    );
    assert!(xpubs[0].starts_with("tpub"));

    // Every signer derives the same watch-only wallet.
    let wallets: Vec<Value> = signers
        .iter()
        .map(|s| record(&s.json(&["wallet", "show", "--count", "3"]), "wallet").clone())
        .collect();
    assert!(wallets.iter().all(|w| w == &wallets[0]));
    let w = &wallets[0];
    assert_eq!(w["group_xpub"], xpubs[0].as_str());
    assert!(w["descriptor"]
        .as_str()
        .expect("descriptor")
        .starts_with("tr(["));
    assert!(w["descriptor"].as_str().expect("descriptor").contains("#"));
    let addresses = w["receive_addresses"].as_array().expect("addresses");
    assert_eq!(addresses.len(), 3);
    assert!(addresses[0]["address"]
        .as_str()
        .expect("address")
        .starts_with("bcrt1p"));

    // Status shows the share, group and the (empty) nonce journal.
    let status = record(&signers[1].json(&["status"]), "status").clone();
    assert_eq!(status["key_share"], true);
    assert_eq!(status["group_xpub"], xpubs[0].as_str());
    assert_eq!(status["nonces"]["issued"], 0);

    // A second DKG into the same home is refused before anything is written.
    signers[0]
        .cmd(&[
            "dkg",
            "join",
            "--plan",
            &plan.display().to_string(),
            "--usb",
            &usb.display().to_string(),
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already holds a key share"));
}

#[test]
fn a_signer_not_in_the_plan_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let (_signers, plan) = three_signers(dir.path());
    let mallory = Signer::new(dir.path(), "mallory");
    mallory
        .cmd(&["identity", "create", "--name", "mallory"])
        .assert()
        .success();
    let usb = tempfile::tempdir().expect("usb");
    mallory
        .cmd(&[
            "dkg",
            "join",
            "--plan",
            &plan.display().to_string(),
            "--usb",
            &usb.path().display().to_string(),
        ])
        .assert()
        .code(1)
        .stdout("")
        .stderr(
            predicate::str::starts_with("refused: ")
                .and(predicate::str::contains("not a participant in the plan")),
        );
    assert_eq!(
        std::fs::read_dir(usb.path()).expect("dir").count(),
        0,
        "nothing written"
    );
}

#[test]
fn a_lone_participant_times_out_and_names_who_is_missing() {
    let dir = tempfile::tempdir().expect("dir");
    let (signers, plan) = three_signers(dir.path());
    let usb = tempfile::tempdir().expect("usb");
    signers[0]
        .cmd(&[
            "dkg",
            "join",
            "--plan",
            &plan.display().to_string(),
            "--usb",
            &usb.path().display().to_string(),
            "--timeout-secs",
            "1",
            "--poll-ms",
            "100",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "timed out waiting for DKG round 1 messages from bob, carol",
        ));
    assert!(!signers[0].home.join("keystore").exists());
}

#[test]
fn wallet_show_before_the_dkg_says_to_run_it() {
    let dir = tempfile::tempdir().expect("dir");
    let alice = Signer::new(dir.path(), "alice");
    alice
        .cmd(&["identity", "create", "--name", "alice"])
        .assert()
        .success();
    alice
        .cmd(&["wallet", "show"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("dkg join"));
    alice
        .cmd(&["status"])
        .assert()
        .success()
        .stdout(predicate::str::contains("key share: no"));
}

/// Opens every commitment envelope in `dir` from `card`, as the coordinator would.
fn read_batches(dir: &Path, card: &IdentityCard, group: &GroupKey) -> Vec<CommitmentBatch> {
    let trusted = [card.clone()];
    let mut receiver = Receiver::new(
        custody_signer::commitments::commitment_session_id(group),
        &trusted,
        None,
        MemoryReplayGuard::default(),
    );
    let mut batches = Vec::new();
    for path in list_complete(dir).expect("list") {
        let name = path.file_name().and_then(|n| n.to_str()).expect("name");
        if !name.contains("-commitments-from-") {
            continue;
        }
        let bytes = read_bounded(&path).expect("read");
        if Envelope::decode(&bytes).expect("envelope").header().sender != *card.signing_key() {
            continue;
        }
        let opened = receiver
            .open(&bytes, Some(EnvelopeType::CommitmentBatch), now())
            .expect("a valid envelope from the trusted card");
        batches.push(CommitmentBatch::decode(&opened.payload).expect("a commitment batch"));
    }
    batches
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn card_of(s: &Signer) -> IdentityCard {
    IdentityCard::decode(&std::fs::read(s.home.join("identity.card")).expect("card")).expect("card")
}

fn group_of(s: &Signer) -> GroupKey {
    GroupKey::decode(&std::fs::read(s.home.join("group.key")).expect("group")).expect("group")
}

#[test]
fn after_the_dkg_each_signer_issues_signed_commitment_batches_with_fresh_counters() {
    let dir = tempfile::tempdir().expect("dir");
    let (signers, _) = after_dkg(dir.path());
    let usb = dir.path().join("commitments");
    std::fs::create_dir(&usb).expect("usb");
    let usb_s = usb.display().to_string();
    let group = group_of(&signers[0]);

    for s in &signers {
        s.cmd(&["commitments", "issue", "--count", "3", "--usb", &usb_s])
            .assert()
            .success()
            .stdout(
                predicate::str::contains("issued 3 commitments, counters 0 to 2")
                    .and(predicate::str::contains("-commitments-from-")),
            )
            .stderr("");
    }
    // Issuing again gives fresh counters, in a new file.
    let again = signers[0].json(&["commitments", "issue", "--count", "2", "--usb", &usb_s]);
    let data = record(&again, "commitments");
    assert_eq!(data["count"], 2);
    assert_eq!(data["first_counter"], 3);
    assert_eq!(data["last_counter"], 4);
    assert_eq!(data["signer"], 1);
    assert!(std::path::Path::new(data["file"].as_str().expect("file")).is_file());
    assert_eq!(
        data["session_id"],
        hex::encode(custody_signer::commitments::commitment_session_id(&group))
    );

    for (i, s) in signers.iter().enumerate() {
        let batches = read_batches(&usb, &card_of(s), &group);
        assert_eq!(
            batches.len(),
            if i == 0 { 2 } else { 1 },
            "{}",
            s.home.display()
        );
        let mut counters = Vec::new();
        for b in &batches {
            assert_eq!(b.group_key, group.public_key());
            assert_eq!(usize::from(b.signer), i + 1);
            counters.extend(b.commitments.iter().map(|(id, _)| id.counter));
        }
        counters.sort_unstable();
        let expected: Vec<u64> = (0..if i == 0 { 5 } else { 3 }).collect();
        assert_eq!(counters, expected);
    }
    // The journal counts them.
    let status = record(&signers[0].json(&["status"]), "status").clone();
    assert_eq!(status["nonces"]["issued"], 5);
    assert_eq!(status["nonces"]["available"], 5);

    // Bad counts are errors, before anything is issued.
    signers[1]
        .cmd(&["commitments", "issue", "--count", "0", "--usb", &usb_s])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains("issue 1 to 1000 commitments"));
}

#[test]
fn commitments_before_the_dkg_say_to_run_it() {
    let dir = tempfile::tempdir().expect("dir");
    let alice = Signer::new(dir.path(), "alice");
    alice
        .cmd(&["identity", "create", "--name", "alice"])
        .assert()
        .success();
    let usb = dir.path().display().to_string();
    alice
        .cmd(&["commitments", "issue", "--count", "1", "--usb", &usb])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains("dkg join"));
}

#[test]
fn identity_show_words_reads_the_fingerprint_as_eight_wordlist_words() {
    let dir = tempfile::tempdir().expect("dir");
    let alice = Signer::new(dir.path(), "alice");
    alice
        .cmd(&["identity", "create", "--name", "alice"])
        .assert()
        .success();
    let data = record(&alice.json(&["identity", "show", "--words"]), "identity").clone();
    let fp = data["fingerprint"].as_str().expect("fingerprint");
    let words: Vec<&str> = data["fingerprint_words"]
        .as_array()
        .expect("words")
        .iter()
        .map(|w| w.as_str().expect("word"))
        .collect();
    assert_eq!(words.len(), 8);
    // Decode: 11 bits per word, the first 80 are the fingerprint, the last 8 are zero.
    let list = bip39::Language::English.word_list();
    let mut value = 0u128;
    for w in &words {
        let i = list.iter().position(|x| x == w).expect("a wordlist word");
        value = (value << 11) | i as u128;
    }
    assert_eq!(value & 0xff, 0, "padding");
    assert_eq!(
        format!("{:020X}", value >> 8),
        fp.replace('-', ""),
        "the words encode the fingerprint"
    );

    alice
        .cmd(&["identity", "show", "--words"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains(fp).and(predicate::str::contains(format!(
                "fingerprint words: {}",
                words.join(" ")
            ))),
        )
        .stderr("");
    // Without --words, no words.
    alice
        .cmd(&["identity", "show"])
        .assert()
        .success()
        .stdout(predicate::str::contains("fingerprint words").not());
}

/// A transaction from outside paying 0.5 and 0.3 BTC to receive addresses 0 and 1.
fn fund(wallet: &WalletDescriptor) -> Vec<WalletUtxo> {
    use bitcoin::{absolute::LockTime, transaction::Version, OutPoint, Sequence, TxIn, TxOut};
    let coins = [(0u32, 50_000_000u64), (1, 30_000_000)];
    let tx = bitcoin::Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: bitcoin::Txid::from_raw_hash(bitcoin::hashes::Hash::from_byte_array([7; 32])),
                vout: 0,
            },
            script_sig: bitcoin::ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: bitcoin::Witness::new(),
        }],
        output: coins
            .iter()
            .map(|(i, sat)| TxOut {
                value: Amount::from_sat(*sat),
                script_pubkey: wallet
                    .address(Branch::Receive, *i)
                    .expect("derive")
                    .script_pubkey(),
            })
            .collect(),
    };
    let txid = tx.compute_txid();
    coins
        .iter()
        .enumerate()
        .map(|(vout, (i, _))| WalletUtxo {
            outpoint: OutPoint {
                txid,
                vout: vout as u32,
            },
            txout: tx.output[vout].clone(),
            branch: Branch::Receive,
            index: *i,
            prev_tx: None,
        })
        .collect()
}

/// A P2WPKH address outside the wallet.
fn external_address() -> bitcoin::Address {
    let secp = bitcoin::secp256k1::Secp256k1::new();
    let sk = bitcoin::secp256k1::SecretKey::from_slice(&[9; 32]).expect("key");
    bitcoin::Address::p2wpkh(
        &bitcoin::CompressedPublicKey(sk.public_key(&secp)),
        bitcoin::Network::Regtest,
    )
}

#[test]
fn two_signers_answer_a_psbt_request_and_the_coordinator_finalizes_it() {
    let dir = tempfile::tempdir().expect("dir");
    let (signers, _) = after_dkg(dir.path());
    let usb = dir.path().join("sign");
    std::fs::create_dir(&usb).expect("usb");
    let usb_s = usb.display().to_string();
    let group = group_of(&signers[0]);
    let (alice, carol) = (&signers[0], &signers[2]);

    // The signers issue commitments; the coordinator pools them.
    let mut pool = CommitmentPool::new(&group);
    for s in [alice, carol] {
        s.cmd(&["commitments", "issue", "--count", "4", "--usb", &usb_s])
            .assert()
            .success();
        for batch in read_batches(&usb, &card_of(s), &group) {
            pool.add_batch(&batch).expect("same group");
        }
    }

    // The coordinator builds a withdrawal of 0.6 BTC and the signing request.
    let wallet = WalletDescriptor::for_group(&group, None).expect("descriptor");
    let destination = external_address();
    let payment = Payment {
        address: destination.clone(),
        amount: Amount::from_sat(60_000_000),
    };
    let options = BuildOptions::new(FeeRate::from_sat_per_vb_u32(10), 0);
    let mut psbt = build_psbt(&wallet, &fund(&wallet), &[payment], &options).expect("build");
    let policy = InspectPolicy::default();
    request_signatures(
        &wallet,
        &group,
        &mut psbt,
        &[1, 3],
        &mut pool,
        [5; 16],
        &policy,
    )
    .expect("request");
    // The admins' policy whitelists the destination; two approvers and the coordinator
    // sign the decision; each signer pins the admins and installs the policy.
    let authority = Authority::new();
    let signed_policy = authority.sign(
        authority.document(
            1,
            &Terms {
                whitelist: vec![destination.to_string()],
                limit_sat: 100_000_000,
                approvals: 1,
            },
        ),
        &[0, 1],
    );
    for s in [alice, carol] {
        authority.install(&s.args(), dir.path(), &signed_policy);
    }
    let decision = authority.decision(&signed_policy, &psbt, &[0], 0);
    Authority::attach(&mut psbt, &decision);
    let request = usb.join("withdraw.psbt");
    std::fs::write(
        &request,
        encode_psbt(&psbt.serialize(), PsbtEncoding::Base64),
    )
    .expect("write request");
    let request_s = request.display().to_string();

    // Without --yes and without a terminal, nothing is signed.
    alice
        .cmd(&["sign", "--request", &request_s])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("pass --yes"));
    assert!(!usb.join("withdraw-alice-part.psbt").exists());

    let mut answers = Vec::new();
    for s in [alice, carol] {
        let out = s
            .cmd(&["sign", "--request", &request_s, "--usb", &usb_s, "--yes"])
            .assert()
            .success()
            .stdout(
                predicate::str::contains("Sending 0.60000000 BTC out of the wallet")
                    .and(predicate::str::contains(format!(
                        "to {destination}  [EXTERNAL]"
                    )))
                    .and(predicate::str::contains("[ours: change/0 (proved)]"))
                    .and(predicate::str::contains(
                        "policy decision: withdrawal w-1 allowed under policy version 1",
                    ))
                    .and(predicate::str::contains("signed 2 inputs of")),
            )
            .stderr("");
        let name = format!(
            "withdraw-{}-part.psbt",
            s.home.file_name().and_then(|n| n.to_str()).expect("name")
        );
        assert!(
            String::from_utf8_lossy(&out.get_output().stdout).contains(&name),
            "names the answer file"
        );
        let bytes = std::fs::read(usb.join(&name)).expect("the answer file");
        let (raw, encoding) = detect_psbt(&bytes).expect("a PSBT");
        assert_eq!(
            encoding,
            PsbtEncoding::Base64,
            "answered in the request's encoding"
        );
        answers.push(Psbt::deserialize(&raw).expect("parses"));
    }

    // Signing the same request again is refused: its nonces are spent.
    carol
        .cmd(&["sign", "--request", &request_s, "--yes"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::starts_with("refused: ").and(predicate::str::contains("already used")),
        );

    // The coordinator aggregates, finalizes and libbitcoinconsensus accepts.
    for a in &answers {
        assert_eq!(absorb_response(&mut psbt, a).expect("absorb"), 1);
    }
    aggregate_psbt(&wallet, &group, &mut psbt, &policy).expect("aggregate");
    finalize_psbt(&mut psbt).expect("finalize");
    let tx = extract_verified(&psbt).expect("libbitcoinconsensus accepts every input");
    assert_eq!(tx.output[0].script_pubkey, destination.script_pubkey());
    assert_eq!(tx.output[0].value, Amount::from_sat(60_000_000));
}

#[test]
fn a_request_whose_item_does_not_match_the_psbt_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let (signers, _) = after_dkg(dir.path());
    let usb = dir.path().join("sign");
    std::fs::create_dir(&usb).expect("usb");
    let usb_s = usb.display().to_string();
    let group = group_of(&signers[0]);
    let mut pool = CommitmentPool::new(&group);
    for s in &signers[..2] {
        s.cmd(&["commitments", "issue", "--count", "2", "--usb", &usb_s])
            .assert()
            .success();
        for batch in read_batches(&usb, &card_of(s), &group) {
            pool.add_batch(&batch).expect("same group");
        }
    }
    let wallet = WalletDescriptor::for_group(&group, None).expect("descriptor");
    let payment = Payment {
        address: external_address(),
        amount: Amount::from_sat(10_000_000),
    };
    let options = BuildOptions::new(FeeRate::from_sat_per_vb_u32(10), 0);
    let utxos = fund(&wallet);
    let mut psbt = build_psbt(&wallet, &utxos[..1], &[payment], &options).expect("build");
    let policy = InspectPolicy::default();
    request_signatures(
        &wallet,
        &group,
        &mut psbt,
        &[1, 2],
        &mut pool,
        [6; 16],
        &policy,
    )
    .expect("request");
    // The coordinator swaps the output amount after building the request.
    psbt.unsigned_tx.output[0].value = Amount::from_sat(9_990_000);
    let request = usb.join("tampered.psbt");
    std::fs::write(&request, psbt.serialize()).expect("write");
    signers[0]
        .cmd(&["sign", "--request", &request.display().to_string(), "--yes"])
        .assert()
        .code(1)
        .stdout("")
        .stderr(
            predicate::str::starts_with("refused: ")
                .and(predicate::str::contains("sighash that differs")),
        );
    assert!(!usb.join("tampered-alice-part.psbt").exists());
}

/// After a DKG: alice and carol issue commitments and the coordinator writes a request
/// paying 0.6 BTC to an external address as `usb/NAME.psbt` (base64).
fn a_request(dir: &Path, name: &str) -> (Vec<Signer>, PathBuf, PathBuf) {
    let (signers, _) = after_dkg(dir);
    let usb = dir.join("sign");
    std::fs::create_dir(&usb).expect("usb");
    let usb_s = usb.display().to_string();
    let group = group_of(&signers[0]);
    let mut pool = CommitmentPool::new(&group);
    for s in [&signers[0], &signers[2]] {
        s.cmd(&["commitments", "issue", "--count", "4", "--usb", &usb_s])
            .assert()
            .success();
        for batch in read_batches(&usb, &card_of(s), &group) {
            pool.add_batch(&batch).expect("same group");
        }
    }
    let wallet = WalletDescriptor::for_group(&group, None).expect("descriptor");
    let payment = Payment {
        address: external_address(),
        amount: Amount::from_sat(60_000_000),
    };
    let options = BuildOptions::new(FeeRate::from_sat_per_vb_u32(10), 0);
    let mut psbt = build_psbt(&wallet, &fund(&wallet), &[payment], &options).expect("build");
    request_signatures(
        &wallet,
        &group,
        &mut psbt,
        &[1, 3],
        &mut pool,
        [8; 16],
        &InspectPolicy::default(),
    )
    .expect("request");
    let authority = Authority::new();
    let signed_policy = authority.sign(
        authority.document(
            1,
            &Terms {
                whitelist: vec![external_address().to_string()],
                limit_sat: 100_000_000,
                approvals: 1,
            },
        ),
        &[0, 1],
    );
    let policy_dir = dir.join("policy");
    std::fs::create_dir(&policy_dir).expect("policy dir");
    for s in &signers {
        authority.install(&s.args(), &policy_dir, &signed_policy);
    }
    let decision = authority.decision(&signed_policy, &psbt, &[1], 0);
    Authority::attach(&mut psbt, &decision);
    let request = usb.join(format!("{name}.psbt"));
    std::fs::write(
        &request,
        encode_psbt(&psbt.serialize(), PsbtEncoding::Base64),
    )
    .expect("write request");
    (signers, usb, request)
}

#[test]
fn inspect_shows_the_summary_and_signs_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let (signers, usb, request) = a_request(dir.path(), "withdraw");
    let request_s = request.display().to_string();
    let before = std::fs::read_dir(&usb).expect("dir").count();
    signers[0]
        .cmd(&["inspect", "--request", &request_s])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("Sending 0.60000000 BTC out of the wallet")
                .and(predicate::str::contains(format!(
                    "to {}  [EXTERNAL]",
                    external_address()
                )))
                .and(predicate::str::contains("[ours: change/0 (proved)]"))
                .and(predicate::str::contains("nothing was signed")),
        )
        .stderr("");
    let records = signers[0].json(&["inspect", "--request", &request_s]);
    let inspection = record(&records, "inspection");
    assert_eq!(inspection["sent_sat"], 60_000_000);
    assert_eq!(record(&records, "request")["inputs_to_sign"], 2);
    assert_eq!(
        record(&records, "request")["signers"],
        serde_json::json!([1, 3])
    );
    assert_eq!(
        std::fs::read_dir(&usb).expect("dir").count(),
        before,
        "no answer file"
    );
    // inspect needs no passphrase: it works without one, even in a pipe.
    Command::cargo_bin("custody-signer")
        .expect("binary")
        .args(["--home", &signers[0].home.display().to_string()])
        .args(["inspect", "--request", &request_s])
        .assert()
        .success();
}

/// Runs `sign` without `--yes` under a pseudo-terminal (util-linux `script`), typing
/// `answer`; returns the exit code and everything the terminal showed.
fn sign_on_a_terminal(signer: &Signer, request: &Path, answer: &str) -> (Option<i32>, String) {
    use std::io::Write;
    let bin = assert_cmd::cargo::cargo_bin("custody-signer");
    let mut words: Vec<String> = vec![bin.display().to_string()];
    words.extend(signer.args());
    words.extend([
        "sign".into(),
        "--request".into(),
        request.display().to_string(),
    ]);
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let mut child = Process::new("script")
        .args(["-q", "-e", "-c", &quoted.join(" "), "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux script");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{answer}\n").as_bytes())
        .expect("type the answer");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn sign_on_a_terminal_signs_only_after_yes() {
    let dir = tempfile::tempdir().expect("dir");
    let (signers, usb, request) = a_request(dir.path(), "tty");
    let alice = &signers[0];
    let (code, screen) = sign_on_a_terminal(alice, &request, "no");
    assert_eq!(code, Some(1), "{screen}");
    assert!(
        screen.contains("Sign this transaction? Type yes to sign"),
        "{screen}"
    );
    assert!(
        screen.contains("you declined; nothing was signed"),
        "{screen}"
    );
    assert!(!usb.join("tty-alice-part.psbt").exists());

    let (code, screen) = sign_on_a_terminal(alice, &request, "yes");
    assert_eq!(code, Some(0), "{screen}");
    assert!(screen.contains("signed 2 inputs of"), "{screen}");
    assert!(usb.join("tty-alice-part.psbt").is_file());
}

#[test]
fn a_request_travels_by_qr_and_the_answer_comes_back_as_qr_frames() {
    use custody_airgap::qr::{encode_ur, render_png, Collector, Decoded, Profile, UrKind};
    let dir = tempfile::tempdir().expect("dir");
    let (signers, usb, request) = a_request(dir.path(), "paper");
    let bytes = std::fs::read(&request).expect("request");
    let (raw, _) = detect_psbt(&bytes).expect("psbt");

    // The coordinator shows the request as UR frames; the scanner types them as lines.
    let mut encoder = encode_ur(UrKind::CryptoPsbt, &raw, Profile::Low).expect("encode");
    let n = encoder.fragment_count();
    assert!(n > 1, "a multi-part request");
    let mut lines_in: Vec<String> = encoder.next_parts(n + 2);
    lines_in.reverse(); // any order
    let inspected = signers[0]
        .cmd(&["--json", "inspect", "--qr-lines", "-"])
        .write_stdin(lines_in.join("\n"))
        .assert()
        .success();
    let records = lines(&inspected.get_output().stdout);
    assert_eq!(record(&records, "inspection")["sent_sat"], 60_000_000);

    // A camera caught only the first frame: incomplete, nothing signed.
    signers[0]
        .cmd(&["inspect", "--qr-lines", "-"])
        .write_stdin(lines_in[0].clone())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("the QR frames are incomplete"));

    // As PNG images, signed with the answer written as PNG frames and a GIF.
    let frames_dir = dir.path().join("frames");
    std::fs::create_dir(&frames_dir).expect("frames");
    let mut images = Vec::new();
    let mut fresh = encode_ur(UrKind::CryptoPsbt, &raw, Profile::Low).expect("encode");
    for (i, frame) in fresh.next_parts(n).iter().enumerate() {
        let path = frames_dir.join(format!("in-{i:03}.png"));
        std::fs::write(&path, render_png(frame, 4).expect("png")).expect("write");
        images.push(path.display().to_string());
    }
    let answers = dir.path().join("answers");
    std::fs::create_dir(&answers).expect("answers");
    let mut args: Vec<&str> = vec!["--json", "sign", "--yes", "--usb"];
    let usb_s = usb.display().to_string();
    let answers_s = answers.display().to_string();
    args.push(&usb_s);
    args.extend(["--qr-out", &answers_s, "--gif", "--qr-in"]);
    args.extend(images.iter().map(String::as_str));
    let signed = signers[0].cmd(&args).assert().success();
    let data = record(&lines(&signed.get_output().stdout), "signed").clone();
    let part = std::path::PathBuf::from(data["file"].as_str().expect("file"));
    assert!(part.is_file());
    let part_psbt = Psbt::deserialize(
        &detect_psbt(&std::fs::read(&part).expect("part"))
            .expect("psbt")
            .0,
    )
    .expect("parses");
    let qr_files: Vec<String> = data["qr_files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f.as_str().expect("path").to_owned())
        .collect();
    assert!(qr_files.iter().any(|f| f.ends_with("-qr.gif")));
    let mut collector = Collector::new();
    for f in qr_files.iter().filter(|f| f.ends_with(".png")) {
        collector
            .push_image(&std::fs::read(f).expect("png"))
            .expect("a frame of the answer");
    }
    let Decoded::Psbt(answer) = collector.finish().expect("complete") else {
        panic!("a crypto-psbt");
    };
    assert_eq!(Psbt::deserialize(&answer).expect("parses"), part_psbt);
}

#[test]
fn commitments_can_be_shown_as_qr_frames() {
    let dir = tempfile::tempdir().expect("dir");
    let (signers, usb) = after_dkg(dir.path());
    let usb_s = usb.display().to_string();
    let out = signers[1]
        .cmd(&[
            "commitments",
            "issue",
            "--count",
            "2",
            "--usb",
            &usb_s,
            "--qr-show",
        ])
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(stdout.contains("QR frame 1 of"), "{stdout}");
    assert!(stdout.contains('█'), "terminal QR blocks");
    signers[1]
        .cmd(&[
            "commitments",
            "issue",
            "--count",
            "1",
            "--usb",
            &usb_s,
            "--gif",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--qr-out"));
}
