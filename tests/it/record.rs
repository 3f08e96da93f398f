//! Record mode (`-w FILE`, issue 17): a recording reverse proxy in front of a loopback origin,
//! record-on-miss with `-S`, `-w +FILE` appending, a recording cut by SIGKILL, and real mitmproxy
//! reading what was saved.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use uringreplay::flowfile::writer::FlowSpec;
use uringreplay::flowfile::{LoadOptions, Recording};

use crate::capture::{mitmdump, mitmdump_replaying};
use crate::forward::{read_request, TestUpstream};
use crate::support::{get, temp_path, Client, FlowFile, Response, Server, PATIENCE};

fn load(path: &std::path::Path) -> Recording {
    Recording::open(&[path.to_path_buf()], LoadOptions::default(), &mut |_| {})
        .expect("the saved file loads")
}

/// An origin with a few kinds of answers: fixed-length with headers in a particular order and
/// case, chunked, an echo of a POST body, a 404.
fn origin() -> TestUpstream {
    TestUpstream::plain(|s| {
        while let Some((head, body)) = read_request(s) {
            let path = head.split(' ').nth(1).unwrap_or("").to_string();
            let answer: Vec<u8> = match path.as_str() {
                "/json" => b"HTTP/1.1 200 OK\r\nX-Zeta: 1\r\ncontent-type: application/json\r\n\
                    X-Alpha: two words\r\nContent-Length: 11\r\n\r\n{\"a\": true}"
                    .to_vec(),
                "/chunked" => b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n\
                    3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
                    .to_vec(),
                "/echo" => {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nX-Echo: yes\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(&body);
                    r
                }
                _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot here\n".to_vec(),
            };
            if s.write_all(&answer).is_err() {
                return;
            }
        }
    })
}

fn requests() -> Vec<Vec<u8>> {
    vec![
        get("/json"),
        get("/chunked"),
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".to_vec(),
        get("/nothing"),
    ]
}

/// Status, body, and the header fields other than framing and connection ones (the relay and
/// the replay frame a body each their own way: chunks passed through, one chunk re-framed).
fn answer(r: &Response) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let headers = r
        .headers
        .iter()
        .filter(|(n, _)| {
            !["content-length", "transfer-encoding", "connection", "date"]
                .contains(&n.to_ascii_lowercase().as_str())
        })
        .cloned()
        .collect();
    (r.status, headers, r.body.clone())
}

#[test]
fn record_mode_saves_the_origins_answers_and_they_replay_with_the_origin_gone() {
    let up = origin();
    let file = temp_path("recorded.flows");
    let file_arg = file.to_str().unwrap();
    let mode = up.reverse("http");
    let server = Server::start(&["--mode", &mode, "-w", file_arg]);
    server.wait_stderr(&format!(
        "recording: every forwarded exchange is saved to {file_arg} (writing"
    ));
    let mut c = Client::new(&server);
    let live: Vec<_> = requests().iter().map(|r| answer(&c.exchange(r))).collect();
    assert_eq!(live[0].0, 200);
    assert_eq!(live[1], (201, vec![], b"abcdefg".to_vec()));
    assert_eq!(live[2].2, b"hello world");
    drop(c);
    let stopped = server.stop();
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert!(
        stopped
            .stderr
            .contains(&format!("{file_arg}: 4 forwarded flows saved, 0 dropped")),
        "{}",
        stopped.stderr
    );
    assert!(!stopped.stderr.contains("no effect"), "{}", stopped.stderr);

    // What was saved: the request as mitmproxy stores it (Host rewritten, no Via, body
    // de-chunked), the response head as the origin sent it, in wire order.
    let rec = load(&file);
    assert_eq!(rec.len(), 4);
    let post = rec.flow(2);
    assert_eq!(post.request.method, b"POST");
    assert_eq!(post.request.content, Some(&b"hello world"[..]));
    let names: Vec<_> = post.request.headers.iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [&b"Host"[..], b"Content-Type", b"Transfer-Encoding"],
        "client's fields in order, no Via"
    );
    assert_eq!(
        post.request.headers.iter().next().unwrap().1,
        up.addr.to_string().as_bytes()
    );
    let json = rec.flow(0).response.unwrap();
    let fields: Vec<_> = json.headers.iter().collect();
    assert_eq!(
        fields,
        [
            (&b"X-Zeta"[..], &b"1"[..]),
            (b"content-type", b"application/json"),
            (b"X-Alpha", b"two words"),
            (b"Content-Length", b"11"),
        ]
    );
    assert_eq!(rec.flow(1).response.unwrap().content, Some(&b"abcdefg"[..]));

    // The origin goes away; the file answers as it did.
    let port = up.addr.port();
    up.close();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    let server = Server::start(&["-S", file_arg]);
    server.wait_stderr(&format!(
        "replaying as --mode reverse:http://127.0.0.1:{port}"
    ));
    let mut c = Client::new(&server);
    let replayed: Vec<_> = requests().iter().map(|r| answer(&c.exchange(r))).collect();
    assert_eq!(replayed, live);
    drop(c);
    let stopped = server.stop();
    assert!(
        stopped.stderr.contains("replayed 4, forwarded 0"),
        "{}",
        stopped.stderr
    );
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn with_a_recording_only_forwarded_misses_are_saved_and_the_next_run_replays_them() {
    let up = origin();
    let flows = FlowFile::new(&[FlowSpec::get("/recorded", 200, b"recorded")]);
    let file = temp_path("on-miss.flows");
    let file_arg = file.to_str().unwrap();
    let mode = up.reverse("http");
    let server = Server::start(&[
        "-S",
        flows.arg(),
        "--mode",
        &mode,
        "--ignore-port",
        "-w",
        file_arg,
    ]);
    let mut c = Client::new(&server);
    assert_eq!(c.exchange(&get("/recorded")).body, b"recorded");
    let miss = answer(&c.exchange(&get("/json")));
    assert_eq!(miss.0, 200);
    drop(c);
    let stopped = server.stop();
    assert!(
        stopped.stderr.contains("replayed 1, forwarded 1")
            && stopped.stderr.contains("1 forwarded flow saved"),
        "{}",
        stopped.stderr
    );
    let rec = load(&file);
    let paths: Vec<_> = rec.flows().map(|f| f.request.path.to_vec()).collect();
    assert_eq!(
        paths,
        [b"/json".to_vec()],
        "the replayed request is not saved"
    );

    up.close();
    let server = Server::start(&["-S", flows.arg(), "-S", file_arg, "--mode", &mode]);
    let mut c = Client::new(&server);
    assert_eq!(answer(&c.exchange(&get("/json"))), miss);
    drop(c);
    let stopped = server.stop();
    assert!(
        stopped.stderr.contains("replayed 1, forwarded 0"),
        "{}",
        stopped.stderr
    );
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn a_plus_before_the_file_appends_to_what_an_earlier_run_saved() {
    let up = origin();
    let file = temp_path("appended.flows");
    let mode = up.reverse("http");
    let plus = format!("+{}", file.display());
    let run = |w: &str, path: &str, spelling: &str| {
        let server = Server::start(&["--mode", &mode, spelling, w]);
        let mut c = Client::new(&server);
        assert_eq!(c.exchange(&get(path)).status, 404);
        drop(c);
        let stopped = server.stop();
        assert!(
            stopped.stderr.contains("1 forwarded flow saved"),
            "{}",
            stopped.stderr
        );
    };
    run(file.to_str().unwrap(), "/first", "-w");
    run(&plus, "/second", "--save-stream-file");
    run(&format!("save_stream_file={plus}"), "/third", "--set");
    let paths: Vec<_> = load(&file)
        .flows()
        .map(|f| f.request.path.to_vec())
        .collect();
    assert_eq!(
        paths,
        [b"/first".to_vec(), b"/second".to_vec(), b"/third".to_vec()]
    );
    // Without the `+` the file starts over.
    run(file.to_str().unwrap(), "/fourth", "-w");
    assert_eq!(load(&file).len(), 1);
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn a_recording_server_killed_with_sigkill_leaves_a_file_that_loads_to_the_last_whole_flow() {
    let body = "y".repeat(8 * 1024);
    let up = TestUpstream::plain(move |s| {
        while let Some((_, _)) = read_request(s) {
            let r = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if s.write_all(r.as_bytes()).is_err() {
                return;
            }
        }
    });
    let file = temp_path("killed.flows");
    let mode = up.reverse("http");
    let server = Server::start(&["--mode", &mode, "-w", file.to_str().unwrap()]);
    let mut c = Client::new(&server);
    let started = Instant::now();
    let mut sent = 0;
    // Keep forwarding until the writer has put some flows in the file, then kill at once, with
    // the writer still busy with the last answers.
    while std::fs::metadata(&file).map_or(0, |m| m.len()) < 100_000 {
        assert!(started.elapsed() < PATIENCE, "nothing was saved");
        assert_eq!(c.exchange(&get(&format!("/item/{sent}"))).status, 200);
        sent += 1;
    }
    for _ in 0..20 {
        c.send(&get(&format!("/item/{sent}")));
        sent += 1;
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(server.pid(), libc::SIGKILL);
    }
    let stopped = server.wait_exit();
    assert!(!stopped.status.success());
    // A SIGKILL can land inside the one write of a flow (the kernel stops a write between
    // pages), leaving part of the last flow: --skip-bad-flows loads up to the last whole one.
    let rec = crate::support::load_skipping_a_cut_tail(&file);
    assert!(
        !rec.is_empty() && rec.len() <= sent,
        "{} of {sent}",
        rec.len()
    );
    for (i, f) in rec.flows().enumerate() {
        assert_eq!(f.request.path, format!("/item/{i}").as_bytes());
        assert_eq!(f.response.unwrap().content.map(<[u8]>::len), Some(8 * 1024));
    }
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn real_mitmdump_lists_and_replays_what_record_mode_saved() {
    let Some(mitmdump) = mitmdump() else {
        eprintln!(
            "real_mitmdump_lists_and_replays_what_record_mode_saved: mitmdump not found (set \
             URINGREPLAY_MITMDUMP or put it on PATH): skipped"
        );
        return;
    };
    let up = origin();
    let file = temp_path("for-mitmdump.flows");
    let mode = up.reverse("http");
    let server = Server::start(&["--mode", &mode, "-w", file.to_str().unwrap()]);
    let mut c = Client::new(&server);
    let live: Vec<_> = requests().iter().map(|r| c.exchange(r)).collect();
    drop(c);
    assert!(server.stop().status.success());
    let listed = Command::new(&mitmdump)
        .args(["-n", "--flow-detail", "1", "-r", file.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .expect("run mitmdump -nr");
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert_eq!(text.matches("<< ").count(), 4, "{text}");
    let at = up.addr;
    for line in [
        format!("GET http://{at}/json\n              << 200 OK 11b"),
        format!("GET http://{at}/chunked\n              << 201 Created 7b"),
        format!("POST http://{at}/echo\n              << 200 OK 11b"),
        format!("GET http://{at}/nothing\n              << 404 Not Found 9b"),
    ] {
        assert!(text.contains(&line), "{line}: {text}");
    }
    // mitmdump -S answers from the file, with the origin gone.
    up.close();
    let (mut child, port) = mitmdump_replaying(&mitmdump, &file, &format!("reverse:http://{at}"));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        s,
        "GET /json HTTP/1.1\r\nHost: {at}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut s, &mut got).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let got = String::from_utf8_lossy(&got);
    assert!(
        got.starts_with("HTTP/1.1 200 OK\r\n") && got.contains("X-Alpha: two words\r\n"),
        "{got}"
    );
    assert!(got.ends_with("\r\n\r\n{\"a\": true}"), "{got}");
    assert_eq!(live[0].body, b"{\"a\": true}");
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn recording_with_kill_or_a_status_policy_warns_that_nothing_will_be_saved() {
    let flows = FlowFile::new(&[FlowSpec::get("/recorded", 200, b"recorded")]);
    let file = temp_path("never.flows");
    for (policy, says) in [
        (&["-k"][..], "unmatched requests are killed (-k)"),
        (&["--extra", "404"][..], "answered with a status (--extra)"),
    ] {
        let mut args = vec!["-S", flows.arg(), "-w", file.to_str().unwrap()];
        args.extend_from_slice(policy);
        let server = Server::start(&args);
        server.wait_stderr(says);
        let stopped = server.stop();
        assert!(
            stopped.stderr.contains("nothing will be saved")
                && stopped.stderr.contains("0 forwarded flows saved"),
            "{}",
            stopped.stderr
        );
    }
    std::fs::remove_file(&file).unwrap();
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn a_forward_the_upstream_refused_is_saved_as_mitmdump_saves_it_with_an_error_and_no_response() {
    let port = closed_port();
    let file = temp_path("refused.flows");
    let file_arg = file.to_str().unwrap();
    let mode = format!("reverse:http://127.0.0.1:{port}");
    let server = Server::start(&["--mode", &mode, "-w", file_arg]);
    let mut c = Client::new(&server);
    assert_eq!(c.exchange(&get("/x?y=1")).status, 502);
    drop(c);
    let stopped = server.stop();
    assert!(
        stopped.stderr.contains("1 forwarded flow saved"),
        "{}",
        stopped.stderr
    );
    let rec = load(&file);
    assert_eq!(rec.len(), 1);
    let flow = rec.flow(0);
    assert_eq!(flow.request.path, b"/x?y=1");
    assert!(flow.response.is_none());
    let refused = format!("[Errno 111] Connect call failed ('127.0.0.1', {port})");
    let error = rec.error(0).expect("the flow has an error");
    assert_eq!(error.msg, refused.as_bytes());
    assert!(error.timestamp >= flow.request.timestamp_start);

    // inspect shows it as mitmdump -nr does, and convert keeps it.
    let listed = crate::support::run_to_exit(&["inspect", file_arg], |_| {});
    assert!(listed.status.success(), "{}", listed.stderr);
    assert!(
        listed
            .stdout
            .contains(&format!("GET http://127.0.0.1:{port}/x?y=1 << {refused}")),
        "{}",
        listed.stdout
    );
    let converted = temp_path("refused-converted.flows");
    let run = crate::support::run_to_exit(
        &["convert", file_arg, "-o", converted.to_str().unwrap()],
        |_| {},
    );
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(load(&converted).error(0), Some(error));

    // Real mitmproxy lists it with its error, where it is installed.
    match mitmdump() {
        Some(mitmdump) => {
            let listed = Command::new(&mitmdump)
                .args(["-n", "--flow-detail", "1", "-r", file_arg])
                .stdin(Stdio::null())
                .output()
                .expect("run mitmdump -nr");
            let text = String::from_utf8_lossy(&listed.stdout);
            assert!(
                listed.status.success(),
                "{text}{}",
                String::from_utf8_lossy(&listed.stderr)
            );
            assert!(
                text.contains(&format!("GET http://127.0.0.1:{port}/x?y=1\n << {refused}")),
                "{text}"
            );
        }
        None => eprintln!(
            "a_forward_the_upstream_refused_is_saved_as_mitmdump_saves_it: mitmdump not found \
             (set URINGREPLAY_MITMDUMP or put it on PATH): its listing was not checked"
        ),
    }
    std::fs::remove_file(&file).unwrap();
    std::fs::remove_file(&converted).unwrap();
}

#[test]
fn convert_and_inspect_keep_the_error_of_a_flow_mitmdump_saved_for_a_refused_connection() {
    // mitmdump 11.0.2 -w in reverse mode in front of a closed port (one curl request).
    let theirs = crate::support::fixture("mitm-11.0.2-reverse-refused.flows");
    let refused = "[Errno 111] Connect call failed ('127.0.0.1', 37885)";
    let json =
        crate::support::run_to_exit(&["inspect", "--json", theirs.to_str().unwrap()], |_| {});
    assert!(json.status.success(), "{}", json.stderr);
    let first: serde_json::Value =
        serde_json::from_str(json.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["status"], serde_json::Value::Null);
    assert_eq!(first["error"]["msg"], refused);
    assert_eq!(first["error"]["timestamp"], 1796236453.4432287);

    let out = temp_path("converted-refused.flows");
    let run = crate::support::run_to_exit(
        &[
            "convert",
            theirs.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        |_| {},
    );
    assert!(run.status.success(), "{}", run.stderr);
    let rec = load(&out);
    assert!(rec.flow(0).response.is_none());
    let error = rec.error(0).expect("convert keeps the error");
    assert_eq!(
        (error.msg, error.timestamp),
        (refused.as_bytes(), 1796236453.4432287)
    );
    // The flow's error field (the last `error` key: the connections' come first) is written
    // byte for byte as mitmproxy wrote it.
    let error_field = |b: &[u8]| -> Vec<u8> {
        let at = b.windows(8).rposition(|w| w == b"5:error;").unwrap();
        b[at..at + 108].to_vec()
    };
    let ours = error_field(&std::fs::read(&out).unwrap());
    assert_eq!(ours, error_field(&std::fs::read(&theirs).unwrap()));
    assert!(
        ours.ends_with(b"37885);}"),
        "{}",
        String::from_utf8_lossy(&ours)
    );
    std::fs::remove_file(&out).unwrap();
}
