//! `apim-sas serve` as Envoy's gRPC external authorization service, the real binary on a
//! loopback port, driven by two independent clients: Python's grpcio on Envoy's own published
//! protos (`xds-protos`, `grpcio-health-checking`; tests/grpc/check.py, installed by
//! `.ci/deps/grpc.sh`) and a tonic client on the library's own messages (`ext_authz::pb`). Every
//! verdict and token
//! form, the upstream headers and how Envoy would apply them, the denied responses byte for byte
//! against the HTTP answers of the same port, gRPC health before and after the keys, a custom
//! `--header`, thousands of concurrent Checks, key rotation under gRPC load, the metrics and
//! the log lines. Also: every YAML snippet of docs/ext-authz.md parses and says what it must.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apim_sas::chrono::{DateTime, TimeDelta, Utc};
use apim_sas::ext_authz::pb::{
    attribute_context, AttributeContext, AuthorizationClient, CheckRequest, CheckResponse,
    HttpResponse,
};
use apim_sas::ext_authz::tonic;
use apim_sas::{Format, GatewayKey};
use serde_json::{json, Value};

use crate::common::http::{authorized, request, Reply};
use crate::common::serve::{Keys, Serve, ServeCommand};
use crate::common::tokens::TestKeys;
use crate::common::wait_until;

const NOW: &str = "2026-04-21T00:44:00Z";
/// In every key these tests write; must never appear in a log line.
const CANARY: &str = "CANARY-grpc-7a41-never-log-me";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(NOW)
        .unwrap()
        .with_timezone(&Utc)
}

const KEYS: TestKeys = TestKeys::new(CANARY, "");

fn key(name: &str) -> String {
    KEYS.key(name)
}

/// A token for gateway `id` signed with `key(key_name)`, expiring `ttl` after NOW.
fn token(id: &str, key_name: &str, format: Format, ttl: TimeDelta) -> String {
    KEYS.sign(id, key_name, format, now() + ttl)
}

fn day_token(id: &str, key_name: &str) -> String {
    token(id, key_name, Format::Compact, TimeDelta::days(1))
}

/// `{"id": {"primary": key(p), "secondary": key(s)}, …}`.
fn keystore(gateways: &[(&str, &str, Option<&str>)]) -> String {
    KEYS.keystore(gateways)
}

fn gw_keys() -> Keys {
    Keys::new(&keystore(&[("gw1", "p1", Some("s1")), ("gw2", "p2", None)]))
}

/// `apim-sas serve --listen 127.0.0.1:0 --now NOW ARGS`.
fn serve(args: &[&str]) -> ServeCommand {
    // Bounded: the load tests refuse many requests, each logged.
    Serve::command().now(NOW).keep_lines(20_000).args(args)
}

/// The venv .ci/deps/grpc.sh makes. The tests that use it are ignored where it was missing when
/// they were built (build.rs: `skip_grpc_venv`); one gone since fails them with the command to
/// make it.
fn venv_python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("target/grpc-venv/bin/python");
    assert!(
        python.exists(),
        "the Python gRPC client (grpcio, xds-protos, grpcio-health-checking) is not installed at \
         {}: run `bash .ci/deps/grpc.sh` (what .ci/run does before `cargo test`; it touches \
         build.rs, so that the tests are rebuilt)",
        python.display()
    );
    python
}

fn python(addr: SocketAddr, spec: &Value) -> Value {
    let mut child = Command::new(venv_python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/grpc/check.py"))
        .arg(addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(spec.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "check.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// One Check of the Python client with these client headers.
fn check(headers: &[(&str, &str)]) -> Value {
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    json!({ "headers": headers, "method": "GET", "path": "/orders/7?x=1" })
}

/// A header as Envoy will apply it: overwritten, in both the old and the new field.
fn overwritten(key: &str, value: &str) -> Value {
    json!({
        "key": key, "value": value, "raw_value": "", "append": false,
        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD", "keep_empty_value": false
    })
}

/// The response Envoy lets a request through on, with exactly these four upstream headers.
fn allowed(id: &str, key_type: &str, expiry: &str, format: &str) -> Value {
    json!({
        "status": { "code": 0, "message": "" },
        "http_response": "ok_response",
        "dynamic_metadata": false,
        "ok": {
            "headers": [
                overwritten("x-apim-gateway-id", id),
                overwritten("x-apim-key-type", key_type),
                overwritten("x-apim-token-expiry", expiry),
                overwritten("x-apim-token-format", format),
            ],
            "headers_to_remove": [],
            "response_headers_to_add": [],
            "query_parameters_to_set": 0,
            "query_parameters_to_remove": [],
        }
    })
}

fn error_body(code: &str, message: &str, target: &str) -> String {
    format!(r#"{{"error":{{"code":"{code}","message":"{message}","target":"{target}"}}}}"#)
}

/// The response Envoy answers the client with: 401, the challenge, JSON, the ErrorResponse.
fn denied(code: &str, message: &str, target: &str) -> Value {
    json!({
        "status": { "code": 16, "message": message },
        "http_response": "denied_response",
        "dynamic_metadata": false,
        "denied": {
            "status": 401,
            "headers": [
                overwritten("www-authenticate", &format!(r#"SharedAccessSignature error="{code}""#)),
                overwritten("content-type", "application/json"),
            ],
            "body": error_body(code, message, target),
        }
    })
}

/// The HTTP/1.1 answer of the same port to the same token must be the same refusal, byte for byte.
fn assert_same_refusal(reply: &Reply, grpc: &Value) {
    assert_eq!(reply.status, 401, "{reply:?}");
    let denied = &grpc["denied"];
    assert_eq!(reply.text(), denied["body"].as_str().unwrap());
    assert_eq!(
        reply.header("www-authenticate"),
        denied["headers"][0]["value"].as_str()
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
}

#[test]
#[cfg_attr(
    skip_grpc_venv,
    ignore = "the Python gRPC client is not installed: run `bash .ci/deps/grpc.sh`"
)]
fn every_verdict_and_form_as_envoys_protos_read_it_and_http_on_the_same_port() {
    let keys = gw_keys();
    let server = serve(&["--keystore", &keys.arg()]).start();

    let compact = day_token("gw1", "p1");
    let uid = token(
        "gw1",
        "s1",
        Format::Uid,
        TimeDelta::milliseconds(86_400_500),
    );
    let portal = format!(r#"SharedAccessSignature token="{uid}",refresh="true""#);
    let forged = compact.replace("&202604220044&", "&202604230044&");
    let expired = token("gw1", "p1", Format::Compact, TimeDelta::minutes(-5));
    let too_far = token("gw2", "p2", Format::Compact, TimeDelta::days(31));
    let unknown = day_token("gw9", "p1");
    let long = "a".repeat(1025);

    let cases: Vec<(Value, Value)> = vec![
        (
            check(&[("authorization", &compact)]),
            allowed("gw1", "primary", "2026-04-22T00:44:00Z", "compact"),
        ),
        (
            check(&[("authorization", &format!("SharedAccessSignature {uid}"))]),
            allowed("gw1", "secondary", "2026-04-22T00:44:00.5000000Z", "uid"),
        ),
        (
            check(&[("authorization", &portal)]),
            allowed("gw1", "secondary", "2026-04-22T00:44:00.5000000Z", "uid"),
        ),
        (
            check(&[("authorization", &format!("gatewaykey  {compact}"))]),
            allowed("gw1", "primary", "2026-04-22T00:44:00Z", "compact"),
        ),
        // A client's own x-apim-* headers are overwritten, never appended to.
        (
            check(&[
                ("authorization", &day_token("gw2", "p2")),
                ("x-apim-gateway-id", "gw1"),
                ("x-apim-key-type", "secondary"),
            ]),
            allowed("gw2", "primary", "2026-04-22T00:44:00Z", "compact"),
        ),
        (
            check(&[]),
            denied(
                "EmptyToken",
                "token: no token header in the request",
                "token",
            ),
        ),
        (
            check(&[("authorization", "")]),
            denied("EmptyToken", "token: nothing to parse", "token"),
        ),
        (
            check(&[("authorization", &forged)]),
            denied(
                "SignatureMismatch",
                "signature: no key of this gateway produces this signature",
                "signature",
            ),
        ),
        // Two spellings of one name: ambiguous credentials (Envoy itself sends lower case).
        (
            check(&[("authorization", &compact), ("Authorization", &compact)]),
            denied(
                "MalformedToken",
                "token: the header is given more than once",
                "token",
            ),
        ),
    ];
    let specs: Vec<&Value> = cases.iter().map(|(spec, _)| spec).collect();
    let answers = python(server.addr, &json!({ "checks": specs }));
    for ((spec, expected), answer) in cases.iter().zip(answers["checks"].as_array().unwrap()) {
        assert_eq!(answer, expected, "for {spec}");
    }

    // Refusals whose messages the verifier words: the code, challenge and body exactly as the
    // HTTP/1.1 answer of the same port to the same token.
    let refused = [
        (expired.as_str(), "TokenExpired"),
        (too_far.as_str(), "ExpiryTooFar"),
        (unknown.as_str(), "GatewayNotExist"),
        (long.as_str(), "TokenTooLong"),
        ("Bearer abc", "MalformedToken"),
        (forged.as_str(), "SignatureMismatch"),
    ];
    let specs: Vec<Value> = refused
        .iter()
        .map(|(token, _)| check(&[("authorization", token)]))
        .collect();
    let answers = python(server.addr, &json!({ "checks": specs }));
    let mut conn = server.conn();
    for ((token, code), answer) in refused.iter().zip(answers["checks"].as_array().unwrap()) {
        assert_eq!(answer["status"]["code"], 16, "{code}: {answer}");
        assert_eq!(answer["http_response"], "denied_response");
        assert_eq!(answer["denied"]["status"], 401);
        let body: Value = serde_json::from_str(answer["denied"]["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["error"]["code"], *code);
        assert_eq!(answer["status"]["message"], body["error"]["message"]);
        assert_eq!(
            answer["denied"]["headers"][0],
            overwritten(
                "www-authenticate",
                &format!(r#"SharedAccessSignature error="{code}""#)
            )
        );
        assert_same_refusal(&conn.send(&authorized("/verify", token)), answer);
    }

    // HTTP/1.1 on the same port still answers as before.
    let reply = conn.send(&authorized("/verify/orders", &compact));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-apim-gateway-id"), Some("gw1"));
    assert_eq!(
        reply.header("x-apim-token-expiry"),
        Some("2026-04-22T00:44:00Z")
    );
    assert_eq!(conn.send(&request("GET", "/healthz", &[])).status, 200);
    assert_eq!(conn.send(&request("GET", "/nope", &[])).status, 404);
    // No key and no token in any log line.
    let log = server.log();
    assert!(
        !log.contains(CANARY) && !log.contains(&compact[..20]),
        "{log}"
    );
}

#[test]
#[cfg_attr(
    skip_grpc_venv,
    ignore = "the Python gRPC client is not installed: run `bash .ci/deps/grpc.sh`"
)]
fn raw_headers_as_envoy_sends_them_with_encode_raw_headers() {
    let keys = gw_keys();
    let server = serve(&["--keystore", &keys.arg()]).start();
    let compact = day_token("gw1", "p1");
    let mut valid = check(&[("authorization", &compact)]);
    valid["raw"] = json!(true);
    let mut none = check(&[("x-other", "1")]);
    none["raw"] = json!(true);
    // A value in `value` rather than `raw_value` is read there.
    let mut in_value = check(&[]);
    in_value["header_map"] = json!([["authorization", { "value": compact }]]);
    // Bytes that are not UTF-8 reach the parser as they are, and are refused by it.
    let mut not_utf8 = check(&[]);
    not_utf8["header_map"] = json!([["authorization", { "raw": "ff00" }]]);
    let answers = python(
        server.addr,
        &json!({ "checks": [valid, none, in_value, not_utf8] }),
    );
    assert_eq!(
        answers["checks"][0],
        allowed("gw1", "primary", "2026-04-22T00:44:00Z", "compact")
    );
    assert_eq!(
        answers["checks"][1],
        denied(
            "EmptyToken",
            "token: no token header in the request",
            "token"
        )
    );
    assert_eq!(answers["checks"][2], answers["checks"][0]);
    let body: Value =
        serde_json::from_str(answers["checks"][3]["denied"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "MalformedToken", "{body}");
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// The library's messages against Envoy's own protos, with no server between them: CheckRequests
/// serialized by Python's protobuf (`xds-protos`), with every other field Envoy fills set too,
/// decode here to exactly the method, path, headers and `header_map` entries (values and raw
/// bytes) they carry; the CheckResponses `ExtAuthz` makes of them parse in Python to exactly the
/// answers Envoy acts on (status, `ok_response` headers with `append: false` and
/// `append_action`, `denied_response` status, headers and body), and serialize there again to the
/// very bytes written here.
#[test]
#[cfg_attr(
    skip_grpc_venv,
    ignore = "the Python gRPC client is not installed: run `bash .ci/deps/grpc.sh`"
)]
fn every_field_read_and_written_round_trips_through_envoys_protos() {
    use apim_sas::ext_authz::pb::HeaderValue;
    use apim_sas::ext_authz::prost::Message as _;
    use apim_sas::ext_authz::ExtAuthz;
    use apim_sas::layer::{SharedVerifier, VerifyLayer};
    use apim_sas::{KeyType, Policy, Verifier};
    use std::collections::HashMap;

    let compact = day_token("gw1", "p1");
    let uid = token("gw1", "s1", Format::Uid, TimeDelta::hours(1));
    let forged = compact.replace("&202604220044&", "&202604230044&");
    let specs = json!([
        {
            "method": "POST", "path": "/orders/7?x=1&y=%20#f",
            "headers": { "authorization": compact, "x-é": "ü, \t;\"q\"", "x-empty": "" },
        },
        {
            "method": "DELETE", "path": "/",
            "header_map": [
                ["x-bin", { "raw": "00ff80c3" }],
                ["authorization", { "raw": to_hex(format!("SharedAccessSignature {uid}").as_bytes()) }],
                ["x-bin", { "raw": "" }],
                ["x-utf8", { "value": "é" }],
            ],
        },
        { "method": "PATCH", "path": "*", "headers": { "authorization": forged } },
        { "method": "", "path": "" },
    ]);
    let encoded = python(
        SocketAddr::from(([127, 0, 0, 1], 9)), // encoding only: nothing connects
        &json!({ "encode": specs }),
    );
    let requests: Vec<CheckRequest> = encoded["encode"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hex| CheckRequest::decode(from_hex(hex.as_str().unwrap()).as_slice()).unwrap())
        .collect();
    assert_eq!(requests.len(), 4);
    for (request, spec) in requests.iter().zip(specs.as_array().unwrap()) {
        let http = request
            .attributes
            .as_ref()
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
            .unwrap();
        assert_eq!(http.method, spec["method"].as_str().unwrap());
        assert_eq!(http.path, spec["path"].as_str().unwrap());
        let headers: HashMap<String, String> = spec["headers"]
            .as_object()
            .map(|map| {
                map.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(http.headers, headers);
        let entries: Vec<HeaderValue> = spec["header_map"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|entry| HeaderValue {
                        key: entry[0].as_str().unwrap().to_owned(),
                        value: entry[1]["value"].as_str().unwrap_or_default().to_owned(),
                        raw_value: from_hex(entry[1]["raw"].as_str().unwrap_or_default()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            http.header_map.as_ref().map(|m| m.headers.clone()),
            (!entries.is_empty()).then_some(entries)
        );
    }

    let mut verifier = Verifier::new(Policy::default());
    for (name, key_type) in [("p1", KeyType::Primary), ("s1", KeyType::Secondary)] {
        verifier
            .insert("gw1", key_type, &GatewayKey::new(key(name)).unwrap())
            .unwrap();
    }
    let authz = ExtAuthz::from(VerifyLayer::new(SharedVerifier::new(verifier)).with_clock(now));
    let responses: Vec<Vec<u8>> = requests
        .iter()
        .map(|request| authz.check_response(request).encode_to_vec())
        .collect();
    let hex: Vec<String> = responses.iter().map(|bytes| to_hex(bytes)).collect();
    let decoded = python(
        SocketAddr::from(([127, 0, 0, 1], 9)),
        &json!({ "decode": hex }),
    );
    let expected = [
        allowed("gw1", "primary", "2026-04-22T00:44:00Z", "compact"),
        allowed("gw1", "secondary", "2026-04-21T01:44:00Z", "uid"),
        denied(
            "SignatureMismatch",
            "signature: no key of this gateway produces this signature",
            "signature",
        ),
        denied(
            "EmptyToken",
            "token: no token header in the request",
            "token",
        ),
    ];
    let decoded = decoded["decode"].as_array().unwrap();
    assert_eq!(decoded.len(), 4);
    for ((answer, expected), hex) in decoded.iter().zip(&expected).zip(&hex) {
        assert_eq!(&answer["fields"], expected);
        assert_eq!(answer["hex"].as_str().unwrap(), hex, "not byte for byte");
    }
    // Only OK and denied responses are written (`error_response` is Envoy's newer field).
    for bytes in &responses {
        let response = CheckResponse::decode(bytes.as_slice()).unwrap();
        assert!(!matches!(
            response.http_response,
            Some(HttpResponse::ErrorResponse(_)) | None
        ));
    }
}

#[test]
#[cfg_attr(
    skip_grpc_venv,
    ignore = "the Python gRPC client is not installed: run `bash .ci/deps/grpc.sh`"
)]
fn a_custom_header_list_is_read_in_order_and_in_any_case() {
    let keys = gw_keys();
    let server = serve(&[
        "--keystore",
        &keys.arg(),
        "--header",
        "X-Apim-Token",
        "--header",
        "Authorization",
    ])
    .start();
    let p1 = day_token("gw1", "p1");
    let p2 = day_token("gw2", "p2");
    let answers = python(
        server.addr,
        &json!({ "checks": [
            check(&[("x-apim-token", &p1), ("authorization", &p2)]),
            check(&[("X-APIM-TOKEN", &p2)]),
            check(&[("authorization", &p1)]),
            check(&[("x-token", &p1)]),
        ]}),
    );
    let ids: Vec<&Value> = answers["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["ok"]["headers"][0]["value"])
        .collect();
    assert_eq!(
        ids,
        [&json!("gw1"), &json!("gw2"), &json!("gw1"), &Value::Null]
    );
    assert_eq!(
        answers["checks"][3],
        denied(
            "EmptyToken",
            "token: no token header in the request",
            "token"
        )
    );
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn client(addr: SocketAddr) -> AuthorizationClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    AuthorizationClient::new(channel)
}

pub(crate) fn check_request(headers: &[(&str, &str)]) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request {
                http: Some(attribute_context::HttpRequest {
                    method: "POST".into(),
                    path: "/api/orders".into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                    ..Default::default()
                }),
            }),
        }),
    }
}

/// The gateway id of an OK response, or the code of a denied one.
fn outcome(response: &CheckResponse) -> Result<String, String> {
    let code = response.status.as_ref().map_or(-1, |s| s.code);
    match &response.http_response {
        Some(HttpResponse::OkResponse(ok)) if code == 0 => Ok(ok
            .headers
            .first()
            .and_then(|h| h.header.as_ref())
            .map(|h| h.value.clone())
            .unwrap_or_default()),
        Some(HttpResponse::DeniedResponse(denied)) if code == 16 => {
            let body: Value = serde_json::from_str(&denied.body).unwrap();
            Err(body["error"]["code"].as_str().unwrap().to_owned())
        }
        other => panic!("unexpected response {code} {other:?}"),
    }
}

#[test]
#[cfg_attr(
    skip_grpc_venv,
    ignore = "the Python gRPC client is not installed: run `bash .ci/deps/grpc.sh`"
)]
fn health_is_not_serving_until_the_keys_are_loaded() {
    // Keys that are not there yet: a keystore read from stdin, written later.
    let mut server = serve(&["--keystore", "-"]).stdin_piped().start_unready();
    let services = json!({ "health": ["", "envoy.service.auth.v3.Authorization", "other"] });
    assert_eq!(
        python(server.addr, &services)["health"],
        json!(["NOT_SERVING", "NOT_SERVING", "NOT_FOUND"])
    );
    let good = day_token("gw1", "p1");
    let rt = runtime();
    let status = rt.block_on(async {
        client(server.addr)
            .await
            .check(check_request(&[("authorization", &good)]))
            .await
            .unwrap_err()
    });
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(status.message(), "keys not loaded yet");

    let mut stdin = server.stdin();
    stdin
        .write_all(keystore(&[("gw1", "p1", None)]).as_bytes())
        .unwrap();
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(5);
    while python(server.addr, &services)["health"] != json!(["SERVING", "SERVING", "NOT_FOUND"]) {
        assert!(
            Instant::now() < deadline,
            "never serving:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let response = rt.block_on(async {
        client(server.addr)
            .await
            .check(check_request(&[("authorization", &good)]))
            .await
            .unwrap()
            .into_inner()
    });
    assert_eq!(outcome(&response), Ok("gw1".to_owned()));
    // Any other service or method: UNIMPLEMENTED.
    let calls = python(
        server.addr,
        &json!({ "calls": [
            "/envoy.service.auth.v2.Authorization/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/envoy.service.auth.v3.Authorization/Other",
        ]}),
    );
    assert_eq!(
        calls["calls"],
        json!(["UNIMPLEMENTED", "UNIMPLEMENTED", "UNIMPLEMENTED"])
    );
}

#[test]
#[cfg_attr(
    skip_grpc_venv,
    ignore = "the Python gRPC client is not installed: run `bash .ci/deps/grpc.sh`"
)]
fn thousands_of_concurrent_checks_from_both_clients_each_get_their_verdict() {
    let keys = gw_keys();
    let server = serve(&["--keystore", &keys.arg()]).start();
    let valid = day_token("gw1", "p1");
    let forged = day_token("gw1", "nope");

    // Python: 5,000 Checks in flight at once over 4 HTTP/2 connections, 3 valid for 1 forged.
    let load = python(
        server.addr,
        &json!({ "load": {
            "checks": [
                check(&[("authorization", &valid)]),
                check(&[("authorization", &valid)]),
                check(&[("authorization", &valid)]),
                check(&[("authorization", &forged)]),
            ],
            "count": 5000,
            "channels": 4,
        }}),
    );
    assert_eq!(load["load"]["errors"], json!({}), "{load}");
    assert_eq!(load["load"]["answers"], json!({ "0": 3750, "16": 1250 }));

    // tonic: 4,000 tasks on one connection, each checking its answer.
    let rt = runtime();
    rt.block_on(async {
        let client = client(server.addr).await;
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..4000 {
            let mut client = client.clone();
            let (token, expected) = match n % 4 {
                3 => (forged.clone(), Err("SignatureMismatch".to_owned())),
                _ => (valid.clone(), Ok("gw1".to_owned())),
            };
            tasks.spawn(async move {
                let response = client
                    .check(check_request(&[("authorization", &token)]))
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(outcome(&response), expected);
            });
        }
        let mut done = 0;
        while let Some(joined) = tasks.join_next().await {
            joined.unwrap();
            done += 1;
        }
        assert_eq!(done, 4000);
    });

    // Counted as HTTP requests are: 3,750 + 3,000 valid, 1,250 + 1,000 refused.
    assert_eq!(
        server.metric(r#"apim_sas_verifications_total{result="valid"}"#),
        6750.0
    );
    assert_eq!(
        server.metric(r#"apim_sas_verifications_total{result="SignatureMismatch"}"#),
        2250.0
    );
    assert_eq!(
        server.metric("apim_sas_verification_duration_seconds_count"),
        9000.0
    );
}

#[test]
#[cfg_attr(
    skip_grpc_venv,
    ignore = "the Python gRPC client is not installed: run `bash .ci/deps/grpc.sh`"
)]
fn checks_are_counted_and_logged_as_http_requests_are() {
    let keys = gw_keys();
    let server = serve(&["--keystore", &keys.arg(), "--log-format", "json"]).start();
    let valid = day_token("gw1", "p1");
    let forged = day_token("gw1", "nope");
    let mut conn = server.conn();
    assert_eq!(conn.send(&authorized("/verify", &valid)).status, 200);
    let mut spec = check(&[("authorization", &forged)]);
    spec["path"] = json!("/api/orders/7?secret=1");
    python(
        server.addr,
        &json!({ "checks": [
            check(&[("authorization", &valid)]),
            check(&[("authorization", &valid)]),
            spec,
            check(&[]),
        ]}),
    );
    assert_eq!(
        server.metric(r#"apim_sas_verifications_total{result="valid"}"#),
        3.0
    );
    assert_eq!(
        server.metric(r#"apim_sas_verifications_total{result="SignatureMismatch"}"#),
        1.0
    );
    assert_eq!(
        server.metric(r#"apim_sas_verifications_total{result="EmptyToken"}"#),
        1.0
    );
    // One line per refusal, as for HTTP: code, target and the client request's path (no query).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let refusals: Vec<Value> = server
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["message"] == "refused")
            .collect();
        if refusals.len() == 2 {
            assert_eq!(refusals[0]["code"], "SignatureMismatch");
            assert_eq!(refusals[0]["target"], "signature");
            assert_eq!(refusals[0]["path"], "/api/orders/7");
            assert_eq!(refusals[1]["code"], "EmptyToken");
            assert_eq!(refusals[1]["path"], "/orders/7");
            break;
        }
        assert!(Instant::now() < deadline, "{}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = server.log();
    assert!(
        !log.contains(CANARY) && !log.contains(&forged[..20]),
        "{log}"
    );
}

fn generation(g: usize) -> String {
    let (current, previous) = (format!("rot{g}"), format!("rot{}", g.wrapping_sub(1)));
    keystore(&[("rot", &current, Some(&previous)), ("stable", "st", None)])
}

#[test]
fn keys_rotated_under_grpc_load_never_fail_a_check() {
    const SWAPS: usize = 8;
    let keys = Keys::new(&generation(0));
    let server = serve(&["--keystore", &keys.arg(), "--poll", "100ms"]).start();
    let tokens: Arc<Vec<String>> = Arc::new(
        (0..=SWAPS + 2)
            .map(|g| day_token("rot", &format!("rot{g}")))
            .collect(),
    );
    let stable = day_token("stable", "st");
    let current = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let checks = Arc::new(AtomicUsize::new(0));
    let rt = runtime();
    let addr = server.addr;
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (tokens, stable, current, done, checks) = (
                Arc::clone(&tokens),
                stable.clone(),
                Arc::clone(&current),
                Arc::clone(&done),
                Arc::clone(&checks),
            );
            rt.spawn(async move {
                let mut client = client(addr).await;
                let mut settled = 0;
                while !done.load(Ordering::SeqCst) {
                    // Published once generation g was seen loaded; g+1 is written only after,
                    // so this Check meets generation g or g+1, both of which hold K(g).
                    let g = current.load(Ordering::SeqCst);
                    let request = check_request(&[("authorization", &tokens[g])]);
                    // Any gRPC error (a reset, UNAVAILABLE) fails the test.
                    let response = client.check(request).await.unwrap().into_inner();
                    if current.load(Ordering::SeqCst) == g {
                        settled += 1;
                        assert_eq!(outcome(&response), Ok("rot".to_owned()), "generation {g}");
                    }
                    let request = check_request(&[("authorization", &stable)]);
                    let response = client.check(request).await.unwrap().into_inner();
                    assert_eq!(outcome(&response), Ok("stable".to_owned()));
                    if g >= 2 {
                        let request = check_request(&[("authorization", &tokens[g - 2])]);
                        let response = client.check(request).await.unwrap().into_inner();
                        assert_eq!(outcome(&response), Err("SignatureMismatch".to_owned()));
                    }
                    checks.fetch_add(3, Ordering::Relaxed);
                }
                assert!(settled > 0);
            })
        })
        .collect();

    let mut probe = server.conn();
    for g in 1..=SWAPS {
        keys.write(&generation(g));
        if g % 2 == 0 {
            server.signal("HUP");
        }
        wait_until(
            Duration::from_secs(3),
            || {
                probe
                    .send(&authorized("/verify", &tokens[g]))
                    .header("x-apim-key-type")
                    == Some("primary")
            },
            || format!("generation {g} never loaded:\n{}", server.log()),
        );
        current.store(g, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(200));
    }
    done.store(true, Ordering::SeqCst);
    rt.block_on(async {
        for client in clients {
            client.await.unwrap();
        }
    });
    let checks = checks.load(Ordering::Relaxed);
    assert!(checks > 500, "only {checks} Checks during the rotation");
    assert_eq!(
        server.metric(r#"apim_sas_keystore_reloads_total{result="error"}"#),
        0.0
    );
}

/// The fenced ```yaml blocks of a Markdown file, with their line numbers.
fn yaml_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut lines = markdown.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        if line.trim_end() == "```yaml" {
            let text: Vec<&str> = lines
                .by_ref()
                .map(|(_, l)| l)
                .take_while(|l| *l != "```")
                .collect();
            blocks.push((n + 1, text.join("\n")));
        }
    }
    blocks
}

fn at<'a>(value: &'a serde_norway::Value, path: &[&str]) -> &'a serde_norway::Value {
    let mut at = value;
    for step in path {
        at = match step.parse::<usize>() {
            Ok(i) => &at[i],
            Err(_) => &at[*step],
        };
    }
    at
}

fn text<'a>(value: &'a serde_norway::Value, path: &[&str]) -> &'a str {
    at(value, path)
        .as_str()
        .unwrap_or_else(|| panic!("no string at {path:?} in {value:?}"))
}

#[test]
fn the_ext_authz_guides_snippets_parse_and_say_what_they_must() {
    use serde::Deserialize;
    let markdown =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ext-authz.md"))
            .unwrap();
    let mut documents = Vec::new();
    for (line, block) in yaml_blocks(&markdown) {
        for document in serde_norway::Deserializer::from_str(&block) {
            let value = serde_norway::Value::deserialize(document)
                .unwrap_or_else(|e| panic!("docs/ext-authz.md line {line}: {e}"));
            documents.push(value);
        }
    }
    let kind = |kind: &str| {
        documents
            .iter()
            .filter(|d| d["kind"].as_str() == Some(kind))
            .collect::<Vec<_>>()
    };

    // Envoy: the HTTP filter in gRPC mode, v3, failing closed, to a cluster speaking HTTP/2.
    let envoy = documents
        .iter()
        .find(|d| !d["static_resources"].is_null())
        .expect("an Envoy bootstrap");
    let listener = at(envoy, &["static_resources", "listeners", "0"]);
    let manager = at(
        listener,
        &["filter_chains", "0", "filters", "0", "typed_config"],
    );
    // Which filters come before ext_authz, and what they remove, is tests/it/envoy_recipes.rs's.
    let filters = manager["http_filters"].as_sequence().unwrap();
    let authz = &filters
        .iter()
        .find(|f| {
            f["typed_config"]["@type"].as_str()
                == Some("type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz")
        })
        .expect("the ext_authz filter")["typed_config"];
    assert_eq!(text(authz, &["transport_api_version"]), "V3");
    assert_eq!(authz["failure_mode_allow"].as_bool(), Some(false));
    let cluster_name = text(authz, &["grpc_service", "envoy_grpc", "cluster_name"]);
    assert_eq!(
        text(filters.last().unwrap(), &["name"]),
        "envoy.filters.http.router"
    );
    let clusters = at(envoy, &["static_resources", "clusters"])
        .as_sequence()
        .unwrap();
    let cluster = clusters
        .iter()
        .find(|c| c["name"].as_str() == Some(cluster_name))
        .expect("the ext_authz cluster");
    assert!(
        !at(
            cluster,
            &[
                "typed_extension_protocol_options",
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config",
                "http2_protocol_options"
            ]
        )
        .is_null(),
        "the cluster must speak HTTP/2: {cluster:?}"
    );
    let port = at(
        cluster,
        &[
            "load_assignment",
            "endpoints",
            "0",
            "lb_endpoints",
            "0",
            "endpoint",
            "address",
            "socket_address",
            "port_value",
        ],
    );
    assert_eq!(port.as_u64(), Some(8089));

    // Istio: a mesh extension provider of type envoyExtAuthzGrpc, a Service whose port speaks
    // gRPC, and a CUSTOM policy naming the provider.
    let operator = kind("IstioOperator");
    let provider = at(
        operator[0],
        &["spec", "meshConfig", "extensionProviders", "0"],
    );
    let provider_name = text(provider, &["name"]);
    let grpc = &provider["envoyExtAuthzGrpc"];
    assert_eq!(grpc["port"].as_u64(), Some(8089));
    assert_eq!(grpc["failOpen"].as_bool(), Some(false));
    let service_host = text(grpc, &["service"]);
    let services = kind("Service");
    let service = services
        .iter()
        .find(|s| {
            service_host.starts_with(&format!(
                "{}.{}.",
                text(s, &["metadata", "name"]),
                text(s, &["metadata", "namespace"])
            ))
        })
        .expect("the provider's Service");
    assert_eq!(
        text(service, &["spec", "ports", "0", "appProtocol"]),
        "grpc"
    );
    assert_eq!(
        at(service, &["spec", "ports", "0", "port"]).as_u64(),
        Some(8089)
    );
    let policy = kind("AuthorizationPolicy");
    assert_eq!(text(policy[0], &["spec", "action"]), "CUSTOM");
    assert_eq!(
        text(policy[0], &["spec", "provider", "name"]),
        provider_name
    );

    // Contour: an ExtensionService over h2c, named by an HTTPProxy's TLS virtual host.
    let extension = kind("ExtensionService");
    assert_eq!(text(extension[0], &["spec", "protocol"]), "h2c");
    assert_eq!(
        at(extension[0], &["spec", "services", "0", "port"]).as_u64(),
        Some(8089)
    );
    let proxy = kind("HTTPProxy");
    let vhost = at(proxy[0], &["spec", "virtualhost"]);
    assert!(!vhost["tls"].is_null());
    assert_eq!(
        text(vhost, &["authorization", "extensionRef", "name"]),
        text(extension[0], &["metadata", "name"])
    );
    assert_eq!(
        text(vhost, &["authorization", "extensionRef", "namespace"]),
        text(extension[0], &["metadata", "namespace"])
    );
    assert_eq!(vhost["authorization"]["failOpen"].as_bool(), Some(false));

    // Envoy Gateway: a SecurityPolicy's extAuth.grpc, and the grant for its cross-namespace Service.
    let security = kind("SecurityPolicy");
    let ext_auth = at(security[0], &["spec", "extAuth"]);
    assert_eq!(ext_auth["failOpen"].as_bool(), Some(false));
    let backend = at(ext_auth, &["grpc", "backendRefs", "0"]);
    assert_eq!(backend["port"].as_u64(), Some(8089));
    let grant = kind("ReferenceGrant");
    assert_eq!(
        text(grant[0], &["metadata", "namespace"]),
        text(backend, &["namespace"])
    );
    assert_eq!(
        text(grant[0], &["spec", "from", "0", "kind"]),
        "SecurityPolicy"
    );
    assert_eq!(
        text(grant[0], &["spec", "from", "0", "namespace"]),
        text(security[0], &["metadata", "namespace"])
    );
    assert_eq!(
        text(grant[0], &["spec", "to", "0", "name"]),
        text(backend, &["name"])
    );

    // Every Kubernetes object is complete.
    for document in documents.iter().filter(|d| !d["kind"].is_null()) {
        for field in [&["apiVersion"][..], &["metadata", "name"]] {
            assert!(!text(document, field).is_empty(), "{document:?}");
        }
    }
}

#[test]
#[cfg_attr(
    skip_grpc_venv,
    ignore = "the Python gRPC client is not installed: run `bash .ci/deps/grpc.sh`"
)]
fn a_client_stalled_inside_the_http2_preface_is_closed_after_the_head_timeout() {
    let keys = gw_keys();
    let server = serve(&["--keystore", &keys.arg(), "--head-timeout", "2s"]).start();
    let mut stalled = server.conn();
    let started = Instant::now();
    // Could still be HTTP/2's preface: neither protocol's own head timeout has started.
    stalled.stream.write_all(b"PRI * HTTP/2.0\r\n").unwrap();
    assert!(
        !stalled.closed_within(Duration::from_millis(1500)),
        "closed before 2 s"
    );
    assert!(
        stalled.closed_within(Duration::from_secs(3)),
        "still open after 4.5 s"
    );
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1900), "{took:?}");
    // Meanwhile, and after, both protocols are answered.
    let good = day_token("gw1", "p1");
    assert_eq!(
        server.conn().send(&authorized("/verify", &good)).status,
        200
    );
    let answers = python(
        server.addr,
        &json!({ "checks": [check(&[("authorization", &good)])] }),
    );
    assert_eq!(answers["checks"][0]["status"]["code"], 0);
}

#[test]
fn sigterm_drains_grpc_connections_and_exits_0() {
    let keys = gw_keys();
    let mut server = serve(&["--keystore", &keys.arg(), "--drain", "5s"]).start();
    let good = day_token("gw1", "p1");
    let rt = runtime();
    let mut client = rt.block_on(client(server.addr));
    let response = rt
        .block_on(client.check(check_request(&[("authorization", &good)])))
        .unwrap()
        .into_inner();
    assert_eq!(outcome(&response), Ok("gw1".to_owned()));
    // The HTTP/2 connection stays open; SIGTERM closes it gracefully (GOAWAY), well within the
    // drain, and the process exits 0.
    let started = Instant::now();
    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(4));
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(server.log().contains("drained"), "{}", server.log());
}
