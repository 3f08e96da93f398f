//! The replay index: recorded flows grouped by match key, built once at load and read-only
//! afterwards except for one atomic cursor per key (spec §c).
//!
//! Lookup hashes the live request's key (streamed, see [`super::key`]), finds the groups with that
//! hash in a hash map, and confirms equality against the group's key kept at load as canonical
//! bytes (long recorded byte strings such as bodies are kept as spans of the recording instead of
//! copies): exact, allocation-free and independent of the recording's size.
//!
//! Groups hold only flows that have a response, in recording order. mitmproxy keeps
//! response-less flows in its lists and discards them when a pop reaches them; since a pop then
//! continues with the next flow, the response a request gets is the same as if they were never
//! there (spec §c.2), so leaving them out reproduces its pop order exactly.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use super::key::{self, Canonical, Item, Items, KeyOptions, KeyRequest};
use crate::config::Order;
use crate::flowfile::{Recording, Span};

/// Recorded byte strings at least this long are kept as spans of the recording rather than
/// copied into a key (request bodies, long paths); shorter ones are cheaper to copy than to refer
/// to (a span is 24 bytes).
const SPAN_MIN: usize = 64;

/// A piece of a stored key's canonical bytes.
#[derive(Debug, Clone, Copy)]
enum Segment {
    /// Bytes in `Index::key_bytes`.
    Inline {
        /// Start in `key_bytes`.
        start: usize,
        /// Length.
        len: u32,
    },
    /// Bytes of the recording.
    Recorded(Span),
}

/// A hasher for keys that already are hashes.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// No group (end of a hash chain).
const NONE: u32 = u32::MAX;

/// The recorded flows (with a response) of one key.
#[derive(Debug)]
struct Group {
    /// First member in `Index::members`.
    start: u32,
    /// Number of members (≥ 1).
    len: u32,
    /// Pops so far (consume) or turns so far (cycle); only ever incremented.
    cursor: AtomicU64,
    /// Next group whose key has the same 64-bit hash, or `NONE`.
    next_same_hash: u32,
    /// First segment of the group's key in `Index::segments`.
    segment_start: u32,
    /// Number of segments of the key.
    segment_count: u32,
}

/// Recorded flows by key.
#[derive(Debug)]
pub struct Index {
    /// Hash state for keys (random per process).
    state: ahash::RandomState,
    /// Key hash → first group with that hash.
    table: HashMap<u64, u32, BuildHasherDefault<Prehashed>>,
    /// All groups.
    groups: Vec<Group>,
    /// Flow ids of every group's members, group after group, each in recording order.
    members: Vec<u32>,
    /// Canonical key bytes of every group (the inline segments).
    key_bytes: Vec<u8>,
    /// Segments of every group's key, group after group.
    segments: Vec<Segment>,
    /// Flows with a response not yet consumed (consume order).
    remaining: AtomicU64,
    /// The key options the index was built with.
    options: KeyOptions,
}

impl Index {
    /// Groups the flows of `recording` that have a response by their key.
    pub fn build(recording: &Recording, options: KeyOptions) -> Index {
        let mut index = Index {
            state: ahash::RandomState::new(),
            table: HashMap::default(),
            groups: Vec::new(),
            members: Vec::new(),
            key_bytes: Vec::new(),
            segments: Vec::new(),
            remaining: AtomicU64::new(0),
            options,
        };
        // (group, flow) in recording order; grouped by a stable sort at the end.
        let mut placed: Vec<(u32, u32)> = Vec::new();
        for flow in recording.flows() {
            if flow.response.is_none() {
                continue;
            }
            let id = u32::try_from(flow.id).expect("invariant: fewer than 2^32 flows");
            let mut items = Items::new();
            key::items(
                &KeyRequest::recorded(&flow.request),
                &index.options,
                &mut items,
            );
            let hash = key::hash(items.as_slice(), &index.state);
            let group = match index.find_hashed(recording, items.as_slice(), hash) {
                Some(group) => group,
                None => {
                    let group =
                        u32::try_from(index.groups.len()).expect("invariant: fewer than 2^32 keys");
                    let segment_start = index.segments.len() as u32;
                    index.store_key(recording, &items);
                    index.groups.push(Group {
                        start: 0,
                        len: 0,
                        cursor: AtomicU64::new(0),
                        next_same_hash: index.table.get(&hash).copied().unwrap_or(NONE),
                        segment_start,
                        segment_count: index.segments.len() as u32 - segment_start,
                    });
                    index.table.insert(hash, group);
                    group
                }
            };
            placed.push((group, id));
        }
        // Stable: each group's members stay in recording order.
        placed.sort_by_key(|&(group, _)| group);
        index.members = placed.iter().map(|&(_, id)| id).collect();
        for (n, &(group, _)) in placed.iter().enumerate() {
            let g = &mut index.groups[group as usize];
            if g.len == 0 {
                g.start = n as u32;
            }
            g.len += 1;
        }
        index.remaining = AtomicU64::new(index.members.len() as u64);
        index.table.shrink_to_fit();
        index.groups.shrink_to_fit();
        index.members.shrink_to_fit();
        index.key_bytes.shrink_to_fit();
        index.segments.shrink_to_fit();
        index
    }

    /// Keeps the canonical bytes of a new group's key.
    fn store_key(&mut self, recording: &Recording, items: &[Item<'_>]) {
        let mut inline_start = self.key_bytes.len();
        for (i, item) in items.iter().enumerate() {
            let span = match item {
                Item::Bytes(b) if b.len() >= SPAN_MIN => recording.span_of(b),
                _ => None,
            };
            match span {
                Some(span) => {
                    self.flush_inline(inline_start);
                    self.segments.push(Segment::Recorded(span));
                    inline_start = self.key_bytes.len();
                }
                None => key::write_canonical(&items[i..=i], &mut self.key_bytes),
            }
        }
        self.flush_inline(inline_start);
    }

    fn flush_inline(&mut self, start: usize) {
        let len = self.key_bytes.len() - start;
        if len > 0 {
            self.segments.push(Segment::Inline {
                start,
                len: u32::try_from(len).expect("invariant: a key's inline part is under 4 GiB"),
            });
        }
    }

    /// Whether `key` is the key of `group`.
    fn group_has_key(
        &self,
        recording: &Recording,
        group: &Group,
        key: &(impl Canonical + ?Sized),
    ) -> bool {
        let start = group.segment_start as usize;
        let mut segments = self.segments[start..start + group.segment_count as usize].iter();
        key::equals_chunks(key, || {
            segments.next().map(|segment| match *segment {
                Segment::Inline { start, len } => &self.key_bytes[start..start + len as usize],
                Segment::Recorded(span) => recording.bytes(span),
            })
        })
    }

    /// The group whose key is `key` (with hash `hash`), if any.
    fn find_hashed(
        &self,
        recording: &Recording,
        key: &(impl Canonical + ?Sized),
        hash: u64,
    ) -> Option<u32> {
        let mut group = *self.table.get(&hash)?;
        while group != NONE {
            let g = &self.groups[group as usize];
            if self.group_has_key(recording, g, key) {
                return Some(group);
            }
            group = g.next_same_hash;
        }
        None
    }

    /// The key options.
    pub fn options(&self) -> &KeyOptions {
        &self.options
    }

    /// The group whose key equals `key`, if any.
    fn find(&self, recording: &Recording, key: &(impl Canonical + ?Sized)) -> Option<&Group> {
        let group = self.find_hashed(recording, key, key::hash(key, &self.state))?;
        Some(&self.groups[group as usize])
    }

    /// The flow that answers a request with key `key` under `order`, consuming it in consume
    /// order; `None` when no recorded response is left for that key.
    pub fn take(
        &self,
        recording: &Recording,
        key: &(impl Canonical + ?Sized),
        order: Order,
    ) -> Option<u32> {
        let g = self.find(recording, key)?;
        let members = &self.members[g.start as usize..(g.start + g.len) as usize];
        match order {
            Order::Consume => {
                // fetch_add hands every index to exactly one caller, whatever the thread.
                let turn = g.cursor.fetch_add(1, Ordering::Relaxed);
                let flow = *members.get(usize::try_from(turn).ok()?)?;
                self.remaining.fetch_sub(1, Ordering::Relaxed);
                Some(flow)
            }
            Order::First => members.first().copied(),
            Order::Last => members.last().copied(),
            Order::Cycle => {
                let turn = g.cursor.fetch_add(1, Ordering::Relaxed);
                Some(members[(turn % u64::from(g.len)) as usize])
            }
        }
    }

    /// Flows with a response not yet consumed (all of them unless the order is consume).
    pub fn remaining(&self) -> u64 {
        self.remaining.load(Ordering::Relaxed)
    }

    /// Number of distinct keys.
    pub fn keys(&self) -> usize {
        self.groups.len()
    }

    /// Heap bytes held by the index.
    pub fn heap_bytes(&self) -> usize {
        self.groups.capacity() * std::mem::size_of::<Group>()
            + self.members.capacity() * 4
            + self.key_bytes.capacity()
            + self.segments.capacity() * std::mem::size_of::<Segment>()
            + self.table.capacity() * (std::mem::size_of::<(u64, u32)>() + 1)
    }
}
