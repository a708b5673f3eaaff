//! `apim-sas convert`: the same token in the other form, keeping its signature (no key needed).

use apim_sas::{Format, UntrustedToken};
use clap::Args;

use super::failure::Failure;
use super::flags::{FormatArg, Output, SchemeArg};
use super::{input, print};

#[derive(Debug, Args)]
pub(crate) struct ConvertArgs {
    /// The form to write
    #[arg(long, value_enum)]
    pub(crate) to: FormatArg,

    /// The scheme in front of the result
    #[arg(long, value_enum, default_value_t = SchemeArg::None)]
    pub(crate) scheme: SchemeArg,

    /// The token, or - (or nothing) to read it from stdin
    #[arg(value_name = "TOKEN")]
    pub(crate) token: Option<String>,

    /// What to print
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub(crate) output: Output,
}

pub(crate) fn run(args: ConvertArgs) -> Result<u8, Failure> {
    let input = input::token_text(args.token.as_deref())?;
    let token = input
        .read(UntrustedToken::parse_bytes)
        .map_err(Failure::token)?;
    let to: Format = args.to.into();
    let bare = token.convert(to).map_err(Failure::token)?;
    let value = bare.render(args.scheme.scheme());
    Failure::wrote(print::converted(
        args.output == Output::Json,
        &value,
        &token,
        to,
    ))?;
    Ok(0)
}
