//! Regenerates the committed corpus and negative vectors of the `vault_blob` target from
//! blobs sealed with the fixed fuzz keys.
//!
//! Run by hand after a format change:
//! `cargo test -p custody-fuzz --test generate_vault_corpus -- --ignored`.

use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn hex_lines(bytes: &[u8]) -> String {
    hex::encode(bytes)
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
#[ignore = "writes the committed corpus and negative vectors; run by hand after a format change"]
fn regenerate_vault_corpus() {
    let seeds = custody_vault::fuzzing::corpus_seeds();
    let dir = root().join("corpus/vault_blob");
    std::fs::create_dir_all(&dir).expect("corpus dir");
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("valid-{i}")), seed).expect("write seed");
    }
    let good = &seeds[0];
    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            "the last half is missing",
        ),
        ("empty", Vec::new(), "no bytes at all"),
        (
            "trailing_bytes",
            [good.as_slice(), &[0]].concat(),
            "one byte after the ciphertext",
        ),
    ];
    let mut bad_magic = good.clone();
    bad_magic[0] ^= 0xff;
    cases.push(("bad_magic", bad_magic, "first magic byte flipped"));
    let mut bad_version = good.clone();
    bad_version[4] = 0xee;
    cases.push(("wrong_version", bad_version, "version byte 0xee"));
    for (name, bytes, comment) in cases {
        let err = custody_vault::SealedBlob::from_bytes(&bytes)
            .expect_err("negative vector must be refused");
        let text = format!(
            "type: vault_blob\nexpect: {err}\ncomment: {comment}\n\n{}\n",
            hex_lines(&bytes)
        );
        std::fs::write(
            root().join(format!("../test-vectors/negative/vault_blob-{name}")),
            text,
        )
        .expect("write vector");
        std::fs::write(dir.join(format!("neg-{name}")), &bytes).expect("write corpus copy");
    }
}
