//! What a warm TLS connection allocates per keep-alive request on the server side (the sans-IO
//! [`TlsSession`] that `ClientTls` drives): counted with the counting allocator around the
//! server's calls only, so the in-memory rustls client's own allocations are not counted.
//!
//! rustls 0.23's connection allocates a buffer for each decrypted record it returns and for each
//! record it encrypts (its `UnbufferedServerConnection` does the same: measured). The README and
//! the exit line say so; this test pins the count, so that a change that adds allocations on the
//! TLS path fails here instead of going unnoticed.
#![allow(clippy::disallowed_methods)] // the test reads its fixtures

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use uringreplay::server::heap;
use uringreplay::tls::{CertAuthority, TlsServer, TlsSession};

#[global_allocator]
static ALLOCATOR: heap::CountingAllocator = heap::CountingAllocator;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mitmproxy-confdir")
}

fn client_config() -> Arc<rustls::ClientConfig> {
    let ca_pem = std::fs::read(fixture_dir().join("mitmproxy-ca-cert.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&ca_pem) {
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

/// A handshaken client and server session; `allocations` counts what the server's calls
/// allocate from here on.
struct Pair {
    client: rustls::ClientConnection,
    server: TlsSession,
    tls: uringreplay::tls::WorkerTls,
    /// The server's plaintext input (what `http1::Conn` would parse), reused.
    plain: Vec<u8>,
    /// The server's TLS output, reused (the write buffer of the driver).
    wire: Vec<u8>,
    allocations: u64,
}

impl Pair {
    fn new() -> Pair {
        let file = fixture_dir().join("mitmproxy-ca.pem");
        let ca = CertAuthority::from_pem(&std::fs::read(&file).unwrap(), file).unwrap();
        let tls = TlsServer::from_parts(ca, &[], false)
            .unwrap()
            .worker()
            .unwrap();
        let name = ServerName::try_from("api.example").unwrap();
        let client = rustls::ClientConnection::new(client_config(), name).unwrap();
        let mut pair = Pair {
            client,
            server: TlsSession::new(None),
            tls,
            plain: Vec::with_capacity(64 * 1024),
            wire: Vec::with_capacity(64 * 1024),
            allocations: 0,
        };
        for _ in 0..32 {
            if !pair.client.is_handshaking() && !pair.server.is_handshaking() {
                break;
            }
            pair.client_to_server();
            pair.server_to_client();
        }
        assert!(!pair.server.is_handshaking(), "the handshake settled");
        // The session tickets the server sends after the handshake.
        pair.server_to_client();
        pair
    }

    /// Moves the client's TLS bytes into the server (counted: the server's receive).
    fn client_to_server(&mut self) {
        let mut bytes = Vec::new();
        while self.client.wants_write() {
            self.client.write_tls(&mut bytes).unwrap();
        }
        if bytes.is_empty() {
            return;
        }
        self.plain.clear();
        let before = heap::thread_allocations();
        self.server
            .receive(&self.tls, &bytes, &mut self.plain)
            .unwrap();
        self.server.read_plaintext(&mut self.plain).unwrap();
        self.allocations += heap::thread_allocations() - before;
    }

    /// Moves the server's TLS bytes to the client (the server's write counted).
    fn server_to_client(&mut self) {
        self.wire.clear();
        let before = heap::thread_allocations();
        self.server.write_tls(&mut self.wire);
        self.allocations += heap::thread_allocations() - before;
        let mut rd = &self.wire[..];
        while !rd.is_empty() {
            self.client.read_tls(&mut rd).unwrap();
            self.client.process_new_packets().unwrap();
        }
    }

    /// One keep-alive request and its answer of `body_len` bytes; returns the client's plaintext.
    fn exchange(&mut self, answer: &[u8]) -> Vec<u8> {
        self.client
            .writer()
            .write_all(b"GET /small HTTP/1.1\r\nHost: api.example\r\n\r\n")
            .unwrap();
        self.client_to_server();
        assert_eq!(
            &self.plain[..],
            b"GET /small HTTP/1.1\r\nHost: api.example\r\n\r\n"
        );
        let before = heap::thread_allocations();
        self.server.write_plaintext(answer).unwrap();
        self.allocations += heap::thread_allocations() - before;
        self.server_to_client();
        let mut got = vec![0; answer.len()];
        self.client.reader().read_exact(&mut got).unwrap();
        got
    }
}

/// Allocations per request over `requests` warm requests answered with `answer`.
fn allocations_per_request(answer: &[u8], requests: u64) -> f64 {
    let mut pair = Pair::new();
    for _ in 0..4 {
        assert_eq!(pair.exchange(answer), answer);
    }
    pair.allocations = 0;
    for _ in 0..requests {
        assert_eq!(pair.exchange(answer), answer);
    }
    pair.allocations as f64 / requests as f64
}

fn answer(body_len: usize) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 200 OK\r\ncontent-length: {body_len}\r\n\r\n").into_bytes();
    out.extend((0..body_len).map(|i| b'a' + (i % 26) as u8));
    out
}

#[test]
fn a_small_tls_request_allocates_at_most_two_buffers_inside_rustls() {
    let per_request = allocations_per_request(&answer(5), 200);
    assert!(
        per_request <= 2.0,
        "{per_request} allocations per small TLS request (rustls' two record buffers were 2.0)"
    );
}

#[test]
fn a_16_kib_tls_answer_allocates_at_most_three_buffers_inside_rustls() {
    // 16 KiB of body and its head: two records out.
    let per_request = allocations_per_request(&answer(16 * 1024), 100);
    assert!(
        per_request <= 3.0,
        "{per_request} allocations per 16 KiB TLS request (rustls' record buffers were 3.0)"
    );
}
