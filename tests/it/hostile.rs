//! Hostile input gets a status and a close, never a crash.

use crate::support::{fixture, get, Client, Server};

fn demo(extra: &[&str]) -> Server {
    let path = fixture("demo.flows");
    let mut args = vec!["-S", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// Sends `request`, expects `status` then a close, and nothing else (no request hidden behind
/// the faulty framing is served); the server still serves afterwards.
fn rejected(server: &Server, request: &[u8], status: u16) {
    let mut c = Client::new(server);
    c.send(request);
    let all = c.read_to_close();
    let text = String::from_utf8_lossy(&all);
    assert!(
        text.starts_with(&format!("HTTP/1.1 {status} ")),
        "{status} expected for {:?}, got {text:?}",
        String::from_utf8_lossy(request)
    );
    assert!(text.contains("connection: close\r\n"), "{text}");
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete head");
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.parse::<usize>().ok());
    assert_eq!(
        length,
        Some(body.len()),
        "one answer and nothing after it: {text}"
    );
    assert_eq!(
        Client::new(server).exchange(&get("/hello")).status,
        200,
        "still serving"
    );
}

#[test]
fn ambiguous_framing_and_bad_chunks_are_answered_400() {
    let server = demo(&["--reuse"]);
    for request in [
        &b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"[..],
        b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc",
        b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"POST /form HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\nabc\r\n0\r\n\r\n",
        b"POST /form HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n",
        b"GET /hello HTTP/1.1\r\nHost: x\r\nNo Colon Here\r\n\r\n",
        b"\x00\x01\x02 garbage\r\n\r\n",
    ] {
        rejected(&server, request, 400);
    }
}

#[test]
fn a_head_over_64_kib_is_answered_431() {
    let server = demo(&["--reuse"]);
    let mut request = b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    request.resize(70 * 1024, b'a');
    request.extend_from_slice(b"\r\n\r\n");
    rejected(&server, &request, 431);
}

#[test]
fn a_body_over_max_body_is_answered_413() {
    let server = demo(&["--reuse", "--max-body", "10"]);
    rejected(
        &server,
        b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n",
        413,
    );
    rejected(
        &server,
        b"POST /form HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n",
        413,
    );
}

#[test]
fn a_request_that_stalls_mid_head_gets_408_and_an_idle_connection_is_closed() {
    for io in ["uring", "epoll"] {
        let server = demo(&["--header-timeout", "1", "--idle-timeout", "1", "--io", io]);
        let mut c = Client::new(&server);
        c.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n");
        let text = String::from_utf8(c.read_to_close()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{io}: {text}"
        );

        let mut c = Client::new(&server);
        assert_eq!(c.exchange(&get("/hello")).status, 200);
        assert_eq!(
            c.read_to_close(),
            b"",
            "{io}: idle keep-alive connection closed silently"
        );
    }
}

#[test]
fn a_trickled_head_gets_408_when_the_header_timeout_from_its_first_byte_ends() {
    let server = demo(&["--header-timeout", "1"]);
    let mut c = Client::new(&server);
    c.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n");
    // One header line every 300 ms keeps bytes arriving; the deadline still comes ~1 s after the
    // first byte. Bounded: at most 20 lines (6 s).
    for _ in 0..20 {
        std::thread::sleep(std::time::Duration::from_millis(300));
        if std::io::Write::write_all(&mut c.stream, b"X-Slow: 1\r\n").is_err() {
            break;
        }
        let mut probe = [0u8; 1];
        c.stream.set_nonblocking(true).unwrap();
        let answered = std::io::Read::read(&mut c.stream, &mut probe).is_ok();
        c.stream.set_nonblocking(false).unwrap();
        if answered {
            assert_eq!(probe[0], b'H', "the answer starts");
            let rest = c.read_to_close();
            let text = String::from_utf8_lossy(&rest);
            assert!(
                text.starts_with("TTP/1.1 408 Request Timeout\r\n"),
                "{text}"
            );
            return;
        }
    }
    panic!("no 408 although the head trickled for 6 s");
}

#[test]
fn the_101_byte_overflow_reproducer_gets_413_and_the_server_keeps_serving() {
    // Issue 10: the second chunk size wrapped `scratch.len() + size` and `pos + size + 2`, a
    // slice panicked and `panic = "abort"` ended every connection.
    let request = b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1:29411\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\nFFFFFFFFFFFFFFFE\r\n";
    assert_eq!(request.len(), 101);
    let server = demo(&["--reuse"]);
    let mut other = Client::new(&server);
    assert_eq!(other.exchange(&get("/hello")).status, 200);
    rejected(&server, request, 413);
    assert_eq!(
        other.exchange(&get("/hello")).status,
        200,
        "a connection open before it is still served"
    );
}

#[test]
fn smuggling_framings_are_answered_400_and_closed() {
    let server = demo(&["--reuse"]);
    let hidden = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
    let chunked = |body: &str| {
        format!(
            "POST /form HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{body}{hidden}"
        )
    };
    for request in [
        // An empty chunk-size line is not the last chunk.
        chunked("\r\n"),
        // A bare LF ends nothing: not in a chunk extension, a size line or a trailer.
        // (A lenient parser reads extension `x\nabc` and data `hello`; an LF front end reads
        // data `abc\r\nh`: two views of one body.)
        chunked("5;x\nabc\r\nhello\r\n0\r\n\r\n"),
        chunked("2\nab\r\n0\r\n\r\n"),
        chunked("2\r\nab\r\n0\r\nX-T: 1\n\r\n"),
        // More than 16 hex digits, whatever their value.
        chunked("00000000000000002\r\nab\r\n0\r\n\r\n"),
        // Transfer-Encoding on HTTP/1.0 keep-alive is faulty framing.
        format!("POST /form HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}"),
        // HTTP/1.1 needs exactly one valid Host.
        format!("GET /hello HTTP/1.1\r\n\r\n{hidden}"),
        format!("GET /hello HTTP/1.1\r\nHost: a, b\r\n\r\n{hidden}"),
        format!("GET /hello HTTP/1.1\r\nHost: a b\r\n\r\n{hidden}"),
        // Repeated Transfer-Encoding fields.
        format!("POST /form HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}"),
    ] {
        rejected(&server, request.as_bytes(), 400);
    }
}

#[test]
fn unknown_transfer_codings_are_answered_501() {
    let server = demo(&["--reuse"]);
    for codings in ["br, chunked", "gzip, gzip, chunked"] {
        let request = format!(
            "POST /form HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {codings}\r\n\r\n0\r\n\r\n"
        );
        rejected(&server, request.as_bytes(), 501);
    }
    // The codings mitmproxy knows pass framing: this unrecorded request gets the policy's 404.
    let server = demo(&["--extra", "404"]);
    let mut c = Client::new(&server);
    let r = c.exchange(
        b"POST /not-recorded HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 404, "gzip, chunked is framed by chunked");
}

/// A recording of one 1 MiB answer, replayed again and again.
fn large_answer() -> crate::support::FlowFile {
    let body = vec![b'x'; 1024 * 1024];
    crate::support::FlowFile::new(&[uringreplay::flowfile::writer::FlowSpec::get(
        "/big", 200, &body,
    )])
}

/// 64 pipelined requests for the 1 MiB answer: far more than the socket buffers hold.
fn pipelined_big() -> Vec<u8> {
    get("/big").repeat(64)
}

#[test]
fn a_client_that_stops_reading_is_reset_after_the_send_timeout_and_others_are_served() {
    for io in ["uring", "epoll"] {
        let file = large_answer();
        let server = Server::start(&[
            "-S",
            file.arg(),
            "--reuse",
            "--send-timeout",
            "1",
            "-v",
            "--admin",
            "127.0.0.1:0",
            "--io",
            io,
        ]);
        let mut stuck = Client::new(&server);
        stuck.send(&pipelined_big());
        // While it is stuck, another connection is served.
        assert_eq!(Client::new(&server).exchange(&get("/big")).status, 200);
        server.wait_stdout("took none of its answer for 1 s (--send-timeout)");
        // The queued bytes are dropped with a reset: reading gives fewer than the 64 answers,
        // then the reset (or an end).
        let mut total = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        let end = loop {
            match std::io::Read::read(&mut stuck.stream, &mut buf) {
                Ok(0) => break None,
                Ok(n) => total += n,
                Err(e) => break Some(e.kind()),
            }
        };
        assert!(
            matches!(end, None | Some(std::io::ErrorKind::ConnectionReset)),
            "{io}: {end:?}"
        );
        assert!(total < 64 * 1024 * 1024, "{io}: {total} bytes arrived");
        let metrics = String::from_utf8(server.admin("GET", "/metrics").body).unwrap();
        assert!(
            metrics.contains("\nuringreplay_send_timeouts_total 1\n"),
            "{io}: {metrics}"
        );
        assert_eq!(Client::new(&server).exchange(&get("/big")).status, 200);
    }
}

#[test]
fn a_slow_client_that_keeps_reading_keeps_its_connection() {
    let file = large_answer();
    let server = Server::start(&["-S", file.arg(), "--reuse", "--send-timeout", "2"]);
    let mut slow = Client::new(&server);
    slow.send(&get("/big").repeat(4));
    // 64 KiB every 40 ms: about 1.6 MB/s, so the 4 MiB take about 2.6 s, longer than the
    // timeout; the client never pauses for as long as the timeout, so it is never reset.
    let mut total = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    while total < 4 * (1024 * 1024 + 64) {
        std::thread::sleep(std::time::Duration::from_millis(40));
        match std::io::Read::read(&mut slow.stream, &mut buf) {
            Ok(0) => panic!("closed after {total} bytes"),
            Ok(n) => total += n,
            Err(e) => panic!("{e} after {total} bytes"),
        }
    }
    assert_eq!(slow.exchange(&get("/big")).status, 200, "still open");
}
