//! Writes the benchmark recording: `GET /small` (a ≈200-byte response with six header fields),
//! `GET /close` (the same with `Connection: close`, as a server answering a closing client sends
//! it) and `GET /16k` (a 16 KiB body), all to 127.0.0.1:8080.
//!
//! Usage: `cargo run --release --example bench_flows -- OUT.flows`

use uringreplay::flowfile::writer::{write_flow, FlowSpec};

fn flow(path: &str, body: &[u8]) -> FlowSpec {
    let mut flow = FlowSpec::get(path, 200, body);
    let response = flow
        .response
        .as_mut()
        .expect("FlowSpec::get records a response");
    response.headers = vec![
        (b"Server".to_vec(), b"origin/1".to_vec()),
        (b"Date".to_vec(), b"Fri, 27 Nov 2026 00:00:00 GMT".to_vec()),
        (b"Content-Type".to_vec(), b"text/plain".to_vec()),
        (b"Cache-Control".to_vec(), b"max-age=60".to_vec()),
        (b"X-Request-Id".to_vec(), b"bench-0001".to_vec()),
        (
            b"Content-Length".to_vec(),
            body.len().to_string().into_bytes(),
        ),
    ];
    flow
}

fn main() {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "bench.flows".to_string());
    let mut bytes = Vec::new();
    write_flow(&mut bytes, &flow("/small", b"hello from the recording\n"));
    let mut close = flow("/close", b"hello from the recording\n");
    if let Some(response) = close.response.as_mut() {
        response
            .headers
            .push((b"Connection".to_vec(), b"close".to_vec()));
    }
    write_flow(&mut bytes, &close);
    write_flow(&mut bytes, &flow("/16k", &vec![b'x'; 16 * 1024]));
    if let Err(e) = std::fs::write(&out, bytes) {
        eprintln!("error: cannot write {out}: {e}");
        std::process::exit(1);
    }
}
