//! The module where nginx's features meet it: subrequests into a guarded location (`auth_request`,
//! SSI `include virtual`, `mirror`), a verdict met again after an internal redirect into a
//! location that reads another header, `satisfy any` with an upstream's own 401, and a token
//! header sent twice. Each fails closed.

mod common;

use apim_sas::chrono::Utc;
use apim_sas::layer::error_body;
use apim_sas::{Keystore, Policy};
use common::*;
use std::time::{Duration, Instant};

/// A token of gw1 whose signature is not gw1's.
fn forged() -> String {
    let good = good();
    let (head, signature) = good.rsplit_once('&').unwrap();
    let mut s = signature.as_bytes().to_vec();
    s[10] = if s[10] == b'A' { b'B' } else { b'A' };
    format!("{head}&{}", String::from_utf8(s).unwrap())
}

/// The library's refusal of `token`, as every gateway answers it.
fn refusal(token: &str) -> apim_sas::Error {
    Keystore::from_json(&keystore_json())
        .unwrap()
        .verifier(Policy::default())
        .unwrap()
        .verify(token, Utc::now())
        .unwrap_err()
}

fn challenge(code: &str) -> String {
    format!("SharedAccessSignature error=\"{code}\"")
}

/// The module's own 401: challenge, JSON type and the library's body for `err`.
fn assert_json_refusal(reply: &Reply, err: &apim_sas::Error) {
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(
        reply.header("www-authenticate"),
        Some(challenge(err.code()).as_str())
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.body, error_body(err).to_vec(), "{}", reply.text());
}

/// A file's lines once it holds at least `lines` (or after `wait`, whatever it holds then).
fn lines_of(path: &std::path::Path, lines: usize, wait: Duration) -> Vec<String> {
    let deadline = Instant::now() + wait;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let found: Vec<String> = text.lines().map(str::to_owned).collect();
        if found.len() >= lines || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An HTTP/1.0 GET read until nginx closes: the status and the body (an SSI page has no length).
fn get_whole(nginx: &Nginx, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(nginx.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut head = request("GET", path, headers);
    head.splice(..head.iter().position(|&b| b == b'\r').unwrap(), {
        format!("GET {path} HTTP/1.0").into_bytes()
    });
    stream.write_all(&head).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

#[test]
fn an_auth_request_into_a_guarded_location_is_verified() {
    // The move from `auth_request` → serve to the module: the check location verifies, whether
    // it proxies or only returns.
    let nginx = Nginx::with(
        r#"    apim_sas_keystore {dir}/keystore.json;
    server {
        listen 127.0.0.1:{port};
        location /proxied/ {
            auth_request /_check;
            auth_request_set $gw $apim_sas_gateway_id;
            proxy_set_header X-Apim-Gateway-Id $gw;
            proxy_pass http://127.0.0.1:{upstream};
        }
        location /returned/ {
            auth_request /_check_returns;
            proxy_pass http://127.0.0.1:{upstream};
        }
        location = /_check {
            internal;
            apim_sas on;
            proxy_pass http://127.0.0.1:{upstream};
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }
        location = /_check_returns {
            internal;
            apim_sas on;
            return 204;
        }
    }"#,
    );
    let token = good();
    for path in ["/proxied/", "/returned/"] {
        for (headers, code) in [
            (vec![], "EmptyToken"),
            (vec![("Authorization", forged())], "SignatureMismatch"),
            (
                vec![("Authorization", "GatewayKey gw1&x&y".to_owned())],
                "MalformedExpiry",
            ),
        ] {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let reply = nginx.get(path, &headers);
            assert_eq!(reply.status, 401, "{path} {headers:?}: {}", reply.text());
            // auth_request passes the subrequest's challenge on.
            assert_eq!(
                reply.header("www-authenticate"),
                Some(challenge(code).as_str()),
                "{path} {headers:?}"
            );
            assert!(!reply.text().contains("gateway=["), "{}", reply.text());
        }
        let reply = nginx.get(path, &[("Authorization", &token)]);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        assert!(reply.text().starts_with("gateway=["), "{}", reply.text());
    }
    // The check's variables reach the parent through auth_request_set.
    let reply = nginx.get("/proxied/", &[("Authorization", &token)]);
    assert!(
        reply.text().starts_with("gateway=[gw1] "),
        "{}",
        reply.text()
    );
}

#[test]
fn an_ssi_include_of_a_guarded_location_includes_nothing_for_a_refused_token() {
    let setup = Setup::new();
    std::fs::create_dir(setup.path("html")).unwrap();
    std::fs::write(
        setup.path("html/page.html"),
        "before\n<!--# include virtual=\"/guarded/\" -->\nafter\n",
    )
    .unwrap();
    setup.write(
        "    apim_sas_keystore {dir}/keystore.json;
    server {
        listen 127.0.0.1:{port};
        location = /page.html { ssi on; root {dir}/html; }
        location /guarded/ { apim_sas on; {proxy} }
    }",
    );
    let nginx = setup.start();
    for headers in [vec![], vec![("Authorization", forged())]] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let (status, page) = get_whole(&nginx, "/page.html", &headers);
        assert_eq!(status, 200);
        assert!(page.starts_with("before\n"), "{page}");
        assert!(page.ends_with("after\n"), "{page}");
        assert!(!page.contains("gateway=["), "{page}");
    }
    let (status, page) = get_whole(&nginx, "/page.html", &[("Authorization", &good())]);
    assert_eq!(status, 200);
    assert!(
        page.starts_with("before\ngateway=[gw1] key=[primary] "),
        "{page}"
    );
}

#[test]
fn a_mirror_into_a_guarded_location_reaches_its_upstream_only_with_a_valid_token() {
    let setup = Setup::new();
    let mirror = free_port();
    setup.write(&format!(
        "    apim_sas_keystore {{dir}}/keystore.json;
    log_format mirrored '$request_uri gw=[$http_x_apim_gateway_id]';
    server {{
        listen 127.0.0.1:{mirror};
        access_log {{dir}}/mirror.log mirrored;
        location / {{ return 204; }}
    }}
    server {{
        listen 127.0.0.1:{{port}};
        location /m/ {{ mirror /_mirror; {{proxy}} }}
        location = /_mirror {{
            internal;
            apim_sas on;
            proxy_set_header X-Apim-Gateway-Id $apim_sas_gateway_id;
            proxy_pass http://127.0.0.1:{mirror}/mirrored;
        }}
    }}"
    ));
    let nginx = setup.start();
    assert_eq!(nginx.get("/m/", &[]).status, 200);
    assert_eq!(
        nginx.get("/m/", &[("Authorization", &forged())]).status,
        200
    );
    assert_eq!(nginx.get("/m/", &[("Authorization", &good())]).status, 200);
    // The mirror's subrequests run in the background: wait for the one expected, and a little
    // longer for any that should not have come.
    let log = nginx.setup.path("mirror.log");
    let mut lines = lines_of(&log, 1, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(300));
    lines = lines_of(&log, lines.len() + 1, Duration::ZERO);
    assert_eq!(lines, ["/mirrored gw=[gw1]"]);
}

#[test]
fn an_error_page_into_a_location_reading_another_header_verifies_that_header() {
    let nginx = Nginx::with(
        "    apim_sas_keystore {dir}/keystore.json;
    server {
        listen 127.0.0.1:{port};
        location /a/ {
            apim_sas on;
            error_page 401 = @x;
            {proxy}
        }
        location @x {
            apim_sas on;
            apim_sas_header X-Token;
            {proxy}
        }
    }",
    );
    let token = good();
    // Refused in /a/ (no Authorization), verified in @x from X-Token.
    let reply = nginx.get("/a/", &[("X-Token", &token)]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply.text().starts_with("gateway=[gw1] key=[primary] "),
        "{}",
        reply.text()
    );
    assert_eq!(reply.header("www-authenticate"), None);
    // A token in Authorization only: valid in /a/.
    assert_eq!(nginx.get("/a/", &[("Authorization", &token)]).status, 200);
    // Neither: @x's own refusal, of X-Token.
    let reply = nginx.get("/a/", &[("Authorization", "GatewayKey nope")]);
    assert_json_refusal(&reply, &apim_sas::header::missing());
}

#[test]
fn under_satisfy_any_an_upstreams_own_401_passes_untouched() {
    let setup = Setup::new();
    let backend = free_port();
    setup.write(&format!(
        r#"    apim_sas_keystore {{dir}}/keystore.json;
    server {{
        listen 127.0.0.1:{backend};
        location / {{
            add_header WWW-Authenticate 'Basic realm="backend"' always;
            return 401 "the backend's own refusal\n";
        }}
    }}
    server {{
        listen 127.0.0.1:{{port}};
        location /any/ {{
            satisfy any;
            allow 127.0.0.1;
            deny all;
            apim_sas on;
            proxy_pass http://127.0.0.1:{backend};
        }}
        location /all/ {{
            apim_sas on;
            proxy_pass http://127.0.0.1:{backend};
        }}
    }}"#
    ));
    let nginx = setup.start();
    // Let in by `allow` with no token, or with a forged one: the backend's 401, as it sent it.
    for headers in [vec![], vec![("Authorization", forged())]] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let reply = nginx.get("/any/", &headers);
        assert_eq!(reply.status, 401);
        assert_eq!(reply.text(), "the backend's own refusal\n");
        assert_eq!(reply.header("content-type"), Some("text/plain"));
        let challenges: Vec<&str> = reply
            .headers
            .iter()
            .filter(|(n, _)| n == "www-authenticate")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(challenges, [r#"Basic realm="backend""#]);
    }
    // Let in by a valid token, the same.
    let reply = nginx.get("/all/", &[("Authorization", &good())]);
    assert_eq!(reply.text(), "the backend's own refusal\n");
    // The module's own refusal still gets its JSON.
    let reply = nginx.get("/all/", &[]);
    assert_json_refusal(&reply, &apim_sas::header::missing());
}

#[test]
fn a_token_header_sent_twice_is_malformed_whatever_the_order() {
    let nginx = Nginx::with(&server(
        "location /x/ { apim_sas on; apim_sas_header X-Token; {proxy} }",
    ));
    let good = good();
    let forged = forged();
    for pair in [
        [good.as_str(), forged.as_str()],
        [forged.as_str(), good.as_str()],
        [good.as_str(), good.as_str()],
    ] {
        let reply = nginx.get("/x/", &[("X-Token", pair[0]), ("X-Token", pair[1])]);
        assert_json_refusal(&reply, &apim_sas::header::repeated());
        // nginx itself refuses a second Authorization line (400) before any module runs.
        let reply = nginx.get(
            "/",
            &[("Authorization", pair[0]), ("Authorization", pair[1])],
        );
        assert_eq!(reply.status, 400);
    }
    // Two spellings of one name are one name.
    let reply = nginx.get("/x/", &[("X-Token", &good), ("x-token", &good)]);
    assert_json_refusal(&reply, &apim_sas::header::repeated());
    assert_eq!(nginx.get("/x/", &[("X-Token", &good)]).status, 200);
    // Nothing refused reached the upstream: the one valid request is the one 200 in the log.
    let log = nginx.access_log(8);
    let passed: Vec<&str> = log.lines().filter(|l| l.starts_with("200 ")).collect();
    assert_eq!(passed.len(), 1, "{log}");
}

#[test]
fn a_missing_token_reads_as_from_every_gateway() {
    let nginx = Nginx::with(&server(""));
    let reply = nginx.get("/", &[]);
    assert_json_refusal(&reply, &apim_sas::header::missing());
    assert_eq!(
        reply.text(),
        r#"{"error":{"code":"EmptyToken","message":"token: no token header in the request","target":"token"}}"#
    );
    // A header with nothing in it is a token of no bytes: the parser's refusal.
    let reply = nginx.get("/", &[("Authorization", "")]);
    assert_json_refusal(&reply, &refusal(""));
}
