//! Time forms: .NET's round-trip "O" form, the compact minute form, and flooring.
//!
//! - O form: `yyyy-MM-ddTHH:mm:ss.fffffffZ`, always 7 fractional digits (100 ns ticks), UTC,
//!   what the signature covers (`docs/format.md`, section 2).
//! - Compact form: `yyyyMMddHHmm`, whole minutes.
//!
//! Years 0001–9999 only (the range of .NET's `DateTime`); the calendar is the real one
//! (`2027-02-29` does not exist, `2028-02-29` does). There are no leap seconds: seconds run
//! 00–59. Parsing and formatting are hand-written over fixed byte positions because both sit on
//! the verification hot path; chrono only validates the calendar and holds the instant.

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Timelike, Utc};

use crate::error::{Error, ErrorKind, Target};

/// Length of the O form, `yyyy-MM-ddTHH:mm:ss.fffffffZ`.
pub(crate) const O_LEN: usize = 28;
/// Length of the compact form, `yyyyMMddHHmm`.
pub(crate) const COMPACT_LEN: usize = 12;

/// An expiry in the O form, as the bytes that get signed.
pub(crate) type OForm = [u8; O_LEN];

const NANOS_PER_TICK: u32 = 100;

fn malformed(message: &'static str) -> Error {
    Error::token(ErrorKind::MalformedExpiry, Target::Expiry, message)
}

/// Reads `N` ASCII digits at `at`; `None` when any byte is not `0`–`9`.
#[inline]
fn digits(bytes: &[u8], at: usize, n: usize) -> Option<u32> {
    let field = bytes.get(at..at + n)?;
    let mut value = 0u32;
    for &b in field {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        value = value * 10 + u32::from(d);
    }
    Some(value)
}

/// Validates the calendar fields and builds the instant.
#[inline]
fn instant(
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
) -> Result<DateTime<Utc>, Error> {
    if year == 0 {
        return Err(malformed(
            "expiry: year 0000 does not exist (years run 0001-9999)",
        ));
    }
    if !(1..=12).contains(&month) {
        return Err(malformed("expiry: month must be 01-12"));
    }
    if hour > 23 {
        return Err(malformed("expiry: hour must be 00-23"));
    }
    if minute > 59 {
        return Err(malformed("expiry: minute must be 00-59"));
    }
    if second > 59 {
        return Err(malformed("expiry: second must be 00-59 (no leap seconds)"));
    }
    // year <= 9999 by construction (four digits), so the cast cannot wrap.
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)
        .ok_or_else(|| malformed("expiry: that day does not exist in that month"))?;
    let time = date
        .and_hms_nano_opt(hour, minute, second, nanos)
        .ok_or_else(|| malformed("expiry: not a real instant"))?;
    Ok(time.and_utc())
}

/// Parses the compact form `yyyyMMddHHmm` (exactly 12 ASCII digits, a real UTC minute).
///
/// Returns the instant and its O form, the bytes that were signed.
#[inline]
pub(crate) fn parse_compact(field: &[u8]) -> Result<(DateTime<Utc>, OForm), Error> {
    const SHAPE: &str = "expiry: the compact form is exactly 12 digits, yyyyMMddHHmm";
    let Ok(f) = <&[u8; COMPACT_LEN]>::try_from(field) else {
        return Err(malformed(SHAPE));
    };
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute)) = (
        digits(f, 0, 4),
        digits(f, 4, 2),
        digits(f, 6, 2),
        digits(f, 8, 2),
        digits(f, 10, 2),
    ) else {
        return Err(malformed(SHAPE));
    };
    let at = instant(year, month, day, hour, minute, 0, 0)?;
    // Built whole, not patched in place: the caller reads it back in wide loads.
    #[rustfmt::skip]
    let o: OForm = [
        f[0], f[1], f[2], f[3], b'-', f[4], f[5], b'-', f[6], f[7], b'T', f[8], f[9], b':',
        f[10], f[11], b':', b'0', b'0', b'.', b'0', b'0', b'0', b'0', b'0', b'0', b'0', b'Z',
    ];
    Ok((at, o))
}

/// Parses the O form `yyyy-MM-ddTHH:mm:ss.fffffffZ`: exactly that spelling, `Z` only.
#[inline]
pub(crate) fn parse_o(field: &[u8]) -> Result<(DateTime<Utc>, OForm), Error> {
    const SHAPE: &str = "expiry: the uid form's expiry is exactly yyyy-MM-ddTHH:mm:ss.fffffffZ";
    let Ok(o) = OForm::try_from(field) else {
        return Err(malformed(SHAPE));
    };
    if o[4] != b'-'
        || o[7] != b'-'
        || o[10] != b'T'
        || o[13] != b':'
        || o[16] != b':'
        || o[19] != b'.'
        || o[27] != b'Z'
    {
        return Err(malformed(SHAPE));
    }
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second), Some(ticks)) = (
        digits(&o, 0, 4),
        digits(&o, 5, 2),
        digits(&o, 8, 2),
        digits(&o, 11, 2),
        digits(&o, 14, 2),
        digits(&o, 17, 2),
        digits(&o, 20, 7),
    ) else {
        return Err(malformed(SHAPE));
    };
    let at = instant(
        year,
        month,
        day,
        hour,
        minute,
        second,
        ticks * NANOS_PER_TICK,
    )?;
    Ok((at, o))
}

/// The nanoseconds within the second, with chrono's leap-second representation
/// (`>= 1_000_000_000`) held at the last tick of the second: .NET has no leap seconds.
fn nanos_of(at: &DateTime<Utc>) -> u32 {
    at.nanosecond().min(999_999_999)
}

/// Floors to the 100 ns tick the O form can carry.
pub(crate) fn floor_to_tick(at: DateTime<Utc>) -> DateTime<Utc> {
    let nanos = nanos_of(&at);
    // On the naive UTC value: `DateTime<Utc>`'s own `with_*` redo the offset arithmetic.
    at.naive_utc()
        .with_nanosecond(nanos - nanos % NANOS_PER_TICK)
        .map_or(at, |t| t.and_utc())
}

/// Floors to the whole minute the compact form can carry.
pub(crate) fn floor_to_minute(at: DateTime<Utc>) -> DateTime<Utc> {
    at.naive_utc()
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .map_or(at, |t| t.and_utc())
}

/// Checks the year is representable (0001–9999), for instants supplied by callers.
pub(crate) fn check_range(at: &DateTime<Utc>) -> Result<(), Error> {
    let year = at.naive_utc().year();
    if (1..=9999).contains(&year) {
        Ok(())
    } else {
        Err(Error::request(
            ErrorKind::InvalidExpiry,
            Target::Expiry,
            format!("expiry: year {year} is outside 0001-9999, the range a token can carry"),
        ))
    }
}

fn put(buf: &mut [u8], at: usize, width: usize, mut value: u32) {
    for i in (at..at + width).rev() {
        if let Some(slot) = buf.get_mut(i) {
            *slot = b'0' + (value % 10) as u8;
        }
        value /= 10;
    }
}

/// Writes the O form of `at` (which must be in range and already floored to the tick).
pub(crate) fn to_o_form(at: &DateTime<Utc>) -> OForm {
    // The naive UTC view once: `DateTime<Utc>`'s own accessors each redo the offset arithmetic.
    let t = at.naive_utc();
    let mut o: OForm = *b"0000-00-00T00:00:00.0000000Z";
    put(&mut o, 0, 4, t.year().clamp(0, 9999) as u32);
    put(&mut o, 5, 2, t.month());
    put(&mut o, 8, 2, t.day());
    put(&mut o, 11, 2, t.hour());
    put(&mut o, 14, 2, t.minute());
    put(&mut o, 17, 2, t.second());
    put(&mut o, 20, 7, nanos_of(at) / NANOS_PER_TICK);
    o
}

/// The compact form `yyyyMMddHHmm` of an O form (of a whole minute): its digits, read back.
pub(crate) fn compact_of(o: &OForm) -> [u8; COMPACT_LEN] {
    #[rustfmt::skip]
    let c = [o[0], o[1], o[2], o[3], o[5], o[6], o[8], o[9], o[11], o[12], o[14], o[15]];
    c
}

/// The O form of an instant as text, floored to 100 ns, e.g. `2019-04-21T00:44:00.0000000Z`.
///
/// This is exactly what a uid token carries in `ex` and what every signature covers.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// let at = Utc.with_ymd_and_hms(2019, 4, 21, 0, 44, 0).unwrap();
/// assert_eq!(apim_sas::o_form(at)?, "2019-04-21T00:44:00.0000000Z");
/// # Ok::<(), apim_sas::Error>(())
/// ```
pub fn o_form(at: DateTime<Utc>) -> Result<String, Error> {
    check_range(&at)?;
    let o = to_o_form(&floor_to_tick(at));
    Ok(o.iter().map(|&b| char::from(b)).collect())
}

/// A short human form of a duration's size: its largest unit and the next one, `30d`,
/// `29d 23h`, `1h 30m`, `45s`. The sign is the caller's to word ("in …", "… ago").
///
/// ```
/// use apim_sas::human_duration;
/// use chrono::TimeDelta;
///
/// assert_eq!(human_duration(TimeDelta::days(30)), "30d");
/// assert_eq!(human_duration(TimeDelta::days(30) - TimeDelta::seconds(1)), "29d 23h");
/// assert_eq!(human_duration(TimeDelta::seconds(-90)), "1m 30s");
/// assert_eq!(human_duration(TimeDelta::zero()), "0s");
/// ```
pub fn human_duration(d: TimeDelta) -> String {
    let secs = d.num_seconds().unsigned_abs();
    let units = [
        (secs / 86_400, "d"),
        (secs / 3_600 % 24, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
    ];
    let Some(first) = units.iter().position(|(n, _)| *n != 0) else {
        return "0s".to_owned();
    };
    units
        .iter()
        .skip(first)
        .take(2)
        .filter(|(n, _)| *n != 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Appends `at` as RFC 3339 UTC: `YYYY-MM-DDTHH:MM:SSZ`, with `.fffffff` before the `Z` when it
/// has 100 ns ticks: the spelling of every expiry the command prints, of `serve`'s
/// `X-Apim-Token-Expiry` and of the nginx module's `$apim_sas_token_expiry`. By hand, for years
/// 0000–9999 (a token's): chrono's formatter costs a noticeable share of an answer.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// let mut out = Vec::new();
/// apim_sas::push_rfc3339(&mut out, Utc.with_ymd_and_hms(2026, 5, 20, 0, 44, 0).unwrap());
/// assert_eq!(out, b"2026-05-20T00:44:00Z");
/// ```
pub fn push_rfc3339(out: &mut Vec<u8>, at: DateTime<Utc>) {
    let nanos = at.nanosecond();
    let at = at.naive_utc();
    let pad = |out: &mut Vec<u8>, n: u32, width: usize| {
        let mut digits = [b'0'; 9];
        let mut n = n;
        for slot in digits.iter_mut().take(width).rev() {
            *slot = b'0' + (n % 10) as u8;
            n /= 10;
        }
        out.extend(digits.iter().take(width));
    };
    pad(out, u32::try_from(at.year().clamp(0, 9999)).unwrap_or(0), 4);
    out.push(b'-');
    pad(out, at.month(), 2);
    out.push(b'-');
    pad(out, at.day(), 2);
    out.push(b'T');
    pad(out, at.hour(), 2);
    out.push(b':');
    pad(out, at.minute(), 2);
    out.push(b':');
    pad(out, at.second(), 2);
    if nanos / 100 != 0 {
        out.push(b'.');
        pad(out, nanos / 100, 7);
    }
    out.push(b'Z');
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn compact_round_trip() {
        let (at, o) = parse_compact(b"201904210044").unwrap();
        assert_eq!(at, Utc.with_ymd_and_hms(2019, 4, 21, 0, 44, 0).unwrap());
        assert_eq!(&o, b"2019-04-21T00:44:00.0000000Z");
        assert_eq!(&compact_of(&o), b"201904210044");
        assert_eq!(to_o_form(&at), o);
    }

    #[test]
    fn o_round_trip_keeps_ticks() {
        let (at, o) = parse_o(b"2026-12-10T18:04:18.7078265Z").unwrap();
        assert_eq!(at.nanosecond(), 707_826_500);
        assert_eq!(to_o_form(&at), o);
    }

    #[test]
    fn calendar_is_real() {
        for bad in [
            &b"202613010000"[..],
            b"202602300000",
            b"202702290000",
            b"202601012400",
            b"202601010060",
            b"000001010000",
            b"202600010000",
            b"202601000000",
            b"20260101000",
            b"2026010100000",
            b"+02601010000",
            b"2026010100a0",
        ] {
            let err = parse_compact(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::MalformedExpiry, "{bad:?}");
        }
        assert!(parse_compact(b"202802292359").is_ok());
        assert!(parse_compact(b"000101010000").is_ok());
        assert!(parse_compact(b"999912312359").is_ok());
    }

    #[test]
    fn o_form_is_exact() {
        for bad in [
            &b"2026-01-01T00:00:60.0000000Z"[..],
            b"2026-01-01T00:00:00.000000Z",
            b"2026-01-01T00:00:00.00000000Z",
            b"2026-01-01T00:00:00.0000000+00:00",
            b"2026-01-01 00:00:00.0000000Z",
            b"2026-01-01T00:00:00.0000000z",
            b"2026-01-01t00:00:00.0000000Z",
            b"2026-02-29T00:00:00.0000000Z",
        ] {
            assert_eq!(parse_o(bad).unwrap_err().kind(), ErrorKind::MalformedExpiry);
        }
    }

    #[test]
    fn flooring() {
        let at = Utc
            .with_ymd_and_hms(2026, 12, 31, 23, 59, 59)
            .unwrap()
            .with_nanosecond(999_999_999)
            .unwrap();
        assert_eq!(
            &to_o_form(&floor_to_tick(at)),
            b"2026-12-31T23:59:59.9999999Z"
        );
        assert_eq!(
            &compact_of(&to_o_form(&floor_to_minute(at))),
            b"202612312359"
        );
    }
}

#[cfg(test)]
mod rfc3339_tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn push_rfc3339_is_chronos_spelling() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let secs = (seed % 315_537_897_600) as i64 - 62_135_596_800;
            let ticks = match seed >> 60 {
                0..=5 => 0,
                _ => ((seed >> 20) % 10_000_000) as u32,
            };
            let at = Utc.timestamp_opt(secs, ticks * 100).unwrap();
            let whole = at.format("%Y-%m-%dT%H:%M:%S");
            let expected = match ticks {
                0 => format!("{whole}Z"),
                t => format!("{whole}.{t:07}Z"),
            };
            let mut ours = Vec::new();
            push_rfc3339(&mut ours, at);
            assert_eq!(String::from_utf8(ours).unwrap(), expected);
        }
    }
}
