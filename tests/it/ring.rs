//! The direct ring (issue 13): plain HTTP/1 and h2c connections of an io_uring worker are served
//! on a ring of the worker's own, and handed to monoio for what waits on something else. The same
//! bytes as monoio's loop; every answer in order across a hand-off; a client that pipelines
//! without reading is paused, not buffered.

use std::io::{Read, Write};

use uringreplay::flowfile::writer::FlowSpec;

use crate::support::{fixture, get, Client, FlowFile, Server};

fn demo(extra: &[&str]) -> Server {
    let path = fixture("demo.flows");
    let mut args = vec!["-S", path.to_str().unwrap(), "--admin", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// A counter of `/metrics` (the line `NAME VALUE`).
pub(crate) fn metric(server: &Server, name: &str) -> u64 {
    let body = String::from_utf8(server.admin("GET", "/metrics").body).unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {body}"))
}

/// Every byte a connection gets for `request`, until the server closes.
fn raw(server: &Server, request: &[u8]) -> Vec<u8> {
    let mut c = Client::new(server);
    c.send(request);
    c.read_to_close()
}

#[test]
fn plain_connections_use_the_ring_on_io_uring_only_and_get_the_same_bytes_as_monoio() {
    // Pipelined: a replay, a HEAD, an unrecorded path (404 by `--extra`), and one that closes.
    let mut request = get("/hello");
    request.extend_from_slice(b"HEAD /hello HTTP/1.1\r\nHost: 127.0.0.1:29411\r\n\r\n");
    request.extend_from_slice(&get("/nothing-recorded"));
    request.extend_from_slice(
        b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:29411\r\nConnection: close\r\n\r\n",
    );
    let mut answers = Vec::new();
    for (extra, on_ring) in [
        (&[][..], 1),
        (&["--no-direct-ring"][..], 0),
        (&["--io", "epoll"][..], 0),
    ] {
        let mut args = vec!["--reuse", "--norefresh", "--extra", "404"];
        args.extend_from_slice(extra);
        let server = demo(&args);
        answers.push(raw(&server, &request));
        assert_eq!(
            metric(&server, "uringreplay_direct_ring_connections_total"),
            on_ring,
            "{extra:?}"
        );
    }
    let text = String::from_utf8_lossy(&answers[0]);
    // The demo recorded no HEAD: it is unmatched, as in mitmproxy.
    assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{text}");
    assert_eq!(text.matches("HTTP/1.1 404 ").count(), 2, "{text}");
    assert!(text.ends_with("hello world\n"), "{text}");
    assert_eq!(answers[0], answers[1], "the ring and monoio's loop");
    assert_eq!(answers[0], answers[2], "the ring and epoll");
}

#[test]
fn a_forward_between_replays_is_handed_over_answered_in_order_and_counted_once() {
    // The demo's misses are forwarded to its recorded origin, where nothing listens: 502.
    let server = demo(&["--reuse"]);
    let mut request = get("/hello");
    request.extend_from_slice(&get("/not-recorded"));
    request.extend_from_slice(&get("/hello"));
    let mut c = Client::new(&server);
    c.send(&request);
    assert_eq!(c.response(false).status, 200);
    assert_eq!(c.response(false).status, 502);
    let third = c.response(false);
    assert_eq!(third.status, 200);
    assert_eq!(third.body, b"hello world\n");
    // The connection stays usable after the hand-over.
    assert_eq!(c.exchange(&get("/hello")).status, 200);
    assert_eq!(
        metric(&server, "uringreplay_requests_total{outcome=\"forwarded\"}"),
        1
    );
    assert_eq!(
        metric(&server, "uringreplay_requests_total{outcome=\"replayed\"}"),
        3
    );
    assert_eq!(
        metric(&server, "uringreplay_direct_ring_connections_total"),
        1
    );
}

#[test]
fn an_h2c_preface_and_a_tls_hello_are_both_served_on_the_ring() {
    let server = demo(&["--reuse"]);
    // h2c with prior knowledge: the server's SETTINGS frame comes back, from the ring.
    let mut h2 = server.connect();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    let mut frame = [0u8; 9];
    h2.read_exact(&mut frame).unwrap();
    assert_eq!(frame[3], 0x4, "a SETTINGS frame: {frame:?}");
    assert_eq!(
        metric(&server, "uringreplay_direct_ring_handed_over_total"),
        0
    );
    // A TLS ClientHello gets a TLS record back: the handshake runs on the ring too.
    let mut tls = server.connect();
    tls.write_all(&client_hello()).unwrap();
    let mut record = [0u8; 5];
    tls.read_exact(&mut record).unwrap();
    assert_eq!(record[0], 0x16, "a TLS handshake record: {record:?}");
    assert_eq!(
        metric(&server, "uringreplay_direct_ring_connections_total"),
        2
    );
    assert_eq!(
        metric(&server, "uringreplay_direct_ring_handed_over_total"),
        0
    );
}

#[test]
fn an_h2c_connection_stays_on_the_ring_until_a_forward_hands_it_over_with_its_session() {
    let upstream = crate::support::Upstream::start(
        b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nupstream",
        false,
    );
    let file = FlowFile::new(&[FlowSpec::get("/a", 200, b"alpha")]);
    let server = Server::start(&[
        "-S",
        file.arg(),
        "--mode",
        "regular",
        "--reuse",
        "--admin",
        "127.0.0.1:0",
    ]);
    let handed_over = || metric(&server, "uringreplay_direct_ring_handed_over_total");
    crate::h2::runtime().block_on(async {
        let mut h2 = crate::h2::connect(&server, 65_535).await;
        for _ in 0..3 {
            let resp = crate::h2::send_get(&mut h2, "/a").await.await.unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(crate::h2::body_of(resp).await.0, b"alpha");
        }
        assert_eq!(handed_over(), 0, "replays are answered on the ring");
        // A forward (another host) goes to monoio, with the connection's HTTP/2 state: the
        // streams go on.
        let url = format!("http://{}/not-recorded", upstream.addr);
        let resp = crate::h2::send_get_url(&mut h2, &url).await.await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(crate::h2::body_of(resp).await.0, b"upstream");
        assert_eq!(handed_over(), 1);
        let resp = crate::h2::send_get(&mut h2, "/a").await.await.unwrap();
        assert_eq!(crate::h2::body_of(resp).await.0, b"alpha");
    });
    assert_eq!(
        metric(&server, "uringreplay_direct_ring_connections_total"),
        1
    );
    let stopped = server.stop();
    assert!(stopped.stderr.contains("forwarded 1"), "{}", stopped.stderr);
}

/// A minimal TLS 1.2 ClientHello with SNI `localhost` (rustls answers it with a ServerHello).
fn client_hello() -> Vec<u8> {
    let sni = b"localhost";
    let mut ext = Vec::new();
    // server_name
    let list_len = sni.len() + 3;
    ext.extend_from_slice(&[0x00, 0x00]);
    ext.extend_from_slice(&((list_len + 2) as u16).to_be_bytes());
    ext.extend_from_slice(&(list_len as u16).to_be_bytes());
    ext.push(0);
    ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    ext.extend_from_slice(sni);
    // supported_groups: x25519, secp256r1
    ext.extend_from_slice(&[0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]);
    // ec_point_formats: uncompressed
    ext.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
    ext.extend_from_slice(&[
        0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01,
    ]);
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // no session id
                  // ECDHE-ECDSA/RSA-AES128-GCM-SHA256
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x2b, 0xc0, 0x2f]);
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut handshake = vec![0x01];
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[test]
fn a_client_that_pipelines_without_reading_is_paused_and_then_gets_every_answer_in_order() {
    let body = vec![b'x'; 1024 * 1024];
    let file = FlowFile::new(&[
        uringreplay::flowfile::writer::FlowSpec::get("/big", 200, &body),
        uringreplay::flowfile::writer::FlowSpec::get("/small", 200, b"small"),
    ]);
    let server = Server::start(&["-S", file.arg(), "--reuse"]);
    // 16 MiB of answers first (more than the socket buffers hold, so the send waits), then
    // 48 MiB of small requests the server must not take in while it cannot send.
    let big = get("/big");
    let mut small = get("/small");
    let pad = format!("X-Pad: {}\r\n\r\n", "p".repeat(1000));
    small.truncate(small.len() - 2);
    small.extend_from_slice(pad.as_bytes());
    let smalls = 48 * 1024 * 1024 / small.len();
    let mut requests = big.repeat(16);
    requests.extend(small.repeat(smalls));
    let total = requests.len();
    let mut c = Client::new(&server);
    let mut writer = c.stream.try_clone().unwrap();
    let client_port = writer.local_addr().unwrap().port();
    // Written 16 KiB at a time, each time waiting until the server has read what the socket
    // holds (so receives never come in bursts that end the receive on their own), without
    // reading any answer; until it stops reading for a second.
    let mut sent = 0;
    let mut stalled = false;
    while sent < total && !stalled {
        let end = total.min(sent + 16 * 1024);
        writer.write_all(&requests[sent..end]).unwrap();
        sent = end;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while unread(server.addr.port(), client_port) + unsent(&writer) > 0 {
            if std::time::Instant::now() > deadline {
                stalled = true;
                break;
            }
            std::thread::yield_now();
        }
    }
    // What the server's process took in: not much more than its input limit (256 KiB) and one
    // write, against the 48 MiB it was offered.
    let taken = sent - unread(server.addr.port(), client_port) - unsent(&writer);
    assert!(
        stalled && taken < 1024 * 1024,
        "the server took {taken} of {sent} bytes while none of its answers were read"
    );
    // Now read every answer while the rest is written.
    let rest = requests[sent..].to_vec();
    let feeder = std::thread::spawn(move || writer.write_all(&rest).unwrap());
    // Meanwhile another connection is served.
    assert_eq!(Client::new(&server).exchange(&small).status, 200);
    for i in 0..16 {
        let r = c.response(false);
        assert_eq!((r.status, r.body.len()), (200, body.len()), "answer {i}");
    }
    for i in 0..smalls {
        let r = c.response(false);
        assert_eq!(
            (r.status, &r.body[..]),
            (200, &b"small"[..]),
            "small answer {i}"
        );
    }
    feeder.join().unwrap();
}

/// Bytes the server's socket (local port `server`, peer port `client`, on 127.0.0.1) has
/// received and its process has not read, from `/proc/net/tcp`.
fn unread(server: u16, client: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!("0100007F:{server:04X}");
    let remote = format!("0100007F:{client:04X}");
    table
        .lines()
        .skip(1)
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(1) == Some(&local.as_str()) && fields.get(2) == Some(&remote.as_str()))
                .then(|| usize::from_str_radix(fields[4].split(':').nth(1)?, 16).ok())?
        })
        .expect("the server's socket in /proc/net/tcp")
}

/// Bytes `stream` has queued that its peer has not acknowledged.
fn unsent(stream: &std::net::TcpStream) -> usize {
    use std::os::fd::AsRawFd;
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int, into `queued`, which outlives the call.
    let r = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    assert_eq!(r, 0, "SIOCOUTQ");
    queued as usize
}

#[test]
fn an_idle_connection_times_out_while_pipelining_clients_keep_the_ring_busy() {
    // One worker: the idle connection shares the ring that the load keeps busy on every turn.
    let path = fixture("demo.flows");
    let server = Server::start_exact(&[
        "-S",
        path.to_str().unwrap(),
        "-p",
        "0",
        "--threads",
        "1",
        "--idle-timeout",
        "1",
        "--reuse",
        "-q",
    ]);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let batch = get("/hello").repeat(32);
    let mut load = Vec::new();
    for _ in 0..4 {
        let stream = server.connect();
        let mut reader = stream.try_clone().unwrap();
        let done_w = done.clone();
        let mut writer = stream;
        let batch = batch.clone();
        load.push(std::thread::spawn(move || {
            while !done_w.load(std::sync::atomic::Ordering::Relaxed) {
                if writer.write_all(&batch).is_err() {
                    break;
                }
            }
            let _ = writer.shutdown(std::net::Shutdown::Write);
        }));
        // Reads until the server closes (after the writer's FIN), so no write waits forever.
        load.push(std::thread::spawn(move || {
            let mut chunk = [0u8; 64 * 1024];
            while let Ok(1..) = reader.read(&mut chunk) {}
        }));
    }
    // The load is answered, so the ring is turning, before the idle connection opens.
    let mut probe = Client::new(&server);
    assert_eq!(probe.exchange(&get("/hello")).status, 200);
    let mut idle = server.connect();
    idle.set_read_timeout(Some(crate::support::PATIENCE))
        .unwrap();
    let started = std::time::Instant::now();
    let mut byte = [0u8; 1];
    let got = idle.read(&mut byte);
    let waited = started.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    drop(probe);
    for t in load {
        t.join().unwrap();
    }
    // Closed by the idle timeout (the sweeper's tick), not by the read timeout of the test.
    assert!(
        matches!(got, Ok(0))
            || got
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the idle connection was not closed while the load ran ({got:?} after {waited:?})"
    );
    assert!(waited < crate::support::PATIENCE, "{waited:?}");
}

#[test]
fn connections_the_ring_closes_end_while_another_client_waits_idle_on_it() {
    // The idle client's receive stays armed on the ring. Sockets on the ring are also in its
    // fixed-file table, so a closed one is gone only once the ring lets go of it (on kernels
    // before 6.13, not until every operation issued before the close had ended): each client
    // that asks to close must still get the end of its connection, on the ring and after a
    // hand-over to monoio (a forward).
    let server = demo(&["--reuse"]);
    let mut idle = Client::new(&server);
    assert_eq!(idle.exchange(&get("/hello")).status, 200);
    let close = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:29411\r\nConnection: close\r\n\r\n";
    for _ in 0..3 {
        let answer = raw(&server, close);
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.ends_with("hello world\n"), "{text}");
    }
    let forwarded = raw(
        &server,
        b"GET /not-recorded HTTP/1.1\r\nHost: 127.0.0.1:29411\r\nConnection: close\r\n\r\n",
    );
    let text = String::from_utf8_lossy(&forwarded);
    assert!(text.starts_with("HTTP/1.1 502 "), "{text}");
    assert_eq!(
        metric(&server, "uringreplay_direct_ring_connections_total"),
        5
    );
    assert_eq!(idle.exchange(&get("/hello")).status, 200, "still served");
}

#[test]
fn the_look_ahead_notes_a_connections_later_requests_and_changes_no_byte() {
    let mut seen = Vec::new();
    // The demo is far below the size `auto` looks ahead from.
    for (when, noted) in [("always", 3), ("never", 0), ("auto", 0)] {
        let server = demo(&["--reuse", "--norefresh", "--look-ahead", when]);
        let mut c = Client::new(&server);
        let mut answers = Vec::new();
        for path in ["/hello", "/hello", "/counter"] {
            let r = c.exchange(&get(path));
            answers.push(format!("{} {:?} {:?}", r.status, r.headers, r.body));
        }
        // The last one closes: every byte of its answer.
        c.send(b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:29411\r\nConnection: close\r\n\r\n");
        answers.push(String::from_utf8_lossy(&c.read_to_close()).into_owned());
        // Each request arrives alone (the client waits for each answer). The first of a
        // connection is told from TLS and h2c first, so it is not noted; the three after it are
        // noted, and each finds its flow.
        let looked = metric(&server, "uringreplay_looked_ahead_total");
        assert_eq!(looked, noted, "--look-ahead {when}");
        assert_eq!(
            metric(&server, "uringreplay_requests_total{outcome=\"replayed\"}"),
            4
        );
        seen.push(answers);
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0], seen[2]);
    assert!(seen[0][0].starts_with("200 "), "{:?}", seen[0]);
    assert!(seen[0][3].ends_with("hello world\n"), "{:?}", seen[0]);
}

#[test]
fn an_unknown_look_ahead_is_refused_with_the_choices() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_uringreplay"))
        .args(["-S", "/dev/null", "--look-ahead", "sometimes"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--look-ahead \"sometimes\" is not one of auto, always, never"),
        "{err}"
    );
}
