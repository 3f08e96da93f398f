//! `Conn`: one client connection's HTTP/1.x state machine, sans-IO.
//!
//! The driver owns the buffers. Its contract, per turn of its loop:
//! 1. append what the socket gave to its input buffer;
//! 2. call [`Conn::poll_request`] on the unconsumed input until it returns [`Step::NeedMore`] or
//!    [`Step::Reject`], answering each [`Step::Request`] in order into one output buffer and
//!    consuming `request.len` bytes (pipelining: several answers, one write);
//! 3. on `Reject`, append [`write_error`]'s answer and close after writing;
//! 4. write the output buffer (it may hold a `100 Continue` even when no request completed).
#![forbid(unsafe_code)]

use std::io::Write;
use std::mem::MaybeUninit;

use super::request::{parse_body, parse_head, BodyAt, BodyState, Limits, Request, RequestError};

/// What the input holds next.
#[derive(Debug)]
pub enum Step<'b> {
    /// A complete request; consume `len` bytes after answering it.
    Request(Request<'b>),
    /// The next request is incomplete; read more (a `100 Continue` may have been queued).
    NeedMore,
    /// The input cannot be served: answer with [`write_error`] and close.
    Reject(RequestError),
}

/// One connection's parsing state between reads.
#[derive(Debug, Clone)]
pub struct Conn {
    limits: Limits,
    /// A `100 Continue` was sent for the request being received.
    continue_sent: bool,
    /// The progress of the body being received (a chunked body is decoded once, across reads).
    body: BodyState,
}

impl Conn {
    /// A fresh connection with these limits.
    pub fn new(limits: Limits) -> Conn {
        Conn {
            limits,
            continue_sent: false,
            body: BodyState::default(),
        }
    }

    /// Parses the next request at the start of `input`. `headers` receives the header fields;
    /// a chunked body is de-chunked into `scratch`. May append `100 Continue` to `out`.
    ///
    /// After [`Step::NeedMore`], the next call must get the same request's bytes again (more
    /// appended) and the same `scratch`: a chunked body resumes where its decoding stopped.
    pub fn poll_request<'b>(
        &mut self,
        input: &'b [u8],
        headers: &'b mut [MaybeUninit<httparse::Header<'b>>],
        scratch: &'b mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Step<'b> {
        if input.is_empty() {
            return Step::NeedMore;
        }
        let head = match parse_head(input, headers, &self.limits) {
            Ok(Some(head)) => head,
            Ok(None) => return Step::NeedMore,
            Err(e) => {
                self.body = BodyState::default();
                return Step::Reject(e);
            }
        };
        let (body_at, len) = match parse_body(input, &head, &mut self.body, scratch, &self.limits) {
            Ok(Some(found)) => found,
            Ok(None) => {
                if head.expect_continue && !self.continue_sent {
                    out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                    self.continue_sent = true;
                }
                return Step::NeedMore;
            }
            Err(e) => return Step::Reject(e),
        };
        self.continue_sent = false;
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
            is_head: head.method == b"HEAD",
            len,
        })
    }
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
                Step::Reject(e) => return (seen, Some(e), out),
            }
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
                        Step::Reject(e) => panic!("rejected a valid prefix: {e}"),
                    }
                }
            }
            proptest::prop_assert_eq!(seen, expected);
        }
    }
}
