//! Key sources: `--key-file`, `--keys`, `--keystore`, `APIM_SAS_KEY`. Never the command line.

use std::io::Read;
use std::path::Path;

use apim_sas::{Error, ErrorKind, GatewayKey, KeyPair, KeyType, Keystore, Target};
use zeroize::Zeroizing;

use super::args::KeySource;
use super::Failure;

/// The environment variable read when no key file is given.
pub(crate) const KEY_ENV: &str = "APIM_SAS_KEY";

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
    Failure::usage(Error::custom(
        ErrorKind::InvalidKeyFile,
        Target::Key,
        500,
        format!("key file {}: {what}", path.display()),
    ))
}

/// Reads a key file into memory that is wiped on drop; warns when others can read it.
fn read_secret(path: &Path) -> Result<Zeroizing<String>, Failure> {
    let mut file = std::fs::File::open(path).map_err(|e| key_file_error(path, e))?;
    warn_if_readable_by_others(path, &file);
    let mut bytes = Zeroizing::new(Vec::new());
    file.read_to_end(&mut bytes)
        .map_err(|e| key_file_error(path, e))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| key_file_error(path, "not UTF-8 text"))?;
    Ok(Zeroizing::new(text.to_owned()))
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path, file: &std::fs::File) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = file.metadata() {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o044 != 0 {
            eprintln!(
                "warning: key file {} is readable by group or others (mode {mode:03o}); \
                 restrict it with: chmod 600 {}",
                path.display(),
                path.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path, _: &std::fs::File) {}

/// Adds the file's path to a parse error from the library, keeping its code.
fn in_file(path: &Path, err: Error) -> Failure {
    Failure::usage(Error::custom(
        err.kind(),
        err.target_field(),
        err.http_status(),
        format!("key file {}: {}", path.display(), err.message()),
    ))
}

/// Loads the one key source given, or `APIM_SAS_KEY`.
pub(crate) fn load(source: &KeySource) -> Result<Keys, Failure> {
    if let Some(path) = &source.key_file {
        let text = read_secret(path)?;
        let key = GatewayKey::new(text.trim()).map_err(|e| in_file(path, e))?;
        return Ok(Keys::Single(key));
    }
    if let Some(path) = &source.keys {
        let text = read_secret(path)?;
        return Ok(Keys::Pair(
            KeyPair::from_json(&text).map_err(|e| in_file(path, e))?,
        ));
    }
    if let Some(path) = &source.keystore {
        let text = read_secret(path)?;
        let is_toml = path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("toml"));
        let store = if is_toml {
            Keystore::from_toml(&text)
        } else {
            Keystore::from_json(&text)
        };
        return Ok(Keys::Store(store.map_err(|e| in_file(path, e))?));
    }
    match std::env::var_os(KEY_ENV) {
        Some(value) => {
            let value = Zeroizing::new(value.into_string().map_err(|_| {
                Failure::usage(Error::custom(
                    ErrorKind::InvalidKey,
                    Target::Key,
                    500,
                    format!("{KEY_ENV}: not UTF-8 text"),
                ))
            })?);
            GatewayKey::new(value.trim())
                .map(Keys::Single)
                .map_err(|e| {
                    Failure::usage(Error::custom(
                        e.kind(),
                        Target::Key,
                        500,
                        format!("{KEY_ENV}: {}", e.message()),
                    ))
                })
        }
        None => Err(Failure::usage(Error::custom(
            ErrorKind::KeyNotFound,
            Target::Key,
            500,
            format!("no key: give --key-file, --keys or --keystore, or set {KEY_ENV}"),
        ))),
    }
}

impl Keys {
    /// The key that signs for gateway `id` as `key_type` (mint).
    pub(crate) fn signing_key(&self, id: &str, key_type: KeyType) -> Result<&GatewayKey, Error> {
        match self {
            Keys::Single(key) => Ok(key),
            Keys::Pair(pair) => pair.get(key_type),
            Keys::Store(store) => store
                .get(id)
                .ok_or_else(|| {
                    Error::custom(
                        ErrorKind::GatewayNotExist,
                        Target::Id,
                        500,
                        format!("keystore: no keys for gateway '{id}'"),
                    )
                })?
                .get(key_type),
        }
    }
}
