//! Writes format-21 HTTP flows exactly as mitmproxy 11/12 lays them out (spec §g.4), so generated
//! recordings load in uringreplay and in real `mitmdump -S` alike. Used by the big-recording
//! generator, benches and tests; the server never writes flows.
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

/// The standard reason phrase for common statuses ("" for others).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
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

fn connection<'a>(
    id: &'a str,
    peer: (&'a str, i64),
    sock: (&'a str, i64),
    start: f64,
    extra: Vec<(&'a str, Encode<'a>)>,
) -> Encode<'a> {
    let addr = |(h, p): (&'a str, i64)| Encode::List(vec![Encode::Text(h), Encode::Int(p)]);
    let mut entries = extra;
    entries.extend([
        ("timestamp_tls_setup", Encode::Null),
        ("timestamp_end", Encode::Null),
        ("timestamp_start", Encode::Float(start)),
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
        ("id", Encode::Text(id)),
        ("sockname", addr(sock)),
        ("peername", addr(peer)),
    ]);
    Encode::Dict(entries)
}

/// Appends one format-21 HTTP flow, laid out as mitmproxy 12 writes it.
pub fn write_flow(out: &mut Vec<u8>, flow: &FlowSpec) {
    let port = i64::from(flow.port);
    let request = Encode::Dict(vec![
        ("path", Encode::Bytes(&flow.path)),
        ("authority", Encode::Bytes(b"")),
        ("scheme", Encode::Bytes(&flow.scheme)),
        ("method", Encode::Bytes(&flow.method)),
        ("port", Encode::Int(port)),
        ("host", Encode::Text(&flow.host)),
        (
            "timestamp_end",
            Encode::Float(flow.timestamp_start + 0.0005),
        ),
        ("timestamp_start", Encode::Float(flow.timestamp_start)),
        ("trailers", Encode::Null),
        ("content", content(&flow.content)),
        ("headers", header_list(&flow.headers)),
        ("http_version", Encode::Bytes(&flow.http_version)),
    ]);
    let response = flow.response.as_ref().map_or(Encode::Null, |r| {
        Encode::Dict(vec![
            ("reason", Encode::Bytes(&r.reason)),
            ("status_code", Encode::Int(i64::from(r.status_code))),
            ("timestamp_end", Encode::Float(r.timestamp_start + 0.0005)),
            ("timestamp_start", Encode::Float(r.timestamp_start)),
            ("trailers", Encode::Null),
            ("content", content(&r.content)),
            ("headers", header_list(&r.headers)),
            ("http_version", Encode::Bytes(&r.http_version)),
        ])
    });
    let t = flow.timestamp_start;
    let server_conn = connection(
        &flow.id,
        (&flow.host, port),
        ("127.0.0.1", 40000),
        t,
        vec![
            ("via", Encode::Null),
            ("timestamp_tcp_setup", Encode::Float(t)),
            (
                "address",
                Encode::List(vec![Encode::Text(&flow.host), Encode::Int(port)]),
            ),
        ],
    );
    let client_conn = connection(
        &flow.id,
        ("127.0.0.1", 50000),
        ("127.0.0.1", 8080),
        t,
        vec![
            ("proxy_mode", Encode::Text("regular")),
            ("mitmcert", Encode::Null),
        ],
    );
    let version = i64::from(NEWEST_FORMAT);
    Encode::Dict(vec![
        ("websocket", Encode::Null),
        ("response", response),
        ("request", request),
        ("backup", Encode::Null),
        ("timestamp_created", Encode::Float(t)),
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
