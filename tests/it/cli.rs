//! The real binary, driven as an operator would: every command, output, exit code and error code.

use std::path::{Path, PathBuf};

use crate::common::Run;
use assert_cmd::Command;

use crate::common::{load, Vector};
use serde_json::Value;

/// Appears in every key file these tests write; must appear in no output, error or warning.
const CANARY: &str = "CANARY-KEY-0f3a9c71-never-print-me";
const NOW: &str = "2026-04-21T00:00:00Z";

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Writes a private file (mode 600) in the temp dir.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        path
    }

    /// The standard keys: gw1 and gw2, primary and secondary, each containing the canary.
    fn keys(&self) -> PathBuf {
        self.file(
            "gw1.keys.json",
            &format!(r#"{{"primary": "{CANARY}-p1", "secondary": "{CANARY}-s1"}}"#),
        )
    }

    fn keystore(&self) -> PathBuf {
        self.file(
            "store.json",
            &format!(
                r#"{{"gw1": {{"primary": "{CANARY}-p1", "secondary": "{CANARY}-s1"}},
                    "gw2": {{"primary": "{CANARY}-p2"}}}}"#
            ),
        )
    }
}

fn run(args: &[&str], env_key: Option<&str>, stdin: Option<&str>) -> Run {
    let mut cmd = Command::cargo_bin("apim-sas").unwrap();
    cmd.args(args).env_remove("APIM_SAS_KEY");
    if let Some(key) = env_key {
        cmd.env("APIM_SAS_KEY", key);
    }
    cmd.write_stdin(stdin.unwrap_or("").to_owned());
    let out = cmd.output().unwrap();
    let run = Run::from(out);
    assert!(
        !run.stdout.contains(CANARY) && !run.stderr.contains(CANARY),
        "the key leaked: {args:?}\n{}\n{}",
        run.stdout,
        run.stderr
    );
    run
}

fn apim(args: &[&str]) -> Run {
    run(args, None, None)
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn mint(env: &Env, id: &str, extra: &[&str]) -> String {
    let keys = env.keys();
    let mut args = vec![
        "mint",
        "--id",
        id,
        "--keys",
        p(&keys),
        "--now",
        NOW,
        "--ttl",
        "7d",
    ];
    args.extend_from_slice(extra);
    let r = apim(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout.trim().to_owned()
}

#[track_caller]
fn assert_error(r: &Run, exit: i32, code: &str, target: &str) {
    assert_eq!(r.code, exit, "stdout {} stderr {}", r.stdout, r.stderr);
    let doc = r.json();
    assert_eq!(doc["error"]["code"], code, "{doc}");
    assert_eq!(doc["error"]["target"], target, "{doc}");
    assert!(doc["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

#[test]
fn mint_matches_the_python_vectors_from_every_key_source() {
    let vectors: Vec<Vector> = load("tests/vectors/golden.json");
    let env = Env::new();
    for (i, v) in vectors.iter().enumerate() {
        if v.now >= v.expiry_o.replace(".0000000Z", "Z")
            && v.expiry_o.starts_with("0001-01-01T00:00")
        {
            continue; // the one vector whose `now` is its expiry: minting refuses it
        }
        let key_file = env.file("key.txt", &format!("  {}\n", v.key));
        let base = [
            "mint",
            "--now",
            &v.now,
            "--expiry",
            &v.expiry,
            "--format",
            &v.format,
            "--max-lifetime",
            "30d",
        ];
        let id_arg = format!("--id={}", v.id);
        let mut args: Vec<&str> = base.to_vec();
        args.push(&id_arg);
        let mut from_file = args.clone();
        from_file.extend(["--key-file", p(&key_file)]);
        let r = apim(&from_file);
        assert_eq!(
            (r.code, r.stdout.trim()),
            (0, v.token.as_str()),
            "{v:?} {}",
            r.stderr
        );
        // Every fourth vector through the other sources too.
        if i % 4 != 0 {
            continue;
        }
        let r = run(&args, Some(&v.key), None);
        assert_eq!(r.stdout.trim(), v.token, "env {v:?}");
        let pair = env.file(
            "pair.json",
            &serde_json::json!({"primary": "other", "secondary": v.key}).to_string(),
        );
        let mut from_pair = args.clone();
        from_pair.extend(["--keys", p(&pair), "--key-type", "secondary"]);
        assert_eq!(apim(&from_pair).stdout.trim(), v.token, "keys {v:?}");
        let store = env.file(
            "store.json",
            &serde_json::json!({ v.id.clone(): {"primary": v.key} }).to_string(),
        );
        let mut from_store = args.clone();
        from_store.extend(["--keystore", p(&store)]);
        assert_eq!(apim(&from_store).stdout.trim(), v.token, "keystore {v:?}");
        let mut table = toml_table(&v.id, &v.key);
        table.push('\n');
        let toml = env.file("store.toml", &table);
        let mut from_toml = args.clone();
        from_toml.extend(["--keystore", p(&toml)]);
        assert_eq!(apim(&from_toml).stdout.trim(), v.token, "toml {v:?}");
    }
}

/// `["<id>"]\nprimary = "<key>"` with TOML's basic-string escapes (JSON's are a subset).
fn toml_table(id: &str, key: &str) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap().replace("\\/", "/");
    format!("[{}]\nprimary = {}", q(id), q(key))
}

#[test]
fn mint_outputs() {
    let env = Env::new();
    let bare = mint(&env, "gw1", &[]);
    assert!(bare.starts_with("gw1&202604280000&"), "{bare}");
    assert_eq!(
        mint(&env, "gw1", &["--scheme", "gateway-key"]),
        format!("GatewayKey {bare}")
    );
    assert_eq!(
        mint(&env, "gw1", &["--scheme", "sas"]),
        format!("SharedAccessSignature {bare}")
    );

    let json: Value = serde_json::from_str(&mint(&env, "gw1", &["--output", "json"])).unwrap();
    assert_eq!(json["value"], bare.as_str());
    assert_eq!(json["id"], "gw1");
    assert_eq!(json["expiry"], "2026-04-28T00:00:00Z");
    assert_eq!(json["keyType"], "primary");
    assert_eq!(json["format"], "compact");

    let uid: Value = serde_json::from_str(&mint(
        &env,
        "gw1",
        &[
            "--output",
            "json",
            "--format",
            "uid",
            "--key-type",
            "SECONDARY",
        ],
    ))
    .unwrap();
    assert_eq!(uid["keyType"], "secondary");
    assert_eq!(uid["format"], "uid");
    assert!(uid["value"]
        .as_str()
        .unwrap()
        .starts_with("uid=gw1&ex=2026-04-28T00:00:00.0000000Z&sn="));

    let docker = mint(&env, "gw1", &["--output", "docker-env"]);
    assert_eq!(docker, format!("config.service.auth=GatewayKey {bare}"));

    let yaml = mint(
        &env,
        "gw1",
        &[
            "--output",
            "k8s-secret",
            "--secret-name",
            "gw1-token",
            "--namespace",
            "apim",
        ],
    );
    let secret: Value = serde_norway::from_str(&yaml).unwrap();
    assert_eq!(secret["apiVersion"], "v1");
    assert_eq!(secret["kind"], "Secret");
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(secret["metadata"]["name"], "gw1-token");
    assert_eq!(secret["metadata"]["namespace"], "apim");
    assert_eq!(
        secret["stringData"]["value"],
        format!("GatewayKey {bare}").as_str()
    );
    use base64::Engine as _;
    let data = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["value"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        String::from_utf8(data).unwrap(),
        format!("GatewayKey {bare}")
    );

    // Default name from the id, made a valid Kubernetes name; no namespace unless asked.
    let yaml = mint(&env, "My_GW.1", &["--output", "k8s-secret"]);
    let secret: Value = serde_norway::from_str(&yaml).unwrap();
    assert_eq!(secret["metadata"]["name"], "my-gw.1-token");
    assert!(secret["metadata"].get("namespace").is_none());
}

#[test]
fn mint_refusals_exit_2_with_their_codes() {
    let env = Env::new();
    let keys = env.keys();
    let k = p(&keys);
    let cases: &[(&[&str], &str, &str)] = &[
        (&["--id", "managed"], "InvalidGatewayLocation", "id"),
        (&["--id", "MANAGED"], "InvalidGatewayLocation", "id"),
        (&["--id", ""], "EmptyGatewayId", "id"),
        (&["--id", "gw 1"], "InvalidGatewayId", "id"),
        (&["--id", "gw1", "--ttl", "31d"], "ExpiryTooFar", "expiry"),
        (
            &["--id", "gw1", "--expiry", "2026-04-20T00:00:00Z"],
            "ExpiryInPast",
            "expiry",
        ),
        (&["--id", "gw1", "--ttl", "30s"], "ExpiryInPast", "expiry"),
        (
            &["--id", "gw1", "--key-type", "tertiary"],
            "InvalidKeyType",
            "keyType",
        ),
        (&["--id", "gw1", "--ttl", "soon"], "InvalidExpiry", "expiry"),
        (
            &["--id", "gw1", "--expiry", "tomorrow"],
            "InvalidExpiry",
            "expiry",
        ),
        (
            &["--id", "gw1", "--max-lifetime", "forever"],
            "InvalidExpiry",
            "expiry",
        ),
    ];
    for (extra, code, target) in cases {
        let mut args = vec!["mint", "--keys", k, "--now", NOW, "--output", "json"];
        args.extend_from_slice(extra);
        assert_error(&apim(&args), 2, code, target);
    }
    // --max-lifetime none lifts the cap (management tokens).
    let r = apim(&[
        "mint",
        "--id",
        "gw1",
        "--keys",
        k,
        "--now",
        NOW,
        "--ttl",
        "365d",
        "--max-lifetime",
        "none",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("gw1&202704210000&"));
    // Text errors go to stderr with the code.
    let r = apim(&["mint", "--id", "managed", "--keys", k, "--now", NOW]);
    assert_eq!((r.code, r.stdout.as_str()), (2, ""));
    assert!(r.stderr.contains("InvalidGatewayLocation"), "{}", r.stderr);
    // --now itself.
    assert_error(
        &apim(&[
            "mint",
            "--id",
            "gw1",
            "--keys",
            k,
            "--now",
            "yesterday",
            "--output",
            "json",
        ]),
        2,
        "InvalidExpiry",
        "expiry",
    );
}

#[test]
fn key_source_errors_exit_2() {
    let env = Env::new();
    let empty = env.file("empty.txt", " \n");
    let ctrl = env.file("ctrl.txt", &format!("{CANARY}\u{7}x"));
    let broken = env.file("broken.json", &format!(r#"{{"primary": "{CANARY}""#));
    let only_primary = env.file("p.json", &format!(r#"{{"primary": "{CANARY}"}}"#));
    let bad_toml = env.file("bad.toml", &format!("[gw1]\nprimary = {CANARY}\n"));
    let missing = env.dir.path().join("missing.json");
    let store = env.keystore();
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (vec!["--key-file", p(&empty)], "EmptyKey", "key"),
        (vec!["--key-file", p(&ctrl)], "InvalidKey", "key"),
        (vec!["--keys", p(&broken)], "InvalidKeyFile", "key"),
        (vec!["--keys", p(&missing)], "InvalidKeyFile", "key"),
        (vec!["--keystore", p(&bad_toml)], "InvalidKeyFile", "key"),
        (
            vec!["--keys", p(&only_primary), "--key-type", "secondary"],
            "KeyNotFound",
            "key",
        ),
        (
            vec![
                "--keystore",
                p(&store),
                "--key-type",
                "secondary",
                "--id",
                "gw2",
            ],
            "KeyNotFound",
            "key",
        ),
        (vec![], "KeyNotFound", "key"),
    ];
    for (extra, code, target) in cases {
        let mut args = vec!["mint", "--now", NOW, "--output", "json"];
        if !extra.contains(&"--id") {
            args.extend(["--id", "gw1"]);
        }
        args.extend(extra);
        let r = apim(&args);
        assert_error(&r, 2, code, target);
        if code == "InvalidKeyFile" {
            let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
            assert!(
                message.contains(env.dir.path().to_str().unwrap()),
                "{message}"
            );
        }
    }
    let r = run(
        &["mint", "--id", "gw1", "--now", NOW, "--output", "json"],
        Some(""),
        None,
    );
    assert_error(&r, 2, "EmptyKey", "key");
    // Two key sources at once: clap's usage error, exit 2.
    let keys = env.keys();
    let r = apim(&[
        "mint",
        "--id",
        "gw1",
        "--keys",
        p(&keys),
        "--keystore",
        p(&store),
    ]);
    assert_eq!(r.code, 2);
    // There is no flag that takes a key.
    for flag in ["--key", "--primary-key", "--secret"] {
        let r = apim(&["mint", "--id", "gw1", flag, "abc"]);
        assert_eq!(r.code, 2, "{flag}");
    }
}

#[test]
fn key_files_readable_by_others_are_warned_about() {
    let env = Env::new();
    let keys = env.keys();
    let args = ["mint", "--id", "gw1", "--keys", p(&keys), "--now", NOW];
    assert!(!apim(&args).stderr.contains("warning"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o644)).unwrap();
        let r = apim(&args);
        assert_eq!(r.code, 0);
        assert!(
            r.stderr.contains("warning") && r.stderr.contains("chmod 600"),
            "{}",
            r.stderr
        );
    }
}

#[test]
fn verify_outcomes() {
    let env = Env::new();
    let keys = env.keys();
    let store = env.keystore();
    let token = mint(&env, "gw1", &[]);
    let secondary = mint(&env, "gw1", &["--key-type", "secondary", "--format", "uid"]);
    let verify = |token: &str, now: &str, extra: &[&str]| {
        let mut args = vec![
            "verify",
            "--id",
            "gw1",
            "--keys",
            p(&keys),
            "--now",
            now,
            "--output",
            "json",
        ];
        args.extend_from_slice(extra);
        args.push(token);
        apim(&args)
    };

    let r = verify(&token, NOW, &[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let doc = r.json();
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["id"], "gw1");
    assert_eq!(doc["expiry"], "2026-04-28T00:00:00Z");
    assert_eq!(doc["keyType"], "primary");
    assert_eq!(doc["format"], "compact");
    assert_eq!(doc["expiresInSeconds"], 7 * 86_400);

    let doc = verify(&secondary, NOW, &[]).json();
    assert_eq!(
        (doc["keyType"].as_str(), doc["format"].as_str()),
        (Some("secondary"), Some("uid"))
    );
    // Only the primary key: the secondary's token does not verify.
    let r = verify(&secondary, NOW, &["--key-type", "primary"]);
    assert_eq!(r.code, 1);

    let refused = |r: Run, code: &str| {
        assert_eq!(r.code, 1, "{}", r.stdout);
        let doc = r.json();
        assert_eq!(doc["valid"], false);
        assert_eq!(doc["error"]["code"], code, "{doc}");
    };
    let forged = token.replacen("&202604280000&", "&202604290000&", 1);
    refused(verify(&forged, NOW, &[]), "SignatureMismatch");
    refused(verify(&token, "2026-04-28T00:01:00Z", &[]), "TokenExpired");
    // Within the leeway, still valid; a longer leeway lets it through later.
    assert_eq!(verify(&token, "2026-04-28T00:00:59Z", &[]).code, 0);
    assert_eq!(
        verify(&token, "2026-04-28T00:04:00Z", &["--leeway", "5m"]).code,
        0
    );
    refused(verify(&token, "2026-03-01T00:00:00Z", &[]), "ExpiryTooFar");
    assert_eq!(
        verify(&token, "2026-03-01T00:00:00Z", &["--max-lifetime", "none"]).code,
        0
    );
    refused(
        verify(&token.replacen("gw1", "gw9", 1), NOW, &[]),
        "GatewayNotExist",
    );
    refused(verify("gw1&202613010000&x", NOW, &[]), "MalformedExpiry");
    refused(verify("", NOW, &[]), "EmptyToken");

    // Keystore: every gateway, no --id needed; stdin with "-".
    let gw2 = {
        let r = apim(&["mint", "--id", "gw2", "--keystore", p(&store), "--now", NOW]);
        r.stdout.trim().to_owned()
    };
    let r = run(
        &[
            "verify",
            "--keystore",
            p(&store),
            "--now",
            NOW,
            "--output",
            "json",
            "-",
        ],
        None,
        Some(&format!("GatewayKey {gw2}\n")),
    );
    assert_eq!(r.json()["id"], "gw2");
    // Text output: stdout for valid, stderr for refusal.
    let r = apim(&["verify", "--keystore", p(&store), "--now", NOW, &token]);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.starts_with("valid: gateway gw1, primary key"),
        "{}",
        r.stdout
    );
    let r = apim(&["verify", "--keystore", p(&store), "--now", NOW, &forged]);
    assert_eq!((r.code, r.stdout.as_str()), (1, ""));
    assert!(r.stderr.contains("SignatureMismatch"));
    // A single-gateway source without --id is an invocation problem.
    let r = apim(&[
        "verify",
        "--keys",
        p(&keys),
        "--now",
        NOW,
        "--output",
        "json",
        &token,
    ]);
    assert_error(&r, 2, "EmptyGatewayId", "id");
    let r = apim(&[
        "verify",
        "--keys",
        p(&keys),
        "--id",
        "gw1",
        "--leeway",
        "a while",
        "--output",
        "json",
        &token,
    ]);
    assert_error(&r, 2, "InvalidExpiry", "expiry");
}

#[test]
fn verify_batch_keeps_order_and_line_numbers() {
    let env = Env::new();
    let store = env.keystore();
    let good = mint(&env, "gw1", &[]);
    let forged = good.replacen("&202604280000&", "&202604290000&", 1);
    let huge = "x".repeat(100_000);
    let mut lines = Vec::new();
    let mut expected = Vec::new();
    for i in 0..5000 {
        match i % 7 {
            0 => {
                lines.push(format!("GatewayKey {good}"));
                expected.push(None)
            }
            1 => {
                lines.push(String::new());
                expected.push(Some("EmptyToken"))
            }
            2 => {
                lines.push(forged.clone());
                expected.push(Some("SignatureMismatch"))
            }
            3 => {
                lines.push(format!("  {good}\r"));
                expected.push(None)
            }
            4 => {
                lines.push(huge.clone());
                expected.push(Some("TokenTooLong"))
            }
            5 => {
                lines.push("not a token".into());
                expected.push(Some("MalformedToken"))
            }
            _ => {
                lines.push("x".repeat(1500));
                expected.push(Some("TokenTooLong"))
            }
        }
    }
    let input = lines.join("\n") + "\n";
    let file = env.file("tokens.txt", &input);
    for (args, stdin) in [
        (
            vec!["verify", "--batch", "--keystore", p(&store), "--now", NOW],
            Some(input.as_str()),
        ),
        (
            vec![
                "verify",
                "--batch",
                "--keystore",
                p(&store),
                "--now",
                NOW,
                "--input",
                p(&file),
            ],
            None,
        ),
    ] {
        let r = run(&args, None, stdin);
        assert_eq!(r.code, 1);
        let out: Vec<Value> = r
            .stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(out.len(), expected.len());
        for (i, (doc, want)) in out.iter().zip(&expected).enumerate() {
            assert_eq!(doc["line"], i as u64 + 1);
            match want {
                None => {
                    assert_eq!(doc["valid"], true, "{doc}");
                    assert_eq!(doc["id"], "gw1");
                    assert_eq!(doc["keyType"], "primary");
                }
                Some(code) => {
                    assert_eq!(doc["valid"], false, "{doc}");
                    assert_eq!(doc["error"]["code"], *code, "line {}", i + 1);
                }
            }
        }
        assert!(r.stderr.contains("5000 tokens"), "{}", r.stderr);
    }
    // All valid: exit 0.
    let r = run(
        &["verify", "--batch", "--keystore", p(&store), "--now", NOW],
        None,
        Some(&format!("{good}\n{good}\n")),
    );
    assert_eq!(r.code, 0);
    assert_eq!(r.stdout.lines().count(), 2);
}

#[test]
fn inspect_shows_claims_and_watches_expiry() {
    let env = Env::new();
    let token = mint(&env, "gw1", &["--scheme", "gateway-key"]);
    let r = apim(&["inspect", "--now", NOW, "--output", "json", &token]);
    assert_eq!(r.code, 0);
    let doc = r.json();
    assert_eq!(doc["id"], "gw1");
    assert_eq!(doc["format"], "compact");
    assert_eq!(doc["scheme"], "GatewayKey");
    assert_eq!(doc["expiry"], "2026-04-28T00:00:00Z");
    assert_eq!(doc["expiresInSeconds"], 7 * 86_400);
    assert_eq!(doc["expired"], false);
    assert_eq!(doc["verified"], false);

    assert_eq!(
        apim(&["inspect", "--now", NOW, "--expires-within", "6d", &token]).code,
        0
    );
    assert_eq!(
        apim(&["inspect", "--now", NOW, "--expires-within", "7d", &token]).code,
        1
    );
    assert_eq!(
        apim(&["inspect", "--now", NOW, "--expires-within", "8d", &token]).code,
        1
    );
    let doc = apim(&[
        "inspect",
        "--now",
        "2026-05-01T00:00:00Z",
        "--output",
        "json",
        &token,
    ])
    .json();
    assert_eq!(doc["expired"], true);
    assert_eq!(doc["expiresInSeconds"], -3 * 86_400);

    let text = apim(&["inspect", "--now", NOW, &token]).stdout;
    assert!(
        text.contains("id:       gw1") && text.contains("verified: false"),
        "{text}"
    );
    let r = apim(&[
        "inspect",
        "--now",
        NOW,
        "--output",
        "json",
        "gw1&2026042800&abc",
    ]);
    assert_error(&r, 1, "MalformedExpiry", "expiry");
    let r = apim(&[
        "inspect",
        "--output",
        "json",
        "--expires-within",
        "a bit",
        &token,
    ]);
    assert_error(&r, 2, "InvalidExpiry", "expiry");
}

#[test]
fn inspect_and_convert_azure_documentation_tokens() {
    // The token of Azure's management API documentation ("Azure API Management REST API
    // Authentication", the Authorization header example).
    let doc_token = "SharedAccessSignature uid=53dd860e1b72ff0467030003&ex=2014-08-04T22:03:00.0000000Z&sn=ItH6scUyCazNKHULKA0Yv6T+Skk4bdVmLqcPPPdWoxl2n1+rVbhKlplFrqjkoUFRr0og4wjeDz4yfThC82OjfQ==";
    let doc = apim(&["inspect", "--now", NOW, "--output", "json", doc_token]).json();
    assert_eq!(doc["id"], "53dd860e1b72ff0467030003");
    assert_eq!(doc["format"], "uid");
    assert_eq!(doc["scheme"], "SharedAccessSignature");
    assert_eq!(doc["expiry"], "2014-08-04T22:03:00Z");
    assert_eq!(doc["expired"], true);
    let r = apim(&["convert", "--to", "compact", doc_token]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout.trim(),
        "53dd860e1b72ff0467030003&201408042203&ItH6scUyCazNKHULKA0Yv6T+Skk4bdVmLqcPPPdWoxl2n1+rVbhKlplFrqjkoUFRr0og4wjeDz4yfThC82OjfQ=="
    );
    let back = apim(&["convert", "--to", "uid", "--scheme", "sas", r.stdout.trim()]);
    assert_eq!(back.stdout.trim(), doc_token);
    let via_stdin = run(
        &["convert", "--to", "uid", "--scheme", "sas", "-"],
        None,
        Some(&r.stdout),
    );
    assert_eq!(via_stdin.stdout.trim(), doc_token);
}

#[test]
fn convert_refusals_exit_1() {
    let env = Env::new();
    let keys = env.keys();
    let r = apim(&[
        "mint",
        "--id",
        "gw1",
        "--keys",
        p(&keys),
        "--now",
        NOW,
        "--expiry",
        "2026-04-22T10:00:30Z",
        "--format",
        "uid",
    ]);
    let uid = r.stdout.trim();
    let r = apim(&["convert", "--to", "compact", "--output", "json", uid]);
    assert_error(&r, 1, "ExpiryNotWholeMinute", "expiry");
    let r = apim(&["convert", "--to", "uid", "--output", "json", "Bearer abc"]);
    assert_error(&r, 1, "MalformedToken", "scheme");
}

#[test]
fn stdin_of_any_size_is_refused_as_too_long() {
    let big = "a".repeat(3 * 1024 * 1024);
    let r = run(&["inspect", "--output", "json", "-"], None, Some(&big));
    assert_error(&r, 1, "TokenTooLong", "token");
    let r = run(&["inspect", "--output", "json", "-"], None, Some("  \n"));
    assert_error(&r, 1, "EmptyToken", "token");
}

#[test]
fn every_command_has_a_worked_example_and_completions_work() {
    for command in ["mint", "verify", "inspect", "convert", "completions"] {
        let r = apim(&[command, "--help"]);
        assert_eq!(r.code, 0);
        assert!(r.stdout.contains("Examples:"), "{command}: {}", r.stdout);
        assert!(
            r.stdout.contains(&format!("apim-sas {command}")),
            "{command}"
        );
    }
    for shell in ["bash", "zsh", "fish"] {
        let r = apim(&["completions", shell]);
        assert_eq!(r.code, 0);
        assert!(
            r.stdout.contains("apim-sas") && r.stdout.contains("keystore"),
            "{shell}"
        );
    }
    assert_eq!(apim(&["completions", "powershell"]).code, 2);
    assert_eq!(apim(&["frobnicate"]).code, 2);
}
