//! Start-up, logging and stopping.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use uringreplay::flowfile::writer::FlowSpec;

use crate::support::{
    fixture, get, limit_descriptors, run_to_exit, Client, FlowFile, Server, Upstream, PATIENCE,
};

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

/// Serves 2000 replays on one keep-alive connection with `extra` options; the heap allocations
/// the server counted while serving.
fn allocations_for_2000_replays(extra: &[&str]) -> (u64, crate::support::Stopped) {
    let path = fixture("demo.flows");
    let mut args = vec!["-S", path.to_str().unwrap(), "--reuse", "-q"];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    let mut c = Client::new(&server);
    for _ in 0..2000 {
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
    (allocations, stopped)
}

#[test]
fn replaying_on_a_keep_alive_connection_allocates_nothing_per_request() {
    let (allocations, _) = allocations_for_2000_replays(&[]);
    assert!(
        allocations < 100,
        "{allocations} allocations for 2000 requests on one connection"
    );
}

#[test]
fn logging_every_replay_as_json_allocates_nothing_per_request() {
    let log = crate::support::temp_path("alloc.jsonl");
    let (allocations, stopped) =
        allocations_for_2000_replays(&["--log-json", log.to_str().unwrap()]);
    // The batches: at most four buffers per worker, made on first need, then recycled.
    assert!(
        allocations < 100,
        "{allocations} allocations for 2000 logged requests on one connection"
    );
    assert!(
        stopped.stderr.contains("2000 lines written"),
        "{}",
        stopped.stderr
    );
    let _ = std::fs::remove_file(&log);
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn where_only_io_uring_enter_is_forbidden_auto_serves_on_epoll_and_uring_exits_1() {
    use crate::support::forbid_io_uring_enter;
    let path = fixture("demo.flows");
    let server = Server::start_with(
        &["-S", path.to_str().unwrap(), "--io", "auto"],
        forbid_io_uring_enter,
    );
    let stderr = server.wait_stderr(" on epoll;");
    assert!(
        stderr
            .contains("falling back to epoll: io_uring is not usable here (io_uring_enter failed"),
        "{stderr}"
    );
    let mut c = Client::new(&server);
    assert_eq!(c.exchange(&get("/hello")).body, b"hello world\n");
    let stopped = server.stop();
    assert!(stopped.status.success(), "{}", stopped.stderr);

    let failed = run_to_exit(
        &["-S", path.to_str().unwrap(), "--io", "uring", "-p", "0"],
        forbid_io_uring_enter,
    );
    assert_eq!(failed.status.code(), Some(1), "{}", failed.stderr);
    assert!(
        failed
            .stderr
            .contains("error: io_uring is not usable here (io_uring_enter failed")
            && failed.stderr.contains("run with --io epoll or --io auto"),
        "{}",
        failed.stderr
    );
    assert!(!failed.stdout.contains("listening on"), "{}", failed.stdout);
}

/// How one keep-alive client's loop ended.
enum Ending {
    /// An answer said `Connection: close` and the server then closed cleanly.
    ClosedAfterAnswer,
    /// The server closed cleanly between two answers.
    CleanEof,
}

/// Reads one response to `GET /hello` (Content-Length framed); `Ok(None)`: a clean EOF before
/// its first byte; `Ok(Some(close))`: whole, and whether it says `Connection: close`.
fn read_answer(s: &mut TcpStream) -> Result<Option<bool>, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..p]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| format!("no Content-Length in {head:?}"))?;
            if buf.len() >= p + 4 + len {
                if buf.len() > p + 4 + len {
                    return Err("bytes after the answer".into());
                }
                return Ok(Some(head.contains("\r\nconnection: close")));
            }
        }
        match s.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Ok(None),
            Ok(0) => return Err(format!("answer cut: {:?}", String::from_utf8_lossy(&buf))),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e} ({:?})", e.kind())),
        }
    }
}

/// Loops request/answer on one keep-alive connection until the server closes it.
fn keep_asking(
    server_addr: std::net::SocketAddr,
    warm: std::sync::mpsc::Sender<()>,
) -> Result<Ending, String> {
    let mut s = TcpStream::connect(server_addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_write_timeout(Some(PATIENCE)).unwrap();
    let request = get("/hello");
    for round in 0..1_000_000 {
        match s.write_all(&request) {
            Ok(()) => {}
            // Our FIN-then-linger never resets; a send can only fail after a reset.
            Err(e) => return Err(format!("send in round {round}: {e}")),
        }
        match read_answer(&mut s)? {
            None => return Ok(Ending::CleanEof),
            Some(true) => {
                let mut rest = [0u8; 64];
                return match s.read(&mut rest) {
                    Ok(0) => Ok(Ending::ClosedAfterAnswer),
                    Ok(n) => Err(format!("{n} bytes after a closing answer")),
                    Err(e) => Err(format!("after a closing answer: {e} ({:?})", e.kind())),
                };
            }
            Some(false) if round == 2 => {
                let _ = warm.send(());
            }
            Some(false) => {}
        }
    }
    Err("the server never stopped".into())
}

/// Connects until every listener is closed: each worker drops its listener and marks itself
/// stopping in one step, so from then on every worker is stopping.
fn wait_until_no_listener(server: &Server) {
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(server.addr).is_ok() {
        assert!(Instant::now() < deadline, "the listeners never closed");
    }
}

#[test]
fn a_pipelined_request_the_stop_finds_waiting_is_answered_with_connection_close_then_eof() {
    // 1 MiB answers, more than the socket buffers hold: the server is still writing an early
    // answer when the stop comes, with later requests already received.
    let body: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let file = FlowFile::new(&[FlowSpec::get("/big", 200, &body)]);
    for io in ["uring", "epoll"] {
        let server = Server::start(&["-S", file.arg(), "--reuse", "-q", "--io", io]);
        const SENT: usize = 64;
        let mut c = Client::new(&server);
        c.send(&get("/big").repeat(SENT));
        let mut first = [0u8; 1];
        c.stream
            .read_exact(&mut first)
            .expect("the first answer starts");
        c.pending = first.to_vec();
        server.terminate();
        wait_until_no_listener(&server);
        let mut keep_alive = 0;
        loop {
            let r = c.response(false);
            assert_eq!((r.status, r.body.len()), (200, body.len()), "{io}");
            if r.header("connection") == Some("close") {
                break;
            }
            keep_alive += 1;
            assert!(keep_alive < SENT, "{io}: every answer kept the connection");
        }
        assert_eq!(
            c.read_to_close(),
            b"",
            "{io}: nothing after the closing answer"
        );
        assert!(
            keep_alive + 1 < SENT,
            "{io}: the stop came after every answer"
        );
        let stopped = server.wait_exit();
        assert!(stopped.status.success(), "{io}: {}", stopped.stderr);
    }
}

#[test]
fn sigterm_while_keep_alive_clients_loop_gives_each_an_answer_or_a_clean_eof() {
    for io in ["uring", "epoll"] {
        let path = fixture("demo.flows");
        let server = Server::start(&["-S", path.to_str().unwrap(), "--reuse", "-q", "--io", io]);
        const CLIENTS: usize = 48;
        let (warm, warmed) = std::sync::mpsc::channel();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (addr, warm) = (server.addr, warm.clone());
                std::thread::spawn(move || keep_asking(addr, warm))
            })
            .collect();
        // Stop once every client has been answered a few times and is still looping.
        for _ in 0..CLIENTS {
            warmed
                .recv_timeout(PATIENCE)
                .expect("every client gets answers before the stop");
        }
        server.terminate();
        let endings: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        let failures: Vec<_> = endings.iter().filter_map(|e| e.as_ref().err()).collect();
        assert!(failures.is_empty(), "{io}: {failures:?}");
        let stopped = server.wait_exit();
        assert!(stopped.status.success(), "{io}: {}", stopped.stderr);
        assert!(
            !stopped.stderr.contains("exiting:"),
            "{io}: {}",
            stopped.stderr
        );
    }
}

/// A server forwarding to an upstream that holds every request unanswered, with one client
/// waiting on such a forward; returns both (the upstream must outlive the test).
fn busy_server(extra: &[&str]) -> (Server, Upstream, Client) {
    let upstream = Upstream::start(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate", true);
    let path = fixture("demo.flows");
    let mode = format!("reverse:http://{}", upstream.addr);
    let mut args = vec!["-S", path.to_str().unwrap(), "--mode", &mode, "-q"];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    let mut busy = Client::new(&server);
    busy.send(&get("/never-answered"));
    upstream
        .requests
        .recv_timeout(PATIENCE)
        .expect("the request reached the upstream");
    (server, upstream, busy)
}

#[test]
fn a_connection_kept_busy_does_not_keep_the_process_past_the_grace_period() {
    let (server, _upstream, mut busy) = busy_server(&["--shutdown-timeout", "1"]);
    let asked = Instant::now();
    server.terminate();
    let stopped = server.wait_exit();
    let took = asked.elapsed();
    assert!(
        stopped.status.success(),
        "{:?} {}",
        stopped.status,
        stopped.stderr
    );
    assert!(
        took < Duration::from_secs(4),
        "exited {took:?} after SIGTERM with a 1 s grace period"
    );
    assert!(
        stopped.stderr.contains(
            "exiting: the 1 s grace period (--shutdown-timeout) is over; 1 connection still \
             open is closed without waiting for its answer"
        ),
        "{}",
        stopped.stderr
    );
    assert!(
        stopped.stderr.contains("forwarded 1"),
        "the final report: {}",
        stopped.stderr
    );
    assert!(
        busy.read_to_close().is_empty(),
        "the cut connection gets no answer"
    );
}

#[test]
fn a_second_sigterm_exits_at_once() {
    let (server, _upstream, _busy) = busy_server(&[]);
    server.terminate();
    server.wait_stderr("stopping:");
    let asked = Instant::now();
    server.terminate();
    let stopped = server.wait_exit();
    let took = asked.elapsed();
    assert!(
        stopped.status.success(),
        "{:?} {}",
        stopped.status,
        stopped.stderr
    );
    assert!(
        took < Duration::from_secs(3),
        "exited {took:?} after the second SIGTERM (grace period 10 s)"
    );
    assert!(
        stopped
            .stderr
            .contains("exiting: a second stop signal came; 1 connection still open"),
        "{}",
        stopped.stderr
    );
    assert!(stopped.stderr.contains("forwarded 1"), "{}", stopped.stderr);
}

#[test]
fn out_of_descriptors_warns_once_a_second_naming_ulimit_then_serves_again() {
    const WARNING: &str = "warning: out of file descriptors";
    let path = fixture("demo.flows");
    // One worker: with two, the first could take every descriptor accepting while the second
    // still builds its ring (which then fails, and it falls back to another driver).
    let server = Server::start_exact_with(
        &[
            "-S",
            path.to_str().unwrap(),
            "--reuse",
            "-q",
            "-p",
            "0",
            "--threads",
            "1",
        ],
        limit_descriptors(40),
    );
    // More connections than descriptors: the surplus waits in the listen backlog.
    let idle: Vec<_> = (0..60).map(|_| server.connect()).collect();
    let first = server.wait_stderr(WARNING);
    let first_at = Instant::now();
    assert!(
        first.contains("raise the limit with `ulimit -n` (now 40)"),
        "{first}"
    );
    let second = server.wait_stderr_times(WARNING, 2);
    let apart = first_at.elapsed();
    assert!(
        apart >= Duration::from_millis(800),
        "two warnings {apart:?} apart"
    );
    // Without the rate limit the worker retries accept every 5 ms.
    assert!(second.matches(WARNING).count() <= 3, "{second}");
    drop(idle);
    let mut c = Client::new(&server);
    assert_eq!(c.exchange(&get("/hello")).body, b"hello world\n");
    let stopped = server.stop();
    assert!(stopped.status.success(), "{}", stopped.stderr);
}
