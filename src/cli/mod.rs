//! The command line: parses the flags and dispatches to one file per command; each command maps
//! its flags to library calls and a printer.

mod args;
mod atomic;
mod batch;
mod completions;
mod convert;
mod failure;
mod flags;
mod form;
mod hook;
mod input;
mod inspect;
mod keys;
mod man;
mod mint;
mod print;
mod renew;
mod serve;
mod target;
mod values;
mod verify;

use std::process::ExitCode;

use apim_sas::chrono::Utc;
use clap::{CommandFactory, Parser};

use args::{Cli, Command};
use failure::Failure;
use flags::Output;

/// Runs the command line; the process's exit code.
pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = match &cli.command {
        Command::Mint(a) => a.output == mint::MintOutput::Json,
        Command::Verify(a) => a.output == Output::Json,
        Command::Inspect(a) => a.output == inspect::InspectOutput::Json,
        Command::Convert(a) => a.output == Output::Json,
        Command::Renew(a) => a.output == Output::Json,
        Command::Completions(_) | Command::Man(_) | Command::Serve(_) => false,
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            print::error(json, &failure.problem);
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
        Command::Mint(args) => mint::run(args, now),
        Command::Verify(args) => verify::run(args, now),
        Command::Inspect(args) => inspect::run(args, now),
        Command::Convert(args) => convert::run(args),
        Command::Renew(args) => renew::run(args, now),
        Command::Completions(args) => completions::run(args, Cli::command()),
        Command::Man(args) => man::run(args, Cli::command()),
        Command::Serve(args) => serve::run(args, cli.now.is_some().then_some(now)),
    }
}
