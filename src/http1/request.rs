//! One HTTP/1.x request from bytes: the head (httparse), its body framing (Content-Length or
//! chunked, trailers accepted and dropped) and the limits that turn hostile input into a status.
#![forbid(unsafe_code)]

use std::mem::MaybeUninit;

use thiserror::Error;

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
}

impl RequestError {
    /// The status code this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::BadRequest(_) => 400,
            RequestError::HeadTooLarge => 431,
            RequestError::BodyTooLarge => 413,
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
pub struct Request<'b> {
    /// Method bytes as sent.
    pub method: &'b [u8],
    /// Request target as sent.
    pub target: &'b [u8],
    /// Minor HTTP version.
    pub version_minor: u8,
    /// Header fields in order (without `Expect`); mutable so a driver can rewrite `Host`.
    pub headers: &'b mut [httparse::Header<'b>],
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
    let mut chunked = None;
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
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or_default();
            chunked = Some(trim(last).eq_ignore_ascii_case(b"chunked"));
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
        }
    }
    if hosts > 1 {
        return Err(RequestError::BadRequest("repeated Host"));
    }
    let framing = match (content_length, chunked) {
        (Some(_), Some(_)) => {
            return Err(RequestError::BadRequest(
                "Content-Length with Transfer-Encoding",
            ))
        }
        (_, Some(false)) => {
            return Err(RequestError::BadRequest(
                "Transfer-Encoding whose final coding is not chunked",
            ))
        }
        (None, Some(true)) => Framing::Chunked,
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
        wants_close: close || (!keep_alive && version_minor != 1),
        http10_keep_alive: version_minor == 0 && keep_alive_any_case && !close_any_case,
    }))
}

/// Finds the body after `head`; `Ok(None)` when more bytes are needed. A chunked body is
/// de-chunked into `scratch` (cleared first). Returns where the body is and where the request ends.
pub fn parse_body(
    input: &[u8],
    head: &Head<'_, '_>,
    scratch: &mut Vec<u8>,
    limits: &Limits,
) -> Result<Option<(BodyAt, usize)>, RequestError> {
    let start = head.head_len;
    match head.framing {
        Framing::Length(n) => {
            let end = start as u64 + n;
            if (input.len() as u64) < end {
                return Ok(None);
            }
            let end = end as usize;
            Ok(Some((BodyAt::Input(start..end), end)))
        }
        Framing::Chunked => {
            scratch.clear();
            let mut pos = start;
            loop {
                let (consumed, size) = match httparse::parse_chunk_size(&input[pos..]) {
                    Ok(httparse::Status::Complete(c)) => c,
                    Ok(httparse::Status::Partial) => return partial(input, pos, limits),
                    Err(_) => return Err(RequestError::BadRequest("bad chunk size")),
                };
                pos += consumed;
                if size == 0 {
                    return trailers(input, pos, limits)
                        .map(|end| end.map(|e| (BodyAt::Scratch, e)));
                }
                if scratch.len() as u64 + size > limits.max_body {
                    return Err(RequestError::BodyTooLarge);
                }
                let size = size as usize;
                if input.len() < pos + size + 2 {
                    return Ok(None);
                }
                if &input[pos + size..pos + size + 2] != b"\r\n" {
                    return Err(RequestError::BadRequest("chunk not followed by CRLF"));
                }
                scratch.extend_from_slice(&input[pos..pos + size]);
                pos += size + 2;
            }
        }
    }
}

/// A chunk-size line is incomplete: wait, unless it is already absurdly long.
fn partial<T>(input: &[u8], pos: usize, limits: &Limits) -> Result<Option<T>, RequestError> {
    if input.len() - pos > limits.max_head {
        Err(RequestError::BadRequest("bad chunk size"))
    } else {
        Ok(None)
    }
}

/// Skips the trailer section starting at `pos`; returns where the request ends.
fn trailers(input: &[u8], mut pos: usize, limits: &Limits) -> Result<Option<usize>, RequestError> {
    let start = pos;
    loop {
        let Some(eol) = input[pos..].windows(2).position(|w| w == b"\r\n") else {
            return if input.len() - start > limits.max_head {
                Err(RequestError::HeadTooLarge)
            } else {
                Ok(None)
            };
        };
        let line_empty = eol == 0;
        pos += eol + 2;
        if line_empty {
            return Ok(Some(pos));
        }
        if pos - start > limits.max_head {
            return Err(RequestError::HeadTooLarge);
        }
    }
}

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

/// Splits an authority `host[:port]` or `[v6]:port` into host (no brackets) and port;
/// `None` when the port is not a number.
pub fn split_authority(authority: &[u8]) -> Option<(&[u8], Option<u16>)> {
    let (host, port) = if let Some(v6) = authority.strip_prefix(b"[") {
        let close = v6.iter().position(|&b| b == b']')?;
        (&v6[..close], v6[close + 1..].strip_prefix(b":"))
    } else {
        match authority.iter().rposition(|&b| b == b':') {
            Some(i) => (&authority[..i], Some(&authority[i + 1..])),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(std::str::from_utf8(p).ok()?.parse::<u16>().ok()?),
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
            facts(b"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"),
            (false, false)
        );
    }

    #[test]
    fn content_length_and_chunked_framing_are_recognised() {
        let r = head(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n").unwrap();
        assert_eq!(r.map(|r| r.1), Some(Framing::Length(5)));
        let r = head(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").unwrap();
        assert_eq!(r.map(|r| r.1), Some(Framing::Chunked));
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
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        ] {
            assert_eq!(head(input).unwrap_err().status(), 400, "{input:?}");
        }
    }

    #[test]
    fn close_rules_follow_the_version_and_connection_tokens() {
        let close = |i: &[u8]| head(i).unwrap().unwrap().2;
        assert!(!close(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(close(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assert!(!close(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n"));
        assert!(close(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(!close(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn oversized_heads_and_bodies_get_431_and_413() {
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(70 * 1024, b'a');
        assert_eq!(head(&long).unwrap_err().status(), 431);
        let big = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", 1u64 << 40);
        assert_eq!(head(big.as_bytes()).unwrap_err().status(), 413);
    }

    fn chunked(input: &[u8]) -> Result<Option<(Vec<u8>, usize)>, RequestError> {
        let mut headers = header_slots();
        let limits = Limits::default();
        let h = parse_head(input, &mut headers, &limits)?.expect("complete head");
        let mut scratch = Vec::new();
        Ok(parse_body(input, &h, &mut scratch, &limits)?.map(|(_, end)| (scratch, end)))
    }

    #[test]
    fn chunked_bodies_are_dechunked_with_trailers_skipped() {
        let req = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\nNEXT";
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
    fn bad_chunks_are_bad_requests() {
        let bad = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n";
        assert_eq!(chunked(bad).unwrap_err().status(), 400);
        let bad = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n";
        assert_eq!(chunked(bad).unwrap_err().status(), 400);
    }
}
