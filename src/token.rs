//! The token's wire forms and their parsers: one strict parser per form.
//!
//! | form | bare token |
//! | --- | --- |
//! | compact | `{id}&{yyyyMMddHHmm}&{signature}` |
//! | uid | `uid={id}&ex={yyyy-MM-ddTHH:mm:ss.fffffffZ}&sn={signature}` |
//!
//! Either may carry a scheme, `GatewayKey ` or `SharedAccessSignature ` (any letter case, one or
//! more ASCII spaces), or come in the developer portal's spelling,
//! `SharedAccessSignature token="{token}",refresh="true"` (`refresh` `true`, `false` or absent,
//! nothing else; see `docs/format.md`). Parsing never trims and never allocates. The checks run
//! in this order,
//! each with its own code: empty (`EmptyToken`), length (`TokenTooLong`), scheme, whitespace,
//! control characters and UTF-8 (`MalformedToken`), field count, names and order
//! (`MalformedToken`), then the fields left to right: id (`InvalidGatewayId`), expiry
//! (`MalformedExpiry`), signature (`MalformedSignature`).

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
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
#[non_exhaustive]
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
#[non_exhaustive]
pub enum Scheme {
    /// `GatewayKey `: the self-hosted gateway's `config.service.auth`.
    GatewayKey,
    /// `SharedAccessSignature `: the management API's `Authorization` header.
    SharedAccessSignature,
    /// `SharedAccessSignature token="…",refresh="true"`: the developer portal's spelling.
    Portal,
}

impl Scheme {
    /// The scheme's name: `GatewayKey`, `SharedAccessSignature`, or `portal` for the developer
    /// portal's `SharedAccessSignature token="…"` spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::GatewayKey => "GatewayKey",
            Scheme::SharedAccessSignature => "SharedAccessSignature",
            Scheme::Portal => "portal",
        }
    }

    /// A bare token written with this scheme: `GatewayKey gw1&…`, `SharedAccessSignature uid=…`,
    /// `SharedAccessSignature token="gw1&…",refresh="true"`.
    pub fn apply(self, bare: &str) -> String {
        match self {
            Scheme::GatewayKey | Scheme::SharedAccessSignature => {
                format!("{} {bare}", self.as_str())
            }
            Scheme::Portal => format!("SharedAccessSignature token=\"{bare}\",refresh=\"true\""),
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

/// Why an id breaks the id rules of `docs/format.md`, or `None` when it is valid.
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
    } else if matches!(id.first(), Some(b'c' | b'C' | b'a' | b'A')) && slip_prefix(id) {
        Some(
            "id: the gateway id must not start with 'config.service.auth=' or 'Authorization:' \
             (what an env file's line or a header's name put in front of a token)",
        )
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
/// The `base64` crate's standard engine is strict: it refuses the URL-safe alphabet, missing or
/// extra padding, and non-canonical trailing bits (the unused low bits of the last data
/// character must be zero).
#[inline]
fn decode_mac(sig: &[u8]) -> Option<[u8; MAC_LEN]> {
    if sig.len() != SIGNATURE_LEN {
        return None;
    }
    // 88 characters decode to at most 66 bytes; exactly 64 when the padding is `==`.
    let mut out = [0u8; 66];
    let n = STANDARD.decode_slice(sig, &mut out).ok()?;
    let (mac, _) = out.split_first_chunk::<MAC_LEN>()?;
    (n == MAC_LEN).then_some(*mac)
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

/// Whether what follows `SharedAccessSignature ` is the portal form's parameter list (its
/// parameter names in any case, so that `Token="…"` is refused as the portal form it tries to be).
fn is_portal(params: &str) -> bool {
    ["token=", "refresh="].iter().any(|name| {
        params
            .get(..name.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(name))
    })
}

/// The token inside the developer portal's spelling, `token="…"` with an optional
/// `,refresh="true"` or `,refresh="false"` after it and nothing else. Parameter names are lower
/// case, the quotes are required, and the inner token is a bare one (a scheme or a nested portal
/// form inside holds a space, which the character check refuses).
fn portal_token(params: &str) -> Result<&str, Error> {
    const SHAPE: &str =
        "token: the portal form is SharedAccessSignature token=\"<token>\",refresh=\"true\"";
    let inner_and_rest = params
        .strip_prefix("token=\"")
        .ok_or_else(|| malformed(Target::Token, SHAPE))?;
    let end = memchr::memchr(b'"', inner_and_rest.as_bytes())
        .ok_or_else(|| malformed(Target::Token, SHAPE))?;
    let (inner, rest) = inner_and_rest.split_at(end);
    match rest {
        "\"" | "\",refresh=\"true\"" | "\",refresh=\"false\"" => Ok(inner),
        _ => Err(malformed(
            Target::Token,
            "token: after the portal form's token=\"…\" only ,refresh=\"true\" or ,refresh=\"false\" may follow",
        )),
    }
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

const SLIP_PREFIX: &str =
    "token: it starts with config.service.auth=, the env file's variable name; the token is what \
     follows the '='";

/// Whether an id starts with what only a slip puts there: the env file's variable name or the
/// header name, in any case (Azure's gateway names hold neither `=` nor `:`). Out of line, and
/// `id_problem` tests the first byte before calling it: `id_problem` is on every token's path,
/// and with this inlined it grew past what the compiler inlines into the parser, which cost an
/// uncached verification about 1 %.
#[inline(never)]
fn slip_prefix(id: &[u8]) -> bool {
    let starts = |prefix: &[u8]| {
        id.get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    };
    // The first byte decides which prefix is possible: one compare at most, none for most ids.
    match id.first() {
        Some(b'c' | b'C') => starts(b"config.service.auth="),
        Some(b'a' | b'A') => starts(b"authorization:"),
        _ => false,
    }
}

/// The refusal of a token pasted with its wrapping, or `None` when it shows none. Only called
/// for tokens that failed (or whose id starts with a slip), so it costs a valid token nothing.
fn slip(token: &str) -> Option<Error> {
    let quoted = |q: char| token.len() >= 2 && token.starts_with(q) && token.ends_with(q);
    let starts = |prefix: &str| {
        token
            .as_bytes()
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
    };
    let message = if quoted('"') || quoted('\'') {
        "token: wrapped in quotes, which are not part of a token; print it without them (jq -r)"
    } else if starts("config.service.auth=") {
        SLIP_PREFIX
    } else if starts("authorization:") {
        "token: it starts with the header name Authorization:; the token is the header's value"
    } else if !token.contains('&') && token.contains("%26") {
        "token: it looks URL-encoded (%26 where '&' belongs); decode it first"
    } else {
        return None;
    };
    Some(malformed(Target::Token, message))
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
/// assert!(t.convert(Format::Uid)?.as_str().starts_with("uid=gw1&ex=2019-04-21T00:44:00.0000000Z&sn=zmRTy"));
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
    ///
    /// A token pasted with its wrapping is `MalformedToken` with a message naming the slip,
    /// whatever else is wrong with it: in quotes (`"…"`, what `jq` without `-r` prints), after
    /// the env file's `config.service.auth=` or the header name `Authorization:`, or
    /// URL-encoded as a whole (`%26` where `&` belongs).
    pub fn parse(token: &'a str) -> Result<UntrustedToken<'a>, Error> {
        check_size(token.as_bytes())?;
        UntrustedToken::parse_spelling(token).map_err(|e| slip(token).unwrap_or(e))
    }

    /// Every spelling `docs/format.md` lists: a scheme, the portal form, the bare forms.
    fn parse_spelling(token: &'a str) -> Result<UntrustedToken<'a>, Error> {
        let (scheme, rest) = match split_scheme(token) {
            (Some(Scheme::SharedAccessSignature), params) if is_portal(params) => {
                (Some(Scheme::Portal), portal_token(params)?)
            }
            split => split,
        };
        if rest.is_empty() {
            return Err(Error::token(
                ErrorKind::EmptyToken,
                Target::Token,
                "token: nothing after the scheme",
            ));
        }
        let parsed = parse_fields(rest, scheme)?;
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
    /// (`ExpiryNotWholeMinute` otherwise). The result is still unverified: converting proves
    /// nothing about the signature.
    pub fn convert(&self, to: Format) -> Result<Token, Error> {
        check_convertible(&self.expiry, to)?;
        Ok(Token::assemble(
            to,
            self.id,
            self.expiry,
            &self.o_form,
            self.signature.as_bytes(),
        ))
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

/// Writes the bare token of `format` from its parts: the expiry's O form (floored for the form)
/// and the signature. Built as bytes and checked as UTF-8 once: the parts are ASCII (the id and
/// the signature were checked or written so), so the text never comes out empty.
fn assemble(format: Format, id: &str, o_form: &OForm, signature: &[u8]) -> String {
    let mut text = Vec::with_capacity(id.len() + 40 + SIGNATURE_LEN);
    match format {
        Format::Compact => {
            text.extend_from_slice(id.as_bytes());
            text.push(b'&');
            text.extend_from_slice(&expiry::compact_of(o_form));
            text.push(b'&');
        }
        Format::Uid => {
            text.extend_from_slice(b"uid=");
            text.extend_from_slice(id.as_bytes());
            text.extend_from_slice(b"&ex=");
            text.extend_from_slice(o_form);
            text.extend_from_slice(b"&sn=");
        }
    }
    text.extend_from_slice(signature);
    String::from_utf8(text).unwrap_or_default()
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
    /// A token of `format` from its parts: `o_form` is the O form of `expiry` (floored for the
    /// form), the bytes that were signed.
    pub(crate) fn assemble(
        format: Format,
        id: &str,
        expiry: DateTime<Utc>,
        o_form: &OForm,
        signature: &[u8],
    ) -> Token {
        Token {
            text: assemble(format, id, o_form, signature),
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
        scheme.apply(&self.text)
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
            &expiry::to_o_form(&self.expiry),
            self.signature().as_bytes(),
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
    use proptest::prelude::*;

    fn sig_of(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Every 64-byte MAC's standard encoding decodes back to it.
        #[test]
        fn signatures_round_trip(mac in proptest::collection::vec(any::<u8>(), 64)) {
            prop_assert_eq!(decode_mac(sig_of(&mac).as_bytes()).map(|m| m.to_vec()), Some(mac));
        }

        /// Anything near a signature is accepted exactly when it is the canonical encoding of
        /// what it decodes to: re-encoding gives back the same 88 characters.
        #[test]
        fn only_canonical_signatures_decode(sig in "[A-Za-z0-9+/_-]{84,88}={0,3}") {
            let canonical = decode_mac(sig.as_bytes()).map(|mac| sig_of(&mac));
            if let Some(again) = canonical {
                prop_assert_eq!(again, sig);
            } else {
                let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(sig.trim_end_matches('='))
                    .ok()
                    .filter(|b| b.len() == MAC_LEN);
                prop_assert!(bytes.is_none_or(|b| sig_of(&b) != sig));
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
