//! Hostile input gets a status and a close, never a crash.

use crate::support::{fixture, get, Client, Server};

fn demo(extra: &[&str]) -> Server {
    let path = fixture("demo.flows");
    let mut args = vec!["-S", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// Sends `request`, expects `status` then a close; the server still serves afterwards.
fn rejected(server: &Server, request: &[u8], status: u16) {
    let mut c = Client::new(server);
    c.send(request);
    let all = c.read_to_close();
    let text = String::from_utf8_lossy(&all);
    assert!(
        text.starts_with(&format!("HTTP/1.1 {status} ")),
        "{status} expected, got {text:?}"
    );
    assert!(text.contains("connection: close\r\n"), "{text}");
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
    let server = demo(&["--header-timeout", "1", "--idle-timeout", "1"]);
    let mut c = Client::new(&server);
    c.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n");
    let text = String::from_utf8(c.read_to_close()).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{text}"
    );

    let mut c = Client::new(&server);
    assert_eq!(c.exchange(&get("/hello")).status, 200);
    assert_eq!(
        c.read_to_close(),
        b"",
        "idle keep-alive connection closed silently"
    );
}
