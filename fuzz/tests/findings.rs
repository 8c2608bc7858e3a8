//! Inputs on which a fuzz target failed because of a bug in a crate under `crates/`. While a
//! bug is open its test is ignored with the bug in the reason; once fixed it stays here
//! as a regression test (inputs too large for the corpus live here for good).

use custody_airgap::file::{detect_psbt, encode_psbt, PsbtEncoding, MAX_FILE_LEN, MAX_PSBT_LEN};

/// A text PSBT file of exactly `MAX_FILE_LEN` bytes (no final newline) in `encoding`.
fn text_file_at_limit(encoding: PsbtEncoding) -> Vec<u8> {
    let limit = usize::try_from(MAX_FILE_LEN).expect("16 MiB fits in usize");
    let raw_len = match encoding {
        PsbtEncoding::Hex => limit / 2,
        PsbtEncoding::Base64 => limit / 4 * 3,
        PsbtEncoding::Binary => unreachable!("text encodings only"),
    };
    let mut raw = vec![0u8; raw_len];
    raw[..5].copy_from_slice(b"psbt\xff");
    let mut file = encode_psbt(&raw, encoding);
    assert_eq!(file.pop(), Some(b'\n'));
    assert_eq!(file.len(), limit);
    file
}

/// Regression: `detect_psbt` accepted a hex or base64 PSBT file of exactly `MAX_FILE_LEN`
/// (16 MiB) bytes without a final newline, but `encode_psbt` writes the same PSBT with a
/// newline, one byte over the limit, so the answer could not be written in the encoding the
/// request came in. The limit now applies to the PSBT itself (`MAX_PSBT_LEN`), chosen so
/// every accepted PSBT re-encodes within the file limit.
#[test]
fn psbt_file_at_the_size_limit_is_refused_or_round_trips() {
    for encoding in [PsbtEncoding::Hex, PsbtEncoding::Base64] {
        let file = text_file_at_limit(encoding);
        custody_fuzz::do_test_psbt_file(&file);
        if let Ok((raw, found)) = detect_psbt(&file) {
            assert_eq!(found, encoding);
            assert_eq!(
                detect_psbt(&encode_psbt(&raw, encoding)),
                Ok((raw, encoding))
            );
        }
        // The largest PSBT accepted is answered in every encoding.
        let mut raw = vec![0u8; MAX_PSBT_LEN];
        raw[..5].copy_from_slice(b"psbt\xff");
        assert_eq!(
            detect_psbt(&encode_psbt(&raw, encoding)),
            Ok((raw, encoding)),
            "{encoding:?}"
        );
    }
}
