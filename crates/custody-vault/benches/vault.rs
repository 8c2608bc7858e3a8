//! Sealing and opening a typical KYC record (with and without a 200 KB document image)
//! and re-wrapping, beside raw XChaCha20-Poly1305 over the same plaintext bytes, so the
//! envelope's overhead (data key, wrap, serialisation) is visible in one run.

// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use custody_vault::{DocumentImage, DocumentType, KycRecord, Purpose, VaultKeys};

fn record(image_len: usize) -> KycRecord {
    KycRecord {
        full_name: "Zoë Quintessa Marlowe".to_owned(),
        date_of_birth: "1987-03-14".to_owned(),
        address: "12 Rue des Lilas\n75011 Paris\nFrance".to_owned(),
        nationality: "FR".to_owned(),
        document_type: DocumentType::Passport,
        document_number: "X7Q4PL93KD".to_owned(),
        document_images: if image_len == 0 {
            Vec::new()
        } else {
            vec![DocumentImage {
                media_type: "image/jpeg".to_owned(),
                bytes: (0..image_len).map(|i| (i % 251) as u8).collect(),
            }]
        },
    }
}

fn bench(c: &mut Criterion) {
    let mut keys = VaultKeys::generate();
    let id = b"2f1c6a0e-5b7d-4f1e-9a43-8c0d2e6b7a15";
    let raw = XChaCha20Poly1305::new(&[7u8; 32].into());
    let nonce = XNonce::from([9u8; 24]);

    let mut group = c.benchmark_group("kyc");
    for (label, image_len) in [("no_image", 0usize), ("image_200k", 200 * 1024)] {
        let rec = record(image_len);
        let blob = keys.seal_kyc(id, &rec).expect("seals");
        let plain = keys.open(Purpose::KycRecord, id, &blob).expect("opens");
        group.throughput(Throughput::Bytes(plain.len() as u64));

        group.bench_function(BenchmarkId::new("seal_kyc", label), |b| {
            b.iter(|| {
                keys.seal_kyc(black_box(id), black_box(&rec))
                    .expect("seals")
            })
        });
        group.bench_function(BenchmarkId::new("open_kyc", label), |b| {
            b.iter(|| {
                keys.open_kyc(black_box(id), black_box(&blob))
                    .expect("opens")
            })
        });
        group.bench_function(BenchmarkId::new("raw_encrypt", label), |b| {
            b.iter(|| {
                raw.encrypt(
                    &nonce,
                    Payload {
                        msg: black_box(&plain[..]),
                        aad: id,
                    },
                )
                .expect("encrypts")
            })
        });
        let ct = raw
            .encrypt(
                &nonce,
                Payload {
                    msg: &plain[..],
                    aad: id,
                },
            )
            .expect("encrypts");
        group.bench_function(BenchmarkId::new("raw_decrypt", label), |b| {
            b.iter(|| {
                raw.decrypt(
                    &nonce,
                    Payload {
                        msg: black_box(&ct[..]),
                        aad: id,
                    },
                )
                .expect("decrypts")
            })
        });
        let text = blob.to_text();
        group.bench_function(BenchmarkId::new("text_decode_open", label), |b| {
            b.iter(|| {
                let blob = custody_vault::SealedBlob::from_text(black_box(&text)).expect("decodes");
                keys.open_kyc(id, &blob).expect("opens")
            })
        });
    }
    group.finish();

    let blob = keys.seal_kyc(id, &record(200 * 1024)).expect("seals");
    keys.add_kek().expect("rotates");
    let mut group = c.benchmark_group("rotation");
    group.bench_function("rewrap_image_200k", |b| {
        b.iter(|| {
            keys.rewrap(Purpose::KycRecord, black_box(id), black_box(&blob))
                .expect("rewraps")
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
