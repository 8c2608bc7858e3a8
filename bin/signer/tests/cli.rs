//! The signer as a user runs it: scenarios checking stdout, stderr and exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

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

#[test]
fn three_signers_run_a_2_of_3_dkg_over_one_usb_directory_and_agree_on_the_wallet() {
    let dir = tempfile::tempdir().expect("dir");
    let (signers, plan) = three_signers(dir.path());
    let usb = dir.path().join("usb");
    std::fs::create_dir(&usb).expect("usb");
    let bin = assert_cmd::cargo::cargo_bin("custody-signer");
    let children: Vec<_> = signers
        .iter()
        .map(|s| {
            Process::new(&bin)
                .args(s.args())
                .args(["--json", "dkg", "join", "--plan"])
                .arg(&plan)
                .arg("--usb")
                .arg(&usb)
                .args(["--timeout-secs", "120", "--poll-ms", "50"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let mut xpubs = Vec::new();
    let mut transcripts = Vec::new();
    for child in children {
        let out = child.wait_with_output().expect("wait");
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
