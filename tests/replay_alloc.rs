//! The replay path (`decide` + `write_reply`) makes no heap allocation, shown with the counting
//! allocator installed for this test binary.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use uringreplay::config::{Order, ReplayOptions};
use uringreplay::flowfile::{LoadOptions, Recording};
use uringreplay::replay::{key, Decision, LiveRequest, Replayer, RequestFacts};
use uringreplay::server::heap;

#[global_allocator]
static ALLOCATOR: heap::CountingAllocator = heap::CountingAllocator;

/// One recorded request, owned, in the shape a connection hands to the replayer.
struct Request {
    scheme: Vec<u8>,
    method: Vec<u8>,
    target: Vec<u8>,
    host: Vec<u8>,
    port: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

fn requests(recording: &Recording) -> Vec<Request> {
    recording
        .flows()
        .map(|f| {
            let r = f.request;
            Request {
                scheme: r.scheme.to_vec(),
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
        })
        .collect()
}

fn replay_everything(options: &ReplayOptions) {
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/demo.flows");
    let recording = Recording::open(&[fixture], LoadOptions::default(), &mut |_| {}).unwrap();
    let requests = requests(&recording);
    let replayer = Replayer::new(Arc::new(recording), options);
    let headers: Vec<Vec<httparse::Header<'_>>> = requests
        .iter()
        .map(|r| {
            r.headers
                .iter()
                .map(|(n, v)| httparse::Header { name: n, value: v })
                .collect()
        })
        .collect();
    let mut out = Vec::with_capacity(64 * 1024);
    let now = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    let facts = RequestFacts::default();
    let _ = Replayer::status_reply(404); // the status table is built once, on first use

    assert!(
        heap::live_bytes().is_some(),
        "the counting allocator is installed"
    );
    let before = heap::allocations();
    let mut replayed = 0;
    for round in 0..50 {
        for (request, headers) in requests.iter().zip(&headers) {
            let live = LiveRequest {
                scheme: &request.scheme,
                method: &request.method,
                target: &request.target,
                host: &request.host,
                port: request.port,
                headers,
                body: &request.body,
            };
            match replayer.decide(&live) {
                Decision::Replay(flow) => {
                    out.clear();
                    let reply = replayer.write_reply(
                        flow,
                        now + Duration::from_secs(round),
                        &facts,
                        &mut out,
                    );
                    assert!(!out.is_empty());
                    std::hint::black_box(reply);
                    replayed += 1;
                }
                other => panic!("expected a replay, got {other:?}"),
            }
        }
    }
    let allocations = heap::allocations() - before;
    assert_eq!(replayed, 50 * requests.len());
    assert_eq!(
        allocations, 0,
        "the replay path allocated {allocations} times"
    );
}

#[test]
fn deciding_and_writing_replies_never_allocates() {
    replay_everything(&ReplayOptions {
        order: Order::Cycle,
        ..ReplayOptions::default()
    });
    // The option-heavy path: header values, ignored query names and form parsing.
    replay_everything(&ReplayOptions {
        order: Order::Cycle,
        use_headers: vec!["accept".into(), "x-missing".into()],
        ignore_params: vec!["page".into()],
        ignore_payload_params: vec!["csrf".into()],
        ..ReplayOptions::default()
    });
}
