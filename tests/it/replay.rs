//! Replaying recordings: the real fixtures, order, reuse, unmatched modes, refresh, pipelining.

use uringreplay::flowfile::writer::FlowSpec;

use crate::support::{fixture, get, Client, FlowFile, Server};

/// The 12-request session of tests/fixtures/README.md; checks each answer.
fn replay_the_session(server: &Server) {
    let mut c = Client::new(server);
    let r = c.exchange(&get("/hello"));
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello world\n"[..]));
    let r = c.exchange(&get("/echo?q=search&page=2&tag=a&tag=b"));
    assert_eq!((r.status, r.body.len()), (200, 80));
    let form = b"user=alice&csrf=tok1&ts=111";
    let r = c.exchange(
        &[
            &b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 27\r\n\r\n"[..],
            form,
        ]
        .concat(),
    );
    assert_eq!((r.status, r.body.len()), (200, 115));
    let json = "{\"k\": 1, \"name\": \"café\"}".as_bytes();
    let r = c.exchange(
        &[
            format!("POST /form HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", json.len()).as_bytes(),
            json,
        ]
        .concat(),
    );
    assert_eq!((r.status, r.body.len()), (200, 106));
    let r = c.exchange(&get("/session-dates"));
    assert_eq!((r.status, r.body.len()), (200, 39));
    let cookies: Vec<_> = r
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
        .collect();
    assert_eq!(cookies.len(), 2, "both Set-Cookie fields, in order");
    assert!(cookies[0].1.starts_with("sid=s-0001") && cookies[1].1.starts_with("theme=dark"));
    let r = c.exchange(&get("/chunked"));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.body, b"chunk-one\nchunk-two-is-longer\nchunk-three\n");
    let r = c.exchange(&get("/gzip"));
    assert_eq!((r.status, r.body.len()), (200, 579));
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let r = c.exchange(&get("/nocontent"));
    assert_eq!((r.status, r.body.len()), (204, 0));
    let r = c.exchange(b"HEAD /resource HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, r.header("content-length")), (200, Some("35")));
    let r = c.exchange(&get("/missing"));
    assert_eq!(
        (r.status, r.body.as_slice()),
        (404, &b"not found: /missing (1)\n"[..])
    );
    let r = c.exchange(&get("/counter"));
    assert_eq!(r.body, b"counter=1 path=/counter\n");
    let r = c.exchange(&get("/counter"));
    assert_eq!(r.body, b"counter=2 path=/counter\n");
}

#[test]
fn every_fixture_release_replays_the_whole_session_with_the_inferred_reverse_target() {
    for file in [
        "mitm-12.3.1-v21.flows",
        "mitm-10.4.2-v20.flows",
        "mitm-8.1.1-v17.flows",
        "mitm-7.0.4-v14.flows",
        "mitm-6.0.2-v10.flows",
    ] {
        let path = fixture(file);
        let server = Server::start(&["-S", path.to_str().unwrap(), "--extra", "404"]);
        server.wait_stderr("--mode reverse:http://127.0.0.1:29411");
        replay_the_session(&server);
        let stopped = server.stop();
        assert!(stopped.status.success(), "{file}: {}", stopped.stderr);
        assert!(
            stopped
                .stdout
                .contains("replayed 12, forwarded 0, killed 0, status-answered 0, unmatched 0"),
            "{file}: {}",
            stopped.stdout
        );
    }
}

#[test]
fn the_epoll_driver_replays_the_same_session() {
    let path = fixture("demo.flows");
    let server = Server::start(&["-S", path.to_str().unwrap(), "--io", "epoll"]);
    server.wait_stderr(" on epoll;");
    replay_the_session(&server);
    drop(server);
    let server = Server::start(&["-S", path.to_str().unwrap(), "--io", "epoll"]);
    pipelined_on(&server);
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn where_io_uring_is_forbidden_auto_falls_back_to_epoll_and_says_so() {
    let path = fixture("demo.flows");
    let server = Server::start_with(
        &["-S", path.to_str().unwrap()],
        crate::support::forbid_io_uring,
    );
    let stderr = server.wait_stderr(" on epoll;");
    assert_eq!(
        stderr.matches("falling back to epoll").count(),
        1,
        "{stderr}"
    );
    replay_the_session(&server);
}

#[test]
fn an_explicit_reverse_mode_replays_and_regular_mode_takes_the_host_header() {
    let path = fixture("demo.flows");
    let server = Server::start(&[
        "-S",
        path.to_str().unwrap(),
        "--mode",
        "reverse:http://127.0.0.1:29411",
    ]);
    let mut c = Client::new(&server);
    assert_eq!(c.exchange(&get("/hello")).body, b"hello world\n");
    drop(server);

    let server = Server::start(&[
        "-S",
        path.to_str().unwrap(),
        "--mode",
        "regular",
        "--extra",
        "404",
    ]);
    let mut c = Client::new(&server);
    let r =
        c.exchange(b"GET http://127.0.0.1:29411/hello HTTP/1.1\r\nHost: 127.0.0.1:29411\r\n\r\n");
    assert_eq!(r.body, b"hello world\n", "absolute-form");
    let r = c.exchange(b"GET /missing HTTP/1.1\r\nHost: 127.0.0.1:29411\r\n\r\n");
    assert_eq!(r.status, 404, "origin-form with Host");
    assert_eq!(r.body, b"not found: /missing (1)\n");
    let r = c.exchange(b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n");
    assert_eq!(
        (r.status, r.body.len()),
        (404, 0),
        "another port is another key"
    );
    let mut c = Client::new(&server);
    c.send(b"GET /hello HTTP/1.0\r\n\r\n");
    let r = c.response(false);
    assert_eq!(r.status, 400);
    let body = String::from_utf8(r.body).unwrap();
    assert!(
        body.contains("HTTP request has no host header, destination unknown."),
        "{body}"
    );
    assert!(
        body.ends_with("</html>\n"),
        "Content-Length covers the whole page: {body:?}"
    );
    assert_eq!(c.read_to_close(), b"", "closed after the 400");
    // HTTP/1.1 requires a Host (RFC 9112 §3.2): refused by the parser, in every mode.
    let mut c = Client::new(&server);
    c.send(b"GET /hello HTTP/1.1\r\n\r\n");
    let r = c.response(false);
    assert_eq!(r.status, 400);
    assert_eq!(r.body, b"bad request: HTTP/1.1 request without Host\n");
    assert_eq!(c.read_to_close(), b"", "closed after the 400");
}

#[test]
fn flows_are_consumed_in_order_across_two_connections() {
    let path = fixture("demo.flows");
    let server = Server::start(&["-S", path.to_str().unwrap(), "--extra", "404"]);
    let mut a = Client::new(&server);
    let mut b = Client::new(&server);
    assert_eq!(
        a.exchange(&get("/counter")).body,
        b"counter=1 path=/counter\n"
    );
    assert_eq!(
        b.exchange(&get("/counter")).body,
        b"counter=2 path=/counter\n"
    );
    let r = a.exchange(&get("/counter"));
    assert_eq!(
        (r.status, r.body.len()),
        (404, 0),
        "both consumed: unmatched"
    );
}

#[test]
fn reuse_serves_the_first_recorded_response_again() {
    let path = fixture("demo.flows");
    for flag in ["--reuse", "--nopop", "--no-pop"] {
        let server = Server::start(&["-S", path.to_str().unwrap(), flag]);
        let mut c = Client::new(&server);
        for _ in 0..3 {
            assert_eq!(
                c.exchange(&get("/counter")).body,
                b"counter=1 path=/counter\n",
                "{flag}"
            );
        }
    }
}

#[test]
fn kill_closes_the_connection_without_a_byte() {
    let path = fixture("demo.flows");
    for args in [
        &["-k"][..],
        &["--extra", "kill"],
        &["--set", "server_replay_extra=kill"],
    ] {
        let mut all = vec!["-S", path.to_str().unwrap()];
        all.extend_from_slice(args);
        let server = Server::start(&all);
        let mut c = Client::new(&server);
        assert_eq!(c.exchange(&get("/hello")).status, 200);
        c.send(&get("/not-recorded"));
        assert_eq!(c.read_to_close(), b"", "{args:?}");
        let stopped = server.stop();
        assert!(stopped.stdout.contains("killed 1"), "{}", stopped.stdout);
    }
}

#[test]
fn each_status_mode_sends_its_exact_bytes_and_keeps_the_connection() {
    let path = fixture("demo.flows");
    for (code, reason) in [
        (204, "No Content"),
        (400, "Bad Request"),
        (404, "Not Found"),
        (500, "Internal Server Error"),
    ] {
        let server = Server::start(&["-S", path.to_str().unwrap(), "--extra", &code.to_string()]);
        let mut c = Client::new(&server);
        c.send(&get("/not-recorded"));
        let expected = format!("HTTP/1.1 {code} {reason}\r\ncontent-length: 0\r\n\r\n");
        let mut got = vec![0u8; expected.len()];
        std::io::Read::read_exact(&mut c.stream, &mut got).unwrap();
        assert_eq!(String::from_utf8_lossy(&got), expected);
        assert_eq!(
            c.exchange(&get("/hello")).status,
            200,
            "still open after {code}"
        );
    }
}

/// A flow recorded on 2020-09-13 12:26:40 UTC with dates in its response.
fn dated_flow() -> FlowSpec {
    let mut flow = FlowSpec::get("/dated", 200, b"old");
    flow.timestamp_start = 1_600_000_000.0;
    let response = flow.response.as_mut().unwrap();
    response.timestamp_start = 1_600_000_000.0;
    response
        .headers
        .push((b"Date".to_vec(), b"Sun, 13 Sep 2020 12:26:40 GMT".to_vec()));
    flow
}

#[test]
fn refresh_shifts_recorded_dates_to_now_and_norefresh_keeps_them() {
    let file = FlowFile::new(&[dated_flow()]);
    let server = Server::start(&["-S", file.arg(), "--reuse"]);
    let r = Client::new(&server).exchange(&get("/dated"));
    let date = httpdate::parse_http_date(r.header("date").unwrap()).unwrap();
    let age = std::time::SystemTime::now()
        .duration_since(date)
        .unwrap_or_default();
    assert!(
        age.as_secs() < 600,
        "refreshed Date {:?} is close to now",
        r.header("date")
    );
    drop(server);

    let server = Server::start(&["-S", file.arg(), "--norefresh"]);
    let r = Client::new(&server).exchange(&get("/dated"));
    assert_eq!(r.header("date"), Some("Sun, 13 Sep 2020 12:26:40 GMT"));
}

fn pipelined_on(server: &Server) {
    let mut c = Client::new(server);
    let mut burst = Vec::new();
    for path in ["/hello", "/missing", "/nocontent"] {
        burst.extend_from_slice(&get(path));
    }
    c.send(&burst);
    assert_eq!(c.response(false).body, b"hello world\n");
    assert_eq!(c.response(false).status, 404);
    assert_eq!(c.response(false).status, 204);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let path = fixture("demo.flows");
    let server = Server::start(&["-S", path.to_str().unwrap()]);
    pipelined_on(&server);
}

#[test]
fn a_chunked_request_body_matches_the_recorded_body() {
    let path = fixture("demo.flows");
    let server = Server::start(&["-S", path.to_str().unwrap(), "--extra", "404"]);
    let mut c = Client::new(&server);
    let r = c.exchange(
        b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
          Transfer-Encoding: chunked\r\n\r\n5\r\nuser=\r\n16;ext=1\r\nalice&csrf=tok1&ts=111\r\n0\r\nX-Trailer: t\r\n\r\n",
    );
    assert_eq!((r.status, r.body.len()), (200, 115));
}

#[test]
fn expect_continue_is_answered_before_the_body_is_sent() {
    let path = fixture("demo.flows");
    let server = Server::start(&["-S", path.to_str().unwrap()]);
    let mut c = Client::new(&server);
    c.send(b"POST /form HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 27\r\n\r\n");
    let mut got = [0u8; 25];
    std::io::Read::read_exact(&mut c.stream, &mut got).unwrap();
    assert_eq!(&got, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.send(b"user=alice&csrf=tok1&ts=111");
    assert_eq!(c.response(false).body.len(), 115);
}

#[test]
fn http10_and_connection_close_requests_close_after_the_answer() {
    let path = fixture("demo.flows");
    let server = Server::start(&["-S", path.to_str().unwrap(), "--reuse"]);
    for request in [
        &b"GET /hello HTTP/1.0\r\nHost: x\r\n\r\n"[..],
        b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ] {
        let mut c = Client::new(&server);
        c.send(request);
        let all = c.read_to_close();
        assert!(
            all.ends_with(b"hello world\n"),
            "{}",
            String::from_utf8_lossy(&all)
        );
    }
    let mut c = Client::new(&server);
    let r = c.exchange(b"GET /hello HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(
        c.exchange(&get("/hello")).status,
        200,
        "HTTP/1.0 keep-alive stays open"
    );
}

#[test]
fn large_bodies_are_sent_whole_from_the_mapping_in_pipelined_order() {
    let big: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let file = FlowFile::new(&[
        FlowSpec::get("/big", 200, &big),
        FlowSpec::get("/small", 200, b"small"),
    ]);
    let server = Server::start(&["-S", file.arg(), "--reuse"]);
    let mut c = Client::new(&server);
    let mut burst = Vec::new();
    for path in ["/big", "/small", "/big", "/big", "/small"] {
        burst.extend_from_slice(&get(path));
    }
    c.send(&burst);
    for path in ["/big", "/small", "/big", "/big", "/small"] {
        let r = c.response(false);
        let expected: &[u8] = if path == "/big" { &big } else { b"small" };
        assert!(r.body == expected, "{path}: {} bytes", r.body.len());
    }
}

#[test]
fn once_every_flow_is_consumed_status_mode_still_applies() {
    // Deliberate difference from mitmproxy's exhaustion hole (spec §c.4, mitmproxy issue 8363):
    // mitmproxy forwards everything once the replay map is empty, even with extra=404; we keep
    // answering with the unmatched policy. The upstream is down, so a forward would show as 502.
    let file = FlowFile::new(&[FlowSpec::get("/only", 200, b"once")]);
    let mode = format!("reverse:http://127.0.0.1:{}", crate::support::closed_port());
    let server = Server::start(&[
        "-S",
        file.arg(),
        "--mode",
        &mode,
        "--ignore-port",
        "--extra",
        "404",
    ]);
    let mut c = Client::new(&server);
    assert_eq!(
        c.exchange(&get("/other")).status,
        404,
        "extra while flows remain"
    );
    assert_eq!(c.exchange(&get("/only")).body, b"once");
    assert_eq!(c.exchange(&get("/only")).status, 404, "the used-up key");
    assert_eq!(c.exchange(&get("/other")).status, 404, "after exhaustion");
}

#[test]
fn regular_mode_forwards_an_absolute_form_request_to_its_own_address() {
    let upstream =
        crate::support::Upstream::start(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nup", false);
    let path = fixture("demo.flows");
    let server = Server::start(&["-S", path.to_str().unwrap(), "--mode", "regular"]);
    let mut c = Client::new(&server);
    let request = format!(
        "GET http://{0}/fresh HTTP/1.1\r\nHost: {0}\r\n\r\n",
        upstream.addr
    );
    assert_eq!(c.exchange(request.as_bytes()).body, b"up");
    let seen = upstream
        .requests
        .recv_timeout(crate::support::PATIENCE)
        .unwrap();
    assert!(String::from_utf8(seen)
        .unwrap()
        .starts_with("GET /fresh HTTP/1.1\r\n"));
}

/// Every replay test above again, with the servers on the epoll driver (`--io epoll`): the
/// fallback where io_uring is unavailable must behave the same.
mod on_epoll {
    macro_rules! on_epoll {
        ($($name:ident),* $(,)?) => {
            $(
                #[test]
                fn $name() {
                    crate::support::with_driver("epoll", super::$name);
                }
            )*
        };
    }

    on_epoll!(
        every_fixture_release_replays_the_whole_session_with_the_inferred_reverse_target,
        an_explicit_reverse_mode_replays_and_regular_mode_takes_the_host_header,
        flows_are_consumed_in_order_across_two_connections,
        reuse_serves_the_first_recorded_response_again,
        kill_closes_the_connection_without_a_byte,
        each_status_mode_sends_its_exact_bytes_and_keeps_the_connection,
        refresh_shifts_recorded_dates_to_now_and_norefresh_keeps_them,
        pipelined_requests_are_answered_in_order,
        a_chunked_request_body_matches_the_recorded_body,
        expect_continue_is_answered_before_the_body_is_sent,
        http10_and_connection_close_requests_close_after_the_answer,
        large_bodies_are_sent_whole_from_the_mapping_in_pipelined_order,
        once_every_flow_is_consumed_status_mode_still_applies,
        regular_mode_forwards_an_absolute_form_request_to_its_own_address,
    );
}
