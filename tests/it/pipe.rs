//! The command's own mistakes are not the token's: a closed stdout stops `verify --batch` quietly,
//! as Unix tools stop; an unknown `--id` in a keystore is the invocation (exit 2); a too-long
//! token on stdin is refused in the same JSON shape as one given as an argument; a byte-order mark
//! at the start of a token file is dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The sample keys, copied private (mode 0600) so that no warning about them reaches stderr.
fn keys() -> &'static str {
    static KEYS: std::sync::OnceLock<(tempfile::TempDir, String)> = std::sync::OnceLock::new();
    let (_, path) = KEYS.get_or_init(|| {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw1.keys.json");
        std::fs::copy("examples/gw1.keys.json", &path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        (dir, path.to_str().unwrap().to_owned())
    });
    path
}
const NOW: &str = "2026-04-21T00:00:00Z";

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_apim-sas"));
    cmd.env_remove("APIM_SAS_KEY");
    cmd
}

fn token() -> String {
    let out = bin()
        .args([
            "mint",
            "--id",
            "gw1",
            "--keys",
            keys(),
            "--now",
            NOW,
            "--ttl",
            "1d",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn a_closed_stdout_stops_a_batch_quietly() {
    let token = token();
    let mut child = bin()
        .args([
            "verify",
            "--batch",
            "--id",
            "gw1",
            "--keys",
            keys(),
            "--now",
            NOW,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // An endless input, as `yes TOKEN | apim-sas verify --batch | head -1` gives.
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let line = format!("{token}\n").repeat(1000);
        while stdin.write_all(line.as_bytes()).is_ok() {}
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with("{\"line\":1,\"valid\":true"), "{first}");
    drop(stdout); // what `head -1` does once it has its line
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running after stdout closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    feeder.join().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(stderr, "", "quiet: no error, no summary");
    assert_eq!(status.code(), Some(0), "every token it verified was valid");
}

#[test]
fn an_id_missing_from_the_keystore_is_the_invocations_fault() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("gateways.json");
    std::fs::write(&store, r#"{"gw1": {"primary": "k1"}}"#).unwrap();
    let out = bin()
        .args(["verify", "--keystore"])
        .arg(&store)
        .args(["--id", "gwX", "--output", "json", "gw1&202604210044&x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["error"]["code"], "GatewayNotExist");
    assert_eq!(json["error"]["target"], "id");
}

#[test]
fn a_too_long_token_is_refused_in_one_shape_from_stdin_and_argument() {
    let long = format!("gw1&202604210044&{}", "A".repeat(20_000));
    let from_arg = bin()
        .args([
            "verify",
            "--id",
            "gw1",
            "--keys",
            keys(),
            "--output",
            "json",
            &long,
        ])
        .output()
        .unwrap();
    let mut child = bin()
        .args([
            "verify",
            "--id",
            "gw1",
            "--keys",
            keys(),
            "--output",
            "json",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(long.as_bytes())
        .unwrap();
    let from_stdin = child.wait_with_output().unwrap();
    assert_eq!(from_arg.status.code(), Some(1));
    assert_eq!(from_stdin.status.code(), Some(1));
    let expected = "{\"valid\":false,\"error\":{\"code\":\"TokenTooLong\",\"message\":\"token: longer than 1024 bytes\",\"target\":\"token\"}}\n";
    assert_eq!(String::from_utf8_lossy(&from_arg.stdout), expected);
    assert_eq!(String::from_utf8_lossy(&from_stdin.stdout), expected);
}

#[test]
fn a_byte_order_mark_starts_no_token() {
    let token = token();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.txt");
    std::fs::write(&file, format!("\u{feff}{token}\r\n{token}\r\n")).unwrap();
    let out = bin()
        .args([
            "verify",
            "--batch",
            "-q",
            "--id",
            "gw1",
            "--keys",
            keys(),
            "--now",
            NOW,
        ])
        .arg("--input")
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(text.matches("\"valid\":true").count(), 2, "{text}");
    let mut child = bin()
        .args(["inspect", "--now", NOW, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("\u{feff}{token}\n").as_bytes())
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
}

#[test]
fn output_that_cannot_be_written_is_exit_2_never_a_silent_success() {
    for output in ["text", "json", "k8s-secret", "docker-env"] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = bin()
            .args(["mint", "--id", "gw1", "--keys", keys(), "--now", NOW])
            .args(["--output", output])
            .stdout(full)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{output}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with("error: InvalidArgument: writing to stdout: "),
            "{output}: {stderr}"
        );
    }
}

#[test]
fn a_batch_under_output_json_reports_its_setup_errors_in_json() {
    let out = bin()
        .args(["verify", "--batch", "--output", "json", "--id", "gw1"])
        .args(["--keys", "/nonexistent/keys.json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["error"]["code"], "InvalidKeyFile");
    assert_eq!(json["error"]["target"], "key");
}
