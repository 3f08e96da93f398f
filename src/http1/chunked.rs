//! The chunked transfer coding (RFC 9112 §7.1), decoded strictly and incrementally.
//!
//! [`ChunkedDecoder`] is a byte-level state machine that keeps its state between reads, so a body
//! that arrives in pieces is decoded once, never re-parsed from its first byte. It is strict where
//! lenient parsers open request smuggling: at least one hex digit per chunk size, at most
//! [`MAX_SIZE_DIGITS`] of them, CRLF as the only line end (a bare LF or CR anywhere in a chunk-size
//! line, its extensions, after chunk data or in the trailer section is an error), extensions and
//! trailers bounded. A chunk size is checked against the body limit as soon as its digits end,
//! before any offset is computed from it. The request parser and the upstream response relay both
//! use it.
#![forbid(unsafe_code)]

use thiserror::Error;

/// Hex digits a chunk size may have: 16 (64 bits). More is malformed, whatever their value.
pub const MAX_SIZE_DIGITS: u8 = 16;

/// Bytes of chunk extensions per body, all chunks together, the spaces after a size included
/// (hyper's `CHUNKED_EXTENSIONS_LIMIT`).
pub const MAX_EXTENSION_BYTES: usize = 16 * 1024;

/// Bytes of the trailer section, its CRLFs included (hyper's `TRAILER_LIMIT`).
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Fields in the trailer section (the same bound as a request head's fields).
pub const MAX_TRAILER_FIELDS: usize = super::request::MAX_HEADERS;

/// Why a chunked body cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ChunkError {
    /// The bytes break chunked syntax; the text says how.
    #[error("{0}")]
    Malformed(&'static str),
    /// A chunk size would take the body past the limit the decoder was made with.
    #[error("chunked body larger than allowed")]
    TooLarge,
    /// The trailer section is longer than [`MAX_TRAILER_BYTES`] or has more than
    /// [`MAX_TRAILER_FIELDS`] fields.
    #[error("trailer section too large")]
    TrailersTooLarge,
}

/// Where the decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of a chunk size.
    Size,
    /// Spaces or tabs after the size, before `;` or CR.
    SizeSpace,
    /// A chunk extension, up to CR.
    Extension,
    /// The LF of a chunk-size line.
    SizeLf,
    /// This many chunk data bytes still to come.
    Data(u64),
    /// The CR after chunk data.
    DataCr,
    /// The LF after chunk data.
    DataLf,
    /// The start of a trailer line (a field, or the CR of the final empty line).
    TrailerStart,
    /// A trailer field name, up to `:`.
    TrailerName,
    /// A trailer field value, up to CR.
    TrailerValue,
    /// The LF of a trailer field line.
    TrailerLf,
    /// The LF of the final empty line.
    EndLf,
    /// The body is complete.
    Done,
}

/// An incremental, strict chunked-body decoder (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkedDecoder {
    state: State,
    /// The chunk size being read.
    size: u64,
    /// Its digits so far.
    digits: u8,
    /// Decoded body bytes so far (never above `max_body`).
    body: u64,
    /// The largest decoded body accepted.
    max_body: u64,
    extension_bytes: usize,
    trailer_bytes: usize,
    trailer_fields: usize,
}

impl ChunkedDecoder {
    /// A decoder for one body of at most `max_body` decoded bytes (`u64::MAX`: unlimited).
    pub fn new(max_body: u64) -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size,
            size: 0,
            digits: 0,
            body: 0,
            max_body,
            extension_bytes: 0,
            trailer_bytes: 0,
            trailer_fields: 0,
        }
    }

    /// The final CRLF of the body has been consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decoded body bytes so far.
    pub fn decoded_len(&self) -> u64 {
        self.body
    }

    /// Decodes `input`, the bytes that follow what earlier calls consumed. Calls `data` with each
    /// run of decoded body bytes, in order. Returns how many bytes of `input` were consumed: all of
    /// them, unless the body ended inside `input` (then [`is_done`](Self::is_done) is true and the
    /// rest belongs to what follows the body). After an error the decoder must not be fed again.
    pub fn feed(&mut self, input: &[u8], mut data: impl FnMut(&[u8])) -> Result<usize, ChunkError> {
        let mut pos = 0;
        while pos < input.len() && self.state != State::Done {
            if let State::Data(remaining) = self.state {
                let available = input.len() - pos;
                // `take` is at most `available`, so it fits a usize and `pos + take <= input.len()`.
                let take = remaining.min(available as u64) as usize;
                data(&input[pos..pos + take]);
                pos += take;
                self.body += take as u64;
                self.state = if take as u64 == remaining {
                    State::DataCr
                } else {
                    State::Data(remaining - take as u64)
                };
                continue;
            }
            let b = input[pos];
            pos += 1;
            self.state = self.step(b)?;
        }
        Ok(pos)
    }

    /// One byte outside chunk data.
    fn step(&mut self, b: u8) -> Result<State, ChunkError> {
        use ChunkError::Malformed;
        Ok(match self.state {
            State::Size => {
                if let Some(d) = hex_value(b) {
                    if self.digits == MAX_SIZE_DIGITS {
                        return Err(Malformed("chunk size longer than 16 hex digits"));
                    }
                    // At most 15 digits so far: `size < 2^60`, so the shift cannot overflow.
                    self.size = self.size << 4 | u64::from(d);
                    self.digits += 1;
                    return Ok(State::Size);
                }
                if self.digits == 0 {
                    return Err(Malformed("chunk-size line without a hex digit"));
                }
                // The size is complete: refuse it before anything is computed from it.
                // `body <= max_body` always holds, so the subtraction cannot wrap.
                if self.size > self.max_body - self.body {
                    return Err(ChunkError::TooLarge);
                }
                match b {
                    b' ' | b'\t' => {
                        self.extension_byte()?;
                        State::SizeSpace
                    }
                    b';' => self.extension_byte()?,
                    b'\r' => State::SizeLf,
                    b'\n' => return Err(Malformed("bare LF in a chunk-size line")),
                    _ => return Err(Malformed("invalid byte in a chunk-size line")),
                }
            }
            State::SizeSpace => match b {
                // Spaces count as extension bytes, so a line of them is bounded too.
                b' ' | b'\t' => {
                    self.extension_byte()?;
                    State::SizeSpace
                }
                b';' => self.extension_byte()?,
                b'\r' => State::SizeLf,
                b'\n' => return Err(Malformed("bare LF in a chunk-size line")),
                _ => return Err(Malformed("invalid byte in a chunk-size line")),
            },
            State::Extension => match b {
                b'\r' => State::SizeLf,
                b'\n' => return Err(Malformed("bare LF in a chunk extension")),
                b if is_field_byte(b) => self.extension_byte()?,
                _ => return Err(Malformed("control character in a chunk extension")),
            },
            State::SizeLf => match b {
                b'\n' if self.size == 0 => State::TrailerStart,
                b'\n' => State::Data(std::mem::take(&mut self.size)),
                _ => return Err(Malformed("bare CR in a chunk-size line")),
            },
            State::DataCr if b == b'\r' => State::DataLf,
            State::DataLf if b == b'\n' => {
                self.digits = 0;
                State::Size
            }
            State::DataCr | State::DataLf => {
                return Err(Malformed("chunk data not followed by CRLF"))
            }
            State::TrailerStart
            | State::TrailerName
            | State::TrailerValue
            | State::TrailerLf
            | State::EndLf => {
                self.trailer_bytes += 1;
                if self.trailer_bytes > MAX_TRAILER_BYTES {
                    return Err(ChunkError::TrailersTooLarge);
                }
                self.trailer_step(b)?
            }
            // `feed` copies data runs itself and stops at `Done`.
            State::Data(_) | State::Done => unreachable!("invariant: handled by feed"),
        })
    }

    /// One byte of the trailer section.
    fn trailer_step(&mut self, b: u8) -> Result<State, ChunkError> {
        use ChunkError::Malformed;
        Ok(match (self.state, b) {
            (State::TrailerStart, b'\r') => State::EndLf,
            (State::TrailerStart | State::TrailerName, b'\n') => {
                return Err(Malformed("bare LF in the trailer section"))
            }
            (State::TrailerStart, b) if is_tchar(b) => {
                self.trailer_fields += 1;
                if self.trailer_fields > MAX_TRAILER_FIELDS {
                    return Err(ChunkError::TrailersTooLarge);
                }
                State::TrailerName
            }
            (State::TrailerName, b) if is_tchar(b) => State::TrailerName,
            (State::TrailerName, b':') => State::TrailerValue,
            (State::TrailerStart | State::TrailerName, _) => {
                return Err(Malformed("malformed trailer field"))
            }
            (State::TrailerValue, b'\r') => State::TrailerLf,
            (State::TrailerValue, b'\n') => {
                return Err(Malformed("bare LF in the trailer section"))
            }
            (State::TrailerValue, b) if is_field_byte(b) => State::TrailerValue,
            (State::TrailerValue, _) => {
                return Err(Malformed("control character in the trailer section"))
            }
            (State::TrailerLf, b'\n') => State::TrailerStart,
            (State::EndLf, b'\n') => State::Done,
            (State::TrailerLf | State::EndLf, _) => {
                return Err(Malformed("bare CR in the trailer section"))
            }
            _ => unreachable!("invariant: only trailer states reach trailer_step"),
        })
    }

    /// Counts one extension byte against [`MAX_EXTENSION_BYTES`].
    fn extension_byte(&mut self) -> Result<State, ChunkError> {
        self.extension_bytes += 1;
        if self.extension_bytes > MAX_EXTENSION_BYTES {
            return Err(ChunkError::Malformed("chunk extensions longer than 16 KiB"));
        }
        Ok(State::Extension)
    }
}

/// The value of an ASCII hex digit.
fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A byte allowed inside a field value or chunk extension: visible ASCII, space, tab, obs-text.
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (b >= b' ' && b != 0x7f)
}

/// A `tchar` of RFC 9110 §5.6.2 (the bytes of a token, such as a field name).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` in pieces of `split` bytes; returns the body and the bytes consumed.
    fn decode(input: &[u8], split: usize, max_body: u64) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut d = ChunkedDecoder::new(max_body);
        let mut body = Vec::new();
        let mut used = 0;
        for piece in input.chunks(split.max(1)) {
            used += d.feed(piece, |b| body.extend_from_slice(b))?;
            if d.is_done() {
                break;
            }
        }
        assert!(
            d.is_done(),
            "incomplete: {:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(d.decoded_len(), body.len() as u64);
        assert_eq!(
            d.feed(b"more", |_| ()),
            Ok(0),
            "nothing is consumed after the end"
        );
        Ok((body, used))
    }

    fn err(input: &[u8]) -> ChunkError {
        let mut d = ChunkedDecoder::new(1 << 20);
        match d.feed(input, |_| ()) {
            Err(e) => e,
            Ok(n) => panic!("accepted {n} bytes of {:?}", String::from_utf8_lossy(input)),
        }
    }

    #[test]
    fn a_valid_body_decodes_the_same_in_any_pieces() {
        let input = b"3;a=1;b=\"x y\"\r\nabc\r\n2 ; e\r\nde\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\nY:\r\n\r\nNEXT";
        for split in [1, 2, 3, 7, input.len()] {
            let (body, used) = decode(input, split, 1 << 20).unwrap();
            assert_eq!(body, b"abcde0123456789", "split {split}");
            assert_eq!(&input[used..], b"NEXT", "split {split}");
        }
    }

    #[test]
    fn sizes_need_one_to_16_hex_digits() {
        assert_eq!(
            err(b"\r\n"),
            ChunkError::Malformed("chunk-size line without a hex digit")
        );
        assert_eq!(
            err(b";ext\r\n"),
            ChunkError::Malformed("chunk-size line without a hex digit")
        );
        assert_eq!(
            err(b"00000000000000001\r\n"),
            ChunkError::Malformed("chunk size longer than 16 hex digits")
        );
        let (body, _) = decode(b"0000000000000001\r\nx\r\n0\r\n\r\n", 1, 10).unwrap();
        assert_eq!(body, b"x");
        assert_eq!(
            err(b"-1\r\n"),
            ChunkError::Malformed("chunk-size line without a hex digit")
        );
        assert_eq!(
            err(b"0x1\r\n"),
            ChunkError::Malformed("invalid byte in a chunk-size line")
        );
    }

    #[test]
    fn a_size_above_the_limit_is_refused_before_its_data() {
        // The overflow reproducer of issue 10: 2 bytes, then a size that wraps `2 + size`.
        let mut d = ChunkedDecoder::new(16 << 20);
        assert_eq!(
            d.feed(b"2\r\nab\r\nFFFFFFFFFFFFFFFE\r\n", |_| ()),
            Err(ChunkError::TooLarge)
        );
        assert_eq!(err(b"FFFFFFFFFFFFFFFF\r\n"), ChunkError::TooLarge);
        // The limit counts what earlier chunks decoded.
        let mut d = ChunkedDecoder::new(10);
        assert_eq!(d.feed(b"8\r\n12345678\r\n", |_| ()), Ok(13));
        assert_eq!(d.feed(b"3\r\n", |_| ()), Err(ChunkError::TooLarge));
        let mut d = ChunkedDecoder::new(10);
        assert_eq!(d.feed(b"8\r\n12345678\r\n2\r\n", |_| ()), Ok(16));
        // Unlimited decoders still refuse a total above 2^64 - 1.
        let mut d = ChunkedDecoder::new(u64::MAX);
        d.body = u64::MAX - 1;
        assert_eq!(d.feed(b"2\r\n", |_| ()), Err(ChunkError::TooLarge));
    }

    #[test]
    fn only_crlf_ends_a_line() {
        for (input, why) in [
            (&b"3\nabc\r\n0\r\n\r\n"[..], "bare LF in a chunk-size line"),
            (b"3 \nabc\r\n0\r\n\r\n", "bare LF in a chunk-size line"),
            (b"3;ext\nabc\r\n0\r\n\r\n", "bare LF in a chunk extension"),
            (b"3\rabc\r\n0\r\n\r\n", "bare CR in a chunk-size line"),
            (b"3\r\nabc\n0\r\n\r\n", "chunk data not followed by CRLF"),
            (b"3\r\nabc\r0\r\n\r\n", "chunk data not followed by CRLF"),
            (b"3\r\nabcd\r\n0\r\n\r\n", "chunk data not followed by CRLF"),
            (b"0\r\nX: 1\n\r\n", "bare LF in the trailer section"),
            (b"0\r\nX: 1\rY: 2\r\n\r\n", "bare CR in the trailer section"),
            (b"0\r\n\n", "bare LF in the trailer section"),
            (b"0\r\n\r\r\n", "bare CR in the trailer section"),
            (b"0\n\r\n", "bare LF in a chunk-size line"),
        ] {
            assert_eq!(
                err(input),
                ChunkError::Malformed(why),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn extensions_and_trailers_are_checked_and_bounded() {
        assert_eq!(
            err(b"1;a\x00\r\n"),
            ChunkError::Malformed("control character in a chunk extension")
        );
        assert_eq!(
            err(b"0\r\n folded: x\r\n\r\n"),
            ChunkError::Malformed("malformed trailer field")
        );
        assert_eq!(
            err(b"0\r\nNo Colon\r\n\r\n"),
            ChunkError::Malformed("malformed trailer field")
        );
        assert_eq!(
            err(b"0\r\n: x\r\n\r\n"),
            ChunkError::Malformed("malformed trailer field")
        );
        // Extensions: 16 KiB in total over all chunks.
        let ext = "x".repeat(MAX_EXTENSION_BYTES / 2);
        let ok = format!("1;{ext}\r\na\r\n0\r\n\r\n");
        assert!(decode(ok.as_bytes(), 1000, 10).is_ok());
        let long = format!("1;{ext}\r\na\r\n1;{ext}\r\nb\r\n0\r\n\r\n");
        assert_eq!(
            err(long.as_bytes()),
            ChunkError::Malformed("chunk extensions longer than 16 KiB")
        );
        // Trailers: 16 KiB and 100 fields.
        let big = format!("0\r\nX: {}\r\n\r\n", "v".repeat(MAX_TRAILER_BYTES));
        assert_eq!(err(big.as_bytes()), ChunkError::TrailersTooLarge);
        let many = format!("0\r\n{}\r\n", "X: 1\r\n".repeat(MAX_TRAILER_FIELDS + 1));
        assert_eq!(err(many.as_bytes()), ChunkError::TrailersTooLarge);
        let enough = format!("0\r\n{}\r\n", "X: 1\r\n".repeat(MAX_TRAILER_FIELDS));
        assert!(decode(enough.as_bytes(), 5, 10).is_ok());
    }

    proptest::proptest! {
        /// Any bytes in any pieces: progress, completion or an error; never a panic, and the body
        /// never exceeds the limit.
        #[test]
        fn arbitrary_bytes_never_panic_or_exceed_the_limit(
            input in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            split in 1usize..40,
        ) {
            let mut d = ChunkedDecoder::new(64);
            let mut body = 0usize;
            for piece in input.chunks(split) {
                match d.feed(piece, |b| body += b.len()) {
                    Ok(n) => proptest::prop_assert!(n <= piece.len()),
                    Err(_) => break,
                }
                if d.is_done() {
                    break;
                }
            }
            proptest::prop_assert!(body <= 64);
        }

        /// A well-formed body built from random chunks decodes to their concatenation, whatever
        /// the pieces it arrives in.
        #[test]
        fn generated_bodies_round_trip(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 1..40), 0..8),
            split in 1usize..50,
        ) {
            let mut wire = Vec::new();
            for c in &chunks {
                wire.extend_from_slice(format!("{:X};n=v\r\n", c.len()).as_bytes());
                wire.extend_from_slice(c);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0\r\nT: x\r\n\r\n");
            let (body, used) = decode(&wire, split, 1 << 20).unwrap();
            proptest::prop_assert_eq!(body, chunks.concat());
            proptest::prop_assert_eq!(used, wire.len());
        }
    }
}
