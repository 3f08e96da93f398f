//! `Set-Cookie` refresh as mitmproxy does it (spec §d.3): a permissive parse, expiry rewrite and
//! re-serialisation, done once at load; serving only overwrites the 29-byte expiry dates.
//!
//! The parser follows mitmproxy's `net/http/cookies.py` (`_read_set_cookie_pairs`): several
//! cookies per field separated by `,`, the `expires` comma heuristic, quoted values with backslash
//! escapes, flag attributes. [`prepare_set_cookie`] returns the re-serialised field with the
//! positions of its expiry dates; [`refresh_set_cookie`] applies a shift (used by tests and tools).
#![forbid(unsafe_code)]

use super::date::{parse_lenient, shift, write_imf_fixdate, IMF_FIXDATE_LEN};

/// One `name[=value]` pair of a cookie; `value == None` is a flag (`Secure`).
type Pair = (Vec<u8>, Option<Vec<u8>>);

/// What refresh does to one `Set-Cookie` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieField {
    /// The field is sent exactly as recorded: a cookie in it has an empty name or value (§d.3.2).
    Unchanged,
    /// The field is sent re-serialised (§d.3.4) as `value`; each `(pos, epoch)` in `dates` is a
    /// 29-byte IMF-fixdate at `value[pos..]` holding `epoch` (seconds), to be shifted when served.
    Rewritten {
        /// The re-serialised field value.
        value: Vec<u8>,
        /// Where the expiry dates are, and the instants they hold.
        dates: Vec<(usize, i64)>,
    },
}

/// Reads up to the first byte in `term`; returns the text and the index of that byte (or one past
/// the end, as Python's `_read_until` does).
fn read_until<'s>(s: &'s [u8], start: usize, term: &[u8]) -> (&'s [u8], usize) {
    if start >= s.len() {
        return (b"", start + 1);
    }
    match s[start..].iter().position(|b| term.contains(b)) {
        Some(i) => (&s[start..start + i], start + i),
        None => (&s[start..], s.len()),
    }
}

/// Reads a quoted string starting at the `"` at `start`, unescaping backslashes.
fn read_quoted(s: &[u8], start: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut escaping = false;
    let mut i = start;
    for (j, &b) in s.iter().enumerate().skip(start + 1) {
        i = j;
        if escaping {
            out.push(b);
            escaping = false;
        } else if b == b'"' {
            break;
        } else if b == b'\\' {
            escaping = true;
        } else {
            out.push(b);
        }
    }
    (out, i + 1)
}

fn read_value(s: &[u8], start: usize, term: &[u8]) -> (Vec<u8>, usize) {
    if start >= s.len() {
        (Vec::new(), start)
    } else if s[start] == b'"' {
        read_quoted(s, start)
    } else {
        let (v, off) = read_until(s, start, term);
        (v.to_vec(), off)
    }
}

/// Splits a `Set-Cookie` value into cookies, each a list of pairs (the first is the cookie).
fn parse(s: &[u8]) -> Vec<Vec<Pair>> {
    let mut cookies = Vec::new();
    let mut pairs: Vec<Pair> = Vec::new();
    let mut off = 0;
    loop {
        let (lhs, next) = read_until(s, off, b";=,");
        off = next;
        let lhs = lhs.trim_ascii_start();
        if off < s.len() && s[off] == b'=' {
            let (mut rhs, next) = read_value(s, off + 1, b";,");
            off = next;
            if lhs.eq_ignore_ascii_case(b"expires") && rhs.len() <= 3 {
                // `Thu, 01 Jan ...`: the comma belongs to the date.
                let (trail, next) = read_value(s, off + 1, b";,");
                off = next;
                rhs.push(b',');
                rhs.extend_from_slice(&trail);
            }
            pairs.push((lhs.to_vec(), Some(rhs)));
        } else if !lhs.is_empty() {
            pairs.push((lhs.to_vec(), None));
        }
        if off < s.len() && s[off] == b',' {
            cookies.push(std::mem::take(&mut pairs));
        }
        off += 1;
        if off >= s.len() {
            break;
        }
    }
    if !pairs.is_empty() || cookies.is_empty() {
        cookies.push(pairs);
    }
    cookies.retain(|c| !c.is_empty());
    cookies
}

/// Whether a value must be quoted when written back: `"`, `,`, `;`, `\` or anything outside
/// `!`..`~` (mitmproxy's `_has_special`).
fn needs_quotes(v: &[u8]) -> bool {
    v.iter()
        .any(|&b| !(b'!'..=b'~').contains(&b) || matches!(b, b'"' | b',' | b';' | b'\\'))
}

fn write_pair(out: &mut Vec<u8>, name: &[u8], value: Option<&[u8]>) {
    out.extend_from_slice(name);
    let Some(v) = value else { return };
    out.push(b'=');
    let special = name.eq_ignore_ascii_case(b"expires") || name.eq_ignore_ascii_case(b"path");
    if !special && needs_quotes(v) {
        out.push(b'"');
        for &b in v {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(v);
    }
}

/// What refresh will do with this `Set-Cookie` field value (spec §d.3).
pub fn prepare_set_cookie(field: &[u8]) -> CookieField {
    let mut cookies = parse(field);
    if cookies
        .iter()
        .any(|c| c[0].0.is_empty() || c[0].1.as_ref().is_none_or(|v| v.is_empty()))
    {
        return CookieField::Unchanged;
    }
    // §d.3.3: the last `expires` decides; its date goes where the first one was.
    let mut epochs: Vec<Option<i64>> = Vec::with_capacity(cookies.len());
    for cookie in &mut cookies {
        let is_expires = |p: &Pair| p.0.eq_ignore_ascii_case(b"expires");
        let last = cookie[1..].iter().rev().find(|p| is_expires(p));
        let Some(last) = last else {
            epochs.push(None);
            continue;
        };
        match parse_lenient(last.1.as_deref().unwrap_or(b"")) {
            Some(epoch) => {
                let first = 1 + cookie[1..]
                    .iter()
                    .position(is_expires)
                    .expect("invariant: an expires attribute was found");
                let mut date = [0; IMF_FIXDATE_LEN];
                if !write_imf_fixdate(epoch, &mut date) {
                    return CookieField::Unchanged;
                }
                cookie[first].1 = Some(date.to_vec());
                let mut i = 0;
                cookie.retain(|p| {
                    i += 1;
                    i - 1 == first || !is_expires(p)
                });
                epochs.push(Some(epoch));
            }
            None => {
                cookie.retain(|p| !is_expires(p));
                epochs.push(None);
            }
        }
    }
    let mut value = Vec::with_capacity(field.len() + 8);
    let mut dates = Vec::new();
    for (n, (cookie, epoch)) in cookies.iter().zip(&epochs).enumerate() {
        if n > 0 {
            value.extend_from_slice(b", ");
        }
        for (k, (name, v)) in cookie.iter().enumerate() {
            if k > 0 {
                value.extend_from_slice(b"; ");
            }
            if let (Some(epoch), true) = (epoch, k > 0 && name.eq_ignore_ascii_case(b"expires")) {
                dates.push((value.len() + name.len() + 1, *epoch));
            }
            write_pair(&mut value, name, v.as_deref());
        }
    }
    CookieField::Rewritten { value, dates }
}

/// The field as mitmproxy's refresh writes it after shifting expiry by `delta` seconds, or `None`
/// where mitmproxy keeps the field unchanged (an empty name or value, or a shifted year outside
/// 1–9999).
pub fn refresh_set_cookie(field: &[u8], delta: f64) -> Option<Vec<u8>> {
    match prepare_set_cookie(field) {
        CookieField::Unchanged => None,
        CookieField::Rewritten { mut value, dates } => {
            for (pos, epoch) in dates {
                let mut date = [0; IMF_FIXDATE_LEN];
                if !write_imf_fixdate(shift(epoch, delta), &mut date) {
                    return None;
                }
                value[pos..pos + IMF_FIXDATE_LEN].copy_from_slice(&date);
            }
            Some(value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refreshed(field: &str, delta: f64) -> Option<String> {
        refresh_set_cookie(field.as_bytes(), delta).map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn expiry_moves_by_the_shift_and_keeps_the_attribute_name() {
        assert_eq!(
            refreshed(
                "rfoo=bar; Domain=reddit.com; expires=Thu, 31 Dec 2133 23:59:59 GMT; Path=/",
                60.0
            )
            .unwrap(),
            "rfoo=bar; Domain=reddit.com; expires=Fri, 01 Jan 2134 00:00:59 GMT; Path=/"
        );
    }

    #[test]
    fn dash_dates_are_rewritten_in_rfc1123_form() {
        assert_eq!(
            refreshed(
                "MOO=BAR; Expires=Tue, 08-Mar-2011 00:20:38 GMT; Path=foo.com; Secure",
                60.0
            )
            .unwrap(),
            "MOO=BAR; Expires=Tue, 08 Mar 2011 00:21:38 GMT; Path=foo.com; Secure"
        );
    }

    #[test]
    fn unparseable_expiry_is_removed() {
        assert_eq!(
            refreshed(
                "rfoo=bar; Domain=reddit.com; expires=Thu, 31 Dec 2133; Path=/",
                60.0
            )
            .unwrap(),
            "rfoo=bar; Domain=reddit.com; Path=/"
        );
        assert_eq!(refreshed("k=v; expires=bogus", 0.0).unwrap(), "k=v");
        assert_eq!(
            refreshed("a=b; expires=2021-06-09T10:18:14Z", 0.0).unwrap(),
            "a=b"
        );
    }

    #[test]
    fn cookies_without_values_leave_the_field_unchanged() {
        assert_eq!(refreshed("foo,bar", 60.0), None);
        assert_eq!(refreshed("=", 0.0), None);
        assert_eq!(
            refreshed("foo=; Expires=Thu, 01 Jan 1970 00:00:00 GMT", 60.0),
            None
        );
        assert_eq!(
            refreshed("a=b; Expires=Thursday, 31-Dec-37 23:59:59 GMT", 60.0),
            None
        );
    }

    #[test]
    fn odd_names_and_empty_fields_survive() {
        assert_eq!(refreshed(">=A", 0.0).unwrap(), ">=A");
        assert_eq!(refreshed("foo:bar=bla", 0.0).unwrap(), "foo:bar=bla");
        assert_eq!(refreshed("foo/bar=bla", 0.0).unwrap(), "foo/bar=bla");
        assert_eq!(refreshed("", 0.0).unwrap(), "");
    }

    #[test]
    fn parse_splits_cookies_on_commas_but_not_inside_expiry_dates() {
        assert_eq!(parse(b"foo=bar, doo=dar").len(), 2);
        let two = parse(b"foo=bar; path=/, doo=dar; roo=rar; zoo=zar");
        assert_eq!(two.len(), 2);
        assert_eq!(two[0][1], (b"path".to_vec(), Some(b"/".to_vec())));
        assert_eq!(two[1].len(), 3);
        let one = parse(b"foo=bar; expires=Mon, 24 Aug 2133");
        assert_eq!(one.len(), 1);
        assert_eq!(one[0][1].1.as_deref(), Some(&b"Mon, 24 Aug 2133"[..]));
        let full = parse(b"foo=bar; expires=Mon, 24 Aug 2133 00:00:00 GMT, doo=dar");
        assert_eq!(full.len(), 2);
        assert_eq!(
            full[0][1].1.as_deref(),
            Some(&b"Mon, 24 Aug 2133 00:00:00 GMT"[..])
        );
        let repeated = parse(b"one=uno; foo=bar; foo=baz");
        assert_eq!(repeated.len(), 1);
        assert_eq!(repeated[0].len(), 3);
        assert_eq!(parse(b"one=un ")[0][0].1.as_deref(), Some(&b"un "[..]));
        assert_eq!(refreshed("one=un ", 0.0).unwrap(), "one=\"un \"");
        assert_eq!(parse(b"one=uno; foo")[0][1], (b"foo".to_vec(), None));
    }

    #[test]
    fn quoted_values_are_unescaped() {
        assert_eq!(
            parse(br#"one="uno"; two="\due""#)[0][1].1.as_deref(),
            Some(&b"due"[..])
        );
        assert_eq!(
            parse(br#"one="un\"o""#)[0][0].1.as_deref(),
            Some(&b"un\"o"[..])
        );
        let comma = parse(br#"one="uno,due""#);
        assert_eq!(comma.len(), 1);
        assert_eq!(comma[0][0].1.as_deref(), Some(&b"uno,due"[..]));
    }

    #[test]
    fn reserialisation_normalises_syntax_like_mitmproxy() {
        let cases = [
            ("foo=bar;Path=/;HttpOnly", "foo=bar; Path=/; HttpOnly"),
            ("a=\"b\"; Path=/", "a=b; Path=/"),
            ("a=b c", "a=\"b c\""),
            ("l=v ; Domain= x.com", "l=\"v \"; Domain=\" x.com\""),
            ("j={\"a\":1}", "j=\"{\\\"a\\\":1}\""),
            ("x=1; Comment=hello world", "x=1; Comment=\"hello world\""),
            ("x=1; path=/x ", "x=1; path=/x "),
        ];
        for (input, expected) in cases {
            assert_eq!(refreshed(input, 0.0).unwrap(), expected, "{input}");
        }
    }

    #[test]
    fn last_expiry_wins_at_the_first_position_and_max_age_is_untouched() {
        assert_eq!(
            refreshed(
                "c=d;path=/x ; Expires=Tue, 15-Nov-1994 08:12:31 GMT; expires=Wed, 16-Nov-1994 08:12:31 GMT",
                3600.7
            )
            .unwrap(),
            "c=d; path=/x ; Expires=Wed, 16 Nov 1994 09:12:31 GMT"
        );
        assert_eq!(
            refreshed(
                "a=\"b\"; Expires=Tue, 15-Nov-1994 08:12:31 GMT; Max-Age=60",
                22.0
            )
            .unwrap(),
            "a=b; Expires=Tue, 15 Nov 1994 08:12:53 GMT; Max-Age=60"
        );
        assert_eq!(
            refreshed("a=b; Expires=Wed, 09 Jun 2021 10:18:14 +0200", 3600.0).unwrap(),
            "a=b; Expires=Wed, 09 Jun 2021 09:18:14 GMT"
        );
    }

    #[test]
    fn expiry_shifted_past_9999_leaves_the_field_unchanged() {
        assert_eq!(
            refreshed("a=b; Expires=Fri, 31 Dec 9999 23:59:59 GMT", 1.0),
            None
        );
    }
}
