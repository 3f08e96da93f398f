//! A per-worker memo of the work a replay repeats when the same flows answer again and again:
//! the canonical key bytes a hash match is confirmed against, and rendered response heads.
//!
//! Both are exact, never trusted blindly: a remembered key is the recorded flow's own canonical
//! bytes (compared in full against the live request's key), and a remembered head is reused only
//! for the same flow while its date shift, in whole seconds, is the one it was rendered with. So
//! the bytes on the wire are those of the uncached path (tests check this), and a recording of
//! millions of flows costs what it did without the memo: one failed slot check and a copy per
//! miss. Each memo is a direct-mapped table of [`SLOTS`] entries whose buffers are reused, so it
//! allocates only while it warms up.
#![forbid(unsafe_code)]

use std::cell::Cell;
use std::time::SystemTime;

use super::date;
use super::refresh;
use super::template::Framing;
use crate::flowfile::Span;

/// Entries per memo (a power of two).
pub const SLOTS: usize = 256;

/// Longest key or head remembered; longer ones are rebuilt every time.
pub const MAX_BYTES: usize = 1024;

/// The memo of one worker (one thread) for one [`super::Replayer`]: pass it to
/// [`super::Replayer::decide_with`] and [`super::Replayer::write_reply_with`].
#[derive(Debug)]
pub struct ServeCache {
    /// Address of the replayer the entries belong to (0 before first use).
    owner: usize,
    /// Canonical key bytes by first flow of a key.
    pub(super) keys: KeyMemo,
    /// Rendered heads by flow.
    pub(super) heads: HeadMemo,
}

impl ServeCache {
    /// An empty memo (allocates nothing until used).
    pub fn new() -> ServeCache {
        ServeCache {
            owner: 0,
            keys: KeyMemo::on(),
            heads: HeadMemo::on(),
        }
    }

    /// How many keys and heads were served from the memo so far (a figure for tests and reports).
    pub fn hits(&self) -> u64 {
        self.keys.hits.get() + self.heads.hits.get()
    }

    /// Forgets everything if the memo was last used with another replayer.
    pub(super) fn bind(&mut self, owner: usize) {
        if self.owner != owner {
            *self = ServeCache {
                owner,
                ..ServeCache::new()
            };
        }
    }
}

/// Slot of `flow` in a table of [`SLOTS`] entries (a multiplicative hash spreads strided ids).
fn slot_of(flow: u32) -> usize {
    (flow.wrapping_mul(0x9E37_79B1) >> (32 - SLOTS.trailing_zeros())) as usize
}

/// One remembered byte string for a flow.
#[derive(Debug, Default)]
struct Remembered {
    /// The flow, or `u32::MAX` for an empty entry.
    flow: u32,
    bytes: Vec<u8>,
}

/// Canonical key bytes of the first flow of recorded keys.
#[derive(Debug)]
pub(super) struct KeyMemo {
    entries: Vec<Remembered>,
    /// Lookups answered.
    hits: Cell<u64>,
    /// Whether `put` remembers anything (an off memo never allocates).
    enabled: bool,
}

impl KeyMemo {
    /// A memo that remembers.
    pub(super) fn on() -> KeyMemo {
        KeyMemo {
            entries: Vec::new(),
            hits: Cell::new(0),
            enabled: true,
        }
    }

    /// A memo that never remembers (the uncached path).
    pub(super) fn off() -> KeyMemo {
        KeyMemo {
            entries: Vec::new(),
            hits: Cell::new(0),
            enabled: false,
        }
    }

    /// The canonical key bytes of `flow`, if remembered.
    pub(super) fn get(&self, flow: u32) -> Option<&[u8]> {
        let entry = self.entries.get(slot_of(flow))?;
        if entry.flow != flow {
            return None;
        }
        self.hits.set(self.hits.get() + 1);
        Some(&entry.bytes[..])
    }

    /// Remembers `bytes` as the canonical key of `flow` (ignored when longer than [`MAX_BYTES`]).
    pub(super) fn put(&mut self, flow: u32, bytes: &[u8]) {
        if !self.enabled || bytes.len() > MAX_BYTES {
            return;
        }
        if self.entries.is_empty() {
            self.entries.resize_with(SLOTS, || Remembered {
                flow: u32::MAX,
                bytes: Vec::new(),
            });
        }
        let entry = &mut self.entries[slot_of(flow)];
        entry.flow = flow;
        entry.bytes.clear();
        entry.bytes.extend_from_slice(bytes);
    }
}

/// What a remembered head needs besides its bytes to make a [`super::Reply`].
#[derive(Debug, Clone, Copy)]
pub(super) struct HeadFacts {
    /// The recorded response start (refresh reference).
    pub timestamp_start: f64,
    /// How the body is framed.
    pub framing: Framing,
    /// Spec §f.5 rule 1 for non-HEAD requests.
    pub body_until_close: bool,
    /// Spec §f.5 rule 3.
    pub response_close: bool,
    /// The body in the recording (`None`: empty).
    pub body: Option<Span>,
}

/// One rendered head.
#[derive(Debug)]
struct HeadEntry {
    /// The flow, or `u32::MAX` for an empty entry.
    flow: u32,
    /// The whole-second date shift the head was rendered with (`None`: not refreshed).
    shift: Option<i64>,
    facts: HeadFacts,
    /// Status line, fields, blank line and chunk-size line if any.
    bytes: Vec<u8>,
}

/// Rendered heads by flow.
#[derive(Debug)]
pub(super) struct HeadMemo {
    entries: Vec<HeadEntry>,
    /// Lookups answered.
    hits: Cell<u64>,
    /// Whether `put` remembers anything (an off memo never allocates).
    enabled: bool,
}

/// The whole seconds a date moves when shifted by `now − timestamp_start` (spec §d.2): a head
/// rendered with one value is the same for every `now` that gives that value.
pub(super) fn whole_shift(now: SystemTime, timestamp_start: f64) -> i64 {
    date::shift(0, refresh::delta_seconds(now, timestamp_start))
}

impl HeadMemo {
    /// A memo that remembers.
    pub(super) fn on() -> HeadMemo {
        HeadMemo {
            entries: Vec::new(),
            hits: Cell::new(0),
            enabled: true,
        }
    }

    /// A memo that never remembers (the uncached path).
    pub(super) fn off() -> HeadMemo {
        HeadMemo {
            entries: Vec::new(),
            hits: Cell::new(0),
            enabled: false,
        }
    }

    /// The head of `flow` for `now` (`refresh`: dates are shifted), if remembered.
    pub(super) fn get(
        &self,
        flow: u32,
        now: SystemTime,
        refresh: bool,
    ) -> Option<(&[u8], &HeadFacts)> {
        let entry = self.entries.get(slot_of(flow))?;
        if entry.flow != flow {
            return None;
        }
        let shift = refresh.then(|| whole_shift(now, entry.facts.timestamp_start));
        if entry.shift != shift {
            return None;
        }
        self.hits.set(self.hits.get() + 1);
        Some((&entry.bytes[..], &entry.facts))
    }

    /// Remembers `bytes` as the head of `flow` rendered with `shift` (ignored when longer than
    /// [`MAX_BYTES`]).
    pub(super) fn put(&mut self, flow: u32, shift: Option<i64>, facts: HeadFacts, bytes: &[u8]) {
        if !self.enabled || bytes.len() > MAX_BYTES {
            return;
        }
        if self.entries.is_empty() {
            self.entries.resize_with(SLOTS, || HeadEntry {
                flow: u32::MAX,
                shift: None,
                facts,
                bytes: Vec::new(),
            });
        }
        let entry = &mut self.entries[slot_of(flow)];
        entry.flow = flow;
        entry.shift = shift;
        entry.facts = facts;
        entry.bytes.clear();
        entry.bytes.extend_from_slice(bytes);
    }
}

impl Default for ServeCache {
    fn default() -> ServeCache {
        ServeCache::new()
    }
}
