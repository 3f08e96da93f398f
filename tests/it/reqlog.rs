//! `--log-json FILE` and `--log-sample N` over real sockets: after a graceful stop the file holds
//! exactly one JSON line per request (replayed, forwarded, status, killed; HTTP/1 and h2),
//! each parsed back with serde_json; sampling keeps one in N; an unwritable path stops start-up.

use std::path::Path;

use serde_json::Value;

use super::support::{fixture, get, run_to_exit, temp_path, Client, FlowFile, Server, Upstream};
use uringreplay::flowfile::writer::FlowSpec;

/// The log's lines, each parsed (a line that is not one JSON object fails the test).
fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("the log file");
    assert!(text.is_empty() || text.ends_with('\n'), "{text}");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Checks the fields every line has, whatever its outcome.
fn check_common(line: &Value, client: &std::net::SocketAddr, version: &str) {
    let time = line["time"].as_str().expect("a time");
    assert_eq!(time.len(), "2026-12-02T18:32:42.123456Z".len(), "{time}");
    assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");
    let now = chrono_free_year();
    assert!(time.starts_with(&now), "{time} is this year ({now})");
    assert_eq!(line["peer"], client.to_string());
    assert_eq!(line["http_version"], version);
    assert!(line["service_us"].as_u64().is_some(), "{line}");
    assert!(line["bytes"].as_u64().is_some(), "{line}");
}

/// This year, from the system clock (the log's time is UTC).
fn chrono_free_year() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (year, _, _) = uringreplay::replay::date::civil_from_days(secs.div_euclid(86_400));
    year.to_string()
}

#[test]
fn replayed_and_forwarded_requests_are_one_line_each_after_a_graceful_stop() {
    let upstream = Upstream::start(
        b"HTTP/1.1 201 Created\r\nContent-Length: 8\r\n\r\nupstream",
        false,
    );
    let log = temp_path("replay-forward.jsonl");
    let demo = fixture("demo.flows");
    let mode = format!("reverse:http://{}", upstream.addr);
    let server = Server::start(&[
        "-S",
        demo.to_str().unwrap(),
        "--mode",
        &mode,
        "--ignore-port",
        "--reuse",
        "--log-json",
        log.to_str().unwrap(),
    ]);
    let mut c = Client::new(&server);
    let client = c.stream.local_addr().unwrap();
    for _ in 0..3 {
        assert_eq!(c.exchange(&get("/hello")).body, b"hello world\n");
    }
    assert_eq!(c.exchange(&get("/not-recorded?q=1")).status, 201);
    let stopped = server.stop();
    assert!(stopped.status.success(), "{}", stopped.stderr);
    let lines = lines(&log);
    assert_eq!(lines.len(), 4, "{lines:?}");
    for line in &lines {
        check_common(line, &client, "HTTP/1.1");
    }
    for line in &lines[..3] {
        assert_eq!(line["outcome"], "replayed", "{line}");
        assert!(line["flow"].as_u64().is_some(), "{line}");
        assert_eq!(line["status"], 200);
        assert_eq!(
            line["url"],
            format!("http://{}/hello", upstream.addr),
            "reverse mode: the upstream's URL, as mitmproxy's pretty_url"
        );
    }
    assert_eq!(
        (&lines[0]["method"], &lines[0]["bytes"]),
        (&Value::from("GET"), &Value::from(12))
    );
    let forwarded = &lines[3];
    assert_eq!(forwarded["outcome"], "forwarded");
    assert!(forwarded["flow"].is_null());
    assert_eq!(
        (&forwarded["status"], &forwarded["bytes"]),
        (&Value::from(201), &Value::from(8))
    );
    assert_eq!(
        forwarded["url"],
        format!("http://{}/not-recorded?q=1", upstream.addr)
    );
    assert!(
        stopped
            .stderr
            .contains(&format!("request log {}: 4 lines written\n", log.display())),
        "{}",
        stopped.stderr
    );
    let _ = std::fs::remove_file(&log);
}

#[test]
fn status_and_kill_answers_are_logged_with_the_metrics_outcome_words() {
    let demo = fixture("demo.flows");
    let log = temp_path("status.jsonl");
    let server = Server::start(&[
        "-S",
        demo.to_str().unwrap(),
        "--extra",
        "404",
        "--log-json",
        log.to_str().unwrap(),
    ]);
    let mut c = Client::new(&server);
    assert_eq!(c.exchange(&get("/hello")).status, 200);
    assert_eq!(c.exchange(&get("/nothing")).status, 404);
    assert!(server.stop().status.success());
    let got = lines(&log);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["outcome"], "replayed");
    assert_eq!(
        (&got[1]["outcome"], &got[1]["status"], &got[1]["flow"]),
        (&Value::from("status"), &Value::from(404), &Value::Null)
    );
    assert_eq!(got[1]["url"], "http://127.0.0.1:29411/nothing");

    let log = temp_path("kill.jsonl");
    let server = Server::start(&[
        "-S",
        demo.to_str().unwrap(),
        "-k",
        "--log-json",
        log.to_str().unwrap(),
    ]);
    let mut c = Client::new(&server);
    c.send(&get("/nothing"));
    assert_eq!(c.read_to_close(), b"", "killed: closed without a byte");
    let stopped = server.stop();
    assert!(stopped.stderr.contains("killed 1"), "{}", stopped.stderr);
    let got = lines(&log);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (&got[0]["outcome"], &got[0]["status"], &got[0]["bytes"]),
        (&Value::from("killed"), &Value::Null, &Value::from(0))
    );
    let _ = std::fs::remove_file(&log);
}

#[test]
fn log_sample_10_keeps_ten_lines_of_a_hundred_requests() {
    let demo = fixture("demo.flows");
    let log = temp_path("sample.jsonl");
    let server = Server::start(&[
        "-S",
        demo.to_str().unwrap(),
        "--reuse",
        "--log-json",
        log.to_str().unwrap(),
        "--log-sample",
        "10",
    ]);
    // One connection: one worker, whose counter picks requests 1, 11, … 91.
    let mut c = Client::new(&server);
    for _ in 0..100 {
        assert_eq!(c.exchange(&get("/hello")).status, 200);
    }
    let stopped = server.stop();
    assert!(
        stopped.stderr.contains("replayed 100"),
        "{}",
        stopped.stderr
    );
    assert_eq!(lines(&log).len(), 10);
    assert!(
        stopped.stderr.contains(&format!(
            "request log {}: 10 lines written (one request in 10)",
            log.display()
        )),
        "{}",
        stopped.stderr
    );
    let _ = std::fs::remove_file(&log);
}

#[test]
fn an_h2_request_is_logged_as_http_2() {
    let file = FlowFile::new(&[FlowSpec::get("/a", 200, b"alpha")]);
    let log = temp_path("h2.jsonl");
    let server = Server::start(&[
        "-S",
        file.arg(),
        "--reuse",
        "--extra",
        "404",
        "--log-json",
        log.to_str().unwrap(),
    ]);
    super::h2::runtime().block_on(async {
        let mut h2 = super::h2::connect(&server, 65_535).await;
        let resp = super::h2::send_get(&mut h2, "/a").await.await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(super::h2::body_of(resp).await.0, b"alpha");
        let resp = super::h2::send_get(&mut h2, "/missing")
            .await
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
    });
    assert!(server.stop().status.success());
    let got = lines(&log);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["http_version"], "HTTP/2.0");
    assert_eq!(got[0]["outcome"], "replayed");
    assert_eq!(
        (&got[0]["flow"], &got[0]["bytes"]),
        (&Value::from(0), &Value::from(5))
    );
    assert_eq!(got[0]["url"], "http://127.0.0.1:8080/a");
    assert_eq!(got[1]["http_version"], "HTTP/2.0");
    assert_eq!(got[1]["outcome"], "status");
    assert_eq!(got[1]["status"], 404);
    assert_eq!(got[1]["method"], "GET");
    let _ = std::fs::remove_file(&log);
}

#[test]
fn an_h2_forward_is_logged_when_its_relay_ends() {
    let upstream = Upstream::start(
        b"HTTP/1.1 201 Created\r\nContent-Length: 8\r\n\r\nupstream",
        false,
    );
    let file = FlowFile::new(&[FlowSpec::get("/a", 200, b"alpha")]);
    let log = temp_path("h2-forward.jsonl");
    let mode = format!("reverse:http://{}", upstream.addr);
    let server = Server::start(&[
        "-S",
        file.arg(),
        "--mode",
        &mode,
        "--ignore-port",
        "--reuse",
        "--log-json",
        log.to_str().unwrap(),
    ]);
    super::h2::runtime().block_on(async {
        let mut h2 = super::h2::connect(&server, 65_535).await;
        let resp = super::h2::send_get(&mut h2, "/elsewhere?x=1")
            .await
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        assert_eq!(super::h2::body_of(resp).await.0, b"upstream");
    });
    assert!(server.stop().status.success());
    let got = lines(&log);
    assert_eq!(got.len(), 1, "{got:?}");
    let line = &got[0];
    assert_eq!(line["http_version"], "HTTP/2.0");
    assert_eq!(line["outcome"], "forwarded");
    assert_eq!(line["status"], 201);
    assert!(line["flow"].is_null());
    assert_eq!(line["bytes"], 8);
    assert_eq!(
        line["url"],
        format!("http://127.0.0.1:{}/elsewhere?x=1", upstream.addr.port())
    );
    let _ = std::fs::remove_file(&log);
}

#[test]
fn an_unwritable_log_path_is_one_sentence_at_start_up() {
    let demo = fixture("demo.flows");
    let path = temp_path("no-such-dir").join("log.jsonl");
    let stopped = run_to_exit(
        &[
            "-S",
            demo.to_str().unwrap(),
            "-p",
            "0",
            "--log-json",
            path.to_str().unwrap(),
        ],
        |_| {},
    );
    assert_eq!(stopped.status.code(), Some(1), "{}", stopped.stderr);
    assert!(
        stopped.stderr.contains(&format!(
            "error: --log-json {}: cannot open the file for writing: No such file or directory",
            path.display()
        )),
        "{}",
        stopped.stderr
    );
    assert!(
        !stopped.stdout.contains("listening on"),
        "{}",
        stopped.stdout
    );
}

#[test]
fn log_sample_needs_log_json_and_a_positive_n() {
    let demo = fixture("demo.flows");
    for (args, says) in [
        (&["--log-sample", "10"][..], "--log-json"),
        (&["--log-json", "/tmp/x", "--log-sample", "0"][..], "0"),
    ] {
        let mut all = vec!["-S", demo.to_str().unwrap(), "-p", "0"];
        all.extend_from_slice(args);
        let stopped = run_to_exit(&all, |_| {});
        assert_eq!(stopped.status.code(), Some(2), "{}", stopped.stderr);
        assert!(stopped.stderr.contains(says), "{}", stopped.stderr);
    }
}

#[test]
fn a_failing_log_write_is_one_sentence_and_serving_goes_on() {
    let demo = fixture("demo.flows");
    // Opens like a file; every write fails with ENOSPC.
    let server = Server::start(&[
        "-S",
        demo.to_str().unwrap(),
        "--reuse",
        "--log-json",
        "/dev/full",
    ]);
    let mut c = Client::new(&server);
    assert_eq!(c.exchange(&get("/hello")).status, 200);
    // The worker's flush tick hands the line over within 100 ms; the writer fails on it.
    server.wait_stderr(
        "error: --log-json /dev/full: cannot write to the file (No space left on device",
    );
    for _ in 0..20 {
        assert_eq!(c.exchange(&get("/hello")).status, 200);
    }
    let stopped = server.stop();
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert!(stopped.stderr.contains("replayed 21"), "{}", stopped.stderr);
    assert_eq!(
        stopped.stderr.matches("cannot write to the file").count(),
        1,
        "said once: {}",
        stopped.stderr
    );
    assert!(
        stopped
            .stderr
            .contains("request log /dev/full: 0 lines written, ")
            && stopped.stderr.contains("; a write failed, logging stopped"),
        "{}",
        stopped.stderr
    );
}
