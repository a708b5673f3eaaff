//! Flag values the tool reads itself, so that a bad one is reported with its code
//! (`InvalidExpiry`, see `docs/format.md`) rather than as a usage error.

use apim_sas::chrono::{DateTime, TimeDelta, Utc};
use apim_sas::ErrorKind;

use super::failure::Problem;

fn invalid(flag: &str, what: &str) -> Problem {
    Problem::new(
        ErrorKind::InvalidExpiry,
        "expiry",
        format!("{flag}: {what}"),
    )
}

/// An RFC 3339 instant (any offset, up to nanoseconds), as UTC.
pub(crate) fn instant(flag: &str, text: &str) -> Result<DateTime<Utc>, Problem> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| invalid(flag, "not an RFC 3339 instant, e.g. 2026-04-21T00:44:00Z"))
}

/// A humantime duration: `30d`, `12h`, `90m`, `1d 12h`. Never negative.
pub(crate) fn duration(flag: &str, text: &str) -> Result<TimeDelta, Problem> {
    let text = text.trim();
    if text.starts_with('-') {
        return Err(invalid(
            flag,
            "a duration cannot be negative; give a length of time such as 30d or 12h",
        ));
    }
    let std = humantime::parse_duration(text)
        .map_err(|_| invalid(flag, "not a duration, e.g. 30d, 12h, 90m, \"1d 12h\""))?;
    TimeDelta::from_std(std).map_err(|_| invalid(flag, "duration too long"))
}

/// A duration, or `none` for no limit.
pub(crate) fn limit(flag: &str, text: &str) -> Result<Option<TimeDelta>, Problem> {
    if text.trim().eq_ignore_ascii_case("none") {
        Ok(None)
    } else {
        duration(flag, text).map(Some)
    }
}

/// `at + by`, or `InvalidExpiry` when that leaves the calendar.
pub(crate) fn add(flag: &str, at: DateTime<Utc>, by: TimeDelta) -> Result<DateTime<Utc>, Problem> {
    at.checked_add_signed(by)
        .ok_or_else(|| invalid(flag, "the result is beyond the calendar"))
}

/// Whole seconds from `now` to `at` (negative when past), for `expiresInSeconds`.
pub(crate) fn seconds_until(at: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    at.signed_duration_since(now).num_seconds()
}

/// RFC 3339 in UTC with `Z`, fractions only when there are any.
pub(crate) fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(apim_sas::chrono::SecondsFormat::AutoSi, true)
}
