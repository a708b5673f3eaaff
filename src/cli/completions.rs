//! `apim-sas completions`: a shell completion script, made by clap_complete from the command as
//! clap describes it, with three repairs so that every subcommand's flags and every value list
//! complete (`tests/it/completions.rs` runs the real shells' completion engines on the result):
//!
//! - bash: clap_complete spells the state names of a hyphenated binary two ways (the dispatch
//!   loop says `apim__sas__subcmd__mint`, the case arms `apim__subcmd__sas__subcmd__mint`), so
//!   nothing past the subcommand completed (clap issues 6421 and 6529, open for clap_complete
//!   4.6). The arms are respelled as the loop spells them; once clap_complete is fixed there is
//!   nothing left to respell.
//! - fish: value descriptions are written inside a double-quoted word, so a `"` in one ended
//!   the word early and broke the line. Double quotes in value descriptions become single ones.
//! - every shell: a flag whose value is free text (an id, a duration, an instant) and that names
//!   no value list or path offers nothing, rather than file names. Flags typed as paths keep
//!   completing files.

use std::io::{self, Write};

use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::{Arg, Args, Command, ValueEnum, ValueHint};

use super::failure::Failure;

/// The name the scripts complete.
pub(crate) const BIN: &str = "apim-sas";

/// The shell to complete for.
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell
    shell: Shell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Shell {
    /// bash (with or without the bash-completion package)
    Bash,
    /// zsh (a file named _apim-sas in a directory of $fpath, then compinit)
    Zsh,
    /// fish (~/.config/fish/completions/apim-sas.fish)
    Fish,
}

pub(crate) fn run(args: CompletionsArgs, cli: Command) -> Result<u8, Failure> {
    let mut out = io::stdout().lock();
    Failure::wrote(
        out.write_all(script(args.shell, cli).as_bytes())
            .and_then(|()| out.flush()),
    )?;
    Ok(0)
}

/// The completion script for `shell`, of the command line `cli`.
pub(crate) fn script(shell: Shell, cli: Command) -> String {
    let (generator, repair): (clap_complete::Shell, fn(String) -> String) = match shell {
        Shell::Bash => (clap_complete::Shell::Bash, respell_bash_states),
        Shell::Zsh => (clap_complete::Shell::Zsh, |s| s),
        Shell::Fish => (clap_complete::Shell::Fish, |s| s),
    };
    let mut cmd = cli;
    cmd.build();
    let mut cmd = for_completion(cmd);
    let mut out = Vec::new();
    clap_complete::generate(generator, &mut cmd, BIN, &mut out);
    repair(String::from_utf8_lossy(&out).into_owned())
}

/// The command with every argument made fit for the completion generators, recursively.
fn for_completion(mut cmd: Command) -> Command {
    let ids: Vec<_> = cmd.get_arguments().map(|a| a.get_id().clone()).collect();
    for id in ids {
        cmd = cmd.mut_arg(id, for_completion_arg);
    }
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|sub| sub.get_name().to_owned())
        .collect();
    for name in names {
        cmd = cmd.mut_subcommand(name, for_completion);
    }
    cmd
}

fn for_completion_arg(arg: Arg) -> Arg {
    let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values());
    if !takes_value {
        return arg;
    }
    let values = arg.get_possible_values();
    if values.is_empty() {
        // Free text: offer nothing rather than file names. (A `PathBuf` flag's hint is
        // `AnyPath`, not `Unknown`, and keeps completing files.)
        return if arg.get_value_hint() == ValueHint::Unknown {
            arg.value_hint(ValueHint::Other)
        } else {
            arg
        };
    }
    let values: Vec<PossibleValue> = values.iter().map(quote_safe).collect();
    arg.value_parser(PossibleValuesParser::new(values))
}

/// The same possible value, its description free of double quotes (fish writes descriptions
/// inside a double-quoted word).
fn quote_safe(value: &PossibleValue) -> PossibleValue {
    let mut names = value.get_name_and_aliases();
    let name = names.next().unwrap_or_default().to_owned();
    let mut safe = PossibleValue::new(name)
        .aliases(names.map(str::to_owned).collect::<Vec<_>>())
        .hide(value.is_hide_set());
    if let Some(help) = value.get_help() {
        safe = safe.help(help.to_string().replace('"', "'"));
    }
    safe
}

/// Respells the case arms of clap_complete's bash script as its dispatch loop spells the states
/// (clap issues 6421, 6529): `apim__subcmd__sas__subcmd__mint` becomes `apim__sas__subcmd__mint`.
fn respell_bash_states(script: String) -> String {
    const SEP: &str = "__subcmd__";
    let wrong = format!("{}{SEP}", BIN.replace('-', SEP));
    let right = format!("{}{SEP}", BIN.replace('-', "__"));
    if wrong == right {
        return script;
    }
    script.replace(&wrong, &right)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn bash_states_are_spelled_one_way() {
        let script = script(Shell::Bash, crate::cli::args::Cli::command());
        assert!(!script.contains("apim__subcmd__sas"));
        assert!(script.contains("cmd=\"apim__sas__subcmd__mint\""));
        assert!(script.contains("\n        apim__sas__subcmd__mint)\n"));
    }

    #[test]
    fn fish_value_descriptions_carry_no_double_quotes() {
        let script = script(Shell::Fish, crate::cli::args::Cli::command());
        for line in script.lines().filter(|l| l.contains("\\t'")) {
            let description = line.split("\\t'").nth(1).unwrap_or_default();
            assert!(
                !description.contains('"') || description.ends_with("'\""),
                "{line}"
            );
        }
    }
}
