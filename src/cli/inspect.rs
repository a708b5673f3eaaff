//! `apim-sas inspect`: what a token claims, without a key (nothing is verified).

use std::path::{Path, PathBuf};

use apim_sas::chrono::{DateTime, TimeDelta, Utc};
use apim_sas::{ErrorKind, UntrustedToken};
use clap::{Args, ValueEnum};

use super::failure::Failure;
use super::flags::SecretKey;
use super::form::{self, Form};
use super::{input, print, values};

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The token, or - (or nothing) to read it from stdin
    #[arg(value_name = "TOKEN")]
    pub(crate) token: Option<String>,

    /// Exit 1 when the token expires within this window (or has expired)
    #[arg(long, value_name = "DUR", allow_hyphen_values = true)]
    pub(crate) expires_within: Option<String>,

    /// What to print
    #[arg(long, value_enum, default_value_t = InspectOutput::Text)]
    pub(crate) output: InspectOutput,

    /// A label added to the prometheus metric, e.g. --label env=prod (repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub(crate) labels: Vec<String>,

    /// Read the token from this file, as renew reads it (see --form)
    #[arg(long, value_name = "PATH", conflicts_with = "token")]
    pub(crate) file: Option<PathBuf>,

    /// What --file holds: a token, a Docker env file (its last config.service.auth= line), or
    /// a Kubernetes Secret (the value under --secret-key)
    #[arg(long, value_enum, default_value_t = Form::Token)]
    pub(crate) form: Form,

    /// The Secret's key that holds the token, for --form k8s-secret [default: value]
    #[arg(long, value_enum, value_name = "KEY")]
    pub(crate) secret_key: Option<SecretKey>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum InspectOutput {
    /// Lines for people
    Text,
    /// One JSON document
    Json,
    /// The metric apim_sas_token_expiry_timestamp_seconds, for node_exporter's textfile
    /// collector; nothing on stdout (exit 1) when the token cannot be read
    Prometheus,
}

/// The labels `inspect --output prometheus` always writes; `--label` cannot name them.
const OWN_LABELS: [&str; 2] = ["gateway", "format"];

fn invalid_label(message: String) -> Failure {
    Failure::invocation(ErrorKind::InvalidArgument, "label", message)
}

/// Reads `--label KEY=VALUE`s: a Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`, not `__…`,
/// which Prometheus reserves), given once, and not one of the metric's own labels. The value is
/// any text; the printer escapes it.
fn labels(given: &[String]) -> Result<Vec<(String, String)>, Failure> {
    let mut labels: Vec<(String, String)> = Vec::with_capacity(given.len());
    for text in given {
        let Some((name, value)) = text.split_once('=') else {
            return Err(invalid_label(format!(
                "--label {text:?}: expected KEY=VALUE, e.g. --label env=prod"
            )));
        };
        let mut bytes = name.bytes();
        let well_formed = bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !well_formed {
            return Err(invalid_label(format!(
                "--label {name:?}: a label name is letters, digits and '_', not starting with a \
                 digit"
            )));
        }
        if name.starts_with("__") {
            return Err(invalid_label(format!(
                "--label {name}: names starting with '__' are reserved by Prometheus"
            )));
        }
        if OWN_LABELS.contains(&name) {
            return Err(invalid_label(format!(
                "--label {name}: the metric already carries '{name}' (from the token)"
            )));
        }
        if labels.iter().any(|(seen, _)| seen == name) {
            return Err(invalid_label(format!("--label {name}: given twice")));
        }
        labels.push((name.to_owned(), value.to_owned()));
    }
    Ok(labels)
}

pub(crate) fn run(args: InspectArgs, now: DateTime<Utc>) -> Result<u8, Failure> {
    let prometheus = args.output == InspectOutput::Prometheus;
    if !prometheus && !args.labels.is_empty() {
        return Err(invalid_label(
            "--label: only --output prometheus writes labels".to_owned(),
        ));
    }
    if prometheus && args.expires_within.is_some() {
        // The metric is the expiry itself; the window belongs in the alert rule, and an exit 1
        // would stop the usual `… > tmp && mv tmp x.prom` from publishing it. The rule is
        // docs/monitoring.md's: 5 days, below renew's window, or it fires for tokens renew is
        // about to renew.
        return Err(Failure::invocation(
            ErrorKind::InvalidArgument,
            "expiresWithin",
            "--expires-within: with --output prometheus, put the window in the alert rule \
             (apim_sas_token_expiry_timestamp_seconds - time() < 5*86400: 5 days, below renew's \
             7-day --renew-within)",
        ));
    }
    let labels = labels(&args.labels)?;
    let window: Option<TimeDelta> = args
        .expires_within
        .as_deref()
        .map(|text| values::duration("--expires-within", text))
        .transpose()
        .map_err(Failure::usage)?;
    let input = match &args.file {
        Some(path) => from_file(path, args.form, args.secret_key)?,
        None => {
            if args.form != Form::Token || args.secret_key.is_some() {
                return Err(Failure::invocation(
                    ErrorKind::InvalidArgument,
                    "file",
                    "--form and --secret-key say what --file holds: give --file",
                ));
            }
            input::token_text(args.token.as_deref())?
        }
    };
    let token = input
        .read(UntrustedToken::parse_bytes)
        .map_err(Failure::token)?;
    if prometheus {
        Failure::wrote(print::expiry_metric(&token, &labels))?;
        return Ok(0);
    }
    let within = window.map(|window| {
        let expiring = token.expiry().signed_duration_since(now) <= window;
        (window, expiring)
    });
    Failure::wrote(print::inspected(
        args.output == InspectOutput::Json,
        &token,
        now,
        within,
    ))?;
    Ok(u8::from(within.is_some_and(|(_, expiring)| expiring)))
}

/// The token a file of `form` holds, read as `renew` reads it: a missing or unreadable file, or
/// one of another form, is the invocation's problem (exit 2); a file without a token is the
/// token's (`EmptyToken`, exit 1).
fn from_file(
    path: &Path,
    form: Form,
    secret_key: Option<SecretKey>,
) -> Result<input::TokenInput<'static>, Failure> {
    if form != Form::K8sSecret {
        super::flags::refuse_secret_flags(
            [false, false, secret_key.is_some()],
            "--form k8s-secret holds",
            format_args!("form is {}", form.flag()),
        )?;
    }
    let Some(bytes) = form::read(path, path, form)? else {
        return Err(Failure::invocation(
            ErrorKind::UnreadableInput,
            "file",
            format!("--file {}: no such file", path.display()),
        ));
    };
    form::check(form, &bytes).map_err(|why| form::refused(path, why))?;
    let key = secret_key.unwrap_or(SecretKey::Value).as_str();
    let text = form::token(form, &bytes, key).map_err(|why| form::refused(path, why))?;
    let none = match form {
        Form::Token => "the file is empty".to_owned(),
        Form::DockerEnv => "the env file has no config.service.auth= line".to_owned(),
        Form::K8sSecret => format!("the Secret holds no key {key:?}"),
    };
    Ok(input::TokenInput::from_file(
        text,
        format!("--file {}: {none}", path.display()),
    ))
}
