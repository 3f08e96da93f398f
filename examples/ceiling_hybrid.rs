//! A measuring stick for issue 13's connection loop: `uring_best`'s loop (multishot accept into
//! the direct file table, one multishot receive per connection on a provided-buffer ring, one
//! turn's sends submitted together) run *inside a monoio runtime* on a second io_uring of its
//! own, woken through an eventfd that monoio reads. It answers every request with the fixed bytes
//! of `scripts/bench.sh`'s small answer and matches nothing: it shows what the hot loop could
//! cost if uringreplay's plain HTTP/1 connections ran on such a ring beside monoio (which would
//! keep forwarding, TLS, HTTP/2 and the timers), against `../shared/bench/ceiling/`'s
//! `uring_best` (its own ring only) and `monoio_min` (monoio's ops only).
//!
//! ```sh
//! cargo build --release --example ceiling_hybrid
//! taskset -c 0 target/release/examples/ceiling_hybrid 18300 &     # PORT; HYBRID_DEFER=1: DEFER_TASKRUN
//! taskset -c 1 wrk -t1 -c64 -d4 http://127.0.0.1:18300/small
//! ```
//!
//! Loopback benchmarking only: no timeouts, no limits beyond a 4 KiB request buffer.
#![allow(clippy::disallowed_methods)] // a stand-alone tool, not the sans-IO core

use std::os::fd::{FromRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

/// `scripts/bench.sh`'s small answer, as uringreplay sends it.
const SMALL: &[u8] =
    b"HTTP/1.1 200 OK\r\nServer: origin/1\r\nDate: Tue, 01 Dec 2026 22:28:35 GMT\r\n\
Content-Type: text/plain\r\nCache-Control: max-age=60\r\nX-Request-Id: bench-0001\r\n\
Content-Length: 25\r\n\r\nhello from the recording\n";

const ACCEPT: u64 = 0;
const RECV: u64 = 1;
const SEND: u64 = 2;
const CLOSE: u64 = 3;
/// Provided buffers (a power of two) and their size.
const NBUF: u16 = 1024;
const BUFSZ: usize = 2048;
const BGID: u16 = 7;
/// Direct file table slots.
const FILES: u32 = 8192;
/// The most of a request kept across receives.
const RBUF: usize = 4096;

#[derive(Default)]
struct Conn {
    live: bool,
    /// Only for a request split across receives.
    rbuf: Vec<u8>,
    pending: usize,
    sending: bool,
    sbuf: Vec<u8>,
    sptr: usize,
    slen: usize,
    soff: usize,
    closing: bool,
    recv_armed: bool,
}

/// A listening socket on 127.0.0.1:`port` (SO_REUSEADDR, TCP_NODELAY inherited, backlog 4096).
fn listen(port: u16) -> RawFd {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind");
    let fd = std::os::fd::IntoRawFd::into_raw_fd(listener);
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads one c_int we own; `fd` is the listener just opened.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        libc::listen(fd, 4096);
    }
    fd
}

/// Complete requests in `buf` (GETs without bodies, as wrk sends): bytes used and count, or
/// `None` for a malformed one.
fn parse(buf: &[u8]) -> Option<(usize, usize)> {
    let (mut off, mut n) = (0, 0);
    while off < buf.len() {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[off..]) {
            Ok(httparse::Status::Complete(len)) => {
                off += len;
                n += 1;
            }
            Ok(httparse::Status::Partial) => break,
            Err(_) => return None,
        }
    }
    Some((off, n))
}

fn push(ring: &mut IoUring, e: squeue::Entry) {
    loop {
        // SAFETY: every entry pushed points at memory that outlives its operation: connection
        // buffers live in `conns` for the process, the response is static.
        if unsafe { ring.submission().push(&e) }.is_ok() {
            return;
        }
        ring.submit().expect("submit");
    }
}

fn recv_multi(ring: &mut IoUring, slot: u32) {
    let e = opcode::RecvMulti::new(types::Fixed(slot), BGID)
        .build()
        .user_data((u64::from(slot) << 2) | RECV);
    push(ring, e);
}

fn start_send(ring: &mut IoUring, slot: u32, c: &mut Conn) {
    if c.pending == 0 || c.sending {
        return;
    }
    if c.pending == 1 {
        c.sptr = SMALL.as_ptr() as usize;
        c.slen = SMALL.len();
    } else {
        c.sbuf.clear();
        for _ in 0..c.pending {
            c.sbuf.extend_from_slice(SMALL);
        }
        c.sptr = c.sbuf.as_ptr() as usize;
        c.slen = c.sbuf.len();
    }
    c.pending = 0;
    c.soff = 0;
    c.sending = true;
    send_rest(ring, slot, c);
}

fn send_rest(ring: &mut IoUring, slot: u32, c: &Conn) {
    let e = opcode::Send::new(
        types::Fixed(slot),
        (c.sptr + c.soff) as *const u8,
        (c.slen - c.soff) as u32,
    )
    .build()
    .user_data((u64::from(slot) << 2) | SEND);
    push(ring, e);
}

fn end(ring: &mut IoUring, slot: u32, c: &mut Conn) {
    c.closing = true;
    if c.sending {
        return;
    }
    if c.recv_armed {
        // The shutdown ends the multishot receive, whose last completion closes the slot.
        let e = opcode::Shutdown::new(types::Fixed(slot), libc::SHUT_RDWR)
            .build()
            .user_data((u64::from(slot) << 2) | CLOSE);
        push(ring, e);
    } else {
        *c = Conn::default();
        let e = opcode::Close::new(types::Fixed(slot))
            .build()
            .user_data((u64::from(slot) << 2) | CLOSE);
        push(ring, e);
    }
}

fn main() {
    let port = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(18300);
    let lfd = listen(port);
    let mut builder = io_uring::IoUring::builder();
    builder.setup_single_issuer().setup_defer_taskrun();
    let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .with_entries(1024)
        .uring_builder(builder)
        .build()
        .expect("monoio runtime (io_uring)");
    rt.block_on(serve(lfd));
}

async fn serve(lfd: RawFd) {
    let defer = std::env::var_os("HYBRID_DEFER").is_some();
    let mut builder = IoUring::builder();
    builder.setup_single_issuer().setup_taskrun_flag();
    if defer {
        builder.setup_defer_taskrun();
    } else {
        builder.setup_coop_taskrun();
    }
    let mut ring = builder.build(4096).expect("a second io_uring");
    eprintln!("ceiling_hybrid: monoio plus an own ring (DEFER_TASKRUN: {defer}), eventfd wakeups");
    // SAFETY: eventfd takes no pointers; the fd it returns is owned by `wake` below.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    assert!(efd >= 0, "eventfd");
    ring.submitter()
        .register_eventfd(efd)
        .expect("register_eventfd");
    // SAFETY: `efd` is a fresh descriptor nothing else owns.
    let wake = monoio::fs::File::from_std(unsafe { std::fs::File::from_raw_fd(efd) })
        .expect("the eventfd as a monoio file");
    let mut count = vec![0u8; 8];
    ring.submitter()
        .register_files_sparse(FILES)
        .expect("register_files_sparse");

    // The provided-buffer ring: NBUF entries (page-aligned) and NBUF buffers of BUFSZ bytes.
    let ring_bytes = usize::from(NBUF) * std::mem::size_of::<types::BufRingEntry>();
    // SAFETY: an anonymous private mapping, no file; checked below.
    let ring_mem = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            ring_bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
            -1,
            0,
        )
    };
    assert!(ring_mem != libc::MAP_FAILED, "mmap");
    let entries = ring_mem as *mut types::BufRingEntry;
    let bufs: Vec<u8> = vec![0u8; usize::from(NBUF) * BUFSZ];
    let bufs_base = bufs.as_ptr() as u64;
    // SAFETY: the tail lives in the mapping, which is never unmapped; the kernel reads it.
    let tail = unsafe { &*(types::BufRingEntry::tail(entries) as *const AtomicU16) };
    let mask = NBUF - 1;
    let mut local_tail: u16 = 0;
    let give = |local_tail: &mut u16, bid: u16| {
        // SAFETY: `local_tail & mask` indexes one of the NBUF entries of the mapping; the
        // buffer it names lies inside `bufs`, which lives as long as the loop.
        unsafe {
            let e = &mut *entries.add(usize::from(*local_tail & mask));
            e.set_addr(bufs_base + u64::from(bid) * BUFSZ as u64);
            e.set_len(BUFSZ as u32);
            e.set_bid(bid);
        }
        *local_tail = local_tail.wrapping_add(1);
    };
    for bid in 0..NBUF {
        give(&mut local_tail, bid);
    }
    tail.store(local_tail, Ordering::Release);
    // SAFETY: the ring memory is a page-aligned mapping of NBUF entries that outlives the ring.
    unsafe {
        ring.submitter()
            .register_buf_ring(ring_mem as u64, NBUF, BGID)
            .expect("register_buf_ring");
    }

    let mut conns: Vec<Conn> = (0..FILES).map(|_| Conn::default()).collect();
    let accept = || {
        opcode::AcceptMulti::new(types::Fd(lfd))
            .allocate_file_index(true)
            .build()
            .user_data(ACCEPT)
    };
    push(&mut ring, accept());
    let mut cqes: Vec<(u64, i32, u32)> = Vec::with_capacity(8192);
    loop {
        // Buffers handed back during the last turn become visible before this enter.
        tail.store(local_tail, Ordering::Release);
        // Submit, and run deferred completions (DEFER_TASKRUN posts them only on an enter with
        // GETEVENTS; io-uring 0.6's `submit` does not set it), without waiting.
        let queued = ring.submission().len() as u32;
        // SAFETY: `queued` entries are in the submission queue; no argument struct is passed.
        let entered = unsafe {
            ring.submitter().enter::<libc::sigset_t>(
                queued, 0, 1, // IORING_ENTER_GETEVENTS
                None,
            )
        };
        match entered {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
            Err(e) => panic!("submit: {e}"),
        }
        cqes.clear();
        cqes.extend(
            ring.completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        if cqes.is_empty() {
            // Nothing completed: wait in monoio until the ring posts (the eventfd counts).
            let (res, back) = wake.read_at(count, 0).await;
            count = back;
            res.expect("read the eventfd");
            continue;
        }
        for &(ud, res, flags) in &cqes {
            let slot = (ud >> 2) as u32;
            match ud & 3 {
                ACCEPT => {
                    if let Ok(fresh) = u32::try_from(res) {
                        conns[fresh as usize] = Conn {
                            live: true,
                            recv_armed: true,
                            ..Conn::default()
                        };
                        recv_multi(&mut ring, fresh);
                    }
                    if !cqueue::more(flags) {
                        push(&mut ring, accept());
                    }
                }
                RECV => {
                    let c = &mut conns[slot as usize];
                    let more = cqueue::more(flags);
                    if !more {
                        c.recv_armed = false;
                    }
                    let bid = cqueue::buffer_select(flags);
                    if !c.live {
                        if let Some(bid) = bid {
                            give(&mut local_tail, bid);
                        }
                        if !c.recv_armed && c.closing {
                            end(&mut ring, slot, c);
                        }
                        continue;
                    }
                    let mut bad = false;
                    match (usize::try_from(res), bid) {
                        (Ok(n @ 1..), Some(bid)) => {
                            // SAFETY: the kernel wrote `n` ≤ BUFSZ bytes into buffer `bid` of
                            // `bufs`; it is ours until given back just below.
                            let data = unsafe {
                                std::slice::from_raw_parts(
                                    (bufs_base + u64::from(bid) * BUFSZ as u64) as *const u8,
                                    n,
                                )
                            };
                            c.rbuf.extend_from_slice(data);
                            give(&mut local_tail, bid);
                            match parse(&c.rbuf) {
                                Some((used, count)) => {
                                    c.pending += count;
                                    c.rbuf.drain(..used);
                                }
                                None => bad = true,
                            }
                            bad |= c.rbuf.len() >= RBUF;
                        }
                        // Out of provided buffers: re-armed below.
                        _ if res == -libc::ENOBUFS => {}
                        // The end, or an error.
                        _ => bad = true,
                    }
                    if bad {
                        c.live = false;
                        end(&mut ring, slot, c);
                        continue;
                    }
                    start_send(&mut ring, slot, c);
                    if !more {
                        c.recv_armed = true;
                        recv_multi(&mut ring, slot);
                    }
                }
                SEND => {
                    let c = &mut conns[slot as usize];
                    c.sending = false;
                    match usize::try_from(res) {
                        Ok(n @ 1..) if !c.closing => {
                            c.soff += n;
                            if c.soff < c.slen {
                                c.sending = true;
                                send_rest(&mut ring, slot, c);
                            } else {
                                start_send(&mut ring, slot, c);
                            }
                        }
                        _ => {
                            c.live = false;
                            end(&mut ring, slot, c);
                        }
                    }
                }
                _ => {} // CLOSE
            }
        }
    }
}
