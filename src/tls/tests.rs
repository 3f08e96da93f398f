//! TLS handshakes in memory between a rustls client and [`TlsSession`], against the CA mitmproxy
//! 12.3.1 created in `tests/fixtures/mitmproxy-confdir`.
#![allow(clippy::disallowed_methods)] // tests read their fixtures

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use super::*;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mitmproxy-confdir")
}

fn fixture_ca() -> CertAuthority {
    let file = fixture_dir().join("mitmproxy-ca.pem");
    CertAuthority::from_pem(&std::fs::read(&file).unwrap(), file).unwrap()
}

fn fixture_server() -> TlsServer {
    TlsServer::from_parts(fixture_ca(), &[], false).unwrap()
}

/// A rustls client trusting only the certificates of `ca_pem`.
fn client_config(ca_pem: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

fn fixture_client() -> Arc<rustls::ClientConfig> {
    client_config(&std::fs::read(fixture_dir().join("mitmproxy-ca-cert.pem")).unwrap())
}

/// Moves bytes both ways until neither side has anything to send (bounded); the server's
/// plaintext collects in `server_plain`. Returns the server's error, if any.
fn pump(
    client: &mut rustls::ClientConnection,
    server: &mut TlsSession,
    tls: &WorkerTls,
    server_plain: &mut Vec<u8>,
) -> Result<(), TlsSessionError> {
    for _ in 0..32 {
        let mut to_server = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut to_server).unwrap();
        }
        if !to_server.is_empty() {
            server.receive(tls, &to_server, server_plain)?;
            server.read_plaintext(server_plain)?;
        }
        let mut to_client = Vec::new();
        server.write_tls(&mut to_client);
        if !to_client.is_empty() {
            let mut rd = &to_client[..];
            while !rd.is_empty() {
                client.read_tls(&mut rd).unwrap();
                client.process_new_packets().map_err(TlsSessionError::Tls)?;
            }
        }
        if to_server.is_empty() && to_client.is_empty() {
            return Ok(());
        }
    }
    panic!("the handshake did not settle in 32 rounds");
}

/// A client of `api.example` and the server's session, their handshake done.
fn handshaken(tls: &WorkerTls) -> (rustls::ClientConnection, TlsSession) {
    let name = ServerName::try_from("api.example").unwrap();
    let mut client = rustls::ClientConnection::new(fixture_client(), name).unwrap();
    let mut session = TlsSession::new(None);
    pump(&mut client, &mut session, tls, &mut Vec::new()).unwrap();
    (client, session)
}

fn client_plain(client: &mut rustls::ClientConnection) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match client.reader().read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => return out,
        }
    }
}

#[test]
fn an_http11_exchange_runs_over_a_minted_certificate_that_mitmproxys_ca_verifies() {
    let server = fixture_server();
    let tls = server.worker().unwrap();
    let name = ServerName::try_from("api.example").unwrap();
    let mut client = rustls::ClientConnection::new(fixture_client(), name).unwrap();
    let mut session = TlsSession::new(None);
    client
        .writer()
        .write_all(b"GET /a HTTP/1.1\r\nHost: api.example\r\n\r\n")
        .unwrap();
    let mut plain = Vec::new();
    pump(&mut client, &mut session, &tls, &mut plain).unwrap();
    assert!(!session.is_handshaking());
    assert_eq!(session.sni(), Some("api.example"));
    assert_eq!(session.alpn(), Some(&b"http/1.1"[..]));
    assert_eq!(client.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(plain, b"GET /a HTTP/1.1\r\nHost: api.example\r\n\r\n");
    session
        .write_plaintext(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        .unwrap();
    pump(&mut client, &mut session, &tls, &mut plain).unwrap();
    assert_eq!(
        client_plain(&mut client),
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    );
    // The leaf is mitmproxy's dummy_cert: CN and SAN the name, issuer the CA's subject, 199 days.
    let certs = client.peer_certificates().unwrap();
    assert_eq!(certs.len(), 1, "the leaf alone, as mitmproxy sends it");
    let (_, leaf) = x509_parser::parse_x509_certificate(&certs[0]).unwrap();
    assert_eq!(leaf.subject().to_string(), "CN=api.example");
    assert_eq!(leaf.issuer().to_string(), "CN=mitmproxy, O=mitmproxy");
    let days =
        (leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp()) / 86400;
    assert_eq!(days, 199);
    assert_eq!(tls.resolver.cached(), 1);
}

#[test]
fn more_than_rustls_buffers_in_one_receive_all_comes_out() {
    let server = fixture_server();
    let tls = server.worker().unwrap();
    let (mut client, mut session) = handshaken(&tls);
    // 100 KiB of requests in records, handed over in one read (rustls holds 16 KiB unread).
    let data: Vec<u8> = (0..100 * 1024).map(|i| (i % 251) as u8).collect();
    let mut wire = Vec::new();
    for chunk in data.chunks(16 * 1024) {
        client.writer().write_all(chunk).unwrap();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
    }
    assert!(wire.len() > 100 * 1024);
    let mut got = Vec::new();
    session.receive(&tls, &wire, &mut got).unwrap();
    session.read_plaintext(&mut got).unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data);
    // The client's close_notify ends the stream.
    client.send_close_notify();
    let mut wire = Vec::new();
    client.write_tls(&mut wire).unwrap();
    session.receive(&tls, &wire, &mut got).unwrap();
    assert_eq!(session.read_plaintext(&mut got).unwrap(), 0);
    assert!(session.peer_closed());
}

#[test]
fn a_hello_without_sni_gets_the_fallback_identity_as_an_ip_san() {
    let server = fixture_server();
    let tls = server.worker().unwrap();
    // rustls sends no SNI for an IP address.
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut client = rustls::ClientConnection::new(fixture_client(), name).unwrap();
    let mut session = TlsSession::new(Identity::from_host("127.0.0.1"));
    let mut plain = Vec::new();
    pump(&mut client, &mut session, &tls, &mut plain).unwrap();
    assert!(!client.is_handshaking());
    assert_eq!(session.sni(), None);
    let (_, leaf) =
        x509_parser::parse_x509_certificate(&client.peer_certificates().unwrap()[0]).unwrap();
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    assert_eq!(
        format!("{:?}", san.value.general_names),
        "[IPAddress([127, 0, 0, 1])]"
    );

    // Without a fallback there is nothing to answer: a typed error and an alert, no panic.
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut client = rustls::ClientConnection::new(fixture_client(), name).unwrap();
    let mut session = TlsSession::new(None);
    let err = pump(&mut client, &mut session, &tls, &mut plain).unwrap_err();
    assert!(matches!(err, TlsSessionError::NoCertificate(_)), "{err}");
    assert!(session.failed());
}

#[test]
fn leaves_are_minted_once_per_name_and_cached_per_worker() {
    let server = fixture_server();
    let tls = server.worker().unwrap();
    let a = Identity::from_host("a.example").unwrap();
    let first = tls.resolver.certificate_for(&a).unwrap();
    let again = tls.resolver.certificate_for(&a).unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    let b = tls
        .resolver
        .certificate_for(&Identity::from_host("[::1]").unwrap())
        .unwrap();
    assert!(!Arc::ptr_eq(&first, &b));
    // One leaf key: both leaves carry the same public key, so minting cost one signature each.
    assert!(Arc::ptr_eq(&first.key, &b.key));
    assert_eq!(tls.resolver.cached(), 2);
    // Another worker has its own cache.
    assert_eq!(server.worker().unwrap().resolver.cached(), 0);
    assert_eq!(
        Identity::from_host("A.Example"),
        Some(Identity::Dns("a.example".into()))
    );
    assert_eq!(Identity::from_host("bad name!"), None);
}

#[test]
fn garbage_after_the_tls_magic_is_a_handshake_error_and_a_failed_session() {
    let server = fixture_server();
    let tls = server.worker().unwrap();
    let mut session = TlsSession::new(None);
    let mut garbage = vec![0x16, 0x03, 0x01, 0x00, 0x05];
    garbage.extend_from_slice(b"hello");
    let err = session
        .receive(&tls, &garbage, &mut Vec::new())
        .unwrap_err();
    assert!(matches!(err, TlsSessionError::Handshake(_)), "{err}");
    assert!(session.failed());
    // Nothing more is read from a failed session.
    session.receive(&tls, b"more", &mut Vec::new()).unwrap();
    assert_eq!(session.read_plaintext(&mut Vec::new()).unwrap(), 0);
    // A client that stops in the middle of its hello.
    let mut session = TlsSession::new(None);
    session
        .receive(&tls, &[0x16, 0x03, 0x01, 0x01], &mut Vec::new())
        .unwrap();
    assert!(matches!(
        session.receive(&tls, &[], &mut Vec::new()),
        Err(TlsSessionError::Truncated)
    ));
}

#[test]
fn a_second_connection_resumes_with_a_ticket() {
    let server = fixture_server();
    let tls = server.worker().unwrap();
    let config = fixture_client();
    for round in 0..2 {
        let name = ServerName::try_from("api.example").unwrap();
        let mut client = rustls::ClientConnection::new(config.clone(), name).unwrap();
        let mut session = TlsSession::new(None);
        let mut plain = Vec::new();
        pump(&mut client, &mut session, &tls, &mut plain).unwrap();
        // Another worker's connection: tickets are shared by all workers.
        let kind = client.handshake_kind().unwrap();
        if round == 0 {
            assert_eq!(kind, rustls::HandshakeKind::Full);
        } else {
            assert_eq!(kind, rustls::HandshakeKind::Resumed);
        }
    }
}

#[test]
fn offering_h2_puts_it_first() {
    let server = TlsServer::from_parts(fixture_ca(), &[], true).unwrap();
    let tls = server.worker().unwrap();
    assert_eq!(
        tls.config.alpn_protocols,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    assert_eq!(
        fixture_server().worker().unwrap().config.alpn_protocols,
        vec![b"http/1.1".to_vec()]
    );
}

#[test]
fn an_empty_confdir_gets_a_ca_as_mitmproxy_creates_it_which_is_then_reused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let confdir = dir.path().join("conf");
    let options = TlsOptions {
        confdir: Some(confdir.clone()),
        ..TlsOptions::default()
    };
    let created = TlsServer::new(&options, false).unwrap();
    assert_eq!(created.ca_origin(), CaOrigin::Created);
    assert_eq!(created.ca_file(), confdir.join("mitmproxy-ca.pem"));
    assert_eq!(
        created.ca_line(),
        format!(
            "TLS: no mitmproxy CA in {d}: created one there ({d}/mitmproxy-ca.pem); clients must trust {d}/mitmproxy-ca-cert.pem",
            d = confdir.display()
        )
    );
    let mode = |name: &str| {
        std::fs::metadata(confdir.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("mitmproxy-ca.pem"), 0o600);
    assert_eq!(
        mode("mitmproxy-ca-cert.pem") & 0o077,
        0o044 & mode("mitmproxy-ca-cert.pem")
    );
    let cert_pem = std::fs::read(confdir.join("mitmproxy-ca-cert.pem")).unwrap();
    assert_eq!(
        std::fs::read(confdir.join("mitmproxy-ca-cert.cer")).unwrap(),
        cert_pem
    );
    assert_eq!(
        std::fs::read(confdir.join("mitmproxy-dhparam.pem")).unwrap(),
        std::fs::read(fixture_dir().join("../../../src/tls/mitmproxy-dhparam.pem")).unwrap()
    );
    let key_pem = std::fs::read_to_string(confdir.join("mitmproxy-ca.pem")).unwrap();
    assert!(
        key_pem.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"),
        "{key_pem}"
    );
    let der = CertificateDer::from_pem_slice(&cert_pem).unwrap();
    let (_, ca) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(ca.subject().to_string(), "CN=mitmproxy, O=mitmproxy");
    assert_eq!(ca.issuer().to_string(), "CN=mitmproxy, O=mitmproxy");
    assert!(ca.is_ca());
    assert_eq!(
        ca.public_key().parsed().unwrap().key_size(),
        2048,
        "RSA 2048, mitmproxy's key_size"
    );
    let days = (ca.validity().not_after.timestamp() - ca.validity().not_before.timestamp()) / 86400;
    assert_eq!(days, 3650);
    let ku = ca.key_usage().unwrap().unwrap();
    assert!(ku.critical && ku.value.key_cert_sign() && ku.value.crl_sign());
    assert!(!ku.value.digital_signature());
    assert!(ca.basic_constraints().unwrap().unwrap().critical);

    // A client trusting the new mitmproxy-ca-cert.pem accepts the minted leaves.
    let tls = created.worker().unwrap();
    let name = ServerName::try_from("new.example").unwrap();
    let mut client = rustls::ClientConnection::new(client_config(&cert_pem), name).unwrap();
    let mut session = TlsSession::new(None);
    pump(&mut client, &mut session, &tls, &mut Vec::new()).unwrap();
    assert!(!client.is_handshaking());

    // The second start loads it, unchanged.
    let loaded = TlsServer::new(&options, false).unwrap();
    assert_eq!(loaded.ca_origin(), CaOrigin::Loaded);
    assert_eq!(
        loaded.ca_line(),
        format!(
            "TLS: leaf certificates signed by mitmproxy's CA from {}/mitmproxy-ca.pem",
            confdir.display()
        )
    );
    assert_eq!(loaded.minter.ca().cert, der);
    assert_eq!(
        std::fs::read(confdir.join("mitmproxy-ca-cert.pem")).unwrap(),
        cert_pem
    );
}

#[test]
fn a_bad_ca_file_is_an_error_naming_the_file_and_the_fault() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mitmproxy-ca.pem");
    let check = |contents: &[u8], fault: &str| {
        std::fs::write(&file, contents).unwrap();
        let err = TlsServer::new(
            &TlsOptions {
                confdir: Some(dir.path().into()),
                ..TlsOptions::default()
            },
            false,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{} cannot be used: {fault}", file.display())
        );
    };
    check(b"garbage\n", "it holds no certificate (BEGIN CERTIFICATE)");
    let fixture = std::fs::read_to_string(fixture_dir().join("mitmproxy-ca.pem")).unwrap();
    let cert_only = std::fs::read(fixture_dir().join("mitmproxy-ca-cert.pem")).unwrap();
    check(
        &cert_only,
        "it holds no private key (BEGIN RSA PRIVATE KEY or BEGIN PRIVATE KEY)",
    );
    // The fixture's key with another CA's certificate.
    let other = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other_cert = params.self_signed(&other).unwrap();
    let key_part = &fixture[..fixture.find("-----BEGIN CERTIFICATE-----").unwrap()];
    check(
        format!("{key_part}{}", other_cert.pem()).as_bytes(),
        "its private key does not belong to its certificate",
    );
    // A directory that cannot be created.
    let err = TlsServer::new(
        &TlsOptions {
            confdir: Some(file.join("sub")),
            ..TlsOptions::default()
        },
        false,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("cannot write {}", file.join("sub").display())),
        "{err}"
    );
}

/// A `--certs` file: a certificate for `names` (signed by a throwaway CA) and its key.
fn user_cert_pem(names: &[&str]) -> (String, rcgen::Certificate) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap()
            .self_signed(&key)
            .unwrap();
    (format!("{}{}", cert.pem(), key.serialize_pem()), cert)
}

#[test]
fn certs_are_served_for_matching_names_as_mitmproxy_matches_them() {
    let (wild, wild_cert) = user_cert_pem(&["*.example.com"]);
    let (exact, exact_cert) = user_cert_pem(&["exact.test"]);
    let (any, any_cert) = user_cert_pem(&["whatever"]);
    let specs = vec![
        (CertSpec::parse("/x/wild.pem"), wild.into_bytes()),
        (CertSpec::parse("/x/exact.pem"), exact.into_bytes()),
        (CertSpec::parse("*=/x/any.pem"), any.into_bytes()),
    ];
    assert_eq!(specs[2].0.domain.as_deref(), Some("*"));
    assert_eq!(specs[2].0.file, PathBuf::from("/x/any.pem"));
    let server = TlsServer::from_parts(fixture_ca(), &specs, false).unwrap();
    let tls = server.worker().unwrap();
    let served = |host: &str| {
        tls.resolver
            .certificate_for(&Identity::from_host(host).unwrap())
            .unwrap()
            .cert[0]
            .clone()
    };
    assert_eq!(served("www.example.com"), *wild_cert.der());
    assert_eq!(
        served("a.b.example.com"),
        *wild_cert.der(),
        "*.example.com is an asterisk form"
    );
    assert_eq!(served("exact.test"), *exact_cert.der());
    assert_eq!(
        served("other.test"),
        *any_cert.der(),
        "* matches every name"
    );
    assert_eq!(tls.resolver.cached(), 0, "nothing minted");

    // Without `*`, an unmatched name gets a minted leaf.
    let server = TlsServer::from_parts(fixture_ca(), &specs[..1], false).unwrap();
    let tls = server.worker().unwrap();
    let minted = tls
        .resolver
        .certificate_for(&Identity::from_host("other.test").unwrap())
        .unwrap();
    assert_ne!(minted.cert[0], *wild_cert.der());
}

#[test]
fn a_bad_certs_file_is_an_error_naming_the_file_and_the_fault() {
    let (pem, cert) = user_cert_pem(&["a.test"]);
    let other_key = rcgen::KeyPair::generate().unwrap();
    let cases: [(Vec<u8>, &str); 3] = [
        (
            b"nothing".to_vec(),
            "it holds no certificate (BEGIN CERTIFICATE)",
        ),
        (
            cert.pem().into_bytes(),
            "it holds no private key (BEGIN PRIVATE KEY)",
        ),
        (
            format!("{}{}", cert.pem(), other_key.serialize_pem()).into_bytes(),
            "its private key does not belong to its first certificate",
        ),
    ];
    for (contents, fault) in cases {
        let spec = CertSpec::parse("a.test=/etc/mine.pem");
        let err = TlsServer::from_parts(fixture_ca(), &[(spec, contents)], false).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("/etc/mine.pem cannot be used: {fault}")
        );
    }
    assert!(TlsServer::from_parts(
        fixture_ca(),
        &[(CertSpec::parse("/etc/mine.pem"), pem.into_bytes())],
        false
    )
    .is_ok());
    let err = TlsServer::new(
        &TlsOptions {
            confdir: Some(fixture_dir()),
            certs: vec![CertSpec::parse("/nonexistent/mine.pem")],
        },
        false,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot read /nonexistent/mine.pem: "),
        "{err}"
    );
}

#[test]
fn written_records_past_the_keep_size_give_their_memory_back_and_small_ones_keep_it() {
    let mut large = vec![0u8; 4 * session::RECORDS_KEEP];
    session::recycle_records(&mut large);
    assert!(large.is_empty());
    assert_eq!(large.capacity(), 0);
    let mut small = Vec::with_capacity(session::RECORDS_KEEP);
    small.extend_from_slice(&[1, 2, 3]);
    session::recycle_records(&mut small);
    assert!(small.is_empty());
    assert_eq!(small.capacity(), session::RECORDS_KEEP);
}

#[test]
fn bytes_after_a_close_notify_are_dropped_in_the_same_receive_and_in_later_ones() {
    let server = fixture_server();
    let tls = server.worker().unwrap();
    let (mut client, mut session) = handshaken(&tls);
    let mut plain = Vec::new();
    client.writer().write_all(b"before").unwrap();
    client.send_close_notify();
    let mut wire = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut wire).unwrap();
    }
    wire.extend_from_slice(&[b'x'; 100]);
    // rustls takes nothing after the close_notify: the receive returns (it looped before).
    session.receive(&tls, &wire, &mut plain).unwrap();
    session.read_plaintext(&mut plain).unwrap();
    assert_eq!(plain, b"before");
    assert!(session.peer_closed());
    session.receive(&tls, &[b'y'; 5000], &mut plain).unwrap();
    assert_eq!(plain, b"before");
}
