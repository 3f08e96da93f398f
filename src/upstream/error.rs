//! Upstream failures and the one-line 502/504 answers the client gets for them.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::Duration;

use super::{Origin, ResponseError};

/// What went wrong while forwarding to an upstream.
#[derive(Debug, thiserror::Error)]
pub enum ForwardErrorKind {
    /// The host name did not resolve to an address.
    #[error("cannot resolve upstream host: {0}")]
    Resolve(String),
    /// The TCP connection was refused (by this address, the last one tried).
    #[error("connection refused")]
    Refused(SocketAddr),
    /// Connecting failed otherwise (unreachable network or host, reset, …).
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    /// Connecting (TCP and TLS handshake) took longer than the upstream timeout.
    #[error("no connection within {}s", .0.as_secs_f64())]
    ConnectTimeout(Duration),
    /// The TLS handshake failed (certificate, protocol, …).
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    /// The upstream sent nothing for longer than the upstream timeout.
    #[error("no response within {}s", .0.as_secs_f64())]
    ResponseTimeout(Duration),
    /// The response could not be parsed or ended early.
    #[error("bad response: {0}")]
    Response(#[from] ResponseError),
    /// Sending or receiving failed after the connection was made.
    #[error("connection failed: {0}")]
    Io(std::io::Error),
}

/// A failed forward: which upstream, and what happened.
#[derive(Debug, thiserror::Error)]
#[error("upstream {origin}: {kind}")]
pub struct ForwardError {
    /// The upstream the request was for.
    pub origin: Origin,
    /// What happened.
    pub kind: ForwardErrorKind,
}

impl ForwardError {
    /// 504 for timeouts, 502 for everything else.
    pub fn status(&self) -> u16 {
        match self.kind {
            ForwardErrorKind::ConnectTimeout(_) | ForwardErrorKind::ResponseTimeout(_) => 504,
            _ => 502,
        }
    }

    /// The failure as a saved flow's `error.msg` says it: a refused connection as mitmproxy
    /// (Python's asyncio) words it, `[Errno 111] Connect call failed ('127.0.0.1', 9)`; any
    /// other failure in our own words (`upstream up:80: no response within 30s`).
    pub fn flow_message(&self) -> String {
        match &self.kind {
            ForwardErrorKind::Refused(SocketAddr::V4(a)) => format!(
                "[Errno 111] Connect call failed ('{}', {})",
                a.ip(),
                a.port()
            ),
            ForwardErrorKind::Refused(SocketAddr::V6(a)) => format!(
                "[Errno 111] Connect call failed ('{}', {}, {}, {})",
                a.ip(),
                a.port(),
                a.flowinfo(),
                a.scope_id()
            ),
            _ => self.to_string(),
        }
    }

    /// Appends the answer for the client: `HTTP/1.1 502 Bad Gateway` (or 504 Gateway Timeout), a
    /// plain-text body of one line naming the upstream, and `connection: close` unless `keep_alive`.
    pub fn write_response(&self, out: &mut Vec<u8>, keep_alive: bool) {
        let reason = match self.status() {
            504 => "Gateway Timeout",
            _ => "Bad Gateway",
        };
        let body = format!("{self}\n");
        let connection = if keep_alive {
            ""
        } else {
            "connection: close\r\n"
        };
        out.extend_from_slice(
            format!(
                "HTTP/1.1 {} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n{connection}\r\n{body}",
                self.status(),
                body.len()
            )
            .as_bytes(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::Scheme;

    fn err(kind: ForwardErrorKind) -> ForwardError {
        ForwardError {
            origin: Origin {
                scheme: Scheme::Https,
                host: "up.test".into(),
                port: 8443,
            },
            kind,
        }
    }

    #[test]
    fn refused_is_a_502_naming_the_upstream() {
        let mut out = Vec::new();
        err(ForwardErrorKind::Refused("127.0.0.1:9".parse().unwrap()))
            .write_response(&mut out, true);
        let body = "upstream up.test:8443: connection refused\n";
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
        );
    }

    #[test]
    fn a_refused_connection_is_saved_in_mitmproxys_words_and_other_failures_in_ours() {
        let refused = |addr: &str| err(ForwardErrorKind::Refused(addr.parse().unwrap()));
        assert_eq!(
            refused("127.0.0.1:37885").flow_message(),
            "[Errno 111] Connect call failed ('127.0.0.1', 37885)"
        );
        assert_eq!(
            refused("[::1]:9").flow_message(),
            "[Errno 111] Connect call failed ('::1', 9, 0, 0)"
        );
        assert_eq!(
            err(ForwardErrorKind::ResponseTimeout(Duration::from_secs(30))).flow_message(),
            "upstream up.test:8443: no response within 30s"
        );
    }

    #[test]
    fn timeouts_are_504_and_can_close() {
        let e = err(ForwardErrorKind::ResponseTimeout(Duration::from_millis(
            1500,
        )));
        assert_eq!(e.status(), 504);
        let mut out = Vec::new();
        e.write_response(&mut out, false);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 504 Gateway Timeout\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nconnection: close\r\n\r\n"), "{text}");
        assert!(
            text.ends_with("upstream up.test:8443: no response within 1.5s\n"),
            "{text}"
        );
        assert_eq!(
            err(ForwardErrorKind::ConnectTimeout(Duration::from_secs(2))).status(),
            504
        );
        assert_eq!(err(ForwardErrorKind::Tls("bad cert".into())).status(), 502);
        assert_eq!(err(ResponseError::Truncated.into()).status(), 502);
    }
}
