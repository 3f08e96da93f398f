//! The admin driver (issue 16): the engine's side of [`crate::admin::Control`], the `--admin`
//! listener, reloads off the serving threads (`POST /reload`, `SIGHUP`) and the two hooks the
//! workers call: [`missed`] for each unmatched request and [`served`] after each write.
//!
//! The listener is one plain thread with blocking sockets, apart from the workers: it parses
//! with the same sans-IO [`http1::Conn`] as the replay port, answers one request per connection
//! (`Connection: close`) and never touches a worker's event loop. A scrape reads every worker's
//! counters and miss log; nothing is written per replayed request beyond the worker's own
//! counters.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::clock;
use super::worker::Shared;
use crate::admin::{self, Admin, Control};
use crate::http1::{self, header_slots, Conn, Limits, Step};
use crate::replay::miss::MissLog;
use crate::replay::{LiveRequest, Replayer};
use crate::stats::Counters;

/// The running engine as the admin router sees it: every worker's counters and miss logs and
/// the recording swap (a clone of what the workers share, so it outlives the stop).
#[derive(Debug, Clone)]
pub struct Engine(pub(super) Arc<Shared>);

impl Control for Engine {
    fn replayer(&self) -> Arc<Replayer> {
        self.0.replayer.load_full()
    }

    fn for_each_core(&self, each: &mut dyn FnMut(&Counters, &MissLog)) {
        for (c, m) in self.0.counters.iter().zip(&self.0.misses) {
            each(c, m);
        }
    }

    fn open_connections(&self) -> u64 {
        self.0
            .live
            .iter()
            .map(|l| l.open.load(Ordering::Relaxed))
            .sum()
    }

    fn swap_recording(&self, new: Arc<Replayer>) {
        self.0.done.store(false, Ordering::SeqCst);
        self.0.replayer.store(new);
    }
}

impl Control for super::Handle {
    fn replayer(&self) -> Arc<Replayer> {
        self.engine().replayer()
    }

    fn for_each_core(&self, each: &mut dyn FnMut(&Counters, &MissLog)) {
        self.engine().for_each_core(each)
    }

    fn open_connections(&self) -> u64 {
        super::Handle::open_connections(self)
    }

    fn swap_recording(&self, new: Arc<Replayer>) {
        super::Handle::swap_recording(self, new);
    }
}

/// Worker hook: `live` matched nothing in `replayer` at `now` (the turn's clock reading). The
/// core's miss log counts it and, rate-limited, explains it; only unmatched requests come here.
#[inline]
pub fn missed(
    shared: &Shared,
    core: usize,
    replayer: &Replayer,
    live: &LiveRequest<'_>,
    now: SystemTime,
) {
    shared.misses[core].record(replayer, live, now);
}

/// Worker hook: `answers` answers are queued and their write is submitted next; their requests
/// were complete by `turn` (the turn's one clock reading, just after the read that brought them;
/// a forwarded answer is queued once relayed). Service time is that span: one more clock reading
/// per written turn, none per request; counted before the write, so a client that has its answer
/// finds it counted, as the other counters are.
#[inline]
pub fn served(counters: &Counters, answers: u64, turn: SystemTime) {
    if answers == 0 {
        return;
    }
    let nanos = clock::now()
        .duration_since(turn)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    for _ in 0..answers {
        counters.service.record(nanos);
    }
}

/// One reload at a time: a second `SIGHUP` or `POST /reload` while one runs waits its turn.
static RELOADING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Whether a `SIGHUP` reload thread runs, and whether another `SIGHUP` came meanwhile.
static HANGUPS: std::sync::Mutex<(bool, bool)> = std::sync::Mutex::new((false, false));

/// Reloads on a thread of its own (`SIGHUP`: the main thread keeps watching for a stop) and says
/// how it went on stderr. A `SIGHUP` that comes during a reload is not lost: one more reload
/// follows (several such signals make one), since the files may have changed again.
pub fn reload_in_background(admin: Arc<Admin>, engine: Engine) {
    {
        let mut state = HANGUPS.lock().unwrap_or_else(|p| p.into_inner());
        if state.0 {
            state.1 = true;
            return;
        }
        *state = (true, false);
    }
    let spawned = std::thread::Builder::new()
        .name("uringreplay-reload".to_string())
        .spawn(move || loop {
            match reload(&admin, &engine) {
                Ok(flows) => eprintln!("SIGHUP: reloaded the recording: {flows} flows"),
                Err(sentence) => eprintln!("SIGHUP: {sentence}"),
            }
            let mut state = HANGUPS.lock().unwrap_or_else(|p| p.into_inner());
            if !std::mem::take(&mut state.1) {
                state.0 = false;
                return;
            }
        });
    if let Err(e) = spawned {
        eprintln!("SIGHUP: cannot start the reload thread: {e}");
        *HANGUPS.lock().unwrap_or_else(|p| p.into_inner()) = (false, false);
    }
}

/// A reload, serialised with any other.
fn reload(admin: &Admin, engine: &Engine) -> Result<usize, String> {
    let _one = RELOADING.lock().unwrap_or_else(|p| p.into_inner());
    admin.reload(engine)
}

/// Binds `--admin HOST:PORT` and serves the admin endpoints on a thread of their own; returns
/// the bound address (the real port when 0 was asked for). Errors are one sentence.
pub fn start(spec: &str, admin: Arc<Admin>, engine: Engine) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = spec
        .to_socket_addrs()
        .map_err(|e| format!("--admin {spec}: not a HOST:PORT address ({e})"))?
        .collect();
    let listener = TcpListener::bind(&addrs[..]).map_err(|e| {
        format!("--admin {spec}: cannot listen there ({e}); give another port, e.g. --admin 127.0.0.1:9901")
    })?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("--admin {spec}: {e}"))?;
    std::thread::Builder::new()
        .name("uringreplay-admin".to_string())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => connection(s, &admin, &engine),
                    // Out of descriptors or a reset before accept: wait a little, go on.
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        })
        .map_err(|e| format!("cannot start the admin thread: {e}"))?;
    Ok(bound)
}

/// How long an admin client may take to send its whole request, and to take the answer (one
/// slow client holds the admin thread, so the bound is on the request, not on each read).
const PATIENCE: Duration = Duration::from_secs(5);

/// How long a closing admin connection waits for the client's FIN, at most.
const LINGER: Duration = Duration::from_secs(1);

/// Admin requests are small: a head and at most this much body (ignored).
const MAX_BODY: u64 = 64 * 1024;

/// Reads one request, answers it and closes.
fn connection(mut stream: TcpStream, admin: &Admin, engine: &Engine) {
    let _ = stream.set_read_timeout(Some(PATIENCE));
    let _ = stream.set_write_timeout(Some(PATIENCE));
    let mut conn = Conn::new(Limits {
        max_body: MAX_BODY,
        ..Limits::default()
    });
    let mut input = Vec::with_capacity(4096);
    let mut scratch = Vec::new();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = clock::instant() + PATIENCE;
    // Bounded: each read adds at least one byte, the Conn refuses a head over 64 KiB or a
    // body over MAX_BODY, and the whole request must come within PATIENCE.
    loop {
        let mut headers = header_slots();
        match conn.poll_request(&input, &mut headers, &mut scratch, &mut out) {
            Step::Request(req) => {
                // A reload waits for one SIGHUP started; the other endpoints never wait.
                let _one = (req.target.starts_with(b"/reload"))
                    .then(|| RELOADING.lock().unwrap_or_else(|p| p.into_inner()));
                let answer = admin.handle(engine, req.method, req.target);
                write_answer(&answer, req.is_head, &mut out);
                break;
            }
            Step::Reject(e) => {
                http1::write_error(e, &mut out);
                break;
            }
            Step::NeedMore | Step::Flush => {}
        }
        if !out.is_empty() {
            // `100 Continue`: the client waits for it before sending the body.
            if stream.write_all(&out).is_err() {
                return;
            }
            out.clear();
        }
        let left = deadline.saturating_duration_since(clock::instant());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut buf) {
            Ok(n) if n > 0 => input.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
    let _ = stream.write_all(&out);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    // Read what the client still sends so the close is a FIN, not a reset; bounded (1 MiB,
    // about a second) so one client cannot hold the admin port.
    let _ = stream.set_read_timeout(Some(LINGER));
    let until = clock::instant() + LINGER;
    let mut drained = 0;
    while drained < 1024 * 1024 && clock::instant() < until {
        match stream.read(&mut buf) {
            Ok(n) if n > 0 => drained += n,
            _ => break,
        }
    }
}

/// Frames `answer` as an HTTP/1.1 response that closes the connection; a HEAD gets the head
/// only (its `Content-Length` still the body's).
fn write_answer(answer: &admin::Response, is_head: bool, out: &mut Vec<u8>) {
    let reason = match answer.status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        422 => "Unprocessable Content",
        _ => "",
    };
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {} {reason}\r\nServer: uringreplay\r\nContent-Type: {}\r\n\
             Content-Length: {}\r\nConnection: close\r\n",
            answer.status,
            answer.content_type,
            answer.body.len()
        )
        .as_bytes(),
    );
    if let Some(allow) = answer.allow {
        out.extend_from_slice(format!("Allow: {allow}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if !is_head {
        out.extend_from_slice(&answer.body);
    }
}

#[cfg(test)]
mod tests {
    use super::write_answer;
    use crate::admin::Response;

    #[test]
    fn a_head_answer_has_the_get_head_and_no_body() {
        let r = Response {
            status: 405,
            content_type: "text/plain",
            allow: Some("GET"),
            body: b"no\n".to_vec(),
        };
        let (mut get, mut head) = (Vec::new(), Vec::new());
        write_answer(&r, false, &mut get);
        write_answer(&r, true, &mut head);
        assert!(get.ends_with(b"\r\n\r\nno\n"));
        assert!(head.ends_with(b"Allow: GET\r\n\r\n"), "{head:?}");
        assert_eq!(&get[..head.len()], &head[..]);
    }
}
