//! An SMTP conversation with a real SMTP server process on loopback (Python's `aiosmtpd`):
//! the alert email carries the user's anti-phishing code in its header and first line and
//! a "this wasn't me" link, and following that link freezes the account, once.
//!
//! Without `python3` and `aiosmtpd` the tests fail when `CI` or `CUSTODY_REQUIRE_AIOSMTPD`
//! is set (`.ci/run` installs the Debian `python3-aiosmtpd`) and are skipped, saying so,
//! otherwise.

// The skip reason is printed for whoever runs the tests without aiosmtpd.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::http::StatusCode;
use common::{Engine, Harness};
use custody_coordinator::config::{SmtpConfig, SmtpSecurity};
use serde_json::json;

const CODE: &str = "Blue Otter-42";
const PUBLIC_URL: &str = "https://custody.example.test";

/// The first Python interpreter that has `aiosmtpd` (Debian's package installs it for
/// `/usr/bin/python3`, which another `python3` may shadow on the PATH).
fn python_with_aiosmtpd() -> Option<String> {
    ["python3", "/usr/bin/python3"].into_iter().find_map(|py| {
        Command::new(py)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()
            .filter(std::process::ExitStatus::success)
            .map(|_| py.to_owned())
    })
}

/// The server process; killed when dropped, also when an assertion fails.
struct SmtpServer {
    child: Child,
    port: u16,
    out: PathBuf,
    err: PathBuf,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmtpServer {
    /// Starts `aiosmtpd` with the `Debugging` handler (every message to stdout, here a
    /// file) on a free loopback port and waits until the port accepts.
    fn start(python: &str, dir: &Path) -> SmtpServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = dir.join("smtp.out");
        let err = dir.join("smtp.err");
        let child = Command::new(python)
            .args(["-u", "-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Debugging", "stdout"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("start python3 -m aiosmtpd");
        let mut server = SmtpServer {
            child,
            port,
            out,
            err,
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!(
                    "aiosmtpd exited ({status}): {}",
                    std::fs::read_to_string(&server.err).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("aiosmtpd did not accept connections on 127.0.0.1:{port} within 10 s");
    }

    /// The messages received so far, as the `Debugging` handler printed them.
    fn messages(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.split("---------- MESSAGE FOLLOWS ----------")
            .skip(1)
            .filter_map(|m| m.split("------------ END MESSAGE ------------").next())
            .map(str::to_owned)
            .collect()
    }

    /// The first message containing `needle` (waits up to 10 s for it to be printed).
    fn wait_for(&self, needle: &str) -> String {
        for _ in 0..200 {
            if let Some(m) = self.messages().into_iter().find(|m| m.contains(needle)) {
                return m;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "no message with {needle:?} arrived; the server printed:\n{}",
            std::fs::read_to_string(&self.out).unwrap_or_default()
        );
    }
}

/// Undoes quoted-printable soft line breaks (lettre encodes a body with a line longer
/// than 76 characters so); the link's characters are never escaped otherwise.
fn unfold(body: &str) -> String {
    body.replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=")
}

fn headers_and_body(message: &str) -> (String, String) {
    let mut message = message.trim_start_matches(['\r', '\n']);
    // The Debugging handler prints the MAIL options (e.g. BODY=8BITMIME) first.
    if message.starts_with("mail options:") {
        message = message.split_once("\n\n").map_or(message, |(_, rest)| rest);
    }
    let (head, body) = message
        .split_once("\n\n")
        .or_else(|| message.split_once("\r\n\r\n"))
        .expect("headers and body");
    // The Debugging handler adds an X-Peer line after the headers.
    let body = body
        .split_once('\n')
        .filter(|(first, _)| first.starts_with("X-Peer:"))
        .map_or(body, |(_, rest)| rest);
    (head.to_owned(), unfold(body))
}

fn link_in(body: &str) -> String {
    let start = body
        .find(&format!("{PUBLIC_URL}/v1/links/cpl_"))
        .unwrap_or_else(|| panic!("no \"this wasn't me\" link in:\n{body}"));
    body[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect()
}

async fn scenario(engine: Engine) {
    let Some(python) = python_with_aiosmtpd() else {
        assert!(
            std::env::var_os("CI").is_none()
                && std::env::var_os("CUSTODY_REQUIRE_AIOSMTPD").is_none(),
            "python3 with aiosmtpd is needed for the SMTP test (Debian: apt-get install python3-aiosmtpd; .ci/run installs it)"
        );
        eprintln!("skipped: no python3 with aiosmtpd (Debian: apt-get install python3-aiosmtpd)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = SmtpServer::start(&python, dir.path());
    let port = server.port;
    let Some(h) = Harness::with_config(engine, |c| {
        c.notifications.smtp = Some(SmtpConfig {
            host: "127.0.0.1".into(),
            port,
            security: SmtpSecurity::None,
            from: "CoinPort Security <security@example.com>".into(),
            username: None,
            password_file: None,
            timeout_secs: 10,
        });
        c.public_url = Some(PUBLIC_URL.into());
    })
    .await
    else {
        eprintln!("skipped: no PostgreSQL (CUSTODY_TEST_POSTGRES_URL)");
        return;
    };
    let s = h.customer("ivy@example.com").await;

    let (st, v) = h.call("GET", "/v1/me", Some(&s.token), None, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["anti_phishing_code_set"], false);
    let totp = h.totp(&s);
    let (st, v) = h
        .call(
            "PUT",
            "/v1/me/anti-phishing-code",
            Some(&s.token),
            None,
            Some(json!({ "code": CODE, "totp": totp })),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    let (_, v) = h.call("GET", "/v1/me", Some(&s.token), None, None).await;
    assert_eq!(v["anti_phishing_code_set"], true);

    // An alert: the password changes.
    let totp = h.totp(&s);
    let (st, v) = h
        .call("POST", "/v1/me/password", Some(&s.token), None, Some(json!({ "current": common::PASSWORD, "new": "a brand new passphrase", "totp": totp })))
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    custody_coordinator::notify::deliver_pending(&h.app, 1000)
        .await
        .unwrap();

    let mail = server.wait_for("Subject: CoinPort Custody: Your password was changed");
    let (head, body) = headers_and_body(&mail);
    assert!(
        head.lines()
            .any(|l| l.trim_end() == format!("X-CoinPort-Anti-Phishing-Code: {CODE}")),
        "header missing:\n{head}"
    );
    assert!(head.contains("To: ivy@example.com") || head.contains("<ivy@example.com>"));
    assert_eq!(
        body.lines().next().map(str::trim_end),
        Some(format!("Your CoinPort anti-phishing code: {CODE}").as_str()),
        "the code is the first line of the body:\n{body}"
    );
    assert!(body.contains("held until"), "{body}");
    let link = link_in(&body);
    let path = link.strip_prefix(PUBLIC_URL).unwrap().to_owned();
    // The anti-phishing change itself was alerted too, already with the new code.
    let change = server.wait_for("Your anti-phishing code was changed");
    assert!(change.contains(&format!("Your CoinPort anti-phishing code: {CODE}")));

    // An email change asked for: the new address gets its confirmation link, without the
    // account's anti-phishing code or a "this wasn't me" link (it is not the owner's
    // address yet); the current address is told, with both.
    let totp = h.totp(&s);
    let (st, v) = h
        .call(
            "POST",
            "/v1/me/email",
            Some(&s.token),
            None,
            Some(json!({ "email": "ivy.new@example.com", "totp": totp })),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    custody_coordinator::notify::deliver_pending(&h.app, 1000)
        .await
        .unwrap();
    let confirm = server.wait_for("Subject: CoinPort Custody: Confirm your new email address");
    let (head, body) = headers_and_body(&confirm);
    assert!(head.contains("ivy.new@example.com"), "{head}");
    assert!(
        !confirm.contains(CODE),
        "no anti-phishing code to an unconfirmed address:\n{confirm}"
    );
    assert!(
        body.starts_with("This address is not confirmed yet"),
        "{body}"
    );
    assert!(
        body.contains(&format!("{PUBLIC_URL}/v1/links/cpl_")) && !body.contains("freeze"),
        "{body}"
    );
    let asked = server.wait_for("A change of your account's email address was requested");
    let (head, body) = headers_and_body(&asked);
    assert!(
        head.contains("To: ivy@example.com") || head.contains("<ivy@example.com>"),
        "{head}"
    );
    assert!(
        body.starts_with(&format!("Your CoinPort anti-phishing code: {CODE}")),
        "{body}"
    );
    assert!(body.contains("freeze your account"), "{body}");

    // Opening the link (as a mail scanner does) changes nothing.
    let (st, page) = h.call("GET", &path, None, None, None).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    let page = page.as_str().expect("an HTML page").to_owned();
    assert!(page.contains("<form method=\"post\">"), "{page}");
    assert!(!page.contains("ivy"), "no personal data on the page");
    let request_withdrawal = || async {
        let totp = h.totp(&s);
        h.call(
            "POST",
            "/v1/withdrawals",
            Some(&s.token),
            Some(&common::new_key()),
            Some(
                json!({ "asset": "BTC", "address": h.destination, "amount": 20_000, "totp": totp }),
            ),
        )
        .await
    };
    let (st, v) = request_withdrawal().await;
    assert_ne!(st, StatusCode::LOCKED, "not frozen by a GET: {v}");

    // Following it freezes the account at once.
    let (st, v) = h.call("POST", &path, None, None, Some(json!({}))).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["purpose"], "freeze_account");
    let (st, v) = request_withdrawal().await;
    assert_eq!(st, StatusCode::LOCKED, "{v}");
    assert_eq!(v["error"]["code"], "frozen");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("this account is frozen"),
        "{v}"
    );
    assert_eq!(h.audit_count("freeze.on").await, 1);
    assert_eq!(h.audit_count("link.freeze_account").await, 1);

    // Once only.
    let (st, v) = h.call("POST", &path, None, None, Some(json!({}))).await;
    assert_eq!(st, StatusCode::GONE, "{v}");
    assert_eq!(v["error"]["code"], "link_used");

    // The user is told, with how to get the account unfrozen.
    custody_coordinator::notify::deliver_pending(&h.app, 1000)
        .await
        .unwrap();
    let frozen = server.wait_for("Subject: CoinPort Custody: Your account was frozen");
    let (_, body) = headers_and_body(&frozen);
    assert!(body.starts_with(&format!("Your CoinPort anti-phishing code: {CODE}")));
    assert!(body.contains("administrator unfreezes"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiosmtpd_receives_the_code_and_a_link_that_freezes_the_account_on_sqlite() {
    scenario(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiosmtpd_receives_the_code_and_a_link_that_freezes_the_account_on_postgres() {
    scenario(Engine::Postgres).await;
}
