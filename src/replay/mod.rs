//! Which recorded response answers a request, and the exact bytes to send (spec §b–§d, §f).
//!
//! Sans-IO: the caller hands in a parsed request and `now`; [`Replayer::decide`] says what to do
//! and [`Replayer::write_reply`] appends the response head to the caller's buffer and points at
//! the body in the recording. Nothing here reads a clock, touches a file or allocates per request.
//!
//! - [`key`]: the match key (spec §b), streamed into a seeded 8-bytes-at-a-time hash and compared without an owned key;
//!   [`text`] and [`form`] decode query strings and form bodies for it.
//! - [`index`]: flows grouped by key in a compact hash table, consume state as atomics (spec §c).
//! - [`template`]: heads rendered at serve time from the recorded fields, or pre-rendered at load
//!   with patch sites for the few that need it (spec §f).
//! - [`refresh`], [`date`], [`cookie`]: date shifting (spec §d).
//!
//! Deliberate differences from mitmproxy: unmatched requests follow the unmatched policy even after
//! every recorded flow was consumed (mitmproxy then forwards everything, its issue 8363); a
//! `Date`/`Expires`/`Last-Modified` whose shifted date leaves years 1–9999 keeps its recorded date
//! (normalised to IMF-fixdate) and the response is still replayed (mitmproxy forwards the request).
//! A cookie expiry that cannot be shifted leaves its `Set-Cookie` field as recorded, as in
//! mitmproxy.
#![forbid(unsafe_code)]

pub mod cookie;
pub mod date;
pub mod form;
pub mod index;
pub mod key;
pub mod lookahead;
pub mod miss;
pub mod refresh;
pub mod template;
pub mod text;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use crate::config::{Order, ReplayOptions, Unmatched};
use crate::flowfile::{LoadEvent, Recording, RequestView, ResponseView};
use date::WholeShift;
use index::{Index, IndexBuilder};
use key::{HeaderFields, KeyHost, KeyOptions, KeyRequest};
use template::{FirstDate, Framing, Shape, ShapeBits, Templates};

/// A live request as the matcher sees it (after reverse-mode rewriting by the caller).
#[derive(Debug, Clone, Copy)]
pub struct LiveRequest<'a> {
    /// `b"http"` / `b"https"`.
    pub scheme: &'a [u8],
    /// Method as received.
    pub method: &'a [u8],
    /// Origin-form request target: path including `?query` (and `#fragment` if sent).
    pub target: &'a [u8],
    /// Host part of the Host header (no port), case preserved; [`key::pretty_host`] computes it
    /// from a Host value exactly as mitmproxy does.
    pub host: &'a [u8],
    /// Destination port.
    pub port: u16,
    /// All request headers in order.
    pub headers: &'a [httparse::Header<'a>],
    /// De-chunked request body.
    pub body: &'a [u8],
}

impl<'a> LiveRequest<'a> {
    /// The request's key parts as the match key reads them (spec §b).
    pub(crate) fn key_request(&self) -> KeyRequest<'a> {
        KeyRequest {
            scheme: self.scheme,
            method: self.method,
            target: self.target,
            host: KeyHost::Single(self.host),
            port: self.port,
            headers: HeaderFields::Live(self.headers),
            body: Some(self.body),
        }
    }
}

/// Index of a flow in the Recording (same as `FlowView::id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowId(pub u32);

/// What to do with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Answer with this recorded flow's response ([`Replayer::write_reply`]).
    Replay(FlowId),
    /// Send the request upstream.
    Forward,
    /// Close the client connection without a byte.
    Kill,
    /// Answer with [`Replayer::status_reply`] of this code.
    Status(u16),
}

/// What the connection layer tells the renderer about the live request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestFacts {
    /// The request method is HEAD.
    pub is_head: bool,
    /// Spec §f.5 rule 2 (the request asks to close), computed by http1.
    pub wants_close: bool,
    /// An HTTP/1.0 request that asks to keep the connection (`Connection: keep-alive`, any
    /// case): with `--keep-alive` its replayed answers say `Connection: keep-alive`, which such a
    /// client (`ab -k`) needs before it reuses the connection.
    pub http10_keep_alive: bool,
}

/// What to send for a replay, after the head was appended to the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply<'a> {
    /// The body, straight from the recording's mapping.
    pub body: &'a [u8],
    /// Bytes after the body: `b"\r\n0\r\n\r\n"` and the like for re-chunked bodies, else `b""`.
    pub tail: &'static [u8],
    /// Close the connection after sending (spec §f.5).
    pub close: bool,
}

/// Whether the connection closes after replaying a response of `shape` (spec §f.5).
fn closes(shape: &Shape<'_>, facts: &RequestFacts) -> bool {
    crate::http1::keep_alive::response_closes(
        shape.body_until_close,
        facts.is_head,
        facts.wants_close,
        shape.response_close,
    )
}

/// What serving a flow's response needs that is dear to read from the recording on every
/// request, read once at load: the response's start time (a decimal float in the file) and its
/// first date field, parsed, and the framing facts of its fields. 13 bytes a flow, indexed by
/// flow id.
#[derive(Debug, Default)]
struct ServeTimes {
    /// `timestamp_start` of each flow's response (`0.0` without one).
    starts: Vec<f64>,
    /// Each flow's [`FirstDate`]: the instant minus the whole seconds of its start, or
    /// [`DATE_UNKNOWN`] / [`DATE_NONE`].
    first_dates: Vec<i32>,
    /// Ids of the flows whose response has trailers, ascending (usually none), so that serving
    /// knows without reading the flow.
    trailers: Vec<u32>,
    /// Each flow's [`ShapeBits`] (`0` without a response): framing and keep-alive facts of its
    /// fields, so that writing a head does not look at them.
    shapes: Vec<u8>,
}

/// [`ServeTimes::first_dates`]: parse at serve time (no date field, or too far from the start).
const DATE_UNKNOWN: i32 = i32::MIN;
/// [`ServeTimes::first_dates`]: the first date field holds no date refresh can shift.
const DATE_NONE: i32 = i32::MIN + 1;

impl ServeTimes {
    /// Notes the next flow.
    fn push(&mut self, response: Option<&ResponseView<'_>>) {
        let Some(response) = response else {
            self.starts.push(0.0);
            self.first_dates.push(DATE_UNKNOWN);
            self.shapes.push(0);
            return;
        };
        self.shapes
            .push(ShapeBits::of(&template::shape(response)).to_byte());
        if response.trailers.is_some_and(|t| t.iter().next().is_some()) {
            self.trailers.push(self.starts.len() as u32);
        }
        let start = response.timestamp_start;
        let encoded = match template::first_date(response) {
            FirstDate::Unknown => DATE_UNKNOWN,
            FirstDate::NotADate => DATE_NONE,
            FirstDate::Epoch(epoch) => epoch
                .checked_sub(start.floor() as i64)
                .and_then(|d| i32::try_from(d).ok())
                .filter(|&d| d > DATE_NONE)
                .unwrap_or(DATE_UNKNOWN),
        };
        self.starts.push(start);
        self.first_dates.push(encoded);
    }

    /// Starts loading what [`ServeTimes::get`] and the shape read for `flow`.
    fn prefetch(&self, flow: usize) {
        if let (Some(start), Some(date), Some(shape)) = (
            self.starts.get(flow),
            self.first_dates.get(flow),
            self.shapes.get(flow),
        ) {
            crate::prefetch::line(start);
            crate::prefetch::line(date);
            crate::prefetch::line(shape);
        }
    }

    /// The response start and first date of flow `flow`.
    fn get(&self, flow: usize) -> (f64, FirstDate) {
        let start = self.starts[flow];
        let date = match self.first_dates[flow] {
            DATE_UNKNOWN => FirstDate::Unknown,
            DATE_NONE => FirstDate::NotADate,
            d => FirstDate::Epoch(start.floor() as i64 + i64::from(d)),
        };
        (start, date)
    }

    /// Gives back spare capacity.
    fn shrink(&mut self) {
        self.starts.shrink_to_fit();
        self.first_dates.shrink_to_fit();
        self.trailers.shrink_to_fit();
        self.shapes.shrink_to_fit();
    }

    /// Heap bytes held.
    fn heap_bytes(&self) -> usize {
        self.starts.capacity() * std::mem::size_of::<f64>()
            + self.first_dates.capacity() * std::mem::size_of::<i32>()
            + self.trailers.capacity() * std::mem::size_of::<u32>()
            + self.shapes.capacity()
    }
}

/// The replay core, shared by every worker thread (Send + Sync), built once at start-up.
#[derive(Debug)]
pub struct Replayer {
    /// The recording the flows come from.
    recording: Arc<Recording>,
    /// Flows by key, with the consume cursors.
    index: Index,
    /// Pre-rendered responses.
    templates: Templates,
    /// Response starts and first dates, read at load.
    times: ServeTimes,
    /// Which flow answers a repeated request.
    order: Order,
    /// Whether dates are shifted when serving.
    refresh: bool,
    /// What to do when nothing matches.
    unmatched: Unmatched,
    /// `--keep-alive`: recorded closes were overridden at load; HTTP/1.0 clients are told.
    keep_alive: bool,
    /// The index that finds the nearest recorded flow for a miss, built on first need (or by
    /// [`Replayer::miss_index`] in the background after load), never on the hit path.
    nearest: OnceLock<miss::MissIndex>,
    /// This replayer among all built in the process (see [`RepeatStamp`]).
    serial: u64,
    /// [`Replayer::reset`]s so far.
    resets: AtomicU64,
    /// Whether drivers should look requests up ahead ([`Replayer::looks_ahead`]).
    looks_ahead: bool,
}

/// Which replayer, in which state, decided a request: two equal stamps mean that a request
/// byte-identical to one decided under the first is decided the same way under the second
/// (the same flow), so a driver may answer it without deciding it again (see
/// [`Replayer::repeat_stamp`]). A new replayer (a reload) or a [`Replayer::reset`] changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepeatStamp {
    serial: u64,
    resets: u64,
}

/// The serial of the next replayer built.
static NEXT_SERIAL: AtomicU64 = AtomicU64::new(0);

/// Builds a [`Replayer`] while a recording loads: fed every flow as the loader reads it (see
/// [`ReplayerBuilder::observe`]), it derives the keys while the flow's bytes are in the cache, so
/// nothing is read twice.
#[derive(Debug)]
pub struct ReplayerBuilder {
    /// The index being built (its table is filled by `finish`).
    index: Index,
    /// Per-flow key hashes so far.
    keys: IndexBuilder,
    /// Flows whose head must be pre-rendered, ascending.
    templated: Vec<u32>,
    /// Response starts and first dates so far.
    times: ServeTimes,
    /// The options.
    options: ReplayOptions,
}

impl ReplayerBuilder {
    /// Notes the next flow of the recording, in order.
    pub fn add_flow(&mut self, request: &RequestView<'_>, response: Option<&ResponseView<'_>>) {
        let id = Index::added(&self.keys);
        self.index.add(&mut self.keys, request, response.is_some());
        self.times.push(response);
        if response.is_some_and(|r| {
            template::needs_template(r, self.options.refresh, self.options.keep_alive)
        }) {
            self.templated
                .push(u32::try_from(id).expect("invariant: fewer than 2^32 flows"));
        }
    }

    /// Takes a load event: [`LoadEvent::HttpFlow`] is noted, others are ignored. Pass every event
    /// of [`Recording::open`] here.
    pub fn observe(&mut self, event: &LoadEvent<'_>) {
        if let LoadEvent::HttpFlow { request, response } = event {
            self.add_flow(request, *response);
        }
    }

    /// The replayer for `recording`, whose flows were all observed in order (if they were not,
    /// they are read again from the recording).
    pub fn build(mut self, recording: Arc<Recording>) -> Replayer {
        if Index::added(&self.keys) != recording.len() {
            let (keys, index) = Index::builder(KeyOptions::from_options(&self.options));
            self.index = index;
            self.keys = keys;
            self.templated.clear();
            self.times = ServeTimes::default();
            for flow in recording.flows() {
                self.add_flow(&flow.request, flow.response.as_ref());
            }
        }
        let ReplayerBuilder {
            mut index,
            keys,
            templated,
            mut times,
            options,
        } = self;
        times.shrink();
        index.finish(keys, &recording);
        let mut templates = Templates::new();
        for id in templated {
            let response = recording
                .response(id as usize)
                .expect("invariant: only flows with a response are templated");
            templates.add(
                &recording,
                id,
                &response,
                options.refresh,
                options.keep_alive,
            );
        }
        templates.shrink();
        Replayer {
            index,
            templates,
            times,
            order: options.order,
            refresh: options.refresh,
            unmatched: options.unmatched,
            keep_alive: options.keep_alive,
            nearest: OnceLock::new(),
            serial: NEXT_SERIAL.fetch_add(1, Ordering::Relaxed),
            resets: AtomicU64::new(0),
            looks_ahead: lookahead::pays_for(recording.len(), recording.summary().bytes),
            recording,
        }
    }
}

impl Replayer {
    /// A builder to feed while loading the recording (the fast way to start).
    pub fn builder(options: &ReplayOptions) -> ReplayerBuilder {
        let (keys, index) = Index::builder(KeyOptions::from_options(options));
        ReplayerBuilder {
            index,
            keys,
            templated: Vec::new(),
            times: ServeTimes::default(),
            options: options.clone(),
        }
    }

    /// Indexes an already loaded recording (re-reading every flow).
    pub fn new(recording: Arc<Recording>, options: &ReplayOptions) -> Replayer {
        Replayer::builder(options).build(recording)
    }

    /// Decides how to answer `request`, consuming a recorded flow in consume order (spec §c.2).
    pub fn decide(&self, request: &LiveRequest<'_>) -> Decision {
        // The key's bytes are streamed into the hash; a candidate is usually confirmed by its
        // recorded fields, so the key is produced again only when those do not decide.
        let taken = self.with_key(request, |key_request, key| {
            self.index
                .take(&self.recording, key_request, key, self.order)
        });
        match taken {
            Some(flow) => Decision::Replay(FlowId(flow)),
            None => match self.unmatched {
                Unmatched::Forward => Decision::Forward,
                Unmatched::Kill => Decision::Kill,
                Unmatched::Status(code) => Decision::Status(code),
            },
        }
    }

    /// Runs `f` with `request`'s key fields and its match key under this replayer's options:
    /// what [`Replayer::decide`] looks up, and [`lookahead::Lookahead`] hashes ahead of it.
    fn with_key<R>(
        &self,
        request: &LiveRequest<'_>,
        f: impl FnOnce(&KeyRequest<'_>, &key::RequestKey<'_, '_>) -> R,
    ) -> R {
        let key_request = request.key_request();
        let key = key::RequestKey {
            request: &key_request,
            options: self.index.options(),
        };
        f(&key_request, &key)
    }

    /// Whether a driver holding several requests at once should note them in a
    /// [`lookahead::Lookahead`] before serving them: the recording has enough flows, and bytes,
    /// for its lookups to miss the caches ([`lookahead::pays_for`]).
    pub fn looks_ahead(&self) -> bool {
        self.looks_ahead
    }

    /// Whether `flow`'s recorded response has trailers (noted at load: nothing is read).
    pub fn has_trailers(&self, flow: FlowId) -> bool {
        self.times.trailers.binary_search(&flow.0).is_ok()
    }

    /// The recorded trailer fields of `flow`'s response, if it has any (read from the flow only
    /// where [`Replayer::has_trailers`] says there are some).
    pub fn trailers(&self, flow: FlowId) -> Option<crate::flowfile::Headers<'_>> {
        if !self.has_trailers(flow) {
            return None;
        }
        self.recording
            .response_untimed(flow.0 as usize)
            .and_then(|r| r.trailers)
    }

    /// What the head [`Replayer::write_reply`] renders for `flow` at `now` depends on besides
    /// the flow: the whole-second shift of its refreshed dates, or `None` when nothing in it
    /// moves with the clock (refresh off, or a pre-rendered head without dates). Two calls for
    /// one flow that give the same value render byte-identical heads (with the same request
    /// facts), so a driver may keep what it derived from the first.
    pub fn head_shift(&self, flow: FlowId, now: SystemTime) -> Option<WholeShift> {
        if !self.refresh {
            return None;
        }
        // The same start `write_reply` shifts from.
        let start = match self.templates.get(flow.0 as usize) {
            Some(t) if self.templates.patches(t).is_empty() => return None,
            Some(t) => t.timestamp_start,
            None => self.times.get(flow.0 as usize).0,
        };
        Some(WholeShift::of(refresh::delta_seconds(now, start)))
    }

    /// `timestamp_start` of `flow`'s recorded response (noted at load; `0.0` without one).
    pub fn response_start(&self, flow: FlowId) -> f64 {
        self.times
            .starts
            .get(flow.0 as usize)
            .copied()
            .unwrap_or(0.0)
    }

    /// Appends the head of `flow`'s response (refreshed unless refresh is off) to `out` and
    /// returns the body, tail and close decision; `now` is a value the caller read.
    ///
    /// # Panics
    /// If `flow` has no response; [`Replayer::decide`] only returns flows that have one.
    pub fn write_reply(
        &self,
        flow: FlowId,
        now: SystemTime,
        facts: &RequestFacts,
        out: &mut Vec<u8>,
    ) -> Reply<'_> {
        let (shape, body) = match self.templates.get(flow.0 as usize) {
            Some(t) => {
                let head = self.templates.head(t);
                let patches = self.templates.patches(t);
                if self.refresh && !patches.is_empty() {
                    let delta = refresh::delta_seconds(now, t.timestamp_start);
                    refresh::write_refreshed_head(out, head, patches, delta, |site| {
                        let fallback = *self.templates.fallback(site)?;
                        Some((fallback, self.recording.bytes(fallback.original)))
                    });
                } else {
                    out.extend_from_slice(head);
                }
                let shape = Shape {
                    framing: t.framing,
                    body_until_close: t.body_until_close,
                    response_close: t.response_close,
                    says_keep_alive: t.says_keep_alive,
                    body: None,
                };
                self.tell_http10_keep_alive(&shape, facts, out);
                out.extend_from_slice(self.templates.chunk_line(t));
                let body = t.body.map_or(&b""[..], |span| self.recording.bytes(span));
                (shape, body)
            }
            None => {
                let response = self
                    .recording
                    .response_untimed(flow.0 as usize)
                    .expect("invariant: decide only replays flows with a response");
                let (start, first_date) = self.times.get(flow.0 as usize);
                let delta = self.refresh.then(|| refresh::delta_seconds(now, start));
                let bits = ShapeBits::from_byte(self.times.shapes[flow.0 as usize]);
                let shape = template::write_head_shaped(out, &response, delta, first_date, bits);
                self.tell_http10_keep_alive(&shape, facts, out);
                let body = shape.body.unwrap_or_default();
                if shape.framing == Framing::Chunked && !body.is_empty() {
                    template::write_chunk_line(out, body.len());
                }
                (shape, body)
            }
        };
        let tail: &'static [u8] = match shape.framing {
            Framing::NoBody | Framing::Plain => b"",
            Framing::Chunked if body.is_empty() => {
                if facts.is_head {
                    b""
                } else {
                    b"0\r\n\r\n"
                }
            }
            Framing::Chunked => {
                if facts.is_head {
                    b"\r\n"
                } else {
                    b"\r\n0\r\n\r\n"
                }
            }
        };
        Reply {
            body,
            tail,
            close: closes(&shape, facts),
        }
    }

    /// With `--keep-alive`, adds `Connection: keep-alive` to a head just written (through its
    /// blank line) for an HTTP/1.0 client that asked for it, unless the head says so already or
    /// the connection closes anyway.
    fn tell_http10_keep_alive(&self, shape: &Shape<'_>, facts: &RequestFacts, out: &mut Vec<u8>) {
        if self.keep_alive
            && facts.http10_keep_alive
            && !shape.says_keep_alive
            && !closes(shape, facts)
            && out.ends_with(b"\r\n\r\n")
        {
            out.truncate(out.len() - 2);
            out.extend_from_slice(b"Connection: keep-alive\r\n\r\n");
        }
    }

    /// The exact bytes of an unmatched-status answer (spec §c.5), e.g.
    /// `b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"`. Codes outside 100–999 give the
    /// 500 answer.
    pub fn status_reply(code: u16) -> &'static [u8] {
        static REPLIES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
        let replies = REPLIES.get_or_init(|| {
            (100..=999u16)
                .map(|c| {
                    format!(
                        "HTTP/1.1 {c} {}\r\ncontent-length: 0\r\n\r\n",
                        template::reason_phrase(c)
                    )
                    .into_bytes()
                })
                .collect()
        });
        let code = if (100..=999).contains(&code) {
            code
        } else {
            500
        };
        &replies[usize::from(code - 100)]
    }

    /// Recorded flows with a response not yet consumed (consume order), for reports and
    /// `--exit-when-done`; in the other orders nothing is consumed and this stays constant.
    pub fn remaining(&self) -> u64 {
        self.index.remaining()
    }

    /// `POST /reset`: every consume cursor back to the start, every served mark cleared; safe
    /// while other threads serve (a request racing with it is answered from before or after).
    pub fn reset(&self) {
        // The stamp changes before and after the marks are cleared: a repeat is then not
        // answered from a decision made before the reset, nor from one made while it cleared
        // (whose mark the clear may have wiped), either of which would leave its flow unmarked
        // for `/unused` while it is served.
        self.resets.fetch_add(1, Ordering::AcqRel);
        self.index.reset(self.order);
        self.resets.fetch_add(1, Ordering::AcqRel);
    }

    /// The stamp under which a request's decision holds for every byte-identical request, or
    /// `None` when deciding changes what the next identical request gets: in consume order a
    /// flow is used once, in cycle order the next flow of the key answers. In the first and
    /// last orders a key is always answered by the same flow, and deciding again only re-marks
    /// a flow already marked served (until a reset, which changes the stamp).
    pub fn repeat_stamp(&self) -> Option<RepeatStamp> {
        match self.order {
            Order::First | Order::Last => Some(RepeatStamp {
                serial: self.serial,
                resets: self.resets.load(Ordering::Acquire),
            }),
            Order::Consume | Order::Cycle => None,
        }
    }

    /// The recorded flows with a response never served since the load or the last
    /// [`Replayer::reset`], ascending (for `/unused`).
    pub fn unused(&self) -> Vec<FlowId> {
        let mut served = vec![false; self.recording.len()];
        self.index.for_each_served(self.order, |f| {
            if let Some(s) = served.get_mut(f as usize) {
                *s = true;
            }
        });
        (0..self.recording.len())
            .filter(|&f| !served[f] && self.recording.has_response(f))
            .map(|f| FlowId(f as u32))
            .collect()
    }

    /// The nearest-flow index of [`miss`], built now if it was not yet (work proportional to the
    /// recording: call it once after load off the serving threads to keep the first miss cheap).
    pub fn miss_index(&self) -> &miss::MissIndex {
        self.nearest
            .get_or_init(|| miss::MissIndex::new(&self.recording))
    }

    /// Which flow answers a repeated request.
    pub fn order(&self) -> Order {
        self.order
    }

    /// The key options the index was built with.
    pub fn key_options(&self) -> &KeyOptions {
        self.index.options()
    }

    /// Whether recorded dates are shifted when serving (refresh on).
    pub fn refresh(&self) -> bool {
        self.refresh
    }

    /// Whether `--keep-alive` is on.
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// What happens to a request that no recording answers.
    pub fn unmatched(&self) -> Unmatched {
        self.unmatched
    }

    /// The recording.
    pub fn recording(&self) -> &Recording {
        &self.recording
    }

    /// Number of distinct keys among the recorded flows with a response.
    pub fn keys(&self) -> usize {
        self.index.keys()
    }

    /// Heap bytes of the index and templates (beyond the recording itself).
    pub fn heap_bytes(&self) -> usize {
        self.index.heap_bytes() + self.templates.heap_bytes() + self.times.heap_bytes()
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
