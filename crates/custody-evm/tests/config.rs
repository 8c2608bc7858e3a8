//! Backend selection from TOML, chain id checks, and node URLs that never leak secrets.

use custody_evm::test_node::HardhatNode;
use custody_evm::{connect, EvmBackend, EvmConfig, EvmError, JsonRpcBackend, NodeUrl};
use std::time::Duration;

#[tokio::test]
async fn a_file_config_connects_and_refuses_another_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("evm.json");
    let config: EvmConfig = toml::from_str(&format!(
        "kind = \"file\"\npath = {path:?}\nchain_id = 31337\nconfirmations = 3\n"
    ))
    .expect("parse");
    assert_eq!((config.chain_id(), config.confirmations()), (31337, 3));
    let chain = connect(&config).await.expect("connect creates the file");
    assert_eq!(chain.name(), "file");
    assert_eq!(chain.block_number().await.expect("height"), 0);

    let other: EvmConfig =
        toml::from_str(&format!("kind = \"file\"\npath = {path:?}\nchain_id = 1\n"))
            .expect("parse");
    let err = connect(&other).await.err().expect("another chain");
    assert!(
        matches!(
            err,
            EvmError::WrongChain {
                expected: 1,
                found: 31337,
                ..
            }
        ),
        "{err}"
    );

    for (text, why) in [
        (
            "kind = \"file\"\npath = \"x\"\nchain_id = 1\nurl = \"http://a\"\n",
            "unknown field",
        ),
        (
            "kind = \"ipc\"\npath = \"x\"\nchain_id = 1\n",
            "unknown variant",
        ),
        (
            "kind = \"json-rpc\"\nurl = \"ftp://node\"\nchain_id = 1\n",
            "http:// or https://",
        ),
    ] {
        let err = toml::from_str::<EvmConfig>(text).expect_err(why);
        assert!(err.to_string().contains(why), "{err}");
    }
    let zero: EvmConfig = toml::from_str(&format!(
        "kind = \"file\"\npath = {path:?}\nchain_id = 31337\nconfirmations = 0\n"
    ))
    .expect("parse");
    assert!(matches!(connect(&zero).await, Err(EvmError::Config { .. })));
}

#[tokio::test]
async fn node_urls_show_only_their_origin() {
    let config: EvmConfig = toml::from_str(
        "kind = \"json-rpc\"\nurl = \"https://user:hunter2@node.example:8545/v3/APIKEY123?token=QUERYSECRET\"\nchain_id = 1\n",
    )
    .expect("parse");
    let shown = format!("{config:?}");
    for secret in ["hunter2", "APIKEY123", "QUERYSECRET", "user"] {
        assert!(!shown.contains(secret), "{secret} leaked: {shown}");
    }
    assert!(shown.contains("https://node.example:8545"), "{shown}");

    // A closed loopback port: the error names the call and the node, not the key.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = NodeUrl::parse(&format!(
        "http://127.0.0.1:{port}/key/APIKEY123?t=QUERYSECRET"
    ))
    .expect("url");
    let node = JsonRpcBackend::new(url, Duration::from_secs(5)).expect("client");
    let err = node.block_number().await.expect_err("nothing listens");
    assert!(err.is_retryable(), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("eth_blockNumber") && text.contains(&format!("127.0.0.1:{port}")),
        "{text}"
    );
    assert!(
        !text.contains("APIKEY123") && !text.contains("QUERYSECRET"),
        "{text}"
    );
    let debug = format!("{err:?}");
    assert!(
        !debug.contains("APIKEY123") && !debug.contains("QUERYSECRET"),
        "{debug}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_refuses_a_node_on_another_chain() {
    let Some(node) = HardhatNode::start_for_test().await else {
        return;
    };
    let good: EvmConfig = toml::from_str(&format!(
        "kind = \"json-rpc\"\nurl = \"{}\"\nchain_id = 31337\ntimeout_secs = 10\n",
        node.url().expose_secret()
    ))
    .expect("parse");
    let chain = connect(&good).await.expect("the right chain");
    assert_eq!(chain.name(), "json-rpc");
    let fees = chain.fees().await.expect("fees");
    assert!(fees.base_fee_per_gas > 0);
    assert_eq!(
        fees.max_fee_per_gas,
        2 * fees.base_fee_per_gas + fees.max_priority_fee_per_gas
    );

    let mainnet: EvmConfig = toml::from_str(&format!(
        "kind = \"json-rpc\"\nurl = \"{}\"\nchain_id = 1\n",
        node.url().expose_secret()
    ))
    .expect("parse");
    let err = connect(&mainnet).await.err().expect("refused");
    assert!(
        matches!(
            err,
            EvmError::WrongChain {
                expected: 1,
                found: 31337,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("31337"), "{err}");
}

#[test]
fn the_listed_dev_accounts_are_the_keys_hardhat_funds() {
    let accounts = custody_evm::test_node::dev_accounts();
    assert_eq!(accounts.len(), 5);
    for account in accounts {
        let key = k256::ecdsa::SigningKey::from_slice(account.private_key.as_slice()).expect("key");
        assert_eq!(
            custody_evm::Address::from_public_key(key.verifying_key()),
            account.address
        );
    }
}
