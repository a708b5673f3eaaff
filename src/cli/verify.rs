//! `apim-sas verify`: one token, or `--batch` of them, against a key source.

use std::io::{self, BufRead};
use std::path::PathBuf;

use apim_sas::chrono::{DateTime, Utc};
use apim_sas::{ErrorKind, UntrustedToken};
use clap::Args;

use super::failure::{Failure, Problem};
use super::flags::{KeySource, Output, VerifierFlags};
use super::{batch, input, keys, print};

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The token, or - (or nothing) to read it from stdin
    #[arg(value_name = "TOKEN", conflicts_with_all = ["batch", "input"])]
    pub(crate) token: Option<String>,

    /// The gateway id the keys belong to (needed with --key-file, --keys and APIM_SAS_KEY)
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) id: Option<String>,

    #[command(flatten)]
    pub(crate) verifier: VerifierFlags,

    /// What to print (--batch always writes JSON lines)
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub(crate) output: Output,

    /// Verify many tokens, one per line, from stdin or --input
    #[arg(long)]
    pub(crate) batch: bool,

    /// The file of tokens for --batch [default: stdin]
    #[arg(long, value_name = "PATH", requires = "batch")]
    pub(crate) input: Option<PathBuf>,

    /// With --batch: no summary line and no progress bar on stderr
    #[arg(short, long, requires = "batch")]
    pub(crate) quiet: bool,

    #[command(flatten)]
    pub(crate) keys: KeySource,
}

pub(crate) fn run(args: VerifyArgs, now: DateTime<Utc>) -> Result<u8, Failure> {
    let (policy, only) = args.verifier.read()?;
    let verifier = keys::load(&args.keys)?.verifier(args.id.as_deref(), only, policy)?;

    if args.batch {
        let input: Box<dyn BufRead + Send> = match &args.input {
            Some(path) => Box::new(io::BufReader::with_capacity(
                1 << 16,
                std::fs::File::open(path).map_err(|e| unreadable(path, &e))?,
            )),
            None => Box::new(io::BufReader::with_capacity(1 << 16, io::stdin())),
        };
        let summary = batch::run(&verifier, input, now, args.quiet).map_err(|stop| match stop {
            batch::Stop::Read(e) => Failure::invocation(
                ErrorKind::UnreadableInput,
                "token",
                format!("reading tokens: {e}"),
            ),
            batch::Stop::Write(e) => Failure::invocation(
                ErrorKind::InvalidArgument,
                "output",
                format!("writing results to stdout: {e}"),
            ),
        })?;
        return Ok(u8::from(summary.refused > 0));
    }

    let input = input::token_text(args.token.as_deref())?;
    let result = input.read(|text| {
        batch::verdict(&verifier, text, now).map_err(|problem| other_gateway(problem, text, &args))
    });
    Failure::wrote(print::verified(args.output == Output::Json, &result, now))?;
    Ok(u8::from(result.is_err()))
}

/// `GatewayNotExist` names the token's gateway and the keys' (the library's message names
/// neither: it never echoes token bytes). The id has parsed, so it is printable ASCII.
fn other_gateway(problem: Problem, text: &[u8], args: &VerifyArgs) -> Problem {
    if problem.kind() != ErrorKind::GatewayNotExist {
        return problem;
    }
    let Ok(token) = UntrustedToken::parse_bytes(text) else {
        return problem;
    };
    let message = match (&args.id, &args.keys.keystore) {
        (Some(id), _) => format!(
            "id: the token is for gateway '{}', the keys are for gateway '{id}' (--id {id})",
            token.id()
        ),
        (None, Some(path)) => format!(
            "id: the keystore {} has no keys of gateway '{}'",
            path.display(),
            token.id()
        ),
        (None, None) => format!("id: no key is known for gateway '{}'", token.id()),
    };
    Problem::new(problem.kind(), problem.target(), message)
}

fn unreadable(path: &std::path::Path, e: &io::Error) -> Failure {
    Failure::invocation(
        ErrorKind::UnreadableInput,
        "token",
        format!("--input {}: {e}", path.display()),
    )
}
