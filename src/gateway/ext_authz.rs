//! Envoy's gRPC external authorization: a tonic `Authorization` service that lets a request
//! through only with a valid token (feature `ext-authz`).
//!
//! Envoy's `ext_authz` filter in gRPC mode (and Istio's `envoyExtAuthzGrpc`, Contour, Envoy
//! Gateway) calls `envoy.service.auth.v3.Authorization/Check` with a `CheckRequest` describing the
//! client's request. [`ExtAuthz`] answers it with the same verdict as the tower
//! [`VerifyLayer`], over the same [`SharedVerifier`] (its keys, its
//! rotation, its verdict cache):
//!
//! - The token is read from `attributes.request.http.headers` by the layer's header list
//!   (`Authorization` by default), names matched case-insensitively (Envoy sends them in lower
//!   case). With Envoy's `encode_raw_headers: true` the headers come in `header_map` instead, and
//!   are read there.
//! - Valid: `status.code` 0 (OK) and an `OkHttpResponse` that sets the four `x-apim-*` headers
//!   of [`GatewayIdentity::headers`] on the request sent upstream, overwriting any the client
//!   sent (a client cannot smuggle its own `x-apim-gateway-id` past the check).
//! - Refused: `status.code` 16 (UNAUTHENTICATED) and a `DeniedHttpResponse` that Envoy answers
//!   the client with: HTTP 401, `www-authenticate: SharedAccessSignature error="<Code>"`,
//!   `content-type: application/json` and Azure's ErrorResponse body, byte for byte what the
//!   layer answers.
//!
//! The RPC itself always succeeds: a refusal is a verdict, not a gRPC error. The layer's
//! [`Observer`](crate::layer::Observer) is told of every Check as of every HTTP request, with the
//! client request's method and path from `attributes.request.http` (a method Envoy left empty is
//! reported as `GET`, a path that is not a valid URI path as `/`).
//!
//! # Overwriting, in every Envoy release
//!
//! Each header is sent with both the deprecated `append: false` and `append_action:
//! OVERWRITE_IF_EXISTS_OR_ADD`. Envoy reads only `append` for ext_authz's upstream headers: a
//! false or absent `append` sets the header, replacing every value the client sent, and `true`
//! joins them (`client,server`); Envoy 1.40 ignores `append_action` there (pinned against the
//! real binary by the repository's `tests/it/envoy/pinned.rs`). So `append: false` is what
//! overwrites; the `append_action` says the same to any implementation that reads only the newer
//! field.
//!
//! # Mount it
//!
//! ```
//! use apim_sas::ext_authz::ExtAuthz;
//! use apim_sas::layer::{SharedVerifier, VerifyLayer};
//! use apim_sas::{GatewayKey, KeyType, Policy, Verifier};
//!
//! let mut verifier = Verifier::new(Policy::default());
//! verifier.insert("gw1", KeyType::Primary, &GatewayKey::new("sample-key-do-not-use")?)?;
//! let keys = SharedVerifier::new(verifier);
//! // The same headers, clock and observer as a layer, or `ExtAuthz::new(keys)` for the defaults.
//! let layer = VerifyLayer::new(keys.clone());
//! let server = ExtAuthz::from(layer).into_server();
//! // tonic::transport::Server::builder().add_service(server).serve(addr).await?;
//! # let _ = server;
//! # Ok::<(), apim_sas::Error>(())
//! ```
//!
//! The messages are Envoy's, declared in [`pb`] as far as they are read and written, with a
//! client of the service for tests. [`tonic`] and [`prost`] are re-exported, so that a caller's
//! versions match these.

use std::convert::Infallible;
use std::fmt;
use std::future::{self, Future};
use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::{HeaderName, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Method, Uri};

use crate::error::{Error, ErrorKind, Target};
use crate::layer::{no_token_header, repeated_token_header, GatewayIdentity, SharedVerifier};
use crate::layer::{Config, VerifyLayer};

pub mod pb;

use pb::attribute_context::HttpRequest;
use pb::{
    BoolValue, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue,
    HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse, RpcStatus,
};

pub use prost;
pub use tonic;

/// `google.rpc.Code` OK.
const OK: i32 = 0;
/// `google.rpc.Code` UNAUTHENTICATED: the request has no valid credentials.
const UNAUTHENTICATED: i32 = 16;
/// HTTP's 401 Unauthorized, as Envoy's `StatusCode` enum numbers it.
const UNAUTHORIZED: i32 = 401;

/// Envoy's `Authorization` service over a [`SharedVerifier`]; see the [module docs](self).
///
/// Built from a [`VerifyLayer`] (its header list, clock and observer) or from a verifier alone,
/// and cloned cheaply (the configuration sits behind an `Arc`, shared with the layer).
#[derive(Clone)]
pub struct ExtAuthz {
    layer: VerifyLayer,
}

impl ExtAuthz {
    /// Reads `Authorization`, verifies against `verifier` at the current time, observes nothing.
    pub fn new(verifier: SharedVerifier) -> ExtAuthz {
        ExtAuthz::from(VerifyLayer::new(verifier))
    }

    /// The layer whose configuration this service uses.
    pub fn layer(&self) -> &VerifyLayer {
        &self.layer
    }

    fn config(&self) -> &Config {
        &self.layer.config
    }

    /// The verdict on one `CheckRequest`, as the `CheckResponse` Envoy acts on.
    pub fn check_response(&self, request: &CheckRequest) -> CheckResponse {
        let config = self.config();
        let http = request
            .attributes
            .as_ref()
            .and_then(|attributes| attributes.request.as_ref())
            .and_then(|request| request.http.as_ref());
        let verdict = config.verdict(|| token_of(http, &config.headers));
        if config.observed() {
            let (method, uri) = request_line(http);
            config.observe(&verdict, &method, &uri);
        }
        match &verdict.result {
            Ok(identity) => allowed(identity),
            Err(error) => self.refused(error),
        }
    }

    /// The denial of a Check whose `CheckRequest` was not read, for a server that reads the gRPC
    /// message itself within bounds (as `apim-sas serve` does: a message over its size limit, or
    /// not whole by its deadline). `MalformedToken` with `reason` as its message, answered as
    /// every refusal is (UNAUTHENTICATED and the layer's 401, byte for byte), and told to the
    /// observer as a request for `GET /`, the client's own request being unknown.
    ///
    /// A denial rather than an RPC error: where Envoy has `failure_mode_allow: true`, an RPC
    /// error lets the client's request through. `reason` is in the body Envoy answers the client
    /// with: say what was not read and why (`"token: the CheckRequest is over 1 MiB"`), never
    /// bytes of the request.
    pub fn unread(&self, reason: &'static str) -> CheckResponse {
        let error = Error::token(ErrorKind::MalformedToken, Target::Token, reason);
        let config = self.config();
        if config.observed() {
            // A verdict with nothing to verify: timed and counted as every Check is.
            let verdict = config.verdict(|| Err(error.clone()));
            config.observe(&verdict, &Method::GET, &Uri::from_static("/"));
        }
        self.refused(&error)
    }

    /// The refusal of `error`: UNAUTHENTICATED, and the 401 the layer would answer.
    fn refused(&self, error: &Error) -> CheckResponse {
        let refusal = self.config().refusal(error);
        let mut headers = Vec::with_capacity(2);
        if let Some(challenge) = refusal.challenge.as_ref().and_then(|c| c.to_str().ok()) {
            headers.push(overwrite(&WWW_AUTHENTICATE, challenge));
        }
        headers.push(overwrite(&CONTENT_TYPE, "application/json"));
        CheckResponse {
            status: Some(RpcStatus {
                code: UNAUTHENTICATED,
                message: error.message().to_owned(),
            }),
            http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                status: Some(HttpStatus { code: UNAUTHORIZED }),
                headers,
                // The ErrorResponse is serde_json's output: UTF-8.
                body: String::from_utf8_lossy(&refusal.body).into_owned(),
            })),
        }
    }

    /// The tonic server to mount (`Server::builder().add_service(…)`, or any tower stack).
    pub fn into_server(self) -> AuthorizationServer {
        AuthorizationServer { authz: self }
    }
}

impl From<VerifyLayer> for ExtAuthz {
    /// Verifies as `layer` does: its verifier, header list, clock and observer.
    fn from(layer: VerifyLayer) -> ExtAuthz {
        ExtAuthz { layer }
    }
}

impl fmt::Debug for ExtAuthz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExtAuthz")
            .field("layer", &self.layer)
            .finish()
    }
}

/// `envoy.service.auth.v3.Authorization` as a tonic service, answered by an [`ExtAuthz`]: what
/// [`ExtAuthz::into_server`] gives, to mount on `tonic::transport::Server` (`add_service`) or in
/// any tower stack taking `http::Request`s.
///
/// `Check` is read and answered as tonic's generated servers do (tonic's gRPC framing, prost's
/// codec, messages of up to tonic's default 4 MiB, no compression); any other method of the
/// service is UNIMPLEMENTED. The RPC always succeeds: a refusal is a `CheckResponse`.
#[derive(Clone, Debug)]
pub struct AuthorizationServer {
    authz: ExtAuthz,
}

impl tonic::server::NamedService for AuthorizationServer {
    const NAME: &'static str = pb::SERVICE;
}

/// A boxed answer of [`AuthorizationServer`].
type Answer =
    Pin<Box<dyn Future<Output = Result<http::Response<tonic::body::Body>, Infallible>> + Send>>;

impl<B> tower_service::Service<http::Request<B>> for AuthorizationServer
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Answer {
        if request.uri().path() != pb::CHECK_PATH {
            let status = tonic::Status::unimplemented("no such method");
            return Box::pin(future::ready(Ok(status.into_http())));
        }
        let check = Check(self.authz.clone());
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<CheckResponse, CheckRequest>::default();
            Ok(tonic::server::Grpc::new(codec).unary(check, request).await)
        })
    }
}

/// The one method, as tonic's unary server calls it.
struct Check(ExtAuthz);

impl tonic::server::UnaryService<CheckRequest> for Check {
    type Response = CheckResponse;
    type Future = future::Ready<Result<tonic::Response<CheckResponse>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<CheckRequest>) -> Self::Future {
        let response = self.0.check_response(request.get_ref());
        future::ready(Ok(tonic::Response::new(response)))
    }
}

/// OK, with the identity's headers set on the upstream request.
fn allowed(identity: &GatewayIdentity) -> CheckResponse {
    let headers = identity
        .headers()
        .filter_map(|(name, value)| Some(overwrite(&name, value.to_str().ok()?)))
        .collect();
    CheckResponse {
        status: Some(RpcStatus {
            code: OK,
            message: String::new(),
        }),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers,
            ..OkHttpResponse::default()
        })),
    }
}

/// A header that replaces any of the same name (see the module docs for why both fields).
fn overwrite(name: &HeaderName, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: name.as_str().to_owned(),
            value: value.to_owned(),
            raw_value: Vec::new(),
        }),
        append: Some(BoolValue { value: false }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        keep_empty_value: false,
    }
}

/// The token's bytes: the first of `names` the request carries, matched case-insensitively in
/// `headers` and `header_map` alike; a name present twice (in two spellings, or twice in the
/// raw `header_map`) is ambiguous, as in the layer.
fn token_of<'r>(http: Option<&'r HttpRequest>, names: &[HeaderName]) -> Result<&'r [u8], Error> {
    let Some(http) = http else {
        return Err(no_token_header());
    };
    let raw = http.header_map.iter().flat_map(|map| map.headers.iter());
    for name in names {
        let name = name.as_str();
        let mut found = None;
        let headers = http
            .headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_bytes());
        let raw_headers = raw
            .clone()
            .filter(|header| header.key.eq_ignore_ascii_case(name))
            .map(|header| {
                if header.raw_value.is_empty() {
                    header.value.as_bytes()
                } else {
                    header.raw_value.as_slice()
                }
            });
        for value in headers.chain(raw_headers) {
            if found.replace(value).is_some() {
                return Err(repeated_token_header());
            }
        }
        if let Some(value) = found {
            return Ok(value);
        }
    }
    Err(no_token_header())
}

/// The client request's method and path, for the observer.
fn request_line(http: Option<&HttpRequest>) -> (Method, Uri) {
    let method = http
        .and_then(|http| Method::from_bytes(http.method.as_bytes()).ok())
        .unwrap_or(Method::GET);
    let uri = http
        .and_then(|http| http.path.parse::<Uri>().ok())
        .filter(|uri| uri.scheme().is_none() && uri.path().starts_with('/'))
        .unwrap_or_else(|| Uri::from_static("/"));
    (method, uri)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::{attribute_context, AttributeContext, HeaderMap};
    use std::collections::HashMap;

    fn request(headers: &[(&str, &str)], raw: Option<&[(&str, &[u8])]>) -> CheckRequest {
        CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(attribute_context::Request {
                    http: Some(HttpRequest {
                        method: "GET".into(),
                        path: "/orders?id=1".into(),
                        headers: headers
                            .iter()
                            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                            .collect::<HashMap<_, _>>(),
                        header_map: raw.map(|raw| HeaderMap {
                            headers: raw
                                .iter()
                                .map(|(k, v)| HeaderValue {
                                    key: (*k).to_owned(),
                                    value: String::new(),
                                    raw_value: v.to_vec(),
                                })
                                .collect(),
                        }),
                    }),
                }),
            }),
        }
    }

    fn token<'r>(request: &'r CheckRequest, names: &[&str]) -> Result<&'r [u8], String> {
        let names: Vec<HeaderName> = names
            .iter()
            .map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap())
            .collect();
        let http = request
            .attributes
            .as_ref()
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref());
        token_of(http, &names).map_err(|e| e.code().to_owned())
    }

    #[test]
    fn headers_are_matched_in_any_case_and_in_list_order() {
        let r = request(&[("x-token", "a"), ("Authorization", "b")], None);
        assert_eq!(token(&r, &["authorization"]), Ok(&b"b"[..]));
        assert_eq!(token(&r, &["x-token", "authorization"]), Ok(&b"a"[..]));
        assert_eq!(token(&r, &["x-other", "authorization"]), Ok(&b"b"[..]));
        assert_eq!(token(&r, &["x-other"]), Err("EmptyToken".into()));
        assert_eq!(token(&r, &[]), Err("EmptyToken".into()));
    }

    #[test]
    fn a_name_in_two_spellings_or_twice_raw_is_ambiguous() {
        let r = request(&[("authorization", "a"), ("AUTHORIZATION", "b")], None);
        assert_eq!(token(&r, &["authorization"]), Err("MalformedToken".into()));
        let raw: &[(&str, &[u8])] = &[("authorization", b"a"), ("authorization", b"b")];
        let r = request(&[], Some(raw));
        assert_eq!(token(&r, &["authorization"]), Err("MalformedToken".into()));
        let r = request(&[], Some(&raw[..1]));
        assert_eq!(token(&r, &["authorization"]), Ok(&b"a"[..]));
    }

    #[test]
    fn a_request_without_attributes_has_no_token() {
        assert_eq!(
            token(&CheckRequest::default(), &["authorization"]),
            Err("EmptyToken".into())
        );
    }

    /// A verifier holding gw1's sample primary key, a fixed `now`, and a token of gw1 valid a day
    /// past it.
    fn gw1_and_a_token() -> (crate::Verifier, chrono::DateTime<chrono::Utc>, String) {
        use crate::{Format, GatewayKey, KeyType, Policy, Signer, Verifier};
        use chrono::{TimeDelta, TimeZone, Utc};

        let key = GatewayKey::new("sample-key-do-not-use").unwrap();
        let mut verifier = Verifier::new(Policy::default());
        verifier.insert("gw1", KeyType::Primary, &key).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 4, 21, 0, 44, 0).unwrap();
        let token = Signer::new("gw1", &key)
            .unwrap()
            .sign(now + TimeDelta::days(1), Format::Compact)
            .unwrap()
            .to_string();
        (verifier, now, token)
    }

    #[test]
    fn a_layers_headers_clock_and_observer_are_the_services() {
        use crate::layer::Verification;
        use std::sync::{Arc, Mutex};

        let (verifier, now, token) = gw1_and_a_token();
        let seen: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
        let log = Arc::clone(&seen);
        let layer = VerifyLayer::new(SharedVerifier::new(verifier))
            .with_headers([HeaderName::from_static("x-token")])
            .with_clock(move || now)
            .with_observer(move |v: &Verification<'_>| {
                let result = match v.result {
                    Ok(identity) => identity.id().to_owned(),
                    Err(error) => error.code().to_owned(),
                };
                log.lock()
                    .unwrap()
                    .push((result, v.method.to_string(), v.uri.path().to_owned()));
            });
        let authz = ExtAuthz::from(layer);

        let response = authz.check_response(&request(&[("X-Token", &token)], None));
        assert_eq!(response.status.as_ref().map(|s| s.code), Some(OK));
        let Some(HttpResponse::OkResponse(ok)) = &response.http_response else {
            panic!("{response:?}");
        };
        let headers: Vec<(&str, &str)> = ok
            .headers
            .iter()
            .filter_map(|h| h.header.as_ref())
            .map(|h| (h.key.as_str(), h.value.as_str()))
            .collect();
        assert_eq!(
            headers,
            [
                ("x-apim-gateway-id", "gw1"),
                ("x-apim-key-type", "primary"),
                ("x-apim-token-expiry", "2026-04-22T00:44:00Z"),
                ("x-apim-token-format", "compact"),
            ]
        );
        let overwriting = ok.headers.iter().all(|h| {
            h.append == Some(BoolValue { value: false })
                && h.append_action == HeaderAppendAction::OverwriteIfExistsOrAdd as i32
        });
        assert!(overwriting);

        // `Authorization` is not in this layer's list.
        let response = authz.check_response(&request(&[("authorization", &token)], None));
        assert_eq!(
            response.status.as_ref().map(|s| s.code),
            Some(UNAUTHENTICATED)
        );
        let Some(HttpResponse::DeniedResponse(denied)) = &response.http_response else {
            panic!("{response:?}");
        };
        assert_eq!(denied.status.as_ref().map(|s| s.code), Some(401));
        assert_eq!(
            denied.body,
            r#"{"error":{"code":"EmptyToken","message":"token: no token header in the request","target":"token"}}"#
        );
        assert_eq!(
            *seen.lock().unwrap(),
            [
                ("gw1".to_owned(), "GET".to_owned(), "/orders".to_owned()),
                (
                    "EmptyToken".to_owned(),
                    "GET".to_owned(),
                    "/orders".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn a_request_not_read_is_denied_and_observed_as_every_refusal() {
        use crate::layer::Verification;
        use crate::{Policy, Verifier};
        use std::sync::{Arc, Mutex};

        let seen: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
        let log = Arc::clone(&seen);
        let layer = VerifyLayer::new(SharedVerifier::new(Verifier::new(Policy::default())))
            .with_observer(move |v: &Verification<'_>| {
                let code = v.result.map_or_else(|e| e.code(), |_| "valid");
                log.lock().unwrap().push((
                    code.to_owned(),
                    v.method.to_string(),
                    v.uri.path().to_owned(),
                ));
            });
        let authz = ExtAuthz::from(layer);
        let response = authz.unread("token: the CheckRequest is over 1 MiB");
        let unknown_token = authz.check_response(&request(&[("authorization", "x")], None));
        let status = response.status.as_ref().unwrap();
        assert_eq!(
            (status.code, status.message.as_str()),
            (UNAUTHENTICATED, "token: the CheckRequest is over 1 MiB")
        );
        let (Some(HttpResponse::DeniedResponse(denied)), Some(HttpResponse::DeniedResponse(other))) =
            (&response.http_response, &unknown_token.http_response)
        else {
            panic!("{response:?} {unknown_token:?}");
        };
        assert_eq!(denied.status.as_ref().map(|s| s.code), Some(401));
        assert_eq!(
            denied.body,
            r#"{"error":{"code":"MalformedToken","message":"token: the CheckRequest is over 1 MiB","target":"token"}}"#
        );
        let header = |d: &DeniedHttpResponse, i: usize| {
            let h = d.headers[i].header.as_ref().unwrap();
            (h.key.clone(), h.value.clone())
        };
        assert_eq!(
            header(denied, 0),
            (
                "www-authenticate".to_owned(),
                r#"SharedAccessSignature error="MalformedToken""#.to_owned()
            )
        );
        // Built as every other refusal: the same headers, in the same fields.
        assert_eq!(denied.headers.len(), other.headers.len());
        assert_eq!(denied.headers[1], other.headers[1]);
        assert_eq!(
            seen.lock().unwrap()[0],
            (
                "MalformedToken".to_owned(),
                "GET".to_owned(),
                "/".to_owned()
            )
        );
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The two answers, as Envoy's protos encode them: made with PyPI's `xds-protos` 1.85.0 and
    /// `protobuf` 7.36.2 (the venv of `.ci/deps/grpc.sh`), not with this crate's types:
    ///
    /// ```text
    /// target/grpc-venv/bin/python - <<'EOF'
    /// from envoy.service.auth.v3 import external_auth_pb2 as x
    /// from envoy.config.core.v3 import base_pb2 as b
    /// from envoy.type.v3 import http_status_pb2 as s
    /// from google.protobuf.wrappers_pb2 import BoolValue
    /// from google.rpc.status_pb2 import Status
    /// def h(k, v):
    ///     return b.HeaderValueOption(header=b.HeaderValue(key=k, value=v),
    ///         append=BoolValue(value=False),
    ///         append_action=b.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD)
    /// ok = x.CheckResponse(status=Status(code=0), ok_response=x.OkHttpResponse(headers=[
    ///     h("x-apim-gateway-id", "gw1"), h("x-apim-key-type", "primary"),
    ///     h("x-apim-token-expiry", "2026-04-22T00:44:00Z"), h("x-apim-token-format", "compact")]))
    /// m = "token: no token header in the request"
    /// denied = x.CheckResponse(status=Status(code=16, message=m),
    ///     denied_response=x.DeniedHttpResponse(status=s.HttpStatus(code=401), headers=[
    ///         h("www-authenticate", 'SharedAccessSignature error="EmptyToken"'),
    ///         h("content-type", "application/json")],
    ///     body='{"error":{"code":"EmptyToken","message":"%s","target":"token"}}' % m))
    /// print(ok.SerializeToString().hex())
    /// print(denied.SerializeToString().hex())
    /// EOF
    /// ```
    const ALLOWED: &str = concat!(
        "0a001a9b01121e0a180a11782d6170696d2d676174657761792d696412036777311200180212200a1a",
        "0a0f782d6170696d2d6b65792d7479706512077072696d6172791200180212310a2b0a13782d617069",
        "6d2d746f6b656e2d6578706972791214323032362d30342d32325430303a34343a30305a1200180212",
        "240a1e0a13782d6170696d2d746f6b656e2d666f726d61741207636f6d7061637412001802",
    );
    const DENIED: &str = concat!(
        "0a2908101225746f6b656e3a206e6f20746f6b656e2068656164657220696e20746865207265717565",
        "737412d5010a0308910312420a3c0a107777772d61757468656e74696361746512285368617265644163",
        "636573735369676e6174757265206572726f723d22456d707479546f6b656e221200180212260a200a",
        "0c636f6e74656e742d7479706512106170706c69636174696f6e2f6a736f6e120018021a627b226572",
        "726f72223a7b22636f6465223a22456d707479546f6b656e222c226d657373616765223a22746f6b65",
        "6e3a206e6f20746f6b656e2068656164657220696e207468652072657175657374222c227461726765",
        "74223a22746f6b656e227d7d",
    );

    #[test]
    fn the_answers_are_encoded_byte_for_byte_as_envoys_protos_encode_them() {
        use prost::Message as _;

        let (verifier, now, token) = gw1_and_a_token();
        let authz =
            ExtAuthz::from(VerifyLayer::new(SharedVerifier::new(verifier)).with_clock(move || now));
        let allowed = authz.check_response(&request(&[("authorization", &token)], None));
        assert_eq!(hex(&allowed.encode_to_vec()), ALLOWED);
        let denied = authz.check_response(&request(&[], None));
        assert_eq!(hex(&denied.encode_to_vec()), DENIED);
        // And back: what Envoy's protos wrote is what this crate wrote.
        for (response, golden) in [(allowed, ALLOWED), (denied, DENIED)] {
            let bytes: Vec<u8> = (0..golden.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&golden[i..i + 2], 16).unwrap())
                .collect();
            assert_eq!(CheckResponse::decode(bytes.as_slice()).unwrap(), response);
        }
    }

    #[test]
    fn the_request_line_falls_back_on_hostile_input() {
        let mut r = request(&[], None);
        let (method, uri) = request_line(Some(
            r.attributes
                .as_ref()
                .unwrap()
                .request
                .as_ref()
                .unwrap()
                .http
                .as_ref()
                .unwrap(),
        ));
        assert_eq!((method.as_str(), uri.path()), ("GET", "/orders"));
        let http = r
            .attributes
            .as_mut()
            .unwrap()
            .request
            .as_mut()
            .unwrap()
            .http
            .as_mut()
            .unwrap();
        http.method = String::new();
        http.path = "http://evil.test/x y\n".into();
        let (method, uri) = request_line(Some(http));
        assert_eq!((method.as_str(), uri.path()), ("GET", "/"));
        assert_eq!(request_line(None).1.path(), "/");
    }
}
