//! Reading real mitmproxy recordings (tests/fixtures, written by mitmproxy 6.0.2 to 12.3.1) and
//! every kind of broken file, each error asserting the offset where the bad value starts.

use std::path::PathBuf;

use super::mitm::{ErrorKind, FormatVersion};
use super::tnetstring::{write_bytes, TnetErrorKind};
use super::writer::{write_flow, Encode, FlowSpec};
use super::{LoadError, LoadEvent, LoadOptions, Recording};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

const RELEASE_FILES: [(&str, u32); 5] = [
    ("mitm-6.0.2-v10.flows", 10),
    ("mitm-7.0.4-v14.flows", 14),
    ("mitm-8.1.1-v17.flows", 17),
    ("mitm-10.4.2-v20.flows", 20),
    ("mitm-12.3.1-v21.flows", 21),
];

fn open(name: &str) -> Recording {
    Recording::open(&[fixture(name)], LoadOptions::default(), &mut |_| {})
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn load_bytes(bytes: Vec<u8>) -> Result<Recording, LoadError> {
    Recording::from_bytes(
        vec![(PathBuf::from("test.flows"), bytes)],
        LoadOptions::default(),
    )
}

fn flow_error(bytes: Vec<u8>) -> super::FlowError {
    match load_bytes(bytes) {
        Err(LoadError::Flow { error, .. }) => error,
        other => panic!("expected a flow error, got {other:?}"),
    }
}

/// (method, path, status, response body) of the 12-request session, per tests/fixtures/README.md.
fn session() -> Vec<(&'static str, &'static str, u16, Vec<u8>)> {
    vec![
        ("GET", "/hello", 200, b"hello world\n".to_vec()),
        (
            "GET",
            "/echo?q=search&page=2&tag=a&tag=b",
            200,
            b"{\"n\": 1, \"query\": [[\"q\", \"search\"], [\"page\", \"2\"], [\"tag\", \"a\"], [\"tag\", \"b\"]]}\n".to_vec(),
        ),
        (
            "POST",
            "/form",
            200,
            b"{\"body\": \"user=alice&csrf=tok1&ts=111\", \"content_type\": \"application/x-www-form-urlencoded\", \"length\": 27, \"n\": 1}\n".to_vec(),
        ),
        (
            "POST",
            "/form",
            200,
            b"{\"body\": \"{\\\"k\\\": 1, \\\"name\\\": \\\"caf\\u00e9\\\"}\", \"content_type\": \"application/json\", \"length\": 25, \"n\": 2}\n".to_vec(),
        ),
        (
            "GET",
            "/session-dates",
            200,
            b"session with dated headers and cookies\n".to_vec(),
        ),
        (
            "GET",
            "/chunked",
            200,
            b"chunk-one\nchunk-two-is-longer\nchunk-three\n".to_vec(),
        ),
        ("GET", "/gzip", 200, Vec::new()), // checked separately: 579 bytes of gzip
        ("GET", "/nocontent", 204, Vec::new()),
        ("HEAD", "/resource", 200, Vec::new()),
        ("GET", "/missing", 404, b"not found: /missing (1)\n".to_vec()),
        ("GET", "/counter", 200, b"counter=1 path=/counter\n".to_vec()),
        ("GET", "/counter", 200, b"counter=2 path=/counter\n".to_vec()),
    ]
}

#[test]
fn every_release_file_reads_the_same_session() {
    for (name, version) in RELEASE_FILES {
        let rec = open(name);
        assert_eq!(rec.len(), 12, "{name}");
        assert_eq!(rec.summary().without_response, 0, "{name}");
        assert_eq!(
            rec.summary().versions.iter().copied().collect::<Vec<_>>(),
            vec![FormatVersion::Number(version)],
            "{name}"
        );
        for (flow, (method, path, status, body)) in rec.flows().zip(session()) {
            let req = &flow.request;
            let resp = flow.response.expect("every fixture flow has a response");
            let what = format!("{name} flow {}", flow.number);
            assert_eq!(req.method, method.as_bytes(), "{what}");
            assert_eq!(req.path, path.as_bytes(), "{what}");
            assert_eq!(req.scheme, b"http", "{what}");
            assert_eq!(req.host, b"127.0.0.1", "{what}");
            assert_eq!(req.port, 29411, "{what}");
            assert_eq!(req.authority, b"", "{what}");
            assert_eq!(req.http_version, b"HTTP/1.1", "{what}");
            assert_eq!(
                req.headers.get(b"host"),
                Some(&b"127.0.0.1:29411"[..]),
                "{what}"
            );
            assert_eq!(req.trailers, None, "{what}");
            assert_eq!(resp.status_code, status, "{what}");
            assert_eq!(resp.http_version, b"HTTP/1.1", "{what}");
            assert_eq!(
                resp.headers.get(b"server"),
                Some(&b"oracle-origin/1"[..]),
                "{what}"
            );
            assert!(resp.timestamp_start >= req.timestamp_start, "{what}");
            if path != "/gzip" {
                assert_eq!(resp.content, Some(&body[..]), "{what}");
            }
        }
    }
}

#[test]
fn fixture_flows_keep_the_details_the_readme_describes() {
    for (name, _) in RELEASE_FILES {
        let rec = open(name);
        let form = rec.flow(2).request;
        assert_eq!(form.content, Some(&b"user=alice&csrf=tok1&ts=111"[..]));
        let json = rec.flow(3).request;
        assert_eq!(
            json.content,
            Some("{\"k\": 1, \"name\": \"café\"}".as_bytes())
        );

        let dates = rec.flow(4).response.unwrap();
        let cookies: Vec<_> = dates.headers.get_all(b"set-cookie").collect();
        assert_eq!(cookies.len(), 2, "{name}");
        assert!(cookies[0].starts_with(b"sid=s-0001; Expires="), "{name}");
        assert_eq!(
            cookies[1],
            &b"theme=dark; Expires=Wed, 09 Jun 2038 10:18:14 GMT; Path=/"[..]
        );
        assert_eq!(
            dates.headers.get(b"last-modified"),
            Some(&b"Wed, 21 Oct 2015 07:28:00 GMT"[..])
        );

        let chunked = rec.flow(5).response.unwrap();
        assert_eq!(
            chunked.headers.get(b"transfer-encoding"),
            Some(&b"chunked"[..])
        );
        assert_eq!(chunked.headers.get(b"content-length"), None);

        let gzip = rec.flow(6).response.unwrap();
        let body = gzip.content.unwrap();
        assert_eq!(body.len(), 579, "{name}");
        assert_eq!(&body[..2], b"\x1f\x8b", "{name}: stored still compressed");
        assert_eq!(gzip.headers.get(b"content-encoding"), Some(&b"gzip"[..]));

        let nocontent = rec.flow(7).response.unwrap();
        assert_eq!(nocontent.content, Some(&b""[..]), "empty, not null");
        assert_eq!(nocontent.headers.get(b"x-kind"), Some(&b"no-content"[..]));

        let head = rec.flow(8).response.unwrap();
        assert_eq!(head.headers.get(b"content-length"), Some(&b"35"[..]));
        assert_eq!(head.content, Some(&b""[..]));

        assert_eq!(
            rec.flow(10).response.unwrap().headers.get(b"x-counter"),
            Some(&b"1"[..])
        );
        assert_eq!(
            rec.flow(11).response.unwrap().headers.get(b"x-counter"),
            Some(&b"2"[..])
        );
    }
}

#[test]
fn bodies_are_slices_of_the_mapping() {
    let rec = open("demo.flows");
    let body = rec.flow(0).response.unwrap().content.unwrap();
    let span = rec.span_of(body).expect("body lies inside the mapped file");
    assert_eq!(rec.bytes(span), b"hello world\n");
    assert_eq!(rec.index_heap_bytes(), 12 * 32);
}

#[test]
fn several_files_read_in_order_as_one_recording() {
    let paths = [fixture("mitm-6.0.2-v10.flows"), fixture("demo.flows")];
    let rec = Recording::open(&paths, LoadOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(rec.len(), 24);
    assert_eq!(rec.summary().files, 2);
    assert_eq!(rec.flow(12).file, 1);
    assert_eq!(rec.flow(12).number, 1);
    assert_eq!(rec.flow(23).request.path, b"/counter");
    assert_eq!(rec.summary().versions.len(), 2);
}

/// Every field a flow view shows, as owned values (timestamps to the microsecond).
fn flow_fields(rec: &Recording, id: usize) -> String {
    let f = rec.flow(id);
    let r = &f.request;
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let headers = |h: super::Headers<'_>| {
        h.iter()
            .map(|(n, v)| format!("{}: {}", s(n), s(v)))
            .collect::<Vec<_>>()
    };
    let us = |t: f64| (t * 1e6).round() as i64;
    let mut out = format!(
        "{} {}://{}:{}{} {} auth={:?} start={} end={:?} headers={:?} content={:?}",
        s(r.method),
        s(r.scheme),
        s(r.host),
        r.port,
        s(r.path),
        s(r.http_version),
        s(r.authority),
        us(r.timestamp_start),
        r.timestamp_end.map(us),
        headers(r.headers),
        r.content.map(s),
    );
    if let Some(resp) = &f.response {
        out += &format!(
            " << {} {} {} start={} end={:?} headers={:?} content={:?}",
            s(resp.http_version),
            resp.status_code,
            s(resp.reason),
            us(resp.timestamp_start),
            resp.timestamp_end.map(us),
            headers(resp.headers),
            resp.content.map(s),
        );
    }
    out
}

/// Each HAR fixture reads as the flow file mitmproxy 12.3.1 made of it (`mitmdump -nr X.har -w
/// X.mitm.flows`), field for field.
#[test]
fn har_files_read_as_mitmproxy_converts_them() {
    for har in [
        "mitm-12.3.1-v21.har",
        "har/chrome.har",
        "har/firefox.har",
        "har/edge.har",
    ] {
        let twin = format!(
            "har/{}.mitm.flows",
            har.trim_start_matches("har/").trim_end_matches(".har")
        );
        let twin = if har.starts_with("mitm") {
            "har/mitm-12.3.1-v21.har.mitm.flows".to_string()
        } else {
            twin
        };
        let ours = open(har);
        let theirs = open(&twin);
        assert_eq!(ours.len(), theirs.len(), "{har}");
        assert!(!ours.is_empty(), "{har}");
        for id in 0..ours.len() {
            assert_eq!(
                flow_fields(&ours, id),
                flow_fields(&theirs, id),
                "{har} flow {id}"
            );
        }
        assert!(ours.summary().har_bytes > 0);
    }
}

#[test]
fn a_malformed_har_names_the_file_entry_and_json_path() {
    let doc = br#"{"log":{"entries":[
        {"startedDateTime":"2026-11-27T10:00:00Z","time":1,
         "request":{"method":"GET","url":"http://a.test/"},"response":{"status":200}},
        {"startedDateTime":"2026-11-27T10:00:00Z","time":1,
         "request":{"method":"GET","url":"http://a.test/"},"response":{"status":"ok"}}]}}"#;
    let err = Recording::from_bytes(
        vec![(PathBuf::from("bad.har"), doc.to_vec())],
        LoadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, LoadError::Har { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(
            "bad.har: this HAR file cannot be read: entry 1, log.entries[1].response.status: "
        ),
        "{text}"
    );
}

#[test]
fn har_and_flow_files_mix_in_one_recording() {
    let rec = Recording::open(
        &[fixture("mitm-12.3.1-v21.flows"), fixture("har/chrome.har")],
        LoadOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(rec.len(), 16);
    assert_eq!(rec.flow(12).file, 1);
    assert_eq!(rec.flow(12).request.path, b"/app?x=1#frag");
}

#[test]
fn an_empty_file_is_zero_flows() {
    let rec = load_bytes(Vec::new()).unwrap();
    assert_eq!(rec.len(), 0);
}

#[test]
fn missing_file_names_the_path() {
    let err = Recording::open(
        &[PathBuf::from("/nonexistent/x.flows")],
        LoadOptions::default(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(err
        .to_string()
        .starts_with("/nonexistent/x.flows: cannot read the file"));
}

fn two_flows() -> (Vec<u8>, u64) {
    let mut bytes = Vec::new();
    write_flow(&mut bytes, &FlowSpec::get("/a", 200, b"first"));
    let second = bytes.len() as u64;
    write_flow(&mut bytes, &FlowSpec::get("/b", 200, b"second"));
    (bytes, second)
}

#[test]
fn truncated_last_flow_has_its_own_message() {
    let (mut bytes, second) = two_flows();
    bytes.truncate(bytes.len() - 100);
    let err = flow_error(bytes);
    assert_eq!((err.flow, err.offset), (2, second));
    assert!(matches!(err.kind, ErrorKind::TruncatedFlow { .. }));
    assert!(err.to_string().contains("cut off"), "{err}");
}

#[test]
fn skip_bad_flows_keeps_everything_before_a_truncated_tail() {
    let (mut bytes, second) = two_flows();
    bytes.truncate(bytes.len() - 1);
    let mut warnings = Vec::new();
    let rec = Recording::from_bytes(
        vec![(PathBuf::from("t.flows"), bytes.clone())],
        LoadOptions {
            skip_bad_flows: true,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    assert_eq!(rec.len(), 1);
    assert_eq!(rec.summary().bad_flows, 1);
    // The same through the event callback, as inspect and the server print them.
    let contents = super::mitm::read_flows(&bytes, 0, true, &mut |e| {
        if let super::mitm::ReadEvent::SkippedBadFlow(err) = e {
            warnings.push((err.flow, err.offset));
        }
    })
    .unwrap();
    assert_eq!(contents.flows.len(), 1);
    assert_eq!(warnings, vec![(2, second)]);
}

#[test]
fn skip_bad_flows_skips_a_bad_flow_in_the_middle_and_goes_on() {
    let mut bytes = Vec::new();
    write_flow(&mut bytes, &FlowSpec::get("/a", 200, b"x"));
    let bad = bytes.len() as u64;
    Encode::Dict(vec![
        ("version", Encode::Int(99)),
        ("type", Encode::Text("http")),
    ])
    .write(&mut bytes);
    write_flow(&mut bytes, &FlowSpec::get("/c", 200, b"z"));
    let err = flow_error(bytes.clone());
    assert_eq!((err.flow, err.offset > bad), (2, true));
    let rec = Recording::from_bytes(
        vec![(PathBuf::from("t.flows"), bytes)],
        LoadOptions {
            skip_bad_flows: true,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    assert_eq!(rec.len(), 2);
    assert_eq!(rec.flow(1).request.path, b"/c");
    assert_eq!(rec.flow(1).number, 3);
}

#[test]
fn bad_length_prefix_names_the_offset() {
    let (mut bytes, second) = two_flows();
    bytes[second as usize] = b'x';
    let err = flow_error(bytes);
    assert_eq!((err.flow, err.offset), (2, second));
    assert!(matches!(
        err.kind,
        ErrorKind::Tnet(TnetErrorKind::BadLengthPrefix { .. })
    ));
}

#[test]
fn length_prefix_past_the_end_of_an_inner_value_names_it() {
    // A flow whose `type` value claims 9 bytes inside a 4-byte remainder.
    let mut inner = Vec::new();
    write_bytes(&mut inner, b';', b"type");
    let value_at = inner.len();
    inner.extend_from_slice(b"9:http;");
    let mut bytes = Vec::new();
    write_bytes(&mut bytes, b'}', &inner);
    let prefix = bytes.iter().position(|&b| b == b':').unwrap() + 1;
    let err = flow_error(bytes);
    assert_eq!(err.offset, (prefix + value_at) as u64);
    assert!(matches!(
        err.kind,
        ErrorKind::Tnet(TnetErrorKind::LengthPastEnd { length: 9, .. })
    ));
    assert!(
        err.to_string()
            .contains("length prefix 9 runs past the end"),
        "{err}"
    );
}

#[test]
fn wrong_tag_names_the_offset() {
    let (mut bytes, second) = two_flows();
    let last = bytes.len() - 1;
    assert_eq!(bytes[last], b'}');
    bytes[last] = b'?';
    let err = flow_error(bytes);
    assert_eq!((err.flow, err.offset), (2, second));
    assert!(matches!(
        err.kind,
        ErrorKind::Tnet(TnetErrorKind::UnknownTag { found: '?', .. })
    ));
}

#[test]
fn invalid_utf8_in_a_text_value_names_its_offset() {
    let mut flow = FlowSpec::get("/a", 200, b"x");
    flow.host = "HOSTNAME".to_string();
    let mut bytes = Vec::new();
    write_flow(&mut bytes, &flow);
    let at = bytes.windows(8).position(|w| w == b"HOSTNAME").unwrap();
    bytes[at] = 0xff;
    let err = flow_error(bytes);
    // The value starts at its length prefix "8:", two bytes before the payload.
    assert_eq!(err.offset, (at - 2) as u64);
    assert!(matches!(
        err.kind,
        ErrorKind::Tnet(TnetErrorKind::InvalidUtf8 { valid_up_to: 0 })
    ));
}

#[test]
fn a_top_level_value_that_is_not_a_dict_is_refused() {
    let (mut bytes, second) = two_flows();
    bytes.truncate(second as usize);
    write_bytes(&mut bytes, b']', b"");
    let err = flow_error(bytes);
    assert_eq!((err.flow, err.offset), (2, second));
    assert_eq!(err.kind, ErrorKind::NotADict { found: "list" });
}

#[test]
fn unknown_flow_type_names_the_type_value() {
    let mut bytes = Vec::new();
    Encode::Dict(vec![
        ("version", Encode::Int(21)),
        ("type", Encode::Text("carrier-pigeon")),
    ])
    .write(&mut bytes);
    let at = bytes
        .windows(16)
        .position(|w| w == b"14:carrier-pigeo")
        .unwrap();
    let err = flow_error(bytes);
    assert_eq!(err.offset, at as u64);
    assert!(matches!(err.kind, ErrorKind::UnknownType { .. }));
}

#[test]
fn a_newer_version_is_refused_with_a_message_that_says_so() {
    let mut bytes = Vec::new();
    Encode::Dict(vec![
        ("type", Encode::Text("http")),
        ("version", Encode::Int(22)),
    ])
    .write(&mut bytes);
    let at = bytes.windows(4).position(|w| w == b"2:22").unwrap();
    let err = flow_error(bytes);
    assert_eq!(err.offset, at as u64);
    assert_eq!(
        err.kind,
        ErrorKind::VersionTooNew(FormatVersion::Number(22))
    );
    assert!(err
        .to_string()
        .contains("newer than this uringreplay reads"));
}

#[test]
fn a_version_older_than_0_11_is_refused() {
    let mut bytes = Vec::new();
    Encode::Dict(vec![(
        "version",
        Encode::List(vec![Encode::Int(0), Encode::Int(10)]),
    )])
    .write(&mut bytes);
    let err = flow_error(bytes);
    assert_eq!(
        err.kind,
        ErrorKind::VersionTooOld(FormatVersion::Release(0, 10))
    );
}

#[test]
fn hostile_nesting_is_an_error_with_an_offset() {
    let mut value = b"0:]".to_vec();
    for _ in 0..200 {
        let mut outer = Vec::new();
        write_bytes(&mut outer, b']', &value);
        value = outer;
    }
    // Hide the nest in the request dict, under a key the reader does not know.
    let mut flow = Vec::new();
    write_flow(&mut flow, &FlowSpec::get("/a", 200, b"x"));
    let request_key = b"7:request;";
    let at = flow
        .windows(request_key.len())
        .position(|w| w == request_key)
        .unwrap();
    let request_start = at + request_key.len();
    let (request, used) =
        super::tnetstring::parse_value(&flow[request_start..], 0, "file").unwrap();
    let mut payload = request.payload.to_vec();
    write_bytes(&mut payload, b';', b"x-nest");
    let nest_at = payload.len();
    payload.extend_from_slice(&value);
    let mut new_request = Vec::new();
    write_bytes(&mut new_request, b'}', &payload);
    let payload_pos = new_request.iter().position(|&b| b == b':').unwrap() + 1;
    let mut top_payload =
        flow[flow.iter().position(|&b| b == b':').unwrap() + 1..flow.len() - 1].to_vec();
    let top_prefix_len = flow.iter().position(|&b| b == b':').unwrap() + 1;
    let rel = request_start - top_prefix_len;
    top_payload.splice(rel..rel + used, new_request);
    let mut bytes = Vec::new();
    write_bytes(&mut bytes, b'}', &top_payload);
    let new_prefix_len = bytes.iter().position(|&b| b == b':').unwrap() + 1;
    let nest_offset = (new_prefix_len + rel + payload_pos + nest_at) as u64;
    let err = flow_error(bytes);
    assert_eq!(err.kind, ErrorKind::Tnet(TnetErrorKind::TooDeep));
    // The error names the list at the depth limit, inside the nest.
    assert!(
        err.offset > nest_offset && err.offset < nest_offset + 2000,
        "{err}"
    );
}

#[test]
fn wrong_field_type_names_the_field() {
    let mut flow = FlowSpec::get("/a", 200, b"x");
    flow.port = 4321;
    let mut bytes = Vec::new();
    write_flow(&mut bytes, &flow);
    // Turn the port integer `4:4321#` into a byte string `4:4321,`.
    let at = bytes.windows(7).position(|w| w == b"4:4321#").unwrap();
    bytes[at + 6] = b',';
    let err = flow_error(bytes);
    assert_eq!(err.offset, at as u64);
    assert!(
        err.to_string()
            .contains("request.port field should be a port number"),
        "{err}"
    );
}

#[test]
fn non_http_flows_are_skipped_and_counted_and_responseless_flows_kept() {
    let mut bytes = Vec::new();
    for kind in ["tcp", "udp", "dns"] {
        Encode::Dict(vec![
            ("version", Encode::Int(21)),
            ("type", Encode::Text(kind)),
        ])
        .write(&mut bytes);
    }
    let mut no_response = FlowSpec::get("/pending", 200, b"");
    no_response.response = None;
    write_flow(&mut bytes, &no_response);
    write_flow(&mut bytes, &FlowSpec::get("/done", 200, b"ok"));
    let rec = load_bytes(bytes).unwrap();
    let s = rec.summary();
    assert_eq!((s.skipped.tcp, s.skipped.udp, s.skipped.dns), (1, 1, 1));
    assert_eq!(rec.len(), 2);
    assert_eq!(s.without_response, 1);
    assert!(rec.flow(0).response.is_none());
    assert_eq!(rec.flow(1).number, 5);
}

/// A flow as mitmproxy 0.11–0.13 wrote it: byte-string keys, `httpversion` lists, response
/// `code`/`msg`/`content`, no `authority`/`trailers`, release-tuple version.
fn legacy_flow(
    version: (i64, i64),
    response_keys: (&'static str, &'static str, &'static str),
) -> Vec<u8> {
    let (code, msg, body) = response_keys;
    let headers = |pairs: &[(&'static str, &'static str)]| {
        Encode::List(
            pairs
                .iter()
                .map(|(n, v)| {
                    Encode::List(vec![
                        Encode::Bytes(n.as_bytes()),
                        Encode::Bytes(v.as_bytes()),
                    ])
                })
                .collect(),
        )
    };
    let v11 = Encode::List(vec![Encode::Int(1), Encode::Int(1)]);
    let request = Encode::Dict(vec![
        ("method", Encode::Bytes(b"GET")),
        ("scheme", Encode::Bytes(b"http")),
        ("host", Encode::Bytes(b"example.com")),
        ("port", Encode::Int(80)),
        ("path", Encode::Bytes(b"/old")),
        ("httpversion", v11.clone()),
        ("headers", headers(&[("Host", "example.com")])),
        ("content", Encode::Bytes(b"")),
        ("form_in", Encode::Bytes(b"relative")),
        ("timestamp_start", Encode::Int(1_400_000_000)),
        ("timestamp_end", Encode::Float(1_400_000_000.5)),
    ]);
    let response = Encode::Dict(vec![
        (code, Encode::Int(200)),
        (msg, Encode::Bytes(b"OK")),
        ("httpversion", v11),
        ("headers", headers(&[("Content-Length", "3")])),
        (body, Encode::Bytes(b"old")),
        ("timestamp_start", Encode::Null),
        ("timestamp_end", Encode::Null),
    ]);
    let mut bytes = Vec::new();
    Encode::Dict(vec![
        (
            "version",
            Encode::List(vec![
                Encode::Int(version.0),
                Encode::Int(version.1),
                Encode::Int(0),
            ]),
        ),
        ("type", Encode::Bytes(b"http")),
        ("request", request),
        ("response", response),
    ])
    .write(&mut bytes);
    bytes
}

#[test]
fn format_0_11_flows_read_with_old_field_names() {
    for version in [(0, 11), (0, 13), (0, 15), (1, 0), (3, 0)] {
        let bytes = legacy_flow(version, ("code", "msg", "content"));
        let rec = load_bytes(bytes).unwrap_or_else(|e| panic!("{version:?}: {e}"));
        let flow = rec.flow(0);
        assert_eq!(flow.request.http_version, b"HTTP/1.1");
        assert_eq!(flow.request.authority, b"");
        assert_eq!(flow.request.host, b"example.com");
        assert_eq!(flow.request.timestamp_start, 1_400_000_000.0);
        let resp = flow.response.unwrap();
        assert_eq!((resp.status_code, resp.reason), (200, &b"OK"[..]));
        assert_eq!(resp.content, Some(&b"old"[..]));
        assert_eq!(resp.http_version, b"HTTP/1.1");
        // A null response start is filled from the request end (spec §g.5, 13→14).
        assert_eq!(resp.timestamp_start, 1_400_000_000.5);
        assert_eq!(
            rec.summary().versions.iter().next(),
            Some(&FormatVersion::Release(version.0 as u32, version.1 as u32))
        );
    }
}

#[test]
fn format_0_14_body_field_reads_as_content() {
    let bytes = legacy_flow((0, 14), ("status_code", "msg", "body"));
    let rec = load_bytes(bytes).unwrap();
    assert_eq!(rec.flow(0).response.unwrap().content, Some(&b"old"[..]));
}

#[test]
fn byte_string_keys_are_accepted() {
    // mitmproxy before 0.18 wrote `,` keys; the reader treats keys of either tag alike.
    let mut bytes = legacy_flow((0, 12), ("code", "msg", "content"));
    let text_key = b"4:type;";
    let at = bytes
        .windows(text_key.len())
        .position(|w| w == text_key)
        .unwrap();
    bytes[at + 6] = b',';
    assert_eq!(load_bytes(bytes).unwrap().len(), 1);
}

#[test]
fn re_read_flows_give_the_views_the_checking_reader_gave() {
    for name in [
        "demo.flows",
        "mitm-6.0.2-v10.flows",
        "mitm-7.0.4-v14.flows",
        "mitm-8.1.1-v17.flows",
        "mitm-10.4.2-v20.flows",
        "mitm-12.3.1-v21.flows",
    ] {
        let mut checked = Vec::new();
        let recording = Recording::open(&[fixture(name)], LoadOptions::default(), &mut |e| {
            if let LoadEvent::HttpFlow { request, response } = e {
                checked.push((format!("{request:?}"), format!("{response:?}")));
            }
        })
        .unwrap();
        assert_eq!(checked.len(), recording.len(), "{name}");
        assert!(!checked.is_empty(), "{name}");
        for (id, (request, response)) in checked.iter().enumerate() {
            let flow = recording.flow(id);
            assert_eq!(&format!("{:?}", flow.request), request, "{name} flow {id}");
            assert_eq!(
                &format!("{:?}", flow.response),
                response,
                "{name} flow {id}"
            );
            assert_eq!(&format!("{:?}", recording.request(id)), request, "{name}");
            assert_eq!(&format!("{:?}", recording.response(id)), response, "{name}");
        }
    }
}

#[test]
#[allow(clippy::disallowed_methods)] // a test writes its input file
fn a_gzip_compressed_har_is_decompressed_then_read_as_har() {
    use std::io::Write;
    let har = std::fs::read(fixture("har/chrome.har")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&har).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chrome.har.gz");
    std::fs::write(&path, gz.finish().unwrap()).unwrap();
    let rec = Recording::open(&[path], LoadOptions::default(), &mut |_| {}).unwrap();
    let plain = open("har/chrome.har");
    assert_eq!(rec.len(), 4);
    for id in 0..rec.len() {
        assert_eq!(flow_fields(&rec, id), flow_fields(&plain, id));
    }
}

#[test]
fn a_file_within_the_copy_limit_is_read_into_memory_and_a_larger_one_mapped_and_said() {
    let (bytes, _) = two_flows();
    let dir = std::env::temp_dir().join(format!("uringreplay-copy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.flows");
    std::fs::write(&path, &bytes).unwrap();
    let len = bytes.len() as u64;
    let open = |limit: Option<u64>| {
        let mut mapped = Vec::new();
        let rec = Recording::open(
            std::slice::from_ref(&path),
            LoadOptions {
                private_copy_up_to: limit,
                ..LoadOptions::default()
            },
            &mut |e| {
                if let LoadEvent::Mapped { path, bytes } = e {
                    mapped.push((path.to_path_buf(), bytes));
                }
            },
        )
        .unwrap();
        (rec, mapped)
    };
    let (copied, mapped) = open(Some(len));
    assert_eq!((copied.summary().copied_bytes, mapped), (len, vec![]));
    // The copy is the file's: rewriting the file changes nothing in the loaded recording.
    std::fs::write(&path, vec![b'0'; bytes.len()]).unwrap();
    assert_eq!(copied.flow(0).request.path, b"/a");
    std::fs::write(&path, &bytes).unwrap();
    let (over, mapped) = open(Some(len - 1));
    assert_eq!(over.summary().copied_bytes, 0);
    assert_eq!(mapped, vec![(path.clone(), len)]);
    // inspect and convert map without saying so.
    let (plain, mapped) = open(None);
    assert_eq!((plain.summary().copied_bytes, mapped), (0, vec![]));
    assert_eq!(plain.len(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_har_file_over_the_copy_limit_is_not_said_to_be_served_from_its_mapping() {
    // Its flows are made in memory once: the mapping is not what is served.
    let path = fixture("mitm-12.3.1-v21.har");
    let mut mapped = 0;
    let rec = Recording::open(
        std::slice::from_ref(&path),
        LoadOptions {
            private_copy_up_to: Some(1),
            ..LoadOptions::default()
        },
        &mut |e| {
            if let LoadEvent::Mapped { .. } = e {
                mapped += 1;
            }
        },
    )
    .unwrap();
    assert!(!rec.is_empty());
    assert_eq!(mapped, 0);
}
