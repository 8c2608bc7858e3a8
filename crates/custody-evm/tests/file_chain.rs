//! The development chain file: what it refuses, what it mines as reverted, and that it is
//! a file (persistence, validation, chain id).

mod common;

use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::Signature;
use common::{key_address, key_sign, ETHER};
use custody_ethereum::calldata::{erc20_approve, erc20_transfer};
use custody_ethereum::{Eip1559Fields, EthTransaction};
use custody_evm::{
    Address, Bytes, EvmBackend, EvmError, FileEvmBackend, TxOutcome, B256, DEV_TOKEN_TRANSFER_GAS,
    TRANSFER_GAS, U256,
};

const KEY: [u8; 32] = [0x11; 32];
const CHAIN: u64 = 31337;
/// secp256k1's group order n.
fn order() -> U256 {
    "0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"
        .parse()
        .expect("n")
}

fn fields(nonce: u64, to: Address, value: U256) -> Eip1559Fields {
    Eip1559Fields {
        chain_id: CHAIN,
        nonce,
        to,
        value,
        gas_limit: TRANSFER_GAS,
        max_fee_per_gas: 3_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        input: Bytes::new(),
    }
}

fn tx(f: Eip1559Fields) -> EthTransaction {
    EthTransaction::eip1559(f).expect("valid")
}

async fn funded_chain(dir: &tempfile::TempDir) -> FileEvmBackend {
    let chain = FileEvmBackend::create(dir.path().join("evm.json"), CHAIN).expect("create");
    chain
        .fund(key_address(&KEY), U256::from(ETHER))
        .await
        .expect("fund");
    chain
}

fn refusal(result: Result<B256, EvmError>) -> String {
    match result {
        Err(EvmError::Rejected { reason, .. }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The raw bytes of `f` signed with `(r, s, parity)` exactly as given (no low-s fix-up).
fn raw_with_signature(f: &Eip1559Fields, r: U256, s: U256, parity: bool) -> Vec<u8> {
    let tx = TxEip1559 {
        chain_id: f.chain_id,
        nonce: f.nonce,
        gas_limit: f.gas_limit,
        max_fee_per_gas: f.max_fee_per_gas,
        max_priority_fee_per_gas: f.max_priority_fee_per_gas,
        to: f.to.into(),
        value: f.value,
        access_list: Default::default(),
        input: f.input.clone(),
    };
    let signed = tx.into_signed(Signature::new(r, s, parity));
    alloy_consensus::TxEnvelope::from(signed).encoded_2718()
}

#[tokio::test]
async fn refuses_a_bad_signature() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chain = funded_chain(&dir).await;
    let f = fields(0, Address::repeat_byte(0x42), U256::from(1000u64));
    let good = key_sign(&KEY, &tx(f.clone()));
    let sig = good.signature();

    // The same signature in its high-s form (EIP-2 forbids it).
    let high_s = raw_with_signature(&f, sig.r(), order() - sig.s(), !sig.v());
    let reason = refusal(chain.send_raw(&high_s).await);
    assert!(reason.contains("bad signature"), "{reason}");

    // r = 0 recovers no key at all.
    let zero_r = raw_with_signature(&f, U256::ZERO, sig.s(), sig.v());
    let reason = refusal(chain.send_raw(&zero_r).await);
    assert!(reason.contains("bad signature"), "{reason}");

    // Nothing happened; the honest transaction still goes through.
    assert_eq!(
        chain.pending_nonce(key_address(&KEY)).await.expect("nonce"),
        0
    );
    chain
        .send_raw(&good.encoded())
        .await
        .expect("the good one is accepted");

    let err = chain.send_raw(&[0x02, 0xc0]).await.expect_err("garbage");
    assert!(matches!(err, EvmError::BadTransaction(_)), "{err}");
}

#[tokio::test]
async fn refuses_a_wrong_chain_id_a_nonce_gap_and_an_overspend() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chain = funded_chain(&dir).await;
    let sender = key_address(&KEY);
    let to = Address::repeat_byte(0x42);

    let mut mainnet = fields(0, to, U256::from(1u64));
    mainnet.chain_id = 1;
    let reason = refusal(
        chain
            .send_raw(&key_sign(&KEY, &tx(mainnet)).encoded())
            .await,
    );
    assert!(
        reason.contains("chain id 1") && reason.contains("31337"),
        "{reason}"
    );

    let reason = refusal(
        chain
            .send_raw(&key_sign(&KEY, &tx(fields(1, to, U256::from(1u64)))).encoded())
            .await,
    );
    assert!(
        reason.contains("nonce gap") && reason.contains("at nonce 0"),
        "{reason}"
    );

    // One ether, minus nothing: value plus the worst-case fee is more than the balance.
    let reason = refusal(
        chain
            .send_raw(&key_sign(&KEY, &tx(fields(0, to, U256::from(ETHER)))).encoded())
            .await,
    );
    assert!(reason.contains("insufficient funds"), "{reason}");
    assert!(
        reason.contains(&sender.to_string()),
        "names the account: {reason}"
    );

    // The pool counts queued transactions: two that each fit cannot together overspend.
    let half = U256::from(ETHER / 2);
    chain
        .send_raw(&key_sign(&KEY, &tx(fields(0, to, half))).encoded())
        .await
        .expect("first half");
    let reason = refusal(
        chain
            .send_raw(&key_sign(&KEY, &tx(fields(1, to, half))).encoded())
            .await,
    );
    assert!(reason.contains("insufficient funds"), "{reason}");

    let mut cheap = fields(1, to, U256::from(1u64));
    cheap.max_fee_per_gas = 10;
    cheap.max_priority_fee_per_gas = 1;
    let reason = refusal(chain.send_raw(&key_sign(&KEY, &tx(cheap)).encoded()).await);
    assert!(reason.contains("below the base fee"), "{reason}");

    chain.mine(1).await.expect("mine");
    assert_eq!(chain.balance(to).await.expect("balance"), half);
    assert_eq!(chain.latest_nonce(sender).await.expect("nonce"), 1);
}

#[tokio::test]
async fn executes_only_transfers_and_mines_an_unfunded_token_transfer_as_reverted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chain = funded_chain(&dir).await;
    let sender = key_address(&KEY);
    let token = Address::repeat_byte(0x70);
    let recipient = Address::repeat_byte(0x43);
    chain
        .fund_erc20(token, recipient, U256::from(5u64))
        .await
        .expect("token");
    let err = chain
        .fund(token, U256::from(1u64))
        .await
        .expect_err("a token holds no ether");
    assert!(err.to_string().contains("token contract"), "{err}");
    let err = chain
        .fund_erc20(sender, recipient, U256::from(1u64))
        .await
        .expect_err("an account is no token");
    assert!(err.to_string().contains("ordinary account"), "{err}");

    // approve, an unknown contract, ether to a token: refused with the reason.
    let mut approve = fields(0, token, U256::ZERO);
    approve.gas_limit = 100_000;
    approve.input = erc20_approve(recipient, U256::from(1u64));
    let reason = refusal(
        chain
            .send_raw(&key_sign(&KEY, &tx(approve)).encoded())
            .await,
    );
    assert!(
        reason.contains("only ether transfers and ERC-20 transfer"),
        "{reason}"
    );
    let mut unknown = fields(0, Address::repeat_byte(0x71), U256::ZERO);
    unknown.gas_limit = 100_000;
    unknown.input = erc20_transfer(recipient, U256::from(1u64));
    let reason = refusal(
        chain
            .send_raw(&key_sign(&KEY, &tx(unknown)).encoded())
            .await,
    );
    assert!(
        reason.contains("not a token the dev chain knows"),
        "{reason}"
    );
    let reason = refusal(
        chain
            .send_raw(&key_sign(&KEY, &tx(fields(0, token, U256::from(1u64)))).encoded())
            .await,
    );
    assert!(reason.contains("does not accept ether"), "{reason}");

    // The sender holds no tokens: estimation says it reverts, and if sent anyway it is
    // mined as reverted, spending the nonce and the gas but no tokens.
    let data = erc20_transfer(recipient, U256::from(3u64));
    let err = chain
        .estimate_gas(sender, token, U256::ZERO, &data)
        .await
        .expect_err("would revert");
    assert!(matches!(err, EvmError::Reverted { .. }), "{err}");
    let mut transfer = fields(0, token, U256::ZERO);
    transfer.gas_limit = DEV_TOKEN_TRANSFER_GAS;
    transfer.input = data;
    let hash = chain
        .send_raw(&key_sign(&KEY, &tx(transfer)).encoded())
        .await
        .expect("a pool does not execute");
    chain.mine(1).await.expect("mine");
    let receipt = chain.receipt(hash).await.expect("receipt").expect("mined");
    assert_eq!(receipt.outcome, TxOutcome::Reverted);
    assert_eq!(chain.latest_nonce(sender).await.expect("nonce"), 1);
    assert_eq!(
        chain.balance(sender).await.expect("balance"),
        U256::from(ETHER)
            - U256::from(DEV_TOKEN_TRANSFER_GAS) * U256::from(receipt.effective_gas_price)
    );
    assert_eq!(
        chain
            .erc20_balance(token, recipient)
            .await
            .expect("balance"),
        U256::from(5u64)
    );
    assert_eq!(
        chain.erc20_balance(token, sender).await.expect("balance"),
        U256::ZERO
    );
}

#[tokio::test]
async fn fees_follow_the_file_and_the_tip_is_capped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chain = funded_chain(&dir).await;
    chain.set_fees(7, 2).await.expect("set fees");
    let fees = chain.fees().await.expect("fees");
    assert_eq!(
        (
            fees.base_fee_per_gas,
            fees.max_priority_fee_per_gas,
            fees.max_fee_per_gas
        ),
        (7, 2, 16)
    );
    // Cap 8 with a tip of 5: only 1 wei of tip fits above the base fee of 7.
    let mut f = fields(0, Address::repeat_byte(0x42), U256::from(1u64));
    f.max_fee_per_gas = 8;
    f.max_priority_fee_per_gas = 5;
    let hash = chain
        .send_raw(&key_sign(&KEY, &tx(f)).encoded())
        .await
        .expect("accepted");
    chain.mine(1).await.expect("mine");
    assert_eq!(
        chain
            .receipt(hash)
            .await
            .expect("r")
            .expect("mined")
            .effective_gas_price,
        8
    );
}

#[tokio::test]
async fn the_chain_is_a_file_other_handles_see_and_a_bad_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("evm.json");
    let chain = funded_chain(&dir).await;
    let hash = chain
        .send_raw(
            &key_sign(
                &KEY,
                &tx(fields(0, Address::repeat_byte(0x42), U256::from(9u64))),
            )
            .encoded(),
        )
        .await
        .expect("accepted");

    let other = FileEvmBackend::open(&path).expect("open");
    other.mine(1).await.expect("mine through another handle");
    assert!(chain.receipt(hash).await.expect("receipt").is_some());
    assert_eq!(
        chain.balance(Address::repeat_byte(0x42)).await.expect("b"),
        U256::from(9u64)
    );

    let text = std::fs::read_to_string(&path).expect("read");
    assert!(
        text.contains("\"format\": \"coinport-dev-evm-chain\""),
        "{text}"
    );

    let err = FileEvmBackend::open_or_create(&path, 1).expect_err("another chain");
    assert!(
        matches!(
            err,
            EvmError::WrongChain {
                expected: 1,
                found: CHAIN,
                ..
            }
        ),
        "{err}"
    );
    let err = FileEvmBackend::create(&path, CHAIN).expect_err("exists");
    assert!(matches!(err, EvmError::Storage { .. }), "{err}");

    // A hand-edited file whose transaction was altered is refused, naming the file.
    let tampered = text.replacen(
        "\"nonce\": 0,\n      \"gas\"",
        "\"nonce\": 5,\n      \"gas\"",
        1,
    );
    assert_ne!(
        tampered, text,
        "the transaction entry's nonce is in the file"
    );
    std::fs::write(&path, tampered).expect("write");
    let err = FileEvmBackend::open(&path).expect_err("tampered");
    assert!(matches!(err, EvmError::BadChainFile { .. }), "{err}");
    assert!(err.to_string().contains("has another nonce"), "{err}");
    assert!(err.to_string().contains("evm.json"), "{err}");
}
