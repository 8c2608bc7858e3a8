//! Helpers shared by the `qr_*` tests and `benches/qr.rs`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use bitcoin::bip32::{DerivationPath, Fingerprint};
use bitcoin::hashes::Hash;
use bitcoin::psbt::{raw::ProprietaryKey, Psbt};
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use bitcoin::{
    absolute, transaction, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid,
    Witness, XOnlyPublicKey,
};
use sha2::{Digest, Sha256};

/// `test-vectors/` at the workspace root.
pub fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-vectors")
}

/// Xoshiro256** as the BC-UR reference implementation seeds and uses it (test-local, to
/// regenerate the reference test messages independently of the `ur` crate).
pub struct Xoshiro256 {
    s: [u64; 4],
}

impl Xoshiro256 {
    pub fn from_seed_bytes(seed: &[u8]) -> Self {
        let digest = Sha256::digest(seed);
        let mut s = [0u64; 4];
        for (i, word) in s.iter_mut().enumerate() {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&digest[i * 8..i * 8 + 8]);
            *word = u64::from_be_bytes(bytes);
        }
        Self { s }
    }

    pub fn next(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    #[allow(clippy::cast_precision_loss)]
    pub fn next_double(&mut self) -> f64 {
        self.next() as f64 / (u64::MAX as f64 + 1.0)
    }

    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    pub fn next_int(&mut self, low: u64, high: u64) -> u64 {
        (self.next_double() * (high - low + 1) as f64) as u64 + low
    }
}

/// The reference implementation's `make_message(len, seed)`.
#[allow(clippy::cast_possible_truncation)]
pub fn make_message(seed: &str, len: usize) -> Vec<u8> {
    let mut rng = Xoshiro256::from_seed_bytes(seed.as_bytes());
    (0..len).map(|_| rng.next_int(0, 255) as u8).collect()
}

/// Deterministic pseudo-random bytes for payloads (incompressible, like a real PSBT's keys
/// and signatures).
pub fn payload(len: usize, seed: &str) -> Vec<u8> {
    make_message(seed, len)
}

/// A seeded shuffle (Fisher–Yates with ChaCha8).
pub fn shuffle<T>(items: &mut [T], seed: u64) {
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// Runs `zbarimg --raw -q` over image files and returns one line per symbol read.
///
/// # Panics
///
/// If `zbarimg` is not installed: the tests require it (Debian package `zbar-tools`).
pub fn zbarimg(files: &[PathBuf]) -> Vec<String> {
    let output = Command::new("zbarimg")
        .arg("--raw")
        .arg("-q")
        .args(files)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run zbarimg ({e}); install zbar-tools: `apt-get install -y zbar-tools` \
                 (the QR tests decode every rendered frame with it)"
            )
        });
    assert!(
        output.status.success(),
        "zbarimg failed on {files:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("zbarimg output is UTF-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A FROST 2-of-3 signing request as a PSBT: one Taproot key-path input, a payment and a
/// change output, every field a watch-only wallet needs, and the custody proprietary fields
/// (prefix `custody`): the 16-byte session id, each of the two chosen signers' nonce
/// commitment (participant index → counter, hiding and binding points) and the
/// coordinator's signed decision (policy hash, withdrawal id, expiry, BIP340 signature).
pub fn signing_request_psbt() -> Vec<u8> {
    let secp = Secp256k1::new();
    let key = |n: u8| {
        let sk = SecretKey::from_slice(&[n; 32]).expect("valid scalar");
        XOnlyPublicKey::from(sk.public_key(&secp))
    };
    let group_key = key(7);
    let change_key = key(8);
    let destination = ScriptBuf::new_p2tr(&secp, key(9), None);
    let ours = |k: XOnlyPublicKey| ScriptBuf::new_p2tr(&secp, k, None);

    let tx = Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: Txid::from_byte_array([0x11; 32]),
                vout: 1,
            },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        }],
        output: vec![
            TxOut {
                value: Amount::from_sat(50_000_000),
                script_pubkey: destination,
            },
            TxOut {
                value: Amount::from_sat(49_990_000),
                script_pubkey: ours(change_key),
            },
        ],
    };
    let mut psbt = Psbt::from_unsigned_tx(tx).expect("unsigned transaction");
    let origin = |index: &str| {
        (
            Fingerprint::from([0xc0, 0x1d, 0xca, 0xfe]),
            DerivationPath::from_str(index).expect("valid path"),
        )
    };
    let input = &mut psbt.inputs[0];
    input.witness_utxo = Some(TxOut {
        value: Amount::from_sat(100_000_000),
        script_pubkey: ours(group_key),
    });
    input.tap_internal_key = Some(group_key);
    input
        .tap_key_origins
        .insert(group_key, (vec![], origin("m/0/7")));
    let proprietary = |subtype: u8, key: Vec<u8>| ProprietaryKey {
        prefix: b"custody".to_vec(),
        subtype,
        key,
    };
    input
        .proprietary
        .insert(proprietary(0x01, vec![]), vec![0xa5; 16]);
    for signer in 1u16..=2 {
        // participant index (2) → commitment counter (8) ‖ hiding (33) ‖ binding (33)
        let [hi, lo] = signer.to_be_bytes();
        input
            .proprietary
            .insert(proprietary(0x02, vec![hi, lo]), vec![lo; 8 + 33 + 33]);
    }
    // policy hash (32) ‖ withdrawal id (16) ‖ expiry (8) ‖ coordinator's BIP340 signature (64)
    input
        .proprietary
        .insert(proprietary(0x03, vec![]), vec![0x5c; 32 + 16 + 8 + 64]);
    let change = &mut psbt.outputs[1];
    change.tap_internal_key = Some(change_key);
    change
        .tap_key_origins
        .insert(change_key, (vec![], origin("m/1/3")));
    psbt.serialize()
}
