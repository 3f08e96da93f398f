//! TLS towards clients (issue 14) with a real rustls client: a regular-mode HTTPS capture made by
//! mitmproxy replayed through CONNECT, reverse mode over TLS with and without SNI, plain and TLS on
//! one port, `--certs`, a CA created in an empty confdir then reused, failed handshakes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::support::{fixture, run_to_exit, temp_path, Client, Server, PATIENCE};

/// The capture: mitmdump 11.0.2 in regular mode, curl through it to a local HTTPS origin
/// (`https://localhost:29443` and `https://127.0.0.1:29443`), see tests/fixtures/README.md.
const CAPTURE: &str = "mitm-11.0.2-regular-https.flows";

/// The fixture confdir (the CA the capture's client trusted).
fn confdir() -> String {
    fixture("mitmproxy-confdir").display().to_string()
}

/// What the capture answers to `GET /hello?ip=1`.
const HELLO: &[u8] = b"hello over tls: /hello?ip=1\n";

/// `start` with the capture served in reverse mode to its https origin (where nothing listens:
/// misses forwarded there get 502), the fixture confdir, then `extra`.
fn reverse_tls_with(extra: &[&str], start: fn(&[&str]) -> Server) -> Server {
    let capture = fixture(CAPTURE).display().to_string();
    let confdir = format!("confdir={}", confdir());
    let mut args = vec!["-S", &capture, "--mode", "reverse:https://127.0.0.1:29443"];
    args.extend(["--reuse", "--set", &confdir]);
    args.extend_from_slice(extra);
    start(&args)
}

/// [`reverse_tls_with`] started as [`Server::start`] starts (two workers, port 0).
fn reverse_tls(extra: &[&str]) -> Server {
    reverse_tls_with(extra, Server::start)
}

/// A client configuration trusting the CA certificates in `ca_file`, offering `http/1.1`.
fn trusting(ca_file: &Path) -> Arc<ClientConfig> {
    let pem = std::fs::read(ca_file).expect("read the CA certificate");
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.expect("a PEM certificate")).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// The client trusting the fixture confdir's CA.
fn trusting_mitmproxy() -> Arc<ClientConfig> {
    trusting(&fixture("mitmproxy-confdir").join("mitmproxy-ca-cert.pem"))
}

type TlsClient = Client<StreamOwned<ClientConnection, TcpStream>>;

/// Runs the TLS handshake over `tcp` for `name` (a DNS name sends SNI; an IP address does not)
/// and returns an HTTP client over it; panics if the certificate does not verify.
fn tls_over(tcp: TcpStream, config: Arc<ClientConfig>, name: &str) -> TlsClient {
    let stream = handshake(tcp, config, name);
    assert_eq!(stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    Client::over(stream)
}

/// Runs the TLS handshake over `tcp` for `name` (a DNS name sends SNI; an IP address does not);
/// panics if the certificate does not verify.
fn handshake(
    tcp: TcpStream,
    config: Arc<ClientConfig>,
    name: &str,
) -> StreamOwned<ClientConnection, TcpStream> {
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let name = ServerName::try_from(name.to_string()).expect("a server name");
    let mut conn = ClientConnection::new(config, name).unwrap();
    let mut tcp = tcp;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)
            .expect("the TLS handshake completes");
    }
    StreamOwned::new(conn, tcp)
}

/// Sends `CONNECT authority` and checks mitmproxy's answer, byte for byte.
fn connect(server: &Server, authority: &str) -> TcpStream {
    let mut tcp = server.connect();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        tcp,
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: tls-client/1\r\n\r\n"
    )
    .unwrap();
    let expected = b"HTTP/1.1 200 Connection established\r\n\r\n";
    let mut got = vec![0u8; expected.len()];
    tcp.read_exact(&mut got).expect("the CONNECT answer");
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expected)
    );
    tcp
}

fn get(path: &str, host: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: tls-client/1\r\nAccept: */*\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn a_regular_mode_https_capture_by_mitmproxy_replays_through_connect_to_a_client_trusting_its_ca() {
    let capture = fixture(CAPTURE).display().to_string();
    let dir = confdir();
    let server = Server::start(&[
        "-S",
        &capture,
        "--mode",
        "regular",
        "--set",
        &format!("confdir={dir}"),
        "-v",
    ]);
    // SNI localhost: a certificate minted for it, verified against mitmproxy's CA.
    let tunnel = connect(&server, "localhost:29443");
    let mut c = tls_over(tunnel, trusting_mitmproxy(), "localhost");
    let r = c.exchange(&get("/hello", "localhost:29443"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello over tls: /hello\n");
    assert!(
        r.headers
            .iter()
            .any(|(n, v)| n == "Server" && v == "tls-origin/1"),
        "{r:?}"
    );
    let form = b"POST /form HTTP/1.1\r\nHost: localhost:29443\r\nUser-Agent: tls-client/1\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 10\r\n\r\nuser=alice";
    let r = c.exchange(form);
    assert_eq!(r.body, br#"{"got": "user=alice"}"#);
    // The same request twice: the recorded answers in order, on one keep-alive connection.
    let r = c.exchange(&get("/counter", "localhost:29443"));
    assert_eq!(r.body, b"counter=1\n");
    let r = c.exchange(&get("/counter", "localhost:29443"));
    assert_eq!(r.body, b"counter=2\n");
    // An IP address: no SNI, so the certificate is for the CONNECT host, as an IP SAN.
    let tunnel = connect(&server, "127.0.0.1:29443");
    let mut c = tls_over(tunnel, trusting_mitmproxy(), "127.0.0.1");
    let r = c.exchange(&get("/hello?ip=1", "127.0.0.1:29443"));
    assert_eq!(r.body, b"hello over tls: /hello?ip=1\n");
    // The -v lines name the requests as mitmproxy recorded them.
    server.wait_stdout("GET https://127.0.0.1:29443/hello?ip=1 << [replay] 200");
    let out = server.wait_stdout("GET https://localhost:29443/counter << [replay] 200");
    assert!(
        out.contains("POST https://localhost:29443/form << [replay] 200"),
        "{out}"
    );
}

#[test]
fn a_plain_http_tunnel_serves_http_requests_and_tls_without_connect_in_regular_mode_is_https() {
    let capture = fixture(CAPTURE).display().to_string();
    let dir = confdir();
    let server = Server::start(&[
        "-S",
        &capture,
        "--mode",
        "regular",
        "--reuse",
        "--extra",
        "404",
        "--set",
        &format!("confdir={dir}"),
    ]);
    // Plain HTTP inside the tunnel is `http`: the https capture does not match it.
    let tunnel = connect(&server, "localhost:29443");
    let mut c = Client::over(tunnel);
    let r = c.exchange(&get("/hello", "localhost:29443"));
    assert_eq!(r.status, 404);
    // TLS straight to the proxy (no CONNECT): origin-form requests are https to the Host.
    let mut c = tls_over(server.connect(), trusting_mitmproxy(), "localhost");
    let r = c.exchange(&get("/hello", "localhost:29443"));
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"hello over tls: /hello\n"[..])
    );
}

#[test]
fn reverse_mode_answers_tls_with_and_without_sni_and_plain_http_on_the_same_port() {
    let server = reverse_tls(&[]);
    let want = HELLO;
    // With SNI: a certificate for the name the client asked for.
    let mut c = tls_over(server.connect(), trusting_mitmproxy(), "api.example.test");
    let r = c.exchange(&get("/hello?ip=1", "api.example.test"));
    assert_eq!((r.status, r.body.as_slice()), (200, want));
    // Without SNI (an IP address): the reverse target's address as an IP SAN.
    let mut c = tls_over(server.connect(), trusting_mitmproxy(), "127.0.0.1");
    let r = c.exchange(&get("/hello?ip=1", "127.0.0.1"));
    assert_eq!((r.status, r.body.as_slice()), (200, want));
    // Plain HTTP on the same port.
    let mut c = Client::new(&server);
    let r = c.exchange(&get("/hello?ip=1", "127.0.0.1"));
    assert_eq!((r.status, r.body.as_slice()), (200, want));
    // A second TLS connection resumes (rustls keeps the ticket in the client configuration).
    let config = trusting_mitmproxy();
    let mut first = tls_over(server.connect(), config.clone(), "api.example.test");
    assert_eq!(first.exchange(&get("/hello?ip=1", "a")).status, 200);
    let second = tls_over(server.connect(), config, "api.example.test");
    assert_eq!(
        second.stream.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
}

#[test]
fn a_forward_over_tls_hands_the_session_from_the_ring_to_monoio_and_the_replays_go_on() {
    // Misses get 502 after monoio took the connection (its TLS session included) from the ring.
    let server = reverse_tls(&["--admin", "127.0.0.1:0"]);
    let handed_over = || crate::ring::metric(&server, "uringreplay_direct_ring_handed_over_total");
    let want = HELLO;
    let mut c = tls_over(server.connect(), trusting_mitmproxy(), "api.example.test");
    for _ in 0..2 {
        let r = c.exchange(&get("/hello?ip=1", "api.example.test"));
        assert_eq!((r.status, r.body.as_slice()), (200, want));
    }
    assert_eq!(
        handed_over(),
        0,
        "replays over TLS are answered on the ring"
    );
    assert_eq!(
        c.exchange(&get("/not/recorded", "api.example.test")).status,
        502
    );
    assert_eq!(handed_over(), 1);
    let r = c.exchange(&get("/hello?ip=1", "api.example.test"));
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, want),
        "after the hand-over"
    );
    // Pipelined in one write: a replay, a forward, a replay; answered in order, the first on the
    // ring, the others by monoio with the session the ring handed over.
    let mut c = tls_over(server.connect(), trusting_mitmproxy(), "api.example.test");
    let mut requests = get("/hello?ip=1", "api.example.test");
    requests.extend_from_slice(&get("/not/recorded", "api.example.test"));
    requests.extend_from_slice(&get("/hello?ip=1", "api.example.test"));
    c.send(&requests);
    let statuses: Vec<u16> = (0..3).map(|_| c.response(false).status).collect();
    assert_eq!(statuses, [200, 502, 200]);
    assert_eq!(handed_over(), 2);
    assert_eq!(
        crate::ring::metric(&server, "uringreplay_direct_ring_connections_total"),
        2
    );
}

#[test]
fn bytes_after_a_clients_close_notify_are_dropped_and_the_worker_goes_on_serving() {
    let want = HELLO;
    for (tail, driver) in [
        (16, "--direct-ring"),
        (6000, "--direct-ring"),
        (16, "--no-direct-ring"),
        (20_000, "--no-direct-ring"),
    ] {
        // One worker: a loop on this connection would starve the next one.
        let mut args = vec!["-p", "0", "--threads", "1"];
        if driver == "--no-direct-ring" {
            args.push(driver);
        }
        let server = reverse_tls_with(&args, Server::start_exact);
        let mut c = tls_over(server.connect(), trusting_mitmproxy(), "api.example.test");
        let r = c.exchange(&get("/hello?ip=1", "api.example.test"));
        assert_eq!((r.status, r.body.as_slice()), (200, want));
        // close_notify, then more bytes in the same write (6000: past one provided buffer, so
        // in a later completion of the same turn); the TCP connection stays open.
        let stream = &mut c.stream;
        stream.conn.send_close_notify();
        let mut bytes = Vec::new();
        while stream.conn.wants_write() {
            stream.conn.write_tls(&mut bytes).unwrap();
        }
        bytes.extend(std::iter::repeat_n(b'x', tail));
        stream.sock.write_all(&bytes).unwrap();
        // The server ends the connection (its own close_notify, then EOF) ...
        let mut rest = Vec::new();
        let _ = stream.sock.read_to_end(&mut rest);
        // ... and the same worker answers the next one.
        let mut next = tls_over(server.connect(), trusting_mitmproxy(), "api.example.test");
        let r = next.exchange(&get("/hello?ip=1", "api.example.test"));
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, want),
            "after a tail of {tail} ({driver})"
        );
    }
}

/// A self-signed certificate for `names` and its key, in one PEM file (mitmproxy's `certs`).
fn user_cert(names: &[&str]) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    let both = temp_path("user-cert.pem");
    std::fs::write(&both, format!("{}{}", cert.pem(), key.serialize_pem())).unwrap();
    let cert_only = temp_path("user-cert-only.pem");
    std::fs::write(&cert_only, cert.pem()).unwrap();
    (both, cert_only)
}

#[test]
fn certs_serves_the_users_certificate_for_matching_names_and_mints_for_others() {
    let capture = fixture(CAPTURE).display().to_string();
    let (pem, cert_only) = user_cert(&["mine.example.test"]);
    let spec = format!("mine.example.test={}", pem.display());
    let server = Server::start(&[
        "-S",
        &capture,
        "--mode",
        "reverse:https://127.0.0.1:29443",
        "--reuse",
        "--certs",
        &spec,
    ]);
    let mut c = tls_over(server.connect(), trusting(&cert_only), "mine.example.test");
    assert_eq!(c.exchange(&get("/hello?ip=1", "m")).status, 200);
    // Another name gets a leaf signed by the CA of the confdir (here the test home's).
    let mut c = tls_over(server.connect(), trusting_mitmproxy(), "other.example.test");
    assert_eq!(c.exchange(&get("/hello?ip=1", "o")).status, 200);
}

#[test]
fn an_empty_confdir_gets_a_ca_which_the_next_start_reuses() {
    let capture = fixture(CAPTURE).display().to_string();
    let dir = temp_path("confdir");
    let set = format!("confdir={}", dir.display());
    let args = [
        "-S",
        &capture,
        "--mode",
        "reverse:https://127.0.0.1:29443",
        "--reuse",
        "--set",
        &set,
    ];
    let server = Server::start(&args);
    let said = server.wait_stderr("clients must trust");
    assert!(said.contains(&dir.display().to_string()), "{said}");
    let ca_cert = dir.join("mitmproxy-ca-cert.pem");
    let before = std::fs::read(dir.join("mitmproxy-ca.pem")).unwrap();
    let mut c = tls_over(server.connect(), trusting(&ca_cert), "api.example.test");
    assert_eq!(c.exchange(&get("/hello?ip=1", "a")).status, 200);
    let stopped = server.stop();
    assert!(stopped.status.success(), "{}", stopped.stderr);
    // The second start loads it: no new CA, and the same trust works.
    let server = Server::start(&args);
    let mut c = tls_over(server.connect(), trusting(&ca_cert), "api.example.test");
    assert_eq!(c.exchange(&get("/hello?ip=1", "a")).status, 200);
    let stopped = server.stop();
    assert!(
        !stopped.stderr.contains("clients must trust"),
        "{}",
        stopped.stderr
    );
    assert_eq!(std::fs::read(dir.join("mitmproxy-ca.pem")).unwrap(), before);
}

#[test]
fn a_client_aborting_its_handshake_is_logged_and_counted_and_other_connections_go_on() {
    let server = reverse_tls(&["--admin", "127.0.0.1:0", "-v"]);
    // An established TLS connection, before and after the others fail.
    let mut kept = tls_over(server.connect(), trusting_mitmproxy(), "api.example.test");
    assert_eq!(kept.exchange(&get("/hello?ip=1", "a")).status, 200);
    // Half a ClientHello, then the client goes away.
    let mut half = server.connect();
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01])
        .unwrap();
    drop(half);
    server.wait_stdout("TLS handshake failed (SNI none): the client closed the connection");
    // A record header of TLS and garbage after it: the server closes (FIN, at once).
    let mut garbage = server.connect();
    garbage.set_read_timeout(Some(PATIENCE)).unwrap();
    garbage
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, b'h', b'e', b'l', b'l', b'o'])
        .unwrap();
    let mut answer = Vec::new();
    garbage.read_to_end(&mut answer).expect("the server closes");
    server.wait_stdout("HandshakePayloadTooLarge");
    // The same with more bytes after it (past one provided buffer: more completions after the
    // failure): counted once all the same.
    let mut garbage = server.connect();
    garbage.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut bytes = vec![0x16, 0x03, 0x01, 0x00, 0x05, b'h', b'e', b'l', b'l', b'o'];
    bytes.extend(std::iter::repeat_n(b'x', 6000));
    let _ = garbage.write_all(&bytes);
    let _ = garbage.read_to_end(&mut answer);
    // A client that does not trust the certificate aborts the handshake with an alert.
    let untrusting = trusting(&user_cert(&["x.test"]).1);
    let name = ServerName::try_from("api.example.test").unwrap();
    let mut conn = ClientConnection::new(untrusting, name).unwrap();
    let mut tcp = server.connect();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut failed = false;
    while conn.is_handshaking() {
        if conn.complete_io(&mut tcp).is_err() {
            failed = true;
            break;
        }
    }
    assert!(
        failed,
        "an untrusted certificate fails the client's handshake"
    );
    // The client's alert goes out before the close.
    let _ = conn.complete_io(&mut tcp);
    drop(tcp);
    server.wait_stdout("TLS handshake failed (SNI api.example.test)");
    assert_eq!(kept.exchange(&get("/hello?ip=1", "a")).status, 200);
    let metrics = server.admin("GET", "/metrics");
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("uringreplay_tls_handshake_failures_total 4"),
        "{text}"
    );
}

#[test]
fn a_bad_certs_file_or_confdir_stops_start_up_naming_the_file() {
    let capture = fixture(CAPTURE).display().to_string();
    let missing = temp_path("no-such-cert.pem");
    let stopped = run_to_exit(
        &[
            "-S",
            &capture,
            "-p",
            "0",
            "--certs",
            &missing.display().to_string(),
        ],
        |_| {},
    );
    assert!(!stopped.status.success());
    assert!(
        stopped
            .stderr
            .contains(&format!("cannot read {}", missing.display())),
        "{}",
        stopped.stderr
    );
    let dir = temp_path("bad-confdir");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("mitmproxy-ca.pem"), "not a CA\n").unwrap();
    let set = format!("confdir={}", dir.display());
    let stopped = run_to_exit(&["-S", &capture, "-p", "0", "--set", &set], |_| {});
    assert!(!stopped.status.success());
    let file = dir.join("mitmproxy-ca.pem").display().to_string();
    assert!(
        stopped.stderr.contains(&format!("{file} cannot be used")),
        "{}",
        stopped.stderr
    );
}

#[test]
fn an_unmatched_request_in_a_tls_tunnel_is_forwarded_to_https_host_port_with_its_host_kept() {
    let tls = crate::forward::tls_upstream("tunnel");
    let port = tls.upstream.addr.port();
    let capture = fixture(CAPTURE).display().to_string();
    let dir = confdir();
    let ca = tls.ca_file.display().to_string();
    let server = Server::start(&[
        "-S",
        &capture,
        "--mode",
        "regular",
        "--upstream-ca",
        &ca,
        "--set",
        &format!("confdir={dir}"),
    ]);
    let authority = format!("localhost:{port}");
    let tunnel = connect(&server, &authority);
    let mut c = tls_over(tunnel, trusting_mitmproxy(), "localhost");
    let r = c.exchange(&get("/not/recorded", &authority));
    assert_eq!(r.status, 200);
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        format!("tunnel|GET /not/recorded HTTP/1.1|{authority}|")
    );
}

#[test]
fn curl_through_the_proxy_gets_the_recorded_https_answer_when_curl_is_installed() {
    let Ok(version) = std::process::Command::new("curl").arg("--version").output() else {
        eprintln!("curl is not installed: skipped");
        return;
    };
    assert!(version.status.success());
    let capture = fixture(CAPTURE).display().to_string();
    let dir = confdir();
    let server = Server::start(&[
        "-S",
        &capture,
        "--mode",
        "regular",
        "--set",
        &format!("confdir={dir}"),
    ]);
    let proxy = format!("http://{}", server.addr);
    let ca = fixture("mitmproxy-confdir").join("mitmproxy-ca-cert.pem");
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "-x", &proxy, "--cacert"])
        .arg(&ca)
        .args([
            "-H",
            "User-Agent: tls-client/1",
            "https://localhost:29443/hello",
        ])
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"hello over tls: /hello\n");
}

#[test]
fn a_handshake_that_stalls_is_closed_after_the_header_timeout() {
    let capture = fixture(CAPTURE).display().to_string();
    let dir = confdir();
    let server = Server::start(&[
        "-S",
        &capture,
        "--set",
        &format!("confdir={dir}"),
        "--header-timeout",
        "1",
        "-v",
    ]);
    let mut stalled = server.connect();
    stalled.set_read_timeout(Some(PATIENCE)).unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    let mut rest = Vec::new();
    stalled
        .read_to_end(&mut rest)
        .expect("the server closes the stalled handshake");
    assert!(rest.is_empty(), "{rest:?}");
    server.wait_stdout("TLS handshake failed (SNI none): the handshake did not finish in time");
}

#[test]
fn large_and_pipelined_answers_go_out_whole_over_tls() {
    // 300 KiB: many TLS records from one gathered write of the mapping.
    let big: Vec<u8> = (0..300 * 1024).map(|i| (i % 251) as u8).collect();
    let flows = crate::support::FlowFile::new(&[
        uringreplay::flowfile::writer::FlowSpec::get("/big", 200, &big),
        uringreplay::flowfile::writer::FlowSpec::get("/small", 200, b"small"),
    ]);
    let dir = confdir();
    let server = Server::start(&[
        "-S",
        flows.arg(),
        "--mode",
        "reverse:http://127.0.0.1:8080",
        "--reuse",
        "--set",
        &format!("confdir={dir}"),
    ]);
    let mut c = tls_over(server.connect(), trusting_mitmproxy(), "127.0.0.1");
    let r = c.exchange(&get("/big", "127.0.0.1:8080"));
    assert_eq!(r.status, 200);
    assert!(
        r.body == big,
        "the 300 KiB body arrives whole ({} bytes)",
        r.body.len()
    );
    // Three pipelined requests in one TLS record: three answers in order.
    let mut three = get("/small", "a");
    three.extend(get("/big", "a"));
    three.extend(get("/small", "a"));
    c.send(&three);
    assert_eq!(c.response(false).body, b"small");
    assert!(c.response(false).body == big);
    assert_eq!(c.response(false).body, b"small");
}

/// A TCP stream that counts the TLS records it reads (by their 5-byte headers).
struct CountingRecords {
    tcp: TcpStream,
    /// Bytes left of the record being read, then of the next header.
    record_left: usize,
    header: Vec<u8>,
    records: std::rc::Rc<std::cell::Cell<usize>>,
}

impl Read for CountingRecords {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.tcp.read(buf)?;
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            if self.record_left > 0 {
                let take = self.record_left.min(rest.len());
                self.record_left -= take;
                rest = &rest[take..];
                continue;
            }
            let take = (5 - self.header.len()).min(rest.len());
            self.header.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.header.len() == 5 {
                self.record_left =
                    usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                self.header.clear();
                self.records.set(self.records.get() + 1);
            }
        }
        Ok(n)
    }
}

impl Write for CountingRecords {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tcp.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush()
    }
}

#[test]
fn an_answers_head_and_body_go_out_in_one_tls_record_and_a_large_body_in_full_records() {
    let big: Vec<u8> = (0..40 * 1024).map(|i| (i % 251) as u8).collect();
    let flows = crate::support::FlowFile::new(&[
        uringreplay::flowfile::writer::FlowSpec::get("/small", 200, b"small"),
        uringreplay::flowfile::writer::FlowSpec::get("/big", 200, &big),
    ]);
    let dir = confdir();
    let server = Server::start(&[
        "-S",
        flows.arg(),
        "--mode",
        "reverse:http://127.0.0.1:8080",
        "--reuse",
        "--set",
        &format!("confdir={dir}"),
    ]);
    let tcp = server.connect();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let records = std::rc::Rc::new(std::cell::Cell::new(0));
    let mut sock = CountingRecords {
        tcp,
        record_left: 0,
        header: Vec::new(),
        records: records.clone(),
    };
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = ClientConnection::new(trusting_mitmproxy(), name).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)
            .expect("the TLS handshake completes");
    }
    let mut c = Client::over(StreamOwned::new(conn, sock));
    // The first answer may come with the session tickets' records; count the ones after it.
    assert_eq!(c.exchange(&get("/small", "a")).body, b"small");
    let before = records.get();
    assert_eq!(c.exchange(&get("/small", "a")).body, b"small");
    assert_eq!(records.get() - before, 1, "head and body in one record");
    // 40 KiB and a head of less than 16 KiB: three records, not one more per piece.
    let before = records.get();
    assert!(c.exchange(&get("/big", "a")).body == big);
    assert_eq!(records.get() - before, 3);
}

/// A client trusting the fixture CA that offers `h2` before `http/1.1`, as browsers do.
fn offering_h2() -> Arc<ClientConfig> {
    let mut config = (*trusting_mitmproxy()).clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Sends one HTTP/2 GET over `stream` (preface, SETTINGS, HEADERS) and returns the DATA bytes
/// of stream 1 once it ends.
fn h2_get<S: Read + Write>(stream: &mut S, path: &str, authority: &str) -> Vec<u8> {
    use super::h2::{block, frame, read_frames, DATA, END_HEADERS, END_STREAM, HEADERS, SETTINGS};
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(&mut out, SETTINGS, 0, 0, &[]);
    let fields = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", authority),
        (":path", path),
    ];
    frame(
        &mut out,
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &block(&fields),
    );
    stream.write_all(&out).unwrap();
    let mut buf = Vec::new();
    let frames = read_frames(stream, &mut buf, |kind, flags, id, _| {
        id == 1 && flags & END_STREAM != 0 && (kind == DATA || kind == HEADERS)
    });
    frames
        .iter()
        .filter(|f| f.0 == DATA && f.2 == 1)
        .flat_map(|f| f.3.iter().copied())
        .collect()
}

#[test]
fn a_forward_over_alpn_h2_is_relayed_from_the_http1_upstream_into_data_frames() {
    let upstream = crate::support::Upstream::start(
        b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nfrom upstream",
        false,
    );
    let capture = fixture(CAPTURE).display().to_string();
    let mode = format!("reverse:http://{}", upstream.addr);
    let confdir = format!("confdir={}", confdir());
    let args = ["-S", capture.as_str(), "--mode", &mode, "--set", &confdir];
    let server = Server::start(&args);
    let mut stream = handshake(server.connect(), offering_h2(), "api.example.test");
    assert_eq!(stream.conn.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(
        h2_get(&mut stream, "/not/recorded", "api.example.test"),
        b"from upstream"
    );
    let seen = upstream.requests.recv_timeout(PATIENCE).unwrap();
    assert!(seen.starts_with(b"GET /not/recorded HTTP/1.1\r\n"));
}

#[test]
fn alpn_h2_over_tls_replays_over_http2_and_no_http2_keeps_http1() {
    let capture = fixture(CAPTURE).display().to_string();
    let dir = confdir();
    let args = [
        "-S",
        capture.as_str(),
        "--mode",
        "reverse:https://127.0.0.1:29443",
        "--reuse",
        "--set",
        &format!("confdir={dir}"),
    ];
    let want = &b"hello over tls: /hello?ip=1\n"[..];
    let server = Server::start(&args);
    let mut stream = handshake(server.connect(), offering_h2(), "api.example.test");
    assert_eq!(stream.conn.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(h2_get(&mut stream, "/hello?ip=1", "api.example.test"), want);
    // The same client offering h2 gets HTTP/1.1 from a server told --no-http2.
    let mut args = args.to_vec();
    args.push("--no-http2");
    let server = Server::start(&args);
    let stream = handshake(server.connect(), offering_h2(), "api.example.test");
    assert_eq!(stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut c = Client::over(stream);
    let r = c.exchange(&get("/hello?ip=1", "api.example.test"));
    assert_eq!((r.status, r.body.as_slice()), (200, want));
    // And h2c's preface on a plain connection is read as HTTP/1 (a request it rejects).
    let mut plain = server.connect();
    plain.set_read_timeout(Some(PATIENCE)).unwrap();
    plain
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        answer.starts_with(b"HTTP/1.1 4"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[test]
fn a_request_over_tls_gets_its_log_line_with_the_https_url() {
    let capture = fixture(CAPTURE).display().to_string();
    let dir = confdir();
    let log = crate::support::temp_path("tls.jsonl");
    let server = Server::start(&[
        "-S",
        &capture,
        "--mode",
        "reverse:https://127.0.0.1:29443",
        "--reuse",
        "--set",
        &format!("confdir={dir}"),
        "--log-json",
        log.to_str().unwrap(),
    ]);
    let mut c = tls_over(server.connect(), trusting_mitmproxy(), "127.0.0.1");
    let r = c.exchange(&get("/hello?ip=1", "127.0.0.1"));
    assert_eq!(r.status, 200);
    assert!(server.stop().status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["url"], "https://127.0.0.1:29443/hello?ip=1");
    assert_eq!(lines[0]["outcome"], "replayed");
    assert_eq!(lines[0]["http_version"], "HTTP/1.1");
    assert_eq!(lines[0]["bytes"], r.body.len());
    let _ = std::fs::remove_file(&log);
}

#[test]
fn a_tls_client_that_stops_reading_is_reset_after_the_send_timeout() {
    let big = vec![b'x'; 1024 * 1024];
    let flows = crate::support::FlowFile::new(&[uringreplay::flowfile::writer::FlowSpec::get(
        "/big", 200, &big,
    )]);
    let dir = confdir();
    let server = Server::start(&[
        "-S",
        flows.arg(),
        "--mode",
        "reverse:http://127.0.0.1:8080",
        "--reuse",
        "--send-timeout",
        "1",
        "-v",
        "--set",
        &format!("confdir={dir}"),
    ]);
    let mut c = tls_over(server.connect(), trusting_mitmproxy(), "127.0.0.1");
    // 64 MiB asked for and nothing read: the encrypted answers fill the socket buffers.
    c.send(&get("/big", "127.0.0.1:8080").repeat(64));
    server.wait_stdout("took none of its answer for 1 s (--send-timeout)");
    // Another TLS connection is served meanwhile and after.
    let mut other = tls_over(server.connect(), trusting_mitmproxy(), "127.0.0.1");
    assert!(other.exchange(&get("/big", "127.0.0.1:8080")).body == big);
}
