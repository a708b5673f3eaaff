//! Errors: one type, a stable code per failure, and the HTTP status the operation implies.
//!
//! Every error carries four things (the table of codes is in `docs/format.md`):
//! - a stable [`code`](Error::code) (`"MalformedExpiry"`, `"SignatureMismatch"`, …) for programs;
//! - a human [`message`](Error::message) naming the field and the rule it broke;
//! - a [`target`](Error::target): the field at fault (`id`, `expiry`, `signature`, `scheme`,
//!   `token`, `keyType`, `key`);
//! - the [`http_status`](Error::http_status) a gateway should answer with: `401` for every token
//!   that fails parsing or verification, `400` for a bad request to mint or convert, `500` for
//!   configuration (keys, key files, keystores).
//!
//! No message ever contains key material. Messages about an untrusted token describe the rule it
//! broke without echoing its bytes: those bytes come from the network, and copying them into logs
//! invites log injection. It also keeps refusing a bad token free of allocation: parse errors
//! carry `'static` messages.

use std::borrow::Cow;
use std::fmt;

/// The stable kind of an [`Error`]; [`ErrorKind::as_str`] is its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Nothing to parse.
    EmptyToken,
    /// The token is over 1024 bytes.
    TokenTooLong,
    /// Structure: scheme, field count, field names or order, whitespace, bytes that are not UTF-8.
    MalformedToken,
    /// The gateway id breaks the id rules.
    InvalidGatewayId,
    /// The expiry field is not exactly its form, or not a real instant.
    MalformedExpiry,
    /// The signature is not 88 canonical standard-base64 characters.
    MalformedSignature,
    /// No key is known for this gateway id.
    GatewayNotExist,
    /// No key of this gateway produces this signature.
    SignatureMismatch,
    /// `now >= expiry + leeway`.
    TokenExpired,
    /// The expiry is beyond the maximum lifetime (mint and verify).
    ExpiryTooFar,
    /// Minting with an empty gateway id.
    EmptyGatewayId,
    /// Minting for `managed`, the Azure-hosted gateway.
    InvalidGatewayLocation,
    /// A key type other than `primary` / `secondary`.
    InvalidKeyType,
    /// An empty key.
    EmptyKey,
    /// A key with control characters.
    InvalidKey,
    /// The key file has no key of the requested type.
    KeyNotFound,
    /// Minting with an expiry that is not after now.
    ExpiryInPast,
    /// An expiry, duration or instant given by the caller that cannot be read or represented.
    InvalidExpiry,
    /// Converting a uid token whose expiry is not a whole minute to the compact form.
    ExpiryNotWholeMinute,
    /// A key file or keystore that cannot be read or parsed.
    InvalidKeyFile,
    /// The command's own input (`--input`, stdin, `renew --file`) cannot be read.
    UnreadableInput,
    /// A flag value the command cannot use: a Kubernetes name, a label, an option the chosen
    /// output ignores.
    InvalidArgument,
}

impl ErrorKind {
    /// The stable code, e.g. `"SignatureMismatch"` (the table in `docs/format.md`).
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::EmptyToken => "EmptyToken",
            ErrorKind::TokenTooLong => "TokenTooLong",
            ErrorKind::MalformedToken => "MalformedToken",
            ErrorKind::InvalidGatewayId => "InvalidGatewayId",
            ErrorKind::MalformedExpiry => "MalformedExpiry",
            ErrorKind::MalformedSignature => "MalformedSignature",
            ErrorKind::GatewayNotExist => "GatewayNotExist",
            ErrorKind::SignatureMismatch => "SignatureMismatch",
            ErrorKind::TokenExpired => "TokenExpired",
            ErrorKind::ExpiryTooFar => "ExpiryTooFar",
            ErrorKind::EmptyGatewayId => "EmptyGatewayId",
            ErrorKind::InvalidGatewayLocation => "InvalidGatewayLocation",
            ErrorKind::InvalidKeyType => "InvalidKeyType",
            ErrorKind::EmptyKey => "EmptyKey",
            ErrorKind::InvalidKey => "InvalidKey",
            ErrorKind::KeyNotFound => "KeyNotFound",
            ErrorKind::ExpiryInPast => "ExpiryInPast",
            ErrorKind::InvalidExpiry => "InvalidExpiry",
            ErrorKind::ExpiryNotWholeMinute => "ExpiryNotWholeMinute",
            ErrorKind::InvalidKeyFile => "InvalidKeyFile",
            ErrorKind::UnreadableInput => "UnreadableInput",
            ErrorKind::InvalidArgument => "InvalidArgument",
        }
    }

    /// Every kind, in the order of the error table (`docs/format.md`). A slice, so that a new
    /// kind does not change its type.
    pub const ALL: &'static [ErrorKind] = &[
        ErrorKind::EmptyToken,
        ErrorKind::TokenTooLong,
        ErrorKind::MalformedToken,
        ErrorKind::InvalidGatewayId,
        ErrorKind::MalformedExpiry,
        ErrorKind::MalformedSignature,
        ErrorKind::GatewayNotExist,
        ErrorKind::SignatureMismatch,
        ErrorKind::TokenExpired,
        ErrorKind::ExpiryTooFar,
        ErrorKind::EmptyGatewayId,
        ErrorKind::InvalidGatewayLocation,
        ErrorKind::InvalidKeyType,
        ErrorKind::EmptyKey,
        ErrorKind::InvalidKey,
        ErrorKind::KeyNotFound,
        ErrorKind::ExpiryInPast,
        ErrorKind::InvalidExpiry,
        ErrorKind::ExpiryNotWholeMinute,
        ErrorKind::InvalidKeyFile,
        ErrorKind::UnreadableInput,
        ErrorKind::InvalidArgument,
    ];
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The field an error is about; [`Target::as_str`] is its wire name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Target {
    /// The gateway id.
    Id,
    /// The expiry.
    Expiry,
    /// The signature.
    Signature,
    /// The scheme prefix.
    Scheme,
    /// The token as a whole.
    Token,
    /// The key type.
    KeyType,
    /// The key, key file or keystore.
    Key,
}

impl Target {
    /// The wire name: `id`, `expiry`, `signature`, `scheme`, `token`, `keyType`, `key`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Target::Id => "id",
            Target::Expiry => "expiry",
            Target::Signature => "signature",
            Target::Scheme => "scheme",
            Target::Token => "token",
            Target::KeyType => "keyType",
            Target::Key => "key",
        }
    }
}

/// The operation an error came from, which decides its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Parsing or verifying a presented token: 401.
    Verify,
    /// A request to mint or convert: 400.
    Request,
    /// Keys, key files, keystores: 500.
    Config,
}

impl Op {
    const fn status(self) -> u16 {
        match self {
            Op::Verify => 401,
            Op::Request => 400,
            Op::Config => 500,
        }
    }
}

/// An apim-sas error: stable code, message, target field and HTTP status.
///
/// ```
/// use apim_sas::UntrustedToken;
///
/// let err = UntrustedToken::parse("gw1&202613010000&sig").unwrap_err();
/// assert_eq!(err.code(), "MalformedExpiry");
/// assert_eq!(err.target(), "expiry");
/// assert_eq!(err.http_status(), 401);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    target: Target,
    status: u16,
    message: Cow<'static, str>,
}

impl Error {
    pub(crate) fn new(
        kind: ErrorKind,
        target: Target,
        op: Op,
        message: impl Into<Cow<'static, str>>,
    ) -> Error {
        Error {
            kind,
            target,
            status: op.status(),
            message: message.into(),
        }
    }

    /// A token-side error (parsing or verification): HTTP 401.
    pub(crate) fn token(kind: ErrorKind, target: Target, message: &'static str) -> Error {
        Error::new(kind, target, Op::Verify, message)
    }

    /// An error about a request to mint or convert: HTTP 400.
    pub(crate) fn request(
        kind: ErrorKind,
        target: Target,
        message: impl Into<Cow<'static, str>>,
    ) -> Error {
        Error::new(kind, target, Op::Request, message)
    }

    /// A configuration error (keys, keystores): HTTP 500.
    pub(crate) fn config(
        kind: ErrorKind,
        target: Target,
        message: impl Into<Cow<'static, str>>,
    ) -> Error {
        Error::new(kind, target, Op::Config, message)
    }

    /// The stable code, e.g. `"SignatureMismatch"`.
    pub fn code(&self) -> &'static str {
        self.kind.as_str()
    }

    /// The kind, for matching.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The field at fault: `id`, `expiry`, `signature`, `scheme`, `token`, `keyType` or `key`.
    pub fn target(&self) -> &'static str {
        self.target.as_str()
    }

    /// The field at fault, as an enum ([`Error::target`] is its name, as [`Error::code`] is
    /// [`Error::kind`]'s).
    pub fn target_kind(&self) -> Target {
        self.target
    }

    /// The human message. Never contains key material.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status a service should answer with: 401, 400 or 500.
    pub fn http_status(&self) -> u16 {
        self.status
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

impl std::error::Error for Error {}
