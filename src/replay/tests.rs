//! Conformance cases of spec §i for the replay core, plus order, framing and concurrency.
//!
//! Where each §i case is checked (tests here unless a module is named):
//! - 1, 2 `a_recording_file_loads_and_a_missing_one_is_an_error`; 3
//!   `an_identical_request_is_answered_by_the_recorded_flow_once`; 4, 11
//!   `flows_with_the_same_key_are_served_in_recording_order_each_once`; 12
//!   `reuse_serves_the_first_flow_every_time_and_consumes_nothing`; 15
//!   `recorded_keys_are_computed_with_the_options_in_force` (options are fixed at start-up, so
//!   there is no runtime change); 16
//!   `a_response_without_dates_is_replayed_byte_for_byte_and_other_bodies_are_forwarded`; 17, 18,
//!   47 `kill_mode_kills_unmatched_requests` (closing the socket is the connection's job); 19
//!   `status_modes_answer_with_empty_responses`; 20 `flows_without_responses_never_answer`.
//! - 5–10, 13, 14, 36–42: `key::tests` (`ignore_host_…`, `ignore_content_…`,
//!   `ignore_content_wins_over_payload_params`, `payload_params_only_parse_forms`,
//!   `default_key_…`, `use_headers_…`, `ignore_params_…`, `ignore_payload_params_filters_…`,
//!   `last_segment_path_params_are_ignored`, `host_case_matters`,
//!   `port_comes_from_the_connection`, `stored_null_body_never_equals_an_empty_body`,
//!   `form_matching_…`, `query_pairs_are_decoded_like_parse_qsl`, `use_headers_folds_…`).
//! - 21–25: `refresh_with_no_shift_keeps_the_date`, `refresh_moves_the_date_by_the_age_of_the_recording`,
//!   `refresh_rewrites_cookie_expiry`, `a_cookie_that_cannot_be_refreshed_is_kept_…`,
//!   `dates_before_1970_survive_a_zero_shift`; 26 `a_teapot_status_reply_is_exactly_mitmproxys`.
//! - 27–34: `cookie::tests`; the date forms of §d.4: `date::tests`.
//! - 35 `status_mode_keeps_applying_after_every_flow_is_used_up` and 46
//!   `a_refresh_past_year_9999_keeps_the_header_and_still_replays`: deliberate differences.
//! - 43–45 `refresh_on_replay_…`, `repeated_date_fields_fold_into_the_first`,
//!   `the_last_cookie_expiry_wins`; 50: the framing tests (`chunked_…`, `bodies_without_length_…`,
//!   `http_1_0_…`, `no_content_…`, `head_requests_…`, `connection_close_…`).
//! - 48, 49, 51, 52 concern connections, upstream and process lifetime (http1, server, main).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::config::{Order, ReplayOptions, Unmatched};
use crate::flowfile::writer::{write_flow, FlowSpec, ResponseSpec};
use crate::flowfile::{LoadOptions, Recording};

/// mitmproxy's test request (spec §i): `GET http://address:22/path`, no Host header.
fn test_flow() -> FlowSpec {
    FlowSpec {
        id: "00000000-0000-4000-8000-000000000001".to_string(),
        method: b"GET".to_vec(),
        scheme: b"http".to_vec(),
        host: "address".to_string(),
        port: 22,
        path: b"/path".to_vec(),
        http_version: b"HTTP/1.1".to_vec(),
        headers: vec![
            (b"header".to_vec(), b"qvalue".to_vec()),
            (b"content-length".to_vec(), b"7".to_vec()),
        ],
        content: Some(b"content".to_vec()),
        timestamp_start: 946_681_200.0,
        response: Some(test_response()),
    }
}

/// mitmproxy's test response: `HTTP/1.1 200 OK`, `header-response: svalue`, body `message`.
fn test_response() -> ResponseSpec {
    ResponseSpec {
        status_code: 200,
        reason: b"OK".to_vec(),
        http_version: b"HTTP/1.1".to_vec(),
        headers: vec![
            (b"header-response".to_vec(), b"svalue".to_vec()),
            (b"content-length".to_vec(), b"7".to_vec()),
        ],
        content: Some(b"message".to_vec()),
        timestamp_start: 946_681_202.0,
    }
}

fn with_response(mut flow: FlowSpec, edit: impl FnOnce(&mut ResponseSpec)) -> FlowSpec {
    edit(flow.response.as_mut().unwrap());
    flow
}

fn replayer(flows: &[FlowSpec], options: &ReplayOptions) -> Replayer {
    let mut bytes = Vec::new();
    for flow in flows {
        write_flow(&mut bytes, flow);
    }
    let recording = Recording::from_bytes(
        vec![(PathBuf::from("test.flows"), bytes)],
        LoadOptions::default(),
    )
    .unwrap();
    Replayer::new(Arc::new(recording), options)
}

/// A live request built from a recorded one (what a client repeating it would send).
struct Live {
    method: Vec<u8>,
    target: Vec<u8>,
    host: Vec<u8>,
    port: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Live {
    fn of(flow: &FlowSpec) -> Live {
        Live {
            method: flow.method.clone(),
            target: flow.path.clone(),
            host: flow.host.as_bytes().to_vec(),
            port: flow.port,
            headers: flow
                .headers
                .iter()
                .map(|(n, v)| (String::from_utf8(n.clone()).unwrap(), v.clone()))
                .collect(),
            body: flow.content.clone().unwrap_or_default(),
        }
    }

    fn decide(&self, replayer: &Replayer) -> Decision {
        let headers: Vec<httparse::Header<'_>> = self
            .headers
            .iter()
            .map(|(n, v)| httparse::Header { name: n, value: v })
            .collect();
        replayer.decide(&LiveRequest {
            scheme: b"http",
            method: &self.method,
            target: &self.target,
            host: &self.host,
            port: self.port,
            headers: &headers,
            body: &self.body,
        })
    }
}

fn options() -> ReplayOptions {
    ReplayOptions::default()
}

fn at(secs: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs_f64(secs)
}

/// The whole reply (head, body, tail) as text, and whether the connection closes.
fn reply_text(
    replayer: &Replayer,
    flow: FlowId,
    now: SystemTime,
    facts: RequestFacts,
) -> (String, bool) {
    let mut out = Vec::new();
    let reply = replayer.write_reply(flow, now, &facts, &mut out);
    out.extend_from_slice(reply.body);
    out.extend_from_slice(reply.tail);
    (String::from_utf8(out).unwrap(), reply.close)
}

fn replay_of(replayer: &Replayer, live: &Live) -> FlowId {
    match live.decide(replayer) {
        Decision::Replay(id) => id,
        other => panic!("expected a replay, got {other:?}"),
    }
}

// §i.1 case 1.
#[test]
fn a_recording_file_loads_and_a_missing_one_is_an_error() {
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/demo.flows");
    let recording = Recording::open(&[fixture], LoadOptions::default(), &mut |_| {}).unwrap();
    let replayer = Replayer::new(Arc::new(recording), &options());
    assert_eq!(replayer.remaining(), 12);
    let missing = Recording::open(
        &[PathBuf::from("/nonexistent")],
        LoadOptions::default(),
        &mut |_| {},
    );
    assert!(missing.is_err());
    let directory = Recording::open(
        &[PathBuf::from(env!("CARGO_MANIFEST_DIR"))],
        LoadOptions::default(),
        &mut |_| {},
    );
    assert!(directory.is_err());
}

// §i.1 case 3.
#[test]
fn an_identical_request_is_answered_by_the_recorded_flow_once() {
    let replayer = replayer(&[test_flow()], &options());
    assert_eq!(replayer.remaining(), 1);
    assert_eq!(
        Live::of(&test_flow()).decide(&replayer),
        Decision::Replay(FlowId(0))
    );
    assert_eq!(replayer.remaining(), 0);
    assert_eq!(Live::of(&test_flow()).decide(&replayer), Decision::Forward);
}

// §i.1 cases 4 and 11.
#[test]
fn flows_with_the_same_key_are_served_in_recording_order_each_once() {
    let mut one = test_flow();
    one.headers.push((b"key".to_vec(), b"one".to_vec()));
    let mut two = test_flow();
    two.headers.push((b"key".to_vec(), b"two".to_vec()));
    let replayer = replayer(&[one.clone(), two], &options());
    assert_eq!(replayer.keys(), 1);
    assert_eq!(replayer.remaining(), 2);
    assert_eq!(
        Live::of(&one).decide(&replayer),
        Decision::Replay(FlowId(0))
    );
    assert_eq!(replayer.remaining(), 1);
    assert_eq!(
        Live::of(&one).decide(&replayer),
        Decision::Replay(FlowId(1))
    );
    assert_eq!(replayer.remaining(), 0);
    assert_eq!(Live::of(&one).decide(&replayer), Decision::Forward);
}

// §i.1 case 12.
#[test]
fn reuse_serves_the_first_flow_every_time_and_consumes_nothing() {
    let options = ReplayOptions {
        order: Order::First,
        ..options()
    };
    let replayer = replayer(&[test_flow(), test_flow()], &options);
    for _ in 0..3 {
        assert_eq!(
            Live::of(&test_flow()).decide(&replayer),
            Decision::Replay(FlowId(0))
        );
    }
    assert_eq!(replayer.remaining(), 2);
}

#[test]
fn cycle_order_round_robins_over_the_recorded_responses() {
    let options = ReplayOptions {
        order: Order::Cycle,
        ..options()
    };
    let replayer = replayer(&[test_flow(), test_flow(), test_flow()], &options);
    let served: Vec<_> = (0..7)
        .map(|_| Live::of(&test_flow()).decide(&replayer))
        .collect();
    let ids = [0, 1, 2, 0, 1, 2, 0].map(|i| Decision::Replay(FlowId(i)));
    assert_eq!(served, ids);
}

// mitmproxy issue 8139.
#[test]
fn last_order_serves_the_newest_recording() {
    let options = ReplayOptions {
        order: Order::Last,
        ..options()
    };
    let replayer = replayer(&[test_flow(), test_flow(), test_flow()], &options);
    for _ in 0..2 {
        assert_eq!(
            Live::of(&test_flow()).decide(&replayer),
            Decision::Replay(FlowId(2))
        );
    }
}

// §i.1 case 15 (as far as it applies: options are fixed at start-up).
#[test]
fn recorded_keys_are_computed_with_the_options_in_force() {
    let mut recorded = test_flow();
    recorded.path = b"/test?param1=1".to_vec();
    let options = ReplayOptions {
        ignore_params: vec!["param1".into()],
        ..options()
    };
    let replayer = replayer(&[recorded.clone()], &options);
    let mut live = Live::of(&recorded);
    live.target = b"/test".to_vec();
    assert_eq!(live.decide(&replayer), Decision::Replay(FlowId(0)));
}

// §i.1 case 16.
#[test]
fn a_response_without_dates_is_replayed_byte_for_byte_and_other_bodies_are_forwarded() {
    let replayer = replayer(&[test_flow(), test_flow()], &options());
    let id = replay_of(&replayer, &Live::of(&test_flow()));
    let (text, close) = reply_text(&replayer, id, at(1e9), RequestFacts::default());
    assert_eq!(
        text,
        "HTTP/1.1 200 OK\r\nheader-response: svalue\r\ncontent-length: 7\r\n\r\nmessage"
    );
    assert!(!close);
    let mut gibble = Live::of(&test_flow());
    gibble.body = b"gibble".to_vec();
    assert_eq!(gibble.decide(&replayer), Decision::Forward);
}

// §i.1 cases 17, 18 and §i.4 case 47.
#[test]
fn kill_mode_kills_unmatched_requests() {
    let options = ReplayOptions {
        unmatched: Unmatched::Kill,
        ..options()
    };
    let replayer = replayer(&[test_flow()], &options);
    let mut other = Live::of(&test_flow());
    other.host = b"nonexistent".to_vec();
    assert_eq!(other.decide(&replayer), Decision::Kill);
}

// §i.1 case 19.
#[test]
fn status_modes_answer_with_empty_responses() {
    for (code, line) in [
        (204, "204 No Content"),
        (400, "400 Bad Request"),
        (404, "404 Not Found"),
        (500, "500 Internal Server Error"),
    ] {
        let options = ReplayOptions {
            unmatched: Unmatched::Status(code),
            ..options()
        };
        let replayer = replayer(&[test_flow()], &options);
        let mut other = Live::of(&test_flow());
        other.host = b"nonexistent".to_vec();
        assert_eq!(other.decide(&replayer), Decision::Status(code));
        assert_eq!(
            Replayer::status_reply(code),
            format!("HTTP/1.1 {line}\r\ncontent-length: 0\r\n\r\n").as_bytes()
        );
    }
}

// §i.2 case 26.
#[test]
fn a_teapot_status_reply_is_exactly_mitmproxys() {
    assert_eq!(
        Replayer::status_reply(418),
        b"HTTP/1.1 418 I'm a teapot\r\ncontent-length: 0\r\n\r\n"
    );
}

// §i.1 case 20.
#[test]
fn flows_without_responses_never_answer() {
    let mut f1 = test_flow();
    f1.response = None;
    let replayer = replayer(&[f1.clone(), f1.clone()], &options());
    assert_eq!(replayer.remaining(), 0);
    assert_eq!(Live::of(&f1).decide(&replayer), Decision::Forward);
}

#[test]
fn response_less_flows_are_skipped_in_consume_order() {
    let mut none = test_flow();
    none.response = None;
    let replayer = replayer(&[none.clone(), test_flow(), none, test_flow()], &options());
    assert_eq!(replayer.remaining(), 2);
    assert_eq!(
        Live::of(&test_flow()).decide(&replayer),
        Decision::Replay(FlowId(1))
    );
    assert_eq!(
        Live::of(&test_flow()).decide(&replayer),
        Decision::Replay(FlowId(3))
    );
    assert_eq!(Live::of(&test_flow()).decide(&replayer), Decision::Forward);
}

// §i.4 case 35, deliberately different from mitmproxy (its issue 8363).
#[test]
fn status_mode_keeps_applying_after_every_flow_is_used_up() {
    let options = ReplayOptions {
        unmatched: Unmatched::Status(404),
        ..options()
    };
    let replayer = replayer(&[test_flow()], &options);
    assert_eq!(
        Live::of(&test_flow()).decide(&replayer),
        Decision::Replay(FlowId(0))
    );
    assert_eq!(
        Live::of(&test_flow()).decide(&replayer),
        Decision::Status(404)
    );
}

fn dated(headers: &[(&str, &str)]) -> FlowSpec {
    with_response(test_flow(), |r| {
        r.headers = headers
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        r.content = Some(Vec::new());
    })
}

fn refreshed_head(flow: FlowSpec, now: f64) -> String {
    let replayer = replayer(std::slice::from_ref(&flow), &options());
    let id = replay_of(&replayer, &Live::of(&flow));
    reply_text(&replayer, id, at(now), RequestFacts::default()).0
}

// §i.2 case 21.
#[test]
fn refresh_with_no_shift_keeps_the_date() {
    let head = refreshed_head(
        dated(&[("Date", "Sun, 02 Jan 2000 00:00:02 GMT")]),
        946_681_202.0,
    );
    assert_eq!(
        head,
        "HTTP/1.1 200 OK\r\nDate: Sun, 02 Jan 2000 00:00:02 GMT\r\n\r\n"
    );
}

// §i.2 case 22.
#[test]
fn refresh_moves_the_date_by_the_age_of_the_recording() {
    let head = refreshed_head(
        dated(&[("Date", "Sat, 01 Jan 2000 00:00:00 GMT")]),
        946_681_262.0,
    );
    assert!(
        head.contains("Date: Sat, 01 Jan 2000 00:01:00 GMT\r\n"),
        "{head}"
    );
}

// §i.2 case 23.
#[test]
fn refresh_rewrites_cookie_expiry() {
    let head = refreshed_head(
        dated(&[(
            "Set-Cookie",
            "MOO=BAR; Expires=Tue, 08-Mar-2011 00:20:38 GMT; Path=foo.com; Secure",
        )]),
        946_681_262.0,
    );
    assert!(
        head.contains(
            "Set-Cookie: MOO=BAR; Expires=Tue, 08 Mar 2011 00:21:38 GMT; Path=foo.com; Secure\r\n"
        ),
        "{head}"
    );
}

// §i.2 case 24.
#[test]
fn a_cookie_that_cannot_be_refreshed_is_kept_and_the_rest_still_refreshed() {
    let head = refreshed_head(
        dated(&[
            ("Set-Cookie", "foo,bar"),
            ("Date", "Sat, 01 Jan 2000 00:00:00 GMT"),
        ]),
        946_681_262.0,
    );
    assert_eq!(
        head,
        "HTTP/1.1 200 OK\r\nSet-Cookie: foo,bar\r\nDate: Sat, 01 Jan 2000 00:01:00 GMT\r\n\r\n"
    );
}

// §i.2 case 25.
#[test]
fn dates_before_1970_survive_a_zero_shift() {
    let head = refreshed_head(
        dated(&[("Date", "Mon, 01 Jan 1601 00:00:00 GMT")]),
        946_681_202.0,
    );
    assert!(
        head.contains("Date: Mon, 01 Jan 1601 00:00:00 GMT\r\n"),
        "{head}"
    );
}

// A driver reuses what it derived from a head while `head_shift` gives the same value (the h2
// driver's head cache): equal shifts must render equal heads, and a head that changes must
// come with a different shift.
#[test]
fn equal_head_shifts_render_equal_heads() {
    let near = date_after_start(-1);
    let later = date_after_start(86_400 * 365);
    let cookie = "a=b; Expires=Tue, 15-Nov-1994 08:12:31 GMT; Max-Age=60";
    // Each with whether its head changes over the times below (a cookie expiry that cannot be
    // shifted stays as recorded).
    let cases: [(&[(&str, &str)], bool); 5] = [
        (&[("Date", &near), ("Expires", &later)], true),
        (&[("Set-Cookie", cookie), ("Date", &near)], true),
        (&[("Expires", "Sunday, 02-Jan-00 00:00:00 GMT")], true),
        (
            &[("Set-Cookie", "x=y; Expires=Fri, 31 Dec 9999 23:59:59 GMT")],
            false,
        ),
        (&[("Server", "no dates at all")], false),
    ];
    let start = test_flow().response.unwrap().timestamp_start;
    let nows = [
        0.0,
        0.25,
        0.999_999_4,
        0.999_999_6,
        1.0,
        1.5,
        59.0,
        86_400.75,
    ];
    for (headers, changes) in cases {
        let flow = dated(headers);
        let replayer = replayer(std::slice::from_ref(&flow), &options());
        let id = replay_of(&replayer, &Live::of(&flow));
        let rendered: Vec<_> = nows
            .iter()
            .map(|&n| {
                let now = at(start + n);
                let head = reply_text(&replayer, id, now, RequestFacts::default()).0;
                (replayer.head_shift(id, now), head)
            })
            .collect();
        for (a, b) in rendered
            .iter()
            .flat_map(|a| rendered.iter().map(move |b| (a, b)))
        {
            if a.0 == b.0 {
                assert_eq!(a.1, b.1, "{headers:?}");
            }
            if a.1 != b.1 {
                assert_ne!(a.0, b.0, "{headers:?}");
            }
        }
        let moves = rendered.iter().any(|r| r.1 != rendered[0].1);
        assert_eq!(moves, changes, "{headers:?}");
    }
    // Refresh off: nothing moves.
    let flow = dated(&[("Date", &near)]);
    let options = ReplayOptions {
        refresh: false,
        ..options()
    };
    let replayer = replayer(std::slice::from_ref(&flow), &options);
    let id = replay_of(&replayer, &Live::of(&flow));
    assert_eq!(replayer.head_shift(id, at(start + 5.0)), None);
}

// §i.4 case 43.
#[test]
fn refresh_on_replay_shifts_date_and_cookie_but_not_max_age() {
    let recorded = 784_887_151.0; // Tue, 15 Nov 1994 08:12:31 GMT
    let flow = with_response(
        dated(&[
            ("Date", "Tue, 15 Nov 1994 08:12:31 GMT"),
            (
                "Set-Cookie",
                "a=\"b\"; Expires=Tue, 15-Nov-1994 08:12:31 GMT; Max-Age=60",
            ),
        ]),
        |r| r.timestamp_start = recorded,
    );
    let head = refreshed_head(flow, recorded + 22.0);
    assert_eq!(
        head,
        "HTTP/1.1 200 OK\r\nDate: Tue, 15 Nov 1994 08:12:53 GMT\r\n\
         Set-Cookie: a=b; Expires=Tue, 15 Nov 1994 08:12:53 GMT; Max-Age=60\r\n\r\n"
    );
}

// §i.4 case 44.
#[test]
fn repeated_date_fields_fold_into_the_first() {
    let recorded = 784_887_151.0;
    let flow = with_response(
        dated(&[
            ("Date", "Tue, 15 Nov 1994 08:12:31 GMT"),
            ("X-A", "1"),
            ("date", "Wed, 16 Nov 1994 08:12:31 GMT"),
        ]),
        |r| r.timestamp_start = recorded,
    );
    let head = refreshed_head(flow, recorded + 3600.7);
    assert_eq!(
        head,
        "HTTP/1.1 200 OK\r\nDate: Tue, 15 Nov 1994 09:12:31 GMT\r\nX-A: 1\r\n\r\n"
    );
}

// §i.4 case 45.
#[test]
fn the_last_cookie_expiry_wins() {
    let recorded = 784_887_151.0;
    let flow = with_response(
        dated(&[(
            "Set-Cookie",
            "c=d;path=/x ; Expires=Tue, 15-Nov-1994 08:12:31 GMT; expires=Wed, 16-Nov-1994 08:12:31 GMT",
        )]),
        |r| r.timestamp_start = recorded,
    );
    let head = refreshed_head(flow, recorded + 3600.7);
    assert!(
        head.contains("Set-Cookie: c=d; path=/x ; Expires=Wed, 16 Nov 1994 09:12:31 GMT\r\n"),
        "{head}"
    );
}

// §i.4 case 46, deliberately different from mitmproxy (which forwards the request).
#[test]
fn a_refresh_past_year_9999_keeps_the_header_and_still_replays() {
    let options = ReplayOptions {
        unmatched: Unmatched::Kill,
        ..options()
    };
    let flow = dated(&[
        ("Expires", "Fri, 31 Dec 9999 23:59:59 GMT"),
        ("Date", "Sat, 01 Jan 2000 00:00:00 GMT"),
    ]);
    let replayer = replayer(std::slice::from_ref(&flow), &options);
    let id = replay_of(&replayer, &Live::of(&flow));
    let (head, _) = reply_text(&replayer, id, at(946_681_262.0), RequestFacts::default());
    assert_eq!(
        head,
        "HTTP/1.1 200 OK\r\nExpires: Fri, 31 Dec 9999 23:59:59 GMT\r\nDate: Sat, 01 Jan 2000 00:01:00 GMT\r\n\r\n"
    );
}

#[test]
fn norefresh_sends_the_stored_headers_verbatim() {
    let options = ReplayOptions {
        refresh: false,
        ..options()
    };
    let flow = dated(&[
        ("Date", "Tuesday, 15-Nov-94 08:12:31 GMT"),
        ("Set-Cookie", "a=\"b\";Path=/"),
        ("date", "x"),
    ]);
    let replayer = replayer(std::slice::from_ref(&flow), &options);
    let id = replay_of(&replayer, &Live::of(&flow));
    let (head, _) = reply_text(&replayer, id, at(2e9), RequestFacts::default());
    assert_eq!(
        head,
        "HTTP/1.1 200 OK\r\nDate: Tuesday, 15-Nov-94 08:12:31 GMT\r\nSet-Cookie: a=\"b\";Path=/\r\ndate: x\r\n\r\n"
    );
}

/// The response start of `test_response` plus `secs`, as an IMF-fixdate.
fn date_after_start(secs: i64) -> String {
    let mut out = [0; date::IMF_FIXDATE_LEN];
    assert!(date::write_imf_fixdate(946_681_202 + secs, &mut out));
    String::from_utf8(out.to_vec()).unwrap()
}

// The first date field is read at load, kept relative to the response start, and the head must
// come out exactly as when every date is parsed at serve time: near the start, before it, more
// than 2^31 s away (kept unparsed), in another spelling, and not a date at all.
#[test]
fn dates_read_at_load_refresh_exactly_like_dates_read_per_request() {
    let far = date_after_start(-3_200_000_000);
    let near = date_after_start(-1);
    let later = date_after_start(86_400 * 365);
    let cases: [&[(&str, &str)]; 6] = [
        &[("Date", &near), ("Expires", &later)],
        &[("Last-Modified", &far), ("Date", &near)],
        &[("Expires", "Sunday, 02-Jan-00 00:00:00 GMT")],
        &[("Server", "x"), ("Date", "not a date"), ("Expires", &later)],
        &[("Expires", "0")],
        &[("Server", "no dates at all")],
    ];
    for headers in cases {
        let flow = dated(headers);
        let replayer = replayer(std::slice::from_ref(&flow), &options());
        let id = replay_of(&replayer, &Live::of(&flow));
        for now in [946_681_202.0, 946_681_262.25, 2e9, 253_402_300_000.0] {
            let head = reply_text(&replayer, id, at(now), RequestFacts::default()).0;
            let response = replayer.recording().response(id.0 as usize).unwrap();
            let mut expected = Vec::new();
            template::write_head(
                &mut expected,
                &response,
                Some(refresh::delta_seconds(at(now), response.timestamp_start)),
                template::FirstDate::Unknown,
            );
            assert_eq!(
                head,
                String::from_utf8(expected).unwrap(),
                "{headers:?} at {now}"
            );
        }
    }
    // And one spelled out: the Date a second before the start, a minute later.
    let flow = dated(&[("Date", &near)]);
    let head = refreshed_head(flow, 946_681_262.0);
    assert_eq!(
        head,
        format!("HTTP/1.1 200 OK\r\nDate: {}\r\n\r\n", date_after_start(59))
    );
}

#[test]
fn unparseable_dates_are_left_alone() {
    let head = refreshed_head(
        dated(&[("Expires", "0"), ("Last-Modified", "2021-06-09T10:18:14Z")]),
        2e9,
    );
    assert_eq!(
        head,
        "HTTP/1.1 200 OK\r\nExpires: 0\r\nLast-Modified: 2021-06-09T10:18:14Z\r\n\r\n"
    );
}

fn framed(edit: impl FnOnce(&mut ResponseSpec), facts: RequestFacts) -> (String, bool) {
    let flow = with_response(test_flow(), edit);
    let replayer = replayer(
        std::slice::from_ref(&flow),
        &ReplayOptions {
            refresh: false,
            ..options()
        },
    );
    let id = replay_of(&replayer, &Live::of(&flow));
    reply_text(&replayer, id, at(2e9), facts)
}

fn set(
    r: &mut ResponseSpec,
    version: &str,
    status: u16,
    reason: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) {
    r.http_version = version.as_bytes().to_vec();
    r.status_code = status;
    r.reason = reason.as_bytes().to_vec();
    r.headers = headers
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    r.content = body.map(|b| b.as_bytes().to_vec());
}

// §i.4 case 50 (the §f.4 table).
#[test]
fn chunked_recordings_are_sent_as_one_chunk_and_kept_alive() {
    let (text, close) = framed(
        |r| {
            set(
                r,
                "HTTP/1.1",
                200,
                "OK",
                &[("Transfer-Encoding", "chunked")],
                Some("abcde"),
            )
        },
        RequestFacts::default(),
    );
    assert_eq!(
        text,
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n"
    );
    assert!(!close);
    let (empty, _) = framed(
        |r| {
            set(
                r,
                "HTTP/1.1",
                200,
                "OK",
                &[("transfer-encoding", "gzip, Chunked")],
                Some(""),
            )
        },
        RequestFacts::default(),
    );
    assert_eq!(
        empty,
        "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, Chunked\r\n\r\n0\r\n\r\n"
    );
}

#[test]
fn bodies_without_length_are_delimited_by_closing() {
    let (text, close) = framed(
        |r| set(r, "HTTP/1.1", 200, "OK", &[("X-A", "1")], Some("until-eof")),
        RequestFacts::default(),
    );
    assert_eq!(text, "HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nuntil-eof");
    assert!(close);
    let (_, gzip_close) = framed(
        |r| {
            set(
                r,
                "HTTP/1.1",
                200,
                "OK",
                &[("Transfer-Encoding", "gzip")],
                Some("x"),
            )
        },
        RequestFacts::default(),
    );
    assert!(gzip_close);
}

#[test]
fn http_1_0_recordings_keep_their_status_line_and_close() {
    let (text, close) = framed(
        |r| {
            set(
                r,
                "HTTP/1.0",
                200,
                "Fine",
                &[("Content-Length", "3")],
                Some("old"),
            )
        },
        RequestFacts::default(),
    );
    assert_eq!(text, "HTTP/1.0 200 Fine\r\nContent-Length: 3\r\n\r\nold");
    assert!(close);
}

#[test]
fn no_content_responses_keep_the_connection() {
    let (text, close) = framed(
        |r| set(r, "HTTP/1.1", 204, "No Content", &[], Some("")),
        RequestFacts::default(),
    );
    assert_eq!(text, "HTTP/1.1 204 No Content\r\n\r\n");
    assert!(!close);
}

#[test]
fn head_requests_get_the_recorded_head_only() {
    let (text, close) = framed(
        |r| {
            set(
                r,
                "HTTP/1.1",
                200,
                "OK",
                &[("Content-Length", "5")],
                Some(""),
            )
        },
        RequestFacts {
            is_head: true,
            wants_close: false,
            http10_keep_alive: false,
        },
    );
    assert_eq!(text, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
    assert!(!close);
    let (chunked, _) = framed(
        |r| {
            set(
                r,
                "HTTP/1.1",
                200,
                "OK",
                &[("Transfer-Encoding", "chunked")],
                Some(""),
            )
        },
        RequestFacts {
            is_head: true,
            wants_close: false,
            http10_keep_alive: false,
        },
    );
    assert_eq!(
        chunked,
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
}

#[test]
fn connection_close_in_the_recording_closes_but_capitalised_close_does_not() {
    let (text, close) = framed(
        |r| {
            set(
                r,
                "HTTP/1.1",
                200,
                "OK",
                &[("Connection", "close"), ("Content-Length", "0")],
                Some(""),
            )
        },
        RequestFacts::default(),
    );
    assert!(text.contains("Connection: close\r\n"));
    assert!(close);
    let (_, capital) = framed(
        |r| {
            set(
                r,
                "HTTP/1.1",
                200,
                "OK",
                &[("Connection", "Close"), ("Content-Length", "0")],
                Some(""),
            )
        },
        RequestFacts::default(),
    );
    assert!(!capital);
    let (_, keep_1_0) = framed(
        |r| {
            set(
                r,
                "HTTP/1.0",
                200,
                "OK",
                &[("Connection", "keep-alive"), ("Content-Length", "0")],
                Some(""),
            )
        },
        RequestFacts::default(),
    );
    assert!(!keep_1_0);
}

/// [`framed`] with `--keep-alive` (and refresh on or off).
fn framed_keep_alive(
    edit: impl FnOnce(&mut ResponseSpec),
    facts: RequestFacts,
    refresh: bool,
) -> (String, bool) {
    let flow = with_response(test_flow(), edit);
    let replayer = replayer(
        std::slice::from_ref(&flow),
        &ReplayOptions {
            refresh,
            keep_alive: true,
            ..options()
        },
    );
    let id = replay_of(&replayer, &Live::of(&flow));
    reply_text(&replayer, id, at(2e9), facts)
}

#[test]
fn keep_alive_drops_a_recorded_connection_close_and_keeps_the_connection() {
    for refresh in [false, true] {
        let (text, close) = framed_keep_alive(
            |r| {
                set(
                    r,
                    "HTTP/1.1",
                    200,
                    "OK",
                    &[("Connection", "close"), ("Content-Length", "2")],
                    Some("ok"),
                )
            },
            RequestFacts::default(),
            refresh,
        );
        assert_eq!(text, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        assert!(!close, "refresh {refresh}");
    }
    // An HTTP/1.0 response closes unless it says keep-alive: --keep-alive says so for it.
    let (text, close) = framed_keep_alive(
        |r| {
            set(
                r,
                "HTTP/1.0",
                200,
                "OK",
                &[("Content-Length", "3"), ("Connection", "close")],
                Some("old"),
            )
        },
        RequestFacts::default(),
        true,
    );
    assert_eq!(
        text,
        "HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nold"
    );
    assert!(!close);
    // An HTTP/1.0 client that asks for keep-alive (ab -k) is told, once.
    let ab = RequestFacts {
        http10_keep_alive: true,
        ..RequestFacts::default()
    };
    for (version, refresh) in [("HTTP/1.1", false), ("HTTP/1.1", true), ("HTTP/1.0", false)] {
        let (text, close) = framed_keep_alive(
            |r| {
                set(
                    r,
                    version,
                    200,
                    "OK",
                    &[("Connection", "close"), ("Content-Length", "2")],
                    Some("ok"),
                )
            },
            ab,
            refresh,
        );
        assert_eq!(
            text,
            format!("{version} 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok")
        );
        assert!(!close);
    }
    // Without --keep-alive nothing is added.
    let (text, _) = framed(
        |r| {
            set(
                r,
                "HTTP/1.1",
                200,
                "OK",
                &[("Content-Length", "2")],
                Some("ok"),
            )
        },
        ab,
    );
    assert_eq!(text, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    // The client's own close still closes.
    let (_, close) = framed_keep_alive(
        |r| {
            set(
                r,
                "HTTP/1.1",
                200,
                "OK",
                &[("Connection", "close"), ("Content-Length", "0")],
                Some(""),
            )
        },
        RequestFacts {
            is_head: false,
            wants_close: true,
            http10_keep_alive: false,
        },
        false,
    );
    assert!(close);
    // A body delimited by the close keeps its recorded head and still closes.
    let (text, close) = framed_keep_alive(
        |r| {
            set(
                r,
                "HTTP/1.1",
                200,
                "OK",
                &[("Connection", "close")],
                Some("until-eof"),
            )
        },
        RequestFacts::default(),
        false,
    );
    assert_eq!(
        text,
        "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-eof"
    );
    assert!(close);
}

#[test]
fn a_request_asking_to_close_closes() {
    let (_, close) = framed(
        |r| {
            set(
                r,
                "HTTP/1.1",
                200,
                "OK",
                &[("Content-Length", "0")],
                Some(""),
            )
        },
        RequestFacts {
            is_head: false,
            wants_close: true,
            http10_keep_alive: false,
        },
    );
    assert!(close);
}

#[test]
fn http2_and_http3_recordings_go_out_as_http_1_1_with_standard_reasons() {
    for version in ["HTTP/2.0", "HTTP/3"] {
        let (text, close) = framed(
            |r| set(r, version, 404, "", &[("content-length", "1")], Some("x")),
            RequestFacts::default(),
        );
        assert_eq!(text, "HTTP/1.1 404 Not Found\r\ncontent-length: 1\r\n\r\nx");
        assert_eq!(close, version == "HTTP/3");
    }
    let (unknown, _) = framed(
        |r| set(r, "HTTP/2.0", 299, "", &[("content-length", "0")], Some("")),
        RequestFacts::default(),
    );
    assert!(unknown.starts_with("HTTP/1.1 299 \r\n"));
}

#[test]
fn har_http2_recordings_keep_their_invalid_status_line_and_close() {
    let (text, close) = framed(
        |r| set(r, "HTTP/2", 200, "OK", &[("content-length", "0")], Some("")),
        RequestFacts::default(),
    );
    assert!(text.starts_with("HTTP/2 200 OK\r\n"));
    assert!(close);
}

#[test]
fn a_body_that_was_not_stored_sends_the_head_only() {
    let (text, _) = framed(
        |r| {
            set(
                r,
                "HTTP/1.1",
                200,
                "OK",
                &[("Transfer-Encoding", "chunked")],
                None,
            )
        },
        RequestFacts::default(),
    );
    assert_eq!(
        text,
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
}

#[test]
fn recorded_host_headers_and_authority_give_the_pretty_host() {
    let mut flow = test_flow();
    flow.headers
        .push((b"Host".to_vec(), b"Example.com:9999".to_vec()));
    let replayer = replayer(std::slice::from_ref(&flow), &options());
    let mut live = Live::of(&flow);
    live.host = b"example.com".to_vec();
    assert_eq!(live.decide(&replayer), Decision::Forward);
    live.host = b"Example.com".to_vec();
    assert_eq!(live.decide(&replayer), Decision::Replay(FlowId(0)));
}

#[test]
fn every_request_of_a_real_recording_is_replayed_in_order() {
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/demo.flows");
    let recording = Recording::open(&[fixture], LoadOptions::default(), &mut |_| {}).unwrap();
    let replayer = Replayer::new(
        Arc::new(recording),
        &ReplayOptions {
            unmatched: Unmatched::Kill,
            ..options()
        },
    );
    assert_eq!(replayer.keys(), 11);
    let requests: Vec<_> = replayer.recording().flows().map(|f| f.request).collect();
    for (n, request) in requests.iter().enumerate() {
        let headers: Vec<(String, &[u8])> = request
            .headers
            .iter()
            .map(|(k, v)| (String::from_utf8(k.to_vec()).unwrap(), v))
            .collect();
        let headers: Vec<httparse::Header<'_>> = headers
            .iter()
            .map(|(k, v)| httparse::Header { name: k, value: v })
            .collect();
        let host = key::pretty_host(request.headers.get(b"host").unwrap());
        let decision = replayer.decide(&LiveRequest {
            scheme: request.scheme,
            method: request.method,
            target: request.path,
            host,
            port: request.port,
            headers: &headers,
            body: request.content.unwrap_or_default(),
        });
        assert_eq!(decision, Decision::Replay(FlowId(n as u32)), "request {n}");
    }
    assert_eq!(replayer.remaining(), 0);
    let (chunked, close) = reply_text(&replayer, FlowId(5), at(2e9), RequestFacts::default());
    assert!(
        chunked
            .ends_with("\r\n\r\n2a\r\nchunk-one\nchunk-two-is-longer\nchunk-three\n\r\n0\r\n\r\n"),
        "{chunked}"
    );
    assert!(!close);
}

#[test]
fn concurrent_pops_serve_every_flow_exactly_once() {
    const THREADS: usize = 4;
    const FLOWS: usize = 500;
    let flows = vec![test_flow(); FLOWS];
    let replayer = Arc::new(replayer(&flows, &options()));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let replayer = Arc::clone(&replayer);
            std::thread::spawn(move || {
                let live = Live::of(&test_flow());
                let mut served = Vec::new();
                loop {
                    match live.decide(&replayer) {
                        Decision::Replay(id) => served.push(id.0),
                        _ => return served,
                    }
                }
            })
        })
        .collect();
    let mut all: Vec<u32> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..FLOWS as u32).collect::<Vec<_>>());
    assert_eq!(replayer.remaining(), 0);
}

#[test]
fn long_recorded_bodies_are_compared_in_full() {
    let long = vec![b'x'; 300];
    let mut flow = test_flow();
    flow.method = b"POST".to_vec();
    flow.content = Some(long.clone());
    let replayer = replayer(&[flow.clone(), flow.clone()], &options());
    assert_eq!(replayer.keys(), 1);
    let mut live = Live::of(&flow);
    live.body[299] = b'y';
    assert_eq!(live.decide(&replayer), Decision::Forward);
    live.body.truncate(299);
    assert_eq!(live.decide(&replayer), Decision::Forward);
    live.body = long;
    assert_eq!(live.decide(&replayer), Decision::Replay(FlowId(0)));
}

#[test]
fn the_replayer_can_be_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Replayer>();
}

#[test]
fn interleaved_keys_each_keep_their_recording_order() {
    let a = test_flow();
    let mut b = test_flow();
    b.path = b"/other".to_vec();
    let replayer = replayer(&[a.clone(), b.clone(), a.clone(), b.clone()], &options());
    assert_eq!(Live::of(&b).decide(&replayer), Decision::Replay(FlowId(1)));
    assert_eq!(Live::of(&a).decide(&replayer), Decision::Replay(FlowId(0)));
    assert_eq!(Live::of(&a).decide(&replayer), Decision::Replay(FlowId(2)));
    assert_eq!(Live::of(&b).decide(&replayer), Decision::Replay(FlowId(3)));
    assert_eq!(Live::of(&a).decide(&replayer), Decision::Forward);
}

#[test]
fn requests_with_more_key_items_than_fit_inline_still_match_exactly() {
    let query: Vec<String> = (0..40).map(|i| format!("p{i}=v{i}")).collect();
    let mut flow = test_flow();
    flow.path = format!("/many?{}", query.join("&")).into_bytes();
    let replayer = replayer(&[flow.clone(), flow.clone()], &options());
    let mut changed = Live::of(&flow);
    changed.target.push(b'x');
    assert_eq!(changed.decide(&replayer), Decision::Forward);
    assert_eq!(
        Live::of(&flow).decide(&replayer),
        Decision::Replay(FlowId(0))
    );
}

#[test]
fn http2_recordings_take_the_host_from_the_authority() {
    // The writer has no authority field, so check the view-level rule directly.
    let mut bytes = Vec::new();
    let mut flow = test_flow();
    flow.http_version = b"HTTP/2.0".to_vec();
    flow.headers
        .push((b"host".to_vec(), b"from-header".to_vec()));
    write_flow(&mut bytes, &flow);
    let recording = Recording::from_bytes(
        vec![(PathBuf::from("h2.flows"), bytes)],
        LoadOptions::default(),
    )
    .unwrap();
    let mut request = recording.flow(0).request;
    let host = |r: &crate::flowfile::RequestView<'_>| match key::KeyRequest::recorded(r).host {
        key::KeyHost::Single(h) => h.to_vec(),
        key::KeyHost::Joined(_) => panic!("one host"),
    };
    assert_eq!(host(&request), b"from-header");
    request.authority = b"Authority.example:443";
    assert_eq!(host(&request), b"Authority.example");
    request.http_version = b"HTTP/2";
    assert_eq!(host(&request), b"from-header");
}

#[test]
fn repeated_recorded_host_headers_are_used_joined_and_whole() {
    let mut flow = test_flow();
    flow.headers
        .push((b"Host".to_vec(), b"a.example:1".to_vec()));
    flow.headers.push((b"host".to_vec(), b"b.example".to_vec()));
    let replayer = replayer(std::slice::from_ref(&flow), &options());
    let mut live = Live::of(&flow);
    live.host = b"a.example".to_vec();
    assert_eq!(live.decide(&replayer), Decision::Forward);
    live.host = b"a.example:1, b.example".to_vec();
    assert_eq!(live.decide(&replayer), Decision::Replay(FlowId(0)));
}

// §d.3.5: mitmproxy keeps a cookie field whose expiry cannot be shifted exactly as recorded.
#[test]
fn a_cookie_expiring_in_year_9999_is_sent_as_recorded_and_later_dates_still_move() {
    let head = refreshed_head(
        dated(&[
            ("Set-Cookie", "a=1;Expires=Tue, 01-Jan-2030 00:00:00 GMT"),
            (
                "Set-Cookie",
                "id=\"x\";expires=Fri, 31-Dec-9999 23:59:59 GMT; path=/",
            ),
            ("Date", "Sat, 01 Jan 2000 00:00:00 GMT"),
            ("Set-Cookie", "b=2; Expires=Tue, 01-Jan-2030 00:00:00 GMT"),
        ]),
        946_681_262.0,
    );
    assert_eq!(
        head,
        "HTTP/1.1 200 OK\r\n\
         Set-Cookie: a=1; Expires=Tue, 01 Jan 2030 00:01:00 GMT\r\n\
         Set-Cookie: id=\"x\";expires=Fri, 31-Dec-9999 23:59:59 GMT; path=/\r\n\
         Date: Sat, 01 Jan 2000 00:01:00 GMT\r\n\
         Set-Cookie: b=2; Expires=Tue, 01 Jan 2030 00:01:00 GMT\r\n\r\n"
    );
    // Going back in time the same cookie can be shifted, so it is re-serialised.
    let earlier = refreshed_head(
        dated(&[(
            "Set-Cookie",
            "id=\"x\";expires=Fri, 31-Dec-9999 23:59:59 GMT; path=/",
        )]),
        946_681_142.0,
    );
    assert!(
        earlier.contains("Set-Cookie: id=x; expires=Fri, 31 Dec 9999 23:58:59 GMT; path=/\r\n"),
        "{earlier}"
    );
}

/// Every fixture response whose head is rendered at serve time comes out exactly as its
/// pre-rendered template would (with and without refresh, at a shift forward and back).
#[test]
fn heads_rendered_at_serve_time_equal_pre_rendered_heads() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut compared = 0;
    for name in [
        "demo.flows",
        "mitm-6.0.2-v10.flows",
        "mitm-7.0.4-v14.flows",
        "mitm-8.1.1-v17.flows",
        "mitm-10.4.2-v20.flows",
        "mitm-12.3.1-v21.flows",
    ] {
        let recording =
            Recording::open(&[dir.join(name)], LoadOptions::default(), &mut |_| {}).unwrap();
        for refresh in [true, false] {
            let templates = template::Templates::build(&recording, refresh);
            for id in 0..recording.len() {
                let Some(response) = recording.response(id) else {
                    continue;
                };
                if template::needs_template(&response, refresh, false) {
                    continue;
                }
                let t = templates.get(id).unwrap();
                for delta in [0.0, 86_400.5, -3_000_000.0] {
                    let mut expected = Vec::new();
                    refresh::write_refreshed_head(
                        &mut expected,
                        templates.head(t),
                        templates.patches(t),
                        delta,
                        |_| None,
                    );
                    expected.extend_from_slice(templates.chunk_line(t));
                    let mut rendered = Vec::new();
                    let shape = template::write_head(
                        &mut rendered,
                        &response,
                        refresh.then_some(delta),
                        template::FirstDate::Unknown,
                    );
                    if let (Framing::Chunked, Some(body)) = (shape.framing, shape.body) {
                        template::write_chunk_line(&mut rendered, body.len());
                    }
                    assert_eq!(
                        String::from_utf8_lossy(&rendered),
                        String::from_utf8_lossy(&expected),
                        "{name} flow {id}"
                    );
                    assert_eq!(
                        (shape.framing, shape.body_until_close, shape.response_close),
                        (t.framing, t.body_until_close, t.response_close),
                        "{name} flow {id}"
                    );
                    compared += 1;
                }
            }
        }
    }
    assert!(compared > 100, "only {compared} heads compared");
}

/// Keys longer than the stack buffer used to confirm a match (large request bodies) are kept at
/// load and still matched exactly: the same body twice is one key, one byte different is another.
#[test]
fn requests_with_bodies_longer_than_the_key_buffer_match_exactly() {
    let body = |last: u8| {
        let mut b = vec![b'a'; index::KEY_BUFFER * 3];
        *b.last_mut().unwrap() = last;
        b
    };
    let post = |content: Vec<u8>, status: u16| {
        let mut flow = FlowSpec::get("/upload", status, b"ok");
        flow.method = b"POST".to_vec();
        flow.content = Some(content);
        flow
    };
    let flows = [
        post(body(b'x'), 201),
        post(body(b'y'), 202),
        post(body(b'x'), 203),
    ];
    let replayer = replayer(&flows, &options());
    assert_eq!(replayer.keys(), 2);
    assert_eq!(replay_of(&replayer, &Live::of(&flows[1])), FlowId(1));
    assert_eq!(replay_of(&replayer, &Live::of(&flows[0])), FlowId(0));
    assert_eq!(replay_of(&replayer, &Live::of(&flows[0])), FlowId(2));
    assert_eq!(Live::of(&flows[0]).decide(&replayer), Decision::Forward);
    assert_eq!(
        Live::of(&post(body(b'z'), 200)).decide(&replayer),
        Decision::Forward
    );
}

/// A recording of many distinct keys (the table grows past its first size) answers every one,
/// once, in consume order.
#[test]
fn every_key_of_a_many_key_recording_is_found_once() {
    let flows: Vec<FlowSpec> = (0..3000)
        .map(|i| FlowSpec::get(&format!("/item/{i}"), 200, b"x"))
        .collect();
    let replayer = replayer(&flows, &options());
    assert_eq!(replayer.keys(), 3000);
    for (i, flow) in flows.iter().enumerate().rev() {
        assert_eq!(replay_of(&replayer, &Live::of(flow)), FlowId(i as u32));
    }
    assert_eq!(replayer.remaining(), 0);
    assert_eq!(Live::of(&flows[7]).decide(&replayer), Decision::Forward);
}

// Issue 16: why a request missed, reset, unused flows.

impl Live {
    /// Runs `f` with this request as the matcher sees it.
    fn with<R>(&self, f: impl FnOnce(&LiveRequest<'_>) -> R) -> R {
        let headers: Vec<httparse::Header<'_>> = self
            .headers
            .iter()
            .map(|(n, v)| httparse::Header { name: n, value: v })
            .collect();
        f(&LiveRequest {
            scheme: b"http",
            method: &self.method,
            target: &self.target,
            host: &self.host,
            port: self.port,
            headers: &headers,
            body: &self.body,
        })
    }

    fn explain(&self, replayer: &Replayer) -> miss::Explanation {
        assert!(matches!(self.decide(replayer), Decision::Forward));
        self.with(|r| miss::explain(replayer, r))
            .expect("a nearest flow")
    }
}

fn flow_with(path: &str, edit: impl FnOnce(&mut FlowSpec)) -> FlowSpec {
    let mut flow = test_flow();
    flow.path = path.as_bytes().to_vec();
    edit(&mut flow);
    flow
}

#[test]
fn a_miss_differing_in_one_query_parameter_is_explained_with_ignore_param() {
    let recorded = flow_with("/list?q=shoes&page=1", |_| {});
    let replayer = replayer(std::slice::from_ref(&recorded), &options());
    let mut live = Live::of(&recorded);
    live.target = b"/list?q=shoes&page=2".to_vec();
    let e = live.explain(&replayer);
    assert_eq!(e.flow, FlowId(0));
    assert_eq!(e.differs, [miss::Part::Query]);
    assert_eq!(e.params, ["page"]);
    assert_eq!(e.fix.as_ref().unwrap().to_string(), "--ignore-param page");
    assert_eq!(e.reason(), "query parameter page differs");
    // The flag really makes it match.
    let fixed = ReplayOptions {
        ignore_params: vec!["page".into()],
        ..options()
    };
    assert!(matches!(
        live.decide(&super::tests::replayer(&[recorded], &fixed)),
        Decision::Replay(_)
    ));
}

#[test]
fn host_port_body_and_header_differences_name_their_flags() {
    let recorded = flow_with("/a", |f| {
        f.headers.push((b"x-id".to_vec(), b"1".to_vec()));
    });
    let base = Live::of(&recorded);
    let plain = replayer(std::slice::from_ref(&recorded), &options());

    let mut host = Live::of(&recorded);
    host.host = b"other.example".to_vec();
    let e = host.explain(&plain);
    assert_eq!(
        (e.differs.as_slice(), e.fix.unwrap().to_string()),
        (&[miss::Part::Host][..], "--ignore-host".to_string())
    );

    let mut port = Live::of(&recorded);
    port.port = 8080;
    let e = port.explain(&plain);
    assert_eq!(e.differs, [miss::Part::Port]);
    assert_eq!(e.fix.unwrap().to_string(), "--ignore-port");

    let mut body = Live::of(&recorded);
    body.body = b"other".to_vec();
    let e = body.explain(&plain);
    assert_eq!(e.differs, [miss::Part::Body]);
    assert_eq!(e.fix.unwrap().to_string(), "--ignore-content");

    let with_header = ReplayOptions {
        use_headers: vec!["x-id".into()],
        ..options()
    };
    let r = replayer(std::slice::from_ref(&recorded), &with_header);
    let mut header = Live::of(&recorded);
    header.headers.retain(|(n, _)| n != "x-id");
    header.headers.push(("X-Id".into(), b"2".to_vec()));
    let e = header.explain(&r);
    assert_eq!(e.differs, [miss::Part::Headers]);
    assert_eq!(e.headers, ["x-id"]);
    assert_eq!(e.fix.unwrap().to_string(), "without --rheader x-id");

    // Two parts at once: both flags, verified together.
    let mut two = base;
    two.port = 1;
    two.target = b"/a?ts=5".to_vec();
    let e = two.explain(&plain);
    assert_eq!(e.differs, [miss::Part::Port, miss::Part::Query]);
    assert_eq!(
        e.fix.unwrap().to_string(),
        "--ignore-port --ignore-param ts"
    );
}

#[test]
fn a_form_field_difference_suggests_ignore_payload_param() {
    let form = |body: &str| {
        flow_with("/login", |f| {
            f.method = b"POST".to_vec();
            f.headers = vec![(
                b"content-type".to_vec(),
                b"application/x-www-form-urlencoded".to_vec(),
            )];
            f.content = Some(body.as_bytes().to_vec());
        })
    };
    let forms = ReplayOptions {
        ignore_payload_params: vec!["csrf".into()],
        ..options()
    };
    let r = replayer(&[form("user=a&nonce=1")], &forms);
    let live = Live::of(&form("user=a&nonce=2"));
    let e = live.explain(&r);
    assert_eq!(e.differs, [miss::Part::Body]);
    assert_eq!(e.fields, ["nonce"]);
    assert_eq!(e.fix.unwrap().to_string(), "--ignore-payload-param nonce");
}

#[test]
fn a_different_path_or_method_has_no_flag_and_the_nearest_is_the_closest() {
    let a = flow_with("/api/users?id=1", |_| {});
    let b = flow_with("/api/users?id=2", |_| {});
    let c = flow_with("/static/app.js", |_| {});
    let r = replayer(&[a, b.clone(), c], &options());
    // Same path: the flow with the fewest differences (id=2) wins.
    let mut live = Live::of(&b);
    live.port = 9;
    let e = live.explain(&r);
    assert_eq!(e.flow, FlowId(1));
    assert_eq!(e.differs, [miss::Part::Port]);
    // Another path: a neighbour by path, and no flag can fix a path.
    let mut other = Live::of(&b);
    other.target = b"/api/userz?id=2".to_vec();
    let e = other.explain(&r);
    assert!(e.differs.contains(&miss::Part::Path));
    assert_eq!(e.fix, None);
    let mut post = Live::of(&b);
    post.method = b"DELETE".to_vec();
    let e = post.explain(&r);
    assert_eq!(
        (e.flow, e.differs.as_slice(), e.fix),
        (FlowId(1), &[miss::Part::Method][..], None)
    );
}

#[test]
fn a_repeat_after_its_flow_was_consumed_is_explained_as_exhausted() {
    let flow = test_flow();
    let r = replayer(std::slice::from_ref(&flow), &options());
    let live = Live::of(&flow);
    assert_eq!(replay_of(&r, &live), FlowId(0));
    let e = live.explain(&r);
    assert!(e.differs.is_empty());
    assert_eq!(e.fix, Some(miss::Fix::Exhausted));
    assert_eq!(e.reason(), "every recorded flow of its key was served");
}

#[test]
fn the_miss_ring_keeps_the_latest_and_analyses_at_most_one_per_interval() {
    let recorded = flow_with("/x?page=1", |_| {});
    let r = replayer(std::slice::from_ref(&recorded), &options());
    let log = miss::MissLog::new();
    let mut live = Live::of(&recorded);
    let step = miss::ANALYSE_EVERY;
    let total = miss::RING + 5;
    for i in 0..total {
        live.target = format!("/x?page={}", i + 2).into_bytes();
        let now = at(1000.0) + step * i as u32;
        assert!(live.with(|q| log.record(&r, q, now)).is_some(), "miss {i}");
        // A second miss within the interval is counted, not analysed.
        assert!(live.with(|q| log.record(&r, q, now + step / 2)).is_none());
    }
    assert_eq!(log.seen(), 2 * total as u64);
    let recent = log.recent();
    assert_eq!(recent.len(), miss::RING);
    let first: serde_json::Value = serde_json::from_str(&recent[0].1).unwrap();
    let last: serde_json::Value = serde_json::from_str(&recent.last().unwrap().1).unwrap();
    assert_eq!(first["url"], "http://address:22/x?page=7");
    assert_eq!(
        last["url"],
        format!("http://address:22/x?page={}", total + 1)
    );
    assert_eq!(last["nearest"]["fix"], "--ignore-param page");
    assert_eq!(last["nearest"]["differs"], serde_json::json!(["query"]));
    let top = miss::top_reasons([log.reasons().0], 3);
    assert_eq!(top.len(), 1);
    assert_eq!(top[0].0.fix.as_deref(), Some("--ignore-param page"));
    assert_eq!(top[0].1, total as u64);
    log.clear();
    assert!(log.recent().is_empty());
}

#[test]
fn reset_puts_every_consume_cursor_back_and_unused_follows_the_cursors() {
    let one = flow_with("/one", |_| {});
    let two = flow_with("/two", |_| {});
    let r = replayer(&[one.clone(), two.clone(), two.clone()], &options());
    assert_eq!(r.unused(), [FlowId(0), FlowId(1), FlowId(2)]);
    assert_eq!(replay_of(&r, &Live::of(&one)), FlowId(0));
    assert_eq!(replay_of(&r, &Live::of(&two)), FlowId(1));
    assert_eq!(r.unused(), [FlowId(2)]);
    assert_eq!(r.remaining(), 1);
    assert_eq!(replay_of(&r, &Live::of(&two)), FlowId(2));
    assert!(matches!(Live::of(&two).decide(&r), Decision::Forward));
    r.reset();
    assert_eq!(r.remaining(), 3);
    assert_eq!(r.unused().len(), 3);
    assert_eq!(replay_of(&r, &Live::of(&two)), FlowId(1));
    assert_eq!(replay_of(&r, &Live::of(&one)), FlowId(0));
}

#[test]
fn unused_in_the_reuse_orders_marks_what_was_served() {
    let one = flow_with("/one", |_| {});
    let two = flow_with("/two", |_| {});
    for (order, served) in [
        (Order::First, vec![FlowId(0), FlowId(1)]),
        (Order::Last, vec![FlowId(0), FlowId(2)]),
        (Order::Cycle, vec![FlowId(0), FlowId(1)]),
    ] {
        let o = ReplayOptions { order, ..options() };
        let r = replayer(&[one.clone(), two.clone(), two.clone()], &o);
        assert_eq!(r.unused().len(), 3, "{order:?}");
        replay_of(&r, &Live::of(&one));
        replay_of(&r, &Live::of(&two));
        let unused: Vec<FlowId> = (0..3).map(FlowId).filter(|f| !served.contains(f)).collect();
        assert_eq!(r.unused(), unused, "{order:?}");
        r.reset();
        assert_eq!(r.unused().len(), 3, "{order:?}");
    }
}

#[test]
fn reset_while_serving_keeps_the_remaining_count_exact() {
    let flow = test_flow();
    let flows: Vec<FlowSpec> = (0..64).map(|_| flow.clone()).collect();
    let r = replayer(&flows, &options());
    let live = Live::of(&flow);
    let served = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                for _ in 0..2000 {
                    if let Decision::Replay(_) = live.decide(&r) {
                        served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
        s.spawn(|| {
            for _ in 0..200 {
                r.reset();
                std::thread::yield_now();
            }
        });
    });
    // Whatever the interleaving: the count matches the cursors exactly.
    assert_eq!(r.remaining(), r.unused().len() as u64);
    assert!(served.into_inner() >= 64);
    r.reset();
    assert_eq!(r.remaining(), 64);
    assert_eq!(r.unused().len(), 64);
}

/// A lookup confirms a candidate by its recorded fields when they are the request's bytes, and
/// by the whole key otherwise: a request that differs from the recording only where the key does
/// not look (the method's case, the percent-encoding of a query value) is answered all the same.
#[test]
fn requests_equal_in_key_but_not_in_bytes_are_answered() {
    let mut flow = test_flow();
    flow.path = b"/path?x=A".to_vec();
    let reuse = ReplayOptions {
        order: Order::First,
        ..options()
    };
    let replayer = replayer(&[flow.clone()], &reuse);
    let mut live = Live::of(&flow);
    assert_eq!(live.decide(&replayer), Decision::Replay(FlowId(0)));
    live.method = b"get".to_vec();
    live.target = b"/path?x=%41".to_vec();
    assert_eq!(live.decide(&replayer), Decision::Replay(FlowId(0)));
    live.target = b"/path?x=B".to_vec();
    assert_eq!(live.decide(&replayer), Decision::Forward);
    live.target = b"/path?x=A".to_vec();
    live.body = b"other".to_vec();
    assert_eq!(live.decide(&replayer), Decision::Forward);
}

/// A recorded `Host` field, not the recorded destination host, is the key's host (spec §b.5);
/// such a flow is confirmed through its key, since its `host` field says nothing.
#[test]
fn a_recorded_host_field_not_the_destination_is_the_key_host() {
    let mut flow = test_flow();
    flow.headers
        .push((b"Host".to_vec(), b"example.com:22".to_vec()));
    let reuse = ReplayOptions {
        order: Order::First,
        ..options()
    };
    let replayer = replayer(&[flow.clone()], &reuse);
    let mut live = Live::of(&flow);
    assert_eq!(live.decide(&replayer), Decision::Forward);
    live.host = b"example.com".to_vec();
    assert_eq!(live.decide(&replayer), Decision::Replay(FlowId(0)));
}

// Issue 13: the look-ahead of a ring turn's requests.

#[test]
fn a_look_ahead_finds_the_flow_of_recorded_requests_only_and_consumes_nothing() {
    use lookahead::{Lookahead, LOOKAHEAD_MAX};
    let flows: Vec<FlowSpec> = (0..LOOKAHEAD_MAX + 4)
        .map(|i| {
            let mut flow = test_flow();
            flow.path = format!("/item/{i}").into_bytes();
            flow
        })
        .collect();
    let replayer = replayer(&flows, &options());
    let mut batch = Lookahead::default();
    for flow in &flows {
        Live::of(flow).with(|r| batch.add(&replayer, r));
    }
    assert!(batch.is_full());
    assert_eq!(batch.len(), LOOKAHEAD_MAX);
    assert_eq!(batch.fetch(&replayer), LOOKAHEAD_MAX);
    assert!(batch.is_empty());
    // Another path, another body (part of the key), another port: nothing is found for them.
    let mut others = [flows[0].clone(), flows[0].clone(), flows[0].clone()];
    others[0].path = b"/never-recorded".to_vec();
    others[1].content = Some(b"other".to_vec());
    others[2].port = 23;
    for other in &others {
        Live::of(other).with(|r| batch.add(&replayer, r));
    }
    assert_eq!(batch.fetch(&replayer), 0);
    // Looking ahead decided nothing: every flow is still there, and answers its request.
    assert_eq!(replayer.remaining(), flows.len() as u64);
    for (i, flow) in flows.iter().enumerate() {
        assert_eq!(replay_of(&replayer, &Live::of(flow)), FlowId(i as u32));
    }
}

#[test]
fn only_recordings_of_many_flows_and_many_bytes_are_looked_ahead_by_default() {
    use lookahead::{pays_for, LOOKAHEAD_FROM_BYTES as BYTES, LOOKAHEAD_FROM_FLOWS as FLOWS};
    assert!(pays_for(FLOWS, BYTES));
    assert!(pays_for(1_000_000, 1_832_391_890));
    // A few flows with large bodies, many tiny flows: what lookups read stays cached.
    assert!(!pays_for(FLOWS - 1, BYTES * 100));
    assert!(!pays_for(FLOWS * 100, BYTES - 1));
    assert!(!replayer(&[test_flow()], &options()).looks_ahead());
    // One flow with a body of the whole size: too few flows.
    let big = replayer(
        &[with_response(test_flow(), |r| {
            let body = vec![b'x'; BYTES as usize];
            r.headers[1].1 = body.len().to_string().into_bytes();
            r.content = Some(body);
        })],
        &options(),
    );
    assert!(big.recording().summary().bytes >= BYTES);
    assert!(!big.looks_ahead());
}
