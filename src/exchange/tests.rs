//! The exchange: route → decide → reply description, rendered as HTTP/1 and as HTTP/2 fields.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::config::ReplayOptions;
use crate::flowfile::writer::{write_flow, FlowSpec, ResponseSpec};
use crate::flowfile::{LoadOptions, Recording};
use crate::http2::{hpack, reply};

fn flow() -> FlowSpec {
    FlowSpec {
        id: "00000000-0000-4000-8000-000000000001".to_string(),
        method: b"GET".to_vec(),
        scheme: b"http".to_vec(),
        host: "example.com".to_string(),
        port: 80,
        path: b"/a".to_vec(),
        http_version: b"HTTP/1.1".to_vec(),
        headers: vec![(b"Host".to_vec(), b"example.com".to_vec())],
        content: Some(Vec::new()),
        timestamp_start: 946_681_200.0,
        response: Some(ResponseSpec {
            status_code: 201,
            reason: b"Created".to_vec(),
            http_version: b"HTTP/1.1".to_vec(),
            headers: vec![
                (b"X-Kind".to_vec(), b"recorded".to_vec()),
                (b"Connection".to_vec(), b"keep-alive".to_vec()),
                (b"content-length".to_vec(), b"5".to_vec()),
            ],
            content: Some(b"hello".to_vec()),
            timestamp_start: 946_681_202.0,
        }),
    }
}

fn replayer(options: &ReplayOptions) -> Replayer {
    replayer_of(&flow(), options)
}

fn replayer_of(spec: &FlowSpec, options: &ReplayOptions) -> Replayer {
    let mut bytes = Vec::new();
    write_flow(&mut bytes, spec);
    let recording = Recording::from_bytes(
        vec![(PathBuf::from("test.flows"), bytes)],
        LoadOptions::default(),
    )
    .unwrap();
    Replayer::new(Arc::new(recording), options)
}

fn regular() -> Routing<'static> {
    Routing {
        reverse: None,
        keep_host_header: false,
        tls: false,
    }
}

fn header<'a>(name: &'a str, value: &'a [u8]) -> httparse::Header<'a> {
    httparse::Header { name, value }
}

fn request<'r, 'h>(target: &'r [u8], headers: &'h mut [httparse::Header<'r>]) -> Request<'r, 'h> {
    Request {
        method: b"GET",
        target,
        headers,
        body: b"",
        facts: RequestFacts::default(),
    }
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(946_681_202)
}

#[test]
fn a_recorded_request_is_replayed_through_the_pre_rendered_head() {
    let options = ReplayOptions::default();
    let replayer = replayer(&options);
    let via = Via::new(1);
    let mut headers = [header("Host", b"example.com")];
    let exchange = decide(&replayer, regular(), &via, request(b"/a", &mut headers));
    assert_eq!(exchange.answer, Answer::Replay(FlowId(0)));
    let route = exchange.route.unwrap();
    assert_eq!(
        (route.host, route.port, route.target),
        (&b"example.com"[..], 80, &b"/a"[..])
    );
    assert_eq!(
        exchange.url(b"GET").unwrap().to_string(),
        "http://example.com/a"
    );

    let mut out = Vec::new();
    let rendered = render_http1(&exchange, &replayer, &via, now(), false, &mut out);
    let after = rendered.after;
    assert_eq!((rendered.status, rendered.body_bytes), (Some(201), 5));
    assert_eq!(exchange.answered(rendered.status), Outcome::Replayed(201));
    // Exactly what the replayer's own renderer writes.
    let mut expected = Vec::new();
    let reply = replayer.write_reply(FlowId(0), now(), &RequestFacts::default(), &mut expected);
    expected.extend_from_slice(reply.body);
    expected.extend_from_slice(reply.tail);
    assert_eq!(out, expected);
    assert!(out.starts_with(b"HTTP/1.1 201 Created\r\n"), "{out:?}");
    assert!(out.ends_with(b"\r\n\r\nhello"));
    assert_eq!(after, After::Continue);

    let counters = Counters::default();
    exchange.count(&counters);
    assert_eq!(
        counters.replayed.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn a_stopping_server_says_close_on_a_replay() {
    let options = ReplayOptions {
        order: crate::config::Order::First,
        ..ReplayOptions::default()
    };
    let replayer = replayer(&options);
    let via = Via::new(1);
    let mut headers = [header("Host", b"example.com")];
    let exchange = decide(&replayer, regular(), &via, request(b"/a", &mut headers));
    let mut out = Vec::new();
    let after = render_http1(&exchange, &replayer, &via, now(), true, &mut out).after;
    assert_eq!(after, After::Close);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
}

#[test]
fn regular_mode_without_a_host_is_a_400_that_closes() {
    let replayer = replayer(&ReplayOptions::default());
    let via = Via::new(1);
    let mut headers = [];
    let exchange = decide(&replayer, regular(), &via, request(b"/a", &mut headers));
    assert_eq!(exchange.answer, Answer::NoHost);
    assert!(exchange.route.is_none() && exchange.url(b"GET").is_none());
    let mut out = Vec::new();
    assert_eq!(
        render_http1(&exchange, &replayer, &via, now(), false, &mut out).after,
        After::Close
    );
    assert!(out.starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
    let counters = Counters::default();
    exchange.count(&counters);
    assert_eq!(
        counters.rejected.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn an_unmatched_request_that_came_back_is_a_508_not_a_forward() {
    let replayer = replayer(&ReplayOptions::default());
    let via = Via::new(7);
    let ours = format!("1.1 {}", via.received_by());
    let mut headers = [
        header("Host", b"other.example"),
        header("Via", ours.as_bytes()),
    ];
    let exchange = decide(&replayer, regular(), &via, request(b"/b", &mut headers));
    assert_eq!(exchange.answer, Answer::LoopDetected);
    let mut out = Vec::new();
    render_http1(&exchange, &replayer, &via, now(), false, &mut out);
    assert!(out.starts_with(b"HTTP/1.1 508 Loop Detected\r\n"));

    let mut headers = [header("Host", b"other.example")];
    let exchange = decide(&replayer, regular(), &via, request(b"/b", &mut headers));
    assert_eq!(exchange.answer, Answer::Forward);
}

#[test]
fn reverse_mode_rewrites_the_host_and_routes_to_its_origin() {
    let replayer = replayer(&ReplayOptions::default());
    let via = Via::new(1);
    let origin = Origin::parse_reverse_spec("http://example.com").unwrap();
    let host = origin.host_header().into_bytes();
    let routing = Routing {
        reverse: Some((&origin, &host)),
        keep_host_header: false,
        tls: false,
    };
    let mut headers = [header("Host", b"127.0.0.1:8080")];
    let exchange = decide(&replayer, routing, &via, request(b"/a", &mut headers));
    assert_eq!(exchange.answer, Answer::Replay(FlowId(0)));
    assert_eq!(headers[0].value, b"example.com");
}

#[test]
fn one_reply_description_renders_as_http2_headers_and_data() {
    let replayer = replayer(&ReplayOptions::default());
    let via = Via::new(1);
    let mut headers = [header("Host", b"example.com")];
    let exchange = decide(&replayer, regular(), &via, request(b"/a", &mut headers));
    let mut scratch = Vec::new();
    let parts = exchange.describe(&replayer, now(), &mut scratch).unwrap();
    assert_eq!(parts.status, 201);
    assert_eq!(parts.body, b"hello");
    assert_eq!(parts.refresh_delta, Some(0.0));
    assert!(!parts.close);
    // HEADERS: the recorded fields through http2::reply, connection-specific ones dropped.
    let fields: Vec<(&[u8], &[u8])> = parts.headers.unwrap().iter().collect();
    let mut block = Vec::new();
    reply::encode_head(&mut block, parts.status, &fields);
    let mut got = Vec::new();
    hpack::Decoder::default()
        .decode(&block, |n, v| got.push((n.to_vec(), v.to_vec())))
        .unwrap();
    let want: Vec<(Vec<u8>, Vec<u8>)> = [
        (&b":status"[..], &b"201"[..]),
        (b"x-kind", b"recorded"),
        (b"content-length", b"5"),
    ]
    .iter()
    .map(|(n, v)| (n.to_vec(), v.to_vec()))
    .collect();
    assert_eq!(got, want);
    // DATA: the body slice of the mapping itself, not a copy.
    assert!(replayer.recording().span_of(parts.body).is_some());

    // A status answer describes as a bare status.
    let status = Exchange {
        route: None,
        answer: Answer::Status(404),
        facts: RequestFacts::default(),
    };
    let parts = status.describe(&replayer, now(), &mut scratch).unwrap();
    assert_eq!((parts.status, parts.body), (404, &b""[..]));
    assert!(parts.headers.is_none());
}

/// The HPACK-decoded fields of a description's HTTP/2 HEADERS block.
fn h2_head(parts: &ReplyParts<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let fields: Vec<(&[u8], &[u8])> = parts.headers.unwrap().iter().collect();
    let mut block = Vec::new();
    reply::encode_head(&mut block, parts.status, &fields);
    let mut got = Vec::new();
    hpack::Decoder::default()
        .decode(&block, |n, v| got.push((n.to_vec(), v.to_vec())))
        .unwrap();
    got
}

/// The value of field `name` (lowercase) in an HTTP/1 head.
fn h1_field<'a>(head: &'a [u8], name: &str) -> Vec<&'a [u8]> {
    head.split(|&b| b == b'\n')
        .filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|&b| b == b':')?;
            line[..colon]
                .eq_ignore_ascii_case(name.as_bytes())
                .then(|| crate::http1::request::trim(&line[colon + 1..]))
        })
        .collect()
}

fn h2_field<'a>(fields: &'a [(Vec<u8>, Vec<u8>)], name: &str) -> Vec<&'a [u8]> {
    fields
        .iter()
        .filter(|(n, _)| n == name.as_bytes())
        .map(|(_, v)| &v[..])
        .collect()
}

#[test]
fn http2_fields_carry_the_same_refreshed_dates_as_http1() {
    // A dated response, served an hour and a day after it was recorded: both the simple path
    // (only Date) and the pre-rendered one (a Set-Cookie expiry) must shift the same way.
    for with_cookie in [false, true] {
        let mut spec = flow();
        let response = spec.response.as_mut().unwrap();
        response
            .headers
            .push((b"Date".to_vec(), b"Sat, 01 Jan 2000 00:00:02 GMT".to_vec()));
        response.headers.push((
            b"Last-Modified".to_vec(),
            b"Fri, 31 Dec 1999 00:00:02 GMT".to_vec(),
        ));
        if with_cookie {
            response.headers.push((
                b"Set-Cookie".to_vec(),
                b"id=1; Expires=Sun, 02 Jan 2000 00:00:02 GMT; Path=/".to_vec(),
            ));
        }
        let replayer = replayer_of(&spec, &ReplayOptions::default());
        let via = Via::new(1);
        let later = now() + Duration::from_secs(25 * 3600);
        let mut headers = [header("Host", b"example.com")];
        let exchange = decide(&replayer, regular(), &via, request(b"/a", &mut headers));
        let mut h1 = Vec::new();
        render_http1(&exchange, &replayer, &via, later, false, &mut h1);
        let mut scratch = Vec::new();
        let parts = exchange.describe(&replayer, later, &mut scratch).unwrap();
        assert_eq!(parts.refresh_delta, Some(25.0 * 3600.0));
        let h2 = h2_head(&parts);
        assert_eq!(
            h1_field(&h1, "date"),
            [&b"Sun, 02 Jan 2000 01:00:02 GMT"[..]],
            "{}",
            String::from_utf8_lossy(&h1)
        );
        for name in ["date", "last-modified", "set-cookie", "x-kind"] {
            assert_eq!(h2_field(&h2, name), h1_field(&h1, name), "{name}");
        }
        if with_cookie {
            let cookie = h2_field(&h2, "set-cookie");
            assert!(
                String::from_utf8_lossy(cookie[0]).contains("03 Jan 2000 01:00:02 GMT"),
                "{cookie:?}"
            );
        }
        assert!(h2_field(&h2, "connection").is_empty());
        assert_eq!(parts.body, b"hello");
    }
}

#[test]
fn tls_and_tunnel_routing_give_the_scheme_host_and_port_mitmproxy_records() {
    let replayer = replayer(&ReplayOptions::default());
    let via = Via::new(1);
    // TLS straight to a regular-mode listener: origin-form is https, port 443 unless the Host says.
    let tls = Routing {
        tls: true,
        ..regular()
    };
    let mut headers = [header("Host", b"example.com")];
    let exchange = decide(&replayer, tls, &via, request(b"/a", &mut headers));
    let route = exchange.route.unwrap();
    assert_eq!((route.scheme, route.port), (&b"https"[..], 443));
    // Inside a CONNECT tunnel: the tunnel's scheme and port, the Host's host, the Host kept.
    let tunnel = Origin {
        scheme: crate::upstream::Scheme::Https,
        host: "10.0.0.1".into(),
        port: 8443,
    };
    let routing = Routing {
        reverse: Some((&tunnel, &[][..])),
        keep_host_header: true,
        tls: true,
    };
    let mut headers = [header("Host", b"Example.com:9999")];
    let exchange = decide(&replayer, routing, &via, request(b"/a?x=1", &mut headers));
    let route = exchange.route.unwrap();
    assert_eq!(
        (route.scheme, route.host, route.port, route.target),
        (&b"https"[..], &b"Example.com"[..], 8443, &b"/a?x=1"[..])
    );
    assert_eq!(headers[0].value, b"Example.com:9999");
}

#[test]
fn urls_print_as_mitmproxys_pretty_url_with_ipv6_hosts_in_brackets() {
    let url = |scheme: &'static [u8], host: &'static [u8], port, connect| {
        let route = crate::upstream::Destination {
            scheme,
            host,
            port,
            target: b"/p?q",
        };
        Url {
            route: &route,
            connect,
        }
        .to_string()
    };
    assert_eq!(url(b"http", b"::1", 8080, false), "http://[::1]:8080/p?q");
    assert_eq!(
        url(b"https", b"2001:db8::1", 443, false),
        "https://[2001:db8::1]/p?q"
    );
    assert_eq!(
        url(b"http", b"example.com", 80, false),
        "http://example.com/p?q"
    );
    assert_eq!(url(b"https", b"h", 80, false), "https://h:80/p?q");
}

mod repeats {
    //! The HTTP/1 repeat cache ([`super::super::repeat`]): what it answers is what deciding and
    //! rendering the request again would have written.

    use super::*;
    use crate::exchange::repeat::{Context, RepeatCache};

    const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n";

    fn dated() -> FlowSpec {
        let mut spec = flow();
        let response = spec.response.as_mut().unwrap();
        response
            .headers
            .push((b"Date".to_vec(), b"Sat, 01 Jan 2000 00:00:02 GMT".to_vec()));
        spec
    }

    fn first() -> ReplayOptions {
        ReplayOptions {
            order: crate::config::Order::First,
            ..ReplayOptions::default()
        }
    }

    fn context(replayer: &Replayer) -> Context {
        Context {
            stamp: replayer.repeat_stamp().unwrap(),
            tls: false,
            tunnels: true,
        }
    }

    /// What rendering `flow` at `at` writes without the cache.
    fn rendered(replayer: &Replayer, facts: RequestFacts, at: SystemTime) -> Vec<u8> {
        let mut out = Vec::new();
        let reply = replayer.write_reply(FlowId(0), at, &facts, &mut out);
        out.extend_from_slice(reply.body);
        out.extend_from_slice(reply.tail);
        out
    }

    #[test]
    fn a_repeat_is_answered_byte_for_byte_as_rendering_it_again_is_across_seconds() {
        let replayer = replayer_of(&dated(), &first());
        let context = context(&replayer);
        let mut cache = RepeatCache::new();
        let facts = RequestFacts::default();
        assert_eq!(cache.find(GET, context), None, "nothing kept yet");
        cache.keep(GET, true, context, FlowId(0), facts);
        // Pipelined: the next request's first bytes follow.
        let input = [GET, &b"GET /b"[..]].concat();
        let found = cache.find(&input, context).expect("a repeat");
        assert_eq!(found.len, GET.len());
        let mut seen = Vec::new();
        for at in [0u64, 0, 1, 1, 0, 3600] {
            let at = now() + Duration::from_millis(at * 1000 + 400);
            let mut out = Vec::new();
            let repeated = cache.render(found, &replayer, at, &mut out);
            assert_eq!(out, rendered(&replayer, facts, at), "at {at:?}");
            assert_eq!(repeated.flow, FlowId(0));
            assert_eq!(
                (repeated.rendered.status, repeated.rendered.body_bytes),
                (Some(201), 5)
            );
            assert_eq!(repeated.rendered.after, After::Continue);
            assert!(!repeated.client_done);
            seen.push(out);
        }
        assert_ne!(seen[0], seen[2], "the dates moved with the clock");
        assert_eq!(seen[0], seen[4]);
    }

    /// A sink that keeps the wires it is handed (and their bytes in order, as the outbox sends
    /// them).
    #[derive(Default)]
    struct WireSink {
        bytes: Vec<u8>,
        wires: Vec<std::rc::Rc<[u8]>>,
    }

    impl Sink for WireSink {
        fn bytes(&mut self) -> &mut Vec<u8> {
            &mut self.bytes
        }

        fn push_body(&mut self, body: &[u8]) {
            self.bytes.extend_from_slice(body);
        }

        fn push_wire(&mut self, wire: &std::rc::Rc<[u8]>) {
            self.bytes.extend_from_slice(wire);
            self.wires.push(wire.clone());
        }
    }

    /// The flow of [`dated`] with a body of `len` bytes.
    fn dated_with_body(len: usize) -> FlowSpec {
        let mut spec = dated();
        let response = spec.response.as_mut().unwrap();
        let body: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        response
            .headers
            .retain(|(name, _)| name != b"content-length");
        response
            .headers
            .push((b"content-length".to_vec(), len.to_string().into_bytes()));
        response.content = Some(body);
        spec
    }

    #[test]
    fn a_repeat_of_a_large_body_is_one_kept_buffer_with_the_same_bytes_across_seconds() {
        for (len, whole) in [
            (4095, false),
            (4096, true),
            (16 * 1024, true),
            (65536, true),
            (65537, false),
        ] {
            let replayer = replayer_of(&dated_with_body(len), &first());
            let context = context(&replayer);
            let mut cache = RepeatCache::new();
            let facts = RequestFacts::default();
            cache.keep(GET, true, context, FlowId(0), facts);
            let found = cache.find(GET, context).expect("a repeat");
            let mut held = Vec::new();
            for at in [0u64, 0, 0, 1, 1] {
                let at = now() + Duration::from_millis(at * 1000 + 400);
                let mut out = WireSink::default();
                let repeated = cache.render(found, &replayer, at, &mut out);
                let expected = rendered(&replayer, facts, at);
                assert_eq!(out.bytes, expected, "{len} at {at:?}");
                assert_eq!(repeated.rendered.body_bytes, len as u64);
                held.push((out.wires, expected));
            }
            // The first render of each second writes the answer; the repeats in that second
            // take the kept buffer, when the body is in range.
            let wires: Vec<usize> = held.iter().map(|(w, _)| w.len()).collect();
            let one = usize::from(whole);
            assert_eq!(wires, [0, one, one, 0, one], "{len}");
            // A buffer still held (a send in flight) keeps its second's bytes after the next
            // second's answer replaced it in the cache.
            for (wires, expected) in &held {
                for wire in wires {
                    assert_eq!(&wire[..], &expected[..]);
                }
            }
            if whole {
                assert!(!std::rc::Rc::ptr_eq(&held[1].0[0], &held[4].0[0]));
            }
        }
    }

    #[test]
    fn a_head_request_keeps_its_own_answer_without_a_body() {
        let replayer = replayer_of(&dated(), &first());
        let context = context(&replayer);
        let mut cache = RepeatCache::new();
        let head = b"HEAD /a HTTP/1.1\r\nHost: example.com\r\n\r\n";
        let facts = RequestFacts {
            is_head: true,
            ..RequestFacts::default()
        };
        cache.keep(GET, true, context, FlowId(0), RequestFacts::default());
        cache.keep(head, true, context, FlowId(0), facts);
        for _ in 0..2 {
            let mut out = Vec::new();
            let found = cache.find(head, context).expect("kept");
            cache.render(found, &replayer, now(), &mut out);
            assert_eq!(out, rendered(&replayer, facts, now()));
        }
    }

    #[test]
    fn other_bytes_another_context_a_reset_or_a_reload_find_nothing() {
        let replayer = replayer_of(&dated(), &first());
        let context = context(&replayer);
        let mut cache = RepeatCache::new();
        cache.keep(GET, true, context, FlowId(0), RequestFacts::default());
        assert!(cache.find(GET, context).is_some());
        assert_eq!(cache.find(&GET[..GET.len() - 1], context), None, "a part");
        let mut other = GET.to_vec();
        other[5] = b'b';
        assert_eq!(cache.find(&other, context), None, "another target");
        let tls = Context {
            tls: true,
            ..context
        };
        assert_eq!(cache.find(GET, tls), None, "routed as TLS");
        let tunnels = Context {
            tunnels: false,
            ..context
        };
        assert_eq!(cache.find(GET, tunnels), None, "CONNECT read otherwise");
        replayer.reset();
        assert_ne!(replayer.repeat_stamp(), Some(context.stamp));
        assert_eq!(
            cache.find(GET, super::repeats::context(&replayer)),
            None,
            "reset"
        );
        let reloaded = replayer_of(&dated(), &first());
        assert_ne!(reloaded.repeat_stamp(), replayer.repeat_stamp());
    }

    #[test]
    fn requests_that_cannot_repeat_are_not_kept() {
        let replayer = replayer_of(&dated(), &first());
        let context = context(&replayer);
        let mut cache = RepeatCache::new();
        let close = RequestFacts {
            wants_close: true,
            ..RequestFacts::default()
        };
        cache.keep(GET, true, context, FlowId(0), close);
        assert_eq!(cache.find(GET, context), None, "it closes its connection");
        cache.keep(GET, false, context, FlowId(0), RequestFacts::default());
        assert_eq!(cache.find(GET, context), None, "its body was de-chunked");
        let short = b"GET / HTTP/1.0\r\n\r\n";
        cache.keep(short, true, context, FlowId(0), RequestFacts::default());
        assert_eq!(
            cache.find(short, context),
            None,
            "shorter than the hashed bytes"
        );
    }

    #[test]
    fn consume_and_cycle_orders_have_no_stamp() {
        for order in [crate::config::Order::Consume, crate::config::Order::Cycle] {
            let options = ReplayOptions {
                order,
                ..ReplayOptions::default()
            };
            assert_eq!(replayer_of(&dated(), &options).repeat_stamp(), None);
        }
        let options = ReplayOptions {
            order: crate::config::Order::Last,
            ..ReplayOptions::default()
        };
        assert!(replayer_of(&dated(), &options).repeat_stamp().is_some());
    }
}

/// Issue 13: what the direct ring's look-ahead notes of an HTTP/1 input.
#[test]
fn a_look_ahead_notes_whole_bodiless_requests_with_a_route_only() {
    use crate::replay::lookahead::Lookahead;
    let replayer = replayer(&ReplayOptions::default());
    let found = |input: &[u8]| {
        let mut batch = Lookahead::default();
        look_ahead(&replayer, regular(), input, &mut batch);
        let noted = batch.len();
        (noted, batch.fetch(&replayer))
    };
    let request = b"GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n";
    assert_eq!(found(request), (1, 1));
    // Only the first request of pipelined input, and an absolute-form target routes the same.
    let mut two = request.to_vec();
    two.extend_from_slice(request);
    assert_eq!(found(&two), (1, 1));
    assert_eq!(
        found(b"GET http://example.com/a HTTP/1.1\r\nHost: example.com\r\n\r\n"),
        (1, 1)
    );
    // Noted but not recorded.
    assert_eq!(
        found(b"GET /b HTTP/1.1\r\nHost: example.com\r\n\r\n"),
        (1, 0)
    );
    // Not whole yet, with a body, chunked, without a Host (a 400), not HTTP: left out.
    assert_eq!(found(&request[..20]), (0, 0));
    assert_eq!(
        found(b"POST /a HTTP/1.1\r\nHost: example.com\r\nContent-Length: 2\r\n\r\nhi"),
        (0, 0)
    );
    assert_eq!(
        found(
            b"POST /a HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ),
        (0, 0)
    );
    assert_eq!(found(b"GET /a HTTP/1.1\r\n\r\n"), (0, 0));
    assert_eq!(
        found(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
        (0, 0)
    );
    // Nothing was decided.
    assert_eq!(replayer.remaining(), 1);
}
