//! The module in the real nginx: every verdict and wire form, every refusal code, the headers
//! and body of a 401, variables reaching the upstream, each directive, `error_page`, `satisfy`,
//! HEAD, bodies and keep-alive.

mod common;

use apim_sas::chrono::{TimeDelta, Utc};
use apim_sas::layer::error_body;
use apim_sas::{Format, Keystore, Policy, Scheme};
use common::*;

/// What the upstream answers for a verified gw1 token.
fn upstream_saw(gateway: &str, key: &str, expiry: &str, format: &str) -> String {
    format!("gateway=[{gateway}] key=[{key}] expiry=[{expiry}] format=[{format}]\n")
}

/// The 401 the module must answer for `token` (`None`: no header), with the code it must carry.
fn assert_refused(reply: &Reply, token: Option<&str>, code: &str) {
    let verifier = Keystore::from_json(&keystore_json())
        .unwrap()
        .verifier(Policy::default())
        .unwrap();
    // No header at all is the refusal every gateway gives (the library's one rule for token
    // headers); anything else, the verifier's own.
    let err = match token {
        None => apim_sas::header::missing(),
        Some(token) => verifier.verify(token, Utc::now()).unwrap_err(),
    };
    assert_eq!(err.code(), code, "the library's verdict for {token:?}");
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(
        reply.header("www-authenticate"),
        Some(format!("SharedAccessSignature error=\"{code}\"").as_str())
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.body, error_body(&err).to_vec(), "{}", reply.text());
    assert_eq!(
        reply.header("content-length"),
        Some(reply.body.len().to_string().as_str())
    );
}

fn rfc3339(expiry: apim_sas::chrono::DateTime<Utc>) -> String {
    expiry.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[test]
fn valid_tokens_reach_the_upstream_with_who_they_were() {
    let nginx = Nginx::with(&server(""));
    let expiry = Utc::now() + TimeDelta::days(2);
    let floored = Format::Compact.floor(expiry);
    let whole = Format::Uid.floor(expiry);
    let compact = token_at("gw1", PRIMARY, expiry, Format::Compact);
    let uid = token_at("gw1", PRIMARY, expiry, Format::Uid);
    let uid_expiry = {
        let ticks = apim_sas::chrono::Timelike::nanosecond(&whole) / 100;
        let base = whole.format("%Y-%m-%dT%H:%M:%S");
        match ticks {
            0 => format!("{base}Z"),
            t => format!("{base}.{t:07}Z"),
        }
    };
    let cases = [
        (compact.clone(), "compact", rfc3339(floored)),
        (
            Scheme::GatewayKey.apply(&compact),
            "compact",
            rfc3339(floored),
        ),
        (
            Scheme::SharedAccessSignature.apply(&compact),
            "compact",
            rfc3339(floored),
        ),
        (Scheme::Portal.apply(&compact), "compact", rfc3339(floored)),
        (uid.clone(), "uid", uid_expiry.clone()),
        (
            Scheme::SharedAccessSignature.apply(&uid),
            "uid",
            uid_expiry.clone(),
        ),
        (Scheme::Portal.apply(&uid), "uid", uid_expiry.clone()),
    ];
    let mut conn = nginx.conn();
    for (token, format, expiry) in &cases {
        let reply = conn.send(&request("GET", "/", &[("Authorization", token)]));
        assert_eq!(reply.status, 200, "{token}: {}", reply.text());
        assert_eq!(
            reply.text(),
            upstream_saw("gw1", "primary", expiry, format),
            "{token}"
        );
    }
    // The secondary key, and a second gateway of the keystore.
    let secondary = token("gw1", SECONDARY, TimeDelta::hours(3), Format::Compact);
    let reply = conn.send(&request("GET", "/", &[("Authorization", &secondary)]));
    assert_eq!(reply.status, 200);
    assert!(
        reply.text().starts_with("gateway=[gw1] key=[secondary] "),
        "{}",
        reply.text()
    );
    let other = token("gw2", GW2, TimeDelta::hours(3), Format::Uid);
    let reply = conn.send(&request("GET", "/", &[("Authorization", &other)]));
    assert_eq!(reply.status, 200);
    assert!(
        reply.text().starts_with("gateway=[gw2] key=[primary] "),
        "{}",
        reply.text()
    );
    assert!(
        reply.text().ends_with(" format=[uid]\n"),
        "{}",
        reply.text()
    );
}

#[test]
fn every_refusal_is_a_401_with_its_code_challenge_and_json_body() {
    let nginx = Nginx::with(&server(""));
    let now = Utc::now();
    let good = token("gw1", PRIMARY, TimeDelta::days(1), Format::Compact);
    let (head, signature) = good.rsplit_once('&').unwrap();
    let flipped = {
        let mut s = signature.as_bytes().to_vec();
        s[10] = if s[10] == b'A' { b'B' } else { b'A' };
        format!("{head}&{}", String::from_utf8(s).unwrap())
    };
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "EmptyToken"),
        (Some(String::new()), "EmptyToken"),
        (Some("Bearer abc".into()), "MalformedToken"),
        (
            Some(format!("GatewayKey {}", "a".repeat(1100))),
            "TokenTooLong",
        ),
        (
            Some(good.replacen("gw1", &"g".repeat(81), 1)),
            "InvalidGatewayId",
        ),
        (Some(good.replacen('&', "&2026", 1)), "MalformedExpiry"),
        (Some(format!("{head}&abc")), "MalformedSignature"),
        (Some(good.replacen("gw1", "gw9", 1)), "GatewayNotExist"),
        (Some(flipped), "SignatureMismatch"),
        (
            Some(token_at(
                "gw1",
                PRIMARY,
                now - TimeDelta::minutes(10),
                Format::Compact,
            )),
            "TokenExpired",
        ),
        (
            Some(token("gw1", PRIMARY, TimeDelta::days(40), Format::Compact)),
            "ExpiryTooFar",
        ),
    ];
    let mut conn = nginx.conn();
    for (token, code) in &cases {
        let headers: Vec<(&str, &str)> = token
            .iter()
            .map(|t| ("Authorization", t.as_str()))
            .collect();
        let reply = conn.send(&request("GET", "/", &headers));
        assert_refused(&reply, token.as_deref(), code);
        // Keep-alive survives a 401: the same connection answers the next request.
    }
    let reply = conn.send(&request("GET", "/", &[("Authorization", &good)]));
    assert_eq!(reply.status, 200);

    // One info line per refusal in the error log: code and target, never the token.
    let log = nginx.error_log();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("apim_sas: token refused"))
        .collect();
    assert_eq!(refused.len(), cases.len(), "{log}");
    assert!(
        refused[0].contains("[info]")
            && refused[0].contains("token refused: EmptyToken (target token)")
    );
    assert!(
        refused[8].contains("token refused: SignatureMismatch (target signature)"),
        "{}",
        refused[8]
    );
    assert!(
        !log.contains(signature) && !log.contains(&signature[..20]),
        "{log}"
    );
}

#[test]
fn client_sent_apim_headers_never_reach_the_upstream() {
    let nginx = Nginx::with(&server(""));
    let forged = [
        ("X-Apim-Gateway-Id", "admin"),
        ("X-Apim-Key-Type", "primary"),
        ("X-Apim-Token-Expiry", "2099-01-01T00:00:00Z"),
        ("X-Apim-Token-Format", "uid"),
    ];
    let mut headers = forged.to_vec();
    let token = good();
    headers.push(("Authorization", &token));
    let reply = nginx.get("/", &headers);
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .text()
            .starts_with("gateway=[gw1] key=[primary] expiry=[20"),
        "{}",
        reply.text()
    );
    assert!(!reply.text().contains("2099"), "{}", reply.text());
    // Without the module (a location that is off), the variables are empty and so the headers
    // are not sent at all, whatever the client wrote.
    let reply = nginx.get("/open/", &forged);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), upstream_saw("", "", "", ""));
}

#[test]
fn head_and_request_bodies_on_kept_alive_connections() {
    let nginx = Nginx::with(&server(""));
    let mut conn = nginx.conn();
    let reply = conn.send_head(&request("HEAD", "/", &[("Authorization", "Bearer x")]));
    assert_eq!(reply.status, 401);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(
        reply.header("www-authenticate"),
        Some("SharedAccessSignature error=\"MalformedToken\"")
    );
    assert!(reply.body.is_empty());
    // A refused POST's body is read and dropped: the next request on the connection is intact.
    let mut post = request(
        "POST",
        "/",
        &[("Content-Length", "11"), ("Authorization", "GatewayKey x")],
    );
    post.extend_from_slice(b"hello world");
    let reply = conn.send(&post);
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.header("www-authenticate"),
        Some("SharedAccessSignature error=\"MalformedToken\"")
    );
    let token = good();
    let mut post = request(
        "POST",
        "/",
        &[("Content-Length", "5"), ("Authorization", &token)],
    );
    post.extend_from_slice(b"hello");
    let reply = conn.send(&post);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = conn.send_head(&request("HEAD", "/", &[("Authorization", &token)]));
    assert_eq!(reply.status, 200);
    assert!(!conn.closed_within(std::time::Duration::from_millis(100)));
}

#[test]
fn the_header_directive_reads_another_header_in_any_spelling() {
    let nginx = Nginx::with(&server("apim_sas_header X-Apim-Token;"));
    let token = good();
    for name in ["X-Apim-Token", "x-apim-token", "X-APIM-TOKEN"] {
        let reply = nginx.get("/", &[(name, &token)]);
        assert_eq!(reply.status, 200, "{name}");
    }
    let reply = nginx.get("/", &[("Authorization", &token)]);
    assert_refused(&reply, None, "EmptyToken");
}

#[test]
fn leeway_max_lifetime_and_key_type_follow_their_directives() {
    let expired = token_at(
        "gw1",
        PRIMARY,
        Utc::now() - TimeDelta::seconds(30),
        Format::Uid,
    );
    let long = token("gw1", PRIMARY, TimeDelta::days(60), Format::Compact);
    let two_hours = token("gw1", PRIMARY, TimeDelta::hours(2), Format::Compact);
    let secondary = token("gw1", SECONDARY, TimeDelta::hours(2), Format::Compact);
    let nginx = Nginx::with(
        "    apim_sas_keystore {dir}/keystore.json;
    server {
        listen 127.0.0.1:{port};
        apim_sas on;
        location /default/ { {proxy} }
        location /strict/ { apim_sas_leeway 0s; {proxy} }
        location /short/ { apim_sas_max_lifetime 1h; {proxy} }
        location /forever/ { apim_sas_max_lifetime off; {proxy} }
        location /primary/ { apim_sas_key_type primary; {proxy} }
        location /secondary/ { apim_sas_key_type secondary; {proxy} }
        location /off/ { apim_sas off; {proxy} }
        location /nocache/ { apim_sas_cache off; {proxy} }
        location /bigcache/ { apim_sas_cache 100000; {proxy} }
    }",
    );
    let status = |path: &str, token: &str| {
        let reply = nginx.get(path, &[("Authorization", token)]);
        (
            reply.status,
            reply.header("www-authenticate").map(str::to_owned),
        )
    };
    let refused = |code: &str| (401, Some(format!("SharedAccessSignature error=\"{code}\"")));
    // The default leeway is 60 s: a token 30 s past its expiry still passes; with 0 s it does not.
    assert_eq!(status("/default/", &expired), (200, None));
    assert_eq!(status("/strict/", &expired), refused("TokenExpired"));
    // The default maximum lifetime is 30 days; `off` lifts it; `1h` lowers it.
    assert_eq!(status("/default/", &long), refused("ExpiryTooFar"));
    assert_eq!(status("/forever/", &long), (200, None));
    assert_eq!(status("/short/", &two_hours), refused("ExpiryTooFar"));
    assert_eq!(status("/default/", &two_hours), (200, None));
    // Key type: only the named key verifies.
    assert_eq!(status("/primary/", &two_hours), (200, None));
    assert_eq!(
        status("/primary/", &secondary),
        refused("SignatureMismatch")
    );
    assert_eq!(status("/secondary/", &secondary), (200, None));
    assert_eq!(
        status("/secondary/", &two_hours),
        refused("SignatureMismatch")
    );
    assert_eq!(status("/default/", &secondary), (200, None));
    // `off` below an `on`: nothing is checked.
    assert_eq!(status("/off/", "garbage"), (200, None));
    // The cache changes no verdict, repeated or not.
    for _ in 0..3 {
        for path in ["/nocache/", "/bigcache/", "/default/"] {
            assert_eq!(status(path, &two_hours), (200, None), "{path}");
            assert_eq!(status(path, &expired), (200, None), "{path}");
            assert_eq!(status(path, &long), refused("ExpiryTooFar"), "{path}");
            assert_eq!(
                status(path, &format!("{two_hours}x")),
                refused("MalformedSignature")
            );
        }
    }
}

#[test]
fn variables_reach_the_access_log_and_an_error_page() {
    let nginx = Nginx::with(
        r#"    apim_sas_keystore {dir}/keystore.json;
    server {
        listen 127.0.0.1:{port};
        location / {
            apim_sas on;
            error_page 401 /denied;
            {proxy}
        }
        location = /denied {
            internal;
            return 401 "denied: $apim_sas_error\n";
        }
        location /plain/ {
            apim_sas on;
            error_page 401 @named;
            {proxy}
        }
        location @named {
            return 401 "named: $apim_sas_error\n";
        }
    }"#,
    );
    let token = good();
    let reply = nginx.get("/", &[("Authorization", &token)]);
    assert_eq!(reply.status, 200);
    let reply = nginx.get("/", &[("Authorization", "GatewayKey gw1&x&y")]);
    assert_eq!(reply.status, 401);
    assert_eq!(reply.text(), "denied: MalformedExpiry\n");
    // The challenge stays, as with auth_basic.
    assert_eq!(
        reply.header("www-authenticate"),
        Some("SharedAccessSignature error=\"MalformedExpiry\"")
    );
    let reply = nginx.get("/plain/", &[]);
    assert_eq!(reply.status, 401);
    assert_eq!(reply.text(), "named: EmptyToken\n");
    let log = nginx.access_log(3);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    assert!(
        lines[0].starts_with("200 gw=gw1 key=primary exp=20"),
        "{}",
        lines[0]
    );
    assert!(lines[0].ends_with(" fmt=compact err=-"), "{}", lines[0]);
    assert_eq!(lines[1], "401 gw=- key=- exp=- fmt=- err=MalformedExpiry");
    assert_eq!(lines[2], "401 gw=- key=- exp=- fmt=- err=EmptyToken");
}

#[test]
fn satisfy_any_lets_an_allowed_address_through_as_with_auth_basic() {
    let nginx = Nginx::with(
        "    apim_sas_keystore {dir}/keystore.json;
    server {
        listen 127.0.0.1:{port};
        apim_sas on;
        location /any-allowed/ { satisfy any; allow 127.0.0.1; deny all; {proxy} }
        location /any-denied/ { satisfy any; deny all; {proxy} }
        location /all/ { satisfy all; allow 127.0.0.1; deny all; {proxy} }
        location /all-denied/ { satisfy all; deny all; {proxy} }
    }",
    );
    let token = good();
    // satisfy any: the address alone suffices; a token alone suffices.
    assert_eq!(nginx.get("/any-allowed/", &[]).status, 200);
    assert_eq!(
        nginx
            .get("/any-denied/", &[("Authorization", &token)])
            .status,
        200
    );
    // Neither: the module's 401, with its JSON body.
    let reply = nginx.get("/any-denied/", &[("Authorization", "Bearer x")]);
    assert_refused(&reply, Some("Bearer x"), "MalformedToken");
    // satisfy all: both are needed.
    assert_eq!(nginx.get("/all/", &[("Authorization", &token)]).status, 200);
    assert_refused(&nginx.get("/all/", &[]), None, "EmptyToken");
    assert_eq!(
        nginx
            .get("/all-denied/", &[("Authorization", &token)])
            .status,
        403
    );
}

#[test]
fn a_location_that_only_returns_is_never_checked() {
    // The pitfall the guide documents: `return` runs in the rewrite phase, before access.
    let nginx = Nginx::with(
        r#"    apim_sas_keystore {dir}/keystore.json;
    server {
        listen 127.0.0.1:{port};
        apim_sas on;
        location /returns { return 200 "unchecked\n"; }
        location /proxied/ { {proxy} }
    }"#,
    );
    assert_eq!(nginx.get("/returns", &[]).text(), "unchecked\n");
    assert_eq!(nginx.get("/proxied/", &[]).status, 401);
}

#[test]
fn inheritance_from_http_to_server_to_location() {
    let nginx = Nginx::with(
        "    apim_sas_keystore {dir}/keystore.json;
    apim_sas on;
    apim_sas_header X-Token;
    server {
        listen 127.0.0.1:{port};
        apim_sas_leeway 0s;
        location /inherits/ { {proxy} }
        location /own/ { apim_sas_header Authorization; {proxy} }
    }",
    );
    let token = good();
    assert_eq!(nginx.get("/inherits/", &[("X-Token", &token)]).status, 200);
    assert_eq!(
        nginx.get("/inherits/", &[("Authorization", &token)]).status,
        401
    );
    assert_eq!(nginx.get("/own/", &[("Authorization", &token)]).status, 200);
    let expired = token_at(
        "gw1",
        PRIMARY,
        Utc::now() - TimeDelta::seconds(30),
        Format::Uid,
    );
    let reply = nginx.get("/inherits/", &[("X-Token", &expired)]);
    assert_eq!(
        reply.header("www-authenticate"),
        Some("SharedAccessSignature error=\"TokenExpired\"")
    );
}

#[test]
fn an_error_page_into_other_keys_decides_anew_and_a_success_carries_no_challenge() {
    let setup = Setup::new();
    std::fs::write(
        setup.path("other.json"),
        r#"{"gw3": {"primary": "third-gateway-sample-key"}}"#,
    )
    .unwrap();
    setup.write(
        "    server {
        listen 127.0.0.1:{port};
        location /a/ {
            apim_sas on;
            apim_sas_keystore {dir}/keystore.json;
            error_page 401 = /b/;
            {proxy}
        }
        location /b/ {
            apim_sas on;
            apim_sas_keystore {dir}/other.json;
            {proxy}
        }
    }",
    );
    let nginx = setup.start();
    let gw3 = token(
        "gw3",
        "third-gateway-sample-key",
        TimeDelta::hours(1),
        Format::Compact,
    );
    let reply = nginx.get("/a/", &[("Authorization", &gw3)]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply.text().starts_with("gateway=[gw3] key=[primary] "),
        "{}",
        reply.text()
    );
    assert_eq!(reply.header("www-authenticate"), None);
    // Refused by both: the second location's own refusal, once.
    let reply = nginx.get("/a/", &[("Authorization", "GatewayKey nope")]);
    assert_refused(&reply, Some("GatewayKey nope"), "MalformedToken");
    assert_eq!(
        reply
            .headers
            .iter()
            .filter(|(n, _)| n == "www-authenticate")
            .count(),
        1
    );
}
