//! Ethereum transactions: EIP-1559 (type 2) and EIP-155 legacy, built or decoded from the
//! bytes a signer is shown, hashed by the signer itself, and signed with a normalised
//! (low-s) ECDSA signature.

use alloy_consensus::transaction::RlpEcdsaDecodableTx;
use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope, TxLegacy};
use alloy_eips::eip2718::{Decodable2718, Encodable2718};
use alloy_eips::eip2930::AccessList;
use alloy_eips::Typed2718;
use alloy_primitives::{Address, Bytes, Signature, TxKind, B256, U256};
use alloy_rlp::{Decodable, Header};

use crate::calldata::MAX_CALLDATA_LEN;

/// Longest encoded transaction accepted, in bytes (calldata limit plus room for the
/// other fields and an access list).
pub const MAX_TRANSACTION_LEN: usize = MAX_CALLDATA_LEN + 4096;

/// The gas every transaction pays before it executes anything (a plain transfer costs
/// exactly this).
pub const INTRINSIC_GAS: u64 = 21_000;

/// The secp256k1 group order `n`.
const SECP256K1_ORDER: U256 = U256::from_be_bytes([
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
    0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41,
]);

/// The transaction types the custody signer accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TxType {
    /// EIP-155 legacy transaction (with a chain id; pre-EIP-155 ones are refused).
    Legacy,
    /// EIP-1559 dynamic-fee transaction, EIP-2718 type 2.
    Eip1559,
}

impl TxType {
    /// A short name: `legacy (EIP-155)` or `EIP-1559`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Legacy => "legacy (EIP-155)",
            Self::Eip1559 => "EIP-1559",
        }
    }
}

/// The fields of an EIP-1559 transfer or contract call the coordinator builds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Eip1559Fields {
    /// EIP-155 chain id (1 mainnet, 11155111 Sepolia, 17000 Holesky, 31337 Hardhat).
    pub chain_id: u64,
    /// The sender account's nonce.
    pub nonce: u64,
    /// The recipient (for an ERC-20 transfer: the token contract).
    pub to: Address,
    /// Wei sent with the call.
    pub value: U256,
    /// Gas limit.
    pub gas_limit: u64,
    /// Maximum fee per gas, in wei.
    pub max_fee_per_gas: u128,
    /// Maximum priority fee (tip) per gas, in wei.
    pub max_priority_fee_per_gas: u128,
    /// Calldata (empty for a plain transfer).
    pub input: Bytes,
}

/// The fields of an EIP-155 legacy transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegacyFields {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// The sender account's nonce.
    pub nonce: u64,
    /// The recipient.
    pub to: Address,
    /// Wei sent with the call.
    pub value: U256,
    /// Gas limit.
    pub gas_limit: u64,
    /// Gas price, in wei.
    pub gas_price: u128,
    /// Calldata.
    pub input: Bytes,
}

/// Why a transaction's fields are not acceptable.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidTxError {
    /// Chain id 0 is not a chain; EIP-155 replay protection needs a real one.
    #[error("chain id 0 is not a chain (EIP-155 replay protection needs a real chain id)")]
    ZeroChainId,
    /// The tip is larger than the fee cap, which every node rejects.
    #[error("max priority fee {priority} wei per gas is above the max fee {max} wei per gas")]
    PriorityAboveMaxFee {
        /// Max priority fee per gas.
        priority: u128,
        /// Max fee per gas.
        max: u128,
    },
    /// Not even a plain transfer fits in the gas limit.
    #[error("gas limit {found} is below the {INTRINSIC_GAS} gas every transaction costs")]
    GasLimitTooLow {
        /// The gas limit.
        found: u64,
    },
    /// Calldata over [`MAX_CALLDATA_LEN`].
    #[error("calldata of {found} bytes is longer than the {MAX_CALLDATA_LEN} bytes accepted")]
    CalldataTooLong {
        /// Its length.
        found: usize,
    },
}

/// Why bytes are not an unsigned transaction the signer accepts.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeTxError {
    /// No bytes.
    #[error("empty transaction")]
    Empty,
    /// Longer than [`MAX_TRANSACTION_LEN`].
    #[error(
        "transaction of {found} bytes is longer than the {MAX_TRANSACTION_LEN} bytes accepted"
    )]
    TooLong {
        /// Its length.
        found: usize,
    },
    /// An EIP-2718 type other than 2 (EIP-1559).
    #[error("unsupported transaction type {0:#04x} (only EIP-1559 type 0x02 and EIP-155 legacy transactions are signed)")]
    UnsupportedType(u8),
    /// The RLP structure is broken.
    #[error("malformed {tx_type} transaction RLP: {reason}")]
    Rlp {
        /// Which transaction type was being read.
        tx_type: &'static str,
        /// The RLP decoder's message.
        reason: String,
    },
    /// Bytes after the transaction.
    #[error("{0} trailing bytes after the transaction")]
    TrailingBytes(usize),
    /// A legacy transaction without the EIP-155 chain id fields: valid on every chain.
    #[error("legacy transaction without an EIP-155 chain id (it would be valid on every chain)")]
    NoChainId,
    /// A legacy signing payload whose last two fields are not zero (a signed transaction?).
    #[error(
        "the EIP-155 fields after the chain id must be 0 and 0 (is this a signed transaction?)"
    )]
    NonZeroEip155Fields,
    /// A signed transaction where an unsigned one was expected, or the other way round.
    #[error("expected {expected} transaction")]
    WrongForm {
        /// `an unsigned` or `a signed`.
        expected: &'static str,
    },
    /// The bytes decode but are not the canonical encoding of what they decode to.
    #[error(
        "non-canonical transaction encoding (re-encoding the decoded fields gives different bytes)"
    )]
    NonCanonical,
    /// The fields are not acceptable.
    #[error(transparent)]
    Invalid(#[from] InvalidTxError),
}

/// Why a signature cannot be attached to a transaction.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureError {
    /// `r` or `s` is zero or not below the curve order.
    #[error("signature scalar {which} is zero or not below the secp256k1 order")]
    ScalarOutOfRange {
        /// `r` or `s`.
        which: &'static str,
    },
    /// No public key can be recovered from the signature.
    #[error("no public key can be recovered from the signature: {0}")]
    Unrecoverable(String),
    /// The signature does not belong to the expected account.
    #[error("the signature recovers to {recovered}, not the expected sender {expected}")]
    WrongSender {
        /// The account the signature must come from.
        expected: Address,
        /// The account it recovers to.
        recovered: Address,
    },
    /// Neither recovery id gives the expected account.
    #[error("the signature verifies for neither recovery id under the expected sender {expected}")]
    NotForSender {
        /// The account the signature must come from.
        expected: Address,
    },
    /// An EIP-4527 `v` value that does not fit the transaction.
    #[error("signature v {found} does not fit a {tx_type} transaction on chain {chain_id}")]
    BadV {
        /// The `v` value.
        found: u128,
        /// The transaction type.
        tx_type: &'static str,
        /// The transaction's chain id.
        chain_id: u64,
    },
}

/// A field where a transaction differs from what was requested.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error(
    "the transaction differs from the request in its {field}: requested {expected}, found {found}"
)]
#[non_exhaustive]
pub struct TamperedError {
    /// The first field that differs (`chain id`, `recipient`, `value`, ...).
    pub field: &'static str,
    /// The requested value.
    pub expected: String,
    /// The value in the transaction.
    pub found: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Inner {
    Eip1559(TxEip1559),
    Legacy(TxLegacy),
}

/// The hash tag of [`EthTransaction::intent_digest`].
pub const INTENT_TAG: &str = "CoinPort/ethereum/intent";

/// An unsigned Ethereum transaction the custody signer can show, hash and sign.
///
/// It holds the transaction itself, never a hash: the hash to sign
/// ([`EthTransaction::signing_hash`]) is always computed here from the fields that the
/// summary shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EthTransaction {
    inner: Inner,
}

impl EthTransaction {
    /// Builds an EIP-1559 transaction (empty access list).
    ///
    /// # Errors
    ///
    /// [`InvalidTxError`] for chain id 0, a tip above the fee cap, a gas limit below
    /// 21000, or oversized calldata.
    pub fn eip1559(fields: Eip1559Fields) -> Result<Self, InvalidTxError> {
        let tx = Self {
            inner: Inner::Eip1559(TxEip1559 {
                chain_id: fields.chain_id,
                nonce: fields.nonce,
                gas_limit: fields.gas_limit,
                max_fee_per_gas: fields.max_fee_per_gas,
                max_priority_fee_per_gas: fields.max_priority_fee_per_gas,
                to: TxKind::Call(fields.to),
                value: fields.value,
                access_list: AccessList::default(),
                input: fields.input,
            }),
        };
        tx.validate()?;
        Ok(tx)
    }

    /// Builds an EIP-155 legacy transaction.
    ///
    /// # Errors
    ///
    /// As [`EthTransaction::eip1559`].
    pub fn legacy(fields: LegacyFields) -> Result<Self, InvalidTxError> {
        let tx = Self {
            inner: Inner::Legacy(TxLegacy {
                chain_id: Some(fields.chain_id),
                nonce: fields.nonce,
                gas_price: fields.gas_price,
                gas_limit: fields.gas_limit,
                to: TxKind::Call(fields.to),
                value: fields.value,
                input: fields.input,
            }),
        };
        tx.validate()?;
        Ok(tx)
    }

    fn validate(&self) -> Result<(), InvalidTxError> {
        if self.chain_id() == 0 {
            return Err(InvalidTxError::ZeroChainId);
        }
        if let Inner::Eip1559(tx) = &self.inner {
            if tx.max_priority_fee_per_gas > tx.max_fee_per_gas {
                return Err(InvalidTxError::PriorityAboveMaxFee {
                    priority: tx.max_priority_fee_per_gas,
                    max: tx.max_fee_per_gas,
                });
            }
        }
        if self.gas_limit() < INTRINSIC_GAS {
            return Err(InvalidTxError::GasLimitTooLow {
                found: self.gas_limit(),
            });
        }
        if self.input().len() > MAX_CALLDATA_LEN {
            return Err(InvalidTxError::CalldataTooLong {
                found: self.input().len(),
            });
        }
        Ok(())
    }

    /// Decodes an unsigned transaction from the bytes that are hashed to sign it: the
    /// EIP-2718 form `0x02 || rlp([chain_id, nonce, max_priority_fee_per_gas,
    /// max_fee_per_gas, gas_limit, to, value, data, access_list])` for EIP-1559, or the
    /// EIP-155 signing payload `rlp([nonce, gas_price, gas_limit, to, value, data,
    /// chain_id, 0, 0])` for a legacy transaction. These are what EIP-4527 carries as
    /// `sign-data` (data types 4 and 1).
    ///
    /// The encoding must be canonical (re-encoding gives the same bytes), complete (no
    /// trailing bytes) and at most [`MAX_TRANSACTION_LEN`] long.
    ///
    /// # Errors
    ///
    /// [`DecodeTxError`] says what is wrong.
    pub fn decode_unsigned(bytes: &[u8]) -> Result<Self, DecodeTxError> {
        let first = *bytes.first().ok_or(DecodeTxError::Empty)?;
        if bytes.len() > MAX_TRANSACTION_LEN {
            return Err(DecodeTxError::TooLong { found: bytes.len() });
        }
        let inner = match first {
            0x02 => {
                let mut buf = &bytes[1..];
                let tx = TxEip1559::rlp_decode(&mut buf).map_err(|e| rlp("EIP-1559", e))?;
                if !buf.is_empty() {
                    return Err(DecodeTxError::TrailingBytes(buf.len()));
                }
                Inner::Eip1559(tx)
            }
            0xc0..=0xff => Inner::Legacy(decode_legacy_unsigned(bytes)?),
            other => return Err(DecodeTxError::UnsupportedType(other)),
        };
        let tx = Self { inner };
        if tx.encode_unsigned() != bytes {
            return Err(DecodeTxError::NonCanonical);
        }
        tx.validate()?;
        Ok(tx)
    }

    /// The bytes hashed for signing (the inverse of [`EthTransaction::decode_unsigned`]).
    pub fn encode_unsigned(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match &self.inner {
            Inner::Eip1559(tx) => tx.encode_for_signing(&mut out),
            Inner::Legacy(tx) => tx.encode_for_signing(&mut out),
        }
        out
    }

    /// The hash an ECDSA signer signs: keccak256 of [`EthTransaction::encode_unsigned`].
    pub fn signing_hash(&self) -> B256 {
        match &self.inner {
            Inner::Eip1559(tx) => tx.signature_hash(),
            Inner::Legacy(tx) => tx.signature_hash(),
        }
    }

    /// The transaction type.
    pub fn tx_type(&self) -> TxType {
        match &self.inner {
            Inner::Eip1559(_) => TxType::Eip1559,
            Inner::Legacy(_) => TxType::Legacy,
        }
    }

    /// The EIP-155 chain id.
    pub fn chain_id(&self) -> u64 {
        match &self.inner {
            Inner::Eip1559(tx) => tx.chain_id,
            // Decoding and building both require the chain id.
            Inner::Legacy(tx) => tx.chain_id.unwrap_or(0),
        }
    }

    /// The sender's nonce.
    pub fn nonce(&self) -> u64 {
        match &self.inner {
            Inner::Eip1559(tx) => tx.nonce,
            Inner::Legacy(tx) => tx.nonce,
        }
    }

    /// The recipient, or `None` for a contract creation.
    pub fn to(&self) -> Option<Address> {
        let kind = match &self.inner {
            Inner::Eip1559(tx) => tx.to,
            Inner::Legacy(tx) => tx.to,
        };
        kind.to().copied()
    }

    /// Wei sent.
    pub fn value(&self) -> U256 {
        match &self.inner {
            Inner::Eip1559(tx) => tx.value,
            Inner::Legacy(tx) => tx.value,
        }
    }

    /// The gas limit.
    pub fn gas_limit(&self) -> u64 {
        match &self.inner {
            Inner::Eip1559(tx) => tx.gas_limit,
            Inner::Legacy(tx) => tx.gas_limit,
        }
    }

    /// The most wei paid per gas: the max fee (EIP-1559) or the gas price (legacy).
    pub fn max_fee_per_gas(&self) -> u128 {
        match &self.inner {
            Inner::Eip1559(tx) => tx.max_fee_per_gas,
            Inner::Legacy(tx) => tx.gas_price,
        }
    }

    /// The max priority fee per gas (EIP-1559 only).
    pub fn max_priority_fee_per_gas(&self) -> Option<u128> {
        match &self.inner {
            Inner::Eip1559(tx) => Some(tx.max_priority_fee_per_gas),
            Inner::Legacy(_) => None,
        }
    }

    /// The number of access-list entries (EIP-1559; always 0 for legacy).
    pub fn access_list_len(&self) -> usize {
        match &self.inner {
            Inner::Eip1559(tx) => tx.access_list.len(),
            Inner::Legacy(_) => 0,
        }
    }

    /// The calldata.
    pub fn input(&self) -> &Bytes {
        match &self.inner {
            Inner::Eip1559(tx) => &tx.input,
            Inner::Legacy(tx) => &tx.input,
        }
    }

    /// What the transaction moves, apart from its nonce and fees: the tagged SHA-256
    /// (`SHA256(T ‖ T ‖ m)`, `T = SHA256("CoinPort/ethereum/intent")`) of the chain id (u64
    /// big-endian), the recipient (one byte 0 for a contract creation, else 1 and 20
    /// bytes), the value (32 bytes big-endian) and the calldata (u32 big-endian length,
    /// bytes).
    ///
    /// This is the transaction digest of an Ethereum withdrawal in the policy's
    /// `withdrawal_digest` and `Decision`: approvers approve *what* moves, to whom, on which
    /// chain, before the coordinator picks the nonce and fees at signing time (so that a
    /// withdrawal held for 48 hours does not hold up the account's nonce sequence). The
    /// signer recomputes it from the transaction it is shown, and shows and caps the fees
    /// itself.
    pub fn intent_digest(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let tag = Sha256::digest(INTENT_TAG.as_bytes());
        let mut h = Sha256::new();
        h.update(tag);
        h.update(tag);
        h.update(self.chain_id().to_be_bytes());
        match self.to() {
            Some(to) => {
                h.update([1]);
                h.update(to.as_slice());
            }
            None => h.update([0]),
        }
        h.update(self.value().to_be_bytes::<32>());
        let input = self.input();
        h.update(u32::try_from(input.len()).unwrap_or(u32::MAX).to_be_bytes());
        h.update(input);
        h.finalize().into()
    }

    /// Checks that this transaction is the one requested, field by field, and names the
    /// first field that differs: what a signer runs on the transaction it decoded from a
    /// signing request against the transaction an approved withdrawal describes.
    ///
    /// # Errors
    ///
    /// [`TamperedError`] naming the field, the requested and the found value.
    pub fn ensure_same_as(&self, requested: &EthTransaction) -> Result<(), TamperedError> {
        fn check<T: PartialEq + std::fmt::Debug>(
            field: &'static str,
            expected: T,
            found: T,
        ) -> Result<(), TamperedError> {
            if expected == found {
                Ok(())
            } else {
                Err(TamperedError {
                    field,
                    expected: format!("{expected:?}"),
                    found: format!("{found:?}"),
                })
            }
        }
        check("chain id", requested.chain_id(), self.chain_id())?;
        check("recipient", requested.to(), self.to())?;
        check("value", requested.value(), self.value())?;
        check("calldata", requested.input(), self.input())?;
        check("nonce", requested.nonce(), self.nonce())?;
        check("gas limit", requested.gas_limit(), self.gas_limit())?;
        check(
            "max fee per gas",
            requested.max_fee_per_gas(),
            self.max_fee_per_gas(),
        )?;
        check(
            "max priority fee per gas",
            requested.max_priority_fee_per_gas(),
            self.max_priority_fee_per_gas(),
        )?;
        check("type", requested.tx_type(), self.tx_type())?;
        check(
            "signing hash",
            requested.signing_hash(),
            self.signing_hash(),
        )
    }

    /// Attaches an ECDSA signature over [`EthTransaction::signing_hash`], normalised to
    /// low s (EIP-2: a high `s` is replaced by `n - s` and the parity flipped), and checks
    /// that a public key recovers from it.
    ///
    /// # Errors
    ///
    /// [`SignatureError::ScalarOutOfRange`] for `r` or `s` zero or not below the curve
    /// order, [`SignatureError::Unrecoverable`] when no key recovers.
    pub fn with_signature(
        &self,
        r: U256,
        s: U256,
        y_parity: bool,
    ) -> Result<SignedEthTransaction, SignatureError> {
        for (which, scalar) in [("r", r), ("s", s)] {
            if scalar.is_zero() || scalar >= SECP256K1_ORDER {
                return Err(SignatureError::ScalarOutOfRange { which });
            }
        }
        let signature = Signature::new(r, s, y_parity).normalized_s();
        let signed = SignedEthTransaction::from_parts(self.clone(), signature);
        signed.recover_sender()?;
        Ok(signed)
    }

    /// Attaches the signature `(r, s)` with the recovery id that makes it recover to
    /// `sender` (what a threshold ECDSA signature needs: the signers produce `r` and `s`,
    /// the recovery id is found against the group's address), normalised to low s.
    ///
    /// # Errors
    ///
    /// [`SignatureError::NotForSender`] when neither recovery id gives `sender` (the
    /// signature is not by that key, or not over this transaction), and the errors of
    /// [`EthTransaction::with_signature`].
    pub fn with_signature_for_sender(
        &self,
        r: U256,
        s: U256,
        sender: Address,
    ) -> Result<SignedEthTransaction, SignatureError> {
        for parity in [false, true] {
            let signed = self.with_signature(r, s, parity)?;
            if signed.recover_sender().ok() == Some(sender) {
                return Ok(signed);
            }
        }
        Err(SignatureError::NotForSender { expected: sender })
    }
}

fn rlp(tx_type: &'static str, e: alloy_rlp::Error) -> DecodeTxError {
    DecodeTxError::Rlp {
        tx_type,
        reason: e.to_string(),
    }
}

/// Reads the EIP-155 signing payload strictly: a list of exactly nine fields, chain id
/// present, the last two zero. (alloy's own `Decodable for TxLegacy` is deliberately
/// permissive about all three.)
fn decode_legacy_unsigned(bytes: &[u8]) -> Result<TxLegacy, DecodeTxError> {
    let mut buf = bytes;
    let header = Header::decode(&mut buf).map_err(|e| rlp("legacy", e))?;
    if !header.list {
        return Err(rlp("legacy", alloy_rlp::Error::UnexpectedString));
    }
    if header.payload_length > buf.len() {
        return Err(rlp("legacy", alloy_rlp::Error::InputTooShort));
    }
    let (mut payload, rest) = buf.split_at(header.payload_length);
    if !rest.is_empty() {
        return Err(DecodeTxError::TrailingBytes(rest.len()));
    }
    let mut tx = TxLegacy::rlp_decode_fields(&mut payload).map_err(|e| rlp("legacy", e))?;
    if payload.is_empty() {
        return Err(DecodeTxError::NoChainId);
    }
    let chain_id = u64::decode(&mut payload).map_err(|e| rlp("legacy", e))?;
    let zero_r = U256::decode(&mut payload).map_err(|e| rlp("legacy", e))?;
    let zero_s = U256::decode(&mut payload).map_err(|e| rlp("legacy", e))?;
    if !payload.is_empty() {
        return Err(rlp(
            "legacy",
            alloy_rlp::Error::ListLengthMismatch {
                expected: header.payload_length,
                got: header.payload_length + payload.len(),
            },
        ));
    }
    if !zero_r.is_zero() || !zero_s.is_zero() {
        return Err(DecodeTxError::NonZeroEip155Fields);
    }
    tx.chain_id = Some(chain_id);
    Ok(tx)
}

/// A signed transaction, ready for `eth_sendRawTransaction`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedEthTransaction {
    tx: EthTransaction,
    envelope: TxEnvelope,
}

impl SignedEthTransaction {
    fn from_parts(tx: EthTransaction, signature: Signature) -> Self {
        let envelope = match &tx.inner {
            Inner::Eip1559(inner) => TxEnvelope::from(inner.clone().into_signed(signature)),
            Inner::Legacy(inner) => TxEnvelope::from(inner.clone().into_signed(signature)),
        };
        Self { tx, envelope }
    }

    /// Decodes a signed EIP-1559 or EIP-155 legacy transaction (the raw transaction a
    /// node accepts), canonical and complete.
    ///
    /// # Errors
    ///
    /// [`DecodeTxError`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeTxError> {
        let first = *bytes.first().ok_or(DecodeTxError::Empty)?;
        if bytes.len() > MAX_TRANSACTION_LEN {
            return Err(DecodeTxError::TooLong { found: bytes.len() });
        }
        if !(first == 0x02 || first >= 0xc0) {
            return Err(DecodeTxError::UnsupportedType(first));
        }
        let tx_type = if first == 0x02 { "EIP-1559" } else { "legacy" };
        let mut buf = bytes;
        let envelope = TxEnvelope::decode_2718(&mut buf).map_err(|e| DecodeTxError::Rlp {
            tx_type,
            reason: e.to_string(),
        })?;
        if !buf.is_empty() {
            return Err(DecodeTxError::TrailingBytes(buf.len()));
        }
        let (inner, signature) = match &envelope {
            TxEnvelope::Eip1559(signed) => {
                (Inner::Eip1559(signed.tx().clone()), *signed.signature())
            }
            TxEnvelope::Legacy(signed) => {
                if signed.tx().chain_id.is_none() {
                    return Err(DecodeTxError::NoChainId);
                }
                (Inner::Legacy(signed.tx().clone()), *signed.signature())
            }
            other => return Err(DecodeTxError::UnsupportedType(other.ty())),
        };
        let tx = EthTransaction { inner };
        tx.validate()?;
        let decoded = Self::from_parts(tx, signature);
        if decoded.encoded() != bytes {
            return Err(DecodeTxError::NonCanonical);
        }
        Ok(decoded)
    }

    /// The unsigned transaction.
    pub fn transaction(&self) -> &EthTransaction {
        &self.tx
    }

    /// The signature (low s, with its recovery parity).
    pub fn signature(&self) -> Signature {
        *self.envelope.signature()
    }

    /// The EIP-2718 encoding: what `eth_sendRawTransaction` takes.
    pub fn encoded(&self) -> Vec<u8> {
        self.envelope.encoded_2718()
    }

    /// [`SignedEthTransaction::encoded`] as `0x`-prefixed lower-case hex.
    pub fn to_hex(&self) -> String {
        format!("0x{}", alloy_primitives::hex::encode(self.encoded()))
    }

    /// The transaction hash (keccak256 of the encoding), as block explorers show it.
    pub fn hash(&self) -> B256 {
        *self.envelope.tx_hash()
    }

    /// Recovers the sender's address with alloy (EIP-2: a high-s signature is refused).
    ///
    /// # Errors
    ///
    /// [`SignatureError::Unrecoverable`].
    pub fn recover_sender(&self) -> Result<Address, SignatureError> {
        use alloy_consensus::transaction::SignerRecoverable;
        self.envelope
            .recover_signer()
            .map_err(|e| SignatureError::Unrecoverable(e.to_string()))
    }

    /// Checks that the transaction is signed by `expected`.
    ///
    /// # Errors
    ///
    /// [`SignatureError::WrongSender`] naming both addresses, or
    /// [`SignatureError::Unrecoverable`].
    pub fn check_sender(&self, expected: Address) -> Result<(), SignatureError> {
        let recovered = self.recover_sender()?;
        if recovered == expected {
            Ok(())
        } else {
            Err(SignatureError::WrongSender {
                expected,
                recovered,
            })
        }
    }
}
