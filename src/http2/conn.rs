//! One HTTP/2 server connection (RFC 9113), sans-IO, in the style of quinn-proto.
//!
//! Driver contract, in this order: feed what the socket read to [`Conn::recv`] (it returns how
//! many bytes it consumed: keep the rest, and read at least [`MIN_READ_BUFFER`] bytes at a time);
//! take [`Conn::poll_event`]s and answer each [`Event::Request`] with [`Conn::answer`] (or the
//! streaming [`Conn::send_head`], [`Conn::send_data`], [`Conn::send_end`], or [`Conn::kill`]);
//! write [`Conn::transmit`]'s slices in one `writev` and report what was written with
//! [`Conn::advance`]; arm a timer for [`Conn::poll_timeout`] and call [`Conn::handle_timeout`];
//! close the socket once [`Conn::is_done`]. Reply bodies are `B`s (a borrowed or refcounted slice
//! of the mapping): DATA frames point into them, nothing is copied.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::frame::{self, flag, kind, setting, ErrorCode, Header, HEADER_LEN};
use super::{hpack, reply, PREFACE};

/// The read buffer a driver needs: one whole frame of the largest size we accept.
pub const MIN_READ_BUFFER: usize = HEADER_LEN + frame::DEFAULT_MAX_FRAME as usize;

/// How much output [`Conn`] schedules before it waits for [`Conn::advance`].
const FILL_LIMIT: usize = 256 * 1024;

/// How many closed stream ids we remember to tell late frames from protocol errors.
const RECENT: usize = 32;

/// The answer to a request whose header list is larger than [`Limits::max_header_list_size`].
const TOO_LARGE_HEADERS: &[u8] = b"Request header fields too large.\n";
/// The answer to a request whose body is larger than [`Limits::max_body`].
const TOO_LARGE_BODY: &[u8] = b"Request body too large.\n";

/// What one connection accepts; every bound is enforced with the RFC's error.
#[derive(Debug, Clone)]
pub struct Limits {
    /// SETTINGS_MAX_CONCURRENT_STREAMS; more open streams are refused with REFUSED_STREAM.
    pub max_concurrent_streams: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE (RFC 9113 §6.5.2 sizes); a larger request gets 431.
    pub max_header_list_size: u32,
    /// Compressed bytes of one header block (HEADERS + CONTINUATION); more is ENHANCE_YOUR_CALM.
    pub max_header_block: usize,
    /// CONTINUATION frames in one header block; more is ENHANCE_YOUR_CALM.
    pub max_continuations: u32,
    /// Largest request body of one stream, as HTTP/1's `--max-body`; larger gets 413.
    pub max_body: u64,
    /// Request body bytes buffered on the whole connection; the stream that passes it gets 413.
    pub max_buffered_body: usize,
    /// Our SETTINGS_INITIAL_WINDOW_SIZE (at least 65,535: the peer may use the default before
    /// it has read our SETTINGS).
    pub stream_window: u32,
    /// Our connection receive window.
    pub conn_window: u32,
    /// How long the peer has to acknowledge our SETTINGS (then SETTINGS_TIMEOUT).
    pub settings_timeout: Duration,
    /// The window the three rate limits below count in.
    pub rate_window: Duration,
    /// RST_STREAMs from the client and streams we reset (refused, malformed: CVE-2023-44487 and
    /// CVE-2025-8671), per window.
    pub max_resets: u32,
    /// PINGs and SETTINGS (each needs an ACK) per window.
    pub max_control: u32,
    /// Empty DATA and CONTINUATION frames that do not end anything, per window.
    pub max_empty: u32,
    /// Output bytes queued (unwritten) at which [`Conn::recv`] stops taking input until the
    /// driver has written some ([`Conn::wants_read`] says so): a client that sends but never
    /// reads cannot make us queue without bound.
    pub max_pending_output: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_concurrent_streams: 128,
            max_header_list_size: 64 * 1024,
            max_header_block: 64 * 1024,
            max_continuations: 32,
            max_body: 16 * 1024 * 1024,
            max_buffered_body: 64 * 1024 * 1024,
            stream_window: 1024 * 1024,
            conn_window: 16 * 1024 * 1024,
            settings_timeout: Duration::from_secs(10),
            rate_window: Duration::from_secs(1),
            max_resets: 200,
            max_control: 200,
            max_empty: 200,
            max_pending_output: 1024 * 1024,
        }
    }
}

/// A connection error: GOAWAY with `code` has been queued and the connection ends after it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("HTTP/2 connection error {code:?} at byte {offset} of the connection: {what}")]
pub struct ConnError {
    /// The code sent in GOAWAY.
    pub code: ErrorCode,
    /// What the peer did.
    pub what: &'static str,
    /// Offset of the offending frame from the start of the connection (preface included).
    pub offset: u64,
}

/// Why an answer could not be submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// The stream is not open (the client reset it, or it was never delivered); drop the answer.
    #[error("stream {0} is not open")]
    NoStream(u32),
    /// A response head was already sent on the stream.
    #[error("stream {0} already has a response head")]
    HeadSent(u32),
    /// Data or end before the head.
    #[error("stream {0} has no response head yet")]
    NoHead(u32),
    /// The response on the stream has ended.
    #[error("the response on stream {0} has ended")]
    Ended(u32),
}

/// What the connection reports to its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete request (headers, body, trailers) on this stream: see [`Conn::request`].
    Request(u32),
    /// The client reset a delivered stream; any answer to it is dropped.
    Cancelled(u32),
    /// We reset a stream (a malformed request, flow-control breach, refusal); for the log.
    StreamReset {
        /// The stream.
        stream: u32,
        /// The RST_STREAM code.
        code: ErrorCode,
        /// What the client did.
        what: &'static str,
    },
    /// The connection failed; GOAWAY is queued.
    Error(ConnError),
}

/// Whether the first bytes of a plain connection are the HTTP/2 client preface (h2c with prior
/// knowledge), RFC 9113 §3.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preface {
    /// All 24 bytes are there and match.
    Yes,
    /// The bytes so far match; read more to know.
    NeedMore,
    /// Not HTTP/2 (an HTTP/1 request, or anything else).
    No,
}

/// Tells an h2c prior-knowledge connection from HTTP/1 by its first bytes.
pub fn preface(first: &[u8]) -> Preface {
    let n = first.len().min(PREFACE.len());
    if first[..n] != PREFACE[..n] {
        Preface::No
    } else if n == PREFACE.len() {
        Preface::Yes
    } else {
        Preface::NeedMore
    }
}

/// A request as the replayer sees it; every slice borrows the connection.
#[derive(Debug, Clone, Copy)]
pub struct Request<'c> {
    /// `:method`.
    pub method: &'c [u8],
    /// `:scheme` (empty for CONNECT).
    pub scheme: &'c [u8],
    /// `:authority`, or the Host field when the client sent no `:authority`.
    pub authority: &'c [u8],
    /// `:path` (empty for CONNECT).
    pub path: &'c [u8],
    /// The whole body.
    pub body: &'c [u8],
    arena: &'c [u8],
    fields: &'c [Span],
    trailers_from: usize,
}

impl<'c> Request<'c> {
    /// The regular header fields, in order, names lowercase.
    pub fn headers(&self) -> impl Iterator<Item = (&'c [u8], &'c [u8])> + '_ {
        let arena = self.arena;
        self.fields[..self.trailers_from]
            .iter()
            .map(move |s| s.get(arena))
    }

    /// The trailer fields (empty unless the client sent trailing HEADERS).
    pub fn trailers(&self) -> impl Iterator<Item = (&'c [u8], &'c [u8])> + '_ {
        let arena = self.arena;
        self.fields[self.trailers_from..]
            .iter()
            .map(move |s| s.get(arena))
    }
}

/// One field in a stream's arena: name `start..mid`, value `mid..end`.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    start: u32,
    mid: u32,
    end: u32,
}

impl Span {
    fn get(self, arena: &[u8]) -> (&[u8], &[u8]) {
        let (s, m, e) = (self.start as usize, self.mid as usize, self.end as usize);
        (
            arena.get(s..m).unwrap_or_default(),
            arena.get(m..e).unwrap_or_default(),
        )
    }
}

/// A piece of output: our own frame bytes, a slice of a reply body, or a fixed text.
enum Piece<B> {
    Own(usize, usize),
    Body(B, usize, usize),
    Static(&'static [u8]),
}

/// A body chunk waiting for window.
enum Chunk<B> {
    Body(B, usize, usize),
    Static(&'static [u8]),
}

/// The sending half of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Send {
    /// No response head yet.
    Idle,
    /// Head sent, more data may come.
    Open,
    /// The end was submitted; the queue drains, then trailers or END_STREAM.
    Ending,
    /// END_STREAM has been written.
    Done,
}

struct Stream<B> {
    id: u32,
    /// END_STREAM received (half-closed remote).
    recv_done: bool,
    delivered: bool,
    /// The request was answered early (413/431): its remaining DATA is dropped, and once the
    /// answer has ended the stream is reset with NO_ERROR (RFC 9113 §8.1).
    discard: bool,
    arena: Vec<u8>,
    fields: Vec<Span>,
    trailers_from: usize,
    method: (u32, u32),
    scheme: (u32, u32),
    authority: (u32, u32),
    path: (u32, u32),
    content_length: Option<u64>,
    body: Vec<u8>,
    recv_window: i64,
    recv_unacked: u32,
    send: Send,
    send_window: i64,
    queue: VecDeque<Chunk<B>>,
    trailers: Vec<u8>,
    has_trailers: bool,
}

impl<B> Stream<B> {
    fn new() -> Stream<B> {
        Stream {
            id: 0,
            recv_done: false,
            delivered: false,
            discard: false,
            arena: Vec::new(),
            fields: Vec::new(),
            trailers_from: 0,
            method: (0, 0),
            scheme: (0, 0),
            authority: (0, 0),
            path: (0, 0),
            content_length: None,
            body: Vec::new(),
            recv_window: 0,
            recv_unacked: 0,
            send: Send::Idle,
            send_window: 0,
            queue: VecDeque::new(),
            trailers: Vec::new(),
            has_trailers: false,
        }
    }

    /// Empties the stream for reuse, keeping its buffers' capacity.
    fn reset(&mut self, id: u32, recv_window: i64, send_window: i64) {
        self.id = id;
        self.recv_done = false;
        self.delivered = false;
        self.discard = false;
        self.arena.clear();
        self.fields.clear();
        self.trailers_from = 0;
        self.method = (0, 0);
        self.scheme = (0, 0);
        self.authority = (0, 0);
        self.path = (0, 0);
        self.content_length = None;
        self.body.clear();
        self.recv_window = recv_window;
        self.recv_unacked = 0;
        self.send = Send::Idle;
        self.send_window = send_window;
        self.queue.clear();
        self.trailers.clear();
        self.has_trailers = false;
    }

    fn slice(&self, r: (u32, u32)) -> &[u8] {
        self.arena
            .get(r.0 as usize..r.1 as usize)
            .unwrap_or_default()
    }
}

/// A fixed-window event counter.
#[derive(Debug, Clone, Copy)]
struct Rate {
    max: u32,
    start: Option<Instant>,
    count: u32,
}

impl Rate {
    fn new(max: u32) -> Rate {
        Rate {
            max,
            start: None,
            count: 0,
        }
    }

    /// Counts one event at `now`; true when the window's count passes the maximum.
    fn hit(&mut self, now: Instant, window: Duration) -> bool {
        match self.start {
            Some(s) if now.saturating_duration_since(s) < window => {}
            _ => {
                self.start = Some(now);
                self.count = 0;
            }
        }
        self.count = self.count.saturating_add(1);
        self.count > self.max
    }
}

/// A header block in assembly (HEADERS without END_HEADERS, then CONTINUATION).
#[derive(Debug, Clone, Copy)]
struct Pending {
    stream: u32,
    end_stream: bool,
    priority_error: bool,
    continuations: u32,
}

/// What a header block is decoded for.
enum Target {
    /// A new stream's request head.
    Head,
    /// Trailers of an open stream.
    Trailers,
    /// Decoded only to keep the HPACK state (refused, ignored or erroneous).
    Discard,
}

/// One HTTP/2 server connection. See the module docs for the driver contract.
pub struct Conn<B> {
    limits: Limits,
    preface_left: usize,
    got_settings: bool,
    decoder: hpack::Decoder,
    peer_max_frame: u32,
    peer_initial_window: u32,
    conn_send: i64,
    conn_recv: i64,
    conn_recv_unacked: u32,
    streams: Vec<Stream<B>>,
    spare: Vec<Stream<B>>,
    last_client: u32,
    /// Recently closed streams: `(id, reset by us)`.
    recent: [(u32, bool); RECENT],
    recent_at: usize,
    block: Vec<u8>,
    pending: Option<Pending>,
    goaway_sent: bool,
    fatal: bool,
    /// Set while [`Conn::answer`] submits its parts: DATA is scheduled after.
    hold: bool,
    settings_deadline: Option<Instant>,
    resets: Rate,
    control: Rate,
    empty: Rate,
    wbuf: Vec<u8>,
    pieces: VecDeque<Piece<B>>,
    queued: usize,
    events: VecDeque<Event>,
    offset: u64,
    buffered_body: usize,
}

impl<B: AsRef<[u8]> + Clone> Conn<B> {
    /// A connection whose client preface is still to come; our SETTINGS are queued at once.
    pub fn new(limits: Limits, now: Instant) -> Conn<B> {
        let mut conn = Conn {
            preface_left: PREFACE.len(),
            got_settings: false,
            decoder: hpack::Decoder::default(),
            peer_max_frame: frame::DEFAULT_MAX_FRAME,
            peer_initial_window: frame::DEFAULT_WINDOW,
            conn_send: i64::from(frame::DEFAULT_WINDOW),
            conn_recv: i64::from(frame::DEFAULT_WINDOW),
            conn_recv_unacked: 0,
            streams: Vec::new(),
            spare: Vec::new(),
            last_client: 0,
            recent: [(0, false); RECENT],
            recent_at: 0,
            block: Vec::new(),
            pending: None,
            goaway_sent: false,
            fatal: false,
            hold: false,
            settings_deadline: Some(now + limits.settings_timeout),
            resets: Rate::new(limits.max_resets),
            control: Rate::new(limits.max_control),
            empty: Rate::new(limits.max_empty),
            wbuf: Vec::with_capacity(4096),
            pieces: VecDeque::new(),
            queued: 0,
            events: VecDeque::new(),
            offset: 0,
            buffered_body: 0,
            limits,
        };
        conn.limits.stream_window = conn
            .limits
            .stream_window
            .clamp(frame::DEFAULT_WINDOW, frame::MAX_WINDOW as u32);
        conn.limits.conn_window = conn
            .limits
            .conn_window
            .clamp(frame::DEFAULT_WINDOW, frame::MAX_WINDOW as u32);
        let start = conn.wbuf.len();
        frame::put_settings(
            &mut conn.wbuf,
            &[
                (setting::ENABLE_PUSH, 0),
                (
                    setting::MAX_CONCURRENT_STREAMS,
                    conn.limits.max_concurrent_streams,
                ),
                (setting::INITIAL_WINDOW_SIZE, conn.limits.stream_window),
                (
                    setting::MAX_HEADER_LIST_SIZE,
                    conn.limits.max_header_list_size,
                ),
            ],
        );
        let more = conn.limits.conn_window - frame::DEFAULT_WINDOW;
        if more > 0 {
            frame::put_window_update(&mut conn.wbuf, 0, more);
            conn.conn_recv += i64::from(more);
        }
        conn.push_own(start);
        conn
    }

    // ---- input ----

    /// Feeds bytes read from the client; returns how many were consumed (whole frames only:
    /// keep the rest for the next call). After a connection error everything is consumed.
    pub fn recv(&mut self, input: &[u8], now: Instant) -> usize {
        let mut used = 0;
        if self.fatal {
            return input.len();
        }
        if self.preface_left > 0 {
            let done = PREFACE.len() - self.preface_left;
            let n = input.len().min(self.preface_left);
            if input[..n] != PREFACE[done..done + n] {
                self.fail(ErrorCode::ProtocolError, "not the HTTP/2 client preface");
                return input.len();
            }
            self.preface_left -= n;
            self.offset += n as u64;
            used = n;
        }
        while !self.fatal && self.preface_left == 0 && self.wants_read() {
            let rest = &input[used..];
            let Some(h) = Header::parse(rest) else { break };
            if h.len > frame::DEFAULT_MAX_FRAME {
                self.fail(
                    ErrorCode::FrameSizeError,
                    "a frame larger than our max frame size",
                );
                break;
            }
            let total = HEADER_LEN + h.len as usize;
            let Some(payload) = rest.get(HEADER_LEN..total) else {
                break;
            };
            if let Err((code, what)) = self.on_frame(h, payload, now) {
                self.fail(code, what);
            }
            used += total;
            self.offset += total as u64;
        }
        if self.fatal {
            return input.len();
        }
        self.fill();
        used
    }

    /// The next thing to report, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The complete request on `stream`, while the stream is open.
    pub fn request(&self, stream: u32) -> Option<Request<'_>> {
        let s = self
            .streams
            .iter()
            .find(|s| s.id == stream && s.delivered && !s.discard)?;
        let mut authority = s.slice(s.authority);
        if authority.is_empty() {
            authority = s.fields[..s.trailers_from]
                .iter()
                .map(|f| f.get(&s.arena))
                .find(|(n, _)| *n == b"host")
                .map_or(&[][..], |(_, v)| v);
        }
        Some(Request {
            method: s.slice(s.method),
            scheme: s.slice(s.scheme),
            authority,
            path: s.slice(s.path),
            body: &s.body,
            arena: &s.arena,
            fields: &s.fields,
            trailers_from: s.trailers_from,
        })
    }

    /// When [`Conn::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.fatal {
            None
        } else {
            self.settings_deadline
        }
    }

    /// Acts on timers due at `now` (the SETTINGS acknowledgement deadline).
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(d) = self.settings_deadline {
            if now >= d && !self.fatal {
                self.settings_deadline = None;
                self.fail(
                    ErrorCode::SettingsTimeout,
                    "our SETTINGS were not acknowledged in time",
                );
            }
        }
    }

    // ---- commands ----

    /// Answers `stream` with a complete response: `:status`, the recorded `headers` (connection-
    /// specific fields dropped, names lowercased), `body` as DATA frames within the peer's windows,
    /// then `trailers` as a trailing HEADERS frame when there are any.
    pub fn answer(
        &mut self,
        stream: u32,
        status: u16,
        headers: &[(&[u8], &[u8])],
        body: Option<B>,
        trailers: &[(&[u8], &[u8])],
    ) -> Result<(), AnswerError> {
        self.answer_with(
            stream,
            |out| reply::encode_head(out, status, headers),
            body,
            trailers,
        )
    }

    /// [`Conn::answer`] with a head that is already an HPACK block, as [`reply::encode_head`]
    /// writes it (see [`Conn::send_head_block`]): a driver that answers the same head again
    /// sends the block it encoded the first time.
    pub fn answer_block(
        &mut self,
        stream: u32,
        block: &[u8],
        body: Option<B>,
        trailers: &[(&[u8], &[u8])],
    ) -> Result<(), AnswerError> {
        self.answer_with(stream, |out| out.extend_from_slice(block), body, trailers)
    }

    fn answer_with(
        &mut self,
        stream: u32,
        head: impl FnOnce(&mut Vec<u8>),
        body: Option<B>,
        trailers: &[(&[u8], &[u8])],
    ) -> Result<(), AnswerError> {
        let body = body.filter(|b| !b.as_ref().is_empty());
        let has_trailers = reply::h2_fields(trailers).next().is_some();
        let end = body.is_none() && !has_trailers;
        // Schedule once, after the end is known, so the last DATA frame carries END_STREAM.
        self.hold = true;
        let result = self.head_with(stream, end, head).and_then(|()| {
            if end {
                return Ok(());
            }
            if let Some(b) = body {
                self.send_data(stream, b)?;
            }
            self.send_end(stream, trailers)
        });
        self.hold = false;
        self.fill();
        result
    }

    /// Sends the response head on `stream`; `end` also ends the response (no body).
    pub fn send_head(
        &mut self,
        stream: u32,
        status: u16,
        headers: &[(&[u8], &[u8])],
        end: bool,
    ) -> Result<(), AnswerError> {
        self.head_with(stream, end, |out| reply::encode_head(out, status, headers))
    }

    /// Sends a response head that is already an HPACK block, as [`reply::encode_head`] writes
    /// it. That encoding is stateless and without Huffman coding, so a recorded head can be
    /// encoded once at load time and its values patched in place at fixed offsets (dates),
    /// as HTTP/1 heads are. `end` also ends the response.
    pub fn send_head_block(
        &mut self,
        stream: u32,
        block: &[u8],
        end: bool,
    ) -> Result<(), AnswerError> {
        self.head_with(stream, end, |out| out.extend_from_slice(block))
    }

    fn head_with(
        &mut self,
        stream: u32,
        end: bool,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), AnswerError> {
        let i = self.index(stream).ok_or(AnswerError::NoStream(stream))?;
        if self.streams[i].send != Send::Idle {
            return Err(AnswerError::HeadSent(stream));
        }
        let start = self.wbuf.len();
        self.wbuf.resize(start + HEADER_LEN, 0);
        encode(&mut self.wbuf);
        let flags = if end { flag::END_STREAM } else { 0 };
        self.frame_block(start, stream, flags);
        self.streams[i].send = if end { Send::Done } else { Send::Open };
        if end {
            self.after_send_done(i);
        }
        self.fill();
        Ok(())
    }

    /// Queues a body chunk on `stream` (after [`Conn::send_head`]).
    pub fn send_data(&mut self, stream: u32, data: B) -> Result<(), AnswerError> {
        let i = self.index(stream).ok_or(AnswerError::NoStream(stream))?;
        let s = &mut self.streams[i];
        match s.send {
            Send::Idle => return Err(AnswerError::NoHead(stream)),
            Send::Ending | Send::Done => return Err(AnswerError::Ended(stream)),
            Send::Open => {}
        }
        let len = data.as_ref().len();
        if len > 0 && !s.discard {
            s.queue.push_back(Chunk::Body(data, 0, len));
        }
        self.fill();
        Ok(())
    }

    /// Ends the response on `stream`, with `trailers` as a trailing HEADERS frame if non-empty.
    pub fn send_end(
        &mut self,
        stream: u32,
        trailers: &[(&[u8], &[u8])],
    ) -> Result<(), AnswerError> {
        let i = self.index(stream).ok_or(AnswerError::NoStream(stream))?;
        let s = &mut self.streams[i];
        match s.send {
            Send::Idle => return Err(AnswerError::NoHead(stream)),
            Send::Ending | Send::Done => return Err(AnswerError::Ended(stream)),
            Send::Open => {}
        }
        s.trailers.clear();
        reply::encode_fields(&mut s.trailers, trailers);
        s.has_trailers = !s.trailers.is_empty();
        s.send = Send::Ending;
        self.fill();
        Ok(())
    }

    /// Kills the exchange on `stream` as mitmproxy 12 does for a killed HTTP/2 flow:
    /// RST_STREAM with INTERNAL_ERROR (`_http2.py`, `ErrorCode.KILL`).
    pub fn kill(&mut self, stream: u32) -> Result<(), AnswerError> {
        let i = self.index(stream).ok_or(AnswerError::NoStream(stream))?;
        self.reset_stream(i, ErrorCode::InternalError);
        Ok(())
    }

    /// Starts a graceful shutdown: GOAWAY (NO_ERROR) naming the last stream we took; open
    /// streams are finished, new ones ignored; [`Conn::is_done`] once they are all answered.
    pub fn go_away(&mut self) {
        if self.goaway_sent || self.fatal {
            return;
        }
        self.goaway_sent = true;
        let start = self.wbuf.len();
        frame::put_goaway(&mut self.wbuf, self.last_client, ErrorCode::NoError);
        self.push_own(start);
    }

    /// True when the connection has nothing more to do: close the socket.
    pub fn is_done(&self) -> bool {
        self.pieces.is_empty() && (self.fatal || (self.goaway_sent && self.streams.is_empty()))
    }

    /// Body bytes submitted on `stream` that wait for window (not yet in [`Conn::transmit`]),
    /// or `None` when the stream is not open: what a driver relaying a body bounds its memory by.
    pub fn unsent(&self, stream: u32) -> Option<usize> {
        let s = &self.streams[self.index(stream)?];
        Some(
            s.queue
                .iter()
                .map(|c| match c {
                    Chunk::Body(_, p, e) => e - p,
                    Chunk::Static(t) => t.len(),
                })
                .sum(),
        )
    }

    /// Number of open streams.
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    // ---- output ----

    /// The bytes to write now, in order (frame headers and body slices: one `writev`).
    pub fn transmit(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.pieces.iter().map(move |p| match p {
            Piece::Own(s, e) => self.wbuf.get(*s..*e).unwrap_or_default(),
            Piece::Body(b, s, e) => b.as_ref().get(*s..*e).unwrap_or_default(),
            Piece::Static(s) => s,
        })
    }

    /// False while so much output is queued that [`Conn::recv`] takes no more input: write
    /// first, then feed the kept bytes again.
    pub fn wants_read(&self) -> bool {
        self.queued < self.limits.max_pending_output
    }

    /// Bytes held in the frame buffer, written or not (tests check it stays bounded).
    #[cfg(test)]
    pub(crate) fn frame_buffer_len(&self) -> usize {
        self.wbuf.len()
    }

    /// Bytes waiting in [`Conn::transmit`].
    pub fn pending_bytes(&self) -> usize {
        self.queued
    }

    /// Reports that the first `n` bytes of [`Conn::transmit`] were written; schedules more DATA.
    pub fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.pieces.front_mut() else {
                break;
            };
            let len = match front {
                Piece::Own(s, e) | Piece::Body(_, s, e) => *e - *s,
                Piece::Static(s) => s.len(),
            };
            if n >= len {
                n -= len;
                self.queued -= len;
                self.pieces.pop_front();
            } else {
                match front {
                    Piece::Own(s, _) | Piece::Body(_, s, _) => *s += n,
                    Piece::Static(s) => *s = &s[n..],
                }
                self.queued -= n;
                n = 0;
            }
        }
        if self.pieces.is_empty() {
            self.wbuf.clear();
        } else {
            self.compact();
        }
        if !self.fatal {
            self.fill();
        }
    }

    // ---- internals ----

    /// Drops the written front of the frame buffer once it is large, so that a connection whose
    /// output never fully drains does not grow it for ever.
    fn compact(&mut self) {
        let Some(first) = self.pieces.iter().find_map(|p| match p {
            Piece::Own(s, _) => Some(*s),
            _ => None,
        }) else {
            self.wbuf.clear();
            return;
        };
        if first < 64 * 1024 || first < self.wbuf.len() / 2 {
            return;
        }
        self.wbuf.drain(..first);
        for p in &mut self.pieces {
            if let Piece::Own(s, e) = p {
                *s -= first;
                *e -= first;
            }
        }
    }

    fn index(&self, stream: u32) -> Option<usize> {
        self.streams
            .iter()
            .position(|s| s.id == stream && s.delivered)
    }

    fn push_own(&mut self, start: usize) {
        let end = self.wbuf.len();
        if end <= start {
            return;
        }
        self.queued += end - start;
        if let Some(Piece::Own(_, e)) = self.pieces.back_mut() {
            if *e == start {
                *e = end;
                return;
            }
        }
        self.pieces.push_back(Piece::Own(start, end));
    }

    /// Queues a frame the peer made us send (ACKs, resets). [`Conn::recv`] stops taking frames
    /// at [`Limits::max_pending_output`], so this safety net (twice that) should never trip.
    fn control(
        &mut self,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), (ErrorCode, &'static str)> {
        if self.queued > self.limits.max_pending_output.saturating_mul(2) {
            return Err((
                ErrorCode::EnhanceYourCalm,
                "the client makes us queue frames it does not read",
            ));
        }
        let start = self.wbuf.len();
        write(&mut self.wbuf);
        self.push_own(start);
        Ok(())
    }

    /// Turns the header block written at `start + HEADER_LEN..` into HEADERS (+ CONTINUATION
    /// when it is larger than the peer's max frame size) and queues it.
    fn frame_block(&mut self, start: usize, stream: u32, flags: u8) {
        let len = self.wbuf.len() - start - HEADER_LEN;
        let max = self.peer_max_frame as usize;
        if len <= max {
            let h = frame::header_bytes(len, kind::HEADERS, flags | flag::END_HEADERS, stream);
            self.wbuf[start..start + HEADER_LEN].copy_from_slice(&h);
            return self.push_own(start);
        }
        // Rare: a head larger than a frame. Split it (one copy on this path only).
        let block = self.wbuf.split_off(start + HEADER_LEN);
        self.wbuf.truncate(start);
        let mut chunks = block.chunks(max).peekable();
        let mut first = true;
        while let Some(c) = chunks.next() {
            let last = chunks.peek().is_none();
            let k = if first {
                kind::HEADERS
            } else {
                kind::CONTINUATION
            };
            let mut f = if first { flags } else { 0 };
            if last {
                f |= flag::END_HEADERS;
            }
            frame::put_header(&mut self.wbuf, c.len(), k, f, stream);
            self.wbuf.extend_from_slice(c);
            first = false;
        }
        self.push_own(start);
    }

    fn fail(&mut self, code: ErrorCode, what: &'static str) {
        if self.fatal {
            return;
        }
        self.fatal = true;
        let start = self.wbuf.len();
        frame::put_goaway(&mut self.wbuf, self.last_client, code);
        self.push_own(start);
        for mut s in self.streams.drain(..) {
            s.queue.clear();
        }
        self.buffered_body = 0;
        self.events.push_back(Event::Error(ConnError {
            code,
            what,
            offset: self.offset,
        }));
    }

    fn remember(&mut self, id: u32, reset: bool) {
        self.recent[self.recent_at] = (id, reset);
        self.recent_at = (self.recent_at + 1) % RECENT;
    }

    fn recently(&self, id: u32) -> Option<bool> {
        self.recent
            .iter()
            .find(|(i, _)| *i == id && id != 0)
            .map(|(_, r)| *r)
    }

    /// Removes stream `i`, keeping its buffers for the next stream.
    fn remove(&mut self, i: usize, reset: bool) {
        let s = self.streams.swap_remove(i);
        self.buffered_body = self.buffered_body.saturating_sub(s.body.len());
        self.remember(s.id, reset);
        if self.spare.len() < self.limits.max_concurrent_streams as usize {
            self.spare.push(s);
        }
    }

    /// Resets stream `i` with `code` and forgets it.
    fn reset_stream(&mut self, i: usize, code: ErrorCode) {
        let id = self.streams[i].id;
        let start = self.wbuf.len();
        frame::put_rst(&mut self.wbuf, id, code);
        self.push_own(start);
        self.remove(i, true);
    }

    /// A stream error (RFC 9113 §5.4.2) caused by the client.
    fn stream_error(
        &mut self,
        now: Instant,
        id: u32,
        code: ErrorCode,
        what: &'static str,
    ) -> Result<(), (ErrorCode, &'static str)> {
        self.control(|w| frame::put_rst(w, id, code))?;
        // Resets the client provokes count as its own do ("MadeYouReset", CVE-2025-8671): each
        // may have started work (a forward) that the reset throws away.
        if self.resets.hit(now, self.limits.rate_window) {
            return Err((
                ErrorCode::EnhanceYourCalm,
                "too many streams reset (rapid reset)",
            ));
        }
        if let Some(i) = self.streams.iter().position(|s| s.id == id) {
            self.remove(i, true);
        } else {
            self.remember(id, true);
        }
        self.events.push_back(Event::StreamReset {
            stream: id,
            code,
            what,
        });
        Ok(())
    }

    fn after_send_done(&mut self, i: usize) {
        let s = &self.streams[i];
        if s.recv_done {
            self.remove(i, false);
        } else {
            // We answered before the request ended (413/431): stop its upload (RFC 9113 §8.1).
            self.reset_stream(i, ErrorCode::NoError);
        }
    }

    /// Answers stream `i` ourselves with `status` and a short text (431, 413).
    fn answer_error(&mut self, i: usize, status: u16, text: &'static [u8]) {
        let id = self.streams[i].id;
        self.streams[i].delivered = true;
        self.streams[i].discard = true;
        self.buffered_body = self
            .buffered_body
            .saturating_sub(self.streams[i].body.len());
        self.streams[i].body = Vec::new();
        let len = text.len().to_string();
        let headers: [(&[u8], &[u8]); 2] = [
            (b"content-type", b"text/plain"),
            (b"content-length", len.as_bytes()),
        ];
        if self.send_head(id, status, &headers, false).is_ok() {
            if let Some(i) = self.index(id) {
                self.streams[i].queue.push_back(Chunk::Static(text));
                self.streams[i].send = Send::Ending;
            }
        }
    }

    /// Schedules DATA (and trailers) within the windows, round-robin over the streams.
    fn fill(&mut self) {
        if self.hold {
            return;
        }
        loop {
            let mut progressed = false;
            let mut i = 0;
            while i < self.streams.len() {
                if self.queued >= FILL_LIMIT {
                    return;
                }
                let (sent, removed) = self.send_some(i);
                progressed |= sent;
                if !removed {
                    i += 1;
                }
            }
            if !progressed {
                return;
            }
        }
    }

    /// Writes at most one frame for stream `i`: (whether it wrote, whether the stream is gone).
    fn send_some(&mut self, i: usize) -> (bool, bool) {
        let max = self.peer_max_frame as i64;
        let conn_send = self.conn_send;
        let s = &mut self.streams[i];
        if !matches!(s.send, Send::Open | Send::Ending) {
            return (false, false);
        }
        let id = s.id;
        let only_chunk = s.queue.len() == 1;
        let ending = s.send == Send::Ending && !s.has_trailers;
        if let Some(chunk) = s.queue.front_mut() {
            let avail = conn_send.min(s.send_window).min(max);
            if avail <= 0 {
                return (false, false);
            }
            let remaining = match chunk {
                Chunk::Body(_, p, e) => *e - *p,
                Chunk::Static(t) => t.len(),
            };
            let n = remaining.min(avail as usize);
            let last = n == remaining && only_chunk && ending;
            let piece = match chunk {
                Chunk::Body(b, p, _) => {
                    let piece = Piece::Body(b.clone(), *p, *p + n);
                    *p += n;
                    piece
                }
                Chunk::Static(t) => {
                    let piece = Piece::Static(&t[..n]);
                    *t = &t[n..];
                    piece
                }
            };
            if n == remaining {
                s.queue.pop_front();
            }
            s.send_window -= n as i64;
            if last {
                s.send = Send::Done;
            }
            self.conn_send -= n as i64;
            let start = self.wbuf.len();
            let flags = if last { flag::END_STREAM } else { 0 };
            frame::put_header(&mut self.wbuf, n, kind::DATA, flags, id);
            self.push_own(start);
            self.queued += n;
            self.pieces.push_back(piece);
            if last {
                self.after_send_done(i);
                return (true, true);
            }
            return (true, false);
        }
        if s.send != Send::Ending {
            return (false, false);
        }
        // The queue is empty and the end was submitted: trailers, or an empty END_STREAM DATA.
        s.send = Send::Done;
        if s.has_trailers {
            let trailers = std::mem::take(&mut s.trailers);
            let start = self.wbuf.len();
            self.wbuf.resize(start + HEADER_LEN, 0);
            self.wbuf.extend_from_slice(&trailers);
            self.frame_block(start, id, flag::END_STREAM);
            self.streams[i].trailers = trailers;
        } else {
            let start = self.wbuf.len();
            frame::put_header(&mut self.wbuf, 0, kind::DATA, flag::END_STREAM, id);
            self.push_own(start);
        }
        self.after_send_done(i);
        (true, true)
    }

    fn on_frame(
        &mut self,
        h: Header,
        p: &[u8],
        now: Instant,
    ) -> Result<(), (ErrorCode, &'static str)> {
        use ErrorCode::*;
        if !self.got_settings && (h.kind != kind::SETTINGS || h.flags & flag::ACK != 0) {
            return Err((
                ProtocolError,
                "the client preface must be followed by SETTINGS",
            ));
        }
        if let Some(pend) = self.pending {
            if h.kind != kind::CONTINUATION || h.stream != pend.stream {
                return Err((
                    ProtocolError,
                    "a header block interrupted before END_HEADERS",
                ));
            }
        }
        match h.kind {
            kind::DATA => self.on_data(h, p, now),
            kind::HEADERS => self.on_headers(h, p, now),
            kind::CONTINUATION => self.on_continuation(h, p, now),
            kind::PRIORITY => {
                if h.stream == 0 {
                    return Err((ProtocolError, "PRIORITY on stream 0"));
                }
                if p.len() != 5 {
                    return self.stream_error(
                        now,
                        h.stream,
                        FrameSizeError,
                        "PRIORITY not 5 bytes",
                    );
                }
                let dep = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff;
                if dep == h.stream {
                    return self.stream_error(
                        now,
                        h.stream,
                        ProtocolError,
                        "a stream depends on itself",
                    );
                }
                Ok(())
            }
            kind::RST_STREAM => {
                if h.stream == 0 {
                    return Err((ProtocolError, "RST_STREAM on stream 0"));
                }
                if p.len() != 4 {
                    return Err((FrameSizeError, "RST_STREAM not 4 bytes"));
                }
                if h.stream > self.last_client {
                    if self.goaway_sent {
                        return Ok(());
                    }
                    return Err((ProtocolError, "RST_STREAM on an idle stream"));
                }
                if self.resets.hit(now, self.limits.rate_window) {
                    return Err((EnhanceYourCalm, "too many stream resets (rapid reset)"));
                }
                if let Some(i) = self.streams.iter().position(|s| s.id == h.stream) {
                    if self.streams[i].delivered {
                        self.events.push_back(Event::Cancelled(h.stream));
                    }
                    // Closed by the client: its own later frames are STREAM_CLOSED errors.
                    self.remove(i, false);
                }
                Ok(())
            }
            kind::SETTINGS => self.on_settings(h, p, now),
            kind::PUSH_PROMISE => Err((ProtocolError, "PUSH_PROMISE from a client")),
            kind::PING => {
                if h.stream != 0 {
                    return Err((ProtocolError, "PING on a stream"));
                }
                let Ok(payload) = <[u8; 8]>::try_from(p) else {
                    return Err((FrameSizeError, "PING not 8 bytes"));
                };
                if h.flags & flag::ACK != 0 {
                    return Ok(());
                }
                if self.control.hit(now, self.limits.rate_window) {
                    return Err((EnhanceYourCalm, "too many PINGs and SETTINGS (flood)"));
                }
                self.control(|w| frame::put_ping_ack(w, &payload))
            }
            kind::GOAWAY => {
                if h.stream != 0 {
                    return Err((ProtocolError, "GOAWAY on a stream"));
                }
                if p.len() < 8 {
                    return Err((FrameSizeError, "GOAWAY shorter than 8 bytes"));
                }
                // The client opens no more streams; the connection stays until it closes (RFC
                // 9113 §6.8: a GOAWAY alone ends nothing, the client may still PING).
                Ok(())
            }
            kind::WINDOW_UPDATE => {
                let Ok(b) = <[u8; 4]>::try_from(p) else {
                    return Err((FrameSizeError, "WINDOW_UPDATE not 4 bytes"));
                };
                let inc = i64::from(u32::from_be_bytes(b) & 0x7fff_ffff);
                if h.stream == 0 {
                    if inc == 0 {
                        return Err((ProtocolError, "WINDOW_UPDATE of 0 on the connection"));
                    }
                    self.conn_send += inc;
                    if self.conn_send > frame::MAX_WINDOW {
                        return Err((FlowControlError, "connection window above 2^31-1"));
                    }
                    return Ok(());
                }
                if h.stream > self.last_client {
                    if self.goaway_sent {
                        return Ok(());
                    }
                    return Err((ProtocolError, "WINDOW_UPDATE on an idle stream"));
                }
                let Some(i) = self.streams.iter().position(|s| s.id == h.stream) else {
                    return Ok(());
                };
                if inc == 0 {
                    return self.stream_error(now, h.stream, ProtocolError, "WINDOW_UPDATE of 0");
                }
                self.streams[i].send_window += inc;
                if self.streams[i].send_window > frame::MAX_WINDOW {
                    return self.stream_error(
                        now,
                        h.stream,
                        FlowControlError,
                        "stream window above 2^31-1",
                    );
                }
                Ok(())
            }
            _ => Ok(()), // unknown frame types are ignored (RFC 9113 §4.1)
        }
    }

    fn on_settings(
        &mut self,
        h: Header,
        p: &[u8],
        now: Instant,
    ) -> Result<(), (ErrorCode, &'static str)> {
        use ErrorCode::*;
        if h.stream != 0 {
            return Err((ProtocolError, "SETTINGS on a stream"));
        }
        if h.flags & flag::ACK != 0 {
            if !p.is_empty() {
                return Err((FrameSizeError, "SETTINGS ACK with a payload"));
            }
            self.settings_deadline = None;
            return Ok(());
        }
        if p.len() % 6 != 0 {
            return Err((FrameSizeError, "SETTINGS not a multiple of 6 bytes"));
        }
        if self.got_settings && self.control.hit(now, self.limits.rate_window) {
            return Err((EnhanceYourCalm, "too many PINGs and SETTINGS (flood)"));
        }
        self.got_settings = true;
        for s in p.chunks_exact(6) {
            let id = u16::from_be_bytes([s[0], s[1]]);
            let v = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
            match id {
                setting::ENABLE_PUSH if v > 1 => {
                    return Err((ProtocolError, "SETTINGS_ENABLE_PUSH not 0 or 1"))
                }
                setting::INITIAL_WINDOW_SIZE => {
                    if i64::from(v) > frame::MAX_WINDOW {
                        return Err((
                            FlowControlError,
                            "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1",
                        ));
                    }
                    let delta = i64::from(v) - i64::from(self.peer_initial_window);
                    self.peer_initial_window = v;
                    for st in &mut self.streams {
                        st.send_window += delta;
                        if st.send_window > frame::MAX_WINDOW {
                            return Err((FlowControlError, "a stream window above 2^31-1"));
                        }
                    }
                }
                setting::MAX_FRAME_SIZE => {
                    if !(frame::DEFAULT_MAX_FRAME..=frame::MAX_MAX_FRAME).contains(&v) {
                        return Err((ProtocolError, "SETTINGS_MAX_FRAME_SIZE out of range"));
                    }
                    self.peer_max_frame = v;
                }
                // HEADER_TABLE_SIZE: our encoder never uses the dynamic table. The rest we
                // do not need (our replies are within any list size a client asks for or not).
                _ => {}
            }
        }
        self.control(|w| frame::put_header(w, 0, kind::SETTINGS, flag::ACK, 0))
    }

    fn on_data(
        &mut self,
        h: Header,
        p: &[u8],
        now: Instant,
    ) -> Result<(), (ErrorCode, &'static str)> {
        use ErrorCode::*;
        if h.stream == 0 {
            return Err((ProtocolError, "DATA on stream 0"));
        }
        let data = unpad(h, p)?;
        let flen = i64::from(h.len);
        if flen > self.conn_recv {
            return Err((FlowControlError, "DATA beyond the connection window"));
        }
        self.conn_recv -= flen;
        self.conn_recv_unacked += h.len;
        if self.conn_recv_unacked >= self.limits.conn_window / 2 {
            let inc = std::mem::take(&mut self.conn_recv_unacked);
            self.conn_recv += i64::from(inc);
            self.control(|w| frame::put_window_update(w, 0, inc))?;
        }
        if h.stream > self.last_client {
            if self.goaway_sent {
                return Ok(()); // a stream we ignore after our GOAWAY (RFC 9113 §6.8)
            }
            return Err((ProtocolError, "DATA on an idle stream"));
        }
        let end = h.flags & flag::END_STREAM != 0;
        if data.is_empty() && !end && self.empty.hit(now, self.limits.rate_window) {
            return Err((EnhanceYourCalm, "too many empty DATA frames (flood)"));
        }
        let Some(i) = self.streams.iter().position(|s| s.id == h.stream) else {
            if self.recently(h.stream) == Some(true) {
                return Ok(()); // we reset it; late frames are expected
            }
            return self.stream_error(now, h.stream, StreamClosed, "DATA on a closed stream");
        };
        let s = &mut self.streams[i];
        if s.recv_done {
            return self.stream_error(now, h.stream, StreamClosed, "DATA after END_STREAM");
        }
        if flen > s.recv_window {
            return self.stream_error(
                now,
                h.stream,
                FlowControlError,
                "DATA beyond the stream window",
            );
        }
        s.recv_window -= flen;
        s.recv_unacked += h.len;
        if s.discard {
            if end {
                s.recv_done = true;
            }
        } else {
            let new_len = s.body.len() as u64 + data.len() as u64;
            if new_len > s.content_length.unwrap_or(u64::MAX) {
                return self.stream_error(
                    now,
                    h.stream,
                    ProtocolError,
                    "more DATA than content-length",
                );
            }
            if new_len > self.limits.max_body
                || self.buffered_body + data.len() > self.limits.max_buffered_body
            {
                self.answer_error(i, 413, TOO_LARGE_BODY);
                return Ok(());
            }
            s.body.extend_from_slice(data);
            self.buffered_body += data.len();
            if end {
                if s.content_length.is_some_and(|cl| cl != new_len) {
                    return self.stream_error(
                        now,
                        h.stream,
                        ProtocolError,
                        "less DATA than content-length",
                    );
                }
                s.recv_done = true;
                s.delivered = true;
                self.events.push_back(Event::Request(h.stream));
                return Ok(());
            }
        }
        let s = &mut self.streams[i];
        if !end && s.recv_unacked >= self.limits.stream_window / 2 {
            // Never grant more than max_body (+1, so that one byte too many is a 413, not a
            // flow-control error): a stream cannot make us promise what we would not buffer.
            let granted = s.body.len() as u64 + s.recv_window.max(0) as u64;
            let room = self
                .limits
                .max_body
                .saturating_add(1)
                .saturating_sub(granted);
            let inc = u64::from(s.recv_unacked).min(room) as u32;
            if inc > 0 {
                s.recv_unacked -= inc;
                s.recv_window += i64::from(inc);
                self.control(|w| frame::put_window_update(w, h.stream, inc))?;
            }
        }
        Ok(())
    }

    fn on_headers(
        &mut self,
        h: Header,
        p: &[u8],
        now: Instant,
    ) -> Result<(), (ErrorCode, &'static str)> {
        use ErrorCode::*;
        if h.stream == 0 {
            return Err((ProtocolError, "HEADERS on stream 0"));
        }
        if h.stream % 2 == 0 {
            return Err((ProtocolError, "HEADERS on an even (server) stream id"));
        }
        let mut frag = unpad(h, p)?;
        let mut priority_error = false;
        if h.flags & flag::PRIORITY != 0 {
            let Some((prio, rest)) = frag.split_at_checked(5) else {
                return Err((FrameSizeError, "HEADERS too short for its priority fields"));
            };
            let dep = u32::from_be_bytes([prio[0], prio[1], prio[2], prio[3]]) & 0x7fff_ffff;
            priority_error = dep == h.stream;
            frag = rest;
        }
        self.block.clear();
        self.block.extend_from_slice(frag);
        let pend = Pending {
            stream: h.stream,
            end_stream: h.flags & flag::END_STREAM != 0,
            priority_error,
            continuations: 0,
        };
        if h.flags & flag::END_HEADERS == 0 {
            self.pending = Some(pend);
            return Ok(());
        }
        self.finish_block(pend, now)
    }

    fn on_continuation(
        &mut self,
        h: Header,
        p: &[u8],
        now: Instant,
    ) -> Result<(), (ErrorCode, &'static str)> {
        use ErrorCode::*;
        let Some(mut pend) = self.pending else {
            return Err((ProtocolError, "CONTINUATION without a header block"));
        };
        pend.continuations += 1;
        if pend.continuations > self.limits.max_continuations {
            return Err((
                EnhanceYourCalm,
                "too many CONTINUATION frames in one header block",
            ));
        }
        if self.block.len() + p.len() > self.limits.max_header_block {
            return Err((EnhanceYourCalm, "a header block larger than we accept"));
        }
        let end_headers = h.flags & flag::END_HEADERS != 0;
        if p.is_empty() && !end_headers && self.empty.hit(now, self.limits.rate_window) {
            return Err((
                EnhanceYourCalm,
                "too many empty CONTINUATION frames (flood)",
            ));
        }
        self.block.extend_from_slice(p);
        if !end_headers {
            self.pending = Some(pend);
            return Ok(());
        }
        self.pending = None;
        self.finish_block(pend, now)
    }

    /// A complete header block on `pend.stream`: a new request, trailers, or one to discard.
    fn finish_block(
        &mut self,
        pend: Pending,
        now: Instant,
    ) -> Result<(), (ErrorCode, &'static str)> {
        use ErrorCode::*;
        self.pending = None;
        let id = pend.stream;
        let existing = self.streams.iter().position(|s| s.id == id);
        let mut refuse = false;
        let mut ignored_new = false;
        let target = match existing {
            Some(i) if self.streams[i].recv_done => Target::Discard,
            Some(_) => Target::Trailers,
            None if id > self.last_client && self.goaway_sent => {
                ignored_new = true;
                Target::Discard
            }
            None if id > self.last_client => {
                self.last_client = id;
                if self.streams.len() >= self.limits.max_concurrent_streams as usize {
                    refuse = true;
                    Target::Discard
                } else {
                    Target::Head
                }
            }
            None => Target::Discard,
        };
        let i = match target {
            Target::Head => {
                let mut s = self.spare.pop().unwrap_or_else(Stream::new);
                s.reset(
                    id,
                    i64::from(self.limits.stream_window),
                    i64::from(self.peer_initial_window),
                );
                self.streams.push(s);
                Some(self.streams.len() - 1)
            }
            Target::Trailers => existing,
            Target::Discard => None,
        };
        let trailers = matches!(target, Target::Trailers);
        let mut check = Check::new(trailers, self.limits.max_header_list_size as usize);
        let decoded = {
            let Conn {
                decoder,
                streams,
                block,
                ..
            } = self;
            let mut stream = i.map(|i| &mut streams[i]);
            if let Some(s) = stream.as_deref_mut() {
                s.trailers_from = s.fields.len();
            }
            decoder.decode(block, |n, v| check.field(n, v, stream.as_deref_mut()))
        };
        if decoded.is_err() {
            return Err((CompressionError, "an undecodable HPACK header block"));
        }
        // Not a stream we take: protocol checks on the id, then nothing more.
        let Some(i) = i else {
            if refuse {
                return self.stream_error(
                    now,
                    id,
                    RefusedStream,
                    "more concurrent streams than we allow",
                );
            }
            if ignored_new {
                return Ok(()); // after our GOAWAY, new streams are ignored (RFC 9113 §6.8)
            }
            if existing.is_some() {
                return self.stream_error(now, id, StreamClosed, "HEADERS after END_STREAM");
            }
            return match self.recently(id) {
                Some(true) => Ok(()),
                Some(false) => Err((StreamClosed, "HEADERS on a closed stream")),
                None => Err((
                    ProtocolError,
                    "HEADERS on a stream id lower than a previous one",
                )),
            };
        };
        if pend.priority_error {
            return self.stream_error(now, id, ProtocolError, "a stream depends on itself");
        }
        if let Some(what) = check.malformed {
            return self.stream_error(now, id, ProtocolError, what);
        }
        if trailers && !pend.end_stream {
            return self.stream_error(now, id, ProtocolError, "trailers without END_STREAM");
        }
        if check.too_large {
            self.answer_error(i, 431, TOO_LARGE_HEADERS);
            if pend.end_stream {
                if let Some(i) = self.streams.iter().position(|s| s.id == id) {
                    self.streams[i].recv_done = true;
                }
            }
            return Ok(());
        }
        let s = &mut self.streams[i];
        if !trailers {
            s.trailers_from = s.fields.len();
            s.method = check.method;
            s.scheme = check.scheme;
            s.authority = check.authority;
            s.path = check.path;
            s.content_length = check.content_length;
            if let Some(what) = validate_pseudo(s) {
                return self.stream_error(now, id, ProtocolError, what);
            }
        }
        if pend.end_stream {
            if s.content_length.is_some_and(|cl| cl != s.body.len() as u64) {
                return self.stream_error(now, id, ProtocolError, "less DATA than content-length");
            }
            s.recv_done = true;
            s.delivered = true;
            self.events.push_back(Event::Request(id));
        }
        Ok(())
    }
}

/// The payload of a DATA or HEADERS frame without its padding.
fn unpad(h: Header, p: &[u8]) -> Result<&[u8], (ErrorCode, &'static str)> {
    if h.flags & flag::PADDED == 0 {
        return Ok(p);
    }
    let Some((&pad, rest)) = p.split_first() else {
        return Err((
            ErrorCode::FrameSizeError,
            "a padded frame without its pad length",
        ));
    };
    rest.len()
        .checked_sub(pad as usize)
        .map(|n| &rest[..n])
        .ok_or((ErrorCode::ProtocolError, "padding longer than the frame"))
}

/// The pseudo-header rules of RFC 9113 §8.3.1 for a request head.
fn validate_pseudo<B>(s: &Stream<B>) -> Option<&'static str> {
    let present = |r: (u32, u32)| r.1 > r.0;
    if !present(s.method) {
        return Some("a request without :method");
    }
    if s.slice(s.method) == b"CONNECT" {
        if !present(s.authority) || present(s.scheme) || present(s.path) {
            return Some("a CONNECT request needs :authority and no :scheme or :path");
        }
        return None;
    }
    if !present(s.scheme) {
        return Some("a request without :scheme");
    }
    if !present(s.path) {
        return Some("a request without :path (or an empty one)");
    }
    // §8.3.1: a Host field naming another entity than :authority makes the request malformed.
    if present(s.authority) {
        let authority = s.slice(s.authority);
        let other_host = s.fields[..s.trailers_from]
            .iter()
            .map(|f| f.get(&s.arena))
            .any(|(n, v)| n == b"host" && !v.eq_ignore_ascii_case(authority));
        if other_host {
            return Some("a Host field that differs from :authority");
        }
    }
    None
}

/// Field-by-field checks while a header block is decoded (RFC 9113 §8.2 and §8.3).
struct Check {
    trailers: bool,
    max: usize,
    size: usize,
    regular_seen: bool,
    too_large: bool,
    malformed: Option<&'static str>,
    method: (u32, u32),
    scheme: (u32, u32),
    authority: (u32, u32),
    path: (u32, u32),
    seen: u8,
    content_length: Option<u64>,
}

impl Check {
    fn new(trailers: bool, max: usize) -> Check {
        Check {
            trailers,
            max,
            size: 0,
            regular_seen: false,
            too_large: false,
            malformed: None,
            method: (0, 0),
            scheme: (0, 0),
            authority: (0, 0),
            path: (0, 0),
            seen: 0,
            content_length: None,
        }
    }

    fn bad(&mut self, what: &'static str) {
        self.malformed.get_or_insert(what);
    }

    fn field<B>(&mut self, n: &[u8], v: &[u8], stream: Option<&mut Stream<B>>) {
        self.size = self.size.saturating_add(n.len() + v.len() + 32);
        if self.size > self.max {
            self.too_large = true;
        }
        let Some(s) = stream else { return };
        if self.too_large || self.malformed.is_some() {
            return;
        }
        if v.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n') {
            return self.bad("a field value with NUL, CR or LF");
        }
        if v.first().is_some_and(|b| *b == b' ' || *b == b'\t')
            || v.last().is_some_and(|b| *b == b' ' || *b == b'\t')
        {
            return self.bad("a field value with surrounding whitespace");
        }
        let start = s.arena.len() as u32;
        s.arena.extend_from_slice(n);
        let mid = s.arena.len() as u32;
        s.arena.extend_from_slice(v);
        let end = s.arena.len() as u32;
        if let Some(pseudo) = n.strip_prefix(b":") {
            if self.trailers {
                return self.bad("a pseudo-header in trailers");
            }
            if self.regular_seen {
                return self.bad("a pseudo-header after a regular field");
            }
            let (slot, bit) = match pseudo {
                b"method" => (&mut self.method, 1),
                b"scheme" => (&mut self.scheme, 2),
                b"authority" => (&mut self.authority, 4),
                b"path" => (&mut self.path, 8),
                _ => return self.bad("an unknown or response pseudo-header in a request"),
            };
            if self.seen & bit != 0 {
                return self.bad("a repeated pseudo-header");
            }
            self.seen |= bit;
            *slot = (mid, end);
            return;
        }
        self.regular_seen = true;
        if n.is_empty()
            || n.iter()
                .any(|&b| b <= 0x20 || b.is_ascii_uppercase() || b >= 0x7f || b == b':')
        {
            return self.bad("an invalid or uppercase field name");
        }
        if reply::is_connection_specific(n) {
            return self.bad("a connection-specific field in an HTTP/2 request");
        }
        if n == b"te" && v != b"trailers" {
            return self.bad("TE other than \"trailers\"");
        }
        if n == b"content-length" && !self.trailers {
            let parsed = (!v.is_empty() && v.len() <= 19 && v.iter().all(u8::is_ascii_digit))
                .then(|| v.iter().fold(0u64, |a, d| a * 10 + u64::from(d - b'0')));
            match (parsed, self.content_length) {
                (None, _) => return self.bad("an invalid content-length"),
                (Some(a), Some(b)) if a != b => return self.bad("conflicting content-lengths"),
                (Some(a), _) => self.content_length = Some(a),
            }
        }
        s.fields.push(Span { start, mid, end });
    }
}
