//! The tower layer (feature `tower`) driven through a real HTTP server (axum on 127.0.0.1:0) and
//! a real HTTP client (ureq): what the handler sees, what a refusal answers byte for byte, and a
//! key swap while requests run.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apim_sas::chrono::{DateTime, TimeDelta, TimeZone, Utc};
use apim_sas::layer::{GatewayIdentity, SharedVerifier, Verification, VerifyLayer};
use apim_sas::{Format, GatewayKey, KeyType, Policy, Scheme, Signer, Verifier};
use axum::extract::State;
use axum::routing::any;
use axum::{Extension, Router};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, 21, 0, 44, 0).unwrap()
}

fn key(text: &str) -> GatewayKey {
    GatewayKey::new(text).unwrap()
}

fn token(id: &str, key_text: &str, format: Format) -> String {
    Signer::new(id, &key(key_text))
        .unwrap()
        .sign(now() + TimeDelta::days(1), format)
        .unwrap()
        .to_string()
}

fn verifier(pairs: &[(&str, KeyType, &str)]) -> Verifier {
    let mut verifier = Verifier::new(Policy::default());
    for (id, key_type, text) in pairs {
        verifier.insert(id, *key_type, &key(text)).unwrap();
    }
    verifier
}

/// `reached` counts the requests that reached the handler (a refusal must never reach it).
async fn handler(
    State(reached): State<Arc<AtomicUsize>>,
    Extension(identity): Extension<GatewayIdentity>,
) -> String {
    reached.fetch_add(1, Ordering::SeqCst);
    format!(
        "{} {} {} {}",
        identity.id(),
        identity.key_type(),
        identity.format(),
        identity.expiry().to_rfc3339()
    )
}

/// Serves `layer` around `handler` on a free loopback port, in a thread of its own.
fn serve(layer: VerifyLayer) -> SocketAddr {
    serve_counting(layer, Arc::default())
}

fn serve_counting(layer: VerifyLayer, reached: Arc<AtomicUsize>) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let app = Router::new()
                .route("/", any(handler))
                .route("/{*rest}", any(handler))
                .layer(layer)
                .with_state(reached);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

struct Answer {
    status: u16,
    www_authenticate: Option<String>,
    content_type: Option<String>,
    body: String,
}

fn get(agent: &ureq::Agent, addr: SocketAddr, headers: &[(&str, &str)]) -> Answer {
    let mut request = agent.get(format!("http://{addr}/some/path?q=1"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.call().unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (www_authenticate, content_type) = (header("www-authenticate"), header("content-type"));
    Answer {
        status: response.status().as_u16(),
        www_authenticate,
        content_type,
        body: response.body_mut().read_to_string().unwrap(),
    }
}

const K1: &str = "first-sample-key";
const K2: &str = "second-sample-key";

fn gw1_layer() -> VerifyLayer {
    VerifyLayer::new(SharedVerifier::new(verifier(&[
        ("gw1", KeyType::Primary, K1),
        ("gw1", KeyType::Secondary, K2),
    ])))
    .with_clock(now)
}

#[test]
fn a_valid_token_reaches_the_handler_with_its_identity() {
    let addr = serve(gw1_layer());
    let agent = agent();
    let compact = token("gw1", K1, Format::Compact);
    let answer = get(&agent, addr, &[("Authorization", &compact)]);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "gw1 primary compact 2026-04-22T00:44:00+00:00");
    assert_eq!(answer.www_authenticate, None);

    let uid = format!("SharedAccessSignature {}", token("gw1", K2, Format::Uid));
    let answer = get(&agent, addr, &[("authorization", &uid)]);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "gw1 secondary uid 2026-04-22T00:44:00+00:00");

    // The developer portal's spelling.
    let portal = format!(
        r#"SharedAccessSignature token="{}",refresh="true""#,
        token("gw1", K1, Format::Uid)
    );
    let answer = get(&agent, addr, &[("Authorization", &portal)]);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "gw1 primary uid 2026-04-22T00:44:00+00:00");

    let scheme = Signer::new("gw1", &key(K1))
        .unwrap()
        .sign(now() + TimeDelta::days(1), Format::Compact)
        .unwrap()
        .with_scheme(Scheme::GatewayKey);
    assert_eq!(
        get(&agent, addr, &[("Authorization", &scheme)]).body,
        "gw1 primary compact 2026-04-22T00:44:00+00:00"
    );
}

fn refused(answer: &Answer, code: &str, message: &str, target: &str) {
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert_eq!(
        answer.body,
        format!(r#"{{"error":{{"code":"{code}","message":"{message}","target":"{target}"}}}}"#)
    );
    assert_eq!(
        answer.www_authenticate.as_deref(),
        Some(format!(r#"SharedAccessSignature error="{code}""#).as_str())
    );
    assert_eq!(answer.content_type.as_deref(), Some("application/json"));
}

#[test]
fn refusals_answer_401_with_the_code_and_never_reach_the_handler() {
    let reached = Arc::new(AtomicUsize::new(0));
    let addr = serve_counting(gw1_layer(), Arc::clone(&reached));
    let agent = agent();
    assert_eq!(
        get(
            &agent,
            addr,
            &[("Authorization", &token("gw1", K1, Format::Uid))]
        )
        .status,
        200
    );
    assert_eq!(reached.load(Ordering::SeqCst), 1);

    let good = token("gw1", K1, Format::Compact);
    let forged = good.replace("&202604220044&", "&202604230044&");
    refused(
        &get(&agent, addr, &[("Authorization", &forged)]),
        "SignatureMismatch",
        "signature: no key of this gateway produces this signature",
        "signature",
    );
    let other_key = token("gw1", "a-key-no-one-holds", Format::Compact);
    refused(
        &get(&agent, addr, &[("Authorization", &other_key)]),
        "SignatureMismatch",
        "signature: no key of this gateway produces this signature",
        "signature",
    );
    refused(
        &get(&agent, addr, &[]),
        "EmptyToken",
        "token: no token header in the request",
        "token",
    );
    let unknown = token("gw9", K1, Format::Compact);
    refused(
        &get(&agent, addr, &[("Authorization", &unknown)]),
        "GatewayNotExist",
        "id: no key is known for this gateway",
        "id",
    );
    refused(
        &get(&agent, addr, &[("Authorization", "Bearer abc")]),
        "MalformedToken",
        "scheme: only 'GatewayKey' and 'SharedAccessSignature' are accepted",
        "scheme",
    );
    let long = format!("GatewayKey {}", "a".repeat(1100));
    let answer = get(&agent, addr, &[("Authorization", &long)]);
    assert_eq!(answer.status, 401);
    assert!(
        answer
            .body
            .starts_with(r#"{"error":{"code":"TokenTooLong","#),
        "{}",
        answer.body
    );
    assert_eq!(
        answer.www_authenticate.as_deref(),
        Some(r#"SharedAccessSignature error="TokenTooLong""#)
    );

    let expired = Signer::new("gw1", &key(K1))
        .unwrap()
        .sign(now() - TimeDelta::minutes(2), Format::Compact)
        .unwrap()
        .to_string();
    let answer = get(&agent, addr, &[("Authorization", &expired)]);
    assert_eq!(answer.status, 401);
    assert!(
        answer
            .body
            .starts_with(r#"{"error":{"code":"TokenExpired","#),
        "{}",
        answer.body
    );

    assert_eq!(
        reached.load(Ordering::SeqCst),
        1,
        "a refusal reached the handler"
    );
}

/// Writes a raw request and reads the whole answer (the connection is closed by `Connection: close`).
fn raw(addr: SocketAddr, head: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(head).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn header_bytes_that_are_not_utf8_and_repeated_headers_are_malformed() {
    let addr = serve(gw1_layer());
    let mut head = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: GatewayKey gw1&2026\xff\r\n\r\n".to_vec();
    let answer = raw(addr, &head);
    assert!(answer.starts_with("HTTP/1.1 401 "), "{answer}");
    assert!(answer.contains("www-authenticate: SharedAccessSignature error=\"MalformedToken\"\r\n"));
    assert!(answer.ends_with(
        r#"{"error":{"code":"MalformedToken","message":"token: bytes that are not UTF-8","target":"token"}}"#
    ), "{answer}");

    let good = token("gw1", K1, Format::Compact);
    head = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {good}\r\nAuthorization: {good}\r\n\r\n"
    )
    .into_bytes();
    let answer = raw(addr, &head);
    assert!(answer.starts_with("HTTP/1.1 401 "), "{answer}");
    let body = r#"{"error":{"code":"MalformedToken","message":"token: the header is given more than once","target":"token"}}"#;
    assert!(answer.ends_with(body), "{answer}");
    assert!(
        answer.contains(&format!("content-length: {}\r\n", body.len())),
        "{answer}"
    );
}

#[test]
fn the_first_present_header_of_the_list_is_read() {
    let layer = gw1_layer().with_headers([
        http::HeaderName::from_static("x-apim-token"),
        http::header::AUTHORIZATION,
    ]);
    assert_eq!(layer.headers().len(), 2);
    let addr = serve(layer);
    let agent = agent();
    let good = token("gw1", K1, Format::Compact);
    // Only Authorization: the second of the list.
    assert_eq!(get(&agent, addr, &[("Authorization", &good)]).status, 200);
    // Both: the first of the list wins, even when the second would pass.
    refused(
        &get(
            &agent,
            addr,
            &[("X-Apim-Token", "gw1&x"), ("Authorization", &good)],
        ),
        "MalformedToken",
        "token: the compact form has three fields, id&yyyyMMddHHmm&signature",
        "token",
    );
    // Present but empty is present: EmptyToken, not a fall-through to the next header.
    let answer = get(
        &agent,
        addr,
        &[("X-Apim-Token", ""), ("Authorization", &good)],
    );
    assert_eq!(answer.status, 401);
    assert!(
        answer.body.starts_with(r#"{"error":{"code":"EmptyToken","#),
        "{}",
        answer.body
    );
}

#[test]
fn the_observer_sees_every_verification_with_its_path() {
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let nanos = Arc::new(AtomicU64::new(0));
    let (log, total) = (Arc::clone(&seen), Arc::clone(&nanos));
    let layer = gw1_layer().with_observer(move |v: &Verification<'_>| {
        let result = match v.result {
            Ok(identity) => format!("valid {}", identity.id()),
            Err(error) => format!("{} {}", error.code(), error.target()),
        };
        total.fetch_add(v.elapsed.as_nanos() as u64, Ordering::SeqCst);
        log.lock()
            .unwrap()
            .push((result, format!("{} {}", v.method, v.uri.path())));
    });
    let addr = serve(layer);
    let agent = agent();
    get(
        &agent,
        addr,
        &[("Authorization", &token("gw1", K1, Format::Uid))],
    );
    get(&agent, addr, &[]);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            ("valid gw1".to_owned(), "GET /some/path".to_owned()),
            ("EmptyToken token".to_owned(), "GET /some/path".to_owned()),
        ]
    );
    assert!(nanos.load(Ordering::SeqCst) > 0);
}

/// Generation `g` of the keys: `rot` signed by K(g) (primary) and K(g-1) (secondary), and a
/// `stable` gateway that never changes.
fn generation(g: usize) -> Verifier {
    let (current, previous) = (
        format!("rot-key-{g}"),
        format!("rot-key-{}", g.wrapping_sub(1)),
    );
    verifier(&[
        ("rot", KeyType::Primary, &current),
        ("rot", KeyType::Secondary, &previous),
        ("stable", KeyType::Primary, K1),
    ])
}

#[test]
fn keys_swapped_while_requests_run_never_fail_a_request() {
    const SWAPS: usize = 300;
    let shared = SharedVerifier::new(generation(0));
    let addr = serve(VerifyLayer::new(shared.clone()).with_clock(now));
    // Tokens of every generation, signed up front.
    let tokens: Arc<Vec<String>> = Arc::new(
        (0..=SWAPS + 2)
            .map(|g| token("rot", &format!("rot-key-{g}"), Format::Compact))
            .collect(),
    );
    let stable = token("stable", K1, Format::Uid);
    let current = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));

    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (tokens, stable, current, done) = (
                Arc::clone(&tokens),
                stable.clone(),
                Arc::clone(&current),
                Arc::clone(&done),
            );
            std::thread::spawn(move || {
                let agent = agent();
                let mut settled = 0usize;
                while !done.load(Ordering::SeqCst) {
                    // Published after the store returned: from now on every request sees
                    // generation g or a later one.
                    let g = current.load(Ordering::SeqCst);
                    let answer = get(&agent, addr, &[("Authorization", &tokens[g])]);
                    // Still g: the request saw generation g or g+1 (stored, not yet published),
                    // both of which hold K(g).
                    if current.load(Ordering::SeqCst) == g {
                        settled += 1;
                        assert_eq!(answer.status, 200, "generation {g}: {}", answer.body);
                        let key_type = answer.body.split(' ').nth(1);
                        assert!(
                            matches!(key_type, Some("primary" | "secondary")),
                            "{}",
                            answer.body
                        );
                        let ahead = get(&agent, addr, &[("Authorization", &tokens[g + 2])]);
                        if current.load(Ordering::SeqCst) == g {
                            // K(g+2) first appears in generation g+2.
                            assert_eq!(ahead.status, 401, "generation {g}, token {}", g + 2);
                        }
                    } else {
                        // A swap ran meanwhile: either answer is right, nothing else is.
                        assert!(matches!(answer.status, 200 | 401), "{}", answer.status);
                    }
                    // The gateway that never changes is never refused.
                    assert_eq!(get(&agent, addr, &[("Authorization", &stable)]).status, 200);
                    // K(g-2) is in no generation from g on.
                    if g >= 2 {
                        let answer = get(&agent, addr, &[("Authorization", &tokens[g - 2])]);
                        assert_eq!(answer.status, 401, "generation {g}, token {}", g - 2);
                        assert_eq!(
                            answer.www_authenticate.as_deref(),
                            Some(r#"SharedAccessSignature error="SignatureMismatch""#)
                        );
                    }
                }
                settled
            })
        })
        .collect();

    for g in 1..=SWAPS {
        shared.store(generation(g));
        current.store(g, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(1));
    }
    done.store(true, Ordering::SeqCst);
    let settled: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(settled > 100, "only {settled} rounds ran between swaps");
    assert_eq!(shared.snapshot().len(), 2);
}
