//! The SPOE port (`--spoe-listen`): HAProxy's agent connections, over TCP. The protocol is the
//! library's [`Connection`] (SPOP without I/O) and each verdict its [`Agent`]'s, built on the
//! same layer as `/verify` (keys, reloads, verdict cache, metrics, log lines); this file only
//! moves bytes, within these bounds:
//!
//! - Connections take their slot from the pool the HTTP port takes its own from
//!   (`--max-connections`): one limit, as the file descriptors are one.
//! - A frame is read within the maximum frame size (16,380 bytes before the HELLO, what was
//!   agreed after it; a longer length is refused from its 4 bytes), and answers are written a
//!   batch at a time (8 KiB), the next frames read only once the batch is: a connection holds one
//!   frame being read and one batch of answers at most.
//! - The HELLO must be whole within `--head-timeout` of the connection's start, and every later
//!   frame within `--head-timeout` of its first byte; a connection with no frame for
//!   `--idle-timeout`, or whose answers are not taken within it (a peer that does not read), is
//!   closed. Where it can still be told, HAProxy is told why: an AGENT-DISCONNECT with the
//!   protocol's status ("a timeout occurred").
//! - Until the keys are loaded, a HELLO (the health check's too) is refused with an
//!   AGENT-DISCONNECT, status 99 and "keys not loaded yet": `option spop-check` marks the agent
//!   down and HAProxy refuses requests at once, rather than serve answering `GatewayNotExist`.
//! - SIGTERM: no new connection; each connection answers the frames it has read, sends
//!   AGENT-DISCONNECT ("normal"), and closes, within `--drain`.
//!
//! A peer that breaks the protocol gets an AGENT-DISCONNECT with the protocol's status before
//! the connection closes, and a `warn` line (at most 100 a second, as refusals).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use apim_sas::spoe::frame::{Frame, Status};
use apim_sas::spoe::{Agent, Connection};
use bytes::BufMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::listen::{accept_each, Limits};
use super::log::RefusalBudget;
use super::reload::Reloader;

/// What a connection reads at a time when no frame tells it how much is coming: a NOTIFY with a
/// token is some 250 bytes, and HAProxy sends several at once when pipelining.
const READ_CHUNK: usize = 4096;

/// How long a connection closed after its last answer waits for its peer's own close, reading
/// and dropping what still comes: closing with unread bytes would reset the connection, and the
/// peer could lose the AGENT-DISCONNECT before reading it.
const LINGER: Duration = Duration::from_secs(1);

/// The most bytes read and dropped while lingering.
const LINGER_BYTES: usize = 64 * 1024;

/// What every SPOE connection shares.
pub(super) struct Spoe {
    pub(super) agent: Agent,
    pub(super) ready: Arc<Reloader>,
    /// Budget of the protocol-error lines.
    lines: RefusalBudget,
}

impl Spoe {
    pub(super) fn new(agent: Agent, ready: Arc<Reloader>) -> Spoe {
        Spoe {
            agent,
            ready,
            lines: RefusalBudget::new(),
        }
    }
}

/// Accepts agent connections until `stop` fires, then lets the ones open answer what they have
/// read and close, within the drain.
pub(super) async fn accept(
    listener: TcpListener,
    spoe: Arc<Spoe>,
    limits: Limits,
    slots: Arc<Semaphore>,
    stop: oneshot::Receiver<()>,
) {
    accept_each(
        listener,
        &slots,
        stop,
        limits.drain,
        "SPOE ",
        |stream, draining, slot| serve(stream, Arc::clone(&spoe), limits, draining, slot),
    )
    .await;
}

/// Serves one agent connection until it closes or is closed.
async fn serve(
    mut stream: TcpStream,
    spoe: Arc<Spoe>,
    limits: Limits,
    mut draining: watch::Receiver<()>,
    _slot: OwnedSemaphorePermit,
) {
    let fresh = || {
        if spoe.ready.ready.load(Ordering::Acquire) {
            Connection::new()
        } else {
            Connection::unavailable("keys not loaded yet")
        }
    };
    let mut connection = fresh();
    let mut input: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut output: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let started = Instant::now();
    let mut last_frame = started;
    // When the first byte of the frame not yet whole came.
    let mut frame_began: Option<Instant> = None;
    let mut drained = false;
    loop {
        if !connection.is_running() && !connection.is_closed() {
            // Whether the keys are loaded is asked when the HELLO is read, not before.
            connection = fresh();
        }
        let read = connection.receive(&spoe.agent, &input, &mut output);
        if read > 0 {
            input.drain(..read);
            last_frame = Instant::now();
            frame_began = None;
        }
        if !output.is_empty() {
            let written = tokio::time::timeout(limits.idle_timeout, stream.write_all(&output));
            if !matches!(written.await, Ok(Ok(()))) {
                debug!("SPOE connection closed: its answers were not taken");
                return;
            }
            output.clear();
        }
        if let Some(status) = connection.closed_with() {
            closed(&spoe, status);
            linger(stream).await;
            return;
        }
        if read > 0 {
            // More whole frames may wait behind a batch of answers.
            continue;
        }
        if input.is_empty() && input.capacity() > 2 * READ_CHUNK {
            input.shrink_to(READ_CHUNK);
        }
        if !input.is_empty() && frame_began.is_none() {
            frame_began = Some(Instant::now());
        }
        let deadline = match (connection.is_running(), frame_began) {
            (false, _) => started + limits.head_timeout,
            (true, Some(began)) => began + limits.head_timeout,
            (true, None) => last_frame + limits.idle_timeout,
        };
        // As much as the frame begun still needs (its length is checked by `receive`), or a
        // chunk when none has begun.
        let wanted = match Frame::declared(&input, connection.max_frame_size()) {
            Ok(Some(length)) => (length + 4).saturating_sub(input.len()).max(1),
            _ => READ_CHUNK,
        };
        input.reserve(wanted);
        let mut room = (&mut input).limit(wanted);
        tokio::select! {
            biased;
            _ = draining.changed(), if !drained => {
                drained = true;
                connection.disconnect(Status::Normal, &mut output);
            }
            received = stream.read_buf(&mut room) => match received {
                Ok(0) | Err(_) => {
                    debug!("SPOE connection closed by the peer");
                    return;
                }
                Ok(_) => {}
            },
            () = tokio::time::sleep_until(deadline) => {
                connection.disconnect(Status::Timeout, &mut output);
            }
        }
    }
}

/// Logs why a connection closed: a protocol error as a `warn` line (within the budget), the
/// rest (a health check, a timeout, HAProxy's own DISCONNECT) only at debug.
fn closed(spoe: &Spoe, status: Status) {
    match status {
        Status::Normal | Status::Timeout => debug!(
            status = status.code(),
            reason = status.reason(),
            "SPOE connection closed"
        ),
        // The agent's own refusal of a HELLO before the keys are loaded.
        Status::Unknown => debug!("SPOE HELLO refused: keys not loaded yet"),
        _ => {
            if spoe.lines.take() {
                warn!(
                    status = status.code(),
                    reason = status.reason(),
                    "SPOE connection closed: the peer broke the protocol"
                );
            }
        }
    }
}

/// Closes the write side, then reads and drops what the peer still sends until it closes too,
/// for [`LINGER`] and [`LINGER_BYTES`] at most.
async fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let mut sink = vec![0; READ_CHUNK];
    let mut left = LINGER_BYTES;
    let _ = tokio::time::timeout(LINGER, async {
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}
