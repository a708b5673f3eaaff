//! The flags several commands share: the key source, the output kind, the token's form and
//! scheme.

use std::path::PathBuf;

use apim_sas::{ErrorKind, KeyType, Policy};
use apim_sas::{Format, Scheme};
use clap::{Args, ValueEnum};

use super::failure::Failure;
use super::{form, values};

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

impl KeySource {
    /// The key files given, each with its flag (`-`, stdin, is no file).
    pub(crate) fn files(&self) -> impl Iterator<Item = (&'static str, &std::path::Path)> {
        [
            ("--key-file", &self.key_file),
            ("--keys", &self.keys),
            ("--keystore", &self.keystore),
        ]
        .into_iter()
        .filter_map(|(flag, path)| Some((flag, path.as_deref()?)))
        .filter(|(_, path)| *path != std::path::Path::new("-"))
    }
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
    /// SharedAccessSignature token="<token>",refresh="true", the developer portal's spelling
    Portal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// Lines for people
    Text,
    /// One JSON document
    Json,
}

impl From<FormatArg> for Format {
    fn from(arg: FormatArg) -> Format {
        match arg {
            FormatArg::Compact => Format::Compact,
            FormatArg::Uid => Format::Uid,
        }
    }
}

impl SchemeArg {
    /// The scheme to write, `None` for the bare token.
    pub(crate) fn scheme(self) -> Option<Scheme> {
        match self {
            SchemeArg::None => None,
            SchemeArg::GatewayKey => Some(Scheme::GatewayKey),
            SchemeArg::Sas => Some(Scheme::SharedAccessSignature),
            SchemeArg::Portal => Some(Scheme::Portal),
        }
    }
}

/// The outputs that feed a gateway (`k8s-secret`, `docker-env`, `renew --form docker-env`) always
/// write `GatewayKey <compact token>`, what the self-hosted gateway's `config.service.auth`
/// reads: a `--scheme` other than `gateway-key`, or `--format uid`, would be ignored, so it is
/// refused. `what` names the output in the message.
pub(crate) fn check_gateway_output(
    what: &str,
    scheme: Option<SchemeArg>,
    format: FormatArg,
) -> Result<(), Failure> {
    if let Some(scheme) = scheme.filter(|s| *s != SchemeArg::GatewayKey) {
        let name = scheme.to_possible_value().map(|v| v.get_name().to_owned());
        return Err(Failure::invocation(
            ErrorKind::InvalidArgument,
            "scheme",
            format!(
                "--scheme {}: {what} always writes \"GatewayKey <token>\", what the gateway's \
                 config.service.auth reads; drop --scheme",
                name.unwrap_or_default()
            ),
        ));
    }
    if format == FormatArg::Uid {
        return Err(Failure::invocation(
            ErrorKind::InvalidArgument,
            "format",
            format!(
                "--format uid: {what} writes the compact form, the one the self-hosted gateway \
                 reads; drop --format"
            ),
        ));
    }
    Ok(())
}

/// What a verifier applies, for `verify` and `serve` alike: the lifetime policy and which key.
#[derive(Debug, Args)]
pub(crate) struct VerifierFlags {
    /// Clock skew tolerated after expiry
    #[arg(
        long,
        value_name = "DUR",
        default_value = "60s",
        allow_hyphen_values = true
    )]
    pub(crate) leeway: String,

    /// The longest lifetime a token may claim, or none
    #[arg(
        long,
        value_name = "DUR|none",
        default_value = "30d",
        allow_hyphen_values = true
    )]
    pub(crate) max_lifetime: String,

    /// Only this key (with --key-file: the type of the key in it) [default: both keys]
    #[arg(long, value_name = "TYPE", value_parser = values::KEY_TYPES)]
    pub(crate) key_type: Option<String>,
}

impl VerifierFlags {
    /// The policy, and the one key type to hold (`None`: both), each value read with its code.
    pub(crate) fn read(&self) -> Result<(Policy, Option<KeyType>), Failure> {
        let policy = Policy::new()
            .with_leeway(values::duration("--leeway", &self.leeway).map_err(Failure::usage)?)
            .with_max_lifetime(
                values::limit("--max-lifetime", &self.max_lifetime).map_err(Failure::usage)?,
            );
        let only = self
            .key_type
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(Failure::usage)?;
        Ok((policy, only))
    }
}

/// A refusal of `mint` or `renew`'s expiry, with the flag that lifts the lifetime cap when that
/// is what refused it (the library's message names no flag).
pub(crate) fn mint_refusal(error: apim_sas::Error) -> Failure {
    let too_far = error.kind() == apim_sas::ErrorKind::ExpiryTooFar;
    let problem = super::failure::Problem::from(error);
    if !too_far {
        return Failure::usage(problem);
    }
    let message = format!(
        "{}; a longer lifetime needs --max-lifetime (a duration, or none)",
        problem.message()
    );
    Failure::usage(super::failure::Problem::new(
        problem.kind(),
        problem.target(),
        message,
    ))
}

/// The key of the Secret that holds the token: each gateway installer reads its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SecretKey {
    /// Read by the deployment YAML the Azure portal generates (secretKeyRef … key: value)
    Value,
    /// Read by the official Helm chart's deployment when given secret.existingSecretName
    /// (secretKeyRef … key: gateway-key)
    GatewayKey,
    /// Read by the Kubernetes manifests of the current Azure documentation
    #[value(name = "config.service.auth.key")]
    ConfigServiceAuthKey,
}

impl SecretKey {
    /// The key's name in the Secret.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SecretKey::Value => "value",
            SecretKey::GatewayKey => "gateway-key",
            SecretKey::ConfigServiceAuthKey => "config.service.auth.key",
        }
    }
}

/// The flags that describe a Kubernetes Secret, refused where no Secret is written or read
/// (they would be ignored): `given` says which of `--secret-name`, `--namespace`, `--secret-key`
/// were given; `owner` names what holds a Secret (`--output k8s-secret writes`), `chosen` what
/// was chosen instead (`output text`).
pub(crate) fn refuse_secret_flags(
    given: [bool; 3],
    owner: &str,
    chosen: std::fmt::Arguments<'_>,
) -> Result<(), Failure> {
    const FLAGS: [(&str, &str); 3] = [
        ("--secret-name", "secretName"),
        ("--namespace", "namespace"),
        ("--secret-key", "secretKey"),
    ];
    match FLAGS.iter().zip(given).find(|(_, given)| *given) {
        Some(((flag, target), _)) => Err(Failure::invocation(
            ErrorKind::InvalidArgument,
            target,
            format!("{flag}: only {owner} a Secret, and the {chosen}"),
        )),
        None => Ok(()),
    }
}

/// Refuses a `--secret-name` or `--namespace` the API server would refuse.
pub(crate) fn check_secret_names(
    name: Option<&str>,
    namespace: Option<&str>,
) -> Result<(), Failure> {
    if let Some(name) = name.filter(|name| !form::is_dns_subdomain(name)) {
        return Err(Failure::invocation(
            ErrorKind::InvalidArgument,
            "secretName",
            format!(
                "--secret-name {name:?}: not a Kubernetes object name (lower case letters, \
                 digits, '-' and '.', each dot-separated part starting and ending with a \
                 letter or digit, at most 253 characters)"
            ),
        ));
    }
    if let Some(namespace) = namespace.filter(|namespace| !form::is_namespace(namespace)) {
        return Err(Failure::invocation(
            ErrorKind::InvalidArgument,
            "namespace",
            format!(
                "--namespace {namespace:?}: not a Kubernetes namespace (lower case letters, \
                 digits and '-', starting and ending with a letter or digit, at most 63 \
                 characters)"
            ),
        ));
    }
    Ok(())
}
