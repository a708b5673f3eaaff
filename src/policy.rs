//! The lifetime policy that minting and verifying share: leeway and maximum lifetime.

use chrono::{DateTime, TimeDelta, Utc};

use crate::error::{Error, ErrorKind, Target};
use crate::expiry::{self, human_duration};
use crate::token::Format;

/// The lifetime rules a [`Verifier`](crate::Verifier) applies (and
/// [`Signer::mint`](crate::Signer::mint) the `max_lifetime` of).
///
/// A token is valid while `now < expiry + leeway`, and refused when its expiry lies more than
/// `max_lifetime + leeway` ahead of `now` (no legitimate issuer grants that). Minting refuses an
/// expiry not after `now` or more than `max_lifetime` ahead.
///
/// Built with [`Policy::new`] (or `Default`) and the `with_` setters, so that a later rule is not
/// a breaking change:
///
/// ```
/// use apim_sas::Policy;
/// use chrono::TimeDelta;
///
/// let policy = Policy::new()
///     .with_leeway(TimeDelta::seconds(30))
///     .with_max_lifetime(None); // management tokens may live longer than 30 days
/// assert_eq!(policy.leeway(), TimeDelta::seconds(30));
/// assert_eq!(Policy::default().max_lifetime(), Some(TimeDelta::days(30)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Policy {
    /// Clock skew tolerated after expiry, and beyond the maximum lifetime. Defaults to 60 seconds.
    pub leeway: TimeDelta,
    /// The longest lifetime a token may claim, `None` for no limit. Defaults to 30 days (Azure's
    /// own limit for gateway tokens).
    pub max_lifetime: Option<TimeDelta>,
}

impl Policy {
    /// The default leeway: 60 seconds.
    pub const DEFAULT_LEEWAY: TimeDelta = TimeDelta::seconds(60);
    /// The default maximum lifetime: 30 days.
    pub const DEFAULT_MAX_LIFETIME: TimeDelta = TimeDelta::days(30);

    /// Leeway 60 s, maximum lifetime 30 days.
    pub const fn new() -> Policy {
        Policy {
            leeway: Policy::DEFAULT_LEEWAY,
            max_lifetime: Some(Policy::DEFAULT_MAX_LIFETIME),
        }
    }

    /// This policy with another leeway. Defaults to 60 seconds.
    #[must_use]
    pub const fn with_leeway(mut self, leeway: TimeDelta) -> Policy {
        self.leeway = leeway;
        self
    }

    /// This policy with another maximum lifetime, `None` for no limit. Defaults to 30 days.
    #[must_use]
    pub const fn with_max_lifetime(mut self, max_lifetime: Option<TimeDelta>) -> Policy {
        self.max_lifetime = max_lifetime;
        self
    }

    /// The clock skew tolerated after expiry.
    pub const fn leeway(&self) -> TimeDelta {
        self.leeway
    }

    /// The longest lifetime a token may claim, `None` for no limit.
    pub const fn max_lifetime(&self) -> Option<TimeDelta> {
        self.max_lifetime
    }

    /// The checks [`Signer::mint`](crate::Signer::mint) makes of an expiry, without a key:
    /// floored for `format`, it must be after `now` (`ExpiryInPast`) and at most `max_lifetime`
    /// ahead (`ExpiryTooFar`); outside the years 0001–9999 it is `InvalidExpiry`. Status 400.
    /// Returns the floored expiry.
    pub fn check_mint(
        &self,
        expiry: DateTime<Utc>,
        format: Format,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, Error> {
        expiry::check_range(&expiry)?;
        let floored = format.floor(expiry);
        let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        if floored <= now {
            // An expiry within the current minute floors into the past: say so, or `--ttl 30s`
            // reads as a clock problem.
            let why = if floored < expiry && expiry > now {
                format!(
                    "; the compact form carries whole minutes, so {} floors to the minute; give \
                     a later expiry or the uid form",
                    stamp(expiry)
                )
            } else {
                String::new()
            };
            return Err(Error::request(
                ErrorKind::ExpiryInPast,
                Target::Expiry,
                format!(
                    "expiry: {} is not after now ({}){why}",
                    stamp(floored),
                    stamp(now)
                ),
            ));
        }
        if let Some(max) = self.max_lifetime {
            if nanos(&floored) - nanos(&now) > delta_nanos(max) {
                return Err(Error::request(
                    ErrorKind::ExpiryTooFar,
                    Target::Expiry,
                    format!(
                        "expiry: {} is more than the maximum lifetime ({}) ahead of now ({})",
                        stamp(floored),
                        human_duration(max),
                        stamp(now)
                    ),
                ));
            }
        }
        Ok(floored)
    }

    /// Checks an authentic token's expiry against `now`: `TokenExpired`, then `ExpiryTooFar`.
    pub fn check(&self, expiry: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), Error> {
        // In nanoseconds as i128: exact for every instant and duration chrono holds, with no
        // overflow, and far cheaper than chrono's own subtraction on the hot path.
        let (expiry, now) = (nanos(&expiry), nanos(&now));
        let leeway = delta_nanos(self.leeway);
        if now - expiry >= leeway {
            return Err(Error::token(
                ErrorKind::TokenExpired,
                Target::Expiry,
                "expiry: the token has expired",
            ));
        }
        if let Some(max) = self.max_lifetime {
            if expiry - now > delta_nanos(max) + leeway {
                return Err(Error::token(
                    ErrorKind::ExpiryTooFar,
                    Target::Expiry,
                    "expiry: further ahead than the maximum lifetime allows",
                ));
            }
        }
        Ok(())
    }
}

fn nanos(at: &DateTime<Utc>) -> i128 {
    i128::from(at.timestamp()) * 1_000_000_000 + i128::from(at.timestamp_subsec_nanos())
}

fn delta_nanos(d: TimeDelta) -> i128 {
    i128::from(d.num_seconds()) * 1_000_000_000 + i128::from(d.subsec_nanos())
}

impl Default for Policy {
    fn default() -> Policy {
        Policy::new()
    }
}
