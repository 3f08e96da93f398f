//! Unmatched requests forwarded to a loopback upstream (plain HTTP/1.1, lazy).

use crate::support::{closed_port, fixture, get, Client, Server, Upstream};

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
    assert!(stopped.stdout.contains("forwarded 1"), "{}", stopped.stdout);
}

#[test]
fn an_unreachable_upstream_gives_502_with_a_reason() {
    let path = fixture("demo.flows");
    let mode = format!("reverse:http://127.0.0.1:{}", closed_port());
    let server = Server::start(&["-S", path.to_str().unwrap(), "--mode", &mode]);
    let mut c = Client::new(&server);
    c.send(&get("/not-recorded"));
    let text = String::from_utf8(c.read_to_close()).unwrap();
    assert!(text.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{text}");
    let body = text.split("\r\n\r\n").nth(1).unwrap();
    assert!(
        body.contains("refused") && body.ends_with('\n') && body.lines().count() == 1,
        "{body:?}"
    );
}
