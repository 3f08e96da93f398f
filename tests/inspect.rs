//! `uringreplay inspect` run as a real process on real recordings.
#![allow(clippy::disallowed_methods)] // tests read fixture files and clocks freely

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use uringreplay::flowfile::writer::{write_flow, FlowSpec};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn inspect(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_uringreplay"))
        .arg("inspect")
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf-8 output")
}

#[test]
fn listing_shows_one_line_per_flow_like_mitmdump_then_a_summary() {
    let path = fixture("demo.flows");
    let out = inspect(&[path.as_os_str()]);
    assert!(out.status.success());
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "GET http://127.0.0.1:29411/hello << 200 OK 12b");
    assert_eq!(
        lines[1],
        "GET http://127.0.0.1:29411/echo?q=search&page=2&tag=a&tag=b << 200 OK 80b"
    );
    assert_eq!(
        lines[7],
        "GET http://127.0.0.1:29411/nocontent << 204 No Content 0b"
    );
    assert_eq!(
        lines[8],
        "HEAD http://127.0.0.1:29411/resource << 200 OK 0b"
    );
    assert_eq!(
        lines[9],
        "GET http://127.0.0.1:29411/missing << 404 Not Found 24b"
    );
    assert!(
        lines[12].starts_with("12 HTTP flows (0 without response)"),
        "{text}"
    );
    assert_eq!(lines[13], "format versions: 21");
    assert!(
        lines[14].starts_with("1 file, 23845 bytes, loaded in"),
        "{text}"
    );
}

#[test]
fn json_lists_every_flow_then_a_summary_object() {
    let mut bytes = std::fs::read(fixture("mitm-8.1.1-v17.flows")).unwrap();
    let mut pending = FlowSpec::get("/pending", 200, b"");
    pending.response = None;
    write_flow(&mut bytes, &pending);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("with-pending.flows");
    std::fs::write(&path, bytes).unwrap();

    let out = inspect(&["--json".as_ref(), path.as_os_str()]);
    assert!(out.status.success());
    let values: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(values.len(), 14);
    assert_eq!(values[2]["method"], "POST");
    assert_eq!(values[2]["url"], "http://127.0.0.1:29411/form");
    assert_eq!(values[2]["status"], 200);
    assert_eq!(values[2]["request_body_len"], 27);
    assert_eq!(values[2]["response_body_len"], 115);
    assert_eq!(values[6]["response_body_len"], 579);
    assert_eq!(values[9]["status"], 404);
    assert_eq!(values[12]["index"], 12);
    assert_eq!(values[12]["url"], "http://127.0.0.1:8080/pending");
    assert!(values[12]["status"].is_null());
    let summary = &values[13]["summary"];
    assert_eq!(summary["http_flows"], 13);
    assert_eq!(summary["without_response"], 1);
    assert_eq!(summary["format_versions"], serde_json::json!(["17", "21"]));
}

#[test]
fn summary_flag_prints_the_summary_alone_for_several_files() {
    let a = fixture("mitm-6.0.2-v10.flows");
    let b = fixture("mitm-12.3.1-v21.flows");
    let out = inspect(&["--summary".as_ref(), a.as_os_str(), b.as_os_str()]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.starts_with("24 HTTP flows (0 without response)"),
        "{text}"
    );
    assert!(text.contains("format versions: 10, 21"), "{text}");
    assert!(text.contains("2 files, 47497 bytes"), "{text}");
    assert!(!text.contains("GET "));
}

/// Where each top-level value starts, by walking the decimal length prefixes.
fn flow_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        offsets.push(pos);
        let colon = pos + bytes[pos..].iter().position(|&b| b == b':').unwrap();
        let len: usize = std::str::from_utf8(&bytes[pos..colon])
            .unwrap()
            .parse()
            .unwrap();
        pos = colon + 1 + len + 1;
    }
    offsets
}

#[test]
fn a_corrupt_file_exits_2_naming_path_flow_and_offset() {
    let mut bytes = std::fs::read(fixture("demo.flows")).unwrap();
    let len = bytes.len();
    bytes.truncate(len - 10);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.flows");
    std::fs::write(&path, &bytes).unwrap();

    let out = inspect(&[path.as_os_str()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let last_flow_offset = flow_offsets(&std::fs::read(fixture("demo.flows")).unwrap())[11];
    assert!(
        err.contains(&format!(
            "{}: flow 12 at byte {last_flow_offset}: the file ends inside this flow",
            path.display()
        )),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "nothing listed from a refused file");
    assert!(err.contains("use --skip-bad-flows"), "{err}");

    let out = inspect(&["--skip-bad-flows".as_ref(), path.as_os_str()]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("warning:").count(), 1, "{err}");
    assert!(err.contains("flow 12 at byte"), "{err}");
    assert!(
        !err.contains("use --skip-bad-flows"),
        "no advice to use the flag already given: {err}"
    );
    assert!(stdout(&out).contains("11 HTTP flows"));
}

#[test]
fn loading_keeps_at_most_64_heap_bytes_per_flow() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gen.flows");
    let mut bytes = Vec::new();
    for i in 0..20_000 {
        write_flow(
            &mut bytes,
            &FlowSpec::get(&format!("/item/{i}"), 200, b"body"),
        );
    }
    std::fs::write(&path, &bytes).unwrap();
    let out = inspect(&["--json".as_ref(), "--summary".as_ref(), path.as_os_str()]);
    assert!(out.status.success());
    let summary: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let per_flow = summary["summary"]["heap_bytes_per_flow"]
        .as_f64()
        .expect("the binary counts heap bytes");
    assert!(per_flow <= 64.0, "{per_flow} heap bytes per flow");
    assert!(per_flow >= 32.0, "the 32-byte entry is counted: {per_flow}");
}

/// The flow lines of `inspect --json` (the summary line has load timings).
fn json_flow_lines(path: &Path) -> Vec<String> {
    let out = inspect(&[std::ffi::OsStr::new("--json"), path.as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
        .lines()
        .filter(|l| l.starts_with("{\"index\""))
        .map(str::to_string)
        .collect()
}

#[test]
fn inspect_json_on_a_har_agrees_with_inspect_json_on_what_mitmdump_converts_it_to() {
    for (har, twin) in [
        ("mitm-12.3.1-v21.har", "har/mitm-12.3.1-v21.har.mitm.flows"),
        ("har/chrome.har", "har/chrome.mitm.flows"),
        ("har/firefox.har", "har/firefox.mitm.flows"),
        ("har/edge.har", "har/edge.mitm.flows"),
    ] {
        let ours = json_flow_lines(&fixture(har));
        assert!(!ours.is_empty(), "{har}");
        assert_eq!(ours, json_flow_lines(&fixture(twin)), "{har}");
    }
}

#[test]
fn a_malformed_har_is_refused_naming_the_entry_and_json_path() {
    let path = std::env::temp_dir().join(format!(
        "uringreplay-inspect-{}-bad.har",
        std::process::id()
    ));
    std::fs::write(
        &path,
        br#"{"log":{"entries":[{"startedDateTime":"2026-11-27T10:00:00Z","time":1,
            "request":{"method":"GET","url":"http://a.test/"},"response":{"status":200}},
            {"startedDateTime":"2026-11-27T10:00:00Z","time":1,
            "request":{"method":"GET","url":"/relative"},"response":{"status":200}}]}}"#,
    )
    .unwrap();
    let out = inspect(&[path.as_os_str()]);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("this HAR file cannot be read: entry 1, log.entries[1].request.url: \"/relative\" is not an absolute"),
        "{err}"
    );
}
