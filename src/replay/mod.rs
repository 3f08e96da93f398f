//! STAND-IN for the replay core (issue 3), written by the server branch only so the server can be
//! built and tested before the real `replay` module lands. It has the agreed API shape and a
//! deliberately simple behaviour (exact key on scheme, method, target, host, port and body;
//! consume or first; no refresh). When merging `replay`, take the other side of this file.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::config::{Order, ReplayOptions, Unmatched};
use crate::flowfile::Recording;

/// A live request as the matcher sees it (after reverse-mode rewriting).
#[derive(Debug)]
pub struct LiveRequest<'a> {
    /// `http` or `https`.
    pub scheme: &'a [u8],
    /// Method as sent.
    pub method: &'a [u8],
    /// Origin-form target: path and query.
    pub target: &'a [u8],
    /// Host part of the Host, no port.
    pub host: &'a [u8],
    /// Destination port.
    pub port: u16,
    /// Header fields in order.
    pub headers: &'a [httparse::Header<'a>],
    /// The de-chunked body.
    pub body: &'a [u8],
}

/// A recorded flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowId(pub u32);

/// What answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// This recorded flow.
    Replay(FlowId),
    /// The upstream.
    Forward,
    /// Nobody: close the connection.
    Kill,
    /// An empty response with this status.
    Status(u16),
}

/// Facts about the live request that shape the reply.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts {
    /// The request is HEAD.
    pub is_head: bool,
    /// Spec §f.5 rule 2.
    pub wants_close: bool,
}

/// The body part of a rendered reply.
#[derive(Debug)]
pub struct Reply<'a> {
    /// Body bytes to send after the head.
    pub body: &'a [u8],
    /// Bytes after the body (chunk terminator).
    pub tail: &'static [u8],
    /// Close the connection after this reply.
    pub close: bool,
}

/// Decides and renders replies (stand-in).
pub struct Replayer {
    recording: Arc<Recording>,
    options: ReplayOptions,
    used: Mutex<Vec<bool>>,
    remaining: AtomicU64,
}

impl std::fmt::Debug for Replayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replayer").finish_non_exhaustive()
    }
}

impl Replayer {
    /// Builds the stand-in.
    pub fn new(recording: Arc<Recording>, options: &ReplayOptions) -> Replayer {
        let n = recording.len();
        Replayer {
            recording,
            options: options.clone(),
            used: Mutex::new(vec![false; n]),
            remaining: AtomicU64::new(n as u64),
        }
    }

    /// Which flow (or action) answers `request`.
    pub fn decide(&self, request: &LiveRequest<'_>) -> Decision {
        let mut used = self.used.lock().expect("invariant: no panics while locked");
        if self.remaining.load(Ordering::Relaxed) == 0 {
            return Decision::Forward;
        }
        for flow in self.recording.flows() {
            let r = &flow.request;
            let same = r.scheme == request.scheme
                && r.method.eq_ignore_ascii_case(request.method)
                && r.path == request.target
                && (self.options.ignore_host || r.host == request.host)
                && (self.options.ignore_port || r.port == request.port)
                && (self.options.ignore_content || r.content.unwrap_or_default() == request.body)
                && flow.response.is_some();
            if !same {
                continue;
            }
            if self.options.order == Order::Consume {
                if used[flow.id] {
                    continue;
                }
                used[flow.id] = true;
                self.remaining.fetch_sub(1, Ordering::Relaxed);
            }
            return Decision::Replay(FlowId(flow.id as u32));
        }
        match self.options.unmatched {
            Unmatched::Forward => Decision::Forward,
            Unmatched::Kill => Decision::Kill,
            Unmatched::Status(c) => Decision::Status(c),
        }
    }

    /// Appends the head of `flow`'s response to `out`; returns the body to send after it.
    pub fn write_reply(
        &self,
        flow: FlowId,
        _now: SystemTime,
        facts: &RequestFacts,
        out: &mut Vec<u8>,
    ) -> Reply<'_> {
        let view = self.recording.flow(flow.0 as usize);
        let resp = view
            .response
            .expect("invariant: decided flows have a response");
        out.extend_from_slice(resp.http_version);
        out.extend_from_slice(format!(" {} ", resp.status_code).as_bytes());
        out.extend_from_slice(resp.reason);
        out.extend_from_slice(b"\r\n");
        let mut chunked = false;
        let mut length = false;
        for (name, value) in resp.headers.iter() {
            chunked |= name.eq_ignore_ascii_case(b"transfer-encoding")
                && value.to_ascii_lowercase().ends_with(b"chunked");
            length |= name.eq_ignore_ascii_case(b"content-length");
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        let body = resp.content.unwrap_or_default();
        let no_body_status = matches!(resp.status_code, 100..=199 | 204 | 304);
        let eof_framed = !facts.is_head && !no_body_status && !chunked && !length;
        let close = facts.wants_close || eof_framed || resp.http_version != b"HTTP/1.1";
        if chunked {
            if !body.is_empty() {
                out.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
            }
            let tail: &'static [u8] = match (body.is_empty(), facts.is_head) {
                (_, true) => b"",
                (true, false) => b"0\r\n\r\n",
                (false, false) => b"\r\n0\r\n\r\n",
            };
            return Reply { body, tail, close };
        }
        Reply {
            body,
            tail: b"",
            close,
        }
    }

    /// The exact bytes of a status-mode answer (spec §c.5).
    pub fn status_reply(code: u16) -> &'static [u8] {
        match code {
            204 => b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n",
            400 => b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n",
            404 => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            _ => b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n",
        }
    }

    /// Flows not yet replayed.
    pub fn remaining(&self) -> u64 {
        self.remaining.load(Ordering::Relaxed)
    }

    /// The recording.
    pub fn recording(&self) -> &Recording {
        &self.recording
    }
}
