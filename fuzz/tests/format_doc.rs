//! Keeps the worked examples of `docs/formats/threshold.md` true: each annotated hex
//! listing must be, byte for byte, the encoding of the object the fixture builds from its
//! fixed seed (regenerate the listings with
//! `cargo test -p custody-fuzz --test generate_corpus -- --ignored regenerate_format_examples`).

mod common;

use std::collections::BTreeMap;

use common::{workspace_dir, Fixture};

/// The listings of the document by name: the first whitespace-separated token of each line
/// of the fenced block after `<!-- example: NAME -->`, hex-decoded and concatenated.
fn listings(doc: &str) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .strip_prefix("<!-- example: ")
            .and_then(|rest| rest.strip_suffix(" -->"))
        else {
            continue;
        };
        assert_eq!(
            lines.next(),
            Some("```text"),
            "example {name}: a ```text block follows"
        );
        let mut hex = String::new();
        for line in lines.by_ref() {
            if line == "```" {
                break;
            }
            hex.push_str(line.split_whitespace().next().unwrap_or_default());
        }
        let bytes = hex::decode(&hex).unwrap_or_else(|e| panic!("example {name}: {e}"));
        assert!(
            out.insert(name.to_owned(), bytes).is_none(),
            "example {name} appears twice"
        );
    }
    out
}

#[test]
fn worked_examples_are_real_encodings() {
    let path = workspace_dir()
        .join("docs")
        .join("formats")
        .join("threshold.md");
    let doc = std::fs::read_to_string(&path).expect("read docs/formats/threshold.md");
    let found = listings(&doc);
    let f = Fixture::build();
    let card = f.identities[0].card();
    let expected = [
        ("identity_card", card.encode()),
        ("commitment_batch", f.small_batch.encode()),
        ("signature_shares", f.responses[0].encode()),
        ("group_key", f.group.encode()),
    ];
    assert_eq!(
        found.keys().map(String::as_str).collect::<Vec<_>>(),
        {
            let mut names: Vec<_> = expected.iter().map(|(n, _)| *n).collect();
            names.sort_unstable();
            names
        },
        "the document has exactly the expected examples"
    );
    for (name, bytes) in &expected {
        assert_eq!(
            hex::encode(&found[*name]),
            hex::encode(bytes),
            "example {name} is not the fixture's encoding"
        );
        let run = custody_fuzz::TARGETS
            .iter()
            .find(|(t, _)| t == name)
            .map(|(_, run)| run)
            .expect("a target per example");
        run(bytes);
    }
    // Values the text quotes next to the examples.
    for (what, value) in [
        ("alice's fingerprint", card.fingerprint()),
        ("the request digest", hex::encode(f.request.digest())),
        (
            "the nonce seed id of participant 2",
            hex::encode(f.seeds[1].id()),
        ),
        ("the plan hash", hex::encode(f.plan.hash())),
    ] {
        assert!(
            doc.contains(&value),
            "the document does not quote {what} {value}"
        );
    }
}
