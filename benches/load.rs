//! Loading: how fast a recording is read (bytes/s), and what start-up costs as a whole (reading
//! plus building the replayer in the same pass), on generated format-21 data in memory.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use uringreplay::config::ReplayOptions;
use uringreplay::flowfile::mitm::read_flows;
use uringreplay::flowfile::writer::{write_flow, FlowSpec};
use uringreplay::flowfile::{LoadOptions, Recording};
use uringreplay::replay::Replayer;
use uringreplay::server::heap::{self, CountingAllocator};

/// Counts heap bytes, so the bench can report what loading keeps per flow.
#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// 20 000 flows with 280-byte bodies: ~40 MB, the same per-flow shape as the 200 000-flow file
/// the README's load figure uses, small enough for a quick bench.
fn generated(flows: usize) -> Vec<u8> {
    let body = vec![b'x'; 280];
    let mut bytes = Vec::new();
    for i in 0..flows {
        write_flow(
            &mut bytes,
            &FlowSpec::get(&format!("/item/{i}"), 200, &body),
        );
    }
    bytes
}

/// `flows` flows shaped like `gen_flows --body-bytes 100` output (Host; Server, Date,
/// Content-Length).
fn generated_like_gen_flows(flows: usize) -> Vec<u8> {
    let body = vec![b'x'; 100];
    let mut bytes = Vec::new();
    for i in 0..flows {
        let mut spec = FlowSpec::get(&format!("/item/{i}"), 200, &body);
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
    bytes
}

/// Reads `file` and builds the replayer in one pass, as `uringreplay -S` starts.
fn start(file: Vec<u8>) -> Replayer {
    let mut builder = Replayer::builder(&ReplayOptions::default());
    let recording = Recording::from_bytes_observed(
        vec![("gen.flows".into(), file)],
        LoadOptions::default(),
        &mut |event| builder.observe(&event),
    )
    .expect("generated data reads");
    builder.build(Arc::new(recording))
}

fn load(c: &mut Criterion) {
    let bytes = generated(20_000);
    let before = heap::live_bytes().expect("the counting allocator is installed");
    let file = bytes.clone(); // allocated before the measurement: the mapping in real use
    let before = before + file.len();
    let recording = Recording::from_bytes(vec![("gen.flows".into(), file)], LoadOptions::default())
        .expect("generated data reads");
    let added = heap::live_bytes().expect("installed") - before;
    println!(
        "load: heap kept per flow: {:.1} bytes ({} bytes for {} flows)",
        added as f64 / recording.len() as f64,
        added,
        recording.len()
    );
    drop(recording);
    let mut group = c.benchmark_group("load");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.sample_size(20);
    group.bench_function("read_flows_20k", |b| {
        b.iter(|| {
            let contents = read_flows(&bytes, 0, false, &mut |_| {}).expect("generated data reads");
            assert_eq!(contents.flows.len(), 20_000);
            contents
        })
    });
    group.finish();
}

fn start_up(c: &mut Criterion) {
    const FLOWS: usize = 200_000;
    let bytes = generated_like_gen_flows(FLOWS);
    let before = heap::live_bytes().expect("the counting allocator is installed");
    let file = bytes.clone(); // allocated before the measurement: the mapping in real use
    let before = before + file.len();
    let replayer = start(file);
    let added = heap::live_bytes().expect("installed") - before;
    println!(
        "start-up: heap kept per flow (recording + index + templates): {:.1} bytes",
        added as f64 / replayer.recording().len() as f64,
    );
    drop(replayer);
    let mut group = c.benchmark_group("load");
    group.throughput(Throughput::Elements(FLOWS as u64));
    group.sample_size(10);
    group.bench_function("start-up (read + replayer), 200k flows", |b| {
        b.iter_batched(
            || bytes.clone(),
            |file| start(file).keys(),
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, load, start_up);
criterion_main!(benches);
