//! What a transaction's calldata asks a contract to do: the two ERC-20 calls the signer
//! understands (`transfer(address,uint256)` and `approve(address,uint256)`), decoded with
//! `alloy-sol-types` from their Solidity signatures, and everything else as raw bytes.

use alloy_primitives::{Address, Bytes, U256};
use alloy_sol_types::{sol, SolCall};

/// Longest calldata accepted, in bytes (the size limit geth puts on a whole transaction
/// in its pool, 128 KiB).
pub const MAX_CALLDATA_LEN: usize = 128 * 1024;

sol! {
    /// ERC-20 `transfer`.
    function transfer(address to, uint256 amount) external returns (bool);
    /// ERC-20 `approve`.
    function approve(address spender, uint256 amount) external returns (bool);
}

/// The ERC-20 `transfer(address,uint256)` selector, `a9059cbb`.
pub const TRANSFER_SELECTOR: [u8; 4] = transferCall::SELECTOR;
/// The ERC-20 `approve(address,uint256)` selector, `095ea7b3`.
pub const APPROVE_SELECTOR: [u8; 4] = approveCall::SELECTOR;

/// A decoded contract call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// No calldata: a plain value transfer (or a call of the receive function).
    None,
    /// ERC-20 `transfer(to, amount)`.
    Erc20Transfer {
        /// The token recipient.
        recipient: Address,
        /// The amount in the token's smallest unit.
        amount: U256,
    },
    /// ERC-20 `approve(spender, amount)`.
    Erc20Approve {
        /// Who may spend the tokens.
        spender: Address,
        /// The allowance in the token's smallest unit.
        amount: U256,
    },
    /// Any other calldata: shown raw, and needs an explicit policy rule.
    Other(Bytes),
}

/// Why calldata with an ERC-20 selector could not be decoded.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CalldataError {
    /// The calldata is longer than [`MAX_CALLDATA_LEN`].
    #[error("calldata of {found} bytes is longer than the {max} bytes accepted")]
    TooLong {
        /// Its length.
        found: usize,
        /// [`MAX_CALLDATA_LEN`].
        max: usize,
    },
    /// The calldata starts with an ERC-20 selector but its arguments are not exactly two
    /// canonically encoded 32-byte words of the right types.
    #[error("malformed ERC-20 {function}(address,uint256) calldata: {reason}")]
    Malformed {
        /// `transfer` or `approve`.
        function: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl Call {
    /// Decodes calldata. Calldata that starts with the `transfer` or `approve` selector
    /// must be exactly the canonical ABI encoding of that call (selector, a 20-byte address
    /// left-padded with zeros, a 256-bit amount: 68 bytes); anything else that is not empty
    /// is [`Call::Other`].
    ///
    /// # Errors
    ///
    /// [`CalldataError::Malformed`] when a known selector is followed by anything but its
    /// canonical arguments (a signer must not show "transfer" for calldata a token contract
    /// might read differently), [`CalldataError::TooLong`] past [`MAX_CALLDATA_LEN`].
    pub fn decode(data: &[u8]) -> Result<Self, CalldataError> {
        if data.len() > MAX_CALLDATA_LEN {
            return Err(CalldataError::TooLong {
                found: data.len(),
                max: MAX_CALLDATA_LEN,
            });
        }
        if data.is_empty() {
            return Ok(Self::None);
        }
        if data.starts_with(&TRANSFER_SELECTOR) {
            let call = strict_decode::<transferCall>(data, "transfer")?;
            return Ok(Self::Erc20Transfer {
                recipient: call.to,
                amount: call.amount,
            });
        }
        if data.starts_with(&APPROVE_SELECTOR) {
            let call = strict_decode::<approveCall>(data, "approve")?;
            return Ok(Self::Erc20Approve {
                spender: call.spender,
                amount: call.amount,
            });
        }
        Ok(Self::Other(Bytes::copy_from_slice(data)))
    }

    /// Encodes the call back into calldata (the inverse of [`Call::decode`]).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::None => Vec::new(),
            Self::Erc20Transfer { recipient, amount } => transferCall {
                to: *recipient,
                amount: *amount,
            }
            .abi_encode(),
            Self::Erc20Approve { spender, amount } => approveCall {
                spender: *spender,
                amount: *amount,
            }
            .abi_encode(),
            Self::Other(data) => data.to_vec(),
        }
    }

    /// Whether the policy can map this call to a withdrawal without an explicit rule:
    /// only plain transfers and ERC-20 `transfer`.
    pub fn needs_explicit_rule(&self) -> bool {
        !matches!(self, Self::None | Self::Erc20Transfer { .. })
    }
}

/// Calldata for ERC-20 `transfer(recipient, amount)`.
pub fn erc20_transfer(recipient: Address, amount: U256) -> Bytes {
    Call::Erc20Transfer { recipient, amount }.encode().into()
}

/// Calldata for ERC-20 `approve(spender, amount)`.
pub fn erc20_approve(spender: Address, amount: U256) -> Bytes {
    Call::Erc20Approve { spender, amount }.encode().into()
}

/// Decodes with validation (zero padding of the address word) and then requires the
/// re-encoding to equal the input, which also refuses trailing bytes.
fn strict_decode<C: SolCall>(data: &[u8], function: &'static str) -> Result<C, CalldataError> {
    let call = C::abi_decode_validate(data).map_err(|e| CalldataError::Malformed {
        function,
        reason: e.to_string(),
    })?;
    let canonical = call.abi_encode();
    if canonical.len() != data.len() {
        return Err(CalldataError::Malformed {
            function,
            reason: format!(
                "{} bytes where the call takes exactly {}",
                data.len(),
                canonical.len()
            ),
        });
    }
    if canonical != data {
        return Err(CalldataError::Malformed {
            function,
            reason: "arguments are not canonically encoded".into(),
        });
    }
    Ok(call)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{address, hex};

    #[test]
    fn selectors_are_the_erc20_ones() {
        assert_eq!(TRANSFER_SELECTOR, hex!("a9059cbb"));
        assert_eq!(APPROVE_SELECTOR, hex!("095ea7b3"));
    }

    #[test]
    fn decodes_a_usdt_style_transfer() {
        // transfer(0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed, 1_000_000): the layout every
        // token contract and explorer uses.
        let data = hex!(
            "a9059cbb"
            "0000000000000000000000005aaeb6053f3e94c9b9a09f33669435e7ef1beaed"
            "00000000000000000000000000000000000000000000000000000000000f4240"
        );
        let call = Call::decode(&data).expect("valid transfer");
        assert_eq!(
            call,
            Call::Erc20Transfer {
                recipient: address!("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
                amount: U256::from(1_000_000u32),
            }
        );
        assert_eq!(call.encode(), data);
        assert!(!call.needs_explicit_rule());
    }

    #[test]
    fn approve_and_unknown_calls_need_a_rule() {
        let approve = erc20_approve(Address::repeat_byte(0x11), U256::MAX);
        let call = Call::decode(&approve).expect("valid approve");
        assert!(matches!(call, Call::Erc20Approve { amount, .. } if amount == U256::MAX));
        assert!(call.needs_explicit_rule());
        let other = Call::decode(&hex!("deadbeef01")).expect("unknown calldata is not an error");
        assert!(matches!(other, Call::Other(_)));
        assert!(other.needs_explicit_rule());
    }

    #[test]
    fn rejects_malformed_transfers() {
        let good = erc20_transfer(Address::repeat_byte(0x22), U256::from(5u8));
        // Truncated.
        let err = Call::decode(&good[..40]).expect_err("truncated");
        assert!(
            err.to_string().contains("malformed ERC-20 transfer"),
            "{err}"
        );
        // Trailing byte.
        let mut long = good.to_vec();
        long.push(0);
        let err = Call::decode(&long).expect_err("trailing");
        assert!(err.to_string().contains("exactly 68"), "{err}");
        // Dirty address padding: a token contract would ignore the high bytes, a signer
        // must not show an address that is not what the contract reads.
        let mut dirty = good.to_vec();
        dirty[4] = 1;
        let err = Call::decode(&dirty).expect_err("dirty padding");
        assert!(
            err.to_string().contains("malformed ERC-20 transfer"),
            "{err}"
        );
    }

    #[test]
    fn refuses_calldata_over_the_limit() {
        let err = Call::decode(&vec![0; MAX_CALLDATA_LEN + 1]).expect_err("too long");
        assert_eq!(
            err.to_string(),
            "calldata of 131073 bytes is longer than the 131072 bytes accepted"
        );
        assert!(Call::decode(&vec![0; MAX_CALLDATA_LEN]).is_ok());
    }
}
