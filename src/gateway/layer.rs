//! Verification inside HTTP servers: a tower [`Layer`] that lets a request through only with a
//! valid token (feature `tower`).
//!
//! [`VerifyLayer`] wraps any tower service taking `http::Request`s (axum, hyper, tonic). For each
//! request it reads the token from the first present header of its list (`Authorization` by
//! default; any spelling a [`Verifier`] reads, the developer portal's included), verifies it
//! against a [`SharedVerifier`] at the clock's `now`, and then either
//! - puts a [`GatewayIdentity`] (owned: gateway id, key type, expiry, form) into the request's
//!   extensions and calls the inner service, or
//! - answers itself with `401`, `WWW-Authenticate: SharedAccessSignature error="<Code>"` and
//!   Azure's ErrorResponse body `{"error":{"code","message","target"}}` as JSON.
//!
//! Every token problem is a `401`, a missing header included (`EmptyToken`): never `403` or
//! `5xx`, which gateways such as nginx's `auth_request` would turn into a server error.
//!
//! Keys rotate without a restart: [`SharedVerifier::store`] swaps in a new [`Verifier`] while
//! requests run. Each request verifies against one snapshot, so it sees the old keys or the new,
//! never a mix.
//!
//! ```
//! use apim_sas::layer::{GatewayIdentity, SharedVerifier, VerifyLayer};
//! use apim_sas::{GatewayKey, KeyType, Policy, Verifier};
//!
//! let mut verifier = Verifier::new(Policy::default());
//! verifier.insert("gw1", KeyType::Primary, &GatewayKey::new("sample-key-do-not-use")?)?;
//! let keys = SharedVerifier::new(verifier);
//! let layer = VerifyLayer::new(keys.clone());
//! // axum: Router::new().route("/", get(handler)).layer(layer), where the handler takes
//! // `Extension(identity): Extension<GatewayIdentity>`.
//!
//! // Later, on rotation: every request from now on sees the new keys.
//! let mut rotated = Verifier::new(Policy::default());
//! rotated.insert("gw1", KeyType::Primary, &GatewayKey::new("new-sample-key")?)?;
//! keys.store(rotated);
//! # let _ = layer;
//! # Ok::<(), apim_sas::Error>(())
//! ```
//!
//! Choices: a header given more than once is refused (`MalformedToken`): credentials that could
//! be read two ways are not credentials. An empty header value is `EmptyToken`, as no header is.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use http::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use http::{Method, Request, Response, StatusCode, Uri};
use pin_project_lite::pin_project;
pub use tower_layer::Layer;
pub use tower_service::Service;

use crate::error::{Error, ErrorKind};
use crate::key::KeyType;
use crate::token::Format;
use crate::verify::{Verified, Verifier};

/// A [`Verifier`] shared by many requests and replaced atomically while they run.
///
/// Cloning shares the same slot: a [`store`](SharedVerifier::store) through any clone is seen by
/// every layer built on it.
#[derive(Clone)]
pub struct SharedVerifier {
    current: Arc<ArcSwap<Verifier>>,
}

/// A verifier as the layer uses it: with a verdict cache of
/// [`Verifier::DEFAULT_CACHE_CAPACITY`] tokens unless its own cache setting says otherwise
/// (`with_cache(0)` turns it off).
fn cached(verifier: Verifier) -> Verifier {
    if verifier.has_cache_setting() {
        verifier
    } else {
        verifier.with_cache(Verifier::DEFAULT_CACHE_CAPACITY)
    }
}

impl SharedVerifier {
    /// A slot holding `verifier`. A verifier without a cache setting is given the default verdict
    /// cache ([`Verifier::with_cache`]; `with_cache(0)` before keeps it off).
    pub fn new(verifier: Verifier) -> SharedVerifier {
        SharedVerifier {
            current: Arc::new(ArcSwap::from_pointee(cached(verifier))),
        }
    }

    /// Replaces the verifier: requests that start from now on use `verifier` (given the default
    /// cache as in [`new`](SharedVerifier::new), starting empty); requests already verifying
    /// finish with the one they loaded.
    pub fn store(&self, verifier: Verifier) {
        self.current.store(Arc::new(cached(verifier)));
    }

    /// The verifier in use now (a snapshot: a later [`store`](SharedVerifier::store) does not
    /// change it).
    pub fn snapshot(&self) -> Arc<Verifier> {
        self.current.load_full()
    }

    /// Verifies raw token bytes against the verifier in use now, at `now`.
    pub fn verify_bytes(&self, token: &[u8], now: DateTime<Utc>) -> Result<GatewayIdentity, Error> {
        self.current
            .load()
            .verify_bytes(token, now)
            .map(GatewayIdentity::from)
    }
}

impl fmt::Debug for SharedVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedVerifier")
            .field(&*self.current.load())
            .finish()
    }
}

/// The gateway a request's token was verified for; owned, so a handler can keep it.
///
/// The layer puts it into the request's extensions; in axum, take it with
/// `Extension<GatewayIdentity>` (a missing layer is then a wiring bug that axum answers with 500).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GatewayIdentity {
    id: Arc<str>,
    key_type: KeyType,
    expiry: DateTime<Utc>,
    format: Format,
}

impl GatewayIdentity {
    /// The gateway id (the keystore's own spelling).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Which key signed the token.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The expiry the token was signed with.
    pub fn expiry(&self) -> DateTime<Utc> {
        self.expiry
    }

    /// The form the token came in.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Time left until the expiry (negative within the leeway after it).
    pub fn expires_in(&self, now: DateTime<Utc>) -> TimeDelta {
        self.expiry.signed_duration_since(now)
    }
}

/// `X-Apim-Gateway-Id`: the gateway id a token was verified for.
pub const X_APIM_GATEWAY_ID: HeaderName = HeaderName::from_static("x-apim-gateway-id");
/// `X-Apim-Key-Type`: `primary` or `secondary`.
pub const X_APIM_KEY_TYPE: HeaderName = HeaderName::from_static("x-apim-key-type");
/// `X-Apim-Token-Expiry`: the token's expiry, RFC 3339 in UTC.
pub const X_APIM_TOKEN_EXPIRY: HeaderName = HeaderName::from_static("x-apim-token-expiry");
/// `X-Apim-Token-Format`: the form the token came in.
pub const X_APIM_TOKEN_FORMAT: HeaderName = HeaderName::from_static("x-apim-token-format");

impl GatewayIdentity {
    /// The four `X-Apim-*` headers that tell an upstream who was let through, in the order
    /// gateway id, key type, expiry, format: what `apim-sas serve` answers a valid token with,
    /// and what the gRPC `ExtAuthz` service (feature `ext-authz`) has Envoy set upstream.
    ///
    /// The expiry is RFC 3339 in UTC, whole seconds as `2026-04-22T00:44:00Z`, else with the
    /// seven fraction digits of Azure's 100 ns ticks (`2026-04-22T00:44:00.5000000Z`). Names are
    /// lower case (HTTP/2 and Envoy's spelling; HTTP/1.1 names are case-insensitive). An id is
    /// printable ASCII and so always a valid header value; one that were not would be left out.
    pub fn headers(&self) -> impl Iterator<Item = (HeaderName, HeaderValue)> {
        let mut expiry = Vec::with_capacity(28);
        crate::expiry::push_rfc3339(&mut expiry, self.expiry);
        [
            HeaderValue::from_str(&self.id)
                .ok()
                .map(|id| (X_APIM_GATEWAY_ID, id)),
            Some((
                X_APIM_KEY_TYPE,
                HeaderValue::from_static(self.key_type.as_str()),
            )),
            HeaderValue::from_maybe_shared(Bytes::from(expiry))
                .ok()
                .map(|expiry| (X_APIM_TOKEN_EXPIRY, expiry)),
            Some((
                X_APIM_TOKEN_FORMAT,
                HeaderValue::from_static(self.format.as_str()),
            )),
        ]
        .into_iter()
        .flatten()
    }
}

impl From<Verified<'_>> for GatewayIdentity {
    fn from(verified: Verified<'_>) -> GatewayIdentity {
        GatewayIdentity {
            id: Arc::from(verified.id()),
            key_type: verified.key_type(),
            expiry: verified.expiry(),
            format: verified.format(),
        }
    }
}

/// One verification, as the layer reports it to an [`Observer`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Verification<'a> {
    /// The identity let through, or the refusal.
    pub result: Result<&'a GatewayIdentity, &'a Error>,
    /// The time spent finding and verifying the token (not the inner service's).
    pub elapsed: Duration,
    /// The request's method (for a gRPC Check, the client request's as Envoy reports it).
    pub method: &'a Method,
    /// The request's URI (path and query; a refusal's log line names the path). For a gRPC
    /// Check, the client request's path as Envoy reports it.
    pub uri: &'a Uri,
}

/// Told of every verification: for metrics and logs, without this crate knowing either.
///
/// Implemented by closures `Fn(&Verification<'_>)`. It runs on the request's path: keep it cheap
/// (count, record, log), never block.
pub trait Observer: Send + Sync + 'static {
    /// Called once per request, after verifying and before the inner service runs.
    fn observe(&self, verification: &Verification<'_>);
}

impl<F> Observer for F
where
    F: Fn(&Verification<'_>) + Send + Sync + 'static,
{
    fn observe(&self, verification: &Verification<'_>) {
        self(verification)
    }
}

type Clock = dyn Fn() -> DateTime<Utc> + Send + Sync;

/// What every service of one layer shares, built once (and what the gRPC `ExtAuthz` service of
/// feature `ext-authz`, built from the layer, shares with it).
#[derive(Clone)]
pub(crate) struct Config {
    verifier: SharedVerifier,
    pub(crate) headers: Box<[HeaderName]>,
    clock: Option<Arc<Clock>>,
    observer: Option<Arc<dyn Observer>>,
    /// `SharedAccessSignature error="<Code>"` for every code, built once.
    challenges: Box<[(ErrorKind, HeaderValue)]>,
}

/// One verification's outcome, and how long finding and verifying the token took (timed only
/// when an observer is told).
pub(crate) struct Verdict {
    pub(crate) result: Result<GatewayIdentity, Error>,
    elapsed: Option<Duration>,
}

impl Config {
    fn now(&self) -> DateTime<Utc> {
        match &self.clock {
            Some(clock) => clock(),
            None => Utc::now(),
        }
    }

    fn challenge(&self, kind: ErrorKind) -> Option<HeaderValue> {
        match self.challenges.iter().find(|(k, _)| *k == kind) {
            Some((_, value)) => Some(value.clone()),
            None => challenge(kind),
        }
    }

    /// The token `find` reads, verified against the verifier in use now at the clock's `now`.
    pub(crate) fn verdict<'t>(&self, find: impl FnOnce() -> Result<&'t [u8], Error>) -> Verdict {
        let started = self.observer.as_ref().map(|_| Instant::now());
        let result = find().and_then(|token| self.verifier.verify_bytes(token, self.now()));
        Verdict {
            result,
            elapsed: started.map(|started| started.elapsed()),
        }
    }

    /// Whether anyone is told of verdicts (so that callers build a method and URI only then).
    #[cfg(feature = "ext-authz")]
    pub(crate) fn observed(&self) -> bool {
        self.observer.is_some()
    }

    /// Tells the observer, if any, of `verdict` on a request for `method` `uri`.
    pub(crate) fn observe(&self, verdict: &Verdict, method: &Method, uri: &Uri) {
        if let (Some(observer), Some(elapsed)) = (&self.observer, verdict.elapsed) {
            observer.observe(&Verification {
                result: verdict.result.as_ref(),
                elapsed,
                method,
                uri,
            });
        }
    }

    /// What a refusal with `error` answers: its challenge and its body.
    pub(crate) fn refusal(&self, error: &Error) -> Refusal {
        Refusal {
            challenge: self.challenge(error.kind()),
            body: error_body(error),
        }
    }
}

fn challenge(kind: ErrorKind) -> Option<HeaderValue> {
    HeaderValue::try_from(challenge_text(kind)).ok()
}

/// The `WWW-Authenticate` value of a refusal of `kind`, `SharedAccessSignature error="<Code>"`,
/// as the layer, ext_authz, `serve` and the Envoy filter send it.
pub fn challenge_text(kind: ErrorKind) -> String {
    format!("SharedAccessSignature error=\"{}\"", kind.as_str())
}

/// A tower [`Layer`] that verifies each request's token; see the [module docs](self).
///
/// Built once and cloned cheaply (its configuration sits behind an `Arc`).
#[derive(Clone)]
pub struct VerifyLayer {
    pub(crate) config: Arc<Config>,
}

impl VerifyLayer {
    /// Reads `Authorization`, verifies against `verifier` at [`Utc::now`], observes nothing.
    pub fn new(verifier: SharedVerifier) -> VerifyLayer {
        let challenges = ErrorKind::ALL
            .iter()
            .filter_map(|&kind| challenge(kind).map(|value| (kind, value)))
            .collect();
        VerifyLayer {
            config: Arc::new(Config {
                verifier,
                headers: Box::new([AUTHORIZATION]),
                clock: None,
                observer: None,
                challenges,
            }),
        }
    }

    /// The configuration to change: shared configuration is copied first (clones of a layer
    /// keep what they had).
    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// Reads the token from the first of `headers` that the request carries, instead of
    /// `Authorization`. An empty list refuses every request (`EmptyToken`).
    #[must_use]
    pub fn with_headers(mut self, headers: impl IntoIterator<Item = HeaderName>) -> VerifyLayer {
        self.config_mut().headers = headers.into_iter().collect();
        self
    }

    /// Takes `now` from `clock` instead of [`Utc::now`] (tests, replays).
    #[must_use]
    pub fn with_clock(
        mut self,
        clock: impl Fn() -> DateTime<Utc> + Send + Sync + 'static,
    ) -> VerifyLayer {
        self.config_mut().clock = Some(Arc::new(clock));
        self
    }

    /// Tells `observer` of every verification (metrics, logs).
    #[must_use]
    pub fn with_observer(mut self, observer: impl Observer) -> VerifyLayer {
        self.config_mut().observer = Some(Arc::new(observer));
        self
    }

    /// The headers read, in order.
    pub fn headers(&self) -> &[HeaderName] {
        &self.config.headers
    }

    /// The verifier slot.
    pub fn verifier(&self) -> &SharedVerifier {
        &self.config.verifier
    }
}

impl fmt::Debug for VerifyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyLayer")
            .field("verifier", &self.config.verifier)
            .field("headers", &self.config.headers)
            .field("clock", &self.config.clock.is_some())
            .field("observer", &self.config.observer.is_some())
            .finish()
    }
}

impl<S> Layer<S> for VerifyLayer {
    type Service = VerifyService<S>;

    fn layer(&self, inner: S) -> VerifyService<S> {
        VerifyService {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// The service [`VerifyLayer`] makes: verifies, then calls `S` or refuses.
#[derive(Clone)]
pub struct VerifyService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S: fmt::Debug> fmt::Debug for VerifyService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> VerifyService<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

pub(crate) use crate::header::missing as no_token_header;
#[cfg(feature = "ext-authz")]
pub(crate) use crate::header::repeated as repeated_token_header;

/// The token's bytes: the first present header of `names`, by the rule of [`crate::header`].
fn token_of<'h>(headers: &'h HeaderMap, names: &[HeaderName]) -> Result<&'h [u8], Error> {
    for name in names {
        let values = headers.get_all(name).iter().map(HeaderValue::as_bytes);
        if let Some(value) = crate::header::select(values)? {
            return Ok(value);
        }
    }
    Err(no_token_header())
}

/// Azure's ErrorResponse: `{"error":{"code","message","target"}}`.
#[derive(serde::Serialize)]
struct ErrorResponse<'a> {
    error: ErrorBody<'a>,
}

#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
    target: &'a str,
}

/// The JSON body of a refusal: Azure's ErrorResponse shape.
pub fn error_body(error: &Error) -> Bytes {
    let body = ErrorResponse {
        error: ErrorBody {
            code: error.code(),
            message: error.message(),
            target: error.target(),
        },
    };
    // Serializing three strings cannot fail; an empty body would still be a 401.
    serde_json::to_vec(&body)
        .map(Bytes::from)
        .unwrap_or_default()
}

/// What a refusal answers, kept so the response can be built when the future is polled.
#[derive(Clone)]
pub(crate) struct Refusal {
    /// `SharedAccessSignature error="<Code>"`.
    pub(crate) challenge: Option<HeaderValue>,
    /// Azure's ErrorResponse as JSON ([`error_body`]).
    pub(crate) body: Bytes,
}

impl Refusal {
    fn response<B>(&self) -> Response<VerifyBody<B>> {
        let mut response = Response::new(VerifyBody::refusal(self.body.clone()));
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(challenge) = &self.challenge {
            headers.insert(WWW_AUTHENTICATE, challenge.clone());
        }
        response
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for VerifyService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<VerifyBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let config = &*self.config;
        let verdict = config.verdict(|| token_of(request.headers(), &config.headers));
        config.observe(&verdict, request.method(), request.uri());
        match verdict.result {
            Ok(identity) => {
                request.extensions_mut().insert(identity);
                ResponseFuture {
                    kind: Kind::Inner {
                        future: self.inner.call(request),
                    },
                }
            }
            Err(error) => ResponseFuture {
                kind: Kind::Refused {
                    refusal: config.refusal(&error),
                },
            },
        }
    }
}

pin_project! {
    /// The future of [`VerifyService`]: the inner service's response, or the refusal.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F },
        Refused { refusal: Refusal },
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<VerifyBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future
                .poll(cx)
                .map_ok(|response| response.map(VerifyBody::inner)),
            KindProj::Refused { refusal } => Poll::Ready(Ok(refusal.response())),
        }
    }
}

pin_project! {
    /// The body of a [`VerifyService`] response: the inner service's, or the refusal's JSON.
    pub struct VerifyBody<B> {
        #[pin]
        kind: BodyKind<B>,
    }
}

pin_project! {
    #[project = BodyKindProj]
    enum BodyKind<B> {
        Inner { #[pin] body: B },
        Refusal { body: Option<Bytes> },
    }
}

impl<B> VerifyBody<B> {
    fn inner(body: B) -> VerifyBody<B> {
        VerifyBody {
            kind: BodyKind::Inner { body },
        }
    }

    fn refusal(body: Bytes) -> VerifyBody<B> {
        VerifyBody {
            kind: BodyKind::Refusal { body: Some(body) },
        }
    }
}

impl<B> http_body::Body for VerifyBody<B>
where
    B: http_body::Body,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            BodyKindProj::Inner { body } => body.poll_frame(cx),
            BodyKindProj::Refusal { body } => Poll::Ready(
                body.take()
                    .map(|bytes| Ok(http_body::Frame::data(B::Data::from(bytes)))),
            ),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Inner { body } => body.is_end_stream(),
            BodyKind::Refusal { body } => body.is_none(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match &self.kind {
            BodyKind::Inner { body } => body.size_hint(),
            BodyKind::Refusal { body } => {
                http_body::SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}
