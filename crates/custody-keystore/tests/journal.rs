//! `FileNonceStore`: durability across reopen, refusals, torn tails and corruption.

use std::fs::OpenOptions;
use std::io::Write;

use custody_keystore::journal::JOURNAL_FILE;
use custody_keystore::{FileNonceStore, JournalError};
use custody_threshold::{ConsumeError, NonceStore};

const SEED: [u8; 8] = [7; 8];

fn fresh() -> (tempfile::TempDir, FileNonceStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = FileNonceStore::create(dir.path(), SEED).expect("create");
    (dir, store)
}

#[test]
fn issued_counters_are_never_issued_again_after_reopen() {
    let (dir, mut store) = fresh();
    assert_eq!(store.issue(10).expect("issue"), 0);
    assert_eq!(store.issue(5).expect("issue"), 10);
    drop(store);
    let mut store = FileNonceStore::open(dir.path(), SEED).expect("open");
    assert_eq!(store.issue(3).expect("issue"), 15);
    assert!(!store.recovered_from_torn_tail());
}

#[test]
fn consumed_counters_stay_consumed_after_reopen() {
    let (dir, mut store) = fresh();
    store.issue(4).expect("issue");
    store.consume(&[1, 2]).expect("consume");
    drop(store);
    let mut store = FileNonceStore::open(dir.path(), SEED).expect("open");
    assert!(matches!(
        store.consume(&[2]),
        Err(ConsumeError::AlreadyConsumed { counter: 2 })
    ));
    // Unconsumed counters are still usable.
    store.consume(&[0, 3]).expect("consume the rest");
    assert!(matches!(
        store.consume(&[4]),
        Err(ConsumeError::NeverIssued { counter: 4 })
    ));
}

#[test]
fn a_duplicate_within_one_call_is_refused_and_nothing_is_consumed() {
    let (_dir, mut store) = fresh();
    store.issue(4).expect("issue");
    assert!(matches!(
        store.consume(&[1, 1]),
        Err(ConsumeError::AlreadyConsumed { counter: 1 })
    ));
    assert!(store.is_available(1));
}

#[test]
fn issue_refuses_zero_and_oversized_batches() {
    let (_dir, mut store) = fresh();
    assert!(matches!(store.issue(0), Err(JournalError::BadCount(0))));
    assert!(matches!(
        store.issue(1001),
        Err(JournalError::BadCount(1001))
    ));
}

#[test]
fn a_torn_last_record_burns_outstanding_counters_and_never_reissues() {
    let (dir, mut store) = fresh();
    store.issue(10).expect("issue");
    store.consume(&[0]).expect("consume");
    drop(store);
    let path = dir.path().join(JOURNAL_FILE);
    // Half of a consume record, as a crash mid-write leaves it.
    let mut f = OpenOptions::new().append(true).open(&path).expect("open");
    f.write_all(&[b'C', 0, 1, 0, 0, 0]).expect("write");
    drop(f);
    let mut store = FileNonceStore::open(dir.path(), SEED).expect("open recovers");
    assert!(store.recovered_from_torn_tail());
    // Counter 5 was issued and not consumed before the crash; it is refused now.
    assert!(matches!(
        store.consume(&[5]),
        Err(ConsumeError::AlreadyConsumed { counter: 5 })
    ));
    // New counters start past anything the torn record could have issued.
    assert!(store.issue(2).expect("issue") >= 10 + 1000);
    drop(store);
    // The recovery was persisted: a second open finds a clean journal.
    let store = FileNonceStore::open(dir.path(), SEED).expect("reopen");
    assert!(!store.recovered_from_torn_tail());
    assert!(!store.is_available(5));
}

#[test]
fn corruption_before_the_last_record_is_an_error() {
    let (dir, mut store) = fresh();
    store.issue(1000).expect("issue");
    for c in 0..1000 {
        store.consume(&[c]).expect("consume");
    }
    drop(store);
    let path = dir.path().join(JOURNAL_FILE);
    let mut bytes = std::fs::read(&path).expect("read");
    // Flip a bit in the first record (right after the 16-byte header).
    bytes[20] ^= 1;
    std::fs::write(&path, &bytes).expect("write");
    match FileNonceStore::open(dir.path(), SEED) {
        Err(JournalError::Corrupt { offset, .. }) => assert_eq!(offset, 16),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_journal_of_another_seed_is_refused() {
    let (dir, store) = fresh();
    drop(store);
    assert!(matches!(
        FileNonceStore::open(dir.path(), [8; 8]),
        Err(JournalError::SeedMismatch { .. })
    ));
}

#[test]
fn a_missing_journal_is_never_recreated_implicitly() {
    let dir = tempfile::tempdir().expect("temp dir");
    assert!(matches!(
        FileNonceStore::open(dir.path(), SEED),
        Err(JournalError::Missing { .. })
    ));
    assert!(!dir.path().join(JOURNAL_FILE).exists());
}

#[test]
fn create_refuses_to_replace_an_existing_journal() {
    let (dir, mut store) = fresh();
    store.issue(3).expect("issue");
    drop(store);
    assert!(matches!(
        FileNonceStore::create(dir.path(), SEED),
        Err(JournalError::Exists { .. })
    ));
    let mut store = FileNonceStore::open(dir.path(), SEED).expect("open");
    assert_eq!(store.issue(1).expect("issue"), 3);
}

#[cfg(unix)]
#[test]
fn the_journal_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, _store) = fresh();
    let mode = std::fs::metadata(dir.path().join(JOURNAL_FILE))
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// The worked example of `docs/formats/keystore.md`, byte for byte: a change to the
/// journal format must show up here.
#[test]
fn journal_bytes_match_the_format_document() {
    let (dir, mut store) = fresh();
    store.issue(4).expect("issue");
    store.consume(&[1, 2]).expect("consume");
    drop(store);
    let bytes = std::fs::read(dir.path().join(JOURNAL_FILE)).expect("read");
    assert_eq!(hex::encode(bytes), PINNED_JOURNAL);
}

const PINNED_JOURNAL: &str = concat!(
    "43504e4a010100000707070707070707",
    "490000000000000004dca2a73a54f340cb",
    "430002000000000000000100000000000000026451a402d4285da6",
);

#[cfg(unix)]
#[test]
fn a_second_store_on_the_same_journal_is_refused_while_the_first_is_open() {
    let (dir, mut first) = fresh();
    first.issue(2).expect("issue");
    assert!(matches!(
        FileNonceStore::open(dir.path(), SEED),
        Err(JournalError::Locked { .. })
    ));
    drop(first);
    let mut second = FileNonceStore::open(dir.path(), SEED).expect("open after close");
    assert_eq!(second.issue(1).expect("issue"), 2);
}

/// Damage to a record that is not the last one, close enough to the end to pass for a torn
/// tail: the counters issued and consumed by the records behind it must stay burned.
#[test]
fn damage_near_the_end_never_frees_counters_recorded_behind_it() {
    let (dir, mut store) = fresh();
    store.issue(10).expect("issue");
    store.consume(&[0]).expect("consume");
    store.issue(1000).expect("issue");
    store.issue(1000).expect("issue");
    store.consume(&[1500]).expect("consume");
    drop(store);
    let path = dir.path().join(JOURNAL_FILE);
    let mut bytes = std::fs::read(&path).expect("read");
    // Header 16, issue record 17: the consume record of counter 0 starts at 33.
    bytes[33 + 5] ^= 1;
    std::fs::write(&path, &bytes).expect("write");
    let mut store = FileNonceStore::open(dir.path(), SEED).expect("open recovers");
    assert!(store.recovered_from_torn_tail());
    assert!(matches!(
        store.consume(&[1500]),
        Err(ConsumeError::AlreadyConsumed { counter: 1500 })
    ));
    assert!(store.issue(1).expect("issue") >= 2010);
}
