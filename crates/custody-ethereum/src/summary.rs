//! The human summary an Ethereum signer shows before it signs, and the mapping of a
//! transaction to the policy's [`Withdrawal`].

use std::fmt;

use alloy_primitives::{Address, U256};
use custody_policy::{Payment, Withdrawal};
use serde_json::json;

use crate::calldata::{Call, CalldataError};
use crate::tx::{EthTransaction, TxType};
use crate::units::{format_eth, format_gwei};

/// The name of a well-known chain id, if it is one.
pub fn chain_name(chain_id: u64) -> Option<&'static str> {
    match chain_id {
        1 => Some("Ethereum mainnet"),
        11_155_111 => Some("Sepolia testnet"),
        17_000 => Some("Holesky testnet"),
        31_337 => Some("Hardhat/Anvil local devnet"),
        _ => None,
    }
}

/// What the transaction does, from its recipient and calldata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A plain ether transfer (no calldata).
    EthTransfer,
    /// A plain ether transfer (no calldata) to the sending wallet's own address: the value
    /// comes back, only the gas leaves the wallet. Once mined, it voids any other
    /// transaction of the wallet with the same nonce. Only a summary that knows the wallet
    /// ([`EthTransaction::summary_from`]) says so; [`EthTransaction::summary`] shows it as
    /// an [`Action::EthTransfer`].
    InternalTransfer,
    /// ERC-20 `transfer` on the token contract the transaction calls.
    Erc20Transfer {
        /// The token contract (the transaction's `to`).
        token: Address,
        /// The token recipient.
        recipient: Address,
        /// The amount in the token's smallest unit.
        amount: U256,
    },
    /// ERC-20 `approve` on the token contract the transaction calls.
    Erc20Approve {
        /// The token contract.
        token: Address,
        /// Who may spend.
        spender: Address,
        /// The allowance in the token's smallest unit.
        amount: U256,
    },
    /// Deploys a contract (no recipient).
    ContractCreation,
    /// Any other contract call, shown as raw calldata.
    RawCall,
}

impl Action {
    /// Whether a policy must have an explicit rule for this action: everything but plain
    /// ether transfers (internal ones included) and ERC-20 `transfer`.
    pub fn needs_explicit_rule(&self) -> bool {
        !matches!(
            self,
            Self::EthTransfer | Self::InternalTransfer | Self::Erc20Transfer { .. }
        )
    }
}

/// Why a summary or policy mapping could not be made.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SummaryError {
    /// The calldata starts with an ERC-20 selector but is malformed.
    #[error(transparent)]
    Calldata(#[from] CalldataError),
    /// value + gas limit × max fee does not fit in 256 bits.
    #[error("the worst-case cost (value + gas limit × max fee) overflows 256 bits")]
    CostOverflow,
}

/// Why a transaction does not map to a policy [`Withdrawal`].
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyMappingError {
    /// The summary could not be made.
    #[error(transparent)]
    Summary(#[from] SummaryError),
    /// The transaction does something the policy has no generic rule for.
    #[error("the policy needs an explicit rule for {what}; it is not signed as a withdrawal")]
    NeedsExplicitRule {
        /// What the transaction does.
        what: String,
    },
    /// An amount over the policy's 128-bit range.
    #[error("amount {amount} does not fit the policy's 128-bit amounts")]
    AmountTooLarge {
        /// The amount, in base units.
        amount: U256,
    },
}

/// Everything a signer shows about a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The transaction type.
    pub tx_type: TxType,
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// The sender's nonce.
    pub nonce: u64,
    /// The recipient (`None`: contract creation).
    pub to: Option<Address>,
    /// Wei sent.
    pub value: U256,
    /// Max fee per gas (the gas price for legacy), in wei.
    pub max_fee_per_gas: u128,
    /// Max priority fee per gas, in wei (EIP-1559 only).
    pub max_priority_fee_per_gas: Option<u128>,
    /// Gas limit.
    pub gas_limit: u64,
    /// value + gas limit × max fee, in wei: the most the sender can lose.
    pub worst_case_cost: U256,
    /// Access-list entries (EIP-1559).
    pub access_list_len: usize,
    /// What the transaction does.
    pub action: Action,
    /// The calldata, `0x`-prefixed hex (empty string for none).
    pub calldata_hex: String,
}

impl EthTransaction {
    /// The summary a signer shows.
    ///
    /// # Errors
    ///
    /// [`SummaryError`] for malformed ERC-20 calldata or a cost overflowing 256 bits.
    pub fn summary(&self) -> Result<Summary, SummaryError> {
        let gas_cost = U256::from(self.gas_limit())
            .checked_mul(U256::from(self.max_fee_per_gas()))
            .ok_or(SummaryError::CostOverflow)?;
        let worst_case_cost = self
            .value()
            .checked_add(gas_cost)
            .ok_or(SummaryError::CostOverflow)?;
        let call = Call::decode(self.input())?;
        let action = match (self.to(), call) {
            (None, _) => Action::ContractCreation,
            (Some(_), Call::None) => Action::EthTransfer,
            (Some(token), Call::Erc20Transfer { recipient, amount }) => Action::Erc20Transfer {
                token,
                recipient,
                amount,
            },
            (Some(token), Call::Erc20Approve { spender, amount }) => Action::Erc20Approve {
                token,
                spender,
                amount,
            },
            (Some(_), Call::Other(_)) => Action::RawCall,
        };
        let input = self.input();
        Ok(Summary {
            tx_type: self.tx_type(),
            chain_id: self.chain_id(),
            nonce: self.nonce(),
            to: self.to(),
            value: self.value(),
            max_fee_per_gas: self.max_fee_per_gas(),
            max_priority_fee_per_gas: self.max_priority_fee_per_gas(),
            gas_limit: self.gas_limit(),
            worst_case_cost,
            access_list_len: self.access_list_len(),
            action,
            calldata_hex: if input.is_empty() {
                String::new()
            } else {
                format!("0x{}", alloy_primitives::hex::encode(input))
            },
        })
    }

    /// The summary a signer of the wallet at address `own` shows: as
    /// [`EthTransaction::summary`], except that a plain ether transfer (no calldata) to
    /// `own` is an [`Action::InternalTransfer`].
    ///
    /// # Errors
    ///
    /// As [`EthTransaction::summary`].
    pub fn summary_from(&self, own: Address) -> Result<Summary, SummaryError> {
        let mut summary = self.summary()?;
        if summary.action == Action::EthTransfer && summary.to == Some(own) {
            summary.action = Action::InternalTransfer;
        }
        Ok(summary)
    }

    /// Maps the transaction to the policy's [`Withdrawal`], from the transaction itself:
    ///
    /// - a plain transfer: asset `ETH`, one payment of `value` wei to `to`;
    /// - ERC-20 `transfer` with no ether attached: asset `ERC20:0x<token contract in lower
    ///   case>`, one payment of the token amount (smallest unit) to the token recipient.
    ///
    /// Payment addresses are EIP-55 checksummed, as the summary shows them. The network fee
    /// is not a payment. A transfer to the wallet's own address is a payment here too; a
    /// signer, which knows its address, uses [`EthTransaction::policy_withdrawal_from`].
    ///
    /// # Errors
    ///
    /// [`PolicyMappingError::NeedsExplicitRule`] for `approve`, any other calldata,
    /// contract creation, or ether sent along with a token transfer;
    /// [`PolicyMappingError::AmountTooLarge`] past `u128`.
    pub fn policy_withdrawal(&self) -> Result<Withdrawal, PolicyMappingError> {
        withdrawal_of(self.summary()?)
    }

    /// Maps the transaction, sent by the wallet at address `own`, to the policy's
    /// [`Withdrawal`]: as [`EthTransaction::policy_withdrawal`], except that a plain ether
    /// transfer (no calldata) to `own` is an internal transfer, asset `ETH` with no
    /// payments ([`Withdrawal::is_internal`]), whatever its value: the value comes back to
    /// the wallet and only the gas is spent, which the signer caps with
    /// [`FeeLimits`](crate::FeeLimits). This is the replacement that voids an earlier
    /// transaction of the wallet with the same nonce. The wallet's address has no code
    /// (a signer signs no EIP-7702 authorization), so the call runs nothing.
    ///
    /// Calldata to `own` (an ERC-20 selector or any other) is mapped as by
    /// [`EthTransaction::policy_withdrawal`].
    ///
    /// # Errors
    ///
    /// As [`EthTransaction::policy_withdrawal`].
    pub fn policy_withdrawal_from(&self, own: Address) -> Result<Withdrawal, PolicyMappingError> {
        withdrawal_of(self.summary_from(own)?)
    }
}

/// The policy's view of a summarised transaction.
fn withdrawal_of(summary: Summary) -> Result<Withdrawal, PolicyMappingError> {
    let needs_rule = |what: &str| PolicyMappingError::NeedsExplicitRule { what: what.into() };
    let amount = |value: U256| {
        u128::try_from(value).map_err(|_| PolicyMappingError::AmountTooLarge { amount: value })
    };
    match summary.action {
        Action::InternalTransfer => Ok(Withdrawal {
            asset: "ETH".into(),
            payments: Vec::new(),
        }),
        Action::EthTransfer => {
            let to = summary
                .to
                .ok_or_else(|| needs_rule("a contract creation"))?;
            Ok(Withdrawal {
                asset: "ETH".into(),
                payments: vec![Payment {
                    address: to.to_checksum(None),
                    amount: amount(summary.value)?,
                }],
            })
        }
        Action::Erc20Transfer {
            token,
            recipient,
            amount: tokens,
        } => {
            if !summary.value.is_zero() {
                return Err(needs_rule("an ERC-20 transfer that also sends ether"));
            }
            Ok(Withdrawal {
                asset: erc20_asset(token),
                payments: vec![Payment {
                    address: recipient.to_checksum(None),
                    amount: amount(tokens)?,
                }],
            })
        }
        Action::Erc20Approve { token, spender, .. } => Err(needs_rule(&format!(
            "an ERC-20 approve of token {} for spender {}",
            token.to_checksum(None),
            spender.to_checksum(None)
        ))),
        Action::ContractCreation => Err(needs_rule("a contract creation")),
        Action::RawCall => Err(needs_rule(&format!(
            "an unrecognised contract call (calldata {})",
            summary.calldata_hex
        ))),
    }
}

/// The policy asset identifier of an ERC-20 token: `ERC20:0x` and the contract address in
/// lower-case hex.
pub fn erc20_asset(token: Address) -> String {
    format!("ERC20:0x{}", alloy_primitives::hex::encode(token))
}

fn gwei(wei: u128) -> String {
    format!("{} gwei", format_gwei(wei))
}

impl Summary {
    /// Whether the policy must have an explicit rule for this transaction.
    pub fn needs_explicit_rule(&self) -> bool {
        self.action.needs_explicit_rule()
    }

    /// Whether the transaction is an internal transfer to the wallet itself
    /// ([`Action::InternalTransfer`]).
    pub fn is_internal_transfer(&self) -> bool {
        self.action == Action::InternalTransfer
    }

    /// The most the gas can cost, in wei: gas limit × max fee (the worst-case cost without
    /// the value).
    pub fn max_gas_cost(&self) -> U256 {
        self.worst_case_cost.saturating_sub(self.value)
    }

    /// The summary as JSON: amounts as exact decimal strings (wei, ETH, gwei), addresses
    /// EIP-55 checksummed, `needs_explicit_rule` set for anything but plain and ERC-20
    /// transfers, `internal_transfer` set for a transfer to the wallet itself (action kind
    /// `internal_transfer`, with the most the gas can cost).
    pub fn to_json(&self) -> serde_json::Value {
        let action = match &self.action {
            Action::EthTransfer => json!({ "kind": "eth_transfer" }),
            Action::InternalTransfer => json!({
                "kind": "internal_transfer",
                "leaves_wallet": "nothing but the gas",
                "max_gas_cost_wei": self.max_gas_cost().to_string(),
                "max_gas_cost_eth": format_eth(self.max_gas_cost()),
                "voids_nonce": self.nonce,
            }),
            Action::Erc20Transfer {
                token,
                recipient,
                amount,
            } => json!({
                "kind": "erc20_transfer",
                "token": token.to_checksum(None),
                "recipient": recipient.to_checksum(None),
                "amount": amount.to_string(),
            }),
            Action::Erc20Approve {
                token,
                spender,
                amount,
            } => json!({
                "kind": "erc20_approve",
                "token": token.to_checksum(None),
                "spender": spender.to_checksum(None),
                "amount": amount.to_string(),
            }),
            Action::ContractCreation => json!({ "kind": "contract_creation" }),
            Action::RawCall => json!({ "kind": "raw_call" }),
        };
        json!({
            "type": match self.tx_type { TxType::Eip1559 => "eip1559", TxType::Legacy => "legacy" },
            "chain_id": self.chain_id,
            "chain_name": chain_name(self.chain_id),
            "nonce": self.nonce,
            "to": self.to.map(|a| a.to_checksum(None)),
            "value_wei": self.value.to_string(),
            "value_eth": format_eth(self.value),
            "max_fee_per_gas_wei": self.max_fee_per_gas.to_string(),
            "max_fee_per_gas_gwei": format_gwei(self.max_fee_per_gas),
            "max_priority_fee_per_gas_wei": self.max_priority_fee_per_gas.map(|f| f.to_string()),
            "max_priority_fee_per_gas_gwei": self.max_priority_fee_per_gas.map(format_gwei),
            "gas_limit": self.gas_limit,
            "worst_case_cost_wei": self.worst_case_cost.to_string(),
            "worst_case_cost_eth": format_eth(self.worst_case_cost),
            "access_list_entries": self.access_list_len,
            "action": action,
            "calldata": self.calldata_hex,
            "needs_explicit_rule": self.needs_explicit_rule(),
            "internal_transfer": self.is_internal_transfer(),
        })
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Ethereum {} transaction", self.tx_type.name())?;
        match chain_name(self.chain_id) {
            Some(name) => writeln!(f, "  chain:           {} ({name})", self.chain_id)?,
            None => writeln!(f, "  chain:           {} (unknown chain)", self.chain_id)?,
        }
        writeln!(f, "  nonce:           {}", self.nonce)?;
        match self.to {
            Some(to) if self.is_internal_transfer() => writeln!(
                f,
                "  to:              {} (this wallet itself)",
                to.to_checksum(None)
            )?,
            Some(to) => writeln!(f, "  to:              {}", to.to_checksum(None))?,
            None => writeln!(f, "  to:              (none: contract creation)")?,
        }
        writeln!(f, "  value:           {} ETH", format_eth(self.value))?;
        match self.max_priority_fee_per_gas {
            Some(tip) => {
                writeln!(
                    f,
                    "  max fee:         {} per gas",
                    gwei(self.max_fee_per_gas)
                )?;
                writeln!(f, "  priority fee:    {} per gas", gwei(tip))?;
            }
            None => writeln!(
                f,
                "  gas price:       {} per gas",
                gwei(self.max_fee_per_gas)
            )?,
        }
        writeln!(f, "  gas limit:       {}", self.gas_limit)?;
        writeln!(
            f,
            "  worst-case cost: {} ETH (value + gas limit x max fee)",
            format_eth(self.worst_case_cost)
        )?;
        if self.access_list_len > 0 {
            writeln!(f, "  access list:     {} entries", self.access_list_len)?;
        }
        match &self.action {
            Action::EthTransfer => writeln!(f, "  action:          ether transfer")?,
            Action::InternalTransfer => {
                writeln!(
                    f,
                    "  action:          internal transfer: {} ETH to this wallet itself (nonce {})",
                    format_eth(self.value),
                    self.nonce
                )?;
                writeln!(
                    f,
                    "                   nothing leaves the wallet but the gas (at most {} ETH);",
                    format_eth(self.max_gas_cost())
                )?;
                writeln!(
                    f,
                    "                   it voids any other transaction of this wallet with nonce {} not mined yet",
                    self.nonce
                )?;
            }
            Action::Erc20Transfer {
                token,
                recipient,
                amount,
            } => {
                writeln!(f, "  action:          ERC-20 transfer")?;
                writeln!(f, "    token:         {}", token.to_checksum(None))?;
                writeln!(f, "    recipient:     {}", recipient.to_checksum(None))?;
                writeln!(f, "    amount:        {amount} (token base units)")?;
            }
            Action::Erc20Approve {
                token,
                spender,
                amount,
            } => {
                writeln!(
                    f,
                    "  action:          ERC-20 approve (needs an explicit policy rule)"
                )?;
                writeln!(f, "    token:         {}", token.to_checksum(None))?;
                writeln!(f, "    spender:       {}", spender.to_checksum(None))?;
                writeln!(f, "    amount:        {amount} (token base units)")?;
            }
            Action::ContractCreation => writeln!(
                f,
                "  action:          contract creation (needs an explicit policy rule)"
            )?,
            Action::RawCall => writeln!(
                f,
                "  action:          unrecognised contract call (needs an explicit policy rule)"
            )?,
        }
        if !self.calldata_hex.is_empty() {
            writeln!(f, "  calldata:        {}", self.calldata_hex)?;
        }
        Ok(())
    }
}
