//! Envoy's ext_authz v3 messages, the fields this crate reads and the answers it can write, and a
//! client of `envoy.service.auth.v3.Authorization/Check`.
//!
//! Each type mirrors one message of Envoy's protos, with Envoy's field numbers and wire types:
//!
//! | type | Envoy's message | file of `envoyproxy/data-plane-api` (or `googleapis`) |
//! | --- | --- | --- |
//! | [`CheckRequest`] | `envoy.service.auth.v3.CheckRequest` | `envoy/service/auth/v3/external_auth.proto` |
//! | [`AttributeContext`] | `envoy.service.auth.v3.AttributeContext` | `envoy/service/auth/v3/attribute_context.proto` |
//! | [`attribute_context::Request`] | `….AttributeContext.Request` | the same |
//! | [`attribute_context::HttpRequest`] | `….AttributeContext.HttpRequest` | the same |
//! | [`HeaderMap`] | `envoy.config.core.v3.HeaderMap` | `envoy/config/core/v3/base.proto` |
//! | [`HeaderValue`] | `envoy.config.core.v3.HeaderValue` | the same |
//! | [`HeaderValueOption`] | `envoy.config.core.v3.HeaderValueOption` | the same |
//! | [`HeaderAppendAction`] | `envoy.config.core.v3.HeaderValueOption.HeaderAppendAction` | the same |
//! | [`BoolValue`] | `google.protobuf.BoolValue` | `google/protobuf/wrappers.proto` |
//! | [`CheckResponse`] | `envoy.service.auth.v3.CheckResponse` | `envoy/service/auth/v3/external_auth.proto` |
//! | [`HttpResponse`] | `CheckResponse`'s `oneof http_response` | the same |
//! | [`OkHttpResponse`] | `envoy.service.auth.v3.OkHttpResponse` | the same |
//! | [`QueryParameter`] | `envoy.config.core.v3.QueryParameter` | `envoy/config/core/v3/base.proto` |
//! | [`DeniedHttpResponse`] | `envoy.service.auth.v3.DeniedHttpResponse` | the same |
//! | [`HttpStatus`] | `envoy.type.v3.HttpStatus` | `envoy/type/v3/http_status.proto` |
//! | [`RpcStatus`] | `google.rpc.Status` | `google/rpc/status.proto` |
//!
//! **Fields left out.** The request's fields this crate does not read are not declared (the
//! peers, the time, the host, the body, the route and TLS context), nor the responses'
//! `dynamic_metadata` and `google.rpc.Status.details`, which it never writes: declaring them would
//! take much of Envoy's API (`Address`, `Metadata`, `Struct`, `Any`). Each struct's documentation
//! names what it leaves out. Decoding skips a field it does not know, as protobuf requires: a
//! `CheckRequest` from Envoy decodes whole but for those fields, and re-encoding it drops them.
//! Envoy's `StatusCode` enum is the `i32` it is on the wire (its values are the HTTP status
//! codes).
//!
//! These types replace the `envoy-types` crate, which this crate used to re-export: its generated
//! code covers the whole of Envoy's API and was the longest step of the `apim-sas` command's
//! build. The wire format is held to Envoy's own protos by the repository's tests, with Python's
//! protobuf and PyPI's `xds-protos` (generated from them): `tests/it/grpc.rs` against `serve`, and
//! the golden bytes of this module's tests and of `ext_authz`'s.

use std::collections::HashMap;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http_body::Body;

/// `envoy.service.auth.v3.Authorization`, the service's name in gRPC (and in gRPC health).
pub const SERVICE: &str = "envoy.service.auth.v3.Authorization";

/// The path of the one method, `Check`.
pub const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// `envoy.service.auth.v3.CheckRequest`: what Envoy asks about one client request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckRequest {
    /// `attributes = 1`: the client request and its context.
    #[prost(message, optional, tag = "1")]
    pub attributes: Option<AttributeContext>,
}

/// `envoy.service.auth.v3.AttributeContext`. Left out: `source = 1`, `destination = 2` (the
/// peers), `context_extensions = 10`, `metadata_context = 11`, `tls_session = 12`,
/// `route_metadata_context = 13`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeContext {
    /// `request = 4`: the client request.
    #[prost(message, optional, tag = "4")]
    pub request: Option<attribute_context::Request>,
}

/// The messages nested in `AttributeContext`.
pub mod attribute_context {
    use super::{HashMap, HeaderMap};

    /// `envoy.service.auth.v3.AttributeContext.Request`. Left out: `time = 1`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        /// `http = 2`: the HTTP request.
        #[prost(message, optional, tag = "2")]
        pub http: Option<HttpRequest>,
    }

    /// `envoy.service.auth.v3.AttributeContext.HttpRequest`. Left out: `id = 1`, `host = 5`,
    /// `scheme = 6`, `query = 7`, `fragment = 8`, `size = 9`, `protocol = 10`, `body = 11`,
    /// `raw_body = 12`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HttpRequest {
        /// `method = 2`: the request's method (`GET`).
        #[prost(string, tag = "2")]
        pub method: String,
        /// `headers = 3`: the request's headers, names in lower case, a repeated header's values
        /// joined with `,` by Envoy. Empty when Envoy sends `header_map` instead.
        #[prost(map = "string, string", tag = "3")]
        pub headers: HashMap<String, String>,
        /// `path = 4`: the request target, query included (`/orders?id=1`).
        #[prost(string, tag = "4")]
        pub path: String,
        /// `header_map = 13`: the headers as Envoy sends them with `encode_raw_headers: true`,
        /// one entry per header line, values in `raw_value`.
        #[prost(message, optional, tag = "13")]
        pub header_map: Option<HeaderMap>,
    }
}

/// `envoy.config.core.v3.HeaderMap`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderMap {
    /// `headers = 1`.
    #[prost(message, repeated, tag = "1")]
    pub headers: Vec<HeaderValue>,
}

/// `envoy.config.core.v3.HeaderValue`: one header. Envoy fills `value` or `raw_value`, not both.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct HeaderValue {
    /// `key = 1`: the header's name.
    #[prost(string, tag = "1")]
    pub key: String,
    /// `value = 2`: the value, as UTF-8.
    #[prost(string, tag = "2")]
    pub value: String,
    /// `raw_value = 3`: the value as bytes (`header_map` under `encode_raw_headers: true`).
    #[prost(bytes = "vec", tag = "3")]
    pub raw_value: Vec<u8>,
}

/// `envoy.config.core.v3.HeaderValueOption`: a header and how Envoy is to apply it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderValueOption {
    /// `header = 1`.
    #[prost(message, optional, tag = "1")]
    pub header: Option<HeaderValue>,
    /// `append = 2`: deprecated in Envoy's protos, yet what Envoy 1.40 reads for ext_authz's
    /// upstream headers (absent or false: set, replacing the client's; true: append).
    #[prost(message, optional, tag = "2")]
    pub append: Option<BoolValue>,
    /// `append_action = 3`: a [`HeaderAppendAction`].
    #[prost(enumeration = "HeaderAppendAction", tag = "3")]
    pub append_action: i32,
    /// `keep_empty_value = 4`.
    #[prost(bool, tag = "4")]
    pub keep_empty_value: bool,
}

/// `envoy.config.core.v3.HeaderValueOption.HeaderAppendAction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum HeaderAppendAction {
    /// `APPEND_IF_EXISTS_OR_ADD = 0`.
    AppendIfExistsOrAdd = 0,
    /// `ADD_IF_ABSENT = 1`.
    AddIfAbsent = 1,
    /// `OVERWRITE_IF_EXISTS_OR_ADD = 2`.
    OverwriteIfExistsOrAdd = 2,
    /// `OVERWRITE_IF_EXISTS = 3`.
    OverwriteIfExists = 3,
}

/// `google.protobuf.BoolValue`: a `bool` that can be absent.
#[derive(Clone, Copy, PartialEq, Eq, Hash, prost::Message)]
pub struct BoolValue {
    /// `value = 1`.
    #[prost(bool, tag = "1")]
    pub value: bool,
}

/// `envoy.service.auth.v3.CheckResponse`: the verdict. Left out: `dynamic_metadata = 4`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckResponse {
    /// `status = 1`: OK (0) lets the request through; any other code refuses it.
    #[prost(message, optional, tag = "1")]
    pub status: Option<RpcStatus>,
    /// `oneof http_response`: fields 2, 3 and 5.
    #[prost(oneof = "HttpResponse", tags = "2, 3, 5")]
    pub http_response: Option<HttpResponse>,
}

/// `CheckResponse`'s `oneof http_response`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum HttpResponse {
    /// `denied_response = 2`: the answer Envoy gives the client instead of forwarding.
    #[prost(message, tag = "2")]
    DeniedResponse(DeniedHttpResponse),
    /// `ok_response = 3`: changes to the request forwarded upstream.
    #[prost(message, tag = "3")]
    OkResponse(OkHttpResponse),
    /// `error_response = 5`: the answer when the check itself failed (newer protos).
    #[prost(message, tag = "5")]
    ErrorResponse(DeniedHttpResponse),
}

/// `envoy.service.auth.v3.OkHttpResponse`. Left out: `dynamic_metadata = 3` (deprecated).
#[derive(Clone, PartialEq, prost::Message)]
pub struct OkHttpResponse {
    /// `headers = 2`: headers set on the request sent upstream.
    #[prost(message, repeated, tag = "2")]
    pub headers: Vec<HeaderValueOption>,
    /// `headers_to_remove = 5`: headers removed from the request sent upstream.
    #[prost(string, repeated, tag = "5")]
    pub headers_to_remove: Vec<String>,
    /// `response_headers_to_add = 6`: headers added to the upstream's response.
    #[prost(message, repeated, tag = "6")]
    pub response_headers_to_add: Vec<HeaderValueOption>,
    /// `query_parameters_to_set = 7`: query parameters set on the request sent upstream.
    #[prost(message, repeated, tag = "7")]
    pub query_parameters_to_set: Vec<QueryParameter>,
    /// `query_parameters_to_remove = 8`: query parameters removed from it.
    #[prost(string, repeated, tag = "8")]
    pub query_parameters_to_remove: Vec<String>,
}

/// `envoy.config.core.v3.QueryParameter`.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct QueryParameter {
    /// `key = 1`.
    #[prost(string, tag = "1")]
    pub key: String,
    /// `value = 2`.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `envoy.service.auth.v3.DeniedHttpResponse`: the HTTP answer Envoy gives the client.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeniedHttpResponse {
    /// `status = 1`: the HTTP status (Envoy answers 403 without one).
    #[prost(message, optional, tag = "1")]
    pub status: Option<HttpStatus>,
    /// `headers = 2`: the answer's headers.
    #[prost(message, repeated, tag = "2")]
    pub headers: Vec<HeaderValueOption>,
    /// `body = 3`: the answer's body.
    #[prost(string, tag = "3")]
    pub body: String,
}

/// `envoy.type.v3.HttpStatus`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, prost::Message)]
pub struct HttpStatus {
    /// `code = 1`: Envoy's `StatusCode` enum, whose values are the HTTP status codes (`401`),
    /// as the `int32` it is encoded as.
    #[prost(int32, tag = "1")]
    pub code: i32,
}

/// `google.rpc.Status`: a gRPC status code and message (here, the verdict's). Left out:
/// `details = 3`.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct RpcStatus {
    /// `code = 1`: a `google.rpc.Code` (0 OK, 16 UNAUTHENTICATED).
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// `message = 2`.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// A tonic client of `Authorization/Check`: for testing a server that mounts
/// [`ExtAuthz::into_server`](super::ExtAuthz::into_server), over any tonic channel.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use apim_sas::ext_authz::pb::{AuthorizationClient, CheckRequest};
///
/// let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:8089")
///     .connect()
///     .await?;
/// let response = AuthorizationClient::new(channel)
///     .check(CheckRequest::default())
///     .await?;
/// assert_eq!(response.get_ref().status.as_ref().map(|s| s.code), Some(16));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct AuthorizationClient<T> {
    inner: tonic::client::Grpc<T>,
}

impl<T> AuthorizationClient<T>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    /// A client sending its calls through `inner` (a `tonic::transport::Channel`).
    pub fn new(inner: T) -> AuthorizationClient<T> {
        AuthorizationClient {
            inner: tonic::client::Grpc::new(inner),
        }
    }

    /// One Check: the `CheckResponse`, or the RPC's error status.
    pub async fn check(
        &mut self,
        request: impl tonic::IntoRequest<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        self.inner.ready().await.map_err(|e| {
            tonic::Status::unknown(format!("the channel is not ready: {}", e.into()))
        })?;
        let mut request = request.into_request();
        request
            .extensions_mut()
            .insert(tonic::GrpcMethod::new(SERVICE, "Check"));
        let codec = tonic_prost::ProstCodec::<CheckRequest, CheckResponse>::default();
        self.inner
            .unary(request, PathAndQuery::from_static(CHECK_PATH), codec)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::attribute_context::{HttpRequest, Request};
    use super::*;
    use prost::Message as _;

    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    /// A `CheckRequest` as Envoy's protos encode it, with every field of it set, known to these
    /// types or not: the fields read decode exactly, the others are skipped. Made with PyPI's
    /// `xds-protos` 1.85.0 and `protobuf` 7.36.2 (the venv of `.ci/deps/grpc.sh`):
    ///
    /// ```text
    /// target/grpc-venv/bin/python - <<'EOF'
    /// from envoy.service.auth.v3 import external_auth_pb2 as x, attribute_context_pb2 as a
    /// from envoy.config.core.v3 import base_pb2, address_pb2
    /// peer = a.AttributeContext.Peer(
    ///     address=address_pb2.Address(socket_address=address_pb2.SocketAddress(
    ///         address="10.0.0.7", port_value=41000)),
    ///     service="client", labels={"k": "v"}, principal="spiffe://a", certificate="pem")
    /// http = a.AttributeContext.HttpRequest(
    ///     id="42", method="POST", headers={"authorization": "GatewayKey t", "x-a": "é"},
    ///     path="/orders/7?x=1", host="api.example.test", scheme="https", query="x=1",
    ///     fragment="f", size=3, protocol="HTTP/2", body="abc", raw_body=b"abc",
    ///     header_map=base_pb2.HeaderMap(headers=[
    ///         base_pb2.HeaderValue(key="authorization", raw_value=b"GatewayKey t"),
    ///         base_pb2.HeaderValue(key="x-raw", raw_value=b"\xff\x00,"),
    ///         base_pb2.HeaderValue(key="x-utf8", value="é")]))
    /// r = x.CheckRequest(attributes=a.AttributeContext(
    ///     source=peer, destination=peer,
    ///     request=a.AttributeContext.Request(http=http), context_extensions={"c": "d"},
    ///     tls_session=a.AttributeContext.TLSSession(sni="api.example.test")))
    /// r.attributes.request.time.seconds = 1776732240
    /// print(r.SerializeToString(deterministic=True).hex())
    /// EOF
    /// ```
    const CHECK_REQUEST: &str = concat!(
        "0ac9020a330a100a0e120831302e302e302e3718a8c0021206636c69656e741a060a016b12017622",
        "0a7370696666653a2f2f612a0370656d12330a100a0e120831302e302e302e3718a8c0021206636c",
        "69656e741a060a016b120176220a7370696666653a2f2f612a0370656d22c0010a0608d0909bcf06",
        "12b5010a0234321204504f53541a1d0a0d617574686f72697a6174696f6e120c476174657761794b",
        "657920741a090a03782d611202c3a9220d2f6f72646572732f373f783d312a106170692e6578616d",
        "706c652e74657374320568747470733a03783d3142016648035206485454502f325a036162636203",
        "6162636a3b0a1d0a0d617574686f72697a6174696f6e1a0c476174657761794b657920740a0c0a05",
        "782d7261771a03ff002c0a0c0a06782d757466381202c3a952060a016312016462120a106170692e",
        "6578616d706c652e74657374",
    );

    #[test]
    fn a_check_request_from_envoys_protos_decodes_every_field_read() {
        let request = CheckRequest::decode(hex(CHECK_REQUEST).as_slice()).unwrap();
        let http = request
            .attributes
            .and_then(|a| a.request)
            .and_then(|r| r.http)
            .unwrap();
        assert_eq!(http.method, "POST");
        assert_eq!(http.path, "/orders/7?x=1");
        assert_eq!(
            http.headers,
            HashMap::from([
                ("authorization".to_owned(), "GatewayKey t".to_owned()),
                ("x-a".to_owned(), "é".to_owned()),
            ])
        );
        let raw = |key: &str, value: &str, raw_value: &[u8]| HeaderValue {
            key: key.to_owned(),
            value: value.to_owned(),
            raw_value: raw_value.to_vec(),
        };
        assert_eq!(
            http.header_map.unwrap().headers,
            [
                raw("authorization", "", b"GatewayKey t"),
                raw("x-raw", "", b"\xff\x00,"),
                raw("x-utf8", "é", b""),
            ]
        );
    }

    #[test]
    fn a_request_encoded_here_is_what_envoys_protos_encode_of_the_same_fields() {
        // The fields this crate knows, in the order Envoy's protos write them (by number).
        let request = CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(Request {
                    http: Some(HttpRequest {
                        method: "GET".into(),
                        path: "/".into(),
                        headers: HashMap::new(),
                        header_map: Some(HeaderMap {
                            headers: vec![HeaderValue {
                                key: "a".into(),
                                value: String::new(),
                                raw_value: b"b".to_vec(),
                            }],
                        }),
                    }),
                }),
            }),
        };
        assert_eq!(request.encode_to_vec(), hex(CHECK_REQUEST_SMALL));
    }

    /// ```text
    /// target/grpc-venv/bin/python - <<'EOF'
    /// from envoy.service.auth.v3 import external_auth_pb2 as x, attribute_context_pb2 as a
    /// from envoy.config.core.v3 import base_pb2
    /// http = a.AttributeContext.HttpRequest(method="GET", path="/", header_map=base_pb2.HeaderMap(
    ///     headers=[base_pb2.HeaderValue(key="a", raw_value=b"b")]))
    /// print(x.CheckRequest(attributes=a.AttributeContext(
    ///     request=a.AttributeContext.Request(http=http))).SerializeToString().hex())
    /// EOF
    /// ```
    const CHECK_REQUEST_SMALL: &str = "0a1622141212120347455422012f6a080a060a01611a0162";
}
