//! `--log-json`: one JSON object per request, one per line, formatted from a [`Record`] of
//! borrowed fields into a caller's buffer ([`write_record`]).
//!
//! Sans-IO and allocation-free: no clock (the caller passes the request's time and its service
//! time), no file (the driver, `server::reqlog`, batches the lines and writes them), numbers
//! formatted by hand. Strings are escaped as JSON requires (RFC 8259 §7): `"` and `\` get a
//! backslash, control characters become `\n`, `\r`, `\t`, `\b`, `\f` or `\u00XX`, and bytes that
//! are not UTF-8 become `\ufffd` (U+FFFD, one per maximal invalid sequence, as
//! `String::from_utf8_lossy` replaces them), so every line is valid JSON and valid UTF-8.
//!
//! A line:
//!
//! ```text
//! {"time":"2026-12-02T18:32:42.123456Z","peer":"127.0.0.1:50312","method":"GET","url":"http://example.com/a?b=1","http_version":"HTTP/1.1","outcome":"replayed","flow":3,"status":200,"bytes":512,"service_us":4}
//! ```
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::net::SocketAddr;

use crate::exchange::Url;
use crate::replay::date::civil_from_days;

/// What one log line says about one request (every field borrowed).
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// When the request was read, in microseconds since the Unix epoch (UTC).
    pub unix_micros: i64,
    /// The client's address.
    pub peer: SocketAddr,
    /// The method, as sent.
    pub method: &'a [u8],
    /// The URL, written as mitmproxy prints a flow's `pretty_url` (`scheme://host[:port]/target`,
    /// the port only when not the scheme's default, an IPv6 host in brackets; a CONNECT's
    /// `host:port`); `None` (`null`): the request named no usable destination.
    pub url: Option<Url<'a>>,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2.0` (mitmproxy's spelling).
    pub http_version: &'a str,
    /// The `outcome` label of `/metrics`: `replayed`, `forwarded`, `killed`, `status` or
    /// `rejected` ([`crate::stats::Outcome::label`]).
    pub outcome: &'a str,
    /// The recorded flow that answered (its index in the recording), if one did.
    pub flow: Option<u32>,
    /// The status answered (`None`: no answer, the connection was closed).
    pub status: Option<u16>,
    /// Response body bytes sent (0 for a HEAD request or a kill; a relayed body as relayed).
    pub bytes: u64,
    /// Microseconds from the request's read to its answer being ready to write (relayed, for a
    /// forward).
    pub service_micros: u64,
}

/// Appends `record` as one JSON object and a newline to `out`. Allocates only if `out` must
/// grow.
pub fn write_record(record: &Record<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"time\":\"");
    write_time(record.unix_micros, out);
    out.extend_from_slice(b"\",\"peer\":\"");
    write_peer(record.peer, out);
    out.extend_from_slice(b"\",\"method\":");
    write_string(record.method, out);
    out.extend_from_slice(b",\"url\":");
    match record.url {
        Some(url) => write_url(&url, out),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"http_version\":");
    write_string(record.http_version.as_bytes(), out);
    out.extend_from_slice(b",\"outcome\":");
    write_string(record.outcome.as_bytes(), out);
    out.extend_from_slice(b",\"flow\":");
    write_optional(record.flow.map(u64::from), out);
    out.extend_from_slice(b",\"status\":");
    write_optional(record.status.map(u64::from), out);
    out.extend_from_slice(b",\"bytes\":");
    write_u64(record.bytes, out);
    out.extend_from_slice(b",\"service_us\":");
    write_u64(record.service_micros, out);
    out.extend_from_slice(b"}\n");
}

/// `ip:port` (`[ip]:port` for IPv6): digits, dots, colons and brackets, nothing to escape.
fn write_peer(peer: SocketAddr, out: &mut Vec<u8>) {
    match peer {
        // By hand: std's formatting machinery costs about as much as the rest of the line.
        SocketAddr::V4(v4) => {
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                write_u64(u64::from(octet), out);
            }
            out.push(b':');
            write_u64(u64::from(v4.port()), out);
        }
        // Writing into a Vec cannot fail; std formats an address on the stack.
        SocketAddr::V6(_) => {
            let _ = write!(out, "{peer}");
        }
    }
}

/// `pretty_url` as a JSON string.
fn write_url(url: &Url<'_>, out: &mut Vec<u8>) {
    let r = url.route;
    out.push(b'"');
    if url.connect {
        escape_into(r.target, out);
        out.push(b'"');
        return;
    }
    escape_into(r.scheme, out);
    out.extend_from_slice(b"://");
    let ipv6 = r.host.contains(&b':');
    if ipv6 {
        out.push(b'[');
    }
    escape_into(r.host, out);
    if ipv6 {
        out.push(b']');
    }
    let default = if r.scheme == b"https" { 443 } else { 80 };
    if r.port != default {
        out.push(b':');
        write_u64(u64::from(r.port), out);
    }
    escape_into(r.target, out);
    out.push(b'"');
}

/// A number, or `null`.
fn write_optional(value: Option<u64>, out: &mut Vec<u8>) {
    match value {
        Some(v) => write_u64(v, out),
        None => out.extend_from_slice(b"null"),
    }
}

/// `value` in decimal.
pub fn write_u64(mut value: u64, out: &mut Vec<u8>) {
    // u64::MAX is 18446744073709551615: 20 digits.
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// ISO 8601 in UTC with microseconds: `2026-12-02T18:32:42.123456Z` (27 bytes). Years outside
/// 0–9999 are clamped to them, as no real clock reads such a time.
pub fn write_time(unix_micros: i64, out: &mut Vec<u8>) {
    /// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z.
    const RANGE: std::ops::RangeInclusive<i64> = -62_167_219_200_000_000..=253_402_300_799_999_999;
    let micros = unix_micros.clamp(*RANGE.start(), *RANGE.end());
    let secs = micros.div_euclid(1_000_000);
    let fraction = micros.rem_euclid(1_000_000);
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let in_day = secs.rem_euclid(86_400);
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (at..at + width).rev() {
            text[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month as i64);
    put(8, 2, day);
    put(11, 2, in_day / 3600);
    put(14, 2, in_day / 60 % 60);
    put(17, 2, in_day % 60);
    put(20, 6, fraction);
    out.extend_from_slice(&text);
}

/// `bytes` as a quoted JSON string (see the module docs for the escaping).
pub fn write_string(bytes: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    escape_into(bytes, out);
    out.push(b'"');
}

/// Bytes that need an escape (`"`, `\\`, control characters) or are not ASCII.
const SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = b < 0x20 || b == b'"' as usize || b == b'\\' as usize || b >= 0x80;
        b += 1;
    }
    t
};

/// How many leading bytes of `bytes` are plain ASCII that JSON takes as they are: eight at a
/// time while no byte of a word is special (the usual case for a URL), then byte by byte.
fn plain_prefix(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // A byte of `w` is zero: the classic "has a zero byte" test (a false hit can only follow a
    // true one in the same word, and either way the word is then looked at byte by byte).
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    let mut pos = 0;
    while let Some(chunk) = bytes.get(pos..pos + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_ne_bytes(word);
        // Non-ASCII bytes have their high bit set; with none, `w - 0x20…` borrows exactly in
        // the bytes below 0x20.
        let special = (w & HIGH)
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGH)
            | has_zero(w ^ (ONES * u64::from(b'"')))
            | has_zero(w ^ (ONES * u64::from(b'\\')));
        if special != 0 {
            break;
        }
        pos += 8;
    }
    while pos < bytes.len() && !SPECIAL[usize::from(bytes[pos])] {
        pos += 1;
    }
    pos
}

/// The escaped contents of a JSON string, without the quotes.
fn escape_into(mut bytes: &[u8], out: &mut Vec<u8>) {
    loop {
        let plain = plain_prefix(bytes);
        out.extend_from_slice(&bytes[..plain]);
        bytes = &bytes[plain..];
        let Some(&b) = bytes.first() else {
            return;
        };
        if b < 0x80 {
            escape_ascii(b, out);
            bytes = &bytes[1..];
            continue;
        }
        // A UTF-8 sequence, as its first byte announces it (RFC 3629 §4), or not one.
        let width = match b {
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => 1,
        };
        let sequence = &bytes[..width.min(bytes.len())];
        match std::str::from_utf8(sequence) {
            Ok(_) => {
                out.extend_from_slice(sequence);
                bytes = &bytes[sequence.len()..];
            }
            Err(e) => {
                // As from_utf8_lossy: one replacement per maximal invalid part; a sequence cut
                // short by the end of the input is one.
                out.extend_from_slice(b"\\ufffd");
                bytes = &bytes[e.error_len().unwrap_or(sequence.len())..];
            }
        }
    }
}

/// The escape of an ASCII byte that needs one.
fn escape_ascii(b: u8, out: &mut Vec<u8>) {
    let short: &[u8] = match b {
        b'"' => b"\\\"",
        b'\\' => b"\\\\",
        b'\n' => b"\\n",
        b'\r' => b"\\r",
        b'\t' => b"\\t",
        0x08 => b"\\b",
        0x0c => b"\\f",
        _ => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
            return;
        }
    };
    out.extend_from_slice(short);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::Destination;
    use serde_json::Value;

    fn record<'a>(method: &'a [u8], url: Option<Url<'a>>) -> Record<'a> {
        Record {
            unix_micros: 1_796_236_362_123_456,
            peer: "127.0.0.1:50312".parse().unwrap(),
            method,
            url,
            http_version: "HTTP/1.1",
            outcome: "replayed",
            flow: Some(3),
            status: Some(200),
            bytes: 512,
            service_micros: 4,
        }
    }

    fn line(r: &Record<'_>) -> (String, Value) {
        let mut out = Vec::new();
        write_record(r, &mut out);
        let text = String::from_utf8(out).expect("a line is UTF-8");
        assert!(
            text.ends_with("}\n") && text.matches('\n').count() == 1,
            "{text}"
        );
        let value = serde_json::from_str(&text).expect("a line is JSON");
        (text, value)
    }

    /// `bytes` written as a JSON string, parsed back.
    fn round_trip(bytes: &[u8]) -> (String, String) {
        let mut out = Vec::new();
        write_string(bytes, &mut out);
        let text = String::from_utf8(out).expect("UTF-8");
        let parsed: String = serde_json::from_str(&text).expect("a JSON string");
        (text, parsed)
    }

    #[test]
    fn a_record_is_one_json_line_with_every_field() {
        let route = Destination {
            scheme: b"http",
            host: b"example.com",
            port: 80,
            target: b"/a?b=1",
        };
        let url = Url {
            route: &route,
            connect: false,
        };
        let (text, v) = line(&record(b"GET", Some(url)));
        assert_eq!(
            text,
            "{\"time\":\"2026-12-02T18:32:42.123456Z\",\"peer\":\"127.0.0.1:50312\",\
             \"method\":\"GET\",\"url\":\"http://example.com/a?b=1\",\
             \"http_version\":\"HTTP/1.1\",\"outcome\":\"replayed\",\"flow\":3,\"status\":200,\
             \"bytes\":512,\"service_us\":4}\n"
        );
        assert_eq!(v["flow"], 3);
        let mut r = record(b"GET", None);
        r.flow = None;
        r.status = None;
        r.bytes = u64::MAX;
        r.peer = "[::1]:8080".parse().unwrap();
        let (_, v) = line(&r);
        assert!(v["url"].is_null() && v["flow"].is_null() && v["status"].is_null());
        assert_eq!(v["bytes"].as_u64(), Some(u64::MAX));
        assert_eq!(v["peer"], "[::1]:8080");
    }

    #[test]
    fn urls_are_pretty_urls() {
        let url = |scheme: &'static [u8], host: &'static [u8], port, connect| {
            let route = Destination {
                scheme,
                host,
                port,
                target: if connect { b"h:443" } else { b"/p" },
            };
            let (_, v) = line(&record(
                b"GET",
                Some(Url {
                    route: &route,
                    connect,
                }),
            ));
            v["url"].as_str().unwrap().to_string()
        };
        assert_eq!(url(b"https", b"h", 443, false), "https://h/p");
        assert_eq!(url(b"https", b"h", 80, false), "https://h:80/p");
        assert_eq!(url(b"http", b"h", 8080, false), "http://h:8080/p");
        assert_eq!(url(b"http", b"::1", 8080, false), "http://[::1]:8080/p");
        assert_eq!(url(b"http", b"h", 443, true), "h:443");
    }

    #[test]
    fn quotes_backslashes_and_control_characters_are_escaped() {
        for (raw, escaped) in [
            (&b"plain"[..], "\"plain\""),
            (b"a\"b", "\"a\\\"b\""),
            (b"a\\b", "\"a\\\\b\""),
            (b"\n\r\t\x08\x0c", "\"\\n\\r\\t\\b\\f\""),
            (b"\x00\x01\x1f", "\"\\u0000\\u0001\\u001f\""),
            // DEL and `/` need no escape in JSON.
            (b"\x7f/", "\"\x7f/\""),
            ("é✓😀".as_bytes(), "\"é✓😀\""),
        ] {
            let (text, parsed) = round_trip(raw);
            assert_eq!(text, escaped);
            assert_eq!(parsed.as_bytes(), raw);
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_become_one_replacement_per_invalid_sequence() {
        for (raw, escaped, parsed) in [
            (&b"a\xffb"[..], "\"a\\ufffdb\"", "a\u{fffd}b"),
            // A lone continuation byte, an overlong form, a surrogate: each invalid.
            (b"\x80", "\"\\ufffd\"", "\u{fffd}"),
            (b"\xc0\xaf", "\"\\ufffd\\ufffd\"", "\u{fffd}\u{fffd}"),
            (
                b"\xed\xa0\x80x",
                "\"\\ufffd\\ufffd\\ufffdx\"",
                "\u{fffd}\u{fffd}\u{fffd}x",
            ),
            // Cut short at the end: one replacement.
            (b"ok\xe2\x9c", "\"ok\\ufffd\"", "ok\u{fffd}"),
            (b"\xe2\x9c\"", "\"\\ufffd\\\"\"", "\u{fffd}\""),
        ] {
            let (text, back) = round_trip(raw);
            assert_eq!(text, escaped, "{raw:?}");
            assert_eq!(back, parsed);
            assert_eq!(
                back,
                String::from_utf8_lossy(raw),
                "as from_utf8_lossy replaces"
            );
        }
        // Inside a URL too.
        let route = Destination {
            scheme: b"http",
            host: b"h\"",
            port: 80,
            target: b"/\xff\n",
        };
        let url = Url {
            route: &route,
            connect: false,
        };
        let (_, v) = line(&record(b"G\x01T", Some(url)));
        assert_eq!(v["url"], "http://h\"/\u{fffd}\n");
        assert_eq!(v["method"], "G\u{1}T");
    }

    #[test]
    fn every_byte_at_every_place_of_a_long_string_parses_back_as_from_utf8_lossy() {
        // Longer than a word, so the eight-at-a-time scan meets each byte in every lane.
        for b in 0..=255u8 {
            for at in 0..24 {
                let mut raw = vec![b'a'; 24];
                raw[at] = b;
                let (text, parsed) = round_trip(&raw);
                assert_eq!(
                    parsed,
                    String::from_utf8_lossy(&raw),
                    "{b:#x} at {at}: {text}"
                );
                let plain = (0x20..0x80).contains(&b) && b != b'"' && b != b'\\';
                assert_eq!(text.len() == raw.len() + 2, plain, "{b:#x} at {at}: {text}");
            }
        }
        for raw in [
            "/päth/✓/😀?q=日本語&x=1".as_bytes(),
            b"/abcdefgh\xe2\x9c\x93abcdefg\xf0\x9f\x98",
            b"0123456\"89abcdef\\hijklmn\x7f",
        ] {
            let (_, parsed) = round_trip(raw);
            assert_eq!(parsed, String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn times_are_utc_iso_8601_with_microseconds() {
        let time = |micros| {
            let mut out = Vec::new();
            write_time(micros, &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(time(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(time(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(time(951_782_400_000_001), "2000-02-29T00:00:00.000001Z");
        assert_eq!(time(i64::MAX), "9999-12-31T23:59:59.999999Z");
        assert_eq!(time(i64::MIN), "0000-01-01T00:00:00.000000Z");
    }

    #[test]
    fn numbers_are_decimal() {
        for n in [0, 7, 10, 99, 12_345, u64::MAX] {
            let mut out = Vec::new();
            write_u64(n, &mut out);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
