//! Why a request missed: the nearest recorded flow, which key parts differ, and the flag that
//! would make it match (issue 16, `/misses`); and a bounded ring of recent misses per core.
//!
//! Only misses come here, never hits. The nearest flow is looked for among few candidates: the
//! recorded flows with the same path proper (at most [`SAME_PATH`] of them), or else the
//! [`NEIGHBOURS`] flows whose paths sort on either side of the request's, found by binary search
//! in [`MissIndex`] (one `u32` per flow, sorted by path once). Each part of the key is compared
//! with the key's own definition ([`super::key`]'s part functions), and a suggested flag is kept
//! only when the request's key under the changed options equals the flow's, so it is never a
//! guess. [`MissLog`] analyses at most one miss per [`ANALYSE_EVERY`] per core and keeps the
//! last [`RING`] explanations, each rendered to JSON into a slot whose buffer is reused (the
//! analysis itself allocates: it runs on at most a thousand misses a second per core).
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::key::{self, Item, Items, KeyOptions, KeyRequest, RequestKey};
use super::text::TextMode;
use super::{FlowId, LiveRequest, Replayer};
use crate::config::Order;
use crate::flowfile::Recording;

/// Candidates with the request's path compared at most.
pub const SAME_PATH: usize = 64;
/// Candidates on each side of the request's path compared when no flow has its path.
pub const NEIGHBOURS: usize = 8;
/// Recent misses kept per core.
pub const RING: usize = 64;
/// Smallest time between two analysed misses on one core (the others are only counted).
pub const ANALYSE_EVERY: Duration = Duration::from_millis(1);
/// Distinct miss reasons counted per core (more are counted as one "other" reason).
pub const REASONS: usize = 32;
/// Longest URL, name or value kept in an explanation (longer ones are cut, marked with `…`).
const TEXT_MAX: usize = 512;
/// Most differing query parameters, form fields or headers named in an explanation.
const NAMES_MAX: usize = 16;

/// Recorded flows with a response, sorted by path proper (then recording order).
#[derive(Debug)]
pub struct MissIndex {
    /// Flow ids.
    by_path: Box<[u32]>,
}

impl MissIndex {
    /// Sorts the flows of `recording` by path: each request is read once (a temporary list of
    /// path slices, 24 bytes a flow), then only slices of the mapping are compared.
    pub fn new(recording: &Recording) -> MissIndex {
        let mut paths: Vec<(&[u8], u32)> = (0..recording.len())
            .filter(|&f| recording.has_response(f))
            .map(|f| (path_of(recording, f as u32), f as u32))
            .collect();
        paths.sort_unstable();
        MissIndex {
            by_path: paths.into_iter().map(|(_, f)| f).collect(),
        }
    }

    /// The flows to compare with a request of path proper `path`, in recording order for the
    /// same path, nearest first otherwise.
    pub fn candidates(&self, recording: &Recording, path: &[u8]) -> Vec<u32> {
        let start = self
            .by_path
            .partition_point(|&f| path_of(recording, f) < path);
        let same: Vec<u32> = self.by_path[start..]
            .iter()
            .take_while(|&&f| path_of(recording, f) == path)
            .take(SAME_PATH)
            .copied()
            .collect();
        if !same.is_empty() {
            return same;
        }
        let below = self.by_path[..start].iter().rev().take(NEIGHBOURS);
        let above = self.by_path[start..].iter().take(NEIGHBOURS);
        below.chain(above).copied().collect()
    }
}

/// The path proper of recorded flow `flow`.
fn path_of(recording: &Recording, flow: u32) -> &[u8] {
    key::path_proper(recording.request(flow as usize).path)
}

/// A part of the match key (spec §b).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// The method.
    Method,
    /// `http` / `https`.
    Scheme,
    /// The host (unless `--ignore-host`).
    Host,
    /// The port (unless `--ignore-port`).
    Port,
    /// The path proper.
    Path,
    /// Query pairs (those not ignored).
    Query,
    /// The body, or its form fields (unless `--ignore-content`).
    Body,
    /// `--rheader` values.
    Headers,
}

impl Part {
    /// The name used in JSON and reports.
    pub fn name(self) -> &'static str {
        match self {
            Part::Method => "method",
            Part::Scheme => "scheme",
            Part::Host => "host",
            Part::Port => "port",
            Part::Path => "path",
            Part::Query => "query",
            Part::Body => "body",
            Part::Headers => "headers",
        }
    }

    /// How much a difference here moves a flow away (path and method most).
    fn weight(self) -> u32 {
        match self {
            Part::Path => 8,
            Part::Method | Part::Scheme => 4,
            _ => 1,
        }
    }
}

/// A change of options that makes the request match its nearest flow.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Fix {
    /// `--ignore-param NAME` for each name.
    IgnoreParams(Vec<String>),
    /// `--ignore-payload-param NAME` for each name.
    IgnorePayloadParams(Vec<String>),
    /// `--ignore-content`.
    IgnoreContent,
    /// `--ignore-host`.
    IgnoreHost,
    /// `--ignore-port`.
    IgnorePort,
    /// Drop `--rheader NAME` for each name.
    DropHeaders(Vec<String>),
    /// Several of the above together.
    All(Vec<Fix>),
    /// The key matches but every flow of it was served already (consume order): `POST /reset`,
    /// or `--reuse` to serve the first one again and again.
    Exhausted,
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let each = |f: &mut fmt::Formatter<'_>, flag: &str, names: &[String]| {
            names.iter().enumerate().try_for_each(|(i, n)| {
                let sep = if i > 0 { " " } else { "" };
                write!(f, "{sep}{flag} {n}")
            })
        };
        match self {
            Fix::IgnoreParams(names) => each(f, "--ignore-param", names),
            Fix::IgnorePayloadParams(names) => each(f, "--ignore-payload-param", names),
            Fix::IgnoreContent => f.write_str("--ignore-content"),
            Fix::IgnoreHost => f.write_str("--ignore-host"),
            Fix::IgnorePort => f.write_str("--ignore-port"),
            Fix::DropHeaders(names) => {
                f.write_str("without ")?;
                each(f, "--rheader", names)
            }
            Fix::All(fixes) => fixes.iter().enumerate().try_for_each(|(i, x)| {
                let sep = if i > 0 { " " } else { "" };
                write!(f, "{sep}{x}")
            }),
            Fix::Exhausted => f.write_str("POST /reset, or --reuse"),
        }
    }
}

/// Why a request missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The nearest recorded flow.
    pub flow: FlowId,
    /// The key parts that differ, in key order (empty: the key matches, see [`Fix::Exhausted`]).
    pub differs: Vec<Part>,
    /// Query parameter names whose values differ (decoded, at most a few).
    pub params: Vec<String>,
    /// Form field names whose values differ (urlencoded bodies).
    pub fields: Vec<String>,
    /// `--rheader` names whose values differ.
    pub headers: Vec<String>,
    /// The flag that makes the request match the flow, when one does.
    pub fix: Option<Fix>,
}

impl Explanation {
    /// One short reason for people: `query parameter ts differs`, `path differs`, ….
    pub fn reason(&self) -> String {
        if self.differs.is_empty() {
            return "every recorded flow of its key was served".to_string();
        }
        let mut out = String::new();
        for (i, part) in self.differs.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let names = match part {
                Part::Query => &self.params,
                Part::Body => &self.fields,
                Part::Headers => &self.headers,
                _ => {
                    out.push_str(part.name());
                    continue;
                }
            };
            let what = match part {
                Part::Query => "query parameter",
                Part::Body => "form field",
                _ => "header",
            };
            if names.is_empty() {
                out.push_str(part.name());
            } else {
                let _ = write!(out, "{what} {}", names.join(" "));
            }
        }
        out.push_str(" differ");
        if self.differs.len() == 1
            && !matches!(self.differs[0], Part::Query | Part::Body | Part::Headers)
        {
            out.push('s');
        } else if self.differs.len() == 1 {
            let names = match self.differs[0] {
                Part::Query => self.params.len(),
                Part::Body => self.fields.len(),
                _ => self.headers.len(),
            };
            if names <= 1 {
                out.push('s');
            }
        }
        out
    }
}

/// Finds the nearest recorded flow to a request `replayer` did not match, and why it differs;
/// `None` when the recording has no flow with a response.
pub fn explain(replayer: &Replayer, request: &LiveRequest<'_>) -> Option<Explanation> {
    let recording = replayer.recording();
    let live = request.key_request();
    let options = replayer.key_options();
    let candidates = replayer
        .miss_index()
        .candidates(recording, key::path_proper(request.target));
    let mut best: Option<(u32, Explanation)> = None;
    for flow in candidates {
        let view = recording.request(flow as usize);
        let recorded = KeyRequest::recorded(&view);
        let mut e = compare(&live, &recorded, options);
        e.flow = FlowId(flow);
        let score: u32 = e.differs.iter().map(|p| p.weight()).sum::<u32>()
            + (e.params.len() + e.fields.len() + e.headers.len()) as u32;
        let score = score * 2 + u32::from(e.fix.is_none());
        if best.as_ref().is_none_or(|(s, _)| score < *s) {
            best = Some((score, e));
        }
    }
    let (_, mut e) = best?;
    if e.differs.is_empty() {
        e.fix = (replayer.order() == Order::Consume).then_some(Fix::Exhausted);
    }
    Some(e)
}

/// Canonical bytes of some key items.
fn canonical(items: &[Item<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    key::write_canonical(items, &mut out);
    out
}

/// Items produced by `f` as canonical bytes.
fn part<'a>(f: impl FnOnce(&mut Items<'a>)) -> Vec<u8> {
    let mut items = Items::new();
    f(&mut items);
    canonical(&items)
}

/// Whether `a` and `b` have the same key under `options`.
fn same_key(a: &KeyRequest<'_>, b: &KeyRequest<'_>, options: &KeyOptions) -> bool {
    let mine = part(|out| key::items(a, options, out));
    let mut once = Some(mine.as_slice());
    key::equals_chunks(
        &RequestKey {
            request: b,
            options,
        },
        || once.take(),
    )
}

/// Decoded text of a name or value (as the key compares it), lossy UTF-8, bounded.
fn decoded(raw: &[u8], mode: TextMode) -> Vec<u8> {
    let mut bytes = canonical(&[Item::Text(raw, mode)]);
    bytes.pop(); // the 0xFF end mark
    bytes
}

/// A name for people: lossy UTF-8, at most 512 bytes (cut at a character, marked with `…`).
pub fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.len() <= TEXT_MAX {
        return text.into_owned();
    }
    let mut end = TEXT_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The names (decoded) whose value lists differ between two pair lists, in first-seen order.
fn differing_names<'a>(
    a: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    b: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    mode: TextMode,
    skip: impl Fn(&[u8]) -> bool,
) -> Vec<Vec<u8>> {
    let mut order: Vec<Vec<u8>> = Vec::new();
    let mut values: HashMap<Vec<u8>, [Vec<Vec<u8>>; 2]> = HashMap::new();
    for (side, pairs) in [(0, a.collect::<Vec<_>>()), (1, b.collect::<Vec<_>>())] {
        for (name, value) in pairs {
            if skip(name) {
                continue;
            }
            let name = decoded(name, mode);
            let entry = values.entry(name.clone()).or_insert_with(|| {
                order.push(name);
                Default::default()
            });
            entry[side].push(decoded(value, mode));
        }
    }
    order
        .into_iter()
        .filter(|n| values.get(n).is_some_and(|[x, y]| x != y))
        .collect()
}

/// Compares a live request with a recorded one part by part, and finds a verified fix.
fn compare(live: &KeyRequest<'_>, recorded: &KeyRequest<'_>, options: &KeyOptions) -> Explanation {
    let mut differs = Vec::new();
    if live.method != recorded.method && !live.method.eq_ignore_ascii_case(recorded.method) {
        differs.push(Part::Method);
    }
    if live.scheme != recorded.scheme {
        differs.push(Part::Scheme);
    }
    if key::path_proper(live.target) != key::path_proper(recorded.target) {
        differs.push(Part::Path);
    }
    let body = |r: &KeyRequest<'_>| part(|out| key::body_items(r, options, out));
    if !options.ignore_content && body(live) != body(recorded) {
        differs.push(Part::Body);
    }
    let host = |r: &KeyRequest<'_>| part(|out| key::host_items(r, out));
    if !options.ignore_host && host(live) != host(recorded) {
        differs.push(Part::Host);
    }
    if !options.ignore_port && live.port != recorded.port {
        differs.push(Part::Port);
    }
    let query = |r: &KeyRequest<'_>| part(|out| key::query_items(r, options, out));
    let mut params = Vec::new();
    if query(live) != query(recorded) {
        differs.push(Part::Query);
        let ignored = |name: &[u8]| {
            options
                .ignore_params
                .iter()
                .any(|p| super::text::decodes_to(name, TextMode::Query, p))
        };
        params = differing_names(
            key::pairs(key::query_of(live.target)),
            key::pairs(key::query_of(recorded.target)),
            TextMode::Query,
            ignored,
        );
    }
    let mut fields = Vec::new();
    if differs.contains(&Part::Body) {
        fields = form_fields_differing(live, recorded, options);
    }
    let mut headers = Vec::new();
    for name in &options.use_headers {
        let of = |r: &KeyRequest<'_>| part(|out| key::one_header_items(r.headers, name, out));
        if of(live) != of(recorded) {
            headers.push(name.clone());
        }
    }
    if !headers.is_empty() {
        differs.push(Part::Headers);
    }
    let fix = find_fix(
        live, recorded, options, &differs, &params, &fields, &headers,
    );
    let names = |v: Vec<Vec<u8>>| v.iter().take(NAMES_MAX).map(|n| shown(n)).collect();
    Explanation {
        flow: FlowId(0),
        differs,
        params: names(params),
        fields: names(fields),
        headers: names(headers),
        fix,
    }
}

/// Form field names whose values differ, when both bodies are urlencoded forms and payload
/// params could be ignored (spec §b.4).
fn form_fields_differing(
    live: &KeyRequest<'_>,
    recorded: &KeyRequest<'_>,
    options: &KeyOptions,
) -> Vec<Vec<u8>> {
    fn mode_of<'a>(r: &KeyRequest<'a>) -> Option<(TextMode, &'a [u8])> {
        let body = r.body?;
        let content_type = r.headers.first(b"content-type")?;
        super::form::urlencoded_mode(content_type, body).map(|m| (m, body))
    }
    let (Some((mode, a)), Some((_, b))) = (mode_of(live), mode_of(recorded)) else {
        return Vec::new();
    };
    let ignored = |name: &[u8]| {
        options
            .ignore_payload_params
            .iter()
            .any(|p| super::text::decodes_to(name, mode, p))
    };
    differing_names(key::pairs(a), key::pairs(b), mode, ignored)
}

/// The narrowest change of options, among those the differing parts suggest, under which the
/// two keys are equal; `None` if the path, method or scheme differ or nothing works.
fn find_fix(
    live: &KeyRequest<'_>,
    recorded: &KeyRequest<'_>,
    options: &KeyOptions,
    differs: &[Part],
    params: &[Vec<u8>],
    fields: &[Vec<u8>],
    headers: &[Vec<u8>],
) -> Option<Fix> {
    if differs.is_empty()
        || differs
            .iter()
            .any(|p| matches!(p, Part::Method | Part::Scheme | Part::Path))
    {
        return None;
    }
    let text = |v: &[Vec<u8>]| v.iter().map(|n| shown(n)).collect::<Vec<_>>();
    let mut changed = options.clone();
    let mut fixes = Vec::new();
    for part in differs {
        match part {
            Part::Host => {
                changed.ignore_host = true;
                fixes.push(Fix::IgnoreHost);
            }
            Part::Port => {
                changed.ignore_port = true;
                fixes.push(Fix::IgnorePort);
            }
            Part::Query => {
                if params.is_empty() {
                    return None;
                }
                changed.ignore_params.extend(params.iter().cloned());
                fixes.push(Fix::IgnoreParams(text(params)));
            }
            Part::Body => {
                if fields.is_empty() {
                    changed.ignore_content = true;
                    fixes.push(Fix::IgnoreContent);
                } else {
                    changed.ignore_payload_params.extend(fields.iter().cloned());
                    fixes.push(Fix::IgnorePayloadParams(text(fields)));
                }
            }
            Part::Headers => {
                changed.use_headers.retain(|h| !headers.contains(h));
                fixes.push(Fix::DropHeaders(text(headers)));
            }
            Part::Method | Part::Scheme | Part::Path => return None,
        }
    }
    if !same_key(live, recorded, &changed) {
        // Fields named but the form still differs (their order): the whole body, then.
        let body_at = fixes
            .iter()
            .position(|f| matches!(f, Fix::IgnorePayloadParams(_)))?;
        changed.ignore_content = true;
        fixes[body_at] = Fix::IgnoreContent;
        if !same_key(live, recorded, &changed) {
            return None;
        }
    }
    Some(if fixes.len() == 1 {
        fixes.remove(0)
    } else {
        Fix::All(fixes)
    })
}

/// The full URL of a live request, for people: `scheme://host[:port]target`, bounded.
pub fn live_url(request: &LiveRequest<'_>) -> String {
    let default = matches!(
        (request.scheme, request.port),
        (b"http", 80) | (b"https", 443)
    );
    let host = String::from_utf8_lossy(request.host);
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.into_owned()
    };
    let port = if default {
        String::new()
    } else {
        format!(":{}", request.port)
    };
    shown(
        format!(
            "{}://{host}{port}{}",
            String::from_utf8_lossy(request.scheme),
            String::from_utf8_lossy(request.target)
        )
        .as_bytes(),
    )
}

/// The URL of recorded flow `flow`, for people (as `inspect` shows it).
pub fn recorded_url(recording: &Recording, flow: FlowId) -> String {
    let r = recording.request(flow.0 as usize);
    let live = LiveRequest {
        scheme: r.scheme,
        method: r.method,
        target: r.path,
        host: r.host,
        port: r.port,
        headers: &[],
        body: b"",
    };
    live_url(&live)
}

/// A miss reason and its fix, as counted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reason {
    /// [`Explanation::reason`].
    pub reason: String,
    /// The suggested flag, rendered.
    pub fix: Option<String>,
}

/// One core's recent misses and reason counts (written by its worker, read by the admin).
#[derive(Debug, Default)]
struct MissState {
    /// When each miss came (ns since the epoch) and its pre-rendered JSON object, oldest
    /// overwritten first; buffers reused.
    slots: Vec<(u64, String)>,
    /// The slot the next miss goes to.
    next: usize,
    /// Reasons counted so far (at most [`REASONS`]).
    reasons: Vec<(Reason, u64)>,
    /// Analysed misses whose reason did not fit.
    other: u64,
}

/// One core's miss log: the ring of recent explained misses and the reason counts.
#[derive(Debug)]
pub struct MissLog {
    /// Ring and reasons.
    state: Mutex<MissState>,
    /// Misses seen (analysed or not).
    seen: AtomicU64,
    /// When the last miss was analysed, nanoseconds since the Unix epoch.
    last: AtomicU64,
}

impl Default for MissLog {
    fn default() -> Self {
        MissLog::new()
    }
}

impl MissLog {
    /// An empty log with its [`RING`] slots.
    pub fn new() -> MissLog {
        MissLog {
            state: Mutex::new(MissState {
                slots: Vec::with_capacity(RING),
                ..MissState::default()
            }),
            seen: AtomicU64::new(0),
            last: AtomicU64::new(0),
        }
    }

    /// Notes a request `replayer` did not match, at `now`; explains it unless another miss was
    /// explained less than [`ANALYSE_EVERY`] ago on this core. Call only from the owning worker,
    /// on the miss path. Returns the explanation when one was made.
    pub fn record(
        &self,
        replayer: &Replayer,
        request: &LiveRequest<'_>,
        now: SystemTime,
    ) -> Option<Explanation> {
        // One writer (the owning worker): a load and a store, no locked instruction.
        self.seen
            .store(self.seen.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        let nanos = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && nanos.saturating_sub(last) < ANALYSE_EVERY.as_nanos() as u64 {
            return None;
        }
        self.last.store(nanos.max(1), Ordering::Relaxed);
        let explanation = explain(replayer, request);
        let json = miss_json(replayer, request, explanation.as_ref(), nanos);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let at = state.next;
        if state.slots.len() < RING {
            state.slots.push((nanos, json));
        } else {
            let slot = &mut state.slots[at];
            slot.0 = nanos;
            slot.1.clear();
            slot.1.push_str(&json);
        }
        state.next = (at + 1) % RING;
        if let Some(e) = &explanation {
            let reason = Reason {
                reason: e.reason(),
                fix: e.fix.as_ref().map(Fix::to_string),
            };
            if let Some(entry) = state.reasons.iter_mut().find(|(r, _)| *r == reason) {
                entry.1 += 1;
            } else if state.reasons.len() < REASONS {
                state.reasons.push((reason, 1));
            } else {
                state.other += 1;
            }
        }
        explanation
    }

    /// Misses seen on this core, explained or not.
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }

    /// The kept misses, oldest first: when each came (ns since the epoch) and its JSON object
    /// (see `/misses` in the README).
    pub fn recent(&self) -> Vec<(u64, String)> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let n = state.slots.len();
        let start = if n < RING { 0 } else { state.next };
        (0..n)
            .map(|i| state.slots[(start + i) % n].clone())
            .collect()
    }

    /// Every counted reason with its count, and the count of reasons that did not fit.
    pub fn reasons(&self) -> (Vec<(Reason, u64)>, u64) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (state.reasons.clone(), state.other)
    }

    /// Forgets the ring and the counts (after a reload, the flows they name are gone).
    pub fn clear(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.slots.clear();
        state.next = 0;
        state.reasons.clear();
        state.other = 0;
    }
}

/// The `n` most frequent reasons over several cores' [`MissLog::reasons`], most frequent
/// first (ties: by reason).
pub fn top_reasons(
    per_core: impl IntoIterator<Item = Vec<(Reason, u64)>>,
    n: usize,
) -> Vec<(Reason, u64)> {
    let mut sum: HashMap<Reason, u64> = HashMap::new();
    for reasons in per_core {
        for (reason, count) in reasons {
            *sum.entry(reason).or_default() += count;
        }
    }
    let mut all: Vec<_> = sum.into_iter().collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.reason.cmp(&b.0.reason)));
    all.truncate(n);
    all
}

/// The JSON object of one miss.
fn miss_json(
    replayer: &Replayer,
    request: &LiveRequest<'_>,
    e: Option<&Explanation>,
    nanos: u64,
) -> String {
    let nearest = e.map(|e| {
        let flow = replayer.recording().request(e.flow.0 as usize);
        serde_json::json!({
            "flow": e.flow.0,
            "method": shown(flow.method),
            "url": recorded_url(replayer.recording(), e.flow),
            "differs": e.differs.iter().map(|p| p.name()).collect::<Vec<_>>(),
            "query_params": e.params,
            "form_fields": e.fields,
            "headers": e.headers,
            "reason": e.reason(),
            "fix": e.fix.as_ref().map(Fix::to_string),
        })
    });
    serde_json::json!({
        "time": nanos as f64 / 1e9,
        "method": shown(request.method),
        "url": live_url(request),
        "nearest": nearest,
    })
    .to_string()
}
