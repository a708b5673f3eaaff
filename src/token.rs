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

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, Timelike, Utc};

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
    } else if id.iter().any(|&b| !(0x21..=0x7e).contains(&b) || b == b'&') {
        Some("id: the gateway id must be printable ASCII without spaces or '&'")
    } else if id.starts_with(b"uid=") {
        Some("id: the gateway id must not start with 'uid='")
    } else {
        None
    }
}

fn check_id(id: &[u8]) -> Result<&str, Error> {
    if let Some(problem) = id_problem(id) {
        return Err(Error::token(
            ErrorKind::InvalidGatewayId,
            Target::Id,
            problem,
        ));
    }
    std::str::from_utf8(id).map_err(|_| {
        Error::token(
            ErrorKind::InvalidGatewayId,
            Target::Id,
            "id: the gateway id must be printable ASCII",
        )
    })
}

/// Decodes a signature: exactly 88 characters of canonical, padded standard base64 for 64 bytes.
fn decode_signature(sig: &[u8]) -> Result<(&str, [u8; MAC_LEN]), Error> {
    fn bad(message: &'static str) -> Error {
        Error::token(ErrorKind::MalformedSignature, Target::Signature, message)
    }
    let refuse = |sig: &[u8]| {
        if sig.contains(&b'%') {
            bad("signature: it looks URL-encoded (%2B, %2F, %3D); decode it first")
        } else if sig.iter().any(|&b| b == b'-' || b == b'_') {
            bad("signature: it uses the URL-safe alphabet ('-', '_'); expected standard base64 ('+', '/')")
        } else if sig.len() != SIGNATURE_LEN {
            bad("signature: must be exactly 88 characters of standard base64 ending in '=='")
        } else {
            bad("signature: not canonical standard base64 of 64 bytes ('A-Z a-z 0-9 + /', '==' padding)")
        }
    };
    if sig.len() != SIGNATURE_LEN {
        return Err(refuse(sig));
    }
    // The base64 crate's standard engine requires canonical padding and zero trailing bits.
    let mut out = [0u8; MAC_LEN + 2];
    match STANDARD.decode_slice(sig, &mut out) {
        Ok(MAC_LEN) => {}
        _ => return Err(refuse(sig)),
    }
    let text = std::str::from_utf8(sig).map_err(|_| refuse(sig))?;
    let mut mac = [0u8; MAC_LEN];
    mac.copy_from_slice(&out[..MAC_LEN]);
    Ok((text, mac))
}

/// Splits off the scheme: a known name (any case) followed by one or more ASCII spaces.
fn split_scheme(input: &[u8]) -> Result<(Option<Scheme>, &[u8]), Error> {
    let Some(space) = input.iter().position(|&b| b == b' ') else {
        return Ok((None, input));
    };
    let (name, after) = input.split_at(space);
    let scheme = if name.eq_ignore_ascii_case(b"GatewayKey") {
        Scheme::GatewayKey
    } else if name.eq_ignore_ascii_case(b"SharedAccessSignature") {
        Scheme::SharedAccessSignature
    } else if !name.is_empty() && name.iter().all(u8::is_ascii_alphabetic) {
        return Err(malformed(
            Target::Scheme,
            "scheme: only 'GatewayKey' and 'SharedAccessSignature' are accepted",
        ));
    } else {
        return Err(malformed(
            Target::Token,
            "token: whitespace inside the token",
        ));
    };
    let start = after.iter().position(|&b| b != b' ').unwrap_or(after.len());
    Ok((Some(scheme), &after[start..]))
}

/// Refuses whitespace, control characters and bytes that are not UTF-8 anywhere in the token.
///
/// Printable non-ASCII characters pass here and are refused by the field they sit in.
fn check_characters(rest: &[u8]) -> Result<(), Error> {
    // Fast path without early exit, so that it vectorises: all bytes printable ASCII.
    let clean = rest
        .iter()
        .fold(true, |ok, &b| ok & (b.wrapping_sub(0x21) < 0x5e));
    if clean {
        return Ok(());
    }
    let text = std::str::from_utf8(rest)
        .map_err(|_| malformed(Target::Token, "token: bytes that are not UTF-8"))?;
    if text.chars().any(char::is_whitespace) {
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
fn three_fields(s: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let mut fields = s.splitn(4, |&b| b == b'&');
    match (fields.next(), fields.next(), fields.next(), fields.next()) {
        (Some(a), Some(b), Some(c), None) => Some((a, b, c)),
        _ => None,
    }
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
        UntrustedToken::parse_bytes(token.as_bytes())
    }

    /// Parses raw bytes (from a socket, a file): bytes that are not UTF-8 are `MalformedToken`.
    pub fn parse_bytes(input: &'a [u8]) -> Result<UntrustedToken<'a>, Error> {
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
        // Whitespace alone is nothing to parse too (what the CLI sees after trimming a line).
        if input.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::token(
                ErrorKind::EmptyToken,
                Target::Token,
                "token: only whitespace, nothing to parse",
            ));
        }
        let (scheme, rest) = split_scheme(input)?;
        if rest.is_empty() {
            return Err(Error::token(
                ErrorKind::EmptyToken,
                Target::Token,
                "token: nothing after the scheme",
            ));
        }
        check_characters(rest)?;
        let parsed = match rest.strip_prefix(b"uid=") {
            Some(fields) => parse_uid(fields),
            None => parse_compact(rest),
        }?;
        Ok(UntrustedToken { scheme, ..parsed })
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

fn parse_compact(rest: &[u8]) -> Result<UntrustedToken<'_>, Error> {
    let Some((id, expiry, signature)) = three_fields(rest) else {
        return Err(malformed(
            Target::Token,
            "token: the compact form has three fields, id&yyyyMMddHHmm&signature",
        ));
    };
    if expiry.starts_with(b"uid=") || signature.starts_with(b"uid=") {
        return Err(malformed(
            Target::Token,
            "token: the uid form's fields come in the order uid=, ex=, sn=",
        ));
    }
    let id = check_id(id)?;
    let (expiry, o_form) = expiry::parse_compact(expiry)?;
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

fn parse_uid(fields: &[u8]) -> Result<UntrustedToken<'_>, Error> {
    let Some((id, expiry, signature)) = three_fields(fields) else {
        return Err(malformed(
            Target::Token,
            "token: the uid form has three fields, uid=…&ex=…&sn=…",
        ));
    };
    let (Some(expiry), Some(signature)) =
        (expiry.strip_prefix(b"ex="), signature.strip_prefix(b"sn="))
    else {
        return Err(malformed(
            Target::Token,
            "token: the uid form's fields are uid=, ex=, sn=, in that order and lower case",
        ));
    };
    let id = check_id(id)?;
    let (expiry, o_form) = expiry::parse_o(expiry)?;
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
            push_ascii(&mut text, &expiry::to_compact(expiry));
            text.push('&');
        }
        Format::Uid => {
            text.push_str("uid=");
            text.push_str(id);
            text.push_str("&ex=");
            push_ascii(&mut text, &expiry::to_o_form(expiry));
            text.push_str("&sn=");
        }
    }
    text.push_str(signature);
    text
}

fn push_ascii(text: &mut String, bytes: &[u8]) {
    text.extend(bytes.iter().map(|&b| char::from(b)));
}

/// A token this crate minted: the bare token plus its parts.
///
/// `Display` writes the bare token, as Azure's generate-token operation returns it;
/// [`Token::with_scheme`] renders it with a scheme.
#[derive(Clone, PartialEq, Eq, Hash)]
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
        self.text.get(len - SIGNATURE_LEN..).unwrap_or_default()
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

impl AsRef<str> for Token {
    fn as_ref(&self) -> &str {
        &self.text
    }
}
