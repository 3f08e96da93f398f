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
    // The UUID's 16 bytes (version 4 and variant nibbles forced), then their hex digits with the
    // dashes in place.
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&high.to_be_bytes());
    bytes[8..].copy_from_slice(&low.to_be_bytes());
    bytes[6] = 0x40 | (bytes[6] & 0xf);
    bytes[8] = 0x80 | (bytes[8] & 0xf);
    let mut at = 0;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out[at] = b'-';
            at += 1;
        }
        out[at] = HEX[usize::from(b >> 4)];
        out[at + 1] = HEX[usize::from(b & 0xf)];
        at += 2;
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
            out.extend_from_slice(b"36:");
            out.extend_from_slice(&text);
            out.push(b';');
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
        Address::Socket(SocketAddr::V4(addr)) => {
            // By hand: `Ipv4Addr`'s Display goes through the formatter (≈ 300 instructions).
            let mut text = [0u8; 15];
            let mut len = 0;
            for (i, octet) in addr.ip().octets().iter().enumerate() {
                if i > 0 {
                    text[len] = b'.';
                    len += 1;
                }
                let mut digits = itoa::Buffer::new();
                let digits = digits.format(*octet).as_bytes();
                text[len..len + digits.len()].copy_from_slice(digits);
                len += digits.len();
            }
            write_bytes(out, b';', &text[..len]);
            addr.port()
        }
        Address::Socket(SocketAddr::V6(addr)) => {
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

// The keys and constant fields of a flow, pre-encoded in mitmproxy 12's order (the layout
// tests compare every key and value with files mitmdump wrote): a run of constant fields is
// one copy instead of a tnetstring write per key and value.

fn message_tail<'a, H>(out: &mut Vec<u8>, m: &MessageParts<'a, H>)
where
    H: Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
{
    out.extend_from_slice(b"13:timestamp_end;");
    opt_float(out, m.timestamp_end);
    out.extend_from_slice(b"15:timestamp_start;");
    write_float(out, m.timestamp_start);
    out.extend_from_slice(b"8:trailers;");
    match &m.trailers {
        Some(t) => fields(out, t.clone()),
        None => null(out),
    }
    out.extend_from_slice(b"7:content;");
    match m.content {
        Some(c) => write_bytes(out, b',', c),
        None => null(out),
    }
    out.extend_from_slice(b"7:headers;");
    fields(out, m.headers.clone());
    out.extend_from_slice(b"12:http_version;");
    write_bytes(out, b',', m.http_version);
}

/// The fields every connection record has, after the side's own (mitmproxy 12's order).
fn connection_tail(out: &mut Vec<u8>, c: &ConnParts<'_>) {
    out.extend_from_slice(b"19:timestamp_tls_setup;0:~13:timestamp_end;");
    opt_float(out, c.timestamp_end);
    out.extend_from_slice(b"15:timestamp_start;");
    opt_float(out, c.timestamp_start);
    out.extend_from_slice(
        b"3:sni;0:~11:tls_version;0:~11:cipher_list;0:]6:cipher;0:~11:alpn_offers;0:]\
          4:alpn;0:~16:certificate_list;0:]3:tls;5:false!5:error;0:~\
          18:transport_protocol;3:tcp;2:id;",
    );
    id(out, c.id);
    out.extend_from_slice(b"8:sockname;");
    address(out, c.sockname);
    out.extend_from_slice(b"8:peername;");
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
    out.extend_from_slice(b"9:websocket;0:~8:response;");
    match &flow.response {
        Some((status, reason, m)) => {
            let dict = open(out, m.content.map_or(0, <[u8]>::len) + 512);
            out.extend_from_slice(b"6:reason;");
            write_bytes(out, b',', reason);
            out.extend_from_slice(b"11:status_code;");
            write_int(out, i64::from(*status));
            message_tail(out, m);
            close(out, dict, b'}');
        }
        None => null(out),
    }
    out.extend_from_slice(b"7:request;");
    let request = open(out, flow.request.content.map_or(0, <[u8]>::len) + 512);
    out.extend_from_slice(b"4:path;");
    write_bytes(out, b',', flow.path);
    out.extend_from_slice(b"9:authority;");
    write_bytes(out, b',', flow.authority);
    out.extend_from_slice(b"6:scheme;");
    write_bytes(out, b',', flow.scheme);
    out.extend_from_slice(b"6:method;");
    write_bytes(out, b',', flow.method);
    out.extend_from_slice(b"4:port;");
    write_int(out, i64::from(flow.port));
    out.extend_from_slice(b"4:host;");
    write_bytes(out, b';', flow.host.as_bytes());
    message_tail(out, &flow.request);
    close(out, request, b'}');
    out.extend_from_slice(b"6:backup;0:~17:timestamp_created;");
    write_float(out, flow.timestamp_created);
    out.extend_from_slice(
        b"7:comment;0:;8:metadata;0:}6:marked;0:;9:is_replay;0:~11:intercepted;5:false!\
          11:server_conn;",
    );

    let s = &flow.server_conn;
    let conn = open(out, 400);
    out.extend_from_slice(b"3:via;0:~19:timestamp_tcp_setup;");
    opt_float(out, s.timestamp_tcp_setup);
    out.extend_from_slice(b"7:address;");
    address(out, s.address);
    connection_tail(out, s);
    close(out, conn, b'}');

    let c = &flow.client_conn;
    out.extend_from_slice(b"11:client_conn;");
    let conn = open(out, 400);
    out.extend_from_slice(b"10:proxy_mode;");
    write_bytes(out, b';', c.proxy_mode.as_bytes());
    out.extend_from_slice(b"8:mitmcert;0:~");
    connection_tail(out, c);
    close(out, conn, b'}');

    out.extend_from_slice(b"5:error;");
    match flow.error {
        // mitmproxy's `Error.get_state()`, written in its reversed key order.
        Some(e) => {
            let dict = open(out, e.msg.len() + 40);
            out.extend_from_slice(b"9:timestamp;");
            write_float(out, e.timestamp);
            out.extend_from_slice(b"3:msg;");
            write_bytes(out, b';', e.msg.as_bytes());
            close(out, dict, b'}');
        }
        None => null(out),
    }
    out.extend_from_slice(b"2:id;");
    id(out, flow.id);
    out.extend_from_slice(b"4:type;4:http;7:version;");
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
