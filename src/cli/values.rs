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
    // Duration flags take values that start with '-' (so that `--ttl -1d` is answered here, not
    // by clap), which also lets them swallow the next flag when their value is forgotten.
    if text.starts_with("--") {
        return Err(invalid(
            flag,
            &format!("needs a duration such as 30d or 12h, but got the flag {text}"),
        ));
    }
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

/// A token's expiry as every output shows it: RFC 3339 in UTC with `Z`, and fractional seconds
/// only when there are any, then as 7 digits (100 ns ticks), exactly as a uid token's `ex` field
/// carries them: `2026-12-13T02:40:40.7190000Z`, `2026-04-28T00:00:00Z`. Token expiries are
/// whole 100 ns ticks, so nothing is lost; finer digits of other instants are cut.
pub(crate) fn rfc3339(at: DateTime<Utc>) -> String {
    use apim_sas::chrono::Datelike;
    if !(0..=9999).contains(&at.year()) {
        // Not a token's expiry (years 0001–9999): chrono's own spelling of far instants.
        let whole = at.format("%Y-%m-%dT%H:%M:%S");
        return match at.timestamp_subsec_nanos() / 100 {
            0 => format!("{whole}Z"),
            ticks => format!("{whole}.{ticks:07}Z"),
        };
    }
    let mut out = Vec::with_capacity(28);
    apim_sas::push_rfc3339(&mut out, at);
    String::from_utf8(out).unwrap_or_default()
}

/// Free text that offers a list of values to `--help` and shell completion without enforcing
/// it: the command reads the value itself, so that a bad one is reported with its code
/// (`InvalidKeyType` for `--key-type tertiary`), in JSON under `--output json`, not as a clap
/// usage error. (clap's `PossibleValuesParser` would refuse it before the command runs.)
#[derive(Debug, Clone, Copy)]
pub(crate) struct Offered(&'static [&'static str]);

/// The key types `--key-type` offers; `KeyType::from_str` decides.
pub(crate) const KEY_TYPES: Offered = Offered(&["primary", "secondary"]);

impl clap::builder::TypedValueParser for Offered {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        clap::builder::StringValueParser::new().parse_ref(cmd, arg, value)
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            self.0
                .iter()
                .copied()
                .map(clap::builder::PossibleValue::new),
        ))
    }
}

#[cfg(test)]
mod rfc3339_tests {
    use super::*;
    use apim_sas::chrono::TimeZone;

    /// The hand-written spelling is chrono's, 7 fraction digits when there are any.
    #[test]
    fn push_rfc3339_is_chronos_spelling() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Years 0001–9999, ticks of 100 ns, whole seconds and whole minutes.
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
            apim_sas::push_rfc3339(&mut ours, at);
            assert_eq!(String::from_utf8(ours).unwrap(), expected);
            assert_eq!(rfc3339(at), expected);
        }
    }
}
