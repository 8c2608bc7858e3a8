//! Refresh, repair, ceremony records and share backups, as key holders run them.

mod common;

use std::path::Path;

use common::{after_dkg, assert_all_succeeded, file_ending, lines, record, run_all, Signer};
use predicates::prelude::*;
use serde_json::Value;

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn xpub_of(signer: &Signer) -> String {
    record(&signer.json(&["status"]), "status")["group_xpub"]
        .as_str()
        .expect("xpub")
        .to_owned()
}

#[test]
fn every_participant_verifies_the_dkg_record_and_a_tampered_one_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let (signers, usb) = after_dkg(dir.path(), &["alice", "bob", "carol"]);
    let rec = file_ending(&usb, "-dkg-record.json");
    let json: Value = serde_json::from_slice(&std::fs::read(&rec).expect("read")).expect("json");
    assert_eq!(json["kind"], "dkg");
    assert_eq!(json["threshold"], 2);
    assert_eq!(json["participants"].as_array().map(Vec::len), Some(3));
    assert_eq!(json["certificates"].as_array().map(Vec::len), Some(3));
    assert_eq!(json["outcome"], "complete");
    let transcript =
        std::fs::read_to_string(signers[0].home.join("dkg-transcript.txt")).expect("transcript");
    assert_eq!(json["transcript_hash"], transcript.trim());

    for signer in &signers {
        signer
            .cmd(&["record", "verify", "--file", &s(&rec)])
            .assert()
            .success()
            .stdout(
                predicate::str::contains("matches this signer")
                    .and(predicate::str::contains("alice, bob, carol")),
            );
    }

    // A certificate altered by one byte no longer verifies.
    let mut tampered = json.clone();
    let cert = tampered["certificates"][1]
        .as_str()
        .expect("hex")
        .to_owned();
    let mut bytes = hex::decode(&cert).expect("hex");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    tampered["certificates"][1] = Value::String(hex::encode(bytes));
    let bad = dir.path().join("tampered-record.json");
    std::fs::write(&bad, tampered.to_string()).expect("write");
    signers[0]
        .cmd(&["record", "verify", "--file", &s(&bad)])
        .assert()
        .code(1)
        .stderr(
            predicate::str::starts_with("refused: ")
                .and(predicate::str::contains("certificate 2"))
                .and(predicate::str::contains("does not verify")),
        );
}

#[test]
fn a_record_of_another_ceremony_is_refused() {
    let one = tempfile::tempdir().expect("dir");
    let two = tempfile::tempdir().expect("dir");
    let (first, _) = after_dkg(one.path(), &["alice", "bob"]);
    let (_, usb2) = after_dkg(two.path(), &["dave", "erin"]);
    let other = file_ending(&usb2, "-dkg-record.json");
    first[0]
        .cmd(&["record", "verify", "--file", &s(&other)])
        .assert()
        .code(1)
        .stdout("")
        .stderr(
            predicate::str::contains("is not listed among the participants")
                .and(predicate::str::contains("the group key is not the one"))
                .and(predicate::str::contains("transcript hash is not one")),
        );
}

#[test]
fn a_refresh_keeps_the_wallet_replaces_the_shares_and_kills_old_commitments() {
    let dir = tempfile::tempdir().expect("dir");
    let (signers, _) = after_dkg(dir.path(), &["alice", "bob", "carol"]);
    let xpub = xpub_of(&signers[0]);
    let old_transcript =
        std::fs::read_to_string(signers[0].home.join("dkg-transcript.txt")).expect("transcript");
    let pool = dir.path().join("pool");
    std::fs::create_dir(&pool).expect("pool");
    signers[0]
        .cmd(&["commitments", "issue", "--count", "3", "--usb", &s(&pool)])
        .assert()
        .success();

    // The lead writes a refresh plan from the same cards and the group key.
    let plan = dir.path().join("refresh.plan");
    let cards: Vec<String> = signers.iter().map(Signer::card).collect();
    let group = s(&signers[0].home.join("group.key"));
    let plan_s = s(&plan);
    let mut args = vec![
        "plan",
        "create",
        "--kind",
        "refresh",
        "--group",
        &group,
        "--threshold",
        "2",
        "--network",
        "regtest",
        "--purpose",
        "yearly refresh",
        "--out",
        &plan_s,
    ];
    for c in &cards {
        args.extend(["--card", c.as_str()]);
    }
    let made = signers[0].json(&args);
    assert_eq!(record(&made, "plan")["kind"], "refresh");

    let usb = dir.path().join("refresh-usb");
    std::fs::create_dir(&usb).expect("usb");
    let jobs: Vec<(&Signer, Vec<String>)> = signers
        .iter()
        .map(|sg| (sg, vec!["refresh".into(), "--plan".into(), plan_s.clone()]))
        .collect();
    let outputs = run_all(&jobs, &usb);
    assert_all_succeeded(&outputs);
    let mut transcripts = Vec::new();
    for out in &outputs {
        let done = record(&lines(&out.stdout), "refresh-complete").clone();
        assert_eq!(done["group_xpub"], xpub.as_str(), "same wallet");
        assert_eq!(done["nonce_seed_renewed"], true);
        transcripts.push(done["transcript_hash"].as_str().expect("t").to_owned());
    }
    assert!(transcripts.iter().all(|t| t == &transcripts[0]));
    assert_ne!(transcripts[0], old_transcript.trim(), "a new transcript");

    for sg in &signers {
        assert_eq!(xpub_of(sg), xpub);
        // The old keystore is gone; the new journal starts empty.
        assert!(!sg.home.join("keystore.old").exists());
        assert!(!sg.home.join("keystore.next").exists());
        let status = record(&sg.json(&["status"]), "status").clone();
        assert_eq!(status["nonces"]["issued"], 0, "new nonce seed, new journal");
    }
    let rec = file_ending(&usb, "-refresh-record.json");
    for sg in &signers {
        sg.cmd(&["record", "verify", "--file", &s(&rec)])
            .assert()
            .success();
        // The DKG record still verifies: its transcript is in the history.
        sg.cmd(&[
            "record",
            "verify",
            "--file",
            &s(&file_ending(&dir.path().join("usb"), "-dkg-record.json")),
        ])
        .assert()
        .success();
    }
}

#[test]
fn a_lost_share_is_repaired_by_two_helpers_and_the_record_verifies() {
    let dir = tempfile::tempdir().expect("dir");
    let (signers, _) = after_dkg(dir.path(), &["alice", "bob", "carol"]);
    let (alice, bob, carol) = (&signers[0], &signers[1], &signers[2]);
    let xpub = xpub_of(carol);
    // Carol's keystore is lost; her identity and the public files survive.
    std::fs::remove_dir_all(carol.home.join("keystore")).expect("lose it");
    carol
        .cmd(&["status"])
        .assert()
        .success()
        .stdout(predicate::str::contains("key share: no"));

    let plan = dir.path().join("repair.plan");
    let cards: Vec<String> = signers.iter().map(Signer::card).collect();
    let group = s(&alice.home.join("group.key"));
    let plan_s = s(&plan);
    let mut args = vec![
        "plan",
        "create",
        "--kind",
        "repair",
        "--group",
        &group,
        "--lost",
        "carol",
        "--helper",
        "alice",
        "--helper",
        "bob",
        "--threshold",
        "2",
        "--network",
        "regtest",
        "--purpose",
        "repair carol",
        "--out",
        &plan_s,
    ];
    for c in &cards {
        args.extend(["--card", c.as_str()]);
    }
    alice.cmd(&args).assert().success();

    let usb = dir.path().join("repair-usb");
    std::fs::create_dir(&usb).expect("usb");
    // A helper who names the wrong lost participant is refused before anything is sent.
    bob.cmd(&[
        "repair",
        "help",
        "--plan",
        &plan_s,
        "--lost",
        "alice",
        "--usb",
        &s(&usb),
    ])
    .assert()
    .code(1)
    .stderr(predicate::str::contains(
        "repairs the share of carol, not of alice",
    ));
    assert_eq!(std::fs::read_dir(&usb).expect("dir").count(), 0);

    let help = |_: &Signer| -> Vec<String> {
        ["repair", "help", "--plan", &plan_s, "--lost", "carol"]
            .iter()
            .map(|a| (*a).to_owned())
            .collect()
    };
    let jobs = vec![
        (alice, help(alice)),
        (bob, help(bob)),
        (
            carol,
            ["repair", "recover", "--plan", &plan_s]
                .iter()
                .map(|a| (*a).to_owned())
                .collect(),
        ),
    ];
    let outputs = run_all(&jobs, &usb);
    assert_all_succeeded(&outputs);
    let done = record(&lines(&outputs[2].stdout), "repair-complete").clone();
    assert_eq!(done["group_xpub"], xpub.as_str());
    assert_eq!(xpub_of(carol), xpub);
    carol
        .cmd(&["status"])
        .assert()
        .success()
        .stdout(predicate::str::contains("key share: yes"));

    let rec = file_ending(&usb, "-repair-record.json");
    for sg in &signers {
        sg.cmd(&["record", "verify", "--file", &s(&rec)])
            .assert()
            .success()
            .stdout(predicate::str::contains("signed by carol"));
    }
}

#[test]
fn a_backup_exports_verifies_and_restores_with_a_new_nonce_seed() {
    let dir = tempfile::tempdir().expect("dir");
    let (signers, usb) = after_dkg(dir.path(), &["alice", "bob"]);
    let dkg_record = s(&file_ending(&usb, "-dkg-record.json"));
    let alice = &signers[0];
    let pool = dir.path().join("pool");
    std::fs::create_dir(&pool).expect("pool");
    alice
        .cmd(&["commitments", "issue", "--count", "2", "--usb", &s(&pool)])
        .assert()
        .success();
    let backup_pass = dir.path().join("backup.pass");
    std::fs::write(&backup_pass, "a different backup passphrase\n").expect("write");
    let backup = dir.path().join("alice.backup");
    alice
        .cmd(&[
            "backup",
            "export",
            "--out",
            &s(&backup),
            "--backup-passphrase-file",
            &s(&backup_pass),
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("it holds no nonce seed"));
    // Never overwritten.
    alice
        .cmd(&[
            "backup",
            "export",
            "--out",
            &s(&backup),
            "--backup-passphrase-file",
            &s(&backup_pass),
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already exists"));

    let verified = record(
        &alice.json(&[
            "backup",
            "verify",
            "--file",
            &s(&backup),
            "--backup-passphrase-file",
            &s(&backup_pass),
        ]),
        "backup-verified",
    )
    .clone();
    assert_eq!(verified["identity_name"], "alice");
    assert_eq!(verified["participant_index"], 1);
    assert_eq!(verified["matches_this_signer_group"], true);

    // The signer passphrase does not open the backup.
    alice
        .cmd(&[
            "backup",
            "verify",
            "--file",
            &s(&backup),
            "--backup-passphrase-file",
            &s(&alice.pass),
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("does not verify"));
    // A corrupted backup is refused.
    let mut bytes = std::fs::read(&backup).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    let corrupt = dir.path().join("corrupt.backup");
    std::fs::write(&corrupt, bytes).expect("write");
    alice
        .cmd(&[
            "backup",
            "verify",
            "--file",
            &s(&corrupt),
            "--backup-passphrase-file",
            &s(&backup_pass),
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with("refused: "));

    // Restore on a new machine: new home, same identity and wallet, empty journal.
    let restored = Signer::new(dir.path(), "alice-restored");
    let out = restored.json(&[
        "backup",
        "restore",
        "--file",
        &s(&backup),
        "--backup-passphrase-file",
        &s(&backup_pass),
    ]);
    let data = record(&out, "backup-restored");
    assert_eq!(data["new_nonce_seed"], true);
    restored
        .cmd(&[
            "backup",
            "restore",
            "--file",
            &s(&backup),
            "--backup-passphrase-file",
            &s(&backup_pass),
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already holds a key share"));
    assert_eq!(xpub_of(&restored), xpub_of(alice));
    let status = record(&restored.json(&["status"]), "status").clone();
    assert_eq!(status["name"], "alice");
    assert_eq!(status["nonces"]["issued"], 0);
    // A restored signer has no ceremony history: the DKG record does not verify until it
    // is adopted at restore time.
    restored
        .cmd(&["record", "verify", "--file", &dkg_record])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("transcript hash is not one"));
    let fresh = Signer::new(dir.path(), "alice-again");
    fresh
        .cmd(&[
            "backup",
            "restore",
            "--file",
            &s(&backup),
            "--backup-passphrase-file",
            &s(&backup_pass),
            "--record",
            &dkg_record,
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("a new nonce seed was drawn").and(
            predicate::str::contains("adopted into this signer's history"),
        ));
    fresh
        .cmd(&["record", "verify", "--file", &dkg_record])
        .assert()
        .success();
}

#[test]
fn a_backup_to_an_age_recipient_opens_only_with_its_identity() {
    let dir = tempfile::tempdir().expect("dir");
    let (signers, _) = after_dkg(dir.path(), &["alice", "bob"]);
    let bob = &signers[1];
    let key = age::x25519::Identity::generate();
    let recipient = key.to_public().to_string();
    let key_file = dir.path().join("backup-key.txt");
    {
        use age::secrecy::ExposeSecret;
        std::fs::write(&key_file, format!("{}\n", key.to_string().expose_secret())).expect("write");
    }
    let backup = dir.path().join("bob.backup");
    bob.cmd(&[
        "backup",
        "export",
        "--out",
        &s(&backup),
        "--to-recipient",
        &recipient,
    ])
    .assert()
    .success();
    bob.cmd(&[
        "backup",
        "verify",
        "--file",
        &s(&backup),
        "--age-identity-file",
        &s(&key_file),
    ])
    .assert()
    .success()
    .stdout(predicate::str::contains("is good: share #2"));
    let other = dir.path().join("other-key.txt");
    {
        use age::secrecy::ExposeSecret;
        let k = age::x25519::Identity::generate();
        std::fs::write(&other, format!("{}\n", k.to_string().expose_secret())).expect("write");
    }
    bob.cmd(&[
        "backup",
        "verify",
        "--file",
        &s(&backup),
        "--age-identity-file",
        &s(&other),
    ])
    .assert()
    .code(1);
}

#[test]
fn the_man_page_and_completions_render() {
    let mut man = assert_cmd::Command::cargo_bin("custody-signer").expect("binary");
    man.arg("man").assert().success().stdout(
        predicate::str::contains(".TH custody-signer")
            .and(predicate::str::contains("Exit codes: 0 success, 1 refused")),
    );
    for (shell, marker) in [
        ("bash", "complete -F _custody__signer"),
        ("zsh", "#compdef custody-signer"),
    ] {
        let mut c = assert_cmd::Command::cargo_bin("custody-signer").expect("binary");
        c.args(["completions", shell])
            .assert()
            .success()
            .stdout(predicate::str::contains(marker).and(predicate::str::contains("refresh")));
    }
}

#[test]
fn a_share_replacement_interrupted_between_its_renames_is_finished_on_the_next_start() {
    let dir = tempfile::tempdir().expect("dir");
    let (signers, _) = after_dkg(dir.path(), &["alice", "bob"]);
    let alice = &signers[0];
    // A crash after the current keystore was moved aside and before the staged one took
    // its place leaves no `keystore/` but a complete `keystore.next/`.
    std::fs::rename(
        alice.home.join("keystore"),
        alice.home.join("keystore.next"),
    )
    .expect("simulate the crash");
    let status = record(&alice.json(&["status"]), "status").clone();
    assert_eq!(status["key_share"], true);
    assert_eq!(status["nonces"]["issued"], 0);
    assert!(alice.home.join("keystore").is_dir());
    assert!(!alice.home.join("keystore.next").exists());
}
