//! The gRPC answers, over HTTP/2 on the HTTP port: Envoy's `Authorization/Check` through the
//! library's [`ExtAuthz`] (the verdict, the metrics and the log lines of the HTTP answers), gRPC
//! health (`grpc.health.v1.Health`), else UNIMPLEMENTED.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use apim_sas::ext_authz::envoy_types::ext_authz::v3::pb::AuthorizationServer;
pub(super) use apim_sas::ext_authz::tonic::body::Body as GrpcBody;
use apim_sas::ext_authz::tonic::codegen::{BoxFuture, Service as _};
use apim_sas::ext_authz::tonic::server::NamedService;
use apim_sas::ext_authz::tonic::Status;
use apim_sas::ext_authz::ExtAuthz;
use http::header::CONTENT_TYPE;
use http::{Request, Response, Version};
use hyper::body::Incoming;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};
use tonic_health::ServingStatus;

use super::reload::Reloader;

/// The most bytes of one gRPC message read (a `CheckRequest` carries the client's headers, and its
/// body if Envoy is told to send it): far above Envoy's default header limit of 60 KiB, far below
/// tonic's default of 4 MiB, so that a connection's streams cannot hold much memory.
pub(super) const MAX_MESSAGE: usize = 1024 * 1024;

/// The name Envoy's service is reported under in gRPC health, beside the whole server's `""`.
const AUTHORIZATION: &str = <AuthorizationServer<ExtAuthz> as NamedService>::NAME;
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

/// The gRPC services, and what they need to know of the process.
pub(super) struct Grpc {
    authorization: AuthorizationServer<ExtAuthz>,
    health: HealthServer<HealthService>,
    ready: Arc<Reloader>,
}

/// A gRPC answer.
pub(super) type GrpcFuture = BoxFuture<Response<GrpcBody>, Infallible>;

impl Grpc {
    /// The services over `authz`, with health reported by `health` (see [`not_serving`]).
    pub(super) fn new(authz: ExtAuthz, health: &HealthReporter, ready: Arc<Reloader>) -> Grpc {
        Grpc {
            authorization: authz.into_server().max_decoding_message_size(MAX_MESSAGE),
            health: HealthServer::new(HealthService::from_health_reporter(health.clone())),
            ready,
        }
    }

    pub(super) fn call(&self, request: Request<Incoming>) -> GrpcFuture {
        let path = request.uri().path();
        let service = path
            .strip_prefix('/')
            .and_then(|path| path.split_once('/'))
            .map_or("", |(service, _)| service);
        match service {
            AUTHORIZATION => {
                // Before the keys are loaded every token would be GatewayNotExist: say "not yet"
                // instead, as /verify's 503 does (Envoy then applies failure_mode_allow).
                if !self.ready.ready.load(Ordering::Acquire) {
                    return status(Status::unavailable("keys not loaded yet"));
                }
                self.authorization.clone().call(request)
            }
            HEALTH => self.health.clone().call(request),
            _ => status(Status::unimplemented("no such service")),
        }
    }
}

fn status(status: Status) -> GrpcFuture {
    Box::pin(std::future::ready(Ok(status.into_http())))
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
