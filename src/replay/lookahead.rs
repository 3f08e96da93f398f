//! Looking requests up ahead: a driver that holds several requests at once (a ring turn's
//! receives) starts loading what deciding and answering each of them reads before it serves the
//! first, so that their cache misses overlap instead of stalling one request after another. In a
//! walk over a recording larger than the caches every request misses on its index slot, its
//! flow's entry and per-flow facts, and the flow's bytes; each of those loads needs the one
//! before it, so the batch goes through them stage by stage. Hints only: nothing is decided,
//! consumed or marked, and a wrong guess costs a wasted load.

use super::{LiveRequest, Replayer};

/// Requests one batch holds at most (more than a turn usually has).
pub const LOOKAHEAD_MAX: usize = 16;

/// Recordings of this size or more, and of [`LOOKAHEAD_FROM_FLOWS`] flows or more, are looked
/// up ahead ([`pays_for`]).
pub const LOOKAHEAD_FROM_BYTES: u64 = 64 << 20;

/// See [`LOOKAHEAD_FROM_BYTES`]: what a lookup reads of this many flows (about 1 KiB of each
/// flow's request and response, and its index slot, entry and facts) no longer stays cached.
pub const LOOKAHEAD_FROM_FLOWS: usize = 32 * 1024;

/// Whether a recording of `flows` flows and `bytes` bytes is worth looking up ahead
/// ([`Replayer::looks_ahead`]). Below either figure what lookups read mostly stays cached (a few
/// flows with large bodies read only their heads; many small flows fit the cache whole), and
/// parsing and hashing each request twice would be all cost.
pub fn pays_for(flows: usize, bytes: u64) -> bool {
    flows >= LOOKAHEAD_FROM_FLOWS && bytes >= LOOKAHEAD_FROM_BYTES
}

/// The requests of one batch, by the hash of their keys.
#[derive(Debug, Default)]
pub struct Lookahead {
    hashes: [u64; LOOKAHEAD_MAX],
    len: usize,
}

impl Lookahead {
    /// Whether the batch holds [`LOOKAHEAD_MAX`] requests (more are not noted).
    pub fn is_full(&self) -> bool {
        self.len == LOOKAHEAD_MAX
    }

    /// Requests noted since the last [`Lookahead::fetch`].
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no request is noted.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Notes `request`: its key is hashed as [`Replayer::decide`] hashes it, and the index slot
    /// that lookup probes first starts loading.
    pub fn add(&mut self, replayer: &Replayer, request: &LiveRequest<'_>) {
        if self.is_full() {
            return;
        }
        let hash = replayer.with_key(request, |_, key| replayer.index.hash(key));
        replayer.index.prefetch_slot(hash);
        self.hashes[self.len] = hash;
        self.len += 1;
    }

    /// Starts loading, for every noted request, what deciding and answering it reads next (the
    /// likely flow's entry, its per-flow facts and words, then its request and response bytes),
    /// and empties the batch. Returns how many of them a likely flow was found for.
    pub fn fetch(&mut self, replayer: &Replayer) -> usize {
        let mut flows = [u32::MAX; LOOKAHEAD_MAX];
        for (hash, flow) in self.hashes[..self.len].iter().zip(flows.iter_mut()) {
            if let Some(f) = replayer.index.candidate(*hash) {
                replayer.recording.prefetch_entry(f as usize);
                replayer.times.prefetch(f as usize);
                *flow = f;
            }
        }
        let mut found = 0;
        for &flow in flows[..self.len].iter().filter(|&&f| f != u32::MAX) {
            replayer.recording.prefetch_flow(flow as usize);
            found += 1;
        }
        self.len = 0;
        found
    }
}
