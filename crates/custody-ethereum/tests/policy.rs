//! The policy mapping end to end: ETH and ERC-20 withdrawals evaluated against a signed
//! policy document with per-asset tiers and an EIP-55 whitelist.

use alloy_primitives::{address, Address, Bytes, U256};
use custody_ethereum::calldata::erc20_transfer;
use custody_ethereum::{erc20_asset, Eip1559Fields, EthTransaction};
use custody_policy::{
    Action, AdminQuorum, DenyReason, Network, PolicyDocument, Rule, SignedPolicy, TransactionLimit,
    Verdict, VerifiedPolicy, WhitelistEntry,
};
use custody_threshold::Identity;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const T0: u64 = 1_800_000_000;
const ETH: u128 = 1_000_000_000_000_000_000;
const USDC: Address = address!("A0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48");
const PAYEE: Address = address!("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");

fn policy() -> VerifiedPolicy {
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let admin = Identity::generate("admin", &mut rng).expect("name");
    let coordinator = Identity::generate("coordinator", &mut rng).expect("name");
    let approvers = [
        Identity::generate("approver-1", &mut rng).expect("name"),
        Identity::generate("approver-2", &mut rng).expect("name"),
    ];
    let quorum = AdminQuorum {
        threshold: 1,
        admins: vec![admin.card()],
    };
    let usdc = erc20_asset(USDC);
    let rule = |asset: &str, min_amount, max_amount, approvals| Rule {
        asset: asset.into(),
        min_amount,
        max_amount,
        window: None,
        action: Action::Allow { approvals },
    };
    // The policy document has no Ethereum network value yet; the network does not take
    // part in evaluation.
    let doc = PolicyDocument {
        version: 1,
        network: Network::Regtest,
        announced_at: T0,
        effective_from: T0,
        change_delay_secs: 0,
        admins: quorum.clone(),
        coordinator: coordinator.card(),
        approvers: approvers.iter().map(Identity::card).collect(),
        whitelist: vec![WhitelistEntry {
            address: PAYEE.to_checksum(None),
            active_from: T0,
        }],
        limits: vec![
            TransactionLimit {
                asset: "ETH".into(),
                max_amount: 10 * ETH,
            },
            TransactionLimit {
                asset: usdc.clone(),
                max_amount: 1_000_000_000_000,
            },
        ],
        rules: vec![
            rule("ETH", 0, ETH, 1),
            rule("ETH", ETH + 1, 10 * ETH, 2),
            rule(&usdc, 0, 1_000_000_000_000, 1),
        ],
        velocity: vec![],
    };
    let mut signed = SignedPolicy::new(doc).expect("valid document");
    signed.sign(&admin, &mut rng);
    signed.verify(&quorum).expect("verifies")
}

fn eth_transfer(to: Address, value: u128) -> EthTransaction {
    EthTransaction::eip1559(Eip1559Fields {
        chain_id: 1,
        nonce: 0,
        to,
        value: U256::from(value),
        gas_limit: 21_000,
        max_fee_per_gas: 30_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        input: Bytes::new(),
    })
    .expect("valid")
}

#[test]
fn eth_and_erc20_withdrawals_meet_the_policy_rules() {
    let policy = policy();
    let small = eth_transfer(PAYEE, ETH / 2)
        .policy_withdrawal()
        .expect("maps");
    assert!(matches!(
        policy.evaluate(&small, T0),
        Verdict::Allow {
            required_approvals: 1,
            rule_index: 0
        }
    ));
    let large = eth_transfer(PAYEE, 5 * ETH)
        .policy_withdrawal()
        .expect("maps");
    assert!(matches!(
        policy.evaluate(&large, T0),
        Verdict::Allow {
            required_approvals: 2,
            ..
        }
    ));

    let token = EthTransaction::eip1559(Eip1559Fields {
        chain_id: 1,
        nonce: 1,
        to: USDC,
        value: U256::ZERO,
        gas_limit: 65_000,
        max_fee_per_gas: 30_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        input: erc20_transfer(PAYEE, U256::from(2_500_000_000u64)),
    })
    .expect("valid");
    let withdrawal = token.policy_withdrawal().expect("maps");
    assert!(matches!(
        policy.evaluate(&withdrawal, T0),
        Verdict::Allow {
            required_approvals: 1,
            rule_index: 2
        }
    ));
}

#[test]
fn unknown_destinations_are_denied() {
    let policy = policy();
    let elsewhere = eth_transfer(Address::repeat_byte(0x99), ETH / 2)
        .policy_withdrawal()
        .expect("maps");
    let verdict = policy.evaluate(&elsewhere, T0);
    assert!(
        matches!(
            verdict,
            Verdict::Deny {
                reason: DenyReason::UnknownDestination { .. }
            }
        ),
        "{verdict:?}"
    );
}

/// The wallet's own address.
const OWN: Address = address!("1a642f0E3c3aF545E7AcBD38b07251B3990914F1");

#[test]
fn a_transfer_to_the_wallet_itself_needs_no_whitelist_and_a_rule_covering_zero() {
    let policy = policy();
    // Not whitelisted, and the value is over the per-transaction limit: it comes back.
    for value in [0, 20 * ETH] {
        let void = eth_transfer(OWN, value)
            .policy_withdrawal_from(OWN)
            .expect("maps");
        assert!(void.is_internal());
        assert_eq!(
            policy.evaluate(&void, T0),
            Verdict::Allow {
                required_approvals: 1,
                rule_index: 0
            }
        );
    }
    // The same transaction from another wallet pays OWN, which is not whitelisted.
    let elsewhere = eth_transfer(OWN, 0)
        .policy_withdrawal_from(Address::repeat_byte(0x42))
        .expect("maps");
    assert!(matches!(
        policy.evaluate(&elsewhere, T0),
        Verdict::Deny {
            reason: DenyReason::UnknownDestination { .. }
        }
    ));
    // A whitelisted payee is still a payment seen from the wallet.
    let paid = eth_transfer(PAYEE, ETH / 2)
        .policy_withdrawal_from(OWN)
        .expect("maps");
    assert_eq!(paid.payments.len(), 1);
}
