//! Where a renewal goes, checked on every run, renewal due or not, so that a mistake shows on the
//! first run rather than when the token lapses:
//! - a symbolic link is followed only when root or the user running the command owns it (the
//!   kernel's `protected_symlinks` rule for sticky directories, applied everywhere): a link
//!   planted by another user in a shared directory could otherwise point a root job at any file.
//!   A dangling link is followed too: its target is created.
//! - the file must not be one of the key files the command reads (by device and inode, so a
//!   symbolic or hard link to it is the same file).
//! - a renewal must be writable: a temporary file can be made in the directory, and a sticky
//!   directory lets this user replace the file.

use std::fs::{self, Metadata};
use std::io;
use std::path::{Path, PathBuf};

/// How many symbolic links are followed before giving up (the kernel's own limit).
const MAX_LINKS: usize = 40;

/// The file a renewal replaces: no symbolic link left in its last component.
pub(crate) struct Target {
    /// The path, links resolved.
    pub(crate) path: PathBuf,
    /// Its metadata, `None` when there is no file yet.
    pub(crate) metadata: Option<Metadata>,
}

/// Why a target is refused: the message, after `--file PATH: `.
pub(crate) type Refusal = String;

/// Why a path could not be resolved.
pub(crate) enum Unresolved {
    /// It cannot be looked at (a parent that is a file, no permission).
    Unreadable(io::Error),
    /// A link that may not be followed, or too many of them.
    Refused(Refusal),
}

/// Who runs the command, as the kernel sees it for file access.
fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Follows `path`'s symbolic links (each must be owned by root or by the user running the
/// command) to the file they lead to, which may not exist yet.
pub(crate) fn resolve(path: &Path) -> Result<Target, Unresolved> {
    use std::os::unix::fs::MetadataExt;
    let mut current = path.to_path_buf();
    for _ in 0..=MAX_LINKS {
        let metadata = match fs::symlink_metadata(&current) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Target {
                    path: current,
                    metadata: None,
                })
            }
            Err(e) => return Err(Unresolved::Unreadable(e)),
        };
        if !metadata.file_type().is_symlink() {
            return Ok(Target {
                path: current,
                metadata: Some(metadata),
            });
        }
        let owner = metadata.uid();
        let me = euid();
        if owner != 0 && owner != me {
            return Err(Unresolved::Refused(format!(
                "{} is a symbolic link owned by uid {owner}, neither root nor the user running \
                 renew (uid {me}); following it could replace any file this user may write \
                 (the kernel's protected_symlinks rule)",
                current.display()
            )));
        }
        let destination = fs::read_link(&current).map_err(Unresolved::Unreadable)?;
        current = match current.parent() {
            Some(dir) if destination.is_relative() => dir.join(destination),
            _ => destination,
        };
    }
    Err(Unresolved::Refused(format!(
        "more than {MAX_LINKS} symbolic links from {}",
        path.display()
    )))
}

impl Target {
    /// The directory the file is in.
    pub(crate) fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        }
    }

    /// The file's name, as the temporary files and markers beside it are named after it.
    pub(crate) fn name(&self) -> &std::ffi::OsStr {
        self.path.file_name().unwrap_or_default()
    }

    /// Refuses a target that is one of the key files (`keys`: their paths, as given).
    pub(crate) fn check_not_key_file<'p>(
        &self,
        keys: impl IntoIterator<Item = (&'static str, &'p Path)>,
    ) -> Result<(), Refusal> {
        use std::os::unix::fs::MetadataExt;
        let Some(target) = &self.metadata else {
            return Ok(());
        };
        for (flag, key_path) in keys {
            let same = fs::metadata(key_path)
                .is_ok_and(|key| (key.dev(), key.ino()) == (target.dev(), target.ino()));
            if same {
                return Err(format!(
                    "it is the key file given to {flag} (the same file); renewing would replace \
                     the keys with a token"
                ));
            }
        }
        Ok(())
    }

    /// Checks that a renewal could be written: a temporary file can be created in the directory
    /// (and is removed at once), and, in a sticky directory, this user may replace the file.
    pub(crate) fn check_writable(&self) -> Result<(), Refusal> {
        use std::os::unix::fs::MetadataExt;
        let dir = self.dir();
        if let Err(e) = super::atomic::probe(dir) {
            return Err(format!(
                "cannot write a renewal in {} ({e}); nothing was written",
                dir.display()
            ));
        }
        let me = euid();
        if let (Some(file), Ok(dir_meta)) = (&self.metadata, fs::metadata(dir)) {
            let sticky = dir_meta.mode() & 0o1000 != 0;
            if sticky && me != 0 && file.uid() != me && dir_meta.uid() != me {
                return Err(format!(
                    "cannot write a renewal: {} is a sticky directory and the file belongs to \
                     uid {}, not to uid {me}; nothing was written",
                    dir.display(),
                    file.uid()
                ));
            }
        }
        Ok(())
    }
}
