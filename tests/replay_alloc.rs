//! The replay path (`decide` + `write_reply`) makes no heap allocation, nor does a `--log-json`
//! line (formatted into the core's batch, batches handed to the writer thread and recycled),
//! shown with the counting allocator installed for this test binary.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use uringreplay::config::{Order, ReplayOptions};
use uringreplay::exchange::Url;
use uringreplay::flowfile::writer::{write_flow, FlowSpec};
use uringreplay::flowfile::{LoadOptions, Recording};
use uringreplay::replay::{key, Decision, LiveRequest, Replayer, RequestFacts};
use uringreplay::server::heap;
use uringreplay::server::reqlog::{self, Answered};
use uringreplay::stats::{Counters, Outcome};
use uringreplay::upstream::Destination;

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

fn fixture() -> Recording {
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/demo.flows");
    Recording::open(&[fixture], LoadOptions::default(), &mut |_| {}).unwrap()
}

/// A multipart POST and a GET with 40 query parameters (more key items than fit inline
/// anywhere), with a dated response whose cookie expiry cannot be shifted.
fn generated() -> Recording {
    let mut bytes = Vec::new();
    let mut post = FlowSpec::get("/upload?x=1", 200, b"ok");
    post.method = b"POST".to_vec();
    post.headers.push((
        b"Content-Type".to_vec(),
        b"multipart/form-data; boundary=BB".to_vec(),
    ));
    post.content = Some(
        b"--BB\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--BB\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nt\r\n--BB--\r\n"
            .to_vec(),
    );
    write_flow(&mut bytes, &post);
    let query: Vec<String> = (0..40).map(|i| format!("p{i}=%C3%A9{i}")).collect();
    let mut get = FlowSpec::get(&format!("/many?{}", query.join("&")), 200, b"ok");
    let headers = &mut get.response.as_mut().unwrap().headers;
    headers.push((
        b"Set-Cookie".to_vec(),
        b"a=b; Expires=Wed, 09 Jun 2038 10:18:14 GMT; Path=/".to_vec(),
    ));
    // Cannot be shifted forward: sent as recorded, the slow path of refresh.
    headers.push((
        b"Set-Cookie".to_vec(),
        b"c=d; expires=Fri, 31-Dec-9999 23:59:59 GMT".to_vec(),
    ));
    headers.push((b"Date".to_vec(), b"Fri, 27 Nov 2026 00:00:00 GMT".to_vec()));
    write_flow(&mut bytes, &get);
    Recording::from_bytes(
        vec![(PathBuf::from("gen.flows"), bytes)],
        LoadOptions::default(),
    )
    .unwrap()
}

fn replay_everything(recording: Recording, options: &ReplayOptions) {
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
    let before = heap::thread_allocations();
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
    let allocations = heap::thread_allocations() - before;
    assert_eq!(replayed, 50 * requests.len());
    assert_eq!(
        allocations, 0,
        "the replay path allocated {allocations} times"
    );
}

#[test]
fn deciding_and_writing_replies_never_allocates() {
    let plain = ReplayOptions {
        order: Order::Cycle,
        ..ReplayOptions::default()
    };
    // The option-heavy path: header values, ignored query names and form parsing.
    let heavy = ReplayOptions {
        order: Order::Cycle,
        use_headers: vec!["accept".into(), "x-missing".into()],
        ignore_params: vec!["page".into(), "p7".into()],
        ignore_payload_params: vec!["csrf".into()],
        ..ReplayOptions::default()
    };
    for options in [&plain, &heavy] {
        replay_everything(fixture(), options);
        replay_everything(generated(), options);
    }
}

#[test]
fn logging_requests_as_json_lines_allocates_at_most_its_buffers_never_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.jsonl");
    let (writer, mut cores) = reqlog::start(&path, 1, 1).unwrap();
    let mut log = cores.pop().unwrap();
    let counters = Counters::default();
    let route = Destination {
        scheme: b"http",
        host: b"example.com",
        port: 8080,
        target: b"/item/42?q=\"quoted\"&bad=\xff",
    };
    let now = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    let mut logged = 0u64;
    let mut run = |n: usize| {
        for i in 0..n {
            assert!(log.sampled());
            log.answered(
                &Answered {
                    peer: "127.0.0.1:50312".parse().unwrap(),
                    method: b"GET",
                    url: Some(Url {
                        route: &route,
                        connect: false,
                    }),
                    http_version: "HTTP/1.1",
                    outcome: Outcome::Replayed(200),
                    flow: Some(i as u32),
                    body_bytes: 100,
                    turn: now,
                },
                &counters,
            );
            logged += 1;
            // A quiet core's flush tick now and then: partial batches too.
            if i % 997 == 0 {
                log.tick(&counters);
            }
        }
    };
    // Warm: every buffer of the core has been made (several full batches went out).
    run(20_000);
    let before = heap::thread_allocations();
    run(50_000);
    let allocations = heap::thread_allocations() - before;
    // A writer thread slowed by a busy machine may keep more of the core's buffers at once than
    // during the warm-up, and the core then makes one more: at most its buffer count over
    // 50 000 lines, never one per line.
    assert!(
        allocations <= uringreplay::server::reqlog::BUFFERS_PER_CORE as u64,
        "logging allocated {allocations} times"
    );
    log.finish(&counters);
    let dropped = counters
        .log_dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    writer.finish(dropped);
    let lines = std::fs::read_to_string(&path).unwrap().lines().count() as u64;
    assert_eq!(
        lines + dropped,
        logged,
        "every line written or counted as dropped"
    );
}

#[test]
fn the_repeat_cache_allocates_only_while_it_fills() {
    use uringreplay::exchange::repeat::{Context, RepeatCache};
    let recording = fixture();
    let requests = requests(&recording);
    let options = ReplayOptions {
        order: Order::First,
        ..ReplayOptions::default()
    };
    let replayer = Replayer::new(Arc::new(recording), &options);
    let context = Context {
        stamp: replayer.repeat_stamp().unwrap(),
        tls: false,
        tunnels: true,
    };
    // Each recorded request as HTTP/1 bytes, kept under the flow that answers it.
    let wire: Vec<(Vec<u8>, uringreplay::replay::FlowId)> = requests
        .iter()
        .filter_map(|r| {
            let live = LiveRequest {
                scheme: &r.scheme,
                method: &r.method,
                target: &r.target,
                host: &r.host,
                port: r.port,
                headers: &[],
                body: &r.body,
            };
            let Decision::Replay(flow) = replayer.decide(&live) else {
                return None;
            };
            let bytes = [
                &r.method[..],
                b" ",
                &r.target,
                b" HTTP/1.1\r\nHost: ",
                &r.host,
                b"\r\nAccept: */*\r\n\r\n",
            ]
            .concat();
            Some((bytes, flow))
        })
        .collect();
    // Requests that differ only in what these bytes leave out are one request here.
    let wire: Vec<_> = wire
        .iter()
        .enumerate()
        .filter(|(i, (bytes, _))| !wire[..*i].iter().any(|(b, _)| b == bytes))
        .map(|(_, w)| w.clone())
        .collect();
    assert!(wire.len() > 1, "the fixture has requests");
    let mut cache = RepeatCache::new();
    let mut out = Vec::with_capacity(64 * 1024);
    let now = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    let mut round = |cache: &mut RepeatCache, secs: u64| {
        let mut found = 0;
        for (bytes, flow) in &wire {
            out.clear();
            match cache.find(bytes, context) {
                Some(f) => {
                    found += 1;
                    let repeated =
                        cache.render(f, &replayer, now + Duration::from_secs(secs), &mut out);
                    assert_eq!(repeated.flow, *flow);
                }
                None => cache.keep(bytes, true, context, *flow, RequestFacts::default()),
            }
        }
        found
    };
    // Filling: entries, request and head buffers are allocated.
    round(&mut cache, 0);
    round(&mut cache, 0);
    let before = heap::thread_allocations();
    let mut found = 0;
    for secs in 0..50 {
        found += round(&mut cache, secs / 2);
    }
    let allocations = heap::thread_allocations() - before;
    assert!(found > 0, "repeats were found");
    assert_eq!(
        allocations, 0,
        "the filled cache allocated {allocations} times"
    );
}
