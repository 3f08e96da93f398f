//! Replay-path benches: match key + index lookup (`decide`), and head rendering + refresh
//! (`write_reply`), on the real 12-request fixture recording and on generated recordings of 1 k
//! and 1 M flows (requests spread over the whole recording, so the 1 M case pays its cache misses).

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

/// `flows` distinct GETs shaped like `gen_flows` output (Host, Server, Date, Content-Length), to
/// show per-request cost does not grow with the recording.
fn generated(flows: usize) -> Recording {
    let mut bytes = Vec::new();
    for n in 0..flows {
        let mut spec = FlowSpec::get(&format!("/item/{n}?page=1"), 200, &[b'x'; 100]);
        spec.headers = vec![(b"Host".to_vec(), b"127.0.0.1:8080".to_vec())];
        let response = spec
            .response
            .as_mut()
            .expect("FlowSpec::get records a response");
        response.headers.insert(
            0,
            (b"Date".to_vec(), b"Fri, 27 Nov 2026 00:00:00 GMT".to_vec()),
        );
        response
            .headers
            .insert(0, (b"Server".to_vec(), b"gen_flows/1".to_vec()));
        write_flow(&mut bytes, &spec);
    }
    Recording::from_bytes(
        vec![(PathBuf::from("gen.flows"), bytes)],
        LoadOptions::default(),
    )
    .expect("generated recording loads")
}

/// Requests for `count` flows spread evenly over the recording.
fn spread(recording: &Recording, count: usize) -> Vec<Request> {
    let step = (recording.len() / count).max(1);
    (0..recording.len())
        .step_by(step)
        .take(count)
        .map(|id| request_of(recording, id))
        .collect()
}

fn bench_decide(c: &mut Criterion, name: &str, recording: Recording, ids: &[usize]) {
    let requests: Vec<Request> = ids.iter().map(|&id| request_of(&recording, id)).collect();
    bench_decide_requests(c, name, recording, &requests);
}

fn bench_decide_requests(
    c: &mut Criterion,
    name: &str,
    recording: Recording,
    requests: &[Request],
) {
    let options = ReplayOptions {
        order: Order::Cycle,
        ..ReplayOptions::default()
    };
    let replayer = Replayer::new(Arc::new(recording), &options);
    let headers: Vec<Vec<httparse::Header<'_>>> = requests
        .iter()
        .map(|request| {
            request
                .headers
                .iter()
                .map(|(n, v)| httparse::Header { name: n, value: v })
                .collect()
        })
        .collect();
    let lives: Vec<LiveRequest<'_>> = requests
        .iter()
        .zip(&headers)
        .map(|(request, headers)| LiveRequest {
            scheme: b"http",
            method: &request.method,
            target: &request.target,
            host: &request.host,
            port: request.port,
            headers,
            body: &request.body,
        })
        .collect();
    for live in &lives {
        assert!(matches!(replayer.decide(live), Decision::Replay(_)));
    }
    let mut next = 0;
    c.bench_function(name, |b| {
        b.iter(|| {
            let live = &lives[next];
            next = (next + 1) % lives.len();
            replayer.decide(std::hint::black_box(live))
        })
    });
}

fn key_and_lookup(c: &mut Criterion) {
    bench_decide(c, "decide/fixture GET /echo?q=…", fixture(), &[1]);
    bench_decide(c, "decide/fixture POST /form", fixture(), &[2]);
    bench_decide(c, "decide/1 flow", generated(1), &[0]);
    let small = generated(1_000);
    let requests = spread(&small, 1_000);
    bench_decide_requests(c, "decide/1k flows", small, &requests);
    let big = generated(1_000_000);
    let requests = spread(&big, 4_096);
    bench_decide_requests(c, "decide/1M flows", big, &requests);
}

/// `write_reply` over flows spread across a generated recording of `flows` flows.
fn bench_write_generated(c: &mut Criterion, name: &str, flows: usize) {
    let replayer = Replayer::new(Arc::new(generated(flows)), &ReplayOptions::default());
    let step = (flows / 4_096).max(1);
    let ids: Vec<FlowId> = (0..flows)
        .step_by(step)
        .take(4_096)
        .map(|id| FlowId(id as u32))
        .collect();
    let mut out = Vec::with_capacity(4096);
    let now = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    let facts = RequestFacts::default();
    let mut next = 0;
    c.bench_function(name, |b| {
        b.iter(|| {
            out.clear();
            let flow = ids[next];
            next = (next + 1) % ids.len();
            let reply = replayer.write_reply(flow, now, &facts, &mut out);
            std::hint::black_box(reply.body.len())
        })
    });
}

fn head_and_refresh(c: &mut Criterion) {
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
    bench_write_generated(c, "write_reply/1 flow", 1);
    bench_write_generated(c, "write_reply/1k flows", 1_000);
    bench_write_generated(c, "write_reply/1M flows", 1_000_000);
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
    head_and_refresh,
    index_and_templates_at_load
);
criterion_main!(benches);
