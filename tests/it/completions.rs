//! The completion scripts, run by the real shells' completion engines: bash (the registered
//! completion function, called as bash calls it, with COMP_WORDS/COMP_CWORD, reading COMPREPLY),
//! fish (`complete -C`), and zsh (an interactive zsh in a pseudo-terminal, `compinit`, a Tab, and
//! the matches captured as the completion system adds them).
//!
//! What is checked comes from the binary's own `--help`, so a new subcommand or flag is covered
//! without touching this file: for every subcommand, every long flag completes after `--`; every
//! flag with a value list completes to exactly that list; a flag whose value is a `PATH` offers
//! the files of the current directory; any other value (an id, a duration, an instant) offers
//! no file names.
//!
//! A shell that is not installed when the tests are built makes its test ignored, with the
//! package to install as the reason (build.rs: `skip_bash`, `skip_bash_completion`, `skip_fish`,
//! `skip_zsh`), unless `CI` is set: CI installs bash-completion, fish and zsh (`.ci/run`), and
//! there a missing shell fails.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Files the completion directory holds, to tell file completion from none.
const FILES: [&str; 2] = ["sample.keys.json", "gateways.toml"];

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_apim-sas"))
}

fn apim(args: &[&str]) -> String {
    let out = Command::new(bin()).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// A long flag as `--help` shows it.
#[derive(Debug)]
struct Flag {
    name: String,
    /// `Some(value name)` when the flag takes a value.
    value: Option<String>,
    /// The values it offers, when it has a list.
    values: Vec<String>,
}

/// The subcommands `apim-sas --help` lists (but `help`), with their long flags.
fn model() -> Vec<(String, Vec<Flag>)> {
    let top = apim(&["--help"]);
    let commands: Vec<String> = top
        .lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // A command's line starts two spaces in; a wrapped description, further.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() >= 5, "{top}");
    commands
        .into_iter()
        .map(|c| {
            let flags = flags(&apim(&[&c, "--help"]));
            (c, flags)
        })
        .collect()
}

/// The long flags of a subcommand's long `--help`, with value names and value lists.
fn flags(help: &str) -> Vec<Flag> {
    let mut flags: Vec<(Flag, String)> = Vec::new();
    for line in help
        .lines()
        .skip_while(|l| *l != "Options:")
        .skip(1)
        // The options are indented; the after-help text that follows them is not.
        .take_while(|l| l.is_empty() || l.starts_with(' '))
    {
        let head = line.trim_start();
        let indent = line.len() - head.len();
        let head = head.strip_prefix("-h, ").unwrap_or(head);
        let head = head.strip_prefix("-V, ").unwrap_or(head);
        let head = head.strip_prefix("-q, ").unwrap_or(head);
        if indent <= 6 && head.starts_with("--") {
            let mut words = head.split_whitespace();
            let name = words.next().unwrap_or_default().to_owned();
            let value = words
                .next()
                .and_then(|w| w.strip_prefix('<'))
                .and_then(|w| w.strip_suffix('>'))
                .map(str::to_owned);
            flags.push((
                Flag {
                    name,
                    value,
                    values: Vec::new(),
                },
                String::new(),
            ));
        } else if let Some((flag, body)) = flags.last_mut() {
            // "- name: description" items of a "Possible values:" list.
            if indent == 10 {
                if let Some(item) = head.strip_prefix("- ") {
                    let name = item.split(':').next().unwrap_or_default();
                    flag.values.push(name.trim().to_owned());
                }
            }
            body.push(' ');
            body.push_str(head);
        }
    }
    flags
        .into_iter()
        .map(|(mut flag, body)| {
            // "[possible values: a, b]", possibly wrapped.
            if let Some(rest) = body.split("[possible values: ").nth(1) {
                let list = rest.split(']').next().unwrap_or_default();
                flag.values = list.split(", ").map(|v| v.trim().to_owned()).collect();
            }
            flag
        })
        .collect()
}

/// One completion request: the words typed so far, the last one being completed.
struct Case {
    words: Vec<String>,
    check: Check,
}

enum Check {
    /// The `--` candidates are exactly these flags.
    Flags(BTreeSet<String>),
    /// Exactly these values.
    Values(BTreeSet<String>),
    /// The directory's files are offered.
    Files,
    /// No file name is offered.
    NoFiles,
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (command, flags) in model() {
        let names: BTreeSet<String> = flags.iter().map(|f| f.name.clone()).collect();
        assert!(names.contains("--help"), "{command}: {names:?}");
        cases.push(Case {
            words: vec!["apim-sas".into(), command.clone(), "--".into()],
            check: Check::Flags(names),
        });
        for flag in &flags {
            let Some(value) = &flag.value else { continue };
            let check = if !flag.values.is_empty() {
                Check::Values(flag.values.iter().cloned().collect())
            } else if value == "PATH" {
                Check::Files
            } else {
                Check::NoFiles
            };
            cases.push(Case {
                words: vec![
                    "apim-sas".into(),
                    command.clone(),
                    flag.name.clone(),
                    String::new(),
                ],
                check,
            });
        }
    }
    // Top level: every subcommand.
    cases.push(Case {
        words: vec!["apim-sas".into(), String::new()],
        check: Check::Values(
            model()
                .into_iter()
                .map(|(c, _)| c)
                .chain(["help".to_owned()])
                .collect(),
        ),
    });
    cases
}

fn verify(shell: &str, cases: &[Case], answers: &[Vec<String>]) {
    assert_eq!(cases.len(), answers.len(), "{shell}: one answer per case");
    let mut failures = Vec::new();
    for (case, got) in cases.iter().zip(answers) {
        let typed = case.words.join(" ");
        let got_set: BTreeSet<String> = got.iter().filter(|s| !s.is_empty()).cloned().collect();
        let files_offered = FILES.iter().all(|f| got_set.contains(*f));
        let any_file = FILES.iter().any(|f| got_set.contains(*f));
        let ok = match &case.check {
            Check::Flags(flags) => {
                let long: BTreeSet<String> = got_set
                    .iter()
                    .filter(|s| s.starts_with("--"))
                    .cloned()
                    .collect();
                &long == flags
            }
            // zsh and fish list the top level's subcommands with their descriptions; a set
            // holding every one is enough there (fish adds nothing else, bash adds flags).
            Check::Values(values) if case.words.len() == 2 => values.is_subset(&got_set),
            Check::Values(values) => &got_set == values,
            Check::Files => files_offered,
            Check::NoFiles => !any_file,
        };
        if !ok {
            let wanted = match &case.check {
                Check::Flags(f) | Check::Values(f) => format!("{f:?}"),
                Check::Files => format!("the files {FILES:?}"),
                Check::NoFiles => "no file names".into(),
            };
            failures.push(format!(
                "{shell}: `{typed}<TAB>` gave {got:?}, wanted {wanted}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} completions wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// `shell` runs: build.rs found it, so it must still be there (the test fails otherwise).
fn need(shell: &str) {
    let found = Command::new(shell)
        .arg("-c")
        .arg("exit 0")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{shell} is not installed: .ci/run installs it (apt-get install -y bash-completion fish \
         zsh); elsewhere, rebuild the tests (touch build.rs) and this test is ignored instead"
    );
}

/// A directory holding the script and the sample files; the shells run in it.
fn workdir(script: &str, name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for f in FILES {
        std::fs::write(dir.path().join(f), "{}").unwrap();
    }
    let completions = dir.path().join("completions");
    std::fs::create_dir(&completions).unwrap();
    let path = completions.join(name);
    std::fs::write(&path, script).unwrap();
    (dir, path)
}

/// Runs `program` with `args` in `dir`, with the binary's directory first on PATH.
fn shell(program: &str, dir: &Path, args: &[&str]) -> String {
    let bin_dir = bin().parent().unwrap().to_owned();
    let path = std::env::join_paths(
        std::iter::once(bin_dir).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let out = Command::new(program)
        .current_dir(dir)
        .env("PATH", path)
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir)
        .env("XDG_DATA_HOME", dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Splits a shell's output at the marker lines that end each case's answer.
fn answers(out: &str) -> Vec<Vec<String>> {
    let mut all = Vec::new();
    let mut one = Vec::new();
    for line in out.lines() {
        if line == "<<END>>" {
            all.push(std::mem::take(&mut one));
        } else {
            one.push(line.to_owned());
        }
    }
    all
}

/// A word as a single-quoted shell string (bash, zsh, fish alike for these words).
fn quoted(word: &str) -> String {
    assert!(!word.contains('\''));
    format!("'{word}'")
}

const BASH_COMPLETION: &str = "/usr/share/bash-completion/bash_completion";

/// bash alone, as `complete` has it without the bash-completion package.
#[test]
#[cfg_attr(skip_bash, ignore = "bash is not installed: apt-get install -y bash")]
fn bash_completes_every_flag_and_value_list() {
    bash_completes(false);
}

/// With the bash-completion package loaded too, as interactive shells have it.
#[test]
#[cfg_attr(skip_bash, ignore = "bash is not installed: apt-get install -y bash")]
#[cfg_attr(
    all(skip_bash_completion, not(skip_bash)),
    ignore = "bash-completion is not installed: apt-get install -y bash-completion"
)]
fn bash_with_bash_completion_completes_every_flag_and_value_list() {
    assert!(
        Path::new(BASH_COMPLETION).exists(),
        "{BASH_COMPLETION} is missing: .ci/run installs it (apt-get install -y \
         bash-completion); elsewhere, rebuild the tests (touch build.rs) and this test is \
         ignored instead"
    );
    bash_completes(true);
}

fn bash_completes(with_bash_completion: bool) {
    need("bash");
    let cases = cases();
    let (dir, script) = workdir(&apim(&["completions", "bash"]), "apim-sas.bash");
    // Source the script as bash-completion would, then call the registered function the way
    // readline does: `fn command word previous-word`, with COMP_WORDS and COMP_CWORD set.
    let mut program = format!(
        "set -u\nsource {}\nspec=$(complete -p apim-sas) || exit 3\n\
         fn=$(printf '%s\\n' \"$spec\" | sed -n 's/.*-F \\([^ ]*\\) .*/\\1/p')\n\
         [ -n \"$fn\" ] || exit 4\n\
         ask() {{ COMP_WORDS=(\"$@\"); COMP_CWORD=$(( $# - 1 )); COMP_LINE=\"$*\"; \
         COMP_POINT=${{#COMP_LINE}}; COMPREPLY=(); \
         \"$fn\" apim-sas \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\" 2>/dev/null; \
         for r in \"${{COMPREPLY[@]}}\"; do printf '%s\\n' \"$r\"; done; echo '<<END>>'; }}\n",
        quoted(script.to_str().unwrap())
    );
    if with_bash_completion {
        program.insert_str(0, &format!("source {BASH_COMPLETION}\n"));
    }
    for case in &cases {
        let words: Vec<String> = case.words.iter().map(|w| quoted(w)).collect();
        program.push_str(&format!("ask {}\n", words.join(" ")));
    }
    let out = shell(
        "bash",
        dir.path(),
        &["--norc", "--noprofile", "-c", &program],
    );
    verify("bash", &cases, &answers(&out));
}

#[test]
#[cfg_attr(skip_fish, ignore = "fish is not installed: apt-get install -y fish")]
fn fish_completes_every_flag_and_value_list() {
    need("fish");
    let cases = cases();
    let (dir, script) = workdir(&apim(&["completions", "fish"]), "apim-sas.fish");
    let mut program = format!("source {}\n", quoted(script.to_str().unwrap()));
    for case in &cases {
        // `complete -C` prints "candidate<TAB>description" lines.
        program.push_str(&format!(
            "complete -C {} | string replace -r '\\t.*' ''\necho '<<END>>'\n",
            quoted(&case.words.join(" "))
        ));
    }
    // fish writes to stderr when a script misparses (a quote in a description ended a word
    // early): none is allowed.
    let out = Command::new("fish")
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .args(["--no-config", "-c", &program])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "fish: {stderr}"
    );
    verify(
        "fish",
        &cases,
        &answers(&String::from_utf8(out.stdout).unwrap()),
    );
    // No stray file was made by a redirection inside a broken description.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !FILES.contains(&n.as_str()) && n != "completions")
        .collect();
    names.retain(|n| n != "fish" && !n.starts_with('.'));
    assert!(names.is_empty(), "fish left files behind: {names:?}");
}

/// Drives an interactive zsh in a pseudo-terminal: `compinit` with the script in `$fpath`, then
/// for each request the words and a Tab, printing each match as the completion system adds it.
const ZSH_DRIVER: &str = r#"
zmodload zsh/zpty || exit 3
zpty z zsh -f -i
zpty -w z "source ${(q)INIT}"
local line
while zpty -r z line; do [[ $line == *'<<READY>>'* ]] && break; done
local request
for request in "$@"; do
  zpty -w -n z "$request"$'\t'
  integer started=0
  while zpty -r z line; do
    [[ $line == *'<<BEGIN>>'* ]] && { started=1; continue; }
    [[ $line == *'<<END>>'* ]] && break
    (( started )) && [[ $line =~ '<<M:(.*)>>' ]] && print -r -- "$match[1]"
  done
  print -r -- '<<END>>'
  # Clear the line for the next request.
  zpty -w -n z $'\C-u'
done
zpty -d z
"#;

const ZSH_INIT: &str = r#"
PS1='' PROMPT='' RPROMPT=''
fpath=("$COMPDIR" $fpath)
autoload -Uz compinit && compinit -u -D
zstyle ':completion:*' list-prompt ''
zstyle ':completion:*' select-prompt ''
LISTMAX=100000
compadd() {
  # Calls that only collect matches (-O, -A, -D) pass through; others are printed.
  if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return $?; fi
  local -a __hits
  builtin compadd -A __hits "$@"
  local h; for h in $__hits; do print -r -- "<<M:$h>>"; done
  builtin compadd "$@"
}
_capture() { print -r -- "<<BEGIN>>"; _main_complete; print -r -- "<<END>>"; }
zle -C capture-complete complete-word _capture
bindkey '^I' capture-complete
bindkey '^U' kill-whole-line
print -r -- "<<READY>>"
"#;

#[test]
#[cfg_attr(skip_zsh, ignore = "zsh is not installed: apt-get install -y zsh")]
fn zsh_completes_every_flag_and_value_list() {
    need("zsh");
    let cases = cases();
    let (dir, script) = workdir(&apim(&["completions", "zsh"]), "_apim-sas");
    // The script is valid zsh.
    shell("zsh", dir.path(), &["-n", script.to_str().unwrap()]);
    let init = dir.path().join("init.zsh");
    std::fs::write(&init, ZSH_INIT).unwrap();
    let driver = dir.path().join("driver.zsh");
    std::fs::write(&driver, ZSH_DRIVER).unwrap();
    let requests: Vec<String> = cases.iter().map(|c| c.words.join(" ")).collect();
    let mut args = vec!["-f", driver.to_str().unwrap()];
    args.extend(requests.iter().map(String::as_str));
    let out = Command::new("zsh")
        .current_dir(dir.path())
        .env("COMPDIR", script.parent().unwrap())
        .env("INIT", &init)
        .env("HOME", dir.path())
        .env("PATH", {
            let bin_dir = bin().parent().unwrap().to_owned();
            std::env::join_paths(
                std::iter::once(bin_dir)
                    .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
            )
            .unwrap()
        })
        .args(&args)
        .output()
        .unwrap();
    assert!(out.status.success(), "zsh: {out:?}");
    verify(
        "zsh",
        &cases,
        &answers(&String::from_utf8(out.stdout).unwrap()),
    );
}

#[test]
fn the_model_sees_the_flags_that_matter() {
    // The help parser itself: if it read nothing, the shell tests would prove nothing.
    let model = model();
    let mint = &model.iter().find(|(c, _)| c == "mint").unwrap().1;
    let find = |name: &str| mint.iter().find(|f| f.name == name).unwrap();
    assert_eq!(find("--key-type").values, ["primary", "secondary"]);
    assert_eq!(
        find("--output").values,
        ["text", "json", "k8s-secret", "docker-env"]
    );
    assert_eq!(find("--keys").value.as_deref(), Some("PATH"));
    assert_eq!(find("--ttl").value.as_deref(), Some("DUR"));
    assert!(find("--help").value.is_none());
    let verify = &model.iter().find(|(c, _)| c == "verify").unwrap().1;
    assert!(verify
        .iter()
        .any(|f| f.name == "--quiet" && f.value.is_none()));
}
