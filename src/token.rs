//! The token's wire forms and their parsers: one strict parser per form.
//!
//! | form | bare token |
//! | --- | --- |
//! | compact | `{id}&{yyyyMMddHHmm}&{signature}` |
//! | uid | `uid={id}&ex={yyyy-MM-ddTHH:mm:ss.fffffffZ}&sn={signature}` |
//!
//! Either may carry a scheme, `GatewayKey ` or `SharedAccessSignature ` (any letter case, one or
//! more ASCII spaces). Parsing never trims and never allocates. The checks run in this order,
//! each with its own code: empty (`EmptyToken`), length (`TokenTooLong`), scheme, whitespace,
//! control characters and UTF-8 (`MalformedToken`), field count, names and order
//! (`MalformedToken`), then the fields left to right: id (`InvalidGatewayId`), expiry
//! (`MalformedExpiry`), signature (`MalformedSignature`).

use std::fmt;

use chrono::{DateTime, Timelike, Utc};
use ctutils::CtEq;

use crate::error::{Error, ErrorKind, Target};
use crate::expiry::{self, OForm};

/// The longest token accepted, in bytes, scheme included.
pub const MAX_TOKEN_LEN: usize = 1024;
/// The longest gateway id, in bytes.
pub const MAX_ID_LEN: usize = 80;
/// The length of a signature: 64 bytes in padded standard base64.
pub const SIGNATURE_LEN: usize = 88;
/// The length of the HMAC-SHA512 tag a signature encodes.
pub(crate) const MAC_LEN: usize = 64;

/// A token's wire form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `{id}&{yyyyMMddHHmm}&{signature}`: whole minutes, the self-hosted gateway's form.
    Compact,
    /// `uid={id}&ex={O form}&sn={signature}`: 100 ns, the management API's form.
    Uid,
}

impl Format {
    /// `"compact"` or `"uid"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Format::Compact => "compact",
            Format::Uid => "uid",
        }
    }

    /// Floors an instant to what this form carries: the minute (compact) or 100 ns (uid).
    pub fn floor(self, at: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Format::Compact => expiry::floor_to_minute(at),
            Format::Uid => expiry::floor_to_tick(at),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The scheme prefix a token may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `GatewayKey `: the self-hosted gateway's `config.service.auth`.
    GatewayKey,
    /// `SharedAccessSignature `: the management API's `Authorization` header.
    SharedAccessSignature,
}

impl Scheme {
    /// The scheme's name as written on output: `GatewayKey` or `SharedAccessSignature`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::GatewayKey => "GatewayKey",
            Scheme::SharedAccessSignature => "SharedAccessSignature",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn malformed(target: Target, message: &'static str) -> Error {
    Error::token(ErrorKind::MalformedToken, target, message)
}

/// Why an id breaks the rules of DESIGN §1, or `None` when it is valid.
pub(crate) fn id_problem(id: &[u8]) -> Option<&'static str> {
    if id.is_empty() {
        Some("id: the gateway id is empty")
    } else if id.len() > MAX_ID_LEN {
        Some("id: the gateway id is longer than 80 bytes")
    } else if id.iter().fold(0u8, |bad, &b| {
        bad | u8::from(b.wrapping_sub(0x21) >= 0x5e) | u8::from(b == b'&')
    }) != 0
    {
        Some("id: the gateway id must be printable ASCII without spaces or '&'")
    } else if id.starts_with(b"uid=") {
        Some("id: the gateway id must not start with 'uid='")
    } else {
        None
    }
}

#[inline]
fn check_id(id: &str) -> Result<&str, Error> {
    match id_problem(id.as_bytes()) {
        Some(problem) => Err(Error::token(
            ErrorKind::InvalidGatewayId,
            Target::Id,
            problem,
        )),
        None => Ok(id),
    }
}

/// Decodes an 88-character signature: canonical, padded standard base64 of 64 bytes.
///
/// base64-simd decodes 32-character blocks with AVX2 while 38 or more characters remain, then
/// the rest in scalar code; 88 characters would leave a 24-character scalar tail costing more
/// than the 64 before it. So the 86 data characters are decoded in a 104-character block (three
/// AVX2 blocks and an 8-character tail) padded with `A` (zero bits) instead of `==`: the same 64
/// bytes come out, and the byte after them holds exactly the low bits of the last data
/// character, which must be zero for the encoding to be canonical.
#[inline]
fn decode_mac(sig: &[u8]) -> Option<[u8; MAC_LEN]> {
    const DATA: usize = SIGNATURE_LEN - 2;
    let data = sig.strip_suffix(b"==").filter(|d| d.len() == DATA)?;
    let mut block = [b'A'; 104];
    block[..DATA].copy_from_slice(data);
    let mut out = [0u8; 78];
    let decoded = base64_simd::STANDARD
        .decode(&block, base64_simd::Out::from_slice(&mut out))
        .ok()?;
    let (mac, rest) = decoded.split_first_chunk::<MAC_LEN>()?;
    (rest.first() == Some(&0)).then_some(*mac)
}

/// Decodes a signature, or says why it is not one (`MalformedSignature`).
#[inline]
fn decode_signature(text: &str) -> Result<(&str, [u8; MAC_LEN]), Error> {
    fn bad(message: &'static str) -> Error {
        Error::token(ErrorKind::MalformedSignature, Target::Signature, message)
    }
    let sig = text.as_bytes();
    if let Some(mac) = decode_mac(sig) {
        return Ok((text, mac));
    }
    Err(if sig.contains(&b'%') {
        bad("signature: it looks URL-encoded (%2B, %2F, %3D); decode it first")
    } else if sig.iter().any(|&b| b == b'-' || b == b'_') {
        bad("signature: it uses the URL-safe alphabet ('-', '_'); expected standard base64 ('+', '/')")
    } else if sig.len() != SIGNATURE_LEN {
        bad("signature: must be exactly 88 characters of standard base64 ending in '=='")
    } else {
        bad("signature: not canonical standard base64 of 64 bytes ('A-Z a-z 0-9 + /', '==' padding)")
    })
}

/// Splits off a known scheme (any letter case) followed by one or more ASCII spaces. A scheme
/// name with nothing after it (what remains of `GatewayKey ` once trimmed) is a scheme too, so
/// that it reads as the empty token it is.
fn split_scheme(input: &str) -> (Option<Scheme>, &str) {
    for scheme in [Scheme::GatewayKey, Scheme::SharedAccessSignature] {
        let name = scheme.as_str();
        if input.eq_ignore_ascii_case(name) {
            return (Some(scheme), "");
        }
        if let Some((head, after)) = input.split_at_checked(name.len()) {
            if head.eq_ignore_ascii_case(name) && after.starts_with(' ') {
                return (Some(scheme), after.trim_start_matches(' '));
            }
        }
    }
    (None, input)
}

/// Refuses whitespace, control characters and bytes that are not UTF-8 anywhere in the token.
///
/// Printable non-ASCII characters pass here and are refused by the field they sit in. A word
/// followed by a space at the start, where no scheme was recognised, is an unknown scheme.
fn check_characters(text: &str, scheme: Option<Scheme>) -> Result<(), Error> {
    // Without early exit, so that it vectorises: all bytes printable ASCII.
    let outside = text
        .bytes()
        .fold(0u8, |acc, b| acc | u8::from(b.wrapping_sub(0x21) >= 0x5e));
    if outside == 0 {
        return Ok(());
    }
    if let Some(space) = text.find(char::is_whitespace) {
        let word = text.get(..space).unwrap_or_default();
        if scheme.is_none() && !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(malformed(
                Target::Scheme,
                "scheme: only 'GatewayKey' and 'SharedAccessSignature' are accepted",
            ));
        }
        return Err(malformed(
            Target::Token,
            "token: whitespace inside the token",
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(malformed(
            Target::Token,
            "token: control characters inside the token",
        ));
    }
    Ok(())
}

/// Splits `s` at `&` into exactly three fields.
fn three_fields(s: &str) -> Option<(&str, &str, &str)> {
    let (id, rest) = s.split_at_checked(memchr::memchr(b'&', s.as_bytes())?)?;
    let rest = rest.get(1..)?;
    let (expiry, signature) = rest.split_at_checked(memchr::memchr(b'&', rest.as_bytes())?)?;
    let signature = signature.get(1..)?;
    match memchr::memchr(b'&', signature.as_bytes()) {
        Some(_) => None,
        None => Some((id, expiry, signature)),
    }
}

/// The fast route for a well-formed token: every field read at its fixed place from the end (the
/// signature is always the last 88 bytes), each validated as the full route would. `None` sends
/// the token down the full route, which finds the exact code for what is wrong; so the two
/// routes cannot disagree on a token this one accepts (a unit test holds them to it).
#[inline]
fn well_formed(rest: &str) -> Option<UntrustedToken<'_>> {
    let (head, sig) = rest.split_at_checked(rest.len().checked_sub(SIGNATURE_LEN)?)?;
    let (format, id, expiry, o_form) = match rest.strip_prefix("uid=") {
        Some(_) => {
            let head = head.strip_suffix("&sn=")?;
            let (head, ex) = head.split_at_checked(head.len().checked_sub(expiry::O_LEN)?)?;
            let id = head.strip_suffix("&ex=")?.strip_prefix("uid=")?;
            let (expiry, o_form) = expiry::parse_o(ex.as_bytes()).ok()?;
            (Format::Uid, id, expiry, o_form)
        }
        None => {
            let head = head.strip_suffix('&')?;
            let (head, ex) = head.split_at_checked(head.len().checked_sub(expiry::COMPACT_LEN)?)?;
            let id = head.strip_suffix('&')?;
            let (expiry, o_form) = expiry::parse_compact(ex.as_bytes()).ok()?;
            (Format::Compact, id, expiry, o_form)
        }
    };
    let id = check_id(id).ok()?;
    let (signature, mac) = decode_signature(sig).ok()?;
    Some(UntrustedToken {
        scheme: None,
        format,
        id,
        expiry,
        o_form,
        signature,
        mac,
    })
}

/// Empty, whitespace alone (what the CLI sees after trimming a line) or over 1024 bytes.
fn check_size(input: &[u8]) -> Result<(), Error> {
    if input.is_empty() {
        return Err(Error::token(
            ErrorKind::EmptyToken,
            Target::Token,
            "token: nothing to parse",
        ));
    }
    if input.len() > MAX_TOKEN_LEN {
        return Err(Error::token(
            ErrorKind::TokenTooLong,
            Target::Token,
            "token: longer than 1024 bytes",
        ));
    }
    if input.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::token(
            ErrorKind::EmptyToken,
            Target::Token,
            "token: only whitespace, nothing to parse",
        ));
    }
    Ok(())
}

/// A parsed token that has **not** been verified: reading its fields implies no trust.
///
/// This is what `inspect` shows. To trust a token, verify it with a
/// [`Verifier`](crate::Verifier), which returns a [`Verified`](crate::Verified).
///
/// ```
/// use apim_sas::{Format, Scheme, UntrustedToken};
///
/// let t = UntrustedToken::parse("GatewayKey gw1&201904210044&zmRTy/y/ZUvcawhcLqqzjokg9xBTfIbf6Pz6dIuYRdudTvugivgkOvnSesSDKCrypoYNeA5u65jjGcO73Gfoiw==")?;
/// assert_eq!(t.id(), "gw1");
/// assert_eq!(t.format(), Format::Compact);
/// assert_eq!(t.scheme(), Some(Scheme::GatewayKey));
/// assert_eq!(t.expiry().to_rfc3339(), "2019-04-21T00:44:00+00:00");
/// assert!(t.convert(Format::Uid)?.starts_with("uid=gw1&ex=2019-04-21T00:44:00.0000000Z&sn=zmRTy"));
/// # Ok::<(), apim_sas::Error>(())
/// ```
///
/// `==` compares the signature in constant time.
#[derive(Debug, Clone)]
pub struct UntrustedToken<'a> {
    scheme: Option<Scheme>,
    format: Format,
    id: &'a str,
    expiry: DateTime<Utc>,
    o_form: OForm,
    signature: &'a str,
    mac: [u8; MAC_LEN],
}

impl<'a> UntrustedToken<'a> {
    /// Parses a token in either form, with or without a scheme.
    pub fn parse(token: &'a str) -> Result<UntrustedToken<'a>, Error> {
        check_size(token.as_bytes())?;
        let (scheme, rest) = split_scheme(token);
        if rest.is_empty() {
            return Err(Error::token(
                ErrorKind::EmptyToken,
                Target::Token,
                "token: nothing after the scheme",
            ));
        }
        let parsed = match well_formed(rest) {
            Some(parsed) => parsed,
            None => parse_fields(rest, scheme)?,
        };
        Ok(UntrustedToken { scheme, ..parsed })
    }

    /// Parses raw bytes (from a socket, a file): bytes that are not UTF-8 are `MalformedToken`.
    pub fn parse_bytes(input: &'a [u8]) -> Result<UntrustedToken<'a>, Error> {
        check_size(input)?;
        let text = std::str::from_utf8(input)
            .map_err(|_| malformed(Target::Token, "token: bytes that are not UTF-8"))?;
        UntrustedToken::parse(text)
    }

    /// The scheme the token carried, if any.
    pub fn scheme(&self) -> Option<Scheme> {
        self.scheme
    }

    /// The wire form.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The gateway id the token claims.
    pub fn id(&self) -> &'a str {
        self.id
    }

    /// The expiry the token claims (UTC, exactly as signed).
    pub fn expiry(&self) -> DateTime<Utc> {
        self.expiry
    }

    /// The signature, 88 characters of base64.
    pub fn signature(&self) -> &'a str {
        self.signature
    }

    /// Whether the claimed expiry is at or before `now`, without leeway.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expiry <= now
    }

    pub(crate) fn o_form(&self) -> &OForm {
        &self.o_form
    }

    pub(crate) fn mac(&self) -> &[u8; MAC_LEN] {
        &self.mac
    }

    /// The same token in another form, keeping the signature (no key needed: both forms sign
    /// the same string). Uid to compact only when `ex` is a whole minute
    /// (`ExpiryNotWholeMinute` otherwise). Returns the bare token.
    pub fn convert(&self, to: Format) -> Result<String, Error> {
        check_convertible(&self.expiry, to)?;
        Ok(assemble(to, self.id, &self.expiry, self.signature))
    }
}

/// The full route: characters, structure, then each field in order, each with its own code.
fn parse_fields(rest: &str, scheme: Option<Scheme>) -> Result<UntrustedToken<'_>, Error> {
    check_characters(rest, scheme)?;
    match rest.strip_prefix("uid=") {
        Some(fields) => parse_uid(fields),
        None => parse_compact(rest),
    }
}

fn parse_compact(rest: &str) -> Result<UntrustedToken<'_>, Error> {
    let Some((id, expiry, signature)) = three_fields(rest) else {
        return Err(malformed(
            Target::Token,
            "token: the compact form has three fields, id&yyyyMMddHHmm&signature",
        ));
    };
    if expiry.starts_with("uid=") || signature.starts_with("uid=") {
        return Err(malformed(
            Target::Token,
            "token: the uid form's fields come in the order uid=, ex=, sn=",
        ));
    }
    let id = check_id(id)?;
    let (expiry, o_form) = expiry::parse_compact(expiry.as_bytes())?;
    let (signature, mac) = decode_signature(signature)?;
    Ok(UntrustedToken {
        scheme: None,
        format: Format::Compact,
        id,
        expiry,
        o_form,
        signature,
        mac,
    })
}

fn parse_uid(fields: &str) -> Result<UntrustedToken<'_>, Error> {
    let Some((id, expiry, signature)) = three_fields(fields) else {
        return Err(malformed(
            Target::Token,
            "token: the uid form has three fields, uid=…&ex=…&sn=…",
        ));
    };
    let (Some(expiry), Some(signature)) =
        (expiry.strip_prefix("ex="), signature.strip_prefix("sn="))
    else {
        return Err(malformed(
            Target::Token,
            "token: the uid form's fields are uid=, ex=, sn=, in that order and lower case",
        ));
    };
    let id = check_id(id)?;
    let (expiry, o_form) = expiry::parse_o(expiry.as_bytes())?;
    let (signature, mac) = decode_signature(signature)?;
    Ok(UntrustedToken {
        scheme: None,
        format: Format::Uid,
        id,
        expiry,
        o_form,
        signature,
        mac,
    })
}

fn check_convertible(expiry: &DateTime<Utc>, to: Format) -> Result<(), Error> {
    if to == Format::Compact && (expiry.second() != 0 || expiry.nanosecond() != 0) {
        return Err(Error::request(
            ErrorKind::ExpiryNotWholeMinute,
            Target::Expiry,
            "expiry: has seconds or fractions, which the compact form cannot carry; mint a new token instead",
        ));
    }
    Ok(())
}

/// Writes the bare token of `format` from its parts (the expiry already floored for the form).
fn assemble(format: Format, id: &str, expiry: &DateTime<Utc>, signature: &str) -> String {
    let mut text = String::with_capacity(id.len() + 40 + SIGNATURE_LEN);
    match format {
        Format::Compact => {
            text.push_str(id);
            text.push('&');
            text.push_str(ascii(&expiry::to_compact(expiry)));
            text.push('&');
        }
        Format::Uid => {
            text.push_str("uid=");
            text.push_str(id);
            text.push_str("&ex=");
            text.push_str(ascii(&expiry::to_o_form(expiry)));
            text.push_str("&sn=");
        }
    }
    text.push_str(signature);
    text
}

/// The digits and separators this crate wrote are ASCII, so this never comes out empty.
fn ascii(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// A token this crate minted: the bare token plus its parts.
///
/// `Display` writes the bare token, as Azure's generate-token operation returns it;
/// [`Token::with_scheme`] renders it with a scheme. `==` compares the signature in constant time.
#[derive(Clone)]
pub struct Token {
    text: String,
    id_len: usize,
    expiry: DateTime<Utc>,
    format: Format,
}

impl Token {
    pub(crate) fn assemble(
        format: Format,
        id: &str,
        expiry: DateTime<Utc>,
        signature: &str,
    ) -> Token {
        Token {
            text: assemble(format, id, &expiry, signature),
            id_len: id.len(),
            expiry,
            format,
        }
    }

    /// The bare token.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The gateway id.
    pub fn id(&self) -> &str {
        let start = match self.format {
            Format::Compact => 0,
            Format::Uid => 4,
        };
        self.text
            .get(start..start + self.id_len)
            .unwrap_or_default()
    }

    /// The expiry that was signed (floored for the form).
    pub fn expiry(&self) -> DateTime<Utc> {
        self.expiry
    }

    /// The wire form.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The signature, 88 characters of base64.
    pub fn signature(&self) -> &str {
        let len = self.text.len();
        self.text
            .get(len.saturating_sub(SIGNATURE_LEN)..)
            .unwrap_or_default()
    }

    /// The token with a scheme in front, e.g. `GatewayKey gw1&…` (one space, as on output).
    pub fn with_scheme(&self, scheme: Scheme) -> String {
        format!("{scheme} {}", self.text)
    }

    /// The token with an optional scheme in front.
    pub fn render(&self, scheme: Option<Scheme>) -> String {
        match scheme {
            Some(scheme) => self.with_scheme(scheme),
            None => self.text.clone(),
        }
    }

    /// The same token in another form, same signature; uid to compact only for whole minutes.
    pub fn convert(&self, to: Format) -> Result<Token, Error> {
        check_convertible(&self.expiry, to)?;
        Ok(Token::assemble(
            to,
            self.id(),
            self.expiry,
            self.signature(),
        ))
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("id", &self.id())
            .field("expiry", &self.expiry)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

// Equality on tokens compares their signatures in constant time: a program comparing a
// presented token with an expected one must not reveal, by how long `==` takes, how much of the
// signature matched. The other fields are public; they are compared as usual.
impl PartialEq for UntrustedToken<'_> {
    fn eq(&self, other: &Self) -> bool {
        let same_signature = bool::from(
            self.mac.ct_eq(&other.mac)
                & self.signature.as_bytes().ct_eq(other.signature.as_bytes()),
        );
        same_signature
            & (self.scheme == other.scheme)
            & (self.format == other.format)
            & (self.id == other.id)
            & (self.expiry == other.expiry)
            & (self.o_form == other.o_form)
    }
}

impl Eq for UntrustedToken<'_> {}

impl PartialEq for Token {
    fn eq(&self, other: &Token) -> bool {
        bool::from(self.text.as_bytes().ct_eq(other.text.as_bytes()))
            & (self.id_len == other.id_len)
            & (self.expiry == other.expiry)
            & (self.format == other.format)
    }
}

impl Eq for Token {}

// The text determines the other fields, so equal tokens hash alike.
impl std::hash::Hash for Token {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl AsRef<str> for Token {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use proptest::prelude::*;

    fn sig_of(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// Valid tokens of both forms, then arbitrary one- and two-byte edits from bytes that matter.
    fn tokens() -> impl Strategy<Value = Vec<u8>> {
        let valid = (
            "[\\x21-\\x25\\x27-\\x7e]{1,80}",
            proptest::collection::vec(any::<u8>(), 64),
            any::<bool>(),
        )
            .prop_map(|(id, mac, uid)| {
                let sig = sig_of(&mac);
                if uid {
                    format!("uid={id}&ex=2026-04-21T00:44:00.1234567Z&sn={sig}")
                } else {
                    format!("{id}&202604210044&{sig}")
                }
                .into_bytes()
            });
        let edit = (
            any::<prop::sample::Index>(),
            prop::sample::select(b"&=u:.TZ-+/ A0\x00\x7f\xff9".to_vec()),
            0u8..3,
        );
        (valid, proptest::collection::vec(edit, 0..3)).prop_map(|(mut token, edits)| {
            for (at, byte, kind) in edits {
                let i = at.index(token.len());
                match kind {
                    0 => token[i] = byte,
                    1 => token.insert(i, byte),
                    _ => {
                        token.remove(i);
                    }
                }
            }
            token
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// The fast route accepts only what the full route accepts, with the same fields.
        #[test]
        fn routes_agree(token in tokens()) {
            if let Ok(token) = std::str::from_utf8(&token) {
                if let Some(fast) = well_formed(token) {
                    prop_assert_eq!(Ok(fast), parse_fields(token, None));
                }
            }
        }

        /// base64-simd agrees with the base64 crate's strict standard engine on 88 characters.
        #[test]
        fn decoders_agree(sig in "[A-Za-z0-9+/]{84,88}={0,3}", canonical in proptest::collection::vec(any::<u8>(), 64)) {
            for sig in [sig, sig_of(&canonical)] {
                let mut out = [0u8; 66];
                let reference = base64::engine::general_purpose::STANDARD
                    .decode_slice(sig.as_bytes(), &mut out)
                    .ok()
                    .filter(|&n| n == MAC_LEN && sig.len() == SIGNATURE_LEN)
                    .map(|_| out[..MAC_LEN].to_vec());
                prop_assert_eq!(decode_mac(sig.as_bytes()).map(|m| m.to_vec()), reference);
            }
        }
    }

    #[test]
    fn non_canonical_last_character_is_refused() {
        let sig = sig_of(&[0u8; 64]);
        assert!(decode_mac(sig.as_bytes()).is_some());
        // 'A' carries 6 bits, of which the low 4 are padding in the last quantum: 'B' sets one.
        let bad = format!("{}B==", &sig[..85]);
        assert!(decode_mac(bad.as_bytes()).is_none());
    }
}
