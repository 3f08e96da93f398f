//! What the binary says: refused non-regular recordings, compressed recordings, "no flows",
//! progress while loading, the mode choice, the start-up heap figure, the periodic line, the
//! final report and the `-v` line of a CONNECT (issue 11 items 6 and 7, issue 10's file rule).

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use uringreplay::flowfile::writer::FlowSpec;

use crate::support::{closed_port, fixture, get, run_to_exit, temp_path, Client, FlowFile, Server};

/// Runs `uringreplay -S PATH -p 0` and `uringreplay inspect PATH`: both must exit 2 at once
/// with `sentence` on stderr and nothing on stdout.
fn both_refuse(path: &Path, sentence: &str) {
    let path = path.to_str().unwrap();
    for args in [vec!["-S", path, "-p", "0"], vec!["inspect", path]] {
        let out = run_to_exit(&args, |_| {});
        let err = out.stderr.clone();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(sentence), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    }
}

#[test]
fn a_fifo_is_refused_at_once_by_serve_and_inspect() {
    let fifo = FlowFile(temp_path("pipe.flows"));
    let c = CString::new(fifo.0.as_os_str().as_bytes()).unwrap();
    // SAFETY: mkfifo(3) with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    // No writer ever opens the FIFO: a blocking open would never return.
    both_refuse(
        &fifo.0,
        &format!(
            "{} is a FIFO (named pipe), not a regular file",
            fifo.0.display()
        ),
    );
}

#[test]
fn dev_zero_and_a_unix_socket_are_refused_naming_what_they_are() {
    both_refuse(
        Path::new("/dev/zero"),
        "error: /dev/zero is a character device, not a regular file",
    );
    let socket = FlowFile(temp_path("sock.flows"));
    let _listener = std::os::unix::net::UnixListener::bind(&socket.0).unwrap();
    both_refuse(
        &socket.0,
        &format!(
            "{} is a Unix socket, not a regular file",
            socket.0.display()
        ),
    );
}

#[test]
fn a_directory_is_refused_with_the_glob_to_use() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    both_refuse(
        dir.path(),
        &format!("{d} is a directory, not a flow file: name the files in it, e.g. -S {d}/*.flows"),
    );
}

#[test]
fn dev_null_and_an_empty_file_load_as_empty_with_a_no_flows_warning() {
    let out = run_to_exit(&["inspect", "/dev/null"], |_| {});
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("warning: /dev/null: no flows (the file is empty)"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains("0 HTTP flows"));
    let empty = FlowFile::new(&[]);
    let server = Server::start(&["-S", empty.arg(), "--extra", "404"]);
    server.wait_stderr(&format!(
        "warning: {}: no flows (the file is empty)",
        empty.arg()
    ));
    assert_eq!(Client::new(&server).exchange(&get("/x")).status, 404);
}

/// demo.flows compressed with each format this reads, written with the formats' own crates.
fn compressed_demos() -> Vec<(&'static str, FlowFile)> {
    let plain = std::fs::read(fixture("demo.flows")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).unwrap();
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    bz.write_all(&plain).unwrap();
    let mut xz = Vec::new();
    lzma_rs::xz_compress(&mut plain.as_slice(), &mut xz).unwrap();
    let zst = ruzstd::encoding::compress_to_vec(
        plain.as_slice(),
        ruzstd::encoding::CompressionLevel::Fastest,
    );
    [
        ("gzip", "gz", gz.finish().unwrap()),
        ("bzip2", "bz2", bz.finish().unwrap()),
        ("xz", "xz", xz),
        ("zstd", "zst", zst),
    ]
    .into_iter()
    .map(|(name, ext, bytes)| {
        let file = FlowFile(temp_path(&format!("demo.flows.{ext}")));
        std::fs::write(&file.0, bytes).unwrap();
        (name, file)
    })
    .collect()
}

#[test]
fn compressed_copies_inspect_and_replay_like_the_plain_file() {
    let plain = fixture("demo.flows");
    let listing = |path: &str| {
        let out = run_to_exit(&["inspect", "--json", path], |_| {});
        assert!(out.status.success(), "{path}: {}", out.stderr);
        // The flow lines (the summary line holds load times).
        let stdout = out.stdout.clone();
        let flows: Vec<String> = stdout
            .lines()
            .filter(|l| !l.starts_with("{\"summary\""))
            .map(str::to_string)
            .collect();
        (flows, out.stderr.clone())
    };
    let (expected, _) = listing(plain.to_str().unwrap());
    assert_eq!(expected.len(), 12);
    for (name, file) in compressed_demos() {
        let (flows, err) = listing(file.arg());
        assert_eq!(flows, expected, "{name}");
        assert!(
            err.contains(&format!("{}: {name}-compressed (", file.arg()))
                && err.contains("decompressing it into memory once"),
            "{name}: {err}"
        );
        let server = Server::start(&["-S", file.arg()]);
        let mut c = Client::new(&server);
        assert_eq!(c.exchange(&get("/hello")).body, b"hello world\n", "{name}");
        let r = c.exchange(&get("/counter"));
        assert_eq!(r.body, b"counter=1 path=/counter\n", "{name}");
        let stopped = server.stop();
        assert!(
            stopped.stderr.contains("replayed 2,"),
            "{name}: {}",
            stopped.stderr
        );
    }
}

#[test]
fn a_damaged_compressed_file_is_refused_naming_its_format() {
    let demos = compressed_demos();
    let (_, gz) = &demos[0];
    let bytes = std::fs::read(&gz.0).unwrap();
    let cut = FlowFile(temp_path("cut.flows.gz"));
    std::fs::write(&cut.0, &bytes[..bytes.len() / 2]).unwrap();
    let out = run_to_exit(&["inspect", cut.arg()], |_| {});
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr.contains(&format!(
            "error: {}: this gzip-compressed file cannot be read: the compressed data is damaged \
             or cut off",
            cut.arg()
        )),
        "{}",
        out.stderr
    );
}

#[test]
fn loading_reports_progress_on_stderr_even_without_a_terminal() {
    let path = fixture("demo.flows");
    let path = path.to_str().unwrap();
    // A one-second threshold brought to zero: this small recording's load takes long enough.
    let out = run_to_exit(&["inspect", "--summary", path], |c| {
        c.env("URINGREPLAY_PROGRESS_AFTER_MS", "0");
    });
    assert!(
        out.stderr
            .contains(&format!("loading {path}: 23.8 kB of 23.8 kB, 12 flows")),
        "{}",
        out.stderr
    );
    // A load well under a second prints none.
    let out = run_to_exit(&["inspect", "--summary", path], |_| {});
    assert!(!out.stderr.contains("loading "), "{}", out.stderr);
}

#[test]
fn mixed_origins_say_why_regular_mode_was_chosen() {
    let mut other = FlowSpec::get("/b", 200, b"b");
    other.host = "127.0.0.2".to_string();
    other.port = 8081;
    let file = FlowFile::new(&[FlowSpec::get("/a", 200, b"a"), other]);
    let server = Server::start(&["-S", file.arg()]);
    server.wait_stderr(
        "no --mode given and the recorded flows went to several origins \
         (http://127.0.0.1:8080, http://127.0.0.2:8081): replaying in regular mode, no single \
         reverse target fits them all; unmatched requests go to their own Host",
    );
}

#[test]
fn start_up_prints_one_heap_figure() {
    let path = fixture("demo.flows");
    let server = Server::start(&["-S", path.to_str().unwrap()]);
    let err = server.wait_stderr("serving 12 flows");
    let heap_lines: Vec<&str> = err.lines().filter(|l| l.contains("per flow")).collect();
    assert_eq!(heap_lines.len(), 1, "{err}");
    assert!(heap_lines[0].starts_with("loaded 12 flows in "), "{err}");
}

#[test]
fn the_periodic_line_appears_while_idle() {
    let path = fixture("demo.flows");
    let server = Server::start(&["-S", path.to_str().unwrap()]);
    // Printed every 5 s (within the patience), with no request at all.
    server.wait_stderr(
        "serving: 0 req/s; 0 replayed, 0 forwarded (0 upstream errors), 0 killed, \
         0 status-answered, 0 rejected; 0 open connections; 12 flows left",
    );
}

#[test]
fn the_periodic_line_counts_forwards_upstream_errors_and_open_connections() {
    let path = fixture("demo.flows");
    let mode = format!("reverse:http://127.0.0.1:{}", closed_port());
    let server = Server::start(&[
        "-S",
        path.to_str().unwrap(),
        "--mode",
        &mode,
        "--ignore-port",
    ]);
    let mut kept = Client::new(&server);
    assert_eq!(kept.exchange(&get("/hello")).status, 200);
    assert_eq!(kept.exchange(&get("/not-recorded")).status, 502);
    // A second connection that is closed again: accepted 2, open 1.
    let mut gone = Client::new(&server);
    assert_eq!(
        gone.exchange(b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .status,
        502
    );
    assert_eq!(gone.read_to_close(), b"");
    let err = server.wait_stderr("; 1 open connections;");
    let line = err
        .lines()
        .find(|l| l.starts_with("serving: ") && l.contains("; 1 open connections;"))
        .unwrap();
    assert!(
        line.contains("1 replayed, 2 forwarded (2 upstream errors), 0 killed"),
        "{line}"
    );
    drop(kept);
}

#[test]
fn the_final_report_goes_to_stderr_and_stdout_holds_only_v_lines() {
    let path = fixture("demo.flows");
    let server = Server::start(&["-S", path.to_str().unwrap(), "-v"]);
    let mut c = Client::new(&server);
    assert_eq!(c.exchange(&get("/hello")).status, 200);
    server.wait_stdout("<< [replay] 200");
    let stopped = server.stop();
    assert!(stopped.status.success());
    assert!(
        stopped.stderr.contains(
            "replayed 1, forwarded 0, killed 0, status-answered 0, unmatched 0, rejected 0, \
             upstream errors 0, flows left 11"
        ),
        "{}",
        stopped.stderr
    );
    let lines: Vec<&str> = stopped.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", stopped.stdout);
    assert!(
        lines[0].ends_with(": GET http://127.0.0.1:29411/hello << [replay] 200"),
        "{}",
        stopped.stdout
    );
    let allocations = stopped
        .stderr
        .lines()
        .find(|l| l.starts_with("heap allocations while serving: "))
        .expect("the allocation line");
    assert!(
        allocations.ends_with(
            "(replayed requests make none, two over TLS; connections, forwarding and -v lines do)"
        ),
        "{allocations}"
    );
}

#[test]
fn a_connect_v_line_shows_host_and_port() {
    let path = fixture("demo.flows");
    let server = Server::start(&["-S", path.to_str().unwrap(), "-v"]);
    let mut c = Client::new(&server);
    let r = c.exchange(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    assert_eq!(r.status, 501);
    let out = server.wait_stdout(": CONNECT example.com:443 << [refused] 501 not forwarded");
    assert!(!out.contains("http://"), "{out}");
    // Refused before any upstream: counted as rejected, not as forwarded.
    let stopped = server.stop();
    assert!(
        stopped
            .stderr
            .contains("forwarded 0, killed 0, status-answered 0, unmatched 0, rejected 1,"),
        "{}",
        stopped.stderr
    );
}
