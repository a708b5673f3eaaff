//! Listening: accepting connections, their limits, and the signals that stop the service.

use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::answers::Routes;

/// The largest request head read: anything longer is answered `431`.
pub(super) const MAX_HEAD: usize = 16 * 1024;

/// The most header lines a request head may have (hyper's default, 100, refuses a 101st with
/// `431` however small the head). Not as many as 16 KiB could hold (5,461 of the shortest): hyper
/// then sets up room for that many on every request, and serve answered at 8 % of its speed
/// (`wrk` direct, one thread); 256 cost 8 %, 1,024 cost 19 %. 256 is more than gateways pass
/// (Envoy's own default limit is 100).
pub(super) const MAX_HEADERS: usize = 256;

/// Accepts connections until `stop` fires, then lets the ones in flight finish within `drain`.
pub(super) async fn accept(
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
