//! Helpers shared by the scenario tests: signer homes, JSON Lines, ceremonies run in
//! parallel processes.

#![allow(dead_code)]

pub mod policy;
pub mod request;

use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use assert_cmd::Command;
use serde_json::Value;

pub const PASS: &str = "correct horse battery staple\n";

/// A key holder: a signer home and its passphrase file.
pub struct Signer {
    pub name: String,
    pub home: PathBuf,
    pub pass: PathBuf,
}

impl Signer {
    pub fn new(root: &Path, name: &str) -> Self {
        let pass = root.join(format!("{name}.pass"));
        std::fs::write(&pass, PASS).expect("write passphrase");
        Signer {
            name: name.to_owned(),
            home: root.join(name),
            pass,
        }
    }

    pub fn args(&self) -> Vec<String> {
        vec![
            "--home".into(),
            self.home.display().to_string(),
            "--passphrase-file".into(),
            self.pass.display().to_string(),
            "--scrypt-log-n".into(),
            "10".into(),
        ]
    }

    pub fn cmd(&self, extra: &[&str]) -> Command {
        let mut c = Command::cargo_bin("custody-signer").expect("binary");
        c.args(self.args()).args(extra);
        c
    }

    pub fn json(&self, extra: &[&str]) -> Vec<Value> {
        let out = self.cmd(&[&["--json"], extra].concat()).assert().success();
        lines(&out.get_output().stdout)
    }

    pub fn card(&self) -> String {
        self.home.join("identity.card").display().to_string()
    }
}

pub fn lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("every stdout line is JSON"))
        .collect()
}

pub fn record<'a>(records: &'a [Value], kind: &str) -> &'a Value {
    &records
        .iter()
        .find(|r| r["type"] == kind)
        .unwrap_or_else(|| panic!("a {kind} record in {records:?}"))["data"]
}

/// Creates identities for `names` and a 2-of-n DKG plan; returns the signers and plan.
pub fn signers_and_plan(root: &Path, names: &[&str]) -> (Vec<Signer>, PathBuf) {
    let signers: Vec<Signer> = names
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
    let cards: Vec<String> = signers.iter().map(Signer::card).collect();
    let plan_s = plan.display().to_string();
    let mut args = vec![
        "plan",
        "create",
        "--threshold",
        "2",
        "--network",
        "regtest",
        "--purpose",
        "test cold wallet",
        "--out",
        plan_s.as_str(),
    ];
    for c in &cards {
        args.extend(["--card", c.as_str()]);
    }
    signers[0].cmd(&args).assert().success();
    (signers, plan)
}

/// Runs `args` (followed by `--usb USB` and fast polling) for each signer at once, each in
/// its own process, and returns their outputs in order.
pub fn run_all(jobs: &[(&Signer, Vec<String>)], usb: &Path) -> Vec<std::process::Output> {
    let bin = assert_cmd::cargo::cargo_bin("custody-signer");
    let children: Vec<_> = jobs
        .iter()
        .map(|(s, args)| {
            Process::new(&bin)
                .args(s.args())
                .arg("--json")
                .args(args)
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

pub fn assert_all_succeeded(outputs: &[std::process::Output]) {
    for out in outputs {
        assert_eq!(
            out.status.code(),
            Some(0),
            "stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Signers `names` after a successful 2-of-n DKG in `root/usb`; returns them and the USB
/// directory.
pub fn after_dkg(root: &Path, names: &[&str]) -> (Vec<Signer>, PathBuf) {
    let (signers, plan) = signers_and_plan(root, names);
    let usb = root.join("usb");
    std::fs::create_dir(&usb).expect("usb");
    let plan_s = plan.display().to_string();
    let jobs: Vec<(&Signer, Vec<String>)> = signers
        .iter()
        .map(|s| {
            (
                s,
                vec!["dkg".into(), "join".into(), "--plan".into(), plan_s.clone()],
            )
        })
        .collect();
    assert_all_succeeded(&run_all(&jobs, &usb));
    (signers, usb)
}

/// The only file in `dir` whose name ends with `suffix`.
pub fn file_ending(dir: &Path, suffix: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(suffix))
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one *{suffix} in {}: {found:?}",
        dir.display()
    );
    found[0].clone()
}
