//! HTTP/2 towards clients over h2c with prior knowledge, on the same port as HTTP/1: the `h2`
//! crate as the client (replay, concurrent streams, a large body under a small window,
//! trailers, kill), raw frames where the exact bytes matter (GOAWAY on SIGTERM).

use std::io::{Read, Write};

use bytes::Bytes;
use uringreplay::flowfile::writer::{
    write_record, ConnRecord, FlowRecord, FlowSpec, MessageRecord,
};

use super::support::{get, Client, FlowFile, Server};

/// A current-thread tokio runtime for the h2 client.
pub(super) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// An h2c connection to `server` with `window` as the client's stream window.
pub(super) async fn connect(server: &Server, window: u32) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (h2, connection) = h2::client::Builder::new()
        .initial_window_size(window)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    tokio::spawn(connection);
    h2.ready().await.unwrap()
}

/// Sends `GET path` (authority 127.0.0.1:8080, as the recordings) and returns the response.
pub(super) async fn send_get(
    h2: &mut h2::client::SendRequest<Bytes>,
    path: &str,
) -> h2::client::ResponseFuture {
    let req = http::Request::get(format!("http://127.0.0.1:8080{path}"))
        .body(())
        .unwrap();
    let mut ready = h2.clone().ready().await.unwrap();
    let (resp, _) = ready.send_request(req, true).unwrap();
    *h2 = ready;
    resp
}

/// The whole body of `resp`, releasing window as it arrives; with the trailers.
pub(super) async fn body_of(
    resp: http::Response<h2::RecvStream>,
) -> (Vec<u8>, Option<http::HeaderMap>) {
    let mut body = resp.into_body();
    let mut got = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        body.flow_control().release_capacity(chunk.len()).unwrap();
        got.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.unwrap();
    (got, trailers)
}

#[test]
fn a_recording_replays_over_h2c_and_http1_still_works_on_the_same_port() {
    let mut flow = FlowSpec::get("/a", 200, b"alpha");
    let response = flow.response.as_mut().unwrap();
    response
        .headers
        .push((b"Connection".to_vec(), b"keep-alive".to_vec()));
    response
        .headers
        .push((b"X-Recorded".to_vec(), b"yes".to_vec()));
    let file = FlowFile::new(&[flow]);
    let server = Server::start(&["-S", file.arg(), "--reuse", "-v"]);
    runtime().block_on(async {
        let mut h2 = connect(&server, 65_535).await;
        let resp = send_get(&mut h2, "/a").await.await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-recorded"], "yes");
        assert_eq!(resp.headers()["content-type"], "text/plain");
        assert!(resp.headers().get("connection").is_none());
        assert_eq!(body_of(resp).await.0, b"alpha");
    });
    // The same listener still speaks HTTP/1.
    let r = Client::new(&server).exchange(&get("/a"));
    assert_eq!((r.status, &r.body[..]), (200, &b"alpha"[..]));
    server.wait_stdout("GET http://127.0.0.1:8080/a << [replay] 200");
    let stopped = server.stop();
    assert!(stopped.stderr.contains("replayed 2"), "{}", stopped.stderr);
}

#[test]
fn concurrent_streams_on_one_connection_consume_flows_in_order() {
    let flows: Vec<FlowSpec> = (0..20)
        .map(|i| FlowSpec::get("/n", 200, format!("answer {i}").as_bytes()))
        .collect();
    let file = FlowFile::new(&flows);
    let server = Server::start(&["-S", file.arg()]);
    runtime().block_on(async {
        let mut h2 = connect(&server, 65_535).await;
        let mut pending = Vec::new();
        for _ in 0..20 {
            pending.push(send_get(&mut h2, "/n").await);
        }
        let mut got = Vec::new();
        for resp in pending {
            let resp = resp.await.unwrap();
            assert_eq!(resp.status(), 200);
            got.push(String::from_utf8(body_of(resp).await.0).unwrap());
        }
        // Streams are answered in the order they were opened, each flow once.
        let expected: Vec<String> = (0..20).map(|i| format!("answer {i}")).collect();
        assert_eq!(got, expected);
        // Every flow consumed: the next one is unmatched (502 by default: no upstream answers).
        let resp = send_get(&mut h2, "/n").await.await.unwrap();
        assert_ne!(resp.status(), 200);
    });
}

#[test]
fn a_large_body_arrives_whole_under_a_small_client_window() {
    let big: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let file = FlowFile::new(&[FlowSpec::get("/big", 200, &big)]);
    let server = Server::start(&["-S", file.arg(), "--reuse"]);
    runtime().block_on(async {
        // 1,000 bytes of stream window: the server must wait for WINDOW_UPDATEs many times.
        let mut h2 = connect(&server, 1_000).await;
        for _ in 0..2 {
            let resp = send_get(&mut h2, "/big").await.await.unwrap();
            assert_eq!(resp.headers()["content-length"], big.len().to_string());
            let (got, _) = body_of(resp).await;
            assert!(got == big, "the body arrived intact ({} bytes)", got.len());
        }
    });
}

/// A flow whose response carries trailers, as mitmproxy records a gRPC call.
fn grpc_recording() -> FlowFile {
    let t = 1_795_737_600.0;
    let message = |headers: Vec<(Vec<u8>, Vec<u8>)>,
                   content: &[u8],
                   trailers: Option<Vec<(Vec<u8>, Vec<u8>)>>| MessageRecord {
        http_version: b"HTTP/2.0".to_vec(),
        headers,
        content: Some(content.to_vec()),
        trailers,
        timestamp_start: t,
        timestamp_end: Some(t + 0.001),
    };
    let record = FlowRecord {
        id: "00000000-0000-4000-8000-00000000000a".to_string(),
        method: b"POST".to_vec(),
        scheme: b"http".to_vec(),
        authority: b"127.0.0.1:8080".to_vec(),
        host: "127.0.0.1".to_string(),
        port: 8080,
        path: b"/pkg.Service/Call".to_vec(),
        request: message(
            vec![(b"content-type".to_vec(), b"application/grpc".to_vec())],
            b"\0\0\0\0\x02hi",
            None,
        ),
        response: Some((
            200,
            Vec::new(),
            message(
                vec![(b"content-type".to_vec(), b"application/grpc".to_vec())],
                b"\0\0\0\0\x03bye",
                Some(vec![
                    (b"grpc-status".to_vec(), b"0".to_vec()),
                    (b"grpc-message".to_vec(), b"ok".to_vec()),
                ]),
            ),
        )),
        client_conn: ConnRecord {
            id: "c".to_string(),
            peername: Some(("127.0.0.1".to_string(), 50000)),
            sockname: Some(("127.0.0.1".to_string(), 8080)),
            timestamp_start: Some(t),
            proxy_mode: "regular".to_string(),
            ..ConnRecord::default()
        },
        server_conn: ConnRecord {
            id: "s".to_string(),
            address: Some(("127.0.0.1".to_string(), 8080)),
            timestamp_start: Some(t),
            ..ConnRecord::default()
        },
        error: None,
        timestamp_created: t,
    };
    let path = super::support::temp_path("grpc.flows");
    let mut bytes = Vec::new();
    write_record(&mut bytes, &record);
    std::fs::write(&path, bytes).unwrap();
    FlowFile(path)
}

#[test]
fn recorded_trailers_arrive_as_trailing_headers() {
    let file = grpc_recording();
    let server = Server::start(&["-S", file.arg(), "--reuse"]);
    runtime().block_on(async {
        let h2 = connect(&server, 65_535).await;
        let req = http::Request::post("http://127.0.0.1:8080/pkg.Service/Call")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let mut ready = h2.ready().await.unwrap();
        let (resp, mut send) = ready.send_request(req, false).unwrap();
        send.send_data(Bytes::from_static(b"\0\0\0\0\x02hi"), true)
            .unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200);
        let (body, trailers) = body_of(resp).await;
        assert_eq!(body, b"\0\0\0\0\x03bye");
        let trailers = trailers.expect("trailers");
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(trailers["grpc-message"], "ok");
    });
}

#[test]
fn kill_resets_the_stream_with_internal_error_and_the_connection_goes_on() {
    let file = FlowFile::new(&[FlowSpec::get("/a", 200, b"alpha")]);
    let server = Server::start(&["-S", file.arg(), "--reuse", "-k"]);
    runtime().block_on(async {
        let mut h2 = connect(&server, 65_535).await;
        let err = send_get(&mut h2, "/unknown").await.await.unwrap_err();
        assert_eq!(err.reason(), Some(h2::Reason::INTERNAL_ERROR), "{err:?}");
        let resp = send_get(&mut h2, "/a").await.await.unwrap();
        assert_eq!(body_of(resp).await.0, b"alpha");
    });
    let stopped = server.stop();
    assert!(stopped.stderr.contains("killed 1"), "{}", stopped.stderr);
}

// ---- raw frames ----

pub(super) fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len();
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// An HPACK block of literal fields without indexing (no Huffman).
pub(super) fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in fields {
        out.push(0x00);
        out.push(n.len() as u8);
        out.extend_from_slice(n.as_bytes());
        out.push(v.len() as u8);
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// Reads frames until `stop(kind, flags, stream, payload)` says so; returns them all.
pub(super) fn read_frames(
    s: &mut impl Read,
    buf: &mut Vec<u8>,
    mut stop: impl FnMut(u8, u8, u32, &[u8]) -> bool,
) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let mut frames = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        while buf.len() >= 9 {
            let len =
                (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            let payload = buf[9..9 + len].to_vec();
            buf.drain(..9 + len);
            let done = stop(kind, flags, stream, &payload);
            frames.push((kind, flags, stream, payload));
            if done {
                return frames;
            }
        }
        let n = s.read(&mut chunk).expect("read frames");
        assert!(n > 0, "the connection ended early after {frames:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

pub(super) const DATA: u8 = 0;
pub(super) const HEADERS: u8 = 1;
pub(super) const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
pub(super) const END_STREAM: u8 = 1;
pub(super) const END_HEADERS: u8 = 4;

#[test]
fn sigterm_sends_goaway_and_the_stream_in_flight_is_still_answered() {
    let mut post = FlowSpec::get("/upload", 200, b"stored");
    post.method = b"POST".to_vec();
    post.content = Some(b"abcdef".to_vec());
    let file = FlowFile::new(&[post, FlowSpec::get("/a", 200, b"alpha")]);
    let server = Server::start(&["-S", file.arg(), "--reuse"]);
    let mut s = server.connect();
    let mut out = Vec::new();
    out.extend_from_slice(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    frame(&mut out, SETTINGS, 0, 0, &[]);
    // Stream 1: a POST whose body is only half sent.
    let head = [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "127.0.0.1:8080"),
        (":path", "/upload"),
        ("content-length", "6"),
    ];
    frame(&mut out, HEADERS, END_HEADERS, 1, &block(&head));
    frame(&mut out, DATA, 0, 1, b"abc");
    // Stream 3: a GET; its answer proves the server has taken stream 1 too.
    let get = [
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "127.0.0.1:8080"),
        (":path", "/a"),
    ];
    frame(&mut out, HEADERS, END_HEADERS | END_STREAM, 3, &block(&get));
    s.write_all(&out).unwrap();
    let mut buf = Vec::new();
    let frames = read_frames(&mut s, &mut buf, |k, f, id, _| {
        id == 3 && k == DATA && f & END_STREAM != 0
    });
    assert!(frames
        .iter()
        .any(|f| f.0 == DATA && f.2 == 3 && f.3 == b"alpha"));
    server.terminate();
    let frames = read_frames(&mut s, &mut buf, |k, _, _, _| k == GOAWAY);
    let goaway = &frames.last().unwrap().3;
    assert_eq!(
        &goaway[..4],
        &3u32.to_be_bytes(),
        "last stream 3: {goaway:?}"
    );
    assert_eq!(&goaway[4..8], &0u32.to_be_bytes(), "NO_ERROR");
    // The rest of stream 1's body: it is answered, then the connection ends.
    let mut rest = Vec::new();
    frame(&mut rest, DATA, END_STREAM, 1, b"def");
    s.write_all(&rest).unwrap();
    let frames = read_frames(&mut s, &mut buf, |k, f, id, _| {
        id == 1 && k == DATA && f & END_STREAM != 0
    });
    let body: Vec<u8> = frames
        .iter()
        .filter(|f| f.0 == DATA && f.2 == 1)
        .flat_map(|f| f.3.clone())
        .collect();
    assert_eq!(body, b"stored");
    let mut tail = Vec::new();
    s.read_to_end(&mut tail)
        .expect("the connection ends cleanly");
    assert!(tail.is_empty(), "nothing after the last answer: {tail:?}");
    let stopped = server.wait_exit();
    assert!(stopped.status.success(), "{}", stopped.stderr);
}

#[test]
fn an_unmatched_h2_request_is_forwarded_and_the_chunked_http1_answer_reframed() {
    let upstream = super::support::Upstream::start(
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-Up: 1\r\n\r\n5\r\nhello\r\n9\r\n upstream\r\n0\r\n\r\n",
        false,
    );
    let file = FlowFile::new(&[FlowSpec::get("/a", 200, b"alpha")]);
    let mode = format!("reverse:http://{}", upstream.addr);
    let server = Server::start(&["-S", file.arg(), "--mode", &mode]);
    runtime().block_on(async {
        let h2 = connect(&server, 65_535).await;
        let req = http::Request::post("http://client.example/new?x=1")
            .body(())
            .unwrap();
        let mut ready = h2.ready().await.unwrap();
        let (resp, mut send) = ready.send_request(req, false).unwrap();
        send.send_data(Bytes::from_static(b"hi"), true).unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.headers()["x-up"], "1");
        assert!(resp.headers().get("transfer-encoding").is_none());
        assert_eq!(body_of(resp).await.0, b"hello upstream");
    });
    let seen = upstream
        .requests
        .recv_timeout(super::support::PATIENCE)
        .unwrap();
    let seen = String::from_utf8(seen).unwrap();
    assert!(seen.starts_with("POST /new?x=1 HTTP/1.1\r\n"), "{seen}");
    assert!(
        seen.contains(&format!("host: {}\r\n", upstream.addr)),
        "{seen}"
    );
    assert!(seen.ends_with("\r\n\r\nhi"), "{seen}");
    let stopped = server.stop();
    assert!(stopped.stderr.contains("forwarded 1"), "{}", stopped.stderr);
}

#[test]
fn refresh_shifts_recorded_dates_over_h2_and_a_head_gets_no_body() {
    let mut flow = FlowSpec::get("/dated", 200, b"old");
    flow.timestamp_start = 1_600_000_000.0;
    let response = flow.response.as_mut().unwrap();
    response.timestamp_start = 1_600_000_000.0;
    response
        .headers
        .push((b"Date".to_vec(), b"Sun, 13 Sep 2020 12:26:40 GMT".to_vec()));
    let mut head = FlowSpec::get("/resource", 200, b"");
    head.method = b"HEAD".to_vec();
    head.response.as_mut().unwrap().headers[1].1 = b"100".to_vec();
    let file = FlowFile::new(&[flow, head]);
    let server = Server::start(&["-S", file.arg(), "--reuse"]);
    runtime().block_on(async {
        let mut h2 = connect(&server, 65_535).await;
        let resp = send_get(&mut h2, "/dated").await.await.unwrap();
        let date = resp.headers()["date"].to_str().unwrap().to_string();
        assert_ne!(date, "Sun, 13 Sep 2020 12:26:40 GMT", "refreshed");
        assert!(date.ends_with(" GMT") && !date.contains("2020"), "{date}");
        assert_eq!(body_of(resp).await.0, b"old");
        let req = http::Request::head("http://127.0.0.1:8080/resource")
            .body(())
            .unwrap();
        let mut ready = h2.ready().await.unwrap();
        let (resp, _) = ready.send_request(req, true).unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.headers()["content-length"], "100");
        assert!(resp.body().is_end_stream(), "the head ends the stream");
    });
}

#[test]
fn an_idle_h2c_connection_gets_goaway_then_closes() {
    let file = FlowFile::new(&[FlowSpec::get("/a", 200, b"alpha")]);
    let server = Server::start(&["-S", file.arg(), "--reuse", "--idle-timeout", "1"]);
    let mut s = server.connect();
    let mut out = Vec::new();
    out.extend_from_slice(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    frame(&mut out, SETTINGS, 0, 0, &[]);
    s.write_all(&out).unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let frames = read_frames(&mut s, &mut buf, |k, _, _, _| k == GOAWAY);
    let goaway = &frames.last().unwrap().3;
    assert_eq!(&goaway[4..8], &0u32.to_be_bytes(), "NO_ERROR");
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(900),
        "not before the idle timeout"
    );
    // One idle timeout, not two: the deadline the direct ring armed is the one monoio's driver
    // goes by when the ring hands the connection over because it fired (the sweeper's 250 ms
    // tick lets it come up to 0.5 s late; a second timeout would end it after 2 s at least).
    assert!(
        waited < std::time::Duration::from_millis(1900),
        "within one idle timeout: {waited:?}"
    );
    let mut tail = Vec::new();
    s.read_to_end(&mut tail).expect("a clean close");
}

/// Sends `GET url` with `cookies` as separate `cookie` fields (as browsers split them over
/// HTTP/2) and returns the response.
async fn send_with_cookies(
    h2: &mut h2::client::SendRequest<Bytes>,
    url: &str,
    cookies: &[&str],
) -> h2::client::ResponseFuture {
    let mut req = http::Request::get(url).body(()).unwrap();
    for c in cookies {
        req.headers_mut()
            .append("cookie", http::HeaderValue::from_str(c).unwrap());
    }
    let mut ready = h2.clone().ready().await.unwrap();
    let (resp, _) = ready.send_request(req, true).unwrap();
    *h2 = ready;
    resp
}

#[test]
fn a_slow_forward_does_not_hold_up_a_replayed_stream_on_the_same_connection() {
    let upstream = super::support::Upstream::start(
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-Up: slow\r\n\r\nslow",
        true,
    );
    let file = FlowFile::new(&[FlowSpec::get("/fast", 200, b"replayed")]);
    let server = Server::start(&["-S", file.arg(), "--reuse", "-v", "--mode", "regular"]);
    runtime().block_on(async {
        let mut h2 = connect(&server, 65_535).await;
        // Stream 1: unmatched (another host), forwarded to an upstream that answers only when
        // the test releases it.
        let slow = send_get_url(&mut h2, &format!("http://{}/slow", upstream.addr)).await;
        let slow = tokio::spawn(async move {
            let resp = slow.await.unwrap();
            let status = resp.status();
            let up = resp.headers()["x-up"].clone();
            (status, up, body_of(resp).await.0)
        });
        // Stream 3: replayed while stream 1 waits for its upstream.
        let fast = send_get(&mut h2, "/fast").await;
        let fast = tokio::time::timeout(super::support::PATIENCE, fast)
            .await
            .expect("the replayed stream is answered while the forward waits")
            .unwrap();
        assert_eq!(fast.status(), 200);
        assert_eq!(body_of(fast).await.0, b"replayed");
        let seen = upstream
            .requests
            .recv_timeout(super::support::PATIENCE)
            .unwrap();
        assert!(seen.starts_with(b"GET /slow HTTP/1.1\r\n"));
        assert!(!slow.is_finished(), "the upstream has not answered yet");
        upstream.release();
        let (status, up, body) = slow.await.unwrap();
        assert_eq!((status.as_u16(), up.to_str().unwrap()), (200, "slow"));
        assert_eq!(body, b"slow");
    });
    server.wait_stdout("GET http://127.0.0.1:8080/fast << [replay] 200");
    server.wait_stdout("/slow << [forward] 200");
}

#[test]
fn a_large_forwarded_body_arrives_whole_under_a_small_client_window() {
    let big: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    // Chunked, in 10,000-byte chunks: decoded as it arrives, in pieces the window allows.
    let mut response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for chunk in big.chunks(10_000) {
        response.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        response.extend_from_slice(chunk);
        response.extend_from_slice(b"\r\n");
    }
    response.extend_from_slice(b"0\r\n\r\n");
    let upstream = super::support::Upstream::start(Box::leak(response.into_boxed_slice()), false);
    let file = FlowFile::new(&[FlowSpec::get("/a", 200, b"alpha")]);
    let server = Server::start(&["-S", file.arg(), "--reuse", "--mode", "regular"]);
    runtime().block_on(async {
        let mut h2 = connect(&server, 1_000).await;
        let url = format!("http://{}/big", upstream.addr);
        let resp = send_get_url(&mut h2, &url).await.await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().get("transfer-encoding").is_none());
        let (got, _) = body_of(resp).await;
        assert!(got == big, "the body arrived intact ({} bytes)", got.len());
        // The connection goes on: a replayed stream after the forward.
        let resp = send_get(&mut h2, "/a").await.await.unwrap();
        assert_eq!(body_of(resp).await.0, b"alpha");
    });
}

/// A client that stops granting window to a forwarded stream: the relay waits for it, the
/// upstream waits behind the relay, and before the fix nothing ever ended either. Now the idle
/// timeout counts while every forward waits for the client: the connection gets GOAWAY and is
/// closed, its upstream connection with it; other connections are not touched.
#[test]
fn a_forward_whose_client_never_grants_window_ends_at_the_idle_timeout_with_its_upstream() {
    use std::sync::mpsc;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = listener.local_addr().unwrap();
    let (closed_tx, closed) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        // 64 MiB: far more than the client window, the relay's pipe and the socket buffers
        // hold, so this write blocks until the server drops the connection.
        let body = vec![b'z'; 64 << 20];
        let _ = conn.write_all(
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
        );
        let _ = conn.write_all(&body);
        let _ = closed_tx.send(());
    });
    let file = FlowFile::new(&[FlowSpec::get("/a", 200, b"alpha")]);
    let server = Server::start(&[
        "-S",
        file.arg(),
        "--reuse",
        "--mode",
        "regular",
        "--idle-timeout",
        "1",
    ]);
    runtime().block_on(async {
        let mut h2 = connect(&server, 1_000).await;
        let url = format!("http://{origin}/big");
        let resp = send_get_url(&mut h2, &url).await.await.unwrap();
        assert_eq!(resp.status(), 200);
        // The body is never read, so no window is released.
        let held = resp;
        let waited =
            tokio::task::spawn_blocking(move || closed.recv_timeout(super::support::PATIENCE));
        assert!(
            waited.await.unwrap().is_ok(),
            "the upstream connection was not closed"
        );
        drop(held);
        // Another connection is served as before.
        let mut other = connect(&server, 65_535).await;
        let resp = send_get(&mut other, "/a").await.await.unwrap();
        assert_eq!(body_of(resp).await.0, b"alpha");
    });
}

#[test]
fn split_cookie_fields_are_joined_for_matching_and_for_the_http1_upstream() {
    let mut flow = FlowSpec::get("/c", 200, b"recorded");
    flow.headers
        .push((b"Cookie".to_vec(), b"a=1; b=2".to_vec()));
    let file = FlowFile::new(&[flow]);
    // Close-delimited: the body ends when the upstream closes.
    let upstream = super::support::Upstream::start(b"HTTP/1.1 200 OK\r\n\r\nfrom upstream", false);
    let server = Server::start(&[
        "-S",
        file.arg(),
        "--reuse",
        "--rheader",
        "cookie",
        "--mode",
        "regular",
    ]);
    runtime().block_on(async {
        let mut h2 = connect(&server, 65_535).await;
        let resp = send_with_cookies(&mut h2, "http://127.0.0.1:8080/c", &["a=1", "b=2"])
            .await
            .await
            .unwrap();
        assert_eq!(body_of(resp).await.0, b"recorded");
        let url = format!("http://{}/c", upstream.addr);
        let resp = send_with_cookies(&mut h2, &url, &["a=1", "b=3"])
            .await
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(body_of(resp).await.0, b"from upstream");
    });
    let seen = upstream
        .requests
        .recv_timeout(super::support::PATIENCE)
        .unwrap();
    let seen = String::from_utf8(seen).unwrap().to_ascii_lowercase();
    // `:authority` became the first field, as mitmproxy inserts Host.
    let first = format!("get /c http/1.1\r\nhost: {}\r\n", upstream.addr);
    assert!(seen.starts_with(&first), "{seen}");
    assert_eq!(seen.matches("cookie:").count(), 1, "{seen}");
    assert!(seen.contains("cookie: a=1; b=3\r\n"), "{seen}");
}

/// Sends `GET url` and returns the response.
pub(super) async fn send_get_url(
    h2: &mut h2::client::SendRequest<Bytes>,
    url: &str,
) -> h2::client::ResponseFuture {
    send_with_cookies(h2, url, &[]).await
}

#[test]
fn sigterm_sends_goaway_and_a_forward_in_flight_still_completes() {
    let upstream =
        super::support::Upstream::start(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nlater", true);
    let file = FlowFile::new(&[FlowSpec::get("/a", 200, b"alpha")]);
    let server = Server::start(&["-S", file.arg(), "--mode", "regular"]);
    let mut s = server.connect();
    let mut out = Vec::new();
    out.extend_from_slice(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    frame(&mut out, SETTINGS, 0, 0, &[]);
    let authority = upstream.addr.to_string();
    let get = [
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", authority.as_str()),
        (":path", "/pending"),
    ];
    frame(&mut out, HEADERS, END_HEADERS | END_STREAM, 1, &block(&get));
    s.write_all(&out).unwrap();
    // The upstream holds the request: stop the server, and see GOAWAY before it answers.
    let seen = upstream
        .requests
        .recv_timeout(super::support::PATIENCE)
        .unwrap();
    assert!(seen.starts_with(b"GET /pending HTTP/1.1\r\n"));
    server.terminate();
    let mut buf = Vec::new();
    let frames = read_frames(&mut s, &mut buf, |k, _, _, _| k == GOAWAY);
    let goaway = &frames.last().unwrap().3;
    assert_eq!(
        &goaway[..8],
        &[0, 0, 0, 1, 0, 0, 0, 0],
        "last stream 1, NO_ERROR"
    );
    upstream.release();
    let frames = read_frames(&mut s, &mut buf, |k, f, id, _| {
        id == 1 && k == DATA && f & END_STREAM != 0
    });
    assert!(frames.iter().any(|f| f.0 == HEADERS && f.2 == 1));
    let body: Vec<u8> = frames
        .iter()
        .filter(|f| f.0 == DATA && f.2 == 1)
        .flat_map(|f| f.3.clone())
        .collect();
    assert_eq!(body, b"later");
    let mut tail = Vec::new();
    s.read_to_end(&mut tail)
        .expect("the connection ends cleanly");
    let stopped = server.wait_exit();
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert!(stopped.stderr.contains("forwarded 1"), "{}", stopped.stderr);
}

#[test]
fn an_h2c_client_that_grants_window_but_stops_reading_is_reset_after_the_send_timeout() {
    use uringreplay::http2::frame::{flag, kind, put_header, put_settings};
    let big = vec![b'x'; 1024 * 1024];
    let file = FlowFile::new(&[FlowSpec::get("/big", 200, &big)]);
    let server = Server::start(&["-S", file.arg(), "--reuse", "--send-timeout", "1", "-v"]);
    let mut raw = Client::new(&server);
    // The largest windows, then 32 requests for the 1 MiB answer, and nothing read.
    let mut out = uringreplay::http2::PREFACE.to_vec();
    put_settings(&mut out, &[(0x4, 0x7fff_ffff)]);
    put_header(&mut out, 4, kind::WINDOW_UPDATE, 0, 0);
    out.extend_from_slice(&(0x7fff_ffffu32 - 65_535).to_be_bytes());
    let authority = b"127.0.0.1:8080";
    for i in 0..32u32 {
        // :method GET, :scheme http, :path /big, :authority (literals without indexing).
        let mut block = vec![0x82, 0x86, 0x04, 4];
        block.extend_from_slice(b"/big");
        block.extend_from_slice(&[0x01, authority.len() as u8]);
        block.extend_from_slice(authority);
        put_header(
            &mut out,
            block.len(),
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            1 + 2 * i,
        );
        out.extend_from_slice(&block);
    }
    raw.send(&out);
    server.wait_stdout("took none of its answer for 1 s (--send-timeout)");
    // Other connections are served meanwhile and after.
    assert_eq!(Client::new(&server).exchange(&get("/big")).status, 200);
}
