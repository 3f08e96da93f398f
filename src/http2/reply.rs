//! A recorded response's header list as mitmproxy sends it to an HTTP/2 client: `:status` first,
//! names lowercased, surrounding whitespace trimmed, and the connection-specific fields dropped
//! that RFC 9113 §8.2.2 forbids (hyper-h2's `normalize_outbound_headers`, which mitmproxy 12 runs
//! on every HTTP/1 response it relays to an HTTP/2 client).

use super::hpack;
use crate::http1::request::trim;

/// Fields that only mean something to one HTTP/1 connection; never sent over HTTP/2.
pub const CONNECTION_SPECIFIC: [&[u8]; 5] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"upgrade",
];

/// True for a field that must not travel over HTTP/2 (compared case-insensitively).
pub fn is_connection_specific(name: &[u8]) -> bool {
    CONNECTION_SPECIFIC
        .iter()
        .any(|c| c.eq_ignore_ascii_case(name))
}

/// The fields of `headers` that go into an HTTP/2 reply (connection-specific ones skipped,
/// names and values trimmed; the encoder lowercases names).
pub fn h2_fields<'h, 'b: 'h>(
    headers: &'h [(&'b [u8], &'b [u8])],
) -> impl Iterator<Item = (&'b [u8], &'b [u8])> + 'h {
    headers
        .iter()
        .map(|(n, v)| (trim(n), trim(v)))
        .filter(|(n, _)| !n.is_empty() && !is_connection_specific(n) && !n.starts_with(b":"))
}

/// Appends the HPACK header block of a reply: `:status`, then [`h2_fields`] of `headers`.
pub fn encode_head(out: &mut Vec<u8>, status: u16, headers: &[(&[u8], &[u8])]) {
    hpack::put_status(out, status);
    encode_fields(out, headers);
}

/// Appends the HPACK header block of a field list without pseudo-fields (trailers).
pub fn encode_fields(out: &mut Vec<u8>, headers: &[(&[u8], &[u8])]) {
    for (name, value) in h2_fields(headers) {
        hpack::put_field(out, name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_specific_fields_are_dropped_and_names_lowercased() {
        let recorded: Vec<(&[u8], &[u8])> = vec![
            (b"Content-Type", b" text/plain "),
            (b"Connection", b"keep-alive"),
            (b"Keep-Alive", b"timeout=5"),
            (b"Proxy-Connection", b"close"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Upgrade", b"h2c"),
            (b"X-Trace", b"1"),
        ];
        let kept: Vec<_> = h2_fields(&recorded).collect();
        assert_eq!(
            kept,
            vec![
                (&b"Content-Type"[..], &b"text/plain"[..]),
                (b"X-Trace", b"1")
            ]
        );
        let mut block = Vec::new();
        encode_head(&mut block, 201, &recorded);
        let mut got = Vec::new();
        hpack::Decoder::default()
            .decode(&block, |n, v| {
                got.push((String::from_utf8_lossy(n).into_owned(), v.to_vec()))
            })
            .unwrap();
        assert_eq!(
            got,
            vec![
                (":status".to_string(), b"201".to_vec()),
                ("content-type".to_string(), b"text/plain".to_vec()),
                ("x-trace".to_string(), b"1".to_vec()),
            ]
        );
    }
}
