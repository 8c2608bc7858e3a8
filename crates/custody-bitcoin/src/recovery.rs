//! Spending through the recovery leaf `and_v(v:multi_a(k,R1..Rm),older(N))` when the
//! threshold key path is lost: k independent backup keys sign a script-path spend once the
//! coins are N blocks old.
//!
//! The coordinator builds the PSBT with [`crate::SpendPath::Recovery`] (every input's
//! `nSequence` set to N). Each backup holder runs [`sign_recovery_psbt`] with its BIP32
//! master key or single secret key ([`BackupSecret`]): the PSBT is inspected like any other, the leaf and the holder's child keys
//! are re-derived from the wallet descriptor (never taken from the PSBT), and the BIP342
//! script-path sighash is computed here. The coordinator merges the answers with
//! [`absorb_recovery_signatures`], then finalizes ([`crate::finalize_psbt`]) and verifies
//! ([`crate::extract_verified`]).

use bitcoin::bip32::{Fingerprint, Xpriv};
use bitcoin::key::XOnlyPublicKey;
use bitcoin::psbt::Psbt;
use bitcoin::relative;
use bitcoin::secp256k1::{Keypair, Message, Secp256k1, SecretKey};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::taproot::{self, LeafVersion};
use bitcoin::transaction::Version;
use bitcoin::PublicKey;
use miniscript::Descriptor;
use rand_core::{CryptoRng, RngCore};
use thiserror::Error;

use crate::build::SpendPath;
use crate::descriptor::WalletDescriptor;
use crate::fields::FieldError;
use crate::inspect::{check, InspectError, InspectPolicy, Inspection};

/// Why a backup key holder refused to sign.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecoveryError {
    /// The wallet has no recovery leaf.
    #[error("the wallet has no recovery leaf")]
    NoRecoveryLeaf,
    /// The PSBT fails inspection.
    #[error(transparent)]
    Inspect(#[from] InspectError),
    /// The transaction version does not enable relative timelocks (BIP68 needs 2).
    #[error("transaction version {0} does not enable relative timelocks; version 2 is needed")]
    Version(i32),
    /// An input's `nSequence` does not satisfy the leaf's `older(N)`.
    #[error("input {input} has nSequence {sequence:#x}, which does not satisfy older({needed}); the recovery leaf cannot be used by it")]
    TimelockNotMet {
        /// The input.
        input: usize,
        /// Its `nSequence`.
        sequence: u32,
        /// The leaf's timelock in blocks.
        needed: u16,
    },
    /// The secret is none of the wallet's backup keys.
    #[error("this key (fingerprint {0}) is not one of the wallet's backup keys")]
    NotABackupKey(Fingerprint),
    /// A backup key with our fingerprint is not the key our master key derives.
    #[error("input {input}: the backup key with this key's fingerprint is not the one it derives at that path")]
    KeyMismatch {
        /// The input.
        input: usize,
    },
    /// Deriving a key or sighash failed.
    #[error("input {input}: {reason}")]
    Derivation {
        /// The input.
        input: usize,
        /// What failed.
        reason: String,
    },
}

/// What a backup holder signed.
#[derive(Clone, Debug, PartialEq)]
pub struct RecoverySigned {
    /// The inspection of the PSBT (show it before signing, too).
    pub inspection: Inspection,
    /// Signatures added (one per input per backup key of this holder).
    pub signatures: usize,
}

/// A backup holder's secret.
#[derive(Clone, Copy)]
pub enum BackupSecret<'a> {
    /// A BIP32 master key: it holds every backup key whose origin fingerprint is its own,
    /// derived along the key's full origin path.
    Master(&'a Xpriv),
    /// A single secret key: it holds the backup key equal to its public key.
    Single(&'a SecretKey),
}

impl std::fmt::Debug for BackupSecret<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackupSecret(<redacted>)")
    }
}

/// Adds this backup holder's script-path signatures to every input of `psbt`.
///
/// `secret` selects which of the wallet's backup keys the holder has (see
/// [`BackupSecret`]); the keys themselves always come from the wallet descriptor, never
/// from the PSBT. `rng` supplies BIP340 auxiliary randomness.
///
/// # Errors
/// A [`RecoveryError`]; on error `psbt` is unchanged.
///
/// # Security
/// The child secret keys live only inside this call and are wiped (best effort: secp256k1
/// keys are `Copy`) before it returns.
pub fn sign_recovery_psbt<R: RngCore + CryptoRng>(
    wallet: &WalletDescriptor,
    secret: BackupSecret<'_>,
    psbt: &mut Psbt,
    policy: &InspectPolicy,
    rng: &mut R,
) -> Result<RecoverySigned, RecoveryError> {
    let recovery = wallet.recovery().ok_or(RecoveryError::NoRecoveryLeaf)?;
    let checked = check(wallet, psbt, policy, SpendPath::Recovery)?;
    let tx = &psbt.unsigned_tx;
    if tx.version < Version::TWO {
        return Err(RecoveryError::Version(tx.version.0));
    }
    let needed = relative::LockTime::from_height(recovery.after_blocks());
    for (input, txin) in tx.input.iter().enumerate() {
        let ok = txin
            .sequence
            .to_relative_lock_time()
            .is_some_and(|have| needed.is_implied_by(have));
        if !ok {
            return Err(RecoveryError::TimelockNotMet {
                input,
                sequence: txin.sequence.to_consensus_u32(),
                needed: recovery.after_blocks(),
            });
        }
    }

    let secp = Secp256k1::new();
    let fingerprint = match secret {
        BackupSecret::Master(m) => m.fingerprint(&secp),
        BackupSecret::Single(k) => {
            // The fingerprint BIP32 would give this key, for the error message only.
            let h = bitcoin::hashes::Hash::to_byte_array(
                PublicKey::new(k.public_key(&secp)).pubkey_hash(),
            );
            Fingerprint::from([h[0], h[1], h[2], h[3]])
        }
    };
    let mut cache = SighashCache::new(tx);
    let mut signatures = Vec::new();
    for (input, owned) in checked.inputs.iter().enumerate() {
        let fail = |reason: String| RecoveryError::Derivation { input, reason };
        let derived = &owned.derived;
        let Descriptor::Tr(tr) = derived.descriptor() else {
            return Err(fail("not a tr() descriptor".into()));
        };
        let (script, leaf_hash) = derived
            .recovery_leaf
            .clone()
            .ok_or_else(|| fail("no recovery leaf".into()))?;
        let control_block = tr
            .spend_info()
            .control_block(&(script.clone(), LeafVersion::TapScript))
            .ok_or_else(|| fail("the leaf is not in the script tree".into()))?;
        let keys: Vec<_> = tr
            .iter_scripts()
            .flat_map(|(_, ms)| ms.iter_pk().collect::<Vec<_>>())
            .collect();
        for key in keys {
            let expected: XOnlyPublicKey = key
                .derive_public_key(&secp)
                .map_err(|e| fail(e.to_string()))?
                .inner
                .x_only_public_key()
                .0;
            let mut keypair = match secret {
                BackupSecret::Master(master) => {
                    if key.master_fingerprint() != fingerprint {
                        continue;
                    }
                    let path = key
                        .full_derivation_path()
                        .ok_or_else(|| fail("a backup key has several paths".into()))?;
                    let mut child = master
                        .derive_priv(&secp, &path)
                        .map_err(|e| fail(e.to_string()))?;
                    let keypair = child.to_keypair(&secp);
                    child.private_key.non_secure_erase();
                    if keypair.x_only_public_key().0 != expected {
                        let mut keypair = keypair;
                        keypair.non_secure_erase();
                        return Err(RecoveryError::KeyMismatch { input });
                    }
                    keypair
                }
                BackupSecret::Single(secret_key) => {
                    let keypair = Keypair::from_secret_key(&secp, secret_key);
                    if keypair.x_only_public_key().0 != expected {
                        continue;
                    }
                    keypair
                }
            };
            let sighash = cache
                .taproot_script_spend_signature_hash(
                    input,
                    &Prevouts::All(&checked.spent),
                    leaf_hash,
                    TapSighashType::Default,
                )
                .map_err(|e| fail(e.to_string()))?;
            let mut aux = [0u8; 32];
            rng.fill_bytes(&mut aux);
            let signature = secp.sign_schnorr_with_aux_rand(
                &Message::from_digest(bitcoin::hashes::Hash::to_byte_array(sighash)),
                &keypair,
                &aux,
            );
            keypair.non_secure_erase();
            signatures.push((
                input,
                expected,
                leaf_hash,
                control_block.clone(),
                script.clone(),
                signature,
            ));
        }
    }
    if signatures.is_empty() {
        return Err(RecoveryError::NotABackupKey(fingerprint));
    }
    let count = signatures.len();
    for (input, key, leaf_hash, control_block, script, signature) in signatures {
        let psbt_input = &mut psbt.inputs[input];
        psbt_input.tap_script_sigs.insert(
            (key, leaf_hash),
            taproot::Signature {
                signature,
                sighash_type: TapSighashType::Default,
            },
        );
        psbt_input
            .tap_scripts
            .entry(control_block)
            .or_insert((script, LeafVersion::TapScript));
    }
    Ok(RecoverySigned {
        inspection: checked.inspection,
        signatures: count,
    })
}

/// Copies the script-path signatures of a backup holder's `response` into the
/// coordinator's `psbt`, and nothing else.
///
/// # Errors
/// [`FieldError::DifferentTransaction`] when `response` is for another transaction.
pub fn absorb_recovery_signatures(psbt: &mut Psbt, response: &Psbt) -> Result<usize, FieldError> {
    let expected = psbt.unsigned_tx.compute_txid();
    let found = response.unsigned_tx.compute_txid();
    if expected != found || psbt.inputs.len() != response.inputs.len() {
        return Err(FieldError::DifferentTransaction { expected, found });
    }
    let mut count = 0;
    for (ours, theirs) in psbt.inputs.iter_mut().zip(&response.inputs) {
        for (k, sig) in &theirs.tap_script_sigs {
            if ours.tap_script_sigs.insert(*k, *sig).is_none() {
                count += 1;
            }
        }
    }
    Ok(count)
}
