//! Group keys (public) and key shares (secret), with BIP32 derivation on both sides.

use std::collections::BTreeMap;
use std::fmt;

use bitcoin::bip32::{ChainCode, ChildNumber, ChildNumber as Cn, Fingerprint, Xpub};
use bitcoin::{Network, NetworkKind};
use frost::keys::{KeyPackage, PublicKeyPackage, SigningShare, VerifyingShare};
use frost::{Identifier, VerifyingKey};
use frost_secp256k1_tr as frost;
use k256::elliptic_curve::ops::MulByGenerator;
use k256::elliptic_curve::BatchNormalize;
use k256::elliptic_curve::PrimeField;
use k256::{AffinePoint, ProjectivePoint, Scalar};
use zeroize::Zeroizing;

use crate::bip32::{derive_public, taproot_output_key, DeriveError};
use crate::codec::{canonical_point, tagged_hash, DecodeError, Reader, TypeTag, Writer};
use crate::plan::{network_from_byte, write_network, ParticipantIndex, MAX_PARTICIPANTS};

/// How the key that signs is tweaked from the (derived) group key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TweakMode {
    /// No Taproot tweak: a plain BIP340 signature under the derived key.
    Untweaked,
    /// BIP341 key path with no script tree (BIP86): `Q = P + H_TapTweak(P)·G`.
    KeyPath,
    /// BIP341 key path of an output that also has a script tree with this Merkle root.
    ScriptRoot([u8; 32]),
}

pub(crate) fn identifier(index: ParticipantIndex) -> Identifier {
    Identifier::try_from(index).expect("participant indexes start at 1")
}

/// Maps a FROST identifier made from a `u16` back to that `u16`.
pub(crate) fn index_of(id: &Identifier) -> Option<ParticipantIndex> {
    let bytes = id.serialize();
    let (high, low) = bytes.split_at(bytes.len() - 2);
    if high.iter().any(|b| *b != 0) {
        return None;
    }
    Some(u16::from_be_bytes([low[0], low[1]]))
}

fn scalar_from_bytes(bytes: [u8; 32]) -> Option<Scalar> {
    Option::from(Scalar::from_repr(bytes.into()))
}

fn point_bytes(p: &ProjectivePoint) -> [u8; 33] {
    use k256::elliptic_curve::sec1::ToEncodedPoint;
    let enc = p.to_affine().to_encoded_point(true);
    let mut out = [0u8; 33];
    out.copy_from_slice(enc.as_bytes());
    out
}

/// The public side of a threshold key: FROST public key package plus a BIP32 chain code.
///
/// Everything here is public and may be shown, exported and stored freely.
#[derive(Clone, PartialEq, Eq)]
pub struct GroupKey {
    network: Network,
    chain_code: [u8; 32],
    package: PublicKeyPackage,
    /// The compressed root key, computed once: every request and nonce checks it, and
    /// encoding it again would cost a field inversion each time.
    public_key: [u8; 33],
    /// Computed once: derivation starts here for every message signed.
    xpub: Xpub,
}

impl fmt::Debug for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupKey")
            .field("xpub", &self.xpub().to_string())
            .field("threshold", &self.threshold())
            .field("participants", &self.participants())
            .finish()
    }
}

/// A group key derived along a BIP32 path: the extended public key, and the tweak and key
/// that signing uses.
#[derive(Clone, Debug)]
pub struct DerivedGroupKey<'a> {
    child: ChildKey<'a>,
    xpub: Xpub,
}

/// The child of the group key at a BIP32 path, as signing and aggregation use it: the
/// accumulated tweak `t = Σ I_L`, `t·G`, and the child key `P = root + t·G`.
///
/// Computed with k256 alone ([`GroupKey::child`]); [`GroupKey::derive`] checks the same
/// computation against libsecp256k1's CKDpub.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChildKey<'a> {
    pub(crate) tweak: Scalar,
    pub(crate) tweak_point: ProjectivePoint,
    key: ProjectivePoint,
    /// The root package; derived packages are built from it only when needed (the signer
    /// needs just its own share).
    root: &'a PublicKeyPackage,
}

/// The affine map from a derived key to the key that actually signs under a
/// [`TweakMode`]: `Q = (±P) + t·G`, applied alike to shares and verifying shares.
///
/// Computing it once, with the generator table, replaces the library's own Taproot tweak
/// (which multiplies generically on every call); the resulting shares are identical.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SigningTweak {
    negate: bool,
    add: Scalar,
    add_point: ProjectivePoint,
    key: ProjectivePoint,
}

impl SigningTweak {
    fn apply_point(&self, p: ProjectivePoint) -> ProjectivePoint {
        (if self.negate { -p } else { p }) + self.add_point
    }

    fn apply_scalar(&self, s: Scalar) -> Scalar {
        (if self.negate { -s } else { s }) + self.add
    }
}

impl DerivedGroupKey<'_> {
    /// The derived extended public key.
    pub fn xpub(&self) -> &Xpub {
        &self.xpub
    }

    /// The FROST public key package of the derived key.
    pub fn public_key_package(&self) -> PublicKeyPackage {
        self.child.signing_package(
            &SigningTweak {
                negate: false,
                add: Scalar::ZERO,
                add_point: ProjectivePoint::IDENTITY,
                key: self.child.key,
            },
            None,
        )
    }

    /// The x-only key that verifies signatures made with `tweak`.
    ///
    /// Computed with the `bitcoin` crate (libsecp256k1), independently of the signing path.
    ///
    /// # Errors
    /// Only in the negligible case of an invalid tweaked point.
    pub fn output_key(&self, tweak: &TweakMode) -> Result<[u8; 32], DeriveError> {
        let xonly = self.xpub.public_key.x_only_public_key().0.serialize();
        match tweak {
            TweakMode::Untweaked => Ok(xonly),
            TweakMode::KeyPath => taproot_output_key(&xonly, None),
            TweakMode::ScriptRoot(root) => taproot_output_key(&xonly, Some(root)),
        }
    }
}

impl ChildKey<'_> {
    /// The map to the signing key for `mode` (BIP341: `P` lifted to even y, plus
    /// `H_TapTweak(P ‖ root)·G`), given `affine`, this child key in affine form (callers
    /// encode many points with one shared field inversion).
    fn signing_tweak_at(
        &self,
        affine: &AffinePoint,
        mode: &TweakMode,
    ) -> Result<SigningTweak, DeriveError> {
        use k256::elliptic_curve::point::AffineCoordinates;
        let p = self.key;
        let root = match mode {
            TweakMode::Untweaked => {
                return Ok(SigningTweak {
                    negate: false,
                    add: Scalar::ZERO,
                    add_point: ProjectivePoint::IDENTITY,
                    key: p,
                })
            }
            TweakMode::KeyPath => None,
            TweakMode::ScriptRoot(root) => Some(root),
        };
        if ProjectivePoint::from(*affine) != p {
            // A caller mixed up its points: refuse rather than tweak another key.
            return Err(DeriveError::InvalidKey);
        }
        let negate = bool::from(affine.y_is_odd());
        let x = affine.x();
        let hash = match root {
            None => tagged_hash("TapTweak", &[x.as_slice()]),
            Some(r) => tagged_hash("TapTweak", &[x.as_slice(), &r[..]]),
        };
        // BIP341: a tweak at or above the curve order makes the output key invalid.
        let add = scalar_from_bytes(hash).ok_or(DeriveError::InvalidKey)?;
        let add_point = ProjectivePoint::mul_by_generator(&add);
        let key = (if negate { -p } else { p }) + add_point;
        Ok(SigningTweak {
            negate,
            add,
            add_point,
            key,
        })
    }

    /// The public key package that verifies shares made under `tweak`, holding the
    /// verifying shares of `signers` only (all participants when `None`).
    pub(crate) fn signing_package(
        &self,
        tweak: &SigningTweak,
        signers: Option<&[ParticipantIndex]>,
    ) -> PublicKeyPackage {
        // `±(V + T) + A` is `±V + (A ± T)`: one addition per share.
        let offset = tweak.add_point
            + if tweak.negate {
                -self.tweak_point
            } else {
                self.tweak_point
            };
        let moved = |vs: &VerifyingShare| {
            let v = vs.to_element();
            VerifyingShare::new((if tweak.negate { -v } else { v }) + offset)
        };
        let all = self.root.verifying_shares();
        let shares = match signers {
            None => all.iter().map(|(id, vs)| (*id, moved(vs))).collect(),
            Some(signers) => signers
                .iter()
                .filter_map(|s| {
                    let id = identifier(*s);
                    all.get(&id).map(|vs| (id, moved(vs)))
                })
                .collect(),
        };
        PublicKeyPackage::new(
            shares,
            VerifyingKey::new(tweak.key),
            self.root.min_signers(),
        )
    }
}

/// One key on a BIP32 path below the group key, with what the next step needs.
#[derive(Clone, Copy)]
struct Node {
    key: ProjectivePoint,
    /// The compressed key, which the next step hashes; current only for nodes that have a
    /// next step (encoding costs a field inversion).
    encoded: [u8; 33],
    chain_code: [u8; 32],
    /// `Σ I_L` from the group key down to here.
    tweak: Scalar,
}

impl Node {
    /// BIP32 CKDpub: `I = HMAC-SHA512(c, ser_P(K) ‖ ser_32(i))`, `K_i = K + I_L·G`,
    /// `c_i = I_R`. The child's `encoded` is left stale.
    fn step(&self, index: u32) -> Result<Node, DeriveError> {
        use hmac::{Hmac, Mac};
        use sha2::Sha512;

        if index >= 0x8000_0000 {
            return Err(DeriveError::Hardened {
                index: index & 0x7fff_ffff,
            });
        }
        let invalid = || DeriveError::InvalidChild { index };
        let mut mac = Hmac::<Sha512>::new_from_slice(&self.chain_code)
            .expect("HMAC takes keys of any length");
        mac.update(&self.encoded);
        mac.update(&index.to_be_bytes());
        let i = mac.finalize().into_bytes();
        let (i_l, i_r) = i.split_at(32);
        let i_l = scalar_from_bytes(i_l.try_into().expect("32 of 64 bytes")).ok_or_else(invalid)?;
        let key = self.key + ProjectivePoint::mul_by_generator(&i_l);
        if key == ProjectivePoint::IDENTITY {
            return Err(invalid());
        }
        Ok(Node {
            key,
            encoded: self.encoded,
            chain_code: i_r.try_into().expect("32 of 64 bytes"),
            tweak: self.tweak + i_l,
        })
    }
}

/// The signing keys of a request's items, derived with k256 alone (BIP32 CKDpub): per step
/// one HMAC-SHA512, one generator-table multiplication and, when another step follows, one
/// field inversion to encode the key the next HMAC hashes.
///
/// Each path prefix is derived once per request and each (path, tweak) pair's signing tweak
/// once: a PSBT's inputs mostly share the step `0` or `1`, and several may pay the same
/// address. [`GroupKey::derive`] checks this computation against libsecp256k1, and the
/// tests check signatures made with it against keys the `bitcoin` crate derived.
pub(crate) struct ItemKeys<'a> {
    group: &'a GroupKey,
    /// Keys that have a next step somewhere in the request (so are encoded), by path.
    nodes: BTreeMap<Vec<u32>, Node>,
    /// Finished items, by path.
    items: BTreeMap<Vec<u32>, Item<'a>>,
}

/// A derived path: its child key and the signing tweaks computed for it so far.
struct Item<'a> {
    child: ChildKey<'a>,
    tweaks: Vec<(TweakMode, SigningTweak)>,
}

impl<'a> ItemKeys<'a> {
    pub(crate) fn new(group: &'a GroupKey) -> Self {
        ItemKeys {
            group,
            nodes: BTreeMap::new(),
            items: BTreeMap::new(),
        }
    }

    /// The child of the group key at `path`.
    ///
    /// # Errors
    /// [`DeriveError::Hardened`] for a hardened index; [`DeriveError::InvalidChild`] in the
    /// negligible case BIP32 describes.
    pub(crate) fn child(&mut self, path: &[u32]) -> Result<ChildKey<'a>, DeriveError> {
        if let Some(item) = self.items.get(path) {
            return Ok(item.child);
        }
        let (mut node, start) = (1..path.len())
            .rev()
            .find_map(|k| self.nodes.get(&path[..k]).map(|n| (*n, k)))
            .unwrap_or_else(|| (self.group.root_node(), 0));
        for (step, &index) in path.iter().enumerate().skip(start) {
            node = node.step(index)?;
            if step + 1 < path.len() {
                node.encoded = point_bytes(&node.key);
                self.nodes.insert(path[..=step].to_vec(), node);
            }
        }
        let root = self.group.package.verifying_key().to_element();
        let child = ChildKey {
            tweak: node.tweak,
            tweak_point: node.key - root,
            key: node.key,
            root: &self.group.package,
        };
        self.items.insert(
            path.to_vec(),
            Item {
                child,
                tweaks: Vec::new(),
            },
        );
        Ok(child)
    }

    /// The child keys at `paths` and each one's affine form, computed with one field
    /// inversion for all of them and for the `extra` points, whose affine forms come last.
    ///
    /// # Errors
    /// As [`ItemKeys::child`].
    pub(crate) fn children<'p>(
        &mut self,
        paths: impl Iterator<Item = &'p [u32]>,
        extra: &[ProjectivePoint],
    ) -> Result<Children<'a>, DeriveError> {
        let keys = paths
            .map(|path| self.child(path))
            .collect::<Result<Vec<_>, _>>()?;
        let mut points: Vec<ProjectivePoint> = keys.iter().map(|c| c.key).collect();
        points.extend_from_slice(extra);
        let mut affine = ProjectivePoint::batch_normalize(points.as_slice());
        let extra = affine.split_off(keys.len());
        Ok(Children {
            keys,
            affine,
            extra,
        })
    }

    /// The map to the signing key under `mode` of the child at `path`, whose affine form
    /// is `affine`.
    ///
    /// # Errors
    /// As [`ItemKeys::child`], and [`DeriveError::InvalidKey`] for an invalid Taproot tweak.
    pub(crate) fn signing_tweak(
        &mut self,
        path: &[u32],
        mode: &TweakMode,
        affine: &AffinePoint,
    ) -> Result<SigningTweak, DeriveError> {
        let child = self.child(path)?;
        let tweaks = &mut self
            .items
            .get_mut(path)
            .expect("child() records every path it derives")
            .tweaks;
        if let Some((_, tweak)) = tweaks.iter().find(|(m, _)| m == mode) {
            return Ok(*tweak);
        }
        let tweak = child.signing_tweak_at(affine, mode)?;
        tweaks.push((*mode, tweak));
        Ok(tweak)
    }
}

/// What [`ItemKeys::children`] returns.
pub(crate) struct Children<'a> {
    /// The child keys, in the order of the paths.
    pub(crate) keys: Vec<ChildKey<'a>>,
    /// Their affine forms.
    pub(crate) affine: Vec<AffinePoint>,
    /// The affine forms of the extra points.
    pub(crate) extra: Vec<AffinePoint>,
}

impl GroupKey {
    pub(crate) fn new(network: Network, chain_code: [u8; 32], package: PublicKeyPackage) -> Self {
        let key = package
            .verifying_key()
            .serialize()
            .expect("a group key is never the identity");
        let public_key: [u8; 33] = key
            .try_into()
            .expect("secp256k1 verifying keys serialize to 33 bytes");
        let xpub = Xpub {
            network: NetworkKind::from(network),
            depth: 0,
            parent_fingerprint: Fingerprint::default(),
            child_number: Cn::Normal { index: 0 },
            public_key: bitcoin::secp256k1::PublicKey::from_slice(&public_key)
                .expect("a FROST verifying key is a valid secp256k1 point"),
            chain_code: ChainCode::from(chain_code),
        };
        GroupKey {
            network,
            chain_code,
            package,
            public_key,
            xpub,
        }
    }

    /// The compressed SEC1 encoding of the group (root) public key.
    pub fn public_key(&self) -> [u8; 33] {
        self.public_key
    }

    /// Signatures needed.
    pub fn threshold(&self) -> u16 {
        *self
            .package
            .min_signers()
            .as_ref()
            .expect("group keys are always built with a threshold")
    }

    /// Number of shares.
    pub fn participants(&self) -> u16 {
        self.package.verifying_shares().len() as u16
    }

    /// The network the key is for.
    pub fn network(&self) -> Network {
        self.network
    }

    /// The BIP32 chain code, fixed by the certified DKG transcript.
    pub fn chain_code(&self) -> &[u8; 32] {
        &self.chain_code
    }

    /// The FROST public key package.
    pub fn public_key_package(&self) -> &PublicKeyPackage {
        &self.package
    }

    /// The group key as a BIP32 extended public key (depth 0), for `tr(xpub/<0;1>/*)`.
    pub fn xpub(&self) -> Xpub {
        self.xpub
    }

    /// The BIP32 fingerprint of the group key, used as key origin in descriptors.
    pub fn fingerprint(&self) -> Fingerprint {
        self.xpub().fingerprint()
    }

    /// Derives the child key at `path` (non-hardened indexes).
    ///
    /// The child is computed twice, by libsecp256k1 (the `bitcoin` crate's CKDpub) and by
    /// the k256 code that signing uses, and the two must agree.
    ///
    /// # Errors
    /// [`DeriveError::Hardened`] for a hardened index.
    pub fn derive(&self, path: &[u32]) -> Result<DerivedGroupKey<'_>, DeriveError> {
        let child = self.child(path)?;
        let steps = to_child_numbers(path)?;
        let (xpub, tweak_bytes) = derive_public(&self.xpub(), &steps)?;
        if point_bytes(&child.key)[..] != xpub.public_key.serialize()[..]
            || scalar_from_bytes(tweak_bytes) != Some(child.tweak)
        {
            // Two independent computations of the child key must agree.
            return Err(DeriveError::InvalidKey);
        }
        Ok(DerivedGroupKey { child, xpub })
    }

    /// Derives the child at `path` with k256 alone; see [`ItemKeys`].
    ///
    /// # Errors
    /// [`DeriveError::Hardened`] for a hardened index; [`DeriveError::InvalidChild`] in the
    /// negligible case BIP32 describes.
    pub(crate) fn child(&self, path: &[u32]) -> Result<ChildKey<'_>, DeriveError> {
        ItemKeys::new(self).child(path)
    }

    fn root_node(&self) -> Node {
        Node {
            key: self.package.verifying_key().to_element(),
            encoded: self.public_key,
            chain_code: self.chain_code,
            tweak: Scalar::ZERO,
        }
    }

    /// The x-only key that verifies signatures for `path` and `tweak`.
    ///
    /// # Errors
    /// [`DeriveError::Hardened`] for a hardened index.
    pub fn output_key(&self, path: &[u32], tweak: &TweakMode) -> Result<[u8; 32], DeriveError> {
        self.derive(path)?.output_key(tweak)
    }

    /// Encodes the group key (see `docs/formats/threshold.md`).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(TypeTag::GroupKey);
        self.write(&mut w);
        w.finish()
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        write_network(w, self.network);
        w.fixed(&self.chain_code);
        w.u16(self.threshold());
        w.fixed(&self.public_key());
        w.u16(self.participants());
        for (id, share) in self.package.verifying_shares() {
            let index = index_of(id).expect("group keys only hold u16 identifiers");
            let bytes = share
                .serialize()
                .expect("verifying shares are never the identity");
            w.u16(index).fixed(&bytes);
        }
    }

    /// Decodes a group key and checks that its points are valid.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the malformed field.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, TypeTag::GroupKey)?;
        let key = Self::read(&mut r)?;
        r.finish()?;
        Ok(key)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let network = network_from_byte(r.u8("network")?)?;
        let chain_code = r.array::<32>("chain code")?;
        let threshold = r.u16("threshold")?;
        let key_bytes = r.array::<33>("group public key")?;
        let key = VerifyingKey::deserialize(&key_bytes)
            .map_err(|_| DecodeError::invalid("group public key", "not a valid curve point"))?;
        canonical_point("group public key", &key_bytes, key.serialize().ok())?;
        let n = r.count("participant count", MAX_PARTICIPANTS)?;
        if threshold < 2 || usize::from(threshold) > n {
            return Err(DecodeError::invalid(
                "threshold",
                format!("{threshold} of {n} is not allowed"),
            ));
        }
        let mut shares = BTreeMap::new();
        for _ in 0..n {
            let index = r.u16("participant index")?;
            let bytes = r.array::<33>("verifying share")?;
            if index == 0 {
                return Err(DecodeError::invalid("participant index", "index 0"));
            }
            let share = VerifyingShare::deserialize(&bytes)
                .map_err(|_| DecodeError::invalid("verifying share", "not a valid curve point"))?;
            canonical_point("verifying share", &bytes, share.serialize().ok())?;
            if shares.insert(identifier(index), share).is_some() {
                return Err(DecodeError::invalid(
                    "participant index",
                    format!("#{index} appears twice"),
                ));
            }
        }
        Ok(GroupKey::new(
            network,
            chain_code,
            PublicKeyPackage::new(shares, key, Some(threshold)),
        ))
    }
}

fn to_child_numbers(path: &[u32]) -> Result<Vec<ChildNumber>, DeriveError> {
    path.iter()
        .map(|&i| {
            ChildNumber::from_normal_idx(i).map_err(|_| DeriveError::Hardened {
                index: i & 0x7fff_ffff,
            })
        })
        .collect()
}

/// One participant's secret share of a group key, with the public group key.
///
/// Zeroized on drop (the FROST key package zeroizes itself); `Debug` prints
/// `<redacted>`; no `Clone`, no `Serialize`. Exported only through
/// [`KeyShare::to_secret_bytes`] for the encrypted keystore and backups.
pub struct KeyShare {
    index: ParticipantIndex,
    key_package: KeyPackage,
    group: GroupKey,
}

impl fmt::Debug for KeyShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyShare")
            .field("index", &self.index)
            .field("group", &self.group)
            .field("share", &"<redacted>")
            .finish()
    }
}

/// Why a key share could not be built.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyShareError {
    /// The share's public point is not the one the group key lists for this participant.
    #[error("the share of participant #{index} does not match the group's verifying share")]
    Inconsistent {
        /// The participant.
        index: ParticipantIndex,
    },
}

impl KeyShare {
    pub(crate) fn new(
        index: ParticipantIndex,
        key_package: KeyPackage,
        group: GroupKey,
    ) -> Result<Self, KeyShareError> {
        let expected = group
            .package
            .verifying_shares()
            .get(&identifier(index))
            .ok_or(KeyShareError::Inconsistent { index })?;
        let actual: VerifyingShare = (*key_package.signing_share()).into();
        if &actual != expected
            || key_package.verifying_share() != expected
            || key_package.verifying_key() != group.package.verifying_key()
            || *key_package.identifier() != identifier(index)
        {
            return Err(KeyShareError::Inconsistent { index });
        }
        Ok(KeyShare {
            index,
            key_package,
            group,
        })
    }

    /// This participant's position (and FROST identifier).
    pub fn index(&self) -> ParticipantIndex {
        self.index
    }

    /// The public group key.
    pub fn group(&self) -> &GroupKey {
        &self.group
    }

    pub(crate) fn key_package(&self) -> &KeyPackage {
        &self.key_package
    }

    /// The key package that signs for `derived` under `tweak`: the BIP32 tweak, then the
    /// signing tweak, added to the share.
    pub(crate) fn signing_key_package(
        &self,
        derived: &ChildKey<'_>,
        tweak: &SigningTweak,
    ) -> KeyPackage {
        let share =
            tweak.apply_scalar(self.key_package.signing_share().to_scalar() + derived.tweak);
        let verifying = tweak
            .apply_point(self.key_package.verifying_share().to_element() + derived.tweak_point);
        KeyPackage::new(
            *self.key_package.identifier(),
            SigningShare::new(share),
            VerifyingShare::new(verifying),
            VerifyingKey::new(tweak.key),
            *self.key_package.min_signers(),
        )
    }

    /// Exports the share for the encrypted keystore or an encrypted backup.
    ///
    /// # Security
    /// The result holds the secret share in the clear. Encrypt it before it leaves memory.
    pub fn to_secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::new(TypeTag::KeyShare);
        self.group.write(&mut w);
        w.u16(self.index);
        w.fixed(&self.key_package.signing_share().serialize());
        Zeroizing::new(w.finish())
    }

    /// Restores a share from [`KeyShare::to_secret_bytes`] output, checking that it matches
    /// the group key it carries.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the malformed or inconsistent field.
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, TypeTag::KeyShare)?;
        let group = GroupKey::read(&mut r)?;
        let index = r.u16("participant index")?;
        let secret = Zeroizing::new(r.array::<32>("signing share")?);
        r.finish()?;
        if index == 0 {
            return Err(DecodeError::invalid(
                "participant index",
                "participant 0 does not exist",
            ));
        }
        let share = SigningShare::deserialize(secret.as_slice())
            .map_err(|_| DecodeError::invalid("signing share", "not a valid scalar"))?;
        let id = identifier(index);
        let verifying = group
            .package
            .verifying_shares()
            .get(&id)
            .copied()
            .ok_or_else(|| DecodeError::invalid("participant index", "not in the group"))?;
        let kp = KeyPackage::new(
            id,
            share,
            verifying,
            *group.package.verifying_key(),
            group.threshold(),
        );
        KeyShare::new(index, kp, group).map_err(|e| DecodeError::invalid("key share", e))
    }
}
