//! The HTTP answers: `/verify` and below through the library's layer, health, readiness,
//! metrics, else `404`; gRPC calls are handed to [`Grpc`](super::grpc::Grpc).

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use apim_sas::layer::{GatewayIdentity, Service as _, VerifyBody, VerifyService};
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use super::grpc::{is_grpc, Connection, Grpc, GrpcBody, GrpcFuture};
use super::metrics::{wants_openmetrics, Metrics};
use super::reload::Reloader;

/// The response body: the layer's, one of ours, or a gRPC answer's.
pub(super) type Body = Either<Either<VerifyBody<Full<Bytes>>, Full<Bytes>>, GrpcBody>;

fn ours(body: Full<Bytes>) -> Body {
    Either::Left(Either::Right(body))
}

pub(super) fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(ours(Full::new(Bytes::from_static(text.as_bytes()))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The answer to a request the layer let through: `200`, empty, and who it was.
#[derive(Clone, Copy)]
pub(super) struct Allow;

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
        for (name, value) in identity.headers() {
            headers.insert(name, value);
        }
        ready(Ok(response))
    }
}

/// Everything a connection's requests share.
pub(super) struct App {
    pub(super) verify: VerifyService<Allow>,
    pub(super) grpc: Grpc,
    pub(super) ready: Arc<Reloader>,
    pub(super) metrics: Arc<Metrics>,
}

/// The routes: `/verify` and below through the layer, health, readiness, metrics, else `404`.
#[derive(Clone)]
pub(super) struct Routes(pub(super) Arc<App>);

impl Routes {
    /// The answer to `request`, on the connection whose requests share `connection`.
    pub(super) fn answer(
        &self,
        request: Request<Incoming>,
        connection: &Arc<Connection>,
    ) -> Answer {
        let app = &self.0;
        if is_grpc(&request) {
            return Answer::Grpc(app.grpc.call(request, connection));
        }
        // Every HTTP answer is ready at once, its body never read.
        connection.answer();
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
            "/metrics" if get => match app.metrics.exposition(wants_openmetrics(&request)) {
                Some((text, content_type)) => {
                    let mut response = Response::new(ours(Full::new(Bytes::from(text))));
                    response
                        .headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
                    response
                }
                None => plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "metrics: encoding failed\n",
                ),
            },
            _ => plain(StatusCode::NOT_FOUND, "not found\n"),
        })
    }
}

pub(super) type VerifyFuture =
    apim_sas::layer::ResponseFuture<Ready<Result<Response<Full<Bytes>>, Infallible>>>;

/// A route's answer: ready now, or the layer's (which is ready as soon as it is polled).
pub(super) enum Answer {
    Now(Option<Response<Body>>),
    Verify(VerifyFuture),
    Grpc(GrpcFuture),
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
                .map_ok(|response| response.map(|body| Either::Left(Either::Left(body)))),
            Answer::Grpc(future) => future
                .as_mut()
                .poll(cx)
                .map_ok(|response| response.map(Either::Right)),
        }
    }
}
