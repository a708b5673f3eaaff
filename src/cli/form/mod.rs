//! The files that hold a gateway's token, in the forms `renew` writes and `inspect --file` reads:
//! a token file, a Docker env file, a Kubernetes Secret. One reader per form, shared by both
//! commands, so that what `inspect` reports is what `renew` decided on; and the refusal of a file
//! of another kind, before anything reads a token out of it or replaces it.

mod env;
mod secret;
mod sniff;

use std::io::{self, Read};
use std::path::Path;

use apim_sas::{ErrorKind, Scheme, Token};
use clap::ValueEnum;

pub(crate) use env::docker_env_line;
pub(crate) use secret::{default_secret_name, is_dns_subdomain, is_namespace, NewSecret};
use sniff::{Content, Json};

use super::failure::Failure;

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Form {
    /// The token alone, in any spelling (any scheme, the portal form); written as the token with
    /// --scheme and a newline
    Token,
    /// A Docker env file: its config.service.auth= line holds "GatewayKey <token>"; every other
    /// line is kept as it is
    DockerEnv,
    /// A Kubernetes Secret, as kubectl get secret NAME -o json prints it (or the YAML mint
    /// --output k8s-secret writes): the token is the value under --secret-key
    K8sSecret,
}

impl Form {
    /// The flag value, for messages.
    pub(crate) fn flag(self) -> &'static str {
        match self {
            Form::Token => "token",
            Form::DockerEnv => "docker-env",
            Form::K8sSecret => "k8s-secret",
        }
    }

    /// The largest file of this form read: far above any real one. A larger file is not of this
    /// form, and is not replaced.
    pub(crate) fn limit(self) -> usize {
        match self {
            Form::Token => super::input::LINE_LIMIT,
            Form::DockerEnv | Form::K8sSecret => 1024 * 1024,
        }
    }
}

/// The message of a refusal of `--file PATH`.
pub(crate) fn refused(path: &Path, why: impl std::fmt::Display) -> Failure {
    Failure::invocation(
        ErrorKind::InvalidArgument,
        "file",
        format!("--file {}: {why}", path.display()),
    )
}

/// The refusal of a `--file PATH` that cannot be read.
pub(crate) fn unreadable(path: &Path, e: impl std::fmt::Display) -> Failure {
    Failure::invocation(
        ErrorKind::UnreadableInput,
        "file",
        format!("--file {}: {e}", path.display()),
    )
}

/// Reads a file of `form`, at most its [`Form::limit`]; `None` when there is no file. A file
/// that exists but cannot be read, or is not a regular file (a FIFO would block), is
/// `UnreadableInput`; one larger than any file of its form is refused (`InvalidArgument`).
/// Messages name `shown`, the path as the user gave it (`path` may be where its links lead).
pub(crate) fn read(path: &Path, shown: &Path, form: Form) -> Result<Option<Vec<u8>>, Failure> {
    // Opened without blocking (a FIFO would, on open) and refused unless a regular file.
    let file = match super::input::open_regular(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(shown, e)),
    };
    let limit = form.limit();
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(shown, e))?;
    if bytes.len() > limit {
        return Err(refused(
            shown,
            format_args!(
                "larger than {} KiB, more than any --form {} file holds",
                limit / 1024,
                form.flag()
            ),
        ));
    }
    Ok(Some(bytes))
}

/// Refuses a file whose content is not of `form` (see the module's docs): the message says what
/// it looks like, and which `--form` reads it when there is one.
pub(crate) fn check(form: Form, bytes: &[u8]) -> Result<(), String> {
    let content = sniff::classify(bytes);
    let accepted = match form {
        Form::Token => matches!(content, Content::Empty | Content::OneLine { .. }),
        Form::DockerEnv => matches!(
            content,
            Content::Empty
                | Content::DockerEnv
                | Content::Lines(_)
                | Content::OneLine { token_like: false }
        ),
        Form::K8sSecret => matches!(
            content,
            Content::Empty | Content::Json(Json::Secret) | Content::Yaml { secret: true }
        ),
    };
    if accepted {
        return Ok(());
    }
    let file = match form {
        Form::Token => "a token file",
        Form::DockerEnv => "a Docker env file",
        Form::K8sSecret => "a Kubernetes Secret",
    };
    Err(match content {
        Content::Binary => format!("it holds NUL bytes: binary data, not {file}"),
        Content::Json(Json::Secret) => {
            "it looks like a Kubernetes Secret (JSON): use --form k8s-secret".to_owned()
        }
        Content::Json(Json::Keys) => {
            format!("it looks like a key file (JSON keys), not {file}")
        }
        Content::Json(Json::Other) => format!("it holds JSON, not {file}"),
        Content::Yaml { secret: true } => {
            "it looks like a Kubernetes Secret (YAML): use --form k8s-secret".to_owned()
        }
        Content::Yaml { secret: false } => format!("it holds YAML, not {file}"),
        Content::DockerEnv => "it looks like a Docker env file: use --form docker-env".to_owned(),
        Content::Lines(n) if form == Form::Token => {
            format!("it holds {n} non-blank lines, not {file} (a token file holds one token)")
        }
        Content::Lines(n) => format!("it holds {n} non-blank lines, not {file}"),
        Content::OneLine { token_like: true } => {
            "it looks like a token file (one token): use --form token".to_owned()
        }
        Content::Empty | Content::OneLine { token_like: false } => {
            format!("it holds one line of text, not {file}")
        }
    })
}

/// Refuses a Secret (not empty) whose name or namespace differs from the flags'.
pub(crate) fn check_secret_names(
    bytes: &[u8],
    name: Option<&str>,
    namespace: Option<&str>,
) -> Result<(), String> {
    if sniff::classify(bytes) == Content::Empty {
        return Ok(());
    }
    secret::check_names(bytes, name, namespace)
}

/// The token text a file of `form` holds (trimmed, a byte-order mark dropped), `None` when it
/// holds none. `bytes` passed [`check`].
pub(crate) fn token(form: Form, bytes: &[u8], secret_key: &str) -> Result<Option<Vec<u8>>, String> {
    let text = match form {
        Form::Token => Some(bytes.to_vec()),
        Form::DockerEnv => env::env_token(bytes).map(<[u8]>::to_vec),
        Form::K8sSecret if sniff::classify(bytes) == Content::Empty => None,
        Form::K8sSecret => return secret::token(bytes, secret_key),
    };
    Ok(text
        .map(|text| super::input::trim(super::input::strip_bom(&text)).to_vec())
        .filter(|text| !text.is_empty()))
}

/// What a renewal writes in a file of `form` that held `old` (`None`: no file, or an empty one).
pub(crate) struct Renewal<'a> {
    pub(crate) token: &'a Token,
    /// The scheme of a token file.
    pub(crate) scheme: Option<Scheme>,
    /// The Secret's key that holds the token.
    pub(crate) secret_key: &'a str,
    /// A new Secret's name and namespace.
    pub(crate) new_secret: NewSecret<'a>,
}

/// The file's new content: `old` with the new token in its place (see each form).
pub(crate) fn renewed(
    form: Form,
    old: Option<&[u8]>,
    renewal: &Renewal<'_>,
) -> Result<Vec<u8>, String> {
    let old = old.filter(|bytes| sniff::classify(bytes) != Content::Empty);
    Ok(match form {
        Form::Token => {
            let mut line = renewal.token.render(renewal.scheme);
            line.push('\n');
            line.into_bytes()
        }
        Form::DockerEnv => {
            let line = env::docker_env_line(renewal.token);
            match old {
                Some(old) => env::env_with(old, &line),
                None => format!("{line}\n").into_bytes(),
            }
        }
        Form::K8sSecret => secret::renewed(
            old,
            renewal.secret_key,
            &renewal.token.with_scheme(Scheme::GatewayKey),
            &super::values::rfc3339(renewal.token.expiry()),
            &renewal.new_secret,
        )?,
    })
}
