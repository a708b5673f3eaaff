//! Verification: the [`Verifier`] keystore and the [`Verified`] result.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use hmac::Mac;

use crate::cache::{Cache, Verdict};
use crate::error::{Error, ErrorKind, Op, Target};
use crate::key::{GatewayKey, KeyType, KeyedMac};
use crate::policy::Policy;
use crate::sign::{check_id_for, mac_over};
use crate::token::{Format, UntrustedToken};

/// The keyed states of one gateway's two keys, computed at insert.
///
/// Each state is boxed: the map moves its entries whenever it grows and frees the old table
/// unwiped, so the entries hold pointers, never the states (see `GatewayKey`'s "Key hygiene").
/// A box's state is wiped when the box is dropped.
#[derive(Clone, Default)]
struct Gateway {
    primary: Option<Box<KeyedMac>>,
    secondary: Option<Box<KeyedMac>>,
}

/// Verifies tokens against the primary and secondary keys of many gateways.
///
/// Keys are turned into HMAC states once, at [`insert`](Verifier::insert); verifying takes
/// `&self`, allocates nothing on the success path, and costs two SHA-512 compressions per key
/// tried. The order of checks is fixed (`docs/format.md`, §3 Validity): parse → gateway (`GatewayNotExist`) →
/// signature (`SignatureMismatch`, primary then secondary, compared in constant time by the
/// `hmac` crate) → lifetime (`TokenExpired`, `ExpiryTooFar`). A lifetime code therefore
/// implies the token is authentic.
///
/// ```
/// use apim_sas::{Format, GatewayKey, KeyType, Policy, Signer, Verifier};
/// use chrono::{TimeDelta, TimeZone, Utc};
///
/// let old = GatewayKey::new("old-sample-key")?;
/// let new = GatewayKey::new("new-sample-key")?;
/// let mut verifier = Verifier::new(Policy::default());
/// verifier.insert("gw1", KeyType::Primary, &new)?;
/// verifier.insert("gw1", KeyType::Secondary, &old)?;
///
/// let now = Utc.with_ymd_and_hms(2026, 4, 21, 0, 0, 0).unwrap();
/// let token = Signer::new("gw1", &old)?.sign(now + TimeDelta::days(7), Format::Compact)?;
/// let verified = verifier.verify(&token.to_string(), now)?;
/// assert_eq!((verified.id(), verified.key_type()), ("gw1", KeyType::Secondary));
/// # Ok::<(), apim_sas::Error>(())
/// ```
#[derive(Default)]
pub struct Verifier {
    policy: Policy,
    // foldhash: a fast seeded hash. Ids in the map are the operator's, never an attacker's, so
    // a lookup of a hostile id only ever probes the operator's own entries.
    gateways: HashMap<Box<str>, Gateway, foldhash::fast::RandomState>,
    cache: CacheSetting,
}

/// The verdict cache, as [`Verifier::with_cache`] set it.
#[derive(Default)]
enum CacheSetting {
    /// Never set: users such as the tower layer may choose a default.
    #[default]
    Unset,
    /// Set to 0: no cache.
    Off,
    On(Box<Cache>),
}

impl CacheSetting {
    /// Forgets every verdict, keeping the table: no verdict outlives the keys that gave it.
    fn clear(&mut self) {
        if let CacheSetting::On(cache) = self {
            cache.clear();
        }
    }

    /// The same setting with a cache of its own, empty (for a clone).
    fn emptied(&self) -> CacheSetting {
        match self {
            CacheSetting::Unset => CacheSetting::Unset,
            CacheSetting::Off => CacheSetting::Off,
            CacheSetting::On(cache) => CacheSetting::On(Box::new(Cache::new(cache.capacity()))),
        }
    }
}

/// A clone holds the same keys and policy, and a cache of the same size that starts empty.
impl Clone for Verifier {
    fn clone(&self) -> Verifier {
        Verifier {
            policy: self.policy,
            gateways: self.gateways.clone(),
            cache: self.cache.emptied(),
        }
    }
}

impl Verifier {
    /// An empty verifier applying `policy`.
    pub fn new(policy: Policy) -> Verifier {
        Verifier {
            policy,
            gateways: HashMap::default(),
            cache: CacheSetting::Unset,
        }
    }

    /// The same verifier with a cache of the verdicts of up to `capacity` tokens (0: no cache):
    /// a token whose exact bytes verified before skips the HMAC, which is most of what verifying
    /// costs, as a gateway sees the same token on every request of a client.
    ///
    /// - Every use still checks the token's lifetime (expiry, leeway, maximum lifetime) against
    ///   `now`: a cached token that has expired is `TokenExpired`, as it would be uncached.
    /// - Only tokens that verified are stored: a forgery, however often presented, pays the HMAC
    ///   and is refused. Lookups hash the token with a key of the cache's own and compare the
    ///   whole token in constant time, so a forgery's time says nothing of how close it came.
    /// - Its memory is fixed by `capacity` (rounded up to a power of two, 320 bytes a token)
    ///   and never grows; a new token takes the place of the one its slot held. Tokens of more
    ///   than 288 bytes are verified without it.
    /// - It is the verifier's own: [`insert`](Verifier::insert) and
    ///   [`remove`](Verifier::remove) empty it, and a new verifier (a key rotation) or a clone
    ///   starts empty, so no verdict outlives the keys that gave it. Verifying stays `&self`,
    ///   `Send + Sync`, without a lock held across the HMAC; threads reading the same token do
    ///   not contend.
    /// - Cached tokens are as secret as keys: wiped when the verifier is dropped, never shown by
    ///   `Debug`.
    ///
    /// The tower layer gives a verifier without this setting a cache of
    /// [`DEFAULT_CACHE_CAPACITY`](Verifier::DEFAULT_CACHE_CAPACITY) tokens.
    ///
    /// ```
    /// use apim_sas::{Format, GatewayKey, KeyType, Policy, Signer, Verifier};
    /// use chrono::{TimeDelta, TimeZone, Utc};
    ///
    /// let key = GatewayKey::new("sample-key")?;
    /// let mut verifier = Verifier::new(Policy::default());
    /// verifier.insert("gw1", KeyType::Primary, &key)?;
    /// let verifier = verifier.with_cache(1024);
    ///
    /// let now = Utc.with_ymd_and_hms(2026, 4, 21, 0, 0, 0).unwrap();
    /// let token = Signer::new("gw1", &key)?.sign(now + TimeDelta::days(7), Format::Compact)?;
    /// let token = token.to_string();
    /// assert_eq!(verifier.verify(&token, now)?.id(), "gw1"); // verified, and cached
    /// assert_eq!(verifier.verify(&token, now)?.id(), "gw1"); // from the cache
    /// // The cache never extends a token's life:
    /// let later = now + TimeDelta::days(8);
    /// assert_eq!(verifier.verify(&token, later).unwrap_err().code(), "TokenExpired");
    /// # Ok::<(), apim_sas::Error>(())
    /// ```
    pub fn with_cache(mut self, capacity: usize) -> Verifier {
        self.cache = match capacity {
            0 => CacheSetting::Off,
            n => CacheSetting::On(Box::new(Cache::new(n))),
        };
        self
    }

    /// The cache size the tower layer (and `serve`) give a verifier that has no cache setting.
    pub const DEFAULT_CACHE_CAPACITY: usize = 1024;

    /// How many verdicts the cache holds at most; 0 without a cache.
    pub fn cache_capacity(&self) -> usize {
        match &self.cache {
            CacheSetting::On(cache) => cache.capacity(),
            CacheSetting::Unset | CacheSetting::Off => 0,
        }
    }

    /// Whether [`with_cache`](Verifier::with_cache) was called (with any capacity, 0 included).
    pub fn has_cache_setting(&self) -> bool {
        !matches!(self.cache, CacheSetting::Unset)
    }

    /// The policy applied.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Changes the policy applied.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// Adds or replaces one key of gateway `id`.
    ///
    /// Refuses an empty id (`EmptyGatewayId`) or one breaking the id rules (`InvalidGatewayId`),
    /// status 500: a keystore is configuration.
    pub fn insert(&mut self, id: &str, key_type: KeyType, key: &GatewayKey) -> Result<(), Error> {
        check_id_for(id, Op::Config)?;
        let keyed = Some(key.keyed_mac()?);
        self.cache.clear();
        let gateway = self.gateways.entry(id.into()).or_default();
        match key_type {
            KeyType::Primary => gateway.primary = keyed,
            KeyType::Secondary => gateway.secondary = keyed,
        }
        Ok(())
    }

    /// Removes gateway `id` and both its keys; `true` when it was there.
    pub fn remove(&mut self, id: &str) -> bool {
        self.cache.clear();
        self.gateways.remove(id).is_some()
    }

    /// Whether any key is held for gateway `id`.
    pub fn contains(&self, id: &str) -> bool {
        self.gateways.contains_key(id)
    }

    /// How many gateways are held.
    pub fn len(&self) -> usize {
        self.gateways.len()
    }

    /// Whether no gateway is held.
    pub fn is_empty(&self) -> bool {
        self.gateways.is_empty()
    }

    /// Verifies a token (either form, optional scheme) at instant `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Verified<'_>, Error> {
        self.verify_text(token.as_bytes(), || UntrustedToken::parse(token), now)
    }

    /// Verifies raw bytes; bytes that are not UTF-8 are `MalformedToken`.
    pub fn verify_bytes(&self, token: &[u8], now: DateTime<Utc>) -> Result<Verified<'_>, Error> {
        self.verify_text(token, || UntrustedToken::parse_bytes(token), now)
    }

    /// The one path of [`verify`](Verifier::verify) and [`verify_bytes`](Verifier::verify_bytes),
    /// with or without the cache: a hit skips the parse and the HMAC, never the lifetime.
    ///
    /// Written so that the uncached path is what it was before the cache: the parser, the
    /// gateway lookup and the lifetime check are each called from one place whatever the cache
    /// setting, and the cache's own work sits in functions of its own, so the compiler inlines
    /// that path whole. (Called from two places each, one per setting, they were left out of
    /// line, and an uncached verification took 5 % longer.) Without a cache it adds one test of
    /// the setting.
    #[inline(always)]
    fn verify_text<'t>(
        &self,
        bytes: &'t [u8],
        parse: impl FnOnce() -> Result<UntrustedToken<'t>, Error>,
        now: DateTime<Utc>,
    ) -> Result<Verified<'_>, Error> {
        let mut slot = None;
        let mut hit = None;
        if let CacheSetting::On(cache) = &self.cache {
            let hash = cache.hash(bytes);
            hit = lookup(cache, bytes, hash);
            slot = Some((cache, hash));
        }
        let known = hit.is_some();
        let parsed;
        let (id, claim) = match hit {
            Some((id, verdict)) => (id, Claim::Known(verdict)),
            None => {
                parsed = parse()?;
                (parsed.id(), Claim::Parsed(&parsed))
            }
        };
        let verified = self.check(id, claim, now)?;
        if let (Some((cache, hash)), false) = (slot, known) {
            remember(cache, bytes, hash, id, &verified);
        }
        Ok(verified)
    }

    /// Verifies a token already parsed (by `inspect`, say) at instant `now`.
    pub fn verify_parsed(
        &self,
        token: &UntrustedToken<'_>,
        now: DateTime<Utc>,
    ) -> Result<Verified<'_>, Error> {
        self.check(token.id(), Claim::Parsed(token), now)
    }

    /// The checks after the parse, in their order: gateway, signature (unless the cache knows
    /// which key signed these exact bytes), lifetime.
    #[inline(always)]
    fn check(
        &self,
        id: &str,
        claim: Claim<'_, '_>,
        now: DateTime<Utc>,
    ) -> Result<Verified<'_>, Error> {
        let Some((id, gateway)) = self.gateways.get_key_value(id) else {
            return Err(Error::token(
                ErrorKind::GatewayNotExist,
                Target::Id,
                "id: no key is known for this gateway",
            ));
        };
        let (key_type, expiry, format) = match claim {
            Claim::Known(verdict) => (verdict.key_type, verdict.expiry, verdict.format),
            Claim::Parsed(token) => {
                let matches = |keyed: &Option<Box<KeyedMac>>| {
                    keyed.as_ref().is_some_and(|keyed| {
                        mac_over(keyed, id.as_bytes(), token.o_form())
                            .verify_slice(token.mac())
                            .is_ok()
                    })
                };
                let key_type = if matches(&gateway.primary) {
                    KeyType::Primary
                } else if matches(&gateway.secondary) {
                    KeyType::Secondary
                } else {
                    return Err(Error::token(
                        ErrorKind::SignatureMismatch,
                        Target::Signature,
                        "signature: no key of this gateway produces this signature",
                    ));
                };
                (key_type, token.expiry(), token.format())
            }
        };
        self.policy.check(expiry, now)?;
        Ok(Verified {
            id,
            expiry,
            key_type,
            format,
        })
    }
}

/// What stands for the signature in [`Verifier::check`]: a parsed token, whose signature is
/// checked, or the cache's verdict on the same bytes.
enum Claim<'a, 't> {
    Parsed(&'a UntrustedToken<'t>),
    Known(Verdict),
}

/// The cache's verdict on exactly `bytes` (hashed to `hash`), with the id it holds.
#[inline(never)]
fn lookup<'t>(cache: &Cache, bytes: &'t [u8], hash: u64) -> Option<(&'t str, Verdict)> {
    let verdict = cache.get(bytes, hash)?;
    let id = std::str::from_utf8(bytes.get(verdict.id.clone())?).ok()?;
    Some((id, verdict))
}

/// Stores the verdict of a token that verified: `bytes`, hashed to `hash`, whose id `id` is.
#[inline(never)]
fn remember(cache: &Cache, bytes: &[u8], hash: u64, id: &str, verified: &Verified<'_>) {
    // Where the id sits in `bytes`: the parser's id is a slice of them.
    let start = (id.as_ptr() as usize).wrapping_sub(bytes.as_ptr() as usize);
    if start.saturating_add(id.len()) <= bytes.len() {
        let verdict = Verdict {
            id: start..start + id.len(),
            key_type: verified.key_type,
            format: verified.format,
            expiry: verified.expiry,
        };
        cache.put(bytes, hash, &verdict);
    }
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("policy", &self.policy)
            .field("gateways", &self.gateways.len())
            .field("cache_capacity", &self.cache_capacity())
            .finish_non_exhaustive()
    }
}

/// A token that passed verification: its fields can be trusted.
///
/// Borrows from the [`Verifier`] (the id is the keystore's own), never from the token text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified<'v> {
    id: &'v str,
    expiry: DateTime<Utc>,
    key_type: KeyType,
    format: Format,
}

impl<'v> Verified<'v> {
    /// The gateway id.
    pub fn id(&self) -> &'v str {
        self.id
    }

    /// The expiry the token was signed with.
    pub fn expiry(&self) -> DateTime<Utc> {
        self.expiry
    }

    /// Which key signed it.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The form it came in.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Time left until the expiry (negative within the leeway after it).
    pub fn expires_in(&self, now: DateTime<Utc>) -> TimeDelta {
        self.expiry.signed_duration_since(now)
    }
}
