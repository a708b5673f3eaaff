//! Debian's nginx in front of `apim-sas serve`, configured by `examples/nginx.conf` (free ports
//! put in place of its own): `auth_request` lets a valid token through with the identity apim-sas
//! verified reaching the API behind, and answers a forged or missing token with 401 and
//! apim-sas's `WWW-Authenticate` challenge. Requests nginx accepts but apim-sas would refuse to
//! parse (a `"` in the query, a backtick or a raw 0xFF byte in the path, 300 headers, 20 KB of
//! cookies) are never a 500: the subrequest sends apim-sas a fixed path and the token header
//! alone. A client's own `X-Apim-*` headers never reach the API. The guides' nginx lines are the
//! example files'; and the sidecar image (`examples/serve.Dockerfile`, checked as text: there is
//! no Docker here) is what docs/serve.md's sidecar runs: apim-sas alone, as a non-root user.
//!
//! nginx must be at /usr/sbin/nginx (`.ci/run` installs it: `apt-get install -y nginx`). Without
//! it the nginx tests fail under CI and are ignored elsewhere, saying so (build.rs:
//! `skip_nginx`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use apim_sas::chrono::{DateTime, TimeDelta, Utc};
use apim_sas::{Format, GatewayKey, Signer};

use crate::common::dockerfile::instructions;
use crate::common::markdown;
use crate::common::process::{free_port, Running};
use crate::common::serve::{write_private, Serve};
use crate::common::upstream::{Seen, Upstream};

const NGINX: &str = "/usr/sbin/nginx";
const NOW: &str = "2026-04-21T00:44:00Z";
const KEY: &str = "nginx-test-sample-key";

/// What apim-sas's 200 answer says of the token `token()` signs, as the API must receive it.
const IDENTITY: [(&str, &str); 4] = [
    ("x-apim-gateway-id", "gw1"),
    ("x-apim-key-type", "primary"),
    ("x-apim-token-expiry", "2026-04-22T00:44:00Z"),
    ("x-apim-token-format", "compact"),
];

/// How many headers of `seen` have a name that starts with `prefix` (lower case), in any case.
fn count(seen: &Seen, prefix: &str) -> usize {
    seen.headers
        .iter()
        .filter(|(n, _)| n.to_ascii_lowercase().starts_with(prefix))
        .count()
}

/// An answer: status, lower-cased headers, body (lossily decoded).
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Raw bytes sent on a fresh connection, the answer read to its end.
fn send(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// A GET request's bytes: the target as given (any byte), then the headers.
fn request(target: &[u8], headers: &[(&str, &str)]) -> Vec<u8> {
    let mut bytes = b"GET ".to_vec();
    bytes.extend_from_slice(target);
    bytes.extend_from_slice(b" HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n");
    for (name, value) in headers {
        bytes.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    bytes.extend_from_slice(b"\r\n");
    bytes
}

fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    send(addr, &request(path.as_bytes(), headers))
}

/// A token for gw1 valid for a day from `NOW`.
fn token() -> String {
    let now = DateTime::parse_from_rfc3339(NOW)
        .unwrap()
        .with_timezone(&Utc);
    Signer::new("gw1", &GatewayKey::new(KEY).unwrap())
        .unwrap()
        .sign(now + TimeDelta::days(1), Format::Compact)
        .unwrap()
        .to_string()
}

/// serve, the API and nginx (with examples/nginx.conf), each on a free port.
struct Stack {
    nginx: SocketAddr,
    api: Upstream,
    error_log: PathBuf,
    // Dropped in this order: nginx, then serve, then the directory.
    _nginx: Running,
    serve: Serve,
    _dir: tempfile::TempDir,
}

impl Stack {
    /// The stack; nginx must be installed (build.rs found it, or the test is ignored).
    fn start() -> Stack {
        assert!(
            Path::new(NGINX).exists(),
            "{NGINX} is missing: .ci/run installs it with apt-get install -y nginx; elsewhere, \
             rebuild the tests (touch build.rs) and the nginx tests are ignored instead"
        );
        let dir = tempfile::tempdir().unwrap();
        let keystore = dir.path().join("keystore.json");
        write_private(&keystore, &format!(r#"{{"gw1": {{"primary": "{KEY}"}}}}"#));
        let serve = Serve::command().now(NOW).keystore(&keystore).start();
        let api = Upstream::listing_apim();

        // examples/nginx.conf, with free ports in place of 8080 (nginx), 8089 (serve), 9000 (API).
        let nginx_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let example = std::fs::read_to_string("examples/nginx.conf").unwrap();
        for placeholder in ["127.0.0.1:8080", "127.0.0.1:8089", "127.0.0.1:9000"] {
            assert_eq!(example.matches(placeholder).count(), 1, "{placeholder}");
        }
        let conf = example
            .replace("127.0.0.1:8080", &nginx_addr.to_string())
            .replace("127.0.0.1:8089", &serve.addr.to_string())
            .replace("127.0.0.1:9000", &api.addr.to_string());
        let prefix = dir.path().join("nginx");
        std::fs::create_dir_all(prefix.join("logs")).unwrap();
        std::fs::write(prefix.join("nginx.conf"), conf).unwrap();
        let error_log = prefix.join("error.log");
        let mut nginx = Running(
            Command::new(NGINX)
                .arg("-p")
                .arg(&prefix)
                .arg("-c")
                .arg(prefix.join("nginx.conf"))
                .arg("-e")
                .arg(&error_log)
                .arg("-g")
                .arg(format!(
                    "daemon off; pid {};",
                    prefix.join("nginx.pid").display()
                ))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        nginx.await_listening(nginx_addr, || {
            std::fs::read_to_string(&error_log).unwrap_or_default()
        });
        Stack {
            nginx: nginx_addr,
            api,
            error_log,
            _nginx: nginx,
            serve,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.error_log).unwrap_or_default()
    }

    fn seen(&self) -> Vec<Seen> {
        self.api.seen()
    }
}

fn identity() -> Vec<(String, String)> {
    let mut identity: Vec<(String, String)> = IDENTITY
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    identity.sort();
    identity
}

#[test]
#[cfg_attr(
    skip_nginx,
    ignore = "nginx is not installed: apt-get install -y nginx"
)]
fn nginx_auth_request_lets_valid_tokens_through_with_the_gateway_id() {
    let stack = Stack::start();
    let token = token();

    // Valid: the API answers, and sees the identity apim-sas verified, not the client's claim.
    let answer = get(
        stack.nginx,
        "/orders/7?x=1",
        &[
            ("Authorization", &format!("GatewayKey {token}")),
            ("X-Apim-Gateway-Id", "spoofed"),
        ],
    );
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, stack.log());
    let seen = stack.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].line, "GET /orders/7?x=1 HTTP/1.0");
    assert_eq!(seen[0].apim(), identity());

    // Forged and missing: 401 from nginx with apim-sas's challenge; the API never asked.
    let forged = token.replace("&202604220044&", "&202604230044&");
    let answer = get(
        stack.nginx,
        "/orders/7",
        &[("Authorization", &forged), ("X-Apim-Gateway-Id", "gw1")],
    );
    assert_eq!(answer.status, 401, "{}", stack.log());
    assert_eq!(
        answer.header("www-authenticate"),
        Some(r#"SharedAccessSignature error="SignatureMismatch""#)
    );
    let answer = get(stack.nginx, "/", &[]);
    assert_eq!(answer.status, 401);
    assert_eq!(
        answer.header("www-authenticate"),
        Some(r#"SharedAccessSignature error="EmptyToken""#)
    );
    assert_eq!(stack.seen().len(), 1);

    // apim-sas counted what nginx asked.
    let metrics = get(stack.serve.addr, "/metrics", &[]).body;
    for line in [
        r#"apim_sas_verifications_total{result="valid"} 1"#,
        r#"apim_sas_verifications_total{result="SignatureMismatch"} 1"#,
        r#"apim_sas_verifications_total{result="EmptyToken"} 1"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in:\n{metrics}"
        );
    }
}

#[test]
#[cfg_attr(
    skip_nginx,
    ignore = "nginx is not installed: apt-get install -y nginx"
)]
fn requests_nginx_accepts_are_passed_or_refused_never_a_500() {
    let stack = Stack::start();
    let authorization = format!("GatewayKey {}", token());
    let pads: Vec<(String, String)> = (0..300)
        .map(|i| (format!("X-Pad-{i}"), i.to_string()))
        .collect();
    // 20 KiB of cookies in lines of 4 KB: within nginx's default large_client_header_buffers
    // (4 buffers of 8k, a line at most 8k), over apim-sas's 16 KiB head.
    let cookies: Vec<(String, String)> = (0..6)
        .map(|i| ("Cookie".to_owned(), format!("c{i}={}", "v".repeat(4000))))
        .collect();
    let cookie_bytes: usize = cookies.iter().map(|(_, v)| v.len()).sum();
    assert!(cookie_bytes >= 20 * 1024);
    // What each request is, its target (raw bytes), its headers besides the token's.
    type Case<'a> = (&'a str, &'a [u8], &'a [(String, String)]);
    let cases: [Case; 5] = [
        ("a \" in the query", b"/orders?q=\"7\"", &[]),
        ("a backtick in the path", b"/orders/`7`", &[]),
        ("a raw 0xFF byte in the path", b"/orders/\xff7", &[]),
        ("300 small headers", b"/orders/7", &pads),
        ("20 KB of cookies", b"/orders/7", &cookies),
    ];
    for (what, target, extra) in cases {
        let extra: Vec<(&str, &str)> = extra
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let before = stack.seen().len();

        // With a valid token: passed to the API, intact, with the identity.
        let with: Vec<(&str, &str)> = [("Authorization", authorization.as_str())]
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        let answer = send(stack.nginx, &request(target, &with));
        assert_eq!(
            answer.status,
            200,
            "{what}: {}\n{}",
            answer.body,
            stack.log()
        );
        let seen = stack.seen();
        assert_eq!(seen.len(), before + 1, "{what}");
        let api = &seen[before];
        let mut line = b"GET ".to_vec();
        line.extend_from_slice(target);
        line.extend_from_slice(b" HTTP/1.0");
        assert_eq!(api.line, String::from_utf8_lossy(&line), "{what}");
        assert_eq!(api.apim(), identity(), "{what}");
        let pads = extra
            .iter()
            .filter(|(n, _)| n.starts_with("X-Pad-"))
            .count();
        assert_eq!(count(api, "x-pad-"), pads, "{what}");
        let cookies_sent: usize = extra
            .iter()
            .filter(|(n, _)| *n == "Cookie")
            .map(|(_, v)| v.len())
            .sum();
        let cookies_seen: usize = api
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
            .map(|(_, v)| v.len())
            .sum();
        assert_eq!(cookies_seen, cookies_sent, "{what}");

        // Without one: 401 with apim-sas's challenge, the API never asked.
        let answer = send(stack.nginx, &request(target, &extra));
        assert_eq!(
            answer.status,
            401,
            "{what}: {}\n{}",
            answer.body,
            stack.log()
        );
        assert_eq!(
            answer.header("www-authenticate"),
            Some(r#"SharedAccessSignature error="EmptyToken""#),
            "{what}"
        );
        assert_eq!(stack.seen().len(), before + 1, "{what}");
    }

    // A control byte in the token header is not HTTP, but nginx lets it through: refused as a
    // malformed token (apim-sas would answer it 400, a 500 from nginx).
    for byte in ["\x01", "\x1f", "\x7f"] {
        let value = format!("GatewayKey{byte}{}", token());
        let answer = get(stack.nginx, "/orders/7", &[("Authorization", &value)]);
        assert_eq!(answer.status, 401, "{byte:?}: {}", stack.log());
        assert_eq!(
            answer.header("www-authenticate"),
            Some(r#"SharedAccessSignature error="MalformedToken""#)
        );
    }

    let log = stack.log();
    assert!(!log.contains("unexpected status"), "{log}");
}

#[test]
#[cfg_attr(
    skip_nginx,
    ignore = "nginx is not installed: apt-get install -y nginx"
)]
fn a_clients_own_x_apim_headers_never_reach_the_api() {
    let stack = Stack::start();
    let authorization = format!("GatewayKey {}", token());
    let spoofed: [(&str, &str); 8] = [
        ("X-Apim-Gateway-Id", "spoofed"),
        ("x-apim-key-type", "secondary"),
        ("X-APIM-TOKEN-EXPIRY", "2099-01-01T00:00:00Z"),
        ("X-Apim-Token-Format", "uid"),
        ("X-Apim-Token-Format", "uid"),
        ("X_Apim_Gateway_Id", "spoofed"),
        ("X_Apim_Key_Type", "secondary"),
        ("X_Apim_Token_Format", "uid"),
    ];
    let with: Vec<(&str, &str)> = [("Authorization", authorization.as_str())]
        .into_iter()
        .chain(spoofed)
        .collect();
    let answer = get(stack.nginx, "/orders/7", &with);
    assert_eq!(answer.status, 200, "{}", stack.log());
    // The API echoes every X-Apim-* header it got: apim-sas's four, nothing of the client's.
    let expected: String = identity()
        .iter()
        .map(|(n, v)| format!("{n}: {v}\n"))
        .collect();
    assert_eq!(answer.body, expected);
    assert_eq!(stack.seen()[0].apim(), identity());

    // Without a token: refused, whatever identity the client claims.
    let answer = get(stack.nginx, "/orders/7", &spoofed);
    assert_eq!(answer.status, 401);
    assert_eq!(stack.seen().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// The README and the guides: their nginx lines come from examples/nginx.conf and
// examples/nginx-module.conf, their sidecar runs the image examples/serve.Dockerfile builds.

const SIDECAR_IMAGE: &str = "registry.example.com/apim-sas:0.1.0";

/// The text of the documents' fenced blocks of one language.
fn blocks(language: &str) -> Vec<String> {
    markdown::blocks_in(language)
        .into_iter()
        .map(|b| b.text)
        .collect()
}

/// A configuration line without its comment and surrounding blanks.
fn code(line: &str) -> &str {
    line.split('#').next().unwrap().trim()
}

#[test]
fn the_guides_nginx_lines_are_those_of_the_examples() {
    // auth_request to serve (examples/nginx.conf, run by this file) in docs/serve.md, and the
    // module's (examples/nginx-module.conf, run by nginx/tests/docs.rs) in docs/nginx.md. One
    // block shows the `return` pitfall on purpose (nginx/tests/module.rs holds nginx to it).
    let nginx = blocks("nginx");
    let (pitfall, nginx): (Vec<&String>, Vec<&String>) = nginx
        .iter()
        .partition(|block| block.contains("answered before any token is read"));
    assert_eq!(pitfall.len(), 1, "the return pitfall");
    let pitfall: Vec<&str> = pitfall[0].lines().map(code).collect();
    assert!(
        pitfall.contains(&"apim_sas on;") && pitfall.iter().any(|l| l.starts_with("return 200")),
        "{pitfall:?}"
    );
    let (serve, module): (Vec<&String>, Vec<&String>) = nginx
        .into_iter()
        .partition(|block| block.contains("auth_request"));
    assert_eq!(serve.len(), 1, "one auth_request block");
    assert!(!module.is_empty(), "no module block");
    let checked = std::iter::once((serve[0], "examples/nginx.conf"))
        .chain(module.iter().map(|b| (*b, "examples/nginx-module.conf")));
    for (block, example) in checked {
        let conf = std::fs::read_to_string(example).unwrap();
        let conf: Vec<&str> = conf.lines().map(code).collect();
        for line in block.lines().map(code).filter(|l| !l.is_empty()) {
            assert!(
                conf.contains(&line),
                "the guides' nginx line {line:?} is not in {example}"
            );
        }
    }
    for needed in [
        "proxy_pass http://apim_sas/verify;",
        "proxy_pass_request_headers off;",
    ] {
        assert!(serve[0].lines().any(|l| code(l) == needed), "{needed}");
    }
    assert!(module
        .iter()
        .any(|b| b.lines().any(|l| code(l) == "apim_sas on;")));
    // Traefik's labels send the token header alone and copy all four headers.
    let readme = markdown::all_text();
    assert!(readme.contains("forwardauth.authRequestHeaders=Authorization\n"));
    let copied = format!(
        "forwardauth.authResponseHeaders={}\n",
        ["Gateway-Id", "Key-Type", "Token-Expiry", "Token-Format"]
            .map(|h| format!("X-Apim-{h}"))
            .join(",")
    );
    assert!(readme.contains(&copied), "{copied}");
}

#[test]
fn the_sidecar_image_runs_apim_sas_alone_as_a_non_root_user() {
    let dockerfile = std::fs::read_to_string("examples/serve.Dockerfile").unwrap();
    let ignore = std::fs::read_to_string("examples/serve.Dockerfile.dockerignore").unwrap();
    let stages: Vec<Vec<(String, String)>> =
        instructions(&dockerfile)
            .into_iter()
            .fold(Vec::new(), |mut stages, instruction| {
                if instruction.0 == "FROM" {
                    stages.push(Vec::new());
                }
                stages
                    .last_mut()
                    .expect("the Dockerfile starts with FROM")
                    .push(instruction);
                stages
            });
    assert_eq!(stages.len(), 2, "a build stage and the final stage");
    let (build, last) = (&stages[0], &stages[1]);
    assert_eq!(build[0].1, "rust:1-bookworm AS build");

    // The build stage copies what exists and what the ignore file lets into the context.
    for (keyword, rest) in build {
        if keyword == "COPY" {
            let words: Vec<&str> = rest.split_whitespace().collect();
            for source in &words[..words.len() - 1] {
                assert!(Path::new(source).exists(), "COPY of missing {source}");
                let top = source.split('/').next().unwrap();
                assert!(
                    ignore
                        .lines()
                        .any(|l| l.trim_start_matches('!').trim_end_matches('/') == top),
                    "{source} is excluded by examples/serve.Dockerfile.dockerignore"
                );
            }
        }
    }
    assert!(build.contains(&(
        "RUN".to_owned(),
        "cargo install --locked --path . --root /out".to_owned()
    )));

    // The final stage: distroless (no shell, so no RUN), the binary alone, a non-root user, and
    // apim-sas as the entrypoint.
    assert_eq!(last[0].1, "gcr.io/distroless/cc-debian12:nonroot");
    let of = |keyword: &str| -> Vec<&str> {
        last.iter()
            .filter(|(k, _)| k == keyword)
            .map(|(_, rest)| rest.as_str())
            .collect()
    };
    assert_eq!(
        of("COPY"),
        ["--from=build /out/bin/apim-sas /usr/local/bin/apim-sas"]
    );
    assert!(of("RUN").is_empty() && of("ADD").is_empty());
    let entrypoint: Vec<String> = serde_json::from_str(of("ENTRYPOINT")[0]).unwrap();
    assert_eq!(entrypoint, ["apim-sas"]);
    let user = of("USER");
    assert_eq!(user.len(), 1);
    let ids: Vec<u32> = user[0]
        .split(':')
        .map(|id| id.parse().expect("a numeric USER"))
        .collect();
    assert!(ids.len() == 2 && ids.iter().all(|&id| id != 0), "{user:?}");

    // One tag: the guides and the Dockerfile build the image the sidecar runs.
    let readme = markdown::all_text();
    let build_line = format!("docker build -f examples/serve.Dockerfile -t {SIDECAR_IMAGE} .");
    assert!(readme.contains(&build_line), "no guide says: {build_line}");
    assert!(
        dockerfile.contains(&build_line),
        "the Dockerfile lacks: {build_line}"
    );
    let repository = SIDECAR_IMAGE.rsplit_once(':').unwrap().0;
    for (at, _) in readme.match_indices(&format!("{repository}:")) {
        assert!(
            readme[at..].starts_with(SIDECAR_IMAGE),
            "another tag: {}",
            &readme[at..at + 50]
        );
    }

    // The sidecar: that image, apim-sas's arguments only, as the image's user, able to read the
    // keys (the pod's fsGroup and group-readable files), within 64Mi.
    let fragment = blocks("yaml")
        .into_iter()
        .filter_map(|b| serde_norway::from_str::<serde_norway::Value>(&b).ok())
        .find(|v| {
            v["containers"]
                .as_sequence()
                .is_some_and(|cs| cs.iter().any(|c| c["name"].as_str() == Some("apim-sas")))
        })
        .expect("the sidecar's YAML in docs/serve.md");
    let sidecar = fragment["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str() == Some("apim-sas"))
        .unwrap();
    assert_eq!(sidecar["image"].as_str(), Some(SIDECAR_IMAGE));
    assert!(
        sidecar.get("command").is_none(),
        "the entrypoint is apim-sas"
    );
    assert_eq!(sidecar["args"][0].as_str(), Some("serve"));
    let context = &sidecar["securityContext"];
    assert_eq!(context["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(context["runAsUser"].as_u64(), Some(u64::from(ids[0])));
    assert_eq!(context["runAsGroup"].as_u64(), Some(u64::from(ids[1])));
    assert_eq!(
        fragment["securityContext"]["fsGroup"].as_u64(),
        Some(u64::from(ids[1]))
    );
    crate::common::kubernetes::assert_secret_volume_group_readable(&fragment);
    assert_eq!(
        sidecar["resources"]["limits"]["memory"].as_str(),
        Some("64Mi")
    );
}
