//! Writes format-21 HTTP flows exactly as mitmproxy 11/12 lays them out (spec §g.4), so generated
//! recordings load in uringreplay and in real `mitmdump -S` alike. Used by HAR import, `convert`,
//! the recorder (`-w`), the big-recording generator, benches and tests.
#![forbid(unsafe_code)]

use super::mitm::NEWEST_FORMAT;
use std::net::SocketAddr;

use super::tnetstring::{close, open, write_bytes, write_float, write_int, Open};

/// A value to encode as a tnetstring (tests and odd files; flows go through [`write_parts`]).
#[derive(Debug, Clone)]
pub enum Encode<'a> {
    /// `,` bytes.
    Bytes(&'a [u8]),
    /// `;` text.
    Text(&'a str),
    /// `#` integer.
    Int(i64),
    /// `^` float.
    Float(f64),
    /// `!` boolean.
    Bool(bool),
    /// `~` null.
    Null,
    /// `]` list.
    List(Vec<Encode<'a>>),
    /// `}` dict with text keys, written in the given order.
    Dict(Vec<(&'a str, Encode<'a>)>),
}

impl Encode<'_> {
    /// Appends the encoding to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Encode::Bytes(b) => write_bytes(out, b',', b),
            Encode::Text(s) => write_bytes(out, b';', s.as_bytes()),
            Encode::Int(i) => write_int(out, *i),
            Encode::Float(f) => write_float(out, *f),
            Encode::Bool(b) => boolean(out, *b),
            Encode::Null => null(out),
            Encode::List(items) => {
                let list = open(out, 16 * items.len());
                for item in items {
                    item.write(out);
                }
                close(out, list, b']');
            }
            Encode::Dict(entries) => {
                let dict = open(out, 32 * entries.len());
                for (k, v) in entries {
                    key(out, k);
                    v.write(out);
                }
                close(out, dict, b'}');
            }
        }
    }
}

/// A response to record.
#[derive(Debug, Clone)]
pub struct ResponseSpec {
    /// Status code.
    pub status_code: u16,
    /// Reason phrase.
    pub reason: Vec<u8>,
    /// `HTTP/1.1` and so on.
    pub http_version: Vec<u8>,
    /// Header fields in order.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// Body, or `None` for "not stored".
    pub content: Option<Vec<u8>>,
    /// Response start time.
    pub timestamp_start: f64,
}

/// An HTTP flow to record.
#[derive(Debug, Clone)]
pub struct FlowSpec {
    /// Flow id (a UUID in real files).
    pub id: String,
    /// Method.
    pub method: Vec<u8>,
    /// `http`/`https`.
    pub scheme: Vec<u8>,
    /// Destination host.
    pub host: String,
    /// Destination port.
    pub port: u16,
    /// Path with query.
    pub path: Vec<u8>,
    /// `HTTP/1.1` and so on.
    pub http_version: Vec<u8>,
    /// Header fields in order.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// Body, or `None` for "not stored".
    pub content: Option<Vec<u8>>,
    /// Request start time.
    pub timestamp_start: f64,
    /// The response, if any.
    pub response: Option<ResponseSpec>,
}

impl FlowSpec {
    /// A `GET path` to 127.0.0.1:8080 answered with `status` and `body` (plain text, with
    /// Content-Length), recorded at 2026-11-27 00:00:00 UTC.
    pub fn get(path: &str, status: u16, body: &[u8]) -> FlowSpec {
        let start = 1_795_737_600.0;
        FlowSpec {
            id: "00000000-0000-4000-8000-000000000000".to_string(),
            method: b"GET".to_vec(),
            scheme: b"http".to_vec(),
            host: "127.0.0.1".to_string(),
            port: 8080,
            path: path.as_bytes().to_vec(),
            http_version: b"HTTP/1.1".to_vec(),
            headers: vec![(b"Host".to_vec(), b"127.0.0.1:8080".to_vec())],
            content: Some(Vec::new()),
            timestamp_start: start,
            response: Some(ResponseSpec {
                status_code: status,
                reason: reason_phrase(status).as_bytes().to_vec(),
                http_version: b"HTTP/1.1".to_vec(),
                headers: vec![
                    (b"Content-Type".to_vec(), b"text/plain".to_vec()),
                    (
                        b"Content-Length".to_vec(),
                        body.len().to_string().into_bytes(),
                    ),
                ],
                content: Some(body.to_vec()),
                timestamp_start: start + 0.001,
            }),
        }
    }
}

/// mitmproxy 12's reason phrases (`net/http/status_codes.py`): HAR import, HTTP/2 and HTTP/3
/// recordings served over HTTP/1 and the unmatched-status answers; `""` for codes it does not know.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Time-out",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Requested Range not satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        444 => "No Response",
        499 => "Client Closed Request",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Time-out",
        505 => "HTTP Version not supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage Space",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => "",
    }
}

/// One side of a flow's connections as mitmproxy 12 records it (plain TCP, no TLS details).
#[derive(Debug, Clone, Default)]
pub struct ConnRecord {
    /// Connection id (a UUID in real files).
    pub id: String,
    /// The remote address, if known.
    pub peername: Option<(String, u16)>,
    /// The local address, if known.
    pub sockname: Option<(String, u16)>,
    /// When the connection opened.
    pub timestamp_start: Option<f64>,
    /// When it closed.
    pub timestamp_end: Option<f64>,
    /// Server side only: the address asked for (`address`).
    pub address: Option<(String, u16)>,
    /// Server side only: when the TCP handshake finished.
    pub timestamp_tcp_setup: Option<f64>,
    /// Client side only: the proxy mode (`regular`, `reverse:http://host:port`).
    pub proxy_mode: String,
}

/// A request or response as mitmproxy 12 records it.
#[derive(Debug, Clone, Default)]
pub struct MessageRecord {
    /// `HTTP/1.1` and so on.
    pub http_version: Vec<u8>,
    /// Header fields in wire order and spelling.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// Body after transfer decoding, or `None` for "not stored".
    pub content: Option<Vec<u8>>,
    /// Trailer fields, if any were received.
    pub trailers: Option<Vec<(Vec<u8>, Vec<u8>)>>,
    /// First byte seen.
    pub timestamp_start: f64,
    /// Last byte seen.
    pub timestamp_end: Option<f64>,
}

/// A whole format-21 HTTP flow, every field mitmproxy 12 writes for a plain-TCP exchange: what
/// HAR import, `convert` and the recorder produce. [`write_record`] lays it out.
#[derive(Debug, Clone, Default)]
pub struct FlowRecord {
    /// Flow id (a UUID in real files).
    pub id: String,
    /// Method as received.
    pub method: Vec<u8>,
    /// `http`/`https`.
    pub scheme: Vec<u8>,
    /// Request-target authority (usually empty for HTTP/1).
    pub authority: Vec<u8>,
    /// Destination host.
    pub host: String,
    /// Destination port.
    pub port: u16,
    /// Path with query.
    pub path: Vec<u8>,
    /// The request.
    pub request: MessageRecord,
    /// The response, if any: status, reason and the message.
    pub response: Option<(u16, Vec<u8>, MessageRecord)>,
    /// The client connection.
    pub client_conn: ConnRecord,
    /// The server connection.
    pub server_conn: ConnRecord,
    /// Why the exchange failed (`error`: message and time), if it did.
    pub error: Option<(String, f64)>,
    /// `timestamp_created`.
    pub timestamp_created: f64,
}

/// A UUID-shaped id from two numbers (deterministic, for flows made without a random source).
pub fn numbered_id(high: u64, low: u64) -> String {
    let mut text = [0u8; 36];
    uuid_text(high, low, &mut text);
    String::from_utf8_lossy(&text).into_owned()
}

/// [`numbered_id`] into a buffer: `hhhhhhhh-hhhh-4hhh-8hhh-llllllllllll`.
fn uuid_text(high: u64, low: u64, out: &mut [u8; 36]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let (a, b) = (high.to_be_bytes(), low.to_be_bytes());
    let nibbles = [
        a[0] >> 4,
        a[0] & 0xf,
        a[1] >> 4,
        a[1] & 0xf,
        a[2] >> 4,
        a[2] & 0xf,
        a[3] >> 4,
        a[3] & 0xf,
        a[4] >> 4,
        a[4] & 0xf,
        a[5] >> 4,
        a[5] & 0xf,
        4,
        a[6] & 0xf,
        a[7] >> 4,
        a[7] & 0xf,
        8,
        b[0] & 0xf,
        b[1] >> 4,
        b[1] & 0xf,
        b[2] >> 4,
        b[2] & 0xf,
        b[3] >> 4,
        b[3] & 0xf,
        b[4] >> 4,
        b[4] & 0xf,
        b[5] >> 4,
        b[5] & 0xf,
        b[6] >> 4,
        b[6] & 0xf,
        b[7] >> 4,
        b[7] & 0xf,
    ];
    let mut at = 0;
    for (i, n) in nibbles.iter().enumerate() {
        if matches!(i, 8 | 12 | 16 | 20) {
            out[at] = b'-';
            at += 1;
        }
        out[at] = HEX[usize::from(*n)];
        at += 1;
    }
}

/// A flow or connection id as written: given text, or [`numbered_id`]'s two numbers.
#[derive(Debug, Clone, Copy)]
pub enum Id<'a> {
    /// Text as it is (a UUID in real files).
    Text(&'a str),
    /// A UUID-shaped id made of two numbers.
    Numbered(u64, u64),
}

/// A connection address as written (`[host, port]`).
#[derive(Debug, Clone, Copy)]
pub enum Address<'a> {
    /// A host name or address text and a port.
    Named(&'a str, u16),
    /// A socket address (its IP written as text).
    Socket(SocketAddr),
}

/// One side of a flow's connections, borrowed: what [`write_parts`] writes for it.
#[derive(Debug, Clone, Copy)]
pub struct ConnParts<'a> {
    /// Connection id.
    pub id: Id<'a>,
    /// The remote address, if known.
    pub peername: Option<Address<'a>>,
    /// The local address, if known.
    pub sockname: Option<Address<'a>>,
    /// When the connection opened.
    pub timestamp_start: Option<f64>,
    /// When it closed.
    pub timestamp_end: Option<f64>,
    /// Server side only: the address asked for (`address`).
    pub address: Option<Address<'a>>,
    /// Server side only: when the TCP handshake finished.
    pub timestamp_tcp_setup: Option<f64>,
    /// Client side only: the proxy mode (`regular`, `reverse:http://host:port`).
    pub proxy_mode: &'a str,
}

/// A request or response message, borrowed; `H` yields its `(name, value)` fields in order.
#[derive(Debug, Clone)]
pub struct MessageParts<'a, H> {
    /// `HTTP/1.1` and so on.
    pub http_version: &'a [u8],
    /// Header fields in wire order and spelling.
    pub headers: H,
    /// Body after transfer decoding, or `None` for "not stored".
    pub content: Option<&'a [u8]>,
    /// Trailer fields, if any were received.
    pub trailers: Option<H>,
    /// First byte seen.
    pub timestamp_start: f64,
    /// Last byte seen.
    pub timestamp_end: Option<f64>,
}

/// A flow's `error` (mitmproxy's `flow.Error`): why it has no (complete) response.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorParts<'a> {
    /// The message, as mitmproxy words it (`[Errno 111] Connect call failed ('127.0.0.1', 9)`).
    pub msg: &'a str,
    /// When it happened.
    pub timestamp: f64,
}

/// A whole format-21 HTTP flow, borrowed from wherever its parts are (a forwarded exchange, a
/// loaded recording, a [`FlowRecord`]): [`write_parts`] lays it out without copying it first.
#[derive(Debug, Clone)]
pub struct FlowParts<'a, H> {
    /// Flow id.
    pub id: Id<'a>,
    /// Method as received.
    pub method: &'a [u8],
    /// `http`/`https`.
    pub scheme: &'a [u8],
    /// Request-target authority (usually empty for HTTP/1).
    pub authority: &'a [u8],
    /// Destination host.
    pub host: &'a str,
    /// Destination port.
    pub port: u16,
    /// Path with query.
    pub path: &'a [u8],
    /// The request.
    pub request: MessageParts<'a, H>,
    /// The response, if any: status, reason and the message.
    pub response: Option<(u16, &'a [u8], MessageParts<'a, H>)>,
    /// Why the exchange failed, if it did.
    pub error: Option<ErrorParts<'a>>,
    /// The client connection.
    pub client_conn: ConnParts<'a>,
    /// The server connection.
    pub server_conn: ConnParts<'a>,
    /// `timestamp_created`.
    pub timestamp_created: f64,
}

fn key(out: &mut Vec<u8>, name: &str) {
    write_bytes(out, b';', name.as_bytes());
}

fn null(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0:~");
}

fn boolean(out: &mut Vec<u8>, value: bool) {
    out.extend_from_slice(if value { b"4:true!" } else { b"5:false!" });
}

fn opt_float(out: &mut Vec<u8>, value: Option<f64>) {
    match value {
        Some(f) => write_float(out, f),
        None => null(out),
    }
}

fn id(out: &mut Vec<u8>, id: Id<'_>) {
    match id {
        Id::Text(text) => write_bytes(out, b';', text.as_bytes()),
        Id::Numbered(high, low) => {
            let mut text = [0u8; 36];
            uuid_text(high, low, &mut text);
            write_bytes(out, b';', &text);
        }
    }
}

fn address(out: &mut Vec<u8>, address: Option<Address<'_>>) {
    let Some(address) = address else {
        return null(out);
    };
    let list: Open = open(out, 24);
    let port = match address {
        Address::Named(host, port) => {
            write_bytes(out, b';', host.as_bytes());
            port
        }
        Address::Socket(addr) => {
            use std::io::Write as _;
            // The longest IPv6 text is 45 bytes.
            let mut text = [0u8; 48];
            let mut cursor = std::io::Cursor::new(&mut text[..]);
            let _ = write!(cursor, "{}", addr.ip());
            let len = cursor.position() as usize;
            write_bytes(out, b';', &text[..len]);
            addr.port()
        }
    };
    write_int(out, i64::from(port));
    close(out, list, b']');
}

fn fields<'a>(out: &mut Vec<u8>, fields: impl Iterator<Item = (&'a [u8], &'a [u8])>) {
    let list = open(out, 512);
    for (name, value) in fields {
        let pair = open(out, name.len() + value.len() + 8);
        write_bytes(out, b',', name);
        write_bytes(out, b',', value);
        close(out, pair, b']');
    }
    close(out, list, b']');
}

fn message_tail<'a, H>(out: &mut Vec<u8>, m: &MessageParts<'a, H>)
where
    H: Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
{
    key(out, "timestamp_end");
    opt_float(out, m.timestamp_end);
    key(out, "timestamp_start");
    write_float(out, m.timestamp_start);
    key(out, "trailers");
    match &m.trailers {
        Some(t) => fields(out, t.clone()),
        None => null(out),
    }
    key(out, "content");
    match m.content {
        Some(c) => write_bytes(out, b',', c),
        None => null(out),
    }
    key(out, "headers");
    fields(out, m.headers.clone());
    key(out, "http_version");
    write_bytes(out, b',', m.http_version);
}

/// The fields every connection record has, after the side's own (mitmproxy 12's order).
fn connection_tail(out: &mut Vec<u8>, c: &ConnParts<'_>) {
    key(out, "timestamp_tls_setup");
    null(out);
    key(out, "timestamp_end");
    opt_float(out, c.timestamp_end);
    key(out, "timestamp_start");
    opt_float(out, c.timestamp_start);
    for name in ["sni", "tls_version"] {
        key(out, name);
        null(out);
    }
    key(out, "cipher_list");
    out.extend_from_slice(b"0:]");
    key(out, "cipher");
    null(out);
    key(out, "alpn_offers");
    out.extend_from_slice(b"0:]");
    key(out, "alpn");
    null(out);
    key(out, "certificate_list");
    out.extend_from_slice(b"0:]");
    key(out, "tls");
    boolean(out, false);
    key(out, "error");
    null(out);
    key(out, "transport_protocol");
    write_bytes(out, b';', b"tcp");
    key(out, "id");
    id(out, c.id);
    key(out, "sockname");
    address(out, c.sockname);
    key(out, "peername");
    address(out, c.peername);
}

/// Appends one format-21 HTTP flow, laid out key for key as mitmproxy 12 writes it, encoded in
/// place (each container's length prefix is reserved, then patched): no copy of the flow is
/// made first and nothing is allocated beyond `out`'s growth.
pub fn write_parts<'a, H>(out: &mut Vec<u8>, flow: &FlowParts<'a, H>)
where
    H: Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
{
    let bodies = flow.request.content.map_or(0, <[u8]>::len)
        + flow
            .response
            .as_ref()
            .and_then(|(_, _, m)| m.content)
            .map_or(0, <[u8]>::len);
    let top = open(out, bodies + 2048);
    key(out, "websocket");
    null(out);
    key(out, "response");
    match &flow.response {
        Some((status, reason, m)) => {
            let dict = open(out, m.content.map_or(0, <[u8]>::len) + 512);
            key(out, "reason");
            write_bytes(out, b',', reason);
            key(out, "status_code");
            write_int(out, i64::from(*status));
            message_tail(out, m);
            close(out, dict, b'}');
        }
        None => null(out),
    }
    key(out, "request");
    let request = open(out, flow.request.content.map_or(0, <[u8]>::len) + 512);
    key(out, "path");
    write_bytes(out, b',', flow.path);
    key(out, "authority");
    write_bytes(out, b',', flow.authority);
    key(out, "scheme");
    write_bytes(out, b',', flow.scheme);
    key(out, "method");
    write_bytes(out, b',', flow.method);
    key(out, "port");
    write_int(out, i64::from(flow.port));
    key(out, "host");
    write_bytes(out, b';', flow.host.as_bytes());
    message_tail(out, &flow.request);
    close(out, request, b'}');
    key(out, "backup");
    null(out);
    key(out, "timestamp_created");
    write_float(out, flow.timestamp_created);
    key(out, "comment");
    out.extend_from_slice(b"0:;");
    key(out, "metadata");
    out.extend_from_slice(b"0:}");
    key(out, "marked");
    out.extend_from_slice(b"0:;");
    key(out, "is_replay");
    null(out);
    key(out, "intercepted");
    boolean(out, false);

    let s = &flow.server_conn;
    key(out, "server_conn");
    let conn = open(out, 400);
    key(out, "via");
    null(out);
    key(out, "timestamp_tcp_setup");
    opt_float(out, s.timestamp_tcp_setup);
    key(out, "address");
    address(out, s.address);
    connection_tail(out, s);
    close(out, conn, b'}');

    let c = &flow.client_conn;
    key(out, "client_conn");
    let conn = open(out, 400);
    key(out, "proxy_mode");
    write_bytes(out, b';', c.proxy_mode.as_bytes());
    key(out, "mitmcert");
    null(out);
    connection_tail(out, c);
    close(out, conn, b'}');

    key(out, "error");
    match flow.error {
        // mitmproxy's `Error.get_state()`, written in its reversed key order.
        Some(e) => {
            let dict = open(out, e.msg.len() + 40);
            key(out, "timestamp");
            write_float(out, e.timestamp);
            key(out, "msg");
            write_bytes(out, b';', e.msg.as_bytes());
            close(out, dict, b'}');
        }
        None => null(out),
    }
    key(out, "id");
    id(out, flow.id);
    key(out, "type");
    write_bytes(out, b';', b"http");
    key(out, "version");
    write_int(out, i64::from(NEWEST_FORMAT));
    close(out, top, b'}');
}

/// The fields of a [`MessageRecord`] as [`write_parts`] reads them.
pub type RecordFields<'a> = std::iter::Map<
    std::slice::Iter<'a, (Vec<u8>, Vec<u8>)>,
    fn(&'a (Vec<u8>, Vec<u8>)) -> (&'a [u8], &'a [u8]),
>;

fn record_fields(fields: &[(Vec<u8>, Vec<u8>)]) -> RecordFields<'_> {
    fn pair(p: &(Vec<u8>, Vec<u8>)) -> (&[u8], &[u8]) {
        (&p.0, &p.1)
    }
    fields
        .iter()
        .map(pair as fn(&(Vec<u8>, Vec<u8>)) -> (&[u8], &[u8]))
}

fn message_parts(m: &MessageRecord) -> MessageParts<'_, RecordFields<'_>> {
    MessageParts {
        http_version: &m.http_version,
        headers: record_fields(&m.headers),
        content: m.content.as_deref(),
        trailers: m.trailers.as_deref().map(record_fields),
        timestamp_start: m.timestamp_start,
        timestamp_end: m.timestamp_end,
    }
}

fn named(a: &Option<(String, u16)>) -> Option<Address<'_>> {
    a.as_ref().map(|(h, p)| Address::Named(h, *p))
}

fn conn_parts(c: &ConnRecord) -> ConnParts<'_> {
    ConnParts {
        id: Id::Text(&c.id),
        peername: named(&c.peername),
        sockname: named(&c.sockname),
        timestamp_start: c.timestamp_start,
        timestamp_end: c.timestamp_end,
        address: named(&c.address),
        timestamp_tcp_setup: c.timestamp_tcp_setup,
        proxy_mode: &c.proxy_mode,
    }
}

/// Appends one format-21 HTTP flow, laid out key for key as mitmproxy 12 writes it.
pub fn write_record(out: &mut Vec<u8>, flow: &FlowRecord) {
    write_parts(
        out,
        &FlowParts {
            id: Id::Text(&flow.id),
            method: &flow.method,
            scheme: &flow.scheme,
            authority: &flow.authority,
            host: &flow.host,
            port: flow.port,
            path: &flow.path,
            request: message_parts(&flow.request),
            response: flow
                .response
                .as_ref()
                .map(|(status, reason, m)| (*status, &reason[..], message_parts(m))),
            error: flow.error.as_ref().map(|(msg, timestamp)| ErrorParts {
                msg,
                timestamp: *timestamp,
            }),
            client_conn: conn_parts(&flow.client_conn),
            server_conn: conn_parts(&flow.server_conn),
            timestamp_created: flow.timestamp_created,
        },
    );
}

/// Appends one format-21 HTTP flow, laid out as mitmproxy 12 writes it (a [`FlowRecord`] with
/// fixed loopback connections).
pub fn write_flow(out: &mut Vec<u8>, flow: &FlowSpec) {
    let t = flow.timestamp_start;
    let message =
        |version: &[u8], headers: &[(Vec<u8>, Vec<u8>)], content: &Option<Vec<u8>>, start: f64| {
            MessageRecord {
                http_version: version.to_vec(),
                headers: headers.to_vec(),
                content: content.clone(),
                trailers: None,
                timestamp_start: start,
                timestamp_end: Some(start + 0.0005),
            }
        };
    let record = FlowRecord {
        id: flow.id.clone(),
        method: flow.method.clone(),
        scheme: flow.scheme.clone(),
        authority: Vec::new(),
        host: flow.host.clone(),
        port: flow.port,
        path: flow.path.clone(),
        request: message(&flow.http_version, &flow.headers, &flow.content, t),
        response: flow.response.as_ref().map(|r| {
            (
                r.status_code,
                r.reason.clone(),
                message(&r.http_version, &r.headers, &r.content, r.timestamp_start),
            )
        }),
        client_conn: ConnRecord {
            id: flow.id.clone(),
            peername: Some(("127.0.0.1".to_string(), 50000)),
            sockname: Some(("127.0.0.1".to_string(), 8080)),
            timestamp_start: Some(t),
            proxy_mode: "regular".to_string(),
            ..ConnRecord::default()
        },
        server_conn: ConnRecord {
            id: flow.id.clone(),
            peername: Some((flow.host.clone(), flow.port)),
            sockname: Some(("127.0.0.1".to_string(), 40000)),
            timestamp_start: Some(t),
            address: Some((flow.host.clone(), flow.port)),
            timestamp_tcp_setup: Some(t),
            ..ConnRecord::default()
        },
        error: None,
        timestamp_created: t,
    };
    write_record(out, &record);
}
