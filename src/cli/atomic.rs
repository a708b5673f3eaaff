//! Replacing a file so that a reader sees the old bytes or the new, never a mix, an empty file or
//! a half-written one, even if the process or the machine stops halfway: the new bytes go to a
//! temporary file in the same directory (created private, with `create_new`), are flushed to the
//! disk, and the temporary file is renamed over the target, which is atomic within a file system;
//! then the directory is flushed so that the rename itself survives a crash. The target file is
//! never opened for writing.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A temporary file that is removed when dropped, unless it was renamed into place.
struct Temporary {
    path: PathBuf,
    placed: bool,
}

impl Drop for Temporary {
    fn drop(&mut self) {
        if !self.placed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Creates a new file in `dir` with a name no other process uses (`.apim-sas.PID.N.tmp`, under
/// 40 bytes whatever the target's name, so that any name the file system allows can be renewed),
/// readable and writable by its owner only.
fn create_temporary(dir: &Path) -> io::Result<(File, Temporary)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    let mut last = None;
    for _ in 0..16 {
        let salt = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".apim-sas.{pid}.{salt:x}{n}.tmp"));
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(&path) {
            Ok(file) => {
                return Ok((
                    file,
                    Temporary {
                        path,
                        placed: false,
                    },
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free temporary file name")))
}

/// Gives the new file the permissions (and, on Unix, the owner and group) of the file it
/// replaces, so that whoever read the old one can read the new one. A new file stays 0600.
fn keep_access(file: &File, previous: Option<&Metadata>) -> io::Result<()> {
    let Some(previous) = previous else {
        return Ok(());
    };
    file.set_permissions(previous.permissions())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let now = file.metadata()?;
        if (now.uid(), now.gid()) != (previous.uid(), previous.gid()) {
            // Only root may give a file away; a non-root job that may replace the file keeps
            // at least the group when it belongs to it, and says what it could not keep rather
            // than leaving the token unrenewed.
            let kept = std::os::unix::fs::fchown(file, Some(previous.uid()), Some(previous.gid()))
                .or_else(|_| std::os::unix::fs::fchown(file, None, Some(previous.gid())));
            if let Err(e) = kept {
                if e.kind() != io::ErrorKind::PermissionDenied {
                    return Err(e);
                }
                eprintln!(
                    "warning: the renewed file could not keep its owner and group \
                     ({}:{}); it is now {}:{} with the same mode",
                    previous.uid(),
                    previous.gid(),
                    now.uid(),
                    now.gid()
                );
            }
        }
    }
    Ok(())
}

/// Whether a file can be written in `dir`: a temporary file is created there and removed.
pub(crate) fn probe(dir: &Path) -> io::Result<()> {
    create_temporary(dir).map(drop)
}

/// Replaces `target` with `contents` atomically (see the module's docs). `target` is no symbolic
/// link (the caller resolved them: see `target.rs`); `previous` is the metadata of the file being
/// replaced, `None` when there is none. On error nothing was changed and the temporary file is
/// gone.
pub(crate) fn replace(
    target: &Path,
    contents: &[u8],
    previous: Option<&Metadata>,
) -> io::Result<()> {
    if target.file_name().is_none() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file name",
        ));
    }
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let (mut file, mut temporary) = create_temporary(dir)?;
    file.write_all(contents)?;
    file.flush()?;
    keep_access(&file, previous)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temporary.path, target)?;
    temporary.placed = true;
    // The rename is durable once the directory is. Some file systems refuse to sync a directory;
    // the file is in place either way, so that is not worth failing over.
    #[cfg(unix)]
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".tmp"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_and_keeps_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        replace(&path, b"one\n", None).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode(&path), 0o600);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
            let previous = fs::metadata(&path).unwrap();
            replace(&path, b"two\n", Some(&previous)).unwrap();
            assert_eq!(mode(&path), 0o640);
        }
        assert_eq!(fs::read(&path).unwrap(), b"two\n");
        assert!(leftovers(dir.path()).is_empty());
    }

    /// A rename that fails (the target is a non-empty directory) leaves the target as it was
    /// and no temporary file behind.
    #[test]
    fn a_failed_rename_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("token");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("inside"), b"x").unwrap();
        let previous = fs::metadata(&target).unwrap();
        let err = replace(&target, b"new\n", Some(&previous)).unwrap_err();
        assert_ne!(err.kind(), io::ErrorKind::NotFound, "{err}");
        assert!(
            leftovers(dir.path()).is_empty(),
            "{:?}",
            leftovers(dir.path())
        );
        assert_eq!(fs::read(target.join("inside")).unwrap(), b"x");
    }
}
