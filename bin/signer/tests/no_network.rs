//! The signer runs air-gapped: no networking crate may be linked into it.

use std::process::Command;

const FORBIDDEN: &[&str] = &["tokio", "hyper", "reqwest", "axum", "mio", "socket2"];

#[test]
fn the_signer_links_no_networking_crates() {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "custody-signer",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    // The tree is real: it holds the crates the signer is made of.
    assert!(crates.contains(&"custody-keystore"), "{tree}");
    let found: Vec<&&str> = FORBIDDEN.iter().filter(|f| crates.contains(f)).collect();
    assert!(
        found.is_empty(),
        "networking crates linked into the signer: {found:?}"
    );
}
