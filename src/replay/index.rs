//! The replay index: recorded flows grouped by match key, built once at load and read-only
//! afterwards except for one atomic cursor per key (spec §c).
//!
//! Lookup hashes the live request's key (streamed, see [`super::key`]), finds the groups with that
//! hash in a hash map, and confirms equality against the group's first recorded request, re-read
//! from the recording: exact, allocation-free and independent of the recording's size.
//!
//! Groups hold only flows that have a response, in recording order. mitmproxy keeps
//! response-less flows in its lists and discards them when a pop reaches them; since a pop then
//! continues with the next flow, the response a request gets is the same as if they were never
//! there (spec §c.2), so leaving them out reproduces its pop order exactly.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use super::key::{self, Item, Items, KeyOptions, KeyRequest};
use crate::config::Order;
use crate::flowfile::Recording;

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
    /// Flows with a response not yet consumed (consume order).
    remaining: AtomicU64,
    /// The key options the index was built with.
    options: KeyOptions,
}

impl Index {
    /// Groups the flows of `recording` that have a response by their key.
    pub fn build(recording: &Recording, options: KeyOptions) -> Index {
        let state = ahash::RandomState::new();
        let mut table: HashMap<u64, u32, BuildHasherDefault<Prehashed>> = HashMap::default();
        // (representative flow, members, next group with the same hash)
        let mut lists: Vec<(u32, Vec<u32>, u32)> = Vec::new();
        for flow in recording.flows() {
            if flow.response.is_none() {
                continue;
            }
            let id = u32::try_from(flow.id).expect("invariant: fewer than 2^32 flows");
            let request = KeyRequest::recorded(&flow.request);
            let mut items = Items::new();
            key::items(&request, &options, &mut items);
            let hash = key::hash(&items, &state);
            let mut group = table.get(&hash).copied().unwrap_or(NONE);
            while group != NONE {
                let rep = recording.flow(lists[group as usize].0 as usize);
                if same_key(&items, &KeyRequest::recorded(&rep.request), &options) {
                    break;
                }
                group = lists[group as usize].2;
            }
            if group == NONE {
                let first = table.get(&hash).copied().unwrap_or(NONE);
                let new = u32::try_from(lists.len()).expect("invariant: fewer than 2^32 keys");
                lists.push((id, Vec::new(), first));
                table.insert(hash, new);
                group = new;
            }
            lists[group as usize].1.push(id);
        }
        let mut members = Vec::with_capacity(lists.iter().map(|l| l.1.len()).sum());
        let groups = lists
            .into_iter()
            .map(|(_, list, next)| {
                let start = members.len() as u32;
                members.extend_from_slice(&list);
                Group {
                    start,
                    len: list.len() as u32,
                    cursor: AtomicU64::new(0),
                    next_same_hash: next,
                }
            })
            .collect();
        table.shrink_to_fit();
        Index {
            state,
            table,
            groups,
            remaining: AtomicU64::new(members.len() as u64),
            members,
            options,
        }
    }

    /// The key options.
    pub fn options(&self) -> &KeyOptions {
        &self.options
    }

    /// The group whose key equals `items`, if any.
    fn find(&self, recording: &Recording, items: &[Item<'_>]) -> Option<&Group> {
        let mut group = *self.table.get(&key::hash(items, &self.state))?;
        while group != NONE {
            let g = &self.groups[group as usize];
            let rep = recording.flow(self.members[g.start as usize] as usize);
            if same_key(items, &KeyRequest::recorded(&rep.request), &self.options) {
                return Some(g);
            }
            group = g.next_same_hash;
        }
        None
    }

    /// The flow that answers a request with key `items` under `order`, consuming it in
    /// consume order; `None` when no recorded response is left for that key.
    pub fn take(&self, recording: &Recording, items: &[Item<'_>], order: Order) -> Option<u32> {
        let g = self.find(recording, items)?;
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
            + self.table.capacity() * (std::mem::size_of::<(u64, u32)>() + 1)
    }
}

/// Whether `items` is the key of the recorded request `other`.
fn same_key(items: &[Item<'_>], other: &KeyRequest<'_>, options: &KeyOptions) -> bool {
    let mut other_items = Items::new();
    key::items(other, options, &mut other_items);
    key::items_equal(items, &other_items)
}
