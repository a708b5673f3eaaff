//! `apim-sas renew`: the one command a timer or a CronJob runs. It reads the token a file holds
//! and writes a new one only when needed: the file or its token is missing, the token does not
//! verify with the key renew signs with, it expires within `--renew-within`, or `--force`.
//! Otherwise the file is not touched at all (it is never opened for writing). A renewal replaces
//! the file atomically (`atomic.rs`), then runs the deploy hook (`hook.rs`).
//!
//! Before anything is decided, every run checks what a renewal would need: the flags, the keys,
//! that the file is of its form (`form/`) and is not a key file, that its links may be followed
//! and that a renewal can be written (`target.rs`). So a mistake shows on the first run, not
//! when the token lapses, and a file renew does not understand is never replaced.

use std::path::PathBuf;

use apim_sas::chrono::{DateTime, Utc};
use apim_sas::{ErrorKind, KeyType, Policy, Signer, UntrustedToken};
use clap::Args;

use super::failure::{Failure, Problem};
use super::flags::{FormatArg, KeySource, Output, SchemeArg, SecretKey};
use super::form::{self, Form};
use super::target::{self, Target};
use super::{atomic, hook, keys, print, values};

#[derive(Debug, Args)]
pub(crate) struct RenewArgs {
    /// The gateway id
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) id: String,

    /// The file that holds the token; written only when the token needs renewing
    #[arg(long, value_name = "PATH")]
    pub(crate) file: PathBuf,

    /// What the file holds
    #[arg(long, value_enum, default_value_t = Form::Token)]
    pub(crate) form: Form,

    /// Renew when the token expires within this window
    #[arg(long, value_name = "DUR", default_value = "7d")]
    pub(crate) renew_within: String,

    /// The new token's lifetime, longer than --renew-within [default: 30d]
    #[arg(long, value_name = "DUR")]
    pub(crate) ttl: Option<String>,

    /// Which key signs, and the key the current token must verify with: primary or secondary
    #[arg(long, value_name = "TYPE", default_value = "primary")]
    pub(crate) key_type: String,

    /// The new token's wire form (docker-env: compact only)
    #[arg(long, value_enum, default_value_t = FormatArg::Compact)]
    pub(crate) format: FormatArg,

    /// The scheme in front of the new token in a token file [default: gateway-key, what the
    /// gateway's config.service.auth holds]. docker-env always writes "GatewayKey <token>"
    #[arg(long, value_enum)]
    pub(crate) scheme: Option<SchemeArg>,

    /// Renew even when the current token is good
    #[arg(long)]
    pub(crate) force: bool,

    /// What to print
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub(crate) output: Output,

    /// The longest lifetime allowed, or none [default: 30d, Azure's limit for gateway tokens]
    #[arg(long, value_name = "DUR|none")]
    pub(crate) max_lifetime: Option<String>,

    /// A command run through /bin/sh -c after a renewal was written (restart the gateway, apply
    /// the Secret), with APIM_SAS_FILE, APIM_SAS_REASON and APIM_SAS_EXPIRY set; a failing one
    /// is exit 2 and runs again on the next run
    #[arg(long, value_name = "CMD")]
    pub(crate) deploy_hook: Option<String>,

    /// The Secret's key that holds "GatewayKey <token>", for --form k8s-secret [default: value]
    #[arg(long, value_enum, value_name = "KEY")]
    pub(crate) secret_key: Option<SecretKey>,

    /// A new Secret's name, for --form k8s-secret [default: <id>-token]
    #[arg(long, value_name = "NAME", allow_hyphen_values = true)]
    pub(crate) secret_name: Option<String>,

    /// A new Secret's namespace, for --form k8s-secret [default: none, kubectl's current one]
    #[arg(long, value_name = "NS", allow_hyphen_values = true)]
    pub(crate) namespace: Option<String>,

    #[command(flatten)]
    pub(crate) keys: KeySource,
}

/// Why a token is renewed, as the report names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Missing,
    Invalid,
    Expiring,
    Forced,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Invalid => "invalid",
            Reason::Expiring => "expiring",
            Reason::Forced => "forced",
        }
    }
}

/// Refuses the flags `--form` would ignore, and Kubernetes names the API server would refuse.
fn check_form_flags(args: &RenewArgs) -> Result<(), Failure> {
    match args.form {
        Form::DockerEnv | Form::K8sSecret => super::flags::check_gateway_output(
            &format!("--form {}", args.form.flag()),
            args.scheme,
            args.format,
        )?,
        Form::Token => {}
    }
    if args.form != Form::K8sSecret {
        super::flags::refuse_secret_flags(
            [
                args.secret_name.is_some(),
                args.namespace.is_some(),
                args.secret_key.is_some(),
            ],
            "--form k8s-secret holds",
            format_args!("form is {}", args.form.flag()),
        )?;
    }
    super::flags::check_secret_names(args.secret_name.as_deref(), args.namespace.as_deref())
}

/// Says on stderr when the file, which holds or will hold a 30-day credential, can be read by its
/// group or others: renew keeps a file's mode, so a file created with the shell's umask (0644)
/// keeps the token in the open, as a key file readable by others would keep the key. The exit
/// status does not change.
fn warn_if_readable_by_others(args: &RenewArgs, target: &Target) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Some(metadata) = &target.metadata {
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o044 != 0 {
                eprintln!(
                    "warning: {} holds the gateway token and is readable by group or others \
                     (mode {mode:03o}); renew keeps a file's mode: restrict it with: chmod 600 {}",
                    args.file.display(),
                    args.file.display()
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (args, target);
}

/// The file to renew, checked as the module's docs say; its bytes (`None`: no file yet).
fn check_file(args: &RenewArgs) -> Result<(Target, Option<Vec<u8>>), Failure> {
    let refused = |why| form::refused(&args.file, why);
    let target = target::resolve(&args.file).map_err(|e| match e {
        target::Unresolved::Unreadable(e) => form::unreadable(&args.file, e),
        target::Unresolved::Refused(why) => refused(why),
    })?;
    target
        .check_not_key_file(args.keys.files())
        .map_err(refused)?;
    let bytes = form::read(&target.path, &args.file, args.form)?;
    if let Some(bytes) = &bytes {
        form::check(args.form, bytes).map_err(refused)?;
        if args.form == Form::K8sSecret {
            form::check_secret_names(
                bytes,
                args.secret_name.as_deref(),
                args.namespace.as_deref(),
            )
            .map_err(refused)?;
        }
    }
    target.check_writable().map_err(refused)?;
    Ok((target, bytes))
}

pub(crate) fn run(args: RenewArgs, now: DateTime<Utc>) -> Result<u8, Failure> {
    // Every flag is checked on every run, renewal due or not, so that a mistake shows on the
    // first run rather than weeks later when the token runs out.
    check_form_flags(&args)?;
    Signer::check_id(&args.id).map_err(Failure::usage)?;
    let key_type: KeyType = args.key_type.parse().map_err(Failure::usage)?;
    let format = args.format.into();
    let window = values::duration("--renew-within", &args.renew_within).map_err(Failure::usage)?;
    let ttl = match &args.ttl {
        Some(text) => values::duration("--ttl", text).map_err(Failure::usage)?,
        None => Policy::DEFAULT_MAX_LIFETIME,
    };
    if ttl <= window {
        return Err(Failure::invocation(
            ErrorKind::InvalidArgument,
            "renewWithin",
            format!(
                "--renew-within {}: not shorter than the new token's lifetime (--ttl {}), so \
                 every run would renew",
                apim_sas::human_duration(window),
                apim_sas::human_duration(ttl)
            ),
        ));
    }
    let expiry = values::add("--ttl", now, ttl).map_err(Failure::usage)?;
    let max_lifetime = match &args.max_lifetime {
        Some(text) => values::limit("--max-lifetime", text).map_err(Failure::usage)?,
        None => Some(Policy::DEFAULT_MAX_LIFETIME),
    };
    let policy = Policy::new().with_max_lifetime(max_lifetime);
    policy
        .check_mint(expiry, format, now)
        .map_err(super::flags::mint_refusal)?;

    let keys = keys::load(&args.keys)?;
    let signer =
        Signer::new(&args.id, keys.signing_key(&args.id, key_type)?).map_err(Failure::usage)?;
    // The current token must verify with the key renew signs with: after a key is regenerated,
    // or when --key-type moves to the other key before the first one is regenerated, the token
    // is replaced at the next run.
    let verifier = keys.verifier(Some(&args.id), Some(key_type), policy)?;

    let (target, found) = check_file(&args)?;
    warn_if_readable_by_others(&args, &target);
    let secret_key = args.secret_key.unwrap_or(SecretKey::Value).as_str();
    let current = match &found {
        Some(bytes) => form::token(args.form, bytes, secret_key)
            .map_err(|why| form::refused(&args.file, why))?,
        None => None,
    };

    let (reason, previous_expiry) = match &current {
        None => (Some(Reason::Missing), None),
        Some(text) => match UntrustedToken::parse_bytes(text) {
            Err(_) => (Some(Reason::Invalid), None),
            Ok(token) => {
                let claimed = token.expiry();
                let verdict = match verifier.verify_parsed(&token, now) {
                    // A lifetime error comes only after the signature matched: the token is
                    // authentic, and has run out.
                    Err(e) if e.kind() == ErrorKind::TokenExpired => Some(Reason::Expiring),
                    Err(_) => Some(Reason::Invalid),
                    Ok(_) if claimed.signed_duration_since(now) <= window => Some(Reason::Expiring),
                    Ok(_) if args.force => Some(Reason::Forced),
                    Ok(_) => None,
                };
                (verdict, Some(claimed))
            }
        },
    };

    let marker = hook::marker(&target);
    let pending = hook::pending(&marker);
    let Some(reason) = reason else {
        let kept = previous_expiry.unwrap_or(now);
        // A hook that failed after an earlier renewal runs again, once the file is fresh.
        let hook = match (&args.deploy_hook, pending) {
            (Some(command), Some(pending)) => Some(run_hook(
                &args,
                command,
                &marker,
                &pending.reason,
                kept,
                true,
            )),
            (None, Some(_)) => {
                eprintln!(
                    "warning: a deploy hook failed after an earlier renewal of {} ({}), and no \
                     --deploy-hook is given to run it again",
                    args.file.display(),
                    marker.display()
                );
                None
            }
            (_, None) => args
                .deploy_hook
                .as_ref()
                .map(|_| Ok(hook::Outcome::NOT_RUN)),
        };
        return report(&args, None, kept, previous_expiry, hook, now);
    };

    let token = signer
        .mint(expiry, format, now, &policy)
        .map_err(super::flags::mint_refusal)?;
    let new_secret_name;
    let contents = form::renewed(
        args.form,
        found.as_deref(),
        &form::Renewal {
            token: &token,
            scheme: args.scheme.unwrap_or(SchemeArg::GatewayKey).scheme(),
            secret_key,
            new_secret: form::NewSecret {
                name: match &args.secret_name {
                    Some(name) => name,
                    None => {
                        new_secret_name = form::default_secret_name(&args.id);
                        &new_secret_name
                    }
                },
                namespace: args.namespace.as_deref(),
                id: &args.id,
            },
        },
    )
    .map_err(|why| form::refused(&args.file, why))?;
    atomic::replace(&target.path, &contents, target.metadata.as_ref()).map_err(|e| {
        form::refused(
            &args.file,
            format_args!("cannot write it ({e}); nothing was written"),
        )
    })?;
    let hook = args.deploy_hook.as_ref().map(|command| {
        run_hook(
            &args,
            command,
            &marker,
            reason.as_str(),
            token.expiry(),
            false,
        )
    });
    report(
        &args,
        Some(reason.as_str()),
        token.expiry(),
        previous_expiry,
        hook,
        now,
    )
}

/// Runs the deploy hook, and records or clears its marker. `Err`: why it failed, for the
/// report.
fn run_hook(
    args: &RenewArgs,
    command: &str,
    marker: &std::path::Path,
    reason: &str,
    expiry: DateTime<Utc>,
    retry: bool,
) -> Result<hook::Outcome, (hook::Outcome, Problem)> {
    let status = hook::run(command, &args.file, reason, &values::rfc3339(expiry));
    let outcome = hook::Outcome {
        ran: status.is_ok(),
        retry,
        status: status
            .as_ref()
            .ok()
            .and_then(std::process::ExitStatus::code),
    };
    let what = match &status {
        Ok(status) if status.success() => None,
        Ok(status) => Some(match status.code() {
            Some(code) => format!("exited with status {code}"),
            None => "was killed by a signal".to_owned(),
        }),
        Err(e) => Some(format!("could not be started ({e})")),
    };
    let failed = what.is_some().then(|| hook::Pending {
        reason: reason.to_owned(),
    });
    let remembered = hook::remember(marker, failed.as_ref());
    let problem = match (what, remembered) {
        (None, Ok(())) => return Ok(outcome),
        (None, Err(e)) => format!(
            "--deploy-hook: it succeeded, but its marker {} could not be removed ({e}); the next \
             run will run it again",
            marker.display()
        ),
        (Some(what), Ok(())) => format!(
            "--deploy-hook: {what}; the file holds the new token, and the next run runs the hook \
             again ({} remembers it)",
            marker.display()
        ),
        (Some(what), Err(e)) => format!(
            "--deploy-hook: {what}; the file holds the new token, but the failure could not be \
             remembered in {} ({e}): run the hook by hand",
            marker.display()
        ),
    };
    Err((
        outcome,
        Problem::new(ErrorKind::InvalidArgument, "deployHook", problem),
    ))
}

/// Prints the report (and a hook's failure with it): exit 0, or 2 when the hook failed.
fn report(
    args: &RenewArgs,
    reason: Option<&'static str>,
    expiry: DateTime<Utc>,
    previous_expiry: Option<DateTime<Utc>>,
    hook: Option<Result<hook::Outcome, (hook::Outcome, Problem)>>,
    now: DateTime<Utc>,
) -> Result<u8, Failure> {
    let (outcome, problem) = match hook {
        None => (None, None),
        Some(Ok(outcome)) => (Some(outcome), None),
        Some(Err((outcome, problem))) => (Some(outcome), Some(problem)),
    };
    let json = args.output == Output::Json;
    Failure::wrote(print::renewal(
        json,
        &print::Renewal {
            reason,
            expiry,
            previous_expiry,
            hook: outcome,
            error: problem.as_ref(),
        },
        now,
    ))?;
    if let Some(problem) = &problem {
        if !json {
            eprintln!("error: {problem}");
        }
        return Ok(2);
    }
    Ok(0)
}
