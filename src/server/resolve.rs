//! Upstream name lookups off the workers' loops: `getaddrinfo` blocks its thread (for as long as
//! the system resolver takes: seconds when a DNS server does not answer), so a worker that called
//! it would stop serving every one of its connections meanwhile. A few resolver threads, started
//! on the first lookup, call it instead; the worker waits for the answer on its own ring, reading
//! one end of a socket pair that the resolver thread writes a byte to when the answer is ready.
//!
//! IP literals need no lookup and are answered inline. Lookups are not cached (mitmproxy asks the
//! system resolver for every upstream connection, and connections are pooled anyway).

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};

use monoio::io::AsyncReadRent;

/// Resolver threads; lookups beyond them queue.
const THREADS: usize = 4;
/// Lookups that may wait for a resolver thread; more are refused with an error.
const QUEUE: usize = 1024;

/// What a lookup does: the system resolver, or a stand-in in tests.
pub type LookupFn = dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync;

/// The answer slot one lookup's resolver thread fills before it signals the worker.
type Answer = Arc<Mutex<Option<io::Result<Vec<SocketAddr>>>>>;

/// One lookup handed to a resolver thread.
struct Job {
    host: String,
    port: u16,
    answer: Answer,
    /// The resolver thread's end of the socket pair: one byte written (or the end dropped) says
    /// the answer is in `answer`.
    done: StdUnixStream,
}

/// The process's resolver: shared by every worker, its threads started on the first lookup of a
/// name (a replay that never forwards to a name starts none).
pub struct Resolver {
    lookup: Arc<LookupFn>,
    queue: OnceLock<SyncSender<Job>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("started", &self.queue.get().is_some())
            .finish()
    }
}

impl Default for Resolver {
    fn default() -> Resolver {
        Resolver::system()
    }
}

/// The system resolver (`getaddrinfo`), as std's `ToSocketAddrs` calls it.
fn system_lookup(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    Ok((host, port).to_socket_addrs()?.collect())
}

impl Resolver {
    /// Lookups through the system resolver.
    pub fn system() -> Resolver {
        Resolver::with_lookup(Arc::new(system_lookup))
    }

    /// Lookups through `lookup` (tests stand in a resolver they control).
    pub fn with_lookup(lookup: Arc<LookupFn>) -> Resolver {
        Resolver {
            lookup,
            queue: OnceLock::new(),
        }
    }

    /// The addresses of `host` (a name, or an IP literal, IPv6 with or without brackets) at
    /// `port`, in the resolver's order. A name is looked up on a resolver thread while this
    /// worker goes on serving; dropping the future abandons the lookup (its thread finishes it
    /// and the answer is discarded).
    pub async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let literal = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = literal.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let (mine, theirs) = StdUnixStream::pair()?;
        mine.set_nonblocking(true)?;
        let mut waiting = monoio::net::UnixStream::from_std(mine)?;
        let answer: Answer = Arc::new(Mutex::new(None));
        let job = Job {
            host: host.to_string(),
            port,
            answer: answer.clone(),
            done: theirs,
        };
        match self.queue().try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(io::Error::other(format!(
                    "{QUEUE} name lookups are already waiting for the resolver"
                )))
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(io::Error::other("the resolver threads have stopped"))
            }
        }
        // One byte, or the end closed (the thread dropped the job): either way the slot says.
        let (read, _) = waiting.read(vec![0u8; 1]).await;
        read?;
        let taken = answer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        taken.unwrap_or_else(|| Err(io::Error::other("the resolver gave no answer")))
    }

    /// The job queue, its threads started on first use.
    fn queue(&self) -> &SyncSender<Job> {
        self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
            let rx = Arc::new(Mutex::new(rx));
            for i in 0..THREADS {
                let rx = rx.clone();
                let lookup = self.lookup.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("resolver-{i}"))
                    .spawn(move || serve_lookups(&rx, &*lookup));
                // A thread that cannot start leaves the others; with none, every lookup
                // fails with "stopped" once the receiver is dropped.
                drop(spawned);
            }
            tx
        })
    }
}

/// One resolver thread: takes jobs until the queue closes.
fn serve_lookups(jobs: &Mutex<mpsc::Receiver<Job>>, lookup: &LookupFn) {
    loop {
        let job = {
            let rx = jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            rx.recv()
        };
        let Ok(mut job) = job else { return };
        let result = lookup(&job.host, job.port);
        *job.answer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(result);
        // The worker may have given up (a timeout dropped its end): nothing to tell then.
        let _ = io::Write::write_all(&mut job.done, &[1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::runtime::run_for_test as run;
    use std::sync::mpsc::Receiver;

    /// A stand-in resolver that answers each lookup only when the test releases one, with
    /// 192.0.2.N where N is the name's length, and tells the test which name it was asked for.
    fn controlled() -> (Resolver, Receiver<String>, SyncSender<()>) {
        let (asked_tx, asked_rx) = mpsc::channel::<String>();
        let (release_tx, release_rx) = mpsc::sync_channel::<()>(4);
        let asked_tx = Mutex::new(asked_tx);
        let release_rx = Mutex::new(release_rx);
        let lookup = move |host: &str, port: u16| {
            asked_tx.lock().unwrap().send(host.to_string()).unwrap();
            release_rx
                .lock()
                .unwrap()
                .recv()
                .map_err(|_| io::Error::other("released"))?;
            let ip = std::net::Ipv4Addr::new(192, 0, 2, host.len() as u8);
            Ok(vec![SocketAddr::new(ip.into(), port)])
        };
        (
            Resolver::with_lookup(Arc::new(lookup)),
            asked_rx,
            release_tx,
        )
    }

    #[test]
    fn ip_literals_are_answered_without_a_lookup() {
        let (resolver, asked, _release) = controlled();
        let got = run(async {
            (
                resolver.resolve("127.0.0.1", 80).await.unwrap(),
                resolver.resolve("[::1]", 443).await.unwrap(),
                resolver.resolve("::1", 8443).await.unwrap(),
            )
        });
        assert_eq!(got.0, vec!["127.0.0.1:80".parse().unwrap()]);
        assert_eq!(got.1, vec!["[::1]:443".parse().unwrap()]);
        assert_eq!(got.2, vec!["[::1]:8443".parse().unwrap()]);
        assert!(asked.try_recv().is_err(), "a literal went to the resolver");
        assert!(
            resolver.queue.get().is_none(),
            "threads started for literals"
        );
    }

    /// While a lookup is stuck in the resolver, the worker's loop goes on: another task on the
    /// same thread accepts and answers a loopback connection; then the lookup completes.
    #[test]
    fn a_slow_lookup_does_not_stop_the_worker() {
        let (resolver, asked, release) = controlled();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(b"ping").unwrap();
            let mut got = [0u8; 4];
            s.read_exact(&mut got).unwrap();
            got
        });
        let got = run(async {
            // Submitted at this task's first await (the accept below); it cannot complete
            // before the release, which comes after the connection is served.
            let lookup = monoio::spawn(async move { resolver.resolve("origin.test", 8080).await });
            listener.set_nonblocking(true).unwrap();
            let listener = monoio::net::TcpListener::from_std(listener).unwrap();
            let (mut conn, _) = listener.accept().await.unwrap();
            let (n, buf) = conn.read(vec![0u8; 4]).await;
            assert_eq!(n.unwrap(), 4);
            let (w, _) = monoio::io::AsyncWriteRentExt::write_all(&mut conn, buf).await;
            w.unwrap();
            assert_eq!(asked.recv().unwrap(), "origin.test");
            release.send(()).unwrap();
            lookup.await
        });
        assert_eq!(&client.join().unwrap(), b"ping");
        assert_eq!(got.unwrap(), vec!["192.0.2.11:8080".parse().unwrap()]);
    }

    #[test]
    fn a_failed_lookup_is_its_error() {
        let resolver = Resolver::with_lookup(Arc::new(|host: &str, _| {
            Err(io::Error::other(format!("no such host {host}")))
        }));
        let err = run(resolver.resolve("nowhere.test", 80)).unwrap_err();
        assert_eq!(err.to_string(), "no such host nowhere.test");
    }

    /// A lookup abandoned by its worker (a timeout dropped the future) leaves the resolver
    /// working for the next one.
    #[test]
    fn an_abandoned_lookup_does_not_break_the_next() {
        let (resolver, asked, release) = controlled();
        let got = run(async {
            let first = resolver.resolve("first.test", 1);
            let timed_out = monoio::time::timeout(std::time::Duration::from_millis(1), first).await;
            assert!(timed_out.is_err(), "the first lookup answered unreleased");
            assert_eq!(asked.recv().unwrap(), "first.test");
            release.send(()).unwrap();
            release.send(()).unwrap();
            resolver.resolve("second.test", 2).await
        });
        assert_eq!(asked.recv().unwrap(), "second.test");
        assert_eq!(got.unwrap(), vec!["192.0.2.11:2".parse().unwrap()]);
    }
}
