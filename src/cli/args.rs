//! The command line, as clap sees it: the top-level parser and its subcommands. Each command's
//! own flags sit in its file; the flags several commands share, in `flags.rs`. Domain values
//! (ids, key types, durations, instants) stay text in clap and are read by the commands, so that
//! a bad one is reported with its code (and in JSON under `--output json`) rather than as a usage
//! error.

use clap::{Parser, Subcommand};

use super::completions::CompletionsArgs;
use super::convert::ConvertArgs;
use super::inspect::InspectArgs;
use super::man::ManArgs;
use super::mint::MintArgs;
use super::renew::RenewArgs;
use super::verify::VerifyArgs;

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
  apim-sas inspect --expires-within 5d - < token.txt")]
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

  # The Kubernetes Secret the gateway deployment reads (key `value`, the portal's YAML):
  apim-sas mint --id gw1 --keys gw1.keys.json --key-type secondary \\
      --output k8s-secret --secret-name gw1-token --namespace apim | kubectl apply -f -

  # The same for the official Helm chart (secret.existingSecretName, key `gateway-key`):
  apim-sas mint --id gw1 --keys gw1.keys.json --output k8s-secret \\
      --secret-key gateway-key --secret-name gw1-token --namespace apim | kubectl apply -f -

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

  # For an alert: exit 1 when the token expires within 5 days. renew renews 7 days ahead, so
  # this means renewal has stopped.
  apim-sas inspect --expires-within 5d - < token.txt")]
    Inspect(InspectArgs),

    /// Rewrite a token in the other form, keeping its signature (no key needed)
    #[command(after_help = "\
Examples:
  apim-sas convert --to uid 'gw1&202605200044&…'
  apim-sas convert --to compact --scheme gateway-key 'uid=gw1&ex=2026-05-20T00:44:00.0000000Z&sn=…'")]
    Convert(ConvertArgs),

    /// Renew a token file when it is missing, invalid or about to expire (timers, CronJobs)
    #[command(after_help = "\
What it does: reads the token in --file; writes a new one (atomically, keeping the file's
permissions, 0600 for a new file) when the file or the token is missing, the token does not
verify with the --key-type key (a regenerated key, another gateway, malformed), it expires within
--renew-within, or --force; then runs --deploy-hook. Otherwise the file is left as it is, byte for
byte. A file of another form (an env file under --form token), the key file itself, a symbolic
link owned by another user, or a directory renew cannot write is refused on every run. Exit 0
renewed or kept; 2, with nothing written, on key, flag, file or write problems, and when the
deploy hook fails (it runs again on the next run).

Examples:
  # A token file (\"GatewayKey <token>\" and a newline), renewed a week before it expires:
  apim-sas renew --id gw1 --keys gw1.keys.json --file /etc/apim-sas/gw1.token

  # A Docker env file (its other lines kept); restart the gateway only when the token changed:
  apim-sas renew --id gw1 --keys gw1.keys.json --file /etc/apim-sas/gw1.env --form docker-env \\
      --deploy-hook 'systemctl restart apim-gw1.service'

  # A Kubernetes Secret as kubectl prints it; apply it and roll the gateway when renewed:
  kubectl get secret gw1-token -o json > gw1-token.json || rm -f gw1-token.json
  apim-sas renew --id gw1 --keys keys.json --file gw1-token.json --form k8s-secret \\
      --secret-key gateway-key --secret-name gw1-token \\
      --deploy-hook 'kubectl apply -f \"$APIM_SAS_FILE\" && kubectl rollout restart deploy/gw1'")]
    Renew(RenewArgs),

    /// Answer a gateway's auth subrequests (nginx auth_request, Traefik, Caddy, Envoy ext_authz, HAProxy SPOE)
    #[command(after_help = "\
Endpoints: /verify and /verify/* (any method): 200 with X-Apim-Gateway-Id, X-Apim-Key-Type,
X-Apim-Token-Expiry, X-Apim-Token-Format, or 401 with the error code; GET /healthz, /readyz,
/metrics (Prometheus). Keys reload on SIGHUP and when the key file changes; SIGTERM drains.

Examples:
  apim-sas serve --keystore /etc/apim-sas/gateways.json
  apim-sas serve --id gw1 --keys /var/run/secrets/gw1/keys.json --listen 127.0.0.1:8089 \\
      --header X-Apim-Token --header Authorization --log-format json")]
    Serve(super::serve::ServeArgs),

    /// Print a shell completion script
    #[command(after_help = "\
Examples:
  apim-sas completions bash > /etc/bash_completion.d/apim-sas
  apim-sas completions zsh > \"${fpath[1]}/_apim-sas\"
  apim-sas completions fish > ~/.config/fish/completions/apim-sas.fish")]
    Completions(CompletionsArgs),

    /// Print the manual page (roff), or write every page into --dir
    #[command(hide = true)]
    Man(ManArgs),
}
