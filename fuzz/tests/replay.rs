//! Replays the committed seed corpus through every fuzz target with plain `cargo test`, so
//! a regression a fuzzer once found (or a seed that stopped round-tripping) fails CI
//! without libFuzzer.

mod common;

use bitcoin::psbt::Psbt;
use common::{files_in, fuzz_dir};
use custody_airgap::qr::Collector;
use custody_bitcoin::{fields, fuzzing, inspect_psbt, inspect_recovery_psbt, InspectPolicy};
use custody_threshold::{SignatureShares, SigningRequest};

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
    assert!(
        total >= custody_fuzz::TARGETS.len() * 5,
        "only {total} corpus files"
    );
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

/// Whether a seed of `target` is accepted: by [`custody_fuzz::decode`] where the target has
/// a plain decoder, otherwise by what the target's entry point drives.
fn accepted(target: &str, data: &[u8]) -> Result<(), String> {
    if let Some(result) = custody_fuzz::decode(target, data) {
        return result;
    }
    match target {
        // Every line fed to one collector (as the entry points do, errors ignored), which
        // must complete with a verified message.
        "ur_lines" | "bbqr_lines" => {
            let mut collector = Collector::new();
            for line in data.split(|&b| b == b'\n') {
                let _ = collector.push_line(&String::from_utf8_lossy(line));
            }
            collector.finish().map(drop).map_err(|e| e.to_string())
        }
        // A PSBT one of the fuzz wallets accepts, for the key path or the recovery leaf.
        "psbt_inspect" => {
            let psbt = Psbt::deserialize(data).map_err(|e| e.to_string())?;
            let policy = InspectPolicy::default();
            let wallets = [fuzzing::fuzz_wallet(), fuzzing::fuzz_recovery_wallet()];
            let mut errors = Vec::new();
            for wallet in &wallets {
                match inspect_psbt(wallet, &psbt, &policy) {
                    Ok(_) => return Ok(()),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            match inspect_recovery_psbt(&wallets[1], &psbt, &policy) {
                Ok(_) => Ok(()),
                Err(e) => {
                    errors.push(e.to_string());
                    Err(errors.join("; "))
                }
            }
        }
        // A PSBT whose CoinPort fields all decode, with a signing request.
        "psbt_fields" => {
            let psbt = Psbt::deserialize(data).map_err(|e| e.to_string())?;
            fields::signing_request(&psbt).map_err(|e| e.to_string())?;
            fields::signature_shares(&psbt)
                .map(drop)
                .map_err(|e| e.to_string())
        }
        // Subtype, key-data length, key data, value (see `do_test_proprietary_field`): a
        // well-formed request or shares field.
        "proprietary_field" => {
            let [subtype, len, rest @ ..] = data else {
                return Err("shorter than subtype and length".into());
            };
            let (key, value) = rest.split_at(usize::from(*len).min(rest.len()));
            match (*subtype, key) {
                (fields::SUBTYPE_SIGNING_REQUEST, []) => SigningRequest::decode(value)
                    .map(drop)
                    .map_err(|e| e.to_string()),
                (fields::SUBTYPE_SIGNATURE_SHARES, &[hi, lo]) => {
                    let shares = SignatureShares::decode(value).map_err(|e| e.to_string())?;
                    if shares.signer == u16::from_be_bytes([hi, lo]) {
                        Ok(())
                    } else {
                        Err(format!(
                            "shares of signer {} under another key",
                            shares.signer
                        ))
                    }
                }
                _ => Err(format!("not a request or shares field (subtype {subtype})")),
            }
        }
        // An opened threshold-ECDSA message body: every item within bounds.
        "ecdsa_message_body" => custody_ecdsa::fuzzing::message_body::item_count(data)
            .map(drop)
            .map_err(|e| e.to_string()),
        _ => panic!("unknown target {target}"),
    }
}

/// The seeds generated from real objects (`valid-*`), and the non-canonical spellings the
/// decoders accept on purpose, must keep decoding: a seed that stops decoding is a format
/// change, and the corpus (and `docs/formats/threshold.md`) must be regenerated with it.
/// For the QR targets "decoding" means the lines complete a message; for the PSBT targets,
/// that a fuzz wallet accepts the PSBT, or that its CoinPort fields decode.
#[test]
fn valid_seeds_still_decode() {
    let accepted_variants = [
        "lowercase-age-secret",
        "odd-y-signing-key",
        "unsorted-shares",
    ];
    let mut checked = 0;
    let mut targets = std::collections::BTreeSet::new();
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
            let result = accepted(target, &data);
            assert!(result.is_ok(), "{}: {result:?}", file.display());
            targets.insert(target);
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} valid seeds");
    assert_eq!(
        targets.len(),
        custody_fuzz::TARGETS.len(),
        "every target has valid seeds: {targets:?}"
    );
}
