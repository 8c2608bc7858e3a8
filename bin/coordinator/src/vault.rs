//! The coordinator's key file for data at rest (`custody-vault`): KYC records, TOTP
//! secrets and other secrets it keeps in the database are sealed with a data key per
//! record, wrapped by the current key-encryption key (KEK) of this file.
//!
//! The file lives at `vault.key_file` (default `<data_dir>/vault.key`, created with mode
//! 0600 on first start). Key rotation (`custody-coordinator vault rotate`) adds a KEK to
//! the file and re-wraps every row while the daemon keeps serving: a running daemon that
//! meets a blob under a KEK it does not know re-reads the file once and tries again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result};
use custody_vault::{OpenError, Purpose, SealedBlob, VaultKeys};
use zeroize::Zeroizing;

use crate::error::ApiError;

/// The default file name of the key file in `data_dir`.
pub const VAULT_KEY_FILE: &str = "vault.key";

/// The loaded key file, reloadable while running.
pub struct Vault {
    path: PathBuf,
    keys: RwLock<Arc<VaultKeys>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// Loads the key file at `path`, creating a new key set (mode 0600) when it does not
    /// exist.
    ///
    /// # Errors
    /// An unreadable, damaged or world-readable key file, or one that cannot be written.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        if !path.exists() {
            VaultKeys::generate()
                .write_new(path)
                .with_context(|| format!("creating the vault key file {}", path.display()))?;
        }
        let keys = VaultKeys::load(path).context("loading the vault key file")?;
        Ok(Vault {
            path: path.to_owned(),
            keys: RwLock::new(Arc::new(keys)),
        })
    }

    /// Where the key file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The keys as last loaded.
    pub fn keys(&self) -> Arc<VaultKeys> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Re-reads the key file (after a rotation by another process).
    ///
    /// # Errors
    /// The file cannot be read, or holds another key set (then the old keys stay).
    pub fn reload(&self) -> Result<()> {
        let fresh = VaultKeys::load(&self.path).context("re-reading the vault key file")?;
        let mut keys = self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if fresh.key_set_id() != keys.key_set_id() {
            anyhow::bail!(
                "the vault key file {} now holds key set {}, not {}; restart the daemon after replacing key files",
                self.path.display(),
                fresh.key_set_id(),
                keys.key_set_id()
            );
        }
        *keys = Arc::new(fresh);
        Ok(())
    }

    /// Seals `plaintext` for the row `record_id`, as base64 text for a `TEXT` column.
    ///
    /// # Errors
    /// 500 when the record id or plaintext is out of range (a programming error).
    pub fn seal_text(
        &self,
        purpose: Purpose,
        record_id: &str,
        plaintext: &[u8],
    ) -> Result<String, ApiError> {
        self.keys()
            .seal(purpose, record_id.as_bytes(), plaintext)
            .map(|b| b.to_text())
            .map_err(|e| ApiError::internal(format!("sealing a secret: {e}")))
    }

    /// Opens base64 text sealed by [`seal_text`](Self::seal_text) for `record_id`. A blob
    /// under a KEK this process has not loaded yet makes it re-read the key file once.
    ///
    /// # Errors
    /// 500 saying why (never with plaintext): a damaged blob, a row moved to another
    /// record, or a KEK no longer in the file.
    pub fn open_text(
        &self,
        purpose: Purpose,
        record_id: &str,
        text: &str,
    ) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        let blob = SealedBlob::from_text(text)
            .map_err(|e| ApiError::internal(format!("a sealed value is damaged: {e}")))?;
        match self.keys().open(purpose, record_id.as_bytes(), &blob) {
            Err(OpenError::UnknownKek { .. }) => {
                self.reload().map_err(ApiError::internal)?;
                self.keys().open(purpose, record_id.as_bytes(), &blob)
            }
            other => other,
        }
        .map_err(|e| ApiError::internal(format!("opening a sealed value: {e}")))
    }
}
