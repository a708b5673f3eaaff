//! What `apim-sas renew` must never write over, and the slips it must name: the real binary, a
//! fixed clock (`--now`), real files. Files of another kind or form are refused byte for byte
//! (and mtime, and no temporary file left); the key source given as `--file` is refused however
//! it is reached; keys and tokens pasted with their wrapping are refused with a hint; a
//! directory the job cannot write is found on every run; symbolic links are followed when they
//! are ours and refused when another user planted them; long names renew; `mint --ttl 30s`
//! explains itself.
//!
//! Tests that need a second user run where the test runs as root and `/usr/bin/setpriv` exists
//! (CI does); elsewhere they are ignored, saying so (build.rs: `skip_root`, `skip_setpriv`).

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use assert_cmd::Command;
use base64::Engine as _;
use serde_json::json;

use crate::common::Run;

/// Appears in every key these tests write; must appear in no output.
const CANARY: &str = "CANARY-KEY-91d4-safety";
const NOW: &str = "2026-04-21T00:00:00Z";
/// A renewal's expiry at NOW: 30 days on.
const NEXT: &str = "2026-05-21T00:00:00Z";
/// The expiry of the good tokens these tests mint (`--ttl 20d`): kept at NOW.
const GOOD: &str = "2026-05-11T00:00:00Z";
/// The user that is not us (`nobody`).
const NOBODY: u32 = 65534;
const SETPRIV: &str = "/usr/bin/setpriv";

// ---------------------------------------------------------------------------------------------
// Running the binary

/// The run, after checking that no key leaked into its output.
fn checked(out: std::process::Output) -> Run {
    Run::from(out).leaking_nothing(CANARY)
}

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::cargo_bin("apim-sas").unwrap();
    cmd.args(args).env_remove("APIM_SAS_KEY");
    cmd
}

fn apim(args: &[&str]) -> Run {
    checked(command(args).output().unwrap())
}

/// A run with `APIM_SAS_KEY` set to `key`.
fn apim_with_key_env(args: &[&str], key: &str) -> Run {
    checked(command(args).env("APIM_SAS_KEY", key).output().unwrap())
}

/// A run reading `input` on stdin.
fn apim_stdin(args: &[&str], input: &str) -> Run {
    checked(command(args).write_stdin(input).output().unwrap())
}

/// The test may act as uid 65534 (root, and setpriv there): build.rs found so when the tests
/// were built, and the test fails if it is no longer so.
fn need_other_user() {
    let root = fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    assert!(
        root && Path::new(SETPRIV).exists(),
        "needs root and {SETPRIV} to act as uid {NOBODY}: .ci/run runs as root and installs \
         util-linux; elsewhere, rebuild the tests (touch build.rs) and this test is ignored \
         instead"
    );
}

/// `program args` run as uid/gid 65534 with no supplementary groups.
fn nobody(program: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(SETPRIV)
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "--",
            program,
        ])
        .args(args)
        .env_remove("APIM_SAS_KEY")
        .output()
        .unwrap()
}

/// The binary run as uid 65534.
fn apim_as_nobody(args: &[&str]) -> Run {
    checked(nobody(env!("CARGO_BIN_EXE_apim-sas"), args))
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `renew --id gw1 <source> --file FILE --now NOW --output json <extra>`.
fn renew_args<'a>(source: &[&'a str], file: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["renew", "--id", "gw1"];
    args.extend_from_slice(source);
    args.extend(["--file", s(file), "--now", NOW, "--output", "json"]);
    args.extend_from_slice(extra);
    args
}

/// The same arguments without `--output json`: text output.
fn text(mut args: Vec<&str>) -> Vec<&str> {
    let at = args.iter().position(|a| *a == "--output").unwrap();
    args.drain(at..at + 2);
    args
}

/// Renews FILE with the list-keys file KEYS.
fn renew(keys: &Path, file: &Path, extra: &[&str]) -> Run {
    apim(&renew_args(&["--keys", s(keys)], file, extra))
}

/// A token of gw1 minted with KEYS at NOW, bare (`extra` adds flags; default `--ttl 20d`).
fn mint(keys: &Path, extra: &[&str]) -> String {
    let mut args = vec!["mint", "--id", "gw1", "--keys", s(keys), "--now", NOW];
    args.extend_from_slice(if extra.is_empty() {
        &["--ttl", "20d"]
    } else {
        extra
    });
    let r = apim(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout.trim().to_owned()
}

/// Whether `token` verifies for gw1 with KEYS at NOW.
fn verifies(keys: &Path, token: &str) -> bool {
    apim(&[
        "verify",
        "--id",
        "gw1",
        "--keys",
        s(keys),
        "--now",
        NOW,
        token,
    ])
    .code
        == 0
}

// ---------------------------------------------------------------------------------------------
// Files and directories

/// A private temporary directory.
struct Dir {
    tmp: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        Dir {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root().join(name)
    }

    /// Writes a file, mode 0600.
    fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, bytes).unwrap();
        set_mode(&path, 0o600);
        path
    }

    /// gw1's keys as Azure's list-keys returns them.
    fn keys(&self) -> PathBuf {
        self.write("gw1.keys.json", list_keys())
    }

    /// The names in the directory: any file a run leaves behind shows here.
    fn names(&self) -> BTreeSet<String> {
        names(self.root())
    }
}

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn set<const N: usize>(names: [&str; N]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

fn list_keys() -> String {
    format!(r#"{{"primary": "{CANARY}-p1", "secondary": "{CANARY}-s1"}}"#)
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The permission bits of the file PATH leads to.
fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().mode() & 0o7777
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).unwrap();
}

/// A file's bytes and mtime.
type State = (Vec<u8>, SystemTime);

fn state(path: &Path) -> State {
    (
        fs::read(path).unwrap(),
        fs::metadata(path).unwrap().modified().unwrap(),
    )
}

/// Sets the file's mtime to a fixed past instant, so that any write shows; its state then.
fn pin(path: &Path) -> State {
    let past = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    fs::File::options()
        .append(true)
        .open(path)
        .unwrap()
        .set_modified(past)
        .unwrap();
    let pinned = state(path);
    assert_eq!(pinned.1, past);
    pinned
}

/// Asserts PATH is a symbolic link to TARGET (as written).
#[track_caller]
fn assert_link(path: &Path, target: &Path) {
    assert!(
        fs::symlink_metadata(path).unwrap().file_type().is_symlink(),
        "{} is no longer a link",
        path.display()
    );
    assert_eq!(fs::read_link(path).unwrap(), target);
}

/// The token a token file holds: `GatewayKey <token>` and a newline, nothing else.
#[track_caller]
fn token_in(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap();
    let line = text.strip_suffix('\n').expect("a trailing newline");
    assert!(!line.contains(['\n', '\r']), "{text:?}");
    line.strip_prefix("GatewayKey ")
        .unwrap_or_else(|| panic!("{text:?}"))
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// File contents

/// A Secret as `kubectl get secret -o json` prints it, holding `GatewayKey <token>` in data.
fn secret_json(token: &str) -> String {
    let data = base64::engine::general_purpose::STANDARD.encode(format!("GatewayKey {token}"));
    format!(
        r#"{{
    "apiVersion": "v1",
    "data": {{
        "value": "{data}"
    }},
    "kind": "Secret",
    "metadata": {{
        "creationTimestamp": "2026-04-01T00:00:00Z",
        "name": "gw1-token",
        "namespace": "apim",
        "resourceVersion": "4711",
        "uid": "5f0c8d43-6a8e-4f57-9a55-2c8f1c0e6f11"
    }},
    "type": "Opaque"
}}
"#
    )
}

/// The Secret `mint --output k8s-secret` writes (YAML).
fn secret_yaml(keys: &Path) -> String {
    let mut args = vec!["mint", "--id", "gw1", "--keys", s(keys), "--now", NOW];
    args.extend(["--ttl", "20d", "--output", "k8s-secret"]);
    let r = apim(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("kind: Secret\n"), "{}", r.stdout);
    r.stdout
}

fn config_map_json() -> &'static str {
    "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"ConfigMap\",\n  \"metadata\": {\"name\": \"gw1\"},\n  \"data\": {\"a\": \"b\"}\n}\n"
}

fn config_map_yaml() -> &'static str {
    "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: gw1\ndata:\n  region: westeurope\n"
}

/// A Docker env file for the gateway holding `token`.
fn env_file(token: &str) -> String {
    format!(
        "config.service.endpoint=https://apim.example/mgmt\nconfig.service.auth=GatewayKey {token}\n"
    )
}

/// The token URL-encoded as a whole (`%26` for `&`, no `&` left).
fn url_encoded(token: &str) -> String {
    let encoded: String = token
        .chars()
        .map(|c| match c {
            '&' => "%26".to_owned(),
            '=' => "%3D".to_owned(),
            '+' => "%2B".to_owned(),
            '/' => "%2F".to_owned(),
            ':' => "%3A".to_owned(),
            c => c.to_string(),
        })
        .collect();
    assert!(!encoded.contains('&'));
    encoded
}

// ---------------------------------------------------------------------------------------------
// Assertions

/// Asserts the run failed with EXIT and stdout is exactly one `{"error": {code, message,
/// target}}` document whose message contains each of FRAGMENTS. WHAT says which case it is.
#[track_caller]
fn assert_error(r: &Run, what: &str, exit: i32, code: &str, target: &str, fragments: &[&str]) {
    assert_eq!(r.code, exit, "{what}: {}{}", r.stdout, r.stderr);
    let doc = r.json();
    let keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["error"], "{what}: {doc}");
    assert_error_body(&doc["error"], what, code, target, fragments);
}

/// Asserts an `error` object: exactly code, message and target, the message naming FRAGMENTS.
#[track_caller]
fn assert_error_body(
    error: &serde_json::Value,
    what: &str,
    code: &str,
    target: &str,
    fragments: &[&str],
) {
    let fields: BTreeSet<&String> = error.as_object().unwrap().keys().collect();
    assert_eq!(
        fields,
        BTreeSet::from([
            &"code".to_owned(),
            &"message".to_owned(),
            &"target".to_owned()
        ]),
        "{what}: {error}"
    );
    assert_eq!(error["code"], code, "{what}: {error}");
    assert_eq!(error["target"], target, "{what}: {error}");
    let message = error["message"].as_str().unwrap();
    for fragment in fragments {
        assert!(
            message.contains(fragment),
            "{what}: the message lacks {fragment:?}: {message}"
        );
    }
}

/// Asserts a text-output failure: EXIT, nothing on stdout, one stderr line
/// `<prefix><code>: …` naming FRAGMENTS.
#[track_caller]
fn assert_text_error(r: &Run, what: &str, exit: i32, prefix_code: &str, fragments: &[&str]) {
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (exit, ""),
        "{what}: {}",
        r.stderr
    );
    assert_eq!(r.stderr.lines().count(), 1, "{what}: {}", r.stderr);
    assert!(
        r.stderr.starts_with(&format!("{prefix_code}: ")),
        "{what}: {}",
        r.stderr
    );
    for fragment in fragments {
        assert!(r.stderr.contains(fragment), "{what}: {}", r.stderr);
    }
}

/// A renewal's JSON report (no --deploy-hook, so `hook` is null).
#[track_caller]
fn assert_renewed(r: &Run, what: &str, reason: &str, expiry: &str, previous: Option<&str>) {
    assert_eq!(r.code, 0, "{what}: {}{}", r.stdout, r.stderr);
    assert_eq!(
        r.json(),
        json!({
            "renewed": true, "reason": reason, "expiry": expiry, "previousExpiry": previous,
            "hook": null,
        }),
        "{what}"
    );
}

/// A kept run's JSON report.
#[track_caller]
fn assert_kept(r: &Run, what: &str, expiry: &str) {
    assert_eq!(r.code, 0, "{what}: {}{}", r.stdout, r.stderr);
    assert_eq!(
        r.json(),
        json!({
            "renewed": false, "reason": null, "expiry": expiry, "previousExpiry": expiry,
            "hook": null,
        }),
        "{what}"
    );
}

/// Renews CONTENT under `--form FORM` with and without `--force`, in JSON and in text: refused
/// each time (exit 2, InvalidArgument, target `file`, naming FRAGMENTS), the file's bytes and
/// mtime as they were, and nothing new in its directory.
#[track_caller]
fn assert_file_refused(form: &str, what: &str, content: &[u8], fragments: &[&str]) {
    let what = format!("--form {form}, {what}");
    let dir = Dir::new();
    let keys = dir.keys();
    let file = dir.write("gw1.out", content);
    let before = pin(&file);
    let listing = dir.names();
    for force in [&[][..], &["--force"][..]] {
        let mut extra = vec!["--form", form];
        extra.extend_from_slice(force);
        let r = renew(&keys, &file, &extra);
        assert_error(&r, &what, 2, "InvalidArgument", "file", fragments);
        assert_eq!(state(&file), before, "{what}: the file changed");
        assert_eq!(dir.names(), listing, "{what}: files were left");
    }
    let r = apim(&text(renew_args(
        &["--keys", s(&keys)],
        &file,
        &["--form", form],
    )));
    assert_text_error(&r, &what, 2, "error: InvalidArgument", fragments);
    assert_eq!(state(&file), before, "{what}: the file changed");
    assert_eq!(dir.names(), listing, "{what}: files were left");
}

// ---------------------------------------------------------------------------------------------
// 1. Files renew does not understand are refused, byte for byte untouched

/// A token file with NUL bytes anywhere is binary, not a token to overwrite.
#[test]
fn token_form_refuses_binary_files() {
    for (what, content) in [
        ("NULs alone", &b"\0\0\0\0"[..]),
        (
            "a NUL after a token",
            b"GatewayKey gw1&202605110000&abc==\0\n",
        ),
        ("a NUL after the BOM", b"\xEF\xBB\xBF\0not a token\n"),
        ("a NUL on a second line", b"not a token\n\0\x01\x02\n"),
    ] {
        assert_file_refused("token", what, content, &["binary"]);
    }
}

/// JSON is never a token file: a Secret points to --form k8s-secret, a list-keys file is named a
/// key file (its keys not shown), any other JSON is named JSON.
#[test]
fn token_form_refuses_json() {
    let dir = Dir::new();
    let token = mint(&dir.keys(), &[]);
    let secret = secret_json(&token);
    let one_line_secret = format!(
        r#"{{"apiVersion":"v1","kind":"Secret","metadata":{{"name":"gw1-token"}},"stringData":{{"value":"GatewayKey {token}"}}}}"#
    );
    let secret_fragments = ["a Kubernetes Secret", "use --form k8s-secret"];
    for (what, content) in [
        ("kubectl's Secret", secret.clone()),
        ("a one-line Secret", one_line_secret),
        (
            "a Secret after a BOM and blank lines",
            format!("\u{feff}\n \n{secret}"),
        ),
    ] {
        assert_file_refused("token", what, content.as_bytes(), &secret_fragments);
    }
    for (what, content) in [
        ("list-keys", list_keys()),
        (
            "list-keys, pretty",
            format!("{{\n  \"primary\": \"{CANARY}-p1\",\n  \"secondary\": \"{CANARY}-s1\"\n}}\n"),
        ),
    ] {
        assert_file_refused("token", what, content.as_bytes(), &["a key file"]);
    }
    for (what, content) in [
        ("an array", "[1, 2, 3]\n".to_owned()),
        ("an array of tokens", format!("[\"{token}\"]\n")),
        (
            "an object holding a token",
            format!("{{\"token\": \"{token}\"}}"),
        ),
        ("a ConfigMap", config_map_json().to_owned()),
        ("an object after blanks", "  \r\n\t{\"a\": 1}\n".to_owned()),
    ] {
        assert_file_refused("token", what, content.as_bytes(), &["JSON"]);
    }
}

/// A Docker env file (any `NAME=…` line other than `uid=`) is not overwritten with a bare token:
/// the message points to --form docker-env.
#[test]
fn token_form_refuses_docker_env_files() {
    let dir = Dir::new();
    let token = mint(&dir.keys(), &[]);
    for (what, content) in [
        (
            "the auth line alone",
            format!("config.service.auth=GatewayKey {token}\n"),
        ),
        (
            "the auth line without a newline",
            format!("config.service.auth=GatewayKey {token}"),
        ),
        ("endpoint and auth lines", env_file(&token)),
        (
            "a CRLF env file after a BOM",
            format!("\u{feff}{}", env_file(&token).replace('\n', "\r\n")),
        ),
        ("another variable alone", "TZ=UTC\n".to_owned()),
    ] {
        assert_file_refused(
            "token",
            what,
            content.as_bytes(),
            &["a Docker env file: use --form docker-env"],
        );
    }
}

/// YAML of several lines is not a token file: a Secret points to --form k8s-secret, any other
/// YAML is named YAML.
#[test]
fn token_form_refuses_yaml() {
    let dir = Dir::new();
    let keys = dir.keys();
    let token = mint(&keys, &[]);
    let hand_written = format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: gw1-token\nstringData:\n  value: GatewayKey {token}\n"
    );
    for (what, content) in [
        ("mint --output k8s-secret", secret_yaml(&keys)),
        ("a hand-written Secret", hand_written),
    ] {
        assert_file_refused(
            "token",
            what,
            content.as_bytes(),
            &["use --form k8s-secret"],
        );
    }
    for (what, content) in [
        ("a ConfigMap", config_map_yaml()),
        ("key: value lines", "gateway: gw1\nregion: westeurope\n"),
        ("a document start and one pair", "---\nname: gw1\n"),
    ] {
        assert_file_refused("token", what, content.as_bytes(), &["YAML"]);
    }
}

/// Several non-blank lines that are none of the above are not one token: refused, naming lines.
#[test]
fn token_form_refuses_several_lines() {
    let dir = Dir::new();
    let keys = dir.keys();
    let one = mint(&keys, &[]);
    let two = mint(&keys, &["--ttl", "10d"]);
    for (what, content) in [
        (
            "two tokens",
            format!("GatewayKey {one}\nGatewayKey {two}\n"),
        ),
        (
            "two bare tokens, blank line between",
            format!("{one}\n\n{two}"),
        ),
        (
            "a token and a note",
            format!("{one}\r\nrenewed by hand\r\n"),
        ),
        ("prose", "not a token\nnor this\n".to_owned()),
    ] {
        assert_file_refused("token", what, content.as_bytes(), &["lines"]);
    }
}

/// One line that is none of the refused kinds is a token file: a good token in any spelling
/// (the bare `uid=` form included) is kept byte for byte; a malformed token, prose, or a token
/// with slips around it is renewed as invalid, with no leftovers.
#[test]
fn token_form_renews_or_keeps_one_line() {
    let dir = Dir::new();
    let keys = dir.keys();
    let compact = mint(&keys, &[]);
    let uid = mint(&keys, &["--ttl", "20d", "--format", "uid"]);
    let file = dir.path("gw1.token");
    for (what, content) in [
        ("bare compact", compact.clone()),
        ("bare uid", format!("{uid}\n")),
        ("GatewayKey", format!("GatewayKey {compact}\n")),
        (
            "SharedAccessSignature uid",
            format!("SharedAccessSignature {uid}"),
        ),
        (
            "portal",
            format!("SharedAccessSignature token=\"{compact}\",refresh=\"true\"\n"),
        ),
        (
            "BOM, blank lines around",
            format!("\u{feff}\n\n  GatewayKey {compact} \r\n\r\n"),
        ),
    ] {
        fs::write(&file, &content).unwrap();
        let before = pin(&file);
        assert_kept(&renew(&keys, &file, &[]), what, GOOD);
        assert_eq!(state(&file), before, "{what}");
        assert_eq!(dir.names(), set(["gw1.keys.json", "gw1.token"]), "{what}");
    }
    for (what, content) in [
        ("malformed", "gw1&2026&abc\n".to_owned()),
        ("prose", "not a token".to_owned()),
        ("another scheme", "Bearer x\n".to_owned()),
        ("in double quotes", format!("\"GatewayKey {compact}\"\n")),
        ("in single quotes", format!("'{compact}'")),
        (
            "after Authorization:",
            format!("Authorization: SharedAccessSignature {uid}\n"),
        ),
        ("URL-encoded", format!("{}\n", url_encoded(&compact))),
    ] {
        fs::write(&file, &content).unwrap();
        assert_renewed(&renew(&keys, &file, &[]), what, "invalid", NEXT, None);
        let renewed = token_in(&file);
        assert!(
            renewed.starts_with("gw1&202605210000&"),
            "{what}: {renewed}"
        );
        assert!(verifies(&keys, &renewed), "{what}");
        assert_eq!(dir.names(), set(["gw1.keys.json", "gw1.token"]), "{what}");
    }
}

/// Under --form docker-env, binary files, JSON, YAML manifests and a file holding just a token
/// line are refused, each naming the form it is.
#[test]
fn docker_env_form_refuses_what_is_not_an_env_file() {
    let dir = Dir::new();
    let keys = dir.keys();
    let token = mint(&keys, &[]);
    let cases: Vec<(&str, String, &[&str])> = vec![
        ("NUL bytes", "A=1\n\0\n".to_owned(), &["binary"]),
        (
            "kubectl's Secret",
            secret_json(&token),
            &["a Kubernetes Secret", "use --form k8s-secret"],
        ),
        ("list-keys", list_keys(), &["a key file"]),
        (
            "a ConfigMap (JSON)",
            config_map_json().to_owned(),
            &["JSON"],
        ),
        (
            "mint --output k8s-secret",
            secret_yaml(&keys),
            &["use --form k8s-secret"],
        ),
        (
            "a ConfigMap (YAML)",
            config_map_yaml().to_owned(),
            &["YAML"],
        ),
        (
            "a token line",
            format!("GatewayKey {token}\n"),
            &["use --form token"],
        ),
        (
            "a token line, BOM and CRLF",
            format!("\u{feff}  GatewayKey {token}\r\n"),
            &["use --form token"],
        ),
    ];
    for (what, content, fragments) in cases {
        assert_file_refused("docker-env", what, content.as_bytes(), fragments);
    }
}

/// Under --form k8s-secret, anything that is not a JSON or YAML Secret is refused: an env file
/// points to --form docker-env, a token file to --form token, JSON of another kind is named not a
/// Kubernetes Secret.
#[test]
fn k8s_secret_form_refuses_what_is_not_a_secret() {
    let dir = Dir::new();
    let keys = dir.keys();
    let token = mint(&keys, &[]);
    let cases: Vec<(&str, String, &[&str])> = vec![
        ("an env file", env_file(&token), &["use --form docker-env"]),
        (
            "the auth line alone",
            format!("config.service.auth=GatewayKey {token}\n"),
            &["use --form docker-env"],
        ),
        (
            "a token file",
            format!("GatewayKey {token}\n"),
            &["use --form token"],
        ),
        ("a bare token", token.clone(), &["use --form token"]),
        (
            "a ConfigMap (JSON)",
            config_map_json().to_owned(),
            &["not a Kubernetes Secret"],
        ),
        ("list-keys", list_keys(), &[]),
        ("a ConfigMap (YAML)", config_map_yaml().to_owned(), &[]),
        ("NUL bytes", "\0\0".to_owned(), &[]),
        ("prose", "not a token\nnor this\n".to_owned(), &[]),
    ];
    for (what, content, fragments) in cases {
        assert_file_refused("k8s-secret", what, content.as_bytes(), fragments);
    }
}

/// Renews with the key source FLAG (a file holding CONTENT) given again as --file: by the same
/// path, spelled another way, through a symbolic link and through a hard link (and the key source
/// given through a link to --file), under every form, with and without --force. Refused each
/// time, naming the key file; the key file untouched.
fn assert_key_source_refused(flag: &str, name: &str, content: &str) {
    let hows = [
        "same path",
        "another spelling",
        "symlink",
        "hard link",
        "key via a symlink",
    ];
    for how in hows {
        for form in ["token", "docker-env", "k8s-secret"] {
            let dir = Dir::new();
            let mut key = dir.write(name, content);
            let link = dir.path(&format!("link-{name}"));
            let file = match how {
                "same path" => key.clone(),
                "another spelling" => dir.root().join(".").join(name),
                "symlink" => {
                    symlink(&key, &link).unwrap();
                    link.clone()
                }
                "hard link" => {
                    fs::hard_link(&key, &link).unwrap();
                    link.clone()
                }
                _ => {
                    symlink(&key, &link).unwrap();
                    std::mem::replace(&mut key, link.clone())
                }
            };
            let before = pin(&key);
            let listing = dir.names();
            for force in [&[][..], &["--force"][..]] {
                let what = format!("{flag} and --file by {how}, --form {form} {force:?}");
                let mut extra = vec!["--form", form];
                extra.extend_from_slice(force);
                let r = apim(&renew_args(&[flag, s(&key)], &file, &extra));
                assert_error(&r, &what, 2, "InvalidArgument", "file", &["the key file"]);
                assert_eq!(state(&key), before, "{what}: the key file changed");
                assert_eq!(dir.names(), listing, "{what}: files were left");
                if how.contains("symlink") {
                    assert_link(&link, &dir.path(name));
                }
            }
        }
    }
}

/// --key-file given as --file (a one-line key looks like a token file) is refused.
#[test]
fn the_key_file_is_never_renewed_over() {
    assert_key_source_refused("--key-file", "gw1.key", &format!("{CANARY}-p1\n"));
}

/// --keys given as --file is refused as the key file.
#[test]
fn the_keys_file_is_never_renewed_over() {
    assert_key_source_refused("--keys", "gw1.keys.json", &list_keys());
}

/// --keystore (JSON, and TOML) given as --file is refused as the key file.
#[test]
fn the_keystore_is_never_renewed_over() {
    let store = format!(
        r#"{{"gw1": {{"primary": "{CANARY}-p1", "secondary": "{CANARY}-s1"}}, "gw2": {{"primary": "{CANARY}-p2", "secondary": "{CANARY}-s2"}}}}"#
    );
    assert_key_source_refused("--keystore", "keystore.json", &store);
    let toml = format!("[gw1]\nprimary = \"{CANARY}-p1\"\nsecondary = \"{CANARY}-s1\"\n");
    assert_key_source_refused("--keystore", "keystore.toml", &toml);
}

// ---------------------------------------------------------------------------------------------
// 2. Keys and tokens with their wrapping

const QUOTE_HINTS: [&str; 3] = ["wrapped in quotes", "jq -r", "--output tsv"];

/// A key in quotes (what `jq` without -r or `az … -o json` prints) is InvalidKey with the hint,
/// from --key-file and APIM_SAS_KEY, for mint, renew (nothing written) and verify.
#[test]
fn quoted_keys_are_invalid_key_with_the_hint() {
    let dir = Dir::new();
    let good = mint(&dir.keys(), &[]);
    let file = dir.path("gw1.token");
    for quoted in [
        format!("\"{CANARY}-p1\""),
        format!("'{CANARY}-p1'"),
        format!("  \"{CANARY}-p1\"\r\n"),
    ] {
        let key_file = dir.write("gw1.key", &quoted);
        let kf = s(&key_file);
        for (label, args) in [
            (
                "mint",
                vec![
                    "mint",
                    "--id",
                    "gw1",
                    "--key-file",
                    kf,
                    "--now",
                    NOW,
                    "--output",
                    "json",
                ],
            ),
            ("renew", renew_args(&["--key-file", kf], &file, &[])),
            (
                "verify",
                vec![
                    "verify",
                    "--id",
                    "gw1",
                    "--key-file",
                    kf,
                    "--now",
                    NOW,
                    "--output",
                    "json",
                    good.as_str(),
                ],
            ),
        ] {
            let what = format!("{label} --key-file holding {quoted:?}");
            assert_error(&apim(&args), &what, 2, "InvalidKey", "key", &QUOTE_HINTS);
            assert!(!file.exists(), "{what}");
        }
        for (label, args) in [
            (
                "mint",
                vec!["mint", "--id", "gw1", "--now", NOW, "--output", "json"],
            ),
            ("renew", renew_args(&[], &file, &[])),
            (
                "verify",
                vec![
                    "verify",
                    "--id",
                    "gw1",
                    "--now",
                    NOW,
                    "--output",
                    "json",
                    good.as_str(),
                ],
            ),
        ] {
            let what = format!("{label} with APIM_SAS_KEY={quoted:?}");
            let r = apim_with_key_env(&args, &quoted);
            assert_error(&r, &what, 2, "InvalidKey", "key", &QUOTE_HINTS);
            assert!(!file.exists(), "{what}");
        }
    }
    // The same key unquoted is fine: the refusal is about the quotes.
    let r = apim_with_key_env(
        &["mint", "--id", "gw1", "--now", NOW, "--ttl", "20d"],
        &format!("{CANARY}-p1"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), good);
}

/// A JSON object where one key belongs (a list-keys answer saved as --key-file, or put in
/// APIM_SAS_KEY) is InvalidKey naming JSON, and --keys for the file.
#[test]
fn json_given_as_one_key_is_invalid_key() {
    let dir = Dir::new();
    let pretty =
        format!("{{\n  \"primary\": \"{CANARY}-p1\",\n  \"secondary\": \"{CANARY}-s1\"\n}}\n");
    for json_text in [list_keys(), format!("{}\n", list_keys()), pretty] {
        let key_file = dir.write("gw1.key", &json_text);
        let what = format!("--key-file holding {json_text:?}");
        let r = apim(&[
            "mint",
            "--id",
            "gw1",
            "--key-file",
            s(&key_file),
            "--now",
            NOW,
            "--output",
            "json",
        ]);
        assert_error(&r, &what, 2, "InvalidKey", "key", &["JSON", "--keys"]);
        let file = dir.path("gw1.token");
        let r = apim(&renew_args(&["--key-file", s(&key_file)], &file, &[]));
        assert_error(&r, &what, 2, "InvalidKey", "key", &["JSON", "--keys"]);
        assert!(!file.exists(), "{what}");
    }
    let r = apim_with_key_env(
        &["mint", "--id", "gw1", "--now", NOW, "--output", "json"],
        &list_keys(),
    );
    assert_error(
        &r,
        "APIM_SAS_KEY holding JSON",
        2,
        "InvalidKey",
        "key",
        &["JSON"],
    );
}

/// Values in --keys and --keystore wrapped in quotes are InvalidKey with the hint too.
#[test]
fn quoted_values_in_keys_and_keystore_are_invalid_key() {
    let dir = Dir::new();
    let pair = format!(r#"{{"primary": "\"{CANARY}-p1\"", "secondary": "{CANARY}-s1"}}"#);
    let store = format!(r#"{{"gw1": {{"primary": "'{CANARY}-p1'", "secondary": "{CANARY}-s1"}}}}"#);
    let keys = dir.write("gw1.keys.json", &pair);
    let keystore = dir.write("keystore.json", &store);
    for source in [["--keys", s(&keys)], ["--keystore", s(&keystore)]] {
        let mut args = vec!["mint", "--id", "gw1", "--now", NOW, "--output", "json"];
        args.extend(source);
        assert_error(
            &apim(&args),
            &format!("{source:?}"),
            2,
            "InvalidKey",
            "key",
            &QUOTE_HINTS,
        );
    }
}

/// Tokens pasted with their wrapping, each with the hint its slip needs.
fn slips(compact: &str, uid: &str) -> Vec<(String, &'static str)> {
    vec![
        (format!("\"{compact}\""), "quotes"),
        (format!("'{compact}'"), "quotes"),
        (format!("\"GatewayKey {compact}\""), "quotes"),
        (format!("'SharedAccessSignature {uid}'"), "quotes"),
        (
            format!("config.service.auth=GatewayKey {compact}"),
            "config.service.auth=",
        ),
        (
            format!("config.service.auth={compact}"),
            "config.service.auth=",
        ),
        (
            format!("Authorization: SharedAccessSignature {uid}"),
            "Authorization",
        ),
        (
            format!("authorization: GatewayKey {compact}"),
            "Authorization",
        ),
        (
            format!("AUTHORIZATION:SharedAccessSignature {uid}"),
            "Authorization",
        ),
        (url_encoded(compact), "URL-encoded"),
        (url_encoded(uid), "URL-encoded"),
    ]
}

/// verify, inspect and convert refuse a wrapped token as MalformedToken (exit 1) with the hint,
/// in text output (one stderr line, nothing on stdout).
#[test]
fn wrapped_tokens_are_malformed_with_the_hint() {
    let dir = Dir::new();
    let keys = dir.keys();
    let compact = mint(&keys, &[]);
    let uid = mint(&keys, &["--ttl", "20d", "--format", "uid"]);
    // Unwrapped, they are good: the refusals below are about the wrapping.
    assert!(verifies(&keys, &compact) && verifies(&keys, &uid));
    for (token, hint) in slips(&compact, &uid) {
        let what = format!("{token:?}");
        let k = s(&keys);
        let verify = ["verify", "--id", "gw1", "--keys", k, "--now", NOW];
        let r = apim(&[&verify[..], &[token.as_str()][..]].concat());
        assert_text_error(
            &r,
            &format!("verify {what}"),
            1,
            "invalid: MalformedToken",
            &[hint],
        );
        let r = apim(&["inspect", "--now", NOW, &token]);
        assert_text_error(
            &r,
            &format!("inspect {what}"),
            1,
            "error: MalformedToken",
            &[hint],
        );
        let r = apim(&["convert", "--to", "uid", &token]);
        assert_text_error(
            &r,
            &format!("convert {what}"),
            1,
            "error: MalformedToken",
            &[hint],
        );
        // From stdin, with its newline, the same.
        let r = apim_stdin(&["inspect", "--now", NOW, "-"], &format!("{token}\n"));
        assert_text_error(
            &r,
            &format!("inspect - {what}"),
            1,
            "error: MalformedToken",
            &[hint],
        );
    }
}

/// The same refusals under --output json: one JSON document, exit 1, code MalformedToken,
/// target token, the hint in the message.
#[test]
fn wrapped_tokens_are_malformed_under_output_json() {
    let dir = Dir::new();
    let keys = dir.keys();
    let compact = mint(&keys, &[]);
    let uid = mint(&keys, &["--ttl", "20d", "--format", "uid"]);
    for (token, hint) in slips(&compact, &uid) {
        let what = format!("{token:?}");
        let k = s(&keys);
        // verify's document for a refused token: valid false and the error.
        for r in [
            apim(&[
                "verify",
                "--id",
                "gw1",
                "--keys",
                k,
                "--now",
                NOW,
                "--output",
                "json",
                token.as_str(),
            ]),
            apim_stdin(
                &[
                    "verify", "--id", "gw1", "--keys", k, "--now", NOW, "--output", "json", "-",
                ],
                &format!("{token}\n"),
            ),
        ] {
            assert_eq!(r.code, 1, "verify {what}: {}{}", r.stdout, r.stderr);
            assert_eq!(r.stdout.lines().count(), 1, "verify {what}: {}", r.stdout);
            let doc = r.json();
            let fields: Vec<&String> = doc.as_object().unwrap().keys().collect();
            assert_eq!(fields.len(), 2, "verify {what}: {doc}");
            assert_eq!(doc["valid"], false, "verify {what}: {doc}");
            assert_error_body(
                &doc["error"],
                &format!("verify {what}"),
                "MalformedToken",
                "token",
                &[hint],
            );
        }
        for (label, args) in [
            ("inspect", vec!["inspect", "--now", NOW, "--output", "json"]),
            (
                "convert",
                vec!["convert", "--to", "uid", "--output", "json"],
            ),
        ] {
            let r = apim(&[&args[..], &[token.as_str()][..]].concat());
            assert_error(
                &r,
                &format!("{label} {what}"),
                1,
                "MalformedToken",
                "token",
                &[hint],
            );
            assert_eq!(r.stdout.lines().count(), 1, "{label} {what}: {}", r.stdout);
            let r = apim_stdin(&[&args[..], &["-"][..]].concat(), &format!("{token}\n"));
            assert_error(
                &r,
                &format!("{label} - {what}"),
                1,
                "MalformedToken",
                "token",
                &[hint],
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Unwritable targets found on every run

/// A directory for the uid-65534 tests: root-owned, 0755 (nobody may enter it, not write it),
/// holding gw1's keys, readable by nobody.
fn root_owned_dir() -> (Dir, PathBuf) {
    let dir = Dir::new();
    set_mode(dir.root(), 0o755);
    let keys = dir.keys();
    set_mode(&keys, 0o644);
    (dir, keys)
}

/// Writes `gw1.token` in DIR, readable by everyone (0644).
fn readable_token_file(dir: &Dir, content: &str) -> PathBuf {
    let file = dir.write("gw1.token", content);
    set_mode(&file, 0o644);
    file
}

/// A kept run as a user that cannot write the file's directory fails now (exit 2, cannot
/// write), not weeks later when the renewal is due; the file untouched.
#[test]
#[cfg_attr(
    any(skip_root, skip_setpriv),
    ignore = "needs root and /usr/bin/setpriv (apt-get install -y util-linux) to act as \
              another user"
)]
fn a_kept_run_that_cannot_write_the_directory_exits_2() {
    need_other_user();
    let (dir, keys) = root_owned_dir();
    let token = mint(&keys, &[]);
    let file = readable_token_file(&dir, &format!("GatewayKey {token}\n"));
    let before = pin(&file);
    let listing = dir.names();
    let args = renew_args(&["--keys", s(&keys)], &file, &[]);
    let r = apim_as_nobody(&args);
    assert_error(
        &r,
        "kept, as nobody",
        2,
        "InvalidArgument",
        "file",
        &["cannot write"],
    );
    assert_eq!(state(&file), before);
    assert_eq!(dir.names(), listing);
    // In text: the error on stderr (after the warning that others may read the keys), nothing
    // on stdout.
    let r = apim_as_nobody(&text(args));
    assert_eq!((r.code, r.stdout.as_str()), (2, ""), "{}", r.stderr);
    let last = r.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: InvalidArgument: ") && last.contains("cannot write"),
        "{}",
        r.stderr
    );
    assert_eq!(state(&file), before);
    assert_eq!(dir.names(), listing);
}

/// A renewal due as a user that cannot write the directory: exit 2, cannot write, nothing
/// written.
#[test]
#[cfg_attr(
    any(skip_root, skip_setpriv),
    ignore = "needs root and /usr/bin/setpriv (apt-get install -y util-linux) to act as \
              another user"
)]
fn a_due_renewal_that_cannot_write_the_directory_exits_2() {
    need_other_user();
    let (dir, keys) = root_owned_dir();
    let file = readable_token_file(&dir, "not a token\n");
    let before = pin(&file);
    let listing = dir.names();
    for extra in [&[][..], &["--force"][..]] {
        let r = apim_as_nobody(&renew_args(&["--keys", s(&keys)], &file, extra));
        let what = format!("due, as nobody {extra:?}");
        assert_error(&r, &what, 2, "InvalidArgument", "file", &["cannot write"]);
        assert_eq!(state(&file), before, "{what}");
        assert_eq!(dir.names(), listing, "{what}");
    }
}

/// The same kept run by the directory's owner (root in CI), who may write it: exit 0, kept,
/// untouched.
#[test]
fn the_same_kept_run_by_the_owner_succeeds() {
    let (dir, keys) = root_owned_dir();
    let token = mint(&keys, &[]);
    let file = readable_token_file(&dir, &format!("GatewayKey {token}\n"));
    let before = pin(&file);
    let listing = dir.names();
    assert_kept(&renew(&keys, &file, &[]), "kept, as the owner", GOOD);
    assert_eq!(state(&file), before);
    assert_eq!(dir.names(), listing);
}

/// A read-only file (0444) in a directory the job may write is no obstacle: kept when good,
/// replaced when due (the rename replaces it), its mode kept.
#[test]
#[cfg_attr(
    any(skip_root, skip_setpriv),
    ignore = "needs root and /usr/bin/setpriv (apt-get install -y util-linux) to act as \
              another user"
)]
fn a_read_only_file_in_a_writable_directory_renews() {
    need_other_user();
    let dir = Dir::new();
    let keys = dir.keys();
    set_mode(&keys, 0o644);
    let token = mint(&keys, &[]);
    chown(dir.root(), NOBODY);
    set_mode(dir.root(), 0o755);
    let file = dir.write("gw1.token", format!("GatewayKey {token}\n"));
    chown(&file, NOBODY);
    set_mode(&file, 0o444);
    let before = pin(&file);
    let r = apim_as_nobody(&renew_args(&["--keys", s(&keys)], &file, &[]));
    assert_kept(&r, "read-only, kept", GOOD);
    assert_eq!(state(&file), before);

    let r = apim_as_nobody(&renew_args(&["--keys", s(&keys)], &file, &["--force"]));
    assert_renewed(&r, "read-only, forced", "forced", NEXT, Some(GOOD));
    let renewed = token_in(&file);
    assert!(renewed.starts_with("gw1&202605210000&"), "{renewed}");
    let meta = fs::metadata(&file).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o444, NOBODY));
    assert_eq!(dir.names(), set(["gw1.keys.json", "gw1.token"]));
}

// ---------------------------------------------------------------------------------------------
// 6. Symlinks and names

/// A sticky world-writable directory (as /tmp is), root-owned, and a link in it planted by uid
/// 65534 to TARGET.
fn planted_link(target: &Path) -> (Dir, PathBuf) {
    let sticky = Dir::new();
    set_mode(sticky.root(), 0o1777);
    let link = sticky.path("gw1.token");
    let out = nobody("/bin/ln", &["-s", s(target), s(&link)]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(fs::symlink_metadata(&link).unwrap().uid(), NOBODY);
    (sticky, link)
}

/// renew as root through a link another user planted in a sticky directory is refused (the link
/// would let that user overwrite any file root can write): the message names the symbolic link
/// and its owner; the target untouched, the link as planted.
#[test]
#[cfg_attr(
    any(skip_root, skip_setpriv),
    ignore = "needs root and /usr/bin/setpriv (apt-get install -y util-linux) to act as \
              another user"
)]
fn a_symlink_planted_by_another_user_is_refused() {
    need_other_user();
    let elsewhere = Dir::new();
    let keys = elsewhere.keys();
    // What renew would replace: a one-line file (a token file by its look).
    let victim = elsewhere.write("precious", "not a token\n");
    let before = pin(&victim);
    let (sticky, link) = planted_link(&victim);
    let (here, there) = (sticky.names(), elsewhere.names());
    for form in ["token", "docker-env"] {
        for extra in [&[][..], &["--force"][..]] {
            let what = format!("--form {form} {extra:?}");
            let mut flags = vec!["--form", form];
            flags.extend_from_slice(extra);
            let r = renew(&keys, &link, &flags);
            assert_error(
                &r,
                &what,
                2,
                "InvalidArgument",
                "file",
                &["symbolic link", "65534"],
            );
            assert_eq!(state(&victim), before, "{what}");
            assert_link(&link, &victim);
            assert_eq!(
                (sticky.names(), elsewhere.names()),
                (here.clone(), there.clone()),
                "{what}"
            );
        }
    }
}

/// A dangling link another user planted is refused too, and its target is not created.
#[test]
#[cfg_attr(
    any(skip_root, skip_setpriv),
    ignore = "needs root and /usr/bin/setpriv (apt-get install -y util-linux) to act as \
              another user"
)]
fn a_dangling_symlink_planted_by_another_user_creates_nothing() {
    need_other_user();
    let elsewhere = Dir::new();
    let keys = elsewhere.keys();
    let target = elsewhere.path("created-by-root");
    let (sticky, link) = planted_link(&target);
    let r = renew(&keys, &link, &[]);
    assert_error(
        &r,
        "dangling, planted",
        2,
        "InvalidArgument",
        "file",
        &["symbolic link", "65534"],
    );
    assert!(!target.exists() && fs::symlink_metadata(&target).is_err());
    assert_link(&link, &target);
    assert_eq!(sticky.names(), set(["gw1.token"]));
    assert_eq!(elsewhere.names(), set(["gw1.keys.json"]));
}

/// Our own link (here, relative) is followed: the file it points to is replaced, keeping its
/// mode; the link stays the same link; a kept run touches nothing; no leftovers on either side.
#[test]
fn our_own_symlink_is_followed_and_stays_a_link() {
    let dir = Dir::new();
    let keys = dir.keys();
    fs::create_dir(dir.path("real")).unwrap();
    let real = dir.write("real/gw1.token", "not a token\n");
    set_mode(&real, 0o640);
    let link = dir.path("gw1.token");
    symlink("real/gw1.token", &link).unwrap();

    assert_renewed(
        &renew(&keys, &link, &[]),
        "via our link",
        "invalid",
        NEXT,
        None,
    );
    assert_link(&link, Path::new("real/gw1.token"));
    let token = token_in(&real);
    assert!(
        token.starts_with("gw1&202605210000&") && verifies(&keys, &token),
        "{token}"
    );
    assert_eq!(mode(&real), 0o640);
    assert_eq!(dir.names(), set(["gw1.keys.json", "gw1.token", "real"]));
    assert_eq!(names(&dir.path("real")), set(["gw1.token"]));

    let before = pin(&real);
    assert_kept(&renew(&keys, &link, &[]), "kept via our link", NEXT);
    assert_eq!(state(&real), before);
    assert_renewed(
        &renew(&keys, &link, &["--force"]),
        "forced via our link",
        "forced",
        NEXT,
        Some(NEXT),
    );
    assert_ne!(state(&real), before);
    assert_link(&link, Path::new("real/gw1.token"));
    assert_eq!(dir.names(), set(["gw1.keys.json", "gw1.token", "real"]));
    assert_eq!(names(&dir.path("real")), set(["gw1.token"]));
}

/// A chain of our links (a → b → file, across directories) is followed to the end: the file is
/// replaced, both links stay as they were.
#[test]
fn a_chain_of_links_is_followed() {
    let dir = Dir::new();
    let keys = dir.keys();
    for sub in ["one", "two"] {
        fs::create_dir(dir.path(sub)).unwrap();
    }
    let real = dir.write("two/gw1.token", "Bearer x\n");
    let b = dir.path("one/b");
    symlink(&real, &b).unwrap();
    let a = dir.path("a");
    symlink("one/b", &a).unwrap();

    assert_renewed(&renew(&keys, &a, &[]), "via a chain", "invalid", NEXT, None);
    assert_link(&a, Path::new("one/b"));
    assert_link(&b, &real);
    let token = token_in(&real);
    assert!(verifies(&keys, &token), "{token}");
    assert_eq!(dir.names(), set(["a", "gw1.keys.json", "one", "two"]));
    assert_eq!(names(&dir.path("one")), set(["b"]));
    assert_eq!(names(&dir.path("two")), set(["gw1.token"]));
}

/// For a job that is not root, a link owned by root or by the job's own user is followed: the
/// file it points to is replaced, the link stays.
#[test]
#[cfg_attr(
    any(skip_root, skip_setpriv),
    ignore = "needs root and /usr/bin/setpriv (apt-get install -y util-linux) to act as \
              another user"
)]
fn links_owned_by_root_or_by_the_job_are_followed() {
    need_other_user();
    let (dir, keys) = root_owned_dir();
    let work = dir.path("work");
    fs::create_dir(&work).unwrap();
    chown(&work, NOBODY);
    let real = work.join("gw1.token");
    fs::write(&real, "not a token\n").unwrap();
    chown(&real, NOBODY);
    let root_link = work.join("root.link");
    symlink("gw1.token", &root_link).unwrap();
    let own_link = work.join("own.link");
    let out = nobody("/bin/ln", &["-s", "gw1.token", s(&own_link)]);
    assert!(out.status.success(), "{out:?}");
    let owner = |link: &Path| fs::symlink_metadata(link).unwrap().uid();
    assert_eq!((owner(&root_link), owner(&own_link)), (0, NOBODY));

    let r = apim_as_nobody(&renew_args(&["--keys", s(&keys)], &root_link, &[]));
    assert_renewed(&r, "root's link, as nobody", "invalid", NEXT, None);
    let first = token_in(&real);
    assert!(verifies(&keys, &first), "{first}");
    let before = pin(&real);
    let r = apim_as_nobody(&renew_args(&["--keys", s(&keys)], &own_link, &["--force"]));
    assert_renewed(&r, "own link, as nobody", "forced", NEXT, Some(NEXT));
    assert_ne!(state(&real), before);
    for link in [&root_link, &own_link] {
        assert_link(link, Path::new("gw1.token"));
    }
    assert_eq!(fs::metadata(&real).unwrap().uid(), NOBODY);
    assert_eq!(names(&work), set(["gw1.token", "own.link", "root.link"]));
}

/// Our dangling link: renewed as missing, its target created as a regular file with mode 0600,
/// the link left a link.
#[test]
fn a_dangling_symlink_of_ours_creates_its_target_0600() {
    let dir = Dir::new();
    let keys = dir.keys();
    fs::create_dir(dir.path("real")).unwrap();
    let real = dir.path("real/gw1.token");
    let link = dir.path("gw1.token");
    symlink(&real, &link).unwrap();

    assert_renewed(
        &renew(&keys, &link, &[]),
        "dangling link",
        "missing",
        NEXT,
        None,
    );
    assert_link(&link, &real);
    let meta = fs::symlink_metadata(&real).unwrap();
    assert!(meta.file_type().is_file(), "{meta:?}");
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert!(verifies(&keys, &token_in(&real)));
    assert_eq!(dir.names(), set(["gw1.keys.json", "gw1.token", "real"]));
    assert_eq!(names(&dir.path("real")), set(["gw1.token"]));
}

/// File names of 240 and 255 bytes (the most a name may have) are created, replaced and kept,
/// in both line forms, with no temporary file left.
#[test]
fn names_of_240_and_255_bytes_renew_without_leftovers() {
    for len in [240, 255] {
        for form in ["token", "docker-env"] {
            let dir = Dir::new();
            let keys = dir.keys();
            let name = format!("{}.token", "g".repeat(len - ".token".len()));
            assert_eq!(name.len(), len);
            let file = dir.path(&name);
            let what = format!("{len} bytes, --form {form}");
            let expected = set(["gw1.keys.json", &name]);
            let r = renew(&keys, &file, &["--form", form]);
            assert_renewed(&r, &what, "missing", NEXT, None);
            assert_eq!(dir.names(), expected, "{what}");
            let r = renew(&keys, &file, &["--form", form, "--force"]);
            assert_renewed(&r, &what, "forced", NEXT, Some(NEXT));
            assert_eq!(dir.names(), expected, "{what}");
            let before = pin(&file);
            assert_kept(&renew(&keys, &file, &["--form", form]), &what, NEXT);
            assert_eq!(state(&file), before, "{what}");
            assert_eq!(dir.names(), expected, "{what}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 7. mint --ttl 30s

/// `mint --ttl 30s` in the compact form (whole minutes) would expire at or before now: refused
/// as ExpiryInPast with why (the compact form floors the expiry to the minute); the uid form and
/// a whole minute are fine.
#[test]
fn mint_ttl_30s_says_the_compact_form_floors_to_the_minute() {
    let dir = Dir::new();
    let keys = dir.keys();
    let k = s(&keys);
    let fragments = ["compact", "floors", "to the minute"];
    for now in [NOW, "2026-04-21T00:00:20Z"] {
        let what = format!("--ttl 30s at {now}");
        let mint = [
            "mint", "--id", "gw1", "--keys", k, "--now", now, "--ttl", "30s",
        ];
        let r = apim(&[&mint[..], &["--output", "json"][..]].concat());
        assert_error(&r, &what, 2, "ExpiryInPast", "expiry", &fragments);
        let r = apim(&mint);
        assert_text_error(&r, &what, 2, "error: ExpiryInPast", &fragments);
        let r = apim(&[&mint[..], &["--format", "compact"][..]].concat());
        assert_text_error(&r, &what, 2, "error: ExpiryInPast", &fragments);
    }
    let r = apim(&[
        "mint", "--id", "gw1", "--keys", k, "--now", NOW, "--ttl", "30s", "--format", "uid",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .starts_with("uid=gw1&ex=2026-04-21T00:00:30.0000000Z&sn="),
        "{}",
        r.stdout
    );
    let r = apim(&[
        "mint", "--id", "gw1", "--keys", k, "--now", NOW, "--ttl", "1m",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("gw1&202604210001&"), "{}", r.stdout);
}
