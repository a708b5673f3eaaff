//! Listening: accepting connections, their limits, and the signals that stop the service.
//!
//! One port speaks HTTP/1.1 (forward-auth) and HTTP/2 cleartext (gRPC, Envoy's ext_authz): each
//! connection is told apart by its first bytes (HTTP/2's connection preface, with prior
//! knowledge, as Envoy's gRPC clusters connect), and both share the limits below.
//!
//! - At most `--max-connections` open (2,048 by default), counting the SPOE port's (`spoe.rs`):
//!   one pool, as the file descriptors are one; a client stopped inside what could be HTTP/2's
//!   preface is closed after `--head-timeout`.
//! - HTTP/1.1: a request head over 16 KiB is `431`, and a connection that moves no byte for
//!   `--idle-timeout` (75 s) is closed.
//! - HTTP/2: at most 100 streams open on a connection ([`MAX_STREAMS`]; a client that opens more
//!   has them refused, RST_STREAM REFUSED_STREAM), headers of 16 KiB each at most, and flow-control
//!   windows of 256 KiB a stream and 1 MiB a connection: the most HTTP/2 holds of a connection's
//!   bytes before serve reads them. What gRPC messages may hold once read, and how long a call
//!   may take to send one, is `grpc.rs`'s. Progress on HTTP/2 is a request answered, not a byte
//!   moved (PINGs, WINDOW_UPDATEs and streams that never finish move bytes): a connection that
//!   has none answered for `--idle-timeout` gets GOAWAY, its calls in flight end within their
//!   deadline, and it is closed 6 s after the GOAWAY at most, whatever the client sends.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch, Semaphore};
use tracing::{debug, info, warn};

use super::answers::Routes;
use super::grpc::{Connection, DEADLINE};

/// The largest request head read: anything longer is answered `431`.
pub(super) const MAX_HEAD: usize = 16 * 1024;

/// The most header lines a request head may have (hyper's default, 100, refuses a 101st with
/// `431` however small the head). Not as many as 16 KiB could hold (5,461 of the shortest): hyper
/// then sets up room for that many on every request, and serve answered at 8 % of its speed
/// (`wrk` direct, one thread); 256 cost 8 %, 1,024 cost 19 %. 256 is more than gateways pass
/// (Envoy's own default limit is 100).
pub(super) const MAX_HEADERS: usize = 256;

/// The most header bytes an HTTP/2 request may carry (HPACK-decoded, as HTTP/2 counts them): as
/// an HTTP/1.1 head. A gRPC Check carries the client's headers in its message, not here.
const MAX_HEADER_LIST: u32 = MAX_HEAD as u32;

/// The most streams an HTTP/2 connection may have open at once: what HTTP/2 recommends at least
/// (RFC 9113, 6.5.2), half of hyper's default. Envoy opens another connection when its streams
/// are all taken, and `grpc.rs`'s budgets bound what their messages hold.
pub(super) const MAX_STREAMS: u32 = 100;

/// How many bytes an HTTP/2 client may send on one stream before serve has read them: a Check
/// with Envoy's largest default headers goes in one flight.
const STREAM_WINDOW: u32 = 256 * 1024;

/// How many bytes an HTTP/2 client may send on all its streams together before serve has read
/// them: what HTTP/2 may hold of one connection's unread bytes.
const CONNECTION_WINDOW: u32 = 1024 * 1024;

/// How long an HTTP/2 connection closed for want of progress has, after its GOAWAY, to end its
/// calls in flight (each ends within the Check's deadline) before it is closed anyway.
const GOAWAY_GRACE: Duration = Duration::from_secs(DEADLINE.as_secs() + 1);

/// What bounds the connections: how many may be open, and how long one may make no progress.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) head_timeout: Duration,
    pub(super) idle_timeout: Duration,
    pub(super) max_connections: usize,
    pub(super) drain: Duration,
}

/// The default of `--max-connections`: far above what a gateway keeps open to its neighbour
/// (nginx's `keepalive 16`), and with hyper's buffers about 25 KiB each at most
/// (`tests/it/serve_hostile.rs` prints the figure) within a 64 MiB sidecar's memory.
pub(super) const DEFAULT_MAX_CONNECTIONS: usize = 2048;

/// File descriptors kept free of connections: the listener, the key file, stdio, the runtime.
const SPARE_FDS: u64 = 64;

/// Raises the soft limit of open files to the hard one (systemd's default soft limit is 1,024;
/// its hard limit is far higher) and returns the soft limit now in force, `None` where it is
/// unknown.
pub(super) fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => limit.maximum,
        Err(_) => limit.current,
    }
}

/// The connections allowed: `asked` (or the default), no more than the file descriptors allow.
pub(super) fn max_connections(asked: Option<usize>, fd_limit: Option<u64>) -> usize {
    let wanted = asked.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    match fd_limit {
        Some(fds) => {
            let room = usize::try_from(fds.saturating_sub(SPARE_FDS)).unwrap_or(usize::MAX);
            wanted.min(room.max(1))
        }
        None => wanted,
    }
}

/// HTTP/2's connection preface: a connection that starts with it speaks HTTP/2 (gRPC).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a connection's first bytes told ([`Progress::sniff`]).
const UNTOLD: u8 = 0;
const HTTP1: u8 = 1;
const HTTP2: u8 = 2;

/// A connection's socket, counting its bytes: every read or write that moved one. It also
/// watches the first bytes until they tell HTTP/1.1 from HTTP/2 (`protocol`): hyper's head
/// timeout only starts once they have, so a client that stops inside a preface is closed by
/// [`untold`] instead.
struct Progress<T> {
    inner: T,
    moved: Arc<AtomicU64>,
    /// How many bytes of the preface came so far; `None` once the protocol is told.
    preface: Option<usize>,
    protocol: Arc<AtomicU8>,
}

impl<T> Progress<T> {
    fn new(inner: T, moved: Arc<AtomicU64>, protocol: Arc<AtomicU8>) -> Progress<T> {
        Progress {
            inner,
            moved,
            preface: Some(0),
            protocol,
        }
    }

    /// Follows the preface over `read`, the bytes just read.
    fn sniff(&mut self, read: &[u8]) {
        let Some(seen) = self.preface else { return };
        let rest = H2_PREFACE.get(seen..).unwrap_or_default();
        let n = read.len().min(rest.len());
        let told = if read.get(..n) != rest.get(..n) {
            HTTP1
        } else if seen + n == H2_PREFACE.len() {
            HTTP2
        } else {
            self.preface = Some(seen + n);
            return;
        };
        self.preface = None;
        self.protocol.store(told, Ordering::Relaxed);
    }
}

/// Returns if the connection's first bytes have not told its protocol within `timeout` (a client
/// stopped inside what could be HTTP/2's preface); never once they have.
async fn untold(protocol: Arc<AtomicU8>, timeout: Duration) {
    tokio::time::sleep(timeout).await;
    if protocol.load(Ordering::Relaxed) != UNTOLD {
        std::future::pending::<()>().await;
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Progress<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.moved.fetch_add(1, Ordering::Relaxed);
            if self.preface.is_some() {
                let read = buf.filled().get(before..).unwrap_or_default();
                self.sniff(read);
            }
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Progress<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.moved.fetch_add(1, Ordering::Relaxed);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.moved.fetch_add(1, Ordering::Relaxed);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Returns once the connection has made no progress for a whole `idle` period, so between `idle`
/// and twice `idle` after its last. On HTTP/1.1 progress is a byte moved: an idle keep-alive
/// connection, or a client that does not read its answers, makes none. On HTTP/2 it is a request
/// answered ([`Connection::progress`]): PINGs, WINDOW_UPDATEs and streams that never finish their
/// message move bytes, and are none.
async fn stalled(
    moved: Arc<AtomicU64>,
    protocol: Arc<AtomicU8>,
    connection: Arc<Connection>,
    idle: Duration,
) {
    let progress = || match protocol.load(Ordering::Relaxed) {
        HTTP2 => (HTTP2, connection.progress()),
        told => (told, moved.load(Ordering::Relaxed)),
    };
    let mut seen = progress();
    loop {
        tokio::time::sleep(idle).await;
        let now = progress();
        if now == seen {
            return;
        }
        seen = now;
    }
}

/// `accept failed` at most once a second, with how many were not logged.
#[derive(Default)]
struct AcceptErrors {
    last: Option<Instant>,
    unlogged: u64,
}

impl AcceptErrors {
    fn failed(&mut self, e: &io::Error) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < Duration::from_secs(1))
        {
            self.unlogged += 1;
            return;
        }
        warn!(error = %e, also_failed = self.unlogged, "accept failed");
        self.last = Some(now);
        self.unlogged = 0;
    }
}

/// Accepts connections until `stop` fires, then lets the ones in flight finish within the
/// drain. Each holds one of `slots` (`max_connections` of them, shared with the SPOE port):
/// when all are taken, one more is accepted and waits for a slot, and the rest wait in the
/// kernel's backlog, until one closes.
pub(super) async fn accept(
    listener: TcpListener,
    routes: Routes,
    limits: Limits,
    slots: Arc<Semaphore>,
    stop: oneshot::Receiver<()>,
) {
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.head_timeout)
        .max_buf_size(MAX_HEAD)
        .max_headers(MAX_HEADERS)
        // A client that shuts down its side after its request still gets the answer.
        .half_close(true);
    // HTTP/2's bounds set here rather than left to hyper's defaults, which may change.
    http.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_LIST)
        .max_concurrent_streams(MAX_STREAMS)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW);
    let http = Arc::new(http);
    accept_each(
        listener,
        &slots,
        stop,
        limits.drain,
        "",
        |stream, draining, slot| {
            serve(
                stream,
                Arc::clone(&http),
                routes.clone(),
                limits,
                draining,
                slot,
            )
        },
    )
    .await;
}

/// The accept loop of both ports: accepts connections until `stop` fires, each holding one of
/// `slots` (taken once accepted, not before: a slot held by a loop waiting to accept would be one
/// the other port could not have), and hands each to `serve` with the drain signal, which fires
/// at SIGTERM and is held until the connection closes. Then lets the ones in flight finish
/// within `drain`. `what` names the port's connections in the log lines (`"SPOE "`, or nothing).
pub(super) async fn accept_each<F, Fut>(
    listener: TcpListener,
    slots: &Arc<Semaphore>,
    stop: oneshot::Receiver<()>,
    drain_within: Duration,
    what: &'static str,
    mut serve: F,
) where
    F: FnMut(tokio::net::TcpStream, watch::Receiver<()>, tokio::sync::OwnedSemaphorePermit) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (drain, draining) = watch::channel(());
    let mut errors = AcceptErrors::default();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let slot = tokio::select! {
                    biased;
                    _ = &mut stop => break,
                    slot = Arc::clone(slots).acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, draining.clone(), slot));
            }
            Err(e) => {
                // Out of file descriptors, say: wait rather than spin.
                errors.failed(&e);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    drop(draining);
    let _ = drain.send(());
    tokio::select! {
        () = drain.closed() => if what.is_empty() {
            info!("drained");
        } else {
            info!("{what}connections drained");
        },
        () = tokio::time::sleep(drain_within) => warn!("drain deadline passed; closing the {what}connections left"),
    }
}

/// Serves one connection until it closes, or until it is closed: for want of progress, for want
/// of a protocol, or at the drain's end. `draining` fires at SIGTERM; it is held until the
/// connection is closed, so that the drain can wait for it.
async fn serve(
    stream: tokio::net::TcpStream,
    http: Arc<auto::Builder<TokioExecutor>>,
    routes: Routes,
    limits: Limits,
    mut draining: watch::Receiver<()>,
    _slot: tokio::sync::OwnedSemaphorePermit,
) {
    let moved = Arc::new(AtomicU64::new(0));
    let protocol = Arc::new(AtomicU8::new(UNTOLD));
    let shared = Arc::new(Connection::new());
    let io = Progress::new(stream, Arc::clone(&moved), Arc::clone(&protocol));
    let service = {
        let shared = Arc::clone(&shared);
        hyper::service::service_fn(move |request| routes.answer(request, &shared))
    };
    let connection = http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let stalled = stalled(moved, Arc::clone(&protocol), shared, limits.idle_timeout);
    tokio::pin!(stalled);
    let untold = untold(Arc::clone(&protocol), limits.head_timeout);
    tokio::pin!(untold);
    let mut drained = false;
    loop {
        tokio::select! {
            // Timeouts, resets, heads too large (answered 431): the client's doing.
            closed = connection.as_mut() => {
                if let Err(e) = closed {
                    debug!(error = %e, "connection closed");
                }
                return;
            }
            // SIGTERM: no new request; those in flight are answered (HTTP/2: GOAWAY).
            _ = draining.changed(), if !drained => {
                drained = true;
                connection.as_mut().graceful_shutdown();
            }
            () = &mut stalled => break,
            () = &mut untold => {
                debug!("connection closed: no protocol within the head timeout");
                return;
            }
        }
    }
    if protocol.load(Ordering::Relaxed) != HTTP2 {
        debug!("connection closed: no progress");
        return;
    }
    // HTTP/2: GOAWAY, so that the client opens no stream here and knows which were answered;
    // those in flight end within their deadline, and the connection is closed after the grace
    // whatever the client still sends.
    connection.as_mut().graceful_shutdown();
    match tokio::time::timeout(GOAWAY_GRACE, connection.as_mut()).await {
        Ok(_) => debug!("HTTP/2 connection closed: no progress (GOAWAY)"),
        Err(_) => debug!("HTTP/2 connection closed: no progress, nor close after GOAWAY"),
    }
}

/// The first of SIGTERM and SIGINT.
pub(super) async fn terminated() -> &'static str {
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
