//! Relaying an upstream's HTTP/1.x response to the client as it arrives.
//!
//! [`ResponseRelay`] is an incremental parser: the driver hands it whatever bytes the upstream sent
//! and it appends what the client must get to the driver's buffer: the response head (re-rendered
//! as HTTP/1.1 without the upstream's connection fields), then body bytes as they come. Nothing is
//! buffered whole: apart from an incomplete head (at most [`MAX_RESPONSE_HEAD_BYTES`]), every byte
//! handed in is consumed and relayed at once, so memory stays bounded by the driver's read buffer
//! whatever the body size. Body framings: Content-Length, chunked (passed through verbatim, or
//! de-chunked for an HTTP/1.0 client; decoded strictly by [`ChunkedDecoder`]), read-until-close;
//! no body after HEAD, 1xx, 204 and 304. With both `Transfer-Encoding` and `Content-Length`,
//! Transfer-Encoding frames the body and the `Content-Length` field is not relayed (RFC 9112 §6.3).
#![forbid(unsafe_code)]

use super::has_token;
use crate::http1::ChunkedDecoder;

/// The largest response head accepted (status line and fields, as received); larger is an error.
/// 64 KiB: well above what servers send (nginx's default `large_client_header_buffers` is 4×8 KiB).
pub const MAX_RESPONSE_HEAD_BYTES: usize = 64 * 1024;

/// Header fields per response head; more is an error (httparse needs a fixed array).
pub const MAX_RESPONSE_FIELDS: usize = 128;

/// Why an upstream response cannot be relayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// The status line or a header field is not HTTP/1.x.
    #[error("malformed response head ({0})")]
    Malformed(&'static str),
    /// The head did not end within [`MAX_RESPONSE_HEAD_BYTES`].
    #[error("response head longer than {MAX_RESPONSE_HEAD_BYTES} bytes")]
    HeadTooLarge,
    /// A `Content-Length` that is not one non-negative number.
    #[error("invalid Content-Length")]
    BadContentLength,
    /// A chunk-size line, chunk terminator or trailer section that breaks chunked framing (see
    /// [`crate::http1::chunked`] for the rules and bounds).
    #[error("malformed chunked body")]
    BadChunk,
    /// `101 Switching Protocols`, which we never asked for.
    #[error("unexpected 101 Switching Protocols")]
    SwitchingProtocols,
    /// The connection closed before a single byte of response.
    #[error("connection closed without a response")]
    NoResponse,
    /// The connection closed inside the head or inside a framed body.
    #[error("connection closed before the response was complete")]
    Truncated,
}

/// A copy of the final response taken while it is relayed (`-w`): the head as received and the
/// body de-chunked (Content-Encoding kept), as mitmproxy stores a response. Bounded: a body over
/// the limit is dropped from the copy and the exchange marked [`over_limit`](Self::over_limit).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// The final response head, status line to the blank line, as the upstream sent it.
    pub head: Vec<u8>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    limit: usize,
    over: bool,
}

impl Captured {
    /// The body went over the capture limit: the copy is incomplete and must not be saved.
    pub fn over_limit(&self) -> bool {
        self.over
    }

    fn add(&mut self, data: &[u8]) {
        if self.over {
            return;
        }
        if data.len() > self.limit.saturating_sub(self.body.len()) {
            self.over = true;
            self.body = Vec::new();
            return;
        }
        self.body.extend_from_slice(data);
    }
}

/// How a relayed exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayOutcome {
    /// The final status code.
    pub status: u16,
    /// The client connection may carry the next request.
    pub client_keep_alive: bool,
    /// The upstream connection may be pooled (the driver must also check no bytes are left over).
    pub upstream_reusable: bool,
    /// Body bytes relayed (as sent to the client, framing included when passed through).
    pub body_bytes: u64,
}

/// How the body of the current response is delimited.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    /// This many bytes still to come.
    Length(u64),
    /// Chunked framing, decoded as it comes.
    Chunked(ChunkedDecoder),
    /// Everything until the upstream closes.
    UntilClose,
}

/// Where the relay is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reading {
    /// Waiting for a (further) response head.
    Head,
    /// Relaying the final response's body.
    Body(Body),
    /// The response is complete.
    Done,
}

/// The response side of one forwarded exchange (see the module docs).
///
/// Driver contract: call [`handle_bytes`](Self::handle_bytes) with the unconsumed bytes received so
/// far, send what it appended to `out`, keep the unconsumed rest (only ever part of a head) and
/// append the next read to it; on upstream EOF call [`handle_eof`](Self::handle_eof). Stop when
/// [`outcome`](Self::outcome) is `Some`.
#[derive(Debug, Clone)]
pub struct ResponseRelay {
    reading: Reading,
    head_request: bool,
    client_minor: u8,
    client_keep_alive: bool,
    dechunk: bool,
    received: bool,
    final_head_relayed: bool,
    status: u16,
    upstream_keep_alive: bool,
    relay_keep_alive: bool,
    body_bytes: u64,
    capture: Option<Box<Captured>>,
}

impl ResponseRelay {
    /// A relay for the response to a request; `head_request` if the method was HEAD, `client_minor`
    /// the client's HTTP/1.x minor version, `client_keep_alive` whether the client wants to keep the
    /// connection (see [`client_wants_keep_alive`](super::client_wants_keep_alive)).
    pub fn new(head_request: bool, client_minor: u8, client_keep_alive: bool) -> Self {
        ResponseRelay {
            reading: Reading::Head,
            head_request,
            client_minor,
            client_keep_alive,
            dechunk: false,
            received: false,
            final_head_relayed: false,
            status: 0,
            upstream_keep_alive: false,
            relay_keep_alive: false,
            body_bytes: 0,
            capture: None,
        }
    }

    /// Also keeps a copy of the final response (head as received, body de-chunked, at most
    /// `body_limit` bytes of it) for saving (`-w`); only forwarded exchanges that are recorded pay
    /// for it.
    pub fn capturing(mut self, body_limit: usize) -> Self {
        self.capture = Some(Box::new(Captured {
            limit: body_limit,
            ..Captured::default()
        }));
        self
    }

    /// The copy [`capturing`](Self::capturing) asked for, so far.
    pub fn captured(&self) -> Option<&Captured> {
        self.capture.as_deref()
    }

    /// Whether the final response head has gone to `out`. Before that, a failure can still be answered
    /// with a 502/504 on the same client connection; after it, the client connection must be closed.
    pub fn is_final_head_relayed(&self) -> bool {
        self.final_head_relayed
    }

    /// Whether any byte came from the upstream for this exchange (a failure before that means the
    /// upstream closed an idle connection or never answered).
    pub fn has_received(&self) -> bool {
        self.received
    }

    /// `Some` once the response is complete.
    pub fn outcome(&self) -> Option<RelayOutcome> {
        (self.reading == Reading::Done).then_some(RelayOutcome {
            status: self.status,
            client_keep_alive: self.relay_keep_alive,
            upstream_reusable: self.upstream_keep_alive,
            body_bytes: self.body_bytes,
        })
    }

    /// Feeds bytes from the upstream; appends what the client gets to `out`; returns how many bytes of
    /// `input` were consumed. Unconsumed bytes are an incomplete head (hand them in again with more
    /// appended) or, once the response is complete, bytes the upstream sent after it.
    pub fn handle_bytes(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<usize, ResponseError> {
        if !input.is_empty() {
            self.received = true;
        }
        let mut pos = 0;
        while pos < input.len() {
            match &mut self.reading {
                Reading::Done => break,
                Reading::Head => match self.handle_head(&input[pos..], out)? {
                    Some(n) => pos += n,
                    None => break,
                },
                Reading::Body(Body::UntilClose) => {
                    if let Some(c) = &mut self.capture {
                        c.add(&input[pos..]);
                    }
                    out.extend_from_slice(&input[pos..]);
                    self.body_bytes = self.body_bytes.saturating_add((input.len() - pos) as u64);
                    pos = input.len();
                }
                Reading::Body(Body::Length(remaining)) => {
                    // At most what is left of `input`, so it fits a usize and stays in bounds.
                    let take = (*remaining).min((input.len() - pos) as u64) as usize;
                    if let Some(c) = &mut self.capture {
                        c.add(&input[pos..pos + take]);
                    }
                    out.extend_from_slice(&input[pos..pos + take]);
                    self.body_bytes = self.body_bytes.saturating_add(take as u64);
                    pos += take;
                    *remaining -= take as u64;
                    if *remaining == 0 {
                        self.reading = Reading::Done;
                    }
                }
                Reading::Body(Body::Chunked(decoder)) => {
                    let rest = &input[pos..];
                    let dechunk = self.dechunk;
                    let before = out.len();
                    let mut capture = self.capture.as_deref_mut();
                    let used = decoder
                        .feed(rest, |data| {
                            if let Some(c) = capture.as_mut() {
                                c.add(data);
                            }
                            if dechunk {
                                out.extend_from_slice(data);
                            }
                        })
                        .map_err(|_| ResponseError::BadChunk)?;
                    let done = decoder.is_done();
                    if !dechunk {
                        // Passed through verbatim: the framing as received (it was just checked).
                        out.extend_from_slice(&rest[..used]);
                    }
                    self.body_bytes = self.body_bytes.saturating_add((out.len() - before) as u64);
                    pos += used;
                    if done {
                        self.reading = Reading::Done;
                    }
                }
            }
        }
        Ok(pos)
    }

    /// The upstream closed its side. Completes a read-until-close body; anything else unfinished is an
    /// error.
    pub fn handle_eof(&mut self) -> Result<(), ResponseError> {
        match &self.reading {
            Reading::Done => Ok(()),
            Reading::Body(Body::UntilClose) => {
                self.reading = Reading::Done;
                Ok(())
            }
            Reading::Head if !self.received => Err(ResponseError::NoResponse),
            Reading::Head | Reading::Body(_) => Err(ResponseError::Truncated),
        }
    }

    /// Parses one head at the start of `input`; `None` if incomplete.
    fn handle_head(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<usize>, ResponseError> {
        let mut fields = [httparse::EMPTY_HEADER; MAX_RESPONSE_FIELDS];
        let mut response = httparse::Response::new(&mut fields);
        let len = match response.parse(input) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if input.len() >= MAX_RESPONSE_HEAD_BYTES => {
                return Err(ResponseError::HeadTooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(ResponseError::Malformed("too many header fields"))
            }
            Err(e) => return Err(ResponseError::Malformed(error_name(e))),
        };
        if len > MAX_RESPONSE_HEAD_BYTES {
            return Err(ResponseError::HeadTooLarge);
        }
        let status = response
            .code
            .expect("invariant: a complete response has a code");
        let minor = response
            .version
            .expect("invariant: a complete response has a version");
        let reason = response.reason.unwrap_or("");
        let headers = response.headers;

        if status == 101 {
            return Err(ResponseError::SwitchingProtocols);
        }
        if (100..200).contains(&status) {
            // We removed Expect and the client got its 100 from us; HTTP/1.0 clients get no 1xx.
            if status != 100 && self.client_minor >= 1 {
                render_head(out, status, reason, headers, Omit::NONE, b"");
            }
            return Ok(Some(len));
        }

        let mut connection_close = false;
        let mut connection_keep_alive = false;
        let mut transfer_encoding: Option<&[u8]> = None;
        let mut te_count = 0;
        let mut content_length: Option<u64> = None;
        let mut cl_count = 0;
        for h in headers.iter() {
            if h.name.eq_ignore_ascii_case("connection") {
                connection_close |= has_token(h.value, "close");
                connection_keep_alive |= has_token(h.value, "keep-alive");
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                te_count += 1;
                transfer_encoding = Some(h.value);
            } else if h.name.eq_ignore_ascii_case("content-length") {
                cl_count += 1;
                content_length = Some(content_length_value(h.value, content_length)?);
            }
        }

        let no_body = self.head_request || status == 204 || status == 304;
        let body = if no_body {
            None
        } else if let Some(te) = transfer_encoding {
            let last = te.rsplit(|&b| b == b',').next().unwrap_or(b"").trim_ascii();
            if te_count == 1 && last.eq_ignore_ascii_case(b"chunked") {
                Some(Body::Chunked(ChunkedDecoder::new(u64::MAX)))
            } else {
                Some(Body::UntilClose)
            }
        } else if let Some(n) = content_length {
            Some(Body::Length(n))
        } else {
            Some(Body::UntilClose)
        };

        let until_close = body == Some(Body::UntilClose);
        let framing_conflict = transfer_encoding.is_some() && cl_count > 0;
        self.upstream_keep_alive = !until_close
            && !framing_conflict
            && !crate::http1::keep_alive::message_closes(
                minor >= 1,
                connection_close,
                connection_keep_alive,
            );
        self.dechunk = self.client_minor == 0 && matches!(body, Some(Body::Chunked(_)));
        // A de-chunked body has no length any more: the close delimits it for the client.
        self.relay_keep_alive = self.client_keep_alive && !until_close && !self.dechunk;
        self.status = status;

        let extra: &[u8] = if !self.relay_keep_alive {
            b"connection: close\r\n"
        } else if self.client_minor == 0 {
            b"connection: keep-alive\r\n"
        } else {
            b""
        };
        // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length, which is not relayed.
        let omit = Omit {
            transfer_encoding: self.dechunk,
            content_length: self.dechunk || transfer_encoding.is_some(),
        };
        render_head(out, status, reason, headers, omit, extra);
        if let Some(c) = &mut self.capture {
            c.head.extend_from_slice(&input[..len]);
        }
        self.final_head_relayed = true;
        self.reading = match body {
            None | Some(Body::Length(0)) => Reading::Done,
            Some(b) => Reading::Body(b),
        };
        Ok(Some(len))
    }
}

/// The length a `Content-Length` field's `value` gives, with `before` (a length an earlier such
/// field gave): one non-negative number, or a list of equal ones (`5, 5`, RFC 9110 §8.6); a
/// different number anywhere is an error.
pub fn content_length_value(value: &[u8], before: Option<u64>) -> Result<u64, ResponseError> {
    let mut length = before;
    for part in value.split(|&b| b == b',') {
        let n = parse_length(part.trim_ascii()).ok_or(ResponseError::BadContentLength)?;
        if length.is_some_and(|c| c != n) {
            return Err(ResponseError::BadContentLength);
        }
        length = Some(n);
    }
    length.ok_or(ResponseError::BadContentLength)
}

fn parse_length(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

fn error_name(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status code",
        httparse::Error::Token => "invalid token",
        httparse::Error::TooManyHeaders => "too many header fields",
        httparse::Error::Version => "invalid HTTP version",
    }
}

/// Framing fields left out of a relayed head.
#[derive(Debug, Clone, Copy)]
struct Omit {
    transfer_encoding: bool,
    content_length: bool,
}

impl Omit {
    /// Relay both.
    const NONE: Omit = Omit {
        transfer_encoding: false,
        content_length: false,
    };
}

/// Writes `HTTP/1.1 status reason`, the fields without connection-scoped ones (and without the
/// framing fields `omit` names), `extra`, CRLF.
fn render_head(
    out: &mut Vec<u8>,
    status: u16,
    reason: &str,
    headers: &[httparse::Header<'_>],
    omit: Omit,
    extra: &[u8],
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&itoa3(status));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    let named_by_connection = |name: &str| {
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
            .any(|h| has_token(h.value, name))
    };
    for h in headers {
        let n = h.name;
        let connection_scoped = n.eq_ignore_ascii_case("connection")
            || n.eq_ignore_ascii_case("keep-alive")
            || n.eq_ignore_ascii_case("proxy-connection")
            || named_by_connection(n);
        let dropped = (omit.transfer_encoding && n.eq_ignore_ascii_case("transfer-encoding"))
            || (omit.content_length && n.eq_ignore_ascii_case("content-length"));
        if connection_scoped || dropped {
            continue;
        }
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(extra);
    out.extend_from_slice(b"\r\n");
}

/// A status code as three ASCII digits (httparse guarantees 100–999).
fn itoa3(n: u16) -> [u8; 3] {
    [
        b'0' + (n / 100 % 10) as u8,
        b'0' + (n / 10 % 10) as u8,
        b'0' + (n % 10) as u8,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a relay the way the driver does: pieces of `split` bytes, unconsumed bytes kept and
    /// re-fed with the next piece. Returns what the client got, the leftover, and the relay.
    fn drive(
        mut relay: ResponseRelay,
        input: &[u8],
        split: usize,
        eof: bool,
    ) -> (Result<Vec<u8>, ResponseError>, Vec<u8>, ResponseRelay) {
        let mut out = Vec::new();
        let mut pending = Vec::new();
        for piece in input.chunks(split.max(1)) {
            if relay.outcome().is_some() {
                pending.extend_from_slice(piece);
                continue;
            }
            pending.extend_from_slice(piece);
            match relay.handle_bytes(&pending, &mut out) {
                Ok(n) => {
                    pending.drain(..n);
                }
                Err(e) => return (Err(e), pending, relay),
            }
        }
        if eof && relay.outcome().is_none() {
            if let Err(e) = relay.handle_eof() {
                return (Err(e), pending, relay);
            }
        }
        (Ok(out), pending, relay)
    }

    /// Same as [`drive`] in one piece and byte by byte; asserts both agree and returns the first.
    fn relay_all(
        relay: ResponseRelay,
        input: &[u8],
        eof: bool,
    ) -> (Result<String, ResponseError>, Vec<u8>, Option<RelayOutcome>) {
        let (whole, left_whole, r_whole) = drive(relay.clone(), input, input.len(), eof);
        for split in [1, 2, 7] {
            let (bytes, left, r) = drive(relay.clone(), input, split, eof);
            assert_eq!(bytes, whole, "split {split} differs");
            if whole.is_ok() {
                assert_eq!(left, left_whole, "split {split} leftover differs");
            }
            assert_eq!(
                r.outcome(),
                r_whole.outcome(),
                "split {split} outcome differs"
            );
        }
        (
            whole.map(|b| String::from_utf8(b).unwrap()),
            left_whole,
            r_whole.outcome(),
        )
    }

    fn get11() -> ResponseRelay {
        ResponseRelay::new(false, 1, true)
    }

    #[test]
    fn a_capturing_relay_keeps_the_final_head_as_received_and_the_body_dechunked() {
        let input: &[u8] = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
            HTTP/1.1 200 OK\r\nx-b: 1\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n\
            3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        for split in [1, 5, input.len()] {
            let (out, _, relay) = drive(get11().capturing(64), input, split, false);
            assert!(out.is_ok());
            let c = relay.captured().unwrap();
            assert_eq!(
                c.head,
                &b"HTTP/1.1 200 OK\r\nx-b: 1\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
                "split {split}"
            );
            assert_eq!(c.body, b"abcde");
            assert!(!c.over_limit());
        }
        let (_, _, relay) = drive(
            get11().capturing(64),
            b"HTTP/1.0 200 OK\r\n\r\nuntil close",
            4,
            true,
        );
        assert_eq!(relay.captured().unwrap().body, b"until close");
        assert!(get11().captured().is_none(), "no copy unless asked");
    }

    #[test]
    fn a_body_over_the_capture_limit_is_dropped_from_the_copy_not_from_the_relay() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789";
        let (out, _, relay) = drive(get11().capturing(9), input, 3, false);
        assert!(out.unwrap().ends_with(b"\r\n\r\n0123456789"));
        let c = relay.captured().unwrap();
        assert!(c.over_limit());
        assert!(c.body.is_empty());
        let (_, _, relay) = drive(get11().capturing(10), input, 3, false);
        assert!(!relay.captured().unwrap().over_limit());
        assert_eq!(relay.captured().unwrap().body, b"0123456789");
    }

    #[test]
    fn content_length_response_is_relayed_without_connection_fields() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-A: 1\r\n\r\nhelloEXTRA";
        let (out, left, outcome) = relay_all(get11(), input, false);
        assert_eq!(
            out.unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello"
        );
        assert_eq!(left, b"EXTRA");
        let outcome = outcome.unwrap();
        assert!(outcome.client_keep_alive && outcome.upstream_reusable);
        assert_eq!((outcome.status, outcome.body_bytes), (200, 5));
    }

    #[test]
    fn chunked_bodies_pass_through_verbatim_with_trailers() {
        let body = "5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n";
        let input = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
        let (out, left, outcome) = relay_all(get11(), input.as_bytes(), false);
        assert_eq!(
            out.unwrap(),
            format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{body}")
        );
        assert!(left.is_empty());
        let outcome = outcome.unwrap();
        assert!(outcome.client_keep_alive && outcome.upstream_reusable);
        assert_eq!(outcome.body_bytes, body.len() as u64);
    }

    #[test]
    fn chunked_bodies_are_dechunked_for_http10_clients() {
        let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX: y\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let (out, _, outcome) = relay_all(ResponseRelay::new(false, 0, true), input, false);
        assert_eq!(
            out.unwrap(),
            "HTTP/1.1 200 OK\r\nX: y\r\nconnection: close\r\n\r\nabcde"
        );
        let outcome = outcome.unwrap();
        assert!(!outcome.client_keep_alive && outcome.upstream_reusable);
    }

    #[test]
    fn until_close_bodies_end_at_eof_and_close_the_client() {
        let input = b"HTTP/1.0 200 OK\r\nX-A: 1\r\n\r\nuntil-eof";
        let (out, _, outcome) = relay_all(get11(), input, true);
        assert_eq!(
            out.unwrap(),
            "HTTP/1.1 200 OK\r\nX-A: 1\r\nconnection: close\r\n\r\nuntil-eof"
        );
        let outcome = outcome.unwrap();
        assert!(!outcome.client_keep_alive && !outcome.upstream_reusable);
        // Without the EOF the response is not complete.
        let (_, _, outcome) = relay_all(get11(), input, false);
        assert_eq!(outcome, None);
        // Transfer-Encoding without final chunked is read until close too.
        let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz";
        let (_, _, outcome) = relay_all(get11(), input, true);
        assert!(!outcome.unwrap().client_keep_alive);
    }

    #[test]
    fn head_204_and_304_responses_have_no_body() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        let (out, left, outcome) = relay_all(ResponseRelay::new(true, 1, true), input, false);
        assert_eq!(out.unwrap(), "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
        assert!(left.is_empty());
        assert!(outcome.unwrap().client_keep_alive);
        for status in ["204 No Content", "304 Not Modified"] {
            let input = format!("HTTP/1.1 {status}\r\n\r\n");
            let (out, _, outcome) = relay_all(get11(), input.as_bytes(), false);
            assert_eq!(out.unwrap(), format!("HTTP/1.1 {status}\r\n\r\n"));
            assert!(outcome.unwrap().upstream_reusable);
        }
    }

    #[test]
    fn informational_responses_are_relayed_except_100_and_to_http10() {
        let input = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let (out, _, outcome) = relay_all(get11(), input, false);
        assert_eq!(
            out.unwrap(),
            "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        );
        assert_eq!(outcome.unwrap().status, 200);
        let (out, _, _) = relay_all(ResponseRelay::new(false, 0, true), input, false);
        assert_eq!(
            out.unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nconnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn upstream_close_does_not_close_the_client() {
        let input = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx";
        let (out, _, outcome) = relay_all(get11(), input, false);
        assert_eq!(
            out.unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"
        );
        let outcome = outcome.unwrap();
        assert!(outcome.client_keep_alive && !outcome.upstream_reusable);
        let input = b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx";
        assert!(
            !relay_all(get11(), input, false)
                .2
                .unwrap()
                .upstream_reusable
        );
        let input = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx";
        assert!(
            relay_all(get11(), input, false)
                .2
                .unwrap()
                .upstream_reusable
        );
    }

    #[test]
    fn a_client_that_asked_for_close_gets_connection_close() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx";
        let (out, _, outcome) = relay_all(ResponseRelay::new(false, 1, false), input, false);
        assert_eq!(
            out.unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nconnection: close\r\n\r\nx"
        );
        let outcome = outcome.unwrap();
        assert!(!outcome.client_keep_alive && outcome.upstream_reusable);
    }

    #[test]
    fn broken_responses_are_errors() {
        let cases: [(&[u8], ResponseError); 7] = [
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                ResponseError::BadContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                ResponseError::BadContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                ResponseError::BadChunk,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
                ResponseError::BadChunk,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1234567890abcdef0\r\n",
                ResponseError::BadChunk,
            ),
            (
                b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
                ResponseError::SwitchingProtocols,
            ),
            (
                b"SSH-2.0-OpenSSH\r\n\r\n",
                ResponseError::Malformed("invalid HTTP version"),
            ),
        ];
        for (input, want) in cases {
            let (out, _, _) = relay_all(get11(), input, false);
            assert_eq!(
                out.unwrap_err(),
                want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn transfer_encoding_wins_over_content_length_which_is_not_relayed() {
        // RFC 9112 §6.3: the chunked framing delimits the body; Content-Length is removed.
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nLEFT";
        let (out, left, outcome) = relay_all(get11(), input, false);
        assert_eq!(
            out.unwrap(),
            "HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        assert_eq!(left, b"LEFT");
        let outcome = outcome.unwrap();
        assert!(outcome.client_keep_alive, "the client got one framing");
        assert!(
            !outcome.upstream_reusable,
            "an upstream that sends both is not trusted again"
        );
        // De-chunked for HTTP/1.0: neither field.
        let (out, _, _) = relay_all(ResponseRelay::new(false, 0, true), input, false);
        assert_eq!(
            out.unwrap(),
            "HTTP/1.1 200 OK\r\nX-A: 1\r\nconnection: close\r\n\r\nhello"
        );
        // A Transfer-Encoding read until close drops Content-Length too.
        let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\nzzzz";
        let (out, _, _) = relay_all(get11(), input, true);
        assert_eq!(
            out.unwrap(),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nconnection: close\r\n\r\nzzzz"
        );
    }

    #[test]
    fn chunked_responses_follow_the_strict_rules_and_sizes_cannot_overflow() {
        let chunked =
            |body: &str| format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
        for body in [
            "5\nhello\r\n0\r\n\r\n",
            "5;ext\nhello\r\n0\r\n\r\n",
            "\r\n",
            "5\r\nhello\n0\r\n\r\n",
            "0\r\nX: 1\n\r\n",
        ] {
            let (out, _, _) = relay_all(get11(), chunked(body).as_bytes(), false);
            assert_eq!(out.unwrap_err(), ResponseError::BadChunk, "{body:?}");
        }
        // 16 digits are accepted as a size, and the data that follows is relayed as it comes.
        let input = chunked("FFFFFFFFFFFFFFFF\r\nabc");
        let mut relay = get11();
        let mut out = Vec::new();
        assert_eq!(
            relay.handle_bytes(input.as_bytes(), &mut out),
            Ok(input.len())
        );
        assert!(out.ends_with(b"abc"));
        assert_eq!(relay.handle_eof(), Err(ResponseError::Truncated));
        // 17 digits are refused (a total past 2^64 - 1: see http1::chunked's tests).
        let (out, _, _) = relay_all(get11(), chunked("00000000000000001\r\n").as_bytes(), false);
        assert_eq!(out.unwrap_err(), ResponseError::BadChunk);
        // A huge Content-Length relays what arrives, no more.
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 9999999999999999999\r\n\r\nabc";
        let mut relay = get11();
        let mut out = Vec::new();
        assert_eq!(relay.handle_bytes(input, &mut out), Ok(input.len()));
        assert!(out.ends_with(b"\r\n\r\nabc"));
        assert_eq!(relay.outcome(), None);
    }

    proptest::proptest! {
        /// Any bytes after any head, in any pieces: relayed, waiting or an error; never a panic.
        #[test]
        fn arbitrary_responses_never_panic(
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            head in 0usize..3,
            split in 1usize..64,
        ) {
            let heads: [&[u8]; 3] = [
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n",
            ];
            let mut input = heads[head].to_vec();
            input.extend_from_slice(&body);
            for client_minor in [0, 1] {
                let _ = drive(ResponseRelay::new(false, client_minor, true), &input, split, true);
            }
        }
    }

    #[test]
    fn early_eof_is_an_error_that_says_whether_anything_came() {
        let (out, _, _) = relay_all(get11(), b"", true);
        assert_eq!(out.unwrap_err(), ResponseError::NoResponse);
        let (out, _, _) = relay_all(get11(), b"HTTP/1.1 200", true);
        assert_eq!(out.unwrap_err(), ResponseError::Truncated);
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc";
        let mut relay = get11();
        let mut out = Vec::new();
        relay.handle_bytes(input, &mut out).unwrap();
        assert!(relay.is_final_head_relayed());
        assert_eq!(relay.handle_eof(), Err(ResponseError::Truncated));
    }

    #[test]
    fn an_endless_head_is_refused_at_the_limit() {
        let mut relay = get11();
        let mut input = b"HTTP/1.1 200 OK\r\n".to_vec();
        while input.len() < MAX_RESPONSE_HEAD_BYTES {
            input.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        let mut out = Vec::new();
        // Below the field limit but above the byte limit, or above the field limit: either refuses.
        assert!(relay.handle_bytes(&input, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn a_large_body_is_relayed_in_pieces_no_larger_than_the_reads() {
        const READ: usize = 16 * 1024;
        let total: usize = 10 * 1024 * 1024;
        let mut relay = get11();
        let mut out = Vec::new();
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n");
        assert_eq!(
            relay.handle_bytes(head.as_bytes(), &mut out).unwrap(),
            head.len()
        );
        out.clear();
        let piece = vec![b'x'; READ];
        let mut relayed = 0;
        while relay.outcome().is_none() {
            let n = relay
                .handle_bytes(&piece[..READ.min(total - relayed)], &mut out)
                .unwrap();
            assert!(out.len() <= READ);
            relayed += out.len();
            assert_eq!(n, out.len());
            out.clear();
        }
        assert_eq!(relayed, total);
        assert_eq!(relay.outcome().unwrap().body_bytes, total as u64);
    }
}
