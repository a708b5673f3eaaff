//! The command line: each subcommand maps its flags to library calls and a printer.

mod args;
mod batch;
mod input;
mod keys;
mod print;
mod values;

use std::borrow::Cow;
use std::io::{self, BufRead};
use std::process::ExitCode;

use apim_sas::chrono::{DateTime, TimeDelta, Utc};
use apim_sas::{
    Error, ErrorKind, Format, KeyType, Policy, Scheme, Signer, Target, UntrustedToken, Verifier,
};
use clap::{CommandFactory, Parser};

use args::{
    Cli, Command, ConvertArgs, FormatArg, InspectArgs, MintArgs, MintOutput, Output, SchemeArg,
    Shell, VerifyArgs,
};
use keys::Keys;

/// A command that did not succeed, and the exit code that says whose fault it is.
pub(crate) struct Failure {
    error: Error,
    exit: u8,
}

impl Failure {
    /// The invocation is the problem (usage, key files, flag values, mint refusals): exit 2.
    pub(crate) fn usage(error: Error) -> Failure {
        Failure { error, exit: 2 }
    }

    /// The token is the problem (it fails to parse or verify): exit 1.
    pub(crate) fn token(error: Error) -> Failure {
        Failure { error, exit: 1 }
    }
}

/// Runs the command line; the process's exit code.
pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = match &cli.command {
        Command::Mint(a) => a.output == MintOutput::Json,
        Command::Verify(a) => a.output == Output::Json && !a.batch,
        Command::Inspect(a) => a.output == Output::Json,
        Command::Convert(a) => a.output == Output::Json,
        Command::Completions { .. } => false,
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            print::error(json, &failure.error);
            ExitCode::from(failure.exit)
        }
    }
}

fn run(cli: Cli) -> Result<u8, Failure> {
    let now = match &cli.now {
        Some(text) => values::instant("--now", text).map_err(Failure::usage)?,
        None => Utc::now(),
    };
    match cli.command {
        Command::Mint(args) => mint(args, now),
        Command::Verify(args) => verify(args, now),
        Command::Inspect(args) => inspect(args, now),
        Command::Convert(args) => convert(args),
        Command::Completions { shell } => {
            let shell = match shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
            };
            clap_complete::generate(shell, &mut Cli::command(), "apim-sas", &mut io::stdout());
            Ok(0)
        }
    }
}

fn format_of(arg: FormatArg) -> Format {
    match arg {
        FormatArg::Compact => Format::Compact,
        FormatArg::Uid => Format::Uid,
    }
}

fn scheme_of(arg: SchemeArg) -> Option<Scheme> {
    match arg {
        SchemeArg::None => None,
        SchemeArg::GatewayKey => Some(Scheme::GatewayKey),
        SchemeArg::Sas => Some(Scheme::SharedAccessSignature),
    }
}

/// `<id>-token`, made a valid Kubernetes object name (lower case, `a-z 0-9 - .`).
fn default_secret_name(id: &str) -> String {
    let name: String = format!("{id}-token")
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-' | '.') => c,
            _ => '-',
        })
        .collect();
    let name = name.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    name.chars().take(253).collect()
}

fn mint(args: MintArgs, now: DateTime<Utc>) -> Result<u8, Failure> {
    // The request's own values first, as Azure's generate-token checks them: a refusal does not
    // depend on where the key lives.
    Signer::check_id(&args.id).map_err(Failure::usage)?;
    let key_type: KeyType = args.key_type.parse().map_err(Failure::usage)?;
    let format = format_of(args.format);
    let expiry = match (&args.expiry, &args.ttl) {
        (Some(expiry), _) => values::instant("--expiry", expiry),
        (None, Some(ttl)) => {
            values::duration("--ttl", ttl).and_then(|ttl| values::add("--ttl", now, ttl))
        }
        (None, None) => values::add("--ttl", now, Policy::DEFAULT_MAX_LIFETIME),
    }
    .map_err(Failure::usage)?;
    let policy = Policy::new().with_max_lifetime(match &args.max_lifetime {
        Some(text) => values::limit("--max-lifetime", text).map_err(Failure::usage)?,
        None => Some(Policy::DEFAULT_MAX_LIFETIME),
    });
    policy
        .check_mint(expiry, format, now)
        .map_err(Failure::usage)?;

    let keys = keys::load(&args.keys)?;
    let key = keys
        .signing_key(&args.id, key_type)
        .map_err(Failure::usage)?;
    let signer = Signer::new(&args.id, key).map_err(Failure::usage)?;
    let token = signer
        .mint(expiry, format, now, &policy)
        .map_err(Failure::usage)?;

    let name;
    let how = match args.output {
        MintOutput::Text => print::MintAs::Text,
        MintOutput::Json => print::MintAs::Json,
        MintOutput::DockerEnv => print::MintAs::DockerEnv,
        MintOutput::K8sSecret => {
            name = args
                .secret_name
                .clone()
                .unwrap_or_else(|| default_secret_name(&args.id));
            print::MintAs::K8sSecret {
                name: &name,
                namespace: args.namespace.as_deref(),
            }
        }
    };
    print::minted(how, &token, scheme_of(args.scheme), key_type);
    Ok(0)
}

/// Builds the verifier from the key source: every key it holds, or only `--key-type`.
fn verifier(args: &VerifyArgs, policy: Policy) -> Result<Verifier, Failure> {
    let only: Option<KeyType> = args
        .key_type
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(Failure::usage)?;
    let wanted = |t: KeyType| only.is_none_or(|only| only == t);
    let keys = keys::load(&args.keys)?;
    let mut verifier = Verifier::new(policy);
    let need_id = || {
        args.id.as_deref().ok_or_else(|| {
            Failure::usage(Error::custom(
                ErrorKind::EmptyGatewayId,
                Target::Id,
                500,
                "--id: the gateway id is needed with --key-file, --keys or APIM_SAS_KEY",
            ))
        })
    };
    let mut insert =
        |id: &str, t: KeyType, key| verifier.insert(id, t, key).map_err(Failure::usage);
    match &keys {
        Keys::Single(key) => insert(need_id()?, only.unwrap_or(KeyType::Primary), key)?,
        Keys::Pair(pair) => {
            let id = need_id()?;
            if let Some(only) = only {
                insert(id, only, pair.get(only).map_err(Failure::usage)?)?;
            } else {
                for (t, key) in pair.keys() {
                    insert(id, t, key)?;
                }
            }
        }
        Keys::Store(store) => {
            for (id, pair) in store.iter() {
                if args.id.as_deref().is_some_and(|only_id| only_id != id) {
                    continue;
                }
                for (t, key) in pair.keys().filter(|(t, _)| wanted(*t)) {
                    insert(id, t, key)?;
                }
            }
        }
    }
    Ok(verifier)
}

fn verify(args: VerifyArgs, now: DateTime<Utc>) -> Result<u8, Failure> {
    let policy = Policy::new()
        .with_leeway(values::duration("--leeway", &args.leeway).map_err(Failure::usage)?)
        .with_max_lifetime(
            values::limit("--max-lifetime", &args.max_lifetime).map_err(Failure::usage)?,
        );
    let verifier = verifier(&args, policy)?;

    if args.batch {
        let input: Box<dyn BufRead + Send> = match &args.input {
            Some(path) => Box::new(io::BufReader::with_capacity(
                1 << 16,
                std::fs::File::open(path).map_err(|e| unreadable(path, e))?,
            )),
            None => Box::new(io::BufReader::with_capacity(1 << 16, io::stdin())),
        };
        let summary = batch::run(&verifier, input, now).map_err(|e| {
            Failure::usage(Error::custom(
                ErrorKind::MalformedToken,
                Target::Token,
                400,
                format!("reading tokens: {e}"),
            ))
        })?;
        return Ok(u8::from(summary.refused > 0));
    }

    let text = token_text(args.token.as_deref())?;
    let result = verifier.verify_bytes(&text, now);
    print::verified(args.output == Output::Json, &result, now);
    Ok(u8::from(result.is_err()))
}

fn unreadable(path: &std::path::Path, e: io::Error) -> Failure {
    Failure::usage(Error::custom(
        ErrorKind::MalformedToken,
        Target::Token,
        400,
        format!("--input {}: {e}", path.display()),
    ))
}

/// The token from the argument, or from stdin for `-` or none (trimmed, bounded).
fn token_text(arg: Option<&str>) -> Result<Cow<'_, [u8]>, Failure> {
    match arg {
        Some(text) if text != "-" => Ok(Cow::Borrowed(text.as_bytes())),
        _ => match input::read_bounded(io::stdin().lock()) {
            Ok(input::Read1::Text(bytes)) => Ok(Cow::Owned(input::trim(&bytes).to_vec())),
            Ok(input::Read1::TooLong) => Err(Failure::token(input::too_long())),
            Err(e) => Err(Failure::usage(Error::custom(
                ErrorKind::MalformedToken,
                Target::Token,
                400,
                format!("reading the token from stdin: {e}"),
            ))),
        },
    }
}

fn inspect(args: InspectArgs, now: DateTime<Utc>) -> Result<u8, Failure> {
    let window: Option<TimeDelta> = args
        .expires_within
        .as_deref()
        .map(|text| values::duration("--expires-within", text))
        .transpose()
        .map_err(Failure::usage)?;
    let text = token_text(args.token.as_deref())?;
    let token = UntrustedToken::parse_bytes(&text).map_err(Failure::token)?;
    let within = window.map(|window| {
        let expiring = token.expiry().signed_duration_since(now) <= window;
        (window, expiring)
    });
    print::inspected(args.output == Output::Json, &token, now, within);
    Ok(u8::from(within.is_some_and(|(_, expiring)| expiring)))
}

fn convert(args: ConvertArgs) -> Result<u8, Failure> {
    let text = token_text(args.token.as_deref())?;
    let token = UntrustedToken::parse_bytes(&text).map_err(Failure::token)?;
    let to = format_of(args.to);
    let bare = token.convert(to).map_err(Failure::token)?;
    let value = print::render(&bare, scheme_of(args.scheme));
    print::converted(args.output == Output::Json, &value, &token, to);
    Ok(0)
}
