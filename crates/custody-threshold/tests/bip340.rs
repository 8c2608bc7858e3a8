//! BIP340 test vectors (`test-vectors/bip340/test-vectors.csv`), checked against
//! `custody_threshold::bip340` and, independently, against libsecp256k1 through
//! `bitcoin::secp256k1`.
//!
//! Every row's verification result is checked with our verifier. Rows with a 32-byte
//! message are also checked with libsecp256k1; the rows added in 2022-12 sign messages of
//! 0, 1, 17 and 100 bytes, which the `secp256k1` 0.29 API cannot express (its `Message` is
//! exactly 32 bytes), so libsecp256k1 skips those and only those. Rows with a secret key are
//! also signed, by us and (for 32-byte messages) by libsecp256k1, and must give exactly the
//! published signature.

use bitcoin::secp256k1::{schnorr, Keypair, Message, Secp256k1, XOnlyPublicKey};
use custody_threshold::bip340::{self, SignError, VerifyError};

const CSV: &str = include_str!("../../../test-vectors/bip340/test-vectors.csv");

/// Rows in the published file (indices 0 to 18); pinned so a truncated copy cannot pass.
const PUBLISHED_ROWS: usize = 19;

const HEADER: &str =
    "index,secret key,public key,aux_rand,message,signature,verification result,comment";

struct Row {
    index: usize,
    secret_key: Option<[u8; 32]>,
    public_key: Vec<u8>,
    aux_rand: Option<[u8; 32]>,
    message: Vec<u8>,
    signature: Vec<u8>,
    valid: bool,
    comment: String,
}

fn decode(field: &str, what: &str, index: usize) -> Vec<u8> {
    hex::decode(field).unwrap_or_else(|e| panic!("row {index}: {what} is not hex: {e}"))
}

fn decode32(field: &str, what: &str, index: usize) -> Option<[u8; 32]> {
    if field.is_empty() {
        return None;
    }
    let bytes = decode(field, what, index);
    Some(
        bytes
            .try_into()
            .unwrap_or_else(|_| panic!("row {index}: {what} is not 32 bytes")),
    )
}

/// Parses the CSV. The file uses CRLF line ends, as Python's `csv` module writes them.
fn rows() -> Vec<Row> {
    let mut lines = CSV.lines().map(|line| line.trim_end_matches('\r'));
    assert_eq!(lines.next(), Some(HEADER), "unexpected CSV header");
    lines
        .filter(|line| !line.is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.splitn(8, ',').collect();
            assert_eq!(fields.len(), 8, "row does not have 8 fields: {line}");
            let index: usize = fields[0].parse().expect("index is a number");
            Row {
                index,
                secret_key: decode32(fields[1], "secret key", index),
                public_key: decode(fields[2], "public key", index),
                aux_rand: decode32(fields[3], "aux_rand", index),
                message: decode(fields[4], "message", index),
                signature: decode(fields[5], "signature", index),
                valid: match fields[6] {
                    "TRUE" => true,
                    "FALSE" => false,
                    other => panic!("row {index}: verification result {other:?}"),
                },
                comment: fields[7].to_owned(),
            }
        })
        .collect()
}

/// libsecp256k1's verdict, or `None` when the message is not 32 bytes (see the module doc).
fn libsecp_verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> Option<bool> {
    let digest: [u8; 32] = message.try_into().ok()?;
    let secp = Secp256k1::verification_only();
    let Ok(key) = XOnlyPublicKey::from_slice(public_key) else {
        return Some(false);
    };
    let Ok(sig) = schnorr::Signature::from_slice(signature) else {
        return Some(false);
    };
    Some(
        secp.verify_schnorr(&sig, &Message::from_digest(digest), &key)
            .is_ok(),
    )
}

#[test]
fn bip340_vectors_verify_with_ours_and_libsecp256k1() {
    let rows = rows();
    let data_lines = CSV
        .lines()
        .skip(1)
        .filter(|l| !l.trim_end_matches('\r').is_empty())
        .count();
    assert_eq!(rows.len(), data_lines);
    assert_eq!(rows.len(), PUBLISHED_ROWS);

    let (mut checked, mut libsecp_checked, mut libsecp_skipped) = (0, 0, Vec::new());
    for (position, row) in rows.iter().enumerate() {
        assert_eq!(row.index, position, "rows are numbered in order");
        let context = format!("row {} ({})", row.index, row.comment);

        let ours = bip340::verify(&row.public_key, &row.message, &row.signature);
        assert_eq!(ours.is_ok(), row.valid, "{context}: ours gave {ours:?}");

        match libsecp_verify(&row.public_key, &row.message, &row.signature) {
            Some(verdict) => {
                assert_eq!(verdict, row.valid, "{context}: libsecp256k1 disagrees");
                libsecp_checked += 1;
            }
            None => libsecp_skipped.push(row.index),
        }
        checked += 1;
    }
    assert_eq!(checked, rows.len());
    // Exactly the rows with non-32-byte messages (15..=18) are beyond the 0.29 API.
    assert_eq!(libsecp_skipped, vec![15, 16, 17, 18]);
    assert_eq!(libsecp_checked, rows.len() - 4);
}

#[test]
fn bip340_vectors_sign_exactly() {
    let rows = rows();
    let secp = Secp256k1::new();
    let mut signed = 0;
    for row in rows.iter().filter(|r| r.secret_key.is_some()) {
        let context = format!("row {} ({})", row.index, row.comment);
        let secret_key = row.secret_key.expect("filtered on secret key");
        let aux_rand = row.aux_rand.expect("rows with a secret key have aux_rand");
        assert!(row.valid, "{context}: signing rows are valid signatures");

        // The row's public key belongs to its secret key.
        let keypair = Keypair::from_seckey_slice(&secp, &secret_key).expect("valid secret key");
        assert_eq!(
            keypair.x_only_public_key().0.serialize().as_slice(),
            row.public_key.as_slice(),
            "{context}: public key"
        );

        let ours = bip340::sign_with_aux(&secret_key, &row.message, &aux_rand)
            .unwrap_or_else(|e| panic!("{context}: signing failed: {e}"));
        assert_eq!(
            hex::encode_upper(ours),
            hex::encode_upper(&row.signature),
            "{context}: our signature"
        );

        if let Ok(digest) = <[u8; 32]>::try_from(row.message.as_slice()) {
            let theirs =
                secp.sign_schnorr_with_aux_rand(&Message::from_digest(digest), &keypair, &aux_rand);
            assert_eq!(
                theirs.serialize().as_slice(),
                row.signature.as_slice(),
                "{context}: libsecp256k1 signature"
            );
        }
        signed += 1;
    }
    // Rows 0 to 3 and 15 to 18 carry a secret key.
    assert_eq!(signed, 8);
}

#[test]
fn verify_rejects_malformed_inputs() {
    let rows = rows();
    let good = &rows[1];
    assert!(good.valid);
    bip340::verify(&good.public_key, &good.message, &good.signature).expect("row 1 is valid");

    assert_eq!(
        bip340::verify(&good.public_key[..31], &good.message, &good.signature),
        Err(VerifyError::PublicKeyLength { found: 31 })
    );
    let mut long_key = good.public_key.clone();
    long_key.push(0);
    assert_eq!(
        bip340::verify(&long_key, &good.message, &good.signature),
        Err(VerifyError::PublicKeyLength { found: 33 })
    );
    assert_eq!(
        bip340::verify(&good.public_key, &good.message, &good.signature[..63]),
        Err(VerifyError::SignatureLength { found: 63 })
    );
    assert_eq!(
        bip340::verify(&good.public_key, &good.message, &[]),
        Err(VerifyError::SignatureLength { found: 0 })
    );

    // Row 5: not on the curve; row 14: x not below the field size.
    for index in [5, 14] {
        let row = &rows[index];
        assert_eq!(
            bip340::verify(&row.public_key, &row.message, &row.signature),
            Err(VerifyError::InvalidPublicKey),
            "row {index} ({})",
            row.comment
        );
    }

    // One flipped message bit breaks a valid signature.
    let mut message = good.message.clone();
    message[0] ^= 1;
    assert!(bip340::verify(&good.public_key, &message, &good.signature).is_err());
}

#[test]
fn sign_rejects_out_of_range_secret_keys() {
    let aux = [0u8; 32];
    assert_eq!(
        bip340::sign_with_aux(&[0u8; 32], b"msg", &aux),
        Err(SignError::InvalidSecretKey)
    );
    let order: [u8; 32] =
        hex::decode("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141")
            .expect("hex")
            .try_into()
            .expect("32 bytes");
    assert_eq!(
        bip340::sign_with_aux(&order, b"msg", &aux),
        Err(SignError::InvalidSecretKey)
    );
}
