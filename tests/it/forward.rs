//! Unmatched requests forwarded to loopback upstreams written here: plain and TLS, pooled,
//! streamed, and every failure answered with a 502/504 naming the upstream.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use uringreplay::flowfile::writer::FlowSpec;

use crate::support::{closed_port, fixture, get, Client, FlowFile, Server, Upstream, PATIENCE};

/// A recording with one flow, `GET /recorded` → 200 "recorded".
fn recording() -> FlowFile {
    FlowFile::new(&[FlowSpec::get("/recorded", 200, b"recorded")])
}

/// A loopback upstream that runs `handler` on each connection in its own thread and counts
/// connections.
pub struct TestUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    closing: Arc<std::sync::atomic::AtomicBool>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl TestUpstream {
    /// Stops listening (the port refuses connections afterwards); connections already accepted
    /// keep being served by their threads.
    pub fn close(mut self) {
        self.closing.store(true, Ordering::SeqCst);
        // Wake the accept loop, which sees the flag and drops the listener.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            acceptor.join().unwrap();
        }
    }

    fn start<S: Read + Write + 'static>(
        wrap: impl Fn(TcpStream) -> Option<S> + Send + Sync + 'static,
        handler: impl Fn(&mut S) + Send + Sync + 'static,
    ) -> TestUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        let (wrap, handler) = (Arc::new(wrap), Arc::new(handler));
        let closing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let closed = closing.clone();
        let acceptor = thread::spawn(move || {
            for conn in listener.incoming() {
                if closed.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { return };
                conn.set_read_timeout(Some(PATIENCE)).unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let (wrap, handler) = (wrap.clone(), handler.clone());
                thread::spawn(move || {
                    if let Some(mut s) = wrap(conn) {
                        handler(&mut s);
                    }
                });
            }
        });
        TestUpstream {
            addr,
            connections,
            closing,
            acceptor: Some(acceptor),
        }
    }

    /// A plain-HTTP upstream running `handler` on each connection.
    pub fn plain(handler: impl Fn(&mut TcpStream) + Send + Sync + 'static) -> TestUpstream {
        TestUpstream::start(Some, handler)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// `reverse:SCHEME://ADDR`, the `--mode` that targets it.
    pub fn reverse(&self, scheme: &str) -> String {
        format!("reverse:{scheme}://{}", self.addr)
    }
}

/// Reads one request (head, and a Content-Length body); `None` at EOF.
pub fn read_request(s: &mut (impl Read + ?Sized)) -> Option<(String, Vec<u8>)> {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8(head).unwrap();
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    s.read_exact(&mut body).ok()?;
    Some((head, body))
}

/// Answers every request with `NAME|request line|Host value|body`, keeping the connection.
fn echo(name: &'static str) -> impl Fn(&mut dyn ReadWrite) + Send + Sync + 'static {
    move |s| {
        while let Some((head, body)) = read_request(s) {
            let line = head.lines().next().unwrap();
            let host = head
                .lines()
                .find_map(|l| {
                    l.split_once(':')
                        .filter(|(n, _)| n.eq_ignore_ascii_case("host"))
                        .map(|(_, v)| v.trim().to_string())
                })
                .unwrap_or_default();
            let text = format!("{name}|{line}|{host}|{}", String::from_utf8_lossy(&body));
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                text.len()
            );
            if s.write_all(response.as_bytes()).is_err() {
                return;
            }
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn echo_upstream(name: &'static str) -> TestUpstream {
    let echo = echo(name);
    TestUpstream::plain(move |s| echo(s))
}

fn body_text(c: &mut Client, request: &[u8]) -> (u16, String) {
    let r = c.exchange(request);
    (r.status, String::from_utf8(r.body).unwrap())
}

#[test]
fn unmatched_requests_are_forwarded_to_the_reverse_upstream_with_its_host() {
    let upstream = Upstream::start(
        b"HTTP/1.1 201 Created\r\nContent-Length: 8\r\n\r\nupstream",
        false,
    );
    let path = fixture("demo.flows");
    let mode = format!("reverse:http://{}", upstream.addr);
    let server = Server::start(&[
        "-S",
        path.to_str().unwrap(),
        "--mode",
        &mode,
        "--ignore-port",
    ]);
    let mut c = Client::new(&server);
    assert_eq!(
        c.exchange(&get("/hello")).body,
        b"hello world\n",
        "replayed, upstream untouched"
    );
    assert!(
        upstream.requests.try_recv().is_err(),
        "lazy: no upstream contact for a replay"
    );
    let r = c.exchange(b"POST /new?x=1 HTTP/1.1\r\nHost: client.example\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n");
    assert_eq!((r.status, r.body.as_slice()), (201, &b"upstream"[..]));
    let seen = upstream
        .requests
        .recv_timeout(crate::support::PATIENCE)
        .unwrap();
    let seen = String::from_utf8(seen).unwrap();
    assert!(seen.starts_with("POST /new?x=1 HTTP/1.1\r\n"), "{seen}");
    assert!(
        seen.contains(&format!("Host: {}\r\n", upstream.addr)),
        "{seen}"
    );
    assert!(
        seen.contains("Content-Length: 2\r\n") && seen.ends_with("\r\n\r\nhi"),
        "{seen}"
    );
    assert_eq!(
        c.exchange(&get("/missing")).status,
        404,
        "kept alive after a framed forward"
    );
    let stopped = server.stop();
    assert!(stopped.stderr.contains("forwarded 1"), "{}", stopped.stderr);
}

#[test]
fn forwarded_gets_and_posts_share_one_pooled_upstream_connection() {
    let upstream = echo_upstream("up");
    let flows = recording();
    let mode = upstream.reverse("http");
    let server = Server::start(&["-S", flows.arg(), "--mode", &mode, "--ignore-port"]);
    let mut c = Client::new(&server);
    let host = upstream.addr.to_string();
    for i in 0..5 {
        let (status, body) = body_text(&mut c, &get(&format!("/get/{i}")));
        assert_eq!(status, 200);
        assert_eq!(body, format!("up|GET /get/{i} HTTP/1.1|{host}|"));
    }
    let (status, body) = body_text(
        &mut c,
        b"POST /post HTTP/1.1\r\nHost: client.example\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert_eq!(
        (status, body.as_str()),
        (200, &*format!("up|POST /post HTTP/1.1|{host}|hello"))
    );
    let (status, body) = body_text(
        &mut c,
        b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    );
    assert_eq!(
        (status, body.as_str()),
        (200, &*format!("up|POST /chunked HTTP/1.1|{host}|abcde"))
    );
    assert_eq!(
        body_text(&mut c, &get("/recorded")),
        (200, "recorded".to_string())
    );
    assert_eq!(upstream.connections(), 1, "one pooled upstream connection");
    let stopped = server.stop();
    assert!(
        stopped.stderr.contains("forwarded 7,") && stopped.stderr.contains("upstream errors 0"),
        "{}",
        stopped.stderr
    );
}

#[test]
fn keep_host_header_sends_the_clients_host() {
    let upstream = echo_upstream("up");
    let flows = recording();
    let mode = upstream.reverse("http");
    let server = Server::start(&["-S", flows.arg(), "--mode", &mode, "--keep-host-header"]);
    let mut c = Client::new(&server);
    let (_, body) = body_text(
        &mut c,
        b"GET /k HTTP/1.1\r\nHost: client.example:81\r\n\r\n",
    );
    assert_eq!(body, "up|GET /k HTTP/1.1|client.example:81|");
}

#[test]
fn chunked_and_until_close_upstream_responses_are_relayed() {
    let upstream = TestUpstream::plain(|s| {
        while let Some((head, _)) = read_request(s) {
            if head.starts_with("GET /chunked ") {
                let _ =
                    s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nchun");
                let _ = s.flush();
                let _ = s.write_all(b"\r\n3\r\nked\r\n0\r\n\r\n");
            } else {
                let _ = s.write_all(b"HTTP/1.0 200 OK\r\nX-Framing: none\r\n\r\nuntil the end");
                return;
            }
        }
    });
    let flows = recording();
    let mode = upstream.reverse("http");
    let server = Server::start(&["-S", flows.arg(), "--mode", &mode]);
    let mut c = Client::new(&server);
    let r = c.exchange(&get("/chunked"));
    assert_eq!((r.status, r.body.as_slice()), (200, &b"chunked"[..]));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    c.send(&get("/eof"));
    let text = String::from_utf8(c.read_to_close()).unwrap();
    assert_eq!(
        text,
        "HTTP/1.1 200 OK\r\nX-Framing: none\r\nconnection: close\r\n\r\nuntil the end"
    );
}

/// The server's peak resident memory so far, in KiB.
fn peak_kib(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

#[test]
fn a_ten_mib_upstream_response_streams_through_in_bounded_memory() {
    const TOTAL: usize = 10 * 1024 * 1024;
    let upstream = TestUpstream::plain(|s| {
        while let Some((head, _)) = read_request(s) {
            let size = if head.starts_with("GET /big ") {
                TOTAL
            } else {
                1024
            };
            let _ = s
                .write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n").as_bytes());
            let block = vec![b'z'; 64 * 1024];
            let mut left = size;
            while left > 0 {
                let n = left.min(block.len());
                if s.write_all(&block[..n]).is_err() {
                    return;
                }
                left -= n;
            }
        }
    });
    let flows = recording();
    let mode = upstream.reverse("http");
    let server = Server::start(&["-S", flows.arg(), "--mode", &mode]);
    let mut c = Client::new(&server);
    // Warm up: the forwarding path's code and buffers are touched once.
    assert_eq!(c.exchange(&get("/small")).body.len(), 1024);
    let before = peak_kib(&server);
    let r = c.exchange(&get("/big"));
    assert_eq!(r.body.len(), TOTAL);
    assert!(r.body.iter().all(|&b| b == b'z'));
    let grown = peak_kib(&server) - before;
    // Buffering the body whole would add 10 MiB; streaming keeps a few read buffers.
    assert!(
        grown < 2048,
        "peak memory grew by {grown} KiB relaying 10 MiB"
    );
}

#[test]
fn every_upstream_failure_is_a_502_or_504_and_the_client_connection_survives() {
    // Refused: nothing listens.
    let refused_port = closed_port();
    // Timeout: accepts, reads, never answers (until the test ends).
    let (release, wait) = mpsc::channel::<()>();
    let wait = Mutex::new(wait);
    let silent = TestUpstream::plain(move |s| {
        let _ = read_request(s);
        let _ = wait.lock().unwrap().recv_timeout(PATIENCE);
    });
    // Bad response.
    let garbage = TestUpstream::plain(|s| {
        let _ = read_request(s);
        let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n");
    });
    // TLS failure: a plain HTTP server behind an https target.
    let not_tls = TestUpstream::plain(|s| {
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    });
    let flows = recording();
    let cases = [
        (
            format!("reverse:http://127.0.0.1:{refused_port}"),
            "502 Bad Gateway",
            format!("upstream 127.0.0.1:{refused_port}: connection refused"),
        ),
        (
            silent.reverse("http"),
            "504 Gateway Timeout",
            format!("upstream {}: no response within 0.5s", silent.addr),
        ),
        (
            garbage.reverse("http"),
            "502 Bad Gateway",
            format!(
                "upstream {}: bad response: malformed response head (invalid HTTP version)",
                garbage.addr
            ),
        ),
        (
            not_tls.reverse("https"),
            "502 Bad Gateway",
            format!("upstream {}: TLS handshake failed", not_tls.addr),
        ),
    ];
    for (mode, status, reason) in cases {
        let server = Server::start(&[
            "-S",
            flows.arg(),
            "--mode",
            &mode,
            "--ignore-host",
            "--ignore-port",
            "--upstream-timeout",
            "0.5",
            "-v",
        ]);
        let mut c = Client::new(&server);
        c.send(&get("/not-recorded"));
        let r = c.response(false);
        assert_eq!(r.status, status[..3].parse::<u16>().unwrap(), "{mode}");
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        let body = String::from_utf8(r.body).unwrap();
        assert!(
            body.starts_with(&reason) && body.ends_with('\n') && body.lines().count() == 1,
            "{mode}: {body:?}"
        );
        // The client connection survives: the next request on it is answered (and fails alike).
        assert_eq!(c.exchange(&get("/not-recorded")).status, r.status, "{mode}");
        server.wait_stdout(&format!(
            "[forward] {} upstream failed: {reason}",
            &status[..3]
        ));
        let stopped = server.stop();
        assert!(
            stopped.stderr.contains("forwarded 2,") && stopped.stderr.contains("upstream errors 2"),
            "{mode}: {}",
            stopped.stderr
        );
    }
    drop(release);
}

#[test]
fn a_request_that_asked_for_close_still_gets_its_502_then_the_close() {
    let path = fixture("demo.flows");
    let mode = format!("reverse:http://127.0.0.1:{}", closed_port());
    let server = Server::start(&["-S", path.to_str().unwrap(), "--mode", &mode]);
    let mut c = Client::new(&server);
    c.send(b"GET /not-recorded HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let text = String::from_utf8(c.read_to_close()).unwrap();
    assert!(text.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{text}");
    assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
    assert!(text.ends_with("connection refused\n"), "{text}");
}

/// A CA certificate (PEM, written to a temporary file) and a TLS upstream whose `localhost`
/// certificate it signed.
pub struct TlsUpstream {
    /// The upstream.
    pub upstream: TestUpstream,
    /// Its CA certificate's file.
    pub ca_file: std::path::PathBuf,
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_file);
    }
}

/// An https upstream for `localhost` whose certificate is signed by a CA written to `ca_file`.
pub fn tls_upstream(name: &'static str) -> TlsUpstream {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    tls_upstream_serving(name, leaf, leaf_key, ca.pem())
}

/// An https upstream for `localhost` serving what `openssl req -x509` makes by default: one
/// self-signed certificate with `CA:TRUE`, which is also what `ca_file` holds.
fn self_signed_ca_upstream(name: &'static str) -> TlsUpstream {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    let pem = cert.pem();
    tls_upstream_serving(name, cert, key, pem)
}

/// An echoing https upstream serving `leaf`, with `ca_pem` written to a temporary CA file.
fn tls_upstream_serving(
    name: &'static str,
    leaf: rcgen::Certificate,
    leaf_key: rcgen::KeyPair,
    ca_pem: String,
) -> TlsUpstream {
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap(),
    );
    let echo = echo(name);
    let upstream = TestUpstream::start(
        move |tcp| {
            let conn = rustls::ServerConnection::new(config.clone()).ok()?;
            Some(rustls::StreamOwned::new(conn, tcp))
        },
        move |s| echo(s),
    );
    static N: AtomicUsize = AtomicUsize::new(0);
    let ca_file = std::env::temp_dir().join(format!(
        "uringreplay-it-ca-{}-{}.pem",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&ca_file, ca_pem).unwrap();
    TlsUpstream { upstream, ca_file }
}

#[test]
fn https_upstreams_are_verified_with_upstream_ca_and_pooled() {
    let tls = tls_upstream("tls");
    let flows = recording();
    let mode = format!("reverse:https://localhost:{}", tls.upstream.addr.port());
    let ca = tls.ca_file.to_str().unwrap();
    let server = Server::start(&["-S", flows.arg(), "--mode", &mode, "--upstream-ca", ca]);
    let mut c = Client::new(&server);
    for i in 0..3 {
        let (status, body) = body_text(&mut c, &get(&format!("/s/{i}")));
        assert_eq!(status, 200);
        assert_eq!(
            body,
            format!(
                "tls|GET /s/{i} HTTP/1.1|localhost:{}|",
                tls.upstream.addr.port()
            )
        );
    }
    assert_eq!(tls.upstream.connections(), 1);
}

#[test]
fn a_self_signed_ca_true_upstream_certificate_given_with_upstream_ca_is_trusted_for_its_name() {
    let tls = self_signed_ca_upstream("x509");
    let flows = recording();
    let ca = tls.ca_file.to_str().unwrap();
    let port = tls.upstream.addr.port();
    let mode = format!("reverse:https://localhost:{port}");
    let server = Server::start(&["-S", flows.arg(), "--mode", &mode, "--upstream-ca", ca]);
    let mut c = Client::new(&server);
    let (status, body) = body_text(&mut c, &get("/self-signed"));
    assert_eq!(
        (status, body.as_str()),
        (
            200,
            &*format!("x509|GET /self-signed HTTP/1.1|localhost:{port}|")
        )
    );
    drop(server);
    // The same certificate for another name is still refused: trusted as itself, for its names.
    let mode = format!("reverse:https://127.0.0.1:{port}");
    let server = Server::start(&["-S", flows.arg(), "--mode", &mode, "--upstream-ca", ca]);
    let mut c = Client::new(&server);
    let (status, body) = body_text(&mut c, &get("/self-signed"));
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("TLS handshake failed: invalid peer certificate"),
        "{body}"
    );
    drop(server);
    // Without --upstream-ca it is an unknown certificate.
    let mode = format!("reverse:https://localhost:{port}");
    let server = Server::start(&["-S", flows.arg(), "--mode", &mode]);
    let mut c = Client::new(&server);
    let (status, body) = body_text(&mut c, &get("/self-signed"));
    assert_eq!(status, 502, "{body}");
}

#[test]
fn an_unverifiable_upstream_is_a_502_and_ssl_insecure_accepts_it() {
    let tls = tls_upstream("tls");
    let flows = recording();
    let mode = format!("reverse:https://localhost:{}", tls.upstream.addr.port());
    let server = Server::start(&["-S", flows.arg(), "--mode", &mode]);
    let mut c = Client::new(&server);
    let (status, body) = body_text(&mut c, &get("/secure"));
    assert_eq!(status, 502);
    assert!(
        body.starts_with(&format!(
            "upstream localhost:{}: TLS handshake failed: invalid peer certificate",
            tls.upstream.addr.port()
        )),
        "{body}"
    );
    drop(server);
    let server = Server::start(&["-S", flows.arg(), "--mode", &mode, "--ssl-insecure"]);
    let mut c = Client::new(&server);
    let (status, body) = body_text(&mut c, &get("/secure"));
    assert_eq!(
        (status, body.as_str()),
        (
            200,
            &*format!(
                "tls|GET /secure HTTP/1.1|localhost:{}|",
                tls.upstream.addr.port()
            )
        )
    );
}

#[test]
fn kill_and_status_modes_never_touch_the_upstream() {
    // A listener nobody accepts on: any connect would complete into its backlog.
    let tripwire = TcpListener::bind("127.0.0.1:0").unwrap();
    let mode = format!("reverse:http://{}", tripwire.local_addr().unwrap());
    // Two flows, one replayed: the map stays non-empty (an empty map forwards everything, as in
    // mitmproxy; spec §c.4).
    let flows = FlowFile::new(&[
        FlowSpec::get("/recorded", 200, b"recorded"),
        FlowSpec::get("/other", 200, b"other"),
    ]);
    for policy in [&["-k"][..], &["--extra", "404"][..]] {
        let mut args = vec![
            "-S",
            flows.arg(),
            "--mode",
            &mode,
            "--ignore-host",
            "--ignore-port",
        ];
        args.extend_from_slice(policy);
        let server = Server::start(&args);
        let mut c = Client::new(&server);
        assert_eq!(
            body_text(&mut c, &get("/recorded")),
            (200, "recorded".to_string())
        );
        c.send(&get("/unmatched"));
        if policy == ["-k"] {
            assert_eq!(c.read_to_close(), b"", "killed without a byte");
        } else {
            assert_eq!(c.response(false).status, 404);
        }
        drop(server);
    }
    tripwire.set_nonblocking(true).unwrap();
    match tripwire.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the upstream was contacted: {other:?}"),
    }
}

#[test]
fn regular_mode_forwards_to_each_requests_own_host_on_one_connection() {
    let one = echo_upstream("one");
    let two = echo_upstream("two");
    let flows = recording();
    let server = Server::start(&["-S", flows.arg(), "--mode", "regular"]);
    let mut c = Client::new(&server);
    let absolute = format!(
        "GET http://{}/abs?q=1 HTTP/1.1\r\nHost: {}\r\n\r\n",
        one.addr, one.addr
    );
    let (status, body) = body_text(&mut c, absolute.as_bytes());
    assert_eq!(
        (status, body.as_str()),
        (200, &*format!("one|GET /abs?q=1 HTTP/1.1|{}|", one.addr))
    );
    let by_host = format!("GET /host HTTP/1.1\r\nHost: {}\r\n\r\n", two.addr);
    let (status, body) = body_text(&mut c, by_host.as_bytes());
    assert_eq!(
        (status, body.as_str()),
        (200, &*format!("two|GET /host HTTP/1.1|{}|", two.addr))
    );
    let (status, body) = body_text(&mut c, absolute.as_bytes());
    assert_eq!(
        (status, body.as_str()),
        (200, &*format!("one|GET /abs?q=1 HTTP/1.1|{}|", one.addr))
    );
    assert_eq!((one.connections(), two.connections()), (1, 1));
}

#[test]
fn head_and_informational_responses_are_relayed_without_bodies_on_a_kept_connection() {
    let upstream = TestUpstream::plain(|s| {
        while let Some((head, _)) = read_request(s) {
            let answer: &[u8] = if head.starts_with("HEAD ") {
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"
            } else {
                b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nafter 103"
            };
            if s.write_all(answer).is_err() {
                return;
            }
        }
    });
    let flows = recording();
    let mode = upstream.reverse("http");
    let server = Server::start(&["-S", flows.arg(), "--mode", &mode]);
    let mut c = Client::new(&server);
    let r = c.exchange(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, r.header("content-length")), (200, Some("9")));
    c.send(&get("/hints"));
    let early = c.response(false);
    assert_eq!(
        (early.status, early.header("link")),
        (103, Some("</s.css>"))
    );
    let r = c.response(false);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"after 103"[..]));
    let r = c.exchange(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(upstream.connections(), 1);
}

#[test]
fn a_response_with_content_length_and_chunked_reaches_the_client_framed_by_chunked_only() {
    // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length, and a proxy removes the latter.
    let upstream = Upstream::start(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nX-Up: 1\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        false,
    );
    let flows = recording();
    let mode = format!("reverse:http://{}", upstream.addr);
    let server = Server::start(&["-S", flows.arg(), "--mode", &mode, "--ignore-port"]);
    let mut c = Client::new(&server);
    let r = c.exchange(&get("/unrecorded"));
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello world"[..]));
    assert_eq!(r.header("x-up"), Some("1"));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.header("content-length"), None, "{:?}", r.headers);
    // The client connection carries on with one consistent framing.
    assert_eq!(c.exchange(&get("/recorded")).body, b"recorded");
}

#[test]
fn upstream_tls_and_host_options_work_through_their_mitmproxy_set_names() {
    let tls = tls_upstream("tls");
    let flows = recording();
    let mode = format!("reverse:https://localhost:{}", tls.upstream.addr.port());
    let expected = format!(
        "tls|GET /s HTTP/1.1|localhost:{}|",
        tls.upstream.addr.port()
    );
    let trusted = format!("ssl_verify_upstream_trusted_ca={}", tls.ca_file.display());
    for (set, status) in [
        ("ssl_insecure=false", 502),
        ("ssl_insecure=true", 200),
        (trusted.as_str(), 200),
    ] {
        let server = Server::start(&["-S", flows.arg(), "--mode", &mode, "--set", set]);
        let (got, body) = body_text(&mut Client::new(&server), &get("/s"));
        assert_eq!(got, status, "--set {set}: {body}");
        if status == 200 {
            assert_eq!(body, expected, "--set {set}");
        }
    }

    let upstream = echo_upstream("up");
    let mode = upstream.reverse("http");
    for (set, host) in [
        ("keep_host_header=true", "client.example:81".to_string()),
        ("keep_host_header=false", upstream.addr.to_string()),
    ] {
        let server = Server::start(&["-S", flows.arg(), "--mode", &mode, "--set", set]);
        let (_, body) = body_text(
            &mut Client::new(&server),
            b"GET /k HTTP/1.1\r\nHost: client.example:81\r\n\r\n",
        );
        assert_eq!(body, format!("up|GET /k HTTP/1.1|{host}|"), "--set {set}");
    }
}
