//! `renew --deploy-hook CMD` (certbot's name for it): what makes a renewal take effect (restart
//! the gateway, apply the Secret). It runs through `/bin/sh -c` after a renewal was written, never
//! when the file was kept, with the file, the reason and the new expiry in its environment. A hook
//! that fails is remembered in a marker beside the file, so that the next run runs it again
//! although the file is now fresh; a hook that succeeds removes the marker.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use serde::{Deserialize, Serialize};

use super::atomic;
use super::keys::KEY_ENV;
use super::target::Target;

/// What a failed hook left behind for the next run.
#[derive(Serialize, Deserialize)]
pub(crate) struct Pending {
    /// Why the file was renewed when the hook failed: the next run hands it to the hook again.
    pub(crate) reason: String,
}

/// What became of the hook in one run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome {
    /// Whether it ran.
    pub(crate) ran: bool,
    /// Whether it ran again for a renewal of an earlier run.
    pub(crate) retry: bool,
    /// Its exit status; `None` when it did not run or was killed by a signal.
    pub(crate) status: Option<i32>,
}

impl Outcome {
    pub(crate) const NOT_RUN: Outcome = Outcome {
        ran: false,
        retry: false,
        status: None,
    };
}

/// The marker beside `target`: `.NAME.apim-sas-hook`, or, when that name would be longer than a
/// file name may be, `.apim-sas-hook.` and a digest of the name.
pub(crate) fn marker(target: &Target) -> PathBuf {
    let name = target.name();
    let mut marker = OsString::from(".");
    marker.push(name);
    marker.push(".apim-sas-hook");
    if marker.len() > 255 {
        use sha2::Digest as _;
        let digest = sha2::Sha512::digest(name.as_encoded_bytes());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        marker = OsString::from(format!(".apim-sas-hook.{hex}"));
    }
    target.dir().join(marker)
}

/// The hook a previous run left failed, if any. A marker that cannot be read still says that a
/// hook is owed; its reason is then unknown.
pub(crate) fn pending(marker: &Path) -> Option<Pending> {
    let bytes = fs::read(marker).ok()?;
    Some(serde_json::from_slice(&bytes).unwrap_or(Pending {
        reason: "unknown".to_owned(),
    }))
}

/// Runs `command` through `/bin/sh -c` with `APIM_SAS_FILE`, `APIM_SAS_REASON` and
/// `APIM_SAS_EXPIRY`; its output goes to stderr (stdout is the command's report), its stdin is
/// empty, and `APIM_SAS_KEY` is not passed on: the hook needs no key.
pub(crate) fn run(
    command: &str,
    file: &Path,
    reason: &str,
    expiry: &str,
) -> std::io::Result<ExitStatus> {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .env("APIM_SAS_FILE", file)
        .env("APIM_SAS_REASON", reason)
        .env("APIM_SAS_EXPIRY", expiry)
        .env_remove(KEY_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .status()
}

/// Records (hook failed) or clears (hook succeeded) the marker.
pub(crate) fn remember(marker: &Path, failed: Option<&Pending>) -> std::io::Result<()> {
    match failed {
        Some(pending) => {
            let bytes = serde_json::to_vec(pending).map_err(std::io::Error::other)?;
            atomic::replace(marker, &bytes, None)
        }
        None => match fs::remove_file(marker) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    }
}
