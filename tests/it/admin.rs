//! The admin endpoints of issue 16 on a real `--admin 127.0.0.1:0` port: `/metrics` parsed by a
//! Prometheus text parser, `/misses` explaining a miss, `/unused`, `POST /reset`,
//! `POST /reload` (a changed file while a large body is sent, a broken one) and `SIGHUP`.

use std::io::Read;

use crate::support::{get, Client, FlowFile, Server};
use uringreplay::flowfile::writer::{write_flow, FlowSpec};

/// Writes `flows` as a new file renamed over `path` (the way to replace a recording too large
/// for a private copy, which is then served from a mapping).
fn replace(path: &std::path::Path, flows: &[FlowSpec]) {
    let mut bytes = Vec::new();
    for f in flows {
        write_flow(&mut bytes, f);
    }
    replace_bytes(path, &bytes);
}

fn replace_bytes(path: &std::path::Path, bytes: &[u8]) {
    let new = path.with_extension("new");
    std::fs::write(&new, bytes).unwrap();
    std::fs::rename(&new, path).unwrap();
}

fn json(r: &crate::support::Response) -> serde_json::Value {
    assert_eq!(r.header("content-type"), Some("application/json"));
    serde_json::from_slice(&r.body).expect("a JSON body")
}

/// The samples of a scrape, parsed by `prometheus-parse`.
fn scrape(server: &Server) -> prometheus_parse::Scrape {
    let r = server.admin("GET", "/metrics");
    assert_eq!(r.status, 200);
    let text = String::from_utf8(r.body).unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("valid exposition text")
}

/// The value of `name` whose labels include `label` (`("", "")`: no label asked).
fn sample(scrape: &prometheus_parse::Scrape, name: &str, label: (&str, &str)) -> f64 {
    let s = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == name && (label.0.is_empty() || s.labels.get(label.0) == Some(label.1))
        })
        .unwrap_or_else(|| panic!("no sample {name} {label:?}"));
    match &s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => *v,
        prometheus_parse::Value::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
        other => panic!("{name}: {other:?}"),
    }
}

fn two_paths() -> FlowFile {
    FlowFile::new(&[
        FlowSpec::get("/a", 200, b"a"),
        FlowSpec::get("/search?q=x&page=1", 200, b"search"),
    ])
}

#[test]
fn metrics_count_exactly_what_was_sent_and_hits_leave_the_miss_log_alone() {
    let file = two_paths();
    let server = Server::start(&[
        "-S",
        file.arg(),
        "--reuse",
        "--extra",
        "404",
        "--admin",
        "127.0.0.1:0",
    ]);
    let mut c = Client::new(&server);
    for _ in 0..3 {
        assert_eq!(c.exchange(&get("/a")).status, 200);
    }
    // Hits only so far: the miss analysis has not run.
    let s = scrape(&server);
    assert_eq!(sample(&s, "uringreplay_misses_total", ("", "")), 0.0);
    assert_eq!(json(&server.admin("GET", "/misses"))["seen"], 0);
    for _ in 0..2 {
        assert_eq!(c.exchange(&get("/nothing")).status, 404);
    }
    let s = scrape(&server);
    let outcome = |o| sample(&s, "uringreplay_requests_total", ("outcome", o));
    assert_eq!(outcome("replayed"), 3.0);
    assert_eq!(outcome("status"), 2.0);
    assert_eq!(outcome("forwarded"), 0.0);
    assert_eq!(outcome("killed"), 0.0);
    assert_eq!(outcome("rejected"), 0.0);
    assert_eq!(sample(&s, "uringreplay_connections_open", ("", "")), 1.0);
    assert_eq!(
        sample(&s, "uringreplay_upstream_errors_total", ("", "")),
        0.0
    );
    assert_eq!(sample(&s, "uringreplay_flows_remaining", ("", "")), 2.0);
    assert_eq!(
        sample(&s, "uringreplay_reloads_total", ("result", "ok")),
        0.0
    );
    assert_eq!(sample(&s, "uringreplay_misses_total", ("", "")), 2.0);
    // Every answer has its service time: the histogram's +Inf bucket holds all five.
    assert_eq!(sample(&s, "uringreplay_service_seconds", ("", "")), 5.0);

    let status = json(&server.admin("GET", "/status"));
    assert_eq!(status["totals"]["replayed"], 3);
    assert_eq!(status["recording"]["flows"], 2);
    assert_eq!(status["options"]["order"], "first");
    // HEAD: the head of the GET, no body; a wrong method is a 405 naming the right one.
    let head = server.admin("HEAD", "/status");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let wrong = server.admin("GET", "/reset");
    assert_eq!((wrong.status, wrong.header("allow")), (405, Some("POST")));
    assert_eq!(server.admin("GET", "/nope").status, 404);
    drop(c);
    server.stop();
}

#[test]
fn a_miss_by_one_query_parameter_names_it_and_the_flag_that_fixes_it() {
    let file = two_paths();
    let server = Server::start(&["-S", file.arg(), "--extra", "404", "--admin", "127.0.0.1:0"]);
    let mut c = Client::new(&server);
    assert_eq!(c.exchange(&get("/search?q=x&page=2")).status, 404);
    let misses = json(&server.admin("GET", "/misses"));
    assert_eq!(misses["seen"], 1);
    let m = &misses["misses"][0];
    assert_eq!(m["url"], "http://127.0.0.1:8080/search?q=x&page=2");
    assert_eq!(m["nearest"]["flow"], 1);
    assert_eq!(m["nearest"]["query_params"], serde_json::json!(["page"]));
    assert_eq!(m["nearest"]["fix"], "--ignore-param page");
    drop(c);
    let stopped = server.stop();
    assert!(
        stopped.stderr.contains(
            "miss reason 1: query parameter page differs (1 times); to match: --ignore-param page"
        ),
        "{}",
        stopped.stderr
    );
    assert!(
        stopped.stderr.contains("unused flows 2 (never served"),
        "{}",
        stopped.stderr
    );
}

#[test]
fn unused_lists_the_flows_never_served_and_reset_serves_them_again() {
    let file = two_paths();
    let server = Server::start(&["-S", file.arg(), "--extra", "404", "--admin", "127.0.0.1:0"]);
    let mut c = Client::new(&server);
    assert_eq!(c.exchange(&get("/a")).status, 200);
    assert_eq!(c.exchange(&get("/a")).status, 404, "consumed");
    let unused = server.admin("GET", "/unused");
    assert_eq!(unused.header("content-type"), Some("application/x-ndjson"));
    let lines: Vec<serde_json::Value> = std::str::from_utf8(&unused.body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        vec![
            serde_json::json!({"flow": 1, "method": "GET", "url": "http://127.0.0.1:8080/search?q=x&page=1"})
        ]
    );
    let reset = server.admin("POST", "/reset");
    assert_eq!(reset.status, 200);
    assert_eq!(json(&reset)["flows_remaining"], 2);
    assert_eq!(
        c.exchange(&get("/a")).status,
        200,
        "replayed again after the reset"
    );
    drop(c);
    server.stop();
}

/// The flow numbers `/unused` lists.
fn unused(server: &Server) -> Vec<u64> {
    std::str::from_utf8(&server.admin("GET", "/unused").body)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["flow"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn a_request_repeated_after_a_reset_is_marked_served_again() {
    // With --reuse a byte-identical request is answered from the worker's repeat cache; a
    // reset must still see the next one served (the cache's stamp changes with the reset).
    let file = two_paths();
    let server = Server::start(&["-S", file.arg(), "--reuse", "--admin", "127.0.0.1:0"]);
    let mut c = Client::new(&server);
    let first = c.exchange(&get("/a"));
    for _ in 0..3 {
        let again = c.exchange(&get("/a"));
        assert_eq!((again.status, &again.body), (200, &first.body));
    }
    assert_eq!(unused(&server), vec![1]);
    assert_eq!(server.admin("POST", "/reset").status, 200);
    assert_eq!(
        unused(&server),
        vec![0, 1],
        "nothing served since the reset"
    );
    assert_eq!(c.exchange(&get("/a")).status, 200);
    assert_eq!(
        unused(&server),
        vec![1],
        "the repeat after the reset is served"
    );
    let s = scrape(&server);
    assert_eq!(
        sample(&s, "uringreplay_requests_total", ("outcome", "replayed")),
        5.0
    );
    assert_eq!(
        sample(&s, "uringreplay_repeat_cache_answers_total", ("", "")),
        3.0,
        "the three repeats before the reset; the one after it is matched again"
    );
    drop(c);
    server.stop();
}

#[test]
fn no_repeat_cache_matches_every_request() {
    let file = two_paths();
    let server = Server::start(&[
        "-S",
        file.arg(),
        "--reuse",
        "--no-repeat-cache",
        "--admin",
        "127.0.0.1:0",
    ]);
    let mut c = Client::new(&server);
    let first = c.exchange(&get("/a"));
    for _ in 0..3 {
        let again = c.exchange(&get("/a"));
        assert_eq!((again.status, &again.body), (200, &first.body));
    }
    let s = scrape(&server);
    assert_eq!(
        sample(&s, "uringreplay_requests_total", ("outcome", "replayed")),
        4.0
    );
    assert_eq!(
        sample(&s, "uringreplay_repeat_cache_answers_total", ("", "")),
        0.0
    );
    drop(c);
    server.stop();
}

#[test]
fn a_reload_during_a_large_body_keeps_it_whole_then_serves_the_new_file_and_a_broken_file_keeps_the_old(
) {
    // 16 MiB, more than the socket buffers hold: the answer is still being written at the reload.
    let old_body: Vec<u8> = (0..16 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let file = FlowFile::new(&[FlowSpec::get("/big", 200, &old_body)]);
    let server = Server::start(&[
        "-S",
        file.arg(),
        "--reuse",
        "--extra",
        "404",
        "--admin",
        "127.0.0.1:0",
    ]);
    let mut c = Client::new(&server);
    c.send(&get("/big"));
    let mut got = vec![0u8; 64 * 1024];
    let mut have = 0;
    while have < 1024 {
        match c.stream.read(&mut got[have..]) {
            Ok(0) => panic!("closed early"),
            Ok(n) => have += n,
            Err(e) => panic!("{e}"),
        }
    }
    got.truncate(have);
    c.pending = got;
    replace(
        &file.0,
        &[
            FlowSpec::get("/big", 200, b"new"),
            FlowSpec::get("/fresh", 200, b"f"),
        ],
    );
    let r = server.admin("POST", "/reload");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(json(&r)["flows"], 2);
    let r = c.response(false);
    assert_eq!(r.status, 200);
    assert!(
        r.body == old_body,
        "the body in flight arrived byte-identical"
    );
    assert_eq!(
        c.exchange(&get("/big")).body,
        b"new",
        "the next request: the new file"
    );

    replace_bytes(&file.0, b"12:not a flow!");
    let r = server.admin("POST", "/reload");
    assert_eq!(r.status, 422);
    let sentence = String::from_utf8(r.body).unwrap();
    assert!(
        sentence.starts_with("reload failed, the current recording keeps serving: ")
            && sentence.contains(file.arg()),
        "{sentence}"
    );
    assert_eq!(
        c.exchange(&get("/fresh")).body,
        b"f",
        "the last good recording serves"
    );
    let s = scrape(&server);
    assert_eq!(
        sample(&s, "uringreplay_reloads_total", ("result", "ok")),
        1.0
    );
    assert_eq!(
        sample(&s, "uringreplay_reloads_total", ("result", "failed")),
        1.0
    );
    drop(c);
    server.stop();
}

#[test]
fn sighup_reloads_the_recording_and_a_failed_one_keeps_serving() {
    let file = FlowFile::new(&[FlowSpec::get("/old", 200, b"old")]);
    let server = Server::start(&["-S", file.arg(), "--reuse", "--extra", "404"]);
    let mut c = Client::new(&server);
    assert_eq!(c.exchange(&get("/old")).status, 200);
    replace(&file.0, &[FlowSpec::get("/new", 200, b"new")]);
    server.hangup();
    server.wait_stderr("SIGHUP: reloaded the recording: 1 flows");
    assert_eq!(c.exchange(&get("/new")).body, b"new");
    assert_eq!(c.exchange(&get("/old")).status, 404);
    replace_bytes(&file.0, b"not a flow file");
    server.hangup();
    server.wait_stderr("SIGHUP: reload failed, the current recording keeps serving: ");
    assert_eq!(c.exchange(&get("/new")).body, b"new");
    drop(c);
    let stopped = server.stop();
    assert!(stopped.status.success());
}

#[test]
fn a_recording_rewritten_in_place_or_truncated_while_served_changes_nothing_until_a_reload() {
    // `cp new.flows served.flows` or `mitmdump -w served.flows` write into the served file: the
    // server serves its own copy, so neither garbage nor a truncation reaches a client (on a
    // mapping, the first panicked the worker and the second faulted the process).
    let body = vec![b'x'; 100_000];
    let flows = [
        FlowSpec::get("/a", 200, b"first"),
        FlowSpec::get("/big", 200, &body),
    ];
    let file = FlowFile::new(&flows);
    let server = Server::start(&["-S", file.arg(), "--reuse", "--extra", "404"]);
    let mut c = Client::new(&server);
    assert_eq!(c.exchange(&get("/a")).body, b"first");
    let mut garbage = std::fs::read(&file.0).unwrap();
    garbage.reverse();
    std::fs::write(&file.0, &garbage).unwrap(); // truncates, then writes: in place
    assert_eq!(c.exchange(&get("/a")).body, b"first");
    assert_eq!(c.exchange(&get("/big")).body, body);
    std::fs::File::options()
        .write(true)
        .open(&file.0)
        .unwrap()
        .set_len(0)
        .unwrap();
    assert_eq!(c.exchange(&get("/big")).body, body);
    assert_eq!(c.exchange(&get("/a")).body, b"first");
    // A reload takes the file as it is now.
    let mut new = Vec::new();
    write_flow(&mut new, &FlowSpec::get("/b", 200, b"second"));
    std::fs::write(&file.0, &new).unwrap();
    server.hangup();
    server.wait_stderr("SIGHUP: reloaded the recording: 1 flows");
    assert_eq!(c.exchange(&get("/b")).body, b"second");
    assert_eq!(c.exchange(&get("/a")).status, 404);
    drop(c);
    let stopped = server.stop();
    assert!(stopped.status.success());
    assert!(!stopped.stderr.contains("panicked"), "{}", stopped.stderr);
}

#[test]
fn an_admin_address_that_cannot_be_bound_is_one_sentence() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let spec = taken.local_addr().unwrap().to_string();
    let file = two_paths();
    let stopped =
        crate::support::run_to_exit(&["-S", file.arg(), "-p", "0", "--admin", &spec], |_| {});
    assert_eq!(stopped.status.code(), Some(1));
    assert!(
        stopped
            .stderr
            .contains(&format!("error: --admin {spec}: cannot listen there")),
        "{}",
        stopped.stderr
    );
}

// An HTTP/2 connection reuses the reply it last sent while the same flow is asked for again; a
// reload makes the same request another flow, so the connection open across it must answer from
// the new recording (status, fields and body), not from what it kept.
#[test]
fn an_h2_connection_open_across_a_reload_answers_from_the_new_recording() {
    let flow = |status, generation: &[u8], body: &[u8]| {
        let mut f = FlowSpec::get("/same", status, body);
        let r = f.response.as_mut().unwrap();
        r.headers
            .push((b"X-Generation".to_vec(), generation.to_vec()));
        f
    };
    let file = FlowFile::new(&[flow(200, b"1", b"old")]);
    let server = Server::start(&["-S", file.arg(), "--reuse", "--admin", "127.0.0.1:0"]);
    let rt = crate::h2::runtime();
    let mut h2 = rt.block_on(crate::h2::connect(&server, 65_535));
    let ask = |h2: &mut h2::client::SendRequest<bytes::Bytes>| {
        rt.block_on(async {
            let resp = crate::h2::send_get(h2, "/same").await.await.unwrap();
            let status = resp.status().as_u16();
            let generation = resp.headers()["x-generation"].to_str().unwrap().to_string();
            (status, generation, crate::h2::body_of(resp).await.0)
        })
    };
    let first = (200, "1".to_string(), b"old".to_vec());
    assert_eq!(ask(&mut h2), first);
    assert_eq!(ask(&mut h2), first, "asked again: the same reply");
    replace(&file.0, &[flow(201, b"2", b"new body")]);
    let r = server.admin("POST", "/reload");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let second = (201, "2".to_string(), b"new body".to_vec());
    assert_eq!(
        ask(&mut h2),
        second,
        "the same connection, the new recording"
    );
    assert_eq!(ask(&mut h2), second);
    drop(h2);
    server.stop();
}

#[test]
fn an_admin_client_trickling_its_request_is_cut_off_and_the_next_one_is_answered() {
    use std::io::Write;
    let file = two_paths();
    let server = Server::start(&["-S", file.arg(), "--admin", "127.0.0.1:0"]);
    let mut slow = std::net::TcpStream::connect(server.admin_addr()).unwrap();
    slow.write_all(b"GET /status HTTP/1.1\r\nX-Slow: ").unwrap();
    // One byte every half second, 40 of them (20 s): each read comes well within the 5 s a
    // read may take, the whole request does not come within the 5 s it may take.
    let mut writer = slow.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for sent in 0..40 {
            std::thread::sleep(std::time::Duration::from_millis(500));
            if writer.write_all(b"x").is_err() {
                return Some(sent);
            }
        }
        None
    });
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    let cut_after = trickle.join().unwrap();
    assert!(
        cut_after.is_some(),
        "the trickling client was never cut off"
    );
    assert!(rest.is_empty(), "no answer to half a request: {rest:?}");
    assert_eq!(server.admin("GET", "/status").status, 200);
}

#[test]
fn an_admin_request_expecting_100_continue_gets_it_before_sending_its_body() {
    use std::io::Write;
    let file = two_paths();
    let server = Server::start(&["-S", file.arg(), "--admin", "127.0.0.1:0"]);
    let mut c = std::net::TcpStream::connect(server.admin_addr()).unwrap();
    c.set_read_timeout(Some(crate::support::PATIENCE)).unwrap();
    c.write_all(
        b"POST /reset HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
    )
    .unwrap();
    let want = b"HTTP/1.1 100 Continue\r\n\r\n";
    let mut got = vec![0u8; want.len()];
    c.read_exact(&mut got)
        .expect("100 Continue before the body");
    assert_eq!(got, want);
    c.write_all(b"{}").unwrap();
    let mut answer = Vec::new();
    let _ = c.read_to_end(&mut answer);
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}
