//! A caching token source for clients that present tokens.

use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};

use crate::error::{Error, ErrorKind, Target};
use crate::expiry::human_duration;
use crate::policy::Policy;
use crate::sign::Signer;
use crate::token::{Format, Token};

/// Hands out the same token until its remaining lifetime falls below a margin, then mints a
/// fresh one. Thread-safe through `&self`.
///
/// Each fresh token expires `lifetime` after the `now` it was minted at (floored for the form),
/// and is minted with the default [`Policy`] unless [`TokenSource::with_policy`] says otherwise,
/// so a lifetime over 30 days is refused with `ExpiryTooFar` at the first call. A margin at or
/// above the lifetime means a fresh token on every call. A lifetime that would carry the expiry
/// past the last instant chrono can hold is refused with `InvalidExpiry`, never a panic.
///
/// ```
/// use apim_sas::{Format, GatewayKey, Signer, TokenSource};
/// use chrono::{TimeDelta, TimeZone, Utc};
///
/// let signer = Signer::new("gw1", &GatewayKey::new("sample-key-do-not-use")?)?;
/// let source = TokenSource::new(signer, Format::Compact, TimeDelta::days(29), TimeDelta::days(1))?;
/// let now = Utc.with_ymd_and_hms(2026, 4, 21, 0, 0, 0).unwrap();
/// let first = source.token(now)?;
/// assert_eq!(source.token(now + TimeDelta::days(27))?, first); // 2 days left: kept
/// assert_ne!(source.token(now + TimeDelta::days(28) + TimeDelta::minutes(1))?, first); // renewed
/// # Ok::<(), apim_sas::Error>(())
/// ```
#[derive(Debug)]
pub struct TokenSource {
    signer: Signer,
    format: Format,
    lifetime: TimeDelta,
    margin: TimeDelta,
    policy: Policy,
    current: Mutex<Option<Token>>,
}

impl TokenSource {
    /// A source minting `format` tokens that live `lifetime`, renewed when less than `margin`
    /// remains.
    ///
    /// Refuses a lifetime that is not positive, or a negative margin (which would hand out
    /// tokens already expired), with `InvalidExpiry` (status 400).
    ///
    /// ```
    /// use apim_sas::{Format, GatewayKey, Signer, TokenSource};
    /// use chrono::TimeDelta;
    ///
    /// let signer = Signer::new("gw1", &GatewayKey::new("sample-key-do-not-use")?)?;
    /// let err = TokenSource::new(signer, Format::Uid, TimeDelta::zero(), TimeDelta::zero());
    /// assert_eq!(err.unwrap_err().message(), "expiry: a token's lifetime must be positive, not 0s");
    /// # Ok::<(), apim_sas::Error>(())
    /// ```
    pub fn new(
        signer: Signer,
        format: Format,
        lifetime: TimeDelta,
        margin: TimeDelta,
    ) -> Result<TokenSource, Error> {
        if lifetime <= TimeDelta::zero() {
            return Err(Error::request(
                ErrorKind::InvalidExpiry,
                Target::Expiry,
                format!(
                    "expiry: a token's lifetime must be positive, not {}",
                    signed(lifetime)
                ),
            ));
        }
        if margin < TimeDelta::zero() {
            return Err(Error::request(
                ErrorKind::InvalidExpiry,
                Target::Expiry,
                format!(
                    "expiry: the renewal margin must not be negative, not {} \
                     (it would hand out expired tokens)",
                    signed(margin)
                ),
            ));
        }
        Ok(TokenSource {
            signer,
            format,
            lifetime,
            margin,
            policy: Policy::default(),
            current: Mutex::new(None),
        })
    }

    /// Mints under `policy` instead of the default (to lift the 30-day cap, say).
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// The current token, minting a fresh one when less than the margin remains at `now`.
    pub fn token(&self, now: DateTime<Utc>) -> Result<Token, Error> {
        // A poisoned lock only means another thread panicked mid-call; the cached value is
        // still a whole token or none.
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(token) = current.as_ref() {
            if token.expiry().signed_duration_since(now) >= self.margin {
                return Ok(token.clone());
            }
        }
        let Some(expiry) = now.checked_add_signed(self.lifetime) else {
            return Err(Error::request(
                ErrorKind::InvalidExpiry,
                Target::Expiry,
                format!(
                    "expiry: a lifetime of {} from now lies beyond the last instant that can be \
                     represented",
                    human_duration(self.lifetime)
                ),
            ));
        };
        let fresh = self.signer.mint(expiry, self.format, now, &self.policy)?;
        *current = Some(fresh.clone());
        Ok(fresh)
    }
}

/// A duration as `human_duration` writes it, with a minus sign when negative (and in
/// nanoseconds when under a second, which `human_duration` would show as `0s`).
fn signed(d: TimeDelta) -> String {
    let sign = if d < TimeDelta::zero() { "-" } else { "" };
    if d.num_seconds() == 0 && !d.is_zero() {
        format!("{sign}{}ns", d.subsec_nanos().unsigned_abs())
    } else {
        format!("{sign}{}", human_duration(d))
    }
}
