//! `Conn`: one client connection's HTTP/1.x state machine, sans-IO (quinn-proto style).
//!
//! The driver owns the buffers and the socket; `Conn` owns the protocol state and the timers,
//! computed from a `now` the driver passes in. Its contract, per turn of the driver's loop:
//! 1. append what the socket gave to its input buffer;
//! 2. call [`Conn::poll_request`] on the unconsumed input until it returns [`Step::NeedMore`],
//!    [`Step::Flush`] or [`Step::Reject`], answering each [`Step::Request`] in order into one
//!    output buffer and consuming `request.len` bytes (pipelining: several answers, one write);
//! 3. on `Flush`, write the output, call [`Conn::flushed`] and poll again *without reading*: the
//!    output is bounded ([`MAX_QUEUED_ANSWERS`], [`MAX_QUEUED_BYTES`]), so a client pipelining
//!    thousands of requests in one write is answered in bounded writes, in order;
//! 4. on `Reject`, append [`write_error`]'s answer and close after writing;
//! 5. write the output buffer (it may hold a `100 Continue` even when no request completed);
//! 6. before waiting for input, call [`Conn::wait`] with `now` and the bytes still unconsumed,
//!    and end the wait at [`Conn::poll_timeout`]; if it passes first, [`Conn::expiry`] says what
//!    to do (close an idle connection, or answer 408 to a request that stopped arriving).
#![forbid(unsafe_code)]

use std::io::Write;
use std::mem::MaybeUninit;
use std::time::Duration;

use super::request::{
    parse_body, parse_body_at, parse_head, BodyAt, BodyState, Framing, Limits, Request,
    RequestError,
};

/// The most answers queued for one write before parsing stops to write them: with at most two
/// iovecs per answer (rendered bytes, a body referenced from the mapping) and one for the bytes
/// after it, well under the 1024 segments (`IOV_MAX`) one `writev` accepts.
pub const MAX_QUEUED_ANSWERS: usize = 256;

/// The most rendered (copied) output bytes queued before parsing stops to write them.
pub const MAX_QUEUED_BYTES: usize = 1024 * 1024;

/// What the input holds next.
#[derive(Debug)]
pub enum Step<'b, 'h> {
    /// A complete request; consume `len` bytes after answering it.
    Request(Request<'b, 'h>),
    /// The next request is incomplete; read more (a `100 Continue` may have been queued).
    NeedMore,
    /// The output holds as many answers as one write takes: write it, call [`Conn::flushed`],
    /// then poll again before reading.
    Flush,
    /// The input cannot be served: answer with [`write_error`] and close.
    Reject(RequestError),
}

/// The connection's timers (spec: `--header-timeout`, `--idle-timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// A request head must arrive whole within this, counted from its first bytes.
    pub head: Duration,
    /// Once the head is in, each wait for more body bytes may last this long (a slow upload
    /// that keeps arriving is not cut).
    pub body_progress: Duration,
    /// A connection with no request in progress is closed after this.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            head: Duration::from_secs(10),
            body_progress: Duration::from_secs(10),
            idle: Duration::from_secs(60),
        }
    }
}

/// What a passed deadline means for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No request in progress: close quietly.
    Idle,
    /// A request stopped arriving (its head past the head deadline, or its body without
    /// progress): answer `408 Request Timeout` and close.
    RequestTimeout,
}

/// Where the connection is between requests, for its timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No request bytes buffered; waiting since then.
    Idle { since: Duration },
    /// A head is arriving; its first bytes came then.
    Head { started: Duration },
    /// The head is in, the body is arriving; `seen` bytes were buffered at the last progress.
    Body { progress: Duration, seen: usize },
}

/// One connection's HTTP/1 state between reads: framing progress, 100-continue, the queue bound
/// and the timers.
#[derive(Debug, Clone)]
pub struct Conn {
    limits: Limits,
    timeouts: Timeouts,
    /// A `100 Continue` was sent for the request being received.
    continue_sent: bool,
    /// The head of the request being received is complete (its body is not): its length and
    /// its body's framing, so later reads feed the body without parsing the head again.
    head_done: Option<(usize, Framing)>,
    /// The progress of the body being received (a chunked body is decoded once, across reads).
    body: BodyState,
    /// Answers handed out since the last [`Conn::flushed`].
    queued: usize,
    /// Timer state.
    phase: Phase,
    /// Chunked body bytes handed to the decoder so far (each byte once: decoding is incremental).
    scanned: u64,
}

impl Conn {
    /// A fresh connection with these limits and the default timers, idle since time zero.
    pub fn new(limits: Limits) -> Conn {
        Conn::with_timeouts(limits, Timeouts::default(), Duration::ZERO)
    }

    /// A fresh connection with these limits and timers, accepted (idle) at `now`.
    pub fn with_timeouts(limits: Limits, timeouts: Timeouts, now: Duration) -> Conn {
        Conn {
            limits,
            timeouts,
            continue_sent: false,
            head_done: None,
            body: BodyState::default(),
            queued: 0,
            phase: Phase::Idle { since: now },
            scanned: 0,
        }
    }

    /// Parses the next request at the start of `input`. `headers` receives the header fields;
    /// a chunked body is de-chunked into `scratch`. May append `100 Continue` to `out`.
    ///
    /// After [`Step::NeedMore`], the next call must get the same request's bytes again (more
    /// appended) and the same `scratch`: a chunked body resumes where its decoding stopped.
    pub fn poll_request<'b, 'h>(
        &mut self,
        input: &'b [u8],
        headers: &'h mut [MaybeUninit<httparse::Header<'b>>],
        scratch: &'b mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Step<'b, 'h> {
        if input.is_empty() {
            return Step::NeedMore;
        }
        if self.queued >= MAX_QUEUED_ANSWERS || out.len() >= MAX_QUEUED_BYTES {
            return Step::Flush;
        }
        // A body still arriving is fed alone: its head (up to 64 KiB) is parsed again only
        // once the body is whole, not for every read of it.
        let mut found = None;
        if let Some((head_len, framing)) = self.head_done {
            self.count_scanned(input, head_len, framing);
            match parse_body_at(
                input,
                head_len,
                framing,
                &mut self.body,
                scratch,
                &self.limits,
            ) {
                Ok(None) => return Step::NeedMore,
                Ok(Some(whole)) => found = Some(whole),
                Err(e) => {
                    self.head_done = None;
                    return Step::Reject(e);
                }
            }
        }
        let head = match parse_head(input, headers, &self.limits) {
            Ok(Some(head)) => head,
            Ok(None) => return Step::NeedMore,
            Err(e) => {
                self.body = BodyState::default();
                self.head_done = None;
                return Step::Reject(e);
            }
        };
        let found = match found {
            Some(whole) => Ok(Some(whole)),
            None => {
                self.count_scanned(input, head.head_len, head.framing);
                parse_body(input, &head, &mut self.body, scratch, &self.limits)
            }
        };
        let (body_at, len) = match found {
            Ok(Some(whole)) => whole,
            Ok(None) => {
                self.head_done = Some((head.head_len, head.framing));
                if head.expect_continue && !self.continue_sent {
                    out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                    self.continue_sent = true;
                }
                return Step::NeedMore;
            }
            Err(e) => {
                self.head_done = None;
                return Step::Reject(e);
            }
        };
        self.continue_sent = false;
        self.head_done = None;
        self.queued += 1;
        // The next request's clock starts when the driver next waits with its bytes pending.
        self.phase = Phase::Idle {
            since: self.phase_time(),
        };
        let body: &'b [u8] = match body_at {
            BodyAt::Input(range) => &input[range],
            BodyAt::Scratch => scratch.as_slice(),
        };
        Step::Request(Request {
            method: head.method,
            target: head.target,
            version_minor: head.version_minor,
            headers: head.headers,
            body,
            wants_close: head.wants_close,
            http10_keep_alive: head.http10_keep_alive,
            is_head: head.method == b"HEAD",
            len,
        })
    }

    /// Counts the chunked body bytes of `input` the decoder is about to see for the first time.
    fn count_scanned(&mut self, input: &[u8], head_len: usize, framing: Framing) {
        if framing == Framing::Chunked {
            let from = head_len.saturating_add(self.body.decoded());
            self.scanned += input.len().saturating_sub(from) as u64;
        }
    }

    /// Takes a whole request the driver answers without parsing it (its bytes start the input
    /// and are those of a request answered before: [`crate::exchange::repeat`]), as
    /// [`Conn::poll_request`] takes a parsed one; `out_len` is the output's length. `false`
    /// when the output is full: poll, which says [`Step::Flush`].
    pub fn take_repeat(&mut self, out_len: usize) -> bool {
        if self.queued >= MAX_QUEUED_ANSWERS || out_len >= MAX_QUEUED_BYTES {
            return false;
        }
        self.continue_sent = false;
        self.head_done = None;
        self.body = BodyState::default();
        self.queued += 1;
        self.phase = Phase::Idle {
            since: self.phase_time(),
        };
        true
    }

    /// Chunked body bytes handed to the decoder over the connection's life: with incremental
    /// decoding, about the bodies' size however they were split across reads.
    pub fn scanned(&self) -> u64 {
        self.scanned
    }

    /// The output was written: parsing ahead may go on.
    pub fn flushed(&mut self) {
        self.queued = 0;
    }

    /// The driver is about to wait for input at `now`, with `pending` bytes of an unfinished
    /// request buffered (0: none). Starts or moves the timer that applies.
    pub fn wait(&mut self, now: Duration, pending: usize) {
        self.phase = match (pending, self.head_done.is_some(), self.phase) {
            (0, _, _) => Phase::Idle { since: now },
            (_, false, Phase::Head { started }) => Phase::Head { started },
            (_, false, _) => Phase::Head { started: now },
            (_, true, Phase::Body { progress, seen }) if seen == pending => {
                Phase::Body { progress, seen }
            }
            (_, true, _) => Phase::Body {
                progress: now,
                seen: pending,
            },
        };
    }

    /// When the current wait ends: the head deadline while a head arrives (the head only), the
    /// body-progress deadline while a body arrives, else the idle deadline.
    pub fn poll_timeout(&self) -> Duration {
        match self.phase {
            Phase::Idle { since } => since.saturating_add(self.timeouts.idle),
            Phase::Head { started } => started.saturating_add(self.timeouts.head),
            Phase::Body { progress, .. } => progress.saturating_add(self.timeouts.body_progress),
        }
    }

    /// What the deadline from [`Conn::poll_timeout`] means once it has passed.
    pub fn expiry(&self) -> Expiry {
        match self.phase {
            Phase::Idle { .. } => Expiry::Idle,
            Phase::Head { .. } | Phase::Body { .. } => Expiry::RequestTimeout,
        }
    }

    fn phase_time(&self) -> Duration {
        match self.phase {
            Phase::Idle { since } => since,
            Phase::Head { started } => started,
            Phase::Body { progress, .. } => progress,
        }
    }
}

/// Appends `408 Request Timeout` (closing) for a request that stopped arriving.
pub fn write_timeout(out: &mut Vec<u8>) {
    write_plain(408, "Request Timeout", "request timed out", true, out);
}

/// Appends the answer to a rejected request: status, a one-line plain-text reason, and
/// `Connection: close` (the driver closes after writing it).
pub fn write_error(error: RequestError, out: &mut Vec<u8>) {
    let (status, reason) = match error {
        RequestError::BadRequest(_) => (400, "Bad Request"),
        RequestError::HeadTooLarge => (431, "Request Header Fields Too Large"),
        RequestError::BodyTooLarge => (413, "Content Too Large"),
        RequestError::NotImplemented(_) => (501, "Not Implemented"),
    };
    write_plain(status, reason, &error.to_string(), true, out);
}

/// Appends a complete plain-text response `status reason` whose body is `text` and a newline.
pub fn write_plain(status: u16, reason: &str, text: &str, close: bool, out: &mut Vec<u8>) {
    let connection = if close { "connection: close\r\n" } else { "" };
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n{connection}\
         content-length: {}\r\n\r\n{text}\n",
        text.len() + 1
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::header_slots;

    /// Runs `input` through a Conn; returns (method, target, body, wants_close) per request,
    /// the error if any, and what the Conn queued in `out`.
    /// (method, target, body, wants_close) of one parsed request.
    type Seen = (String, String, Vec<u8>, bool);

    fn drive(input: &[u8]) -> (Vec<Seen>, Option<RequestError>, Vec<u8>) {
        let mut conn = Conn::new(Limits::default());
        let mut scratch = Vec::new();
        let mut out = Vec::new();
        let mut seen = Vec::new();
        let mut pos = 0;
        loop {
            let mut headers = header_slots();
            match conn.poll_request(&input[pos..], &mut headers, &mut scratch, &mut out) {
                Step::Request(r) => {
                    seen.push((
                        String::from_utf8_lossy(r.method).into_owned(),
                        String::from_utf8_lossy(r.target).into_owned(),
                        r.body.to_vec(),
                        r.wants_close,
                    ));
                    pos += r.len;
                }
                Step::NeedMore => return (seen, None, out),
                Step::Flush => conn.flushed(),
                Step::Reject(e) => return (seen, Some(e), out),
            }
        }
    }

    /// Polls `input` once; the target of a whole request, `Ok(None)` for more, `Err` rejected.
    fn poll_target(
        conn: &mut Conn,
        input: &[u8],
        scratch: &mut Vec<u8>,
    ) -> Result<Option<Vec<u8>>, RequestError> {
        let mut headers = header_slots();
        match conn.poll_request(input, &mut headers, scratch, &mut Vec::new()) {
            Step::Request(r) => Ok(Some(r.target.to_vec())),
            Step::NeedMore => Ok(None),
            Step::Flush => panic!("nothing queued"),
            Step::Reject(e) => Err(e),
        }
    }

    #[test]
    fn a_body_that_is_still_arriving_is_fed_without_parsing_its_head_again() {
        for (head, body, last) in [
            (
                &b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\n"[..],
                &b"abcdef"[..],
                2,
            ),
            (
                b"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n",
                5,
            ),
        ] {
            let mut conn = Conn::new(Limits::default());
            let mut scratch = Vec::new();
            let mut input = head.to_vec();
            input.extend_from_slice(&body[..2]);
            assert_eq!(poll_target(&mut conn, &input, &mut scratch), Ok(None));
            // Spoil the head: the reads of the body that follow do not look at it ...
            input[0] = b' ';
            let cut = body.len() - last;
            input.extend_from_slice(&body[2..cut]);
            assert_eq!(poll_target(&mut conn, &input, &mut scratch), Ok(None));
            // ... the whole request is read once more, for its fields (here: a bad head).
            input.extend_from_slice(&body[cut..]);
            assert!(poll_target(&mut conn, &input, &mut scratch).is_err());
            // Unspoilt, the same bytes give the request.
            let mut conn = Conn::new(Limits::default());
            let mut scratch = Vec::new();
            input[0] = b'P';
            let mut whole = None;
            for end in head.len()..=input.len() {
                whole = poll_target(&mut conn, &input[..end], &mut scratch).unwrap();
                if whole.is_some() {
                    assert_eq!(end, input.len());
                }
            }
            assert_eq!(whole.as_deref(), Some(&b"/p"[..]));
            assert_eq!(scratch.is_empty(), head.ends_with(b"6\r\n\r\n"));
        }
    }

    #[test]
    fn pipelined_requests_come_out_in_order() {
        let (seen, err, _) = drive(
            b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhiGET /c HTTP/1.0\r\n\r\nGET /d",
        );
        assert_eq!(err, None);
        let paths: Vec<_> = seen.iter().map(|s| s.1.as_str()).collect();
        assert_eq!(paths, ["/a", "/b", "/c"]);
        assert_eq!(seen[1].2, b"hi");
        assert!(seen[2].3, "HTTP/1.0 without keep-alive closes");
    }

    #[test]
    fn expect_continue_is_answered_once_before_the_body() {
        let head =
            b"POST /u HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
        let mut conn = Conn::new(Limits::default());
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        let mut headers = header_slots();
        assert!(matches!(
            conn.poll_request(head, &mut headers, &mut scratch, &mut out),
            Step::NeedMore
        ));
        assert_eq!(out, b"HTTP/1.1 100 Continue\r\n\r\n");
        let mut headers = header_slots();
        conn.poll_request(head, &mut headers, &mut scratch, &mut out);
        assert_eq!(out.len(), 25, "sent once");
        let mut full = head.to_vec();
        full.extend_from_slice(b"abc");
        let mut headers = header_slots();
        match conn.poll_request(&full, &mut headers, &mut scratch, &mut out) {
            Step::Request(r) => {
                assert_eq!(r.body, b"abc");
                assert!(r.headers.iter().all(|h| h.name != "Expect"));
            }
            other => panic!("expected a request, got {other:?}"),
        }
    }

    #[test]
    fn errors_answer_with_their_status_and_close() {
        let (_, err, _) =
            drive(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
        let mut out = Vec::new();
        write_error(err.expect("rejected"), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(text.contains("connection: close\r\n"));
        assert!(text.ends_with("repeated Content-Length\n"));
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.ends_with(&format!("content-length: {}", body.len())),
            "{text}"
        );
    }

    #[test]
    fn unknown_transfer_codings_answer_501() {
        let (seen, err, _) =
            drive(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: br, chunked\r\n\r\n0\r\n\r\n");
        assert!(seen.is_empty());
        let mut out = Vec::new();
        write_error(err.expect("rejected"), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 501 Not Implemented\r\n"),
            "{text}"
        );
        assert!(text.contains("connection: close\r\n"), "{text}");
    }

    #[test]
    fn smuggled_requests_are_rejected_not_served() {
        // Each hides `GET /hidden` behind framing a lenient parser reads differently.
        for input in [
            // An empty chunk-size line read as the last chunk.
            &b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\r\n\r\nGET /hidden HTTP/1.1\r\nHost: h\r\n\r\n"[..],
            // A bare LF ending a chunk extension: a front end sees one chunk line, we must not.
            b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;x\nabc\r\nhello\r\n0\r\n\r\nGET /hidden HTTP/1.1\r\nHost: h\r\n\r\n",
            // Transfer-Encoding on HTTP/1.0 keep-alive.
            b"POST /a HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /hidden HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            let (seen, err, _) = drive(input);
            assert!(seen.is_empty(), "{:?} served {seen:?}", String::from_utf8_lossy(input));
            assert_eq!(err.map(|e| e.status()), Some(400));
        }
    }

    #[test]
    fn a_chunked_body_trickled_byte_by_byte_comes_out_whole() {
        // The decoder keeps its place between calls: every prefix needs more, the whole is one
        // request whose body is exactly the chunks' data.
        let body = "1\r\nx\r\n".repeat(2000);
        let whole = format!(
            "POST /t HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{body}0\r\n\r\n"
        );
        let whole = whole.as_bytes();
        let mut conn = Conn::new(Limits::default());
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        for cut in 1..whole.len() {
            let mut headers = header_slots();
            let step = conn.poll_request(&whole[..cut], &mut headers, &mut scratch, &mut out);
            assert!(matches!(step, Step::NeedMore), "cut {cut}: {step:?}");
        }
        let mut headers = header_slots();
        match conn.poll_request(whole, &mut headers, &mut scratch, &mut out) {
            Step::Request(r) => {
                assert_eq!(r.body, "x".repeat(2000).as_bytes());
                assert_eq!(r.len, whole.len());
            }
            other => panic!("expected the request, got {other:?}"),
        }
    }

    /// A fake clock: seconds since the connection was accepted.
    fn at(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn timed() -> Conn {
        let timeouts = Timeouts {
            head: at(10),
            body_progress: at(5),
            idle: at(60),
        };
        Conn::with_timeouts(Limits::default(), timeouts, at(0))
    }

    /// Polls `input` once, as the driver does after a read; true when a request completed.
    fn poll(conn: &mut Conn, input: &[u8]) -> bool {
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        let mut headers = header_slots();
        match conn.poll_request(input, &mut headers, &mut scratch, &mut out) {
            Step::Request(_) => true,
            Step::NeedMore => false,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_16_mib_chunked_body_in_pieces_of_1_byte_to_4_kib_is_scanned_once() {
        let size = 16 * 1024 * 1024;
        let mut whole =
            b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let head_len = whole.len();
        let mut seed = 7u32;
        let mut next = |most: usize| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (seed >> 8) as usize % most + 1
        };
        let mut left = size;
        while left > 0 {
            let n = next(4096).min(left);
            whole.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            whole.resize(whole.len() + n, b'z');
            whole.extend_from_slice(b"\r\n");
            left -= n;
        }
        whole.extend_from_slice(b"0\r\n\r\n");
        let limits = Limits {
            max_body: size as u64,
            ..Limits::default()
        };
        let mut conn = Conn::new(limits);
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        // The driver's view: the input grows by one read of 1 B to 4 KiB at a time and is polled
        // after each.
        let mut have = 0;
        let mut reads = 0;
        let body_len = loop {
            have = (have + next(4096)).min(whole.len());
            reads += 1;
            let mut headers = header_slots();
            match conn.poll_request(&whole[..have], &mut headers, &mut scratch, &mut out) {
                Step::Request(r) => break r.body.len(),
                Step::NeedMore => assert!(have < whole.len(), "complete input not served"),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(body_len, size);
        assert!(reads > 8000, "{reads} reads");
        // Linear: every byte after the head handed to the decoder about once (a decoder that
        // restarted at the body's start on each read would scan ~reads/2 times the body).
        let body_bytes = (whole.len() - head_len) as u64;
        assert!(
            conn.scanned() <= body_bytes + 8 * reads,
            "scanned {} for {body_bytes} bytes in {reads} reads",
            conn.scanned()
        );
    }

    #[test]
    fn a_head_trickled_past_the_head_deadline_times_out_at_that_deadline() {
        let head = b"GET /slow HTTP/1.1\r\nHost: h\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        let mut conn = timed();
        // First bytes at t=3, then one more byte every second: the deadline does not move.
        for (i, t) in (3..=12).enumerate() {
            let input = &head[..=i];
            assert!(!poll(&mut conn, input));
            conn.wait(at(t), input.len());
            assert_eq!(conn.poll_timeout(), at(13), "at t={t}");
        }
        assert_eq!(conn.expiry(), Expiry::RequestTimeout);
        let mut out = Vec::new();
        write_timeout(&mut out);
        assert!(out.starts_with(b"HTTP/1.1 408 Request Timeout\r\n"));
        assert!(out.windows(17).any(|w| w == b"connection: close"));
    }

    #[test]
    fn a_body_that_keeps_arriving_completes_after_the_head_deadline() {
        // A 40-byte body at 2 bytes a second: 20 s, twice the head timeout, each gap within the
        // 5 s body-progress timeout.
        let mut whole = b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 40\r\n\r\n".to_vec();
        let head_len = whole.len();
        whole.extend_from_slice(&[b'x'; 40]);
        let mut conn = timed();
        assert!(!poll(&mut conn, &whole[..head_len]));
        conn.wait(at(1), head_len);
        assert_eq!(
            conn.poll_timeout(),
            at(6),
            "body progress, not the head deadline"
        );
        let mut t = 1;
        let mut have = head_len;
        while have < whole.len() {
            t += 1;
            have += 2;
            assert!(t < conn.poll_timeout().as_secs(), "expired at t={t}");
            if poll(&mut conn, &whole[..have]) {
                break;
            }
            conn.wait(at(t), have);
            assert_eq!(conn.poll_timeout(), at(t + 5));
        }
        assert_eq!(have, whole.len());
        assert!(
            t > 11,
            "completed at t={t}, after the head deadline of t=11"
        );
        // A body that stalls gets the timeout 5 s after its last progress.
        let mut conn = timed();
        assert!(!poll(&mut conn, &whole[..head_len + 3]));
        conn.wait(at(2), head_len + 3);
        conn.wait(at(4), head_len + 3);
        assert_eq!(conn.poll_timeout(), at(7));
        assert_eq!(conn.expiry(), Expiry::RequestTimeout);
    }

    #[test]
    fn an_idle_keep_alive_connection_expires_after_the_idle_timeout() {
        let mut conn = timed();
        conn.wait(at(0), 0);
        assert_eq!(conn.poll_timeout(), at(60));
        assert_eq!(conn.expiry(), Expiry::Idle);
        assert!(poll(&mut conn, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
        // Answered at t=30: idle from then on.
        conn.wait(at(30), 0);
        assert_eq!(conn.poll_timeout(), at(90));
        assert_eq!(conn.expiry(), Expiry::Idle);
        // The next request's first bytes start its head clock.
        conn.wait(at(40), 5);
        assert_eq!(conn.poll_timeout(), at(50));
        assert_eq!(conn.expiry(), Expiry::RequestTimeout);
    }

    #[test]
    fn the_body_progress_clock_starts_with_100_continue() {
        let head =
            b"POST /u HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
        let mut conn = timed();
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        let mut headers = header_slots();
        assert!(matches!(
            conn.poll_request(head, &mut headers, &mut scratch, &mut out),
            Step::NeedMore
        ));
        assert_eq!(out, b"HTTP/1.1 100 Continue\r\n\r\n");
        conn.wait(at(9), head.len());
        assert_eq!(
            conn.poll_timeout(),
            at(14),
            "the client has 5 s to start the body"
        );
    }

    #[test]
    fn pipelined_answers_are_bounded_per_write_and_in_order() {
        let one = b"GET /p HTTP/1.1\r\nHost: h\r\n\r\n";
        let n = MAX_QUEUED_ANSWERS * 3 + 7;
        let input: Vec<u8> = (0..n)
            .flat_map(|i| format!("GET /{i} HTTP/1.1\r\nHost: h\r\n\r\n").into_bytes())
            .collect();
        assert!(input.len() > one.len() * n);
        let mut conn = timed();
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        let (mut pos, mut writes, mut in_write) = (0, Vec::new(), 0);
        let mut next = 0;
        loop {
            let mut headers = header_slots();
            match conn.poll_request(&input[pos..], &mut headers, &mut scratch, &mut out) {
                Step::Request(r) => {
                    assert_eq!(r.target, format!("/{next}").as_bytes(), "in order");
                    next += 1;
                    in_write += 1;
                    pos += r.len;
                }
                Step::Flush => {
                    writes.push(in_write);
                    in_write = 0;
                    conn.flushed();
                }
                Step::NeedMore => break,
                Step::Reject(e) => panic!("{e}"),
            }
        }
        writes.push(in_write);
        assert_eq!(next, n);
        assert_eq!(
            writes,
            [
                MAX_QUEUED_ANSWERS,
                MAX_QUEUED_ANSWERS,
                MAX_QUEUED_ANSWERS,
                7
            ]
        );
        // Rendered bytes bound the queue too.
        let mut conn = timed();
        let mut big = vec![0u8; MAX_QUEUED_BYTES];
        let mut headers = header_slots();
        assert!(matches!(
            conn.poll_request(one, &mut headers, &mut scratch, &mut big),
            Step::Flush
        ));
    }

    proptest::proptest! {
        /// Any bytes give requests, a need for more, or a rejection; never a panic.
        #[test]
        fn arbitrary_input_never_panics(input in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = drive(&input);
        }

        /// Feeding pipelined requests in arbitrary pieces yields the same requests in order.
        #[test]
        fn split_points_do_not_change_what_is_parsed(cuts in proptest::collection::vec(0usize..300, 0..8)) {
            let whole: &[u8] = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\nPOST /d HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\nPOST /c HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nok";
            let expected = drive(whole).0;
            let mut conn = Conn::new(Limits::default());
            let (mut scratch, mut out) = (Vec::new(), Vec::new());
            let mut seen = Vec::new();
            let mut cuts = cuts.clone();
            cuts.push(whole.len());
            cuts.sort_unstable();
            let mut pos = 0;
            for cut in cuts.into_iter().map(|c| c.min(whole.len())) {
                loop {
                    let mut headers = header_slots();
                    match conn.poll_request(&whole[pos..cut.max(pos)], &mut headers, &mut scratch, &mut out) {
                        Step::Request(r) => {
                            seen.push((
                                String::from_utf8_lossy(r.method).into_owned(),
                                String::from_utf8_lossy(r.target).into_owned(),
                                r.body.to_vec(),
                                r.wants_close,
                            ));
                            pos += r.len;
                        }
                        Step::NeedMore => break,
                        Step::Flush => conn.flushed(),
                        Step::Reject(e) => panic!("rejected a valid prefix: {e}"),
                    }
                }
            }
            proptest::prop_assert_eq!(seen, expected);
        }
    }
}
