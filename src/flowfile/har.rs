//! HAR 1.2 input (browser devtools, Charles, Fiddler, mitmproxy's own export): every entry of
//! `log.entries` becomes one format-21 HTTP flow, mapped as mitmproxy ≥ 12.2 maps it
//! (`mitmproxy/io/har.py`, `request_to_flow`; spec §h). The flows are written once, at load, into
//! an owned buffer that the recording then reads and serves from like a mapped flow file.
#![forbid(unsafe_code)]

use base64::Engine;
use serde::Deserialize;
use thiserror::Error;

use super::writer::{numbered_id, write_record, ConnRecord, FlowRecord, MessageRecord};
use crate::http1::{split_absolute, split_authority};

/// Why a HAR document could not be read: where (entry and JSON path) and what.
#[derive(Debug, Error, PartialEq)]
#[error("{}{path}: {message}", entry.map_or(String::new(), |e| format!("entry {e}, ")))]
pub struct HarError {
    /// Index of the entry in `log.entries`, if the problem is inside one.
    pub entry: Option<usize>,
    /// The JSON path of the bad value, e.g. `log.entries[3].request.url`.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

/// The document: only `log.entries` matters; each entry is kept as its raw JSON text (a slice of
/// the file, no parsed tree of the whole document) and read on its own, so an error names it.
#[derive(Deserialize)]
struct Document<'a> {
    #[serde(borrow)]
    log: Log<'a>,
}

#[derive(Deserialize)]
struct Log<'a> {
    #[serde(borrow)]
    entries: Vec<&'a serde_json::value::RawValue>,
}

/// One entry; fields the HAR spec calls required but exports leave out default (Firefox).
#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "startedDateTime")]
    started: String,
    /// Milliseconds; Chrome writes negative values for unknown phases.
    #[serde(default)]
    time: Option<f64>,
    request: Request,
    response: Response,
    #[serde(rename = "serverIPAddress", default)]
    server_ip: Option<String>,
}

#[derive(Deserialize)]
struct Request {
    method: String,
    url: String,
    #[serde(rename = "httpVersion", default)]
    http_version: Option<String>,
    #[serde(default)]
    headers: Vec<Header>,
    #[serde(rename = "postData", default)]
    post_data: Option<PostData>,
}

#[derive(Deserialize)]
struct PostData {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct Response {
    status: u16,
    #[serde(rename = "httpVersion", default)]
    http_version: Option<String>,
    #[serde(default)]
    headers: Vec<Header>,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Deserialize, Default)]
struct Content {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
}

/// A header: `{"name": …, "value": …}` (browsers, Charles, Fiddler) or `[name, value]` (Slack).
#[derive(Deserialize)]
#[serde(untagged)]
enum Header {
    Object { name: String, value: String },
    Pair(String, String),
}

impl Header {
    fn into_field(self) -> (Vec<u8>, Vec<u8>) {
        match self {
            Header::Object { name, value } | Header::Pair(name, value) => {
                (name.into_bytes(), value.into_bytes())
            }
        }
    }
}

type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// Whether the bytes look like a HAR (JSON) document: `{` first, after an optional UTF-8 BOM.
pub fn is_har(bytes: &[u8]) -> bool {
    strip_bom(bytes).first() == Some(&b'{')
}

fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// Converts a HAR document into format-21 flow bytes, one flow per entry, in order. `file` goes
/// into the flows' ids so flows of different files differ.
pub fn to_flows(bytes: &[u8], file: u32) -> Result<Vec<u8>, HarError> {
    let top = |message: String, path: &str| HarError {
        entry: None,
        path: path.to_string(),
        message,
    };
    let json = strip_bom(bytes);
    let doc: Document = {
        let mut de = serde_json::Deserializer::from_slice(json);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = match e.path().to_string() {
                root if root == "." => "the document".to_string(),
                path => path,
            };
            top(e.into_inner().to_string(), &path)
        })?
    };
    let mut out = Vec::with_capacity(json.len());
    for (index, raw) in doc.log.entries.into_iter().enumerate() {
        let at = |path: &str, message: String| HarError {
            entry: Some(index),
            path: format!(
                "log.entries[{index}]{}{path}",
                if path.is_empty() { "" } else { "." }
            ),
            message,
        };
        let mut de = serde_json::Deserializer::from_str(raw.get());
        let entry: Entry = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            at(
                if path == "." { "" } else { &path },
                in_file(&e.into_inner(), json, raw.get()),
            )
        })?;
        let flow =
            entry_to_flow(entry, file, index).map_err(|(path, message)| at(path, message))?;
        write_record(&mut out, &flow);
    }
    out.shrink_to_fit();
    Ok(out)
}

/// The message of an error inside an entry with its position in the file: serde_json counts
/// lines and columns from the entry's first byte (`entry` is a slice of `json`).
fn in_file(error: &serde_json::Error, json: &[u8], entry: &str) -> String {
    let text = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    let (Some(message), Some(start)) = (
        text.strip_suffix(&suffix),
        (entry.as_ptr() as usize)
            .checked_sub(json.as_ptr() as usize)
            .filter(|&start| start <= json.len()),
    ) else {
        return text;
    };
    let before = &json[..start];
    let line = before.iter().filter(|&&b| b == b'\n').count() + error.line();
    let column = match error.line() {
        1 => {
            start
                - before
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |p| p + 1)
                + error.column()
        }
        _ => error.column(),
    };
    format!("{message} at line {line} column {column}")
}

/// `(JSON path inside the entry, message)`.
type EntryError = (&'static str, String);

fn entry_to_flow(entry: Entry, file: u32, index: usize) -> Result<FlowRecord, EntryError> {
    let start = parse_time(&entry.started).ok_or_else(|| {
        (
            "startedDateTime",
            format!("{:?} is not an ISO 8601 date and time", entry.started),
        )
    })?;
    let end = start + entry.time.unwrap_or(0.0) / 1000.0;
    let url = &entry.request.url;
    let (scheme, host, port, path) = parse_url(url).ok_or_else(|| {
        (
            "request.url",
            format!("{url:?} is not an absolute http(s) URL with a host"),
        )
    })?;

    // The request, as `Request.make(method, url, text, headers)` then `decode()` leave it.
    let mut headers: Fields = entry
        .request
        .headers
        .into_iter()
        .map(Header::into_field)
        .collect();
    if get(&headers, b"host").is_some() {
        set(
            &mut headers,
            b"Host",
            host_port(&scheme, &host, port).into_bytes(),
        );
    }
    let text = entry
        .request
        .post_data
        .and_then(|p| p.text)
        .unwrap_or_default();
    let content_type = get(&headers, b"content-type").unwrap_or_default();
    let body = match encode_text(&text, &infer_charset(&content_type)) {
        Some(body) => body,
        None => {
            set(
                &mut headers,
                b"content-type",
                with_utf8_charset(&content_type),
            );
            text.into_bytes()
        }
    };
    let request_coding = coding(&headers);
    if request_coding == Coding::Unknown {
        remove(&mut headers, b"content-encoding");
    }
    if request_coding == Coding::Compressing || !body.is_empty() {
        remove(&mut headers, b"content-encoding");
    }
    set_length(&mut headers, body.len());
    let request = MessageRecord {
        http_version: version(entry.request.http_version.as_deref()),
        headers,
        content: Some(body),
        trailers: None,
        timestamp_start: start,
        timestamp_end: Some(end),
    };

    let response = response_of(entry.response, start, end)?;

    let number = |n: u64| numbered_id(u64::from(file) << 32 | index as u64, n);
    let default_port = if url.starts_with("http://") { 80 } else { 443 };
    Ok(FlowRecord {
        id: number(0),
        method: entry.request.method.into_bytes(),
        scheme: scheme.into_bytes(),
        authority: Vec::new(),
        host,
        port,
        path,
        request,
        response,
        client_conn: ConnRecord {
            id: number(1),
            peername: Some(("127.0.0.1".to_string(), 0)),
            sockname: Some(("127.0.0.1".to_string(), 0)),
            timestamp_start: Some(start),
            timestamp_end: Some(end),
            proxy_mode: "regular".to_string(),
            ..ConnRecord::default()
        },
        server_conn: ConnRecord {
            id: number(2),
            address: entry
                .server_ip
                .filter(|ip| !ip.is_empty())
                .map(|ip| (ip, default_port)),
            ..ConnRecord::default()
        },
        error: None,
        timestamp_created: start,
    })
}

/// The flow's response from a HAR entry's, as mitmproxy's `request_to_flow` makes it; `None`
/// for status 0, which browsers write for a request that got no response (blocked, cancelled):
/// the entry becomes a flow without a response, which replay does not serve (mitmproxy would
/// load it as a response with status 0 and send that).
fn response_of(
    response: Response,
    start: f64,
    end: f64,
) -> Result<Option<(u16, Vec<u8>, MessageRecord)>, EntryError> {
    if response.status == 0 {
        return Ok(None);
    }
    // The response, as `Response(...)` then `decode()` leave it.
    let mut headers: Fields = response
        .headers
        .into_iter()
        .map(Header::into_field)
        .collect();
    let content = response.content.unwrap_or_default();
    let text = content.text.unwrap_or_default();
    let body = match content.encoding.as_deref() {
        Some("base64") => {
            decode_base64(&text).ok_or(("response.content.text", "not valid base64".to_string()))?
        }
        given => {
            let charset = match given {
                Some(c) if !c.is_empty() => c.to_string(),
                _ => infer_charset(&get(&headers, b"content-type").unwrap_or_default()),
            };
            encode_text(&text, &charset).unwrap_or_else(|| text.into_bytes())
        }
    };
    match coding(&headers) {
        Coding::Unknown => {
            return Err((
                "response.headers",
                format!(
                    "Content-Encoding {:?} is not gzip, deflate, br, zstd or identity \
                     (mitmproxy refuses such a file too)",
                    get(&headers, b"content-encoding").unwrap_or_default()
                ),
            ))
        }
        Coding::Compressing => {
            remove(&mut headers, b"content-encoding");
            set_length(&mut headers, body.len());
        }
        Coding::Identity if !body.is_empty() => {
            remove(&mut headers, b"content-encoding");
            set_length(&mut headers, body.len());
        }
        Coding::Identity => {}
    }
    let status = response.status;
    if !(100..=999).contains(&status) {
        return Err((
            "response.status",
            format!("{status} is not an HTTP status code (100–999)"),
        ));
    }
    let message = MessageRecord {
        http_version: version(response.http_version.as_deref()),
        headers,
        content: Some(body),
        trailers: None,
        timestamp_start: start,
        timestamp_end: Some(end),
    };
    Ok(Some((
        status,
        super::writer::reason_phrase(status).as_bytes().to_vec(),
        message,
    )))
}

/// `startedDateTime` as Python's `datetime.fromisoformat` reads it (`Z` accepted); without an
/// offset it is taken as UTC (mitmproxy: local time).
fn parse_time(s: &str) -> Option<f64> {
    use time::format_description::well_known::Iso8601;
    let s = s.trim();
    // Python accepts any one character between date and time; ISO 8601 wants `T`.
    let s = match s.as_bytes().get(10) {
        Some(b' ') => format!("{}T{}", &s[..10], &s[11..]),
        _ => s.to_string(),
    };
    let at = time::OffsetDateTime::parse(&s, &Iso8601::DEFAULT)
        .or_else(|_| time::PrimitiveDateTime::parse(&s, &Iso8601::DEFAULT).map(|t| t.assume_utc()))
        .or_else(|_| time::Date::parse(&s, &Iso8601::DEFAULT).map(|d| d.midnight().assume_utc()))
        .ok()?;
    Some(at.unix_timestamp_nanos() as f64 / 1e9)
}

/// The URL as mitmproxy's `url.parse` splits it: lower-case scheme and host (no brackets, no
/// user info), the port (the scheme's default when absent), and the path with query and fragment.
fn parse_url(url: &str) -> Option<(String, String, u16, Vec<u8>)> {
    let (scheme, authority, rest) = split_absolute(url.as_bytes())?;
    let (authority, fragment) = match authority.iter().position(|&b| b == b'#') {
        Some(i) => (&authority[..i], &authority[i..]),
        None => (authority, &b""[..]),
    };
    let authority = match authority.iter().rposition(|&b| b == b'@') {
        Some(i) => &authority[i + 1..],
        None => authority,
    };
    let (host, port) = split_authority(authority)?;
    if host.is_empty() {
        return None;
    }
    let scheme = String::from_utf8_lossy(scheme).to_ascii_lowercase();
    let port = match port {
        Some(p) if p != 0 => p,
        _ if scheme == "https" => 443,
        _ => 80,
    };
    let mut path = if fragment.is_empty() {
        rest.to_vec()
    } else {
        [b"/", fragment].concat()
    };
    if !path.starts_with(b"/") {
        path.insert(0, b'/');
    }
    let host = std::str::from_utf8(host).ok()?.to_lowercase();
    Some((scheme, host, port, path))
}

/// `host[:port]`, the port left out when it is the scheme's default (mitmproxy's `hostport`).
fn host_port(scheme: &str, host: &str, port: u16) -> String {
    match (scheme, port) {
        ("http", 80) | ("https", 443) => host.to_string(),
        _ => format!("{host}:{port}"),
    }
}

/// mitmproxy's HTTP version spelling rules for HAR: only `http/2.0` and `HTTP/2` are HTTP/2,
/// only `HTTP/3` is HTTP/3, anything else (missing too) is HTTP/1.1.
fn version(given: Option<&str>) -> Vec<u8> {
    match given {
        Some("http/2.0" | "HTTP/2") => b"HTTP/2".to_vec(),
        Some("HTTP/3") => b"HTTP/3".to_vec(),
        _ => b"HTTP/1.1".to_vec(),
    }
}

/// All values of a field (any case), joined with `, ` as mitmproxy's `Headers.get` does.
fn get(headers: &Fields, name: &[u8]) -> Option<String> {
    let values: Vec<_> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// mitmproxy's `headers[name] = value`: the first field of that name gets the value (keeping its
/// spelling), later ones go; without one, the field is appended as spelled here.
fn set(headers: &mut Fields, name: &[u8], value: Vec<u8>) {
    match headers
        .iter()
        .position(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        Some(first) => {
            headers[first].1 = value;
            let mut i = 0;
            headers.retain(|(n, _)| {
                i += 1;
                i - 1 == first || !n.eq_ignore_ascii_case(name)
            });
        }
        None => headers.push((name.to_vec(), value)),
    }
}

fn remove(headers: &mut Fields, name: &[u8]) {
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
}

/// `content-length` set to the body's length unless a `Transfer-Encoding` field exists.
fn set_length(headers: &mut Fields, len: usize) {
    if get(headers, b"transfer-encoding").is_none() {
        set(headers, b"content-length", len.to_string().into_bytes());
    }
}

/// What a message's Content-Encoding means to mitmproxy's encoder.
#[derive(Debug, PartialEq, Eq)]
enum Coding {
    /// None, empty, `identity` or `none`.
    Identity,
    /// `gzip`, `deflate`, `deflateraw`, `br` or `zstd`: encoding even an empty body gives bytes.
    Compressing,
    /// Anything else (mitmproxy's encoder fails on it).
    Unknown,
}

fn coding(headers: &Fields) -> Coding {
    match get(headers, b"content-encoding")
        .map(|c| c.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("" | "identity" | "none") => Coding::Identity,
        Some("gzip" | "deflate" | "deflateraw" | "br" | "zstd") => Coding::Compressing,
        Some(_) => Coding::Unknown,
    }
}

/// mitmproxy's `infer_content_encoding` for a body not yet known: the `charset` parameter, else
/// UTF-8 for JSON, HTML, XML, JavaScript and CSS, else latin-1.
fn infer_charset(content_type: &str) -> String {
    let charset = content_type
        .split_once(';')
        .filter(|(t, _)| t.contains('/'))
        .and_then(|(_, params)| {
            params.split(';').find_map(|p| {
                let (k, v) = p.split_once('=')?;
                (k.trim() == "charset").then(|| v.trim().to_string())
            })
        })
        .filter(|c| !c.is_empty());
    if let Some(c) = charset {
        return c;
    }
    let utf8 = [
        "json",
        "html",
        "xml",
        "javascript",
        "ecmascript",
        "text/css",
    ];
    if utf8.iter().any(|t| content_type.contains(t)) {
        "utf8".to_string()
    } else {
        "latin-1".to_string()
    }
}

/// `text` in `charset`, or `None` where mitmproxy's encoding fails (a character the charset
/// lacks). Charsets other than UTF-8, latin-1 and ASCII encode ASCII text as itself and
/// anything else as failing (mitmproxy would use Python's codec).
fn encode_text(text: &str, charset: &str) -> Option<Vec<u8>> {
    let name = charset
        .trim()
        .trim_matches(|c| c == '"' || c == '\'')
        .to_ascii_lowercase()
        .replace('_', "-");
    match name.as_str() {
        "utf-8" | "utf8" | "u8" | "utf" | "cp65001" => Some(text.as_bytes().to_vec()),
        "latin-1" | "latin1" | "iso-8859-1" | "iso8859-1" | "8859" | "cp819" | "l1" | "latin" => {
            text.chars()
                .map(|c| u8::try_from(u32::from(c)).ok())
                .collect()
        }
        _ => text.is_ascii().then(|| text.as_bytes().to_vec()),
    }
}

/// `content-type` with `charset=utf-8`, as mitmproxy rewrites it when a text does not encode
/// (`text/plain` when there was none).
fn with_utf8_charset(content_type: &str) -> Vec<u8> {
    let (main, params) = content_type.split_once(';').unwrap_or((content_type, ""));
    let Some((t, sub)) = main.split_once('/') else {
        return b"text/plain; charset=utf-8".to_vec();
    };
    let mut pairs: Vec<(String, String)> = params
        .split(';')
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    match pairs.iter_mut().find(|(k, _)| k == "charset") {
        Some(pair) => pair.1 = "utf-8".to_string(),
        None => pairs.push(("charset".to_string(), "utf-8".to_string())),
    }
    let params: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{}/{}; {}",
        t.to_lowercase(),
        sub.to_lowercase(),
        params.join("; ")
    )
    .into_bytes()
}

/// Base64 as Python's `b64decode` reads it: characters outside the alphabet are dropped.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let clean: Vec<u8> = text
        .bytes()
        .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        .collect();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    engine.decode(clean).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_as_mitmproxy_splits_them() {
        let p = |u: &str| {
            parse_url(u).map(|(s, h, p, path)| (s, h, p, String::from_utf8(path).unwrap()))
        };
        assert_eq!(
            p("https://User:pw@Example.TEST/app?x=1#f"),
            Some((
                "https".into(),
                "example.test".into(),
                443,
                "/app?x=1#f".into()
            ))
        );
        assert_eq!(
            p("http://[::1]:8080"),
            Some(("http".into(), "::1".into(), 8080, "/".into()))
        );
        assert_eq!(
            p("http://a.test#frag"),
            Some(("http".into(), "a.test".into(), 80, "/#frag".into()))
        );
        assert_eq!(p("data:text/plain,hi"), None);
        assert_eq!(p("http:///nohost"), None);
    }

    #[test]
    fn times_read_with_and_without_offsets() {
        assert_eq!(parse_time("2026-11-27T10:00:00Z"), Some(1_795_773_600.0));
        assert_eq!(
            parse_time("2026-11-27T10:00:00.5+02:00"),
            Some(1_795_766_400.5)
        );
        assert_eq!(parse_time("2026-11-27 10:00:01.5"), Some(1_795_773_601.5));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn charsets_follow_the_content_type() {
        assert_eq!(infer_charset("text/plain"), "latin-1");
        assert_eq!(infer_charset("application/json"), "utf8");
        assert_eq!(infer_charset("text/html; charset=Shift_JIS"), "Shift_JIS");
        assert_eq!(encode_text("é", "latin-1"), Some(vec![0xe9]));
        assert_eq!(encode_text("€", "latin-1"), None);
        assert_eq!(encode_text("é", "\"UTF_8\""), Some("é".as_bytes().to_vec()));
        assert_eq!(
            with_utf8_charset("application/x-www-form-urlencoded"),
            b"application/x-www-form-urlencoded; charset=utf-8"
        );
    }

    #[test]
    fn set_replaces_the_first_field_keeping_its_spelling_and_drops_the_rest() {
        let mut h: Fields = vec![
            (b"Host".to_vec(), b"a".to_vec()),
            (b"x".to_vec(), b"1".to_vec()),
            (b"HOST".to_vec(), b"b".to_vec()),
        ];
        set(&mut h, b"host", b"c".to_vec());
        assert_eq!(
            h,
            vec![
                (b"Host".to_vec(), b"c".to_vec()),
                (b"x".to_vec(), b"1".to_vec())
            ]
        );
        set(&mut h, b"content-length", b"0".to_vec());
        assert_eq!(h[2], (b"content-length".to_vec(), b"0".to_vec()));
    }

    #[test]
    fn a_status_of_0_is_a_flow_without_a_response_and_other_statuses_out_of_range_are_errors() {
        // Chrome's export of a blocked or cancelled request: status 0, maybe odd headers.
        let har = br#"{"log":{"entries":[
            {"startedDateTime":"2024-01-01T00:00:00Z","request":{"method":"GET","url":"http://a/"},"response":{"status":200}},
            {"startedDateTime":"2024-01-01T00:00:01Z","request":{"method":"GET","url":"http://a/b"},"response":{"status":0,"headers":[["Content-Encoding","sdch"]]}}]}}"#;
        let flows = to_flows(har, 0).unwrap();
        let rec = crate::flowfile::Recording::from_bytes(
            vec![("t.flows".into(), flows)],
            crate::flowfile::LoadOptions::default(),
        )
        .unwrap();
        assert_eq!(rec.summary().http_flows, 2);
        assert_eq!(rec.summary().without_response, 1);
        assert_eq!(rec.len(), 2);
        assert!(rec.has_response(0));
        assert!(!rec.has_response(1), "status 0 is not served");
        assert_eq!(rec.flow(1).request.path, b"/b");

        let bad = br#"{"log":{"entries":[
            {"startedDateTime":"2024-01-01T00:00:01Z","request":{"method":"GET","url":"http://a/b"},"response":{"status":1000}}]}}"#;
        let err = to_flows(bad, 0).unwrap_err();
        assert_eq!(err.entry, Some(0));
        assert!(err.path.ends_with("response.status"), "{}", err.path);
        assert!(
            err.message.contains("not an HTTP status code"),
            "{}",
            err.message
        );
    }

    #[test]
    fn an_error_inside_an_entry_gives_the_files_line_and_column() {
        let har = b"{\"log\": {\"entries\": [\n  {\"startedDateTime\": \"2024-01-01T00:00:00Z\",\n   \"request\": {\"method\": \"GET\", \"url\": \"http://a/\"},\n   \"response\": {\"status\": \"x\"}}]}}";
        let err = to_flows(har, 0).unwrap_err();
        assert_eq!(err.path, "log.entries[0].response.status");
        // serde_json reports the position just after the bad value.
        let text = std::str::from_utf8(har).unwrap();
        let line = text.lines().nth(3).unwrap();
        let column = line.find("\"x\"").unwrap() + 3;
        assert_eq!(
            err.message,
            format!("invalid type: string \"x\", expected u16 at line 4 column {column}")
        );
        // On the entry's first line the entry's own column counts too.
        let one_line = b"{\"log\": {\"entries\": [{\"startedDateTime\": 5}]}}";
        let err = to_flows(one_line, 0).unwrap_err();
        let column = one_line.iter().position(|&b| b == b'5').unwrap() + 1;
        assert!(
            err.message
                .ends_with(&format!(" at line 1 column {column}")),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_bad_entry_is_named_with_its_json_path() {
        let doc = br#"{"log":{"entries":[
            {"startedDateTime":"2026-11-27T10:00:00Z","time":1,
             "request":{"method":"GET","url":"http://a.test/"},"response":{"status":200}},
            {"startedDateTime":"2026-11-27T10:00:00Z","time":1,
             "request":{"method":"GET","url":"http://a.test/","headers":[{"name":"x"}]},
             "response":{"status":200}}]}}"#;
        let e = to_flows(doc, 0).unwrap_err();
        assert_eq!(e.entry, Some(1));
        assert_eq!(e.path, "log.entries[1].request.headers[0]");
        let e = to_flows(br#"{"log":{"entries":[{"startedDateTime":"x","time":1,"request":{"method":"GET","url":"http://a.test/"},"response":{"status":200}}]}}"#, 0).unwrap_err();
        assert_eq!(e.path, "log.entries[0].startedDateTime");
        let e = to_flows(br#"{"log":{}}"#, 0).unwrap_err();
        assert_eq!((e.entry, e.path.as_str()), (None, "log"));
        assert!(e.message.contains("entries"), "{e}");
        let e = to_flows(br#"{"x":1}"#, 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the document: missing field `log` at line 1 column 7"
        );
    }

    #[test]
    fn an_unknown_response_content_encoding_refuses_the_file() {
        let doc = br#"{"log":{"entries":[{"startedDateTime":"2026-11-27T10:00:00Z","time":1,
            "request":{"method":"GET","url":"http://a.test/"},
            "response":{"status":200,"headers":[["Content-Encoding","sdch"]],"content":{"text":"x"}}}]}}"#;
        let e = to_flows(doc, 0).unwrap_err();
        assert_eq!(e.path, "log.entries[0].response.headers");
        assert!(e.message.contains("sdch"), "{e}");
    }
}
