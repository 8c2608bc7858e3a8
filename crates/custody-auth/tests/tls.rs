//! TLS: a real handshake over 127.0.0.1 with a client that trusts only the development
//! certificate, reuse on the next run, and refusals with the file named.

use std::sync::Arc;

use custody_auth::{load_tls, TlsError, TlsSource, DEV_CERT_FILE, DEV_KEY_FILE};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

fn dev(dir: &std::path::Path) -> TlsSource {
    TlsSource::SelfSigned {
        dir: dir.to_owned(),
        hostnames: vec!["localhost".into(), "127.0.0.1".into()],
    }
}

fn client_trusting(cert_pem: &std::path::Path) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert_pem).expect("pem") {
        roots.add(c.expect("cert")).expect("trust anchor");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// Serves one connection: reads a line, answers "pong". Returns the client's result.
async fn exchange(
    server: Arc<rustls::ServerConfig>,
    client: TlsConnector,
    name: &str,
) -> std::io::Result<Vec<u8>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(server);
    let serve = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = acceptor.accept(tcp).await?;
        let mut buf = [0u8; 5];
        tls.read_exact(&mut buf).await?;
        tls.write_all(b"pong\n").await?;
        tls.shutdown().await?;
        Ok::<_, std::io::Error>(buf)
    });
    let tcp = TcpStream::connect(addr).await?;
    let server_name = ServerName::try_from(name.to_owned()).expect("name");
    let result = async {
        let mut tls = client.connect(server_name, tcp).await?;
        tls.write_all(b"ping\n").await?;
        let mut out = Vec::new();
        tls.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    }
    .await;
    let served = serve.await.expect("server task");
    if result.is_ok() {
        assert_eq!(&served.expect("served")[..], b"ping\n");
    }
    result
}

#[tokio::test]
async fn a_generated_certificate_serves_a_pinned_client_and_is_reused() {
    let dir = tempfile::tempdir().expect("dir");
    let tls_dir = dir.path().join("tls");
    let first = load_tls(&dev(&tls_dir)).expect("generated");
    assert!(first.generated);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tls_dir.join(DEV_KEY_FILE))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let fp = first.fingerprint();
    assert_eq!(fp.len(), 32 * 3 - 1);

    let client = client_trusting(&tls_dir.join(DEV_CERT_FILE));
    let answer = exchange(first.config.clone(), client.clone(), "localhost")
        .await
        .expect("handshake");
    assert_eq!(answer, b"pong\n");
    let answer = exchange(first.config.clone(), client.clone(), "127.0.0.1")
        .await
        .expect("by IP");
    assert_eq!(answer, b"pong\n");

    // The next run reuses the same certificate: the pinned client still connects.
    let second = load_tls(&dev(&tls_dir)).expect("reused");
    assert!(!second.generated);
    assert_eq!(second.fingerprint(), fp);
    exchange(second.config, client, "localhost")
        .await
        .expect("same certificate");
}

#[tokio::test]
async fn a_client_trusting_another_certificate_refuses_the_handshake() {
    let dir = tempfile::tempdir().expect("dir");
    let ours = load_tls(&dev(&dir.path().join("a"))).expect("ours");
    let theirs = load_tls(&dev(&dir.path().join("b"))).expect("theirs");
    assert_ne!(ours.fingerprint(), theirs.fingerprint());
    let client = client_trusting(&dir.path().join("b").join(DEV_CERT_FILE));
    let e = exchange(ours.config, client.clone(), "localhost")
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("certificate"), "{e}");
    // The right certificate but a name it was not made for.
    let e = exchange(theirs.config, client, "coinport.example")
        .await
        .expect_err("refused");
    assert!(
        e.to_string().to_lowercase().contains("name") || e.to_string().contains("certificate"),
        "{e}"
    );
}

#[test]
fn configured_files_are_loaded_and_problems_name_the_file() {
    let dir = tempfile::tempdir().expect("dir");
    let dev_dir = dir.path().join("dev");
    let made = load_tls(&dev(&dev_dir)).expect("generated");
    let cert = dev_dir.join(DEV_CERT_FILE);
    let key = dev_dir.join(DEV_KEY_FILE);
    let loaded = load_tls(&TlsSource::Files {
        cert: cert.clone(),
        key: key.clone(),
    })
    .expect("files");
    assert_eq!(loaded.fingerprint(), made.fingerprint());
    assert!(!loaded.generated);

    // Key of another certificate.
    let other = dir.path().join("other");
    load_tls(&dev(&other)).expect("other");
    let e = load_tls(&TlsSource::Files {
        cert: cert.clone(),
        key: other.join(DEV_KEY_FILE),
    })
    .expect_err("mismatch");
    assert!(matches!(e, TlsError::Rustls(_)), "{e}");

    // A certificate file that is not one.
    let e = load_tls(&TlsSource::Files {
        cert: key.clone(),
        key: key.clone(),
    })
    .expect_err("no cert");
    assert!(
        e.to_string().contains(DEV_KEY_FILE) && e.to_string().contains("CERTIFICATE"),
        "{e}"
    );

    // Missing file.
    let e = load_tls(&TlsSource::Files {
        cert: dir.path().join("nope.pem"),
        key,
    })
    .expect_err("missing");
    assert!(e.to_string().contains("nope.pem"), "{e}");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = dev_dir.join(DEV_KEY_FILE);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = load_tls(&TlsSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        })
        .expect_err("world-readable");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        let e = load_tls(&dev(&dev_dir)).expect_err("group-readable dev key");
        assert!(matches!(e, TlsError::KeyPermissions { mode: 0o644, .. }));
    }

    // A leftover half of a development pair is reported, not overwritten.
    std::fs::remove_file(dev_dir.join(DEV_KEY_FILE)).expect("rm");
    let e = load_tls(&dev(&dev_dir)).expect_err("partial");
    assert!(matches!(e, TlsError::PartialDevFiles { .. }), "{e}");
}
