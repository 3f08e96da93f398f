//! The server side of HTTP/1.x, sans-IO: bytes in, requests and response bytes out.
//!
//! It knows nothing about flows, sockets or clocks. [`request`] parses one request (head and body
//! framing, limits); [`chunked`] decodes the chunked transfer coding, strictly and incrementally
//! (the upstream response relay uses it too); [`conn`] is one connection's state machine on top
//! of them (pipelining, `Expect: 100-continue`, keep-alive, error answers); [`connect`] parses
//! CONNECT's authority-form target and writes mitmproxy's `200 Connection established`.
#![forbid(unsafe_code)]

pub mod chunked;
pub mod conn;
pub mod connect;
pub mod keep_alive;
pub mod request;

pub use chunked::{ChunkError, ChunkedDecoder};
pub use conn::{
    write_error, write_plain, write_timeout, Conn, Expiry, Step, Timeouts, MAX_QUEUED_ANSWERS,
    MAX_QUEUED_BYTES,
};
pub use connect::{is_connect, ConnectError, Tunnel, TunnelScheme};
pub use request::{
    header_slots, split_absolute, split_authority, BodyState, HeaderSlots, Limits, Request,
    RequestError, MAX_HEADERS,
};

/// Marks the response head that starts at `head_start` in `out` as the connection's last: adds
/// `Connection: close` before the blank line ending it, unless a `Connection` field already says
/// `close`. Used on the stop path only (it moves the bytes after the head).
pub fn add_connection_close(out: &mut Vec<u8>, head_start: usize) {
    let Some(head) = out.get(head_start..) else {
        return;
    };
    let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
        return;
    };
    let says_close = head[..end].split(|&b| b == b'\n').any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match line.iter().position(|&b| b == b':') {
            Some(colon) if line[..colon].eq_ignore_ascii_case(b"connection") => line[colon + 1..]
                .split(|&b| b == b',')
                .any(|t| request::trim(t).eq_ignore_ascii_case(b"close")),
            _ => false,
        }
    });
    if !says_close {
        let at = head_start + end + 2;
        out.splice(at..at, b"Connection: close\r\n".iter().copied());
    }
}

#[cfg(test)]
mod tests {
    use super::add_connection_close;

    #[test]
    fn connection_close_is_added_once_before_the_blank_line() {
        let mut out = b"earlier|HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec();
        add_connection_close(&mut out, 7);
        assert_eq!(
            out,
            b"earlier|HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        );
        let mut out = b"HTTP/1.1 200 OK\r\nconnection: Keep-Alive, CLOSE\r\n\r\n".to_vec();
        let before = out.clone();
        add_connection_close(&mut out, 0);
        assert_eq!(out, before, "already says close");
        let mut out = b"HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n".to_vec();
        add_connection_close(&mut out, 0);
        assert!(out.ends_with(b"Connection: keep-alive\r\nConnection: close\r\n\r\n"));
    }
}
