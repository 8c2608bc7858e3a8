//! The signer home directory and the secrets in it.

use std::fs;
use std::io::{BufRead, BufReader, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use custody_airgap::file::{read_bounded, write_new};
use custody_keystore::{write_new_private, Keystore, SecretString, MAX_SCRYPT_LOG_N, SECRETS_FILE};
use custody_threshold::{GroupKey, Identity, IdentityCard};
use rand_core::OsRng;
use serde_json::json;
use zeroize::Zeroizing;

use crate::config::{Config, PassphraseSource};
use crate::output::Output;

/// The public identity card file.
pub const CARD_FILE: &str = "identity.card";
/// The encrypted identity secret, kept until a key share exists.
pub const IDENTITY_FILE: &str = "identity.age";
/// The keystore directory.
pub const KEYSTORE_DIR: &str = "keystore";
/// The public group key.
pub const GROUP_FILE: &str = "group.key";
/// The certified DKG transcript hash, hex.
pub const TRANSCRIPT_FILE: &str = "dkg-transcript.txt";

/// A signer home directory.
#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
}

/// Reads the passphrase from its source.
pub(crate) fn passphrase(source: &PassphraseSource, confirm: bool) -> Result<SecretString> {
    let pass = match source {
        PassphraseSource::File(path) => {
            let f = fs::File::open(path).with_context(|| {
                format!(
                    "cannot open the passphrase file {}; check the path",
                    path.display()
                )
            })?;
            let mut line = Zeroizing::new(String::new());
            BufReader::new(f).read_line(&mut line)?;
            Zeroizing::new(line.trim_end_matches(['\n', '\r']).to_owned())
        }
        PassphraseSource::Tty => {
            if !std::io::stdin().is_terminal() {
                bail!("no passphrase: run on a terminal to be prompted, or pass --passphrase-file PATH");
            }
            let first = Zeroizing::new(rpassword::prompt_password("Passphrase: ")?);
            if confirm {
                let again = Zeroizing::new(rpassword::prompt_password("Repeat passphrase: ")?);
                if *first != *again {
                    bail!("the passphrases do not match; run the command again");
                }
            }
            first
        }
    };
    if pass.is_empty() {
        bail!("the passphrase is empty; choose a passphrase (and write it down safely)");
    }
    Ok(SecretString::from(pass.to_string()))
}

impl Home {
    /// The home at `dir` (which may not exist yet).
    pub fn new(dir: &Path) -> Self {
        Home {
            dir: dir.to_owned(),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The keystore directory.
    pub fn keystore_dir(&self) -> PathBuf {
        self.dir.join(KEYSTORE_DIR)
    }

    /// Whether a key share has been stored.
    pub fn has_share(&self) -> bool {
        self.keystore_dir().join(SECRETS_FILE).exists()
    }

    /// Reads the public identity card.
    ///
    /// # Errors
    /// When there is no readable card.
    pub fn card(&self) -> Result<(PathBuf, IdentityCard)> {
        let path = self.dir.join(CARD_FILE);
        if !path.exists() {
            bail!(
                "there is no identity in {}; run `custody-signer identity create --name NAME` first (or pass the right --home)",
                self.dir.display()
            );
        }
        let bytes = read_bounded(&path)
            .with_context(|| format!("cannot read {}; check its permissions", path.display()))?;
        let card = IdentityCard::decode(&bytes).with_context(|| {
            format!(
                "{} is not an identity card; restore it from your records",
                path.display()
            )
        })?;
        Ok((path, card))
    }

    /// Reads the public group key, if the DKG has completed.
    ///
    /// # Errors
    /// When there is no group key or it does not decode.
    pub fn group(&self) -> Result<GroupKey> {
        let path = self.dir.join(GROUP_FILE);
        if !path.exists() {
            bail!(
                "this signer holds no key share yet; run `custody-signer dkg join --plan PLAN --usb DIR` first"
            );
        }
        let bytes = read_bounded(&path)
            .with_context(|| format!("cannot read {}; check its permissions", path.display()))?;
        GroupKey::decode(&bytes).with_context(|| {
            format!(
                "{} is not a group key; restore it from your ceremony records",
                path.display()
            )
        })
    }

    /// Unlocks the identity: from the keystore once a share exists, else from
    /// `identity.age`.
    ///
    /// # Errors
    /// Wrong passphrase, missing or damaged files.
    pub fn unlock_identity(&self, pass: &SecretString) -> Result<Identity> {
        if self.has_share() {
            let ks = self.open_keystore(pass)?;
            return Identity::from_secret_bytes(&ks.identity().to_secret_bytes())
                .context("the keystore holds no valid identity; restore it from a share backup");
        }
        let path = self.dir.join(IDENTITY_FILE);
        self.card()?;
        let ciphertext = read_bounded(&path)
            .with_context(|| format!("cannot read {}; check its permissions", path.display()))?;
        let mut id = age::scrypt::Identity::new(pass.clone());
        id.set_max_work_factor(MAX_SCRYPT_LOG_N);
        let plain = Zeroizing::new(age::decrypt(&id, &ciphertext).map_err(|e| match e {
            age::DecryptError::DecryptionFailed | age::DecryptError::NoMatchingKeys => {
                anyhow::anyhow!("wrong passphrase for {}; try again", path.display())
            }
            other => anyhow::anyhow!(
                "{} is not readable ({other}); restore the signer home from a share backup",
                path.display()
            ),
        })?);
        Identity::from_secret_bytes(&plain).with_context(|| {
            format!(
                "{} holds no valid identity; restore the signer home",
                path.display()
            )
        })
    }

    /// Unlocks the keystore.
    ///
    /// # Errors
    /// Wrong passphrase, damaged keystore, or another process holding it.
    pub fn open_keystore(&self, pass: &SecretString) -> Result<Keystore> {
        Keystore::open(&self.keystore_dir(), pass).with_context(|| {
            format!(
                "cannot unlock the keystore in {}; check the passphrase and that no other custody-signer is running",
                self.keystore_dir().display()
            )
        })
    }

    /// `identity create`.
    pub(crate) fn create_identity(&self, config: &Config, name: &str, out: &Output) -> Result<()> {
        if self.dir.join(CARD_FILE).exists() || self.dir.join(IDENTITY_FILE).exists() {
            bail!(
                "{} already holds an identity; use another --home (identities are never replaced)",
                self.dir.display()
            );
        }
        let identity = Identity::generate(name, &mut OsRng).with_context(|| {
            format!("cannot use the name {name:?}; choose a short printable name")
        })?;
        let pass = passphrase(&config.passphrase, true)?;
        create_private_dir(&self.dir)?;
        let mut recipient = age::scrypt::Recipient::new(pass);
        recipient.set_work_factor(config.encryption.scrypt_log_n());
        let secret = identity.to_secret_bytes();
        let ciphertext =
            age::encrypt(&recipient, &secret).context("cannot encrypt the identity; try again")?;
        write_new_private(&self.dir, IDENTITY_FILE, &ciphertext)
            .context("cannot store the encrypted identity; check the home directory")?;
        let card = identity.card();
        let card_path = write_new(&self.dir, CARD_FILE, &card.encode())
            .context("cannot store the identity card; check the home directory")?;
        out.record(
            "identity",
            json!({
                "name": card.name(),
                "fingerprint": card.fingerprint(),
                "card": card_path.display().to_string(),
            }),
            &format!(
                "identity card: {}\nname: {}\nfingerprint: {}",
                card_path.display(),
                card.name(),
                card.fingerprint()
            ),
        )
    }

    /// `identity show`.
    pub(crate) fn show_identity(&self, words: bool, out: &Output) -> Result<()> {
        let (path, card) = self.card()?;
        let mut data = json!({
            "name": card.name(),
            "fingerprint": card.fingerprint(),
            "card": path.display().to_string(),
        });
        let mut text = format!(
            "identity card: {}\nname: {}\nfingerprint: {}",
            path.display(),
            card.name(),
            card.fingerprint()
        );
        if words {
            let w = crate::words::fingerprint_words(&card.fingerprint())?;
            data["fingerprint_words"] = json!(w);
            text.push_str(&format!("\nfingerprint words: {}", w.join(" ")));
        }
        out.record("identity", data, &text)
    }
}

/// Creates `dir` (and parents) readable by the owner only.
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).with_context(|| {
        format!(
            "cannot create {}; check the path and permissions",
            dir.display()
        )
    })
}

/// The history of ceremonies this signer completed: one line per ceremony,
/// `CEREMONY_ID KIND TRANSCRIPT_HASH` (hex; `-` when there is none).
pub const HISTORY_FILE: &str = "ceremonies.txt";
/// Where a new keystore is staged before it replaces the current one.
pub const KEYSTORE_NEXT_DIR: &str = "keystore.next";
/// Where the replaced keystore sits until it is deleted.
pub const KEYSTORE_OLD_DIR: &str = "keystore.old";

impl Home {
    /// Appends a completed ceremony to the history, durably.
    pub(crate) fn append_history(
        &self,
        ceremony_id: &[u8; 16],
        kind: &str,
        transcript: Option<&[u8; 32]>,
    ) -> Result<()> {
        use std::io::Write as _;
        let path = self.dir.join(HISTORY_FILE);
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}; check the disk", path.display()))?;
        let line = format!(
            "{} {kind} {}\n",
            hex::encode(ceremony_id),
            transcript.map_or_else(|| "-".to_owned(), hex::encode)
        );
        f.write_all(line.as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write {}; check the disk", path.display()))
    }

    /// Every transcript hash this signer has certified: the history, and the DKG
    /// transcript file of homes made before the history existed.
    pub(crate) fn known_transcripts(&self) -> Vec<String> {
        let mut known = Vec::new();
        if let Ok(text) = fs::read_to_string(self.dir.join(HISTORY_FILE)) {
            for line in text.lines() {
                if let Some(t) = line.split_whitespace().nth(2) {
                    if t != "-" {
                        known.push(t.to_owned());
                    }
                }
            }
        }
        if let Ok(t) = fs::read_to_string(self.dir.join(TRANSCRIPT_FILE)) {
            known.push(t.trim().to_owned());
        }
        known
    }

    /// Finishes a keystore replacement a crash interrupted: if the current keystore is
    /// gone but a complete staged one exists, the staged one becomes current.
    ///
    /// # Errors
    /// When the rename fails.
    pub fn finish_interrupted_swap(&self) -> Result<()> {
        let current = self.keystore_dir();
        let next = self.dir.join(KEYSTORE_NEXT_DIR);
        if !current.exists() && next.join(SECRETS_FILE).exists() {
            fs::rename(&next, &current).with_context(|| {
                format!(
                    "cannot finish replacing the keystore: rename {} to {} by hand",
                    next.display(),
                    current.display()
                )
            })?;
            sync_dir(&self.dir)?;
        }
        let old = self.dir.join(KEYSTORE_OLD_DIR);
        if current.join(SECRETS_FILE).exists() && old.exists() {
            destroy_dir(&old)?;
        }
        Ok(())
    }

    /// The directory a replacement keystore is staged in (created empty).
    pub(crate) fn stage_keystore(&self) -> Result<PathBuf> {
        let next = self.dir.join(KEYSTORE_NEXT_DIR);
        if next.exists() {
            destroy_dir(&next)?;
        }
        create_private_dir(&next)?;
        Ok(next)
    }

    /// Replaces the current keystore by the staged one: rename current to old, staged to
    /// current (each rename atomic; [`Home::finish_interrupted_swap`] completes an
    /// interrupted swap on the next start), then deletes the old keystore.
    pub(crate) fn swap_keystore(&self) -> Result<()> {
        let current = self.keystore_dir();
        let next = self.dir.join(KEYSTORE_NEXT_DIR);
        let old = self.dir.join(KEYSTORE_OLD_DIR);
        if old.exists() {
            destroy_dir(&old)?;
        }
        if current.exists() {
            fs::rename(&current, &old).with_context(|| {
                format!(
                    "cannot move the old keystore aside in {}",
                    self.dir.display()
                )
            })?;
        }
        fs::rename(&next, &current).with_context(|| {
            format!(
                "cannot put the new keystore in place: rename {} to {} by hand",
                next.display(),
                current.display()
            )
        })?;
        sync_dir(&self.dir)?;
        if old.exists() {
            destroy_dir(&old)?;
        }
        Ok(())
    }

    /// Writes a public file in the home, replacing any previous version atomically.
    pub(crate) fn replace_file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        use std::io::Write as _;
        let temp = self.dir.join(format!(".{name}.replace.tmp"));
        let target = self.dir.join(name);
        (|| -> std::io::Result<()> {
            let mut f = fs::File::create(&temp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&temp, &target)
        })()
        .with_context(|| format!("cannot write {}; check the disk", target.display()))?;
        sync_dir(&self.dir)
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}; check the disk", dir.display()))
}

/// Deletes a retired keystore directory, overwriting its files with zeros first (best
/// effort on flash media: the secrets are also encrypted under the passphrase).
fn destroy_dir(dir: &Path) -> Result<()> {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if let Ok(meta) = entry.metadata() {
                if meta.is_file() {
                    if let Ok(f) = fs::OpenOptions::new().write(true).open(&path) {
                        let zeros = vec![0u8; usize::try_from(meta.len()).unwrap_or(0)];
                        use std::io::Write as _;
                        let mut f = f;
                        let _ = f.write_all(&zeros).and_then(|()| f.sync_all());
                    }
                }
            }
        }
    }
    fs::remove_dir_all(dir).with_context(|| {
        format!(
            "cannot delete the retired keystore {}; delete it by hand",
            dir.display()
        )
    })
}
