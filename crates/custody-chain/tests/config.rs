//! `ChainConfig` as the coordinator reads it from TOML, and `connect`.

use std::path::PathBuf;

use bitcoin::Network;
use custody_chain::{
    connect, BitcoindAuth, BitcoindConfig, ChainConfig, ChainError, EsploraConfig, FileConfig,
};

#[derive(serde::Deserialize)]
struct CoordinatorToml {
    chain: ChainConfig,
}

fn parse(text: &str) -> Result<ChainConfig, toml::de::Error> {
    toml::from_str::<CoordinatorToml>(text).map(|c| c.chain)
}

#[test]
fn each_kind_parses_from_toml() {
    assert_eq!(
        parse("[chain]\nkind = \"file\"\npath = \"/var/lib/custody/chain.json\"\nnetwork = \"regtest\"\n")
            .expect("file"),
        ChainConfig::File(FileConfig {
            path: PathBuf::from("/var/lib/custody/chain.json"),
            network: Network::Regtest,
        })
    );
    assert_eq!(
        parse("[chain]\nkind = \"esplora\"\nurl = \"https://blockstream.info/testnet/api\"\n")
            .expect("esplora"),
        ChainConfig::Esplora(EsploraConfig {
            url: "https://blockstream.info/testnet/api".into(),
            timeout_secs: 30,
        })
    );
    let node = parse(
        "[chain]\nkind = \"bitcoind\"\nurl = \"http://127.0.0.1:8332\"\nwallet = \"custody-watch\"\n\
         user = \"custody\"\npassword_file = \"/etc/custody/rpc-password\"\ntimeout_secs = 10\n",
    )
    .expect("bitcoind");
    let ChainConfig::Bitcoind(node) = node else {
        panic!("expected bitcoind, got {node:?}");
    };
    assert_eq!(node.timeout_secs, 10);
    assert_eq!(
        node.auth().expect("auth"),
        BitcoindAuth::PasswordFile {
            user: "custody".into(),
            password_file: "/etc/custody/rpc-password".into(),
        }
    );
}

#[test]
fn passwords_and_unknown_kinds_or_fields_are_refused() {
    for text in [
        "[chain]\nkind = \"bitcoind\"\nurl = \"http://127.0.0.1:8332\"\nwallet = \"w\"\nuser = \"u\"\npassword = \"hunter2\"\n",
        "[chain]\nkind = \"electrum\"\nurl = \"ssl://electrum.example:50002\"\n",
        "[chain]\nkind = \"file\"\npath = \"chain.json\"\n",
        "[chain]\nkind = \"esplora\"\nurl = \"https://x\"\ntimeout = 5\n",
    ] {
        assert!(parse(text).is_err(), "{text}");
    }
}

#[test]
fn bitcoind_needs_exactly_one_credential_source() {
    let base = BitcoindConfig {
        url: "http://127.0.0.1:8332".into(),
        wallet: "custody-watch".into(),
        cookie_file: None,
        user: None,
        password_file: None,
        timeout_secs: 30,
    };
    let both = BitcoindConfig {
        cookie_file: Some("/c".into()),
        user: Some("u".into()),
        password_file: Some("/p".into()),
        ..base.clone()
    };
    let user_only = BitcoindConfig {
        user: Some("u".into()),
        ..base.clone()
    };
    for config in [base, both, user_only] {
        assert!(matches!(config.auth(), Err(ChainError::Config { .. })));
        assert!(matches!(
            connect(&ChainConfig::Bitcoind(config)),
            Err(ChainError::Config { .. })
        ));
    }
}

#[tokio::test]
async fn connect_builds_the_named_backend() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("chain.json");
    let file = connect(&ChainConfig::File(FileConfig {
        path: path.clone(),
        network: Network::Signet,
    }))
    .expect("file backend");
    assert_eq!(file.name(), "file");
    assert!(path.exists(), "the chain file is created on first use");
    assert_eq!(file.tip_height().await.expect("tip"), 0);

    let esplora = connect(&ChainConfig::Esplora(EsploraConfig {
        url: "http://127.0.0.1:3002".into(),
        timeout_secs: 5,
    }))
    .expect("esplora backend");
    assert_eq!(esplora.name(), "esplora");

    let cookie = dir.path().join(".cookie");
    std::fs::write(&cookie, "__cookie__:abc").expect("cookie");
    let node = connect(&ChainConfig::Bitcoind(BitcoindConfig {
        url: "http://127.0.0.1:18443".into(),
        wallet: "custody-watch".into(),
        cookie_file: Some(cookie),
        user: None,
        password_file: None,
        timeout_secs: 5,
    }))
    .expect("bitcoind backend");
    assert_eq!(node.name(), "bitcoind");

    assert!(matches!(
        connect(&ChainConfig::Esplora(EsploraConfig {
            url: "http://127.0.0.1:3002".into(),
            timeout_secs: 0,
        })),
        Err(ChainError::Config { .. })
    ));
    assert!(matches!(
        connect(&ChainConfig::File(FileConfig {
            path,
            network: Network::Regtest,
        })),
        Err(ChainError::WrongNetwork { .. })
    ));
}
