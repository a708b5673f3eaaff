//! `apim-sas completions`: a shell completion script.

use std::io;

use clap::{Args, CommandFactory, ValueEnum};

use super::args::Cli;
use super::failure::Failure;

/// The shell to complete for.
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell
    shell: Shell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Shell {
    /// bash
    Bash,
    /// zsh
    Zsh,
    /// fish
    Fish,
}

pub(crate) fn run(args: CompletionsArgs) -> Result<u8, Failure> {
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut Cli::command(), "apim-sas", &mut io::stdout());
    Ok(0)
}
