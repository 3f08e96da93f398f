//! HPACK's Huffman code (RFC 7541 §5.2, Appendix B): a decoder that walks a code tree built once,
//! and [`unhuffman`], which rewrites a header block with every Huffman-coded string literal
//! decoded, so the table-keeping decoder never decodes Huffman itself (loona-hpack's decoder
//! builds a 257-entry hash table for every Huffman string it meets: a hundred times the cost of
//! the rest of a request; h2load and browsers Huffman-code the `:path` of every request).

use std::sync::OnceLock;

/// RFC 7541 Appendix B: `(code, bit length)` of symbols 0–255 and EOS (256).
const CODES: [(u32, u8); 257] = [
    (0x1ff8, 13),
    (0x7fffd8, 23),
    (0xfffffe2, 28),
    (0xfffffe3, 28),
    (0xfffffe4, 28),
    (0xfffffe5, 28),
    (0xfffffe6, 28),
    (0xfffffe7, 28),
    (0xfffffe8, 28),
    (0xffffea, 24),
    (0x3ffffffc, 30),
    (0xfffffe9, 28),
    (0xfffffea, 28),
    (0x3ffffffd, 30),
    (0xfffffeb, 28),
    (0xfffffec, 28),
    (0xfffffed, 28),
    (0xfffffee, 28),
    (0xfffffef, 28),
    (0xffffff0, 28),
    (0xffffff1, 28),
    (0xffffff2, 28),
    (0x3ffffffe, 30),
    (0xffffff3, 28),
    (0xffffff4, 28),
    (0xffffff5, 28),
    (0xffffff6, 28),
    (0xffffff7, 28),
    (0xffffff8, 28),
    (0xffffff9, 28),
    (0xffffffa, 28),
    (0xffffffb, 28),
    (0x14, 6),
    (0x3f8, 10),
    (0x3f9, 10),
    (0xffa, 12),
    (0x1ff9, 13),
    (0x15, 6),
    (0xf8, 8),
    (0x7fa, 11),
    (0x3fa, 10),
    (0x3fb, 10),
    (0xf9, 8),
    (0x7fb, 11),
    (0xfa, 8),
    (0x16, 6),
    (0x17, 6),
    (0x18, 6),
    (0x0, 5),
    (0x1, 5),
    (0x2, 5),
    (0x19, 6),
    (0x1a, 6),
    (0x1b, 6),
    (0x1c, 6),
    (0x1d, 6),
    (0x1e, 6),
    (0x1f, 6),
    (0x5c, 7),
    (0xfb, 8),
    (0x7ffc, 15),
    (0x20, 6),
    (0xffb, 12),
    (0x3fc, 10),
    (0x1ffa, 13),
    (0x21, 6),
    (0x5d, 7),
    (0x5e, 7),
    (0x5f, 7),
    (0x60, 7),
    (0x61, 7),
    (0x62, 7),
    (0x63, 7),
    (0x64, 7),
    (0x65, 7),
    (0x66, 7),
    (0x67, 7),
    (0x68, 7),
    (0x69, 7),
    (0x6a, 7),
    (0x6b, 7),
    (0x6c, 7),
    (0x6d, 7),
    (0x6e, 7),
    (0x6f, 7),
    (0x70, 7),
    (0x71, 7),
    (0x72, 7),
    (0xfc, 8),
    (0x73, 7),
    (0xfd, 8),
    (0x1ffb, 13),
    (0x7fff0, 19),
    (0x1ffc, 13),
    (0x3ffc, 14),
    (0x22, 6),
    (0x7ffd, 15),
    (0x3, 5),
    (0x23, 6),
    (0x4, 5),
    (0x24, 6),
    (0x5, 5),
    (0x25, 6),
    (0x26, 6),
    (0x27, 6),
    (0x6, 5),
    (0x74, 7),
    (0x75, 7),
    (0x28, 6),
    (0x29, 6),
    (0x2a, 6),
    (0x7, 5),
    (0x2b, 6),
    (0x76, 7),
    (0x2c, 6),
    (0x8, 5),
    (0x9, 5),
    (0x2d, 6),
    (0x77, 7),
    (0x78, 7),
    (0x79, 7),
    (0x7a, 7),
    (0x7b, 7),
    (0x7ffe, 15),
    (0x7fc, 11),
    (0x3ffd, 14),
    (0x1ffd, 13),
    (0xffffffc, 28),
    (0xfffe6, 20),
    (0x3fffd2, 22),
    (0xfffe7, 20),
    (0xfffe8, 20),
    (0x3fffd3, 22),
    (0x3fffd4, 22),
    (0x3fffd5, 22),
    (0x7fffd9, 23),
    (0x3fffd6, 22),
    (0x7fffda, 23),
    (0x7fffdb, 23),
    (0x7fffdc, 23),
    (0x7fffdd, 23),
    (0x7fffde, 23),
    (0xffffeb, 24),
    (0x7fffdf, 23),
    (0xffffec, 24),
    (0xffffed, 24),
    (0x3fffd7, 22),
    (0x7fffe0, 23),
    (0xffffee, 24),
    (0x7fffe1, 23),
    (0x7fffe2, 23),
    (0x7fffe3, 23),
    (0x7fffe4, 23),
    (0x1fffdc, 21),
    (0x3fffd8, 22),
    (0x7fffe5, 23),
    (0x3fffd9, 22),
    (0x7fffe6, 23),
    (0x7fffe7, 23),
    (0xffffef, 24),
    (0x3fffda, 22),
    (0x1fffdd, 21),
    (0xfffe9, 20),
    (0x3fffdb, 22),
    (0x3fffdc, 22),
    (0x7fffe8, 23),
    (0x7fffe9, 23),
    (0x1fffde, 21),
    (0x7fffea, 23),
    (0x3fffdd, 22),
    (0x3fffde, 22),
    (0xfffff0, 24),
    (0x1fffdf, 21),
    (0x3fffdf, 22),
    (0x7fffeb, 23),
    (0x7fffec, 23),
    (0x1fffe0, 21),
    (0x1fffe1, 21),
    (0x3fffe0, 22),
    (0x1fffe2, 21),
    (0x7fffed, 23),
    (0x3fffe1, 22),
    (0x7fffee, 23),
    (0x7fffef, 23),
    (0xfffea, 20),
    (0x3fffe2, 22),
    (0x3fffe3, 22),
    (0x3fffe4, 22),
    (0x7ffff0, 23),
    (0x3fffe5, 22),
    (0x3fffe6, 22),
    (0x7ffff1, 23),
    (0x3ffffe0, 26),
    (0x3ffffe1, 26),
    (0xfffeb, 20),
    (0x7fff1, 19),
    (0x3fffe7, 22),
    (0x7ffff2, 23),
    (0x3fffe8, 22),
    (0x1ffffec, 25),
    (0x3ffffe2, 26),
    (0x3ffffe3, 26),
    (0x3ffffe4, 26),
    (0x7ffffde, 27),
    (0x7ffffdf, 27),
    (0x3ffffe5, 26),
    (0xfffff1, 24),
    (0x1ffffed, 25),
    (0x7fff2, 19),
    (0x1fffe3, 21),
    (0x3ffffe6, 26),
    (0x7ffffe0, 27),
    (0x7ffffe1, 27),
    (0x3ffffe7, 26),
    (0x7ffffe2, 27),
    (0xfffff2, 24),
    (0x1fffe4, 21),
    (0x1fffe5, 21),
    (0x3ffffe8, 26),
    (0x3ffffe9, 26),
    (0xffffffd, 28),
    (0x7ffffe3, 27),
    (0x7ffffe4, 27),
    (0x7ffffe5, 27),
    (0xfffec, 20),
    (0xfffff3, 24),
    (0xfffed, 20),
    (0x1fffe6, 21),
    (0x3fffe9, 22),
    (0x1fffe7, 21),
    (0x1fffe8, 21),
    (0x7ffff3, 23),
    (0x3fffea, 22),
    (0x3fffeb, 22),
    (0x1ffffee, 25),
    (0x1ffffef, 25),
    (0xfffff4, 24),
    (0xfffff5, 24),
    (0x3ffffea, 26),
    (0x7ffff4, 23),
    (0x3ffffeb, 26),
    (0x7ffffe6, 27),
    (0x3ffffec, 26),
    (0x3ffffed, 26),
    (0x7ffffe7, 27),
    (0x7ffffe8, 27),
    (0x7ffffe9, 27),
    (0x7ffffea, 27),
    (0x7ffffeb, 27),
    (0xffffffe, 28),
    (0x7ffffec, 27),
    (0x7ffffed, 27),
    (0x7ffffee, 27),
    (0x7ffffef, 27),
    (0x7fffff0, 27),
    (0x3ffffee, 26),
    (0x3fffffff, 30),
];

/// The code tree: node `i`'s children are `TREE[i][bit]`; a child below [`LEAF`] is another node,
/// `LEAF + symbol` a leaf (symbol 256 is EOS).
const LEAF: u16 = 1 << 15;

fn tree() -> &'static [[u16; 2]] {
    static TREE: OnceLock<Vec<[u16; 2]>> = OnceLock::new();
    TREE.get_or_init(|| {
        let mut nodes: Vec<[u16; 2]> = vec![[0, 0]];
        for (symbol, &(code, len)) in CODES.iter().enumerate() {
            let mut at = 0usize;
            for i in (0..len).rev() {
                let bit = ((code >> i) & 1) as usize;
                if i == 0 {
                    nodes[at][bit] = LEAF + symbol as u16;
                } else {
                    if nodes[at][bit] == 0 {
                        nodes.push([0, 0]);
                        nodes[at][bit] = (nodes.len() - 1) as u16;
                    }
                    at = nodes[at][bit] as usize;
                }
            }
        }
        nodes
    })
}

/// Appends the decoding of the Huffman-coded `input` to `out`; false if it is not a valid code
/// (EOS inside, padding longer than 7 bits or not all ones, or a code that leads nowhere).
pub fn decode(input: &[u8], out: &mut Vec<u8>) -> bool {
    let tree = tree();
    let mut at = 0usize;
    // Bits read since the last symbol, and whether they were all ones (valid padding).
    let mut pending = 0u32;
    let mut ones = true;
    for &byte in input {
        for i in (0..8).rev() {
            let bit = usize::from((byte >> i) & 1);
            pending += 1;
            ones &= bit == 1;
            let next = tree[at][bit];
            if next >= LEAF {
                let symbol = next - LEAF;
                if symbol == 256 {
                    return false;
                }
                out.push(symbol as u8);
                at = 0;
                pending = 0;
                ones = true;
            } else if next == 0 {
                return false;
            } else {
                at = usize::from(next);
            }
        }
    }
    pending <= 7 && ones
}

/// Decodes an HPACK integer with an `prefix`-bit prefix at the start of `buf`: (value, bytes
/// used), or `None` when truncated or larger than 2^28.
fn integer(buf: &[u8], prefix: u8) -> Option<(usize, usize)> {
    let max = (1usize << prefix) - 1;
    let mut value = usize::from(*buf.first()?) & max;
    if value < max {
        return Some((value, 1));
    }
    for (i, &b) in buf.iter().enumerate().skip(1).take(4) {
        value += usize::from(b & 0x7f) << (7 * (i - 1));
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// A raw string literal's length prefix (RFC 7541 §5.1, 7-bit prefix, H clear) for lengths
/// below 2^28: its bytes and how many there are.
fn length_bytes(mut value: usize) -> ([u8; 5], usize) {
    let mut head = [0u8; 5];
    if value < 127 {
        head[0] = value as u8;
        return (head, 1);
    }
    head[0] = 127;
    value -= 127;
    let mut n = 1;
    while value >= 128 && n < 4 {
        head[n] = (value % 128) as u8 | 0x80;
        value /= 128;
        n += 1;
    }
    head[n] = value as u8;
    (head, n + 1)
}

/// Copies one string literal from the start of `buf` to `out`, decoding it if Huffman-coded;
/// returns the bytes read, or `None` when malformed.
fn string(buf: &[u8], out: &mut Vec<u8>, any: &mut bool) -> Option<usize> {
    let (len, used) = integer(buf, 7)?;
    let end = used.checked_add(len)?;
    let bytes = buf.get(used..end)?;
    if buf[0] & 0x80 == 0 {
        out.extend_from_slice(&buf[..end]);
        return Some(end);
    }
    *any = true;
    // The length goes first, so decode after a placeholder large enough for any length.
    let at = out.len();
    out.extend_from_slice(&[0; 5]);
    if !decode(bytes, out) {
        return None;
    }
    let decoded = out.len() - at - 5;
    let (head, n) = length_bytes(decoded);
    out.copy_within(at + 5.., at + n);
    out.truncate(at + n + decoded);
    out[at..at + n].copy_from_slice(&head[..n]);
    Some(end)
}

/// What [`unhuffman`] saw in a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewrite {
    /// Huffman strings were decoded: `out` holds the block to decode instead of the original.
    pub rewritten: bool,
    /// The block leaves the dynamic table as it found it: no literal with incremental indexing
    /// and no table size update (RFC 7541 §6.2.1, §6.3), and it is well formed. Decoding the
    /// same bytes again with the same table then gives the same fields.
    pub keeps_table: bool,
}

/// Writes `block` into `out` (cleared first) with every Huffman-coded string literal replaced by
/// its raw form, and says whether that changed something and whether the block changes the
/// dynamic table. When the block is malformed, `rewritten` is false (the caller then decodes
/// the original, whose decoder reports the error) and so is `keeps_table`.
pub fn unhuffman(block: &[u8], out: &mut Vec<u8>) -> Rewrite {
    const MALFORMED: Rewrite = Rewrite {
        rewritten: false,
        keeps_table: false,
    };
    out.clear();
    let mut any = false;
    let mut keeps_table = true;
    let mut at = 0;
    while at < block.len() {
        let first = block[at];
        // (prefix bits of the index, whether literal strings follow), RFC 7541 §6.
        let (prefix, literal) = match first {
            0x80..=0xff => (7, false),
            0x40..=0x7f => (6, true),
            0x20..=0x3f => (5, false),
            _ => (4, true),
        };
        keeps_table &= !(0x20..=0x7f).contains(&first);
        let Some((index, used)) = integer(&block[at..], prefix) else {
            return MALFORMED;
        };
        out.extend_from_slice(&block[at..at + used]);
        at += used;
        if literal {
            if index == 0 {
                let Some(n) = string(&block[at..], out, &mut any) else {
                    return MALFORMED;
                };
                at += n;
            }
            let Some(n) = string(&block[at..], out, &mut any) else {
                return MALFORMED;
            };
            at += n;
        }
    }
    Rewrite {
        rewritten: any,
        keeps_table,
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use proptest::prelude::*;

    use super::*;

    /// The Huffman encoding of `s` (test-only: the server never Huffman-encodes).
    fn encode(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u64, 0u32);
        for &b in s {
            let (code, len) = CODES[b as usize];
            acc = (acc << len) | u64::from(code);
            bits += u32::from(len);
            while bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        if bits > 0 {
            out.push(((acc << (8 - bits)) as u8) | (0xff >> bits));
        }
        out
    }

    /// A decoded field list, or that the block was refused.
    type Decoded = Result<Vec<(Vec<u8>, Vec<u8>)>, ()>;

    /// Every field loona-hpack decodes from `block` on a fresh decoder allowing the table size
    /// ours allows (a size update above it is an error in both), or its error.
    fn loona(block: &[u8]) -> Decoded {
        let mut d = loona_hpack::Decoder::new();
        d.set_max_allowed_table_size(super::super::hpack::TABLE_SIZE);
        let mut got = Vec::new();
        d.decode_with_cb(block, |n: Cow<'_, [u8]>, v: Cow<'_, [u8]>| {
            got.push((n.to_vec(), v.to_vec()))
        })
        .map(|_| got)
        .map_err(|_| ())
    }

    /// The same through our decoder (Huffman decoded first).
    fn ours(block: &[u8]) -> Decoded {
        let mut d = super::super::hpack::Decoder::default();
        let mut got = Vec::new();
        d.decode(block, |n, v| got.push((n.to_vec(), v.to_vec())))
            .map(|_| got)
            .map_err(|_| ())
    }

    #[test]
    fn the_rfc_7541_examples_decode() {
        // C.4.1: "www.example.com".
        let mut out = Vec::new();
        let code = [
            0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
        ];
        assert!(decode(&code, &mut out));
        assert_eq!(out, b"www.example.com");
        // C.4.2: "no-cache".
        out.clear();
        assert!(decode(&[0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf], &mut out));
        assert_eq!(out, b"no-cache");
        assert_eq!(encode(b"no-cache"), [0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf]);
    }

    #[test]
    fn bad_padding_and_eos_are_refused() {
        let mut out = Vec::new();
        // "a" is 00011 (5 bits); three 1s of padding is fine, 0s are not.
        assert!(decode(&[0b0001_1111], &mut out));
        assert!(!decode(&[0b0001_1000], &mut out), "padding of zeros");
        assert!(
            !decode(&[0b0001_1111, 0xff], &mut out),
            "padding longer than 7 bits"
        );
        assert!(
            !decode(&[0xff, 0xff, 0xff, 0xfc], &mut out),
            "EOS (30 ones) in the string"
        );
        assert!(decode(&[], &mut out));
    }

    #[test]
    fn a_block_of_h2loads_requests_decodes_the_same_with_and_without_the_rewrite() {
        // Indexed :method GET, :scheme http; literal :path (name index 4) Huffman "/small";
        // literal new name "x-huff" (Huffman) with a raw value; a size update.
        let mut block = vec![0x20, 0x82, 0x86, 0x04];
        let path = encode(b"/small");
        block.push(0x80 | path.len() as u8);
        block.extend_from_slice(&path);
        block.push(0x40);
        let name = encode(b"x-huff");
        block.push(0x80 | name.len() as u8);
        block.extend_from_slice(&name);
        block.push(3);
        block.extend_from_slice(b"raw");
        let mut raw = Vec::new();
        let rewrite = unhuffman(&block, &mut raw);
        assert!(rewrite.rewritten);
        assert!(!rewrite.keeps_table, "a size update and an indexed literal");
        assert!(loona(&raw).is_ok());
        assert_eq!(ours(&block), loona(&block));
        assert_eq!(
            ours(&block).unwrap()[3],
            (b"x-huff".to_vec(), b"raw".to_vec())
        );
        // A long value: a two-byte length prefix after decoding.
        let long = vec![b'z'; 300];
        let mut block = vec![0x04];
        let code = encode(&long);
        super::super::hpack::put_int(&mut block, 0x80, 7, code.len());
        block.extend_from_slice(&code);
        assert_eq!(ours(&block), loona(&block));
        assert_eq!(ours(&block).unwrap()[0].1, long);
    }

    proptest! {
        #[test]
        fn huffman_round_trips(s in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut out = Vec::new();
            prop_assert!(decode(&encode(&s), &mut out));
            prop_assert_eq!(out, s);
        }

        #[test]
        fn any_block_decodes_as_loona_decodes_it(
            fields in proptest::collection::vec(
                (0u8..5, proptest::collection::vec(any::<u8>(), 0..40),
                 proptest::collection::vec(any::<u8>(), 0..40), any::<bool>(), any::<bool>()),
                0..8),
            junk in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            let mut block = Vec::new();
            for (kind, name, value, huff_name, huff_value) in &fields {
                let put = |block: &mut Vec<u8>, s: &[u8], huff: bool| {
                    let body = if huff { encode(s) } else { s.to_vec() };
                    let mut len = Vec::new();
                    super::super::hpack::put_int(&mut len, if huff { 0x80 } else { 0 }, 7, body.len());
                    block.extend_from_slice(&len);
                    block.extend_from_slice(&body);
                };
                match kind {
                    0 => block.push(0x82),
                    1 => { block.push(0x40); put(&mut block, name, *huff_name); put(&mut block, value, *huff_value); }
                    2 => { block.push(0x04); put(&mut block, value, *huff_value); }
                    3 => { block.push(0x10); put(&mut block, name, *huff_name); put(&mut block, value, *huff_value); }
                    _ => { block.push(0x44); put(&mut block, value, *huff_value); }
                }
            }
            prop_assert_eq!(ours(&block), loona(&block));
            block.extend_from_slice(&junk);
            prop_assert_eq!(ours(&block), loona(&block));
            prop_assert_eq!(ours(&junk), loona(&junk));
        }
    }
}
