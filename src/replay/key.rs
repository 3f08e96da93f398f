//! The match key: the one definition of "same request" (spec §b), mitmproxy's rule exactly.
//!
//! mitmproxy prints a list (scheme, method, path, body or form fields, host, port, query pairs,
//! header values) and hashes it with SHA-256. We describe the same list as a short sequence of
//! [`Item`]s that borrow from the request, and define its *canonical bytes*: a prefix-free
//! encoding (lengths before raw bytes, tags before variants and list elements, decoded text ended
//! by `0xFF`). Two requests have equal mitmproxy keys exactly when their canonical bytes are equal.
//! [`hash`] streams those bytes into a seeded 8-bytes-at-a-time hash and [`equals_chunks`] compares
//! them with a key kept at load. For a live request ([`RequestKey`]) the items are produced on the
//! fly and turned into bytes as they come, so neither builds an owned key or allocates.
#![forbid(unsafe_code)]

use smallvec::SmallVec;

use super::form;
use super::text::{is_plain, Decoder, TextMode};
use crate::config::ReplayOptions;
use crate::flowfile::{Headers, RequestView};

/// The key options, prepared once (spec §a.1).
#[derive(Debug, Clone, Default)]
pub struct KeyOptions {
    /// `use_headers`: names whose folded values are part of the key, in this order.
    pub use_headers: Vec<Vec<u8>>,
    /// `ignore_content`: no body in the key.
    pub ignore_content: bool,
    /// `ignore_params`: decoded query names left out.
    pub ignore_params: Vec<Vec<u8>>,
    /// `ignore_payload_params`: form field names left out; non-empty switches to form matching.
    pub ignore_payload_params: Vec<Vec<u8>>,
    /// `ignore_host`: no host in the key.
    pub ignore_host: bool,
    /// `ignore_port`: no port in the key.
    pub ignore_port: bool,
}

impl KeyOptions {
    /// The key part of the replay options.
    pub fn from_options(options: &ReplayOptions) -> KeyOptions {
        let bytes = |v: &[String]| v.iter().map(|s| s.as_bytes().to_vec()).collect();
        KeyOptions {
            use_headers: bytes(&options.use_headers),
            ignore_content: options.ignore_content,
            ignore_params: bytes(&options.ignore_params),
            ignore_payload_params: bytes(&options.ignore_payload_params),
            ignore_host: options.ignore_host,
            ignore_port: options.ignore_port,
        }
    }
}

/// Header fields of a request, live (httparse) or recorded.
#[derive(Debug, Clone, Copy)]
pub enum HeaderFields<'a> {
    /// Fields parsed from a live request.
    Live(&'a [httparse::Header<'a>]),
    /// Fields of a recorded request.
    Recorded(Headers<'a>),
}

impl<'a> HeaderFields<'a> {
    /// Values of every field named `name` (ASCII case-insensitive), in order.
    pub fn values<'n>(self, name: &'n [u8]) -> impl Iterator<Item = &'a [u8]> + 'n
    where
        'a: 'n,
    {
        let (live, recorded) = match self {
            HeaderFields::Live(h) => (Some(h.iter()), None),
            HeaderFields::Recorded(h) => (None, Some(h.iter())),
        };
        live.into_iter()
            .flatten()
            .map(|h| (h.name.as_bytes(), h.value))
            .chain(recorded.into_iter().flatten())
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The first value of `name`.
    pub fn first(self, name: &[u8]) -> Option<&'a [u8]> {
        self.values(name).next()
    }
}

/// The host component of a key: one value, or every `Host` field joined with `", "`.
#[derive(Debug, Clone, Copy)]
pub enum KeyHost<'a> {
    /// The host as one byte string.
    Single(&'a [u8]),
    /// Several `Host` fields of a recorded request, joined with `", "` (used whole, spec §b.5).
    Joined(HeaderFields<'a>),
}

/// The parts of a request the key looks at.
#[derive(Debug, Clone, Copy)]
pub struct KeyRequest<'a> {
    /// `http` / `https`.
    pub scheme: &'a [u8],
    /// Method as sent (upper-cased by the key).
    pub method: &'a [u8],
    /// Origin-form request target with query (and fragment, if any).
    pub target: &'a [u8],
    /// Pretty host (spec §b.5).
    pub host: KeyHost<'a>,
    /// Destination port.
    pub port: u16,
    /// Header fields.
    pub headers: HeaderFields<'a>,
    /// Body; `None` for a recorded body that was not stored.
    pub body: Option<&'a [u8]>,
}

impl<'a> KeyRequest<'a> {
    /// The key view of a recorded request (pretty host per spec §b.5).
    pub fn recorded(request: &RequestView<'a>) -> KeyRequest<'a> {
        let headers = HeaderFields::Recorded(request.headers);
        // mitmproxy's `is_http2`/`is_http3`: HAR's `HTTP/2` does not count.
        let over_h2 = matches!(request.http_version, b"HTTP/2.0" | b"HTTP/3");
        let host = if over_h2 && !request.authority.is_empty() {
            KeyHost::Single(pretty_host(request.authority))
        } else {
            // Straight over the recorded fields (not through `HeaderFields::values`, which
            // chains the live and recorded cases): this runs on every lookup.
            let mut hosts = request.headers.get_all(b"host");
            match (hosts.next(), hosts.next()) {
                (Some(one), None) if !one.is_empty() => KeyHost::Single(pretty_host(one)),
                (Some(_), Some(_)) => KeyHost::Joined(headers),
                _ => KeyHost::Single(request.host),
            }
        };
        KeyRequest {
            scheme: request.scheme,
            method: request.method,
            target: request.path,
            host,
            port: request.port,
            headers,
            body: request.content,
        }
    }
}

/// The host part of a `Host` (or `:authority`) value as mitmproxy's pretty host takes it
/// (spec §b.5): `host[:port]` or `[v6][:port]` without the port and brackets, when the host is a
/// valid DNS name or IP address; otherwise the whole value unchanged. Case is preserved.
pub fn pretty_host(value: &[u8]) -> &[u8] {
    let (host, bracketed) = if value.first() == Some(&b'[') {
        let end = match value.iter().rposition(|&b| b == b']') {
            Some(end) => end,
            None => return value,
        };
        let rest = &value[end + 1..];
        let port_ok = rest.is_empty()
            || (rest[0] == b':' && rest.len() > 1 && rest[1..].iter().all(u8::is_ascii_digit));
        if !port_ok || end < 2 {
            return value;
        }
        (&value[1..end], true)
    } else {
        match value.iter().position(|&b| b == b':') {
            None => (value, false),
            Some(i) => {
                let port = &value[i + 1..];
                if i == 0 || port.is_empty() || !port.iter().all(u8::is_ascii_digit) {
                    return value;
                }
                (&value[..i], false)
            }
        }
    };
    let valid = if bracketed {
        std::str::from_utf8(host)
            .ok()
            .and_then(|s| s.parse::<std::net::Ipv6Addr>().ok())
            .is_some()
    } else {
        is_dns_name(host)
            || std::str::from_utf8(host)
                .ok()
                .and_then(|s| s.parse::<std::net::IpAddr>().ok())
                .is_some()
    };
    if valid {
        host
    } else {
        value
    }
}

/// Labels of letters, digits, `-`, `_` (1–63 each), at most 255 bytes, one trailing dot allowed.
fn is_dns_name(host: &[u8]) -> bool {
    if host.len() > 255 {
        return false;
    }
    let host = host.strip_suffix(b".").unwrap_or(host);
    host.split(|&b| b == b'.').all(|label| {
        (1..=63).contains(&label.len())
            && label
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// The path proper of a request target (spec §b.3): no query, no fragment, no `;params` of the
/// last segment, no decoding.
pub fn path_proper(target: &[u8]) -> &[u8] {
    let end = target
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(target.len());
    let mut path = &target[..end];
    // mitmproxy splits `scheme://host:port` + target: text before the first `/` joins the authority.
    match path.iter().position(|&b| b == b'/') {
        Some(i) => path = &path[i..],
        None => return b"",
    }
    let last_segment = path.iter().rposition(|&b| b == b'/').unwrap_or(0);
    if let Some(i) = path[last_segment..].iter().position(|&b| b == b';') {
        path = &path[..last_segment + i];
    }
    path
}

/// The query of a request target: after the first `?`, before the first `#` (empty if none).
pub fn query_of(target: &[u8]) -> &[u8] {
    let Some(q) = target.iter().position(|&b| b == b'?') else {
        return b"";
    };
    let fragment = target.iter().position(|&b| b == b'#');
    if fragment.is_some_and(|f| f < q) {
        return b"";
    }
    let query = &target[q + 1..];
    match query.iter().position(|&b| b == b'#') {
        Some(f) => &query[..f],
        None => query,
    }
}

/// `name=value` pairs of a query or urlencoded text: split on `&`, empty pieces skipped, a piece
/// without `=` has the value `""`.
pub fn pairs(text: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    text.split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.iter().position(|&b| b == b'=') {
            Some(i) => (&p[..i], &p[i + 1..]),
            None => (p, &b""[..]),
        })
}

/// One element of a key's canonical encoding.
#[derive(Debug, Clone, Copy)]
pub enum Item<'a> {
    /// A one-byte tag (variant or list marker).
    Tag(u8),
    /// A number written as 8 bytes (lengths of the raw bytes that follow, ports).
    Len(u64),
    /// Raw bytes, compared exactly.
    Bytes(&'a [u8]),
    /// Bytes compared after ASCII upper-casing (the method).
    Upper(&'a [u8]),
    /// Percent-decoded text (spec §b.7), followed by the `0xFF` end mark.
    Text(&'a [u8], TextMode),
}

/// The inline capacity of an item list: enough for a request with a dozen query parameters and a
/// few `use_headers` before a list would spill to the heap.
pub const INLINE_ITEMS: usize = 64;

/// A key as a list of items borrowing from its request.
pub type Items<'a> = SmallVec<[Item<'a>; INLINE_ITEMS]>;

/// List markers: an element follows / the list ends.
const MORE: u8 = 1;
const END: u8 = 0;
/// Body variants.
const BODY_RAW: u8 = b'R';
const BODY_NULL: u8 = b'N';
const BODY_FORM: u8 = b'F';
/// Form field variants (spec §b.4: bytes pairs never equal text pairs, but empty forms are equal).
const FIELD_BYTES: u8 = b'b';
const FIELD_TEXT: u8 = b't';
/// Header presence.
const ABSENT: u8 = b'a';
const PRESENT: u8 = b'p';

/// Receives key items one by one.
pub trait ItemSink<'a> {
    /// Takes the next item.
    fn push(&mut self, item: Item<'a>);
}

impl<'a> ItemSink<'a> for Items<'a> {
    fn push(&mut self, item: Item<'a>) {
        SmallVec::push(self, item);
    }
}

/// Collects up to [`INLINE_ITEMS`] items on the stack; remembers when there were more.
#[derive(Debug)]
pub struct ItemArray<'a> {
    /// The items collected so far.
    items: [Item<'a>; INLINE_ITEMS],
    /// How many of `items` are filled.
    len: usize,
    /// More items came than fit.
    overflow: bool,
}

impl<'a> ItemArray<'a> {
    /// An empty array.
    pub fn new() -> ItemArray<'a> {
        ItemArray {
            items: [Item::Tag(0); INLINE_ITEMS],
            len: 0,
            overflow: false,
        }
    }

    /// The items, or `None` if they did not all fit.
    pub fn as_slice(&self) -> Option<&[Item<'a>]> {
        (!self.overflow).then(|| &self.items[..self.len])
    }
}

impl Default for ItemArray<'_> {
    fn default() -> Self {
        ItemArray::new()
    }
}

impl<'a> ItemSink<'a> for ItemArray<'a> {
    fn push(&mut self, item: Item<'a>) {
        match self.items.get_mut(self.len) {
            Some(slot) => {
                *slot = item;
                self.len += 1;
            }
            None => self.overflow = true,
        }
    }
}

/// Turns items into canonical bytes for a byte sink as they are produced.
struct EmitItems<F> {
    sink: F,
    /// False once the sink asked to stop.
    more: bool,
}

impl<'a, F: FnMut(&[u8]) -> bool> ItemSink<'a> for EmitItems<F> {
    // Inlined into `items`, where each item's variant is known: no dispatch per item.
    #[inline(always)]
    fn push(&mut self, item: Item<'a>) {
        if self.more {
            self.more = emit_item(item, &mut self.sink);
        }
    }
}

/// Something whose canonical key bytes can be produced: a stored item list, or a request with
/// options (whose items are produced on the fly, so nothing is collected or allocated).
pub trait Canonical {
    /// Feeds the canonical bytes to `sink` piece by piece; stops and returns `false` as soon as
    /// `sink` returns `false`.
    fn emit(&self, sink: impl FnMut(&[u8]) -> bool) -> bool;
}

impl Canonical for [Item<'_>] {
    fn emit(&self, mut sink: impl FnMut(&[u8]) -> bool) -> bool {
        self.iter().all(|&item| emit_item(item, &mut sink))
    }
}

/// A request's key under some options.
#[derive(Debug, Clone, Copy)]
pub struct RequestKey<'r, 'a> {
    /// The request.
    pub request: &'r KeyRequest<'a>,
    /// The key options.
    pub options: &'r KeyOptions,
}

impl Canonical for RequestKey<'_, '_> {
    fn emit(&self, sink: impl FnMut(&[u8]) -> bool) -> bool {
        let mut out = EmitItems { sink, more: true };
        items(self.request, self.options, &mut out);
        out.more
    }
}

/// Builds the key items of `request` under `options` (spec §b.3, in mitmproxy's order).
pub fn items<'a>(request: &KeyRequest<'a>, options: &KeyOptions, out: &mut impl ItemSink<'a>) {
    out.push(Item::Len(request.scheme.len() as u64));
    out.push(Item::Bytes(request.scheme));
    out.push(Item::Len(request.method.len() as u64));
    out.push(Item::Upper(request.method));
    let path = path_proper(request.target);
    out.push(Item::Len(path.len() as u64));
    out.push(Item::Bytes(path));
    if !options.ignore_content {
        body_items(request, options, out);
    }
    if !options.ignore_host {
        host_items(request, out);
    }
    if !options.ignore_port {
        out.push(Item::Len(u64::from(request.port)));
    }
    query_items(request, options, out);
    header_items(request, options, out);
}

/// The host part of a key (spec §b.5); [`items`] puts it after the body.
#[inline]
pub fn host_items<'a>(request: &KeyRequest<'a>, out: &mut impl ItemSink<'a>) {
    match request.host {
        KeyHost::Single(h) => {
            out.push(Item::Len(h.len() as u64));
            out.push(Item::Bytes(h));
        }
        KeyHost::Joined(fields) => folded_items(fields, b"host", out),
    }
}

/// The query part of a key: the pairs not ignored, decoded, then the end mark.
#[inline]
pub fn query_items<'a>(
    request: &KeyRequest<'a>,
    options: &KeyOptions,
    out: &mut impl ItemSink<'a>,
) {
    for (name, value) in pairs(query_of(request.target)) {
        let ignored = options
            .ignore_params
            .iter()
            .any(|p| super::text::decodes_to(name, TextMode::Query, p));
        if !ignored {
            out.push(Item::Tag(MORE));
            out.push(Item::Text(name, TextMode::Query));
            out.push(Item::Text(value, TextMode::Query));
        }
    }
    out.push(Item::Tag(END));
}

/// The `use_headers` part of a key: each name's folded values, or its absence.
#[inline]
pub fn header_items<'a>(
    request: &KeyRequest<'a>,
    options: &KeyOptions,
    out: &mut impl ItemSink<'a>,
) {
    for name in &options.use_headers {
        one_header_items(request.headers, name, out);
    }
}

/// One `use_headers` name's part of a key.
#[inline]
pub fn one_header_items<'a>(fields: HeaderFields<'a>, name: &[u8], out: &mut impl ItemSink<'a>) {
    if fields.first(name).is_none() {
        out.push(Item::Tag(ABSENT));
    } else {
        out.push(Item::Tag(PRESENT));
        folded_items(fields, name, out);
    }
}

/// Whether `raw` read as UTF-8 with each invalid sequence replaced by U+FFFD is `text`
/// (`String::from_utf8_lossy(raw) == text`, without allocating).
fn lossy_eq(raw: &[u8], text: &[u8]) -> bool {
    const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();
    let mut rest = text;
    for chunk in raw.utf8_chunks() {
        let Some(r) = rest.strip_prefix(chunk.valid().as_bytes()) else {
            return false;
        };
        rest = r;
        if !chunk.invalid().is_empty() {
            let Some(r) = rest.strip_prefix(REPLACEMENT) else {
                return false;
            };
            rest = r;
        }
    }
    rest.is_empty()
}

/// Every field named `name` joined with `", "` (`"; "` for Cookie: an HTTP/2 client splits
/// its cookie into one field per pair, RFC 9113 §8.2.3, and the pairs are joined back the way an
/// HTTP/1 client sends them, RFC 6265 §5.4, so a split cookie and a joined one key the same):
/// the total length, then the pieces.
fn folded_items<'a>(fields: HeaderFields<'a>, name: &[u8], out: &mut impl ItemSink<'a>) {
    let separator: &'static [u8] = if name.eq_ignore_ascii_case(b"cookie") {
        b"; "
    } else {
        b", "
    };
    let mut total = 0u64;
    for (i, v) in fields.values(name).enumerate() {
        total += v.len() as u64 + if i > 0 { 2 } else { 0 };
    }
    out.push(Item::Len(total));
    for (i, v) in fields.values(name).enumerate() {
        if i > 0 {
            out.push(Item::Bytes(separator));
        }
        out.push(Item::Bytes(v));
    }
}

/// The body part of a key: raw bytes, none, or form fields (spec §b.4).
pub fn body_items<'a>(request: &KeyRequest<'a>, options: &KeyOptions, out: &mut impl ItemSink<'a>) {
    if !options.ignore_payload_params.is_empty() {
        if let (Some(body), Some(content_type)) =
            (request.body, request.headers.first(b"content-type"))
        {
            let ignored = &options.ignore_payload_params;
            if let Some(fields) = form::multipart_fields(content_type, body) {
                out.push(Item::Tag(BODY_FORM));
                for field in fields {
                    let skip = ignored.iter().any(|p| lossy_eq(field.name, p));
                    if skip {
                        continue;
                    }
                    out.push(Item::Tag(FIELD_BYTES));
                    out.push(Item::Len(field.name.len() as u64));
                    out.push(Item::Bytes(field.name));
                    out.push(Item::Len(field.value_len() as u64));
                    for line in field.value_lines() {
                        out.push(Item::Bytes(line));
                    }
                }
                out.push(Item::Tag(END));
                return;
            }
            if let Some(mode) = form::urlencoded_mode(content_type, body) {
                out.push(Item::Tag(BODY_FORM));
                for (name, value) in pairs(body) {
                    if ignored
                        .iter()
                        .any(|p| super::text::decodes_to(name, mode, p))
                    {
                        continue;
                    }
                    out.push(Item::Tag(FIELD_TEXT));
                    out.push(Item::Text(name, mode));
                    out.push(Item::Text(value, mode));
                }
                out.push(Item::Tag(END));
                return;
            }
        }
    }
    match request.body {
        None => out.push(Item::Tag(BODY_NULL)),
        Some(body) => {
            out.push(Item::Tag(BODY_RAW));
            out.push(Item::Len(body.len() as u64));
            out.push(Item::Bytes(body));
        }
    }
}

/// Feeds the canonical bytes of one item to `sink`; `false` when `sink` asked to stop.
#[inline(always)]
fn emit_item(item: Item<'_>, sink: &mut impl FnMut(&[u8]) -> bool) -> bool {
    match item {
        Item::Tag(t) => sink(&[t]),
        Item::Len(v) => sink(&v.to_le_bytes()),
        Item::Bytes(b) => b.is_empty() || sink(b),
        // Methods are nearly always upper case already: no copy then.
        Item::Upper(b) if !b.iter().any(u8::is_ascii_lowercase) => b.is_empty() || sink(b),
        Item::Upper(b) => b.chunks(64).all(|piece| {
            let mut buf = [0; 64];
            buf[..piece.len()].copy_from_slice(piece);
            buf[..piece.len()].make_ascii_uppercase();
            sink(&buf[..piece.len()])
        }),
        Item::Text(raw, mode) => {
            if is_plain(raw) {
                return (raw.is_empty() || sink(raw)) && sink(&[0xFF]);
            }
            let mut decoder = Decoder::new(raw, mode);
            let mut buf = [0; 64];
            loop {
                let n = decoder.fill(&mut buf);
                if n == 0 {
                    return sink(&[0xFF]);
                }
                if !sink(&buf[..n]) {
                    return false;
                }
            }
        }
    }
}

/// Pieces up to this long are compared byte by byte (see `equals_chunks`).
const SMALL: usize = 16;

/// The random seeds of key hashes, fixed for a process (one per index).
#[derive(Debug, Clone, Copy)]
pub struct HashSeed {
    /// Start of the running state.
    start: u64,
    /// Multiplier of each 8-byte word (odd).
    word: u64,
    /// Multiplier of the final mix (odd).
    last: u64,
}

impl HashSeed {
    /// Seeds drawn from the process's random source.
    pub fn random() -> HashSeed {
        let state = ahash::RandomState::new();
        HashSeed::fixed(
            state.hash_one(1u64),
            state.hash_one(2u64),
            state.hash_one(3u64),
        )
    }

    /// Seeds given (tests and benchmarks that need the same hashes every run).
    pub fn fixed(start: u64, word: u64, last: u64) -> HashSeed {
        HashSeed {
            start,
            // Odd multipliers with high bits set keep every bit of a word in the product.
            word: word | 1 | 1 << 63,
            last: last | 1 | 1 << 63,
        }
    }
}

/// The 128-bit product of `a` and `b`, its halves folded together by xor (the mixing step of
/// foldhash and ahash's fallback).
#[inline(always)]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

/// The 1–7 bytes of `rest` as the low bytes of a word (the others zero), without a loop: two
/// overlapping loads whose shared bytes are the same, so or-ing them is exact.
#[inline(always)]
fn tail_word(rest: &[u8]) -> u64 {
    let n = rest.len();
    debug_assert!((1..8).contains(&n));
    if n >= 4 {
        let lo = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let hi = u32::from_le_bytes([rest[n - 4], rest[n - 3], rest[n - 2], rest[n - 1]]);
        u64::from(lo) | u64::from(hi) << (8 * (n - 4))
    } else {
        u64::from(rest[0])
            | u64::from(rest[n / 2]) << (8 * (n / 2))
            | u64::from(rest[n - 1]) << (8 * (n - 1))
    }
}

/// Streams canonical bytes into a 64-bit hash 8 bytes at a time, whatever the cut of the stream
/// into pieces: one multiply per 8 bytes, no block buffer to copy into.
struct KeyHasher {
    /// Mixed state of the full words so far.
    acc: u64,
    /// The bytes of the word being filled, from its low byte up.
    word: u64,
    /// How many bytes of `word` are filled (0–7).
    filled: u32,
    /// Bytes fed so far.
    total: u64,
    /// The seeds.
    seed: HashSeed,
}

impl KeyHasher {
    fn new(seed: HashSeed) -> KeyHasher {
        KeyHasher {
            acc: seed.start,
            word: 0,
            filled: 0,
            total: 0,
            seed,
        }
    }

    /// Adds the `n` (1–8) low bytes of `w` (its other bytes zero) to the stream.
    #[inline(always)]
    fn push(&mut self, w: u64, n: u32) {
        let shift = 8 * self.filled;
        self.word |= w << shift;
        let filled = self.filled + n;
        if filled >= 8 {
            self.acc = folded_multiply(self.acc ^ self.word, self.seed.word);
            // The bytes of `w` that did not fit start the next word.
            self.word = if shift == 0 { 0 } else { w >> (64 - shift) };
            self.filled = filled - 8;
        } else {
            self.filled = filled;
        }
    }

    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.push(u64::from_le_bytes(w.try_into().expect("8 bytes")), 8);
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            self.push(tail_word(rest), rest.len() as u32);
        }
    }

    fn finish(mut self) -> u64 {
        if self.filled > 0 {
            self.acc = folded_multiply(self.acc ^ self.word, self.seed.word);
        }
        // The length ends the stream (zero padding of the last word cannot collide); the last
        // multiply spreads every bit over the low bits (slot) and the high bits (tag).
        folded_multiply(self.acc ^ self.total, self.seed.last)
    }
}

/// The hash of a key's canonical bytes.
pub fn hash(key: &(impl Canonical + ?Sized), seed: &HashSeed) -> u64 {
    hash_and_len(key, seed).0
}

/// The hash of a key's canonical bytes, and their length.
pub fn hash_and_len(key: &(impl Canonical + ?Sized), seed: &HashSeed) -> (u64, u64) {
    let mut hasher = KeyHasher::new(*seed);
    key.emit(|bytes: &[u8]| {
        hasher.write(bytes);
        true
    });
    let total = hasher.total;
    (hasher.finish(), total)
}

/// Writes the canonical bytes of `key` into `buf`; their length, or `None` if they do not fit.
pub fn write_canonical_into(key: &(impl Canonical + ?Sized), buf: &mut [u8]) -> Option<usize> {
    let mut len = 0;
    let fits = key.emit(|bytes: &[u8]| match buf.get_mut(len..len + bytes.len()) {
        Some(dest) => {
            dest.copy_from_slice(bytes);
            len += bytes.len();
            true
        }
        None => false,
    });
    fits.then_some(len)
}

/// Appends the canonical bytes of `key` to `out` (at load, to keep a key for comparisons).
pub fn write_canonical(key: &(impl Canonical + ?Sized), out: &mut Vec<u8>) {
    key.emit(|bytes: &[u8]| {
        out.extend_from_slice(bytes);
        true
    });
}

/// Whether the canonical bytes of `key` equal the concatenation of the slices `next` yields
/// (until it yields `None`).
pub fn equals_chunks<'s>(
    key: &(impl Canonical + ?Sized),
    mut next: impl FnMut() -> Option<&'s [u8]>,
) -> bool {
    let mut other: &[u8] = &[];
    let mut exhausted = false;
    let same = key.emit(|mut mine: &[u8]| {
        while !mine.is_empty() {
            while other.is_empty() {
                match next() {
                    Some(o) => other = o,
                    None => {
                        exhausted = true;
                        return false;
                    }
                }
            }
            let n = mine.len().min(other.len());
            let same = if n <= SMALL {
                // Tags, lengths and short words: a byte loop beats a call to memcmp.
                mine[..n].iter().zip(&other[..n]).all(|(a, b)| a == b)
            } else {
                mine[..n] == other[..n]
            };
            if !same {
                return false;
            }
            mine = &mine[n..];
            other = &other[n..];
        }
        true
    });
    same && !exhausted && other.is_empty() && std::iter::from_fn(&mut next).all(<[u8]>::is_empty)
}

/// Whether two keys have the same canonical bytes (the same mitmproxy key). Allocates; for
/// tests and tools (lookups use [`equals_chunks`] against a stored key).
pub fn items_equal(a: &[Item<'_>], b: &[Item<'_>]) -> bool {
    let mut stored = Vec::new();
    write_canonical(b, &mut stored);
    let mut once = Some(stored.as_slice());
    equals_chunks(a, || once.take())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn a_tail_word_holds_exactly_the_bytes_in_order() {
        let bytes = [0x11u8, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77];
        for n in 1..8 {
            let mut expected = 0u64;
            for (i, &b) in bytes[..n].iter().enumerate() {
                expected |= u64::from(b) << (8 * i);
            }
            assert_eq!(tail_word(&bytes[..n]), expected, "{n} bytes");
        }
    }

    /// A live-style request for key tests.
    #[derive(Clone)]
    pub(crate) struct Req {
        pub scheme: &'static str,
        pub method: &'static str,
        pub target: Vec<u8>,
        pub host: &'static str,
        pub port: u16,
        pub headers: Vec<(&'static str, Vec<u8>)>,
        pub body: Option<Vec<u8>>,
    }

    impl Req {
        pub(crate) fn get(target: &str) -> Req {
            Req {
                scheme: "http",
                method: "GET",
                target: target.as_bytes().to_vec(),
                host: "address",
                port: 22,
                headers: vec![("header", b"qvalue".to_vec())],
                body: Some(b"content".to_vec()),
            }
        }
        pub(crate) fn header(mut self, name: &'static str, value: &str) -> Req {
            self.headers.push((name, value.as_bytes().to_vec()));
            self
        }
        pub(crate) fn body(mut self, body: &str) -> Req {
            self.body = Some(body.as_bytes().to_vec());
            self
        }
    }

    pub(crate) fn with_items<R>(
        req: &Req,
        options: &KeyOptions,
        f: impl FnOnce(&[Item<'_>], &RequestKey<'_, '_>) -> R,
    ) -> R {
        let headers: Vec<httparse::Header<'_>> = req
            .headers
            .iter()
            .map(|(n, v)| httparse::Header { name: n, value: v })
            .collect();
        let key_request = KeyRequest {
            scheme: req.scheme.as_bytes(),
            method: req.method.as_bytes(),
            target: &req.target,
            host: KeyHost::Single(req.host.as_bytes()),
            port: req.port,
            headers: HeaderFields::Live(&headers),
            body: req.body.as_deref(),
        };
        let mut out = Items::new();
        items(&key_request, options, &mut out);
        f(
            &out,
            &RequestKey {
                request: &key_request,
                options,
            },
        )
    }

    /// Whether two requests have the same key, checking that the hash agrees with equality.
    pub(crate) fn same_key(a: &Req, b: &Req, options: &KeyOptions) -> bool {
        let state = HashSeed::fixed(1, 2, 3);
        with_items(a, options, |ia, live_a| {
            with_items(b, options, |ib, _| {
                // The on-the-fly key of a live request is the key of its item list.
                assert_eq!(hash(live_a, &state), hash(ia, &state));
                let mut stored = Vec::new();
                write_canonical(ib, &mut stored);
                let mut once = Some(stored.as_slice());
                let equal = equals_chunks(live_a, || once.take());
                assert_eq!(equal, items_equal(ia, ib));
                if equal {
                    assert_eq!(hash(ia, &state), hash(ib, &state));
                }
                equal
            })
        })
    }

    fn names(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn ignore_host_makes_destination_hosts_irrelevant() {
        let opts = KeyOptions {
            ignore_host: true,
            ..KeyOptions::default()
        };
        let mut other = Req::get("/path");
        other.host = "wrong_address";
        assert!(same_key(&Req::get("/path"), &Req::get("/path"), &opts));
        assert!(same_key(&Req::get("/path"), &other, &opts));
        assert!(!same_key(
            &Req::get("/path"),
            &other,
            &KeyOptions::default()
        ));
    }

    #[test]
    fn ignore_content_makes_bodies_irrelevant() {
        let off = KeyOptions::default();
        let foo = Req::get("/").body("foo");
        assert!(same_key(&foo, &Req::get("/").body("foo"), &off));
        assert!(!same_key(&foo, &Req::get("/").body("bar"), &off));
        let on = KeyOptions {
            ignore_content: true,
            ..KeyOptions::default()
        };
        let mut null = Req::get("/");
        null.body = None;
        for other in [Req::get("/").body("bar"), Req::get("/").body(""), null] {
            assert!(same_key(&foo, &other, &on));
        }
    }

    #[test]
    fn ignore_content_wins_over_payload_params() {
        let opts = KeyOptions {
            ignore_content: true,
            ignore_payload_params: names(&["param1", "param2"]),
            ..KeyOptions::default()
        };
        let form = |b| {
            Req::get("/")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(b)
        };
        assert!(same_key(&form("paramx=y"), &form("paramx=x"), &opts));
    }

    #[test]
    fn payload_params_only_parse_forms() {
        let opts = KeyOptions {
            ignore_payload_params: names(&["param1", "param2"]),
            ..KeyOptions::default()
        };
        let json = |b| {
            Req::get("/")
                .header("content-type", "application/json")
                .body(b)
        };
        assert!(same_key(
            &json(r#"{"param1":"1"}"#),
            &json(r#"{"param1":"1"}"#),
            &opts
        ));
        assert!(!same_key(
            &json(r#"{"param1":"1"}"#),
            &json(r#"{"param1":"2"}"#),
            &opts
        ));
    }

    #[test]
    fn default_key_ignores_unlisted_headers_but_not_paths_or_blank_params() {
        let opts = KeyOptions::default();
        assert!(same_key(&Req::get("/path"), &Req::get("/path"), &opts));
        assert!(same_key(
            &Req::get("/path"),
            &Req::get("/path").header("foo", "bar"),
            &opts
        ));
        assert!(!same_key(&Req::get("voing"), &Req::get("/path"), &opts));
        assert!(!same_key(
            &Req::get("path?blank_value"),
            &Req::get("path?"),
            &opts
        ));
    }

    #[test]
    fn a_split_cookie_keys_as_the_joined_one_and_other_fields_fold_with_commas() {
        let opts = KeyOptions {
            use_headers: names(&["cookie", "accept"]),
            ..KeyOptions::default()
        };
        let split = Req::get("/")
            .header("cookie", "a=1")
            .header("accept", "x")
            .header("cookie", "b=2")
            .header("accept", "y");
        let joined = Req::get("/")
            .header("Cookie", "a=1; b=2")
            .header("accept", "x, y");
        assert!(same_key(&split, &joined, &opts));
        let comma = Req::get("/")
            .header("Cookie", "a=1, b=2")
            .header("accept", "x, y");
        assert!(!same_key(&split, &comma, &opts));
    }

    #[test]
    fn use_headers_compares_listed_headers_only() {
        let opts = KeyOptions {
            use_headers: names(&["foo"]),
            ..KeyOptions::default()
        };
        let with = Req::get("/").header("foo", "bar");
        assert!(!same_key(&with, &Req::get("/"), &opts));
        assert!(same_key(&with, &Req::get("/").header("foo", "bar"), &opts));
        assert!(same_key(&with, &with.clone().header("oink", "bar"), &opts));
        assert!(same_key(&Req::get("/"), &Req::get("/"), &opts));
    }

    #[test]
    fn ignore_params_drops_named_query_parameters() {
        let opts = KeyOptions {
            ignore_params: names(&["param1", "param2"]),
            ..KeyOptions::default()
        };
        let base = Req::get("/test?param1=1");
        for same in ["/test", "/test?param1=2", "/test?param2=1"] {
            assert!(same_key(&base, &Req::get(same), &opts), "{same}");
        }
        assert!(!same_key(&base, &Req::get("/test?param3=2"), &opts));
    }

    type Encoder = dyn Fn(&[(&str, &str)]) -> String;

    fn payload_cases(content_type: &str, encode: &Encoder) {
        let opts = KeyOptions {
            ignore_payload_params: names(&["param1", "param2"]),
            ..KeyOptions::default()
        };
        let req = |fields: &[(&str, &str)]| {
            Req::get("/")
                .header("Content-Type", content_type)
                .body(&encode(fields))
        };
        let reference = req(&[("paramx", "x"), ("param1", "1")]);
        for same in [
            &[("paramx", "x"), ("param1", "1")][..],
            &[("paramx", "x"), ("param1", "2")],
            &[("paramx", "x")],
        ] {
            assert!(same_key(&reference, &req(same), &opts), "{same:?}");
        }
        for differ in [&[("paramx", "y"), ("param1", "1")][..], &[("param1", "1")]] {
            assert!(!same_key(&reference, &req(differ), &opts), "{differ:?}");
        }
    }

    #[test]
    fn ignore_payload_params_filters_urlencoded_fields() {
        payload_cases("application/x-www-form-urlencoded", &|fields| {
            fields
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
        });
    }

    #[test]
    fn ignore_payload_params_filters_multipart_fields() {
        payload_cases(
            "multipart/form-data; boundary=somefancyboundary",
            &|fields| {
                let mut body = String::new();
                for (k, v) in fields {
                    body.push_str("--somefancyboundary\n");
                    body.push_str(&format!(
                        "Content-Disposition: form-data; name=\"{k}\"\n\n{v}\n"
                    ));
                }
                body.push_str("--somefancyboundary\n");
                body
            },
        );
    }

    #[test]
    fn last_segment_path_params_are_ignored() {
        let opts = KeyOptions::default();
        assert!(same_key(
            &Req::get("/x;jsessionid=1?q=1"),
            &Req::get("/x;jsessionid=2?q=1"),
            &opts
        ));
        assert!(!same_key(&Req::get("/a;x/b"), &Req::get("/a;y/b"), &opts));
        assert!(same_key(&Req::get("/a#frag"), &Req::get("/a"), &opts));
        assert!(!same_key(&Req::get("/%41"), &Req::get("/A"), &opts));
    }

    #[test]
    fn host_case_matters() {
        let mut upper = Req::get("/");
        upper.host = "Example.com";
        let mut lower = Req::get("/");
        lower.host = "example.com";
        assert!(!same_key(&upper, &lower, &KeyOptions::default()));
    }

    #[test]
    fn port_comes_from_the_connection() {
        let mut other = Req::get("/");
        other.port = 8080;
        assert!(!same_key(&Req::get("/"), &other, &KeyOptions::default()));
        let opts = KeyOptions {
            ignore_port: true,
            ..KeyOptions::default()
        };
        assert!(same_key(&Req::get("/"), &other, &opts));
    }

    #[test]
    fn stored_null_body_never_equals_an_empty_body() {
        let mut null = Req::get("/");
        null.body = None;
        assert!(!same_key(
            &null,
            &Req::get("/").body(""),
            &KeyOptions::default()
        ));
    }

    #[test]
    fn form_matching_decodes_fields_and_keeps_their_order() {
        let opts = KeyOptions {
            ignore_payload_params: names(&["zz"]),
            ..KeyOptions::default()
        };
        let form = |b| {
            Req::get("/")
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(b)
        };
        assert!(same_key(&form("a=%41"), &form("a=A"), &opts));
        assert!(!same_key(&form("a=1&b=2"), &form("b=2&a=1"), &opts));
        assert!(!same_key(&form("zz=1"), &form(""), &opts));
        assert!(!same_key(
            &form("a=%41"),
            &form("a=A"),
            &KeyOptions::default()
        ));
    }

    #[test]
    fn query_pairs_are_decoded_like_parse_qsl() {
        let opts = KeyOptions::default();
        let same = |a: &str, b: &str| same_key(&Req::get(a), &Req::get(b), &opts);
        assert!(same("/?x=%41", "/?x=A"));
        assert!(same("/?x=+", "/?x=%20"));
        assert!(same("/?x", "/?x="));
        assert!(same("/?", "/"));
        assert!(!same("/?x", "/"));
        assert!(same("/?x=%E9", "/?x=%FF"));
        assert!(!same("/?x=1&y=2", "/?y=2&x=1"));
        assert!(!same("/?a=1;b=2", "/?a=1&b=2"));
        let ignore_a = KeyOptions {
            ignore_params: names(&["a"]),
            ..KeyOptions::default()
        };
        assert!(!same_key(&Req::get("/?A=1"), &Req::get("/"), &ignore_a));
        assert!(same_key(&Req::get("/?%61=1"), &Req::get("/"), &ignore_a));
    }

    #[test]
    fn use_headers_folds_repeated_fields_and_tells_absent_from_empty() {
        let opts = KeyOptions {
            use_headers: names(&["X-A"]),
            ..KeyOptions::default()
        };
        let two = Req::get("/").header("x-a", "1").header("x-a", "2");
        assert!(same_key(&two, &Req::get("/").header("X-A", "1, 2"), &opts));
        assert!(!same_key(
            &Req::get("/").header("X-A", ""),
            &Req::get("/"),
            &opts
        ));
    }

    #[test]
    fn multipart_names_compare_as_lossy_utf8() {
        assert!(lossy_eq(b"a\xFFb", "a\u{FFFD}b".as_bytes()));
        assert!(lossy_eq(b"plain", b"plain"));
        assert!(!lossy_eq(b"a\xFF", b"a"));
        assert!(!lossy_eq(b"ab", b"a"));
    }

    #[test]
    fn method_case_does_not_matter() {
        let mut lower = Req::get("/");
        lower.method = "get";
        assert!(same_key(&lower, &Req::get("/"), &KeyOptions::default()));
    }

    #[test]
    fn pretty_host_drops_the_port_only_from_valid_hosts() {
        assert_eq!(pretty_host(b"example.com:80"), b"example.com");
        assert_eq!(pretty_host(b"Example.com"), b"Example.com");
        assert_eq!(pretty_host(b"[::1]:8080"), b"::1");
        assert_eq!(pretty_host(b"10.0.0.1:1"), b"10.0.0.1");
        assert_eq!(pretty_host(b"bad host:80"), b"bad host:80");
        assert_eq!(pretty_host(b"a:b"), b"a:b");
    }

    #[test]
    fn the_key_hash_does_not_depend_on_how_the_stream_is_cut() {
        let seed = HashSeed::fixed(7, 8, 9);
        let bytes: Vec<u8> = (0..100u8).map(|b| b.wrapping_mul(37)).collect();
        let whole = |bytes: &[u8]| {
            let mut h = KeyHasher::new(seed);
            h.write(bytes);
            h.finish()
        };
        let reference = whole(&bytes);
        for cut in [1, 2, 3, 7, 8, 9, 15, 16, 17] {
            let mut h = KeyHasher::new(seed);
            for piece in bytes.chunks(cut) {
                h.write(piece);
            }
            assert_eq!(h.finish(), reference, "pieces of {cut}");
        }
        // Zero padding of the last word and the length are part of the hash.
        assert_ne!(whole(&bytes[..99]), reference);
        assert_ne!(whole(&[0; 3]), whole(&[0; 4]));
        assert_ne!(whole(b""), whole(&[0]));
        assert_ne!(whole(&bytes), whole(&bytes[1..]));
    }

    #[test]
    fn long_keys_hash_and_compare_across_chunk_boundaries() {
        let opts = KeyOptions::default();
        let long = format!("/?{}", "x=%C3%A9&".repeat(50));
        let body = "b".repeat(1000);
        let a = Req::get(&long).body(&body);
        assert!(same_key(&a, &Req::get(&long).body(&body), &opts));
        let mut other_body = body.clone();
        other_body.push('c');
        assert!(!same_key(&a, &Req::get(&long).body(&other_body), &opts));
    }
}
