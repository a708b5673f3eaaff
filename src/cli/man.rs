//! `apim-sas man`: the manual pages, made by clap_mangen from the command as clap describes it
//! (so they never fall behind the flags). Hidden from `--help`: it is for packagers.
//!
//! `apim-sas man > apim-sas.1` writes the main page; `apim-sas man --dir DIR` writes it and one
//! page per subcommand (`apim-sas-mint.1`, …) into DIR.

use std::io::{self, Write};
use std::path::PathBuf;

use apim_sas::ErrorKind;
use clap::Args;

use super::failure::Failure;

#[derive(Debug, Args)]
pub(crate) struct ManArgs {
    /// Write every page (the main one and one per subcommand) into this directory
    #[arg(long, value_name = "PATH")]
    dir: Option<PathBuf>,
}

pub(crate) fn run(args: ManArgs, cli: clap::Command) -> Result<u8, Failure> {
    let cmd = cli;
    let unwritable = |what: &dyn std::fmt::Display, e: io::Error| {
        Failure::invocation(ErrorKind::InvalidArgument, "dir", format!("{what}: {e}"))
    };
    match args.dir {
        Some(dir) => {
            clap_mangen::generate_to(cmd, &dir).map_err(|e| unwritable(&dir.display(), e))?;
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut page)
                .map_err(|e| unwritable(&"stdout", e))?;
            let mut out = io::stdout().lock();
            Failure::wrote(out.write_all(&page).and_then(|()| out.flush()))?;
        }
    }
    Ok(0)
}
