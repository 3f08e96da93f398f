//! Borrowed views of one recorded HTTP flow: what every other module sees of a recording.
//!
//! All slices point into the recording's bytes (the memory mapping), so nothing is copied. A view
//! is produced by [`crate::flowfile::Recording::flow`] from a flow the loader already validated, in
//! whatever format version it was written: field renames and defaults (spec §g.5) are already
//! applied, so users of a view never look at format versions.
#![forbid(unsafe_code)]

use super::tnetstring::{payload_accepted, Tag, Value};

/// One recorded HTTP flow: the request, and the response if one was recorded.
#[derive(Debug, Clone, Copy)]
pub struct FlowView<'a> {
    /// Position of this flow among the recording's HTTP flows (0-based, file order, all files).
    pub id: usize,
    /// Which `-S` file the flow came from (0-based).
    pub file: usize,
    /// 1-based number of the flow inside its file, counting every flow (HTTP or not).
    pub number: u64,
    /// Absolute offset of the flow's top-level value in its file.
    pub offset: u64,
    /// The recorded request.
    pub request: RequestView<'a>,
    /// The recorded response; `None` for flows without one (they still count, spec §c.1).
    pub response: Option<ResponseView<'a>>,
}

/// A recorded request (spec §g.4 `request` dict, after migrations).
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Method as recorded (`GET`; matching upper-cases it).
    pub method: &'a [u8],
    /// `http` or `https`.
    pub scheme: &'a [u8],
    /// Destination host (in reverse mode, the target's host).
    pub host: &'a [u8],
    /// Destination port.
    pub port: u16,
    /// Request-target authority for absolute-form/CONNECT or HTTP/2 `:authority`; often empty.
    pub authority: &'a [u8],
    /// Request target path including `?query`.
    pub path: &'a [u8],
    /// `HTTP/1.1`, `HTTP/1.0`, `HTTP/2.0`, `HTTP/3`, or HAR's `HTTP/2`.
    pub http_version: &'a [u8],
    /// Header fields in wire order.
    pub headers: Headers<'a>,
    /// Body after transfer decoding (Content-Encoding kept); `None` when it was not stored.
    pub content: Option<&'a [u8]>,
    /// Trailer fields, if any were recorded.
    pub trailers: Option<Headers<'a>>,
    /// When the request started (seconds since the Unix epoch).
    pub timestamp_start: f64,
    /// When the request ended, if recorded.
    pub timestamp_end: Option<f64>,
}

/// The fields of a recorded request that decide most key comparisons (spec §b.3): what a lookup
/// reads to confirm a candidate, without the header list, timestamps or version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyFields<'a> {
    /// As [`RequestView::scheme`].
    pub scheme: &'a [u8],
    /// As [`RequestView::method`].
    pub method: &'a [u8],
    /// As [`RequestView::host`].
    pub host: &'a [u8],
    /// As [`RequestView::port`].
    pub port: u16,
    /// As [`RequestView::path`].
    pub path: &'a [u8],
    /// As [`RequestView::content`].
    pub content: Option<&'a [u8]>,
}

/// A recorded response (spec §g.4 `response` dict, after migrations).
#[derive(Debug, Clone, Copy)]
pub struct ResponseView<'a> {
    /// `HTTP/1.1`, `HTTP/1.0`, `HTTP/2.0`, `HTTP/3`, or HAR's `HTTP/2`.
    pub http_version: &'a [u8],
    /// Status code.
    pub status_code: u16,
    /// Reason phrase (empty for HTTP/2 and HTTP/3 recordings).
    pub reason: &'a [u8],
    /// Header fields in wire order.
    pub headers: Headers<'a>,
    /// Body after transfer decoding (Content-Encoding kept); `None` when it was not stored.
    pub content: Option<&'a [u8]>,
    /// Trailer fields, if any were recorded.
    pub trailers: Option<Headers<'a>>,
    /// When the response started (seconds since the Unix epoch); the refresh shift is
    /// `now - timestamp_start` (spec §d.1). Never missing: the loader fills it (spec §g.5, 13→14).
    pub timestamp_start: f64,
    /// When the response ended, if recorded.
    pub timestamp_end: Option<f64>,
}

/// A recorded flow's `error` (mitmproxy's `flow.Error`): why it has no complete response, e.g.
/// a connection the upstream refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorView<'a> {
    /// The message (`[Errno 111] Connect call failed ('127.0.0.1', 9)`).
    pub msg: &'a [u8],
    /// When it happened (seconds since the Unix epoch).
    pub timestamp: f64,
}

/// Header fields of a recorded message, in wire order, read lazily from the recording.
///
/// Backed by the payload of a tnetstring list of `[name, value]` pairs that the loader validated,
/// so iteration cannot fail.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Headers<'a> {
    /// Payload of the validated tnetstring list.
    encoded: &'a [u8],
}

impl std::fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.iter()
                    .map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v))),
            )
            .finish()
    }
}

impl<'a> Headers<'a> {
    /// Headers from the payload of a tnetstring list of `[bytes, bytes]` pairs. The caller
    /// (the loader) has checked that shape: iteration frames the pairs without reading their
    /// tags again (and ends at bytes that are not framed as values).
    pub(crate) fn from_validated_list(encoded: &'a [u8]) -> Headers<'a> {
        Headers { encoded }
    }

    /// No header fields.
    pub const EMPTY: Headers<'static> = Headers { encoded: b"" };

    /// Iterates `(name, value)` pairs in wire order.
    pub fn iter(&self) -> HeaderIter<'a> {
        HeaderIter { rest: self.encoded }
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.encoded.is_empty()
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Values of every field named `name` (ASCII case-insensitive), in order.
    pub fn get_all<'n>(&self, name: &'n [u8]) -> impl Iterator<Item = &'a [u8]> + 'n
    where
        'a: 'n,
    {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Value of the first field named `name` (ASCII case-insensitive).
    pub fn get(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// Iterator over [`Headers`].
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        // The loader checked that every item is a list of two strings, so framing is all that
        // is left to do (three length prefixes, no tags).
        let pair = payload_accepted(self.rest).and_then(|(pair, used)| {
            let (name, name_used) = payload_accepted(pair)?;
            let (value, _) = payload_accepted(pair.get(name_used..)?)?;
            Some((name, value, used))
        });
        match pair {
            Some((name, value, used)) => {
                self.rest = &self.rest[used..];
                Some((name, value))
            }
            None => {
                self.rest = &[];
                None
            }
        }
    }
}

/// Reads one `[name, value]` pair; `None` when it does not have that shape.
pub(crate) fn header_pair<'a>(pair: &Value<'a>) -> Option<(&'a [u8], &'a [u8])> {
    if pair.tag != Tag::List {
        return None;
    }
    let mut items = pair.items();
    let name = items.next()?.ok()?.as_bytes()?;
    let value = items.next()?.ok()?.as_bytes()?;
    if items.next().is_some() {
        return None;
    }
    Some((name, value))
}
