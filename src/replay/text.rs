//! Percent-decoded text of query strings and urlencoded forms, as a byte stream.
//!
//! mitmproxy compares decoded *strings* (Python `parse_qsl`): `+` becomes a space, `%XX` escapes
//! are decoded, and the decoded bytes are read as UTF-8. For query strings invalid UTF-8 becomes
//! U+FFFD (`errors="replace"`); for urlencoded bodies it stays distinguishable
//! (`errors="surrogateescape"`). Bytes that were not percent-escaped and are not ASCII are decoded
//! as the surrounding text was (UTF-8 with surrogate escapes for the request target, latin-1 for a
//! form body without charset). [`Decoder`] produces a canonical byte form of that string without
//! allocating: valid characters as UTF-8, a surrogate-escaped byte `b` as `0xFE b`; two inputs are
//! equal strings exactly when their byte forms are equal (neither `0xFE` nor `0xFF` occurs in
//! UTF-8).
#![forbid(unsafe_code)]

/// How one piece of text is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextMode {
    /// A query-string name or value of the request target.
    Query,
    /// A name or value of an urlencoded body decoded as UTF-8 (a `charset=utf-8` Content-Type).
    FormUtf8,
    /// A name or value of an urlencoded body decoded as latin-1 (the default for forms).
    FormLatin1,
}

/// Marks a byte that is not part of any valid character (Python's surrogate escape).
const ESCAPE: u8 = 0xFE;
/// The UTF-8 encoding of U+FFFD REPLACEMENT CHARACTER.
const REPLACEMENT: [u8; 3] = [0xEF, 0xBF, 0xBD];

/// Whether the decoded form of `raw` is `raw` itself (ASCII with no `%` and no `+`).
pub fn is_plain(raw: &[u8]) -> bool {
    raw.iter().all(|&b| b < 0x80 && b != b'%' && b != b'+')
}

/// Streams the canonical byte form of one decoded piece of text.
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    raw: &'a [u8],
    pos: usize,
    mode: TextMode,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Valid range of the byte after a UTF-8 lead byte, and the sequence length (0 = invalid lead).
fn utf8_lead(b: u8) -> (usize, u8, u8) {
    match b {
        0xC2..=0xDF => (2, 0x80, 0xBF),
        0xE0 => (3, 0xA0, 0xBF),
        0xE1..=0xEC | 0xEE..=0xEF => (3, 0x80, 0xBF),
        0xED => (3, 0x80, 0x9F),
        0xF0 => (4, 0x90, 0xBF),
        0xF1..=0xF3 => (4, 0x80, 0xBF),
        0xF4 => (4, 0x80, 0x8F),
        _ => (0, 0, 0),
    }
}

impl<'a> Decoder<'a> {
    /// A decoder for `raw` in `mode`.
    pub fn new(raw: &'a [u8], mode: TextMode) -> Decoder<'a> {
        Decoder { raw, pos: 0, mode }
    }

    /// The percent-decoded byte at `pos` inside an ASCII run and its encoded length, or `None`
    /// at the end of the run (Python's `unquote` decodes each ASCII run on its own).
    fn decoded_at(&self, pos: usize) -> Option<(u8, usize)> {
        let b = *self.raw.get(pos)?;
        if b >= 0x80 {
            return None;
        }
        if b == b'+' {
            return Some((b' ', 1));
        }
        if b == b'%' {
            if let (Some(h), Some(l)) = (
                self.raw.get(pos + 1).copied().and_then(hex),
                self.raw.get(pos + 2).copied().and_then(hex),
            ) {
                return Some((h << 4 | l, 3));
            }
        }
        Some((b, 1))
    }

    /// Writes the next few bytes of the canonical form into `out` and returns how many; 0 when done.
    pub fn fill(&mut self, out: &mut [u8; 64]) -> usize {
        let mut n = 0;
        while n + 8 <= out.len() && self.pos < self.raw.len() {
            let b = self.raw[self.pos];
            if b >= 0x80 {
                n += self.literal(out, n);
                continue;
            }
            let (d0, len0) = self.decoded_at(self.pos).expect("invariant: ASCII byte");
            if d0 < 0x80 {
                out[n] = d0;
                n += 1;
                self.pos += len0;
                continue;
            }
            // A percent-decoded non-ASCII byte: read the longest valid prefix of a sequence.
            let (want, lo, hi) = utf8_lead(d0);
            let mut seq = [d0, 0, 0, 0];
            let mut got = 1;
            let mut next = self.pos + len0;
            while got < want {
                let range = if got == 1 { lo..=hi } else { 0x80..=0xBF };
                match self.decoded_at(next) {
                    Some((d, len)) if range.contains(&d) => {
                        seq[got] = d;
                        got += 1;
                        next += len;
                    }
                    _ => break,
                }
            }
            if want > 0 && got == want {
                out[n..n + got].copy_from_slice(&seq[..got]);
                n += got;
                self.pos = next;
            } else if self.mode == TextMode::Query {
                out[n..n + 3].copy_from_slice(&REPLACEMENT);
                n += 3;
                self.pos = next;
            } else {
                // Surrogate escapes are per byte, so escaping the first byte and resuming at the
                // next gives the same string.
                out[n] = ESCAPE;
                out[n + 1] = d0;
                n += 2;
                self.pos += len0;
            }
        }
        n
    }

    /// Handles a byte ≥ 0x80 that was not percent-escaped; returns the bytes written at `out[n..]`.
    fn literal(&mut self, out: &mut [u8; 64], n: usize) -> usize {
        let b = self.raw[self.pos];
        if self.mode == TextMode::FormLatin1 {
            out[n] = 0xC0 | (b >> 6);
            out[n + 1] = 0x80 | (b & 0x3F);
            self.pos += 1;
            return 2;
        }
        let (want, lo, hi) = utf8_lead(b);
        let mut got = 1;
        while got < want {
            let range = if got == 1 { lo..=hi } else { 0x80..=0xBF };
            match self.raw.get(self.pos + got) {
                Some(c) if range.contains(c) => got += 1,
                _ => break,
            }
        }
        if want > 0 && got == want {
            out[n..n + got].copy_from_slice(&self.raw[self.pos..self.pos + got]);
            self.pos += got;
            got
        } else {
            out[n] = ESCAPE;
            out[n + 1] = b;
            self.pos += 1;
            2
        }
    }
}

/// Whether `raw` decodes (in `mode`) to exactly the string `text`.
pub fn decodes_to(raw: &[u8], mode: TextMode, text: &[u8]) -> bool {
    if is_plain(raw) {
        return raw == text;
    }
    let mut decoder = Decoder::new(raw, mode);
    let mut rest = text;
    let mut buf = [0; 64];
    loop {
        let n = decoder.fill(&mut buf);
        if n == 0 {
            return rest.is_empty();
        }
        match rest.strip_prefix(&buf[..n]) {
            Some(r) => rest = r,
            None => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(raw: &[u8], mode: TextMode) -> Vec<u8> {
        let mut d = Decoder::new(raw, mode);
        let mut out = Vec::new();
        let mut buf = [0; 64];
        loop {
            let n = d.fill(&mut buf);
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn plus_and_percent_twenty_are_spaces() {
        assert_eq!(decode(b"a+b%20c", TextMode::Query), b"a b c");
        assert_eq!(decode(b"%41%zz%4", TextMode::Query), b"A%zz%4");
    }

    #[test]
    fn invalid_utf8_in_queries_becomes_one_replacement_character() {
        assert_eq!(
            decode(b"%E9", TextMode::Query),
            decode(b"%FF", TextMode::Query)
        );
        assert_eq!(decode(b"%E2%82", TextMode::Query), "\u{FFFD}".as_bytes());
        assert_eq!(decode(b"%C3%A9", TextMode::Query), "é".as_bytes());
        assert_eq!(decode("é".as_bytes(), TextMode::Query), "é".as_bytes());
    }

    #[test]
    fn invalid_utf8_in_forms_stays_distinct() {
        assert_ne!(
            decode(b"%E9", TextMode::FormLatin1),
            decode(b"%FF", TextMode::FormLatin1)
        );
        assert_eq!(decode(b"%C3%A9", TextMode::FormLatin1), "é".as_bytes());
        assert_eq!(decode(b"\xE9", TextMode::FormLatin1), "é".as_bytes());
        assert_eq!(decode(b"\xE9", TextMode::FormUtf8), b"\xFE\xE9");
    }

    #[test]
    fn long_text_streams_in_pieces() {
        let raw = "%C3%A9".repeat(100);
        assert_eq!(
            decode(raw.as_bytes(), TextMode::Query),
            "é".repeat(100).as_bytes()
        );
        assert!(decodes_to(
            raw.as_bytes(),
            TextMode::Query,
            "é".repeat(100).as_bytes()
        ));
        assert!(!decodes_to(
            raw.as_bytes(),
            TextMode::Query,
            "é".repeat(99).as_bytes()
        ));
    }
}
