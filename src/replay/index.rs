//! The replay index: recorded flows grouped by match key, built once at load and read-only
//! afterwards except for the consume state (spec §c).
//!
//! Lookup hashes the live request's key (streamed, see [`super::key`]) and probes a flat
//! open-addressing table of 8-byte slots (32 hash bits and a target). A target is a flow id when
//! the key has one recorded flow, or a group of flows otherwise. A hash match is confirmed
//! exactly: usually by the target's first flow having the request's own scheme, method, target,
//! host, port and body (read from the mapping by [`Recording::key_fields`]), otherwise by
//! re-deriving that flow's key from the recording into a stack buffer and comparing it; only keys
//! too long for that buffer keep their canonical bytes on the heap. So the index costs about 17 bytes per flow, and a lookup is one
//! probe and one comparison whatever the recording's size.
//!
//! Groups hold only flows that have a response, in recording order. mitmproxy keeps
//! response-less flows in its lists and discards them when a pop reaches them; since a pop then
//! continues with the next flow, the response a request gets is the same as if they were never
//! there (spec §c.2), so leaving them out reproduces its pop order exactly.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use super::key::{self, Canonical, Item, Items, KeyHost, KeyOptions, KeyRequest, RequestKey};
use crate::config::Order;
use crate::flowfile::{Recording, RequestView, Span};

/// Keys whose canonical bytes are at most this long are compared by re-deriving them from the
/// recording into a stack buffer; longer ones (large request bodies) are kept at load.
pub const KEY_BUFFER: usize = 2048;

/// The stack buffer tried first for re-deriving a recorded key (request lines of usual length).
const SMALL_KEY_BUFFER: usize = 256;

/// Recorded byte strings at least this long are kept as spans of the recording rather than
/// copied into a stored key (request bodies, long paths).
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

/// A slot target with this bit set is a group index; otherwise a flow id.
const GROUP: u32 = 1 << 31;
/// An empty slot's target.
const EMPTY: u32 = u32::MAX;

/// One slot of the table.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The upper 32 bits of the key hash.
    tag: u32,
    /// A flow id, `GROUP | group`, or [`EMPTY`].
    target: u32,
}

/// The recorded flows (with a response) of a key that has more than one.
#[derive(Debug)]
struct Group {
    /// First member in `Index::members`.
    start: u32,
    /// Number of members (≥ 2).
    len: u32,
    /// Pops so far (consume) or turns so far (cycle); only ever incremented.
    cursor: AtomicU64,
}

/// A key too long for [`KEY_BUFFER`], kept at load: its first flow and its segments.
#[derive(Debug, Clone, Copy)]
struct LongKey {
    /// The key's first flow.
    flow: u32,
    /// First segment in `Index::segments`.
    segment_start: u32,
    /// Number of segments.
    segment_count: u32,
}

/// What the index builder keeps per flow until the recording is complete.
#[derive(Debug, Default)]
pub struct IndexBuilder {
    /// Key hash of every flow (`None`: no response), in flow order.
    hashes: Vec<Option<u64>>,
    /// Flows whose key is longer than [`KEY_BUFFER`], ascending.
    long: Vec<u32>,
    /// [`Index::host_is_field`] so far.
    host_is_field: Vec<u64>,
}

/// Recorded flows by key.
#[derive(Debug)]
pub struct Index {
    /// Hash state for keys (random per process).
    state: key::HashSeed,
    /// The open-addressing table (a power of two long, at most 3/4 full).
    slots: Box<[Slot]>,
    /// Groups of keys with several flows.
    groups: Vec<Group>,
    /// Flow ids of every group's members, group after group, each in recording order.
    members: Vec<u32>,
    /// Consume order: one bit per flow, set once a single-flow key's flow was served.
    taken: Box<[AtomicU64]>,
    /// One bit per flow: its key's host is its recorded `host` field as it is (so a lookup
    /// confirms the host without reading the recorded header list).
    host_is_field: Box<[u64]>,
    /// The options leave the key made of the request's scheme, method, target, host, port and
    /// body only (no `use_headers`, no form matching): a candidate whose fields are byte-equal to
    /// the request's is confirmed without deriving either key.
    fields_decide: bool,
    /// Keys longer than [`KEY_BUFFER`], by first flow, ascending.
    long_keys: Vec<LongKey>,
    /// Inline bytes of the long keys.
    key_bytes: Vec<u8>,
    /// Segments of the long keys.
    segments: Vec<Segment>,
    /// Number of distinct keys.
    keys: usize,
    /// Flows with a response not yet consumed (consume order).
    remaining: AtomicU64,
    /// The key options the index was built with.
    options: KeyOptions,
}

impl Index {
    /// A builder for an index under `options`.
    pub fn builder(options: KeyOptions) -> (IndexBuilder, Index) {
        let index = Index {
            state: key::HashSeed::random(),
            slots: Box::new([]),
            groups: Vec::new(),
            members: Vec::new(),
            taken: Box::new([]),
            host_is_field: Box::new([]),
            fields_decide: options.use_headers.is_empty()
                && options.ignore_payload_params.is_empty(),
            long_keys: Vec::new(),
            key_bytes: Vec::new(),
            segments: Vec::new(),
            keys: 0,
            remaining: AtomicU64::new(0),
            options,
        };
        (IndexBuilder::default(), index)
    }

    /// Notes the next flow (in recording order): its request, and whether it has a response.
    pub fn add(&self, builder: &mut IndexBuilder, request: &RequestView<'_>, has_response: bool) {
        if !has_response {
            builder.hashes.push(None);
            return;
        }
        let key_request = KeyRequest::recorded(request);
        if matches!(key_request.host, KeyHost::Single(h) if h == request.host) {
            let flow = builder.hashes.len();
            if builder.host_is_field.len() <= flow / 64 {
                builder.host_is_field.resize(flow / 64 + 1, 0);
            }
            builder.host_is_field[flow / 64] |= 1 << (flow % 64);
        }
        let key = RequestKey {
            request: &key_request,
            options: &self.options,
        };
        let (hash, len) = key::hash_and_len(&key, &self.state);
        if len > KEY_BUFFER as u64 {
            builder.long.push(
                u32::try_from(builder.hashes.len()).expect("invariant: fewer than 2^31 flows"),
            );
        }
        builder.hashes.push(Some(hash));
    }

    /// Number of flows noted so far.
    pub fn added(builder: &IndexBuilder) -> usize {
        builder.hashes.len()
    }

    /// Groups the noted flows by key; `recording` holds them.
    pub fn finish(&mut self, builder: IndexBuilder, recording: &Recording) {
        let IndexBuilder {
            hashes,
            long,
            mut host_is_field,
        } = builder;
        host_is_field.resize(bitmap_words(hashes.len()), 0);
        self.host_is_field = host_is_field.into_boxed_slice();
        let with_response = hashes.iter().filter(|h| h.is_some()).count();
        assert!(
            hashes.len() < GROUP as usize,
            "invariant: fewer than 2^31 flows"
        );
        let size = (with_response * 4 / 3 + 1).next_power_of_two().max(16);
        self.slots = crate::hugepages::filled_vec(
            size,
            Slot {
                tag: 0,
                target: EMPTY,
            },
        )
        .into_boxed_slice();
        // First pass: key ids (slot targets hold them for now), each key's first flow and count.
        let mut first_flow: Vec<u32> = Vec::new();
        let mut count: Vec<u32> = Vec::new();
        let mut key_of: Vec<u32> = vec![EMPTY; hashes.len()];
        let mut long = long.into_iter().peekable();
        for (flow, hash) in hashes.iter().enumerate() {
            let Some(hash) = *hash else { continue };
            let flow = flow as u32;
            let is_long = long.next_if_eq(&flow).is_some();
            // The flow's request is re-read only when a slot's hash bits match (a duplicate key,
            // or a rare 32-bit coincidence).
            let found = self.probe(hash, |target| {
                let request = recording.request_untimed(flow as usize);
                let key_request = KeyRequest::recorded(&request);
                let key = RequestKey {
                    request: &key_request,
                    options: &self.options,
                };
                self.flow_has_key(recording, first_flow[target as usize], &key)
            });
            let id = match found {
                Ok(slot) => self.slots[slot].target,
                Err(slot) => {
                    let id = first_flow.len() as u32;
                    self.slots[slot] = Slot {
                        tag: (hash >> 32) as u32,
                        target: id,
                    };
                    first_flow.push(flow);
                    count.push(0);
                    if is_long {
                        self.store_long_key(recording, flow, &recording.request(flow as usize));
                    }
                    id
                }
            };
            count[id as usize] += 1;
            key_of[flow as usize] = id;
        }
        drop(hashes);
        // Second pass: groups for keys with several flows, members in recording order.
        let mut group_of: Vec<u32> = vec![EMPTY; count.len()];
        let mut fill: Vec<u32> = Vec::new();
        let mut start = 0u32;
        for (id, &n) in count.iter().enumerate() {
            if n > 1 {
                group_of[id] = self.groups.len() as u32;
                self.groups.push(Group {
                    start,
                    len: n,
                    cursor: AtomicU64::new(0),
                });
                fill.push(start);
                start += n;
            }
        }
        self.members = vec![0; start as usize];
        for (flow, &id) in key_of.iter().enumerate() {
            if id == EMPTY {
                continue;
            }
            let group = group_of[id as usize];
            if group != EMPTY {
                let at = &mut fill[group as usize];
                self.members[*at as usize] = flow as u32;
                *at += 1;
            }
        }
        for slot in self.slots.iter_mut().filter(|s| s.target != EMPTY) {
            let id = slot.target as usize;
            slot.target = match group_of[id] {
                EMPTY => first_flow[id],
                group => GROUP | group,
            };
        }
        self.keys = first_flow.len();
        self.taken = (0..bitmap_words(key_of.len()))
            .map(|_| AtomicU64::new(0))
            .collect();
        self.remaining = AtomicU64::new(with_response as u64);
        self.groups.shrink_to_fit();
        self.long_keys.shrink_to_fit();
        self.key_bytes.shrink_to_fit();
        self.segments.shrink_to_fit();
    }

    /// Finds the slot whose hash bits match `hash` and whose target `is_key` accepts (`Ok`), or
    /// the empty slot where that key would go (`Err`).
    fn probe(&self, hash: u64, mut is_key: impl FnMut(u32) -> bool) -> Result<usize, usize> {
        let mask = self.slots.len() - 1;
        let tag = (hash >> 32) as u32;
        let mut at = hash as usize & mask;
        loop {
            let slot = self.slots[at];
            if slot.target == EMPTY {
                return Err(at);
            }
            if slot.tag == tag && is_key(slot.target) {
                return Ok(at);
            }
            at = (at + 1) & mask;
        }
    }

    /// Keeps the canonical bytes of a long key.
    fn store_long_key(&mut self, recording: &Recording, flow: u32, request: &RequestView<'_>) {
        let mut items = Items::new();
        key::items(&KeyRequest::recorded(request), &self.options, &mut items);
        let segment_start = self.segments.len() as u32;
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
        self.long_keys.push(LongKey {
            flow,
            segment_start,
            segment_count: self.segments.len() as u32 - segment_start,
        });
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

    /// Whether `key` is the key of recorded flow `flow`.
    fn flow_has_key(
        &self,
        recording: &Recording,
        flow: u32,
        key: &(impl Canonical + ?Sized),
    ) -> bool {
        if !self.long_keys.is_empty() {
            if let Ok(at) = self.long_keys.binary_search_by_key(&flow, |k| k.flow) {
                let long = self.long_keys[at];
                let start = long.segment_start as usize;
                let mut segments = self.segments[start..start + long.segment_count as usize].iter();
                return key::equals_chunks(key, || {
                    segments.next().map(|segment| match *segment {
                        Segment::Inline { start, len } => {
                            &self.key_bytes[start..start + len as usize]
                        }
                        Segment::Recorded(span) => recording.bytes(span),
                    })
                });
            }
        }
        // The response is read next if the key matches: fetch both while the request is parsed.
        recording.touch_flow(flow as usize);
        let request = recording.request_untimed(flow as usize);
        let key_request = KeyRequest::recorded(&request);
        let recorded = RequestKey {
            request: &key_request,
            options: &self.options,
        };
        // Most keys fit the small buffer (clearing 2 KiB would cost more than the comparison).
        let mut small = [0u8; SMALL_KEY_BUFFER];
        if let Some(len) = key::write_canonical_into(&recorded, &mut small) {
            let mut once = Some(&small[..len]);
            return key::equals_chunks(key, || once.take());
        }
        let mut buffer = [0u8; KEY_BUFFER];
        match key::write_canonical_into(&recorded, &mut buffer) {
            Some(len) => {
                let mut once = Some(&buffer[..len]);
                key::equals_chunks(key, || once.take())
            }
            // Not reached: keys that do not fit are long keys, handled above.
            None => false,
        }
    }

    /// The first flow of a final slot target.
    fn first_of(&self, target: u32) -> u32 {
        if target & GROUP == 0 {
            target
        } else {
            self.members[self.groups[(target & !GROUP) as usize].start as usize]
        }
    }

    /// The key options.
    pub fn options(&self) -> &KeyOptions {
        &self.options
    }

    /// Whether recorded flow `flow` certainly has the key of `request` (a live request): its
    /// scheme, method (any case), target, host, port and body are those of the request, where
    /// the options look at them. `false` says nothing: [`Index::flow_has_key`] decides then.
    fn has_request_fields(
        &self,
        recording: &Recording,
        flow: u32,
        request: &KeyRequest<'_>,
    ) -> bool {
        let f = flow as usize;
        if !self.fields_decide || self.host_is_field[f / 64] & (1 << (f % 64)) == 0 {
            return false;
        }
        // The response is read next if the key matches: fetch both while the request is read.
        recording.touch_flow(f);
        let recorded = recording.key_fields(f);
        let o = &self.options;
        let KeyHost::Single(host) = request.host else {
            return false;
        };
        request.target == recorded.path
            && request.method.eq_ignore_ascii_case(recorded.method)
            && request.scheme == recorded.scheme
            && (o.ignore_host || host == recorded.host)
            && (o.ignore_port || request.port == recorded.port)
            && (o.ignore_content || request.body == recorded.content)
    }

    /// The hash [`Index::take`] probes with for `key`.
    pub fn hash(&self, key: &(impl Canonical + ?Sized)) -> u64 {
        key::hash(key, &self.state)
    }

    /// Starts loading the slot a lookup of `hash` probes first (see [`Index::candidate`]).
    pub fn prefetch_slot(&self, hash: u64) {
        if let Some(slot) = self
            .slots
            .get(hash as usize & self.slots.len().wrapping_sub(1))
        {
            crate::prefetch::line(slot);
        }
    }

    /// The flow a lookup of `hash` would most likely confirm first (the first flow of the first
    /// slot with its hash bits, unconfirmed), having started to load the per-flow words that
    /// [`Index::take`] reads for it; `None` when no slot of the probe has those bits.
    pub fn candidate(&self, hash: u64) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let at = self.probe(hash, |_| true).ok()?;
        let flow = self.first_of(self.slots[at].target);
        let word = (flow / 64) as usize;
        if let Some(bits) = self.host_is_field.get(word) {
            crate::prefetch::line(bits);
        }
        if let Some(bits) = self.taken.get(word) {
            crate::prefetch::line(bits);
        }
        Some(flow)
    }

    /// The flow that answers `request` (whose key is `key`) under `order`, consuming it in
    /// consume order; `None` when no recorded response is left for that key.
    pub fn take(
        &self,
        recording: &Recording,
        request: &KeyRequest<'_>,
        key: &(impl Canonical + ?Sized),
        order: Order,
    ) -> Option<u32> {
        let hash = self.hash(key);
        let slot = self
            .probe(hash, |target| {
                let flow = self.first_of(target);
                self.has_request_fields(recording, flow, request)
                    || self.flow_has_key(recording, flow, key)
            })
            .ok()?;
        let target = self.slots[slot].target;
        if target & GROUP == 0 {
            let flow = target;
            let bit = 1u64 << (flow % 64);
            let word = &self.taken[(flow / 64) as usize];
            if order == Order::Consume {
                let before = word.fetch_or(bit, Ordering::Relaxed);
                if before & bit != 0 {
                    return None;
                }
                self.remaining.fetch_sub(1, Ordering::Relaxed);
            } else if word.load(Ordering::Relaxed) & bit == 0 {
                // Served-once mark for `/unused`: written the first time only, read after.
                word.fetch_or(bit, Ordering::Relaxed);
            }
            return Some(flow);
        }
        let g = &self.groups[(target & !GROUP) as usize];
        let members = &self.members[g.start as usize..(g.start + g.len) as usize];
        match order {
            Order::Consume => {
                // fetch_add hands every index to exactly one caller, whatever the thread.
                let turn = g.cursor.fetch_add(1, Ordering::Relaxed);
                let flow = *members.get(usize::try_from(turn).ok()?)?;
                self.remaining.fetch_sub(1, Ordering::Relaxed);
                Some(flow)
            }
            Order::First | Order::Last => {
                // The cursor only marks that the key was served (for `/unused`), written once.
                if g.cursor.load(Ordering::Relaxed) == 0 {
                    g.cursor.store(1, Ordering::Relaxed);
                }
                if order == Order::First {
                    members.first().copied()
                } else {
                    members.last().copied()
                }
            }
            Order::Cycle => {
                let turn = g.cursor.fetch_add(1, Ordering::Relaxed);
                Some(members[(turn % u64::from(g.len)) as usize])
            }
        }
    }

    /// Puts every consume cursor back to the start and forgets which flows were served, while
    /// other threads may be taking flows: each cursor and bitmap word is swapped to zero and
    /// what it had consumed is added back to [`Index::remaining`] (consume order), so the count
    /// stays exact whatever interleaving. Work is proportional to the recording; not a hot path.
    pub fn reset(&self, order: Order) {
        let mut back = 0u64;
        for g in &self.groups {
            let turns = g.cursor.swap(0, Ordering::Relaxed);
            back += turns.min(u64::from(g.len));
        }
        for word in self.taken.iter() {
            back += u64::from(word.swap(0, Ordering::Relaxed).count_ones());
        }
        if order == Order::Consume {
            self.remaining.fetch_add(back, Ordering::Relaxed);
        }
    }

    /// Calls `served` with every flow (with a response) that answered a request since the load or
    /// the last [`Index::reset`], under `order`; the others were never served. Derived from the
    /// consume cursors and served marks, so the hot path writes nothing more for it.
    pub fn for_each_served(&self, order: Order, mut served: impl FnMut(u32)) {
        for (w, word) in self.taken.iter().enumerate() {
            let mut bits = word.load(Ordering::Relaxed);
            while bits != 0 {
                served(w as u32 * 64 + bits.trailing_zeros());
                bits &= bits - 1;
            }
        }
        for g in &self.groups {
            let members = &self.members[g.start as usize..(g.start + g.len) as usize];
            let turns = g.cursor.load(Ordering::Relaxed);
            if turns == 0 {
                continue;
            }
            let served_members = match order {
                Order::Consume | Order::Cycle => {
                    &members[..usize::try_from(turns.min(u64::from(g.len))).unwrap_or(0)]
                }
                Order::First => &members[..1],
                Order::Last => &members[members.len() - 1..],
            };
            served_members.iter().for_each(|&f| served(f));
        }
    }

    /// Flows with a response not yet consumed (all of them unless the order is consume).
    pub fn remaining(&self) -> u64 {
        self.remaining.load(Ordering::Relaxed)
    }

    /// Number of distinct keys.
    pub fn keys(&self) -> usize {
        self.keys
    }

    /// Heap bytes held by the index.
    pub fn heap_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Slot>()
            + self.groups.capacity() * std::mem::size_of::<Group>()
            + self.members.capacity() * 4
            + self.taken.len() * 8
            + self.host_is_field.len() * 8
            + self.long_keys.capacity() * std::mem::size_of::<LongKey>()
            + self.key_bytes.capacity()
            + self.segments.capacity() * std::mem::size_of::<Segment>()
    }
}

/// Words of a bitmap with one bit per flow.
fn bitmap_words(flows: usize) -> usize {
    flows.div_ceil(64)
}
