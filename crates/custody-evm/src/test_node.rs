//! Test support (feature `test-node`): a real Hardhat 2 node on 127.0.0.1.
//!
//! `.ci/evm-node.sh` installs Hardhat and compiles the test ERC-20 (`TestToken`), and
//! prints `CUSTODY_TEST_EVM_NODE_DIR`. [`HardhatNode::start`] then starts a node on a free
//! loopback port, waits until it answers, and kills it when dropped.
//!
//! When `CUSTODY_TEST_EVM_NODE_DIR` is unset, [`HardhatNode::start`] returns `Ok(None)`
//! after a notice on stderr, so a test can skip — unless `CUSTODY_REQUIRE_EVM=1`, in
//! which case it is an error naming `.ci/evm-node.sh` (CI sets it, so CI never skips).
//!
//! ```no_run
//! # async fn demo() {
//! use custody_evm::test_node::HardhatNode;
//! use custody_evm::EvmBackend;
//!
//! let Some(node) = HardhatNode::start_for_test().await else {
//!     return; // not installed here, and not required
//! };
//! let token = node.deploy_test_token().await.expect("deploy");
//! let balance = node
//!     .backend()
//!     .erc20_balance(token, node.dev_account(0).address)
//!     .await
//!     .expect("balanceOf");
//! # }
//! ```
// Test support prints its skip notice where `cargo test` shows it.
#![allow(clippy::print_stderr)]

use std::fs::File;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use alloy_primitives::{Address, Bytes, TxKind, B256, U256};
use alloy_provider::Provider;
use alloy_rpc_types_eth::{TransactionInput, TransactionRequest};

use crate::{EvmBackend, EvmError, JsonRpcBackend, NodeUrl};

/// The environment variable naming the prepared node directory (`.ci/evm-node`).
pub const NODE_DIR_ENV: &str = "CUSTODY_TEST_EVM_NODE_DIR";
/// When `1`, a missing node directory fails the test instead of skipping it.
pub const REQUIRE_ENV: &str = "CUSTODY_REQUIRE_EVM";
/// Hardhat's chain id.
pub const HARDHAT_CHAIN_ID: u64 = 31_337;
/// Base units of `TestToken` the deployer holds after deployment (10^6 tokens, 18
/// decimals).
pub const TEST_TOKEN_SUPPLY: u128 = 1_000_000 * 10u128.pow(18);

/// Startup polls of `eth_chainId`, 250 ms apart: a minute at most.
const READY_POLLS: u32 = 240;
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// A funded development account of the node (Hardhat's public test mnemonic
/// `test test … junk`, path `m/44'/60'/0'/0/i`, 10 000 ETH each).
///
/// These private keys are published in Hardhat's documentation and printed by every
/// Hardhat node: anything sent to them on a real chain is taken at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevAccount {
    /// The account's address.
    pub address: Address,
    /// Its private key (public knowledge; test use only).
    pub private_key: B256,
}

/// The first five accounts of the Hardhat test mnemonic.
const DEV_ACCOUNTS: [(&str, &str); 5] = [
    (
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    ),
    (
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    ),
    (
        "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
        "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    ),
    (
        "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
        "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    ),
    (
        "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
        "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    ),
];

/// Returns the node's first five development accounts.
pub fn dev_accounts() -> Vec<DevAccount> {
    DEV_ACCOUNTS
        .iter()
        .filter_map(|(address, key)| {
            Some(DevAccount {
                address: address.parse().ok()?,
                private_key: key.parse().ok()?,
            })
        })
        .collect()
}

/// Why the test node could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestNodeError {
    /// `CUSTODY_REQUIRE_EVM=1` but no node directory.
    #[error(
        "{NODE_DIR_ENV} is not set but {REQUIRE_ENV}=1: run `eval \"$(.ci/evm-node.sh)\"` first"
    )]
    NotPrepared,
    /// The node directory lacks Hardhat or the compiled token.
    #[error("{path} is missing: run .ci/evm-node.sh to install the EVM test node")]
    Missing {
        /// The missing file.
        path: PathBuf,
    },
    /// `node` could not be started.
    #[error("cannot start `node` for Hardhat: {0}")]
    Spawn(std::io::Error),
    /// The node exited or never answered.
    #[error("the Hardhat node did not come up: {reason}\n--- node output (last lines) ---\n{log}")]
    NotReady {
        /// What happened.
        reason: String,
        /// The end of the node's output.
        log: String,
    },
    /// A JSON-RPC call to the node failed.
    #[error(transparent)]
    Rpc(#[from] EvmError),
    /// A development transaction failed.
    #[error("development transaction failed: {0}")]
    DevTransaction(String),
}

/// A Hardhat node on 127.0.0.1, killed when dropped.
#[derive(Debug)]
pub struct HardhatNode {
    child: Child,
    dir: PathBuf,
    log_path: PathBuf,
    url: NodeUrl,
    backend: JsonRpcBackend,
}

impl HardhatNode {
    /// Starts a node on a free loopback port and waits (bounded) until `eth_chainId`
    /// answers 31337.
    ///
    /// # Errors
    /// [`TestNodeError::NotPrepared`] when `CUSTODY_TEST_EVM_NODE_DIR` is unset and
    /// `CUSTODY_REQUIRE_EVM=1`; otherwise, when it is unset, `Ok(None)` (skip). Start-up
    /// failures name the cause and quote the node's output.
    pub async fn start() -> Result<Option<Self>, TestNodeError> {
        let Some(dir) = std::env::var_os(NODE_DIR_ENV) else {
            if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
                return Err(TestNodeError::NotPrepared);
            }
            eprintln!(
                "skipping the EVM node test: {NODE_DIR_ENV} is not set (run `eval \"$(.ci/evm-node.sh)\"`)"
            );
            return Ok(None);
        };
        let dir = PathBuf::from(dir);
        let cli = dir.join("node_modules/hardhat/internal/cli/cli.js");
        for path in [&cli, &dir.join("build/TestToken.bin")] {
            if !path.is_file() {
                return Err(TestNodeError::Missing { path: path.clone() });
            }
        }
        // Another process may take the port between this probe and the node's bind; the
        // node then exits at once and the next attempt picks another port.
        let mut last = None;
        for _ in 0..3 {
            match Self::start_on(&dir, &cli, free_port()?).await {
                Ok(node) => return Ok(Some(node)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(TestNodeError::NotReady {
            reason: "no attempt made".into(),
            log: String::new(),
        }))
    }

    /// [`HardhatNode::start`] for a test body: `None` means skip.
    ///
    /// # Panics
    /// With the error's full text (which says to run `.ci/evm-node.sh`) when the node
    /// cannot be started or `CUSTODY_REQUIRE_EVM=1` and it is not prepared.
    pub async fn start_for_test() -> Option<Self> {
        match Self::start().await {
            Ok(node) => node,
            Err(e) => panic!("EVM test node: {e}"),
        }
    }

    async fn start_on(dir: &Path, cli: &Path, port: u16) -> Result<Self, TestNodeError> {
        let log_path = std::env::temp_dir().join(format!(
            "custody-evm-hardhat-{}-{port}.log",
            std::process::id()
        ));
        let log = File::create(&log_path).map_err(TestNodeError::Spawn)?;
        let log_err = log.try_clone().map_err(TestNodeError::Spawn)?;
        let child = Command::new("node")
            .arg(cli)
            .args(["node", "--hostname", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .current_dir(dir)
            .env("HARDHAT_DISABLE_TELEMETRY_PROMPT", "true")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(TestNodeError::Spawn)?;
        let url = NodeUrl::parse(&format!("http://127.0.0.1:{port}"))?;
        let backend = JsonRpcBackend::new(url.clone(), Duration::from_secs(10))?;
        let mut node = Self {
            child,
            dir: dir.to_path_buf(),
            log_path,
            url,
            backend,
        };
        node.wait_ready().await?;
        Ok(node)
    }

    async fn wait_ready(&mut self) -> Result<(), TestNodeError> {
        let probe = JsonRpcBackend::new(self.url.clone(), Duration::from_secs(2))?;
        for _ in 0..READY_POLLS {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.not_ready(format!("the node exited with {status}")));
            }
            match probe.chain_id().await {
                Ok(HARDHAT_CHAIN_ID) => return Ok(()),
                Ok(other) => {
                    return Err(self.not_ready(format!(
                        "the node reports chain id {other}, not {HARDHAT_CHAIN_ID}"
                    )))
                }
                Err(_) => tokio::time::sleep(POLL_INTERVAL).await,
            }
        }
        Err(self.not_ready(format!(
            "no answer to eth_chainId after {READY_POLLS} polls"
        )))
    }

    fn not_ready(&self, reason: String) -> TestNodeError {
        let mut text = String::new();
        if let Ok(mut file) = File::open(&self.log_path) {
            let _ = file.read_to_string(&mut text);
        }
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        TestNodeError::NotReady {
            reason,
            log: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        }
    }

    /// The node's URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &NodeUrl {
        &self.url
    }

    /// The node's chain id, 31337.
    pub fn chain_id(&self) -> u64 {
        HARDHAT_CHAIN_ID
    }

    /// A [`JsonRpcBackend`] for the node (10 s timeout per call).
    pub fn backend(&self) -> JsonRpcBackend {
        self.backend.clone()
    }

    /// Development account `index` (0 to 4).
    ///
    /// # Panics
    /// For an index above 4.
    pub fn dev_account(&self, index: usize) -> DevAccount {
        dev_accounts()[index]
    }

    /// Sends a transaction from an unlocked development account with
    /// `eth_sendTransaction` (the node signs it) and returns its receipt; the node mines
    /// it at once.
    ///
    /// # Errors
    /// [`TestNodeError::DevTransaction`] when the node refuses it or it reverts.
    pub async fn send_from_dev(
        &self,
        from: Address,
        to: Option<Address>,
        value: U256,
        data: Bytes,
    ) -> Result<alloy_rpc_types_eth::TransactionReceipt, TestNodeError> {
        let request = TransactionRequest {
            from: Some(from),
            to: Some(to.map_or(TxKind::Create, TxKind::Call)),
            value: Some(value),
            input: TransactionInput::new(data),
            ..Default::default()
        };
        let provider = self.backend.provider();
        let hash: B256 = self
            .backend
            .run(
                "eth_sendTransaction",
                provider.raw_request("eth_sendTransaction".into(), (request,)),
            )
            .await?;
        let receipt = self
            .backend
            .run(
                "eth_getTransactionReceipt",
                std::future::IntoFuture::into_future(provider.get_transaction_receipt(hash)),
            )
            .await?
            .ok_or_else(|| {
                TestNodeError::DevTransaction(format!("{hash} was not mined (automine off?)"))
            })?;
        if !receipt.status() {
            return Err(TestNodeError::DevTransaction(format!("{hash} reverted")));
        }
        Ok(receipt)
    }

    /// Sends `wei` from development account 0 to `to`.
    ///
    /// # Errors
    /// As [`HardhatNode::send_from_dev`].
    pub async fn fund(&self, to: Address, wei: U256) -> Result<(), TestNodeError> {
        self.send_from_dev(self.dev_account(0).address, Some(to), wei, Bytes::new())
            .await
            .map(|_| ())
    }

    /// Deploys `TestToken` (compiled by `.ci/evm-node.sh`) from development account 0,
    /// which then holds [`TEST_TOKEN_SUPPLY`], and returns the contract's address.
    ///
    /// # Errors
    /// [`TestNodeError::Missing`] without the bytecode file; as
    /// [`HardhatNode::send_from_dev`].
    pub async fn deploy_test_token(&self) -> Result<Address, TestNodeError> {
        let path = self.dir.join("build/TestToken.bin");
        let text = std::fs::read_to_string(&path)
            .map_err(|_| TestNodeError::Missing { path: path.clone() })?;
        let code: Bytes = format!("0x{}", text.trim()).parse().map_err(|e| {
            TestNodeError::DevTransaction(format!("{} is not hex: {e}", path.display()))
        })?;
        let receipt = self
            .send_from_dev(self.dev_account(0).address, None, U256::ZERO, code)
            .await?;
        receipt.contract_address.ok_or_else(|| {
            TestNodeError::DevTransaction("the deployment receipt names no contract".into())
        })
    }

    /// Transfers `amount` base units of `token` from development account 0 to `to`.
    ///
    /// # Errors
    /// As [`HardhatNode::send_from_dev`].
    pub async fn transfer_token(
        &self,
        token: Address,
        to: Address,
        amount: U256,
    ) -> Result<(), TestNodeError> {
        let data = custody_ethereum::calldata::erc20_transfer(to, amount);
        self.send_from_dev(self.dev_account(0).address, Some(token), U256::ZERO, data)
            .await
            .map(|_| ())
    }
}

impl Drop for HardhatNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log_path);
    }
}

fn free_port() -> Result<u16, TestNodeError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(TestNodeError::Spawn)?;
    let port = listener.local_addr().map_err(TestNodeError::Spawn)?.port();
    Ok(port)
}
