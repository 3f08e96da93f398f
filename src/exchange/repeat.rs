//! The HTTP/1 repeat cache: a request byte-identical to one a replay answered before, under the
//! same [`RepeatStamp`] and routing, is answered with the same flow without being parsed or
//! decided again, and with the same head bytes while its refreshed dates shift by the same
//! whole second ([`Replayer::head_shift`]).
//!
//! Load generators send one request over and over (wrk, ab, h2load, k6 on one URL); what such a
//! request costs is then a compare of its bytes and a copy of its answer. A request that is not
//! a repeat pays a 32-byte hash and, once replayed, a copy of its bytes into the cache.
//!
//! What makes the shortcut exact:
//! - Parsing and deciding are functions of the request's bytes, the replayer and the routing;
//!   the stamp changes with the replayer (a reload) and with its consume state (a reset), and
//!   orders where deciding changes the next answer (consume, cycle) have no stamp.
//! - Only requests whose whole body lies in their bytes (no body, or a `Content-Length` one;
//!   not a de-chunked body) are kept, so the bytes are the request.
//! - Requests that close the connection are not kept (nothing repeats on that connection).
//! - The head is reused only for an equal [`WholeShift`], on which alone the head's dates
//!   depend; the request facts (HEAD, close, HTTP/1.0 keep-alive) come from the bytes.
//!
//! The driver keeps one cache per worker thread, and uses it only where an answer depends on
//! nothing else: no `--log-json` or `-v` line to write, no stop in progress.
#![forbid(unsafe_code)]

use std::ops::RangeInclusive;
use std::rc::Rc;
use std::time::SystemTime;

use super::{After, Rendered, Sink};
use crate::flowfile::Span;
use crate::replay::date::WholeShift;
use crate::replay::{FlowId, RepeatStamp, Replayer, RequestFacts};

/// Entries of the cache (direct-mapped by the first [`HASHED`] bytes of a request).
const ENTRIES: usize = 64;

/// Bytes of a request that pick its entry; shorter requests are not kept.
const HASHED: usize = 32;

/// The longest request kept.
const MAX_REQUEST: usize = 2048;

/// The longest head kept.
const MAX_HEAD: usize = 4096;

/// Bodies whose answers are also kept whole, head, body and tail in one buffer (a wire): a
/// sink then sends one buffer by reference where it would send the head and a body referenced
/// from the recording as two pieces (the outbox references bodies from 4 KiB on), and copies
/// nothing. Up to [`ENTRIES`] × 64 KiB a worker.
const WIRE_BODIES: RangeInclusive<usize> = 4096..=64 * 1024;

/// Where a request was routed: the requests of a cache entry share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// The replayer and its state.
    pub stamp: RepeatStamp,
    /// The client connection is TLS (regular mode routes origin-form requests to `https`).
    pub tls: bool,
    /// A CONNECT opens a tunnel on this connection (it is not decided as a request).
    pub tunnels: bool,
}

/// What [`Replayer::write_reply`] returned with the kept head bytes.
#[derive(Debug, Clone, Copy)]
struct Head {
    /// The shift its dates were rendered with.
    shift: Option<WholeShift>,
    /// The body in the recording (`None`: empty).
    body: Option<Span>,
    /// [`crate::replay::Reply::tail`].
    tail: &'static [u8],
    /// [`crate::replay::Reply::close`].
    close: bool,
    /// The status code the head says.
    status: Option<u16>,
}

/// One kept request and its answer.
#[derive(Debug)]
struct Entry {
    context: Context,
    /// The request's exact bytes.
    request: Vec<u8>,
    /// The flow that answered it.
    flow: FlowId,
    /// Its facts, as the request's bytes gave them.
    facts: RequestFacts,
    /// The head last written for it (status line through blank line, a chunk line if any),
    /// when `head` is `Some`.
    head_bytes: Vec<u8>,
    /// What came with `head_bytes` (`None` until the request repeats).
    head: Option<Head>,
    /// The whole answer, `head_bytes` then the body and the tail, when `head` is `Some` and its
    /// body is in [`WIRE_BODIES`]; sinks may still hold an earlier one while it is sent.
    wire: Option<Rc<[u8]>>,
}

/// Requests answered by a replay, by their bytes (see the module documentation).
#[derive(Debug, Default)]
pub struct RepeatCache {
    /// [`ENTRIES`] slots once the first request is kept.
    entries: Vec<Option<Entry>>,
}

/// A request found in the cache: its length, for the caller to consume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    slot: usize,
    /// The request's length in bytes.
    pub len: usize,
}

/// What [`RepeatCache::render`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeated {
    /// The flow that answered.
    pub flow: FlowId,
    /// What the connection does next, the status and the body size.
    pub rendered: Rendered,
    /// The request asked to close the connection.
    pub client_done: bool,
}

/// The entry a request whose bytes start `input` would be kept in, if it is long enough.
fn slot_of(input: &[u8]) -> Option<usize> {
    let first = input.get(..HASHED)?;
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&first[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
    let folded = (word(0) ^ word(2).rotate_left(29)) ^ (word(1) ^ word(3).rotate_left(43));
    let mixed = (u128::from(folded) * 0x9E37_79B9_7F4A_7C15).to_le_bytes();
    let high = u64::from_le_bytes(mixed[8..].try_into().expect("8 bytes"));
    let low = u64::from_le_bytes(mixed[..8].try_into().expect("8 bytes"));
    Some(((high ^ low) % ENTRIES as u64) as usize)
}

impl RepeatCache {
    /// An empty cache (it allocates when it keeps its first request).
    pub fn new() -> RepeatCache {
        RepeatCache::default()
    }

    /// The kept request that `input` starts with, under `context`.
    pub fn find(&self, input: &[u8], context: Context) -> Option<Found> {
        let slot = slot_of(input)?;
        let entry = self.entries.get(slot)?.as_ref()?;
        (entry.context == context && input.starts_with(&entry.request)).then_some(Found {
            slot,
            len: entry.request.len(),
        })
    }

    /// Keeps `request`, the exact bytes of a request that `flow` answered with these facts
    /// under `context`, when it may repeat: `body_in_bytes` says its body (if any) lies in these
    /// bytes; a request that closes its connection, or is too short or too long, is not kept.
    pub fn keep(
        &mut self,
        request: &[u8],
        body_in_bytes: bool,
        context: Context,
        flow: FlowId,
        facts: RequestFacts,
    ) {
        if !body_in_bytes || facts.wants_close || request.len() > MAX_REQUEST {
            return;
        }
        let Some(slot) = slot_of(request) else {
            return;
        };
        if self.entries.is_empty() {
            self.entries.resize_with(ENTRIES, || None);
        }
        let entry = &mut self.entries[slot];
        if let Some(e) = entry {
            if e.context == context && e.request == request {
                return;
            }
            // Reuse the entry's buffers.
            e.context = context;
            e.request.clear();
            e.request.extend_from_slice(request);
            e.flow = flow;
            e.facts = facts;
            e.head = None;
            e.wire = None;
        } else {
            *entry = Some(Entry {
                context,
                request: request.to_vec(),
                flow,
                facts,
                head_bytes: Vec::new(),
                head: None,
                wire: None,
            });
        }
    }

    /// Answers the request [`RepeatCache::find`] found, at `now`, into `out`: the kept head when
    /// its dates shift by the same whole second, else a head written by `replayer` (which must
    /// be the one of the entry's stamp), kept for the next repeat.
    pub fn render(
        &mut self,
        found: Found,
        replayer: &Replayer,
        now: SystemTime,
        out: &mut impl Sink,
    ) -> Repeated {
        let entry = self.entries[found.slot]
            .as_mut()
            .expect("invariant: found entries are kept");
        let shift = replayer.head_shift(entry.flow, now);
        let bytes = out.bytes();
        let (body_bytes, close, status) = match entry.head {
            Some(head) if head.shift == shift => {
                let body = head
                    .body
                    .map_or(&b""[..], |span| replayer.recording().bytes(span));
                if let Some(wire) = &entry.wire {
                    out.push_wire(wire);
                } else {
                    bytes.extend_from_slice(&entry.head_bytes);
                    out.push_body(body);
                    out.bytes().extend_from_slice(head.tail);
                }
                (body.len(), head.close, head.status)
            }
            _ => {
                let head_at = bytes.len();
                let reply = replayer.write_reply(entry.flow, now, &entry.facts, bytes);
                let head = &bytes[head_at..];
                let status = super::status_code(head);
                let span = replayer.recording().span_of(reply.body);
                entry.head = None;
                entry.wire = None;
                if (reply.body.is_empty() || span.is_some()) && head.len() <= MAX_HEAD {
                    entry.head_bytes.clear();
                    entry.head_bytes.extend_from_slice(head);
                    entry.head = Some(Head {
                        shift,
                        body: span.filter(|_| !reply.body.is_empty()),
                        tail: reply.tail,
                        close: reply.close,
                        status,
                    });
                    if WIRE_BODIES.contains(&reply.body.len()) {
                        let whole = [&entry.head_bytes[..], reply.body, reply.tail].concat();
                        entry.wire = Some(Rc::from(whole));
                    }
                }
                out.push_body(reply.body);
                out.bytes().extend_from_slice(reply.tail);
                (reply.body.len(), reply.close, status)
            }
        };
        let client_done = entry.facts.wants_close;
        Repeated {
            flow: entry.flow,
            rendered: Rendered {
                after: if close || client_done {
                    After::Close
                } else {
                    After::Continue
                },
                status,
                body_bytes: body_bytes as u64,
            },
            client_done,
        }
    }
}
