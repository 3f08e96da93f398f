//! Form bodies as mitmproxy reads them for `ignore_payload_params` (spec §b.2).
//!
//! Only used when that option is set. Multipart parsing copies mitmproxy's ad-hoc reader
//! (`decode_multipart`): split on `--boundary`, the field name from the second line, the value
//! from the lines after the first empty line, joined without line breaks. Nothing is copied:
//! fields borrow from the body. Content-Encoding is not undone (see the README's differences).
#![forbid(unsafe_code)]

use super::text::TextMode;

/// Whether `hay` contains `needle` (lower-case ASCII), ignoring ASCII case.
pub fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// The parameter `name` (exact, after trimming) of a Content-Type value; the last one wins.
fn content_type_param<'a>(content_type: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let semicolon = content_type.iter().position(|&b| b == b';')?;
    let (main, params) = (&content_type[..semicolon], &content_type[semicolon + 1..]);
    if !main.contains(&b'/') {
        return None;
    }
    params.rsplit(|&b| b == b';').find_map(|clause| {
        let eq = clause.iter().position(|&b| b == b'=')?;
        (clause[..eq].trim_ascii() == name).then(|| clause[eq + 1..].trim_ascii())
    })
}

/// Lines of `s` split on CR, LF or CRLF, as Python's `bytes.splitlines` (no empty last line).
/// Yields each line with the position just after its line end.
fn lines(s: &[u8]) -> impl Iterator<Item = (&[u8], usize)> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= s.len() {
            return None;
        }
        let start = pos;
        let end = s[start..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
            .map_or(s.len(), |i| start + i);
        pos = end;
        if pos < s.len() {
            pos += if s[pos] == b'\r' && s.get(pos + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
        }
        Some((&s[start..end], pos))
    })
}

/// One multipart field: its name and the bytes holding its value lines.
#[derive(Debug, Clone, Copy)]
pub struct MultipartField<'a> {
    /// The `name="..."` of the second line of the part.
    pub name: &'a [u8],
    /// The part after its first empty line (from line 3 on).
    rest: &'a [u8],
}

impl<'a> MultipartField<'a> {
    /// The lines of the value; the value is their concatenation.
    pub fn value_lines(&self) -> impl Iterator<Item = &'a [u8]> {
        lines(self.rest).map(|(l, _)| l)
    }

    /// Length of the value.
    pub fn value_len(&self) -> usize {
        self.value_lines().map(<[u8]>::len).sum()
    }
}

/// Pieces of `body` between occurrences of `--boundary` (Python `bytes.split`).
fn pieces<'a>(body: &'a [u8], boundary: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
    let mut rest = Some(body);
    std::iter::from_fn(move || {
        let r = rest?;
        let sep = 2 + boundary.len();
        let found = r
            .windows(sep)
            .position(|w| w.starts_with(b"--") && &w[2..] == boundary);
        match found {
            Some(i) => {
                rest = Some(&r[i + sep..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// The `name="..."` of a part's second line: a word boundary before `name`, at least one byte.
fn field_name(line: &[u8]) -> Option<&[u8]> {
    let mut from = 0;
    while let Some(i) = line[from..].windows(6).position(|w| w == b"name=\"") {
        let at = from + i;
        let boundary = at == 0 || !(line[at - 1].is_ascii_alphanumeric() || line[at - 1] == b'_');
        let value = &line[at + 6..];
        if boundary {
            if let Some(end) = value.iter().position(|&b| b == b'"') {
                if end > 0 {
                    return Some(&value[..end]);
                }
            }
        }
        from = at + 1;
    }
    None
}

/// One part, if it is a field (spec §b.2); `Err` when the form is unparseable (no empty line).
fn part(piece: &[u8]) -> Result<Option<MultipartField<'_>>, ()> {
    let mut it = lines(piece);
    let (Some((first, _)), Some((second, _))) = (it.next(), it.next()) else {
        return Ok(None);
    };
    if first.starts_with(b"--") {
        return Ok(None);
    }
    let Some(name) = field_name(second) else {
        return Ok(None);
    };
    match it.find(|(l, _)| l.is_empty()) {
        Some((_, after)) => Ok(Some(MultipartField {
            name,
            rest: &piece[after..],
        })),
        None => Err(()),
    }
}

/// The fields of a `multipart/form-data` body, or `None` when it is not one, has no field, or
/// cannot be parsed (then the raw body is compared).
pub fn multipart_fields<'a>(
    content_type: &'a [u8],
    body: &'a [u8],
) -> Option<impl Iterator<Item = MultipartField<'a>>> {
    if !contains_ignore_case(content_type, b"multipart/form-data") {
        return None;
    }
    let boundary = content_type_param(content_type, b"boundary")?;
    if !boundary.is_ascii() {
        return None;
    }
    let mut count = 0;
    for piece in pieces(body, boundary) {
        if part(piece).ok()?.is_some() {
            count += 1;
        }
    }
    if count == 0 {
        return None;
    }
    Some(pieces(body, boundary).filter_map(|p| part(p).ok().flatten()))
}

/// How to decode an `application/x-www-form-urlencoded` body with at least one pair, or `None`.
pub fn urlencoded_mode(content_type: &[u8], body: &[u8]) -> Option<TextMode> {
    if !contains_ignore_case(content_type, b"application/x-www-form-urlencoded") {
        return None;
    }
    if !body.split(|&b| b == b'&').any(|p| !p.is_empty()) {
        return None;
    }
    let utf8 = content_type_param(content_type, b"charset")
        .is_some_and(|c| c.eq_ignore_ascii_case(b"utf-8") || c.eq_ignore_ascii_case(b"utf8"));
    Some(if utf8 {
        TextMode::FormUtf8
    } else {
        TextMode::FormLatin1
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(ct: &str, body: &str) -> Option<Vec<(String, String)>> {
        multipart_fields(ct.as_bytes(), body.as_bytes()).map(|it| {
            it.map(|f| {
                let value: Vec<u8> = f.value_lines().flatten().copied().collect();
                assert_eq!(value.len(), f.value_len());
                (
                    String::from_utf8(f.name.to_vec()).unwrap(),
                    String::from_utf8(value).unwrap(),
                )
            })
            .collect()
        })
    }

    #[test]
    fn multipart_values_lose_their_line_breaks() {
        let ct = "multipart/form-data; boundary=B";
        let body = "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nline1\r\nline2\r\n--B\r\nContent-Disposition: form-data; filename=\"f\"; name=\"b\"\r\n\r\nx\r\n--B--\r\n";
        assert_eq!(
            fields(ct, body).unwrap(),
            vec![("a".into(), "line1line2".into()), ("b".into(), "x".into())]
        );
    }

    #[test]
    fn filename_does_not_count_as_a_name() {
        let ct = "multipart/form-data; boundary=B";
        let body = "--B\nContent-Disposition: form-data; filename=\"f\"\n\nx\n--B--\n";
        assert!(fields(ct, body).is_none());
    }

    #[test]
    fn a_part_without_an_empty_line_makes_the_form_unparseable() {
        let ct = "multipart/form-data; boundary=B";
        let body = "--B\nContent-Disposition: form-data; name=\"a\"\nx\n--B--\n";
        assert!(fields(ct, body).is_none());
    }

    #[test]
    fn quoted_boundaries_are_used_verbatim() {
        let ct = "multipart/form-data; boundary=\"B\"";
        let body = "--B\nContent-Disposition: form-data; name=\"a\"\n\nx\n--B--\n";
        assert!(fields(ct, body).is_none());
    }

    #[test]
    fn urlencoded_needs_a_pair_and_reads_the_charset() {
        let ct = b"application/x-www-form-urlencoded";
        assert_eq!(urlencoded_mode(ct, b"&&"), None);
        assert_eq!(urlencoded_mode(ct, b"a"), Some(TextMode::FormLatin1));
        assert_eq!(
            urlencoded_mode(b"Application/X-WWW-Form-Urlencoded; charset=UTF-8", b"a=1"),
            Some(TextMode::FormUtf8)
        );
        assert_eq!(urlencoded_mode(b"text/plain", b"a=1"), None);
    }
}
