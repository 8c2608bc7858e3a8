//! A signer's fee limits: the price per gas and the most the fee can come to.

use alloy_primitives::{address, Bytes, U256};
use custody_ethereum::{Eip1559Fields, EthTransaction, FeeLimitError, FeeLimits, LegacyFields};

const GWEI: u128 = 1_000_000_000;

fn eip1559(gas_limit: u64, max_fee_per_gas: u128) -> EthTransaction {
    EthTransaction::eip1559(Eip1559Fields {
        chain_id: 1,
        nonce: 7,
        to: address!("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
        value: U256::from(10u64),
        gas_limit,
        max_fee_per_gas,
        max_priority_fee_per_gas: 1,
        input: Bytes::new(),
    })
    .expect("valid")
}

#[test]
fn ordinary_fees_pass_the_default_limits() {
    let limits = FeeLimits::default();
    assert_eq!(limits.check(&eip1559(21_000, 30 * GWEI)), Ok(()));
    assert_eq!(limits.check(&eip1559(65_000, 500 * GWEI)), Ok(()));
    // Exactly at both limits: 100 000 gas at 1 000 gwei is 0.1 ether.
    assert_eq!(limits.check(&eip1559(100_000, 1_000 * GWEI)), Ok(()));
}

#[test]
fn a_price_per_gas_above_the_limit_is_refused_with_both_numbers() {
    let err = FeeLimits::default()
        .check(&eip1559(21_000, 1_000 * GWEI + 1))
        .expect_err("above the price limit");
    assert!(matches!(err, FeeLimitError::FeePerGas { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("1000.000000001 gwei"), "{text}");
    assert!(text.contains("limit of 1000 gwei"), "{text}");
}

#[test]
fn a_gas_limit_that_makes_the_fee_too_large_is_refused() {
    // 200 000 gas at 600 gwei: 0.12 ether.
    let err = FeeLimits::default()
        .check(&eip1559(200_000, 600 * GWEI))
        .expect_err("above the total limit");
    assert_eq!(
        err,
        FeeLimitError::Total {
            fee: "0.12".into(),
            gas: 200_000,
            limit: "0.1".into(),
        }
    );
    assert!(err.to_string().contains("gas limit 200000"), "{err}");
}

#[test]
fn a_legacy_transactions_gas_price_is_its_price_per_gas() {
    let legacy = |gas_price| {
        EthTransaction::legacy(LegacyFields {
            chain_id: 1,
            nonce: 9,
            to: address!("3535353535353535353535353535353535353535"),
            value: U256::from(1u64),
            gas_limit: 21_000,
            gas_price,
            input: Bytes::new(),
        })
        .expect("valid")
    };
    let limits = FeeLimits::default();
    assert_eq!(limits.check(&legacy(20 * GWEI)), Ok(()));
    assert!(matches!(
        limits.check(&legacy(5_000 * GWEI)),
        Err(FeeLimitError::FeePerGas { .. })
    ));
}

#[test]
fn stricter_limits_are_applied_as_given() {
    let limits = FeeLimits {
        max_fee_per_gas: 50 * GWEI,
        max_fee: 21_000 * 40 * GWEI,
    };
    assert_eq!(limits.check(&eip1559(21_000, 40 * GWEI)), Ok(()));
    assert!(matches!(
        limits.check(&eip1559(21_000, 45 * GWEI)),
        Err(FeeLimitError::Total { .. })
    ));
    assert!(matches!(
        limits.check(&eip1559(21_000, 51 * GWEI)),
        Err(FeeLimitError::FeePerGas { .. })
    ));
}
