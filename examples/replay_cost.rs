//! Instructions per replayed request: `decide` + `write_reply` (refresh on) for requests spread
//! over a recording, in a loop that `valgrind --tool=callgrind` counts alone.
//!
//! ```sh
//! cargo build --release --example replay_cost
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*replay_loop*' \
//!     target/release/examples/replay_cost --flows 10000 --requests 100000
//! # instructions per request = the `Collected` figure / --requests
//! ```
//! `--flows N` generates N flows in memory shaped as `gen_flows` writes them (`GET /item/N`,
//! Server, Date and Content-Length, 100-byte body); `--file F` loads a recording written by
//! `gen_flows` instead (the 1 M-flow case). Requests cycle over up to 4096 flows spread evenly over
//! the recording. `--norefresh` turns date refresh off. `--log-json FILE` also writes each
//! request's `--log-json` line as a worker does (sampled with `--log-sample N`): the line is
//! formatted into the core's batch inside the loop, the writer thread writes it outside.
//! `--repeat` answers each request's bytes (`GET <target> HTTP/1.1`, its Host) through the
//! worker's repeat cache first, as a worker does with `--reuse`: with `--flows 1` every request
//! after the first is a repeat (toggle `*repeat_loop*` instead of `*replay_loop*`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use uringreplay::config::{Order, ReplayOptions};
use uringreplay::exchange::repeat::{Context, RepeatCache};
use uringreplay::exchange::Url;
use uringreplay::flowfile::writer::{write_flow, FlowSpec};
use uringreplay::flowfile::{LoadOptions, Recording};
use uringreplay::replay::{key, Decision, LiveRequest, Replayer, RequestFacts};
use uringreplay::server::reqlog::{self, Answered, CoreLog};
use uringreplay::stats::{Counters, Outcome};
use uringreplay::upstream::Destination;

/// A recorded request, owned, to replay.
struct Request {
    method: Vec<u8>,
    target: Vec<u8>,
    host: Vec<u8>,
    port: u16,
    headers: Vec<(String, Vec<u8>)>,
}

fn generated(flows: usize) -> Recording {
    let mut bytes = Vec::new();
    for n in 0..flows {
        let mut spec = FlowSpec::get(&format!("/item/{n}"), 200, &[b'x'; 100]);
        spec.host = "127.0.0.1".to_string();
        spec.port = 29411;
        spec.headers = vec![(b"Host".to_vec(), b"127.0.0.1:29411".to_vec())];
        spec.timestamp_start += n as f64 * 0.001;
        let response = spec
            .response
            .as_mut()
            .expect("FlowSpec::get has a response");
        response.timestamp_start = spec.timestamp_start + 0.0005;
        let date = httpdate::fmt_http_date(
            UNIX_EPOCH + Duration::from_secs(response.timestamp_start as u64),
        );
        response
            .headers
            .insert(0, (b"Date".to_vec(), date.into_bytes()));
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
    }
}

/// The measured loop: `requests` replays cycling over `lives` (each logged into `log` when
/// given, as the worker's hook does); returns the bytes written.
#[inline(never)]
fn replay_loop(
    replayer: &Replayer,
    lives: &[LiveRequest<'_>],
    requests: usize,
    mut log: Option<&mut CoreLog>,
    counters: &Counters,
) -> usize {
    let now = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    let facts = RequestFacts::default();
    let mut out = Vec::with_capacity(4096);
    let mut total = 0;
    let peer = "127.0.0.1:50312".parse().expect("an address");
    for i in 0..requests {
        let live = std::hint::black_box(&lives[i % lives.len()]);
        let Decision::Replay(flow) = replayer.decide(live) else {
            panic!("request {i} did not match");
        };
        out.clear();
        let reply = replayer.write_reply(flow, now, &facts, &mut out);
        total += out.len() + reply.body.len();
        if let Some(log) = log.as_deref_mut() {
            if log.sampled() {
                let route = Destination {
                    scheme: live.scheme,
                    host: live.host,
                    port: live.port,
                    target: live.target,
                };
                log.answered(
                    &Answered {
                        peer,
                        method: live.method,
                        url: Some(Url {
                            route: &route,
                            connect: false,
                        }),
                        http_version: "HTTP/1.1",
                        outcome: Outcome::Replayed(200),
                        flow: Some(flow.0),
                        body_bytes: reply.body.len() as u64,
                        turn: now,
                    },
                    counters,
                );
            }
        }
    }
    total
}

/// The measured loop of `--repeat`: `requests` requests cycling over `raw`, each answered from
/// `cache` when it holds it, else decided, written and kept; returns the bytes written.
#[inline(never)]
fn repeat_loop(
    replayer: &Replayer,
    lives: &[LiveRequest<'_>],
    raw: &[Vec<u8>],
    requests: usize,
    cache: &mut RepeatCache,
) -> usize {
    let now = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    let context = Context {
        stamp: replayer.repeat_stamp().expect("first order has a stamp"),
        tls: false,
        tunnels: true,
    };
    let facts = RequestFacts::default();
    let mut out = Vec::with_capacity(4096);
    let mut total = 0;
    for i in 0..requests {
        let bytes = std::hint::black_box(&raw[i % raw.len()]);
        out.clear();
        if let Some(found) = cache.find(bytes, context) {
            cache.render(found, replayer, now, &mut out);
        } else {
            let live = &lives[i % lives.len()];
            let Decision::Replay(flow) = replayer.decide(live) else {
                panic!("request {i} did not match");
            };
            let reply = replayer.write_reply(flow, now, &facts, &mut out);
            out.extend_from_slice(reply.body);
            cache.keep(bytes, true, context, flow, facts);
        }
        total += out.len();
    }
    total
}

fn main() {
    let mut flows = 1usize;
    let mut file = None;
    let mut requests = 100_000usize;
    let mut refresh = true;
    let mut log_json = None;
    let mut log_sample = 1u64;
    let mut repeat = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().expect("flag needs a value");
        match flag.as_str() {
            "--flows" => flows = value().parse().expect("--flows N"),
            "--file" => file = Some(PathBuf::from(value())),
            "--requests" => requests = value().parse().expect("--requests N"),
            "--norefresh" => refresh = false,
            "--repeat" => repeat = true,
            "--log-json" => log_json = Some(PathBuf::from(value())),
            "--log-sample" => log_sample = value().parse().expect("--log-sample N"),
            other => panic!("unknown argument {other}"),
        }
    }
    let recording = match file {
        Some(path) => {
            Recording::open(&[path], LoadOptions::default(), &mut |_| {}).expect("recording loads")
        }
        None => generated(flows),
    };
    let len = recording.len();
    let step = (len / 4096).max(1);
    let owned: Vec<Request> = (0..len)
        .step_by(step)
        .take(4096)
        .map(|id| request_of(&recording, id))
        .collect();
    let options = ReplayOptions {
        order: Order::First,
        refresh,
        ..ReplayOptions::default()
    };
    let replayer = Replayer::new(Arc::new(recording), &options);
    let heap = replayer.heap_bytes() + replayer.recording().index_heap_bytes();
    println!(
        "heap: {heap} bytes, {:.1} bytes per flow (recording entries, index, load-time facts)",
        heap as f64 / len.max(1) as f64
    );
    let headers: Vec<Vec<httparse::Header<'_>>> = owned
        .iter()
        .map(|r| {
            r.headers
                .iter()
                .map(|(n, v)| httparse::Header { name: n, value: v })
                .collect()
        })
        .collect();
    let lives: Vec<LiveRequest<'_>> = owned
        .iter()
        .zip(&headers)
        .map(|(r, headers)| LiveRequest {
            scheme: b"http",
            method: &r.method,
            target: &r.target,
            host: &r.host,
            port: r.port,
            headers,
            body: b"",
        })
        .collect();
    if repeat {
        let raw: Vec<Vec<u8>> = owned
            .iter()
            .map(|r| {
                let mut b = Vec::new();
                b.extend_from_slice(&r.method);
                b.push(b' ');
                b.extend_from_slice(&r.target);
                b.extend_from_slice(b" HTTP/1.1\r\nHost: ");
                b.extend_from_slice(&r.host);
                b.extend_from_slice(format!(":{}\r\n\r\n", r.port).as_bytes());
                b
            })
            .collect();
        let mut cache = RepeatCache::new();
        let total = repeat_loop(&replayer, &lives, &raw, requests, &mut cache);
        println!(
            "{len} flows, {requests} requests over {} flows through the repeat cache, {total} bytes",
            lives.len()
        );
        return;
    }
    let counters = Counters::default();
    let mut log = log_json
        .as_deref()
        .map(|path| reqlog::start(path, log_sample, 1).expect("the log file opens"));
    let mut core = log.as_mut().and_then(|(_, cores)| cores.pop());
    let total = replay_loop(&replayer, &lives, requests, core.as_mut(), &counters);
    println!(
        "{len} flows, {requests} requests over {} flows, {total} bytes",
        lives.len()
    );
    if let Some((writer, _)) = log {
        if let Some(core) = core {
            core.finish(&counters);
        }
        let dropped = counters
            .log_dropped
            .load(std::sync::atomic::Ordering::Relaxed);
        println!("{}", writer.finish(dropped));
    }
}
