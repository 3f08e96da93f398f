//! Property tests: the key ignores exactly what the options say; refresh with a zero shift of
//! IMF-fixdate responses changes nothing; patching only ever touches patch sites.

use std::path::PathBuf;
use std::sync::Arc;

use proptest::prelude::*;

use super::date::{write_imf_fixdate, IMF_FIXDATE_LEN};
use super::key::tests::{same_key, Req};
use super::key::KeyOptions;
use super::refresh::refresh_head;
use super::template::Templates;
use super::*;
use crate::flowfile::writer::{write_flow, FlowSpec};
use crate::flowfile::{LoadOptions, Recording};

/// The one component a changed request differs in.
#[derive(Debug, Clone, Copy)]
enum Change {
    Host,
    Port,
    Body,
    QueryParam(usize),
    ListedHeader,
    UnlistedHeader,
    Method,
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        Just(Change::Host),
        Just(Change::Port),
        Just(Change::Body),
        (0..3usize).prop_map(Change::QueryParam),
        Just(Change::ListedHeader),
        Just(Change::UnlistedHeader),
        Just(Change::Method),
    ]
}

fn base_request(path: &str, values: &[u8; 3], body: &str) -> Req {
    let target = format!("/{path}?p0={}&p1={}&p2={}", values[0], values[1], values[2]);
    Req::get(&target)
        .body(body)
        .header("X-Listed", "v")
        .header("Content-Type", "application/x-www-form-urlencoded")
}

proptest! {
    #[test]
    fn the_key_ignores_exactly_what_the_options_say(
        path in "[a-z]{0,8}(/[a-z;=]{0,5}){0,3}",
        values in any::<[u8; 3]>(),
        body in "[a-z=&]{0,12}",
        change in change(),
        ignore_host in any::<bool>(),
        ignore_port in any::<bool>(),
        ignore_content in any::<bool>(),
        ignored_params in proptest::collection::vec(0..3usize, 0..3),
        listed in any::<bool>(),
    ) {
        let options = KeyOptions {
            use_headers: if listed { vec![b"x-listed".to_vec()] } else { Vec::new() },
            ignore_content,
            ignore_params: ignored_params.iter().map(|i| format!("p{i}").into_bytes()).collect(),
            ignore_payload_params: Vec::new(),
            ignore_host,
            ignore_port,
        };
        let base = base_request(&path, &values, &body);
        let mut other = base.clone();
        let ignored = match change {
            Change::Host => { other.host = "elsewhere"; ignore_host }
            Change::Port => { other.port += 1; ignore_port }
            Change::Body => { other = other.body(&format!("{body}!")); ignore_content }
            Change::QueryParam(i) => {
                let mut v = values;
                v[i] = v[i].wrapping_add(1);
                other.target = base_request(&path, &v, &body).target;
                ignored_params.contains(&i)
            }
            Change::ListedHeader => {
                other.headers.retain(|(n, _)| *n != "X-Listed");
                other = other.header("x-listed", "w");
                !listed
            }
            Change::UnlistedHeader => { other = other.header("X-Other", "1"); true }
            Change::Method => { other.method = "POST"; false }
        };
        prop_assert_eq!(same_key(&base, &other, &options), ignored);
        prop_assert!(same_key(&base, &base.clone(), &options));
    }
}

/// An IMF-fixdate for `secs`.
fn imf(secs: i64) -> String {
    let mut out = [0; IMF_FIXDATE_LEN];
    assert!(write_imf_fixdate(secs, &mut out));
    String::from_utf8(out.to_vec()).unwrap()
}

/// A flow whose response carries the given header fields and was recorded at `recorded`.
fn recording_of(headers: &[(String, String)], recorded: f64) -> Recording {
    let mut flow = FlowSpec::get("/", 200, b"body");
    let response = flow.response.as_mut().unwrap();
    response.headers = headers
        .iter()
        .map(|(n, v)| (n.clone().into_bytes(), v.clone().into_bytes()))
        .collect();
    response.timestamp_start = recorded;
    let mut bytes = Vec::new();
    write_flow(&mut bytes, &flow);
    Recording::from_bytes(
        vec![(PathBuf::from("p.flows"), bytes)],
        LoadOptions::default(),
    )
    .unwrap()
}

/// Header fields with dates in IMF-fixdate form, each name at most once where refresh folds.
fn dated_headers() -> impl Strategy<Value = Vec<(String, String)>> {
    // Any date, with extra weight on the last centuries before year 10000 (shift overflows).
    let date = prop_oneof![0i64..253_402_300_799, 250_000_000_000i64..253_402_300_799];
    let field = prop_oneof![
        date.clone().prop_map(|d| ("Date".to_string(), imf(d))),
        date.clone().prop_map(|d| ("Expires".to_string(), imf(d))),
        date.clone()
            .prop_map(|d| ("last-modified".to_string(), imf(d))),
        (date.clone(), "[a-z]{1,5}", "[a-z0-9]{1,5}").prop_map(|(d, n, v)| (
            "Set-Cookie".to_string(),
            format!("{n}={v}; Path=/; expires={}; HttpOnly", imf(d))
        )),
        ("[A-Za-z-]{1,8}", "[ -~]{0,12}")
            .prop_map(|(n, v)| (format!("X-{n}"), v.trim().to_string())),
    ];
    proptest::collection::vec(field, 0..8).prop_map(|fields| {
        let mut seen = Vec::new();
        fields
            .into_iter()
            .filter(|(n, _)| {
                let lower = n.to_ascii_lowercase();
                let folds = ["date", "expires", "last-modified"].contains(&lower.as_str());
                let first = !seen.contains(&lower);
                seen.push(lower);
                !folds || first
            })
            .collect()
    })
}

fn verbatim_head(headers: &[(String, String)]) -> Vec<u8> {
    let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
    for (n, v) in headers {
        head.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    head
}

proptest! {
    #[test]
    fn refresh_with_a_zero_shift_changes_no_byte_of_imf_fixdate_responses(
        headers in dated_headers(),
        recorded in 0.0f64..4e9,
    ) {
        let recording = Arc::new(recording_of(&headers, recorded));
        let replayer = Replayer::new(recording, &ReplayOptions::default());
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(recorded);
        let mut out = Vec::new();
        let reply = replayer.write_reply(FlowId(0), now, &RequestFacts::default(), &mut out);
        let expected = verbatim_head(&headers);
        prop_assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&expected));
        prop_assert_eq!(reply.body, b"body");
    }

    #[test]
    fn patching_never_touches_bytes_outside_patch_sites(
        headers in dated_headers(),
        delta in -1e10f64..1e10,
    ) {
        let recording = recording_of(&headers, 1.7e9);
        let templates = Templates::build(&recording, true);
        let template = templates.get(0).unwrap();
        let original = templates.head(template).to_vec();
        let mut patched = original.clone();
        let sites = templates.patches(template);
        let _ = refresh_head(&mut patched, sites, delta);
        prop_assert_eq!(patched.len(), original.len());
        for (i, (a, b)) in original.iter().zip(&patched).enumerate() {
            if a != b {
                let inside = sites.iter().any(|s| (s.pos as usize..s.pos as usize + IMF_FIXDATE_LEN).contains(&i));
                prop_assert!(inside, "byte {} changed outside the patch sites", i);
            }
        }
    }
}

proptest! {
    #[test]
    fn parsers_of_recorded_values_never_panic(
        value in proptest::collection::vec(any::<u8>(), 0..64),
        texty in "[ -~]{0,48}",
        delta in any::<f64>(),
    ) {
        for v in [value.as_slice(), texty.as_bytes()] {
            if let Some(epoch) = super::date::parse_lenient(v) {
                let mut out = [0; IMF_FIXDATE_LEN];
                let _ = write_imf_fixdate(super::date::shift(epoch, delta), &mut out);
            }
            let _ = super::cookie::refresh_set_cookie(v, if delta.is_finite() { delta } else { 0.0 });
            let _ = key::pretty_host(v);
            let _ = key::path_proper(v);
            let _ = super::form::multipart_fields(b"multipart/form-data; boundary=a", v).map(|f| f.count());
            for mode in [text::TextMode::Query, text::TextMode::FormUtf8, text::TextMode::FormLatin1] {
                let _ = text::decodes_to(v, mode, b"x");
            }
        }
    }
}

proptest! {
    #[test]
    fn refreshed_heads_equal_refreshing_each_header_on_its_own(
        headers in dated_headers(),
        delta in -1.6e9f64..1e10,
    ) {
        let recorded = 1.7e9;
        let recording = Arc::new(recording_of(&headers, recorded));
        let replayer = Replayer::new(recording, &ReplayOptions::default());
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(recorded + delta);
        let delta = super::refresh::delta_seconds(now, recorded);
        let mut out = Vec::new();
        replayer.write_reply(FlowId(0), now, &RequestFacts::default(), &mut out);
        let expected: Vec<(String, String)> = headers
            .iter()
            .map(|(name, value)| {
                let lower = name.to_ascii_lowercase();
                let refreshed = if lower == "set-cookie" {
                    super::cookie::refresh_set_cookie(value.as_bytes(), delta)
                        .map(|v| String::from_utf8(v).unwrap())
                } else if ["date", "expires", "last-modified"].contains(&lower.as_str()) {
                    super::date::parse_lenient(value.as_bytes()).and_then(|epoch| {
                        let mut out = [0; IMF_FIXDATE_LEN];
                        write_imf_fixdate(super::date::shift(epoch, delta), &mut out)
                            .then(|| String::from_utf8(out.to_vec()).unwrap())
                    })
                } else {
                    None
                };
                (name.clone(), refreshed.unwrap_or_else(|| value.clone()))
            })
            .collect();
        let expected = verbatim_head(&expected);
        prop_assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&expected));
    }
}
