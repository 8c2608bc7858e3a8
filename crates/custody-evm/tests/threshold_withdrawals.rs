//! Threshold-ECDSA-signed withdrawals (custody-ecdsa 2-of-3, custody-ethereum EIP-1559)
//! accepted by a real Hardhat node and by the development chain file: the recipient's
//! balance changes by exactly the value, and re-sending does not spend twice.

mod common;

use common::{build_tx, group_address, threshold_sign, ETHER};
use custody_ethereum::calldata::erc20_transfer;
use custody_ethereum::{Eip1559Fields, EthTransaction};
use custody_evm::test_node::{HardhatNode, TEST_TOKEN_SUPPLY};
use custody_evm::{
    Address, Bytes, EvmBackend, EvmError, FileEvmBackend, TxOutcome, DEV_TOKEN_TRANSFER_GAS,
    TRANSFER_GAS, U256,
};

async fn hardhat() -> Option<HardhatNode> {
    HardhatNode::start_for_test().await
}

/// A copy of `tx` with another nonce, value or chain id.
fn variant(tx: &EthTransaction, chain_id: u64, nonce: u64, value: U256) -> EthTransaction {
    EthTransaction::eip1559(Eip1559Fields {
        chain_id,
        nonce,
        to: tx.to().expect("a call"),
        value,
        gas_limit: tx.gas_limit(),
        max_fee_per_gas: tx.max_fee_per_gas(),
        max_priority_fee_per_gas: tx.max_priority_fee_per_gas().expect("EIP-1559"),
        input: tx.input().clone(),
    })
    .expect("valid")
}

fn assert_rejected(result: Result<custody_evm::B256, EvmError>, needle: &str) {
    match result {
        Err(EvmError::Rejected { reason, .. }) => assert!(
            reason.to_ascii_lowercase().contains(needle),
            "the refusal should say {needle:?}: {reason}"
        ),
        other => panic!("expected a refusal saying {needle:?}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardhat_mines_a_threshold_signed_eth_transfer_once() {
    let Some(node) = hardhat().await else { return };
    let chain = node.backend();
    let group = tokio::task::spawn_blocking(group_address)
        .await
        .expect("keygen");
    node.fund(group, U256::from(2 * ETHER))
        .await
        .expect("fund the group");
    let recipient = Address::repeat_byte(0x42);
    let value = U256::from(ETHER / 4);

    let tx = build_tx(&chain, group, recipient, value, Bytes::new()).await;
    assert_eq!(tx.nonce(), 0);
    // Hardhat's estimate may add a unit of slack above the 21000 a transfer uses.
    assert!((TRANSFER_GAS..=TRANSFER_GAS + 1_000).contains(&tx.gas_limit()));
    let signed = threshold_sign(&tx);
    let raw = signed.encoded();
    let hash = chain.send_raw(&raw).await.expect("the node accepts it");
    assert_eq!(hash, signed.hash());

    let receipt = chain
        .receipt(hash)
        .await
        .expect("receipt")
        .expect("automined");
    assert_eq!(receipt.outcome, TxOutcome::Success);
    assert_eq!(receipt.gas_used, TRANSFER_GAS);
    assert!(receipt.confirmations >= 1);
    assert_eq!(chain.balance(recipient).await.expect("balance"), value);
    let fee = U256::from(receipt.gas_used) * U256::from(receipt.effective_gas_price);
    assert_eq!(
        chain.balance(group).await.expect("balance"),
        U256::from(2 * ETHER) - value - fee
    );

    // Re-sending after a crash is harmless.
    assert_eq!(chain.send_raw(&raw).await.expect("idempotent"), hash);
    assert_eq!(chain.balance(recipient).await.expect("balance"), value);
    assert_eq!(chain.pending_nonce(group).await.expect("nonce"), 1);
    assert_eq!(chain.latest_nonce(group).await.expect("nonce"), 1);

    // Another transaction with the spent nonce, and one for another chain.
    let stale = threshold_sign(&variant(&tx, 31337, 0, value * U256::from(2)));
    assert_rejected(chain.send_raw(&stale.encoded()).await, "nonce");
    let mainnet = threshold_sign(&variant(&tx, 1, 1, value));
    assert_rejected(chain.send_raw(&mainnet.encoded()).await, "chain id 1");
    assert_eq!(chain.balance(recipient).await.expect("balance"), value);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardhat_mines_a_threshold_signed_erc20_transfer() {
    let Some(node) = hardhat().await else { return };
    let chain = node.backend();
    let group = tokio::task::spawn_blocking(group_address)
        .await
        .expect("keygen");
    let token = node.deploy_test_token().await.expect("deploy TestToken");
    let deployer = node.dev_account(0).address;
    assert_eq!(
        chain
            .erc20_balance(token, deployer)
            .await
            .expect("balanceOf"),
        U256::from(TEST_TOKEN_SUPPLY)
    );
    let held = U256::from(1_000u64) * U256::from(ETHER);
    node.transfer_token(token, group, held)
        .await
        .expect("tokens to the group");
    node.fund(group, U256::from(ETHER))
        .await
        .expect("gas money");

    let recipient = Address::repeat_byte(0x43);
    let amount = U256::from(250u64) * U256::from(ETHER);
    let tx = build_tx(
        &chain,
        group,
        token,
        U256::ZERO,
        erc20_transfer(recipient, amount),
    )
    .await;
    assert!(
        tx.gas_limit() > TRANSFER_GAS,
        "a token call costs more than a transfer"
    );
    let signed = threshold_sign(&tx);
    let hash = chain.send_raw(&signed.encoded()).await.expect("accepted");
    let receipt = chain
        .receipt(hash)
        .await
        .expect("receipt")
        .expect("automined");
    assert_eq!(receipt.outcome, TxOutcome::Success);

    assert_eq!(
        chain
            .erc20_balance(token, recipient)
            .await
            .expect("balanceOf"),
        amount
    );
    assert_eq!(
        chain.erc20_balance(token, group).await.expect("balanceOf"),
        held - amount
    );
    assert_eq!(chain.balance(recipient).await.expect("balance"), U256::ZERO);

    // An address without a contract is not a token.
    let err = chain
        .erc20_balance(Address::repeat_byte(0x99), group)
        .await
        .expect_err("no contract there");
    assert!(err.to_string().contains("no token contract"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_chain_mines_a_threshold_signed_eth_transfer_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chain = FileEvmBackend::create(dir.path().join("evm.json"), 31337).expect("create");
    let group = tokio::task::spawn_blocking(group_address)
        .await
        .expect("keygen");
    chain
        .fund(group, U256::from(2 * ETHER))
        .await
        .expect("fund");
    let recipient = Address::repeat_byte(0x42);
    let value = U256::from(ETHER / 4);

    let tx = build_tx(&chain, group, recipient, value, Bytes::new()).await;
    assert_eq!(tx.gas_limit(), TRANSFER_GAS);
    let signed = threshold_sign(&tx);
    let raw = signed.encoded();
    let hash = chain.send_raw(&raw).await.expect("accepted");
    assert_eq!(hash, signed.hash());
    assert_eq!(
        chain.receipt(hash).await.expect("receipt"),
        None,
        "pending until mined"
    );
    assert_eq!(chain.pending_nonce(group).await.expect("nonce"), 1);
    assert_eq!(chain.latest_nonce(group).await.expect("nonce"), 0);
    assert_eq!(chain.balance(recipient).await.expect("balance"), U256::ZERO);

    chain.mine(1).await.expect("mine");
    let receipt = chain.receipt(hash).await.expect("receipt").expect("mined");
    assert_eq!(receipt.outcome, TxOutcome::Success);
    assert_eq!((receipt.block_number, receipt.confirmations), (1, 1));
    assert_eq!(chain.balance(recipient).await.expect("balance"), value);
    let fee = U256::from(TRANSFER_GAS) * U256::from(receipt.effective_gas_price);
    assert_eq!(
        chain.balance(group).await.expect("balance"),
        U256::from(2 * ETHER) - value - fee
    );

    assert_eq!(chain.send_raw(&raw).await.expect("idempotent"), hash);
    chain.mine(2).await.expect("mine");
    assert_eq!(
        chain.balance(recipient).await.expect("balance"),
        value,
        "not spent twice"
    );
    assert_eq!(
        chain
            .receipt(hash)
            .await
            .expect("receipt")
            .expect("mined")
            .confirmations,
        3
    );

    let stale = threshold_sign(&variant(&tx, 31337, 0, value * U256::from(2)));
    assert_rejected(chain.send_raw(&stale.encoded()).await, "nonce too low");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_chain_mines_a_threshold_signed_erc20_transfer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chain = FileEvmBackend::create(dir.path().join("evm.json"), 31337).expect("create");
    let group = tokio::task::spawn_blocking(group_address)
        .await
        .expect("keygen");
    let token = Address::repeat_byte(0x70);
    let held = U256::from(1_000u64);
    chain.fund_erc20(token, group, held).await.expect("tokens");
    chain
        .fund(group, U256::from(ETHER))
        .await
        .expect("gas money");

    let recipient = Address::repeat_byte(0x43);
    let amount = U256::from(250u64);
    let tx = build_tx(
        &chain,
        group,
        token,
        U256::ZERO,
        erc20_transfer(recipient, amount),
    )
    .await;
    assert_eq!(tx.gas_limit(), DEV_TOKEN_TRANSFER_GAS);
    let hash = chain
        .send_raw(&threshold_sign(&tx).encoded())
        .await
        .expect("accepted");
    chain.mine(1).await.expect("mine");
    assert_eq!(
        chain
            .receipt(hash)
            .await
            .expect("receipt")
            .expect("mined")
            .outcome,
        TxOutcome::Success
    );
    assert_eq!(
        chain
            .erc20_balance(token, recipient)
            .await
            .expect("balance"),
        amount
    );
    assert_eq!(
        chain.erc20_balance(token, group).await.expect("balance"),
        held - amount
    );
}
