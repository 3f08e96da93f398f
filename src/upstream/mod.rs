//! Forwarding requests that no recording answers: the HTTP/1.1 client side of a reverse proxy.
//!
//! Sans-IO like the rest of the core: it never opens a socket, reads a clock or touches a file.
//! The driver (`server::upstream_io`) owns the sockets and TLS and calls, per forwarded request:
//! 1. [`route`] to find the upstream [`Origin`] and the Host handling (spec §e);
//! 2. [`write_request`] to serialise the request for that upstream (origin-form, hop-by-hop removed,
//!    our [`Via`] entry added; [`Via::seen_in`] tells a request that came back to us);
//! 3. [`ResponseRelay::handle_bytes`] / [`ResponseRelay::handle_eof`] with the bytes the upstream sends,
//!    which appends what to relay to the client as it arrives (nothing buffered whole) and decides
//!    keep-alive on both sides;
//! 4. [`ForwardError::write_response`] when something fails (a one-line 502/504);
//! 5. [`Pool`] to keep idle upstream connections for reuse.
#![forbid(unsafe_code)]

mod error;
mod pool;
mod recorded;
mod request;
mod response;
mod target;
mod via;

pub use error::{ForwardError, ForwardErrorKind};
pub use pool::{Pool, PoolLimits};
pub use recorded::{RecordedOrigins, Seen};
pub use request::{client_wants_keep_alive, write_request};
pub use response::{
    content_length_value, Captured, RelayOutcome, ResponseError, ResponseRelay,
    MAX_RESPONSE_FIELDS, MAX_RESPONSE_HEAD_BYTES,
};
pub use target::{
    destination, route, Destination, HostAction, Mode, Origin, Route, RouteError, Scheme,
    TargetError,
};
pub use via::Via;

/// Case-insensitive test whether a comma-separated header value holds `token` (trimmed).
pub(crate) fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}
