//! Signed, versioned envelopes: the unit of everything that crosses the air gap.
//!
//! Layout (all integers big-endian; see `docs/formats/envelope.md`):
//!
//! | field | size |
//! |---|---|
//! | magic `CPEN` | 4 |
//! | format version (1) | 1 |
//! | message type | 1 |
//! | flags (bit 0: payload age-encrypted) | 1 |
//! | session id | 16 |
//! | sender identity key (x-only BIP340) | 32 |
//! | sequence number | 8 |
//! | created at (Unix seconds) | 8 |
//! | expires at (Unix seconds) | 8 |
//! | recipient count, then each recipient's identity key | 1 + 32·k |
//! | payload length, payload | 4 + len |
//! | BIP340 signature by the sender over everything above | 64 |
//!
//! The signature is made in the [`SigningDomain::AirgapEnvelope`] domain, so an envelope
//! signature can never be taken for a ceremony message or a policy signature.

use std::collections::HashSet;
use std::str::FromStr;

use custody_threshold::{Identity, IdentityCard, SigningDomain};
use rand_core::{CryptoRng, RngCore};
use thiserror::Error;
use zeroize::Zeroizing;

/// The magic bytes that start every envelope.
pub const MAGIC: [u8; 4] = *b"CPEN";
/// The only envelope format version this build reads and writes.
pub const VERSION: u8 = 1;
/// Largest payload an envelope may carry (a large PSBT with its FROST fields, or a
/// 255-participant ceremony message, is far below this).
pub const MAX_PAYLOAD_LEN: usize = 8 * 1024 * 1024;
/// Most recipients of one encrypted envelope.
pub const MAX_RECIPIENTS: usize = 255;
/// How far in the future a `created_at` may be before it is refused (clock skew between
/// the coordinator and an offline laptop).
pub const MAX_CLOCK_SKEW_SECS: u64 = 10 * 60;

const HEADER_LEN: usize = 4 + 1 + 1 + 1 + 16 + 32 + 8 + 8 + 8;
const FLAG_ENCRYPTED: u8 = 0x01;

/// What an envelope carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EnvelopeType {
    /// A DKG, refresh or repair message (`custody_threshold::CeremonyMessage`).
    CeremonyMessage = 1,
    /// A batch of nonce commitments from a signer.
    CommitmentBatch = 2,
    /// A signing request from the coordinator.
    SigningRequest = 3,
    /// A signer's signature shares.
    SignatureShares = 4,
    /// A PSBT (BIP-174).
    Psbt = 5,
    /// An encrypted share backup.
    ShareBackup = 6,
    /// A group key (public).
    GroupKey = 7,
    /// A ceremony plan.
    CeremonyPlan = 8,
    /// An identity card.
    IdentityCard = 9,
}

impl EnvelopeType {
    /// Decodes a type byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::CeremonyMessage,
            2 => Self::CommitmentBatch,
            3 => Self::SigningRequest,
            4 => Self::SignatureShares,
            5 => Self::Psbt,
            6 => Self::ShareBackup,
            7 => Self::GroupKey,
            8 => Self::CeremonyPlan,
            9 => Self::IdentityCard,
            _ => return None,
        })
    }

    /// Whether this type must always be encrypted to its recipients.
    pub fn requires_encryption(self) -> bool {
        matches!(self, Self::ShareBackup)
    }

    /// A short name for file names and messages, e.g. `signing-request`.
    pub fn name(self) -> &'static str {
        match self {
            Self::CeremonyMessage => "ceremony-message",
            Self::CommitmentBatch => "commitments",
            Self::SigningRequest => "signing-request",
            Self::SignatureShares => "signature-shares",
            Self::Psbt => "psbt",
            Self::ShareBackup => "share-backup",
            Self::GroupKey => "group-key",
            Self::CeremonyPlan => "ceremony-plan",
            Self::IdentityCard => "identity-card",
        }
    }
}

/// The envelope fields other than payload and signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvelopeHeader {
    /// What the payload is.
    pub kind: EnvelopeType,
    /// The ceremony or signing session this belongs to.
    pub session_id: [u8; 16],
    /// The sender's identity key (x-only BIP340).
    pub sender: [u8; 32],
    /// The sender's sequence number within the session; never repeats.
    pub sequence: u64,
    /// When the sender made it (Unix seconds).
    pub created_at: u64,
    /// After this moment (Unix seconds) receivers refuse it.
    pub expires_at: u64,
    /// Identity keys of the recipients the payload is encrypted to (empty: not encrypted).
    pub recipients: Vec<[u8; 32]>,
}

impl EnvelopeHeader {
    /// Whether the payload is age-encrypted.
    pub fn is_encrypted(&self) -> bool {
        !self.recipients.is_empty()
    }
}

/// A decoded envelope whose signature has not been checked yet. Use a [`Receiver`] to
/// check and open it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    header: EnvelopeHeader,
    payload: Vec<u8>,
    signature: [u8; 64],
}

/// Why an envelope could not be decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not an envelope at all.
    #[error("not a CoinPort envelope (the file or frame does not start with \"CPEN\")")]
    BadMagic,
    /// A newer (or unknown) format.
    #[error("envelope format version {found} is not supported; this build reads version {VERSION}: update the software on this machine")]
    UnsupportedVersion {
        /// The version found.
        found: u8,
    },
    /// An unknown message type.
    #[error("unknown envelope message type {0}")]
    UnknownType(u8),
    /// Unknown flag bits are set.
    #[error("unknown envelope flags 0x{0:02x}")]
    UnknownFlags(u8),
    /// The encrypted flag and the recipient list disagree.
    #[error("envelope says it is {} but lists {recipients} recipients", if *.encrypted { "encrypted" } else { "not encrypted" })]
    InconsistentEncryption {
        /// The flag.
        encrypted: bool,
        /// Recipients listed.
        recipients: usize,
    },
    /// The input ends early.
    #[error("envelope is truncated: {what} is incomplete (was the file fully copied, or the QR scan complete?)")]
    Truncated {
        /// The field being read.
        what: &'static str,
    },
    /// The payload is larger than allowed.
    #[error("envelope payload of {len} bytes exceeds the maximum of {MAX_PAYLOAD_LEN}")]
    TooLarge {
        /// The declared length.
        len: usize,
    },
    /// Bytes follow the signature.
    #[error("{0} unexpected bytes after the envelope signature")]
    TrailingBytes(usize),
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.data.len() - self.pos < n {
            return Err(DecodeError::Truncated { what });
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }
}

fn encode_signed_part(header: &EnvelopeHeader, payload: &[u8]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(HEADER_LEN + 1 + 32 * header.recipients.len() + 4 + payload.len() + 64);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(header.kind as u8);
    out.push(if header.is_encrypted() {
        FLAG_ENCRYPTED
    } else {
        0
    });
    out.extend_from_slice(&header.session_id);
    out.extend_from_slice(&header.sender);
    out.extend_from_slice(&header.sequence.to_be_bytes());
    out.extend_from_slice(&header.created_at.to_be_bytes());
    out.extend_from_slice(&header.expires_at.to_be_bytes());
    out.push(header.recipients.len() as u8);
    for r in &header.recipients {
        out.extend_from_slice(r);
    }
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Why an envelope could not be sealed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SealError {
    /// The type must be encrypted but no recipient was given.
    #[error("a {} must be encrypted to at least one recipient", .0.name())]
    EncryptionRequired(EnvelopeType),
    /// Too many recipients.
    #[error("at most {MAX_RECIPIENTS} recipients")]
    TooManyRecipients,
    /// The payload is too large.
    #[error("payload of {0} bytes exceeds the maximum of {MAX_PAYLOAD_LEN}")]
    TooLarge(usize),
    /// The expiry is not after the creation time.
    #[error("expiry must be after the creation time")]
    BadExpiry,
    /// age could not encrypt to a recipient.
    #[error("cannot encrypt to recipient {0}")]
    Encrypt(String),
}

/// What to put in an envelope, apart from the payload.
#[derive(Clone, Debug)]
pub struct SealParams<'a> {
    /// What the payload is.
    pub kind: EnvelopeType,
    /// The session it belongs to.
    pub session_id: [u8; 16],
    /// The sender's next sequence number in this session.
    pub sequence: u64,
    /// Now (Unix seconds).
    pub created_at: u64,
    /// Expiry (Unix seconds).
    pub expires_at: u64,
    /// Recipients to encrypt to; empty to send in the clear.
    pub recipients: &'a [IdentityCard],
}

impl Envelope {
    /// Builds and signs an envelope from `identity`, encrypting `payload` with age to every
    /// recipient when any are given.
    ///
    /// # Errors
    /// A [`SealError`] when the parameters are inconsistent.
    pub fn seal<R: RngCore + CryptoRng>(
        identity: &Identity,
        params: &SealParams<'_>,
        payload: &[u8],
        rng: &mut R,
    ) -> Result<Self, SealError> {
        if params.recipients.is_empty() && params.kind.requires_encryption() {
            return Err(SealError::EncryptionRequired(params.kind));
        }
        if params.recipients.len() > MAX_RECIPIENTS {
            return Err(SealError::TooManyRecipients);
        }
        if params.expires_at <= params.created_at {
            return Err(SealError::BadExpiry);
        }
        let body = if params.recipients.is_empty() {
            payload.to_vec()
        } else {
            let recipients = params
                .recipients
                .iter()
                .map(|c| {
                    age::x25519::Recipient::from_str(c.age_recipient())
                        .map(|r| Box::new(r) as Box<dyn age::Recipient + Send>)
                        .map_err(|_| SealError::Encrypt(c.name().to_owned()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            encrypt(recipients, payload).map_err(|_| SealError::Encrypt("all".into()))?
        };
        if body.len() > MAX_PAYLOAD_LEN {
            return Err(SealError::TooLarge(body.len()));
        }
        let header = EnvelopeHeader {
            kind: params.kind,
            session_id: params.session_id,
            sender: *identity.card().signing_key(),
            sequence: params.sequence,
            created_at: params.created_at,
            expires_at: params.expires_at,
            recipients: params.recipients.iter().map(|c| *c.signing_key()).collect(),
        };
        let signed = encode_signed_part(&header, &body);
        let signature = identity.sign_in_domain(SigningDomain::AirgapEnvelope, &signed, rng);
        Ok(Envelope {
            header,
            payload: body,
            signature,
        })
    }

    /// The header (unverified until opened by a [`Receiver`]).
    pub fn header(&self) -> &EnvelopeHeader {
        &self.header
    }

    /// Encodes the envelope.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = encode_signed_part(&self.header, &self.payload);
        out.extend_from_slice(&self.signature);
        out
    }

    /// Decodes an envelope's structure. Nothing is trusted until a [`Receiver`] opens it.
    ///
    /// # Errors
    /// A [`DecodeError`] saying what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut c = Cursor {
            data: bytes,
            pos: 0,
        };
        if c.array::<4>("magic").map_err(|_| DecodeError::BadMagic)? != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let version = c.array::<1>("version")?[0];
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion { found: version });
        }
        let type_byte = c.array::<1>("message type")?[0];
        let kind = EnvelopeType::from_byte(type_byte).ok_or(DecodeError::UnknownType(type_byte))?;
        let flags = c.array::<1>("flags")?[0];
        if flags & !FLAG_ENCRYPTED != 0 {
            return Err(DecodeError::UnknownFlags(flags));
        }
        let session_id = c.array("session id")?;
        let sender = c.array("sender")?;
        let sequence = c.u64("sequence number")?;
        let created_at = c.u64("creation time")?;
        let expires_at = c.u64("expiry time")?;
        let count = usize::from(c.array::<1>("recipient count")?[0]);
        let recipients = (0..count)
            .map(|_| c.array::<32>("recipient"))
            .collect::<Result<Vec<_>, _>>()?;
        let encrypted = flags & FLAG_ENCRYPTED != 0;
        if encrypted == recipients.is_empty() {
            return Err(DecodeError::InconsistentEncryption {
                encrypted,
                recipients: recipients.len(),
            });
        }
        let len = u32::from_be_bytes(c.array("payload length")?) as usize;
        if len > MAX_PAYLOAD_LEN {
            return Err(DecodeError::TooLarge { len });
        }
        let payload = c.take(len, "payload")?.to_vec();
        let signature = c.array("signature")?;
        let rest = bytes.len() - c.pos;
        if rest != 0 {
            return Err(DecodeError::TrailingBytes(rest));
        }
        Ok(Envelope {
            header: EnvelopeHeader {
                kind,
                session_id,
                sender,
                sequence,
                created_at,
                expires_at,
                recipients,
            },
            payload,
            signature,
        })
    }
}

fn encrypt(
    recipients: Vec<Box<dyn age::Recipient + Send>>,
    plaintext: &[u8],
) -> Result<Vec<u8>, ()> {
    use std::io::Write;
    let encryptor = age::Encryptor::with_recipients(recipients.iter().map(|r| r.as_ref() as _))
        .map_err(|_| ())?;
    let mut out = Vec::with_capacity(plaintext.len() + 256);
    let mut writer = encryptor.wrap_output(&mut out).map_err(|_| ())?;
    writer.write_all(plaintext).map_err(|_| ())?;
    writer.finish().map_err(|_| ())?;
    Ok(out)
}

/// Records which (sender, session, sequence) triples were accepted, so a replay is refused.
///
/// A signer persists this across restarts; [`MemoryReplayGuard`] is for one process and
/// for tests, and `file::FileReplayGuard` is durable.
pub trait ReplayGuard {
    /// The store's I/O error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Whether the triple was accepted before.
    ///
    /// # Errors
    /// The store's error.
    fn seen(
        &self,
        sender: &[u8; 32],
        session: &[u8; 16],
        sequence: u64,
    ) -> Result<bool, Self::Error>;

    /// Records the triple as accepted; durable before it returns for persistent guards.
    ///
    /// # Errors
    /// The store's error.
    fn record(
        &mut self,
        sender: &[u8; 32],
        session: &[u8; 16],
        sequence: u64,
    ) -> Result<(), Self::Error>;
}

/// A [`ReplayGuard`] in memory.
#[derive(Debug, Default)]
pub struct MemoryReplayGuard(HashSet<([u8; 32], [u8; 16], u64)>);

impl ReplayGuard for MemoryReplayGuard {
    type Error = std::convert::Infallible;

    fn seen(
        &self,
        sender: &[u8; 32],
        session: &[u8; 16],
        sequence: u64,
    ) -> Result<bool, Self::Error> {
        Ok(self.0.contains(&(*sender, *session, sequence)))
    }

    fn record(
        &mut self,
        sender: &[u8; 32],
        session: &[u8; 16],
        sequence: u64,
    ) -> Result<(), Self::Error> {
        self.0.insert((*sender, *session, sequence));
        Ok(())
    }
}

/// Why a receiver refused an envelope. Each message says what a key holder should do.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OpenError<E: std::error::Error + 'static> {
    /// The bytes are not a well-formed envelope.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The envelope belongs to another session.
    #[error("this envelope belongs to session {found}, not to the current session {expected}; check you picked the right file or screen")]
    WrongSession {
        /// The session being run.
        expected: String,
        /// The envelope's session.
        found: String,
    },
    /// The sender is not one of the participants this receiver trusts.
    #[error("envelope is signed by an unknown key {0}; it does not come from a participant of this session")]
    UnknownSender(String),
    /// The signature does not verify.
    #[error("envelope signature from {0} does not verify: the data was altered or forged; do not use it")]
    BadSignature(String),
    /// The envelope is of a type this step does not accept.
    #[error("expected a {expected} envelope, got a {found}")]
    WrongType {
        /// The type this step accepts.
        expected: &'static str,
        /// The type found.
        found: &'static str,
    },
    /// Expired.
    #[error("envelope from {sender} expired at {expires_at} (now {now}); ask for a fresh one")]
    Expired {
        /// The sender's name.
        sender: String,
        /// Its expiry.
        expires_at: u64,
        /// The receiver's clock.
        now: u64,
    },
    /// Created in the future beyond the allowed clock skew.
    #[error("envelope from {sender} claims to be created at {created_at}, after now ({now}); check this machine's clock")]
    FromTheFuture {
        /// The sender's name.
        sender: String,
        /// Its creation time.
        created_at: u64,
        /// The receiver's clock.
        now: u64,
    },
    /// The same sender, session and sequence were accepted before.
    #[error("replay: envelope {sequence} from {sender} in this session was already received; ignoring it")]
    Replay {
        /// The sender's name.
        sender: String,
        /// The sequence number.
        sequence: u64,
    },
    /// The payload is encrypted but not to us.
    #[error("envelope from {0} is encrypted to other recipients, not to this machine")]
    NotForUs(String),
    /// Decryption failed.
    #[error("envelope from {0} does not decrypt: it was altered, or this is the wrong identity")]
    Decrypt(String),
    /// The replay guard failed; nothing was accepted.
    #[error("replay log failed")]
    Guard(#[source] E),
}

/// An envelope that passed every check.
#[derive(Debug)]
pub struct Opened {
    /// The verified header.
    pub header: EnvelopeHeader,
    /// The sender's card.
    pub sender: IdentityCard,
    /// The payload, decrypted when it was encrypted.
    pub payload: Zeroizing<Vec<u8>>,
}

/// Checks and opens envelopes for one session.
#[derive(Debug)]
pub struct Receiver<'a, G> {
    session_id: [u8; 16],
    trusted: &'a [IdentityCard],
    identity: Option<&'a Identity>,
    guard: G,
}

impl<'a, G: ReplayGuard> Receiver<'a, G> {
    /// A receiver for `session_id` that accepts envelopes signed by `trusted` cards and
    /// decrypts with `identity` (if this machine has one).
    pub fn new(
        session_id: [u8; 16],
        trusted: &'a [IdentityCard],
        identity: Option<&'a Identity>,
        guard: G,
    ) -> Self {
        Receiver {
            session_id,
            trusted,
            identity,
            guard,
        }
    }

    /// The replay guard, e.g. to persist or inspect it.
    pub fn guard(&self) -> &G {
        &self.guard
    }

    /// Checks `bytes` completely and, only if every check passes, records its sequence
    /// number and returns the payload.
    ///
    /// Checks, in order: structure and version, session, sender, signature, expected type,
    /// time window, replay, decryption.
    ///
    /// # Errors
    /// An [`OpenError`] saying what is wrong; nothing is recorded.
    pub fn open(
        &mut self,
        bytes: &[u8],
        expected: Option<EnvelopeType>,
        now: u64,
    ) -> Result<Opened, OpenError<G::Error>> {
        let env = Envelope::decode(bytes)?;
        let h = &env.header;
        if h.session_id != self.session_id {
            return Err(OpenError::WrongSession {
                expected: hex::encode(self.session_id),
                found: hex::encode(h.session_id),
            });
        }
        let sender = self
            .trusted
            .iter()
            .find(|c| c.signing_key() == &h.sender)
            .ok_or_else(|| OpenError::UnknownSender(hex::encode(h.sender)))?;
        let signed = encode_signed_part(h, &env.payload);
        if !sender.verify_in_domain(SigningDomain::AirgapEnvelope, &signed, &env.signature) {
            return Err(OpenError::BadSignature(sender.name().to_owned()));
        }
        if let Some(expected) = expected {
            if expected != h.kind {
                return Err(OpenError::WrongType {
                    expected: expected.name(),
                    found: h.kind.name(),
                });
            }
        }
        if now >= h.expires_at {
            return Err(OpenError::Expired {
                sender: sender.name().to_owned(),
                expires_at: h.expires_at,
                now,
            });
        }
        if h.created_at > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(OpenError::FromTheFuture {
                sender: sender.name().to_owned(),
                created_at: h.created_at,
                now,
            });
        }
        if self
            .guard
            .seen(&h.sender, &h.session_id, h.sequence)
            .map_err(OpenError::Guard)?
        {
            return Err(OpenError::Replay {
                sender: sender.name().to_owned(),
                sequence: h.sequence,
            });
        }
        let payload = if h.is_encrypted() {
            let identity = self
                .identity
                .filter(|id| h.recipients.contains(id.card().signing_key()))
                .ok_or_else(|| OpenError::NotForUs(sender.name().to_owned()))?;
            identity
                .decrypt(&env.payload)
                .map_err(|_| OpenError::Decrypt(sender.name().to_owned()))?
        } else {
            Zeroizing::new(env.payload.clone())
        };
        self.guard
            .record(&h.sender, &h.session_id, h.sequence)
            .map_err(OpenError::Guard)?;
        Ok(Opened {
            header: env.header.clone(),
            sender: sender.clone(),
            payload,
        })
    }
}
