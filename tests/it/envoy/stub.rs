//! A scripted `envoy.service.auth.v3.Authorization/Check` service, for pinning what Envoy itself
//! does with each part of a `CheckResponse` (tests/it/envoy.rs, item 3 of its brief): `serve`
//! answers one way only, so the fields it does not use, and the errors it never makes, come from
//! here. The client picks the answer with its `x-case` header, which Envoy passes in the
//! `CheckRequest`.

use std::net::SocketAddr;
use std::time::Duration;

use apim_sas::ext_authz::envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, DeniedHttpResponse, HeaderValue, HttpResponse, HttpStatus,
};
pub use apim_sas::ext_authz::envoy_types::ext_authz::v3::pb::{
    CheckRequest, CheckResponse, HeaderAppendAction, HeaderValueOption, OkHttpResponse,
};
use apim_sas::ext_authz::envoy_types::pb::google::protobuf::BoolValue;
use apim_sas::ext_authz::envoy_types::pb::google::rpc;
use apim_sas::ext_authz::tonic;

/// How a header of a response is to be applied: the deprecated `append`, `append_action`, both.
#[derive(Clone, Copy, Debug)]
pub struct Apply {
    pub append: Option<bool>,
    pub action: HeaderAppendAction,
}

// `append` is deprecated in Envoy's protos; setting it is the point of some cases.
#[allow(deprecated)]
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

fn status(code: i32) -> Option<rpc::Status> {
    Some(rpc::Status {
        code,
        message: String::new(),
        details: Vec::new(),
    })
}

/// `status.code` `code` and an `OkHttpResponse`.
pub fn ok(code: i32, response: OkHttpResponse) -> CheckResponse {
    CheckResponse {
        status: status(code),
        dynamic_metadata: None,
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
        dynamic_metadata: None,
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: (http_status != 0).then_some(HttpStatus { code: http_status }),
            headers,
            body: body.to_owned(),
        })),
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
        dynamic_metadata: None,
        http_response: Some(HttpResponse::ErrorResponse(DeniedHttpResponse {
            status: (http_status != 0).then_some(HttpStatus { code: http_status }),
            headers,
            body: body.to_owned(),
        })),
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

struct Scripted {
    script: Script,
}

#[tonic::async_trait]
impl Authorization for Scripted {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let case = client_header(request.get_ref(), "x-case").unwrap_or_default();
        match (self.script)(&case, request.get_ref()) {
            Answer::Respond(response) => Ok(tonic::Response::new(*response)),
            Answer::Fail(code) => Err(tonic::Status::new(code, format!("scripted: {case}"))),
            Answer::Stall(delay) => {
                tokio::time::sleep(delay).await;
                Ok(tonic::Response::new(ok(0, OkHttpResponse::default())))
            }
        }
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
                .add_service(AuthorizationServer::new(Scripted { script }))
                .serve_with_incoming(incoming),
        );
        Stub {
            addr,
            _runtime: runtime,
        }
    }
}
