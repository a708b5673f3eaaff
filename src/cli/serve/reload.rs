//! Loading the keys at start and reloading them: on SIGHUP, and when a poll sees the key file
//! changed. A reload that fails keeps the keys in use.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use apim_sas::layer::SharedVerifier;
use apim_sas::{ErrorKind, KeyType, Policy, Verifier};
use tokio::sync::Mutex;
use tracing::{error, info, warn};

use super::metrics::Metrics;
use crate::cli::failure::Failure;
use crate::cli::flags::KeySource;
use crate::cli::keys;

/// Where the keys come from and how they become a verifier; loaded at start and on reload.
pub(super) struct Keys {
    pub(super) source: KeySource,
    pub(super) id: Option<String>,
    pub(super) only: Option<KeyType>,
    pub(super) policy: Policy,
    /// The verdict cache's size, 0 for none.
    pub(super) cache: usize,
}

impl Keys {
    fn load(&self, warn: keys::Warn<'_>) -> Result<Verifier, Failure> {
        let verifier = keys::load_with(&self.source, warn)?.verifier(
            self.id.as_deref(),
            self.only,
            self.policy,
        )?;
        Ok(verifier.with_cache(self.cache))
    }

    /// What the flags alone say is wrong with the key source, found before the service listens:
    /// no source at all, or a single gateway's keys without `--id`. (Whether a keystore holds the
    /// `--id` asked for is known once it is loaded.)
    pub(super) fn check(&self) -> Result<(), Failure> {
        let s = &self.source;
        if s.keystore.is_some() {
            return Ok(());
        }
        if s.key_file.is_none() && s.keys.is_none() && std::env::var_os(keys::KEY_ENV).is_none() {
            return Err(Failure::invocation(
                ErrorKind::KeyNotFound,
                "key",
                format!(
                    "no key: give --key-file, --keys or --keystore, or set {}",
                    keys::KEY_ENV
                ),
            ));
        }
        if self.id.is_none() {
            return Err(Failure::invocation(
                ErrorKind::EmptyGatewayId,
                "id",
                "--id: the gateway id is needed with --key-file, --keys or APIM_SAS_KEY",
            ));
        }
        Ok(())
    }

    /// The file watched for changes: the one key file given (none for `APIM_SAS_KEY`).
    pub(super) fn path(&self) -> Option<&PathBuf> {
        let s = &self.source;
        s.key_file
            .as_ref()
            .or(s.keys.as_ref())
            .or(s.keystore.as_ref())
            .filter(|path| path.as_os_str() != "-")
    }
}

/// Why the keys are reloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reason {
    /// SIGHUP: always reloads.
    Hangup,
    /// A poll of the key file: reloads only if the file changed since the last load, whatever
    /// started that one, so that one change is one reload (and one error, if it is bad).
    Poll,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Hangup => "SIGHUP",
            Reason::Poll => "the key file changed",
        }
    }
}

/// How long one read of the key file (a load, or a look at its metadata) may take. Past it the
/// reload fails, is counted and logged, and the service goes on with the keys it has; the read
/// itself cannot be cancelled (a stalled network volume), so until it returns, later reloads
/// fail at once instead of starting another.
pub(super) const LOAD_DEADLINE: Duration = Duration::from_secs(5);

/// Loads the keys and swaps them in; one load at a time, so that a slow older load can never
/// replace the keys a newer one stored.
pub(super) struct Reloader {
    keys: Keys,
    shared: SharedVerifier,
    pub(super) ready: AtomicBool,
    metrics: Arc<Metrics>,
    /// Held during a load; the key file as it was just before the last load began.
    pub(super) seen: Mutex<Option<Fingerprint>>,
    /// Set while a read of the key file runs, on its blocking thread.
    busy: Arc<AtomicBool>,
    /// The key file's version whose warnings (group-readable) were logged: once per change.
    warned: std::sync::Mutex<Option<Fingerprint>>,
}

/// Why a read of the key file gave no answer.
#[derive(Debug)]
enum Stalled {
    /// An earlier read has not returned yet.
    Busy,
    /// This read did not return within [`LOAD_DEADLINE`].
    Deadline,
}

impl Stalled {
    fn problem(&self) -> Failure {
        let message = match self {
            Stalled::Busy => "an earlier read of the key file has not returned yet (a stalled \
                              volume?); not reading it again until it does"
                .to_owned(),
            Stalled::Deadline => format!(
                "reading the key file took more than {} s (a stalled volume?)",
                LOAD_DEADLINE.as_secs()
            ),
        };
        Failure::invocation(ErrorKind::InvalidKeyFile, "key", message)
    }
}

impl Reloader {
    pub(super) fn new(keys: Keys, shared: SharedVerifier, metrics: Arc<Metrics>) -> Reloader {
        Reloader {
            keys,
            shared,
            ready: AtomicBool::new(false),
            metrics,
            seen: Mutex::new(None),
            busy: Arc::new(AtomicBool::new(false)),
            warned: std::sync::Mutex::new(None),
        }
    }

    /// Runs `read` on a blocking thread, at most one at a time, waiting at most
    /// [`LOAD_DEADLINE`].
    async fn blocking<T: Send + 'static>(
        &self,
        read: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Stalled> {
        if self.busy.swap(true, Ordering::AcqRel) {
            return Err(Stalled::Busy);
        }
        let busy = Arc::clone(&self.busy);
        let task = tokio::task::spawn_blocking(move || {
            let value = read();
            busy.store(false, Ordering::Release);
            value
        });
        match tokio::time::timeout(LOAD_DEADLINE, task).await {
            Ok(Ok(value)) => Ok(value),
            // The read panicked: its thread is gone, so no read is running.
            Ok(Err(_)) => {
                self.busy.store(false, Ordering::Release);
                Err(Stalled::Deadline)
            }
            Err(_) => Err(Stalled::Deadline),
        }
    }

    /// The key file as it is now; `Ok(None)` for `APIM_SAS_KEY` and stdin.
    async fn fingerprint(&self) -> Result<Option<Fingerprint>, Stalled> {
        let Some(path) = self.keys.path().cloned() else {
            return Ok(None);
        };
        self.blocking(move || fingerprint(&path)).await.map(Some)
    }

    /// Loads the keys, noting in `seen` the key file as it was before it was read (so that a
    /// change during the load is seen by the next poll). The caller holds `seen`'s lock.
    pub(super) async fn load(
        self: &Arc<Self>,
        seen: &mut Option<Fingerprint>,
    ) -> Result<usize, Failure> {
        *seen = self
            .fingerprint()
            .await
            .map_err(|stalled| stalled.problem())?;
        let this = Arc::clone(self);
        // Reading a file may block (a stalled volume): not on the runtime's threads, and not for
        // longer than the deadline.
        let (loaded, warnings) = self
            .blocking(move || {
                let mut warnings = Vec::new();
                let loaded = this.keys.load(&mut |warning| warnings.push(warning));
                (loaded, warnings)
            })
            .await
            .map_err(|stalled| stalled.problem())?;
        self.warn_once(seen, warnings);
        let loaded = loaded?;
        let gateways = loaded.len();
        self.metrics.loaded(&loaded);
        self.shared.store(loaded);
        self.ready.store(true, Ordering::Release);
        Ok(gateways)
    }

    /// Logs the key file's warnings, once per version of the file.
    fn warn_once(&self, version: &Option<Fingerprint>, warnings: Vec<String>) {
        if warnings.is_empty() {
            return;
        }
        let mut warned = self
            .warned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if version.is_some() && *warned == *version {
            return;
        }
        warned.clone_from(version);
        for warning in warnings {
            warn!("{warning}");
        }
    }

    /// A reload after start: a failure keeps the keys in use.
    pub(super) async fn reload(self: Arc<Self>, reason: Reason) {
        let mut seen = self.seen.lock().await;
        if reason == Reason::Poll {
            match self.fingerprint().await {
                Ok(now) if now == *seen => return,
                // A stalled read was counted and logged when it stalled; polls wait for it
                // quietly (SIGHUP still reports it).
                Err(Stalled::Busy) => return,
                _ => {}
            }
        }
        let why = reason.as_str();
        match self.load(&mut seen).await {
            Ok(gateways) => {
                self.metrics.reload_ok.inc();
                info!(reason = why, gateways, "keys reloaded");
            }
            Err(failure) => {
                self.metrics.reload_error.inc();
                // The problem names the file and the rule it broke, never a key.
                error!(
                    code = ErrorKind::InvalidKeyFile.as_str(),
                    reason = why,
                    problem = %failure.problem,
                    "key reload failed; the previous keys stay in use"
                );
            }
        }
    }
}

/// What identifies one version of the key file: where its symlinks lead (Kubernetes swaps a
/// `..data` symlink to a new directory) and the target's inode, size and times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fingerprint {
    target: Option<PathBuf>,
    meta: Option<(u64, u64, u64, i64, i64, i64, i64)>,
}

pub(super) fn fingerprint(path: &std::path::Path) -> Fingerprint {
    Fingerprint {
        target: std::fs::canonicalize(path).ok(),
        meta: std::fs::metadata(path).ok().map(|m| meta_of(&m)),
    }
}

#[cfg(unix)]
pub(super) fn meta_of(m: &std::fs::Metadata) -> (u64, u64, u64, i64, i64, i64, i64) {
    use std::os::unix::fs::MetadataExt;
    (
        m.dev(),
        m.ino(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    )
}

#[cfg(not(unix))]
pub(super) fn meta_of(m: &std::fs::Metadata) -> (u64, u64, u64, i64, i64, i64, i64) {
    let nanos = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    (0, 0, m.len(), nanos, 0, 0, 0)
}

/// Polls the key file and reloads when it changed since the last load. Polling, not file
/// events: it sees a swap of any symlink on the way to the file as it sees an edit, on every
/// file system.
pub(super) async fn watch(every: Duration, reloader: Arc<Reloader>) {
    // The first poll one period after the load that just happened, not at once.
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        Arc::clone(&reloader).reload(Reason::Poll).await;
    }
}

/// SIGHUP, one at a time; never fires where there is none.
pub(super) struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    pub(super) fn new() -> Hangups {
        Hangups {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
        }
    }

    pub(super) async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.signal {
            if signal.recv().await.is_some() {
                return;
            }
        }
        std::future::pending::<()>().await;
    }
}
