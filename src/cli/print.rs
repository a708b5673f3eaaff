//! One printing module for every command: text for people, JSON for programs, and the
//! deployment outputs (Kubernetes Secret, Docker env file). Text goes to stdout, text errors to
//! stderr; `--output json` prints exactly one JSON document on stdout, success or failure.

use std::io::{self, Write};

use apim_sas::chrono::{DateTime, TimeDelta, Utc};
use apim_sas::{Format, KeyType, Scheme, Token, UntrustedToken, Verified};
use serde::Serialize;

use apim_sas::human_duration as human;

use super::failure::Problem;
use super::values::{rfc3339, seconds_until};
use super::{form, hook};

/// Azure's ErrorResponse body: `{"code", "message", "target"}`.
#[derive(Serialize)]
pub(crate) struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
    target: &'a str,
}

impl<'a> From<&'a Problem> for ErrorBody<'a> {
    fn from(err: &'a Problem) -> Self {
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

/// Writes `bytes` to stdout and flushes them: the caller learns whether they arrived (a full
/// disk behind `> secret.yaml` must not exit 0; see `Failure::wrote`).
fn emit(bytes: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

fn json_line(value: &impl Serialize) -> io::Result<()> {
    let mut text = serde_json::to_vec(value).map_err(io::Error::other)?;
    text.push(b'\n');
    emit(&text)
}

fn text_line(line: &str) -> io::Result<()> {
    emit(format!("{line}\n").as_bytes())
}

/// An error: `{"error": {…}}` on stdout for JSON, `error: Code: message` on stderr for text.
pub(crate) fn error(json: bool, err: &Problem) {
    // A stdout that cannot take the error document (the very error may be about stdout) leaves
    // stderr to tell it.
    if !json || json_line(&ErrorResponse { error: err.into() }).is_err() {
        eprintln!("error: {err}");
    }
}

/// How `mint` prints its token.
pub(crate) enum MintAs<'a> {
    Text,
    Json,
    K8sSecret {
        name: &'a str,
        namespace: Option<&'a str>,
        /// The Secret's key that holds `GatewayKey <token>`: `value`, `gateway-key`, …
        key: &'a str,
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
pub(crate) fn minted(
    how: MintAs<'_>,
    token: &Token,
    scheme: Option<Scheme>,
    key_type: KeyType,
) -> io::Result<()> {
    match how {
        MintAs::Text => text_line(&token.render(scheme)),
        MintAs::Json => json_line(&Minted {
            value: &token.render(scheme),
            id: token.id(),
            expiry: rfc3339(token.expiry()),
            key_type: key_type.as_str(),
            format: token.format().as_str(),
        }),
        MintAs::K8sSecret {
            name,
            namespace,
            key,
        } => {
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
            let key = yaml_str(key);
            yaml.push_str(&format!("stringData:\n  {key}: {}\n", yaml_str(&value)));
            yaml.push_str(&format!("data:\n  {key}: {}\n", base64_of(&value)));
            emit(yaml.as_bytes())
        }
        MintAs::DockerEnv => text_line(&form::docker_env_line(token)),
    }
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
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
    pub(crate) fn new(line: Option<u64>, err: &'a Problem) -> Self {
        Invalid {
            line,
            valid: false,
            error: err.into(),
        }
    }
}

/// One `--batch` output line, appended to `out`: the document `verify --output json` prints,
/// plus `line`. Written by hand because it runs once per token: serde_json's escaping and
/// chrono's formatting were a fifth of a batch's time. A test holds it to serde's bytes.
pub(crate) fn batch_line(
    out: &mut Vec<u8>,
    line: u64,
    result: &Result<Verified<'_>, Problem>,
    now: DateTime<Utc>,
) {
    out.extend_from_slice(b"{\"line\":");
    push_int(out, i128::from(line));
    match result {
        Ok(v) => {
            out.extend_from_slice(b",\"valid\":true,\"id\":");
            push_json_str(out, v.id());
            out.extend_from_slice(b",\"expiry\":\"");
            apim_sas::push_rfc3339(out, v.expiry());
            out.extend_from_slice(b"\",\"keyType\":\"");
            out.extend_from_slice(v.key_type().as_str().as_bytes());
            out.extend_from_slice(b"\",\"format\":\"");
            out.extend_from_slice(v.format().as_str().as_bytes());
            out.extend_from_slice(b"\",\"expiresInSeconds\":");
            // Whole seconds, truncated toward zero as `TimeDelta::num_seconds` does.
            push_int(out, (nanos(v.expiry()) - nanos(now)) / 1_000_000_000);
            out.push(b'}');
        }
        Err(err) => {
            out.extend_from_slice(b",\"valid\":false,\"error\":{\"code\":");
            push_json_str(out, err.code());
            out.extend_from_slice(b",\"message\":");
            push_json_str(out, err.message());
            out.extend_from_slice(b",\"target\":");
            push_json_str(out, err.target());
            out.extend_from_slice(b"}}");
        }
    }
    out.push(b'\n');
}

fn nanos(at: DateTime<Utc>) -> i128 {
    i128::from(at.timestamp()) * 1_000_000_000 + i128::from(at.timestamp_subsec_nanos())
}

fn push_int(out: &mut Vec<u8>, n: i128) {
    if n < 0 {
        out.push(b'-');
    }
    let mut digits = [0u8; 40];
    let mut at = digits.len();
    let mut n = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// A JSON string: quotes, backslashes and control characters escaped as serde_json does.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// The result of `verify` for one token.
pub(crate) fn verified(
    json: bool,
    result: &Result<Verified<'_>, Problem>,
    now: DateTime<Utc>,
) -> io::Result<()> {
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
        (false, Err(err)) => {
            eprintln!("invalid: {err}");
            Ok(())
        }
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
) -> io::Result<()> {
    if json {
        return json_line(&Inspection {
            id: token.id(),
            format: token.format().as_str(),
            scheme: token.scheme().map(Scheme::as_str),
            expiry: rfc3339(token.expiry()),
            expires_in_seconds: seconds_until(token.expiry(), now),
            expired: token.is_expired(now),
            verified: false,
            expires_within: expires_within.map(|(_, within)| within),
        });
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
    text_line(&text)
}

#[derive(Serialize)]
struct Converted<'a> {
    value: &'a str,
    id: &'a str,
    expiry: String,
    format: &'a str,
}

/// What `convert` made.
pub(crate) fn converted(
    json: bool,
    value: &str,
    token: &UntrustedToken<'_>,
    to: Format,
) -> io::Result<()> {
    if json {
        json_line(&Converted {
            value,
            id: token.id(),
            expiry: rfc3339(token.expiry()),
            format: to.as_str(),
        })
    } else {
        text_line(value)
    }
}

/// What `renew` did.
pub(crate) struct Renewal<'a> {
    /// Why it wrote a new token (`missing`, `invalid`, `expiring`, `forced`), `None` when it
    /// kept the file.
    pub(crate) reason: Option<&'static str>,
    /// The expiry of the token the file now holds.
    pub(crate) expiry: DateTime<Utc>,
    /// The expiry the file's token claimed before, `None` when it held no readable token.
    pub(crate) previous_expiry: Option<DateTime<Utc>>,
    /// What became of `--deploy-hook`, `None` without one.
    pub(crate) hook: Option<hook::Outcome>,
    /// The hook's failure, reported beside the renewal.
    pub(crate) error: Option<&'a Problem>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HookJson {
    ran: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_status: Option<Option<i32>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RenewalJson<'a> {
    renewed: bool,
    reason: Option<&'static str>,
    expiry: String,
    previous_expiry: Option<String>,
    hook: Option<HookJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody<'a>>,
}

/// `renew`'s report: `renewed (<reason>): expires …` or `kept: expires … (in …)`, or its JSON.
/// With `--deploy-hook`, the JSON has `"hook": {"ran": false}` or `{"ran": true, "retry",
/// "exitStatus"}` (`retry`: it ran again for an earlier renewal; `exitStatus` `null` when a
/// signal killed it), and `"error"` when it failed; `"hook": null` without one.
pub(crate) fn renewal(json: bool, outcome: &Renewal<'_>, now: DateTime<Utc>) -> io::Result<()> {
    if json {
        return json_line(&RenewalJson {
            renewed: outcome.reason.is_some(),
            reason: outcome.reason,
            expiry: rfc3339(outcome.expiry),
            previous_expiry: outcome.previous_expiry.map(rfc3339),
            hook: outcome.hook.map(|hook| HookJson {
                ran: hook.ran,
                retry: hook.ran.then_some(hook.retry),
                exit_status: hook.ran.then_some(hook.status),
            }),
            error: outcome.error.map(ErrorBody::from),
        });
    }
    let expiry = rfc3339(outcome.expiry);
    match outcome.reason {
        Some(reason) => text_line(&format!("renewed ({reason}): expires {expiry}")),
        None => text_line(&format!(
            "kept: expires {expiry} ({})",
            relative(outcome.expiry.signed_duration_since(now))
        )),
    }
}

/// The metric `inspect --output prometheus` writes.
pub(crate) const EXPIRY_METRIC: &str = "apim_sas_token_expiry_timestamp_seconds";

/// A token's expiry in the Prometheus text exposition format, as node_exporter's textfile
/// collector reads it: `# HELP`, `# TYPE … gauge`, one sample labelled with the gateway and the
/// form, then `labels` in the order given (names already checked). No timestamp: the textfile
/// collector refuses them.
pub(crate) fn expiry_metric(
    token: &UntrustedToken<'_>,
    labels: &[(String, String)],
) -> io::Result<()> {
    let mut out = format!(
        "# HELP {EXPIRY_METRIC} When the token expires, in Unix seconds (its own claim, read \
         without a key).\n# TYPE {EXPIRY_METRIC} gauge\n{EXPIRY_METRIC}{{gateway=\"{}\",format=\"{}\"",
        label_value(token.id()),
        token.format().as_str(),
    );
    for (name, value) in labels {
        out.push_str(&format!(",{name}=\"{}\"", label_value(value)));
    }
    out.push_str(&format!("}} {}\n", unix_seconds(token.expiry())));
    emit(out.as_bytes())
}

/// A label value escaped as the exposition format requires: `\\`, `\"`, `\n`.
fn label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Unix seconds, exact: whole seconds as an integer, a fraction (the uid form's 100 ns) only
/// when there is one, without the rounding a float would bring.
fn unix_seconds(at: DateTime<Utc>) -> String {
    let nanos = nanos(at);
    let sign = if nanos < 0 { "-" } else { "" };
    let (whole, frac) = (
        nanos.unsigned_abs() / 1_000_000_000,
        nanos.unsigned_abs() % 1_000_000_000,
    );
    if frac == 0 {
        format!("{sign}{whole}")
    } else {
        let frac = format!("{frac:09}");
        format!("{sign}{whole}.{}", frac.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apim_sas::chrono::TimeZone;
    use apim_sas::{Format, GatewayKey, KeyType, Policy, Signer, Verifier};

    /// The hand-written batch line is byte for byte what serde_json writes.
    #[test]
    fn batch_line_matches_serde() {
        let now = Utc.with_ymd_and_hms(2026, 4, 21, 0, 0, 0).unwrap();
        let key = GatewayKey::new("k").unwrap();
        let mut verifier = Verifier::new(Policy::new().with_max_lifetime(None));
        let ids = ["gw1", "we\"ird\\id", "x"];
        let mut tokens = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            verifier.insert(id, KeyType::Secondary, &key).unwrap();
            for nanos in [0, 5_000_000, 123_400, 700] {
                let expiry = now + TimeDelta::days(i as i64) + TimeDelta::nanoseconds(nanos);
                let signer = Signer::new(id, &key).unwrap();
                tokens.push(signer.sign(expiry, Format::Uid).unwrap().to_string());
                tokens.push(signer.sign(expiry, Format::Compact).unwrap().to_string());
            }
        }
        tokens.extend(["", "gw1&2026&x", "Bearer x", "gw9&202604210000&x"].map(String::from));
        for (line, token) in tokens.iter().enumerate() {
            let result = verifier.verify(token, now).map_err(Problem::from);
            let mut ours = Vec::new();
            batch_line(&mut ours, line as u64 + 1, &result, now);
            let mut serde = match &result {
                Ok(v) => serde_json::to_vec(&Valid::new(Some(line as u64 + 1), v, now)),
                Err(e) => serde_json::to_vec(&Invalid::new(Some(line as u64 + 1), e)),
            }
            .unwrap();
            serde.push(b'\n');
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                String::from_utf8(serde).unwrap()
            );
        }
        let mut out = Vec::new();
        push_json_str(&mut out, "a\u{1}\u{8}\u{c}\t\r\n\"\\é");
        assert_eq!(
            out,
            serde_json::to_vec("a\u{1}\u{8}\u{c}\t\r\n\"\\é").unwrap()
        );
        for n in [0i128, 7, -7, 1234567890123, -86400] {
            let mut out = Vec::new();
            push_int(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }
}
