//! The command line, as clap sees it: flags in, a plain value out. Domain values (ids, key
//! types, durations, instants) stay text here and are read by the commands, so that a bad one is
//! reported with its code (and in JSON under `--output json`) rather than as a usage error.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Mint and verify Azure API Management shared-access tokens offline.
///
/// Keys are never taken on the command line: give a key file, a list-keys JSON, a keystore, or
/// the environment variable APIM_SAS_KEY.
#[derive(Debug, Parser)]
#[command(name = "apim-sas", version, propagate_version = true)]
#[command(after_help = "\
Exit codes: 0 success or valid; 1 the token is the problem (it fails to parse or verify, or
expires within --expires-within); 2 the invocation is the problem (usage, key files, flag
values, every mint refusal).

Examples:
  apim-sas mint --id gw1 --keys gw1.keys.json --ttl 29d
  apim-sas verify --id gw1 --keys gw1.keys.json 'gw1&202605200044&…'
  apim-sas inspect --expires-within 7d - < token.txt")]
pub(crate) struct Cli {
    /// The instant to use as now, RFC 3339 (for tests and reproducible runs)
    #[arg(long, global = true, value_name = "RFC3339")]
    pub(crate) now: Option<String>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Mint a token from a stored gateway key
    #[command(after_help = "\
Examples:
  # A 29-day self-hosted gateway token from the keys Azure's list-keys operation returns:
  apim-sas mint --id gw1 --keys gw1.keys.json --ttl 29d

  # The Kubernetes Secret the gateway deployment reads (key `value`):
  apim-sas mint --id gw1 --keys gw1.keys.json --key-type secondary \\
      --output k8s-secret --secret-name gw1-token --namespace apim | kubectl apply -f -

  # A management API token (uid form, Authorization header) from APIM_SAS_KEY:
  APIM_SAS_KEY=\"$(cat key.txt)\" apim-sas mint --id integration --format uid --scheme sas --ttl 1h")]
    Mint(MintArgs),

    /// Verify a token with the gateway's keys
    #[command(after_help = "\
Examples:
  apim-sas verify --id gw1 --keys gw1.keys.json 'gw1&202605200044&…'
  apim-sas verify --keystore gateways.toml --output json - < token.txt

  # Many tokens, one per line; one JSON line out per token, in order:
  apim-sas verify --batch --keystore gateways.json --input tokens.txt > results.jsonl")]
    Verify(VerifyArgs),

    /// Show what a token claims, without a key (nothing is verified)
    #[command(after_help = "\
Examples:
  apim-sas inspect 'GatewayKey gw1&202605200044&…'

  # Monitoring or a renewal CronJob: exit 1 when the token expires within 7 days
  apim-sas inspect --expires-within 7d - < token.txt || renew")]
    Inspect(InspectArgs),

    /// Rewrite a token in the other form, keeping its signature (no key needed)
    #[command(after_help = "\
Examples:
  apim-sas convert --to uid 'gw1&202605200044&…'
  apim-sas convert --to compact --scheme gateway-key 'uid=gw1&ex=2026-05-20T00:44:00.0000000Z&sn=…'")]
    Convert(ConvertArgs),

    /// Print a shell completion script
    #[command(after_help = "\
Examples:
  apim-sas completions bash > /etc/bash_completion.d/apim-sas
  apim-sas completions zsh > \"${fpath[1]}/_apim-sas\"
  apim-sas completions fish > ~/.config/fish/completions/apim-sas.fish")]
    Completions {
        /// The shell
        shell: Shell,
    },
}

/// Where the keys come from; at most one file option, else `APIM_SAS_KEY`.
#[derive(Debug, Args)]
#[group(multiple = false)]
pub(crate) struct KeySource {
    /// A file holding the key string (surrounding whitespace trimmed)
    #[arg(long, value_name = "PATH")]
    pub(crate) key_file: Option<PathBuf>,

    /// A JSON file {"primary": "…", "secondary": "…"}, as Azure's list-keys operation returns
    #[arg(long, value_name = "PATH")]
    pub(crate) keys: Option<PathBuf>,

    /// Many gateways: JSON {"gw1": {"primary": "…", "secondary": "…"}} or TOML ([gw1] tables),
    /// by file extension (.toml is TOML, anything else JSON)
    #[arg(long, value_name = "PATH")]
    pub(crate) keystore: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct MintArgs {
    /// The gateway id
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) id: String,

    /// The expiry instant, RFC 3339 (floored to the minute for compact, to 100 ns for uid)
    #[arg(long, value_name = "RFC3339", conflicts_with = "ttl")]
    pub(crate) expiry: Option<String>,

    /// The lifetime from now, e.g. 29d, 12h, "1d 12h" [default: 30d]
    #[arg(long, value_name = "DUR")]
    pub(crate) ttl: Option<String>,

    /// Which key signs: primary or secondary
    #[arg(long, value_name = "TYPE", default_value = "primary")]
    pub(crate) key_type: String,

    /// The wire form
    #[arg(long, value_enum, default_value_t = FormatArg::Compact)]
    pub(crate) format: FormatArg,

    /// The scheme in front of the token (text and json outputs)
    #[arg(long, value_enum, default_value_t = SchemeArg::None)]
    pub(crate) scheme: SchemeArg,

    /// The longest lifetime allowed, or none [default: 30d, Azure's limit for gateway tokens]
    #[arg(long, value_name = "DUR|none")]
    pub(crate) max_lifetime: Option<String>,

    /// What to print
    #[arg(long, value_enum, default_value_t = MintOutput::Text)]
    pub(crate) output: MintOutput,

    /// The Secret's name for k8s-secret [default: <id>-token, made a valid Kubernetes name]
    #[arg(long, value_name = "NAME")]
    pub(crate) secret_name: Option<String>,

    /// The Secret's namespace for k8s-secret [default: none, kubectl's current namespace]
    #[arg(long, value_name = "NS")]
    pub(crate) namespace: Option<String>,

    #[command(flatten)]
    pub(crate) keys: KeySource,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The token, or - (or nothing) to read it from stdin
    #[arg(value_name = "TOKEN", allow_hyphen_values = true, conflicts_with_all = ["batch", "input"])]
    pub(crate) token: Option<String>,

    /// The gateway id the keys belong to (needed with --key-file, --keys and APIM_SAS_KEY)
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) id: Option<String>,

    /// Clock skew tolerated after expiry
    #[arg(long, value_name = "DUR", default_value = "60s")]
    pub(crate) leeway: String,

    /// The longest lifetime a token may claim, or none
    #[arg(long, value_name = "DUR|none", default_value = "30d")]
    pub(crate) max_lifetime: String,

    /// Only this key (with --key-file: the type of the key in it) [default: both keys]
    #[arg(long, value_name = "TYPE")]
    pub(crate) key_type: Option<String>,

    /// What to print (--batch always writes JSON lines)
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub(crate) output: Output,

    /// Verify many tokens, one per line, from stdin or --input
    #[arg(long)]
    pub(crate) batch: bool,

    /// The file of tokens for --batch [default: stdin]
    #[arg(long, value_name = "PATH", requires = "batch")]
    pub(crate) input: Option<PathBuf>,

    #[command(flatten)]
    pub(crate) keys: KeySource,
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The token, or - (or nothing) to read it from stdin
    #[arg(value_name = "TOKEN", allow_hyphen_values = true)]
    pub(crate) token: Option<String>,

    /// Exit 1 when the token expires within this window (or has expired)
    #[arg(long, value_name = "DUR")]
    pub(crate) expires_within: Option<String>,

    /// What to print
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub(crate) output: Output,
}

#[derive(Debug, Args)]
pub(crate) struct ConvertArgs {
    /// The form to write
    #[arg(long, value_enum)]
    pub(crate) to: FormatArg,

    /// The scheme in front of the result
    #[arg(long, value_enum, default_value_t = SchemeArg::None)]
    pub(crate) scheme: SchemeArg,

    /// The token, or - (or nothing) to read it from stdin
    #[arg(value_name = "TOKEN", allow_hyphen_values = true)]
    pub(crate) token: Option<String>,

    /// What to print
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub(crate) output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FormatArg {
    /// id&yyyyMMddHHmm&signature, the self-hosted gateway's form
    Compact,
    /// uid=id&ex=…&sn=signature, the management API's form
    Uid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SchemeArg {
    /// The bare token, as Azure's generate-token operation returns it
    None,
    /// "GatewayKey <token>", for the gateway's config.service.auth
    GatewayKey,
    /// "SharedAccessSignature <token>", for the management API's Authorization header
    Sas,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// Lines for people
    Text,
    /// One JSON document
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum MintOutput {
    /// The token
    Text,
    /// {"value", "id", "expiry", "keyType", "format"}
    Json,
    /// A v1 Secret (type Opaque) whose key `value` holds "GatewayKey <token>"
    K8sSecret,
    /// config.service.auth=GatewayKey <token>, a Docker env file line
    DockerEnv,
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
