//! Which request header holds the token: one rule, and one refusal for each way a request gets it
//! wrong, for every gateway that reads a token from HTTP headers (the tower layer, `serve`, the
//! gRPC ext_authz service, the nginx module).
//!
//! - The token is the value of the first configured header name the request carries.
//! - No configured header at all: [`missing`], `EmptyToken`.
//! - A configured name given more than once (two `Authorization` lines, or one name in two
//!   spellings): [`repeated`], `MalformedToken`. Credentials that could be read two ways are
//!   refused, whichever of them is valid: a proxy in front may keep the first and an upstream
//!   read the last.
//! - A header that is present but empty is a token of no bytes: verifying it gives the parser's
//!   own `EmptyToken`.
//!
//! ```
//! use apim_sas::header;
//!
//! let one: [&[u8]; 1] = [b"GatewayKey gw1&202604210044&..."];
//! assert_eq!(header::select(one)?, Some(&b"GatewayKey gw1&202604210044&..."[..]));
//! assert_eq!(header::select(Vec::<&[u8]>::new())?, None);
//! let two: [&[u8]; 2] = [b"a", b"b"];
//! assert_eq!(header::select(two).unwrap_err().code(), "MalformedToken");
//! assert_eq!(header::missing().code(), "EmptyToken");
//! # Ok::<(), apim_sas::Error>(())
//! ```

use crate::error::{Error, ErrorKind, Target};

/// The token among `values`, every value the request carries under one configured header name:
/// `None` when there is none, the value when there is one, [`repeated`] when there are more.
pub fn select<'v>(values: impl IntoIterator<Item = &'v [u8]>) -> Result<Option<&'v [u8]>, Error> {
    let mut values = values.into_iter();
    let first = values.next();
    if first.is_some() && values.next().is_some() {
        return Err(repeated());
    }
    Ok(first)
}

/// The refusal of a request that carries none of the token headers: `EmptyToken`, HTTP 401.
pub fn missing() -> Error {
    Error::token(
        ErrorKind::EmptyToken,
        Target::Token,
        "token: no token header in the request",
    )
}

/// The refusal of a token header given more than once: `MalformedToken`, HTTP 401.
pub fn repeated() -> Error {
    Error::token(
        ErrorKind::MalformedToken,
        Target::Token,
        "token: the header is given more than once",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_is_the_token_none_is_none_two_are_refused() {
        let none: [&[u8]; 0] = [];
        assert_eq!(select(none), Ok(None));
        let one: [&[u8]; 1] = [b""];
        assert_eq!(select(one), Ok(Some(&b""[..])));
        let three: [&[u8]; 3] = [b"a", b"a", b"a"];
        let err = select(three).unwrap_err();
        assert_eq!(
            (err.code(), err.target(), err.http_status()),
            ("MalformedToken", "token", 401)
        );
        assert_eq!(err.message(), "token: the header is given more than once");
        let err = missing();
        assert_eq!(
            (err.code(), err.target(), err.http_status(), err.message()),
            (
                "EmptyToken",
                "token",
                401,
                "token: no token header in the request"
            )
        );
    }
}
