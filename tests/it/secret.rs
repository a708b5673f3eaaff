//! `mint --output k8s-secret` as Kubernetes reads it: the manifest parsed as YAML, the token under
//! the key each installer reads, names the API server accepts; and mint's refusal of flags the
//! chosen output would ignore.

use assert_cmd::Command;
use base64::Engine as _;
use proptest::prelude::*;
use serde_json::Value;

use crate::common::Run;

const NOW: &str = "2026-04-21T00:00:00Z";
const KEY: &str = "sample-key-for-secret-tests";

fn apim(args: &[&str]) -> Run {
    let out = Command::cargo_bin("apim-sas")
        .unwrap()
        .args(args)
        .env("APIM_SAS_KEY", KEY)
        .output()
        .unwrap();
    Run::from(out)
}

/// `mint` for gateway `id` at the fixed clock, 7 days, with `extra` flags; exit 0 expected.
fn mint(id: &str, extra: &[&str]) -> String {
    let id_arg = format!("--id={id}");
    let mut args = vec!["mint", &id_arg, "--now", NOW, "--ttl", "7d"];
    args.extend_from_slice(extra);
    let r = apim(&args);
    assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    r.stdout
}

/// The Secret as the API server would read it: YAML into a JSON-like tree.
fn secret(yaml: &str) -> Value {
    let doc: Value = serde_norway::from_str(yaml).unwrap_or_else(|e| panic!("{e}: {yaml}"));
    assert_eq!(doc["apiVersion"], "v1");
    assert_eq!(doc["kind"], "Secret");
    assert_eq!(doc["type"], "Opaque");
    doc
}

/// What the gateway reads from the Secret under `key`: `stringData` as written, `data` decoded.
/// Both must hold the same value, and nothing else may sit beside it.
fn read_key(doc: &Value, key: &str) -> String {
    let string_data = doc["stringData"].as_object().unwrap();
    let data = doc["data"].as_object().unwrap();
    assert_eq!(string_data.keys().collect::<Vec<_>>(), [key]);
    assert_eq!(data.keys().collect::<Vec<_>>(), [key]);
    let plain = string_data[key].as_str().unwrap().to_owned();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(data[key].as_str().unwrap())
        .unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), plain);
    plain
}

#[test]
fn each_installer_finds_the_token_under_its_key() {
    let bare = mint("gw1", &[]);
    let bare = bare.trim();
    assert!(bare.starts_with("gw1&202604280000&"), "{bare}");
    let expected = format!("GatewayKey {bare}");

    // The default: `value`, what the Azure portal's deployment YAML reads.
    let doc = secret(&mint("gw1", &["--output", "k8s-secret"]));
    assert_eq!(read_key(&doc, "value"), expected);
    assert_eq!(doc["metadata"]["name"], "gw1-token");
    assert_eq!(doc["metadata"]["annotations"]["apim-sas/gateway-id"], "gw1");
    assert_eq!(
        doc["metadata"]["annotations"]["apim-sas/expiry"],
        "2026-04-28T00:00:00Z"
    );

    for key in ["value", "gateway-key", "config.service.auth.key"] {
        let doc = secret(&mint(
            "gw1",
            &[
                "--output",
                "k8s-secret",
                "--secret-key",
                key,
                "--secret-name",
                "apim-gw1",
                "--namespace",
                "apim",
            ],
        ));
        assert_eq!(read_key(&doc, key), expected, "{key}");
        assert_eq!(doc["metadata"]["name"], "apim-gw1");
        assert_eq!(doc["metadata"]["namespace"], "apim");
    }

    // Each value is named in --help with what reads it.
    let help = apim(&["mint", "--help"]).stdout;
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for needle in [
        "value:",
        "Azure portal",
        "gateway-key:",
        "Helm chart",
        "secret.existingSecretName",
        "config.service.auth.key:",
        "Azure documentation",
    ] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
    let r = apim(&[
        "mint",
        "--id",
        "gw1",
        "--output",
        "k8s-secret",
        "--secret-key",
        "token",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

/// A DNS-1123 subdomain, written from the Kubernetes API conventions independently of the tool:
/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*`, at most 253 characters.
fn dns1123_subdomain(name: &str) -> bool {
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    name.split('.').all(|label| {
        let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        let mut chars = label.chars();
        let (Some(first), Some(last)) = (chars.next(), label.chars().last()) else {
            return false;
        };
        ok(first) && ok(last) && label.chars().all(|c| ok(c) || c == '-')
    })
}

#[test]
fn default_names_are_valid_kubernetes_names() {
    for (id, name) in [
        ("gw1", "gw1-token"),
        ("gw._x", "gw.x-token"),
        ("My_GW.1", "my-gw.1-token"),
        ("...", "token"),
        ("-", "token"),
        ("a..b", "a.b-token"),
        ("._.", "token"),
        ("GW-", "gw--token"),
        ("x.", "x.token"),
        ("~{}|", "token"),
    ] {
        let doc = secret(&mint(id, &["--output", "k8s-secret"]));
        assert_eq!(doc["metadata"]["name"], name, "{id}");
        assert!(dns1123_subdomain(name));
        assert_eq!(doc["metadata"]["annotations"]["apim-sas/gateway-id"], id);
    }
    let dots = ".".repeat(80);
    let doc = secret(&mint(&dots, &["--output", "k8s-secret"]));
    assert_eq!(doc["metadata"]["name"], "token");
}

/// Every valid gateway id: printable ASCII but `&`, 1–80 bytes, not starting with `uid=`
/// (and not `managed`, which mint refuses).
fn gateway_id() -> impl Strategy<Value = String> {
    let byte = prop_oneof![
        8 => (0x21u8..=0x7e).prop_filter("no &", |b| *b != b'&'),
        2 => prop::sample::select(b"._-~".to_vec()),
    ];
    prop::collection::vec(byte, 1..=80)
        .prop_map(|bytes| String::from_utf8(bytes).unwrap())
        .prop_filter("valid id", |id| {
            !id.starts_with("uid=") && !id.eq_ignore_ascii_case("managed")
        })
}

proptest! {
    // Each case runs the binary: a few dozen cases keep the test under a few seconds.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_gateway_id_gets_a_valid_secret_name(id in gateway_id()) {
        let doc = secret(&mint(&id, &["--output", "k8s-secret"]));
        let name = doc["metadata"]["name"].as_str().unwrap();
        prop_assert!(dns1123_subdomain(name), "{id:?} gave {name:?}");
        prop_assert!(name.ends_with("token"));
        let value = read_key(&doc, "value");
        prop_assert!(value.starts_with(&format!("GatewayKey {id}&202604280000&")), "{value}");
    }
}

#[track_caller]
fn refused(args: &[&str], target: &str) {
    let id_args = ["mint", "--id", "gw1", "--now", NOW];
    let mut all = id_args.to_vec();
    all.extend_from_slice(args);
    let r = apim(&all);
    assert_eq!(r.code, 2, "{all:?}: {}{}", r.stdout, r.stderr);
    if args.contains(&"json") {
        let doc: Value = serde_json::from_str(r.stdout.trim()).unwrap();
        assert_eq!(doc["error"]["code"], "InvalidArgument", "{all:?}");
        assert_eq!(doc["error"]["target"], target, "{all:?}");
        assert!(doc["error"]["message"].as_str().unwrap().len() > 10);
        assert_eq!(r.stderr, "");
    } else {
        assert_eq!(r.stdout, "", "{all:?}");
        assert!(
            r.stderr.starts_with("error: InvalidArgument: "),
            "{all:?}: {}",
            r.stderr
        );
    }
}

#[test]
fn kubernetes_names_the_api_server_would_refuse_are_refused() {
    for name in [
        "Gw1",
        "gw_1",
        "-gw",
        "gw-",
        "gw..1",
        ".gw",
        "gw.",
        "gw 1",
        "gw/1",
        "",
        "gw.-x",
        "é",
        &"a".repeat(254),
    ] {
        refused(
            &["--output", "k8s-secret", "--secret-name", name],
            "secretName",
        );
        assert!(!dns1123_subdomain(name), "{name}");
    }
    for name in ["a", "gw1-token", "gw.1", "0", "a.b.c", &"a".repeat(253)] {
        assert!(dns1123_subdomain(name));
        let doc = secret(&mint(
            "gw1",
            &["--output", "k8s-secret", "--secret-name", name],
        ));
        assert_eq!(doc["metadata"]["name"], name);
    }
    for namespace in [
        "Apim",
        "apim.prod",
        "-apim",
        "apim-",
        "",
        "ap im",
        &"a".repeat(64),
    ] {
        refused(
            &["--output", "k8s-secret", "--namespace", namespace],
            "namespace",
        );
    }
    for namespace in ["apim", "a", "apim-1", &"a".repeat(63)] {
        let doc = secret(&mint(
            "gw1",
            &["--output", "k8s-secret", "--namespace", namespace],
        ));
        assert_eq!(doc["metadata"]["namespace"], namespace);
    }
}

#[test]
fn flags_the_output_ignores_are_refused() {
    for output in ["text", "json", "docker-env"] {
        for (flag, value, target) in [
            ("--secret-name", "gw1-token", "secretName"),
            ("--namespace", "apim", "namespace"),
            ("--secret-key", "gateway-key", "secretKey"),
        ] {
            refused(&["--output", output, flag, value], target);
        }
    }
    for output in ["k8s-secret", "docker-env"] {
        for scheme in ["none", "sas"] {
            refused(&["--output", output, "--scheme", scheme], "scheme");
        }
        refused(&["--output", output, "--format", "uid"], "format");
        // What they write anyway is not refused.
        let r = apim(&[
            "mint",
            "--id",
            "gw1",
            "--now",
            NOW,
            "--output",
            output,
            "--scheme",
            "gateway-key",
            "--format",
            "compact",
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stdout.contains("GatewayKey gw1&"), "{}", r.stdout);
    }
    // The JSON error shape under --output json.
    refused(&["--output", "json", "--namespace", "apim"], "namespace");
    let r = apim(&[
        "mint",
        "--id",
        "gw1",
        "--now",
        NOW,
        "--output",
        "json",
        "--secret-key",
        "value",
    ]);
    let doc: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(
        doc["error"]["message"],
        "--secret-key: only --output k8s-secret writes a Secret, and the output is json"
    );
    // The refusal comes before anything else is read: no key needed to be told.
    let out = Command::cargo_bin("apim-sas")
        .unwrap()
        .args([
            "mint",
            "--id",
            "gw1",
            "--output",
            "docker-env",
            "--scheme",
            "sas",
        ])
        .env_remove("APIM_SAS_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("InvalidArgument"));
}
