//! The `apim-sas` command: a thin layer over the `apim_sas` library.

#![forbid(unsafe_code)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
