//! What Envoy 1.40 itself does, pinned against the real binary so that a later Envoy that
//! behaves differently fails a test instead of a user: with each part of a `CheckResponse` (a
//! scripted Check service, tests/it/envoy/stub.rs, behind the gRPC recipe), and without each of the
//! settings the recipes insist on (copies of the recipes, each lacking one).

use super::*;

// ---------------------------------------------------------------------------------------------
// Envoy's own behaviour, pinned: a scripted Check service behind the gRPC recipe

/// `append` and `append_action` of a header, by name.
fn apply(append: Option<bool>, action: stub::HeaderAppendAction) -> stub::Apply {
    stub::Apply { append, action }
}

/// What `serve` sends with each header: `append: false`, `append_action:
/// OVERWRITE_IF_EXISTS_OR_ADD`.
const SERVE_APPLIES: stub::Apply = stub::Apply {
    append: Some(false),
    action: stub::HeaderAppendAction::OverwriteIfExistsOrAdd,
};

/// The denied response `serve` gives, with a body of the test's.
fn denied_as_serve(code: i32, http_status: i32) -> stub::CheckResponse {
    stub::denied(
        code,
        http_status,
        vec![
            stub::header(
                "www-authenticate",
                "SharedAccessSignature error=\"X\"",
                SERVE_APPLIES,
            ),
            stub::header("content-type", "application/json", SERVE_APPLIES),
        ],
        "{\"a\":1}",
    )
}

/// The scripted answers, by `x-case`.
fn script(case: &str, request: &stub::CheckRequest) -> stub::Answer {
    use apim_sas::ext_authz::tonic::Code;
    use stub::{Answer, HeaderAppendAction as Action, OkHttpResponse};

    let ok = |headers: Vec<stub::HeaderValueOption>, remove: &[&str]| {
        stub::ok(
            0,
            OkHttpResponse {
                headers,
                headers_to_remove: remove.iter().map(|n| n.to_string()).collect(),
                ..OkHttpResponse::default()
            },
        )
    };
    let pin = |append, action| {
        ok(
            vec![stub::header("x-pin", "server", apply(append, action))],
            &[],
        )
    };
    Answer::Respond(Box::new(match case {
        // append / append_action on an OkHttpResponse's header.
        "append-false" => pin(Some(false), Action::AppendIfExistsOrAdd),
        "append-true" => pin(Some(true), Action::AppendIfExistsOrAdd),
        "append-false-overwrite" => pin(Some(false), Action::OverwriteIfExistsOrAdd),
        "append-true-overwrite" => pin(Some(true), Action::OverwriteIfExistsOrAdd),
        "action-append" => pin(None, Action::AppendIfExistsOrAdd),
        "action-add-if-absent" => pin(None, Action::AddIfAbsent),
        "action-overwrite-or-add" => pin(None, Action::OverwriteIfExistsOrAdd),
        "action-overwrite-if-exists" => pin(None, Action::OverwriteIfExists),
        // headers_to_remove.
        "remove" => ok(vec![], &["x-pin"]),
        "remove-upper-case" => ok(vec![], &["X-Pin"]),
        "set-and-remove" => ok(
            vec![stub::header("x-pin", "server", SERVE_APPLIES)],
            &["x-pin"],
        ),
        "remove-host-and-path" => ok(vec![], &["host", ":authority", ":path"]),
        // What Envoy sent as the client's Authorization, handed to the upstream.
        "echo-authorization" => ok(
            vec![stub::header(
                "x-got",
                &stub::client_header(request, "authorization").unwrap_or_default(),
                SERVE_APPLIES,
            )],
            &[],
        ),
        // Denied responses.
        "denied-401" => denied_as_serve(16, 401),
        "denied-permission" => denied_as_serve(7, 401),
        "denied-no-status" => stub::denied(16, 0, vec![], "refused"),
        "denied-200" => stub::denied(16, 200, vec![], "fine?"),
        "denied-but-status-ok" => denied_as_serve(0, 401),
        "ok-but-status-16" => stub::ok(16, OkHttpResponse::default()),
        "denied-append-true" => stub::denied(
            16,
            401,
            vec![
                stub::header(
                    "content-type",
                    "application/json",
                    apply(Some(true), Action::AppendIfExistsOrAdd),
                ),
                stub::header("x-a", "1", SERVE_APPLIES),
                stub::header("x-a", "2", SERVE_APPLIES),
            ],
            "{}",
        ),
        "error-response" => stub::error_response(
            13,
            503,
            vec![stub::header("x-e", "1", SERVE_APPLIES)],
            "err body",
        ),
        // RPCs that fail or take too long.
        "unavailable" => return Answer::Fail(Code::Unavailable),
        "internal" => return Answer::Fail(Code::Internal),
        "unauthenticated" => return Answer::Fail(Code::Unauthenticated),
        "stall" => return Answer::Stall(Duration::from_secs(3)),
        other => panic!("no case {other:?}"),
    }))
}

/// The headers of the upstream request with this name (in Envoy's lower case).
fn values(seen: &Seen, name: &str) -> Vec<String> {
    seen.headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
        .collect()
}

/// A reply's headers other than `date` and `server`, in order.
fn reply_headers(reply: &Reply) -> Vec<(&str, &str)> {
    reply
        .headers
        .iter()
        .filter(|(n, _)| n != "date" && n != "server")
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

#[test]
#[cfg_attr(
    skip_envoy,
    ignore = "Envoy is not installed: run `bash .ci/deps/envoy.sh`"
)]
fn envoy_1_40_applies_a_check_response_as_pinned() {
    let _one = one_at_a_time();
    let upstream = Upstream::echoing();
    let stub = stub::Stub::start(script);
    let envoy = Envoy::start(&Recipe::grpc().filled(stub.addr, upstream.addr));
    let front = envoy.listener("ingress");
    let get = |case: &str, extra: &[(&str, &str)]| {
        let mut headers = vec![("x-case", case)];
        headers.extend_from_slice(extra);
        Conn::open(front).send(&request("GET", "/p", &headers))
    };

    // A header of the OkHttpResponse, against the client's own (none, one, two of that name).
    // Envoy 1.40 reads `append` alone: absent or false sets the header, replacing every value the
    // client sent; true appends to the client's first value (`client,server`) and adds nothing
    // when the client sent none. `append_action` is not read: each action without `append`
    // sets, as an absent `append` does. So `serve`'s `append: false` is what overwrites.
    let none: &[(&str, &str)] = &[];
    let one: &[(&str, &str)] = &[("x-pin", "client")];
    let two: &[(&str, &str)] = &[("X-Pin", "c1"), ("x-pin", "c2")];
    let set: [&[&str]; 3] = [&["server"], &["server"], &["server"]];
    let appended: [&[&str]; 3] = [&[], &["client,server"], &["c1,server", "c2"]];
    for (case, expected) in [
        ("append-false", set),
        ("append-false-overwrite", set),
        ("append-true", appended),
        ("append-true-overwrite", appended),
        ("action-append", set),
        ("action-add-if-absent", set),
        ("action-overwrite-or-add", set),
        ("action-overwrite-if-exists", set),
    ] {
        for (client, expected) in [none, one, two].into_iter().zip(expected) {
            let seen = echoed(&get(case, client));
            assert_eq!(
                values(&seen, "x-pin"),
                expected,
                "{case}, client {client:?}"
            );
        }
    }

    // headers_to_remove: every value of the name, whatever its case in the response, after the
    // headers are set (a header set and removed is gone); `host` and pseudo-headers are kept.
    for case in ["remove", "remove-upper-case", "set-and-remove"] {
        for client in [none, one, two] {
            let seen = echoed(&get(case, client));
            assert_eq!(
                values(&seen, "x-pin"),
                Vec::<String>::new(),
                "{case}, client {client:?}"
            );
        }
    }
    let seen = echoed(&get("remove-host-and-path", one));
    assert_eq!(seen.line, "GET /p");
    assert_eq!(values(&seen, "host"), ["apim-sas.test"]);
    assert_eq!(values(&seen, "x-pin"), ["client"]);

    // A repeated Authorization reaches the Check, and the upstream, joined with `,`.
    let seen = echoed(&get(
        "echo-authorization",
        &[("Authorization", "a1"), ("authorization", "a2")],
    ));
    assert_eq!(values(&seen, "x-got"), ["a1,a2"]);
    assert_eq!(values(&seen, "authorization"), ["a1,a2"]);

    // Denied: any status.code but 0 refuses, whatever the response says (16 with an ok_response
    // too: a bare 403); 0 lets the request through even with a denied_response. The HTTP status
    // is the denied response's, 403 when it has none, even 200 (the upstream still not asked);
    // its headers replace Envoy's own, except one sent with `append: true` where Envoy has none
    // yet (content-type: lost, Envoy's text/plain in its place); a body without a content-type
    // gets `text/plain`, no body gets no content-type.
    let before = upstream.count();
    for case in ["denied-401", "denied-permission"] {
        let reply = get(case, none);
        assert_eq!((reply.status, reply.text()), (401, "{\"a\":1}"), "{case}");
        assert_eq!(
            reply_headers(&reply),
            [
                ("www-authenticate", "SharedAccessSignature error=\"X\""),
                ("content-type", "application/json"),
                ("content-length", "7"),
            ],
            "{case}"
        );
    }
    let reply = get("denied-no-status", none);
    assert_eq!((reply.status, reply.text()), (403, "refused"));
    assert_eq!(
        reply_headers(&reply),
        [("content-length", "7"), ("content-type", "text/plain")]
    );
    let reply = get("denied-200", none);
    assert_eq!((reply.status, reply.text()), (200, "fine?"));
    let reply = get("ok-but-status-16", one);
    assert_eq!((reply.status, reply.text()), (403, ""));
    assert_eq!(reply_headers(&reply), [("content-length", "0")]);
    let reply = get("denied-append-true", none);
    assert_eq!((reply.status, reply.text()), (401, "{}"));
    assert_eq!(
        reply_headers(&reply),
        [
            ("x-a", "1"),
            ("x-a", "2"),
            ("content-length", "2"),
            ("content-type", "text/plain")
        ]
    );
    assert_eq!(upstream.count(), before, "a denial reached the upstream");
    let seen = echoed(&get("denied-but-status-ok", one));
    assert_eq!(values(&seen, "x-pin"), ["client"]);

    // A Check that fails: every gRPC error is a bare 403 (failure_mode_allow: false,
    // status_on_error unset); so is one that outlasts the timeout (0.5 s), at the timeout. An
    // error_response (status.code not 0) is the client's answer as a denied one would be.
    let before = upstream.count();
    for case in ["unavailable", "internal", "unauthenticated"] {
        assert_failed_closed(&get(case, one), case);
    }
    let started = Instant::now();
    assert_failed_closed(&get("stall", one), "stall");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "refused after {took:?}"
    );
    let reply = get("error-response", one);
    assert_eq!((reply.status, reply.text()), (503, "err body"));
    assert_eq!(
        reply_headers(&reply),
        [
            ("x-e", "1"),
            ("content-length", "8"),
            ("content-type", "text/plain")
        ]
    );
    assert_eq!(
        upstream.count(),
        before,
        "a failed Check reached the upstream"
    );
    assert_eq!(
        envoy.stat("http.ingress.ext_authz.error"),
        5,
        "{}",
        envoy.log()
    );
    assert_eq!(envoy.stat("http.ingress.ext_authz.failure_mode_allowed"), 0);
}

// ---------------------------------------------------------------------------------------------
// What each setting of the recipes closes: copies that lack one

/// The recipes' header_mutation filter, as both guides write it.
const HEADER_MUTATION: &str = r#"                  - name: envoy.filters.http.header_mutation
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
                      mutations:
                        request_mutations:
                          - remove: x-apim-gateway-id
                          - remove: x-apim-key-type
                          - remove: x-apim-token-expiry
                          - remove: x-apim-token-format
"#;

/// The recipe's underscore setting, as written (`DROP_HEADER` or `REJECT_REQUEST`).
fn underscores_line(recipe: &Recipe) -> &'static str {
    match recipe.underscores() {
        Underscores::Drop => "headers_with_underscores_action: DROP_HEADER",
        Underscores::Reject => "headers_with_underscores_action: REJECT_REQUEST",
    }
}

/// The recipe with Envoy's default for underscore headers (`ALLOW`): its setting removed.
fn underscores_allowed(recipe: &Recipe) -> Recipe {
    recipe.replace(
        &format!(
            "                common_http_protocol_options:\n                  {}\n",
            underscores_line(recipe)
        ),
        "",
    )
}

fn failing_open(recipe: &Recipe) -> Recipe {
    recipe.replace("failure_mode_allow: false", "failure_mode_allow: true")
}

#[test]
#[cfg_attr(
    skip_envoy,
    ignore = "Envoy is not installed: run `bash .ci/deps/envoy.sh`"
)]
fn failing_open_passes_unchecked_requests_and_only_header_mutation_strips_the_clients_identity() {
    let _one = one_at_a_time();
    for recipe in [Recipe::grpc(), Recipe::http()] {
        let doc = recipe.doc;

        // failure_mode_allow: true, the recipe's header_mutation kept: with serve down, a request
        // without a token goes upstream unchecked (no header says so), but without the client's
        // x-apim-* headers.
        let mut stack = Stack::start(recipe, |r, s, a| failing_open(r).filled(s, a));
        let spoofs = stack.spoofs_h1();
        let spoofed = borrowed(&spoofs);
        stop(&mut stack.serve);
        let seen = echoed(&stack.get(&spoofed));
        assert_eq!(apim_headers(&seen), [], "{doc}: {seen:?}");
        assert!(
            !seen
                .headers
                .iter()
                .any(|(n, _)| n.starts_with("x-envoy-auth")),
            "{doc}: {seen:?}"
        );
        assert_eq!(
            stack
                .envoy
                .stat("http.ingress.ext_authz.failure_mode_allowed"),
            1
        );

        // Without header_mutation as well: the client's identity reaches the upstream.
        let mut stack = Stack::start(Recipe::of(doc), |r, s, a| {
            failing_open(&r.replace(HEADER_MUTATION, "")).filled(s, a)
        });
        // While serve answers, its verdict still replaces every dashed spelling, whatever its
        // case, however often it was sent (append: false in gRPC mode, allowed_upstream_headers
        // in HTTP mode), and underscores are kept out: only failing open shows the difference.
        let token = day_token("gw1", "s1");
        let mut headers = vec![("Authorization", token.as_str())];
        headers.extend_from_slice(&spoofed);
        let identity = stack.verdicts.identity(&token);
        assert_passed(&stack.get(&headers), &token, &identity, doc);
        stop(&mut stack.serve);
        let seen = echoed(&stack.get(&spoofed));
        for name in IDENTITY {
            let sent: Vec<&str> = spoofs
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect();
            assert_eq!(values(&seen, name), sent, "{doc}: {name}: {seen:?}");
        }
    }
}

#[test]
#[cfg_attr(
    skip_envoy,
    ignore = "Envoy is not installed: run `bash .ci/deps/envoy.sh`"
)]
fn a_routes_request_headers_to_remove_runs_after_ext_authz_and_removes_the_verified_header() {
    let _one = one_at_a_time();
    for recipe in [Recipe::grpc(), Recipe::http()] {
        let doc = recipe.doc;
        let stack = Stack::start(recipe, |r, s, a| {
            r.replace(
                "                          route: { cluster: api }\n",
                "                          route: { cluster: api }\n                          request_headers_to_remove: [x-apim-gateway-id]\n",
            )
            .filled(s, a)
        });
        let token = day_token("gw1", "p1");
        let mut identity = stack.verdicts.identity(&token);
        identity.retain(|(n, _)| n != "x-apim-gateway-id");
        let reply = stack.get(&[("Authorization", &token), ("x-apim-gateway-id", "admin")]);
        assert_passed(&reply, &token, &identity, doc);
    }
}

#[test]
#[cfg_attr(
    skip_envoy,
    ignore = "Envoy is not installed: run `bash .ci/deps/envoy.sh`"
)]
fn underscore_headers_pass_by_default_and_reject_request_refuses_the_whole_request() {
    let _one = one_at_a_time();
    let token = day_token("gw1", "p1");

    // Envoy's default (ALLOW): `x_apim_gateway_id` passes every filter, beside the verified four.
    let stack = Stack::start(Recipe::grpc(), |r, s, a| {
        underscores_allowed(r).filled(s, a)
    });
    let reply = stack.get(&[("Authorization", &token), ("x_apim_gateway_id", "admin")]);
    let seen = echoed(&reply);
    assert_eq!(values(&seen, "x_apim_gateway_id"), ["admin"]);
    assert_eq!(values(&seen, "x-apim-gateway-id"), ["gw1"]);
    let reply = stack.h2(&[("authorization", &token), ("x_apim_gateway_id", "admin")]);
    assert_eq!(values(&echoed(&reply), "x_apim_gateway_id"), ["admin"]);

    // REJECT_REQUEST: 400 over HTTP/1.1, the stream reset over HTTP/2, the upstream not asked;
    // a request without such a header passes.
    let stack = Stack::start(Recipe::grpc(), |r, s, a| {
        r.replace(
            underscores_line(r),
            "headers_with_underscores_action: REJECT_REQUEST",
        )
        .filled(s, a)
    });
    let reply = stack.get(&[("Authorization", &token), ("x_apim_gateway_id", "admin")]);
    assert_eq!(reply.status, 400, "{reply:?}");
    let failed = h2_get(
        stack.front,
        "/",
        &[("authorization", &token), ("x_apim_gateway_id", "admin")],
    );
    let message = failed.expect_err("a reset stream");
    assert!(message.starts_with("curl exit 92:"), "{message}");
    assert_eq!(stack.upstream.count(), 0);
    let identity = stack.verdicts.identity(&token);
    assert_passed(
        &stack.get(&[("Authorization", &token)]),
        &token,
        &identity,
        "no underscores",
    );
    assert_eq!(
        stack
            .envoy
            .stat("http1.requests_rejected_with_underscores_in_headers"),
        1
    );
    assert_eq!(
        stack
            .envoy
            .stat("http2.requests_rejected_with_underscores_in_headers"),
        1
    );
}
