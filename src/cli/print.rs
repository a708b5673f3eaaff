//! One printing module for every command: text for people, JSON for programs, and the
//! deployment outputs (Kubernetes Secret, Docker env file). Text goes to stdout, text errors to
//! stderr; `--output json` prints exactly one JSON document on stdout, success or failure.

use std::io::{self, Write};

use apim_sas::chrono::{DateTime, TimeDelta, Utc};
use apim_sas::{Error, Format, KeyType, Scheme, Token, UntrustedToken, Verified};
use serde::Serialize;

use super::values::{human, rfc3339, seconds_until};

/// Azure's ErrorResponse body: `{"code", "message", "target"}`.
#[derive(Serialize)]
pub(crate) struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
    target: &'a str,
}

impl<'a> From<&'a Error> for ErrorBody<'a> {
    fn from(err: &'a Error) -> Self {
        ErrorBody {
            code: err.code(),
            message: err.message(),
            target: err.target(),
        }
    }
}

#[derive(Serialize)]
struct ErrorResponse<'a> {
    error: ErrorBody<'a>,
}

fn json_line(value: &impl Serialize) {
    let mut out = io::stdout().lock();
    // A closed stdout (a pipe to `head`) is not worth a panic: nothing is left to tell.
    let _ = serde_json::to_writer(&mut out, value);
    let _ = out.write_all(b"\n");
}

fn text_line(line: &str) {
    let _ = writeln!(io::stdout().lock(), "{line}");
}

/// An error: `{"error": {…}}` on stdout for JSON, `error: Code: message` on stderr for text.
pub(crate) fn error(json: bool, err: &Error) {
    if json {
        json_line(&ErrorResponse { error: err.into() });
    } else {
        eprintln!("error: {err}");
    }
}

/// The token with the scheme the user asked for.
pub(crate) fn render(bare: &str, scheme: Option<Scheme>) -> String {
    match scheme {
        Some(scheme) => format!("{scheme} {bare}"),
        None => bare.to_owned(),
    }
}

/// How `mint` prints its token.
pub(crate) enum MintAs<'a> {
    Text,
    Json,
    K8sSecret {
        name: &'a str,
        namespace: Option<&'a str>,
    },
    DockerEnv,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Minted<'a> {
    value: &'a str,
    id: &'a str,
    expiry: String,
    key_type: &'static str,
    format: &'a str,
}

/// A YAML double-quoted scalar; JSON's string syntax is a subset of it.
fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// A token `mint` made.
pub(crate) fn minted(how: MintAs<'_>, token: &Token, scheme: Option<Scheme>, key_type: KeyType) {
    match how {
        MintAs::Text => text_line(&render(token.as_str(), scheme)),
        MintAs::Json => json_line(&Minted {
            value: &render(token.as_str(), scheme),
            id: token.id(),
            expiry: rfc3339(token.expiry()),
            key_type: key_type.as_str(),
            format: token.format().as_str(),
        }),
        MintAs::K8sSecret { name, namespace } => {
            let value = token.with_scheme(Scheme::GatewayKey);
            let mut yaml = String::new();
            yaml.push_str("apiVersion: v1\nkind: Secret\nmetadata:\n");
            yaml.push_str(&format!("  name: {}\n", yaml_str(name)));
            if let Some(namespace) = namespace {
                yaml.push_str(&format!("  namespace: {}\n", yaml_str(namespace)));
            }
            yaml.push_str("  annotations:\n");
            yaml.push_str(&format!(
                "    apim-sas/gateway-id: {}\n    apim-sas/expiry: {}\n",
                yaml_str(token.id()),
                yaml_str(&rfc3339(token.expiry()))
            ));
            yaml.push_str("type: Opaque\n");
            // `stringData` for people reading the manifest, `data` (base64) for tools that read
            // Secrets back as the API server stores them; the same value in both.
            yaml.push_str(&format!("stringData:\n  value: {}\n", yaml_str(&value)));
            yaml.push_str(&format!("data:\n  value: {}\n", base64(&value)));
            let _ = io::stdout().lock().write_all(yaml.as_bytes());
        }
        MintAs::DockerEnv => text_line(&format!(
            "config.service.auth={}",
            token.with_scheme(Scheme::GatewayKey)
        )),
    }
}

fn base64(text: &str) -> String {
    base64_simd::STANDARD.encode_to_string(text)
}

/// `verify`'s JSON for a valid token (also one `--batch` line, with `line`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Valid<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u64>,
    valid: bool,
    id: &'a str,
    expiry: String,
    key_type: &'static str,
    format: &'a str,
    expires_in_seconds: i64,
}

impl<'a> Valid<'a> {
    pub(crate) fn new(line: Option<u64>, verified: &Verified<'a>, now: DateTime<Utc>) -> Self {
        Valid {
            line,
            valid: true,
            id: verified.id(),
            expiry: rfc3339(verified.expiry()),
            key_type: verified.key_type().as_str(),
            format: verified.format().as_str(),
            expires_in_seconds: seconds_until(verified.expiry(), now),
        }
    }
}

/// `verify`'s JSON for a refused token (also one `--batch` line, with `line`).
#[derive(Serialize)]
pub(crate) struct Invalid<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u64>,
    valid: bool,
    error: ErrorBody<'a>,
}

impl<'a> Invalid<'a> {
    pub(crate) fn new(line: Option<u64>, err: &'a Error) -> Self {
        Invalid {
            line,
            valid: false,
            error: err.into(),
        }
    }
}

/// One `--batch` output line, appended to `out`.
pub(crate) fn batch_line(
    out: &mut Vec<u8>,
    line: u64,
    result: &Result<Verified<'_>, Error>,
    now: DateTime<Utc>,
) {
    let _ = match result {
        Ok(verified) => serde_json::to_writer(&mut *out, &Valid::new(Some(line), verified, now)),
        Err(err) => serde_json::to_writer(&mut *out, &Invalid::new(Some(line), err)),
    };
    out.push(b'\n');
}

/// The result of `verify` for one token.
pub(crate) fn verified(json: bool, result: &Result<Verified<'_>, Error>, now: DateTime<Utc>) {
    match (json, result) {
        (true, Ok(v)) => json_line(&Valid::new(None, v, now)),
        (true, Err(err)) => json_line(&Invalid::new(None, err)),
        (false, Ok(v)) => text_line(&format!(
            "valid: gateway {}, {} key, {} form, expires {} ({})",
            v.id(),
            v.key_type(),
            v.format(),
            rfc3339(v.expiry()),
            relative(v.expires_in(now)),
        )),
        (false, Err(err)) => eprintln!("invalid: {err}"),
    }
}

fn relative(left: TimeDelta) -> String {
    if left > TimeDelta::zero() {
        format!("in {}", human(left))
    } else {
        format!("{} ago", human(left))
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Inspection<'a> {
    id: &'a str,
    format: &'a str,
    scheme: Option<&'a str>,
    expiry: String,
    expires_in_seconds: i64,
    expired: bool,
    verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_within: Option<bool>,
}

/// What `inspect` shows: the claims, marked unverified.
pub(crate) fn inspected(
    json: bool,
    token: &UntrustedToken<'_>,
    now: DateTime<Utc>,
    expires_within: Option<(TimeDelta, bool)>,
) {
    if json {
        json_line(&Inspection {
            id: token.id(),
            format: token.format().as_str(),
            scheme: token.scheme().map(Scheme::as_str),
            expiry: rfc3339(token.expiry()),
            expires_in_seconds: seconds_until(token.expiry(), now),
            expired: token.is_expired(now),
            verified: false,
            expires_within: expires_within.map(|(_, within)| within),
        });
        return;
    }
    let left = token.expiry().signed_duration_since(now);
    let mut text = format!(
        "id:       {}\nformat:   {}\nscheme:   {}\nexpiry:   {}\n",
        token.id(),
        token.format(),
        token.scheme().map_or("none", Scheme::as_str),
        rfc3339(token.expiry()),
    );
    if token.is_expired(now) {
        text.push_str(&format!("expired:  {}\n", relative(left)));
    } else {
        text.push_str(&format!("expires:  {}\n", relative(left)));
    }
    if let Some((window, within)) = expires_within {
        let verdict = if within { "yes" } else { "no" };
        text.push_str(&format!("within:   {verdict} (window {})\n", human(window)));
    }
    text.push_str("verified: false (inspect uses no key; verify checks the signature)");
    text_line(&text);
}

#[derive(Serialize)]
struct Converted<'a> {
    value: &'a str,
    id: &'a str,
    expiry: String,
    format: &'a str,
}

/// What `convert` made.
pub(crate) fn converted(json: bool, value: &str, token: &UntrustedToken<'_>, to: Format) {
    if json {
        json_line(&Converted {
            value,
            id: token.id(),
            expiry: rfc3339(token.expiry()),
            format: to.as_str(),
        });
    } else {
        text_line(value);
    }
}
