//! `apim-sas renew` as a timer or a CronJob runs it: the real binary, a fixed clock (`--now`),
//! real files. Each reason to renew, a file kept byte for byte (and its mtime), env files whose
//! other lines survive, permissions, writes that cannot happen, and readers that never see a
//! partial file. Also `UnreadableInput` for every input a command reads.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use assert_cmd::Command;
use serde_json::json;

use crate::common::Run;

/// Appears in every key file these tests write; must appear in no output.
const CANARY: &str = "CANARY-KEY-7c1e-renew";
const NOW: &str = "2026-04-21T00:00:00Z";

fn output(mut cmd: Command) -> Run {
    let out = cmd.env_remove("APIM_SAS_KEY").output().unwrap();
    Run::from(out).leaking_nothing(CANARY)
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

    /// Writes a private key file.
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

    fn renew(&self, file: &Path, now: &str, extra: &[&str]) -> Run {
        let keys = self.keys();
        let mut args = vec![
            "renew",
            "--id",
            "gw1",
            "--keys",
            &keys,
            "--file",
            file.to_str().unwrap(),
            "--now",
            now,
            "--output",
            "json",
        ];
        args.extend_from_slice(extra);
        apim(&args)
    }

    /// A token minted with `keys` (a path), `extra` flags.
    fn mint(&self, keys: &str, id: &str, extra: &[&str]) -> String {
        let mut args = vec!["mint", "--id", id, "--keys", keys, "--now", NOW];
        args.extend_from_slice(extra);
        let r = apim(&args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout.trim().to_owned()
    }

    /// Whether `token` verifies with gw1's current keys.
    fn verifies(&self, token: &str, now: &str) -> bool {
        let keys = self.keys();
        apim(&[
            "verify", "--id", "gw1", "--keys", &keys, "--now", now, token,
        ])
        .code
            == 0
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
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Sets a file's mtime to a fixed past instant, so that any write would show.
fn age(path: &Path) -> SystemTime {
    let past = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    fs::File::options()
        .append(true)
        .open(path)
        .unwrap()
        .set_modified(past)
        .unwrap();
    fs::metadata(path).unwrap().modified().unwrap()
}

/// The file's bytes and mtime.
fn snapshot(path: &Path) -> (Vec<u8>, SystemTime) {
    (
        fs::read(path).unwrap(),
        fs::metadata(path).unwrap().modified().unwrap(),
    )
}

#[track_caller]
fn assert_renewed(r: &Run, reason: &str, expiry: &str, previous: Option<&str>) {
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        r.json(),
        json!({"renewed": true, "reason": reason, "expiry": expiry, "previousExpiry": previous, "hook": null})
    );
}

#[track_caller]
fn assert_kept(r: &Run, expiry: &str) {
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        r.json(),
        json!({"renewed": false, "reason": null, "expiry": expiry, "previousExpiry": expiry, "hook": null})
    );
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

#[test]
fn missing_then_kept_then_expiring() {
    let env = Env::new();
    let file = env.path("gw1.token");

    // No file: a 30-day token, GatewayKey scheme, a newline, mode 0600.
    assert_renewed(
        &env.renew(&file, NOW, &[]),
        "missing",
        "2026-05-21T00:00:00Z",
        None,
    );
    let token = token_in(&file);
    assert!(token.starts_with("gw1&202605210000&"), "{token}");
    assert!(env.verifies(&token, NOW));
    #[cfg(unix)]
    assert_eq!(mode(&file), 0o600);
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());

    // Again: nothing to do, and the file is not touched (bytes and mtime).
    let mtime = age(&file);
    let before = snapshot(&file);
    assert_kept(&env.renew(&file, NOW, &[]), "2026-05-21T00:00:00Z");
    assert_eq!(snapshot(&file), before);
    assert_eq!(before.1, mtime);
    // The text report, with the time left.
    let keys = env.keys();
    let args = |now: &'static str| {
        vec![
            "renew".to_owned(),
            "--id".into(),
            "gw1".into(),
            "--keys".into(),
            keys.clone(),
            "--file".into(),
            file.to_str().unwrap().into(),
            "--now".into(),
            now.into(),
        ]
    };
    let text_run = |now: &'static str| {
        let mut cmd = Command::cargo_bin("apim-sas").unwrap();
        cmd.args(args(now));
        output(cmd)
    };
    let r = text_run("2026-04-30T12:00:00Z");
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (0, "kept: expires 2026-05-21T00:00:00Z (in 20d 12h)\n", "")
    );
    assert_eq!(snapshot(&file), before);

    // 7 days and a minute left: kept; exactly 7 days: renewed (the window is inclusive).
    assert_kept(
        &env.renew(&file, "2026-05-13T23:59:00Z", &[]),
        "2026-05-21T00:00:00Z",
    );
    assert_eq!(snapshot(&file), before);
    let r = text_run("2026-05-14T00:00:00Z");
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "renewed (expiring): expires 2026-06-13T00:00:00Z\n")
    );
    assert_ne!(snapshot(&file).0, before.0);
    let renewed = token_in(&file);
    assert!(renewed.starts_with("gw1&202606130000&"), "{renewed}");

    // Long expired (authentic): expiring too, with its expiry reported.
    assert_renewed(
        &env.renew(&file, "2026-09-01T00:00:00Z", &[]),
        "expiring",
        "2026-10-01T00:00:00Z",
        Some("2026-06-13T00:00:00Z"),
    );
    // A shorter window and lifetime.
    assert_renewed(
        &env.renew(
            &file,
            "2026-09-25T00:00:00Z",
            &["--renew-within", "10d", "--ttl", "14d"],
        ),
        "expiring",
        "2026-10-09T00:00:00Z",
        Some("2026-10-01T00:00:00Z"),
    );
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

#[test]
fn an_empty_file_is_missing_and_forced_renews_a_good_token() {
    let env = Env::new();
    let file = env.path("gw1.token");
    for empty in ["", "\n", "  \r\n", "\u{feff}"] {
        fs::write(&file, empty).unwrap();
        assert_renewed(
            &env.renew(&file, NOW, &[]),
            "missing",
            "2026-05-21T00:00:00Z",
            None,
        );
    }
    let before = fs::read(&file).unwrap();
    assert_renewed(
        &env.renew(&file, "2026-04-22T00:00:00Z", &["--force"]),
        "forced",
        "2026-05-22T00:00:00Z",
        Some("2026-05-21T00:00:00Z"),
    );
    assert_ne!(fs::read(&file).unwrap(), before);
    // --force on a missing file reports the real reason.
    fs::remove_file(&file).unwrap();
    assert_renewed(
        &env.renew(&file, NOW, &["--force"]),
        "missing",
        "2026-05-21T00:00:00Z",
        None,
    );
}

#[test]
fn tokens_that_do_not_verify_are_invalid() {
    let env = Env::new();
    let keys = env.keys();
    let file = env.path("gw1.token");

    // Signed with a key since regenerated.
    let regenerated = env.regenerated();
    let stale = env.mint(&keys, "gw1", &["--ttl", "20d"]);
    fs::write(&file, format!("GatewayKey {stale}\n")).unwrap();
    let r = apim(&[
        "renew",
        "--id",
        "gw1",
        "--keys",
        &regenerated,
        "--file",
        file.to_str().unwrap(),
        "--now",
        NOW,
        "--output",
        "json",
    ]);
    assert_renewed(
        &r,
        "invalid",
        "2026-05-21T00:00:00Z",
        Some("2026-05-11T00:00:00Z"),
    );

    // Another gateway's token, with the same keys.
    let other = env.mint(&keys, "gw2", &["--ttl", "20d"]);
    fs::write(&file, &other).unwrap();
    assert_renewed(
        &env.renew(&file, NOW, &[]),
        "invalid",
        "2026-05-21T00:00:00Z",
        Some("2026-05-11T00:00:00Z"),
    );
    assert!(env.verifies(&token_in(&file), NOW));

    // Malformed: no readable token, so no previous expiry.
    // (NUL bytes are binary, no token file: refused, see tests/it/renew_safety.rs.)
    for garbage in ["not a token", "gw1&2026&abc", "\u{1}\u{2}", "Bearer x"] {
        fs::write(&file, garbage).unwrap();
        assert_renewed(
            &env.renew(&file, NOW, &[]),
            "invalid",
            "2026-05-21T00:00:00Z",
            None,
        );
    }

    // Signed by the primary, but renew now signs with the secondary (before the primary is
    // regenerated): replaced, so that the regeneration does not cut the gateway off.
    let primary = env.mint(&keys, "gw1", &["--ttl", "20d"]);
    fs::write(&file, &primary).unwrap();
    assert_renewed(
        &env.renew(&file, NOW, &["--key-type", "secondary"]),
        "invalid",
        "2026-05-21T00:00:00Z",
        Some("2026-05-11T00:00:00Z"),
    );
    let before = snapshot(&file);
    assert_kept(
        &env.renew(&file, NOW, &["--key-type", "secondary"]),
        "2026-05-21T00:00:00Z",
    );
    assert_eq!(snapshot(&file), before);

    // Further ahead than the maximum lifetime allows: not a token anyone should hold.
    let far = env.mint(&keys, "gw1", &["--ttl", "90d", "--max-lifetime", "none"]);
    fs::write(&file, &far).unwrap();
    assert_renewed(
        &env.renew(&file, NOW, &[]),
        "invalid",
        "2026-05-21T00:00:00Z",
        Some("2026-07-20T00:00:00Z"),
    );
    // ... unless --max-lifetime says so, for a longer-lived token file.
    fs::write(&file, &far).unwrap();
    let before = snapshot(&file);
    assert_kept(
        &env.renew(&file, NOW, &["--max-lifetime", "none", "--ttl", "120d"]),
        "2026-07-20T00:00:00Z",
    );
    assert_eq!(snapshot(&file), before);
}

#[test]
fn any_spelling_of_a_good_token_is_kept() {
    let env = Env::new();
    let keys = env.keys();
    let file = env.path("gw1.token");
    let compact = env.mint(&keys, "gw1", &["--ttl", "20d"]);
    let uid = env.mint(&keys, "gw1", &["--ttl", "20d", "--format", "uid"]);
    let secondary = env.mint(&keys, "gw1", &["--ttl", "20d", "--key-type", "secondary"]);
    for text in [
        compact.clone(),
        format!("GatewayKey {compact}\n"),
        format!("\u{feff}  gatewaykey   {compact}\r\n\r\n"),
        format!("SharedAccessSignature {uid}"),
        format!("SharedAccessSignature token=\"{compact}\",refresh=\"true\"\n"),
    ] {
        fs::write(&file, &text).unwrap();
        age(&file);
        let before = snapshot(&file);
        assert_kept(&env.renew(&file, NOW, &[]), "2026-05-11T00:00:00Z");
        assert_eq!(snapshot(&file), before, "{text:?}");
    }
    // The secondary's token is kept when renew signs with the secondary.
    fs::write(&file, &secondary).unwrap();
    assert_kept(
        &env.renew(&file, NOW, &["--key-type", "secondary"]),
        "2026-05-11T00:00:00Z",
    );
    // What a renewal writes follows --format and --scheme.
    fs::remove_file(&file).unwrap();
    env.renew(&file, NOW, &["--format", "uid", "--scheme", "sas"]);
    let text = fs::read_to_string(&file).unwrap();
    assert!(
        text.starts_with("SharedAccessSignature uid=gw1&ex=2026-05-21T00:00:00.0000000Z&sn=")
            && text.ends_with("==\n"),
        "{text}"
    );
    fs::remove_file(&file).unwrap();
    env.renew(&file, NOW, &["--scheme", "none"]);
    let text = fs::read_to_string(&file).unwrap();
    assert!(
        text.starts_with("gw1&202605210000&") && text.ends_with("==\n"),
        "{text}"
    );
}

#[test]
fn env_files_keep_every_other_line() {
    let env = Env::new();
    let keys = env.keys();
    let file = env.path("gw1.env");
    let stale = env.mint(&env.regenerated(), "gw1", &["--ttl", "20d"]);
    let head = "\u{feff}# the gateway's settings\r\nconfig.service.endpoint=https://apim.example/mgmt\r\n\r\n";
    let tail = "   # keep me\r\nneighbor.config.service.auth=unrelated\r\nTZ=UTC";
    fs::write(
        &file,
        format!("{head}config.service.auth=GatewayKey {stale}\r\n{tail}"),
    )
    .unwrap();
    set_mode(&file, 0o640);
    let r = env.renew(&file, NOW, &["--form", "docker-env"]);
    assert_renewed(
        &r,
        "invalid",
        "2026-05-21T00:00:00Z",
        Some("2026-05-11T00:00:00Z"),
    );
    let text = fs::read_to_string(&file).unwrap();
    let new = text
        .strip_prefix(head)
        .and_then(|rest| rest.strip_suffix(tail))
        .and_then(|line| line.strip_prefix("config.service.auth=GatewayKey "))
        .and_then(|line| line.strip_suffix("\r\n"))
        .unwrap_or_else(|| panic!("{text:?}"));
    assert!(new.starts_with("gw1&202605210000&"), "{new}");
    assert!(env.verifies(new, NOW));
    #[cfg(unix)]
    assert_eq!(mode(&file), 0o640, "the file's permissions are kept");

    // Idempotent: a second run leaves bytes and mtime alone.
    age(&file);
    let before = snapshot(&file);
    assert_kept(
        &env.renew(&file, NOW, &["--form", "docker-env"]),
        "2026-05-21T00:00:00Z",
    );
    assert_eq!(snapshot(&file), before);

    // No auth line: appended, in the file's line ending, after a last line without one.
    fs::write(&file, "A=1\r\nB=2").unwrap();
    let r = env.renew(&file, NOW, &["--form", "docker-env"]);
    assert_renewed(&r, "missing", "2026-05-21T00:00:00Z", None);
    let text = fs::read_to_string(&file).unwrap();
    let line = text
        .strip_prefix("A=1\r\nB=2\r\nconfig.service.auth=GatewayKey ")
        .and_then(|rest| rest.strip_suffix("\r\n"))
        .unwrap_or_else(|| panic!("{text:?}"));
    assert!(env.verifies(line, NOW));

    // A new env file: the one line, mode 0600.
    let fresh = env.path("fresh.env");
    assert_renewed(
        &env.renew(&fresh, NOW, &["--form", "docker-env"]),
        "missing",
        "2026-05-21T00:00:00Z",
        None,
    );
    let text = fs::read_to_string(&fresh).unwrap();
    assert!(
        text.starts_with("config.service.auth=GatewayKey gw1&202605210000&")
            && text.ends_with("==\n")
            && text.lines().count() == 1,
        "{text}"
    );
    #[cfg(unix)]
    assert_eq!(mode(&fresh), 0o600);

    // A token of the other form, or another scheme, is kept if it verifies; docker reads the
    // value as it stands.
    let good = env.mint(&keys, "gw1", &["--ttl", "20d"]);
    fs::write(
        &file,
        format!("X=1\nconfig.service.auth=GatewayKey {good}\n"),
    )
    .unwrap();
    let before = snapshot(&file);
    assert_kept(
        &env.renew(&file, NOW, &["--form", "docker-env"]),
        "2026-05-11T00:00:00Z",
    );
    assert_eq!(snapshot(&file), before);

    // Flags the env file cannot carry are refused, and nothing is written.
    for (flags, target) in [
        (&["--scheme", "sas"][..], "scheme"),
        (&["--scheme", "none"][..], "scheme"),
        (&["--format", "uid"][..], "format"),
    ] {
        let mut all = vec!["--form", "docker-env", "--force"];
        all.extend_from_slice(flags);
        let r = env.renew(&file, NOW, &all);
        assert_eq!(r.code, 2, "{flags:?}");
        assert_eq!(r.json()["error"]["code"], "InvalidArgument");
        assert_eq!(r.json()["error"]["target"], target);
        assert_eq!(snapshot(&file), before);
    }
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

#[test]
fn refusals_write_nothing() {
    let env = Env::new();
    let file = env.path("gw1.token");
    let bad_keys = env.private("bad.json", r#"{"primary": ""}"#);
    let no_secondary = env.private(
        "primary-only.json",
        &format!(r#"{{"primary": "{CANARY}"}}"#),
    );
    let keys = env.keys();
    let f = file.to_str().unwrap();
    let cases: &[(&[&str], &str, &str)] = &[
        (&["--keys", &bad_keys], "EmptyKey", "key"),
        (
            &["--keys", "/nonexistent/keys.json"],
            "InvalidKeyFile",
            "key",
        ),
        (
            &["--keys", &no_secondary, "--key-type", "secondary"],
            "KeyNotFound",
            "key",
        ),
        (
            &["--keys", &keys, "--id", "managed"],
            "InvalidGatewayLocation",
            "id",
        ),
        (&["--keys", &keys, "--id", "gw 1"], "InvalidGatewayId", "id"),
        (&["--keys", &keys, "--ttl", "31d"], "ExpiryTooFar", "expiry"),
        (
            &["--keys", &keys, "--ttl", "soon"],
            "InvalidExpiry",
            "expiry",
        ),
        (
            &["--keys", &keys, "--renew-within=-1d"],
            "InvalidExpiry",
            "expiry",
        ),
        (
            &["--keys", &keys, "--ttl", "7d"],
            "InvalidArgument",
            "renewWithin",
        ),
        (
            &["--keys", &keys, "--key-type", "tertiary"],
            "InvalidKeyType",
            "keyType",
        ),
    ];
    for (flags, code, target) in cases {
        let mut args = vec!["renew", "--file", f, "--now", NOW, "--output", "json"];
        if !flags.contains(&"--id") {
            args.extend(["--id", "gw1"]);
        }
        args.extend_from_slice(flags);
        let r = apim(&args);
        assert_eq!(r.code, 2, "{flags:?}: {}", r.stdout);
        let doc = r.json();
        assert_eq!(doc["error"]["code"], *code, "{flags:?}");
        assert_eq!(doc["error"]["target"], *target, "{flags:?}");
        assert!(!file.exists(), "{flags:?}");
    }
    // A good file stays as it was when a later flag is wrong, even with --force.
    env.renew(&file, NOW, &[]);
    age(&file);
    let before = snapshot(&file);
    let r = env.renew(&file, NOW, &["--force", "--ttl", "40d"]);
    assert_eq!(r.code, 2);
    assert_eq!(snapshot(&file), before);
    // Text errors go to stderr.
    let r = apim(&[
        "renew", "--id", "gw1", "--keys", &keys, "--file", f, "--ttl", "1d",
    ]);
    assert_eq!((r.code, r.stdout.as_str()), (2, ""));
    assert!(
        r.stderr
            .starts_with("error: InvalidArgument: --renew-within"),
        "{}",
        r.stderr
    );
    assert!(env.leftovers().is_empty());
}

/// An immutable file: even root cannot rename over it (needs root, `chattr` and a file system
/// that supports the attribute; build.rs tells, and the test that needs it is ignored without).
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: &Path) -> Immutable {
        let out = std::process::Command::new("chattr")
            .arg("+i")
            .arg(path)
            .output();
        assert!(
            out.as_ref().is_ok_and(|o| o.status.success()),
            "chattr +i {} failed ({out:?}): .ci/run runs as root with e2fsprogs installed; \
             elsewhere, rebuild the tests (touch build.rs) and this test is ignored instead",
            path.display()
        );
        Immutable(path.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn writes_that_cannot_happen_exit_2_and_leave_nothing() {
    let env = Env::new();
    // The parent is a regular file: neither read nor written (this fails for root too).
    let regular = env.path("regular");
    fs::write(&regular, "x").unwrap();
    let r = env.renew(&regular.join("gw1.token"), NOW, &[]);
    assert_eq!(r.code, 2);
    assert_eq!(r.json()["error"]["code"], "UnreadableInput");
    assert_eq!(r.json()["error"]["target"], "file");
    assert_eq!(fs::read(&regular).unwrap(), b"x");

    // A directory that does not exist: missing, and then the write fails.
    let r = env.renew(&env.path("no/such/dir/gw1.token"), NOW, &[]);
    assert_eq!(r.code, 2);
    assert_eq!(r.json()["error"]["code"], "InvalidArgument");
    assert_eq!(r.json()["error"]["target"], "file");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .ends_with("nothing was written"),
        "{}",
        r.stdout
    );

    // /proc takes no new files, not even from root.
    if Path::new("/proc/self").exists() {
        let r = env.renew(Path::new("/proc/self/apim-sas-gw1.token"), NOW, &[]);
        assert_eq!(r.code, 2, "{}", r.stdout);
        assert_eq!(r.json()["error"]["code"], "InvalidArgument");
    }

    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

/// The rename itself refused, after the temporary file was written: it is removed.
#[test]
#[cfg_attr(
    skip_chattr,
    ignore = "chattr +i does not work here: needs root, chattr (apt-get install -y e2fsprogs) \
              and a file system with the immutable attribute"
)]
fn a_refused_rename_exits_2_and_leaves_nothing() {
    let env = Env::new();
    let file = env.path("gw1.token");
    assert_eq!(env.renew(&file, NOW, &[]).code, 0);
    let before = snapshot(&file);
    let _guard = Immutable::set(&file);
    let r = env.renew(&file, NOW, &["--force"]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert_eq!(r.json()["error"]["code"], "InvalidArgument");
    assert_eq!(snapshot(&file), before);
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

#[test]
fn inputs_that_cannot_be_read_are_unreadable_input() {
    let env = Env::new();
    let keys = env.keys();
    // renew --file: a directory, then a file over any token file's size (not replaced).
    let dir = env.path("a-directory");
    fs::create_dir(&dir).unwrap();
    let r = env.renew(&dir, NOW, &[]);
    assert_eq!(r.code, 2);
    assert_eq!(r.json()["error"]["code"], "UnreadableInput");
    assert_eq!(r.json()["error"]["target"], "file");
    let big = env.path("big");
    fs::write(&big, vec![b'a'; 64 * 1024]).unwrap();
    let r = env.renew(&big, NOW, &[]);
    assert_eq!(r.code, 2);
    assert_eq!(r.json()["error"]["code"], "InvalidArgument");
    assert_eq!(fs::metadata(&big).unwrap().len(), 64 * 1024);

    // stdin that cannot be read (a directory): inspect, convert, verify.
    // assert_cmd always pipes stdin: the process is started with std's Command.
    let stdin_is_dir = |args: &[&str]| {
        let program = Command::cargo_bin("apim-sas")
            .unwrap()
            .get_program()
            .to_owned();
        let out = std::process::Command::new(program)
            .args(args)
            .env_remove("APIM_SAS_KEY")
            .stdin(fs::File::open(&dir).unwrap())
            .output()
            .unwrap();
        Run::from(out)
    };
    for args in [
        &["inspect", "--output", "json", "-"][..],
        &["convert", "--to", "uid", "--output", "json", "-"],
        &[
            "verify", "--id", "gw1", "--keys", &keys, "--output", "json", "-",
        ],
    ] {
        let r = stdin_is_dir(args);
        assert_eq!(r.code, 2, "{args:?}: {}{}", r.stdout, r.stderr);
        assert_eq!(r.json()["error"]["code"], "UnreadableInput", "{args:?}");
    }
    let r = stdin_is_dir(&["inspect", "--output", "prometheus"]);
    assert_eq!((r.code, r.stdout.as_str()), (2, ""));
    assert!(
        r.stderr.starts_with("error: UnreadableInput: "),
        "{}",
        r.stderr
    );
    // verify --batch --input: a directory, and a file that is not there.
    for input in [dir.to_str().unwrap(), "/nonexistent/tokens.txt"] {
        let r = apim(&[
            "verify", "--batch", "--id", "gw1", "--keys", &keys, "--input", input,
        ]);
        assert_eq!(r.code, 2, "{input}");
        assert!(
            r.stderr.contains("UnreadableInput"),
            "{input}: {}",
            r.stderr
        );
    }
}

#[test]
fn readers_never_see_a_partial_file() {
    let env = Env::new();
    let file = env.path("gw1.token");
    assert_eq!(env.renew(&file, NOW, &[]).code, 0);
    let expected_len = fs::metadata(&file).unwrap().len();

    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (done, file) = (Arc::clone(&done), file.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            let mut seen = std::collections::HashSet::new();
            while !done.load(Ordering::Relaxed) {
                let bytes = fs::read(&file).expect("the file is always there");
                let text = String::from_utf8(bytes).expect("UTF-8");
                assert_eq!(text.len() as u64, expected_len, "partial: {text:?}");
                assert!(
                    text.starts_with("GatewayKey gw1&2026") && text.ends_with("==\n"),
                    "partial: {text:?}"
                );
                seen.insert(text);
                reads += 1;
            }
            (reads, seen.len())
        })
    };
    // Each run renews (--force) to a token with another expiry.
    const RUNS: u32 = 200;
    for i in 0..RUNS {
        let now = format!("2026-04-21T{:02}:{:02}:00Z", i / 60, i % 60);
        let r = env.renew(&file, &now, &["--force"]);
        assert_eq!(r.code, 0, "{}", r.stdout);
        assert_eq!(r.json()["renewed"], true);
    }
    done.store(true, Ordering::Relaxed);
    let (reads, distinct) = reader.join().expect("the reader saw a partial file");
    assert!(reads > u64::from(RUNS), "only {reads} reads");
    assert!(distinct > 10, "the reader saw only {distinct} versions");
    assert!(token_in(&file).starts_with("gw1&202605210319&"));
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

#[test]
fn every_key_source_renews() {
    let env = Env::new();
    let store = env.private(
        "store.toml",
        &format!("[gw1]\nprimary = \"{CANARY}-p1\"\n[gw2]\nprimary = \"{CANARY}-p2\"\n"),
    );
    let key_file = env.private("gw1.key", &format!("{CANARY}-p1\n"));
    let file = env.path("gw1.token");
    for source in [
        ["--keystore", store.as_str()],
        ["--key-file", key_file.as_str()],
    ] {
        let _ = fs::remove_file(&file);
        let mut args = vec!["renew", "--id", "gw1", "--file", file.to_str().unwrap()];
        args.extend(["--now", NOW, "--output", "json"]);
        args.extend(source);
        assert_renewed(&apim(&args), "missing", "2026-05-21T00:00:00Z", None);
        assert!(env.verifies(&token_in(&file), NOW));
        assert_kept(&apim(&args), "2026-05-21T00:00:00Z");
    }
    // A keystore without the gateway: exit 2, nothing written.
    let _ = fs::remove_file(&file);
    let r = apim(&[
        "renew",
        "--id",
        "gw9",
        "--keystore",
        &store,
        "--file",
        file.to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 2);
    assert_eq!(r.json()["error"]["code"], "GatewayNotExist");
    assert!(!file.exists());
}

/// The owner and group of the file are kept (when the process may set them: as root, as CI
/// runs; otherwise the test is ignored).
#[cfg(unix)]
#[test]
#[cfg_attr(
    skip_root,
    ignore = "needs root to give a file away (chown): run the tests as root"
)]
fn owner_and_group_are_kept() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    let file = env.path("gw1.env");
    fs::write(&file, "A=1\n").unwrap();
    assert_eq!(
        fs::metadata(&file).unwrap().uid(),
        0,
        "not root: .ci/run runs as root; elsewhere, rebuild the tests (touch build.rs) as this \
         user and this test is ignored instead"
    );
    std::os::unix::fs::chown(&file, Some(4321), Some(4322)).unwrap();
    set_mode(&file, 0o640);
    let r = env.renew(&file, NOW, &["--form", "docker-env"]);
    assert_renewed(&r, "missing", "2026-05-21T00:00:00Z", None);
    let meta = fs::metadata(&file).unwrap();
    assert_eq!((meta.uid(), meta.gid(), mode(&file)), (4321, 4322, 0o640));
}

#[test]
fn the_help_shows_a_worked_example() {
    let r = apim(&["renew", "--help"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("Examples:"), "{}", r.stdout);
    assert!(r.stdout.contains("apim-sas renew --id gw1"), "{}", r.stdout);
    for flag in [
        "--file",
        "--form",
        "--renew-within",
        "--ttl",
        "--key-type",
        "--format",
        "--scheme",
        "--force",
        "--output",
        "--max-lifetime",
        "--keystore",
    ] {
        assert!(r.stdout.contains(flag), "{flag}");
    }
}

/// A renewal job that is not root may replace a file it cannot give away (owned by root, shared
/// through a group): it renews, keeps the mode, and says what it could not keep, rather than
/// leaving the gateway's token to lapse. Runs where the test runs as root (CI does) and can drop
/// to another user with `setpriv`.
#[test]
#[cfg_attr(
    any(skip_root, skip_setpriv),
    ignore = "needs root and /usr/bin/setpriv (apt-get install -y util-linux) to act as another \
              user"
)]
fn a_non_root_job_renews_a_file_it_cannot_give_away() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    assert!(
        is_root && Path::new("/usr/bin/setpriv").exists(),
        "needs root and /usr/bin/setpriv: .ci/run runs as root and installs util-linux; \
         elsewhere, rebuild the tests (touch build.rs) and this test is ignored instead"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let keys = dir.path().join("keys.json");
    std::fs::write(&keys, r#"{"primary": "sample-key-of-gw1"}"#).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o644)).unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "not a token\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o664)).unwrap();
    let out = Command::new("/usr/bin/setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_apim-sas"))
        .args(["renew", "--id", "gw1", "--keys"])
        .arg(&keys)
        .arg("--file")
        .arg(&file)
        .args(["--now", NOW, "--output", "json"])
        .env_remove("APIM_SAS_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["reason"], "invalid");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("could not keep its owner and group (0:0)"),
        "{stderr}"
    );
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o664);
    assert_eq!(meta.uid(), 65534);
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .starts_with("GatewayKey gw1&"));
}
