//! `apim-sas serve`: the local service that gateways ask whether a request may pass (nginx
//! `auth_request`, Traefik `ForwardAuth`, Caddy `forward_auth`, Envoy `ext_authz` in HTTP mode
//! over HTTP/1.1, and Envoy's gRPC `ext_authz` over HTTP/2 cleartext on the same port; HAProxy's
//! SPOE on a port of its own, `--spoe-listen`).
//!
//! This folder holds only process concerns, a file each: listening and its limits
//! (`listen.rs`), reloading the keys (`reload.rs`), the metrics registry (`metrics.rs`), the HTTP
//! answers (`answers.rs`), the gRPC answers (`grpc.rs`), the SPOE connections (`spoe.rs`) and the
//! log lines (`log.rs`). The verdict on each request comes from the library's
//! [`VerifyLayer`](apim_sas::layer::VerifyLayer), on each gRPC Check from the library's
//! [`ExtAuthz`](apim_sas::ext_authz::ExtAuthz) and on each SPOE NOTIFY from its
//! [`Agent`](apim_sas::spoe::Agent), both built on that same layer: the same services library
//! users mount in their own servers.

mod answers;
mod grpc;
mod listen;
mod log;
mod metrics;
mod reload;
mod spoe;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use apim_sas::chrono::{DateTime, Utc};
use apim_sas::ext_authz::ExtAuthz;
use apim_sas::layer::Layer as _;
use apim_sas::layer::{SharedVerifier, Verification, VerifyLayer};
use apim_sas::spoe::Agent;
use apim_sas::{ErrorKind, Verifier};
use clap::{Args, ValueEnum};
use http::header::HeaderName;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{oneshot, Semaphore};
use tracing::info;
use tracing_appender::non_blocking::ErrorCounter;

use super::failure::Failure;
use super::flags::{KeySource, VerifierFlags};
use super::values;
use answers::{Allow, App, Routes};
use listen::{accept, terminated, Limits};
use log::init_logging;
use metrics::Metrics;
use reload::{watch, Hangups, Keys, Reason, Reloader};

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The gateway id the keys belong to (needed with --key-file, --keys and APIM_SAS_KEY;
    /// with --keystore, serve only this gateway)
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) id: Option<String>,

    /// The address to listen on; port 0 picks a free port
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8089")]
    pub(crate) listen: String,

    /// Also answer HAProxy's SPOE (SPOP) on this address, e.g. 127.0.0.1:12345; port 0 picks a
    /// free port [default: off]
    #[arg(long, value_name = "ADDR:PORT")]
    pub(crate) spoe_listen: Option<String>,

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

    /// Connections open at once at most; more wait to be accepted [default: 2048, fewer if the
    /// open-file limit is lower]
    #[arg(long, value_name = "N")]
    pub(crate) max_connections: Option<usize>,

    /// How many verified tokens are remembered, so that a token seen before skips the HMAC
    /// (expiry still checked on every request), or off
    #[arg(long, value_name = "N|off", default_value = "1024")]
    pub(crate) cache: String,

    /// How long a connection may make no progress before it is closed: on HTTP/1.1 move no byte
    /// (an idle keep-alive connection, a client that does not read its answers), on HTTP/2 have
    /// no request answered (PINGs and unfinished streams are not progress)
    #[arg(long, value_name = "DUR", default_value = "75s")]
    pub(crate) idle_timeout: String,

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

/// The flags, read and checked before anything starts.
struct Settings {
    listen: SocketAddr,
    spoe_listen: Option<SocketAddr>,
    headers: Vec<HeaderName>,
    limits: Limits,
    max_connections: Option<usize>,
    poll: Option<Duration>,
    workers: Option<usize>,
    fixed_now: Option<DateTime<Utc>>,
    keys: Keys,
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
        let address = |flag: &'static str, text: &str, example: &str| {
            text.to_socket_addrs()
                .ok()
                .and_then(|mut addrs| addrs.next())
                .ok_or_else(|| {
                    invalid(
                        flag,
                        format!("--{flag} {text}: not an ADDR:PORT, e.g. {example}"),
                    )
                })
        };
        let listen = address("listen", &args.listen, "127.0.0.1:8089")?;
        let spoe_listen = args
            .spoe_listen
            .as_deref()
            .map(|text| address("spoe-listen", text, "127.0.0.1:12345"))
            .transpose()?;
        let headers = args
            .headers
            .iter()
            .map(|name| {
                HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|_| invalid("header", format!("--header {name}: not a header name")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cache = match args.cache.as_str() {
            "off" | "0" => 0,
            text => text.parse::<usize>().map_err(|_| {
                invalid(
                    "cache",
                    format!("--cache {text}: a number of tokens, or off"),
                )
            })?,
        };
        let keys = Keys {
            source: args.keys,
            id: args.id,
            only,
            policy,
            cache,
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
            spoe_listen,
            headers,
            limits: Limits {
                head_timeout: std_duration("--head-timeout", &args.head_timeout)?,
                idle_timeout: std_duration("--idle-timeout", &args.idle_timeout)?,
                drain: std_duration("--drain", &args.drain)?,
                max_connections: listen::DEFAULT_MAX_CONNECTIONS,
            },
            max_connections: match args.max_connections {
                Some(0) => {
                    return Err(invalid(
                        "maxConnections",
                        "--max-connections: at least 1".to_owned(),
                    ))
                }
                n => n,
            },
            poll,
            workers: args.workers.filter(|&n| n > 0),
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
    let log_format = args.log_format;
    let logging = init_logging(log_format);
    let result = Settings::read(args, fixed_now)
        .and_then(|settings| start(settings, logging.as_ref().map(|l| l.dropped.clone())));
    match result {
        // Under --log-format json every line on stderr is a JSON record, the last one too.
        Err(failure) if log_format == LogFormat::Json && logging.is_some() => {
            let problem = &failure.problem;
            tracing::error!(
                code = problem.code(),
                target = problem.target(),
                "{}",
                problem.message()
            );
            drop(logging);
            Ok(failure.exit)
        }
        result => {
            drop(logging);
            result
        }
    }
}

/// Starts the runtime and serves until stopped.
fn start(mut settings: Settings, log_queue: Option<ErrorCounter>) -> Result<u8, Failure> {
    let fd_limit = listen::raise_fd_limit();
    settings.limits.max_connections = listen::max_connections(settings.max_connections, fd_limit);
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
    let result = runtime.block_on(serve(settings, log_queue));
    // A key load still blocked (a key file on a stalled volume) must not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

async fn serve(settings: Settings, log_queue: Option<ErrorCounter>) -> Result<u8, Failure> {
    // Signal handlers first: a SIGHUP or SIGTERM right after the address is printed must not
    // take the default action (ending the process).
    let mut hangups = Hangups::new();
    let terminated = terminated();
    tokio::pin!(terminated);

    let (listener, addr) = bind("listen", settings.listen)?;
    let spoe_listener = match settings.spoe_listen {
        Some(spoe_listen) => Some(bind("spoe-listen", spoe_listen)?),
        None => None,
    };

    let metrics = Arc::new(Metrics::new(log_queue));
    let shared = SharedVerifier::new(Verifier::new(settings.keys.policy));
    let observer = Arc::clone(&metrics);
    let mut layer = VerifyLayer::new(shared.clone())
        .with_headers(settings.headers.iter().cloned())
        .with_observer(move |v: &Verification<'_>| observer.record(v));
    if let Some(now) = settings.fixed_now {
        layer = layer.with_clock(move || now);
    }
    let watched = settings.keys.path().is_some();
    let reloader = Arc::new(Reloader::new(settings.keys, shared, Arc::clone(&metrics)));
    let health = tonic_health::server::HealthReporter::new();
    grpc::not_serving(&health).await;
    let routes = Routes(Arc::new(App {
        grpc: grpc::Grpc::new(
            ExtAuthz::from(layer.clone()),
            &health,
            Arc::clone(&reloader),
        ),
        verify: layer.layer(Allow),
        ready: Arc::clone(&reloader),
        metrics,
    }));

    // One pool of connections for both ports, as the file descriptors are one.
    let slots = Arc::new(Semaphore::new(settings.limits.max_connections));
    let (stop, stopped) = oneshot::channel();
    let server = tokio::spawn(accept(
        listener,
        routes,
        settings.limits,
        Arc::clone(&slots),
        stopped,
    ));
    let headers: Vec<&str> = settings.headers.iter().map(HeaderName::as_str).collect();
    info!(
        headers = headers.join(",").as_str(),
        max_connections = settings.limits.max_connections,
        "listening on http://{addr}"
    );
    let (stop_spoe, spoe_server) = match spoe_listener {
        Some((listener, spoe_addr)) => {
            let spoe = Arc::new(spoe::Spoe::new(
                Agent::from(layer.clone()),
                Arc::clone(&reloader),
            ));
            let (stop, stopped) = oneshot::channel();
            let server = tokio::spawn(spoe::accept(
                listener,
                spoe,
                settings.limits,
                slots,
                stopped,
            ));
            info!("listening on spop://{spoe_addr}");
            (Some(stop), Some(server))
        }
        None => (None, None),
    };
    // Both ports stop together, and the process waits for both to drain.
    let stop = move || {
        let _ = stop.send(());
        if let Some(stop) = stop_spoe {
            let _ = stop.send(());
        }
    };
    let stopped = || async {
        let _ = server.await;
        if let Some(server) = spoe_server {
            let _ = server.await;
        }
    };

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
        Some(Ok(gateways)) => {
            grpc::serving(&health).await;
            info!(gateways, "keys loaded");
        }
        Some(Err(failure)) => {
            stop();
            return Err(failure);
        }
        None => {
            stop();
            stopped().await;
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
    stop();
    stopped().await;
    info!("stopped");
    Ok(0)
}

/// Connections the kernel completes and queues for `accept` while serve is busy with others. A
/// burst of new connections (a gateway's workers all reconnecting after a restart) waits here
/// instead of having its SYNs dropped once the queue is full, each retried only a second later.
/// Linux caps it at `net.core.somaxconn` (4,096 since Linux 5.4, 128 before). The 128 that
/// `TcpListener::bind` asks for filled within a few milliseconds of such a burst.
const BACKLOG: u32 = 1024;

/// A listener on `addr` (given by `--{flag}`), and the address it got.
fn bind(flag: &'static str, addr: SocketAddr) -> Result<(TcpListener, SocketAddr), Failure> {
    let cannot = |e: std::io::Error| invalid(flag, format!("--{flag} {addr}: cannot listen: {e}"));
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(cannot)?;
    // As `TcpListener::bind`: a restarted serve binds while its old connections are in TIME_WAIT.
    socket.set_reuseaddr(true).map_err(cannot)?;
    socket.bind(addr).map_err(cannot)?;
    let listener = socket.listen(BACKLOG).map_err(cannot)?;
    let bound = listener.local_addr().map_err(cannot)?;
    Ok((listener, bound))
}
