//! Whether a connection speaks TLS, from its first bytes (sans-IO, bounded): mitmproxy's
//! `is_tls_record_magic`, a handshake record header `0x16 0x03 0x00..=0x03`.

/// What the first bytes of a connection are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// A TLS handshake record: a ClientHello follows.
    Tls,
    /// Anything else: plain HTTP (or garbage the HTTP parser answers).
    Plain,
    /// Too few bytes to decide (fewer than [`DETECT_BYTES`], all consistent with TLS so far).
    NeedMore,
}

/// Bytes needed to decide: the content type and the record's protocol version.
pub const DETECT_BYTES: usize = 3;

/// Decides from the first bytes of a connection (only the first [`DETECT_BYTES`] are looked at),
/// as mitmproxy's `is_tls_record_magic`: `0x16` (handshake), then `0x03`, then `0x00` to `0x03`
/// (SSL 3.0 to TLS 1.2 record versions; TLS 1.3 ClientHellos use `0x03 0x01`).
pub fn detect(first: &[u8]) -> Detected {
    const MAGIC: [u8; 2] = [0x16, 0x03];
    let seen = first.len().min(DETECT_BYTES);
    let head = &first[..seen];
    let prefix = seen.min(MAGIC.len());
    if head[..prefix] != MAGIC[..prefix] {
        return Detected::Plain;
    }
    match head.get(2) {
        None => Detected::NeedMore,
        Some(0x00..=0x03) => Detected::Tls,
        Some(_) => Detected::Plain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_hello_record_is_tls_and_http_is_plain() {
        assert_eq!(detect(&[0x16, 0x03, 0x01, 0x02, 0x00]), Detected::Tls);
        assert_eq!(detect(&[0x16, 0x03, 0x00]), Detected::Tls);
        assert_eq!(detect(&[0x16, 0x03, 0x03]), Detected::Tls);
        assert_eq!(detect(b"GET / HTTP/1.1\r\n"), Detected::Plain);
        assert_eq!(detect(b"CONNECT a:443 HTTP/1.1\r\n"), Detected::Plain);
        assert_eq!(detect(&[0x16, 0x03, 0x04]), Detected::Plain);
        assert_eq!(detect(&[0x16, 0x02]), Detected::Plain);
        assert_eq!(detect(&[0x15, 0x03, 0x01]), Detected::Plain);
    }

    #[test]
    fn a_prefix_of_the_magic_needs_more_and_nothing_is_need_more() {
        assert_eq!(detect(&[]), Detected::NeedMore);
        assert_eq!(detect(&[0x16]), Detected::NeedMore);
        assert_eq!(detect(&[0x16, 0x03]), Detected::NeedMore);
        assert_eq!(detect(b"G"), Detected::Plain);
    }
}
