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

/// Unicode's format characters (general category Cf, Unicode 16.0), as inclusive ranges: the
/// byte-order mark, zero-width spaces and joiners, direction marks, the soft hyphen, tags.
/// Invisible, so a key pasted with one looks right and signs wrong. A unit test holds this table
/// to regex-syntax's Unicode tables.
const FORMAT_CHARACTERS: [(char, char); 21] = [
    ('\u{00AD}', '\u{00AD}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007F}'),
];

/// Whether `c` is a format character (category Cf).
fn is_format(c: char) -> bool {
    !c.is_ascii() && FORMAT_CHARACTERS.iter().any(|&(lo, hi)| lo <= c && c <= hi)
}

/// What a key pasted with its wrapping looks like, as the refusal's message: quotes (what `jq`
/// without `-r` and `az … --query` without `--output tsv` print) or a JSON object (a list-keys
/// answer where the key alone was meant). No Azure key starts and ends so: its text is base64.
fn wrapping(key: &str) -> Option<&'static str> {
    let quoted = |q: char| key.len() >= 2 && key.starts_with(q) && key.ends_with(q);
    if quoted('"') || quoted('\'') {
        return Some(
            "key: wrapped in quotes, which are not part of a key; print it without them \
             (jq -r, or az … --output tsv)",
        );
    }
    if key.starts_with('{') && key.ends_with('}') {
        return Some(
            "key: a JSON object, not a key; a list-keys answer holds the keys under \"primary\" \
             and \"secondary\"",
        );
    }
    None
}

/// A gateway key: the secret every token of a gateway is signed with.
///
/// The key is used as its UTF-8 text, never base64-decoded, even though Azure's keys look like
/// base64: Azure signs with the text. Keys of any length are accepted; HMAC hashes keys longer
/// than 128 bytes.
///
/// `Debug` prints no key material, and no error or message ever quotes a key.
///
/// # Key hygiene
///
/// The key's text is held in memory that is wiped when the key is dropped (`Zeroizing`). The
/// HMAC states computed from it ([`Signer`](crate::Signer), [`Verifier`](crate::Verifier)) are as
/// secret as the key: each sits in its own heap block, so that no move, clone or map rehash
/// leaves a copy behind, and is wiped when dropped (sha2's `zeroize`). `tests/it/hygiene.rs` checks
/// this by scanning every block the allocator gets back.
///
/// Outside this crate's reach, and so the caller's to weigh:
/// - the `String` handed to [`GatewayKey::new`] and any copy the caller made before (wrap it in
///   `zeroize::Zeroizing`; a file's text too);
/// - serde's scratch buffers while a key file or keystore is parsed, for a key written with JSON
///   escapes (`\u0041`, `\/`) or TOML escapes: the unescaped copy is built in a buffer the
///   parser frees unwiped;
/// - `APIM_SAS_KEY` in the process environment, which lives as long as the process;
/// - the `hmac` and `sha2` crates' transient copies on the stack while a key is absorbed
///   (key ⊕ ipad, key ⊕ opad) and while a message is signed;
/// - the operating system's page cache and swap, which hold key files as read.
///
/// ```
/// use apim_sas::GatewayKey;
/// let key = GatewayKey::new("not-a-real-key")?;
/// assert_eq!(format!("{key:?}"), "GatewayKey(<redacted>)");
/// assert_eq!(GatewayKey::new("").unwrap_err().code(), "EmptyKey");
/// let err = GatewayKey::new("\u{feff}not-a-real-key").unwrap_err(); // a byte-order mark
/// assert_eq!(err.code(), "InvalidKey");
/// assert_eq!(
///     err.message(),
///     "key: a format character (U+FEFF) at character 1; \
///      a byte-order mark or zero-width space pasted with it?"
/// );
/// # Ok::<(), apim_sas::Error>(())
/// ```
#[derive(Clone)]
pub struct GatewayKey {
    secret: Zeroizing<String>,
}

impl GatewayKey {
    /// Takes a key string: refused when empty (`EmptyKey`), when it is wrapped in quotes
    /// (`"…"` or `'…'`, what `jq` without `-r` prints) or is a JSON object (`{…}`, a list-keys
    /// answer), or when it holds a control character (a tab or a newline pasted with it, say) or
    /// a Unicode format character (a byte-order mark, a zero-width space: category Cf)
    /// (`InvalidKey`). Azure's keys are base64 text, so none of these refuses a real key. The message names the character and its
    /// place (counted in characters from 1), never the key. Status 500: keys are configuration.
    ///
    /// Nothing is trimmed or stripped: dropping a byte-order mark at the start of a file is the
    /// file reader's job (the command does it).
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
        if let Some(wrapping) = wrapping(&secret) {
            return Err(Error::config(ErrorKind::InvalidKey, Target::Key, wrapping));
        }
        let invisible = secret
            .chars()
            .enumerate()
            .find(|&(_, c)| c.is_control() || is_format(c));
        if let Some((at, c)) = invisible {
            let (what, hint) = if c.is_control() {
                ("a control character", "a newline or tab pasted with it?")
            } else {
                (
                    "a format character",
                    "a byte-order mark or zero-width space pasted with it?",
                )
            };
            return Err(Error::config(
                ErrorKind::InvalidKey,
                Target::Key,
                format!(
                    "key: {what} (U+{:04X}) at character {}; {hint}",
                    u32::from(c),
                    at + 1
                ),
            ));
        }
        Ok(GatewayKey { secret })
    }

    /// The HMAC states for this key, in their own heap block (see "Key hygiene" above).
    ///
    /// HMAC takes keys of any length, so `hmac` never refuses one; should it ever, the error is
    /// passed on: there is no fallback key.
    pub(crate) fn keyed_mac(&self) -> Result<Box<KeyedMac>, Error> {
        match KeyedMac::new_from_slice(self.secret.as_bytes()) {
            Ok(keyed) => Ok(Box::new(keyed)),
            Err(_) => Err(Error::config(
                ErrorKind::InvalidKey,
                Target::Key,
                "key: the HMAC implementation refused this key",
            )),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The table is exactly Unicode's category Cf, as regex-syntax's tables have it.
    #[test]
    fn format_characters_are_unicode_category_cf() {
        use regex_syntax::hir::{Class, HirKind};
        let hir = regex_syntax::Parser::new().parse(r"\p{Cf}").unwrap();
        let HirKind::Class(Class::Unicode(class)) = hir.kind() else {
            panic!("not a Unicode class: {hir:?}");
        };
        let reference: Vec<(char, char)> = class
            .ranges()
            .iter()
            .map(|r| (r.start(), r.end()))
            .collect();
        assert_eq!(reference, FORMAT_CHARACTERS);
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            assert_eq!(
                is_format(c),
                reference.iter().any(|&(lo, hi)| lo <= c && c <= hi),
                "U+{:04X}",
                u32::from(c)
            );
        }
    }
}
