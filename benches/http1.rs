//! Request parsing cost: one typical keep-alive request, and three pipelined requests, through
//! `http1::Conn::poll_request` (what the worker does per request before deciding).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

use uringreplay::http1::{Conn, Limits, Step, MAX_HEADERS};

const TYPICAL: &[u8] = b"GET /api/items/42?lang=en&page=2 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\r\nAccept: application/json\r\n\
Accept-Encoding: gzip, deflate, br\r\nAccept-Language: en-US,en;q=0.9\r\nConnection: keep-alive\r\n\r\n";

/// Parses every request in `input`; returns how many.
fn parse_all(conn: &mut Conn, input: &[u8], scratch: &mut Vec<u8>, out: &mut Vec<u8>) -> usize {
    let (mut pos, mut n) = (0, 0);
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
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

criterion_group!(benches, bench);
criterion_main!(benches);
