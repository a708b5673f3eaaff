//! An operator's slips, made through the real binary: each one named with the fix. Key text with
//! whitespace around it in every key source (signed as the key without it), a key file given to
//! the wrong flag, a lifetime over the cap, a token of another gateway, a token the shell split
//! at `&`, and a renewed token left in a file others can read.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// A sample key, never a real gateway's.
const KEY: &str = "sample-key-do-not-use";
const NOW: &str = "2026-04-21T00:00:00Z";

fn apim() -> Command {
    let mut command = Command::cargo_bin("apim-sas").unwrap();
    command.env_remove("APIM_SAS_KEY").arg("--now").arg(NOW);
    command
}

/// Writes `text` to `name` in `dir`, private (a key file others can read is warned about).
fn private(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(command: &mut Command) -> Ran {
    let output = command.output().unwrap();
    Ran {
        code: output.status.code().unwrap(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn mint(dir: &Path, source: &[&str], env: Option<&str>) -> Ran {
    let mut command = apim();
    command
        .current_dir(dir)
        .args(["mint", "--id", "gw1", "--ttl", "1d"])
        .args(source);
    if let Some(key) = env {
        command.env("APIM_SAS_KEY", key);
    }
    run(&mut command)
}

#[test]
fn key_text_with_whitespace_around_it_signs_as_the_key_without_it_in_every_source() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    private(d, "plain.key", KEY);
    let expected = mint(d, &["--key-file", "plain.key"], None);
    assert_eq!(expected.code, 0, "{}", expected.stderr);
    assert!(expected.stdout.starts_with("gw1&202604220000&"));
    for padded in [format!(" {KEY} "), format!("\t{KEY}\n"), format!("{KEY}  ")] {
        let json = serde_json::to_string(&padded).unwrap();
        let toml = padded.replace('\t', "\\t").replace('\n', "\\n");
        private(d, "k.key", &format!("{padded}\n"));
        private(d, "list-keys.json", &format!(r#"{{"primary": {json}}}"#));
        private(
            d,
            "ks.json",
            &format!(r#"{{"gw1": {{"primary": {json}}}}}"#),
        );
        private(d, "ks.toml", &format!("[gw1]\nprimary = \"{toml}\"\n"));
        for (source, env) in [
            (&["--key-file", "k.key"][..], None),
            (&["--keys", "list-keys.json"][..], None),
            (&["--keystore", "ks.json"][..], None),
            (&["--keystore", "ks.toml"][..], None),
            (&[][..], Some(padded.as_str())),
        ] {
            let ran = mint(d, source, env);
            assert_eq!(
                (ran.code, ran.stdout.as_str(), ran.stderr.as_str()),
                (0, expected.stdout.as_str(), ""),
                "{source:?} {padded:?}"
            );
        }
    }
}

#[test]
fn a_key_file_given_to_the_wrong_flag_names_the_right_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    private(d, "gw1.key", &format!("{KEY}\n"));
    private(d, "gw1.toml", &format!("{KEY}\n"));
    for (flag, file, hint) in [
        (
            "--keystore",
            "gw1.key",
            "; it holds one bare key, not a keystore: use --key-file gw1.key --id <gateway id>\n",
        ),
        (
            "--keystore",
            "gw1.toml",
            "; it holds one bare key, not a keystore: use --key-file gw1.toml --id <gateway id>\n",
        ),
        (
            "--keys",
            "gw1.key",
            "; it holds one bare key: use --key-file gw1.key\n",
        ),
    ] {
        let ran = mint(d, &[flag, file], None);
        assert_eq!(ran.code, 2, "{flag} {file}");
        assert!(
            ran.stderr
                .starts_with(&format!("error: InvalidKeyFile: key file {file}: ")),
            "{}",
            ran.stderr
        );
        assert!(ran.stderr.ends_with(hint), "{}", ran.stderr);
        assert!(!ran.stderr.contains(KEY));
    }
    // A real keystore is not taken for a bare key.
    private(d, "broken.json", r#"{"gw1": {"primary": "k", }}"#);
    let ran = mint(d, &["--keystore", "broken.json"], None);
    assert_eq!(ran.code, 2);
    assert!(!ran.stderr.contains("--key-file"), "{}", ran.stderr);
}

#[test]
fn a_lifetime_over_the_cap_names_the_flag_not_a_library_call() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    private(d, "gw1.key", KEY);
    let mint_31d = |extra: &[&str]| {
        run(apim()
            .current_dir(d)
            .args([
                "mint",
                "--id",
                "gw1",
                "--key-file",
                "gw1.key",
                "--ttl",
                "31d",
            ])
            .args(extra))
    };
    let ran = mint_31d(&[]);
    assert_eq!(ran.code, 2);
    assert_eq!(
        ran.stderr,
        "error: ExpiryTooFar: expiry: 2026-05-22T00:00:00Z is more than the maximum lifetime \
         (30d) ahead of now (2026-04-21T00:00:00Z); a longer lifetime needs --max-lifetime (a \
         duration, or none)\n"
    );
    let ran = mint_31d(&["--output", "json"]);
    assert_eq!(ran.code, 2);
    let json: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    let message = json["error"]["message"].as_str().unwrap();
    assert!(message.ends_with("needs --max-lifetime (a duration, or none)"));
    assert!(!message.contains("Policy"), "{message}");
    // With the flag, the same lifetime mints.
    let ran = mint_31d(&["--max-lifetime", "90d"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
}

#[test]
fn a_token_of_another_gateway_names_both_ids() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    private(d, "gw1.key", KEY);
    private(
        d,
        "ks.json",
        &format!(r#"{{"gw2": {{"primary": "{KEY}"}}}}"#),
    );
    let token = mint(d, &["--key-file", "gw1.key"], None).stdout;
    let token = token.trim();
    let ran =
        run(apim()
            .current_dir(d)
            .args(["verify", "--key-file", "gw1.key", "--id", "gw2", token]));
    assert_eq!(ran.code, 1);
    assert_eq!(
        ran.stderr,
        "invalid: GatewayNotExist: id: the token is for gateway 'gw1', the keys are for gateway \
         'gw2' (--id gw2)\n"
    );
    let ran = run(apim().current_dir(d).args([
        "verify",
        "--keystore",
        "ks.json",
        "--output",
        "json",
        token,
    ]));
    assert_eq!(ran.code, 1);
    let json: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"valid": false, "error": {
            "code": "GatewayNotExist",
            "message": "id: the keystore ks.json has no keys of gateway 'gw1'",
            "target": "id",
        }})
    );
}

#[test]
fn a_token_split_by_the_shell_at_its_ampersands_gets_a_hint_to_quote_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    private(d, "gw1.key", KEY);
    // `apim-sas inspect gw1&202604220000&…` unquoted: the command gets `gw1` alone.
    for command in [
        vec!["inspect", "gw1"],
        vec!["verify", "--key-file", "gw1.key", "--id", "gw1", "gw1"],
        vec!["convert", "--to", "uid", "gw1"],
    ] {
        let ran = run(apim().current_dir(d).args(&command));
        assert_eq!(ran.code, 1, "{command:?}");
        assert!(
            ran.stderr.contains(
                "MalformedToken: token: the compact form has three fields, \
                 id&yyyyMMddHHmm&signature; it has no '&': the shell splits an unquoted token at \
                 each '&'; quote it: 'gw1&yyyyMMddHHmm&signature'"
            ),
            "{command:?}: {}",
            ran.stderr
        );
    }
    // A token that has its '&'s gets no such hint.
    let ran = run(apim().current_dir(d).args(["inspect", "gw1&2026&x"]));
    assert_eq!(ran.code, 1);
    assert!(!ran.stderr.contains("quote it"), "{}", ran.stderr);
}

#[test]
fn a_renewed_token_in_a_file_others_can_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    private(d, "gw1.key", KEY);
    let renew = |file: &str, form: &str| {
        run(apim().current_dir(d).args([
            "renew",
            "--id",
            "gw1",
            "--key-file",
            "gw1.key",
            "--file",
            file,
            "--form",
            form,
        ]))
    };
    let warning = |file: &str, mode: &str| {
        format!(
            "warning: {file} holds the gateway token and is readable by group or others (mode \
             {mode}); renew keeps a file's mode: restrict it with: chmod 600 {file}\n"
        )
    };
    // A new file is private: nothing to say.
    let ran = renew("new.token", "token");
    assert_eq!((ran.code, ran.stderr.as_str()), (0, ""));
    // Files made with the shell's umask, `>`: an env file, a Secret manifest, a token file.
    let token = std::fs::read_to_string(d.join("new.token")).unwrap();
    std::fs::write(d.join("gw1.env"), "OTHER=1\n").unwrap();
    std::fs::write(d.join("plain.token"), &token).unwrap();
    let secret = run(apim().current_dir(d).args([
        "mint",
        "--id",
        "gw1",
        "--key-file",
        "gw1.key",
        "--output",
        "k8s-secret",
    ]));
    std::fs::write(d.join("secret.yaml"), secret.stdout).unwrap();
    for (file, form, mode) in [
        ("gw1.env", "docker-env", 0o644),
        ("secret.yaml", "k8s-secret", 0o640),
        ("plain.token", "token", 0o604),
    ] {
        std::fs::set_permissions(d.join(file), std::fs::Permissions::from_mode(mode)).unwrap();
        // Renewed (the env file had no token), or kept: said either way, exit 0 either way.
        for _ in 0..2 {
            let ran = renew(file, form);
            assert_eq!(ran.code, 0, "{file}: {}", ran.stderr);
            assert_eq!(ran.stderr, warning(file, &format!("{mode:03o}")), "{file}");
        }
        let kept = std::fs::metadata(d.join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(kept, mode, "renew keeps the mode");
        std::fs::set_permissions(d.join(file), std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(renew(file, form).stderr, "");
    }
}
