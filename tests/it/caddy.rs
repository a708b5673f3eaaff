//! Debian's caddy (2.6) in front of `apim-sas serve`, configured by `examples/Caddyfile` as it
//! stands, with free ports put in place of `:8080` (Caddy), `127.0.0.1:8089` (serve) and
//! `127.0.0.1:9000` (the API): `forward_auth` lets valid tokens through with exactly the four
//! identity headers serve verified, and answers every refusal with serve's 401 byte for byte; a
//! client's own `X-Apim-*` headers, in any case, with underscores, repeated, never reach the API,
//! nor can the client strip the verified ones with `Connection`; serve stopped, hung or answering
//! anything but 2xx keeps the API unreached; under concurrent load every request is checked by
//! serve itself (Caddy's forward_auth can send checks to the API over a kept connection); keys
//! rotate under load without a failed request. The API behind Caddy is a small server
//! (tests/it/common/upstream.rs) that records every request it gets.
//!
//! Caddy must be at /usr/bin/caddy (`.ci/deps/caddy.sh` installs Debian's). Without it these tests
//! fail under CI and are ignored elsewhere, saying so (build.rs: `skip_caddy`).

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apim_sas::chrono::{DateTime, TimeDelta, Utc};
use apim_sas::Format;
use serde_json::Value;

use crate::common::http::{request, Conn, Reply};
use crate::common::markdown;
use crate::common::process::{free_port, Running};
use crate::common::serve::{write_private, Serve};
use crate::common::tokens::TestKeys;
use crate::common::upstream::{read_request, Seen, Upstream};
use crate::common::wait_until;

const CADDY: &str = "/usr/bin/caddy";
const EXAMPLE: &str = "examples/Caddyfile";
const NOW: &str = "2026-04-21T00:44:00Z";
/// The expiry of every token `token()` signs for a day.
const EXPIRY: &str = "2026-04-22T00:44:00Z";
/// In every key these tests write; never in a log line.
const CANARY: &str = "CANARY-caddy-5e2c";
/// What serve's 200 names, as each value `X-Apim-*` carries it.
const IDENTITY_HEADERS: [&str; 4] = [
    "x-apim-gateway-id",
    "x-apim-key-type",
    "x-apim-token-expiry",
    "x-apim-token-format",
];

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(NOW)
        .unwrap()
        .with_timezone(&Utc)
}

const KEYS: TestKeys = TestKeys::new(CANARY, "");

/// A token for gateway `id` signed with `KEYS.key(key_name)`, expiring `ttl` after NOW.
fn token(id: &str, key_name: &str, format: Format, ttl: TimeDelta) -> String {
    KEYS.sign(id, key_name, format, now() + ttl)
}

fn day_token(id: &str, key_name: &str) -> String {
    token(id, key_name, Format::Compact, TimeDelta::days(1))
}

/// `{"id": {"primary": KEYS.key(p), "secondary": KEYS.key(s)}, …}`.
fn keystore(gateways: &[(&str, &str, Option<&str>)]) -> String {
    KEYS.keystore(gateways)
}

/// The two gateways most tests use: gw1 with both keys, gw2 with its primary.
fn two_gateways() -> String {
    keystore(&[("gw1", "p1", Some("s1")), ("gw2", "p2", None)])
}

/// The four identity headers as the API must receive them, sorted by name.
fn identity(id: &str, key_type: &str, format: &str) -> Vec<(String, String)> {
    IDENTITY_HEADERS
        .iter()
        .zip([id, key_type, EXPIRY, format])
        .map(|(n, v)| ((*n).to_owned(), v.to_owned()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The parts: serve, the API, Caddy.

/// A stand-in for serve that answers `GET /verify` with the status the client asked for in
/// `X-Stub-Status`, and all four identity headers (claiming gateway `stub`) whatever the status:
/// what Caddy does with an answer serve never gives.
fn start_stub() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let asked = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&asked);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let count = Arc::clone(&count);
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                while let Some(request) = read_request(&mut reader) {
                    count.fetch_add(1, Ordering::SeqCst);
                    let status = request
                        .headers
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case("x-stub-status"))
                        .map_or("200", |(_, v)| v.as_str())
                        .to_owned();
                    // A 204 has no body, and says no length.
                    let (length, body) = match status.as_str() {
                        "204" => (String::new(), String::new()),
                        _ => {
                            let body = format!("stub {status}");
                            (format!("Content-Length: {}\r\n", body.len()), body)
                        }
                    };
                    let answer = format!(
                        "HTTP/1.1 {status} Stub\r\nX-Apim-Gateway-Id: stub\r\n\
                         X-Apim-Key-Type: primary\r\nX-Apim-Token-Expiry: {EXPIRY}\r\n\
                         X-Apim-Token-Format: compact\r\nLocation: /elsewhere\r\n\
                         Content-Type: text/plain\r\n{length}\r\n{body}"
                    );
                    if writer.write_all(answer.as_bytes()).is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, asked)
}

/// Debian's caddy running examples/Caddyfile with free ports; stopped (SIGTERM, then SIGKILL,
/// by its own id) when dropped: `Running`.
struct Caddy {
    _process: Running,
    addr: SocketAddr,
    log: PathBuf,
}

impl Caddy {
    /// Caddy in front of the auth service at `auth` and the API at `api`, once it accepts
    /// connections. Its state (autosaved configuration, storage) stays in `dir`.
    fn start(dir: &Path, auth: SocketAddr, api: SocketAddr) -> Caddy {
        assert!(
            Path::new(CADDY).exists(),
            "{CADDY} is missing: .ci/deps/caddy.sh installs it (apt-get install -y caddy); \
             elsewhere, rebuild the tests (touch build.rs) and the Caddy tests are ignored instead"
        );
        let port = free_port();
        let example = std::fs::read_to_string(EXAMPLE).unwrap();
        for placeholder in [":8080", "127.0.0.1:8089", "127.0.0.1:9000"] {
            assert_eq!(example.matches(placeholder).count(), 1, "{placeholder}");
        }
        let config = example
            .replace(":8080", &format!(":{port}"))
            .replace("127.0.0.1:8089", &auth.to_string())
            .replace("127.0.0.1:9000", &api.to_string());
        let path = dir.join("Caddyfile");
        std::fs::write(&path, config).unwrap();
        let log = dir.join("caddy.log");
        let child = Command::new(CADDY)
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&path)
            .env("HOME", dir)
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .env("XDG_DATA_HOME", dir.join("data"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("caddy.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut process = Running(child);
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        process.await_listening(addr, || std::fs::read_to_string(&log).unwrap_or_default());
        Caddy {
            _process: process,
            addr,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn conn(&self) -> Conn {
        Conn::open(self.addr)
    }

    /// One GET through Caddy on a fresh connection.
    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.conn().send(&request("GET", path, headers))
    }
}

/// serve with `keys`, the API and Caddy, each on a free port.
struct Stack {
    // Dropped in this order: Caddy, then serve, then the directory.
    caddy: Caddy,
    serve: Serve,
    api: Upstream,
    keystore: PathBuf,
    _dir: tempfile::TempDir,
}

impl Stack {
    fn start(keys: &str) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let keystore = dir.path().join("gateways.json");
        write_private(&keystore, keys);
        let serve = Serve::command().now(NOW).keystore(&keystore).start();
        let api = Upstream::listing_apim();
        let caddy = Caddy::start(dir.path(), serve.addr, api.addr);
        Stack {
            caddy,
            serve,
            api,
            keystore,
            _dir: dir,
        }
    }

    /// serve's and Caddy's logs, for failure messages; neither may hold a key.
    fn logs(&self) -> String {
        let logs = format!("serve:\n{}\ncaddy:\n{}", self.serve.log(), self.caddy.log());
        assert!(!logs.contains(CANARY), "a key in a log:\n{logs}");
        logs
    }
}

/// The headers of an answer as a set to compare, without those each hop writes for itself.
fn own_headers(reply: &Reply) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = reply
        .headers
        .iter()
        .filter(|(n, _)| !matches!(n.as_str(), "date" | "server" | "connection"))
        .cloned()
        .collect();
    headers.sort();
    headers
}

// ---------------------------------------------------------------------------------------------
// Verdicts.

#[test]
#[cfg_attr(
    skip_caddy,
    ignore = "caddy is not installed: bash .ci/deps/caddy.sh (apt-get install -y caddy)"
)]
fn valid_tokens_reach_the_api_with_exactly_the_four_verified_headers() {
    let stack = Stack::start(&two_gateways());
    let compact = day_token("gw1", "p1");
    let secondary_uid = token("gw1", "s1", Format::Uid, TimeDelta::days(1));
    let gw2 = day_token("gw2", "p2");
    let portal_uid = format!(
        "SharedAccessSignature token=\"{}\",refresh=\"true\"",
        token("gw1", "p1", Format::Uid, TimeDelta::days(1))
    );
    // What each case is, its Authorization header, the identity the API must get.
    type Case<'a> = (&'a str, String, Vec<(String, String)>);
    let cases: [Case; 5] = [
        (
            "bare, primary",
            compact.clone(),
            identity("gw1", "primary", "compact"),
        ),
        (
            "SharedAccessSignature, secondary, uid",
            format!("SharedAccessSignature {secondary_uid}"),
            identity("gw1", "secondary", "uid"),
        ),
        (
            "GatewayKey, a second gateway",
            format!("GatewayKey {gw2}"),
            identity("gw2", "primary", "compact"),
        ),
        (
            "the portal's form",
            portal_uid,
            identity("gw1", "primary", "uid"),
        ),
        (
            "GatewayKey, primary",
            format!("GatewayKey {compact}"),
            identity("gw1", "primary", "compact"),
        ),
    ];
    let mut conn = stack.caddy.conn();
    for (n, (what, authorization, expected)) in cases.iter().enumerate() {
        let reply = conn.send(&request(
            "GET",
            "/orders/7?x=1&y=%22",
            &[("Authorization", authorization)],
        ));
        assert_eq!(reply.status, 200, "{what}: {reply:?}\n{}", stack.logs());
        let seen = stack.api.seen();
        assert_eq!(seen.len(), n + 1, "{what}");
        let api = &seen[n];
        assert_eq!(api.line, "GET /orders/7?x=1&y=%22 HTTP/1.1", "{what}");
        assert_eq!(&api.apim(), expected, "{what}");
        // The API's echo of what it got is the client's answer: exactly the four.
        let echoed: String = expected
            .iter()
            .map(|(n, v)| format!("{n}: {v}\n"))
            .collect();
        assert_eq!(reply.text(), echoed, "{what}");
        // The token itself still reaches the API, once.
        let tokens: Vec<&str> = api
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(tokens, [authorization.as_str()], "{what}");
    }

    // A request with a body: serve is asked with GET and no body, the API gets the body whole.
    let body = "{\"order\": 7}";
    let mut bytes = request(
        "POST",
        "/orders",
        &[
            ("Authorization", &compact),
            ("Content-Type", "application/json"),
            ("Content-Length", &body.len().to_string()),
        ],
    );
    bytes.extend_from_slice(body.as_bytes());
    let reply = conn.send(&bytes);
    assert_eq!(reply.status, 200, "{}", stack.logs());
    let api = stack.api.seen().pop().unwrap();
    assert_eq!(api.line, "POST /orders HTTP/1.1");
    assert_eq!(api.body, body.as_bytes());
    assert_eq!(api.apim(), identity("gw1", "primary", "compact"));
    // No admin endpoint: nothing else on the machine shares localhost:2019 with it.
    assert!(stack.logs().contains("admin endpoint disabled"));
}

#[test]
#[cfg_attr(
    skip_caddy,
    ignore = "caddy is not installed: bash .ci/deps/caddy.sh (apt-get install -y caddy)"
)]
fn every_refusal_reaches_the_client_as_serve_sent_it_and_never_the_api() {
    let stack = Stack::start(&two_gateways());
    let valid = day_token("gw1", "p1");
    let forged = valid.replace("&202604220044&", "&202604230044&");
    let expired = token("gw1", "p1", Format::Compact, TimeDelta::hours(-1));
    let unknown = day_token("gw9", "p1");
    let secondary_missing = token("gw2", "s2", Format::Uid, TimeDelta::days(1));
    let too_long = "a".repeat(1100);
    let cases: [(&str, Vec<(&str, &str)>); 8] = [
        ("SignatureMismatch", vec![("Authorization", &forged)]),
        ("TokenExpired", vec![("Authorization", &expired)]),
        ("EmptyToken", vec![]),
        ("EmptyToken", vec![("Authorization", "")]),
        (
            "MalformedToken",
            vec![("Authorization", &valid), ("Authorization", &valid)],
        ),
        ("GatewayNotExist", vec![("Authorization", &unknown)]),
        (
            "SignatureMismatch",
            vec![("Authorization", &secondary_missing)],
        ),
        ("TokenTooLong", vec![("Authorization", &too_long)]),
    ];
    for (code, headers) in &cases {
        let reply = stack.caddy.get("/orders/7", headers);
        let direct = stack.serve.verify(headers);
        assert_eq!(reply.status, 401, "{code}: {reply:?}\n{}", stack.logs());
        assert_eq!(direct.status, 401, "{code}: {direct:?}");
        assert_eq!(
            reply.header("www-authenticate"),
            Some(format!("SharedAccessSignature error=\"{code}\"").as_str()),
            "{code}"
        );
        assert_eq!(reply.header("content-type"), Some("application/json"));
        let body: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(body["error"]["code"], *code, "{}", reply.text());
        // Byte for byte what serve answers itself: status, headers, body.
        assert_eq!(reply.body, direct.body, "{code}");
        assert_eq!(own_headers(&reply), own_headers(&direct), "{code}");
    }
    assert_eq!(
        stack.caddy.get("/", &[]).text(),
        r#"{"error":{"code":"EmptyToken","message":"token: no token header in the request","target":"token"}}"#
    );
    assert_eq!(stack.api.count(), 0, "a refused request reached the API");
}

#[test]
#[cfg_attr(
    skip_caddy,
    ignore = "caddy is not installed: bash .ci/deps/caddy.sh (apt-get install -y caddy)"
)]
fn a_clients_own_identity_headers_never_reach_the_api_in_any_spelling() {
    let stack = Stack::start(&two_gateways());
    let valid = day_token("gw2", "p2");
    let forged = valid.replace("&202604220044&", "&202604230044&");
    // Each a name a backend could take for an identity header: any case, underscores (the same
    // name to CGI, WSGI and PHP), the two mixed, sent more than once, an X-Apim name of its own.
    let spoofed: [(&str, &str); 12] = [
        ("X-Apim-Gateway-Id", "spoofed"),
        ("x-apim-key-type", "secondary"),
        ("X-APIM-TOKEN-EXPIRY", "2099-01-01T00:00:00Z"),
        ("X-Apim-Token-Format", "uid"),
        ("X-Apim-Token-Format", "uid"),
        ("X_Apim_Gateway_Id", "spoofed"),
        ("x_apim_key_type", "secondary"),
        ("X_APIM_TOKEN_EXPIRY", "2099-01-01T00:00:00Z"),
        ("X-Apim_Token_Format", "uid"),
        ("X_Apim-Gateway-Id", "spoofed"),
        ("x-apim-gateway-id", "spoofed-again"),
        ("X-Apim-Subscription", "gold"),
    ];
    let with = |authorization: &str| -> Vec<(String, String)> {
        std::iter::once(("Authorization".to_owned(), authorization.to_owned()))
            .chain(
                spoofed
                    .iter()
                    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
            )
            .collect()
    };
    let send = |headers: &[(String, String)]| -> Reply {
        let refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        stack.caddy.get("/orders/7", &refs)
    };

    // Valid: the API gets serve's four, nothing of the client's.
    let reply = send(&with(&valid));
    assert_eq!(reply.status, 200, "{reply:?}\n{}", stack.logs());
    assert_eq!(stack.api.count(), 1);
    assert_eq!(
        stack.api.seen()[0].apim(),
        identity("gw2", "primary", "compact")
    );

    // Refused, with a forged token or none: serve's 401, whatever identity the client claims.
    let reply = send(&with(&forged));
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.header("www-authenticate"),
        Some(r#"SharedAccessSignature error="SignatureMismatch""#)
    );
    let reply = send(&with(""));
    assert_eq!(
        reply.header("www-authenticate"),
        Some(r#"SharedAccessSignature error="EmptyToken""#)
    );
    assert_eq!(stack.api.count(), 1, "a refused request reached the API");

    // A client that names identity headers in Connection (asking each hop to drop them) would
    // have Caddy drop the verified ones on their way to the API: refused, in any spelling.
    for connection in [
        vec!["X-Apim-Gateway-Id"],
        vec!["keep-alive, x-apim-key-type"],
        vec!["keep-alive", "X_APIM_TOKEN_FORMAT"],
        vec!["x-apim-token-expiry,x-apim-gateway-id"],
    ] {
        let mut headers = vec![("Authorization", valid.as_str())];
        headers.extend(connection.iter().map(|v| ("Connection", *v)));
        let reply = stack.caddy.get("/orders/7", &headers);
        assert_eq!(reply.status, 400, "{connection:?}: {reply:?}");
        assert_eq!(stack.api.count(), 1, "{connection:?} reached the API");
    }
    // Connection's ordinary values pass.
    let reply = stack.caddy.get(
        "/orders/7",
        &[("Authorization", &valid), ("Connection", "keep-alive")],
    );
    assert_eq!(reply.status, 200);
    assert_eq!(
        stack.api.seen()[1].apim(),
        identity("gw2", "primary", "compact")
    );
}

#[test]
#[cfg_attr(
    skip_caddy,
    ignore = "caddy is not installed: bash .ci/deps/caddy.sh (apt-get install -y caddy)"
)]
fn requests_caddy_accepts_are_passed_verified_or_refused() {
    // What serve reads is the token header: the client's query is left out of the request to
    // serve (`uri /verify?`), and its cookies (`header_up -Cookie`), so that neither a `"` in the
    // query nor 20 KB of cookies turn a valid request into a 400 or a 431.
    let stack = Stack::start(&two_gateways());
    let valid = day_token("gw1", "p1");
    let cookies: Vec<String> = (0..6)
        .map(|i| format!("c{i}={}", "v".repeat(4000)))
        .collect();
    let cookie_headers: Vec<(&str, &str)> =
        cookies.iter().map(|c| ("Cookie", c.as_str())).collect();
    // What each request is, its target, the target as the API gets it, its other headers.
    type Case<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)]);
    let cases: [Case; 4] = [
        (
            "a \" in the query",
            "/orders?q=\"7\"",
            "/orders?q=\"7\"",
            &[],
        ),
        // Caddy (Go) escapes what a path may not hold as it is.
        (
            "a backtick in the path",
            "/orders/`7`",
            "/orders/%607%60",
            &[],
        ),
        (
            "an escaped NUL and 0xFF",
            "/orders/%00?x=%ff",
            "/orders/%00?x=%ff",
            &[],
        ),
        (
            "20 KB of cookies",
            "/orders/7",
            "/orders/7",
            &cookie_headers,
        ),
    ];
    for (what, path, reaches, extra) in cases {
        let before = stack.api.count();
        let mut headers = vec![("Authorization", valid.as_str())];
        headers.extend_from_slice(extra);
        let reply = stack.caddy.get(path, &headers);
        assert_eq!(reply.status, 200, "{what}: {reply:?}\n{}", stack.logs());
        let seen = stack.api.seen();
        assert_eq!(seen.len(), before + 1, "{what}");
        assert_eq!(
            seen[before].line,
            format!("GET {reaches} HTTP/1.1"),
            "{what}"
        );
        assert_eq!(
            seen[before].apim(),
            identity("gw1", "primary", "compact"),
            "{what}"
        );
        let reply = stack.caddy.get(path, extra);
        assert_eq!(reply.status, 401, "{what}");
        assert_eq!(stack.api.count(), before + 1, "{what}");
    }

    // More header lines than serve reads (256): serve's 431 goes back to the client; the API is
    // never asked.
    let pads: Vec<(String, String)> = (0..300)
        .map(|i| (format!("X-Pad-{i}"), i.to_string()))
        .collect();
    let mut headers = vec![("Authorization", valid.as_str())];
    headers.extend(pads.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let before = stack.api.count();
    let reply = stack.caddy.get("/orders/7", &headers);
    assert_eq!(reply.status, 431, "{reply:?}");
    assert_eq!(stack.api.count(), before);
}

// ---------------------------------------------------------------------------------------------
// Failing closed.

#[test]
#[cfg_attr(
    skip_caddy,
    ignore = "caddy is not installed: bash .ci/deps/caddy.sh (apt-get install -y caddy)"
)]
fn serve_hung_or_stopped_refuses_and_the_api_is_never_reached() {
    let stack = Stack::start(&two_gateways());
    let valid = day_token("gw1", "p1");
    let authorized = [("Authorization", valid.as_str())];
    assert_eq!(stack.caddy.get("/", &authorized).status, 200);

    // Hung (SIGSTOP: its port still accepts connections): 504 after the transport's
    // response_header_timeout of 2 s, on a kept-alive connection to serve and on a new one.
    stack.serve.signal("STOP");
    for _ in 0..2 {
        let started = Instant::now();
        let mut conn = stack.caddy.conn();
        conn.stream
            .set_read_timeout(Some(Duration::from_secs(6)))
            .unwrap();
        let reply = conn
            .try_send(&request("GET", "/", &authorized))
            .unwrap_or_else(|e| panic!("no answer within 6 s with serve hung ({e}): a timeout?"));
        let took = started.elapsed();
        assert_eq!(reply.status, 504, "{reply:?}\n{}", stack.logs());
        assert!(
            took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
            "{took:?}"
        );
        assert!(reply.body.is_empty());
    }
    assert_eq!(stack.api.count(), 1, "the API was reached with serve hung");

    // Continued, it answers again.
    stack.serve.signal("CONT");
    assert_eq!(stack.caddy.get("/", &authorized).status, 200);
    assert_eq!(stack.api.count(), 2);

    // Stopped (its port closed): 502 at once.
    stack.serve.signal("KILL");
    for headers in [&authorized[..], &[]] {
        let started = Instant::now();
        let reply = stack.caddy.get("/", headers);
        assert_eq!(reply.status, 502, "{reply:?}\n{}", stack.logs());
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(reply.body.is_empty());
    }
    assert_eq!(
        stack.api.count(),
        2,
        "the API was reached with serve stopped"
    );
    let log = stack.caddy.log();
    assert!(log.contains("timeout awaiting response headers"), "{log}");
    assert!(log.contains("connection refused"), "{log}");
}

#[test]
#[cfg_attr(
    skip_caddy,
    ignore = "caddy is not installed: bash .ci/deps/caddy.sh (apt-get install -y caddy)"
)]
fn only_a_2xx_from_the_auth_service_lets_a_request_through() {
    // serve answers only 200 or 401 for a token, and 5xx for its own faults; a stand-in shows
    // what Caddy does with every other answer: returns it to the client, identity headers and
    // all, never passing the request on.
    let dir = tempfile::tempdir().unwrap();
    let (stub, asked) = start_stub();
    let api = Upstream::listing_apim();
    let caddy = Caddy::start(dir.path(), stub, api.addr);
    for status in ["500", "502", "503", "504", "403", "404", "302"] {
        let before = asked.load(Ordering::SeqCst);
        let reply = caddy.get("/orders/7", &[("X-Stub-Status", status)]);
        assert_eq!(asked.load(Ordering::SeqCst), before + 1, "{status}");
        assert_eq!(
            reply.status.to_string(),
            status,
            "{reply:?}\n{}",
            caddy.log()
        );
        assert_eq!(reply.text(), format!("stub {status}"));
        assert_eq!(reply.header("x-apim-gateway-id"), Some("stub"));
        assert_eq!(api.count(), 0, "{status} let the request through");
    }
    // The same stand-in's 200 and 204 let it through, with its headers: the 2xx is the verdict.
    for status in ["200", "204"] {
        let reply = caddy.get("/orders/7", &[("X-Stub-Status", status)]);
        assert_eq!(reply.status, 200, "{status}: {reply:?}");
    }
    assert_eq!(api.count(), 2);
    assert_eq!(api.seen()[1].apim(), identity("stub", "primary", "compact"));
}

#[test]
#[cfg_attr(
    skip_caddy,
    ignore = "caddy is not installed: bash .ci/deps/caddy.sh (apt-get install -y caddy)"
)]
fn under_concurrency_every_request_is_checked_by_serve_itself() {
    // Caddy (2.5.1 to at least 2.11.4) keeps the address a proxy dials in the request's
    // variables, which forward_auth's proxy and the API's share: a connection to serve still
    // being dialled when forward_auth's check was answered on another one is dialled to the API
    // instead, and kept among serve's idle connections. Later checks sent on it ask the API, and
    // its 200 lets the request through, with the placeholders' text as its identity. Seen here
    // with `keepalive 60s` in one run of four; with `keepalive off` (the example's) no check
    // waits for a connection it did not dial. Every reply is checked, and so is every request
    // the API gets.
    const CLIENTS: usize = 12;
    const FOR: Duration = Duration::from_millis(1500);
    let stack = Stack::start(&two_gateways());
    let valid = day_token("gw2", "p2");
    let caddy = stack.caddy.addr;
    let until = Instant::now() + FOR;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let valid = valid.clone();
            std::thread::spawn(move || {
                let mut conn = Conn::open(caddy);
                let mut passed = 0;
                for n in 0.. {
                    if Instant::now() > until {
                        break;
                    }
                    // Every other request has no token.
                    let reply = if (i + n) % 2 == 0 {
                        conn.send(&request("GET", "/orders/7", &[]))
                    } else {
                        passed += 1;
                        conn.send(&request("GET", "/orders/7", &[("Authorization", &valid)]))
                    };
                    let expected = if (i + n) % 2 == 0 { 401 } else { 200 };
                    if reply.status != expected {
                        return Err(format!("client {i}, request {n}: {reply:?}"));
                    }
                }
                Ok(passed)
            })
        })
        .collect();
    let results: Vec<Result<usize, String>> =
        clients.into_iter().map(|c| c.join().unwrap()).collect();
    let passed: usize = results.iter().filter_map(|r| r.as_ref().ok()).sum();
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    let seen = stack.api.seen();
    let strays: Vec<&Seen> = seen
        .iter()
        .filter(|s| {
            s.line != "GET /orders/7 HTTP/1.1" || s.apim() != identity("gw2", "primary", "compact")
        })
        .collect();
    assert!(
        failures.is_empty() && strays.is_empty(),
        "{} requests answered wrongly, e.g. {:?}; the API got {} it should not have, e.g. {:?}",
        failures.len(),
        failures.first(),
        strays.len(),
        strays.first()
    );
    assert_eq!(seen.len(), passed);
    assert!(passed >= 300, "only {passed} requests");
}

// ---------------------------------------------------------------------------------------------
// Rotation.

/// Generation g of a rotating gateway: `rot{g}` primary, `rot{g-1}` secondary; and a stable one.
fn generation(g: usize) -> String {
    let (current, previous) = (format!("rot{g}"), format!("rot{}", g.wrapping_sub(1)));
    keystore(&[("rot", &current, Some(&previous)), ("stable", "st", None)])
}

#[test]
#[cfg_attr(
    skip_caddy,
    ignore = "caddy is not installed: bash .ci/deps/caddy.sh (apt-get install -y caddy)"
)]
fn keys_rotated_under_load_never_fail_a_request() {
    const SWAPS: usize = 4;
    const CLIENTS: usize = 6;
    let stack = Stack::start(&generation(0));
    let tokens: Arc<Vec<String>> = Arc::new(
        (0..=SWAPS)
            .map(|g| day_token("rot", &format!("rot{g}")))
            .collect(),
    );
    let stable = day_token("stable", "st");
    let current = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicUsize::new(0));
    let caddy = stack.caddy.addr;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (tokens, stable, current, done, requests) = (
                Arc::clone(&tokens),
                stable.clone(),
                Arc::clone(&current),
                Arc::clone(&done),
                Arc::clone(&requests),
            );
            std::thread::spawn(move || {
                let mut conn = Conn::open(caddy);
                let mut settled = 0;
                while !done.load(Ordering::SeqCst) {
                    // Published once generation g was seen loaded; g+1 is written only after,
                    // so this request meets generation g or g+1, both of which hold rot{g}.
                    let g = current.load(Ordering::SeqCst);
                    let reply = conn.send(&request("GET", "/", &[("Authorization", &tokens[g])]));
                    assert_eq!(reply.status, 200, "generation {g}: {reply:?}");
                    if current.load(Ordering::SeqCst) == g {
                        settled += 1;
                        assert!(reply.text().contains("x-apim-gateway-id: rot\n"));
                    }
                    let reply = conn.send(&request("GET", "/", &[("Authorization", &stable)]));
                    assert_eq!(reply.status, 200, "stable: {reply:?}");
                    assert!(reply.text().contains("x-apim-gateway-id: stable\n"));
                    if g >= 2 {
                        let reply =
                            conn.send(&request("GET", "/", &[("Authorization", &tokens[g - 2])]));
                        assert_eq!(
                            reply.status,
                            401,
                            "generation {} after {g}: {reply:?}",
                            g - 2
                        );
                    }
                    requests.fetch_add(3, Ordering::Relaxed);
                }
                assert!(settled > 0);
            })
        })
        .collect();

    for g in 1..=SWAPS {
        write_private(&stack.keystore, &generation(g));
        // serve sees the new file by itself within 2 s (no SIGHUP).
        wait_until(
            Duration::from_secs(2),
            || {
                stack
                    .serve
                    .verify(&[("Authorization", &tokens[g])])
                    .header("x-apim-key-type")
                    == Some("primary")
            },
            || format!("generation {g} never loaded:\n{}", stack.logs()),
        );
        current.store(g, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(150));
    }
    done.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().expect("a request failed during rotation");
    }
    let requests = requests.load(Ordering::Relaxed);
    assert!(requests >= 300, "only {requests} requests under load");
    // The API got valid requests only, each with serve's verdict.
    for seen in stack.api.seen() {
        let apim = seen.apim();
        assert!(
            seen.line == "GET / HTTP/1.1"
                && apim.len() == 4
                && ["rot", "stable"].contains(&apim[0].1.as_str()),
            "{seen:?}"
        );
    }
    // One reload per change of the file.
    let reloads = stack
        .serve
        .log()
        .lines()
        .filter(|l| l.contains("keys reloaded"))
        .count();
    assert_eq!(reloads, SWAPS, "{}", stack.logs());
}

// ---------------------------------------------------------------------------------------------
// The file itself, and the guide.

#[test]
#[cfg_attr(
    skip_caddy,
    ignore = "caddy is not installed: bash .ci/deps/caddy.sh (apt-get install -y caddy)"
)]
fn the_example_is_as_caddy_fmt_writes_it() {
    // Otherwise every `caddy run` warns that the input is not formatted.
    let out = Command::new(CADDY).args(["fmt", EXAMPLE]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let formatted = String::from_utf8(out.stdout).unwrap();
    let example = std::fs::read_to_string(EXAMPLE).unwrap();
    let first = formatted
        .lines()
        .zip(example.lines())
        .position(|(a, b)| a != b);
    assert!(
        formatted == example,
        "caddy fmt rewrites {EXAMPLE} from its line {}: {:?}",
        first.map_or(
            formatted.lines().count().min(example.lines().count()),
            |n| n
        ) + 1,
        first.map(|n| formatted.lines().nth(n))
    );
}

#[test]
fn forward_auth_dials_a_connection_of_its_own_for_every_check() {
    // What under_concurrency_every_request_is_checked_by_serve_itself catches only when the
    // scheduling goes wrong, said of the file: forward_auth keeps no connection to serve.
    let example = std::fs::read_to_string(EXAMPLE).unwrap();
    let lines = directives(&example);
    let start = lines
        .iter()
        .position(|l| l.starts_with("forward_auth "))
        .expect("a forward_auth block");
    let mut depth = 0;
    let mut block = Vec::new();
    for line in &lines[start..] {
        depth += line.matches('{').count();
        depth -= line.matches('}').count();
        block.push(line.as_str());
        if depth == 0 {
            break;
        }
    }
    let transport = block
        .iter()
        .position(|l| *l == "transport http {")
        .expect("forward_auth's transport");
    for needed in [
        "keepalive off",
        "response_header_timeout 2s",
        "dial_timeout 1s",
    ] {
        assert!(
            block[transport..].contains(&needed),
            "forward_auth's transport lacks {needed:?}: {block:?}"
        );
    }
}

/// A Caddyfile's directives: each line without its comment and surrounding blanks, blank lines
/// left out.
fn directives(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap().trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn the_guides_caddyfile_is_the_example() {
    let blocks = markdown::blocks_in("caddyfile");
    assert_eq!(blocks.len(), 1, "one Caddyfile in the guides");
    assert_eq!(blocks[0].file, "docs/serve.md");
    let example = std::fs::read_to_string(EXAMPLE).unwrap();
    assert_eq!(
        directives(&blocks[0].text),
        directives(&example),
        "{} differs from {EXAMPLE} (comments aside)",
        blocks[0].at()
    );
    let guide = markdown::document("docs/serve.md");
    assert!(guide.contains("(../examples/Caddyfile)"));
}
