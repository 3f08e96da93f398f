//! The direct ring: a worker's HTTP/1 and HTTP/2 connections, plain or over TLS, served on an
//! io_uring of the worker's own, beside monoio's. Each connection has one multishot receive into
//! a ring of provided buffers; a turn's sends, over every connection, go to the kernel with one
//! enter; and there is no future, waker or op record per request (issue 13: monoio's ops cost a
//! tenth of the bare loop's rate at 256 connections).
//!
//! HTTP/1 requests are answered by the same [`Turn::next`] as monoio's connection loop; a
//! connection that opens with the h2c preface gets an HTTP/2 [`Session`], the state monoio's
//! HTTP/2 driver serves. One that opens with a TLS ClientHello gets a [`RingTls`]: its handshake
//! runs here, its records are opened into the client's input and a turn's answers sealed into
//! records, and its ALPN picks HTTP/1 or an HTTP/2 session inside. Everything that waits on
//! something other than this client is handed to monoio once the connection's receive has ended
//! and its answers are written, with the parse state, the bytes read so far and the TLS session
//! (as a [`ClientTls`]): a forward and a CONNECT (to [`connection`], which parses that request
//! again: nothing of it was counted here; an HTTP/2 session's forwards to
//! [`super::h2::resume`], which starts them), a timer that expired and the stop (to
//! [`connection`] or `resume`, which answer what has arrived and close as they do for their own
//! connections, HTTP/2 with GOAWAY), and a close that must linger (to [`linger_close`]). The ring
//! wakes its monoio task through an eventfd that monoio reads, so an idle worker sleeps in one
//! place.

use std::future::Future;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use arc_swap::{ArcSwap, Cache};
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use monoio::net::TcpStream;

use super::super::client_tls::{ClientTls, HandshakeError};
use super::super::transport::Transport;
use super::h2::Session;
use super::{
    closed, fallback_identity, handshake_failed, linger_close, since_start, take_input,
    ticks_until, Leg, Next, Resume, Shared, Slot, Then, Turn, Worker, INPUT_FIRST,
};
use crate::config::LookAhead;
use crate::exchange::{self, After};
use crate::http1::Conn;
use crate::replay::lookahead::Lookahead;
use crate::replay::Replayer;
use crate::server::clock;
use crate::server::outbox::{Outbox, Pending};
use crate::stats::Counters;
use crate::tls::{detect, Detected, TlsSession, TlsSessionError, WorkerTls};

/// Provided receive buffers (a power of two) and the size of each: a request head fits one.
const BUFFERS: u16 = 1024;
const BUFFER_SIZE: usize = 2048;
/// The provided-buffer group's id: 0, the one id the kernel's per-ring table of groups (an
/// xarray, looked up on every receive) holds in its root, with no node to walk (0x5552 cost a
/// three-level walk a completion).
const GROUP: u16 = 0;
/// Submission queue entries (the completion queue has twice as many).
const ENTRIES: u32 = 4096;
/// Input held while an answer is being sent, past which the receive pauses until the client
/// takes its answers (a client that pipelines without reading cannot grow it further).
const INPUT_HIGH: usize = 256 * 1024;

/// The operation of a completion: the low two bits of its user data (the client's index above).
const RECV: u64 = 0;
const SEND: u64 = 1;
const CANCEL: u64 = 2;
/// A completion for no client (the stop's wake-up, a fixed-file table update).
const NOBODY: u64 = u64::MAX;
/// Slots of the ring's fixed-file table at most (see [`fixed_file_slots`]): a client whose
/// index is below the table's size names its socket by slot, which spares the kernel a
/// descriptor lookup and reference per operation (`fget`, `fput`: ≈ 1.5 % of the server's CPU
/// at 64 connections); clients above it use descriptors.
const FIXED_FILES: u32 = 16 * 1024;
/// The first kernel whose fixed-file table lets go of a cleared slot's file as soon as that
/// file's own operations are done. Before 6.13 a cleared file waited behind every operation
/// issued earlier on the ring (liburing issue 1192): one idle client's armed receive would keep
/// every later closed socket open, its client waiting for an end that never came.
const FIXED_FILES_SINCE: (u32, u32) = (6, 13);
/// What a fixed-file slot is set to when its client leaves (read by the kernel at issue).
static NO_FILE: RawFd = -1;

/// Builds an operation on the client's socket: `$t` is its fixed-file slot when it has one,
/// else its descriptor.
macro_rules! on_socket {
    ($c:expr, $index:expr, |$t:ident| $build:expr) => {
        if $c.fixed {
            let $t = types::Fixed($index);
            $build
        } else {
            let $t = types::Fd($c.fd);
            $build
        }
    };
}

/// What becomes of a client once its operations have completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Still served here.
    Serving,
    /// Handed to monoio's [`connection`].
    Monoio,
    /// Handed to [`linger_close`].
    Linger,
    /// Closed.
    Close,
}

/// A TLS connection's session on the ring: the client's records are opened as they arrive (the
/// client's input is their plaintext), and a turn's answers are sealed into records before they
/// are sent.
struct RingTls {
    session: TlsSession,
    /// TLS records to send: `records[sent..]` is not yet written.
    records: Vec<u8>,
    sent: usize,
    /// The small pieces of a turn's answers, gathered into one record.
    stage: Vec<u8>,
    /// The handshake is done (and the protocol inside, from its ALPN, set up).
    open: bool,
    /// When the handshake must have ended: the header timeout from the ClientHello, as monoio's
    /// handshake has.
    handshake_until: std::time::Duration,
    /// Why the handshake failed, told once the client leaves the ring.
    failure: Option<HandshakeError>,
}

impl RingTls {
    /// Opens the records in `bytes` into `plain`; the session's alert (if any) is queued.
    fn receive(
        &mut self,
        tls: &WorkerTls,
        bytes: &[u8],
        plain: &mut Vec<u8>,
    ) -> Result<(), TlsSessionError> {
        self.session.receive(tls, bytes, plain)?;
        self.session.read_plaintext(plain)?;
        Ok(())
    }

    /// Seals what the outbox holds into records, after the records the session queued itself
    /// (handshake, tickets, alerts); the outbox is then empty.
    fn seal(&mut self, outbox: &mut Outbox) -> Result<(), TlsSessionError> {
        let RingTls {
            session,
            records,
            stage,
            ..
        } = self;
        session.write_tls(records);
        let mut sealed = Ok(());
        outbox.drain(|piece| {
            if sealed.is_ok() {
                sealed = session.gather(piece, stage, records);
            }
        });
        sealed?;
        session.seal_staged(stage, records)
    }

    /// `n` bytes of the records were written: true when all of them are.
    fn written(&mut self, n: usize) -> bool {
        self.sent = self.sent.saturating_add(n).min(self.records.len());
        if self.sent < self.records.len() {
            return false;
        }
        crate::tls::session::recycle_records(&mut self.records);
        self.sent = 0;
        true
    }

    /// There are records to send, or the session has queued some.
    fn has_output(&self) -> bool {
        self.sent < self.records.len() || self.session.wants_write()
    }
}

/// One plain connection on the ring (HTTP/1, or h2c with prior knowledge), or one whose TLS
/// ended in either.
struct Client {
    /// The socket (owned: closed or handed over by [`Lane::finish`]).
    fd: RawFd,
    /// The socket is also in the ring's fixed-file table, at the client's index (operations
    /// name it there; [`Lane::finish`] takes it out).
    fixed: bool,
    /// The message header of a vectored send in flight (its iovecs are the outbox's).
    message: libc::msghdr,
    /// The key of its slot in [`Worker::open`].
    id: u64,
    slot: Rc<Slot>,
    conn: Conn,
    /// Bytes received and not yet taken by a request.
    input: Vec<u8>,
    /// Decoded chunked bodies.
    scratch: Vec<u8>,
    outbox: Outbox,
    /// A receive is armed (its last completion has not come).
    receiving: bool,
    /// A cancel of the receive is in flight.
    cancelling: bool,
    /// A send is in flight (the outbox must not change).
    sending: bool,
    /// The first bytes are still to be told from a TLS ClientHello (TLS is configured).
    sniff_tls: bool,
    /// The first bytes are still to be told from an h2c preface.
    sniff: bool,
    /// Told h2c with prior knowledge (or `h2` agreed by TLS): the HTTP/2 session served here
    /// instead of `conn`.
    h2: Option<Box<Session>>,
    /// A TLS ClientHello came: the session the bytes go through.
    tls: Option<Box<RingTls>>,
    /// The client closed its side, or its receive failed.
    eof: bool,
    /// A receive has completed with bytes (an error before then may mean the kernel refuses
    /// multishot receives).
    received: bool,
    end: End,
}

/// The ring of provided receive buffers: the kernel picks a buffer per completion; the lane
/// copies the bytes into the client's input and gives the buffer back at once.
struct Buffers {
    /// The ring's entries (an anonymous mapping, registered with the ring).
    entries: *mut types::BufRingEntry,
    /// The buffers themselves.
    memory: Box<[u8]>,
    /// The tail as this thread advances it; published before each enter.
    tail: u16,
}

impl Buffers {
    /// Keeps the buffers and their entries for the rest of the process (operations that may
    /// still write them outlive the ring).
    fn leak(&mut self) {
        std::mem::forget(std::mem::take(&mut self.memory));
        self.entries = std::ptr::null_mut();
    }

    /// Maps the entries and registers the group with `ring`, every buffer provided.
    fn new(ring: &IoUring) -> std::io::Result<Buffers> {
        let bytes = usize::from(BUFFERS) * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: an anonymous private mapping, no file; checked below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let mut buffers = Buffers {
            entries: map.cast(),
            memory: vec![0u8; usize::from(BUFFERS) * BUFFER_SIZE].into_boxed_slice(),
            tail: 0,
        };
        for bid in 0..BUFFERS {
            buffers.give(bid);
        }
        buffers.publish();
        // SAFETY: the entries are a page-aligned mapping of BUFFERS entries that lives until
        // `Drop`, after the ring (a field declared before this one) is gone.
        unsafe {
            ring.submitter()
                .register_buf_ring(map as u64, BUFFERS, GROUP)?
        };
        Ok(buffers)
    }

    /// Provides buffer `bid` again.
    fn give(&mut self, bid: u16) {
        let at = usize::from(self.tail & (BUFFERS - 1));
        // SAFETY: `at` < BUFFERS indexes the mapping; the kernel reads an entry only once the
        // published tail covers it, which `publish` does after this write.
        unsafe {
            let entry = &mut *self.entries.add(at);
            entry.set_addr(self.memory.as_ptr() as u64 + u64::from(bid) * BUFFER_SIZE as u64);
            entry.set_len(BUFFER_SIZE as u32);
            entry.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the buffers given back visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail field lies in the mapping, which lives as long as `self`; the kernel
        // reads it concurrently, hence the atomic release store.
        let tail = unsafe { &*(types::BufRingEntry::tail(self.entries) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }

    /// The `len` bytes the kernel received into buffer `bid` (`None` for values no buffer has).
    fn received(&self, bid: u16, len: usize) -> Option<&[u8]> {
        let start = usize::from(bid).checked_mul(BUFFER_SIZE)?;
        self.memory
            .get(start..start.checked_add(len.min(BUFFER_SIZE))?)
    }
}

impl Drop for Buffers {
    fn drop(&mut self) {
        if self.entries.is_null() {
            return;
        }
        let bytes = usize::from(BUFFERS) * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: the mapping made in `new`, unmapped once; the ring that used it is closed.
        unsafe {
            libc::munmap(self.entries.cast(), bytes);
        }
    }
}

/// The replayer in force, as the lane's [`Cache`] reads it (one atomic load a turn).
struct Recordings(Arc<Shared>);

impl std::ops::Deref for Recordings {
    type Target = ArcSwap<Replayer>;

    fn deref(&self) -> &ArcSwap<Replayer> {
        &self.0.replayer
    }
}

/// The replayer in force now, through the lane's cache (made on first use).
fn in_force<'c>(
    current: &'c mut Option<Cache<Recordings, Arc<Replayer>>>,
    shared: &Arc<Shared>,
) -> &'c Arc<Replayer> {
    current
        .get_or_insert_with(|| Cache::new(Recordings(shared.clone())))
        .load()
}

/// The ring, its provided buffers, and the entries that found its submission queue full.
struct Ring {
    uring: IoUring,
    buffers: Buffers,
    /// Entries queued while the submission queue stayed full (the kernel refused an enter):
    /// moved in, in order, at the next submit, never dropped and never spun on.
    backlog: Vec<squeue::Entry>,
}

impl Ring {
    /// Queues `entry` behind any backlog, submitting first when the queue is full.
    fn push(&mut self, entry: squeue::Entry) {
        if self.backlog.is_empty() && self.uring.submission().is_full() {
            self.submit();
        }
        if self.backlog.is_empty() {
            // SAFETY: every entry points at memory that outlives its operation: a client's
            // outbox and the provided buffers live until its operations complete (or are leaked
            // by `Drop`), a fixed-file update points at its boxed client's descriptor (issued
            // before the client's receive, so before the client can leave) or at `NO_FILE`, a
            // vectored send at its boxed client's msghdr (and the outbox's iovecs), and a cancel
            // at nothing.
            if unsafe { self.uring.submission().push(&entry) }.is_ok() {
                return;
            }
        }
        self.backlog.push(entry);
    }

    /// Publishes the provided buffers, moves in what the backlog holds as room allows, and
    /// submits without waiting (refused submissions stay queued for the next enter).
    fn submit(&mut self) {
        self.buffers.publish();
        loop {
            self.unload_backlog();
            let submitted = self.uring.submit();
            // Room made for more of the backlog: move it in and submit it too, until the
            // backlog is empty or the kernel takes nothing.
            if self.backlog.is_empty() || !matches!(submitted, Ok(1..)) {
                return;
            }
        }
    }

    /// Completions wait in the completion queue, or entries in the backlog: work that posts
    /// nothing more to the eventfd.
    fn has_leftovers(&mut self) -> bool {
        !self.backlog.is_empty() || !self.uring.completion().is_empty()
    }

    /// Moves backlog entries into the submission queue while it has room.
    fn unload_backlog(&mut self) {
        if self.backlog.is_empty() {
            return;
        }
        let mut moved = 0;
        {
            let mut sq = self.uring.submission();
            for entry in &self.backlog {
                // SAFETY: as in `push`: these entries were built the same way.
                if unsafe { sq.push(entry) }.is_err() {
                    break;
                }
                moved += 1;
            }
        }
        self.backlog.drain(..moved);
    }
}

/// A worker's direct ring and the connections on it.
pub(super) struct Lane {
    ring: Ring,
    clients: Vec<Option<Box<Client>>>,
    /// Indexes of `clients` free for reuse.
    free: Vec<u32>,
    /// Completions of one enter, copied out so handling them can submit.
    completions: Vec<(u64, i32, u32)>,
    current: Option<Cache<Recordings, Arc<Replayer>>>,
    /// The kernel refuses multishot receives: new connections go to monoio.
    refused: bool,
    /// The wall clock as the turn under way first read it (`None` outside [`Lane::turn`]):
    /// one read a turn, not one a client.
    wall: Option<SystemTime>,
    /// A turn is under way.
    turning: bool,
    /// Requests answered since [`Lane::take_answered`] last took the count (for [`Pacer`]).
    answered: usize,
    /// Answers of the turn under way, whose service time is recorded as the turn ends (their
    /// sends reach the kernel at the next enter): one clock reading a turn, not one a client.
    turn_answers: u64,
    /// Clients with an index below this have a fixed-file slot (the table's size: see
    /// [`fixed_file_slots`]; 0 when there is none or the kernel refused it).
    fixed_files: u32,
}

impl Lane {
    /// The ring, its buffers and the eventfd it signals on each completion, as monoio reads it
    /// (for [`drive`]); on monoio's thread.
    pub(super) fn new() -> std::io::Result<(Lane, monoio::fs::File)> {
        let mut builder = IoUring::builder();
        // COOP_TASKRUN: completions are posted when this thread next enters the kernel (monoio's
        // enters included), with no interrupt; TASKRUN_FLAG says when some wait to be posted.
        // (DEFER_TASKRUN measured the same.)
        builder
            .setup_single_issuer()
            .setup_coop_taskrun()
            .setup_taskrun_flag();
        let ring = match builder.build(ENTRIES) {
            Ok(ring) => ring,
            Err(_) => IoUring::new(ENTRIES)?,
        };
        // SAFETY: eventfd takes no pointers; a descriptor it returns is owned below.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `efd` is a fresh descriptor nothing else owns.
        let wake = unsafe { OwnedFd::from_raw_fd(efd) };
        ring.submitter().register_eventfd(efd)?;
        let buffers = Buffers::new(&ring)?;
        let slots = fixed_file_slots();
        let fixed_files = match slots {
            0 => 0,
            _ => match ring.submitter().register_files_sparse(slots) {
                Ok(()) => slots,
                Err(_) => 0,
            },
        };
        let lane = Lane {
            ring: Ring {
                uring: ring,
                buffers,
                backlog: Vec::new(),
            },
            clients: Vec::new(),
            free: Vec::new(),
            completions: Vec::with_capacity(1024),
            current: None,
            refused: false,
            wall: None,
            turning: false,
            answered: 0,
            turn_answers: 0,
            fixed_files,
        };
        let wake = monoio::fs::File::from_std(std::fs::File::from(wake))?;
        Ok((lane, wake))
    }

    /// Serves a freshly accepted plain connection here (its slot is in [`Worker::open`]), or
    /// gives the stream back when the ring cannot.
    pub(super) fn adopt(
        &mut self,
        worker: &Rc<Worker>,
        stream: TcpStream,
        id: u64,
        slot: Rc<Slot>,
    ) -> Result<(), TcpStream> {
        if self.refused || worker.stopping.get() {
            return Err(stream);
        }
        let index = match self.free.pop() {
            Some(i) => i,
            None => match u32::try_from(self.clients.len()) {
                Ok(i) if i < u32::MAX >> 2 => {
                    self.clients.push(None);
                    i
                }
                _ => return Err(stream),
            },
        };
        let replayer = in_force(&mut self.current, &worker.shared).clone();
        let shared = &worker.shared;
        let fixed = index < self.fixed_files;
        let client = Client {
            fd: stream.into_raw_fd(),
            fixed,
            // SAFETY: a msghdr of zeros is valid (no name, no iovecs, no control data).
            message: unsafe { std::mem::zeroed() },
            id,
            slot,
            conn: Conn::with_timeouts(shared.limits, shared.timeouts, since_start(worker)),
            input: Vec::with_capacity(INPUT_FIRST),
            scratch: Vec::new(),
            outbox: Outbox::new(replayer),
            receiving: false,
            cancelling: false,
            sending: false,
            sniff_tls: worker.tls.is_some(),
            sniff: shared.serve.http2,
            h2: None,
            tls: None,
            eof: false,
            received: false,
            end: End::Serving,
        };
        let client = self.clients[index as usize].insert(Box::new(client));
        if fixed {
            // Queued before the receive, so issued before it (in order, at the same enter).
            set_slot(&mut self.ring, index, &client.fd);
        }
        Counters::bump(&worker.counters().ring_connections);
        self.progress(worker, index);
        // The loop may be asleep on its eventfd: the receive must reach the kernel now.
        self.submit();
        Ok(())
    }

    /// Submits what is queued, without waiting.
    fn submit(&mut self) {
        self.ring.submit();
    }

    /// Submits what is queued; whether work is left that the eventfd will not announce (see
    /// [`Ring::has_leftovers`]).
    fn submit_before_sleep(&mut self) -> bool {
        self.ring.submit();
        self.ring.has_leftovers()
    }

    /// Hands every connection whose timer expired (the sweeper set its slot's flag) to monoio.
    pub(super) fn expire(&mut self, worker: &Rc<Worker>) {
        self.hand_off_all(worker, |c| c.slot.expired.get());
    }

    /// The worker stops: every connection goes to monoio, which answers what has arrived and
    /// closes.
    pub(super) fn stop(&mut self, worker: &Rc<Worker>) {
        self.hand_off_all(worker, |_| true);
        // A completion wakes the loop, so it sees the end even when nothing was in flight.
        let nop = opcode::Nop::new().build().user_data(NOBODY);
        self.ring.push(nop);
        self.submit();
    }

    fn hand_off_all(&mut self, worker: &Rc<Worker>, which: impl Fn(&Client) -> bool) {
        let mut any = false;
        for index in 0..self.clients.len() {
            let Some(c) = self.clients[index].as_mut() else {
                continue;
            };
            if c.end == End::Serving && which(c) {
                c.end = End::Monoio;
                any = true;
                self.progress(worker, index as u32);
            }
        }
        if any {
            self.submit();
        }
    }

    /// Requests answered since the last call.
    fn take_answered(&mut self) -> usize {
        std::mem::take(&mut self.answered)
    }

    /// Nothing is left on the ring and nothing more will come.
    fn finished(&self, worker: &Rc<Worker>) -> bool {
        worker.stopping.get() && self.clients.iter().all(Option::is_none)
    }

    /// Submits, takes every completion there is and handles it: how many there were (at least
    /// one while entries wait in the backlog, so the loop turns again instead of sleeping).
    fn turn(&mut self, worker: &Rc<Worker>) -> usize {
        self.turning = true;
        self.ring.buffers.publish();
        self.ring.unload_backlog();
        let (queued, pending) = {
            let mut sq = self.ring.uring.submission();
            sq.sync();
            (sq.len() as u32, sq.taskrun() || sq.cq_overflow())
        };
        // Enter only with something to submit or completions the kernel holds back (its task
        // work runs on every syscall of this thread, monoio's included, and posts them): a
        // turn that only reads completions costs no syscall.
        if queued > 0 || pending {
            // GETEVENTS, no wait.
            // SAFETY: `queued` entries are in the submission queue; no argument struct is passed.
            let entered = unsafe {
                self.ring
                    .uring
                    .submitter()
                    .enter::<libc::sigset_t>(queued, 0, 1, None)
            };
            // EINTR or EBUSY: the next turn enters again; nothing else is expected of it.
            let _ = entered;
        }
        let mut completions = std::mem::take(&mut self.completions);
        completions.clear();
        completions.extend(
            self.ring
                .uring
                .completion()
                .take(TURN_COMPLETIONS)
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        self.look_ahead(worker, &completions);
        for &(data, result, flags) in &completions {
            let index = (data >> 2) as u32;
            match data & 3 {
                RECV => self.received(worker, index, result, flags),
                SEND => self.sent(worker, index, result),
                _ => {
                    if let Some(c) = self.client(index) {
                        c.cancelling = false;
                        self.progress(worker, index);
                    }
                }
            }
        }
        let count = completions.len();
        self.completions = completions;
        self.turning = false;
        if let Some(wall) = self.wall.take() {
            let answers = std::mem::take(&mut self.turn_answers);
            super::super::admin::served(worker.counters(), answers, wall);
        }
        count + usize::from(!self.ring.backlog.is_empty())
    }

    /// Starts loading what serving the requests of this turn's receives reads, when the
    /// recording is large enough for that to pay ([`Lookahead`]): each request that a receive
    /// brings whole to a client with nothing pending.
    fn look_ahead(&mut self, worker: &Rc<Worker>, completions: &[(u64, i32, u32)]) {
        let shared = &worker.shared;
        let Lane {
            clients,
            current,
            ring,
            wall,
            ..
        } = self;
        let replayer = in_force(current, shared);
        let wanted = match shared.serve.look_ahead {
            LookAhead::Auto => replayer.looks_ahead(),
            LookAhead::Always => true,
            LookAhead::Never => false,
        };
        if !wanted {
            return;
        }
        let leg = Leg::default();
        let routing = leg.routing(shared);
        let mut batch = Lookahead::default();
        for &(data, result, flags) in completions {
            if data & 3 != RECV {
                continue;
            }
            let (Ok(len @ 1..), Some(bid)) =
                (usize::try_from(result), cqueue::buffer_select(flags))
            else {
                continue;
            };
            let Some(c) = client_at(clients, (data >> 2) as u32) else {
                continue;
            };
            if !c.input.is_empty()
                || c.sniff
                || c.sniff_tls
                || c.tls.is_some()
                || c.h2.is_some()
                || c.end != End::Serving
            {
                continue;
            }
            if let Some(bytes) = ring.buffers.received(bid, len) {
                exchange::look_ahead(replayer, routing, bytes, &mut batch);
            }
            if batch.is_full() {
                break;
            }
        }
        if !batch.is_empty() {
            // The service time of the turn's answers starts before their look-ahead.
            wall.get_or_insert_with(clock::now);
            let found = batch.fetch(replayer) as u64;
            Counters::add(&worker.counters().looked_ahead, found);
        }
    }

    fn client(&mut self, index: u32) -> Option<&mut Client> {
        client_at(&mut self.clients, index)
    }

    /// A receive completed: `result` bytes in the buffer `flags` names, or the end, or an error.
    fn received(&mut self, worker: &Rc<Worker>, index: u32, result: i32, flags: u32) {
        let bid = cqueue::buffer_select(flags);
        let Some(c) = client_at(&mut self.clients, index) else {
            if let Some(bid) = bid {
                self.ring.buffers.give(bid);
            }
            return;
        };
        if !cqueue::more(flags) {
            c.receiving = false;
        }
        if let Some(bid) = bid {
            if let (Ok(len @ 1..), Some(bytes)) = (
                usize::try_from(result),
                self.ring.buffers.received(bid, result.max(0) as usize),
            ) {
                debug_assert_eq!(bytes.len(), len);
                if c.tls.is_some() {
                    open_records(worker, &mut self.current, c, bytes);
                } else {
                    c.input.extend_from_slice(bytes);
                }
                c.received = true;
            }
            self.ring.buffers.give(bid);
        }
        match result {
            1.. => {}
            0 => c.eof = true,
            // Out of buffers (re-armed by `progress`), or the cancel of a hand-off.
            e if e == -libc::ENOBUFS || e == -libc::ECANCELED => {}
            // The fixed-file slot was not set (the update failed): use the descriptor.
            e if e == -libc::EBADF && c.fixed && !c.received => c.fixed = false,
            e if e == -libc::EINVAL && !c.received => {
                // This kernel refuses a multishot receive: this connection and later ones are
                // served by monoio.
                self.refused = true;
                if c.end == End::Serving {
                    c.end = End::Monoio;
                }
            }
            _ => c.eof = true,
        }
        self.progress(worker, index);
    }

    /// A send completed with `result` bytes written (or an error).
    fn sent(&mut self, worker: &Rc<Worker>, index: u32, result: i32) {
        let Some(c) = self.client(index) else {
            return;
        };
        c.sending = false;
        match usize::try_from(result) {
            Ok(n @ 1..) => {
                let all = match c.tls.as_deref_mut() {
                    Some(tls) => tls.written(n),
                    None => c.outbox.written(n),
                };
                if all {
                    c.conn.flushed();
                } else {
                    self.send_rest(index);
                    return;
                }
            }
            // The client is gone (or reset by `--send-timeout`): drop what is pending.
            _ => {
                c.outbox.written(usize::MAX);
                if let Some(tls) = c.tls.as_deref_mut() {
                    tls.written(usize::MAX);
                }
                c.eof = true;
                c.end = End::Close;
            }
        }
        self.progress(worker, index);
    }

    /// Takes a client as far as it goes: serve what has arrived, send, receive more, or end it
    /// once its operations have completed.
    fn progress(&mut self, worker: &Rc<Worker>, index: u32) {
        let Some(c) = client_at(&mut self.clients, index) else {
            return;
        };
        if c.sending {
            if c.receiving && !c.cancelling && c.input.len() > INPUT_HIGH {
                Self::cancel(&mut self.ring, index, c);
            }
            return;
        }
        if c.end == End::Serving {
            if worker.stopping.get() || c.slot.expired.get() {
                c.end = End::Monoio;
            } else if c.h2.is_some() || !c.input.is_empty() {
                if c.h2.is_none() {
                    self.serve(worker, index);
                }
                // Served as HTTP/2 (an h2c preface may just have been told).
                if self
                    .client(index)
                    .is_some_and(|c| c.h2.is_some() && !c.sending && c.end == End::Serving)
                {
                    self.serve_h2(worker, index);
                }
                let Some(c) = self.client(index) else {
                    return;
                };
                if c.sending {
                    return;
                }
            }
        }
        let Some(c) = client_at(&mut self.clients, index) else {
            return;
        };
        // Records the TLS session queued on its own (its handshake, an alert, a ticket) go
        // out before anything else becomes of the client.
        if c.tls.as_deref().is_some_and(RingTls::has_output) && send(&mut self.ring, index, c) {
            return;
        }
        if c.end == End::Serving && c.eof {
            // The client closed its side with nothing left to answer.
            c.end = End::Close;
        }
        if c.end == End::Serving {
            if !c.receiving && !c.cancelling {
                let recv = on_socket!(c, index, |t| opcode::RecvMulti::new(t, GROUP).build())
                    .user_data((u64::from(index) << 2) | RECV);
                c.receiving = true;
                self.ring.push(recv);
            }
            // The connection's timer. HTTP/1's Conn: a started head must arrive whole within
            // the header timeout, a body must keep arriving, an idle connection gets the idle
            // timeout (so do first bytes that do not yet tell TLS from plain HTTP). An HTTP/2
            // session: the SETTINGS acknowledgement's deadline and the idle timeout.
            // A TLS handshake must end within the header timeout of its ClientHello.
            let deadline = match (&mut c.h2, c.tls.as_deref()) {
                (_, Some(tls)) if !tls.open => ticks_until(tls.handshake_until),
                (Some(session), _) => session.deadline(worker, true),
                (None, _) => {
                    let pending = if c.sniff_tls { 0 } else { c.input.len() };
                    c.conn.wait(since_start(worker), pending);
                    ticks_until(c.conn.poll_timeout())
                }
            };
            c.slot.deadline.set(deadline);
            return;
        }
        if c.receiving {
            if !c.cancelling {
                Self::cancel(&mut self.ring, index, c);
            }
            return;
        }
        if !c.cancelling {
            self.finish(worker, index);
        }
    }

    /// Cancels the client's receive (its last completion, `ECANCELED`, ends it).
    fn cancel(ring: &mut Ring, index: u32, c: &mut Client) {
        let cancel = opcode::AsyncCancel::new((u64::from(index) << 2) | RECV)
            .build()
            .user_data((u64::from(index) << 2) | CANCEL);
        c.cancelling = true;
        ring.push(cancel);
    }

    /// One turn of the client's requests ([`Turn::next`], as monoio's loop runs it): answers
    /// into the outbox, then its send.
    fn serve(&mut self, worker: &Rc<Worker>, index: u32) {
        let shared = &worker.shared;
        let Lane {
            clients,
            current,
            ring,
            wall,
            turning,
            answered: answered_total,
            turn_answers,
            ..
        } = self;
        let now = turn_wall(*turning, wall);
        let replayer = in_force(current, shared);
        let Some(c) = client_at(clients, index) else {
            return;
        };
        if c.sniff_tls {
            match detect(&c.input) {
                // Told within the idle timeout of the accept, as monoio's `first_bytes` tells.
                Detected::NeedMore => return,
                // A ClientHello: the handshake runs here, then HTTP inside it.
                Detected::Tls => {
                    c.sniff_tls = false;
                    c.sniff = false;
                    let fallback = fallback_identity(shared, None, local_address(c.fd));
                    c.tls = Some(Box::new(RingTls {
                        session: TlsSession::new(fallback),
                        records: Vec::new(),
                        sent: 0,
                        stage: Vec::new(),
                        open: false,
                        handshake_until: since_start(worker) + shared.timeouts.head,
                        failure: None,
                    }));
                    let hello = std::mem::replace(&mut c.input, Vec::with_capacity(INPUT_FIRST));
                    open_records(worker, current, c, &hello);
                    return;
                }
                _ => c.sniff_tls = false,
            }
        }
        if c.sniff {
            match crate::http2::preface(&c.input) {
                crate::http2::Preface::No => c.sniff = false,
                crate::http2::Preface::NeedMore => return,
                // h2c with prior knowledge: served here by an HTTP/2 session ([`Lane::serve_h2`]).
                crate::http2::Preface::Yes => {
                    c.sniff = false;
                    let session =
                        Session::new(worker, c.slot.peer, Leg::default(), replayer.clone());
                    c.h2 = Some(Box::new(session));
                    return;
                }
            }
        }
        c.outbox.serve_from(replayer);
        let leg = Leg {
            tls: c.tls.is_some(),
            tunnel: None,
        };
        let routing = leg.routing(shared);
        // A CONNECT opens a tunnel on plain TCP only, as monoio's loop has it.
        let tunnels = shared.reverse.is_none() && !leg.tls;
        let turn = Turn {
            worker,
            replayer,
            routing,
            peer: c.slot.peer,
            now,
            stopping: false,
            keep_alive: replayer.keep_alive(),
            tunnels,
            hands_off: true,
            repeats: worker.repeat_context(replayer, &routing, tunnels, false, false),
        };
        let mut pos = 0;
        let mut answered = 0;
        let mut after = After::Continue;
        let mut client_done = false;
        loop {
            let next = turn.next(
                &mut c.conn,
                &c.input,
                &mut pos,
                &mut c.outbox,
                &mut c.scratch,
            );
            match next {
                Next::NeedMore => break,
                // The outbox is full: the rest of the input is served once it is written.
                Next::Flush => break,
                Next::Close => {
                    after = After::Close;
                    break;
                }
                Next::Answered {
                    after: then,
                    client_done: done,
                } => {
                    answered += 1;
                    after = then;
                    client_done = done;
                    if !matches!(after, After::Continue) {
                        break;
                    }
                }
                // A forward or a CONNECT, left unparsed (a turn that hands off never gets the
                // other two).
                Next::HandOff | Next::Connect(_) | Next::Forward(_) => {
                    c.end = End::Monoio;
                    break;
                }
            }
        }
        count_answers(
            worker,
            *turning,
            turn_answers,
            answered_total,
            answered,
            now,
        );
        match Then::of(after, client_done, c.input.len() - pos) {
            Then::Serve => {}
            Then::Close => c.end = End::Close,
            Then::Linger => c.end = End::Linger,
        }
        take_input(&mut c.input, pos);
        if !c.outbox.is_empty() {
            send(ring, index, c);
        }
    }

    /// One turn of an HTTP/2 client: its session takes what has arrived and answers it, and the
    /// frames it scheduled go out. A forward the session decided goes to monoio with it, once
    /// what is queued here is written; so does a session that is done (to linger and close).
    fn serve_h2(&mut self, worker: &Rc<Worker>, index: u32) {
        let Lane {
            clients,
            current,
            ring,
            wall,
            turning,
            answered: answered_total,
            turn_answers,
            ..
        } = self;
        let replayer = in_force(current, &worker.shared);
        let Some(c) = client_at(clients, index) else {
            return;
        };
        let Some(session) = c.h2.as_deref_mut() else {
            return;
        };
        if !c.input.is_empty() {
            let now = turn_wall(*turning, wall);
            session.follow(replayer);
            let (used, answered) = session.take(worker, &c.input, now);
            take_input(&mut c.input, used);
            count_answers(
                worker,
                *turning,
                turn_answers,
                answered_total,
                answered,
                now,
            );
        }
        c.outbox.serve_from(session.replayer());
        session.stage(&mut c.outbox);
        if session.has_forwards() {
            c.end = End::Monoio;
        } else if session.is_done() {
            c.end = End::Linger;
        }
        if !c.outbox.is_empty() {
            send(ring, index, c);
        }
    }

    /// A client's answers' rest, after a partial send.
    fn send_rest(&mut self, index: u32) {
        let Lane { clients, ring, .. } = self;
        if let Some(c) = client_at(clients, index) {
            send(ring, index, c);
        }
    }

    /// A client whose operations have all completed leaves the ring: closed, or handed to monoio.
    fn finish(&mut self, worker: &Rc<Worker>, index: u32) {
        let Some(c) = self.clients.get_mut(index as usize).and_then(Option::take) else {
            return;
        };
        self.free.push(index);
        if c.fixed {
            // Before any later client of this index is put in the slot (both in queue order).
            set_slot(&mut self.ring, index, &NO_FILE);
        }
        let Client {
            fd,
            id,
            slot,
            conn,
            input,
            scratch,
            sniff_tls,
            sniff,
            h2,
            tls,
            eof,
            end,
            ..
        } = *c;
        slot.deadline.set(u64::MAX);
        let tls = match tls {
            // The handshake did not end here (it failed, the client left, its deadline passed,
            // the stop came): told as monoio's handshake tells it, and closed.
            Some(t) if !t.open => {
                let failure = t.failure.unwrap_or(if eof {
                    HandshakeError::Closed
                } else {
                    HandshakeError::Cancelled
                });
                handshake_failed(worker, slot.peer, t.session.sni(), &failure);
                close(worker, fd, id);
                return;
            }
            t => t,
        };
        if end == End::Close {
            close(worker, fd, id);
            return;
        }
        // SAFETY: as above: the socket is handed over whole, to be closed by its new owner.
        let std = unsafe { std::net::TcpStream::from_raw_fd(fd) };
        let stream = match TcpStream::from_std(std) {
            Ok(stream) => stream,
            Err(_) => {
                // `from_std` dropped (closed) the socket it could not take.
                closed(worker, id);
                return;
            }
        };
        let worker = worker.clone();
        if end != End::Linger {
            Counters::bump(&worker.counters().ring_handed_over);
        }
        let rest = match (end, h2) {
            (End::Linger, _) => Rest::Linger(input),
            // An HTTP/2 session: monoio's driver goes on with it (a forward, a timer, the stop).
            (_, Some(session)) => Rest::H2(session, input),
            _ => Rest::Http1(Box::new(Resume {
                conn,
                input,
                scratch,
                told: !sniff || tls.is_some(),
            })),
        };
        let w = worker.clone();
        let task: Pin<Box<dyn Future<Output = ()>>> = match (tls, rest) {
            // Not yet told from TLS (a stop, timer or refusal before the first bytes told):
            // monoio's `detected` tells and serves it.
            (None, Rest::Http1(start)) if sniff_tls => Box::pin(async move {
                let peer = slot.peer;
                super::detected(&w, &slot, stream, peer, None, start.input).await;
            }),
            (None, rest) => Box::pin(async move {
                go_on(&w, &slot, stream, Leg::default(), rest).await;
            }),
            (Some(t), rest) => Box::pin(async move {
                let Some(server) = w.tls.as_ref() else {
                    return;
                };
                let stream = ClientTls::resume(stream, server, t.session);
                let leg = Leg {
                    tls: true,
                    tunnel: None,
                };
                go_on(&w, &slot, stream, leg, rest).await;
            }),
        };
        monoio::spawn(async move {
            task.await;
            closed(&worker, id);
        });
    }
}

/// Closes a client's socket that leaves the ring (no operation of it in flight).
fn close(worker: &Worker, fd: RawFd, id: u64) {
    // SAFETY: `fd` is the client's socket, owned by the lane, with no operation in flight; it
    // is closed once, here.
    unsafe {
        libc::close(fd);
    }
    closed(worker, id);
}

impl Drop for Lane {
    fn drop(&mut self) {
        // A client with an operation still in flight (the grace period ran out) keeps its
        // buffers, and the provided buffers stay too: the kernel may still write them until the
        // ring's teardown ends, after this thread closed it.
        let mut in_flight = false;
        for c in self.clients.iter_mut().filter_map(Option::take) {
            if c.receiving || c.sending || c.cancelling {
                in_flight = true;
                std::mem::forget(c);
            } else {
                // SAFETY: the client's socket, with nothing in flight, closed once.
                unsafe {
                    libc::close(c.fd);
                }
            }
        }
        if in_flight {
            self.ring.buffers.leak();
        }
    }
}

/// The wall clock a client's turn answers by: read once per ring turn while the ring is turning
/// (kept in `wall`), else now.
fn turn_wall(turning: bool, wall: &mut Option<SystemTime>) -> SystemTime {
    if turning {
        *wall.get_or_insert_with(clock::now)
    } else {
        clock::now()
    }
}

/// Counts `answered` requests of one client's turn read at `now`: in the ring's turn's
/// figures when the ring is turning (told once the turn ends), else at once.
fn count_answers(
    worker: &Worker,
    turning: bool,
    turn_answers: &mut u64,
    answered_total: &mut usize,
    answered: u64,
    now: SystemTime,
) {
    if turning {
        *turn_answers += answered;
    } else {
        super::super::admin::served(worker.counters(), answered, now);
    }
    *answered_total =
        answered_total.saturating_add(usize::try_from(answered).unwrap_or(usize::MAX));
}

/// Submits the client's pending output (one send, or one vectored send for referenced bodies;
/// over TLS, the records it is sealed into): whether a send went to the ring.
fn send(ring: &mut Ring, index: u32, c: &mut Client) -> bool {
    let data = (u64::from(index) << 2) | SEND;
    let send = if let Some(tls) = c.tls.as_deref_mut() {
        if tls.seal(&mut c.outbox).is_err() {
            // Only a session that is not open refuses plaintext: nothing more is sent.
            c.eof = true;
            c.end = End::Close;
        }
        let rest = &tls.records[tls.sent..];
        if rest.is_empty() {
            return false;
        }
        on_socket!(c, index, |t| opcode::Send::new(
            t,
            rest.as_ptr(),
            clamp(rest.len())
        )
        .flags(libc::MSG_NOSIGNAL)
        .build())
    } else {
        if c.outbox.is_empty() {
            return false;
        }
        match c.outbox.pending() {
            Pending::Bytes(ptr, len) => {
                on_socket!(c, index, |t| opcode::Send::new(t, ptr, clamp(len))
                    .flags(libc::MSG_NOSIGNAL)
                    .build())
            }
            Pending::Iovecs(ptr, count) => {
                // A socket's sendmsg rather than a file's writev: no read-write preparation or
                // fsnotify per answer (perf: ≈ 1.5 % fewer kernel samples with 16 KiB answers).
                c.message.msg_iov = ptr.cast_mut();
                c.message.msg_iovlen = count;
                on_socket!(c, index, |t| opcode::SendMsg::new(t, &c.message)
                    .flags(libc::MSG_NOSIGNAL as u32)
                    .build())
            }
        }
    };
    c.sending = true;
    // No read deadline while the answer goes out (`--send-timeout` watches it).
    c.slot.deadline.set(u64::MAX);
    ring.push(send.user_data(data));
    true
}

/// Opens the TLS records in `bytes` into the client's input. A failure ends the client once its
/// alert is sent; the end of the handshake sets up the protocol its ALPN agreed (an HTTP/2
/// session for `h2`, else HTTP/1 on `conn`).
fn open_records(
    worker: &Rc<Worker>,
    current: &mut Option<Cache<Recordings, Arc<Replayer>>>,
    c: &mut Client,
    bytes: &[u8],
) {
    let (Some(tls), Some(server)) = (c.tls.as_deref_mut(), worker.tls.as_ref()) else {
        return;
    };
    if tls.session.failed() || tls.session.peer_closed() {
        // Bytes after a failure or the peer's close_notify: nothing to open (a failed
        // handshake must stay one, for `finish` to count it).
        return;
    }
    let handshaking = !tls.open;
    if let Err(e) = tls.receive(server, bytes, &mut c.input) {
        if handshaking {
            tls.failure = Some(HandshakeError::Tls(e));
        }
        c.eof = true;
        c.end = End::Close;
        return;
    }
    if tls.session.peer_closed() {
        c.eof = true;
    }
    if handshaking && !tls.session.is_handshaking() {
        tls.open = true;
        if tls.session.alpn() == Some(b"h2") {
            let replayer = in_force(current, &worker.shared).clone();
            let leg = Leg {
                tls: true,
                tunnel: None,
            };
            c.h2 = Some(Box::new(Session::new(worker, c.slot.peer, leg, replayer)));
        }
    }
}

/// The local address of the socket `fd` (the certificate's name for a ClientHello without SNI).
fn local_address(fd: RawFd) -> Option<std::net::SocketAddr> {
    // SAFETY: `fd` is a client's open socket, borrowed for one call: ManuallyDrop never closes it.
    let stream = std::mem::ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(fd) });
    stream.local_addr().ok()
}

/// What monoio goes on with for a client the ring hands over.
enum Rest {
    /// Close after lingering, with the buffer for what it drains.
    Linger(Vec<u8>),
    /// Serve the HTTP/2 session from the unread input on.
    H2(Box<Session>, Vec<u8>),
    /// Serve HTTP/1 from the parse state and the input.
    Http1(Box<Resume>),
}

/// Serves `rest` over `stream` (the client's socket, or its TLS over that) in monoio.
async fn go_on<S: Transport>(worker: &Worker, slot: &Slot, stream: S, leg: Leg, rest: Rest) {
    match rest {
        Rest::Linger(input) => linger_close(stream, input).await,
        Rest::H2(session, input) => super::h2::resume(worker, slot, stream, *session, input).await,
        Rest::Http1(start) => {
            super::connection(worker, slot, stream, slot.peer, leg, *start).await;
        }
    }
}

/// Queues the update that sets fixed-file slot `index` to the descriptor `fd` points at
/// ([`NO_FILE`] clears it); `fd` must stay valid until the entry is submitted.
fn set_slot(ring: &mut Ring, index: u32, fd: *const RawFd) {
    // `index` is below the table's size, at most FIXED_FILES.
    let update = opcode::FilesUpdate::new(fd, 1)
        .offset(index as i32)
        .build()
        .user_data(NOBODY);
    ring.push(update);
}

/// The size of the ring's fixed-file table on this kernel: [`FIXED_FILES`], or the descriptor
/// limit when lower (the kernel refuses a larger table; no more sockets can be open anyway), or
/// 0 before [`FIXED_FILES_SINCE`] or when the release cannot be read.
fn fixed_file_slots() -> u32 {
    // SAFETY: uname fills the struct it is given; a zeroed utsname is a valid one.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is ours, and uname writes only into it.
    if unsafe { libc::uname(&mut name) } != 0 {
        return 0;
    }
    let release: Vec<u8> = name
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    if kernel_release(&release).is_none_or(|v| v < FIXED_FILES_SINCE) {
        return 0;
    }
    super::descriptor_limit()
        .and_then(|limit| u32::try_from(limit.min(u64::from(FIXED_FILES))).ok())
        .unwrap_or(0)
}

/// The major and minor version a kernel release string starts with (`6.18.44-fc` → (6, 18)).
fn kernel_release(release: &[u8]) -> Option<(u32, u32)> {
    let text = std::str::from_utf8(release).ok()?;
    let mut parts = text.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// A length for a submission entry (an outbox never holds 4 GiB at once).
fn clamp(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// The client at `index`, if it is still on the ring.
fn client_at(clients: &mut [Option<Box<Client>>], index: u32) -> Option<&mut Client> {
    clients.get_mut(index as usize)?.as_deref_mut()
}

/// How much work (completions handled plus requests answered) busy turns in a row may do,
/// yielding to monoio after each, before the lane's task waits on the eventfd once: monoio runs
/// its timers (the sweeper, hence the stop and every timeout) only when it parks, which it does
/// only once no task is ready, and a lane busy on every turn would otherwise always be ready.
/// Counted in work rather than turns (one turn of a pipelining flood answers thousands) and
/// without a clock read: about 1 400 small requests, ≈ 2 ms of a release build.
const BUSY_WORK: usize = 4096;

/// The most completions one turn handles (the rest stay in the completion queue for the next):
/// a turn's length, and so the longest the worker's other tasks wait, stays bounded when a burst
/// fills every provided buffer at once.
const TURN_COMPLETIONS: usize = 256;

/// What the lane's task does after a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterTurn {
    /// Yield to monoio's other tasks and turn again.
    Yield,
    /// Wait on the eventfd: monoio parks (and runs its timers) until the ring posts.
    Wait,
}

/// The work of the lane's current run of busy turns (see [`BUSY_WORK`]).
#[derive(Debug, Default)]
struct Pacer {
    work: usize,
}

impl Pacer {
    /// After a turn that handled `completed` completions and answered `answered` requests.
    fn after(&mut self, completed: usize, answered: usize) -> AfterTurn {
        if completed == 0 {
            self.work = 0;
            return AfterTurn::Wait;
        }
        self.work = self.work.saturating_add(completed).saturating_add(answered);
        if self.work >= BUSY_WORK {
            self.work = 0;
            AfterTurn::Wait
        } else {
            AfterTurn::Yield
        }
    }
}

/// Yields once to monoio's other tasks (its own ring is then submitted and reaped).
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// The lane's task: turns while completions come, yielding to monoio's tasks between turns;
/// asleep on the eventfd when the ring has nothing; ends once the worker stops and the lane is
/// empty.
pub(super) async fn drive(worker: Rc<Worker>, wake: monoio::fs::File) {
    let mut count = vec![0u8; 8];
    let mut pacer = Pacer::default();
    loop {
        let (completed, answered, finished) = {
            let mut lane = worker.lane.borrow_mut();
            let Some(lane) = lane.as_mut() else {
                return;
            };
            let completed = lane.turn(&worker);
            (completed, lane.take_answered(), lane.finished(&worker))
        };
        if finished {
            return;
        }
        if pacer.after(completed, answered) == AfterTurn::Yield {
            // monoio's other tasks run, and its ring is entered (which also posts this ring's
            // completions): yielding after every turn measured fewer enters than every 4 to 64.
            YieldNow(false).await;
            continue;
        }
        // Nothing completed, or BUSY_WORK done while busy: submit what the turn queued, then
        // sleep in monoio until the ring posts. The eventfd counts completions posted since its
        // last read: ones already waiting in the queue (a turn takes at most TURN_COMPLETIONS)
        // and backlog entries announce nothing, so then it is written here, and the read returns
        // at monoio's next park, after its timers.
        let leftovers = worker
            .lane
            .borrow_mut()
            .as_mut()
            .is_some_and(Lane::submit_before_sleep);
        if leftovers {
            // SAFETY: `wake` is this lane's open eventfd; eventfd_write takes no pointer.
            unsafe {
                libc::eventfd_write(wake.as_raw_fd(), 1);
            }
        }
        let (res, back) = wake.read_at(count, 0).await;
        count = back;
        if res.is_err() {
            monoio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_release_gives_its_major_and_minor_version() {
        assert_eq!(kernel_release(b"6.18.44-fc-v1300"), Some((6, 18)));
        assert_eq!(kernel_release(b"6.1.0-13-amd64"), Some((6, 1)));
        assert_eq!(kernel_release(b"5.15"), Some((5, 15)));
        assert_eq!(kernel_release(b"6"), None);
        assert_eq!(kernel_release(b""), None);
        assert!((6, 12) < FIXED_FILES_SINCE && (6, 13) >= FIXED_FILES_SINCE);
        assert!((7, 0) > FIXED_FILES_SINCE);
    }

    /// A ring the kernel refuses to enter until it is enabled (as an enter that keeps failing).
    fn disabled_ring(entries: u32) -> Option<Ring> {
        let uring = IoUring::builder().setup_r_disabled().build(entries).ok()?;
        let buffers = Buffers::new(&uring).ok()?;
        Some(Ring {
            uring,
            buffers,
            backlog: Vec::new(),
        })
    }

    #[test]
    fn a_lane_busy_on_every_turn_waits_once_per_busy_work_so_monoio_runs_its_timers() {
        let mut pacer = Pacer::default();
        let mut waits = Vec::new();
        // Turns of 6 completions and 2 answers: the one that reaches BUSY_WORK waits.
        let every = BUSY_WORK / 8;
        for turn in 0..3 * every {
            if pacer.after(6, 2) == AfterTurn::Wait {
                waits.push(turn);
            }
        }
        assert_eq!(waits, [every - 1, 2 * every - 1, 3 * every - 1]);
        // One turn of a flood (few completions, many answers) waits at once.
        assert_eq!(pacer.after(40, BUSY_WORK), AfterTurn::Wait);
        // A turn that found nothing waits and starts the count again.
        assert_eq!(pacer.after(1, 0), AfterTurn::Yield);
        assert_eq!(pacer.after(0, 0), AfterTurn::Wait);
        assert_eq!(pacer.after(BUSY_WORK - 2, 0), AfterTurn::Yield);
        assert_eq!(pacer.after(1, 1), AfterTurn::Wait);
    }

    #[test]
    fn entries_that_find_the_queue_full_wait_in_order_and_one_submit_sends_them_all() {
        let Some(mut ring) = disabled_ring(4) else {
            eprintln!("skipped: this kernel has no io_uring with disabled rings");
            return;
        };
        for data in 0..7u64 {
            ring.push(opcode::Nop::new().build().user_data(data));
        }
        // Four fit the queue; the enter that would make room fails, so three wait, none lost.
        assert_eq!(ring.backlog.len(), 3);
        assert!(
            ring.has_leftovers(),
            "a backlog is work the eventfd will not announce"
        );
        ring.submit();
        assert_eq!(ring.backlog.len(), 3, "a refused enter moves nothing");
        ring.uring.submitter().register_enable_rings().unwrap();
        // One submit takes the queue and then the backlog, as room is made.
        ring.submit();
        assert!(ring.backlog.is_empty());
        assert!(
            ring.uring.submission().is_empty(),
            "nothing moved in is left unsubmitted"
        );
        ring.uring.submit_and_wait(7).unwrap();
        assert!(ring.has_leftovers(), "completions wait in the queue");
        let completed: Vec<u64> = ring.uring.completion().map(|c| c.user_data()).collect();
        assert_eq!(completed, [0, 1, 2, 3, 4, 5, 6]);
        assert!(!ring.has_leftovers());
    }
}
