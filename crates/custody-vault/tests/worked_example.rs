//! Pins the worked example of `docs/formats/vault.md`: a format change shows up here as
//! a failing test and a diff to copy into the document.

use custody_vault::{FieldKind, Purpose, SealedBlob, VaultKeys};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const KEY_FILE_HEX: &str = "4350564b0101e10015a9e2ad25645ec523f8aed562bf7ce9ed5913703722af5fcea9b16ae862db317aaf70b1e84b048e30fd50e44e9e0100000001ab3278a06abe7d705f0e25d60926930587f712cbeea2f545da63146ecda16df34727004921d35b0c";
const BLOB_HEX: &str = "435056420102e10015a9e2ad25645ec523f8aed562bf00000001450c7a802b4a0ff3533d742c96222d4d846787b9671d7ebcd81716b431406a76ca7fb1e14bdd7d3fc3a6b4da5f367e42dd940d9d6aec11f42e0c92ed8fc5b9b3a996155ccb8f94f056ccb61299f011729a3382091605cbb722a09f89f3d0c2c509edcb2379a70d5000000020797979cf3fcc23bdbf558d7fc51179437a249b458bcc953c99b968bedb279735";
const REWRAPPED_HEX: &str = "435056420102e10015a9e2ad25645ec523f8aed562bf00000002450c7a802b4a0ff3af5ef2c2ac2a217e99ade531deb55672b3f7c2a364471dc824e807771c7aa431ec99e166158c8ff87041b26a7ce3d7fee2729ff5442b7a0cf9e97e036041d50624845c80f1d7a3949a3382091605cbb722a09f89f3d0c2c509edcb2379a70d5000000020797979cf3fcc23bdbf558d7fc51179437a249b458bcc953c99b968bedb279735";
const EMAIL_INDEX: &str = "e27d0c0913f580e98d24d10a5fb91406";

#[test]
fn worked_example_matches_the_format_document() {
    let mut rng = ChaCha20Rng::seed_from_u64(14);
    let keys = VaultKeys::generate_with_rng(&mut rng);
    assert_eq!(hex::encode(&keys.to_bytes()[..]), KEY_FILE_HEX);

    let blob = keys
        .seal_with_rng(
            &mut rng,
            Purpose::TotpSecret,
            b"user-42/totp",
            b"JBSWY3DPEHPK3PXP",
        )
        .expect("seals");
    assert_eq!(hex::encode(blob.to_bytes()), BLOB_HEX);

    let decoded = SealedBlob::from_bytes(&hex::decode(BLOB_HEX).expect("hex")).expect("decodes");
    assert_eq!(
        &keys
            .open(Purpose::TotpSecret, b"user-42/totp", &decoded)
            .expect("opens")[..],
        b"JBSWY3DPEHPK3PXP"
    );

    let mut rotated = VaultKeys::from_bytes(&keys.to_bytes()).expect("copies");
    rotated.add_kek_with_rng(&mut rng).expect("rotates");
    let rewrapped = rotated
        .rewrap_with_rng(&mut rng, Purpose::TotpSecret, b"user-42/totp", &blob)
        .expect("rewraps");
    assert_eq!(hex::encode(rewrapped.to_bytes()), REWRAPPED_HEX);

    assert_eq!(
        keys.blind_index(FieldKind::Email, " Alice@Example.com ")
            .expect("indexes")
            .to_hex(),
        EMAIL_INDEX
    );
}
