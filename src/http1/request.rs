//! One HTTP/1.x request from bytes: the head (httparse), its body framing (Content-Length or
//! chunked, trailers accepted and dropped) and the rules and limits that turn hostile input into
//! a status (RFC 9112 §3.2 Host, §6 framing, §7.1 chunked syntax via [`super::chunked`]).
#![forbid(unsafe_code)]

use std::mem::MaybeUninit;

use thiserror::Error;

use super::chunked::{ChunkError, ChunkedDecoder};

/// The most header fields a request may carry; more is answered with 431.
pub const MAX_HEADERS: usize = 100;

/// Storage for one request's header fields, left uninitialised (httparse fills what it uses, so
/// a request costs no clearing of the whole array).
pub type HeaderSlots<'b> = [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS];

/// Fresh, uninitialised header storage.
#[inline]
pub fn header_slots<'b>() -> HeaderSlots<'b> {
    [MaybeUninit::uninit(); MAX_HEADERS]
}

/// Size limits on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request head (request line, fields, blank line) in bytes; longer gets 431.
    pub max_head: usize,
    /// Largest request body in bytes (after de-chunking); larger gets 413.
    pub max_body: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 64 * 1024,
            max_body: 16 * 1024 * 1024,
        }
    }
}

/// Why a request cannot be served; each maps to a status and closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RequestError {
    /// Malformed or ambiguous request (400); the text says what was wrong.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The head is longer than [`Limits::max_head`] or has too many fields (431).
    #[error("request head too large")]
    HeadTooLarge,
    /// The body is larger than [`Limits::max_body`] (413).
    #[error("request body too large")]
    BodyTooLarge,
    /// A transfer coding we do not implement (501); the text names it.
    #[error("not implemented: {0}")]
    NotImplemented(&'static str),
}

impl From<ChunkError> for RequestError {
    fn from(e: ChunkError) -> Self {
        match e {
            ChunkError::Malformed(why) => RequestError::BadRequest(why),
            ChunkError::TooLarge => RequestError::BodyTooLarge,
            ChunkError::TrailersTooLarge => RequestError::HeadTooLarge,
        }
    }
}

impl RequestError {
    /// The status code this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::BadRequest(_) => 400,
            RequestError::HeadTooLarge => 431,
            RequestError::BodyTooLarge => 413,
            RequestError::NotImplemented(_) => 501,
        }
    }
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length: n` (or no body: n = 0).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head.
#[derive(Debug)]
pub struct Head<'h, 'b> {
    /// Method bytes as sent.
    pub method: &'b [u8],
    /// Request target as sent (origin-form or absolute-form).
    pub target: &'b [u8],
    /// Minor HTTP version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    /// The header fields in order, `Expect` removed.
    pub headers: &'h mut [httparse::Header<'b>],
    /// Bytes of the head including the blank line.
    pub head_len: usize,
    /// How the body is delimited.
    pub framing: Framing,
    /// The request carries `Expect: 100-continue` (HTTP/1.1).
    pub expect_continue: bool,
    /// Spec §f.5 rule 2: the request asks for the connection to close afterwards.
    pub wants_close: bool,
    /// HTTP/1.0 with a `keep-alive` and no `close` connection option, compared case-insensitively
    /// as RFC 9110 §7.6.1 says (rule 2 compares case-sensitively, so `ab -k`'s `Keep-Alive`
    /// closes there); what `--keep-alive` goes by.
    pub http10_keep_alive: bool,
}

/// Where a complete request's body is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyAt {
    /// `input[range]`: a Content-Length body, in place.
    Input(std::ops::Range<usize>),
    /// The de-chunked body, in the caller's scratch buffer.
    Scratch,
}

/// A complete request, borrowing the input, the header array and the scratch buffer.
#[derive(Debug)]
pub struct Request<'b, 'h> {
    /// Method bytes as sent.
    pub method: &'b [u8],
    /// Request target as sent.
    pub target: &'b [u8],
    /// Minor HTTP version.
    pub version_minor: u8,
    /// Header fields in order (without `Expect`); mutable so a driver can rewrite `Host`. Their
    /// own lifetime: the slots they are parsed into need not outlive what they point at.
    pub headers: &'h mut [httparse::Header<'b>],
    /// The body, de-chunked.
    pub body: &'b [u8],
    /// Spec §f.5 rule 2.
    pub wants_close: bool,
    /// See [`Head::http10_keep_alive`].
    pub http10_keep_alive: bool,
    /// The method is `HEAD`.
    pub is_head: bool,
    /// Bytes of input this request used (head and framed body).
    pub len: usize,
}

/// Parses the head at the start of `input` into `headers`; `Ok(None)` when more bytes are needed.
pub fn parse_head<'h, 'b>(
    input: &'b [u8],
    headers: &'h mut [MaybeUninit<httparse::Header<'b>>],
    limits: &Limits,
) -> Result<Option<Head<'h, 'b>>, RequestError> {
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(input, headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if input.len() > limits.max_head {
                Err(RequestError::HeadTooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::HeadTooLarge),
        Err(_) => return Err(RequestError::BadRequest("malformed request head")),
    };
    if head_len > limits.max_head {
        return Err(RequestError::HeadTooLarge);
    }
    let method = req.method.unwrap_or_default().as_bytes();
    let target = req.path.unwrap_or_default().as_bytes();
    let version_minor = req.version.unwrap_or(1);
    let headers = std::mem::take(&mut req.headers);
    let fields = headers.len();

    let mut content_length: Option<u64> = None;
    let mut transfer_encoding: Option<&[u8]> = None;
    let mut host: Option<&[u8]> = None;
    let mut close = false;
    let mut keep_alive = false;
    // Any case, for `Head::http10_keep_alive`.
    let (mut close_any_case, mut keep_alive_any_case) = (false, false);
    let mut expect_continue = false;
    let mut hosts = 0;
    for h in headers[..fields].iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            if content_length.is_some() {
                return Err(RequestError::BadRequest("repeated Content-Length"));
            }
            content_length = Some(parse_length(h.value)?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if transfer_encoding.is_some() {
                return Err(RequestError::BadRequest("repeated Transfer-Encoding"));
            }
            transfer_encoding = Some(h.value);
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|&b| b == b',').map(trim) {
                close |= token == b"close";
                keep_alive |= token == b"keep-alive";
                close_any_case |= token.eq_ignore_ascii_case(b"close");
                keep_alive_any_case |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            expect_continue =
                version_minor == 1 && trim(h.value).eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
            host = Some(h.value);
        }
    }
    // RFC 9112 §3.2: exactly one valid Host in HTTP/1.1; none or one valid in HTTP/1.0.
    if hosts > 1 {
        return Err(RequestError::BadRequest("repeated Host"));
    }
    match host {
        None if version_minor == 1 => {
            return Err(RequestError::BadRequest("HTTP/1.1 request without Host"))
        }
        Some(value) if !valid_host(value) => return Err(RequestError::BadRequest("invalid Host")),
        _ => {}
    }
    let framing = match (content_length, transfer_encoding) {
        (_, Some(_)) if version_minor == 0 => {
            return Err(RequestError::BadRequest(
                "Transfer-Encoding in an HTTP/1.0 request",
            ))
        }
        (Some(_), Some(_)) => {
            return Err(RequestError::BadRequest(
                "Content-Length with Transfer-Encoding",
            ))
        }
        (None, Some(codings)) => {
            check_transfer_codings(codings)?;
            Framing::Chunked
        }
        (length, None) => Framing::Length(length.unwrap_or(0)),
    };
    if let Framing::Length(n) = framing {
        if n > limits.max_body {
            return Err(RequestError::BodyTooLarge);
        }
    }
    // `Expect` is answered here and removed before matching (spec §f.3).
    let mut kept = 0;
    for i in 0..fields {
        if !headers[i].name.eq_ignore_ascii_case("expect") {
            headers.swap(kept, i);
            kept += 1;
        }
    }
    Ok(Some(Head {
        method,
        target,
        version_minor,
        headers: &mut headers[..kept],
        head_len,
        framing,
        expect_continue,
        wants_close: super::keep_alive::message_closes(version_minor == 1, close, keep_alive),
        http10_keep_alive: version_minor == 0 && keep_alive_any_case && !close_any_case,
    }))
}

/// A request body being received, kept between reads so that a chunked body is decoded once
/// (see [`parse_body`]); [`Default`] is "no body started".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyState {
    /// Bytes after the head already decoded.
    consumed: usize,
    /// The decoder of the chunked body being received.
    chunked: Option<ChunkedDecoder>,
}

impl BodyState {
    /// Bytes after the head already decoded (0 when no chunked body is in progress).
    pub fn decoded(&self) -> usize {
        self.consumed
    }
}

/// Finds the body after `head`; `Ok(None)` when more bytes are needed. A chunked body is
/// de-chunked into `scratch`. Returns where the body is and where the request ends.
///
/// `state` carries a chunked body's progress between calls: after `Ok(None)`, call again with the
/// same request's bytes (more appended), the same `state` and the same `scratch`, and decoding
/// resumes where it stopped. It starts afresh (clearing `scratch`) when `state` is new, or when
/// `input` is shorter than what it has consumed. It is reset when the body completes or fails.
pub fn parse_body(
    input: &[u8],
    head: &Head<'_, '_>,
    state: &mut BodyState,
    scratch: &mut Vec<u8>,
    limits: &Limits,
) -> Result<Option<(BodyAt, usize)>, RequestError> {
    parse_body_at(input, head.head_len, head.framing, state, scratch, limits)
}

/// [`parse_body`] for a head already parsed: `start` is its length, `framing` its body's.
pub fn parse_body_at(
    input: &[u8],
    start: usize,
    framing: Framing,
    state: &mut BodyState,
    scratch: &mut Vec<u8>,
    limits: &Limits,
) -> Result<Option<(BodyAt, usize)>, RequestError> {
    match framing {
        Framing::Length(n) => {
            // `n <= max_body` was checked with the head; the add is checked all the same.
            let end = (start as u64)
                .checked_add(n)
                .ok_or(RequestError::BodyTooLarge)?;
            if (input.len() as u64) < end {
                return Ok(None);
            }
            // `end <= input.len()`, so it fits a usize.
            let end = end as usize;
            Ok(Some((BodyAt::Input(start..end), end)))
        }
        Framing::Chunked => {
            let from = start.saturating_add(state.consumed);
            if state.chunked.is_none() || from > input.len() {
                *state = BodyState::default();
                scratch.clear();
            }
            let from = start + state.consumed;
            let Some(rest) = input.get(from..) else {
                // The head ends beyond the input: cannot happen for a parsed head.
                return Ok(None);
            };
            let decoder = state
                .chunked
                .get_or_insert_with(|| ChunkedDecoder::new(limits.max_body));
            let used = match decoder.feed(rest, |data| scratch.extend_from_slice(data)) {
                Ok(used) => used,
                Err(e) => {
                    *state = BodyState::default();
                    return Err(e.into());
                }
            };
            if decoder.is_done() {
                *state = BodyState::default();
                return Ok(Some((BodyAt::Scratch, from + used)));
            }
            state.consumed += used;
            if state.consumed as u64 > chunked_wire_limit(limits.max_body) {
                *state = BodyState::default();
                return Err(RequestError::BodyTooLarge);
            }
            Ok(None)
        }
    }
}

/// How many bytes a chunked body may take on the wire: its data (`max_body`), as much again for
/// chunk framing, and 1 MiB. The raw body stays in the input until it ends (the head is read from
/// there), so tiny chunks must not multiply the memory `max_body` allows (`1\r\nX\r\n` is 6
/// bytes a byte, a zero-padded size 21); a longer body gets 413 like a larger one.
pub fn chunked_wire_limit(max_body: u64) -> u64 {
    max_body.saturating_mul(2).saturating_add(1 << 20)
}

/// The transfer codings accepted before `chunked`: mitmproxy's (`net/http/validate.py`).
const KNOWN_CODINGS: [&[u8]; 3] = [b"gzip", b"deflate", b"compress"];

/// Checks a request's `Transfer-Encoding` value: `chunked` last and once (else 400), with at most
/// one of [`KNOWN_CODINGS`] before it (else 501). The body is framed by the chunked coding only;
/// the others are left applied, as mitmproxy leaves them.
fn check_transfer_codings(value: &[u8]) -> Result<(), RequestError> {
    let mut codings = value.rsplit(|&b| b == b',').map(trim);
    let last = codings.next().unwrap_or_default();
    if !last.eq_ignore_ascii_case(b"chunked") {
        return Err(RequestError::BadRequest(
            "Transfer-Encoding whose final coding is not chunked",
        ));
    }
    for (i, coding) in codings.enumerate() {
        if coding.eq_ignore_ascii_case(b"chunked") {
            return Err(RequestError::BadRequest("chunked applied more than once"));
        }
        if coding.is_empty() {
            return Err(RequestError::BadRequest("malformed Transfer-Encoding"));
        }
        if !KNOWN_CODINGS.iter().any(|k| coding.eq_ignore_ascii_case(k)) {
            return Err(RequestError::NotImplemented(
                "transfer codings other than gzip, deflate and compress",
            ));
        }
        if i > 0 {
            return Err(RequestError::NotImplemented(
                "more than one transfer coding before chunked",
            ));
        }
    }
    Ok(())
}

/// A valid `Host` value (RFC 9112 §3.2, RFC 3986 §3.2.2): empty, or `host[:port]` with a
/// reg-name or IPv4 host (a comma is refused: `Host: a, b` is two values) or a bracketed IP
/// literal, and a decimal port up to 65535.
pub(crate) fn valid_host(value: &[u8]) -> bool {
    let value = trim(value);
    if value.is_empty() {
        return true;
    }
    let Some((host, port)) = split_authority(value) else {
        return false;
    };
    // mitmproxy's authority pattern wants digits after a colon (`Host: a:` is refused), stricter
    // than RFC 3986's empty port.
    if port.is_none() && value.ends_with(b":") {
        return false;
    }
    let allowed = if value.starts_with(b"[") {
        &IP_LITERAL
    } else {
        &REG_NAME
    };
    !host.is_empty() && host.iter().all(|&b| allowed[usize::from(b)])
}

/// A byte table: letters, digits and the bytes of `extra`.
const fn byte_class(extra: &[u8]) -> [bool; 256] {
    let mut class = [false; 256];
    let mut b = 0;
    while b < 256 {
        class[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        class[extra[i] as usize] = true;
        i += 1;
    }
    class
}

/// The bytes of a bracketed IP literal's inside that [`valid_host`] accepts.
const IP_LITERAL: [bool; 256] = byte_class(b":._~%-");

/// The bytes of a host name that [`valid_host`] accepts.
const REG_NAME: [bool; 256] = byte_class(b"-._~!$&'()*+;=%");

/// Parses a Content-Length value: ASCII digits only.
fn parse_length(value: &[u8]) -> Result<u64, RequestError> {
    let value = trim(value);
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(RequestError::BadRequest("invalid Content-Length"));
    }
    value.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(RequestError::BadRequest("invalid Content-Length"))
    })
}

/// Splits an absolute-form target `scheme://authority[/path]` into scheme, authority and the
/// origin-form rest (`/` when empty); `None` for any other form.
pub fn split_absolute(target: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let sep = target.windows(3).position(|w| w == b"://")?;
    let scheme = &target[..sep];
    if scheme.is_empty()
        || !scheme
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(b))
    {
        return None;
    }
    let rest = &target[sep + 3..];
    let end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let path: &[u8] = if end == rest.len() {
        b"/"
    } else {
        &rest[end..]
    };
    Some((scheme, &rest[..end], path))
}

/// Splits an authority `host[:port]` or `[v6][:port]` into host (no brackets) and port, as
/// RFC 3986 §3.2.2/§3.2.3 read it: the port is decimal digits only (no sign), an empty port
/// (`h:`) is no port, an IPv6 literal must be bracketed and nothing but `:port` may follow its
/// `]`. `None` for anything else. The one authority splitter: callers add what they need on top
/// (a usable upstream wants a non-empty host and a port above 0).
pub fn split_authority(authority: &[u8]) -> Option<(&[u8], Option<u16>)> {
    let (host, port) = if let Some(v6) = authority.strip_prefix(b"[") {
        let close = v6.iter().position(|&b| b == b']')?;
        let port = match &v6[close + 1..] {
            [] => None,
            [b':', p @ ..] => Some(p),
            _ => return None,
        };
        (&v6[..close], port)
    } else {
        // The first colon: an unbracketed IPv6 literal (`::1`) leaves a port that is not digits.
        match authority.iter().position(|&b| b == b':') {
            Some(i) => (&authority[..i], Some(&authority[i + 1..])),
            None => (authority, None),
        }
    };
    let port = match port {
        None | Some([]) => None,
        // Digits only; any count of leading zeros, a value that fits 16 bits (as `u16::from_str`).
        Some(p) if p.iter().all(u8::is_ascii_digit) => Some(p.iter().try_fold(0u16, |n, &d| {
            n.checked_mul(10)?.checked_add(u16::from(d - b'0'))
        })?),
        Some(_) => return None,
    };
    Some((host, port))
}

/// `bytes` without leading and trailing spaces and tabs.
pub fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |p| p + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(input: &[u8]) -> Result<Option<(usize, Framing, bool, bool)>, RequestError> {
        let mut headers = header_slots();
        parse_head(input, &mut headers, &Limits::default())
            .map(|h| h.map(|h| (h.head_len, h.framing, h.wants_close, h.expect_continue)))
    }

    #[test]
    fn http10_keep_alive_reads_connection_options_in_any_case() {
        let facts = |input: &[u8]| {
            let mut headers = header_slots();
            let h = parse_head(input, &mut headers, &Limits::default())
                .unwrap()
                .unwrap();
            (h.wants_close, h.http10_keep_alive)
        };
        // ab -k: spec §f.5 rule 2 closes (case-sensitive), RFC 9110 keeps.
        assert_eq!(
            facts(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"),
            (true, true)
        );
        assert_eq!(
            facts(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
            (false, true)
        );
        assert_eq!(
            facts(b"GET / HTTP/1.0\r\nConnection: Keep-Alive, Close\r\n\r\n"),
            (true, false)
        );
        assert_eq!(facts(b"GET / HTTP/1.0\r\n\r\n"), (true, false));
        assert_eq!(
            facts(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n"),
            (false, false)
        );
    }

    #[test]
    fn content_length_and_chunked_framing_are_recognised() {
        let r = head(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n").unwrap();
        assert_eq!(r.map(|r| r.1), Some(Framing::Length(5)));
        for codings in [
            "chunked",
            "gzip, chunked",
            "Deflate,Chunked",
            "compress ,\tchunked",
        ] {
            let input =
                format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {codings}\r\n\r\n");
            let r = head(input.as_bytes()).unwrap();
            assert_eq!(r.map(|r| r.1), Some(Framing::Chunked), "{codings}");
        }
    }

    #[test]
    fn ambiguous_lengths_are_bad_requests() {
        for input in [
            &b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: , chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        ] {
            assert_eq!(head(input).unwrap_err().status(), 400, "{input:?}");
        }
    }

    #[test]
    fn close_rules_follow_the_version_and_connection_tokens() {
        let close = |i: &[u8]| head(i).unwrap().unwrap().2;
        assert!(!close(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
        assert!(close(
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        ));
        assert!(!close(
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Close\r\n\r\n"
        ));
        assert!(close(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(!close(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn oversized_heads_and_bodies_get_431_and_413() {
        let mut long = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
        long.resize(70 * 1024, b'a');
        assert_eq!(head(&long).unwrap_err().status(), 431);
        let big = format!(
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
            1u64 << 40
        );
        assert_eq!(head(big.as_bytes()).unwrap_err().status(), 413);
    }

    fn chunked(input: &[u8]) -> Result<Option<(Vec<u8>, usize)>, RequestError> {
        let mut headers = header_slots();
        let limits = Limits::default();
        let h = parse_head(input, &mut headers, &limits)?.expect("complete head");
        let mut scratch = Vec::new();
        let mut state = BodyState::default();
        Ok(
            parse_body(input, &h, &mut state, &mut scratch, &limits)?
                .map(|(_, end)| (scratch, end)),
        )
    }

    /// A chunked POST with `body` after its head.
    fn chunked_post(body: &[u8]) -> Vec<u8> {
        let mut input =
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        input.extend_from_slice(body);
        input
    }

    #[test]
    fn chunked_bodies_are_dechunked_with_trailers_skipped() {
        let req = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (body, end) = chunked(req).unwrap().unwrap();
        assert_eq!(body, b"abcde");
        assert_eq!(&req[end..], b"NEXT");
        assert_eq!(chunked(&req[..req.len() - 8]).unwrap(), None);
    }

    #[test]
    fn absolute_targets_and_authorities_split() {
        assert_eq!(
            split_absolute(b"http://h:81/a?b"),
            Some((&b"http"[..], &b"h:81"[..], &b"/a?b"[..]))
        );
        assert_eq!(
            split_absolute(b"http://h"),
            Some((&b"http"[..], &b"h"[..], &b"/"[..]))
        );
        assert_eq!(split_absolute(b"/a"), None);
        assert_eq!(split_authority(b"h:81"), Some((&b"h"[..], Some(81))));
        assert_eq!(split_authority(b"[::1]:8"), Some((&b"::1"[..], Some(8))));
        assert_eq!(split_authority(b"h"), Some((&b"h"[..], None)));
        assert_eq!(split_authority(b"h:x"), None);
    }

    #[test]
    fn authorities_split_as_rfc_3986_reads_them() {
        // An empty port is no port (§3.2.3: "port = *DIGIT").
        assert_eq!(split_authority(b"h:"), Some((&b"h"[..], None)));
        assert_eq!(split_authority(b"[::1]:"), Some((&b"::1"[..], None)));
        // Digits only: no sign, no spaces, nothing above 65535.
        assert_eq!(split_authority(b"h:+1"), None);
        assert_eq!(split_authority(b"h:-1"), None);
        assert_eq!(split_authority(b"h: 1"), None);
        assert_eq!(split_authority(b"h:65536"), None);
        assert_eq!(split_authority(b"h:065535"), Some((&b"h"[..], Some(65535))));
        // An IPv6 literal must be bracketed; only `:port` may follow the bracket.
        assert_eq!(split_authority(b"::1"), None);
        assert_eq!(split_authority(b"fe80::1:80"), None);
        assert_eq!(split_authority(b"a:b:80"), None);
        assert_eq!(split_authority(b"[::1]x"), None);
        assert_eq!(split_authority(b"[::1]80"), None);
        assert_eq!(split_authority(b"[::1"), None);
        assert_eq!(split_authority(b"[::1]"), Some((&b"::1"[..], None)));
    }

    #[test]
    fn bad_chunks_are_bad_requests() {
        for body in [
            &b"zz\r\nabc\r\n0\r\n\r\n"[..],
            b"3\r\nabcX\r\n0\r\n\r\n",
            // An empty chunk-size line is not the last chunk.
            b"3\r\nabc\r\n\r\n\r\n",
            // Bare LF in a chunk extension, in a size line, after data, in a trailer.
            b"3;x\nabc\r\n0\r\n\r\n",
            b"3\nabc\r\n0\r\n\r\n",
            b"3\r\nabc\n0\r\n\r\n",
            b"0\r\nX-T: 1\n\r\n",
            b"0\r\nX-T: 1\r\n\n",
            // 17 hex digits, whatever their value.
            b"00000000000000003\r\nabc\r\n0\r\n\r\n",
        ] {
            let err = chunked(&chunked_post(body)).unwrap_err();
            assert!(
                matches!(err, RequestError::BadRequest(_)),
                "{body:?}: {err}"
            );
        }
    }

    #[test]
    fn the_overflow_reproducer_is_413_before_any_offset() {
        // Issue 10: `scratch.len() + size` and `pos + size + 2` wrapped, then a slice panicked.
        let input = chunked_post(b"2\r\nab\r\nFFFFFFFFFFFFFFFE\r\n");
        assert_eq!(chunked(&input).unwrap_err(), RequestError::BodyTooLarge);
        // Every size near 2^64, complete line or not, and with data after it.
        for size in [
            "FFFFFFFFFFFFFFFF",
            "FFFFFFFFFFFFFFF0",
            "8000000000000000",
            "1000001",
        ] {
            for tail in ["", "\r\n", "\r\nabcdefgh"] {
                let input = chunked_post(format!("2\r\nab\r\n{size};x{tail}").as_bytes());
                assert_eq!(
                    chunked(&input).unwrap_err(),
                    RequestError::BodyTooLarge,
                    "{size}"
                );
            }
        }
        let input = chunked_post(b"FFFFFFFFFFFFFFFFF");
        assert_eq!(
            chunked(&input).unwrap_err(),
            RequestError::BadRequest("chunk size longer than 16 hex digits")
        );
    }

    #[test]
    fn a_chunked_body_whose_framing_outgrows_its_data_is_413_before_the_input_does() {
        let limits = Limits {
            max_head: 1024,
            max_body: 1 << 20,
        };
        let wire = chunked_wire_limit(limits.max_body) as usize;
        let mut headers = header_slots();
        let mut input = chunked_post(b"");
        let head_len = parse_head(&input, &mut headers, &limits)
            .unwrap()
            .unwrap()
            .head_len;
        // Zero-padded one-byte chunks: 21 bytes on the wire a byte of data, fed as they come.
        let mut state = BodyState::default();
        let mut scratch = Vec::new();
        let mut outcome = Ok(None);
        while outcome == Ok(None) && input.len() < head_len + 2 * wire {
            input.extend_from_slice(&b"0000000000000001\r\nX\r\n".repeat(4096));
            let mut headers = header_slots();
            let h = parse_head(&input, &mut headers, &limits).unwrap().unwrap();
            outcome = parse_body(&input, &h, &mut state, &mut scratch, &limits);
        }
        assert_eq!(outcome, Err(RequestError::BodyTooLarge));
        assert!(
            input.len() - head_len <= wire + 21 * 4096,
            "stopped near the limit"
        );
        assert!(scratch.len() < limits.max_body as usize / 2);
        // One-byte chunks of a body within `max_body` fit (6 bytes a byte).
        let mut body = b"1\r\nX\r\n".repeat(100_000);
        body.extend_from_slice(b"0\r\n\r\n");
        let input = chunked_post(&body);
        let mut headers = header_slots();
        let h = parse_head(&input, &mut headers, &limits).unwrap().unwrap();
        let mut state = BodyState::default();
        let mut scratch = Vec::new();
        let done = parse_body(&input, &h, &mut state, &mut scratch, &limits).unwrap();
        assert_eq!(done, Some((BodyAt::Scratch, input.len())));
        assert_eq!(scratch.len(), 100_000);
    }

    #[test]
    fn content_length_arithmetic_is_checked() {
        let mut headers = header_slots();
        let limits = Limits {
            max_head: 1024,
            max_body: u64::MAX,
        };
        let input = format!(
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
            u64::MAX
        );
        let h = parse_head(input.as_bytes(), &mut headers, &limits)
            .unwrap()
            .unwrap();
        let mut state = BodyState::default();
        assert_eq!(
            parse_body(input.as_bytes(), &h, &mut state, &mut Vec::new(), &limits),
            Err(RequestError::BodyTooLarge)
        );
    }

    #[test]
    fn transfer_encoding_rules() {
        let status = |input: &[u8]| head(input).map(|_| 200).unwrap_or_else(|e| e.status());
        // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 is faulty framing.
        assert_eq!(
            head(
                b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
            )
            .unwrap_err(),
            RequestError::BadRequest("Transfer-Encoding in an HTTP/1.0 request")
        );
        // Unknown codings before chunked: 501.
        for codings in [
            "br, chunked",
            "x-gzip, chunked",
            "identity, chunked",
            "gzip;q=1, chunked",
            "gzip, gzip, chunked",
        ] {
            let input =
                format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {codings}\r\n\r\n");
            assert_eq!(status(input.as_bytes()), 501, "{codings}");
        }
        // Not chunked last, or chunked twice: 400.
        for codings in [
            "gzip",
            "br",
            "chunked, gzip",
            "chunked, chunked",
            "gzip,",
            "",
        ] {
            let input =
                format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {codings}\r\n\r\n");
            assert_eq!(status(input.as_bytes()), 400, "{codings:?}");
        }
    }

    #[test]
    fn http11_needs_exactly_one_valid_host() {
        let status = |input: &[u8]| head(input).map(|_| 200).unwrap_or_else(|e| e.status());
        assert_eq!(
            head(b"GET / HTTP/1.1\r\n\r\n").unwrap_err(),
            RequestError::BadRequest("HTTP/1.1 request without Host")
        );
        for value in [
            "a, b", "a,b", "a b", "a:x", "a:", "a:+80", "a:99999", ":80", "[::1", "[::1]x", "[]",
            "a/b", "a@b", "\"a\"",
        ] {
            let input = format!("GET / HTTP/1.1\r\nHost: {value}\r\n\r\n");
            assert_eq!(status(input.as_bytes()), 400, "Host: {value}");
            let input = format!("GET / HTTP/1.0\r\nHost: {value}\r\n\r\n");
            assert_eq!(status(input.as_bytes()), 400, "HTTP/1.0 Host: {value}");
        }
        for value in [
            "",
            "h",
            "example.com:8080",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:80",
            "[fe80::1%25eth0]",
            "xn--bcher-kva.example",
            "a_b~c",
        ] {
            let input = format!("GET / HTTP/1.1\r\nHost: {value}\r\n\r\n");
            assert_eq!(status(input.as_bytes()), 200, "Host: {value}");
        }
        // HTTP/1.0 may omit it (regular mode answers that with mitmproxy's page, spec §e.2).
        assert_eq!(status(b"GET / HTTP/1.0\r\n\r\n"), 200);
    }

    #[test]
    fn a_chunked_body_resumes_where_it_stopped() {
        let input = chunked_post(b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n");
        let limits = Limits::default();
        let mut state = BodyState::default();
        let mut scratch = Vec::new();
        let mut end = None;
        for cut in 0..=input.len() {
            let mut headers = header_slots();
            let Some(h) = parse_head(&input[..cut], &mut headers, &limits).unwrap() else {
                continue;
            };
            if let Some((_, e)) =
                parse_body(&input[..cut], &h, &mut state, &mut scratch, &limits).unwrap()
            {
                end = Some((cut, e));
                break;
            }
        }
        assert_eq!(end, Some((input.len(), input.len())));
        assert_eq!(scratch, b"abcdefg");
        assert_eq!(state, BodyState::default(), "reset for the next request");

        // Bytes already decoded are not read again: spoil them after the first call and the
        // second still completes from where the first stopped.
        let mut input = chunked_post(b"3\r\nabc\r\n0\r\n\r\n");
        let split = input.len() - 5;
        let mut headers = header_slots();
        let h = parse_head(&input, &mut headers, &limits).unwrap().unwrap();
        let head_len = h.head_len;
        let first = parse_body(&input[..split], &h, &mut state, &mut scratch, &limits);
        assert_eq!(first, Ok(None));
        input[head_len] = b'z';
        let mut headers = header_slots();
        let h = parse_head(&input, &mut headers, &limits).unwrap().unwrap();
        let second = parse_body(&input, &h, &mut state, &mut scratch, &limits);
        assert_eq!(second, Ok(Some((BodyAt::Scratch, input.len()))));
        assert_eq!(scratch, b"abc");
    }
}
