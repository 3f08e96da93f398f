//! A warm HTTP/2 connection takes requests and answers them without a heap allocation (frames
//! in, HPACK decode from the dynamic table, reply encode, DATA scheduling, output drained),
//! shown with the counting allocator installed for this test binary.
#![allow(clippy::disallowed_methods)] // the test reads the clock once, for `now`

use std::time::Instant;

use uringreplay::http2::frame::{flag, kind, put_header, put_settings};
use uringreplay::http2::{Conn, Event, Limits, PREFACE};
use uringreplay::server::heap;

#[global_allocator]
static ALLOCATOR: heap::CountingAllocator = heap::CountingAllocator;

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    put_header(out, payload.len(), kind, flags, stream);
    out.extend_from_slice(payload);
}

/// `count` GET requests from stream `first` on, as h2load sends them after its first one:
/// `:method GET`, `:scheme http`, `:path /` from the static table, `:authority` from the
/// dynamic table (index 62).
fn gets(first: u32, count: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..count {
        frame(
            &mut out,
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            first + 2 * i,
            &[0x82, 0x86, 0x84, 0xbe],
        );
    }
    out
}

fn serve(conn: &mut Conn<&'static [u8]>, input: &[u8], now: Instant, out: &mut usize) -> usize {
    let mut answered = 0;
    for f in input.chunks(13 * 20) {
        assert_eq!(conn.recv(f, now), f.len());
        while let Some(e) = conn.poll_event() {
            let Event::Request(id) = e else {
                panic!("unexpected {e:?}")
            };
            let r = conn.request(id).unwrap();
            assert_eq!((r.path, r.authority), (&b"/"[..], &b"example.com"[..]));
            conn.answer(
                id,
                200,
                &[(b"Content-Type", b"text/plain"), (b"Content-Length", b"5")],
                Some(b"hello"),
                &[],
            )
            .unwrap();
            answered += 1;
        }
        let n: usize = conn.transmit().map(<[u8]>::len).sum();
        *out += n;
        conn.advance(n);
    }
    answered
}

#[test]
fn a_warm_connection_answers_requests_without_allocating() {
    let now = Instant::now();
    let mut conn: Conn<&'static [u8]> = Conn::new(Limits::default(), now);
    let mut hello = PREFACE.to_vec();
    put_settings(&mut hello, &[]);
    frame(&mut hello, kind::SETTINGS, flag::ACK, 0, &[]);
    // The first request puts :authority into the dynamic table (literal with incremental
    // indexing, name index 1).
    let mut first = vec![0x82, 0x86, 0x84, 0x41, 11];
    first.extend_from_slice(b"example.com");
    frame(
        &mut hello,
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &first,
    );
    let mut written = 0;
    assert_eq!(serve(&mut conn, &hello, now, &mut written), 1);
    let warm = gets(3, 500);
    assert_eq!(serve(&mut conn, &warm, now, &mut written), 500);
    let measured = gets(1003, 2000);

    assert!(
        heap::live_bytes().is_some(),
        "the counting allocator is installed"
    );
    let before = heap::thread_allocations();
    let answered = serve(&mut conn, &measured, now, &mut written);
    let allocations = heap::thread_allocations() - before;
    assert_eq!(answered, 2000);
    assert_eq!(allocations, 0, "allocations while answering 2000 requests");
    assert!(written > 2000 * 20);
}
