//! Request parsing cost: one typical keep-alive request, and three pipelined requests, through
//! `http1::Conn::poll_request` (what the worker does per request before deciding); the whole
//! user-space work of one keep-alive request through the code the worker runs (`Conn`, then
//! `exchange::decide` and `exchange::render_http1`: parse, Host rewrite, key and lookup, head
//! copy with the Date refreshed, body copy); and the per-byte cost of a chunked upload received
//! read by read (1, 4 and 16 MiB: flat when decoding is incremental).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

use uringreplay::config::{Order, ReplayOptions};
use uringreplay::exchange::{self, Answer, Routing};
use uringreplay::flowfile::writer::{write_flow, FlowSpec};
use uringreplay::flowfile::{LoadOptions, Recording};
use uringreplay::http1::{header_slots, Conn, Limits, Step};
use uringreplay::replay::{Replayer, RequestFacts};
use uringreplay::upstream::{Origin, Via};

const TYPICAL: &[u8] = b"GET /api/items/42?lang=en&page=2 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\r\nAccept: application/json\r\n\
Accept-Encoding: gzip, deflate, br\r\nAccept-Language: en-US,en;q=0.9\r\nConnection: keep-alive\r\n\r\n";

/// Parses every request in `input`; returns how many.
fn parse_all(conn: &mut Conn, input: &[u8], scratch: &mut Vec<u8>, out: &mut Vec<u8>) -> usize {
    let (mut pos, mut n) = (0, 0);
    // As the driver after each write: the answers queued so far are gone.
    conn.flushed();
    loop {
        let mut headers = header_slots();
        match conn.poll_request(&input[pos..], &mut headers, scratch, out) {
            Step::Request(r) => {
                pos += r.len;
                n += 1;
            }
            _ => return n,
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("http1");
    let mut conn = Conn::new(Limits::default());
    let (mut scratch, mut out) = (Vec::new(), Vec::new());
    group.throughput(Throughput::Elements(1));
    group.bench_function("typical_request", |b| {
        b.iter(|| parse_all(&mut conn, black_box(TYPICAL), &mut scratch, &mut out))
    });
    let pipelined = [TYPICAL, TYPICAL, TYPICAL].concat();
    group.throughput(Throughput::Elements(3));
    group.bench_function("three_pipelined", |b| {
        b.iter(|| parse_all(&mut conn, black_box(&pipelined), &mut scratch, &mut out))
    });
    group.finish();
}

/// The benchmark recording of scripts/bench.sh: `/small` (≈200-byte response, six header
/// fields, a Date to refresh) and `/16k`.
fn bench_recording() -> Recording {
    let flow = |path: &str, body: &[u8]| {
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
    };
    let mut bytes = Vec::new();
    write_flow(&mut bytes, &flow("/small", b"hello from the recording\n"));
    write_flow(&mut bytes, &flow("/16k", &vec![b'x'; 16 * 1024]));
    Recording::from_bytes(
        vec![(PathBuf::from("bench.flows"), bytes)],
        LoadOptions::default(),
    )
    .expect("bench recording loads")
}

/// Reverse mode to 127.0.0.1:8080, as `uringreplay -S bench.flows --reuse` serves it: the
/// origin and the Host value the server computes once at start-up.
struct Reverse {
    origin: Origin,
    host_header: Vec<u8>,
}

impl Reverse {
    fn new() -> Reverse {
        let origin = Origin::parse_reverse_spec("http://127.0.0.1:8080").expect("a valid spec");
        let host_header = origin.host_header().into_bytes();
        Reverse {
            origin,
            host_header,
        }
    }

    fn routing(&self) -> Routing<'_> {
        Routing {
            reverse: Some((&self.origin, &self.host_header)),
            keep_host_header: false,
            tls: false,
        }
    }
}

/// One request through the path the worker runs: `Conn::poll_request`, then the exchange
/// (route, decide, HTTP/1 render); returns the reply's length. Only the socket calls are left
/// out (the worker's outbox is the same `Sink` over a byte buffer for bodies this small).
fn answer(
    conn: &mut Conn,
    replayer: &Replayer,
    routing: Routing<'_>,
    via: &Via,
    input: &[u8],
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> usize {
    let now = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    let mut headers = header_slots();
    // The previous answer was written.
    conn.flushed();
    let Step::Request(req) = conn.poll_request(input, &mut headers, scratch, out) else {
        return 0;
    };
    let facts = RequestFacts {
        is_head: req.is_head,
        wants_close: req.wants_close,
        http10_keep_alive: req.http10_keep_alive,
    };
    let ex = exchange::decide(
        replayer,
        routing,
        via,
        exchange::Request {
            method: req.method,
            target: req.target,
            headers: req.headers,
            body: req.body,
            facts,
        },
    );
    if !matches!(ex.answer, Answer::Replay(_)) {
        return 0;
    }
    exchange::render_http1(&ex, replayer, via, now, false, out);
    out.len()
}

fn per_request(c: &mut Criterion) {
    let recording = Arc::new(bench_recording());
    let mut group = c.benchmark_group("per_request");
    group.throughput(Throughput::Elements(1));
    for (name, refresh) in [("small, refresh", true), ("small, no refresh", false)] {
        let options = ReplayOptions {
            order: Order::First,
            refresh,
            ..ReplayOptions::default()
        };
        let replayer = Replayer::new(recording.clone(), &options);
        let mut conn = Conn::new(Limits::default());
        let (mut scratch, mut out) = (Vec::new(), Vec::with_capacity(16 * 1024));
        let input = b"GET /small HTTP/1.1\r\nHost: 127.0.0.1:18100\r\n\r\n";
        let (reverse, via) = (Reverse::new(), Via::new(1));
        let routing = reverse.routing();
        let replies = answer(
            &mut conn,
            &replayer,
            routing,
            &via,
            input,
            &mut scratch,
            &mut out,
        );
        assert!(replies > 0, "the bench request is replayed");
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                answer(
                    &mut conn,
                    &replayer,
                    routing,
                    &via,
                    black_box(input),
                    &mut scratch,
                    &mut out,
                )
            })
        });
    }
    group.finish();
}

/// A chunked upload of `size` bytes in chunks of 1 B to 4 KiB, and the read sizes (1 B to
/// 4 KiB) it arrives in.
fn chunked_upload(size: usize) -> (Vec<u8>, Vec<usize>) {
    let mut seed = 7u32;
    let mut next = move || {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        (seed >> 8) as usize % 4096 + 1
    };
    let mut whole = b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let mut left = size;
    while left > 0 {
        let n = next().min(left);
        whole.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        whole.resize(whole.len() + n, b'z');
        whole.extend_from_slice(b"\r\n");
        left -= n;
    }
    whole.extend_from_slice(b"0\r\n\r\n");
    let mut reads = Vec::new();
    let mut have = 0;
    while have < whole.len() {
        let n = next().min(whole.len() - have);
        reads.push(n);
        have += n;
    }
    (whole, reads)
}

/// Per-byte cost of receiving a chunked upload read by read, as the driver polls the Conn: flat
/// from 1 MiB to 16 MiB when decoding is incremental.
fn chunked(c: &mut Criterion) {
    let mut group = c.benchmark_group("chunked_upload");
    group.sample_size(10);
    for mib in [1usize, 4, 16] {
        let (whole, reads) = chunked_upload(mib * 1024 * 1024);
        group.throughput(Throughput::Bytes(whole.len() as u64));
        group.bench_function(format!("{mib}_mib"), |b| {
            b.iter(|| {
                let limits = Limits {
                    max_body: 16 * 1024 * 1024,
                    ..Limits::default()
                };
                let mut conn = Conn::new(limits);
                let (mut scratch, mut out) = (Vec::new(), Vec::new());
                let mut have = 0;
                for &n in &reads {
                    have += n;
                    let mut headers = header_slots();
                    if let Step::Request(r) =
                        conn.poll_request(&whole[..have], &mut headers, &mut scratch, &mut out)
                    {
                        return r.body.len();
                    }
                }
                0
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench, per_request, chunked);
criterion_main!(benches);
