//! Captures in and out (issue 17): HAR recordings served like flow files, `convert`, and a
//! converted file cut by SIGKILL.

use std::process::{Command, Stdio};
use std::time::Instant;

use uringreplay::flowfile::writer::{write_flow, FlowSpec};
use uringreplay::flowfile::{LoadOptions, Recording};

use crate::support::{fixture, run_to_exit, temp_path, Client, Server, PATIENCE};

fn load(paths: &[std::path::PathBuf]) -> Recording {
    Recording::open(paths, LoadOptions::default(), &mut |_| {}).expect("the recording loads")
}

/// The request each recorded flow made, as raw HTTP/1.1 bytes.
fn recorded_requests(rec: &Recording) -> Vec<Vec<u8>> {
    rec.flows()
        .map(|f| {
            let r = &f.request;
            let mut out = [r.method, b" ", r.path, b" HTTP/1.1\r\n"].concat();
            for (n, v) in r.headers.iter() {
                out.extend_from_slice(&[n, b": ", v, b"\r\n"].concat());
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(r.content.unwrap_or_default());
            out
        })
        .collect()
}

/// Status, headers (values of the refreshed date-bearing ones left out) and body of each answer.
fn answers(file: &std::path::Path, requests: &[Vec<u8>]) -> Vec<String> {
    let server = Server::start(&["-S", file.to_str().unwrap(), "--extra", "404"]);
    let mut c = Client::new(&server);
    requests
        .iter()
        .map(|req| {
            let r = c.exchange(req);
            let headers: Vec<String> = r
                .headers
                .iter()
                .map(|(n, v)| match n.to_ascii_lowercase().as_str() {
                    "date" | "expires" | "last-modified" | "set-cookie" => n.clone(),
                    _ => format!("{n}: {v}"),
                })
                .collect();
            format!(
                "{} {headers:?} {:?}",
                r.status,
                String::from_utf8_lossy(&r.body)
            )
        })
        .collect()
}

#[test]
fn the_har_fixture_replays_answer_for_answer_as_the_flow_file_mitmdump_makes_of_it() {
    let har = fixture("mitm-12.3.1-v21.har");
    let twin = fixture("har/mitm-12.3.1-v21.har.mitm.flows");
    let requests = recorded_requests(&load(std::slice::from_ref(&twin)));
    assert_eq!(requests.len(), 12);
    let ours = answers(&har, &requests);
    assert_eq!(ours, answers(&twin, &requests));
    // Served from the recording, not the 404 of an unmatched request.
    assert!(
        ours.iter().filter(|a| a.starts_with("200 ")).count() >= 9,
        "{ours:?}"
    );
    assert!(ours[0].ends_with("\"hello world\\n\""), "{}", ours[0]);
}

#[test]
fn a_firefox_har_with_missing_optional_fields_and_a_chrome_har_with_base64_bodies_load() {
    // Firefox: no timings, cookies or postData params on some entries, a body-less image entry.
    let server = Server::start(&["-S", fixture("har/firefox.har").to_str().unwrap()]);
    server.wait_stderr("--mode reverse:https://shop.test");
    // An `HTTP/2` entry is answered with mitmproxy's verbatim `HTTP/2` status line, then closed.
    let mut c = Client::new(&server);
    c.send(b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n");
    let raw = String::from_utf8(c.read_to_close()).unwrap();
    assert!(raw.starts_with("HTTP/2 200 OK\r\n"), "{raw}");
    assert!(
        raw.ends_with("\r\n\r\n<p>caf\u{e9} \u{2013} welcome</p>"),
        "{raw}"
    );
    assert!(
        !raw.to_ascii_lowercase().contains("content-encoding"),
        "{raw}"
    );
    let mut c = Client::new(&server);
    let r = c.exchange(b"GET /api/items HTTP/1.1\r\nHost: shop.test\r\n\r\n");
    assert_eq!(r.body, b"{\"items\": [1, 2]}");
    drop(server);
    // Chrome: http/2.0, negative timings, base64 bodies, pseudo-header fields, several origins.
    let rec = load(&[fixture("har/chrome.har")]);
    assert_eq!(rec.len(), 4);
    let first = rec.flow(0);
    assert_eq!(first.request.http_version, b"HTTP/2");
    assert_eq!(
        first.response.unwrap().content,
        Some("<h1>h\u{e9}</h1>".as_bytes())
    );
    // Lenient where mitmproxy is not: no httpVersion, no time, postData without text.
    let sloppy = temp_path("sloppy.har");
    std::fs::write(
        &sloppy,
        br#"{"log":{"entries":[{"startedDateTime":"2026-11-27T10:00:00Z",
            "request":{"method":"POST","url":"http://a.test/p","postData":{"mimeType":"x"}},
            "response":{"status":204,"content":{"size":0}}}]}}"#,
    )
    .unwrap();
    let rec = load(std::slice::from_ref(&sloppy));
    std::fs::remove_file(&sloppy).unwrap();
    assert_eq!(rec.flow(0).request.http_version, b"HTTP/1.1");
    assert_eq!(rec.flow(0).response.unwrap().status_code, 204);
}

#[test]
fn serving_a_malformed_har_exits_naming_the_file_entry_and_json_path() {
    let bad = temp_path("bad.har");
    std::fs::write(
        &bad,
        br#"{"log":{"entries":[{"startedDateTime":"2026-11-27T10:00:00Z","time":1,
            "request":{"method":"GET","url":"http://a.test/"},"response":{"status":200}},
            {"startedDateTime":"2026-11-27T10:00:00Z","time":1,
            "request":{"method":"GET","url":"http://a.test/","headers":[["only-a-name"]]},
            "response":{"status":200}}]}}"#,
    )
    .unwrap();
    let stopped = run_to_exit(&["-S", bad.to_str().unwrap()], |_| {});
    std::fs::remove_file(&bad).unwrap();
    assert!(!stopped.status.success());
    assert!(
        stopped.stderr.contains(&format!(
            "{}: this HAR file cannot be read: entry 1, log.entries[1].request.headers[0]: ",
            bad.display()
        )),
        "{}",
        stopped.stderr
    );
}

/// Every field of every flow that a format-21 file keeps, for comparing inputs and output.
fn fields(rec: &Recording) -> Vec<String> {
    rec.flows()
        .map(|f| {
            let r = &f.request;
            let resp = f.response.as_ref().map(|p| {
                (
                    p.status_code,
                    p.reason,
                    p.http_version,
                    p.headers.iter().collect::<Vec<_>>(),
                    p.content,
                    p.timestamp_start,
                    p.timestamp_end,
                )
            });
            format!(
                "{:?}",
                (
                    r.method,
                    r.scheme,
                    r.host,
                    r.port,
                    r.authority,
                    r.path,
                    r.http_version,
                    r.headers.iter().collect::<Vec<_>>(),
                    r.content,
                    r.timestamp_start,
                    r.timestamp_end,
                    resp,
                )
            )
        })
        .collect()
}

/// `mitmdump`, if one is installed (`URINGREPLAY_MITMDUMP` or on `PATH`).
pub fn mitmdump() -> Option<std::path::PathBuf> {
    let named = std::env::var_os("URINGREPLAY_MITMDUMP").map(std::path::PathBuf::from);
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("mitmdump"))
            .find(|p| p.is_file())
    });
    named.filter(|p| p.is_file()).or(on_path)
}

#[test]
fn convert_writes_one_format_21_file_from_har_and_old_flow_files() {
    let inputs = [
        fixture("mitm-12.3.1-v21.har"),
        fixture("mitm-6.0.2-v10.flows"),
        fixture("har/chrome.har"),
        fixture("mitm-8.1.1-v17.flows"),
    ];
    let out = temp_path("converted.flows");
    let mut args: Vec<&str> = vec!["convert"];
    args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
    args.extend(["-o", out.to_str().unwrap()]);
    let stopped = run_to_exit(&args, |_| {});
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert!(
        stopped.stderr.contains("wrote 40 flows to"),
        "{}",
        stopped.stderr
    );
    let converted = load(std::slice::from_ref(&out));
    assert_eq!(fields(&converted), fields(&load(&inputs)));
    assert_eq!(
        converted
            .summary()
            .versions
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["21"]
    );
    // Real mitmproxy lists the file, flow for flow, where it is installed.
    match mitmdump() {
        Some(mitmdump) => {
            let listing = Command::new(mitmdump)
                .args(["-nr", out.to_str().unwrap()])
                .stdin(Stdio::null())
                .output()
                .expect("run mitmdump");
            assert!(listing.status.success(), "{listing:?}");
            let text = String::from_utf8_lossy(&listing.stdout);
            assert_eq!(text.matches("<< ").count(), 40, "{text}");
        }
        None => eprintln!(
            "convert_writes_one_format_21_file: mitmdump not found (set URINGREPLAY_MITMDUMP or \
             put it on PATH): skipped the check that real mitmproxy reads the output"
        ),
    }
    std::fs::remove_file(&out).unwrap();
}

#[test]
fn convert_refuses_to_overwrite_one_of_its_inputs() {
    let input = temp_path("in.flows");
    std::fs::copy(fixture("demo.flows"), &input).unwrap();
    let stopped = run_to_exit(
        &[
            "convert",
            input.to_str().unwrap(),
            "-o",
            input.to_str().unwrap(),
        ],
        |_| {},
    );
    let after = std::fs::read(&input).unwrap();
    std::fs::remove_file(&input).unwrap();
    assert_eq!(stopped.status.code(), Some(2));
    assert!(
        stopped.stderr.contains("is both an input and the output"),
        "{}",
        stopped.stderr
    );
    assert_eq!(after, std::fs::read(fixture("demo.flows")).unwrap());
}

#[test]
fn a_conversion_cut_by_sigkill_leaves_a_file_that_loads_up_to_the_last_whole_flow() {
    // Big enough that writing takes far longer than the kill takes to land.
    let input = temp_path("big.flows");
    let body = vec![b'x'; 4096];
    let mut bytes = Vec::new();
    let total = 20_000;
    for i in 0..total {
        write_flow(
            &mut bytes,
            &FlowSpec::get(&format!("/item/{i}"), 200, &body),
        );
    }
    std::fs::write(&input, &bytes).unwrap();
    drop(bytes);
    let out = temp_path("cut.flows");
    let mut child = Command::new(env!("CARGO_BIN_EXE_uringreplay"))
        .args([
            "convert",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn uringreplay convert");
    let started = Instant::now();
    // Wait (bounded) for the first flows to reach the file, then kill at once.
    while std::fs::metadata(&out).map_or(0, |m| m.len()) < 100_000 {
        assert!(started.elapsed() < PATIENCE, "convert wrote nothing");
        assert!(
            child.try_wait().unwrap().is_none(),
            "convert exited before the kill"
        );
        std::thread::yield_now();
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the kill landed after convert finished");
    // A SIGKILL can land inside the one write of a flow (the kernel stops a write between
    // pages), leaving part of the last flow: --skip-bad-flows loads up to the last whole one.
    let rec = crate::support::load_skipping_a_cut_tail(&out);
    std::fs::remove_file(&input).unwrap();
    std::fs::remove_file(&out).unwrap();
    assert!(!rec.is_empty() && rec.len() < total, "{} flows", rec.len());
    for (i, f) in rec.flows().enumerate() {
        assert_eq!(f.request.path, format!("/item/{i}").as_bytes());
    }
}

#[test]
fn real_mitmdump_replays_a_file_convert_wrote_from_a_har() {
    let Some(mitmdump) = mitmdump() else {
        eprintln!(
            "real_mitmdump_replays_a_file_convert_wrote_from_a_har: mitmdump not found (set \
             URINGREPLAY_MITMDUMP or put it on PATH): skipped"
        );
        return;
    };
    let out = temp_path("from-har.flows");
    let har = fixture("mitm-12.3.1-v21.har");
    let stopped = run_to_exit(
        &[
            "convert",
            har.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        |_| {},
    );
    assert!(stopped.status.success(), "{}", stopped.stderr);
    let (mut child, port) = mitmdump_replaying(&mitmdump, &out, "reverse:http://127.0.0.1:29411");
    let fetch = |path: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:29411\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        String::from_utf8_lossy(&all).into_owned()
    };
    let hello = fetch("/hello");
    let first = fetch("/counter");
    let second = fetch("/counter");
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_file(&out).unwrap();
    assert!(
        hello.starts_with("HTTP/1.1 200 OK\r\n") && hello.ends_with("\r\n\r\nhello world\n"),
        "{hello}"
    );
    assert!(first.ends_with("counter=1 path=/counter\n"), "{first}");
    assert!(second.ends_with("counter=2 path=/counter\n"), "{second}");
}

/// Starts real `mitmdump` replaying `file` (`-S`) in `mode` on 127.0.0.1, unmatched requests
/// killed, and returns it with the port it listens on.
pub fn mitmdump_replaying(
    mitmdump: &std::path::Path,
    file: &std::path::Path,
    mode: &str,
) -> (std::process::Child, u16) {
    let mut child = Command::new(mitmdump)
        .args(["--listen-host", "127.0.0.1", "-p", "0"])
        .args(["--mode", mode, "-S", file.to_str().unwrap()])
        .args([
            "--set",
            "server_replay_extra=kill",
            "--set",
            "connection_strategy=lazy",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mitmdump");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            // Read on after the port is known: a closed pipe would stop mitmdump's logging.
            let _ = tx.send(line);
        }
    });
    let port: u16 = loop {
        let line = rx
            .recv_timeout(PATIENCE)
            .expect("mitmdump says where it listens");
        if let Some(at) = line.split("listening at 127.0.0.1:").nth(1) {
            break at.trim_end_matches('.').parse().expect("a port");
        }
    };
    (child, port)
}
