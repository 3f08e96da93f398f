//! CONNECT in regular mode, sans-IO: recognising `CONNECT host:port HTTP/1.x` (authority form,
//! RFC 9110 §9.3.6), mitmproxy's `200 Connection established` answer, and the tunnel's
//! destination for routing the requests inside it.
#![forbid(unsafe_code)]

use super::request::{split_authority, valid_host};

/// Why a CONNECT cannot open a tunnel; answered 400 with a close, as mitmproxy answers
/// `Bad HTTP request line`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The target is not `host:port` with a valid host and a port from 1 to 65535.
    #[error("CONNECT needs an authority-form target, host:port")]
    BadAuthority,
}

/// The scheme of a tunnel, known only from its first bytes (`tls::detect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelScheme {
    /// The client speaks TLS inside the tunnel: requests in it are `https`.
    Https,
    /// Plain HTTP inside the tunnel: requests in it are `http`.
    Http,
}

impl TunnelScheme {
    /// `https` or `http`, as mitmproxy records the requests of the tunnel.
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelScheme::Https => "https",
            TunnelScheme::Http => "http",
        }
    }
}

/// Where a CONNECT tunnel goes: the requests inside it take their host and port from here (and
/// their scheme from the tunnel's first bytes), as mitmproxy records them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    /// The host as sent, without the brackets of an IPv6 literal.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The CONNECT's minor HTTP version (the answer uses it, as mitmproxy's does).
    pub version_minor: u8,
}

/// Whether `method` is CONNECT (case-sensitive, as mitmproxy and RFC 9110 §9.1 compare methods).
pub fn is_connect(method: &[u8]) -> bool {
    method == b"CONNECT"
}

impl Tunnel {
    /// The tunnel a CONNECT with `target` (the request-target as sent) opens.
    pub fn parse(target: &[u8], version_minor: u8) -> Result<Tunnel, ConnectError> {
        if target.is_empty() || !valid_host(target) {
            return Err(ConnectError::BadAuthority);
        }
        let Some((host, Some(port))) = split_authority(target) else {
            return Err(ConnectError::BadAuthority);
        };
        if port == 0 || host.is_empty() {
            return Err(ConnectError::BadAuthority);
        }
        let host = std::str::from_utf8(host).map_err(|_| ConnectError::BadAuthority)?;
        Ok(Tunnel {
            host: host.to_owned(),
            port,
            version_minor,
        })
    }

    /// Appends mitmproxy's answer to the CONNECT to `out`:
    /// `HTTP/1.1 200 Connection established\r\n\r\n` (`HTTP/1.0` for an HTTP/1.0 CONNECT), no
    /// header fields.
    pub fn write_established(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if self.version_minor == 0 {
            b"HTTP/1.0 200 Connection established\r\n\r\n"
        } else {
            b"HTTP/1.1 200 Connection established\r\n\r\n"
        });
    }

    /// The authority as it goes upstream for an unmatched request (`host:port`, an IPv6 literal
    /// in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_authority_form_target_opens_a_tunnel_to_its_host_and_port() {
        let t = Tunnel::parse(b"example.com:443", 1).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("example.com", 443));
        assert_eq!(t.authority(), "example.com:443");
        let t = Tunnel::parse(b"[::1]:8443", 1).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 8443));
        assert_eq!(t.authority(), "[::1]:8443");
        let t = Tunnel::parse(b"10.0.0.1:80", 0).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("10.0.0.1", 80));
    }

    #[test]
    fn targets_that_are_not_host_and_port_are_refused() {
        for bad in [
            &b""[..],
            b"example.com",
            b"example.com:",
            b"example.com:0",
            b"example.com:65536",
            b"example.com:44x",
            b":443",
            b"/path",
            b"http://example.com:443",
            b"a b:443",
            b"[::1]",
            b"a,b:443",
        ] {
            assert_eq!(
                Tunnel::parse(bad, 1),
                Err(ConnectError::BadAuthority),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_answer_is_mitmproxys_bytes_in_the_requests_version() {
        // What mitmproxy 12.3.1 sends (captured from `mitmdump` in regular mode).
        let mut out = Vec::new();
        Tunnel::parse(b"example.com:443", 1)
            .unwrap()
            .write_established(&mut out);
        assert_eq!(out, b"HTTP/1.1 200 Connection established\r\n\r\n");
        out.clear();
        Tunnel::parse(b"example.com:443", 0)
            .unwrap()
            .write_established(&mut out);
        assert_eq!(out, b"HTTP/1.0 200 Connection established\r\n\r\n");
    }

    #[test]
    fn connect_is_recognised_case_sensitively_and_schemes_come_from_the_first_bytes() {
        assert!(is_connect(b"CONNECT"));
        assert!(!is_connect(b"connect"));
        assert!(!is_connect(b"GET"));
        assert_eq!(TunnelScheme::Https.as_str(), "https");
        assert_eq!(TunnelScheme::Http.as_str(), "http");
    }
}
