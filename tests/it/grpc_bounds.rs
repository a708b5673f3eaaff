//! `apim-sas serve`'s HTTP/2 port under a hostile client: the real binary on a loopback port,
//! attacked with raw HTTP/2 frames by tests/grpc/flood.py (Python's `h2`, installed by
//! `.ci/deps/grpc.sh`) while the library's tonic client (`ext_authz::pb`) and the grpcio client of
//! tests/grpc/check.py ask real Checks.
//!
//! What docs/ext-authz.md promises of the limits: streams that declare a message and never finish
//! it hold little memory however many connections open them and however they keep the connections
//! alive (PINGs, WINDOW_UPDATEs), each is answered and reset at the Check's 5 s deadline, a
//! connection that makes no stream progress gets GOAWAY and is closed, a valid Check on another
//! connection is answered meanwhile, and a `CheckRequest` over 1 MiB is a denial, not an RPC error.
//! Timings are bounds under which a stall would show, never performance checks.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use apim_sas::chrono::{DateTime, TimeDelta, Utc};
use apim_sas::ext_authz::pb::{AuthorizationClient, HttpResponse};
use apim_sas::ext_authz::tonic;
use apim_sas::{Format, GatewayKey, Signer};
use serde_json::{json, Value};

use crate::common::serve::Serve;
// The Check a client sends, and the runtime it runs on, as tests/it/grpc.rs builds them.
use crate::grpc::{check_request, runtime};

const NOW: &str = "2026-04-21T00:44:00Z";
const KEY: &str = "sample-key-do-not-use-grpc-bounds";
const CHECK: &str = "/envoy.service.auth.v3.Authorization/Check";
/// The largest `CheckRequest` serve reads (docs/ext-authz.md).
const MAX_CHECK: usize = 1024 * 1024;
/// The streams serve allows on one HTTP/2 connection at once (docs/ext-authz.md).
const MAX_STREAMS: u64 = 100;
/// How long a Check may take to send its message (docs/ext-authz.md).
const DEADLINE: Duration = Duration::from_secs(5);
/// What the attack may add to serve's memory.
const GROWTH_KIB: u64 = 64 * 1024;
/// How long a valid Check may take while serve is attacked.
const ANSWERED_WITHIN: Duration = Duration::from_secs(2);
/// Added to every deadline before a stall is called one: a loaded 2-core CI machine.
const MARGIN: f64 = 10.0;

const TOO_LARGE: &str = "token: the CheckRequest is over 1 MiB, the most this service reads";
const LATE: &str = "token: the CheckRequest did not arrive within 5 s";
const OVER_BUDGET: &str =
    "token: the CheckRequest was not read: too many unfinished requests are buffered";

/// HTTP/2's error codes, as flood.py reports them.
const NO_ERROR: &str = "0";
const REFUSED_STREAM: &str = "7";

fn token(key: &str) -> String {
    let now = DateTime::parse_from_rfc3339(NOW)
        .unwrap()
        .with_timezone(&Utc);
    Signer::new("gw1", &GatewayKey::new(key).unwrap())
        .unwrap()
        .sign(now + TimeDelta::days(1), Format::Compact)
        .unwrap()
        .to_string()
}

/// `apim-sas serve --keystore … --listen 127.0.0.1:0 --now NOW ARGS`, with a keystore of gateway
/// `gw1`, once `/readyz` answers.
fn start(args: &[&str]) -> Serve {
    Serve::command()
        .now(NOW)
        .keystore_text(&json!({ "gw1": { "primary": KEY } }).to_string())
        .keep_lines(20_000)
        .args(args)
        .start()
}

/// A valid Check on a connection of its own (tonic's client): how long it took, connecting
/// included, after checking that it was let through.
fn valid_check(server: &Serve, rt: &tokio::runtime::Runtime) -> Duration {
    let started = Instant::now();
    let response = rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = AuthorizationClient::new(channel);
        client
            .check(check_request(&[("authorization", &token(KEY))]))
            .await
            .unwrap()
            .into_inner()
    });
    let took = started.elapsed();
    assert_eq!(response.status.map(|s| s.code), Some(0));
    assert!(
        matches!(response.http_response, Some(HttpResponse::OkResponse(_))),
        "not let through"
    );
    took
}

/// The venv .ci/deps/grpc.sh makes, with `h2` in it (a venv made before h2 was pinned lacks it).
fn venv_python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/grpc-venv/bin/python");
    let h2 = python.exists()
        && Command::new(&python)
            .args(["-c", "import h2.connection"])
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        h2,
        "the Python clients (grpcio, xds-protos, h2) are not installed at {}: run \
         `bash .ci/deps/grpc.sh` (what .ci/run does before `cargo test`)",
        python.display()
    );
    python
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/grpc")
        .join(name)
}

/// tests/grpc/flood.py, started with `spec`; see [`Flood::report`]. Killed (by its own id) when
/// dropped, should a test fail before its report.
struct Flood {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Flood {
    fn start(server: &Serve, spec: &Value) -> Flood {
        let mut spec = spec.clone();
        spec["pid"] = json!(server.pid());
        let mut child = Command::new(venv_python())
            .arg(script("flood.py"))
            .arg(server.addr.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(spec.to_string().as_bytes())
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Flood { child, stdout }
    }

    /// Waits until every stream is opened and its bytes sent: `false` if the script ended first.
    fn holding(&mut self) -> bool {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim() == "holding"
    }

    /// The script's report (its docstring says what is in it).
    fn report(&mut self) -> Value {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.stdout, &mut rest).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "flood.py failed: {rest}");
        let last = rest.lines().rfind(|l| l.starts_with('{')).unwrap_or("");
        serde_json::from_str(last).unwrap_or_else(|e| panic!("flood.py's report {rest:?}: {e}"))
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn error_body(message: &str) -> String {
    format!(r#"{{"error":{{"code":"MalformedToken","message":"{message}","target":"token"}}}}"#)
}

/// A header as Envoy will apply it: overwritten, in both the old and the new field.
fn overwritten(key: &str, value: &str) -> Value {
    json!({
        "key": key, "value": value, "raw_value": "", "append": false,
        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD", "keep_empty_value": false
    })
}

/// The `MalformedToken` refusal with `message`, as check.py (and flood.py) report a
/// `CheckResponse`: the denial every refused token gets.
fn denied(message: &str) -> Value {
    json!({
        "status": { "code": 16, "message": message },
        "http_response": "denied_response",
        "dynamic_metadata": false,
        "denied": {
            "status": 401,
            "headers": [
                overwritten("www-authenticate", r#"SharedAccessSignature error="MalformedToken""#),
                overwritten("content-type", "application/json"),
            ],
            "body": error_body(message),
        }
    })
}

/// A gRPC answer as flood.py reports it: HTTP 200, grpc-status 0, that CheckResponse.
fn answered(check: Value, count: u64) -> Value {
    json!({
        "status": "200", "grpc_status": "0", "grpc_message": null, "check": check, "count": count
    })
}

/// Seconds, as flood.py reports them.
fn secs(value: &Value) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("not seconds: {value}"))
}

#[test]
#[cfg_attr(
    skip_grpc_venv,
    ignore = "the Python gRPC client is not installed: run `bash .ci/deps/grpc.sh`"
)]
fn checks_that_declare_a_message_and_send_none_of_it_are_reset_at_the_deadline() {
    let server = start(&[]);
    let rt = runtime();
    valid_check(&server, &rt);
    let baseline = server.rss_kib();

    // 6 connections × 200 streams, each declaring a 1 MiB message and sending none of it, kept
    // alive with PINGs and WINDOW_UPDATEs.
    let mut flood = Flood::start(
        &server,
        &json!({ "connections": 6, "streams": 200, "path": CHECK, "declare": MAX_CHECK,
                 "send": 0, "seconds": 60, "until": "reset" }),
    );
    assert!(flood.holding(), "flood.py never held its streams");
    let held = server.rss_kib();
    let took = valid_check(&server, &rt);
    let report = flood.report();
    eprintln!(
        "serve's RSS: {baseline} KiB before, {held} KiB holding, {} KiB at most; the valid \
         Check took {took:?}; {report}",
        report["peak_rss_kib"]
    );
    let peak = held.max(report["peak_rss_kib"].as_u64().unwrap_or(0));
    assert!(
        peak <= baseline + GROWTH_KIB,
        "serve grew from {baseline} KiB to {peak} KiB"
    );
    assert!(took < ANSWERED_WITHIN, "the valid Check took {took:?}");

    // 100 streams a connection; the rest refused.
    assert_eq!(report["max_concurrent_streams"], MAX_STREAMS);
    assert_eq!(report["opened"], 1200);
    assert_eq!(report["refused"], 600);
    // Each held stream answered at its deadline with the denial, and reset: never left open.
    assert_eq!(report["answers"], json!([answered(denied(LATE), 600)]));
    assert_eq!(
        report["resets"],
        json!({ NO_ERROR: 600, REFUSED_STREAM: 600 })
    );
    assert_eq!(report["unreset"], 0);
    let ended = &report["ended_after"];
    assert!(
        secs(&ended[0]) >= DEADLINE.as_secs_f64() - 0.5,
        "a stream ended before the deadline: {ended}"
    );
    assert!(
        secs(&ended[1]) <= DEADLINE.as_secs_f64() + MARGIN,
        "a stream outlived the deadline: {ended}"
    );
    // No GOAWAY: these connections are within the default idle timeout.
    assert_eq!(report["goaways"], json!({}));
    // Every denial counted and logged as a refusal is, beside the two valid Checks.
    assert_eq!(
        server.metric_or_zero(r#"apim_sas_verifications_total{result="MalformedToken"}"#),
        600.0
    );
    assert_eq!(
        server.metric_or_zero(r#"apim_sas_verifications_total{result="valid"}"#),
        2.0
    );
}

#[test]
#[cfg_attr(
    skip_grpc_venv,
    ignore = "the Python gRPC client is not installed: run `bash .ci/deps/grpc.sh`"
)]
fn six_connections_of_unfinished_checks_hold_at_most_64_mib() {
    let server = start(&[]);
    let rt = runtime();
    valid_check(&server, &rt);
    let baseline = server.rss_kib();

    // 6 connections × 200 streams, each sending all of a 1 MiB message but its last byte, the
    // connections kept alive with PINGs and WINDOW_UPDATEs.
    let mut flood = Flood::start(
        &server,
        &json!({ "connections": 6, "streams": 200, "path": CHECK, "declare": MAX_CHECK,
                 "send": MAX_CHECK - 1, "seconds": 120, "until": "reset" }),
    );
    assert!(flood.holding(), "flood.py never held its streams");
    let held = server.rss_kib();
    let took = valid_check(&server, &rt);
    let report = flood.report();
    eprintln!(
        "serve's RSS: {baseline} KiB before, {held} KiB holding, {} KiB at most; the valid \
         Check took {took:?}; {report}",
        report["peak_rss_kib"]
    );
    let peak = held.max(report["peak_rss_kib"].as_u64().unwrap_or(0));
    assert!(
        peak <= baseline + GROWTH_KIB,
        "serve grew from {baseline} KiB to {peak} KiB"
    );
    assert!(took < ANSWERED_WITHIN, "the valid Check took {took:?}");

    // 100 streams a connection, the rest refused. A connection's unfinished messages hold 4 MiB
    // at most: some streams are held to the deadline (at least one a connection: a stream is
    // denied only while others hold the rest), the others denied as soon as they would hold
    // more; every one reset.
    assert_eq!(report["max_concurrent_streams"], MAX_STREAMS);
    assert_eq!(report["opened"], 1200);
    assert_eq!(report["refused"], 600);
    let answers = report["answers"].as_array().unwrap();
    let count = |message: &str| {
        answers
            .iter()
            .find(|a| *a == &answered(denied(message), a["count"].as_u64().unwrap_or(0)))
            .map_or(0, |a| a["count"].as_u64().unwrap())
    };
    let (late, over) = (count(LATE), count(OVER_BUDGET));
    assert_eq!(late + over, 600, "{answers:?}");
    assert!(
        late >= 6 && over > 0,
        "{late} held to the deadline, {over} denied at once"
    );
    assert_eq!(
        report["resets"],
        json!({ NO_ERROR: 600, REFUSED_STREAM: 600 })
    );
    assert_eq!(report["unreset"], 0);
    assert!(secs(&report["ended_after"][1]) <= DEADLINE.as_secs_f64() + MARGIN);
    assert_eq!(
        server.metric_or_zero(r#"apim_sas_verifications_total{result="MalformedToken"}"#),
        600.0
    );
}

#[test]
#[cfg_attr(
    skip_grpc_venv,
    ignore = "the Python gRPC client is not installed: run `bash .ci/deps/grpc.sh`"
)]
fn a_connection_without_stream_progress_gets_goaway_whatever_it_pings() {
    let idle = Duration::from_secs(2);
    let server = start(&["--idle-timeout", "2s"]);
    // Two connections that only PING and WINDOW_UPDATE: one with no stream at all, one with ten
    // streams that never finish their message.
    let mut pings = Flood::start(
        &server,
        &json!({ "connections": 1, "streams": 0, "path": CHECK, "declare": MAX_CHECK,
                 "seconds": 40, "until": "closed" }),
    );
    let mut stalled = Flood::start(
        &server,
        &json!({ "connections": 1, "streams": 10, "path": CHECK, "declare": MAX_CHECK,
                 "seconds": 40, "until": "closed" }),
    );
    assert!(pings.holding() && stalled.holding());
    let (pings, stalled) = (pings.report(), stalled.report());
    eprintln!("{pings}\n{stalled}");
    // GOAWAY (NO_ERROR: graceful) after the idle timeout, then closed within the Check's deadline
    // and a second, at most: PINGs and WINDOW_UPDATEs are not progress.
    let close_by = 2.0 * idle.as_secs_f64() + DEADLINE.as_secs_f64() + 1.0 + MARGIN;
    for report in [&pings, &stalled] {
        assert!(
            report["goaways"][NO_ERROR].as_u64().unwrap_or(0) >= 1,
            "{report}"
        );
        assert_eq!(report["closed"], 1, "{report}");
        assert!(
            secs(&report["goaway_after"][0]) >= idle.as_secs_f64() - 0.5,
            "{report}"
        );
        assert!(secs(&report["closed_after"][1]) <= close_by, "{report}");
    }
    // The stalled streams were answered at their deadline before the connection closed.
    assert_eq!(stalled["answers"], json!([answered(denied(LATE), 10)]));
    assert_eq!(stalled["unreset"], 0);
    // And the port still answers.
    valid_check(&server, &runtime());
}

#[test]
#[cfg_attr(
    skip_grpc_venv,
    ignore = "the Python gRPC client is not installed: run `bash .ci/deps/grpc.sh`"
)]
fn an_oversized_check_request_is_denied_not_failed() {
    let server = start(&[]);
    // Declared over 1 MiB: denied as soon as the length is read, and the stream reset.
    let declared = Flood::start(
        &server,
        &json!({ "connections": 1, "streams": 1, "path": CHECK, "declare": MAX_CHECK + 1,
                 "send": 0, "seconds": 20, "until": "reset" }),
    )
    .report();
    assert_eq!(declared["answers"], json!([answered(denied(TOO_LARGE), 1)]));
    assert_eq!(declared["resets"], json!({ NO_ERROR: 1 }));
    assert!(secs(&declared["ended_after"][1]) < DEADLINE.as_secs_f64());

    // Really sent by grpcio: a valid token beside a header that takes the message over 1 MiB,
    // and one that keeps it just under.
    let valid = token(KEY);
    let spec = |filler: usize| {
        json!({ "headers": { "authorization": valid, "x-filler": "f".repeat(filler) },
                "method": "GET", "path": "/orders/7" })
    };
    let mut child = Command::new(venv_python())
        .arg(script("check.py"))
        .arg(server.addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let checks = json!({ "checks": [spec(MAX_CHECK), spec(MAX_CHECK - 4096)] });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(checks.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "check.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answers["checks"][0], denied(TOO_LARGE));
    assert_eq!(
        answers["checks"][1]["status"],
        json!({ "code": 0, "message": "" })
    );

    // A compressed message (Envoy compresses none) is an RPC error, as tonic answers it.
    let compressed = Flood::start(
        &server,
        &json!({ "connections": 1, "streams": 1, "path": CHECK, "flag": 1, "declare": 10,
                 "send": 10, "seconds": 20, "until": "reset" }),
    )
    .report();
    assert_eq!(
        compressed["answers"][0]["grpc_status"], "13",
        "{compressed}"
    );
    assert_eq!(compressed["answers"][0]["check"], Value::Null);

    // Counted and logged as refusals are; the valid one as valid.
    assert_eq!(
        server.metric_or_zero(r#"apim_sas_verifications_total{result="MalformedToken"}"#),
        2.0
    );
    assert_eq!(
        server.metric_or_zero(r#"apim_sas_verifications_total{result="valid"}"#),
        1.0
    );
    // The client's request unknown, its path is logged as `/`.
    let line = r#"refused code="MalformedToken" target="token" path="/""#;
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.log().matches(line).count() < 2 {
        assert!(Instant::now() < deadline, "{}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}
