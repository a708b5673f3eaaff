//! The gRPC answers, over HTTP/2 on the HTTP port: Envoy's `Authorization/Check` through the
//! library's [`ExtAuthz`] (the verdict, the metrics and the log lines of the HTTP answers), gRPC
//! health (`grpc.health.v1.Health`), else UNIMPLEMENTED.
//!
//! Every request message is read here, not by tonic's decoder (which sets aside the length a
//! message declares as soon as it reads it): as its bytes arrive, within these bounds.
//!
//! - A message declaring more than its limit is not read at all: a `CheckRequest` over 1 MiB
//!   ([`MAX_CHECK`]) is denied at once (UNAUTHENTICATED and the 401 of every refusal, a
//!   `MalformedToken` saying so); a health request over 1 KiB fails with RESOURCE_EXHAUSTED.
//! - Memory grows with the bytes that came, never with the length declared, and counts against
//!   two budgets of bytes held for messages not yet whole: 4 MiB for one connection
//!   ([`CONNECTION_BUDGET`]) and 32 MiB for all together ([`BUDGET`]). A message that would take
//!   either past its bound is not read further: a Check is denied, a health call fails with
//!   RESOURCE_EXHAUSTED.
//! - A message must be whole within 5 s of its call's start ([`DEADLINE`]): past it a Check is
//!   denied, a health call fails with DEADLINE_EXCEEDED.
//!
//! Each answer ends the call: the request body is dropped unread and HTTP/2 resets the stream
//! (RST_STREAM, NO_ERROR). A Check denied rather than failed: where Envoy has
//! `failure_mode_allow: true`, an RPC error lets the client's request through. Protocol errors
//! only a broken client makes (a compressed message, which Envoy never sends; a stream that ends
//! inside its message; bytes that are not a `CheckRequest`) are the RPC errors tonic answers them
//! with. How many streams a connection may have open, and when a connection that makes no
//! progress is closed, is `listen.rs`'s.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use apim_sas::ext_authz::pb::{self, CheckRequest, CheckResponse};
pub(super) use apim_sas::ext_authz::tonic::body::Body as GrpcBody;
use apim_sas::ext_authz::tonic::server::NamedService;
use apim_sas::ext_authz::tonic::Status;
use apim_sas::ext_authz::ExtAuthz;
use bytes::{BufMut, Bytes, BytesMut};
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Request, Response, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use prost::Message as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};
use tonic_health::ServingStatus;
use tower_service::Service as _;

use super::reload::Reloader;

/// The largest `CheckRequest` read. It carries the client's request headers (Envoy refuses a
/// client whose headers pass `max_request_headers_kb`, 60 KiB by default) and the client's body
/// only when Envoy is told to send one (`with_request_body`, up to its `max_request_bytes`):
/// 1 MiB is 16 times the default headers, with room for a body of several hundred KiB, and is
/// the limit docs/ext-authz.md has always given. Memory is bounded by the budgets, not by this.
const MAX_CHECK: usize = 1024 * 1024;

/// The largest health request read: a `HealthCheckRequest` is a service name.
const MAX_HEALTH: usize = 1024;

/// The bytes one connection's unfinished messages may hold: four of the largest Checks, or some
/// 60 carrying Envoy's largest default headers. Envoy sends each message whole as soon as it
/// makes it, so on its connection few are unfinished at any moment.
const CONNECTION_BUDGET: usize = 4 * MAX_CHECK;

/// The bytes all connections' unfinished messages may hold together: eight connections' worth,
/// so that a few connections at their bound leave room for the gateway's Checks.
const BUDGET: usize = 32 * 1024 * 1024;

/// How long a call may take to send its whole message. Envoy's ext_authz gives up after 200 ms
/// by default (0.5 s in docs/ext-authz.md), so a message still unfinished after seconds is
/// nobody's Check.
pub(super) const DEADLINE: Duration = Duration::from_secs(5);

/// The gRPC message prefix: the compressed flag, then the length (4 bytes, big-endian).
const PREFIX: usize = 5;

/// The denials of a Check not read (the `reason` of [`ExtAuthz::unread`]).
const TOO_LARGE: &str = "token: the CheckRequest is over 1 MiB, the most this service reads";
const LATE: &str = "token: the CheckRequest did not arrive within 5 s";
const OVER_BUDGET: &str =
    "token: the CheckRequest was not read: too many unfinished requests are buffered";

/// The name Envoy's service is reported under in gRPC health, beside the whole server's `""`.
const AUTHORIZATION: &str = pb::SERVICE;
/// `grpc.health.v1.Health`.
const HEALTH: &str = <HealthServer<HealthService> as NamedService>::NAME;

/// Whether `request` is a gRPC call: HTTP/2 and a `application/grpc…` content type. Anything else
/// on HTTP/2 (`GET /verify` from an Envoy HTTP-mode cluster that speaks HTTP/2) gets the HTTP
/// answers.
pub(super) fn is_grpc(request: &Request<Incoming>) -> bool {
    request.version() == Version::HTTP_2
        && request
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

/// What one connection's requests share.
pub(super) struct Connection {
    /// Requests answered with their message read whole (or needing none): the connection's
    /// progress on HTTP/2, where PINGs and unfinished streams move bytes without any.
    answered: AtomicU64,
    /// The bytes this connection's unfinished messages may still hold.
    budget: Arc<Semaphore>,
}

impl Connection {
    pub(super) fn new() -> Connection {
        Connection {
            answered: AtomicU64::new(0),
            budget: Arc::new(Semaphore::new(CONNECTION_BUDGET)),
        }
    }

    /// Counts a request answered (see [`Connection::progress`]).
    pub(super) fn answer(&self) {
        self.answered.fetch_add(1, Ordering::Relaxed);
    }

    /// How many requests were answered so far: changes only as requests are.
    pub(super) fn progress(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }
}

/// The gRPC services, and what they need to know of the process.
pub(super) struct Grpc {
    authz: ExtAuthz,
    health: HealthServer<HealthService>,
    ready: Arc<Reloader>,
    /// The bytes all connections' unfinished messages may still hold.
    budget: Arc<Semaphore>,
}

/// A gRPC answer.
pub(super) type GrpcFuture =
    Pin<Box<dyn Future<Output = Result<Response<GrpcBody>, Infallible>> + Send>>;

impl Grpc {
    /// The services over `authz`, with health reported by `health` (see [`not_serving`]).
    pub(super) fn new(authz: ExtAuthz, health: &HealthReporter, ready: Arc<Reloader>) -> Grpc {
        Grpc {
            authz,
            health: HealthServer::new(HealthService::from_health_reporter(health.clone())),
            ready,
            budget: Arc::new(Semaphore::new(BUDGET)),
        }
    }

    pub(super) fn call(
        &self,
        request: Request<Incoming>,
        connection: &Arc<Connection>,
    ) -> GrpcFuture {
        let path = request.uri().path();
        let (service, method) = path
            .strip_prefix('/')
            .and_then(|path| path.split_once('/'))
            .unwrap_or(("", ""));
        match service {
            AUTHORIZATION => {
                // Before the keys are loaded every token would be GatewayNotExist: say "not yet"
                // instead, as /verify's 503 does (Envoy then applies failure_mode_allow).
                if !self.ready.ready.load(Ordering::Acquire) {
                    connection.answer();
                    return status(Status::unavailable("keys not loaded yet"));
                }
                if method == "Check" {
                    return self.check(request, connection);
                }
                connection.answer();
                status(Status::unimplemented("no such method"))
            }
            HEALTH => self.health(request, connection),
            _ => {
                connection.answer();
                status(Status::unimplemented("no such service"))
            }
        }
    }

    /// `Authorization/Check`: the message read within the bounds, then the library's verdict.
    fn check(&self, request: Request<Incoming>, connection: &Arc<Connection>) -> GrpcFuture {
        let authz = self.authz.clone();
        let reader = Reader::new(MAX_CHECK, connection, &self.budget);
        let connection = Arc::clone(connection);
        Box::pin(async move {
            let check = match read(request.into_body(), reader).await {
                Ok(read) => CheckRequest::decode(read.message.as_slice()),
                Err(unread) => {
                    if unread.answered() {
                        connection.answer();
                    }
                    return Ok(match unread {
                        Unread::TooLarge { .. } => reply(&authz.unread(TOO_LARGE)),
                        Unread::OverBudget => reply(&authz.unread(OVER_BUDGET)),
                        Unread::Late => reply(&authz.unread(LATE)),
                        unread => unread.status().into_http(),
                    });
                }
            };
            connection.answer();
            Ok(match check {
                Ok(check) => reply(&authz.check_response(&check)),
                // As tonic answers bytes that are not the message.
                Err(e) => Status::internal(e.to_string()).into_http(),
            })
        })
    }

    /// `grpc.health.v1.Health`: the message read within the bounds, then tonic-health's answer
    /// (UNIMPLEMENTED to a method it does not have).
    fn health(&self, request: Request<Incoming>, connection: &Arc<Connection>) -> GrpcFuture {
        let mut health = self.health.clone();
        let reader = Reader::new(MAX_HEALTH, connection, &self.budget);
        let connection = Arc::clone(connection);
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let read = match read(body, reader).await {
                Ok(read) => read,
                Err(unread) => {
                    if unread.answered() {
                        connection.answer();
                    }
                    return Ok(unread.status().into_http());
                }
            };
            connection.answer();
            let mut frame = BytesMut::with_capacity(PREFIX + read.message.len());
            frame.put_u8(0);
            frame.put_u32(u32::try_from(read.message.len()).unwrap_or(u32::MAX));
            frame.put_slice(&read.message);
            drop(read);
            health
                .call(Request::from_parts(parts, Full::new(frame.freeze())))
                .await
        })
    }
}

/// A Check answered: the `CheckResponse` in a gRPC frame, then `grpc-status: 0` in the trailers.
fn reply(response: &CheckResponse) -> Response<GrpcBody> {
    let length = response.encoded_len();
    let Ok(prefix) = u32::try_from(length) else {
        return Status::internal("the CheckResponse is too large").into_http();
    };
    let mut frame = BytesMut::with_capacity(PREFIX + length);
    frame.put_u8(0);
    frame.put_u32(prefix);
    if response.encode(&mut frame).is_err() {
        return Status::internal("the CheckResponse could not be encoded").into_http();
    }
    let mut trailers = HeaderMap::with_capacity(1);
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let body = Full::new(frame.freeze()).with_trailers(std::future::ready(Some(Ok(trailers))));
    let mut answer = Response::new(GrpcBody::new(body));
    answer
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    answer
}

fn status(status: Status) -> GrpcFuture {
    Box::pin(std::future::ready(Ok(status.into_http())))
}

/// Why a call's message was not read.
#[derive(Debug)]
enum Unread {
    /// The request ended before a message began.
    Missing,
    /// The request ended inside its message.
    Truncated,
    /// The compressed flag is set (Envoy never compresses), or is not a flag at all.
    Compressed(u8),
    /// The length declared is over the limit.
    TooLarge { length: usize, limit: usize },
    /// Reading on would take a budget of bytes held for unfinished messages past its bound.
    OverBudget,
    /// Not whole within the deadline.
    Late,
    /// The request failed (the client reset its stream).
    Failed,
}

impl Unread {
    /// Whether the call was answered in good order (the client said all it had to say), so that
    /// the connection made progress.
    fn answered(&self) -> bool {
        !matches!(self, Unread::OverBudget | Unread::Late | Unread::Failed)
    }

    /// The RPC error for it, as tonic words the ones it also answers.
    fn status(&self) -> Status {
        match self {
            Unread::Missing => Status::internal("Missing request message."),
            Unread::Truncated => Status::internal("Unexpected EOF decoding stream."),
            Unread::Compressed(1) => Status::internal(
                "protocol error: received message with compressed-flag but no grpc-encoding was \
                 specified",
            ),
            Unread::Compressed(flag) => Status::internal(format!(
                "protocol error: received message with invalid compression flag: {flag} (valid \
                 flags are 0 and 1)"
            )),
            Unread::TooLarge { length, limit } => Status::resource_exhausted(format!(
                "the message declares {length} bytes, over the limit of {limit}"
            )),
            Unread::OverBudget => {
                Status::resource_exhausted("too many unfinished requests are buffered")
            }
            Unread::Late => Status::deadline_exceeded(format!(
                "the message did not arrive within {} s",
                DEADLINE.as_secs()
            )),
            Unread::Failed => Status::cancelled("the request failed"),
        }
    }
}

/// A whole message, and the budgets it holds until dropped.
struct Read {
    message: Vec<u8>,
    _held: Held,
}

/// Bytes taken from the connection's budget and from everyone's, given back when dropped.
#[derive(Default)]
struct Held {
    connection: Option<OwnedSemaphorePermit>,
    all: Option<OwnedSemaphorePermit>,
}

/// Adds `permit` to `held`, both of the same semaphore (merging permits of two panics).
fn merge(held: &mut Option<OwnedSemaphorePermit>, permit: OwnedSemaphorePermit) {
    match held {
        Some(held) => held.merge(permit),
        None => *held = Some(permit),
    }
}

/// One gRPC message, read from the bytes of a request as they arrive: the prefix, the length it
/// declares checked against the limit at once, then exactly that many bytes. The buffer grows
/// with the bytes that came (doubling, to at most the length declared), each growth taken from
/// both budgets first.
struct Reader {
    limit: usize,
    prefix: [u8; PREFIX],
    /// How many bytes of the prefix came.
    seen: usize,
    /// The length declared, once the prefix is whole.
    length: Option<usize>,
    message: Vec<u8>,
    /// The bytes taken from the budgets: the buffer's capacity.
    taken: usize,
    held: Held,
    connection: Arc<Semaphore>,
    all: Arc<Semaphore>,
}

impl Reader {
    fn new(limit: usize, connection: &Connection, all: &Arc<Semaphore>) -> Reader {
        Reader {
            limit,
            prefix: [0; PREFIX],
            seen: 0,
            length: None,
            message: Vec::new(),
            taken: 0,
            held: Held::default(),
            connection: Arc::clone(&connection.budget),
            all: Arc::clone(all),
        }
    }

    /// Takes in `data`, the next bytes of the request: the message once it is whole (bytes
    /// after it are not read), `None` while it is not.
    fn push(&mut self, mut data: &[u8]) -> Result<Option<Read>, Unread> {
        let length = match self.length {
            Some(length) => length,
            None => {
                let (head, rest) = data.split_at(data.len().min(PREFIX.saturating_sub(self.seen)));
                if let Some(into) = self.prefix.get_mut(self.seen..self.seen + head.len()) {
                    into.copy_from_slice(head);
                }
                self.seen += head.len();
                data = rest;
                if self.seen < PREFIX {
                    return Ok(None);
                }
                let [flag, a, b, c, d] = self.prefix;
                if flag != 0 {
                    return Err(Unread::Compressed(flag));
                }
                let length =
                    usize::try_from(u32::from_be_bytes([a, b, c, d])).unwrap_or(usize::MAX);
                if length > self.limit {
                    return Err(Unread::TooLarge {
                        length,
                        limit: self.limit,
                    });
                }
                self.length = Some(length);
                length
            }
        };
        let wanted = length.saturating_sub(self.message.len());
        let (body, _) = data.split_at(data.len().min(wanted));
        self.grow(self.message.len() + body.len(), length)?;
        self.message.extend_from_slice(body);
        if self.message.len() < length {
            return Ok(None);
        }
        Ok(Some(Read {
            message: std::mem::take(&mut self.message),
            _held: std::mem::take(&mut self.held),
        }))
    }

    /// Makes room for `needed` bytes: twice what is held (so that memory stays within twice the
    /// bytes that came), at least `needed`, at most `length`.
    fn grow(&mut self, needed: usize, length: usize) -> Result<(), Unread> {
        if needed <= self.taken {
            return Ok(());
        }
        let capacity = needed.max(self.taken.saturating_mul(2)).min(length);
        let more = capacity.saturating_sub(self.taken);
        let permits = u32::try_from(more).map_err(|_| Unread::OverBudget)?;
        let connection = Arc::clone(&self.connection)
            .try_acquire_many_owned(permits)
            .map_err(|_| Unread::OverBudget)?;
        let all = Arc::clone(&self.all)
            .try_acquire_many_owned(permits)
            .map_err(|_| Unread::OverBudget)?;
        self.message
            .try_reserve_exact(capacity.saturating_sub(self.message.len()))
            .map_err(|_| Unread::OverBudget)?;
        merge(&mut self.held.connection, connection);
        merge(&mut self.held.all, all);
        self.taken = capacity;
        Ok(())
    }

    /// Why the request ended without a whole message.
    fn ended(&self) -> Unread {
        if self.seen == 0 {
            Unread::Missing
        } else {
            Unread::Truncated
        }
    }
}

/// Reads `body` until `reader` has a whole message, within the [`DEADLINE`]. Each chunk is copied
/// into the reader's buffer and dropped at once: a chunk shares its allocation with HTTP/2's read
/// buffer, which it would keep alive.
async fn read<B>(mut body: B, mut reader: Reader) -> Result<Read, Unread>
where
    B: Body<Data = Bytes> + Unpin,
{
    let whole = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| Unread::Failed)?;
            if let Some(data) = frame.data_ref() {
                if let Some(read) = reader.push(data)? {
                    return Ok(read);
                }
            }
        }
        Err(reader.ended())
    };
    tokio::time::timeout(DEADLINE, whole)
        .await
        .unwrap_or(Err(Unread::Late))
}

/// Health before the keys are loaded: NOT_SERVING for the server and for Envoy's service.
pub(super) async fn not_serving(health: &HealthReporter) {
    for service in ["", AUTHORIZATION] {
        health
            .set_service_status(service, ServingStatus::NotServing)
            .await;
    }
}

/// Health once the keys are loaded (a failed reload keeps the keys serving, so it stays).
pub(super) async fn serving(health: &HealthReporter) {
    for service in ["", AUTHORIZATION] {
        health
            .set_service_status(service, ServingStatus::Serving)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budgets(connection: usize, all: usize) -> (Connection, Arc<Semaphore>) {
        let mut c = Connection::new();
        c.budget = Arc::new(Semaphore::new(connection));
        (c, Arc::new(Semaphore::new(all)))
    }

    fn prefix(flag: u8, length: u32) -> Vec<u8> {
        let mut p = vec![flag];
        p.extend_from_slice(&length.to_be_bytes());
        p
    }

    #[test]
    fn a_message_is_read_whole_however_its_bytes_are_cut() {
        let (c, all) = budgets(1 << 20, 1 << 20);
        let mut bytes = prefix(0, 3);
        bytes.extend_from_slice(b"abcXYZ"); // bytes after the message are not read
        for cut in 0..bytes.len() {
            let mut reader = Reader::new(16, &c, &all);
            let (first, second) = bytes.split_at(cut);
            let read = match reader.push(first).unwrap() {
                Some(read) => read,
                None => reader.push(second).unwrap().unwrap(),
            };
            assert_eq!(read.message, b"abc", "cut at {cut}");
        }
        // One byte at a time.
        let mut reader = Reader::new(16, &c, &all);
        let mut whole = None;
        for byte in &bytes {
            if let Some(read) = reader.push(std::slice::from_ref(byte)).unwrap() {
                whole = Some(read);
                break;
            }
        }
        assert_eq!(whole.unwrap().message, b"abc");
        // An empty message is whole with its prefix.
        let mut reader = Reader::new(16, &c, &all);
        assert!(reader
            .push(&prefix(0, 0))
            .unwrap()
            .unwrap()
            .message
            .is_empty());
    }

    #[test]
    fn the_declared_length_is_checked_before_any_byte_is_held() {
        let (c, all) = budgets(1 << 20, 1 << 20);
        let mut reader = Reader::new(16, &c, &all);
        assert!(matches!(
            reader.push(&prefix(0, 17)),
            Err(Unread::TooLarge {
                length: 17,
                limit: 16
            })
        ));
        let mut reader = Reader::new(16, &c, &all);
        assert!(matches!(
            reader.push(&prefix(0, u32::MAX)),
            Err(Unread::TooLarge { .. })
        ));
        assert_eq!(all.available_permits(), 1 << 20);
        let mut reader = Reader::new(16, &c, &all);
        assert!(matches!(
            reader.push(&prefix(1, 3)),
            Err(Unread::Compressed(1))
        ));
        // A prefix that never completes holds nothing either.
        let mut reader = Reader::new(16, &c, &all);
        assert!(reader.push(&[0, 0, 0]).unwrap().is_none());
        assert!(matches!(reader.ended(), Unread::Truncated));
        assert!(matches!(Reader::new(16, &c, &all).ended(), Unread::Missing));
    }

    #[test]
    fn memory_follows_the_bytes_that_came_not_the_length_declared() {
        let (c, all) = budgets(1 << 20, 1 << 20);
        let mut reader = Reader::new(1 << 20, &c, &all);
        assert!(reader.push(&prefix(0, 1 << 20)).unwrap().is_none());
        assert_eq!(reader.taken, 0);
        let mut came = 0;
        for _ in 0..100 {
            assert!(reader.push(&[7; 1000]).unwrap().is_none());
            came += 1000;
            assert!(reader.taken <= 2 * came, "{} held for {came}", reader.taken);
            assert!(reader.message.capacity() <= 2 * came);
            assert_eq!(all.available_permits(), (1 << 20) - reader.taken);
            assert_eq!(c.budget.available_permits(), (1 << 20) - reader.taken);
        }
        drop(reader);
        assert_eq!(all.available_permits(), 1 << 20);
        assert_eq!(c.budget.available_permits(), 1 << 20);
    }

    #[test]
    fn a_budget_at_its_bound_stops_the_reading_and_is_given_back() {
        // The connection's budget.
        let (c, all) = budgets(1000, 1 << 20);
        let mut held = Reader::new(1 << 20, &c, &all);
        held.push(&prefix(0, 800)).unwrap();
        assert!(held.push(&[1; 700]).unwrap().is_none());
        let mut other = Reader::new(1 << 20, &c, &all);
        other.push(&prefix(0, 800)).unwrap();
        assert!(matches!(other.push(&[1; 400]), Err(Unread::OverBudget)));
        // Everyone's: a connection with room of its own cannot read past it either.
        let (roomy, _) = budgets(1 << 20, 0);
        let mut third = Reader::new(1 << 20, &roomy, &all);
        third.push(&prefix(0, 1 << 20)).unwrap();
        assert!(matches!(
            third.push(&vec![1; (1 << 20) - 500]),
            Err(Unread::OverBudget)
        ));
        // What failed holds nothing (the connection's share is given back too); what is whole
        // holds until dropped.
        assert_eq!(roomy.budget.available_permits(), 1 << 20);
        drop((other, third));
        let read = held.push(&[1; 100]).unwrap().unwrap();
        assert_eq!(read.message.len(), 800);
        assert_eq!(c.budget.available_permits(), 200);
        drop(read);
        drop(held);
        assert_eq!(c.budget.available_permits(), 1000);
        assert_eq!(all.available_permits(), 1 << 20);
    }
}
