//! One connection's pending output: rendered bytes plus large bodies referenced straight from
//! the recording's mapping, sent with one vectored write (`writev`/`IORING_OP_WRITEV`).
//!
//! Small bodies are copied into the byte buffer (one plain send is cheaper than an iovec list for
//! them); bodies of [`MAPPED_BODY_MIN`] bytes or more are referenced, not copied, and so are the
//! repeat cache's whole answers (its wires). What is one piece in the end goes out as one plain
//! send.

use std::rc::Rc;
use std::sync::Arc;

use monoio::buf::IoVecBuf;
use monoio::io::{AsyncWriteRent, AsyncWriteRentExt};

use crate::replay::Replayer;

/// Bodies at least this long are sent from the mapping instead of being copied.
pub const MAPPED_BODY_MIN: usize = 4096;

/// The byte buffer's first capacity: one small answer's head and body (a few hundred bytes);
/// it grows for pipelined or larger answers. Small, so a connection's memory stays together.
const OUTBOX_FIRST: usize = 2 * 1024;

/// The most segments one `writev` accepts (Linux's `UIO_MAXIOV`).
const IOV_MAX: usize = 1024;

/// A part of the output, in order.
#[derive(Debug, Clone)]
enum Segment {
    /// `bytes[range]`.
    Bytes(usize, usize),
    /// Memory of the recording (kept alive by the outbox's `Arc<Replayer>`).
    Mapped(*const u8, usize),
    /// A whole answer of the repeat cache, held until it is written.
    Wire(Rc<[u8]>),
}

/// Pending output of one connection.
pub struct Outbox {
    /// Rendered bytes (heads, small bodies, tails, status answers).
    pub bytes: Vec<u8>,
    /// Parts in order when any body is referenced; empty in the common all-bytes case.
    segments: Vec<Segment>,
    /// Start of the bytes not yet covered by a segment.
    run_start: usize,
    /// iovec storage reused between writes.
    iovecs: Vec<libc::iovec>,
    /// [`Outbox::pending`]: the iovecs already written.
    sent_iovecs: usize,
    /// Keeps the mapping that `Mapped` segments point into alive.
    owner: Arc<Replayer>,
}

impl Outbox {
    /// An empty outbox whose referenced bodies belong to `owner`'s recording.
    pub fn new(owner: Arc<Replayer>) -> Outbox {
        Outbox {
            bytes: Vec::with_capacity(OUTBOX_FIRST),
            segments: Vec::new(),
            run_start: 0,
            iovecs: Vec::new(),
            sent_iovecs: 0,
            owner,
        }
    }

    /// Takes later bodies from `owner`'s recording (after a recording swap). Only between
    /// writes: referenced bodies already pending keep pointing into the old mapping.
    pub fn serve_from(&mut self, owner: &Arc<Replayer>) {
        if !Arc::ptr_eq(&self.owner, owner) {
            debug_assert!(self.segments.is_empty(), "a swap between writes only");
            if self.segments.is_empty() {
                self.owner = owner.clone();
            }
        }
    }

    /// Nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty() && self.segments.is_empty()
    }

    /// Appends a body from the recording: copied when small, referenced when large.
    pub fn push_body(&mut self, body: &[u8]) {
        if body.len() < MAPPED_BODY_MIN || !self.owns(body) {
            self.bytes.extend_from_slice(body);
            return;
        }
        self.close_run();
        self.segments
            .push(Segment::Mapped(body.as_ptr(), body.len()));
    }

    /// Whether `body` lies inside the recording's files (so the mapping outlives the write).
    fn owns(&self, body: &[u8]) -> bool {
        self.owner.recording().span_of(body).is_some()
    }

    /// Appends a whole answer kept by the repeat cache, by reference.
    pub fn push_wire(&mut self, wire: &Rc<[u8]>) {
        self.close_run();
        self.segments.push(Segment::Wire(wire.clone()));
    }

    fn close_run(&mut self) {
        if self.bytes.len() > self.run_start {
            self.segments
                .push(Segment::Bytes(self.run_start, self.bytes.len()));
            self.run_start = self.bytes.len();
        }
    }

    /// Writes everything pending to `stream` (one send, or one vectored send when bodies are
    /// referenced, repeated only on partial writes) and empties the outbox.
    pub async fn flush(&mut self, stream: &mut impl AsyncWriteRent) -> std::io::Result<()> {
        if self.segments.is_empty() {
            let bytes = std::mem::take(&mut self.bytes);
            let (res, mut bytes) = stream.write_all(bytes).await;
            bytes.clear();
            self.bytes = bytes;
            return res.map(drop);
        }
        self.lay_out();
        let mut pending = Gather {
            iovecs: std::mem::take(&mut self.iovecs),
            first: 0,
            bytes: std::mem::take(&mut self.bytes),
            _owner: self.owner.clone(),
        };
        let mut result = Ok(());
        while pending.first < pending.iovecs.len() {
            let (res, back) = stream.writev(pending).await;
            pending = back;
            match res {
                Ok(0) => {
                    result = Err(std::io::ErrorKind::WriteZero.into());
                    break;
                }
                Ok(n) => pending.advance(n),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let Gather { iovecs, bytes, .. } = pending;
        self.bytes = bytes;
        self.iovecs = iovecs;
        self.clear();
        result
    }

    /// Hands every pending piece, in order, to `each` (a TLS session sealing them into records)
    /// and empties the outbox.
    pub fn drain(&mut self, mut each: impl FnMut(&[u8])) {
        if self.segments.is_empty() {
            each(&self.bytes);
        } else {
            self.close_run();
            for s in &self.segments {
                match s {
                    Segment::Bytes(start, end) => each(&self.bytes[*start..*end]),
                    // SAFETY: a body of the recording (checked by `owns`), whose mapping the
                    // outbox's `owner` keeps alive.
                    Segment::Mapped(ptr, len) => {
                        each(unsafe { std::slice::from_raw_parts(*ptr, *len) })
                    }
                    Segment::Wire(wire) => each(wire),
                }
            }
        }
        self.clear();
    }

    /// Closes the last run of bytes and lays every segment out as `iovecs`, in order.
    fn lay_out(&mut self) {
        self.close_run();
        self.iovecs.clear();
        for s in &self.segments {
            let (base, len) = match s {
                Segment::Bytes(start, end) => (self.bytes[*start..*end].as_ptr(), end - start),
                Segment::Mapped(ptr, len) => (*ptr, *len),
                Segment::Wire(wire) => (wire.as_ptr(), wire.len()),
            };
            self.iovecs.push(libc::iovec {
                iov_base: base as *mut libc::c_void,
                iov_len: len,
            });
        }
        self.sent_iovecs = 0;
    }

    /// Empties the outbox after a write (its buffers kept for the next).
    fn clear(&mut self) {
        self.bytes.clear();
        self.iovecs.clear();
        self.segments.clear();
        self.run_start = 0;
        self.sent_iovecs = 0;
    }
}

/// What a driver that submits its own sends (the worker's direct ring) writes next: the outbox must not
/// change until [`Outbox::written`] says all of it went.
#[derive(Debug, Clone, Copy)]
pub enum Pending {
    /// One contiguous run of bytes (the byte buffer, or the one piece left).
    Bytes(*const u8, usize),
    /// A vectored write of this many iovecs (at most `UIO_MAXIOV`).
    Iovecs(*const libc::iovec, usize),
}

impl Outbox {
    /// What to write next (call only when the outbox is not empty). Referenced bodies are laid
    /// out as iovecs once; later calls go on where [`Outbox::written`] left off.
    pub fn pending(&mut self) -> Pending {
        if self.segments.is_empty() {
            return Pending::Bytes(self.bytes.as_ptr(), self.bytes.len());
        }
        if self.iovecs.is_empty() {
            self.lay_out();
        }
        let rest = &self.iovecs[self.sent_iovecs..];
        match rest {
            // One piece (a repeat's wire, or what a partial send left): a plain send.
            [one] => Pending::Bytes(one.iov_base as *const u8, one.iov_len),
            _ => Pending::Iovecs(rest.as_ptr(), rest.len().min(IOV_MAX)),
        }
    }

    /// `n` bytes of [`Outbox::pending`] were written: true when nothing is left (the outbox is
    /// then empty and may take answers again).
    pub fn written(&mut self, n: usize) -> bool {
        if self.segments.is_empty() {
            if n >= self.bytes.len() {
                self.bytes.clear();
                return true;
            }
            // A partial send: rare (the socket buffer was full), so a move is fine.
            self.bytes.drain(..n);
            return false;
        }
        self.sent_iovecs = advance(&mut self.iovecs, self.sent_iovecs, n);
        if self.sent_iovecs < self.iovecs.len() {
            return false;
        }
        self.clear();
        true
    }
}

/// Skips `n` written bytes of `iovecs[first..]`; returns the first iovec not completely written.
fn advance(iovecs: &mut [libc::iovec], mut first: usize, mut n: usize) -> usize {
    while n > 0 && first < iovecs.len() {
        let iov = &mut iovecs[first];
        if n >= iov.iov_len {
            n -= iov.iov_len;
            first += 1;
        } else {
            // SAFETY: n < iov_len, so the advanced pointer stays inside the same buffer.
            iov.iov_base = unsafe { (iov.iov_base as *mut u8).add(n) } as *mut libc::c_void;
            iov.iov_len -= n;
            n = 0;
        }
    }
    first
}

/// The HTTP/1 renderer writes into the outbox: heads as bytes, large bodies by reference.
impl crate::exchange::Sink for Outbox {
    fn bytes(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    fn push_body(&mut self, body: &[u8]) {
        Outbox::push_body(self, body);
    }

    fn push_wire(&mut self, wire: &Rc<[u8]>) {
        Outbox::push_wire(self, wire);
    }
}

/// An iovec list handed to the runtime for one vectored write; owns what it points into.
struct Gather {
    iovecs: Vec<libc::iovec>,
    /// First iovec not completely written.
    first: usize,
    /// The byte buffer some iovecs point into (moved here so it cannot change while in flight).
    bytes: Vec<u8>,
    /// Keeps the recording's mapping alive while iovecs point into it.
    _owner: Arc<Replayer>,
}

impl Gather {
    /// Skips `n` written bytes.
    fn advance(&mut self, n: usize) {
        self.first = advance(&mut self.iovecs, self.first, n);
    }
}

// SAFETY: the iovecs point into `bytes` (a heap buffer owned by this value and not touched while
// the runtime holds it) and into the recording's mapping (kept alive by `_owner`); the iovec
// array itself is a Vec owned by this value whose heap storage does not move while it is held.
unsafe impl IoVecBuf for Gather {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iovecs[self.first..].as_ptr()
    }

    fn read_iovec_len(&self) -> usize {
        // One writev takes at most IOV_MAX segments (EINVAL beyond); the rest go in the next.
        (self.iovecs.len() - self.first).min(IOV_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ReplayOptions;
    use crate::flowfile::{LoadOptions, Recording};

    fn outbox() -> Outbox {
        let recording = Recording::from_bytes(Vec::new(), LoadOptions::default()).unwrap();
        Outbox::new(Arc::new(Replayer::new(
            Arc::new(recording),
            &ReplayOptions::default(),
        )))
    }

    /// What `pending` names, as bytes (the pointers are the outbox's, alive until `written`).
    fn named(pending: Pending) -> Vec<Vec<u8>> {
        // SAFETY: `pending` was just returned by a live outbox that has not changed since.
        unsafe {
            match pending {
                Pending::Bytes(ptr, len) => vec![std::slice::from_raw_parts(ptr, len).to_vec()],
                Pending::Iovecs(ptr, count) => std::slice::from_raw_parts(ptr, count)
                    .iter()
                    .map(|v| {
                        std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len).to_vec()
                    })
                    .collect(),
            }
        }
    }

    #[test]
    fn a_wire_alone_is_one_plain_send_and_pieces_after_a_partial_send_go_on_in_order() {
        let wire: Rc<[u8]> = Rc::from(&b"HTTP/1.1 200 OK\r\n\r\nbody"[..]);
        let mut out = outbox();
        out.push_wire(&wire);
        assert!(matches!(out.pending(), Pending::Bytes(ptr, 23) if ptr == wire.as_ptr()));
        assert_eq!(Rc::strong_count(&wire), 2, "held while it is sent");
        assert!(!out.written(9));
        assert_eq!(named(out.pending()), [b"200 OK\r\n\r\nbody".to_vec()]);
        assert!(out.written(14));
        assert!(out.is_empty());
        assert_eq!(Rc::strong_count(&wire), 1, "let go once written");

        // Bytes, a wire, bytes: three pieces; once the first two went, the last alone.
        out.bytes.extend_from_slice(b"a");
        out.push_wire(&wire);
        out.bytes.extend_from_slice(b"z");
        assert_eq!(
            named(out.pending()),
            [b"a".to_vec(), wire.to_vec(), b"z".to_vec()]
        );
        assert!(!out.written(1 + wire.len()));
        assert!(matches!(out.pending(), Pending::Bytes(_, 1)));
        assert!(out.written(1));
        let mut drained = Vec::new();
        out.push_wire(&wire);
        out.drain(|piece| drained.extend_from_slice(piece));
        assert_eq!(drained, &wire[..]);
        assert!(out.is_empty());
    }
}
