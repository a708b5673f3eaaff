//! Reading a keystore file: JSON, or TOML when the name ends in `.toml`, as the command's
//! `--keystore`. The file is read by nginx's master while it reads its configuration (as root, so
//! the keystore can stay mode 0600), and the text is wiped once parsed.

use std::io::Read;
use std::path::Path;

use apim_sas::{ErrorKind, Keystore};
use zeroize::Zeroizing;

/// The largest keystore read, as the command's: far above a keystore of a few hundred gateways.
const LIMIT: u64 = 64 * 1024;

/// The keystore at `path`, or the problem as `Code: message` (what `nginx -t` shows).
pub(crate) fn load(path: &Path) -> Result<Keystore, String> {
    let shown = path.display();
    let problem = |what: &dyn std::fmt::Display| {
        format!(
            "{}: key file {shown}: {what}",
            ErrorKind::InvalidKeyFile.as_str()
        )
    };
    let text = read(path).map_err(|err| problem(&err))?;
    let parsed = if path.extension().is_some_and(|ext| ext == "toml") {
        Keystore::from_toml(&text)
    } else {
        Keystore::from_json(&text)
    };
    parsed.map_err(|err| format!("{}: key file {shown}: {}", err.code(), err.message()))
}

/// The file's text. Only a regular file is read: it is opened without blocking (a FIFO's open
/// would wait for a writer and stall nginx's start or reload) and its type checked first.
fn read(path: &Path) -> std::io::Result<Zeroizing<String>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(std::io::Error::other(if kind.is_dir() {
            "a directory, not a file"
        } else {
            "not a regular file (a FIFO, a socket or a device); refused without reading it"
        }));
    }
    let mut text = Zeroizing::new(String::with_capacity(LIMIT as usize + 1));
    file.take(LIMIT + 1).read_to_string(&mut text)?;
    if text.len() as u64 > LIMIT {
        return Err(std::io::Error::other(format!("larger than {LIMIT} bytes")));
    }
    Ok(text)
}
