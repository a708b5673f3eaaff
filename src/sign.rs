//! Signing: the string-to-sign, the keyed [`Signer`], and minting with policy.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::digest::FixedOutput as _;
use hmac::Mac;

use crate::error::{Error, ErrorKind, Op, Target};
use crate::expiry::{self, OForm};
use crate::key::{GatewayKey, KeyedMac};
use crate::policy::Policy;
use crate::token::{self, Format, Token, UntrustedToken, SIGNATURE_LEN};

/// The one place that defines what a signature covers (`docs/format.md`, §2 The signature):
///
/// ```text
/// string_to_sign = id + "\n" + expiry_in_O_form
/// ```
///
/// Returns the keyed MAC with the string absorbed; the caller finalizes or verifies it. Both
/// forms sign the same string, which is why converting a token between them needs no key.
#[inline]
pub(crate) fn mac_over(keyed: &KeyedMac, id: &[u8], o_form: &OForm) -> hmac::Hmac<sha2::Sha512> {
    let mut mac = crate::key::start(keyed);
    mac.update(id);
    mac.update(b"\n");
    mac.update(o_form);
    mac
}

/// Checks a gateway id for minting (status 400) or for a keystore (status 500).
pub(crate) fn check_id_for(id: &str, op: Op) -> Result<(), Error> {
    if id.is_empty() {
        return Err(Error::new(
            ErrorKind::EmptyGatewayId,
            Target::Id,
            op,
            "id: the gateway id is empty",
        ));
    }
    if let Some(problem) = token::id_problem(id.as_bytes()) {
        return Err(Error::new(
            ErrorKind::InvalidGatewayId,
            Target::Id,
            op,
            problem,
        ));
    }
    Ok(())
}

/// Signs tokens for one gateway with one key: keyed once, reused for many tokens.
///
/// ```
/// use apim_sas::{Format, GatewayKey, Signer};
/// use chrono::{TimeZone, Utc};
///
/// let key = GatewayKey::new("sample-key-do-not-use")?;
/// let signer = Signer::new("gw1", &key)?;
/// let expiry = Utc.with_ymd_and_hms(2019, 4, 21, 0, 44, 30).unwrap();
/// let token = signer.sign(expiry, Format::Compact)?; // floored to 00:44
/// assert!(token.to_string().starts_with("gw1&201904210044&"));
/// # Ok::<(), apim_sas::Error>(())
/// ```
#[derive(Clone)]
pub struct Signer {
    id: Box<str>,
    // Boxed: moving or cloning a signer moves a pointer, never the HMAC states (see
    // `GatewayKey`'s "Key hygiene").
    keyed: Box<KeyedMac>,
}

impl Signer {
    /// Keys a signer for gateway `id`.
    ///
    /// Refuses an empty id (`EmptyGatewayId`), an id breaking the id rules of `docs/format.md`
    /// (`InvalidGatewayId`) and `managed` in any case (`InvalidGatewayLocation`: that is the
    /// Azure-hosted gateway, whose tokens no one mints). Status 400.
    pub fn new(id: &str, key: &GatewayKey) -> Result<Signer, Error> {
        Signer::check_id(id)?;
        Ok(Signer {
            id: id.into(),
            keyed: key.keyed_mac()?,
        })
    }

    /// The checks [`Signer::new`] makes of an id, without a key: `EmptyGatewayId`,
    /// `InvalidGatewayId`, `InvalidGatewayLocation` (status 400).
    pub fn check_id(id: &str) -> Result<(), Error> {
        check_id_for(id, Op::Request)?;
        if id.eq_ignore_ascii_case("managed") {
            return Err(Error::request(
                ErrorKind::InvalidGatewayLocation,
                Target::Id,
                "id: 'managed' is the Azure-hosted gateway; tokens are minted only for self-hosted gateways",
            ));
        }
        Ok(())
    }

    /// The gateway id this signer signs for.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Signs a token expiring at `expiry`, floored to what `format` carries (the minute for
    /// compact, 100 ns for uid). Applies no lifetime policy: see [`Signer::mint`].
    ///
    /// Refuses an expiry outside the years 0001–9999 (`InvalidExpiry`).
    pub fn sign(&self, expiry: DateTime<Utc>, format: Format) -> Result<Token, Error> {
        expiry::check_range(&expiry)?;
        let expiry = format.floor(expiry);
        let o_form = expiry::to_o_form(&expiry);
        // The tag becomes the token's text: `finalize_fixed`, without the `CtOutput` wrapper
        // (for comparisons in constant time, wiped on drop), which buys nothing here.
        let tag = mac_over(&self.keyed, self.id.as_bytes(), &o_form).finalize_fixed();
        let mut signature = [0u8; SIGNATURE_LEN];
        // 64 bytes always encode to exactly 88 characters: the slice fits.
        let written = STANDARD
            .encode_slice(tag, &mut signature)
            .unwrap_or_default();
        let signature = signature.get(..written).unwrap_or_default();
        Ok(Token::assemble(
            format, &self.id, expiry, &o_form, signature,
        ))
    }

    /// Mints a token with policy, as Azure's generate-token operation does.
    ///
    /// The expiry is floored first; then it must be after `now` (`ExpiryInPast`) and at most
    /// `policy.max_lifetime` ahead of it (`ExpiryTooFar`; 30 days by default). The leeway plays
    /// no part in minting. Status 400.
    ///
    /// ```
    /// use apim_sas::{Format, GatewayKey, Policy, Signer};
    /// use chrono::{TimeDelta, TimeZone, Utc};
    ///
    /// let signer = Signer::new("gw1", &GatewayKey::new("sample-key-do-not-use")?)?;
    /// let now = Utc.with_ymd_and_hms(2026, 4, 21, 0, 0, 0).unwrap();
    /// let token = signer.mint(now + TimeDelta::days(29), Format::Compact, now, &Policy::default())?;
    /// assert!(token.to_string().starts_with("gw1&202605200000&"));
    /// let err = signer.mint(now + TimeDelta::days(31), Format::Compact, now, &Policy::default());
    /// assert_eq!(err.unwrap_err().code(), "ExpiryTooFar");
    /// # Ok::<(), apim_sas::Error>(())
    /// ```
    pub fn mint(
        &self,
        expiry: DateTime<Utc>,
        format: Format,
        now: DateTime<Utc>,
        policy: &Policy,
    ) -> Result<Token, Error> {
        let floored = policy.check_mint(expiry, format, now)?;
        self.sign(floored, format)
    }

    /// Verifies a token with this signer's one key: for a service that holds a single gateway's
    /// key. (For many gateways, or both keys during a rotation, use a
    /// [`Verifier`](crate::Verifier).)
    ///
    /// The checks and their order are the verifier's: the token's id must be this signer's
    /// (`GatewayNotExist`); its signature must be this key's (`SignatureMismatch`: recomputed
    /// over the token's id and expiry, compared in constant time by the `hmac` crate); then its
    /// lifetime under `policy` at `now` (`TokenExpired`, `ExpiryTooFar`), so a lifetime code
    /// implies the token is authentic. Status 401. Compare tokens this way, not with `==` on
    /// their text.
    ///
    /// ```
    /// use apim_sas::{Format, GatewayKey, Policy, Signer, UntrustedToken};
    /// use chrono::{TimeDelta, TimeZone, Utc};
    ///
    /// let key = GatewayKey::new("sample-key-do-not-use")?;
    /// let signer = Signer::new("gw1", &key)?;
    /// let now = Utc.with_ymd_and_hms(2026, 4, 21, 0, 0, 0).unwrap();
    /// let token = signer.sign(now + TimeDelta::days(7), Format::Compact)?.to_string();
    /// let policy = Policy::default();
    /// signer.verify(&UntrustedToken::parse(&token)?, now, &policy)?;
    ///
    /// let forged = token.replacen("&2026", "&2027", 1);
    /// let err = signer.verify(&UntrustedToken::parse(&forged)?, now, &policy).unwrap_err();
    /// assert_eq!((err.code(), err.http_status()), ("SignatureMismatch", 401));
    /// let later = now + TimeDelta::days(8);
    /// let err = signer.verify(&UntrustedToken::parse(&token)?, later, &policy).unwrap_err();
    /// assert_eq!(err.code(), "TokenExpired");
    /// let other = Signer::new("gw2", &key)?;
    /// let err = other.verify(&UntrustedToken::parse(&token)?, now, &policy).unwrap_err();
    /// assert_eq!(err.code(), "GatewayNotExist");
    /// # Ok::<(), apim_sas::Error>(())
    /// ```
    pub fn verify(
        &self,
        token: &UntrustedToken<'_>,
        now: DateTime<Utc>,
        policy: &Policy,
    ) -> Result<(), Error> {
        // Ids are not secret: an ordinary comparison.
        if token.id() != &*self.id {
            return Err(Error::token(
                ErrorKind::GatewayNotExist,
                Target::Id,
                "id: no key is known for this gateway",
            ));
        }
        mac_over(&self.keyed, self.id.as_bytes(), token.o_form())
            .verify_slice(token.mac())
            .map_err(|_| {
                Error::token(
                    ErrorKind::SignatureMismatch,
                    Target::Signature,
                    "signature: this key does not produce this signature",
                )
            })?;
        policy.check(token.expiry(), now)
    }
}

// The keyed HMAC states are wiped on drop (sha2's `zeroize` feature, through the box); the id is
// not secret.
impl zeroize::ZeroizeOnDrop for Signer {}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}
