//! Frames in, frames out: the connection against a small test client (frame builder, HPACK via
//! our encoder, a fake clock), and against the `h2` crate's client over an in-memory duplex.

use std::time::{Duration, Instant};

use super::frame::{flag, kind, setting, ErrorCode, Header, HEADER_LEN};
use super::{hpack, preface, reply, AnswerError, Conn, Event, Limits, Preface, PREFACE};

type Body = &'static [u8];

/// The fake clock's origin; tests move `now` forward by hand.
#[allow(clippy::disallowed_methods)]
fn base() -> Instant {
    Instant::now()
}

/// One frame as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Frame {
    fn code(&self) -> u32 {
        let at = if self.kind == kind::GOAWAY { 4 } else { 0 };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    super::frame::put_header(&mut out, payload.len(), kind, flags, stream);
    out.extend_from_slice(payload);
    out
}

fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    super::frame::put_settings(&mut out, pairs);
    out
}

/// A request header block: pseudo-fields first, then `extra`.
fn head(method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    hpack::put_field(&mut b, b":method", method.as_bytes());
    hpack::put_field(&mut b, b":scheme", b"http");
    hpack::put_field(&mut b, b":authority", b"example.com");
    hpack::put_field(&mut b, b":path", path.as_bytes());
    for (n, v) in extra {
        raw_field(&mut b, n, v);
    }
    b
}

/// A literal field with the name as given (no lowercasing), for malformed-request tests.
fn raw_field(b: &mut Vec<u8>, n: &str, v: &str) {
    b.push(0);
    hpack::put_int(b, 0, 7, n.len());
    b.extend_from_slice(n.as_bytes());
    hpack::put_int(b, 0, 7, v.len());
    b.extend_from_slice(v.as_bytes());
}

struct Client {
    conn: Conn<Body>,
    now: Instant,
    decoder: hpack::Decoder,
    events: Vec<Event>,
}

impl Client {
    /// A connection after the preface and an empty client SETTINGS, output drained.
    fn new() -> Client {
        Client::with(Limits::default(), &[])
    }

    fn with(limits: Limits, peer_settings: &[(u16, u32)]) -> Client {
        let now = base();
        let mut c = Client {
            conn: Conn::new(limits, now),
            now,
            decoder: hpack::Decoder::default(),
            events: Vec::new(),
        };
        let mut hello = PREFACE.to_vec();
        hello.extend(settings(peer_settings));
        hello.extend(frame(kind::SETTINGS, flag::ACK, 0, &[]));
        c.send(&hello);
        let out = c.frames();
        assert_eq!(out[0].kind, kind::SETTINGS, "the server speaks first");
        assert!(out
            .iter()
            .any(|f| f.kind == kind::SETTINGS && f.flags & flag::ACK != 0));
        c
    }

    fn send(&mut self, bytes: &[u8]) {
        let used = self.conn.recv(bytes, self.now);
        assert_eq!(used, bytes.len(), "whole frames are consumed");
        while let Some(e) = self.conn.poll_event() {
            self.events.push(e);
        }
    }

    fn output(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..1000 {
            let before = out.len();
            for s in self.conn.transmit() {
                out.extend_from_slice(s);
            }
            let n = out.len() - before;
            if n == 0 {
                break;
            }
            self.conn.advance(n);
        }
        out
    }

    fn frames(&mut self) -> Vec<Frame> {
        let out = self.output();
        let mut frames = Vec::new();
        let mut at = 0;
        while at < out.len() {
            let h = Header::parse(&out[at..]).expect("a whole frame header");
            let end = at + HEADER_LEN + h.len as usize;
            frames.push(Frame {
                kind: h.kind,
                flags: h.flags,
                stream: h.stream,
                payload: out[at + HEADER_LEN..end].to_vec(),
            });
            at = end;
        }
        frames
    }

    fn decode(&mut self, block: &[u8]) -> Vec<(String, String)> {
        let mut got = Vec::new();
        self.decoder
            .decode(block, |n, v| {
                got.push((
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                ))
            })
            .unwrap();
        got
    }

    fn get(&mut self, stream: u32, path: &str) {
        let block = head("GET", path, &[]);
        self.send(&frame(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            stream,
            &block,
        ));
    }

    fn goaway(&mut self) -> Option<u32> {
        self.frames()
            .iter()
            .find(|f| f.kind == kind::GOAWAY)
            .map(Frame::code)
    }

    fn rst(frames: &[Frame], stream: u32) -> Option<u32> {
        frames
            .iter()
            .find(|f| f.kind == kind::RST_STREAM && f.stream == stream)
            .map(Frame::code)
    }
}

#[test]
fn the_preface_tells_h2c_from_http1() {
    assert_eq!(preface(PREFACE), Preface::Yes);
    assert_eq!(
        preface(&[PREFACE.as_slice(), b"\0\0\0\x04"].concat()),
        Preface::Yes
    );
    assert_eq!(preface(b"PRI * HT"), Preface::NeedMore);
    assert_eq!(preface(b""), Preface::NeedMore);
    assert_eq!(preface(b"GET / HTTP/1.1\r\n"), Preface::No);
    assert_eq!(preface(b"PRI * HTTP/1.1\r\n"), Preface::No);
}

#[test]
fn a_wrong_preface_or_a_first_frame_other_than_settings_is_a_protocol_error() {
    let now = base();
    let mut conn: Conn<Body> = Conn::new(Limits::default(), now);
    assert_eq!(conn.recv(b"GET / HTTP/1.1\r\n\r\n", now), 18);
    assert!(
        matches!(conn.poll_event(), Some(Event::Error(e)) if e.code == ErrorCode::ProtocolError)
    );

    let mut conn: Conn<Body> = Conn::new(Limits::default(), now);
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(kind::PING, 0, 0, &[0; 8]));
    conn.recv(&bytes, now);
    assert!(
        matches!(conn.poll_event(), Some(Event::Error(e)) if e.code == ErrorCode::ProtocolError && e.offset == 24)
    );
}

#[test]
fn the_preface_may_arrive_in_pieces() {
    let now = base();
    let mut conn: Conn<Body> = Conn::new(Limits::default(), now);
    let mut bytes = PREFACE.to_vec();
    bytes.extend(settings(&[]));
    for b in bytes.chunks(5) {
        // Whole frames only: keep what was not consumed, as a driver does.
        let _ = b;
    }
    let mut have = Vec::new();
    for b in bytes.chunks(5) {
        have.extend_from_slice(b);
        let used = conn.recv(&have, now);
        have.drain(..used);
    }
    assert!(have.is_empty());
    assert!(conn.poll_event().is_none(), "no error");
}

#[test]
fn a_get_is_answered_with_status_lowercase_fields_and_data() {
    let mut c = Client::new();
    c.get(1, "/hello?x=1");
    assert_eq!(c.events, vec![Event::Request(1)]);
    let r = c.conn.request(1).unwrap();
    assert_eq!(
        (r.method, r.scheme, r.authority, r.path, r.body),
        (
            &b"GET"[..],
            &b"http"[..],
            &b"example.com"[..],
            &b"/hello?x=1"[..],
            &b""[..]
        )
    );
    c.conn
        .answer(
            1,
            200,
            &[
                (b"Content-Type", b"text/plain"),
                (b"Connection", b"keep-alive"),
                (b"Transfer-Encoding", b"chunked"),
                (b"Content-Length", b"5"),
            ],
            Some(b"hello"),
            &[],
        )
        .unwrap();
    let out = c.frames();
    assert_eq!(out.len(), 2);
    assert_eq!(
        (out[0].kind, out[0].flags),
        (kind::HEADERS, flag::END_HEADERS)
    );
    assert_eq!(
        c.decode(&out[0].payload),
        vec![
            (":status".into(), "200".into()),
            ("content-type".into(), "text/plain".into()),
            ("content-length".into(), "5".into()),
        ]
    );
    assert_eq!((out[1].kind, out[1].flags), (kind::DATA, flag::END_STREAM));
    assert_eq!(out[1].payload, b"hello");
    assert_eq!(c.conn.open_streams(), 0, "both halves closed");
    assert_eq!(
        c.conn.answer(1, 200, &[], None, &[]),
        Err(AnswerError::NoStream(1))
    );
}

#[test]
fn an_answer_with_a_head_block_sends_the_same_frames_as_with_its_fields() {
    let fields: [(&[u8], &[u8]); 2] = [(b"Content-Type", b"text/plain"), (b"Connection", b"close")];
    let mut frames = Vec::new();
    for with_block in [false, true] {
        let mut c = Client::new();
        c.get(1, "/");
        if with_block {
            let mut block = Vec::new();
            reply::encode_head(&mut block, 200, &fields);
            c.conn
                .answer_block(1, &block, Some(b"hello"), &[(b"grpc-status", b"0")])
                .unwrap();
        } else {
            c.conn
                .answer(1, 200, &fields, Some(b"hello"), &[(b"grpc-status", b"0")])
                .unwrap();
        }
        frames.push(c.frames());
    }
    assert_eq!(frames[0], frames[1]);
    assert_eq!(frames[0].len(), 3, "HEADERS, DATA, trailing HEADERS");
}

#[test]
fn an_empty_body_ends_the_stream_on_headers() {
    let mut c = Client::new();
    c.get(1, "/");
    c.conn.answer(1, 204, &[], None, &[]).unwrap();
    let out = c.frames();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].flags, flag::END_HEADERS | flag::END_STREAM);
    assert_eq!(out[0].payload, [0x89], "204 is static index 9");
}

#[test]
fn trailers_follow_the_body_as_a_trailing_headers_frame() {
    let mut c = Client::new();
    c.get(1, "/grpc");
    c.conn
        .answer(
            1,
            200,
            &[(b"content-type", b"application/grpc")],
            Some(b"\0\0\0\0\0"),
            &[(b"Grpc-Status", b"0"), (b"grpc-message", b"ok")],
        )
        .unwrap();
    let out = c.frames();
    let kinds: Vec<_> = out.iter().map(|f| (f.kind, f.flags)).collect();
    assert_eq!(
        kinds,
        vec![
            (kind::HEADERS, flag::END_HEADERS),
            (kind::DATA, 0),
            (kind::HEADERS, flag::END_HEADERS | flag::END_STREAM)
        ]
    );
    c.decode(&out[0].payload);
    assert_eq!(
        c.decode(&out[2].payload),
        vec![
            ("grpc-status".into(), "0".into()),
            ("grpc-message".into(), "ok".into())
        ]
    );
}

#[test]
fn a_body_larger_than_the_peer_window_waits_for_window_update() {
    let mut c = Client::with(Limits::default(), &[(setting::INITIAL_WINDOW_SIZE, 10)]);
    c.get(1, "/big");
    c.conn
        .answer(1, 200, &[], Some(b"0123456789abcdefghijKLMNO"), &[])
        .unwrap();
    let out = c.frames();
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].payload, b"0123456789");
    assert_eq!(out[1].flags, 0);
    assert!(c.frames().is_empty(), "nothing more without window");
    c.send(&frame(kind::WINDOW_UPDATE, 0, 1, &7u32.to_be_bytes()));
    let out = c.frames();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].payload, b"abcdefg");
    c.send(&frame(kind::WINDOW_UPDATE, 0, 1, &100u32.to_be_bytes()));
    let out = c.frames();
    assert_eq!(out[0].payload, b"hijKLMNO");
    assert_eq!(out[0].flags, flag::END_STREAM);
    assert_eq!(c.conn.open_streams(), 0);
}

#[test]
fn the_connection_window_and_max_frame_size_bound_data_frames() {
    static BIG: [u8; 70_000] = [b'x'; 70_000];
    let mut c = Client::new();
    c.get(1, "/big");
    c.conn.answer(1, 200, &[], Some(&BIG[..]), &[]).unwrap();
    let out = c.frames();
    let data: Vec<_> = out.iter().filter(|f| f.kind == kind::DATA).collect();
    assert!(data.iter().all(|f| f.payload.len() <= 16_384));
    let sent: usize = data.iter().map(|f| f.payload.len()).sum();
    assert_eq!(
        sent, 65_535,
        "the connection window, not the stream's 65,535 plus"
    );
    c.send(&frame(kind::WINDOW_UPDATE, 0, 0, &10_000u32.to_be_bytes()));
    let out = c.frames();
    assert!(out.is_empty(), "the stream window is spent too");
    c.send(&frame(kind::WINDOW_UPDATE, 0, 1, &10_000u32.to_be_bytes()));
    let out = c.frames();
    let sent: usize = out.iter().map(|f| f.payload.len()).sum();
    assert_eq!(sent, 70_000 - 65_535);
    assert_eq!(out.last().unwrap().flags, flag::END_STREAM);
}

#[test]
fn a_peer_initial_window_change_moves_open_stream_windows() {
    let mut c = Client::with(Limits::default(), &[(setting::INITIAL_WINDOW_SIZE, 4)]);
    c.get(1, "/");
    c.conn.answer(1, 200, &[], Some(b"abcdefgh"), &[]).unwrap();
    assert_eq!(c.frames()[1].payload, b"abcd");
    c.send(&settings(&[(setting::INITIAL_WINDOW_SIZE, 8)]));
    let out = c.frames();
    let data: Vec<_> = out.iter().filter(|f| f.kind == kind::DATA).collect();
    assert_eq!(data[0].payload, b"efgh");
}

#[test]
fn partial_writes_produce_the_same_bytes() {
    let mut whole = Client::new();
    let mut bits = Client::new();
    for c in [&mut whole, &mut bits] {
        c.get(1, "/");
        c.conn
            .answer(
                1,
                200,
                &[(b"a", b"b")],
                Some(b"some body bytes"),
                &[(b"t", b"1")],
            )
            .unwrap();
    }
    let all = whole.output();
    let mut got = Vec::new();
    for _ in 0..10_000 {
        let Some(first) = bits.conn.transmit().next() else {
            break;
        };
        let n = first.len().min(3);
        got.extend_from_slice(&first[..n]);
        bits.conn.advance(n);
    }
    assert_eq!(got, all);
    assert_eq!(bits.conn.pending_bytes(), 0);
}

#[test]
fn streaming_answers_send_head_then_chunks_then_end() {
    let mut c = Client::new();
    c.get(1, "/fwd");
    assert_eq!(c.conn.send_data(1, b"x"), Err(AnswerError::NoHead(1)));
    c.conn
        .send_head(1, 502, &[(b"via", b"upstream")], false)
        .unwrap();
    assert_eq!(
        c.conn.send_head(1, 200, &[], false),
        Err(AnswerError::HeadSent(1))
    );
    c.conn.send_data(1, b"part one,").unwrap();
    let out = c.frames();
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].payload, b"part one,");
    c.conn.send_data(1, b" part two").unwrap();
    c.conn
        .send_end(1, &[(b"x-upstream-trailer", b"1")])
        .unwrap();
    let out = c.frames();
    assert_eq!(out.len(), 2);
    assert_eq!(
        (out[0].payload.as_slice(), out[0].flags),
        (&b" part two"[..], 0)
    );
    assert_eq!(
        (out[1].kind, out[1].flags),
        (kind::HEADERS, flag::END_HEADERS | flag::END_STREAM)
    );
    let mut c = Client::new();
    c.get(1, "/fwd");
    c.conn.send_head(1, 200, &[], false).unwrap();
    c.conn.send_data(1, b"all").unwrap();
    let _ = c.frames();
    c.conn.send_end(1, &[]).unwrap();
    let out = c.frames();
    assert_eq!(
        (out[0].kind, out[0].flags, out[0].payload.len()),
        (kind::DATA, flag::END_STREAM, 0)
    );
}

#[test]
fn a_head_encoded_once_is_sent_verbatim_and_patchable_in_place() {
    // Encoded at "load time", then a date value patched at a fixed offset, as HTTP/1 heads are.
    let mut block = Vec::new();
    super::reply::encode_head(
        &mut block,
        200,
        &[
            (b"Date", b"Mon, 01 Jan 2001 00:00:00 GMT"),
            (b"Connection", b"close"),
        ],
    );
    let at = block.windows(4).position(|w| w == b"2001").unwrap();
    block[at..at + 4].copy_from_slice(b"2031");
    let mut c = Client::new();
    c.get(1, "/");
    c.conn.send_head_block(1, &block, true).unwrap();
    let out = c.frames();
    assert_eq!(out[0].payload, block);
    assert_eq!(
        c.decode(&out[0].payload),
        vec![
            (":status".into(), "200".into()),
            ("date".into(), "Mon, 01 Jan 2031 00:00:00 GMT".into())
        ]
    );
    assert_eq!(c.conn.open_streams(), 0);
}

#[test]
fn a_request_body_with_padding_and_trailers_is_delivered_whole() {
    let mut c = Client::new();
    let block = head("POST", "/up", &[("content-length", "11")]);
    c.send(&frame(kind::HEADERS, flag::END_HEADERS, 1, &block));
    let mut padded = vec![3u8];
    padded.extend_from_slice(b"hello ");
    padded.extend_from_slice(&[0, 0, 0]);
    c.send(&frame(kind::DATA, flag::PADDED, 1, &padded));
    c.send(&frame(kind::DATA, 0, 1, b"world"));
    assert!(c.events.is_empty(), "not complete yet");
    let mut t = Vec::new();
    raw_field(&mut t, "x-checksum", "abc");
    c.send(&frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &t,
    ));
    assert_eq!(c.events, vec![Event::Request(1)]);
    let r = c.conn.request(1).unwrap();
    assert_eq!(r.body, b"hello world");
    assert_eq!(
        r.headers().collect::<Vec<_>>(),
        vec![(&b"content-length"[..], &b"11"[..])]
    );
    assert_eq!(
        r.trailers().collect::<Vec<_>>(),
        vec![(&b"x-checksum"[..], &b"abc"[..])]
    );
}

#[test]
fn a_head_split_over_continuation_frames_is_one_request() {
    let mut c = Client::new();
    let block = head("GET", "/split", &[("x-a", "1"), ("x-b", "2")]);
    let (a, b) = block.split_at(7);
    let (b, d) = b.split_at(5);
    c.send(&frame(kind::HEADERS, flag::END_STREAM, 1, a));
    c.send(&frame(kind::CONTINUATION, 0, 1, b));
    assert!(c.events.is_empty());
    c.send(&frame(kind::CONTINUATION, flag::END_HEADERS, 1, d));
    assert_eq!(c.events, vec![Event::Request(1)]);
    assert_eq!(c.conn.request(1).unwrap().headers().count(), 2);
}

#[test]
fn a_header_block_interrupted_by_another_frame_is_a_protocol_error() {
    let mut c = Client::new();
    let block = head("GET", "/", &[]);
    c.send(&frame(kind::HEADERS, flag::END_STREAM, 1, &block[..4]));
    c.send(&frame(kind::PING, 0, 0, &[0; 8]));
    assert_eq!(c.goaway(), Some(ErrorCode::ProtocolError as u32));
    assert!(c.conn.is_done());
}

#[test]
fn ping_is_acknowledged_with_its_payload_and_acks_are_ignored() {
    let mut c = Client::new();
    c.send(&frame(kind::PING, 0, 0, b"12345678"));
    c.send(&frame(kind::PING, flag::ACK, 0, b"87654321"));
    let out = c.frames();
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].flags, out[0].payload.as_slice()),
        (flag::ACK, &b"12345678"[..])
    );
    c.send(&frame(kind::PING, 0, 0, b"1234567"));
    assert_eq!(c.goaway(), Some(ErrorCode::FrameSizeError as u32));
}

#[test]
fn settings_must_be_acknowledged_in_time() {
    let now = base();
    let mut conn: Conn<Body> = Conn::new(Limits::default(), now);
    let mut hello = PREFACE.to_vec();
    hello.extend(settings(&[]));
    conn.recv(&hello, now);
    let deadline = conn.poll_timeout().unwrap();
    assert_eq!(deadline, now + Duration::from_secs(10));
    conn.handle_timeout(now + Duration::from_secs(9));
    assert!(conn.poll_event().is_none());
    conn.handle_timeout(deadline);
    assert!(
        matches!(conn.poll_event(), Some(Event::Error(e)) if e.code == ErrorCode::SettingsTimeout)
    );
    // Acknowledged: no timer.
    let c = Client::new();
    assert_eq!(c.conn.poll_timeout(), None);
}

#[test]
fn bad_settings_are_connection_errors() {
    for (payload, code) in [
        (
            settings(&[(setting::ENABLE_PUSH, 2)]),
            ErrorCode::ProtocolError,
        ),
        (
            settings(&[(setting::INITIAL_WINDOW_SIZE, 1 << 31)]),
            ErrorCode::FlowControlError,
        ),
        (
            settings(&[(setting::MAX_FRAME_SIZE, 100)]),
            ErrorCode::ProtocolError,
        ),
        (
            frame(kind::SETTINGS, 0, 0, &[0; 5]),
            ErrorCode::FrameSizeError,
        ),
        (
            frame(kind::SETTINGS, flag::ACK, 0, &[0; 6]),
            ErrorCode::FrameSizeError,
        ),
        (frame(kind::SETTINGS, 0, 1, &[]), ErrorCode::ProtocolError),
    ] {
        let mut c = Client::new();
        c.send(&payload);
        assert_eq!(c.goaway(), Some(code as u32), "{payload:?}");
    }
}

#[test]
fn client_reset_cancels_the_stream_and_kill_resets_with_internal_error() {
    let mut c = Client::new();
    c.get(1, "/");
    c.send(&frame(
        kind::RST_STREAM,
        0,
        1,
        &(ErrorCode::Cancel as u32).to_be_bytes(),
    ));
    assert_eq!(c.events, vec![Event::Request(1), Event::Cancelled(1)]);
    assert_eq!(
        c.conn.answer(1, 200, &[], None, &[]),
        Err(AnswerError::NoStream(1))
    );
    assert!(c.frames().is_empty());
    // The client reset it: its own DATA on it afterwards is a stream error (RFC 9113 §5.1).
    c.send(&frame(kind::DATA, 0, 1, b"x"));
    assert_eq!(
        Client::rst(&c.frames(), 1),
        Some(ErrorCode::StreamClosed as u32)
    );

    c.get(3, "/killed");
    c.conn.kill(3).unwrap();
    let out = c.frames();
    assert_eq!(Client::rst(&out, 3), Some(ErrorCode::InternalError as u32));
    // Late frames on a stream we reset are ignored.
    c.send(&frame(kind::WINDOW_UPDATE, 0, 3, &1u32.to_be_bytes()));
    assert!(c.frames().is_empty());
}

#[test]
fn graceful_goaway_finishes_open_streams_and_ignores_new_ones() {
    let mut c = Client::new();
    c.get(1, "/slow");
    c.conn.go_away();
    let out = c.frames();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].kind, kind::GOAWAY);
    assert_eq!(
        u32::from_be_bytes(out[0].payload[..4].try_into().unwrap()),
        1
    );
    assert_eq!(out[0].code(), ErrorCode::NoError as u32);
    c.send(&frame(
        kind::HEADERS,
        flag::END_HEADERS,
        3,
        &head("POST", "/new", &[]),
    ));
    c.send(&frame(kind::DATA, flag::END_STREAM, 3, b"late"));
    c.send(&frame(kind::WINDOW_UPDATE, 0, 3, &1u32.to_be_bytes()));
    assert_eq!(c.events, vec![Event::Request(1)], "stream 3 is ignored");
    assert!(c.frames().is_empty(), "without an error");
    assert!(!c.conn.is_done());
    c.conn.answer(1, 200, &[], Some(b"done"), &[]).unwrap();
    assert!(!c.conn.is_done(), "not before the output is written");
    let out = c.frames();
    assert_eq!(out.last().unwrap().flags, flag::END_STREAM);
    assert!(c.conn.is_done());
}

#[test]
fn priority_and_unknown_frames_are_ignored_but_self_dependency_is_refused() {
    let mut c = Client::new();
    c.send(&frame(kind::PRIORITY, 0, 1, &[0, 0, 0, 3, 16]));
    c.send(&frame(0xfa, 0x7, 0, b"whatever"));
    assert!(c.frames().is_empty());
    c.get(1, "/after");
    assert_eq!(c.events, vec![Event::Request(1)]);
    c.send(&frame(kind::PRIORITY, 0, 5, &[0, 0, 0, 5, 16]));
    assert_eq!(
        Client::rst(&c.frames(), 5),
        Some(ErrorCode::ProtocolError as u32)
    );
    let mut block = vec![0, 0, 0, 7, 16];
    block.extend(head("GET", "/", &[]));
    c.send(&frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM | flag::PRIORITY,
        7,
        &block,
    ));
    assert_eq!(
        Client::rst(&c.frames(), 7),
        Some(ErrorCode::ProtocolError as u32)
    );
    assert_eq!(c.events, vec![Event::Request(1), reset(5), reset(7)]);

    fn reset(stream: u32) -> Event {
        Event::StreamReset {
            stream,
            code: ErrorCode::ProtocolError,
            what: "a stream depends on itself",
        }
    }
}

#[test]
fn malformed_requests_are_reset_with_protocol_error() {
    let cases: Vec<Vec<u8>> = vec![
        {
            let mut b = Vec::new();
            hpack::put_field(&mut b, b":method", b"GET");
            hpack::put_field(&mut b, b":scheme", b"http");
            b // no :path
        },
        head("GET", "/", &[("X-Upper", "1")]),
        head("GET", "/", &[("connection", "keep-alive")]),
        head("GET", "/", &[("transfer-encoding", "chunked")]),
        head("GET", "/", &[("te", "gzip")]),
        head("GET", "/", &[("x", "a\r\nb")]),
        head("GET", "/", &[("x", " padded")]),
        head("GET", "/", &[("x-a", "1"), (":method", "GET")]),
        head("GET", "/", &[(":status", "200")]),
        head("GET", "/", &[(":path", "/again")]),
        head("GET", "/", &[("content-length", "5")]), // END_STREAM with no data
        head("GET", "/", &[("content-length", "x")]),
        head("GET", "/", &[("host", "example.com.different")]),
    ];
    for (i, block) in cases.iter().enumerate() {
        let mut c = Client::new();
        c.send(&frame(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            1,
            block,
        ));
        let out = c.frames();
        assert_eq!(
            Client::rst(&out, 1),
            Some(ErrorCode::ProtocolError as u32),
            "case {i}"
        );
        assert!(!c.events.contains(&Event::Request(1)), "case {i}");
        // The connection goes on.
        c.get(3, "/");
        assert!(c.events.contains(&Event::Request(3)), "case {i}");
    }
    // te: trailers is allowed.
    let mut c = Client::new();
    let block = head("GET", "/", &[("te", "trailers")]);
    c.send(&frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &block,
    ));
    assert_eq!(c.events, vec![Event::Request(1)]);
    // A Host that names the same authority (any case) is fine.
    let mut c = Client::new();
    let block = head("GET", "/", &[("host", "Example.com")]);
    c.send(&frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &block,
    ));
    assert_eq!(c.events, vec![Event::Request(1)]);
}

#[test]
fn a_client_goaway_ends_nothing_by_itself() {
    let mut c = Client::new();
    let mut goaway = 0u32.to_be_bytes().to_vec();
    goaway.extend_from_slice(&0xffu32.to_be_bytes()); // an unknown code
    c.send(&frame(kind::GOAWAY, 0, 0, &goaway));
    assert!(!c.conn.is_done(), "still open after the client's GOAWAY");
    c.send(&frame(kind::PING, 0, 0, b"12345678"));
    let out = c.frames();
    assert!(out
        .iter()
        .any(|f| f.kind == kind::PING && f.flags == flag::ACK));
    assert!(!c.conn.is_done());
}

#[test]
fn stream_id_rules_are_enforced() {
    let mut c = Client::new();
    c.get(2, "/");
    assert_eq!(c.goaway(), Some(ErrorCode::ProtocolError as u32), "even id");

    let mut c = Client::new();
    c.get(5, "/");
    c.get(3, "/");
    assert_eq!(
        c.goaway(),
        Some(ErrorCode::ProtocolError as u32),
        "decreasing id"
    );

    let mut c = Client::new();
    c.send(&frame(kind::DATA, 0, 1, b"x"));
    assert_eq!(
        c.goaway(),
        Some(ErrorCode::ProtocolError as u32),
        "DATA on an idle stream"
    );

    let mut c = Client::new();
    c.get(1, "/");
    c.send(&frame(kind::DATA, flag::END_STREAM, 1, b"x"));
    assert_eq!(
        Client::rst(&c.frames(), 1),
        Some(ErrorCode::StreamClosed as u32),
        "half-closed"
    );

    let mut c = Client::new();
    c.get(1, "/");
    c.conn.answer(1, 200, &[], None, &[]).unwrap();
    let _ = c.frames();
    c.send(&frame(kind::DATA, 0, 1, b"x"));
    assert_eq!(
        Client::rst(&c.frames(), 1),
        Some(ErrorCode::StreamClosed as u32),
        "closed"
    );
    c.get(1, "/");
    assert_eq!(
        c.goaway(),
        Some(ErrorCode::StreamClosed as u32),
        "HEADERS on a closed stream"
    );

    let mut c = Client::new();
    c.send(&frame(
        kind::PUSH_PROMISE,
        flag::END_HEADERS,
        1,
        &[0, 0, 0, 2],
    ));
    assert_eq!(
        c.goaway(),
        Some(ErrorCode::ProtocolError as u32),
        "PUSH_PROMISE"
    );
}

#[test]
fn window_overflow_and_zero_increments_are_errors() {
    let mut c = Client::new();
    c.send(&frame(
        kind::WINDOW_UPDATE,
        0,
        0,
        &0x7fff_ffffu32.to_be_bytes(),
    ));
    assert_eq!(c.goaway(), Some(ErrorCode::FlowControlError as u32));

    let mut c = Client::new();
    c.get(1, "/");
    c.send(&frame(
        kind::WINDOW_UPDATE,
        0,
        1,
        &0x7fff_ffffu32.to_be_bytes(),
    ));
    assert_eq!(
        Client::rst(&c.frames(), 1),
        Some(ErrorCode::FlowControlError as u32)
    );

    let mut c = Client::new();
    c.get(1, "/");
    c.send(&frame(kind::WINDOW_UPDATE, 0, 1, &0u32.to_be_bytes()));
    assert_eq!(
        Client::rst(&c.frames(), 1),
        Some(ErrorCode::ProtocolError as u32)
    );
    c.send(&frame(kind::WINDOW_UPDATE, 0, 0, &0u32.to_be_bytes()));
    assert_eq!(c.goaway(), Some(ErrorCode::ProtocolError as u32));

    let mut c = Client::new();
    c.send(&frame(kind::WINDOW_UPDATE, 0, 0, &[0; 3]));
    assert_eq!(c.goaway(), Some(ErrorCode::FrameSizeError as u32));
}

#[test]
fn data_beyond_our_windows_is_a_flow_control_error() {
    let limits = Limits {
        stream_window: 65_535,
        conn_window: 65_535,
        ..Limits::default()
    };
    let chunk = vec![b'x'; 16_384];
    // The stream window: 65,535 bytes, then one more.
    let mut c = Client::with(limits.clone(), &[]);
    c.send(&frame(
        kind::HEADERS,
        flag::END_HEADERS,
        1,
        &head("POST", "/", &[]),
    ));
    for _ in 0..3 {
        c.send(&frame(kind::DATA, 0, 1, &chunk));
    }
    // 49,152 sent; the server replenished both windows at half (32,768).
    let out = c.frames();
    assert!(out
        .iter()
        .any(|f| f.kind == kind::WINDOW_UPDATE && f.stream == 1));
    assert!(out
        .iter()
        .any(|f| f.kind == kind::WINDOW_UPDATE && f.stream == 0));
    // We grant a stream no more window than max_body (+1): past that, a client that sends
    // anyway breaks flow control and its stream is reset.
    let limits = Limits {
        max_body: 100_000,
        ..limits
    };
    let mut c = Client::with(limits, &[]);
    c.send(&frame(
        kind::HEADERS,
        flag::END_HEADERS,
        1,
        &head("POST", "/", &[]),
    ));
    let over = vec![b'x'; 16_000];
    for _ in 0..6 {
        c.send(&frame(kind::DATA, 0, 1, &over));
    }
    assert_eq!(
        Client::rst(&c.frames(), 1),
        None,
        "96,000 bytes are within the grants"
    );
    c.send(&frame(kind::DATA, 0, 1, &over));
    assert_eq!(
        Client::rst(&c.frames(), 1),
        Some(ErrorCode::FlowControlError as u32)
    );
}

#[test]
fn too_many_concurrent_streams_are_refused() {
    let limits = Limits {
        max_concurrent_streams: 2,
        ..Limits::default()
    };
    let mut c = Client::with(limits, &[]);
    c.get(1, "/");
    c.get(3, "/");
    c.get(5, "/");
    assert_eq!(
        Client::rst(&c.frames(), 5),
        Some(ErrorCode::RefusedStream as u32)
    );
    assert_eq!(c.conn.open_streams(), 2);
    c.conn.answer(1, 200, &[], None, &[]).unwrap();
    c.get(7, "/");
    assert!(c.events.contains(&Event::Request(7)));
}

#[test]
fn a_header_list_above_the_limit_gets_431() {
    let limits = Limits {
        max_header_list_size: 200,
        ..Limits::default()
    };
    let mut c = Client::with(limits, &[]);
    let big = "v".repeat(300);
    let block = head("GET", "/", &[("x-big", &big)]);
    c.send(&frame(
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &block,
    ));
    assert!(c.events.is_empty(), "not delivered");
    let out = c.frames();
    assert_eq!(
        c.decode(&out[0].payload)[0],
        (":status".into(), "431".into())
    );
    assert_eq!(
        out.last().unwrap().flags & flag::END_STREAM,
        flag::END_STREAM
    );
    // The HPACK context survived: the next request decodes.
    c.get(3, "/");
    assert_eq!(c.events, vec![Event::Request(3)]);
}

#[test]
fn a_body_above_max_body_gets_413_and_the_upload_is_stopped() {
    let limits = Limits {
        max_body: 10,
        ..Limits::default()
    };
    let mut c = Client::with(limits, &[]);
    c.send(&frame(
        kind::HEADERS,
        flag::END_HEADERS,
        1,
        &head("POST", "/", &[]),
    ));
    c.send(&frame(kind::DATA, 0, 1, b"0123456789AB"));
    let out = c.frames();
    assert_eq!(
        c.decode(&out[0].payload)[0],
        (":status".into(), "413".into())
    );
    assert_eq!(Client::rst(&out, 1), Some(ErrorCode::NoError as u32));
    c.send(&frame(kind::DATA, flag::END_STREAM, 1, b"more"));
    assert!(c.events.is_empty());
    assert!(
        c.frames().is_empty(),
        "late DATA after our reset is ignored"
    );
}

#[test]
fn continuation_floods_are_enhance_your_calm() {
    // Many tiny CONTINUATION frames.
    let mut c = Client::new();
    c.send(&frame(kind::HEADERS, 0, 1, &head("GET", "/", &[])));
    for _ in 0..40 {
        c.send(&frame(kind::CONTINUATION, 0, 1, &[0x84]));
    }
    assert_eq!(c.goaway(), Some(ErrorCode::EnhanceYourCalm as u32));
    // A block larger than max_header_block.
    let limits = Limits {
        max_header_block: 1000,
        ..Limits::default()
    };
    let mut c = Client::with(limits, &[]);
    c.send(&frame(kind::HEADERS, 0, 1, &head("GET", "/", &[])));
    c.send(&frame(kind::CONTINUATION, 0, 1, &[0x84; 999]));
    assert_eq!(c.goaway(), Some(ErrorCode::EnhanceYourCalm as u32));
}

#[test]
fn rapid_reset_is_enhance_your_calm() {
    // The client's own RST_STREAM, and a frame that makes us reset the stream (WINDOW_UPDATE
    // of 0: "MadeYouReset", CVE-2025-8671) count alike.
    let cancel = |id| frame(kind::RST_STREAM, 0, id, &8u32.to_be_bytes());
    let provoke = |id| frame(kind::WINDOW_UPDATE, 0, id, &0u32.to_be_bytes());
    for reset in [&cancel as &dyn Fn(u32) -> Vec<u8>, &provoke] {
        let limits = Limits {
            max_resets: 10,
            ..Limits::default()
        };
        let mut c = Client::with(limits, &[]);
        let mut id = 1;
        for _ in 0..10 {
            c.get(id, "/");
            c.send(&reset(id));
            id += 2;
        }
        assert_eq!(c.goaway(), None, "ten resets in a second are fine");
        c.get(id, "/");
        c.send(&reset(id));
        assert_eq!(c.goaway(), Some(ErrorCode::EnhanceYourCalm as u32));
    }
    // In a new window the count starts again.
    let limits = Limits {
        max_resets: 10,
        ..Limits::default()
    };
    let mut c = Client::with(limits, &[]);
    let mut id = 1;
    for round in 0..3 {
        for _ in 0..10 {
            c.get(id, "/");
            c.send(&frame(kind::RST_STREAM, 0, id, &8u32.to_be_bytes()));
            id += 2;
        }
        c.now += Duration::from_secs(1);
        assert_eq!(c.goaway(), None, "round {round}");
    }
}

#[test]
fn ping_settings_and_empty_data_floods_are_enhance_your_calm() {
    let limits = Limits {
        max_control: 20,
        max_empty: 20,
        ..Limits::default()
    };
    let mut c = Client::with(limits.clone(), &[]);
    for _ in 0..21 {
        c.send(&frame(kind::PING, 0, 0, &[1; 8]));
    }
    assert_eq!(c.goaway(), Some(ErrorCode::EnhanceYourCalm as u32));

    let mut c = Client::with(limits.clone(), &[]);
    for _ in 0..21 {
        c.send(&settings(&[]));
    }
    assert_eq!(c.goaway(), Some(ErrorCode::EnhanceYourCalm as u32));

    let mut c = Client::with(limits, &[]);
    c.send(&frame(
        kind::HEADERS,
        flag::END_HEADERS,
        1,
        &head("POST", "/", &[]),
    ));
    for _ in 0..21 {
        c.send(&frame(kind::DATA, 0, 1, &[]));
    }
    assert_eq!(c.goaway(), Some(ErrorCode::EnhanceYourCalm as u32));
}

#[test]
fn a_client_that_does_not_read_cannot_make_us_queue_without_bound() {
    let limits = Limits {
        max_control: u32::MAX,
        max_pending_output: 10_000,
        ..Limits::default()
    };
    let mut c = Client::with(limits, &[]);
    let pings: Vec<u8> = (0..2000)
        .flat_map(|_| frame(kind::PING, 0, 0, &[7; 8]))
        .collect();
    // The client never reads our output: we stop taking its frames.
    let used = c.conn.recv(&pings, c.now);
    assert!(used < pings.len());
    assert!(!c.conn.wants_read());
    assert!(
        c.conn.pending_bytes() < 10_000 + 17,
        "{}",
        c.conn.pending_bytes()
    );
    assert_eq!(c.conn.recv(&pings[used..], c.now), 0, "still backed up");
    // Once it reads, the rest is taken, and every PING is answered.
    let mut rest = &pings[used..];
    let mut acks = c.frames().len();
    for _ in 0..100 {
        let n = c.conn.recv(rest, c.now);
        rest = &rest[n..];
        acks += c.frames().len();
        if rest.is_empty() {
            break;
        }
    }
    assert!(rest.is_empty());
    assert_eq!(acks, 2000);
    assert!(c.conn.poll_event().is_none(), "no error");
}

#[test]
fn output_that_never_fully_drains_does_not_grow_the_frame_buffer() {
    let mut c = Client::new();
    let mut id = 1;
    let mut peak = 0;
    for _ in 0..20_000 {
        c.get(id, "/");
        c.conn
            .answer(id, 204, &[(b"x-n", b"12345678")], None, &[])
            .unwrap();
        // Write all but the last byte: the queue is never empty.
        let total = c.conn.pending_bytes();
        c.conn.advance(total - 1);
        peak = peak.max(c.conn.frame_buffer_len());
        assert!(c.conn.pending_bytes() < 64);
        id += 2;
    }
    assert!(peak < 200 * 1024, "{peak}");
    assert!(c.conn.wants_read());
}

#[test]
fn oversized_frames_are_frame_size_errors() {
    let mut c = Client::new();
    let mut f = Vec::new();
    super::frame::put_header(&mut f, 16_385, kind::DATA, 0, 1);
    c.conn.recv(&f, c.now);
    assert_eq!(c.goaway(), Some(ErrorCode::FrameSizeError as u32));
}

#[test]
fn a_large_head_is_split_into_continuation_frames() {
    let mut c = Client::new();
    c.get(1, "/");
    let big = vec![b'v'; 40_000];
    c.conn
        .answer(1, 200, &[(b"x-big", &big)], None, &[])
        .unwrap();
    let out = c.frames();
    let kinds: Vec<_> = out.iter().map(|f| (f.kind, f.flags)).collect();
    assert_eq!(
        kinds,
        vec![
            (kind::HEADERS, flag::END_STREAM),
            (kind::CONTINUATION, 0),
            (kind::CONTINUATION, flag::END_HEADERS)
        ]
    );
    let block: Vec<u8> = out.iter().flat_map(|f| f.payload.clone()).collect();
    assert_eq!(c.decode(&block)[1].1.len(), 40_000);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// Frame-shaped input: mostly valid headers with random kinds, flags, ids and payloads.
    fn frames() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            (
                0u8..12,
                any::<u8>(),
                0u32..12,
                proptest::collection::vec(any::<u8>(), 0..64),
            ),
            0..40,
        )
        .prop_map(|fs| {
            fs.into_iter()
                .flat_map(|(k, fl, id, p)| frame(k, fl, id, &p))
                .collect()
        })
    }

    fn run(input: &[u8], chunk: usize) {
        let now = base();
        let mut conn: Conn<Body> = Conn::new(Limits::default(), now);
        let mut bytes = PREFACE.to_vec();
        bytes.extend(settings(&[]));
        bytes.extend_from_slice(input);
        let mut have = Vec::new();
        for piece in bytes.chunks(chunk.max(1)) {
            have.extend_from_slice(piece);
            let used = conn.recv(&have, now);
            have.drain(..used);
            assert!(have.len() < super::super::MIN_READ_BUFFER + chunk);
            while let Some(e) = conn.poll_event() {
                if let Event::Request(id) = e {
                    let _ = conn.answer(id, 200, &[(b"a", b"b")], Some(b"body"), &[(b"t", b"1")]);
                }
            }
            assert!(conn.open_streams() <= 128);
            assert!(conn.pending_bytes() < 2 * 1024 * 1024);
            let n: usize = conn.transmit().map(<[u8]>::len).sum();
            conn.advance(n);
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..2048), chunk in 1usize..300) {
            run(&input, chunk);
        }

        #[test]
        fn arbitrary_frames_never_panic(input in frames(), chunk in 1usize..300) {
            run(&input, chunk);
        }

        #[test]
        fn arbitrary_header_blocks_never_panic(block in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut f = frame(kind::HEADERS, flag::END_HEADERS | flag::END_STREAM, 1, &block);
            f.extend(frame(kind::HEADERS, flag::END_HEADERS | flag::END_STREAM, 3, &block));
            run(&f, 4096);
        }
    }
}

mod interop {
    //! The `h2` crate's client against our state machine, over an in-memory duplex.
    use super::*;
    use bytes::Bytes;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// A reply body: a refcounted slice, as the mapping will be.
    #[derive(Clone)]
    struct Shared(Bytes);

    impl AsRef<[u8]> for Shared {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }

    const BIG: usize = 300_000;

    async fn serve(mut io: DuplexStream) {
        let mut conn: Conn<Shared> = Conn::new(Limits::default(), base());
        let big = Bytes::from((0..BIG).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        let mut buf = vec![0u8; 64 * 1024];
        let mut have = 0;
        loop {
            let out: Vec<u8> = conn.transmit().flatten().copied().collect();
            if !out.is_empty() {
                if io.write_all(&out).await.is_err() {
                    return;
                }
                conn.advance(out.len());
                continue;
            }
            if conn.is_done() {
                return;
            }
            let n = match io.read(&mut buf[have..]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            have += n;
            let used = conn.recv(&buf[..have], base());
            buf.copy_within(used..have, 0);
            have -= used;
            while let Some(e) = conn.poll_event() {
                let Event::Request(id) = e else { continue };
                let r = conn.request(id).unwrap();
                let path = String::from_utf8_lossy(r.path).into_owned();
                let body_len = r.body.len().to_string();
                match path.as_str() {
                    "/big" => conn
                        .answer(
                            id,
                            200,
                            &[(b"Content-Type", b"application/octet-stream")],
                            Some(Shared(big.clone())),
                            &[],
                        )
                        .unwrap(),
                    "/kill" => conn.kill(id).unwrap(),
                    "/stop" => {
                        // Graceful shutdown with this stream in flight: GOAWAY first, then
                        // the answer, then the connection ends.
                        conn.go_away();
                        conn.answer(id, 200, &[], Some(Shared(Bytes::from_static(b"bye"))), &[])
                            .unwrap();
                    }
                    "/grpc" => conn
                        .answer(
                            id,
                            200,
                            &[
                                (b"content-type", b"application/grpc"),
                                (b"Connection", b"close"),
                            ],
                            Some(Shared(Bytes::from_static(b"\0\0\0\0\0"))),
                            &[(b"grpc-status", b"0")],
                        )
                        .unwrap(),
                    _ => conn
                        .answer(
                            id,
                            200,
                            &[
                                (b"X-Path", path.as_bytes()),
                                (b"x-got", body_len.as_bytes()),
                            ],
                            Some(Shared(Bytes::copy_from_slice(path.as_bytes()))),
                            &[],
                        )
                        .unwrap(),
                }
            }
        }
    }

    #[test]
    fn the_h2_client_gets_concurrent_answers_big_bodies_and_trailers() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let (client_io, server_io) = tokio::io::duplex(16 * 1024);
            let server = tokio::spawn(serve(server_io));
            let (h2, connection) = h2::client::Builder::new()
                .initial_window_size(20_000) // smaller than the big body: it must wait for updates
                .handshake::<_, Bytes>(client_io)
                .await
                .unwrap();
            let connection = tokio::spawn(connection);
            let mut h2 = h2.ready().await.unwrap();

            // Concurrent streams on one connection.
            let mut pending = Vec::new();
            for i in 0..20 {
                let req = http::Request::builder()
                    .method("POST")
                    .uri(format!("http://example.com/item/{i}"))
                    .body(())
                    .unwrap();
                let (resp, mut send) = h2.send_request(req, false).unwrap();
                send.send_data(Bytes::from(vec![b'u'; i * 100]), true)
                    .unwrap();
                pending.push((i, resp));
                h2 = h2.ready().await.unwrap();
            }
            for (i, resp) in pending {
                let resp = resp.await.unwrap();
                assert_eq!(resp.status(), 200);
                assert_eq!(resp.headers()["x-path"], format!("/item/{i}"));
                assert_eq!(resp.headers()["x-got"], (i * 100).to_string());
                let mut body = resp.into_body();
                let mut got = Vec::new();
                while let Some(chunk) = body.data().await {
                    let chunk = chunk.unwrap();
                    body.flow_control().release_capacity(chunk.len()).unwrap();
                    got.extend_from_slice(&chunk);
                }
                assert_eq!(got, format!("/item/{i}").as_bytes());
            }

            // A body far larger than the client's window.
            let req = http::Request::get("http://example.com/big")
                .body(())
                .unwrap();
            let (resp, _) = h2.send_request(req, true).unwrap();
            let resp = resp.await.unwrap();
            assert_eq!(resp.headers()["content-type"], "application/octet-stream");
            let mut body = resp.into_body();
            let mut got = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.unwrap();
                body.flow_control().release_capacity(chunk.len()).unwrap();
                got.extend_from_slice(&chunk);
            }
            assert_eq!(got.len(), BIG);
            assert!(got.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));

            // Trailers, and connection-specific fields dropped (h2 would reject them).
            let mut h2 = h2.ready().await.unwrap();
            let req = http::Request::get("http://example.com/grpc")
                .body(())
                .unwrap();
            let (resp, _) = h2.send_request(req, true).unwrap();
            let resp = resp.await.unwrap();
            assert!(resp.headers().get("connection").is_none());
            let mut body = resp.into_body();
            while let Some(chunk) = body.data().await {
                chunk.unwrap();
            }
            let trailers = body.trailers().await.unwrap().unwrap();
            assert_eq!(trailers["grpc-status"], "0");

            // Kill: mitmproxy's RST_STREAM INTERNAL_ERROR.
            let mut h2 = h2.ready().await.unwrap();
            let req = http::Request::get("http://example.com/kill")
                .body(())
                .unwrap();
            let (resp, _) = h2.send_request(req, true).unwrap();
            let err = resp.await.unwrap_err();
            assert_eq!(err.reason(), Some(h2::Reason::INTERNAL_ERROR));

            // GOAWAY with a stream in flight: the stream is answered, then the connection ends.
            let mut h2 = h2.ready().await.unwrap();
            let req = http::Request::get("http://example.com/stop")
                .body(())
                .unwrap();
            let (resp, _) = h2.send_request(req, true).unwrap();
            let resp = resp.await.unwrap();
            let mut body = resp.into_body();
            let mut got = Vec::new();
            while let Some(chunk) = body.data().await {
                got.extend_from_slice(&chunk.unwrap());
            }
            assert_eq!(got, b"bye");
            let ended = tokio::time::timeout(Duration::from_secs(20), server).await;
            assert!(ended.is_ok(), "the server side finished after GOAWAY");
            let closed = tokio::time::timeout(Duration::from_secs(20), connection).await;
            assert!(matches!(closed, Ok(Ok(Ok(())))), "{closed:?}");
            drop(h2);
        });
    }
}
