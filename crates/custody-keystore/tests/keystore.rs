//! The encrypted keystore and share backups.

use std::path::Path;

use custody_keystore::{
    restore_backup, verify_backup, BackupKey, BackupRecipient, EncryptionParams, JournalError,
    Keystore, KeystoreError, SecretString, WriteFileError, SECRETS_FILE,
};
use custody_threshold::{
    generate_with_dealer, issue_commitments, CommitmentPool, GroupKey, Identity, ItemSpec,
    KeyShare, MemoryNonceStore, Network, NonceSeed, SignError, SigningRequest, TweakMode,
};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn pass(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

/// A fast work factor: these tests exercise the format, not the cost.
fn fast() -> EncryptionParams {
    EncryptionParams::with_scrypt_log_n(10).expect("valid")
}

struct Fixture {
    rng: ChaCha20Rng,
    group: GroupKey,
    shares: Vec<KeyShare>,
}

fn fixture() -> Fixture {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let (group, shares) = generate_with_dealer(Network::Regtest, 2, 3, &mut rng).expect("dealer");
    Fixture { rng, group, shares }
}

fn new_keystore(dir: &Path, f: &mut Fixture) -> Keystore {
    let share = f.shares.remove(0);
    let identity = Identity::generate("signer-1", &mut f.rng).expect("identity");
    Keystore::create(
        dir,
        share,
        identity,
        &pass("correct horse"),
        fast(),
        &mut f.rng,
    )
    .expect("create")
}

/// A request for signers 1 and 2 using the given batch of signer 1 and fresh commitments
/// of signer 2.
fn request(
    group: &GroupKey,
    batch1: &custody_threshold::CommitmentBatch,
    share2: &KeyShare,
) -> SigningRequest {
    let mut pool = CommitmentPool::new(group);
    pool.add_batch(batch1).expect("batch");
    let seed2 = NonceSeed::from_secret_bytes(&[2; 32]);
    let b2 = issue_commitments(share2, &seed2, &mut MemoryNonceStore::new(), 1).expect("batch");
    pool.add_batch(&b2).expect("batch");
    let item = ItemSpec {
        message: b"pay 1 BTC".to_vec(),
        path: vec![0, 0],
        tweak: TweakMode::KeyPath,
    };
    SigningRequest::build([9; 16], group, &[1, 2], vec![item], &mut pool).expect("request")
}

#[test]
fn a_keystore_reopens_with_its_passphrase_and_keeps_signing_state() {
    let dir = tempfile::tempdir().expect("dir");
    let mut f = fixture();
    let mut ks = new_keystore(dir.path(), &mut f);
    let seed_id = ks.nonce_seed_id();
    let batch = ks.issue_commitments(2).expect("issue");
    let req = request(&f.group, &batch, &f.shares[0]);
    ks.sign(&req).expect("sign");
    drop(ks);

    let mut ks = Keystore::open(dir.path(), &pass("correct horse")).expect("open");
    assert_eq!(ks.share().index(), 1);
    assert_eq!(ks.share().group().public_key(), f.group.public_key());
    assert_eq!(ks.identity().name(), "signer-1");
    assert_eq!(ks.nonce_seed_id(), seed_id, "the seed is kept");
    // The same request again: its counter is consumed on disk.
    assert!(matches!(ks.sign(&req), Err(SignError::Nonce(_))));
}

#[test]
fn the_wrong_passphrase_does_not_open_the_keystore() {
    let dir = tempfile::tempdir().expect("dir");
    let mut f = fixture();
    drop(new_keystore(dir.path(), &mut f));
    assert!(matches!(
        Keystore::open(dir.path(), &pass("wrong")),
        Err(KeystoreError::WrongPassphrase { .. })
    ));
}

#[test]
fn secrets_are_not_on_disk_in_the_clear() {
    let dir = tempfile::tempdir().expect("dir");
    let mut f = fixture();
    let ks = new_keystore(dir.path(), &mut f);
    let on_disk = std::fs::read(dir.path().join(SECRETS_FILE)).expect("read");
    assert!(on_disk.starts_with(b"age-encryption.org/v1\n-> scrypt "));
    let share = ks.share().to_secret_bytes();
    // The last 32 bytes of the share encoding are the secret scalar.
    let scalar = &share[share.len() - 32..];
    assert!(!on_disk.windows(32).any(|w| w == scalar));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(SECRETS_FILE))
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn create_never_overwrites_an_existing_keystore() {
    let dir = tempfile::tempdir().expect("dir");
    let mut f = fixture();
    drop(new_keystore(dir.path(), &mut f));
    let before = std::fs::read(dir.path().join(SECRETS_FILE)).expect("read");
    std::fs::remove_file(dir.path().join("nonces.journal")).expect("rm");
    let share = f.shares.remove(0);
    let identity = Identity::generate("intruder", &mut f.rng).expect("identity");
    let err = Keystore::create(dir.path(), share, identity, &pass("x"), fast(), &mut f.rng);
    assert!(matches!(
        err,
        Err(KeystoreError::Write(WriteFileError::Exists { .. }))
    ));
    assert_eq!(
        std::fs::read(dir.path().join(SECRETS_FILE)).expect("read"),
        before
    );
}

#[test]
fn a_keystore_without_its_journal_refuses_to_open() {
    let dir = tempfile::tempdir().expect("dir");
    let mut f = fixture();
    drop(new_keystore(dir.path(), &mut f));
    std::fs::remove_file(dir.path().join("nonces.journal")).expect("rm");
    assert!(matches!(
        Keystore::open(dir.path(), &pass("correct horse")),
        Err(KeystoreError::Journal(JournalError::Missing { .. }))
    ));
}

#[test]
fn a_passphrase_backup_verifies_and_restores_with_a_new_nonce_seed() {
    let dir = tempfile::tempdir().expect("dir");
    let mut f = fixture();
    let mut ks = new_keystore(dir.path(), &mut f);
    let old_seed = ks.nonce_seed_id();
    let backup = ks
        .export_backup(&BackupRecipient::Passphrase(pass("backup pass"), fast()))
        .expect("backup");
    let label = Path::new("share-1.backup");

    let summary =
        verify_backup(label, &backup, &BackupKey::Passphrase(pass("backup pass"))).expect("verify");
    assert_eq!(summary.group_key, f.group.public_key());
    assert_eq!(summary.index, 1);
    assert_eq!(summary.identity_name, "signer-1");
    assert_eq!(
        summary.identity_fingerprint,
        ks.identity().card().fingerprint()
    );
    assert!(matches!(
        verify_backup(label, &backup, &BackupKey::Passphrase(pass("nope"))),
        Err(KeystoreError::WrongPassphrase { .. })
    ));

    // A commitment issued before the backup, not yet used.
    let batch = ks.issue_commitments(1).expect("issue");
    let req = request(&f.group, &batch, &f.shares[0]);
    drop(ks);

    let restored_dir = tempfile::tempdir().expect("dir");
    let mut restored = restore_backup(
        label,
        &backup,
        &BackupKey::Passphrase(pass("backup pass")),
        restored_dir.path(),
        &pass("new device pass"),
        fast(),
        &mut f.rng,
    )
    .expect("restore");
    assert_ne!(
        restored.nonce_seed_id(),
        old_seed,
        "restore draws a new seed"
    );
    match restored.sign(&req) {
        Err(SignError::StaleCommitment(id)) => assert_eq!(id.seed_id, old_seed),
        other => panic!("expected StaleCommitment, got {other:?}"),
    }
    // The restored device signs with commitments it issues itself.
    let batch = restored.issue_commitments(1).expect("issue");
    restored
        .sign(&request(&f.group, &batch, &f.shares[0]))
        .expect("sign after restore");
    drop(restored);
    Keystore::open(restored_dir.path(), &pass("new device pass")).expect("reopen restored");
}

#[test]
fn a_backup_never_contains_the_nonce_seed() {
    let dir = tempfile::tempdir().expect("dir");
    let mut f = fixture();
    let ks = new_keystore(dir.path(), &mut f);
    let backup_key = age::x25519::Identity::generate();
    let backup = ks
        .export_backup(&BackupRecipient::Age(backup_key.to_public()))
        .expect("backup");
    drop(ks);
    // The device file holds the seed as its last 32 plaintext bytes; the backup must not.
    let device = age::decrypt(
        &{
            let mut id = age::scrypt::Identity::new(pass("correct horse"));
            id.set_max_work_factor(22);
            id
        },
        &std::fs::read(dir.path().join(SECRETS_FILE)).expect("read"),
    )
    .expect("decrypt device file");
    let seed = &device[device.len() - 32..];
    let plain = age::decrypt(&backup_key, &backup).expect("decrypt backup");
    assert!(!plain.windows(32).any(|w| w == seed));
    // And the recipient's identity verifies it.
    let summary =
        verify_backup(Path::new("b"), &backup, &BackupKey::Age(backup_key)).expect("verify");
    assert_eq!(summary.index, 1);
}

#[test]
fn a_tampered_backup_fails_verification() {
    let dir = tempfile::tempdir().expect("dir");
    let mut f = fixture();
    let ks = new_keystore(dir.path(), &mut f);
    let mut backup = ks
        .export_backup(&BackupRecipient::Passphrase(pass("b"), fast()))
        .expect("backup");
    let last = backup.len() - 1;
    backup[last] ^= 1;
    assert!(verify_backup(Path::new("b"), &backup, &BackupKey::Passphrase(pass("b"))).is_err());
}

#[test]
fn a_device_keystore_file_is_not_accepted_as_a_backup() {
    let dir = tempfile::tempdir().expect("dir");
    let mut f = fixture();
    drop(new_keystore(dir.path(), &mut f));
    let device = std::fs::read(dir.path().join(SECRETS_FILE)).expect("read");
    // Restoring from a device file would carry its nonce seed along; it is refused.
    assert!(matches!(
        verify_backup(
            Path::new("secrets.age"),
            &device,
            &BackupKey::Passphrase(pass("correct horse"))
        ),
        Err(KeystoreError::Malformed { .. })
    ));
}

#[test]
fn work_factors_outside_the_accepted_range_are_refused() {
    assert!(EncryptionParams::with_scrypt_log_n(0).is_err());
    assert!(EncryptionParams::with_scrypt_log_n(23).is_err());
    assert_eq!(EncryptionParams::default().scrypt_log_n(), 18);
}

#[test]
fn a_backup_whose_share_does_not_match_its_group_key_fails_verification() {
    let dir = tempfile::tempdir().expect("dir");
    let mut f = fixture();
    let ks = new_keystore(dir.path(), &mut f);
    let key = age::x25519::Identity::generate();
    let backup = ks
        .export_backup(&BackupRecipient::Age(key.to_public()))
        .expect("backup");
    let mut plain = age::decrypt(&key, &backup).expect("decrypt");
    // CPKS 01 02, u32 share length, share: its last byte is the scalar's lowest byte.
    let share_len = u32::from_be_bytes(plain[6..10].try_into().expect("4 bytes")) as usize;
    plain[10 + share_len - 1] ^= 1;
    let doctored = age::encrypt(&key.to_public(), &plain).expect("encrypt");
    assert!(matches!(
        verify_backup(Path::new("b"), &doctored, &BackupKey::Age(key)),
        Err(KeystoreError::Decode {
            what: "key share",
            ..
        })
    ));
}
