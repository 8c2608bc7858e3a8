//! Long-term participant identities and their public identity cards.
//!
//! An [`Identity`] holds two secrets: a BIP340 key that signs every ceremony message the
//! participant sends, and an age X25519 key that decrypts what is sent to it. Its
//! [`IdentityCard`] is the public half that goes into a ceremony plan, with a fingerprint
//! short enough for key holders to read aloud to each other.

use std::fmt;
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use bitcoin::bech32::{self, Bech32, Hrp};
use k256::schnorr::SigningKey;
use rand_core::{CryptoRng, RngCore};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::codec::{tagged_hash, DecodeError, Reader, TypeTag, Writer};

/// Longest name a card may carry, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Why an identity could not be created or used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The display name is empty, too long or contains control characters.
    #[error("participant name must be 1 to {MAX_NAME_LEN} bytes of printable text")]
    BadName,
    /// Decryption failed: the payload was not encrypted to this identity or was altered.
    #[error("cannot decrypt: the payload is not addressed to this identity or was altered")]
    Decrypt,
    /// Encryption failed.
    #[error("cannot encrypt to the recipient's age key")]
    Encrypt,
}

/// What an identity signature is for. Each domain hashes with its own BIP340 tag, so a
/// signature made in one domain never verifies in another (nor as a ceremony message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SigningDomain {
    /// An air-gap envelope (`custody-airgap`).
    AirgapEnvelope,
    /// A policy document, decision or approval (`custody-policy`).
    Policy,
    /// A threshold-ECDSA ceremony message (`custody-ecdsa`).
    EcdsaCeremony,
}

impl SigningDomain {
    fn tag(self) -> &'static str {
        match self {
            SigningDomain::AirgapEnvelope => "CoinPort/airgap-envelope",
            SigningDomain::Policy => "CoinPort/policy",
            SigningDomain::EcdsaCeremony => "CoinPort/ecdsa-ceremony",
        }
    }
}

/// A participant's secret identity: a BIP340 signing key and an age X25519 identity.
///
/// Zeroized on drop; `Debug` prints `<redacted>`; no `Clone`, no `Serialize`. The only
/// export is [`Identity::to_secret_bytes`], for the encrypted keystore.
pub struct Identity {
    name: String,
    signing: SigningKey,
    age: age::x25519::Identity,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("name", &self.name)
            .field("secrets", &"<redacted>")
            .finish()
    }
}

fn check_name(name: &str) -> Result<(), IdentityError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(IdentityError::BadName);
    }
    Ok(())
}

fn age_identity_from_bytes(bytes: &[u8; 32]) -> age::x25519::Identity {
    let hrp = Hrp::parse("age-secret-key-").expect("constant HRP is valid");
    let encoded = Zeroizing::new(
        bech32::encode::<Bech32>(hrp, bytes)
            .expect("32 bytes always fit in a bech32 string")
            .to_uppercase(),
    );
    age::x25519::Identity::from_str(&encoded).expect("a bech32-encoded 32-byte key is valid")
}

impl Identity {
    /// Creates a new identity from the given random source.
    ///
    /// # Errors
    /// [`IdentityError::BadName`] for an empty, over-long or non-printable name.
    pub fn generate<R: RngCore + CryptoRng>(
        name: &str,
        rng: &mut R,
    ) -> Result<Self, IdentityError> {
        check_name(name)?;
        let signing = SigningKey::random(rng);
        let mut age_bytes = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(age_bytes.as_mut());
        Ok(Identity {
            name: name.to_owned(),
            signing,
            age: age_identity_from_bytes(&age_bytes),
        })
    }

    /// The display name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public identity card.
    pub fn card(&self) -> IdentityCard {
        IdentityCard {
            name: self.name.clone(),
            signing_key: self.signing.verifying_key().to_bytes().into(),
            age_recipient: self.age.to_public().to_string(),
        }
    }

    /// Signs `message` (BIP340) with the identity key.
    pub(crate) fn sign<R: RngCore + CryptoRng>(&self, message: &[u8], rng: &mut R) -> [u8; 64] {
        let mut aux = [0u8; 32];
        rng.fill_bytes(&mut aux);
        crate::bip340::sign_with_key(&self.signing, message, &aux)
            .expect("a valid key signs with probability 1 - 2^-256")
    }

    /// Signs `message` in `domain`: a BIP340 signature over the domain's tagged hash of
    /// `message`.
    pub fn sign_in_domain<R: RngCore + CryptoRng>(
        &self,
        domain: SigningDomain,
        message: &[u8],
        rng: &mut R,
    ) -> [u8; 64] {
        self.sign(&tagged_hash(domain.tag(), &[message]), rng)
    }

    /// Decrypts an age ciphertext addressed to this identity.
    ///
    /// # Errors
    /// [`IdentityError::Decrypt`] when the ciphertext is not for this identity or was
    /// altered.
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, IdentityError> {
        age::decrypt(&self.age, ciphertext)
            .map(Zeroizing::new)
            .map_err(|_| IdentityError::Decrypt)
    }

    /// Exports the secrets for the encrypted keystore.
    ///
    /// # Security
    /// The result is the whole identity in the clear. Encrypt it before it touches a disk.
    pub fn to_secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::new(TypeTag::Identity);
        w.var(self.name.as_bytes());
        w.fixed(self.signing.to_bytes().as_slice());
        let age_secret = self.age.to_string();
        w.var(age_secret.expose_secret().as_bytes());
        Zeroizing::new(w.finish())
    }

    /// Restores an identity from [`Identity::to_secret_bytes`] output.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the malformed field.
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, TypeTag::Identity)?;
        let name = r.string("name", MAX_NAME_LEN)?;
        check_name(&name).map_err(|e| DecodeError::invalid("name", e))?;
        let sk = Zeroizing::new(r.array::<32>("signing key")?);
        let signing = SigningKey::from_bytes(sk.as_slice())
            .map_err(|_| DecodeError::invalid("signing key", "not a valid secret key"))?;
        let age_secret = Zeroizing::new(r.string("age identity", 128)?);
        let age = age::x25519::Identity::from_str(&age_secret)
            .map_err(|_| DecodeError::invalid("age identity", "not an age X25519 identity"))?;
        r.finish()?;
        Ok(Identity { name, signing, age })
    }
}

/// The public half of an [`Identity`]: name, BIP340 key and age recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityCard {
    name: String,
    signing_key: [u8; 32],
    age_recipient: String,
}

impl IdentityCard {
    /// The display name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The x-only BIP340 public key that signs this participant's messages.
    pub fn signing_key(&self) -> &[u8; 32] {
        &self.signing_key
    }

    /// The age X25519 recipient (`age1…`) that confidential messages are encrypted to.
    pub fn age_recipient(&self) -> &str {
        &self.age_recipient
    }

    /// A fingerprint for humans to compare: 80 bits as five groups of four hex digits,
    /// e.g. `3F2A-91BC-0D4E-77A1-C5E0`.
    pub fn fingerprint(&self) -> String {
        let digest = tagged_hash("CoinPort/identity-fingerprint", &[&self.encode()]);
        let hex = hex::encode_upper(&digest[..10]);
        let groups: Vec<&str> = (0..5).map(|i| &hex[i * 4..i * 4 + 4]).collect();
        groups.join("-")
    }

    /// Verifies a BIP340 signature by this card's signing key.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        crate::bip340::verify(&self.signing_key, message, signature).is_ok()
    }

    /// Verifies a signature made with [`Identity::sign_in_domain`].
    pub fn verify_in_domain(
        &self,
        domain: SigningDomain,
        message: &[u8],
        signature: &[u8; 64],
    ) -> bool {
        self.verify(&tagged_hash(domain.tag(), &[message]), signature)
    }

    /// Encrypts `plaintext` to this card's age recipient.
    pub(crate) fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, IdentityError> {
        let recipient = age::x25519::Recipient::from_str(&self.age_recipient)
            .map_err(|_| IdentityError::Encrypt)?;
        age::encrypt(&recipient, plaintext).map_err(|_| IdentityError::Encrypt)
    }

    /// Encodes the card (see `docs/formats/threshold.md`).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(TypeTag::IdentityCard);
        self.write(&mut w);
        w.finish()
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.var(self.name.as_bytes());
        w.fixed(&self.signing_key);
        w.var(self.age_recipient.as_bytes());
    }

    /// Decodes and validates a card.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the malformed field.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, TypeTag::IdentityCard)?;
        let card = Self::read(&mut r)?;
        r.finish()?;
        Ok(card)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let name = r.string("participant name", MAX_NAME_LEN)?;
        check_name(&name).map_err(|e| DecodeError::invalid("participant name", e))?;
        let signing_key = r.array::<32>("identity signing key")?;
        k256::schnorr::VerifyingKey::from_bytes(&signing_key).map_err(|_| {
            DecodeError::invalid("identity signing key", "not an x-only secp256k1 point")
        })?;
        let age_recipient = r.string("age recipient", 128)?;
        let parsed = age::x25519::Recipient::from_str(&age_recipient)
            .map_err(|_| DecodeError::invalid("age recipient", "not an age X25519 recipient"))?;
        if parsed.to_string() != age_recipient {
            // One key, one encoding: otherwise the same key could carry two fingerprints
            // and slip past the plan's duplicate check.
            return Err(DecodeError::invalid(
                "age recipient",
                "not in canonical lower-case form",
            ));
        }
        Ok(IdentityCard {
            name,
            signing_key,
            age_recipient,
        })
    }
}
