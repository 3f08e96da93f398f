//! Instructions per saved flow (`-w`): [`Recorder::record`] for a forwarded exchange shaped as
//! `scripts/ab.sh`'s misses (`GET /miss/N`, nginx's 25-byte answer), in a loop that
//! `valgrind --tool=callgrind` can count alone (the serving thread's share), plus the writer
//! thread's work when the whole run is counted.
//!
//! ```sh
//! cargo build --release --example record_cost
//! # the serving thread's share: the `Collected` figure / --flows
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*record_loop*' \
//!     target/release/examples/record_cost --flows 20000
//! # both threads: (Collected with --flows 20000 - Collected with --flows 0) / 20000
//! valgrind --tool=callgrind target/release/examples/record_cost --flows 20000
//! ```
//! `--out FILE` saves there (default `/dev/null`).

use std::net::SocketAddr;

use uringreplay::capture::{
    Endpoint, ForwardedExchange, Recorder, RequestParts, ResponseParts, SaveTarget,
};

const REQUEST_HEAD: &[u8] = b"GET /miss/1234 HTTP/1.1\r\nHost: 127.0.0.1:18080\r\n\
    User-Agent: wrk\r\nAccept: */*\r\n\r\n";
const RESPONSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n\
    Date: Wed, 02 Dec 2026 18:00:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 25\r\n\
    Connection: keep-alive\r\n\r\n";
const RESPONSE_BODY: &[u8] = b"answered by the upstream\n";

/// Records the exchange `flows` times (the counted loop).
#[inline(never)]
fn record_loop(recorder: &Recorder, exchange: &ForwardedExchange<'_>, flows: u64) {
    for _ in 0..flows {
        recorder.record(std::hint::black_box(exchange));
    }
}

fn main() {
    let mut flows = 20_000u64;
    let mut out = "/dev/null".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--flows" => flows = args.next().and_then(|v| v.parse().ok()).expect("--flows N"),
            "--out" => out = args.next().expect("--out FILE"),
            other => panic!("unknown argument {other}"),
        }
    }
    let mut slots = [httparse::EMPTY_HEADER; 16];
    let mut head = httparse::Request::new(&mut slots);
    assert!(head
        .parse(REQUEST_HEAD)
        .expect("request head")
        .is_complete());
    let addr = |s: &str| -> SocketAddr { s.parse().expect("address") };
    let exchange = ForwardedExchange {
        request: RequestParts {
            method: head.method.expect("method").as_bytes(),
            target: head.path.expect("target").as_bytes(),
            version_minor: 1,
            headers: head.headers,
            host: Some(b"127.0.0.1:18001"),
            body: b"",
            start: 1_796_236_452.333_124,
            end: 1_796_236_452.333_124,
        },
        response: Some(ResponseParts {
            head: RESPONSE_HEAD,
            body: RESPONSE_BODY,
            start: 1_796_236_452.339_492_8,
            end: 1_796_236_452.339_61,
        }),
        error: None,
        scheme: "http",
        host: "127.0.0.1",
        port: 18001,
        client: Endpoint {
            connection: 7,
            peer: addr("127.0.0.1:40000"),
            local: addr("127.0.0.1:18080"),
            opened: 1_796_236_452.330_513,
            established: None,
        },
        upstream: Some(Endpoint {
            connection: 3,
            peer: addr("127.0.0.1:18001"),
            local: addr("127.0.0.1:50000"),
            opened: 1_796_236_452.333_5,
            established: Some(1_796_236_452.333_9),
        }),
    };
    let target = SaveTarget::parse(&out);
    let recorder = Recorder::start(&target, "reverse:http://127.0.0.1:18001", 256 << 20)
        .expect("start the recorder");
    record_loop(&recorder, &exchange, flows);
    let writes = recorder.writes();
    let stats = recorder.finish();
    eprintln!("{stats}; {writes}+ writes");
}
