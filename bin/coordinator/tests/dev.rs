//! `custody-coordinator dev …`: the development helpers of the quickstart, run as the real
//! binary.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use assert_cmd::Command;
use bitcoin::psbt::Psbt;
use bitcoin::{Address, Amount, Network, OutPoint, ScriptBuf, Transaction, TxIn, TxOut, Txid};
use custody_airgap::qr::{decode_image, Collector, Decoded};
use custody_coordinator::config::Config;
use custody_coordinator::risk::{self, EventKind, EventSource};
use custody_threshold::Identity;
use rand_core::OsRng;
use serde_json::Value;

const URI: &str = "otpauth://totp/CoinPort:dana%40example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=CoinPort";

struct Env {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Env {
    /// A regtest configuration; `chain` adds the development chain file.
    fn new(network: &str, chain: bool) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let mut text = format!(
            "data_dir = \"{}\"\nnetwork = \"{network}\"\n",
            dir.path().join("data").display()
        );
        if chain {
            text.push_str(&format!(
                "[chain]\nkind = \"file\"\npath = \"{}\"\nnetwork = \"{network}\"\n",
                dir.path().join("chain.json").display()
            ));
        }
        if network == "bitcoin" {
            // Mainnet refuses the development WebAuthn relying party.
            text.push_str(
                "[auth.webauthn]\nrp_id = \"exchange.example\"\norigins = [\"https://www.exchange.example\"]\n",
            );
        }
        let config = dir.path().join("coordinator.toml");
        std::fs::write(&config, text).unwrap();
        Env { dir, config }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::cargo_bin("custody-coordinator").unwrap();
        c.env("RUST_LOG", "warn")
            .arg("--config")
            .arg(&self.config)
            .args(args);
        c
    }

    fn stdout(&self, args: &[&str]) -> String {
        let out = self.cmd(args).assert().success();
        String::from_utf8(out.get_output().stdout.clone()).unwrap()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn regtest_address(seed: u8) -> Address {
    use bitcoin::hashes::Hash as _;
    let script = ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([seed; 20]));
    Address::from_script(&script, Network::Regtest).unwrap()
}

#[test]
fn totp_prints_the_code_an_authenticator_shows_at_the_offset_time() {
    let env = Env::new("regtest", false);
    let dir = tempfile::tempdir().unwrap();
    let uri_file = dir.path().join("totp-uri");
    std::fs::write(&uri_file, URI).unwrap();
    let totp = totp_rs::TOTP::from_url(URI).unwrap();
    for offset in [0_i64, -259_200, 90_000] {
        let shift = |t: u64| u64::try_from(i64::try_from(t).unwrap() + offset).unwrap();
        let before = now();
        let code = env.stdout(&[
            "dev",
            "totp",
            "--otpauth-uri-file",
            uri_file.to_str().unwrap(),
            &format!("--offset-secs={offset}"),
        ]);
        let after = now();
        let code = code.trim();
        assert_eq!(code.len(), 6, "{code}");
        let expected = [totp.generate(shift(before)), totp.generate(shift(after))];
        assert!(
            expected.contains(&code.to_owned()),
            "offset {offset}: {code} not in {expected:?}"
        );
    }
}

#[test]
fn every_dev_command_is_refused_on_mainnet() {
    let env = Env::new("bitcoin", false);
    let out = env
        .cmd(&["dev", "totp", "--otpauth-uri-file", "/nonexistent"])
        .assert()
        .code(1);
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(err.contains("mainnet"), "{err}");
    assert!(out.get_output().stdout.is_empty());
    let addr = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4";
    env.cmd(&["dev", "fund", "--address", addr, "--amount", "1000"])
        .assert()
        .code(1);
}

#[test]
fn fund_needs_the_development_chain_file() {
    let env = Env::new("regtest", false);
    let out = env
        .cmd(&[
            "dev",
            "fund",
            "--address",
            &regtest_address(3).to_string(),
            "--amount",
            "1000",
        ])
        .assert()
        .code(1);
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(err.contains("kind = \"file\""), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fund_deposits_to_the_address_and_mines_it() {
    let env = Env::new("regtest", true);
    let address = regtest_address(3);
    let text = env.stdout(&[
        "dev",
        "fund",
        "--address",
        &address.to_string(),
        "--amount",
        "50000000",
    ]);
    let outpoint = text
        .lines()
        .find_map(|l| l.strip_prefix("outpoint: "))
        .expect("outpoint line");
    let outpoint = OutPoint::from_str(outpoint).unwrap();
    let chain = custody_chain::FileBackend::open(env.path("chain.json")).unwrap();
    let tx = chain
        .transaction(&outpoint.txid)
        .await
        .unwrap()
        .expect("funding tx");
    let out = &tx.output[usize::try_from(outpoint.vout).unwrap()];
    assert_eq!(out.value, Amount::from_sat(50_000_000));
    assert_eq!(out.script_pubkey, address.script_pubkey());
    let utxos = custody_chain::ChainBackend::utxos(&chain, &[address.script_pubkey()])
        .await
        .unwrap();
    assert_eq!(utxos.len(), 1);
    assert!(utxos[0].height.is_some(), "mined: {:?}", utxos[0]);
    // Another network's address is refused before anything is written.
    env.cmd(&[
        "dev",
        "fund",
        "--address",
        "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
        "--amount",
        "1",
    ])
    .assert()
    .code(2);
}

/// A PSBT big enough for several QR frames.
fn sample_psbt() -> Vec<u8> {
    let tx = Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: (0..4)
            .map(|i| TxIn {
                previous_output: OutPoint {
                    txid: Txid::from_str(&format!("{i:064x}")).unwrap(),
                    vout: i,
                },
                ..TxIn::default()
            })
            .collect(),
        output: (0..6)
            .map(|i| TxOut {
                value: Amount::from_sat(10_000 + u64::from(i)),
                script_pubkey: regtest_address(i + 1).script_pubkey(),
            })
            .collect(),
    };
    Psbt::from_unsigned_tx(tx).unwrap().serialize()
}

#[test]
fn round_qr_writes_numbered_upper_case_frames_that_give_back_the_psbt() {
    let env = Env::new("regtest", false);
    let psbt = sample_psbt();
    std::fs::write(env.path("request.psbt"), &psbt).unwrap();
    let qr = env.path("qr");
    let request = env.path("request.psbt");
    let args = [
        "dev",
        "round-qr",
        "--psbt",
        request.to_str().unwrap(),
        "--out",
        qr.to_str().unwrap(),
        "--profile",
        "low",
    ];
    env.stdout(&args);
    let mut names: Vec<String> = std::fs::read_dir(&qr)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(names.len() > 1, "multipart: {names:?}");
    let expected: Vec<String> = (1..=names.len())
        .map(|i| format!("frame-{i:04}.png"))
        .collect();
    assert_eq!(names, expected);
    let mut collector = Collector::new();
    for n in &names {
        let texts = decode_image(&std::fs::read(qr.join(n)).unwrap()).unwrap();
        assert_eq!(texts.len(), 1);
        assert!(texts[0].starts_with("UR:CRYPTO-PSBT/"), "{}", texts[0]);
        assert_eq!(texts[0], texts[0].to_ascii_uppercase());
        collector.push_line(&texts[0]).unwrap();
    }
    assert!(collector.is_complete());
    match collector.finish().unwrap() {
        Decoded::Psbt(bytes) => assert_eq!(bytes, psbt),
        other => panic!("not a PSBT: {other:?}"),
    }
    // Frames are never overwritten.
    env.cmd(&args).assert().failure();
    // Not a PSBT: an error, no frames.
    std::fs::write(env.path("junk.psbt"), b"not a psbt").unwrap();
    env.cmd(&[
        "dev",
        "round-qr",
        "--psbt",
        env.path("junk.psbt").to_str().unwrap(),
        "--out",
        env.path("qr2").to_str().unwrap(),
    ])
    .assert()
    .failure();
    assert!(!env.path("qr2").join("frame-0001.png").exists());
}

fn write_card(dir: &Path, name: &str) -> PathBuf {
    let id = Identity::generate(name, &mut OsRng).unwrap();
    let path = dir.join(format!("{name}.card"));
    std::fs::write(&path, id.card().encode()).unwrap();
    path
}

#[test]
fn policy_names_this_coordinator_and_the_approvers_and_installs() {
    let env = Env::new("regtest", false);
    let dest = regtest_address(7).to_string();
    let dana = write_card(env.dir.path(), "dana");
    let eve = write_card(env.dir.path(), "eve");
    let admins = env.path("admins");
    let policy_args = [
        "dev",
        "policy",
        "--dir",
        admins.to_str().unwrap(),
        "--approver-card",
        dana.to_str().unwrap(),
        "--approver-card",
        eve.to_str().unwrap(),
        "--whitelist",
        &dest,
    ];
    // Before `init` there is no coordinator card to put in the policy.
    env.cmd(&policy_args).assert().code(1);
    env.stdout(&["init"]);
    env.stdout(&policy_args);
    let signed = custody_policy::SignedPolicy::decode(
        &std::fs::read(admins.join("policy-v1.policy")).unwrap(),
    )
    .unwrap();
    let doc = signed.document();
    let coordinator = std::fs::read(env.path("data").join("coordinator.card")).unwrap();
    assert_eq!(doc.coordinator.encode(), coordinator);
    assert_eq!(doc.approvers.len(), 2);
    assert_eq!(doc.approvers[0].encode(), std::fs::read(&dana).unwrap());
    assert_eq!(doc.whitelist[0].address, dest);
    assert!(doc.effective_from <= now());
    signed.verify(&doc.admins).expect("signed by its admins");
    for i in [1, 2] {
        assert!(admins.join(format!("admin-{i}.card")).exists());
    }
    let out = env.stdout(&[
        "policy",
        "install",
        "--file",
        admins.join("policy-v1.policy").to_str().unwrap(),
        "--trust-first",
    ]);
    assert!(out.contains("installed policy version 1"), "{out}");
    // A whitelist address of another network is refused.
    env.cmd(&[
        "dev",
        "policy",
        "--dir",
        env.path("admins2").to_str().unwrap(),
        "--approver-card",
        dana.to_str().unwrap(),
        "--whitelist",
        "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
    ])
    .assert()
    .failure();
}

#[tokio::test(flavor = "multi_thread")]
async fn holds_lists_every_hold_with_reason_and_times() {
    let env = Env::new("regtest", false);
    let config = Config::load(Some(&env.config)).unwrap();
    let app =
        custody_coordinator::build_app(config, Arc::new(custody_coordinator::SystemClock::new()))
            .await
            .unwrap();
    let id = custody_coordinator::accounts::create(
        &app,
        "carol@example.com",
        "correct horse battery staple",
        custody_coordinator::accounts::Role::User,
        None,
        "test",
    )
    .await
    .unwrap();
    let mut tx = app.db.begin().await.unwrap();
    risk::record_event(
        &mut tx,
        &app,
        &id,
        EventKind::PasswordReset,
        0,
        EventSource::Coordinator,
        None,
        serde_json::json!({}),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    app.db.close().await;

    let out = env.path("holds.json");
    env.stdout(&["dev", "holds", "--out", out.to_str().unwrap()]);
    let holds: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let holds = holds.as_array().expect("an array");
    assert_eq!(holds.len(), 1, "{holds:?}");
    let h = &holds[0];
    assert_eq!(h["account"], "carol@example.com");
    assert_eq!(h["principal_id"], id.as_str());
    assert_eq!(h["rule"], "password_reset");
    assert!(h["withdrawal_id"].is_null());
    assert!(h["reason"].as_str().unwrap().contains("password reset"));
    let (since, until) = (h["since"].as_i64().unwrap(), h["until"].as_i64().unwrap());
    assert_eq!(until - since, 24 * 3600);
    assert!(h["until_utc"].as_str().unwrap().ends_with('Z'), "{h}");
    // The file is never overwritten.
    env.cmd(&["dev", "holds", "--out", out.to_str().unwrap()])
        .assert()
        .failure();
    // An unknown withdrawal has nothing to export.
    env.cmd(&[
        "dev",
        "signed",
        "--id",
        "no-such-withdrawal",
        "--psbt-out",
        env.path("s.psbt").to_str().unwrap(),
        "--tx-out",
        env.path("tx.hex").to_str().unwrap(),
    ])
    .assert()
    .code(1);
}
