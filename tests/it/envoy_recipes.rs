//! The Envoy recipes fail closed and let no client's own identity through. Every whole Envoy
//! configuration (a YAML document with `static_resources`) in README.md, docs/*.md and examples/
//! is found, and every HTTP connection manager in it that asks ext_authz is held to three things:
//! `failure_mode_allow: false`; a `header_mutation` filter before ext_authz that removes the four
//! `x-apim-*` headers `serve` sets for the upstream (a route's `request_headers_to_remove` runs in
//! the router, after ext_authz has set the verified values, so no route may remove them); and
//! `headers_with_underscores_action` `REJECT_REQUEST` or `DROP_HEADER` (Envoy's default lets
//! `x_apim_gateway_id` through, which CGI-style backends read as `x-apim-gateway-id`). The router
//! is last. Istio's, Contour's and Envoy Gateway's recipes are held to the same in their own terms
//! where they have the setting.
//!
//! A connection manager that runs the apim-sas proxy-wasm filter (Envoy's wasm filter loading
//! `apim_sas_filter.wasm`, examples/envoy-wasm.yaml) has no Check that can fail and removes every
//! spelling of the four headers itself (tests/envoy_wasm.rs shows it with underscores allowed), so
//! it needs no `header_mutation`. It is held to what stands in for the rest: `failure_policy`
//! `FAIL_RELOAD` or `FAIL_CLOSED`, said explicitly (a VM that traps answers `503`, never passes the
//! request; `FAIL_OPEN` would pass it unchecked) and no `fail_open: true`;
//! underscore headers dropped or refused all the same, as in every recipe; no route disabling the
//! filter; the router last; and its keys from the environment (`keystore_env`, named in
//! `vm_config.environment_variables.host_env_keys`), never written into Envoy's configuration,
//! where the admin interface's `/config_dump` would show them. The filter's Istio `WasmPlugin` and
//! Envoy Gateway `EnvoyExtensionPolicy` are held to the same in their own terms.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;
use serde_norway::Value;

use crate::common::markdown;

/// The headers `serve` sets for the upstream: the verified identity.
const IDENTITY: [&str; 4] = [
    "x-apim-gateway-id",
    "x-apim-key-type",
    "x-apim-token-expiry",
    "x-apim-token-format",
];

const MANAGER: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const EXT_AUTHZ: &str = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz";
const HEADER_MUTATION: &str =
    "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation";
const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
const WASM: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";

/// One YAML document and where it is (`docs/ext-authz.md:57`, `examples/envoy.yaml`).
struct Document {
    at: String,
    value: Value,
}

fn parse_all(at: &str, text: &str) -> Vec<Document> {
    serde_norway::Deserializer::from_str(text)
        .map(|document| Document {
            at: at.to_owned(),
            value: Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{at}: YAML does not parse: {e}")),
        })
        .collect()
}

/// Every document of every ```yaml block of README.md and docs/*.md.
fn markdown_documents() -> Vec<Document> {
    markdown::blocks()
        .iter()
        .filter(|b| b.info == "yaml" || b.info == "yml")
        .flat_map(|b| parse_all(&b.at(), &b.text))
        .collect()
}

/// Every document of every YAML (or JSON) file under examples/.
fn example_documents() -> Vec<Document> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<Document>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path
                .extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
            {
                let at = path.strip_prefix(root).unwrap().display().to_string();
                let text = std::fs::read_to_string(&path).unwrap();
                out.extend(parse_all(&at, &text));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut documents = Vec::new();
    walk(&root.join("examples"), root, &mut documents);
    documents
}

/// Every whole Envoy configuration of the docs and examples.
fn envoy_configurations() -> Vec<Document> {
    markdown_documents()
        .into_iter()
        .chain(example_documents())
        .filter(|d| d.value.get("static_resources").is_some())
        .collect()
}

/// A field by its proto name, or by the lowerCamelCase JSON name Envoy also reads.
fn field<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    value.get(name).or_else(|| {
        let mut camel = String::new();
        let mut upper = false;
        for c in name.chars() {
            if c == '_' {
                upper = true;
            } else if upper {
                camel.extend(c.to_uppercase());
                upper = false;
            } else {
                camel.push(c);
            }
        }
        value.get(camel.as_str())
    })
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut at = value;
    for name in path {
        at = field(at, name)?;
    }
    at.as_str()
}

/// Every mapping in `value`, depth first, itself included.
fn mappings(value: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Mapping(m) => {
                out.push(v);
                stack.extend(m.values());
            }
            Value::Sequence(items) => stack.extend(items),
            Value::Tagged(tagged) => stack.push(&tagged.value),
            _ => {}
        }
    }
    out
}

/// An HTTP filter's type: its typed config's `@type`, or else its name.
fn filter_type(filter: &Value) -> &str {
    str_at(filter, &["typed_config", "@type"])
        .or_else(|| str_at(filter, &["name"]))
        .unwrap_or("")
}

fn is(filter: &Value, type_url: &str, name: &str) -> bool {
    let t = filter_type(filter);
    t == type_url || t == name
}

/// What is wrong with a `header_mutation` filter (the entry of `http_filters`) that should remove
/// exactly the four identity headers from the request, in lower case.
fn removal_problems(filter: &Value) -> Vec<String> {
    let Some(mutations) = filter
        .get("typed_config")
        .and_then(|c| field(c, "mutations"))
        .and_then(|m| field(m, "request_mutations"))
        .and_then(Value::as_sequence)
    else {
        return vec!["header_mutation has no mutations.request_mutations".to_owned()];
    };
    let removed: Vec<&str> = mutations
        .iter()
        .filter_map(|m| m.get("remove").and_then(Value::as_str))
        .collect();
    let mut problems = Vec::new();
    if removed.len() != mutations.len() {
        problems.push(format!(
            "header_mutation does more than remove headers: {mutations:?}"
        ));
    }
    let removed: BTreeSet<&str> = removed.into_iter().collect();
    if removed != IDENTITY.into_iter().collect() {
        problems.push(format!(
            "header_mutation removes {removed:?}, not exactly {IDENTITY:?}"
        ));
    }
    problems
}

/// What is wrong with one HTTP connection manager that asks ext_authz.
fn manager_problems(manager: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let filters = field(manager, "http_filters")
        .and_then(Value::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let Some(authz) = filters
        .iter()
        .position(|f| is(f, EXT_AUTHZ, "envoy.filters.http.ext_authz"))
    else {
        return problems;
    };
    for filter in filters
        .iter()
        .filter(|f| is(f, EXT_AUTHZ, "envoy.filters.http.ext_authz"))
    {
        let allow = filter
            .get("typed_config")
            .and_then(|c| field(c, "failure_mode_allow"));
        if allow.and_then(Value::as_bool) != Some(false) {
            problems.push(format!(
                "ext_authz must say failure_mode_allow: false, says {allow:?}"
            ));
        }
    }
    match filters
        .iter()
        .position(|f| is(f, HEADER_MUTATION, "envoy.filters.http.header_mutation"))
    {
        Some(at) if at < authz => problems.extend(removal_problems(&filters[at])),
        Some(_) => problems.push("the header_mutation filter comes after ext_authz".to_owned()),
        None => problems.push("no header_mutation filter before ext_authz".to_owned()),
    }
    let underscores = field(manager, "common_http_protocol_options")
        .and_then(|o| field(o, "headers_with_underscores_action"))
        .and_then(Value::as_str);
    if !matches!(underscores, Some("REJECT_REQUEST" | "DROP_HEADER")) {
        problems.push(format!(
            "common_http_protocol_options.headers_with_underscores_action must be REJECT_REQUEST \
             or DROP_HEADER, is {underscores:?}"
        ));
    }
    if !filters
        .last()
        .is_some_and(|f| is(f, ROUTER, "envoy.filters.http.router"))
    {
        problems.push("the router is not the last HTTP filter".to_owned());
    }
    problems
}

/// Whether an HTTP filter is the apim-sas proxy-wasm filter: Envoy's wasm filter running
/// `apim_sas_filter.wasm`.
fn is_apim_sas_wasm(filter: &Value) -> bool {
    is(filter, WASM, "envoy.filters.http.wasm")
        && str_at(
            filter,
            &[
                "typed_config",
                "config",
                "vm_config",
                "code",
                "local",
                "filename",
            ],
        )
        .is_some_and(|file| file.ends_with("/apim_sas_filter.wasm"))
}

/// What is wrong with one HTTP connection manager that runs the apim-sas wasm filter.
fn wasm_manager_problems(manager: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let filters = field(manager, "http_filters")
        .and_then(Value::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for filter in filters.iter().filter(|f| is_apim_sas_wasm(f)) {
        let config = filter
            .get("typed_config")
            .and_then(|c| field(c, "config"))
            .unwrap_or(&Value::Null);
        let policy = field(config, "failure_policy").and_then(Value::as_str);
        if !matches!(policy, Some("FAIL_RELOAD" | "FAIL_CLOSED")) {
            problems.push(format!(
                "the wasm filter must say failure_policy: FAIL_RELOAD or FAIL_CLOSED, says \
                 {policy:?}"
            ));
        }
        if field(config, "fail_open").and_then(Value::as_bool) == Some(true) {
            problems.push("the wasm filter says fail_open: true".to_owned());
        }
        let configuration = field(config, "configuration").unwrap_or(&Value::Null);
        let settings: Option<serde_json::Value> = match str_at(configuration, &["@type"]) {
            Some(STRING_VALUE) => {
                str_at(configuration, &["value"]).and_then(|text| serde_json::from_str(text).ok())
            }
            _ => None,
        };
        let env = settings
            .as_ref()
            .and_then(|s| s.get("keystore_env"))
            .and_then(serde_json::Value::as_str);
        let passed = names(
            field(config, "vm_config")
                .and_then(|v| field(v, "environment_variables"))
                .and_then(|e| field(e, "host_env_keys")),
        );
        match env {
            _ if settings
                .as_ref()
                .is_some_and(|s| s.get("keystore").is_some()) =>
            {
                problems.push(
                    "the wasm filter's keys are written into the configuration: use keystore_env"
                        .to_owned(),
                )
            }
            Some(name) if passed.contains(name) => {}
            Some(name) => problems.push(format!(
                "the wasm filter reads {name}, which vm_config.environment_variables.host_env_keys \
                 does not pass ({passed:?})"
            )),
            None => problems.push(format!(
                "the wasm filter's configuration is not a StringValue of JSON with keystore_env: \
                 {configuration:?}"
            )),
        }
    }
    let underscores = field(manager, "common_http_protocol_options")
        .and_then(|o| field(o, "headers_with_underscores_action"))
        .and_then(Value::as_str);
    if !matches!(underscores, Some("REJECT_REQUEST" | "DROP_HEADER")) {
        problems.push(format!(
            "common_http_protocol_options.headers_with_underscores_action must be REJECT_REQUEST \
             or DROP_HEADER, is {underscores:?}"
        ));
    }
    let disabled = mappings(manager)
        .into_iter()
        .filter_map(|m| field(m, "typed_per_filter_config"))
        .filter_map(Value::as_mapping)
        .flat_map(|per_filter| per_filter.keys())
        .filter_map(Value::as_str)
        .any(|name| name == "envoy.filters.http.wasm" || name.contains("apim_sas"));
    if disabled {
        problems.push("a route or virtual host configures the wasm filter per route".to_owned());
    }
    if !filters
        .last()
        .is_some_and(|f| is(f, ROUTER, "envoy.filters.http.router"))
    {
        problems.push("the router is not the last HTTP filter".to_owned());
    }
    problems
}

/// Header lists that name one of the identity headers (in any case), under `key` anywhere in
/// `value`.
fn identity_named_under(value: &Value, key: &str) -> Vec<String> {
    mappings(value)
        .into_iter()
        .filter_map(|m| field(m, key))
        .filter_map(Value::as_sequence)
        .flatten()
        .filter_map(Value::as_str)
        .filter(|name| IDENTITY.contains(&name.to_ascii_lowercase().as_str()))
        .map(str::to_owned)
        .collect()
}

/// What is wrong with one whole Envoy configuration, and how many ext_authz managers it has.
fn configuration_problems(configuration: &Value) -> (Vec<String>, usize) {
    let (problems, asking, _) = all_problems(configuration);
    (problems, asking)
}

/// What is wrong with one whole Envoy configuration, how many managers ask ext_authz and how many
/// run the apim-sas wasm filter.
fn all_problems(configuration: &Value) -> (Vec<String>, usize, usize) {
    let mut problems = Vec::new();
    let mut asking = 0;
    let mut verifying = 0;
    for manager in mappings(configuration)
        .into_iter()
        .filter(|m| m.get("@type").and_then(Value::as_str) == Some(MANAGER))
    {
        let runs_wasm = field(manager, "http_filters")
            .and_then(Value::as_sequence)
            .is_some_and(|fs| fs.iter().any(is_apim_sas_wasm));
        if runs_wasm {
            verifying += 1;
            let name = str_at(manager, &["stat_prefix"]).unwrap_or("?");
            problems.extend(
                wasm_manager_problems(manager)
                    .into_iter()
                    .map(|p| format!("connection manager {name}: {p}")),
            );
        }
        let has_authz = field(manager, "http_filters")
            .and_then(Value::as_sequence)
            .is_some_and(|fs| {
                fs.iter()
                    .any(|f| is(f, EXT_AUTHZ, "envoy.filters.http.ext_authz"))
            });
        if has_authz {
            asking += 1;
            let name = str_at(manager, &["stat_prefix"]).unwrap_or("?");
            problems.extend(
                manager_problems(manager)
                    .into_iter()
                    .map(|p| format!("connection manager {name}: {p}")),
            );
        }
    }
    for name in identity_named_under(configuration, "request_headers_to_remove") {
        problems.push(format!(
            "request_headers_to_remove names {name}: the router would remove the verified value"
        ));
    }
    (problems, asking, verifying)
}

#[test]
fn every_whole_envoy_configuration_fails_closed_and_strips_client_identity_headers() {
    let configurations = envoy_configurations();
    let places: Vec<&str> = configurations.iter().map(|c| c.at.as_str()).collect();
    for guide in ["docs/ext-authz.md", "docs/serve.md"] {
        assert!(
            places.iter().any(|p| p.starts_with(guide)),
            "no whole Envoy configuration in {guide}; found {places:?}"
        );
    }
    let mut problems = Vec::new();
    let mut asking = 0;
    let mut verifying = Vec::new();
    for configuration in &configurations {
        let (found, managers, wasm) = all_problems(&configuration.value);
        asking += managers;
        if wasm > 0 {
            verifying.push(configuration.at.as_str());
        }
        problems.extend(
            found
                .into_iter()
                .map(|p| format!("{}: {p}", configuration.at)),
        );
    }
    assert!(
        asking >= 2,
        "{asking} connection managers ask ext_authz in {places:?}"
    );
    assert!(
        verifying.contains(&"examples/envoy-wasm.yaml"),
        "the wasm filter's example is not checked: {verifying:?}"
    );
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// The same for the wasm filter's rules: each broken on its own, in a copy of
/// examples/envoy-wasm.yaml, is reported.
#[test]
fn each_broken_property_of_the_wasm_example_is_reported() {
    let example = envoy_configurations()
        .into_iter()
        .find(|c| c.at == "examples/envoy-wasm.yaml")
        .expect("examples/envoy-wasm.yaml")
        .value;
    assert_eq!(all_problems(&example), (Vec::new(), 0, 1));
    let broken = |why: &str, change: &dyn Fn(&mut Value)| {
        let mut copy = example.clone();
        let manager = &mut copy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
            [0]["typed_config"];
        change(manager);
        let problems = all_problems(&copy).0;
        assert!(!problems.is_empty(), "not reported: {why}");
    };
    broken("failing open", &|m| {
        m["http_filters"][0]["typed_config"]["config"]["failure_policy"] = "FAIL_OPEN".into();
    });
    broken("failure_policy left to its default", &|m| {
        let config = m["http_filters"][0]["typed_config"]["config"].as_mapping_mut();
        config.unwrap().remove("failure_policy");
    });
    broken("fail_open", &|m| {
        m["http_filters"][0]["typed_config"]["config"]["fail_open"] = Value::Bool(true);
    });
    broken("underscore headers allowed", &|m| {
        m["common_http_protocol_options"]["headers_with_underscores_action"] = "ALLOW".into();
    });
    broken("the router not last", &|m| {
        m["http_filters"].as_sequence_mut().unwrap().swap(0, 1);
    });
    broken("keys written into the configuration", &|m| {
        m["http_filters"][0]["typed_config"]["config"]["configuration"]["value"] =
            r#"{"keystore": {"gw1": {"primary": "k"}}}"#.into();
    });
    broken("the keystore's variable not passed to the VM", &|m| {
        m["http_filters"][0]["typed_config"]["config"]["vm_config"]["environment_variables"]
            ["host_env_keys"] = Value::Sequence(vec!["OTHER".into()]);
    });
    broken("the filter disabled on a route", &|m| {
        m["route_config"]["virtual_hosts"][0]["routes"][0]["typed_per_filter_config"]
            ["envoy.filters.http.wasm"]["disabled"] = Value::Bool(true);
    });
}

/// The checks above find what they are meant to: each property broken on its own, in a copy of
/// the gRPC recipe, is reported.
#[test]
fn each_broken_property_is_reported() {
    let recipe = envoy_configurations()
        .into_iter()
        .find(|c| c.at.starts_with("docs/ext-authz.md"))
        .expect("the gRPC recipe")
        .value;
    assert_eq!(configuration_problems(&recipe).0, Vec::<String>::new());
    let position = |manager: &Value, type_url: &str| {
        manager["http_filters"]
            .as_sequence()
            .unwrap()
            .iter()
            .position(|f| filter_type(f) == type_url)
            .unwrap_or_else(|| panic!("the recipe has no {type_url}"))
    };
    let broken = |why: &str, change: &dyn Fn(&mut Value)| {
        let mut copy = recipe.clone();
        let manager = &mut copy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
            [0]["typed_config"];
        change(manager);
        let problems = configuration_problems(&copy).0;
        assert!(!problems.is_empty(), "not reported: {why}");
    };
    broken("failing open", &|m| {
        let at = position(m, EXT_AUTHZ);
        m["http_filters"][at]["typed_config"]["failure_mode_allow"] = Value::Bool(true);
    });
    broken("failure_mode_allow left to its default", &|m| {
        let at = position(m, EXT_AUTHZ);
        let config = m["http_filters"][at]["typed_config"].as_mapping_mut();
        config.unwrap().remove("failure_mode_allow");
    });
    broken("underscore headers allowed", &|m| {
        m["common_http_protocol_options"]["headers_with_underscores_action"] = "ALLOW".into();
    });
    broken("underscores left to Envoy's default", &|m| {
        m.as_mapping_mut()
            .unwrap()
            .remove("common_http_protocol_options");
    });
    broken("a misspelt header removed", &|m| {
        let at = position(m, HEADER_MUTATION);
        m["http_filters"][at]["typed_config"]["mutations"]["request_mutations"][3]["remove"] =
            "x-apim-token-formats".into();
    });
    broken("a header removed in mixed case", &|m| {
        let at = position(m, HEADER_MUTATION);
        m["http_filters"][at]["typed_config"]["mutations"]["request_mutations"][1]["remove"] =
            "X-Apim-Key-Type".into();
    });
    broken("no header_mutation filter", &|m| {
        let at = position(m, HEADER_MUTATION);
        m["http_filters"].as_sequence_mut().unwrap().remove(at);
    });
    broken("header_mutation after ext_authz", &|m| {
        let (a, b) = (position(m, HEADER_MUTATION), position(m, EXT_AUTHZ));
        m["http_filters"].as_sequence_mut().unwrap().swap(a, b);
    });
    broken("the router not last", &|m| {
        let (a, b) = (position(m, ROUTER), position(m, EXT_AUTHZ));
        m["http_filters"].as_sequence_mut().unwrap().swap(a, b);
    });
    broken("a route that removes a verified header", &|m| {
        m["route_config"]["virtual_hosts"][0]["routes"][0]["request_headers_to_remove"] =
            Value::Sequence(vec!["X-Apim-Gateway-Id".into()]);
    });
}

fn of_kind<'a>(documents: &'a [Document], kind: &str) -> Vec<&'a Document> {
    documents
        .iter()
        .filter(|d| d.value.get("kind").and_then(Value::as_str) == Some(kind))
        .collect()
}

fn names(list: Option<&Value>) -> BTreeSet<&str> {
    list.and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// The text of one `## ` section of a guide, heading included.
fn section(guide: &str, heading: &str) -> String {
    let text = markdown::document(guide);
    let start = text
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("{guide}: no section {heading}"));
    let rest = &text[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 4);
    rest[..end].to_owned()
}

#[test]
fn istio_contour_and_envoy_gateway_say_the_same_in_their_own_terms() {
    let documents = markdown_documents();
    let identity: BTreeSet<&str> = IDENTITY.into_iter().collect();

    // Istio: the provider fails closed, and an EnvoyFilter on each workload a CUSTOM policy sends
    // to it puts the header_mutation filter before ext_authz and drops (or refuses) underscores.
    for operator in of_kind(&documents, "IstioOperator") {
        let providers = operator.value["spec"]["meshConfig"]["extensionProviders"]
            .as_sequence()
            .unwrap();
        for provider in providers {
            for kind in ["envoyExtAuthzGrpc", "envoyExtAuthzHttp"] {
                if let Some(p) = provider.get(kind) {
                    assert_eq!(p["failOpen"].as_bool(), Some(false), "{}", operator.at);
                }
            }
        }
    }
    let filters = of_kind(&documents, "EnvoyFilter");
    let policies = of_kind(&documents, "AuthorizationPolicy");
    assert!(!policies.is_empty(), "no Istio AuthorizationPolicy");
    for policy in policies
        .iter()
        .filter(|p| str_at(&p.value, &["spec", "action"]) == Some("CUSTOM"))
    {
        let namespace = str_at(&policy.value, &["metadata", "namespace"]);
        let selector = &policy.value["spec"]["selector"]["matchLabels"];
        let filter = filters
            .iter()
            .find(|f| {
                str_at(&f.value, &["metadata", "namespace"]) == namespace
                    && f.value["spec"]["workloadSelector"]["labels"] == *selector
            })
            .unwrap_or_else(|| panic!("{}: no EnvoyFilter on the same workload", policy.at));
        assert_eq!(
            str_at(&filter.value, &["apiVersion"]),
            Some("networking.istio.io/v1alpha3")
        );
        let patches = filter.value["spec"]["configPatches"].as_sequence().unwrap();
        let on_manager = |patch: &&Value| {
            str_at(patch, &["match", "context"]) == Some("SIDECAR_INBOUND")
                && str_at(
                    patch,
                    &["match", "listener", "filterChain", "filter", "name"],
                ) == Some("envoy.filters.network.http_connection_manager")
        };
        let insert = patches
            .iter()
            .filter(on_manager)
            .find(|p| str_at(p, &["applyTo"]) == Some("HTTP_FILTER"))
            .unwrap_or_else(|| panic!("{}: no HTTP_FILTER patch", filter.at));
        assert_eq!(
            str_at(
                insert,
                &[
                    "match",
                    "listener",
                    "filterChain",
                    "filter",
                    "subFilter",
                    "name"
                ]
            ),
            Some("envoy.filters.http.ext_authz"),
            "{}",
            filter.at
        );
        assert_eq!(
            str_at(insert, &["patch", "operation"]),
            Some("INSERT_BEFORE")
        );
        let value = &insert["patch"]["value"];
        assert!(is(
            value,
            HEADER_MUTATION,
            "envoy.filters.http.header_mutation"
        ));
        assert_eq!(
            removal_problems(value),
            Vec::<String>::new(),
            "{}",
            filter.at
        );
        let merge = patches
            .iter()
            .filter(on_manager)
            .find(|p| str_at(p, &["applyTo"]) == Some("NETWORK_FILTER"))
            .unwrap_or_else(|| panic!("{}: no NETWORK_FILTER patch", filter.at));
        assert_eq!(str_at(merge, &["patch", "operation"]), Some("MERGE"));
        let manager = &merge["patch"]["value"]["typed_config"];
        assert_eq!(str_at(manager, &["@type"]), Some(MANAGER));
        assert!(
            matches!(
                str_at(
                    manager,
                    &[
                        "common_http_protocol_options",
                        "headers_with_underscores_action"
                    ]
                ),
                Some("REJECT_REQUEST" | "DROP_HEADER")
            ),
            "{}",
            filter.at
        );
    }

    // Contour: authorization fails closed; no checked route removes the verified headers (its
    // requestHeadersPolicy runs after ext_authz). It has no setting for the rest: the guide says so.
    let proxies = of_kind(&documents, "HTTPProxy");
    assert!(!proxies.is_empty(), "no Contour HTTPProxy");
    for proxy in proxies {
        let authorization = &proxy.value["spec"]["virtualhost"]["authorization"];
        if authorization.is_null() {
            continue;
        }
        assert_eq!(
            authorization["failOpen"].as_bool(),
            Some(false),
            "{}",
            proxy.at
        );
        for route in proxy.value["spec"]["routes"].as_sequence().unwrap() {
            if route["authPolicy"]["disabled"].as_bool() == Some(true) {
                continue;
            }
            let removed = identity_named_under(route, "remove");
            assert!(
                removed.is_empty(),
                "{}: a checked route removes {removed:?}",
                proxy.at
            );
        }
    }
    let contour = section("docs/ext-authz.md", "Contour");
    for says in [
        "requestHeadersPolicy",
        "headers_with_underscores_action",
        "authPolicy",
    ] {
        assert!(
            contour.contains(says),
            "the Contour section never says {says}"
        );
    }

    // Envoy Gateway: extAuth fails closed, and a ClientTrafficPolicy on a Gateway removes the four
    // headers before any HTTP filter (earlyRequestHeaders) and drops or refuses underscores.
    let security = of_kind(&documents, "SecurityPolicy");
    assert!(!security.is_empty(), "no Envoy Gateway SecurityPolicy");
    for policy in security {
        let ext_auth = &policy.value["spec"]["extAuth"];
        if !ext_auth.is_null() {
            assert_eq!(ext_auth["failOpen"].as_bool(), Some(false), "{}", policy.at);
        }
    }
    let client = of_kind(&documents, "ClientTrafficPolicy");
    let client = client
        .first()
        .expect("an Envoy Gateway ClientTrafficPolicy");
    let spec = &client.value["spec"];
    assert!(spec["targetRefs"]
        .as_sequence()
        .unwrap()
        .iter()
        .all(|t| str_at(t, &["kind"]) == Some("Gateway")));
    assert_eq!(
        names(spec["headers"]["earlyRequestHeaders"].get("remove")),
        identity,
        "{}",
        client.at
    );
    assert!(
        matches!(
            str_at(spec, &["headers", "withUnderscoresAction"]),
            Some("RejectRequest" | "DropHeader")
        ),
        "{}",
        client.at
    );
    for route in of_kind(&documents, "HTTPRoute") {
        let removed = identity_named_under(&route.value, "remove");
        assert!(removed.is_empty(), "{}: removes {removed:?}", route.at);
    }
}

/// Whether `url` (a `WasmPlugin`'s `url`, an `EnvoyExtensionPolicy`'s image or HTTP URL) names the
/// apim-sas filter.
fn names_the_filter(url: &str) -> bool {
    url.contains("apim-sas") || url.contains("apim_sas")
}

/// Whether `container` takes `variable` from a Secret (`valueFrom.secretKeyRef`), never as a
/// literal `value`.
fn variable_from_a_secret(container: &Value, variable: &str) -> bool {
    container["env"].as_sequence().is_some_and(|env| {
        env.iter().any(|e| {
            str_at(e, &["name"]) == Some(variable)
                && e.get("value").is_none()
                && str_at(e, &["valueFrom", "secretKeyRef", "key"]).is_some()
        })
    })
}

/// What is wrong with the Istio `WasmPlugin`s and Envoy Gateway `EnvoyExtensionPolicy`s among
/// `documents` that load the filter, and how many of each there are. Each must fail closed
/// (`failStrategy` `FAIL_CLOSE`, its default, or `FAIL_RELOAD`; `failOpen` false), run before
/// Istio's own authentication and authorization (`phase: AUTHN`, so that an
/// `AuthorizationPolicy` matching `x-apim-gateway-id` sees the verified value), take its keys from
/// a variable of the proxy's own environment (`keystore_env`; Istio's `valueFrom: HOST`, Envoy
/// Gateway's `env.hostKeys`), never inline (Istio's `INLINE`, the default, and the plugin's own
/// `keystore` write the keys into the configuration pushed to every proxy), give that variable to
/// the proxy from a Secret, and (Envoy Gateway) name the Gateway, so that no route behind it is
/// left out.
fn wasm_platform_problems(documents: &[Document]) -> (Vec<String>, usize, usize) {
    let mut problems = Vec::new();
    let deployments = of_kind(documents, "Deployment");
    let proxies = of_kind(documents, "EnvoyProxy");
    let keystore_variable = |at: &str, config: &Value, problems: &mut Vec<String>| {
        if config.get("keystore").is_some() {
            problems.push(format!("{at}: keys inline in the plugin configuration"));
        }
        let variable = str_at(config, &["keystore_env"]).map(str::to_owned);
        if variable.is_none() {
            problems.push(format!("{at}: no keystore_env"));
        }
        variable
    };
    let plugins: Vec<&Document> = of_kind(documents, "WasmPlugin")
        .into_iter()
        .filter(|p| str_at(&p.value, &["spec", "url"]).is_some_and(names_the_filter))
        .collect();
    for plugin in &plugins {
        let (at, spec) = (&plugin.at, &plugin.value["spec"]);
        match str_at(spec, &["failStrategy"]) {
            None | Some("FAIL_CLOSE" | "FAIL_RELOAD") => {}
            Some(other) => problems.push(format!("{at}: failStrategy {other}")),
        }
        if str_at(spec, &["phase"]) != Some("AUTHN") {
            problems.push(format!("{at}: not in phase AUTHN"));
        }
        let Some(variable) = keystore_variable(at, &spec["pluginConfig"], &mut problems) else {
            continue;
        };
        let from_host = spec["vmConfig"]["env"].as_sequence().is_some_and(|env| {
            env.iter().any(|e| {
                str_at(e, &["name"]) == Some(variable.as_str())
                    && str_at(e, &["valueFrom"]) == Some("HOST")
            })
        });
        if !from_host {
            problems.push(format!(
                "{at}: {variable} is not passed to the VM with valueFrom: HOST"
            ));
        }
        let namespace = str_at(&plugin.value, &["metadata", "namespace"]);
        let selector = &spec["selector"]["matchLabels"];
        let sidecar_has_it = deployments
            .iter()
            .filter(|d| {
                str_at(&d.value, &["metadata", "namespace"]) == namespace
                    && selector.as_mapping().is_some_and(|labels| {
                        labels.iter().all(|(k, v)| {
                            d.value["spec"]["template"]["metadata"]["labels"].get(k) == Some(v)
                        })
                    })
            })
            .flat_map(|d| {
                d.value["spec"]["template"]["spec"]["containers"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
            })
            .filter(|c| str_at(c, &["name"]) == Some("istio-proxy"))
            .any(|c| variable_from_a_secret(c, &variable));
        if !sidecar_has_it {
            problems.push(format!(
                "{at}: no selected workload's istio-proxy container takes {variable} from a Secret"
            ));
        }
    }
    let mut policies = 0;
    for policy in of_kind(documents, "EnvoyExtensionPolicy") {
        let (at, spec) = (&policy.at, &policy.value["spec"]);
        for wasm in spec["wasm"].as_sequence().into_iter().flatten() {
            let url = str_at(wasm, &["code", "image", "url"])
                .or_else(|| str_at(wasm, &["code", "http", "url"]));
            if !url.is_some_and(names_the_filter) {
                continue;
            }
            policies += 1;
            if wasm["failOpen"].as_bool() == Some(true) {
                problems.push(format!("{at}: failOpen true"));
            }
            let targets = spec["targetRefs"].as_sequence();
            if !targets.is_some_and(|t| {
                !t.is_empty() && t.iter().all(|t| str_at(t, &["kind"]) == Some("Gateway"))
            }) {
                problems.push(format!("{at}: does not name Gateways alone"));
            }
            let Some(variable) = keystore_variable(at, &wasm["config"], &mut problems) else {
                continue;
            };
            if !names(wasm["env"].get("hostKeys")).contains(variable.as_str()) {
                problems.push(format!("{at}: {variable} is not in env.hostKeys"));
            }
            let envoy_has_it = proxies.iter().any(|p| {
                let container =
                    &p.value["spec"]["provider"]["kubernetes"]["envoyDeployment"]["container"];
                variable_from_a_secret(container, &variable)
            });
            if !envoy_has_it {
                problems.push(format!(
                    "{at}: no EnvoyProxy gives the Envoy container {variable} from a Secret"
                ));
            }
        }
    }
    (problems, plugins.len(), policies)
}

#[test]
fn the_filters_kubernetes_recipes_fail_closed_and_keep_keys_out_of_the_configuration() {
    let documents = markdown_documents();
    let (problems, plugins, policies) = wasm_platform_problems(&documents);
    assert_eq!(problems, Vec::<String>::new());
    assert!(
        plugins >= 1 && policies >= 1,
        "{plugins} WasmPlugin and {policies} EnvoyExtensionPolicy found in the docs"
    );

    // Each property broken on its own, in a copy of the guide's documents, is reported.
    let guide: Vec<Document> = documents
        .into_iter()
        .filter(|d| d.at.starts_with("docs/envoy-wasm.md"))
        .collect();
    let broken = |why: &str, kind: &str, change: &dyn Fn(&mut Value)| {
        let mut copy: Vec<Document> = guide
            .iter()
            .map(|d| Document {
                at: d.at.clone(),
                value: d.value.clone(),
            })
            .collect();
        let document = copy
            .iter_mut()
            .find(|d| d.value.get("kind").and_then(Value::as_str) == Some(kind))
            .unwrap_or_else(|| panic!("docs/envoy-wasm.md has no {kind}"));
        change(&mut document.value);
        assert!(
            !wasm_platform_problems(&copy).0.is_empty(),
            "not reported: {why}"
        );
    };
    broken("Istio failing open", "WasmPlugin", &|p| {
        p["spec"]["failStrategy"] = "FAIL_OPEN".into();
    });
    broken("Istio's default phase", "WasmPlugin", &|p| {
        p["spec"].as_mapping_mut().unwrap().remove("phase");
    });
    broken("keys inline in Istio's pluginConfig", "WasmPlugin", &|p| {
        p["spec"]["pluginConfig"]["keystore"] = "{}".into();
    });
    broken("the variable given INLINE", "WasmPlugin", &|p| {
        p["spec"]["vmConfig"]["env"][0]["valueFrom"] = "INLINE".into();
    });
    broken(
        "the sidecar's variable written as a value",
        "Deployment",
        &|d| {
            let sidecar = &mut d["spec"]["template"]["spec"]["containers"][1]["env"][0];
            sidecar["value"] = "{}".into();
            sidecar.as_mapping_mut().unwrap().remove("valueFrom");
        },
    );
    broken("Envoy Gateway failing open", "EnvoyExtensionPolicy", &|p| {
        p["spec"]["wasm"][0]["failOpen"] = Value::Bool(true);
    });
    broken("one HTTPRoute named", "EnvoyExtensionPolicy", &|p| {
        p["spec"]["targetRefs"][0]["kind"] = "HTTPRoute".into();
    });
    broken(
        "keys inline in Envoy Gateway's config",
        "EnvoyExtensionPolicy",
        &|p| {
            p["spec"]["wasm"][0]["config"]["keystore"] = "{}".into();
        },
    );
    broken(
        "the variable not in hostKeys",
        "EnvoyExtensionPolicy",
        &|p| {
            p["spec"]["wasm"][0]["env"]["hostKeys"] = Value::Sequence(vec!["OTHER".into()]);
        },
    );
    broken(
        "the Envoy container's variable as a value",
        "EnvoyProxy",
        &|p| {
            let env =
                &mut p["spec"]["provider"]["kubernetes"]["envoyDeployment"]["container"]["env"][0];
            env["value"] = "{}".into();
            env.as_mapping_mut().unwrap().remove("valueFrom");
        },
    );
}
