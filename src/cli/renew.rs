//! `apim-sas renew`: the one command a timer or a CronJob runs. It reads the token a file holds
//! and writes a new one only when needed: the file or its token is missing, the token does not
//! verify with the key renew signs with, it expires within `--renew-within`, or `--force`.
//! Otherwise the file is not touched at all (it is never opened for writing). A renewal replaces
//! the file atomically (see `atomic.rs`).

use std::fs::{self, Metadata};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use apim_sas::chrono::{DateTime, Utc};
use apim_sas::{ErrorKind, KeyType, Policy, Signer, UntrustedToken};
use clap::{Args, ValueEnum};

use super::failure::Failure;
use super::flags::{FormatArg, KeySource, Output, SchemeArg};
use super::input::{strip_bom, LINE_LIMIT};
use super::print::{self, DOCKER_ENV_AUTH};
use super::{atomic, keys, values};

#[derive(Debug, Args)]
pub(crate) struct RenewArgs {
    /// The gateway id
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) id: String,

    /// The file that holds the token; written only when the token needs renewing
    #[arg(long, value_name = "PATH")]
    pub(crate) file: PathBuf,

    /// What the file holds
    #[arg(long, value_enum, default_value_t = Form::Token)]
    pub(crate) form: Form,

    /// Renew when the token expires within this window
    #[arg(long, value_name = "DUR", default_value = "7d")]
    pub(crate) renew_within: String,

    /// The new token's lifetime, longer than --renew-within [default: 30d]
    #[arg(long, value_name = "DUR")]
    pub(crate) ttl: Option<String>,

    /// Which key signs, and the key the current token must verify with: primary or secondary
    #[arg(long, value_name = "TYPE", default_value = "primary")]
    pub(crate) key_type: String,

    /// The new token's wire form (docker-env: compact only)
    #[arg(long, value_enum, default_value_t = FormatArg::Compact)]
    pub(crate) format: FormatArg,

    /// The scheme in front of the new token in a token file [default: gateway-key, what the
    /// gateway's config.service.auth holds]. docker-env always writes "GatewayKey <token>"
    #[arg(long, value_enum)]
    pub(crate) scheme: Option<SchemeArg>,

    /// Renew even when the current token is good
    #[arg(long)]
    pub(crate) force: bool,

    /// What to print
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub(crate) output: Output,

    /// The longest lifetime allowed, or none [default: 30d, Azure's limit for gateway tokens]
    #[arg(long, value_name = "DUR|none")]
    pub(crate) max_lifetime: Option<String>,

    #[command(flatten)]
    pub(crate) keys: KeySource,
}

/// What the file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Form {
    /// The token alone, in any spelling (any scheme, the portal form); written as the token with
    /// --scheme and a newline
    Token,
    /// A Docker env file: its config.service.auth= line holds "GatewayKey <token>"; every other
    /// line is kept as it is
    DockerEnv,
}

/// The largest token file read: a token with generous whitespace. A larger file is not a token
/// file, and is not overwritten.
const TOKEN_FILE_LIMIT: usize = LINE_LIMIT;

/// The largest env file read, far above any real one.
const ENV_FILE_LIMIT: usize = 1024 * 1024;

/// Why a token is renewed, as the report names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Missing,
    Invalid,
    Expiring,
    Forced,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Invalid => "invalid",
            Reason::Expiring => "expiring",
            Reason::Forced => "forced",
        }
    }
}

/// The file as found: its bytes and metadata, or nothing.
struct Found {
    bytes: Vec<u8>,
    metadata: Metadata,
}

fn unreadable(path: &Path, e: impl std::fmt::Display) -> Failure {
    Failure::invocation(
        ErrorKind::UnreadableInput,
        "file",
        format!("--file {}: {e}", path.display()),
    )
}

/// Reads the file, at most `limit` bytes; `None` when there is no file. A file that exists but
/// cannot be read is `UnreadableInput`; one that is not a regular file, or is larger than any
/// file of its form, is refused (`InvalidArgument`) rather than replaced.
fn read_file(path: &Path, limit: usize, form: &str) -> Result<Option<Found>, Failure> {
    // `metadata` first: it neither blocks (a FIFO would, on open) nor reads.
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(path, e)),
    };
    if !metadata.is_file() {
        return Err(unreadable(path, "not a regular file"));
    }
    let file = fs::File::open(path).map_err(|e| unreadable(path, e))?;
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(path, e))?;
    if bytes.len() > limit {
        return Err(Failure::invocation(
            ErrorKind::InvalidArgument,
            "file",
            format!(
                "--file {}: larger than {} KiB, not a {form} file; refusing to replace it",
                path.display(),
                limit / 1024
            ),
        ));
    }
    Ok(Some(Found { bytes, metadata }))
}

/// One line of an env file, with its terminator (`\n`, `\r\n`, or none on a last line).
struct Line<'a> {
    body: &'a [u8],
    end: &'a [u8],
}

fn lines(bytes: &[u8]) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(at) => rest.split_at(at + 1),
            None => (rest, &[][..]),
        };
        let body_len = line.len()
            - if line.ends_with(b"\r\n") {
                2
            } else {
                usize::from(line.ends_with(b"\n"))
            };
        let (body, end) = line.split_at(body_len);
        out.push(Line { body, end });
        rest = next;
    }
    out
}

/// How Docker's `--env-file` reads a line: a byte-order mark on the first line and leading
/// whitespace are dropped. Returns (what was dropped, the rest).
fn env_prefix(first: bool, body: &[u8]) -> (&[u8], &[u8]) {
    let rest = if first { strip_bom(body) } else { body };
    let rest = rest.trim_ascii_start();
    body.split_at(body.len() - rest.len())
}

/// The value of the env file's `config.service.auth=` line (the last one, as Docker reads it),
/// or `None` when it has none.
fn env_token(bytes: &[u8]) -> Option<&[u8]> {
    lines(bytes)
        .iter()
        .enumerate()
        .filter_map(|(i, line)| {
            env_prefix(i == 0, line.body)
                .1
                .strip_prefix(DOCKER_ENV_AUTH.as_bytes())
        })
        .next_back()
}

/// The env file with every `config.service.auth=` line replaced in place by `auth_line` (its
/// indentation, a byte-order mark and its line ending kept), or `auth_line` appended when there
/// is none; every other byte as it was.
fn env_with(bytes: &[u8], auth_line: &str) -> Vec<u8> {
    let lines = lines(bytes);
    let mut out = Vec::with_capacity(bytes.len() + auth_line.len() + 2);
    let mut replaced = false;
    for (i, line) in lines.iter().enumerate() {
        let (prefix, rest) = env_prefix(i == 0, line.body);
        if rest.starts_with(DOCKER_ENV_AUTH.as_bytes()) {
            out.extend_from_slice(prefix);
            out.extend_from_slice(auth_line.as_bytes());
            replaced = true;
        } else {
            out.extend_from_slice(line.body);
        }
        out.extend_from_slice(line.end);
    }
    if !replaced {
        // The file's own line ending: CRLF when its lines end so.
        let crlf = lines.first().is_some_and(|line| line.end == b"\r\n");
        let newline: &[u8] = if crlf { b"\r\n" } else { b"\n" };
        if lines.last().is_some_and(|line| line.end.is_empty()) {
            out.extend_from_slice(newline);
        }
        out.extend_from_slice(auth_line.as_bytes());
        out.extend_from_slice(newline);
    }
    out
}

pub(crate) fn run(args: RenewArgs, now: DateTime<Utc>) -> Result<u8, Failure> {
    // Every flag is checked on every run, renewal due or not, so that a mistake shows on the
    // first run rather than weeks later when the token runs out.
    if args.form == Form::DockerEnv {
        super::flags::check_gateway_output("--form docker-env", args.scheme, args.format)?;
    }
    Signer::check_id(&args.id).map_err(Failure::usage)?;
    let key_type: KeyType = args.key_type.parse().map_err(Failure::usage)?;
    let format = args.format.into();
    let window = values::duration("--renew-within", &args.renew_within).map_err(Failure::usage)?;
    let ttl = match &args.ttl {
        Some(text) => values::duration("--ttl", text).map_err(Failure::usage)?,
        None => Policy::DEFAULT_MAX_LIFETIME,
    };
    if ttl <= window {
        return Err(Failure::invocation(
            ErrorKind::InvalidArgument,
            "renewWithin",
            format!(
                "--renew-within {}: not shorter than the new token's lifetime (--ttl {}), so \
                 every run would renew",
                apim_sas::human_duration(window),
                apim_sas::human_duration(ttl)
            ),
        ));
    }
    let expiry = values::add("--ttl", now, ttl).map_err(Failure::usage)?;
    let max_lifetime = match &args.max_lifetime {
        Some(text) => values::limit("--max-lifetime", text).map_err(Failure::usage)?,
        None => Some(Policy::DEFAULT_MAX_LIFETIME),
    };
    let policy = Policy::new().with_max_lifetime(max_lifetime);
    policy
        .check_mint(expiry, format, now)
        .map_err(Failure::usage)?;

    let keys = keys::load(&args.keys)?;
    let signer =
        Signer::new(&args.id, keys.signing_key(&args.id, key_type)?).map_err(Failure::usage)?;
    // The current token must verify with the key renew signs with: after a key is regenerated,
    // or when --key-type moves to the other key before the first one is regenerated, the token
    // is replaced at the next run.
    let verifier = keys.verifier(Some(&args.id), Some(key_type), policy)?;

    let (limit, form_name) = match args.form {
        Form::Token => (TOKEN_FILE_LIMIT, "token"),
        Form::DockerEnv => (ENV_FILE_LIMIT, "env"),
    };
    let found = read_file(&args.file, limit, form_name)?;
    let current: Option<&[u8]> = found.as_ref().and_then(|found| match args.form {
        Form::Token => Some(found.bytes.as_slice()),
        Form::DockerEnv => env_token(&found.bytes),
    });
    let current = current
        .map(|text| strip_bom(text).trim_ascii())
        .filter(|text| !text.is_empty());

    let (reason, previous_expiry) = match current {
        None => (Some(Reason::Missing), None),
        Some(text) => match UntrustedToken::parse_bytes(text) {
            Err(_) => (Some(Reason::Invalid), None),
            Ok(token) => {
                let claimed = token.expiry();
                let verdict = match verifier.verify_parsed(&token, now) {
                    // A lifetime error comes only after the signature matched: the token is
                    // authentic, and has run out.
                    Err(e) if e.kind() == ErrorKind::TokenExpired => Some(Reason::Expiring),
                    Err(_) => Some(Reason::Invalid),
                    Ok(_) if claimed.signed_duration_since(now) <= window => Some(Reason::Expiring),
                    Ok(_) if args.force => Some(Reason::Forced),
                    Ok(_) => None,
                };
                (verdict, Some(claimed))
            }
        },
    };

    let Some(reason) = reason else {
        let kept = previous_expiry.unwrap_or(now);
        Failure::wrote(print::renewal(
            args.output == Output::Json,
            &print::Renewal {
                reason: None,
                expiry: kept,
                previous_expiry,
            },
            now,
        ))?;
        return Ok(0);
    };

    let token = signer
        .mint(expiry, format, now, &policy)
        .map_err(Failure::usage)?;
    let contents = match args.form {
        Form::Token => {
            let scheme = args.scheme.unwrap_or(SchemeArg::GatewayKey).scheme();
            let mut line = token.render(scheme);
            line.push('\n');
            line.into_bytes()
        }
        Form::DockerEnv => {
            let line = print::docker_env_line(&token);
            match &found {
                Some(found) => env_with(&found.bytes, &line),
                None => format!("{line}\n").into_bytes(),
            }
        }
    };
    atomic::replace(
        &args.file,
        &contents,
        found.as_ref().map(|found| &found.metadata),
    )
    .map_err(|e| {
        Failure::invocation(
            ErrorKind::InvalidArgument,
            "file",
            format!(
                "--file {}: cannot write it ({e}); nothing was written",
                args.file.display()
            ),
        )
    })?;
    Failure::wrote(print::renewal(
        args.output == Output::Json,
        &print::Renewal {
            reason: Some(reason.as_str()),
            expiry: token.expiry(),
            previous_expiry,
        },
        now,
    ))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lines_keep_their_endings() {
        let file =
            b"\xEF\xBB\xBF# gateway\r\nA=1\r\n\r\n  config.service.auth=GatewayKey old\r\nB=2";
        assert_eq!(env_token(file), Some(&b"GatewayKey old"[..]));
        assert_eq!(
            env_with(file, "config.service.auth=NEW"),
            b"\xEF\xBB\xBF# gateway\r\nA=1\r\n\r\n  config.service.auth=NEW\r\nB=2".to_vec()
        );
        // None: appended with the file's line ending, after a last line without one.
        assert_eq!(env_token(b"A=1\r\nB=2"), None);
        assert_eq!(
            env_with(b"A=1\r\nB=2", "config.service.auth=NEW"),
            b"A=1\r\nB=2\r\nconfig.service.auth=NEW\r\n".to_vec()
        );
        assert_eq!(
            env_with(b"", "config.service.auth=NEW"),
            b"config.service.auth=NEW\n".to_vec()
        );
        // The last of several is the one Docker reads; all are replaced.
        let twice = b"config.service.auth=one\nconfig.service.auth=two\n";
        assert_eq!(env_token(twice), Some(&b"two"[..]));
        assert_eq!(
            env_with(twice, "config.service.auth=NEW"),
            b"config.service.auth=NEW\nconfig.service.auth=NEW\n".to_vec()
        );
        // A BOM on the first line is Docker's to drop, and the line matches.
        assert_eq!(
            env_token(b"\xEF\xBB\xBFconfig.service.auth=x\n"),
            Some(&b"x"[..])
        );
        // Not the variable: another name, a comment, a space before '='.
        for other in [
            &b"config.service.authority=x\n"[..],
            b"# config.service.auth=x\n",
            b"config.service.auth =x\n",
        ] {
            assert_eq!(env_token(other), None);
        }
    }
}
