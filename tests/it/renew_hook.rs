//! `apim-sas renew --deploy-hook CMD`: the command that rolls the gateway after its token file
//! changed. It runs only after a renewal was written, with APIM_SAS_FILE, APIM_SAS_REASON and
//! APIM_SAS_EXPIRY; its output goes to renew's stderr; a hook that fails (or is killed) makes
//! renew exit 2 with the renewal written and leaves a marker, so that the next run, whose file is
//! now fresh, runs the hook again until it succeeds. The real binary, a fixed clock (`--now`), a
//! hook that records what it was given.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use assert_cmd::Command;
use serde_json::{json, Value};

use crate::common::Run;

/// Appears in every key these tests use; must appear in no output.
const CANARY: &str = "CANARY-KEY-3f9b-hook";
const NOW: &str = "2026-04-21T00:00:00Z";
/// Six days before a token made at NOW expires: within the default 7-day window.
const LATER: &str = "2026-05-15T00:00:00Z";
/// The token file, relative to the test's directory, as renew is given it.
const FILE: &str = "./run/gw1.token";

/// Runs `cmd` and checks that no key leaked into its output.
fn run(mut cmd: Command) -> Run {
    Run::from(cmd.output().unwrap()).leaking_nothing(CANARY)
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    /// A directory holding the keys, the hook's log and `run/`, where the token file lives.
    fn new() -> Env {
        let env = Env {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::create_dir(env.run_dir()).unwrap();
        let keys = env.keys();
        fs::write(
            &keys,
            format!(r#"{{"primary": "{CANARY}-p1", "secondary": "{CANARY}-s1"}}"#),
        )
        .unwrap();
        set_mode(&keys, 0o600);
        env
    }

    fn keys(&self) -> PathBuf {
        self.dir.path().join("gw1.keys.json")
    }

    fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// The token file.
    fn file(&self) -> PathBuf {
        self.dir.path().join(FILE)
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("hook.log")
    }

    /// The binary, run in the test's directory with nothing in its environment but PATH.
    fn command(&self) -> Command {
        let mut cmd = Command::cargo_bin("apim-sas").unwrap();
        cmd.current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        cmd
    }

    /// `renew` on FILE with the test keys, `--form form`, `--output output`, at `now`, `extra`.
    fn renew_as(&self, form: &str, output: &str, now: &str, extra: &[&str]) -> Run {
        let mut cmd = self.command();
        cmd.args(["renew", "--id", "gw1", "--keys"])
            .arg(self.keys())
            .args(["--file", FILE, "--form", form, "--output", output])
            .args(["--now", now])
            .args(extra);
        run(cmd)
    }

    /// `renew` of the token file, JSON output.
    fn renew(&self, now: &str, extra: &[&str]) -> Run {
        self.renew_as("token", "json", now, extra)
    }

    /// A hook that appends to the log the APIM_SAS_ variables it was given and what its stdin is,
    /// writes a line to its stdout and one to its stderr, then runs `end` (`exit 0`, `exit 3`…).
    fn hook(&self, end: &str) -> String {
        format!(
            "{{ env | grep '^APIM_SAS_' | LC_ALL=C sort; \
             printf 'stdin=%s\\n--\\n' \"$(readlink /proc/self/fd/0)\"; }} >> '{}'; \
             echo hook-said-this-on-stdout; echo hook-said-this-on-stderr >&2; {end}",
            self.log().display()
        )
    }

    /// What the hook recorded, one entry per run, since the last call (the log is then removed).
    fn runs(&self) -> Vec<String> {
        let Ok(text) = fs::read_to_string(self.log()) else {
            return Vec::new();
        };
        fs::remove_file(self.log()).unwrap();
        text.split_terminator("--\n").map(str::to_owned).collect()
    }

    /// Hook markers in the token file's directory.
    fn markers(&self) -> Vec<String> {
        self.dot_files()
            .into_iter()
            .filter(|name| name.contains("apim-sas-hook"))
            .collect()
    }

    /// Every dot-file (or temporary file) in the token file's directory.
    fn dot_files(&self) -> Vec<String> {
        fs::read_dir(self.run_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with('.') || name.ends_with(".tmp"))
            .collect()
    }

    /// The token in the token file, which must verify with gw1's keys at `now`.
    #[track_caller]
    fn good_token(&self, now: &str) -> String {
        let text = fs::read_to_string(self.file()).unwrap();
        let token = text
            .strip_prefix("GatewayKey ")
            .and_then(|rest| rest.strip_suffix('\n'))
            .unwrap_or_else(|| panic!("{text:?}"))
            .to_owned();
        let mut cmd = self.command();
        cmd.args(["verify", "--id", "gw1", "--keys"])
            .arg(self.keys())
            .args(["--now", now, &token]);
        assert_eq!(run(cmd).code, 0, "{token}");
        token
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The file's bytes and mtime, the mtime first set in the past so that a write would show.
fn snapshot(path: &Path) -> (Vec<u8>, SystemTime) {
    let past = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    fs::File::options()
        .append(true)
        .open(path)
        .unwrap()
        .set_modified(past)
        .unwrap();
    unchanged(path)
}

fn unchanged(path: &Path) -> (Vec<u8>, SystemTime) {
    (
        fs::read(path).unwrap(),
        fs::metadata(path).unwrap().modified().unwrap(),
    )
}

/// What the hook records for `file`, `reason` and `expiry`: exactly the three variables, stdin
/// /dev/null.
fn record(file: &str, reason: &str, expiry: &str) -> String {
    format!(
        "APIM_SAS_EXPIRY={expiry}\nAPIM_SAS_FILE={file}\nAPIM_SAS_REASON={reason}\n\
         stdin=/dev/null\n"
    )
}

/// renew's JSON report.
fn report(reason: Option<&str>, expiry: &str, previous: Option<&str>, hook: Value) -> Value {
    json!({
        "renewed": reason.is_some(),
        "reason": reason,
        "expiry": expiry,
        "previousExpiry": previous,
        "hook": hook,
    })
}

fn ran(retry: bool, exit_status: Option<i32>) -> Value {
    json!({"ran": true, "retry": retry, "exitStatus": exit_status})
}

/// Asserts the run exited 0 with exactly `expected` on stdout as its one JSON document.
#[track_caller]
fn assert_report(r: &Run, expected: Value) {
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.json(), expected, "{}", r.stderr);
}

/// Asserts the run exited 2 with the renewal report `expected` and, beside it, the hook's error
/// (InvalidArgument, target deployHook, a message).
#[track_caller]
fn assert_hook_failed(r: &Run, expected: Value) {
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    let mut doc = r.json();
    let message = doc["error"]["message"].take();
    assert!(
        message.as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        r.stdout
    );
    let mut expected = expected;
    expected["error"] = json!({"code": "InvalidArgument", "message": null, "target": "deployHook"});
    assert_eq!(doc, expected, "{}", r.stderr);
}

/// Each reason a renewal is written runs the hook once, given APIM_SAS_FILE (the --file value as
/// given, relative), APIM_SAS_REASON and APIM_SAS_EXPIRY (the report's expiry) and no other
/// APIM_SAS_ variable, stdin /dev/null; the report says it ran and succeeded.
#[test]
fn the_hook_gets_file_reason_and_expiry_for_each_reason() {
    let env = Env::new();
    let hook = env.hook("exit 0");
    let ok = ran(false, Some(0));

    let r = env.renew(NOW, &["--deploy-hook", &hook]);
    assert_report(
        &r,
        report(Some("missing"), "2026-05-21T00:00:00Z", None, ok.clone()),
    );
    assert_eq!(
        env.runs(),
        [record(FILE, "missing", "2026-05-21T00:00:00Z")]
    );
    env.good_token(NOW);

    fs::write(env.file(), "not a token\n").unwrap();
    let r = env.renew(NOW, &["--deploy-hook", &hook]);
    assert_report(
        &r,
        report(Some("invalid"), "2026-05-21T00:00:00Z", None, ok.clone()),
    );
    assert_eq!(
        env.runs(),
        [record(FILE, "invalid", "2026-05-21T00:00:00Z")]
    );

    let r = env.renew(LATER, &["--deploy-hook", &hook]);
    assert_report(
        &r,
        report(
            Some("expiring"),
            "2026-06-14T00:00:00Z",
            Some("2026-05-21T00:00:00Z"),
            ok.clone(),
        ),
    );
    assert_eq!(
        env.runs(),
        [record(FILE, "expiring", "2026-06-14T00:00:00Z")]
    );

    let r = env.renew("2026-05-16T12:00:00Z", &["--deploy-hook", &hook, "--force"]);
    assert_report(
        &r,
        report(
            Some("forced"),
            "2026-06-15T12:00:00Z",
            Some("2026-06-14T00:00:00Z"),
            ok,
        ),
    );
    assert_eq!(env.runs(), [record(FILE, "forced", "2026-06-15T12:00:00Z")]);
    env.good_token("2026-05-16T12:00:00Z");
    assert!(env.dot_files().is_empty(), "{:?}", env.dot_files());
}

/// A kept run never runs the hook: `{"ran": false}`, the file untouched.
#[test]
fn a_kept_run_does_not_run_the_hook() {
    let env = Env::new();
    let hook = env.hook("exit 0");
    assert_eq!(env.renew(NOW, &[]).code, 0);
    let before = snapshot(&env.file());
    for now in [NOW, "2026-05-13T23:59:00Z"] {
        let r = env.renew(now, &["--deploy-hook", &hook]);
        assert_report(
            &r,
            report(
                None,
                "2026-05-21T00:00:00Z",
                Some("2026-05-21T00:00:00Z"),
                json!({"ran": false}),
            ),
        );
        assert_eq!(env.runs(), Vec::<String>::new(), "{now}");
        assert_eq!(unchanged(&env.file()), before);
    }
    // In text output too: the usual line, nothing from the hook.
    let r = env.renew_as("token", "text", NOW, &["--deploy-hook", &hook]);
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (0, "kept: expires 2026-05-21T00:00:00Z (in 30d)\n", "")
    );
    assert_eq!(env.runs(), Vec::<String>::new());
    assert!(env.dot_files().is_empty(), "{:?}", env.dot_files());
}

/// The hook's stdout and stderr go to renew's stderr: renew's stdout stays its one JSON document
/// (or its one text line).
#[test]
fn the_hooks_output_goes_to_stderr() {
    let env = Env::new();
    let hook = env.hook("exit 0");
    let r = env.renew(NOW, &["--deploy-hook", &hook]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains("hook-said"), "{}", r.stdout);
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
    assert_eq!(r.json()["hook"], ran(false, Some(0)));
    assert!(
        r.stderr.contains("hook-said-this-on-stdout\n")
            && r.stderr.contains("hook-said-this-on-stderr\n"),
        "{}",
        r.stderr
    );
    assert_eq!(env.runs().len(), 1);

    let r = env.renew_as("token", "text", LATER, &["--deploy-hook", &hook]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "renewed (expiring): expires 2026-06-14T00:00:00Z\n"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("hook-said-this-on-stdout\n")
            && r.stderr.contains("hook-said-this-on-stderr\n"),
        "{}",
        r.stderr
    );
    assert_eq!(
        env.runs(),
        [record(FILE, "expiring", "2026-06-14T00:00:00Z")]
    );
}

/// Without --deploy-hook the report's `hook` is null, renewed or kept.
#[test]
fn without_a_hook_the_report_says_null() {
    let env = Env::new();
    assert_report(
        &env.renew(NOW, &[]),
        report(Some("missing"), "2026-05-21T00:00:00Z", None, Value::Null),
    );
    assert_report(
        &env.renew(NOW, &[]),
        report(
            None,
            "2026-05-21T00:00:00Z",
            Some("2026-05-21T00:00:00Z"),
            Value::Null,
        ),
    );
}

/// A hook that exits 3: renew exits 2, the renewal is written (and verifies), the report says
/// so beside the hook's error (InvalidArgument, target deployHook), and a marker (a dot-file
/// named `…apim-sas-hook…`) is left beside the file.
#[test]
fn a_failing_hook_exits_2_with_the_renewal_written() {
    let env = Env::new();
    assert_eq!(env.renew(NOW, &[]).code, 0);
    let old = env.good_token(NOW);
    let r = env.renew(LATER, &["--deploy-hook", &env.hook("exit 3")]);
    assert_hook_failed(
        &r,
        report(
            Some("expiring"),
            "2026-06-14T00:00:00Z",
            Some("2026-05-21T00:00:00Z"),
            ran(false, Some(3)),
        ),
    );
    let new = env.good_token(LATER);
    assert_ne!(new, old);
    assert!(new.starts_with("gw1&202606140000&"), "{new}");
    assert_eq!(
        env.runs(),
        [record(FILE, "expiring", "2026-06-14T00:00:00Z")]
    );
    assert_eq!(env.markers().len(), 1, "{:?}", env.dot_files());
    assert_eq!(env.dot_files(), env.markers());
}

/// After a failed hook, the next run (the file now fresh, so kept) runs the hook again with the
/// original renewal's reason and the file's expiry, `retry: true`; its success removes the
/// marker, and the run after that does not run the hook.
#[test]
fn a_failed_hook_runs_again_until_it_succeeds() {
    let env = Env::new();
    assert_eq!(env.renew(NOW, &[]).code, 0);
    assert_eq!(
        env.renew(LATER, &["--deploy-hook", &env.hook("exit 3")])
            .code,
        2
    );
    assert_eq!(env.runs().len(), 1);
    let written = snapshot(&env.file());

    let hook = env.hook("exit 0");
    let later = "2026-05-16T00:00:00Z";
    let r = env.renew(later, &["--deploy-hook", &hook]);
    assert_report(
        &r,
        report(
            None,
            "2026-06-14T00:00:00Z",
            Some("2026-06-14T00:00:00Z"),
            ran(true, Some(0)),
        ),
    );
    assert_eq!(
        env.runs(),
        [record(FILE, "expiring", "2026-06-14T00:00:00Z")]
    );
    assert_eq!(unchanged(&env.file()), written);
    assert!(env.dot_files().is_empty(), "{:?}", env.dot_files());

    let r = env.renew(later, &["--deploy-hook", &hook]);
    assert_report(
        &r,
        report(
            None,
            "2026-06-14T00:00:00Z",
            Some("2026-06-14T00:00:00Z"),
            json!({"ran": false}),
        ),
    );
    assert_eq!(env.runs(), Vec::<String>::new());
    assert_eq!(unchanged(&env.file()), written);
}

/// A retried hook that fails again: exit 2 again, `retry: true` with its exit status, the marker
/// stays, and the run after tries again (the reason still the first renewal's).
#[test]
fn a_retried_hook_that_fails_again_is_tried_again() {
    let env = Env::new();
    let r = env.renew(NOW, &["--deploy-hook", &env.hook("exit 1")]);
    assert_hook_failed(
        &r,
        report(
            Some("missing"),
            "2026-05-21T00:00:00Z",
            None,
            ran(false, Some(1)),
        ),
    );
    assert_eq!(
        env.runs(),
        [record(FILE, "missing", "2026-05-21T00:00:00Z")]
    );
    let written = snapshot(&env.file());

    let r = env.renew(NOW, &["--deploy-hook", &env.hook("exit 4")]);
    assert_hook_failed(
        &r,
        report(
            None,
            "2026-05-21T00:00:00Z",
            Some("2026-05-21T00:00:00Z"),
            ran(true, Some(4)),
        ),
    );
    assert_eq!(
        env.runs(),
        [record(FILE, "missing", "2026-05-21T00:00:00Z")]
    );
    assert_eq!(env.markers().len(), 1, "{:?}", env.dot_files());
    assert_eq!(unchanged(&env.file()), written);

    let r = env.renew(NOW, &["--deploy-hook", &env.hook("exit 0")]);
    assert_report(
        &r,
        report(
            None,
            "2026-05-21T00:00:00Z",
            Some("2026-05-21T00:00:00Z"),
            ran(true, Some(0)),
        ),
    );
    assert_eq!(
        env.runs(),
        [record(FILE, "missing", "2026-05-21T00:00:00Z")]
    );
    assert!(env.dot_files().is_empty(), "{:?}", env.dot_files());
}

/// A hook killed by a signal (`kill -9 $$`) has no exit status: `exitStatus: null`, exit 2, the
/// renewal written, the marker left.
#[test]
fn a_hook_killed_by_a_signal_has_no_exit_status() {
    let env = Env::new();
    let r = env.renew(NOW, &["--deploy-hook", &env.hook("kill -9 $$")]);
    assert_hook_failed(
        &r,
        report(
            Some("missing"),
            "2026-05-21T00:00:00Z",
            None,
            ran(false, None),
        ),
    );
    env.good_token(NOW);
    assert_eq!(
        env.runs(),
        [record(FILE, "missing", "2026-05-21T00:00:00Z")]
    );
    assert_eq!(env.markers().len(), 1, "{:?}", env.dot_files());
}

/// In text output a failing hook leaves stdout the renewal's line and adds `error:
/// InvalidArgument: …` on stderr, exit 2.
#[test]
fn a_failing_hook_in_text_output() {
    let env = Env::new();
    let r = env.renew_as(
        "token",
        "text",
        NOW,
        &["--deploy-hook", &env.hook("exit 3")],
    );
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (2, "renewed (missing): expires 2026-05-21T00:00:00Z\n"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .lines()
            .any(|line| line.starts_with("error: InvalidArgument: ")),
        "{}",
        r.stderr
    );
    env.good_token(NOW);
    assert_eq!(env.markers().len(), 1, "{:?}", env.dot_files());
}

/// Nothing written, no hook: a write that fails, a key file that cannot be read, a file renew
/// refuses.
#[test]
fn the_hook_does_not_run_when_nothing_was_written() {
    let env = Env::new();
    let hook = env.hook("exit 0");
    let mut cmd = env.command();
    cmd.args(["renew", "--id", "gw1", "--keys"])
        .arg(env.keys())
        .args(["--file", "./nowhere/gw1.token", "--now", NOW])
        .args(["--output", "json", "--deploy-hook", &hook]);
    let r = run(cmd);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert_eq!(r.json()["error"]["target"], "file");

    let mut cmd = env.command();
    cmd.args(["renew", "--id", "gw1", "--keys", "./no-such-keys.json"])
        .args(["--file", FILE, "--now", NOW])
        .args(["--output", "json", "--deploy-hook", &hook]);
    let r = run(cmd);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert_eq!(r.json()["error"]["code"], "InvalidKeyFile");
    assert!(!env.file().exists());

    fs::write(env.file(), b"GatewayKey \0\0\n").unwrap();
    let before = snapshot(&env.file());
    let r = env.renew(NOW, &["--deploy-hook", &hook]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert_eq!(r.json()["error"]["code"], "InvalidArgument");
    assert_eq!(unchanged(&env.file()), before);

    assert_eq!(env.runs(), Vec::<String>::new());
    assert!(env.dot_files().is_empty(), "{:?}", env.dot_files());
}

/// The key given in APIM_SAS_KEY is not handed to the hook: a hook that prints its whole
/// environment (to renew's stderr) prints no key, and sees only the three APIM_SAS_ variables.
#[test]
fn the_hook_does_not_see_the_key() {
    let env = Env::new();
    let hook = format!("env; {}", env.hook("exit 0"));
    let mut cmd = env.command();
    cmd.env("APIM_SAS_KEY", format!("{CANARY}-p1"))
        .args(["renew", "--id", "gw1", "--file", FILE, "--now", NOW])
        .args(["--output", "json", "--deploy-hook", &hook]);
    let r = run(cmd);
    assert_report(
        &r,
        report(
            Some("missing"),
            "2026-05-21T00:00:00Z",
            None,
            ran(false, Some(0)),
        ),
    );
    assert!(r.stderr.contains("APIM_SAS_REASON=missing"), "{}", r.stderr);
    assert_eq!(
        env.runs(),
        [record(FILE, "missing", "2026-05-21T00:00:00Z")]
    );
    env.good_token(NOW);
}

/// The hook runs for every form: an env file and a Secret, each given its own path.
#[test]
fn the_hook_runs_for_env_files_and_secrets() {
    let env = Env::new();
    let hook = env.hook("exit 0");
    fs::write(env.file(), "config.service.endpoint=https://contoso/x\n").unwrap();
    let r = env.renew_as("docker-env", "json", NOW, &["--deploy-hook", &hook]);
    assert_report(
        &r,
        report(
            Some("missing"),
            "2026-05-21T00:00:00Z",
            None,
            ran(false, Some(0)),
        ),
    );
    assert_eq!(
        env.runs(),
        [record(FILE, "missing", "2026-05-21T00:00:00Z")]
    );

    let secret = "./run/gw1-token.json";
    let mut cmd = env.command();
    cmd.args(["renew", "--id", "gw1", "--keys"])
        .arg(env.keys())
        .args(["--file", secret, "--form", "k8s-secret", "--now", NOW])
        .args(["--output", "json", "--deploy-hook", &hook]);
    let r = run(cmd);
    assert_report(
        &r,
        report(
            Some("missing"),
            "2026-05-21T00:00:00Z",
            None,
            ran(false, Some(0)),
        ),
    );
    assert_eq!(
        env.runs(),
        [record(secret, "missing", "2026-05-21T00:00:00Z")]
    );
    let doc: Value =
        serde_json::from_str(&fs::read_to_string(env.dir.path().join(secret)).unwrap()).unwrap();
    assert_eq!(doc["kind"], "Secret");
    assert!(env.dot_files().is_empty(), "{:?}", env.dot_files());
}
