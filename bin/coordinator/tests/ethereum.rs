//! Ethereum withdrawals through the HTTP API on SQLite and PostgreSQL: a 2-of-3
//! threshold-ECDSA key (real CGGMP21 ceremonies with public test primes), the development
//! EVM chain, holds, approvals, the signers' offline checks, presignatures, nonces,
//! combine, gated broadcast and confirmation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use axum::http::StatusCode;
use common::*;
use custody_coordinator::accounts::Role;
use custody_ecdsa::{EcdsaCeremonyKind, EcdsaKeyShare, EcdsaPlan, MemoryPresignatureStore};
use custody_ethereum::{Address, EthTransaction, U256};
use custody_evm::{EvmBackend, FileEvmBackend};
use custody_threshold::Identity;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::{json, Value};

const CHAIN_ID: u64 = 31_337;

/// The ECDSA key, made once per test binary (the ceremonies are the slow part).
struct Base {
    ids: Vec<Identity>,
    shares: Vec<EcdsaKeyShare>,
    key_plan: EcdsaPlan,
}

static BASE: std::sync::OnceLock<Base> = std::sync::OnceLock::new();

fn base() -> &'static Base {
    BASE.get_or_init(|| {
        let mut rng = ChaCha20Rng::from_entropy();
        let ids: Vec<Identity> = ["eth-signer1", "eth-signer2", "eth-signer3"]
            .iter()
            .map(|n| Identity::generate(n, &mut rng).expect("identity"))
            .collect();
        let key_plan = EcdsaPlan::new(
            rand_bytes::<16>(),
            EcdsaCeremonyKind::Key,
            "coordinator tests ETH",
            2,
            ids.iter().map(Identity::card).collect(),
        )
        .expect("plan");
        let shares = custody_ecdsa::testing::generate_key(&key_plan, &ids, &mut rng);
        Base {
            ids,
            shares,
            key_plan,
        }
    })
}

/// The key holders of the ECDSA key, with a fresh batch of four presignatures of
/// signers 1 and 2.
struct Keys {
    ids: &'static [Identity],
    shares: &'static [EcdsaKeyShare],
    key_plan: &'static EcdsaPlan,
    presign_plan: EcdsaPlan,
    stores: Vec<MemoryPresignatureStore>,
}

fn keys() -> Keys {
    let b = base();
    let presign_plan =
        custody_ecdsa::testing::presign_plan(&b.ids, &b.shares[0], &[1, 2], 4, rand_bytes::<16>());
    let stores = custody_ecdsa::testing::presign(
        &b.ids,
        &b.shares,
        &presign_plan,
        &mut ChaCha20Rng::from_entropy(),
    );
    Keys {
        ids: &b.ids,
        shares: &b.shares,
        key_plan: &b.key_plan,
        presign_plan,
        stores,
    }
}

struct Eth {
    h: Harness,
    keys: Keys,
    /// The development chain file, when the test runs on it (it mines on demand).
    file: Option<FileEvmBackend>,
    /// Balances and receipts, whatever the backend.
    chain: std::sync::Arc<dyn EvmBackend>,
    group: Address,
    operator: Session,
    approvers: Vec<Session>,
    user: Session,
    _files: tempfile::TempDir,
}

/// On the development chain file (funded with ETH and the `TOKEN` ERC-20).
async fn setup(engine: Engine) -> Option<Eth> {
    let keys = keys();
    let files = tempfile::tempdir().expect("tempdir");
    let chain_path = files.path().join("evm.json");
    let chain = FileEvmBackend::open_or_create(&chain_path, CHAIN_ID).expect("evm chain");
    let group = Address::from(keys.shares[0].group_key().address());
    chain
        .fund(group, U256::from(10 * ETHER))
        .await
        .expect("fund");
    chain
        .fund_erc20(
            TOKEN.parse().expect("token"),
            group,
            U256::from(5_000_000u64),
        )
        .await
        .expect("fund token");
    chain.mine(1).await.expect("mine");
    let backend: std::sync::Arc<dyn EvmBackend> = std::sync::Arc::new(chain.clone());
    let config = format!(
        "[chain]\nkind = \"file\"\npath = {:?}\nchain_id = {CHAIN_ID}\n",
        chain_path
    );
    finish_setup(engine, keys, files, config, backend, Some(chain)).await
}

/// On a real Hardhat node (`.ci/evm-node.sh`): the group is funded from a development
/// account and holds the test ERC-20, deployed first (so at `HARDHAT_TOKEN`).
async fn setup_on_node(engine: Engine, node: &custody_evm::test_node::HardhatNode) -> Option<Eth> {
    let keys = keys();
    let files = tempfile::tempdir().expect("tempdir");
    let group = Address::from(keys.shares[0].group_key().address());
    let token = node
        .deploy_test_token()
        .await
        .expect("deploy the test token");
    assert_eq!(
        token,
        HARDHAT_TOKEN.parse::<Address>().expect("token"),
        "the test token is the first contract of development account 0"
    );
    node.fund(group, U256::from(10 * ETHER))
        .await
        .expect("fund");
    node.transfer_token(token, group, U256::from(5_000_000u64))
        .await
        .expect("fund token");
    let backend: std::sync::Arc<dyn EvmBackend> = std::sync::Arc::new(node.backend());
    let config = format!(
        "[chain]\nkind = \"json-rpc\"\nurl = {:?}\nchain_id = {}\n",
        node.url().expose_secret().as_str(),
        node.chain_id()
    );
    finish_setup(engine, keys, files, config, backend, None).await
}

async fn finish_setup(
    engine: Engine,
    keys: Keys,
    files: tempfile::TempDir,
    chain_config: String,
    backend: std::sync::Arc<dyn EvmBackend>,
    file: Option<FileEvmBackend>,
) -> Option<Eth> {
    let group = Address::from(keys.shares[0].group_key().address());
    let key_plan_file = files.path().join("eth-key-plan.bin");
    std::fs::write(&key_plan_file, keys.key_plan.encode()).expect("plan file");
    let group_file = files.path().join("eth-group.key");
    std::fs::write(&group_file, keys.shares[0].group_key().encode()).expect("group file");
    let ethereum = toml::from_str(&format!(
        "key_plan_file = {:?}\ngroup_key_file = {:?}\n{chain_config}",
        key_plan_file, group_file
    ))
    .expect("ethereum config");
    let h = Harness::with_config(engine, |c| c.ethereum = Some(ethereum)).await?;
    let operator = h.principal("ops@example.com", Role::Operator, None).await;
    let mut approvers = Vec::new();
    for (i, name) in ["alice", "bob"].iter().enumerate() {
        approvers.push(
            h.principal(
                &format!("{name}@example.com"),
                Role::Approver,
                Some(&h.approver_ids[i]),
            )
            .await,
        );
    }
    let user = h.customer("carol@example.com").await;
    let code = h.totp(&user);
    let (st, v) = h
        .call(
            "POST",
            "/v1/me/whitelist",
            Some(&user.token),
            None,
            Some(json!({ "address": ETH_DEST.to_lowercase(), "totp": code })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["address"], ETH_DEST, "whitelisted checksummed: {v}");
    let mut eth = Eth {
        h,
        keys,
        file,
        chain: backend,
        group,
        operator,
        approvers,
        user,
        _files: files,
    };
    // The whitelist activation delay.
    eth.h.clock.advance(25 * 3600);
    eth.relogin().await;
    let (st, v) = eth
        .h
        .call(
            "POST",
            "/v1/ethereum/presignatures",
            Some(&eth.operator.token),
            None,
            Some(json!({ "plan": hex::encode(eth.keys.presign_plan.encode()) })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["added"], 4);
    Some(eth)
}

impl Eth {
    async fn relogin(&mut self) {
        self.h
            .relogin_all(&mut [&mut self.operator, &mut self.user])
            .await;
        for s in &mut self.approvers {
            self.h.relogin(s).await;
        }
    }

    /// Requests, approves and waits out holds; returns the withdrawal id.
    async fn approved(&mut self, asset: &str, amount: u128) -> String {
        let code = self.h.totp(&self.user);
        let (st, w) = self
            .h
            .call(
                "POST",
                "/v1/withdrawals",
                Some(&self.user.token),
                Some(&new_key()),
                Some(json!({ "asset": asset, "address": ETH_DEST, "amount": amount.to_string(), "totp": code })),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{w}");
        assert_eq!(w["amount_units"], amount.to_string());
        let id = w["id"].as_str().expect("id").to_owned();
        let digest = w["approval_digest"].as_str().expect("digest").to_owned();
        for i in 0..2 {
            let code = self.h.totp(&self.approvers[i]);
            let sig = self.h.approval_signature(i, &digest);
            let (st, v) = self
                .h
                .call(
                    "POST",
                    &format!("/v1/withdrawals/{id}/approvals"),
                    Some(&self.approvers[i].token),
                    Some(&new_key()),
                    Some(json!({ "signature": sig, "totp": code })),
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{v}");
        }
        self.h.clock.advance(25 * 3600);
        self.relogin().await;
        id
    }

    async fn round(&self, id: &str) -> (StatusCode, Value) {
        self.h
            .call(
                "POST",
                &format!("/v1/withdrawals/{id}/round"),
                Some(&self.operator.token),
                Some(&new_key()),
                Some(json!({ "signers": [1, 2] })),
            )
            .await
    }

    /// What signer `i` (0-based) does offline: decode the transaction, recompute the hash
    /// and the intent, check the coordinator's decision against the policy, spend the
    /// named presignature. Returns the partial signature (hex).
    fn sign(&mut self, i: usize, round: &Value) -> Result<String, String> {
        let eth = &round["eth"];
        let raw = hex::decode(eth["transaction"].as_str().unwrap()).unwrap();
        let tx = EthTransaction::decode_unsigned(&raw).map_err(|e| e.to_string())?;
        let request =
            custody_ethereum::EthSignRequest::from_ur(eth["sign_request"].as_str().unwrap())
                .map_err(|e| e.to_string())?;
        let from_request = request.transaction().map_err(|e| e.to_string())?;
        from_request
            .ensure_same_as(&tx)
            .map_err(|e| e.to_string())?;
        let decision = custody_policy::Decision::decode(
            &hex::decode(eth["decision"].as_str().unwrap()).unwrap(),
        )
        .map_err(|e| e.to_string())?;
        let withdrawal = tx
            .policy_withdrawal_from(self.group)
            .map_err(|e| e.to_string())?;
        let policy = verified_policy(&self.h.signed_policy);
        custody_policy::verify_decision(
            &decision,
            &policy,
            &withdrawal,
            &tx.intent_digest(),
            u64::try_from(custody_coordinator::Clock::now(&self.h.clock)).unwrap(),
        )
        .map_err(|e| e.to_string())?;
        let id = custody_ecdsa::PresignatureId {
            batch: hex::decode(eth["presignature_batch"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap(),
            index: u16::try_from(eth["presignature_index"].as_u64().unwrap()).unwrap(),
        };
        let prehash = tx.signing_hash().0;
        let partial = custody_ecdsa::sign_prehash(
            &self.keys.shares[i],
            &self.keys.ids[i],
            &mut self.keys.stores[i],
            &id,
            &prehash,
            &mut ChaCha20Rng::from_entropy(),
        )
        .map_err(|e| e.to_string())?;
        Ok(hex::encode(partial.encode()))
    }

    async fn submit(&self, id: &str, partial: &str) -> (StatusCode, Value) {
        self.h
            .call(
                "POST",
                &format!("/v1/withdrawals/{id}/shares"),
                Some(&self.operator.token),
                Some(&new_key()),
                Some(json!({ "partial_signature": partial })),
            )
            .await
    }

    async fn signed(&mut self, asset: &str, amount: u128) -> (String, Value) {
        let id = self.approved(asset, amount).await;
        let (st, round) = self.round(&id).await;
        assert_eq!(st, StatusCode::OK, "{round}");
        for i in 0..2 {
            let partial = self.sign(i, &round).expect("signer accepts");
            let (st, v) = self.submit(&id, &partial).await;
            assert!(st.is_success(), "{v}");
        }
        (id, round)
    }

    async fn cancel(&self, who: &Session, id: &str) -> (StatusCode, Value) {
        self.h
            .call(
                "POST",
                &format!("/v1/withdrawals/{id}/cancel"),
                Some(&who.token),
                Some(&new_key()),
                Some(json!({})),
            )
            .await
    }

    async fn get(&self, id: &str) -> Value {
        self.h
            .call(
                "GET",
                &format!("/v1/withdrawals/{id}"),
                Some(&self.operator.token),
                None,
                None,
            )
            .await
            .1
    }
}

async fn ether_withdrawal_is_signed_broadcast_and_confirmed(engine: Engine) {
    let Some(mut e) = setup(engine).await else {
        return;
    };
    let amount = 3 * ETHER / 2;
    let (id, round) = e.signed("ETH", amount).await;
    assert_eq!(round["eth"]["summary"]["chain_id"], CHAIN_ID, "{round}");
    let v = e.get(&id).await;
    assert_eq!(v["state"], "signed", "{v}");
    assert_eq!(v["nonce"], 0);
    let (st, v) =
        e.h.call(
            "POST",
            &format!("/v1/withdrawals/{id}/broadcast"),
            Some(&e.operator.token),
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let dest: Address = ETH_DEST.parse().unwrap();
    custody_coordinator::tick(&e.h.app).await.unwrap();
    assert_eq!(e.get(&id).await["state"], "broadcast", "not mined yet");
    // An account has no children: a sent Ethereum withdrawal is not accelerated.
    let (st, a) =
        e.h.call(
            "POST",
            &format!("/v1/withdrawals/{id}/accelerate"),
            Some(&e.operator.token),
            Some(&common::new_key()),
            Some(json!({ "reason": "stuck", "fee_rate_sat_vb": 50 })),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{a}");
    assert_eq!(a["error"]["code"], "not_bitcoin", "{a}");
    e.file.as_ref().unwrap().mine(1).await.unwrap();
    assert_eq!(e.chain.balance(dest).await.unwrap(), U256::from(amount));
    custody_coordinator::tick(&e.h.app).await.unwrap();
    assert_eq!(e.get(&id).await["state"], "confirmed");
    // The group paid the value and at most the worst-case fee.
    let left = e.chain.balance(e.group).await.unwrap();
    assert!(left < U256::from(10 * ETHER - amount), "fees were paid");
    assert_eq!(e.h.audit_count("withdrawal.confirmed").await, 1);
    custody_coordinator::audit::verify(&e.h.app.db)
        .await
        .expect("log intact");
    // The wei went into the velocity running totals on approval and match the row.
    let mut tx = e.h.app.db.pool().begin().await.unwrap();
    let drift = custody_coordinator::velocity::check(&mut tx).await.unwrap();
    assert!(drift.is_empty(), "{drift:?}");
}
on_both!(ether_withdrawal_is_signed_broadcast_and_confirmed);

async fn token_withdrawal_pays_the_token_and_nonces_follow_each_other(engine: Engine) {
    let Some(mut e) = setup(engine).await else {
        return;
    };
    let (first, _) = e.signed("ETH", ETHER).await;
    let (second, round) = e.signed(&format!("ERC20:{TOKEN}"), 1_250_000).await;
    let action = &round["eth"]["summary"]["action"];
    assert_eq!(action["kind"], "erc20_transfer", "{round}");
    assert_eq!(action["recipient"], ETH_DEST);
    assert_eq!(action["amount"], "1250000");
    assert_eq!(e.get(&first).await["nonce"], 0);
    assert_eq!(e.get(&second).await["nonce"], 1, "no gap, no reuse");
    for id in [&first, &second] {
        let (st, v) =
            e.h.call(
                "POST",
                &format!("/v1/withdrawals/{id}/broadcast"),
                Some(&e.operator.token),
                None,
                None,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    e.file.as_ref().unwrap().mine(1).await.unwrap();
    let dest: Address = ETH_DEST.parse().unwrap();
    assert_eq!(
        e.chain
            .erc20_balance(TOKEN.parse().unwrap(), dest)
            .await
            .unwrap(),
        U256::from(1_250_000u64)
    );
    assert_eq!(e.chain.balance(dest).await.unwrap(), U256::from(ETHER));
}
on_both!(token_withdrawal_pays_the_token_and_nonces_follow_each_other);

async fn tampered_answers_and_spent_presignatures_are_refused(engine: Engine) {
    let Some(mut e) = setup(engine).await else {
        return;
    };
    let id = e.approved("ETH", ETHER).await;
    let (st, round) = e.round(&id).await;
    assert_eq!(st, StatusCode::OK, "{round}");
    // Exporting again gives the same round (same nonce, same presignature).
    let (_, again) = e.round(&id).await;
    assert_eq!(again["eth"]["transaction"], round["eth"]["transaction"]);
    assert_eq!(
        again["eth"]["presignature_index"],
        round["eth"]["presignature_index"]
    );
    // A signer shown another recipient than approved refuses offline (the decision's
    // intent no longer matches).
    let mut forged = round.clone();
    let raw = hex::decode(round["eth"]["transaction"].as_str().unwrap()).unwrap();
    let tx = EthTransaction::decode_unsigned(&raw).unwrap();
    let other = EthTransaction::eip1559(custody_ethereum::Eip1559Fields {
        chain_id: tx.chain_id(),
        nonce: tx.nonce(),
        to: Address::repeat_byte(0x66),
        value: tx.value(),
        gas_limit: tx.gas_limit(),
        max_fee_per_gas: tx.max_fee_per_gas(),
        max_priority_fee_per_gas: tx.max_priority_fee_per_gas().unwrap(),
        input: tx.input().clone(),
    })
    .unwrap();
    forged["eth"]["transaction"] = json!(hex::encode(other.encode_unsigned()));
    let err = e.sign(0, &forged).expect_err("tampered transaction");
    assert!(err.contains("to") || err.contains("recipient"), "{err}");
    // A partial over another transaction is refused by the coordinator.
    let batch: [u8; 16] = hex::decode(round["eth"]["presignature_batch"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let index = u16::try_from(round["eth"]["presignature_index"].as_u64().unwrap()).unwrap();
    let stray = custody_ecdsa::sign_prehash(
        &e.keys.shares[1],
        &e.keys.ids[1],
        &mut e.keys.stores[1],
        &custody_ecdsa::PresignatureId {
            batch,
            index: index + 1,
        },
        &other.signing_hash().0,
        &mut ChaCha20Rng::from_entropy(),
    )
    .expect("signs whatever it is given");
    let (st, v) = e.submit(&id, &hex::encode(stray.encode())).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("another transaction"),
        "{v}"
    );
    let partial = e.sign(0, &round).expect("honest");
    let (st, v) = e.submit(&id, &partial).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    // The same presignature cannot be spent twice by a signer.
    let err = e.sign(0, &round).expect_err("presignature reuse");
    assert!(err.contains("already") || err.contains("used"), "{err}");
    // Garbage is a clear 400.
    let (st, v) = e.submit(&id, "00ff").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let partial = e.sign(1, &round).expect("honest");
    let (st, v) = e.submit(&id, &partial).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(e.get(&id).await["state"], "signed");
}
on_both!(tampered_answers_and_spent_presignatures_are_refused);

async fn a_hold_or_freeze_after_signing_blocks_the_broadcast(engine: Engine) {
    let Some(mut e) = setup(engine).await else {
        return;
    };
    let (id, _) = e.signed("ETH", ETHER).await;
    let (st, v) = e
        .h
        .call(
            "POST",
            "/v1/events",
            Some(INGEST_TOKEN),
            None,
            Some(json!({ "email": "carol@example.com", "kind": "two_factor_reset", "occurred_at": 0 })),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let (st, v) =
        e.h.call(
            "POST",
            &format!("/v1/withdrawals/{id}/broadcast"),
            Some(&e.operator.token),
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "hold_active");
    let dest: Address = ETH_DEST.parse().unwrap();
    assert_eq!(
        e.chain.balance(dest).await.unwrap(),
        U256::ZERO,
        "nothing left"
    );
}
on_both!(a_hold_or_freeze_after_signing_blocks_the_broadcast);

async fn broadcast(e: &Eth, id: &str) {
    let (st, v) =
        e.h.call(
            "POST",
            &format!("/v1/withdrawals/{id}/broadcast"),
            Some(&e.operator.token),
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

/// A real EVM node (Hardhat on loopback) accepts the threshold-signed ETH and ERC-20
/// withdrawals: mined, the recipient's balances change by exactly the amounts, and the
/// coordinator marks both confirmed from their receipts.
async fn a_real_node_mines_ether_and_token_withdrawals(engine: Engine) {
    let Some(node) = custody_evm::test_node::HardhatNode::start_for_test().await else {
        return;
    };
    let Some(mut e) = setup_on_node(engine, &node).await else {
        return;
    };
    let dest: Address = ETH_DEST.parse().unwrap();
    let token: Address = HARDHAT_TOKEN.parse().unwrap();
    let before = e.chain.balance(dest).await.unwrap();
    let (ether, _) = e.signed("ETH", ETHER / 4).await;
    let (tokens, round) = e.signed(&format!("ERC20:{HARDHAT_TOKEN}"), 1_250_000).await;
    assert_eq!(round["eth"]["summary"]["action"]["kind"], "erc20_transfer");
    assert_eq!(e.get(&tokens).await["nonce"], 1, "nonces follow the node's");
    broadcast(&e, &ether).await;
    broadcast(&e, &tokens).await;
    assert_eq!(
        e.chain.balance(dest).await.unwrap(),
        before + U256::from(ETHER / 4),
        "the recipient received exactly the ether"
    );
    assert_eq!(
        e.chain.erc20_balance(token, dest).await.unwrap(),
        U256::from(1_250_000u64),
        "the recipient received exactly the tokens"
    );
    custody_coordinator::tick(&e.h.app).await.unwrap();
    assert_eq!(e.get(&ether).await["state"], "confirmed");
    assert_eq!(e.get(&tokens).await["state"], "confirmed");
}
on_both!(a_real_node_mines_ether_and_token_withdrawals);

/// Presignatures no round has taken.
async fn unused_presignatures(e: &Eth) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM presignatures WHERE used_by IS NULL")
        .fetch_one(e.h.app.db.pool())
        .await
        .unwrap()
}

/// A token transfer the chain says would fail is not signed (no presignature, no nonce
/// spent); one that reverts when mined (the balance went to an earlier withdrawal) is
/// marked failed with the block in its reason, announced, audited and taken out of the
/// velocity totals, while the earlier one is confirmed. Cancelled before its round, a
/// withdrawal leaves nothing behind; once signed it cannot be (its nonce is fixed).
async fn a_token_transfer_that_would_revert_is_not_signed_and_one_that_reverts_fails(
    engine: Engine,
) {
    let Some(mut e) = setup(engine).await else {
        return;
    };
    let asset = format!("ERC20:{TOKEN}");
    let token: Address = TOKEN.parse().unwrap();
    // The group holds 5 000 000; 6 000 000 cannot be paid.
    let too_much = e.approved(&asset, 6_000_000).await;
    let before = unused_presignatures(&e).await;
    let (st, v) = e.round(&too_much).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "would_revert", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing was signed"),
        "{v}"
    );
    assert_eq!(unused_presignatures(&e).await, before, "presignature kept");
    assert_eq!(e.get(&too_much).await["state"], "approved");
    // Its customer cancels it: no nonce was fixed, so nothing is left behind.
    let (st, v) = e.cancel(&e.user, &too_much).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "cancelled");
    // Each of these can be paid alone; the second cannot after the first.
    let (first, _) = e.signed(&asset, 3_000_000).await;
    let (second, _) = e.signed(&asset, 3_000_000).await;
    assert_eq!(
        e.get(&first).await["nonce"],
        0,
        "the refused round took no nonce"
    );
    assert_eq!(e.get(&second).await["nonce"], 1);
    // Signed: its round fixed its nonce and spent a presignature; it is not called back.
    let (st, v) = e.cancel(&e.user, &second).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "round_exported", "{v}");
    broadcast(&e, &first).await;
    broadcast(&e, &second).await;
    e.file.as_ref().unwrap().mine(1).await.unwrap();
    custody_coordinator::tick(&e.h.app).await.unwrap();
    assert_eq!(e.get(&first).await["state"], "confirmed");
    let failed = e.get(&second).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(
        failed["failure"]
            .as_str()
            .unwrap_or_default()
            .contains("reverted in block"),
        "{failed}"
    );
    let dest: Address = ETH_DEST.parse().unwrap();
    assert_eq!(
        e.chain.erc20_balance(token, dest).await.unwrap(),
        U256::from(3_000_000u64),
        "only the first was paid"
    );
    assert_eq!(
        e.chain.erc20_balance(token, e.group).await.unwrap(),
        U256::from(2_000_000u64)
    );
    assert_eq!(e.h.audit_count("withdrawal.failed").await, 1);
    let user_told: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbox WHERE kind = 'withdrawal.failed' AND principal_id = $1",
    )
    .bind(e.user.id.clone())
    .fetch_one(e.h.app.db.pool())
    .await
    .unwrap();
    assert_eq!(user_told, 1, "the customer is told");
    // A second pass changes nothing more.
    custody_coordinator::tick(&e.h.app).await.unwrap();
    assert_eq!(e.h.audit_count("withdrawal.failed").await, 1);
    custody_coordinator::audit::verify(&e.h.app.db)
        .await
        .expect("log intact");
    let mut tx = e.h.app.db.pool().begin().await.unwrap();
    let drift = custody_coordinator::velocity::check(&mut tx).await.unwrap();
    assert!(
        drift.is_empty(),
        "the failed one left the totals: {drift:?}"
    );
}
on_both!(a_token_transfer_that_would_revert_is_not_signed_and_one_that_reverts_fails);

impl Eth {
    /// Starts the void of `id` (operator, with a reason) and has both approvers approve it;
    /// returns the void's id.
    async fn void_approved(&mut self, id: &str) -> String {
        let (st, v) = self
            .h
            .call(
                "POST",
                &format!("/v1/withdrawals/{id}/void"),
                Some(&self.operator.token),
                Some(&new_key()),
                Some(json!({ "reason": "ticket 5120: wrong destination" })),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        assert_eq!(v["voids"], json!(id));
        assert_eq!(v["asset"], "ETH");
        assert_eq!(v["amount_units"], "0");
        assert_eq!(v["address"], json!(self.group.to_checksum(None)));
        let void_id = v["id"].as_str().unwrap().to_owned();
        let digest = v["approval_digest"].as_str().unwrap().to_owned();
        for i in 0..2 {
            let code = self.h.totp(&self.approvers[i]);
            let sig = self.h.approval_signature(i, &digest);
            let (st, a) = self
                .h
                .call(
                    "POST",
                    &format!("/v1/withdrawals/{void_id}/approvals"),
                    Some(&self.approvers[i].token),
                    Some(&new_key()),
                    Some(json!({ "signature": sig, "totp": code })),
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{a}");
        }
        void_id
    }
}

fn fees_of(round: &Value) -> (u128, u128, u64) {
    let raw = hex::decode(round["eth"]["transaction"].as_str().unwrap()).unwrap();
    let tx = EthTransaction::decode_unsigned(&raw).unwrap();
    (
        tx.max_fee_per_gas(),
        tx.max_priority_fee_per_gas().unwrap(),
        tx.nonce(),
    )
}

/// A signed ether withdrawal that must never pay is voided: 0 ETH to the wallet itself
/// with its nonce, at fees a node takes as its replacement, signed by the signers as an
/// internal transfer. Once mined the original is cancelled, nothing was paid, and the
/// next withdrawal takes the next nonce (the sequence is not blocked).
async fn a_signed_ether_withdrawal_is_voided_with_its_nonce(engine: Engine) {
    let Some(mut e) = setup(engine).await else {
        return;
    };
    let (id, round) = e.signed("ETH", ETHER).await;
    let (w_max, w_prio, w_nonce) = fees_of(&round);
    // A customer cannot send to the wallet itself (that is what a void looks like).
    let code = e.h.totp(&e.user);
    let (st, v) =
        e.h.call(
            "POST",
            "/v1/withdrawals",
            Some(&e.user.token),
            Some(&new_key()),
            Some(json!({ "asset": "ETH", "address": e.group.to_checksum(None), "amount": "5", "totp": code })),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let void_id = e.void_approved(&id).await;
    assert_eq!(e.get(&id).await["voided_by"], json!(void_id));
    let (st, round) = e.round(&void_id).await;
    assert_eq!(st, StatusCode::OK, "{round}");
    let (v_max, v_prio, v_nonce) = fees_of(&round);
    assert_eq!(v_nonce, w_nonce, "the original's nonce");
    assert!(v_max >= w_max + w_max / 10 && v_prio >= w_prio + w_prio / 10);
    for i in 0..2 {
        let partial = e
            .sign(i, &round)
            .expect("the signers take 0 ETH to themselves as an internal transfer");
        let (st, v) = e.submit(&void_id, &partial).await;
        assert!(st.is_success(), "{v}");
    }
    let (st, v) =
        e.h.call(
            "POST",
            &format!("/v1/withdrawals/{id}/broadcast"),
            Some(&e.operator.token),
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "being_voided");
    broadcast(&e, &void_id).await;
    let before = e.chain.balance(e.group).await.unwrap();
    e.file.as_ref().unwrap().mine(1).await.unwrap();
    custody_coordinator::tick(&e.h.app).await.unwrap();
    assert_eq!(e.get(&void_id).await["state"], "confirmed");
    let original = e.get(&id).await;
    assert_eq!(original["state"], "cancelled", "{original}");
    assert!(original["failure"]
        .as_str()
        .unwrap()
        .starts_with(&format!("voided: replaced by {void_id}")));
    let dest: Address = ETH_DEST.parse().unwrap();
    assert_eq!(
        e.chain.balance(dest).await.unwrap(),
        U256::ZERO,
        "nothing paid"
    );
    let after = e.chain.balance(e.group).await.unwrap();
    assert!(
        after < before && before - after < U256::from(ETHER / 100),
        "only gas"
    );
    assert_eq!(e.h.audit_count("withdrawal.voided").await, 1);
    // The nonce sequence goes on.
    let (next, round) = e.signed("ETH", ETHER / 2).await;
    assert_eq!(fees_of(&round).2, w_nonce + 1);
    broadcast(&e, &next).await;
    e.file.as_ref().unwrap().mine(1).await.unwrap();
    custody_coordinator::tick(&e.h.app).await.unwrap();
    assert_eq!(e.get(&next).await["state"], "confirmed");
    let mut tx = e.h.app.db.pool().begin().await.unwrap();
    let drift = custody_coordinator::velocity::check(&mut tx).await.unwrap();
    assert!(drift.is_empty(), "{drift:?}");
    tx.rollback().await.unwrap();
    custody_coordinator::audit::verify(&e.h.app.db)
        .await
        .expect("log intact");
}
on_both!(a_signed_ether_withdrawal_is_voided_with_its_nonce);

/// The original of a void goes out first, from answers the coordinator never saw in full.
/// While the void's round is out without all its answers nothing can tell which of them
/// used the nonce, so nothing is recorded (and a second void may be started); once the
/// void's answers are in and its transaction is not mined, the original is recorded as
/// confirmed (its hash unknown) and both voids fail; their rounds are refused from then.
async fn an_ether_original_sent_behind_the_coordinators_back_fails_its_void(engine: Engine) {
    let Some(mut e) = setup(engine).await else {
        return;
    };
    let id = e.approved("ETH", ETHER).await;
    let (st, round) = e.round(&id).await;
    assert_eq!(st, StatusCode::OK, "{round}");
    let p1 = e.sign(0, &round).expect("signer 1");
    let (st, v) = e.submit(&id, &p1).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let p2 = e.sign(1, &round).expect("signer 2");
    let void_id = e.void_approved(&id).await;
    let (st, void_round) = e.round(&void_id).await;
    assert_eq!(st, StatusCode::OK, "{void_round}");
    assert_eq!(
        void_round["eth"]["summary"]["internal_transfer"], true,
        "{void_round}"
    );
    let v1 = e.sign(0, &void_round).expect("signer 1 signs the void");
    // Someone holding both answers finishes and sends the original.
    let raw = hex::decode(round["eth"]["transaction"].as_str().unwrap()).unwrap();
    let tx = EthTransaction::decode_unsigned(&raw).unwrap();
    let partials: Vec<_> = [&p1, &p2]
        .iter()
        .map(|p| custody_ecdsa::PartialSignature::decode(&hex::decode(p).unwrap()).unwrap())
        .collect();
    let sig =
        custody_ecdsa::combine(&e.keys.presign_plan, &tx.signing_hash().0, &partials).unwrap();
    let signed = tx
        .with_signature_for_sender(
            U256::from_be_bytes(sig.r),
            U256::from_be_bytes(sig.s),
            e.group,
        )
        .unwrap();
    e.chain.send_raw(&signed.encoded()).await.unwrap();
    e.file.as_ref().unwrap().mine(1).await.unwrap();
    custody_coordinator::tick(&e.h.app).await.unwrap();
    assert_eq!(e.get(&id).await["state"], "signing", "undecided");
    assert_eq!(e.get(&void_id).await["state"], "signing");
    // Its round is out: another void may be started (the first may never complete).
    let second = e.void_approved(&id).await;
    // The first void's answers come in: its transaction is known and not mined.
    let (st, v) = e.submit(&void_id, &v1).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let v2 = e.sign(1, &void_round).expect("signer 2 signs the void");
    let (st, v) = e.submit(&void_id, &v2).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    custody_coordinator::tick(&e.h.app).await.unwrap();
    let original = e.get(&id).await;
    assert_eq!(original["state"], "confirmed", "{original}");
    let failed = e.get(&void_id).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(
        failed["failure"].as_str().unwrap().contains("never saw"),
        "{failed}"
    );
    assert_eq!(e.get(&second).await["state"], "failed");
    assert_eq!(e.h.audit_count("withdrawal.void_failed").await, 2);
    let (st, v) = e.round(&second).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let (st, v) =
        e.h.call(
            "POST",
            &format!("/v1/withdrawals/{void_id}/broadcast"),
            Some(&e.operator.token),
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let dest: Address = ETH_DEST.parse().unwrap();
    assert_eq!(e.chain.balance(dest).await.unwrap(), U256::from(ETHER));
    custody_coordinator::audit::verify(&e.h.app.db)
        .await
        .expect("log intact");
}
on_both!(an_ether_original_sent_behind_the_coordinators_back_fails_its_void);

/// An Ethereum void signed here but sent by someone else is found on chain: recorded as
/// broadcast and confirmed, and its original cancelled.
async fn an_ether_void_sent_outside_the_coordinator_is_recorded(engine: Engine) {
    let Some(mut e) = setup(engine).await else {
        return;
    };
    let (id, _) = e.signed("ETH", ETHER).await;
    let void_id = e.void_approved(&id).await;
    let (st, round) = e.round(&void_id).await;
    assert_eq!(st, StatusCode::OK, "{round}");
    for i in 0..2 {
        let partial = e.sign(i, &round).expect("signer accepts");
        let (st, v) = e.submit(&void_id, &partial).await;
        assert!(st.is_success(), "{v}");
    }
    let raw: String = sqlx::query_scalar("SELECT final_tx FROM withdrawals WHERE id = $1")
        .bind(void_id.clone())
        .fetch_one(e.h.app.db.pool())
        .await
        .unwrap();
    e.chain
        .send_raw(&hex::decode(raw.trim_start_matches("0x")).unwrap())
        .await
        .unwrap();
    e.file.as_ref().unwrap().mine(1).await.unwrap();
    custody_coordinator::tick(&e.h.app).await.unwrap();
    assert_eq!(e.get(&void_id).await["state"], "confirmed");
    assert_eq!(e.get(&id).await["state"], "cancelled");
    assert_eq!(e.h.audit_count("withdrawal.voided").await, 1);
    custody_coordinator::audit::verify(&e.h.app.db)
        .await
        .expect("log intact");
}
on_both!(an_ether_void_sent_outside_the_coordinator_is_recorded);
