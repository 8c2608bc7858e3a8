//! A coordinator in-process with a fake clock, a dealer-generated 2-of-3 wallet funded on
//! the development chain, a signed policy, and real signer code answering signing rounds.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

/// Runs `async fn $name(engine: Engine)` as two tests, `$name::sqlite` and
/// `$name::postgres` (the file must `use common::Engine` and declare
/// `#[macro_use] mod common;`).
#[allow(unused_macros)]
macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Engine::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Engine::Postgres).await;
            }
        }
    };
}

use std::str::FromStr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use bitcoin::psbt::Psbt;
use bitcoin::{Address, Amount, Network};
use custody_airgap::envelope::{Envelope, EnvelopeType, SealParams};
use custody_bitcoin::{InspectPolicy, Ownership, WalletDescriptor};
use custody_chain::FileBackend;
use custody_coordinator::config::{Config, NetworkName};
use custody_coordinator::{build_app, App, FakeClock};
use custody_policy::{
    Action, AdminQuorum, Decision, PolicyDocument, Rule, SignedPolicy, TransactionLimit,
    VelocityLimit, VerifiedPolicy, WhitelistEntry,
};
use custody_threshold::{
    generate_with_dealer, CeremonyKind, CeremonyPlan, GroupKey, Identity, KeyShare,
    MemoryNonceStore, NonceSeed, SigningDomain,
};
use http_body_util::BodyExt;
use rand_core::OsRng;
use serde_json::{json, Value};
use tower::ServiceExt;

pub const T0: i64 = 1_800_000_000;
pub const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
pub const INGEST_TOKEN: &str = "ingest-test-token-0123456789";
pub const PASSWORD: &str = "correct horse battery staple";
/// The Ethereum destination every policy whitelists (EIP-55 checksummed).
pub const ETH_DEST: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
/// The ERC-20 token contract the policies have a rule for.
pub const TOKEN: &str = "0x1111111111111111111111111111111111111111";
/// The test ERC-20 Hardhat deploys as the first contract of development account 0.
pub const HARDHAT_TOKEN: &str = "0x5fbdb2315678afecb367f032d93f642f64180aa3";
/// One ether in wei.
pub const ETHER: u128 = 1_000_000_000_000_000_000;

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A database URL for one test. PostgreSQL tests get their own database, created on the
/// server `CUSTODY_TEST_POSTGRES_URL` names (`.ci/postgres.sh` starts one). In CI a missing
/// server is a failure; elsewhere the PostgreSQL half is skipped and says so.
pub async fn database_url(engine: Engine, dir: &std::path::Path) -> Option<String> {
    match engine {
        Engine::Sqlite => Some(format!(
            "sqlite://{}?mode=rwc",
            dir.join("coordinator.db").display()
        )),
        Engine::Postgres => {
            let Ok(admin) = std::env::var("CUSTODY_TEST_POSTGRES_URL") else {
                assert!(
                    std::env::var_os("CI").is_none() && std::env::var_os("CUSTODY_REQUIRE_POSTGRES").is_none(),
                    "CUSTODY_TEST_POSTGRES_URL is not set; .ci/run starts PostgreSQL with .ci/postgres.sh"
                );
                return None;
            };
            sqlx::any::install_default_drivers();
            // Named after when and by which process it was made, so that a later run can
            // drop what this one leaves.
            let made = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let name = format!(
                "custody_t_{made}_{}_{}",
                std::process::id(),
                hex::encode(rand_bytes::<6>())
            );
            let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
                .await
                .expect("PostgreSQL from CUSTODY_TEST_POSTGRES_URL must be reachable");
            static CLEAN_UP: std::sync::Once = std::sync::Once::new();
            CLEAN_UP.call_once(|| {
                tokio::spawn(drop_left_over_databases(admin.clone(), made));
            });
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("create test database");
            let base = admin.rsplit_once('/').expect("URL with a database").0;
            Some(format!("{base}/{name}"))
        }
    }
}

/// Drops, in the background, the databases earlier test processes left (each test's
/// database lives until its process exits; nothing else removes it): those made more than
/// an hour before `now` by a process that no longer runs. A fresh machine has none, so CI
/// pays nothing; a developer's server does not fill up run after run. Each drop forces a
/// checkpoint (about a second), which is why this does not run in the test's way and
/// leaves recent runs alone. A database of another naming, or whose process still runs, is
/// left; a drop that fails (another process cleaning up at the same time) is ignored.
async fn drop_left_over_databases(admin: String, now: u64) {
    // Whether a process runs is read from /proc; without it nothing is dropped.
    if !std::path::Path::new("/proc/self").exists() {
        return;
    }
    let Ok(mut conn) = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await else {
        return;
    };
    let Ok(rows) = sqlx::query(
        "SELECT datname::text AS datname FROM pg_database WHERE datname LIKE 'custody_t_%'",
    )
    .fetch_all(&mut conn)
    .await
    else {
        return;
    };
    for row in rows {
        let Ok(name) = sqlx::Row::try_get::<String, _>(&row, "datname") else {
            continue;
        };
        let mut parts = name.trim_start_matches("custody_t_").split('_');
        let (Some(Ok(made)), Some(Ok(pid))) = (
            parts.next().map(str::parse::<u64>),
            parts.next().map(str::parse::<u32>),
        ) else {
            continue;
        };
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
        if made + 3_600 < now && !alive {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await;
        }
    }
}

pub fn rand_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand_core::RngCore::fill_bytes(&mut OsRng, &mut b);
    b
}

/// One key holder.
pub struct Signer {
    pub identity: Identity,
    pub share: KeyShare,
    pub seed: NonceSeed,
    pub store: MemoryNonceStore,
    pub sequence: u64,
}

/// A session of some principal.
#[derive(Clone)]
pub struct Session {
    pub email: String,
    pub id: String,
    pub token: String,
    pub totp_uri: Option<String>,
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub clock: FakeClock,
    pub app: App,
    pub config: Config,
    pub group: GroupKey,
    pub wallet: WalletDescriptor,
    pub signers: Vec<Signer>,
    pub chain: FileBackend,
    pub admins: Vec<Identity>,
    pub approver_ids: Vec<Identity>,
    pub signed_policy: SignedPolicy,
    pub destination: String,
    pub funded: Vec<bitcoin::OutPoint>,
}

pub fn regtest_address(seed: u8) -> String {
    // A P2WPKH address of a fixed key hash: a destination outside the wallet.
    let script = bitcoin::ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([seed; 20]));
    Address::from_script(&script, Network::Regtest)
        .expect("address")
        .to_string()
}

use bitcoin::hashes::Hash as _;

impl Harness {
    /// Builds everything; `None` when the engine is unavailable outside CI.
    pub async fn new(engine: Engine) -> Option<Harness> {
        Self::with_config(engine, |_| {}).await
    }

    /// As [`Harness::new`], with the configuration adjusted by `adjust` before start.
    pub async fn with_config(engine: Engine, adjust: impl FnOnce(&mut Config)) -> Option<Harness> {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("warn")
            .try_init();
        let dir = tempfile::tempdir().expect("tempdir");
        let url = database_url(engine, dir.path()).await?;
        let clock = FakeClock::new(T0);
        let (group, shares) =
            generate_with_dealer(Network::Regtest, 2, 3, &mut OsRng).expect("dealer");
        let identities: Vec<Identity> = (0..3)
            .map(|i| Identity::generate(&format!("signer{}", i + 1), &mut OsRng).expect("identity"))
            .collect();
        let plan = CeremonyPlan::new(
            rand_bytes::<16>(),
            CeremonyKind::Dkg,
            Network::Regtest,
            "coordinator tests",
            2,
            identities.iter().map(Identity::card).collect(),
        )
        .expect("plan");
        let group_file = dir.path().join("group.key");
        std::fs::write(&group_file, group.encode()).expect("group file");
        let plan_file = dir.path().join("plan.bin");
        std::fs::write(&plan_file, plan.encode()).expect("plan file");
        let chain_path = dir.path().join("chain.json");
        let chain = FileBackend::open_or_create(&chain_path, Network::Regtest).expect("chain");
        let mut config = Config {
            data_dir: dir.path().join("data"),
            database_url: Some(url),
            network: NetworkName::Regtest,
            trust_forwarded_for: true,
            chain: Some(custody_chain::ChainConfig::File(
                custody_chain::FileConfig {
                    path: chain_path,
                    network: Network::Regtest,
                },
            )),
            ..Config::default()
        };
        config.wallet.group_key_file = Some(group_file);
        config.wallet.plan_file = Some(plan_file);
        config.auth.session_minutes = 24 * 60;
        let token_file = dir.path().join("ingest.token");
        std::fs::write(&token_file, INGEST_TOKEN).expect("token file");
        config.auth.ingest_token_file = Some(token_file);
        // Tests sign in and step up far more often than people; the limits have their own
        // test (user_security.rs), the lockout keeps its defaults.
        config.auth.limits.login_burst_per_account = 1000;
        config.auth.limits.login_burst_per_ip = 1000;
        config.auth.limits.code_burst_per_account = 1000;
        config.auth.limits.code_burst_per_ip = 1000;
        adjust(&mut config);
        let app = build_app(config.clone(), Arc::new(clock.clone()))
            .await
            .expect("app");
        let wallet = WalletDescriptor::for_group(&group, None).expect("descriptor");
        let mut funded = Vec::new();
        for i in 0..2 {
            let script = wallet
                .derive(custody_bitcoin::Branch::Receive, i)
                .expect("derive")
                .script_pubkey();
            funded.push(
                chain
                    .fund(&script, Amount::from_sat(50_000_000))
                    .await
                    .expect("fund"),
            );
        }
        chain.mine(1).await.expect("mine");
        let signers = identities
            .into_iter()
            .zip(shares)
            .map(|(identity, share)| Signer {
                identity,
                share,
                seed: NonceSeed::generate(&mut OsRng),
                store: MemoryNonceStore::new(),
                sequence: 0,
            })
            .collect();
        let admins: Vec<Identity> = (0..2)
            .map(|i| Identity::generate(&format!("admin{i}"), &mut OsRng).expect("id"))
            .collect();
        let approver_ids: Vec<Identity> = (0..3)
            .map(|i| Identity::generate(&format!("approver{i}"), &mut OsRng).expect("id"))
            .collect();
        let destination = regtest_address(7);
        // Approvers 0 and 1 are in the policy; approver 2 has a key but is not listed.
        let signed_policy = policy(
            1,
            &admins,
            &app,
            &approver_ids[..2],
            &destination,
            T0 - 100,
            T0 - 50,
        );
        custody_coordinator::policy::install(&app, "test", &signed_policy.encode(), true)
            .await
            .expect("install first policy");
        Some(Harness {
            dir,
            clock,
            app,
            config,
            group,
            wallet,
            signers,
            chain,
            admins,
            approver_ids,
            signed_policy,
            destination,
            funded,
        })
    }

    pub fn router(&self) -> axum::Router {
        custody_coordinator::router(self.app.clone())
    }

    /// One HTTP call through the router.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        idem: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        call(&self.app, method, path, token, idem, body, "10.0.0.1").await
    }

    /// Advances the fake clock past the current TOTP step and returns a fresh code.
    pub fn totp(&self, session: &Session) -> String {
        self.clock.advance(30);
        let t =
            totp_rs::TOTP::from_url(session.totp_uri.as_deref().expect("enrolled")).expect("uri");
        t.generate(u64::try_from(custody_coordinator::Clock::now(&self.clock)).expect("time"))
    }

    /// Creates a principal directly, signs in, enrols TOTP.
    pub async fn principal(
        &self,
        email: &str,
        role: custody_coordinator::accounts::Role,
        card: Option<&Identity>,
    ) -> Session {
        let card_hex = card.map(|c| hex::encode(c.card().encode()));
        let id = custody_coordinator::accounts::create(
            &self.app,
            email,
            PASSWORD,
            role,
            card_hex.as_deref(),
            "test",
        )
        .await
        .expect("create principal");
        let mut s = self.login(email, None).await;
        s.id = id;
        self.enrol_totp(&mut s).await;
        s
    }

    pub async fn login(&self, email: &str, totp: Option<String>) -> Session {
        let (st, v) = self
            .call(
                "POST",
                "/v1/sessions",
                None,
                None,
                Some(json!({ "email": email, "password": PASSWORD, "totp": totp })),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "login: {v}");
        Session {
            email: email.to_owned(),
            id: v["principal_id"].as_str().expect("id").to_owned(),
            token: v["token"].as_str().expect("token").to_owned(),
            totp_uri: None,
        }
    }

    /// Signs in again with password and TOTP (sessions last at most a day; tests jump days).
    pub async fn relogin(&self, s: &mut Session) {
        let code = self.totp(s);
        let fresh = self.login(&s.email, Some(code)).await;
        s.token = fresh.token;
    }

    /// Signs everyone in again after a clock jump.
    pub async fn relogin_all(&self, sessions: &mut [&mut Session]) {
        for s in sessions.iter_mut() {
            self.relogin(s).await;
        }
    }

    pub async fn enrol_totp(&self, s: &mut Session) {
        let (st, v) = self
            .call("POST", "/v1/me/totp", Some(&s.token), None, None)
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        s.totp_uri = Some(v["otpauth_uri"].as_str().expect("uri").to_owned());
        let code = self.totp(s);
        let (st, v) = self
            .call(
                "POST",
                "/v1/me/totp/confirm",
                Some(&s.token),
                None,
                Some(json!({ "code": code })),
            )
            .await;
        assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    }

    /// `count` coins of `amount` satoshis on receive address 0, deposited on the
    /// development chain in one write, mined and synced.
    pub async fn fund_coins(&self, count: usize, amount: u64) {
        let script = self
            .wallet
            .derive(custody_bitcoin::Branch::Receive, 0)
            .expect("derive")
            .script_pubkey();
        let outputs = vec![(script, Amount::from_sat(amount)); count];
        self.chain.fund_many(&outputs).await.expect("fund");
        self.chain.mine(1).await.expect("mine");
        let synced = custody_coordinator::withdrawals::sync_utxos(&self.app, 20)
            .await
            .expect("sync");
        assert_eq!(synced.waiting, 0);
    }

    /// `count` coins of `amount` satoshis on receive address 0, straight into the table
    /// and not on the chain: for benches that never sync (a sync removes coins its backend
    /// does not report). Tests use [`Harness::fund_coins`].
    pub async fn insert_coins(&self, count: usize, amount: i64) {
        let script = self
            .wallet
            .derive(custody_bitcoin::Branch::Receive, 0)
            .expect("derive")
            .script_pubkey()
            .to_hex_string();
        let mut tx = self.app.db.pool().begin().await.expect("begin");
        for i in 0..count {
            sqlx::query("INSERT INTO utxos (outpoint, amount, script, branch, address_index) VALUES ($1, $2, $3, 0, 0)")
                .bind(format!("{:064x}:0", i + 1))
                .bind(amount)
                .bind(&script)
                .execute(&mut *tx)
                .await
                .expect("coin");
        }
        tx.commit().await.expect("commit");
    }

    /// A customer with TOTP and an active whitelisted destination.
    pub async fn customer(&self, email: &str) -> Session {
        let (st, v) = self
            .call(
                "POST",
                "/v1/users",
                None,
                None,
                Some(json!({ "email": email, "password": PASSWORD })),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        let mut s = self.login(email, None).await;
        self.enrol_totp(&mut s).await;
        let code = self.totp(&s);
        let (st, v) = self
            .call(
                "POST",
                "/v1/me/whitelist",
                Some(&s.token),
                None,
                Some(json!({ "address": self.destination, "totp": code })),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        s
    }

    /// Signers issue commitments and the operator uploads them.
    pub async fn upload_commitments(&mut self, operator: &Session, count: usize) {
        for i in 0..self.signers.len() {
            let env = {
                let s = &mut self.signers[i];
                let batch =
                    custody_threshold::issue_commitments(&s.share, &s.seed, &mut s.store, count)
                        .expect("issue");
                s.sequence += 1;
                let now = u64::try_from(custody_coordinator::Clock::now(&self.clock)).expect("now");
                let session =
                    custody_coordinator::signing::commitment_session_id(&self.group.public_key());
                Envelope::seal(
                    &s.identity,
                    &SealParams {
                        kind: EnvelopeType::CommitmentBatch,
                        session_id: session,
                        sequence: s.sequence,
                        created_at: now,
                        expires_at: now + 86_400 * 30,
                        recipients: &[],
                    },
                    &batch.encode(),
                    &mut OsRng,
                )
                .expect("seal")
                .encode()
            };
            let (st, v) = self
                .call(
                    "POST",
                    "/v1/commitments",
                    Some(&operator.token),
                    None,
                    Some(json!({ "envelope": B64.encode(env) })),
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{v}");
            assert_eq!(v["added"], json!(count));
        }
    }

    /// What a signer does with a round: verify the coordinator's decision under the pinned
    /// policy, from its own inspection of the PSBT, then sign.
    pub fn sign_round(&mut self, signer: usize, psbt_b64: &str) -> Result<String, String> {
        let mut psbt = Psbt::deserialize(&B64.decode(psbt_b64).expect("b64")).expect("psbt");
        let verified = verified_policy(&self.signed_policy);
        let decision_bytes = custody_bitcoin::fields::decision(&psbt)
            .map_err(|e| e.to_string())?
            .ok_or("no decision in the PSBT")?
            .to_vec();
        let decision = Decision::decode(&decision_bytes).map_err(|e| e.to_string())?;
        let inspection =
            custody_bitcoin::inspect_psbt(&self.wallet, &psbt, &InspectPolicy::default())
                .map_err(|e| e.to_string())?;
        let withdrawal = custody_policy::Withdrawal {
            asset: "BTC".into(),
            payments: inspection
                .outputs
                .iter()
                .filter(|o| !matches!(o.ownership, Ownership::Change { .. }))
                .map(|o| custody_policy::Payment {
                    address: o.address.clone().expect("address"),
                    amount: u128::from(o.amount_sat),
                })
                .collect(),
        };
        let txid = psbt.unsigned_tx.compute_txid().to_byte_array();
        let now = u64::try_from(custody_coordinator::Clock::now(&self.clock)).expect("now");
        custody_policy::verify_decision(&decision, &verified, &withdrawal, &txid, now)
            .map_err(|e| e.to_string())?;
        let s = &mut self.signers[signer];
        custody_bitcoin::sign_psbt(
            &self.wallet,
            &s.share,
            &s.seed,
            &mut s.store,
            &mut psbt,
            &InspectPolicy::default(),
        )
        .map_err(|e| e.to_string())?;
        Ok(B64.encode(psbt.serialize()))
    }

    /// An approver's signature over a withdrawal's approval digest.
    pub fn approval_signature(&self, approver: usize, digest_hex: &str) -> String {
        let digest: [u8; 32] = hex::decode(digest_hex)
            .expect("hex")
            .try_into()
            .expect("32");
        hex::encode(self.approver_ids[approver].sign_in_domain(
            SigningDomain::Policy,
            &digest,
            &mut OsRng,
        ))
    }
}

pub fn verified_policy(p: &SignedPolicy) -> VerifiedPolicy {
    p.verify(&p.document().admins).expect("policy verifies")
}

/// A 2-of-2-admin policy: BTC up to 1 BTC per transaction, 2 approvals (from 0 BTC: voids too), a daily
/// velocity limit of 1.5 BTC and 5 withdrawals.
pub fn policy(
    version: u64,
    admins: &[Identity],
    app: &App,
    approvers: &[Identity],
    destination: &str,
    announced_at: i64,
    effective_from: i64,
) -> SignedPolicy {
    let velocity = vec![VelocityLimit {
        asset: "BTC".into(),
        window_secs: 86_400,
        max_total: 150_000_000,
        max_count: 5,
    }];
    policy_with_velocity(
        version,
        admins,
        app,
        approvers,
        destination,
        announced_at,
        effective_from,
        velocity,
    )
}

/// As [`policy`] with other velocity limits.
#[allow(clippy::too_many_arguments)]
pub fn policy_with_velocity(
    version: u64,
    admins: &[Identity],
    app: &App,
    approvers: &[Identity],
    destination: &str,
    announced_at: i64,
    effective_from: i64,
    velocity: Vec<VelocityLimit>,
) -> SignedPolicy {
    let doc = PolicyDocument {
        version,
        network: custody_policy::Network::Regtest,
        announced_at: u64::try_from(announced_at).expect("time"),
        effective_from: u64::try_from(effective_from).expect("time"),
        change_delay_secs: 0,
        admins: AdminQuorum {
            threshold: 2,
            admins: admins.iter().map(Identity::card).collect(),
        },
        coordinator: app.identity.card(),
        approvers: approvers.iter().map(Identity::card).collect(),
        whitelist: vec![
            WhitelistEntry {
                address: destination.to_owned(),
                active_from: 0,
            },
            WhitelistEntry {
                address: regtest_address(8),
                active_from: 0,
            },
            WhitelistEntry {
                address: ETH_DEST.to_owned(),
                active_from: 0,
            },
        ],
        limits: vec![
            TransactionLimit {
                asset: "BTC".into(),
                max_amount: 100_000_000,
            },
            TransactionLimit {
                asset: "ETH".into(),
                max_amount: 100 * ETHER,
            },
            TransactionLimit {
                asset: format!("ERC20:{TOKEN}"),
                max_amount: 1_000_000_000_000,
            },
            TransactionLimit {
                asset: format!("ERC20:{HARDHAT_TOKEN}"),
                max_amount: 1_000_000_000_000,
            },
        ],
        rules: vec![
            // From 0: a void (an internal transfer, ADR 0031) needs two approvals too.
            Rule {
                asset: "BTC".into(),
                min_amount: 0,
                max_amount: 100_000_000,
                window: None,
                action: Action::Allow { approvals: 2 },
            },
            Rule {
                asset: "ETH".into(),
                min_amount: 0,
                max_amount: 100 * ETHER,
                window: None,
                action: Action::Allow { approvals: 2 },
            },
            Rule {
                asset: format!("ERC20:{TOKEN}"),
                min_amount: 1,
                max_amount: 1_000_000_000_000,
                window: None,
                action: Action::Allow { approvals: 2 },
            },
            Rule {
                asset: format!("ERC20:{HARDHAT_TOKEN}"),
                min_amount: 1,
                max_amount: 1_000_000_000_000,
                window: None,
                action: Action::Allow { approvals: 2 },
            },
        ],
        velocity,
    };
    let mut signed = SignedPolicy::new(doc).expect("valid policy");
    for a in admins {
        signed.sign(a, &mut OsRng);
    }
    signed
}

pub async fn call(
    app: &App,
    method: &str,
    path: &str,
    token: Option<&str>,
    idem: Option<&str>,
    body: Option<Value>,
    ip: &str,
) -> (StatusCode, Value) {
    let router = custody_coordinator::router(app.clone());
    call_router(router, method, path, token, idem, body, ip).await
}

/// As [`call`] through an already built router (the daemon builds it once).
pub async fn call_router(
    router: axum::Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    idem: Option<&str>,
    body: Option<Value>,
    ip: &str,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .header("user-agent", "coordinator-tests")
        .header("x-forwarded-for", ip);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(k) = idem {
        req = req.header("idempotency-key", k);
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    send(router, req.body(body).expect("request")).await
}

/// Sends a request built by the caller (extra headers: a device id, an API-key
/// signature) and reads the answer as JSON (a body that is not JSON as a string).
pub async fn send(router: axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let res = router.oneshot(req).await.expect("infallible");
    let status = res.status();
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    (status, v)
}

pub fn new_key() -> String {
    hex::encode(rand_bytes::<12>())
}

pub fn parse_txid(s: &str) -> bitcoin::Txid {
    bitcoin::Txid::from_str(s).expect("txid")
}

/// The people of a withdrawal.
#[derive(Clone)]
pub struct Flow {
    pub operator: Session,
    pub approvers: Vec<Session>,
    pub user: Session,
    pub id: String,
    pub digest: String,
}

impl Harness {
    /// Principals, funds synced, a withdrawal of `amount` requested (no hold other than
    /// the unusual-withdrawal one, which is waited out) and commitments uploaded.
    pub async fn requested(&mut self, amount: u64) -> Flow {
        use custody_coordinator::accounts::Role;
        let operator = self
            .principal("ops@example.com", Role::Operator, None)
            .await;
        let a = self
            .principal(
                "alice@example.com",
                Role::Approver,
                Some(&self.approver_ids[0]),
            )
            .await;
        let b = self
            .principal(
                "bob@example.com",
                Role::Approver,
                Some(&self.approver_ids[1]),
            )
            .await;
        let user = self.customer("carol@example.com").await;
        self.clock.advance(25 * 3600);
        let mut f = Flow {
            operator,
            approvers: vec![a, b],
            user,
            id: String::new(),
            digest: String::new(),
        };
        self.relogin_all(&mut [&mut f.operator, &mut f.user]).await;
        for s in &mut f.approvers {
            self.relogin(s).await;
        }
        let (st, v) = self
            .call(
                "POST",
                "/v1/admin/utxos/sync",
                Some(&f.operator.token),
                None,
                None,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let code = self.totp(&f.user);
        let (st, w) = self
            .call("POST", "/v1/withdrawals", Some(&f.user.token), Some(&new_key()), Some(json!({ "asset": "BTC", "address": self.destination, "amount": amount, "totp": code })))
            .await;
        assert_eq!(st, StatusCode::CREATED, "{w}");
        f.id = w["id"].as_str().expect("id").to_owned();
        f.digest = w["approval_digest"].as_str().expect("digest").to_owned();
        let op = f.operator.clone();
        self.upload_commitments(&op, 4).await;
        f
    }

    /// Approval by approver `i` of the flow; returns the HTTP answer.
    pub async fn approve(&self, f: &Flow, i: usize) -> (StatusCode, Value) {
        let code = self.totp(&f.approvers[i]);
        let sig = self.approval_signature(i, &f.digest);
        self.call(
            "POST",
            &format!("/v1/withdrawals/{}/approvals", f.id),
            Some(&f.approvers[i].token),
            Some(&new_key()),
            Some(json!({ "signature": sig, "totp": code })),
        )
        .await
    }

    /// Approved by both approvers, the hold waited out, signed by signers 1 and 2.
    pub async fn signed(&mut self, amount: u64) -> Flow {
        let mut f = self.requested(amount).await;
        for i in 0..2 {
            let (st, v) = self.approve(&f, i).await;
            assert_eq!(st, StatusCode::OK, "{v}");
        }
        self.clock.advance(25 * 3600);
        self.relogin(&mut f.operator).await;
        let (st, round) = self.round(&f).await;
        assert_eq!(st, StatusCode::OK, "{round}");
        let psbt = round["psbt"].as_str().expect("psbt").to_owned();
        for signer in [0, 1] {
            let answer = self.sign_round(signer, &psbt).expect("signer accepts");
            let (st, v) = self
                .call(
                    "POST",
                    &format!("/v1/withdrawals/{}/shares", f.id),
                    Some(&f.operator.token),
                    Some(&new_key()),
                    Some(json!({ "psbt": answer })),
                )
                .await;
            assert!(st.is_success(), "{v}");
        }
        f
    }

    pub async fn round(&self, f: &Flow) -> (StatusCode, Value) {
        self.call(
            "POST",
            &format!("/v1/withdrawals/{}/round", f.id),
            Some(&f.operator.token),
            Some(&new_key()),
            Some(json!({ "signers": [1, 2] })),
        )
        .await
    }

    pub async fn broadcast(&self, f: &Flow) -> (StatusCode, Value) {
        self.call(
            "POST",
            &format!("/v1/withdrawals/{}/broadcast", f.id),
            Some(&f.operator.token),
            None,
            None,
        )
        .await
    }

    /// The withdrawal as the operator sees it (`GET /v1/withdrawals/{id}`).
    pub async fn view(&self, f: &Flow) -> Value {
        self.call(
            "GET",
            &format!("/v1/withdrawals/{}", f.id),
            Some(&f.operator.token),
            None,
            None,
        )
        .await
        .1
    }

    pub async fn state(&self, f: &Flow) -> String {
        self.view(f).await["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// How many audit entries of `kind` the log holds.
    pub async fn audit_count(&self, kind: &str) -> usize {
        custody_coordinator::audit::entries(&self.app.db, 0, 100_000)
            .await
            .expect("audit")
            .into_iter()
            .filter(|e| e.kind == kind)
            .count()
    }
}
