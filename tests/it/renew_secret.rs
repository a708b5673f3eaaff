//! `apim-sas renew --form k8s-secret` on the Secrets Kubernetes users hold: one as `kubectl get
//! secret gw1-token -n apim -o json --show-managed-fields` prints it (tests/k8s/), and the YAML
//! `mint --output k8s-secret` writes. A kept run leaves the file byte for byte; a renewal changes
//! the token under `--secret-key` and the `apim-sas/expiry` annotation and nothing else, in the
//! file's own layout; a missing file becomes a new Secret. Every manifest renew writes is checked
//! against the Kubernetes schemas with `kubernetes-validate` (PyPI), in tests of their own that
//! are ignored, saying so, where it was not installed when the tests were built (build.rs:
//! `skip_k8s_validate`). Also `inspect --file PATH --form …`, which reads the token renew reads.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::{Duration, SystemTime};

use assert_cmd::Command;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::common::Run;

/// Appears in every key file these tests write; must appear in no output and no file renew writes.
const CANARY: &str = "CANARY-KEY-9d4e-secret";
/// The instant the fixtures' token was minted (30 days, so it expires 2026-05-21).
const NOW: &str = "2026-04-21T00:00:00Z";
/// Six days before the fixtures' token expires: within the default 7-day window.
const LATER: &str = "2026-05-15T00:00:00Z";
/// The fixtures' token, signed with `{CANARY}-p1` for gw1, expiring 2026-05-21T00:00:00Z.
const FIXTURE_TOKEN: &str = "gw1&202605210000&6E+dnHswGJy+6H804NkmPtzwU7hC/NVlLGfdk1oJLxgHnZLA2ivsk4MFT40Fz+vOY/uTBBZvbr/YvsDgeIG+Fw==";
/// A Secret created by `apim-sas renew --form k8s-secret --namespace apim`, applied with
/// `kubectl apply -f`, and read back with `kubectl get secret gw1-token -n apim -o json
/// --show-managed-fields` (kubectl 1.31): 4-space indentation, keys in Go's sorted order, the
/// last-applied-configuration annotation, uid, resourceVersion, managedFields.
const APPLIED: &str = include_str!("../k8s/gw1-token.json");
/// `kubectl create secret generic gw1-token -n apim --from-literal=config.service.auth.key=…
/// --from-literal=gateway-key=… --from-literal=value=…` (the same token under each key), read back
/// the same way: no annotations at all.
const CREATED: &str = include_str!("../k8s/gw1-token-keys.json");
const SECRET_KEYS: [&str; 3] = ["value", "gateway-key", "config.service.auth.key"];

fn output(mut cmd: Command) -> Run {
    Run::from(cmd.env_remove("APIM_SAS_KEY").output().unwrap()).leaking_nothing(CANARY)
}

fn apim(args: &[&str]) -> Run {
    let mut cmd = Command::cargo_bin("apim-sas").unwrap();
    cmd.args(args);
    output(cmd)
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn private(&self, name: &str, text: &str) -> String {
        let path = self.path(name);
        fs::write(&path, text).unwrap();
        set_mode(&path, 0o600);
        path.to_str().unwrap().to_owned()
    }

    /// gw1's keys, as Azure's list-keys returns them.
    fn keys(&self) -> String {
        self.private(
            "gw1.keys.json",
            &format!(r#"{{"primary": "{CANARY}-p1", "secondary": "{CANARY}-s1"}}"#),
        )
    }

    /// gw1's keys after the primary was regenerated.
    fn regenerated(&self) -> String {
        self.private(
            "gw1.regenerated.json",
            &format!(r#"{{"primary": "{CANARY}-p1-new", "secondary": "{CANARY}-s1"}}"#),
        )
    }

    /// Writes `text` as the Secret file `name`, its mtime in the past so that a write would show.
    fn secret(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, text).unwrap();
        age(&path);
        path
    }

    /// `renew --form k8s-secret` with `keys` (a path) at `now`, JSON output, `extra` flags.
    fn renew_with(&self, keys: &str, file: &Path, now: &str, extra: &[&str]) -> Run {
        let mut args = vec![
            "renew",
            "--id",
            "gw1",
            "--keys",
            keys,
            "--file",
            file.to_str().unwrap(),
            "--form",
            "k8s-secret",
            "--now",
            now,
            "--output",
            "json",
        ];
        args.extend_from_slice(extra);
        let run = apim(&args);
        if let Ok(text) = fs::read_to_string(file) {
            assert!(!text.contains(CANARY), "a key was written: {text}");
        }
        run
    }

    fn renew(&self, file: &Path, now: &str, extra: &[&str]) -> Run {
        let keys = self.keys();
        self.renew_with(&keys, file, now, extra)
    }

    /// Whether `token` (bare) verifies for gw1 with `keys` at `now`.
    fn verifies_with(&self, keys: &str, token: &str, now: &str) -> bool {
        apim(&["verify", "--id", "gw1", "--keys", keys, "--now", now, token]).code == 0
    }

    fn verifies(&self, token: &str, now: &str) -> bool {
        let keys = self.keys();
        self.verifies_with(&keys, token, now)
    }

    /// A token for gw1 minted at NOW with the current keys, `ttl` long.
    fn mint(&self, ttl: &str) -> String {
        let keys = self.keys();
        let r = apim(&[
            "mint", "--id", "gw1", "--keys", &keys, "--now", NOW, "--ttl", ttl,
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout.trim().to_owned()
    }

    /// Temporary files left in the directory.
    fn leftovers(&self) -> Vec<String> {
        fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with('.') || name.ends_with(".tmp"))
            .collect()
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Sets a file's mtime to a fixed past instant.
fn age(path: &Path) {
    let past = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    fs::File::options()
        .append(true)
        .open(path)
        .unwrap()
        .set_modified(past)
        .unwrap();
}

/// The file's bytes and mtime.
fn snapshot(path: &Path) -> (Vec<u8>, SystemTime) {
    (
        fs::read(path).unwrap(),
        fs::metadata(path).unwrap().modified().unwrap(),
    )
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn unb64(text: &Value) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(
            text.as_str()
                .unwrap_or_else(|| panic!("not a string: {text}")),
        )
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

/// The bare token of `GatewayKey <token>`.
#[track_caller]
fn gateway_key(value: &str) -> String {
    value
        .strip_prefix("GatewayKey ")
        .unwrap_or_else(|| panic!("not GatewayKey <token>: {value:?}"))
        .to_owned()
}

fn parse_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn parse_yaml(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap();
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("not YAML ({e}): {text}"))
}

/// `doc` without what a renewal may change: `data[key]`, `stringData[key]`, the `apim-sas/expiry`
/// annotation (and `annotations` itself when nothing else is in it).
fn unrenewed(doc: &Value, key: &str) -> Value {
    let mut doc = doc.clone();
    for field in ["data", "stringData"] {
        if let Some(map) = doc.get_mut(field).and_then(Value::as_object_mut) {
            map.remove(key);
        }
    }
    let meta = doc["metadata"].as_object_mut().unwrap();
    if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
        annotations.remove("apim-sas/expiry");
        if annotations.is_empty() {
            meta.remove("annotations");
        }
    }
    doc
}

/// The layout `kubectl -o json` and `jq` print: one member per line, each level indented `width`
/// spaces more than the one around it, no tabs.
#[track_caller]
fn assert_indented(text: &str, width: usize) {
    assert!(text.lines().count() > 10, "not laid out: {text}");
    let mut depth = 0usize;
    for (n, line) in text.lines().enumerate() {
        let body = line.trim_start_matches(' ');
        assert!(!body.starts_with('\t'), "line {}: a tab: {text}", n + 1);
        let level = if body.starts_with(['}', ']']) {
            depth - 1
        } else {
            depth
        };
        assert_eq!(
            line.len() - body.len(),
            level * width,
            "line {} is not indented {width} per level: {line:?}\n{text}",
            n + 1
        );
        let (mut string, mut escaped) = (false, false);
        for c in body.chars() {
            if string {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => string = false,
                    _ => {}
                }
            } else {
                match c {
                    '"' => string = true,
                    '{' | '[' => depth += 1,
                    '}' | ']' => depth -= 1,
                    _ => {}
                }
            }
        }
    }
    assert_eq!(depth, 0, "{text}");
}

/// `text` with `from` replaced by `to`; `from` must occur exactly once.
#[track_caller]
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} in {text}");
    text.replacen(from, to, 1)
}

#[track_caller]
fn assert_kept(r: &Run, expiry: &str) {
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        r.json(),
        json!({"renewed": false, "reason": null, "expiry": expiry, "previousExpiry": expiry,
               "hook": null})
    );
}

#[track_caller]
fn assert_renewed(r: &Run, reason: &str, expiry: &str, previous: Option<&str>) {
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        r.json(),
        json!({"renewed": true, "reason": reason, "expiry": expiry, "previousExpiry": previous,
               "hook": null})
    );
}

/// `kubernetes-validate` from PATH, else from target/ci-venv (CI's venv).
fn validator() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("kubernetes-validate"))
            .find(|exe| exe.is_file())
    });
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ci-venv/bin/kubernetes-validate");
    on_path.unwrap_or_else(|| {
        assert!(
            venv.is_file(),
            "kubernetes-validate is not installed (on PATH or at {}): .ci/run installs it (bash \
             .ci/deps/k8s-validate.sh); elsewhere, rebuild the tests (touch build.rs) and the \
             tests that need it are ignored instead",
            venv.display()
        );
        venv
    })
}

/// Runs `kubernetes-validate` (strict: unknown fields fail) on `path` against Kubernetes 1.31's
/// schemas.
fn kubernetes_validate(path: &Path) -> std::process::Output {
    StdCommand::new(validator())
        .args(["--kubernetes-version", "1.31.0", "--strict", "--quiet"])
        .arg(path)
        .output()
        .unwrap()
}

/// The manifest at `path` is a valid Secret for the API server.
#[track_caller]
fn assert_valid_manifest(path: &Path) {
    let out = kubernetes_validate(path);
    assert!(
        out.status.success(),
        "kubernetes-validate refused {}: {}{}\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        fs::read_to_string(path).unwrap()
    );
}

/// The manifests a test had renew write, each as it was where the test looked at it; the tests
/// that need kubernetes-validate run the same steps and check each against the schemas.
#[derive(Default)]
struct Manifests(Vec<(String, Vec<u8>)>);

impl Manifests {
    fn record(&mut self, path: &Path) {
        self.0
            .push((path.display().to_string(), fs::read(path).unwrap()));
    }

    /// Each manifest is a valid Secret for the API server (a copy of it, named after the file it
    /// was, is what kubernetes-validate reads).
    #[track_caller]
    fn assert_valid(self) {
        assert!(!self.0.is_empty(), "no manifest recorded");
        let dir = tempfile::tempdir().unwrap();
        for (i, (path, bytes)) in self.0.into_iter().enumerate() {
            let name = Path::new(&path).file_name().unwrap().to_string_lossy();
            let copy = dir.path().join(format!("{i}-{name}"));
            fs::write(&copy, &bytes).unwrap();
            assert_valid_manifest(&copy);
        }
    }
}

/// The fixtures are what kubectl prints: Go's `json.MarshalIndent(obj, "", "    ")` of an object
/// with sorted keys and a final newline (serde_json's 4-space pretty printer writes the same bytes
/// for them: they hold no `<`, `>` or `&` that Go would escape); valid Secrets by the schemas; their
/// token is gw1's, good at NOW.
#[test]
fn the_fixtures_are_what_kubectl_prints() {
    let env = Env::new();
    for text in [APPLIED, CREATED] {
        let doc: Value = serde_json::from_str(text).unwrap();
        let mut pretty = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut pretty, formatter);
        serde::Serialize::serialize(&doc, &mut ser).unwrap();
        pretty.push(b'\n');
        assert_eq!(String::from_utf8(pretty).unwrap(), text);
        assert!(!text.contains(['<', '>', '&']));
        for value in doc["data"].as_object().unwrap().values() {
            assert_eq!(unb64(value), format!("GatewayKey {FIXTURE_TOKEN}"));
        }
        assert_eq!(doc["metadata"]["uid"].as_str().unwrap().len(), 36);
        assert!(doc["metadata"]["managedFields"].is_array());
    }
    assert!(env.verifies(FIXTURE_TOKEN, NOW));
    let last_applied = serde_json::from_str::<Value>(APPLIED).unwrap()["metadata"]["annotations"]
        ["kubectl.kubernetes.io/last-applied-configuration"]
        .clone();
    assert!(last_applied.as_str().unwrap().ends_with("}\n"));
}

/// The fixtures are valid Secrets by the schemas.
#[test]
#[cfg_attr(
    skip_k8s_validate,
    ignore = "kubernetes-validate is not installed: run `bash .ci/deps/k8s-validate.sh`"
)]
fn the_fixtures_are_valid_secrets() {
    let env = Env::new();
    for (name, text) in [("applied.json", APPLIED), ("created.json", CREATED)] {
        assert_valid_manifest(&env.secret(name, text));
    }
}

/// The schema check can fail: `kubernetes-validate --strict` refuses a Secret with a field the
/// API does not have and one whose data value is not a string.
#[test]
#[cfg_attr(
    skip_k8s_validate,
    ignore = "kubernetes-validate is not installed: run `bash .ci/deps/k8s-validate.sh`"
)]
fn the_validator_refuses_a_bad_secret() {
    let env = Env::new();
    let unknown = replace_once(
        APPLIED,
        "    \"type\": \"Opaque\"",
        "    \"typo\": \"Opaque\"",
    );
    let number = replace_once(
        CREATED,
        &format!(
            "\"value\": \"{}\"",
            b64(&format!("GatewayKey {FIXTURE_TOKEN}"))
        ),
        "\"value\": 5",
    );
    for (name, text) in [("unknown.json", unknown), ("number.json", number)] {
        let out = kubernetes_validate(&env.secret(name, &text));
        assert_eq!(out.status.code(), Some(1), "{name}: {out:?}");
    }
}

/// A Secret whose token is good is not touched: bytes and mtime, under each key, both kubectl
/// Secrets; the report names the token's expiry.
#[test]
fn a_kept_secret_is_left_byte_for_byte() {
    let env = Env::new();
    let applied = env.secret("applied.json", APPLIED);
    let before = snapshot(&applied);
    assert_kept(&env.renew(&applied, NOW, &[]), "2026-05-21T00:00:00Z");
    assert_eq!(snapshot(&applied), before);
    // Seven days and a minute left: still kept.
    assert_kept(
        &env.renew(&applied, "2026-05-13T23:59:00Z", &[]),
        "2026-05-21T00:00:00Z",
    );
    assert_eq!(snapshot(&applied), before);
    let created = env.secret("created.json", CREATED);
    let before = snapshot(&created);
    for key in SECRET_KEYS {
        assert_kept(
            &env.renew(&created, NOW, &["--secret-key", key]),
            "2026-05-21T00:00:00Z",
        );
        assert_eq!(snapshot(&created), before, "{key}");
    }
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

/// An expiring token in the kubectl Secret: the new `data.value` is base64 of `GatewayKey <new
/// token>` that verify accepts, `apim-sas/expiry` is the new expiry, every other field is the
/// same JSON value (the last-applied-configuration, managedFields, uid… included), and the file
/// is still JSON indented 4 spaces, a valid Secret.
#[test]
fn an_expiring_secret_changes_only_its_token_and_expiry() {
    expiring_secret(&mut Manifests::default());
}

/// The steps of the test above, recording the manifests renew writes.
fn expiring_secret(manifests: &mut Manifests) {
    let env = Env::new();
    let file = env.secret("gw1-token.json", APPLIED);
    let before = parse_json(&file);
    assert_renewed(
        &env.renew(&file, LATER, &[]),
        "expiring",
        "2026-06-14T00:00:00Z",
        Some("2026-05-21T00:00:00Z"),
    );
    let text = fs::read_to_string(&file).unwrap();
    assert!(text.starts_with('{'), "{text}");
    assert_indented(&text, 4);
    let after = parse_json(&file);
    assert_eq!(unrenewed(&after, "value"), unrenewed(&before, "value"));
    let token = gateway_key(&unb64(&after["data"]["value"]));
    assert!(token.starts_with("gw1&202606140000&"), "{token}");
    assert!(env.verifies(&token, LATER));
    assert_eq!(
        after["metadata"]["annotations"]["apim-sas/expiry"],
        "2026-06-14T00:00:00Z"
    );
    assert_eq!(after["data"].as_object().unwrap().len(), 1);
    assert!(after.get("stringData").is_none(), "{text}");
    manifests.record(&file);
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());

    // The renewed Secret is kept on the next run.
    let renewed = snapshot(&file);
    assert_kept(&env.renew(&file, LATER, &[]), "2026-06-14T00:00:00Z");
    assert_eq!(snapshot(&file), renewed);
}

/// After the primary key is regenerated, each `--secret-key` of a Secret holding all three is
/// renewed (reason `invalid`) on its own: only `data[key]` changes, the other keys keep the old
/// value, and `metadata.annotations` (absent before) now holds just `apim-sas/expiry`.
#[test]
fn a_regenerated_key_renews_only_the_secret_key_asked_for() {
    regenerated_key(&mut Manifests::default());
}

/// The steps of the test above, recording the manifests renew writes.
fn regenerated_key(manifests: &mut Manifests) {
    let env = Env::new();
    let regenerated = env.regenerated();
    let old = b64(&format!("GatewayKey {FIXTURE_TOKEN}"));
    for key in SECRET_KEYS {
        let file = env.secret(&format!("{key}.json"), CREATED);
        let before = parse_json(&file);
        assert_renewed(
            &env.renew_with(&regenerated, &file, NOW, &["--secret-key", key]),
            "invalid",
            "2026-05-21T00:00:00Z",
            Some("2026-05-21T00:00:00Z"),
        );
        let text = fs::read_to_string(&file).unwrap();
        assert_indented(&text, 4);
        let after = parse_json(&file);
        assert_eq!(unrenewed(&after, key), unrenewed(&before, key), "{key}");
        assert_eq!(
            after["metadata"]["annotations"],
            json!({"apim-sas/expiry": "2026-05-21T00:00:00Z"}),
            "{key}"
        );
        let token = gateway_key(&unb64(&after["data"][key]));
        assert_ne!(token, FIXTURE_TOKEN);
        assert!(env.verifies_with(&regenerated, &token, NOW), "{key}");
        for other in SECRET_KEYS.into_iter().filter(|other| *other != key) {
            assert_eq!(after["data"][other], old.as_str(), "{key}: {other}");
        }
        manifests.record(&file);
        // The renewed key is now kept.
        let renewed = snapshot(&file);
        assert_kept(
            &env.renew_with(&regenerated, &file, NOW, &["--secret-key", key]),
            "2026-05-21T00:00:00Z",
        );
        assert_eq!(snapshot(&file), renewed, "{key}");
    }
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

/// A Secret indented 2 spaces (as `jq .` prints it) stays indented 2 spaces.
#[test]
fn a_two_space_secret_keeps_its_indentation() {
    let env = Env::new();
    let doc: Value = serde_json::from_str(APPLIED).unwrap();
    let text = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    assert_indented(&text, 2);
    let file = env.secret("gw1-token.json", &text);
    assert_renewed(
        &env.renew(&file, LATER, &[]),
        "expiring",
        "2026-06-14T00:00:00Z",
        Some("2026-05-21T00:00:00Z"),
    );
    assert_indented(&fs::read_to_string(&file).unwrap(), 2);
    assert_eq!(
        unrenewed(&parse_json(&file), "value"),
        unrenewed(&doc, "value")
    );
}

/// The YAML `mint --output k8s-secret` writes (stringData and data), under each key: kept byte for
/// byte while good; renewed, it is still YAML, `stringData[key]` and the decoded `data[key]` are
/// both `GatewayKey <new token>`, the expiry annotation is the new expiry, nothing else changed.
#[test]
fn a_minted_yaml_secret_is_renewed_as_yaml() {
    minted_yaml_secret(&mut Manifests::default());
}

/// The steps of the test above, recording the manifests renew writes.
fn minted_yaml_secret(manifests: &mut Manifests) {
    let env = Env::new();
    let keys = env.keys();
    for key in SECRET_KEYS {
        let r = apim(&[
            "mint",
            "--id",
            "gw1",
            "--keys",
            &keys,
            "--now",
            NOW,
            "--ttl",
            "30d",
            "--output",
            "k8s-secret",
            "--namespace",
            "apim",
            "--secret-key",
            key,
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let file = env.secret(&format!("{key}.yaml"), &r.stdout);
        let before_doc = parse_yaml(&file);
        assert_eq!(
            before_doc["stringData"][key],
            format!("GatewayKey {FIXTURE_TOKEN}")
        );
        let before = snapshot(&file);
        assert_kept(
            &env.renew(&file, NOW, &["--secret-key", key]),
            "2026-05-21T00:00:00Z",
        );
        assert_eq!(snapshot(&file), before, "{key}");

        assert_renewed(
            &env.renew(&file, LATER, &["--secret-key", key]),
            "expiring",
            "2026-06-14T00:00:00Z",
            Some("2026-05-21T00:00:00Z"),
        );
        let text = fs::read_to_string(&file).unwrap();
        assert!(!text.trim_start().starts_with('{'), "JSON: {text}");
        assert!(text.lines().any(|line| line == "kind: Secret"), "{text}");
        let after = parse_yaml(&file);
        assert_eq!(unrenewed(&after, key), unrenewed(&before_doc, key), "{key}");
        let plain = after["stringData"][key].as_str().unwrap().to_owned();
        assert_eq!(unb64(&after["data"][key]), plain, "{key}");
        let token = gateway_key(&plain);
        assert!(token.starts_with("gw1&202606140000&"), "{token}");
        assert!(env.verifies(&token, LATER));
        assert_eq!(
            after["metadata"]["annotations"]["apim-sas/expiry"],
            "2026-06-14T00:00:00Z"
        );
        manifests.record(&file);
    }
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

/// No file (or an empty one): a new Secret, JSON, exactly apiVersion, kind, type, the name
/// (`--secret-name`, else `<id>-token`), the namespace when given, the two annotations and
/// `data[key]`; mode 0600; a valid Secret; kept on the next run.
#[test]
fn a_missing_file_becomes_a_new_secret() {
    missing_file(&mut Manifests::default());
}

/// The steps of the test above, recording the manifests renew writes.
fn missing_file(manifests: &mut Manifests) {
    let env = Env::new();
    let file = env.path("apim-gw1.json");
    let flags = [
        "--secret-name",
        "apim-gw1",
        "--namespace",
        "apim",
        "--secret-key",
        "gateway-key",
    ];
    assert_renewed(
        &env.renew(&file, NOW, &flags),
        "missing",
        "2026-05-21T00:00:00Z",
        None,
    );
    assert_eq!(mode(&file), 0o600);
    let doc = parse_json(&file);
    let value = unb64(&doc["data"]["gateway-key"]);
    assert!(env.verifies(&gateway_key(&value), NOW), "{value}");
    assert!(value.starts_with("GatewayKey gw1&202605210000&"), "{value}");
    assert_eq!(
        doc,
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": "apim-gw1",
                "namespace": "apim",
                "annotations": {
                    "apim-sas/gateway-id": "gw1",
                    "apim-sas/expiry": "2026-05-21T00:00:00Z",
                },
            },
            "data": {"gateway-key": b64(&value)},
        })
    );
    manifests.record(&file);
    let before = snapshot(&file);
    assert_kept(&env.renew(&file, NOW, &flags), "2026-05-21T00:00:00Z");
    assert_eq!(snapshot(&file), before);

    // An empty file, no name or namespace given: `<id>-token`, no namespace, key `value`.
    let empty = env.secret("empty.json", "");
    assert_renewed(
        &env.renew(&empty, NOW, &[]),
        "missing",
        "2026-05-21T00:00:00Z",
        None,
    );
    let doc = parse_json(&empty);
    let value = unb64(&doc["data"]["value"]);
    assert!(env.verifies(&gateway_key(&value), NOW), "{value}");
    assert_eq!(
        doc,
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": "gw1-token",
                "annotations": {
                    "apim-sas/gateway-id": "gw1",
                    "apim-sas/expiry": "2026-05-21T00:00:00Z",
                },
            },
            "data": {"value": b64(&value)},
        })
    );
    manifests.record(&empty);
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

/// A Secret without the key asked for is renewed with reason `missing`: the key is added to
/// `data`, the keys already there keep their values, the expiry annotation is updated.
#[test]
fn a_secret_without_the_key_is_renewed_as_missing() {
    secret_without_the_key(&mut Manifests::default());
}

/// The steps of the test above, recording the manifests renew writes.
fn secret_without_the_key(manifests: &mut Manifests) {
    let env = Env::new();
    let file = env.secret("gw1-token.json", APPLIED);
    let before = parse_json(&file);
    assert_renewed(
        &env.renew(&file, NOW, &["--secret-key", "gateway-key"]),
        "missing",
        "2026-05-21T00:00:00Z",
        None,
    );
    let after = parse_json(&file);
    assert_eq!(
        unrenewed(&after, "gateway-key"),
        unrenewed(&before, "gateway-key")
    );
    assert_eq!(after["data"]["value"], before["data"]["value"]);
    let token = gateway_key(&unb64(&after["data"]["gateway-key"]));
    assert!(env.verifies(&token, NOW), "{token}");
    assert_eq!(
        after["metadata"]["annotations"]["apim-sas/expiry"],
        "2026-05-21T00:00:00Z"
    );
    assert_indented(&fs::read_to_string(&file).unwrap(), 4);
    manifests.record(&file);
}

/// Every Secret the tests above have renew write is valid by the schemas, as each was where the
/// test looked at it: the same steps, with kubernetes-validate.
#[test]
#[cfg_attr(
    skip_k8s_validate,
    ignore = "kubernetes-validate is not installed: run `bash .ci/deps/k8s-validate.sh`"
)]
fn the_secrets_renew_writes_are_valid_secrets() {
    validator();
    for steps in [
        expiring_secret,
        regenerated_key,
        minted_yaml_secret,
        missing_file,
        secret_without_the_key,
    ] {
        let mut manifests = Manifests::default();
        steps(&mut manifests);
        manifests.assert_valid();
    }
}

/// `--secret-key`, `--secret-name` and `--namespace` belong to `--form k8s-secret`: with
/// `--form token` (the default too) or `docker-env` they are InvalidArgument, exit 2, nothing
/// written.
#[test]
fn secret_flags_need_the_k8s_secret_form() {
    let env = Env::new();
    let keys = env.keys();
    let file = env.path("gw1.token");
    for form in [None, Some("token"), Some("docker-env")] {
        for flag in [
            ["--secret-key", "gateway-key"],
            ["--secret-name", "apim-gw1"],
            ["--namespace", "apim"],
        ] {
            let mut args = vec!["renew", "--id", "gw1", "--keys", &keys];
            args.extend(["--file", file.to_str().unwrap(), "--now", NOW]);
            args.extend(["--output", "json"]);
            if let Some(form) = form {
                args.extend(["--form", form]);
            }
            args.extend(flag);
            let r = apim(&args);
            assert_eq!(r.code, 2, "{args:?}: {}{}", r.stdout, r.stderr);
            assert_eq!(r.json()["error"]["code"], "InvalidArgument", "{args:?}");
            assert!(!file.exists(), "{args:?}");
        }
    }
}

/// `inspect` on `args`, JSON or `output`, at `now`.
fn inspect(args: &[&str], output: &str, now: &str) -> Run {
    let mut all = vec!["inspect", "--now", now, "--output", output];
    all.extend_from_slice(args);
    apim(&all)
}

/// `inspect --file F [--form token]` reads a token file as renew does (BOM, spacing, scheme,
/// CRLF) and answers as `inspect TOKEN` does, in every output, with `--expires-within` too.
#[test]
fn inspect_file_reads_a_token_file() {
    let env = Env::new();
    let token = env.mint("20d");
    let file = env.secret("gw1.token", &format!("\u{feff}  gatewaykey   {token}\r\n"));
    let f = file.to_str().unwrap();
    let spelled = format!("GatewayKey {token}");
    for output in ["json", "text", "prometheus"] {
        let expected = inspect(&[&spelled], output, NOW);
        assert_eq!(expected.code, 0, "{}", expected.stderr);
        for form in [&[][..], &["--form", "token"]] {
            let mut args = vec!["--file", f];
            args.extend_from_slice(form);
            let r = inspect(&args, output, NOW);
            assert_eq!(
                (r.code, &r.stdout, &r.stderr),
                (0, &expected.stdout, &expected.stderr),
                "{output} {form:?}"
            );
        }
    }
    assert_eq!(inspect(&["--file", f], "json", NOW).json()["id"], "gw1");
    for (window, code) in [("19d", 0), ("20d", 1)] {
        let r = inspect(&["--file", f, "--expires-within", window], "json", NOW);
        assert_eq!(r.code, code, "{window}: {}", r.stdout);
        assert_eq!(r.json()["expiresWithin"], code == 1, "{window}");
    }
    // renew reads the same token: kept, with its expiry.
    let keys = env.keys();
    let r = apim(&[
        "renew", "--id", "gw1", "--keys", &keys, "--file", f, "--now", NOW, "--output", "json",
    ]);
    assert_eq!(r.json()["previousExpiry"], "2026-05-11T00:00:00Z");
    assert_eq!(r.json()["renewed"], false);
}

/// `inspect --file F --form docker-env` takes the last `config.service.auth=` line, leading
/// whitespace dropped, as renew does: both report the last line's expiry, not the first's.
#[test]
fn inspect_file_reads_the_last_auth_line_of_an_env_file() {
    let env = Env::new();
    let first = env.mint("20d");
    let last = env.mint("12d");
    let file = env.secret(
        "gw1.env",
        &format!(
            "config.service.endpoint=https://contoso.configuration.azure-api.net/subscriptions/x\n\
             config.service.auth=GatewayKey {first}\n\
             \x20\x20\t config.service.auth=GatewayKey {last}\n\
             net.server.http.forwarded.proto.enabled=true\n"
        ),
    );
    let f = file.to_str().unwrap();
    let expected = inspect(&[&format!("GatewayKey {last}")], "json", NOW);
    let r = inspect(&["--file", f, "--form", "docker-env"], "json", NOW);
    assert_eq!((r.code, r.json()), (0, expected.json()), "{}", r.stderr);
    assert_eq!(r.json()["expiry"], "2026-05-03T00:00:00Z");

    let keys = env.keys();
    let before = snapshot(&file);
    let r = apim(&[
        "renew",
        "--id",
        "gw1",
        "--keys",
        &keys,
        "--file",
        f,
        "--form",
        "docker-env",
        "--now",
        NOW,
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.json()["renewed"], false);
    assert_eq!(r.json()["previousExpiry"], "2026-05-03T00:00:00Z");
    assert_eq!(snapshot(&file), before);
}

/// `inspect --file F --form k8s-secret [--secret-key K]` reads the value under the key (default
/// `value`): base64-decoded `data[key]` in a kubectl Secret, `stringData[key]` (over `data`) in
/// mint's YAML; renew keeps each with the same expiry.
#[test]
fn inspect_file_reads_the_secret_key() {
    let env = Env::new();
    let twelve = env.mint("12d");
    let sixteen = env.mint("16d");
    let old = b64(&format!("GatewayKey {FIXTURE_TOKEN}"));
    // The kubectl Secret, each key holding another token.
    let created = replace_once(
        CREATED,
        &format!("\"gateway-key\": \"{old}\""),
        &format!(
            "\"gateway-key\": \"{}\"",
            b64(&format!("GatewayKey {twelve}"))
        ),
    );
    let created = replace_once(
        &created,
        &format!("\"config.service.auth.key\": \"{old}\""),
        &format!(
            "\"config.service.auth.key\": \"{}\"",
            b64(&format!("GatewayKey {sixteen}"))
        ),
    );
    let created = env.secret("created.json", &created);
    let applied = env.secret("applied.json", APPLIED);
    // mint's YAML with data[value] changed: stringData is what counts.
    let keys = env.keys();
    let yaml = apim(&[
        "mint",
        "--id",
        "gw1",
        "--keys",
        &keys,
        "--now",
        NOW,
        "--ttl",
        "30d",
        "--output",
        "k8s-secret",
    ]);
    assert_eq!(yaml.code, 0, "{}", yaml.stderr);
    let yaml = replace_once(&yaml.stdout, &old, &b64(&format!("GatewayKey {twelve}")));
    let yaml = env.secret("minted.yaml", &yaml);

    let cases: [(&Path, &[&str], &str, &str); 6] = [
        (&applied, &[], FIXTURE_TOKEN, "2026-05-21T00:00:00Z"),
        (&created, &[], FIXTURE_TOKEN, "2026-05-21T00:00:00Z"),
        (
            &created,
            &["--secret-key", "value"],
            FIXTURE_TOKEN,
            "2026-05-21T00:00:00Z",
        ),
        (
            &created,
            &["--secret-key", "gateway-key"],
            &twelve,
            "2026-05-03T00:00:00Z",
        ),
        (
            &created,
            &["--secret-key", "config.service.auth.key"],
            &sixteen,
            "2026-05-07T00:00:00Z",
        ),
        (&yaml, &[], FIXTURE_TOKEN, "2026-05-21T00:00:00Z"),
    ];
    for (path, key, token, expiry) in cases {
        let f = path.to_str().unwrap();
        let mut args = vec!["--file", f, "--form", "k8s-secret"];
        args.extend_from_slice(key);
        let expected = inspect(&[&format!("GatewayKey {token}")], "json", NOW);
        let r = inspect(&args, "json", NOW);
        assert_eq!((r.code, r.json()), (0, expected.json()), "{f} {key:?}");
        assert_eq!(r.json()["expiry"], expiry, "{f} {key:?}");

        let before = snapshot(path);
        assert_kept(&env.renew(path, NOW, key), expiry);
        assert_eq!(snapshot(path), before, "{f} {key:?}");
    }
}

/// A file that holds no token for inspect: an env file without an auth line, a Secret without the
/// key: `EmptyToken`, exit 1.
#[test]
fn inspect_file_without_a_token_is_empty_token() {
    let env = Env::new();
    let env_file = env.secret(
        "gw1.env",
        "config.service.endpoint=https://contoso/x\nA=1\n",
    );
    let secret = env.secret("gw1-token.json", APPLIED);
    for args in [
        vec!["--file", env_file.to_str().unwrap(), "--form", "docker-env"],
        vec![
            "--file",
            secret.to_str().unwrap(),
            "--form",
            "k8s-secret",
            "--secret-key",
            "gateway-key",
        ],
    ] {
        let r = inspect(&args, "json", NOW);
        assert_eq!(r.code, 1, "{args:?}: {}{}", r.stdout, r.stderr);
        assert_eq!(r.json()["error"]["code"], "EmptyToken", "{args:?}");
    }
}

/// `inspect --file` with a TOKEN argument as well is a usage error (exit 2); a Secret read as a
/// token file is refused as renew refuses it (InvalidArgument, exit 2, `use --form k8s-secret`).
#[test]
fn inspect_file_refuses_a_token_argument_and_the_wrong_form() {
    let env = Env::new();
    let secret = env.secret("gw1-token.json", APPLIED);
    let f = secret.to_str().unwrap();
    let r = inspect(&["--file", f, FIXTURE_TOKEN], "json", NOW);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);

    let r = inspect(&["--file", f], "json", NOW);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    let error = &r.json()["error"];
    assert_eq!(error["code"], "InvalidArgument");
    assert_eq!(error["target"], "file");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("a Kubernetes Secret") && message.contains("use --form k8s-secret"),
        "{message}"
    );
}
