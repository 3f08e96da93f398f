//! Response heads (spec §f): the head bytes exactly as mitmproxy sends them to an HTTP/1 client,
//! the body as a slice of the recording, the framing and keep-alive facts (spec §d for dates).
//!
//! Most heads are rendered at serve time straight from the recorded fields into the caller's
//! buffer ([`write_head`]): the status line, each field, and each `Date`/`Expires`/`Last-Modified`
//! shifted, all without allocating; the only per-flow state kept at load for them is the
//! response's start time and its first date field, parsed ([`FirstDate`]). Heads that need
//! more than that (a `Set-Cookie` that refresh re-serialises, or a date header repeated) are
//! pre-rendered at load ([`Templates`]) with patch sites where refresh overwrites a 29-byte
//! date; their dates are normalised to IMF-fixdate at load, which is what mitmproxy writes back on
//! every refresh anyway.
#![forbid(unsafe_code)]

use std::io::Write as _;

use super::cookie::{prepare_set_cookie, CookieField};
use super::date::{
    formattable, parse_lenient, shift, write_imf_fixdate, write_imf_fixdate_cached, IMF_FIXDATE_LEN,
};
use crate::flowfile::{Recording, ResponseView, Span};

/// A place in a head where a refreshed date goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchSite {
    /// Offset of the 29-byte IMF-fixdate inside the head.
    pub pos: u32,
    /// For a cookie expiry, the index of its field's [`CookieFallback`]; [`NO_FALLBACK`] for the
    /// `Date`, `Expires` and `Last-Modified` headers.
    pub fallback: u32,
    /// The recorded instant (seconds since the Unix epoch) written there at load.
    pub epoch: i64,
}

/// [`PatchSite::fallback`] of a header date.
pub const NO_FALLBACK: u32 = u32::MAX;

/// A re-serialised `Set-Cookie` value and the recorded value to send instead when one of its
/// expiry dates cannot be shifted (mitmproxy then keeps the whole field as recorded, spec §d.3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieFallback {
    /// Start of the re-serialised value in the head.
    pub start: u32,
    /// End of the re-serialised value in the head.
    pub end: u32,
    /// The value as recorded.
    pub original: Span,
}

/// Body framing decided at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// The body bytes follow the head as they are.
    Plain,
    /// `Transfer-Encoding: chunked`: a non-empty body goes out as one chunk (its size line ends
    /// the head), then the terminator (spec §f.2).
    Chunked,
    /// The body was not stored (`null`): only the head is sent.
    NoBody,
}

/// What is known about one flow's response, fixed at load.
#[derive(Debug, Clone, Copy)]
pub struct Template {
    /// Where the head (status line, fields, blank line, and chunk size line if any) starts in
    /// the head arena.
    head_start: usize,
    /// Length of the head up to and including the blank line.
    head_len: u32,
    /// Length of the chunk size line that follows (0 unless chunked with a non-empty body).
    chunk_line_len: u8,
    /// First patch site in the patch arena.
    patch_start: u32,
    /// Number of patch sites.
    patch_count: u32,
    /// How the body is framed.
    pub framing: Framing,
    /// Spec §f.5 rule 1 for non-HEAD requests: the body is delimited by closing the connection.
    pub body_until_close: bool,
    /// Spec §f.5 rule 3: the recorded response asks to close the connection.
    pub response_close: bool,
    /// A `Connection` field of the head says `keep-alive`.
    pub says_keep_alive: bool,
    /// The body in the recording (`None` for an empty or missing body).
    pub body: Option<Span>,
    /// `timestamp_start` of the recorded response; the refresh shift is `now` minus this.
    pub timestamp_start: f64,
}

/// The pre-rendered templates of the flows that need one, in flat arenas.
#[derive(Debug, Default)]
pub struct Templates {
    /// Heads of all flows, back to back.
    heads: Vec<u8>,
    /// Patch sites of all flows, back to back.
    patches: Vec<PatchSite>,
    /// Recorded values of the cookie fields that have patch sites.
    fallbacks: Vec<CookieFallback>,
    /// `(flow id, template)` of the pre-rendered flows, by flow id.
    entries: Vec<(u32, Template)>,
}

/// mitmproxy 12's reason phrase of a status (the table lives with the flow writer).
pub use crate::flowfile::writer::reason_phrase;

/// What the framing and keep-alive rules need from a response's fields, gathered in the same
/// pass that writes them.
#[derive(Debug, Default, Clone, Copy)]
struct FieldFacts {
    /// Some `Transfer-Encoding` value contains `chunked` (any case): the body is re-chunked.
    chunked: bool,
    /// The last `Transfer-Encoding` token is `chunked` (any case).
    chunked_last: bool,
    /// A `Content-Length` field is present.
    has_length: bool,
    /// A `Connection` token is `close` (tokens compare case-sensitively, as mitmproxy does).
    connection_close: bool,
    /// A `Connection` token is `keep-alive`.
    connection_keep_alive: bool,
}

impl FieldFacts {
    /// Takes one field.
    fn add(&mut self, name: &[u8], value: &[u8]) {
        let tokens = || value.split(|&b| b == b',').map(<[u8]>::trim_ascii);
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.chunked |= super::form::contains_ignore_case(value, b"chunked");
            self.chunked_last = tokens()
                .next_back()
                .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"content-length") {
            self.has_length = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for t in tokens() {
                self.connection_close |= t == b"close";
                self.connection_keep_alive |= t == b"keep-alive";
            }
        }
    }

    /// The shape of `response`, whose fields were all added.
    fn shape<'a>(&self, response: &ResponseView<'a>) -> Shape<'a> {
        let framing = match response.content {
            None => Framing::NoBody,
            Some(_) if self.chunked => Framing::Chunked,
            Some(_) => Framing::Plain,
        };
        // Spec §f.5 rule 3: `close` token → close; else `keep-alive` → keep; else close unless
        // the version is HTTP/1.1 or HTTP/2.0.
        let response_close = crate::http1::keep_alive::message_closes(
            matches!(response.http_version, b"HTTP/1.1" | b"HTTP/2.0"),
            self.connection_close,
            self.connection_keep_alive,
        );
        // Spec §f.5 rule 1 (for a non-HEAD request): no chunked final coding, no
        // Content-Length, and a status that has a body.
        let status = response.status_code;
        let no_body_status = (100..200).contains(&status) || status == 204 || status == 304;
        let body_until_close = !(no_body_status || self.chunked_last || self.has_length);
        Shape {
            framing,
            body_until_close,
            response_close,
            says_keep_alive: self.connection_keep_alive,
            body: response.content.filter(|b| !b.is_empty()),
        }
    }
}

/// Whether a field name is one of the three refreshed date headers (spec §d.2).
fn date_header(name: &[u8]) -> Option<usize> {
    [&b"date"[..], b"expires", b"last-modified"]
        .iter()
        .position(|n| name.eq_ignore_ascii_case(n))
}

/// Whether the head of `response` must be pre-rendered at load: with refresh, a `Set-Cookie`
/// field that refresh re-serialises, or a `Date`/`Expires`/`Last-Modified` field given more than
/// once; with `keep_alive`, a response whose recording asks to close ([`overrides_close`]). Every
/// other head is rendered at serve time by [`write_head`].
pub fn needs_template(response: &ResponseView<'_>, refresh: bool, keep_alive: bool) -> bool {
    if keep_alive && overrides_close(&shape(response)) {
        return true;
    }
    if !refresh {
        return false;
    }
    let mut seen = [false; 3];
    for (name, value) in response.headers.iter() {
        if let Some(which) = date_header(name) {
            if seen[which] {
                return true;
            }
            seen[which] = true;
        } else if name.eq_ignore_ascii_case(b"set-cookie")
            && matches!(prepare_set_cookie(value), CookieField::Rewritten { .. })
        {
            return true;
        }
    }
    false
}

/// Whether `--keep-alive` changes a response of this shape: its recording asks to close (spec
/// §f.5 rule 3) and its body is not delimited by the close (rule 1, which still closes: without
/// the close the client could not tell where the body ends).
pub fn overrides_close(shape: &Shape<'_>) -> bool {
    shape.response_close && !shape.body_until_close
}

/// Whether the status line [`write_status_line`] writes for `response` says HTTP/1.1 (HTTP/2
/// and HTTP/3 recordings go out as HTTP/1.1).
fn sent_as_http11(response: &ResponseView<'_>) -> bool {
    matches!(response.http_version, b"HTTP/1.1" | b"HTTP/2.0" | b"HTTP/3")
}

/// Writes the status line (spec §f.1).
fn write_status_line(out: &mut Vec<u8>, response: &ResponseView<'_>) {
    let over_h2 = matches!(response.http_version, b"HTTP/2.0" | b"HTTP/3");
    if over_h2 {
        out.extend_from_slice(b"HTTP/1.1");
    } else {
        out.extend_from_slice(response.http_version);
    }
    out.push(b' ');
    let status = response.status_code;
    if status >= 1000 {
        // Not reached: the loader accepts 100–999 only.
        let _ = write!(out, "{status}");
    } else {
        out.extend_from_slice(&[
            b'0' + (status / 100) as u8,
            b'0' + (status / 10 % 10) as u8,
            b'0' + (status % 10) as u8,
        ]);
    }
    out.push(b' ');
    if over_h2 {
        out.extend_from_slice(reason_phrase(status).as_bytes());
    } else {
        out.extend_from_slice(response.reason);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends the head of a response for which [`needs_template`] is false, through the blank line,
/// and returns the response's [`Shape`];
/// with its dates shifted by `refresh_delta` seconds when that is given (spec §d.2: a date that
/// parses is written as IMF-fixdate, shifted unless the shift leaves years 1–9999). Allocates
/// nothing beyond `out`'s own growth.
pub fn write_head<'a>(
    out: &mut Vec<u8>,
    response: &ResponseView<'a>,
    refresh_delta: Option<f64>,
    first_date: FirstDate,
) -> Shape<'a> {
    let mut facts = FieldFacts::default();
    write_fields(out, response, refresh_delta, first_date, |name, value| {
        facts.add(name, value)
    });
    facts.shape(response)
}

/// [`write_head`] for a response whose [`ShapeBits`] were noted at load: the fields are written
/// without being looked at for framing and keep-alive.
pub fn write_head_shaped<'a>(
    out: &mut Vec<u8>,
    response: &ResponseView<'a>,
    refresh_delta: Option<f64>,
    first_date: FirstDate,
    shape: ShapeBits,
) -> Shape<'a> {
    write_fields(out, response, refresh_delta, first_date, |_, _| {});
    shape.shape(response)
}

/// The status line and fields of [`write_head`], each field shown to `on_field` as recorded.
#[inline(always)]
fn write_fields(
    out: &mut Vec<u8>,
    response: &ResponseView<'_>,
    refresh_delta: Option<f64>,
    mut first_date: FirstDate,
    mut on_field: impl FnMut(&[u8], &[u8]),
) {
    write_status_line(out, response);
    for (name, value) in response.headers.iter() {
        on_field(name, value);
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        if let Some(delta) = refresh_delta.filter(|_| date_header(name).is_some()) {
            let epoch = match std::mem::replace(&mut first_date, FirstDate::Unknown) {
                FirstDate::Epoch(epoch) => Some(epoch),
                FirstDate::NotADate => None,
                FirstDate::Unknown => parse_lenient(value).filter(|&e| formattable(e)),
            };
            if let Some(epoch) = epoch {
                let mut date = [0; IMF_FIXDATE_LEN];
                // A shift out of years 1–9999 keeps the recorded date (normalised).
                if !write_imf_fixdate_cached(shift(epoch, delta), &mut date) {
                    write_imf_fixdate(epoch, &mut date);
                }
                out.extend_from_slice(&date);
                out.extend_from_slice(b"\r\n");
                continue;
            }
        }
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The first `Date`, `Expires` or `Last-Modified` field of a response as read at load, so that
/// [`write_head`] need not parse it on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstDate {
    /// Not known: parsed when written (no such field, or not kept at load).
    Unknown,
    /// The field does not hold a date refresh can shift: it goes out as recorded.
    NotADate,
    /// The field's instant (seconds since the Unix epoch), within years 1–9999.
    Epoch(i64),
}

/// The [`FirstDate`] of `response`.
pub fn first_date(response: &ResponseView<'_>) -> FirstDate {
    match response
        .headers
        .iter()
        .find(|(name, _)| date_header(name).is_some())
    {
        None => FirstDate::Unknown,
        Some((_, value)) => match parse_lenient(value).filter(|&e| formattable(e)) {
            Some(epoch) => FirstDate::Epoch(epoch),
            None => FirstDate::NotADate,
        },
    }
}

/// Appends the chunk size line of a one-chunk body of `len` bytes.
pub fn write_chunk_line(out: &mut Vec<u8>, len: usize) {
    let _ = write!(out, "{len:x}\r\n");
}

/// How a response's body goes out, derived from its recorded fields (spec §f.2, §f.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape<'a> {
    /// How the body is framed.
    pub framing: Framing,
    /// Spec §f.5 rule 1 for non-HEAD requests.
    pub body_until_close: bool,
    /// Spec §f.5 rule 3.
    pub response_close: bool,
    /// A `Connection` field of the head says `keep-alive` (case-sensitive, like rule 3).
    pub says_keep_alive: bool,
    /// The body (`None` when empty or missing).
    pub body: Option<&'a [u8]>,
}

/// What a response's [`Shape`] takes from its fields, in one byte noted at load (so serving
/// does not look at the fields for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShapeBits(u8);

impl ShapeBits {
    /// Framing, bits 0–1 (0 plain, 1 chunked, 2 no body).
    const FRAMING: u8 = 0b11;
    /// [`Shape::body_until_close`].
    const UNTIL_CLOSE: u8 = 1 << 2;
    /// [`Shape::response_close`].
    const CLOSE: u8 = 1 << 3;
    /// [`Shape::says_keep_alive`].
    const KEEP_ALIVE: u8 = 1 << 4;

    /// The bits of a shape.
    pub fn of(shape: &Shape<'_>) -> ShapeBits {
        let framing = match shape.framing {
            Framing::Plain => 0,
            Framing::Chunked => 1,
            Framing::NoBody => 2,
        };
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        ShapeBits(
            framing
                | flag(shape.body_until_close, ShapeBits::UNTIL_CLOSE)
                | flag(shape.response_close, ShapeBits::CLOSE)
                | flag(shape.says_keep_alive, ShapeBits::KEEP_ALIVE),
        )
    }

    /// The byte, to store.
    pub fn to_byte(self) -> u8 {
        self.0
    }

    /// Bits from a byte [`ShapeBits::to_byte`] gave.
    pub fn from_byte(byte: u8) -> ShapeBits {
        ShapeBits(byte)
    }

    /// The shape of `response`, whose bits these are.
    pub fn shape<'a>(self, response: &ResponseView<'a>) -> Shape<'a> {
        Shape {
            framing: match self.0 & ShapeBits::FRAMING {
                0 => Framing::Plain,
                1 => Framing::Chunked,
                _ => Framing::NoBody,
            },
            body_until_close: self.0 & ShapeBits::UNTIL_CLOSE != 0,
            response_close: self.0 & ShapeBits::CLOSE != 0,
            says_keep_alive: self.0 & ShapeBits::KEEP_ALIVE != 0,
            body: response.content.filter(|b| !b.is_empty()),
        }
    }
}

/// The shape of `response`.
pub fn shape<'a>(response: &ResponseView<'a>) -> Shape<'a> {
    let mut facts = FieldFacts::default();
    for (name, value) in response.headers.iter() {
        facts.add(name, value);
    }
    facts.shape(response)
}

impl Templates {
    /// No templates.
    pub fn new() -> Templates {
        Templates::default()
    }

    /// Renders flow `id`'s `response` (ids must come in ascending order); with `refresh`, dates
    /// are normalised and patch sites recorded, otherwise the head is the stored fields verbatim.
    /// With `keep_alive`, a response that [`overrides_close`] loses its `Connection` fields (an
    /// HTTP/1.0 one gets `Connection: keep-alive` instead, which an HTTP/1.0 client needs to keep
    /// the connection) and does not close.
    pub fn add(
        &mut self,
        recording: &Recording,
        id: u32,
        response: &ResponseView<'_>,
        refresh: bool,
        keep_alive: bool,
    ) {
        let template = self.render(recording, response, refresh, keep_alive);
        self.entries.push((id, template));
    }

    /// Renders every flow of `recording` (tests and tools; the replayer renders only the flows
    /// that [`needs_template`]).
    pub fn build(recording: &Recording, refresh: bool) -> Templates {
        let mut templates = Templates::new();
        for flow in recording.flows() {
            if let Some(response) = flow.response {
                templates.add(recording, flow.id as u32, &response, refresh, false);
            }
        }
        templates.shrink();
        templates
    }

    /// Gives back spare capacity.
    pub fn shrink(&mut self) {
        self.heads.shrink_to_fit();
        self.patches.shrink_to_fit();
        self.fallbacks.shrink_to_fit();
        self.entries.shrink_to_fit();
    }

    fn render(
        &mut self,
        recording: &Recording,
        response: &ResponseView<'_>,
        refresh: bool,
        keep_alive: bool,
    ) -> Template {
        let shaped = shape(response);
        let keep_open = keep_alive && overrides_close(&shaped);
        let Shape {
            framing,
            body_until_close,
            mut response_close,
            mut says_keep_alive,
            body,
        } = shaped;
        let head_start = self.heads.len();
        let patch_start = self.patches.len();
        let out = &mut self.heads;
        write_status_line(out, response);

        // §d.2: for each date header whose (joined) value parses, the first field gets the
        // normalised date and the others are dropped.
        let mut date_epochs: [Option<i64>; 3] = [None; 3];
        if refresh {
            for (which, epoch) in date_epochs.iter_mut().enumerate() {
                let mut joined = Vec::new();
                for (name, value) in response.headers.iter() {
                    if date_header(name) == Some(which) {
                        if !joined.is_empty() {
                            joined.extend_from_slice(b", ");
                        }
                        joined.extend_from_slice(value);
                    }
                }
                let mut probe = [0; IMF_FIXDATE_LEN];
                *epoch = parse_lenient(&joined).filter(|&e| write_imf_fixdate(e, &mut probe));
            }
        }
        let mut written = [false; 3];
        for (name, value) in response.headers.iter() {
            if keep_open && name.eq_ignore_ascii_case(b"connection") {
                continue;
            }
            let date = date_header(name).filter(|&w| date_epochs[w].is_some());
            if let Some(which) = date {
                if written[which] {
                    continue;
                }
                written[which] = true;
                let epoch = date_epochs[which].expect("invariant: filtered on is_some");
                out.extend_from_slice(name);
                out.extend_from_slice(b": ");
                let mut buf = [0; IMF_FIXDATE_LEN];
                write_imf_fixdate(epoch, &mut buf);
                self.patches.push(PatchSite {
                    pos: (out.len() - head_start) as u32,
                    fallback: NO_FALLBACK,
                    epoch,
                });
                out.extend_from_slice(&buf);
                out.extend_from_slice(b"\r\n");
                continue;
            }
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            if refresh && name.eq_ignore_ascii_case(b"set-cookie") {
                if let CookieField::Rewritten {
                    value: rewritten,
                    dates,
                } = prepare_set_cookie(value)
                {
                    let base = out.len() - head_start;
                    let fallback = match recording.span_of(value) {
                        Some(original) if !dates.is_empty() => {
                            self.fallbacks.push(CookieFallback {
                                start: base as u32,
                                end: (base + rewritten.len()) as u32,
                                original,
                            });
                            (self.fallbacks.len() - 1) as u32
                        }
                        _ => NO_FALLBACK,
                    };
                    for (pos, epoch) in dates {
                        self.patches.push(PatchSite {
                            pos: (base + pos) as u32,
                            fallback,
                            epoch,
                        });
                    }
                    let value = rewritten;
                    out.extend_from_slice(&value);
                    out.extend_from_slice(b"\r\n");
                    continue;
                }
            }
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        if keep_open {
            says_keep_alive = !sent_as_http11(response);
            if says_keep_alive {
                out.extend_from_slice(b"Connection: keep-alive\r\n");
            }
            response_close = false;
        }
        out.extend_from_slice(b"\r\n");
        let head_len = (out.len() - head_start) as u32;

        let mut chunk_line_len = 0;
        if let (Framing::Chunked, Some(b)) = (framing, body) {
            let before = out.len();
            write_chunk_line(out, b.len());
            chunk_line_len = (out.len() - before) as u8;
        }
        Template {
            head_start,
            head_len,
            chunk_line_len,
            patch_start: patch_start as u32,
            patch_count: (self.patches.len() - patch_start) as u32,
            framing,
            body_until_close,
            response_close,
            says_keep_alive,
            body: body.and_then(|b| recording.span_of(b)),
            timestamp_start: response.timestamp_start,
        }
    }

    /// The template of flow `id`, or `None` when it has none (no response, or rendered at
    /// serve time).
    pub fn get(&self, id: usize) -> Option<&Template> {
        if self.entries.is_empty() {
            return None;
        }
        let at = self
            .entries
            .binary_search_by_key(&id, |&(flow, _)| flow as usize)
            .ok()?;
        Some(&self.entries[at].1)
    }

    /// The head (through the blank line) of a template.
    pub fn head(&self, t: &Template) -> &[u8] {
        &self.heads[t.head_start..t.head_start + t.head_len as usize]
    }

    /// The chunk size line that follows the head (empty unless chunked with a body).
    pub fn chunk_line(&self, t: &Template) -> &[u8] {
        let start = t.head_start + t.head_len as usize;
        &self.heads[start..start + usize::from(t.chunk_line_len)]
    }

    /// The patch sites of a template.
    pub fn patches(&self, t: &Template) -> &[PatchSite] {
        let start = t.patch_start as usize;
        &self.patches[start..start + t.patch_count as usize]
    }

    /// The cookie fallback a patch site refers to.
    pub fn fallback(&self, site: &PatchSite) -> Option<&CookieFallback> {
        self.fallbacks.get(site.fallback as usize)
    }

    /// Heap bytes held by the templates.
    pub fn heap_bytes(&self) -> usize {
        self.heads.capacity()
            + self.fallbacks.capacity() * std::mem::size_of::<CookieFallback>()
            + self.patches.capacity() * std::mem::size_of::<PatchSite>()
            + self.entries.capacity() * std::mem::size_of::<(u32, Template)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flowfile::Headers;

    #[test]
    fn shape_bits_keep_every_shape() {
        let response = ResponseView {
            http_version: b"HTTP/1.1",
            status_code: 200,
            reason: b"OK",
            headers: Headers::EMPTY,
            content: Some(b"body"),
            trailers: None,
            timestamp_start: 0.0,
            timestamp_end: None,
        };
        for framing in [Framing::Plain, Framing::Chunked, Framing::NoBody] {
            for bits in 0..8u8 {
                let shape = Shape {
                    framing,
                    body_until_close: bits & 1 != 0,
                    response_close: bits & 2 != 0,
                    says_keep_alive: bits & 4 != 0,
                    body: Some(b"body"),
                };
                let stored = ShapeBits::from_byte(ShapeBits::of(&shape).to_byte());
                assert_eq!(stored.shape(&response), shape);
            }
        }
    }
}
