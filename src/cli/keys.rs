//! Key sources: `--key-file`, `--keys`, `--keystore`, `APIM_SAS_KEY`. Never the command line.
//!
//! Every key file is read into a pre-sized buffer that is wiped on drop, at most
//! [`KEY_FILE_LIMIT`] bytes (so that `--key-file /dev/zero` is refused, not read until memory runs
//! out), and a leading UTF-8 byte-order mark is dropped.

use std::io::Read;
use std::path::Path;

use apim_sas::{ErrorKind, GatewayKey, KeyPair, KeyType, Keystore, Policy, Verifier};
use zeroize::Zeroizing;

use super::failure::{Failure, Problem};
use super::flags::KeySource;
use super::input::{open_regular, strip_bom};

/// The environment variable read when no key file is given.
pub(crate) const KEY_ENV: &str = "APIM_SAS_KEY";

/// The largest key file read: far above any key, list-keys answer or keystore of a few hundred
/// gateways.
pub(crate) const KEY_FILE_LIMIT: usize = 64 * 1024;

/// The keys a command got, by source.
pub(crate) enum Keys {
    /// One key of one gateway (`--key-file`, `APIM_SAS_KEY`): its type is the caller's label.
    Single(GatewayKey),
    /// One gateway's two keys (`--keys`).
    Pair(KeyPair),
    /// Many gateways (`--keystore`).
    Store(Keystore),
}

fn key_file_error(path: &Path, what: impl std::fmt::Display) -> Failure {
    Failure::invocation(
        ErrorKind::InvalidKeyFile,
        "key",
        format!("key file {}: {what}", shown(path)),
    )
}

/// How a key file's path is shown: `-` is stdin.
fn shown(path: &Path) -> std::borrow::Cow<'_, str> {
    if path == Path::new("-") {
        "(stdin)".into()
    } else {
        path.to_string_lossy()
    }
}

/// Reads a key file (or stdin for `-`) into memory that is wiped on drop; warns when others can
/// read it. The buffer is allocated once at its final size, so no unwiped copy is left behind by
/// a reallocation.
///
/// Only a regular file is read: the file is opened without blocking (a FIFO's open would wait
/// for a writer) and its type checked before a byte is read, so that a FIFO or a device at the
/// path is refused at once instead of stalling the command, or `serve`'s reloads.
fn read_secret(path: &Path, warn: Warn<'_>) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(KEY_FILE_LIMIT + 2));
    let limit = KEY_FILE_LIMIT as u64 + 1;
    if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(|e| key_file_error(path, e))?;
    } else {
        let file = open_regular(path).map_err(|e| key_file_error(path, e))?;
        warn_if_readable_by_others(path, &file, warn);
        file.take(limit)
            .read_to_end(&mut bytes)
            .map_err(|e| key_file_error(path, e))?;
    }
    if bytes.len() > KEY_FILE_LIMIT {
        return Err(key_file_error(
            path,
            "larger than 64 KiB; not a key file (a key is under 100 bytes)",
        ));
    }
    Ok(bytes)
}

/// Where warnings about key files go: stderr for the commands, the log for `serve`.
pub(crate) type Warn<'a> = &'a mut dyn FnMut(String);

/// Whether a key file's text is one bare key, as `--key-file` reads it: one line, no JSON or
/// TOML syntax (Azure's keys are base64: letters, digits, `+`, `/` and `=` padding at the end).
fn looks_like_bare_key(text: &str) -> bool {
    let text = text.trim();
    !text.is_empty()
        && !text.contains(['\n', '{', '[', '"', '\'', ' ', '\t'])
        && !text.trim_end_matches('=').contains('=')
}

/// The text of a key file, without a leading byte-order mark.
fn text_of<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a str, Failure> {
    std::str::from_utf8(strip_bom(bytes)).map_err(|_| key_file_error(path, "not UTF-8 text"))
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path, file: &std::fs::File, warn: Warn<'_>) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = file.metadata() {
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_file() && mode & 0o044 != 0 {
            warn(format!(
                "key file {} is readable by group or others (mode {mode:03o}); restrict it \
                 with: chmod 600 {}",
                path.display(),
                path.display()
            ));
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path, _: &std::fs::File, _: Warn<'_>) {}

/// Adds the file's path to a parse error from the library, keeping its code.
fn in_file(path: &Path, err: apim_sas::Error) -> Failure {
    Failure::usage(Problem::from(err).context(format_args!("key file {}", shown(path))))
}

/// Whether a file refused as a list-keys answer is a keystore of at least one gateway.
fn looks_like_keystore(text: &str) -> bool {
    [Keystore::from_json(text), Keystore::from_toml(text)]
        .iter()
        .any(|store| store.as_ref().is_ok_and(|store| !store.is_empty()))
}

/// The same failure, its message followed by a hint.
fn with_hint(failure: Failure, hint: std::fmt::Arguments<'_>) -> Failure {
    let problem = &failure.problem;
    let message = format!("{}; {hint}", problem.message());
    Failure {
        problem: Problem::new(problem.kind(), problem.target(), message),
        exit: failure.exit,
    }
}

/// Loads the one key source given, or `APIM_SAS_KEY`; warnings go to stderr.
pub(crate) fn load(source: &KeySource) -> Result<Keys, Failure> {
    load_with(source, &mut |warning| eprintln!("warning: {warning}"))
}

/// Loads the one key source given, or `APIM_SAS_KEY`, handing warnings to `warn`.
pub(crate) fn load_with(source: &KeySource, warn: Warn<'_>) -> Result<Keys, Failure> {
    if let Some(path) = &source.key_file {
        let bytes = read_secret(path, warn)?;
        let text = text_of(path, &bytes)?.trim();
        return match GatewayKey::new(text) {
            Ok(key) => Ok(Keys::Single(key)),
            // A list-keys answer given to --key-file: point to --keys.
            Err(e) if text.starts_with('{') => Err(with_hint(
                in_file(path, e),
                format_args!("--keys {} reads a list-keys file", path.display()),
            )),
            Err(e) => Err(in_file(path, e)),
        };
    }
    if let Some(path) = &source.keys {
        let bytes = read_secret(path, warn)?;
        let text = text_of(path, &bytes)?;
        return match KeyPair::from_json(text) {
            Ok(pair) => Ok(Keys::Pair(pair)),
            Err(e) if looks_like_bare_key(text) => Err(with_hint(
                in_file(path, e),
                format_args!("it holds one bare key: use --key-file {}", path.display()),
            )),
            // A keystore given to --keys: say so, rather than only that its shape is wrong.
            Err(e) if looks_like_keystore(text) => Err(with_hint(
                in_file(path, e),
                format_args!(
                    "it holds keys of gateways by id, a keystore: use --keystore {}",
                    path.display()
                ),
            )),
            Err(e) => Err(in_file(path, e)),
        };
    }
    if let Some(path) = &source.keystore {
        let bytes = read_secret(path, warn)?;
        let text = text_of(path, &bytes)?;
        let is_toml = path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("toml"));
        let store = if is_toml {
            Keystore::from_toml(text)
        } else {
            Keystore::from_json(text)
        };
        return match store {
            Ok(store) => Ok(Keys::Store(store)),
            // A bare key given to --keystore: point to --key-file.
            Err(e) if looks_like_bare_key(text) => Err(with_hint(
                in_file(path, e),
                format_args!(
                    "it holds one bare key, not a keystore: use --key-file {} --id <gateway id>",
                    path.display()
                ),
            )),
            // One gateway's list-keys answer given to --keystore: point to --keys.
            Err(e) if !is_toml && KeyPair::from_json(text).is_ok() => Err(with_hint(
                in_file(path, e),
                format_args!(
                    "it holds one gateway's keys, as list-keys returns them: \
                     use --keys {} --id <gateway id>",
                    path.display()
                ),
            )),
            Err(e) => Err(in_file(path, e)),
        };
    }
    match std::env::var_os(KEY_ENV) {
        Some(value) => {
            let value = Zeroizing::new(value.into_string().map_err(|_| {
                Failure::invocation(
                    ErrorKind::InvalidKey,
                    "key",
                    format!("{KEY_ENV}: not UTF-8 text"),
                )
            })?);
            let text = value.trim();
            GatewayKey::new(text).map(Keys::Single).map_err(|e| {
                let failure = Failure::usage(Problem::from(e).context(KEY_ENV));
                if text.starts_with('{') {
                    with_hint(failure, format_args!("write it to a file for --keys"))
                } else {
                    failure
                }
            })
        }
        None => Err(Failure::invocation(
            ErrorKind::KeyNotFound,
            "key",
            format!("no key: give --key-file, --keys or --keystore, or set {KEY_ENV}"),
        )),
    }
}

impl Keys {
    /// The key that signs for gateway `id` as `key_type` (mint).
    pub(crate) fn signing_key(&self, id: &str, key_type: KeyType) -> Result<&GatewayKey, Failure> {
        match self {
            Keys::Single(key) => Ok(key),
            Keys::Pair(pair) => pair.get(key_type).map_err(Failure::usage),
            Keys::Store(store) => store
                .get(id)
                .ok_or_else(|| {
                    Failure::invocation(
                        ErrorKind::GatewayNotExist,
                        "id",
                        format!("keystore: no keys for gateway '{id}'"),
                    )
                })?
                .get(key_type)
                .map_err(Failure::usage),
        }
    }

    /// A verifier holding these keys: every key, or only `only`. Single-gateway sources need
    /// `id`; with a keystore, `id` narrows it to one gateway, which must be in it.
    pub(crate) fn verifier(
        &self,
        id: Option<&str>,
        only: Option<KeyType>,
        policy: Policy,
    ) -> Result<Verifier, Failure> {
        let wanted = |t: KeyType| only.is_none_or(|only| only == t);
        let mut verifier = Verifier::new(policy);
        let need_id = || {
            id.ok_or_else(|| {
                Failure::invocation(
                    ErrorKind::EmptyGatewayId,
                    "id",
                    "--id: the gateway id is needed with --key-file, --keys or APIM_SAS_KEY",
                )
            })
        };
        let mut insert =
            |id: &str, t: KeyType, key| verifier.insert(id, t, key).map_err(Failure::usage);
        match self {
            Keys::Single(key) => insert(need_id()?, only.unwrap_or(KeyType::Primary), key)?,
            Keys::Pair(pair) => {
                let id = need_id()?;
                if let Some(only) = only {
                    insert(id, only, pair.get(only).map_err(Failure::usage)?)?;
                } else {
                    for (t, key) in pair.keys() {
                        insert(id, t, key)?;
                    }
                }
            }
            Keys::Store(store) => {
                if let Some(id) = id {
                    if store.get(id).is_none() {
                        return Err(Failure::invocation(
                            ErrorKind::GatewayNotExist,
                            "id",
                            format!("--id {id}: the keystore has no gateway '{id}'"),
                        ));
                    }
                }
                for (gateway, pair) in store.iter() {
                    if id.is_some_and(|only_id| only_id != gateway) {
                        continue;
                    }
                    for (t, key) in pair.keys().filter(|(t, _)| wanted(*t)) {
                        insert(gateway, t, key)?;
                    }
                }
            }
        }
        Ok(verifier)
    }
}
