//! Verification: the [`Verifier`] keystore and the [`Verified`] result.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use hmac::Mac;

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
#[derive(Clone, Default)]
pub struct Verifier {
    policy: Policy,
    // foldhash: a fast seeded hash. Ids in the map are the operator's, never an attacker's, so
    // a lookup of a hostile id only ever probes the operator's own entries.
    gateways: HashMap<Box<str>, Gateway, foldhash::fast::RandomState>,
}

impl Verifier {
    /// An empty verifier applying `policy`.
    pub fn new(policy: Policy) -> Verifier {
        Verifier {
            policy,
            gateways: HashMap::default(),
        }
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
        let gateway = self.gateways.entry(id.into()).or_default();
        match key_type {
            KeyType::Primary => gateway.primary = keyed,
            KeyType::Secondary => gateway.secondary = keyed,
        }
        Ok(())
    }

    /// Removes gateway `id` and both its keys; `true` when it was there.
    pub fn remove(&mut self, id: &str) -> bool {
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
        self.verify_parsed(&UntrustedToken::parse(token)?, now)
    }

    /// Verifies raw bytes; bytes that are not UTF-8 are `MalformedToken`.
    pub fn verify_bytes(&self, token: &[u8], now: DateTime<Utc>) -> Result<Verified<'_>, Error> {
        self.verify_parsed(&UntrustedToken::parse_bytes(token)?, now)
    }

    /// Verifies a token already parsed (by `inspect`, say) at instant `now`.
    pub fn verify_parsed(
        &self,
        token: &UntrustedToken<'_>,
        now: DateTime<Utc>,
    ) -> Result<Verified<'_>, Error> {
        let Some((id, gateway)) = self.gateways.get_key_value(token.id()) else {
            return Err(Error::token(
                ErrorKind::GatewayNotExist,
                Target::Id,
                "id: no key is known for this gateway",
            ));
        };
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
        self.policy.check(token.expiry(), now)?;
        Ok(Verified {
            id,
            expiry: token.expiry(),
            key_type,
            format: token.format(),
        })
    }
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("policy", &self.policy)
            .field("gateways", &self.gateways.len())
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
