//! Zero-copy tnetstring reader (spec §g.1) with absolute byte offsets.
//!
//! A value is `length ":" payload tag`. [`parse_value`] reads one value from a slice and returns a
//! [`Value`] whose payload borrows the input; lists and dicts are walked lazily with
//! [`Value::items`] / [`Value::entries`], so a body is never copied and a value is skipped by its
//! length prefix alone. Every error names the absolute offset where the bad value starts.
//!
//! Nesting is bounded by [`MAX_DEPTH`] for the validating walk ([`validate`]); lazy iteration never
//! recurses, so hostile depth cannot overflow the stack.
#![forbid(unsafe_code)]

use thiserror::Error;

/// Deepest nesting [`validate`] accepts. mitmproxy's own files nest about 6 deep (flow → request →
/// headers → pair → bytes); the `backup` and `metadata` dicts may add a few levels, so 64 leaves a
/// wide margin while keeping a recursive check far from any stack limit.
pub const MAX_DEPTH: usize = 64;

/// Digits a length prefix may have. mitmproxy allows 12 at top level (< 10^12 bytes per flow); we
/// apply the same bound everywhere so the decimal value always fits a `u64`.
pub const MAX_LENGTH_DIGITS: usize = 12;

/// The type tag that ends a tnetstring value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// `,` raw bytes.
    Bytes,
    /// `;` UTF-8 text (mitmproxy extension).
    Text,
    /// `#` decimal integer.
    Int,
    /// `^` float.
    Float,
    /// `!` boolean (`true`/`false`).
    Bool,
    /// `~` null (empty payload).
    Null,
    /// `]` list.
    List,
    /// `}` dict (key, value, key, value, …).
    Dict,
}

impl Tag {
    /// The tag for a tag byte, or `None` for an unknown one.
    #[inline(always)]
    pub fn from_byte(b: u8) -> Option<Tag> {
        // One load from a table made at compile time (a match compiled to a chain of compares,
        // and every value read on the replay path ends in a tag).
        const TAGS: [Option<Tag>; 256] = {
            let mut tags = [None; 256];
            tags[b',' as usize] = Some(Tag::Bytes);
            tags[b';' as usize] = Some(Tag::Text);
            tags[b'#' as usize] = Some(Tag::Int);
            tags[b'^' as usize] = Some(Tag::Float);
            tags[b'!' as usize] = Some(Tag::Bool);
            tags[b'~' as usize] = Some(Tag::Null);
            tags[b']' as usize] = Some(Tag::List);
            tags[b'}' as usize] = Some(Tag::Dict);
            tags
        };
        TAGS[usize::from(b)]
    }

    /// A human name for messages ("byte string", "dict", …).
    pub fn name(self) -> &'static str {
        match self {
            Tag::Bytes => "byte string",
            Tag::Text => "text string",
            Tag::Int => "integer",
            Tag::Float => "float",
            Tag::Bool => "boolean",
            Tag::Null => "null",
            Tag::List => "list",
            Tag::Dict => "dict",
        }
    }
}

/// What went wrong reading a tnetstring value; the offset lives in [`TnetError`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TnetErrorKind {
    /// Input ended inside a value (length prefix, payload or tag missing).
    #[error("the data ends inside a value: {needed} more bytes were expected, {available} remain")]
    Truncated {
        /// Bytes the value still needed.
        needed: u64,
        /// Bytes that were left.
        available: u64,
    },
    /// The length prefix is not `1*DIGIT ":"`.
    #[error("expected a length prefix (digits then ':'), found {found}")]
    BadLengthPrefix {
        /// A printable description of what was found.
        found: String,
    },
    /// The length prefix is larger than what remains of the enclosing value or file.
    #[error(
        "length prefix {length} runs past the end of the {container} ({available} bytes left)"
    )]
    LengthPastEnd {
        /// The declared payload length.
        length: u64,
        /// Bytes left in the enclosing value or file after the prefix.
        available: u64,
        /// "file" or "enclosing value".
        container: &'static str,
    },
    /// The byte after the payload is not one of the eight tags.
    #[error("unknown type tag {found:?} after a {length}-byte payload")]
    UnknownTag {
        /// The tag byte, printed as a char.
        found: char,
        /// The payload length.
        length: u64,
    },
    /// A `;` text payload is not UTF-8.
    #[error("text string is not valid UTF-8 (bad byte at payload position {valid_up_to})")]
    InvalidUtf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
    },
    /// A `#`, `^`, `!` or `~` payload does not have that type's form.
    #[error("invalid {tag} payload {found:?}")]
    BadScalar {
        /// The tag's name.
        tag: &'static str,
        /// The payload, lossily printed and shortened.
        found: String,
    },
    /// A dict has a key without a value.
    #[error("dict has a key without a value")]
    OddDict,
    /// A dict key is neither bytes nor text.
    #[error("dict key must be a text or byte string, found {found}")]
    BadKey {
        /// The key's type.
        found: &'static str,
    },
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("values nest deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// A tnetstring error at an absolute offset (where the bad value starts).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("at byte {offset}: {kind}")]
pub struct TnetError {
    /// Absolute offset of the value (or byte) that is wrong.
    pub offset: u64,
    /// What is wrong.
    pub kind: TnetErrorKind,
}

/// One parsed value: its tag, payload and absolute position. `Copy`, borrows the input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Value<'a> {
    /// The type tag.
    pub tag: Tag,
    /// The payload bytes (between `:` and the tag).
    pub payload: &'a [u8],
    /// Absolute offset of the first byte of the length prefix.
    pub offset: u64,
    /// Absolute offset of the first payload byte.
    pub payload_offset: u64,
}

/// Whether `b` is `-?DIGITS(.DIGITS)?`, a form `f64` parsing always accepts.
fn plain_decimal(b: &[u8]) -> bool {
    let b = b.strip_prefix(b"-").unwrap_or(b);
    let (whole, fraction) = match b.iter().position(|&c| c == b'.') {
        Some(dot) => (&b[..dot], Some(&b[dot + 1..])),
        None => (b, None),
    };
    !whole.is_empty()
        && whole.iter().all(u8::is_ascii_digit)
        && fraction.is_none_or(|f| !f.is_empty() && f.iter().all(u8::is_ascii_digit))
}

/// Prints at most 24 bytes of `b` for an error message.
fn describe(b: &[u8]) -> String {
    if b.is_empty() {
        return "the end of the data".to_string();
    }
    let shown = &b[..b.len().min(24)];
    format!("{:?}", String::from_utf8_lossy(shown))
}

/// Reads one value from the start of `input`, whose first byte is at absolute offset `base`.
/// `container` names what bounds `input` ("file" or "enclosing value") for messages. Returns the
/// value and the number of bytes it occupies.
pub fn parse_value<'a>(
    input: &'a [u8],
    base: u64,
    container: &'static str,
) -> Result<(Value<'a>, usize), TnetError> {
    let (value, used) = parse_frame(input, base, container)?;
    value.check_scalar()?;
    Ok((value, used))
}

/// Frames the value at the start of `input`, which a checking read already accepted: the fast
/// path for re-reading a recording at serve time. No offsets are tracked (they only matter for
/// error messages); `None` if the bytes are not a value after all.
#[inline(always)]
pub fn frame_accepted(input: &[u8]) -> Option<(Value<'_>, usize)> {
    let (length, start) = accepted_length(input)?;
    let end = start.checked_add(length)?;
    let tag = Tag::from_byte(*input.get(end)?)?;
    let value = Value {
        tag,
        payload: &input[start..end],
        offset: 0,
        payload_offset: 0,
    };
    Some((value, end + 1))
}

/// The payload of the value at the start of `input` and the bytes the value occupies, its tag
/// not read: for values whose type the loader checked (the strings of a header pair, the pair
/// itself). `None` if the bytes are not framed as a value after all.
#[inline(always)]
pub fn payload_accepted(input: &[u8]) -> Option<(&[u8], usize)> {
    let (length, start) = accepted_length(input)?;
    let end = start.checked_add(length)?;
    // The tag byte must be there, as in `frame_accepted`.
    input.get(end)?;
    Some((&input[start..end], end + 1))
}

/// The length a checked value's prefix gives, and where its payload starts.
#[inline(always)]
fn accepted_length(input: &[u8]) -> Option<(usize, usize)> {
    let digit = |b: u8| b.is_ascii_digit().then(|| u64::from(b - b'0'));
    // Keys and most values have a length of one or two digits: read those without a loop.
    Some(match *input {
        [d, b':', ..] if d.is_ascii_digit() => (usize::from(d - b'0'), 2),
        [d, e, b':', ..] if d.is_ascii_digit() && e.is_ascii_digit() => {
            (usize::from(d - b'0') * 10 + usize::from(e - b'0'), 3)
        }
        _ => {
            // At most MAX_LENGTH_DIGITS digits: below 10^12, so the sum cannot overflow a u64.
            let mut length = 0u64;
            let mut pos = 0;
            loop {
                let b = *input.get(pos)?;
                if b == b':' {
                    break;
                }
                if pos == MAX_LENGTH_DIGITS {
                    return None;
                }
                length = length * 10 + digit(b)?;
                pos += 1;
            }
            (usize::try_from(length).ok()?, pos + 1)
        }
    })
}

/// Like [`parse_value`], without checking a scalar's payload (UTF-8 of text, digits of numbers):
/// for re-reading values the loader already checked.
#[inline(always)]
pub fn parse_frame<'a>(
    input: &'a [u8],
    base: u64,
    container: &'static str,
) -> Result<(Value<'a>, usize), TnetError> {
    let err = |kind| TnetError { offset: base, kind };
    let mut pos = 0;
    // At most MAX_LENGTH_DIGITS digits: below 10^12, so neither this sum nor `length + 1` below
    // can overflow a u64.
    let mut length: u64 = 0;
    while pos < input.len() && input[pos].is_ascii_digit() {
        if pos == MAX_LENGTH_DIGITS {
            return Err(err(TnetErrorKind::BadLengthPrefix {
                found: format!("a length prefix of more than {MAX_LENGTH_DIGITS} digits"),
            }));
        }
        length = length * 10 + u64::from(input[pos] - b'0');
        pos += 1;
    }
    if pos == input.len() {
        return Err(err(TnetErrorKind::Truncated {
            needed: 1,
            available: 0,
        }));
    }
    if pos == 0 || input[pos] != b':' {
        return Err(err(TnetErrorKind::BadLengthPrefix {
            found: describe(input),
        }));
    }
    pos += 1;
    let available = (input.len() - pos) as u64;
    // The payload and the tag byte must both fit: `len < input.len() - pos` from here on, so the
    // slice bounds below cannot overflow.
    let fits = usize::try_from(length)
        .ok()
        .filter(|&len| len < input.len() - pos);
    let Some(len) = fits else {
        let kind = if length > available || container == "file" && length == available {
            if container == "file" {
                // Inside a file, a prefix that runs off the end is what a killed writer leaves.
                TnetErrorKind::Truncated {
                    needed: length + 1,
                    available,
                }
            } else {
                TnetErrorKind::LengthPastEnd {
                    length,
                    available,
                    container,
                }
            }
        } else {
            TnetErrorKind::LengthPastEnd {
                length,
                available,
                container,
            }
        };
        return Err(err(kind));
    };
    let payload = &input[pos..pos + len];
    let tag_byte = input[pos + len];
    let tag = Tag::from_byte(tag_byte).ok_or_else(|| {
        err(TnetErrorKind::UnknownTag {
            found: tag_byte as char,
            length,
        })
    })?;
    let value = Value {
        tag,
        payload,
        offset: base,
        // Offsets only name positions in messages: past u64::MAX they stay at the maximum.
        payload_offset: base.saturating_add(pos as u64),
    };
    Ok((value, pos + len + 1))
}

impl<'a> Value<'a> {
    fn error(&self, kind: TnetErrorKind) -> TnetError {
        TnetError {
            offset: self.offset,
            kind,
        }
    }

    /// Checks the payload of a scalar (text, int, float, bool, null); containers are checked lazily.
    fn check_scalar(&self) -> Result<(), TnetError> {
        let bad = |tag: Tag| {
            self.error(TnetErrorKind::BadScalar {
                tag: tag.name(),
                found: String::from_utf8_lossy(&self.payload[..self.payload.len().min(24)])
                    .into_owned(),
            })
        };
        match self.tag {
            // Keys and most texts are short ASCII: checking that is cheaper than a UTF-8 check.
            Tag::Text if self.payload.is_ascii() => {}
            Tag::Text => {
                if let Err(e) = std::str::from_utf8(self.payload) {
                    return Err(self.error(TnetErrorKind::InvalidUtf8 {
                        valid_up_to: e.valid_up_to(),
                    }));
                }
            }
            Tag::Int => {
                let digits = self.payload.strip_prefix(b"-").unwrap_or(self.payload);
                if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                    return Err(bad(Tag::Int));
                }
            }
            // Plain decimals (what mitmproxy writes) certainly parse; anything else is tried.
            Tag::Float if plain_decimal(self.payload) => {}
            Tag::Float => {
                let ok = std::str::from_utf8(self.payload)
                    .ok()
                    .is_some_and(|s| s.parse::<f64>().is_ok());
                if !ok {
                    return Err(bad(Tag::Float));
                }
            }
            Tag::Bool => {
                if self.payload != b"true" && self.payload != b"false" {
                    return Err(bad(Tag::Bool));
                }
            }
            Tag::Null => {
                if !self.payload.is_empty() {
                    return Err(bad(Tag::Null));
                }
            }
            Tag::Bytes | Tag::List | Tag::Dict => {}
        }
        Ok(())
    }

    /// The payload as a string, for `;` and `,` values (bytes must be UTF-8 too).
    pub fn as_str(&self) -> Option<&'a str> {
        match self.tag {
            Tag::Text | Tag::Bytes => std::str::from_utf8(self.payload).ok(),
            _ => None,
        }
    }

    /// The payload of a text or byte string.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self.tag {
            Tag::Text | Tag::Bytes => Some(self.payload),
            _ => None,
        }
    }

    /// An integer value, if it fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        if self.tag != Tag::Int {
            return None;
        }
        // The payload was checked to be `-?DIGITS`; `str::parse` would give the same result.
        let (negative, digits) = match self.payload.strip_prefix(b"-") {
            Some(rest) => (true, rest),
            None => (false, self.payload),
        };
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut value: i128 = 0;
        for &d in digits {
            value = value.checked_mul(10)?.checked_add(i128::from(d - b'0'))?;
        }
        i64::try_from(if negative { -value } else { value }).ok()
    }

    /// A float or integer value as `f64` (mitmproxy accepts ints for float fields).
    pub fn as_f64(&self) -> Option<f64> {
        match self.tag {
            Tag::Float | Tag::Int => std::str::from_utf8(self.payload).ok()?.parse().ok(),
            _ => None,
        }
    }

    /// A boolean value.
    pub fn as_bool(&self) -> Option<bool> {
        match self.tag {
            Tag::Bool => Some(self.payload == b"true"),
            _ => None,
        }
    }

    /// Whether this is `0:~`.
    pub fn is_null(&self) -> bool {
        self.tag == Tag::Null
    }

    /// Iterates the elements of a list (or the flat key/value sequence of a dict).
    pub fn items(&self) -> Items<'a> {
        Items {
            rest: if matches!(self.tag, Tag::List | Tag::Dict) {
                self.payload
            } else {
                &[]
            },
            offset: self.payload_offset,
            checked: true,
        }
    }

    /// Iterates the (key, value) entries of a dict. Keys must be text or bytes.
    pub fn entries(&self) -> Entries<'a> {
        Entries {
            items: if self.tag == Tag::Dict {
                self.items()
            } else {
                Items {
                    rest: &[],
                    offset: self.payload_offset,
                    checked: true,
                }
            },
            dict_offset: self.offset,
        }
    }

    /// Like [`Value::entries`], without checking scalar payloads: for a dict the loader already
    /// checked.
    pub fn entries_unchecked(&self) -> Entries<'a> {
        let mut entries = self.entries();
        entries.items.checked = false;
        entries
    }

    /// Looks a key up in a dict; the last occurrence wins (spec §g.1). Stops at the first error.
    pub fn get(&self, key: &str) -> Result<Option<Value<'a>>, TnetError> {
        let mut found = None;
        for entry in self.entries() {
            let (k, v) = entry?;
            if k.payload == key.as_bytes() {
                found = Some(v);
            }
        }
        Ok(found)
    }
}

/// Iterator over the values concatenated in a list or dict payload.
#[derive(Debug, Clone)]
pub struct Items<'a> {
    rest: &'a [u8],
    offset: u64,
    /// Whether scalar payloads are checked ([`parse_value`]) or not ([`parse_frame`]).
    checked: bool,
}

impl<'a> Iterator for Items<'a> {
    type Item = Result<Value<'a>, TnetError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let parsed = if self.checked {
            parse_value(self.rest, self.offset, "enclosing value")
        } else {
            parse_frame(self.rest, self.offset, "enclosing value")
        };
        match parsed {
            Ok((v, used)) => {
                self.rest = &self.rest[used..];
                self.offset = self.offset.saturating_add(used as u64);
                Some(Ok(v))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// Iterator over the (key, value) pairs of a dict.
#[derive(Debug, Clone)]
pub struct Entries<'a> {
    items: Items<'a>,
    dict_offset: u64,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<(Value<'a>, Value<'a>), TnetError>;

    fn next(&mut self) -> Option<Self::Item> {
        let key = match self.items.next()? {
            Ok(k) => k,
            Err(e) => return Some(Err(e)),
        };
        if !matches!(key.tag, Tag::Text | Tag::Bytes) {
            self.items.rest = &[];
            return Some(Err(TnetError {
                offset: key.offset,
                kind: TnetErrorKind::BadKey {
                    found: key.tag.name(),
                },
            }));
        }
        match self.items.next() {
            Some(Ok(v)) => Some(Ok((key, v))),
            Some(Err(e)) => Some(Err(e)),
            None => Some(Err(TnetError {
                offset: self.dict_offset,
                kind: TnetErrorKind::OddDict,
            })),
        }
    }
}

/// Walks a whole value tree, checking every nested value, with nesting bounded by [`MAX_DEPTH`].
pub fn validate(value: &Value<'_>) -> Result<(), TnetError> {
    validate_at(value, 0)
}

fn validate_at(value: &Value<'_>, depth: usize) -> Result<(), TnetError> {
    match value.tag {
        Tag::List => {
            if depth >= MAX_DEPTH {
                return Err(value.error(TnetErrorKind::TooDeep));
            }
            for item in value.items() {
                validate_at(&item?, depth + 1)?;
            }
        }
        Tag::Dict => {
            if depth >= MAX_DEPTH {
                return Err(value.error(TnetErrorKind::TooDeep));
            }
            for entry in value.entries() {
                let (_, v) = entry?;
                validate_at(&v, depth + 1)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Appends the tnetstring encoding of a byte string to `out`.
pub fn write_bytes(out: &mut Vec<u8>, tag: u8, payload: &[u8]) {
    let len = payload.len();
    if len < 100 {
        // Most values (keys, header fields, numbers) are this short: one reserve, no itoa.
        out.reserve(len + 4);
        if len >= 10 {
            out.push(b'0' + (len / 10) as u8);
        }
        out.push(b'0' + (len % 10) as u8);
    } else {
        out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
    }
    out.push(b':');
    out.extend_from_slice(payload);
    out.push(tag);
}

/// Appends an integer (`#`), formatted by hand.
pub fn write_int(out: &mut Vec<u8>, value: i64) {
    write_bytes(out, b'#', itoa::Buffer::new().format(value).as_bytes());
}

/// Appends a float (`^`) as mitmproxy writes one: Python's `repr`, the shortest digits that read
/// back as the same `f64` (`1796236452.3394928`, `1795737600.0`, `1e+16`, `1e-05`, `inf`).
pub fn write_float(out: &mut Vec<u8>, value: f64) {
    let mut repr = [0u8; 32];
    let len = python_float_repr(value, &mut repr);
    write_bytes(out, b'^', &repr[..len]);
}

/// Python's `repr(float)` into `buf`, returning its length (at most 24 bytes). The digits are
/// zmij's (shortest round-trip, as Python's `repr` since 3.1); the layout is Python's: plain
/// decimal with at least one digit after the point when the decimal exponent is in -4..16,
/// else `d.ddde+XX` with a signed exponent of at least two digits.
fn python_float_repr(value: f64, buf: &mut [u8; 32]) -> usize {
    if !value.is_finite() {
        let text: &[u8] = if value.is_nan() {
            b"nan"
        } else if value > 0.0 {
            b"inf"
        } else {
            b"-inf"
        };
        buf[..text.len()].copy_from_slice(text);
        return text.len();
    }
    let mut zmij = zmij::Buffer::new();
    let printed = zmij.format_finite(value).as_bytes();
    if is_python_layout(printed) {
        // The usual case (timestamps): zmij laid the digits out as Python does.
        buf[..printed.len()].copy_from_slice(printed);
        return printed.len();
    }
    // Split zmij's output into sign, significant digits and the exponent of the first digit.
    let (negative, printed) = match printed.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, printed),
    };
    let (mantissa, exponent) = match printed.iter().position(|&b| b == b'e') {
        Some(e) => {
            let digits = &printed[e + 1..];
            let (minus, digits) = match digits.split_first() {
                Some((b'-', rest)) => (true, rest),
                Some((b'+', rest)) => (false, rest),
                _ => (false, digits),
            };
            let n = digits
                .iter()
                .fold(0i32, |n, d| n * 10 + i32::from(d - b'0'));
            (&printed[..e], if minus { -n } else { n })
        }
        None => (printed, 0),
    };
    let mut digits = [0u8; 24];
    let mut count = 0usize;
    // Position of the decimal point relative to the first digit written to `digits`.
    let mut point: i32 = 0;
    let mut seen_point = false;
    for &b in mantissa {
        if b == b'.' {
            seen_point = true;
            continue;
        }
        if count == 0 && b == b'0' {
            // Leading zeros: each one after the point moves the first digit right.
            if seen_point {
                point -= 1;
            }
            continue;
        }
        if count < digits.len() {
            digits[count] = b;
            count += 1;
        }
        if !seen_point {
            point += 1;
        }
    }
    while count > 1 && digits[count - 1] == b'0' {
        count -= 1;
    }
    let mut at = 0;
    let mut push = |buf: &mut [u8; 32], b: u8| {
        buf[at] = b;
        at += 1;
    };
    if negative {
        push(buf, b'-');
    }
    if count == 0 {
        for &b in b"0.0" {
            push(buf, b);
        }
        return at;
    }
    // The value is 0.DIGITS x 10^(point + exponent); Python's exponent is that of the first digit.
    let x = point + exponent - 1;
    if (-4..16).contains(&x) {
        if x < 0 {
            push(buf, b'0');
            push(buf, b'.');
            for _ in 0..(-x - 1) {
                push(buf, b'0');
            }
            for &d in &digits[..count] {
                push(buf, d);
            }
        } else {
            let whole = (x + 1) as usize;
            for &d in &digits[..count.min(whole)] {
                push(buf, d);
            }
            for _ in count..whole {
                push(buf, b'0');
            }
            push(buf, b'.');
            if count > whole {
                for &d in &digits[whole..count] {
                    push(buf, d);
                }
            } else {
                push(buf, b'0');
            }
        }
    } else {
        push(buf, digits[0]);
        if count > 1 {
            push(buf, b'.');
            for &d in &digits[1..count] {
                push(buf, d);
            }
        }
        push(buf, b'e');
        push(buf, if x < 0 { b'-' } else { b'+' });
        let e = x.unsigned_abs();
        if e >= 100 {
            push(buf, b'0' + (e / 100) as u8);
        }
        push(buf, b'0' + (e / 10 % 10) as u8);
        push(buf, b'0' + (e % 10) as u8);
    }
    at
}

/// Whether zmij's text is already Python's: plain decimal with a point, 1 to 16 digits before
/// it (not 0) or `0.` and at most three zeros after it (decimal exponent -4..16).
fn is_python_layout(printed: &[u8]) -> bool {
    let digits = match printed.split_first() {
        Some((b'-', rest)) => rest,
        _ => printed,
    };
    if digits.contains(&b'e') {
        return false;
    }
    let Some(point) = digits.iter().position(|&b| b == b'.') else {
        return false;
    };
    if point + 1 == digits.len() {
        return false;
    }
    match digits {
        [b'0', b'.', rest @ ..] => rest.iter().take_while(|&&b| b == b'0').count() <= 3,
        _ => (1..=16).contains(&point),
    }
}

/// A container whose length prefix is reserved in the output ([`open`]) and written when it is
/// complete ([`close`]): containers are encoded in place, without a buffer per nesting level.
#[derive(Debug, Clone, Copy)]
#[must_use = "a container must be closed"]
pub struct Open {
    /// Where the reserved prefix starts.
    at: usize,
    /// Digits reserved.
    width: usize,
}

/// Starts a list or dict in `out`, reserving a length prefix wide enough for `expected` payload
/// bytes (a guess: a wrong one costs one move of the payload in [`close`]).
pub fn open(out: &mut Vec<u8>, expected: usize) -> Open {
    let width = decimal_digits(expected);
    let at = out.len();
    out.extend_from_slice(&b"000000000000000000000"[..width]);
    out.push(b':');
    Open { at, width }
}

/// Ends the container `open` started, with `tag` (`]` or `}`): writes its length into the
/// reserved prefix, moving the payload when the length has more or fewer digits than reserved.
pub fn close(out: &mut Vec<u8>, open: Open, tag: u8) {
    let start = open.at + open.width + 1;
    let len = out.len() - start;
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(len).as_bytes();
    let width = digits.len();
    if width > open.width {
        let grow = width - open.width;
        out.resize(out.len() + grow, 0);
        out.copy_within(start..start + len, start + grow);
    } else if width < open.width {
        let shrink = open.width - width;
        out.copy_within(start..start + len, start - shrink);
        out.truncate(out.len() - shrink);
    }
    out[open.at..open.at + width].copy_from_slice(digits);
    out[open.at + width] = b':';
    out.push(tag);
}

fn decimal_digits(n: usize) -> usize {
    let mut digits = 1;
    let mut n = n / 10;
    while n > 0 {
        digits += 1;
        n /= 10;
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eight_tag_bytes_and_no_other_name_a_tag() {
        let tags = b",;#^!~]}";
        for b in 0..=255u8 {
            let tag = Tag::from_byte(b);
            assert_eq!(tag.is_some(), tags.contains(&b), "byte {b:#x}");
        }
        assert_eq!(Tag::from_byte(b','), Some(Tag::Bytes));
        assert_eq!(Tag::from_byte(b';'), Some(Tag::Text));
        assert_eq!(Tag::from_byte(b'#'), Some(Tag::Int));
        assert_eq!(Tag::from_byte(b'^'), Some(Tag::Float));
        assert_eq!(Tag::from_byte(b'!'), Some(Tag::Bool));
        assert_eq!(Tag::from_byte(b'~'), Some(Tag::Null));
        assert_eq!(Tag::from_byte(b']'), Some(Tag::List));
        assert_eq!(Tag::from_byte(b'}'), Some(Tag::Dict));
    }

    #[test]
    fn floats_are_written_as_python_repr_writes_them() {
        // Each pair: the value and `repr(value)` printed by Python 3.11.
        let cases: &[(f64, &str)] = &[
            (1796236452.3394928, "1796236452.3394928"),
            (1796236453.4432287, "1796236453.4432287"),
            (1795737600.0, "1795737600.0"),
            (0.5, "0.5"),
            (1e+16, "1e+16"),
            (1000000000000000.0, "1000000000000000.0"),
            (1.2345678901234568e+17, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (1e-05, "1e-05"),
            (1.5e-07, "1.5e-07"),
            (2.9802322387695312e-08, "2.9802322387695312e-08"),
            (544431068535091.6, "544431068535091.6"),
            (3.439070283483335e+35, "3.439070283483335e+35"),
            (1e-323, "1e-323"),
            (0.1, "0.1"),
            (100.0, "100.0"),
            (1795737600.25, "1795737600.25"),
            (1795737600.0625, "1795737600.0625"),
            (-1.5, "-1.5"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1e+22, "1e+22"),
            (9999999999999998.0, "9999999999999998.0"),
            (1234567890123456.8, "1234567890123456.8"),
            (1.7976931348623157e+308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (f64::INFINITY, "inf"),
        ];
        for &(value, python) in cases {
            let mut out = Vec::new();
            write_float(&mut out, value);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("{}:{python}^", python.len()),
                "{value:e}"
            );
        }
    }

    #[test]
    fn containers_written_in_place_get_their_exact_length_whatever_was_reserved() {
        for expected in [0, 5, 99, 100_000] {
            for items in [0usize, 1, 40, 300] {
                let mut out = b"x".to_vec();
                let outer = open(&mut out, expected);
                let inner = open(&mut out, expected);
                for i in 0..items {
                    write_int(&mut out, i as i64);
                }
                close(&mut out, inner, b']');
                write_bytes(&mut out, b',', b"tail");
                close(&mut out, outer, b'}');
                // The same value built the old way, one buffer per level.
                let mut list = Vec::new();
                for i in 0..items {
                    write_bytes(&mut list, b'#', i.to_string().as_bytes());
                }
                let mut dict = Vec::new();
                write_bytes(&mut dict, b']', &list);
                write_bytes(&mut dict, b',', b"tail");
                let mut want = b"x".to_vec();
                write_bytes(&mut want, b'}', &dict);
                assert_eq!(out, want, "reserved for {expected}, {items} items");
            }
        }
    }

    fn one(input: &[u8]) -> Result<Value<'_>, TnetError> {
        parse_value(input, 100, "file").map(|(v, _)| v)
    }

    /// `frame_accepted` as it was written first: one digit loop for every length.
    fn frame_by_loop(input: &[u8]) -> Option<(Tag, &[u8], usize)> {
        let mut length = 0usize;
        let mut pos = 0;
        loop {
            let b = *input.get(pos)?;
            if b == b':' {
                break;
            }
            if !b.is_ascii_digit() || pos == MAX_LENGTH_DIGITS {
                return None;
            }
            length = length * 10 + usize::from(b - b'0');
            pos += 1;
        }
        let end = (pos + 1).checked_add(length)?;
        let tag = Tag::from_byte(*input.get(end)?)?;
        Some((tag, &input[pos + 1..end], end + 1))
    }

    #[test]
    fn framing_with_short_lengths_reads_like_the_digit_loop() {
        let mut inputs: Vec<Vec<u8>> = [
            &b""[..],
            b":",
            b"::",
            b":,",
            b"0:,",
            b"0:~rest",
            b"1:a,",
            b"1:a",
            b"1:ab",
            b"9:abcdefghi,",
            b"10:abcdefghij,",
            b"10:abcdefghi,",
            b"12:abcdefghijkl]",
            b"100:x,",
            b"x:a,",
            b"1x:a,",
            b"00:,",
            b"01:a;",
            b"1:a?",
            b"123456789012:x,",
            b"1234567890123:x,",
        ]
        .iter()
        .map(|i| i.to_vec())
        .collect();
        inputs.push(
            b"100:"
                .iter()
                .chain(&[b'x'; 100])
                .chain(b",")
                .copied()
                .collect(),
        );
        for input in &inputs {
            let fast = frame_accepted(input).map(|(v, used)| (v.tag, v.payload, used));
            assert_eq!(
                fast,
                frame_by_loop(input),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn integers_read_like_str_parse_at_the_limits() {
        for text in [
            "0",
            "-0",
            "007",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "-9223372036854775809",
            "123456789012345678901234567890123456789012",
        ] {
            let encoded = format!("{}:{text}#", text.len());
            let value = one(encoded.as_bytes()).unwrap();
            assert_eq!(value.as_i64(), text.parse::<i64>().ok(), "{text}");
        }
    }

    #[test]
    fn floats_are_checked_by_their_form_or_by_parsing() {
        for (text, ok) in [
            ("1.5", true),
            ("-2", true),
            ("1.", true),
            (".5", true),
            ("1e3", true),
            ("inf", true),
            ("1.2.3", false),
            ("-", false),
            ("", false),
            ("x", false),
        ] {
            let encoded = format!("{}:{text}^", text.len());
            assert_eq!(one(encoded.as_bytes()).is_ok(), ok, "{text}");
            assert!(ok || !plain_decimal(text.as_bytes()), "{text}");
        }
    }

    #[test]
    fn spec_examples_parse() {
        assert_eq!(one(b"5:12345#").unwrap().as_i64(), Some(12345));
        assert_eq!(one(b"0:,").unwrap().as_bytes(), Some(&b""[..]));
        assert_eq!(one(b"0:;").unwrap().as_str(), Some(""));
        let list = one(b"24:5:12345#5:67890#5:xxxxx,]").unwrap();
        let items: Vec<_> = list.items().map(|v| v.unwrap()).collect();
        assert_eq!(items.len(), 3);
        assert_eq!(items[1].as_i64(), Some(67890));
        assert_eq!(items[2].offset, 100 + 3 + 16);
        let dict = one(b"9:1:k;2:-3#}").unwrap();
        assert_eq!(dict.get("k").unwrap().unwrap().as_i64(), Some(-3));
        assert_eq!(one(b"4:true!").unwrap().as_bool(), Some(true));
        assert!(one(b"0:~").unwrap().is_null());
        assert_eq!(
            one(b"16:946681202.123456^").unwrap().as_f64(),
            Some(946681202.123456)
        );
    }

    #[test]
    fn repeated_dict_key_last_wins() {
        let d = one(b"16:1:k;1:1#1:k;1:2#}").unwrap();
        assert_eq!(d.get("k").unwrap().unwrap().as_i64(), Some(2));
    }

    #[test]
    fn truncated_payload_in_file_names_offset() {
        let e = one(b"10:abc").unwrap_err();
        assert_eq!(e.offset, 100);
        assert!(matches!(e.kind, TnetErrorKind::Truncated { .. }));
    }

    #[test]
    fn nested_length_past_end_names_inner_offset() {
        let outer = one(b"7:9:abcd,]").unwrap();
        let e = outer.items().next().unwrap().unwrap_err();
        assert_eq!(e.offset, 102);
        assert!(matches!(
            e.kind,
            TnetErrorKind::LengthPastEnd { length: 9, .. }
        ));
    }

    #[test]
    fn unknown_tag_and_bad_prefix_and_utf8() {
        assert!(matches!(
            one(b"1:a?").unwrap_err().kind,
            TnetErrorKind::UnknownTag { found: '?', .. }
        ));
        assert!(matches!(
            one(b"x:a,").unwrap_err().kind,
            TnetErrorKind::BadLengthPrefix { .. }
        ));
        assert!(matches!(
            one(b"2:\xff\xfe;").unwrap_err().kind,
            TnetErrorKind::InvalidUtf8 { valid_up_to: 0 }
        ));
        assert!(matches!(
            one(b"1:x#").unwrap_err().kind,
            TnetErrorKind::BadScalar { .. }
        ));
        assert!(matches!(
            one(b"1:x~").unwrap_err().kind,
            TnetErrorKind::BadScalar { .. }
        ));
    }

    #[test]
    fn hostile_nesting_is_refused_without_overflow() {
        // 100 000 nested lists: a recursive reader without a bound would overflow the stack.
        let mut lengths = vec![3usize]; // "0:]"
        for _ in 0..100_000 {
            let inner = *lengths.last().unwrap();
            lengths.push(inner.to_string().len() + 1 + inner + 1);
        }
        let mut v = Vec::new();
        for inner in lengths[..lengths.len() - 1].iter().rev() {
            v.extend_from_slice(inner.to_string().as_bytes());
            v.push(b':');
        }
        v.extend_from_slice(b"0:]");
        v.resize(v.len() + 100_000, b']');
        let value = one(&v).unwrap();
        let e = validate(&value).unwrap_err();
        assert_eq!(e.kind, TnetErrorKind::TooDeep);
        assert!(e.offset > 100);
    }

    #[test]
    fn offsets_near_the_end_of_u64_saturate_instead_of_overflowing() {
        // A caller's base offset can be anything: positions past u64::MAX stay at the maximum
        // (they only name places in messages) instead of overflowing.
        let base = u64::MAX - 2;
        let (list, used) = parse_value(b"8:1:a,1:b,]", base, "file").unwrap();
        assert_eq!(used, 11);
        assert_eq!(list.payload_offset, u64::MAX);
        let items: Vec<_> = list.items().map(|i| i.unwrap()).collect();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].as_bytes(), Some(&b"b"[..]));
        assert_eq!(items[1].offset, u64::MAX);
        let e = parse_value(b"8:1:a,9:b,]", base, "file")
            .unwrap()
            .0
            .items()
            .nth(1);
        assert_eq!(e.unwrap().unwrap_err().offset, u64::MAX);
    }

    #[test]
    fn both_framings_agree_at_the_length_digit_limit() {
        for input in [
            &b"999999999999:x,"[..],
            b"0000000000001:x,",
            b"9999999999999:x,",
        ] {
            assert!(parse_frame(input, 0, "file").is_err(), "{input:?}");
            assert_eq!(frame_accepted(input), None, "{input:?}");
        }
        let twelve = b"000000000001:x,";
        let (value, used) = parse_frame(twelve, 0, "file").unwrap();
        assert_eq!((value.payload, used), (&b"x"[..], twelve.len()));
        let (fast, fast_used) = frame_accepted(twelve).unwrap();
        assert_eq!((fast.payload, fast_used), (&b"x"[..], twelve.len()));
    }

    #[test]
    fn too_many_length_digits_is_an_error_not_an_overflow() {
        let e = one(b"99999999999999999999:x,").unwrap_err();
        assert!(matches!(e.kind, TnetErrorKind::BadLengthPrefix { .. }));
    }
}
