//! Replay-path benches: match key + index lookup (`decide`), and head copy + refresh
//! (`write_reply`), on the real 12-request fixture recording.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use uringreplay::config::{Order, ReplayOptions};
use uringreplay::flowfile::writer::{write_flow, FlowSpec};
use uringreplay::flowfile::{LoadOptions, Recording};
use uringreplay::replay::{key, Decision, FlowId, LiveRequest, Replayer, RequestFacts};

struct Request {
    method: Vec<u8>,
    target: Vec<u8>,
    host: Vec<u8>,
    port: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

fn request_of(recording: &Recording, id: usize) -> Request {
    let r = recording.flow(id).request;
    Request {
        method: r.method.to_vec(),
        target: r.path.to_vec(),
        host: key::pretty_host(r.headers.get(b"host").unwrap_or(r.host)).to_vec(),
        port: r.port,
        headers: r
            .headers
            .iter()
            .map(|(n, v)| (String::from_utf8_lossy(n).into_owned(), v.to_vec()))
            .collect(),
        body: r.content.unwrap_or_default().to_vec(),
    }
}

fn fixture() -> Recording {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/demo.flows");
    Recording::open(&[path], LoadOptions::default(), &mut |_| {}).expect("fixture loads")
}

/// `flows` distinct GETs, to show lookup cost does not grow with the recording.
fn generated(flows: usize) -> Recording {
    let mut bytes = Vec::new();
    for n in 0..flows {
        write_flow(
            &mut bytes,
            &FlowSpec::get(&format!("/item/{n}?page=1"), 200, b"x"),
        );
    }
    Recording::from_bytes(
        vec![(PathBuf::from("gen.flows"), bytes)],
        LoadOptions::default(),
    )
    .expect("generated recording loads")
}

fn bench_decide(c: &mut Criterion, name: &str, recording: Recording, id: usize) {
    let request = request_of(&recording, id);
    let options = ReplayOptions {
        order: Order::Cycle,
        ..ReplayOptions::default()
    };
    let replayer = Replayer::new(Arc::new(recording), &options);
    let headers: Vec<httparse::Header<'_>> = request
        .headers
        .iter()
        .map(|(n, v)| httparse::Header { name: n, value: v })
        .collect();
    let live = LiveRequest {
        scheme: b"http",
        method: &request.method,
        target: &request.target,
        host: &request.host,
        port: request.port,
        headers: &headers,
        body: &request.body,
    };
    assert!(matches!(replayer.decide(&live), Decision::Replay(_)));
    c.bench_function(name, |b| {
        b.iter(|| replayer.decide(std::hint::black_box(&live)))
    });
}

fn key_and_lookup(c: &mut Criterion) {
    bench_decide(c, "decide/fixture GET /echo?q=…", fixture(), 1);
    bench_decide(c, "decide/fixture POST /form", fixture(), 2);
    bench_decide(c, "decide/1k flows", generated(1_000), 500);
    bench_decide(c, "decide/200k flows", generated(200_000), 100_000);
}

fn head_copy_and_refresh(c: &mut Criterion) {
    let replayer = Replayer::new(Arc::new(fixture()), &ReplayOptions::default());
    let mut out = Vec::with_capacity(4096);
    let now = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    let facts = RequestFacts::default();
    // Flow 4 is /session-dates: Date, Expires, Last-Modified and two cookies with Expires.
    let mut group = c.benchmark_group("write_reply");
    out.clear();
    replayer.write_reply(FlowId(4), now, &facts, &mut out);
    group.throughput(Throughput::Bytes(out.len() as u64));
    group.bench_function("session-dates (5 patch sites)", |b| {
        b.iter(|| {
            out.clear();
            let reply = replayer.write_reply(FlowId(4), now, &facts, &mut out);
            std::hint::black_box(reply.body.len())
        })
    });
    group.bench_function("hello (1 patch site)", |b| {
        b.iter(|| {
            out.clear();
            let reply = replayer.write_reply(FlowId(0), now, &facts, &mut out);
            std::hint::black_box(reply.body.len())
        })
    });
    group.finish();
}

fn index_and_templates_at_load(c: &mut Criterion) {
    let recording = Arc::new(generated(100_000));
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    group.throughput(Throughput::Elements(100_000));
    group.bench_function("Replayer::new, 100k flows", |b| {
        b.iter(|| Replayer::new(Arc::clone(&recording), &ReplayOptions::default()).keys())
    });
    group.finish();
}

criterion_group!(
    benches,
    key_and_lookup,
    head_copy_and_refresh,
    index_and_templates_at_load
);
criterion_main!(benches);
