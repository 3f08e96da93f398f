//! Safe defaults (issue 11): no forwarding to ourselves, no silent second copy on a port, and
//! `--keep-alive` for recordings that close every connection.

use uringreplay::flowfile::writer::FlowSpec;

use crate::support::{
    closed_port, fixture, get, run_to_exit, Client, FlowFile, Server, Stopped, Upstream,
};

/// Everything a stopped server printed (the final report's stream does not matter here).
fn output(stopped: &Stopped) -> String {
    format!("{}{}", stopped.stdout, stopped.stderr)
}

/// One flow recorded in front of `127.0.0.1:port`.
fn recorded_at(port: u16) -> FlowFile {
    let mut flow = FlowSpec::get("/recorded", 200, b"recorded");
    flow.port = port;
    flow.headers = vec![(b"Host".to_vec(), format!("127.0.0.1:{port}").into_bytes())];
    FlowFile::new(&[flow])
}

#[test]
fn a_reverse_target_that_is_our_own_listen_address_is_refused_at_start_up() {
    let port = closed_port();
    let p = port.to_string();
    let file = recorded_at(port);
    // The target chosen from the single recorded origin, and given explicitly in other spellings.
    let explicit = format!("reverse:http://localhost:{port}");
    let mapped = format!("reverse:http://[::ffff:127.0.0.1]:{port}");
    for extra in [&[][..], &["--mode", &explicit], &["--mode", &mapped]] {
        let mut args = vec!["-S", file.arg(), "-p", &p, "--threads", "1"];
        args.extend_from_slice(extra);
        let stopped = run_to_exit(&args, |_| {});
        assert_eq!(
            stopped.status.code(),
            Some(1),
            "{args:?}: {}",
            stopped.stderr
        );
        assert!(
            stopped.stderr.contains("which is this server itself")
                && stopped.stderr.contains("-p OTHER_PORT")
                && stopped.stderr.contains("--mode reverse:")
                && stopped.stderr.contains("--extra 404"),
            "{}",
            stopped.stderr
        );
        assert!(
            stopped.stdout.is_empty(),
            "nothing listened: {}",
            stopped.stdout
        );
    }
    // Nothing is forwarded with -k or a status policy, so the same target is fine there.
    for policy in [&["-k"][..], &["--extra", "404"]] {
        let mut args = vec!["-S", file.arg(), "-p", &p, "--threads", "1"];
        args.extend_from_slice(policy);
        let server = Server::start_exact(&args);
        assert_eq!(server.addr.port(), port);
        let mut c = Client::new(&server);
        assert_eq!(c.exchange(&get("/recorded")).status, 200);
        assert!(server.stop().status.success());
    }
    // And so is another listen port.
    let server = Server::start(&["-S", file.arg()]);
    assert_ne!(server.addr.port(), port);
    assert!(server.stop().status.success());
}

#[test]
fn a_request_that_comes_back_through_us_gets_508_and_is_not_forwarded_again() {
    let path = fixture("demo.flows");
    let server = Server::start(&["-S", path.to_str().unwrap(), "--mode", "regular"]);
    let addr = server.addr;
    let mut c = Client::new(&server);
    // Regular mode sends an absolute-form request to its own destination: ourselves.
    let r = c.exchange(
        format!("GET http://{addr}/unmatched HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 508);
    let body = String::from_utf8(r.body.clone()).unwrap();
    assert!(
        body.starts_with("request loop: ") && body.ends_with('\n') && body.lines().count() == 1,
        "{body:?}"
    );
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    // The connection is still usable.
    assert_eq!(c.exchange(&get("/hello")).status, 200);
    let stopped = server.stop();
    let out = output(&stopped);
    assert!(
        out.contains("replayed 1, forwarded 1,") && out.contains("rejected 1,"),
        "one forward, one 508 and no more: {out}"
    );
}

#[test]
fn forwarded_requests_carry_our_via_entry_after_the_clients() {
    let upstream = Upstream::start(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nup", false);
    let file = FlowFile::new(&[FlowSpec::get("/recorded", 200, b"recorded")]);
    let mode = format!("reverse:http://{}", upstream.addr);
    let server = Server::start(&["-S", file.arg(), "--mode", &mode]);
    let mut c = Client::new(&server);
    let r = c.exchange(b"GET /elsewhere HTTP/1.0\r\nHost: a\r\nVia: 1.1 fred\r\n\r\n");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"up"[..]));
    let seen = upstream
        .requests
        .recv_timeout(crate::support::PATIENCE)
        .unwrap();
    let seen = String::from_utf8_lossy(&seen).into_owned();
    let fred = seen
        .find("Via: 1.1 fred\r\n")
        .expect("the client's Via is kept");
    let ours = seen
        .find("Via: 1.0 uringreplay-")
        .expect("our entry is added");
    assert!(fred < ours, "{seen}");
}

#[test]
fn a_second_copy_on_a_port_in_use_is_refused_unless_reuse_port() {
    let path = fixture("demo.flows");
    let demo = path.to_str().unwrap();
    let first = Server::start(&["-S", demo, "-k"]);
    let port = first.addr.port().to_string();
    let stopped = run_to_exit(&["-S", demo, "-k", "-p", &port, "--threads", "2"], |_| {});
    assert_eq!(stopped.status.code(), Some(1), "{}", stopped.stderr);
    assert!(
        stopped
            .stderr
            .contains(&format!("port {port} is already in use"))
            && stopped.stderr.contains("--reuse-port"),
        "{}",
        stopped.stderr
    );
    assert!(stopped.stdout.is_empty(), "{}", stopped.stdout);
    // The first copy still answers alone.
    assert_eq!(Client::new(&first).exchange(&get("/hello")).status, 200);
    let second = Server::start_exact(&[
        "-S",
        demo,
        "-k",
        "--reuse-port",
        "-p",
        &port,
        "--threads",
        "2",
    ]);
    assert_eq!(second.addr, first.addr);
    assert!(second.stop().status.success());
    assert!(first.stop().status.success());
}

/// `/close` recorded as HTTP/1.1 with `Connection: close`, `/old` as HTTP/1.0 without keep-alive.
fn closing_recording() -> FlowFile {
    let mut close = FlowSpec::get("/close", 200, b"body");
    let response = close.response.as_mut().unwrap();
    response
        .headers
        .push((b"Connection".to_vec(), b"close".to_vec()));
    let mut old = FlowSpec::get("/old", 200, b"body");
    old.response.as_mut().unwrap().http_version = b"HTTP/1.0".to_vec();
    FlowFile::new(&[close, old])
}

#[test]
fn keep_alive_keeps_connections_that_the_recording_closes() {
    let file = closing_recording();
    // Without the flag, as mitmdump does: the recorded close closes.
    let server = Server::start(&["-S", file.arg(), "--reuse"]);
    for path in ["/close", "/old"] {
        let mut c = Client::new(&server);
        let r = c.exchange(&get(path));
        assert_eq!(r.status, 200);
        assert_eq!(c.read_to_close(), b"", "{path}: the connection closes");
    }
    drop(server);
    let server = Server::start(&["-S", file.arg(), "--reuse", "--keep-alive"]);
    let mut c = Client::new(&server);
    for path in ["/close", "/close", "/old", "/old"] {
        let r = c.exchange(&get(path));
        assert_eq!((r.status, r.body.as_slice()), (200, &b"body"[..]), "{path}");
        let expected = (path == "/old").then_some("keep-alive");
        assert_eq!(r.header("connection"), expected, "{path}: {:?}", r.headers);
    }
    // An HTTP/1.0 client asking for keep-alive (ab -k) is told so, and the connection stays.
    let ab = b"GET /close HTTP/1.0\r\nHost: a\r\nConnection: Keep-Alive\r\n\r\n";
    for _ in 0..2 {
        let r = c.exchange(ab);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("connection"),
            Some("keep-alive"),
            "{:?}",
            r.headers
        );
    }
    // The client's own close still closes.
    let r = c.exchange(b"GET /close HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(c.read_to_close(), b"");
}
