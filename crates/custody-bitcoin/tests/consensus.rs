//! `verify_transaction` against the BIP341 fully signed transaction (7 Taproot key-path
//! inputs with every sighash type, one P2PKH and one P2WPKH input), and its refusals.

use bitcoin::consensus::encode::deserialize;
use bitcoin::{Amount, ScriptBuf, Transaction, TxOut};
use custody_bitcoin::{verify_input, verify_transaction, ConsensusError, ScriptFailure};
use serde_json::Value;

const BIP341: &str = include_str!("../../../test-vectors/bip341/wallet-test-vectors.json");

fn vector() -> (Transaction, Vec<TxOut>) {
    let v: Value = serde_json::from_str(BIP341).expect("json");
    let case = &v["keyPathSpending"][0];
    let tx_hex = case["auxiliary"]["fullySignedTx"].as_str().expect("hex");
    let tx: Transaction = deserialize(&hex::decode(tx_hex).expect("hex")).expect("tx");
    let spent = case["given"]["utxosSpent"]
        .as_array()
        .expect("array")
        .iter()
        .map(|u| TxOut {
            value: Amount::from_sat(u["amountSats"].as_u64().expect("amount")),
            script_pubkey: ScriptBuf::from_hex(u["scriptPubKey"].as_str().expect("hex"))
                .expect("script"),
        })
        .collect();
    (tx, spent)
}

#[test]
fn bip341_fully_signed_transaction_verifies() {
    let (tx, spent) = vector();
    assert_eq!(tx.input.len(), 9);
    verify_transaction(&tx, &spent).expect("every input verifies");
}

#[test]
fn a_changed_spent_amount_fails_every_taproot_input_and_names_the_first() {
    let (tx, mut spent) = vector();
    // Changing input 8's amount breaks every Taproot signature that commits to all amounts.
    spent[8].value += Amount::from_sat(1);
    match verify_transaction(&tx, &spent) {
        Err(ConsensusError::Input {
            input,
            reason,
            outpoint,
        }) => {
            assert_eq!(input, 0);
            assert_eq!(reason, ScriptFailure::Script);
            assert_eq!(outpoint, tx.input[0].previous_output);
        }
        other => panic!("expected a failing input, got {other:?}"),
    }
    // The P2PKH input does not commit to amounts, and ANYONECANPAY Taproot inputs (1, 7)
    // commit only to their own: they still verify.
    for i in [1usize, 2, 7] {
        verify_input(&tx, &spent, i).expect("does not commit to input 8's amount");
    }
    // Every other Taproot input commits to all amounts, including input 8 (ACP) itself.
    for i in [0usize, 3, 4, 6, 8] {
        assert!(verify_input(&tx, &spent, i).is_err(), "taproot input {i}");
    }
}

#[test]
fn a_tampered_signature_names_its_input() {
    let (mut tx, spent) = vector();
    let mut w = tx.input[4].witness.to_vec();
    w[0][10] ^= 1;
    tx.input[4].witness = w.into();
    match verify_transaction(&tx, &spent) {
        Err(ConsensusError::Input {
            input: 4,
            reason: ScriptFailure::Script,
            ..
        }) => {}
        other => panic!("expected input 4 to fail, got {other:?}"),
    }
}

#[test]
fn missing_spent_outputs_are_refused() {
    let (tx, mut spent) = vector();
    spent.pop();
    assert_eq!(
        verify_transaction(&tx, &spent),
        Err(ConsensusError::SpentOutputCount {
            inputs: 9,
            spent_outputs: 8
        })
    );
}
