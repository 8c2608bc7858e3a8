//! EIP-4527 QR types: `eth-sign-request` (watch-only wallet or coordinator → offline
//! signer) and `eth-signature` (signer → back), CBOR inside BC-UR, as specified by
//! [EIP-4527](https://eips.ethereum.org/EIPS/eip-4527) and implemented by Keystone's
//! `ur-registry-eth`.
//!
//! ```text
//! eth-sign-request = {
//!   ? 1: #6.37(bytes .size 16),   ; request-id (UUID)
//!     2: bytes,                   ; sign-data: the unsigned transaction bytes
//!     3: uint,                    ; data-type: 1 legacy tx, 2 EIP-712, 3 personal message, 4 EIP-2718 typed tx
//!   ? 4: uint,                    ; chain-id (default 1)
//!     5: #6.304(crypto-keypath),  ; derivation-path
//!   ? 6: bytes .size 20,          ; address of the signing key
//!   ? 7: text,                    ; origin
//! }
//! crypto-keypath = { 1: [* (uint31, bool)], ? 2: uint32 .ne 0, ? 3: uint8 }
//! eth-signature = { 1: #6.37(bytes .size 16), 2: bytes, ? 3: text }
//! ```
//!
//! The decoders are strict: definite-length items only, keys in ascending order without
//! duplicates, no unknown keys, no trailing bytes, and the re-encoding must equal the
//! input (so there is exactly one accepted encoding of each value, and Keystone's published
//! vectors round-trip byte for byte).

use std::fmt;

use alloy_primitives::{Address, U256};
use minicbor::data::{Tag, Type};
use minicbor::{Decoder, Encoder};

use crate::tx::{DecodeTxError, EthTransaction, SignatureError, SignedEthTransaction, TxType};

/// The UR type of a signing request.
pub const ETH_SIGN_REQUEST_UR_TYPE: &str = "eth-sign-request";
/// The UR type of a signature.
pub const ETH_SIGNATURE_UR_TYPE: &str = "eth-signature";
/// CBOR tag of a UUID (IANA).
pub const TAG_UUID: u64 = 37;
/// CBOR tag of `crypto-keypath` (BCR-2020-006).
pub const TAG_CRYPTO_KEYPATH: u64 = 304;
/// Longest CBOR accepted for either type, in bytes.
pub const MAX_CBOR_LEN: usize = 256 * 1024;
/// Most derivation-path components accepted (BIP-32 depth is a byte).
pub const MAX_PATH_COMPONENTS: usize = 255;
/// Longest `origin` text accepted, in bytes.
pub const MAX_ORIGIN_LEN: usize = 256;

/// What `sign-data` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DataType {
    /// 1: RLP of an unsigned legacy transaction (the EIP-155 signing payload).
    Transaction,
    /// 2: EIP-712 typed data (JSON).
    TypedData,
    /// 3: a personal message (EIP-191).
    PersonalMessage,
    /// 4: an EIP-2718 typed transaction, unsigned (`0x02 || rlp(...)` for EIP-1559).
    TypedTransaction,
}

impl DataType {
    /// The CBOR value.
    pub fn code(self) -> u64 {
        match self {
            Self::Transaction => 1,
            Self::TypedData => 2,
            Self::PersonalMessage => 3,
            Self::TypedTransaction => 4,
        }
    }

    /// The data type with CBOR value `code`.
    pub fn from_code(code: u64) -> Option<Self> {
        Some(match code {
            1 => Self::Transaction,
            2 => Self::TypedData,
            3 => Self::PersonalMessage,
            4 => Self::TypedTransaction,
            _ => return None,
        })
    }
}

/// One BIP-32 derivation step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PathComponent {
    /// The child index, below 2^31.
    pub index: u32,
    /// Whether the step is hardened.
    pub hardened: bool,
}

/// A `crypto-keypath` (BCR-2020-006): derivation steps, optionally the master key's
/// fingerprint and the depth.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct KeyPath {
    /// The steps from the source key.
    pub components: Vec<PathComponent>,
    /// Fingerprint of the source (master) key, never 0.
    pub source_fingerprint: Option<u32>,
    /// The depth of the key.
    pub depth: Option<u8>,
}

impl fmt::Display for KeyPath {
    /// `m/44'/60'/0'/0/0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("m")?;
        for c in &self.components {
            write!(f, "/{}{}", c.index, if c.hardened { "'" } else { "" })?;
        }
        Ok(())
    }
}

/// A decoded `eth-sign-request`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EthSignRequest {
    /// The request's UUID, echoed by the signature.
    pub request_id: Option<[u8; 16]>,
    /// The bytes to sign (for transactions: the unsigned transaction, which the signer
    /// decodes, shows and hashes itself).
    pub sign_data: Vec<u8>,
    /// What `sign_data` is.
    pub data_type: DataType,
    /// The chain id (absent means 1).
    pub chain_id: Option<u64>,
    /// Which key signs.
    pub derivation_path: KeyPath,
    /// The address of the signing key, for the signer to check.
    pub address: Option<Address>,
    /// Who asks (a wallet name).
    pub origin: Option<String>,
}

/// A decoded `eth-signature`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EthSignature {
    /// The UUID of the request this answers.
    pub request_id: [u8; 16],
    /// `r ‖ s ‖ v`: 32 + 32 bytes, then `v` big-endian (one byte for a typed transaction,
    /// the y parity; for an EIP-155 legacy transaction `35 + 2·chain_id + parity`, which
    /// may take more than one byte).
    pub signature: Vec<u8>,
    /// The signing device.
    pub origin: Option<String>,
}

/// Why bytes or a UR are not a valid EIP-4527 item.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Eip4527Error {
    /// Longer than [`MAX_CBOR_LEN`].
    #[error("{what}: {found} bytes is longer than the {MAX_CBOR_LEN} bytes accepted")]
    TooLong {
        /// The type being decoded.
        what: &'static str,
        /// The input length.
        found: usize,
    },
    /// A CBOR item of the wrong type, or broken CBOR.
    #[error("{what}: {field}: {reason}")]
    Cbor {
        /// The type being decoded.
        what: &'static str,
        /// The field (`map`, `sign-data`, ...).
        field: &'static str,
        /// What was expected and found.
        reason: String,
    },
    /// A tag other than the one the field must carry.
    #[error("{what}: {field}: expected tag {expected}, found tag {found}")]
    WrongTag {
        /// The type being decoded.
        what: &'static str,
        /// The field.
        field: &'static str,
        /// The required tag.
        expected: u64,
        /// The tag found.
        found: u64,
    },
    /// A required field is absent.
    #[error("{what}: missing required field {key} ({field})")]
    MissingField {
        /// The type being decoded.
        what: &'static str,
        /// Its key.
        key: u64,
        /// Its name.
        field: &'static str,
    },
    /// A key the type does not define.
    #[error("{what}: unknown map key {key}")]
    UnknownKey {
        /// The type being decoded.
        what: &'static str,
        /// The key.
        key: u64,
    },
    /// Keys repeated or not in ascending order.
    #[error("{what}: map key {key} repeated or out of ascending order")]
    KeyOrder {
        /// The type being decoded.
        what: &'static str,
        /// The key.
        key: u64,
    },
    /// A value outside its range.
    #[error("{what}: {field}: {reason}")]
    Invalid {
        /// The type being decoded.
        what: &'static str,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Bytes after the item.
    #[error("{what}: {count} trailing bytes after the CBOR item")]
    TrailingBytes {
        /// The type being decoded.
        what: &'static str,
        /// How many.
        count: usize,
    },
    /// Decodes, but the canonical re-encoding differs (non-minimal integer or length).
    #[error("{what}: non-canonical CBOR (re-encoding gives different bytes)")]
    NonCanonical {
        /// The type being decoded.
        what: &'static str,
    },
    /// A UR of another type.
    #[error("expected a ur:{expected}, found ur:{found}")]
    UrType {
        /// The type wanted.
        expected: &'static str,
        /// The type found.
        found: String,
    },
    /// The UR framing (bytewords, checksum, fountain parts) is broken or incomplete.
    #[error("invalid UR: {0}")]
    Ur(String),
}

/// Why a signing request or signature does not fit a transaction.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// Not a transaction (typed data and messages are not signed by the custody signer).
    #[error("data type {0:?} is not a transaction; the custody signer signs transactions only")]
    NotATransaction(DataType),
    /// The sign-data does not decode.
    #[error("sign-data: {0}")]
    Transaction(#[from] DecodeTxError),
    /// The data type does not match the transaction's type.
    #[error("data type {data_type:?} does not match the {} transaction in sign-data", tx_type.name())]
    DataTypeMismatch {
        /// The declared type.
        data_type: DataType,
        /// The transaction's type.
        tx_type: TxType,
    },
    /// The request's chain id is not the transaction's.
    #[error("the request says chain {request} but the transaction is for chain {transaction}")]
    ChainIdMismatch {
        /// From the request (1 when absent).
        request: u64,
        /// From the transaction.
        transaction: u64,
    },
    /// The request names another signing address.
    #[error("the request is for address {requested}, but this key's address is {ours}")]
    AddressMismatch {
        /// From the request.
        requested: Address,
        /// The signer's.
        ours: Address,
    },
    /// The signature answers another request.
    #[error("the signature answers request {found}, not {expected}")]
    RequestIdMismatch {
        /// The request's id (hex).
        expected: String,
        /// The signature's id (hex).
        found: String,
    },
    /// The signature bytes are not `r ‖ s ‖ v`.
    #[error("signature of {0} bytes; expected r and s (64 bytes) and a v of 1 to 8 bytes")]
    SignatureLength(usize),
    /// The signature does not fit the transaction.
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

const REQUEST: &str = "eth-sign-request";
const SIGNATURE: &str = "eth-signature";

impl EthSignRequest {
    /// A request to sign `tx` with the key at `derivation_path` (whose address is
    /// `address`, if given): data type 4 for EIP-1559, 1 for legacy; chain id always set.
    pub fn for_transaction(
        tx: &EthTransaction,
        request_id: [u8; 16],
        derivation_path: KeyPath,
        address: Option<Address>,
        origin: Option<String>,
    ) -> Self {
        Self {
            request_id: Some(request_id),
            sign_data: tx.encode_unsigned(),
            data_type: match tx.tx_type() {
                TxType::Eip1559 => DataType::TypedTransaction,
                TxType::Legacy => DataType::Transaction,
            },
            chain_id: Some(tx.chain_id()),
            derivation_path,
            address,
            origin,
        }
    }

    /// Decodes the transaction in `sign_data` and checks it agrees with the request's data
    /// type and chain id (an absent chain id means 1, the CDDL default).
    ///
    /// # Errors
    ///
    /// [`RequestError`].
    pub fn transaction(&self) -> Result<EthTransaction, RequestError> {
        let expected_type = match self.data_type {
            DataType::Transaction => TxType::Legacy,
            DataType::TypedTransaction => TxType::Eip1559,
            other => return Err(RequestError::NotATransaction(other)),
        };
        let tx = EthTransaction::decode_unsigned(&self.sign_data)?;
        if tx.tx_type() != expected_type {
            return Err(RequestError::DataTypeMismatch {
                data_type: self.data_type,
                tx_type: tx.tx_type(),
            });
        }
        let request = self.chain_id.unwrap_or(1);
        if request != tx.chain_id() {
            return Err(RequestError::ChainIdMismatch {
                request,
                transaction: tx.chain_id(),
            });
        }
        Ok(tx)
    }

    /// Checks the request's `address`, if it has one, against the signer's own.
    ///
    /// # Errors
    ///
    /// [`RequestError::AddressMismatch`].
    pub fn check_address(&self, ours: Address) -> Result<(), RequestError> {
        match self.address {
            Some(requested) if requested != ours => {
                Err(RequestError::AddressMismatch { requested, ours })
            }
            _ => Ok(()),
        }
    }

    /// The CBOR encoding.
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut e = Encoder::new(Vec::new());
        let entries = 3
            + u64::from(self.request_id.is_some())
            + u64::from(self.chain_id.is_some())
            + u64::from(self.address.is_some())
            + u64::from(self.origin.is_some());
        // Writing into a Vec cannot fail.
        let _ = (|| -> Result<(), minicbor::encode::Error<std::convert::Infallible>> {
            e.map(entries)?;
            if let Some(id) = &self.request_id {
                e.u8(1)?.tag(Tag::new(TAG_UUID))?.bytes(id)?;
            }
            e.u8(2)?.bytes(&self.sign_data)?;
            e.u8(3)?.u64(self.data_type.code())?;
            if let Some(chain_id) = self.chain_id {
                e.u8(4)?.u64(chain_id)?;
            }
            e.u8(5)?.tag(Tag::new(TAG_CRYPTO_KEYPATH))?;
            encode_keypath(&mut e, &self.derivation_path)?;
            if let Some(address) = &self.address {
                e.u8(6)?.bytes(address.as_slice())?;
            }
            if let Some(origin) = &self.origin {
                e.u8(7)?.str(origin)?;
            }
            Ok(())
        })();
        e.into_writer()
    }

    /// Decodes the CBOR encoding (strictly: see the module documentation).
    ///
    /// # Errors
    ///
    /// [`Eip4527Error`] naming the field and what is wrong with it.
    pub fn from_cbor(data: &[u8]) -> Result<Self, Eip4527Error> {
        let mut r = Reader::new(REQUEST, data)?;
        let entries = r.map("map")?;
        let mut request_id = None;
        let mut sign_data = None;
        let mut data_type = None;
        let mut chain_id = None;
        let mut derivation_path = None;
        let mut address = None;
        let mut origin = None;
        let mut last = 0;
        for _ in 0..entries {
            let key = r.key(&mut last)?;
            match key {
                1 => request_id = Some(r.uuid("request-id")?),
                2 => sign_data = Some(r.bytes("sign-data")?.to_vec()),
                3 => {
                    let code = r.uint("data-type")?;
                    data_type = Some(DataType::from_code(code).ok_or_else(|| {
                        r.invalid("data-type", format!("unknown data type {code} (1 to 4)"))
                    })?);
                }
                4 => chain_id = Some(r.uint("chain-id")?),
                5 => {
                    r.tag("derivation-path", TAG_CRYPTO_KEYPATH)?;
                    derivation_path = Some(r.keypath()?);
                }
                6 => {
                    let bytes = r.bytes("address")?;
                    let array: [u8; 20] = bytes.try_into().map_err(|_| {
                        r.invalid("address", format!("{} bytes, expected 20", bytes.len()))
                    })?;
                    address = Some(Address::from(array));
                }
                7 => origin = Some(r.text("origin")?),
                key => return Err(Eip4527Error::UnknownKey { what: REQUEST, key }),
            }
        }
        let missing = |key, field| Eip4527Error::MissingField {
            what: REQUEST,
            key,
            field,
        };
        let request = Self {
            request_id,
            sign_data: sign_data.ok_or_else(|| missing(2, "sign-data"))?,
            data_type: data_type.ok_or_else(|| missing(3, "data-type"))?,
            chain_id,
            derivation_path: derivation_path.ok_or_else(|| missing(5, "derivation-path"))?,
            address,
            origin,
        };
        r.finish(data, &request.to_cbor())?;
        Ok(request)
    }

    /// A single-part UR, `ur:eth-sign-request/…` (lower case; upper-case it for a QR code's
    /// alphanumeric mode — decoding takes either).
    pub fn to_ur(&self) -> String {
        ur_encode(&self.to_cbor(), ETH_SIGN_REQUEST_UR_TYPE)
    }

    /// Multi-part URs with fragments of at most `max_fragment_len` bytes (the first
    /// `fragment count` parts, enough for a receiver that sees them all).
    ///
    /// # Errors
    ///
    /// [`Eip4527Error::Ur`] for a zero fragment length.
    pub fn to_ur_parts(&self, max_fragment_len: usize) -> Result<Vec<String>, Eip4527Error> {
        ur_parts(&self.to_cbor(), ETH_SIGN_REQUEST_UR_TYPE, max_fragment_len)
    }

    /// Decodes a single-part UR (either case).
    ///
    /// # Errors
    ///
    /// [`Eip4527Error::UrType`] for another UR type, [`Eip4527Error::Ur`] for broken
    /// framing, and the errors of [`EthSignRequest::from_cbor`].
    pub fn from_ur(ur: &str) -> Result<Self, Eip4527Error> {
        Self::from_cbor(&ur_decode(ur, ETH_SIGN_REQUEST_UR_TYPE)?)
    }

    /// Decodes multi-part URs (any order, repeats allowed) once they complete the message.
    ///
    /// # Errors
    ///
    /// As [`EthSignRequest::from_ur`], and [`Eip4527Error::Ur`] if the parts do not
    /// complete the message.
    pub fn from_ur_parts<'a>(
        parts: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, Eip4527Error> {
        Self::from_cbor(&ur_collect(parts, ETH_SIGN_REQUEST_UR_TYPE)?)
    }
}

impl EthSignature {
    /// The answer to request `request_id` carrying the signature of `signed`: `r ‖ s ‖ v`
    /// with `v` the y parity (0 or 1) for EIP-1559, or the EIP-155 `v` for legacy.
    pub fn for_transaction(
        request_id: [u8; 16],
        signed: &SignedEthTransaction,
        origin: Option<String>,
    ) -> Self {
        let sig = signed.signature();
        let mut bytes = Vec::with_capacity(65);
        bytes.extend_from_slice(&sig.r().to_be_bytes::<32>());
        bytes.extend_from_slice(&sig.s().to_be_bytes::<32>());
        let tx = signed.transaction();
        match tx.tx_type() {
            TxType::Eip1559 => bytes.push(u8::from(sig.v())),
            TxType::Legacy => {
                let v = 35 + 2 * u128::from(tx.chain_id()) + u128::from(sig.v());
                let be = v.to_be_bytes();
                let start = be.iter().position(|b| *b != 0).unwrap_or(be.len() - 1);
                bytes.extend_from_slice(&be[start..]);
            }
        }
        Self {
            request_id,
            signature: bytes,
            origin,
        }
    }

    /// Checks that this answers `request`.
    ///
    /// # Errors
    ///
    /// [`RequestError::RequestIdMismatch`] (also when the request has no id).
    pub fn check_answers(&self, request: &EthSignRequest) -> Result<(), RequestError> {
        if request.request_id == Some(self.request_id) {
            Ok(())
        } else {
            Err(RequestError::RequestIdMismatch {
                expected: request
                    .request_id
                    .map(alloy_primitives::hex::encode)
                    .unwrap_or_else(|| "(none)".into()),
                found: alloy_primitives::hex::encode(self.request_id),
            })
        }
    }

    /// Attaches this signature to `tx` (the transaction the signer was asked to sign,
    /// decoded by the caller from its own request), reading `v` as described on
    /// [`EthSignature::signature`] (27/28 are also read as the parity), normalised to
    /// low s. The caller then checks the sender with
    /// [`SignedEthTransaction::check_sender`].
    ///
    /// # Errors
    ///
    /// [`RequestError::SignatureLength`], [`RequestError::Signature`].
    pub fn apply_to(&self, tx: &EthTransaction) -> Result<SignedEthTransaction, RequestError> {
        let len = self.signature.len();
        if !(65..=72).contains(&len) {
            return Err(RequestError::SignatureLength(len));
        }
        let r = U256::from_be_slice(&self.signature[..32]);
        let s = U256::from_be_slice(&self.signature[32..64]);
        let v = self.signature[64..]
            .iter()
            .fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
        let bad_v = || SignatureError::BadV {
            found: v,
            tx_type: tx.tx_type().name(),
            chain_id: tx.chain_id(),
        };
        let parity = match (tx.tx_type(), v) {
            (_, 27 | 28) => v == 28,
            (TxType::Eip1559, 0 | 1) => v == 1,
            (TxType::Legacy, v) => {
                let base = 35 + 2 * u128::from(tx.chain_id());
                match v.checked_sub(base) {
                    Some(0) => false,
                    Some(1) => true,
                    _ => return Err(bad_v().into()),
                }
            }
            _ => return Err(bad_v().into()),
        };
        Ok(tx.with_signature(r, s, parity)?)
    }

    /// The CBOR encoding.
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut e = Encoder::new(Vec::new());
        let entries = 2 + u64::from(self.origin.is_some());
        // Writing into a Vec cannot fail.
        let _ = (|| -> Result<(), minicbor::encode::Error<std::convert::Infallible>> {
            e.map(entries)?;
            e.u8(1)?.tag(Tag::new(TAG_UUID))?.bytes(&self.request_id)?;
            e.u8(2)?.bytes(&self.signature)?;
            if let Some(origin) = &self.origin {
                e.u8(3)?.str(origin)?;
            }
            Ok(())
        })();
        e.into_writer()
    }

    /// Decodes the CBOR encoding (strictly: see the module documentation). The signature
    /// must be 65 to 72 bytes (`r ‖ s ‖ v`).
    ///
    /// # Errors
    ///
    /// [`Eip4527Error`].
    pub fn from_cbor(data: &[u8]) -> Result<Self, Eip4527Error> {
        let mut r = Reader::new(SIGNATURE, data)?;
        let entries = r.map("map")?;
        let mut request_id = None;
        let mut signature = None;
        let mut origin = None;
        let mut last = 0;
        for _ in 0..entries {
            match r.key(&mut last)? {
                1 => request_id = Some(r.uuid("request-id")?),
                2 => {
                    let bytes = r.bytes("signature")?;
                    if !(65..=72).contains(&bytes.len()) {
                        return Err(r.invalid(
                            "signature",
                            format!("{} bytes, expected r ‖ s ‖ v (65 to 72)", bytes.len()),
                        ));
                    }
                    signature = Some(bytes.to_vec());
                }
                3 => origin = Some(r.text("origin")?),
                key => {
                    return Err(Eip4527Error::UnknownKey {
                        what: SIGNATURE,
                        key,
                    })
                }
            }
        }
        let missing = |key, field| Eip4527Error::MissingField {
            what: SIGNATURE,
            key,
            field,
        };
        let value = Self {
            request_id: request_id.ok_or_else(|| missing(1, "request-id"))?,
            signature: signature.ok_or_else(|| missing(2, "signature"))?,
            origin,
        };
        r.finish(data, &value.to_cbor())?;
        Ok(value)
    }

    /// A single-part UR, `ur:eth-signature/…`.
    pub fn to_ur(&self) -> String {
        ur_encode(&self.to_cbor(), ETH_SIGNATURE_UR_TYPE)
    }

    /// Decodes a single-part UR (either case).
    ///
    /// # Errors
    ///
    /// As [`EthSignRequest::from_ur`].
    pub fn from_ur(ur: &str) -> Result<Self, Eip4527Error> {
        Self::from_cbor(&ur_decode(ur, ETH_SIGNATURE_UR_TYPE)?)
    }
}

fn encode_keypath(
    e: &mut Encoder<Vec<u8>>,
    path: &KeyPath,
) -> Result<(), minicbor::encode::Error<std::convert::Infallible>> {
    let entries =
        1 + u64::from(path.source_fingerprint.is_some()) + u64::from(path.depth.is_some());
    e.map(entries)?;
    e.u8(1)?.array(2 * path.components.len() as u64)?;
    for c in &path.components {
        e.u32(c.index)?.bool(c.hardened)?;
    }
    if let Some(fp) = path.source_fingerprint {
        e.u8(2)?.u32(fp)?;
    }
    if let Some(depth) = path.depth {
        e.u8(3)?.u8(depth)?;
    }
    Ok(())
}

fn ur_encode(cbor: &[u8], ur_type: &str) -> String {
    ur::encode(cbor, &ur::Type::Custom(ur_type))
}

fn ur_parts(
    cbor: &[u8],
    ur_type: &str,
    max_fragment_len: usize,
) -> Result<Vec<String>, Eip4527Error> {
    let mut encoder = ur::Encoder::new(cbor, max_fragment_len, ur_type)
        .map_err(|e| Eip4527Error::Ur(e.to_string()))?;
    (0..encoder.fragment_count())
        .map(|_| {
            encoder
                .next_part()
                .map_err(|e| Eip4527Error::Ur(e.to_string()))
        })
        .collect()
}

fn ur_type_of(ur: &str) -> Result<String, Eip4527Error> {
    let lower = ur.trim().to_ascii_lowercase();
    let rest = lower
        .strip_prefix("ur:")
        .ok_or_else(|| Eip4527Error::Ur("does not start with ur:".into()))?;
    let (ty, _) = rest
        .split_once('/')
        .ok_or_else(|| Eip4527Error::Ur("no / after the UR type".into()))?;
    Ok(ty.to_owned())
}

fn ur_decode(ur: &str, expected: &'static str) -> Result<Vec<u8>, Eip4527Error> {
    if ur.len() > 4 * MAX_CBOR_LEN {
        return Err(Eip4527Error::Ur("longer than any accepted UR".into()));
    }
    let found = ur_type_of(ur)?;
    if found != expected {
        return Err(Eip4527Error::UrType { expected, found });
    }
    match ur::decode(ur.trim()).map_err(|e| Eip4527Error::Ur(e.to_string()))? {
        (ur::ur::Kind::SinglePart, cbor) => Ok(cbor),
        (ur::ur::Kind::MultiPart, _) => Err(Eip4527Error::Ur(
            "a multi-part UR fragment; collect all parts with from_ur_parts".into(),
        )),
    }
}

fn ur_collect<'a>(
    parts: impl IntoIterator<Item = &'a str>,
    expected: &'static str,
) -> Result<Vec<u8>, Eip4527Error> {
    let mut decoder = ur::Decoder::default();
    for part in parts {
        let found = ur_type_of(part)?;
        if found != expected {
            return Err(Eip4527Error::UrType { expected, found });
        }
        if let Ok(cbor) = ur_decode(part, expected) {
            // A single-part UR is the whole message.
            return Ok(cbor);
        }
        decoder
            .receive(&part.trim().to_ascii_lowercase())
            .map_err(|e| Eip4527Error::Ur(e.to_string()))?;
        if decoder.complete() {
            break;
        }
    }
    decoder
        .message()
        .map_err(|e| Eip4527Error::Ur(e.to_string()))?
        .ok_or_else(|| Eip4527Error::Ur("the parts do not complete the message".into()))
}

/// A strict CBOR reader with error context.
struct Reader<'b> {
    d: Decoder<'b>,
    what: &'static str,
}

fn type_name(t: Type) -> String {
    t.to_string()
}

impl<'b> Reader<'b> {
    fn new(what: &'static str, data: &'b [u8]) -> Result<Self, Eip4527Error> {
        if data.len() > MAX_CBOR_LEN {
            return Err(Eip4527Error::TooLong {
                what,
                found: data.len(),
            });
        }
        Ok(Self {
            d: Decoder::new(data),
            what,
        })
    }

    fn cbor(&self, field: &'static str, reason: impl Into<String>) -> Eip4527Error {
        Eip4527Error::Cbor {
            what: self.what,
            field,
            reason: reason.into(),
        }
    }

    fn invalid(&self, field: &'static str, reason: impl Into<String>) -> Eip4527Error {
        Eip4527Error::Invalid {
            what: self.what,
            field,
            reason: reason.into(),
        }
    }

    /// The type of the next item, which must be one of `allowed`.
    fn expect(
        &self,
        field: &'static str,
        expected: &str,
        allowed: &[Type],
    ) -> Result<(), Eip4527Error> {
        let t = self
            .d
            .datatype()
            .map_err(|e| self.cbor(field, e.to_string()))?;
        if allowed.contains(&t) {
            Ok(())
        } else {
            Err(self.cbor(
                field,
                format!("expected {expected}, found {}", type_name(t)),
            ))
        }
    }

    fn map(&mut self, field: &'static str) -> Result<u64, Eip4527Error> {
        self.expect(field, "a definite-length map", &[Type::Map])?;
        let len = self.d.map().map_err(|e| self.cbor(field, e.to_string()))?;
        len.ok_or_else(|| self.cbor(field, "indefinite-length map"))
    }

    fn key(&mut self, last: &mut u64) -> Result<u64, Eip4527Error> {
        let key = self.uint("map key")?;
        if key <= *last {
            return Err(Eip4527Error::KeyOrder {
                what: self.what,
                key,
            });
        }
        *last = key;
        Ok(key)
    }

    fn uint(&mut self, field: &'static str) -> Result<u64, Eip4527Error> {
        self.expect(
            field,
            "an unsigned integer",
            &[Type::U8, Type::U16, Type::U32, Type::U64],
        )?;
        self.d.u64().map_err(|e| self.cbor(field, e.to_string()))
    }

    fn bool(&mut self, field: &'static str) -> Result<bool, Eip4527Error> {
        self.expect(field, "a bool", &[Type::Bool])?;
        self.d.bool().map_err(|e| self.cbor(field, e.to_string()))
    }

    fn bytes(&mut self, field: &'static str) -> Result<&'b [u8], Eip4527Error> {
        self.expect(field, "a definite-length byte string", &[Type::Bytes])?;
        self.d.bytes().map_err(|e| self.cbor(field, e.to_string()))
    }

    fn text(&mut self, field: &'static str) -> Result<String, Eip4527Error> {
        self.expect(field, "a definite-length text string", &[Type::String])?;
        let s = self.d.str().map_err(|e| self.cbor(field, e.to_string()))?;
        if s.len() > MAX_ORIGIN_LEN {
            return Err(self.invalid(
                field,
                format!("{} bytes, at most {MAX_ORIGIN_LEN}", s.len()),
            ));
        }
        Ok(s.to_owned())
    }

    fn tag(&mut self, field: &'static str, expected: u64) -> Result<(), Eip4527Error> {
        self.expect(field, &format!("tag {expected}"), &[Type::Tag])?;
        let found = self
            .d
            .tag()
            .map_err(|e| self.cbor(field, e.to_string()))?
            .as_u64();
        if found == expected {
            Ok(())
        } else {
            Err(Eip4527Error::WrongTag {
                what: self.what,
                field,
                expected,
                found,
            })
        }
    }

    fn uuid(&mut self, field: &'static str) -> Result<[u8; 16], Eip4527Error> {
        self.tag(field, TAG_UUID)?;
        let bytes = self.bytes(field)?;
        bytes
            .try_into()
            .map_err(|_| self.invalid(field, format!("{} bytes, a UUID has 16", bytes.len())))
    }

    fn keypath(&mut self) -> Result<KeyPath, Eip4527Error> {
        const FIELD: &str = "derivation-path";
        let entries = self.map(FIELD)?;
        let mut path = KeyPath::default();
        let mut components = None;
        let mut last = 0;
        for _ in 0..entries {
            let key = self.uint(FIELD)?;
            if key <= last {
                return Err(self.invalid(FIELD, format!("key {key} repeated or out of order")));
            }
            last = key;
            match key {
                1 => {
                    self.expect(FIELD, "a definite-length array", &[Type::Array])?;
                    let len = self
                        .d
                        .array()
                        .map_err(|e| self.cbor(FIELD, e.to_string()))?
                        .ok_or_else(|| self.cbor(FIELD, "indefinite-length array"))?;
                    if len % 2 != 0 || len / 2 > MAX_PATH_COMPONENTS as u64 {
                        return Err(self.invalid(
                            FIELD,
                            format!("{len} items; components are (index, hardened) pairs, at most {MAX_PATH_COMPONENTS}"),
                        ));
                    }
                    let mut list = Vec::new();
                    for _ in 0..len / 2 {
                        let t = self
                            .d
                            .datatype()
                            .map_err(|e| self.cbor(FIELD, e.to_string()))?;
                        if matches!(t, Type::Array | Type::ArrayIndef) {
                            return Err(self.invalid(
                                FIELD,
                                "index ranges and wildcards are not a signing key's path",
                            ));
                        }
                        let index = self.uint(FIELD)?;
                        let index = u32::try_from(index)
                            .ok()
                            .filter(|i| *i < 0x8000_0000)
                            .ok_or_else(|| {
                                self.invalid(
                                    FIELD,
                                    format!("child index {index} is not below 2^31"),
                                )
                            })?;
                        let hardened = self.bool(FIELD)?;
                        list.push(PathComponent { index, hardened });
                    }
                    components = Some(list);
                }
                2 => {
                    let fp = self.uint(FIELD)?;
                    path.source_fingerprint = Some(
                        u32::try_from(fp)
                            .ok()
                            .filter(|fp| *fp != 0)
                            .ok_or_else(|| {
                                self.invalid(
                                    FIELD,
                                    format!("source fingerprint {fp} is not a non-zero uint32"),
                                )
                            })?,
                    );
                }
                3 => {
                    let depth = self.uint(FIELD)?;
                    path.depth = Some(u8::try_from(depth).map_err(|_| {
                        self.invalid(FIELD, format!("depth {depth} is not a uint8"))
                    })?);
                }
                key => return Err(self.invalid(FIELD, format!("unknown crypto-keypath key {key}"))),
            }
        }
        path.components = components
            .ok_or_else(|| self.invalid(FIELD, "crypto-keypath without components (key 1)"))?;
        Ok(path)
    }

    fn finish(&self, data: &[u8], reencoded: &[u8]) -> Result<(), Eip4527Error> {
        let end = self.d.position();
        if end < data.len() {
            return Err(Eip4527Error::TrailingBytes {
                what: self.what,
                count: data.len() - end,
            });
        }
        if reencoded != data {
            return Err(Eip4527Error::NonCanonical { what: self.what });
        }
        Ok(())
    }
}
