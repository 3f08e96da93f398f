//! Fuzz targets: one function per target, shared by `fuzz/` (cargo-fuzz, nightly) and by
//! `tests/fuzz_corpus.rs` (stable, inside `cargo test`, over the committed corpus and generated
//! inputs). Each takes arbitrary bytes, drives one part of the sans-IO core and panics only when
//! an invariant breaks (a panic is the finding); errors on bad input are the expected outcome.
//!
//! Not part of the API: hidden from the docs, no stability promise.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use crate::config::{Order, ReplayOptions, Unmatched};
use crate::flowfile::tnetstring::{self, Tag, Value};
use crate::flowfile::{LoadEvent, LoadOptions, Recording};
use crate::http1::request::{parse_body, parse_head, BodyAt, BodyState};
use crate::http1::{header_slots, Conn, Limits, Step};
use crate::replay::{Decision, LiveRequest, Replayer, RequestFacts};
use crate::upstream::{ResponseError, ResponseRelay};

/// The names of the targets, as directories under `fuzz/corpus/` and binaries in `fuzz/`.
pub const TARGETS: [&str; 7] = [
    "tnetstring",
    "flow_reader",
    "http1_request",
    "http1_conn",
    "upstream_response",
    "http2_conn",
    "hpack",
];

/// Runs the target called `name` (one of [`TARGETS`]) on `data`.
///
/// # Panics
/// If `name` is not a target, or the target finds a broken invariant.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "tnetstring" => tnetstring(data),
        "flow_reader" => flow_reader(data),
        "http1_request" => http1_request(data),
        "http1_conn" => http1_conn(data),
        "upstream_response" => upstream_response(data),
        "http2_conn" => http2_conn(data),
        "hpack" => hpack(data),
        other => panic!("no fuzz target {other:?}"),
    }
}

/// The tnetstring reader: frames every value at the start of `data` (at a large base offset, so
/// offset arithmetic is exercised), validates it, walks and converts every nested value, and checks
/// that the serve-time framing ([`tnetstring::frame_accepted`]) agrees with the checking one.
pub fn tnetstring(data: &[u8]) {
    let base = u64::MAX / 2;
    let mut rest = data;
    let mut offset = base;
    // Every loop step consumes at least the tag byte, so this ends.
    while let Ok((value, used)) = tnetstring::parse_value(rest, offset, "file") {
        assert!(
            used > 0 && used <= rest.len(),
            "used {used} of {}",
            rest.len()
        );
        assert_eq!(value.offset, offset);
        let fast = tnetstring::frame_accepted(rest).expect("an accepted value frames again");
        assert_eq!(
            (fast.0.tag, fast.0.payload, fast.1),
            (value.tag, value.payload, used)
        );
        if tnetstring::validate(&value).is_ok() {
            walk(&value, 0);
        }
        rest = &rest[used..];
        offset += used as u64;
    }
}

/// Visits every value under a validated `value` with every accessor (bounded by the validated
/// depth, so the recursion is too).
fn walk(value: &Value<'_>, depth: usize) {
    assert!(depth <= tnetstring::MAX_DEPTH);
    let _ = (value.as_str(), value.as_bytes(), value.as_i64());
    let _ = (value.as_f64(), value.as_bool(), value.is_null());
    match value.tag {
        Tag::List => {
            for item in value.items() {
                let item = item.expect("validated list items parse");
                assert!(item.offset >= value.payload_offset);
                walk(&item, depth + 1);
            }
        }
        Tag::Dict => {
            for entry in value.entries() {
                let (key, item) = entry.expect("validated dict entries parse");
                let _ = value.get(key.as_str().unwrap_or_default());
                walk(&item, depth + 1);
            }
            let checked: Vec<_> = value.entries().map(|e| e.map(|(k, _)| k.payload)).collect();
            let unchecked: Vec<_> = value
                .entries_unchecked()
                .map(|e| e.map(|(k, _)| k.payload))
                .collect();
            assert_eq!(checked, unchecked);
        }
        _ => {}
    }
}

/// Replay options picked by one byte, so one input exercises one of several index variants.
fn replay_options(selector: u8) -> ReplayOptions {
    let mut options = ReplayOptions::default();
    match selector % 4 {
        0 => {}
        1 => {
            options.order = Order::First;
            options.refresh = false;
            options.use_headers = vec!["cookie".into(), "x-a".into()];
        }
        2 => {
            options.order = Order::Cycle;
            options.ignore_payload_params = vec!["a".into(), "b".into()];
            options.ignore_params = vec!["q".into()];
        }
        _ => {
            options.order = Order::Last;
            options.ignore_content = true;
            options.ignore_host = true;
            options.ignore_port = true;
            options.unmatched = Unmatched::Status(404);
        }
    }
    options
}

/// The flow reader: loads `data` as a recording (strict, then with bad flows skipped), checks that
/// the serve-time re-read of every flow gives the views the loader saw, builds a [`Replayer`] and
/// answers a request made from every recorded flow at several clock values.
pub fn flow_reader(data: &[u8]) {
    let selector = data.len() as u8;
    for skip_bad_flows in [false, true] {
        let mut seen = Vec::new();
        let options = replay_options(selector);
        let mut builder = Replayer::builder(&options);
        let loaded = Recording::from_bytes_observed(
            vec![(PathBuf::from("fuzz.flows"), data.to_vec())],
            LoadOptions {
                skip_bad_flows,
                ..LoadOptions::default()
            },
            &mut |event| {
                if let LoadEvent::HttpFlow { request, response } = &event {
                    seen.push(format!("{request:?} {response:?}"));
                }
                builder.observe(&event);
            },
        );
        let recording = match loaded {
            Ok(recording) => recording,
            Err(error) => {
                // Errors are one sentence naming the file.
                assert!(error.to_string().starts_with("fuzz.flows: "), "{error}");
                assert!(!skip_bad_flows || error.flow_error().is_none(), "{error}");
                continue;
            }
        };
        assert_eq!(seen.len(), recording.len());
        for (id, expected) in seen.iter().enumerate() {
            let flow = recording.flow(id);
            assert_eq!(&format!("{:?} {:?}", flow.request, flow.response), expected);
            recording.touch_flow(id);
            let _ = (recording.request(id), recording.response(id));
            if let Some(body) = flow.response.and_then(|r| r.content) {
                let span = recording
                    .span_of(body)
                    .expect("bodies lie in the recording");
                assert_eq!(recording.bytes(span), body);
            }
        }
        let recording = Arc::new(recording);
        let replayer = builder.build(Arc::clone(&recording));
        answer_every_flow(&replayer, &recording);
    }
}

/// Asks `replayer` for a request built from each recorded flow and renders every replay.
fn answer_every_flow(replayer: &Replayer, recording: &Recording) {
    let mut out = Vec::new();
    let nows = [
        UNIX_EPOCH,
        UNIX_EPOCH + Duration::from_secs(2_000_000_000),
        UNIX_EPOCH + Duration::from_secs(400_000_000_000),
    ];
    for flow in recording.flows() {
        let request = flow.request;
        let names: Vec<String> = request
            .headers
            .iter()
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
            .collect();
        let headers: Vec<httparse::Header<'_>> = names
            .iter()
            .zip(request.headers.iter())
            .map(|(name, (_, value))| httparse::Header { name, value })
            .collect();
        let live = LiveRequest {
            scheme: request.scheme,
            method: request.method,
            target: request.path,
            host: request.host,
            port: request.port,
            headers: &headers,
            body: request.content.unwrap_or_default(),
        };
        match replayer.decide(&live) {
            Decision::Replay(id) => {
                assert!(recording.response(id.0 as usize).is_some());
                for (i, now) in nows.iter().enumerate() {
                    let facts = RequestFacts {
                        is_head: i == 1,
                        wants_close: i == 2,
                        ..RequestFacts::default()
                    };
                    out.clear();
                    let reply = replayer.write_reply(id, *now, &facts, &mut out);
                    // The recorded status line is written as recorded; it ends with CRLF.
                    assert!(out.windows(2).any(|w| w == b"\r\n"), "{out:?}");
                    assert!(!facts.wants_close || reply.close);
                }
            }
            Decision::Status(code) => assert!(!Replayer::status_reply(code).is_empty()),
            Decision::Forward | Decision::Kill => {}
        }
    }
    let _ = (replayer.remaining(), replayer.keys(), replayer.heap_bytes());
}

/// Limits small enough that fuzzed inputs reach them.
const SMALL: Limits = Limits {
    max_head: 512,
    max_body: 300,
};

/// The request parser: [`parse_head`] and [`parse_body`] on `data`, with the default limits and
/// with small ones; a complete request's parts must lie inside the input.
pub fn http1_request(data: &[u8]) {
    for limits in [Limits::default(), SMALL] {
        let mut headers = header_slots();
        let head = match parse_head(data, &mut headers, &limits) {
            Ok(Some(head)) => head,
            Ok(None) | Err(_) => continue,
        };
        assert!(head.head_len <= data.len() && head.head_len <= limits.max_head);
        let mut scratch = Vec::new();
        if let Ok(Some((at, end))) = parse_body(
            data,
            &head,
            &mut BodyState::default(),
            &mut scratch,
            &limits,
        ) {
            assert!(head.head_len <= end && end <= data.len(), "end {end}");
            let body_len = match at {
                BodyAt::Input(range) => {
                    assert!(head.head_len <= range.start && range.end <= end);
                    range.len()
                }
                BodyAt::Scratch => scratch.len(),
            };
            assert!(body_len as u64 <= limits.max_body);
        }
    }
}

/// What a connection made of its input: each request (method, target, body, close) and how it
/// ended (`None`: waiting for more; `Some(status)`: rejected).
type Parsed = (Vec<(Vec<u8>, Vec<u8>, Vec<u8>, bool)>, Option<u16>);

/// Feeds `data` to a fresh [`Conn`] the way the driver does: each of `cuts` (ascending) is how
/// much of `data` has arrived at one read; requests are consumed as they complete.
fn drive_conn(data: &[u8], cuts: &[usize], limits: Limits) -> Parsed {
    let mut conn = Conn::new(limits);
    let (mut scratch, mut out) = (Vec::new(), Vec::new());
    let mut requests = Vec::new();
    let mut pos = 0;
    for &cut in cuts {
        // Each request consumes at least one byte, so this loop ends.
        loop {
            let mut headers = header_slots();
            match conn.poll_request(&data[pos..cut], &mut headers, &mut scratch, &mut out) {
                Step::Request(r) => {
                    assert!(r.len > 0 && pos + r.len <= cut);
                    let request = (r.method.to_vec(), r.target.to_vec(), r.body.to_vec());
                    requests.push((request.0, request.1, request.2, r.wants_close));
                    pos += r.len;
                }
                Step::NeedMore => break,
                // The driver writes its output here; the fuzz target only drops it.
                Step::Flush => {
                    out.clear();
                    conn.flushed();
                }
                Step::Reject(e) => return (requests, Some(e.status())),
            }
        }
    }
    (requests, None)
}

/// The connection state machine: `data` fed whole, then split in two at every point (at most the
/// first 1024), must give the same requests and the same ending. One difference is allowed: a
/// read that ends past the head limit before the byte that makes the head malformed is a 431
/// where the whole input is a 400 (both reject and close).
pub fn http1_conn(data: &[u8]) {
    for limits in [Limits::default(), SMALL] {
        let whole = drive_conn(data, &[data.len()], limits);
        for cut in 0..data.len().min(1024) {
            let mut split = drive_conn(data, &[cut, data.len()], limits);
            if split.1 == Some(431) && whole.1 == Some(400) {
                split.1 = Some(400);
            }
            assert_eq!(split, whole, "split at {cut} differs");
        }
    }
}

/// What a relay gave the client: the bytes, the outcome or error, and the bytes left over.
type Relayed = (
    Vec<u8>,
    Result<Option<crate::upstream::RelayOutcome>, ResponseError>,
    Vec<u8>,
);

/// Feeds `input` to `relay` in pieces ending at `cuts` (ascending, the last = `input.len()`), as
/// the driver does (unconsumed bytes are handed in again with the next piece), then the EOF.
fn drive_relay(mut relay: ResponseRelay, input: &[u8], cuts: &[usize]) -> Relayed {
    let mut out = Vec::new();
    let mut consumed = 0;
    for &cut in cuts {
        if relay.outcome().is_some() {
            break;
        }
        match relay.handle_bytes(&input[consumed..cut], &mut out) {
            Ok(n) => {
                assert!(n <= cut - consumed);
                consumed += n;
            }
            // What was relayed before an error depends on where the reads ended; the error does not.
            Err(e) => return (Vec::new(), Err(e), Vec::new()),
        }
    }
    let ended = match relay.outcome() {
        Some(outcome) => Ok(Some(outcome)),
        None => relay.handle_eof().map(|()| relay.outcome()),
    };
    match ended {
        Err(e) => (Vec::new(), Err(e), Vec::new()),
        ended => (out, ended, input[consumed..].to_vec()),
    }
}

/// The upstream response relay: the first byte picks the request (HEAD or not, the client's
/// HTTP/1.0 or 1.1, keep-alive), the rest is the upstream's response. Relayed whole, split at
/// every point (at most the first 512) and byte by byte, the client must get the same bytes and the
/// same outcome.
pub fn upstream_response(data: &[u8]) {
    let Some((&flags, input)) = data.split_first() else {
        return;
    };
    let relay = ResponseRelay::new(flags & 1 != 0, (flags >> 1) & 1, flags & 4 != 0);
    // A status below 100 is relayed as received, as mitmproxy's reader (which only reads it as an
    // integer) does: no check on it here.
    let whole = drive_relay(relay.clone(), input, &[input.len()]);
    for cut in 0..input.len().min(512) {
        let split = drive_relay(relay.clone(), input, &[cut, input.len()]);
        assert_eq!(split, whole, "split at {cut} differs");
    }
    let bytewise: Vec<usize> = (1..=input.len().min(4096)).chain([input.len()]).collect();
    assert_eq!(
        drive_relay(relay, input, &bytewise),
        whole,
        "byte by byte differs"
    );
}

/// The origin of a fuzz run's fake timeline (each step of the run is 1 ms after the one before):
/// an `Instant` can only be made by reading the clock once.
#[allow(clippy::disallowed_methods)]
fn timeline_origin() -> std::time::Instant {
    std::time::Instant::now()
}

/// A body large enough to need several DATA frames and window updates.
static LARGE_BODY: [u8; 40_000] = [b'x'; 40_000];

/// Checks that `out` (what a connection wrote, after its first SETTINGS) is a run of whole frames
/// whose lengths the frame header may carry.
fn assert_framed(out: &[u8]) {
    let mut at = 0;
    while at < out.len() {
        let header = out
            .get(at..at + crate::http2::frame::HEADER_LEN)
            .unwrap_or_else(|| panic!("a partial frame header at byte {at} of the output"));
        let len =
            (usize::from(header[0]) << 16) | (usize::from(header[1]) << 8) | usize::from(header[2]);
        at += crate::http2::frame::HEADER_LEN + len;
        assert!(at <= out.len(), "a frame runs past the output's end");
    }
}

/// The HTTP/2 server connection: the first byte picks the limits (default or small), how the
/// input arrives (whole or in pieces of 1 to 64 bytes), how the driver writes (all at once or a
/// few bytes at a time) and how it answers each request (a whole reply, a head and a large body
/// in parts, a kill, or nothing); the rest follows the client preface. Whatever the input, the
/// connection must never panic, consume more than it was given, queue output beyond its bound
/// by more than one reply, or write anything but whole frames.
pub fn http2_conn(data: &[u8]) {
    use crate::http2::{Conn, Event, Limits as H2Limits, PREFACE};

    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let limits = if flags & 1 == 0 {
        H2Limits::default()
    } else {
        H2Limits {
            max_concurrent_streams: 4,
            max_header_list_size: 256,
            max_header_block: 512,
            max_continuations: 2,
            max_body: 100,
            max_buffered_body: 300,
            stream_window: 65_535,
            conn_window: 65_535,
            max_resets: 3,
            max_control: 3,
            max_empty: 3,
            max_pending_output: 4096,
            ..H2Limits::default()
        }
    };
    let piece = if flags & 2 == 0 {
        usize::MAX
    } else {
        1 + usize::from(flags >> 2 & 0x3f)
    };
    let trickle_writes = flags & 0x40 != 0;
    let answer_mode = rest.first().copied().unwrap_or(0) % 4;
    let mut input = PREFACE.to_vec();
    input.extend_from_slice(rest);

    let start = timeline_origin();
    let mut conn: Conn<&'static [u8]> = Conn::new(limits.clone(), start);
    let mut written = Vec::new();
    let mut kept: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut step = 0u32;
    let mut answers = 0usize;
    loop {
        step += 1;
        let now = start + std::time::Duration::from_millis(u64::from(step));
        conn.handle_timeout(now);
        if fed < input.len() {
            let end = fed.saturating_add(piece).min(input.len());
            kept.extend_from_slice(&input[fed..end]);
            fed = end;
        }
        let used = conn.recv(&kept, now);
        assert!(used <= kept.len(), "consumed {used} of {}", kept.len());
        kept.drain(..used);
        let mut failed = false;
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Request(id) => {
                    // A stream the client reset after its request, in the same input, is
                    // gone by the time the driver looks (the driver skips it too).
                    let Some(request) = conn.request(id) else {
                        continue;
                    };
                    answers += 1;
                    assert!(request.body.len() as u64 <= limits.max_body);
                    let _ = (request.headers().count(), request.trailers().count());
                    let status_headers: &[(&[u8], &[u8])] =
                        &[(b"content-type", b"text/plain"), (b"connection", b"close")];
                    let trailers: &[(&[u8], &[u8])] = &[(b"grpc-status", b"0")];
                    let _ = match answer_mode {
                        0 => conn.answer(id, 200, status_headers, Some(&b"hello"[..]), &[]),
                        1 => conn
                            .send_head(id, 200, status_headers, false)
                            .and_then(|()| conn.send_data(id, &LARGE_BODY[..20_000]))
                            .and_then(|()| conn.send_data(id, &LARGE_BODY[20_000..]))
                            .and_then(|()| conn.send_end(id, trailers)),
                        2 => conn.kill(id),
                        _ => Ok(()),
                    };
                }
                Event::Error(_) => failed = true,
                Event::Cancelled(_) | Event::StreamReset { .. } => {}
            }
        }
        // Input stops being read at the bound; what passes it is the answers given (their
        // bodies are the driver's slices, not copies) and the reply to the last frame read.
        let bound = limits.max_pending_output + 16 * 1024 + answers * (LARGE_BODY.len() + 1024);
        assert!(
            conn.pending_bytes() <= bound,
            "{} bytes queued after {answers} answers",
            conn.pending_bytes()
        );
        let pending: usize = conn.transmit().map(<[u8]>::len).sum();
        assert_eq!(pending, conn.pending_bytes());
        let n = if trickle_writes {
            pending.min(7)
        } else {
            pending
        };
        let mut left = n;
        for piece in conn.transmit() {
            if left == 0 {
                break;
            }
            let take = piece.len().min(left);
            written.extend_from_slice(&piece[..take]);
            left -= take;
        }
        conn.advance(n);
        if failed {
            // Everything after a connection error is consumed and dropped.
            assert_eq!(conn.recv(b"more", now), 4);
        }
        let idle = fed == input.len() && n == 0 && used == 0;
        if idle || conn.is_done() || step > 100_000 {
            break;
        }
    }
    assert_framed(&written);
}

/// The request-side HPACK decoder against loona-hpack alone: `data` is a run of header blocks,
/// each behind a one-byte length; [`crate::http2::hpack::Decoder`] (Huffman strings decoded by
/// [`crate::http2::huffman`] first) must give the same fields, or fail on the same block, as
/// loona-hpack decoding the original blocks itself, with the dynamic table carried from block to
/// block in both.
pub fn hpack(data: &[u8]) {
    use std::borrow::Cow;
    let mut ours = crate::http2::hpack::Decoder::default();
    let mut reference = loona_hpack::Decoder::new();
    reference.set_max_allowed_table_size(crate::http2::hpack::TABLE_SIZE);
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (block, next) = tail.split_at(len);
        rest = next;
        let mut got = Vec::new();
        let ok = ours
            .decode(block, |n, v| got.push((n.to_vec(), v.to_vec())))
            .is_ok();
        let mut want = Vec::new();
        let want_ok = reference
            .decode_with_cb(block, |n: Cow<'_, [u8]>, v: Cow<'_, [u8]>| {
                want.push((n.to_vec(), v.to_vec()))
            })
            .is_ok();
        assert_eq!(
            ok, want_ok,
            "block {block:02x?}: ours ok={ok}, loona ok={want_ok}"
        );
        if !ok {
            // Both decoders' tables are undefined after an error, as is the connection.
            return;
        }
        assert_eq!(got, want, "block {block:02x?}");
    }
}
