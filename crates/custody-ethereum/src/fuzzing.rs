//! Entry points for the fuzz harness (`fuzz/`): each takes arbitrary bytes and panics only
//! on a bug in this crate (a panic in a decoder, or a decoded value that does not survive
//! its round trip).

use crate::calldata::Call;
use crate::eip4527::{EthSignRequest, EthSignature};
use crate::tx::{EthTransaction, SignedEthTransaction};

fn check_error(e: &dyn std::error::Error) {
    assert!(!e.to_string().is_empty(), "empty Display for {e:?}");
}

/// Fuzzes [`EthSignRequest::from_cbor`]: an accepted request re-encodes to the input, goes
/// through its UR and back unchanged, and its transaction (if any) decodes or fails
/// cleanly.
pub fn do_test_eth_sign_request(data: &[u8]) {
    match EthSignRequest::from_cbor(data) {
        Ok(request) => {
            assert!(
                request.to_cbor() == data,
                "re-encoding differs from the input"
            );
            let again = EthSignRequest::from_ur(&request.to_ur().to_ascii_uppercase())
                .expect("the UR of an accepted request decodes");
            assert_eq!(again, request, "UR round trip changed the request");
            let _ = request.derivation_path.to_string();
            match request.transaction() {
                Ok(tx) => {
                    assert_eq!(tx.encode_unsigned(), request.sign_data);
                    let _ = tx.summary().map(|s| (s.to_string(), s.to_json()));
                }
                Err(e) => check_error(&e),
            }
        }
        Err(e) => check_error(&e),
    }
}

/// Fuzzes [`EthSignature::from_cbor`]: an accepted signature re-encodes to the input and
/// survives its UR round trip.
pub fn do_test_eth_signature(data: &[u8]) {
    match EthSignature::from_cbor(data) {
        Ok(signature) => {
            assert!(
                signature.to_cbor() == data,
                "re-encoding differs from the input"
            );
            let again = EthSignature::from_ur(&signature.to_ur())
                .expect("the UR of an accepted signature decodes");
            assert_eq!(again, signature, "UR round trip changed the signature");
        }
        Err(e) => check_error(&e),
    }
}

/// Fuzzes [`EthTransaction::decode_unsigned`] (and, on the same bytes,
/// [`SignedEthTransaction::decode`]): an accepted transaction re-encodes to the input,
/// hashes, summarises and maps to the policy (also as seen from its own recipient, where a
/// plain transfer is internal) without panicking; a summary renders as text and JSON.
pub fn do_test_eth_transaction(data: &[u8]) {
    match EthTransaction::decode_unsigned(data) {
        Ok(tx) => {
            assert!(
                tx.encode_unsigned() == data,
                "re-encoding differs from the input"
            );
            let again = EthTransaction::decode_unsigned(&tx.encode_unsigned())
                .expect("the re-encoding decodes");
            assert_eq!(again, tx);
            assert_eq!(again.signing_hash(), tx.signing_hash());
            match tx.summary() {
                Ok(summary) => {
                    assert!(!summary.to_string().is_empty());
                    let json = summary.to_json();
                    assert_eq!(json["chain_id"], tx.chain_id());
                    match tx.policy_withdrawal() {
                        Ok(w) => assert!(!summary.needs_explicit_rule() && w.payments.len() == 1),
                        Err(e) => check_error(&e),
                    }
                    // Seen from its own recipient, a plain transfer is internal.
                    let own = tx.to().unwrap_or_default();
                    let from_own = tx.summary_from(own).expect("summary() succeeded");
                    let _ = (from_own.to_string(), from_own.to_json());
                    match tx.policy_withdrawal_from(own) {
                        Ok(w) => assert_eq!(
                            w.is_internal(),
                            from_own.is_internal_transfer() && tx.input().is_empty()
                        ),
                        Err(e) => check_error(&e),
                    }
                }
                Err(e) => check_error(&e),
            }
        }
        Err(e) => check_error(&e),
    }
    match SignedEthTransaction::decode(data) {
        Ok(signed) => {
            assert!(
                signed.encoded() == data,
                "signed re-encoding differs from the input"
            );
            let _ = signed.recover_sender();
        }
        Err(e) => check_error(&e),
    }
}

/// Fuzzes [`Call::decode`]: accepted calldata re-encodes to the input.
pub fn do_test_eth_calldata(data: &[u8]) {
    match Call::decode(data) {
        Ok(call) => {
            assert!(call.encode() == data, "re-encoding differs from the input");
            let _ = call.needs_explicit_rule();
        }
        Err(e) => check_error(&e),
    }
}
