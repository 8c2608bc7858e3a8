//! Pre-generates Paillier primes and writes them, one `PaillierPrimes` secret encoding per
//! line in hex, to stdout. Used to refresh `tests/data/paillier-primes.hex` (test-only
//! material: those primes are public and must never protect a real key).
//!
//! Usage: `cargo run --release -p custody-ecdsa --example pregenerate_primes -- 5`

use std::io::Write;

fn main() -> std::io::Result<()> {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    let mut rng = rand_core::OsRng;
    let mut out = std::io::stdout().lock();
    for i in 0..count {
        let primes = custody_ecdsa::PaillierPrimes::generate(&mut rng, |p| {
            let _ = writeln!(
                std::io::stderr(),
                "set {}: prime {}/{}",
                i + 1,
                p.done,
                p.total
            );
        });
        writeln!(out, "{}", hex::encode(primes.to_secret_bytes().as_slice()))?;
    }
    Ok(())
}
