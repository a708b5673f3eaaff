//! `apim-sas serve`: the local HTTP service that gateways ask whether a request may pass (nginx
//! `auth_request`, Traefik `ForwardAuth`, Envoy `ext_authz`).
//!
//! This file holds only process concerns: listening, signals, reloading the keys, the metrics
//! registry and the log lines. The verdict on each request comes from the library's
//! [`VerifyLayer`], the same layer library users put in front of their own services.

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apim_sas::chrono::{DateTime, Utc};
use apim_sas::layer::Layer as _;
use apim_sas::layer::{
    GatewayIdentity, Service as _, SharedVerifier, Verification, VerifyBody, VerifyLayer,
    VerifyService,
};
use apim_sas::{ErrorKind, KeyType, Policy, Verifier};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use http::header::{HeaderName, HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Mutex};
use tracing::{debug, error, info, warn};

use super::failure::Failure;
use super::flags::{KeySource, VerifierFlags};
use super::{keys, values};

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The gateway id the keys belong to (needed with --key-file, --keys and APIM_SAS_KEY;
    /// with --keystore, serve only this gateway)
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) id: Option<String>,

    /// The address to listen on; port 0 picks a free port
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8089")]
    pub(crate) listen: String,

    /// A request header holding the token; repeat for several (the first present one is read)
    #[arg(long = "header", value_name = "NAME", default_value = "Authorization")]
    pub(crate) headers: Vec<String>,

    #[command(flatten)]
    pub(crate) verifier: VerifierFlags,

    /// How long SIGTERM or SIGINT waits for requests in flight before exiting
    #[arg(long, value_name = "DUR", default_value = "10s")]
    pub(crate) drain: String,

    /// How log lines are written to stderr
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,

    /// How long a connection may take to send a complete request head before it is closed
    #[arg(long, value_name = "DUR", default_value = "10s")]
    pub(crate) head_timeout: String,

    /// How often the key file is checked for changes (SIGHUP reloads at once), or none
    #[arg(long, value_name = "DUR|none", default_value = "500ms")]
    pub(crate) poll: String,

    /// Threads answering requests; 1 runs everything on one thread [default: 1 on up to 2 cores, else one per core]
    #[arg(long, value_name = "N")]
    pub(crate) workers: Option<usize>,

    #[command(flatten)]
    pub(crate) keys: KeySource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Lines for people
    Text,
    /// One JSON object per line, for log pipelines
    Json,
}

/// The largest request head read: anything longer is answered `431`.
const MAX_HEAD: usize = 16 * 1024;

/// The most header lines a request head may have (hyper's default, 100, refuses a 101st with
/// `431` however small the head). Not as many as 16 KiB could hold (5,461 of the shortest): hyper
/// then sets up room for that many on every request, and serve answered at 8 % of its speed
/// (`wrk` direct, one thread); 256 cost 8 %, 1,024 cost 19 %. 256 is more than gateways pass
/// (Envoy's own default limit is 100).
const MAX_HEADERS: usize = 256;

const X_GATEWAY_ID: HeaderName = HeaderName::from_static("x-apim-gateway-id");
const X_KEY_TYPE: HeaderName = HeaderName::from_static("x-apim-key-type");
const X_TOKEN_EXPIRY: HeaderName = HeaderName::from_static("x-apim-token-expiry");
const X_TOKEN_FORMAT: HeaderName = HeaderName::from_static("x-apim-token-format");

/// The flags, read and checked before anything starts.
struct Settings {
    listen: SocketAddr,
    headers: Vec<HeaderName>,
    drain: Duration,
    head_timeout: Duration,
    poll: Option<Duration>,
    workers: Option<usize>,
    log_format: LogFormat,
    fixed_now: Option<DateTime<Utc>>,
    keys: Keys,
}

/// Where the keys come from and how they become a verifier; loaded at start and on reload.
struct Keys {
    source: KeySource,
    id: Option<String>,
    only: Option<KeyType>,
    policy: Policy,
}

impl Keys {
    fn load(&self) -> Result<Verifier, Failure> {
        keys::load(&self.source)?.verifier(self.id.as_deref(), self.only, self.policy)
    }

    /// What the flags alone say is wrong with the key source, found before the service listens:
    /// no source at all, or a single gateway's keys without `--id`. (Whether a keystore holds the
    /// `--id` asked for is known once it is loaded.)
    fn check(&self) -> Result<(), Failure> {
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
    fn path(&self) -> Option<&PathBuf> {
        let s = &self.source;
        s.key_file
            .as_ref()
            .or(s.keys.as_ref())
            .or(s.keystore.as_ref())
            .filter(|path| path.as_os_str() != "-")
    }
}

fn invalid(flag: &'static str, message: String) -> Failure {
    Failure::invocation(ErrorKind::InvalidArgument, flag, message)
}

fn std_duration(flag: &'static str, text: &str) -> Result<Duration, Failure> {
    values::duration(flag, text)
        .map_err(Failure::usage)?
        .to_std()
        .map_err(|_| invalid(flag, format!("{flag}: not a positive duration")))
}

impl Settings {
    fn read(args: ServeArgs, fixed_now: Option<DateTime<Utc>>) -> Result<Settings, Failure> {
        let (policy, only) = args.verifier.read()?;
        let listen = args
            .listen
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| {
                invalid(
                    "listen",
                    format!(
                        "--listen {}: not an ADDR:PORT, e.g. 127.0.0.1:8089",
                        args.listen
                    ),
                )
            })?;
        let headers = args
            .headers
            .iter()
            .map(|name| {
                HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|_| invalid("header", format!("--header {name}: not a header name")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let keys = Keys {
            source: args.keys,
            id: args.id,
            only,
            policy,
        };
        keys.check()?;
        let poll = match values::limit("--poll", &args.poll).map_err(Failure::usage)? {
            Some(every) => Some(
                every
                    .to_std()
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| invalid("poll", "--poll: not a positive duration".into()))?,
            ),
            None => None,
        };
        Ok(Settings {
            listen,
            headers,
            drain: std_duration("--drain", &args.drain)?,
            head_timeout: std_duration("--head-timeout", &args.head_timeout)?,
            poll,
            workers: args.workers.filter(|&n| n > 0),
            log_format: args.log_format,
            fixed_now,
            keys,
        })
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs the service until SIGTERM or SIGINT; `fixed_now` (from `--now`) freezes the clock.
pub(crate) fn run(args: ServeArgs, fixed_now: Option<DateTime<Utc>>) -> Result<u8, Failure> {
    let settings = Settings::read(args, fixed_now)?;
    init_logging(settings.log_format);
    let runtime = match settings.workers {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
        // On two cores or fewer, one thread: the gateway and its clients need the other core, and
        // a multi-threaded runtime's cross-thread wake-ups cost more than they bring
        // (benches/serve.sh: the same throughput behind nginx for less CPU, p99 a fifth).
        None if cores() <= 2 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    }
    .map_err(|e| {
        Failure::invocation(
            ErrorKind::InvalidArgument,
            "serve",
            format!("starting the runtime: {e}"),
        )
    })?;
    let result = runtime.block_on(serve(settings));
    // A key load still blocked (a key file on a stalled volume) must not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

fn init_logging(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_max_level(tracing::Level::INFO);
    // A subscriber already set (never, in the binary) keeps logging where it did.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The codes a presented token can be refused with.
const TOKEN_CODES: [ErrorKind; 10] = [
    ErrorKind::EmptyToken,
    ErrorKind::TokenTooLong,
    ErrorKind::MalformedToken,
    ErrorKind::InvalidGatewayId,
    ErrorKind::MalformedExpiry,
    ErrorKind::MalformedSignature,
    ErrorKind::GatewayNotExist,
    ErrorKind::SignatureMismatch,
    ErrorKind::TokenExpired,
    ErrorKind::ExpiryTooFar,
];

/// The metrics registry and the handles the request path and the reloader update.
struct Metrics {
    registry: Registry,
    valid: Counter,
    /// One counter per code a token can be refused with, created up front so that each shows
    /// (at 0) from the first scrape and counting needs no lookup in the family's map.
    refused: Vec<(ErrorKind, Counter)>,
    verifications: Family<[(&'static str, &'static str); 1], Counter>,
    duration: Histogram,
    gateways: Gauge,
    reload_ok: Counter,
    reload_error: Counter,
    last_reload_success: Gauge<f64, AtomicU64>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let verifications = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let valid = verifications.get_or_create(&[("result", "valid")]).clone();
        let refused = TOKEN_CODES
            .iter()
            .map(|&kind| {
                let counter = verifications.get_or_create(&[("result", kind.as_str())]);
                (kind, counter.clone())
            })
            .collect();
        registry.register(
            "apim_sas_verifications",
            "Requests verified, by result: valid or the error code",
            verifications.clone(),
        );
        // 1 µs to 65 ms: a verification takes microseconds.
        let duration = Histogram::new(exponential_buckets(1e-6, 2.0, 17));
        registry.register(
            "apim_sas_verification_duration_seconds",
            "Time spent finding and verifying a request's token",
            duration.clone(),
        );
        let gateways = Gauge::default();
        registry.register(
            "apim_sas_keystore_gateways",
            "Gateways whose keys are loaded",
            gateways.clone(),
        );
        let reloads = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let reload_ok = reloads.get_or_create(&[("result", "ok")]).clone();
        let reload_error = reloads.get_or_create(&[("result", "error")]).clone();
        registry.register(
            "apim_sas_keystore_reloads",
            "Key reloads after start (SIGHUP or a changed key file), by result",
            reloads,
        );
        let last_reload_success = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "apim_sas_keystore_last_reload_success_timestamp_seconds",
            "When the keys in use were loaded, in seconds since the Unix epoch",
            last_reload_success.clone(),
        );
        Metrics {
            registry,
            valid,
            refused,
            verifications,
            duration,
            gateways,
            reload_ok,
            reload_error,
            last_reload_success,
        }
    }

    fn record(&self, verification: &Verification<'_>) {
        self.duration.observe(verification.elapsed.as_secs_f64());
        match verification.result {
            Ok(_) => {
                self.valid.inc();
            }
            Err(error) => {
                let kind = error.kind();
                match self.refused.iter().find(|(k, _)| *k == kind) {
                    Some((_, counter)) => counter.inc(),
                    None => self
                        .verifications
                        .get_or_create(&[("result", kind.as_str())])
                        .inc(),
                };
                info!(
                    code = error.code(),
                    target = error.target(),
                    path = verification.uri.path(),
                    "refused"
                );
            }
        }
    }

    fn loaded(&self, verifier: &Verifier) {
        self.gateways
            .set(i64::try_from(verifier.len()).unwrap_or(i64::MAX));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_reload_success.set(now);
    }

    /// The metrics as Prometheus's text format, or as OpenMetrics to a scraper that asks for it.
    fn exposition(&self, openmetrics: bool) -> Response<Body> {
        let mut text = String::with_capacity(4096);
        if encode(&mut text, &self.registry).is_err() {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "metrics: encoding failed\n",
            );
        }
        let (text, content_type) = if openmetrics {
            (
                text,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
        } else {
            (
                prometheus_text(&text),
                "text/plain; version=0.0.4; charset=utf-8",
            )
        };
        let mut response = Response::new(Either::Right(Full::new(Bytes::from(text))));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    }
}

/// Whether a request's `Accept` headers list OpenMetrics (at a quality above 0).
fn wants_openmetrics(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let is_openmetrics = parts
                .next()
                .is_some_and(|media| media.eq_ignore_ascii_case("application/openmetrics-text"));
            let refused = parts.any(|param| {
                param.split_once('=').is_some_and(|(name, q)| {
                    name.trim().eq_ignore_ascii_case("q")
                        && q.trim().parse::<f64>().is_ok_and(|q| q <= 0.0)
                })
            });
            is_openmetrics && !refused
        })
}

/// prometheus-client's OpenMetrics text, rewritten as Prometheus's text format 0.0.4. For the
/// metrics registered here the two differ in three ways: a counter's `# HELP` and `# TYPE` lines
/// name it as its samples do, with `_total` (0.0.4 parsers match samples to a TYPE line by the
/// exact name, and would take `x_total` for an untyped metric); there are no `# UNIT` lines; and
/// no `# EOF` line ends it. Samples, histograms and gauges are written alike.
fn prometheus_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "].into_iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(&name).then_some((prefix, name, tail))
        });
        match descriptor {
            Some((prefix, name, tail)) => {
                text.push_str(prefix);
                text.push_str(name);
                text.push_str("_total ");
                text.push_str(tail);
            }
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

/// Why the keys are reloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
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

/// Loads the keys and swaps them in; one load at a time, so that a slow older load can never
/// replace the keys a newer one stored.
struct Reloader {
    keys: Keys,
    shared: SharedVerifier,
    ready: AtomicBool,
    metrics: Arc<Metrics>,
    /// Held during a load; the key file as it was just before the last load began.
    seen: Mutex<Option<Fingerprint>>,
}

impl Reloader {
    /// The key file as it is now; none for `APIM_SAS_KEY` and stdin.
    async fn fingerprint(&self) -> Option<Fingerprint> {
        let path = self.keys.path()?.clone();
        tokio::task::spawn_blocking(move || fingerprint(&path))
            .await
            .ok()
    }

    /// Loads the keys, noting in `seen` the key file as it was before it was read (so that a
    /// change during the load is seen by the next poll). The caller holds `seen`'s lock.
    async fn load(self: &Arc<Self>, seen: &mut Option<Fingerprint>) -> Result<usize, Failure> {
        *seen = self.fingerprint().await;
        let this = Arc::clone(self);
        // Reading a file may block (a stalled volume, a FIFO): not on the runtime's threads.
        let loaded = tokio::task::spawn_blocking(move || this.keys.load())
            .await
            .map_err(|e| {
                Failure::invocation(
                    ErrorKind::InvalidKeyFile,
                    "key",
                    format!("loading the keys: {e}"),
                )
            })??;
        let gateways = loaded.len();
        self.metrics.loaded(&loaded);
        self.shared.store(loaded);
        self.ready.store(true, Ordering::Release);
        Ok(gateways)
    }

    /// A reload after start: a failure keeps the keys in use.
    async fn reload(self: Arc<Self>, reason: Reason) {
        let mut seen = self.seen.lock().await;
        if reason == Reason::Poll && self.fingerprint().await == *seen {
            return;
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
#[derive(Debug, PartialEq, Eq)]
struct Fingerprint {
    target: Option<PathBuf>,
    meta: Option<(u64, u64, u64, i64, i64, i64, i64)>,
}

fn fingerprint(path: &std::path::Path) -> Fingerprint {
    Fingerprint {
        target: std::fs::canonicalize(path).ok(),
        meta: std::fs::metadata(path).ok().map(|m| meta_of(&m)),
    }
}

#[cfg(unix)]
fn meta_of(m: &std::fs::Metadata) -> (u64, u64, u64, i64, i64, i64, i64) {
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
fn meta_of(m: &std::fs::Metadata) -> (u64, u64, u64, i64, i64, i64, i64) {
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
async fn watch(every: Duration, reloader: Arc<Reloader>) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        Arc::clone(&reloader).reload(Reason::Poll).await;
    }
}

/// The response body: the layer's, or one of ours.
type Body = Either<VerifyBody<Full<Bytes>>, Full<Bytes>>;

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from_static(
        text.as_bytes(),
    ))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The answer to a request the layer let through: `200`, empty, and who it was.
#[derive(Clone, Copy)]
struct Allow;

impl apim_sas::layer::Service<Request<Incoming>> for Allow {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Full<Bytes>>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let mut response = Response::new(Full::new(Bytes::new()));
        let headers = response.headers_mut();
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        let Some(identity) = request.extensions().get::<GatewayIdentity>() else {
            // Only reachable if the layer were not in front: a wiring bug, the service's fault.
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            return ready(Ok(response));
        };
        // Ids are printable ASCII and RFC 3339 is ASCII: both are valid header values.
        if let Ok(id) = HeaderValue::try_from(identity.id().to_owned()) {
            headers.insert(X_GATEWAY_ID, id);
        }
        headers.insert(
            X_KEY_TYPE,
            HeaderValue::from_static(identity.key_type().as_str()),
        );
        let mut expiry = Vec::with_capacity(28);
        values::push_rfc3339(&mut expiry, identity.expiry());
        if let Ok(expiry) = HeaderValue::from_maybe_shared(Bytes::from(expiry)) {
            headers.insert(X_TOKEN_EXPIRY, expiry);
        }
        headers.insert(
            X_TOKEN_FORMAT,
            HeaderValue::from_static(identity.format().as_str()),
        );
        ready(Ok(response))
    }
}

/// Everything a connection's requests share.
struct App {
    verify: VerifyService<Allow>,
    ready: Arc<Reloader>,
    metrics: Arc<Metrics>,
}

/// The routes: `/verify` and below through the layer, health, readiness, metrics, else `404`.
#[derive(Clone)]
struct Routes(Arc<App>);

impl hyper::service::Service<Request<Incoming>> for Routes {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, request: Request<Incoming>) -> Answer {
        let app = &self.0;
        let path = request.uri().path();
        if path == "/verify" || path.starts_with("/verify/") {
            if !app.ready.ready.load(Ordering::Acquire) {
                return Answer::now(plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "keys not loaded yet\n",
                ));
            }
            return Answer::Verify(app.verify.clone().call(request));
        }
        let get = matches!(*request.method(), Method::GET | Method::HEAD);
        Answer::now(match path {
            "/healthz" if get => plain(StatusCode::OK, "ok\n"),
            "/readyz" if get => {
                if app.ready.ready.load(Ordering::Acquire) {
                    plain(StatusCode::OK, "ready\n")
                } else {
                    plain(StatusCode::SERVICE_UNAVAILABLE, "keys not loaded yet\n")
                }
            }
            "/metrics" if get => app.metrics.exposition(wants_openmetrics(&request)),
            _ => plain(StatusCode::NOT_FOUND, "not found\n"),
        })
    }
}

type VerifyFuture =
    apim_sas::layer::ResponseFuture<Ready<Result<Response<Full<Bytes>>, Infallible>>>;

/// A route's answer: ready now, or the layer's (which is ready as soon as it is polled).
enum Answer {
    Now(Option<Response<Body>>),
    Verify(VerifyFuture),
}

impl Answer {
    fn now(response: Response<Body>) -> Answer {
        Answer::Now(Some(response))
    }
}

impl Future for Answer {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Answer::Now(response) => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| plain(StatusCode::INTERNAL_SERVER_ERROR, "answered twice\n")))),
            Answer::Verify(future) => Pin::new(future)
                .poll(cx)
                .map_ok(|response| response.map(Either::Left)),
        }
    }
}

/// Accepts connections until `stop` fires, then lets the ones in flight finish within `drain`.
async fn accept(
    listener: TcpListener,
    routes: Routes,
    head_timeout: Duration,
    drain: Duration,
    stop: oneshot::Receiver<()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .max_buf_size(MAX_HEAD)
        .max_headers(MAX_HEADERS);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let connection = http.serve_connection(TokioIo::new(stream), routes.clone());
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        // Timeouts, resets, heads too large (answered 431): the client's doing.
                        if let Err(e) = connection.await {
                            debug!(error = %e, "connection closed");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => info!("drained"),
        () = tokio::time::sleep(drain) => warn!("drain deadline passed; closing the connections left"),
    }
}

/// The first of SIGTERM and SIGINT.
async fn terminated() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

/// SIGHUP, one at a time; never fires where there is none.
struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    fn new() -> Hangups {
        Hangups {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
        }
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.signal {
            if signal.recv().await.is_some() {
                return;
            }
        }
        std::future::pending::<()>().await;
    }
}

async fn serve(settings: Settings) -> Result<u8, Failure> {
    // Signal handlers first: a SIGHUP or SIGTERM right after the address is printed must not
    // take the default action (ending the process).
    let mut hangups = Hangups::new();
    let terminated = terminated();
    tokio::pin!(terminated);

    let listener = TcpListener::bind(settings.listen).await.map_err(|e| {
        invalid(
            "listen",
            format!("--listen {}: cannot listen: {e}", settings.listen),
        )
    })?;
    let addr = listener.local_addr().map_err(|e| {
        invalid(
            "listen",
            format!("--listen {}: cannot listen: {e}", settings.listen),
        )
    })?;

    let metrics = Arc::new(Metrics::new());
    let shared = SharedVerifier::new(Verifier::new(settings.keys.policy));
    let observer = Arc::clone(&metrics);
    let mut layer = VerifyLayer::new(shared.clone())
        .with_headers(settings.headers.iter().cloned())
        .with_observer(move |v: &Verification<'_>| observer.record(v));
    if let Some(now) = settings.fixed_now {
        layer = layer.with_clock(move || now);
    }
    let watched = settings.keys.path().is_some();
    let reloader = Arc::new(Reloader {
        keys: settings.keys,
        shared,
        ready: AtomicBool::new(false),
        metrics: Arc::clone(&metrics),
        seen: Mutex::new(None),
    });
    let routes = Routes(Arc::new(App {
        verify: layer.layer(Allow),
        ready: Arc::clone(&reloader),
        metrics,
    }));

    let (stop, stopped) = oneshot::channel();
    let server = tokio::spawn(accept(
        listener,
        routes,
        settings.head_timeout,
        settings.drain,
        stopped,
    ));
    let headers: Vec<&str> = settings.headers.iter().map(HeaderName::as_str).collect();
    info!(
        headers = headers.join(",").as_str(),
        "listening on http://{addr}"
    );

    let mut seen = reloader.seen.lock().await;
    let first = tokio::select! {
        loaded = reloader.load(&mut seen) => Some(loaded),
        signal = &mut terminated => {
            info!(signal, "stopping before the keys were loaded");
            None
        }
    };
    drop(seen);
    match first {
        Some(Ok(gateways)) => info!(gateways, "keys loaded"),
        Some(Err(failure)) => {
            let _ = stop.send(());
            return Err(failure);
        }
        None => {
            let _ = stop.send(());
            let _ = server.await;
            return Ok(0);
        }
    }
    if let (true, Some(every)) = (watched, settings.poll) {
        tokio::spawn(watch(every, Arc::clone(&reloader)));
    }

    let signal = loop {
        tokio::select! {
            () = hangups.recv() => {
                tokio::spawn(Arc::clone(&reloader).reload(Reason::Hangup));
            }
            signal = &mut terminated => break signal,
        }
    };
    info!(
        signal,
        "stopping: no new connections, answering those in flight"
    );
    let _ = stop.send(());
    let _ = server.await;
    info!("stopped");
    Ok(0)
}
