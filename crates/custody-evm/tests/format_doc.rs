//! The worked example of docs/formats/dev-evm-chain.md is a chain file this crate opens,
//! with the numbers the page states.

use custody_evm::{Address, EvmBackend, FileEvmBackend, TxOutcome, B256, U256};

const DOC: &str = include_str!("../../../docs/formats/dev-evm-chain.md");

fn example() -> &'static str {
    let after = DOC.split("## Worked example").nth(1).expect("section");
    let start = after.find("```json\n").expect("json block") + "```json\n".len();
    let len = after[start..].find("```").expect("block end");
    &after[start..start + len]
}

#[tokio::test]
async fn the_documented_example_opens_with_the_documented_numbers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("evm.json");
    std::fs::write(&path, example()).expect("write");
    let chain = FileEvmBackend::open(&path).expect("the example is a valid chain file");

    let key = k256::ecdsa::SigningKey::from_slice(&[0x11; 32]).expect("key");
    let sender = Address::from_public_key(key.verifying_key());
    assert_eq!(
        sender,
        "0x19e7e376e7c213b7e7e7e46cc70a5dd086daff2a"
            .parse::<Address>()
            .expect("a")
    );
    let recipient = Address::repeat_byte(0x42);

    assert_eq!(chain.chain_id().await.expect("id"), 31337);
    assert_eq!(chain.balance(recipient).await.expect("b"), U256::from(9u64));
    let paid = U256::from(21_000u64 * 2_000_000_000 + 9);
    assert_eq!(
        chain.balance(sender).await.expect("b"),
        U256::from(1_000_000_000_000_000_000u64) - paid
    );
    assert_eq!(chain.latest_nonce(sender).await.expect("n"), 1);
    let hash: B256 = "0x43a56e430802be4a624f61f6bab87d9e209ea4b335a8af2da25758689b6dd8c9"
        .parse()
        .expect("hash");
    let receipt = chain.receipt(hash).await.expect("r").expect("mined");
    assert_eq!(receipt.outcome, TxOutcome::Success);
    assert_eq!((receipt.block_number, receipt.confirmations), (1, 1));
    assert_eq!(receipt.effective_gas_price, 2_000_000_000);
}
