//! The wallet descriptor `tr([fp]xpub/<0;1>/*)`, with an optional recovery leaf, and the
//! receive and change addresses it derives.
//!
//! The group key of a threshold wallet is an ordinary BIP32 extended public key (see
//! `custody_threshold::GroupKey::xpub`), so the wallet is an ordinary BIP86-shaped Taproot
//! descriptor that watch-only software (Bitcoin Core, Sparrow) derives exactly the same
//! addresses from. Descriptor parsing, derivation, checksums and Taproot spend data all come
//! from the `miniscript` crate; this module only fixes the shape.
//!
//! Specifications: BIP32, BIP86, BIP341, BIP380/386 (output script descriptors, `tr()`),
//! BIP389 (multipath `<0;1>` descriptors).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};

use bitcoin::bip32::{ChildNumber, DerivationPath, KeySource, Xpub};
use bitcoin::hashes::Hash as _;
use bitcoin::key::XOnlyPublicKey;
use bitcoin::taproot::{LeafVersion, TapLeafHash, TapNodeHash};
use bitcoin::{Address, Network, NetworkKind, ScriptBuf};
use custody_threshold::{GroupKey, TweakMode};
use miniscript::descriptor::{DefiniteDescriptorKey, DescriptorPublicKey, Wildcard};
use miniscript::{Descriptor, ForEachKey};
use serde::Serialize;
use thiserror::Error;

/// Most backup keys a recovery leaf may hold (`multi_a` allows 999; this keeps scripts small).
pub const MAX_BACKUP_KEYS: usize = 20;

/// Which of the two BIP32 branches below the wallet key an address is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Branch {
    /// `/0/*`: addresses handed out for deposits.
    Receive,
    /// `/1/*`: change returned to the wallet by its own transactions.
    Change,
}

impl Branch {
    /// The BIP32 child number of the branch (0 or 1).
    pub fn number(self) -> u32 {
        match self {
            Branch::Receive => 0,
            Branch::Change => 1,
        }
    }

    /// The branch with child number `n`, if it is 0 or 1.
    pub fn from_number(n: u32) -> Option<Branch> {
        match n {
            0 => Some(Branch::Receive),
            1 => Some(Branch::Change),
            _ => None,
        }
    }
}

impl fmt::Display for Branch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Branch::Receive => "receive",
            Branch::Change => "change",
        })
    }
}

/// Why a descriptor could not be built or an address derived.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DescriptorError {
    /// The recovery threshold is 0 or above the number of backup keys, or there are too
    /// many backup keys.
    #[error("a recovery leaf needs 1 to {MAX_BACKUP_KEYS} backup keys and a threshold between 1 and their number; got {threshold} of {keys}")]
    BadRecoveryThreshold {
        /// The threshold asked for.
        threshold: usize,
        /// The number of backup keys.
        keys: usize,
    },
    /// The relative timelock is zero.
    #[error("the recovery timelock must be 1 to 65535 blocks; 0 would make the recovery path usable at once")]
    ZeroTimelock,
    /// A backup key cannot be used in a watch-only descriptor.
    #[error("backup key {key} cannot be used: {reason}")]
    BadBackupKey {
        /// The key as written in descriptor syntax.
        key: String,
        /// Why not.
        reason: &'static str,
    },
    /// A key appears twice in the descriptor.
    #[error("key {0} appears more than once in the wallet descriptor")]
    DuplicateKey(String),
    /// The extended public key is for another network kind than the wallet.
    #[error("the extended public key is for {found:?} but the wallet is for {expected}")]
    NetworkMismatch {
        /// The wallet's network.
        expected: Network,
        /// The key's network kind.
        found: NetworkKind,
    },
    /// The address index is hardened (2^31 or above).
    #[error("address index {index} is out of range; indexes are below 2^31 (non-hardened)")]
    IndexOutOfRange {
        /// The index asked for.
        index: u32,
    },
    /// `miniscript` rejected the descriptor or a derivation.
    #[error("miniscript rejected the descriptor: {reason}")]
    Miniscript {
        /// `miniscript`'s message.
        reason: String,
    },
}

fn ms_err(e: impl fmt::Display) -> DescriptorError {
    DescriptorError::Miniscript {
        reason: e.to_string(),
    }
}

/// The optional Taproot script leaf that lets independent backup keys spend after a
/// relative timelock: `and_v(v:multi_a(k,R1,…,Rm),older(N))`.
///
/// Backup keys are written in descriptor key syntax: a single key (the same key for every
/// address) or, better for privacy, an extended key with key origin and a `<0;1>/*` suffix
/// so every address gets its own backup child keys, e.g.
/// `[d34db33f/48'/1'/0'/2']tpubD…/<0;1>/*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryPolicy {
    threshold: usize,
    keys: Vec<DescriptorPublicKey>,
    after_blocks: u16,
}

impl RecoveryPolicy {
    /// A recovery leaf needing `threshold` of `keys` after `after_blocks` blocks (BIP68
    /// relative timelock, counted from the confirmation of the coin being spent).
    ///
    /// # Errors
    /// [`DescriptorError::BadRecoveryThreshold`], [`DescriptorError::ZeroTimelock`],
    /// [`DescriptorError::BadBackupKey`] for a key with a hardened step or hardened
    /// wildcard (not derivable from public data) or a multipath key other than `<0;1>`,
    /// [`DescriptorError::DuplicateKey`].
    pub fn new(
        threshold: usize,
        keys: Vec<DescriptorPublicKey>,
        after_blocks: u16,
    ) -> Result<Self, DescriptorError> {
        if keys.is_empty()
            || keys.len() > MAX_BACKUP_KEYS
            || threshold == 0
            || threshold > keys.len()
        {
            return Err(DescriptorError::BadRecoveryThreshold {
                threshold,
                keys: keys.len(),
            });
        }
        if after_blocks == 0 {
            return Err(DescriptorError::ZeroTimelock);
        }
        let mut seen = BTreeSet::new();
        for key in &keys {
            let bad = |reason| DescriptorError::BadBackupKey {
                key: key.to_string(),
                reason,
            };
            if key.has_hardened_step() {
                return Err(bad(
                    "it has a hardened derivation step after the extended key",
                ));
            }
            match key {
                DescriptorPublicKey::Single(_) => {}
                DescriptorPublicKey::XPub(x) => {
                    if x.wildcard == Wildcard::Hardened {
                        return Err(bad("a hardened wildcard cannot be derived from an xpub"));
                    }
                }
                DescriptorPublicKey::MultiXPub(x) => {
                    if x.wildcard == Wildcard::Hardened {
                        return Err(bad("a hardened wildcard cannot be derived from an xpub"));
                    }
                    let paths = x.derivation_paths.paths();
                    let tails: Vec<_> = paths.iter().map(|p| p.as_ref().last().copied()).collect();
                    let receive_change = paths.len() == 2
                        && tails[0] == Some(ChildNumber::Normal { index: 0 })
                        && tails[1] == Some(ChildNumber::Normal { index: 1 });
                    if !receive_change {
                        return Err(bad("a multipath key must end in <0;1> to match the wallet's receive and change branches"));
                    }
                }
            }
            if !seen.insert(key.to_string()) {
                return Err(DescriptorError::DuplicateKey(key.to_string()));
            }
        }
        Ok(RecoveryPolicy {
            threshold,
            keys,
            after_blocks,
        })
    }

    /// Backup signatures needed.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// The backup keys, in leaf order.
    pub fn keys(&self) -> &[DescriptorPublicKey] {
        &self.keys
    }

    /// The relative timelock in blocks.
    pub fn after_blocks(&self) -> u16 {
        self.after_blocks
    }

    /// The leaf in miniscript syntax (keys in descriptor syntax).
    pub fn miniscript(&self) -> String {
        let keys: Vec<String> = self.keys.iter().map(ToString::to_string).collect();
        format!(
            "and_v(v:multi_a({},{}),older({}))",
            self.threshold,
            keys.join(","),
            self.after_blocks
        )
    }
}

/// A Taproot wallet descriptor `tr([fp/origin]xpub/<0;1>/*[,recovery leaf])` and its two
/// single-path halves, for one network.
#[derive(Clone, Debug)]
pub struct WalletDescriptor {
    network: Network,
    xpub: Xpub,
    origin: KeySource,
    recovery: Option<RecoveryPolicy>,
    multipath: Descriptor<DescriptorPublicKey>,
    receive: Descriptor<DescriptorPublicKey>,
    change: Descriptor<DescriptorPublicKey>,
    /// Addresses already derived (shared by clones; public data only).
    derived: DerivedCache,
}

/// How many derived addresses a [`WalletDescriptor`] keeps; past that the cache starts
/// over. Each is a few hundred bytes.
const DERIVED_CACHE_LIMIT: usize = 16_384;

/// Derived addresses by branch and index. A derivation is several BIP32 steps and Taproot
/// tweaks, and a coordinator derives the same coins' keys again for every transaction it
/// builds.
#[derive(Clone, Debug, Default)]
struct DerivedCache(Arc<Mutex<HashMap<(Branch, u32), DerivedAddress>>>);

impl DerivedCache {
    fn get(&self, key: (Branch, u32)) -> Option<DerivedAddress> {
        self.0.lock().ok()?.get(&key).cloned()
    }

    fn put(&self, key: (Branch, u32), value: &DerivedAddress) {
        // A poisoned lock only means another thread panicked while inserting: skip the cache.
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= DERIVED_CACHE_LIMIT {
                map.clear();
            }
            map.insert(key, value.clone());
        }
    }
}

impl PartialEq for WalletDescriptor {
    fn eq(&self, other: &Self) -> bool {
        self.network == other.network && self.multipath == other.multipath
    }
}

impl Eq for WalletDescriptor {}

impl WalletDescriptor {
    /// The wallet of a threshold group key: `tr([fp]xpub/<0;1>/*)`, where `xpub` is
    /// [`GroupKey::xpub`] (depth 0) and `fp` its fingerprint, on the group's network.
    ///
    /// # Errors
    /// A [`DescriptorError`] if the recovery leaf is rejected by `miniscript`.
    pub fn for_group(
        group: &GroupKey,
        recovery: Option<RecoveryPolicy>,
    ) -> Result<Self, DescriptorError> {
        Self::from_xpub(group.network(), group.xpub(), None, recovery)
    }

    /// A wallet on any extended public key. `origin` is the key's BIP32 origin (master
    /// fingerprint and path from the master); `None` means `xpub` is itself the master key.
    ///
    /// Used for BIP86 cross-checks and for single-key comparison wallets; threshold
    /// wallets use [`WalletDescriptor::for_group`].
    ///
    /// # Errors
    /// [`DescriptorError::NetworkMismatch`] when `xpub` is for the other network kind, or a
    /// [`DescriptorError`] from `miniscript`.
    pub fn from_xpub(
        network: Network,
        xpub: Xpub,
        origin: Option<KeySource>,
        recovery: Option<RecoveryPolicy>,
    ) -> Result<Self, DescriptorError> {
        if xpub.network != NetworkKind::from(network) {
            return Err(DescriptorError::NetworkMismatch {
                expected: network,
                found: xpub.network,
            });
        }
        let origin = origin.unwrap_or_else(|| (xpub.fingerprint(), DerivationPath::master()));
        let origin_text = if origin.1.is_master() {
            format!("{}", origin.0)
        } else {
            format!(
                "{}/{}",
                origin.0,
                origin.1.to_string().trim_start_matches("m/")
            )
        };
        let key = format!("[{origin_text}]{xpub}/<0;1>/*");
        let text = match &recovery {
            None => format!("tr({key})"),
            Some(r) => format!("tr({key},{})", r.miniscript()),
        };
        let multipath = Descriptor::<DescriptorPublicKey>::from_str(&text).map_err(ms_err)?;
        multipath.sanity_check().map_err(ms_err)?;
        let mut keys = BTreeSet::new();
        let mut duplicate = None;
        multipath.for_each_key(|k| {
            if !keys.insert(key_identity(k)) {
                duplicate = Some(k.to_string());
            }
            true
        });
        if let Some(k) = duplicate {
            return Err(DescriptorError::DuplicateKey(k));
        }
        let mut halves = multipath
            .clone()
            .into_single_descriptors()
            .map_err(ms_err)?;
        if halves.len() != 2 {
            return Err(ms_err("expected exactly a receive and a change descriptor"));
        }
        let change = halves.pop().expect("length checked above");
        let receive = halves.pop().expect("length checked above");
        Ok(WalletDescriptor {
            network,
            xpub,
            origin,
            recovery,
            multipath,
            receive,
            change,
            derived: DerivedCache::default(),
        })
    }

    /// The network addresses are encoded for.
    pub fn network(&self) -> Network {
        self.network
    }

    /// The wallet's extended public key (for a threshold wallet, the group xpub).
    pub fn xpub(&self) -> &Xpub {
        &self.xpub
    }

    /// The key origin: master fingerprint and path of [`WalletDescriptor::xpub`]. For a
    /// threshold wallet, the group key's fingerprint and the empty path.
    pub fn origin(&self) -> &KeySource {
        &self.origin
    }

    /// The recovery leaf, if any.
    pub fn recovery(&self) -> Option<&RecoveryPolicy> {
        self.recovery.as_ref()
    }

    /// The multipath descriptor with checksum, `tr([fp]xpub/<0;1>/*)#checksum`, the form
    /// Sparrow and other BIP389-aware wallets import.
    pub fn to_multipath_string(&self) -> String {
        self.multipath.to_string()
    }

    /// The single-path descriptor for `branch` with checksum (`…/0/*` or `…/1/*`), the form
    /// every descriptor wallet imports.
    pub fn to_branch_string(&self, branch: Branch) -> String {
        self.branch_descriptor(branch).to_string()
    }

    /// The ranged `miniscript` descriptor for `branch`.
    pub fn branch_descriptor(&self, branch: Branch) -> &Descriptor<DescriptorPublicKey> {
        match branch {
            Branch::Receive => &self.receive,
            Branch::Change => &self.change,
        }
    }

    /// The Bitcoin Core `importdescriptors` request (two active descriptors, receive and
    /// change) for a watch-only wallet (`createwallet` with `disable_private_keys`).
    pub fn core_import(&self, options: &CoreImportOptions) -> Vec<CoreImportRequest> {
        [Branch::Receive, Branch::Change]
            .into_iter()
            .map(|branch| CoreImportRequest {
                desc: self.to_branch_string(branch),
                active: true,
                internal: branch == Branch::Change,
                range: [0, options.range_end],
                timestamp: options.timestamp,
                next_index: options.next_index.map(|(r, c)| match branch {
                    Branch::Receive => r,
                    Branch::Change => c,
                }),
            })
            .collect()
    }

    /// [`WalletDescriptor::core_import`] as the JSON array `importdescriptors` takes.
    pub fn core_import_json(&self, options: &CoreImportOptions) -> String {
        serde_json::to_string_pretty(&self.core_import(options))
            .expect("strings, numbers and booleans always serialize")
    }

    /// Derives the address at `index` on `branch`.
    ///
    /// # Errors
    /// [`DescriptorError::IndexOutOfRange`] for a hardened index.
    pub fn derive(&self, branch: Branch, index: u32) -> Result<DerivedAddress, DescriptorError> {
        if index >= 0x8000_0000 {
            return Err(DescriptorError::IndexOutOfRange { index });
        }
        if let Some(done) = self.derived.get((branch, index)) {
            return Ok(done);
        }
        let derived = self.derive_uncached(branch, index)?;
        self.derived.put((branch, index), &derived);
        Ok(derived)
    }

    fn derive_uncached(
        &self,
        branch: Branch,
        index: u32,
    ) -> Result<DerivedAddress, DescriptorError> {
        let descriptor = self
            .branch_descriptor(branch)
            .at_derivation_index(index)
            .map_err(ms_err)?;
        let Descriptor::Tr(tr) = &descriptor else {
            return Err(ms_err("the wallet descriptor is not tr()"));
        };
        let info = tr.spend_info();
        let recovery_leaf = tr.iter_scripts().next().map(|(_, ms)| {
            let script = ms.encode();
            let leaf_hash = TapLeafHash::from_script(&script, LeafVersion::TapScript);
            (script, leaf_hash)
        });
        let address = descriptor.address(self.network).map_err(ms_err)?;
        // Two independent computations of the address must agree: miniscript's descriptor
        // and the BIP341 tweak of the internal key by the script root.
        if taproot_address(info.internal_key(), info.merkle_root(), self.network) != address {
            return Err(ms_err(
                "the descriptor's address is not the BIP341 output of its keys",
            ));
        }
        Ok(DerivedAddress {
            branch,
            index,
            address,
            internal_key: info.internal_key(),
            output_key: info.output_key().to_x_only_public_key(),
            merkle_root: info.merkle_root(),
            recovery_leaf,
            descriptor,
            input: Arc::default(),
            output: Arc::default(),
        })
    }

    /// The address at `index` on `branch`.
    ///
    /// # Errors
    /// As [`WalletDescriptor::derive`].
    pub fn address(&self, branch: Branch, index: u32) -> Result<Address, DescriptorError> {
        Ok(self.derive(branch, index)?.address)
    }

    /// The BIP32 path of an address relative to [`WalletDescriptor::xpub`]: `[branch, index]`.
    pub fn relative_path(branch: Branch, index: u32) -> [u32; 2] {
        [branch.number(), index]
    }

    /// The full key-origin path of an address (origin path, branch, index), as it appears in
    /// PSBT `tap_key_origins`.
    pub fn full_path(&self, branch: Branch, index: u32) -> DerivationPath {
        self.origin.1.extend([
            ChildNumber::Normal {
                index: branch.number(),
            },
            ChildNumber::Normal { index },
        ])
    }

    /// Recognises a key-origin entry as one of this wallet's address keys: returns the
    /// branch and index if `source` has our master fingerprint and our origin path followed
    /// by a branch (0 or 1) and a non-hardened index.
    ///
    /// This only reads the claim; ownership is proved by re-deriving the script
    /// ([`WalletDescriptor::derive`]) and comparing.
    pub fn parse_origin(&self, source: &KeySource) -> Option<(Branch, u32)> {
        if source.0 != self.origin.0 {
            return None;
        }
        let path = source.1.as_ref();
        let prefix = self.origin.1.as_ref();
        if path.len() != prefix.len() + 2 || &path[..prefix.len()] != prefix {
            return None;
        }
        match (path[prefix.len()], path[prefix.len() + 1]) {
            (ChildNumber::Normal { index: b }, ChildNumber::Normal { index }) => {
                Branch::from_number(b).map(|branch| (branch, index))
            }
            _ => None,
        }
    }
}

/// The BIP341 output address of `internal_key` with an optional script tree `merkle_root`
/// (`None` is the BIP86 key-path-only output): `Q = P + H_TapTweak(P ‖ root)·G`, encoded as
/// a bech32m segwit v1 address for `network`.
pub fn taproot_address(
    internal_key: XOnlyPublicKey,
    merkle_root: Option<TapNodeHash>,
    network: Network,
) -> Address {
    let secp = bitcoin::secp256k1::Secp256k1::verification_only();
    Address::p2tr(&secp, internal_key, merkle_root, network)
}

/// The x-only public key behind a descriptor key (the extended key itself for xpubs), so
/// two spellings of one key are recognised as the same key.
fn key_identity(key: &DescriptorPublicKey) -> [u8; 32] {
    match key {
        DescriptorPublicKey::Single(s) => match s.key {
            miniscript::descriptor::SinglePubKey::FullKey(k) => k.inner.x_only_public_key().0,
            miniscript::descriptor::SinglePubKey::XOnly(k) => k,
        },
        DescriptorPublicKey::XPub(x) => x.xkey.public_key.x_only_public_key().0,
        DescriptorPublicKey::MultiXPub(x) => x.xkey.public_key.x_only_public_key().0,
    }
    .serialize()
}

impl fmt::Display for WalletDescriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_multipath_string())
    }
}

/// One derived wallet address and the Taproot data needed to spend from it.
#[derive(Clone, Debug)]
pub struct DerivedAddress {
    /// Receive or change.
    pub branch: Branch,
    /// The address index on the branch.
    pub index: u32,
    /// The address on the wallet's network.
    pub address: Address,
    /// The BIP341 internal key (the derived group key, x-only).
    pub internal_key: XOnlyPublicKey,
    /// The BIP341 output key in the scriptPubKey.
    pub output_key: XOnlyPublicKey,
    /// The script tree's Merkle root, when there is a recovery leaf.
    pub merkle_root: Option<TapNodeHash>,
    /// The recovery leaf's script and leaf hash, when there is one.
    pub recovery_leaf: Option<(ScriptBuf, TapLeafHash)>,
    descriptor: Descriptor<DefiniteDescriptorKey>,
    /// The PSBT input fields a spend from this address carries, once computed (shared by
    /// the clones a [`WalletDescriptor`]'s cache hands out).
    input: Arc<OnceLock<bitcoin::psbt::Input>>,
    /// The PSBT output fields a payment to this address carries, once computed.
    output: Arc<OnceLock<bitcoin::psbt::Output>>,
}

impl DerivedAddress {
    /// The fields of a PSBT input spending from this address (Taproot internal key,
    /// Merkle root, key origins, the recovery leaf's control block), as miniscript's
    /// `update_input_with_descriptor` fills them; computed once and kept. The UTXO fields
    /// are left empty for the caller.
    ///
    /// # Errors
    /// [`DescriptorError::Miniscript`] if miniscript refuses the update.
    pub fn psbt_input(&self) -> Result<bitcoin::psbt::Input, DescriptorError> {
        if let Some(done) = self.input.get() {
            return Ok(done.clone());
        }
        use miniscript::psbt::PsbtExt as _;
        // A one-input transaction spending a coin of this address, for miniscript to update.
        let tx = bitcoin::Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![bitcoin::TxIn::default()],
            output: Vec::new(),
        };
        let mut psbt = bitcoin::psbt::Psbt::from_unsigned_tx(tx).map_err(ms_err)?;
        psbt.inputs[0].witness_utxo = Some(bitcoin::TxOut {
            value: bitcoin::Amount::ZERO,
            script_pubkey: self.script_pubkey(),
        });
        psbt.update_input_with_descriptor(0, &self.descriptor)
            .map_err(ms_err)?;
        let mut input = psbt.inputs.swap_remove(0);
        input.witness_utxo = None;
        Ok(self.input.get_or_init(|| input).clone())
    }

    /// The fields of a PSBT output paying to this address (Taproot internal key, key
    /// origins, script tree), as miniscript's `update_output_with_descriptor` fills them;
    /// computed once and kept. A change output carries them so that a signer can prove it
    /// is change.
    ///
    /// # Errors
    /// [`DescriptorError::Miniscript`] if miniscript refuses the update.
    pub fn psbt_output(&self) -> Result<bitcoin::psbt::Output, DescriptorError> {
        if let Some(done) = self.output.get() {
            return Ok(done.clone());
        }
        use miniscript::psbt::PsbtExt as _;
        // A one-output transaction paying this address, for miniscript to update.
        let tx = bitcoin::Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: Vec::new(),
            output: vec![bitcoin::TxOut {
                value: bitcoin::Amount::ZERO,
                script_pubkey: self.script_pubkey(),
            }],
        };
        let mut psbt = bitcoin::psbt::Psbt::from_unsigned_tx(tx).map_err(ms_err)?;
        psbt.update_output_with_descriptor(0, &self.descriptor)
            .map_err(ms_err)?;
        let output = psbt.outputs.swap_remove(0);
        Ok(self.output.get_or_init(|| output).clone())
    }

    /// The output script.
    pub fn script_pubkey(&self) -> ScriptBuf {
        self.address.script_pubkey()
    }

    /// The BIP32 path of the internal key below the wallet xpub: `[branch, index]`.
    pub fn relative_path(&self) -> [u32; 2] {
        WalletDescriptor::relative_path(self.branch, self.index)
    }

    /// How the threshold layer tweaks the derived group key for a key-path signature:
    /// BIP86 key path, or the key path of an output with this script root.
    pub fn tweak_mode(&self) -> TweakMode {
        match self.merkle_root {
            None => TweakMode::KeyPath,
            Some(root) => TweakMode::ScriptRoot(root.to_byte_array()),
        }
    }

    /// The definite (non-ranged) descriptor of this address, for PSBT updates.
    pub fn descriptor(&self) -> &Descriptor<DefiniteDescriptorKey> {
        &self.descriptor
    }
}

/// When Bitcoin Core should start scanning the chain for the wallet's coins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportTimestamp {
    /// `"now"`: a new wallet with no history.
    Now,
    /// A UNIX time no later than the wallet's first deposit.
    Unix(u64),
}

impl Serialize for ImportTimestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ImportTimestamp::Now => s.serialize_str("now"),
            ImportTimestamp::Unix(t) => s.serialize_u64(*t),
        }
    }
}

/// Options for [`WalletDescriptor::core_import`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreImportOptions {
    /// Where Core starts scanning.
    pub timestamp: ImportTimestamp,
    /// The last index Core derives up front (its keypool range end).
    pub range_end: u32,
    /// The next unused (receive, change) indexes, if known.
    pub next_index: Option<(u32, u32)>,
}

impl Default for CoreImportOptions {
    fn default() -> Self {
        CoreImportOptions {
            timestamp: ImportTimestamp::Now,
            range_end: 999,
            next_index: None,
        }
    }
}

/// One element of a Bitcoin Core `importdescriptors` request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CoreImportRequest {
    /// The single-path descriptor with checksum.
    pub desc: String,
    /// Whether Core hands out addresses from it.
    pub active: bool,
    /// `true` for the change descriptor.
    pub internal: bool,
    /// The index range Core derives.
    pub range: [u32; 2],
    /// Where Core starts scanning.
    pub timestamp: ImportTimestamp,
    /// The next index Core hands out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_index: Option<u32>,
}
