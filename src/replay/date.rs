//! HTTP dates as mitmproxy's refresh reads and writes them (spec §d.2, §d.4).
//!
//! [`parse_lenient`] is Python's `email.utils.parsedate_tz` + `mktime_tz` (the lenient RFC 822 /
//! 1123 / 850 / asctime reader mitmproxy uses), [`shift`] is `epoch + delta` rounded the way
//! `datetime.fromtimestamp` rounds, and [`write_imf_fixdate`] is `formatdate(usegmt=True)`: always
//! the 29-byte IMF-fixdate `Www, DD Mmm YYYY HH:MM:SS GMT` for years 1–9999.
#![forbid(unsafe_code)]

/// Length of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 §5.6.7) with a 4-digit year.
pub const IMF_FIXDATE_LEN: usize = 29;

const MONTHS: [&[u8]; 24] = [
    b"jan",
    b"feb",
    b"mar",
    b"apr",
    b"may",
    b"jun",
    b"jul",
    b"aug",
    b"sep",
    b"oct",
    b"nov",
    b"dec",
    b"january",
    b"february",
    b"march",
    b"april",
    b"may",
    b"june",
    b"july",
    b"august",
    b"september",
    b"october",
    b"november",
    b"december",
];
const DAY_NAMES: [&[u8]; 7] = [b"mon", b"tue", b"wed", b"thu", b"fri", b"sat", b"sun"];
/// Written day names, indexed by days since 1970-01-01 (a Thursday) modulo 7.
const WRITE_DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
const WRITE_MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Seconds since the Unix epoch of a date written in any form `parsedate_tz` accepts, or `None`
/// (not a date, or a year outside 1–9999, where Python raises).
pub fn parse_lenient(value: &[u8]) -> Option<i64> {
    let mut tokens: [&[u8]; 8] = [b""; 8];
    let mut count = 0;
    for token in value
        .split(|b| b.is_ascii_whitespace())
        .filter(|t| !t.is_empty())
    {
        if count == tokens.len() {
            break; // only the first few matter (at most 1 day name + 5 fields + a split)
        }
        tokens[count] = token;
        count += 1;
    }
    if count == 0 {
        return None;
    }
    // §d.4 step 2: a day name (or anything up to the last comma of the first token) is dropped.
    let first = tokens[0];
    let mut data: [&[u8]; 8] = [b""; 8];
    let mut n;
    if first.ends_with(b",") || DAY_NAMES.iter().any(|d| first.eq_ignore_ascii_case(d)) {
        data[..count - 1].copy_from_slice(&tokens[1..count]);
        n = count - 1;
    } else {
        data[..count].copy_from_slice(&tokens[..count]);
        n = count;
        if let Some(i) = first.iter().rposition(|&b| b == b',') {
            data[0] = &first[i + 1..];
        }
    }
    // Step 3: RFC 850 `15-Nov-94` as one token.
    if n == 3 {
        let mut parts = data[0].split(|&b| b == b'-');
        if let (Some(d), Some(m), Some(y), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        {
            let (t, z) = (data[1], data[2]);
            data[..5].copy_from_slice(&[d, m, y, t, z]);
            n = 5;
        }
    }
    // Step 4: `08:12:31+0100` split into time and zone, or a dummy zone.
    if n == 4 {
        let s = data[3];
        let i = s
            .iter()
            .position(|&b| b == b'+')
            .or_else(|| s.iter().position(|&b| b == b'-'));
        match i {
            Some(i) if i > 0 => {
                data[3] = &s[..i];
                data[4] = &s[i..];
            }
            _ => data[4] = b"",
        }
        n = 5;
    }
    if n < 5 {
        return None;
    }
    let [mut dd, mut mm, mut yy, mut tm, mut tz] = [data[0], data[1], data[2], data[3], data[4]];
    if dd.is_empty() || mm.is_empty() || yy.is_empty() {
        return None;
    }
    let month_of = |m: &[u8]| MONTHS.iter().position(|x| m.eq_ignore_ascii_case(x));
    let month = match month_of(mm) {
        Some(i) => i,
        None => {
            std::mem::swap(&mut dd, &mut mm);
            month_of(mm)?
        }
    } % 12
        + 1;
    dd = dd.strip_suffix(b",").unwrap_or(dd);
    if yy.iter().position(|&b| b == b':').is_some_and(|i| i > 0) {
        std::mem::swap(&mut yy, &mut tm);
    }
    if let Some(y) = yy.strip_suffix(b",") {
        if y.is_empty() {
            return None;
        }
        yy = y;
    }
    if !yy.first().is_some_and(u8::is_ascii_digit) {
        std::mem::swap(&mut yy, &mut tz);
    }
    tm = tm.strip_suffix(b",").unwrap_or(tm);
    let mut hms: [&[u8]; 3] = [b"0"; 3];
    let sep = if tm.contains(&b':') {
        b':'
    } else if tm.contains(&b'.') {
        b'.'
    } else {
        return None;
    };
    let mut pieces = 0;
    for piece in tm.split(|&b| b == sep) {
        if pieces == 3 {
            return None;
        }
        hms[pieces] = piece;
        pieces += 1;
    }
    if pieces < 2 {
        return None;
    }
    let mut year = parse_int(yy)?;
    let day = parse_int(dd)?;
    let (hour, minute, second) = (parse_int(hms[0])?, parse_int(hms[1])?, parse_int(hms[2])?);
    if year < 100 {
        year += if year > 68 { 1900 } else { 2000 };
    }
    let offset = zone_offset(tz);
    if !(1..=9999).contains(&year) {
        return None;
    }
    let days = days_from_civil(year, month as i64, 1) + day - 1;
    let secs = ((days.checked_mul(24)? + hour).checked_mul(60)? + minute).checked_mul(60)? + second;
    secs.checked_sub(offset)
}

/// Python `int()` on an ASCII token: optional sign, decimal digits.
fn parse_int(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 12 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = digits
        .iter()
        .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'));
    Some(if negative { -v } else { v })
}

/// Zone offset in seconds east of UTC (§d.4 step 10); unknown zones mean UTC.
fn zone_offset(tz: &[u8]) -> i64 {
    const NAMED: [(&[u8], i64); 14] = [
        (b"UT", 0),
        (b"UTC", 0),
        (b"GMT", 0),
        (b"Z", 0),
        (b"AST", -400),
        (b"ADT", -300),
        (b"EST", -500),
        (b"EDT", -400),
        (b"CST", -600),
        (b"CDT", -500),
        (b"MST", -700),
        (b"MDT", -600),
        (b"PST", -800),
        (b"PDT", -700),
    ];
    let hhmm = match NAMED.iter().find(|(n, _)| tz.eq_ignore_ascii_case(n)) {
        Some(&(_, v)) => v,
        None => match parse_int(tz) {
            Some(v) => v,
            None => return 0,
        },
    };
    let magnitude = hhmm.abs();
    hhmm.signum() * ((magnitude / 100) * 3600 + (magnitude % 100) * 60)
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (month 1–12, any day).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month 1–12, day 1–31) of a day count from 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, usize, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month as usize, day)
}

/// `epoch + delta` in whole seconds as mitmproxy computes it: the sum rounded to microseconds
/// (half to even), then the fraction dropped towards minus infinity (spec §d.2 step 3).
pub fn shift(epoch: i64, delta: f64) -> i64 {
    WholeShift::of(delta).apply(epoch)
}

/// What [`shift`] adds to a whole-second epoch for one `delta`: every date a refresh writes
/// with that delta depends on `delta` only through this value, so two deltas with equal
/// `WholeShift`s render byte-identical heads (a driver may reuse one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WholeShift(i64);

impl WholeShift {
    /// The shift of `delta` seconds: `floor(delta)`, plus one when the fraction rounds up to a
    /// whole second at microsecond precision. Saturated: a shift near `i64::MAX` moves every
    /// date out of years 1–9999 however it is added.
    pub fn of(delta: f64) -> WholeShift {
        let whole = delta.floor();
        let micros = ((delta - whole) * 1e6).round_ties_even();
        // `whole` is far inside i64 for any real clock; `as` saturates otherwise.
        WholeShift((whole as i64).saturating_add(i64::from(micros >= 1e6)))
    }

    /// `epoch` shifted (saturating rather than wrapping).
    pub fn apply(self, epoch: i64) -> i64 {
        epoch.saturating_add(self.0)
    }
}

/// First and last second of years 1–9999, the instants [`write_imf_fixdate`] can write.
const FORMATTABLE: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;

/// Whether [`write_imf_fixdate`] can write `secs` (its year is within 1–9999).
pub fn formattable(secs: i64) -> bool {
    FORMATTABLE.contains(&secs)
}

/// Writes `secs` as an IMF-fixdate; `false` (and `out` untouched) when the year is outside
/// 1–9999, which mitmproxy cannot format either.
pub fn write_imf_fixdate(secs: i64, out: &mut [u8; IMF_FIXDATE_LEN]) -> bool {
    let days = secs.div_euclid(86_400);
    let in_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    if !(1..=9999).contains(&year) {
        return false;
    }
    let two = |v: i64| [b'0' + (v / 10) as u8, b'0' + (v % 10) as u8];
    out[..3].copy_from_slice(WRITE_DAYS[days.rem_euclid(7) as usize]);
    out[3..5].copy_from_slice(b", ");
    out[5..7].copy_from_slice(&two(day));
    out[7] = b' ';
    out[8..11].copy_from_slice(WRITE_MONTHS[month - 1]);
    out[11] = b' ';
    out[12..14].copy_from_slice(&two(year / 100));
    out[14..16].copy_from_slice(&two(year % 100));
    out[16] = b' ';
    out[17..19].copy_from_slice(&two(in_day / 3600));
    out[19] = b':';
    out[20..22].copy_from_slice(&two(in_day / 60 % 60));
    out[22] = b':';
    out[23..25].copy_from_slice(&two(in_day % 60));
    out[25..].copy_from_slice(b" GMT");
    true
}

/// [`write_imf_fixdate`] through a one-entry cache per thread: refreshed dates are almost all
/// "now", so within one second every replay of every flow writes the same 29 bytes, and only the
/// first formats them.
pub fn write_imf_fixdate_cached(secs: i64, out: &mut [u8; IMF_FIXDATE_LEN]) -> bool {
    use std::cell::Cell;
    thread_local! {
        /// The last second formatted on this thread, and its text (`i64::MIN`: none yet).
        static LAST: Cell<(i64, [u8; IMF_FIXDATE_LEN])> =
            const { Cell::new((i64::MIN, [0; IMF_FIXDATE_LEN])) };
    }
    LAST.with(|last| {
        let (cached, text) = last.get();
        if cached == secs {
            *out = text;
            return true;
        }
        if !write_imf_fixdate(secs, out) {
            return false;
        }
        last.set((secs, *out));
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cached_formatter_writes_what_the_formatter_writes() {
        // Repeats, neighbours and unformattable seconds in between, in an order that makes the
        // cache hit and miss.
        let edge = *FORMATTABLE.end();
        for secs in [
            0,
            0,
            1,
            0,
            1_700_000_000,
            1_700_000_000,
            edge,
            edge + 1,
            edge,
            -1,
            -1,
        ] {
            let (mut a, mut b) = ([0; IMF_FIXDATE_LEN], [0; IMF_FIXDATE_LEN]);
            assert_eq!(
                write_imf_fixdate_cached(secs, &mut a),
                write_imf_fixdate(secs, &mut b),
                "{secs}"
            );
            assert_eq!(a, b, "{secs}");
        }
    }

    fn fmt(secs: i64) -> String {
        let mut out = [0; IMF_FIXDATE_LEN];
        assert!(write_imf_fixdate(secs, &mut out));
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn formattable_instants_are_exactly_the_writable_ones() {
        let mut out = [0; IMF_FIXDATE_LEN];
        for edge in [*FORMATTABLE.start(), *FORMATTABLE.end()] {
            for secs in [edge - 1, edge, edge + 1] {
                assert_eq!(
                    formattable(secs),
                    write_imf_fixdate(secs, &mut out),
                    "{secs}"
                );
            }
        }
        assert_eq!(fmt(*FORMATTABLE.start()), "Mon, 01 Jan 0001 00:00:00 GMT");
        assert_eq!(fmt(*FORMATTABLE.end()), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn every_documented_form_parses_to_the_same_instant() {
        let expected = parse_lenient(b"Tue, 15 Nov 1994 08:12:31 GMT").unwrap();
        assert_eq!(fmt(expected), "Tue, 15 Nov 1994 08:12:31 GMT");
        for form in [
            &b"Tuesday, 15-Nov-94 08:12:31 GMT"[..],
            b"Tue Nov 15 08:12:31 1994",
            b"15 Nov 1994 09:12:31 +0100",
            b"Tue, 15 Nov 1994 03:12:31 EST",
            b"tue, 15 nov 1994 08:12:31",
        ] {
            assert_eq!(
                parse_lenient(form),
                Some(expected),
                "{}",
                String::from_utf8_lossy(form)
            );
        }
        assert_eq!(
            parse_lenient(b"Tue, 15 Nov 94 08:12 GMT"),
            Some(expected - 31)
        );
    }

    #[test]
    fn non_dates_do_not_parse() {
        for bad in [
            &b""[..],
            b"0",
            b"-1",
            b"garbage",
            b"Thu, 31 Dec 2133",
            b"2021-06-09T10:18:14Z",
            b"Fri, 31 Dec 10000 23:59:59 GMT",
        ] {
            assert_eq!(parse_lenient(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn dates_before_1970_round_trip() {
        let secs = parse_lenient(b"Mon, 01 Jan 1601 00:00:00 GMT").unwrap();
        assert!(secs < 0);
        assert_eq!(fmt(secs), "Mon, 01 Jan 1601 00:00:00 GMT");
    }

    #[test]
    fn joined_values_parse_as_their_first_date() {
        let joined = b"Tue, 15 Nov 1994 08:12:31 GMT, Wed, 16 Nov 1994 08:12:31 GMT";
        assert_eq!(
            parse_lenient(joined),
            parse_lenient(b"Tue, 15 Nov 1994 08:12:31 GMT")
        );
    }

    #[test]
    fn minus_zero_zone_and_unknown_zones_mean_utc() {
        let utc = parse_lenient(b"Tue, 15 Nov 1994 08:12:31 GMT");
        assert_eq!(parse_lenient(b"Tue, 15 Nov 1994 08:12:31 -0000"), utc);
        assert_eq!(parse_lenient(b"Tue, 15 Nov 1994 08:12:31 XYZ"), utc);
        assert_eq!(parse_lenient(b"Tue, 15 Nov 1994 08:12:31 +01:00"), utc);
    }

    #[test]
    fn shift_rounds_to_microseconds_then_floors() {
        assert_eq!(shift(100, 3600.7), 3700);
        assert_eq!(shift(100, -0.5), 99);
        assert_eq!(shift(100, 0.999_999_6), 101);
        assert_eq!(shift(100, 0.0), 100);
    }

    #[test]
    fn equal_whole_shifts_shift_every_epoch_alike() {
        // Deltas within one whole second (after microsecond rounding) shift alike; the boundary
        // where the fraction rounds up belongs to the next second.
        assert_eq!(WholeShift::of(3600.1), WholeShift::of(3600.9));
        assert_eq!(WholeShift::of(0.999_999_6), WholeShift::of(1.2));
        assert_ne!(WholeShift::of(0.999_999_4), WholeShift::of(1.0));
        assert_ne!(WholeShift::of(-0.5), WholeShift::of(0.5));
        assert_eq!(WholeShift::of(0.999_999_6).apply(100), 101);
        assert_eq!(WholeShift::of(-0.5).apply(100), 99);
        assert_eq!(WholeShift::of(1e300).apply(5), i64::MAX);
    }

    #[test]
    fn years_past_9999_cannot_be_written() {
        let last = parse_lenient(b"Fri, 31 Dec 9999 23:59:59 GMT").unwrap();
        let mut out = [b'x'; IMF_FIXDATE_LEN];
        assert!(!write_imf_fixdate(last + 1, &mut out));
        assert_eq!(out, [b'x'; IMF_FIXDATE_LEN]);
    }
}
