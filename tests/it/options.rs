//! mitmdump's command line on the real binary: every mitmproxy 12 option as `--set`, every
//! mitmdump flag spelling, the honoured options' effects, bad values, `-k`, and conflicts.

use uringreplay::cli::mitm::{honoured, FlagAction, OptionKind, HONOURED};
use uringreplay::cli::mitm_options::{FLAGS, OPTIONS};
use uringreplay::flowfile::writer::FlowSpec;

use crate::support::{
    closed_port, fixture, get, run_to_exit, temp_path, Client, FlowFile, Server, Upstream, PATIENCE,
};

/// The demo recording's path.
fn demo() -> String {
    fixture("demo.flows").to_str().unwrap().to_string()
}

/// A value of option `name` that is valid for its type and keeps the demo replaying; `None`:
/// give the option without a value (valid for optional and bool options).
fn valid_value(name: &str, recording: &str) -> Option<String> {
    let option = OPTIONS.iter().find(|o| o.name == name).unwrap();
    if name == "save_stream_file" {
        // A file of the test's own: `x` would be written into the working directory.
        return Some(temp_path("every-flag.flows").display().to_string());
    }
    if name == "certs" {
        // A real certificate-and-key PEM: the file is read at start-up.
        let pem = fixture("mitmproxy-confdir").join("mitmproxy-ca.pem");
        return Some(pem.display().to_string());
    }
    let special = match name {
        "server_replay" => Some(recording),
        "mode" => Some("reverse:http://127.0.0.1:29411"),
        "listen_host" => Some("127.0.0.1"),
        "listen_port" => Some("0"),
        "server_replay_use_headers" => Some("x-absent-on-both-sides"),
        _ => None,
    };
    if let Some(v) = special {
        return Some(v.to_string());
    }
    match option.kind {
        OptionKind::Bool | OptionKind::Int | OptionKind::Str => Some(option.default.to_string()),
        OptionKind::OptionalInt | OptionKind::OptionalStr => None,
        OptionKind::Seq => Some("x".to_string()),
    }
}

/// The warning for a no-effect option names it this way.
fn no_effect(name: &str) -> String {
    format!("mitmproxy option {name} has no effect here")
}

fn assert_one_warning_per_ignored_option(stderr: &str, names: &[&str]) {
    for name in names {
        let expected = usize::from(!honoured(name));
        assert_eq!(
            stderr.matches(&no_effect(name)).count(),
            expected,
            "{name}: expected {expected} warning(s); stderr:\n{stderr}"
        );
    }
    let warnings = stderr.matches("has no effect here").count();
    let ignored = names.iter().filter(|n| !honoured(n)).count();
    assert_eq!(warnings, ignored, "{stderr}");
}

#[test]
fn every_mitmproxy_option_is_accepted_with_set_and_each_ignored_one_warns_once() {
    let recording = demo();
    let mut args = Vec::new();
    for o in OPTIONS {
        let item = match valid_value(o.name, &recording) {
            Some(v) => format!("{}={v}", o.name),
            None => o.name.to_string(),
        };
        args.extend(["--set".to_string(), item]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&args);
    let r = Client::new(&server).exchange(&get("/hello"));
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello world\n"[..]));
    let stopped = server.stop();
    assert!(stopped.status.success(), "{}", stopped.stderr);
    let names: Vec<&str> = OPTIONS.iter().map(|o| o.name).collect();
    assert_eq!(names.len(), 95, "mitmproxy 12.3.1 has 95 options");
    assert_one_warning_per_ignored_option(&stopped.stderr, &names);
}

/// The arguments that give every mitmdump flag once (`on`: the true side of each bool pair,
/// else the false side); value flags with a short spelling use it when `short`.
fn every_flag(recording: &str, on: bool, short: bool) -> (Vec<String>, Vec<&'static str>) {
    let mut args = Vec::new();
    let mut options = Vec::new();
    for flag in FLAGS {
        let long = format!("--{}", flag.long);
        let spellings = |both: bool| -> Vec<String> {
            match flag.short {
                // Ours: -k is --kill here (a test of its own below).
                Some('k') => vec![long.clone()],
                Some(s) if both => vec![long.clone(), format!("-{s}")],
                Some(s) if short => vec![format!("-{s}")],
                _ => vec![long.clone()],
            }
        };
        match flag.action {
            FlagAction::True | FlagAction::False => {
                if (flag.action == FlagAction::True) != on {
                    continue;
                }
                args.extend(spellings(true));
            }
            FlagAction::Value | FlagAction::Append => {
                let value = valid_value(flag.option, recording).unwrap_or("x".to_string());
                for spelling in spellings(false) {
                    args.extend([spelling, value.clone()]);
                }
            }
            FlagAction::Quiet | FlagAction::Verbose => args.extend(spellings(false)),
            // Help, version and the listings exit; --set has its own test.
            _ => continue,
        }
        options.push(flag.option);
    }
    options.retain(|o| !o.is_empty());
    (args, options)
}

#[test]
fn every_mitmdump_flag_spelling_is_accepted() {
    let recording = demo();
    for (on, short) in [(true, false), (false, true)] {
        let (args, options) = every_flag(&recording, on, short);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = Server::start_without_port(&args);
        let r = Client::new(&server).exchange(&get("/hello"));
        assert_eq!(r.status, 200, "{args:?}");
        let stopped = server.stop();
        assert!(stopped.status.success(), "{args:?}: {}", stopped.stderr);
        assert_one_warning_per_ignored_option(&stopped.stderr, &options);
    }
}

#[test]
fn help_lists_every_honoured_set_name_and_options_lists_every_option() {
    let help = run_to_exit(&["--help"], |_| {});
    assert!(help.status.success());
    for (name, _) in HONOURED {
        assert!(
            help.stdout.contains(&format!("  {name} ")),
            "{name} in --help"
        );
    }
    let listing = run_to_exit(&["--options"], |_| {});
    assert!(listing.status.success(), "{}", listing.stderr);
    assert_eq!(listing.stdout.lines().count(), OPTIONS.len());
    for o in OPTIONS {
        let line = listing
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{} (", o.name)))
            .unwrap_or_else(|| panic!("{} listed", o.name));
        assert_eq!(
            line.ends_with("no effect here"),
            !honoured(o.name),
            "{line}"
        );
    }
}

/// A recording for the matching options: a form POST, a query with a timestamp, two variants
/// of one path told apart by a header.
fn matching_recording() -> FlowFile {
    let mut post = FlowSpec::get("/form", 200, b"form");
    post.method = b"POST".to_vec();
    post.headers.push((
        b"Content-Type".to_vec(),
        b"application/x-www-form-urlencoded".to_vec(),
    ));
    post.content = Some(b"a=1&ts=1".to_vec());
    let query = FlowSpec::get("/q?x=1&ts=1", 200, b"query");
    let mut a = FlowSpec::get("/variant", 200, b"variant a");
    a.headers.push((b"X-Variant".to_vec(), b"a".to_vec()));
    let mut b = FlowSpec::get("/variant", 200, b"variant b");
    b.headers.push((b"X-Variant".to_vec(), b"b".to_vec()));
    FlowFile::new(&[post, query, a, b])
}

fn post_form(body: &str) -> Vec<u8> {
    format!(
        "POST /form HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: \
         application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn get_on_8080(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n{extra}\r\n").into_bytes()
}

/// Starts the matching recording in regular mode (the Host header is the host and port of the
/// key) with `set` (each a `--set` item) and `--extra 404`.
fn matching_server(file: &FlowFile, set: &[&str]) -> Server {
    let mut args = vec!["-S", file.arg(), "--mode", "regular"];
    if !set.iter().any(|s| s.starts_with("server_replay_extra")) {
        args.extend(["--extra", "404"]);
    }
    for item in set {
        args.extend(["--set", item]);
    }
    Server::start(&args)
}

#[test]
fn each_honoured_matching_and_replay_option_has_its_effect_through_set() {
    let file = matching_recording();
    // (set items, request, status and body without them, with them)
    type Case = (
        &'static [&'static str],
        Vec<u8>,
        (u16, &'static [u8]),
        (u16, &'static [u8]),
    );
    let cases: Vec<Case> = vec![
        (
            &["server_replay_ignore_content"],
            post_form("a=2&ts=9"),
            (404, b""),
            (200, b"form"),
        ),
        (
            &["server_replay_ignore_payload_params=ts"],
            post_form("a=1&ts=2"),
            (404, b""),
            (200, b"form"),
        ),
        (
            &["server_replay_ignore_params=ts"],
            get_on_8080("/q?x=1&ts=2", ""),
            (404, b""),
            (200, b"query"),
        ),
        (
            &["server_replay_ignore_host=true"],
            b"GET /q?x=1&ts=1 HTTP/1.1\r\nHost: elsewhere.test:8080\r\n\r\n".to_vec(),
            (404, b""),
            (200, b"query"),
        ),
        (
            &["server_replay_ignore_port=true"],
            b"GET /q?x=1&ts=1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n".to_vec(),
            (404, b""),
            (200, b"query"),
        ),
        (
            &["server_replay_use_headers=x-variant"],
            get_on_8080("/variant", "X-Variant: b\r\n"),
            (200, b"variant a"),
            (200, b"variant b"),
        ),
        (
            &["server_replay_extra=500"],
            get_on_8080("/unrecorded", ""),
            (404, b""),
            (500, b""),
        ),
    ];
    for (set, request, without, with) in cases {
        for (items, expected) in [(&[][..], without), (set, with)] {
            let server = matching_server(&file, items);
            let r = Client::new(&server).exchange(&request);
            assert_eq!((r.status, r.body.as_slice()), expected, "--set {items:?}");
        }
    }
}

#[test]
fn server_replay_reuse_nopop_refresh_and_kill_extra_work_through_set() {
    let recording = demo();
    let counter = |set: &[&str]| {
        let mut args = vec!["-S", &recording];
        for item in set {
            args.extend(["--set", item]);
        }
        let server = Server::start(&args);
        let mut c = Client::new(&server);
        [(); 2].map(|_| String::from_utf8(c.exchange(&get("/counter")).body).unwrap())
    };
    let consumed = ["counter=1 path=/counter\n", "counter=2 path=/counter\n"];
    let reused = ["counter=1 path=/counter\n", "counter=1 path=/counter\n"];
    assert_eq!(counter(&[]), consumed);
    assert_eq!(counter(&["server_replay_reuse"]), reused);
    assert_eq!(counter(&["server_replay_nopop=true"]), reused);
    assert_eq!(counter(&["server_replay_reuse=false"]), consumed);

    let mut dated = FlowSpec::get("/dated", 200, b"old");
    let response = dated.response.as_mut().unwrap();
    response
        .headers
        .push((b"Date".to_vec(), b"Sun, 13 Sep 2020 12:26:40 GMT".to_vec()));
    let file = FlowFile::new(&[dated]);
    let date = |set: &str| {
        let server = Server::start(&["-S", file.arg(), "--set", set]);
        let r = Client::new(&server).exchange(&get("/dated"));
        r.header("date").unwrap().to_string()
    };
    assert_eq!(
        date("server_replay_refresh=false"),
        "Sun, 13 Sep 2020 12:26:40 GMT"
    );
    assert_ne!(
        date("server_replay_refresh=true"),
        "Sun, 13 Sep 2020 12:26:40 GMT"
    );

    let server = Server::start(&["-S", &recording, "--set", "server_replay_kill_extra"]);
    let mut c = Client::new(&server);
    c.send(&get("/unrecorded"));
    assert_eq!(c.read_to_close(), b"", "killed: closed without a byte");
}

#[test]
fn server_replay_mode_and_listen_options_work_through_set() {
    let upstream = Upstream::start(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nup", false);
    let recording = demo();
    let server_replay = format!("server_replay={recording}");
    let mode = format!("mode=reverse:http://{}", upstream.addr);
    let port = closed_port();
    let listen_port = format!("listen_port={port}");
    let server = Server::start_without_port(&[
        "--set",
        &server_replay,
        "--set",
        &mode,
        "--set",
        "listen_host=127.0.0.2",
        "--set",
        &listen_port,
        "--set",
        "server_replay_ignore_port",
    ]);
    assert_eq!(server.addr, format!("127.0.0.2:{port}").parse().unwrap());
    let mut c = Client::new(&server);
    assert_eq!(c.exchange(&get("/hello")).body, b"hello world\n");
    assert_eq!(c.exchange(&get("/unrecorded")).body, b"up");
    let forwarded = upstream.requests.recv_timeout(PATIENCE).unwrap();
    assert!(forwarded.starts_with(b"GET /unrecorded HTTP/1.1\r\n"));
}

#[test]
fn keepserving_false_exits_when_done_and_flow_detail_prints_request_lines() {
    let file = FlowFile::new(&[FlowSpec::get("/only", 200, b"once")]);
    let server = Server::start(&[
        "-S",
        file.arg(),
        "--set",
        "keepserving=false",
        "--set",
        "flow_detail=1",
    ]);
    assert_eq!(Client::new(&server).exchange(&get("/only")).body, b"once");
    server.wait_stdout("GET http://127.0.0.1:8080/only << [replay] 200");
    let stopped = server.wait_exit();
    assert!(stopped.status.success(), "{}", stopped.stderr);
}

#[test]
fn termlog_verbosity_error_silences_the_summary_line_as_q_does() {
    let recording = demo();
    let quiet = Server::start(&["-S", &recording, "--set", "termlog_verbosity=error"]);
    let loud = Server::start(&["-S", &recording, "--set", "termlog_verbosity=info"]);
    for server in [&quiet, &loud] {
        assert_eq!(Client::new(server).exchange(&get("/hello")).status, 200);
    }
    // Both started before either could print a summary; once the loud one has, the quiet one
    // has had its chance too.
    let summary = " req/s; ";
    loud.wait_stderr(summary);
    let quiet = quiet.stop();
    assert!(!quiet.stderr.contains(summary), "{}", quiet.stderr);
}

#[test]
fn bad_values_are_refused_with_a_sentence_naming_the_option() {
    let recording = demo();
    let cases = [
        (
            &["--set", "anticache=maybe"][..],
            "--set anticache=maybe: anticache is a boolean",
        ),
        (
            &["--set", "flow_detail=lots"],
            "flow_detail takes an integer, not \"lots\"",
        ),
        (
            &["--flow-detail", "lots"],
            "--flow-detail lots: flow_detail takes an integer",
        ),
        (&["--set", "flow_detail"], "flow_detail needs a value"),
        (
            &["--set", "termlog_verbosity=loud"],
            "termlog_verbosity is one of error, warn",
        ),
        (
            &["--set", "server_replay_extra=418"],
            "server_replay_extra is one of forward, kill",
        ),
        (&["--set", "listen_port=70000"], "70000 is not a port"),
        (
            &["--set", "no_such_option=1"],
            "mitmproxy 12.3.1 has no option \"no_such_option\"",
        ),
    ];
    for (args, message) in cases {
        let mut all = vec!["-S", recording.as_str()];
        all.extend_from_slice(args);
        let out = run_to_exit(&all, |_| {});
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(message), "{args:?}: {}", out.stderr);
        assert_eq!(
            out.stderr.lines().count(),
            1,
            "one sentence: {}",
            out.stderr
        );
    }
}

#[test]
fn k_next_to_ssl_insecure_or_an_https_upstream_says_that_k_means_kill() {
    let note = "note: -k here means --kill";
    let recording = demo();
    let mut https = FlowSpec::get("/s", 200, b"s");
    https.scheme = b"https".to_vec();
    https.port = 443;
    let https_file = FlowFile::new(&[https]);
    let cases: [(&[&str], bool); 6] = [
        (&["-S", &recording, "-k", "--ssl-insecure"], true),
        (
            &["-S", &recording, "-k", "--set", "ssl_insecure=true"],
            true,
        ),
        (
            &[
                "-S",
                &recording,
                "-k",
                "--mode",
                "reverse:https://127.0.0.1:1",
            ],
            true,
        ),
        (&["-S", https_file.arg(), "-k"], true),
        (&["-S", &recording, "-k"], false),
        (&["-S", &recording, "--kill", "--ssl-insecure"], false),
    ];
    for (args, explained) in cases {
        let server = Server::start(args);
        let mut c = Client::new(&server);
        c.send(&get("/unrecorded"));
        assert_eq!(c.read_to_close(), b"", "{args:?}: -k kills");
        let stopped = server.stop();
        assert_eq!(
            stopped.stderr.matches(note).count(),
            usize::from(explained),
            "{args:?}: {}",
            stopped.stderr
        );
    }
}

#[test]
fn conflicting_options_are_refused_naming_both() {
    let recording = demo();
    let cases: [(&[&str], &str, &str); 9] = [
        (&["--reuse", "--order", "cycle"], "--reuse", "--order cycle"),
        (
            &["--order", "first", "--order", "last"],
            "--order",
            "multiple times",
        ),
        (
            &[
                "--mode",
                "regular",
                "--set",
                "mode=reverse:http://127.0.0.1:1",
            ],
            "--mode regular",
            "--set mode=reverse:http://127.0.0.1:1",
        ),
        (
            &["--extra", "404", "--set", "server_replay_extra=500"],
            "--extra 404",
            "--set server_replay_extra=500",
        ),
        (
            &[
                "--listen-host",
                "127.0.0.1",
                "--set",
                "listen_host=127.0.0.2",
            ],
            "--listen-host 127.0.0.1",
            "--set listen_host=127.0.0.2",
        ),
        (
            &["-p", "1", "--set", "listen_port=2"],
            "-p 1",
            "--set listen_port=2",
        ),
        (
            &["--norefresh", "--server-replay-refresh"],
            "--norefresh",
            "--server-replay-refresh",
        ),
        (
            &["--exit-when-done", "--set", "keepserving=true"],
            "--exit-when-done",
            "--set keepserving=true",
        ),
        (
            &["--ssl-insecure", "--no-ssl-insecure"],
            "--ssl-insecure",
            "--no-ssl-insecure",
        ),
    ];
    for (args, one, other) in cases {
        let mut all = vec!["-S", recording.as_str()];
        all.extend_from_slice(args);
        let out = run_to_exit(&all, |_| {});
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", out.stderr);
        let first = out.stderr.lines().next().unwrap_or_default();
        assert!(
            first.contains(one) && first.contains(other),
            "{args:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn where_mitmproxy_sets_a_precedence_a_warning_says_which_option_won() {
    let recording = demo();
    let server = Server::start(&["-S", &recording, "-k", "--extra", "404"]);
    let mut c = Client::new(&server);
    c.send(&get("/unrecorded"));
    assert_eq!(c.read_to_close(), b"", "-k wins over --extra 404");
    let stopped = server.stop();
    assert!(
        stopped.stderr.contains(
            "warning: -k and --extra 404 both say what to do with unmatched requests: -k wins"
        ),
        "{}",
        stopped.stderr
    );

    let file = matching_recording();
    let server = Server::start(&[
        "-S",
        file.arg(),
        "--ignore-content",
        "--ignore-payload-param",
        "ts",
    ]);
    let r = Client::new(&server).exchange(&post_form("a=2&ts=2"));
    assert_eq!(r.body, b"form", "the whole body is left out");
    let stopped = server.stop();
    assert!(
        stopped
            .stderr
            .contains("warning: --ignore-content leaves the whole request body out of matching"),
        "{}",
        stopped.stderr
    );
}

#[test]
fn a_trailing_mitmdump_filter_expression_is_accepted_with_a_warning() {
    let recording = demo();
    // As in mitmdump, everything after the filter's first word is part of the filter.
    let server = Server::start_without_port(&["-S", &recording, "-p", "0", "~u", "hello"]);
    assert_eq!(Client::new(&server).exchange(&get("/hello")).status, 200);
    let stopped = server.stop();
    assert!(
        stopped
            .stderr
            .contains("warning: the filter expression \"~u hello"),
        "{}",
        stopped.stderr
    );
}
