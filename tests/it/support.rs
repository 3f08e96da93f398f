//! Test support: spawn the real binary on 127.0.0.1:0, raw-byte HTTP/1.1 client helpers, recordings
//! written with the flow writer, and a scripted loopback upstream.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use uringreplay::flowfile::writer::{write_flow, FlowSpec};

thread_local! {
    /// The `--io` driver servers started on this test thread use, when a test asks for one.
    static IO_DRIVER: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

/// Runs `test` with every server it starts on the `io` driver (`--io uring|epoll`).
pub fn with_driver(io: &'static str, test: fn()) {
    IO_DRIVER.with(|d| d.set(Some(io)));
    test();
}

/// How long any single wait in a test may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A fresh path in the temporary directory (nothing is created there), for `name`.
pub fn temp_path(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "uringreplay-it-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// The `HOME` every spawned server gets: a directory of this test process whose `.mitmproxy` holds
/// the fixture CA, so no test writes a CA into the real home (or races another to create one).
pub fn test_home() -> &'static Path {
    static HOME: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    HOME.get_or_init(|| {
        let home = temp_path("home");
        let confdir = home.join(".mitmproxy");
        std::fs::create_dir_all(&confdir).expect("create the test home");
        for name in ["mitmproxy-ca.pem", "mitmproxy-ca-cert.pem"] {
            std::fs::copy(fixture("mitmproxy-confdir").join(name), confdir.join(name))
                .expect("copy the fixture CA");
        }
        home
    })
}

/// A path to a fixture file.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A flow file written with the writer, deleted on drop.
pub struct FlowFile(pub PathBuf);

impl FlowFile {
    /// Writes `flows` to a fresh temporary file.
    pub fn new(flows: &[FlowSpec]) -> FlowFile {
        let path = temp_path("recording.flows");
        let mut bytes = Vec::new();
        for f in flows {
            write_flow(&mut bytes, f);
        }
        std::fs::write(&path, bytes).expect("write a temporary flow file");
        FlowFile(path)
    }

    /// The path as a string argument.
    pub fn arg(&self) -> &str {
        self.0.to_str().expect("temp paths are UTF-8")
    }
}

impl Drop for FlowFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Text collected from a child's stream, with a condition variable to wait on.
#[derive(Default)]
struct Collected {
    text: Mutex<String>,
    changed: Condvar,
}

fn collect(stream: impl Read + Send + 'static, into: Arc<Collected>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            into.text.lock().unwrap().push_str(&line);
            into.changed.notify_all();
            line.clear();
        }
    })
}

/// The running binary.
pub struct Server {
    child: Option<Child>,
    collectors: Vec<JoinHandle<()>>,
    /// The address it listens on.
    pub addr: SocketAddr,
    stdout: Arc<Collected>,
    stderr: Arc<Collected>,
}

/// What a stopped server left behind.
pub struct Stopped {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything on stdout (after the start-up line, for a server that started).
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

impl Server {
    /// Starts `uringreplay ARGS -p 0 --threads 2` and reads the bound address from its first line.
    pub fn start(args: &[&str]) -> Server {
        Server::start_with(args, |_| {})
    }

    /// Like [`Server::start`], letting `configure` adjust the command first.
    pub fn start_with(args: &[&str], configure: impl FnOnce(&mut Command)) -> Server {
        let mut all = args.to_vec();
        all.extend_from_slice(&["-p", "0", "--threads", "2"]);
        Server::start_exact_with(&all, configure)
    }

    /// Starts `uringreplay ARGS` with exactly these arguments (the listen port and threads too).
    pub fn start_exact(args: &[&str]) -> Server {
        Server::start_exact_with(args, |_| {})
    }

    /// Starts `uringreplay ARGS --threads 2` without `-p 0`: for tests of the listen options.
    pub fn start_without_port(args: &[&str]) -> Server {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--threads", "2"]);
        Server::start_exact_with(&all, |_| {})
    }

    /// [`Server::start_exact`], letting `configure` adjust the command first.
    pub fn start_exact_with(args: &[&str], configure: impl FnOnce(&mut Command)) -> Server {
        let mut child = command(args, configure)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn uringreplay");
        let stderr = Arc::new(Collected::default());
        let mut collectors = vec![collect(
            child.stderr.take().expect("piped stderr"),
            stderr.clone(),
        )];
        let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut first = String::new();
        out.read_line(&mut first).expect("read the start-up line");
        let Some(addr) = first.trim().strip_prefix("listening on http://") else {
            let _ = child.wait();
            panic!(
                "unexpected start-up line {first:?}; stderr: {}",
                stderr.text.lock().unwrap()
            );
        };
        let addr = addr.parse().expect("a socket address");
        let stdout = Arc::new(Collected::default());
        collectors.push(collect(out, stdout.clone()));
        Server {
            child: Some(child),
            collectors,
            addr,
            stdout,
            stderr,
        }
    }

    /// A new client connection with read/write timeouts.
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect to the server");
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s.set_write_timeout(Some(PATIENCE)).unwrap();
        s
    }

    /// Waits until stderr contains `needle`; returns all of stderr.
    pub fn wait_stderr(&self, needle: &str) -> String {
        wait_for(&self.stderr, needle)
    }

    /// Waits until stderr contains `needle` at least `times` times; returns all of stderr.
    pub fn wait_stderr_times(&self, needle: &str, times: usize) -> String {
        wait_until(&self.stderr, needle, |text| {
            text.matches(needle).count() >= times
        })
    }

    /// Waits until stdout (after the start-up line) contains `needle`.
    pub fn wait_stdout(&self, needle: &str) -> String {
        wait_for(&self.stdout, needle)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        // SAFETY: kill(2) with the pid of our own child process.
        unsafe {
            libc::kill(self.pid(), libc::SIGTERM);
        }
    }

    /// Sends SIGHUP (a reload of the recording).
    pub fn hangup(&self) {
        // SAFETY: kill(2) with the pid of our own child process.
        unsafe {
            libc::kill(self.pid(), libc::SIGHUP);
        }
    }

    /// The `--admin` address, from its start-up line on stderr (`admin on http://ADDR (…)`).
    pub fn admin_addr(&self) -> SocketAddr {
        let text = self.wait_stderr("admin on http://");
        let rest = text
            .split("admin on http://")
            .nth(1)
            .expect("the admin line");
        let addr = rest.split(' ').next().expect("an address");
        addr.parse().expect("a socket address")
    }

    /// One admin request, `METHOD path` with an optional body, on a connection of its own.
    pub fn admin(&self, method: &str, path: &str) -> Response {
        let stream = TcpStream::connect(self.admin_addr()).expect("connect to the admin port");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_write_timeout(Some(PATIENCE)).unwrap();
        let mut c = Client {
            stream,
            pending: Vec::new(),
        };
        c.send(
            format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n")
                .as_bytes(),
        );
        let r = c.response(method == "HEAD");
        assert_eq!(
            c.read_to_close(),
            b"",
            "the admin port answers once, then closes"
        );
        r
    }

    /// The server process id.
    pub fn pid(&self) -> libc::pid_t {
        self.child.as_ref().expect("a running child").id() as libc::pid_t
    }

    /// Waits (bounded) for the process to exit on its own.
    pub fn wait_exit(mut self) -> Stopped {
        let pid = self.pid();
        let mut child = self.child.take().expect("a running child");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let Ok(status) = rx.recv_timeout(PATIENCE) else {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            panic!("the server did not exit");
        };
        let status = status.expect("wait for the server");
        // The pipes are closed now, so the collectors end.
        for c in self.collectors.drain(..) {
            let _ = c.join();
        }
        Stopped {
            status,
            stdout: self.stdout.text.lock().unwrap().clone(),
            stderr: self.stderr.text.lock().unwrap().clone(),
        }
    }

    /// SIGTERM, then wait for the exit.
    pub fn stop(self) -> Stopped {
        self.terminate();
        self.wait_exit()
    }
}

/// The binary with `args`, on this test thread's `--io` driver if one was chosen.
fn command(args: &[&str], configure: impl FnOnce(&mut Command)) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_uringreplay"));
    command.env("HOME", test_home());
    configure(&mut command);
    if let Some(io) = IO_DRIVER.with(std::cell::Cell::get) {
        if !args.contains(&"--io") {
            command.args(["--io", io]);
        }
    }
    command.args(args);
    command
}

fn wait_for(c: &Collected, needle: &str) -> String {
    wait_until(c, needle, |text| text.contains(needle))
}

fn wait_until(c: &Collected, needle: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + PATIENCE;
    let mut text = c.text.lock().unwrap();
    while !done(&text) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "never saw {needle:?}; got:\n{text}");
        text = c.changed.wait_timeout(text, left).unwrap().0;
    }
    text.clone()
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One response as the client saw it.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header fields in order (name, value).
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads bytes from `s` into `buf` until `done(buf)` says how many form a message.
fn read_until(
    s: &mut impl Read,
    buf: &mut Vec<u8>,
    mut done: impl FnMut(&[u8]) -> Option<usize>,
) -> usize {
    loop {
        if let Some(n) = done(buf) {
            return n;
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = match s.read(&mut chunk) {
            // A signal to this process (a server run in-process takes some) is no answer.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            read => read.expect("read from the server"),
        };
        assert!(
            n > 0,
            "connection closed mid-response; got {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A client connection that keeps bytes read past one response for the next (over TCP, or over
/// any byte stream such as a TLS client's).
pub struct Client<S = TcpStream> {
    /// The socket.
    pub stream: S,
    /// Bytes read past the last response, the start of the next.
    pub pending: Vec<u8>,
}

impl Client<TcpStream> {
    /// Connects to `server`.
    pub fn new(server: &Server) -> Client {
        Client::over(server.connect())
    }
}

impl<S: Read + Write> Client<S> {
    /// A client over `stream`.
    pub fn over(stream: S) -> Client<S> {
        Client {
            stream,
            pending: Vec::new(),
        }
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send to the server");
    }

    /// Reads one response (`head`: it answers a HEAD request, so no body).
    pub fn response(&mut self, head: bool) -> Response {
        let mut buf = std::mem::take(&mut self.pending);
        let head_len = read_until(&mut self.stream, &mut buf, |b| {
            b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
        });
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut headers);
        r.parse(&buf[..head_len]).expect("a valid response head");
        let status = r.code.expect("a status");
        let headers: Vec<(String, String)> = r
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        let end = if head || matches!(status, 100..=199 | 204 | 304) {
            head_len
        } else if find("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().ends_with("chunked"))
        {
            read_until(&mut self.stream, &mut buf, |b| {
                body.clear();
                let mut pos = head_len;
                loop {
                    let (used, size) = match httparse::parse_chunk_size(&b[pos..]) {
                        Ok(httparse::Status::Complete(c)) => c,
                        _ => return None,
                    };
                    pos += used;
                    if size == 0 {
                        return (b.len() >= pos + 2).then_some(pos + 2);
                    }
                    let size = size as usize;
                    if b.len() < pos + size + 2 {
                        return None;
                    }
                    body.extend_from_slice(&b[pos..pos + size]);
                    pos += size + 2;
                }
            })
        } else if let Some(len) = find("content-length") {
            let len: usize = len.trim().parse().expect("numeric Content-Length");
            let end = read_until(&mut self.stream, &mut buf, |b| {
                (b.len() >= head_len + len).then_some(head_len + len)
            });
            body = buf[head_len..end].to_vec();
            end
        } else {
            self.stream.read_to_end(&mut buf).expect("read to EOF");
            body = buf[head_len..].to_vec();
            buf.len()
        };
        self.pending = buf[end..].to_vec();
        Response {
            status,
            headers,
            body,
        }
    }

    /// Sends a request and reads its response.
    pub fn exchange(&mut self, request: &[u8]) -> Response {
        self.send(request);
        let head = request.starts_with(b"HEAD ");
        self.response(head)
    }

    /// Reads everything until the server closes; panics if it does not within the patience.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let mut all = std::mem::take(&mut self.pending);
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return all,
                Ok(n) => all.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return all,
                Err(e) => panic!("expected the server to close the connection: {e}"),
            }
        }
    }
}

/// `GET path` with a Host header, keep-alive.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:29411\r\nAccept: */*\r\n\r\n").into_bytes()
}

/// A scripted loopback upstream: answers each connection's first request with `response`
/// after the test releases it; reports each request it received.
pub struct Upstream {
    /// Its address.
    pub addr: SocketAddr,
    /// Requests received (raw head and body as read).
    pub requests: std::sync::mpsc::Receiver<Vec<u8>>,
    release: std::sync::mpsc::Sender<()>,
}

impl Upstream {
    /// Starts an upstream that answers `response` at once (`gated` false) or when released.
    pub fn start(response: &'static [u8], gated: bool) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the upstream");
        let addr = listener.local_addr().unwrap();
        let (req_tx, requests) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                conn.set_read_timeout(Some(PATIENCE)).unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the head and a Content-Length body.
                while let Ok(n) = conn.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..p]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse::<usize>().unwrap_or(0));
                        if buf.len() >= p + 4 + len {
                            break;
                        }
                    }
                }
                if req_tx.send(buf).is_err() {
                    return;
                }
                if gated && release_rx.recv_timeout(PATIENCE).is_err() {
                    return;
                }
                let _ = conn.write_all(response);
            }
        });
        Upstream {
            addr,
            requests,
            release,
        }
    }

    /// Lets a gated upstream answer one request.
    pub fn release(&self) {
        let _ = self.release.send(());
    }
}

/// A loopback port with nothing listening on it.
pub fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Makes the child's io_uring_setup fail with EPERM, as Docker's default seccomp profile does.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub fn forbid_io_uring(command: &mut Command) {
    const IO_URING_SETUP: u32 = 425;
    forbid_syscall(command, IO_URING_SETUP);
}

/// Makes only the child's io_uring_enter fail with EPERM: rings can be set up but never entered
/// (a seccomp profile some sandboxes ship).
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub fn forbid_io_uring_enter(command: &mut Command) {
    const IO_URING_ENTER: u32 = 426;
    forbid_syscall(command, IO_URING_ENTER);
}

/// Installs, in the child before exec, a seccomp filter under which x86_64 system call `nr`
/// fails with EPERM and everything else is allowed.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn forbid_syscall(command: &mut Command, nr: u32) {
    use std::os::unix::process::CommandExt;
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    // Classic BPF over struct seccomp_data { int nr; u32 arch; ... }.
    const LOAD_WORD: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JUMP_IF_EQUAL: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RETURN: u16 = 0x06; // BPF_RET | BPF_K
    const ALLOW: u32 = 0x7fff_0000; // SECCOMP_RET_ALLOW
    const ERRNO: u32 = 0x0005_0000; // SECCOMP_RET_ERRNO
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let filter = [
        op(LOAD_WORD, 0, 0, 4),                     // A = arch
        op(JUMP_IF_EQUAL, 0, 2, AUDIT_ARCH_X86_64), // another arch: allow
        op(LOAD_WORD, 0, 0, 0),                     // A = nr
        op(JUMP_IF_EQUAL, 1, 0, nr),                // nr: deny
        op(RETURN, 0, 0, ALLOW),
        op(RETURN, 0, 0, ERRNO | libc::EPERM as u32),
    ];
    // SAFETY: the closure runs in the forked child before exec and only makes two prctl calls
    // (async-signal-safe) with a filter program that the closure owns for their duration.
    unsafe {
        command.pre_exec(move || {
            let program = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, 2, &program as *const libc::sock_fprog) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Lowers the child's soft limit on open descriptors (RLIMIT_NOFILE) to `n`.
pub fn limit_descriptors(n: u64) -> impl FnOnce(&mut Command) {
    use std::os::unix::process::CommandExt;
    move |command: &mut Command| {
        // SAFETY: the closure runs in the forked child before exec and only calls getrlimit and
        // setrlimit (async-signal-safe) on a struct it owns.
        unsafe {
            command.pre_exec(move || {
                let mut limit = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                limit.rlim_cur = n.min(limit.rlim_max);
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

/// Runs the binary with `args` (after `configure`) until it exits on its own (bounded).
pub fn run_to_exit(args: &[&str], configure: impl FnOnce(&mut Command)) -> Stopped {
    let mut command = Command::new(env!("CARGO_BIN_EXE_uringreplay"));
    command.env("HOME", test_home());
    configure(&mut command);
    let child = command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn uringreplay");
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(output) = rx.recv_timeout(PATIENCE) else {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
        panic!("uringreplay {args:?} did not exit");
    };
    let output = output.expect("wait for uringreplay");
    Stopped {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Loads `file` into a replayer with `options`, as the binary does (for tests that run the
/// server in this process through [`uringreplay::server::Server::start`]).
pub fn replayer(
    file: &FlowFile,
    options: &uringreplay::config::ReplayOptions,
) -> Arc<uringreplay::replay::Replayer> {
    let mut builder = uringreplay::replay::Replayer::builder(options);
    let (recording, _) = uringreplay::inspect::load(
        std::slice::from_ref(&file.0),
        uringreplay::flowfile::LoadOptions::default(),
        &mut |event| builder.observe(event),
    )
    .expect("load the test recording");
    Arc::new(builder.build(Arc::new(recording)))
}

/// Loads a file a killed writer left, as a user would: with `--skip-bad-flows`, which leaves out a
/// cut-off last flow (and only that: anything bad before it fails the test).
pub fn load_skipping_a_cut_tail(path: &std::path::Path) -> uringreplay::flowfile::Recording {
    let mut skipped = Vec::new();
    let rec = uringreplay::flowfile::Recording::open(
        &[path.to_path_buf()],
        uringreplay::flowfile::LoadOptions {
            skip_bad_flows: true,
            ..uringreplay::flowfile::LoadOptions::default()
        },
        &mut |event| {
            if let uringreplay::flowfile::LoadEvent::SkippedBadFlow { error, .. } = event {
                skipped.push(error.to_string());
            }
        },
    )
    .expect("the cut file loads with --skip-bad-flows");
    assert!(
        skipped.len() <= 1,
        "only a cut-off last flow may be left out: {skipped:?}"
    );
    rec
}
