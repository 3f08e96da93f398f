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

/// Recordings from this size on are looked up ahead ([`Replayer::looks_ahead`]): below it the
/// index, the entries and the flows' bytes mostly stay cached, and the work of hashing each key
/// twice would be all cost.
pub const LOOKAHEAD_FROM_BYTES: u64 = 64 << 20;

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
