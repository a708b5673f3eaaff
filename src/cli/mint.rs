//! `apim-sas mint`: a token from a stored gateway key, printed as text, JSON, a Kubernetes Secret
//! or a Docker env file line.

use apim_sas::chrono::{DateTime, Utc};
use apim_sas::{KeyType, Policy, Signer};
use clap::{Args, ValueEnum};

use super::failure::Failure;
use super::flags::{FormatArg, KeySource, SchemeArg, SecretKey};
use super::form::default_secret_name;
use super::{flags, keys, print, values};

#[derive(Debug, Args)]
pub(crate) struct MintArgs {
    /// The gateway id
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) id: String,

    /// The expiry instant, RFC 3339 (floored to the minute for compact, to 100 ns for uid)
    #[arg(long, value_name = "RFC3339", conflicts_with = "ttl")]
    pub(crate) expiry: Option<String>,

    /// The lifetime from now, e.g. 29d, 12h, "1d 12h" [default: 30d]
    #[arg(long, value_name = "DUR", allow_hyphen_values = true)]
    pub(crate) ttl: Option<String>,

    /// Which key signs
    #[arg(long, value_name = "TYPE", default_value = "primary", value_parser = values::KEY_TYPES)]
    pub(crate) key_type: String,

    /// The wire form
    #[arg(long, value_enum, default_value_t = FormatArg::Compact)]
    pub(crate) format: FormatArg,

    /// The scheme in front of the token, for text and json [default: none]. k8s-secret and
    /// docker-env always write "GatewayKey <token>"
    #[arg(long, value_enum)]
    pub(crate) scheme: Option<SchemeArg>,

    /// The longest lifetime allowed, or none [default: 30d, Azure's limit for gateway tokens]
    #[arg(long, value_name = "DUR|none", allow_hyphen_values = true)]
    pub(crate) max_lifetime: Option<String>,

    /// What to print
    #[arg(long, value_enum, default_value_t = MintOutput::Text)]
    pub(crate) output: MintOutput,

    /// The Secret's name for k8s-secret [default: <id>-token, made a valid Kubernetes name]
    #[arg(long, value_name = "NAME", allow_hyphen_values = true)]
    pub(crate) secret_name: Option<String>,

    /// The Secret's namespace for k8s-secret [default: none, kubectl's current namespace]
    #[arg(long, value_name = "NS", allow_hyphen_values = true)]
    pub(crate) namespace: Option<String>,

    /// The Secret's key that holds "GatewayKey <token>", for k8s-secret: the one your gateway
    /// deployment reads [default: value]
    #[arg(long, value_enum, value_name = "KEY")]
    pub(crate) secret_key: Option<SecretKey>,

    #[command(flatten)]
    pub(crate) keys: KeySource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum MintOutput {
    /// The token
    Text,
    /// {"value", "id", "expiry", "keyType", "format"}
    Json,
    /// A v1 Secret (type Opaque) whose key (--secret-key) holds "GatewayKey <token>"
    K8sSecret,
    /// config.service.auth=GatewayKey <token>, a Docker env file line
    DockerEnv,
}

impl MintOutput {
    fn flag(self) -> &'static str {
        match self {
            MintOutput::Text => "text",
            MintOutput::Json => "json",
            MintOutput::K8sSecret => "k8s-secret",
            MintOutput::DockerEnv => "docker-env",
        }
    }
}

/// Refuses the flags the chosen output would ignore, and Kubernetes names the API server would
/// refuse, before anything is minted.
fn check_flags(args: &MintArgs) -> Result<(), Failure> {
    if args.output != MintOutput::K8sSecret {
        flags::refuse_secret_flags(
            [
                args.secret_name.is_some(),
                args.namespace.is_some(),
                args.secret_key.is_some(),
            ],
            "--output k8s-secret writes",
            format_args!("output is {}", args.output.flag()),
        )?;
    }
    match args.output {
        MintOutput::K8sSecret | MintOutput::DockerEnv => {
            flags::check_gateway_output(
                &format!("--output {}", args.output.flag()),
                args.scheme,
                args.format,
            )?;
        }
        MintOutput::Text | MintOutput::Json => {}
    }
    flags::check_secret_names(args.secret_name.as_deref(), args.namespace.as_deref())?;
    Ok(())
}

pub(crate) fn run(args: MintArgs, now: DateTime<Utc>) -> Result<u8, Failure> {
    check_flags(&args)?;
    // The request's own values first, as Azure's generate-token checks them: a refusal does not
    // depend on where the key lives.
    Signer::check_id(&args.id).map_err(Failure::usage)?;
    let key_type: KeyType = args.key_type.parse().map_err(Failure::usage)?;
    let format = args.format.into();
    let expiry = match (&args.expiry, &args.ttl) {
        (Some(expiry), _) => values::instant("--expiry", expiry),
        (None, Some(ttl)) => {
            values::duration("--ttl", ttl).and_then(|ttl| values::add("--ttl", now, ttl))
        }
        (None, None) => values::add("--ttl", now, Policy::DEFAULT_MAX_LIFETIME),
    }
    .map_err(Failure::usage)?;
    let policy = Policy::new().with_max_lifetime(match &args.max_lifetime {
        Some(text) => values::limit("--max-lifetime", text).map_err(Failure::usage)?,
        None => Some(Policy::DEFAULT_MAX_LIFETIME),
    });
    policy
        .check_mint(expiry, format, now)
        .map_err(super::flags::mint_refusal)?;

    let keys = keys::load(&args.keys)?;
    let key = keys.signing_key(&args.id, key_type)?;
    let signer = Signer::new(&args.id, key).map_err(Failure::usage)?;
    let token = signer
        .mint(expiry, format, now, &policy)
        .map_err(super::flags::mint_refusal)?;

    let name;
    let how = match args.output {
        MintOutput::Text => print::MintAs::Text,
        MintOutput::Json => print::MintAs::Json,
        MintOutput::DockerEnv => print::MintAs::DockerEnv,
        MintOutput::K8sSecret => {
            name = args
                .secret_name
                .clone()
                .unwrap_or_else(|| default_secret_name(&args.id));
            print::MintAs::K8sSecret {
                name: &name,
                namespace: args.namespace.as_deref(),
                key: args.secret_key.unwrap_or(SecretKey::Value).as_str(),
            }
        }
    };
    let scheme = args.scheme.and_then(SchemeArg::scheme);
    Failure::wrote(print::minted(how, &token, scheme, key_type))?;
    Ok(0)
}
