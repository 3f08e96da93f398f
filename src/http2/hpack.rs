//! HPACK (RFC 7541) for the server: the request decoder is `loona-hpack`'s, bounded here (dynamic
//! table capped at the 4096 bytes we allow, header block and list sizes capped by the connection);
//! the reply encoder is ours and stateless: static-table indices where RFC 7541 Appendix A has the
//! field or its name, literals "without indexing" otherwise, no Huffman, written straight into the
//! output buffer (no allocation). Because it never touches the dynamic table, a block it encodes
//! is valid on any connection at any time, so a recorded head can be encoded once at load time.

use std::borrow::Cow;

/// The dynamic table size we allow the peer's encoder (the protocol default, never advertised higher).
pub const TABLE_SIZE: usize = 4096;

/// The header-name part of the static table, index 1..=61 (RFC 7541 Appendix A).
const STATIC_NAMES: [&[u8]; 61] = [
    b":authority",
    b":method",
    b":method",
    b":path",
    b":path",
    b":scheme",
    b":scheme",
    b":status",
    b":status",
    b":status",
    b":status",
    b":status",
    b":status",
    b":status",
    b"accept-charset",
    b"accept-encoding",
    b"accept-language",
    b"accept-ranges",
    b"accept",
    b"access-control-allow-origin",
    b"age",
    b"allow",
    b"authorization",
    b"cache-control",
    b"content-disposition",
    b"content-encoding",
    b"content-language",
    b"content-length",
    b"content-location",
    b"content-range",
    b"content-type",
    b"cookie",
    b"date",
    b"etag",
    b"expect",
    b"expires",
    b"from",
    b"host",
    b"if-match",
    b"if-modified-since",
    b"if-none-match",
    b"if-range",
    b"if-unmodified-since",
    b"last-modified",
    b"link",
    b"location",
    b"max-forwards",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"range",
    b"referer",
    b"refresh",
    b"retry-after",
    b"server",
    b"set-cookie",
    b"strict-transport-security",
    b"transfer-encoding",
    b"user-agent",
    b"vary",
    b"via",
    b"www-authenticate",
];

/// Appends an HPACK integer: `first` holds the representation's high bits, `prefix` is the
/// number of low bits the integer starts in (RFC 7541 §5.1).
pub fn put_int(out: &mut Vec<u8>, first: u8, prefix: u8, mut value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// Appends a string literal without Huffman coding, lowercasing it if `lower`.
fn put_str(out: &mut Vec<u8>, s: &[u8], lower: bool) {
    put_int(out, 0, 7, s.len());
    if lower {
        out.extend(s.iter().map(u8::to_ascii_lowercase));
    } else {
        out.extend_from_slice(s);
    }
}

/// The static-table index of a header name (compared case-insensitively), if it has one.
fn static_name(name: &[u8]) -> Option<usize> {
    STATIC_NAMES
        .iter()
        .position(|n| n.len() == name.len() && n.eq_ignore_ascii_case(name))
        .map(|i| i + 1)
}

/// Appends `:status`: one byte for the seven statuses the static table has, else a literal.
pub fn put_status(out: &mut Vec<u8>, status: u16) {
    let index = match status {
        200 => 8,
        204 => 9,
        206 => 10,
        304 => 11,
        400 => 12,
        404 => 13,
        500 => 14,
        _ => 0,
    };
    if index != 0 {
        out.push(0x80 | index);
        return;
    }
    // Literal without indexing, name index 8 (`:status`), three digits (statuses are 100..=999).
    let s = status.clamp(100, 999);
    out.extend_from_slice(&[
        0x08,
        3,
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]);
}

/// Appends one field as a literal without indexing; the name is written lowercase (HTTP/2 field
/// names must be, RFC 9113 §8.2.1), with its static-table index when it has one.
pub fn put_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    match static_name(name) {
        Some(index) => put_int(out, 0, 4, index),
        None => {
            out.push(0);
            put_str(out, name, true);
        }
    }
    put_str(out, value, false);
}

/// Why a header block could not be decoded; the connection is then lost (COMPRESSION_ERROR).
#[derive(Debug, thiserror::Error)]
#[error("undecodable HPACK header block: {0:?}")]
pub struct DecodeError(loona_hpack::decoder::DecoderError);

/// Blocks longer than this are not kept by [`Decoder`]'s repeat cache (a load generator's
/// repeated request is a few bytes of indexed fields).
const REPEAT_BLOCK_MAX: usize = 256;

/// Decoded fields longer than this (names and values together) are not kept either.
const REPEAT_FIELDS_MAX: usize = 4096;

/// The request-side HPACK decoder of one connection.
pub struct Decoder {
    inner: loona_hpack::Decoder<'static>,
    /// The block with its Huffman strings decoded ([`super::huffman::unhuffman`]), reused.
    raw: Vec<u8>,
    /// The last block decoded, when it left the dynamic table unchanged and was small: a block
    /// of the same bytes decodes to the same fields as long as the table stays as it is, which
    /// it does until a block changes it (that block replaces or clears this one). A client
    /// that asks for the same thing again and again sends the same few bytes of indexed fields.
    repeat: Repeat,
}

/// [`Decoder`]'s last block and its fields.
#[derive(Default)]
struct Repeat {
    /// The block's bytes as received (empty: nothing kept).
    block: Vec<u8>,
    /// Names and values one after another.
    bytes: Vec<u8>,
    /// Each field's name end and value end in `bytes` (each starts where the previous ends).
    ends: Vec<(u32, u32)>,
}

impl Repeat {
    fn clear(&mut self) {
        self.block.clear();
        self.bytes.clear();
        self.ends.clear();
    }
}

impl Default for Decoder {
    fn default() -> Decoder {
        let mut inner = loona_hpack::Decoder::new();
        inner.set_max_allowed_table_size(TABLE_SIZE);
        Decoder {
            inner,
            raw: Vec::new(),
            repeat: Repeat::default(),
        }
    }
}

impl Decoder {
    /// Decodes one complete header block, calling `field(name, value)` for each field in order.
    /// The block's length is bounded by the caller, so is the work.
    pub fn decode(
        &mut self,
        block: &[u8],
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), DecodeError> {
        let repeat = &mut self.repeat;
        if !repeat.block.is_empty() && repeat.block == block {
            let mut start = 0;
            for &(name_end, value_end) in &repeat.ends {
                let (n, v) = (name_end as usize, value_end as usize);
                field(&repeat.bytes[start..n], &repeat.bytes[n..v]);
                start = v;
            }
            return Ok(());
        }
        repeat.clear();
        // Huffman strings are decoded first, by our code tree: loona-hpack's own Huffman decoder
        // builds its tables for every string (the block it then sees has raw strings only).
        let rewrite = super::huffman::unhuffman(block, &mut self.raw);
        let decoded = if rewrite.rewritten {
            &self.raw[..]
        } else {
            block
        };
        let mut kept = rewrite.keeps_table && !block.is_empty() && block.len() <= REPEAT_BLOCK_MAX;
        self.inner
            .decode_with_cb(decoded, |n: Cow<'_, [u8]>, v: Cow<'_, [u8]>| {
                if kept {
                    if repeat.bytes.len() + n.len() + v.len() <= REPEAT_FIELDS_MAX {
                        repeat.bytes.extend_from_slice(&n);
                        let name_end = repeat.bytes.len() as u32;
                        repeat.bytes.extend_from_slice(&v);
                        repeat.ends.push((name_end, repeat.bytes.len() as u32));
                    } else {
                        kept = false;
                    }
                }
                field(&n, &v)
            })
            .map_err(DecodeError)?;
        if kept {
            repeat.block.extend_from_slice(block);
        } else {
            repeat.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields a fresh decoder decodes from `block`.
    fn decode_all(block: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        fields(&mut Decoder::default(), block)
    }

    #[test]
    fn encoded_status_and_fields_decode_back_lowercased() {
        let mut out = Vec::new();
        for status in [200, 204, 304, 404, 500, 201, 418, 999] {
            out.clear();
            put_status(&mut out, status);
            assert_eq!(
                decode_all(&out),
                vec![(b":status".to_vec(), status.to_string().into_bytes())]
            );
        }
        assert_eq!(
            {
                out.clear();
                put_status(&mut out, 200);
                out.clone()
            },
            [0x88],
            "static index 8"
        );
        out.clear();
        put_field(&mut out, b"Content-Type", b"text/HTML");
        put_field(&mut out, b"X-Custom-Header", b"Value");
        put_field(&mut out, b"grpc-status", &[b'x'; 300]);
        assert_eq!(
            out[..2],
            [15, 16],
            "content-type has static name index 31 (15 + 16)"
        );
        assert_eq!(
            decode_all(&out),
            vec![
                (b"content-type".to_vec(), b"text/HTML".to_vec()),
                (b"x-custom-header".to_vec(), b"Value".to_vec()),
                (b"grpc-status".to_vec(), vec![b'x'; 300]),
            ]
        );
    }

    #[test]
    fn integers_use_continuation_bytes_past_the_prefix() {
        // RFC 7541 C.1.2: 1337 with a 5-bit prefix.
        let mut out = Vec::new();
        put_int(&mut out, 0, 5, 1337);
        assert_eq!(out, [31, 154, 10]);
    }

    #[test]
    fn malformed_blocks_are_errors_not_panics() {
        // fluke-hpack 0.3.1 panicked on this one byte (bearcove/loona#247, the same defect as
        // RUSTSEC-2023-0085 in `hpack`); loona-hpack 0.4.3 returns an error.
        for block in [
            &[0x3f][..], // size update, integer cut short
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], // integer overflow
            &[0x80],     // index 0
            &[0xff, 0x00], // index past the tables
            &[0x40, 0x85, 0xff, 0xff, 0xff, 0xff, 0xff], // Huffman name, bad EOS padding
            &[0x00, 0x05, b'a'], // string longer than the block
        ] {
            let mut d = Decoder::default();
            assert!(d.decode(block, |_, _| {}).is_err(), "{block:?}");
        }
    }

    /// The fields `d` decodes from `block`.
    fn fields(d: &mut Decoder, block: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut got = Vec::new();
        d.decode(block, |n, v| got.push((n.to_vec(), v.to_vec())))
            .unwrap();
        got
    }

    #[test]
    fn a_repeated_block_decodes_alike_and_a_block_that_changes_the_table_is_not_replayed() {
        let pair = |n: &str, v: &str| (n.as_bytes().to_vec(), v.as_bytes().to_vec());
        let mut d = Decoder::default();
        // `x-a: 1` with incremental indexing: it becomes dynamic index 62.
        let mut first = vec![0x82];
        first.push(0x40);
        first.extend_from_slice(b"\x03x-a\x011");
        assert_eq!(
            fields(&mut d, &first),
            [pair(":method", "GET"), pair("x-a", "1")]
        );
        // Indexed only: kept, and the same bytes again give the same fields.
        let indexed = [0x82, 0x80 | 62];
        let expected = [pair(":method", "GET"), pair("x-a", "1")];
        assert_eq!(fields(&mut d, &indexed), expected);
        assert!(!d.repeat.block.is_empty(), "an indexed-only block is kept");
        assert_eq!(fields(&mut d, &indexed), expected);
        // A block that inserts `x-b: 2` at 62 (x-a moves to 63): the kept block must not be
        // replayed, since index 62 now means x-b.
        let mut insert = vec![0x40];
        insert.extend_from_slice(b"\x03x-b\x012");
        assert_eq!(fields(&mut d, &insert), [pair("x-b", "2")]);
        assert!(
            d.repeat.block.is_empty(),
            "a block that changes the table is not kept"
        );
        assert_eq!(
            fields(&mut d, &indexed),
            [pair(":method", "GET"), pair("x-b", "2")]
        );
        assert_eq!(
            fields(&mut d, &indexed),
            [pair(":method", "GET"), pair("x-b", "2")]
        );
        // A size update also changes the table: to 0 evicts every entry, so 62 is an error.
        let mut evict = Vec::new();
        put_int(&mut evict, 0x20, 5, 0);
        evict.push(0x82);
        assert_eq!(fields(&mut d, &evict), [pair(":method", "GET")]);
        assert!(d.decode(&indexed, |_, _| {}).is_err(), "index 62 is gone");
    }

    proptest::proptest! {
        // A connection's blocks, many repeated, some inserting into the table, some referring to
        // its entries: the decoder with its repeat cache gives what loona-hpack alone gives.
        #[test]
        fn a_sequence_of_blocks_decodes_as_loona_decodes_it(
            picks in proptest::collection::vec(0usize..6, 1..40),
        ) {
            let pool: [&[u8]; 6] = [
                &[0x82, 0x86, 0x84],
                &[0x40, 0x03, b'x', b'-', b'a', 0x01, b'1'],
                &[0x82, 0x80 | 62],
                &[0x82, 0x80 | 62, 0x80 | 63],
                &[0x44, 0x02, b'/', b'p'],
                &[0x20, 0x3f, 0xe1, 0x1f],
            ];
            let mut ours = Decoder::default();
            let mut theirs = loona_hpack::Decoder::new();
            theirs.set_max_allowed_table_size(TABLE_SIZE);
            for i in picks {
                let mut a = Vec::new();
                let ra = ours.decode(pool[i], |n, v| a.push((n.to_vec(), v.to_vec())));
                let mut b = Vec::new();
                let rb = theirs.decode_with_cb(pool[i], |n: Cow<'_, [u8]>, v: Cow<'_, [u8]>| {
                    b.push((n.to_vec(), v.to_vec()))
                });
                proptest::prop_assert_eq!(ra.is_ok(), rb.is_ok());
                if ra.is_err() {
                    break;
                }
                proptest::prop_assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn a_malformed_block_is_never_replayed() {
        let mut d = Decoder::default();
        assert_eq!(fields(&mut d, &[0x82]).len(), 1);
        assert!(d.decode(&[0x82, 0xff, 0x00], |_, _| {}).is_err());
        assert!(d.repeat.block.is_empty());
    }

    #[test]
    fn a_table_size_update_above_what_we_allow_is_an_error() {
        // Dynamic table size update to 8192 (001xxxxx, 5-bit prefix).
        let mut block = Vec::new();
        put_int(&mut block, 0x20, 5, 8192);
        let mut d = Decoder::default();
        assert!(d.decode(&block, |_, _| {}).is_err());
    }
}
