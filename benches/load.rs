//! Loading: how fast a recording is read (bytes/s), on a generated format-21 file in memory.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use uringreplay::flowfile::mitm::read_flows;
use uringreplay::flowfile::writer::{write_flow, FlowSpec};
use uringreplay::flowfile::{LoadOptions, Recording};
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

criterion_group!(benches, load);
criterion_main!(benches);
