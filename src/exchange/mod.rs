//! The protocol-neutral exchange: one place turns a parsed request into an answer. Route
//! ([`crate::upstream::destination`], spec §b.1, §e) → decide (replay / forward / kill / status /
//! loop-508 / no-host) → a reply description ([`ReplyParts`]) any protocol can render. HTTP/1
//! renders it with [`render_http1`] (the pre-rendered, zero-allocation head path); HTTP/2
//! (`server::h2`) renders the same description as HEADERS + DATA, its dates
//! refreshed by the same code as HTTP/1's ([`ReplyFields::Rendered`]). The counters
//! and the `-v` outcome of an answer come from here too ([`Exchange::count`],
//! [`Exchange::answered`]), so every protocol's driver reports the same way.
//!
//! Sans-IO: no socket, no clock (`now` is passed in). Forwarding is the one step that waits on
//! the network, so [`Answer::Forward`] is handed back to the driver, which relays the upstream's
//! response itself.
#![forbid(unsafe_code)]

pub mod repeat;

use std::fmt;
use std::time::SystemTime;

use crate::flowfile::Headers;
use crate::http1;
use crate::replay::lookahead::Lookahead;
use crate::replay::{refresh, Decision, FlowId, LiveRequest, Replayer, RequestFacts};
use crate::stats::{Counters, Outcome};
use crate::upstream::{destination, Destination, Origin, Via};

/// How requests find their destination: reverse mode's origin and the Host value it writes
/// (computed once at start-up), or regular mode (`reverse: None`).
#[derive(Debug, Clone, Copy)]
pub struct Routing<'a> {
    /// Reverse mode's upstream and its Host header value.
    pub reverse: Option<(&'a Origin, &'a [u8])>,
    /// `--set keep_host_header`: leave the client's Host as it is.
    pub keep_host_header: bool,
    /// The client connection is TLS (regular mode: origin-form requests are `https`).
    pub tls: bool,
}

impl<'a> Routing<'a> {
    /// Where a request for `target` with `headers` goes under this routing ([`destination`]:
    /// reverse mode rewrites the Host field unless told to keep it).
    fn destination(
        &self,
        target: &'a [u8],
        headers: &mut [httparse::Header<'a>],
    ) -> Option<Destination<'a>> {
        destination(
            self.reverse,
            self.keep_host_header,
            self.tls,
            target,
            headers,
        )
    }
}

/// A parsed request as the exchange sees it, from any protocol.
#[derive(Debug)]
pub struct Request<'r, 'h> {
    /// The method, as sent.
    pub method: &'r [u8],
    /// The request target, as sent (origin-form or absolute-form).
    pub target: &'r [u8],
    /// The header fields; reverse mode rewrites the Host value in place.
    pub headers: &'h mut [httparse::Header<'r>],
    /// The whole (decoded) body.
    pub body: &'r [u8],
    /// What the renderer must know about the request (HEAD, close wish, HTTP/1.0 keep-alive).
    pub facts: RequestFacts,
}

/// What the exchange answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// This recorded flow's response.
    Replay(FlowId),
    /// An unmatched request in status mode: this code, empty body.
    Status(u16),
    /// Close the connection without a byte.
    Kill,
    /// Send the request upstream (the driver does: it is the one step that waits).
    Forward,
    /// Unmatched, and it carries our own `Via` entry: 508, never forwarded again.
    LoopDetected,
    /// Regular mode, and the request names no usable destination (spec §e.2): 400, then close.
    NoHost,
}

/// One request's route and answer.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'r> {
    /// Where the request goes (`None` only with [`Answer::NoHost`]).
    pub route: Option<Destination<'r>>,
    /// The answer.
    pub answer: Answer,
    /// The request facts the answer is rendered with.
    pub facts: RequestFacts,
}

/// Routes and decides one request. `via` recognises a request that already went through this
/// server (its forward would come back to us). Allocation-free: it runs for every request.
pub fn decide<'r>(
    replayer: &Replayer,
    routing: Routing<'r>,
    via: &Via,
    request: Request<'r, '_>,
) -> Exchange<'r> {
    let facts = request.facts;
    let Some(route) = routing.destination(request.target, request.headers) else {
        return Exchange {
            route: None,
            answer: Answer::NoHost,
            facts,
        };
    };
    let headers: &[httparse::Header<'r>] = request.headers;
    let live = live_request(&route, request.method, headers, request.body);
    let answer = match replayer.decide(&live) {
        Decision::Replay(flow) => Answer::Replay(flow),
        Decision::Status(code) => Answer::Status(code),
        Decision::Kill => Answer::Kill,
        Decision::Forward if via.seen_in(headers) => Answer::LoopDetected,
        Decision::Forward => Answer::Forward,
    };
    Exchange {
        route: Some(route),
        answer,
        facts,
    }
}

/// Notes the HTTP/1 request at the start of `input` in `batch`, to be looked up ahead of
/// serving it ([`Lookahead`]): its head as [`decide`] would route it. A request that is not yet
/// whole, has a body, or has no route is left out (it is served all the same, unhelped).
pub fn look_ahead(replayer: &Replayer, routing: Routing<'_>, input: &[u8], batch: &mut Lookahead) {
    let mut slots = http1::header_slots();
    let Ok(Some(head)) = http1::request::parse_head(input, &mut slots, &http1::Limits::default())
    else {
        return;
    };
    if head.framing != http1::request::Framing::Length(0) {
        return;
    }
    let Some(route) = routing.destination(head.target, head.headers) else {
        return;
    };
    batch.add(
        replayer,
        &live_request(&route, head.method, head.headers, b""),
    );
}

/// The request the matcher sees: its route, method, fields and body.
fn live_request<'a>(
    route: &Destination<'a>,
    method: &'a [u8],
    headers: &'a [httparse::Header<'a>],
    body: &'a [u8],
) -> LiveRequest<'a> {
    LiveRequest {
        scheme: route.scheme,
        method,
        target: route.target,
        host: route.host,
        port: route.port,
        headers,
        body,
    }
}

impl Exchange<'_> {
    /// The request as the matcher saw it, when no recorded flow answered it (for the miss
    /// analysis of the admin endpoints); `None` for a replay or a request without a route.
    pub fn missed<'a>(
        &'a self,
        method: &'a [u8],
        headers: &'a [httparse::Header<'a>],
        body: &'a [u8],
    ) -> Option<LiveRequest<'a>> {
        let route = self.route.as_ref()?;
        if matches!(self.answer, Answer::Replay(_)) {
            return None;
        }
        Some(live_request(route, method, headers, body))
    }

    /// Bumps the answer's counter (a forward is counted when it starts: a summary taken
    /// meanwhile shows it in flight; its result is the driver's to count).
    pub fn count(&self, counters: &Counters) {
        let field = match self.answer {
            Answer::Replay(_) => &counters.replayed,
            Answer::Status(_) => &counters.status_answered,
            Answer::Kill => &counters.killed,
            Answer::Forward => &counters.forwarded,
            Answer::LoopDetected | Answer::NoHost => &counters.rejected,
        };
        Counters::bump(field);
    }

    /// The outcome of an answer that is not a forward, from what [`render_http1`] wrote (or,
    /// for HTTP/2, the status of the reply description): nothing is read from the recording.
    pub fn answered(&self, status: Option<u16>) -> Outcome {
        match (self.answer, status) {
            (Answer::Replay(_), code) => Outcome::Replayed(code.unwrap_or(0)),
            (Answer::Status(code), _) => Outcome::Status(code),
            (Answer::LoopDetected, _) => Outcome::LoopDetected,
            (Answer::NoHost, _) => Outcome::Refused(400),
            (Answer::Kill | Answer::Forward, _) => Outcome::Killed,
        }
    }

    /// The recorded flow that answers (a replay), by index.
    pub fn replayed_flow(&self) -> Option<u32> {
        match self.answer {
            Answer::Replay(flow) => Some(flow.0),
            _ => None,
        }
    }

    /// The URL for `-v` lines (`None` without a route).
    pub fn url<'e>(&'e self, method: &[u8]) -> Option<Url<'e>> {
        Some(Url {
            route: self.route.as_ref()?,
            connect: method.eq_ignore_ascii_case(b"CONNECT"),
        })
    }
}

/// The URL of a request in `-v` and `--log-json` lines; a CONNECT's is its `host:port` target, as mitmdump shows
/// it.
#[derive(Debug, Clone, Copy)]
pub struct Url<'a> {
    /// Where the request goes.
    pub route: &'a Destination<'a>,
    /// A CONNECT: the URL is its authority-form target.
    pub connect: bool,
}

impl fmt::Display for Url<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.route;
        if self.connect {
            return f.write_str(&String::from_utf8_lossy(r.target));
        }
        let default = if r.scheme == b"https" { 443 } else { 80 };
        // An IPv6 host in brackets, as mitmproxy's `hostport` writes it.
        let (open, close) = if r.host.contains(&b':') {
            ("[", "]")
        } else {
            ("", "")
        };
        write!(
            f,
            "{}://{open}{}{close}",
            String::from_utf8_lossy(r.scheme),
            String::from_utf8_lossy(r.host)
        )?;
        if r.port != default {
            write!(f, ":{}", r.port)?;
        }
        f.write_str(&String::from_utf8_lossy(r.target))
    }
}

/// A reply as any protocol renders it: status, the recorded header fields (their dates already
/// shifted when refresh is on), the body slice of the mapping, trailers, close or not.
#[derive(Debug, Clone, Copy)]
pub struct ReplyParts<'a> {
    /// The status code.
    pub status: u16,
    /// The header fields, in wire order (`None`: no fields, e.g. a status answer).
    pub headers: Option<ReplyFields<'a>>,
    /// Seconds the recorded dates were shifted by (spec §d), or `None` with refresh off.
    pub refresh_delta: Option<f64>,
    /// The body, straight from the recording's mapping.
    pub body: &'a [u8],
    /// The recorded trailer fields, if any.
    pub trailers: Option<Headers<'a>>,
    /// Close the connection after it (spec §f.5; HTTP/2 ends the stream instead).
    pub close: bool,
}

/// The header fields of a reply: as recorded, or (refresh on) the fields of the HTTP/1 head the
/// replayer rendered into the caller's scratch buffer, so the one refresh implementation
/// ([`Replayer::write_reply`], `replay::refresh`) shifts the dates for every protocol.
#[derive(Debug, Clone, Copy)]
pub enum ReplyFields<'a> {
    /// The recorded fields, untouched.
    Recorded(Headers<'a>),
    /// The field lines of a rendered HTTP/1 head (status line and blank line excluded).
    Rendered(&'a [u8]),
}

impl<'a> ReplyFields<'a> {
    /// The fields as `(name, value)` pairs, in wire order. Allocation-free.
    pub fn iter(&self) -> ReplyFieldIter<'a> {
        match *self {
            ReplyFields::Recorded(h) => ReplyFieldIter::Recorded(h.iter()),
            ReplyFields::Rendered(lines) => ReplyFieldIter::Rendered(lines),
        }
    }
}

/// The iterator of [`ReplyFields::iter`].
#[derive(Debug)]
pub enum ReplyFieldIter<'a> {
    /// Over recorded fields.
    Recorded(crate::flowfile::HeaderIter<'a>),
    /// Over the `name: value\r\n` lines of a rendered head not yet read.
    Rendered(&'a [u8]),
}

impl<'a> Iterator for ReplyFieldIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            ReplyFieldIter::Recorded(it) => it.next(),
            ReplyFieldIter::Rendered(rest) => loop {
                if rest.is_empty() {
                    return None;
                }
                let end = rest
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .unwrap_or(rest.len());
                let line = &rest[..end];
                *rest = &rest[(end + 2).min(rest.len())..];
                if let Some(colon) = line.iter().position(|&b| b == b':') {
                    return Some((&line[..colon], http1::request::trim(&line[colon + 1..])));
                }
            },
        }
    }
}

/// The status code of an HTTP/1 head (`HTTP/1.1 200 OK…`): the three digits after the first
/// space.
fn status_code(head: &[u8]) -> Option<u16> {
    let space = head.iter().position(|&b| b == b' ')?;
    let digits = head.get(space + 1..space + 4)?;
    digits.iter().try_fold(0u16, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u16::from(d - b'0'))
    })
}

/// The field lines of an HTTP/1 head (`head` starts with the status line): everything between
/// the status line and the blank line.
fn field_lines(head: &[u8]) -> &[u8] {
    let after_status = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .map_or(head.len(), |p| p + 2);
    let fields = &head[after_status..];
    if fields.starts_with(b"\r\n") {
        return &fields[..0];
    }
    let end = fields
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(fields.len(), |p| p + 2);
    &fields[..end]
}

impl Exchange<'_> {
    /// The reply description of a replay or status answer (`None` for kill, forward, loop and
    /// no-host, whose answers are not recorded responses); `now` is a value the caller read.
    /// With refresh on, the head is rendered into `scratch` (cleared first; reuse it across
    /// requests and nothing is allocated once it has grown) and the fields point into it.
    pub fn describe<'a>(
        &self,
        replayer: &'a Replayer,
        now: SystemTime,
        scratch: &'a mut Vec<u8>,
    ) -> Option<ReplyParts<'a>> {
        match self.answer {
            Answer::Replay(flow) => {
                // The head the replayer renders for HTTP/1 (pre-rendered, dates shifted in place
                // with refresh on): its fields, and the body and status it gives, so that no
                // flow is parsed per request; trailers (noted at load) are read only where there
                // are some.
                scratch.clear();
                let body = replayer
                    .write_reply(flow, now, &RequestFacts::default(), scratch)
                    .body;
                let status = status_code(scratch)?;
                let trailers = replayer.trailers(flow);
                let refresh_delta = replayer
                    .refresh()
                    .then(|| refresh::delta_seconds(now, replayer.response_start(flow)));
                Some(ReplyParts {
                    status,
                    headers: Some(ReplyFields::Rendered(field_lines(scratch))),
                    refresh_delta,
                    body,
                    trailers,
                    close: self.facts.wants_close,
                })
            }
            Answer::Status(code) => Some(ReplyParts {
                status: code,
                headers: None,
                refresh_delta: None,
                body: b"",
                trailers: None,
                close: self.facts.wants_close,
            }),
            _ => None,
        }
    }
}

/// Where an HTTP/1 answer is written: rendered bytes, plus bodies that a zero-copy sink may
/// reference from the mapping instead of copying (the server's outbox does).
pub trait Sink {
    /// The rendered bytes so far; heads and tails are appended here.
    fn bytes(&mut self) -> &mut Vec<u8>;
    /// Appends a body from the recording.
    fn push_body(&mut self, body: &[u8]);
    /// Appends a whole answer kept by the repeat cache (head, body and tail in one buffer,
    /// [`repeat`]): a sink that sends by reference holds on to it instead of copying it.
    fn push_wire(&mut self, wire: &std::rc::Rc<[u8]>) {
        self.bytes().extend_from_slice(wire);
    }
}

impl Sink for Vec<u8> {
    fn bytes(&mut self) -> &mut Vec<u8> {
        self
    }

    fn push_body(&mut self, body: &[u8]) {
        self.extend_from_slice(body);
    }
}

/// What the HTTP/1 connection does after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Keep the connection for the next request.
    Continue,
    /// Close it once the answer is written (lingering for the client's FIN).
    Close,
    /// Close it at once, without writing anything more.
    Kill,
}

/// What [`render_http1`] wrote, for the counters and log lines of the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rendered {
    /// What the connection does next.
    pub after: After,
    /// The status written (`None`: a kill, nothing written).
    pub status: Option<u16>,
    /// Body bytes queued (a recorded body; 0 for a HEAD request and for the answers this
    /// server makes itself).
    pub body_bytes: u64,
}

/// Renders a non-forward answer as HTTP/1 into `out`: a replay through the pre-rendered head
/// ([`Replayer::write_reply`], refresh patches applied in place), a status answer, 508, or the
/// no-host 400. `stopping`: the server stops, so the answer says `Connection: close`. `via`
/// names this server in the 508 text. Returns what the connection does next, with the status
/// and body size written.
///
/// # Panics
/// On [`Answer::Forward`]: the driver forwards.
pub fn render_http1(
    exchange: &Exchange<'_>,
    replayer: &Replayer,
    via: &Via,
    now: SystemTime,
    stopping: bool,
    out: &mut impl Sink,
) -> Rendered {
    let close = exchange.facts.wants_close || stopping;
    let close_if = |c: bool| if c { After::Close } else { After::Continue };
    let made = |after, status| Rendered {
        after,
        status: Some(status),
        body_bytes: 0,
    };
    match exchange.answer {
        Answer::Replay(flow) => {
            let facts = RequestFacts {
                wants_close: close,
                ..exchange.facts
            };
            let bytes = out.bytes();
            let head_at = bytes.len();
            let reply = replayer.write_reply(flow, now, &facts, bytes);
            let status = status_code(&bytes[head_at..]);
            if stopping {
                http1::add_connection_close(bytes, head_at);
            }
            out.push_body(reply.body);
            out.bytes().extend_from_slice(reply.tail);
            Rendered {
                after: close_if(reply.close || close),
                status,
                body_bytes: reply.body.len() as u64,
            }
        }
        Answer::Status(code) => {
            let bytes = out.bytes();
            let head_at = bytes.len();
            bytes.extend_from_slice(Replayer::status_reply(code));
            if stopping {
                http1::add_connection_close(bytes, head_at);
            }
            made(close_if(close), code)
        }
        Answer::Kill => Rendered {
            after: After::Kill,
            status: None,
            body_bytes: 0,
        },
        Answer::LoopDetected => {
            let text = format!(
                "request loop: this request already went through this server (Via: {}), so its \
                 destination is this server itself; it is not forwarded again",
                via.received_by()
            );
            http1::write_plain(508, "Loop Detected", &text, close, out.bytes());
            made(close_if(close), 508)
        }
        Answer::NoHost => {
            write_no_host(out.bytes());
            made(After::Close, 400)
        }
        Answer::Forward => panic!("invariant: the driver forwards, render_http1 never sees it"),
    }
}

/// Appends mitmproxy's answer to an origin-form request without a usable Host in regular mode
/// (spec §e.2); the connection closes after it.
fn write_no_host(out: &mut Vec<u8>) {
    const PAGE: &str =
        "<html><body>HTTP request has no host header, destination unknown.</body></html>\n";
    out.extend_from_slice(
        format!(
            "HTTP/1.1 400 Bad Request\r\nServer: uringreplay\r\nConnection: close\r\n\
             Content-Type: text/html\r\ncontent-length: {}\r\n\r\n{PAGE}",
            PAGE.len()
        )
        .as_bytes(),
    );
}

#[cfg(test)]
mod tests;
