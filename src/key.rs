//! Keys: the gateway key secret and the key type.

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, KeyInit};
use sha2::Sha512;
use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Target};

/// HMAC-SHA512 keyed with a gateway key: the inner and outer SHA-512 states, computed once
/// (the `hmac` crate's block-level core, 160 bytes, without the message buffer a full `Hmac`
/// carries: a keystore holds two per gateway).
///
/// As secret as the key itself: the SHA-512 states are wiped on drop (sha2's `zeroize`).
pub(crate) type KeyedMac = hmac::block_api::HmacCore<Sha512>;

/// A fresh HMAC over `keyed`, ready for one message.
#[inline]
pub(crate) fn start(keyed: &KeyedMac) -> Hmac<Sha512> {
    use hmac::digest::block_api::CoreProxy;
    Hmac::compose(keyed.clone(), Default::default())
}

/// A gateway key: the secret every token of a gateway is signed with.
///
/// The key is used as its UTF-8 text, never base64-decoded, even though Azure's keys look like
/// base64 (DESIGN §1). Keys of any length are accepted; HMAC hashes keys longer than 128 bytes.
///
/// `Debug` prints no key material, and the memory is zeroized on drop.
///
/// ```
/// use apim_sas::GatewayKey;
/// let key = GatewayKey::new("not-a-real-key")?;
/// assert_eq!(format!("{key:?}"), "GatewayKey(<redacted>)");
/// assert_eq!(GatewayKey::new("").unwrap_err().code(), "EmptyKey");
/// # Ok::<(), apim_sas::Error>(())
/// ```
#[derive(Clone)]
pub struct GatewayKey {
    secret: Zeroizing<String>,
}

impl GatewayKey {
    /// Takes a key string: refused when empty (`EmptyKey`) or holding control characters
    /// (`InvalidKey`, a tab or a newline pasted with it, say). Status 500: keys are configuration.
    pub fn new(key: impl Into<String>) -> Result<GatewayKey, Error> {
        // Wrapped first, so that a refused key is wiped too.
        let secret = Zeroizing::new(key.into());
        if secret.is_empty() {
            return Err(Error::config(
                ErrorKind::EmptyKey,
                Target::Key,
                "key: the key is empty",
            ));
        }
        if secret.chars().any(char::is_control) {
            return Err(Error::config(
                ErrorKind::InvalidKey,
                Target::Key,
                "key: the key contains control characters (a newline or tab pasted with it?)",
            ));
        }
        Ok(GatewayKey { secret })
    }

    /// The HMAC states for this key.
    pub(crate) fn keyed_mac(&self) -> KeyedMac {
        // HMAC accepts keys of any length; an error here is impossible, and the fallback
        // (the empty key) is unreachable because empty keys are refused in `new`.
        KeyedMac::new_from_slice(self.secret.as_bytes())
            .unwrap_or_else(|_| KeyedMac::new(&Default::default()))
    }
}

// The key lives in `Zeroizing<String>`, wiped when the key is dropped.
impl zeroize::ZeroizeOnDrop for GatewayKey {}

impl fmt::Debug for GatewayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GatewayKey(<redacted>)")
    }
}

/// Which of a gateway's two keys signed a token (key rotation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum KeyType {
    /// The primary key.
    Primary,
    /// The secondary key.
    Secondary,
}

impl KeyType {
    /// `"primary"` or `"secondary"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            KeyType::Primary => "primary",
            KeyType::Secondary => "secondary",
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyType {
    type Err = Error;

    /// `primary` or `secondary`, in any letter case; anything else is `InvalidKeyType`.
    ///
    /// The refused value is not echoed: a key pasted into the wrong place must not be printed.
    fn from_str(s: &str) -> Result<KeyType, Error> {
        if s.eq_ignore_ascii_case("primary") {
            Ok(KeyType::Primary)
        } else if s.eq_ignore_ascii_case("secondary") {
            Ok(KeyType::Secondary)
        } else {
            Err(Error::request(
                ErrorKind::InvalidKeyType,
                Target::KeyType,
                "keyType: the key type must be primary or secondary",
            ))
        }
    }
}
