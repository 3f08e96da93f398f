//! Start-up, logging and stopping.

use uringreplay::flowfile::writer::FlowSpec;

use crate::support::{fixture, get, Client, FlowFile, Server, Upstream, PATIENCE};

#[test]
fn sigterm_finishes_a_request_in_flight_then_reports_and_exits_0() {
    let upstream = Upstream::start(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate", true);
    let path = fixture("demo.flows");
    let mode = format!("reverse:http://{}", upstream.addr);
    let server = Server::start(&[
        "-S",
        path.to_str().unwrap(),
        "--mode",
        &mode,
        "--ignore-port",
    ]);
    let mut idle = Client::new(&server);
    assert_eq!(idle.exchange(&get("/hello")).status, 200);
    let mut busy = Client::new(&server);
    busy.send(&get("/slow"));
    upstream
        .requests
        .recv_timeout(PATIENCE)
        .expect("the request reached the upstream");
    server.terminate();
    server.wait_stderr("stopping:");
    upstream.release();
    let r = busy.response(false);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"late"[..]));
    assert_eq!(idle.read_to_close(), b"", "idle connections are closed");
    let stopped = server.wait_exit();
    assert!(
        stopped.status.success(),
        "{:?} {}",
        stopped.status,
        stopped.stderr
    );
    assert!(
        stopped
            .stderr
            .contains("replayed 1, forwarded 1, killed 0, status-answered 0, unmatched 1")
            && stopped.stderr.contains("flows left 11"),
        "{}",
        stopped.stderr
    );
}

#[test]
fn verbose_prints_one_mitmdump_style_line_per_request() {
    let path = fixture("demo.flows");
    let server = Server::start(&["-S", path.to_str().unwrap(), "-v", "--extra", "404"]);
    let mut c = Client::new(&server);
    c.exchange(&get("/hello"));
    c.exchange(&get("/nope"));
    server.wait_stdout("GET http://127.0.0.1:29411/hello << [replay] 200");
    server.wait_stdout("GET http://127.0.0.1:29411/nope << [extra] 404");
}

#[test]
fn exit_when_done_stops_once_every_flow_is_replayed() {
    let file = FlowFile::new(&[FlowSpec::get("/only", 200, b"once")]);
    let server = Server::start(&["-S", file.arg(), "--exit-when-done"]);
    let mut c = Client::new(&server);
    assert_eq!(c.exchange(&get("/only")).body, b"once");
    let stopped = server.wait_exit();
    assert!(stopped.status.success());
    assert!(stopped.stderr.contains("replayed 1") && stopped.stderr.contains("flows left 0"));
}

#[test]
fn a_mitmdump_command_line_runs_unchanged() {
    let path = fixture("demo.flows");
    let server = Server::start(&[
        "-S",
        path.to_str().unwrap(),
        "--set",
        "server_replay_extra=404",
        "--server-replay-reuse",
        "--set",
        "keepserving=true",
        "--mode",
        "reverse:http://127.0.0.1:29411",
    ]);
    let mut c = Client::new(&server);
    assert_eq!(
        c.exchange(&get("/counter")).body,
        b"counter=1 path=/counter\n"
    );
    assert_eq!(
        c.exchange(&get("/counter")).body,
        b"counter=1 path=/counter\n"
    );
    assert_eq!(c.exchange(&get("/other")).status, 404);
}

#[test]
fn replaying_on_a_keep_alive_connection_allocates_nothing_per_request() {
    let path = fixture("demo.flows");
    let server = Server::start(&["-S", path.to_str().unwrap(), "--reuse", "-q"]);
    let mut c = Client::new(&server);
    let requests = 2000;
    for _ in 0..requests {
        assert_eq!(c.exchange(&get("/session-dates")).status, 200);
    }
    let stopped = server.stop();
    let allocations: u64 = stopped
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("heap allocations while serving: "))
        .and_then(|rest| rest.split(' ').next())
        .expect("the allocation line")
        .parse()
        .unwrap();
    assert!(
        allocations < 100,
        "{allocations} allocations for {requests} requests on one connection"
    );
}
