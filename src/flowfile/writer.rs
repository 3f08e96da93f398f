//! Writes format-21 HTTP flows exactly as mitmproxy 11/12 lays them out (spec §g.4), so generated
//! recordings load in uringreplay and in real `mitmdump -S` alike. Used by HAR import, `convert`,
//! the recorder (`-w`), the big-recording generator, benches and tests.
#![forbid(unsafe_code)]

use super::mitm::NEWEST_FORMAT;
use super::tnetstring::write_bytes;

/// A value to encode as a tnetstring.
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
            Encode::Int(i) => write_bytes(out, b'#', i.to_string().as_bytes()),
            Encode::Float(f) => write_bytes(out, b'^', format_float(*f).as_bytes()),
            Encode::Bool(b) => write_bytes(out, b'!', if *b { b"true" } else { b"false" }),
            Encode::Null => write_bytes(out, b'~', b""),
            Encode::List(items) => {
                let mut inner = Vec::new();
                for item in items {
                    item.write(&mut inner);
                }
                write_bytes(out, b']', &inner);
            }
            Encode::Dict(entries) => {
                let mut inner = Vec::new();
                for (k, v) in entries {
                    write_bytes(&mut inner, b';', k.as_bytes());
                    v.write(&mut inner);
                }
                write_bytes(out, b'}', &inner);
            }
        }
    }
}

/// Python's `repr(float)` for the values flows hold (finite, positive timestamps).
fn format_float(f: f64) -> String {
    let s = format!("{f}");
    if s.contains('.') || s.contains('e') || s.contains("inf") || s.contains("NaN") {
        s
    } else {
        format!("{s}.0")
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

fn header_list(headers: &[(Vec<u8>, Vec<u8>)]) -> Encode<'_> {
    Encode::List(
        headers
            .iter()
            .map(|(n, v)| Encode::List(vec![Encode::Bytes(n), Encode::Bytes(v)]))
            .collect(),
    )
}

fn content(c: &Option<Vec<u8>>) -> Encode<'_> {
    c.as_deref().map_or(Encode::Null, Encode::Bytes)
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
    /// `timestamp_created`.
    pub timestamp_created: f64,
}

/// A UUID-shaped id from two numbers (deterministic, for flows made without a random source).
pub fn numbered_id(high: u64, low: u64) -> String {
    let (a, b) = (high.to_be_bytes(), low.to_be_bytes());
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-4{:01x}{:02x}-8{:01x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        a[0], a[1], a[2], a[3], a[4], a[5], a[6] & 0xf, a[7], b[0] & 0xf, b[1], b[2], b[3], b[4], b[5], b[6], b[7]
    )
}

fn opt_float(f: Option<f64>) -> Encode<'static> {
    f.map_or(Encode::Null, Encode::Float)
}

fn addr(a: &Option<(String, u16)>) -> Encode<'_> {
    a.as_ref().map_or(Encode::Null, |(h, p)| {
        Encode::List(vec![Encode::Text(h), Encode::Int(i64::from(*p))])
    })
}

fn connection<'a>(c: &'a ConnRecord, extra: Vec<(&'a str, Encode<'a>)>) -> Encode<'a> {
    let mut entries = extra;
    entries.extend([
        ("timestamp_tls_setup", Encode::Null),
        ("timestamp_end", opt_float(c.timestamp_end)),
        ("timestamp_start", opt_float(c.timestamp_start)),
        ("sni", Encode::Null),
        ("tls_version", Encode::Null),
        ("cipher_list", Encode::List(vec![])),
        ("cipher", Encode::Null),
        ("alpn_offers", Encode::List(vec![])),
        ("alpn", Encode::Null),
        ("certificate_list", Encode::List(vec![])),
        ("tls", Encode::Bool(false)),
        ("error", Encode::Null),
        ("transport_protocol", Encode::Text("tcp")),
        ("id", Encode::Text(&c.id)),
        ("sockname", addr(&c.sockname)),
        ("peername", addr(&c.peername)),
    ]);
    Encode::Dict(entries)
}

/// Appends one format-21 HTTP flow, laid out key for key as mitmproxy 12 writes it.
pub fn write_record(out: &mut Vec<u8>, flow: &FlowRecord) {
    let r = &flow.request;
    let request = Encode::Dict(vec![
        ("path", Encode::Bytes(&flow.path)),
        ("authority", Encode::Bytes(&flow.authority)),
        ("scheme", Encode::Bytes(&flow.scheme)),
        ("method", Encode::Bytes(&flow.method)),
        ("port", Encode::Int(i64::from(flow.port))),
        ("host", Encode::Text(&flow.host)),
        ("timestamp_end", opt_float(r.timestamp_end)),
        ("timestamp_start", Encode::Float(r.timestamp_start)),
        (
            "trailers",
            r.trailers.as_deref().map_or(Encode::Null, header_list),
        ),
        ("content", content(&r.content)),
        ("headers", header_list(&r.headers)),
        ("http_version", Encode::Bytes(&r.http_version)),
    ]);
    let response = flow
        .response
        .as_ref()
        .map_or(Encode::Null, |(status, reason, m)| {
            Encode::Dict(vec![
                ("reason", Encode::Bytes(reason)),
                ("status_code", Encode::Int(i64::from(*status))),
                ("timestamp_end", opt_float(m.timestamp_end)),
                ("timestamp_start", Encode::Float(m.timestamp_start)),
                (
                    "trailers",
                    m.trailers.as_deref().map_or(Encode::Null, header_list),
                ),
                ("content", content(&m.content)),
                ("headers", header_list(&m.headers)),
                ("http_version", Encode::Bytes(&m.http_version)),
            ])
        });
    let s = &flow.server_conn;
    let server_conn = connection(
        s,
        vec![
            ("via", Encode::Null),
            ("timestamp_tcp_setup", opt_float(s.timestamp_tcp_setup)),
            ("address", addr(&s.address)),
        ],
    );
    let c = &flow.client_conn;
    let client_conn = connection(
        c,
        vec![
            ("proxy_mode", Encode::Text(&c.proxy_mode)),
            ("mitmcert", Encode::Null),
        ],
    );
    let version = i64::from(NEWEST_FORMAT);
    Encode::Dict(vec![
        ("websocket", Encode::Null),
        ("response", response),
        ("request", request),
        ("backup", Encode::Null),
        ("timestamp_created", Encode::Float(flow.timestamp_created)),
        ("comment", Encode::Text("")),
        ("metadata", Encode::Dict(vec![])),
        ("marked", Encode::Text("")),
        ("is_replay", Encode::Null),
        ("intercepted", Encode::Bool(false)),
        ("server_conn", server_conn),
        ("client_conn", client_conn),
        ("error", Encode::Null),
        ("id", Encode::Text(&flow.id)),
        ("type", Encode::Text("http")),
        ("version", Encode::Int(version)),
    ])
    .write(out);
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
        timestamp_created: t,
    };
    write_record(out, &record);
}
