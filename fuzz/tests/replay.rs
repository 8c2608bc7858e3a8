//! Replays the committed seed corpus through every fuzz target with plain `cargo test`, so
//! a regression a fuzzer once found (or a seed that stopped round-tripping) fails CI
//! without libFuzzer.

mod common;

use common::{files_in, fuzz_dir};

#[test]
fn every_target_replays_its_corpus() {
    let mut total = 0;
    for (target, run) in custody_fuzz::TARGETS {
        let dir = fuzz_dir().join("corpus").join(target);
        let files = files_in(&dir);
        assert!(
            !files.is_empty(),
            "corpus directory {} is empty",
            dir.display()
        );
        for file in &files {
            let data = std::fs::read(file).expect("read corpus file");
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(
                outcome.is_ok(),
                "target {target} panicked on {} (input {})",
                file.display(),
                hex::encode(&data)
            );
        }
        total += files.len();
    }
    assert!(total >= 10 * 5, "only {total} corpus files");
}

#[test]
fn every_target_has_a_corpus_directory_and_a_fuzz_target() {
    let manifest =
        std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("read fuzz/Cargo.toml");
    for (target, _) in custody_fuzz::TARGETS {
        assert!(fuzz_dir().join("corpus").join(target).is_dir());
        let source = fuzz_dir().join("fuzz_targets").join(format!("{target}.rs"));
        let text = std::fs::read_to_string(&source).expect("read fuzz target");
        assert!(
            text.contains(&format!("custody_fuzz::do_test_{target}(data)")),
            "{} does not call do_test_{target}",
            source.display()
        );
        assert!(
            manifest.contains(&format!(
                "name = \"{target}\"\npath = \"fuzz_targets/{target}.rs\"\nrequired-features = [\"libfuzzer\"]"
            )),
            "fuzz/Cargo.toml lacks a libfuzzer-gated [[bin]] for {target}"
        );
    }
}

/// The seeds generated from real objects (`valid-*`), and the non-canonical spellings the
/// decoders accept on purpose, must keep decoding: a seed that stops decoding is a format
/// change, and the corpus (and `docs/formats/threshold.md`) must be regenerated with it.
#[test]
fn valid_seeds_still_decode() {
    let accepted_variants = [
        "lowercase-age-secret",
        "odd-y-signing-key",
        "unsorted-shares",
    ];
    let mut checked = 0;
    for (target, _) in custody_fuzz::TARGETS {
        for file in files_in(&fuzz_dir().join("corpus").join(target)) {
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if !(name.starts_with("valid-") || accepted_variants.contains(&name)) {
                continue;
            }
            let data = std::fs::read(&file).expect("read corpus file");
            let result = custody_fuzz::decode(target, &data).expect("known target");
            assert!(result.is_ok(), "{}: {result:?}", file.display());
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} valid seeds");
}
