//! A scripted `envoy.service.auth.v3.Authorization/Check` service, for pinning what Envoy itself
//! does with each part of a `CheckResponse` (tests/it/envoy.rs, item 3 of its brief): `serve`
//! answers one way only, so the fields it does not use, and the errors it never makes, come from
//! here. The client picks the answer with its `x-case` header, which Envoy passes in the
//! `CheckRequest`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use apim_sas::ext_authz::pb::{
    self, BoolValue, DeniedHttpResponse, HeaderValue, HttpResponse, HttpStatus, RpcStatus,
};
pub use apim_sas::ext_authz::pb::{
    CheckRequest, CheckResponse, HeaderAppendAction, HeaderValueOption, OkHttpResponse,
};
use apim_sas::ext_authz::tonic;

/// How a header of a response is to be applied: the deprecated `append`, `append_action`, both.
#[derive(Clone, Copy, Debug)]
pub struct Apply {
    pub append: Option<bool>,
    pub action: HeaderAppendAction,
}

/// A header applied as `apply` says (`append` is deprecated in Envoy's protos; setting it is the
/// point of some cases).
pub fn header(key: &str, value: &str, apply: Apply) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_owned(),
            value: value.to_owned(),
            ..HeaderValue::default()
        }),
        append: apply.append.map(|value| BoolValue { value }),
        append_action: apply.action as i32,
        ..HeaderValueOption::default()
    }
}

fn status(code: i32) -> Option<RpcStatus> {
    Some(RpcStatus {
        code,
        message: String::new(),
    })
}

/// `status.code` `code` and an `OkHttpResponse`.
pub fn ok(code: i32, response: OkHttpResponse) -> CheckResponse {
    CheckResponse {
        status: status(code),
        http_response: Some(HttpResponse::OkResponse(response)),
    }
}

/// `status.code` `code` and a `DeniedHttpResponse` (HTTP status 0: none set).
pub fn denied(
    code: i32,
    http_status: i32,
    headers: Vec<HeaderValueOption>,
    body: &str,
) -> CheckResponse {
    CheckResponse {
        status: status(code),
        http_response: Some(HttpResponse::DeniedResponse(refusal(
            http_status,
            headers,
            body,
        ))),
    }
}

/// `status.code` `code` and the `error_response` of newer protos.
pub fn error_response(
    code: i32,
    http_status: i32,
    headers: Vec<HeaderValueOption>,
    body: &str,
) -> CheckResponse {
    CheckResponse {
        status: status(code),
        http_response: Some(HttpResponse::ErrorResponse(refusal(
            http_status,
            headers,
            body,
        ))),
    }
}

/// The answer to the client both carry (HTTP status 0: none set).
fn refusal(http_status: i32, headers: Vec<HeaderValueOption>, body: &str) -> DeniedHttpResponse {
    DeniedHttpResponse {
        status: (http_status != 0).then_some(HttpStatus { code: http_status }),
        headers,
        body: body.to_owned(),
    }
}

/// What the service does for one `x-case`.
#[derive(Clone, Debug)]
pub enum Answer {
    Respond(Box<CheckResponse>),
    /// The RPC fails with this status (as `serve` does before its keys are loaded).
    Fail(tonic::Code),
    /// Answers OK only after this long (Envoy's timeout is shorter).
    Stall(Duration),
}

/// The answer to a Check, by the value of the client's `x-case` header and the request itself.
pub type Script = fn(&str, &CheckRequest) -> Answer;

/// The scripted service, as tonic mounts a service: each call decoded as a Check and answered by
/// the script, through tonic's own unary server and prost's codec (Envoy calls nothing else).
#[derive(Clone)]
struct Scripted {
    script: Script,
}

impl tonic::server::NamedService for Scripted {
    const NAME: &'static str = pb::SERVICE;
}

type Answered =
    Pin<Box<dyn Future<Output = Result<http::Response<tonic::body::Body>, Infallible>> + Send>>;

impl tower_service::Service<http::Request<tonic::body::Body>> for Scripted {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Answered;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Answered {
        let check = Check(self.script);
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<CheckResponse, CheckRequest>::default();
            Ok(tonic::server::Grpc::new(codec).unary(check, request).await)
        })
    }
}

/// The script as the one method.
struct Check(Script);

impl tonic::server::UnaryService<CheckRequest> for Check {
    type Response = CheckResponse;
    type Future =
        Pin<Box<dyn Future<Output = Result<tonic::Response<CheckResponse>, tonic::Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<CheckRequest>) -> Self::Future {
        let case = client_header(request.get_ref(), "x-case").unwrap_or_default();
        let answer = (self.0)(&case, request.get_ref());
        Box::pin(async move {
            match answer {
                Answer::Respond(response) => Ok(tonic::Response::new(*response)),
                Answer::Fail(code) => Err(tonic::Status::new(code, format!("scripted: {case}"))),
                Answer::Stall(delay) => {
                    tokio::time::sleep(delay).await;
                    Ok(tonic::Response::new(ok(0, OkHttpResponse::default())))
                }
            }
        })
    }
}

/// A header of the client's request as Envoy reported it (`attributes.request.http.headers`).
pub fn client_header(request: &CheckRequest, name: &str) -> Option<String> {
    request
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
        .and_then(|h| h.headers.get(name))
        .cloned()
}

/// The scripted service on a loopback port of its own runtime, stopped when dropped.
pub struct Stub {
    pub addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

impl Stub {
    pub fn start(script: Script) -> Stub {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let incoming = runtime
            .block_on(async {
                tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap())
            })
            .unwrap();
        let addr = incoming.local_addr().unwrap();
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(Scripted { script })
                .serve_with_incoming(incoming),
        );
        Stub {
            addr,
            _runtime: runtime,
        }
    }
}
