//! `apim-sas inspect`: what a token claims, without a key (nothing is verified).

use apim_sas::chrono::{DateTime, TimeDelta, Utc};
use apim_sas::UntrustedToken;
use clap::Args;

use super::args::Output;
use super::failure::Failure;
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
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub(crate) output: Output,
}

pub(crate) fn run(args: InspectArgs, now: DateTime<Utc>) -> Result<u8, Failure> {
    let window: Option<TimeDelta> = args
        .expires_within
        .as_deref()
        .map(|text| values::duration("--expires-within", text))
        .transpose()
        .map_err(Failure::usage)?;
    let input = input::token_text(args.token.as_deref())?;
    let token = input
        .read(UntrustedToken::parse_bytes)
        .map_err(Failure::token)?;
    let within = window.map(|window| {
        let expiring = token.expiry().signed_duration_since(now) <= window;
        (window, expiring)
    });
    print::inspected(args.output == Output::Json, &token, now, within);
    Ok(u8::from(within.is_some_and(|(_, expiring)| expiring)))
}
